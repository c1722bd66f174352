"""CLIP video conditioners: manifest keys, raw-reshape projection, temporal regrouping, empty feature, sync."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from audiox_core.conditioning.clip_video import (CLIP_MEAN, CLIP_STD, CLIPVideoConditioner, is_ignored_checkpoint_key,
                                                 load_clip_vision, raw_reshape_project)
from audiox_core.errors import CheckpointError, ConfigError, InputError
from tests.conftest import read_manifest, shape_str

PREFIX = "conditioner.conditioners.video_prompt."
# Tiny tower: 64×64 images, patch 32 → q = 2·2 + 1 = 5 tokens; 2 s at 2 fps → T = 4 frames.
TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, image_size=64,
            patch_size=32, projection_dim=16, duration=2, temporal_depth=2, temporal_heads=2, temporal_dim_head=8,
            sync_tokens=12)
SPEC = {"clip_model_name": "clip-vit-base-patch32", "video_fps": 2}


def _cond(with_sync=True, seed=0) -> CLIPVideoConditioner:
    torch.manual_seed(seed)
    c = CLIPVideoConditioner(SPEC, 32, with_sync=with_sync, clip_config=TINY)
    with torch.no_grad():
        c.empty_visual_feat.normal_()
        if with_sync:
            c.sync_weight.fill_(0.7)
            c.proj_sync.bias.normal_()
    return c.eval()


def _frames(b=3, zero=(1,), seed=1):
    g = torch.Generator().manual_seed(seed)
    f = torch.randint(0, 256, (b, 4, 3, 64, 64), generator=g, dtype=torch.uint8)
    for i in zero:
        f[i] = 0
    return f


# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant,with_sync", [("audiox", False), ("audiox_maf", True), ("audiox_maf_mmdit", True),
                                               ("audiox_turbo", True)])
def test_full_size_keys_match_manifest(reference_dir, variant, with_sync):
    path = reference_dir / "manifests" / f"{variant}.tsv"
    if not path.exists():
        pytest.skip(f"{path} missing")
    rows = [(k[len(PREFIX):], s) for k, s in read_manifest(path) if k.startswith(PREFIX)]
    with torch.device("meta"):
        c = CLIPVideoConditioner({"clip_model_name": "clip-vit-base-patch32"}, 768, with_sync=with_sync)
    assert [(k, shape_str(v.shape)) for k, v in c.state_dict().items()] == rows
    assert (c.frames_per_clip, c.tokens_per_frame, c.in_features, c.out_features) == (50, 50, 2500, 128)
    assert not [n for n, b in c.named_buffers()]  # nothing that could stay on the meta device


def test_derived_sizes_and_config_errors():
    c = _cond()
    assert (c.frames_per_clip, c.tokens_per_frame, c.in_features, c.sync_tokens) == (4, 5, 20, 12)
    assert c.proj.weight.shape == (128, 20) and c.proj_sync.weight.shape == (128, 12)
    with pytest.raises(ConfigError, match="cond_dim"):
        CLIPVideoConditioner(SPEC, 768, clip_config=TINY)
    with pytest.raises(ConfigError, match="mask_ratio"):
        CLIPVideoConditioner({**SPEC, "mask_ratio": 0.5}, 32, clip_config=TINY)
    with pytest.raises(ConfigError, match="unknown clip_config"):
        CLIPVideoConditioner(SPEC, 32, clip_config={**TINY, "bogus": 1})


def test_raw_reshape_projection_is_not_a_transpose():
    torch.manual_seed(0)
    lin = nn.Linear(6, 4)
    x = torch.randn(2, 6, 8)  # [B, N, D]
    got = raw_reshape_project(lin, x, 4)
    w, b = lin.weight.detach(), lin.bias.detach()
    want = torch.empty(2, 4, 8)
    for bi in range(2):
        flat = x[bi].reshape(-1)  # row-major buffer
        outs = []
        for j in range(8):  # D consecutive chunks of N values
            chunk = flat[j * 6:(j + 1) * 6]
            outs.append(torch.stack([(w[o] * chunk).sum() + b[o] for o in range(4)]))
        want[bi] = torch.cat(outs).reshape(4, 8)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    transposed = lin(x.transpose(1, 2)).transpose(1, 2)
    assert not torch.allclose(got, transposed, atol=1e-3)


def test_temporal_regrouping_index():
    c = _cond()
    c.Temp_transformer = nn.Identity()
    t, q, d = c.frames_per_clip, c.tokens_per_frame, c.dim
    with torch.no_grad():
        c.Temp_pos_embedding.copy_(torch.arange(t).float().view(1, t, 1).expand(1, t, d) * 1000)
    b = 2
    hidden = torch.zeros(b * t, q, d)
    for bi in range(b):
        for ti in range(t):
            for qi in range(q):
                hidden[bi * t + ti, qi] = bi * 100 + ti * 10 + qi
    out = c.temporal(hidden, b)
    assert out.shape == (b, t * q, d)
    for bi in range(b):
        for ti in range(t):
            for qi in range(q):
                assert torch.all(out[bi, ti * q + qi] == bi * 100 + ti * 10 + qi + ti * 1000)


def test_temporal_transformer_matches_einsum_reference():
    c = _cond()
    x = torch.randn(3, 4, 32)
    y = x
    for attn, ff in c.Temp_transformer.layers:
        h = attn.norm(y)
        qkv = attn.fn.to_qkv(h)
        heads, dh = 2, 8
        q, k, v = (qkv[..., i * 16:(i + 1) * 16].reshape(3, 4, heads, dh) for i in range(3))
        dots = torch.einsum("bihd,bjhd->bhij", q, k) * dh ** -0.5
        o = torch.einsum("bhij,bjhd->bihd", dots.softmax(-1), v).reshape(3, 4, 16)
        y = attn.fn.to_out[0](o) + y
        h = ff.norm(y)
        y = ff.fn.net[3](torch.nn.functional.gelu(ff.fn.net[0](h))) + y
    y = c.Temp_transformer.norm(y)
    torch.testing.assert_close(c.Temp_transformer(x), y, rtol=0, atol=1e-5)


def _reference_forward(c: CLIPVideoConditioner, frames: torch.Tensor, sync=None) -> torch.Tensor:
    """Step-by-step recomputation with einops (the official's formulation)."""
    import einops
    b, t = frames.shape[:2]
    x = frames.float() / 255.0
    mean = torch.tensor(CLIP_MEAN).view(1, 1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 1, 3, 1, 1)
    x = einops.rearrange((x - mean) / std, "b t c h w -> (b t) c h w")
    with torch.no_grad():
        h = c.visual_encoder_model(pixel_values=x).last_hidden_state
    h = einops.rearrange(h, "(b t) q h -> (b q) t h", b=b, t=t) + c.Temp_pos_embedding
    h = einops.rearrange(c.Temp_transformer(h), "(b q) t h -> b (t q) h", b=b, t=t)
    v = c.proj(h.reshape(-1, c.in_features)).reshape(b, c.out_features, -1)
    if c.with_sync:
        s = sync if sync is not None else torch.zeros(b, c.sync_tokens, c.dim)
        v = v + c.sync_weight * c.proj_sync(s.reshape(-1, c.sync_tokens)).reshape(b, c.out_features, -1)
    zero = torch.all(frames == 0, dim=(1, 2, 3, 4)).view(b, 1, 1)
    return torch.where(zero, c.empty_visual_feat.expand(b, -1, -1), v)


@pytest.mark.parametrize("with_sync", [False, True])
def test_forward_matches_reference_and_empty_items(with_sync):
    c = _cond(with_sync)
    f = _frames()
    s = torch.randn(3, 12, 32) * 30 if with_sync else None
    with torch.no_grad():
        out = c(f, s)
        ref = _reference_forward(c, f, s)
    assert out.shape == (3, 128, 32) and out.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)
    assert torch.equal(out[1], c.empty_visual_feat[0])           # all-zero item → empty feature
    assert not torch.allclose(out[0], c.empty_visual_feat[0])
    f2 = f.clone()
    f2[1, 2, 0, 5, 5] = 1                                          # one non-zero pixel is a real video
    with torch.no_grad():
        assert not torch.allclose(c(f2, s)[1], c.empty_visual_feat[0])
        # float 0..255 input equals uint8 input; chunked CLIP equals one call
        c.chunk_frames = 3
        torch.testing.assert_close(c(f.float(), s), out, rtol=0, atol=1e-5)


