"""Checkpoints -> a ready `WanPipeline`, for tiny presets and both published layouts.

Layouts (detected automatically):

* **official** (Wan-AI/Wan2.2-*): `config.json` + `diffusion_pytorch_model*.safetensors` (sharded with
  `diffusion_pytorch_model.safetensors.index.json`) at the root (TI2V-5B) or in
  `high_noise_model/` + `low_noise_model/` (A14B); `Wan2.1_VAE.pth` or `Wan2.2_VAE.pth`;
  `models_t5_umt5-xxl-enc-bf16.pth`; the tokenizer in `google/umt5-xxl/`.
* **diffusers** (Wan-AI/Wan2.2-*-Diffusers): `model_index.json`, `transformer/` (high-noise expert
  for A14B), `transformer_2/` (low-noise expert), `vae/`, `text_encoder/`, `tokenizer/`,
  `scheduler/` (ignored: wanserve always samples on the official sigma grid). Parameter names are
  mapped onto the official ones with the component owners' `diffusers_to_official_*_keys`.

Weights are never materialised twice: every module is built on the `meta` device and its
parameters are assigned (`load_state_dict(assign=True)`) from memory-mapped safetensors /
`torch.load(mmap=True, weights_only=True)`, one tensor at a time cast to the target dtype on CPU
and moved to the target device. Keys and shapes are checked first; a missing, unexpected or
mis-shaped tensor raises `CheckpointError` naming it.

A checkpoint directory may carry `wanserve_preset.json` (a `ModelPreset` as JSON) to override the
preset derived from the model's type.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model.cache import load_calibration
from model.pipeline import WanPipeline
from model.presets import BUILTIN_CHECKPOINTS, OFFICIAL_BY_TASK, PRESETS, TINY_SPECS, ModelPreset, TinySpec
from model.preview import load_latent_rgb
from model.text_encoder import (
    TextEncoder,
    build_umt5,
    official_t5_to_hf_keys,
    umt5_config_from_official,
)
from model.tokenizer import ByteTokenizer, load_marked_tokenizer
from model.transformer import TransformerConfig, WanTransformer, diffusers_to_official_transformer_keys
from model.vae21 import Wan21VAE, Wan21VAEConfig, diffusers_to_official_vae21_keys
from model.vae22 import Wan22VAE, Wan22VAEConfig, diffusers_to_official_vae22_keys

__all__ = [
    "CheckpointError",
    "build_tiny_pipeline",
    "detect_layout",
    "load_pipeline",
    "load_official",
    "load_diffusers",
    "cpu_has_fast_bf16",
]
_log = logging.getLogger(__name__)

T5_FILE = "models_t5_umt5-xxl-enc-bf16.pth"
T5_TOKENIZER_DIR = "google/umt5-xxl"
VAE21_FILE = "Wan2.1_VAE.pth"
VAE22_FILE = "Wan2.2_VAE.pth"
PRESET_FILE = "wanserve_preset.json"


class CheckpointError(ValueError):
    """A checkpoint is malformed or incomplete (names the file, tensor or setting at fault)."""


# ---------------------------------------------------------------------------------------------------
# Lazy tensor sources
# ---------------------------------------------------------------------------------------------------
TensorSource = Mapping[str, Callable[[], torch.Tensor]]  # key -> loader (reads one tensor)


def _getter(handle: Any, key: str) -> Callable[[], torch.Tensor]:
    def get() -> torch.Tensor:
        t: torch.Tensor = handle.get_tensor(key)
        return t

    return get


def _const(t: torch.Tensor) -> Callable[[], torch.Tensor]:
    return lambda: t


@contextmanager
def safetensors_source(folder: Path, stem: str, what: str) -> Iterator[TensorSource]:
    """Open `<stem>.safetensors` or the shards listed in `<stem>.safetensors.index.json` (mmap)."""
    from safetensors import safe_open

    index = folder / f"{stem}.safetensors.index.json"
    single = folder / f"{stem}.safetensors"
    if index.is_file():
        try:
            weight_map: dict[str, str] = json.loads(index.read_text())["weight_map"]
        except (ValueError, KeyError) as e:
            raise CheckpointError(f"{what}: {index} is not a valid shard index ({e})") from e
        files = sorted(set(weight_map.values()))
    elif single.is_file():
        weight_map, files = {}, [single.name]
    else:
        raise CheckpointError(f"{what}: neither {single.name} nor {index.name} found in {folder}")
    with ExitStack() as stack:
        handles = {}
        for name in files:
            p = folder / name
            if not p.is_file():
                raise CheckpointError(f"{what}: shard {name} listed in {index.name} is missing from {folder}")
            handles[name] = stack.enter_context(safe_open(str(p), framework="pt", device="cpu"))
        src: dict[str, Callable[[], torch.Tensor]] = {}
        for name, h in handles.items():
            for k in h.keys():  # noqa: SIM118 - safe_open has no __iter__
                if weight_map and weight_map.get(k, name) != name:
                    continue
                src[k] = _getter(h, k)
        missing_shard_keys = [k for k in weight_map if k not in src]
        if missing_shard_keys:
            raise CheckpointError(
                f"{what}: tensor {missing_shard_keys[0]!r} is listed in {index.name} but not in its shard "
                f"{weight_map[missing_shard_keys[0]]}"
            )
        yield src


def pth_source(path: Path, what: str) -> dict[str, Callable[[], torch.Tensor]]:
    """A `.pth` state dict via `torch.load(mmap=True, weights_only=True)` (no copy until used)."""
    if not path.is_file():
        raise CheckpointError(f"{what}: {path.name} not found in {path.parent}")
    try:
        try:
            sd = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
        except RuntimeError as e:
            if "mmap" not in str(e) and "zip" not in str(e):
                raise
            # Legacy (pre-zip) pickles cannot be memory-mapped: read them once instead.
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a bad file
        raise CheckpointError(f"{what}: cannot read {path}: {e}") from e
    if isinstance(sd, Mapping) and "state_dict" in sd and isinstance(sd["state_dict"], Mapping):
        sd = sd["state_dict"]
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{what}: {path} does not hold a state dict of tensors")
    return {k: _const(v) for k, v in sd.items()}


def rename_source(
    src: TensorSource, rename: Callable[[Mapping[str, str]], Mapping[str, str]]
) -> TensorSource:
    """Apply a key-renaming function (taking/returning a state-dict-like mapping) to a source."""
    try:
        mapped = rename({k: k for k in src})  # new name -> old name
    except KeyError as e:
        raise CheckpointError(f"unknown tensor name: {e}") from e
    return {new: src[old] for new, old in mapped.items()}


# ---------------------------------------------------------------------------------------------------
# meta build + assign
# ---------------------------------------------------------------------------------------------------
def assign_weights(
    module: nn.Module,
    src: TensorSource,
    *,
    dtype: torch.dtype,
    device: torch.device,
    what: str,
) -> nn.Module:
    """Check `src` against `module` (built on meta) and assign its tensors in place.

    Each tensor is read, cast (floating point only) to `dtype` on CPU, then moved to `device`.
    """
    expected = module.state_dict()
    missing = [k for k in expected if k not in src]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CheckpointError(f"{what}: missing tensor {missing[0]!r}{more}")
    unexpected = [k for k in src if k not in expected]
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise CheckpointError(f"{what}: unexpected tensor {unexpected[0]!r}{more}")
    sd: dict[str, torch.Tensor] = {}
    for k, ref in expected.items():
        t = src[k]()
        if tuple(t.shape) != tuple(ref.shape):
            raise CheckpointError(
                f"{what}: tensor {k!r} has shape {list(t.shape)}, the model expects {list(ref.shape)}"
            )
        target = dtype if t.is_floating_point() else ref.dtype
        sd[k] = t.to(dtype=target).to(device)  # a no-op (no copy) when dtype and device already match
    module.load_state_dict(sd, strict=True, assign=True)
    leftovers = [n for n, p in [*module.named_parameters(), *module.named_buffers()] if p.is_meta]
    if leftovers:
        raise CheckpointError(f"{what}: tensor {leftovers[0]!r} was not loaded")
    return module.eval().requires_grad_(False)


def _meta(factory: Callable[[], nn.Module]) -> nn.Module:
    with torch.device("meta"):
        return factory()


# ---------------------------------------------------------------------------------------------------
# Component loaders
# ---------------------------------------------------------------------------------------------------
def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"{what}: {path.name} not found in {path.parent}")
    try:
        data = json.loads(path.read_text())
    except ValueError as e:
        raise CheckpointError(f"{what}: {path} is not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise CheckpointError(f"{what}: {path} must hold a JSON object")
    return data


def load_transformer(
    folder: Path, *, dtype: torch.dtype, device: torch.device, diffusers_names: bool, what: str
) -> WanTransformer:
    cfg_dict = _read_json(folder / "config.json", what)
    try:
        cfg = TransformerConfig.from_json_dict(cfg_dict)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{what}: bad config.json: {e}") from e
    model = _meta(lambda: WanTransformer(cfg))
    with safetensors_source(folder, "diffusion_pytorch_model", what) as raw:
        src = rename_source(raw, diffusers_to_official_transformer_keys) if diffusers_names else raw
        assign_weights(model, src, dtype=dtype, device=device, what=what)
    assert isinstance(model, WanTransformer)
    return model


def official_vae_config(sd: Mapping[str, torch.Tensor], wan22: bool) -> Wan21VAEConfig | Wan22VAEConfig:
    """Infer the VAE config from the shapes in an official `Wan2.x_VAE.pth` (real or tiny).

    The encoder's `downsamples` list gives the stages: residual blocks (`residual.*`) followed by a
    resampler (`resample.*`, plus `time_conv.*` when it also halves time); Wan2.2 nests them as
    `downsamples.<stage>.downsamples.<j>`.
    """
    parts: dict[tuple[int, int], set[str]] = {}
    pattern = (
        r"encoder\.downsamples\.(\d+)\.downsamples\.(\d+)\.(\w+)"
        if wan22
        else r"encoder\.downsamples\.(\d+)\.(\w+)"
    )
    for k in sd:
        m = re.match(pattern, k)
        if m:
            key = (int(m.group(1)), int(m.group(2))) if wan22 else (0, int(m.group(1)))
            parts.setdefault(key, set()).add(m.group(m.lastindex or 0))
    stages: list[list[tuple[str, str]]] = []  # per stage: (key prefix, kind R|S|T)
    for key in sorted(parts):
        p = parts[key]
        kind = "R" if "residual" in p else ("T" if "time_conv" in p else ("S" if "resample" in p else "?"))
        prefix = (
            f"encoder.downsamples.{key[0]}.downsamples.{key[1]}" if wan22 else f"encoder.downsamples.{key[1]}"
        )
        if not stages or (wan22 and key[1] == 0) or (not wan22 and stages[-1] and stages[-1][-1][1] in "ST"):
            stages.append([])
        stages[-1].append((prefix, kind))
    try:
        if not stages or any(kind == "?" for st in stages for _, kind in st):
            raise ValueError("unrecognised encoder block layout")
        dim = int(sd["encoder.conv1.weight"].shape[0])
        z_dim = int(sd["conv2.weight"].shape[0])
        n_res = sum(1 for _, kind in stages[0] if kind == "R")
        temporal = tuple(st[-1][1] == "T" for st in stages[:-1])
        mult = tuple(int(sd[f"{st[0][0]}.residual.6.weight"].shape[0]) // dim for st in stages)
        if wan22:
            dec_dim = int(sd["decoder.conv1.weight"].shape[0]) // mult[-1]
            patch = int(round((sd["encoder.conv1.weight"].shape[1] // 3) ** 0.5))
            return Wan22VAEConfig(
                dim=dim, dec_dim=dec_dim, z_dim=z_dim, dim_mult=mult, num_res_blocks=n_res,
                temperal_downsample=temporal, patch_size=patch,
            )  # fmt: skip
        return Wan21VAEConfig(
            dim=dim, z_dim=z_dim, dim_mult=mult, num_res_blocks=n_res, temperal_downsample=temporal
        )
    except (KeyError, ValueError, IndexError) as e:
        raise CheckpointError(f"VAE: cannot infer the architecture from the checkpoint ({e!r})") from e


def load_official_vae(path: Path, *, device: torch.device) -> nn.Module:
    wan22 = path.name == VAE22_FILE
    what = f"VAE {path.name}"
    src = pth_source(path, what)
    cfg = official_vae_config({k: f() for k, f in src.items()}, wan22)  # mmap views, no copy
    model = _meta(lambda: Wan22VAE(cfg) if wan22 else Wan21VAE(cfg))  # type: ignore[arg-type]
    return assign_weights(model, src, dtype=torch.float32, device=device, what=what)


def load_tokenizer(folder: Path, what: str) -> Any:
    try:
        marked = load_marked_tokenizer(folder)
    except (ValueError, OSError) as e:
        raise CheckpointError(f"{what}: {e}") from e
    if marked is not None:
        return marked
    if not folder.is_dir():
        raise CheckpointError(f"{what}: tokenizer folder {folder} not found")
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder))
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"{what}: cannot load the tokenizer from {folder}: {e}") from e


def load_official_t5(path: Path, *, dtype: torch.dtype, device: torch.device) -> nn.Module:
    what = f"text encoder {path.name}"
    src = pth_source(path, what)
    try:
        cfg = umt5_config_from_official({k: f() for k, f in src.items()})
        hf_src = rename_source(src, official_t5_to_hf_keys)
    except KeyError as e:
        raise CheckpointError(f"{what}: {e}") from e
    model = build_umt5(cfg, "meta")
    return assign_weights(model, hf_src, dtype=dtype, device=device, what=what)


def load_hf_text_encoder(folder: Path, *, dtype: torch.dtype, device: torch.device) -> nn.Module:
    """transformers-format `text_encoder/` (UMT5 or T5 encoder) via meta build + mmap assign."""
    from transformers import AutoConfig, T5EncoderModel, UMT5EncoderModel

    what = "text_encoder"
    _read_json(folder / "config.json", what)
    config = AutoConfig.from_pretrained(str(folder))
    cls = UMT5EncoderModel if config.model_type == "umt5" else T5EncoderModel
    model = _meta(lambda: cls(config))
    stem = "model" if any(folder.glob("model*.safetensors*")) else "diffusion_pytorch_model"
    with safetensors_source(folder, stem, what) as src:
        src = dict(src)
        # Tied input embeddings are stored once.
        for a, b in (
            ("shared.weight", "encoder.embed_tokens.weight"),
            ("encoder.embed_tokens.weight", "shared.weight"),
        ):
            if a not in src and b in src:
                src[a] = src[b]
        assign_weights(model, src, dtype=dtype, device=device, what=what)
    return model


# ---------------------------------------------------------------------------------------------------
# Presets for checkpoints
# ---------------------------------------------------------------------------------------------------
def _preset_for(
    root: Path, task: str, boundary: float | None, vae: nn.Module, dit: WanTransformer
) -> ModelPreset:
    if (root / PRESET_FILE).is_file():
        try:
            return ModelPreset.from_dict(_read_json(root / PRESET_FILE, "preset"))
        except (TypeError, KeyError) as e:
            raise CheckpointError(f"{PRESET_FILE}: {e}") from e
    base = OFFICIAL_BY_TASK[task]
    vcfg: Any = getattr(vae, "config")  # noqa: B009
    return dataclasses.replace(
        base,
        boundary=boundary,
        default_guidance_scale=base.default_guidance_scale
        if boundary is not None or task == "ti2v"
        else (base.default_guidance_scale[0],),
        vae_stride=(vcfg.scale_factor_temporal, vcfg.scale_factor_spatial, vcfg.scale_factor_spatial),
        patch_size=(dit.cfg.patch_size[0], dit.cfg.patch_size[1], dit.cfg.patch_size[2]),
    )


def _resolve(device: Any, dtype: Any) -> tuple[torch.device, torch.dtype]:
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None and torch.cuda.is_available():
        dev = torch.device("cuda", torch.cuda.current_device())
    if dtype is None:
        dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    if isinstance(dtype, str):
        names = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
        dtype = getattr(torch, names.get(dtype, dtype))
    if dev.type == "cpu" and dtype == torch.bfloat16 and not cpu_has_fast_bf16():
        _log.warning(
            "bfloat16 on this CPU (%s, no AVX512-BF16/AMX) runs the DiT matmuls several times slower "
            "than float32; it only saves memory here",
            torch.backends.cpu.get_cpu_capability(),
        )
    return dev, dtype


def cpu_has_fast_bf16() -> bool:
    """Whether oneDNN has native bfloat16 kernels on this CPU (AVX512-BF16 or AMX).

    With them bf16 matmuls beat float32; without (AVX2 only) they are emulated and several times
    slower (`bench/RESULTS.md`, CPU speed), so bf16 on such a CPU is a memory choice only.
    """
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


# ---------------------------------------------------------------------------------------------------
# Layouts
# ---------------------------------------------------------------------------------------------------
def detect_layout(root: Path) -> str:
    """'diffusers' | 'official'; CheckpointError when neither is recognised."""
    if (root / "model_index.json").is_file():
        return "diffusers"
    if (root / "config.json").is_file() or (root / "high_noise_model" / "config.json").is_file():
        return "official"
    raise CheckpointError(
        f"{root}: not a Wan2.2 checkpoint (expected model_index.json, config.json or high_noise_model/)"
    )


def load_official(root: Path, *, device: torch.device, dtype: torch.dtype, offload: bool) -> WanPipeline:
    dit_dev = torch.device("cpu") if offload else device
    two = (root / "high_noise_model").is_dir()
    if two:
        if not (root / "low_noise_model").is_dir():
            raise CheckpointError(f"{root}: high_noise_model/ present but low_noise_model/ missing")
        high = load_transformer(root / "high_noise_model", dtype=dtype, device=dit_dev,
                                diffusers_names=False, what="high_noise_model")  # fmt: skip
        low: WanTransformer | None = load_transformer(
            root / "low_noise_model",
            dtype=dtype,
            device=dit_dev,
            diffusers_names=False,
            what="low_noise_model",
        )
    else:
        high = load_transformer(root, dtype=dtype, device=dit_dev, diffusers_names=False, what="transformer")
        low = None
    vae_path = root / (VAE22_FILE if (root / VAE22_FILE).is_file() else VAE21_FILE)
    vae = load_official_vae(vae_path, device=device)
    t5 = load_official_t5(root / T5_FILE, dtype=dtype, device=dit_dev)
    tok = load_tokenizer(root / T5_TOKENIZER_DIR, "tokenizer")
    task = high.cfg.model_type
    if task not in OFFICIAL_BY_TASK:
        raise CheckpointError(f"config.json: model_type {task!r} is not one of t2v, i2v, ti2v")
    boundary = OFFICIAL_BY_TASK[task].boundary if two else None
    if two and boundary is None:
        raise CheckpointError(f"{root}: two experts but model_type {task!r} has no MoE boundary")
    preset = _preset_for(root, task, boundary, vae, high)
    te = TextEncoder(t5, tok, text_len=high.cfg.text_len)
    return WanPipeline(preset, te, high, vae, transformer_2=low, device=device, dtype=dtype, offload=offload)


def load_diffusers(root: Path, *, device: torch.device, dtype: torch.dtype, offload: bool) -> WanPipeline:
    index = _read_json(root / "model_index.json", "model_index.json")
    dit_dev = torch.device("cpu") if offload else device
    high = load_transformer(root / "transformer", dtype=dtype, device=dit_dev, diffusers_names=True,
                            what="transformer")  # fmt: skip
    low = None
    t2 = index.get("transformer_2")
    if (root / "transformer_2").is_dir() and isinstance(t2, list) and t2[0] is not None:
        low = load_transformer(root / "transformer_2", dtype=dtype, device=dit_dev, diffusers_names=True,
                               what="transformer_2")  # fmt: skip
    vcfg_dict = _read_json(root / "vae" / "config.json", "vae")
    wan22 = bool(vcfg_dict.get("is_residual", False))
    try:
        vcfg = (Wan22VAEConfig if wan22 else Wan21VAEConfig).from_diffusers_config(vcfg_dict)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"vae: bad config.json: {e}") from e
    vae = _meta(lambda: Wan22VAE(vcfg) if wan22 else Wan21VAE(vcfg))  # type: ignore[arg-type]
    with safetensors_source(root / "vae", "diffusion_pytorch_model", "vae") as raw:
        src = rename_source(
            raw, diffusers_to_official_vae22_keys if wan22 else diffusers_to_official_vae21_keys
        )
        assign_weights(vae, src, dtype=torch.float32, device=device, what="vae")
    t5 = load_hf_text_encoder(root / "text_encoder", dtype=dtype, device=dit_dev)
    tok = load_tokenizer(root / "tokenizer", "tokenizer")
    cls_name = str(index.get("_class_name", "WanPipeline"))
    in_dim = high.cfg.in_dim
    if in_dim == 36 or (cls_name == "WanImageToVideoPipeline" and not index.get("expand_timesteps")):
        task = "i2v"
    elif in_dim == 48 or index.get("expand_timesteps"):
        task = "ti2v"
    else:
        task = "t2v"
    ratio = index.get("boundary_ratio")
    if low is not None and ratio is None:
        raise CheckpointError("model_index.json: transformer_2 present but boundary_ratio is null")
    boundary = float(ratio) if low is not None and ratio is not None else None
    preset = _preset_for(root, task, boundary, vae, high)
    te = TextEncoder(t5, tok, text_len=high.cfg.text_len)
    return WanPipeline(preset, te, high, vae, transformer_2=low, device=device, dtype=dtype, offload=offload)


# ---------------------------------------------------------------------------------------------------
# Tiny random presets
# ---------------------------------------------------------------------------------------------------
def _config_from(cls: type, overrides: Mapping[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in overrides.items() if k in names})


def build_tiny_pipeline(
    name: str, *, device: torch.device, dtype: torch.dtype, offload: bool = False
) -> WanPipeline:
    """Random tiny components from `TINY_SPECS[name]`, deterministic in `spec.seed`."""
    from transformers import UMT5Config, UMT5EncoderModel

    spec: TinySpec = TINY_SPECS[name]
    preset = PRESETS[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        t5: nn.Module = UMT5EncoderModel(UMT5Config(**spec.text_encoder))
        t5.train(False)
        t5.requires_grad_(False)
        cfg = _config_from(TransformerConfig, spec.transformer)
        experts = [WanTransformer(cfg).eval().requires_grad_(False) for _ in range(preset.num_experts)]
        vae_cls, vcfg_cls = (
            (Wan22VAE, Wan22VAEConfig) if spec.vae_kind == "wan2.2" else (Wan21VAE, Wan21VAEConfig)
        )
        vae = vae_cls(_config_from(vcfg_cls, spec.vae)).eval().requires_grad_(False)
    dit_dev = torch.device("cpu") if offload else device
    t5.to(dit_dev, dtype)
    for m in experts:
        m.to(dit_dev, dtype)
    vae.to(device)
    te = TextEncoder(t5, ByteTokenizer(), text_len=cfg.text_len)
    high, low = experts[0], (experts[1] if len(experts) > 1 else None)
    return WanPipeline(preset, te, high, vae, transformer_2=low, device=device, dtype=dtype, offload=offload)


# ---------------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------------
def load_pipeline(
    path_or_preset_name: str | Path, *, device: Any = "cpu", dtype: Any = None, offload: bool = False
) -> WanPipeline:
    """See `model.load_pipeline`."""
    dev, dt = _resolve(device, dtype)
    name = str(path_or_preset_name)
    if name in TINY_SPECS:
        return build_tiny_pipeline(name, device=dev, dtype=dt, offload=offload)
    root = Path(path_or_preset_name)
    if name in BUILTIN_CHECKPOINTS and not root.is_dir():  # e.g. wanserve-demo: weights in the package
        root = BUILTIN_CHECKPOINTS[name]
    if not root.is_dir():
        if name in PRESETS:
            raise CheckpointError(
                f"{name!r} has no built-in weights; pass the checkpoint directory of {name} instead"
            )
        raise CheckpointError(f"{name!r} is neither a tiny preset ({sorted(TINY_SPECS)}) nor a directory")
    layout = detect_layout(root)
    with torch.no_grad():
        if layout == "diffusers":
            pipe = load_diffusers(root, device=dev, dtype=dt, offload=offload)
        else:
            pipe = load_official(root, device=dev, dtype=dt, offload=offload)
    pipe.cache_calibration = load_calibration(root)  # step-cache numbers beside the weights, if any
    pipe.latent_rgb = load_latent_rgb(root, pipe.vae)  # preview factors fitted for this VAE, if any
    return pipe


def checkpoint_dir(path_or_preset_name: str | Path) -> Path | None:
    """The weights folder `load_pipeline` would read (None for tiny random presets)."""
    name = str(path_or_preset_name)
    if name in TINY_SPECS:
        return None
    root = Path(path_or_preset_name)
    if name in BUILTIN_CHECKPOINTS and not root.is_dir():
        root = Path(__file__).resolve().parent / BUILTIN_CHECKPOINTS[name]
    return root if root.is_dir() else None
