"""Workflow graphs without ComfyUI: node definitions, UI→API conversion, validation, execution.

Used by the graph runner (runner/headless.py) and by the tests (tests/comfy_harness.py).  Imports
nothing of the pack or of ComfyUI, only torch.

* :class:`NodeDef` — a node's inputs/outputs, from a Python class (``INPUT_TYPES`` ...) or from
  an ``/object_info`` entry of a live server.
* :func:`ui_to_api` — the editor's UI-format JSON (``workflows/*.json``) to the API format that
  ``POST /prompt`` takes, done the way the ComfyUI frontend (1.27) does it: ``widgets_values`` are
  positional over the node's widget inputs in INPUT_TYPES order; INT (and COMBO) inputs with
  ``control_after_generate`` (or an INT named ``seed``/``noise_seed``) are followed by a
  frontend-only control value; ``*_upload`` combos by an upload-button value; links are resolved
  by id through Reroute nodes and bypassed nodes (mode 4, matched by type like the frontend);
  PrimitiveNode values are inlined; muted nodes (mode 2) and links from them are dropped;
  Note/MarkdownNote are ignored.  Dict-style ``widgets_values`` (VideoHelperSuite) are read by
  name.  Subgraphs are refused (flatten them).
* :func:`validate_ui` / :func:`validate_api` — static checks: known node types, type-correct
  links, widget values convertible / within min..max / in the combo list, required inputs present,
  at least one output node; the same rules as ComfyUI's ``execution.validate_inputs``.
* :func:`execute` — a minimal in-process executor: runs the API graph in topological order (only
  nodes that feed an OUTPUT_NODE), with ComfyUI's list-mapping semantics (INPUT_IS_LIST /
  OUTPUT_IS_LIST), hidden inputs, ``{"ui", "result"}`` returns, under ``torch.inference_mode()``
  as ComfyUI does.
"""
from __future__ import annotations

import asyncio
import contextlib
import inspect
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import torch

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
# input types the frontend (1.27) also renders as widgets; a web extension of ours that adds a
# widget type must add it here too
FRONTEND_WIDGET_TYPES = {"AUDIO_RECORD", "WEBCAM", "IMAGEUPLOAD", "AUDIOUPLOAD", "MARKDOWN"}
UPLOAD_OPTIONS = ("image_upload", "video_upload", "audio_upload", "animated_image_upload")
FRONTEND_ONLY = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
# widgets the frontend appends after the INPUT_TYPES ones (the audio player of core audio nodes)
FRONTEND_TRAILING_WIDGETS = {"LoadAudio": 1, "SaveAudio": 1, "PreviewAudio": 1, "SaveAudioMP3": 1,
                             "SaveAudioOpus": 1, "RecordAudio": 2, "LoadImage": 1}
MUTED, BYPASSED = 2, 4


class WorkflowError(Exception):
    """A workflow cannot be converted (unknown node, dangling link, unsupported feature)."""


class ExecutionError(Exception):
    """A node raised while the executor ran it; the message names the node."""

    def __init__(self, node_id: str, class_type: str, error: BaseException):
        super().__init__(f"node {node_id} ({class_type}) failed: {type(error).__name__}: {error}")
        self.node_id, self.class_type, self.error = node_id, class_type, error


