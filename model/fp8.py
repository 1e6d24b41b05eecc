"""FP8 linear layers for the DiT: float8 e4m3 weights with per-output-row scales, activations
quantised per token at run time ("dynamic, per-row"), products through ``torch._scaled_mm``.

This is the recipe LightX2V and torchao's ``Float8DynamicActivationFloat8WeightConfig(PerRow())``
use for Wan: the weight's resident bytes halve against bf16, and on Hopper the matmuls run on the
FP8 tensor cores. Sensitive layers stay in the compute dtype (bf16): the patch/text/time
embeddings, the head, and the first and last ``keep_edge_blocks`` blocks, as xDiT and SGLang do
for Wan.

The scaled product needs a CUDA device of compute capability 8.9 or newer (Ada, Hopper,
Blackwell); anywhere else ``quantize_transformer_fp8`` raises ``Fp8Unavailable`` with the reason.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["Float8Linear", "Fp8Unavailable", "fp8_support", "quantize_transformer_fp8"]

E4M3 = torch.float8_e4m3fn
E4M3_MAX = float(torch.finfo(E4M3).max)  # 448
_MIN_SCALE = 1e-12  # an all-zero row would otherwise divide by zero


class Fp8Unavailable(RuntimeError):
    """FP8 was asked for where it cannot run (no CUDA, an older GPU, a torch without float8)."""


def fp8_support(device: torch.device | str) -> str | None:
    """None when FP8 matmuls can run on `device`, else the reason they cannot."""
    device = torch.device(device)
    if device.type != "cuda":
        return f"FP8 needs a CUDA GPU of compute capability >= 8.9; the device is {device.type!r}"
    if not torch.cuda.is_available():
        return "FP8 needs CUDA, and torch.cuda.is_available() is False"
    major, minor = torch.cuda.get_device_capability(device)
    if (major, minor) < (8, 9):
        return f"FP8 needs compute capability >= 8.9 (Ada/Hopper); this GPU has {major}.{minor}"
    if not hasattr(torch, "_scaled_mm"):
        return f"this torch ({torch.__version__}) has no torch._scaled_mm"
    return None


def _quantize_rows(x: Tensor) -> tuple[Tensor, Tensor]:
    """x [M, K] -> (fp8 [M, K], fp32 scale [M, 1]) with x ~= fp8 * scale per row."""
    amax = x.detach().abs().amax(dim=1, keepdim=True).float().clamp(min=_MIN_SCALE)  # [M, 1]
    scale = amax / E4M3_MAX
    q = (x.float() / scale).clamp(-E4M3_MAX, E4M3_MAX).to(E4M3)
    return q, scale


class Float8Linear(nn.Module):
    """A frozen ``nn.Linear`` with an FP8 weight; outputs in ``out_dtype`` (the compute dtype)."""

    def __init__(self, linear: nn.Linear, out_dtype: torch.dtype = torch.bfloat16) -> None:
        super().__init__()
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.out_dtype = out_dtype
        w_q, w_scale = _quantize_rows(linear.weight.data)  # [N, K], [N, 1]
        self.register_buffer("weight_fp8", w_q)
        self.register_buffer("weight_scale", w_scale.t().contiguous())  # [1, N]
        bias = None if linear.bias is None else linear.bias.data.to(out_dtype)
        self.register_buffer("bias", bias)

    def forward(self, x: Tensor) -> Tensor:
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)  # [M, K]
        x_q, x_scale = _quantize_rows(x2)  # per token
        # _scaled_mm wants the second operand column-major: the [N, K] row-major weight transposed
        out = torch._scaled_mm(
            x_q,
            self.weight_fp8.t(),
            scale_a=x_scale,
            scale_b=self.weight_scale,
            out_dtype=self.out_dtype,
        )  # [M, N]
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, fp8=e4m3 per-row"


def _fp8_shape_ok(linear: nn.Linear) -> bool:
    # the FP8 tensor-core kernels need both matrix dimensions divisible by 16
    return linear.in_features % 16 == 0 and linear.out_features % 16 == 0


def quantize_transformer_fp8(transformer: nn.Module, *, keep_edge_blocks: int = 1) -> int:
    """Swap the Linear layers of the DiT's inner blocks for `Float8Linear`, in place.

    Embeddings, the head and the first/last `keep_edge_blocks` blocks are left as they are.
    Returns how many layers were converted. Raises `Fp8Unavailable` where FP8 cannot run.
    """
    blocks = getattr(transformer, "blocks", None)
    if not isinstance(blocks, nn.ModuleList):
        raise TypeError("quantize_transformer_fp8 expects a WanTransformer (a module with .blocks)")
    param = next(transformer.parameters())
    reason = fp8_support(param.device)
    if reason is not None:
        raise Fp8Unavailable(reason)
    out_dtype = param.dtype if param.dtype in (torch.bfloat16, torch.float16) else torch.bfloat16
    n = len(blocks)
    converted = 0
    for i, block in enumerate(blocks):
        if i < keep_edge_blocks or i >= n - keep_edge_blocks:
            continue
        for name, child in list(block.named_modules()):
            for attr, leaf in list(child.named_children()):
                if isinstance(leaf, nn.Linear) and _fp8_shape_ok(leaf):
                    setattr(child, attr, Float8Linear(leaf, out_dtype))
                    converted += 1
            del name
    return converted
