"""Step caching (`model.cache`): diffusers First-Block Cache parity, per-branch / per-expert state."""

from __future__ import annotations

import pytest
import torch

from model import load_pipeline
from model.cache import CacheError, CacheSpec, StepCache, resolve_cache

diffusers = pytest.importorskip("diffusers")
pytest.importorskip("transformers")
pytest.importorskip("ftfy")


def _record_diffusers_decisions(monkeypatch) -> list[bool]:
    """Record every decision diffusers' First-Block Cache takes (the hook's own return value)."""
    from diffusers.hooks import first_block_cache as fbc

    seen: list[bool] = []
    stock = fbc.FBCHeadBlockHook._should_compute_remaining_blocks

    def recording(self, residual):
        out = stock(self, residual)
        seen.append(bool(out))
        return out

    monkeypatch.setattr(fbc.FBCHeadBlockHook, "_should_compute_remaining_blocks", recording)
    return seen


@pytest.mark.parity
@pytest.mark.parametrize("kind", ["ti2v-t2v", "t2v-a14b"])
def test_first_block_matches_diffusers_decision_for_decision(tmp_path, monkeypatch, kind):
    from diffusers.hooks import FirstBlockCacheConfig, apply_first_block_cache
    from test_pipeline_parity import NEGATIVE, PROMPT, _build

    threshold, steps = 0.2, 12
    ref_pipe = _build(kind)
    folder = tmp_path / kind
    ref_pipe.save_pretrained(str(folder))
    ours = load_pipeline(str(folder))
    size = dict(height=64, width=64) if kind.startswith("ti2v") else dict(height=32, width=48)
    guidance = (5.0, 5.0) if kind.startswith("ti2v") else (3.0, 4.0)
    shift = 5.0 if kind.startswith("ti2v") else 12.0

    for m in (ref_pipe.transformer, ref_pipe.transformer_2):
        if m is not None:
            apply_first_block_cache(m, FirstBlockCacheConfig(threshold=threshold))
    seen = _record_diffusers_decisions(monkeypatch)
    kwargs = dict(
        prompt=PROMPT, negative_prompt=NEGATIVE, num_frames=9, num_inference_steps=steps,
        guidance_scale=guidance[1], generator=torch.Generator().manual_seed(7), output_type="pt",
        max_sequence_length=512, **size,
    )  # fmt: skip
    if ref_pipe.transformer_2 is not None:
        kwargs["guidance_scale_2"] = guidance[0]
    with torch.no_grad():
        ref = ref_pipe(**kwargs).frames[0].permute(1, 0, 2, 3) * 2.0 - 1.0

    got = ours.generate(
        PROMPT, negative_prompt=NEGATIVE, num_frames=9, num_steps=steps, shift=shift, seed=7,
        guidance_scale=guidance if ours.transformer_2 is not None else guidance[0],
        cache={"type": "first_block", "threshold": threshold, "max_skips": 100}, **size,
    )  # fmt: skip
    cache = ours.last_cache
    assert cache is not None
    # diffusers decides cond then uncond at every step (its cache_context per branch)
    ref_pairs = [tuple(seen[i : i + 2]) for i in range(0, len(seen), 2)]
    our_pairs = [(d["cond"], d["uncond"]) for d in cache.decisions]
    assert len(our_pairs) == len(ref_pairs) == steps
    assert sum(not c for pair in ref_pairs for c in pair) >= 2, "diffusers must really skip here"
    assert ref_pairs[-1] == (True, True)  # so that our forced last step agrees as well
    assert our_pairs == ref_pairs
    assert (got - ref).abs().max().item() < 1e-4  # same decisions, same residual reuse, same video


# --------------------------------------------------------------------------------------------------
# per-branch and per-expert state, for each type, on a scripted block stack
# --------------------------------------------------------------------------------------------------
L, D = 4, 3
STEPS = 8


class ScriptedBlocks:
    """Block 0 adds ``r0[row]`` (so the first-block residual is scripted); the rest compute h*1.1+1."""

    def __init__(self) -> None:
        self.r0 = torch.ones(2)
        self.calls: list[tuple[int, int, list[int] | None]] = []

    def __call__(self, h, start, stop, rows):
        self.calls.append((start, stop, rows))
        if start == 0:
            r0 = self.r0 if rows is None else self.r0[rows]
            h = h + r0[: h.shape[0], None, None]
            start = 1
        return h * 1.1 + 1.0 if stop > start else h


