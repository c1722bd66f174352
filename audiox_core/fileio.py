"""Safe file access shared by the library, the CLI and the nodes.

* :func:`resolve_inside` — the one place that turns a user-given file or folder name into a path
  inside its allowed folder(s).  Symlinks are followed before the check, so a link inside
  ``models/`` that points at ``/etc`` is refused like ``../../etc/passwd`` or an absolute path.
* :func:`atomic_write` — write a file under a temporary name in the same folder, fsync, rename
  over the final name.  The file gets the usual permissions (``0666 & ~umask``, e.g. 0644), an
  ``OSError`` (disk full, read-only folder ...) becomes :class:`~.errors.SaveError` naming the
  file, and the temporary file is removed on every failure path (also Ctrl-C).
* :class:`WriterLock` — one writer per output: a second run that wants to write the same file
  while the first is still running is refused instead of silently overwriting it.
"""
from __future__ import annotations

import contextlib
import errno
import os
import tempfile
import threading
from pathlib import Path
from typing import IO, Iterable, Iterator, Optional, Union

from .errors import OutputBusyError, PathError, SaveError

PathLike = Union[str, "os.PathLike[str]"]


# ----------------------------------------------------------------------------------------------
# Names inside folders
# ----------------------------------------------------------------------------------------------
def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def check_name(name, what: str) -> str:
    """``name`` as a clean string, or :class:`PathError` (not a string, empty, NUL or control chars)."""
    if isinstance(name, os.PathLike):
        name = os.fspath(name)
    if not isinstance(name, str):
        raise PathError(f"{what}: expected a file name, got {type(name).__name__}")
    s = name.strip()
    if not s:
        raise PathError(f"{what}: the name is empty")
    if any(ord(ch) < 32 or ch == "\x7f" for ch in s):
        raise PathError(f"{what}: {name!r} contains control characters")
    return s


def resolve_inside(name, roots: Iterable[PathLike], *, what: str, must_exist: bool = True,
                   kind: str = "any") -> Optional[Path]:
    """The path ``name`` stands for inside one of ``roots``, with symlinks resolved.

    ``name`` is relative to each root in turn (the first root where it exists wins) or absolute
    (then it must lie inside one of them).  Refused with :class:`PathError` naming ``what`` and the
    allowed folders: names that leave their root lexically (``..``), absolute paths elsewhere, and
    names whose resolved target (symlinks followed) lies outside every root.  ``kind``: ``"file"``,
    ``"dir"`` or ``"any"``.  Returns None when ``must_exist`` and the name exists in no root;
    with ``must_exist=False`` the first root's candidate is returned (for files to be written).
    """
    s = check_name(name, what)
    roots_l = [Path(os.path.abspath(os.path.expanduser(os.fspath(r)))) for r in roots]
    if not roots_l:
        raise PathError(f"{what}: no folder is configured to look for {s!r} in")
    allowed = ", ".join(str(r) for r in roots_l)
    p = Path(os.path.expanduser(s))
    escaped: Optional[Path] = None
    first: Optional[Path] = None
    for root in roots_l:
        lexical = Path(os.path.normpath(p if p.is_absolute() else root / p))
        if not _inside(lexical, root):
            continue
        resolved = lexical.resolve()
        if not _inside(resolved, root.resolve()):
            if lexical.exists() or lexical.is_symlink():
                escaped = resolved
            continue
        if first is None:
            first = resolved
        if resolved.exists() and (kind == "any" or (kind == "file" and resolved.is_file())
                                  or (kind == "dir" and resolved.is_dir())):
            return resolved
    if escaped is not None:
        raise PathError(f"{what}: {s!r} leads to {escaped}, outside the allowed folder(s) ({allowed}) — a "
                        "symlink pointing elsewhere is refused; put the file itself there, or add its folder "
                        "to ComfyUI's extra_model_paths.yaml")
    if first is None:
        raise PathError(f"{what}: {s!r} is outside the allowed folder(s) ({allowed}); give a name inside "
                        "them (no '..', no absolute path elsewhere)")
    return None if must_exist else first


# ----------------------------------------------------------------------------------------------
# Atomic writes
# ----------------------------------------------------------------------------------------------
def _umask() -> int:
    try:  # Linux: read it without changing it
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    # elsewhere os.umask can only be read by setting it
    with _UMASK_LOCK:
        m = os.umask(0o022)
        os.umask(m)
    return m


_UMASK_LOCK = threading.Lock()


def _describe_oserror(e: OSError) -> str:
    if e.errno == errno.ENOSPC:
        return "the disk is full — free some space and run again"
    if e.errno == errno.EDQUOT:
        return "the disk quota is exceeded — free some space and run again"
    if e.errno in (errno.EACCES, errno.EPERM):
        return "no permission to write there — choose another folder or fix its permissions"
    if e.errno == errno.EROFS:
        return "the folder is on a read-only file system"
    if e.errno == errno.ENOENT:
        return "its folder does not exist"
    return f"{e.strerror or e}"


