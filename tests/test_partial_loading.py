"""Partial (low-VRAM) loading, audiox_core.partial_loading: layers left on the offload device run
with their weights copied per call, and the results do not change.

This machine has one device, so "left on the offload device" is made visible by a tensor type
(:class:`Elsewhere`) that allows what a tensor on another device allows (reading its dtype, shape,
device; copying it with ``.to``) and refuses any computation: code that used such a weight without
going through its layer's copy fails.  Tiny random weights: plumbing and numerics, not quality.
"""
from __future__ import annotations

import pytest
import torch

from audiox_core import partial_loading as P
from audiox_core.task import GenerationRequest, generate
from audiox_core.generate import SamplerSettings
from audiox_core.standalone import module_bytes
from audiox_core.tiny import make_tiny_model, save_tiny_t5, tiny_synchformer

pytestmark = pytest.mark.usefixtures("one_thread")
VARIANTS = ["audiox", "audiox_maf", "audiox_turbo"]


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory):
    return save_tiny_t5(tmp_path_factory.mktemp("t5"))


@pytest.fixture
def t5(t5_dir):  # one per test: a test leaves some of its tensors "elsewhere"
    from audiox_core.conditioning.t5 import T5TextEncoder
    return T5TextEncoder.from_local(t5_dir, expected_dim=32)


def _model(variant, t5):
    m = make_tiny_model(variant, seed=2)
    m.set_text_encoder(t5)
    m.set_synchformer(tiny_synchformer())
    return m


def _run(m):
    s = SamplerSettings.for_model(m, steps=3, seed=11)
    video = torch.rand(10, 32, 32, 3, generator=torch.Generator().manual_seed(0))  # 2 s of frames at 5 fps
    return generate(m, GenerationRequest(prompt="a bell", video=video, video_fps=5.0, settings=s)).audio


def _parts(m):
    parts = [m.model, m.conditioner, m.pretransform, m.text_encoder.model]
    return parts + ([m.maf_block] if m.maf_block is not None else [])


_READABLE = {"__get__", "is_floating_point", "size", "dim", "numel", "nelement", "element_size", "__repr__",
             "__format__"}


class Elsewhere(torch.Tensor):
    """A tensor standing for one on another device: metadata reads and ``.to`` copies only."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if func is torch.Tensor.to or name in _READABLE:
            with torch._C.DisableTorchFunctionSubclass():
                out = func(*args, **(kwargs or {}))
            return out.as_subclass(torch.Tensor) if isinstance(out, torch.Tensor) else out
        raise RuntimeError(f"{name} on a tensor left on the offload device")


def _store_elsewhere(module):
    """Make the tensors of the layers flagged to run from the offload device :class:`Elsewhere`."""
    flagged = 0
    for _name, layer in P.castable_layers(module):
        if layer.comfy_cast_weights:
            flagged += 1
            for table in (layer._parameters, layer._buffers):
                for key, t in table.items():
                    if t is not None:
                        table[key] = t.detach().as_subclass(Elsewhere)
    return flagged


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("share", [0.0, 0.4])
def test_partially_loaded_model_gives_the_same_audio(t5, variant, share):
    m = _model(variant, t5)
    with torch.no_grad():
        want = _run(m)
    keys = {id(p): list(p.state_dict()) for p in _parts(m)}
    flagged = 0
    for part in _parts(m):
        n = P.make_castable(part)
        assert n > 0 and P.is_castable(part)
        assert list(part.state_dict()) == keys[id(part)]       # names unchanged
        info = P.load_partially(part, "cpu", int(share * module_bytes(part)))
        assert info["layers_cast"] + info["layers_on_device"] == n
        assert info["loaded_bytes"] <= share * module_bytes(part)
        flagged += _store_elsewhere(part)
    assert flagged > 0
    with torch.no_grad():
        got = _run(m)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_castable_layer_is_unchanged_until_flagged_and_applies_weight_functions():
    lin = torch.nn.Linear(4, 3)
    x = torch.randn(2, 4)
    want = lin(x)
    root = torch.nn.Sequential(lin)
    assert P.make_castable(root) == 1 and P.make_castable(root) == 1  # idempotent
    assert isinstance(lin, torch.nn.Linear) and isinstance(lin, P.CastWeights) and type(lin).__name__ == "Linear"
    torch.testing.assert_close(lin(x), want, rtol=0, atol=0)
    lin.comfy_cast_weights = True
    lin.weight_function = [lambda w: w * 2]   # what ComfyUI puts there: its LoRA patch of this weight
    lin.bias_function = [lambda b: b + 1]
    torch.testing.assert_close(lin(x), x @ (2 * lin.weight).T + lin.bias + 1)
    assert lin.weight.dtype == torch.float32 and isinstance(lin.weight, torch.nn.Parameter)  # restored after the call
    P.unload(root, "cpu")
    assert not lin.comfy_cast_weights


def test_budget_order_and_errors():
    root = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(8, 8), torch.nn.LayerNorm(8))
    with pytest.raises(ValueError, match="make_castable"):
        P.load_partially(root, "cpu", 10**9)
    P.make_castable(root)
    big = P.layer_bytes(root[0])
    info = P.load_partially(root, "cpu", big + 1)
    assert info == {"loaded_bytes": big, "layers_on_device": 1, "layers_cast": 2}  # largest first
    assert not root[0].comfy_cast_weights and root[1].comfy_cast_weights and root[2].comfy_cast_weights
    assert P.complete_partial_load(root, "cpu") == 2
    assert P.load_partially(root, "cpu", 10**9)["layers_cast"] == 0
    assert P.complete_partial_load(root, "cpu") == 0


def test_a_flagged_layer_without_a_tensor_input_says_so():
    class Table(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.ones(3))

        def forward(self, n: int):
            return self.weight[:n]

    root = torch.nn.Sequential(Table())
    P.make_castable(root)
    root[0].comfy_cast_weights = True
    with pytest.raises(RuntimeError, match="needs a tensor input"):
        root[0](2)


def test_completing_a_partial_load_moves_the_tensors_no_loader_lists():
    class Rotary(torch.nn.Module):  # buffers only: a loader does not list it
        def __init__(self):
            super().__init__()
            self.register_buffer("inv_freq", torch.ones(4))

    class Mixed(torch.nn.Module):  # own parameter and parameterised children: not listed either
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(2))
            self.proj = torch.nn.Linear(2, 2)

    root = torch.nn.Sequential(Rotary(), Mixed(), torch.nn.Linear(3, 3))
    assert P.make_castable(root) == 2                     # the two Linear layers
    root[2].comfy_cast_weights = True                     # left behind by the loader
    # "meta" stands for the compute device: a CPU tensor can be moved there, and it shows where each went
    assert P.complete_partial_load(root, "meta") == 1
    assert root[0].inv_freq.is_meta and root[1].scale.is_meta and root[1].proj.weight.is_meta
    assert isinstance(root[1].scale, torch.nn.Parameter)
    assert not root[2].weight.is_meta and not root[2].bias.is_meta
