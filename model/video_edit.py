"""Video-to-video edits: encode a source video, noise it to `strength`, denoise with a prompt.

Flow matching makes the partial noising exact: with the sampler's grid `sigma_0 > ... > sigma_N = 0`
and `k = round(N * strength)` steps to run, the source latent `x0` becomes
`x = (1 - s) * x0 + s * noise` with `s = sigma_{N-k}`, and the last `k` steps of the grid follow
(a multistep sampler restarts at first order there). `strength = 1` is a plain generation from the
source's noise seed. For two-expert models the expert switch is unchanged: a low strength starts
below the boundary, so only the low-noise expert runs. I2V-A14B is conditioned on the source's
first frame (its `y`); TI2V edits every frame (no frame is pinned).
"""

from __future__ import annotations

from typing import Any

import torch

from model.pipeline import Sampling, StepCallback, WanPipeline
from model.scheduler import make_sampler

__all__ = ["edit_video", "valid_edit_frames"]


def valid_edit_frames(preset: Any, frames: int) -> int:
    """The largest frame count the model accepts that is <= `frames` (the source is cut to it)."""
    st = preset.vae_stride[0]
    n = min(frames, preset.max_num_frames)
    n = st * ((n - 1) // st) + 1
    if n < preset.min_num_frames:
        raise ValueError(
            f"the source video has {frames} frames; "
            f"{preset.model_id!r} needs at least {preset.min_num_frames}"
        )
    return n


@torch.inference_mode()
def edit_video(
    pipe: WanPipeline,
    prompt: str,
    video: torch.Tensor,
    *,
    strength: float,
    seed: int,
    negative_prompt: str | None = None,
    num_steps: int | None = None,
    guidance_scale: float | tuple[float, ...] | None = None,
    shift: float | None = None,
    sampler: str = "unipc",
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """Edit `video` ([3, F, H, W] in [-1, 1]; F a valid frame count) -> [3, F, H, W] in [-1, 1].

    `callback(step, total, timestep)` counts only the steps that run (`round(N * strength)`).
    """
    if not 0 < strength <= 1:
        raise ValueError(f"strength must be in (0, 1], got {strength!r}")
    _, n_frames, height, width = video.shape
    run = pipe.check_inputs(
        prompt,
        negative_prompt=negative_prompt,
        image=video[:, 0] if pipe.preset.image_input == "required" else None,
        height=height,
        width=width,
        num_frames=n_frames,
        num_steps=num_steps,
        guidance_scale=guidance_scale,
        shift=shift,
        sampler=sampler,
        seed=seed,
        callback=callback,
    )
    try:
        return _edit(pipe, run, video, strength)
    finally:
        pipe._release()


def _edit(pipe: WanPipeline, run: Sampling, video: torch.Tensor, strength: float) -> torch.Tensor:
    ctx_both = pipe.encode_prompts([run.prompt, run.negative_prompt])
    ctx, ctx_null = ctx_both[:1], ctx_both[1:]
    x0 = pipe._vae_encode(video.float().clamp(-1, 1)[None])  # [1, z, T', h, w]
    gen = torch.Generator(device="cpu").manual_seed(run.seed)
    noise = torch.randn(tuple(x0.shape), generator=gen, dtype=torch.float32).to(pipe.device)
    y = None
    if run.image is not None:  # I2V-A14B: conditioned on the source's first frame
        y = pipe._i2v_condition(run.image.float().cpu(), video.shape[1], tuple(x0.shape[1:]))

    full = make_sampler(run.sampler, run.num_steps, run.shift)
    k = max(1, round(full.num_steps * strength))
    i0 = full.num_steps - k
    s0 = float(full.sigmas[i0])
    latent = (1.0 - s0) * x0 + s0 * noise
    sampler = type(full)(full.sigmas[i0:], full.timesteps[i0:])  # the grid's last k steps
    for i, t_int in enumerate(sampler.timesteps.tolist()):
        dit, g, _ = pipe.expert_at(t_int, run.guidance)
        pipe._place(dit)
        t = torch.tensor([float(t_int)], device=pipe.device)
        v = pipe._velocity(dit, latent, t, ctx, ctx_null, y, g)
        latent = sampler.step(v, latent)
        if run.callback is not None:
            run.callback(i + 1, k, float(t_int))
    return pipe.decode(latent)
