"""Device-side runner of SEQUENCE bundles (an output at every time step), such as those made by
:func:`edgeseq.interop.reservoirpy.from_reservoirpy` and exported by
:func:`edgeseq.export.onnx_sequence.export_sequence_onnx` (a Scan over time) or
:func:`edgeseq.export.tflite_sequence.export_sequence_tflite` (a step model, looped here)::

    model = edgeseq.runtime.sequence.load_sequence("model.onnx.bundle")
    Y = model.run(X)            # X (T, inputs) float32 -> Y (T, outputs) float32

Every :meth:`SequenceModel.run` starts from the zero reservoir state, like reservoirpy's ``run`` on
a freshly reset model: a call is one whole sequence, and two calls never share state.

Numpy and the standard library at import time; onnxruntime (or the TFLite interpreter,
``ai_edge_litert`` else ``tflite_runtime``) is imported when a bundle is loaded.
:class:`SequenceReference` is the numpy reference of the same computation, usable without ONNX.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..bundle import load_bundle
from ..errors import EdgeseqError
from ..finite import decide
from . import runtime_section

TASK = "sequence"
#: Tasks whose models are a reservoir with a readout at every step: reservoirpy imports, and the
#: balance window models (their window prediction is the mean of the step outputs).
SEQUENCE_TASKS = (TASK, "balance")
ACTIVATIONS = ("tanh", "identity", "sigmoid", "relu")


def _activation(name: str):
    if name == "tanh":
        return np.tanh
    if name == "identity":
        return lambda v: v
    if name == "sigmoid":  # reservoirpy's two-branch form: exp never overflows
        return lambda v: np.where(v < 0, np.exp(np.minimum(v, 0)) / (np.exp(np.minimum(v, 0)) + 1.0),
                                  1.0 / (1.0 + np.exp(-np.maximum(v, 0))))
    if name == "relu":
        return lambda v: np.maximum(v, 0.0)
    raise EdgeseqError(f"sequence model activation {name!r} is not supported (known: {', '.join(ACTIVATIONS)})")


def _check_x(x, inputs: int) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise EdgeseqError(f"X must be a float32 numpy array of shape (T, {inputs}), got {type(x).__name__}")
    if x.dtype != np.float32:
        raise EdgeseqError(f"X must be float32 of shape (T, {inputs}), got {x.dtype} "
                           f"(convert with .astype(np.float32))")
    if x.ndim != 2 or x.shape[1] != inputs:
        raise EdgeseqError(f"X must have shape (T, {inputs}) (time steps, inputs), got {tuple(x.shape)}")
    if not np.all(np.isfinite(x)):
        raise EdgeseqError("X contains NaN or infinite values")
    return np.ascontiguousarray(x)


class SequenceReference:
    """Numpy reference of a reservoir + linear readout, state zero at the start of every run.

    ``s[t] = (1 - lr) * s[t-1] + lr * f(W @ s[t-1] + Win @ x[t] + bias)``, ``s[-1] = 0``;
    ``y[t] = [s[t], x[t]] @ Wout + bout`` (the ``x[t]`` rows only when ``input_to_readout``).
    Arrays are computed in ``dtype`` (float64 by default, whatever they are stored in).
    """

    def __init__(self, arrays: dict, params: dict, dtype=np.float64):
        self.dtype = np.dtype(dtype)
        a = {k: np.asarray(arrays[k], self.dtype) for k in ("W", "Win", "bias", "lr", "Wout", "bout")}
        self.W, self.Win, self.bias, self.lr, self.Wout, self.bout = (
            a["W"], a["Win"], a["bias"], a["lr"], a["Wout"], a["bout"])
        self.units = self.W.shape[0]
        self.inputs = self.Win.shape[1]
        self.outputs = self.Wout.shape[1]
        self.input_to_readout = bool(params.get("input_to_readout", False))
        self.f = _activation(params.get("activation", "tanh"))
        want = self.units + (self.inputs if self.input_to_readout else 0)
        if self.Wout.shape[0] != want:
            raise EdgeseqError(f"sequence model readout has {self.Wout.shape[0]} input rows, expected {want}")

    @classmethod
    def from_bundle(cls, path, dtype=np.float64) -> "SequenceReference":
        b = load_bundle(path)
        _check_task(path, b.manifest)
        return cls(b.arrays, b.manifest["model"]["params"], dtype=dtype)

    def states(self, X) -> np.ndarray:
        X = np.asarray(X, self.dtype)
        if X.ndim != 2 or X.shape[1] != self.inputs:
            raise EdgeseqError(f"X must have shape (T, {self.inputs}), got {tuple(X.shape)}")
        drive = X @ self.Win.T + self.bias
        S = np.empty((len(X), self.units), self.dtype)
        s = np.zeros(self.units, self.dtype)
        for t in range(len(X)):
            # reservoirpy's order of operations, so float64 agrees to rounding
            s = (1 - self.lr) * s + self.lr * self.f(self.W @ s + drive[t])
            S[t] = s
        return S

    def run(self, X) -> np.ndarray:
        S = self.states(X)
        feats = np.concatenate([S, np.asarray(X, self.dtype)], axis=1) if self.input_to_readout else S
        return feats @ self.Wout + self.bout


class SequenceModel:
    """An exported sequence bundle, ready to run. ``manifest`` and ``labels`` are the bundle's."""

    def __init__(self, path: Path, manifest: dict, backend):
        self.path = path
        self.manifest = manifest
        self.labels = list(manifest["labels"])
        rt = manifest["runtime"]
        self.inputs = int(rt["inputs"]["x"]["shape"][1])
        self.outputs = int(rt["outputs"]["y"]["shape"][1])
        self._backend = backend  # .run(x float32 [T, D], T > 0) -> y float32 [T, O]

    def run(self, X) -> np.ndarray:
        """``X`` float32 (T, inputs) -> float32 (T, outputs), from the zero state."""
        x = _check_x(X, self.inputs)
        if len(x) == 0:  # a zero-length Scan is legal ONNX, but not worth a runtime's corner case
            return np.zeros((0, self.outputs), np.float32)
        return self._backend.run(x)

    def classify(self, X) -> np.ndarray:
        """Class index per time step (names in ``labels``); -1 where the outputs are not finite."""
        if not self.labels:
            raise EdgeseqError(f"bundle {self.path} is a regression model (no labels); use run()")
        return decide(self.run(X))[0]

    def reset(self) -> None:
        """Nothing to clear: every :meth:`run` starts from the zero state. Kept so code written
        for stateful models keeps working."""