def _spec(kind: str, **kw) -> CacheSpec:
    if kind == "teacache":
        return CacheSpec(kind, 0.5, coefficients=(1.0, 0.0), **kw)  # poly(rel) = rel
    if kind == "magcache":
        ratios = {"cond": [1.0] * STEPS, "uncond": [1.6] * STEPS}
        return CacheSpec(kind, 0.3, ratios=ratios, retention=0.0, **kw)
    return CacheSpec(kind, 0.05, **kw)


def _step(cache, blocks, i, expert, moving: float, branches=("cond", "uncond"), e0=None):
    """One transformer call: row 0 ('cond') steady, row 1 ('uncond') moving by ``moving`` per step."""
    cache.begin_step(i, expert, branches)
    B = len(branches)
    x = torch.ones(B, L, D)
    if B == 2:
        x[1] += moving * (i % 2)  # easycache input
        blocks.r0 = torch.tensor([1.0, 1.0 + 4.0 * moving * (i % 2)])  # first-block residual
    e = torch.ones(1, D)
    e0 = torch.ones(1, 6, D) if e0 is None else e0
    return cache.run_blocks(x, e, e0, 3, blocks)


@pytest.mark.parametrize("kind", ["first_block", "teacache", "magcache", "easycache"])
def test_each_branch_decides_for_itself(kind):
    cache, blocks = StepCache(_spec(kind, max_skips=100), STEPS), ScriptedBlocks()
    if kind == "teacache":  # cond and uncond share e0 when batched: run the branches as two passes
        for i in range(STEPS - 1):
            _step(cache, blocks, i, 0, 0.0, ("cond",), e0=torch.ones(1, 6, D))
            _step(cache, blocks, i, 0, 0.0, ("uncond",), e0=torch.full((1, 6, D), 1.0 + 3 * (i % 2)))
        cond = [d["cond"] for d in cache.decisions[0::2]]
        uncond = [d["uncond"] for d in cache.decisions[1::2]]
    else:
        for i in range(STEPS - 1):
            _step(cache, blocks, i, 0, 3.0)
        cond = [d["cond"] for d in cache.decisions]
        uncond = [d["uncond"] for d in cache.decisions]
        # the remaining blocks ran for the moving branch alone on the steps the steady one skipped
        assert any(rows == [1] for _, _, rows in blocks.calls)
    assert cond[0] and uncond[0]
    assert not any(cond[2:]), cond  # steady branch skips once it has a reference
    assert sum(uncond) > sum(cond), (cond, uncond)


@pytest.mark.parametrize("kind", ["first_block", "teacache", "magcache", "easycache"])
def test_state_is_per_expert_and_reset_at_the_switch(kind):
    cache, blocks = StepCache(_spec(kind, max_skips=100), STEPS), ScriptedBlocks()
    for i in range(4):
        _step(cache, blocks, i, 0, 0.0)
    assert not cache.decisions[3]["cond"]  # steady state: expert 0 was skipping
    skipped_before = cache.state("cond").residual
    assert skipped_before is not None
    _step(cache, blocks, 4, 1, 0.0)  # the switch to the low-noise expert
    assert cache.decisions[4] == {"cond": True, "uncond": True}  # fresh state: everything runs
    assert (0, "cond") not in cache._states and (0, "uncond") not in cache._states
    for i in range(5, 7):
        _step(cache, blocks, i, 1, 0.0)
    assert cache.decisions[-1]["cond"] is False  # and the new expert builds its own state


@pytest.mark.parametrize("kind", ["first_block", "teacache", "magcache", "easycache"])
def test_first_last_and_consecutive_skip_cap(kind):
    cache, blocks = StepCache(_spec(kind, max_skips=2), STEPS), ScriptedBlocks()
    for i in range(STEPS):
        _step(cache, blocks, i, 0, 0.0)
    cond = [d["cond"] for d in cache.decisions]
    assert cond[0] and cond[-1]
    run = 0
    for c in cond:
        run = 0 if c else run + 1
        assert run <= 2
    assert cache.steps_computed + cache.steps_skipped == STEPS and not all(cond)


def test_skipped_rows_reuse_their_own_residual():
    cache, blocks = StepCache(_spec("easycache", max_skips=100), STEPS), ScriptedBlocks()
    outs = [_step(cache, blocks, i, 0, 0.0) for i in range(4)]
    assert not cache.decisions[3]["cond"]
    assert torch.equal(outs[3], outs[2])  # steady input + cached residual = the computed output


