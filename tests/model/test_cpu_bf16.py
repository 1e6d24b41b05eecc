"""bfloat16 on CPU (`WANSERVE_DTYPE=bfloat16`, `python -m model --dtype bfloat16`): the DiT and the text
encoder run in bf16 while the VAE stays float32; the video stays within the model's bf16 tolerance
(5% of the output range, as for one DiT forward) of the float32 one."""

from __future__ import annotations

import pytest
import torch

from model import load_pipeline


@pytest.mark.parametrize("name", ["tiny-t2v-a14b", "tiny-i2v-a14b", "tiny-ti2v"])
def test_bf16_video_is_within_tolerance_of_fp32(name: str) -> None:
    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    kw = dict(seed=1, num_steps=4, image=image if "i2v" in name else None)
    ref = load_pipeline(name, dtype=torch.float32).generate("a cat", **kw)
    pipe = load_pipeline(name, dtype=torch.bfloat16)
    assert {p.dtype for p in pipe.transformer.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in pipe.vae.parameters()} == {torch.float32}  # bf16 convs are slower on CPU
    got = pipe.generate("a cat", **kw)
    assert got.dtype == torch.float32 and got.shape == ref.shape
    err = (got - ref).abs().max().item()
    assert 0 < err <= 0.05 * ref.abs().max().item()  # 0 would mean bf16 never ran


def test_bf16_on_a_cpu_without_native_bf16_says_it_is_slower(caplog: pytest.LogCaptureFixture) -> None:
    from model.loading import cpu_has_fast_bf16

    with caplog.at_level("WARNING", logger="model.loading"):
        load_pipeline("tiny-ti2v", dtype=torch.bfloat16)
    assert ("several times slower than float32" in caplog.text) == (not cpu_has_fast_bf16())
    caplog.clear()
    with caplog.at_level("WARNING", logger="model.loading"):
        load_pipeline("tiny-ti2v", dtype=torch.float32)
    assert "slower" not in caplog.text
