"""The training nodes (nodes/datasets.py, lora.py, distill.py) one by one, under stubbed ComfyUI, with tiny weights.

What is checked: AudioX Dataset's errors name the node and the input (missing folder, no audio,
missing sidecar captions), the caption policies (skip / file name) and the encoder cache being
reused by a second prepare; AudioX Train LoRA leaves the loaded model bit-identical while its
output model computes something else, AudioX LoRA Loader at strength 0 gives exactly the base
output and merged equals applied; Cancel mid-training propagates ComfyUI's interrupt, leaves a
loadable LoRA of the last completed step marked partial (``<name>.partial.safetensors``), and ``resume`` continues from there to the same LoRA an
uninterrupted run gives; LoRAs of other weights / another architecture are refused; AudioX Distill
refuses a v-objective teacher and turns the tiny Turbo base into a student the Turbo sampler runs,
without changing the teacher.
"""
from __future__ import annotations

import json
import re
import sys
import types

import pytest
import torch

import comfy_fakes
import comfy_harness as H
import workflow_models  # noqa: F401  (registers the tiny-weight factories)
from comfy_harness import comfy_env  # noqa: F401  (fixture)
from comfy_harness import call_node as call

TINY = {"audiox/turbo_base.safetensors": "tiny_turbo_base", "audiox/v_model.safetensors": "tiny_audiox",
        "text_encoders/t5": "tiny_t5"}
FOLDER = "train_clips"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def env(comfy_env):  # noqa: F811
    H.install_models(comfy_env.models_dir, TINY)
    H.INPUT_FACTORIES["tiny_example_dataset"](comfy_env.input_dir / FOLDER)
    return comfy_env


# ------------------------------------------------------------------ helpers
def node_error(fn, *args, **kwargs) -> str:
    with pytest.raises(H.load_pack(fresh=False).nodes.common.NodeError) as ei:
        fn(*args, **kwargs)
    return str(ei.value)


def load(env, ckpt="turbo_base.safetensors"):
    return call(env, "AudioXModelLoader", ckpt_name=ckpt, dtype="fp32", keep_on_gpu=True)[0]


def t5(env):
    return call(env, "AudioXT5Loader", t5_name="t5", dtype="fp32", keep_on_gpu=True)[0]


def dataset(env, model, enc=None, folder=FOLDER, **kw):
    args = dict(captions="auto", missing_captions="error", manifest="", videos="use", sync="zeros")
    args.update(kw)
    return call(env, "AudioXDataset", model=model, t5=enc or t5(env), folder=folder, **args)


TRAIN = dict(learning_rate=1e-2, rank=2, alpha=0.0, dropout=0.0, targets="all", include_maf=False, batch_size=1,
             grad_accum=1, warmup_steps=0, precision="fp32", gradient_checkpointing=False, ema=False, mask_video=0.6,
             mask_text=0.2, mask_audio=0.6, cfg_dropout=0.1, seed=3, save_every=0)


def train(env, model, ds, name="my_lora", steps=2, resume=False, **kw):
    args = dict(TRAIN, **kw)
    return call(env, "AudioXTrainLoRA", model=model, dataset=ds, output_name=name, steps=steps, resume=resume, **args)


