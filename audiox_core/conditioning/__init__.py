"""The conditioner networks: what turns one modality into tokens, and nothing else.

T5 (``t5``, with its tokenizers in ``tokenizers``), the CLIP video tower (``clip_video``), the
Synchformer (``synchformer``), the temporal transformer over CLIP frames (``temporal_transformer``)
and the audio-prompt conditioners (``audio_prompt``): ``torch.nn`` modules, their preprocessing and
their weight loading.  They decide nothing about absent inputs or fusion.

Three places deal with "conditions"; the split is by *when* and *how much is decided*:

* ``audiox_core/conditioning/`` (here): the networks.
* ``audiox_core/conditions.py``: inference.  Runs these networks on user inputs, substitutes the
  official conventions for absent modalities, caches and fuses them into the backbone's context
  (what the encoder nodes and ``generate`` use).
* ``audiox_core/training/conditions.py``: training.  The same three modalities from prepared
  (cached) batch tensors, with gradients where a part is trained, plus the training-only input
  masking and CFG dropout.
"""
