"""AudioX Dataset: a folder of audio files prepared for training one model.

Captions come from sidecar ``.txt`` files, a CSV/JSONL manifest (the official ``train_manifest``)
or the file names (:func:`audiox_core.training.session.collect_examples`); same-stem videos are
used.  The frozen encoders' outputs are computed once and cached on disk under keys of (file
content, encoder weights, parameters): epochs and later runs read them.
"""
from __future__ import annotations

import contextlib
import hashlib
import time

import torch

from ..audiox_core import conditions
from ..audiox_core.training import session
from ..audiox_core.errors import AudioXError, FieldError
from . import comfy_compat
from .common import (DATASET, MODEL, SYNCHFORMER, T5, DatasetBundle, ModelBundle, NodeError,
                     SynchformerBundle, T5Bundle, about_input, expect, node_error, node_function)
from .training import (HIDDEN, TRAIN_CATEGORY, CAPTION_SOURCES, MISSING_POLICIES, input_roots, resolve_folder,
                       cache_dir, display_path, file_stamp)


DATASET_REQUIRED_INPUTS = {
    "model": (MODEL, {"tooltip": "The model you will train: its VAE, video and audio conditioners "
                                 "encode the items (the dataset belongs to this model)."}),
    "t5": (T5, {"tooltip": "The model's T5 text encoder (AudioX T5 Loader), for the captions."}),
    "folder": ("STRING", {"default": "audiox_example_dataset",
                          "tooltip": "Folder of audio files (.wav .flac .mp3 .ogg ...; sub-folders "
                                     "included) inside ComfyUI's input folder: its name there (or "
                                     "an absolute path inside it). Paths elsewhere are refused."}),
    "captions": (CAPTION_SOURCES, {"default": "auto",
                                   "tooltip": "Where captions come from. auto: <name>.txt beside the "
                                              "file, else its manifest entry, else the file name. The "
                                              "other choices use only that source."}),
    "missing_captions": (MISSING_POLICIES, {"default": "error",
                                            "tooltip": "What to do with files the chosen source has "
                                                       "no caption for (not used with auto / file "
                                                       "name): stop with a list of them, caption them "
                                                       "with their file name, train them without text "
                                                       "(empty caption), or leave them out."}),
    "manifest": ("STRING", {"default": "",
                            "tooltip": "A CSV or JSONL manifest inside the folder (or another "
                                       "path inside ComfyUI's input folder; the files it lists must "
                                       "be there too). Empty: metadata.jsonl, metadata.csv or "
                                       "train_manifest*.jsonl if the folder has one."}),
    "videos": (["use", "ignore"], {"default": "use",
                                   "tooltip": "use: a video with the same name as an audio file "
                                              "(.mp4 .mov .mkv .webm .avi) is its video condition. "
                                              "ignore: train on audio and text only."}),
    "sync": (["zeros", "synchformer"], {"default": "zeros",
                                        "tooltip": "Sync features of videos for MAF / Turbo models: "
                                                   "zeros (as the official Turbo training and the demo "
                                                   "model) or computed with the connected "
                                                   "Synchformer. Ignored by models without a sync "
                                                   "branch."}),
}

DATASET_OPTIONAL_INPUTS = {
    "synchformer": (SYNCHFORMER, {"tooltip": "Synchformer (AudioX Synchformer Loader), when sync is "
                                             "'synchformer'."}),
}


