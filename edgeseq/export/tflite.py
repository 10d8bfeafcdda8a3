"""Export an ESN bundle to a TFLite flatbuffer, written directly with the schema module that
``ai-edge-litert`` ships (``ai_edge_litert.schema_py_generated``, imported lazily): no TensorFlow
converter, which is a 1+ GB install for a graph of a dozen op kinds.

``model.tflite`` is the WINDOW model ``(window [B, T], rr [B, F]) -> logits [B, C]``, the same
function as ``model.onnx`` (see ``export/onnx.py``), unrolled over the T steps with builtin ops
only. Tensors carry batch 1 in ``shape`` and -1 in ``shape_signature``: interpreters run it as is
for one beat, ``resize_tensor_input`` gives any batch. Every step's FULLY_CONNECTED reads the same
constant buffer for ``W``, so the file holds the weights once.

One step (the reference's order, ``models/esn.py``)::

    u_t   = SPLIT(window)[t]                       [B, 1]
    d_t   = u_t * Win[:, 0] + cdrive               cdrive = const @ Win[:, 1:].T + bias, once
    x_t   = x + lr * (tanh(FC(x, W) + d_t) - x)    x_0 = lr * tanh(d_0) (x_{-1} = 0)
    acc_t = acc + x_t

The window is split into [B, 1] columns, not broadcast to a [B, T, N] drive up front: a device
running one beat then holds a few [1, N] tensors, not 126 of them.

``step.tflite`` (``build_step_tflite``, float32 in both bundles) is the STEP model
``(u [B, 1], const [B, K], state [B, N]) -> state_out [B, N]``: one reservoir update, as ONNX's
``step.onnx``.

int8 (``int8=True``, ``build_int8_while_tflite``) is TFLite's 16x8 scheme inside a WHILE loop whose
body is one step, so the file holds one step, not T: int8 recurrent weights with per-channel scales,
int16 state at the fixed scale 1/32767 (tanh keeps the state in (-1, 1)), the input drive computed
in float and quantized once per step, and a float readout fed by DEQUANTIZE-d last and mean states
and the float rr features (the ONNX export's recipe, see ``export/onnx.py``). LOG and DIV have no
int16 kernels, so the rr front end stays float; it runs once per beat. Drive, recurrent-product and
tanh-input scales come from running the graph's arithmetic in numpy over calibration beats
(``_ranges``), with 1.5x headroom.

Measured (DS1 bundle N=300, all 50977 DS1 beats, ai-edge-litert 2.3)::

    model                        file     vs numpy reference
    float32 (unrolled)           512 kB   max |logit error| 4.8e-6, labels 100%
    int8 WHILE (16x8, float RO)  120 kB   labels 99.86% (71 changed); per-class Se, +P within
                                          0.7 points of float, Q beats unchanged
    same, W per-tensor           120 kB   labels 99.83% (89 changed); S +P +2.3: per-channel it is
    int8 unrolled (16x8, int RO) 287 kB   labels 99.74%; S +P +2.2, Q +P -15 (previous export)
    ONNX float/int8              381/105 kB

Single-beat latency (one thread, builtin kernels without XNNPACK, shared 2-core VM, median of 300,
measured side by side): float32 825 us, int8 WHILE 1692 us, int8 unrolled 1994 us. The unrolled
16x8 form (removed) paid ~190 kB for its ~1260 per-step tensor tables on top of the weights.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from . import source_bundle
from ..bundle import WEIGHTS, sha256_file, write_bundle
from ..errors import EdgeseqError
from .onnx import _calibration_beats, _esn_parts, esn_runtime_section

MODEL = "model.tflite"
STEP = "step.tflite"
_I16 = 32767.0


def _schema():
    try:
        from ai_edge_litert import schema_py_generated as s
    except ImportError:
        raise EdgeseqError("TFLite export needs the schema module of ai-edge-litert "
                           "(pip install ai-edge-litert)") from None
    return s


class _Graph:
    """Tensors, buffers and operators of one subgraph, packed with the schema's object API."""

    def __init__(self, s, parent: "_Graph | None" = None):
        self.s = s
        self.tensors, self.ops = [], []
        # Subgraphs of one model share its buffers and operator codes.
        self.opcodes = parent.opcodes if parent is not None else {}
        # buffer 0: the empty buffer every activation tensor points to
        self.buffers = parent.buffers if parent is not None else [s.BufferT()]
        self.names: dict[str, int] = {}

    def _quant(self, scale, zero=0, dim=0):
        if scale is None:
            return None
        q = self.s.QuantizationParametersT()
        q.scale = [float(v) for v in np.atleast_1d(scale)]
        q.zeroPoint = [int(zero)] * len(q.scale)
        q.quantizedDimension = dim
        return q

    def _add(self, name, shape, ttype, buffer, scale=None, batch=False, dim=0):
        t = self.s.TensorT()
        t.name, t.type, t.buffer = name, ttype, buffer
        t.shape = [1, *shape] if batch else list(shape)
        if batch:
            t.shapeSignature = [-1, *shape]
        t.quantization = self._quant(scale, dim=dim)
        self.tensors.append(t)
        self.names[name] = len(self.tensors) - 1
        return len(self.tensors) - 1

    def const(self, name, arr, ttype, scale=None, dim=0):
        arr = np.ascontiguousarray(arr)
        b = _AlignedBuffer()
        b.data = np.frombuffer(arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes(), np.uint8)
        self.buffers.append(b)
        return self._add(name, arr.shape, ttype, len(self.buffers) - 1, scale, dim=dim)

    def act(self, name, shape, ttype, scale=None):
        """A [B, *shape] activation tensor (batch dynamic)."""
        return self._add(name, shape, ttype, 0, scale, batch=True)

    def op(self, code, inputs, outputs, opt_type=0, opts=None):
        s = self.s
        self.opcodes.setdefault(code, len(self.opcodes))
        o = s.OperatorT()
        o.opcodeIndex = self.opcodes[code]
        o.inputs, o.outputs = list(inputs), list(outputs)
        o.builtinOptionsType, o.builtinOptions = opt_type, opts
        self.ops.append(o)

    def subgraph(self, inputs, outputs, name):
        sg = self.s.SubGraphT()
        sg.tensors, sg.operators, sg.name = self.tensors, self.ops, name
        sg.inputs, sg.outputs = list(inputs), list(outputs)
        return sg

    def finish(self, inputs, outputs, description, *, in_names=("window", "rr"), out_names=("logits",),
               name="esn_window", more=()) -> bytes:
        """Pack the model: this graph is subgraph 0, ``more`` (``SubGraphT``s of graphs made with
        ``parent=self``) follow it in order."""
        import flatbuffers
        s = self.s
        sg = self.subgraph(inputs, outputs, name)
        m = s.ModelT()
        m.version = 3
        m.description = description
        m.subgraphs = [sg, *more]
        m.buffers = self.buffers
        codes = sorted(self.opcodes, key=self.opcodes.get)
        m.operatorCodes = []
        for code in codes:
            oc = s.OperatorCodeT()
            # deprecated_builtin_code is what readers before schema 3a look at; version 1 is
            # registered by every resolver, and kernels dispatch on tensor types, not versions.
            oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), 1
            m.operatorCodes.append(oc)
        sig = s.SignatureDefT()
        sig.signatureKey, sig.subgraphIndex = "serving_default", 0
        sig.inputs = [self._tmap(n, i) for n, i in zip(in_names, inputs)]
        sig.outputs = [self._tmap(n, i) for n, i in zip(out_names, outputs)]
        m.signatureDefs = [sig]
        b = flatbuffers.Builder(1 << 20)
        b.Finish(m.Pack(b), file_identifier=b"TFL3")
        return bytes(b.Output())

    def _tmap(self, name, idx):
        t = self.s.TensorMapT()
        t.name, t.tensorIndex = name, idx
        return t


