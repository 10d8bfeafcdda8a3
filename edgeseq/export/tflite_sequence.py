"""Export a SEQUENCE bundle (reservoir + linear readout, an output at every step; e.g. from
:func:`edgeseq.interop.reservoirpy.from_reservoirpy`) to a TFLite flatbuffer, written directly with
the schema module of ``ai-edge-litert`` (imported lazily; the builder helpers are those of
``export/tflite.py``). No TensorFlow converter.

The sequence length varies from call to call, so ``model.tflite`` is the STEP model, float32::

    (x [1, D], state [1, N]) -> (state_out [1, N], y [1, O])

    drive     = FC(x, Win, bias)                   x @ Win.T + bias
    pre       = FC(state, W) + drive
    state_out = (1 - lr) * state + lr * f(pre)     reservoirpy's order of operations
    y         = FC([state_out, x], Wout.T, bout)   the x rows only when input_to_readout

Tensors carry batch 1 in ``shape`` and -1 in ``shape_signature`` (``resize_tensor_input`` runs
several independent sequences at once). The runtime (:mod:`edgeseq.runtime.sequence`) loops it
over the T steps from the zero state, carrying ``state_out`` into ``state``, so ``run(X)`` has the
contract of the ONNX Scan export (``export/onnx_sequence.py``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from . import source_bundle
from ..bundle import WEIGHTS, sha256_file, write_bundle
from .onnx_sequence import _parts
from .tflite import _Graph, _schema

MODEL = "model.tflite"
INPUTS = ("x", "state")
OUTPUTS = ("state_out", "y")


class _StepGraph(_Graph):
    """``_Graph`` with the step model's names in the subgraph and its signature."""

    def finish(self, inputs, outputs, description) -> bytes:
        import flatbuffers
        s = self.s
        sg = s.SubGraphT()
        sg.tensors, sg.operators, sg.name = self.tensors, self.ops, "reservoir_step"
        sg.inputs, sg.outputs = list(inputs), list(outputs)
        m = s.ModelT()
        m.version = 3
        m.description = description
        m.subgraphs = [sg]
        m.buffers = self.buffers
        m.operatorCodes = []
        for code in sorted(self.opcodes, key=self.opcodes.get):
            oc = s.OperatorCodeT()
            oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), 1
            m.operatorCodes.append(oc)
        sig = s.SignatureDefT()
        sig.signatureKey, sig.subgraphIndex = "serving_default", 0
        sig.inputs = [self._tmap(n, i) for n, i in zip(INPUTS, inputs)]
        sig.outputs = [self._tmap(n, i) for n, i in zip(OUTPUTS, outputs)]
        m.signatureDefs = [sig]
        b = flatbuffers.Builder(1 << 16)
        b.Finish(m.Pack(b), file_identifier=b"TFL3")
        return bytes(b.Output())


def build_step_tflite(p: dict) -> bytes:
    """The float32 STEP model of ``p`` (from ``onnx_sequence._parts``)."""
    s = _schema()
    BO, OT, F32 = s.BuiltinOperator, s.BuiltinOptions, s.TensorType.FLOAT32
    N, D, O = p["N"], p["D"], p["O"]
    g = _StepGraph(s)

    def fc(inp, w, bias, out, wname):
        ins = [inp, g.const(wname, np.asarray(w, np.float32), F32)]
        ins.append(-1 if bias is None else g.const(wname + "_b", np.asarray(bias, np.float32), F32))
        g.op(BO.FULLY_CONNECTED, ins, [out], OT.FullyConnectedOptions, s.FullyConnectedOptionsT())

    def binop(code, a, b, out):
        o, t = (s.AddOptionsT(), OT.AddOptions) if code == BO.ADD else (s.MulOptionsT(), OT.MulOptions)
        g.op(code, [a, b], [out], t, o)

    x = g.act("x", [D], F32)
    state = g.act("state", [N], F32)
    drive = g.act("drive", [N], F32)
    fc(x, p["Win"], p["bias"], drive, "Win")
    rec = g.act("rec", [N], F32)
    fc(state, p["W"], None, rec, "W")
    pre = g.act("pre", [N], F32)
    binop(BO.ADD, rec, drive, pre)
    act_op = {"Tanh": BO.TANH, "Sigmoid": BO.LOGISTIC, "Relu": BO.RELU, "Identity": None}[p["act"]]
    if act_op is None:
        a = pre
    else:
        a = g.act("act", [N], F32)
        g.op(act_op, [pre], [a])
    old = g.act("old", [N], F32)
    binop(BO.MUL, state, g.const("keep", (np.float32(1) - p["lr"]).astype(np.float32), F32), old)
    new = g.act("new", [N], F32)
    binop(BO.MUL, a, g.const("lr", p["lr"].astype(np.float32), F32), new)
    state_out = g.act("state_out", [N], F32)
    binop(BO.ADD, old, new, state_out)
    y = g.act("y", [O], F32)
    if p["to_readout"]:
        feats = g.act("features", [N + D], F32)
        co = s.ConcatenationOptionsT()
        co.axis = 1
        g.op(BO.CONCATENATION, [state_out, x], [feats], OT.ConcatenationOptions, co)
        fc(feats, p["Wout"].T, p["bout"], y, "WoutT")
    else:
        fc(state_out, p["Wout"].T, p["bout"], y, "WoutT")
    return g.finish([x, state], [state_out, y], "edgeseq reservoir sequence step model")


def export_sequence_tflite(bundle_path, out_dir) -> Path:
    """Write an exported bundle: the source manifest plus a ``runtime`` section (``format``
    ``"tflite"``, ``graph_form`` ``"step"``), ``model.tflite`` and the source arrays."""
    src, bundle, manifest = source_bundle(bundle_path, out_dir)
    p = _parts(manifest, bundle.arrays)
    data = build_step_tflite(p)
    N, D, O = p["N"], p["D"], p["O"]
    manifest["runtime"] = {
        "format": "tflite", "precision": "float32", "model": MODEL, "graph_form": "step",
        "source_sha256": sha256_file(src / bundle.manifest["model"].get("weights", WEIGHTS)),
        "initial_state": "zero",
        # run(X): x [T, D] -> y [T, O], the step model looped over T by the runtime
        "inputs": {"x": {"shape": ["T", D], "dtype": "float32"}},
        "outputs": {"y": {"shape": ["T", O], "dtype": "float32"}},
        # the file itself: one step
        "step_inputs": {"x": {"shape": [1, D], "dtype": "float32"},
                        "state": {"shape": [1, N], "dtype": "float32"}},
        "step_outputs": {"state_out": {"shape": [1, N], "dtype": "float32"},
                         "y": {"shape": [1, O], "dtype": "float32"}},
    }
    with tempfile.TemporaryDirectory(prefix="edgeseq_tflite_seq_") as work:
        path = Path(work) / MODEL
        path.write_bytes(data)
        return write_bundle(Path(out_dir), manifest, bundle.arrays, files={MODEL: path})
