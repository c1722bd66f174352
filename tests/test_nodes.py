"""The AudioX nodes one by one, under stubbed ComfyUI (tests/comfy_fakes.py), with tiny weights.

What is checked: variant detection from the file (not the name), each user error surfacing as an
error that starts with the node's display name and names the input, conditions tied to their
model, MAF gate reports, masks (inpainting keeps the audio outside the ranges exactly, completion
keeps the first seconds), progress/interrupt through ComfyUI's bar, device management through
ModelPatchers, VAE round trips, video outputs carrying the audio, spectrogram pictures.
"""
from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from audiox_core import partial_loading
from audiox_core.standalone import module_bytes

import comfy_fakes
import comfy_harness as H
import workflow_models  # noqa: F401  (registers the tiny-weight factories)
from comfy_harness import comfy_env  # noqa: F401  (fixture)
from comfy_harness import call_node as call

TINY = {"audiox/turbo.safetensors": "tiny_turbo", "audiox/turbo_base.safetensors": "tiny_turbo_base",
        "audiox/maf.safetensors": "tiny_maf", "audiox/v1_named_turbo.safetensors": "tiny_audiox",
        "audiox/vae.safetensors": "tiny_vae", "audiox/sf.pth": "tiny_synchformer_pth",
        "audiox/Turbo/official.ckpt": "tiny_turbo_official_ckpt", "text_encoders/t5": "tiny_t5"}


@pytest.fixture
def env(comfy_env):  # noqa: F811
    H.install_models(comfy_env.models_dir, TINY)
    return comfy_env


def load(env, ckpt: str, **kw):
    return call(env, "AudioXModelLoader", ckpt_name=ckpt, dtype="fp32", keep_on_gpu=True, **kw)


def t5(env):
    return call(env, "AudioXT5Loader", t5_name="t5", dtype="fp32", keep_on_gpu=True)[0]


def text_ctx(env, model, prompt="two beeps", t5_=None, **scales):
    (cond,) = call(env, "AudioXTextEncoder", model=model, t5=t5_ or t5(env), prompt=prompt)
    ctx, report = call(env, "AudioXMAFFusion", model=model, text=cond, **scales)
    return cond, ctx, report


def ui_of(env, node_id: str, **kwargs) -> dict:
    """The ``ui`` part of a node's return value (what the frontend receives after it runs)."""
    cls = env.classes[node_id]
    if "unique_id" in (cls.INPUT_TYPES().get("hidden") or {}):
        kwargs["unique_id"] = "7"
    with torch.inference_mode():
        out = getattr(cls(), cls.FUNCTION)(**kwargs)
    return out.get("ui", {}) if isinstance(out, dict) else {}


def errors(fn, *args, **kwargs) -> str:
    from audiox_core.errors import AudioXError
    with pytest.raises(AudioXError) as ei:
        fn(*args, **kwargs)
    return str(ei.value)


# ------------------------------------------------------------------ contracts beyond test_node_contracts
def test_every_node_and_input_has_a_tooltip(env):
    for node_id, cls in env.pack.NODE_CLASS_MAPPINGS.items():
        assert getattr(cls, "DESCRIPTION", ""), f"{node_id} has no DESCRIPTION"
        assert len(getattr(cls, "OUTPUT_TOOLTIPS", ())) == len(cls.RETURN_TYPES), node_id
        spec = cls.INPUT_TYPES()
        for cat in ("required", "optional"):
            for name, v in (spec.get(cat) or {}).items():
                assert len(v) > 1 and v[1].get("tooltip"), f"{node_id}.{name} has no tooltip"
        assert cls.DISPLAY_NAME == env.pack.NODE_DISPLAY_NAME_MAPPINGS[node_id]


# ------------------------------------------------------------------ loaders
def test_loaders_list_only_files_of_their_kind(env):
    (env.models_dir / "audiox" / "broken.safetensors").write_bytes(b"\x10\x00not a header")
    lists = {node: env.classes[node].INPUT_TYPES()["required"][inp][0] for node, inp in [
        ("AudioXModelLoader", "ckpt_name"), ("AudioXVAELoader", "vae_name"),
        ("AudioXSynchformerLoader", "synchformer_name")]}
    models = set(lists["AudioXModelLoader"])
    assert {"turbo.safetensors", "maf.safetensors", "Turbo/official.ckpt"} <= models
    assert not models & {"vae.safetensors", "sf.pth"}
    assert "vae.safetensors" in lists["AudioXVAELoader"] and "sf.pth" not in lists["AudioXVAELoader"]
    assert not set(lists["AudioXVAELoader"]) & {"turbo.safetensors", "maf.safetensors"}
    assert "sf.pth" in lists["AudioXSynchformerLoader"]
    assert not set(lists["AudioXSynchformerLoader"]) & {"turbo.safetensors", "vae.safetensors"}
    # a file that cannot be read stays visible everywhere, so choosing it shows its error
    assert all("broken.safetensors" in v for v in lists.values())
    assert "broken.safetensors" in errors(call, env, "AudioXVAELoader", vae_name="broken.safetensors",
                                          sample_rate=8000, keep_on_gpu=True)


