"""``wanserve-demo-lightning``: a 4-step LoRA for the demo DiT, by trajectory distillation.

The teacher is the shipped demo model at its preset defaults (UniPC, 20 steps, guidance 6). For
prompts and noise drawn like the demo's own data (single-object captions, a quarter in TI2V image
mode with the first frame given), the teacher's final latent is computed once. The student is the
same DiT plus trainable low-rank branches on the attention and FFN linears; it runs the ``distill``
sampler (4 Euler steps on the Lightning grid, no guidance) from the same noise, and the whole
4-step rollout is backpropagated: the loss is the distance of its final latent to the teacher's,
plus that of every step's x0 prediction (the later steps' more heavily weighted). Matching whole
trajectories rather than a distribution keeps it cheap and deterministic on two CPU threads.

The result is written in the official LoRA layout (``diffusion_model.<layer>.lora_down.weight`` /
``lora_up.weight`` / ``alpha``, as the Lightning releases) with a sidecar JSON whose ``defaults``
make a request that names the LoRA run the distill sampler at 4 steps without guidance.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.scheduler import make_sampler

LIGHTNING_NAME = "wanserve-demo-lightning"
# The DiT's attention projections and FFN linears (what the released Lightning LoRAs target).
TARGETS = re.compile(r"^blocks\.\d+\.(self_attn|cross_attn)\.[qkvo]$|^blocks\.\d+\.ffn\.[02]$")


@dataclass(frozen=True)
class DistillConfig:
    rank: int = 8
    alpha: float = 8.0
    num_steps: int = 4  # the student's distill steps
    shift: float = 2.0  # the preset's shift: the LoRA's grid is the distill grid at the default shift
    num_samples: int = 512  # teacher trajectories (prompt, noise, mode)
    image_prob: float = 0.25
    train_steps: int = 400
    batch: int = 16
    lr: float = 3e-3
    teacher_batch: int = 64
    seed: int = 0
    # One thread: the shipped file is what this count produces (another count sums in another
    # order), and on a busy 2-core machine one thread ran ~2x faster than two.
    threads: int = 1
    # (colour, shape, direction) triples no teacher case shows (the chain's --hold-out-combos, or
    # the alignment's held-out combinations: the LoRA must not learn them either)
    held_out: tuple[tuple[str, str, str], ...] = ()
    # share of the teacher's prompts in other phrasings of the training grammar (the rest canonical)
    paraphrase_share: float = 0.0


@dataclass
class TeacherSet:
    """Inputs of the teacher's runs and its final latents (all float32, CPU)."""

    noise: Tensor  # [N, z, f, h, w], frame 0 already the image latent in image mode
    context: Tensor  # [N, text_len, text_dim]
    first: Tensor  # [N, z, 1, h, w] image latent (zeros in text mode)
    image_mode: Tensor  # [N] bool
    target: Tensor  # [N, z, f, h, w] the teacher's final latent


def sample_cases(
    n: int, seed: int, image_prob: float = 0.25, held_out: tuple[tuple[str, str, str], ...] = ()
) -> list[tuple[str, str, str, str, int, bool]]:
    """(colour, shape, direction, background, clip seed, image mode) drawn like the fine-tune's data;
    a direction that would make a ``held_out`` triple is drawn again.

    Clip seeds start at 300000: the evaluation sets use 1000+ and 2000+.
    """
    from training.demo.world import (
        BACKGROUNDS,
        COLOR_NAMES,
        COLORS,
        DIRECTION_NAMES,
        SHAPES,
        background_mean_color,
    )

    rng = np.random.default_rng(np.random.SeedSequence([20, seed]))
    bgs = (
        ["black"] * 3
        + ["gray"] * 3
        + ["navy"] * 2
        + [b for b in BACKGROUNDS if b not in ("black", "gray", "navy")]
    )
    out = []
    for i in range(n):
        bg = bgs[rng.integers(len(bgs))]
        colours = [
            c
            for c in COLOR_NAMES
            if np.linalg.norm(np.asarray(COLORS[c]) - background_mean_color(bg)) >= 0.45
        ]
        colour, shape = colours[rng.integers(len(colours))], SHAPES[rng.integers(3)]
        direction = DIRECTION_NAMES[rng.integers(8)]
        while (colour, shape, direction) in held_out:
            direction = DIRECTION_NAMES[rng.integers(8)]
        out.append(
            (
                colour,
                shape,
                direction,
                bg,
                300000 + i,
                bool(rng.random() < image_prob),
            )
        )
    return out


def _caption(
    case: tuple[str, str, str, str, int, bool], rng: np.random.Generator, paraphrase_share: float = 0.0
) -> str:
    """The canonical phrasing, or (``paraphrase_share`` of the time) any of the training grammar."""
    from training.demo.captions import training_caption
    from training.demo.world import simple_caption

    colour, shape, direction, bg, _, _ = case
    stated = bg if rng.random() < 0.7 else None
    if paraphrase_share > 0 and rng.random() < paraphrase_share:
        return training_caption(colour, shape, direction, stated, "medium", rng, canonical_share=0.0)
    return simple_caption(colour, shape, direction, stated)


