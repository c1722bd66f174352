"""The demo model's config: official schema, sizes, the shipped-size budget, loadability."""
from __future__ import annotations

import json
import math

import pytest
import torch

from audiox_core.config import AudioXConfig
from audiox_core.demo import world as W
from audiox_core.demo.model_config import (BYTE_VOCAB, DEMO_SIZES, SIZE_LIMIT_BYTES, demo_config, demo_vae_config,
                                           size_report)
from audiox_core.errors import ConfigError
from audiox_core.models.audiox import build_model
from audiox_core.models.mmdit import conv_mlp_hidden


@pytest.fixture(scope="module")
def cfg():
    return demo_config()


def test_config_is_turbo_and_matches_the_world(cfg):
    a = cfg.audiox
    w = W.DEFAULT_CONFIG
    assert a.variant == "audiox_turbo" and a.objective == "rectified_flow"
    assert a.sample_rate == w.sample_rate == 16000
    assert a.sample_size == int(w.duration * w.sample_rate) == 64000
    assert a.vae.downsampling_ratio == math.prod(DEMO_SIZES.vae_strides) == 640
    assert a.latent_length == 100 and a.backbone.latent_seq_len == 101
    assert a.video_fps == 25 and a.audio_channels == 2 and a.vae.in_channels == 2
    # every modality has cond_dim width; the backbone's context width follows it
    assert a.cond_dim == a.backbone.cond_token_dim == a.maf.dim == cfg.t5["d_model"] == DEMO_SIZES.cond_dim
    ap = a.conditioner("audio_prompt")
    assert ap.kind == "audio_autoencoder_v2"  # Turbo naming: type audio_autoencoder + latent_seq_len
    assert ap.config["latent_seq_len"] == a.latent_length
    assert (ap.config["mask_ratio_start"], ap.config["mask_ratio_end"]) == (0.25, 0.75)
    assert ap.vae() == a.vae
    assert cfg.t5["vocab_size"] == BYTE_VOCAB == 256 + 3


def test_schema_round_trip(cfg):
    d = cfg.audiox.to_dict()
    again = AudioXConfig.from_dict(json.loads(json.dumps(d)))
    assert again.to_dict() == d
    assert again.variant == "audiox_turbo"