def test_file_kind_is_cached_per_file_version(tmp_path, monkeypatch):
    from audiox_core import checkpoint
    H.install_models(tmp_path, {"vae.safetensors": "tiny_vae"})
    calls = []
    real = checkpoint.classify_keys
    monkeypatch.setattr(checkpoint, "classify_keys", lambda keys: calls.append(1) or real(keys))
    path = tmp_path / "vae.safetensors"
    assert checkpoint.classify_file(path).kind == "vae"
    assert checkpoint.classify_file(path).kind == "vae" and len(calls) == 1
    H.install_models(tmp_path, {"other.safetensors": "tiny_turbo"})
    (tmp_path / "other.safetensors").replace(path)  # replaced: another size and mtime
    assert checkpoint.classify_file(path).kind == "audiox" and len(calls) == 2


def test_model_loader_detects_the_variant_from_the_weights_not_the_name(env):
    model, vae, info = load(env, "v1_named_turbo.safetensors")  # an AudioX (DiT) file named like Turbo
    assert model.variant == "audiox" and "AudioX (DiT)" in info and "Turbo" not in info.split("\n")[0]
    model, _, info = load(env, "turbo.safetensors")
    assert model.variant == "audiox_turbo" and model.is_turbo_student and "student" in info
    model, _, info = load(env, "turbo_base.safetensors")
    assert model.role == "base" and not model.is_turbo_student
    assert vae.sample_rate == 8000 and vae.pretransform is not None


def test_model_loader_wrong_file_kinds_name_the_input_and_the_right_loader(env):
    msg = errors(load, env, "vae.safetensors")
    assert msg.startswith("AudioX Model Loader: input 'ckpt_name'") and "AudioX VAE Loader" in msg
    msg = errors(load, env, "sf.pth")
    assert "Synchformer" in msg and "AudioX Synchformer Loader" in msg
    msg = errors(call, env, "AudioXVAELoader", vae_name="maf.safetensors", sample_rate=8000, keep_on_gpu=True)
    assert msg.startswith("AudioX VAE Loader: input 'vae_name'") and "'vae' output of AudioX Model Loader" in msg
    msg = errors(load, env, "missing.safetensors")
    assert msg.startswith("AudioX Model Loader: input 'ckpt_name'") and "not found" in msg


def test_official_turbo_layout_needs_and_takes_the_vae_file(env):
    msg = errors(load, env, "Turbo/official.ckpt")
    assert msg.startswith("AudioX Model Loader: input 'vae'") and "AudioX VAE Loader" in msg
    (vae,) = call(env, "AudioXVAELoader", vae_name="vae.safetensors", sample_rate=8000, keep_on_gpu=True)
    model, mvae, info = load(env, "Turbo/official.ckpt", vae=vae)
    assert model.variant == "audiox_turbo" and model.role == "student" and "config.json" in info
    ref = vae.pretransform.model.decoder.layers[0].weight_v
    assert torch.equal(model.model.pretransform.model.decoder.layers[0].weight_v, ref)


def test_t5_list_shows_folders_once_and_not_the_demo_checkpoints(env):
    choices = env.classes["AudioXT5Loader"].INPUT_TYPES()["required"]["t5_name"][0]
    assert "t5" in choices and not any(c.startswith("t5/") for c in choices)
    assert not any(c.startswith("audiox_demo_") for c in choices)
    models = env.classes["AudioXModelLoader"].INPUT_TYPES()["required"]["ckpt_name"][0]
    assert "turbo.safetensors" in models and not any("model.safetensors" in c for c in models)


def test_t5_single_file_uses_comfyuis_tokenizer(env, tmp_path, monkeypatch):
    """A bare T5 weights file (no tokenizer beside it) gets the tokenizer ComfyUI ships."""
    import shutil
    src = env.models_dir / "text_encoders" / "t5"
    shutil.copy(src / "model.safetensors", env.models_dir / "text_encoders" / "bare_t5.safetensors")
    tok = tmp_path / "comfy_tok"
    tok.mkdir()
    shutil.copy(src / "byte_tokenizer.json", tok / "byte_tokenizer.json")
    monkeypatch.setattr(env.pack.nodes.comfy_compat, "comfy_t5_tokenizer_dir", lambda: None)
    msg = errors(call, env, "AudioXT5Loader", t5_name="bare_t5.safetensors", dtype="fp32", keep_on_gpu=True)
    assert msg.startswith("AudioX T5 Loader: input 't5_name'") and "tokenizer" in msg
    monkeypatch.setattr(env.pack.nodes.comfy_compat, "comfy_t5_tokenizer_dir", lambda: tok)
    (bundle,) = call(env, "AudioXT5Loader", t5_name="bare_t5.safetensors", dtype="fp32", keep_on_gpu=True)
    (ref,) = call(env, "AudioXT5Loader", t5_name="t5", dtype="fp32", keep_on_gpu=True)
    text = "two beeps"
    ids = bundle.encoder.tokenizer([text], max_length=16, padding="max_length", return_tensors="pt")["input_ids"]
    ref_ids = ref.encoder.tokenizer([text], max_length=16, padding="max_length", return_tensors="pt")["input_ids"]
    assert torch.equal(ids, ref_ids)
    tokens, mask = bundle.encoder.encode([text])
    assert int(mask.sum()) == len(text.encode()) + 1  # byte tokens + </s>


