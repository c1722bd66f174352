"""A plain and a LoRA'd branch of the same loaded model in ONE graph (the generate_with_lora
example plus a second sampler on the loader's own output): the LoRA is applied to a clone of the
model handle (weights shared, adapters attached only while the clone's nodes run), so the two
branches give different audio and the plain branch is exactly the audio of the same graph
without any LoRA loader."""
from __future__ import annotations

import copy

import pytest
import torch

import comfy_fakes
import comfy_harness as H
import workflow_models  # noqa: F401  (registers the tiny-weight factories)
from comfy_harness import ROOT

pytestmark = pytest.mark.usefixtures("one_thread")

LORA_NODES = {"4", "5", "6", "7", "8", "9", "10", "11"}  # LoRA loader … its SaveAudio / spectrogram


def _run(api: dict, workflow: dict, tmp_path) -> dict:
    with comfy_fakes.FakeComfy(tmp_path) as env:
        H.prepare_environment(env, workflow)
        pack = H.load_pack()
        H.execute(api, H.all_classes(pack))
        return {c.node_id: c.value["waveform"].clone() for c in env.captured("audio")}


def test_plain_and_lora_branches_coexist_in_one_graph(tmp_path):
    workflow = H.load_workflow(ROOT / "workflows" / "generate_with_lora.json")
    settings = H.workflow_test_settings(workflow)
    with comfy_fakes.FakeComfy(tmp_path / "defs") as env:
        H.prepare_environment(env, workflow)
        defs = H.defs_from_classes(H.all_classes(H.load_pack()))
    api = H.ui_to_api(workflow, defs)
    for nid, values in settings["overrides"].items():
        api[nid]["inputs"].update(values)
    assert api["4"]["class_type"] == "AudioXLoRALoader" and api["7"]["class_type"] == "AudioXSampler"
    # the plain branch: text encoder → fusion → sampler → decode → save on the loader's model
    for src, dst in (("5", "105"), ("6", "106"), ("7", "107"), ("8", "108"), ("9", "109")):
        api[dst] = copy.deepcopy(api[src])
    api["105"]["inputs"]["model"] = ["2", 0]
    api["106"]["inputs"].update(model=["2", 0], text=["105", 0])
    api["107"]["inputs"].update(model=["2", 0], context=["106", 0])
    api["108"]["inputs"]["samples"] = ["107", 0]
    api["109"]["inputs"].update(audio=["108", 0], filename_prefix="audio/plain")
    assert api["5"]["inputs"]["model"] == ["4", 0]  # the LoRA branch encodes with the LoRA model

    both = _run(api, workflow, tmp_path / "both")
    plain_only = _run({k: v for k, v in api.items() if k not in LORA_NODES}, workflow, tmp_path / "plain")
    assert set(both) == {"9", "109"} and set(plain_only) == {"109"}
    lora_audio, plain_audio = both["9"], both["109"]
    assert lora_audio.shape == plain_audio.shape
    assert (lora_audio - plain_audio).abs().max() > 1e-3 * plain_audio.abs().max()   # distinct outputs
    assert torch.equal(plain_audio, plain_only["109"])  # the plain branch = the graph without LoRA