def save_error(path: PathLike, e: OSError, what: str = "file") -> SaveError:
    """A :class:`SaveError` saying why ``path`` could not be written."""
    err = SaveError(f"could not write the {what} {os.fspath(path)}: {_describe_oserror(e)}")
    err.errno = e.errno
    return err


@contextlib.contextmanager
def _replacing(path: Path, tmp: str, what: str) -> Iterator[None]:
    """Rename the temporary file ``tmp`` over ``path`` (with the permissions a normally created
    file would have) when the block succeeds; remove it when anything fails.  ``OSError`` becomes
    :class:`SaveError` naming ``path``."""
    done = False
    try:
        yield
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
        done = True
    except OSError as e:
        if isinstance(e, SaveError):
            raise
        raise save_error(path, e, what) from None
    finally:
        if not done:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


@contextlib.contextmanager
def atomic_write(path: PathLike, *, what: str = "file", make_dirs: bool = True) -> Iterator[IO[bytes]]:
    """``with atomic_write(p) as fh: fh.write(...)`` — ``p`` appears complete or not at all.

    The data goes to a temporary file beside ``p`` that is fsync'ed, given the permissions a
    normally created file would have, and renamed over ``p``.  On any failure (an exception in the
    block included) the temporary file is removed; ``OSError`` becomes :class:`SaveError`."""
    path = Path(path)
    try:
        if make_dirs:
            path.parent.mkdir(parents=True, exist_ok=True)
        elif not path.parent.is_dir():
            raise SaveError(f"could not write the {what} {path}: the folder {path.parent} does not exist")
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise save_error(path, e, what) from None
    with _replacing(path, tmp, what), os.fdopen(fd, "wb") as fh:
        yield fh
        fh.flush()
        os.fsync(fh.fileno())


@contextlib.contextmanager
def atomic_path(path: PathLike, *, what: str = "file") -> Iterator[Path]:
    """Like :func:`atomic_write` for writers that need a file name (PyAV): yields a temporary path
    beside ``path`` with the same extension; renamed over ``path`` when the block succeeds, removed
    when it fails."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
        os.close(fd)
    except OSError as e:
        raise save_error(path, e, what) from None
    with _replacing(path, tmp, what):
        yield Path(tmp)


def atomic_copy(src: PathLike, dst: PathLike, *, what: str = "file") -> Path:
    """Copy ``src`` to ``dst`` with :func:`atomic_write` (a reader never sees half a file)."""
    dst = Path(dst)
    try:
        fin = open(src, "rb")
    except OSError as e:
        raise save_error(src, e, what) from None
    with fin, atomic_write(dst, what=what) as fout:
        while True:
            chunk = fin.read(1 << 20)
            if not chunk:
                break
            fout.write(chunk)
    return dst


# ----------------------------------------------------------------------------------------------
# One writer per output
# ----------------------------------------------------------------------------------------------
_HELD: set = set()
_HELD_LOCK = threading.Lock()


def _os_lock(fd: int) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


class WriterLock:
    """Exclusive claim on ``target`` (an output file) while a run writes it.

    Held in this process (a set of claimed paths) and across processes (an OS lock on
    ``<lock_dir>/<name>.lock``, released by the OS if the process dies).  A second claim raises
    :class:`OutputBusyError` naming the output; the lock file is removed on release."""

    def __init__(self, target: PathLike, lock_path: PathLike, *, what: str = "output"):
        self.target = Path(target)
        self.lock_path = Path(lock_path)
        self.what = what
        self._fd: Optional[int] = None
        self._key = str(self.target.resolve())

    def _busy(self) -> OutputBusyError:
        return OutputBusyError(f"{self.what} {self.target} is being written by another run right now; wait for "
                               "it to finish or choose another name")

    def acquire(self) -> "WriterLock":
        with _HELD_LOCK:
            if self._key in _HELD:
                raise self._busy()
            _HELD.add(self._key)
        try:
            self.lock_path.parent.mkdir(parents=True, exist_ok=True)
            for _ in range(5):
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
                if not _os_lock(fd):
                    os.close(fd)
                    raise self._busy()
                try:  # the file we locked is still the one at lock_path (not unlinked by a releaser)
                    same = os.path.samestat(os.fstat(fd), os.stat(self.lock_path))
                except OSError:
                    same = False
                if same:
                    self._fd = fd
                    return self
                os.close(fd)
            raise self._busy()
        except OutputBusyError:
            self._forget()
            raise
        except OSError as e:
            self._forget()
            raise save_error(self.lock_path, e, "lock file") from None

    def _forget(self) -> None:
        with _HELD_LOCK:
            _HELD.discard(self._key)

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.lock_path)
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
            self._forget()

    def __enter__(self) -> "WriterLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
