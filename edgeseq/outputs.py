"""The one output writer: every file edgeseq writes for the user (JSON, plots, JSON lines, raw
recordings) goes through here.

Decisions, once:
- a target is checked *before* the work that fills it (``check_target``), so an hour of
  cross-validation never ends in "cannot write";
- only a regular file or a path that does not exist yet is a target: a directory, a device such
  as ``/dev/full``, a FIFO or a socket is refused, so nothing edgeseq did not write is replaced;
- whole files are written to a temporary file beside the target and renamed over it, so a full
  disk leaves the previous file intact rather than half a file;
- JSON is strict (``allow_nan=False``): a NaN reaching an output is a bug that fails loudly, not a
  bare ``NaN`` token that no JSON reader accepts;
- every ``OSError`` becomes one line naming the path and the reason.
Device-side: standard library only.
"""

from __future__ import annotations

import io
import json
import os
import stat
import tempfile
from pathlib import Path

from .errors import EdgeseqError


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def check_target(path, what: str = "output") -> Path:
    """``path`` resolved, when a file can be written there: its directory exists or can be made,
    is writable, and ``path`` is absent or a regular file. One line otherwise; nothing is created."""
    p = Path(path)
    if str(path) in ("", "-"):
        raise EdgeseqError(f"{what}: give a file name, not {str(path)!r}")
    if str(path).endswith(os.sep):  # "out/" names a directory; Path() would drop the slash
        raise EdgeseqError(f"{what} {path} names a directory: give a file path")
    try:
        st = os.stat(p)
    except FileNotFoundError:
        st = None
    except NotADirectoryError:
        raise EdgeseqError(f"{what} {p}: a part of that path is a regular file, not a directory") from None
    except OSError as exc:
        raise EdgeseqError(f"{what} {p}: {_reason(exc)}") from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise EdgeseqError(f"{what} {p} is {kind}: give a file path")
    check_parent(p, what)
    if st is not None and not os.access(p, os.W_OK):
        raise EdgeseqError(f"{what} {p}: permission denied")
    return p.resolve()


def check_parent(path, what: str) -> None:
    """The directory ``path`` would go in can be made and written, with no side effect: its nearest
    existing ancestor is a writable directory (the missing ones are made only when writing)."""
    p = Path(path)
    ancestor = p.resolve().parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise EdgeseqError(f"{what} {p}: {ancestor} is a regular file, not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise EdgeseqError(f"{what} {p}: permission denied")


def write_bytes(path, data: bytes, what: str = "output") -> Path:
    """Write ``data`` to ``path`` whole or not at all (temporary file, fsync, rename)."""
    p = check_target(path, what)
    fd, tmp = None, None
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
        with os.fdopen(fd, "wb") as f:
            fd = None
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if p.exists():
            os.chmod(tmp, stat.S_IMODE(os.stat(p).st_mode))
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, p)
        tmp = None
    except OSError as exc:
        raise EdgeseqError(f"cannot write {what} {p}: {_reason(exc)}") from None
    finally:
        if fd is not None:
            os.close(fd)
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return p


def write_text(path, text: str, what: str = "output") -> Path:
    return write_bytes(path, text.encode("utf-8"), what)


def dumps(obj, indent: int | None = None) -> str:
    """Strict JSON: a NaN or infinity raises ``ValueError`` (a bug upstream), never a bare ``NaN``."""
    return json.dumps(obj, indent=indent, allow_nan=False)


def write_json(path, obj, what: str = "JSON output", indent: int | None = 2) -> Path:
    return write_text(path, dumps(obj, indent) + "\n", what)


def save_figure(fig, path, what: str = "plot", **kwargs) -> Path:
    """A matplotlib figure rendered in memory, then written like any other file."""
    buf = io.BytesIO()
    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    fig.savefig(buf, format=fmt, **kwargs)
    return write_bytes(path, buf.getvalue(), what)


class Appender:
    """A file that grows while a stream runs (``serve --out``, ``--record``): opened for append at
    start (so a bad path fails before the first sample), flushed at least once a second, and a
    failed write (a full disk) raises one line instead of losing records silently."""

    def __init__(self, path, what: str, *, binary: bool = False, flush_s: float = 1.0):
        import time

        self._clock = time.monotonic
        self.path = check_target(path, what)
        self.what = what
        self.flush_s = flush_s
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._f = open(self.path, "ab" if binary else "a", **({} if binary else {"encoding": "utf-8"}))
        except OSError as exc:
            raise EdgeseqError(f"cannot open {what} {self.path}: {_reason(exc)}") from None
        self._flushed = self._clock()

    def write(self, data) -> None:
        try:
            self._f.write(data)
            if self._clock() - self._flushed >= self.flush_s:
                self._f.flush()
                self._flushed = self._clock()
        except OSError as exc:
            raise EdgeseqError(f"cannot write {self.what} {self.path}: {_reason(exc)}") from None

    def write_json(self, obj) -> None:
        self.write(dumps(obj) + "\n")

    def close(self, *, sync: bool = False) -> None:
        """Close; with ``sync``, also wait until the bytes are on the disk (a recording that must
        survive a power cut right after the run)."""
        if self._f.closed:
            return
        try:
            if sync:
                self._f.flush()
                os.fsync(self._f.fileno())
            self._f.close()
        except OSError as exc:
            raise EdgeseqError(f"cannot write {self.what} {self.path}: {_reason(exc)}") from None
