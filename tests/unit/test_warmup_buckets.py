"""Which (size, frames, mode) buckets a worker warms: the default request eagerly, every size compiled."""

from __future__ import annotations

from model.presets import PRESETS
from worker.warmup import warmup_buckets


def test_eager_warms_the_default_request_in_each_mode() -> None:
    # the shapes a first job really has: default size and frames (not the minimum), text and image
    assert warmup_buckets(PRESETS["tiny-i2v-a14b"], compiled=False) == [(32, 32, 5, True)]
    assert warmup_buckets(PRESETS["tiny-ti2v"], compiled=False) == [(32, 32, 5, False), (32, 32, 5, True)]
    assert warmup_buckets(PRESETS["wanserve-demo"], compiled=False) == [(32, 32, 9, False), (32, 32, 9, True)]
    big = PRESETS["wan2.2-ti2v-5b"]
    assert {(w, h, f) for w, h, f, _ in warmup_buckets(big, compiled=False)} == {
        (*big.default_size, big.default_num_frames)
    }


def test_compiled_warms_every_size_and_mode() -> None:
    p = PRESETS["tiny-ti2v"]
    got = warmup_buckets(p, compiled=True)
    assert len(got) == 2 * len(p.sizes)
    assert {(w, h) for w, h, _, _ in got} == set(p.sizes)
    assert {m for *_, m in got} == {False, True} and {f for _, _, f, _ in got} == {p.default_num_frames}
    assert {m for *_, m in warmup_buckets(PRESETS["tiny-t2v-a14b"], compiled=True)} == {False}


def test_prepare_pipeline_compiles_and_refuses_fp8_on_cpu() -> None:
    import pytest
    import torch

    from app.core.config import Settings
    from model import load_pipeline
    from model.fp8 import Fp8Unavailable
    from worker.runtime import prepare_pipeline

    pipe = load_pipeline("tiny-t2v-a14b", device="cpu", dtype=torch.float32)
    prepare_pipeline(pipe, Settings(compile=True, lora_fuse=True))
    assert pipe.lora_fuse is True
    assert all(b._compiled_call_impl is not None for d in pipe.experts for b in d.blocks)
    with pytest.raises(Fp8Unavailable, match="FP8 needs a CUDA GPU"):
        prepare_pipeline(load_pipeline("tiny-ti2v", device="cpu", dtype=torch.float32), Settings(fp8=True))
