"""Sampler nodes: the official sampler names, sigma range and official noise mode (stubbed ComfyUI,
tiny weights).  The reference replays the official RNG sequence on the global torch generator."""
from __future__ import annotations

import pytest
import torch

import workflow_models  # noqa: F401  (registers the tiny-weight factories)
import comfy_harness as H
from comfy_harness import comfy_env  # noqa: F401  (fixture)
from comfy_harness import call_node as call

from audiox_core import conditions as C
from audiox_core.errors import AudioXError
from audiox_core.sampling import ClassifierFreeGuidance, VDenoiser, polyexponential_sigmas, sample_dpmpp_2s_ancestral

TINY = {"audiox/v1.safetensors": "tiny_audiox", "audiox/turbo.safetensors": "tiny_turbo",
        "audiox/maf.safetensors": "tiny_maf", "audiox/mmdit.safetensors": "tiny_maf_mmdit", "text_encoders/t5": "tiny_t5"}


@pytest.fixture
def env(comfy_env):  # noqa: F811
    H.install_models(comfy_env.models_dir, TINY)
    return comfy_env


def _model_ctx(env, ckpt):
    model, _, _ = call(env, "AudioXModelLoader", ckpt_name=ckpt, dtype="fp32", keep_on_gpu=True)
    t5 = call(env, "AudioXT5Loader", t5_name="t5", dtype="fp32", keep_on_gpu=True)[0]
    (cond,) = call(env, "AudioXTextEncoder", model=model, t5=t5, prompt="two beeps")
    ctx, _ = call(env, "AudioXMAFFusion", model=model, text=cond, cond_seed=123)
    return model, ctx


def test_base_sampler_offers_the_official_samplers(env):
    names = env.pack.NODE_CLASS_MAPPINGS["AudioXSampler"].INPUT_TYPES()["required"]["sampler_name"][0]
    for n in ("dpmpp-3m-sde", "dpmpp-2m-sde", "k-heun", "k-lms", "k-dpmpp-2s-ancestral", "k-dpm-2", "k-dpm-fast",
              "k-dpm-adaptive"):
        assert n in names


def _official_start(m, ctx, seed, batch, scale):
    """The official order on the global RNG: noise, then the conditioner (absent audio prompt)."""
    torch.manual_seed(seed)
    noise = torch.randn([batch, m.config.io_channels, m.latent_length])
    tokens = C.fuse(m, C.Conditions(text=ctx.conds.text), batch=batch, modality_scale=scale, generator=None)
    return noise, tokens


@pytest.mark.parametrize("ckpt", ["v1.safetensors", "maf.safetensors", "mmdit.safetensors"])
def test_base_sampler_node_official_noise_equals_the_official_sequence(env, ckpt):
    model, ctx = _model_ctx(env, ckpt)
    kw = dict(model=model, context=ctx, seed=9, steps=3, cfg=3.0, sampler_name="k-dpmpp-2s-ancestral",
              batch_size=2, duration=0.0, sigma_min=0.3, sigma_max=80.0)
    lat, report = call(env, "AudioXSampler", noise="official", **kw)
    assert "official noise" in report
    m = model.model
    bb = m.backbone
    noise, tokens = _official_start(m, ctx, 9, 2, ctx.modality_scale)
    vel = ClassifierFreeGuidance(lambda x, t, c: bb(x, t, cond_cache=c), tokens, torch.zeros_like(tokens),
                                 scale=3.0, prepare=bb.prepare)
    sig = polyexponential_sigmas(3, 0.3, 80.0)
    x = noise * sig[0]
    want = sample_dpmpp_2s_ancestral(VDenoiser(vel), x, sig, noise_sampler=lambda a, b: torch.randn_like(x))
    assert torch.equal(lat["samples"], want)
    default, _ = call(env, "AudioXSampler", noise="cpu", **kw)
    assert not torch.equal(default["samples"], lat["samples"])
    # sigma_max reaches the schedule
    other, _ = call(env, "AudioXSampler", noise="official", **{**kw, "sigma_max": 40.0})
    assert not torch.equal(other["samples"], lat["samples"])


