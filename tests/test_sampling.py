"""Samplers, schedules, objectives, Turbo: closed-form checks and hand re-derivations."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from audiox_core.errors import InputError, Interrupted
from audiox_core.sampling import (
    BrownianTreeNoiseSampler,
    GaussianNoiseSampler,
    VDenoiser,
    karras_sigmas,
    polyexponential_sigmas,
    rf_euler,
    rf_heun,
    rf_noised,
    rf_target,
    rf_timesteps,
    rf_x0,
    sample_dpmpp_2m,
    sample_dpmpp_2m_sde,
    sample_dpmpp_3m_sde,
    sample_euler,
    sample_rectified_flow,
    sample_turbo,
    sample_turbo_static,
    sample_v_objective,
    sigma_to_t,
    t_to_sigma,
    turbo_noises,
    v_noised,
    v_scalings,
    v_target,
)

from sampling_toys import CountingModel, rf_velocity, ve_denoiser, ve_ode_solution, vp_velocity

D64 = torch.float64

try:
    import torchsde  # noqa: F401
    HAVE_TORCHSDE = True
except ImportError:  # the Brownian-tree noise is optional
    HAVE_TORCHSDE = False
needs_torchsde = pytest.mark.skipif(not HAVE_TORCHSDE, reason="torchsde is not installed")


def _gauss(shape, seed):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=D64)


# ----------------------------------------------------------------------------------------------
# schedules
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("steps", [1, 2, 7, 100])
def test_polyexponential_matches_hand_formula(steps):
    got = polyexponential_sigmas(steps, 0.3, 500.0)
    assert got.dtype == torch.float32 and got.shape == (steps + 1,)
    assert got[-1] == 0
    ramp = np.linspace(1.0, 0.0, steps)
    want = np.exp(np.log(0.3) + ramp * (np.log(500.0) - np.log(0.3)))
    np.testing.assert_allclose(got[:-1].numpy(), want, rtol=2e-6)
    # log-linear: constant ratio between neighbours
    if steps > 2:
        r = got[1:-1] / got[:-2]
        assert torch.allclose(r, r[0].expand_as(r), rtol=1e-5)


def test_polyexponential_rho_and_karras():
    got = polyexponential_sigmas(5, 0.03, 500.0, rho=2.0)
    ramp = np.linspace(1, 0, 5) ** 2
    np.testing.assert_allclose(got[:-1].numpy(), 0.03 * (500 / 0.03) ** ramp, rtol=2e-6)
    k = karras_sigmas(6, 0.3, 500.0, rho=7.0)
    want = [(500 ** (1 / 7) + i / 5 * (0.3 ** (1 / 7) - 500 ** (1 / 7))) ** 7 for i in range(6)]
    np.testing.assert_allclose(k[:-1].numpy(), want, rtol=2e-6)
    assert k[-1] == 0


def test_rf_timesteps_and_clip():
    assert torch.equal(rf_timesteps(4), torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0]))
    assert torch.equal(rf_timesteps(4, t_max=500.0), rf_timesteps(4))  # official clip to 1
    assert torch.allclose(rf_timesteps(2, 0.5), torch.tensor([0.5, 0.25, 0.0]))


@pytest.mark.parametrize("bad", [0, -3, 2.5])
def test_schedule_rejects_bad_steps(bad):
    with pytest.raises(InputError):
        polyexponential_sigmas(bad, 0.3, 500)
    with pytest.raises(InputError):
        rf_timesteps(bad)


def test_schedule_rejects_bad_sigmas():
    with pytest.raises(InputError):
        polyexponential_sigmas(10, 0.0, 500)
    with pytest.raises(InputError):
        polyexponential_sigmas(10, 5.0, 1.0)


# ----------------------------------------------------------------------------------------------
# objectives
# ----------------------------------------------------------------------------------------------
def test_v_scalings_and_time_map():
    sigma = torch.tensor([0.03, 0.3, 1.0, 7.0, 500.0], dtype=D64)
    c_skip, c_out, c_in = v_scalings(sigma)
    for i, s in enumerate(sigma.tolist()):
        assert c_skip[i].item() == pytest.approx(1 / (s * s + 1), rel=1e-14)
        assert c_out[i].item() == pytest.approx(-s / math.sqrt(s * s + 1), rel=1e-14)
        assert c_in[i].item() == pytest.approx(1 / math.sqrt(s * s + 1), rel=1e-14)
    t = sigma_to_t(sigma)
    np.testing.assert_allclose(t.numpy(), np.arctan(sigma.numpy()) * 2 / np.pi, rtol=1e-14)
    np.testing.assert_allclose(t_to_sigma(t).numpy(), sigma.numpy(), rtol=1e-10)


def test_vdenoiser_with_exact_velocity_gives_posterior_mean():
    # independent derivations: VP-space exact v (sampling_toys.vp_velocity) through VDenoiser
    # must equal the VE-space posterior mean mu + s^2/(s^2+sigma^2) (x - mu).
    mu, s = torch.tensor(0.7, dtype=D64), 0.5
    den = VDenoiser(vp_velocity(mu, s))
    exact = ve_denoiser(mu, s)
    x = _gauss((3, 4, 5), 0) * 3
    for sig in (0.05, 0.3, 2.0, 80.0):
        sigma = torch.full((3,), sig, dtype=D64)
        assert torch.allclose(den(x, sigma), exact(x, sigma), atol=1e-10, rtol=1e-10)
    # scalar sigma is broadcast
    assert torch.allclose(den(x, 2.0), exact(x, torch.full((3,), 2.0, dtype=D64)), atol=1e-10)


def test_objective_helpers_roundtrip():
    x0, eps = _gauss((2, 3, 4), 1), _gauss((2, 3, 4), 2)
    t = torch.tensor([0.2, 0.9], dtype=D64)
    xt, v = v_noised(x0, eps, t), v_target(x0, eps, t)
    a, b = torch.cos(t * math.pi / 2).view(-1, 1, 1), torch.sin(t * math.pi / 2).view(-1, 1, 1)
    assert torch.allclose(a * xt - b * v, x0, atol=1e-12)  # x0 = a x_t - b v
    z = rf_noised(x0, eps, t)
    assert torch.allclose(z, (1 - t.view(-1, 1, 1)) * x0 + t.view(-1, 1, 1) * eps)
    assert torch.allclose(rf_x0(z, t, rf_target(x0, eps)), x0, atol=1e-12)


# ----------------------------------------------------------------------------------------------
# v-path samplers on Gaussian data (closed form)
# ----------------------------------------------------------------------------------------------
MU, S_DATA = 0.7, 0.5
SMIN, SMAX = 0.05, 80.0


def _ode_target(noise, sigmas):
    # exact ODE from sigma_max to sigma_min, then the final x <- D(x, sigma_min) jump
    smax, smin = float(sigmas[0]), float(sigmas[-2])
    x_smin = ve_ode_solution(noise * smax, MU, S_DATA, smax, smin)
    return MU + S_DATA**2 / (S_DATA**2 + smin**2) * (x_smin - MU)


@pytest.mark.parametrize("sampler,steps,tol", [
    (sample_euler, 400, 2e-2),
    (sample_dpmpp_2m, 60, 2e-3),
    (lambda d, x, s: sample_dpmpp_3m_sde(d, x, s, eta=0.0), 60, 2e-3),
    (lambda d, x, s: sample_dpmpp_2m_sde(d, x, s, eta=0.0), 60, 2e-2),
])
def test_deterministic_samplers_follow_the_ode(sampler, steps, tol):
    noise = _gauss((2, 3, 16), 3)
    sigmas = polyexponential_sigmas(steps, SMIN, SMAX).to(D64)
    den = VDenoiser(vp_velocity(torch.tensor(MU, dtype=D64), S_DATA))
    out = sampler(den, noise * sigmas[0], sigmas)
    want = _ode_target(noise, sigmas)
    assert (out - want).abs().max().item() < tol


def test_higher_order_converges_faster():
    noise = _gauss((1, 2, 32), 4)
    den = VDenoiser(vp_velocity(torch.tensor(MU, dtype=D64), S_DATA))
    errs = {}
    for name, fn in (("euler", sample_euler), ("2m", sample_dpmpp_2m),
                     ("3m", lambda d, x, s: sample_dpmpp_3m_sde(d, x, s, eta=0.0))):
        sig = polyexponential_sigmas(25, SMIN, SMAX).to(D64)
        errs[name] = (fn(den, noise * sig[0], sig) - _ode_target(noise, sig)).abs().max().item()
    assert errs["3m"] < errs["2m"] < errs["euler"]


@pytest.mark.parametrize("sampler", [sample_dpmpp_3m_sde, sample_dpmpp_2m_sde])
def test_sde_samplers_hit_the_right_distribution(sampler):
    # x at sigma_min ~ N(mu, s^2 + smin^2); the final D step maps it to N(mu, s^4 / (s^2 + smin^2))
    g = torch.Generator().manual_seed(11)
    noise = torch.randn((4, 8, 1024), generator=g, dtype=D64)
    sigmas = polyexponential_sigmas(50, SMIN, SMAX).to(D64)
    den = ve_denoiser(torch.tensor(MU, dtype=D64), S_DATA)
    x = noise * sigmas[0]
    out = sampler(den, x, sigmas, noise_sampler=GaussianNoiseSampler(x, g))
    want_std = S_DATA**2 / math.sqrt(S_DATA**2 + SMIN**2)
    assert abs(out.mean().item() - MU) < 0.01
    assert abs(out.std().item() - want_std) < 0.01
    # and it is genuinely stochastic: different from the deterministic (eta = 0) run
    det = sampler(den, x, sigmas, eta=0.0)
    assert (out - det).abs().mean().item() > 0.05


def _dpmpp3m_sde_by_hand(D, x, sigmas, noises, eta):
    """Straight re-derivation in numpy float64 (no expm1, explicit per-step branches)."""
    x = x.copy()
    hist_d, hist_h = [], []
    noise_i = 0
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        d = D(x, s)
        if s_next == 0:
            x = d
            hist_d.insert(0, d)
            continue
        h = math.log(s) - math.log(s_next)
        he = (1 + eta) * h
        x = math.exp(-he) * x + (1 - math.exp(-he)) * d
        phi2 = 1 - (1 - math.exp(-he)) / he
        if len(hist_h) >= 2:
            r0, r1 = hist_h[0] / h, hist_h[1] / h
            delta0 = (d - hist_d[0]) / r0
            delta1 = (hist_d[0] - hist_d[1]) / r1
            d1 = delta0 + (delta0 - delta1) * r0 / (r0 + r1)
            d2 = (delta0 - delta1) / (r0 + r1)
            phi3 = phi2 / he - 0.5
            x = x + phi2 * d1 - phi3 * d2
        elif len(hist_h) == 1:
            x = x + phi2 * (d - hist_d[0]) / (hist_h[0] / h)
        if eta:
            x = x + noises[noise_i] * s_next * math.sqrt(1 - math.exp(-2 * eta * h))
            noise_i += 1
        hist_d.insert(0, d)
        hist_h.insert(0, h)
    return x


def test_dpmpp_3m_sde_against_hand_derivation():
    # 4 steps (+ the final denoise) exercise the first-, second- and third-order branches
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal((2, 3, 5))
    noises = [rng.standard_normal((2, 3, 5)) for _ in range(4)]
    sigmas = [40.0, 6.0, 1.3, 0.4, 0.0]
    W = rng.standard_normal((3, 3)) * 0.4

    def D_np(x, s):  # a nonlinear toy denoiser
        return np.tanh(np.einsum("ij,bjl->bil", W, x)) * (1 + 1 / (1 + s)) + 0.05 * x / (1 + s)

    def D_t(x, sig):
        s = sig[0].item()
        return torch.from_numpy(D_np(x.numpy(), s))

    queue = [torch.from_numpy(n) for n in noises]
    for eta in (1.0, 0.0, 0.5):
        it = iter(queue)
        got = sample_dpmpp_3m_sde(D_t, torch.from_numpy(x0), torch.tensor(sigmas, dtype=D64), eta=eta,
                                  noise_sampler=lambda a, b: next(it))
        want = _dpmpp3m_sde_by_hand(D_np, x0, sigmas, noises, eta)
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-10, atol=1e-10)


def test_single_step_and_batch_independence():
    den = VDenoiser(vp_velocity(torch.tensor(MU, dtype=D64), S_DATA))
    sig = polyexponential_sigmas(1, SMIN, SMAX).to(D64)
    x = _gauss((3, 2, 4), 5) * sig[0]
    out = sample_dpmpp_3m_sde(den, x, sig)  # no noisy step: no Brownian tree is built
    assert torch.allclose(out, den(x, sig[0].expand(3)))  # one step = the denoised estimate
    # deterministic samplers treat batch items independently
    sig = polyexponential_sigmas(12, SMIN, SMAX).to(D64)
    x = _gauss((3, 2, 4), 6) * sig[0]
    full = sample_dpmpp_2m(den, x, sig)
    assert torch.allclose(full[1:2], sample_dpmpp_2m(den, x[1:2], sig), atol=1e-12)


# ----------------------------------------------------------------------------------------------
# noise samplers and seeds
# ----------------------------------------------------------------------------------------------
@needs_torchsde
def test_brownian_tree_noise_is_consistent_and_seeded():
    x = torch.zeros(2, 3, 8)
    a = BrownianTreeNoiseSampler(x, 0.1, 10.0, seed=7)
    b = BrownianTreeNoiseSampler(x, 0.1, 10.0, seed=7)
    c = BrownianTreeNoiseSampler(x, 0.1, 10.0, seed=8)
    n1 = a(torch.tensor(5.0), torch.tensor(1.0))
    assert torch.equal(n1, b(torch.tensor(5.0), torch.tensor(1.0)))
    assert not torch.equal(n1, c(torch.tensor(5.0), torch.tensor(1.0)))
    # Brownian: W(5)-W(1) = (W(5)-W(3)) + (W(3)-W(1)), each normalised by sqrt of its length
    n_a, n_b = a(torch.tensor(5.0), torch.tensor(3.0)), a(torch.tensor(3.0), torch.tensor(1.0))
    assert torch.allclose(n1 * 2.0, n_a * math.sqrt(2) + n_b * math.sqrt(2), atol=1e-4)
    # per-item seeds: item i depends only on its seed
    batched = BrownianTreeNoiseSampler(x, 0.1, 10.0, seed=[7, 9])
    single = BrownianTreeNoiseSampler(x[1:], 0.1, 10.0, seed=[9])
    assert torch.equal(batched(torch.tensor(5.0), torch.tensor(1.0))[1:],
                       single(torch.tensor(5.0), torch.tensor(1.0)))
    with pytest.raises(InputError):
        BrownianTreeNoiseSampler(x, 0.1, 10.0, seed=[1, 2, 3])


@needs_torchsde
def test_brownian_seed_from_generator_matches_global_rng():
    x = torch.zeros(1, 2, 4)
    torch.manual_seed(1234)
    a = BrownianTreeNoiseSampler(x, 0.3, 500.0)  # official: randint on the global CPU RNG
    b = BrownianTreeNoiseSampler(x, 0.3, 500.0, generator=torch.Generator().manual_seed(1234))
    assert a.seeds == b.seeds


def _toy_velocity():
    return vp_velocity(torch.tensor(MU, dtype=D64), S_DATA)


@pytest.mark.parametrize("sde_noise", [pytest.param("brownian", marks=needs_torchsde), "gaussian"])
def test_v_sampling_reproducible_with_generator(sde_noise):
    noise = _gauss((2, 3, 8), 9)

    def run(seed):
        return sample_v_objective(_toy_velocity(), noise, steps=12, sigma_min=SMIN, sigma_max=SMAX,
                                  sde_noise=sde_noise, generator=torch.Generator().manual_seed(seed))

    a, b, c = run(1), run(1), run(2)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_turbo_and_rf_reproducible_with_generator():
    noise = _gauss((2, 3, 8), 10)
    v = rf_velocity(torch.tensor(MU, dtype=D64), S_DATA)
    runs = [sample_turbo(v, noise, 4, generator=torch.Generator().manual_seed(s)) for s in (1, 1, 2)]
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


# ----------------------------------------------------------------------------------------------
# rectified flow
# ----------------------------------------------------------------------------------------------
def test_rf_euler_equals_explicit_loop():
    v = CountingModel(rf_velocity(torch.tensor(MU, dtype=D64), S_DATA))
    noise = _gauss((2, 3, 6), 12)
    got = sample_rectified_flow(v, noise, steps=7)
    assert v.calls == 7
    x = noise.clone()
    grid = [1 - k / 7 for k in range(8)]
    for k in range(7):
        t = torch.full((2,), grid[k], dtype=D64)
        x = x + (grid[k + 1] - grid[k]) * rf_velocity(torch.tensor(MU, dtype=D64), S_DATA)(x, t)
    assert torch.allclose(got, x, atol=1e-6)  # grids differ by float32 rounding of linspace only
    ts = torch.tensor([1.0, 0.6, 0.2, 0.0], dtype=D64)
    x = noise.clone()
    for k in range(3):
        x = x + (ts[k + 1] - ts[k]) * rf_velocity(torch.tensor(MU, dtype=D64), S_DATA)(x, ts[k].expand(2))
    assert torch.equal(rf_euler(rf_velocity(torch.tensor(MU, dtype=D64), S_DATA), noise, ts), x)


def test_rf_samplers_reach_the_exact_flow_solution():
    # the exact rectified flow for Gaussian data maps eps to mu + s * eps
    noise = _gauss((2, 4, 64), 13)
    v = rf_velocity(torch.tensor(MU, dtype=D64), S_DATA)
    want = MU + S_DATA * noise
    e_euler = (rf_euler(v, noise, rf_timesteps(50).to(D64)) - want).abs().max().item()
    heun = CountingModel(v)
    e_heun = (rf_heun(heun, noise, rf_timesteps(50).to(D64)) - want).abs().max().item()
    assert e_euler < 6e-2 and e_heun < 2e-3 and e_heun < e_euler / 10
    assert heun.calls == 2 * 50 - 1


def test_rf_point_mass_euler_is_exact():
    mu = _gauss((1, 3, 5), 14)
    out = rf_euler(rf_velocity(mu, 0.0), _gauss((2, 3, 5), 15), rf_timesteps(5).to(D64))
    assert torch.allclose(out, mu.expand(2, 3, 5), atol=1e-12)


# ----------------------------------------------------------------------------------------------
# Turbo
# ----------------------------------------------------------------------------------------------
def test_turbo_point_mass_first_step_exact_and_call_count():
    mu = _gauss((1, 3, 5), 16)
    v = CountingModel(rf_velocity(mu, 0.0))
    seen = []
    out = sample_turbo(v, _gauss((2, 3, 5), 17), steps=4, generator=torch.Generator().manual_seed(0),
                       callback=lambda i, n, info: seen.append((i, n, info["t"], info["denoised"])))
    assert v.calls == 4
    assert [s[:3] for s in seen] == [(1, 4, 1.0), (2, 4, 0.75), (3, 4, 0.5), (4, 4, 0.25)]
    assert torch.allclose(seen[0][3], mu.expand(2, 3, 5), atol=1e-12)
    assert torch.allclose(out, mu.expand(2, 3, 5), atol=1e-12)


def test_turbo_equals_explicit_loop_and_rng_order():
    model = rf_velocity(torch.tensor(MU, dtype=D64), S_DATA)
    noise = _gauss((2, 3, 5), 18)
    got = sample_turbo(model, noise, steps=4, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    z, grid = noise.clone(), [1.0, 0.75, 0.5, 0.25, 0.0]
    for k in range(4):
        x0 = z - grid[k] * model(z, torch.full((2,), grid[k], dtype=D64))
        if k < 3:
            fresh = torch.randn((2, 3, 5), generator=g).to(D64)  # one fresh draw per re-noise
            z = grid[k + 1] * fresh + (1 - grid[k + 1]) * x0
    assert torch.allclose(got, x0, atol=1e-12)


@pytest.mark.parametrize("steps", [1, 2, 4])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_static_turbo_loop_equals_the_sampler_bit_for_bit(steps, dtype):
    """The capturable form (noise drawn up front, no hooks) gives exactly the sampler's numbers, from
    a generator and from the global RNG, and every step's estimate."""
    model = rf_velocity(torch.tensor(MU, dtype=D64), S_DATA)
    velocity = lambda x, t: model(x.double(), t.double()).to(x.dtype)  # noqa: E731
    noise = _gauss((2, 3, 5), 19).to(dtype)
    seen = []
    want = sample_turbo(velocity, noise, steps=steps, generator=torch.Generator().manual_seed(4),
                        callback=lambda i, n, info: seen.append(info["denoised"]))
    fresh = turbo_noises(noise, steps, torch.Generator().manual_seed(4))
    assert fresh.shape == (steps - 1, 2, 3, 5) and fresh.dtype == dtype
    got = sample_turbo_static(velocity, noise, fresh, steps)
    assert got.shape == (steps, 2, 3, 5)
    assert torch.equal(got[-1], want) and all(torch.equal(a, b) for a, b in zip(got, seen))
    torch.manual_seed(8)
    want_global = sample_turbo(velocity, noise, steps=steps)
    torch.manual_seed(8)
    assert torch.equal(sample_turbo_static(velocity, noise, turbo_noises(noise, steps), steps)[-1], want_global)
    with pytest.raises(InputError):
        turbo_noises(noise, 9)


