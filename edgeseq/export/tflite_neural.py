"""Export an LSTM or TCN beat classifier (``models/lstm.py``, ``models/tcn.py``) to TFLite, written
directly with the schema module of ``ai-edge-litert`` and the builder of ``export/tflite.py``
(``_Graph``): no TensorFlow converter, builtin operators only.

An exported bundle holds:

- ``model.tflite``, the WINDOW model ``(window [B, T], rr [B, F]) -> logits [B, C]``, the function
  of ``est.decision_function``; batch 1 in ``shape``, -1 in ``shape_signature`` (any batch).
- ``step.tflite``, the STEP model, float32 in both bundles: ``(u [B, 1], states) -> (out [B, H],
  <state>_out)``. LSTM states ``h0, c0, h1, c1 ..`` [B, H]; TCN ring buffers ``buf{l}``
  [B, (K-1) 2**l, C_in] and an int32 ``pos`` [1] = t mod (K-1) 2**(L-1), read and written as
  ``TCNStream.push`` does (GATHER at ``FLOOR_MOD(pos - j d, n)``, DYNAMIC_UPDATE_SLICE at
  ``pos mod n``): O(blocks x kernel) a step. ``edgeseq/runtime/neural.py`` feeds it by name.
- the source ``weights.npz``: the head for ``readout(last, mean, rr)`` after streamed steps.

Window forms, chosen by single-beat latency (ai-edge-litert 2.3, one thread, builtin kernels
without XNNPACK as ``runtime/tflite_backend.py`` opens them, shared 2-core VM, median of 200-500
beats; small presets: LSTM 1 x 32, TCN 6 blocks x 24 channels, K=3, T=126)::

    LSTM                                               median    file
    unrolled: per step CONCAT, FC, SPLIT_V, LOGISTIC,   200 us   236 kB   <- float
      TANH, SPLIT, 3 MUL, ADD, TANH; ADD_N for the mean
    WHILE loop over one stored step                     262 us    50 kB
    UNIDIRECTIONAL_SEQUENCE_LSTM (builtin)              131 us      -     refused: see below
    numpy reference                                    1540 us
    TCN
    CONV_2D on [B, 1, T, C], dilation on W, PAD left     89 us    51 kB   <- float
    CONV_2D on [B, T, 1, C], dilation on H               94 us    51 kB
    per block PAD, K STRIDED_SLICE, CONCAT, one FC      315 us    58 kB
    numpy reference                                     188 us

int8 (``int8=True``): TFLite's 16x8 scheme, int8 weights per output channel everywhere (int64
biases), int16 activations, calibrated on real beats (``lstm_ranges`` / ``tcn_ranges``: max |x|
of every tensor by the reference arithmetic, times ``HEADROOM``). Float stays only where no
integer form fits: ``window * in_scale`` and the rr side features before their QUANTIZE (rr is
raw seconds, unbounded; z is clipped to +-4 after), the DEQUANTIZE of the logits. The LSTM is a
WHILE loop over one stored 16x8 step (``build_lstm_int8``), the TCN the float graph on int16.

Measured on all 50,977 DS1 beats with the DS1 bundles (small presets), calibration 2000 beats
spread over DS1, against the float export (which equals numpy: max |logit error| 5e-5, labels
100%)::

    model            file float / int8        labels changed   worst per-class move (points)
    LSTM 16x8 WHILE  236 kB / 22.8 kB  9.7%   25 (99.95% same)  S +P -0.39
    TCN  16x8        50.7 kB / 27.3 kB 53.9%  7 (99.986% same)  F +P -0.54, S +P +0.35
    rejected:
    TCN int8 activations (CONV_2D int8)        485              Q Se -50, S Se -8.1, F +P +6.3
    LSTM int8 activations (numpy simulation)   2835
    TCN int8 weights, float compute            11               F +P -0.71 (DEQUANTIZE once)

Latency of the int8 models (as above): LSTM 445 us (float 200 us), TCN 855 us (float 92 us):
ai-edge-litert has only reference kernels for 16x8 CONV_2D and FULLY_CONNECTED. The TCN's
int8 file stays at 54%: its ~11k weights are 12.7 kB in int8 and int64 biases, the per-channel
scale and int64 zero-point tables add 5.7 kB, and the graph's tensors and operators cost what
they cost in the float file. Step models (float, raw invoke, B=1): LSTM 2.5 us, TCN 7.3 us.

What TFLite could not do, and the way around it:

- UNIDIRECTIONAL_SEQUENCE_LSTM keeps h and c in *variable* tensors: they carry over from one
  invoke to the next (a second beat starts from the first one's state; logits off by up to 1e-3
  on sample beats) and cannot be resized with the batch (``NumElements(output_state) != n_batch *
  n_output``); its int8 form needs the converter's per-gate intermediate scales. So the cell is
  spelled out in plain operators, float and 16x8.
- int8 activations lose the TCN's residual stream (it grows to ~150 with a heavy tail) and the
  LSTM's cell state: 16x8 instead (int16 LOGISTIC and TANH have fixed 1/32768 output scales).
- CONCATENATION of int16 does not rescale its inputs: LSTM layer 0 adds FC(x, Wih0) and FC(h,
  Whh0) (x and h on different scales), layers above concatenate two h at 1/32767; the head
  takes z through an FC of its own (see ``_head``).
- No int16 kernel fits rr (unbounded); the side features stay float and are quantized once clipped.
- 16x8 kernels are reference code (see the latencies above).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from . import source_bundle
from ..bundle import WEIGHTS, sha256_file, write_bundle
from .neural import neural_model, neural_runtime_section, step_states
from ..models.neural import SIDE_CLIP
from .onnx import _calibration_beats
from .tflite import MODEL, STEP, _Graph, _schema

_Q16, _Q8 = 32767.0, 127.0
#: Calibrated ranges are widened by this for beats outside the calibration set. More costs
#: resolution: on the DS1 TCN 3x changed 10 labels where 1.5x changed 7.
HEADROOM = 1.5
FORMS = {"lstm": ("unrolled", "while"), "tcn": ("conv2d", "conv2d")}  # (float, int8) window forms


# -- the model --------------------------------------------------------------------------------------------

def _model(manifest: dict, arrays: dict) -> dict:
    """The numpy reference of the bundle (``est``) with the sizes every graph reads."""
    est, T, F = neural_model(manifest, arrays, "TFLite")
    return {"kind": est.KIND, "est": est, "T": T, "F": F, "H": est.hidden_size,
            "C": int(est.head_W2_.shape[1])}


def _lstm_layer(est, l: int):
    """Layer ``l``'s ``(Wih, Whh, b)`` with the gate rows reordered ``i, f, o, g``: one LOGISTIC
    over the first 3H, one TANH over the last H."""
    H = est.hidden_size
    rows = np.r_[0:2 * H, 3 * H:4 * H, 2 * H:3 * H]
    return tuple(a[rows] for a in est.layer_weights(l))


# -- builder ---------------------------------------------------------------------------------------------

def _qweight(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per output channel (axis 0: FULLY_CONNECTED rows, CONV_2D output channels)."""
    w = np.asarray(w, np.float32)
    amax = np.abs(w.reshape(len(w), -1)).max(axis=1)
    scale = np.where(amax > 0, amax / _Q8, 1.0).astype(np.float32)
    return np.clip(np.round(w / scale.reshape(-1, *[1] * (w.ndim - 1))), -_Q8, _Q8).astype(np.int8), scale


