"""The graph runner: example graphs (workflows/*.json) run without ComfyUI.

The outermost ring of the repository (docs/ARCHITECTURE.md): it loads the node pack the way ComfyUI
does (:mod:`runner.pack`), converts, validates and executes UI-format graphs (:mod:`runner.graph`)
with small stand-ins of the ComfyUI core nodes they use (:mod:`runner.standins`), and renders the
example media (:mod:`runner.headless`).  Nothing in ``audiox_core`` or ``nodes`` imports it.

    python -m runner workflows/text_to_audio.json --out out/
"""
