"""Which (size, frames, mode) buckets a worker warms: one eagerly, all served ones when compiled."""

from __future__ import annotations

from model.presets import PRESETS
from worker.runtime import warmup_buckets


def test_eager_warms_the_smallest_size_once() -> None:
    assert warmup_buckets(PRESETS["tiny-i2v-a14b"], compiled=False) == [(32, 32, 1, True)]
    assert warmup_buckets(PRESETS["tiny-ti2v"], compiled=False) == [(32, 32, 1, False)]


def test_compiled_warms_every_size_and_mode() -> None:
    p = PRESETS["tiny-ti2v"]
    got = warmup_buckets(p, compiled=True)
    assert len(got) == 2 * len(p.sizes)
    assert {(w, h) for w, h, _, _ in got} == set(p.sizes)
    assert {m for *_, m in got} == {False, True} and {f for _, _, f, _ in got} == {p.default_num_frames}
    assert {m for *_, m in warmup_buckets(PRESETS["tiny-t2v-a14b"], compiled=True)} == {False}
