"""Synchformer visual extractor: structure, windowing, numerics against hand references, loading."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
from torch import nn

from audiox_core.conditioning.synchformer import (
    DividedSpaceTimeBlock, Synchformer, SynchformerConfig, preprocess, segment_starts)
from audiox_core.errors import CheckpointError, InputError, Interrupted
from conftest import read_manifest, shape_str

# 32x32 images, 16x16 patches (2x2 grid), 16-frame windows -> 8 temporal tokens, like the official.
TINY = SynchformerConfig(embed_dim=16, depth=2, num_heads=2, patch_size=16, image_size=32)


def tiny_model(seed: int = 0, cfg: SynchformerConfig = TINY) -> Synchformer:
    torch.manual_seed(seed)
    m = Synchformer(cfg).eval()
    with torch.no_grad():  # non-trivial weights everywhere (the official init zeroes some)
        for name, p in m.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            else:
                p.copy_(0.3 * torch.randn_like(p))
    return m


# ---------------------------------------------------------------------------------------------
# Structure
# ---------------------------------------------------------------------------------------------
def test_full_size_state_dict_matches_manifest(reference_dir):
    rows = read_manifest(reference_dir / "manifests" / "synchformer.tsv")
    with torch.device("meta"):
        m = Synchformer()
    got = [(k, shape_str(v.shape)) for k, v in m.state_dict().items()]
    assert got == rows
    assert sum(v.numel() for v in m.state_dict().values()) == 122_440_704


def test_meta_construction_has_no_real_storage():
    with torch.device("meta"):
        m = Synchformer()
    assert all(p.is_meta for p in m.parameters())


# ---------------------------------------------------------------------------------------------
# Windowing
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("T", [250, 16, 17, 40, 23, 24])
def test_segment_starts_match_explicit_enumeration(T):
    explicit = []
    s = 0
    while s + 16 <= T:
        explicit.append(s)
        s += 8
    assert segment_starts(T, 16, 8).tolist() == explicit
    assert len(explicit) == (T - 16) // 8 + 1
    if T == 250:
        assert len(explicit) == 30 and explicit[-1] == 232


def test_too_few_frames_is_an_input_error():
    with pytest.raises(InputError, match="at least 16 frames"):
        segment_starts(15, 16, 8)
    m = tiny_model()
    with pytest.raises(InputError, match="at least 16 frames"):
        m.encode(torch.zeros(1, 15, 3, 32, 32))


@pytest.mark.parametrize("T", [16, 17, 40])
def test_encode_windows_are_the_right_frames(T):
    m = tiny_model()
    torch.manual_seed(1)
    x = torch.randn(2, T, 3, 32, 32)
    out = m.encode(x, batch_segments=2)
    S = (T - 16) // 8 + 1
    assert out.shape == (2, S * 8, 16)
    with torch.no_grad():
        for b in range(2):
            for i in range(S):
                win = x[b, 8 * i:8 * i + 16].permute(1, 0, 2, 3)[None]  # [1, 3, 16, H, W]
                ref = m.vfeat_extractor(win)[0]
                torch.testing.assert_close(out[b, 8 * i:8 * i + 8], ref, rtol=1e-5, atol=1e-5)


def test_encode_batching_and_progress_and_interrupt():
    m = tiny_model()
    x = torch.randn(1, 40, 3, 32, 32)  # 4 windows
    calls = []
    a = m.encode(x, batch_segments=3, callback=lambda s, t, info: calls.append((s, t, info["stage"])))
    b = m.encode(x[0], batch_segments=1)  # [T, 3, H, W] means B = 1
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert calls == [(3, 4, "synchformer"), (4, 4, "synchformer")]

    def stop(step, total, info):
        raise Interrupted("stop")
    with pytest.raises(Interrupted):
        m.encode(x, batch_segments=1, callback=stop)


def test_encode_rejects_unprocessed_input():
    m = tiny_model()
    with pytest.raises(InputError, match="preprocess"):
        m.encode(torch.zeros(1, 16, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(InputError, match="32x32"):
        m.encode(torch.zeros(1, 16, 3, 48, 32))
    with pytest.raises(InputError, match="segment"):
        m.encode(torch.zeros(1, 16, 3, 32, 32), segment=8)


def test_official_style_forward_matches_encode():
    m = tiny_model()
    x = torch.randn(1, 24, 3, 32, 32)
    segs = torch.stack([x[:, 0:16], x[:, 8:24]], dim=1)  # [B, S, 16, 3, H, W], official layout
    with torch.no_grad():
        y = m(segs)
    assert y.shape == (1, 2, 8, 16)
    torch.testing.assert_close(y.reshape(1, 16, 16), m.encode(x), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Numerics against hand-written references (float64 numpy, explicit loops)
# ---------------------------------------------------------------------------------------------
def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def _ln(z, w, b, eps=1e-6):
    mu = z.mean(-1, keepdims=True)
    var = ((z - mu) ** 2).mean(-1, keepdims=True)
    return (z - mu) / np.sqrt(var + eps) * w + b


def _gelu(z):
    return 0.5 * z * (1 + np.vectorize(math.erf)(z / math.sqrt(2)))


def _divided_ref(z, attn, axis, t, n, heads):
    """Loop over every token: which keys it sees is spelled out from the (frame, position) grid."""
    L, D = z.shape
    dh = D // heads
    qkv = z @ _np(attn.qkv.weight).T + _np(attn.qkv.bias)
    q, k, v = qkv[:, :D], qkv[:, D:2 * D], qkv[:, 2 * D:]
    out = np.zeros((L, D))
    for i in range(L):
        if i == 0:
            keys = list(range(L))  # CLS sees everything
        else:
            f, s = divmod(i - 1, n)
            if axis == "time":
                keys = [0] + [1 + ff * n + s for ff in range(t)]
            else:
                keys = [0] + [1 + f * n + ss for ss in range(n)]
        for h in range(heads):
            sl = slice(h * dh, (h + 1) * dh)
            scores = np.array([(q[i, sl] / math.sqrt(dh)) @ k[j, sl] for j in keys])
            w = np.exp(scores - scores.max())
            w /= w.sum()
            out[i, sl] = sum(wj * v[j, sl] for wj, j in zip(w, keys))
    return out @ _np(attn.proj.weight).T + _np(attn.proj.bias)


def _block_ref(x, blk, t, n, heads):
    p = {k: _np(v) for k, v in blk.state_dict().items()}
    x = x + _divided_ref(_ln(x, p["norm3.weight"], p["norm3.bias"]), blk.timeattn, "time", t, n, heads)
    x = x + _divided_ref(_ln(x, p["norm1.weight"], p["norm1.bias"]), blk.attn, "space", t, n, heads)
    h = _gelu(_ln(x, p["norm2.weight"], p["norm2.bias"]) @ p["mlp.fc1.weight"].T + p["mlp.fc1.bias"])
    return x + h @ p["mlp.fc2.weight"].T + p["mlp.fc2.bias"]


def test_divided_space_time_block_against_loops():
    cfg = SynchformerConfig(embed_dim=12, depth=1, num_heads=3, patch_size=8, image_size=24,
                            segment_frames=8)  # t = 4 frames, n = 9 positions
    t, n = cfg.frames_out, cfg.num_patches
    torch.manual_seed(3)
    blk = DividedSpaceTimeBlock(cfg)
    with torch.no_grad():
        for name, prm in blk.named_parameters():
            prm.copy_((1 + 0.2 * torch.randn_like(prm)) if "norm" in name and name.endswith("weight")
                      else 0.4 * torch.randn_like(prm))
    x = torch.randn(2, 1 + t * n, 12)
    with torch.no_grad():
        got = blk(x, t, n)
    for b in range(2):
        ref = _block_ref(_np(x[b]), blk, t, n, 3)
        np.testing.assert_allclose(_np(got[b]), ref, rtol=1e-4, atol=1e-5)


def test_token_embedding_against_loops():
    m = tiny_model(seed=5)
    mf = m.vfeat_extractor
    x = torch.randn(1, 3, 16, 32, 32)
    with torch.no_grad():
        got = _np(mf.tokens(x)[0])
    w, bias = _np(mf.patch_embed_3d.proj.weight), _np(mf.patch_embed_3d.proj.bias)
    pos, temp, cls = _np(mf.pos_embed[0]), _np(mf.temp_embed[0]), _np(mf.cls_token[0, 0])
    xs = _np(x[0])
    np.testing.assert_allclose(got[0], cls + pos[0], rtol=1e-6, atol=1e-6)
    for f in range(8):
        for r in range(2):
            for c in range(2):
                cube = xs[:, 2 * f:2 * f + 2, 16 * r:16 * r + 16, 16 * c:16 * c + 16]
                emb = np.tensordot(w, cube, axes=([1, 2, 3, 4], [0, 1, 2, 3])) + bias
                s = r * 2 + c
                np.testing.assert_allclose(got[1 + f * 4 + s], emb + pos[1 + s] + temp[f], rtol=1e-4, atol=1e-4)


def test_spatial_pool_equals_torch_transformer_encoder_layer():
    m = tiny_model(seed=7)
    pool = m.vfeat_extractor.spatial_attn_agg
    ref = nn.TransformerEncoderLayer(16, 2, 64, dropout=0.0, activation=nn.GELU(), batch_first=True,
                                     layer_norm_eps=1e-6, norm_first=True).eval()
    sd = {k: v for k, v in pool.state_dict().items() if k != "cls_token"}
    ref.load_state_dict(sd, strict=True)
    x = torch.randn(5, 4, 16)
    with torch.no_grad():
        want = ref(torch.cat((pool.cls_token.expand(5, -1, -1), x), dim=1))[:, 0]
        got = pool(x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_forward_composes_blocks_norm_and_pool():
    m = tiny_model(seed=9)
    mf = m.vfeat_extractor
    x = torch.randn(1, 3, 16, 32, 32)
    with torch.no_grad():
        z = _np(mf.tokens(x)[0])
        for blk in mf.blocks:
            z = _block_ref(z, blk, 8, 4, 2)
        z = _ln(z[1:], _np(mf.norm.weight), _np(mf.norm.bias))
        frames = torch.from_numpy(z).float().view(8, 4, 16)
        want = mf.spatial_attn_agg(frames)
        got = mf(x)[0]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_bfloat16_is_close_to_float32():
    m = tiny_model()
    x = torch.randn(1, 24, 3, 32, 32)
    ref = m.encode(x)
    mb = tiny_model().to(torch.bfloat16)
    got = mb.encode(x)
    assert got.dtype == torch.bfloat16
    assert (got.float() - ref).abs().max() < 0.05 * ref.abs().max()


# ---------------------------------------------------------------------------------------------
# Preprocessing
# ---------------------------------------------------------------------------------------------
def test_preprocess_uint8_and_float_agree():
    torch.manual_seed(0)
    u8 = torch.randint(0, 256, (5, 3, 90, 160), dtype=torch.uint8)
    f = u8.float() / 255.0
    for mode in ("crop", "squash"):
        a = preprocess(u8, resize_mode=mode)
        b = preprocess(f, resize_mode=mode)
        assert a.shape == (5, 3, 224, 224)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
        assert a.min() >= -1 and a.max() <= 1


def test_preprocess_shapes_and_crop_offsets():
    x = torch.rand(2, 4, 3, 224, 448)  # short side already 224: no resampling, centre crop only
    y = preprocess(x)
    assert y.shape == (2, 4, 3, 224, 224)
    torch.testing.assert_close(y, (x[..., 112:336] - 0.5) / 0.5)
    sq = torch.rand(3, 3, 224, 224)
    torch.testing.assert_close(preprocess(sq, resize_mode="squash"), sq * 2 - 1)
    torch.testing.assert_close(preprocess(sq), sq * 2 - 1)
    tall = preprocess(torch.rand(1, 3, 300, 100))  # resized to 672x224, crop rows 224..448
    assert tall.shape == (1, 3, 224, 224)


def test_preprocess_crop_keeps_aspect_squash_does_not():
    img = torch.zeros(1, 3, 100, 200)
    img[..., :, 50:150] = 1.0  # a 100x100 white square in the middle of a 1:2 frame
    crop = preprocess(img)[0, 0]
    squash = preprocess(img, resize_mode="squash")[0, 0]
    # crop: the centre crop is exactly the square, so it is white edge to edge
    assert crop[112, 5] > 0.9 and crop[112, 218] > 0.9
    # squash: the square becomes a 224-tall, 112-wide bar, the sides stay black
    assert squash[112, 5] < -0.9 and squash[112, 112] > 0.9


def test_preprocess_rejects_bad_input():
    with pytest.raises(InputError):
        preprocess(torch.zeros(4, 1, 32, 32))
    with pytest.raises(InputError, match="uint8"):
        preprocess(torch.zeros(4, 3, 32, 32, dtype=torch.int32))
    with pytest.raises(InputError, match="resize_mode"):
        preprocess(torch.zeros(4, 3, 32, 32), resize_mode="stretch")


def test_encode_raw_equals_preprocess_then_encode():
    m = tiny_model()
    raw = torch.randint(0, 256, (1, 24, 3, 40, 60), dtype=torch.uint8)
    want = m.encode(preprocess(raw, size=32))
    got = m.encode_raw(raw, batch_segments=1)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------
def _official_like_file(tmp_path, m, extra=True, name="synchformer_state_dict.pth"):
    sd = dict(m.state_dict())
    if extra:  # the official file also carries the audio branch and the sync transformer
        sd["afeat_extractor.blocks.0.weight"] = torch.randn(3, 3)
        sd["transformer.pos_emb"] = torch.randn(2)
    path = tmp_path / name
    torch.save(sd, path)
    return path


def test_from_file_round_trip_plain_dict_with_extra_keys(tmp_path):
    m = tiny_model()
    path = _official_like_file(tmp_path, m)
    loaded = Synchformer.from_file(path, cfg=TINY)
    for (k, a), (k2, b) in zip(m.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    assert not any(p.requires_grad for p in loaded.parameters())
    x = torch.randn(1, 16, 3, 32, 32)
    torch.testing.assert_close(loaded.encode(x), m.encode(x))
    bf = Synchformer.from_file(path, cfg=TINY, dtype=torch.bfloat16)
    assert bf.dtype == torch.bfloat16 and bf.device.type == "cpu"


def test_from_file_safetensors(tmp_path):
    from safetensors.torch import save_file
    m = tiny_model()
    path = tmp_path / "sync.safetensors"
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(path))
    loaded = Synchformer.from_file(path, cfg=TINY)
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), loaded.state_dict().values()))


def test_from_file_truncated_and_empty(tmp_path):
    path = _official_like_file(tmp_path, tiny_model())
    data = path.read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.pth.*could not be read"):
        Synchformer.from_file(cut, cfg=TINY)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.pth is empty"):
        Synchformer.from_file(empty, cfg=TINY)
    with pytest.raises(CheckpointError, match="does not exist"):
        Synchformer.from_file(tmp_path / "nope.pth", cfg=TINY)


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):  # unpickling this would create a file
        return (open, (self.target, "w"))


def test_from_file_refuses_code_execution(tmp_path):
    marker = tmp_path / "pwned.txt"
    path = tmp_path / "evil.pth"
    torch.save({"vfeat_extractor.cls_token": _Evil(str(marker))}, path)
    with pytest.raises(CheckpointError, match="refused to load .*evil.pth"):
        Synchformer.from_file(path, cfg=TINY)
    assert not marker.exists()


def test_from_file_wrong_family_says_what_it_is(tmp_path):
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": {
        "model.model.transformer.layers.0.self_attn.to_qkv.weight": torch.zeros(4, 4),
        "conditioner.conditioners.video_prompt.proj_sync.weight": torch.zeros(2, 2)}}, path)
    with pytest.raises(CheckpointError) as e:
        Synchformer.from_file(path, cfg=TINY)
    msg = str(e.value)
    assert "model.ckpt" in msg and "not a Synchformer" in msg and "AudioX model checkpoint" in msg


def test_from_file_mismatch_is_summarised(tmp_path):
    m = tiny_model()
    sd = dict(m.state_dict())
    for i in range(40):  # many extra vfeat keys: the message must stay short
        sd[f"vfeat_extractor.extra_{i}"] = torch.zeros(1)
    del sd["vfeat_extractor.norm.bias"]
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError) as e:
        Synchformer.from_file(path, cfg=TINY)
    msg = str(e.value)
    assert "missing keys: 1 (vfeat_extractor.norm.bias)" in msg and "unexpected keys: 40" in msg
    assert len(msg) < 800
    # a tiny file against the full-size model: mis-shaped keys are listed with both shapes
    good = _official_like_file(tmp_path, m, name="tiny.pth")
    with pytest.raises(CheckpointError, match=r"mis-shaped keys: \d+ .*\[1, 5, 16\] != \[1, 197, 768\]"):
        Synchformer.from_file(good)


def test_from_file_not_a_dict(tmp_path):
    path = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), path)
    with pytest.raises(CheckpointError, match="not a state dict"):
        Synchformer.from_file(path, cfg=TINY)
    assert not os.path.exists(tmp_path / "pwned.txt")
