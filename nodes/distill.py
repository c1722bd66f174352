"""AudioX Distill: the AudioX-Turbo DMD + GAN recipe (:class:`audiox_core.training.Distiller`);
saves a student into ``models/audiox`` that AudioX Turbo Sampler runs.
"""
from __future__ import annotations

from pathlib import Path

from . import comfy_compat
from .preview import audio_preview
from .common import (DATASET, MODEL, ModelBundle, about_input, expect, node_error, node_function)
from .training import (HIDDEN, TRAIN_CATEGORY, PRECISIONS, PRECISION_TOOLTIP, output_file, output_name, state_dir,
                       resolve_precision, TrainProgress, check_dataset, check_plain_model, loss_image, loss_summary,
                       display_path, output_name_ok, OutputNameCheck, run_training)


DISTILL_REQUIRED_INPUTS = {
    "model": (MODEL, {"tooltip": "The teacher: a rectified-flow model such as the AudioX-Turbo base "
                                 "(v-objective AudioX / MAF models cannot be distilled this way). It is "
                                 "not changed."}),
    "dataset": (DATASET, {"tooltip": "Items prepared for the teacher (AudioX Dataset)."}),
    "output_name": ("STRING", {"default": "audiox_turbo_student",
                               "tooltip": "File name of the student in models/audiox (without "
                                          ".safetensors). An existing file of that name is replaced."}),
    "steps": ("INT", {"default": 2000, "min": 1, "max": 1_000_000, "step": 1,
                      "tooltip": "Updates in total (5 student updates per fake + discriminator update, "
                                 "as the official)."}),
    "mode": (["lora", "full"], {"default": "lora",
                                "tooltip": "lora: student and fake are LoRAs on the shared, frozen "
                                           "teacher (one model in memory). full: trainable copies of the "
                                           "backbone and MAF (3× the memory)."}),
    "lora_rank": ("INT", {"default": 64, "min": 1, "max": 512, "step": 1,
                          "tooltip": "Rank of the student / fake LoRAs (mode lora)."}),
    "learning_rate": ("FLOAT", {"default": 1e-5, "min": 1e-8, "max": 1.0, "step": 1e-8,
                                "tooltip": "AdamW learning rate (official 1e-5 with InverseLR; LoRAs "
                                           "often like 1e-4)."}),
    "guidance": ("FLOAT", {"default": 6.0, "min": 1.0, "max": 20.0, "step": 0.1,
                           "tooltip": "The teacher's CFG scale inside the DMD loss (official 6)."}),
    "student_steps": ("INT", {"default": 4, "min": 1, "max": 8, "step": 1,
                              "tooltip": "Sampling steps the student is trained for (official 4; use the "
                                         "same in AudioX Turbo Sampler)."}),
    "gan": ("BOOLEAN", {"default": True,
                        "tooltip": "Add the diffusion-discriminator GAN loss (official)."}),
    "precision": (PRECISIONS, {"default": "auto", "tooltip": PRECISION_TOOLTIP}),
    "gradient_checkpointing": ("BOOLEAN", {"default": True,
                                           "tooltip": "Recompute activations in the backward pass (less "
                                                      "memory, slower)."}),
    "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": False,
                     "tooltip": "Seed of every random draw: the same seed gives the same student."}),
    "resume": ("BOOLEAN", {"default": True,
                           "tooltip": "On: continue from the newest checkpoint of this output_name. Off: "
                                      "start over."}),
    "save_every": ("INT", {"default": 250, "min": 0, "max": 1_000_000, "step": 1,
                           "tooltip": "Write a resumable checkpoint every this many steps (0: only at the "
                                      "end and on Cancel)."}),
}

DISTILL_OPTIONAL_INPUTS = {
    "preview_every": ("INT", {"default": 0, "min": 0, "max": 1_000_000, "step": 1,
                              "tooltip": "Every this many steps, generate one clip with the student so far "
                                         "(the first item's conditions, its own few-step sampler, seed 0) "
                                         "and play it in the node's live view. 0: off."}),
}