def _scale(amax: float) -> float:
    return max(float(amax) * HEADROOM, 1e-6) / _Q16


class _Ops(_Graph):
    """``_Graph`` with the operators of these graphs; each helper returns its output tensor.

    ``ranges`` None builds float32 tensors; else int16 ones (TFLite's 16x8 scheme), whose scale is
    ``_scale(ranges[key])`` for the ``key`` a tensor is made with, or a fixed scale."""

    def __init__(self, s, parent=None, ranges: dict | None = None):
        super().__init__(s, parent)
        self.BO, self.OT, self.TT = s.BuiltinOperator, s.BuiltinOptions, s.TensorType
        self.A = s.ActivationFunctionType
        self.ranges = ranges

    # -- tensors
    def f(self, name, shape):
        return self.act(name, shape, self.TT.FLOAT32)

    def v(self, name, shape, key=None, scale=None):
        """An activation: float, or int16 at ``scale`` / the calibrated range of ``key``."""
        if self.ranges is None:
            return self.f(name, shape)
        return self.act(name, shape, self.TT.INT16, scale if scale is not None else _scale(self.ranges[key]))

    def same(self, name, x, shape=None):
        """A tensor of ``x``'s type and scale."""
        t = self.tensors[x]
        return self.act(name, list(t.shape[1:]) if shape is None else shape, t.type,
                        None if t.quantization is None else t.quantization.scale)

    def scale_of(self, x) -> float:
        return float(self.tensors[x].quantization.scale[0])

    def i32(self, name, arr):
        return self.const(name, np.asarray(arr, np.int32), self.TT.INT32)

    def f32(self, name, arr):
        return self.const(name, np.asarray(arr, np.float32), self.TT.FLOAT32)

    def index(self, name, shape):
        return self._add(name, shape, self.TT.INT32, 0)

    def weight(self, name, w, x, bias=None):
        """``(weights, bias)`` of an FC / CONV_2D reading ``x``: float32, or int8 per output
        channel with an int64 bias at ``scale(x) * weight scale`` when ``x`` is int16."""
        if self.tensors[x].type == self.TT.FLOAT32:
            return self.f32(name, w), (-1 if bias is None else self.f32(name + "_b", bias))
        q, ws = _qweight(w)
        wt = self.const(name, q, self.TT.INT8, ws, dim=0)
        if bias is None:
            return wt, -1
        bs = ws.astype(np.float64) * self.scale_of(x)
        return wt, self.const(name + "_b", np.round(np.asarray(bias, np.float64) / bs).astype(np.int64),
                              self.TT.INT64, bs, dim=0)

    # -- operators
    def fc(self, x, w, b, out, act=0, keep=False):
        o = self.s.FullyConnectedOptionsT()
        o.fusedActivationFunction, o.keepNumDims = act, keep
        self.op(self.BO.FULLY_CONNECTED, [x, w, b], [out], self.OT.FullyConnectedOptions, o)
        return out

    def dense(self, name, x, w, bias, out, act=0):
        wt, bt = self.weight(name, w, x, bias)
        return self.fc(x, wt, bt, out, act)

    def binary(self, code, a, b, out, act=0):
        kind = {self.BO.ADD: "Add", self.BO.SUB: "Sub", self.BO.MUL: "Mul"}.get(code)
        if kind is None:
            self.op(code, [a, b], [out])
            return out
        o = getattr(self.s, kind + "OptionsT")()
        o.fusedActivationFunction = act
        if hasattr(o, "potScaleInt16"):
            o.potScaleInt16 = False  # general int16 scales
        self.op(code, [a, b], [out], getattr(self.OT, kind + "Options"), o)
        return out

    def unary(self, code, x, out):
        self.op(code, [x], [out])
        return out

    def concat(self, ins, out, axis=1):
        o = self.s.ConcatenationOptionsT()
        o.axis = axis
        self.op(self.BO.CONCATENATION, ins, [out], self.OT.ConcatenationOptions, o)
        return out

    def split(self, x, outs, sizes=None):
        """Along axis 1: equal parts, or ``sizes`` (SPLIT_V)."""
        n = len(self.tensors)
        if sizes is None:
            o = self.s.SplitOptionsT()
            o.numSplits = len(outs)
            self.op(self.BO.SPLIT, [self.i32(f"axis{n}", 1), x], outs, self.OT.SplitOptions, o)
        else:
            o = self.s.SplitVOptionsT()
            o.numSplits = len(outs)
            self.op(self.BO.SPLIT_V, [x, self.i32(f"sizes{n}", sizes), self.i32(f"axis{n}", 1)], outs,
                    self.OT.SplitVOptions, o)
        return outs

    def reshape(self, x, shape, out):
        self.op(self.BO.RESHAPE, [x, self.i32(f"shape{len(self.tensors)}", shape)], [out])
        return out

    def gather(self, x, idx, out, axis):
        o = self.s.GatherOptionsT()
        o.axis = axis
        self.op(self.BO.GATHER, [x, idx], [out], self.OT.GatherOptions, o)
        return out

    def mean(self, x, axes, out):
        o = self.s.ReducerOptionsT()
        o.keepDims = False
        self.op(self.BO.MEAN, [x, self.i32(f"axes{len(self.tensors)}", axes)], [out], self.OT.ReducerOptions, o)
        return out


