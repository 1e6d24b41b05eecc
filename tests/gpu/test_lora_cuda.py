"""Opt-in GPU tier for LoRAs: unfused and fused (originals stashed on the CPU) restore the
device weights exactly, and the branch follows the expert onto the device in bf16."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def test_lora_roundtrip_on_cuda_is_exact(tmp_path) -> None:
    from safetensors.torch import save_file

    from model import load_pipeline

    pipe = load_pipeline("tiny-t2v-a14b", device="cuda", dtype=torch.bfloat16)
    g = torch.Generator().manual_seed(0)
    sd = {}
    for name, mod in pipe.transformer.named_modules():
        if isinstance(mod, torch.nn.Linear) and name.startswith("blocks."):
            out_f, in_f = mod.weight.shape
            sd[f"diffusion_model.{name}.lora_down.weight"] = torch.randn(4, in_f, generator=g) * 0.3
            sd[f"diffusion_model.{name}.lora_up.weight"] = torch.randn(out_f, 4, generator=g) * 0.3
    path = tmp_path / "l.safetensors"
    save_file(sd, str(path))
    kw = dict(height=32, width=32, num_frames=5, num_steps=4, sampler="distill", shift=5.0, seed=1)
    before = {k: v.clone() for k, v in pipe.transformer.state_dict().items()}
    base = pipe.generate("a cat", **kw)
    unfused = pipe.generate("a cat", loras=[(path, 1.0)], **kw)
    pipe.lora_fuse = True
    fused = pipe.generate("a cat", loras=[(path, 1.0)], **kw)
    pipe.lora_fuse = False
    after = pipe.generate("a cat", **kw)
    assert torch.equal(base, after) and not torch.equal(base, unfused)
    assert (fused - unfused).abs().max().item() < 0.25  # bf16: merged weights round differently
    state = pipe.transformer.state_dict()
    assert all(torch.equal(state[k], before[k]) and state[k].device.type == "cuda" for k in before)