class _AlignedBuffer:
    """A ``BufferT`` whose bytes start on a 16-byte boundary: the interpreter reads constant
    tensors in place, and SIMD kernels expect float and int8 weights aligned as the converter
    writes them."""

    data: np.ndarray

    def Pack(self, builder):
        from ai_edge_litert import schema_py_generated as s
        payload = self.data.tobytes()
        builder.StartVector(1, len(payload), 16)
        builder.head -= len(payload)
        builder.Bytes[builder.head:builder.head + len(payload)] = payload
        builder.vectorNumElems = len(payload)
        vec = builder.EndVector()
        s.BufferStart(builder)
        s.BufferAddData(builder, vec)
        return s.BufferEnd(builder)


# -- calibration -------------------------------------------------------------------------------------

def _ranges(p: dict, windows: np.ndarray, rr: np.ndarray, batch: int = 500) -> dict[str, float]:
    """max |value| of every quantized tensor of the graph, by the graph's arithmetic in float32."""
    T, lr = p["T"], np.float32(p["lr"])
    W, Win, bias = p["W"], p["Win"], p["bias"]
    amax: dict[str, float] = {}

    def see(name, v):
        amax[name] = max(amax.get(name, 0.0), float(np.abs(v).max()))

    for s in range(0, len(windows), batch):
        w = windows[s:s + batch].astype(np.float32)
        r = rr[s:s + batch].astype(np.float32)
        const = np.clip(np.log(np.maximum(r[:, p["cols"]] + np.float32(0.01), np.float32(1e-6))
                               / (p["ref"] + 0.01).astype(np.float32)), -3, 3).astype(np.float32)
        cd = const @ Win[:, 1:].T + bias
        see("window", w)
        see("cdrive", cd)
        see("rr", r)
        x = acc = None
        for t in range(T):
            ud = w[:, t:t + 1] * Win[:, 0]
            d = ud + cd
            see(f"ud{t}", ud)
            see(f"d{t}", d)
            if t == 0:
                x = lr * np.tanh(d)
            else:
                rec = x @ W.T
                pre = rec + d
                act = np.tanh(pre)
                dx = act - x
                ldx = lr * dx
                see(f"rec{t}", rec)
                see(f"pre{t}", pre)
                see(f"dx{t}", dx)
                see(f"ldx{t}", ldx)
                x = x + ldx
            see(f"x{t}", x)
            acc = x if t == 0 else acc + x
            if t:
                see(f"acc{t}", acc)
        mean = acc * np.float32(1.0 / T)
        see("mean", mean)
        logits = np.concatenate([x, mean, r], axis=1) @ p["Wout"] + p["bout"]
        see("logits", logits)
    return amax


