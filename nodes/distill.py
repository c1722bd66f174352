"""AudioX Distill: the AudioX-Turbo DMD + GAN recipe (:class:`audiox_core.training.Distiller`);
saves a student into ``models/audiox`` that AudioX Turbo Sampler runs.
"""
from __future__ import annotations

from ..audiox_core.checkpoint import load_model
from ..audiox_core.training import Distiller, report, session
from . import comfy_compat
from .common import (DATASET, HIDDEN, MODEL, ModelBundle, about_input, bool_input, choice_input, float_input,
                     int_input, node_function, outputs, socket_input, string_input)
from .values import model_parts
from .training import (PRECISION_TOOLTIP, PRECISIONS, SAVE_EVERY_TOOLTIP, TRAIN_CATEGORY, OutputNameCheck,
                       display_path, live_view, loss_image, output_file, run_precision, run_training, state_dir)

DISTILL_REQUIRED_INPUTS = {
    "model": socket_input(MODEL, "The teacher: a rectified-flow model such as the AudioX-Turbo base (v-objective "
                          "AudioX / MAF models cannot be distilled this way). It is not changed."),
    "dataset": socket_input(DATASET, "Items prepared for the teacher (AudioX Dataset)."),
    "output_name": string_input("audiox_turbo_student", "File name of the student in models/audiox (without "
                                ".safetensors). An existing file of that name is replaced."),
    "steps": int_input(2000, 1, 1_000_000, "Updates in total, student and critic (see schedule).", step=1),
    "mode": choice_input(session.DISTILL_MODES, "lora", "lora: student and fake are LoRAs on the shared, frozen "
                         "teacher (one model in memory). full: trainable copies of the backbone and MAF (3× the "
                         "memory)."),
    "lora_rank": int_input(64, 1, 512, "Rank of the student / fake LoRAs (mode lora).", step=1),
    "learning_rate": float_input(1e-5, 1e-8, 1.0, 1e-8, "AdamW learning rate (official 1e-5 with InverseLR; LoRAs "
                                 "often like 1e-4)."),
    "guidance": float_input(6.0, 1.0, 20.0, 0.1, "The teacher's CFG scale inside the DMD loss (official 6)."),
    "student_steps": int_input(4, 1, 8, "Sampling steps the student is trained for (official 4; use the same in "
                               "AudioX Turbo Sampler).", step=1),
    "gan": bool_input(True, "Add the diffusion-discriminator GAN loss (official)."),
    "precision": choice_input(PRECISIONS, "auto", PRECISION_TOOLTIP),
    "gradient_checkpointing": bool_input(True, "Recompute activations in the backward pass (less memory, slower)."),
    "seed": int_input(0, 0, 0xFFFFFFFFFFFFFFFF, "Seed of every random draw: the same seed gives the same student.",
                      control_after_generate=False),
    "resume": bool_input(True, "On: continue from the newest checkpoint of this output_name. Off: start over."),
    "save_every": int_input(250, 0, 1_000_000, SAVE_EVERY_TOOLTIP, step=1),
}

DISTILL_OPTIONAL_INPUTS = {
    "preview_every": int_input(0, 0, 1_000_000, "Every this many steps, generate one clip with the student so far (the "
                               "first item's conditions, its own few-step sampler, seed 0) and play it in the node's "
                               "live view. 0: off.", step=1),
    "schedule": choice_input(tuple(session.DISTILL_SCHEDULES), "official", "official: 5 student updates per "
                             "critic update, GAN weight 1. critic-heavy: 1 : 5, GAN weight 10 (the demo recipe)."),
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
    RETURN_TYPES, RETURN_NAMES, OUTPUT_TOOLTIPS = outputs(
        (MODEL, "student", "The distilled student (role 'student'), for AudioX Turbo Sampler. Encode its "
                           "conditions with the student itself."),
        ("IMAGE", "loss", "Loss curves: the student's DMD loss and the fake critic's flow-matching loss."),
        ("STRING", "report", "What was trained, the losses, where the files are."))
    FUNCTION = "distill"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": dict(DISTILL_REQUIRED_INPUTS), "optional": dict(DISTILL_OPTIONAL_INPUTS),
                "hidden": dict(HIDDEN)}

    @classmethod
    def VALIDATE_INPUTS(cls, output_name=None, learning_rate=None, guidance=None):
        return cls._validate(output_name=output_name, learning_rate=learning_rate, guidance=guidance)

    @node_function
    def distill(self, model, dataset, output_name="audiox_turbo_student", steps=2000, mode="lora", lora_rank=64,
                learning_rate=1e-5, guidance=6.0, student_steps=4, gan=True, precision="auto",
                gradient_checkpointing=True, seed=0, resume=True, save_every=250, preview_every=0, schedule="official",
                unique_id=None):
        node = self.DISPLAY_NAME
        name, m, ds = self._checked(model, dataset, output_name=output_name, learning_rate=learning_rate,
                                    guidance=guidance)
        session.check_teacher(m.model, m.variant, mode)
        with about_input(node, "output_name"):
            run_dir = state_dir("distill", name)
        dst = output_file(node, "audiox", name)
        with about_input(node, "steps"):
            cfg = session.distill_config(name, steps=steps, learning_rate=learning_rate, student_steps=student_steps,
                                         guidance=guidance, gan=gan, mode=mode, lora_rank=lora_rank,
                                         precision=run_precision(precision), seed=seed, save_every=save_every,
                                         gradient_checkpointing=gradient_checkpointing, schedule=schedule)
        weights_dtype = next(m.model.backbone.parameters()).dtype
        distiller, start, seconds = run_training(
            node, m, lambda: Distiller(m.model, ds.data, cfg, out_dir=run_dir), run_dir=run_dir,
            resume=resume, src=run_dir / f"{cfg.name}.safetensors", dst=dst,
            progress=live_view(unique_id, "distill", m.sample_rate, preview_every,
                               keys=("loss", "loss_dmd", "loss_fake")))
        with about_input(node, "output_name"):
            saved = load_model(dst, dtype=weights_dtype, device=comfy_compat.unet_offload_device())
        student = ModelBundle(saved, model_parts(saved), m.offload_after, name=dst.name)
        notes = ["note: the teacher is itself a distilled student; distilling it again is unusual"] \
            if m.is_turbo_student else []
        text = report.distill_report(name, f"{m.name} ({m.variant})", distiller, start, cfg, len(ds.data), seed,
                                     seconds, display_path(dst), display_path(run_dir), notes)
        image = loss_image(list(distiller.history), [("loss_dmd", f"'{name}' student DMD loss"),
                                                     ("loss_fake", "fake critic flow-matching loss")])
        return {"ui": {"text": [text]}, "result": (student, image, text)}


NODE_CLASS_MAPPINGS = {"AudioXDistill": AudioXDistill}
