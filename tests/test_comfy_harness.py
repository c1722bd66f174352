"""The workflow harness itself: UI->API conversion, static validation, the in-process executor.

Graphs here are written by hand in the UI format the ComfyUI frontend saves (node ``inputs``
listing widget inputs too, links as ``[id, src, src_slot, dst, dst_slot, type]``).
"""
from __future__ import annotations

import pytest
import torch

import comfy_harness as H
from comfy_harness import comfy_env  # noqa: F401  (fixture)


# ------------------------------------------------------------------ dummy node classes
class Src:
    RETURN_TYPES = ("NUM",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 1, "min": 0, "max": 100})}}

    def run(self, value):
        return (value,)


class Sampler:
    """Widget order: seed(+control), steps, cfg, sampler_name, prompt, [file(+upload)], strength."""
    RETURN_TYPES = ("NUM", "TXT")
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("NUM",),
                "seed": ("INT", {"default": 0, "min": 0, "max": 2**64 - 1, "control_after_generate": True}),
                "steps": ("INT", {"default": 10, "min": 1, "max": 100}),
                "cfg": ("FLOAT", {"default": 4.0, "min": 0.0, "max": 20.0}),
                "sampler_name": (["euler", "dpmpp"],),
                "prompt": ("STRING", {"multiline": True, "default": ""}),
            },
            "optional": {
                "count": ("INT", {"forceInput": True}),
                "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 2.0}),
            },
        }

    def run(self, model, seed, steps, cfg, sampler_name, prompt, count=None, strength=1.0):
        return (model + steps, f"{sampler_name}:{prompt}")


class LegacySeed:
    RETURN_TYPES = ("NUM",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"noise_seed": ("INT", {"default": 0}), "seed": ("INT", {"control_after_generate": False}),
                             "file": (["a.wav", "b.wav"], {"audio_upload": True}), "gain": ("FLOAT", {"default": 1.0})}}

    def run(self, **kw):
        return (0,)


class Pass:
    RETURN_TYPES = ("NUM",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"x": ("NUM",)}}

    def run(self, x):
        return (x,)


class Sink:
    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True
    seen: list = []

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"x": ("NUM",)}, "optional": {"t": ("TXT",)}, "hidden": {"uid": "UNIQUE_ID"}}

    def run(self, x, t=None, uid=None):
        Sink.seen.append((uid, x, t, torch.is_inference_mode_enabled()))
        return {"ui": {"value": [x]}}


CLASSES = {"Src": Src, "Sampler": Sampler, "LegacySeed": LegacySeed, "Pass": Pass, "Sink": Sink}
DEFS = H.defs_from_classes(CLASSES)


def node(nid, type_, inputs=(), outputs=(), widgets=None, mode=0, **extra):
    n = {"id": nid, "type": type_, "mode": mode, "pos": [0, 0], "size": [100, 50],
         "inputs": [dict(i) for i in inputs], "outputs": [dict(o) for o in outputs], "properties": {}}
    if widgets is not None:
        n["widgets_values"] = widgets
    n.update(extra)
    return n


def graph(nodes, links):
    return {"last_node_id": max(n["id"] for n in nodes), "last_link_id": max([l[0] for l in links] or [0]),
            "nodes": nodes, "links": links, "groups": [], "config": {}, "extra": {}, "version": 0.4}


def sampler_node(nid, model_link, widgets, extra_inputs=()):
    inputs = [{"name": "model", "type": "NUM", "link": model_link},
              {"name": "seed", "type": "INT", "widget": {"name": "seed"}, "link": None}, *extra_inputs]
    return node(nid, "Sampler", inputs, [{"name": "NUM", "type": "NUM", "links": [], "slot_index": 0},
                                         {"name": "TXT", "type": "TXT", "links": [], "slot_index": 1}], widgets)


def src_node(nid, links, value=5, mode=0):
    return node(nid, "Src", [{"name": "value", "type": "INT", "widget": {"name": "value"}, "link": None}],
                [{"name": "NUM", "type": "NUM", "links": links, "slot_index": 0}], [value], mode=mode)


