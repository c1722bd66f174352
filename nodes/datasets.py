"""AudioX Dataset: a folder of audio files prepared for training one model.

Captions come from sidecar ``.txt`` files, a CSV/JSONL manifest (the official ``train_manifest``)
or the file names (:func:`audiox_core.training.session.collect_examples`); same-stem videos are
used.  The frozen encoders' outputs are computed once and cached on disk under keys of (file
content, encoder weights, parameters): epochs and later runs read them.
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path

import torch

from ..audiox_core import conditions
from ..audiox_core.errors import FieldError
from ..audiox_core.training import report, session
from . import comfy_compat
from .common import (DATASET, HIDDEN, MODEL, SYNCHFORMER, T5, DatasetBundle, ModelBundle, NodeError, SynchformerBundle,
                     T5Bundle, about_input, choice_input, expect, node_function, outputs, socket_input, string_input)
from .training import TRAIN_CATEGORY, cache_dir, display_path, input_roots

DATASET_REQUIRED_INPUTS = {
    "model": socket_input(MODEL, "The model you will train: its VAE, video and audio conditioners encode the items "
                          "(the dataset belongs to this model)."),
    "t5": socket_input(T5, "The model's T5 text encoder (AudioX T5 Loader), for the captions."),
    "folder": string_input("audiox_example_dataset", "Folder of audio files (.wav .flac .mp3 .ogg ...; sub-folders "
                           "included) inside ComfyUI's input folder: its name there (or an absolute path inside "
                           "it). Paths elsewhere are refused."),
    "captions": choice_input(session.CAPTION_SOURCES, "auto", "Where captions come from. auto: <name>.txt beside the "
                             "file, else its manifest entry, else the file name. The other choices use only that "
                             "source."),
    "missing_captions": choice_input(session.MISSING_POLICIES, "error", "What to do with files the chosen source has "
                                     "no caption for (not used with auto / file name): stop with a list of them, "
                                     "caption them with their file name, train them without text (empty caption), "
                                     "or leave them out."),
    "manifest": string_input("", "A CSV or JSONL manifest inside the folder (or another path inside ComfyUI's input "
                             "folder; the files it lists must be there too). Empty: metadata.jsonl, metadata.csv or "
                             "train_manifest*.jsonl if the folder has one."),
    "videos": choice_input(["use", "ignore"], "use", "use: a video with the same name as an audio file (.mp4 .mov "
                           ".mkv .webm .avi) is its video condition. ignore: train on audio and text only."),
    "sync": choice_input(["zeros", "synchformer"], "zeros", "Sync features of videos for MAF / Turbo models: zeros "
                         "(as the official Turbo training and the demo model) or computed with the connected "
                         "Synchformer. Ignored by models without a sync branch."),
}

DATASET_OPTIONAL_INPUTS = {
    "synchformer": socket_input(SYNCHFORMER, "Synchformer (AudioX Synchformer Loader), when sync is 'synchformer'."),
}


class AudioXDataset:
    DISPLAY_NAME = "AudioX Dataset"
    DESCRIPTION = ("A folder of audio files for training, with captions from sidecar .txt files, a CSV/JSONL "
                   "manifest (the official train_manifest format works) or the file names, and optional "
                   "same-stem videos. The model's frozen encoders (VAE, T5, video) run once per file; their "
                   "outputs are cached on disk (keyed by file content and encoder weights), so epochs and later "
                   "runs are cheap.")
    CATEGORY = TRAIN_CATEGORY
    RETURN_TYPES, RETURN_NAMES, OUTPUT_TOOLTIPS = outputs(
        (DATASET, "dataset", "The prepared items, for AudioX Train LoRA / AudioX Distill with the same model."),
        ("STRING", "report", "How many items, where the captions came from, what was cached."))
    FUNCTION = "prepare"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": dict(DATASET_REQUIRED_INPUTS), "optional": dict(DATASET_OPTIONAL_INPUTS),
                "hidden": dict(HIDDEN)}

    @classmethod
    def _folder(cls, folder, manifest) -> Path:
        """The dataset folder (a NodeError naming 'folder' or 'manifest')."""
        try:
            return session.dataset_folder(folder, manifest or "", input_roots())
        except FieldError as e:
            raise NodeError(f"{cls.DISPLAY_NAME}: input '{e.field}': {e}") from e

    @classmethod
    def VALIDATE_INPUTS(cls, folder=None, manifest=None):
        try:  # a folder linked from another node (None here) is checked when the node runs
            return folder is None or cls._folder(folder, manifest).is_dir()
        except NodeError as e:
            return str(e)

    @classmethod
    def IS_CHANGED(cls, folder="", manifest="", **_):
        """Re-run when a file of the folder changes (name, size or time), not only the widgets."""
        return session.folder_stamp(folder, manifest, input_roots())

    @node_function
    def prepare(self, model, t5, folder="audiox_example_dataset", captions="auto", missing_captions="error",
                manifest="", videos="use", sync="zeros", synchformer=None, unique_id=None):
        from ..audiox_core.training.data import CachePlan, prepare_dataset
        node = self.DISPLAY_NAME
        m = expect(model, ModelBundle, node, "model", "an AUDIOX_MODEL from AudioX Model Loader")
        t5b = expect(t5, T5Bundle, node, "t5", "an AUDIOX_T5 from AudioX T5 Loader")
        root = self._folder(folder, manifest)
        examples, origins = session.collect_examples(root, captions, missing_captions, manifest, videos == "use",
                                                     input_roots())
        with_video = sum(1 for ex in examples if ex.video is not None)
        needs_synchformer = session.check_video_conditions(m.model, m.variant, with_video, m.needs_sync, sync,
                                                           synchformer is not None)
        sf = expect(synchformer, SynchformerBundle, node, "synchformer", "an AUDIOX_SYNCHFORMER") \
            if needs_synchformer else None
        cdir = cache_dir()
        before = {p.name for p in cdir.glob("*.safetensors")} if cdir.is_dir() else set()
        callback = comfy_compat.make_progress_callback(None, unique_id)
        started = time.perf_counter()
        sf_ctx = sf.on_device() if sf is not None else contextlib.nullcontext()
        with m.on_device("conditioner", "vae"), t5b.on_device(), sf_ctx, session.preserved_state(m.model), \
                torch.inference_mode(False), torch.no_grad():
            with about_input(node, "t5"):
                conditions.encode_text(m.model, "", encoder=t5b.encoder)  # the T5 belongs to this model (width check)
            m.model.set_text_encoder(t5b.encoder)
            if sf is not None:
                m.model.set_synchformer(sf.module)
            with about_input(node, "folder"):
                data = prepare_dataset(examples, m.model, plan=CachePlan(sync=sync), cache_dir=cdir, callback=callback)
        text = report.dataset_report(data, root, f"{m.name} ({m.variant})", origins, with_video,
                                     sync if m.needs_sync else None, before, display_path(cdir),
                                     time.perf_counter() - started)
        bundle = DatasetBundle(data, conditions.model_fingerprint(m.model), m.variant, str(root), text)
        return {"ui": {"text": [text]}, "result": (bundle, text)}


NODE_CLASS_MAPPINGS = {"AudioXDataset": AudioXDataset}
