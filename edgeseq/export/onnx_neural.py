"""Export an LSTM or TCN bundle to ONNX (host side; ``onnx`` and ``onnxruntime`` imported lazily).

Two graphs go into the exported bundle, built by hand from the numpy weights (no torch):

- ``model.onnx``, the WINDOW model ``(window [B, T], rr [B, F]) -> logits [B, C]``: input scale,
  the core over the window, last + mean of the top layer, side features, head.
- ``step.onnx``, the STEP model (always float): ``u [B, 1]`` and the states -> ``out [B, H]`` and
  ``<state>_out``. LSTM: ``h{l}, c{l}``. TCN: ring buffers ``buf{l} [B, (K-1) 2**l, C_in]`` and an
  int32 ``pos`` (t mod the longest buffer); a step reads ``K-1`` rows of each buffer (Gather) and
  writes one (ScatterElements), as ``TCNStream.push``: O(blocks x kernel), not O(receptive field).

Window graph form, chosen by measurement (onnxruntime 1.32.0, CPU, intra_op_num_threads=1, the
DS1 ``small`` shapes and the ``full`` LSTM, T=126; median and p90 of 300 single-beat runs on a
2-core host VM shared with other jobs; each form from ``build_window_model(p, form)`` with random
weights of the shapes)::

    model                      form                     B=1 us/beat    B=512 us/beat   file
    LSTM H=32, 1 layer         ONNX LSTM op             62, 67         48              28.6 kB
                               Scan, explicit gates     944, 1671      68              29.3 kB
    LSTM H=128, 2 layers       ONNX LSTM op             988, 1087      768             829 kB
                               Scan, explicit gates     4529, 4961     1056            830 kB
    TCN C=24, 6 blocks, K=3    Conv, dilation + causal  60, 109        65              45.5 kB
                               pads [(K-1) d, 0]
                               shifted taps + MatMul    174, 226       136             47.0 kB

The LSTM is the ONNX ``LSTM`` op (gates reordered from PyTorch's i,f,g,o to ONNX's i,o,f,c; the
bundle's one bias as ``Wb`` with ``Rb = 0``), the TCN ``Conv`` over ``[B, C, T]``. The Scan's
explicit cell (gates i,f,o,g: one Sigmoid over 3H) is what ``step.onnx`` runs once per sample:
13 us a step for the DS1 LSTM, 38 us for the DS1 TCN (about 60 small nodes: per-node overhead).

int8 (``int8=True``): weights int8 with one scale per output channel (DequantizeLinear in the
graph, biases float32), activations through Quantize/DequantizeLinear (opset 21 for int16) at
ranges from real beats: int16 at the largest value seen, int8 at the 99.99% quantile of
``|value|`` (the largest of a heavy tail left the bulk a few steps: all-int8 at max range moved
302 DS1 labels, S Se -3.6 points). Which tensor takes which width: :func:`activation_plan`.

What onnxruntime's quantizer cannot do, and the way around it:

- ``quantize_static`` does not quantize the ``LSTM`` op (not in its QDQ registry): it leaves the
  op float and puts QDQ around it (file 109% of float; 95.7% label agreement on a sample model).
  Only ``quantize_dynamic`` turns ``LSTM`` into the contrib ``DynamicQuantizeLSTM`` (int8
  weights per channel in the 7-bit range, which no CPU's int16 pair sums can saturate; input
  and hidden state quantized to uint8 inside the op at each call's range, so a beat's logits
  depend slightly on the batch it runs in: up to 0.0045 apart, no label changed, on a sample
  model). So the graph is QDQ by hand and only its ``LSTM`` ops go through
  ``quantize_dynamic(op_types_to_quantize=["LSTM"])``.
- ``quantize_static`` on the float TCN (per-channel QDQ, MinMax, 2000 calibration beats): int8
  activations moved 270 DS1 labels (S Se -4.4 points); int16 activations 14, but either file is
  62% of float (a Q/DQ pair with long names on every tensor, int32 zero points per bias); its
  Percentile calibrator failed on batches of unequal size. The hand-built QDQ graph below keeps
  accuracy at 36% of float.
- onnxruntime's QDQ propagation breaks a graph with a Transpose right after a DequantizeLinear
  (``output_dtype INT8 does not match y_zero_point type UINT8``): shape changes come first.

DS1 ``small`` bundles, all 50,977 DS1 beats (labels from the records), float -> int8, Se / +P %::

    LSTM   N 96.72/99.76 -> 96.70/99.76   S 94.59/56.10 -> 94.49/56.29   V 96.52/88.61 -> 96.54/88.29
           F 90.82/45.97 -> 90.58/45.79   Q 25.0/11.1 -> 25.0/11.1       53 labels changed (99.90%)
    TCN    N 99.16/99.91 -> 99.17/99.91   S 97.77/79.76 -> 97.56/79.93   V 99.05/97.43 -> 99.00/97.40
           F 95.89/84.47 -> 95.89/84.11   Q 87.5/36.8 -> 87.5/36.8       28 labels changed (99.95%)

File sizes int8/float: LSTM 10,213 / 28,617 B (35.7%), TCN 16,550 / 45,485 B (36.4%): at these
sizes biases, scales and graph structure are a third of the int8 file; the ``full`` presets
(random weights of their shapes) come to 25.7% (LSTM) and 27.2% (TCN). Window latency, B=1
median: LSTM 61 us float, 77 us int8; TCN 56 us float, 98 us int8 (onnxruntime runs the int16
QDQ pairs as float with extra nodes; the int8 file is for size and integer targets).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from . import source_bundle
from ..bundle import WEIGHTS, sha256_file, write_bundle
from ..models.neural import SIDE_CLIP
from .neural import neural_model, neural_runtime_section, step_states
from .onnx import MODEL, OPSET, QOPSET, STEP, _agreement, _calibration_beats, _init, _qweight

#: Gate blocks of PyTorch's ``i, f, g, o`` rows in the order each graph wants them: the ONNX
#: ``LSTM`` op reads ``i, o, f, c``; the explicit cell ``i, f, o, g`` (one Sigmoid over 3H).
ONNX_GATES = (0, 3, 1, 2)
CELL_GATES = (0, 1, 3, 2)
WINDOW_FORMS = {"lstm": ("lstm_op", "scan"), "tcn": ("conv", "taps")}


# -- the bundle's arrays ---------------------------------------------------------------------------

def _parts(manifest: dict, arrays: dict) -> dict:
    """Weights and shapes of a neural bundle, checked (``export.neural.neural_model``)."""
    est, T, F = neural_model(manifest, arrays, "ONNX")
    a = {k: np.asarray(v, np.float32) for k, v in est.to_arrays().items()}
    p = {"kind": est.KIND, "est": est, "a": a, "T": T, "F": F, "side": F, "H": int(est.hidden_size),
         "C": int(a["head_W2"].shape[1]), "D": 1}
    if est.KIND == "lstm":
        p["L"] = est.n_layers
    else:
        p.update(L=est.n_blocks, K=est.kernel_size, proj=est.has_projection,
                 lens=[(est.kernel_size - 1) * est.dilation(l) for l in range(est.n_blocks)])
    return p


def _gates(w: np.ndarray, order) -> np.ndarray:
    """Reorder the four ``H``-row gate blocks of ``w`` (``(4H, ...)`` or ``(4H,)``)."""
    blocks = np.split(w, 4, axis=0)
    return np.ascontiguousarray(np.concatenate([blocks[i] for i in order], axis=0))


def _taps_weight(W: np.ndarray) -> np.ndarray:
    """``(C, C_in, K)`` -> ``(K * C_in, C)``: rows for the tap ``j`` steps of ``d`` back, j = 0..K-1
    (``W[:, :, K-1-j]``), the order the step graph concatenates ``[x, buf taps]`` in."""
    K = W.shape[2]
    return np.ascontiguousarray(np.concatenate([W[:, :, K - 1 - j].T for j in range(K)], axis=0))


# -- graph construction ----------------------------------------------------------------------------

class _Graph:
    """Nodes and initializers of one graph, with the precision of weights and activations as a
    switch: float (``quant=None``) or QDQ (``quant`` = tensor -> (scale, bits) for activations;
    weights int8 per output channel, DequantizeLinear in the main graph)."""

    def __init__(self, quant: dict | None = None):
        from onnx import helper

        self.h = helper
        self.nodes: list = []
        self.inits: list = []
        self.quant = quant
        self._consts: dict = {}

    def node(self, op, inputs, outputs, into=None, **attrs):
        (self.nodes if into is None else into).append(self.h.make_node(op, list(inputs), list(outputs), **attrs))
        return outputs[0]

    def const(self, value, dtype=np.int64) -> str:
        """A small constant initializer, shared by value."""
        arr = np.asarray(value, dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self._consts:
            from onnx import numpy_helper

            name = f"k{len(self._consts)}"
            self.inits.append(numpy_helper.from_array(arr, name))  # _init would make a scalar [1]
            self._consts[key] = name
        return self._consts[key]

    def weight(self, name: str, w: np.ndarray, quantize: bool = True, axis: int = -1) -> str:
        """A weight (int8 with one scale per index of ``axis``, the output channel, when
        quantizing) or a bias (``quantize=False``: float)."""
        w = np.asarray(w, np.float32)
        if self.quant is None or not quantize:
            self.inits.append(_init(name, w))
            return name
        moved = np.moveaxis(w, axis, -1)
        q, s = _qweight(moved.reshape(-1, moved.shape[-1]))
        q = np.moveaxis(q.reshape(moved.shape), -1, axis)
        self.inits += [_init(name + "_q", q), _init(name + "_s", s)]
        return self.node("DequantizeLinear", [name + "_q", name + "_s"], [name], axis=axis % w.ndim)

    def act(self, x: str, into=None) -> str:
        """``x`` through Quantize/DequantizeLinear at its scale and width, if listed in ``quant``."""
        if self.quant is None or x not in self.quant:
            return x
        scale, bits = self.quant[x]
        s = self.const(scale, np.float32)
        zp = self.const(0, np.int8 if bits == 8 else np.int16)
        self.node("QuantizeLinear", [x, s, zp], [x + "_q"], into)
        return self.node("DequantizeLinear", [x + "_q", s, zp], [x + "_dq"], into)

    def model(self, name: str, inputs: list, outputs: list):
        import onnx

        quantized = self.quant is not None
        graph = self.h.make_graph(self.nodes, name, inputs, outputs, self.inits)
        # opset 21: the first whose QuantizeLinear/DequantizeLinear take int16
        model = self.h.make_model(graph, opset_imports=[self.h.make_opsetid("", QOPSET if quantized else OPSET)],
                                  producer_name="edgeseq")
        model.ir_version = 10 if quantized else 8
        onnx.checker.check_model(model)
        return model


def _io(name, shape, dtype=None):
    from onnx import TensorProto, helper

    return helper.make_tensor_value_info(name, dtype or TensorProto.FLOAT, shape)


def _head(g: _Graph, p: dict, last: str, mean: str) -> str:
    """``logits = relu([last, mean, z] @ W1 + b1) @ W2 + b2`` with ``z`` the clipped side features."""
    a = p["a"]
    feats = [g.act(last), g.act(mean)]
    if p["side"]:
        g.inits += [_init("side_center", a["side_center"]), _init("side_scale", a["side_scale"])]
        g.node("Sub", ["rr", "side_center"], ["rr_c"])
        g.node("Mul", ["rr_c", "side_scale"], ["rr_s"])
        g.node("Clip", ["rr_s", g.const(-SIDE_CLIP, np.float32), g.const(SIDE_CLIP, np.float32)], ["z"])
        feats.append(g.act("z"))
    g.node("Concat", feats, ["features"], axis=1)
    g.node("MatMul", ["features", g.weight("head_W1", a["head_W1"])], ["hid0"])
    g.node("Add", ["hid0", g.weight("head_b1", a["head_b1"], False)], ["hid1"])
    g.node("Relu", ["hid1"], ["hid"])
    g.node("MatMul", [g.act("hid"), g.weight("head_W2", a["head_W2"])], ["lin"])
    return g.node("Add", ["lin", g.weight("head_b2", a["head_b2"], False)], ["logits"])


def _scaled_window(g: _Graph, p: dict, axis: int, time_major: bool = False) -> str:
    """``x = window * in_scale`` with a channel axis at ``axis`` (and time first if ``time_major``).
    The shape changes come first: onnxruntime's QDQ propagation fails on a Transpose after a
    DequantizeLinear (a uint8 zero point on an int8 QuantizeLinear it makes)."""
    g.inits.append(_init("in_scale", p["a"]["in_scale"]))
    w = g.node("Transpose", ["window"], ["wt"], perm=[1, 0]) if time_major else "window"
    g.node("Unsqueeze", [w, g.const([axis])], ["w3"])
    return g.act(g.node("Mul", ["w3", "in_scale"], ["x"]))


def _window_io(p: dict):
    return ([_io("window", ["B", p["T"]]), _io("rr", ["B", p["F"]])], [_io("logits", ["B", p["C"]])])


def _lstm_cell(g: _Graph, H: int, gx: str, h: str, c: str, whh: str, tag: str, h_out: str, c_out: str, into):
    """One explicit LSTM step, gates ``i, f, o, g`` (``CELL_GATES``): ``gx`` is the input part
    ``x @ Wih.T + b``; ``h`` and ``c`` the state."""
    n = lambda op, ins, outs, **kw: g.node(op, ins, outs, into, **kw)  # noqa: E731
    n("MatMul", [g.act(h, into), whh], [f"rec{tag}"])
    n("Add", [f"rec{tag}", gx], [f"pre{tag}"])
    n("Split", [f"pre{tag}", g.const([3 * H, H])], [f"sg{tag}", f"gg{tag}"], axis=1)
    n("Sigmoid", [f"sg{tag}"], [f"sa{tag}"])
    n("Tanh", [f"gg{tag}"], [f"ga{tag}"])
    n("Split", [f"sa{tag}", g.const([H, H, H])], [f"ig{tag}", f"fg{tag}", f"og{tag}"], axis=1)
    n("Mul", [f"fg{tag}", c], [f"fc{tag}"])
    n("Mul", [f"ig{tag}", f"ga{tag}"], [f"ic{tag}"])
    n("Add", [f"fc{tag}", f"ic{tag}"], [c_out])
    n("Tanh", [g.act(c_out, into)], [f"ct{tag}"])
    return n("Mul", [f"og{tag}", f"ct{tag}"], [h_out])


def _lstm_window(g: _Graph, p: dict, form: str) -> tuple[str, str]:
    """The LSTM over the window -> (last, mean) of the top layer, ``[B, H]`` each."""
    a, H, T = p["a"], p["H"], p["T"]
    if form == "lstm_op":
        seq = _scaled_window(g, p, 2, time_major=True)  # [T, B, 1]
        for l in range(p["L"]):
            W = _gates(a[f"lstm_Wih{l}"], ONNX_GATES)[None]
            R = _gates(a[f"lstm_Whh{l}"], ONNX_GATES)[None]
            # B is [Wb, Rb] (8H); the bundle has their sum: Rb = 0, padded on rather than stored
            g.node("Pad", [g.weight(f"b{l}", _gates(a[f"lstm_b{l}"], ONNX_GATES)[None], False),
                           g.const([0, 0, 0, 4 * H])], [f"B{l}"])
            g.node("LSTM", [seq, g.weight(f"W{l}", W, False), g.weight(f"R{l}", R, False), f"B{l}"],
                   [f"Y{l}", f"Yh{l}"], hidden_size=H)
            seq = g.node("Squeeze", [f"Y{l}", g.const([1])], [f"s{l}"])  # [T, B, H]
        g.node("Squeeze", [f"Yh{p['L'] - 1}", g.const([0])], ["last"])
        g.node("ReduceSum", [seq, g.const([0])], ["hsum"], keepdims=0)
        g.node("Mul", ["hsum", g.const(1.0 / T, np.float32)], ["mean"])
        return "last", "mean"
    if form != "scan":
        raise ValueError(f"unknown LSTM graph form {form!r}")
    from onnx import helper

    g.node("Shape", ["window"], ["shape_bt"])
    g.node("Slice", ["shape_bt", g.const([0]), g.const([1])], ["shape_b"])
    g.node("Concat", ["shape_b", g.const([H])], ["shape_bh"], axis=0)
    g.node("ConstantOfShape", ["shape_bh"], ["zeros"])
    seq = _scaled_window(g, p, 2)  # [B, T, 1]
    for l in range(p["L"]):
        wih = g.weight(f"WihT{l}", _gates(a[f"lstm_Wih{l}"], CELL_GATES).T)
        whh = g.weight(f"WhhT{l}", _gates(a[f"lstm_Whh{l}"], CELL_GATES).T)
        g.node("MatMul", [g.act(seq), wih], [f"gxm{l}"])
        g.node("Add", [f"gxm{l}", g.weight(f"bg{l}", _gates(a[f"lstm_b{l}"], CELL_GATES), False)], [f"gx{l}"])
        body: list = []
        hs, cs, xs = f"hs{l}", f"cs{l}", f"xs{l}"
        _lstm_cell(g, H, xs, hs, cs, whh, f"_{l}", f"hn{l}", f"cn{l}", body)
        body.append(helper.make_node("Identity", [f"hn{l}"], [f"ho{l}"]))
        bg = helper.make_graph(body, f"lstm{l}", [_io(hs, None), _io(cs, None), _io(xs, None)],
                               [_io(f"hn{l}", None), _io(f"cn{l}", None), _io(f"ho{l}", None)])
        g.node("Scan", ["zeros", "zeros", f"gx{l}"], [f"hT{l}", f"cT{l}", f"seq{l}"], body=bg,
               num_scan_inputs=1, scan_input_axes=[1], scan_output_axes=[1])
        seq = f"seq{l}"  # [B, T, H]
    g.node("Identity", [f"hT{p['L'] - 1}"], ["last"])
    g.node("ReduceSum", [seq, g.const([1])], ["hsum"], keepdims=0)
    g.node("Mul", ["hsum", g.const(1.0 / T, np.float32)], ["mean"])
    return "last", "mean"


def _tcn_window(g: _Graph, p: dict, form: str) -> tuple[str, str]:
    """The TCN over the window -> (last, mean) of the top block, ``[B, C]`` each."""
    a, K, T = p["a"], p["K"], p["T"]
    if form == "conv":  # [B, C, T]: Conv with dilation d and (K-1) d zeros on the left only
        h = _scaled_window(g, p, 1)
        for l in range(p["L"]):
            d = 2 ** l
            W, b = g.weight(f"W{l}", a[f"tcn_W{l}"], axis=0), g.weight(f"b{l}", a[f"tcn_b{l}"], False)
            g.node("Conv", [h, W, b], [f"y{l}"], dilations=[d], pads=[(K - 1) * d, 0], kernel_shape=[K])
            r = g.act(g.node("Relu", [f"y{l}"], [f"r{l}"]))
            res = h
            if l == 0 and p["proj"]:
                res = g.act(g.node("Conv", [h, g.weight("P", a["tcn_P"][:, :, None], axis=0),
                                            g.weight("pb", a["tcn_pb"], False)], ["res0"], kernel_shape=[1]))
            h = g.act(g.node("Add", [r, res], [f"h{l}"]))
        g.node("Gather", [h, g.const(T - 1)], ["last"], axis=2)
        g.node("ReduceSum", [h, g.const([2])], ["hsum"], keepdims=0)
    elif form == "taps":  # [B, T, C]: shifted copies of the input, one MatMul over all taps
        h = _scaled_window(g, p, 2)
        for l in range(p["L"]):
            d, n = 2 ** l, p["lens"][l]
            g.node("Pad", [h, g.const([0, n, 0, 0, 0, 0])], [f"pad{l}"])
            taps = [g.node("Slice", [f"pad{l}", g.const([n - j * d]), g.const([n - j * d + T]), g.const([1])],
                           [f"tap{l}_{j}"]) for j in range(K)]
            g.node("Concat", taps, [f"cat{l}"], axis=2)
            g.node("MatMul", [f"cat{l}", g.weight(f"Wt{l}", _taps_weight(a[f"tcn_W{l}"]), False)], [f"ym{l}"])
            g.node("Add", [f"ym{l}", g.weight(f"b{l}", a[f"tcn_b{l}"], False)], [f"y{l}"])
            g.node("Relu", [f"y{l}"], [f"r{l}"])
            res = h
            if l == 0 and p["proj"]:
                g.node("MatMul", [h, g.weight("PT", a["tcn_P"].T, False)], ["resm"])
                res = g.node("Add", ["resm", g.weight("pb", a["tcn_pb"], False)], ["res0"])
            h = g.node("Add", [f"r{l}", res], [f"h{l}"])
        g.node("Gather", [h, g.const(T - 1)], ["last"], axis=1)
        g.node("ReduceSum", [h, g.const([1])], ["hsum"], keepdims=0)
    else:
        raise ValueError(f"unknown TCN graph form {form!r}")
    g.node("Mul", ["hsum", g.const(1.0 / T, np.float32)], ["mean"])
    return "last", "mean"


def build_window_model(p: dict, form: str | None = None, quant: dict | None = None):
    """The WINDOW graph ``(window [B, T], rr [B, F]) -> logits [B, C]`` in ``form`` (the first of
    ``WINDOW_FORMS[kind]`` by default; the others are kept for the measurement)."""
    form = form or WINDOW_FORMS[p["kind"]][0]
    g = _Graph(quant)
    last, mean = (_lstm_window if p["kind"] == "lstm" else _tcn_window)(g, p, form)
    _head(g, p, last, mean)
    return g.model(f"{p['kind']}_window", *_window_io(p))


# -- step graph --------------------------------------------------------------------------------------

def build_step_model(p: dict):
    """The STEP graph: ``u [B, 1]`` plus the states (and for the TCN ``pos`` int32 [1]) -> ``out``
    ``[B, H]`` plus ``<state>_out``. Always float."""
    from onnx import TensorProto

    a, H = p["a"], p["H"]
    g = _Graph()
    g.inits.append(_init("in_scale", a["in_scale"]))
    x = g.node("Mul", ["u", "in_scale"], ["x"])
    states = step_states(p["est"])
    if p["kind"] == "lstm":
        for l in range(p["L"]):
            g.node("MatMul", [x, g.weight(f"WihT{l}", _gates(a[f"lstm_Wih{l}"], CELL_GATES).T)], [f"gxm{l}"])
            g.node("Add", [f"gxm{l}", g.weight(f"bg{l}", _gates(a[f"lstm_b{l}"], CELL_GATES))], [f"gx{l}"])
            whh = g.weight(f"WhhT{l}", _gates(a[f"lstm_Whh{l}"], CELL_GATES).T)
            x = _lstm_cell(g, H, f"gx{l}", f"h{l}", f"c{l}", whh, f"_{l}", f"h{l}_out", f"c{l}_out", None)
        extra = []
    else:
        K, lens = p["K"], p["lens"]
        # Every row a step touches, for all blocks at once: block l reads the taps j d steps back
        # (j = 1..K-1) at rows (pos - j d) mod n_l and writes x at row pos mod n_l (x is tap 0).
        back = [j * 2 ** l for l in range(p["L"]) for j in range(K)]
        mods = [n for n in lens for _ in range(K)]
        g.node("Sub", ["pos", g.const(back, np.int32)], ["back"])
        g.node("Mod", ["back", g.const(mods, np.int32)], ["rows"])
        parts = [f"{k}{l}" for l in range(p["L"]) for k in ("wrow", "rrows")]
        g.node("Split", ["rows", g.const([1, K - 1] * p["L"])], parts, axis=0)
        for l in range(p["L"]):
            buf = f"buf{l}"
            g.node("Gather", [buf, f"rrows{l}"], [f"taps{l}"], axis=1)  # [B, K-1, C_in]
            g.node("Flatten", [f"taps{l}"], [f"tapf{l}"], axis=1)
            g.node("Concat", [x, f"tapf{l}"], [f"cat{l}"], axis=1)  # [B, K C_in]
            g.node("MatMul", [f"cat{l}", g.weight(f"Wt{l}", _taps_weight(a[f"tcn_W{l}"]))], [f"ym{l}"])
            g.node("Add", [f"ym{l}", g.weight(f"b{l}", a[f"tcn_b{l}"])], [f"y{l}"])
            g.node("Relu", [f"y{l}"], [f"r{l}"])
            # one row written, not a shift of the buffer
            g.node("Unsqueeze", [x, g.const([1])], [f"xrow{l}"])  # [B, 1, C_in]
            if l < 2:  # the same [B, 1, C] from block 1 on
                g.node("Shape", [f"xrow{l}"], [f"xshape{l}"])
            g.node("Expand", [f"wrow{l}", f"xshape{min(l, 1)}"], [f"widx{l}"])
            g.node("ScatterElements", [buf, f"widx{l}", f"xrow{l}"], [f"{buf}_out"], axis=1)
            res = x
            if l == 0 and p["proj"]:
                g.node("MatMul", [x, g.weight("PT", a["tcn_P"].T)], ["resm"])
                res = g.node("Add", ["resm", g.weight("pb", a["tcn_pb"])], ["res0"])
            x = g.node("Add", [f"r{l}", res], [f"h{l}"])
        extra = [_io("pos", [1], TensorProto.INT32)]
    g.node("Identity", [x], ["out"])
    inputs = [_io("u", ["B", p["D"]])] + [_io(k, ["B", *s]) for k, s in states.items()] + extra
    outputs = [_io("out", ["B", H])] + [_io(k + "_out", ["B", *s]) for k, s in states.items()]
    return g.model(f"{p['kind']}_step", inputs, outputs)


# -- int8 ---------------------------------------------------------------------------------------------

#: Share of an int8 activation's calibration values inside its range (the rest clip).
INT8_QUANTILE = 0.9999


def _ranges(model, names: list[str], windows, rr, quantile: float = INT8_QUANTILE) -> dict:
    """``(max, quantile)`` of ``|value|`` of each named tensor of the float WINDOW ``model`` over
    the beats (the quantile from at most ~1M values a tensor, an even subsample)."""
    import onnx
    import onnxruntime as ort

    if not names:
        return {}
    m = onnx.ModelProto()
    m.CopyFrom(model)
    del m.graph.output[:]
    m.graph.output.extend([_io(n, None) for n in names])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    s = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    top = {n: 0.0 for n in names}
    vals: dict = {n: [] for n in names}
    for i in range(0, len(windows), 256):
        for n, v in zip(names, s.run(names, {"window": windows[i:i + 256], "rr": rr[i:i + 256]})):
            v = np.abs(v).ravel()
            top[n] = max(top[n], float(v.max()))
            vals[n].append(v[::max(1, len(v) * len(windows) // (256 << 20))])
    return {n: (top[n], float(np.quantile(np.concatenate(vals[n]), quantile))) for n in names}


#: Activations the int8 WINDOW graph quantizes, and how wide (by measurement, see the docstring).
#: Ranges known without calibration: ``z`` is clipped to +-4.
FIXED_RANGE = {"z": SIDE_CLIP}


def activation_plan(p: dict) -> dict:
    """Tensor -> bits for the QDQ activations of the int8 WINDOW graph, chosen by measurement on
    the 50,977 DS1 beats with the DS1 ``small`` bundles (module docstring).

    LSTM: the pooled outputs int8; the side features and the head's hidden layer int16 (int8
    moved 13 and 8 labels more); the input is quantized by ``DynamicQuantizeLSTM`` itself.
    TCN: the residual stream ``h{l}`` (every block's input, summed over all blocks), the input,
    the last output and the head's hidden layer int16 (each alone at int8 moved 9 to 40 labels more);
    the ReLU branches int8 but for the middle blocks 3 .. L-2, whose int8 pushed beats into the
    8-beat Q class (its +P moves 1.8 points a beat); the projection, mean and side features int8.
    """
    if p["kind"] == "lstm":
        plan = {"last": 8, "mean": 8, "z": 16, "hid": 16}
    else:
        plan = {"x": 16, **({"res0": 8} if p["proj"] else {})}
        for l in range(p["L"]):
            plan.update({f"r{l}": 16 if 3 <= l < p["L"] - 1 else 8, f"h{l}": 16})
        plan.update({"last": 16, "mean": 8, "z": 8, "hid": 16})
    if not p["side"]:
        del plan["z"]
    return plan


def _dynamic_lstm(model):
    """The ``LSTM`` ops as onnxruntime's ``DynamicQuantizeLSTM`` (int8 weights, activations
    quantized per call): ``quantize_static`` leaves ``LSTM`` in float."""
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    # The quantizer logs advice on the root logger (run its pre-processing, check for QAT) that
    # does not apply to a graph built here: keep it off the user's terminal.
    root.setLevel(logging.ERROR)
    try:
        with tempfile.TemporaryDirectory(prefix="edgeseq_q_") as work:
            src, dst = Path(work) / "in.onnx", Path(work) / "out.onnx"
            onnx.save(model, src)
            # reduce_range: 7-bit weights. Without VNNI, onnxruntime's u8s8 kernel sums u8 x s8
            # pairs in int16 (VPMADDUBSW) and saturates: on an AVX2-only CPU the 8-bit test model
            # agreed with float on 97.5% of beats, against 99.7% with VNNI. 255 * 64 * 2 < 2^15,
            # so 7-bit weights cannot saturate; per channel wins back the lost bit (99.7% on both).
            quantize_dynamic(src, dst, op_types_to_quantize=["LSTM"], per_channel=True, reduce_range=True,
                             weight_type=QuantType.QInt8)
            return onnx.load(dst)
    finally:
        root.setLevel(level)


def build_int8_window_model(p: dict, windows, rr, plan: dict | None = None):
    """The int8 WINDOW graph and its activation table ``{tensor: (scale, bits)}``: weights int8 per
    output channel (DequantizeLinear in the graph; the LSTM's own as ``DynamicQuantizeLSTM``),
    activations through Quantize/DequantizeLinear at ranges measured on ``windows``/``rr``."""
    plan = activation_plan(p) if plan is None else plan
    fixed = FIXED_RANGE
    ranges = _ranges(build_window_model(p), [n for n in plan if n not in fixed], windows, rr)
    ranges.update({n: (v, v) for n, v in fixed.items() if n in plan})
    # int16: the largest value seen (no clipping, steps still fine); int8: a quantile, since the
    # largest of a heavy tail would leave the bulk of the values a few steps
    quant = {n: (max(ranges[n][b == 8], 1e-6) / (2 ** (b - 1) - 1), b) for n, b in plan.items()}
    model = build_window_model(p, quant=quant)
    return (_dynamic_lstm(model) if p["kind"] == "lstm" else model), quant


# -- bundle ------------------------------------------------------------------------------------------

def _quantization_record(p: dict, quant: dict, n_beats: int, agree: float) -> dict:
    """The manifest's ``runtime.quantization``: what is stored and computed at which width."""
    rec = {"tool": "edgeseq.export.onnx_neural", "format": "QDQ", "weights": "int8",
           "weight_scales": "per-channel", "biases": "float32"}
    if p["kind"] == "lstm":
        rec["recurrence"] = ("DynamicQuantizeLSTM (onnxruntime contrib op, via quantize_dynamic): int8 "
                             "weights in the 7-bit range per channel, uint8 input and hidden state "
                             "quantized per call")
    rec["activations"] = {n: f"int{b}" for n, (_, b) in quant.items()}
    rec["activation_scales"] = {n: float(sc) for n, (sc, _) in quant.items()}
    rec["calibration_beats"] = int(n_beats)
    rec["calibration_agreement"] = round(agree, 6)
    return rec


def export_neural_onnx(bundle_path, out_dir, *, int8: bool = False, calibration=None,
                       form: str | None = None) -> Path:
    """Export a trained LSTM or TCN bundle to ``out_dir``: its manifest with a ``runtime``
    section added, ``model.onnx`` (WINDOW; int8 with ``int8=True``), ``step.onnx`` (STEP, float)
    and the unchanged ``weights.npz`` (the head for ``readout``, and the numpy reference).

    ``calibration`` (int8 only): ``(windows, rr)`` arrays, or ``(data_dir, records)`` to read beats.
    """
    import onnx

    src, bundle, manifest = source_bundle(bundle_path, out_dir)
    p = _parts(manifest, bundle.arrays)
    graphs = {"float": build_window_model(p, form), "step": build_step_model(p)}
    if int8:
        windows, rr = _calibration_beats(calibration, manifest)
        graphs["int8"], quant = build_int8_window_model(p, windows, rr)
    form = WINDOW_FORMS[p["kind"]][0] if int8 or form is None else form
    with tempfile.TemporaryDirectory(prefix="edgeseq_onnx_") as tmp:
        paths = {name: Path(tmp) / f"{name}.onnx" for name in graphs}
        for name, graph in graphs.items():
            onnx.save(graph, paths[name])
        rt = neural_runtime_section(p["est"], "onnx", T=p["T"], F=p["F"], int8=int8, model=MODEL, step=STEP,
                                    graph_form=form, source_sha256=sha256_file(src / manifest["model"].get("weights", WEIGHTS)))
        if int8:
            rt["quantization"] = _quantization_record(
                p, quant, len(windows), _agreement(paths["float"], paths["int8"], windows, rr))
        manifest["runtime"] = rt
        files = {MODEL: paths["int8" if int8 else "float"], STEP: paths["step"]}
        return write_bundle(Path(out_dir), manifest, bundle.arrays, files=files)
