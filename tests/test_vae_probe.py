"""The latent probe of ``audiox_core.demo.evaluation`` (plumbing and its two reference points:
features without the difference score chance, features with it score high)."""
import torch

from audiox_core.demo.evaluation import PROBE_PAIRS, latent_probe_report


class _Stub:
    """A pretransform whose 'latent' is either all zeros or a band-pooled log spectrogram."""

    downsampling_ratio = 640
    latent_dim = 8
    io_channels = 2

    def __init__(self, informative: bool):
        self.informative = informative

    def encode(self, audio, sample=True):
        assert sample is False and audio.shape[1] == 2 and audio.shape[-1] % 640 == 0
        frames = audio.shape[-1] // 640
        if not self.informative:
            return torch.zeros(audio.shape[0], 8, frames)
        mag = torch.stft(audio[:, 0], 1280, 640, window=torch.hann_window(1280), return_complex=True).abs()
        bands = torch.nn.functional.adaptive_avg_pool1d(torch.log(mag + 1e-5).transpose(1, 2), 8)
        return bands.transpose(1, 2)[..., :frames]


def test_probe_scores_chance_without_information_and_high_with_it():
    kw = dict(n_per_class=24, steps=150, pairs=PROBE_PAIRS[:1])
    blind = latent_probe_report(_Stub(False), **kw)
    seeing = latent_probe_report(_Stub(True), **kw)
    assert set(blind) >= {"beep/buzz", "frame_rate", "n_per_class"} and blind["frame_rate"] == 25.0
    assert blind["beep/buzz"]["latent"]["test"] <= 0.7          # constant features: a constant guess
    assert blind["beep/buzz"]["spectrum"]["test"] >= 0.9        # the reference separates the pair
    assert seeing["beep/buzz"]["latent"]["test"] >= 0.9
    # deterministic: the same clips and the same probe training give the same figures
    assert latent_probe_report(_Stub(True), **kw)["beep/buzz"] == seeing["beep/buzz"]
