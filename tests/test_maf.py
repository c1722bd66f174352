"""MAF fusion block: keys vs the manifests, math vs hand computations and torch's own modules."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from audiox_core.config import MAFConfig
from audiox_core.errors import InputError
from audiox_core.models.maf import MAF
from tests.conftest import read_manifest, shape_str

TINY = MAFConfig(dim=16, num_experts_per_modality=4, num_heads=2, num_fusion_layers=2)


def _randomize(m: nn.Module, gates=(0.3, -0.7, 1.1)) -> nn.Module:
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        m.bypass_gate_v.fill_(gates[0])
        m.bypass_gate_t.fill_(gates[1])
        m.bypass_gate_a.fill_(gates[2])
    return m


def _inputs(b=2, nv=5, nt=7, na=3, d=16):
    g = torch.Generator().manual_seed(2)
    v, t, a = (torch.randn(b, n, d, generator=g) for n in (nv, nt, na))
    t[:, 4:] = 0  # zero-padded rows, like T5 padding
    return v, t, a


class RefMAF(nn.Module):
    """The official structure, written with torch's own modules (same state-dict keys)."""

    def __init__(self, cfg: MAFConfig):
        super().__init__()
        d, e = cfg.dim, cfg.num_experts_per_modality
        self.gating_network = nn.Sequential(nn.Linear(3 * d, d), nn.GELU(), nn.Linear(d, 3), nn.Sigmoid())
        self.unified_experts = nn.Parameter(torch.zeros(3 * e, d))
        self.cross_attn = nn.MultiheadAttention(d, cfg.num_heads, batch_first=True)
        self.norm1 = nn.LayerNorm(d)
        layer = nn.TransformerEncoderLayer(d, cfg.num_heads, 4 * d, activation=F.gelu, batch_first=True,
                                           norm_first=True)
        self.fusion_transformer = nn.TransformerEncoder(layer, cfg.num_fusion_layers, enable_nested_tensor=False)
        self.norm_v2, self.norm_t2, self.norm_a2 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.bypass_gate_v = nn.Parameter(torch.tensor(0.0))
        self.bypass_gate_t = nn.Parameter(torch.tensor(0.0))
        self.bypass_gate_a = nn.Parameter(torch.tensor(0.0))

    def run(self, v, t, a, scale=(1.0, 1.0, 1.0)):
        gates = self.gating_network(torch.cat([v.mean(1), t.mean(1), a.mean(1)], 1))
        parts = [x * (gates[:, i:i + 1] * s).unsqueeze(-1) for i, (x, s) in enumerate(zip((v, t, a), scale)) if s != 0]
        ctx = torch.cat(parts, 1)
        ex = self.unified_experts.unsqueeze(0).expand(v.shape[0], -1, -1)
        u = self.norm1(ex + self.cross_attn(ex, ctx, ctx)[0])
        f = self.fusion_transformer(u)
        e = f.shape[1] // 3
        outs = []
        for i, (x, gate, norm) in enumerate(zip((v, t, a), (self.bypass_gate_v, self.bypass_gate_t, self.bypass_gate_a),
                                                (self.norm_v2, self.norm_t2, self.norm_a2))):
            outs.append(x + torch.sigmoid(gate) * norm(f[:, i * e:(i + 1) * e].mean(1)).unsqueeze(1))
        return outs, gates, f


def _pair(cfg=TINY, gates=(0.3, -0.7, 1.1)):
    m = _randomize(MAF(cfg), gates).eval()
    r = RefMAF(cfg).eval()
    r.load_state_dict(m.state_dict(), strict=True)
    return m, r


# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["audiox_maf", "audiox_maf_mmdit", "audiox_turbo"])
def test_full_size_keys_match_manifest(reference_dir, variant):
    path = reference_dir / "manifests" / f"{variant}.tsv"
    if not path.exists():
        pytest.skip(f"{path} missing")
    rows = [(k[len("maf_block."):], s) for k, s in read_manifest(path) if k.startswith("maf_block.")]
    n_layers = len({k.split(".")[2] for k, _ in rows if k.startswith("fusion_transformer.layers.")})
    n_exp = int(dict(rows)["unified_experts"].split("x")[0]) // 3
    with torch.device("meta"):
        m = MAF(MAFConfig(768, n_exp, 24, n_layers))
    got = [(k, shape_str(v.shape)) for k, v in m.state_dict().items()]
    assert got == rows
    assert sum(p.numel() for p in m.parameters()) == 60_991_494  # the official MAF block's parameter count (E 64, 8 layers)


def test_same_keys_as_torch_modules():
    assert list(MAF(TINY).state_dict()) == list(RefMAF(TINY).state_dict())


def test_gates_match_hand_computation():
    m, _ = _pair()
    v, t, a = _inputs()
    m(v, t, a)
    sd = {k: p.detach().double().numpy() for k, p in m.state_dict().items()}
    for b in range(v.shape[0]):
        means = []
        for x in (v, t, a):  # token means with an explicit loop (padded rows included)
            acc = np.zeros(16)
            for n in range(x.shape[1]):
                acc += x[b, n].double().numpy()
            means.append(acc / x.shape[1])
        z = np.concatenate(means)
        h = sd["gating_network.0.weight"] @ z + sd["gating_network.0.bias"]
        h = np.array([0.5 * x * (1 + math.erf(x / math.sqrt(2))) for x in h])  # exact GELU
        o = sd["gating_network.2.weight"] @ h + sd["gating_network.2.bias"]
        want = 1 / (1 + np.exp(-o))
        np.testing.assert_allclose(m.last_gates[b].double().numpy(), want, rtol=0, atol=1e-6)
    assert m.last_gates.shape == (2, 3) and not m.last_gates.requires_grad


