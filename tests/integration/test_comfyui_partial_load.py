"""ComfyUI's own low-VRAM loading of our networks (skipped unless ``COMFYUI_DIR`` names a checkout).

A script in ComfyUI's Python (``$COMFYUI_PYTHON``) wraps a tiny Turbo backbone the way the loader
nodes do (``make_castable`` + ``ModelPatcher``), adds a LoRA weight patch with
``comfy.weight_adapter``, and has the real ``ModelPatcher.patch_model`` load it fully, then
partially (``lowvram_model_memory`` > 0, as ``load_models_gpu`` does on a small card).  Partially
loaded, ComfyUI flags our layers ``comfy_cast_weights`` and hands the LoRA to them as a
``LowVramPatch`` weight function; the output must equal the fully loaded, patched one, and differ
from the unpatched one.  On this CPU both "devices" are the CPU, so this checks the protocol, not
the transfer (tests/test_partial_loading.py checks that no offloaded weight is used in place).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

if not os.environ.get("COMFYUI_DIR"):
    pytest.skip("COMFYUI_DIR is not set (see tests/integration/README.md)", allow_module_level=True)

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import json, sys
    sys.argv = [sys.argv[0], "--cpu"]
    import comfy.options
    comfy.options.enable_args_parsing()                # so that --cpu is read, as main.py does
    import torch
    import comfy.model_patcher
    from comfy.weight_adapter.lora import LoRAAdapter
    from audiox_core import partial_loading as P
    from audiox_core.tiny import make_tiny_model

    torch.manual_seed(0)
    m = make_tiny_model("audiox_turbo", seed=0)
    net = m.model
    P.make_castable(net)
    cpu = torch.device("cpu")
    plain = comfy.model_patcher.ModelPatcher(net, load_device=cpu, offload_device=cpu)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, m.config.io_channels, m.latent_length, generator=g)
    t = torch.rand(1, generator=g)
    ctx = torch.randn(1, 384, m.config.backbone.cond_token_dim, generator=g)
    run = lambda: m.backbone(x, t, ctx).clone()
    layers = dict(P.castable_layers(net))
    key = min((n for n, l in layers.items() if isinstance(l, torch.nn.Linear)), key=lambda n: P.layer_bytes(layers[n]))
    w = layers[key].weight
    up, down = torch.randn(w.shape[0], 4, generator=g), torch.randn(4, w.shape[1], generator=g)
    patched = plain.clone()
    assert patched.add_patches({key + ".weight": LoRAAdapter(set(), (up, down, 4.0, None, None, None))}, 1.0)
    out = {}
    with torch.no_grad():
        out["plain"] = run()
        patched.patch_model(cpu, lowvram_model_memory=0)              # full load, LoRA merged
        out["full"] = run()
        patched.unpatch_model(cpu)
        out["restored"] = run()
        budget = P.layer_bytes(max(layers.values(), key=P.layer_bytes)) + 1  # the largest layer only
        patched.patch_model(cpu, lowvram_model_memory=budget)
        flagged = [n for n, l in layers.items() if l.comfy_cast_weights]
        lora_fns = len(layers[key].weight_function)
        P.complete_partial_load(net, cpu)
        out["partial"] = run()
        patched.unpatch_model(cpu)
        after = [n for n, l in layers.items() if l.comfy_cast_weights]
    d = lambda a, b: float((out[a] - out[b]).abs().max())
    print(json.dumps({"layers": len(layers), "flagged": len(flagged), "lora_flagged": key in flagged,
                      "lora_functions": lora_fns, "flagged_after_unpatch": len(after),
                      "full_vs_plain": d("full", "plain"), "partial_vs_full": d("partial", "full"),
                      "restored_vs_plain": d("restored", "plain"), "scale": float(out["full"].abs().max())}))
""")


def test_comfyui_loads_our_backbone_partially_with_a_lora_patch():
    python = os.environ.get("COMFYUI_PYTHON", sys.executable)
    shims = Path(__file__).resolve().parent / "shims"  # as for the server (comfy_server.py)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(shims), os.environ["COMFYUI_DIR"], str(REPO)]))
    proc = subprocess.run([python, "-c", SCRIPT], cwd=os.environ["COMFYUI_DIR"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert 0 < r["flagged"] < r["layers"]                 # loaded in part
    assert r["lora_flagged"] and r["lora_functions"] == 1  # the LoRA reaches an offloaded layer as a function
    assert r["flagged_after_unpatch"] == 0                # unloading clears the flags
    assert r["restored_vs_plain"] == 0.0
    assert r["full_vs_plain"] > 1e-3 * r["scale"]         # the patch changes the output ...
    assert r["partial_vs_full"] <= 1e-5 * r["scale"]      # ... the same way when loaded in part