# ------------------------------------------------------------------ conditions and fusion
def test_fusion_reports_the_learned_gates_and_scales_them(env):
    model, _, _ = load(env, "turbo.safetensors")
    enc = t5(env)
    cond, ctx, report = text_ctx(env, model, t5_=enc)
    g = model.model.maf_gates()[0].tolist()
    assert "MAF gates" in report and f"{g[1]:.3f}" in report and ctx.gates is not None
    _, ctx_off, report_off = text_ctx(env, model, t5_=enc, video_scale=0.0, text_scale=1.0, audio_scale=1.0)
    assert "scaled by video 0" in report_off
    assert not torch.allclose(ctx.tokens, ctx_off.tokens)
    msg = errors(call, env, "AudioXMAFFusion", model=model, video_scale=0.0, text_scale=0.0, audio_scale=0.0,
                 text=cond)
    assert msg.startswith("AudioX MAF Fusion: input 'text_scale'")
    bars = ui_of(env, "AudioXMAFFusion", model=model, text=cond, video_scale=0.5, text_scale=1.0,
                 audio_scale=2.0)["audiox_gates"]  # web/audiox.js draws one bar per modality
    assert bars == [{"modalities": ["video", "text", "audio"], "gates": pytest.approx(g), "scale": [0.5, 1.0, 2.0]}]


def test_fusion_without_text_asks_for_a_text_encoder(env):
    model, _, _ = load(env, "turbo.safetensors")
    msg = errors(call, env, "AudioXMAFFusion", model=model, video_scale=1.0, text_scale=1.0, audio_scale=1.0)
    assert msg.startswith("AudioX MAF Fusion: input 'text' is not connected") and "AudioX Text Encoder" in msg


def test_conditions_are_tied_to_their_model(env):
    a, _, _ = load(env, "turbo.safetensors")
    b, _, _ = load(env, "turbo_base.safetensors")
    cond, ctx_a, _ = text_ctx(env, a)
    msg = errors(call, env, "AudioXMAFFusion", model=b, text=cond)
    assert msg.startswith("AudioX MAF Fusion: input 'text'") and "another model" in msg
    msg = errors(call, env, "AudioXMAFFusion", model=a, video=cond)
    assert "input 'video'" in msg and "text condition" in msg
    msg = errors(call, env, "AudioXTurboSampler", model=b, context=ctx_a, seed=0, steps=4, batch_size=1,
                 duration=0.0)
    assert msg.startswith("AudioX Turbo Sampler: input 'context'") and "another model" in msg


def test_modality_drop_equals_fusing_without_that_modality(env):
    model, _, _ = load(env, "turbo.safetensors")
    enc = t5(env)
    (tcond,) = call(env, "AudioXTextEncoder", model=model, t5=enc, prompt="a bell")
    frames = comfy_fakes.gradient_frames(50)
    (vcond,) = call(env, "AudioXVideoEncoder", model=model, images=frames, fps=25.0, start_seconds=0.0,
                    sync="zeros", resize="stretch")
    both, _ = call(env, "AudioXMAFFusion", model=model, text=tcond, video=vcond)
    text_only, _ = call(env, "AudioXMAFFusion", model=model, text=tcond)
    dropped, report = call(env, "AudioXModalityDrop", model=model, context=both, drop_video=True)
    assert torch.allclose(dropped.tokens, text_only.tokens, atol=1e-6) and "dropped: video" in report
    assert not torch.allclose(both.tokens, text_only.tokens)
    msg = errors(call, env, "AudioXModalityDrop", model=model, context=both, drop_text=True)
    assert msg.startswith("AudioX Modality Drop: input 't5'")
    (empty,) = call(env, "AudioXTextEncoder", model=model, t5=enc, prompt="")
    no_text, _ = call(env, "AudioXMAFFusion", model=model, text=empty, video=vcond)
    dropped, _ = call(env, "AudioXModalityDrop", model=model, context=both, drop_text=True, t5=enc)
    assert torch.allclose(dropped.tokens, no_text.tokens, atol=1e-6)


# ------------------------------------------------------------------ video / image / sync
def test_video_encoder_errors_name_the_input(env):
    model, _, _ = load(env, "turbo.safetensors")
    empty = torch.zeros(0, 48, 64, 3)
    msg = errors(call, env, "AudioXVideoEncoder", model=model, images=empty, sync="zeros")
    assert msg == "AudioX Video Encoder: input 'images' has no frames"
    video = env.pack.nodes.comfy_compat.make_video(empty, Fraction(25))
    msg = errors(call, env, "AudioXVideoEncoder", model=model, video=video, sync="zeros")
    assert msg == "AudioX Video Encoder: input 'video' has no frames"
    msg = errors(call, env, "AudioXVideoEncoder", model=model, sync="zeros")
    assert msg.startswith("AudioX Video Encoder: input 'video' is not connected")
    frames = comfy_fakes.gradient_frames(10)
    msg = errors(call, env, "AudioXVideoEncoder", model=model, images=frames, sync="synchformer")
    assert msg.startswith("AudioX Video Encoder: input 'synchformer' is not connected") \
        and "AudioX Synchformer Loader" in msg
    msg = errors(call, env, "AudioXVideoEncoder", model=model, images=frames, fps=0.0, sync="zeros")
    assert msg.startswith("AudioX Video Encoder: input 'fps'")


def test_video_from_file_equals_the_same_frames_as_images(env):
    """A core VIDEO (file) and its decoded IMAGE frames + fps give the same condition (timestamp
    sampling of the same frames)."""
    model, _, _ = load(env, "maf.safetensors")
    path = comfy_fakes.write_test_video(env.input_dir / "v.mp4", seconds=2.0, fps=25)
    (loaded,) = call(env, "LoadVideo", file="v.mp4")
    (a,) = call(env, "AudioXVideoEncoder", model=model, video=loaded, sync="zeros", start_seconds=0.4)
    images, rate = comfy_fakes.decode_frames(str(path))
    (b,) = call(env, "AudioXVideoEncoder", model=model, images=images, fps=float(rate), sync="zeros",
                start_seconds=0.4)
    assert torch.allclose(a.tokens, b.tokens, atol=1e-5) and all(a.present)


