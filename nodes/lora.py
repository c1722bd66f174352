"""LoRA nodes: AudioX Train LoRA (fine-tuning with the model's own objective, the paper's input
masking and CFG dropout: :class:`audiox_core.training.Trainer`) and AudioX LoRA Loader (files of
models/loras or a LoRA trained in the graph, with a strength, chainable, optionally merged).
"""
from __future__ import annotations

from pathlib import Path

from ..audiox_core.acceleration import has_fp8_weights
from ..audiox_core.errors import AudioXError, CheckpointError
from ..audiox_core.training import Trainer, lora as lora_files, report, session
from . import comfy_compat
from .common import (CATEGORY, DATASET, HIDDEN, LORA, MODEL, LoRAValue, ModelBundle, about_input, bool_input,
                     choice_input, expect, float_input, int_input, node_error, node_function, outputs, socket_input,
                     string_input)
from .training import (PRECISION_TOOLTIP, PRECISIONS, SAVE_EVERY_TOOLTIP, TRAIN_CATEGORY, OutputNameCheck,
                       display_path, live_view, loss_image, output_file, run_precision, run_training,
                       state_dir)

NONE = "none"
MASK_TOOLTIP = "Probability of hiding an item's {} (paper: {})."

TRAIN_LORA_REQUIRED_INPUTS = {
    "model": socket_input(MODEL, "The model to fine-tune (AudioX Model Loader). It is not changed."),
    "dataset": socket_input(DATASET, "Items prepared for this model (AudioX Dataset)."),
    "output_name": string_input("audiox_lora", "File name in models/loras (without .safetensors; sub-folders with "
                                "'/'). An existing file of that name is replaced."),
    "steps": int_input(1000, 1, 1_000_000, "Optimizer steps in total (a resumed run continues up to this).", step=1),
    "learning_rate": float_input(1e-4, 1e-7, 1.0, 1e-7, "AdamW learning rate (1e-4 is a good start for LoRAs)."),
    "rank": int_input(16, 1, 512, "LoRA rank r: capacity of each adapter (4–64 is typical).", step=1),
    "alpha": float_input(0.0, 0.0, 4096.0, 0.5, "LoRA alpha; the update is scaled by alpha / rank. 0 = rank "
                         "(scale 1)."),
    "dropout": float_input(0.0, 0.0, 0.9, 0.01, "Dropout on the adapters' input during training."),
    "targets": choice_input(session.LORA_TARGETS, "all", "Which projections get adapters: attention (q/k/v/out), "
                            "feed-forward, or all (+ the MMDiT's modulation)."),
    "include_maf": bool_input(False, "Also put adapters on the MAF fusion block (MAF models)."),
    "batch_size": int_input(1, 1, 64, "Items per micro-batch (each a random crop of one window).", step=1),
    "grad_accum": int_input(1, 1, 256, "Micro-batches per optimizer step (effective batch = batch_size × grad_accum).",
                            step=1),
    "warmup_steps": int_input(0, 0, 100_000, "Linear learning-rate warm-up over this many steps.", step=1),
    "precision": choice_input(PRECISIONS, "auto", PRECISION_TOOLTIP),
    "gradient_checkpointing": bool_input(True, "Recompute activations in the backward pass: much less memory, ~30% "
                                         "slower."),
    "ema": bool_input(False, "Keep an exponential moving average of the LoRA weights and save that (smoother results "
                      "for long runs)."),
    "mask_video": float_input(0.6, 0.0, 1.0, 0.05, MASK_TOOLTIP.format("video", 0.6)),
    "mask_text": float_input(0.2, 0.0, 1.0, 0.05, MASK_TOOLTIP.format("caption", 0.2)),
    "mask_audio": float_input(0.6, 0.0, 1.0, 0.05, MASK_TOOLTIP.format("audio prompt", 0.6)),
    "cfg_dropout": float_input(0.1, 0.0, 1.0, 0.01, "Probability of training an item unconditionally (all-zero "
                               "context, what CFG's unconditional branch sees; official 0.1)."),
    "seed": int_input(0, 0, 0xFFFFFFFFFFFFFFFF, "Seed of the adapter init, item order, crops, noise and masking: the "
                      "same seed gives the same LoRA.", control_after_generate=False),
    "resume": bool_input(True, "On: continue from the newest checkpoint of this output_name (after Cancel, or to "
                         "train further by raising steps). Off: start over."),
    "save_every": int_input(250, 0, 1_000_000, SAVE_EVERY_TOOLTIP, step=1),
}