def test_turbo_t_dtype_follows_model_dtype():
    seen = []

    def model(x, t):
        seen.append((x.dtype, t.dtype, tuple(t.shape)))
        return torch.zeros_like(x)

    noise = torch.randn(2, 3, 4).to(torch.bfloat16)
    out = sample_turbo(model, noise, steps=4, generator=torch.Generator().manual_seed(0))
    assert out.dtype == torch.bfloat16
    assert seen == [(torch.bfloat16, torch.bfloat16, (2,))] * 4


@pytest.mark.parametrize("steps", [0, 9, 2.0])
def test_turbo_validates_steps(steps):
    with pytest.raises(InputError):
        sample_turbo(lambda x, t: x, torch.zeros(1, 2, 3), steps=steps)


# ----------------------------------------------------------------------------------------------
# callbacks and interruption
# ----------------------------------------------------------------------------------------------
def _stopper(at):
    log = []

    def cb(step, total, info):
        log.append((step, total))
        if step == at:
            raise Interrupted("stop")

    return cb, log


@pytest.mark.parametrize("which", ["euler", "dpmpp-2m", "dpmpp-3m-sde", "rf-euler", "turbo"])
def test_interrupt_stops_within_one_step(which):
    mu = torch.tensor(MU, dtype=D64)
    noise = _gauss((2, 3, 4), 19)
    cb, log = _stopper(3)
    if which == "turbo":
        model = CountingModel(rf_velocity(mu, S_DATA))
        run = lambda: sample_turbo(model, noise, 4, generator=torch.Generator(), callback=cb)  # noqa: E731
    elif which == "rf-euler":
        model = CountingModel(rf_velocity(mu, S_DATA))
        run = lambda: rf_euler(model, noise, rf_timesteps(10), callback=cb)  # noqa: E731
    else:
        model = CountingModel(vp_velocity(mu, S_DATA))
        fn = {"euler": sample_euler, "dpmpp-2m": sample_dpmpp_2m, "dpmpp-3m-sde": sample_dpmpp_3m_sde}[which]
        sig = polyexponential_sigmas(10, SMIN, SMAX)
        kw = {"noise_sampler": GaussianNoiseSampler(noise, torch.Generator())} if which.endswith("sde") else {}
        run = lambda: fn(VDenoiser(model), noise * sig[0], sig, callback=cb, **kw)  # noqa: E731
    with pytest.raises(Interrupted):
        run()
    assert model.calls == 3
    total = 4 if which == "turbo" else 10
    assert log == [(1, total), (2, total), (3, total)]
