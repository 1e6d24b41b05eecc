"""Opt-in GPU tier: expert placement across two real devices (the GPU and the CPU on a one-GPU
machine), so a job's latents and sampler history really cross at the boundary."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


@pytest.mark.parametrize("preset", ["tiny-t2v-a14b", "tiny-i2v-a14b"])
def test_experts_on_cuda_and_cpu_give_the_one_device_video(preset: str) -> None:
    from model import load_pipeline

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    image = torch.rand(3, 32, 48, generator=torch.Generator().manual_seed(3)) * 2 - 1
    kw = dict(
        seed=5, num_steps=4, width=48, height=32, num_frames=5, image=image if "i2v" in preset else None
    )
    ref = load_pipeline(preset, device="cpu", dtype=torch.float32).generate("a boat", **kw)
    for high, low in (("cuda:0", "cpu"), ("cpu", "cuda:0")):
        pipe = load_pipeline(preset, device="cpu", dtype=torch.float32)
        pipe.place_experts(high, low)
        assert pipe.transformer.device.type != pipe.transformer_2.device.type
        torch.testing.assert_close(pipe.generate("a boat", **kw), ref, rtol=0, atol=1e-4)