def _timesteps(t: float, image_mode: Tensor, tokens: int, per_frame: int) -> Tensor:
    """[B, L] per-token timesteps: ``t`` everywhere, 0 on latent frame 0 in image mode."""
    out = torch.full((image_mode.numel(), tokens), float(t))
    out[image_mode, :per_frame] = 0.0
    return out


def _token_counts(pipe: Any, shape: torch.Size) -> tuple[int, int]:
    ph, pw = pipe.preset.patch_size[1:]
    f, h, w = shape[-3:]
    per_frame = (h // ph) * (w // pw)
    return f * per_frame, per_frame


@torch.no_grad()
def teacher_set(pipe: Any, cfg: DistillConfig, log: Callable[[str], None]) -> TeacherSet:
    """Run the teacher (preset sampler, steps, guidance, shift) on ``cfg.num_samples`` cases, batched."""
    from training.demo.world import make_single_clip

    p = pipe.preset
    cases = sample_cases(cfg.num_samples, cfg.seed, cfg.image_prob, cfg.held_out)
    cap_rng = np.random.default_rng(np.random.SeedSequence([21, cfg.seed]))
    captions = [_caption(c, cap_rng, cfg.paraphrase_share) for c in cases]
    gen = torch.Generator().manual_seed(cfg.seed + 4242)
    st, sh, sw = p.vae_stride
    h, w = p.default_size[1] // sh, p.default_size[0] // sw
    lat_shape = (pipe.z_dim, (p.default_num_frames - 1) // st + 1, h, w)
    noise = torch.randn((cfg.num_samples, *lat_shape), generator=gen)
    image_mode = torch.tensor([c[5] for c in cases])
    first = torch.zeros(cfg.num_samples, lat_shape[0], 1, h, w)
    for i, (colour, shape, direction, bg, seed, img) in enumerate(cases):
        if img:
            clip = make_single_clip(colour, shape, direction, background=bg, seed=seed)
            image = torch.from_numpy(clip.video[:, 0].copy())
            first[i] = pipe._vae_encode(
                pipe._prepare_image(image, p.default_size[1], p.default_size[0])[None, :, None]
            )[0]
    noise[image_mode, :, :1] = first[image_mode]
    context = torch.cat([pipe.encode_prompts([c]) for c in captions]).float()
    null = pipe.encode_prompts([p.negative_prompt]).float()
    g = float(p.default_guidance_scale[0])
    tokens, per_frame = _token_counts(pipe, noise.shape)
    targets = []
    t0 = time.time()
    for b0 in range(0, cfg.num_samples, cfg.teacher_batch):
        sl = slice(b0, b0 + cfg.teacher_batch)
        x, ctx, img, fr = noise[sl].clone(), context[sl], image_mode[sl], first[sl]
        n = x.shape[0]
        sampler = make_sampler(p.default_sampler, p.default_num_steps, p.default_shift)
        for t in sampler.timesteps.tolist():
            tt = _timesteps(t, img, tokens, per_frame)
            out = pipe.transformer(
                torch.cat([x, x]), torch.cat([tt, tt]), torch.cat([ctx, null.expand(n, -1, -1)])
            )
            cond, uncond = out[:n].float(), out[n:].float()
            x = sampler.step(uncond + g * (cond - uncond), x)
            x[img, :, :1] = fr[img]
        targets.append(x)
    log(f"lightning teacher: {cfg.num_samples} trajectories in {time.time() - t0:.0f}s")
    return TeacherSet(noise, context, first, image_mode, torch.cat(targets))


class LoraBranches:
    """Trainable low-rank branches ``y += (alpha / r) * up(down(x))`` on the DiT's target linears."""

    def __init__(self, dit: nn.Module, rank: int, alpha: float, gen: torch.Generator) -> None:
        self.rank, self.alpha = rank, alpha
        self.down: dict[str, nn.Parameter] = {}
        self.up: dict[str, nn.Parameter] = {}
        self._hooks = []
        for name, mod in dit.named_modules():
            if not (isinstance(mod, nn.Linear) and TARGETS.match(name)):
                continue
            # down random (the usual LoRA init), up zero: the student starts as the teacher
            bound = 1.0 / math.sqrt(mod.in_features)
            down = (torch.rand(rank, mod.in_features, generator=gen) * 2 - 1) * bound
            self.down[name] = nn.Parameter(down)
            self.up[name] = nn.Parameter(torch.zeros(mod.out_features, rank))
            self._hooks.append(mod.register_forward_hook(self._hook(name)))

    def _hook(self, name: str) -> Callable[[nn.Module, tuple[Tensor, ...], Tensor], Tensor]:
        scale = self.alpha / self.rank

        def run(module: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> Tensor:
            return output + scale * F.linear(F.linear(args[0], self.down[name]), self.up[name])

        return run

    def parameters(self) -> list[nn.Parameter]:
        return [p for name in self.down for p in (self.down[name], self.up[name])]

    def remove(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def state_dict(self) -> dict[str, Tensor]:
        """The official / Lightning key layout that `model.lora` reads."""
        out: dict[str, Tensor] = {}
        for name in self.down:
            out[f"diffusion_model.{name}.lora_down.weight"] = self.down[name].detach().clone().contiguous()
            out[f"diffusion_model.{name}.lora_up.weight"] = self.up[name].detach().clone().contiguous()
            out[f"diffusion_model.{name}.alpha"] = torch.tensor(float(self.alpha))
        return out


def student_rollout(
    dit: nn.Module, pipe: Any, data: TeacherSet, idx: Tensor, cfg: DistillConfig
) -> tuple[Tensor, list[Tensor]]:
    """The distill sampler from the teacher's noise, differentiable: (final latent, per-step x0)."""
    sampler = make_sampler("distill", cfg.num_steps, cfg.shift)
    sig = [float(s) for s in sampler.sigmas]
    x, ctx, img, fr = data.noise[idx], data.context[idx], data.image_mode[idx], data.first[idx]
    tokens, per_frame = _token_counts(pipe, x.shape)
    keep = torch.ones_like(x[:, :1, :, :1, :1])
    keep[img, :, :1] = 0.0  # image mode: frame 0 stays the image latent
    x0s = []
    for i, t in enumerate(sampler.timesteps.tolist()):
        v = dit(x, _timesteps(t, img, tokens, per_frame), ctx).float()
        x0s.append(keep * (x - sig[i] * v) + (1 - keep) * fr)
        x = keep * (x + (sig[i + 1] - sig[i]) * v) + (1 - keep) * fr
    return x, x0s


def distill_loss(final: Tensor, x0s: list[Tensor], target: Tensor) -> Tensor:
    loss = F.mse_loss(final, target)
    for i, x0 in enumerate(x0s):  # later steps see more of the answer: weight them up
        loss = loss + (i + 1) / (2 * len(x0s)) * F.mse_loss(x0, target)
    return loss


def train_lightning(pipe: Any, cfg: DistillConfig, log: Callable[[str], None]) -> dict[str, Tensor]:
    """Distil the LoRA (the pipeline's DiT is left unchanged); returns its official state dict."""
    data = teacher_set(pipe, cfg, log)
    dit = pipe.transformer
    for p in dit.parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(cfg.seed + 77)
    lora = LoraBranches(dit, cfg.rank, cfg.alpha, gen)
    opt = torch.optim.AdamW(lora.parameters(), lr=cfg.lr, weight_decay=0.0, betas=(0.9, 0.99))
    t0 = time.time()
    running = 0.0
    try:
        for step in range(cfg.train_steps):
            warm = min(1.0, (step + 1) / 50)
            cos = 0.5 * (1 + math.cos(math.pi * step / cfg.train_steps))
            for g in opt.param_groups:
                g["lr"] = cfg.lr * warm * (0.05 + 0.95 * cos)
            idx = torch.randint(0, cfg.num_samples, (cfg.batch,), generator=gen)
            with torch.enable_grad():
                final, x0s = student_rollout(dit, pipe, data, idx, cfg)
                loss = distill_loss(final, x0s, data.target[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
            torch.nn.utils.clip_grad_norm_(lora.parameters(), 1.0)
            opt.step()
            running = loss.item() if step == 0 else 0.98 * running + 0.02 * loss.item()
            if step % 100 == 0 or step == cfg.train_steps - 1:
                log(f"lightning step {step} loss {running:.4f} ({time.time() - t0:.0f}s)")
        return lora.state_dict()
    finally:
        lora.remove()


def sidecar(cfg: DistillConfig) -> dict[str, Any]:
    return {
        "models": ["wanserve-demo"],
        "description": (
            f"4-step distillation LoRA of wanserve-demo (rank {cfg.rank}): the distill sampler at "
            f"{cfg.num_steps} steps without guidance follows prompts like the 20-step default"
        ),
        "defaults": {
            "sampler": "distill",
            "num_inference_steps": cfg.num_steps,
            "guidance_scale": 1.0,
            "shift": cfg.shift,
        },
    }


def save_lora(folder: Path, state: dict[str, Tensor], cfg: DistillConfig) -> Path:
    """Write ``<folder>/wanserve-demo-lightning.safetensors`` and its sidecar ``.json``."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{LIGHTNING_NAME}.safetensors"
    save_file(state, str(path), metadata={"format": "pt"})
    (folder / f"{LIGHTNING_NAME}.json").write_text(json.dumps(sidecar(cfg), indent=2) + "\n")
    return path
