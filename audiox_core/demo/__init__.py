"""A procedural audio-visual world with known ground truth.

Used to train the small demo AudioX model and to measure what any model generates:

* :mod:`.world` -- scene specs (sound events and short music clips), deterministic audio,
  video and still-image renderers, scene sampling, train/val/test datasets with a held-out
  split, inpainting/completion task helpers.
* :mod:`.captions` -- varied and canonical ASCII captions of a scene.
* :mod:`.detectors` -- onset, category, pitch, tempo, key and timbre detectors computed from
  the signal only, and clip metrics (``evaluate_event_clip``, ``evaluate_music_clip``, seam and
  continuity measures).
* :mod:`.degrade` -- mild degradations (low-pass, noise, gain, mu-law, resampling) used to
  validate the detectors.

Everything is numpy only and deterministic from a seed.  Import the submodules directly; this
package file imports nothing heavy.
"""
