"""Command line: ``python -m audiox_core generate ...`` (and ``keys``/``convert``/``inspect``).

Examples::

    python -m audiox_core generate --model models/demo/audiox_demo_turbo.safetensors \\
        --prompt "two high beeps, then a low bell" --out beeps.wav
    python -m audiox_core generate --model AudioX-MAF/model.ckpt --t5 t5-base/ \\
        --synchformer synchformer_state_dict.pth --video clip.mp4 --out clip.wav --mp4 clip_audio.mp4
    python -m audiox_core generate --model M --init-audio song.wav --keep 5 --duration 30 --out more.wav
    python -m audiox_core generate --model M --init-audio take.wav --inpaint 2.0-3.5 --out fixed.wav
"""
from __future__ import annotations

import argparse
import sys
import time


def _ranges(s: str):
    out = []
    for part in s.split(","):
        a, _, b = part.strip().partition("-")
        out.append((float(a), float(b)))
    return out


def _add_generate(sub):
    g = sub.add_parser("generate", help="generate audio for any task (see --help)")
    m = g.add_argument_group("model")
    m.add_argument("--model", required=True, help="AudioX checkpoint (.safetensors/.ckpt)")
    m.add_argument("--config", help="config.json (default: beside the checkpoint, or inferred)")
    m.add_argument("--vae", help="separate VAE file (VAE.ckpt / vae.ckpt)")
    m.add_argument("--t5", help="T5 folder or file (default: a t5/ or *_t5/ folder beside the model)")
    m.add_argument("--synchformer", help="synchformer_state_dict.pth (MAF models with video)")
    m.add_argument("--clip-vision", help="CLIP ViT-B/32 vision file, for checkpoints without the tower")
    m.add_argument("--part", help="student/teacher/fake, for DMD training checkpoints")
    m.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    m.add_argument("--device", default="cpu")
    i = g.add_argument_group("inputs")
    i.add_argument("--prompt", default="")
    i.add_argument("--negative", default=None, help="negative prompt (CFG uncond)")
    i.add_argument("--video", help="video file (V2A/V2M/TV2A/TV2M)")
    i.add_argument("--image", help="still image (image-to-audio)")
    i.add_argument("--music", action="store_true", help="use the music task sentence when no prompt is given")
    i.add_argument("--start", type=float, default=0.0, help="video start, seconds")
    i.add_argument("--sync-zeros", action="store_true",
                   help="MAF/Turbo models: zero sync features instead of running the Synchformer "
                        "(as the official gradio app; the demo model is trained that way)")
    i.add_argument("--audio-prompt", help="audio conditioning file")
    i.add_argument("--no-prompt-mask", action="store_true", help="disable the official random prompt masking")
    i.add_argument("--init-audio", help="audio to inpaint / complete / vary")
    i.add_argument("--inpaint", type=_ranges, help="seconds to regenerate, e.g. 2-3.5,6-7")
    i.add_argument("--keep", type=float, help="completion: keep this many seconds of --init-audio")
    i.add_argument("--strength", type=float, default=1.0, help="variation strength (<1 keeps more)")
    i.add_argument("--duration", type=float, help="seconds (longer than the model window = long-form)")
    s = g.add_argument_group("sampler")
    s.add_argument("--mode", choices=["base", "turbo"], help="default: turbo for Turbo students")
    s.add_argument("--steps", type=int)
    s.add_argument("--sampler", default="auto",
                   help="auto (the model's official default), v-objective: dpmpp-3m-sde, dpmpp-2m-sde, k-heun, "
                        "k-lms, k-dpmpp-2s-ancestral, k-dpm-2, k-dpm-fast, k-dpm-adaptive (official names), "
                        "dpmpp-2m, euler; rectified flow: euler, heun")
    s.add_argument("--cfg", type=float)
    s.add_argument("--rescale", type=float, default=0.0)
    s.add_argument("--sigma-min", type=float, default=0.3)
    s.add_argument("--sigma-max", type=float, default=500.0)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--noise", choices=["cpu", "official"], default="cpu",
                   help="cpu: the same seed gives the same audio on any device (default); official: the official "
                        "app's generators and draw order, so seed, inputs and sampler reproduce its output")
    s.add_argument("--batch", type=int, default=1)
    o = g.add_argument_group("output")
    o.add_argument("--out", required=True, help="WAV path (batch > 1 adds _0, _1 …)")
    o.add_argument("--mp4", help="with --video: write the video with the new audio here")
    o.add_argument("--no-normalize", action="store_true", help="skip the official peak normalisation")
    return g


