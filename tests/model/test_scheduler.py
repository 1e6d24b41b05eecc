"""Flow samplers vs the official Wan2.2 formulas (grids, integer timesteps, update rules)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.scheduler import dpm_sigmas, make_sampler, shift_sigmas, unipc_sigmas

# shared/reference/wan22-architecture.md, Appendix A (integer t fed to the DiT, UniPC defaults)
T2V_A14B = [999, 997, 995, 993, 990, 988, 985, 982, 979, 976, 972, 969, 965, 961, 956, 952, 947, 941, 936,
            929, 922, 915, 907, 898, 888, 877, 865, 852, 837, 819, 799, 776, 749, 717, 678, 631, 571, 492,
            386, 235]  # fmt: skip
I2V_A14B = [999, 994, 989, 983, 978, 972, 965, 959, 952, 944, 937, 929, 920, 911, 902, 892, 882, 870, 859,
            846, 833, 818, 803, 786, 768, 749, 728, 706, 681, 654, 624, 591, 555, 514, 468, 416, 356, 288,
            208, 113]  # fmt: skip
TI2V_5B = [999, 995, 991, 987, 982, 978, 973, 968, 963, 957, 952, 946, 940, 934, 927, 920, 913, 906, 898,
           890, 882, 873, 863, 854, 843, 833, 821, 809, 796, 783, 768, 753, 737, 720, 701, 681, 660, 636,
           611, 584, 555, 522, 487, 448, 405, 356, 302, 241, 172, 92]  # fmt: skip


@pytest.mark.parametrize(
    ("steps", "shift", "expected", "boundary", "n_high"),
    [(40, 12.0, T2V_A14B, 875, 26), (40, 5.0, I2V_A14B, 900, 15), (50, 5.0, TI2V_5B, None, None)],
)
def test_official_unipc_timesteps(steps, shift, expected, boundary, n_high):
    sigmas, ts = unipc_sigmas(steps, shift)
    assert ts.dtype == torch.int64 and ts.tolist() == expected
    assert sigmas.dtype == torch.float32 and sigmas.shape == (steps + 1,) and sigmas[-1] == 0
    if boundary is not None:
        assert sum(t >= boundary for t in expected) == n_high


def test_unipc_grid_formula():
    # sigma = shift(linspace(0.999, 0, n+1)[:-1]); first values quoted in the reference
    s, _ = unipc_sigmas(50, 5.0)
    assert s[:3].tolist() == pytest.approx([0.9998, 0.995732, 0.99153], abs=2e-6)
    s, _ = unipc_sigmas(40, 12.0)
    assert s[:3].tolist() == pytest.approx([0.999917, 0.997783, 0.995546], abs=2e-6)
    base = np.linspace(np.float32(0.999), 0, 11)[:-1]
    ref = shift_sigmas(base, 3.0)
    assert np.allclose(unipc_sigmas(10, 3.0)[0][:-1].numpy(), ref.astype(np.float32))
    assert unipc_sigmas(10, 3.0)[1].tolist() == (ref * 1000).astype(np.int64).tolist()


def test_dpm_grid_starts_at_1000_and_splits_like_unipc():
    s, ts = dpm_sigmas(40, 12.0)
    assert ts[0] == 1000 and s[0] == 1.0 and s[-1] == 0.0
    assert sum(int(t) >= 875 for t in ts) == 26
    assert (ts[1:] - unipc_sigmas(40, 12.0)[1][1:]).abs().max() <= 1
    _, ts = dpm_sigmas(40, 5.0)
    assert sum(int(t) >= 900 for t in ts) == 15


@pytest.mark.parametrize("name", ["unipc", "dpm++", "euler", "distill"])
def test_straight_flow_is_solved_exactly(name):
    """With the exact velocity of a straight path (v = eps - x0), every solver lands on x0."""
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 3, 4, generator=g), torch.randn(2, 3, 4, generator=g)
    sampler = make_sampler(name, 7, 5.0)
    x = (1 - sampler.sigmas[0]) * x0 + sampler.sigmas[0] * eps
    for _ in range(sampler.num_steps):
        x = sampler.step(eps - x0, x)
    assert torch.allclose(x, x0, atol=1e-5)


def _toy_velocity(x: torch.Tensor, t: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bj...->bi...", w, x) * (1 + t.float() / 1000) + torch.sin(x)


@pytest.mark.parametrize(("steps", "shift"), [(2, 5.0), (4, 3.0), (10, 5.0), (40, 12.0)])
def test_unipc_matches_diffusers_with_the_official_grid(steps, shift):
    diffusers = pytest.importorskip("diffusers")
    ref = diffusers.UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000, flow_shift=shift
    )
    ref.set_timesteps(sigmas=np.linspace(1 - 1 / 1000, 0, steps + 1)[:-1], device="cpu")
    ours = make_sampler("unipc", steps, shift)
    assert torch.equal(ref.timesteps, ours.timesteps)
    g = torch.Generator().manual_seed(1)
    w = torch.randn(4, 4, generator=g) * 0.3
    x = torch.randn(2, 4, 3, 5, generator=g)
    y = x.clone()
    for t in ours.timesteps:
        x = ours.step(_toy_velocity(x, t, w), x)
        y = ref.step(_toy_velocity(y, t, w), t, y, return_dict=False)[0]
    assert (x - y).abs().max().item() < 1e-5


@pytest.mark.parametrize(("steps", "shift"), [(2, 5.0), (10, 5.0), (40, 12.0)])
def test_dpmpp_matches_diffusers_on_the_same_grid(steps, shift):
    diffusers = pytest.importorskip("diffusers")
    ref = diffusers.DPMSolverMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000, flow_shift=1.0,
        algorithm_type="dpmsolver++", solver_order=2, solver_type="midpoint", final_sigmas_type="zero",
        lower_order_final=True,
    )  # fmt: skip
    ref.set_timesteps(steps, device="cpu")
    ours = make_sampler("dpm++", steps, shift)
    ref.sigmas, ref.timesteps = ours.sigmas.clone(), ours.timesteps.clone()  # the official DPM++ grid
    g = torch.Generator().manual_seed(2)
    w = torch.randn(4, 4, generator=g) * 0.3
    x = torch.randn(2, 4, 3, 5, generator=g)
    y = x.clone()
    for t in ours.timesteps:
        x = ours.step(_toy_velocity(x, t, w), x)
        y = ref.step(_toy_velocity(y, t, w), t, y, return_dict=False)[0]
    assert torch.isfinite(x).all()
    assert (x - y).abs().max().item() < 1e-5


def test_euler_is_the_explicit_flow_step():
    s = make_sampler("euler", 3, 5.0)
    x = torch.ones(3)
    v = torch.full((3,), 2.0)
    out = s.step(v, x)
    assert torch.allclose(out, x + (s.sigmas[1] - s.sigmas[0]) * v)


def test_unknown_sampler_and_bad_steps():
    with pytest.raises(ValueError, match="sampler"):
        make_sampler("ddim", 4, 5.0)
    with pytest.raises(ValueError, match="num_steps"):
        make_sampler("unipc", 0, 5.0)


# --------------------------------------------------------------------------------------------------
# few-step distillation (Wan2.2-Lightning / LightX2V), shared/reference/acceleration.md §1
# --------------------------------------------------------------------------------------------------
def test_distill_grid_is_the_lightning_4_step_schedule():
    s = make_sampler("distill", 4, 5.0)
    assert s.timesteps.tolist() == pytest.approx([1000.0, 937.5, 833.3333, 625.0], abs=1e-3)
    assert s.sigmas.tolist() == pytest.approx([1.0, 0.9375, 0.833333, 0.625, 0.0], abs=1e-6)
    assert not s.uses_guidance and make_sampler("euler", 4, 5.0).uses_guidance
    for boundary in (875.0, 900.0):  # T2V and I2V A14B: 2 high-noise steps, then 2 low-noise
        assert [t >= boundary for t in s.timesteps.tolist()] == [True, True, False, False]


def test_distill_8_step_schedule_and_euler_update():
    s = make_sampler("distill", 8, 5.0)
    expected = [1000, 972.2, 937.5, 892.9, 833.3, 750, 625, 416.7]  # the authors' 8-step list
    assert s.timesteps.tolist() == pytest.approx(expected, abs=0.05)
    x = torch.randn(2, 3)
    v = torch.randn(2, 3)
    out = s.step(v, x)
    assert torch.allclose(out, x + (s.sigmas[1] - s.sigmas[0]) * v)