class AudioXDataset:
    DISPLAY_NAME = "AudioX Dataset"
    DESCRIPTION = ("A folder of audio files for training, with captions from sidecar .txt files, a CSV/JSONL "
                   "manifest (the official train_manifest format works) or the file names, and optional "
                   "same-stem videos. The model's frozen encoders (VAE, T5, video) run once per file; their "
                   "outputs are cached on disk (keyed by file content and encoder weights), so epochs and later "
                   "runs are cheap.")
    CATEGORY = TRAIN_CATEGORY
    RETURN_TYPES = (DATASET, "STRING")
    RETURN_NAMES = ("dataset", "report")
    OUTPUT_TOOLTIPS = ("The prepared items, for AudioX Train LoRA / AudioX Distill with the same model.",
                       "How many items, where the captions came from, what was cached.")
    FUNCTION = "prepare"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": dict(DATASET_REQUIRED_INPUTS),
            "optional": dict(DATASET_OPTIONAL_INPUTS),
            "hidden": dict(HIDDEN),
        }

    @classmethod
    def VALIDATE_INPUTS(cls, folder=None, manifest=None):
        node = cls.DISPLAY_NAME
        if folder is None:  # linked from another node: checked when the node runs
            return True
        manifest = manifest or ""
        if not str(folder).strip():
            return f"{node}: input 'folder' is empty: give a folder of audio files"
        try:
            root = resolve_folder(folder)
        except AudioXError as e:
            return f"{node}: input 'folder': {e}"
        if not root.is_dir():
            return f"{node}: input 'folder': '{folder}' is not a folder (looked for {root})"
        from ..audiox_core.training.data import AUDIO_EXTS
        if not any(p.is_file() and p.suffix.lower() in AUDIO_EXTS for p in root.rglob("*")):
            return f"{node}: input 'folder': '{folder}' has no audio files ({' '.join(AUDIO_EXTS)})"
        if str(manifest).strip():
            try:
                mp = session.find_manifest(root, manifest, input_roots())
            except AudioXError as e:
                return f"{node}: input 'manifest': {e}"
            if not mp.is_file():
                return f"{node}: input 'manifest': '{manifest}' not found (looked for {mp})"
        return True

    @classmethod
    def IS_CHANGED(cls, folder="", manifest="", **_):
        """Re-run when a file of the folder changes (name, size or time), not only the widgets."""
        try:
            root = resolve_folder(folder)
        except AudioXError:
            return f"refused:{folder}"
        h = hashlib.sha256()
        if root.is_dir():
            for p in sorted(root.rglob("*")):
                if p.is_file():
                    h.update(file_stamp(p).encode())
        h.update(str(manifest).encode())
        return h.hexdigest()

    @node_function
    def prepare(self, model, t5, folder="audiox_example_dataset", captions="auto", missing_captions="error",
                manifest="", videos="use", sync="zeros", synchformer=None, unique_id=None):
        from ..audiox_core.training.data import CachePlan, prepare_dataset
        node = self.DISPLAY_NAME
        m = expect(model, ModelBundle, node, "model", "an AUDIOX_MODEL from AudioX Model Loader")
        t5b = expect(t5, T5Bundle, node, "t5", "an AUDIOX_T5 from AudioX T5 Loader")
        problem = self.VALIDATE_INPUTS(folder=folder, manifest=manifest)
        if problem is not True:
            raise NodeError(problem)
        root = resolve_folder(folder)
        try:
            examples, origins = session.collect_examples(root, captions, missing_captions, manifest, videos == "use",
                                                         input_roots())
        except FieldError as e:
            raise node_error(node, e.field, str(e)) from e
        with_video = sum(1 for ex in examples if ex.video is not None)
        sf = _synchformer_for(node, m, with_video, sync, synchformer)
        cdir = cache_dir()
        before = {p.name for p in cdir.glob("*.safetensors")} if cdir.is_dir() else set()
        cb = comfy_compat.make_progress_callback(None, unique_id)
        t0 = time.perf_counter()
        sf_ctx = sf.on_device() if sf is not None else contextlib.nullcontext()
        with m.on_device("conditioner", "vae"), t5b.on_device(), sf_ctx, session.preserved_state(m.model), \
                torch.inference_mode(False), torch.no_grad():
            with about_input(node, "t5"):
                conditions.encode_text(m.model, "", encoder=t5b.encoder)  # the T5 belongs to this model (width check)
            m.model.set_text_encoder(t5b.encoder)
            if sf is not None:
                m.model.set_synchformer(sf.module)
            with about_input(node, "folder"):
                data = prepare_dataset(examples, m.model, plan=CachePlan(sync=sync), cache_dir=cdir, callback=cb)
        report = _report(data, root, m, origins, with_video, sync, before, cdir, time.perf_counter() - t0)
        bundle = DatasetBundle(data, conditions.model_fingerprint(m.model), m.variant, str(root), report)
        return {"ui": {"text": [report]}, "result": (bundle, report)}



def _synchformer_for(node: str, bundle: ModelBundle, with_video: int, sync: str, synchformer):
    """The Synchformer the videos need (sync 'synchformer' on a sync-conditioned model), else None."""
    if with_video and bundle.model.video_conditioner is None:
        raise node_error(node, "videos", f"{with_video} file(s) have a video but {bundle.variant} has no video "
                         "condition: set 'videos' to 'ignore'")
    if not (with_video and bundle.needs_sync and sync == "synchformer"):
        return None
    if synchformer is None:
        raise node_error(node, "synchformer", f"is not connected: {bundle.variant} conditions videos on "
                         "Synchformer sync features — connect AudioX Synchformer Loader, or set 'sync' to 'zeros'")
    return expect(synchformer, SynchformerBundle, node, "synchformer", "an AUDIOX_SYNCHFORMER")


def _report(data, root, bundle: ModelBundle, origins: list, with_video: int, sync: str, before: set, cache,
            seconds: float) -> str:
    keys = {k for item in data.items for k in item.keys}
    reused = sum(1 for k in keys if f"{k}.safetensors" in before)
    counts = {o: origins.count(o) for o in dict.fromkeys(origins)}
    return "\n".join([
        f"{len(data)} items from {root} for {bundle.name} ({bundle.variant}); dataset hash {data.dataset_hash}",
        "captions: " + ", ".join(f"{n} {o}" for o, n in counts.items())
        + (f"; {with_video} with video (sync {sync if bundle.needs_sync else 'n/a'})" if with_video else ""),
        f"encoder cache: {reused} of {len(keys)} entries reused, {len(keys) - reused} computed in "
        f"{seconds:.1f} s ({display_path(cache)})"])

NODE_CLASS_MAPPINGS = {"AudioXDataset": AudioXDataset}
NODE_DISPLAY_NAME_MAPPINGS = {k: v.DISPLAY_NAME for k, v in NODE_CLASS_MAPPINGS.items()}
