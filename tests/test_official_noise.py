"""Official noise mode: the same seed, inputs and sampler give the official app's draws.

The reference below replays the official ``generate_diffusion_cond`` / ``generate_diffusion_cond_dmd``
random-number sequence on the global torch RNG, written out step by step as the official code does
it (``torch.manual_seed``; initial ``randn`` before the conditioners; the conditioners' draws; the
Brownian tree's ``randint`` on the CPU generator; ``randn_like`` per ancestral step / Turbo
re-noise), on tiny random weights, and must agree bit for bit with ``noise="official"``.
"""
from __future__ import annotations

import pytest
import torch

from audiox_core import conditions as C
from audiox_core import generate as G
from audiox_core.task import GenerationRequest, generate
from audiox_core.errors import InputError
from audiox_core.sampling import (
    BrownianTreeNoiseSampler,
    ClassifierFreeGuidance,
    VDenoiser,
    polyexponential_sigmas,
    rf_timesteps,
    sample_dpmpp_2s_ancestral,
    sample_dpmpp_3m_sde,
    sample_heun,
)
from audiox_core.tiny import make_tiny_model, save_tiny_t5

try:
    import torchsde  # noqa: F401
    HAVE_TORCHSDE = True
except ImportError:
    HAVE_TORCHSDE = False

PROMPT = "two high beeps"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from audiox_core.conditioning.t5 import T5TextEncoder
    t5 = T5TextEncoder.from_local(save_tiny_t5(tmp_path_factory.mktemp("t5")), expected_dim=32)
    out = {}
    for v in ("audiox", "audiox_maf", "audiox_maf_mmdit", "audiox_turbo"):
        m = make_tiny_model(v, seed=3)
        m.set_text_encoder(t5)
        out[v] = m
    return out


def _official_latents(m, settings: G.SamplerSettings, batch: int) -> torch.Tensor:
    """The official sequence of RNG calls, on the global generators (CPU device)."""
    cfg, bb = m.config, m.backbone
    torch.manual_seed(settings.seed)                                          # generate_diffusion_cond
    noise = torch.randn([batch, cfg.io_channels, m.latent_length])           # before the conditioners
    conds = C.Conditions(text=C.encode_text(m, PROMPT, batch=batch))
    ctx = C.fuse(m, conds, batch=batch, generator=None)  # audio prompt (absent: silence) on the global RNG

    def model_fn(x, t, cache):
        return bb(x, t, cond_cache=cache)

    if settings.mode == "turbo":                                              # sample_dmd
        vel = ClassifierFreeGuidance(model_fn, ctx, None, scale=1.0, prepare=bb.prepare)
        ts = torch.linspace(1.0, 0.0, settings.steps + 1)
        x = noise
        for i in range(settings.steps):
            t = ts[i] * torch.ones(batch)
            x0 = x - t.view(-1, 1, 1) * vel(x, t)
            x = x0 if i == settings.steps - 1 else ts[i + 1] * torch.randn_like(x0) + (1 - ts[i + 1]) * x0
        return x
    vel = ClassifierFreeGuidance(model_fn, ctx, torch.zeros_like(ctx), scale=settings.cfg_scale, prepare=bb.prepare)
    if m.objective == "rectified_flow":
        ts = rf_timesteps(settings.steps)
        x = noise
        for i in range(settings.steps):
            x = x + (ts[i + 1] - ts[i]) * vel(x, ts[i] * torch.ones(batch))
        return x
    sigmas = polyexponential_sigmas(settings.steps, settings.sigma_min, settings.sigma_max)  # sample_k
    x = noise * sigmas[0]
    den = VDenoiser(vel)
    if settings.sampler == "dpmpp-3m-sde":
        tree = BrownianTreeNoiseSampler.for_sigmas(x, sigmas)  # seed=None: randint on the global CPU RNG
        return sample_dpmpp_3m_sde(den, x, sigmas, noise_sampler=tree)
    if settings.sampler == "k-dpmpp-2s-ancestral":
        return sample_dpmpp_2s_ancestral(den, x, sigmas, noise_sampler=lambda a, b: torch.randn_like(x))
    assert settings.sampler == "k-heun"
    return sample_heun(den, x, sigmas)


CASES = [
    pytest.param("audiox", "dpmpp-3m-sde", marks=pytest.mark.skipif(not HAVE_TORCHSDE, reason="torchsde")),
    ("audiox", "k-dpmpp-2s-ancestral"),
    ("audiox_maf", "k-dpmpp-2s-ancestral"),
    pytest.param("audiox_maf_mmdit", "dpmpp-3m-sde", marks=pytest.mark.skipif(not HAVE_TORCHSDE, reason="torchsde")),
    ("audiox_maf_mmdit", "k-dpmpp-2s-ancestral"),
    ("audiox_maf_mmdit", "k-heun"),
]


@pytest.mark.parametrize("variant,sampler", CASES)
def test_official_noise_reproduces_the_official_draw_order(models, variant, sampler):
    m = models[variant]
    s = G.SamplerSettings.for_model(m, steps=4, sampler=sampler, seed=1234, noise="official")
    state = torch.get_rng_state()
    got = generate(m, GenerationRequest(prompt=PROMPT, settings=s, batch=2)).latents
    assert torch.equal(torch.get_rng_state(), state)  # explicit generators: global RNG untouched
    want = _official_latents(m, s, 2)
    assert torch.equal(got, want)
    # the default noise is a different (device-independent) stream
    default = generate(m, GenerationRequest(prompt=PROMPT, settings=G.SamplerSettings(**{**s.__dict__, "noise": "cpu"}),
                                            batch=2))
    assert not torch.equal(default.latents, got)