def test_built_model_shapes(cfg):
    m = build_model(cfg.audiox, device="meta")
    vc, ac = m.video_conditioner, m.audio_conditioner
    assert vc.frames_per_clip == 100  # 25 fps × 4 s: one frame per 40 ms
    assert vc.tokens_per_frame == (64 // 16) ** 2 + 1 == 17
    assert vc.expected_frames_shape == (100, 3, 64, 64)
    assert tuple(vc.proj.weight.shape) == (128, 100 * 17)
    assert tuple(vc.proj_sync.weight.shape) == (128, DEMO_SIZES.sync_tokens)
    assert tuple(ac.proj_features_128.weight.shape) == (128, 100)
    assert ac.prompt_samples == 64000
    bb = m.backbone
    assert len(bb.transformer.layers) == DEMO_SIZES.depth
    assert bb.transformer.nheads == DEMO_SIZES.embed_dim // DEMO_SIZES.head_width  # official head-count quirk
    assert tuple(bb.transformer.proj_mm_tokens.weight.shape) == (DEMO_SIZES.embed_dim, DEMO_SIZES.cond_dim)
    assert tuple(bb.transformer.proj_mm_seq_len.weight.shape) == (101, 384)
    sd = m.state_dict()
    assert sum(k.startswith("model.model.transformer.layers.") for k in sd) == DEMO_SIZES.depth * 11
    assert sum(k.startswith("pretransform.model.") for k in sd) == \
        sum(k.startswith("conditioner.conditioners.audio_prompt.pretransform.model.") for k in sd) > 0


def _backbone_params_by_hand(s=DEMO_SIZES, io=None, lx=101) -> int:
    d, dc, c = s.embed_dim, s.cond_dim, io or s.latent_dim
    h = conv_mlp_hidden(d, s.mlp_ratio)
    block = (3 * d * d + 3 * d)        # qkv
    block += d * d + 2 * d * d         # cross_attn.to_q, to_kv (no bias)
    block += 3 * d * d + d             # linear1: Conv1d(d, d, 3) + bias
    block += 3 * (3 * d * h)           # ffn w1, w2, w3: Conv1d k=3, no bias
    block += 6 * d * d + 6 * d         # adaLN_modulation Linear(d, 6d)
    total = s.depth * block
    total += 128                       # FourierFeatures(1, 256) weight [128, 1]
    total += 256 * d + d + d * d + d   # to_timestep_embed
    total += 2 * dc * dc               # to_cond_embed (unused by the MMDiT, but stored)
    total += 2 * c * d                 # project_in / project_out
    total += dc * d + d                # proj_mm_tokens
    total += 384 * lx + lx             # proj_mm_seq_len
    total += 2 * c * c                 # pre/postprocess 1×1 convs
    return total


def test_size_budget_arithmetic(cfg):
    rep = size_report(cfg)
    assert rep["parts"]["backbone"] == _backbone_params_by_hand()
    m = build_model(cfg.audiox, device="meta")
    n = sum(p.numel() for p in m.parameters()) + sum(b.numel() for b in m.buffers() if b.is_floating_point())
    assert rep["model_params"] == n
    assert rep["parts"]["vae"] == rep["parts"]["audio_prompt_vae"]  # the VAE is stored twice
    # the shipped weights: base + Turbo student (fp16) + T5 (fp16) within 40 MB
    total = 2 * (2 * rep["model_params"]) + 2 * rep["t5_params"]
    assert total == rep["total_bytes"] and total <= SIZE_LIMIT_BYTES == 40_000_000
    assert rep["fits"]
    # a bigger backbone would not fit: the check can fail
    big = size_report(demo_config(DEMO_SIZES.with_(depth=8)))
    assert not big["fits"]


def test_t5_params_by_hand(cfg):
    s, t = DEMO_SIZES, cfg.t5
    inner = s.t5_heads * s.t5_d_kv
    layer = 4 * s.cond_dim * inner + s.cond_dim + 2 * s.cond_dim * s.t5_d_ff + s.cond_dim  # attn + ln, ff + ln
    by_hand = BYTE_VOCAB * s.cond_dim + s.t5_layers * layer + s.t5_buckets * s.t5_heads + s.cond_dim
    assert size_report(cfg)["t5_params"] == by_hand


def test_bad_world_or_sizes_raise():
    with pytest.raises(ConfigError):
        demo_config(world=W.WorldConfig(duration=3.3))  # not whole latents
    with pytest.raises(ConfigError):
        demo_vae_config(DEMO_SIZES.with_(vae_strides=(4, 4, 5, 8)))  # odd stride
    with pytest.raises(ConfigError):
        demo_config(DEMO_SIZES.with_(embed_dim=200))  # not a multiple of the head width


def test_forward_runs_with_narrow_context(cfg):
    """The MMDiT context width follows cond_token_dim (128 here, 768 in released configs)."""
    torch.manual_seed(0)
    m = build_model(cfg.audiox, device="cpu").eval()
    b, d = 2, cfg.audiox.cond_dim
    tok = [torch.randn(b, 128, d) for _ in range(3)]
    with torch.no_grad():
        ctx = m.fuse(*tok)
        assert tuple(ctx.shape) == (b, 384, d)
        v = m.backbone(torch.randn(b, 32, 100), torch.rand(b), ctx)
    assert tuple(v.shape) == (b, 32, 100) and torch.isfinite(v).all()


def test_saved_model_and_t5_load_like_any_model(cfg, tmp_path):
    from audiox_core.checkpoint import load_model, save_model
    from audiox_core.demo.build import build_demo_model, load_demo_t5, new_demo_t5, save_t5_folder

    m = build_demo_model(cfg, seed=1)
    path = tmp_path / "audiox_demo_turbo.safetensors"
    save_model(m, path, dtype=torch.float16, role="student")
    assert path.stat().st_size < size_report(cfg)["model_file_bytes"] + 200_000  # + header
    back = load_model(path)
    assert back.config.variant == "audiox_turbo" and back.info["role"] == "student"
    assert back.config.to_dict() == cfg.audiox.to_dict()
    w0 = m.backbone.transformer.layers[0].attn.qkv.weight
    assert torch.equal(back.backbone.transformer.layers[0].attn.qkv.weight, w0.half().float())
    folder = save_t5_folder(new_demo_t5(cfg, seed=0), tmp_path / "demo_t5")
    assert {p.name for p in folder.iterdir()} == {"config.json", "model.safetensors", "byte_tokenizer.json"}
    enc = load_demo_t5(folder, cfg)
    tok, mask = enc.encode(["two high beeps, then a low bell"])
    assert tuple(tok.shape) == (1, 128, cfg.audiox.cond_dim)
    assert int(mask.sum()) == len("two high beeps, then a low bell") + 1  # bytes + </s>