# =============================================================================================
# node definitions
# =============================================================================================
@dataclass
class InputDef:
    name: str
    type: Any  # a type string, or a list of combo options
    options: dict
    category: str  # "required" | "optional"

    @property
    def type_name(self) -> str:
        return "COMBO" if isinstance(self.type, (list, tuple)) else str(self.type)

    @property
    def combo_options(self) -> Optional[list]:
        if isinstance(self.type, (list, tuple)):
            return list(self.type)
        if self.type == "COMBO":
            return list(self.options.get("options", []))
        return None

    @property
    def is_widget(self) -> bool:
        return (self.type_name in WIDGET_TYPES or self.type_name in FRONTEND_WIDGET_TYPES) \
            and not self.options.get("forceInput", False)

    @property
    def has_control_widget(self) -> bool:
        cag = self.options.get("control_after_generate")
        if cag is None:  # legacy frontend rule
            cag = self.type_name == "INT" and self.name in ("seed", "noise_seed")
        return bool(cag) and self.type_name in ("INT", "COMBO")

    @property
    def has_upload_widget(self) -> bool:
        return any(self.options.get(k) for k in UPLOAD_OPTIONS)

    def default(self) -> Any:
        """The value a freshly created frontend widget has."""
        if "default" in self.options:
            return self.options["default"]
        opts = self.combo_options
        if opts is not None:
            return opts[0] if opts else None
        return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}.get(self.type_name)


@dataclass
class WidgetSlot:
    name: Optional[str]  # None for frontend-only widgets
    kind: str  # "value" | "control" | "upload"
    input: Optional[InputDef] = None


@dataclass
class NodeDef:
    name: str
    inputs: list[InputDef]
    hidden: dict[str, str]
    outputs: list[str]
    output_is_list: list[bool]
    output_node: bool
    input_is_list: bool = False
    cls: Optional[type] = None

    @classmethod
    def from_class(cls, name: str, node_cls: type) -> "NodeDef":
        spec = node_cls.INPUT_TYPES()
        inputs = []
        for cat in ("required", "optional"):
            for n, v in (spec.get(cat) or {}).items():
                inputs.append(InputDef(n, v[0], dict(v[1]) if len(v) > 1 and v[1] else {}, cat))
        hidden = {k: (v[0] if isinstance(v, (list, tuple)) else v) for k, v in (spec.get("hidden") or {}).items()}
        outputs = [str(t) if not isinstance(t, list) else "COMBO" for t in getattr(node_cls, "RETURN_TYPES", ())]
        oil = list(getattr(node_cls, "OUTPUT_IS_LIST", [False] * len(outputs)))
        return cls(name, inputs, hidden, outputs, oil, bool(getattr(node_cls, "OUTPUT_NODE", False)),
                   bool(getattr(node_cls, "INPUT_IS_LIST", False)), node_cls)

    @classmethod
    def from_object_info(cls, name: str, info: Mapping) -> "NodeDef":
        order = info.get("input_order") or {}
        inputs = []
        for cat in ("required", "optional"):
            section = (info.get("input") or {}).get(cat) or {}
            for n in order.get(cat, list(section)):
                v = section[n]
                inputs.append(InputDef(n, v[0], dict(v[1]) if len(v) > 1 and v[1] else {}, cat))
        hidden_raw = (info.get("input") or {}).get("hidden") or {}
        hidden = {k: (v[0] if isinstance(v, (list, tuple)) else v) for k, v in hidden_raw.items()}
        outputs = [o if isinstance(o, str) else "COMBO" for o in info.get("output", [])]
        return cls(name, inputs, hidden, outputs, list(info.get("output_is_list") or [False] * len(outputs)),
                   bool(info.get("output_node", False)))

    def input(self, name: str) -> Optional[InputDef]:
        return next((i for i in self.inputs if i.name == name), None)

    def widget_slots(self, with_force_input: bool = False) -> list[WidgetSlot]:
        """Positions of ``widgets_values`` (``with_force_input``: the pre-1.16 frontend layout)."""
        slots = []
        for i in self.inputs:
            legacy_socket = with_force_input and i.type_name in WIDGET_TYPES and i.options.get("forceInput")
            if not i.is_widget and not legacy_socket:
                continue
            slots.append(WidgetSlot(None if legacy_socket else i.name, "value", i))
            if i.has_control_widget:
                slots.append(WidgetSlot(None, "control", i))
            if i.has_upload_widget:
                slots.append(WidgetSlot(None, "upload", i))
        return slots