def sink_node(nid, x_link, t_link=None):
    return node(nid, "Sink", [{"name": "x", "type": "NUM", "link": x_link}, {"name": "t", "type": "TXT", "link": t_link}],
                [], [])


def basic_graph(widgets=(42, "randomize", 8, 3.5, "dpmpp", "hello", 0.5)):
    s = sampler_node(20, 7, list(widgets))
    s["outputs"][0]["links"] = [9]
    return graph([src_node(3, [7]), s, sink_node(31, 9)],
                 [[7, 3, 0, 20, 0, "NUM"], [9, 20, 0, 31, 0, "NUM"]])


# ================================================================== conversion
def test_widgets_are_positional_with_control_after_generate():
    api = H.ui_to_api(basic_graph(), DEFS)
    assert api["20"] == {"class_type": "Sampler", "inputs": {
        "seed": 42, "steps": 8, "cfg": 3.5, "sampler_name": "dpmpp", "prompt": "hello", "strength": 0.5,
        "model": ["3", 0]}}
    assert api["3"]["inputs"] == {"value": 5}
    assert api["31"]["inputs"] == {"x": ["20", 0]}  # unconnected optional 't' is absent


def test_missing_trailing_widget_values_take_defaults():
    api = H.ui_to_api(basic_graph(widgets=(42, "fixed", 8)), DEFS)
    assert api["20"]["inputs"]["cfg"] == 4.0 and api["20"]["inputs"]["sampler_name"] == "euler"
    assert api["20"]["inputs"]["strength"] == 1.0 and api["20"]["inputs"]["prompt"] == ""


def test_legacy_seed_name_and_upload_widget_take_a_slot():
    n = node(1, "LegacySeed", [], [{"name": "NUM", "type": "NUM", "links": [], "slot_index": 0}],
             # noise_seed, <control>, seed (explicitly no control), file, <upload>, gain
             [7, "increment", 9, "b.wav", None, 0.25])
    api = H.ui_to_api(graph([n], []), DEFS)
    assert api["1"]["inputs"] == {"noise_seed": 7, "seed": 9, "file": "b.wav", "gain": 0.25}


def test_legacy_force_input_layout_is_migrated():
    # before frontend 1.16 a forceInput INT kept a (dead) slot in widgets_values
    w = [42, "fixed", 8, 3.5, "dpmpp", "hi", 123, 0.75]
    api = H.ui_to_api(basic_graph(widgets=w), DEFS)
    assert api["20"]["inputs"]["strength"] == 0.75 and "count" not in api["20"]["inputs"]


def test_dict_widgets_values_are_read_by_name():
    g = basic_graph()
    g["nodes"][1]["widgets_values"] = {"seed": 3, "steps": 4, "prompt": "x", "videopreview": {"hidden": False}}
    inputs = H.ui_to_api(g, DEFS)["20"]["inputs"]
    assert (inputs["seed"], inputs["steps"], inputs["prompt"], inputs["cfg"]) == (3, 4, "x", 4.0)


def test_list_widget_value_is_wrapped():
    api = H.ui_to_api(basic_graph(widgets=(42, "fixed", 8, 3.5, "dpmpp", ["not", "a", "link"])), DEFS)
    assert api["20"]["inputs"]["prompt"] == {"__value__": ["not", "a", "link"]}


def test_links_resolve_by_id_and_a_linked_widget_wins():
    # link ids are arbitrary; the 'count' socket and the converted 'steps' widget are linked
    s = sampler_node(20, 70, [42, "fixed", 8, 3.5, "euler", "p", 1.0],
                     extra_inputs=[{"name": "steps", "type": "INT", "widget": {"name": "steps"}, "link": 500},
                                   {"name": "count", "type": "INT", "link": 501}])
    s["outputs"][1]["links"] = [90]
    prim = node(40, "PrimitiveNode", [], [{"name": "INT", "type": "INT", "links": [500, 501],
                                           "widget": {"name": "steps"}}], [17, "fixed"])
    g = graph([src_node(3, [70]), s, prim, sink_node(31, 80, 90)],
              [[70, 3, 0, 20, 0, "NUM"], [500, 40, 0, 20, 2, "INT"], [501, 40, 0, 20, 3, "INT"],
               [80, 3, 0, 31, 0, "NUM"], [90, 20, 1, 31, 1, "TXT"]])
    g["nodes"][0]["outputs"][0]["links"] = [70, 80]
    api = H.ui_to_api(g, DEFS)
    assert "40" not in api  # PrimitiveNode is frontend-only
    assert api["20"]["inputs"]["steps"] == 17 and api["20"]["inputs"]["count"] == 17
    assert api["31"]["inputs"] == {"x": ["3", 0], "t": ["20", 1]}


