"""Seconds to VAE-decode / encode a 10 s stereo clip with the full-size Oobleck VAE (fp32).

Builds :class:`audiox_core.models.vae.Pretransform` with random weights (random weights do not
change the cost) and times, with ``--threads`` intra-op threads:

* ``decode``  latents ``[1, 64, L]`` -> audio ``[1, 2, L * 2048]`` (L = 215: 9.98 s);
* ``encode``  audio ``[1, 2, 441000]`` -> latents ``[1, 64, 215]`` (posterior sampled);
* the same with ``chunked=True`` (chunks of 128 latents, default overlap);
* ``plain``: the same parameters run the way the official modules run them (weight norm
  recomputed per conv call, channels-first ``conv1d``, out-of-place SnakeBeta and residual adds),
  written here as a reference point on the same machine and process.  Its output is compared
  with the optimised path (max-abs difference printed).

Reports the minimum and median wall time and the process CPU time of ``--reps`` runs after one
warm-up.  The official code measured 12.75 s (decode) / 11.2 s (encode) on the project's 2-vCPU
Xeon (the project's CPU baseline, measured side by side); compare like with like on a loaded machine via ``plain``.

    python bench/vae_speed.py                       # decode + encode, 2 threads
    python bench/vae_speed.py --what decode --reps 5 --no-plain
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from audiox_core.config import VAEConfig  # noqa: E402
from audiox_core.models import vae as V  # noqa: E402


# ------------------------------------------------------------------------------------------------
# "plain" reference: same parameters, evaluated the way the official modules do
# ------------------------------------------------------------------------------------------------
def _plain(m: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    if isinstance(m, V.WNConv1d):
        return F.conv1d(x, m.fused_weight(), m.bias, m.stride, m.padding, m.dilation)
    if isinstance(m, V.WNConvTranspose1d):
        return F.conv_transpose1d(x, m.fused_weight(), m.bias, m.stride, m.padding, 0, 1, m.dilation)
    if isinstance(m, V.SnakeBeta):
        a, b = torch.exp(m.alpha).view(1, -1, 1), torch.exp(m.beta).view(1, -1, 1)
        return x + (1.0 / (b + 1e-9)) * torch.sin(x * a).pow(2)
    if isinstance(m, V.ResidualUnit):
        return _plain(m.layers, x) + x
    if isinstance(m, (V.EncoderBlock, V.DecoderBlock, V.OobleckEncoder, V.OobleckDecoder)):
        return _plain(m.layers, x)
    if isinstance(m, torch.nn.Sequential):
        for layer in m:
            x = _plain(layer, x)
        return x
    return m(x)  # Identity / Tanh


def plain_decode(pt: V.Pretransform, z: torch.Tensor) -> torch.Tensor:
    return _plain(pt.model.decoder, z)


def plain_encode(pt: V.Pretransform, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    h = _plain(pt.model.encoder, x)
    mean, scale = h.chunk(2, dim=1)
    return noise * (F.softplus(scale) + 1e-4) + mean


# ------------------------------------------------------------------------------------------------
def timed(fn, reps: int):
    fn()  # warm-up (oneDNN primitive creation, weight caches)
    walls, cpus, out = [], [], None
    for _ in range(reps):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return walls, cpus, out


def line(name: str, walls, cpus, extra: str = "") -> None:
    print(f"{name:<22} wall min {min(walls):6.2f} s  median {statistics.median(walls):6.2f} s   "
          f"cpu median {statistics.median(cpus):6.2f} s  {extra}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--what", choices=["decode", "encode", "both"], default="both")
    ap.add_argument("--latents", type=int, default=215, help="latent frames (215 = 10 s at 44.1 kHz)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--no-plain", action="store_true", help="skip the official-style reference")
    ap.add_argument("--no-chunked", action="store_true")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    pt = V.Pretransform(VAEConfig()).eval()
    n_lat = args.latents
    print(f"torch {torch.__version__}, {args.threads} threads, full-size VAE fp32, {n_lat} latents "
          f"({n_lat * 2048 / 44100:.2f} s of audio)", flush=True)
    with torch.no_grad():
        if args.what in ("decode", "both"):
            z = torch.randn(1, 64, n_lat)
            walls, cpus, y = timed(lambda: pt.decode(z), args.reps)
            line("decode", walls, cpus)
            if not args.no_chunked:
                walls, cpus, yc = timed(lambda: pt.decode(z, chunked=True, chunk_size=128), args.reps)
                line("decode chunked 128", walls, cpus, f"max-abs vs unchunked {(yc - y).abs().max().item():.1e}")
            if not args.no_plain:
                walls, cpus, yp = timed(lambda: plain_decode(pt, z), args.reps)
                line("decode plain", walls, cpus, f"max-abs vs optimised {(yp - y).abs().max().item():.1e}")
        if args.what in ("encode", "both"):
            n = 441000 if n_lat == 215 else n_lat * 2048
            t = torch.arange(n) / 44100.0
            x = (0.3 * torch.sin(2 * torch.pi * 220 * t) + 0.05 * torch.randn(n)).expand(1, 2, n).contiguous()
            noise = torch.randn(1, 64, n // 2048)
            walls, cpus, e = timed(lambda: pt.encode(x, noise=noise), args.reps)
            line("encode", walls, cpus)
            if not args.no_chunked:
                walls, cpus, ec = timed(lambda: pt.encode(x, noise=noise, chunked=True, chunk_size=128), args.reps)
                line("encode chunked 128", walls, cpus, f"max-abs vs unchunked {(ec - e).abs().max().item():.1e}")
            if not args.no_plain:
                walls, cpus, ep = timed(lambda: plain_encode(pt, x, noise), args.reps)
                line("encode plain", walls, cpus, f"max-abs vs optimised {(ep - e).abs().max().item():.1e}")


if __name__ == "__main__":
    main()