def test_turbo_node_official_noise_equals_the_official_sequence(env):
    model, ctx = _model_ctx(env, "turbo.safetensors")
    lat, _ = call(env, "AudioXTurboSampler", model=model, context=ctx, seed=4, steps=4, batch_size=1, duration=0.0,
                  noise="official")
    m = model.model
    bb = m.backbone
    x, tokens = _official_start(m, ctx, 4, 1, ctx.modality_scale)
    vel = ClassifierFreeGuidance(lambda x, t, c: bb(x, t, cond_cache=c), tokens, None, scale=1.0, prepare=bb.prepare)
    ts = torch.linspace(1.0, 0.0, 5)
    for i in range(4):  # sample_dmd: x0 = z - t v, then re-noise with randn_like
        x0 = x - ts[i] * vel(x, ts[i] * torch.ones(1))
        x = x0 if i == 3 else ts[i + 1] * torch.randn_like(x0) + (1 - ts[i + 1]) * x0
    assert torch.equal(lat["samples"], x)


def test_official_noise_refusals_name_the_noise_input(env):
    model, ctx = _model_ctx(env, "turbo.safetensors")
    with pytest.raises(AudioXError) as ei:
        call(env, "AudioXTurboSampler", model=model, context=ctx, seed=4, steps=4, batch_size=1, duration=30.0,
             noise="official")
    assert str(ei.value).startswith("AudioX Turbo Sampler: input 'noise'") and "longer than the window" in str(ei.value)


# ------------------------------------------------------------------ released files: graphs and missing-file errors
@pytest.mark.parametrize("node,arg,name,where", [
    ("AudioXModelLoader", "ckpt_name", "AudioX/model.ckpt", "ComfyUI/models/audiox/AudioX/model.ckpt"),
    ("AudioXModelLoader", "ckpt_name", "AudioX-MAF/model.ckpt", "ComfyUI/models/audiox/AudioX-MAF/model.ckpt"),
    ("AudioXModelLoader", "ckpt_name", "AudioX-MAF-MMDiT/model.ckpt",
     "ComfyUI/models/audiox/AudioX-MAF-MMDiT/model.ckpt"),
    ("AudioXModelLoader", "ckpt_name", "AudioX-Turbo/audiox_turbo.ckpt",
     "ComfyUI/models/audiox/AudioX-Turbo/audiox_turbo.ckpt"),
    ("AudioXVAELoader", "vae_name", "vae.ckpt", "ComfyUI/models/audiox/vae.ckpt"),
    ("AudioXSynchformerLoader", "synchformer_name", "synchformer_state_dict.pth",
     "ComfyUI/models/audiox/synchformer_state_dict.pth"),
    ("AudioXT5Loader", "t5_name", "t5-base", "ComfyUI/models/text_encoders/t5-base/"),
])
def test_absent_released_file_says_what_it_is_and_where_it_goes(env, node, arg, name, where):
    cls = env.pack.NODE_CLASS_MAPPINGS[node]
    msg = cls.VALIDATE_INPUTS(**{arg: name})  # ComfyUI shows this before anything runs
    assert isinstance(msg, str) and f"'{name}' was not found" in msg and where in msg
    if name.endswith("model.ckpt"):
        assert "with its config.json beside it" in msg
    with pytest.raises(AudioXError) as ei:  # and the node itself, should it run anyway
        call(env, node, **{arg: name})
    assert str(ei.value).startswith(f"{cls.DISPLAY_NAME}: input '{arg}'") and where in str(ei.value)


def test_present_and_unknown_files(env):
    cls = env.pack.NODE_CLASS_MAPPINGS["AudioXModelLoader"]
    assert cls.VALIDATE_INPUTS(ckpt_name="v1.safetensors") is True
    msg = cls.VALIDATE_INPUTS(ckpt_name="mine.safetensors")
    assert "'mine.safetensors' was not found in models/audiox" in msg and "put it at" not in msg


def test_official_graphs_name_the_released_files():
    import json
    from audiox_core.official_files import OFFICIAL_FILES
    names = {(f.folder, f.name) for f in OFFICIAL_FILES}
    loaders = {"AudioXModelLoader": "audiox", "AudioXVAELoader": "audiox", "AudioXSynchformerLoader": "audiox",
               "AudioXT5Loader": "text_encoders"}
    for graph, ckpt in (("text_to_audio_official_audiox", "AudioX/model.ckpt"),
                        ("video_to_audio_official_maf", "AudioX-MAF/model.ckpt"),
                        ("video_to_music_official_maf_mmdit", "AudioX-MAF-MMDiT/model.ckpt"),
                        ("video_to_audio_official_turbo", "AudioX-Turbo/audiox_turbo.ckpt")):
        wf = json.loads((H.ROOT / "workflows" / f"{graph}.json").read_text())
        files = [(loaders[n["type"]], n["widgets_values"][0]) for n in wf["nodes"] if n["type"] in loaders]
        assert ("audiox", ckpt) in files
        assert all(f in names for f in files), files