# -- shared parts ------------------------------------------------------------------------------------------

def _side(g: _Ops, p: dict, rr: int) -> int:
    """``z = clip((rr - side_center) * side_scale, -4, 4)``, float32 in every model: rr is raw
    seconds (unbounded, no int16 range fits it), and this runs once per beat."""
    est, F, BO = p["est"], p["F"], g.BO
    d = g.binary(BO.SUB, rr, g.f32("side_center", est.side_center_), g.f("rr_c", [F]))
    z = g.binary(BO.MUL, d, g.f32("side_scale", est.side_scale_), g.f("rr_z", [F]))
    z = g.binary(BO.MAXIMUM, z, g.f32("clip_lo", [-SIDE_CLIP]), g.f("rr_lo", [F]))
    return g.binary(BO.MINIMUM, z, g.f32("clip_hi", [SIDE_CLIP]), g.f("z", [F]))


def _input(g: _Ops, p: dict, window: int) -> int:
    """``x = window * in_scale`` in float; QUANTIZE-d to int16 in a quantized graph."""
    x = g.binary(g.BO.MUL, window, g.f32("in_scale", p["est"].in_scale_), g.same("x", window))
    return x if g.ranges is None else g.unary(g.BO.QUANTIZE, x, g.v("xq", [p["T"]], "x"))


