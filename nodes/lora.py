"""LoRA nodes: AudioX Train LoRA (fine-tuning with the model's own objective, the paper's input
masking and CFG dropout: :class:`audiox_core.training.Trainer`) and AudioX LoRA Loader (files of
models/loras or a LoRA trained in the graph, with a strength, chainable, optionally merged).
"""
from __future__ import annotations

from pathlib import Path

from ..audiox_core.errors import AudioXError, CheckpointError
from . import comfy_compat
from .common import (CATEGORY, DATASET, LORA, MODEL, LoRAValue, ModelBundle, about_input, expect, node_error,
                     node_function)
from .training import (HIDDEN, TRAIN_CATEGORY, PRECISIONS, PRECISION_TOOLTIP, TARGETS, NONE, output_file, output_name,
                       state_dir, resolve_precision, TrainProgress, lora_preview, check_dataset, check_plain_model,
                       loss_image, loss_summary, display_path, file_stamp, output_name_ok, OutputNameCheck,
                       run_training)


TRAIN_LORA_REQUIRED_INPUTS = {
    "model": (MODEL, {"tooltip": "The model to fine-tune (AudioX Model Loader). It is not changed."}),
    "dataset": (DATASET, {"tooltip": "Items prepared for this model (AudioX Dataset)."}),
    "output_name": ("STRING", {"default": "audiox_lora",
                               "tooltip": "File name in models/loras (without .safetensors; sub-folders "
                                          "with '/'). An existing file of that name is replaced."}),
    "steps": ("INT", {"default": 1000, "min": 1, "max": 1_000_000, "step": 1,
                      "tooltip": "Optimizer steps in total (a resumed run continues up to this)."}),
    "learning_rate": ("FLOAT", {"default": 1e-4, "min": 1e-7, "max": 1.0, "step": 1e-7,
                                "tooltip": "AdamW learning rate (1e-4 is a good start for LoRAs)."}),
    "rank": ("INT", {"default": 16, "min": 1, "max": 512, "step": 1,
                     "tooltip": "LoRA rank r: capacity of each adapter (4–64 is typical)."}),
    "alpha": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 4096.0, "step": 0.5,
                        "tooltip": "LoRA alpha; the update is scaled by alpha / rank. 0 = rank "
                                   "(scale 1)."}),
    "dropout": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 0.9, "step": 0.01,
                          "tooltip": "Dropout on the adapters' input during training."}),
    "targets": (TARGETS, {"default": "all",
                          "tooltip": "Which projections get adapters: attention (q/k/v/out), "
                                     "feed-forward, or all (+ the MMDiT's modulation)."}),
    "include_maf": ("BOOLEAN", {"default": False,
                                "tooltip": "Also put adapters on the MAF fusion block (MAF models)."}),
    "batch_size": ("INT", {"default": 1, "min": 1, "max": 64, "step": 1,
                           "tooltip": "Items per micro-batch (each a random crop of one window)."}),
    "grad_accum": ("INT", {"default": 1, "min": 1, "max": 256, "step": 1,
                           "tooltip": "Micro-batches per optimizer step (effective batch = batch_size "
                                      "× grad_accum)."}),
    "warmup_steps": ("INT", {"default": 0, "min": 0, "max": 100_000, "step": 1,
                             "tooltip": "Linear learning-rate warm-up over this many steps."}),
    "precision": (PRECISIONS, {"default": "auto", "tooltip": PRECISION_TOOLTIP}),
    "gradient_checkpointing": ("BOOLEAN", {"default": True,
                                           "tooltip": "Recompute activations in the backward pass: "
                                                      "much less memory, ~30% slower."}),
    "ema": ("BOOLEAN", {"default": False,
                        "tooltip": "Keep an exponential moving average of the LoRA weights and save "
                                   "that (smoother results for long runs)."}),
    "mask_video": ("FLOAT", {"default": 0.6, "min": 0.0, "max": 1.0, "step": 0.05,
                             "tooltip": "Probability of hiding an item's video (paper: 0.6)."}),
    "mask_text": ("FLOAT", {"default": 0.2, "min": 0.0, "max": 1.0, "step": 0.05,
                            "tooltip": "Probability of hiding an item's caption (paper: 0.2)."}),
    "mask_audio": ("FLOAT", {"default": 0.6, "min": 0.0, "max": 1.0, "step": 0.05,
                             "tooltip": "Probability of hiding an item's audio prompt (paper: 0.6)."}),
    "cfg_dropout": ("FLOAT", {"default": 0.1, "min": 0.0, "max": 1.0, "step": 0.01,
                              "tooltip": "Probability of training an item unconditionally (all-zero "
                                         "context, what CFG's unconditional branch sees; official "
                                         "0.1)."}),
    "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": False,
                     "tooltip": "Seed of the adapter init, item order, crops, noise and masking: the same "
                                "seed gives the same LoRA."}),
    "resume": ("BOOLEAN", {"default": True,
                           "tooltip": "On: continue from the newest checkpoint of this output_name (after "
                                      "Cancel, or to train further by raising steps). Off: start over."}),
    "save_every": ("INT", {"default": 250, "min": 0, "max": 1_000_000, "step": 1,
                           "tooltip": "Write a resumable checkpoint every this many steps (0: only at the "
                                      "end and on Cancel)."}),
}

