"""Training data: examples from a folder / manifest / memory, preprocessed once into a cache.

Sources
-------
* :class:`FolderDataset` — every audio file under a folder.  Caption, in order: a sidecar
  ``<stem>.txt``; else the entry of a manifest (``manifest=`` or ``metadata.jsonl`` /
  ``metadata.csv`` / ``train_manifest*.jsonl`` in the folder); else the file name
  (``dog_barking-2.wav`` → "dog barking 2").  A video with the same stem (``.mp4 .mov .mkv
  .webm .avi``) is the item's video.
* :func:`read_manifest` — CSV (columns ``path``/``file``/``audio``, ``caption``/``text``/``prompt``,
  optional ``video_path``, ``type``) or JSONL in the official AudioX-Turbo ``train_manifest``
  format: ``path``, ``video_path``, ``sync_feature`` (a ``.pth`` tensor ``[1, 240, 768]``),
  ``caption`` either a string or ``{"audio_caption": {"0-10": "…", "10-20": "…"}}`` (the entry
  whose range holds the crop start is used, else the first, as the official adapter),
  ``type`` (``text_condition-audio``, ``audio_condition-music`` …), ``duration``, ``sample_rate``
  (informational).  Relative paths are relative to the manifest's folder.
* :class:`InMemoryDataset` — :class:`Example` objects holding tensors (synthetic sets, tests, the
  demo recipe): waveforms, frames, or even ready latents.

Preprocessing (:func:`prepare_dataset`)
--------------------------------------
Runs every frozen encoder ONCE per item and stores the results; epochs then only read them.

* audio → model rate/channels, right-padded with silence to at least one model window, then the
  VAE posterior ``(mean, std)`` over the WHOLE file (``[C, L_file]``).  Each step crops a window at
  a random latent offset and samples ``x0 = mean + std·ε`` with fresh ``ε`` (official training
  encodes with a sampled posterior every step; this keeps that stochasticity without the encoder).
* text → T5 tokens ``[N, D]`` (fp16) of every caption, or token ids when T5 is trained.
* video (items with a video) → per window: the video conditioner's output ``[128, D]``
  (frozen conditioner), the CLIP tower's hidden states ``[T·q, D]`` (projections trained), or the
  raw frames ``uint8 [T, 3, H, W]`` (CLIP trained); plus Synchformer features for sync models.
* audio prompt (``type`` ``audio_condition-*`` / ``uni_condition-*``) → per window: the audio-prompt
  conditioner's VAE posterior of the prompt waveform (``-audio``: the same window, ``-music``: the
  previous window, the official pairing), or its log-mel for the mel conditioner.

Items with a video or an audio prompt are cropped at the window grid (multiples of the video
conditioner's duration, 10 s for the released models, as the official crops at multiples of 10 s)
because their conditions are precomputed per window; text-to-audio items crop anywhere.

Cache
-----
With ``cache_dir`` every part is one ``.safetensors`` file named by a key = sha256 of (the
file's content hash, the fingerprint of the encoder that made it, the preprocessing parameters,
:data:`CACHE_VERSION`).  Re-running with the same files and model finds everything and touches
no encoder; changing a file, a model or a parameter makes new keys.  Without ``cache_dir`` the
results stay in memory.  ``PreparedDataset.dataset_hash`` (hash of all keys) is what LoRA files
record as their training set.

Deviations from the official data pipeline (documented, deliberate):

* the official random phase flip (sign inversion, p = 0.5) of the waveform is not reproduced:
  latents are encoded once;
* audio-prompt span masking happens in latent space (the span is replaced by the VAE posterior
  of silence) instead of on the waveform before encoding (see :mod:`.conditions`);
* the VAE posterior of a crop is taken from the whole-file encoding (edge frames can differ
  slightly from encoding the cropped waveform alone).
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

import torch

from ..errors import InputError, MediaError
from ..progress import ProgressCallback, report

log = logging.getLogger(__name__)

__all__ = [
    "AUDIO_EXTS", "VIDEO_EXTS", "CACHE_VERSION", "Example", "ExampleSet", "FolderDataset", "InMemoryDataset",
    "read_manifest", "caption_for", "prompt_mode", "CachePlan", "PreparedItem", "PreparedDataset", "Batch",
    "prepare_dataset", "module_fingerprint",
]

AUDIO_EXTS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".aif", ".aiff", ".m4a")
VIDEO_EXTS = (".mp4", ".mov", ".mkv", ".webm", ".avi")
CACHE_VERSION = 1


# ----------------------------------------------------------------------------------------------
# Examples
# ----------------------------------------------------------------------------------------------
@dataclass
class Example:
    """One raw training item.

    ``audio``: a path, or a float tensor ``[C, N]`` at ``sample_rate``; or ``latents`` ``[C, L]``
    (already in the model's latent space, used as a deterministic posterior).  ``caption``: a
    string or ``{"a-b": str}`` keyed by second ranges.  ``video``: a path or frames ``[N, H, W, 3]``
    (0..1 float or uint8) at ``video_fps``.  ``sync``: precomputed Synchformer features ``[S, D]``
    for the first window.  ``type``: official task type (decides the audio prompt).
    """

    audio: Any = None
    sample_rate: Optional[int] = None
    caption: Union[str, dict] = ""
    video: Any = None
    video_fps: Optional[float] = None
    sync: Optional[torch.Tensor] = None
    type: str = ""
    latents: Optional[torch.Tensor] = None
    name: str = ""

    def __post_init__(self):
        if (self.audio is None) == (self.latents is None):
            raise InputError(f"example {self.name or '?'}: give exactly one of audio or latents")
        if torch.is_tensor(self.audio):
            if self.sample_rate is None:
                raise InputError(f"example {self.name or '?'}: an audio tensor needs its sample_rate")
            if self.audio.dim() == 1:
                self.audio = self.audio[None]
            if self.audio.dim() != 2:
                raise InputError(f"example {self.name or '?'}: audio must be [C, N], got {tuple(self.audio.shape)}")
        if self.latents is not None and (not torch.is_tensor(self.latents) or self.latents.dim() != 2):
            raise InputError(f"example {self.name or '?'}: latents must be a [C, L] tensor")
        if torch.is_tensor(self.video) and self.video.dim() == 4 and self.video.shape[0] > 1 and not self.video_fps:
            raise InputError(f"example {self.name or '?'}: video frames need video_fps")
        if not self.name:
            self.name = Path(self.audio).stem if isinstance(self.audio, (str, Path)) else "item"


class ExampleSet:
    """A sequence of :class:`Example` (``len``, indexing)."""

    examples: List[Example]

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> Example:
        return self.examples[i]

    def __iter__(self):
        return iter(self.examples)


class InMemoryDataset(ExampleSet):
    def __init__(self, examples: Iterable[Example]):
        self.examples = list(examples)
        if not self.examples:
            raise InputError("InMemoryDataset: no examples")


def name_caption(stem: str) -> str:
    """A caption from a file name: ``rain_on-tin.roof`` → ``rain on tin roof``."""
    return re.sub(r"\s+", " ", re.sub(r"[_\-.]+", " ", stem)).strip()


#: manifests a dataset folder is searched for, in this order (then ``train_manifest*.jsonl``)
DEFAULT_MANIFESTS = ("metadata.jsonl", "metadata.csv")


def default_manifest(root: Union[str, Path]) -> Optional[Path]:
    """The folder's own manifest: ``metadata.jsonl``, ``metadata.csv`` or the first (sorted)
    ``train_manifest*.jsonl`` (the official name), or None."""
    root = Path(root)
    for name in (*DEFAULT_MANIFESTS, *sorted(p.name for p in root.glob("train_manifest*.jsonl"))):
        if (root / name).is_file():
            return root / name
    return None


def caption_for(caption: Union[str, dict, None], start_s: float = 0.0) -> str:
    """The caption of a crop starting at ``start_s`` (official rule for ``{"a-b": text}`` dicts)."""
    if caption is None:
        return ""
    if isinstance(caption, dict):
        if "audio_caption" in caption:
            caption = caption["audio_caption"]
        if isinstance(caption, dict):
            if not caption:
                return ""
            for k, v in caption.items():
                m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*-\s*(\d+(?:\.\d+)?)\s*", str(k))
                if m and float(m.group(1)) <= start_s < float(m.group(2)):
                    return str(v)
            return str(next(iter(caption.values())))
    return str(caption)


def prompt_mode(task_type: str) -> str:
    """Audio prompt of an official task type: ``"none"``, ``"same"`` (``-audio``) or ``"previous"`` (``-music``)."""
    t = (task_type or "").lower()
    if "audio_condition" in t or "uni_condition" in t:
        return "previous" if t.endswith("music") else "same"
    return "none"


def read_text_file(path: Union[str, Path], what: str = "text file") -> str:
    """The UTF-8 text of ``path``; unreadable files and invalid UTF-8 raise :class:`InputError`
    naming the file (and the byte where the bad encoding starts)."""
    path = Path(path)
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: this {what} is not valid UTF-8 text (bad byte at position {e.start}); "
                         "save it as UTF-8") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read this {what} ({e.strerror or e})") from None


def _inside_roots(p: Path, roots, what: str) -> Path:
    if roots is None:
        return p
    from ..fileio import resolve_inside
    return resolve_inside(p, roots, what=what, must_exist=False)


def read_manifest(path: Union[str, Path], *, allowed_roots=None) -> List[Example]:
    """Examples from a ``.jsonl`` (official Turbo manifest) or ``.csv`` file (module docstring).

    ``allowed_roots``: folders every path in the manifest must lie in (symlinks resolved);
    others are refused with :class:`~audiox_core.errors.PathError` naming the row."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"manifest not found: {path}")
    base = path.parent
    rows: List[dict] = []
    text = read_text_file(path, "manifest")
    if path.suffix.lower() in (".jsonl", ".json"):
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except (json.JSONDecodeError, RecursionError) as e:
                    raise InputError(f"{path}:{n}: not valid JSON ({e})") from None
                if not isinstance(rows[-1], dict):
                    raise InputError(f"{path}:{n}: expected a JSON object per line")
    elif path.suffix.lower() == ".csv":
        try:
            rows = list(csv.DictReader(io.StringIO(text, newline="")))
        except csv.Error as e:
            raise InputError(f"{path}: not a valid CSV file ({e})") from None
    else:
        raise InputError(f"{path}: manifests must be .jsonl or .csv")
    out = []
    for n, r in enumerate(rows, 1):
        audio = r.get("path") or r.get("file") or r.get("audio") or r.get("audio_path")
        if not audio or not isinstance(audio, str):
            raise InputError(f"{path}: row {n} has no 'path' (audio file) column")
        ap = Path(audio)
        ap = ap if ap.is_absolute() else base / ap
        ap = _inside_roots(ap, allowed_roots, f"{path.name} row {n}")
        if ap.suffix.lower() not in AUDIO_EXTS:
            log.info("%s: row %d skipped (%s is not an audio file, as the official loader)", path, n, ap.name)
            continue
        cap = r.get("caption", r.get("text", r.get("prompt", "")))
        if isinstance(cap, str) and cap.strip().startswith("{"):
            try:
                cap = json.loads(cap)
            except json.JSONDecodeError:
                pass
        video = r.get("video_path") or r.get("video") or None
        if video:
            vp = Path(str(video))
            video = _inside_roots(vp if vp.is_absolute() else base / vp, allowed_roots, f"{path.name} row {n}")
        sync = None
        sf = r.get("sync_feature")
        if sf:
            sp = Path(str(sf))
            sp = _inside_roots(sp if sp.is_absolute() else base / sp, allowed_roots, f"{path.name} row {n}")
            if sp.is_file():
                from ..weights import load_pickle
                t = load_pickle(sp, mmap=False)
                if not torch.is_tensor(t):
                    raise InputError(f"{sp}: expected a sync feature tensor [1, S, D]")
                sync = t.reshape(-1, t.shape[-1]).float()
        out.append(Example(audio=ap, caption=cap or "", video=video, sync=sync, type=str(r.get("type") or ""),
                           name=ap.stem))
    return out


class FolderDataset(ExampleSet):
    """Every audio file under ``root`` (recursively), captions as in the module docstring."""

    def __init__(self, root: Union[str, Path], manifest: Optional[Union[str, Path]] = None, *,
                 default_type: str = "", recursive: bool = True, allowed_roots=None):
        root = Path(root)
        if not root.is_dir():
            raise InputError(f"training data folder not found: {root}")
        self.root = root
        if manifest is None:
            manifest = default_manifest(root)
        by_file: Dict[Path, Example] = {}
        if manifest is not None:
            for ex in read_manifest(manifest, allowed_roots=allowed_roots):
                by_file[Path(ex.audio).resolve()] = ex
        files = sorted(p for p in (root.rglob("*") if recursive else root.iterdir())
                       if p.is_file() and p.suffix.lower() in AUDIO_EXTS)
        self.examples = []
        for f in files:
            _inside_roots(f, allowed_roots, f"training file {f.name}")  # a symlink out of the folder is refused
            ex = by_file.pop(f.resolve(), None)
            side = f.with_suffix(".txt")
            if side.is_file():
                _inside_roots(side, allowed_roots, f"caption file {side.name}")
            if ex is None:
                ex = Example(audio=f, caption=name_caption(f.stem), type=default_type, name=f.stem)
            if side.is_file():
                ex.caption = read_text_file(side, "caption file").strip()
            if ex.video is None:
                for ext in VIDEO_EXTS:
                    v = f.with_suffix(ext)
                    if v.is_file():
                        ex.video = v
                        break
            self.examples.append(ex)
        # manifest entries pointing outside the folder
        self.examples += list(by_file.values())
        if not self.examples:
            raise InputError(f"{root}: no audio files ({', '.join(AUDIO_EXTS)}) found")


# ----------------------------------------------------------------------------------------------
# Hashing
# ----------------------------------------------------------------------------------------------
def _sha(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(repr(p).encode() if not isinstance(p, bytes) else p)
        h.update(b"\x00")
    return h.hexdigest()


def content_hash(obj) -> str:
    """sha256 of a file's bytes, or of a tensor's dtype/shape/bytes."""
    if obj is None:
        return "none"
    if torch.is_tensor(obj):
        t = obj.detach().cpu().contiguous()
        return _sha(str(t.dtype), tuple(t.shape), t.reshape(-1).view(torch.uint8).numpy().tobytes())
    p = Path(obj)
    if not p.is_file():
        raise MediaError(f"file not found: {p}")
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def module_fingerprint(module: Optional[torch.nn.Module], probes: int = 4) -> str:
    """Cheap identity of a module's weights: every ``name:shape`` and ``probes`` values per tensor
    (at fixed positions, rounded to bf16 so fp32/bf16 copies agree)."""
    if module is None:
        return "none"
    h = hashlib.sha256()
    with torch.no_grad():
        for k, v in module.state_dict().items():
            h.update(f"{k}:{tuple(v.shape)}:".encode())
            if v.is_floating_point() and v.numel():
                flat = v.reshape(-1)
                idx = torch.linspace(0, flat.numel() - 1, min(probes, flat.numel())).long()
                vals = flat[idx.to(flat.device)].float().cpu().to(torch.bfloat16).view(torch.int16)
                h.update(vals.numpy().tobytes())
    return h.hexdigest()[:20]


# ----------------------------------------------------------------------------------------------
# Plan and prepared data
# ----------------------------------------------------------------------------------------------
@dataclass
class CachePlan:
    """What is precomputed (decided by what is trained, see :func:`plan_for`).

    ``text``: ``"tokens"`` (frozen T5) or ``"ids"`` (T5 trained).  ``video``: ``"output"``
    (frozen video conditioner), ``"hidden"`` (CLIP frozen, projections trained) or ``"frames"``
    (CLIP trained).  ``sync``: ``"synchformer"`` (compute with the attached Synchformer; an error
    if missing) or ``"zeros"`` (feed zeros, as the official Turbo training adapter does).
    ``grid_seconds``: crop grid of items with video / audio prompt (None: the video conditioner's
    duration).  ``resize_mode``: frame resize for CLIP (official "stretch").
    """

    text: str = "tokens"
    video: str = "output"
    sync: str = "synchformer"
    grid_seconds: Optional[float] = None
    resize_mode: str = "stretch"

    def __post_init__(self):
        if self.text not in ("tokens", "ids"):
            raise InputError(f"CachePlan.text must be 'tokens' or 'ids', got {self.text!r}")
        if self.video not in ("output", "hidden", "frames"):
            raise InputError(f"CachePlan.video must be 'output', 'hidden' or 'frames', got {self.video!r}")
        if self.sync not in ("synchformer", "zeros"):
            raise InputError(f"CachePlan.sync must be 'synchformer' or 'zeros', got {self.sync!r}")


def plan_for(trainable: Iterable[str], **kw) -> CachePlan:
    """The cheapest valid plan for a set of trained parts (:data:`~.trainer.PARTS`)."""
    tr = set(trainable)
    video = "frames" if "clip" in tr else ("hidden" if "projections" in tr else "output")
    return CachePlan(text="ids" if "t5" in tr else "tokens", video=video, **kw)


@dataclass
class Window:
    """Precomputed conditions of one crop window of an item (items with video / audio prompt)."""

    start_s: float
    latent_offset: int
    video: Optional[torch.Tensor] = None   # [128, D] | [T·q, D] | uint8 [T, 3, H, W]
    sync: Optional[torch.Tensor] = None    # [S, D]
    prompt: Optional[tuple] = None         # (mean, std) [C, Lp]  or  (mel [F, n_mels],)


@dataclass
class PreparedItem:
    name: str
    mean: torch.Tensor                      # [C, L_file]
    std: torch.Tensor                       # [C, L_file]
    captions: Union[str, dict] = ""
    text: Dict[str, torch.Tensor] = field(default_factory=dict)   # caption -> tokens [N, D] or ids [N]
    windows: List[Window] = field(default_factory=list)           # empty: crop anywhere
    has_video: bool = False
    prompt: str = "none"
    keys: List[str] = field(default_factory=list)


@dataclass
class Batch:
    """One micro-batch as the condition encoder consumes it (all on the target device)."""

    x0: torch.Tensor                        # [B, C, L]
    text: torch.Tensor                      # tokens [B, N, D] or ids [B, N] (plan.text)
    text_present: torch.Tensor              # bool [B]
    video: Optional[torch.Tensor]           # per plan.video, rows of absent items are zeros
    sync: Optional[torch.Tensor]            # [B, S, D] or None
    video_present: torch.Tensor             # bool [B]
    prompt: Optional[tuple]                 # (mean, std) [B, C, Lp] or (mel [B, F, n],) or None
    prompt_present: torch.Tensor            # bool [B]
    names: List[str] = field(default_factory=list)
    offsets: List[int] = field(default_factory=list)

    @property
    def size(self) -> int:
        return int(self.x0.shape[0])


class PreparedDataset:
    """The preprocessed items plus the shared "absent" inputs; draws random micro-batches.

    ``shared``: ``empty_text`` (tokens or ids of ""), ``silence`` (the audio-prompt VAE posterior
    of silence, v1/v2) or ``silence_mel`` (mel conditioner), ``text_mask_empty`` (ids plan).
    """

    def __init__(self, items: List[PreparedItem], plan: CachePlan, shared: Dict[str, Any], *,
                 latent_length: int, ratio: int, sample_rate: int, keys: Sequence[str] = ()):
        if not items:
            raise InputError("the prepared dataset is empty")
        self.items, self.plan, self.shared = items, plan, shared
        self.latent_length, self.ratio, self.sample_rate = int(latent_length), int(ratio), int(sample_rate)
        self.dataset_hash = _sha(CACHE_VERSION, sorted(keys))[:16] if keys else _sha([i.name for i in items])[:16]

    def __len__(self) -> int:
        return len(self.items)

    def epoch_order(self, epoch: int, seed: int) -> List[int]:
        g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
        return torch.randperm(len(self.items), generator=g).tolist()

    def batch(self, indices: Sequence[int], generator: torch.Generator, device=None, *,
              random_crop: bool = True, sample_posterior: bool = True) -> Batch:
        """Assemble items ``indices``: random window / latent offset, sampled posterior, conditions.

        All randomness comes from ``generator`` (CPU).  ``random_crop=False`` takes offset 0 and
        ``sample_posterior=False`` the posterior mean (held-out evaluation).
        """
        L = self.latent_length
        xs, texts, tp, vids, syncs, vp, prompts, pp, offs = [], [], [], [], [], [], [], [], []
        for i in indices:
            it = self.items[i]
            n = it.mean.shape[-1]
            win = None
            if it.windows:
                w = int(torch.randint(len(it.windows), (1,), generator=generator)) if random_crop else 0
                win = it.windows[w]
                off = win.latent_offset
            else:
                off = int(torch.randint(n - L + 1, (1,), generator=generator)) if random_crop else 0
            mean, std = it.mean[:, off:off + L].float(), it.std[:, off:off + L].float()
            if sample_posterior:
                eps = torch.randn(mean.shape, generator=generator)
                xs.append(mean + std * eps)
            else:
                xs.append(mean)
            offs.append(off)
            cap = caption_for(it.captions, off * self.ratio / self.sample_rate)
            if cap.strip() and cap in it.text:
                texts.append(it.text[cap])
                tp.append(True)
            else:
                texts.append(self.shared["empty_text"])
                tp.append(False)
            vids.append(win.video if win is not None and win.video is not None else None)
            syncs.append(win.sync if win is not None else None)
            vp.append(vids[-1] is not None)
            prompts.append(win.prompt if win is not None and win.prompt is not None else None)
            pp.append(prompts[-1] is not None)
        dev = torch.device(device) if device is not None else torch.device("cpu")
        x0 = torch.stack(xs).to(dev)
        text = torch.stack(texts).to(dev)
        if text.is_floating_point():
            text = text.float()
        video = _stack_optional(vids, dev)
        sync = _stack_optional(syncs, dev) if any(s is not None for s in syncs) else None
        prompt = None
        if any(pp):
            parts = len(next(p for p in prompts if p is not None))
            prompt = tuple(_stack_optional([None if p is None else p[k] for p in prompts], dev) for k in range(parts))
        tb = lambda v: torch.tensor(v, dtype=torch.bool, device=dev)  # noqa: E731
        return Batch(x0, text, tb(tp), video, sync, tb(vp), prompt, tb(pp), [self.items[i].name for i in indices], offs)


def _stack_optional(values: List[Optional[torch.Tensor]], dev) -> Optional[torch.Tensor]:
    ref = next((v for v in values if v is not None), None)
    if ref is None:
        return None
    rows = [v if v is not None else torch.zeros_like(ref) for v in values]
    out = torch.stack(rows).to(dev)
    return out.float() if out.is_floating_point() else out


# ----------------------------------------------------------------------------------------------
# Preprocessing
# ----------------------------------------------------------------------------------------------
class _Store:
    """Either a cache folder of ``<key>.safetensors`` files or a plain dict."""

    def __init__(self, cache_dir: Optional[Union[str, Path]]):
        self.dir = Path(cache_dir) if cache_dir is not None else None
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
        self.hits = self.misses = 0

    def get(self, key: str) -> Optional[tuple[dict, dict]]:
        if self.dir is None:
            return None
        p = self.dir / f"{key}.safetensors"
        if not p.is_file():
            return None
        from ..weights import SafetensorsFile
        try:
            f = SafetensorsFile(p)
            tensors = {k: f.read(k) for k in f.keys()}
        except Exception as e:  # a broken cache entry is recomputed, never trusted
            log.warning("cache entry %s is unreadable (%s); recomputing", p.name, e)
            return None
        self.hits += 1
        return tensors, json.loads(f.metadata.get("info", "{}"))

    def put(self, key: str, tensors: Dict[str, torch.Tensor], info: Optional[dict] = None) -> None:
        self.misses += 1
        if self.dir is None:
            return
        from ..weights import save_safetensors
        save_safetensors({k: v.detach().cpu().contiguous() for k, v in tensors.items()},
                         self.dir / f"{key}.safetensors", {"info": json.dumps(info or {})})


#: Longest training file encoded whole (its latents are cached, crops are drawn from them); longer
#: files are refused before decoding — split them into clips.
MAX_FILE_SECONDS = 900.0


def _model_audio(model, ex: Example) -> torch.Tensor:
    from ..conditions import prepare_audio
    from .. import media
    if torch.is_tensor(ex.audio):
        wav, sr = ex.audio.float(), int(ex.sample_rate)
    else:
        def too_long(seconds: float) -> InputError:
            return InputError(f"{ex.audio}: this training file is {seconds:.0f} s long; files of at most "
                              f"{MAX_FILE_SECONDS:.0f} s are encoded whole — split it into shorter clips")
        length = media.audio_duration(ex.audio)  # from the header: nothing decoded yet
        if length is not None and length > MAX_FILE_SECONDS:
            raise too_long(length)
        wav, sr = media.load_audio(ex.audio, duration=MAX_FILE_SECONDS + 1.0)
        if wav.shape[-1] / sr > MAX_FILE_SECONDS:
            raise too_long(wav.shape[-1] / sr)
    x, _ = prepare_audio(model, wav, sr)
    return x[0]  # [C, N]


def _frames(ex: Example, *, start: float, fps: int, duration: float, size: int, resize_mode: str) -> torch.Tensor:
    from .. import media
    if torch.is_tensor(ex.video):
        f = ex.video if ex.video.dim() == 4 else ex.video[None]
        frames, _, _ = media.frames_from_images(f[..., :3], ex.video_fps, fps=fps, start=start, duration=duration,
                                                size=size, resize_mode=resize_mode)
    else:
        frames, _, _ = media.sample_frames(ex.video, fps=fps, start=start, duration=duration, size=size,
                                           resize_mode=resize_mode)
    return frames


def _text_encoder(model):
    enc = model.text_encoder
    if enc is None:
        raise InputError("training needs the model's T5 text encoder: attach one with model.set_text_encoder(...)")
    return enc


def tokenize(enc, captions: Sequence[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Official T5 tokenisation (truncate, pad to ``max_length``): ``(ids [B, N], mask bool [B, N])``."""
    t = enc.tokenizer(list(captions), truncation=True, max_length=max_length, padding="max_length",
                      return_tensors="pt")
    return t["input_ids"], t["attention_mask"].bool()


def prepare_dataset(examples: Union[ExampleSet, Sequence[Example]], model, *, plan: Optional[CachePlan] = None,
                    cache_dir: Optional[Union[str, Path]] = None,
                    callback: Optional[ProgressCallback] = None) -> PreparedDataset:
    """Run the frozen encoders once per item (module docstring).  ``callback(i, n, {"item": name})``."""
    plan = plan or CachePlan()
    examples = list(examples)
    if not examples:
        raise InputError("no training examples")
    cfg = model.config
    store = _Store(cache_dir)
    pt = model.pretransform
    ratio, L = cfg.vae.downsampling_ratio, cfg.latent_length
    window_samples = L * ratio
    vae_fp = module_fingerprint(pt)
    vc, ac = model.video_conditioner, model.audio_conditioner
    spec = model.text_spec
    max_len = int(spec.config.get("max_length", 128)) if spec is not None else 128
    enc = _text_encoder(model) if spec is not None else None
    t5_fp = _sha(module_fingerprint(enc.model), type(enc.tokenizer).__name__) if enc is not None else "none"
    grid = plan.grid_seconds or (float(vc.duration) if vc is not None else cfg.seconds)
    keys: List[str] = []
    items: List[PreparedItem] = []

    # ---- shared "absent" inputs (T5 of "", the audio-prompt posterior of silence), cached too
    shared: Dict[str, Any] = {}
    ks = _sha("shared", CACHE_VERSION, t5_fp, max_len, plan.text, module_fingerprint(ac),
              getattr(ac, "prompt_samples", None))[:32]
    got = store.get(ks)
    if got is None:
        tensors: Dict[str, torch.Tensor] = {}
        if enc is not None:
            if plan.text == "ids":
                ids, _ = tokenize(enc, [""], max_len)
                tensors["empty_text"] = ids[0]
            else:
                with torch.no_grad():
                    tok, _ = enc.encode([""], max_length=max_len)
                tensors["empty_text"] = tok[0].to(torch.float16).cpu()
        kind = getattr(ac, "kind", "")
        if kind in ("audio_autoencoder_v1", "audio_autoencoder_v2"):
            p = ac.pretransform
            with torch.no_grad():
                mean, std = p.encode_moments(torch.zeros(1, p.io_channels, ac.prompt_samples, device=p.param_device,
                                                         dtype=p.param_dtype))
            tensors["silence_mean"] = (mean[0] / p.scale).float().cpu()
            tensors["silence_std"] = (std[0] / p.scale).float().cpu()
        elif kind == "mel_spec":
            tensors["silence_mel"] = torch.full((ac.num_tokens(), ac.n_mel_channels), 1e-5).log()
        store.put(ks, tensors)
    else:
        tensors = got[0]
    keys.append(ks)
    if "empty_text" in tensors:
        shared["empty_text"] = tensors["empty_text"]
    if "silence_mean" in tensors:
        shared["silence"] = (tensors["silence_mean"], tensors["silence_std"])
    if "silence_mel" in tensors:
        shared["silence_mel"] = tensors["silence_mel"]

    n_ex = len(examples)
    for idx, ex in enumerate(examples):
        mode = prompt_mode(ex.type)
        has_video = ex.video is not None
        # ---- latents (whole file)
        src = ex.latents if ex.latents is not None else ex.audio
        chash = content_hash(src)
        kl = _sha("latents", CACHE_VERSION, chash, vae_fp, cfg.sample_rate, cfg.audio_channels, window_samples,
                  ex.sample_rate if torch.is_tensor(ex.audio) else None)[:32]
        got = store.get(kl)
        audio_wave = None
        if got is not None:
            mean, std = got[0]["mean"], got[0]["std"]
        elif ex.latents is not None:
            if ex.latents.shape[0] != cfg.io_channels:
                raise InputError(f"example {ex.name}: latents have {ex.latents.shape[0]} channels, the model "
                                 f"uses {cfg.io_channels}")
            mean = ex.latents.float()
            if mean.shape[-1] < L:
                mean = torch.nn.functional.pad(mean, (0, L - mean.shape[-1]))
            std = torch.zeros_like(mean)
            store.put(kl, {"mean": mean, "std": std})
        else:
            audio_wave = _model_audio(model, ex)
            if audio_wave.shape[-1] < window_samples:
                audio_wave = torch.nn.functional.pad(audio_wave, (0, window_samples - audio_wave.shape[-1]))
            with torch.no_grad():
                m, s = pt.encode_moments(audio_wave[None].to(pt.param_device, pt.param_dtype), chunked=
                                         audio_wave.shape[-1] > 64 * window_samples)
            sc = float(pt.scale)  # latents are mean/scale, std/scale (official divides samples by scale)
            mean, std = (m[0] / sc).float().cpu(), (s[0] / sc).float().cpu()
            store.put(kl, {"mean": mean, "std": std}, {"name": ex.name})
        keys.append(kl)
        item = PreparedItem(ex.name, mean, std, ex.caption, has_video=has_video, prompt=mode, keys=[kl])

        # ---- text
        if enc is not None:
            caps = ex.caption.get("audio_caption", ex.caption) if isinstance(ex.caption, dict) else ex.caption
            caps = sorted({str(v) for v in caps.values()}) if isinstance(caps, dict) else [str(caps)]
            caps = [c for c in caps if c.strip()]
            if caps:
                kt = _sha("text", CACHE_VERSION, caps, t5_fp, max_len, plan.text)[:32]
                got = store.get(kt)
                if got is None:
                    if plan.text == "ids":
                        ids, _ = tokenize(enc, caps, max_len)
                        rows = {f"t{i}": ids[i] for i in range(len(caps))}
                    else:
                        with torch.no_grad():
                            tok, _ = enc.encode(caps, max_length=max_len)
                        rows = {f"t{i}": tok[i].to(torch.float16).cpu() for i in range(len(caps))}
                    store.put(kt, rows, {"captions": caps})
                else:
                    rows = got[0]
                item.text = {c: rows[f"t{i}"] for i, c in enumerate(caps)}
                keys.append(kt)

        # ---- windows (video and/or audio prompt)
        if has_video or mode != "none":
            if has_video and vc is None:
                raise InputError(f"example {ex.name}: has a video but {cfg.variant} has no video conditioner")
            if mode != "none" and ac is None:
                raise InputError(f"example {ex.name}: type {ex.type!r} needs an audio prompt but the model has none")
            n_lat = mean.shape[-1]
            step_lat = max(1, int(round(grid * cfg.sample_rate / ratio)))
            offsets = list(range(0, max(n_lat - L, 0) + 1, step_lat))
            vhash = content_hash(ex.video) if has_video else None
            vfp = {"output": lambda: module_fingerprint(vc), "frames": lambda: "",
                   "hidden": lambda: module_fingerprint(getattr(vc, "visual_encoder_model", None))}[plan.video]()
            sfp = module_fingerprint(model.synchformer) if has_video and plan.sync == "synchformer" else ""
            pfp = module_fingerprint(ac) if mode != "none" else ""
            kw = _sha("windows", CACHE_VERSION, chash, vhash, mode, plan.video, plan.sync, plan.resize_mode, grid,
                      offsets, vfp if has_video else "", sfp, pfp,
                      content_hash(ex.sync) if ex.sync is not None else None)[:32]
            got = store.get(kw)
            if got is None:
                if audio_wave is None and mode != "none" and ex.latents is None:
                    audio_wave = _model_audio(model, ex)
                    if audio_wave.shape[-1] < window_samples:
                        audio_wave = torch.nn.functional.pad(audio_wave, (0, window_samples - audio_wave.shape[-1]))
                tensors = _compute_windows(model, ex, offsets, plan, audio_wave, mode)
                store.put(kw, tensors, {"offsets": offsets})
            else:
                tensors = got[0]
            item.windows = _windows_from(tensors, offsets, ratio, cfg.sample_rate)
            keys.append(kw)
        items.append(item)
        report(callback, idx + 1, n_ex, stage="prepare", item=ex.name)
    log.info("prepared %d items (%d cache hits, %d computed)", len(items), store.hits, store.misses)
    return PreparedDataset(items, plan, shared, latent_length=L, ratio=ratio, sample_rate=cfg.sample_rate, keys=keys)


def _compute_windows(model, ex: Example, offsets: List[int], plan: CachePlan, wave: Optional[torch.Tensor],
                     mode: str) -> Dict[str, torch.Tensor]:
    cfg = model.config
    ratio = cfg.vae.downsampling_ratio
    vc, ac = model.video_conditioner, model.audio_conditioner
    out: Dict[str, torch.Tensor] = {}
    for w, off in enumerate(offsets):
        start_s = off * ratio / cfg.sample_rate
        if ex.video is not None:
            frames = _frames(ex, start=start_s, fps=vc.fps, duration=vc.duration, size=vc.image_size,
                             resize_mode=plan.resize_mode)
            sync = None
            if getattr(vc, "with_sync", False):
                sync = _sync_features(model, ex, w, start_s, plan)
            p = next(vc.parameters())
            if plan.video == "frames":
                out[f"w{w}.video"] = frames
            elif plan.video == "hidden":
                with torch.no_grad():
                    out[f"w{w}.video"] = vc.encode_frames(frames).to(torch.float16).cpu()
            else:
                with torch.no_grad():
                    s = None if sync is None else sync[None].to(p.device, p.dtype)
                    out[f"w{w}.video"] = vc(frames[None].to(p.device), s)[0].float().cpu()
            if sync is not None and plan.video != "output":
                out[f"w{w}.sync"] = sync.float()
        if mode != "none":
            n = ac.prompt_samples if hasattr(ac, "prompt_samples") else int(cfg.sample_rate * 10)
            begin = off * ratio if mode == "same" else max(off * ratio - n, 0)
            if mode == "previous" and off * ratio < n:
                begin = 0  # official: the first 10 s when the crop starts before 10 s
            if wave is None:
                raise InputError(f"example {ex.name}: audio-prompt tasks need audio, not ready latents")
            seg = wave[:, begin:begin + n]
            if seg.shape[-1] < n:
                seg = torch.nn.functional.pad(seg, (0, n - seg.shape[-1]))
            if getattr(ac, "kind", "") == "mel_spec":
                with torch.no_grad():
                    out[f"w{w}.mel"] = ac.mel(seg[None])[0].transpose(0, 1).float().cpu()
            else:
                p = ac.pretransform
                stereo = seg if seg.shape[0] == p.io_channels else seg[:1].repeat(p.io_channels, 1)
                with torch.no_grad():
                    m, s = p.encode_moments(stereo[None].to(p.param_device, p.param_dtype))
                sc = float(p.scale)
                out[f"w{w}.pmean"], out[f"w{w}.pstd"] = (m[0] / sc).float().cpu(), (s[0] / sc).float().cpu()
    return out


def _sync_features(model, ex: Example, w: int, start_s: float, plan: CachePlan) -> torch.Tensor:
    vc = model.video_conditioner
    if ex.sync is not None and w == 0:
        s = ex.sync.float()
        if tuple(s.shape) != (vc.sync_tokens, vc.dim):
            raise InputError(f"example {ex.name}: sync features are {tuple(s.shape)}, the model needs "
                             f"[{vc.sync_tokens}, {vc.dim}]")
        return s
    if plan.sync == "zeros":
        return torch.zeros(vc.sync_tokens, vc.dim)
    sf = model.synchformer
    if sf is None:
        raise InputError(f"example {ex.name}: {model.config.variant} conditions on Synchformer sync features "
                         "and no Synchformer is attached (model.set_synchformer) — or prepare with "
                         "CachePlan(sync='zeros') to feed zeros as the official Turbo training adapter does")
    from ..conditions import VisualInput, encode_sync
    vis = VisualInput(frames=ex.video, fps=ex.video_fps) if torch.is_tensor(ex.video) else VisualInput(source=ex.video)
    feats, _ = encode_sync(sf, vis, start=start_s, duration=vc.duration, tokens=vc.sync_tokens)
    return feats[0]


def _windows_from(tensors: Dict[str, torch.Tensor], offsets: List[int], ratio: int, sr: int) -> List[Window]:
    wins = []
    for w, off in enumerate(offsets):
        prompt = None
        if f"w{w}.pmean" in tensors:
            prompt = (tensors[f"w{w}.pmean"], tensors[f"w{w}.pstd"])
        elif f"w{w}.mel" in tensors:
            prompt = (tensors[f"w{w}.mel"],)
        wins.append(Window(off * ratio / sr, off, tensors.get(f"w{w}.video"), tensors.get(f"w{w}.sync"), prompt))
    return wins