def _head(g: _Ops, p: dict, last: int, mean: int, rr: int) -> int:
    """``logits = relu([last, mean, z] @ W1 + b1) @ W2 + b2``, float32 out.

    Quantized (``last`` and ``mean`` int16 at one scale), z joins through its own FC: CONCATENATION
    of int16 does not rescale, and z on h's scale left its W1 rows a few int8 steps each (DS1
    TCN: 48 of 50,977 beats changed label, F +P -1.5 points; 7 with the separate FC)::

        hid = relu(FC([last, mean], W1[:2H], b1) + FC(QUANTIZE(z), W1[2H:]))
    """
    est, H, F, BO = p["est"], p["H"], p["F"], g.BO
    nh, RELU = est.head_W1_.shape[1], g.A.RELU
    z = _side(g, p, rr)
    if g.ranges is None:
        feats = g.concat([last, mean, z], g.f("features", [2 * H + F]))
        hid = g.dense("head_W1", feats, est.head_W1_.T, est.head_b1_, g.f("head_hidden", [nh]), RELU)
    else:
        feats = g.concat([last, mean], g.same("features", last, [2 * H]))
        ha = g.dense("head_W1", feats, est.head_W1_[:2 * H].T, est.head_b1_, g.v("head_h", [nh], "head_h"))
        zq = g.unary(BO.QUANTIZE, z, g.v("zq", [F], scale=SIDE_CLIP / _Q16))
        hz = g.dense("head_W1z", zq, est.head_W1_[2 * H:].T, None, g.v("head_z", [nh], "head_z"))
        hid = g.binary(BO.ADD, ha, hz, g.v("head_hidden", [nh], "hidden"), act=RELU)
    out = g.dense("head_W2", hid, est.head_W2_.T, est.head_b2_,
                  g.v("logits" if g.ranges is None else "logits_q", [p["C"]], "logits"))
    return out if g.ranges is None else g.unary(BO.DEQUANTIZE, out, g.f("logits", [p["C"]]))


def _see(amax: dict, name: str, v) -> None:
    amax[name] = max(amax.get(name, 0.0), float(np.abs(v).max()) if np.size(v) else 0.0)


def _head_ranges(p: dict, amax: dict, last, mean, rr) -> None:
    est, H = p["est"], p["H"]
    ha = np.concatenate([last, mean], axis=1) @ est.head_W1_[:2 * H] + est.head_b1_
    hz = est.side_features(rr) @ est.head_W1_[2 * H:]
    hid = np.maximum(ha + hz, 0)
    for name, v in (("head_h", ha), ("head_z", hz), ("hidden", hid),
                    ("logits", hid @ est.head_W2_ + est.head_b2_)):
        _see(amax, name, v)


# -- LSTM ---------------------------------------------------------------------------------------------------

S_H = 1.0 / _Q16     # int16 h: |h| < 1
S_SIG = 1.0 / 32768  # the int16 LOGISTIC / TANH kernels' fixed output scale


def _lstm_gates(g: _Ops, pre: int, c, l: int, tag: str, names=("h", "c")):
    """From the gate pre-activations ``pre`` [B, 4H] (rows ``i, f, o, g``) and the cell state ``c``
    (None: zero) to ``(h', c')``; float, or int16 with calibrated ``pre{l}`` and ``c{l}`` scales."""
    BO, H = g.BO, g.tensors[pre].shape[1] // 4
    ps, pg = g.split(pre, [g.same(f"pre_s{tag}", pre, [3 * H]), g.same(f"pre_g{tag}", pre, [H])], [3 * H, H])
    sg = g.unary(BO.LOGISTIC, ps, g.v(f"sig{tag}", [3 * H], scale=S_SIG))
    gg = g.unary(BO.TANH, pg, g.v(f"g{tag}", [H], scale=S_SIG))
    i, f, o = g.split(sg, [g.v(f"{n}{tag}", [H], scale=S_SIG) for n in "ifo"])
    if c is None:  # the zero state: c' = i * g
        cn = g.binary(BO.MUL, i, gg, g.v(f"{names[1]}{tag}", [H], f"c{l}"))
    else:
        ig = g.binary(BO.MUL, i, gg, g.v(f"ig{tag}", [H], scale=S_SIG))
        fc_ = g.binary(BO.MUL, f, c, g.v(f"fc{tag}", [H], f"c{l}"))
        cn = g.binary(BO.ADD, fc_, ig, g.v(f"{names[1]}{tag}", [H], f"c{l}"))
    tc = g.unary(BO.TANH, cn, g.v(f"tc{tag}", [H], scale=S_SIG))
    h = g.binary(BO.MUL, o, tc, g.v(f"{names[0]}{tag}", [H], scale=S_H))
    return h, cn, (o, tc)


