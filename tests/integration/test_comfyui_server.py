"""The pack inside a real ComfyUI server (skipped unless ``COMFYUI_DIR`` names a checkout).

The server (one per test session, shared with test_browser.py) is started by
tests/integration/comfy_server.py: ``python main.py --cpu ...`` from ``$COMFYUI_DIR`` with only
this pack loaded, every folder it writes in a temporary directory.  Then: every node of
NODE_CLASS_MAPPINGS is in ``GET /object_info``; our fakes of core nodes match the real definitions; every ``workflows/*.json`` converted with /object_info's input_order
runs through ``POST /prompt`` to success (polled on ``/history``); ``GET /workflow_templates``
lists our graphs; and ComfyUI's own UI-format templates convert into graphs the server rejects
only for missing model/media files (a check of the converter against the real validator).
Setup recipe: tests/integration/README.md.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from pathlib import Path

import pytest

import comfy_fakes
import comfy_harness as H

pytestmark = pytest.mark.integration

if not os.environ.get("COMFYUI_DIR"):
    pytest.skip("COMFYUI_DIR is not set (see tests/integration/README.md)", allow_module_level=True)

from comfy_server import PACK_DIR, PACK_NAME, RUN_S, WORKFLOWS  # noqa: E402  (tests/integration/comfy_server.py)


@pytest.fixture(scope="module")
def object_info(server):
    return server.get("/object_info")


@pytest.fixture(scope="module")
def our_mappings():
    with tempfile.TemporaryDirectory() as tmp, comfy_fakes.FakeComfy(Path(tmp)):
        pack = H.load_pack(PACK_DIR)
        return dict(pack.NODE_CLASS_MAPPINGS), dict(pack.NODE_DISPLAY_NAME_MAPPINGS)


def _errors_text(body) -> str:
    return json.dumps(body, indent=1)[:6000]


# ------------------------------------------------------------------ tests
def test_pack_imported_without_errors(server):
    text = server.log.read_text(errors="replace")
    ours = [l for l in text.splitlines() if PACK_NAME in l and ("IMPORT FAILED" in l or "Cannot import" in l)]
    assert not ours, "\n".join(ours) + "\n--- server log ---\n" + server.log_tail(120)


def test_object_info_lists_every_node(object_info, our_mappings):
    classes, display = our_mappings
    missing = sorted(set(classes) - set(object_info))
    assert not missing, f"/object_info lacks {missing}"
    for node_id in classes:
        info = object_info[node_id]
        assert info["python_module"] == f"custom_nodes.{PACK_NAME}", info["python_module"]
        assert info["display_name"] == display.get(node_id, node_id)


def test_fake_core_nodes_match_comfyui(object_info):
    """tests/comfy_fakes.py mirrors the real core nodes' sockets, widgets and outputs."""
    problems = []
    with tempfile.TemporaryDirectory() as tmp, comfy_fakes.FakeComfy(Path(tmp)):
        fakes = H.defs_from_classes(comfy_fakes.CORE_NODES)
    for name, fake in fakes.items():
        if name not in object_info:
            problems.append(f"{name}: not a node of this ComfyUI")
            continue
        real = H.NodeDef.from_object_info(name, object_info[name])
        sig = lambda d: [(i.name, i.type_name, i.category, i.is_widget, i.has_control_widget, i.has_upload_widget)
                         for i in d.inputs]
        if sig(fake) != sig(real):
            problems.append(f"{name}: inputs {sig(fake)} != real {sig(real)}")
        if fake.outputs != real.outputs or fake.output_node != real.output_node:
            problems.append(f"{name}: outputs {fake.outputs}/{fake.output_node} != real {real.outputs}/{real.output_node}")
    assert not problems, "\n".join(problems)


PARAMS = [pytest.param(p, id=p.stem) for p in WORKFLOWS] or [
    pytest.param(None, id="no-workflows", marks=pytest.mark.skip(reason="workflows/ has no example graphs yet"))]


def _api_of(object_info, path: Path) -> tuple[dict, dict]:
    """A workflow (UI format) and its API graph with the graph's test overrides."""
    wf = H.load_workflow(path)
    api = H.ui_to_api(wf, H.defs_from_object_info(object_info))
    for nid, values in (H.workflow_test_settings(wf).get("overrides") or {}).items():
        api[str(nid)]["inputs"].update(values)
    return wf, api