def snapshot(module: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def backbone_inputs(model, seed=1):
    """Random latents, times and a context of the tiny model's shapes (as tests/test_lora.py)."""
    g = torch.Generator().manual_seed(seed)
    cfg = model.config
    n_ctx = 384 if cfg.backbone.type == "mmdit" else 128 + 128 + 215
    return (torch.randn(1, cfg.io_channels, cfg.latent_length, generator=g), torch.rand(1, generator=g),
            torch.randn(1, n_ctx, cfg.cond_dim, generator=g))


def backbone_out(bundle, inputs) -> torch.Tensor:
    """The backbone's output for ``inputs`` the way a sampler node runs the bundle (its LoRAs attached
    and, if asked, merged only inside ``on_device``)."""
    with torch.inference_mode(), bundle.on_device("backbone", "maf", "conditioner"):
        return bundle.model.velocity(*inputs).clone()


def lora_file_tensors(path) -> dict:
    from audiox_core.weights import SafetensorsFile
    f = SafetensorsFile(path)
    return {k: f.read(k) for k in f.keys()}


def lora_file_meta(path) -> dict:
    from audiox_core.weights import SafetensorsFile
    return json.loads(SafetensorsFile(path).metadata["audiox_lora"])


# ================================================================== AudioX Dataset
def test_dataset_folder_errors_name_the_node_and_input(env):
    cls = env.classes["AudioXDataset"]
    msg = cls.VALIDATE_INPUTS(folder="no_such_folder", manifest="")
    assert isinstance(msg, str) and msg.startswith("AudioX Dataset: input 'folder'") and "no_such_folder" in msg
    (env.input_dir / "only_text").mkdir()
    (env.input_dir / "only_text" / "readme.txt").write_text("no audio here")
    msg = cls.VALIDATE_INPUTS(folder="only_text", manifest="")
    assert isinstance(msg, str) and msg.startswith("AudioX Dataset: input 'folder'") and "no audio" in msg
    assert cls.VALIDATE_INPUTS(folder=FOLDER, manifest="") is True
    model, enc = load(env), t5(env)
    for folder in ("no_such_folder", "only_text"):  # the node itself refuses too (a linked folder value)
        msg = node_error(dataset, env, model, enc, folder=folder)
        assert msg.startswith("AudioX Dataset: input 'folder'"), msg


def test_dataset_caption_policies(env):
    import shutil
    model, enc = load(env), t5(env)
    root = env.input_dir / FOLDER
    stems = sorted(p.stem for p in root.glob("*.wav"))
    assert len(stems) == 3 and all((root / f"{s}.txt").is_file() for s in stems)
    # one more clip without a sidecar caption, with a name that differs from every caption
    shutil.copy(root / f"{stems[1]}.wav", root / "Kick-drum_solo.wav")

    msg = node_error(dataset, env, model, enc, captions="sidecar .txt", missing_captions="error")
    assert msg.startswith("AudioX Dataset: input 'missing_captions'"), msg
    assert "Kick-drum_solo.wav" in msg and "1 of 4" in msg
    assert not any(f"{s}.wav" in msg for s in stems)  # only the file that lacks a caption is listed

    ds, report = dataset(env, model, enc, captions="sidecar .txt", missing_captions="skip file")
    names = sorted(it.name for it in ds.data.items)
    assert names == stems and len(ds.data) == 3, names
    sidecars = {s: (root / f"{s}.txt").read_text(encoding="utf-8").strip() for s in stems}
    assert {it.name: it.captions for it in ds.data.items} == sidecars

    ds, report = dataset(env, model, enc, captions="sidecar .txt", missing_captions="use file name")
    caps = {it.name: it.captions for it in ds.data.items}
    assert len(ds.data) == 4 and caps["Kick-drum_solo"] == "Kick drum solo"
    assert all(caps[s] == sidecars[s] for s in stems)
    assert "3 sidecar" in report and "1 file name" in report, report

    ds, report = dataset(env, model, enc, captions="sidecar .txt", missing_captions="empty caption")
    caps = {it.name: it.captions for it in ds.data.items}
    assert len(ds.data) == 4 and caps["Kick-drum_solo"] == "" and "1 no caption" in report, report

    ds, report = dataset(env, model, enc, captions="file name")  # the source itself: sidecars are not read
    caps = {it.name: it.captions for it in ds.data.items}
    assert caps["Kick-drum_solo"] == "Kick drum solo" and "4 file name" in report, report
    assert all(caps[s] == s.replace("_", " ") for s in stems)


def test_dataset_second_prepare_reuses_the_encoder_cache(env):
    model, enc = load(env), t5(env)
    ds1, report1 = dataset(env, model, enc)
    m = re.search(r"encoder cache: (\d+) of (\d+) entries reused, (\d+) computed", report1)
    assert m, report1
    n = int(m.group(2))
    assert n >= 3 and int(m.group(1)) == 0 and int(m.group(3)) == n  # a fresh output folder: all computed
    ds2, report2 = dataset(env, model, enc)
    assert f"encoder cache: {n} of {n} entries reused, 0 computed" in report2, report2
    assert ds2.data.dataset_hash == ds1.data.dataset_hash and len(ds2.data) == len(ds1.data) == 3
    assert "3 sidecar" in report1 and "with video" in report1


# ================================================================== AudioX Train LoRA + LoRA Loader
def test_train_lora_leaves_the_model_unchanged_and_the_loader_applies_it(env):
    from audiox_core.training import attached_loras
    model = load(env)
    ds, _ = dataset(env, model)
    x = backbone_inputs(model.model)
    before = snapshot(model.model)
    grads = [p.requires_grad for p in model.model.parameters()]
    modes = [m.training for m in model.model.modules()]
    base = backbone_out(model, x)

    out_model, value, image, report = train(env, model, ds, name="sub/my_lora", steps=2)

    # the loaded (shared) model: weights, flags and modes as before, nothing attached, same output
    assert same(snapshot(model.model), before)
    assert [p.requires_grad for p in model.model.parameters()] == grads
    assert [m.training for m in model.model.modules()] == modes
    assert attached_loras(model.model) == []
    assert torch.equal(backbone_out(model, x), base)
    # the returned model has the LoRA: another output, but only inside its own block
    assert out_model.model is model.model and len(out_model.loras) == 1
    with_lora = backbone_out(out_model, x)
    assert (with_lora - base).abs().max() > 1e-4 * base.abs().max()
    assert attached_loras(model.model) == [] and same(snapshot(model.model), before)
    # the file in models/loras, with its metadata
    path = env.models_dir / "loras" / "sub" / "my_lora.safetensors"
    assert path.is_file() and "sub/my_lora.safetensors" in env.classes["AudioXLoRALoader"].INPUT_TYPES()[
        "required"]["lora_name"][0]
    meta = lora_file_meta(path)
    assert meta["steps"] == 2 and meta["variant"] == "audiox_turbo" and meta["rank"] == 2
    assert meta["dataset_hash"] == ds.data.dataset_hash and meta.get("base_fingerprint")
    assert "steps 1–2 of 2" in report and image.ndim == 4 and image.shape[-1] == 3
    assert any(k.endswith(".lora_B.weight") and v.abs().max() > 0 for k, v in lora_file_tensors(path).items())

    # AudioX LoRA Loader: strength 0 is the base exactly, merge equals applied
    zero, _ = call(env, "AudioXLoRALoader", model=model, lora_name="none", strength=0.0, merge=False,
                   allow_other_weights=False, lora=value)
    assert torch.equal(backbone_out(zero, x), base)
    one, _ = call(env, "AudioXLoRALoader", model=model, lora_name="sub/my_lora.safetensors", strength=1.0,
                  merge=False, allow_other_weights=False)
    applied = backbone_out(one, x)
    assert torch.allclose(applied, with_lora, rtol=0, atol=1e-6)  # the file is the in-graph LoRA
    merged_bundle, info = call(env, "AudioXLoRALoader", model=model, lora_name="sub/my_lora.safetensors",
                               strength=1.0, merge=True, allow_other_weights=False)
    merged = backbone_out(merged_bundle, x)
    with torch.inference_mode(), merged_bundle.on_device("backbone"):  # baked into the weights while it runs
        changed = [k for k, v in model.model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed and all(k.endswith("weight") for k in changed)
    assert (merged - applied).abs().max() <= 1e-5 * applied.abs().max()
    assert "merged" in info
    # nothing leaked into the shared model: weights bit-identical, base output and trained output unchanged
    assert same(snapshot(model.model), before) and attached_loras(model.model) == []
    assert torch.equal(backbone_out(model, x), base)
    assert torch.equal(backbone_out(out_model, x), with_lora)


class _FakeServer:
    """ComfyUI's ``server`` module as far as ``send_progress_text`` goes: records the live text and
    presses Cancel (ComfyUI's interrupt flag) when the text of step ``cancel_at`` arrives."""

    def __init__(self, env, cancel_at=None):
        self.env, self.cancel_at, self.texts, self.events = env, cancel_at, [], []
        self.module = types.ModuleType("server")
        self.module.PromptServer = types.SimpleNamespace(instance=self)

    def send_sync(self, event, data, sid=None):
        self.events.append((event, data))

    def send_progress_text(self, text, node_id):
        self.texts.append((node_id, text))
        m = re.search(r"step (\d+)/", text)
        if self.cancel_at is not None and m and int(m.group(1)) == self.cancel_at:
            self.env.interrupt_flag = True


def test_cancel_saves_the_last_step_and_resume_finishes(env, monkeypatch):
    from audiox_core.training import attached_loras, load_lora
    model = load(env)
    ds, _ = dataset(env, model)
    before = snapshot(model.model)
    server = _FakeServer(env, cancel_at=2)
    monkeypatch.setitem(sys.modules, "server", server.module)

    with pytest.raises(comfy_fakes.InterruptProcessingException):  # ComfyUI's own interrupt, so it says "interrupted"
        train(env, model, ds, name="cancel_me", steps=4, resume=True)
    steps_seen = [int(re.search(r"step (\d+)/4", t).group(1)) for _, t in server.texts]
    assert steps_seen == [1, 2] and all(nid == "7" and "loss" in t for nid, t in server.texts)
    assert same(snapshot(model.model), before) and attached_loras(model.model) == []

    # Cancel publishes the last completed step only as a marked partial file, never under the final name
    path = env.models_dir / "loras" / "cancel_me.safetensors"
    partial = env.models_dir / "loras" / "cancel_me.partial.safetensors"
    assert not path.exists()
    lora = load_lora(partial, model.model, attach=False)
    assert lora.meta["steps"] == 2 and lora.num_parameters() > 0 and lora.meta["partial"] == "step 2 of 4"
    ck = env.output_dir / "audiox_training" / "lora" / "cancel_me" / "checkpoints"
    assert [p.name for p in ck.glob("step_*.safetensors")] == ["step_00000002.safetensors"]

    server.texts.clear()
    server.cancel_at = None
    _, value, _, report = train(env, model, ds, name="cancel_me", steps=4, resume=True)
    assert "resumed from step 2" in report and "steps 3–4 of 4" in report, report
    assert [int(re.search(r"step (\d+)/4", t).group(1)) for _, t in server.texts] == [3, 4]
    assert lora_file_meta(path)["steps"] == 4 and value.lora.meta["steps"] == 4
    assert not partial.exists() and "partial" not in value.lora.meta  # finished: the partial file is gone
    assert same(snapshot(model.model), before)

    # cancel + resume gives the LoRA of an uninterrupted run with the same seed
    train(env, model, ds, name="straight", steps=4, resume=False)
    a, b = lora_file_tensors(path), lora_file_tensors(env.models_dir / "loras" / "straight.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_training_sends_the_live_view_over_the_websocket(env, monkeypatch):
    """web/audiox.js draws the loss curve from 'audiox.training' messages (PromptServer.send_sync):
    each carries only the new history entries, steps/s, ETA, lr and the newest checkpoint."""
    model = load(env)
    ds, _ = dataset(env, model)
    server = _FakeServer(env)
    monkeypatch.setitem(sys.modules, "server", server.module)
    monkeypatch.setattr(env.pack.nodes.training.TrainProgress, "LIVE_SECONDS", 0.0)
    train(env, model, ds, name="live", steps=4, resume=False, save_every=2)
    msgs = [d for e, d in server.events if e == "audiox.training"]
    assert [m["step"] for m in msgs] == [1, 2, 3, 4] and all(m["node"] == "7" and m["total"] == 4 for m in msgs)
    assert [m["reset"] for m in msgs] == [True, False, False, False]
    entries = [e for m in msgs for e in m["entries"]]
    assert [e["step"] for e in entries] == [1, 2, 3, 4] and all(e["loss"] > 0 and "lr" in e for e in entries)
    assert all(m["steps_per_second"] > 0 for m in msgs) and msgs[-1]["eta_seconds"] == 0
    assert msgs[0]["eta_seconds"] > 0 and isinstance(msgs[0]["lr"], float)
    # the checkpoint of step 2 is written after step 2's callback: the message of step 3 names it
    assert msgs[1]["checkpoint"] is None and msgs[2]["checkpoint"].endswith("step_00000002.safetensors")
    monkeypatch.setattr(env.pack.nodes.training.TrainProgress, "LIVE_SECONDS", 3600.0)
    server.events.clear()
    train(env, model, ds, name="live_throttled", steps=3, resume=False, save_every=0)
    assert [d["step"] for _, d in server.events] == [1, 3]  # throttled; the last step is always sent
    assert [e["step"] for _, d in server.events for e in d["entries"]] == [1, 2, 3]
    monkeypatch.delitem(sys.modules, "server")
    assert env.pack.nodes.comfy_compat.ui_event("audiox.training", {}) is False  # outside ComfyUI: a no-op


def test_training_previews_a_generation_every_n_steps_without_changing_the_lora(env, monkeypatch):
    from audiox_core import media
    model = load(env)
    ds, _ = dataset(env, model)
    server = _FakeServer(env)
    monkeypatch.setitem(sys.modules, "server", server.module)
    monkeypatch.setattr(env.pack.nodes.training.TrainProgress, "LIVE_SECONDS", 3600.0)
    train(env, model, ds, name="with_previews", steps=4, resume=False, preview_every=2)
    msgs = [d for _, d in server.events]
    clips = [(m["step"], m["preview"]) for m in msgs if "preview" in m]
    assert [st for st, _ in clips] == [2, 4], msgs  # a preview forces its message through the throttle
    waves = []
    for _, clip in clips:
        ref = clip["audio"]
        assert ref["type"] == "temp" and ref["subfolder"] == "audiox"
        wave, sr = media.load_audio(str(env.temp_dir / ref["subfolder"] / ref["filename"]))
        assert sr == model.model.config.sample_rate and wave.shape[-1] > 0 and wave.abs().max() > 0
        waves.append(wave)
    assert not torch.equal(waves[0], waves[1])  # the LoRA changed between steps 2 and 4
    train(env, model, ds, name="without_previews", steps=4, resume=False)
    a = lora_file_tensors(env.models_dir / "loras" / "with_previews.safetensors")
    b = lora_file_tensors(env.models_dir / "loras" / "without_previews.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # previews leave training alone


# ================================================================== AudioX LoRA Loader: refusals
def test_lora_loader_refuses_loras_of_other_models(env):
    loras = env.models_dir / "loras"
    loras.mkdir(parents=True, exist_ok=True)
    workflow_models.tiny_lora_for("audiox_turbo", 9, loras / "other_weights.safetensors")  # same arch, other seed
    workflow_models.tiny_lora_for("audiox", 3, loras / "other_arch.safetensors")           # the DiT AudioX
    workflow_models.tiny_lora_for("audiox_turbo", 2, loras / "own.safetensors")            # this model's weights
    model = load(env)
    x = backbone_inputs(model.model)
    base = backbone_out(model, x)

    def apply(name, allow):
        return call(env, "AudioXLoRALoader", model=model, lora_name=name, strength=1.0, merge=False,
                    allow_other_weights=allow)

    msg = node_error(apply, "other_weights.safetensors", False)
    assert msg.startswith("AudioX LoRA Loader: input 'lora_name'") and "allow_other_weights" in msg, msg
    other, _ = apply("other_weights.safetensors", True)
    assert not torch.equal(backbone_out(other, x), base)  # accepted on request, and applied
    for allow in (False, True):
        msg = node_error(apply, "other_arch.safetensors", allow)
        assert msg.startswith("AudioX LoRA Loader: input 'lora_name'") and "does not belong" in msg, msg
    own, _ = apply("own.safetensors", False)
    assert not torch.equal(backbone_out(own, x), base)
    assert torch.equal(backbone_out(model, x), base)


# ================================================================== AudioX Distill
DISTILL = dict(mode="lora", lora_rank=2, learning_rate=1e-3, guidance=6.0, student_steps=2, gan=True,
               precision="fp32", gradient_checkpointing=False, seed=0, resume=False, save_every=0)


def test_distill_refuses_a_v_objective_teacher(env):
    v_model = load(env, "v_model.safetensors")
    assert v_model.model.objective == "v"
    ds, _ = dataset(env, v_model)
    msg = node_error(call, env, "AudioXDistill", model=v_model, dataset=ds, output_name="student", steps=2,
                     **DISTILL)
    assert msg.startswith("AudioX Distill: input 'model'") and "rectified" in msg, msg
    assert not (env.models_dir / "audiox" / "student.safetensors").exists()


def test_distill_makes_a_student_the_turbo_sampler_runs(env):
    teacher = load(env)
    assert teacher.role == "base" and not teacher.is_turbo_student
    enc = t5(env)
    ds, _ = dataset(env, teacher, enc)
    before = snapshot(teacher.model)
    grads = [p.requires_grad for p in teacher.model.parameters()]
    modes = [m.training for m in teacher.model.modules()]
    x = backbone_inputs(teacher.model)
    base = backbone_out(teacher, x)

    student, image, report = call(env, "AudioXDistill", model=teacher, dataset=ds, output_name="tiny_student",
                                  steps=3, **DISTILL)
    # the teacher is unchanged: weights, flags, modes, no LoRA left on it, same output
    from audiox_core.training import attached_loras
    assert same(snapshot(teacher.model), before) and attached_loras(teacher.model) == []
    assert [p.requires_grad for p in teacher.model.parameters()] == grads
    assert [m.training for m in teacher.model.modules()] == modes
    assert torch.equal(backbone_out(teacher, x), base)
    # a separate student model, role student, trained away from the teacher
    assert student.model is not teacher.model and student.role == "student" and student.is_turbo_student
    assert student.variant == "audiox_turbo"
    sd = student.model.state_dict()
    assert sd.keys() == before.keys() and any(not torch.equal(sd[k], before[k]) for k in sd)
    assert (env.models_dir / "audiox" / "tiny_student.safetensors").is_file()
    assert "role student" in report and "steps 1–3 of 3" in report and image.ndim == 4
    assert "GAN on (weight 1)" in report and "5 student : 1 critic updates per cycle" in report  # official

    # AudioX Turbo Sampler takes it (conditions encoded with the student)
    (cond,) = call(env, "AudioXTextEncoder", model=student, t5=enc, prompt="a bell")
    ctx, _ = call(env, "AudioXMAFFusion", model=student, text=cond)
    latent, sample_report = call(env, "AudioXTurboSampler", model=student, context=ctx, seed=0, steps=2,
                                 batch_size=1, duration=0.0)
    cfg = teacher.config
    samples = latent["samples"]
    assert tuple(samples.shape) == (1, cfg.io_channels, cfg.latent_length) and torch.isfinite(samples).all()


def test_distill_schedule_input_reaches_the_distiller(env):
    """schedule critic-heavy: 1 student update per 5 critic updates, GAN weight 10 (the report says so,
    and the history has one student update in the first six steps)."""
    teacher = load(env)
    ds, _ = dataset(env, teacher, t5(env))
    _, _, report = call(env, "AudioXDistill", model=teacher, dataset=ds, output_name="heavy", steps=6,
                        **{**DISTILL, "schedule": "critic-heavy"})
    assert "GAN on (weight 10)" in report and "1 student : 5 critic updates per cycle" in report, report
    msg = node_error(call, env, "AudioXDistill", model=teacher, dataset=ds, output_name="bad", steps=2,
                     **{**DISTILL, "schedule": "fastest"})
    assert "schedule" in msg and "critic-heavy" in msg, msg


def test_distill_previews_the_student_every_n_steps_without_changing_it(env, monkeypatch):
    from audiox_core import media
    from safetensors.torch import load_file
    teacher = load(env)
    ds, _ = dataset(env, teacher, t5(env))
    server = _FakeServer(env)
    monkeypatch.setitem(sys.modules, "server", server.module)
    monkeypatch.setattr(env.pack.nodes.training.TrainProgress, "LIVE_SECONDS", 3600.0)
    call(env, "AudioXDistill", model=teacher, dataset=ds, output_name="previewed", steps=4, preview_every=2,
         **dict(DISTILL, resume=False))
    clips = [(d["step"], d["preview"]) for _, d in server.events if "preview" in d]
    assert [st for st, _ in clips] == [2, 4], server.events
    waves = []
    for _, clip in clips:
        ref = clip["audio"]
        assert ref["type"] == "temp" and "distill_preview_step" in ref["filename"]
        wave, sr = media.load_audio(str(env.temp_dir / ref["subfolder"] / ref["filename"]))
        assert sr == teacher.config.sample_rate and wave.shape[-1] > 0 and torch.isfinite(wave).all()
        waves.append(wave)
    assert not torch.equal(waves[0], waves[1])  # the student changed between steps 2 and 4
    call(env, "AudioXDistill", model=teacher, dataset=ds, output_name="unpreviewed", steps=4,
         **dict(DISTILL, resume=False))
    a = load_file(str(env.models_dir / "audiox" / "previewed.safetensors"))
    b = load_file(str(env.models_dir / "audiox" / "unpreviewed.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # previews leave training alone