# -- graph --------------------------------------------------------------------------------------------

def build_window_tflite(p: dict) -> bytes:
    """The float32 WINDOW model, unrolled over the T steps with one shared W buffer."""
    s = _schema()
    BO, TT, OT = s.BuiltinOperator, s.TensorType, s.BuiltinOptions
    N, K, T, lr = p["N"], p["K"], p["T"], float(p["lr"])
    if T is None:
        raise EdgeseqError("bundle manifest lacks model.input.window_length; cannot fix the window length")
    F = p["F"] or 9
    C = p["Wout"].shape[1]
    g = _Graph(s)
    F32, I32 = TT.FLOAT32, TT.INT32

    def act(name, shape):
        return g.act(name, shape, F32)

    def fc(inp, wname, w, bias, out):
        ins = [inp, g.const(wname, np.asarray(w, np.float32), F32)]
        ins.append(-1 if bias is None else g.const(wname + "_b", np.asarray(bias, np.float32), F32))
        g.op(BO.FULLY_CONNECTED, ins, [out], OT.FullyConnectedOptions, s.FullyConnectedOptionsT())

    def binop(code, a, b, out):
        if code == BO.ADD:
            o, t = s.AddOptionsT(), OT.AddOptions
        elif code == BO.SUB:
            o, t = s.SubOptionsT(), OT.SubOptions
        elif code == BO.MUL:
            o, t = s.MulOptionsT(), OT.MulOptions
        else:
            o, t = None, 0
        if hasattr(o, "potScaleInt16"):
            o.potScaleInt16 = False  # general int16 scales; the power-of-two path is for LSTMs
        g.op(code, [a, b], [out], t, o)

    # rr front end: the reservoir's constant inputs, log((rr[cols] + 0.01) / (ref + 0.01)) clipped.
    window = act("window", [T])
    rr = act("rr", [F])
    rr_sel = act("rr_sel", [K])
    go = s.GatherOptionsT()
    go.axis = 1
    g.op(BO.GATHER, [rr, g.const("rr_cols", p["cols"].astype(np.int32), I32)], [rr_sel], OT.GatherOptions, go)
    prev = rr_sel
    for name, code, val in (("rr_add", BO.ADD, 0.01), ("rr_max", BO.MAXIMUM, 1e-6),
                            ("rr_ratio", BO.DIV, None), ("rr_log", BO.LOG, None),
                            ("rr_lo", BO.MAXIMUM, -3.0), ("const", BO.MINIMUM, 3.0)):
        out = act(name, [K])
        if code == BO.LOG:
            g.op(code, [prev], [out])
        else:
            c = (p["ref"] + 0.01).astype(np.float32) if code == BO.DIV else np.array([val], np.float32)
            binop(code, prev, g.const(name + "_c", c, F32), out)
        prev = out
    const = prev
    cdrive = act("cdrive", [N])
    fc(const, "WinC", p["Win"][:, 1:], p["bias"], cdrive)

    cols = [act(f"u{t}", [1]) for t in range(T)]
    so = s.SplitOptionsT()
    so.numSplits = T
    g.op(BO.SPLIT, [g.const("axis1", np.array(1, np.int32), I32), window], cols, OT.SplitOptions, so)
    win_u = g.const("win_u", p["Win"][:, 0].astype(np.float32), F32)
    lr_t = g.const("lr", np.array([lr], np.float32), F32)
    invT = g.const("invT", np.array([1.0 / T], np.float32), F32)

    x = acc = None
    for t in range(T):
        ud = act(f"ud{t}", [N])
        binop(BO.MUL, cols[t], win_u, ud)
        d = act(f"d{t}", [N])
        binop(BO.ADD, ud, cdrive, d)
        xn = act(f"x{t}", [N])
        if t == 0:  # x_{-1} = 0: no recurrent product, the zero state needs no tensor
            a = act("act0", [N])
            g.op(BO.TANH, [d], [a])
            binop(BO.MUL, a, lr_t, xn)
        else:
            rec = act(f"rec{t}", [N])
            fc(x, "W", p["W"], None, rec) if t == 1 else _fc_shared(g, s, x, rec)
            pre = act(f"pre{t}", [N])
            binop(BO.ADD, rec, d, pre)
            a = act(f"act{t}", [N])
            g.op(BO.TANH, [pre], [a])
            dx = act(f"dx{t}", [N])
            binop(BO.SUB, a, x, dx)
            ldx = act(f"ldx{t}", [N])
            binop(BO.MUL, dx, lr_t, ldx)
            binop(BO.ADD, x, ldx, xn)
        x = xn
        if t == 0:
            acc = xn
        else:
            na = act(f"acc{t}", [N])
            binop(BO.ADD, acc, xn, na)
            acc = na

    mean = act("mean", [N])
    binop(BO.MUL, acc, invT, mean)
    feats = act("features", [2 * N + F])
    co = s.ConcatenationOptionsT()
    co.axis = 1
    g.op(BO.CONCATENATION, [x, mean, rr], [feats], OT.ConcatenationOptions, co)
    logits = act("logits", [C])
    fc(feats, "Wout", p["Wout"].T, p["bout"], logits)
    return g.finish([window, rr], [logits], "edgeseq ESN window model")