def test_forward_matches_torch_modules():
    m, r = _pair()
    v, t, a = _inputs()
    with torch.enable_grad():  # torch's reference (non-fused) path
        got = m(v, t, a)
        want, _, _ = r.run(v, t, a)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=0, atol=1e-6)
    with torch.no_grad():  # torch's fused inference fast path: equal to rounding
        want2, _, _ = r.run(v, t, a)
        for g, w in zip(m(v, t, a), want2):
            torch.testing.assert_close(g, w, rtol=0, atol=1e-5)


def test_bypass_formula_and_closed_gate():
    m, r = _pair(gates=(0.5, -2.0, 3.0))
    v, t, a = _inputs()
    out = m(v, t, a)
    _, _, fused = r.run(v, t, a)
    e = TINY.num_experts_per_modality
    for i, (x, o, g, norm) in enumerate(zip((v, t, a), out, (0.5, -2.0, 3.0), (r.norm_v2, r.norm_t2, r.norm_a2))):
        delta = o - x
        assert torch.allclose(delta, delta[:, :1].expand_as(delta), atol=1e-6)  # one vector for all tokens
        pooled = fused[:, i * e:(i + 1) * e].mean(1)
        want = (1 / (1 + math.exp(-g))) * norm(pooled)
        torch.testing.assert_close(delta[:, 0], want, rtol=0, atol=1e-5)
    # Gates at the init value −10: the block is (almost) the identity on its inputs.
    m10, _ = _pair(gates=(-10.0, -10.0, -10.0))
    for x, o in zip((v, t, a), m10(v, t, a)):
        assert (o - x).abs().max() < 1e-4 * 3  # sigmoid(−10) ≈ 4.5e-5 times a LayerNorm output
        assert not torch.equal(o, x)


def test_modality_scale_one_is_bit_identical():
    m, _ = _pair()
    v, t, a = _inputs()
    base = m(v, t, a)
    for s in ((1, 1, 1), (1.0, 1.0, 1.0)):
        for x, y in zip(base, m(v, t, a, modality_scale=s)):
            assert torch.equal(x, y)


@pytest.mark.parametrize("scale", [(1.0, 0.0, 1.0), (0.0, 0.5, 2.0), (1.0, 1.0, 0.0)])
def test_modality_scale_scales_and_removes(scale):
    m, r = _pair()
    v, t, a = _inputs()
    with torch.enable_grad():
        got = m(v, t, a, modality_scale=scale)
        want, _, _ = r.run(v, t, a, scale)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=0, atol=1e-6)
    if 0.0 in scale:
        # Removal is not the same as zero-weighting: zero tokens still attend via the k/v biases.
        tiny = tuple(1e-30 if s == 0 else s for s in scale)
        assert any(not torch.allclose(x, y, atol=1e-7) for x, y in zip(got, m(v, t, a, modality_scale=tiny)))


def test_scale_zero_makes_output_independent_of_that_modality_context():
    """With the text slot removed, changing the text tokens only acts through the gate network."""
    m, _ = _pair()
    v, t, a = _inputs()
    out1 = m(v, t, a, modality_scale=(1, 0, 1))
    g1 = m.last_gates.clone()
    # Change t but keep its mean (so the gates are unchanged): add a zero-mean perturbation.
    p = torch.randn_like(t)
    p = p - p.mean(1, keepdim=True)
    out2 = m(v, t + p, a, modality_scale=(1, 0, 1))
    torch.testing.assert_close(m.last_gates, g1, rtol=0, atol=1e-6)
    torch.testing.assert_close(out1[0], out2[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(out1[2], out2[2], rtol=0, atol=1e-5)
    out3 = m(v, t + p, a)  # without the switch, the same perturbation changes everything
    assert not torch.allclose(out3[0], m(v, t, a)[0], atol=1e-5)


def test_dropout_only_in_train_mode():
    m, _ = _pair(gates=(0.0, 0.0, 0.0))
    v, t, a = _inputs()
    e1, e2 = m(v, t, a), m(v, t, a)
    assert all(torch.equal(x, y) for x, y in zip(e1, e2))
    m.train()
    torch.manual_seed(3)
    t1 = m(v, t, a)
    torch.manual_seed(4)
    t2 = m(v, t, a)
    assert not torch.allclose(t1[0], e1[0], atol=1e-4)
    assert not torch.allclose(t1[0], t2[0], atol=1e-4)
    assert any(isinstance(mod, nn.Dropout) and mod.p == 0.1 for mod in m.modules())


def test_input_errors():
    m = MAF(TINY)
    v, t, a = _inputs()
    with pytest.raises(InputError, match=r"\[B, N, 16\]"):
        m(v[..., :8], t, a)
    with pytest.raises(InputError, match="batch"):
        m(v, t[:1], a)
    with pytest.raises(InputError, match="3 entries"):
        m(v, t, a, modality_scale=(1, 1))
    with pytest.raises(InputError, match=">= 0"):
        m(v, t, a, modality_scale=(1, -1, 1))
    with pytest.raises(InputError, match="all three"):
        m(v, t, a, modality_scale=(0, 0, 0))


def test_builds_on_meta_and_loads_with_assign():
    with torch.device("meta"):
        m = MAF(TINY)
    src = _randomize(MAF(TINY))
    m.load_state_dict(src.state_dict(), assign=True)
    v, t, a = _inputs()
    for x, y in zip(m.eval()(v, t, a), src.eval()(v, t, a)):
        assert torch.equal(x, y)