def test_none_path_equals_all_zero_path_without_running_clip(monkeypatch):
    c = _cond()

    def boom(*a, **k):
        raise AssertionError("CLIP must not run for empty videos")

    monkeypatch.setattr(c, "encode_frames", boom)
    with torch.no_grad():
        a = c(None, batch_size=2)
        b = c(torch.zeros(2, 4, 3, 64, 64))
        s = c(None, torch.randn(2, 12, 32))
    assert torch.equal(a, b) and a.shape == (2, 128, 32)
    assert torch.equal(s, a)  # with no video the sync branch is irrelevant (official order)


def test_sync_add_and_zero_sync_bias_pattern():
    c = _cond()
    f = _frames(2, zero=())
    s = torch.randn(2, 12, 32)
    with torch.no_grad():
        with_s, no_s = c(f, s), c(f)
        c.sync_weight.zero_()
        plain = c(f)
        c.sync_weight.fill_(0.7)
    torch.testing.assert_close(with_s - plain, 0.7 * raw_reshape_project(c.proj_sync, s, 128), rtol=0, atol=1e-5)
    # sync=None means zeros in: proj_sync contributes its bias, laid out by the raw reshape
    bias = c.proj_sync.bias.detach()
    pattern = torch.empty(128, 32)
    for i in range(128):
        for j in range(32):
            pattern[i, j] = bias[(i * 32 + j) % 128]
    torch.testing.assert_close(no_s - plain, 0.7 * pattern.expand(2, -1, -1), rtol=0, atol=1e-5)


