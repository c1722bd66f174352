"""audiox_core.loaded_model: a model's parts, facts and description, and what is applied to a
shared model for one block only (LoRAs attached / merged, backbone compiled) and undone after."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import pytest
import torch

from audiox_core.acceleration import backbone_compiled
from audiox_core.errors import InputError
from audiox_core.loaded_model import (APPLIED_LORAS_KEY, ModelInUse, backbone_compiled_during, loras_applied,
                                      part_modules, synchformer_attached)
from audiox_core.tiny import make_tiny_model
from audiox_core.training import lora as L

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def turbo():
    return make_tiny_model("audiox_turbo", seed=0)


@dataclass(repr=False)
class Holder(ModelInUse):
    model: Any
    name: str = "tiny"
    loras: tuple = ()
    merge_loras: bool = False
    compile_mode: Optional[str] = None
    compile_turbo_loop: bool = False


def _randomized_lora(model, seed: int):
    lora = L.create_lora(model, rank=2, targets="attention", seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in lora.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return lora


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _inputs(model):
    g = torch.Generator().manual_seed(1)
    cfg = model.config
    n_ctx = 384 if cfg.backbone.type == "mmdit" else 128 + 128 + 215
    return (torch.randn(1, cfg.io_channels, cfg.latent_length, generator=g), torch.rand(1, generator=g),
            torch.randn(1, n_ctx, cfg.cond_dim, generator=g))


def test_part_modules_name_the_networks(turbo):
    parts = part_modules(turbo)
    assert list(parts)[:3] == ["backbone", "conditioner", "vae"]
    assert parts["backbone"] is turbo.model and parts["vae"] is turbo.pretransform
    assert ("maf" in parts) == (turbo.maf_block is not None)


def test_facts_description_and_copies(turbo):
    holder = Holder(turbo)
    c = turbo.config
    assert holder.variant == c.variant and holder.sample_rate == int(c.sample_rate)
    assert holder.window_seconds == pytest.approx(c.latent_length * c.vae.downsampling_ratio / c.sample_rate)
    text = holder.describe()
    assert text.startswith("tiny: ") and f"{c.sample_rate} Hz" in text and "conditions: " in text
    lora = _randomized_lora(turbo, 3)
    with_lora = holder.with_loras([(lora, 0.5)], True, "tiny + lora")
    assert with_lora.model is turbo and with_lora.loras == ((lora, 0.5),) and with_lora.merge_loras
    assert holder.loras == () and "1 LoRA(s)" in repr(with_lora) and "LoRA" not in repr(holder)
    compiled = holder.with_compile("default", "tiny (compiled)")
    assert compiled.compile_mode == "default" and holder.compile_mode is None and not compiled.compile_turbo_loop
    assert holder.with_compile("reduce-overhead", "loop", turbo_loop=True).compile_turbo_loop
    assert not holder.with_compile(None, "eager", turbo_loop=True).compile_turbo_loop  # nothing to compile


@pytest.mark.parametrize("merge", [False, True])
def test_loras_applied_only_inside_the_block(turbo, merge):
    before = _weights(turbo)
    x, t, c = _inputs(turbo)
    lora = _randomized_lora(turbo, 5)
    with torch.no_grad():
        base = turbo.velocity(x, t, c)
        with loras_applied(turbo, "owner", ((lora, 0.8),), merge, "cpu"):
            assert turbo.__dict__[APPLIED_LORAS_KEY][0] == "owner"
            inside = turbo.velocity(x, t, c)
            with loras_applied(turbo, "owner", ((lora, 0.8),), merge, "cpu"):  # re-entrant for the same owner
                assert torch.equal(turbo.velocity(x, t, c), inside)
            assert APPLIED_LORAS_KEY in turbo.__dict__
        after = turbo.velocity(x, t, c)
    assert not torch.allclose(inside, base)
    assert torch.equal(after, base) and all(torch.equal(before[k], v) for k, v in _weights(turbo).items())
    assert APPLIED_LORAS_KEY not in turbo.__dict__ and not L.attached_loras(turbo)


def test_other_owners_loras_are_refused_and_no_loras_change_nothing(turbo):
    lora = _randomized_lora(turbo, 7)
    with loras_applied(turbo, "first", ((lora, 1.0),), False, "cpu"):
        with pytest.raises(InputError, match="already running with other LoRAs"):
            with loras_applied(turbo, "second", ((lora, 1.0),), False, "cpu"):
                pass
        with loras_applied(turbo, "second", (), False, "cpu"):  # a base-model holder runs alongside
            assert turbo.__dict__[APPLIED_LORAS_KEY][0] == "first"
    assert APPLIED_LORAS_KEY not in turbo.__dict__


def test_loras_are_detached_when_the_block_fails(turbo):
    lora = _randomized_lora(turbo, 9)
    with pytest.raises(RuntimeError, match="boom"):
        with loras_applied(turbo, "owner", ((lora, 1.0),), True, "cpu"):
            raise RuntimeError("boom")
    assert APPLIED_LORAS_KEY not in turbo.__dict__ and not L.attached_loras(turbo)


def test_backbone_compiled_only_inside_the_block(turbo):
    with backbone_compiled_during(turbo, None):
        assert not backbone_compiled(turbo)
    with backbone_compiled_during(turbo, "default"):  # torch.compile is lazy: nothing compiles until called
        assert backbone_compiled(turbo)
    assert not backbone_compiled(turbo)


def test_synchformer_attached_only_inside_the_block(turbo):
    own, other = turbo.synchformer, torch.nn.Identity()
    with synchformer_attached(turbo, None):
        assert turbo.synchformer is own
    with pytest.raises(RuntimeError):
        with synchformer_attached(turbo, other):
            assert turbo.synchformer is other
            raise RuntimeError("fails inside the block")
    assert turbo.synchformer is own


def test_encoder_parts_are_the_conditioner_only():
    from audiox_core.loaded_model import encoder_parts
    assert encoder_parts(("conditioner", "maf")) == ("conditioner",)
    assert encoder_parts(("backbone", "maf", "vae")) == ()
    assert encoder_parts(()) == ()