def defs_from_classes(mapping: Mapping[str, type]) -> dict[str, NodeDef]:
    return {name: NodeDef.from_class(name, c) for name, c in mapping.items()}


def defs_from_object_info(object_info: Mapping[str, Mapping]) -> dict[str, NodeDef]:
    return {name: NodeDef.from_object_info(name, info) for name, info in object_info.items()}


# =============================================================================================
# UI format -> API format
# =============================================================================================
def types_compatible(a: Any, b: Any) -> bool:
    """LiteGraph's ``isValidConnection`` / ComfyUI's ``validate_node_input`` (non-strict), with ``*``."""
    if a in (None, "", "*", 0) or b in (None, "", "*", 0) or a == b:
        return True
    if not isinstance(a, str) or not isinstance(b, str):
        return False
    sa = {t.strip().upper() for t in a.split(",")}
    sb = {t.strip().upper() for t in b.split(",")}
    return bool(sa & sb) or "*" in sa or "*" in sb


@dataclass
class _Link:
    id: int
    src: str
    src_slot: int
    dst: str
    dst_slot: int
    type: Any


def _links(workflow: Mapping) -> dict[int, _Link]:
    out = {}
    for l in workflow.get("links") or []:
        if isinstance(l, dict):
            link = _Link(int(l["id"]), str(l["origin_id"]), int(l["origin_slot"]), str(l["target_id"]),
                         int(l["target_slot"]), l.get("type"))
        else:
            link = _Link(int(l[0]), str(l[1]), int(l[2]), str(l[3]), int(l[4]), l[5] if len(l) > 5 else None)
        out[link.id] = link
    return out


def _nodes(workflow: Mapping) -> dict[str, dict]:
    if "nodes" not in workflow:
        raise WorkflowError("not a UI-format workflow (no 'nodes' list); API-format graphs need no conversion")
    subgraph_ids = {sg.get("id") for sg in (workflow.get("definitions") or {}).get("subgraphs") or []}
    nodes = {}
    for n in workflow["nodes"]:
        if n.get("type") in subgraph_ids:
            raise WorkflowError(f"node {n.get('id')} is a subgraph instance; the test converter needs flat graphs")
        nodes[str(n["id"])] = n
    return nodes


def _widget_values(node: Mapping, d: NodeDef) -> dict[str, Any]:
    """Widget input name -> value, as the frontend would send it (defaults for missing ones)."""
    wv = node.get("widgets_values")
    values = {i.name: i.default() for i in d.inputs if i.is_widget}
    if isinstance(wv, dict):
        for name in values:
            if name in wv:
                values[name] = wv[name]
        return values
    wv = list(wv or [])
    slots = d.widget_slots()
    legacy = d.widget_slots(with_force_input=True)
    if len(legacy) != len(slots) and len(wv) == len(legacy):
        slots = legacy  # the frontend's migrateWidgetsValues: forceInput inputs used to hold a value
    for slot, value in zip(slots, wv):
        if slot.kind == "value" and slot.name is not None:
            values[slot.name] = value
    return values


def _bypass_input_index(node: Mapping, out_slot: int, target_type: Any) -> int:
    """Which input of a bypassed node feeds its output ``out_slot`` (frontend rule)."""
    inputs = node.get("inputs") or []
    outputs = node.get("outputs") or []
    out_type = outputs[out_slot].get("type") if out_slot < len(outputs) else None
    if target_type in ("*", "", None):
        return out_slot if len(inputs) > out_slot else 0
    if out_slot < len(inputs):
        t = inputs[out_slot].get("type")
        if types_compatible(t, out_type) and types_compatible(t, target_type):
            return out_slot
    for i, inp in enumerate(inputs):
        if inp.get("type") == target_type:
            return i
    for i, inp in enumerate(inputs):
        if types_compatible(inp.get("type"), out_type) and types_compatible(inp.get("type"), target_type):
            return i
    return -1


