"""FSDP on a one-rank gloo group: sharding changes no result, and requests it cannot run are refused.

The two-rank equality (and FSDP with Ulysses) runs under torchrun in `test_parallel.py`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from model import load_pipeline
from model.fsdp import FsdpError, fully_shard_pipeline

KW = dict(num_steps=2, seed=5, width=32, height=32, num_frames=5)


@pytest.fixture
def group(tmp_path: Path) -> Iterator[None]:
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/rdv", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def test_sharding_needs_a_process_group() -> None:
    pipe = load_pipeline("tiny-ti2v", device="cpu", dtype=torch.float32)
    with pytest.raises(FsdpError, match="launch with torchrun"):
        fully_shard_pipeline(pipe, "cpu")


def test_sharded_pipeline_gives_the_same_video_and_refuses_cache_and_loras(group: None) -> None:
    ref = load_pipeline("tiny-ti2v", device="cpu", dtype=torch.float32).generate("a fox", **KW)
    pipe = load_pipeline("tiny-ti2v", device="cpu", dtype=torch.float32)
    fully_shard_pipeline(pipe, "cpu")
    assert type(pipe.transformer.blocks[0]).__name__.startswith("FSDP")
    assert type(pipe.text_encoder.model).__name__.startswith("FSDP")
    torch.testing.assert_close(pipe.generate("a fox", **KW), ref, rtol=0, atol=1e-6)
    with pytest.raises(FsdpError, match="step caching is not supported with FSDP"):
        pipe.generate("a fox", cache={"type": "teacache", "threshold": 0.1}, **KW)
    with pytest.raises(FsdpError, match="LoRAs are not supported with FSDP"):
        pipe.generate("a fox", loras=[("x.safetensors", 1.0)], **KW)


def test_entry_point_refuses_fsdp_with_compile(capsys: pytest.CaptureFixture[str]) -> None:
    from model.__main__ import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--model", "tiny-ti2v", "--prompt", "p", "--out", "x.pt", "--fsdp", "--compile"])
    assert "--fsdp with --compile is not supported" in capsys.readouterr().err
