"""Run example graphs (workflows/*.json, UI format) without ComfyUI, and make their input media.

From the repository root::

    python -m runner workflows/text_to_audio.json --out out/
    python -m runner workflows/*.json --out out/ --device cuda
    python -m runner workflows/audio_inpainting.json --out out/ --set 6.ranges=0.5-1.5
    python -m runner --make-inputs path/to/ComfyUI/input     # the example media + training folder only

Each graph runs in-process: our nodes plus small stand-ins of the ComfyUI core nodes it uses
(runner/standins.py: Load Audio/Video/Image read from ``--inputs``; Save/Preview Audio write WAV,
Save Video MP4, Save/Preview Image PNG under ``--out/<graph name>/``).  Models come from
``--models`` (default ``./models``: ``models/audiox``, ``models/text_encoders``, ...) and the pack's
``models/demo`` (the shipped demo model, which the example graphs use).  The example media the graphs
name (``audiox_example_*``) and the example training folder (``audiox_example_dataset/``: bell and
drum clips with sidecar captions, two with videos) are rendered from the demo world when missing.
Training nodes write LoRAs / students into ``--models`` (``loras/``, ``audiox/``) and their
resumable state under ``--out/<graph name>/audiox_training/``.

The node pack is loaded the way ComfyUI loads it (runner/pack.py), once per process.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from audiox_core import media
from audiox_core.demo import captions, world
from audiox_core.errors import AudioXError
from audiox_core.media import spectrogram

from . import graph, standins
from .pack import load_pack


# =============================================================================================
# example media (rendered from the demo world; deterministic)
# =============================================================================================
#: file name -> (scene kind, seed, scene keyword arguments)
EXAMPLE_SCENES = {
    "audiox_example_events": ("event", 4, dict(count=3, noise=False)),
    "audiox_example_music": ("music", 103, dict(noise=False)),
    "audiox_example_image": ("event", 201, dict(n_types=1, count=2, noise=False)),
}
EXAMPLE_FILES = {
    "audiox_example_events.mp4": "audiox_example_events",
    "audiox_example_events.wav": "audiox_example_events",
    "audiox_example_music.wav": "audiox_example_music",
    "audiox_example_music.mp4": "audiox_example_music",
    "audiox_example_image.png": "audiox_example_image",
}
EXAMPLE_VIDEO_SIZE = 128

#: the example training set (the default folder of AudioX Dataset): clip name -> (seed, event count,
#: with a same-stem video).  Bell and drum scenes, captioned by sidecar .txt files.
EXAMPLE_DATASET = "audiox_example_dataset"
EXAMPLE_DATASET_CLIPS = {
    "bells_and_drums_01": (311, 2, True), "bells_and_drums_02": (312, 3, False),
    "bells_and_drums_03": (313, 2, False), "bells_and_drums_04": (314, 3, True),
    "bells_and_drums_05": (315, 1, False), "bells_and_drums_06": (316, 2, False),
}
DATASET_VIDEO_SIZE = 64
#: node type -> its widget naming a folder of the input directory (rendered when it is an example)
FOLDER_INPUTS = {"AudioXDataset": "folder"}


def example_scene(stem: str):
    import numpy as np
    kind, seed, kw = EXAMPLE_SCENES[stem]
    rng = np.random.default_rng(seed)
    if kind == "event":
        return world.sample_event_scene(rng, seed=seed, **kw)
    return world.sample_music_scene(rng, seed=seed, **kw)


def example_caption(stem: str) -> str:
    """The canonical caption of an example scene (what the example graphs prompt with)."""
    return captions.caption_canonical(example_scene(stem))


def make_example_media(path: Path) -> Path:
    """Render the example file ``path`` (its name must be one of :data:`EXAMPLE_FILES`)."""
    import torch
    path = Path(path)
    stem = EXAMPLE_FILES.get(path.name)
    if stem is None:
        raise ValueError(f"'{path.name}' is not an example file ({', '.join(sorted(EXAMPLE_FILES))})")
    spec = example_scene(stem)
    cfg = world.DEFAULT_CONFIG
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".png":
        img = world.render_image(spec, size=EXAMPLE_VIDEO_SIZE)
        spectrogram.write_png(path, img)
        return path
    audio = torch.from_numpy(world.render_audio(spec, cfg.sample_rate, spec.duration, 2, cfg.peak))
    if path.suffix == ".wav":
        media.save_wav(path, audio, cfg.sample_rate)
        return path
    frames = torch.from_numpy(world.render_video(spec, cfg.fps, spec.duration, EXAMPLE_VIDEO_SIZE))
    media.write_video(frames, cfg.fps, path, audio=audio, sr=cfg.sample_rate)
    return path


def dataset_scene(seed: int, count: int):
    import numpy as np
    return world.sample_event_scene(np.random.default_rng(seed), seed=seed, count=count,
                                    n_types=min(count, 2), categories=("bell", "drum"), noise=False)


def make_example_dataset(directory: Path, clips: Optional[Sequence[str]] = None, *, sample_rate: Optional[int] = None,
                         seconds: Optional[float] = None, videos: bool = True) -> Path:
    """Write the example training folder: ``<clip>.wav`` + ``<clip>.txt`` (its canonical caption)
    for every clip of :data:`EXAMPLE_DATASET_CLIPS` (or ``clips``), and ``<clip>.mp4`` (the
    scene's video, no sound) for those marked so.  ``sample_rate`` / ``seconds`` default to the
    demo world's (16 kHz, 4 s); tests pass smaller ones.  Existing files are kept."""
    import torch
    cfg = world.DEFAULT_CONFIG
    sr = int(sample_rate or cfg.sample_rate)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name in clips or list(EXAMPLE_DATASET_CLIPS):
        seed, count, with_video = EXAMPLE_DATASET_CLIPS[name]
        spec = dataset_scene(seed, count)
        dur = float(seconds or spec.duration)
        wav, txt, mp4 = directory / f"{name}.wav", directory / f"{name}.txt", directory / f"{name}.mp4"
        if not wav.exists():
            media.save_wav(wav, torch.from_numpy(world.render_audio(spec, sr, dur, 2, cfg.peak)), sr)
        if not txt.exists():
            txt.write_text(captions.caption_canonical(spec) + "\n", encoding="utf-8")
        if videos and with_video and not mp4.exists():
            frames = torch.from_numpy(world.render_video(spec, cfg.fps, dur, DATASET_VIDEO_SIZE))
            media.write_video(frames, cfg.fps, mp4)
    return directory


def make_inputs(directory: Path, names: Optional[Sequence[str]] = None) -> list[Path]:
    """Write the example media (all, or ``names``) into ``directory`` unless already there; with
    no ``names`` also the example training folder :data:`EXAMPLE_DATASET`."""
    out = []
    for name in names or sorted(EXAMPLE_FILES):
        p = Path(directory) / name
        if not p.exists():
            make_example_media(p)
        out.append(p)
    if not names:
        out.append(make_example_dataset(Path(directory) / EXAMPLE_DATASET))
    return out


# =============================================================================================
# running graphs
# =============================================================================================
@dataclass
class HeadlessRun:
    workflow: Path
    out_dir: Path
    api: dict
    written: list = field(default_factory=list)
    ui: dict = field(default_factory=dict)
    seconds: float = 0.0


def _parse_override(s: str) -> tuple[str, str, Any]:
    key, _, value = s.partition("=")
    nid, _, name = key.partition(".")
    if not nid or not name or not _:
        raise ValueError(f"--set expects NODE_ID.INPUT=VALUE, got {s!r}")
    try:
        v = json.loads(value)
    except ValueError:
        v = value
    return nid, name, v


def run_workflow_file(workflow: Path, out_dir: Path, *, inputs_dir: Optional[Path] = None,
                      overrides: Sequence[tuple[str, str, Any]] = (), make_missing_inputs: bool = True) -> HeadlessRun:
    """Validate, convert and execute one UI-format graph; returns what was written."""
    node_classes = load_pack(fresh=False).NODE_CLASS_MAPPINGS
    workflow = Path(workflow)
    wf = json.loads(workflow.read_text(encoding="utf-8"))
    out_dir = Path(out_dir)
    inputs_dir = Path(inputs_dir) if inputs_dir else out_dir / "inputs"
    inputs_dir.mkdir(parents=True, exist_ok=True)
    env = standins.Env(inputs_dir, out_dir, out_dir / "preview", write_files=True)
    prev = standins.set_env(env)
    # nodes that read folders of the input directory (AudioX Dataset) and write training state
    # into the output directory find them through comfy_compat's fallbacks
    saved_env = {k: os.environ.get(k) for k in ("AUDIOX_INPUT_DIR", "AUDIOX_OUTPUT_DIR")}
    os.environ["AUDIOX_INPUT_DIR"], os.environ["AUDIOX_OUTPUT_DIR"] = str(inputs_dir.resolve()), str(out_dir.resolve())
    try:
        for n in wf.get("nodes") or []:
            field_name = standins.MEDIA_INPUTS.get(n.get("type"))
            wv = n.get("widgets_values")
            if field_name is None or n.get("mode", 0) in (graph.MUTED, graph.BYPASSED):
                continue
            name = wv.get(field_name) if isinstance(wv, dict) else (wv or [None])[0]
            if isinstance(name, str) and not env.input_path(name).exists():
                if make_missing_inputs and name in EXAMPLE_FILES:
                    make_example_media(env.input_path(name))
                else:
                    raise graph.WorkflowError(f"node {n.get('id')} ({n.get('type')}) reads '{name}', which is not in "
                                          f"{inputs_dir}")
        for n in wf.get("nodes") or []:
            field_name = FOLDER_INPUTS.get(n.get("type"))
            if field_name is None or n.get("mode", 0) in (graph.MUTED, graph.BYPASSED) or not make_missing_inputs:
                continue
            wv = n.get("widgets_values")
            name = wv.get(field_name) if isinstance(wv, dict) else None
            if not isinstance(wv, dict) and wv and isinstance(wv[0], str):
                name = wv[0]  # the folder is the node's first widget
            if name == EXAMPLE_DATASET and not (inputs_dir / name).exists():
                make_example_dataset(inputs_dir / name)
        classes = {**standins.CORE_NODES, **node_classes}
        defs = graph.defs_from_classes(classes)
        problems = graph.validate_ui(wf, defs, strict=False)
        if problems:
            raise graph.WorkflowError(f"{workflow.name} is not valid here:\n  " + "\n  ".join(problems))
        api = graph.ui_to_api(wf, defs)
        for nid, name, value in overrides:
            if nid not in api:
                raise graph.WorkflowError(f"--set names node {nid}, which is not in {workflow.name}")
            api[nid]["inputs"][name] = value
        problems = graph.validate_api(api, defs)
        if problems:
            raise graph.WorkflowError(f"{workflow.name} is not valid here:\n  " + "\n  ".join(problems))
        t0 = time.time()
        result = graph.execute(api, classes, extra_pnginfo={"workflow": wf})
        return HeadlessRun(workflow, out_dir, api, list(env.written), result.ui, time.time() - t0)
    finally:
        standins.set_env(prev)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m runner", description=__doc__.split("\n")[0])
    ap.add_argument("workflows", nargs="*", type=Path, help="UI-format workflow files (workflows/*.json)")
    ap.add_argument("--out", type=Path, default=Path("output"), help="output folder (one subfolder per graph)")
    ap.add_argument("--inputs", type=Path, help="folder of the input media (default: OUT/inputs)")
    ap.add_argument("--models", type=Path, help="models root with audiox/, text_encoders/, clip_vision/ "
                                                "(default: ./models); the pack's models/demo is always searched")
    ap.add_argument("--device", help="compute device, e.g. cuda or cpu (default: cpu)")
    ap.add_argument("--set", action="append", default=[], metavar="NODE.INPUT=VALUE",
                    help="override a widget value of the API graph (JSON value or plain string); repeatable")
    ap.add_argument("--make-inputs", type=Path, metavar="DIR", help="write the example media into DIR and exit")
    return ap


def run_cli(args: argparse.Namespace) -> int:
    if args.make_inputs:
        for p in make_inputs(args.make_inputs):
            print(f"wrote {p}")
        if not args.workflows:
            return 0
    if not args.workflows:
        print("error: give workflow files (or --make-inputs DIR)", file=sys.stderr)
        return 2
    try:
        overrides = [_parse_override(s) for s in args.set]
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    status = 0
    for wf in args.workflows:
        out = args.out / wf.stem
        try:
            run = run_workflow_file(wf, out, inputs_dir=args.inputs, overrides=overrides)
        except graph.ExecutionError as e:
            print(f"{wf.name}: FAILED — {e.error if isinstance(e.error, AudioXError) else e}", file=sys.stderr)
            status = 1
            continue
        except (graph.WorkflowError, AudioXError, OSError) as e:
            print(f"{wf.name}: FAILED — {e}", file=sys.stderr)
            status = 1
            continue
        print(f"{wf.name}: ran in {run.seconds:.1f} s")
        for nid, ui in sorted(run.ui.items(), key=lambda kv: int(kv[0]) if kv[0].isdigit() else 0):
            for text in ui.get("text", []) or []:
                print("  [node %s] %s" % (nid, str(text).replace("\n", "\n    ")))
        for p in run.written:
            print(f"  wrote {p}")
    return status


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``python -m runner``."""
    args = _parser().parse_args(argv)
    if args.models:
        os.environ["AUDIOX_MODELS_DIR"] = str(args.models.resolve())
    if args.device:
        os.environ["AUDIOX_DEVICE"] = args.device
    return run_cli(args)