STATE_SCALE = 1.0 / _I16  # |x| < 1 always (x' = (1 - lr) x + lr tanh(.), 0 < lr <= 1, x_{-1} = 0)


def build_int8_while_tflite(p: dict, ranges: dict[str, float], *, per_channel: bool = True,
                            headroom: float = 1.5) -> bytes:
    """The 16x8 WINDOW model as a WHILE loop: subgraph 0 runs the float front end, the loop and the
    float readout; subgraph 1 is the loop condition (``i < T``), subgraph 2 one step. The file
    holds one step, not T of them.

    Loop variables: ``i`` (int32 [1]), ``x`` (int16, fixed scale ``STATE_SCALE``), ``acc`` (int16,
    scale T / 32767: |acc| < T), ``window`` and ``cdrive`` (float, read only). A step::

        d   = QUANTIZE(GATHER(window, i) * Win[:, 0] + cdrive)        float drive, rounded once
        x'  = x + lr * (TANH(FC(x, W) + d) - x)                       int16, W int8 per channel
        acc = acc + x'

    The readout is float: DEQUANTIZE(last), DEQUANTIZE(acc) / T and the float rr features into a
    float FULLY_CONNECTED (an int readout moved S +P by 2 points on DS1, as in the ONNX export).
    ``ranges`` (``_ranges``) sets the scales of the drive, the recurrent product and the tanh input,
    times ``headroom`` for beats outside the calibration set."""
    s = _schema()
    BO, TT, OT = s.BuiltinOperator, s.TensorType, s.BuiltinOptions
    N, K, T, lr = p["N"], p["K"], p["T"], float(p["lr"])
    if T is None:
        raise EdgeseqError("bundle manifest lacks model.input.window_length; cannot fix the window length")
    F = p["F"] or 9
    C = p["Wout"].shape[1]
    F32, I16, I8, I32, BOOL = TT.FLOAT32, TT.INT16, TT.INT8, TT.INT32, TT.BOOL

    def rng(prefix):
        v = max(ranges.get(f"{prefix}{t}", 0.0) for t in range(T))
        return max(v * headroom, 1e-6) / _I16

    s_d, s_rec, s_pre = rng("d"), rng("rec"), rng("pre")
    s_acc = T / _I16
    s_dx = 2.0 / _I16
    s_ldx = lr * s_dx

    def opts(code):
        o, t = {BO.ADD: (s.AddOptionsT, OT.AddOptions), BO.SUB: (s.SubOptionsT, OT.SubOptions),
                BO.MUL: (s.MulOptionsT, OT.MulOptions)}[code]
        o = o()
        if hasattr(o, "potScaleInt16"):
            o.potScaleInt16 = False
        return t, o

    def binop(g, code, a, b, out):
        t, o = opts(code)
        g.op(code, [a, b], [out], t, o)

    def fc(g, inp, w, b, out):
        g.op(BO.FULLY_CONNECTED, [inp, w, b], [out], OT.FullyConnectedOptions, s.FullyConnectedOptionsT())

    main = _Graph(s)
    cond = _Graph(s, main)
    body = _Graph(s, main)

    def loop_vars(g, pre):
        return [g._add(pre + "i", [1], I32, 0),
                g.act(pre + "x", [N], I16, STATE_SCALE), g.act(pre + "acc", [N], I16, s_acc),
                g.act(pre + "window", [T], F32), g.act(pre + "cdrive", [N], F32)]

    # -- main: float front end -------------------------------------------------------------------
    window = main.act("window", [T], F32)
    rr = main.act("rr", [F], F32)
    rr_sel = main.act("rr_sel", [K], F32)
    go = s.GatherOptionsT()
    go.axis = 1
    main.op(BO.GATHER, [rr, main.const("rr_cols", p["cols"].astype(np.int32), I32)], [rr_sel],
            OT.GatherOptions, go)
    prev = rr_sel
    for name, code, val in (("rr_add", BO.ADD, 0.01), ("rr_max", BO.MAXIMUM, 1e-6),
                            ("rr_ratio", BO.DIV, None), ("rr_log", BO.LOG, None),
                            ("rr_lo", BO.MAXIMUM, -3.0), ("const", BO.MINIMUM, 3.0)):
        out = main.act(name, [K], F32)
        if code == BO.LOG:
            main.op(code, [prev], [out])
        elif code in (BO.ADD,):
            binop(main, code, prev, main.const(name + "_c", np.array([val], np.float32), F32), out)
        else:
            c = (p["ref"] + 0.01).astype(np.float32) if code == BO.DIV else np.array([val], np.float32)
            main.op(code, [prev, main.const(name + "_c", c, F32)], [out])
        prev = out
    cdrive = main.act("cdrive", [N], F32)
    fc(main, prev, main.const("WinC", p["Win"][:, 1:].astype(np.float32), F32),
       main.const("WinC_b", p["bias"].astype(np.float32), F32), cdrive)
    zero_f = main.act("zero_f", [N], F32)
    binop(main, BO.MUL, cdrive, main.const("zero", np.array([0.0], np.float32), F32), zero_f)
    x0 = main.act("x_init", [N], I16, STATE_SCALE)
    main.op(BO.QUANTIZE, [zero_f], [x0])
    acc0 = main.act("acc_init", [N], I16, s_acc)
    main.op(BO.QUANTIZE, [zero_f], [acc0])
    i0 = main.const("i_init", np.array([0], np.int32), I32)
    outs = loop_vars(main, "out_")

    # -- cond: i < T -----------------------------------------------------------------------------
    cv = loop_vars(cond, "")
    more = cond._add("more", [1], BOOL, 0)
    cond.op(BO.LESS, [cv[0], cond.const("T", np.array([T], np.int32), I32)], [more])

    # -- body: one step ---------------------------------------------------------------------------
    i, x, acc, win, cd = loop_vars(body, "")
    u = body.act("u", [1], F32)
    go = s.GatherOptionsT()
    go.axis = 1
    body.op(BO.GATHER, [win, i], [u], OT.GatherOptions, go)
    ud = body.act("ud", [N], F32)
    binop(body, BO.MUL, u, body.const("win_u", p["Win"][:, 0].astype(np.float32), F32), ud)
    d_f = body.act("d_f", [N], F32)
    binop(body, BO.ADD, ud, cd, d_f)
    d = body.act("d", [N], I16, s_d)
    body.op(BO.QUANTIZE, [d_f], [d])
    W = np.asarray(p["W"], np.float32)
    if per_channel:
        ws = np.maximum(np.abs(W).max(axis=1), 1e-12) / 127.0
        wq = np.clip(np.round(W / ws[:, None]), -127, 127).astype(np.int8)
    else:
        ws = np.array([max(float(np.abs(W).max()), 1e-12) / 127.0])
        wq = np.clip(np.round(W / ws[0]), -127, 127).astype(np.int8)
    rec = body.act("rec", [N], I16, s_rec)
    fc(body, x, body.const("W", wq, I8, ws, dim=0), -1, rec)
    pre = body.act("pre", [N], I16, s_pre)
    binop(body, BO.ADD, rec, d, pre)
    a = body.act("act", [N], I16, 1.0 / 32768)  # the int16 TANH kernel's fixed output scale
    body.op(BO.TANH, [pre], [a])
    dx = body.act("dx", [N], I16, s_dx)
    binop(body, BO.SUB, a, x, dx)
    lr_t = body.const("lr", np.array([_I16], np.int16), I16, lr / _I16)
    ldx = body.act("ldx", [N], I16, s_ldx)
    binop(body, BO.MUL, dx, lr_t, ldx)
    xn = body.act("x_next", [N], I16, STATE_SCALE)
    binop(body, BO.ADD, x, ldx, xn)
    accn = body.act("acc_next", [N], I16, s_acc)
    binop(body, BO.ADD, acc, xn, accn)
    inext = body._add("i_next", [1], I32, 0)
    binop(body, BO.ADD, i, body.const("one", np.array([1], np.int32), I32), inext)

    wo = s.WhileOptionsT()
    wo.condSubgraphIndex, wo.bodySubgraphIndex = 1, 2
    main.op(BO.WHILE, [i0, x0, acc0, window, cdrive], outs, OT.WhileOptions, wo)

    # -- main: float readout ------------------------------------------------------------------------
    last = main.act("last", [N], F32)
    main.op(BO.DEQUANTIZE, [outs[1]], [last])
    acc_f = main.act("acc_f", [N], F32)
    main.op(BO.DEQUANTIZE, [outs[2]], [acc_f])
    mean = main.act("mean", [N], F32)
    binop(main, BO.MUL, acc_f, main.const("invT", np.array([1.0 / T], np.float32), F32), mean)
    feats = main.act("features", [2 * N + F], F32)
    co = s.ConcatenationOptionsT()
    co.axis = 1
    main.op(BO.CONCATENATION, [last, mean, rr], [feats], OT.ConcatenationOptions, co)
    logits = main.act("logits", [C], F32)
    fc(main, feats, main.const("Wout", p["Wout"].T.astype(np.float32), F32),
       main.const("Wout_b", p["bout"].astype(np.float32), F32), logits)
    more_graphs = [cond.subgraph(cv, [more], "esn_cond"),
                   body.subgraph([i, x, acc, win, cd], [inext, xn, accn, win, cd], "esn_step")]
    return main.finish([window, rr], [logits], "edgeseq ESN window model (WHILE loop, int8 weights, "
                       "int16 state, float readout)", more=more_graphs)