@pytest.mark.parametrize("mode", ["turbo", "base"])
def test_official_noise_turbo_and_rectified_flow(models, mode):
    m = models["audiox_turbo"]
    s = G.SamplerSettings.for_model(m, mode, steps=4, seed=77, noise="official", **({} if mode == "turbo" else
                                                                                   {"cfg_scale": 3.0}))
    got = generate(m, GenerationRequest(prompt=PROMPT, settings=s, batch=1)).latents
    assert torch.equal(got, _official_latents(m, s, 1))


def test_draw_order_matters(models):
    # the conditioners consume the stream (MAF: span masking of the absent prompt), so noise drawn
    # after them -- our default order -- is not the official initial noise
    m = models["audiox_maf"]
    torch.manual_seed(5)
    C.fuse(m, C.Conditions(text=C.encode_text(m, PROMPT)), generator=None)
    after = torch.randn([1, m.config.io_channels, m.latent_length])
    assert not torch.equal(after, G.OfficialRNG(5, "cpu").initial_noise(after.shape))


@pytest.mark.parametrize("sampler", ["k-dpmpp-2s-ancestral", "k-heun"])
def test_sampler_alone_replays_the_conditioner_draws(models, sampler):
    # the node path: conditions encoded elsewhere (here with another generator), then the sampler in
    # official mode draws the noise first and replays the conditioners' draws.  AudioX v1 replaces
    # an absent prompt by its learned empty feature, so the context does not depend on the draws.
    m = models["audiox"]
    s = G.SamplerSettings.for_model(m, steps=4, sampler=sampler, seed=31, noise="official")
    ctx = C.fuse(m, C.Conditions(text=C.encode_text(m, PROMPT, batch=2)), batch=2,
                 generator=torch.Generator().manual_seed(999))
    alone = G.sample(m, ctx, s, batch=2, replay_conditioner_draws=True)
    assert torch.equal(alone, _official_latents(m, s, 2))
    if sampler == "k-dpmpp-2s-ancestral":  # without the replay the per-step noise is out of step
        assert not torch.equal(G.sample(m, ctx, s, batch=2), alone)


def test_official_noise_refuses_what_the_app_does_not_do(models):
    m = models["audiox"]
    s = G.SamplerSettings.for_model(m, steps=2, noise="official")
    wav = torch.zeros(2, 44100)
    with pytest.raises(InputError, match="inpainting"):
        generate(m, GenerationRequest(prompt="x", init_audio=(wav, 44100), inpaint=[(0.1, 0.2)], settings=s))
    with pytest.raises(InputError, match="negative prompt"):
        generate(m, GenerationRequest(prompt="x", negative_prompt="y", settings=s))
    with pytest.raises(InputError, match="longer than the window"):
        generate(m, GenerationRequest(prompt="x", duration=60.0, settings=s))
    with pytest.raises(InputError, match="noise must be one of"):
        generate(m, GenerationRequest(prompt="x", settings=G.SamplerSettings.for_model(m, steps=2, noise="gpu")))
    with pytest.raises(InputError, match="sde_noise"):
        generate(m, GenerationRequest(prompt="x", settings=G.SamplerSettings.for_model(m, steps=2, noise="official",
                                                                          sde_noise="gaussian")))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_device_generator_equals_the_global_cuda_stream():
    rng = G.OfficialRNG(4321, "cuda")
    a = rng.initial_noise((2, 64, 215))
    b = torch.randn(3, 5, device="cuda", generator=rng.on_device)
    torch.manual_seed(4321)
    assert torch.equal(a, torch.randn([2, 64, 215], device="cuda"))
    assert torch.equal(b, torch.randn(3, 5, device="cuda"))
    # the Brownian-tree seed comes from the (untouched) CPU generator
    assert rng.tree_seed() == torch.randint(0, 2**63 - 1, []).item()


def test_cli_sampler_and_official_noise(tmp_path):
    from audiox_core import media
    from audiox_core.__main__ import main
    from audiox_core.api import load
    from audiox_core.checkpoint import save_model
    m = make_tiny_model("audiox", seed=4)
    save_model(m, tmp_path / "tiny.safetensors")
    t5 = save_tiny_t5(tmp_path / "t5")
    args = ["generate", "--model", str(tmp_path / "tiny.safetensors"), "--t5", str(t5), "--prompt", PROMPT,
            "--steps", "3", "--sampler", "k-dpmpp-2s-ancestral", "--seed", "7", "--no-normalize"]
    assert main(args + ["--noise", "official", "--out", str(tmp_path / "o.wav")]) == 0
    assert main(args + ["--out", str(tmp_path / "c.wav")]) == 0
    official, _ = media.load_audio(tmp_path / "o.wav")
    default, _ = media.load_audio(tmp_path / "c.wav")
    model = load(tmp_path / "tiny.safetensors", t5=t5)
    s = G.SamplerSettings.for_model(model, steps=3, sampler="k-dpmpp-2s-ancestral", seed=7, noise="official",
                                    sigma_min=0.3, sigma_max=500.0)
    want = generate(model, GenerationRequest(prompt=PROMPT, settings=s)).audio[0]
    assert (official - want.clamp(-1, 1)).abs().max().item() < 2 / 32768  # 16-bit WAV
    assert (default - official).abs().max().item() > 1e-3
    assert main(args + ["--sampler", "nope", "--out", str(tmp_path / "x.wav")]) == 2
