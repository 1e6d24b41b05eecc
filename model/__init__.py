"""wanserve's Wan2.2 model package (pure PyTorch; imports nothing from `app` or `worker`).

Public interface (docs/architecture.md):

    from model import load_pipeline, PRESETS, ModelPreset
    pipe = load_pipeline("tiny-ti2v")            # or a checkpoint dir (official / diffusers layout)
    video = pipe.generate("a cat", height=32, width=32, num_frames=5, num_steps=4,
                          guidance_scale=5.0, shift=5.0, seed=0)   # [3, F, H, W] float32 in [-1, 1]

`load_pipeline` is imported lazily so that `import model` (e.g. for `PRESETS`) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from model.presets import PRESETS, ModelPreset, get_preset, register_preset

if TYPE_CHECKING:
    from model.loading import CheckpointError
    from model.pipeline import WanPipeline

__all__ = [
    "PRESETS",
    "CheckpointError",
    "ModelPreset",
    "WanPipeline",
    "get_preset",
    "load_pipeline",
    "register_preset",
]


def load_pipeline(
    path_or_preset_name: str,
    *,
    device: Any = "cpu",
    dtype: Any = None,
    offload: bool = False,
) -> WanPipeline:
    """Build a ready `WanPipeline` from a tiny preset name or a checkpoint directory.

    Args:
        path_or_preset_name: a tiny preset id (`tiny-t2v-a14b`, `tiny-i2v-a14b`, `tiny-ti2v`) or a
            directory in the official Wan2.2 layout or the diffusers layout (auto-detected).
        device: where the DiT runs (`"cpu"`, `"cuda"`, `torch.device`).
        dtype: DiT / text-encoder dtype; None -> bfloat16 on CUDA, float32 on CPU.
        offload: keep the T5 and the inactive expert on CPU, moving each to `device` only while used.
    """
    from model.loading import load_pipeline as _load

    return _load(path_or_preset_name, device=device, dtype=dtype, offload=offload)


def __getattr__(name: str) -> Any:
    if name == "CheckpointError":
        from model.loading import CheckpointError

        return CheckpointError
    if name == "WanPipeline":
        from model.pipeline import WanPipeline

        return WanPipeline
    raise AttributeError(f"module 'model' has no attribute {name!r}")