def _run_prompt(server, api: dict, wf: dict, name: str) -> dict:
    """POST the graph, wait for it, fail with the server's errors; its history entry's outputs."""
    prompt_id = str(uuid.uuid4())
    status, body = server.request("POST", "/prompt", {
        "prompt": api, "client_id": str(uuid.uuid4()), "prompt_id": prompt_id,
        "extra_data": {"extra_pnginfo": {"workflow": wf}}})
    assert status == 200 and not body.get("node_errors"), \
        f"{name}: /prompt refused the graph:\n{_errors_text(body)}\n--- server log ---\n{server.log_tail()}"
    deadline = time.monotonic() + RUN_S
    while True:
        hist = server.get(f"/history/{prompt_id}")
        if prompt_id in hist:
            break
        if server.proc.poll() is not None:
            pytest.fail(f"ComfyUI died while running {name}:\n{server.log_tail(80)}")
        if time.monotonic() > deadline:
            server.request("POST", "/interrupt", {})
            pytest.fail(f"{name} did not finish within {RUN_S:.0f} s\n{server.log_tail()}")
        time.sleep(0.5)
    entry = hist[prompt_id]
    st = entry.get("status", {})
    if st.get("status_str") != "success":
        errors = [m[1] for m in st.get("messages", []) if m[0] in ("execution_error", "execution_interrupted")]
        pytest.fail(f"{name} failed on the server: {_errors_text(errors)}\n--- server log ---\n{server.log_tail()}")
    return entry.get("outputs", {})


@pytest.mark.parametrize("path", PARAMS)
def test_workflow_runs_on_server(server, object_info, path):
    wf, api = _api_of(object_info, path)
    outputs = _run_prompt(server, api, wf, path.name)
    sinks = [nid for nid, e in api.items() if object_info[e["class_type"]].get("output_node")]
    assert sinks and all(nid in outputs for nid in sinks), f"outputs {sorted(outputs)} vs output nodes {sinks}"
    for nid in sinks:
        for item in outputs[nid].get("audio", []) + outputs[nid].get("images", []):
            found = list(server.root.rglob(item["filename"]))
            assert found, f"node {nid} reported {item} but no such file under {server.root}"


def test_workflow_templates_lists_our_graphs(server):
    listed = server.get("/workflow_templates")
    assert sorted(listed.get(PACK_NAME, [])) == sorted(p.stem for p in WORKFLOWS), listed
    for p in WORKFLOWS:
        served = server.get(f"/api/workflow_templates/{PACK_NAME}/{p.name}")
        assert served == H.load_workflow(p)


def test_web_extensions_load_once(server):
    """Each JS file of web/ is served exactly once (WEB_DIRECTORY and pyproject's
    [tool.comfy] web would each register the folder when the folder name differs from the
    project name, and the frontend would then run every extension twice)."""
    scripts = sorted(p.relative_to(PACK_DIR / "web").as_posix() for p in (PACK_DIR / "web").rglob("*.js")) \
        if (PACK_DIR / "web").is_dir() else []
    if not scripts:
        pytest.skip("web/ has no JavaScript yet")
    served = server.get("/extensions")
    for rel in scripts:
        hits = [u for u in served if u.endswith("/" + rel)]
        assert len(hits) == 1, f"web/{rel} is served {len(hits)} times: {hits}"


ALLOWED_FILE_ERRORS = {"value_not_in_list", "custom_validation_failed"}