TRAIN_LORA_OPTIONAL_INPUTS = {
    "preview_every": ("INT", {"default": 0, "min": 0, "max": 1_000_000, "step": 1,
                              "tooltip": "Every this many steps, generate one short clip with the LoRA "
                                         "so far (the first item's conditions, 8 steps, seed 0) and "
                                         "play it in the node's live view. 0: off."}),
}


class AudioXTrainLoRA(OutputNameCheck):
    DISPLAY_NAME = "AudioX Train LoRA"
    DESCRIPTION = ("Fine-tunes a LoRA on a prepared dataset with the model's own objective (v or rectified flow), "
                   "the paper's input masking and CFG dropout; AdamW with warm-up, gradient accumulation, "
                   "autocast, gradient checkpointing and optional EMA. Saves models/loras/<output_name>.safetensors "
                   "(with its base model's fingerprint) and resumable checkpoints; Cancel saves the last completed "
                   "step. The loaded model is not changed: the output model applies the LoRA on top of it.")
    CATEGORY = TRAIN_CATEGORY
    RETURN_TYPES = (MODEL, LORA, "IMAGE", "STRING")
    RETURN_NAMES = ("model", "lora", "loss", "report")
    OUTPUT_TOOLTIPS = ("The same model with the trained LoRA applied (for the encoders, fusion and samplers).",
                       "The trained LoRA, e.g. for AudioX LoRA Loader's 'lora' input (another strength, merged).",
                       "The loss curve (raw and smoothed).",
                       "What was trained, the loss, where the files are.")
    FUNCTION = "train"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": dict(TRAIN_LORA_REQUIRED_INPUTS),
            "optional": dict(TRAIN_LORA_OPTIONAL_INPUTS),
            "hidden": dict(HIDDEN),
        }

    @node_function
    def train(self, model, dataset, output_name="audiox_lora", steps=1000, learning_rate=1e-4, rank=16, alpha=0.0,
              dropout=0.0, targets="all", include_maf=False, batch_size=1, grad_accum=1, warmup_steps=0,
              precision="auto", gradient_checkpointing=True, ema=False, mask_video=0.6, mask_text=0.2,
              mask_audio=0.6, cfg_dropout=0.1, seed=0, resume=True, save_every=250, preview_every=0,
              unique_id=None):
        from ..audiox_core.training import Masking, TrainConfig, Trainer, load_lora
        node = self.DISPLAY_NAME
        self._check_inputs(output_name=output_name, learning_rate=learning_rate)
        m = expect(model, ModelBundle, node, "model", "an AUDIOX_MODEL from AudioX Model Loader")
        check_plain_model(node, m)
        ds, name = check_dataset(node, m, dataset), output_name_ok(node, output_name)
        _check_targets(node, m, targets, include_maf)
        with about_input(node, "output_name"):
            run_dir = state_dir("lora", name)
        dst = output_file(node, "loras", name)
        with about_input(node, "mask_video"):
            masking = Masking(float(mask_video), float(mask_text), float(mask_audio), float(cfg_dropout))
        cfg = TrainConfig(steps=int(steps), batch_size=int(batch_size), grad_accum=int(grad_accum),
                          lr=float(learning_rate), warmup_steps=int(warmup_steps),
                          precision=resolve_precision(precision, comfy_compat.get_torch_device()),
                          gradient_checkpointing=bool(gradient_checkpointing), ema=bool(ema), train=("lora",),
                          lora_rank=int(rank), lora_alpha=float(alpha) if float(alpha) > 0 else None,
                          lora_dropout=float(dropout), lora_targets=targets, lora_include_maf=bool(include_maf),
                          masking=masking, seed=int(seed) % (2 ** 62), save_every=int(save_every),
                          name=Path(name).name)
        trainer, start, seconds = run_training(
            node, m, lambda: Trainer(m.model, ds.data, cfg, out_dir=run_dir), _detach_lora, run_dir=run_dir,
            resume=resume, src=run_dir / f"{cfg.name}.safetensors", dst=dst,
            progress=lambda t: TrainProgress(unique_id, "LoRA", t.history, checkpoint_dir=lambda: t.checkpoint_dir,
                                             preview_every=int(preview_every),
                                             preview=lambda step: lora_preview(t, step)))
        with about_input(node, "output_name"):
            lora = load_lora(dst, m.model, attach=False, device=comfy_compat.unet_offload_device())
        report = _lora_report(name, lora, targets, include_maf, m, trainer, start, cfg, len(ds.data), seed,
                              seconds, dst, run_dir)
        value = LoRAValue(lora, str(dst), name, report.split("\n")[0])
        out_model = m.with_loras(((lora, 1.0),), False, f"{m.name} + {name}")
        image = loss_image(list(trainer.history), [("loss", f"LoRA '{name}' loss")])
        return {"ui": {"text": [report]}, "result": (out_model, value, image, report)}




