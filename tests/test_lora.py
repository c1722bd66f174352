"""LoRA: parameter counts by hand, base weights untouched, strength 0 == base, applied == merged ==
hand computation, exact unmerge, save/load round trip, clear errors for the wrong model."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from audiox_core.errors import CheckpointError, InputError
from audiox_core.tiny import make_tiny_model
from audiox_core.training import lora as L


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def turbo():
    return make_tiny_model("audiox_turbo", seed=0)


@pytest.fixture(scope="module")
def dit():
    return make_tiny_model("audiox", seed=0)


def inputs(model, b=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    cfg = model.config
    n_ctx = 384 if cfg.backbone.type == "mmdit" else 128 + 128 + 215
    return (torch.randn(b, cfg.io_channels, cfg.latent_length, generator=g), torch.rand(b, generator=g),
            torch.randn(b, n_ctx, cfg.cond_dim, generator=g))


def randomize_(lora, seed=0, scale=0.05):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in lora.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return lora


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------------------------------
# parameter counts, computed by hand from the tiny config (embed 64, MMDiT hidden 256, k = 3,
# MAF dim 32 with 1 fusion layer of FF 128, cond 32)
# ------------------------------------------------------------------------------------------------
def test_parameter_count_by_hand(turbo):
    r = 4
    lin = lambda i, o: r * (i + o)  # noqa: E731
    conv = lambda i, o, k=3: r * (i * k + o)  # noqa: E731
    per_layer = {
        "attention": lin(64, 192) + lin(64, 128) + conv(64, 64),          # qkv, cross_attn.to_kv, linear1
        "feed-forward": conv(64, 256) + conv(256, 64) + conv(64, 256),    # w1, w2, w3
    }
    per_layer["all"] = per_layer["attention"] + per_layer["feed-forward"] + lin(64, 384)  # + adaLN
    maf = {"attention": 2 * lin(32, 32), "feed-forward": lin(32, 128) + lin(128, 32)}
    maf["all"] = maf["attention"] + maf["feed-forward"] + lin(96, 32) + lin(32, 3)      # + gating
    for preset in ("attention", "feed-forward", "all"):
        lo = L.create_lora(turbo, rank=r, targets=preset)
        assert lo.num_parameters() == 2 * per_layer[preset], preset
        lo = L.create_lora(turbo, rank=r, targets=preset, include_maf=True)
        assert lo.num_parameters() == 2 * per_layer[preset] + maf[preset], preset


def test_parameter_count_dit(dit):
    r = 8
    # DiT embed 64, cond 32 (to_kv 32 -> 64), FF inner 256 (GLU proj 64 -> 512)
    attn = r * ((64 + 192) + (64 + 64) + (64 + 64) + (32 + 64) + (64 + 64))
    ff = r * ((64 + 512) + (256 + 64))
    assert L.create_lora(dit, rank=r, targets="attention").num_parameters() == 2 * attn
    assert L.create_lora(dit, rank=r, targets="all").num_parameters() == 2 * (attn + ff)


def test_target_selection(turbo):
    assert L.resolve_targets(turbo, r"ffn\.w2$") == [f"model.model.transformer.layers.{i}.ffn.w2" for i in (0, 1)]
    with pytest.raises(InputError, match="never call"):
        L.resolve_targets(turbo, r"cross_attn\.to_q")
    with pytest.raises(InputError, match="no module"):
        L.resolve_targets(turbo, r"does_not_exist")
    # the backbone alone takes the same canonical paths
    assert L.resolve_targets(turbo.backbone, "attention") == L.resolve_targets(turbo, "attention")


# ------------------------------------------------------------------------------------------------
# numerics
# ------------------------------------------------------------------------------------------------
def test_fresh_lora_is_noop_and_strength_zero_is_exact(turbo):
    x, t, c = inputs(turbo)
    with torch.no_grad():
        base = turbo.velocity(x, t, c)
        lo = randomize_(L.create_lora(turbo, rank=4, targets="all", include_maf=True))
        lo.attach(turbo, strength=0.0)
        try:
            out0 = turbo.velocity(x, t, c)
            lo.strength = 1.0
            out1 = turbo.velocity(x, t, c)
            lo.enabled = False
            out_off = turbo.velocity(x, t, c)
        finally:
            lo.detach()
    assert torch.equal(out0, base) and torch.equal(out_off, base)
    assert (out1 - base).abs().max() > 1e-3
    fresh = L.create_lora(turbo, rank=4).attach(turbo)
    try:
        with torch.no_grad():
            assert torch.allclose(turbo.velocity(x, t, c), base, atol=0, rtol=0)
    finally:
        fresh.detach()


def _np_linear(x, w, b=None):
    y = np.einsum("...i,oi->...o", x, w)
    return y if b is None else y + b


def _np_conv_same(x, w, b=None):
    """channel-last conv with explicit taps: y[t] = Σ_j W[:, :, j] x[t + j - p]."""
    bsz, n, _ = x.shape
    out_c, _, k = w.shape
    p = (k - 1) // 2
    y = np.zeros((bsz, n, out_c))
    for j in range(k):
        for t in range(n):
            s = t + j - p
            if 0 <= s < n:
                y[:, t] += x[:, s] @ w[:, :, j].T
    return y if b is None else y + b


def test_adapter_matches_hand_computation(turbo):
    lo = randomize_(L.create_lora(turbo, rank=3, alpha=6.0, targets=r"layers\.0\.(attn\.qkv|ffn\.w2)$"))
    g = torch.Generator().manual_seed(5)
    lo.attach(turbo, strength=0.5)
    try:
        for path in lo.paths:
            m = L._module_at(turbo, path)
            ad = lo.adapter(path)
            a, bm = ad.lora_A.detach().double().numpy(), ad.lora_B.detach().double().numpy()
            w = m.weight.detach().double().numpy()
            bias = None if m.bias is None else m.bias.detach().double().numpy()
            if ad.kind == "linear":
                x = torch.randn(2, 7, m.in_features, generator=g)
                dw = bm @ a  # [out, in]
                ref = _np_linear(x.double().numpy(), w + 0.5 * (6.0 / 3) * dw, bias)
            else:
                x = torch.randn(2, 7, m.in_channels, generator=g)
                dw = np.einsum("or,rik->oik", bm[:, :, 0], a)  # [out, in, k]
                ref = _np_conv_same(x.double().numpy(), w + 0.5 * (6.0 / 3) * dw, bias)
            with torch.no_grad():
                got = m(x).double().numpy()
            assert np.abs(got - ref).max() < 1e-4, path
    finally:
        lo.detach()


def test_two_loras_merge_unmerge(turbo):
    before = snapshot(turbo)
    x, t, c = inputs(turbo)
    a = randomize_(L.create_lora(turbo, rank=4, targets="all", include_maf=True), seed=1)
    b = randomize_(L.create_lora(turbo, rank=2, targets="attention", seed=3), seed=2)
    a.attach(turbo, strength=0.7)
    b.attach(turbo, strength=-0.4)
    try:
        with torch.no_grad():
            applied = turbo.velocity(x, t, c)
            assert same(snapshot(turbo), before)  # applied: base weights never written
            sd = L.merged_state_dict(turbo)
            assert same(snapshot(turbo), before)
            assert L.merge(turbo) > 0
            merged = turbo.velocity(x, t, c)
            assert all(torch.equal(sd[k], v) for k, v in turbo.state_dict().items())
            assert L.unmerge(turbo) > 0
            assert same(snapshot(turbo), before)  # exactly reversible
            again = turbo.velocity(x, t, c)
    finally:
        b.detach()
        a.detach()
    scale = applied.abs().max()
    assert (merged - applied).abs().max() < 1e-5 * scale
    a.attach(turbo, strength=0.7)
    copy = L.merged_copy(turbo)
    a.detach()
    with torch.no_grad():
        only_a = copy.velocity(x, t, c)
        a.attach(turbo, strength=0.7)
        want = turbo.velocity(x, t, c)
        a.detach()
    assert (only_a - want).abs().max() < 1e-5 * scale and same(snapshot(turbo), before)
    assert torch.equal(again, applied)
    assert not any(L._SLOTS in m.__dict__ for m in turbo.modules())


def test_training_touches_only_lora(turbo):
    before = snapshot(turbo)
    x, t, c = inputs(turbo)
    lo = L.create_lora(turbo, rank=4, targets="all", include_maf=True, dropout=0.1).attach(turbo)
    turbo.backbone.gradient_checkpointing = True
    turbo.train()
    opt = torch.optim.AdamW(lo.parameters(), lr=1e-2)
    try:
        for _ in range(2):
            loss = turbo.velocity(x, t, turbo.fuse(c[:, :128], c[:, 128:256], c[:, 256:])).pow(2).mean()
            loss.backward()
            opt.step()
            opt.zero_grad()
    finally:
        turbo.eval()
        turbo.backbone.gradient_checkpointing = False
        lo.detach()
    assert same(snapshot(turbo), before)
    assert all(p.grad is None for p in turbo.parameters())
    assert any(ad.lora_B.abs().sum() > 0 for _, ad in lo.items())


def test_dit_prepared_cache_sees_lora(dit):
    x, t, c = inputs(dit)
    lo = randomize_(L.create_lora(dit, rank=4, targets=r"cross_attn\.to_kv$")).attach(dit)
    try:
        with torch.no_grad():
            direct = dit.velocity(x, t, c)
            cached = dit.velocity(x, t, None, cond_cache=dit.backbone.prepare(c))
            lo.strength = 0
            base = dit.velocity(x, t, c)
    finally:
        lo.detach()
    assert torch.equal(direct, cached)
    assert (direct - base).abs().max() > 1e-4


# ------------------------------------------------------------------------------------------------
# files
# ------------------------------------------------------------------------------------------------
def test_save_load_round_trip(turbo, tmp_path):
    x, t, c = inputs(turbo)
    lo = randomize_(L.create_lora(turbo, rank=4, alpha=2.0, targets="all", include_maf=True))
    path = lo.save(tmp_path / "my.safetensors", steps=123, dataset_hash="abc")
    with torch.no_grad():
        lo.attach(turbo, strength=0.8)
        want = turbo.velocity(x, t, c)
        lo.detach()
    from audiox_core.weights import SafetensorsFile
    f = SafetensorsFile(path)
    meta = json.loads(f.metadata["audiox_lora"])
    assert f.metadata["audiox_lora_format"] == str(L.LORA_FORMAT_VERSION)
    assert meta["variant"] == "audiox_turbo" and meta["rank"] == 4 and meta["alpha"] == 2.0
    assert meta["steps"] == 123 and meta["dataset_hash"] == "abc" and meta["targets"] == "all"
    assert meta["base_fingerprint"] == L.base_fingerprint(turbo)["id"]
    assert "model.model.transformer.layers.0.ffn.w1.lora_A.weight" in f.keys()
    assert f.shapes()["model.model.transformer.layers.0.ffn.w1.lora_A.weight"] == (4, 64, 3)
    assert f.shapes()["model.model.transformer.layers.0.ffn.w1.lora_B.weight"] == (256, 4, 1)
    assert float(f.read("model.model.transformer.layers.0.ffn.w1.alpha")) == 2.0

    other = make_tiny_model("audiox_turbo", seed=0)  # same weights, another instance
    lo2 = L.load_lora(path, other, strength=0.8)
    try:
        with torch.no_grad():
            got = other.velocity(x, t, c)
    finally:
        lo2.detach()
    assert torch.equal(got, want)
    assert lo2.paths == lo.paths and lo2.num_parameters() == lo.num_parameters()


def test_wrong_model_is_rejected(turbo, dit, tmp_path):
    path = randomize_(L.create_lora(turbo, rank=2)).save(tmp_path / "t.safetensors")
    with pytest.raises(CheckpointError, match="audiox_turbo.*audiox"):
        L.load_lora(path, dit)
    narrow = make_tiny_model("audiox_maf_mmdit", embed_dim=32)
    with pytest.raises(CheckpointError, match="another model|trained for"):
        L.load_lora(path, narrow)
    # same architecture, other weights
    reseeded = make_tiny_model("audiox_turbo", seed=7)
    with pytest.raises(CheckpointError, match="other base weights"):
        L.load_lora(path, reseeded)
    lo = L.load_lora(path, reseeded, allow_other_base=True)
    lo.detach()
    # same variant, different shapes (the variant check passes, the shape check fails)
    wide = make_tiny_model("audiox_turbo", embed_dim=32)
    with pytest.raises(CheckpointError, match="another model"):
        L.load_lora(path, wide)
    bad = tmp_path / "notalora.safetensors"
    from audiox_core.weights import save_safetensors
    save_safetensors({"w": torch.zeros(2)}, bad)
    with pytest.raises(CheckpointError, match="not a LoRA"):
        L.load_lora(bad, turbo)


def test_attach_errors(turbo):
    a = L.create_lora(turbo, rank=2).attach(turbo)
    try:
        L.merge(turbo)
        b = L.create_lora(turbo, rank=2)
        with pytest.raises(InputError, match="merged"):
            b.attach(turbo)
        with pytest.raises(InputError, match="unmerge"):
            a.detach()
        L.unmerge(turbo)
    finally:
        a.detach()


def test_weight_patches_give_the_hooked_model(turbo):
    """``weight_patches`` (what ComfyUI's ModelPatcher applies at load) patched into copies of the
    parts by ``W + strength·(alpha/r)·up@down`` compute what the attached LoRAs compute."""
    import copy
    from audiox_core.loaded_model import part_modules
    x, t, c = inputs(turbo)
    a = randomize_(L.create_lora(turbo, rank=4, targets="all", include_maf=True), seed=1)
    b = randomize_(L.create_lora(turbo, rank=2, targets="attention", seed=3), seed=2)
    patches = L.weight_patches(((a, 0.7), (b, -0.4)))
    assert set(patches) == {"backbone", "maf"}
    patched = copy.deepcopy(turbo)
    parts = part_modules(patched)
    n = 0
    with torch.no_grad():
        for part, keyed in patches.items():
            weights = dict(parts[part].named_parameters())
            for key, entries in keyed.items():
                w = weights[key]  # KeyError: a patch key that is not the part's weight
                for up, down, alpha, strength in entries:
                    w += (strength * alpha / up.shape[1] * (up @ down.flatten(1))).reshape(w.shape)
                    n += 1
        assert n == len(a.paths) + len(b.paths)
        a.attach(turbo, strength=0.7)
        b.attach(turbo, strength=-0.4)
        try:
            want = turbo.velocity(x, t, c)
        finally:
            b.detach()
            a.detach()
        got = patched.velocity(x, t, c)
    assert (got - want).abs().max() < 1e-5 * want.abs().max()
