"""CFG (call counts, formula, rescale, negative conditioning), inpainting, masks and variation."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from audiox_core.errors import InputError
from audiox_core.sampling import (
    ClassifierFreeGuidance,
    LatentInpainter,
    VDenoiser,
    batch_concat,
    cfg_combine,
    polyexponential_sigmas,
    regenerate_mask,
    regenerate_mask_seconds,
    rf_euler,
    rf_timesteps,
    sample_dpmpp_3m_sde,
    sample_euler,
    sample_rectified_flow,
    sample_turbo,
    sample_v_objective,
    seconds_to_latent_frames,
    variation_start,
)

from sampling_toys import CountingModel, rf_velocity, ve_denoiser, vp_velocity

D64 = torch.float64


def _gauss(shape, seed):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=D64)


def cond_model(x, t, cond):
    """A toy conditioned 'network': per-item, nonlinear in x, depends on cond [B, C] and t."""
    return torch.tanh(x * 0.7 + cond[:, :, None]) * (1 + t.view(-1, 1, 1)) - 0.1 * x


# ----------------------------------------------------------------------------------------------
# CFG
# ----------------------------------------------------------------------------------------------
def test_cfg_scale_one_is_one_call_and_bit_identical():
    m = CountingModel(cond_model)
    x, t, c = _gauss((3, 4, 5), 0), torch.rand(3, dtype=D64), _gauss((3, 4), 1)
    g = ClassifierFreeGuidance(m, c, torch.zeros_like(c), scale=1.0, rescale_phi=0.7)
    out = g(x, t)
    assert m.calls == 1 and m.batches == [3]
    assert torch.equal(out, cond_model(x, t, c))
    # no uncond needed at scale 1
    assert torch.equal(ClassifierFreeGuidance(cond_model, c, None, 1.0)(x, t), out)


def test_cfg_formula_batched_and_unbatched():
    x, t, c, neg = _gauss((2, 4, 5), 2), torch.rand(2, dtype=D64), _gauss((2, 4), 3), _gauss((2, 4), 4)
    for uncond in (torch.zeros_like(c), neg):  # zeros (official) and a negative conditioning
        want = cond_model(x, t, uncond) + (cond_model(x, t, c) - cond_model(x, t, uncond)) * 6.5
        mb, mu = CountingModel(cond_model), CountingModel(cond_model)
        ob = ClassifierFreeGuidance(mb, c, uncond, 6.5)(x, t)
        ou = ClassifierFreeGuidance(mu, c, uncond, 6.5, batched=False)(x, t)
        assert mb.calls == 1 and mb.batches == [4]
        assert mu.calls == 2 and mu.batches == [2, 2]
        assert torch.allclose(ob, want, atol=1e-12) and torch.allclose(ou, want, atol=1e-12)


def test_cfg_rescale_matches_hand_computation():
    rng = np.random.default_rng(0)
    c, u = rng.standard_normal((2, 6, 7)), rng.standard_normal((2, 6, 7))
    scale, phi = 5.0, 0.7
    out = cfg_combine(torch.from_numpy(c), torch.from_numpy(u), scale, phi).numpy()
    want = np.empty_like(c)
    for b in range(2):
        for l in range(7):  # std over the channel dim, per batch item and time step, ddof = 1
            g = u[b, :, l] + (c[b, :, l] - u[b, :, l]) * scale
            ratio = np.std(c[b, :, l], ddof=1) / np.std(g, ddof=1)
            want[b, :, l] = phi * g * ratio + (1 - phi) * g
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-12)
    # phi = 0 => plain CFG
    np.testing.assert_allclose(cfg_combine(torch.from_numpy(c), torch.from_numpy(u), scale, 0.0).numpy(),
                               u + (c - u) * scale, rtol=1e-12)


@pytest.mark.parametrize("batched,per_step", [(True, 1), (False, 2)])
def test_cfg_call_count_over_a_sampler(batched, per_step):
    m = CountingModel(cond_model)
    c = _gauss((2, 4), 5)
    guided = ClassifierFreeGuidance(m, c, torch.zeros_like(c), 7.0, batched=batched)
    sig = polyexponential_sigmas(9, 0.3, 500.0)
    sample_euler(VDenoiser(guided), _gauss((2, 4, 6), 6).float() * sig[0], sig)
    assert m.calls == 9 * per_step
    m2 = CountingModel(cond_model)
    rf_euler(ClassifierFreeGuidance(m2, c, torch.zeros_like(c), 7.0, batched=batched), _gauss((2, 4, 6), 7),
             rf_timesteps(5))
    assert m2.calls == 5 * per_step


def test_cfg_requires_uncond_and_valid_phi():
    with pytest.raises(InputError):
        ClassifierFreeGuidance(cond_model, torch.zeros(1, 2), None, 3.0)
    with pytest.raises(InputError):
        ClassifierFreeGuidance(cond_model, torch.zeros(1, 2), torch.zeros(1, 2), 3.0, rescale_phi=2.0)


@dataclasses.dataclass
class _Cache:
    context: torch.Tensor
    n: int


class _Catable:
    def __init__(self, rows):
        self.rows = rows

    def cat(self, other):
        return _Catable(self.rows + other.rows)


def test_batch_concat_structures_and_prepare_once():
    a, b = torch.ones(2, 3), torch.zeros(2, 3)
    d = batch_concat({"ctx": a, "mask": None, "n": 3}, {"ctx": b, "mask": None, "n": 3})
    assert torch.equal(d["ctx"], torch.cat([a, b])) and d["mask"] is None and d["n"] == 3
    dc = batch_concat(_Cache(a, 1), _Cache(b, 1))
    assert isinstance(dc, _Cache) and dc.context.shape == (4, 3)
    assert batch_concat(_Catable([1]), _Catable([2])).rows == [1, 2]
    assert [t.shape[0] for t in batch_concat((a, a), (b, b))] == [4, 4]
    with pytest.raises(InputError):
        batch_concat(torch.ones(2, 3), torch.ones(2, 4))
    with pytest.raises(InputError):
        batch_concat({"a": a}, {"b": a})
    with pytest.raises(InputError):
        batch_concat(object(), object())

    prepared = []

    def prepare(cond):
        prepared.append(cond.shape[0])
        return cond * 1.0

    c = _gauss((2, 4), 8)
    g = ClassifierFreeGuidance(cond_model, c, torch.zeros_like(c), 3.0, prepare=prepare)
    for _ in range(3):
        g(_gauss((2, 4, 5), 9), torch.rand(2, dtype=D64))
    assert prepared == [4]  # once, on the batched [cond; uncond]


# ----------------------------------------------------------------------------------------------
# inpainting
# ----------------------------------------------------------------------------------------------
def test_all_keep_with_point_mass_denoiser_returns_known():
    known = _gauss((2, 3, 16), 10)
    noise = _gauss((2, 3, 16), 11)
    inp = LatentInpainter(known, torch.ones(1, 1, 16), "v", noise=noise)
    out = sample_v_objective(vp_velocity(known, 0.0), noise, steps=10, sampler="dpmpp-2m",
                             sigma_min=0.3, sigma_max=50.0, inpainter=inp)
    assert torch.equal(out, known)


def test_kept_region_follows_known_trajectory_and_is_pasted_exactly():
    L = 20
    known, mu = _gauss((2, 3, L), 12), _gauss((1, 3, L), 13)
    noise = _gauss((2, 3, L), 14)
    mask = regenerate_mask(L, [(8, 16)], ramp_left=3, ramp_right=2).to(D64)  # keep outside [8, 16)
    hard = mask == 1
    inp = LatentInpainter(known, mask, "v", noise=noise)
    sig = polyexponential_sigmas(8, 0.3, 50.0).to(D64)
    states = []
    out = sample_dpmpp_3m_sde(ve_denoiser(mu, 0.0), inp.start(noise * sig[0], sig[0]), sig, eta=0.0,
                              after_step=inp, callback=lambda i, n, info: states.append(info["x"]))
    # after step i the kept region is exactly known + sigma_{i+1} * eps (fixed eps = start noise)
    for i, x in enumerate(states[:-1]):
        want = known + sig[i + 1] * noise
        assert torch.equal(x.masked_select(hard.expand_as(x)), want.masked_select(hard.expand_as(x)))
    # final: kept region == known exactly; generated region == the point mass; seams blend
    assert torch.equal(out.masked_select(hard.expand_as(out)), known.masked_select(hard.expand_as(out)))
    assert torch.allclose(out, mask * known + (1 - mask) * mu, atol=1e-12)


def test_rf_and_turbo_inpainting():
    L = 12
    known, mu, noise = _gauss((2, 3, L), 15), _gauss((1, 3, L), 16), _gauss((2, 3, L), 17)
    mask = torch.zeros(1, 1, L, dtype=D64)
    mask[..., :5] = 1
    inp = LatentInpainter(known, mask, "rf", noise=noise)
    states = []
    out = sample_rectified_flow(rf_velocity(mu, 0.0), noise, steps=4, inpainter=inp,
                                callback=lambda i, n, info: states.append(info["x"]))
    for i, x in enumerate(states[:-1]):
        t = 1 - (i + 1) / 4
        assert torch.allclose(x[..., :5], (1 - t) * known[..., :5] + t * noise[..., :5], atol=1e-12)
    assert torch.equal(out[..., :5], known[..., :5])
    assert torch.allclose(out[..., 5:], mu.expand(2, 3, L)[..., 5:], atol=1e-12)
    inp_t = LatentInpainter(known, mask, "rf", fresh_noise=True, generator=torch.Generator().manual_seed(0))
    out_t = sample_turbo(rf_velocity(mu, 0.0), noise, 4, generator=torch.Generator().manual_seed(1),
                         after_step=inp_t)
    assert torch.equal(out_t[..., :5], known[..., :5])
    assert torch.allclose(out_t[..., 5:], mu.expand(2, 3, L)[..., 5:], atol=1e-12)


def test_inpainter_fresh_noise_is_seeded_and_validates():
    known, mask = _gauss((1, 2, 6), 18), torch.ones(6)
    x = torch.zeros(1, 2, 6, dtype=D64)
    a = LatentInpainter(known, mask, "v", fresh_noise=True, generator=torch.Generator().manual_seed(3))
    b = LatentInpainter(known, mask, "v", fresh_noise=True, generator=torch.Generator().manual_seed(3))
    ra, rb = a(x, torch.tensor(2.0)), b(x, torch.tensor(2.0))
    assert torch.equal(ra, rb) and not torch.equal(ra, a(x, torch.tensor(2.0)))
    with pytest.raises(InputError):
        LatentInpainter(known, mask, "v")  # neither fixed noise nor fresh
    with pytest.raises(InputError):
        LatentInpainter(known, torch.ones(1, 1, 5), "v", noise=known)  # wrong length
    with pytest.raises(InputError):
        LatentInpainter(known, torch.full((6,), 1.5), "v", noise=known)  # out of [0, 1]
    with pytest.raises(InputError):
        LatentInpainter(known, mask, "eps", noise=known)


def test_regenerate_mask_hann_ramps():
    m = regenerate_mask(20, [(4, 14)], ramp_left=3, ramp_right=4)
    assert m.shape == (1, 1, 20) and m.dtype == torch.float32
    m = m.view(-1).double().numpy()

    def hann_half(n):  # first half of a symmetric Hann window of length 2n
        return np.array([0.5 - 0.5 * math.cos(2 * math.pi * k / (2 * n - 1)) for k in range(n)])

    want = np.ones(20)
    want[4:14] = 0.0
    want[4:7] = 1 - hann_half(3)
    want[10:14] = 1 - hann_half(4)[::-1]
    np.testing.assert_allclose(m, want, atol=1e-7)
    assert m[4] == 1.0 and m[7] == 0.0  # ramps start at full keep, inside the range
    both = regenerate_mask(10, [(1, 3), (6, 9)]).view(-1)
    assert both.tolist() == [1, 0, 0, 1, 1, 1, 0, 0, 0, 1]
    with pytest.raises(InputError):
        regenerate_mask(10, [(5, 11)])


def test_seconds_helpers():
    assert seconds_to_latent_frames(10.0) == 215  # 441000 // 2048
    assert seconds_to_latent_frames(2.5, rounding="ceil") == math.ceil(2.5 * 44100 / 2048)
    m = regenerate_mask_seconds(236, [(2.0, 4.0)]).view(-1)
    s, e = math.floor(2 * 44100 / 2048), math.ceil(4 * 44100 / 2048)
    assert m[s:e].eq(0).all() and m[:s].eq(1).all() and m[e:].eq(1).all()


# ----------------------------------------------------------------------------------------------
# variation
# ----------------------------------------------------------------------------------------------
def test_variation_strength_zero_and_one():
    init, noise = _gauss((2, 3, 8), 19), _gauss((2, 3, 8), 20)
    v = CountingModel(vp_velocity(torch.tensor(0.3, dtype=D64), 0.5))
    out0 = sample_v_objective(v, noise, steps=10, init=init, strength=0.0, sampler="dpmpp-2m")
    assert torch.equal(out0, init) and v.calls == 0
    plain = sample_v_objective(v, noise, steps=10, sampler="dpmpp-3m-sde", sde_noise="gaussian",
                               generator=torch.Generator().manual_seed(4))
    full = sample_v_objective(v, noise, steps=10, sampler="dpmpp-3m-sde", sde_noise="gaussian",
                              generator=torch.Generator().manual_seed(4), init=init, strength=1.0)
    assert torch.equal(plain, full)
    rv = rf_velocity(torch.tensor(0.3, dtype=D64), 0.5)
    assert torch.equal(sample_rectified_flow(rv, noise, steps=6, init=init, strength=0.0), init)
    assert torch.equal(sample_rectified_flow(rv, noise, steps=6, init=init, strength=1.0),
                      sample_rectified_flow(rv, noise, steps=6))


def test_variation_truncates_the_schedule():
    init, noise = _gauss((1, 3, 8), 21), _gauss((1, 3, 8), 22)
    sig = polyexponential_sigmas(10, 0.3, 500.0).to(D64)
    x, run = variation_start(init, noise, sig, 0.4, "v")
    assert torch.equal(run, sig[6:]) and torch.allclose(x, init + sig[6] * noise)
    ts = rf_timesteps(10).to(D64)
    x, run = variation_start(init, noise, ts, 0.4, "rf")
    assert torch.equal(run, ts[6:]) and float(run[0]) == pytest.approx(0.4)
    assert torch.allclose(x, 0.6 * init + 0.4 * noise, atol=1e-7)
    v = CountingModel(rf_velocity(torch.tensor(0.3, dtype=D64), 0.5))
    sample_rectified_flow(v, noise, steps=10, init=init, strength=0.4)
    assert v.calls == 4
    with pytest.raises(InputError):
        variation_start(init, noise, ts, 1.5, "rf")
