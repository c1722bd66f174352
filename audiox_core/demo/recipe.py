"""The demo model's training recipe: ``python -m audiox_core.demo.recipe --out DIR [--quick]``.

Stages, in order (each one skippable with ``--skip``, resumable, timed; ``--only`` runs a subset)::

    vae      train the Oobleck VAE on rendered world audio (training.vae) with an encoder-shaped
             decoder, fix the latent scale (→ vae_phase1.safetensors); then train the final, wider
             decoder on the frozen encoder, plain, then against an STFT discriminator; evaluate the
             round trips with the detectors                     → DIR/vae/{vae.safetensors, report.json}
             (vae_phase1_own_decoder: phase 1 trains the wide decoder with the encoder instead;
             tried once, round-trip events worse: docs/TRAINING.md)
    data     build the initial demo model (trained VAE in both copies, everything else freshly
             initialised) and its byte-level T5; render + encode the training set once
             (demo.dataset.prepare_world_data)                  → DIR/data/{init.safetensors, t5/}, DIR/cache/
    text     pre-train the byte-level T5 on world captions (demo.text_pretrain; the stand-in for a
             pretrained language model — frozen afterwards, as the official t5-base) → DIR/text/t5/
    base     train the rectified-flow base model (teacher)      → DIR/base/model.safetensors
    distill  DMD-distil the 4-step Turbo student                → DIR/distill/model.safetensors
    export   the shipped layout (SHIPPED_LAYOUT), the vae stage's final VAE in every model (its
             encoder checked to be the one the models were trained on) → DIR/export/models/demo/...

A stage is done when ``DIR/<stage>/done.json`` exists (it records the stage's wall time, CPU
time and load average); a rerun skips done stages (``--force STAGE`` redoes one).  The VAE stage
resumes from its checkpoint.  ``DIR/recipe.json`` collects every stage's record.  ``--quick``
shrinks every stage to a smoke test (a few steps, a few clips) — the files are then only good
for plumbing tests.

``base`` and ``distill`` call :class:`audiox_core.training.Trainer` and
:class:`audiox_core.training.Distiller` (written separately) with the hyper-parameters of
:class:`RecipeConfig` — a first setting, to be tuned against the detectors in part 2.

Budget (2-core CPU, 90 minutes for the whole recipe; measured numbers, see the docstring of
:mod:`audiox_core.demo.model_config` and ``bench`` notes in the report):

=========  ==============================================================================
vae        ≤ 15 min: 2000 steps of 8 × 1 s crops (~0.4 s per step uncontended); then the
           decoder phase: 800 plain + 800 adversarial steps of the wider decoder (encoder frozen),
           0.61 / 0.80 s per step uncontended: ≈ 19 min
           (vae_adv_weight / vae_fm_weight > 0: an STFT discriminator from vae_disc_start on,
           ~0.6 s per step instead of ~0.34 uncontended, ×1.7; see training.vae)
data       ~4 min: 4000 clips rendered (~30 ms each) and VAE-encoded (target + audio prompt),
           CLIP tower hidden states cached (frozen tower)
text       ~5 min: 1200 steps of 64 captions (~0.27 s per step)
base       ~35 min: ~0.35 s per step at batch 16 uncontended (whole model, bf16 autocast, cached
           CLIP features, T5 frozen) → 6000 steps ≈ 96 k samples ≈ 24 epochs of 4000 clips.
           (First shipped model: 2000 clips, T5 trained from scratch inside this stage; 9000
           steps over-fitted them, and text was barely followed — hence the text stage and the
           larger set.)
distill    ~4 min: 300 DMD + GAN steps (1 student : 5 fake + discriminator updates, GAN weight 10)
export     < 1 min
=========  ==============================================================================
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import torch

from ..errors import AudioXError, CheckpointError, ConfigError, InputError
from .world import DEFAULT_CONFIG, WorldConfig, make_dataset, render_audio
from .model_config import DEMO_SIZES, SHIPPED_LAYOUT, DemoSizes, demo_config

log = logging.getLogger(__name__)

STAGES = ("vae", "data", "text", "base", "distill", "export")


@dataclass
class RecipeConfig:
    """Every knob of the recipe (``quick()`` gives the smoke-test version)."""

    sizes: DemoSizes = DEMO_SIZES
    seed: int = 0
    # vae
    vae_steps: int = 2000
    vae_batch: int = 8
    vae_segment: int = 16000
    vae_lr: float = 1.5e-3
    vae_stft_floor: float = 1e-4  # MRSTFT log-power floor relative to each clip's loudest bin
    vae_adv_weight: float = 0.0  # > 0: train against an STFT discriminator (training.vae "Adversarial terms")
    vae_fm_weight: float = 0.0  # discriminator feature-matching weight (> 0 also trains the discriminator)
    vae_disc_start: int = 0  # VAE step from which the discriminator and its terms are used
    vae_spectral_align_weight: float = 0.0  # phase 1's VAETrainConfig.spectral_align_weight (off; docs/TRAINING.md)
    # True: phase 1 trains the decoder of `sizes` (its own widths) with the encoder, from scratch; then
    # the latents are learnt against that decoder, and phase 2 may be off (vae_decoder_steps 0)
    vae_phase1_own_decoder: bool = False
    # phase 2 (stage_vae): the decoder of `sizes` on the frozen phase-1 encoder (0 steps: off)
    vae_decoder_steps: int = 1600
    vae_decoder_plain_steps: int = 800  # the first steps without the discriminator
    vae_decoder_lr: float = 1e-3
    vae_decoder_adv_weight: float = 0.1
    vae_decoder_fm_weight: float = 5.0
    vae_decoder_latent_noise: float = 0.0  # VAETrainConfig.latent_noise of phase 2
    vae_eval_event: int = 40
    vae_eval_music: int = 40
    vae_probe_events: int = 450  # per category: the report's latent probe (evaluation.latent_probe_report; 0 off)
    vae_probe_steps: int = 1500
    vae_scale_clips: int = 64
    # data
    n_clips: int = 4000
    caption_variants: int = 4
    prompt_fraction: float = 0.5
    image_fraction: float = 0.1
    # text (T5 pre-training on captions)
    text_steps: int = 1200
    text_batch: int = 64
    text_lr: float = 1e-3
    text_scenes: int = 20000
    text_eval: int = 400
    # base (rectified-flow teacher): a starting point, tuned in part 2
    base_steps: int = 6000
    base_batch: int = 16
    base_lr: float = 5e-4
    base_warmup: int = 100
    base_parts: tuple = ("backbone", "maf", "projections")  # T5 frozen after the text stage
    base_t_sampler: str = "logit_normal"
    # distill (DMD + GAN, full copies: the model is small)
    distill_steps: int = 300
    distill_batch: int = 8
    distill_lr: float = 5e-5
    distill_guidance: float = 4.0
    distill_update_ratio: int = 1    # 1 student : 5 fake + discriminator updates (official 5 : 1 starves the
    distill_fake_updates: int = 5    # fake on this small model; docs/TRAINING.md)
    distill_gan_weight: float = 10.0  # at 1.0 the GAN term is ~3 % of the DMD term and the student loses events
    # threads
    threads: int = 2

    @classmethod
    def quick(cls) -> "RecipeConfig":
        return cls(vae_steps=6, vae_batch=2, vae_segment=3200, vae_eval_event=2, vae_eval_music=2, vae_scale_clips=4,
                   vae_probe_events=6, vae_probe_steps=20,
                   vae_decoder_steps=3, vae_decoder_plain_steps=1, n_clips=6,
                   caption_variants=2, text_steps=3, text_batch=4, text_scenes=50, text_eval=10,
                   base_steps=3, base_batch=2, base_warmup=1, distill_steps=2,
                   distill_batch=2)


# ----------------------------------------------------------------------------------------------
# Stage bookkeeping
# ----------------------------------------------------------------------------------------------
def _load_json(p: Path) -> Optional[dict]:
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _write_json(p: Path, obj) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str), encoding="utf-8")
    os.replace(tmp, p)


class Recipe:
    """Runs the stages into ``out`` (see the module docstring)."""

    def __init__(self, out, cfg: Optional[RecipeConfig] = None, *, world: WorldConfig = DEFAULT_CONFIG,
                 echo: Callable[[str], None] = lambda s: None):
        self.out = Path(out)
        self.cfg = cfg or RecipeConfig()
        self.world = world
        self.echo = echo
        self.out.mkdir(parents=True, exist_ok=True)

    def stage_dir(self, name: str) -> Path:
        return self.out / name

    def done(self, name: str) -> bool:
        return (self.stage_dir(name) / "done.json").is_file()

    def run(self, stages=STAGES, *, skip=(), force=()) -> dict:
        torch.set_num_threads(int(self.cfg.threads))
        summary = _load_json(self.out / "recipe.json") or {}
        for name in stages:
            if name not in STAGES:
                raise InputError(f"unknown stage {name!r}; stages are {', '.join(STAGES)}")
            if name in skip:
                self.echo(f"[{name}] skipped")
                continue
            if self.done(name) and name not in force:
                self.echo(f"[{name}] already done ({self.stage_dir(name) / 'done.json'})")
                continue
            self.echo(f"[{name}] starting")
            t0, c0 = time.perf_counter(), time.process_time()
            result = getattr(self, "stage_" + name)()
            rec = {"stage": name, "wall_s": round(time.perf_counter() - t0, 1),
                   "cpu_s": round(time.process_time() - c0, 1), "loadavg_end": list(os.getloadavg()),
                   "result": result}
            _write_json(self.stage_dir(name) / "done.json", rec)
            summary[name] = rec
            _write_json(self.out / "recipe.json", summary)
            self.echo(f"[{name}] done in {rec['wall_s']} s wall, {rec['cpu_s']} s CPU, load {rec['loadavg_end'][0]:.2f}")
        return summary

    # ------------------------------------------------------------------------------ vae
    def stage_vae(self) -> dict:
        """Phase 1: the whole VAE with an encoder-shaped decoder (``trainer.pt`` →
        ``vae_phase1.safetensors``; that file marks the phase done).  Phase 2, when
        ``vae_decoder_steps`` > 0: the decoder of ``sizes`` (it may be wider) trained on the frozen
        phase-1 encoder, starting from every phase-1 weight that fits (``decoder_trainer.pt``), plain
        for ``vae_decoder_plain_steps``, then against an STFT discriminator.  The encoder, hence every
        latent and the latent scale, is phase 1's either way.  Writes ``vae.safetensors``."""
        from ..checkpoint import load_vae
        from ..fileio import atomic_copy
        from ..training.vae import VAETrainConfig
        from .build import read_vae_metadata
        from .evaluation import latent_probe_report, vae_roundtrip_report
        from .model_config import demo_vae_config

        c = self.cfg
        if (c.vae_decoder_steps <= 0 and not c.vae_phase1_own_decoder
                and demo_vae_config(c.sizes) != demo_vae_config(c.sizes, own_decoder=False)):
            raise ConfigError(f"the recipe's sizes give the VAE decoder widths of its own (vae_decoder_channels "
                              f"{c.sizes.vae_decoder_channels}, vae_decoder_c_mults {c.sizes.vae_decoder_c_mults}), "
                              "which neither phase trains: vae_decoder_steps is 0 and vae_phase1_own_decoder off")
        d = self.stage_dir("vae")
        phase1 = d / "vae_phase1.safetensors"
        result: Dict[str, Any] = {}
        if phase1.is_file():
            self.echo(f"[vae] phase 1 already done ({phase1})")
            scale = read_vae_metadata(phase1)["latent_scale"]
        else:
            tc = VAETrainConfig(steps=c.vae_steps, batch_size=c.vae_batch, segment=c.vae_segment, lr=c.vae_lr,
                                stft_floor=c.vae_stft_floor, adv_weight=c.vae_adv_weight, fm_weight=c.vae_fm_weight,
                                disc_start=c.vae_disc_start, seed=c.seed,
                                spectral_align_weight=c.vae_spectral_align_weight)
            tr, _ = self._vae_trainer(d / "trainer.pt", tc,
                                      demo_vae_config(c.sizes, own_decoder=c.vae_phase1_own_decoder))
            result.update(self._train_vae(tr, "vae", c.vae_steps))
            scale = _latent_scale(tr.pretransform(), self.world, c.seed, c.vae_scale_clips)
            tr.export(phase1, extra_metadata={"latent_scale": scale})
        vae_file = d / "vae.safetensors"
        if c.vae_decoder_steps > 0:
            tc = VAETrainConfig(steps=c.vae_decoder_steps, batch_size=c.vae_batch, segment=c.vae_segment,
                                lr=c.vae_decoder_lr, warmup=min(50, c.vae_decoder_steps), train_encoder=False,
                                adv_weight=c.vae_decoder_adv_weight, fm_weight=c.vae_decoder_fm_weight,
                                disc_start=c.vae_decoder_plain_steps, seed=c.seed + 1,
                                latent_noise=c.vae_decoder_latent_noise,
                                scale_bias_init=None, init="unit_gain")
            tr, fresh = self._vae_trainer(d / "decoder_trainer.pt", tc, demo_vae_config(c.sizes), init=phase1)
            result["decoder"] = {**self._train_vae(tr, "vae decoder", c.vae_decoder_steps),
                                 "fresh_tensors": None if fresh is None else len(fresh)}  # None: resumed
            tr.export(vae_file, extra_metadata={"latent_scale": scale})
        else:
            atomic_copy(phase1, vae_file, what="VAE file")
        pt = load_vae(vae_file)
        rep = vae_roundtrip_report(pt, n_event=c.vae_eval_event, n_music=c.vae_eval_music, world=self.world)
        result.update({"latent_scale": scale, "roundtrip": rep, "file": str(vae_file),
                       "decoder_from": "phase 2" if c.vae_decoder_steps > 0 else "phase 1"})
        if c.vae_probe_events > 0:  # do the latents keep beep/buzz and bell/drum apart? (chance: 0.5)
            result["latent_probe"] = latent_probe_report(pt, n_per_class=c.vae_probe_events, steps=c.vae_probe_steps,
                                                         world=self.world)
            self.echo("[vae] latent probe, held-out accuracy: " + ", ".join(
                f"{k} {v['latent']['test']:.1%}" for k, v in result["latent_probe"].items() if isinstance(v, dict)))
        _write_json(d / "report.json", result)
        out = {k: v for k, v in result.items() if k != "curve"}
        if "decoder" in out:
            out["decoder"] = {k: v for k, v in out["decoder"].items() if k != "curve"}
        return out

    def _vae_trainer(self, ckpt: Path, tc, vae_config, *, init: Optional[Path] = None):
        """``(trainer, names left at their init)``: resumed from ``ckpt`` (then ``(trainer, None)``),
        else new with ``vae_config``, started from the weights of the VAE file ``init`` that fit."""
        from ..training.vae import VAETrainer
        from ..weights import WeightSource
        from .dataset import WorldAudioSource
        source = WorldAudioSource(self.world, seed=self.cfg.seed, segment=self.cfg.vae_segment)
        if ckpt.is_file():
            tr = VAETrainer.resume(ckpt, source, train_config=tc)
            self.echo(f"[vae] resuming {ckpt.name} at step {tr.step}")
            return tr, None
        tr = VAETrainer(vae_config, tc, source, checkpoint_path=ckpt)
        if init is None:
            return tr, []
        src = WeightSource(init)
        return tr, tr.init_from({k: src.read(k).float() for k in src.keys()})

    def _train_vae(self, tr, label: str, steps: int) -> dict:
        every = max(1, steps // 40)

        def cb(step, total, info):
            if step % every == 0 or step == total:
                self.echo(f"[{label}] {step}/{total} " + " ".join(f"{k} {v:.4g}" for k, v in info.items()))

        tr.train(callback=cb)
        hist = tr.history
        curve = []  # means over windows of `every` steps (single steps are very noisy)
        for s in range(0, len(hist), every):
            w = hist[s:s + every]
            keys = ("loss", "stft", "l1", "kl", "align", "adv", "fm", "disc", "sec")
            curve.append({"step": w[-1]["step"], **{k: round(sum(h[k] for h in w) / len(w), 4)
                                                    for k in keys if all(k in h for h in w)}})
        return {"steps": tr.step, "train_seconds": round(tr.train_seconds, 1),
                "final_loss_mean_last_50": sum(h["loss"] for h in hist[-50:]) / max(1, len(hist[-50:])),
                "curve": curve}

    # ------------------------------------------------------------------------------ data / base / distill / export
    def demo_config(self):
        """The demo config with the trained VAE's latent scale (after the vae stage)."""
        from .build import read_vae_metadata
        vae = self.stage_dir("vae") / "vae.safetensors"
        if not vae.is_file():
            raise InputError(f"the vae stage has not produced {vae} yet")
        scale = read_vae_metadata(vae).get("latent_scale", 1.0)
        return demo_config(self.cfg.sizes, self.world, vae_scale=scale)

    def stage_data(self) -> dict:
        from ..checkpoint import save_model
        from ..training.data import CachePlan
        from .build import build_demo_model, load_demo_t5, new_demo_t5, save_t5_folder
        from .dataset import prepare_world_data

        c = self.cfg
        d = self.stage_dir("data")
        cfg = self.demo_config()
        model = build_demo_model(cfg, vae_path=self.stage_dir("vae") / "vae.safetensors", seed=c.seed)
        t5_dir = save_t5_folder(new_demo_t5(cfg, seed=c.seed), d / "t5", dtype=None)
        model.set_text_encoder(load_demo_t5(t5_dir, cfg))
        save_model(model, d / "init.safetensors", role="base",
                   extra_metadata={"note": "demo model before diffusion training (trained VAE, fresh weights)"})
        spec = self.data_spec()
        plan = CachePlan(text="ids", video="hidden", sync="zeros")
        every = max(1, c.n_clips // 20)

        def cb(i, n, info):
            if i % every == 0 or i == n:
                self.echo(f"[data] {i}/{n}")

        t0 = time.perf_counter()
        ds = prepare_world_data(model, spec, self.out / "cache", plan=plan, world=self.world, callback=cb)
        secs = time.perf_counter() - t0
        recs = ds.records
        result = {"items": len(ds), "cache_dir": str(ds.cache_dir), "dataset_hash": ds.dataset_hash,
                  "plan": asdict(plan), "spec": asdict(spec), "prepare_seconds": round(secs, 1),
                  "events": sum(r["spec"]["kind"] == "event" for r in recs),
                  "music": sum(r["spec"]["kind"] == "music" for r in recs),
                  "with_audio_prompt": sum(bool(r["type"]) for r in recs),
                  "still_images": sum(r["visual"] == "image" for r in recs),
                  "init_model": str(d / "init.safetensors"), "t5_init": str(t5_dir)}
        _write_json(d / "report.json", result)
        return result

    def data_spec(self):
        from .dataset import DataSpec
        c = self.cfg
        return DataSpec(n=c.n_clips, seed=c.seed, captions=c.caption_variants, prompt_fraction=c.prompt_fraction,
                        image_fraction=c.image_fraction)

    def prepared(self, model):
        """The prepared dataset of the data stage (re-opened from the cache: no encoder runs)."""
        from ..training.data import CachePlan
        from .dataset import DataSpec, prepare_world_data
        if not self.done("data"):
            raise InputError("the data stage has not run yet")
        rep = _load_json(self.stage_dir("data") / "report.json") or {}
        spec = DataSpec(**rep["spec"]) if "spec" in rep else self.data_spec()  # what the stage rendered
        return prepare_world_data(model, spec, self.out / "cache",
                                  plan=CachePlan(text="ids", video="hidden", sync="zeros"), world=self.world)

    def _progress(self, stage: str, every: int):
        def cb(step, total, info):
            if step % every == 0 or step == total:
                self.echo(f"[{stage}] {step}/{total} " + " ".join(
                    f"{k} {v:.4g}" for k, v in info.items() if isinstance(v, (int, float))))
        return cb

    def t5_dir(self, stages=("base", "text", "data")) -> Path:
        """The T5 folder of the first of ``stages`` that wrote one (default: the newest —
        ``base/t5`` when the base stage trained it, ``text/t5``, else the initial ``data/t5``)."""
        for name in stages:
            p = self.stage_dir(name) / "t5"
            if (p / "model.safetensors").is_file():
                return p
        raise InputError("no T5 folder yet (run the data stage)")

    def stage_text(self) -> dict:
        """Pre-train the byte-level T5 on world captions (:mod:`.text_pretrain`); its heads'
        accuracy on held-out (test-split) captions goes in the report."""
        from .build import load_demo_t5, save_t5_folder
        from .text_pretrain import TextPretrainConfig, pretrain_t5

        c = self.cfg
        d = self.stage_dir("text")
        enc = load_demo_t5(self.stage_dir("data") / "t5", self.demo_config())
        tc = TextPretrainConfig(steps=c.text_steps, batch=c.text_batch, lr=c.text_lr, n_scenes=c.text_scenes,
                                eval_scenes=c.text_eval, seed=c.seed)
        result = pretrain_t5(enc.model, enc.tokenizer, tc, world=self.world,
                             callback=self._progress("text", max(1, c.text_steps // 20)))
        result["t5"] = str(save_t5_folder(enc.model, d / "t5", dtype=None))
        _write_json(d / "report.json", result)
        return result

    def stage_base(self) -> dict:
        """Train the rectified-flow base model (the Turbo teacher) with
        :class:`audiox_core.training.Trainer` on the prepared world data, bf16 autocast: ``base_parts``
        (backbone, MAF, conditioner projections) from scratch; the text stage's T5, the CLIP tower
        and the VAE frozen."""
        from ..checkpoint import load_model
        from ..training import Masking, TrainConfig, Trainer, evaluate_loss
        from .build import load_demo_t5

        c = self.cfg
        d = self.stage_dir("base")
        cfg = self.demo_config()
        model = load_model(self.stage_dir("data") / "init.safetensors", dtype=torch.float32)
        t5 = self.t5_dir(("text", "data"))  # the pre-trained T5 (the initial one when the text stage was skipped)
        model.set_text_encoder(load_demo_t5(t5, cfg))
        data = self.prepared(model)
        tc = TrainConfig(steps=c.base_steps, batch_size=c.base_batch, lr=c.base_lr, warmup_steps=c.base_warmup,
                         precision="bf16", gradient_checkpointing=False, train=tuple(c.base_parts),
                         masking=Masking(), t_sampler=c.base_t_sampler, seed=c.seed, save_every=200,
                         name="audiox_demo_base")
        if "t5" not in tc.train and (d / "t5").is_dir():  # a T5 trained by an earlier base run is stale now
            shutil.rmtree(d / "t5")
        tr = Trainer(model, data, tc, out_dir=d)
        if tr.resume():
            self.echo(f"[base] resuming at step {tr.step}")
        tr.run(callback=self._progress("base", max(1, c.base_steps // 40)))
        files = tr.export(d)
        loss = evaluate_loss(model, data, batch_size=8, precision="bf16")
        hist = tr.history
        return {"steps": tr.step, "files": {k: str(v) for k, v in files.items()}, "eval_loss": loss, "t5": str(t5),
                "final_loss_mean_last_50": sum(h["loss"] for h in hist[-50:]) / max(1, len(hist[-50:]))}

    def stage_distill(self) -> dict:
        """DMD + GAN distillation of the base model into the 4-step student
        (:class:`audiox_core.training.Distiller`, full copies of backbone + MAF)."""
        from ..checkpoint import load_model
        from ..training import DistillConfig, Distiller
        from .build import load_demo_t5

        c = self.cfg
        d = self.stage_dir("distill")
        cfg = self.demo_config()
        base = self.stage_dir("base")
        teacher = load_model(base / "model.safetensors", dtype=torch.float32)
        t5 = self.t5_dir()
        teacher.set_text_encoder(load_demo_t5(t5, cfg))
        data = self.prepared(teacher)
        dc = DistillConfig(steps=c.distill_steps, batch_size=c.distill_batch, lr=c.distill_lr,
                           guidance=c.distill_guidance, parameterization="full", gan_blocks=cfg.audiox.backbone.depth,
                           update_ratio=c.distill_update_ratio, fake_updates=c.distill_fake_updates,
                           gan_weight=c.distill_gan_weight,
                           precision="bf16", gradient_checkpointing=False, seed=c.seed, save_every=100,
                           name="model")
        ds = Distiller(teacher, data, dc, out_dir=d)
        try:
            resumed = ds.resume()
        except CheckpointError as e:  # the base model was retrained since: start the distillation over
            stale = d / f"checkpoints.stale-{time.strftime('%Y%m%d-%H%M%S')}"
            os.replace(d / "checkpoints", stale)
            self.echo(f"[distill] {e}\n[distill] moved those checkpoints to {stale}; starting over")
            ds = Distiller(teacher, data, dc, out_dir=d)
            resumed = False
        if resumed:
            self.echo(f"[distill] resuming at step {ds.step}")
        ds.run(callback=self._progress("distill", max(1, c.distill_steps // 30)))
        files = ds.export(d)
        return {"steps": ds.step, "files": {k: str(v) for k, v in files.items()}, "t5": str(t5)}

    def with_stage_vae(self, model, cfg=None):
        """``model`` with the vae stage's final VAE (:func:`_with_vae`)."""
        return _with_vae(model, cfg or self.demo_config(), self.stage_dir("vae") / "vae.safetensors")

    def stage_export(self) -> dict:
        """Write the shipped layout under ``DIR/export/`` from what the earlier stages produced.

        Model files are stored in fp16 with the config and Turbo role in their metadata; the T5
        comes from the latest stage that trained one (``distill/t5``, ``base/t5``, ``text/t5``),
        else the initial one (``data/t5``).  Missing models are listed in the result, not invented."""
        from ..checkpoint import load_model, save_model
        from ..weights import WeightSource
        from .build import load_demo_t5, save_t5_folder
        from .model_config import size_report

        root = self.stage_dir("export")
        cfg = self.demo_config()
        out: Dict[str, Any] = {"files": {}, "missing": []}
        t5_src = self.stage_dir("distill") / "t5"
        if not (t5_src / "model.safetensors").is_file():
            t5_src = self.t5_dir()
        enc = load_demo_t5(t5_src, cfg)
        t5_dst = save_t5_folder(enc.model, root / SHIPPED_LAYOUT["t5"], dtype=torch.float16)
        out["files"]["t5"] = {"from": str(t5_src), "to": str(t5_dst),
                              "bytes": sum(f.stat().st_size for f in t5_dst.iterdir())}
        for role, stage, key in (("base", "base", "base"), ("student", "distill", "turbo")):
            src = self.stage_dir(stage) / "model.safetensors"
            if not src.is_file():
                out["missing"].append(f"{key}: {src} (stage '{stage}' has not run)")
                continue
            m = self.with_stage_vae(load_model(src, dtype=torch.float32), cfg)
            dst = root / SHIPPED_LAYOUT[key]
            save_model(m, dst, dtype=torch.float16, role=role)
            WeightSource(dst)  # re-open: fails loudly on a broken write
            out["files"][key] = {"from": str(src), "to": str(dst), "bytes": dst.stat().st_size}
        rep = size_report(cfg)
        out["budget"] = {"model_params": rep["model_params"], "t5_params": rep["t5_params"],
                         "planned_total_bytes": rep["total_bytes"], "limit_bytes": rep["limit_bytes"],
                         "written_bytes": sum(f["bytes"] for f in out["files"].values())}
        _write_json(root / "export.json", out)
        return out


_VAE_PREFIXES = ("pretransform.model.", "conditioner.conditioners.audio_prompt.pretransform.model.")


@torch.no_grad()
def _with_vae(model, cfg, vae_path: Path):
    """``model``'s networks in the architecture of ``cfg`` with the VAE of ``vae_path`` in both of its
    copies (a phase-2 decoder may differ in width from the one the model was trained with).  The
    encoder must be the model's own, bit for bit: the latents it was trained on stay exactly the same."""
    from .build import build_demo_model
    out = build_demo_model(cfg, vae_path=vae_path)
    own, new = model.state_dict(), out.state_dict()
    rest_own = {k for k in own if not k.startswith(_VAE_PREFIXES)}
    rest_new = {k for k in new if not k.startswith(_VAE_PREFIXES)}
    if rest_own != rest_new:
        diff = sorted(rest_own ^ rest_new)
        raise CheckpointError(f"the model does not fit the demo config ({len(diff)} tensors differ, e.g. {diff[0]})")
    for k in new:
        if k.startswith(_VAE_PREFIXES) and ".encoder." in k and not (k in own and own[k].shape == new[k].shape
                                                      and torch.equal(own[k].float(), new[k].float())):
            raise CheckpointError(f"{vae_path}: its encoder is not the one the model was trained with ({k}); "
                                  "only the decoder may change after the data stage")
    out.load_state_dict({**new, **{k: own[k] for k in rest_own}}, strict=True)
    return out


@torch.no_grad()
def _latent_scale(pt, world: WorldConfig, seed: int, n: int = 64) -> float:
    """Standard deviation of the posterior means over ``n`` train-split clips (the value the
    pretransform ``scale`` gets, so the diffusion model sees unit-variance latents)."""
    specs = make_dataset(n, seed + 77, "train", world)
    zs = []
    for s in range(0, n, 8):
        x = torch.stack([torch.from_numpy(render_audio(sp, cfg=world)).expand(pt.io_channels, -1)
                         for sp in specs[s:s + 8]]).float()
        zs.append(pt.encode(x, sample=False))
    return float(torch.cat(zs).std())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m audiox_core.demo.recipe", description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output folder (created; reruns resume)")
    ap.add_argument("--quick", action="store_true", help="smoke-test sizes (minutes, useless weights)")
    ap.add_argument("--only", default=None, help="comma-separated stages to run (default: all)")
    ap.add_argument("--skip", default="", help="comma-separated stages to skip")
    ap.add_argument("--force", default="", help="comma-separated stages to redo even if done")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default 2)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cfg = RecipeConfig.quick() if args.quick else RecipeConfig()
    if args.threads:
        cfg = replace(cfg, threads=args.threads)
    stages = tuple(s for s in args.only.split(",") if s) if args.only else STAGES
    split = lambda s: tuple(x for x in s.split(",") if x)  # noqa: E731
    r = Recipe(args.out, cfg, echo=lambda s: print(time.strftime("%H:%M:%S"), s, flush=True))
    try:
        r.run(stages, skip=split(args.skip), force=split(args.force))
    except NotImplementedError as e:
        print(f"stopped: {e}", file=sys.stderr)
        return 3
    except AudioXError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