def test_synchformer_path_and_precomputed_sync_features_agree(env):
    model, _, _ = load(env, "turbo.safetensors")
    (sf,) = call(env, "AudioXSynchformerLoader", synchformer_name="sf.pth", dtype="fp32", keep_on_gpu=True)
    frames = comfy_fakes.gradient_frames(60)
    (direct,) = call(env, "AudioXVideoEncoder", model=model, images=frames, fps=25.0, sync="synchformer",
                     synchformer=sf)
    (feats,) = call(env, "AudioXSyncEncoder", model=model, synchformer=sf, images=frames, fps=25.0)
    assert tuple(feats.tokens.shape) == (1, 40, 32)
    (cached,) = call(env, "AudioXVideoEncoder", model=model, images=frames, fps=25.0, sync="synchformer",
                     sync_features=feats)
    (zeros,) = call(env, "AudioXVideoEncoder", model=model, images=frames, fps=25.0, sync="zeros")
    assert torch.allclose(direct.tokens, cached.tokens, atol=1e-6)
    assert not torch.allclose(direct.tokens, zeros.tokens)


def test_image_encoder_holds_the_image(env):
    model, _, _ = load(env, "maf.safetensors")
    img = comfy_fakes.gradient_frames(3)
    (a,) = call(env, "AudioXImageEncoder", model=model, image=img, sync="zeros")
    (b,) = call(env, "AudioXVideoEncoder", model=model, images=img[:1].expand(50, -1, -1, -1).contiguous(),
                fps=25.0, sync="zeros")
    assert torch.allclose(a.tokens, b.tokens, atol=1e-6)


# ------------------------------------------------------------------ samplers
def test_turbo_sampler_refuses_v_models_and_steps_out_of_range(env):
    model, _, _ = load(env, "maf.safetensors")
    _, ctx, _ = text_ctx(env, model)
    msg = errors(call, env, "AudioXTurboSampler", model=model, context=ctx, seed=0, steps=4, batch_size=1,
                 duration=0.0)
    assert msg.startswith("AudioX Turbo Sampler: input 'model'") and "AudioX Sampler" in msg
    defs = H.defs_from_classes(env.classes)
    api = {"1": {"class_type": "AudioXTurboSampler", "inputs": {"model": ["9", 0], "context": ["9", 1], "seed": 0,
                                                                "steps": 9, "batch_size": 17, "duration": 301.0}},
           "2": {"class_type": "SaveAudio", "inputs": {"audio": ["1", 0], "filename_prefix": "x"}}}
    problems = "\n".join(H.validate_api(api, defs))
    assert "'steps': 9 is above max 8" in problems and "'batch_size': 17 is above max 16" in problems
    assert "'duration': 301.0 is above max 300" in problems


def test_base_sampler_warns_for_a_turbo_student_and_runs(env):
    model, vae, _ = load(env, "turbo.safetensors")
    _, ctx, _ = text_ctx(env, model)
    lat, report = call(env, "AudioXSampler", model=model, context=ctx, seed=1, steps=2, cfg=3.0,
                       sampler_name="auto", batch_size=2, duration=0.0)
    assert "distilled Turbo student" in report and "euler" in report
    assert tuple(lat["samples"].shape) == (2, 8, 32) and lat["type"] == "audio"
    msg = errors(call, env, "AudioXSampler", model=model, context=ctx, seed=1, steps=2, cfg=3.0,
                 sampler_name="dpmpp-3m-sde", batch_size=1, duration=0.0)
    assert msg.startswith("AudioX Sampler: input 'sampler_name'")


def test_sampler_is_deterministic_and_reports_progress_and_loads_only_the_backbone(env):
    model, _, _ = load(env, "turbo.safetensors")
    _, ctx, _ = text_ctx(env, model)
    env.progress.clear()
    env.load_calls.clear()
    a, _ = call(env, "AudioXTurboSampler", unique_id="42", model=model, context=ctx, seed=5, steps=4, batch_size=1,
                duration=0.0)
    b, _ = call(env, "AudioXTurboSampler", model=model, context=ctx, seed=5, steps=4, batch_size=1, duration=0.0)
    c, _ = call(env, "AudioXTurboSampler", model=model, context=ctx, seed=6, steps=4, batch_size=1, duration=0.0)
    assert torch.equal(a["samples"], b["samples"]) and not torch.equal(a["samples"], c["samples"])
    ours = [p for p in env.progress if p[0] == "42"]
    assert ours and ours[-1][1] == ours[-1][2]  # the bar reached its end
    assert all(len(c_["models"]) == 1 and c_["models"][0] is model.parts["backbone"] for c_ in env.load_calls)
    assert not any(c_["force_full_load"] for c_ in env.load_calls)  # ComfyUI may load it partially
    env.interrupt_flag = True
    with pytest.raises(comfy_fakes.InterruptProcessingException):
        call(env, "AudioXTurboSampler", model=model, context=ctx, seed=5, steps=4, batch_size=1, duration=0.0)


