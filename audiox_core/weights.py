"""Weight files: safe reading, streaming, atomic writing, readable mismatch summaries.

Formats:

* ``.safetensors`` — read by a small streaming reader (:class:`SafetensorsFile`) that copies each
  tensor straight from the file into a tensor of the *target* dtype/device, one tensor at a time.
  Nothing is memory-mapped, so peak memory is the model plus one tensor, not model + file.
* ``.ckpt`` / ``.pth`` / ``.pt`` / ``.bin`` (torch pickles) — only through
  ``torch.load(weights_only=True)``: a pickle that would run code is refused, never executed.

All failures raise :class:`~audiox_core.errors.CheckpointError` naming the file.
"""
from __future__ import annotations

import json
import logging
import os
import pickle
import struct
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Optional

import torch

from .errors import CheckpointError

log = logging.getLogger(__name__)

PICKLE_SUFFIXES = (".ckpt", ".pth", ".pt", ".bin")
SAFETENSORS_SUFFIXES = (".safetensors", ".sft")

_ST_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool, "F8_E4M3": getattr(torch, "float8_e4m3fn", None),
    "F8_E5M2": getattr(torch, "float8_e5m2", None),
}
_ST_NAMES = {v: k for k, v in _ST_DTYPES.items() if v is not None}

#: Metadata entry of an unfinished result (training stopped early): "step k of n".
PARTIAL_KEY = "audiox_partial"


def folder_weights(folder: Path, names: Iterable[str]) -> tuple[Optional[Path], Optional[dict]]:
    """A Hugging Face model folder's weights file (the first of ``names`` present; None if none is)
    and its parsed ``config.json`` (None when absent).  An unreadable ``config.json`` raises
    :class:`CheckpointError`."""
    cfg = None
    if (folder / "config.json").is_file():
        try:
            cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{folder / 'config.json'}: unreadable ({e})") from None
    for name in names:
        if (folder / name).is_file():
            return folder / name, cfg
    return None, cfg


def shape_str(shape) -> str:
    """Manifest spelling of a shape: ``1536x256``; ``scalar`` for a 0-d tensor."""
    return "x".join(str(int(s)) for s in shape) if len(shape) else "scalar"


# ----------------------------------------------------------------------------------------------
# safetensors, streamed
# ----------------------------------------------------------------------------------------------
@dataclass
class TensorInfo:
    dtype: torch.dtype
    shape: tuple
    start: int  # absolute file offset
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start


class SafetensorsFile:
    """Header-parsed ``.safetensors`` file whose tensors are read one at a time.

    >>> f = SafetensorsFile(path); f.keys(); f.metadata; f.read("k", dtype=torch.bfloat16)
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        size = _check_file(self.path)
        with open(self.path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{self.path}: truncated safetensors file (no header)")
            (n,) = struct.unpack("<Q", head)
            if n <= 1 or n > min(size - 8, 100 * 2**20):
                raise CheckpointError(f"{self.path}: not a safetensors file (header length {n} is impossible "
                                      f"for a {size}-byte file)")
            raw = fh.read(n)
        try:
            header = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise CheckpointError(f"{self.path}: corrupt safetensors header") from None
        if not isinstance(header, dict):
            raise CheckpointError(f"{self.path}: corrupt safetensors header (not a JSON object)")
        meta = header.pop("__metadata__", None) or {}
        if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
            raise CheckpointError(f"{self.path}: corrupt safetensors header (__metadata__ must map text to text)")
        self.metadata: dict = meta
        base = 8 + n
        self.data_start = base
        self.tensors: "OrderedDict[str, TensorInfo]" = OrderedDict()
        for k, v in header.items():
            info = self._entry(k, v, base, size)
            self.tensors[k] = info

    def _entry(self, k: str, v, base: int, size: int) -> "TensorInfo":
        """One header entry checked: dtype, shape, byte range inside the file and matching the shape."""
        if not isinstance(v, dict):
            raise CheckpointError(f"{self.path}: corrupt safetensors header (entry {k!r} is not an object)")
        dt = _ST_DTYPES.get(v.get("dtype")) if isinstance(v.get("dtype"), str) else None
        if dt is None:
            raise CheckpointError(f"{self.path}: tensor {k!r} has unsupported dtype {v.get('dtype')!r}")
        shape, offs = v.get("shape"), v.get("data_offsets")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                  for d in shape):
            raise CheckpointError(f"{self.path}: tensor {k!r} has an invalid shape {shape!r}")
        if (not isinstance(offs, list) or len(offs) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offs) or not 0 <= offs[0] <= offs[1]):
            raise CheckpointError(f"{self.path}: tensor {k!r} has invalid data_offsets {offs!r}")
        info = TensorInfo(dt, tuple(shape), base + offs[0], base + offs[1])
        numel = 1
        for d in info.shape:
            numel *= d
        if info.nbytes != numel * torch.empty((), dtype=dt).element_size():
            raise CheckpointError(f"{self.path}: tensor {k!r} byte range does not match its shape")
        if info.end > size:
            raise CheckpointError(f"{self.path}: file is truncated (tensor {k!r} ends at byte {info.end}, "
                                  f"file has {size} bytes)")
        return info

    def keys(self) -> list[str]:
        return list(self.tensors)

    def shapes(self) -> "OrderedDict[str, tuple]":
        return OrderedDict((k, v.shape) for k, v in self.tensors.items())

    def read(self, key: str, *, dtype: Optional[torch.dtype] = None, device="cpu",
             out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Read one tensor, converted to ``dtype`` on ``device`` (or into ``out``)."""
        info = self.tensors[key]
        dtype = dtype or info.dtype
        with open(self.path, "rb", buffering=0) as fh:
            return _read_into(fh, info, dtype, device, out)

    def iter(self, keys: Optional[Iterable[str]] = None, *, dtype_fn: Callable[[str, torch.dtype], torch.dtype] = None,
             device="cpu") -> Iterator[tuple[str, torch.Tensor]]:
        """Yield ``(key, tensor)`` one at a time, keeping one file handle open."""
        with open(self.path, "rb", buffering=0) as fh:
            for k in (keys if keys is not None else self.tensors):
                info = self.tensors[k]
                dt = dtype_fn(k, info.dtype) if dtype_fn else info.dtype
                yield k, _read_into(fh, info, dt, device, None)