def test_input_errors():
    c = _cond()
    with pytest.raises(InputError, match=r"\[B, 4, 3, 64, 64\].*got \(1, 5, 3, 64, 64\)"):
        c(torch.zeros(1, 5, 3, 64, 64))
    with pytest.raises(InputError, match="got \\(1, 4, 3, 32, 32\\)"):
        c(torch.zeros(1, 4, 3, 32, 32))
    with pytest.raises(InputError, match="sync features"):
        c(_frames(1, zero=()), torch.zeros(1, 240, 32))
    with pytest.raises(InputError, match="no sync branch"):
        _cond(with_sync=False)(_frames(1, zero=()), torch.zeros(1, 12, 32))


def test_meta_build_assign_load_and_legacy_position_ids():
    src = _cond()
    sd = dict(src.state_dict())
    sd["visual_encoder_model.vision_model.embeddings.position_ids"] = torch.arange(5).unsqueeze(0)
    assert is_ignored_checkpoint_key(PREFIX + "visual_encoder_model.vision_model.embeddings.position_ids")
    with torch.device("meta"):
        c = CLIPVideoConditioner(SPEC, 32, with_sync=True, clip_config=TINY)
    c.load_state_dict(sd, strict=True, assign=True)
    c.to("cpu")  # no meta buffers left behind
    f = _frames(2)
    with torch.no_grad():
        torch.testing.assert_close(c.eval()(f), src(f), rtol=0, atol=0)


# ---------------------------------------------------------------------------------- tower loading
def _tower_state(c):
    return {k: v.clone() for k, v in c.visual_encoder_model.state_dict().items()}


