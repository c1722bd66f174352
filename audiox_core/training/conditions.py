"""Training-time conditions: prepared inputs → per-modality tokens → fused context, with grad.

:class:`ConditionEncoder` turns a :class:`~.data.Batch` into the three conditioner outputs the
official ``MultiConditioner`` would produce, computing on the fly only what is cheap or trained:

* **video** — cached conditioner output (frozen), or ``temporal transformer + proj (+ sync)``
  on cached CLIP hidden states (projections trained), or the CLIP tower itself on cached
  frames (CLIP trained).  Absent / dropped items get the learned ``empty_visual_feat`` (the
  official "all-zero video" convention), which therefore receives gradients when trained.
* **text** — cached T5 tokens, or the T5 encoder run with grad on cached token ids (T5
  trained): ``last_hidden_state.float() · mask`` as the official ``T5Conditioner``.  Absent /
  dropped: T5 of the empty string.
* **audio prompt** — the conditioner's projections on a latent sampled from the cached
  posterior (v1 / v2) or on cached log-mel frames (mel).  Absent / dropped: v1 the learned
  ``empty_audio_feat``; v2 the VAE posterior of silence (sampled), exactly what encoding 10 s of
  zeros gives; mel the log-mel of silence.  Span masking (config ``mask_ratio_start/end``, on
  by default as in the official conditioners) is drawn with the official ``draw_spans`` rule over
  the prompt's waveform samples; v2 replaces the masked latent frames ``[⌊b/r⌋, ⌈(b+n)/r⌉)`` by
  the silence posterior (the official zeroes the waveform before encoding — a documented
  approximation), mel sets the masked frames to 0.0 exactly as the official (absent prompts
  included).

:class:`Masking` holds the paper's input masking (drop video 0.6, text 0.2, audio 0.6 — the
public code does not implement it) and the official CFG dropout (0.1: the
whole fused context of an item is replaced by zeros, after MAF).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ..errors import InputError
from .data import Batch, PreparedDataset

__all__ = ["Masking", "ConditionEncoder", "NO_MASKING"]


@dataclass
class Masking:
    """Per-item drop probabilities (independent Bernoulli draws) and CFG dropout.

    ``video``, ``text``, ``audio``: probability of replacing a present modality by its absent
    convention (paper: 0.6 / 0.2 / 0.6).  ``cfg``: probability of zeroing the whole fused
    context (official ``cfg_dropout_prob`` 0.1).  ``prompt_spans``: None = the audio-prompt
    conditioner's configured span masking, False = never.
    """

    video: float = 0.6
    text: float = 0.2
    audio: float = 0.6
    cfg: float = 0.1
    prompt_spans: Optional[bool] = None

    def __post_init__(self):
        for k in ("video", "text", "audio", "cfg"):
            v = float(getattr(self, k))
            if not 0.0 <= v <= 1.0:
                raise InputError(f"Masking.{k} must be a probability in [0, 1], got {v}")
            setattr(self, k, v)


NO_MASKING = Masking(0.0, 0.0, 0.0, 0.0, prompt_spans=None)


def _bernoulli(n: int, p: float, g: torch.Generator) -> torch.Tensor:
    if p <= 0:
        torch.rand(n, generator=g)  # keep the stream in step whatever the probability
        return torch.zeros(n, dtype=torch.bool)
    return torch.rand(n, generator=g) < p


class ConditionEncoder:
    """Conditions of a prepared batch for ``model`` (its conditioners, T5 and MAF).

    ``train_t5`` / ``train_clip``: run those encoders with grad (the plan must then cache ids /
    frames).  All randomness comes from the ``generator`` passed to each call (CPU).
    """

    def __init__(self, model, data: PreparedDataset):
        self.model = model
        self.data = data
        self.plan = data.plan
        self.vc = model.video_conditioner
        self.ac = model.audio_conditioner
        self.kind = getattr(self.ac, "kind", None)
        self.enc = model.text_encoder
        if self.plan.text == "ids" and self.enc is None:
            raise InputError("the data were prepared for T5 training (token ids) but the model has no T5 attached")

    # ------------------------------------------------------------------ per modality
    def video_tokens(self, batch: Batch, keep: torch.Tensor) -> torch.Tensor:
        vc = self.vc
        b = batch.size
        dt = vc.proj.weight.dtype
        empty = vc.empty_visual_feat.to(dt).expand(b, -1, -1)
        if batch.video is None or not bool(keep.any()):
            return empty.contiguous()
        rows = keep.nonzero().flatten()
        v = batch.video.index_select(0, rows)
        n = rows.numel()
        if self.plan.video == "output":
            tokens = v.to(dt)
        else:
            if self.plan.video == "frames":
                tower = vc.visual_encoder_model
                mean, std = vc._norm_consts(v.device)
                x = v.reshape(n * vc.frames_per_clip, *v.shape[2:]).float() / 255.0
                x = ((x - mean) / std).to(next(tower.parameters()).dtype)
                hidden = tower(pixel_values=x).last_hidden_state
            else:
                hidden = v.reshape(n * vc.frames_per_clip, vc.tokens_per_frame, vc.dim)
            from ..conditioning.clip_video import raw_reshape_project
            tokens = raw_reshape_project(vc.proj, vc.temporal(hidden.to(dt), n), vc.out_features)
            if getattr(vc, "with_sync", False):
                sync = None if batch.sync is None else batch.sync.index_select(0, rows)
                tokens = tokens + vc.sync_part(sync, n)
        return empty.index_copy(0, rows, tokens.to(empty.dtype)) if n < b else tokens

    def text_tokens(self, batch: Batch, keep: torch.Tensor) -> torch.Tensor:
        empty = self.data.shared["empty_text"].to(batch.text.device)
        k = keep.view(-1, *([1] * (batch.text.dim() - 1)))
        if self.plan.text == "tokens":
            return torch.where(k, batch.text, empty.float().expand_as(batch.text))
        ids = torch.where(k, batch.text, empty.expand_as(batch.text))
        mask = ids != self.enc.tokenizer.pad_token_id
        h = self.enc.model(input_ids=ids, attention_mask=mask).last_hidden_state
        return h.float() * mask.unsqueeze(-1).float()

    def _spans(self, b: int, n: int, g: torch.Generator, enabled: Optional[bool]):
        ac = self.ac
        start, end = float(getattr(ac, "mask_ratio_start", 0.0)), float(getattr(ac, "mask_ratio_end", 0.0))
        if enabled is False or not start < end:
            return None
        from ..conditioning.audio_prompt import draw_spans
        return draw_spans(b, n, start, end, generator=g)

    def audio_tokens(self, batch: Batch, keep: torch.Tensor, g: torch.Generator,
                     spans: Optional[bool] = None) -> torch.Tensor:
        ac, b = self.ac, batch.size
        dev = batch.x0.device
        if self.kind == "mel_spec":
            sil = self.data.shared["silence_mel"].to(dev)
            mel = sil.expand(b, -1, -1).clone()
            if batch.prompt is not None:
                mel = torch.where(keep.view(-1, 1, 1), batch.prompt[0], mel)
            sp = self._spans(b, mel.shape[1], g, spans)
            if sp is not None:
                for i, (begin, length) in enumerate(sp):
                    if length > 0:
                        mel[i, begin:begin + length] = 0.0
            return ac.proj_features(mel.to(ac.proj_features.weight.dtype))
        smean, sstd = (t.to(dev) for t in self.data.shared["silence"])
        lp = smean.shape[-1]
        mean, std = smean.expand(b, -1, -1), sstd.expand(b, -1, -1)
        if batch.prompt is not None:
            k = keep.view(-1, 1, 1)
            mean, std = torch.where(k, batch.prompt[0], mean), torch.where(k, batch.prompt[1], std)
        eps = torch.randn(mean.shape, generator=g).to(dev)
        z = mean + std * eps
        if self.kind == "audio_autoencoder_v2":
            ratio = ac.pretransform.downsampling_ratio
            sp = self._spans(b, lp * ratio, g, spans)
            if sp is not None:
                silence = smean + sstd * torch.randn(smean.shape, generator=g).to(dev)
                z = z.clone()
                for i, (begin, length) in enumerate(sp):
                    if length > 0 and bool(keep[i]):
                        a, e = begin // ratio, min(lp, -(-(begin + length) // ratio))
                        z[i, :, a:e] = silence[:, a:e]
            dt = ac.proj_out.weight.dtype
            h = ac.proj_features_128(z.to(dt))
            return ac.proj_out(h.transpose(1, 2))
        # v1: projections, learned empty feature for absent rows
        dt = ac.proj_out.weight.dtype
        tokens = ac.proj_out(z.to(dt).transpose(1, 2))
        empty = ac.empty_audio_feat.to(tokens.dtype).expand(b, -1, -1)
        return torch.where(keep.view(-1, 1, 1), tokens, empty)

    # ------------------------------------------------------------------ all three
    def tokens(self, batch: Batch, masking: Masking, g: torch.Generator) -> tuple:
        """``(video, text, audio)`` conditioner outputs after input masking."""
        b = batch.size
        dev = batch.x0.device
        drop_v, drop_t, drop_a = (_bernoulli(b, p, g).to(dev) for p in (masking.video, masking.text, masking.audio))
        keep_v = batch.video_present & ~drop_v
        keep_t = batch.text_present & ~drop_t
        keep_a = batch.prompt_present & ~drop_a
        video = self.video_tokens(batch, keep_v)
        text = self.text_tokens(batch, keep_t)
        audio = self.audio_tokens(batch, keep_a, g, masking.prompt_spans)
        return video, text, audio

    def cfg_drop(self, context: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
        """Official CFG dropout: items with probability ``p`` get an all-zero context."""
        drop = _bernoulli(context.shape[0], p, g).to(context.device)
        if not bool(drop.any()):
            return context
        return torch.where(drop.view(-1, 1, 1), torch.zeros_like(context), context)

    def context(self, batch: Batch, masking: Masking, g: torch.Generator, model=None,
                tokens: Optional[tuple] = None) -> torch.Tensor:
        """Fused context ``[B, N, D]`` (MAF of ``model``, default the encoder's model) with CFG dropout."""
        model = model or self.model
        v, t, a = tokens if tokens is not None else self.tokens(batch, masking, g)
        ctx = model.fuse(v, t, a)
        return self.cfg_drop(ctx, masking.cfg, g)