class _OnnxSequence:
    """The Scan graph ``x [T, D] -> y [T, O]`` on onnxruntime."""

    def __init__(self, path: Path, threads: int, runtime: dict):
        from .onnx_backend import Session

        self._session = Session(path, threads, runtime["inputs"], runtime["outputs"])

    def run(self, x: np.ndarray) -> np.ndarray:
        return self._session.run(None, {"x": x})[0]


class _TFLiteSequence:
    """The STEP model ``(x [1, D], state [1, N]) -> (state_out [1, N], y [1, O])`` on a TFLite
    interpreter, looped over the T steps from the zero state.

    Builtin kernels without the default XNNPACK delegate, as ``tflite_backend`` opens beat models.
    The step is ~8 small ops, so the Python loop and per-invoke overhead dominate: 4-10 us a
    step at N=100..300 (ai-edge-litert 2.3, one thread, shared VM, T=10000; XNNPACK within noise
    of the builtin kernels), 1.1-2x the time of the ONNX Scan."""

    def __init__(self, path: Path, threads: int, inputs: int, outputs: int, runtime: dict):
        from .tflite_backend import io_of, open_interpreter
        from .guard import Watchdog, check_io

        self._it = open_interpreter(path, threads)
        check_io(path, "step model", *io_of(self._it), runtime.get("step_inputs"), runtime.get("step_outputs"))
        self._dog = Watchdog(path)
        ins = {d["name"]: d for d in self._it.get_input_details()}
        outs = {d["name"]: d for d in self._it.get_output_details()}
        if set(ins) != {"x", "state"} or set(outs) != {"state_out", "y"}:
            raise EdgeseqError(f"{path}: expected a sequence step model (x, state) -> (state_out, y), "
                               f"the model has inputs {sorted(ins)} and outputs {sorted(outs)}")
        self._x, self._s = ins["x"]["index"], ins["state"]["index"]
        self._s_out, self._y = outs["state_out"]["index"], outs["y"]["index"]
        self.units = int(ins["state"]["shape"][1])
        self.outputs = outputs
        got = (int(ins["x"]["shape"][1]), int(outs["y"]["shape"][1]))
        if got != (inputs, outputs):
            raise EdgeseqError(f"{path}: the step model maps {got[0]} inputs to {got[1]} outputs, "
                               f"the manifest says {inputs} -> {outputs}")

    def run(self, x: np.ndarray) -> np.ndarray:
        y = np.empty((len(x), self.outputs), np.float32)
        state = np.zeros((1, self.units), np.float32)
        with self._dog.tflite():  # the whole sequence is one run, as the ONNX Scan is
            self._loop(x, y, state)
        return y

    def _loop(self, x, y, state) -> None:
        it, xi, si, so, yi = self._it, self._x, self._s, self._s_out, self._y
        for t in range(len(x)):
            it.set_tensor(xi, x[t:t + 1])
            it.set_tensor(si, state)
            it.invoke()
            # get_tensor copies out of the arena, so state stays valid across the next invoke
            state = it.get_tensor(so)
            y[t] = it.get_tensor(yi)[0]


def _check_task(path, manifest: dict) -> None:
    if manifest.get("task") not in SEQUENCE_TASKS:
        raise EdgeseqError(f"bundle {path} is a {manifest.get('task')!r} bundle, not a sequence model "
                           f"({', '.join(SEQUENCE_TASKS)})")


def load_sequence(path, *, threads: int = 1) -> SequenceModel:
    """Verify every file's hash (``load_bundle``) and open the exported sequence model."""
    root = Path(path)
    bundle = load_bundle(root)
    m = bundle.manifest
    _check_task(root, m)
    rt = runtime_section(root, m)
    name = rt["model"]
    try:
        inputs, outputs = int(rt["inputs"]["x"]["shape"][1]), int(rt["outputs"]["y"]["shape"][1])
    except (KeyError, IndexError, TypeError, ValueError):
        raise EdgeseqError(f"bundle {root}: runtime section lacks the x/y shapes of a sequence model") from None
    if rt["format"] == "onnx":
        backend = _OnnxSequence(root / name, threads, rt)
    else:
        if rt.get("graph_form", "step") != "step":
            raise EdgeseqError(f"bundle {root}: TFLite graph form {rt.get('graph_form')!r} is not "
                               f"supported for sequence models (known: step)")
        backend = _TFLiteSequence(root / name, threads, inputs, outputs, rt)
    return SequenceModel(root, m, backend)
