"""T5 text encoder for the ``text_prompt`` condition (t5-base, d_model 768).

Official source: ``T5Conditioner`` in ``audiox/models/conditioners.py`` (identical in Turbo).
The T5 weights are NOT part of any AudioX checkpoint: the official keeps the encoder out of the
module tree, and its ``proj_out`` is Identity.  So this encoder is a separate object, attached
to a model with ``AudioXModel.set_text_encoder`` and never registered in the model's state.

Semantics reproduced by :meth:`T5TextEncoder.encode`::

    ids, mask = tokenizer(prompts, truncation=True, max_length=128, padding="max_length")
    h         = T5EncoderModel(ids, attention_mask=mask).last_hidden_state     [B, 128, 768]
    tokens    = h.float() · mask[..., None]        (padded rows exactly 0)
    returns (tokens fp32, mask bool)

An empty prompt gives one non-zero row (the ``</s>`` token) and 127 zero rows; there is no
learned null text.  The official runs T5 in float16 (weights cast to fp16 *and* CUDA fp16
autocast).  Here ``dtype`` defaults to float16 on CUDA (run under the matching autocast, as
the official) and float32 on CPU (fp16 matmuls on CPU are slow and not what anyone ran); the
output is always float32.

Loading is local only (``from_local``): the encoder is a ``transformers.T5EncoderModel`` built
from a ``T5Config`` on the meta device and filled with ``load_state_dict(strict=True,
assign=True)`` in the target dtype — never ``from_pretrained`` with a hub id, never a network
call.  Accepted inputs:

* a Hugging Face folder: ``config.json`` + ``model.safetensors`` / ``pytorch_model.bin`` (a
  full T5ForConditionalGeneration file is fine: ``decoder.*`` / ``lm_head.*`` are dropped) +
  tokenizer files;
* a single ``.safetensors`` / ``.bin`` file with ``encoder.*`` and ``shared.weight`` keys
  (ComfyUI's ``models/text_encoders/t5_base.safetensors``; a common key prefix such as
  ``text_encoders.t5base.transformer.`` is stripped).  The config is inferred from the shapes:
  vocab and d_model from the embedding, layers from ``encoder.block.N``, heads and buckets from
  ``relative_attention_bias``, d_kv from ``q``, d_ff and relu vs gated-gelu from
  ``DenseReluDense``.

Tokenizer files, first match wins (folder = the model folder, or the file's folder, or
``tokenizer_path``): ``byte_tokenizer.json`` or a ByT5 ``tokenizer_config.json`` →
:class:`~audiox_core.conditioning.tokenizers.ByteTokenizer`; ``tokenizer.json`` → Hugging Face
fast tokenizer (what the official used); ``spiece.model`` → SentencePiece.  ``tokenizer_path``
may also point at one of those files directly.  Inside ComfyUI the t5-base tokenizer ships with
ComfyUI itself (``comfy/text_encoders/t5_tokenizer/``), so no download is ever needed.
"""
from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict
from pathlib import Path
from typing import Optional, Sequence, Union

import torch

from ..errors import CheckpointError, InputError
from ..weights import folder_weights
from .tokenizers import MARKER_FILE, ByteTokenizer, SentencePieceTokenizer, is_byte_tokenizer_dir

log = logging.getLogger(__name__)

#: The text encoder every released AudioX model was trained with (HF ``t5-base``).
T5_BASE = dict(d_model=768, num_layers=12, num_heads=12, d_ff=3072, d_kv=64, vocab_size=32128,
               feed_forward_proj="relu")
TOKENIZER_FILES = (MARKER_FILE, "tokenizer.json", "spiece.model")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_ANCHOR = "encoder.block.0.layer.0.SelfAttention.q.weight"
_REL = "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
_DROP = ("decoder.", "lm_head.")