def _check_targets(node: str, bundle: ModelBundle, targets: str, include_maf: bool) -> None:
    if targets not in TARGETS:
        raise node_error(node, "targets", f"must be one of {TARGETS}, got {targets!r}")
    if include_maf and bundle.model.maf_block is None:
        raise node_error(node, "include_maf", f"is on but {bundle.variant} has no MAF block")


def _detach_lora(trainer) -> None:
    if trainer.lora is not None and trainer.lora.attached:
        trainer.lora.detach()


def _lora_report(name, lora, targets, include_maf, bundle, trainer, start, config, items, seed, seconds, dst,
                 run_dir) -> str:
    return "\n".join([
        f"LoRA '{name}': rank {lora.rank}, alpha {lora.alpha:g}, targets {targets}"
        + (" + MAF" if include_maf else "") + f" ({len(lora.paths)} modules, {lora.num_parameters():,} "
        f"parameters) on {bundle.name} ({bundle.variant})",
        (f"steps {start + 1}–{trainer.step} of {config.steps}" if trainer.step > start else
         f"already trained to step {trainer.step}") + f" on {items} items (batch {config.batch_size} × "
        f"{config.grad_accum}), {config.precision}, lr {config.lr:g}, seed {seed}; {seconds:.1f} s"
        + (f", resumed from step {start}" if start else ""),
        loss_summary(list(trainer.history)),
        f"saved {display_path(dst)}; resumable state in {display_path(run_dir)}"])


