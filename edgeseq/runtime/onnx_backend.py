"""onnxruntime sessions for an exported bundle. onnxruntime is imported here, on first load, so
``import edgeseq.runtime`` costs numpy and the standard library only.

A session is opened from the model's bytes after ``guard`` has refused external data, its inputs
and outputs are checked against the manifest, and every run is bounded in time (``guard.Watchdog``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import EdgeseqError
from .guard import Watchdog, as_dims, check_io, onnx_external_data

_DTYPES = {"tensor(float)": "float32", "tensor(int32)": "int32", "tensor(int8)": "int8", "tensor(int16)": "int16",
           "tensor(int64)": "int64", "tensor(double)": "float64", "tensor(uint8)": "uint8"}


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
    # An int8 export is QDQ around float kernels, equal to the description's integer form; left on,
    # onnxruntime fuses QDQ into integer kernels that requantize activations (0.036 off at N=300).
    opts.add_session_config_entry("session.disable_quant_qdq", "1")
    if profile_prefix:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    from ..bundle import read_verified

    data = read_verified(path)
    try:
        external = onnx_external_data(data)
    except ValueError as exc:
        raise EdgeseqError(f"{path} is not an ONNX model ({exc})") from None
    if external:
        raise EdgeseqError(f"{path} keeps tensors in external data files: edgeseq's exporters never do, and "
                           f"such a model may read files outside its bundle, so it is refused")
    try:  # from the bytes checked above, not the path: the file cannot change in between
        return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise EdgeseqError(f"onnxruntime cannot load {path}: {str(exc).splitlines()[0][:300]}") from None


def io_of(session) -> tuple[dict, dict]:
    """A session's inputs and outputs as ``guard.check_io`` takes them."""
    def spec(args):
        return {a.name: (as_dims(a.shape), _DTYPES.get(a.type, a.type)) for a in args}

    return spec(session.get_inputs()), spec(session.get_outputs())


class Session:
    """An onnxruntime session for a bundle's model file, checked against the manifest's ``inputs``
    and ``outputs``; ``run`` is bounded in time."""

    def __init__(self, path: Path, threads: int, want_in: dict | None, want_out: dict | None, what: str = "model"):
        self.session = open_session(path, threads)
        check_io(path, what, *io_of(self.session), want_in, want_out)
        self._dog = Watchdog(path)

    def get_inputs(self):
        return self.session.get_inputs()

    def get_outputs(self):
        return self.session.get_outputs()

    def run(self, outputs, feeds: dict):
        return self._dog.run_onnx(self.session, outputs, feeds)


class OnnxBackend:
    """The bundle's model files as sessions, opened on first use (a device that classifies whole
    windows never loads the step file), each checked against the manifest."""

    def __init__(self, root: Path, runtime: dict, *, threads: int = 1):
        self._root, self._rt, self._threads = root, runtime, threads
        self._sessions: dict = {}
        self._session("model" if runtime.get("model") else "step")  # a bad file fails at load, not mid-stream

    def _session(self, which: str) -> Session:
        if which not in self._sessions:
            io = ("inputs", "outputs") if which == "model" else ("step_inputs", "step_outputs")
            self._sessions[which] = Session(self._root / self._rt[which], self._threads, self._rt.get(io[0]),
                                            self._rt.get(io[1]), "model" if which == "model" else "step model")
        return self._sessions[which]

    def run(self, which: str, feeds: dict) -> dict:
        s = self._session(which)
        names = [o.name for o in s.get_outputs()]
        return dict(zip(names, s.run(names, feeds)))