# ----------------------------------------------------------------------------------------------
# tokenizer
# ----------------------------------------------------------------------------------------------
def _tokenizer_help(where: str) -> str:
    return (f"no T5 tokenizer found {where}. Accepted: 'tokenizer.json' (Hugging Face fast tokenizer, as in the "
            f"t5-base repository or ComfyUI's comfy/text_encoders/t5_tokenizer/), 'spiece.model' (SentencePiece), "
            f"or '{MARKER_FILE}' (byte-level tokenizer of our demo models). Put the file(s) next to the weights "
            f"(same folder) or pass tokenizer_path= (a folder or one of those files).")


def load_tokenizer(path: Union[str, Path]):
    """Tokenizer from a folder or a tokenizer file (see the module docstring for the order)."""
    path = Path(path)
    if path.is_dir():
        if is_byte_tokenizer_dir(path):
            marker = path / MARKER_FILE
            return ByteTokenizer.from_file(marker) if marker.is_file() else ByteTokenizer()
        if (path / "tokenizer.json").is_file():
            return _fast_tokenizer(path / "tokenizer.json")
        if (path / "spiece.model").is_file():
            return SentencePieceTokenizer(path / "spiece.model")
        raise CheckpointError(_tokenizer_help(f"in {path}"))
    if not path.is_file():
        raise CheckpointError(f"{path}: tokenizer path does not exist. " + _tokenizer_help("there"))
    if path.name == MARKER_FILE:
        return ByteTokenizer.from_file(path)
    if path.suffix == ".json":
        return _fast_tokenizer(path)
    if path.suffix == ".model":
        return SentencePieceTokenizer(path)
    raise CheckpointError(f"{path}: not a tokenizer file. " + _tokenizer_help("there"))


def _fast_tokenizer(file: Path):
    from transformers import PreTrainedTokenizerFast

    try:
        tok = PreTrainedTokenizerFast(tokenizer_file=str(file), pad_token="<pad>", eos_token="</s>",
                                      unk_token="<unk>")
    except Exception as e:  # noqa: BLE001 - tokenizers raises plain Exceptions on bad JSON
        raise CheckpointError(f"{file}: not a readable tokenizer.json ({str(e)[:200]})") from None
    if tok.pad_token_id is None or tok.eos_token_id is None:
        raise CheckpointError(f"{file}: the tokenizer has no '<pad>' / '</s>' tokens; it is not a T5 tokenizer")
    return tok


def _find_tokenizer(weights: Path, tokenizer_path: Optional[Union[str, Path]]):
    if tokenizer_path is not None:
        return load_tokenizer(tokenizer_path)
    folder = weights if weights.is_dir() else weights.parent
    has = is_byte_tokenizer_dir(folder) or any((folder / n).is_file() for n in TOKENIZER_FILES)
    if not has:
        raise CheckpointError(_tokenizer_help(f"for {weights} (looked in {folder})"))
    return load_tokenizer(folder)