def test_reroute_chain_and_notes():
    r1 = node(50, "Reroute", [{"name": "", "type": "*", "link": 1}], [{"name": "", "type": "NUM", "links": [2]}])
    r2 = node(51, "Reroute", [{"name": "", "type": "*", "link": 2}], [{"name": "", "type": "NUM", "links": [3]}])
    note = node(60, "Note", [], [], ["a note"])
    g = graph([src_node(1, [1]), r1, r2, sink_node(9, 3), note],
              [[1, 1, 0, 50, 0, "NUM"], [2, 50, 0, 51, 0, "NUM"], [3, 51, 0, 9, 0, "NUM"]])
    api = H.ui_to_api(g, DEFS)
    assert set(api) == {"1", "9"} and api["9"]["inputs"]["x"] == ["1", 0]


def test_bypassed_node_passes_its_matching_input_through():
    p = node(5, "Pass", [{"name": "x", "type": "NUM", "link": 1}],
             [{"name": "NUM", "type": "NUM", "links": [2]}], [], mode=H.BYPASSED)
    g = graph([src_node(1, [1]), p, sink_node(9, 2)], [[1, 1, 0, 5, 0, "NUM"], [2, 5, 0, 9, 0, "NUM"]])
    api = H.ui_to_api(g, DEFS)
    assert "5" not in api and api["9"]["inputs"]["x"] == ["1", 0]


def test_bypass_picks_the_input_of_the_wanted_type():
    # output 0 of the bypassed Sampler is NUM; its input 0 'model' is NUM -> same slot wins,
    # output 1 (TXT) has no TXT input -> the consumer gets nothing
    s = sampler_node(20, 7, [1, "fixed", 8, 3.5, "euler", "p", 1.0])
    s["mode"] = H.BYPASSED
    s["outputs"][0]["links"], s["outputs"][1]["links"] = [8], [9]
    g = graph([src_node(3, [7]), s, sink_node(31, 8, 9)],
              [[7, 3, 0, 20, 0, "NUM"], [8, 20, 0, 31, 0, "NUM"], [9, 20, 1, 31, 1, "TXT"]])
    api = H.ui_to_api(g, DEFS)
    assert api["31"]["inputs"] == {"x": ["3", 0]}
    assert H._bypass_input_index({"inputs": [{"type": "INT"}, {"type": "TXT"}], "outputs": [{"type": "TXT"}]}, 0, "TXT") == 1


def test_muted_node_and_links_from_it_are_dropped():
    g = basic_graph()
    g["nodes"][0]["mode"] = H.MUTED
    api = H.ui_to_api(g, DEFS)
    assert "3" not in api and "model" not in api["20"]["inputs"]
    assert any("required input 'model' is missing" in p for p in H.validate_api(api, DEFS))


def test_subgraphs_and_unknown_types_are_refused():
    g = basic_graph()
    g["definitions"] = {"subgraphs": [{"id": "abc"}]}
    g["nodes"].append(node(99, "abc"))
    with pytest.raises(H.WorkflowError, match="subgraph"):
        H.ui_to_api(g, DEFS)
    g = basic_graph()
    g["nodes"][0]["type"] = "NoSuchNode"
    with pytest.raises(H.WorkflowError, match="unknown type 'NoSuchNode'"):
        H.ui_to_api(g, DEFS)


