"""Speed / memory options of the nodes, under stubbed ComfyUI with tiny weights: AudioX Model
Loader's fp8_e4m3fn weight storage (8-bit transformer weights, output close to the full-precision
model, LoRAs and training refused with a clear error) and AudioX Compile Backbone (the samplers
run the compiled backbone — same latents as eager — only for the bundle that asked for it)."""
from __future__ import annotations

import pytest
import torch

import comfy_harness as H
import workflow_models  # noqa: F401  (registers the tiny-weight factories)
from comfy_harness import comfy_env  # noqa: F401  (fixture)
from comfy_harness import call_node as call

TINY = {"audiox/turbo.safetensors": "tiny_turbo", "text_encoders/t5": "tiny_t5",
        "loras/base_lora.safetensors": "tiny_turbo_base_lora"}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def env(comfy_env):  # noqa: F811
    H.install_models(comfy_env.models_dir, TINY)
    return comfy_env


def _load(env, dtype):
    return call(env, "AudioXModelLoader", ckpt_name="turbo.safetensors", dtype=dtype, keep_on_gpu=True)[0]


def _turbo(env, model, seed=3):
    enc = call(env, "AudioXT5Loader", t5_name="t5", dtype="fp32", keep_on_gpu=True)[0]
    (cond,) = call(env, "AudioXTextEncoder", model=model, t5=enc, prompt="two beeps")
    ctx, _ = call(env, "AudioXMAFFusion", model=model, text=cond)
    lat, _ = call(env, "AudioXTurboSampler", model=model, context=ctx, seed=seed, steps=4, batch_size=1, duration=0.0)
    return lat["samples"]


def test_fp8_weight_storage_option(env):
    from audiox_core.acceleration import FP8Linear, has_fp8_weights
    from audiox_core.errors import AudioXError
    full, m8 = _load(env, "fp32"), _load(env, "fp8_e4m3fn")
    fp8_layers = [m for m in m8.model.backbone.modules() if isinstance(m, FP8Linear)]
    assert fp8_layers and all(m.weight.dtype == torch.float8_e4m3fn for m in fp8_layers)
    assert has_fp8_weights(m8.model) and not has_fp8_weights(full.model)
    assert "fp8_e4m3fn" in m8.describe()
    # the backbone of the fp8 model is close to the full-precision one (CPU: fp32 compute)
    g = torch.Generator().manual_seed(0)
    cfg = full.model.config
    x = torch.randn(1, cfg.io_channels, cfg.latent_length, generator=g)
    t, ctx = torch.rand(1, generator=g), torch.randn(1, 384, cfg.cond_dim, generator=g)
    with torch.no_grad():
        want, got = full.model.backbone(x, t, ctx), m8.model.backbone(x, t, ctx)
    err = float((got - want).norm() / want.norm())
    assert 0 < err < 0.06, err
    # and it samples end to end
    assert torch.isfinite(_turbo(env, m8)).all()
    # LoRAs and training are refused, naming the input
    with pytest.raises(AudioXError, match="fp8"):
        call(env, "AudioXLoRALoader", model=m8, lora_name="base_lora.safetensors", strength=1.0, merge=False,
             allow_other_weights=True)


@pytest.fixture
def graphs(monkeypatch):
    """The graphs the nodes' torch.compile builds, with a backend that generates no code (inductor
    takes minutes on a small CPU): one entry per compiled graph."""
    built = []

    def counting_backend(gm, example_inputs):
        built.append(len(example_inputs))
        return gm.forward
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: real_compile(fn, **dict(kw, backend=counting_backend)))
    return built


def test_compile_backbone_node(env, graphs):
    from audiox_core.acceleration import backbone_compiled
    model = _load(env, "fp32")
    eager = _turbo(env, model)
    (compiled,) = call(env, "AudioXCompileBackbone", model=model, compile=True, mode="default")
    assert compiled.model is model.model and compiled.compile_mode == "default" and model.compile_mode is None
    got = _turbo(env, compiled)
    assert graphs, "the sampler did not run the compiled backbone"
    torch.testing.assert_close(got, eager, rtol=1e-5, atol=1e-6)
    assert not backbone_compiled(model.model)        # eager again outside the compiled bundle's block
    n = len(graphs)
    _turbo(env, compiled)
    assert len(graphs) == n                          # same shapes: the cached graphs
    (off,) = call(env, "AudioXCompileBackbone", model=model, compile=False, mode="default")
    assert off.compile_mode is None


def test_compile_node_whole_turbo_loop(env, graphs):
    """whole_turbo_loop: the Turbo sampler runs its four steps as one compiled graph (the backbone
    itself stays eager), with the eager latents; off again outside the compiled bundle."""
    from audiox_core.acceleration import backbone_compiled, static_turbo_loop
    model = _load(env, "fp32")
    eager = _turbo(env, model)
    (compiled,) = call(env, "AudioXCompileBackbone", model=model, compile=True, mode="default", whole_turbo_loop=True)
    assert compiled.compile_turbo_loop and not model.compile_turbo_loop
    got = _turbo(env, compiled)
    assert len(graphs) == 1                          # one graph: the whole loop
    assert torch.equal(got, eager)
    assert not backbone_compiled(model.model) and static_turbo_loop(model.model, 4) is None
    (off,) = call(env, "AudioXCompileBackbone", model=model, compile=False, mode="default", whole_turbo_loop=True)
    assert off.compile_mode is None and not off.compile_turbo_loop
