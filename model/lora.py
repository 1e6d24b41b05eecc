"""LoRAs for the Wan2.2 DiT: parse the formats found in the wild and apply them removably.

Formats (shared/reference/acceleration.md §1), all normalised to our (official) module names:

* official / ComfyUI / Lightning: ``diffusion_model.blocks.N.self_attn.q.lora_down.weight`` /
  ``lora_up.weight`` (or ``lora_A`` / ``lora_B``), optional ``.alpha``, and full deltas
  ``.diff`` (weight) / ``.diff_b`` (bias);
* diffusers / PEFT: ``transformer.blocks.N.attn1.to_q.lora_A.weight`` / ``lora_B.weight``
  (``lora_B.bias`` is a bias delta), diffusers module names;
* musubi-tuner: ``lora_unet_blocks_N_self_attn_q.lora_down.weight`` + ``.alpha``.

Numerics (those of diffusers' ``load_lora_weights`` and of the official Lightning merge): with user
scale ``s``, a layer ``y = W x + b`` becomes ``y + s * (alpha / rank) * up @ (down @ x) + s * diff_b``,
and a ``.diff`` adds ``s * diff`` to the weight. Without ``.alpha`` the factor alpha/rank is 1.
(diffusers 0.42.1 drops ``.diff`` on norm layers, which the released files set to zeros, and on
linear layers other than ``head.head``; we apply every ``.diff``, as the official merge and ComfyUI do.)

Application never changes a resident tensor in place, so removing restores the model bit for bit:

* **unfused** (default): the low-rank branch runs next to the layer as a forward hook on the
  ``nn.Linear`` layers that the DiT calls as modules (attention q/k/v/o, FFN, text embedding).
  Several LoRAs on one layer are concatenated along the rank into one branch. Layers the DiT
  reads by weight (time embedding/projection, head, patch embedding) and full ``.diff`` deltas
  are merged into a *new* parameter that replaces the resident one until removal (they are small).
* **fused**: every delta is merged into new parameters (no per-forward cost; the originals are
  kept and put back on removal, so restore is exact).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from model.transformer import diffusers_to_official_transformer_keys

__all__ = [
    "HIGH_NOISE_FILE",
    "LOW_NOISE_FILE",
    "AppliedLoras",
    "LoraError",
    "LoraSpec",
    "LoraTarget",
    "LoraWeights",
    "apply_loras",
    "apply_to_experts",
    "check_fits",
    "load_lora",
    "parse_lora_state_dict",
]

HIGH_NOISE_FILE = "high_noise_model.safetensors"
LOW_NOISE_FILE = "low_noise_model.safetensors"

# Layers the DiT forward calls as modules (a forward hook sees them); others are read by weight.
_HOOKABLE = re.compile(
    r"^(blocks\.\d+\.(self_attn|cross_attn)\.[qkvo]|blocks\.\d+\.ffn\.[02]|text_embedding\.[02])$"
)

# musubi-tuner flattens module names with "_": map the underscored names back.
_MUSUBI_IN_BLOCK = {
    f"{a}_{p}": f"{a}.{p}"
    for a in ("self_attn", "cross_attn")
    for p in ("q", "k", "v", "o", "norm_q", "norm_k", "k_img", "v_img")
} | {"ffn_0": "ffn.0", "ffn_2": "ffn.2", "norm3": "norm3", "modulation": "modulation"}
_MUSUBI_TOP = {
    "text_embedding_0": "text_embedding.0",
    "text_embedding_2": "text_embedding.2",
    "time_embedding_0": "time_embedding.0",
    "time_embedding_2": "time_embedding.2",
    "time_projection_1": "time_projection.1",
    "head_head": "head.head",
    "patch_embedding": "patch_embedding",
}

# (suffix, role); longest first so ".lora_B.bias" wins over ".bias"-like prefixes
_SUFFIXES = (
    (".lora_down.weight", "down"),
    (".lora_up.weight", "up"),
    (".lora_A.weight", "down"),
    (".lora_B.weight", "up"),
    (".lora_B.bias", "diff_b"),
    (".alpha", "alpha"),
    (".diff_b", "diff_b"),
    (".diff", "diff"),
)


class LoraError(ValueError):
    """A LoRA file or state dict that cannot be applied; the message names the offending key."""


@dataclass
class LoraTarget:
    """Deltas for one module of the DiT (official name). ``key`` is a source key, for messages."""

    key: str
    down: Tensor | None = None  # [r, in]
    up: Tensor | None = None  # [out, r]
    alpha: float | None = None
    diff: Tensor | None = None  # full weight delta, the weight's shape
    diff_b: Tensor | None = None  # bias delta [out]

    @property
    def rank(self) -> int:
        return 0 if self.down is None else int(self.down.shape[0])

    @property
    def alpha_scale(self) -> float:
        return 1.0 if self.alpha is None or self.down is None else self.alpha / self.rank


@dataclass
class LoraWeights:
    """One parsed LoRA state dict: module name -> deltas."""

    name: str
    targets: dict[str, LoraTarget] = field(default_factory=dict)

    @property
    def rank(self) -> int:
        return max((t.rank for t in self.targets.values()), default=0)

    @property
    def nbytes(self) -> int:
        total = 0
        for t in self.targets.values():
            for x in (t.down, t.up, t.diff, t.diff_b):
                if x is not None:
                    total += x.numel() * x.element_size()
        return total


@dataclass
class LoraSpec:
    """A LoRA as given to the pipeline: one file for every expert, or per-expert files (Lightning)."""

    name: str
    every: LoraWeights | None = None
    high: LoraWeights | None = None  # high-noise expert (`transformer`)
    low: LoraWeights | None = None  # low-noise expert (`transformer_2`)

    def for_expert(self, index: int, num_experts: int) -> LoraWeights | None:
        """Weights for expert `index` (0 = high noise / the only expert)."""
        if self.every is not None:
            return self.every
        if num_experts == 1:
            raise LoraError(
                f"LoRA {self.name!r} has per-expert files ({HIGH_NOISE_FILE} / {LOW_NOISE_FILE}) "
                "but the model has a single expert; give one .safetensors file"
            )
        return self.high if index == 0 else self.low

    @property
    def nbytes(self) -> int:
        return sum(w.nbytes for w in (self.every, self.high, self.low) if w is not None)

    @property
    def rank(self) -> int:
        return max((w.rank for w in (self.every, self.high, self.low) if w is not None), default=0)


# --------------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------------
def _split_key(key: str) -> tuple[str, str, str]:
    """key -> (format, module name in that format, role)."""
    if key.startswith("lora_unet_"):
        fmt, rest = "musubi", key[len("lora_unet_") :]
    elif key.startswith(("diffusion_model.", "model.diffusion_model.")):
        fmt, rest = "official", key.split("diffusion_model.", 1)[1]
    elif key.startswith(("transformer.", "base_model.model.")):
        fmt, rest = "diffusers", key.removeprefix("transformer.").removeprefix("base_model.model.")
    else:
        raise LoraError(
            f"LoRA key {key!r}: unknown format (expected a 'diffusion_model.', 'transformer.' or "
            "'lora_unet_' prefix)"
        )
    for suffix, role in _SUFFIXES:
        if rest.endswith(suffix):
            return fmt, rest[: -len(suffix)], role
    raise LoraError(
        f"LoRA key {key!r}: unsupported entry (expected lora_down/lora_up/lora_A/lora_B/alpha/diff/diff_b)"
    )


def _official_name(fmt: str, name: str, key: str) -> str:
    if fmt == "official":
        return name
    if fmt == "diffusers":
        return next(iter(diffusers_to_official_transformer_keys({name: None})))
    m = re.fullmatch(r"blocks_(\d+)_(.+)", name)
    if m and m.group(2) in _MUSUBI_IN_BLOCK:
        return f"blocks.{m.group(1)}.{_MUSUBI_IN_BLOCK[m.group(2)]}"
    if name in _MUSUBI_TOP:
        return _MUSUBI_TOP[name]
    raise LoraError(f"LoRA key {key!r}: no layer {name!r} in the Wan DiT")


def parse_lora_state_dict(state_dict: Mapping[str, Tensor], name: str = "lora") -> LoraWeights:
    """Normalise a LoRA state dict of any supported format; raises LoraError naming a bad key."""
    if not state_dict:
        raise LoraError(f"LoRA {name!r} is empty")
    out = LoraWeights(name)
    for key, value in state_dict.items():
        if not isinstance(value, Tensor):
            raise LoraError(f"LoRA key {key!r}: not a tensor")
        fmt, mod, role = _split_key(key)
        target = out.targets.setdefault(_official_name(fmt, mod, key), LoraTarget(key))
        if role == "alpha":
            if value.numel() != 1:
                raise LoraError(f"LoRA key {key!r}: alpha must be a scalar, got shape {list(value.shape)}")
            target.alpha = float(value.float().item())
            continue
        if getattr(target, role) is not None:
            raise LoraError(f"LoRA key {key!r}: duplicate {role} for layer {mod!r}")
        if role in ("down", "up") and value.ndim != 2:
            raise LoraError(f"LoRA key {key!r}: expected a matrix, got shape {list(value.shape)}")
        if not torch.is_floating_point(value) or not torch.isfinite(value).all():
            raise LoraError(f"LoRA key {key!r}: not finite floating point values")
        setattr(target, role, value)
    for mod, t in out.targets.items():
        if (t.down is None) != (t.up is None):
            raise LoraError(f"LoRA key {t.key!r}: layer {mod!r} has only one of lora_down / lora_up")
        if t.down is not None and t.up is not None and t.down.shape[0] != t.up.shape[1]:
            raise LoraError(
                f"LoRA key {t.key!r}: rank mismatch for {mod!r}: "
                f"down {list(t.down.shape)}, up {list(t.up.shape)}"
            )
        if t.alpha is not None and t.down is None:
            raise LoraError(f"LoRA key {t.key!r}: alpha for {mod!r} without lora_down / lora_up")
        if t.down is None and t.diff is None and t.diff_b is None:
            raise LoraError(f"LoRA key {t.key!r}: nothing to apply for {mod!r}")
    return out


def _load_file(path: Path) -> LoraWeights:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        sd = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise LoraError(f"LoRA file {str(path)!r} cannot be read: {e}") from e
    try:
        return parse_lora_state_dict(sd, name=path.name)
    except LoraError as e:
        raise LoraError(f"{path.name}: {e}") from e


def load_lora(path: str | Path, name: str | None = None) -> LoraSpec:
    """Read a `.safetensors` LoRA (every expert) or a folder with per-expert files (CPU tensors)."""
    p = Path(path)
    label = name or p.stem
    if p.is_file():
        return LoraSpec(label, every=_load_file(p))
    if p.is_dir():
        high, low = p / HIGH_NOISE_FILE, p / LOW_NOISE_FILE
        if not high.is_file() and not low.is_file():
            raise LoraError(f"LoRA folder {str(p)!r} has neither {HIGH_NOISE_FILE} nor {LOW_NOISE_FILE}")
        return LoraSpec(
            label,
            high=_load_file(high) if high.is_file() else None,
            low=_load_file(low) if low.is_file() else None,
        )
    raise LoraError(f"LoRA path {str(p)!r} does not exist")


# --------------------------------------------------------------------------------------------------
# Application
# --------------------------------------------------------------------------------------------------
class _Branch:
    """The stacked low-rank branch of one nn.Linear: y += up_s @ (down @ x) + bias_s."""

    def __init__(self, down: Tensor | None, up: Tensor | None, bias: Tensor | None) -> None:
        self.down, self.up, self.bias = down, up, bias  # fp32 CPU/any device; scales folded in
        self._cast: dict[tuple[torch.device, torch.dtype], tuple[Tensor | None, ...]] = {}

    def _for(self, x: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        k = (x.device, x.dtype)
        if k not in self._cast:  # cast once per device/dtype (offloaded experts move)
            self._cast = {
                k: tuple(
                    None if t is None else t.to(x.device, x.dtype) for t in (self.down, self.up, self.bias)
                )
            }
        down, up, bias = self._cast[k]
        return down, up, bias

    def __call__(self, module: nn.Module, args: tuple[Any, ...], output: Tensor) -> Tensor:
        x = args[0]
        down, up, bias = self._for(x)
        if down is not None and up is not None:
            h = F.linear(x, down)  # [.., in] -> [.., r]
            if output.requires_grad or not output.is_contiguous():
                output = output + F.linear(h, up)
            else:  # fuse the add into the GEMM: out += h @ up^T (no [.., out] temporary)
                output.view(-1, output.shape[-1]).addmm_(h.reshape(-1, h.shape[-1]), up.t())
        if bias is not None:
            output = output + bias
        return output


class AppliedLoras:
    """Handle of LoRAs applied to one module tree; `remove()` puts everything back exactly."""

    def __init__(self) -> None:
        self._hooks: list[RemovableHandle] = []
        # (module, parameter name, the original, or its CPU copy and the device it came from)
        self._swapped: list[tuple[nn.Module, str, nn.Parameter | Tensor, torch.device | None]] = []

    def remove(self) -> None:
        for h in self._hooks:
            h.remove()
        for module, pname, original, device in reversed(self._swapped):
            if device is None:
                module._parameters[pname] = original  # type: ignore[assignment]
            else:  # a copy there and back is exact
                module._parameters[pname] = nn.Parameter(original.to(device), requires_grad=False)
        self._hooks, self._swapped = [], []

    def __enter__(self) -> AppliedLoras:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def _module(model: nn.Module, name: str, key: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        raise LoraError(f"LoRA key {key!r}: the model has no layer {name!r}") from None


def _weight(mod: nn.Module) -> Tensor:
    w = mod._parameters.get("weight")
    assert w is not None
    return w


def _check_shapes(mod: nn.Module, name: str, t: LoraTarget) -> None:
    w = getattr(mod, "weight", None)
    if not isinstance(w, Tensor):
        raise LoraError(f"LoRA key {t.key!r}: layer {name!r} has no weight")
    if t.down is not None and t.up is not None:
        if w.ndim != 2:
            raise LoraError(f"LoRA key {t.key!r}: low-rank deltas need a linear layer, {name!r} is not one")
        if t.down.shape[1] != w.shape[1] or t.up.shape[0] != w.shape[0]:
            raise LoraError(
                f"LoRA key {t.key!r}: shapes down {list(t.down.shape)} / up {list(t.up.shape)} do not fit "
                f"{name!r} weight {list(w.shape)} (a LoRA for another model?)"
            )
    if t.diff is not None and t.diff.numel() != w.numel():
        raise LoraError(
            f"LoRA key {t.key!r}: diff {list(t.diff.shape)} does not fit {name!r} weight {list(w.shape)}"
        )
    b = getattr(mod, "bias", None)
    if t.diff_b is not None and (not isinstance(b, Tensor) or t.diff_b.numel() != b.numel()):
        raise LoraError(
            f"LoRA key {t.key!r}: diff_b {list(t.diff_b.shape)} does not fit the bias of {name!r}"
        )


def check_fits(model: nn.Module, weights: LoraWeights) -> None:
    """Raise LoraError (naming the key) unless every delta fits a layer of `model`; changes nothing."""
    for name, t in weights.targets.items():
        _check_shapes(_module(model, name, t.key), name, t)


def apply_loras(
    model: nn.Module,
    loras: Iterable[tuple[LoraWeights, float]],
    *,
    fuse: bool = False,
    stash_on_cpu: bool = False,
) -> AppliedLoras:
    """Apply LoRAs (weights, user scale) to a DiT; all checks run before anything changes.

    `stash_on_cpu`: replaced originals that live on an accelerator wait in CPU memory until
    removal, so fusing does not double the device memory of the targeted weights.
    """
    per_module: dict[str, list[tuple[LoraTarget, float]]] = {}
    for weights, scale in loras:
        for name, t in weights.targets.items():
            _check_shapes(_module(model, name, t.key), name, t)
            per_module.setdefault(name, []).append((t, float(scale)))

    handle = AppliedLoras()
    try:
        for name, items in per_module.items():
            mod = model.get_submodule(name)
            hook = not fuse and isinstance(mod, nn.Linear) and _HOOKABLE.match(name) is not None
            dev = _weight(mod).device  # merge where the weight lives (a GPU merges 100x faster)
            dw: Tensor | None = None  # merged weight delta (fp32)
            db: Tensor | None = None  # merged bias delta (fp32)
            downs, ups = [], []
            for t, s in items:
                if t.down is not None and t.up is not None:
                    up = t.up.float() * (s * t.alpha_scale)
                    if hook:
                        downs.append(t.down.float())
                        ups.append(up)
                    else:
                        d = up.to(dev) @ t.down.to(dev).float()
                        dw = d if dw is None else dw + d
                if t.diff is not None:
                    d = t.diff.to(dev).float().reshape(_weight(mod).shape) * s
                    dw = d if dw is None else dw + d
                if t.diff_b is not None:
                    d = t.diff_b.to(dev).float().reshape(-1) * s
                    db = d if db is None else db + d
            if hook and (downs or db is not None):
                branch = _Branch(
                    torch.cat(downs) if downs else None, torch.cat(ups, dim=1) if ups else None, db
                )
                handle._hooks.append(mod.register_forward_hook(branch))
                db = None
            for pname, delta in (("weight", dw), ("bias", db)):
                if delta is None:
                    continue
                original = mod._parameters[pname]
                assert original is not None
                merged = (original.detach().float() + delta.to(original.device)).to(original.dtype)
                if stash_on_cpu and original.device.type != "cpu":
                    handle._swapped.append((mod, pname, original.detach().to("cpu"), original.device))
                else:
                    handle._swapped.append((mod, pname, original, None))
                mod._parameters[pname] = nn.Parameter(merged, requires_grad=False)
                del original
    except BaseException:
        handle.remove()
        raise
    return handle


def _as_spec(item: str | Path | LoraSpec) -> LoraSpec:
    return item if isinstance(item, LoraSpec) else load_lora(item)


def apply_to_experts(
    experts: Sequence[nn.Module],
    loras: Sequence[tuple[str | Path | LoraSpec, float]],
    *,
    fuse: bool = False,
) -> list[AppliedLoras]:
    """Apply (path or LoraSpec, scale) pairs to a pipeline's experts (0 = high noise).

    A single-file LoRA goes to every expert; a Lightning folder's files to their own expert.
    Everything is removed again if any LoRA fails to load or fit. Fused, the originals of
    accelerator-resident weights wait on the CPU (see `apply_loras`).
    """
    specs: list[tuple[LoraSpec, float]] = []
    for i, pair in enumerate(loras):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise LoraError(f"loras[{i}] must be a (path, scale) pair, got {pair!r}")
        item, scale = pair
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
            raise LoraError(f"loras[{i}] scale must be a finite number, got {scale!r}")
        specs.append((_as_spec(item), float(scale)))
    handles: list[AppliedLoras] = []
    try:
        for i, expert in enumerate(experts):
            chosen = [(w, s) for spec, s in specs if (w := spec.for_expert(i, len(experts))) is not None]
            handles.append(apply_loras(expert, chosen, fuse=fuse, stash_on_cpu=fuse))
    except BaseException:
        for h in handles:
            h.remove()
        raise
    return handles