def _resolve(link_id: int, want_type: Any, nodes: dict, links: dict, seen: Optional[set] = None):
    """Follow a link to a real producer: ``("link", node_id, slot)``, ``("value", v)`` or None."""
    seen = set() if seen is None else seen
    if link_id in seen:
        raise WorkflowError(f"link {link_id} is part of a cycle through Reroute/bypassed nodes")
    seen.add(link_id)
    link = links.get(int(link_id))
    if link is None:
        raise WorkflowError(f"link {link_id} is referenced by a node but missing from 'links'")
    src = nodes.get(link.src)
    if src is None:
        raise WorkflowError(f"link {link_id} starts at node {link.src}, which does not exist")
    t = src.get("type")
    if t == "Reroute":
        inputs = src.get("inputs") or []
        up = inputs[0].get("link") if inputs else None
        return None if up is None else _resolve(up, want_type, nodes, links, seen)
    if t == "PrimitiveNode":
        wv = src.get("widgets_values")
        if not wv:
            raise WorkflowError(f"PrimitiveNode {link.src} has no value")
        return ("value", wv[0])
    if t in ("Note", "MarkdownNote"):
        raise WorkflowError(f"link {link_id} starts at a {t} node")
    if src.get("mode", 0) == BYPASSED:
        idx = _bypass_input_index(src, link.src_slot, want_type)
        if idx < 0:
            return None
        up = (src.get("inputs") or [])[idx].get("link")
        return None if up is None else _resolve(up, want_type, nodes, links, seen)
    return ("link", link.src, link.src_slot)


def ui_to_api(workflow: Mapping, defs: Mapping[str, NodeDef]) -> dict[str, dict]:
    """Convert a UI-format workflow to the API format (see the module docstring for the rules)."""
    nodes, links = _nodes(workflow), _links(workflow)
    api: dict[str, dict] = {}
    for nid, node in sorted(nodes.items(), key=lambda kv: int(kv[0]) if kv[0].lstrip("-").isdigit() else 0):
        t = node.get("type")
        if t in FRONTEND_ONLY or node.get("mode", 0) in (MUTED, BYPASSED):
            continue
        d = defs.get(t)
        if d is None:
            raise WorkflowError(f"node {nid} has unknown type '{t}'")
        inputs: dict[str, Any] = {}
        for name, value in _widget_values(node, d).items():
            inputs[name] = {"__value__": value} if isinstance(value, list) else value
        for inp in node.get("inputs") or []:
            if inp.get("link") is None:
                continue
            name = (inp.get("widget") or {}).get("name") or inp["name"]
            if d.input(name) is None:
                raise WorkflowError(f"node {nid} ({t}) has a link into unknown input '{name}'")
            got = _resolve(inp["link"], inp.get("type") or d.input(name).type_name, nodes, links)
            if got is None:
                continue
            if got[0] == "value":
                inputs[name] = got[1]
            else:
                inputs[name] = [got[1], got[2]]
        entry = {"class_type": t, "inputs": inputs}
        if node.get("title"):
            entry["_meta"] = {"title": node["title"]}
        api[nid] = entry
    # the frontend drops inputs that come from nodes it did not emit (muted ones)
    for entry in api.values():
        for name in [k for k, v in entry["inputs"].items() if _is_link(v) and v[0] not in api]:
            del entry["inputs"][name]
    return api


def _is_link(v: Any) -> bool:
    return isinstance(v, list) and len(v) == 2 and isinstance(v[0], str) and isinstance(v[1], int)