def _cmd_generate(a) -> int:
    from . import media
    from .api import load
    from .generate import SamplerSettings, generate

    t0 = time.time()
    model = load(a.model, config=a.config, vae=a.vae, t5=a.t5, synchformer=a.synchformer,
                 clip_vision=a.clip_vision, dtype=a.dtype, device=a.device, part=a.part)
    kw = {k: v for k, v in dict(steps=a.steps, cfg_scale=a.cfg).items() if v is not None}
    settings = SamplerSettings.for_model(model, a.mode, seed=a.seed, sampler=a.sampler, cfg_rescale=a.rescale,
                                         sigma_min=a.sigma_min, sigma_max=a.sigma_max, noise=a.noise, **kw)
    print(f"loaded {model.info.get('variant')} ({model.info.get('role') or 'base'}) in {time.time() - t0:.1f} s; "
          f"{settings.mode} sampler, {settings.steps} steps", file=sys.stderr)
    last = [0]

    def progress(step, total, info):
        pct = int(100 * step / max(total, 1))
        if pct >= last[0] + 10:
            last[0] = pct
            print(f"  {pct}% {info.get('stage', '')}", file=sys.stderr)

    t1 = time.time()
    res = generate(model, prompt=a.prompt, negative_prompt=a.negative, video=a.video, image=a.image, start=a.start,
                   audio_prompt=a.audio_prompt, audio_prompt_mask=False if a.no_prompt_mask else None,
                   init_audio=a.init_audio, strength=a.strength, inpaint=a.inpaint, keep_seconds=a.keep,
                   music=a.music, duration=a.duration, settings=settings, batch=a.batch,
                   sync_features=not a.sync_zeros, callback=progress)
    for line in res.report:
        print(f"  {line}", file=sys.stderr)
    outs = []
    for b in range(res.audio.shape[0]):
        x = res.audio[b]
        x = x if a.no_normalize else media.peak_normalize(x)
        path = a.out if res.audio.shape[0] == 1 else a.out.replace(".wav", f"_{b}.wav")
        media.save_wav(path, x, res.sample_rate)
        outs.append(path)
    print(f"wrote {', '.join(outs)} ({res.audio.shape[-1] / res.sample_rate:.2f} s) in {time.time() - t1:.1f} s")
    if a.mp4:
        if not a.video:
            print("error: --mp4 needs --video", file=sys.stderr)
            return 2
        x = media.peak_normalize(res.audio[0])
        rep = media.mux_audio_into_video(a.video, x, res.sample_rate, a.mp4, start=a.start,
                                         duration=res.audio.shape[-1] / res.sample_rate)
        print(f"wrote {a.mp4}: {rep}")
    return 0


def main(argv=None) -> int:
    from .errors import AudioXError

    ap = argparse.ArgumentParser(prog="python -m audiox_core", description="AudioX: sound and music from "
                                 "text, video, images and audio.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    _add_generate(sub)
    for name in ("keys", "convert", "inspect"):
        sub.add_parser(name, help=f"checkpoint tool: see python -m audiox_core.checkpoint {name} --help",
                       add_help=False)
    args, rest = ap.parse_known_args(argv)
    if args.cmd in ("keys", "convert", "inspect"):
        from .checkpoint import main as ckpt_main
        return ckpt_main([args.cmd, *rest])
    if rest:
        ap.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        return _cmd_generate(args)
    except AudioXError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