def _lstm_float_pre(g: _Ops, w, x: int, h, tag: str) -> int:
    """Float gate pre-activations: ``FC(x, Wih, b)`` from the zero state, else
    ``FC([x, h], [Wih | Whh], b)``."""
    Wih, Wcat, b = w
    H4 = g.tensors[b].shape[0]
    if h is None:
        return g.fc(x, Wih, b, g.f(f"gates{tag}", [H4]))
    xh = g.concat([x, h], g.f(f"xh{tag}", [g.tensors[x].shape[1] + H4 // 4]))
    return g.fc(xh, Wcat, b, g.f(f"gates{tag}", [H4]))


def _lstm_float_weights(g: _Ops, est) -> list:
    out = []
    for l in range(est.n_layers):
        Wih, Whh, b = _lstm_layer(est, l)
        out.append((g.f32(f"Wih{l}", Wih), g.f32(f"W{l}", np.concatenate([Wih, Whh], axis=1)),
                    g.f32(f"b{l}", b)))
    return out


def build_lstm_window(p: dict) -> bytes:
    """The float32 LSTM WINDOW model ``(window [B, T], rr [B, F]) -> logits [B, C]``, unrolled:
    SPLIT of the scaled window into T columns, per step and layer CONCAT + FULLY_CONNECTED +
    SPLIT_V + LOGISTIC + TANH + SPLIT + MUL + MUL + ADD + TANH + MUL, ADD_N of the top h for the
    mean. Each layer's weights are one tensor, whatever the number of steps reading it."""
    g = _Ops(_schema())
    est, T, H, F = p["est"], p["T"], p["H"], p["F"]
    window, rr = g.f("window", [T]), g.f("rr", [F])
    w = _lstm_float_weights(g, est)
    cols = g.split(_input(g, p, window), [g.f(f"x{t}", [1]) for t in range(T)])
    state = [(None, None)] * est.n_layers
    tops = []
    for t in range(T):
        x = cols[t]
        for l in range(est.n_layers):
            h, c = state[l]
            h, c, _ = _lstm_gates(g, _lstm_float_pre(g, w[l], x, h, f"_{l}_{t}"), c, l, f"_{l}_{t}")
            state[l] = (h, c)
            x = h
        tops.append(x)
    total = g.f("h_sum", [H])
    g.op(g.BO.ADD_N, tops, [total])
    mean = g.binary(g.BO.MUL, total, g.f32("invT", [1.0 / T]), g.f("mean", [H]))
    logits = _head(g, p, tops[-1], mean, rr)
    return g.finish([window, rr], [logits], "edgeseq LSTM window model (unrolled, float32)", name="lstm_window")


def lstm_ranges(p: dict, windows, rr, batch: int = 1000) -> dict[str, float]:
    """max |value| of the int16 LSTM graph's calibrated tensors, by the reference arithmetic."""
    from ..models.lstm import sigmoid

    est, H, amax = p["est"], p["H"], {}
    for s in range(0, len(windows), batch):
        seq = np.asarray(windows[s:s + batch], np.float32)[:, :, None] * est.in_scale_
        _see(amax, "x", seq)
        for l in range(est.n_layers):
            Wih, Whh, b = _lstm_layer(est, l)
            gx = seq @ Wih.T + b
            _see(amax, f"gx{l}", gx)
            h = c = np.zeros((len(seq), H), np.float32)
            out = np.empty((*seq.shape[:2], H), np.float32)
            for t in range(seq.shape[1]):
                rec = h @ Whh.T
                pre = gx[:, t] + rec
                _see(amax, f"rec{l}", rec)
                _see(amax, f"pre{l}", pre)
                sg = sigmoid(pre[:, :3 * H])
                c = sg[:, H:2 * H] * c + sg[:, :H] * np.tanh(pre[:, 3 * H:])
                _see(amax, f"c{l}", c)
                h = out[:, t] = sg[:, 2 * H:] * np.tanh(c)
            seq = out
        _head_ranges(p, amax, seq[:, -1], seq.mean(axis=1), rr[s:s + batch])
    return amax


def build_lstm_int8(p: dict, ranges: dict) -> bytes:
    """The 16x8 LSTM WINDOW model: a WHILE loop whose body is one step, so the file holds one step.

    Subgraph 0 quantizes ``x = window * in_scale`` to int16, runs the loop and the head; subgraph 1
    is the condition ``i < T``, subgraph 2 the step. Loop variables: ``i`` (int32 [1]), ``xq``
    (read only), ``acc`` (sum of the top h, scale T/32767), ``h{l}`` (scale 1/32767) and ``c{l}``
    (calibrated) per layer. A step, per layer (rows ``i, f, o, g``)::

        pre = FC(GATHER(xq, i), Wih0, b0) + FC(h0, Whh0)          layer 0: x's scale is not h's
        pre = FC(CONCAT(h_below, h), [Wih | Whh], b)              layer l > 0: one scale
        i, f, o = SPLIT(LOGISTIC(pre[:3H])); g = TANH(pre[3H:])   SPLIT_V first
        c' = f * c + i * g;  h' = o * TANH(c')
    """
    s = _schema()
    g = _Ops(s, ranges=ranges)
    BO, T, H, F, L = g.BO, p["T"], p["H"], p["F"], p["est"].n_layers
    window, rr = g.f("window", [T]), g.f("rr", [F])
    xq = _input(g, p, window)
    # Zero initial states of the batch's size: x's first column through zero weights.
    x0 = g.gather(xq, g.i32("col0", [0]), g.same("x0", xq, [1]), 1)
    zero = g.fc(x0, g.const("zeros", np.zeros((H, 1), np.int8), g.TT.INT8, [1.0]), -1,
                g.v("zero", [H], scale=S_H))

    def loop_vars(gr, pre):
        v = [gr.index(pre + "i", [1]), gr.v(pre + "xq", [T], "x"), gr.v(pre + "acc", [H], scale=T / _Q16)]
        for l in range(L):
            v += [gr.v(f"{pre}h{l}", [H], scale=S_H), gr.v(f"{pre}c{l}", [H], f"c{l}")]
        return v

    outs = loop_vars(g, "out_")
    cond, body = _Ops(s, g, ranges), _Ops(s, g, ranges)
    cv = loop_vars(cond, "")
    more = cond._add("more", [1], g.TT.BOOL, 0)
    cond.op(BO.LESS, [cv[0], cond.i32("T", [T])], [more])

    bv = loop_vars(body, "")
    nxt, x = [], None
    for l in range(L):
        Wih, Whh, b = _lstm_layer(p["est"], l)
        if l == 0:
            u = body.gather(bv[1], bv[0], body.v("u", [1], "x"), 1)
            gx = body.dense("Wih0", u, Wih, b, body.v("gx0", [4 * H], "gx0"))
            rec = body.dense("Whh0", bv[3], Whh, None, body.v("rec0", [4 * H], "rec0"))
            pre = body.binary(BO.ADD, rec, gx, body.v("pre0", [4 * H], "pre0"))
        else:
            xh = body.concat([x, bv[3 + 2 * l]], body.v(f"xh{l}", [2 * H], scale=S_H))
            pre = body.dense(f"W{l}", xh, np.concatenate([Wih, Whh], axis=1), b,
                             body.v(f"pre{l}", [4 * H], f"pre{l}"))
        x, c, _ = _lstm_gates(body, pre, bv[4 + 2 * l], l, str(l), names=("h_next", "c_next"))
        nxt += [x, c]
    acc = body.binary(BO.ADD, bv[2], x, body.same("acc_next", bv[2]))
    inext = body.binary(BO.ADD, bv[0], body.i32("one", [1]), body.index("i_next", [1]))

    wo = s.WhileOptionsT()
    wo.condSubgraphIndex, wo.bodySubgraphIndex = 1, 2
    g.op(BO.WHILE, [g.i32("i0", [0]), xq, zero] + [zero] * (2 * L), outs, g.OT.WhileOptions, wo)
    # mean = acc / T at h's scale: MUL by the int16 constant 32767 at scale (1/T) / 32767
    mean = g.binary(BO.MUL, outs[2], g.const("invT", np.array([32767], np.int16), g.TT.INT16, 1.0 / T / _Q16),
                    g.v("mean", [H], scale=S_H))
    logits = _head(g, p, outs[1 + 2 * L], mean, rr)
    return g.finish([window, rr], [logits], "edgeseq LSTM window model (WHILE loop, 16x8: int8 weights, "
                    "int16 activations)", name="lstm_window",
                    more=[cond.subgraph(cv, [more], "lstm_cond"),
                          body.subgraph(bv, [inext, bv[1], acc] + nxt, "lstm_step")])


def build_lstm_step(p: dict) -> bytes:
    """The float32 LSTM STEP model ``(u [B, 1], h0, c0, h1, c1 ... [B, H]) -> (out [B, H], h0_out,
    c0_out, ...)``: one update of every layer, as ``LSTMStream.push``. ``out`` is a tensor of its
    own beside the top layer's ``h_out`` (the same product, computed twice: a tensor has one name)."""
    g = _Ops(_schema())
    est, H = p["est"], p["H"]
    names = list(step_states(p["est"]))
    u = g.f("u", [1])
    st = {n: g.f(n, [H]) for n in names}
    w = _lstm_float_weights(g, est)
    x = _input(g, p, u)
    outs = {}
    for l in range(est.n_layers):
        pre = _lstm_float_pre(g, w[l], x, st[f"h{l}"], f"_{l}")
        x, c, (o, tc) = _lstm_gates(g, pre, st[f"c{l}"], l, f"{l}_out", names=("h", "c"))
        outs[f"h{l}_out"], outs[f"c{l}_out"] = x, c
    outs = {"out": g.binary(g.BO.MUL, o, tc, g.f("out", [H])), **outs}
    return g.finish([u] + list(st.values()), list(outs.values()), "edgeseq LSTM step model (float32)",
                    in_names=["u"] + names, out_names=list(outs), name="lstm_step")


# -- TCN ----------------------------------------------------------------------------------------------------

def tcn_ranges(p: dict, windows, rr, batch: int = 1000) -> dict[str, float]:
    """max |value| of the int16 TCN graph's tensors, by the reference arithmetic."""
    from ..models.neural import relu

    est, amax = p["est"], {}
    K = est.kernel_size
    for s in range(0, len(windows), batch):
        h = np.asarray(windows[s:s + batch], np.float32)[:, :, None] * est.in_scale_
        T = h.shape[1]
        _see(amax, "x", h)
        for l in range(est.n_blocks):
            W, b, d = getattr(est, f"tcn_W{l}_"), getattr(est, f"tcn_b{l}_"), est.dilation(l)
            y = np.broadcast_to(b, (len(h), T, len(b))).copy()
            for k in range(K):
                shift = (K - 1 - k) * d
                if shift < T:
                    y[:, shift:] += h[:, :T - shift] @ W[:, :, k].T
            res = est._residual(l, h)
            _see(amax, f"y{l}", relu(y))
            _see(amax, f"res{l}", res)
            h = relu(y) + res
            _see(amax, f"h{l}", h)
        _see(amax, "pooled", h[:, -1])
        _see(amax, "pooled", h.mean(axis=1))
        _head_ranges(p, amax, h[:, -1], h.mean(axis=1), rr[s:s + batch])
    return amax


def build_tcn_window(p: dict, ranges: dict | None = None) -> bytes:
    """The TCN WINDOW model on a [B, 1, T, C] layout: per block PAD ((K-1) d zero columns on the
    left: causal), CONV_2D (1 x K, dilation d on W, fused RELU), the residual ADD (block 0 with an
    input projection: a 1 x 1 CONV_2D); GATHER of the last step and MEAN for the pooling. Float32,
    or with ``ranges`` (``tcn_ranges``) 16x8: int8 weights per output channel, int16 activations."""
    g = _Ops(_schema(), ranges=ranges)
    est, BO, T, C, F = p["est"], g.BO, p["T"], p["H"], p["F"]
    K = est.kernel_size
    window, rr = g.f("window", [T]), g.f("rr", [F])
    x = _input(g, p, window)
    h = g.reshape(x, [-1, 1, T, 1], g.same("x4", x, [1, T, 1]))
    cin = 1
    for l in range(est.n_blocks):
        W, b, d = getattr(est, f"tcn_W{l}_"), getattr(est, f"tcn_b{l}_"), est.dilation(l)
        xp = g.same(f"pad{l}", h, [1, T + (K - 1) * d, cin])
        g.op(BO.PAD, [h, g.i32(f"pads{l}", [[0, 0], [0, 0], [(K - 1) * d, 0], [0, 0]])], [xp])
        wt, bt = g.weight(f"W{l}", W.transpose(0, 2, 1)[:, None], h, b)  # OHWI
        o = g.s.Conv2DOptionsT()
        o.padding, o.strideH, o.strideW, o.dilationWFactor = g.s.Padding.VALID, 1, 1, d
        o.fusedActivationFunction = g.A.RELU
        y = g.v(f"y{l}", [1, T, C], f"y{l}")
        g.op(BO.CONV_2D, [xp, wt, bt], [y], g.OT.Conv2DOptions, o)
        res = h
        if l == 0 and est.has_projection:
            wt, bt = g.weight("P", est.tcn_P_[:, None, None, :], h, est.tcn_pb_)
            o = g.s.Conv2DOptionsT()
            o.padding, o.strideH, o.strideW = g.s.Padding.VALID, 1, 1
            res = g.v("res0", [1, T, C], "res0")
            g.op(BO.CONV_2D, [h, wt, bt], [res], g.OT.Conv2DOptions, o)
        h = g.binary(BO.ADD, y, res, g.v(f"h{l}", [1, T, C], f"h{l}"))
        cin = C
    last = g.gather(h, g.i32("last_t", [T - 1]), g.same("last_t1", h, [1, 1, C]), 2)
    last = g.reshape(last, [-1, C], g.same("last_h", h, [C]))
    if ranges is not None:  # last and mean share the head's input scale
        last = g.unary(BO.QUANTIZE, last, g.v("last", [C], "pooled"))
    mean = g.mean(h, [1, 2], g.v("mean", [C], "pooled"))
    logits = _head(g, p, last, mean, rr)
    kind = "float32" if ranges is None else "16x8: int8 weights, int16 activations"
    return g.finish([window, rr], [logits], f"edgeseq TCN window model (CONV_2D, {kind})", name="tcn_window")


def build_tcn_step(p: dict) -> bytes:
    """The float32 TCN STEP model ``(u [B, 1], buf0 .. buf{L-1}, pos int32 [1]) -> (out [B, C],
    buf0_out, ..)``, ``TCNStream.push``: block ``l`` GATHERs its K-1 taps at rows
    ``FLOOR_MOD(pos - j d, n_l)`` of its ring ``buf{l}`` [B, n_l = (K-1) d, C_in], one
    FULLY_CONNECTED over ``[x, taps]``, and writes x at row ``pos mod n_l`` with
    DYNAMIC_UPDATE_SLICE: O(blocks x kernel) work a step, whatever the receptive field."""
    g = _Ops(_schema())
    est, BO, C = p["est"], g.BO, p["H"]
    K, L = est.kernel_size, est.n_blocks
    rings = step_states(p["est"])
    u = g.f("u", [1])
    bufs = [g.f(n, shape) for n, shape in rings.items()]
    pos = g.index("pos", [1])
    x = _input(g, p, u)
    outs = {}
    for l, (n, cin) in enumerate(rings.values()):
        W, b, d = getattr(est, f"tcn_W{l}_"), getattr(est, f"tcn_b{l}_"), est.dilation(l)
        n_t = g.i32(f"n{l}", [n])
        back = g.binary(BO.ADD, pos, g.i32(f"back{l}", [-j * d for j in range(1, K)]),
                        g.index(f"back{l}_t", [K - 1]))
        rows = g.binary(BO.FLOOR_MOD, back, n_t, g.index(f"rows{l}", [K - 1]))
        taps = g.gather(bufs[l], rows, g.f(f"taps{l}", [K - 1, cin]), 1)
        taps = g.reshape(taps, [-1, (K - 1) * cin], g.f(f"taps{l}_flat", [(K - 1) * cin]))
        xt = g.concat([x, taps], g.f(f"xt{l}", [K * cin]))
        # [W_{K-1} | W_{K-2} | .. | W_0]: the newest tap (x itself) first, as the concatenation
        Wt = np.concatenate([W[:, :, k] for k in range(K - 1, -1, -1)], axis=1)
        y = g.dense(f"W{l}", xt, Wt, b, g.f(f"y{l}", [C]), g.A.RELU)
        row = g.binary(BO.FLOOR_MOD, pos, n_t, g.index(f"row{l}", [1]))
        start = g.binary(BO.MUL, row, g.i32(f"at_row{l}", [0, 1, 0]), g.index(f"start{l}", [3]))
        x3 = g.reshape(x, [-1, 1, cin], g.f(f"x{l}_row", [1, cin]))
        outs[f"buf{l}_out"] = g.f(f"buf{l}_out", [n, cin])
        g.op(BO.DYNAMIC_UPDATE_SLICE, [bufs[l], x3, start], [outs[f"buf{l}_out"]])
        res = x
        if l == 0 and est.has_projection:
            res = g.dense("P", x, est.tcn_P_, est.tcn_pb_, g.f("res0", [C]))
        x = g.binary(BO.ADD, y, res, g.f("out" if l == L - 1 else f"h{l}", [C]))
    outs = {"out": x, **outs}
    return g.finish([u, *bufs, pos], list(outs.values()), "edgeseq TCN step model (float32)",
                    in_names=["u", *rings, "pos"], out_names=list(outs), name="tcn_step")


# -- bundle --------------------------------------------------------------------------------------------------

def _labels(path: Path, windows, rr) -> np.ndarray:
    from ..runtime.tflite_backend import TFLiteBackend

    be = TFLiteBackend(path.parent, {"model": path.name})
    return np.concatenate([be.logits(windows[i:i + 500], rr[i:i + 500]).argmax(1)
                           for i in range(0, len(windows), 500)])


def export_neural_tflite(bundle_path, out_dir, *, int8: bool = False, calibration=None) -> Path:
    """Write an exported bundle: the source manifest plus a ``runtime`` section (``format``
    ``"tflite"``), ``model.tflite`` (WINDOW), ``step.tflite`` (STEP, float32 in both) and the source
    ``weights.npz`` (the runtime's ``readout`` and the numpy reference read it).

    ``calibration`` (int8 only): ``(windows, rr)`` arrays, or ``(data_dir, records)`` to read beats.
    """
    src, bundle, manifest = source_bundle(bundle_path, out_dir)
    p = _model(manifest, bundle.arrays)
    lstm = p["kind"] == "lstm"
    weights_name = manifest["model"].get("weights", WEIGHTS)
    manifest["runtime"] = neural_runtime_section(
        p["est"], "tflite", T=p["T"], F=p["F"], int8=int8, model=MODEL, step=STEP,
        graph_form=FORMS[p["kind"]][int(int8)], source_sha256=sha256_file(src / weights_name))
    with tempfile.TemporaryDirectory(prefix="edgeseq_tflite_") as work:
        work = Path(work)
        model = work / "float.tflite"
        model.write_bytes(build_lstm_window(p) if lstm else build_tcn_window(p))
        (work / STEP).write_bytes(build_lstm_step(p) if lstm else build_tcn_step(p))
        if int8:
            windows, rr = _calibration_beats(calibration, manifest)
            ranges = (lstm_ranges if lstm else tcn_ranges)(p, windows, rr)
            model = work / "int8.tflite"
            model.write_bytes(build_lstm_int8(p, ranges) if lstm else build_tcn_window(p, ranges))
            agree = float((_labels(work / "float.tflite", windows, rr) == _labels(model, windows, rr)).mean())
            manifest["runtime"]["quantization"] = {
                "tool": "edgeseq.export.tflite_neural", "format": "tflite 16x8",
                "weights": "int8 symmetric, per output channel; biases int64",
                "activations": "int16 (h at 1/32767, gate outputs at 1/32768, the rest calibrated)"
                               if lstm else "int16, calibrated",
                "float_ops": "window * in_scale before QUANTIZE; the rr side features "
                             "(clip((rr - center) * scale, -4, 4)) before QUANTIZE; DEQUANTIZE of the logits",
                "calibration_beats": int(len(windows)), "headroom": HEADROOM,
                "calibration_agreement": round(agree, 6)}
        return write_bundle(Path(out_dir), manifest, bundle.arrays, files={MODEL: model, STEP: work / STEP})
