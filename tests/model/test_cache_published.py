"""The published MagCache ratios make `magcache` available on the official Wan2.2 presets."""

from __future__ import annotations

import pytest
import torch

from model.cache import CacheError, StepCache, resolve_cache, supported_types
from model.presets import get_preset

OFFICIAL = ("wan2.2-t2v-a14b", "wan2.2-i2v-a14b", "wan2.2-ti2v-5b")


@pytest.mark.parametrize("model_id", OFFICIAL)
def test_official_presets_accept_magcache_with_the_published_numbers(model_id):
    steps = get_preset(model_id).default_num_steps
    assert "magcache" in supported_types(model_id, None)
    spec = resolve_cache({"type": "magcache"}, model_id)
    assert spec is not None and spec.threshold == 0.06 and spec.max_skips == 2  # upstream's E006K2
    for branch in ("cond", "uncond"):
        ratios = spec.ratios[branch]
        assert len(ratios) == steps and ratios[0] == 1.0  # calibrated at the preset's default steps
        assert all(0.5 < r < 1.1 for r in ratios)
    assert resolve_cache({"type": "magcache", "max_skips": 4}, model_id).max_skips == 4


def test_published_values_are_split_per_branch_in_order():
    t2v = resolve_cache({"type": "magcache"}, "wan2.2-t2v-a14b")
    # upstream's list starts [1.00124 (cond, step 1), 1.00155 (uncond, step 1), 0.99822, ...] and
    # dips to 0.65523 / 0.65252 at the expert switch (step 26)
    assert t2v.ratios["cond"][1:3] == [1.00124, 0.99822] and t2v.ratios["uncond"][1] == 1.00155
    assert t2v.ratios["cond"][26] == 0.65523 and t2v.ratios["uncond"][26] == 0.65252
    assert t2v.ratios["cond"][-1] == 0.80263 and t2v.retention == 0.4
    i2v = resolve_cache({"type": "magcache"}, "wan2.2-i2v-a14b")
    assert i2v.ratios["cond"][15] == 0.91076 and i2v.retention == (1.0, 0.1)


def test_ti2v_picks_the_image_ratios_for_an_image_request():
    text = resolve_cache({"type": "magcache"}, "wan2.2-ti2v-5b")
    image = resolve_cache({"type": "magcache"}, "wan2.2-ti2v-5b", image=True)
    assert text.ratios["cond"][1] == 0.99505 and image.ratios["cond"][1] == 0.99512
    assert text.ratios != image.ratios


def test_i2v_a14b_never_skips_the_high_noise_expert():
    spec = resolve_cache({"type": "magcache", "threshold": 2.0}, "wan2.2-i2v-a14b")
    n_high, n = 10, 40
    cache = StepCache(spec, n)
    x = torch.ones(2, 4, 3)
    for i in range(n):
        high = i < n_high
        cache.begin_step(
            i, 0 if high else 1, ("cond", "uncond"), i if high else i - n_high, n_high if high else n - n_high
        )
        cache.run_blocks(x, torch.ones(1, 3), torch.ones(1, 6, 3), 2, lambda h, a, b, rows: h * 1.1 + 1.0)
    assert all(all(d.values()) for d in cache.decisions[:n_high])
    low = cache.decisions[n_high:]
    assert all(low[0].values()) and not all(all(d.values()) for d in low)  # the low-noise one does


def test_presets_without_published_numbers_still_refuse():
    with pytest.raises(CacheError) as info:
        resolve_cache({"type": "teacache"}, "wan2.2-t2v-a14b")  # no A14B TeaCache anywhere
    assert info.value.field == "cache.type" and "wanserve calibrate" in str(info.value)