# --------------------------------------------------------------------------------------------------
# requests: validation and the pipeline
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cache", "sampler", "field"),
    [
        ({"type": "nope"}, "unipc", "cache.type"),
        ({"type": "first_block", "threshold": 0}, "unipc", "cache.threshold"),
        ({"type": "first_block", "threshold": 5.0}, "unipc", "cache.threshold"),
        ({"type": "first_block", "threshold": "x"}, "unipc", "cache.threshold"),
        ({"type": "teacache"}, "unipc", "cache.type"),  # no calibration for this model
        ({"type": "magcache"}, "unipc", "cache.type"),
        ({"type": "first_block"}, "distill", "cache"),
        ({"type": "first_block", "bogus": 1}, "unipc", "cache"),
    ],
)
def test_bad_requests_name_the_field(cache, sampler, field):
    with pytest.raises(CacheError) as info:
        resolve_cache(cache, "tiny-t2v-a14b", None, sampler)
    assert info.value.field == field


def test_published_and_default_thresholds():
    assert resolve_cache({"type": "teacache"}, "wan2.2-ti2v-5b").threshold == 0.26
    assert resolve_cache({"type": "first_block"}, "tiny-ti2v").threshold == 0.05
    assert resolve_cache({"type": "easycache", "threshold": 0.1}, "tiny-ti2v").threshold == 0.1
    assert resolve_cache(None, "tiny-ti2v") is None


@pytest.fixture(scope="module")
def tiny_t2v():
    return load_pipeline("tiny-t2v-a14b")


def test_pipeline_without_skips_equals_uncached_and_counts_steps(tiny_t2v):
    kw = dict(height=32, width=32, num_frames=5, num_steps=6, shift=5.0, seed=3)
    plain = tiny_t2v.generate("a fox", **kw)
    assert tiny_t2v.last_cache is None
    tiny_t2v.cache_calibration = {
        "teacache": {"coefficients": [0.0, 0.0], "threshold": 0.1},
        "magcache": {"ratios": {"cond": [3.0] * 6, "uncond": [3.0] * 6}, "threshold": 0.1},
    }
    try:
        for kind in ("first_block", "teacache", "magcache", "easycache"):
            thr = 1e-9 if kind != "teacache" else 2.0  # teacache: poly == 0 never reaches 2 -> skips
            out = tiny_t2v.generate("a fox", cache={"type": kind, "threshold": thr}, **kw)
            c = tiny_t2v.last_cache
            if kind == "teacache":
                assert c.steps_skipped > 0 and not torch.equal(out, plain)
            else:
                assert c.steps_computed == 6 and c.steps_skipped == 0
                assert torch.equal(out, plain), kind  # the cached path computes the same numbers
    finally:
        tiny_t2v.cache_calibration = None


@pytest.mark.parametrize("kind", ["first_block", "easycache"])
def test_warmup_steps_always_run(kind):
    n = 8
    cache, blocks = StepCache(_spec(kind, max_skips=100, warmup=0.4), n), ScriptedBlocks()
    for i in range(n):
        _step(cache, blocks, i, 0, 0.0)
    cond = [d["cond"] for d in cache.decisions]
    assert cond[:4] == [True] * 4  # ceil(0.4 * 8) = 4 leading steps run
    assert not any(cond[4:-1]), cond  # then the steady branch skips as without a warm-up
    plain = StepCache(_spec(kind, max_skips=100), n)
    for i in range(n):
        _step(plain, ScriptedBlocks(), i, 0, 0.0)
    assert sum(d["cond"] for d in plain.decisions) < sum(cond)


def test_warmup_defaults_and_calibrated_values():
    # diffusers' First-Block Cache has no warm-up (the parity above relies on it); EasyCache's
    # paper keeps its first steps
    assert resolve_cache({"type": "first_block"}, "tiny-ti2v").warmup == 0.0
    assert resolve_cache({"type": "easycache"}, "tiny-ti2v").warmup == 0.2
    cal = {"first_block": {"threshold": 0.3, "warmup": 0.1, "max_skips": 4}}
    spec = resolve_cache({"type": "first_block"}, "m", cal)
    assert (spec.threshold, spec.warmup, spec.max_skips) == (0.3, 0.1, 4)
    with pytest.raises(CacheError):
        resolve_cache({"type": "first_block"}, "m", {"first_block": {"threshold": 0.3, "warmup": 1.5}})