def test_sampler_on_a_card_too_small_for_the_backbone_loads_it_partially(env):
    """ComfyUI's low-VRAM path (fake: a byte budget per model): the backbone is loaded in part, the
    rest of its layers run from the offload device, and the samples do not change."""
    model, _, _ = load(env, "turbo.safetensors")
    _, ctx, _ = text_ctx(env, model)
    want, _ = call(env, "AudioXTurboSampler", model=model, context=ctx, seed=5, steps=4, batch_size=1, duration=0.0)
    backbone = model.parts["backbone"].model
    env.vram_budget = module_bytes(backbone) // 3
    got, _ = call(env, "AudioXTurboSampler", model=model, context=ctx, seed=5, steps=4, batch_size=1, duration=0.0)
    flagged = [n for n, layer in partial_loading.castable_layers(backbone) if layer.comfy_cast_weights]
    assert flagged and len(flagged) < len(partial_loading.castable_layers(backbone))
    assert torch.equal(got["samples"], want["samples"])


def test_offload_after_use_moves_parts_back(env):
    model, _, _ = call(env, "AudioXModelLoader", ckpt_name="turbo.safetensors", dtype="fp32", keep_on_gpu=False)
    _, ctx, _ = text_ctx(env, model)
    before = len(env.current_loaded_models)
    call(env, "AudioXTurboSampler", model=model, context=ctx, seed=5, steps=1, batch_size=1, duration=0.0)
    assert not any(e.model is model.parts["backbone"] for e in env.current_loaded_models)
    assert len(env.current_loaded_models) <= before


def test_encoders_leave_the_device_after_encoding_by_default(env):
    """The T5 (loader default: offload after use) and the model's own encoders (always) are unloaded
    right after encoding; the backbone of a keep-on-GPU model stays with the memory manager."""
    model, _, _ = load(env, "turbo.safetensors")
    (t5_default,) = call(env, "AudioXT5Loader", t5_name="t5", dtype="fp32")
    assert t5_default.offload_after is True and model.offload_after is None
    _, ctx, _ = text_ctx(env, model, t5_=t5_default)
    resident = [e.model for e in env.current_loaded_models]
    assert not any(h is t5_default.handle for h in resident)
    assert not any(h is model.parts["conditioner"] for h in resident)
    assert any(call_["models"] and call_["models"][0] is t5_default.handle for call_ in env.load_calls)
    call(env, "AudioXTurboSampler", model=model, context=ctx, seed=5, steps=1, batch_size=1, duration=0.0)
    assert any(e.model is model.parts["backbone"] for e in env.current_loaded_models)
    (t5_kept,) = call(env, "AudioXT5Loader", t5_name="t5", dtype="fp32", keep_on_gpu=True)
    text_ctx(env, model, t5_=t5_kept)
    assert any(e.model is t5_kept.handle for e in env.current_loaded_models)


def test_mask_outside_the_clip_and_mask_without_latent(env):
    model, vae, _ = load(env, "turbo.safetensors")
    _, ctx, _ = text_ctx(env, model)
    audio = {"waveform": comfy_fakes.tone_signal(0.5, 8000).unsqueeze(0), "sample_rate": 8000}
    (lat,) = call(env, "AudioXVAEEncode", vae=vae, audio=audio, sample_posterior=False, posterior_seed=0,
                  chunked="auto")
    (mask,) = call(env, "AudioXInpaintMask", ranges="3-4", ramp_seconds=0.0)
    msg = errors(call, env, "AudioXTurboSampler", model=model, context=ctx, seed=0, steps=2, batch_size=1,
                 duration=0.0, latent=lat, mask=mask)
    assert msg.startswith("AudioX Turbo Sampler: input 'mask'") and "outside the clip" in msg
    msg = errors(call, env, "AudioXTurboSampler", model=model, context=ctx, seed=0, steps=2, batch_size=1,
                 duration=0.0, mask=mask)
    assert msg.startswith("AudioX Turbo Sampler: input 'latent' is not connected")
    (keep_all,) = call(env, "AudioXCompletionMask", keep_seconds=5.0)
    msg = errors(call, env, "AudioXTurboSampler", model=model, context=ctx, seed=0, steps=2, batch_size=1,
                 duration=0.0, latent=lat, mask=keep_all)
    assert "input 'mask'" in msg and "nothing is left to generate" in msg


@pytest.mark.parametrize("text,ok", [("1-2", True), ("0.5 - 1.25, 3:4", True), ("2-1", False), ("abc", False),
                                     ("", False), ("1-2;\n2.5-3", True)])
def test_inpaint_mask_validate_inputs(env, text, ok):
    cls = env.classes["AudioXInpaintMask"]
    r = cls.VALIDATE_INPUTS(ranges=text)
    assert (r is True) == ok
    if not ok:
        assert r.startswith("AudioX Inpaint Mask: input 'ranges'")


def test_masks_check_their_optional_audio_length_and_ignore_it_otherwise(env):
    audio = {"waveform": torch.zeros(1, 2, 8000), "sample_rate": 8000}  # 1.0 s
    (with_audio,) = call(env, "AudioXInpaintMask", ranges="0.2-0.5", ramp_seconds=0.0, audio=audio)
    (without,) = call(env, "AudioXInpaintMask", ranges="0.2-0.5", ramp_seconds=0.0)
    assert with_audio.ranges == without.ranges == [(0.2, 0.5)]
    msg = errors(call, env, "AudioXInpaintMask", ranges="0.2-0.5, 1.5-2", ramp_seconds=0.0, audio=audio)
    assert msg.startswith("AudioX Inpaint Mask: input 'ranges'") and "1.5-2" in msg and "1.00 s" in msg
    (keep,) = call(env, "AudioXCompletionMask", keep_seconds=0.5, audio=audio)
    assert keep.keep_seconds == 0.5
    msg = errors(call, env, "AudioXCompletionMask", keep_seconds=1.5, audio=audio)
    assert msg.startswith("AudioX Completion Mask: input 'keep_seconds'") and "1.00 s" in msg
    msg = errors(call, env, "AudioXCompletionMask", keep_seconds=0.5, audio={"waveform": 3})
    assert msg.startswith("AudioX Completion Mask: input 'audio'")