def test_object_info_and_class_definitions_agree():
    info = {"input": {"required": {"model": ["NUM"], "seed": ["INT", {"control_after_generate": True}],
                                   "sampler_name": [["euler", "dpmpp"], {}]},
                      "optional": {"file": ["COMBO", {"options": ["x"], "audio_upload": True}]},
                      "hidden": {"prompt": ["PROMPT"]}},
            "input_order": {"required": ["model", "seed", "sampler_name"], "optional": ["file"]},
            "output": ["NUM"], "output_is_list": [False], "output_node": False}
    d = H.NodeDef.from_object_info("X", info)
    assert [(s.name, s.kind) for s in d.widget_slots()] == [
        ("seed", "value"), (None, "control"), ("sampler_name", "value"), ("file", "value"), (None, "upload")]
    assert d.input("file").combo_options == ["x"] and d.hidden == {"prompt": "PROMPT"}


# ================================================================== validation
def test_valid_graph_has_no_problems():
    assert H.validate_ui(basic_graph(), DEFS) == []


def test_validator_catches_unknown_node():
    g = basic_graph()
    g["nodes"].append(node(77, "Mystery", [], [], []))
    assert any("unknown node type 'Mystery'" in p for p in H.validate_ui(g, DEFS))


def test_validator_catches_bad_link_type():
    g = basic_graph()
    # feed the TXT output into Sink.x (NUM)
    g["nodes"][1]["outputs"][0]["links"], g["nodes"][1]["outputs"][1]["links"] = [], [9]
    g["links"][1] = [9, 20, 1, 31, 0, "TXT"]
    problems = H.validate_ui(g, DEFS)
    assert any("is TXT but Sink.x expects NUM" in p for p in problems), problems


def test_validator_catches_widget_range_combo_and_type():
    for widgets, needle in [((42, "fixed", 0, 3.5, "euler", "p", 1.0), "0 is below min 1"),
                            ((42, "fixed", 8, 30.0, "euler", "p", 1.0), "30.0 is above max 20.0"),
                            ((42, "fixed", 8, 3.5, "heun", "p", 1.0), "'heun' is not one of ['euler', 'dpmpp']"),
                            ((42, "fixed", "many", 3.5, "euler", "p", 1.0), "cannot convert 'many' to INT"),
                            ((42, "fixed", 8, 3.5, "euler", 5, 1.0), "5 is not a string"),
                            ((-1, "fixed", 8, 3.5, "euler", "p", 1.0), "-1 is below min 0")]:
        problems = H.validate_ui(basic_graph(widgets=widgets), DEFS)
        assert any(needle in p for p in problems), (needle, problems)


def test_validator_strict_widget_count():
    problems = H.validate_ui(basic_graph(widgets=(42, "fixed", 8)), DEFS)
    assert any("3 widgets_values for 7 widgets" in p for p in problems)
    assert H.validate_ui(basic_graph(widgets=(42, "fixed", 8)), DEFS, strict=False) == []


def test_validator_requires_an_output_node_and_required_inputs():
    g = graph([src_node(3, [])], [])
    assert any("no output node" in p for p in H.validate_ui(g, DEFS))
    g = basic_graph()
    g["nodes"][1]["inputs"][0]["link"] = None
    g["nodes"][0]["outputs"][0]["links"] = []
    g["links"] = [g["links"][1]]
    assert any("required input 'model' is missing" in p for p in H.validate_ui(g, DEFS))


def test_validate_inputs_skips_default_checks():
    class Picky(Src):
        @classmethod
        def VALIDATE_INPUTS(cls, value):
            return True if value == 1000 else f"value must be 1000, got {value}"

    defs = H.defs_from_classes({**CLASSES, "Src": Picky})
    api = {"1": {"class_type": "Src", "inputs": {"value": 1000}}, "2": {"class_type": "Sink", "inputs": {"x": ["1", 0]}}}
    assert H.validate_api(api, defs) == []  # 1000 > max 100, but VALIDATE_INPUTS owns 'value'
    api["1"]["inputs"]["value"] = 5
    assert any("value must be 1000, got 5" in p for p in H.validate_api(api, defs))


