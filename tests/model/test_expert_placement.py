"""Expert placement and job pipelining (A14B): same videos as plain `generate`, same seed.

On a CPU-only machine both "devices" are the CPU, so these check the bookkeeping (phases, the one
crossing at the boundary, the hand-off between threads); `tests/gpu/test_expert_placement_cuda.py`
(the GPU tier of `make gpu-check`) places the experts on the GPU and the CPU.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from model import load_pipeline
from model.denoise_state import DenoiseState
from model.expert_pipeline import pipelined_generate, sequential_generate

KW: dict[str, Any] = dict(num_steps=4, width=48, height=32, num_frames=5)


def _pipe(name: str = "tiny-t2v-a14b") -> Any:
    return load_pipeline(name, device="cpu", dtype=torch.float32)


@pytest.mark.parametrize("name", ["tiny-t2v-a14b", "tiny-i2v-a14b"])
def test_placed_experts_give_the_same_video_and_cross_once(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = torch.rand(3, 32, 48, generator=torch.Generator().manual_seed(3)) * 2 - 1
    kw = dict(KW, seed=11, image=image if "i2v" in name else None)
    plain = _pipe(name)
    ref = plain.generate("a boat", **kw)
    n_high = plain.generate_high("a boat", **kw).n_high
    pipe = _pipe(name)
    pipe.place_experts("cpu", "cpu")
    crossings: list[int] = []
    move = DenoiseState.to

    def spy(self: DenoiseState, device: Any) -> DenoiseState:
        crossings.append(self.index)
        return move(self, device)

    monkeypatch.setattr(DenoiseState, "to", spy)
    steps: list[int] = []
    got = pipe.generate("a boat", callback=lambda i, n, t: steps.append(i), **kw)
    torch.testing.assert_close(got, ref, rtol=0, atol=0)
    assert steps == [1, 2, 3, 4]
    assert 0 < n_high < 4 and crossings == [n_high]  # once, right after the last high-noise step


def test_two_phases_equal_one_call() -> None:
    pipe = _pipe()
    ref = pipe.generate("a kite", seed=4, **KW)
    state = pipe.generate_high("a kite", seed=4, **KW)
    assert 0 < state.index == state.n_high < len(state.timesteps)
    torch.testing.assert_close(pipe.generate_low(state), ref, rtol=0, atol=0)


def test_pipelined_jobs_equal_sequential_ones() -> None:
    pipe = _pipe()
    requests = [dict(KW, prompt=f"job {k}", seed=k) for k in range(4)]
    ref = [pipe.generate(r["prompt"], **{k: v for k, v in r.items() if k != "prompt"}) for r in requests]
    for got, want in zip(pipelined_generate(pipe, requests), ref, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    for got, want in zip(sequential_generate(pipe, requests), ref, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert not torch.equal(ref[0], ref[1])


def test_an_error_in_a_phase_reaches_the_caller() -> None:
    pipe = _pipe()
    requests = [dict(KW, prompt="fine", seed=1), dict(KW, prompt="bad", seed=1, num_frames=6)]
    with pytest.raises(ValueError, match="num_frames"):
        pipelined_generate(pipe, requests)


def test_placement_needs_two_experts_and_refuses_offload_and_cache() -> None:
    with pytest.raises(ValueError, match="expert placement needs a two-expert"):
        _pipe("tiny-ti2v").place_experts("cpu", "cpu")
    pipe = _pipe()
    pipe.place_experts("cpu", "cpu")
    with pytest.raises(ValueError, match="step caching is not supported with experts placed"):
        pipe.generate("x", cache={"type": "teacache", "threshold": 0.1}, **KW)


def test_entry_point_expert_devices_argument(capsys: pytest.CaptureFixture[str]) -> None:
    from model.__main__ import parse_args

    base = ["--model", "tiny-t2v-a14b", "--prompt", "p", "--out", "x.pt"]
    assert parse_args([*base, "--expert-devices", "0,1"]).expert_devices == ("cuda:0", "cuda:1")
    assert parse_args([*base, "--expert-devices", "cuda:1,cpu"]).expert_devices == ("cuda:1", "cpu")
    for bad, says in (("0", "takes two devices"), ("0,gpu", "'gpu' is not a device")):
        with pytest.raises(SystemExit):
            parse_args([*base, "--expert-devices", bad])
        assert says in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args([*base, "--expert-devices", "0,1", "--ulysses", "2"])
    assert "not with --fsdp, --ulysses or --cfg-parallel" in capsys.readouterr().err
