"""Checks on a bundle's model files before and while a runtime runs them (bundles are untrusted
input, see ``edgeseq.bundle``). Numpy and the standard library only.

- ``check_io``: the model's inputs and outputs (names, dtypes, ranks, static sizes) are the ones
  the manifest's runtime section declares; a model with 2 or 7 outputs for 5 labels is refused at
  load, not discovered as a misnamed prediction.
- ``onnx_external_data``: edgeseq's exporters never write ONNX external data, so a model that
  carries any is refused before onnxruntime reads it (older onnxruntime releases follow an
  absolute or ``../`` location anywhere on the disk).
- ``Watchdog``: one timer thread per model bounds every run to ``run_timeout_s()`` (default 60 s,
  ``EDGESEQ_RUN_TIMEOUT_S``). onnxruntime's runs are stopped through ``RunOptions.terminate``
  and end in one line (a graph that never ends, e.g. an ONNX ``Loop``). A TFLite ``invoke``
  cannot be stopped (the Python interpreter has no cancellation) and loops cannot be refused
  either (the int8 exporters write WHILE loops themselves), so past the limit the watchdog ends
  the process with one line and exit status 2 where the CLI asked for it (``exit_on_hang``):
  a hung ``serve`` is worse than a stopped one. A library caller that did not ask keeps waiting,
  with one warning line on stderr.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager

import numpy as np

from ..errors import EdgeseqError

RUN_TIMEOUT_ENV = "EDGESEQ_RUN_TIMEOUT_S"
DEFAULT_RUN_TIMEOUT_S = 60.0


def run_timeout_s() -> float:
    text = os.environ.get(RUN_TIMEOUT_ENV)
    if not text:
        return DEFAULT_RUN_TIMEOUT_S
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not (v > 0 and v < 1e7):
        raise EdgeseqError(f"{RUN_TIMEOUT_ENV}={text!r}: must be a positive number of seconds")
    return v


def _describe(spec: dict) -> str:
    return "{" + ", ".join(f"{k}: {v[1]}[{', '.join(map(str, v[0]))}]" for k, v in sorted(spec.items())) + "}"


def check_io(path, what: str, got_in: dict, got_out: dict, want_in: dict | None, want_out: dict | None) -> None:
    """``got_*``: name -> (shape, dtype) from the model, a dimension ``None`` when it is dynamic;
    ``want_*``: the manifest's ``{name: {"shape": [...], "dtype": ...}}`` ("B"/"T" are free)."""
    for kind, got, want in (("inputs", got_in, want_in), ("outputs", got_out, want_out)):
        if want is None:
            continue
        bad = set(got) != set(want)
        for name in set(got) & set(want):
            shape, dtype = got[name]
            w = want[name]["shape"]
            if str(dtype) != want[name]["dtype"] or len(shape) != len(w) or any(
                    isinstance(a, int) and b is not None and a != b for a, b in zip(w, shape)):
                bad = True
        if bad:
            declared = {k: (v["shape"], v["dtype"]) for k, v in want.items()}
            raise EdgeseqError(f"{path}: the {what}'s {kind} are {_describe(got)}, the manifest declares "
                               f"{_describe(declared)}")


# ---- ONNX: a protobuf walk for external data -----------------------------------------------------