# ================================================================== execution
def test_executor_runs_in_topological_order_with_hidden_inputs():
    Sink.seen.clear()
    api = H.ui_to_api(basic_graph(), DEFS)
    api["99"] = {"class_type": "Src", "inputs": {"value": 1}}  # feeds no output node: never runs
    res = H.execute(api, CLASSES)
    assert res.order == ["3", "20", "31"]
    assert Sink.seen == [("31", 13, None, True)]  # 5 + steps 8, inside inference_mode
    assert res.ui["31"] == {"value": [13]}
    assert res.output("20", 1) == "dpmpp:hello"


def test_executor_maps_over_lists():
    class Many:
        RETURN_TYPES = ("NUM",)
        OUTPUT_IS_LIST = (True,)
        FUNCTION = "run"

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {}}

        def run(self):
            return ([1, 2, 3],)

    class Collect:
        RETURN_TYPES = ()
        OUTPUT_NODE = True
        INPUT_IS_LIST = True
        FUNCTION = "run"
        got = None

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"x": ("NUM",)}}

        def run(self, x):
            Collect.got = x
            return {}

    classes = {"Many": Many, "Pass": Pass, "Collect": Collect}
    api = {"1": {"class_type": "Many", "inputs": {}}, "2": {"class_type": "Pass", "inputs": {"x": ["1", 0]}},
           "3": {"class_type": "Collect", "inputs": {"x": ["2", 0]}}}
    res = H.execute(api, classes)
    assert res.outputs["2"] == [[1, 2, 3]] and Collect.got == [1, 2, 3]


def test_executor_names_the_failing_node_and_detects_cycles():
    class Boom(Pass):
        def run(self, x):
            raise ValueError("bad x")

    api = {"1": {"class_type": "Src", "inputs": {"value": 1}}, "2": {"class_type": "Boom", "inputs": {"x": ["1", 0]}},
           "3": {"class_type": "Sink", "inputs": {"x": ["2", 0]}}}
    with pytest.raises(H.ExecutionError, match=r"node 2 \(Boom\) failed: ValueError: bad x"):
        H.execute(api, {**CLASSES, "Boom": Boom})
    cyc = {"1": {"class_type": "Pass", "inputs": {"x": ["2", 0]}}, "2": {"class_type": "Pass", "inputs": {"x": ["1", 0]}},
           "3": {"class_type": "Sink", "inputs": {"x": ["2", 0]}}}
    with pytest.raises(H.WorkflowError, match="cycle"):
        H.execute(cyc, CLASSES)


