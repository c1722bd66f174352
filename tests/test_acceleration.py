"""Inference options of audiox_core.acceleration: torch.compile of the backbone (same output as
eager, compiled once per input shape, switchable), fp8 e4m3 weight storage (close to the bf16
model, half its bytes), and the low-VRAM placement helper."""
from __future__ import annotations

import pytest
import torch

from audiox_core import acceleration as A
from audiox_core.tiny import make_tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")


def _inputs(m, batch=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, m.config.io_channels, m.latent_length, generator=g)
    t = torch.rand(batch, generator=g)
    ctx = torch.randn(batch, 384, m.config.backbone.cond_token_dim, generator=g)
    return x, t, ctx


def test_compiled_backbone_matches_eager_and_compiles_once_per_shape():
    m = make_tiny_model("audiox_turbo", seed=0)
    bb = m.backbone
    graphs = []

    def counting_backend(gm, example_inputs):  # a torch.compile backend that records each compile
        graphs.append(tuple(tuple(t.shape) for t in example_inputs if torch.is_tensor(t)))
        return gm.forward

    x1, t1, c1 = _inputs(m, 1)
    x2, t2, c2 = _inputs(m, 2, seed=1)
    with torch.no_grad():
        want1, want2 = bb(x1, t1, c1), bb(x2, t2, c2)
        assert not A.backbone_compiled(m)
        A.compile_backbone(m, backend=counting_backend)
        assert A.backbone_compiled(m)
        got1 = bb(x1, t1, c1)
        n1 = len(graphs)
        assert n1 >= 1
        torch.testing.assert_close(got1, want1, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(bb(x1, t1 * 0.5, c1), bb.__class__.forward(bb, x1, t1 * 0.5, c1),
                                   rtol=1e-5, atol=1e-6)
        assert len(graphs) == n1                      # same shapes: the cached graph, no recompile
        torch.testing.assert_close(bb(x2, t2, c2), want2, rtol=1e-5, atol=1e-6)
        n2 = len(graphs)
        assert n2 > n1                                # a new batch size: compiled for that shape
        A.compile_backbone(m, False)
        assert not A.backbone_compiled(m)
        torch.testing.assert_close(bb(x1, t1, c1), want1, rtol=0, atol=0)
        A.compile_backbone(m, backend=counting_backend)  # on again: the cached compiled forward
        bb(x2, t2, c2)
        assert len(graphs) == n2


def test_static_turbo_loop_is_one_graph_with_the_eager_numbers(tmp_path):
    """The whole Turbo loop traced as one graph (fullgraph: no break, so CUDA graphs can capture
    it), compiled once per shape, bit-identical latents, progress for every step; inpainting keeps
    the step-by-step sampler."""
    from audiox_core.conditioning.t5 import T5TextEncoder
    from audiox_core.generate import Known, SamplerSettings, sample
    from audiox_core.tiny import save_tiny_t5
    m = make_tiny_model("audiox_turbo", seed=0)
    m.info["role"] = "student"
    m.set_text_encoder(T5TextEncoder.from_local(save_tiny_t5(tmp_path / "t5"), expected_dim=32))
    graphs = []

    def counting_backend(gm, example_inputs):
        graphs.append(len(example_inputs))
        return gm.forward

    s = SamplerSettings.for_model(m, mode="turbo", seed=3)
    _x, _t, ctx = _inputs(m)
    steps = []
    with torch.no_grad():
        want = sample(m, ctx, s)
        assert A.static_turbo_loop(m, 4) is None
        A.set_static_turbo_loop(m, backend=counting_backend)
        got = sample(m, ctx, s, callback=lambda i, n, info: steps.append((i, n)))
        assert len(graphs) == 1                                   # one graph for all four steps
        assert torch.equal(got, want) and steps == [(1, 4), (2, 4), (3, 4), (4, 4)]
        assert torch.equal(sample(m, ctx, s), want) and len(graphs) == 1   # cached
        sample(m, ctx.expand(2, -1, -1), s, batch=2)
        assert len(graphs) == 2                                   # a new batch size: a new graph
        keep = Known(latents=torch.zeros_like(want), keep=torch.ones(want.shape[-1], dtype=torch.bool))
        sample(m, ctx, s, known=keep)
        assert len(graphs) == 2                                   # inpainting: the stepwise sampler
        A.set_static_turbo_loop(m, False)
        assert A.static_turbo_loop(m, 4) is None


@pytest.mark.slow
def test_inductor_compiled_backbone_matches_eager():
    """The real compiler (inductor: C++ on CPU, Triton on CUDA); ~1–2 min on a 2-core CPU."""
    m = make_tiny_model("audiox_turbo", seed=0)
    x, t, c = _inputs(m)
    with torch.no_grad():
        want = m.backbone(x, t, c)
        try:
            A.compile_backbone(m)
            got = m.backbone(x, t, c)
        except Exception as e:  # noqa: BLE001 - no working compiler toolchain here
            pytest.skip(f"torch.compile (inductor) is not usable here: {type(e).__name__}: {e}")
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not A.fp8_available(), reason="no torch.float8_e4m3fn")
def test_fp8_weight_storage_matches_bf16_within_tolerance():
    ref = make_tiny_model("audiox_turbo", seed=3, dtype=torch.bfloat16)
    m8 = make_tiny_model("audiox_turbo", seed=3, dtype=torch.bfloat16)
    n = A.backbone_weights_fp8(m8, min_features=1)
    layers = [mod for mod in m8.backbone.transformer.layers.modules() if isinstance(mod, A.FP8Linear)]
    assert n == len(layers) > 0
    assert all(mod.weight.dtype == torch.float8_e4m3fn for mod in layers)
    assert m8.backbone.transformer.project_in.weight.dtype == torch.bfloat16  # sets the working dtype
    bytes8 = sum(mod.weight.numel() * mod.weight.element_size() for mod in layers)
    assert bytes8 * 2 == sum(p.numel() * p.element_size() for mod in ref.backbone.transformer.layers.modules()
                             if type(mod) is torch.nn.Linear for p in [mod.weight])
    x, t, c = _inputs(ref)
    with torch.no_grad():
        want = ref.backbone(x, t, c).float()
        got = m8.backbone(x, t, c).float()
        other = make_tiny_model("audiox_turbo", seed=4, dtype=torch.bfloat16).backbone(x, t, c).float()
    err = (got - want).norm() / want.norm()
    assert err < 0.06, float(err)                    # e4m3 has 3 mantissa bits: a few % relative
    assert (other - want).norm() / want.norm() > 10 * err  # ... far closer than another model
    # each fp8 layer is the dequantised bf16 layer
    lin = layers[0]
    w = lin.dequantized_weight(torch.float32)
    src = dict(ref.backbone.transformer.layers.named_modules())[
        next(k for k, v in m8.backbone.transformer.layers.named_modules() if v is lin)].weight.float()
    assert ((w - src).abs() <= src.abs().amax(1, keepdim=True) / 16 + 1e-6).all()


