"""Loss-curve images without matplotlib (numpy + Pillow).

``loss_curve_png(history)`` → PNG bytes; ``loss_curve_image(history)`` → float tensor
``[1, H, W, 3]`` in 0..1 (a ComfyUI IMAGE).  ``history`` is the trainer's list of dicts
(``{"step", "loss", ...}``) or a plain list of numbers.  The raw loss is drawn thin and light, an
exponential moving average (``smoothing``) bold; the y axis is logarithmic when the losses span
more than a decade (``log_y=None``), with a few labelled ticks.
"""
from __future__ import annotations

import io
import math
from typing import Optional, Sequence, Union

import numpy as np
import torch

__all__ = ["loss_curve_png", "loss_curve_image", "smooth"]


def smooth(values: Sequence[float], smoothing: float = 0.9) -> np.ndarray:
    """Bias-corrected exponential moving average (TensorBoard style)."""
    out, acc, w = [], 0.0, 0.0
    for v in values:
        acc = smoothing * acc + (1 - smoothing) * v
        w = smoothing * w + (1 - smoothing)
        out.append(acc / w if w else v)
    return np.asarray(out, dtype=np.float64)


def _series(history, key: str):
    steps, vals = [], []
    for i, h in enumerate(history):
        if isinstance(h, dict):
            v = h.get(key)
            s = h.get("step", i + 1)
        else:
            v, s = h, i + 1
        if v is None:
            continue
        v = float(v)
        if math.isfinite(v):
            steps.append(float(s))
            vals.append(v)
    return np.asarray(steps), np.asarray(vals)


def _render(history, key: str, width: int, height: int, smoothing: float, log_y: Optional[bool], title: str):
    from PIL import Image, ImageDraw, ImageFont
    img = Image.new("RGB", (width, height), (255, 255, 255))
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    steps, vals = _series(history, key)
    left, right, top, bottom = 58, 12, 22, 28
    pw, ph = width - left - right, height - top - bottom
    d.text((left, 4), title or key, fill=(30, 30, 30), font=font)
    d.rectangle([left, top, left + pw, top + ph], outline=(120, 120, 120))
    if len(vals) == 0:
        d.text((left + 8, top + ph // 2), "no data yet", fill=(120, 120, 120), font=font)
        return img
    sm = smooth(vals, smoothing)
    pos = np.concatenate([vals, sm])
    if log_y is None:
        log_y = bool(pos.min() > 0 and pos.max() / max(pos.min(), 1e-30) > 10)
    tf = (lambda v: np.log10(np.maximum(v, 1e-30))) if log_y else (lambda v: v)
    lo, hi = float(tf(pos).min()), float(tf(pos).max())
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    pad = 0.05 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    x0, x1 = float(steps.min()), float(steps.max())
    if x1 <= x0:
        x1 = x0 + 1

    def xy(s, v):
        x = left + (s - x0) / (x1 - x0) * pw
        y = top + ph - (tf(v) - lo) / (hi - lo) * ph
        return list(zip(x.tolist(), y.tolist()))

    for k in range(5):  # y ticks
        fy = lo + (hi - lo) * k / 4
        y = top + ph - (fy - lo) / (hi - lo) * ph
        d.line([left - 3, y, left + pw, y], fill=(235, 235, 235))
        val = 10 ** fy if log_y else fy
        d.text((2, y - 6), f"{val:.3g}", fill=(80, 80, 80), font=font)
    for k in range(5):  # x ticks
        s = x0 + (x1 - x0) * k / 4
        x = left + (s - x0) / (x1 - x0) * pw
        d.line([x, top + ph, x, top + ph + 3], fill=(80, 80, 80))
        d.text((x - 10, top + ph + 6), f"{int(round(s))}", fill=(80, 80, 80), font=font)
    pts = xy(steps, vals)
    if len(pts) > 1:
        d.line(pts, fill=(160, 190, 230), width=1)
        d.line(xy(steps, sm), fill=(20, 80, 180), width=2)
    else:
        x, y = pts[0]
        d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=(20, 80, 180))
    d.text((left + pw - 120, 4), f"last {vals[-1]:.4g}", fill=(30, 30, 30), font=font)
    return img


def loss_curve_png(history: Sequence[Union[dict, float]], *, key: str = "loss", width: int = 640,
                   height: int = 320, smoothing: float = 0.9, log_y: Optional[bool] = None, title: str = "") -> bytes:
    """PNG bytes of the loss curve (module docstring)."""
    buf = io.BytesIO()
    _render(history, key, width, height, smoothing, log_y, title).save(buf, format="PNG")
    return buf.getvalue()


def loss_curve_image(history: Sequence[Union[dict, float]], **kw) -> torch.Tensor:
    """The same picture as a float tensor ``[1, H, W, 3]`` in 0..1 (ComfyUI IMAGE)."""
    kw.setdefault("width", 640)
    kw.setdefault("height", 320)
    img = _render(history, kw.pop("key", "loss"), kw.pop("width"), kw.pop("height"), kw.pop("smoothing", 0.9),
                  kw.pop("log_y", None), kw.pop("title", ""))
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0)[None]


def loss_panels_image(history: Sequence[dict], panels: Sequence[tuple[str, str]], *, width: int = 640,
                      height: int = 320) -> torch.Tensor:
    """The curves of several ``(key, title)`` panels stacked top to bottom as one IMAGE tensor;
    panels whose key no history entry has are left out (all missing: the first panel, empty)."""
    images = [loss_curve_image(history, key=key, title=title, width=width, height=height) for key, title in panels
              if any(isinstance(h.get(key), (int, float)) for h in history)]
    if not images:
        images = [loss_curve_image(history, key=panels[0][0], title=panels[0][1], width=width, height=height)]
    return torch.cat(images, dim=1)
