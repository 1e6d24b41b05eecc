"""Wan2.2 sampling pipelines: T2V-A14B, I2V-A14B and TI2V-5B (text-only and image modes).

Reproduces the sampling loops of `wan/text2video.py` (`WanT2V`), `wan/image2video.py` (`WanI2V`)
and `wan/textimage2video.py` (`WanTI2V`) of Wan2.2 commit 42bf4cf:

* noise: float32 `randn([z, T', H/s, W/s])` from a CPU `torch.Generator` seeded by `seed`
  (T' = (F - 1) / 4 + 1), so a seed gives the same video on any device;
* two experts (A14B): the high-noise expert while `t >= boundary * 1000`, then the low-noise one;
  guidance scales are given as (low_noise, high_noise), the official tuple order;
* I2V-A14B: `y = [mask (4 ch, 1 on latent frame 0), VAE(image + F-1 black frames) (16 ch)]` is
  concatenated to the 16-channel latent inside the DiT (36 input channels);
* TI2V-5B with an image: latent frame 0 is pinned to the clean image latent before the loop and
  after every step, and its tokens get timestep 0 (per-token timesteps `[B, L]`);
* classifier-free guidance `uncond + g * (cond - uncond)`; the two passes are batched into one
  forward (B = 2) unless `cfg_batch` is off (then two passes, as upstream);
* the sampler (`model.scheduler`) sees the DiT's float32 velocity; the VAE decodes the final
  latent into `[3, F, H, W]` in [-1, 1].

`generate` runs `check_inputs` (defaults filled in, one `Sampling`) -> encode -> denoise -> decode.
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model.cache import StepCache, resolve_cache
from model.denoise_state import DenoiseState
from model.presets import ModelPreset
from model.preview import LatentRGB, published_latent_rgb
from model.scheduler import make_sampler
from model.text_encoder import TextEncoder, pad_embeddings

if TYPE_CHECKING:
    from model.transformer import WanTransformer
    from model.vae21 import Wan21VAE
    from model.vae22 import Wan22VAE

__all__ = ["DenoiseState", "PreviewHook", "Sampling", "StepCallback", "WanPipeline"]

StepCallback = Callable[[int, int, float], None]
# preview(step, total_steps, x0) after each step: x0() computes the predicted clean latent
# [1, z, T', h, w] (float32, on the DiT device) only when the hook asks for it.
PreviewHook = Callable[[int, int, Callable[[], torch.Tensor]], None]
NUM_TRAIN_TIMESTEPS = 1000


def _cover_box(iw: int, ih: int, width: int, height: int) -> tuple[int, int, int, int]:
    """Smallest resize of an (iw, ih) image covering (width, height), and its centred crop origin.

    -> (new_w, new_h, left, top), as the official TI2V preprocessing computes them.
    """
    scale = max(width / iw, height / ih)
    nw, nh = max(width, round(iw * scale)), max(height, round(ih * scale))
    return nw, nh, (nw - width) // 2, (nh - height) // 2


_R = TypeVar("_R")


def _no_grad_inference(fn: Callable[..., _R]) -> Callable[..., _R]:
    """Run a pipeline method in inference mode, or only without grad for an FSDP-sharded pipeline
    (FSDP's parameter all-gathers bump version counters, which inference tensors lack)."""

    @functools.wraps(fn)
    def run(self: Any, *args: Any, **kwargs: Any) -> _R:
        with torch.inference_mode(not self.fsdp), torch.no_grad():
            return fn(self, *args, **kwargs)

    return run


def _module_device(m: nn.Module) -> torch.device:
    return next(m.parameters()).device


def _module_dtype(m: nn.Module) -> torch.dtype:
    return next(m.parameters()).dtype


@dataclass(frozen=True)
class Sampling:
    """One checked request with the preset's defaults filled in: what the sampling loops read."""

    prompt: str
    negative_prompt: str
    image: Any  # PIL image, [3, H, W] tensor in [-1, 1], or None
    height: int
    width: int
    num_frames: int
    num_steps: int
    guidance: tuple[float, float]  # (low_noise, high_noise)
    shift: float
    sampler: str
    seed: int
    callback: StepCallback | None


def _x0_of(
    x_t: torch.Tensor, v: torch.Tensor, sigma: float, first_frame: torch.Tensor | None
) -> Callable[[], torch.Tensor]:
    """The flow-matching clean-latent prediction ``x0 = x_t - sigma * v``, computed on demand."""

    def x0() -> torch.Tensor:
        out = x_t - sigma * v
        if first_frame is not None:
            out[:, :, :1] = first_frame
        return out

    return x0


class WanPipeline:
    """One loaded Wan2.2 model: text encoder, one or two DiT experts, VAE, and its preset.

    Args:
        preset: defaults and constraints (`model.presets.ModelPreset`).
        text_encoder: `model.text_encoder.TextEncoder`.
        transformer: the DiT; for two-expert models the **high-noise** expert.
        transformer_2: the low-noise expert (two-expert models only), else None.
        vae: `Wan21VAE` / `Wan22VAE` (normalised latents in and out).
        device: where the DiT runs; dtype: the DiT / text encoder dtype.
        offload: keep the text encoder and the inactive expert on CPU, moving each module to
            `device` only while it is used (one expert on the device at a time).
    """

    def __init__(
        self,
        preset: ModelPreset,
        text_encoder: TextEncoder,
        transformer: WanTransformer,
        vae: Wan21VAE | Wan22VAE,
        *,
        transformer_2: WanTransformer | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        offload: bool = False,
    ) -> None:
        if (transformer_2 is None) != (preset.boundary is None):
            raise ValueError(
                f"preset {preset.model_id!r} has boundary={preset.boundary} but "
                f"{'one' if transformer_2 is None else 'two'} experts were given"
            )
        self.preset = preset
        self.text_encoder = text_encoder
        self.transformer = transformer
        self.transformer_2 = transformer_2
        self.vae = vae
        self.device = torch.device(device)
        self.dtype = dtype
        self.offload = offload and self.device.type != "cpu"
        # Batch the cond/uncond passes into one forward. Results equal two passes; turn off to
        # halve peak activation memory.
        self.cfg_batch = not self.offload
        # Trimmed text embeddings of recent prompts (the default negative prompt is reused by
        # every request); the encoder is deterministic, so this changes no result.
        self.text_cache_size = 16
        self._text_cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.lora_fuse = False  # per-request LoRAs: unfused branch (False) or merged weights (True)
        # Step-cache calibration found beside the weights (`model.cache_calibrate`), and the cache
        # state of the last request (steps computed / skipped).
        self.cache_calibration: dict[str, Any] | None = None
        self.last_cache: Any = None  # a StepCache, or the object given as `cache`
        self.parallel: Any = None  # `model.parallel.ParallelState` when one generation spans processes
        # Latent-to-RGB preview factors (`model.preview`): the published ones for an official VAE;
        # the loader replaces them with fitted ones found beside the weights.
        self.latent_rgb: LatentRGB | None = published_latent_rgb(vae)
        self.fsdp = False  # experts and text encoder sharded over the ranks (`model.fsdp`)
        # (high-noise device, low-noise device) once `place_experts` put each expert on its own device
        self.expert_devices: tuple[torch.device, torch.device] | None = None

    def compile_blocks(self, **options: Any) -> None:
        """Regional compilation: `torch.compile` each repeated DiT block (idempotent).

        Every block has the same code and shapes, so one compiled graph serves all of them
        (parameters are graph inputs), compiling in a fraction of the time of the whole model.
        The first forward per (size, frames, mode) bucket compiles; warm the served buckets first.
        `options` go to `torch.compile` (e.g. `mode="max-autotune-no-cudagraphs"`).
        """
        for dit in self.experts:
            for block in dit.blocks:
                if getattr(block, "_compiled_call_impl", None) is None:
                    block.compile(**options)

    def place_experts(self, high: torch.device | str, low: torch.device | str) -> None:
        """Keep the high-noise expert resident on `high` and the low-noise one on `low`.

        No swapping and no offload: the text encoder runs beside the high-noise expert, the VAE
        beside the low-noise one (it decodes right after the last step), and a job's latents and
        sampler history cross from `high` to `low` once, at the expert boundary.
        """
        if self.transformer_2 is None:
            raise ValueError(
                f"{self.preset.model_id!r} has one expert; expert placement needs a two-expert (A14B) model"
            )
        if self.offload or self.fsdp:
            raise ValueError("expert placement keeps both experts resident: it excludes offload and FSDP")
        dh, dl = torch.device(high), torch.device(low)
        self.transformer.to(dh)
        self.text_encoder.to(dh)
        self.transformer_2.to(dl)
        self.vae.to(dl)
        self.device = dh
        self._text_cache.clear()  # cached embeddings live on the old device
        self.expert_devices = (dh, dl)

    # -- properties ---------------------------------------------------------------------------
    @property
    def experts(self) -> tuple[WanTransformer, ...]:
        return (self.transformer,) if self.transformer_2 is None else (self.transformer, self.transformer_2)

    @property
    def z_dim(self) -> int:
        return int(self.vae.config.z_dim)

    # -- device management: every offload move goes through `_place` -------------------------
    def _place(self, active: nn.Module | None) -> None:
        """With offload: `active` on the device, the text encoder and experts other than it on CPU
        (None: all of them on CPU). Without offload everything stays where it was loaded."""
        if not self.offload:
            return
        cpu = torch.device("cpu")
        for other in (self.text_encoder, *self.experts):
            if other is not active and _module_device(other) != cpu:
                other.to(cpu)
        if active is not None and _module_device(active) != self.device:
            active.to(self.device)

    def _release(self) -> None:
        """End of a call: with offload, every offloadable module back on CPU, the CUDA cache freed."""
        if not self.offload:
            return
        self._place(None)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    # -- 0. validation ---------------------------------------------------------------------------
    def _guidance_pair(self, guidance_scale: float | Sequence[float]) -> tuple[float, float]:
        """-> (low_noise, high_noise) scales; a float applies to both experts (as upstream)."""
        if isinstance(guidance_scale, (int, float)):
            g = float(guidance_scale)
            return g, g
        gs = tuple(float(v) for v in guidance_scale)
        if len(gs) == 1:
            return gs[0], gs[0]
        if len(gs) == 2 and self.transformer_2 is not None:
            return gs[0], gs[1]
        raise ValueError(
            f"guidance_scale must be a float or a {self.preset.num_experts}-tuple for "
            f"{self.preset.model_id!r}, got {guidance_scale!r}"
        )

    def check_inputs(
        self,
        prompt: str,
        *,
        negative_prompt: str | None = None,
        image: Any = None,
        height: int | None = None,
        width: int | None = None,
        num_frames: int | None = None,
        num_steps: int | None = None,
        guidance_scale: float | Sequence[float] | None = None,
        shift: float | None = None,
        sampler: str = "unipc",
        seed: int = 0,
        callback: StepCallback | None = None,
    ) -> Sampling:
        """Fill in the preset's defaults and check -> the `Sampling` to run.

        Raises ValueError naming the offending argument and its value. Unset sizes, frames, steps,
        guidance and shift take the preset defaults; `negative_prompt=None` the official one.
        """
        p = self.preset
        width = p.default_size[0] if width is None else width
        height = p.default_size[1] if height is None else height
        num_frames = p.default_num_frames if num_frames is None else num_frames
        num_steps = p.default_num_steps if num_steps is None else num_steps
        guidance_scale = p.default_guidance_scale if guidance_scale is None else guidance_scale
        shift = p.default_shift if shift is None else shift
        if not isinstance(prompt, str):
            raise ValueError(f"prompt must be a string, got {type(prompt).__name__}")
        if negative_prompt is not None and not isinstance(negative_prompt, str):
            raise ValueError(
                f"negative_prompt must be a string or None, got {type(negative_prompt).__name__}"
            )
        mult = p.spatial_multiple
        for name, v in (("height", height), ("width", width)):
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0 or v % mult:
                raise ValueError(
                    f"{name} must be a positive multiple of {mult} for {p.model_id!r}, got {v!r}"
                )
        st = p.vae_stride[0]
        if (
            not isinstance(num_frames, int)
            or (num_frames - 1) % st
            or not (p.min_num_frames <= num_frames <= p.max_num_frames)
        ):
            raise ValueError(
                f"num_frames must be {st}n+1 in [{p.min_num_frames}, {p.max_num_frames}], got {num_frames!r}"
            )
        if not isinstance(num_steps, int) or not 1 <= num_steps <= p.max_num_steps:
            raise ValueError(f"num_steps must be an integer in [1, {p.max_num_steps}], got {num_steps!r}")
        pair = self._guidance_pair(guidance_scale)
        if not all(math.isfinite(g) and g >= 0 for g in pair):
            raise ValueError(f"guidance_scale must be finite and >= 0, got {guidance_scale!r}")
        if not isinstance(shift, (int, float)) or not math.isfinite(shift) or shift <= 0:
            raise ValueError(f"shift must be a positive number, got {shift!r}")
        if sampler not in p.samplers:
            raise ValueError(f"sampler must be one of {list(p.samplers)}, got {sampler!r}")
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
            raise ValueError(f"seed must be an integer in [0, 2**63), got {seed!r}")
        if callback is not None and not callable(callback):
            raise ValueError(f"callback must be callable, got {callback!r}")
        self._check_image(image)
        return Sampling(
            prompt=prompt,
            negative_prompt=p.negative_prompt if negative_prompt is None else negative_prompt,
            image=image,
            height=height,
            width=width,
            num_frames=num_frames,
            num_steps=num_steps,
            guidance=pair,
            shift=float(shift),
            sampler=sampler,
            seed=seed,
            callback=callback,
        )

    def _check_image(self, image: Any) -> None:
        p = self.preset
        if image is None:
            if p.image_input == "required":
                raise ValueError(f"image is required for {p.model_id!r} (task {p.task})")
            return
        if p.image_input == "none":
            raise ValueError(f"image must be None for {p.model_id!r} (task {p.task}), got an image")
        if isinstance(image, torch.Tensor):
            if image.ndim != 3 or image.shape[0] != 3:
                raise ValueError(f"image tensor must have shape [3, H, W], got {list(image.shape)}")
            if not torch.isfinite(image).all():
                raise ValueError("image tensor contains non-finite values")
        elif not hasattr(image, "convert") or not hasattr(image, "size"):
            raise ValueError(f"image must be a PIL.Image or a [3, H, W] tensor, got {type(image).__name__}")

    # -- image preprocessing ------------------------------------------------------------------
    @staticmethod
    def _pil_to_tensor(image: Any) -> torch.Tensor:
        """PIL -> [3, H, W] float32 in [-1, 1] (to_tensor then (x - 0.5) / 0.5, as upstream)."""
        arr = np.asarray(image.convert("RGB"), dtype=np.uint8)  # [H, W, 3]
        x = torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div(255.0)
        return x.sub_(0.5).div_(0.5)

    def _prepare_image(self, image: Any, height: int, width: int) -> torch.Tensor:
        """-> [3, height, width] float32 on CPU, in [-1, 1] up to resampling overshoot.

        One geometry for both kinds of input: resize to (new_w, new_h), then crop at (left, top).
        I2V-A14B: bicubic stretch to the target size (no crop), as upstream. TI2V: cover-resize,
        then centre crop (`_cover_box`). Only the resampling differs by input: a PIL image is resized
        for TI2V with LANCZOS in 8 bits as upstream; a tensor (and any I2V image) with bicubic, with
        antialias for TI2V (there is no upstream tensor path).
        The overshoot of a bicubic resize is kept: the official I2V path hands the resized image to
        the VAE unclamped (clamping moves a sharp-edged image's latent by ~1e-1).
        """
        ti2v = self.preset.task == "ti2v"
        pil = not isinstance(image, torch.Tensor)
        iw, ih = image.size if pil else (int(image.shape[2]), int(image.shape[1]))
        nw, nh, left, top = _cover_box(iw, ih, width, height) if ti2v else (width, height, 0, 0)
        if pil and ti2v and (iw, ih) != (nw, nh):
            from PIL import Image

            image = image.convert("RGB").resize((nw, nh), Image.Resampling.LANCZOS)
        x = self._pil_to_tensor(image) if pil else image.detach().float().cpu()  # [3, ih', iw']
        if tuple(x.shape[1:]) != (nh, nw):
            x = F.interpolate(x[None], size=(nh, nw), mode="bicubic", antialias=ti2v)[0]
        return x[:, top : top + height, left : left + width]

    # -- 1. text ---------------------------------------------------------------------------------
    def encode_prompts(self, prompts: Sequence[str]) -> torch.Tensor:
        """-> context [B, text_len, text_dim] on the DiT device, zero-padded, in the DiT dtype."""
        te = self.text_encoder
        found = {p: self._text_cache[p] for p in prompts if p in self._text_cache}
        todo = [p for p in dict.fromkeys(prompts) if p not in found]
        if todo:
            self._place(te)
            for p, e in zip(todo, te.encode(todo), strict=True):
                found[p] = e.to(self.device, self.dtype)  # [L_i, text_dim], trimmed
            self._place(None)
        for p in prompts:  # most recently used last; evict the oldest
            self._text_cache[p] = found[p]
            self._text_cache.move_to_end(p)
        while len(self._text_cache) > self.text_cache_size:
            self._text_cache.popitem(last=False)
        return pad_embeddings([found[p] for p in prompts], te.text_len)

    # -- 2. conditioning latents ---------------------------------------------------------------
    @torch.no_grad()
    def _vae_encode(self, video: torch.Tensor) -> torch.Tensor:
        """[1, 3, F, H, W] in [-1, 1] -> normalised latent (float32) on the DiT device."""
        vdev = _module_device(self.vae)
        z: torch.Tensor = self.vae.encode(video.to(vdev, _module_dtype(self.vae)))
        return z.to(self.device, torch.float32)

    def _i2v_condition(self, img: torch.Tensor, num_frames: int, lat_shape: Sequence[int]) -> torch.Tensor:
        """I2V-A14B `y`: [1, 4 + z, T', h, w] = [frame mask, VAE(image then black frames)]."""
        _, t_lat, h, w = lat_shape
        # Pixel mask (1 on frame 0), frame 0 repeated 4x, folded into 4 channels per latent frame.
        st = self.preset.vae_stride[0]
        mask = torch.zeros(1, st, t_lat, h, w, device=self.device)
        mask[:, :, 0] = 1.0  # [1, 4, T', h, w]: all 4 channels are 1 on latent frame 0 only
        frames = torch.cat([img[:, None], img.new_zeros(3, num_frames - 1, *img.shape[1:])], dim=1)
        cond = self._vae_encode(frames[None])  # [1, z, T', h, w]
        return torch.cat([mask, cond], dim=1)

    # -- 3. the denoising loop -----------------------------------------------------------------
    def _velocity(
        self,
        dit: WanTransformer,
        x: torch.Tensor,
        t: torch.Tensor,
        ctx: torch.Tensor,
        ctx_null: torch.Tensor,
        y: torch.Tensor | None,
        g: float,
        cache: Any = None,
        step: tuple[int, int, int, int] = (0, 0, 0, 0),
    ) -> torch.Tensor:
        """CFG velocity (float32, like x). x: [1, C, T', h, w]; t: [1] or [1, L].

        With a step cache, ``step`` is (step, expert, step within the expert, the expert's steps).
        """
        xin = x.to(self.dtype)
        yin = None if y is None else y.to(self.dtype)
        kw: dict[str, Any] = {}

        def declare(*branches: str) -> dict[str, Any]:
            if cache is None:
                return kw
            cache.begin_step(step[0], step[1], branches, step[2], step[3])
            return {"cache": cache}

        if g == 1.0:  # uncond + 1 * (cond - uncond) == cond: skip the unconditional pass
            single: torch.Tensor = dit(xin, t, ctx, y=yin, **declare("cond")).float()
            return single
        par = self.parallel
        if par is not None and par.cfg_size == 2:  # CFG parallel: cond on one rank group, uncond on the other
            mine = dit(xin, t, ctx if par.cfg_rank == 0 else ctx_null, y=yin).float()
            cond, uncond = par.exchange_cfg(mine)
        elif self.cfg_batch:
            out: torch.Tensor = dit(
                torch.cat([xin, xin]),
                torch.cat([t, t]),
                torch.cat([ctx, ctx_null]),
                y=None if yin is None else torch.cat([yin, yin]),
                **declare("cond", "uncond"),
            ).float()
            cond, uncond = out[:1], out[1:]
        else:
            cond = dit(xin, t, ctx, y=yin, **declare("cond")).float()
            uncond = dit(xin, t, ctx_null, y=yin, **declare("uncond")).float()
        guided: torch.Tensor = uncond + g * (cond - uncond)
        return guided

    @_no_grad_inference
    def generate(
        self,
        prompt: str,
        *,
        negative_prompt: str | None = None,
        image: Any = None,
        height: int | None = None,
        width: int | None = None,
        num_frames: int | None = None,
        num_steps: int | None = None,
        guidance_scale: float | Sequence[float] | None = None,
        shift: float | None = None,
        sampler: str = "unipc",
        seed: int = 0,
        callback: StepCallback | None = None,
        loras: Sequence[tuple[Any, float]] | None = None,
        cache: Mapping[str, Any] | Any = None,
        preview: PreviewHook | None = None,
    ) -> torch.Tensor:
        """Generate one video -> [3, F, H, W] float32 in [-1, 1] (on CPU).

        Unset sizes/steps/guidance/shift take the preset defaults. `guidance_scale` is a float or,
        for two-expert models, a (low_noise, high_noise) pair. `negative_prompt=None` means the
        official default negative prompt (an empty string is used as given).
        `callback(step, total_steps, timestep)` runs after every step (1-based); an exception
        raised in it stops generation and propagates. `loras`: (path or `model.lora.LoraSpec`,
        scale) pairs applied for this call only (`model.lora`); `self.lora_fuse` merges them instead.
        `cache={"type": T, "threshold": x}` skips transformer blocks on steps that change little
        (`model.cache`; a `CacheError` for a bad request); None runs every block of every step.
        `preview(step, total_steps, x0)` runs after `callback`; ``x0()`` returns the predicted clean
        latent of that step (for live previews, `model.preview`).
        """
        run = self.check_inputs(
            prompt,
            negative_prompt=negative_prompt,
            image=image,
            height=height,
            width=width,
            num_frames=num_frames,
            num_steps=num_steps,
            guidance_scale=guidance_scale,
            shift=shift,
            sampler=sampler,
            seed=seed,
            callback=callback,
        )
        video = self._run(run, "all", loras=loras, cache=cache, preview=preview)
        assert isinstance(video, torch.Tensor)
        return video

    @_no_grad_inference
    def generate_high(self, prompt: str, **kwargs: Any) -> DenoiseState:
        """First half of `generate` on a two-expert model: text, noise, conditioning and the
        high-noise steps. -> the state on the high-noise expert's device; `generate_low` finishes it.

        Same keywords as `generate` but `callback`, `loras`, `cache` and `preview`. Splitting a job
        lets two workers, each owning one expert, pipeline consecutive jobs (`model.expert_pipeline`).
        """
        if self.transformer_2 is None:
            raise ValueError(f"{self.preset.model_id!r} has one expert: there is no phase to split")
        state = self._run(self.check_inputs(prompt, **kwargs), "high")
        assert isinstance(state, DenoiseState)
        return state

    @_no_grad_inference
    def generate_low(self, state: DenoiseState) -> torch.Tensor:
        """Second half: move `state` to the low-noise expert's device, run its steps, decode."""
        assert self.transformer_2 is not None
        state = state.to(_module_device(self.transformer_2))
        self._place(self.transformer_2)
        try:
            self._denoise(state, len(state.timesteps), None, None, None)
            return self.decode(state.latent)
        finally:
            self._release()

    def _run(
        self,
        run: Sampling,
        phase: str,
        *,
        loras: Sequence[tuple[Any, float]] | None = None,
        cache: Mapping[str, Any] | Any = None,
        preview: PreviewHook | None = None,
    ) -> torch.Tensor | DenoiseState:
        """The whole job (`phase="all"`) or its high-noise part, with LoRAs and a step cache."""
        if self.fsdp:
            from model.fsdp import check_fsdp_request

            check_fsdp_request(self, cache=cache, loras=loras)
        if cache is not None and self.expert_devices is not None:
            raise ValueError("step caching is not supported with experts placed on two devices")
        if cache is None or isinstance(cache, Mapping):
            spec = resolve_cache(
                cache, self.preset.model_id, self.cache_calibration, run.sampler, run.image is not None
            )
            self.last_cache = None if spec is None else StepCache(spec, run.num_steps)
        else:  # a ready cache-like object (begin_step / run_blocks), e.g. the calibration recorder
            self.last_cache = cache
        applied = []
        if loras:
            from model.lora import apply_to_experts

            applied = apply_to_experts(self.experts, loras, fuse=self.lora_fuse)
        try:
            state = self._prepare(run)
            if phase == "high":
                self._denoise(state, state.n_high, run.callback, self.last_cache, None)
                return state
            if self.expert_devices is not None:  # the latents cross once, at the boundary
                self._denoise(state, state.n_high, run.callback, self.last_cache, preview)
                state = state.to(self.expert_devices[1])
            self._denoise(state, len(state.timesteps), run.callback, self.last_cache, preview)
            return self.decode(state.latent)
        finally:
            for handle in applied:  # restores the resident weights exactly
                handle.remove()
            self._release()

    def expert_at(self, t: float, guidance: tuple[float, float]) -> tuple[WanTransformer, float, bool]:
        """-> (the DiT for timestep `t`, its guidance scale, whether it is the high-noise expert).

        Two-expert models switch at ``boundary * 1000``; `guidance` is (low_noise, high_noise)."""
        boundary = self.preset.boundary
        if boundary is None:
            return self.transformer, guidance[0], False
        if t >= boundary * NUM_TRAIN_TIMESTEPS:
            return self.transformer, guidance[1], True
        assert self.transformer_2 is not None
        return self.transformer_2, guidance[0], False

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Normalised latent [1, z, T', h, w] -> video [3, F, H, W] float32 in [-1, 1] on CPU."""
        self._place(None)  # with offload, the experts leave the device before the VAE decodes
        vdev = _module_device(self.vae)
        video: torch.Tensor = self.vae.decode(latent.to(vdev, _module_dtype(self.vae)))  # [1, 3, F, H, W]
        return video[0].float().cpu()

    def _prepare(self, run: Sampling) -> DenoiseState:
        """Text contexts, initial noise, image conditioning and the sampler of one job."""
        p = self.preset
        st, sh, sw = p.vae_stride
        ph, pw = p.patch_size[1], p.patch_size[2]
        lat_shape = (self.z_dim, (run.num_frames - 1) // st + 1, run.height // sh, run.width // sw)

        # 1. text: cond and uncond contexts [1, text_len, text_dim]
        ctx_both = self.encode_prompts([run.prompt, run.negative_prompt])
        ctx, ctx_null = ctx_both[:1], ctx_both[1:]

        # 2. initial noise (float32, CPU generator) and the image conditioning
        gen = torch.Generator(device="cpu").manual_seed(run.seed)
        latent = torch.randn((1, *lat_shape), generator=gen, dtype=torch.float32).to(self.device)
        y: torch.Tensor | None = None
        first_frame: torch.Tensor | None = None  # TI2V image latent [1, z, 1, h, w]
        tok_t: torch.Tensor | None = None
        if run.image is not None:
            img = self._prepare_image(run.image, run.height, run.width)  # [3, H, W]
            if p.task == "i2v":
                y = self._i2v_condition(img, run.num_frames, lat_shape)  # [1, 20, T', h, w]
            else:
                first_frame = self._vae_encode(img[None, :, None])  # [1, z, 1, h, w]
                latent[:, :, :1] = first_frame
                # per-token timestep mask: 0 on the tokens of latent frame 0, 1 elsewhere -> [1, L]
                t_lat, h, w = lat_shape[1:]
                tok_t = torch.ones(t_lat, h // ph, w // pw, device=self.device)
                tok_t[0] = 0.0
                tok_t = tok_t.flatten()[None]

        # 3. the sampler; `_denoise` runs its steps
        sampler = make_sampler(run.sampler, run.num_steps, run.shift)
        ts = sampler.timesteps.tolist()
        n_high = sum(1 for v in ts if self.expert_at(v, run.guidance)[2])
        boundary = None if p.boundary is None else p.boundary * NUM_TRAIN_TIMESTEPS
        return DenoiseState(
            latent, sampler, ctx, ctx_null, y, first_frame, tok_t, ts, boundary, n_high, run.guidance
        )

    def _denoise(
        self,
        s: DenoiseState,
        stop: int,
        callback: StepCallback | None,
        cache: Any,
        preview: PreviewHook | None,
    ) -> None:
        """Run steps `s.index` .. `stop - 1` on `s` (in place)."""
        total = len(s.timesteps)
        device = s.latent.device
        for i in range(s.index, stop):
            t_int = s.timesteps[i]
            dit, g, high = self.expert_at(t_int, s.guidance)
            if not s.sampler.uses_guidance:
                g = 1.0  # distilled few-step sampling: one conditional forward per step
            self._place(dit)
            t = (
                (s.tok_t * float(t_int))
                if s.tok_t is not None
                else torch.tensor([float(t_int)], device=device)
            )
            where = (i, 0, i, s.n_high) if high else (i, 1, i - s.n_high, total - s.n_high)
            v = self._velocity(dit, s.latent, t, s.ctx, s.ctx_null, s.y, g, cache, where)
            x_t = s.latent  # the samplers return a new tensor: x_t stays intact for the preview
            s.latent = s.sampler.step(v, s.latent)
            if s.first_frame is not None:
                s.latent[:, :, :1] = s.first_frame  # keep frame 0 pinned to the image latent
            s.index = i + 1
            if callback is not None:
                callback(i + 1, total, float(t_int))
            if preview is not None:
                preview(i + 1, total, _x0_of(x_t, v, s.sampler.sigmas[i].item(), s.first_frame))