def test_parse_ranges_merges_and_sorts(env):
    parse = env.pack.nodes.masks.parse_ranges
    assert parse("3-4, 1-2, 1.5-2.5") == [(1.0, 2.5), (3.0, 4.0)]


def test_inpainting_keeps_the_audio_outside_the_range_exactly(env):
    model, vae, _ = load(env, "turbo.safetensors")
    enc = t5(env)
    sr = 8000
    t = torch.arange(2048) / sr
    wave = torch.stack([0.5 * torch.sin(2 * math.pi * 300 * t), 0.3 * torch.sin(2 * math.pi * 500 * t)])
    audio = {"waveform": wave.unsqueeze(0), "sample_rate": sr}
    (mask,) = call(env, "AudioXInpaintMask", ranges="0.08-0.16", ramp_seconds=0.0)
    (lat,) = call(env, "AudioXVAEEncode", vae=vae, audio=audio, sample_posterior=True, posterior_seed=0, chunked="auto")
    (ap,) = call(env, "AudioXAudioPromptEncoder", model=model, audio=audio, masking="off", mask_seed=0, mask=mask)
    # the prompt is the audio with the range blanked (compare with encoding a hand-blanked copy)
    blank = wave.clone()
    blank[:, 640:1280] = 0
    from audiox_core import conditions as C
    ref = C.encode_audio_prompt(model.model, blank, sample_rate=sr, mask=False,
                                generator=torch.Generator().manual_seed(0))
    assert torch.allclose(ap.tokens, ref.tokens, atol=1e-6)
    (tc,) = call(env, "AudioXTextEncoder", model=model, t5=enc, prompt="a bell")
    ctx, _ = call(env, "AudioXMAFFusion", model=model, text=tc, audio=ap)
    out, report = call(env, "AudioXTurboSampler", model=model, context=ctx, seed=3, steps=2, batch_size=1,
                       duration=0.0, latent=lat, mask=mask)
    assert "regenerate 0.08–0.16 s" in report
    keep = out["audiox"]["keep"]
    assert float(keep[:10].min()) == 1.0 and float(keep[10:20].max()) == 0.0 and float(keep[21:].min()) == 1.0
    (res,) = call(env, "AudioXVAEDecode", vae=vae, samples=out, normalize=True, chunked="auto",
                  original_audio=audio)
    w = res["waveform"][0]
    assert w.shape == wave.shape
    assert torch.allclose(w[:, :600], wave[:, :600], atol=1e-6)  # kept exactly, away from the seam
    assert torch.allclose(w[:, 1400:], wave[:, 1400:], atol=1e-6)
    assert not torch.allclose(w[:, 700:1200], wave[:, 700:1200], atol=1e-3)
    msg = errors(call, env, "AudioXVAEDecode", vae=vae, samples=lat, normalize=True, chunked="auto",
                 original_audio=audio)
    assert msg.startswith("AudioX VAE Decode: input 'original_audio'")
    # the workbench preview (web/audiox.js): the decoded clip as a temp WAV and the regenerated part
    ui = ui_of(env, "AudioXVAEDecode", vae=vae, samples=out, normalize=True, chunked="auto",
               original_audio=audio)["audiox_preview"][0]
    assert ui["mask"] == "inpaint" and ui["sample_rate"] == sr and ui["seconds"] == pytest.approx(2048 / sr)
    assert ui["regenerated"] == [[0.08, 0.16]]  # latent frames 10..19 of 64 samples at 8 kHz
    (ref,) = ui["audio"]
    assert ref["type"] == "temp" and ref["subfolder"] == "audiox"
    from audiox_core import media
    back, back_sr = media.load_audio(str(env.temp_dir / ref["subfolder"] / ref["filename"]))
    assert back_sr == sr and torch.allclose(back, w.clamp(-1, 1), atol=1 / 32000)
    mask_ui = ui_of(env, "AudioXInpaintMask", ranges="0.08-0.16", ramp_seconds=0.0, audio=audio)["audiox_audio"][0]
    assert mask_ui["seconds"] == pytest.approx(2048 / sr) and len(mask_ui["audio"]) == 1
    assert ui_of(env, "AudioXInpaintMask", ranges="0.08-0.16", ramp_seconds=0.0) == {}


