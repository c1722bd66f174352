"""The VAE trainer: loss formulas, learning, deterministic resume, atomic checkpoints, export."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from audiox_core.checkpoint import load_vae
from audiox_core.config import VAEConfig
from audiox_core.errors import CheckpointError, ConfigError, InputError, Interrupted
from audiox_core.training.vae import (MultiResolutionSTFTLoss, VAETrainConfig, VAETrainer, reconstruction_metrics)

TINY = VAEConfig(in_channels=2, channels=4, c_mults=(1, 2), strides=(2, 4), encoder_latent_dim=8, latent_dim=4,
                 downsampling_ratio=8)
SEG = 256


def sine_source(step: int, batch: int) -> torch.Tensor:
    """Deterministic per step: sines of random frequency and phase (same on both channels)."""
    g = np.random.default_rng([7, step])
    t = np.arange(SEG) / 8000.0
    rows = [0.5 * np.sin(2 * np.pi * g.uniform(200, 1500) * t + g.uniform(0, 6.28)) for _ in range(batch)]
    x = torch.tensor(np.stack(rows), dtype=torch.float32)[:, None, :]
    return x.repeat(1, 2, 1)


def small_cfg(**kw) -> VAETrainConfig:
    base = dict(steps=6, batch_size=2, segment=SEG, lr=3e-3, warmup=1, stft_sizes=(64, 32), checkpoint_every=2,
                seed=3)
    base.update(kw)
    return VAETrainConfig(**base)


# ---------------------------------------------------------------------------------------------- loss
def _np_mrstft(y: np.ndarray, x: np.ndarray, sizes, floor: float) -> float:
    """Independent numpy version: explicit framing with reflect padding (torch.stft center=True)."""
    def power(sig, n):
        hop = n // 4
        win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)  # periodic Hann
        p = np.pad(sig, (n // 2, n // 2), mode="reflect")
        frames = [p[i:i + n] * win for i in range(0, len(p) - n + 1, hop)]
        return np.abs(np.fft.rfft(np.stack(frames), axis=1)) ** 2
    total = 0.0
    for n in sizes:
        py = np.stack([power(r, n) for r in y.reshape(-1, y.shape[-1])])
        px = np.stack([power(r, n) for r in x.reshape(-1, x.shape[-1])])
        sc = np.linalg.norm(np.sqrt(py) - np.sqrt(px)) / np.linalg.norm(np.sqrt(px))
        f = floor * px.reshape(len(px), -1).max(axis=1)[:, None, None] + 1e-10
        lm = np.mean(np.abs(np.log(py + f) - np.log(px + f))) / 2
        total += sc + lm
    return total / len(sizes)


def test_mrstft_matches_numpy():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(2, 2, 300, generator=g), torch.randn(2, 2, 300, generator=g) * 0.5
    x[1] *= 0.01  # rows of very different loudness: the floor is per row
    ours = float(MultiResolutionSTFTLoss((64, 32), floor=1e-3)(y, x))
    ref = _np_mrstft(y.double().numpy(), x.double().numpy(), (64, 32), 1e-3)
    assert ours == pytest.approx(ref, rel=1e-4)
    assert float(MultiResolutionSTFTLoss((64,))(x, x)) == pytest.approx(0.0, abs=1e-5)
    # the relative floor: faint noise over silence costs little, silence instead of sound costs a lot
    sig = torch.zeros(1, 1, 2048)
    sig[..., 500:900] = torch.sin(torch.arange(400) * 0.3)
    loss = MultiResolutionSTFTLoss((256, 64))
    faint = loss(sig + 1e-3 * torch.randn(1, 1, 2048, generator=g), sig)
    silent = loss(torch.zeros_like(sig), sig)
    assert float(faint) < 0.3 < 1.0 < float(silent)


def test_kl_and_total_loss_by_hand():
    tr = VAETrainer(TINY, small_cfg(kl_weight=0.01, l1_weight=0.5, stft_weight=2.0), sine_source)
    x = sine_source(0, 2)
    with torch.no_grad():
        parts = tr.losses(x, torch.Generator().manual_seed(1))
        h = tr.model.encoder(x)
    mean, scale = h.chunk(2, dim=1)
    std = torch.nn.functional.softplus(scale) + 1e-4
    kl = (mean ** 2 + std ** 2 - torch.log(std ** 2) - 1).sum(1).mean()
    assert float(parts["kl"]) == pytest.approx(float(kl), rel=1e-5)
    total = 2.0 * parts["stft"] + 0.5 * parts["l1"] + 0.01 * parts["kl"]
    assert tr.kl_weight_at(0) == 0.0  # warm-up: no KL at first
    assert float(parts["loss"]) == pytest.approx(float(2.0 * parts["stft"] + 0.5 * parts["l1"]), rel=1e-6)
    tr.step = tr.cfg.steps
    with torch.no_grad():
        parts = tr.losses(x, torch.Generator().manual_seed(1))
    assert float(parts["loss"]) == pytest.approx(float(total), rel=1e-6)


def test_scale_bias_init():
    tr = VAETrainer(TINY, small_cfg(scale_bias_init=-4.0), sine_source)
    assert torch.all(tr.model.encoder.layers[-1].bias[TINY.latent_dim:] == -4.0)
    with torch.no_grad():
        mean, std = torch.chunk(tr.model.encoder(sine_source(0, 1)), 2, dim=1)
    assert float((torch.nn.functional.softplus(std) + 1e-4).mean()) < 0.05


# ---------------------------------------------------------------------------------------------- learning
def test_training_lowers_the_loss():
    fixed = sine_source(0, 4)
    tr = VAETrainer(TINY, small_cfg(steps=40, batch_size=4, checkpoint_every=0, lr=5e-3), lambda s, b: fixed)
    hist = tr.train()
    assert len(hist) == 40 and tr.step == 40
    first = np.mean([h["loss"] for h in hist[:3]])
    last = np.mean([h["loss"] for h in hist[-3:]])
    assert last < 0.8 * first, (first, last)
    assert all(math.isfinite(h["loss"]) for h in hist)
    assert tr.train_seconds > 0


def test_lr_schedule():
    tr = VAETrainer(TINY, small_cfg(steps=100, warmup=10, lr=1e-3, lr_final=0.1), sine_source)
    assert tr.lr_at(0) == pytest.approx(1e-4)
    assert tr.lr_at(9) == pytest.approx(1e-3)
    assert tr.lr_at(10) == pytest.approx(1e-3)
    assert tr.lr_at(55) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))
    assert tr.lr_at(100) == pytest.approx(1e-4)
    tr = VAETrainer(TINY, small_cfg(steps=100, kl_weight=1e-3, kl_warmup=(0.2, 0.6)), sine_source)
    assert [tr.kl_weight_at(s) for s in (0, 19, 20, 40, 60, 99)] == pytest.approx([0, 0, 0, 5e-4, 1e-3, 1e-3])


# ---------------------------------------------------------------------------------------------- checkpoints
def test_resume_is_bit_exact(tmp_path):
    ref = VAETrainer(TINY, small_cfg(steps=6, checkpoint_every=0), sine_source)
    ref.train()
    ck = tmp_path / "vae.pt"
    a = VAETrainer(TINY, small_cfg(steps=6), sine_source, checkpoint_path=ck)
    a.train(steps=4)
    assert ck.is_file()
    b = VAETrainer.resume(ck, sine_source)
    assert b.step == 4 and len(b.history) == 4
    b.train()
    assert b.step == 6
    for (k, v), (k2, v2) in zip(ref.model.state_dict().items(), b.model.state_dict().items()):
        assert k == k2 and torch.equal(v, v2), k
    assert [h["loss"] for h in ref.history] == [h["loss"] for h in b.history]


def test_interrupt_saves_last_completed_step_atomically(tmp_path):
    ck = tmp_path / "vae.pt"
    tr = VAETrainer(TINY, small_cfg(steps=10, checkpoint_every=0), sine_source, checkpoint_path=ck)

    def cb(step, total, info):
        assert set(info) == {"loss", "stft", "l1", "kl", "lr"} and total == 10
        if step == 3:
            raise Interrupted("stop")

    with pytest.raises(Interrupted):
        tr.train(callback=cb)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vae.pt"]  # no temporary file left behind
    back = VAETrainer.resume(ck, sine_source)
    assert back.step == 3
    for k, v in tr.model.state_dict().items():
        assert torch.equal(v, back.model.state_dict()[k])


def test_divergence_raises_before_updating(tmp_path):
    def bad(step, batch):
        x = sine_source(step, batch)
        if step == 2:
            x[0, 0, 0] = float("nan")
        return x

    tr = VAETrainer(TINY, small_cfg(steps=5, checkpoint_every=0), bad)
    with pytest.raises(InputError, match="diverged"):
        tr.train()
    assert tr.step == 2 and all(torch.isfinite(p).all() for p in tr.model.parameters())


def test_bad_inputs(tmp_path):
    with pytest.raises(ConfigError):
        VAETrainer(TINY, small_cfg(segment=250), sine_source)  # not a multiple of 8
    tr = VAETrainer(TINY, small_cfg(), lambda s, b: torch.zeros(b, 1, SEG))
    with pytest.raises(InputError, match="audio source"):
        tr.train_step()
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        VAETrainer.resume(junk, sine_source)
    with pytest.raises(CheckpointError):
        VAETrainer.resume(tmp_path / "missing.pt", sine_source)


# ---------------------------------------------------------------------------------------------- export, metrics
def test_export_loads_with_the_vae_loader(tmp_path):
    tr = VAETrainer(TINY, small_cfg(steps=2, checkpoint_every=0), sine_source)
    tr.train()
    path = tr.export(tmp_path / "vae.safetensors", extra_metadata={"latent_scale": 0.5})
    pt = load_vae(path)
    ref = tr.pretransform()
    z = torch.randn(1, TINY.latent_dim, 16)
    assert torch.allclose(pt.decode(z), ref.decode(z), atol=1e-6)


def test_reconstruction_metrics_by_hand():
    tr = VAETrainer(TINY, small_cfg(), sine_source)
    pt = tr.pretransform()
    x = sine_source(5, 2)[..., :250]  # cut to whole latents (248) inside
    m = reconstruction_metrics(pt, x)
    y = m["recon"].double().numpy()
    ref = x[..., :248].double().numpy()
    snr = [10 * np.log10((ref[i] ** 2).sum() / ((ref[i] - y[i]) ** 2).sum()) for i in range(2)]
    assert m["snr_db_items"] == pytest.approx(snr, rel=1e-4)
    assert m["snr_db"] == pytest.approx(np.mean(snr), rel=1e-4)
    assert m["recon"].shape == (2, 2, 248) and m["lsd_db"] > 0 and m["mrstft"] > 0


def test_unit_gain_init_passes_the_latent_through():
    from audiox_core.training.vae import unit_gain_init_
    from audiox_core.models.vae import AudioAutoencoder, WNConvTranspose1d

    torch.manual_seed(0)
    cfg = VAEConfig(in_channels=2, channels=4, c_mults=(2, 4), strides=(4, 8), encoder_latent_dim=8, latent_dim=4,
                    downsampling_ratio=32)
    m = unit_gain_init_(AudioAutoencoder(cfg))
    up = [x for x in m.modules() if isinstance(x, WNConvTranspose1d)]
    assert float(up[0].weight_g.detach().flatten()[0]) == pytest.approx(math.sqrt(8 * 8 / 16))  # √(out·stride/in)
    with torch.no_grad():
        x = sine_source(0, 2)
        z = m.encoder(x)[:, :4]
        y = m.decoder(z)
        assert torch.equal(m.decoder(torch.zeros_like(z)), torch.zeros_like(y))  # no bias anywhere
        gain = float(y.pow(2).mean().sqrt() / x.pow(2).mean().sqrt())
    assert 0.1 < gain < 10, gain  # default init: ~1e-2 through a stack this deep


# ---------------------------------------------------------------------------------------------- adversarial
from audiox_core.training.discriminators import (MultiResolutionSTFTDiscriminator, feature_matching_loss,  # noqa: E402
                                                 hinge_discriminator_loss, hinge_generator_loss)

ADV = dict(adv_weight=0.5, fm_weight=2.0, disc_sizes=(64, 32), disc_filters=4, disc_lr=1e-3)

# The first 4 steps of small_cfg(steps=4, checkpoint_every=0) on sine_source, recorded with the
# implementation before the discriminator existed (commit 95e5e8a): (loss, stft, l1, kl).
PRE_ADV_HISTORY = [(2.928738832473755, 2.8918850421905518, 0.36853837966918945, 28.231966018676758),
                   (3.316862106323242, 3.2780113220214844, 0.38850677013397217, 28.21198844909668),
                   (2.929112434387207, 2.8932714462280273, 0.3555876612663269, 28.2329158782959),
                   (2.660646677017212, 2.62654447555542, 0.3382050693035126, 28.176708221435547)]


@pytest.mark.parametrize("n", [256, 1000])
def test_discriminator_shapes(n):
    d = MultiResolutionSTFTDiscriminator((64, 32), audio_channels=2, filters=4)
    logits, feats = d(torch.randn(3, 2, n))
    assert len(logits) == len(feats) == 2
    for size, lg, fs in zip((64, 32), logits, feats):
        frames, bins = n // (size // 4) + 1, size // 2 + 1
        # a (3, ·) time kernel with matching padding keeps the frames; each of the 4 strided convs
        # halves the frequency axis (rounding up)
        f = bins
        for _ in range(4):
            f = (f + 1) // 2
        assert lg.shape == (3, 1, frames, f), (size, lg.shape)
        assert len(fs) == 5 and all(t.shape[:2] == (3, 4) and t.shape[2] == frames for t in fs)
    with pytest.raises(InputError, match="audio channels"):
        d(torch.randn(1, 1, n))
    with pytest.raises(InputError, match="too short"):
        d(torch.randn(1, 2, 32))


def test_gan_losses_by_hand():
    r, f = [torch.tensor([2.0, 0.5, -1.0])], [torch.tensor([-2.0, 0.0, 3.0])]
    # relu(1 - r) = [0, .5, 2] → 2.5/3;  relu(1 + f) = [0, 1, 4] → 5/3
    assert float(hinge_discriminator_loss(r, f)) == pytest.approx(7.5 / 3)
    assert float(hinge_generator_loss(f)) == pytest.approx(-1.0 / 3)
    a, b = torch.tensor([1.0, -3.0]), torch.tensor([2.0, -1.0])
    c = torch.tensor([4.0])
    # layer 1: mean|a-b| / mean|a| = 1.5 / 2; layer 2: |c - 0| / |c| = 1
    assert float(feature_matching_loss([[a, c]], [[b, torch.zeros(1)]])) == pytest.approx((0.75 + 1.0) / 2)


def test_generator_and_discriminator_gradients_are_separate():
    tr = VAETrainer(TINY, small_cfg(**ADV), sine_source)
    x = sine_source(0, 2)
    parts, y = tr._generator_losses(x, torch.Generator().manual_seed(0))
    assert all(math.isfinite(float(parts[k].detach())) for k in ("loss", "adv", "fm"))
    assert float(parts["fm"].detach()) > 0
    parts["loss"].backward()
    assert all(p.grad is None for p in tr.disc.parameters())  # the generator loss leaves D alone
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in tr.model.decoder.parameters())
    # the adversarial terms alone reach the decoder
    tr.model.zero_grad(set_to_none=True)
    parts, y = tr._generator_losses(x, torch.Generator().manual_seed(0))
    (parts["adv"] + parts["fm"]).backward()
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in tr.model.decoder.parameters())
    tr.model.zero_grad(set_to_none=True)
    d = tr.discriminator_loss(x, y)
    assert math.isfinite(float(d.detach()))
    d.backward()
    assert all(p.grad is None for p in tr.model.parameters())  # the discriminator loss leaves the VAE alone
    assert all(p.grad is not None for p in tr.disc.parameters())
    assert all(p.requires_grad for p in tr.disc.parameters())  # unfrozen again after the generator pass


def test_adv_off_reproduces_the_previous_implementation():
    tr = VAETrainer(TINY, small_cfg(steps=4, checkpoint_every=0), sine_source)
    assert tr.disc is None and tr.disc_opt is None
    hist = tr.train()
    assert [(h["loss"], h["stft"], h["l1"], h["kl"]) for h in hist] == pytest.approx(PRE_ADV_HISTORY, rel=1e-6)
    assert not {"adv", "fm", "disc"} & set(hist[0])
    assert "discriminator" not in tr.state()


def test_adversarial_training_step_and_disc_start(tmp_path):
    tr = VAETrainer(TINY, small_cfg(steps=4, checkpoint_every=0, disc_start=2, **ADV), sine_source)
    seen = []
    tr.train(callback=lambda s, t, info: seen.append(info))
    assert set(seen[0]) == {"loss", "stft", "l1", "kl", "adv", "fm", "disc", "lr"}
    h = tr.history
    # before disc_start: no adversarial terms, and the loss is the reconstruction objective alone
    assert [x["disc"] for x in h[:2]] == [0.0, 0.0] and [x["adv"] for x in h[:2]] == [0.0, 0.0]
    plain = VAETrainer(TINY, small_cfg(steps=4, checkpoint_every=0), sine_source)
    plain.train(steps=2)
    assert [x["loss"] for x in h[:2]] == [x["loss"] for x in plain.history]
    # from disc_start on: both trained, loss = recon + weights · terms
    assert all(x["disc"] > 0 and x["fm"] > 0 for x in h[2:])
    for x in h[2:]:
        recon = x["stft"] + 0.1 * x["l1"] + tr.kl_weight_at(x["step"] - 1) * x["kl"]
        assert x["loss"] == pytest.approx(recon + 0.5 * x["adv"] + 2.0 * x["fm"], rel=1e-5)
    d0 = VAETrainer(TINY, small_cfg(steps=4, checkpoint_every=0, disc_start=2, **ADV), sine_source).disc.state_dict()
    assert any(not torch.equal(v, d0[k]) for k, v in tr.disc.state_dict().items())  # the discriminator learnt
    # export writes the VAE only
    path = tr.export(tmp_path / "vae.safetensors")
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as fh:
        keys = set(fh.keys())
    assert keys == set(tr.model.state_dict()) and not any(k.startswith("disc") for k in keys)


def test_adversarial_resume_is_bit_exact(tmp_path):
    cfg = dict(steps=6, disc_start=1, **ADV)
    ref = VAETrainer(TINY, small_cfg(checkpoint_every=0, **cfg), sine_source)
    ref.train()
    ck = tmp_path / "vae.pt"
    a = VAETrainer(TINY, small_cfg(**cfg), sine_source, checkpoint_path=ck)
    a.train(steps=3)
    b = VAETrainer.resume(ck, sine_source)
    assert b.step == 3 and b.disc is not None
    assert b.disc_opt.state_dict()["state"]  # the discriminator's Adam moments came back
    b.train()
    assert [h["loss"] for h in ref.history] == [h["loss"] for h in b.history]
    assert [h["disc"] for h in ref.history] == [h["disc"] for h in b.history]
    for m_ref, m_b in ((ref.model, b.model), (ref.disc, b.disc)):
        for (k, v), (k2, v2) in zip(m_ref.state_dict().items(), m_b.state_dict().items()):
            assert k == k2 and torch.equal(v, v2), k
    # a checkpoint whose discriminator does not fit the config is refused by name
    with pytest.raises(CheckpointError, match="discriminator"):
        VAETrainer.resume(ck, sine_source, train_config=small_cfg(**{**cfg, "disc_filters": 6}))


@pytest.mark.parametrize("bad", [dict(adv_weight=-1.0), dict(fm_weight=float("nan")), dict(adv_weight="0.1"),
                                 dict(disc_start=-1), dict(disc_start=1.5), dict(disc_lr=0.0),
                                 dict(disc_betas=(0.9,)), dict(disc_betas=(0.9, 1.0)), dict(disc_sizes=()),
                                 dict(disc_sizes=(62,)), dict(disc_filters=0),
                                 dict(adv_weight=0.1, disc_sizes=(1024,))])  # FFT needs > 512 samples; SEG = 256
def test_bad_adversarial_config(bad):
    with pytest.raises(ConfigError, match=f"VAETrainConfig.{list(bad)[-1]}"):  # names the bad field
        small_cfg(**bad)


# ---------------------------------------------------------------------------------------------- own decoder
WIDE = VAEConfig(in_channels=2, channels=4, c_mults=(1, 2), strides=(2, 4), encoder_latent_dim=8, latent_dim=4,
                 downsampling_ratio=8, decoder_channels=8, decoder_c_mults=(1, 1))


def test_decoder_widths_of_its_own_round_trip():
    """A decoder wider than the encoder: built as configured, written to / read from the official
    pretransform block (each part its own channels / c_mults) and inferred from a bare file's shapes."""
    from audiox_core.checkpoint import infer_vae
    from audiox_core.models.vae import AudioAutoencoder

    m = AudioAutoencoder(WIDE)
    assert m.decoder.layers[0].weight_v.shape[0] == 8  # latent → 8·c_mults[-1]
    assert m.decoder.layers[-2].weight_v.shape[1] == 8  # the full-rate width
    assert m.encoder.layers[0].weight_v.shape[0] == 4
    block = WIDE.to_pretransform()["config"]
    assert (block["encoder"]["config"]["channels"], block["encoder"]["config"]["c_mults"]) == (4, [1, 2])
    assert (block["decoder"]["config"]["channels"], block["decoder"]["config"]["c_mults"]) == (8, [1, 1])
    assert VAEConfig.from_pretransform(WIDE.to_pretransform()) == WIDE
    assert infer_vae({k: tuple(v.shape) for k, v in m.state_dict().items()}, "") == WIDE
    # the same widths as the encoder's are the released layout: the fields stay unset
    same = VAEConfig.from_pretransform(TINY.to_pretransform())
    assert same == TINY and same.decoder_channels is None and same.decoder_c_mults is None
    with pytest.raises(ConfigError, match="one entry per stride"):
        VAEConfig(channels=4, c_mults=(1, 2), strides=(2, 4), decoder_c_mults=(1, 2, 4))
    bad = WIDE.to_pretransform()
    bad["config"]["decoder"]["config"]["strides"] = [4, 2]
    with pytest.raises(ConfigError, match="decoder strides"):
        VAEConfig.from_pretransform(bad)


