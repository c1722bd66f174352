"""The rest of the official ``sample_k`` samplers (k-heun, k-lms, k-dpmpp-2s-ancestral, k-dpm-2,
k-dpm-fast, k-dpm-adaptive): closed forms on Gaussian toy data and hand re-derivations."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from audiox_core.errors import InputError, Interrupted
from audiox_core.sampling import (
    ADAPTIVE_OFFICIAL,
    K_SAMPLERS,
    OFFICIAL_K_SAMPLERS,
    GaussianNoiseSampler,
    VDenoiser,
    ancestral_step,
    dpm_fast_orders,
    lms_coefficients,
    polyexponential_sigmas,
    sample_dpm_2,
    sample_dpm_adaptive,
    sample_dpm_fast,
    sample_dpmpp_2s_ancestral,
    sample_euler,
    sample_heun,
    sample_lms,
    sample_v_objective,
)

from sampling_toys import CountingModel, ve_denoiser, ve_ode_solution, vp_velocity

D64 = torch.float64
MU, S_DATA = 0.7, 0.5
SMIN, SMAX = 0.05, 80.0


def _gauss(shape, seed):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=D64)


def _den():
    return VDenoiser(vp_velocity(torch.tensor(MU, dtype=D64), S_DATA))


def _ode_target(noise, sigmas):
    """Exact flow from sigma_max to the last positive sigma, then the final x <- D jump."""
    smax, smin = float(sigmas[0]), float(sigmas[-2])
    x_smin = ve_ode_solution(noise * smax, MU, S_DATA, smax, smin)
    return MU + S_DATA**2 / (S_DATA**2 + smin**2) * (x_smin - MU)


# ----------------------------------------------------------------------------------------------
# the official names
# ----------------------------------------------------------------------------------------------
def test_every_official_sampler_name_is_offered():
    # sample_k's sampler_type values (its gradio dropdown lists all but k-dpm-adaptive)
    official = {"dpmpp-2m-sde", "dpmpp-3m-sde", "k-heun", "k-lms", "k-dpmpp-2s-ancestral", "k-dpm-2",
                "k-dpm-fast", "k-dpm-adaptive"}
    assert set(OFFICIAL_K_SAMPLERS) == official
    assert official <= set(K_SAMPLERS)
    from audiox_core.generate import BASE_SAMPLERS_V
    assert official <= set(BASE_SAMPLERS_V)
    assert ADAPTIVE_OFFICIAL["rtol"] == 0.01 and ADAPTIVE_OFFICIAL["atol"] == 0.01


# ----------------------------------------------------------------------------------------------
# ODE samplers follow the exact flow
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sampler,steps,tol", [
    (sample_heun, 60, 1e-2),
    (sample_dpm_2, 60, 1e-2),
    (sample_lms, 60, 1e-2),
    (lambda d, x, s: sample_dpmpp_2s_ancestral(d, x, s, eta=0.0), 60, 2e-3),
])
def test_grid_samplers_follow_the_ode(sampler, steps, tol):
    noise = _gauss((2, 3, 16), 3)
    sigmas = polyexponential_sigmas(steps, SMIN, SMAX).to(D64)
    out = sampler(_den(), noise * sigmas[0], sigmas)
    assert (out - _ode_target(noise, sigmas)).abs().max().item() < tol


def test_second_and_fourth_order_beat_euler():
    noise = _gauss((1, 2, 32), 4)
    sig = polyexponential_sigmas(25, SMIN, SMAX).to(D64)
    want = _ode_target(noise, sig)
    err = {name: (fn(_den(), noise * sig[0], sig) - want).abs().max().item()
           for name, fn in (("euler", sample_euler), ("heun", sample_heun), ("dpm2", sample_dpm_2),
                            ("lms", sample_lms))}
    assert max(err["heun"], err["dpm2"], err["lms"]) < err["euler"] / 5


def test_heun_and_dpm2_single_step_by_hand():
    # schedule [s0, s1, 0]: one Heun / midpoint step, then the Euler step to 0 (= x <- D)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 4))
    W = rng.standard_normal((3, 3)) * 0.3

    def D_np(x, s):
        return np.tanh(np.einsum("ij,bjl->bil", W, x)) / (1 + s) + 0.1 * x

    def D_t(xt, sig):
        return torch.from_numpy(D_np(xt.numpy(), sig[0].item()))

    s0, s1 = 9.0, 2.0
    sig = torch.tensor([s0, s1, 0.0], dtype=D64)
    # Heun
    d = (x - D_np(x, s0)) / s0
    xe = x + (s1 - s0) * d
    d2 = (xe - D_np(xe, s1)) / s1
    xh = x + (s1 - s0) * (d + d2) / 2
    want = D_np(xh, s1)
    np.testing.assert_allclose(sample_heun(D_t, torch.from_numpy(x), sig).numpy(), want, rtol=1e-12, atol=1e-12)
    # DPM-2: midpoint at the geometric mean
    sm = math.sqrt(s0 * s1)
    xm = x + (sm - s0) * d
    dm = (xm - D_np(xm, sm)) / sm
    x1 = x + (s1 - s0) * dm
    np.testing.assert_allclose(sample_dpm_2(D_t, torch.from_numpy(x), sig).numpy(), D_np(x1, s1),
                               rtol=1e-12, atol=1e-12)


def test_call_counts():
    sig = polyexponential_sigmas(10, SMIN, SMAX).to(D64)
    x = _gauss((1, 2, 4), 5) * sig[0]
    for fn, calls in ((sample_heun, 19), (sample_dpm_2, 19), (sample_lms, 10),
                      (lambda d, x, s: sample_dpmpp_2s_ancestral(d, x, s, generator=torch.Generator()), 19)):
        m = CountingModel(vp_velocity(torch.tensor(MU, dtype=D64), S_DATA))
        fn(VDenoiser(m), x, sig)
        assert m.calls == calls


# ----------------------------------------------------------------------------------------------
# LMS
# ----------------------------------------------------------------------------------------------
def test_lms_coefficients_match_numerical_integration():
    sig = polyexponential_sigmas(12, 0.3, 500.0).double().numpy()
    nodes, weights = np.polynomial.legendre.leggauss(20)
    for i in range(11):
        order = min(i + 1, 4)
        got = lms_coefficients(sig, i, order)
        a, b = sig[i], sig[i + 1]
        tau = (b - a) / 2 * nodes + (a + b) / 2
        for j in range(order):
            basis = np.ones_like(tau)
            for k in range(order):
                if k != j:
                    basis *= (tau - sig[i - k]) / (sig[i - j] - sig[i - k])
            want = (b - a) / 2 * np.sum(weights * basis)
            assert got[j] == pytest.approx(want, rel=1e-9, abs=1e-12 * abs(b - a))
        assert sum(got) == pytest.approx(b - a, rel=1e-12)  # the basis sums to 1
    with pytest.raises(InputError):
        lms_coefficients(sig, 1, 3)


def test_lms_integrates_polynomial_derivatives_exactly():
    # D(x, sigma) = x - sigma p(sigma)  =>  dx/dsigma = p(sigma): step i of order k is exact for
    # polynomials of degree < k, so with p cubic the steps from i = 3 on are exact.
    coef = [0.3, -0.02, 0.004, -1e-4]
    p = np.polynomial.Polynomial(coef)
    P = p.integ()

    def D(x, sigma):
        s = sigma[0].item()
        return x - s * p(s)

    sig = polyexponential_sigmas(9, 0.5, 40.0).to(D64)
    seen = []
    x0 = torch.zeros(1, 1, 1, dtype=D64)

    def hook(x, level, i):
        seen.append(x.item())
        return x

    sample_lms(D, x0, sig[:-1], after_step=hook)  # stop at the last positive sigma (no division by 0)
    xs = [0.0] + seen
    s = sig.tolist()
    for i in range(3, len(s) - 2):
        assert xs[i + 1] - xs[i] == pytest.approx(P(s[i + 1]) - P(s[i]), rel=1e-9)
    # order 1 is Euler
    e1 = sample_lms(_den(), _gauss((1, 2, 3), 6) * 80, sig, order=1)
    e2 = sample_euler(_den(), _gauss((1, 2, 3), 6) * 80, sig)
    assert torch.allclose(e1, e2, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------------------------
# ancestral DPM++(2S)
# ----------------------------------------------------------------------------------------------
def test_ancestral_step_formula():
    for sf, st, eta in ((10.0, 4.0, 1.0), (3.0, 0.5, 0.5), (2.0, 1.9, 1.0)):
        down, up = ancestral_step(torch.tensor(sf, dtype=D64), torch.tensor(st, dtype=D64), eta)
        want_up = min(st, eta * math.sqrt(st**2 * (sf**2 - st**2) / sf**2))
        assert float(up) == pytest.approx(want_up, rel=1e-12)
        assert float(down) ** 2 + float(up) ** 2 == pytest.approx(st**2, rel=1e-12)
    assert ancestral_step(torch.tensor(3.0), torch.tensor(1.0), 0.0)[1] == 0.0


def test_dpmpp_2s_ancestral_single_step_by_hand():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 2, 5))
    eps = rng.standard_normal((1, 2, 5))

    def D_np(x, s):
        return np.sin(x) / (1 + s)

    def D_t(xt, sig):
        return torch.from_numpy(D_np(xt.numpy(), sig[0].item()))

    s0, s1 = 6.0, 1.5
    up = math.sqrt(s1**2 * (s0**2 - s1**2) / s0**2)
    down = math.sqrt(s1**2 - up**2)
    h = math.log(s0) - math.log(down)
    sm = s0 * math.exp(-h / 2)
    x2 = (sm / s0) * x + (1 - math.exp(-h / 2)) * D_np(x, s0)
    x1 = (down / s0) * x + (1 - math.exp(-h)) * D_np(x2, sm) + up * eps
    got = sample_dpmpp_2s_ancestral(D_t, torch.from_numpy(x), torch.tensor([s0, s1], dtype=D64),
                                    noise_sampler=lambda a, b: torch.from_numpy(eps))
    np.testing.assert_allclose(got.numpy(), x1, rtol=1e-12, atol=1e-12)


def test_dpmpp_2s_ancestral_hits_the_right_distribution():
    g = torch.Generator().manual_seed(12)
    noise = torch.randn((4, 8, 1024), generator=g, dtype=D64)
    sigmas = polyexponential_sigmas(50, SMIN, SMAX).to(D64)
    den = ve_denoiser(torch.tensor(MU, dtype=D64), S_DATA)
    x = noise * sigmas[0]
    out = sample_dpmpp_2s_ancestral(den, x, sigmas, generator=g)
    want_std = S_DATA**2 / math.sqrt(S_DATA**2 + SMIN**2)
    assert abs(out.mean().item() - MU) < 0.01
    assert abs(out.std().item() - want_std) < 0.01
    det = sample_dpmpp_2s_ancestral(den, x, sigmas, eta=0.0, generator=torch.Generator())
    assert (out - det).abs().mean().item() > 0.05


def test_dpmpp_2s_ancestral_draws_one_randn_per_noisy_step_in_order():
    # the official default noise: randn_like(x) once per step with sigma_next > 0
    sig = polyexponential_sigmas(6, SMIN, SMAX).to(D64)
    x = _gauss((1, 2, 3), 7) * sig[0]
    drawn = []
    g = torch.Generator().manual_seed(3)
    ref = GaussianNoiseSampler(x, g)

    def ns(a, b):
        drawn.append((float(a), float(b)))
        return ref(a, b)

    a = sample_dpmpp_2s_ancestral(_den(), x, sig, noise_sampler=ns)
    b = sample_dpmpp_2s_ancestral(_den(), x, sig, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert drawn == [(float(sig[i]), float(sig[i + 1])) for i in range(5)]


# ----------------------------------------------------------------------------------------------
# DPM-Solver fast / adaptive
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n,orders", [(1, [1]), (2, [2]), (3, [2, 1]), (4, [3, 1]), (5, [3, 2]),
                                      (6, [3, 2, 1]), (10, [3, 3, 3, 1])])
def test_dpm_fast_orders_use_n_evaluations(n, orders):
    assert dpm_fast_orders(n) == orders and sum(orders) == n
    m = CountingModel(vp_velocity(torch.tensor(MU, dtype=D64), S_DATA))
    sample_dpm_fast(VDenoiser(m), _gauss((1, 2, 3), 8) * 500, 0.3, 500.0, n)
    assert m.calls == n


def test_dpm_fast_one_step_is_ddim():
    # n = 1: one first-order step sigma_max -> sigma_min: x <- (s1/s0) x + (1 - s1/s0) D(x, s0)
    den = _den()
    x = _gauss((2, 2, 4), 9) * 80
    got = sample_dpm_fast(den, x, 0.2, 80.0, 1)
    s0, s1 = 80.0, 0.2
    want = (s1 / s0) * x + (1 - s1 / s0) * den(x, torch.full((2,), s0, dtype=D64))
    # t = -log(sigma) is held in float32 as in k-diffusion (torch.tensor(sigma_max))
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5)


def test_dpm_solvers_stop_at_sigma_min_on_the_exact_flow():
    # no final jump to 0: the result is the flow's state at sigma_min (official behaviour).
    # DPM-Solver-fast ends with a first-order step, so it converges at second order overall.
    noise = _gauss((2, 3, 16), 10)
    want = ve_ode_solution(noise * 80.0, MU, S_DATA, 80.0, 0.3)
    errs = [(sample_dpm_fast(_den(), noise * 80.0, 0.3, 80.0, n) - want).abs().max().item() for n in (30, 60, 120)]
    assert errs[2] < 5e-3
    assert errs[0] / errs[1] > 3.0 and errs[1] / errs[2] > 3.0
    out = sample_dpm_adaptive(_den(), noise * 80.0, 0.3, 80.0, rtol=1e-4, atol=1e-4)
    assert (out - want).abs().max().item() < 2e-3


def test_dpm_adaptive_hits_tolerance_and_counts_evaluations():
    noise = _gauss((1, 4, 64), 11)
    want = ve_ode_solution(noise * 80.0, MU, S_DATA, 80.0, 0.3)
    errs, nfes = [], []
    for tol in (0.05, 0.01, 1e-3, 1e-4):
        m = CountingModel(vp_velocity(torch.tensor(MU, dtype=D64), S_DATA))
        out, info = sample_dpm_adaptive(VDenoiser(m), noise * 80.0, 0.3, 80.0, rtol=tol, atol=tol,
                                        return_info=True)
        assert m.calls == info["nfe"] == 3 * info["steps"]
        assert info["steps"] == info["n_accept"] + info["n_reject"]
        errs.append((out - want).abs().max().item())
        nfes.append(info["nfe"])
    # tighter tolerances cost more evaluations and land closer to the exact flow
    assert nfes == sorted(nfes) and nfes[0] < nfes[-1]
    assert errs[-1] < errs[1] / 10 < errs[0]
    assert errs[-1] < 2e-3
    # order 2: two evaluations per attempt
    m = CountingModel(vp_velocity(torch.tensor(MU, dtype=D64), S_DATA))
    _, info = sample_dpm_adaptive(VDenoiser(m), noise * 80.0, 0.3, 80.0, order=2, return_info=True)
    assert m.calls == info["nfe"] == 2 * info["steps"]


def test_dpm_solvers_validate():
    x = torch.zeros(1, 2, 3)
    with pytest.raises(InputError):
        sample_dpm_adaptive(lambda x, s: x, x, 0.5, 1.0, order=4)
    with pytest.raises(InputError):
        sample_dpm_fast(lambda x, s: x, x, 0.5, 0.5, 3)
    with pytest.raises(InputError):
        sample_dpm_fast(lambda x, s: x, x, 0.3, 5.0, 0)
    with pytest.raises(InputError):
        sample_lms(lambda x, s: x, x, torch.tensor([1.0, 0.0]), order=0)


# ----------------------------------------------------------------------------------------------
# through the one-call procedure, progress and interruption
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["k-heun", "k-lms", "k-dpmpp-2s-ancestral", "k-dpm-2", "k-dpm-fast",
                                  "k-dpm-adaptive"])
def test_sample_v_objective_runs_every_official_sampler(name):
    noise = _gauss((2, 3, 8), 12)
    run = lambda seed: sample_v_objective(vp_velocity(torch.tensor(MU, dtype=D64), S_DATA), noise,  # noqa: E731
                                          steps=20, sampler=name, sigma_min=0.3, sigma_max=80.0,
                                          generator=torch.Generator().manual_seed(seed))
    a, b = run(1), run(1)
    assert torch.equal(a, b) and torch.isfinite(a).all()
    sig = polyexponential_sigmas(20, 0.3, 80.0).to(D64)
    if name in ("k-dpm-fast", "k-dpm-adaptive"):
        # stops at sigma_min = 0.3: the flow's state there, not the clean estimate
        want = ve_ode_solution(noise * 80.0, MU, S_DATA, 80.0, 0.3)
        assert (a - want).abs().max().item() < 0.15
        assert (a - _ode_target(noise, sig)).abs().max().item() > 0.2
    elif name == "k-dpmpp-2s-ancestral":
        assert not torch.equal(a, run(2))
    else:
        assert (a - _ode_target(noise, sig)).abs().max().item() < 0.2


@pytest.mark.parametrize("name", ["k-heun", "k-lms", "k-dpmpp-2s-ancestral", "k-dpm-2", "k-dpm-fast",
                                  "k-dpm-adaptive"])
def test_interrupt_and_progress(name):
    m = CountingModel(vp_velocity(torch.tensor(MU, dtype=D64), S_DATA))
    log = []

    def cb(step, total, info):
        log.append((step, total))
        assert step <= total
        if step == 2:
            raise Interrupted("stop")

    sig = polyexponential_sigmas(12, 0.3, 80.0).to(D64)
    x = _gauss((1, 2, 4), 13) * 80.0
    kw = {"generator": torch.Generator()} if name == "k-dpmpp-2s-ancestral" else {}
    args = {"k-dpm-fast": (0.3, 80.0, 12), "k-dpm-adaptive": (0.3, 80.0)}.get(name, (sig,))
    with pytest.raises(Interrupted):
        K_SAMPLERS[name](VDenoiser(m), x, *args, callback=cb, **kw)
    assert [s for s, _ in log] == [1, 2]
    per_step = {"k-heun": 2, "k-dpm-2": 2, "k-dpmpp-2s-ancestral": 2, "k-lms": 1}
    if name in per_step:
        assert m.calls == 2 * per_step[name] and log[0][1] == 12
