"""Tokenizers for the T5 text encoder that work from local files only.

* :class:`ByteTokenizer` — ByT5-style byte-level tokenizer: every UTF-8 byte ``b`` becomes id
  ``b + 3``; ids 0, 1, 2 are ``<pad>``, ``</s>`` (EOS) and ``<unk>``.  It needs no vocabulary
  file, so our own small demo T5 models ship without one.
* :class:`SentencePieceTokenizer` — a T5 ``spiece.model`` read with the ``sentencepiece``
  library, for T5 folders that have no ``tokenizer.json`` (recent ``transformers`` versions can
  only convert ``spiece.model`` with ``protobuf`` installed).  The released AudioX models were
  run with the fast tokenizer from t5-base's ``tokenizer.json``; prefer that file when you have
  it (:mod:`audiox_core.conditioning.t5` does).

Both follow T5's sequence convention: the content ids followed by EOS; truncation keeps the EOS
(content cut to ``max_length - 1`` ids); padding appends ``<pad>`` on the right.  The call
interface is the subset of Hugging Face tokenizers used here:
``tok(texts, truncation=True, max_length=L, padding="max_length", return_tensors="pt")`` →
``{"input_ids": LongTensor [B, L], "attention_mask": LongTensor [B, L]}``.

How a folder selects the byte tokenizer (:func:`is_byte_tokenizer_dir`):

* a ``byte_tokenizer.json`` marker file (written by :meth:`ByteTokenizer.save`), content
  ``{"type": "byte", "offset": 3, "pad_id": 0, "eos_id": 1, "unk_id": 2}``; or
* a Hugging Face ``tokenizer_config.json`` with ``"tokenizer_class": "ByT5Tokenizer"`` (real ByT5
  checkpoints use the same id mapping).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence, Union

import torch

from ..errors import CheckpointError, InputError

MARKER_FILE = "byte_tokenizer.json"


class SimpleTokenizer:
    """Shared batching/padding logic; subclasses define :meth:`content_ids` and the special ids."""

    pad_token_id: int = 0
    eos_token_id: int = 1

    def content_ids(self, text: str) -> list[int]:  # pragma: no cover - abstract
        raise NotImplementedError

    def encode(self, text: str, max_length: int | None = None, truncation: bool = True) -> list[int]:
        """Ids of ``text`` followed by EOS; with ``max_length`` the content is cut to keep the EOS."""
        if not isinstance(text, str):
            raise InputError(f"{type(self).__name__}: expected a string, got {type(text).__name__}")
        ids = self.content_ids(text)
        if max_length is not None and truncation:
            if max_length < 1:
                raise InputError(f"{type(self).__name__}: max_length must be >= 1, got {max_length}")
            ids = ids[: max_length - 1]
        return ids + [self.eos_token_id]

    def __call__(self, texts: Union[str, Sequence[str]], *, truncation: bool = True, max_length: int = 128,
                 padding: Union[str, bool] = "max_length", return_tensors: str = "pt") -> dict:
        if isinstance(texts, str):
            texts = [texts]
        if return_tensors != "pt":
            raise InputError(f"{type(self).__name__}: only return_tensors='pt' is supported")
        rows = [self.encode(t, max_length, truncation) for t in texts]
        length = max_length if padding == "max_length" else max(len(r) for r in rows)
        if any(len(r) > length for r in rows):
            raise InputError(f"{type(self).__name__}: a prompt is longer than {length} tokens and truncation is off")
        ids = torch.full((len(rows), length), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, : len(r)] = 1
        return {"input_ids": ids, "attention_mask": mask}


class ByteTokenizer(SimpleTokenizer):
    """UTF-8 bytes + 3; pad 0, eos 1, unk 2 (ByT5 convention)."""

    pad_token_id = 0
    eos_token_id = 1
    unk_token_id = 2
    offset = 3
    vocab_size = 256 + 3

    def content_ids(self, text: str) -> list[int]:
        return [b + self.offset for b in text.encode("utf-8")]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        """Bytes back to text; special ids are dropped, a cut multi-byte character is replaced."""
        out = bytearray()
        for i in ids:
            i = int(i)
            if i >= self.offset:
                out.append(i - self.offset)
            elif not skip_special_tokens:
                out.extend({0: b"<pad>", 1: b"</s>", 2: b"<unk>"}[i])
        return out.decode("utf-8", errors="replace")

    def config(self) -> dict:
        return {"type": "byte", "offset": self.offset, "pad_id": self.pad_token_id, "eos_id": self.eos_token_id,
                "unk_id": self.unk_token_id}

    def save(self, folder: Union[str, Path]) -> Path:
        """Write the ``byte_tokenizer.json`` marker into ``folder``."""
        p = Path(folder) / MARKER_FILE
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.config(), indent=1), encoding="utf-8")
        return p

    @classmethod
    def from_file(cls, path: Union[str, Path]) -> "ByteTokenizer":
        """Read and check a ``byte_tokenizer.json`` marker."""
        path = Path(path)
        try:
            cfg = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{path}: unreadable byte tokenizer marker ({e})") from None
        tok = cls()
        if not isinstance(cfg, dict) or cfg.get("type") != "byte" or any(
                cfg.get(k, v) != v for k, v in tok.config().items()):
            raise CheckpointError(f"{path}: not a byte tokenizer marker (expected {tok.config()})")
        return tok


class SentencePieceTokenizer(SimpleTokenizer):
    """A T5 ``spiece.model`` through the ``sentencepiece`` library (pad/eos from the model, else 0/1)."""

    def __init__(self, model_file: Union[str, Path]):
        try:
            import sentencepiece as spm
        except ImportError:  # pragma: no cover - sentencepiece is a dependency
            raise CheckpointError(f"{model_file}: reading a SentencePiece model needs the 'sentencepiece' package "
                                  "(or provide the tokenizer.json instead)") from None
        self.path = Path(model_file)
        try:
            self.sp = spm.SentencePieceProcessor(model_file=str(self.path))
        except (OSError, RuntimeError) as e:
            raise CheckpointError(f"{self.path}: not a readable SentencePiece model ({e})") from None
        pad, eos = self.sp.pad_id(), self.sp.eos_id()
        self.pad_token_id = pad if pad >= 0 else 0
        self.eos_token_id = eos if eos >= 0 else 1
        self.vocab_size = self.sp.get_piece_size()

    def content_ids(self, text: str) -> list[int]:
        return list(self.sp.encode(text))

    def decode(self, ids: Sequence[int]) -> str:
        return self.sp.decode([int(i) for i in ids if int(i) not in (self.pad_token_id, self.eos_token_id)])


def is_byte_tokenizer_dir(folder: Union[str, Path]) -> bool:
    """True if ``folder`` selects :class:`ByteTokenizer` (marker file or ByT5 tokenizer_config)."""
    folder = Path(folder)
    if (folder / MARKER_FILE).is_file():
        return True
    tc = folder / "tokenizer_config.json"
    if tc.is_file():
        try:
            return json.loads(tc.read_text(encoding="utf-8")).get("tokenizer_class") == "ByT5Tokenizer"
        except (OSError, json.JSONDecodeError, AttributeError):
            return False
    return False