def _read_into(fh, info: TensorInfo, dtype, device, out) -> torch.Tensor:
    fh.seek(info.start)
    same = dtype == info.dtype and str(device) == "cpu" and out is None
    raw = torch.empty(info.shape, dtype=info.dtype) if not same else torch.empty(info.shape, dtype=dtype)
    if info.nbytes:
        buf = raw.reshape(-1).view(torch.uint8).numpy()
        got = fh.readinto(memoryview(buf))
        if got != info.nbytes:
            raise CheckpointError(f"{getattr(fh, 'name', '?')}: truncated while reading a tensor")
    if same:
        return raw
    if out is not None:
        out.copy_(raw)
        return out
    return raw.to(device=device, dtype=dtype)


def save_safetensors(tensors: Mapping[str, torch.Tensor], path: str | os.PathLike,
                     metadata: Optional[Mapping[str, str]] = None) -> None:
    """Write a ``.safetensors`` file atomically (temp file + rename), streaming tensor by tensor."""
    path = Path(path)
    header, offset, items = {}, 0, []
    for k, t in tensors.items():
        if t.device.type == "meta":
            raise CheckpointError(f"cannot save {k!r}: it is a meta tensor (weights were never loaded)")
        name = _ST_NAMES.get(t.dtype)
        if name is None:
            raise CheckpointError(f"cannot save {k!r}: dtype {t.dtype} is not representable in safetensors")
        n = t.numel() * t.element_size()
        header[k] = {"dtype": name, "shape": list(t.shape), "data_offsets": [offset, offset + n]}
        items.append((t, n))
        offset += n
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * ((8 - len(hb) % 8) % 8)
    from .fileio import atomic_write
    with atomic_write(path, what="weights file") as fh:
        fh.write(struct.pack("<Q", len(hb)))
        fh.write(hb)
        for t, n in items:
            if n:
                c = t.detach().to("cpu").contiguous()
                fh.write(memoryview(c.reshape(-1).view(torch.uint8).numpy()))


def copy_safetensors(src: str | os.PathLike, dst: str | os.PathLike, metadata: Optional[Mapping[str, str]] = None,
                     *, drop: Iterable[str] = ()) -> None:
    """Copy a ``.safetensors`` file atomically, adding ``metadata`` entries and removing ``drop`` ones.

    The tensor bytes are streamed unchanged; only the header is rewritten."""
    f = SafetensorsFile(src)
    md = {k: v for k, v in f.metadata.items() if k not in set(drop)}
    md.update({str(k): str(v) for k, v in (metadata or {}).items()})
    header = {k: {"dtype": _ST_NAMES[i.dtype], "shape": list(i.shape),
                  "data_offsets": [i.start - f.data_start, i.end - f.data_start]} for k, i in f.tensors.items()}
    if md:
        header["__metadata__"] = md
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * ((8 - len(hb) % 8) % 8)
    from .fileio import atomic_write
    with open(f.path, "rb") as fin, atomic_write(dst, what="weights file") as fout:
        fout.write(struct.pack("<Q", len(hb)))
        fout.write(hb)
        fin.seek(f.data_start)
        while True:
            chunk = fin.read(1 << 20)
            if not chunk:
                break
            fout.write(chunk)


