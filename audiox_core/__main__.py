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
import math
import sys
import time


def _ranges(text: str):
    """``--inpaint``: the core's time-range parser (argparse shows the message of a bad one)."""
    from .errors import InputError
    from .task import parse_ranges
    try:
        return parse_ranges(text)
    except InputError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _check_args(a) -> None:
    """Every argument, path and range of ``generate``, checked before the model is loaded."""
    import os
    from pathlib import Path

    from . import media
    from .errors import InputError
    from .generate import MAX_SECONDS
    from .task import check_ranges
    from .media.write import _CONTAINERS as VIDEO_CONTAINERS
    if a.mp4 and not a.video:
        raise InputError("--mp4 needs --video: it writes that video with the new audio")
    for flag, value, kind in (("--model", a.model, "file"), ("--config", a.config, "file"), ("--vae", a.vae, "file"),
                              ("--t5", a.t5, "any"), ("--synchformer", a.synchformer, "file"),
                              ("--clip-vision", a.clip_vision, "any"), ("--video", a.video, "file"),
                              ("--image", a.image, "file"), ("--audio-prompt", a.audio_prompt, "file"),
                              ("--init-audio", a.init_audio, "file")):
        if value is None:
            continue
        p = Path(value)
        if not p.exists():
            raise InputError(f"{flag} {value}: not found")
        if kind == "file" and not p.is_file():
            raise InputError(f"{flag} {value}: is a folder, expected a file")
    if a.video and a.image:
        raise InputError("give --video or --image, not both")
    for flag, value in (("--out", a.out), ("--mp4", a.mp4)):
        if value is None:
            continue
        p = Path(value)
        want = (".wav",) if flag == "--out" else tuple(sorted(VIDEO_CONTAINERS))
        if p.suffix.lower() not in want:
            raise InputError(f"{flag} {value}: must end in {' / '.join(want)}")
        folder = p.parent if str(p.parent) else Path(".")
        if not folder.is_dir():
            raise InputError(f"{flag} {value}: the folder {folder} does not exist — create it first")
        if not os.access(folder, os.W_OK):
            raise InputError(f"{flag} {value}: the folder {folder} is not writable")
        if p.is_dir():
            raise InputError(f"{flag} {value}: is a folder, expected a file name")
    numbers = (("--start", a.start, 0.0, None), ("--strength", a.strength, 0.0, 1.0),
               ("--duration", a.duration, 0.0, MAX_SECONDS), ("--keep", a.keep, 0.0, None),
               ("--cfg", a.cfg, 0.0, 50.0), ("--rescale", a.rescale, 0.0, 1.0),
               ("--sigma-min", a.sigma_min, 0.0, None), ("--sigma-max", a.sigma_max, 0.0, None))
    for flag, v, lo, hi in numbers:
        if v is None:
            continue
        if not math.isfinite(v) or v < lo or (hi is not None and v > hi) or \
                (flag in ("--strength", "--duration", "--keep", "--sigma-min", "--sigma-max") and v <= lo):
            raise InputError(f"{flag} {v}: must be a finite number in {'(' if flag != '--start' else '['}{lo:g}, "
                             f"{hi if hi is not None else 'inf'}{']' if hi is not None else ')'}")
    if not a.sigma_min < a.sigma_max:
        raise InputError(f"--sigma-min {a.sigma_min} must be below --sigma-max {a.sigma_max}")
    if a.steps is not None and not 1 <= a.steps <= 1000:
        raise InputError(f"--steps {a.steps}: must be 1..1000")
    if not 1 <= a.batch <= 64:
        raise InputError(f"--batch {a.batch}: must be 1..64")
    if a.inpaint and a.keep is not None:
        raise InputError("give --inpaint or --keep, not both")
    needs_init = [f for f, on in (("--inpaint", a.inpaint), ("--keep", a.keep is not None),
                                  ("--strength < 1", a.strength < 1)) if on]
    if needs_init and not a.init_audio:
        raise InputError(f"{needs_init[0]} needs --init-audio (the audio to work on)")
    if a.init_audio:
        length = media.audio_duration(a.init_audio)  # the header only: also refuses unreadable files now
        if length is not None and a.inpaint:
            check_ranges(a.inpaint, min(length, a.duration) if a.duration else length)
        if length is not None:
            from .checkpoint import detect  # the checkpoint's header / index only, no weights
            cfg = detect(a.model, config=a.config, part=a.part).config
            if cfg is not None and length * cfg.sample_rate < cfg.vae.downsampling_ratio:
                raise InputError(f"--init-audio {a.init_audio}: is {length:.4f} s long; it needs at least one "
                                 f"latent frame ({cfg.vae.downsampling_ratio / cfg.sample_rate:.4f} s)")


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
    from .generate import SamplerSettings
    from .task import GenerationRequest, generate

    _check_args(a)
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
    request = GenerationRequest(prompt=a.prompt, negative_prompt=a.negative, video=a.video, image=a.image,
                                start=a.start, audio_prompt=a.audio_prompt,
                                audio_prompt_mask=False if a.no_prompt_mask else None, init_audio=a.init_audio,
                                strength=a.strength, inpaint=a.inpaint, keep_seconds=a.keep, music=a.music,
                                duration=a.duration, settings=settings, batch=a.batch,
                                sync_features=not a.sync_zeros)
    res = generate(model, request, callback=progress)
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
