"""Checks on a bundle's model files before and while a runtime runs them (bundles are untrusted
input, see ``edgeseq.bundle``). Numpy and the standard library only.

- ``check_io``: the model's inputs and outputs (names, dtypes, ranks, static sizes) are the ones
  the manifest's runtime section declares; a model with 2 or 7 outputs for 5 labels is refused at
  load, not discovered as a misnamed prediction.
- ``onnx_external_data``: edgeseq's exporters never write ONNX external data, so a model that
  carries any is refused before onnxruntime reads it (older onnxruntime releases follow an
  absolute or ``../`` location anywhere on the disk).
- ``tflite_loops``: the exporters never write a WHILE op, so a .tflite holding one is refused: a
  TFLite interpreter's ``invoke`` cannot be interrupted, and a loop that never ends would hang
  ``serve`` for good. onnxruntime's runs are interrupted instead (``Watchdog``).
- ``Watchdog``: one timer thread per session sets ``RunOptions.terminate`` when a run exceeds
  ``run_timeout_s()`` (default 60 s, ``EDGESEQ_RUN_TIMEOUT_S``), turning a graph that never ends
  (an ONNX ``Loop``) into one line.
"""

from __future__ import annotations

import os
import threading
import time

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


# ---- TFLite: a flatbuffer walk for loop ops ------------------------------------------------------

TFLITE_WHILE = 119  # BuiltinOperator.WHILE in the TFLite schema


def _u(b, o: int, n: int, signed: bool = False) -> int:
    if o < 0 or o + n > len(b):
        raise ValueError("offset outside the file")
    return int.from_bytes(b[o:o + n], "little", signed=signed)


def _field(b, table: int, index: int) -> int | None:
    vt = table - _u(b, table, 4, signed=True)
    size = _u(b, vt, 2)
    slot = 4 + 2 * index
    if slot + 2 > size:
        return None
    off = _u(b, vt + slot, 2)
    return table + off if off else None


def tflite_loops(data: bytes) -> list[str]:
    """Names of the loop ops (WHILE) among the operator codes of the flatbuffer ``data``;
    ``ValueError`` if it is not a TFLite model's flatbuffer."""
    b = memoryview(data)
    if len(b) < 8 or bytes(b[4:8]) != b"TFL3":
        raise ValueError("no TFL3 identifier")
    root = _u(b, 0, 4)
    f = _field(b, root, 1)  # Model.operator_codes
    if f is None:
        return []
    vec = f + _u(b, f, 4)
    n = _u(b, vec, 4)
    if n > len(b) // 4:
        raise ValueError("operator code count beyond the file")
    found = []
    for k in range(n):
        elem = vec + 4 + 4 * k
        table = elem + _u(b, elem, 4)
        dep = _field(b, table, 0)  # deprecated_builtin_code: int8
        new = _field(b, table, 3)  # builtin_code: int32
        code = max(_u(b, dep, 1, signed=True) if dep is not None else 0,
                   _u(b, new, 4, signed=True) if new is not None else 0)
        if code == TFLITE_WHILE:
            found.append("WHILE")
    return found


def check_tflite_file(path, data: bytes) -> None:
    try:
        loops = tflite_loops(data)
    except ValueError as exc:
        raise EdgeseqError(f"{path} is not a TFLite model ({exc})") from None
    if loops:
        raise EdgeseqError(f"{path} holds a {loops[0]} op: edgeseq's exporters never write loops, and a TFLite "
                           f"invoke cannot be interrupted, so this model is refused")


# ---- onnxruntime: a bound on every run ------------------------------------------------------------

class Watchdog:
    """Runs ``session.run`` with ``RunOptions.terminate`` set by a timer thread once ``limit_s``
    has passed; one thread per watchdog, parked while no run is in flight."""

    def __init__(self, path, limit_s: float | None = None):
        self.path = path
        self.limit_s = run_timeout_s() if limit_s is None else float(limit_s)
        self._cv = threading.Condition()
        self._armed = None  # (RunOptions, deadline) of the run in flight
        self._thread = None

    def _loop(self) -> None:
        with self._cv:
            while True:
                if self._armed is None:
                    self._cv.wait()
                    continue
                opts, deadline = self._armed
                left = deadline - time.monotonic()
                if left <= 0:
                    opts.terminate = True
                    self._armed = None
                else:
                    self._cv.wait(left)

    def run(self, session, outputs, feeds: dict):
        import onnxruntime as ort

        opts = ort.RunOptions()
        with self._cv:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="edgeseq-ort-watchdog", daemon=True)
                self._thread.start()
            self._armed = (opts, time.monotonic() + self.limit_s)
            self._cv.notify()
        try:
            return session.run(outputs, feeds, opts)
        except Exception as exc:
            if opts.terminate:
                raise EdgeseqError(f"{self.path}: one run took longer than {self.limit_s:g} s and was stopped "
                                   f"(a graph that never ends? raise {RUN_TIMEOUT_ENV} for a long sequence)") from None
            raise EdgeseqError(f"onnxruntime failed running {self.path}: {str(exc).splitlines()[0][:300]}") from None
        finally:
            with self._cv:
                self._armed = None


def as_dims(shape) -> list:
    """A runtime's shape as ints, ``None`` for a dynamic dimension (a name, None or -1)."""
    return [int(d) if isinstance(d, (int, np.integer)) and int(d) >= 0 else None for d in shape]
