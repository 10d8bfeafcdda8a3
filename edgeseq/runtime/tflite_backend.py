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
    """The builtin kernels without the default XNNPACK delegate: on an unrolled graph (~1100
    small ops) XNNPACK's per-op overhead outweighs its kernels (the DS1 ESN, one beat, one
    thread: 2.8x slower with it)."""
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
    """The bundle's model files as interpreters, opened on first use and checked against the
    manifest; inputs are resized when the batch changes (re-planning the arena costs far more than
    a window, so the last shapes are kept)."""

    def __init__(self, root: Path, runtime: dict, *, threads: int = 1):
        self._root, self._rt, self._threads = root, runtime, int(threads)
        self._open: dict = {}
        self._interpreter("model" if runtime.get("model") else "step")

    def _interpreter(self, which: str):
        if which not in self._open:
            path = self._root / self._rt[which]
            it = open_interpreter(path, self._threads)
            io = ("inputs", "outputs") if which == "model" else ("step_inputs", "step_outputs")
            check_io(path, "model" if which == "model" else "step model", *io_of(it), self._rt.get(io[0]),
                     self._rt.get(io[1]))
            self._open[which] = (it, {d["name"]: d for d in it.get_input_details()}, {}, Watchdog(path))
        return self._open[which]

    def run(self, which: str, feeds: dict) -> dict:
        it, ins, shapes, dog = self._interpreter(which)
        want = {k: list(np.shape(feeds[k])) for k in ins}
        if want != shapes:
            for k, shape in want.items():
                it.resize_tensor_input(ins[k]["index"], shape)
            it.allocate_tensors()
            shapes.clear()
            shapes.update(want)
        for k, d in ins.items():
            it.set_tensor(d["index"], np.ascontiguousarray(feeds[k], d["dtype"]))
        with dog.tflite():
            it.invoke()
        # get_tensor's array is the arena: the next invoke reuses it
        return {d["name"]: it.get_tensor(d["index"]).copy() for d in it.get_output_details()}