# =============================================================================================
# static validation
# =============================================================================================
def _check_value(inp: InputDef, value: Any) -> Optional[str]:
    if isinstance(value, dict) and "__value__" in value:
        value = value["__value__"]
    t = inp.type_name
    try:
        if t == "INT":
            if isinstance(value, float) and not value.is_integer():
                return f"{value!r} is not an integer"
            value = int(value)
        elif t == "FLOAT":
            value = float(value)
        elif t == "STRING":
            if not isinstance(value, str):
                return f"{value!r} is not a string"
        elif t == "BOOLEAN":
            if not isinstance(value, bool):
                return f"{value!r} is not a boolean"
    except (TypeError, ValueError) as e:
        return f"cannot convert {value!r} to {t}: {e}"
    if t in ("INT", "FLOAT"):
        if "min" in inp.options and value < inp.options["min"]:
            return f"{value} is below min {inp.options['min']}"
        if "max" in inp.options and value > inp.options["max"]:
            return f"{value} is above max {inp.options['max']}"
    opts = inp.combo_options
    if opts is not None and value not in opts:
        shown = opts if len(opts) <= 20 else f"a list of {len(opts)}"
        return f"{value!r} is not one of {shown}"
    return None


def _validate_inputs_args(cls: Optional[type]) -> tuple[set, bool]:
    fn = getattr(cls, "VALIDATE_INPUTS", None) if cls is not None else None
    if fn is None:
        return set(), False
    spec = inspect.getfullargspec(fn)
    return set(spec.args), spec.varkw is not None


def validate_api(api: Mapping[str, Mapping], defs: Mapping[str, NodeDef]) -> list[str]:
    """Problems in an API-format graph (empty list = valid), like ComfyUI's validate_prompt."""
    problems = []
    if not any(defs.get(e.get("class_type")) and defs[e["class_type"]].output_node for e in api.values()):
        problems.append("the graph has no output node (ComfyUI would refuse it: 'Prompt has no outputs')")
    for nid, entry in api.items():
        t = entry.get("class_type")
        d = defs.get(t)
        if d is None:
            problems.append(f"node {nid}: unknown node type '{t}'")
            continue
        where = f"node {nid} ({t})"
        inputs = entry.get("inputs", {})
        custom_args, custom_kwargs = _validate_inputs_args(d.cls)
        for name in inputs:
            if d.input(name) is None:
                problems.append(f"{where}: input '{name}' is not declared in INPUT_TYPES")
        for inp in d.inputs:
            if inp.name not in inputs:
                if inp.category == "required":
                    problems.append(f"{where}: required input '{inp.name}' is missing")
                continue
            v = inputs[inp.name]
            if isinstance(v, list):
                if not _is_link(v):
                    problems.append(f"{where}: input '{inp.name}' is a bad link {v!r}")
                    continue
                src = api.get(v[0])
                if src is None:
                    problems.append(f"{where}: input '{inp.name}' links to missing node {v[0]}")
                    continue
                sd = defs.get(src.get("class_type"))
                if sd is None:
                    continue
                if not 0 <= v[1] < len(sd.outputs):
                    problems.append(f"{where}: input '{inp.name}' links to output {v[1]} of node {v[0]} "
                                    f"({src['class_type']}), which has {len(sd.outputs)} outputs")
                    continue
                got = sd.outputs[v[1]]
                if "input_types" not in custom_args and not types_compatible(got, inp.type_name):
                    problems.append(f"{where}: input '{inp.name}' expects {inp.type_name} but node {v[0]} "
                                    f"({src['class_type']}) output {v[1]} is {got}")
                continue
            if inp.name in custom_args or custom_kwargs:
                continue  # ComfyUI skips the default checks for inputs VALIDATE_INPUTS takes
            msg = _check_value(inp, v)
            if msg:
                problems.append(f"{where}: input '{inp.name}': {msg}")
        if d.cls is not None and (custom_args or custom_kwargs):
            consts = {k: (v["__value__"] if isinstance(v, dict) and "__value__" in v else v)
                      for k, v in inputs.items() if not isinstance(v, list)}
            call = {k: v for k, v in consts.items() if custom_kwargs or k in custom_args}
            try:
                r = d.cls.VALIDATE_INPUTS(**call)
            except TypeError:
                r = True  # it wants linked values too; ComfyUI would pass them at run time
            if r is not True:
                problems.append(f"{where}: VALIDATE_INPUTS failed: {r}")
    return problems