def test_frozen_encoder_trains_the_decoder_only():
    tr = VAETrainer(TINY, small_cfg(steps=3, train_encoder=False, checkpoint_every=0), sine_source)
    enc0 = {k: v.clone() for k, v in tr.model.encoder.state_dict().items()}
    dec0 = {k: v.clone() for k, v in tr.model.decoder.state_dict().items()}
    tr.train()
    assert all(torch.equal(v, enc0[k]) for k, v in tr.model.encoder.state_dict().items())
    assert any(not torch.equal(v, dec0[k]) for k, v in tr.model.decoder.state_dict().items())
    assert {id(p) for p in tr.trained_parameters()} == {id(p) for p in tr.model.decoder.parameters()}


def test_init_from_a_narrower_vae(tmp_path):
    """A wide-decoder trainer starts from a trained narrow VAE: its whole encoder and every decoder
    tensor of the same shape are copied, the rest keep their init (listed); then only the decoder
    learns, and the exported file round-trips through the VAE loader with the new widths."""
    narrow = VAETrainer(TINY, small_cfg(steps=2, checkpoint_every=0), sine_source)
    narrow.train()
    src = narrow.model.state_dict()
    tr = VAETrainer(WIDE, small_cfg(steps=3, train_encoder=False, checkpoint_every=0), sine_source)
    fresh = tr.init_from(src)
    own = tr.model.state_dict()
    assert fresh and all(k.startswith("decoder.") for k in fresh)
    assert set(fresh) == {k for k in own if k not in src or src[k].shape != own[k].shape}
    assert all(torch.equal(own[k], src[k]) for k in own if k not in fresh)
    tr.train()
    assert all(torch.equal(v, src["encoder." + k]) for k, v in tr.model.encoder.state_dict().items())
    pt = load_vae(tr.export(tmp_path / "wide.safetensors"))
    assert pt.model.cfg == WIDE
    x = sine_source(0, 1)
    assert torch.equal(pt.encode(x, sample=False), narrow.pretransform().encode(x, sample=False))
    with pytest.raises(ConfigError, match="before the first"):
        tr.init_from(src)
    other = VAETrainer(VAEConfig(in_channels=2, channels=6, c_mults=(1, 2), strides=(2, 4), encoder_latent_dim=8,
                                 latent_dim=4, downsampling_ratio=8), small_cfg(), sine_source)
    with pytest.raises(CheckpointError, match="do not fit this encoder"):
        other.init_from(src)


