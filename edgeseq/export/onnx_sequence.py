"""Export a SEQUENCE bundle (reservoir + linear readout, an output at every step; e.g. from
:func:`edgeseq.interop.reservoirpy.from_reservoirpy`) to ONNX. Host side; ``onnx`` is imported
lazily.

Graph ``x [T, D] float32 -> y [T, O] float32``, T dynamic::

    drive = x @ Win.T + bias                      [T, N], all steps at once
    Scan over drive, state s [N] (zero at start):
        s' = (1 - lr) * s + lr * f(s @ W.T + drive[t])
    S = stacked states                            [T, N]
    y = S @ Wout[:N] (+ x @ Wout[N:]) + bout

The step keeps reservoirpy's order of operations (``(1 - lr) * s + lr * f(...)``), so float32
differs from reservoirpy's float64 by float32 rounding only.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from . import source_bundle
from ..bundle import WEIGHTS, sha256_file, write_bundle
from ..errors import EdgeseqError
from ..runtime.sequence import ACTIVATIONS

OPSET = 17
MODEL = "model.onnx"
_ONNX_ACT = {"tanh": "Tanh", "identity": "Identity", "sigmoid": "Sigmoid", "relu": "Relu"}


def _init(name, arr):
    from onnx import numpy_helper
    return numpy_helper.from_array(np.ascontiguousarray(arr), name)


def _parts(manifest: dict, arrays: dict) -> dict:
    kind = manifest["model"]["kind"]
    if (manifest["task"], kind) not in (("sequence", "reservoirpy"), ("balance", "esn")):
        raise EdgeseqError(f"sequence export supports reservoirpy sequence bundles and balance ESN bundles, "
                           f"this one is task {manifest['task']!r}, kind {kind!r}")
    params = manifest["model"]["params"]
    act = params.get("activation", "tanh")
    if act not in ACTIVATIONS:
        raise EdgeseqError(f"activation {act!r} cannot be exported (known: {', '.join(ACTIVATIONS)})")
    try:
        p = {k: np.asarray(arrays[k], np.float32) for k in ("W", "Win", "bias", "lr", "Wout", "bout")}
    except KeyError as exc:
        raise EdgeseqError(f"sequence bundle lacks array {exc.args[0]}") from None
    N, D = p["Win"].shape
    O = p["Wout"].shape[1]
    to_readout = bool(params.get("input_to_readout", False))
    if p["W"].shape != (N, N) or p["bias"].shape != (N,) or p["lr"].shape != (N,) or \
            p["Wout"].shape[0] != N + (D if to_readout else 0) or p["bout"].shape != (O,):
        raise EdgeseqError("sequence bundle arrays have inconsistent shapes")
    return {**p, "N": N, "D": D, "O": O, "act": _ONNX_ACT[act], "to_readout": to_readout}


def build_sequence_model(p: dict):
    import onnx
    from onnx import TensorProto, helper

    f = TensorProto.FLOAT
    N, D, O = p["N"], p["D"], p["O"]
    body = helper.make_graph(
        [helper.make_node("MatMul", ["s", "WT"], ["rec"]),
         helper.make_node("Add", ["rec", "d"], ["pre"]),
         helper.make_node(p["act"], ["pre"], ["act"]),
         helper.make_node("Mul", ["keep", "s"], ["old"]),
         helper.make_node("Mul", ["lr", "act"], ["new"]),
         helper.make_node("Add", ["old", "new"], ["s_next"]),
         helper.make_node("Identity", ["s_next"], ["s_out"])],
        "step",
        [helper.make_tensor_value_info("s", f, [N]), helper.make_tensor_value_info("d", f, [N])],
        [helper.make_tensor_value_info("s_next", f, [N]), helper.make_tensor_value_info("s_out", f, [N])])
    # Body reads W, lr, 1 - lr from the outer scope: one copy of the weights in the file.
    inits = [_init("WT", p["W"].T), _init("WinT", p["Win"].T), _init("bias", p["bias"]),
             _init("lr", p["lr"]), _init("keep", (np.float32(1) - p["lr"]).astype(np.float32)),
             _init("s0", np.zeros(N, np.float32)), _init("Wout_s", p["Wout"][:N]), _init("bout", p["bout"])]
    nodes = [helper.make_node("MatMul", ["x", "WinT"], ["xin"]),
             helper.make_node("Add", ["xin", "bias"], ["drive"]),
             helper.make_node("Scan", ["s0", "drive"], ["s_last", "S"], body=body, num_scan_inputs=1),
             helper.make_node("MatMul", ["S", "Wout_s"], ["ys"])]
    if p["to_readout"]:
        inits.append(_init("Wout_x", p["Wout"][N:]))
        nodes += [helper.make_node("MatMul", ["x", "Wout_x"], ["yx"]),
                  helper.make_node("Add", ["ys", "yx"], ["ysx"]),
                  helper.make_node("Add", ["ysx", "bout"], ["y"])]
    else:
        nodes.append(helper.make_node("Add", ["ys", "bout"], ["y"]))
    graph = helper.make_graph(nodes, "reservoir_sequence",
                              [helper.make_tensor_value_info("x", f, ["T", D])],
                              [helper.make_tensor_value_info("y", f, ["T", O])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="edgeseq")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def export_sequence_onnx(bundle_path, out_dir) -> Path:
    """Write an exported bundle: the source manifest plus a ``runtime`` section, ``model.onnx`` and
    the source arrays (the numpy :class:`~edgeseq.runtime.sequence.SequenceReference` keeps working
    from the same directory)."""
    import onnx

    src, bundle, manifest = source_bundle(bundle_path, out_dir)
    p = _parts(manifest, bundle.arrays)
    with tempfile.TemporaryDirectory(prefix="edgeseq_onnx_seq_") as work:
        path = Path(work) / MODEL
        onnx.save(build_sequence_model(p), path)
        manifest["runtime"] = {
            "format": "onnx", "precision": "float32", "model": MODEL, "graph_form": "scan",
            "source_sha256": sha256_file(src / bundle.manifest["model"].get("weights", WEIGHTS)),
            "initial_state": "zero",
            "inputs": {"x": {"shape": ["T", p["D"]], "dtype": "float32"}},
            "outputs": {"y": {"shape": ["T", p["O"]], "dtype": "float32"}},
        }
        return write_bundle(Path(out_dir), manifest, bundle.arrays, files={MODEL: path})
