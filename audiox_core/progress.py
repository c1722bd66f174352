"""Progress reporting and interruption, without ComfyUI.

Long-running functions take ``callback: Optional[ProgressCallback]``.  They call it as
``callback(step, total, info)`` after each unit of work (``step`` counts from 1, ``info`` is a
small dict such as ``{"stage": "sampling", "t": 0.75}`` or ``{"loss": 0.12}``).  A callback stops
the work by raising :class:`audiox_core.errors.Interrupted` (or any exception); functions must
leave no partial state behind when that happens.  Inside ComfyUI the nodes pass a callback that
drives ``comfy.utils.ProgressBar`` and checks ComfyUI's interrupt flag.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

ProgressCallback = Callable[[int, int, dict], Any]


def report(callback: Optional[ProgressCallback], step: int, total: int, **info) -> None:
    if callback is not None:
        callback(step, total, info)


class Stages:
    """Split one callback across consecutive stages with known weights.

    ``Stages(cb, encode=1, sample=8, decode=2)`` gives ``.sub("sample")``, a callback mapping that
    stage's ``(step, total)`` to overall progress out of 1000.
    """

    def __init__(self, callback: Optional[ProgressCallback], **weights: float):
        self.callback = callback
        total = float(sum(weights.values())) or 1.0
        self.offsets, acc = {}, 0.0
        for k, w in weights.items():
            self.offsets[k] = (acc / total, w / total)
            acc += w

    def sub(self, name: str) -> Optional[ProgressCallback]:
        if self.callback is None:
            return None
        off, width = self.offsets[name]

        def cb(step, total, info):
            frac = off + width * (step / max(total, 1))
            return self.callback(int(round(frac * 1000)), 1000, dict(info, stage=name))

        return cb