# ----------------------------------------------------------------------------------------------
# weights and config
# ----------------------------------------------------------------------------------------------
def infer_t5_config(shapes: dict, where: Union[str, Path] = "T5 weights"):
    """``T5Config`` from encoder key shapes (prefix-free keys; see the module docstring)."""
    from transformers import T5Config

    emb = shapes.get("shared.weight") or shapes.get("encoder.embed_tokens.weight")
    if emb is None or _ANCHOR not in shapes or _REL not in shapes:
        raise CheckpointError(f"{where}: not a T5 encoder (missing shared.weight / encoder.block.0 self-attention "
                              "keys)")
    vocab, d_model = emb
    layers = len({k.split(".")[2] for k in shapes if k.startswith("encoder.block.")})
    buckets, heads = shapes[_REL]
    inner = shapes[_ANCHOR][0]
    ff = "encoder.block.0.layer.1.DenseReluDense."
    gated = (ff + "wi_0.weight") in shapes
    wi = shapes.get(ff + ("wi_0.weight" if gated else "wi.weight"))
    if wi is None or inner % heads:
        raise CheckpointError(f"{where}: not a T5 encoder (feed-forward / attention shapes are inconsistent)")
    return T5Config(vocab_size=int(vocab), d_model=int(d_model), d_kv=int(inner // heads), d_ff=int(wi[0]),
                    num_layers=int(layers), num_heads=int(heads), relative_attention_num_buckets=int(buckets),
                    feed_forward_proj="gated-gelu" if gated else "relu", use_cache=False)


def _resolve_weights(path: Path) -> tuple[Path, Optional[dict]]:
    if not path.exists():
        raise CheckpointError(f"{path}: T5 text encoder not found")
    if not path.is_dir():
        return path, None
    found, cfg = folder_weights(path, WEIGHT_FILES)
    if found is not None:
        return found, cfg
    if any(path.glob("*.index.json")):
        raise CheckpointError(f"{path}: sharded weights are not supported; t5-base ships as one model.safetensors")
    raise CheckpointError(f"{path}: no T5 weights found (expected {' or '.join(WEIGHT_FILES)})")


def _default_dtype(device: torch.device) -> torch.dtype:
    return torch.float16 if device.type == "cuda" else torch.float32


class T5TextEncoder:
    """Frozen T5 encoder + tokenizer with the official ``T5Conditioner`` semantics.

    Attributes: ``model`` (``transformers.T5EncoderModel``, eval, no grad), ``tokenizer``,
    ``source`` (file it came from), ``cache_size`` (LRU entries; 0 disables the cache).
    """

    def __init__(self, model, tokenizer, *, source: str = "", cache_size: int = 32):
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.source = source
        self.cache_size = int(cache_size)
        self._cache: "OrderedDict[tuple, tuple[torch.Tensor, torch.Tensor]]" = OrderedDict()

    # ------------------------------------------------------------------------------------------
    @classmethod
    def from_local(cls, path: Union[str, Path], *, dtype: Optional[torch.dtype] = None,
                   device: Union[str, torch.device] = "cpu", tokenizer_path: Optional[Union[str, Path]] = None,
                   expected_dim: Optional[int] = 768, cache_size: int = 32) -> "T5TextEncoder":
        """Load a T5 encoder from a local folder or single file (module docstring lists layouts).

        ``expected_dim``: required d_model (the AudioX ``cond_dim``, 768); None accepts any.
        ``dtype``: default float16 on CUDA, float32 otherwise.  Raises :class:`CheckpointError`
        for a non-T5 file, a wrong size, or a missing tokenizer.
        """
        from transformers import T5Config, T5EncoderModel

        from ..weights import WeightSource, compare_keys

        path = Path(path)
        device = torch.device(device)
        dtype = dtype or _default_dtype(device)
        file, cfg_json = _resolve_weights(path)
        src = WeightSource(file)
        keys = src.keys()
        if any(k == "scaled_fp8" or k.endswith(".scaled_fp8") for k in keys):
            raise CheckpointError(f"{file}: scaled-fp8 T5 files are not supported; use an fp16/fp32 t5-base file")
        hits = [k for k in keys if k.endswith(_ANCHOR)]
        if not hits:
            raise CheckpointError(f"{file}: not a T5 text encoder (no '{_ANCHOR}' key); expected the t5-base "
                                  "encoder (keys encoder.block.N.* and shared.weight)")
        sub = src.sub(min(hits, key=len)[: -len(_ANCHOR)])
        shapes = OrderedDict((k, s) for k, s in sub.shapes().items() if not k.startswith(_DROP))

        if cfg_json is not None:
            if cfg_json.get("model_type") != "t5":
                raise CheckpointError(f"{path / 'config.json'}: model_type {cfg_json.get('model_type')!r} is not 't5'")
            config = T5Config.from_dict(cfg_json)
            config.use_cache = False
        else:
            config = infer_t5_config(shapes, file)
        if expected_dim is not None and int(config.d_model) != int(expected_dim):
            raise CheckpointError(f"{file}: this T5 has d_model {config.d_model}, expected {expected_dim} "
                                  f"(AudioX conditions on t5-base, d_model 768)")
        found = {k: getattr(config, k) for k in T5_BASE}
        if expected_dim == T5_BASE["d_model"] and found != T5_BASE:
            log.warning("%s: T5 sizes %s differ from t5-base %s; the AudioX checkpoints were trained with t5-base, "
                        "expect degraded conditioning", file, found, T5_BASE)

        with torch.device("meta"):
            model = T5EncoderModel(config)
        expected = OrderedDict((k, tuple(v.shape)) for k, v in model.state_dict(keep_vars=True).items())
        tied = ("shared.weight", "encoder.embed_tokens.weight")
        present = [k for k in tied if k in shapes]
        report = compare_keys(expected, shapes)
        report.missing = [k for k in report.missing if not (k in tied and present)]
        if not report.ok:
            raise CheckpointError(f"{file}: does not match a T5 encoder with d_model {config.d_model}, "
                                  f"{config.num_layers} layers:\n  {report.summary()}")
        sd = {k: sub.read(k, dtype=dtype if sub.dtype(k).is_floating_point else None, device=device)
              for k in expected if k in shapes}
        for k in tied:
            sd.setdefault(k, sd[present[0]])
        model.load_state_dict(sd, strict=True, assign=True)
        model.encoder.embed_tokens.weight = model.shared.weight  # keep the tie after assign
        tokenizer = _find_tokenizer(path, tokenizer_path)
        log.info("loaded T5 text encoder from %s (d_model %d, %d layers, %s on %s)", file, config.d_model,
                 config.num_layers, dtype, device)
        return cls(model, tokenizer, source=str(file), cache_size=cache_size)

    # ------------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.model.shared.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.shared.weight.dtype

    @property
    def d_model(self) -> int:
        return int(self.model.config.d_model)

    def to(self, device: Union[str, torch.device, None] = None, dtype: Optional[torch.dtype] = None) -> "T5TextEncoder":
        """Move/cast the encoder (clears the cache)."""
        self.model.to(device=device, dtype=dtype)
        self.clear_cache()
        return self

    def clear_cache(self) -> None:
        self._cache.clear()

    def _autocast(self):
        dev, dt = self.device, self.dtype
        if dev.type == "cuda" and dt in (torch.float16, torch.bfloat16):
            return torch.autocast("cuda", dtype=dt)
        return contextlib.nullcontext()

    @torch.no_grad()
    def _run(self, prompts: list[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
        enc = self.tokenizer(prompts, truncation=True, max_length=max_length, padding="max_length",
                             return_tensors="pt")
        ids = enc["input_ids"].to(self.device)
        mask = enc["attention_mask"].to(self.device).to(torch.bool)
        if ids.shape[1] != max_length:
            raise InputError(f"T5 tokenizer returned {ids.shape[1]} tokens instead of {max_length}")
        with self._autocast():
            h = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        return h.float() * mask.unsqueeze(-1).float(), mask

    def encode(self, prompts: Union[str, Sequence[str]], max_length: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
        """``(tokens [B, max_length, d_model] float32, mask bool [B, max_length])`` on the encoder's device.

        Results are cached per ``(prompt, max_length)`` (LRU of ``cache_size`` entries), so
        re-running a graph with the same prompt costs nothing.
        """
        if isinstance(prompts, str):
            prompts = [prompts]
        prompts = list(prompts)
        if not prompts:
            raise InputError("T5: no prompts given")
        for p in prompts:
            if not isinstance(p, str):
                raise InputError(f"T5: prompts must be strings, got {type(p).__name__}")
        max_length = int(max_length)
        if max_length < 1:
            raise InputError(f"T5: max_length must be >= 1, got {max_length}")
        todo = list(OrderedDict.fromkeys(p for p in prompts if (p, max_length) not in self._cache))
        fresh = {}
        if todo:
            tok, mask = self._run(todo, max_length)
            fresh = {p: (tok[i], mask[i]) for i, p in enumerate(todo)}
        rows = []
        for p in prompts:
            key = (p, max_length)
            if p in fresh:
                row = fresh[p]
            else:
                row = self._cache[key]
                self._cache.move_to_end(key)
            rows.append(row)
        if self.cache_size > 0:
            for p, row in fresh.items():
                self._cache[(p, max_length)] = row
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return torch.stack([r[0] for r in rows]), torch.stack([r[1] for r in rows])

    __call__ = encode
