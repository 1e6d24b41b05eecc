"""Flow-matching samplers of Wan2.2: UniPC (bh2, order 2), DPM-Solver++ 2M and Euler.

Reproduces `wan/utils/fm_solvers_unipc.py` (`FlowUniPCMultistepScheduler`) and
`wan/utils/fm_solvers.py` (`FlowDPMSolverMultistepScheduler`) of Wan2.2 at commit 42bf4cf, as used
by the official pipelines (`num_train_timesteps=1000`, constructor shift 1, shift applied when the
grid is built):

* The model predicts a velocity `v = eps - x0` for `x_t = (1 - sigma) x0 + sigma eps`, so
  `x0 = x_t - sigma * v`; in DPM/UniPC terms `alpha_t = 1 - sigma`, `sigma_t = sigma` and
  `lambda = log(alpha_t) - log(sigma_t)`.
* UniPC grid: `sigma = linspace(sigma_max, 0, N + 1)[:-1]` with `sigma_max = 0.999` (the float32
  value of `1 - 1/1000`), shifted with `s * sigma / (1 + (s - 1) * sigma)`. Note that diffusers'
  `UniPCMultistepScheduler` uses `linspace(1, 1/1000, N + 1)[:-1]` instead (offset by 1/1000).
* DPM++ grid (`get_sampling_sigmas`): `linspace(1, 0, N + 1)[:N]`, shifted the same way.
* Both: the DiT sees `timesteps = int64(sigma * 1000)` (truncation) and a final sigma 0 is
  appended.

Each sampler is a small stateful object built per generation: `sampler.timesteps` (int64 [N]),
`sampler.sigmas` (float32 [N + 1]) and `sampler.step(velocity, sample) -> next sample`, to be called
once per timestep in order. The update coefficients are computed in float64 from the float32
sigmas and applied to float32 latents.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = [
    "DPMSolverPP2M",
    "DistillSampler",
    "EulerSampler",
    "FlowSampler",
    "UniPCSampler",
    "distill_sigmas",
    "dpm_sigmas",
    "make_sampler",
    "shift_sigmas",
    "unipc_sigmas",
]

NUM_TRAIN_TIMESTEPS = 1000


# ---------------------------------------------------------------------------------------------------
# Sigma grids
# ---------------------------------------------------------------------------------------------------
def shift_sigmas(sigmas: np.ndarray, shift: float) -> np.ndarray:
    """Static time shift of flow matching: s*sigma / (1 + (s-1)*sigma)."""
    return shift * sigmas / (1.0 + (shift - 1.0) * sigmas)


def _finish_grid(shifted: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    timesteps = torch.from_numpy((shifted * NUM_TRAIN_TIMESTEPS).astype(np.int64))
    sigmas = torch.from_numpy(np.concatenate([shifted, [0.0]]).astype(np.float32))
    return sigmas, timesteps


def unipc_sigmas(num_steps: int, shift: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The official UniPC grid: returns (sigmas float32 [N+1], timesteps int64 [N])."""
    # sigma_max is read back from the float32 training table `1 - linspace(1, 1/T, T)[::-1]`.
    sigma_max = float(np.float32(1.0 - 1.0 / NUM_TRAIN_TIMESTEPS))
    base = np.linspace(sigma_max, 0.0, num_steps + 1)[:-1]
    return _finish_grid(shift_sigmas(base, shift))