def test_on_device_moves_back():
    moves = []

    class Recorder(torch.nn.Linear):
        def to(self, *a, **k):
            moves.append(str(a[0]))
            return self
    lin = Recorder(4, 4)
    with A.on_device(lin, "cuda:0"):
        assert moves == ["cuda:0"]
    assert moves == ["cuda:0", "cpu"]                 # back where it was
    with pytest.raises(RuntimeError), A.on_device(lin, "cuda:1", offload="cpu"):
        raise RuntimeError("boom")
    assert moves[-1] == "cpu"                        # also after an error
    with A.on_device(None, "cpu"):
        pass


def test_weight_dtype_choices_of_the_t5_and_model_loaders(monkeypatch):
    cpu, gpu = torch.device("cpu"), torch.device("mps")
    assert A.t5_weight_dtype("auto", cpu) == torch.float32 and A.t5_weight_dtype("auto", gpu) == torch.float16
    assert A.t5_weight_dtype("bf16", cpu) == torch.bfloat16
    assert A.model_weight_dtype("auto", cpu) == (torch.float32, False)
    assert A.model_weight_dtype("fp16", cpu) == (torch.float16, False)
    monkeypatch.setattr(A, "fp8_available", lambda: True)
    assert A.model_weight_dtype(A.FP8, gpu) == (torch.float16, True)
    monkeypatch.setattr(A, "fp8_available", lambda: False)
    with pytest.raises(A.FieldError, match="float8") as info:
        A.model_weight_dtype(A.FP8, cpu)
    assert info.value.field == "dtype"