def validate_ui(workflow: Mapping, defs: Mapping[str, NodeDef], strict: bool = True) -> list[str]:
    """Problems in a UI-format workflow, then in its API conversion (empty list = valid).

    ``strict`` also requires every node's ``widgets_values`` to have exactly the widget count of
    its definition (plus the known frontend-only trailing widgets of core nodes) and every
    link's declared type to equal its producer's output type.
    """
    problems = []
    try:
        nodes, links = _nodes(workflow), _links(workflow)
    except WorkflowError as e:
        return [str(e)]
    for nid, n in nodes.items():
        t = n.get("type")
        if t not in FRONTEND_ONLY and t not in defs:
            problems.append(f"node {nid}: unknown node type '{t}' (not in this pack nor a known core node)")
    for link in links.values():
        src, dst = nodes.get(link.src), nodes.get(link.dst)
        if src is None or dst is None:
            problems.append(f"link {link.id}: connects missing node {link.src if src is None else link.dst}")
            continue
        targets = [i for i in dst.get("inputs") or [] if i.get("link") == link.id]
        if not targets:
            problems.append(f"link {link.id}: node {link.dst} has no input holding this link")
            continue
        outs = src.get("outputs") or []
        if strict and (link.src_slot >= len(outs) or link.id not in (outs[link.src_slot].get("links") or [])):
            problems.append(f"link {link.id}: output {link.src_slot} of node {link.src} does not list it")
        sd, dd = defs.get(src.get("type")), defs.get(dst.get("type"))
        produced = sd.outputs[link.src_slot] if sd is not None and link.src_slot < len(sd.outputs) else None
        if sd is not None and produced is None:
            problems.append(f"link {link.id}: node {link.src} ({src['type']}) has no output {link.src_slot}")
        inp_name = (targets[0].get("widget") or {}).get("name") or targets[0].get("name")
        inp = dd.input(inp_name) if dd is not None else None
        if dd is not None and inp is None:
            problems.append(f"link {link.id}: node {link.dst} ({dst['type']}) has no input '{inp_name}'")
        if produced is not None and inp is not None and not types_compatible(produced, inp.type_name):
            problems.append(f"link {link.id}: {src['type']} output {link.src_slot} is {produced} but "
                            f"{dst['type']}.{inp_name} expects {inp.type_name}")
        if strict and produced is not None and link.type not in (None, produced, "*"):
            problems.append(f"link {link.id}: declared type {link.type} but {src['type']} output "
                            f"{link.src_slot} is {produced}")
    if strict:
        for nid, n in nodes.items():
            d = defs.get(n.get("type"))
            wv = n.get("widgets_values")
            if d is None or isinstance(wv, dict):
                continue
            want = len(d.widget_slots())
            extra = FRONTEND_TRAILING_WIDGETS.get(n["type"], 0)
            have = len(wv or [])
            if not want <= have <= want + extra:
                names = [s.name or f"<{s.kind}>" for s in d.widget_slots()]
                problems.append(f"node {nid} ({n['type']}): {have} widgets_values for {want} widgets {names}")
    if problems:
        return problems
    try:
        api = ui_to_api(workflow, defs)
    except WorkflowError as e:
        return [str(e)]
    return validate_api(api, defs)


# =============================================================================================
# in-process execution
# =============================================================================================
@dataclass
class ExecutionResult:
    outputs: dict[str, list[list]]  # node id -> one list of values per output slot
    ui: dict[str, dict]
    order: list[str]

    def output(self, node_id: str, slot: int = 0, index: int = 0) -> Any:
        return self.outputs[str(node_id)][slot][index]


