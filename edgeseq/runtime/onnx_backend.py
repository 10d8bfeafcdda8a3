"""onnxruntime sessions for an exported bundle. onnxruntime is imported here, on first load, so
``import edgeseq.runtime`` costs numpy and the standard library only."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import EdgeseqError


def open_session(path: Path, threads: int = 1, *, profile_prefix: str | None = None):
    """An onnxruntime CPU session for ``path``, or a one-line error saying why not. With
    ``profile_prefix``, onnxruntime's own profiler (per-node time and memory) writes there."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise EdgeseqError("this bundle runs on onnxruntime, which is not installed "
                           "(pip install onnxruntime)") from None
    opts = ort.SessionOptions()
    # One core by default: a small device has few, and per-beat latency was measured so.
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    if profile_prefix:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise EdgeseqError(f"onnxruntime cannot load {path}: {exc}") from None


class OnnxBackend:
    def __init__(self, root: Path, runtime: dict, *, threads: int = 1):
        self._threads = threads
        self.window = open_session(root / runtime["model"], threads)
        step = runtime.get("step")
        self._step_path = root / step if step else None
        self._step = None

    def logits(self, windows: np.ndarray, rr: np.ndarray) -> np.ndarray:
        return self.window.run(None, {"window": windows, "rr": rr})[0]

    def _step_session(self):
        if self._step is None:  # most devices classify whole windows; load the step graph on demand
            if self._step_path is None:
                raise EdgeseqError("this exported bundle has no step model")
            self._step = open_session(self._step_path, self._threads)
        return self._step

    def step(self, u: np.ndarray, const: np.ndarray, state: np.ndarray) -> np.ndarray:
        return self._step_session().run(None, {"u": u, "const": const, "state": state})[0]

    def run_step(self, feeds: dict) -> dict:
        """The step graph on named inputs -> every named output (models with several states)."""
        s = self._step_session()
        names = [o.name for o in s.get_outputs()]
        return dict(zip(names, s.run(names, feeds)))