def _varint(b, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        c = b[i]
        i += 1
        result |= (c & 0x7F) << shift
        if c < 0x80:
            return result, i
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(b, start: int, end: int):
    i = start
    while i < end:
        key, i = _varint(b, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _varint(b, i)
            yield field, wire, v, None
        elif wire == 1:
            i += 8
        elif wire == 2:
            n, i = _varint(b, i)
            if i + n > end:
                raise ValueError("field runs past its message")
            yield field, wire, i, i + n
            i += n
        elif wire == 5:
            i += 4
        else:
            raise ValueError(f"wire type {wire}")
    if i != end:
        raise ValueError("message runs past its end")


# message -> {field number: message type of that (length-delimited) field}, from onnx.proto3
_ONNX = {
    "model": {7: "graph", 25: "function"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "function": {7: "node", 11: "attribute"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
    "tensor": {},
}


def onnx_external_data(data: bytes) -> bool:
    """Whether any tensor of the serialized ModelProto ``data`` keeps its values in an external
    file (``data_location == EXTERNAL`` or an ``external_data`` entry); ``ValueError`` if ``data``
    is not a well-formed protobuf."""
    b = memoryview(data)
    todo = [("model", 0, len(b), 0)]
    while todo:
        kind, start, end, depth = todo.pop()
        if depth > 64:
            raise ValueError("graphs nested more than 64 deep")
        sub = _ONNX[kind]
        try:
            for field, wire, a, z in _fields(b, start, end):
                if kind == "tensor" and ((field == 14 and wire == 0 and a == 1) or (field == 13 and wire == 2)):
                    return True
                if wire == 2 and field in sub:
                    todo.append((sub[field], a, z, depth + 1))
        except IndexError:
            raise ValueError("truncated") from None
    return False


# ---- a bound on every run ------------------------------------------------------------------------

_EXIT_ON_HANG = []


def exit_on_hang() -> None:
    """From now on, a TFLite run past the limit ends this process (see the module docstring)."""
    _EXIT_ON_HANG[:] = [True]


def _tflite_hung(path, limit_s: float) -> None:
    import sys

    line = (f"edgeseq: error: {path}: one run took longer than {limit_s:g} s; a TFLite run cannot be stopped "
            f"(a loop that never ends?), so edgeseq exits (raise {RUN_TIMEOUT_ENV} for a long sequence)")
    if _EXIT_ON_HANG:
        print(line, file=sys.stderr, flush=True)
        os._exit(2)
    print(line.replace("error:", "warning:").replace("so edgeseq exits", "still waiting"), file=sys.stderr,
          flush=True)


class Watchdog:
    """Bounds every run of one model: ``with dog.armed(cancel): ...`` calls ``cancel()`` from a timer
    thread once ``limit_s`` has passed; one thread per watchdog, parked while no run is in flight."""

    def __init__(self, path, limit_s: float | None = None):
        self.path = path
        self.limit_s = run_timeout_s() if limit_s is None else float(limit_s)
        self._cv = threading.Condition()
        self._armed = None  # (cancel, deadline) of the run in flight
        self._thread = None
        self._idle = False  # the thread waits with no deadline and must be woken by the next run

    def _loop(self) -> None:
        with self._cv:
            while True:
                if self._armed is None:
                    self._idle = True
                    self._cv.wait()
                    self._idle = False
                    continue
                cancel, deadline = self._armed
                left = deadline - time.monotonic()
                if left <= 0:
                    self._armed = None
                    cancel()
                else:
                    self._cv.wait(left)

    @contextmanager
    def armed(self, cancel):
        with self._cv:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="edgeseq-run-watchdog", daemon=True)
                self._thread.start()
            self._armed = (cancel, time.monotonic() + self.limit_s)
            # Deadlines only move later, so a thread already sleeping until an earlier one wakes,
            # sees this run and sleeps again: waking it per run would cost a thread switch per call.
            if self._idle:
                self._cv.notify()
        try:
            yield
        finally:
            with self._cv:
                self._armed = None

    def run_onnx(self, session, outputs, feeds: dict):
        """``session.run``, stopped through ``RunOptions.terminate`` past the limit (one line)."""
        import onnxruntime as ort

        opts = ort.RunOptions()
        opts.log_severity_level = 4  # a stopped run is reported below in one line, not also in ORT's log
        try:
            with self.armed(lambda: setattr(opts, "terminate", True)):
                return session.run(outputs, feeds, opts)
        except Exception as exc:
            if opts.terminate:
                raise EdgeseqError(f"{self.path}: one run took longer than {self.limit_s:g} s and was stopped "
                                   f"(a graph that never ends? raise {RUN_TIMEOUT_ENV} for a long sequence)") from None
            raise EdgeseqError(f"onnxruntime failed running {self.path}: {str(exc).splitlines()[0][:300]}") from None

    def tflite(self):
        """A context for TFLite invokes: past the limit, see ``exit_on_hang``."""
        return self.armed(lambda: _tflite_hung(self.path, self.limit_s))


def as_dims(shape) -> list:
    """A runtime's shape as ints, ``None`` for a dynamic dimension (a name, None or -1)."""
    return [int(d) if isinstance(d, (int, np.integer)) and int(d) >= 0 else None for d in shape]