class AudioXDistill(OutputNameCheck):
    DISPLAY_NAME = "AudioX Distill"
    DESCRIPTION = ("Distils a rectified-flow teacher (the AudioX-Turbo base model) into a few-step student with the "
                   "official AudioX-Turbo recipe: DMD loss with the teacher's CFG, a 'fake' critic and a "
                   "diffusion-discriminator GAN on the teacher's first blocks. Student and fake are LoRAs on the "
                   "shared teacher (lora, fits a consumer GPU) or full copies (full). Saves "
                   "models/audiox/<output_name>.safetensors, which AudioX Turbo Sampler runs. The teacher is not "
                   "changed.")
    CATEGORY = TRAIN_CATEGORY
    RETURN_TYPES = (MODEL, "IMAGE", "STRING")
    RETURN_NAMES = ("student", "loss", "report")
    OUTPUT_TOOLTIPS = ("The distilled student (role 'student'), for AudioX Turbo Sampler. Encode its conditions "
                       "with the student itself.",
                       "Loss curves: the student's DMD loss and the fake critic's flow-matching loss.",
                       "What was trained, the losses, where the files are.")
    FUNCTION = "distill"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": dict(DISTILL_REQUIRED_INPUTS),
            "optional": dict(DISTILL_OPTIONAL_INPUTS),
            "hidden": dict(HIDDEN),
        }

    @classmethod
    def VALIDATE_INPUTS(cls, output_name=None, learning_rate=None, guidance=None):
        return cls._validate(output_name=output_name, learning_rate=learning_rate, guidance=guidance)

    @node_function
    def distill(self, model, dataset, output_name="audiox_turbo_student", steps=2000, mode="lora", lora_rank=64,
                learning_rate=1e-5, guidance=6.0, student_steps=4, gan=True, precision="auto",
                gradient_checkpointing=True, seed=0, resume=True, save_every=250, preview_every=0, unique_id=None):
        from ..audiox_core.training import DistillConfig, Distiller
        node = self.DISPLAY_NAME
        self._check_inputs(output_name=output_name, learning_rate=learning_rate, guidance=guidance)
        m = _teacher(node, model)
        check_plain_model(node, m)
        ds, name = check_dataset(node, m, dataset), output_name_ok(node, output_name)
        if mode not in ("lora", "full"):
            raise node_error(node, "mode", f"must be 'lora' or 'full', got {mode!r}")
        notes = ["note: the teacher is itself a distilled student; distilling it again is unusual"] \
            if m.is_turbo_student else []
        with about_input(node, "output_name"):
            run_dir = state_dir("distill", name)
        dst = output_file(node, "audiox", name)
        prec = resolve_precision(precision, comfy_compat.get_torch_device())
        n = int(student_steps)
        with about_input(node, "steps"):
            cfg = DistillConfig(steps=int(steps), lr=float(learning_rate), student_steps=n,
                                timestep_probs=tuple([1.0 / n] * n), guidance=float(guidance), gan=bool(gan),
                                parameterization=mode, lora_rank=int(lora_rank), precision=prec,
                                gradient_checkpointing=bool(gradient_checkpointing), seed=int(seed) % (2 ** 62),
                                save_every=int(save_every), name=Path(name).name)
        wdtype = next(m.model.backbone.parameters()).dtype
        d, start, seconds = run_training(
            node, m, lambda: Distiller(m.model, ds.data, cfg, out_dir=run_dir), lambda d: d.close(), run_dir=run_dir,
            resume=resume, src=run_dir / f"{cfg.name}.safetensors", dst=dst,
            progress=lambda d: _progress(unique_id, d, preview_every))
        trained = d.num_trainable()  # a fixed parameter list: the same before and after the run
        with about_input(node, "output_name"):
            bundle = _student_bundle(dst, wdtype, m.offload_after)
        report = "\n".join([f"student '{name}' of {m.name} ({m.variant}): {mode} ({trained:,} trained parameters"
                            + (f", LoRA rank {cfg.lora_rank}" if mode == "lora" else "")
                            + f"), {n} student steps, guidance {cfg.guidance:g}, GAN {'on' if cfg.gan else 'off'}",
                            *_run_lines(d, start, cfg, len(ds.data), seed, seconds, dst, run_dir), *notes])
        image = loss_image(list(d.history), [("loss_dmd", f"'{name}' student DMD loss"),
                                     ("loss_fake", "fake critic flow-matching loss")])
        return {"ui": {"text": [report]}, "result": (bundle, image, report)}



def _progress(unique_id, distiller, preview_every: int) -> TrainProgress:
    """The live view of a distillation: DMD and fake losses, and every ``preview_every`` steps the
    student's own generation as a playable temp WAV."""
    def preview(step: int) -> dict:
        audio = distiller.preview()
        return audio_preview(audio, int(distiller.teacher.config.sample_rate), f"distill_preview_step{step}")[0]
    return TrainProgress(unique_id, "distill", distiller.history, keys=("loss", "loss_dmd", "loss_fake"),
                         checkpoint_dir=lambda: distiller.checkpoint_dir, preview_every=int(preview_every or 0),
                         preview=preview)


def _teacher(node: str, model) -> ModelBundle:
    bundle = expect(model, ModelBundle, node, "model", "an AUDIOX_MODEL from AudioX Model Loader")
    if bundle.model.objective != "rectified_flow":
        raise node_error(node, "model", f"is {bundle.variant} with the {bundle.model.objective!r} objective: DMD "
                         "distillation (the AudioX-Turbo recipe) needs a rectified-flow teacher such as the "
                         "AudioX-Turbo base model")
    return bundle


def _student_bundle(dst, weights_dtype, offload_after) -> ModelBundle:
    """The saved student, loaded as a model bundle for the samplers."""
    from ..audiox_core.checkpoint import load_model
    from .loaders import model_parts
    student = load_model(dst, dtype=weights_dtype, device=comfy_compat.unet_offload_device())
    return ModelBundle(student, model_parts(student), offload_after, name=dst.name)


def _run_lines(distiller, start, config, items, seed, seconds, dst, run_dir) -> list:
    history = list(distiller.history)
    return [(f"steps {start + 1}–{distiller.step} of {config.steps}" if distiller.step > start
             else f"already trained to step {distiller.step}")
            + f" on {items} items, {config.precision}, lr {config.lr:g}, seed {seed}; {seconds:.1f} s"
            + (f", resumed from step {start}" if start else ""),
            loss_summary(history, "loss_dmd"), loss_summary(history, "loss_fake"),
            f"saved {display_path(dst)} (role student: run it with AudioX Turbo Sampler, "
            f"{config.student_steps} steps); resumable state in {display_path(run_dir)}"]

NODE_CLASS_MAPPINGS = {"AudioXDistill": AudioXDistill}
NODE_DISPLAY_NAME_MAPPINGS = {k: v.DISPLAY_NAME for k, v in NODE_CLASS_MAPPINGS.items()}