def _needed_nodes(api: Mapping[str, Mapping], defs: Mapping[str, NodeDef]) -> set[str]:
    todo = [nid for nid, e in api.items() if defs[e["class_type"]].output_node]
    needed = set()
    while todo:
        nid = todo.pop()
        if nid in needed:
            continue
        needed.add(nid)
        todo.extend(v[0] for v in api[nid]["inputs"].values() if _is_link(v))
    return needed


def _topological(api: Mapping[str, Mapping], needed: set[str]) -> list[str]:
    order, state = [], {}

    def visit(nid, path):
        if state.get(nid) == 2:
            return
        if state.get(nid) == 1:
            raise WorkflowError(f"the graph has a cycle: {' -> '.join(path + [nid])}")
        state[nid] = 1
        for v in api[nid]["inputs"].values():
            if _is_link(v):
                visit(v[0], path + [nid])
        state[nid] = 2
        order.append(nid)

    for nid in sorted(needed, key=lambda s: (len(s), s)):
        visit(nid, [])
    return order


def _call(obj: Any, fn_name: str, kwargs: dict) -> Any:
    r = getattr(obj, fn_name)(**kwargs)
    if inspect.isawaitable(r):
        r = asyncio.run(_await(r))
    return r


async def _await(aw):
    return await aw


def execute(api: Mapping[str, Mapping], classes: Mapping[str, type], *, extra_pnginfo: Optional[dict] = None,
            inference_mode: bool = True) -> ExecutionResult:
    """Run ``api`` with the node ``classes``; raises :class:`ExecutionError` naming a failing node."""
    defs = defs_from_classes({e["class_type"]: classes[e["class_type"]] for e in api.values()})
    order = _topological(api, _needed_nodes(api, defs))
    outputs: dict[str, list[list]] = {}
    ui: dict[str, dict] = {}
    ctx = torch.inference_mode() if inference_mode else contextlib.nullcontext()
    with ctx:
        for nid in order:
            entry = api[nid]
            t = entry["class_type"]
            d, cls = defs[t], classes[t]
            args: dict[str, list] = {}
            for inp in d.inputs:
                if inp.name not in entry["inputs"]:
                    continue
                v = entry["inputs"][inp.name]
                if _is_link(v):
                    args[inp.name] = outputs[v[0]][v[1]]
                else:
                    if isinstance(v, dict) and "__value__" in v:
                        v = v["__value__"]
                    conv = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}.get(inp.type_name)
                    args[inp.name] = [conv(v) if conv else v]
            for key, kind in d.hidden.items():
                args[key] = [{"PROMPT": dict(api), "EXTRA_PNGINFO": extra_pnginfo, "UNIQUE_ID": nid}.get(kind)]
            obj = cls()
            fn = getattr(cls, "FUNCTION")
            results: list[Any] = []
            try:
                if d.input_is_list:
                    results.append(_call(obj, fn, args))
                else:
                    n = max((len(v) for v in args.values()), default=1)
                    if any(len(v) == 0 for v in args.values()):
                        n = 0
                    for i in range(n):
                        results.append(_call(obj, fn, {k: v[min(i, len(v) - 1)] for k, v in args.items()}))
            except Exception as e:  # noqa: BLE001 - re-raised with the node named
                raise ExecutionError(nid, t, e) from e
            slots: list[list] = [[] for _ in d.outputs]
            for r in results:
                if isinstance(r, dict):
                    if "ui" in r:
                        ui.setdefault(nid, {}).update(r["ui"])
                    r = r.get("result", ())
                r = tuple(r) if r is not None else ()
                if len(r) != len(d.outputs):
                    raise ExecutionError(nid, t, TypeError(f"returned {len(r)} values for RETURN_TYPES {tuple(d.outputs)}"))
                for k, value in enumerate(r):
                    if d.output_is_list[k] if k < len(d.output_is_list) else False:
                        slots[k].extend(value)
                    else:
                        slots[k].append(value)
            outputs[nid] = slots
    return ExecutionResult(outputs, ui, order)
