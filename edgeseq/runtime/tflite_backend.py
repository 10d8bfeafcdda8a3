"""TFLite interpreter for an exported bundle (``runtime.format == "tflite"``). The interpreter
(``ai_edge_litert``, else the older ``tflite_runtime`` wheel) is imported on first load, so
``import edgeseq.runtime`` costs numpy and the standard library only.

The interpreter is given the model's bytes (read once, within the bundle's size bound), its inputs
and outputs are checked against the manifest, and every invoke is bounded in time
(``guard.Watchdog``: a TFLite invoke cannot be stopped, so past the limit the CLI exits with one
line). The interpreter itself still parses the file in this process: a crafted file that crashes
it is kept out by the hashes and, with ``--trust``, the signature."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import EdgeseqError
from .guard import Watchdog, as_dims, check_io


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            raise EdgeseqError("this bundle runs on a TFLite interpreter, and none is installed "
                               "(pip install ai-edge-litert, or tflite-runtime on older boards)") from None
    return Interpreter


def _open(Interpreter, data: bytes, threads: int):
    """The builtin kernels without the default XNNPACK delegate: on the unrolled graph (~1100
    small ops) XNNPACK's per-op overhead outweighs its kernels (DS1 bundle N=300, one beat, one
    thread, shared 2-core VM: float 807 us median without it, 2279 us with it; int8 the same
    either way, XNNPACK takes no 16x8 ops)."""
    try:
        from ai_edge_litert.interpreter import OpResolverType
    except ImportError:
        try:
            from tflite_runtime.interpreter import OpResolverType
        except ImportError:  # tflite_runtime before 2.6: no resolver choice
            return Interpreter(model_content=data, num_threads=threads)
    return Interpreter(model_content=data, num_threads=threads,
                       experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)


def open_interpreter(path: Path, threads: int = 1):
    """A TFLite interpreter with tensors allocated for ``path``, or a one-line error saying why not."""
    Interpreter = _interpreter_class()
    from ..bundle import read_verified

    data = read_verified(path)
    try:
        it = _open(Interpreter, data, int(threads))
        it.allocate_tensors()
    except Exception as exc:
        raise EdgeseqError(f"the TFLite interpreter cannot load {path}: {exc}") from None
    return it


def io_of(it) -> tuple[dict, dict]:
    """An interpreter's inputs and outputs as ``guard.check_io`` takes them."""
    def spec(details):
        return {d["name"]: (as_dims(d.get("shape_signature", d["shape"])), np.dtype(d["dtype"]).name)
                for d in details}

    return spec(it.get_input_details()), spec(it.get_output_details())


class TFLiteBackend:
    def __init__(self, root: Path, runtime: dict, *, threads: int = 1):
        path = root / runtime["model"]
        # One thread by default: a small device has few cores, and latency was measured so.
        self._it = open_interpreter(path, threads)
        # a loaded bundle always declares inputs/outputs (schema); an exporter checking its own file does not
        check_io(path, "model", *io_of(self._it), runtime.get("inputs"), runtime.get("outputs"))
        self._rt = runtime
        self._dog = Watchdog(path)
        ins = {d["name"]: d for d in self._it.get_input_details()}
        if set(ins) != {"window", "rr"}:
            raise EdgeseqError(f"{path}: expected inputs window and rr, the model has {sorted(ins)}")
        self._win, self._rr = ins["window"]["index"], ins["rr"]["index"]
        self._out = self._it.get_output_details()[0]["index"]
        self._batch = int(ins["window"]["shape"][0])
        self._T, self._F = int(ins["window"]["shape"][1]), int(ins["rr"]["shape"][1])
        self._C = int(self._it.get_output_details()[0]["shape"][1])
        step = runtime.get("step")
        self._step_path = root / step if step else None
        self._threads = int(threads)
        self._step = None

    def _resize(self, b: int) -> None:
        # Re-planning the arena costs far more than a beat, so keep the last batch size.
        if b != self._batch:
            self._it.resize_tensor_input(self._win, [b, self._T])
            self._it.resize_tensor_input(self._rr, [b, self._F])
            self._it.allocate_tensors()
            self._batch = b

    def logits(self, windows: np.ndarray, rr: np.ndarray) -> np.ndarray:
        b = len(windows)
        if b == 0:
            return np.zeros((0, self._C), np.float32)
        self._resize(b)
        self._it.set_tensor(self._win, np.ascontiguousarray(windows, np.float32))
        self._it.set_tensor(self._rr, np.ascontiguousarray(rr, np.float32))
        with self._dog.tflite():
            self._it.invoke()
        return self._it.get_tensor(self._out).copy()  # get_tensor's array is the arena: the next call reuses it

    def step(self, u: np.ndarray, const: np.ndarray, state: np.ndarray) -> np.ndarray:
        """One reservoir update ``(u [B, 1], const [B, K], state [B, N]) -> state [B, N]`` on
        ``step.tflite``, loaded on the first call (most devices classify whole windows)."""
        if self._step is None:
            if self._step_path is None:
                raise EdgeseqError("this TFLite bundle has no step model")
            it = open_interpreter(self._step_path, self._threads)
            check_io(self._step_path, "step model", *io_of(it), self._rt.get("step_inputs"),
                     self._rt.get("step_outputs"))
            ins = {d["name"]: d for d in it.get_input_details()}
            if set(ins) != {"u", "const", "state"}:
                raise EdgeseqError(f"{self._step_path}: expected inputs u, const and state, "
                                   f"the model has {sorted(ins)}")
            self._step = (it, ins, it.get_output_details()[0]["index"], [int(ins["u"]["shape"][0])])
        it, ins, out, batch = self._step
        b = len(u)
        if b != batch[0]:
            for name, arr in (("u", u), ("const", const), ("state", state)):
                it.resize_tensor_input(ins[name]["index"], [b, arr.shape[1]])
            it.allocate_tensors()
            batch[0] = b
        for name, arr in (("u", u), ("const", const), ("state", state)):
            it.set_tensor(ins[name]["index"], np.ascontiguousarray(arr, np.float32))
        with self._dog.tflite():
            it.invoke()
        return it.get_tensor(out).copy()

    def run_step(self, feeds: dict) -> dict:
        """The step graph on named inputs -> every named output (models with several states);
        inputs are resized when the batch changes."""
        if self._step is None or len(self._step) != 2:
            if self._step_path is None:
                raise EdgeseqError("this TFLite bundle has no step model")
            it = open_interpreter(self._step_path, self._threads)
            check_io(self._step_path, "step model", *io_of(it), self._rt.get("step_inputs"),
                     self._rt.get("step_outputs"))
            self._step = (it, {})
        it, shapes = self._step
        ins = {d["name"]: d for d in it.get_input_details()}
        missing = set(ins) - set(feeds)
        if missing:
            raise EdgeseqError(f"{self._step_path}: step inputs {sorted(missing)} not given")
        want = {k: list(np.shape(feeds[k])) for k in ins}
        if want != shapes:
            for k, shape in want.items():
                if list(ins[k]["shape"]) != shape:
                    it.resize_tensor_input(ins[k]["index"], shape)
            it.allocate_tensors()
            shapes.clear()
            shapes.update(want)
        for k, d in ins.items():
            it.set_tensor(d["index"], np.ascontiguousarray(feeds[k], d["dtype"]))
        with self._dog.tflite():
            it.invoke()
        return {d["name"]: it.get_tensor(d["index"]).copy() for d in it.get_output_details()}