def test_long_form_joins_windows_with_text_and_video(env):
    model, vae, _ = load(env, "turbo.safetensors")
    _, ctx, _ = text_ctx(env, model)
    out, report = call(env, "AudioXTurboSampler", model=model, context=ctx, seed=1, steps=1, batch_size=1,
                       duration=0.6)
    assert "long-form" in report and out["samples"].shape[-1] == math.ceil(0.6 * 8000 / 64)
    (audio,) = call(env, "AudioXVAEDecode", vae=vae, samples=out, normalize=True, chunked="auto")
    assert audio["waveform"].shape[-1] == round(0.6 * 8000)
    # long-form video-to-audio: every window encodes its own part of the video (as audiox_core.generate)
    frames = comfy_fakes.gradient_frames(20)
    (vcond,) = call(env, "AudioXVideoEncoder", model=model, images=frames, fps=25.0, sync="zeros")
    enc = t5(env)
    (tc,) = call(env, "AudioXTextEncoder", model=model, t5=enc, prompt="x")
    vctx, _ = call(env, "AudioXMAFFusion", model=model, text=tc, video=vcond)
    vout, vreport = call(env, "AudioXTurboSampler", model=model, context=vctx, seed=1, steps=1, batch_size=1,
                         duration=0.6)
    assert "long-form" in vreport and vout["samples"].shape[-1] == out["samples"].shape[-1]
    from audiox_core import conditions as C
    from audiox_core import generate as G
    from audiox_core.task import GenerationRequest, generate
    settings = G.SamplerSettings.for_model(model.model, "turbo", steps=1, seed=1)
    direct = generate(model.model, GenerationRequest(prompt=tc, video=C.VisualInput(frames=frames, fps=25.0),
                                                     duration=0.6, settings=settings, sync_features=False))
    assert torch.equal(vout["samples"], direct.latents)
    assert not torch.equal(vout["samples"], out["samples"])  # the video changes the result
    # refused: precomputed sync features (one window), another resize mode, an audio prompt
    (vcrop,) = call(env, "AudioXVideoEncoder", model=model, images=frames, fps=25.0, sync="zeros",
                    resize="center_crop")
    cctx, _ = call(env, "AudioXMAFFusion", model=model, text=tc, video=vcrop)
    msg = errors(call, env, "AudioXTurboSampler", model=model, context=cctx, seed=1, steps=1, batch_size=1,
                 duration=0.6)
    assert msg.startswith("AudioX Turbo Sampler: input 'context'") and "stretch" in msg
    vcond.extra.pop("long_form")
    msg = errors(call, env, "AudioXTurboSampler", model=model, context=vctx, seed=1, steps=1, batch_size=1,
                 duration=0.6)
    assert msg.startswith("AudioX Turbo Sampler: input 'context'") and "precomputed sync" in msg