def test_core_templates_convert_like_the_frontend(server, object_info):
    """ComfyUI's own example graphs (UI format), converted by our converter, fail validation only
    because their model/media files are absent: no type, range or missing-input errors."""
    index = server.get("/templates/index.json")
    names = sorted({t["name"] for group in index for t in group.get("templates", [])})
    defs = H.defs_from_object_info(object_info)
    checked, problems = 0, []
    try:
        for name in names:
            status, wf = server.request("GET", f"/templates/{name}.json")
            if status != 200 or not isinstance(wf, dict) or "nodes" not in wf:
                continue
            try:
                api = H.ui_to_api(wf, defs)
            except H.WorkflowError:
                continue  # subgraphs, API nodes (disabled here) or other packs' nodes
            status, body = server.request("POST", "/prompt", {"prompt": api, "client_id": "audiox-templates"})
            checked += 1
            for nid, ne in (body.get("node_errors") or {}).items() if isinstance(body, dict) else []:
                for err in ne.get("errors", []):
                    value = (err.get("extra_info") or {}).get("received_value")
                    file_like = isinstance(value, str) and bool(os.path.splitext(value)[1])
                    if err.get("type") in ALLOWED_FILE_ERRORS and (file_like or err["type"] == "custom_validation_failed"):
                        continue
                    problems.append(f"{name} node {nid} ({ne.get('class_type')}): {err.get('type')}: {err.get('details')}")
    finally:
        server.request("POST", "/queue", {"clear": True})
        server.request("POST", "/interrupt", {})
    assert checked >= 20, f"only {checked} templates could be checked"
    assert not problems, "\n".join(problems)


def test_lora_branch_is_a_weight_patch_beside_a_plain_branch(server, object_info):
    """generate_with_lora with a plain branch added: inside ComfyUI the LoRA is a weight patch on a
    clone of the model's patchers (logged), the LoRA output differs from the plain one, and the plain
    branch of that graph equals the plain branch run alone (ComfyUI restored the weights)."""
    from audiox_core.media import load_audio
    path = next(p for p in WORKFLOWS if p.stem == "generate_with_lora")
    wf, api = _api_of(object_info, path)
    by_type = {e["class_type"]: nid for nid, e in api.items()}
    loader, t5, fusion, sampler, decode, save = (by_type[t] for t in (
        "AudioXModelLoader", "AudioXT5Loader", "AudioXMAFFusion", "AudioXSampler", "AudioXVAEDecode", "SaveAudio"))
    text = by_type["AudioXTextEncoder"]
    tag = uuid.uuid4().hex[:8]
    plain = {
        "p_text": {"class_type": "AudioXTextEncoder", "inputs": {**api[text]["inputs"], "model": [loader, 0],
                                                                 "t5": [t5, 0]}},
        "p_fusion": {"class_type": "AudioXMAFFusion", "inputs": {**api[fusion]["inputs"], "model": [loader, 0],
                                                                 "text": ["p_text", 0]}},
        "p_sampler": {"class_type": "AudioXSampler", "inputs": {**api[sampler]["inputs"], "model": [loader, 0],
                                                                "context": ["p_fusion", 0]}},
        "p_decode": {"class_type": "AudioXVAEDecode", "inputs": {**api[decode]["inputs"], "samples": ["p_sampler", 0]}},
    }
    api[save]["inputs"]["filename_prefix"] = f"audio/lora_{tag}"
    both = {**api, **plain, "p_save": {"class_type": "SaveAudio", "inputs": {
        "audio": ["p_decode", 0], "filename_prefix": f"audio/plain_beside_lora_{tag}"}}}
    alone = {nid: api[nid] for nid in (loader, t5)}
    alone.update(plain)
    alone["p_save"] = {"class_type": "SaveAudio", "inputs": {"audio": ["p_decode", 0],
                                                             "filename_prefix": f"audio/plain_alone_{tag}"}}
    out_alone = _run_prompt(server, alone, wf, "plain branch alone")
    out_both = _run_prompt(server, both, wf, "LoRA and plain branches")
    assert "LoRA weight patches on a clone of the model's backbone" in server.log_tail(400)

    def audio_of(outputs, nid):
        (item,) = outputs[nid]["audio"]
        (file,) = list(server.root.rglob(item["filename"]))
        return load_audio(file)[0]

    plain_alone, plain_beside = audio_of(out_alone, "p_save"), audio_of(out_both, "p_save")
    with_lora = audio_of(out_both, save)
    assert plain_alone.shape == plain_beside.shape == with_lora.shape
    assert (plain_alone - plain_beside).abs().max() < 1e-4  # the LoRA branch left the shared weights intact
    assert (with_lora - plain_beside).abs().max() > 1e-3  # and it did change its own output
