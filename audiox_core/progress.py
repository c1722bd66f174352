"""Progress reporting and interruption, without ComfyUI.

Long-running functions take ``callback: Optional[ProgressCallback]``.  They call it as
``callback(step, total, info)`` after each unit of work (``step`` counts from 1, ``info`` is a
small dict such as ``{"stage": "sampling", "t": 0.75}`` or ``{"loss": 0.12}``).  A callback stops
the work by raising :class:`audiox_core.errors.Interrupted` (or any exception); functions must
leave no partial state behind when that happens.  Inside ComfyUI the nodes pass a callback that
drives ``comfy.utils.ProgressBar`` and checks ComfyUI's interrupt flag.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Optional

log = logging.getLogger(__name__)

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


def bar_callback(make_bar: Callable[[int], Any], total: Optional[int] = None) -> ProgressCallback:
    """A callback driving a progress bar made by ``make_bar(length)`` at the first call (it must have
    ``update_absolute(value, total)``).  ``total`` fixes the bar length and the core's
    ``(step, step_total)`` is rescaled onto it; ``None`` follows the core's own total."""
    state: dict[str, Any] = {}

    def callback(step: int, step_total: int, info: Optional[dict] = None) -> None:
        bar = state.get("bar")
        if bar is None:
            bar = state["bar"] = make_bar(total if total is not None else step_total)
        if info:
            log.debug("progress %s/%s %s", step, step_total, info)
        if total is not None:
            bar.update_absolute(round(step * total / max(int(step_total), 1)), total)
        else:
            bar.update_absolute(step, step_total)

    return callback
