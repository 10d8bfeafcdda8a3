"""Device-side runner of exported bundles (``edgeseq export``): numpy and the standard library at
import time; the backend (onnxruntime) is imported when a bundle is loaded.

    model = edgeseq.runtime.load("beats.onnx.bundle")
    labels = model.classify(windows, rr)      # windows (B, T) float32, rr (B, 9) float32
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..bundle import load_bundle
from ..errors import EdgeseqError
from ..finite import decide

FORMATS = ("onnx", "tflite")
#: Model kinds whose exported step graph carries named states (``runtime/neural.py``).
NEURAL_KINDS = ("lstm", "tcn")


def _check(name: str, x, shape: tuple) -> np.ndarray:
    """``x`` as given when it is float32 of ``shape`` (None = any batch), else a one-line error."""
    if not isinstance(x, np.ndarray):
        x = np.asarray(x)
    want = "(" + ", ".join("B" if s is None else str(s) for s in shape) + ")"
    if x.dtype != np.float32:
        raise EdgeseqError(f"{name} must be float32 of shape {want}, got {x.dtype} "
                           f"(convert with .astype(np.float32))")
    if x.ndim != len(shape) or any(s is not None and s != g for s, g in zip(shape, x.shape)):
        raise EdgeseqError(f"{name} must have shape {want}, got {tuple(x.shape)}")
    return np.ascontiguousarray(x)


class Model:
    """An exported bundle, ready to run. ``manifest`` and ``labels`` are the bundle's."""

    def __init__(self, path: Path, manifest: dict, backend, arrays: dict | None = None):
        self.path = path
        self._arrays = arrays or {}
        self.manifest = manifest
        self.labels = list(manifest["labels"])
        rt = manifest["runtime"]
        self._backend = backend
        self._T = int(rt["inputs"]["window"]["shape"][1])
        self._F = int(rt["inputs"]["rr"]["shape"][1])
        self._init_step(rt)

    def _init_step(self, rt: dict) -> None:
        st = rt.get("step_inputs", {})
        self._K = int(st["const"]["shape"][1]) if st else None
        self._N = int(st["state"]["shape"][1]) if st else None
        self.state: np.ndarray | None = None

    @property
    def sample_rate(self) -> float:
        return float(self.manifest["sample_rate"])

    def expect_stream(self, *, sample_rate: float) -> None:
        """Refuse a stream the model was not trained for, before any sample is classified."""
        if abs(float(sample_rate) - self.sample_rate) > 1e-6 * self.sample_rate:
            raise EdgeseqError(f"stream at {float(sample_rate):g} Hz, but bundle {self.path} was trained at "
                               f"{self.sample_rate:g} Hz: resample the stream first")

    def logits(self, windows, rr) -> np.ndarray:
        w = _check("windows", windows, (None, self._T))
        r = _check("rr", rr, (None, self._F))
        if len(w) != len(r):
            raise EdgeseqError(f"got {len(w)} beat windows but {len(r)} rows of rr features")
        # Chunks bound memory: the unrolled int8 graph keeps every step's state alive (126 x B x N).
        out = [self._backend.logits(w[i:i + 1024], r[i:i + 1024]) for i in range(0, len(w), 1024)]
        return np.concatenate(out) if out else np.zeros((0, len(self.labels)), np.float32)

    def classify(self, windows, rr) -> np.ndarray:
        """Class index per beat (names in ``labels``); ``finite.UNLABELLED`` (-1) where the
        logits are not finite, never argmax(NaN) = 0."""
        return decide(self.logits(windows, rr))[0]

    def step(self, u, const, state=None) -> np.ndarray:
        """One reservoir update ``(u [B, 1], const [B, K]) -> state [B, N]`` from ``state`` (or
        the model's own state, zero after :meth:`reset`); the new state is kept for the next call."""
        if self._N is None:
            raise EdgeseqError(f"bundle {self.path} has no step model")
        u = _check("u", u, (None, 1))
        c = _check("const", const, (len(u), self._K))
        if state is None:
            state = self.state if self.state is not None and len(self.state) == len(u) else \
                np.zeros((len(u), self._N), np.float32)
        s = _check("state", state, (len(u), self._N))
        self.state = self._backend.step(u, c, s)
        return self.state

    def reset(self) -> None:
        self.state = None

    def readout(self, last, mean, rr) -> np.ndarray:
        """Logits from states gathered with :meth:`step` (the last and the mean state over a beat
        window) and the beat's rr features: the readout on request, for a device that runs the
        reservoir sample by sample. Uses the bundle's float weights, one affine map."""
        if "Wout" not in self._arrays:
            raise EdgeseqError(f"bundle {self.path} carries no readout weights")
        n = self._N
        last = _check("last", last, (None, n))
        mean = _check("mean", mean, (len(last), n))
        r = _check("rr", rr, (len(last), self._F))
        X = np.concatenate([last, mean, r], axis=1)
        return X @ self._arrays["Wout"] + self._arrays["bout"]


def runtime_section(root: Path, manifest: dict) -> dict:
    """The manifest's ``runtime`` section, checked: a known format, and model files that the
    manifest lists with a hash (so ``load_bundle`` has verified them)."""
    rt = manifest.get("runtime")
    if not isinstance(rt, dict):
        raise EdgeseqError(f"bundle {root} has no runtime section: it is a training bundle; "
                           f"run `edgeseq export` on it to get one this runtime can load")
    fmt = rt.get("format")
    if fmt not in FORMATS:
        raise EdgeseqError(f"bundle {root}: runtime format {fmt!r} is not supported "
                           f"(known: {', '.join(FORMATS)})")
    if not rt.get("model"):
        raise EdgeseqError(f"bundle {root}: runtime section names no model file")
    for key in ("model", "step"):
        if rt.get(key) and rt[key] not in manifest["files"]:
            raise EdgeseqError(f"bundle {root}: {rt[key]} is not listed with a hash in the manifest")
    return rt


def _backend(root: Path, rt: dict, threads: int):
    if rt["format"] == "onnx":
        from .onnx_backend import OnnxBackend

        return OnnxBackend(root, rt, threads=threads)
    from .tflite_backend import TFLiteBackend

    return TFLiteBackend(root, rt, threads=threads)


def load(path, *, task: str | None = None, threads: int = 1):
    """Verify every file's hash (``load_bundle``) and open the exported model: a beat classifier
    (:class:`Model`), or for ``task == "sequence"`` bundles made by ``edgeseq.from_reservoirpy``, a
    sequence model with ``run(X)`` (also a balance window model). ``task`` refuses a bundle of another task."""
    root = Path(path)
    bundle = load_bundle(root, task=task)
    m = bundle.manifest
    rt = runtime_section(root, m)
    from .sequence import SEQUENCE_TASKS

    if m["task"] in SEQUENCE_TASKS:
        from .sequence import load_sequence

        return load_sequence(root, threads=threads)
    if m["model"]["kind"] in NEURAL_KINDS:
        from .neural import NeuralModel

        return NeuralModel(root, m, _backend(root, rt, threads), bundle.arrays)
    return Model(root, m, _backend(root, rt, threads), bundle.arrays)