# ----------------------------------------------------------------------------------------------
# torch pickles, weights_only
# ----------------------------------------------------------------------------------------------
def _benign_globals() -> list:
    """Plain-data classes that Lightning checkpoints carry next to the weights.

    Their constructors run no user code; allowing them lets ``weights_only=True`` read such
    checkpoints.  Anything else that needs code to unpickle is refused.
    """
    import argparse
    import collections
    import pathlib
    out = [pathlib.PosixPath, pathlib.PurePosixPath, pathlib.WindowsPath, pathlib.PureWindowsPath,
           argparse.Namespace, collections.defaultdict, collections.OrderedDict]
    try:
        import numpy as np
        out += [np.dtype, np.ndarray]
        for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
            try:
                m = __import__(mod, fromlist=["scalar", "_reconstruct"])
                out += [m.scalar, m._reconstruct]
            except (ImportError, AttributeError):
                pass
        out += [type(np.dtype("float32")), type(np.dtype("float64")), type(np.dtype("int64"))]
    except ImportError:  # pragma: no cover
        pass
    return out


def load_pickle(path: str | os.PathLike, *, mmap: bool = True) -> object:
    """``torch.load(weights_only=True)`` with readable errors.  Tensors land on the CPU."""
    path = Path(path)
    _check_file(path)
    try:
        with torch.serialization.safe_globals(_benign_globals()):
            try:
                return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
            except RuntimeError as e:
                if mmap and "mmap can only be used" in str(e):  # legacy (non-zip) format
                    return torch.load(path, map_location="cpu", weights_only=True)
                raise
    except pickle.UnpicklingError as e:
        msg = str(e)
        hint = ""
        if "GLOBAL" in msg or "global" in msg:
            import re
            m = re.search(r"GLOBAL ([\w\.]+)", msg)
            hint = f" (it references {m.group(1)})" if m else ""
        raise CheckpointError(
            f"{path}: refused to load: the pickle contains Python objects that would need code to be run "
            f"to unpickle{hint}. Only tensors and plain data are accepted (torch.load weights_only=True). "
            f"If you trust the file, convert it to .safetensors with the official tools first."
        ) from None
    except (EOFError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({type(e).__name__})") from None
    except RuntimeError as e:
        s = str(e)
        if "central directory" in s or "PytorchStreamReader" in s or "zip archive" in s:
            raise CheckpointError(f"{path}: truncated or corrupt checkpoint (the zip archive inside is incomplete)") from None
        raise CheckpointError(f"{path}: cannot read checkpoint: {s.splitlines()[0][:300]}") from None
    except (ValueError, struct.error, OSError) as e:
        raise CheckpointError(f"{path}: cannot read checkpoint: {str(e)[:300]}") from None
    except (IndexError, KeyError, TypeError, AttributeError, AssertionError, MemoryError, OverflowError,
            RecursionError, NotImplementedError) as e:
        # torch's weights-only unpickler fails with these on damaged archives and junk pickles
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({type(e).__name__}: {str(e)[:200]})") \
            from None


def _check_file(path: Path) -> int:
    if not path.exists():
        raise CheckpointError(f"{path}: file not found")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, expected a weights file")
    try:
        size = path.stat().st_size
        with open(path, "rb"):
            pass
    except OSError as e:
        raise CheckpointError(f"{path}: cannot be read ({e.strerror or e})") from None
    if size == 0:
        raise CheckpointError(f"{path}: file is empty (0 bytes) — an interrupted download?")
    return size


# ----------------------------------------------------------------------------------------------
# Uniform access: a "weight source" for either format
# ----------------------------------------------------------------------------------------------
class WeightSource:
    """Key→shape listing plus one-tensor-at-a-time reads, for either file format.

    ``prefix`` selects a sub-tree (e.g. ``"student."``) and strips it from the keys.
    """

    def __init__(self, path: str | os.PathLike, *, prefix: str = "", _parent: "WeightSource" = None):
        self.path = Path(path)
        self.prefix = prefix
        if _parent is not None:
            self._st, self._sd, self.metadata, self.container = _parent._st, _parent._sd, _parent.metadata, _parent.container
        else:
            suf = self.path.suffix.lower()
            self._st = self._sd = None
            self.container: dict = {}
            if suf in SAFETENSORS_SUFFIXES:
                self._st = SafetensorsFile(self.path)
                self.metadata = dict(self._st.metadata)
            elif suf in PICKLE_SUFFIXES:
                obj = load_pickle(self.path)
                self._sd, self.container = unwrap_state_dict(obj, self.path)
                self.metadata = {}
            else:
                _check_file(self.path)
                raise CheckpointError(f"{self.path}: unknown weights format {suf!r} "
                                      f"(expected .safetensors, .ckpt, .pth, .pt or .bin)")
        self._keys = [k[len(prefix):] for k in self._all_keys() if k.startswith(prefix)]

    def _all_keys(self) -> list[str]:
        return self._st.keys() if self._st is not None else list(self._sd)

    def sub(self, prefix: str) -> "WeightSource":
        return WeightSource(self.path, prefix=self.prefix + prefix, _parent=self)

    def keys(self) -> list[str]:
        return list(self._keys)

    def __contains__(self, key: str) -> bool:
        return (self.prefix + key) in (self._st.tensors if self._st is not None else self._sd)

    def shape(self, key: str) -> tuple:
        k = self.prefix + key
        return self._st.tensors[k].shape if self._st is not None else tuple(self._sd[k].shape)

    def dtype(self, key: str) -> torch.dtype:
        k = self.prefix + key
        return self._st.tensors[k].dtype if self._st is not None else self._sd[k].dtype

    def shapes(self) -> "OrderedDict[str, tuple]":
        return OrderedDict((k, self.shape(k)) for k in self._keys)

    def read(self, key: str, *, dtype: Optional[torch.dtype] = None, device="cpu") -> torch.Tensor:
        k = self.prefix + key
        if self._st is not None:
            return self._st.read(k, dtype=dtype, device=device)
        t = self._sd[k]
        return t.to(device=device, dtype=dtype or t.dtype, copy=True)

    def nbytes(self) -> int:
        if self._st is not None:
            return sum(self._st.tensors[self.prefix + k].nbytes for k in self._keys)
        return sum(self._sd[self.prefix + k].numel() * self._sd[self.prefix + k].element_size() for k in self._keys)

    def state_dict(self, *, dtype=None, device="cpu") -> "OrderedDict[str, torch.Tensor]":
        return OrderedDict((k, self.read(k, dtype=dtype, device=device)) for k in self._keys)


def unwrap_state_dict(obj, path) -> tuple["OrderedDict[str, torch.Tensor]", dict]:
    """Find the flat tensor dict inside a checkpoint object.

    Accepts a flat dict of tensors, or a dict holding one under ``state_dict`` / ``model`` /
    ``student`` / ``student_state_dict`` / ``module`` (Lightning and official Turbo layouts).
    Returns ``(flat_state_dict, container_without_tensors)``.
    """
    if isinstance(obj, torch.Tensor):
        raise CheckpointError(f"{path}: the file holds a single tensor {tuple(obj.shape)}, not a model "
                              f"(Synchformer feature files [1,240,768] look like this)")
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return OrderedDict(obj), {}
    for key in ("state_dict", "model", "student", "student_state_dict", "module"):
        inner = obj.get(key)
        if isinstance(inner, Mapping) and inner and any(isinstance(v, torch.Tensor) for v in inner.values()):
            flat = OrderedDict((k, v) for k, v in inner.items() if isinstance(v, torch.Tensor))
            rest = {k: v for k, v in obj.items() if k != key and not isinstance(v, torch.Tensor)}
            if key == "student" or key == "student_state_dict":
                flat = OrderedDict(("student." + k, v) for k, v in flat.items())
            return flat, rest
    tensors = OrderedDict((k, v) for k, v in obj.items() if isinstance(v, torch.Tensor))
    if tensors:
        return tensors, {k: v for k, v in obj.items() if not isinstance(v, torch.Tensor)}
    raise CheckpointError(f"{path}: no tensors found (top-level keys: {', '.join(list(map(str, obj))[:8])})")


# ----------------------------------------------------------------------------------------------
# Loading into modules, with readable summaries
# ----------------------------------------------------------------------------------------------
@dataclass
class KeyReport:
    missing: list = field(default_factory=list)
    unexpected: list = field(default_factory=list)
    mismatched: list = field(default_factory=list)  # (key, expected_shape, found_shape)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self, limit: int = 6) -> str:
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing key(s): " + _group(self.missing, limit))
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected key(s): " + _group(self.unexpected, limit))
        if self.mismatched:
            items = [f"{k} (model {shape_str(a)}, file {shape_str(b)})" for k, a, b in self.mismatched[:limit]]
            more = f", … {len(self.mismatched) - limit} more" if len(self.mismatched) > limit else ""
            parts.append(f"{len(self.mismatched)} key(s) with another shape: " + "; ".join(items) + more)
        return "\n  ".join(parts) if parts else "all keys match"


def _group(keys: list, limit: int) -> str:
    """Summarise many keys by common prefixes with layer numbers collapsed:
    ``maf_block.fusion_transformer.layers.N.* (96)``; a group of one shows the key itself."""
    groups: "OrderedDict[str, list]" = OrderedDict()
    for k in keys:
        parts = k.split(".")
        g = ".".join("N" if p.isdigit() else p for p in parts[:4]) + (".*" if len(parts) > 4 else "")
        groups.setdefault(g, []).append(k)
    items = [f"{g} ({len(v)})" if len(v) > 1 else v[0] for g, v in groups.items()]
    s = ", ".join(items[:limit])
    return s + (f", … {len(items) - limit} more groups" if len(items) > limit else "")


def compare_keys(expected: Mapping[str, tuple], found: Mapping[str, tuple],
                 ignore_unexpected: Callable[[str], bool] = lambda k: False) -> KeyReport:
    r = KeyReport()
    for k, s in expected.items():
        if k not in found:
            r.missing.append(k)
        elif tuple(found[k]) != tuple(s):
            r.mismatched.append((k, tuple(s), tuple(found[k])))
    for k in found:
        if k not in expected and not ignore_unexpected(k):
            r.unexpected.append(k)
    return r


def expected_tensors(module: torch.nn.Module) -> "OrderedDict[str, tuple]":
    """Keys and shapes of ``module.state_dict()`` without materialising anything."""
    return OrderedDict((k, tuple(v.shape)) for k, v in module.state_dict(keep_vars=True).items())


def check_finite(t: torch.Tensor, path, key: str) -> None:
    """:class:`CheckpointError` naming ``path`` and ``key`` if ``t`` holds NaN or infinite values."""
    from .finite import all_finite, count_nonfinite
    if t.is_floating_point() and t.numel() and not all_finite(t):
        bad = count_nonfinite(t)
        raise CheckpointError(f"{path}: tensor {key!r} holds {bad} NaN/infinite value(s) (of {t.numel()}) — the "
                              "file is damaged, or training diverged before it was saved (or its values overflow "
                              "the chosen dtype); use another file")


def load_into(module: torch.nn.Module, source: WeightSource, *, device="cpu",
              ignore_unexpected: Callable[[str], bool] = lambda k: False,
              allow_missing: Callable[[str], bool] = lambda k: False, what: str = "model") -> KeyReport:
    """Strictly load ``source`` into ``module`` (typically built on the meta device), tensor by tensor.

    Every floating-point parameter/buffer is replaced by a tensor read straight from the file in
    the dtype the module already has (build the meta model in the dtypes you want), on ``device``;
    integer tensors keep the file's dtype.  No full-precision copy of the model ever exists.
    Raises CheckpointError listing missing / unexpected / mis-shaped keys unless they are allowed
    by the two predicates.
    """
    expected = expected_tensors(module)
    report = compare_keys(expected, source.shapes(), ignore_unexpected)
    report.missing = [k for k in report.missing if not allow_missing(k)]
    if not report.ok:
        raise CheckpointError(f"{source.path}: does not match the {what}:\n  {report.summary()}")
    for key in expected:
        if key not in source:
            continue
        mod_name, _, attr = key.rpartition(".")
        owner = module.get_submodule(mod_name) if mod_name else module
        cur = getattr(owner, attr)
        file_dt = source.dtype(key)
        if cur.is_floating_point() and not file_dt.is_floating_point:
            raise CheckpointError(f"{source.path}: tensor {source.prefix + key!r} is stored as {file_dt} but the "
                                  f"{what} needs floating-point weights there — the file is damaged or was written "
                                  "by a tool that quantised it; use the original file")
        dt = cur.dtype if cur.is_floating_point() else file_dt
        t = source.read(key, dtype=dt, device=device)
        if isinstance(cur, torch.nn.Parameter):
            check_finite(t, source.path, source.prefix + key)
        if isinstance(cur, torch.nn.Parameter):
            setattr(owner, attr, torch.nn.Parameter(t, requires_grad=cur.requires_grad))
        else:
            owner._buffers[attr] = t
    return report
