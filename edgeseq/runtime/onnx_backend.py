"""onnxruntime sessions for an exported bundle. onnxruntime is imported here, on first load, so
``import edgeseq.runtime`` costs numpy and the standard library only.

A session is opened from the model's bytes after ``guard`` has refused external data, its inputs
and outputs are checked against the manifest, and every run is bounded in time (``guard.Watchdog``).

Session options: ``BOARD_OPTIONS`` is what every session gets unless the caller overrides
entries (``edgeseq.runtime.load(..., ort_options={...})``, ``profile --ort-arena``): the
smallest-memory setting that kept the default ECG ESN's latency (``tools/bench/ort_memory.py``,
BENCHMARKS.md); the comments say why each entry."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import EdgeseqError
from .guard import Watchdog, as_dims, check_io, onnx_external_data

_DTYPES = {"tensor(float)": "float32", "tensor(int32)": "int32", "tensor(int8)": "int8", "tensor(int16)": "int16",
           "tensor(int64)": "int64", "tensor(double)": "float64", "tensor(uint8)": "uint8"}

#: The session options a board runs with; ``intra_op_num_threads`` comes from ``threads``.
BOARD_OPTIONS = {
    # No arena: one window per call costs the same memory and time either way, but the arena keeps
    # what the largest batch needed (the default ECG ESN after one call of 1,024 windows: 466 MiB
    # RSS with it, 97 MiB without). Batches run about 1.6x slower without it: a host evaluating
    # many windows at once may want it back (load(..., ort_options={"enable_cpu_mem_arena": True})).
    "enable_cpu_mem_arena": False,
    "enable_mem_pattern": True,
    "inter_op_num_threads": 1,
    "execution_mode": "sequential",
    # "disable" leaves the int8 step dequantizing its weights every call (10x slower)
    "graph_optimization_level": "all",
    # With more than one thread, idle pool threads spin between calls by default: on a board a
    # call comes every beat, so they burn a core and, on a shared core, stretch p99.
    "session.intra_op.allow_spinning": "0",
    "session.inter_op.allow_spinning": "0",
    # An int8 export is QDQ around float kernels, equal to the description's integer form; left on,
    # onnxruntime fuses QDQ into integer kernels that requantize activations (0.036 off at N=300).
    "session.disable_quant_qdq": "1",
}
#: SessionOptions attributes that take an enum: option value -> the enum member's name.
_ENUMS = {
    "execution_mode": ("ExecutionMode", {"sequential": "ORT_SEQUENTIAL", "parallel": "ORT_PARALLEL"}),
    "graph_optimization_level": ("GraphOptimizationLevel", {
        "disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
        "all": "ORT_ENABLE_ALL"}),
}
_ATTRIBUTES = {"enable_cpu_mem_arena": bool, "enable_mem_pattern": bool, "intra_op_num_threads": int,
               "inter_op_num_threads": int, **{k: str for k in _ENUMS}}
#: onnxruntime's own namespace of session config entries (string values, add_session_config_entry)
_ENTRY_PREFIX = "session."


def resolve_options(threads: int = 1, overrides: dict | None = None) -> dict:
    """``BOARD_OPTIONS`` with ``threads`` intra-op threads and the caller's ``overrides``, checked:
    an unknown name or value is one line here, not an onnxruntime exception at load."""
    opts = {**BOARD_OPTIONS, "intra_op_num_threads": int(threads), **(overrides or {})}
    for k, v in opts.items():
        if k.startswith(_ENTRY_PREFIX):
            if not isinstance(v, str):
                raise EdgeseqError(f"onnxruntime option {k}: a config entry takes a string, got {v!r}")
        elif k not in _ATTRIBUTES:
            raise EdgeseqError(f"unknown onnxruntime option {k!r} (known: {', '.join(sorted(_ATTRIBUTES))}, "
                               f"or a '{_ENTRY_PREFIX}...' config entry)")
        elif k in _ENUMS and v not in _ENUMS[k][1]:
            raise EdgeseqError(f"onnxruntime option {k} must be one of {', '.join(_ENUMS[k][1])}, not {v!r}")
        elif _ATTRIBUTES[k] is int and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise EdgeseqError(f"onnxruntime option {k} must be an integer >= 0, not {v!r}")
        elif _ATTRIBUTES[k] is bool and not isinstance(v, bool):
            raise EdgeseqError(f"onnxruntime option {k} must be true or false, not {v!r}")
    return opts


def session_options(ort, options: dict):
    """An ``ort.SessionOptions`` carrying ``options`` (as ``resolve_options`` gives them)."""
    so = ort.SessionOptions()
    so.log_severity_level = 3
    for k, v in options.items():
        if k.startswith(_ENTRY_PREFIX):
            so.add_session_config_entry(k, v)
        elif k in _ENUMS:
            enum, names = _ENUMS[k]
            setattr(so, k, getattr(getattr(ort, enum), names[v]))
        else:
            setattr(so, k, v)
    return so


def open_session(path: Path, threads: int = 1, *, profile_prefix: str | None = None, options: dict | None = None):
    """An onnxruntime CPU session for ``path``, or a one-line error saying why not, with
    ``BOARD_OPTIONS`` and ``options`` over them. With ``profile_prefix``, onnxruntime's own
    profiler (per-node time and memory) writes there."""
    opts = resolve_options(threads, options)
    try:
        import onnxruntime as ort
    except ImportError:
        raise EdgeseqError("this bundle runs on onnxruntime, which is not installed "
                           "(pip install onnxruntime)") from None
    so = session_options(ort, opts)
    if profile_prefix:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
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
        return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
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

    def __init__(self, path: Path, threads: int, want_in: dict | None, want_out: dict | None, what: str = "model",
                 options: dict | None = None):
        self.session = open_session(path, threads, options=options)
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
    windows never loads the step file), each checked against the manifest. ``options``: entries
    over ``BOARD_OPTIONS``, for every session of the bundle."""

    def __init__(self, root: Path, runtime: dict, *, threads: int = 1, options: dict | None = None):
        self._root, self._rt, self._threads = root, runtime, threads
        self.options = resolve_options(threads, options)  # checked before any session opens
        self._overrides = dict(options or {})
        self._sessions: dict = {}
        self._session("model" if runtime.get("model") else "step")  # a bad file fails at load, not mid-stream

    def _session(self, which: str) -> Session:
        if which not in self._sessions:
            io = ("inputs", "outputs") if which == "model" else ("step_inputs", "step_outputs")
            self._sessions[which] = Session(self._root / self._rt[which], self._threads, self._rt.get(io[0]),
                                            self._rt.get(io[1]), "model" if which == "model" else "step model",
                                            options=self._overrides)
        return self._sessions[which]

    def run(self, which: str, feeds: dict) -> dict:
        s = self._session(which)
        names = [o.name for o in s.get_outputs()]
        return dict(zip(names, s.run(names, feeds)))