def test_latent_noise_reaches_the_decoder_only_when_asked():
    """latent_noise > 0: each item's decoder input is the posterior sample plus noise of a level up
    to latent_noise × the batch's latent std; 0 (default) draws nothing more (same sample as before)."""
    from audiox_core.models.vae import VAEBottleneck

    x = sine_source(0, 3)
    seen = []
    zs = {}
    for noise in (0.0, 0.5):
        tr = VAETrainer(TINY, small_cfg(latent_noise=noise), sine_source)
        h = tr.model.decoder.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach().clone()))
        tr.losses(x, torch.Generator().manual_seed(11))
        h.remove()
        zs[noise] = seen.pop()
    with torch.no_grad():
        mean, std = VAEBottleneck.moments(tr.model.encoder(x).float())
    eps = torch.randn(mean.shape, generator=torch.Generator().manual_seed(11))
    assert torch.equal(zs[0.0], mean + std * eps)
    extra = (zs[0.5] - zs[0.0]).flatten(1).std(dim=1)
    assert torch.all(extra > 0) and torch.all(extra < 0.5 * mean.std() * 1.5)
    with pytest.raises(ConfigError, match="latent_noise"):
        small_cfg(latent_noise=-1.0)


# ---------------------------------------------------------------------------------------------- spectral alignment
def test_spectral_targets_place_harmonics_in_their_bands():
    """Frame t is centred on latent frame t's span; levels in [0, 1] relative to the loudest bin;
    a square wave has its third harmonic's band lit, a sine does not; silence is at the floor."""
    from audiox_core.training.vae import spectral_targets

    sr, ratio = 16000, 640
    t = torch.arange(16000) / sr
    x = torch.zeros(2, 2, 16000)
    x[0, :, 6400:9600] = torch.sin(2 * math.pi * 440 * t[:3200])           # latent frames 10-14
    x[1, :, 6400:9600] = torch.sign(torch.sin(2 * math.pi * 440 * t[:3200]))
    tg = spectral_targets(x, ratio, 64)
    assert tg.shape == (2, 64, 25) and float(tg.min()) >= 0 and float(tg.max()) <= 1
    band = lambda f: int(f / (sr / 2) * 64)  # noqa: E731  (equal-width bands over 0 .. sr/2)
    sine, square = tg[0, :, 12], tg[1, :, 12]
    assert int(sine.argmax()) == band(440) and int(square.argmax()) == band(440)
    assert float(square[band(1320)]) > 0.1 > float(sine[band(1320)])
    assert float(tg[:, :, :8].max()) == 0.0 and float(tg[:, :, 17:].max()) == 0.0  # frames far from the tone
    assert float(tg[0, band(440), 9]) < float(tg[0, band(440), 10])           # the onset frame is lit