TRAIN_LORA_OPTIONAL_INPUTS = {
    "preview_every": int_input(0, 0, 1_000_000, "Every this many steps, generate one short clip with the LoRA so far "
                               "(the first item's conditions, 8 steps, seed 0) and play it in the node's live view. "
                               "0: off.", step=1),
}


class AudioXTrainLoRA(OutputNameCheck):
    DISPLAY_NAME = "AudioX Train LoRA"
    DESCRIPTION = ("Fine-tunes a LoRA on a prepared dataset with the model's own objective (v or rectified flow), "
                   "the paper's input masking and CFG dropout; AdamW with warm-up, gradient accumulation, "
                   "autocast, gradient checkpointing and optional EMA. Saves models/loras/<output_name>.safetensors "
                   "(with its base model's fingerprint) and resumable checkpoints; Cancel saves the last completed "
                   "step. The loaded model is not changed: the output model applies the LoRA on top of it.")
    CATEGORY = TRAIN_CATEGORY
    RETURN_TYPES, RETURN_NAMES, OUTPUT_TOOLTIPS = outputs(
        (MODEL, "model", "The same model with the trained LoRA applied (for the encoders, fusion and samplers)."),
        (LORA, "lora", "The trained LoRA, e.g. for AudioX LoRA Loader's 'lora' input (another strength, merged)."),
        ("IMAGE", "loss", "The loss curve (raw and smoothed)."),
        ("STRING", "report", "What was trained, the loss, where the files are."))
    FUNCTION = "train"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": dict(TRAIN_LORA_REQUIRED_INPUTS), "optional": dict(TRAIN_LORA_OPTIONAL_INPUTS),
                "hidden": dict(HIDDEN)}

    @node_function
    def train(self, model, dataset, output_name="audiox_lora", steps=1000, learning_rate=1e-4, rank=16, alpha=0.0,
              dropout=0.0, targets="all", include_maf=False, batch_size=1, grad_accum=1, warmup_steps=0,
              precision="auto", gradient_checkpointing=True, ema=False, mask_video=0.6, mask_text=0.2,
              mask_audio=0.6, cfg_dropout=0.1, seed=0, resume=True, save_every=250, preview_every=0,
              unique_id=None):
        node = self.DISPLAY_NAME
        name, m, ds = self._checked(model, dataset, output_name=output_name, learning_rate=learning_rate)
        session.check_lora_targets(m.model, m.variant, targets, include_maf)
        with about_input(node, "output_name"):
            run_dir = state_dir("lora", name)
        dst = output_file(node, "loras", name)
        cfg = session.lora_config(name, steps=steps, learning_rate=learning_rate, rank=rank, alpha=alpha,
                                  dropout=dropout, targets=targets, include_maf=include_maf, seed=seed,
                                  batch_size=batch_size, grad_accum=grad_accum, warmup_steps=warmup_steps,
                                  precision=run_precision(precision), ema=ema, save_every=save_every,
                                  gradient_checkpointing=gradient_checkpointing, mask_video=mask_video,
                                  mask_text=mask_text, mask_audio=mask_audio, cfg_dropout=cfg_dropout)
        trainer, start, seconds = run_training(
            node, m, lambda: Trainer(m.model, ds.data, cfg, out_dir=run_dir), run_dir=run_dir,
            resume=resume, src=run_dir / f"{cfg.name}.safetensors", dst=dst,
            progress=live_view(unique_id, "LoRA", m.sample_rate, preview_every))
        with about_input(node, "output_name"):
            lora = lora_files.load_lora(dst, m.model, attach=False, device=comfy_compat.unet_offload_device())
        text = report.lora_report(name, lora, targets, include_maf, f"{m.name} ({m.variant})", trainer, start, cfg,
                                  len(ds.data), seed, seconds, display_path(dst), display_path(run_dir))
        value = LoRAValue(lora, str(dst), name, text.split("\n")[0])
        out_model = m.with_loras(((lora, 1.0),), False, f"{m.name} + {name}")
        image = loss_image(list(trainer.history), [("loss", f"LoRA '{name}' loss")])
        return {"ui": {"text": [text]}, "result": (out_model, value, image, text)}


