"""tflite-micro on the host: run a ``.tflite`` file as a microcontroller would, and find the
smallest tensor arena it runs in.

The search runs every try in its own subprocess: a microcontroller interpreter given too small
an arena may fail cleanly, or may crash the process that asked.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from ..errors import EdgeseqError

_PROBE = r"""
import sys
import numpy as np
from tflite_micro.python.tflite_micro import runtime
it = runtime.Interpreter.from_file(sys.argv[1], arena_size=int(sys.argv[2]))
i = 0
while True:
    try:
        d = it.get_input_details(i)
    except Exception:
        break
    it.set_input(np.zeros(tuple(d["shape"]), d["dtype"]), i)
    i += 1
it.invoke()
if len(sys.argv) > 3:
    it.print_allocations()
print("EDGESEQ_OK", flush=True)
"""

ALIGN = 16


class _Tflm:
    def __init__(self, path: Path, arena_size: int):
        from tflite_micro.python.tflite_micro import runtime

        try:  # its Python wrapper parses the flatbuffer itself and raises whatever it trips on
            self._it = runtime.Interpreter.from_file(str(path), arena_size=arena_size)
        except Exception as exc:
            raise EdgeseqError(f"tflite-micro cannot load {path}: {type(exc).__name__}: "
                               f"{str(exc).splitlines()[0][:200] if str(exc) else ''}") from None
        self.inputs = self._details(self._it.get_input_details)
        self.outputs = self._details(self._it.get_output_details)

    @staticmethod
    def _details(get) -> list[dict]:
        # tflite-micro has no count: it ends the list with an exception, after printing about it
        # on the C stderr, which is silenced here (a message per model would only confuse).
        import os

        out, i = [], 0
        saved = os.dup(2)
        try:
            with open(os.devnull, "w") as null:
                os.dup2(null.fileno(), 2)
                while True:
                    try:
                        out.append(get(i))
                    except Exception:
                        return out
                    i += 1
        finally:
            os.dup2(saved, 2)
            os.close(saved)

    def set_input(self, x, i: int) -> None:
        self._it.set_input(x, i)

    def invoke(self) -> None:
        self._it.invoke()

    def get_output(self, i: int):
        return self._it.get_output(i)


def open_tflm(path: Path, arena_size: int | None = None) -> _Tflm:
    """A tflite-micro interpreter for ``path`` (arena: the searched minimum plus 10%, or 8 MiB)."""
    try:
        import tflite_micro  # noqa: F401
    except ImportError:
        raise EdgeseqError("--runtime tflm needs tflite-micro: pip install tflite-micro "
                           "(or the 'profile' extra)") from None
    if arena_size is None:
        found = arena_search(path)
        arena_size = int(found["bytes"] * 1.1) if found.get("bytes") else 8 << 20
    return _Tflm(path, arena_size)


def _try(path: Path, size: int, record: bool = False, timeout: float = 120.0) -> tuple[bool, str]:
    args = [sys.executable, "-c", _PROBE, str(path), str(size)] + (["record"] if record else [])
    try:
        r = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, "timed out"
    ok = r.returncode == 0 and "EDGESEQ_OK" in r.stdout
    return ok, r.stdout + r.stderr


def arena_search(path: Path, *, start: int = 8 << 20, resolution: int = 64) -> dict:
    """Smallest arena (to ``resolution`` bytes) in which ``path`` loads and runs one inference.

    One run in a large arena gives tflite-micro's own recorded total; a bisection between half of
    that and the total, one subprocess per try, confirms the minimum."""
    try:
        import tflite_micro  # noqa: F401
    except ImportError:
        return {"bytes": None, "error": "tflite-micro not installed (pip install tflite-micro)"}
    ok, log = _try(path, start, record=True)
    if not ok:
        tail = (log.strip().splitlines() or ["?"])[-1][:200]
        return {"bytes": None, "error": f"tflite-micro cannot run {Path(path).name} in {start} bytes: {tail}"}
    m = re.search(r"Arena allocation total (\d+) bytes", log)
    recorded = int(m.group(1)) if m else None
    hi = recorded or start
    tries = 1
    if not _try(path, hi)[0]:
        hi, tries = start, tries + 1
    lo = hi // 2
    while tries < 40 and _try(path, lo)[0]:  # the bound below must fail
        hi, lo, tries = lo, lo // 2, tries + 1
    while hi - lo > resolution:
        mid = (lo + hi) // 2 // ALIGN * ALIGN
        ok, _ = _try(path, mid)
        tries += 1
        if ok:
            hi = mid
        else:
            lo = mid
    return {"bytes": int(hi), "recorded_bytes": recorded, "tries": tries, "resolution": resolution}