def build_step_tflite(p: dict) -> bytes:
    """The STEP model ``(u [B, 1], const [B, K], state [B, N]) -> state_out [B, N]`` (float32), one
    reservoir update in the window model's arithmetic: ``x + lr * (tanh(FC(x, W) + d) - x)`` with
    ``d = u * Win[:, 0] + FC(const, Win[:, 1:], bias)``."""
    s = _schema()
    BO, TT, OT = s.BuiltinOperator, s.TensorType, s.BuiltinOptions
    N, K, F32 = p["N"], p["K"], TT.FLOAT32
    g = _Graph(s)
    u, const, state = g.act("u", [1], F32), g.act("const", [K], F32), g.act("state", [N], F32)

    def fc(inp, name, w, bias, out):
        ins = [inp, g.const(name, np.asarray(w, np.float32), F32)]
        ins.append(-1 if bias is None else g.const(name + "_b", np.asarray(bias, np.float32), F32))
        g.op(BO.FULLY_CONNECTED, ins, [out], OT.FullyConnectedOptions, s.FullyConnectedOptionsT())

    def binop(code, a, b, out):
        o, t = {BO.ADD: (s.AddOptionsT(), OT.AddOptions), BO.SUB: (s.SubOptionsT(), OT.SubOptions),
                BO.MUL: (s.MulOptionsT(), OT.MulOptions)}[code]
        g.op(code, [a, b], [out], t, o)

    t = {n: g.act(n, [N], F32) for n in ("cdrive", "ud", "d", "rec", "pre", "act", "dx", "ldx", "state_out")}
    fc(const, "WinC", p["Win"][:, 1:], p["bias"], t["cdrive"])
    binop(BO.MUL, u, g.const("win_u", p["Win"][:, 0].astype(np.float32), F32), t["ud"])
    binop(BO.ADD, t["ud"], t["cdrive"], t["d"])
    fc(state, "W", p["W"], None, t["rec"])
    binop(BO.ADD, t["rec"], t["d"], t["pre"])
    g.op(BO.TANH, [t["pre"]], [t["act"]])
    binop(BO.SUB, t["act"], state, t["dx"])
    binop(BO.MUL, t["dx"], g.const("lr", np.array([p["lr"]], np.float32), F32), t["ldx"])
    binop(BO.ADD, state, t["ldx"], t["state_out"])
    return g.finish([u, const, state], [t["state_out"]], "edgeseq ESN step model",
                    in_names=("u", "const", "state"), out_names=("state_out",), name="esn_step")