# ================================================================== whole workflow with fakes
class Gain:
    """A stand-in for a pack node: AUDIO in, AUDIO out (halved, resampled by decimation)."""
    RETURN_TYPES = ("AUDIO",)
    FUNCTION = "run"
    CATEGORY = "audio/AudioX"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"audio": ("AUDIO",), "gain": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 2.0})}}

    def run(self, audio, gain):
        w = audio["waveform"][..., ::2] * gain
        return ({"waveform": w, "sample_rate": audio["sample_rate"] // 2},)


def media_graph():
    la = node(1, "LoadAudio", [{"name": "audio", "type": "COMBO", "widget": {"name": "audio"}, "link": None}],
              [{"name": "AUDIO", "type": "AUDIO", "links": [1]}], ["tone.wav", None, None])
    gain = node(2, "Gain", [{"name": "audio", "type": "AUDIO", "link": 1}],
                [{"name": "AUDIO", "type": "AUDIO", "links": [2, 6]}], [0.25])
    prev = node(3, "PreviewAudio", [{"name": "audio", "type": "AUDIO", "link": 2}], [], [])
    lv = node(4, "LoadVideo", [], [{"name": "VIDEO", "type": "VIDEO", "links": [3]}], ["clip.mp4", "image"])
    comps = node(5, "GetVideoComponents", [{"name": "video", "type": "VIDEO", "link": 3}],
                 [{"name": "images", "type": "IMAGE", "links": [4]}, {"name": "audio", "type": "AUDIO", "links": []},
                  {"name": "fps", "type": "FLOAT", "links": [5]}], [])
    cv = node(6, "CreateVideo", [{"name": "images", "type": "IMAGE", "link": 4},
                                 {"name": "fps", "type": "FLOAT", "widget": {"name": "fps"}, "link": 5},
                                 {"name": "audio", "type": "AUDIO", "link": 6}],
              [{"name": "VIDEO", "type": "VIDEO", "links": [7]}], [30])
    sv = node(7, "SaveVideo", [{"name": "video", "type": "VIDEO", "link": 7}], [], ["video/test", "auto", "auto"])
    return graph([la, gain, prev, lv, comps, cv, sv],
                 [[1, 1, 0, 2, 0, "AUDIO"], [2, 2, 0, 3, 0, "AUDIO"], [3, 4, 0, 5, 0, "VIDEO"], [4, 5, 0, 6, 0, "IMAGE"],
                  [5, 5, 2, 6, 1, "FLOAT"], [6, 2, 0, 6, 2, "AUDIO"], [7, 6, 0, 7, 0, "VIDEO"]])


def test_run_workflow_with_fake_core_nodes(tmp_path):
    run = H.run_workflow(media_graph(), tmp_path, classes_extra={"Gain": Gain})
    (audio,) = [c.value for c in run.env.captured("audio")]
    assert audio["sample_rate"] == 22050 and tuple(audio["waveform"].shape) == (1, 2, 44100)
    # the synthesised tone has amplitude 0.5; gain 0.25 -> 0.125
    assert abs(float(audio["waveform"].abs().max()) - 0.125) < 2e-3
    (video,) = [c.value for c in run.env.captured("video")]
    assert video.audio is audio or torch.equal(video.audio["waveform"], audio["waveform"])
    assert video.images.shape[0] == 50 and float(video.frame_rate) == 25.0  # 2 s at 25 fps, fps linked
    assert run.api["6"]["inputs"]["fps"] == ["5", 2]
    run.settings = {"expect": {"sample_rate": 22050, "channels": 2, "min_seconds": 1.9, "max_seconds": 2.1}}
    H.check_expectations(run)
    run.settings = {"expect": {"sample_rate": 44100}}
    with pytest.raises(AssertionError, match="sample_rate 22050"):
        H.check_expectations(run)


def test_fake_sinks_enforce_the_audio_contract(tmp_path):
    class BadRate(Gain):
        def run(self, audio, gain):
            return ({"waveform": audio["waveform"], "sample_rate": 44100.0},)

    with pytest.raises(H.ExecutionError, match="sample_rate must be a positive int"):
        H.run_workflow(media_graph(), tmp_path, classes_extra={"Gain": BadRate})


def test_comfy_env_fixture_runs_api_graphs(comfy_env):
    comfy_fakes_mod = H.comfy_fakes
    comfy_fakes_mod.write_test_wav(comfy_env.input_dir / "a.wav", seconds=0.5, sample_rate=16000, channels=1)
    api = {"1": {"class_type": "LoadAudio", "inputs": {"audio": "a.wav"}},
           "2": {"class_type": "SaveAudio", "inputs": {"audio": ["1", 0], "filename_prefix": "x"}}}
    assert H.validate_api(api, H.defs_from_classes(comfy_env.classes)) == []
    H.execute(api, comfy_env.classes)
    (cap,) = comfy_env.captured("audio")
    assert cap.node_id == "2" and cap.value["sample_rate"] == 16000 and tuple(cap.value["waveform"].shape) == (1, 1, 8000)
    # the tone is a 440 Hz sine of amplitude 0.5: compare with an independent evaluation
    t = torch.arange(8000, dtype=torch.float64) / 16000
    ref = 0.5 * torch.sin(2 * torch.pi * 440.0 * t)
    assert float((cap.value["waveform"][0, 0].double() - ref).abs().max()) < 1e-4
    api["1"]["inputs"]["audio"] = "missing.wav"
    assert any("Invalid audio file: missing.wav" in p for p in H.validate_api(api, H.defs_from_classes(comfy_env.classes)))
