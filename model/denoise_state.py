"""A generation paused between denoising steps, so the rest can run elsewhere.

Expert placement hands it from the high-noise expert's device to the low-noise one at the boundary;
the expert pipeline (`model.expert_pipeline`) sends it from one process to the next. Everything in
it is a tensor, a python number or the sampler (a plain object holding tensors), so it pickles.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor

__all__ = ["DenoiseState"]


@dataclass
class DenoiseState:
    """Latent, sampler history and conditioning of one job; `index` is the next step to run."""

    latent: Tensor  # [1, z, T', h, w] float32
    sampler: Any  # `model.scheduler.FlowSampler`, with its multistep history
    ctx: Tensor  # [1, text_len, text_dim] conditional text context
    ctx_null: Tensor  # the negative prompt's context
    y: Tensor | None  # I2V conditioning [1, 4 + z, T', h, w]
    first_frame: Tensor | None  # TI2V image latent [1, z, 1, h, w], pinned after every step
    tok_t: Tensor | None  # TI2V image mode per-token timestep mask [1, L]
    timesteps: list[float]  # the sampler's grid, as python numbers
    boundary: float | None  # expert switch (timestep units), None with one expert
    n_high: int  # steps of the high-noise expert
    guidance: tuple[float, float]  # (low-noise, high-noise) scales
    index: int = 0

    def to(self, device: torch.device | str) -> DenoiseState:
        """Move every tensor and the sampler history to `device` (in place); returns self."""
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Tensor):
                setattr(self, f.name, value.to(device))
        self.sampler.to(device)
        return self