class AudioXLoRALoader:
    DISPLAY_NAME = "AudioX LoRA Loader"
    DESCRIPTION = ("Applies a LoRA (a file of models/loras, or one trained in the graph) to an AudioX model with a "
                   "strength. Chain several loaders for several LoRAs. The loaded model itself is not changed: inside "
                   "ComfyUI the LoRAs are weight patches on a clone (applied when the output model is loaded, "
                   "removed when the plain model runs); elsewhere adapters attached while a node runs the output "
                   "model. A LoRA made for another model is refused.")
    CATEGORY = f"{CATEGORY}/loaders"
    RETURN_TYPES, RETURN_NAMES, OUTPUT_TOOLTIPS = outputs(
        (MODEL, "model", "The model with the LoRA(s) applied."),
        ("STRING", "info", "Which LoRAs are applied, at which strengths."))
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls):
        files = [f for f in comfy_compat.get_filename_list("loras") if f.lower().endswith(".safetensors")]
        return {
            "required": {
                "model": socket_input(MODEL, "The AudioX model (AudioX Model Loader or another LoRA loader)."),
                "lora_name": socket_input(files + [NONE], "LoRA file in models/loras (AudioX Train LoRA saves "
                                          "there). 'none': use the 'lora' input, or pass the model through."),
                "strength": float_input(1.0, -4.0, 4.0, 0.01, "Multiplier of the LoRA's update (0 = the base model "
                                        "exactly, 1 = as trained)."),
                "merge": bool_input(False, "Bake all LoRAs of the chain into the weights while the model runs "
                                    "(slightly faster sampling; the weights are restored bit-exactly afterwards). "
                                    "The last loader of a chain decides. Inside ComfyUI LoRAs are always weight "
                                    "patches, so this changes nothing there."),
                "allow_other_weights": bool_input(False, "Apply a LoRA trained on other weights of the same "
                                                  "architecture (e.g. Turbo base LoRA on the student). Off: refused."),
            },
            "optional": {"lora": socket_input(LORA, "A LoRA from AudioX Train LoRA; used instead of lora_name.")},
        }

    @classmethod
    def IS_CHANGED(cls, lora_name=NONE, **_):
        """Re-read a LoRA file that was re-trained under the same name."""
        if lora_name == NONE:
            return NONE
        try:
            return session.file_stamp(Path(comfy_compat.get_full_path("loras", lora_name)))
        except AudioXError:
            return lora_name

    @node_function
    def apply(self, model, lora_name=NONE, strength=1.0, merge=False, allow_other_weights=False, lora=None):
        node = self.DISPLAY_NAME
        m = expect(model, ModelBundle, node, "model", "an AUDIOX_MODEL from AudioX Model Loader")
        if has_fp8_weights(m.model):
            raise node_error(node, "model", "is loaded with fp8_e4m3fn weights; LoRAs need the model in fp32, fp16 "
                             "or bf16 (AudioX Model Loader dtype)")
        if lora is None and lora_name == NONE:
            info = "no LoRA chosen: the model passes through" + lora_files.stack_summary(m.loras, m.merge_loras)
            return {"ui": {"text": [info]}, "result": (m, info)}
        where, label, chosen = self._chosen(node, lora_name, lora)
        try:
            lora_files.check_applicable(chosen, m.model, label=label, model_name=m.name, variant=m.variant,
                                        allow_other_weights=allow_other_weights)
        except CheckpointError as e:
            raise node_error(node, where, str(e)) from e
        stack = tuple(m.loras) + ((chosen, float(strength)),)
        out = m.with_loras(stack, bool(merge), f"{m.name} + {Path(label).stem}")
        info = lora_files.applied_info(label, chosen, strength, stack, merge)
        return {"ui": {"text": [info]}, "result": (out, info)}

    @staticmethod
    def _chosen(node: str, lora_name: str, lora) -> tuple:
        """``(input, label, LoRA)``: the ``lora`` input if connected, else the file ``lora_name``."""
        if lora is not None:
            value = expect(lora, LoRAValue, node, "lora", "an AUDIOX_LORA from AudioX Train LoRA")
            return "lora", value.name, value.lora
        with about_input(node, "lora_name"):
            path = Path(comfy_compat.get_full_path("loras", lora_name))
            return "lora_name", lora_name, lora_files.load_lora(path, None, attach=False,
                                                                device=comfy_compat.unet_offload_device())


NODE_CLASS_MAPPINGS = {"AudioXTrainLoRA": AudioXTrainLoRA, "AudioXLoRALoader": AudioXLoRALoader}