def _fc_shared(g: _Graph, s, x: int, out: int) -> None:
    """A step's recurrent product on the W tensor made by step 1: one buffer, T - 1 readers."""
    ins = [x, g.names["W"]]
    ins.append(g.names["W_b"] if "W_b" in g.names else -1)
    g.op(s.BuiltinOperator.FULLY_CONNECTED, ins, [out], s.BuiltinOptions.FullyConnectedOptions,
         s.FullyConnectedOptionsT())


# -- bundle --------------------------------------------------------------------------------------------

def export_esn_tflite(bundle_path, out_dir, *, int8: bool = False, calibration=None) -> Path:
    """Write an exported bundle: the source manifest plus a ``runtime`` section (``format``
    ``"tflite"``), ``model.tflite`` and the source ``weights.npz``.

    ``calibration`` (int8 only): ``(windows, rr)`` arrays, or ``(data_dir, records)`` to read beats.
    """
    src, bundle, manifest = source_bundle(bundle_path, out_dir)
    p = _esn_parts(manifest, bundle.arrays)
    ranges = None
    if int8:
        windows, rr = _calibration_beats(calibration, manifest)
        ranges = _ranges(p, windows, rr)
    data = build_int8_while_tflite(p, ranges) if int8 else build_window_tflite(p)
    weights_name = manifest["model"].get("weights", WEIGHTS)
    manifest["runtime"] = esn_runtime_section(p, "tflite", int8=int8, model=MODEL, step=STEP,
                                              graph_form="while" if int8 else "unrolled",
                                              source_sha256=sha256_file(src / weights_name))
    if int8:
        manifest["runtime"]["quantization"] = {
            "tool": "edgeseq.export.tflite", "format": "tflite 16x8",
            "weights": "int8 symmetric", "weight_scales": "per-channel",
            "activations": "int16", "state_scale": STATE_SCALE,
            "float_ops": "rr front end (gather, log, clip), the reservoir's input drive, the readout",
            "calibration_beats": int(len(windows))}
    with tempfile.TemporaryDirectory(prefix="edgeseq_tflite_") as work:
        path = Path(work) / MODEL
        path.write_bytes(data)
        step = Path(work) / STEP
        step.write_bytes(build_step_tflite(p))
        return write_bundle(Path(out_dir), manifest, bundle.arrays, files={MODEL: path, STEP: step})