def _to_openai(sd: dict) -> dict:
    """Inverse of the HF conversion, written key by key (OpenAI CLIP's original names)."""
    out = {"visual.class_embedding": sd["vision_model.embeddings.class_embedding"],
           "visual.positional_embedding": sd["vision_model.embeddings.position_embedding.weight"],
           "visual.conv1.weight": sd["vision_model.embeddings.patch_embedding.weight"],
           "visual.ln_pre.weight": sd["vision_model.pre_layrnorm.weight"],
           "visual.ln_pre.bias": sd["vision_model.pre_layrnorm.bias"],
           "visual.ln_post.weight": sd["vision_model.post_layernorm.weight"],
           "visual.ln_post.bias": sd["vision_model.post_layernorm.bias"],
           "visual.proj": sd["visual_projection.weight"].t().contiguous(),
           "token_embedding.weight": torch.zeros(10, 8), "logit_scale": torch.tensor(1.0)}
    n = len({k.split(".")[3] for k in sd if ".encoder.layers." in k})
    for i in range(n):
        h, o = f"vision_model.encoder.layers.{i}.", f"visual.transformer.resblocks.{i}."
        out[o + "attn.in_proj_weight"] = torch.cat([sd[h + f"self_attn.{p}_proj.weight"] for p in "qkv"])
        out[o + "attn.in_proj_bias"] = torch.cat([sd[h + f"self_attn.{p}_proj.bias"] for p in "qkv"])
        for a, b in (("attn.out_proj", "self_attn.out_proj"), ("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"),
                     ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2")):
            out[o + a + ".weight"] = sd[h + b + ".weight"]
            out[o + a + ".bias"] = sd[h + b + ".bias"]
    return out


def test_load_clip_vision_layouts(tmp_path):
    from safetensors.torch import save_file

    src = _cond(seed=5)
    sd = _tower_state(src)
    f = _frames(1, zero=())
    with torch.no_grad():
        want = src.encode_frames(f[0])

    def check(path, layout):
        c = _cond(seed=9)
        info = load_clip_vision(c, path)
        assert info["layout"] == layout
        with torch.no_grad():
            torch.testing.assert_close(c.encode_frames(f[0]), want, rtol=0, atol=1e-5)
        assert not any(p.requires_grad for p in c.visual_encoder_model.parameters())

    # 1. ComfyUI-style single file with HF keys (+ an unrelated text tower)
    text = {"text_model.embeddings.token_embedding.weight": torch.zeros(4, 4)}
    save_file({**sd, **text}, str(tmp_path / "cv.safetensors"))
    check(tmp_path / "cv.safetensors", "huggingface")
    # 2. An AudioX checkpoint subtree (prefixed keys)
    save_file({PREFIX + "visual_encoder_model." + k: v for k, v in sd.items()}, str(tmp_path / "pref.safetensors"))
    check(tmp_path / "pref.safetensors", "huggingface")
    # 3. HF folder written by save_pretrained
    src.visual_encoder_model.save_pretrained(str(tmp_path / "hf"))
    check(tmp_path / "hf", "huggingface")
    # 4. Original OpenAI layout
    save_file(_to_openai(sd), str(tmp_path / "openai.safetensors"))
    check(tmp_path / "openai.safetensors", "openai")
    # 5. Meta-built tower is materialised on the CPU
    with torch.device("meta"):
        m = CLIPVideoConditioner(SPEC, 32, with_sync=True, clip_config=TINY)
    load_clip_vision(m, tmp_path / "cv.safetensors")
    assert m.visual_encoder_model.vision_model.embeddings.patch_embedding.weight.device.type == "cpu"


def test_load_clip_vision_errors(tmp_path):
    from safetensors.torch import save_file

    other = CLIPVideoConditioner({"video_fps": 2}, 48, clip_config={**TINY, "hidden_size": 48, "patch_size": 16})
    save_file(_tower_state(other), str(tmp_path / "big.safetensors"))
    with pytest.raises(CheckpointError, match=r"found: width 48, patch 16.*expected: width 32, patch 32"):
        load_clip_vision(_cond(), tmp_path / "big.safetensors")
    save_file({"foo.weight": torch.zeros(3)}, str(tmp_path / "junk.safetensors"))
    with pytest.raises(CheckpointError, match="not a CLIP vision checkpoint"):
        load_clip_vision(_cond(), tmp_path / "junk.safetensors")
    _cond().visual_encoder_model.save_pretrained(str(tmp_path / "hf"))
    cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    cfg["hidden_act"] = "gelu"
    (tmp_path / "hf" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="hidden_act 'gelu'"):
        load_clip_vision(_cond(), tmp_path / "hf")
    with pytest.raises(CheckpointError, match="not found"):
        load_clip_vision(_cond(), tmp_path / "missing.safetensors")