def test_spectral_alignment_trains_a_head_resumes_and_never_exports(tmp_path):
    from safetensors import safe_open

    cfg = dict(steps=4, spectral_align_weight=5.0, spectral_align_bands=8)
    ref = VAETrainer(TINY, small_cfg(checkpoint_every=0, **cfg), sine_source)
    plain = VAETrainer(TINY, small_cfg(checkpoint_every=0), sine_source)
    for k, v in plain.model.state_dict().items():  # the head has its own RNG: the VAE's init is unchanged
        assert torch.equal(v, ref.model.state_dict()[k]), k
    head0 = ref.align_head.weight.detach().clone()
    infos = []
    ref.train(callback=lambda s, n, info: infos.append(info))
    assert "align" in infos[0] and all(math.isfinite(i["align"]) and i["align"] > 0 for i in infos)
    assert not torch.equal(head0, ref.align_head.weight)
    with torch.no_grad():
        parts = {k: float(v) for k, v in ref.losses(sine_source(9, 2), torch.Generator().manual_seed(1)).items()}
    no_align = {k: v for k, v in parts.items() if k != "align"}
    expected = (no_align["stft"] + 0.1 * no_align["l1"] + ref.kl_weight_at(ref.step) * no_align["kl"]
                + 5.0 * parts["align"])
    assert parts["loss"] == pytest.approx(expected, rel=1e-5)
    ck = tmp_path / "vae.pt"
    a = VAETrainer(TINY, small_cfg(**cfg), sine_source, checkpoint_path=ck)
    a.train(steps=2)
    b = VAETrainer.resume(ck, sine_source)
    b.train()
    assert torch.equal(b.align_head.weight, ref.align_head.weight)
    for k, v in ref.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k
    with safe_open(str(b.export(tmp_path / "vae.safetensors")), "pt") as f:
        assert all(k.startswith(("encoder.", "decoder.")) for k in f.keys())
    plain_ck = tmp_path / "plain.pt"
    VAETrainer(TINY, small_cfg(steps=1), sine_source, checkpoint_path=plain_ck).train()
    with pytest.raises(CheckpointError, match="alignment head"):
        VAETrainer.resume(plain_ck, sine_source, train_config=small_cfg(**cfg))
    with pytest.raises(ConfigError, match="train_encoder"):
        small_cfg(spectral_align_weight=1.0, train_encoder=False)
    with pytest.raises(ConfigError, match="spectral_align_bands"):
        small_cfg(spectral_align_bands=0)