def dpm_sigmas(num_steps: int, shift: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The official DPM++ grid (`get_sampling_sigmas`): starts at sigma 1, t = 1000."""
    base = np.linspace(1.0, 0.0, num_steps + 1)[:num_steps]
    return _finish_grid(shift_sigmas(base, shift))


def distill_sigmas(num_steps: int, shift: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The few-step distillation grid (Wan2.2-Lightning): s = linspace(1, 0, N + 1), shifted.

    Returns (sigmas float32 [N+1], timesteps float32 [N]). Unlike the official grids the
    timesteps keep their fraction (sigma * 1000, e.g. 937.5), as the distilled models were
    trained on: 4 steps at shift 5 give [1000, 937.5, 833.33, 625].
    """
    shifted = shift_sigmas(np.linspace(1.0, 0.0, num_steps + 1), shift).astype(np.float32)
    sigmas = torch.from_numpy(shifted)
    return sigmas, sigmas[:-1] * NUM_TRAIN_TIMESTEPS


def _lambda(sigma: float) -> float:
    """log-SNR of flow matching: log(1 - sigma) - log(sigma), with the limits at 0 and 1."""
    if sigma <= 0.0:
        return math.inf
    if sigma >= 1.0:
        return -math.inf
    return math.log(1.0 - sigma) - math.log(sigma)


# ---------------------------------------------------------------------------------------------------
# Samplers
# ---------------------------------------------------------------------------------------------------
class FlowSampler:
    """Base: holds the grid and the step counter."""

    name = "base"
    uses_guidance = True  # False: one conditional forward per step, guidance scales ignored

    def __init__(self, sigmas: torch.Tensor, timesteps: torch.Tensor) -> None:
        self.sigmas = sigmas  # float32 [N+1]
        self.timesteps = timesteps  # int64 [N] (float32 for the distill grid)
        self._sig = [float(s) for s in sigmas]  # python floats (exact float32 values)
        self.step_index = 0

    @property
    def num_steps(self) -> int:
        return int(self.timesteps.numel())

    def step(self, velocity: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def to(self, device: torch.device | str) -> FlowSampler:
        """Move the solver's history (earlier model outputs and samples) to `device`, in place.

        The grid (`sigmas`, `timesteps`) is a CPU table read as python numbers and stays put.
        """
        for key, value in vars(self).items():
            if key in ("sigmas", "timesteps"):
                continue
            if isinstance(value, torch.Tensor):
                setattr(self, key, value.to(device))
            elif isinstance(value, list) and value and isinstance(value[0], torch.Tensor):
                setattr(self, key, [v.to(device) for v in value])
        return self


class EulerSampler(FlowSampler):
    """First-order flow ODE step: x_{i+1} = x_i + (sigma_{i+1} - sigma_i) * v (official UniPC grid)."""

    name = "euler"

    def step(self, velocity: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        i = self.step_index
        out = sample + (self._sig[i + 1] - self._sig[i]) * velocity.to(sample.dtype)
        self.step_index += 1
        return out


class DistillSampler(EulerSampler):
    """Few-step Euler for distilled models (Lightning / LightX2V 4-step): same update as Euler on
    the `distill_sigmas` grid. The pipeline runs it without classifier-free guidance."""

    name = "distill"
    uses_guidance = False


class DPMSolverPP2M(FlowSampler):
    """Multistep DPM-Solver++ of order 2 (midpoint), data prediction, first order at both ends.

    Per step with s0 = sigma_i, t = sigma_{i+1}, h = lambda_t - lambda_s0:
      order 1: x_t = (t/s0) x - alpha_t (e^-h - 1) x0
      order 2: with h0 = lambda_s0 - lambda_s1, r0 = h0/h, D1 = (x0 - x0_prev)/r0,
               x_t = (t/s0) x - alpha_t (e^-h - 1) x0 - 0.5 alpha_t (e^-h - 1) D1
    The last step is first order (final sigma 0, `lower_order_final`), the first too.
    """

    name = "dpm++"

    def __init__(self, sigmas: torch.Tensor, timesteps: torch.Tensor) -> None:
        super().__init__(sigmas, timesteps)
        self._prev_x0: torch.Tensor | None = None

    def step(self, velocity: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        i = self.step_index
        s0, t = self._sig[i], self._sig[i + 1]
        x0 = sample - s0 * velocity.to(sample.dtype)
        lam_s0, lam_t = _lambda(s0), _lambda(t)
        alpha_t = 1.0 - t
        h = lam_t - lam_s0
        phi = math.expm1(-h)  # e^-h - 1 (-> -1 when t = 0)
        ratio = t / s0  # sigma_t / sigma_s0
        first_order = self._prev_x0 is None or i == self.num_steps - 1
        if first_order:
            out = ratio * sample - (alpha_t * phi) * x0
        else:
            assert self._prev_x0 is not None
            h0 = lam_s0 - _lambda(self._sig[i - 1])
            r0 = h0 / h
            if math.isinf(r0):  # previous sigma was 1 (lambda = -inf): D1 vanishes
                out = ratio * sample - (alpha_t * phi) * x0
            else:
                d1 = (x0 - self._prev_x0) / r0
                out = ratio * sample - (alpha_t * phi) * x0 - (0.5 * alpha_t * phi) * d1
        self._prev_x0 = x0
        self.step_index += 1
        return out


class UniPCSampler(FlowSampler):
    """UniPC multistep (B(h) = e^h - 1, "bh2"), order 2, data prediction, with the UniC corrector.

    Matches `FlowUniPCMultistepScheduler` defaults: solver_order 2, predict_x0, bh2,
    lower_order_final (the last step is order 1), corrector from the second step on, using the
    previous step's order. For order p and hh = -h:
      phi_1 = e^hh - 1, B_h = e^hh - 1,
      b_k = g_k * k! / B_h with g_1 = phi_1/hh - 1 and g_{k+1} = g_k/hh - 1/(k+1)!
      R_k = r^(k-1) (rows over the previous points r_i = (lambda_si - lambda_s0)/h, and 1).
    Predictor: x_t = (sigma_t/sigma_s0) x - alpha_t phi_1 m0 - alpha_t B_h sum(rho_p D1)
      (rho_p = 0.5 for order 2).
    Corrector: the same base with sum(rho_c[:-1] D1) + rho_c[-1] (m_t - m0), rho_c = R^-1 b
      (rho_c = 0.5 for order 1).
    """

    name = "unipc"
    solver_order = 2

    def __init__(self, sigmas: torch.Tensor, timesteps: torch.Tensor) -> None:
        super().__init__(sigmas, timesteps)
        self._x0s: list[torch.Tensor] = []  # model outputs (x0), newest last, at most `order`
        self._x0_idx: list[int] = []  # grid index of each stored output
        self._last_sample: torch.Tensor | None = None
        self._lower_order_nums = 0
        self._this_order = 1

    def _coeffs(self, hh: float, order: int, rks: list[float]) -> tuple[float, np.ndarray, np.ndarray]:
        """phi_1, R (order x order) and b (order) for the bh2 variant."""
        h_phi_1 = math.expm1(hh)
        h_phi_k = h_phi_1 / hh - 1.0
        b_h = math.expm1(hh)
        factorial = 1.0
        rows, bs = [], []
        r = np.asarray(rks, dtype=np.float64)
        for k in range(1, order + 1):
            rows.append(r ** (k - 1))
            bs.append(h_phi_k * factorial / b_h)
            factorial *= k + 1
            h_phi_k = h_phi_k / hh - 1.0 / factorial
        return h_phi_1, np.stack(rows), np.asarray(bs)

    def _corrector(self, model_t: torch.Tensor, x: torch.Tensor, order: int) -> torch.Tensor:
        """UniC: refine the sample computed by the previous predictor using its new x0."""
        i = self.step_index
        sigma_t, sigma_s0 = self._sig[i], self._sig[i - 1]
        lam_t, lam_s0 = _lambda(sigma_t), _lambda(sigma_s0)
        alpha_t = 1.0 - sigma_t
        h = lam_t - lam_s0
        m0 = self._x0s[-1]
        rks, d1s = [], []
        for k in range(1, order):
            si = i - (k + 1)
            mi = self._x0s[-(k + 1)]
            rk = (_lambda(self._sig[si]) - lam_s0) / h
            rks.append(rk)
            d1s.append((mi - m0) / rk)
        rks.append(1.0)
        hh = -h
        h_phi_1, R, b = self._coeffs(hh, order, rks)
        b_h = math.expm1(hh)
        rhos_c = np.array([0.5]) if order == 1 else np.linalg.solve(R, b)
        out = (sigma_t / sigma_s0) * x - (alpha_t * h_phi_1) * m0
        corr = torch.zeros_like(x)
        for k, d in enumerate(d1s):
            corr = corr + float(rhos_c[k]) * d
        d1_t = model_t - m0
        return out - (alpha_t * b_h) * (corr + float(rhos_c[-1]) * d1_t)

    def _predictor(self, x: torch.Tensor, order: int) -> torch.Tensor:
        """UniP-bh2 from sigma_i to sigma_{i+1}."""
        i = self.step_index
        sigma_t, sigma_s0 = self._sig[i + 1], self._sig[i]
        lam_t, lam_s0 = _lambda(sigma_t), _lambda(sigma_s0)
        alpha_t = 1.0 - sigma_t
        h = lam_t - lam_s0
        m0 = self._x0s[-1]
        d1s = []
        rks = []
        for k in range(1, order):
            si = i - k
            mi = self._x0s[-(k + 1)]
            rk = (_lambda(self._sig[si]) - lam_s0) / h
            rks.append(rk)
            d1s.append((mi - m0) / rk)
        rks.append(1.0)
        hh = -h
        h_phi_1 = math.expm1(hh)
        out = (sigma_t / sigma_s0) * x - (alpha_t * h_phi_1) * m0
        if d1s:
            b_h = math.expm1(hh)
            if order == 2:
                rhos_p = np.array([0.5])
            else:
                _, R, b = self._coeffs(hh, order, rks)
                rhos_p = np.linalg.solve(R[:-1, :-1], b[:-1])
            pred = torch.zeros_like(x)
            for k, d in enumerate(d1s):
                pred = pred + float(rhos_p[k]) * d
            out = out - (alpha_t * b_h) * pred
        return out

    def step(self, velocity: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        i = self.step_index
        x0 = sample - self._sig[i] * velocity.to(sample.dtype)
        # 1. corrector (UniC) on the current sample, with the previous step's order
        if i > 0 and self._last_sample is not None:
            sample = self._corrector(x0, self._last_sample, self._this_order)
        # 2. remember this model output
        self._x0s = (self._x0s + [x0])[-self.solver_order :]
        # 3. predictor order: lower at the start and for the final step
        order = min(self.solver_order, self.num_steps - i, self._lower_order_nums + 1)
        self._this_order = order
        self._last_sample = sample
        out = self._predictor(sample, order)
        self._lower_order_nums = min(self._lower_order_nums + 1, self.solver_order)
        self.step_index += 1
        return out


def make_sampler(name: str, num_steps: int, shift: float) -> FlowSampler:
    """Build a fresh sampler for one generation ("unipc" | "dpm++" | "euler" | "distill")."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if name == "unipc":
        return UniPCSampler(*unipc_sigmas(num_steps, shift))
    if name in ("dpm++", "dpmpp", "dpm"):
        return DPMSolverPP2M(*dpm_sigmas(num_steps, shift))
    if name == "euler":
        return EulerSampler(*unipc_sigmas(num_steps, shift))
    if name == "distill":
        return DistillSampler(*distill_sigmas(num_steps, shift))
    raise ValueError(f"sampler must be one of 'unipc', 'dpm++', 'euler', 'distill', got {name!r}")