class AudioXLoRALoader:
    DISPLAY_NAME = "AudioX LoRA Loader"
    DESCRIPTION = ("Applies a LoRA (a file of models/loras, or one trained in the graph) to an AudioX model with a "
                   "strength. Chain several loaders for several LoRAs. The loaded model itself is not changed: the "
                   "adapters are attached only while a node runs the output model (merge: baked into the weights "
                   "for that time and restored exactly). A LoRA made for another model is refused.")
    CATEGORY = f"{CATEGORY}/loaders"
    RETURN_TYPES = (MODEL, "STRING")
    RETURN_NAMES = ("model", "info")
    OUTPUT_TOOLTIPS = ("The model with the LoRA(s) applied.", "Which LoRAs are applied, at which strengths.")
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls):
        files = [f for f in comfy_compat.get_filename_list("loras") if f.lower().endswith(".safetensors")]
        return {
            "required": {
                "model": (MODEL, {"tooltip": "The AudioX model (AudioX Model Loader or another LoRA loader)."}),
                "lora_name": (files + [NONE], {"tooltip": "LoRA file in models/loras (AudioX Train LoRA saves "
                                                          "there). 'none': use the 'lora' input, or pass the model "
                                                          "through."}),
                "strength": ("FLOAT", {"default": 1.0, "min": -4.0, "max": 4.0, "step": 0.01,
                                       "tooltip": "Multiplier of the LoRA's update (0 = the base model exactly, "
                                                  "1 = as trained)."}),
                "merge": ("BOOLEAN", {"default": False,
                                      "tooltip": "Bake all LoRAs of the chain into the weights while the model runs "
                                                 "(slightly faster sampling; the weights are restored bit-exactly "
                                                 "afterwards). The last loader of a chain decides."}),
                "allow_other_weights": ("BOOLEAN", {"default": False,
                                                    "tooltip": "Apply a LoRA trained on other weights of the same "
                                                               "architecture (e.g. a LoRA of the Turbo base on the "
                                                               "Turbo student). Off: refused with an error."}),
            },
            "optional": {
                "lora": (LORA, {"tooltip": "A LoRA from AudioX Train LoRA; used instead of lora_name."}),
            },
        }

    @classmethod
    def IS_CHANGED(cls, lora_name=NONE, **_):
        """Re-read a LoRA file that was re-trained under the same name."""
        if lora_name == NONE:
            return NONE
        try:
            return file_stamp(Path(comfy_compat.get_full_path("loras", lora_name)))
        except AudioXError:
            return lora_name

    @node_function
    def apply(self, model, lora_name=NONE, strength=1.0, merge=False, allow_other_weights=False, lora=None):
        from ..audiox_core.training import load_lora
        node = self.DISPLAY_NAME
        m = expect(model, ModelBundle, node, "model", "an AUDIOX_MODEL from AudioX Model Loader")
        from ..audiox_core.acceleration import has_fp8_weights
        if has_fp8_weights(m.model):
            raise node_error(node, "model", "is loaded with fp8_e4m3fn weights; LoRAs need the model in fp32, fp16 "
                             "or bf16 (AudioX Model Loader dtype)")
        if lora is not None:
            value = expect(lora, LoRAValue, node, "lora", "an AUDIOX_LORA from AudioX Train LoRA")
            obj, label, where = value.lora, value.name, "lora"
            self._check(node, where, label, obj, m, allow_other_weights)
        elif lora_name == NONE:
            info = "no LoRA chosen: the model passes through" + self._stack(m.loras, m.merge_loras)
            return {"ui": {"text": [info]}, "result": (m, info)}
        else:
            where, label = "lora_name", lora_name
            with about_input(node, "lora_name"):
                path = Path(comfy_compat.get_full_path("loras", lora_name))
                obj = load_lora(path, None, attach=False, device=comfy_compat.unet_offload_device())
            self._check(node, where, label, obj, m, allow_other_weights)
        stack = tuple(m.loras) + ((obj, float(strength)),)
        out = m.with_loras(stack, bool(merge), f"{m.name} + {Path(label).stem}")
        meta = obj.meta
        info = (f"{label}: rank {obj.rank}, {len(obj.paths)} modules, trained {meta.get('steps', '?')} steps "
                f"for {meta.get('variant', '?')}; strength {float(strength):g}"
                + (f"\nPARTIAL: its training was stopped at {meta['partial']} (not finished)"
                   if meta.get("partial") else "") + self._stack(stack, merge))
        return {"ui": {"text": [info]}, "result": (out, info)}

    @staticmethod
    def _check(node: str, where: str, label: str, obj, m: ModelBundle, allow_other: bool) -> None:
        try:
            obj.check_compatible(m.model, allow_other_base=True)
        except CheckpointError as e:
            raise node_error(node, where, f"'{label}' does not belong to this model ({m.name}, {m.variant}): {e}") \
                from e
        if not allow_other:
            try:
                obj.check_compatible(m.model, allow_other_base=False)
            except CheckpointError as e:
                raise node_error(node, where, f"'{label}' was trained on other weights of this architecture "
                                 f"(base {obj.meta.get('base_fingerprint', '?')}), not on {m.name}; turn on "
                                 "'allow_other_weights' to apply it anyway") from e

    @staticmethod
    def _stack(stack, merge: bool) -> str:
        if not stack:
            return ""
        names = [Path(lo.meta.get("file", "") or "in-graph").stem + f" × {s:g}" for lo, s in stack]
        return f"\napplied: {', '.join(names)}" + ("; merged into the weights while running" if merge else "")


NODE_CLASS_MAPPINGS = {"AudioXTrainLoRA": AudioXTrainLoRA, "AudioXLoRALoader": AudioXLoRALoader}
NODE_DISPLAY_NAME_MAPPINGS = {k: v.DISPLAY_NAME for k, v in NODE_CLASS_MAPPINGS.items()}