# ------------------------------------------------------------------ VAE and outputs
def test_vae_encode_any_rate_and_decode(env):
    model, vae, _ = load(env, "maf.safetensors")
    mono44 = {"waveform": comfy_fakes.tone_signal(0.5, 44100, 1).unsqueeze(0), "sample_rate": 44100}
    (lat,) = call(env, "AudioXVAEEncode", vae=vae, audio=mono44, sample_posterior=False, posterior_seed=0,
                  chunked="auto")
    assert lat["samples"].shape == (1, 8, 4000 // 64)
    (a,) = call(env, "AudioXVAEDecode", vae=vae, samples=lat, normalize=True, chunked="auto")
    assert a["sample_rate"] == 8000 and a["waveform"].shape == (1, 2, 62 * 64)
    assert abs(float(a["waveform"].abs().max()) - 1.0) < 1e-6  # peak-normalised
    (b,) = call(env, "AudioXVAEDecode", vae=vae, samples=lat, normalize=False, chunked="on")
    (c,) = call(env, "AudioXVAEDecode", vae=vae, samples=lat, normalize=False, chunked="off")
    assert torch.allclose(b["waveform"], c["waveform"], atol=1e-5)
    bad = {"samples": torch.zeros(1, 5, 10), "type": "audio"}
    msg = errors(call, env, "AudioXVAEDecode", vae=vae, samples=bad, normalize=True, chunked="auto")
    assert msg.startswith("AudioX VAE Decode: input 'samples'")
    msg = errors(call, env, "AudioXVAEEncode", vae=vae, audio={"waveform": torch.zeros(1, 2, 0), "sample_rate": 8000},
                 sample_posterior=True, posterior_seed=0, chunked="auto")
    assert msg == "AudioX VAE Encode: input 'audio' is empty (0 samples)"


def test_video_with_audio_from_file_and_from_frames(env):
    path = comfy_fakes.write_test_video(env.input_dir / "v.mp4", seconds=2.0, fps=25)
    (video,) = call(env, "LoadVideo", file="v.mp4")
    sr = 8000
    gen = {"waveform": 0.1 * torch.randn(2, 2, 8000, generator=torch.Generator().manual_seed(0)), "sample_rate": sr}
    (out,) = call(env, "AudioXVideoWithAudio", audio=gen, video=video, start_seconds=0.4, batch_index=1, fps=25.0)
    comps = out.get_components()
    assert comps.audio is not None and abs(comps.audio["waveform"].shape[-1] / comps.audio["sample_rate"] - 1.0) < 0.05
    assert abs(comps.images.shape[0] / float(comps.frame_rate) - 1.0) < 0.05
    images, rate = comfy_fakes.decode_frames(str(path))
    (out2,) = call(env, "AudioXVideoWithAudio", audio=gen, images=images, fps=float(rate), start_seconds=0.4,
                   batch_index=1)
    c2 = out2.get_components()
    assert c2.images.shape[0] == 25 and torch.equal(c2.images[0], images[10])
    assert torch.equal(c2.audio["waveform"][0], gen["waveform"][1])
    msg = errors(call, env, "AudioXVideoWithAudio", audio=gen, images=images, fps=25.0, start_seconds=5.0)
    assert msg.startswith("AudioX Video With Audio: input 'start_seconds'")
    msg = errors(call, env, "AudioXVideoWithAudio", audio=gen, images=images, fps=25.0, batch_index=2)
    assert msg.startswith("AudioX Video With Audio: input 'batch_index'")


def test_spectrogram_node_and_png(env, tmp_path):
    sr = 8000
    t = torch.arange(sr) / sr
    tone = torch.sin(2 * math.pi * 1000 * t)  # one steady tone: one bright row
    (img,) = call(env, "AudioXSpectrogram", audio={"waveform": tone.reshape(1, 1, -1), "sample_rate": sr},
                  width=128, height=64, db_range=60.0)
    assert img.shape == (1, 64, 128, 3) and 0 <= float(img.min()) and float(img.max()) <= 1
    bright = img[0].sum(-1).mean(1)
    row = int(bright.argmax())
    # mel position of 1 kHz with Nyquist at the top row (independent of the implementation)
    mel = lambda f: 2595 * math.log10(1 + f / 700)  # noqa: E731
    expect = (1 - mel(1000) / mel(sr / 2)) * 63
    assert abs(row - expect) <= 2
    from PIL import Image

    from audiox_core.media.spectrogram import write_png
    p = write_png(tmp_path / "s.png", img[0].numpy())
    back = np.asarray(Image.open(p))
    assert back.shape == (64, 128, 3) and np.array_equal(back, np.round(img[0].numpy() * 255).astype(np.uint8))


def test_audio_input_errors(env):
    model, _, _ = load(env, "turbo.safetensors")
    msg = errors(call, env, "AudioXAudioPromptEncoder", model=model, audio="x.wav")
    assert msg.startswith("AudioX Audio Prompt Encoder: input 'audio' needs an AUDIO")
    nan = {"waveform": torch.full((1, 2, 100), float("nan")), "sample_rate": 8000}
    msg = errors(call, env, "AudioXAudioPromptEncoder", model=model, audio=nan)
    assert msg == "AudioX Audio Prompt Encoder: input 'audio' contains NaN or infinite samples"


def test_headless_example_media(tmp_path):
    from runner import headless as mod
    paths = mod.make_inputs(tmp_path)
    assert sorted(p.name for p in paths) == sorted([*mod.EXAMPLE_FILES, mod.EXAMPLE_DATASET])
    ds = tmp_path / mod.EXAMPLE_DATASET
    for clip, (_seed, _count, with_video) in mod.EXAMPLE_DATASET_CLIPS.items():
        assert (ds / f"{clip}.wav").is_file() and (ds / f"{clip}.txt").read_text().strip()
        assert (ds / f"{clip}.mp4").is_file() == with_video
    from audiox_core import media
    info = media.probe_video(tmp_path / "audiox_example_events.mp4")
    assert info.has_audio and abs(info.duration_s - 4.0) < 0.1 and info.width == 128
    wav, sr = media.load_audio(tmp_path / "audiox_example_music.wav")
    assert sr == 16000 and wav.shape[-1] == 64000
    assert mod.example_caption("audiox_example_events") == "two high bells, then a noise burst"


def test_headless_cli_runs_an_example_graph(tmp_path):
    """``python -m runner`` from the repository root, on tiny weights named like the demo files."""
    import subprocess
    import sys
    models = tmp_path / "models"
    H.install_models(models, {"audiox/audiox_demo_turbo.safetensors": "tiny_turbo",
                              "text_encoders/demo_t5": "tiny_t5"})
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "runner", "workflows/text_to_audio.json", "--out", str(out),
                        "--models", str(models), "--set", "6.seed=3"],
                       cwd=H.ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    wavs = sorted((out / "text_to_audio").rglob("*.wav"))
    pngs = sorted((out / "text_to_audio").rglob("*.png"))
    assert len(wavs) == 1 and len(pngs) == 1, r.stdout
    from audiox_core import media
    wav, sr = media.load_audio(wavs[0])
    assert sr == 8000 and wav.shape == (2, 2048) and abs(float(wav.abs().max()) - 1.0) < 1e-3
    assert "MAF gates" in r.stdout and "turbo sampler: 4 steps" in r.stdout and "seed 3" in r.stdout
    bad = subprocess.run([sys.executable, "-m", "runner", "workflows/text_to_audio.json", "--out", str(out),
                          "--models", str(models), "--set", "2.ckpt_name=nope.safetensors"], cwd=H.ROOT,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and "FAILED" in bad.stderr and "'nope.safetensors' was not found in models/audiox" in bad.stderr


def test_completion_generates_the_whole_window_after_a_short_input(env):
    """Completion of a clip shorter than the window: the kept part is the clip, the output is the
    whole window (the continuation), and the start equals the input."""
    model, vae, _ = load(env, "turbo.safetensors")
    _, ctx, _ = text_ctx(env, model)
    sr = 8000
    short = {"waveform": comfy_fakes.tone_signal(0.1, sr).unsqueeze(0), "sample_rate": sr}  # 800 of 2048 samples
    (lat,) = call(env, "AudioXVAEEncode", vae=vae, audio=short, sample_posterior=False, posterior_seed=0,
                  chunked="auto")
    (mask,) = call(env, "AudioXCompletionMask", keep_seconds=0.05)
    out, report = call(env, "AudioXTurboSampler", model=model, context=ctx, seed=0, steps=2, batch_size=1,
                       duration=0.0, latent=lat, mask=mask)
    assert "keep the first 0.05 s" in report
    (audio,) = call(env, "AudioXVAEDecode", vae=vae, samples=out, normalize=False, chunked="auto",
                    original_audio=short)
    w = audio["waveform"][0]
    assert w.shape[-1] == 2048
    kf = round(0.05 * sr / 64)  # kept latent frames
    assert torch.allclose(w[:, : kf * 64 - 64], short["waveform"][0][:, : kf * 64 - 64], atol=1e-6)
