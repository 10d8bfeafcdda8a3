"""Lower a model description (:mod:`edgeseq.graph`), float or quantized, to ONNX: :func:`to_onnx`.

Decisions, as measured on the hand-built exporters this replaces:

- A loop is a ``Scan`` reading carry tensors from the outer scope (faster than unrolled, one copy
  of the body: ``tools/bench/export_forms.py``) over time-major inputs; the body's work on scanned
  inputs and carry alone (the ESN's input drive, a reservoir's ``x_t @ Win``) runs before it, once
  on the whole ``[T, B, ..]`` tensors. A loop the LSTM description marks (``hint["lstm"]``) is the
  ``LSTM`` op per layer (several times faster), unless its body rounds.
- ``conv`` is ``Conv`` over ``[B, C, T]``, dilated, padded ``(K-1) d`` on the left only. Elementwise
  ops and ``fc`` (a 1x1 Conv) on channels-first tensors stay so; a tensor is transposed back only
  where read as ``[B, T, C]``, a ``q`` output by rounding its transposed input (onnxruntime's QDQ
  propagation fails on a Transpose after an int16 DequantizeLinear).
- A :class:`~edgeseq.graph.Weight` is int8 + scales + DequantizeLinear in the main graph, also for
  a loop body (folded once per session; the file keeps int8). Activations round at ``q`` nodes
  only (Quantize + DequantizeLinear, zero point 0); a float graph's ``q`` is no node.
- Opset 17 / IR 8 for float graphs, 21 / IR 10 once anything is quantized (int16 QDQ needs 21).
"""

from __future__ import annotations

from collections import ChainMap

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..graph import Graph, Weight

_ONNX = {"add": "Add", "sub": "Sub", "mul": "Mul", "max": "Max", "min": "Min",
         "tanh": "Tanh", "sigmoid": "Sigmoid", "relu": "Relu", "log": "Log"}


class _Lowering:
    """The ONNX nodes and initializers of one description. ``env``/``cf``: IR tensor -> ONNX name
    in the description's layout / channels-first (a loop body and its hoisted work chain their own)."""

    def __init__(self, g: Graph):
        self.g, self.suffix, self.n, self.inits, self.made = g, "", 0, [], {}
        self.qs = {n.outputs[0]: n for n in g.walk() if n.op == "q"}
        self.quantized = (any(isinstance(v, Weight) for v in g.consts.values())
                          or any(n.attrs["scale"] is not None for n in self.qs.values()))
        self.main = self.nodes = []
        self.env, self.cf = ChainMap({k: k for k in g.inputs}), ChainMap()

    def op(self, kind, ins, out=None, **attrs):
        """One ONNX node; ``out`` a name, a list of names or None (a fresh name)."""
        outs = out if isinstance(out, list) else [out or self.fresh(kind)]
        self.nodes.append(helper.make_node(kind, list(ins), outs, **attrs))
        return outs if isinstance(out, list) else outs[0]

    def fresh(self, base: str) -> str:
        self.n += 1
        return f"{base}/{self.n}"

    def emit(self, n, kind, ins, cf: bool = False, **attrs) -> None:
        """``n``'s output as one ONNX node, in the description's layout or channels-first."""
        self.put(n, self.op(kind, ins, self.fresh(n.outputs[0]) if cf else n.outputs[0] + self.suffix, **attrs), cf)

    def put(self, n, ys, cf: bool = False) -> None:
        (self.cf if cf else self.env).update(zip(n.outputs, [ys] if isinstance(ys, str) else ys))

    def k(self, value, dtype=np.int64) -> str:
        """A small constant (axes, shapes, scales), one initializer per value."""
        arr = np.asarray(value, dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self.made:
            self.made[key] = self.init(self.fresh("k"), arr)
        return self.made[key]

    def init(self, name: str, arr) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(arr, order="C"), name))
        return name

    def const(self, name: str, v) -> str:
        """A constant, made once in the main graph: a Weight as int8 + scales + DequantizeLinear,
        integers (gather indices) int64, the rest float32."""
        if name not in self.made:
            if isinstance(v, Weight):
                ins = [self.init(name + "/q", v.q), self.init(name + "/scale", v.scale)]
                self.main.append(helper.make_node("DequantizeLinear", ins, [name], axis=v.axis))
            else:
                self.init(name, v.astype(np.int64) if v.dtype.kind in "iu" else v)
            self.made[name] = name
        return name

    def derived(self, name: str, tag: str, fn, axis=None, scale=lambda s, ax: s) -> str:
        """The constant ``fn(name)``; a Weight stays int8: ``fn`` on its values, ``scale`` on its
        scales, its channel axis moved to ``axis(old axis)`` (required then)."""
        v = self.g.consts[name]
        v = Weight(fn(v.q), scale(v.scale, v.axis), axis(v.axis)) if isinstance(v, Weight) else fn(v)
        return self.const(f"{name}/{tag}", v)

    def get(self, x: str, cf: bool = False) -> str:
        """``x`` in the description's layout or channels-first, transposed where first asked for
        (a ``q`` output: its input transposed, then rounded)."""
        if x in self.g.consts:
            return self.const(x, self.g.consts[x])
        have = self.cf if cf else self.env
        if x not in have:
            n = self.qs.get(x)
            have[x] = (_q(self, n, [self.get(n.inputs[0], cf)], self.fresh(x)) if n else
                       self.op("Transpose", [self.get(x, not cf)], perm=[0, 2, 1]))
        return have[x]

    def only_cf(self, x: str) -> bool:
        return x in self.cf and x not in self.env

    def lower(self, nodes) -> None:
        for n in nodes:
            if n.op not in _ELEMENTWISE:
                _OPS[n.op](self, n)
                continue
            shape = self.g.shapes[n.outputs[0]]
            wide = [x for x in n.inputs if not all(d == 1 for d in self.g.shapes[x])]  # not a scalar
            cf = any(map(self.only_cf, wide)) and len(shape) == 3 and all(self.g.shapes[x] == shape for x in wide)
            out = self.fresh(n.outputs[0]) if cf else n.outputs[0] + self.suffix
            self.put(n, _ELEMENTWISE[n.op](self, n, [self.get(x, cf and x in wide) for x in n.inputs], out), cf)


# -- ops --------------------------------------------------------------------------------------------
def _q(L, n, ins, out):
    if n.attrs["scale"] is None:
        return ins[0]
    s, zp = L.k(n.attrs["scale"], np.float32), L.k(0, np.int8 if n.attrs["bits"] == 8 else np.int16)
    return L.op("DequantizeLinear", [L.op("QuantizeLinear", [ins[0], s, zp]), s, zp], out)


#: ops that run in either layout: ``(lowering, node, ONNX inputs, output name) -> ONNX name``
_ELEMENTWISE = {
    **{op: (lambda L, n, ins, out: L.op(_ONNX[n.op], ins, out)) for op in _ONNX},
    "clip": lambda L, n, ins, out: L.op("Clip", [ins[0], L.k(n.attrs["lo"], np.float32),
                                                 L.k(n.attrs["hi"], np.float32)], out),
    "q": _q,
}
_HOIST = {*_ELEMENTWISE, "fc"}  # ops a Scan body's input work may run as on [T, B, ..]


def _fc(L, n):
    x, w, *b = n.inputs
    if x in L.cf and len(L.g.shapes[x]) == 3:  # in a channels-first run: a 1x1 Conv
        wt = L.derived(w, "conv", lambda a: a.T[:, :, None], lambda ax: 1 - ax)
        return L.emit(n, "Conv", [L.cf[x], wt, *map(L.get, b)], True, kernel_shape=[1])
    y = L.op("MatMul", [L.get(x), L.get(w)], None if b else n.outputs[0] + L.suffix)
    L.put(n, L.op("Add", [y, L.get(b[0])], n.outputs[0] + L.suffix) if b else y)


def _time(L, n):
    """``take``, ``mean``, ``slice``: over axis 1, or axis 2 of a channels-first tensor."""
    x, a, cf = n.inputs[0], n.attrs, L.only_cf(n.inputs[0])
    ax, x = 2 if cf else 1, L.get(x, cf)
    if n.op == "take":
        return L.emit(n, "Gather", [x, L.k(a["index"])], axis=ax)
    if n.op == "slice":
        return L.emit(n, "Slice", [x, L.k([a["start"]]), L.k([a["start"] + a["length"]]), L.k([ax])], cf)
    axes = {} if L.quantized else {"axes": [ax]}  # opset 21 (from 18): an input
    L.emit(n, "ReduceMean", [x] if axes else [x, L.k([ax])], keepdims=0, **axes)


def _conv(L, n):
    x, w, b = n.inputs
    d, K = n.attrs["dilation"], L.g.shapes[w][2]
    L.emit(n, "Conv", [L.get(x, True), L.get(w), L.get(b)], True, kernel_shape=[K], dilations=[d], pads=[(K - 1) * d, 0])


def _scan(L, n):
    """A Scan over one step, scanning time-major ``[T, B, ..]`` tensors (a step's slice is contiguous).
    The body's work on scanned inputs and carry alone (no state) runs before it, on the whole
    tensors (carry as ``[1, B, ..]``), and the body scans its results."""
    body, ns, nc = n.attrs["body"], n.attrs["n_state"], n.attrs["n_carry"]
    init = [L.get(x) for x in n.inputs[:ns]]
    carry = {k: L.get(x) for k, x in zip(body.inputs[ns:ns + nc], n.inputs[ns:ns + nc])}
    seq = {k: L.op("Transpose", [L.get(x)], perm=[1, 0, *range(2, len(L.g.shapes[x]))])  # body name -> [T, B, ..]
           for k, x in zip(body.inputs[ns + nc:], n.inputs[ns + nc:])}
    if not seq:
        raise ValueError(f"loop {body.name!r} scans no input: it has no Scan form")
    dep, pre, consts = set(seq), [], set(L.g.consts)
    for m in body.nodes:
        if m.op in _HOIST and dep & set(m.inputs) and set(m.inputs) <= dep | consts | set(carry) and \
                (m.op != "fc" or set(m.inputs[1:]) <= consts):
            pre.append(m)
            dep.update(m.outputs)
    saved, reads = (L.env, L.cf), {i for m in pre for i in m.inputs}
    bcast = {k: L.op("Unsqueeze", [x, L.k([0])]) for k, x in carry.items() if k in reads}
    L.env, L.cf, L.suffix = L.env.new_child({**seq, **bcast}), L.cf.new_child(), "@T"
    L.lower(pre)
    rest = [m for m in body.nodes if m not in pre]
    need = {i for m in rest for i in m.inputs} | set(body.outputs)
    scans = {k: L.env[k] for k in [*seq, *(o for m in pre for o in m.outputs)] if k in need} or seq
    own, main, L.suffix = body.inputs[:ns] + list(scans), L.nodes, ""
    L.nodes, L.env, L.cf = [], saved[0].new_child({**{k: k for k in own}, **carry}), saved[1].new_child()
    L.lower(rest)
    made, outs = {o for nd in L.nodes for o in nd.output}, []
    for o in map(L.get, body.outputs):  # a Scan output is made in the body, once
        outs.append(o if o in made and o not in outs else L.op("Identity", [o]))
    vi = lambda k: helper.make_tensor_value_info(k, TensorProto.FLOAT, None)  # noqa: E731
    graph = helper.make_graph(L.nodes, body.name, [vi(k) for k in own], [vi(k) for k in outs])
    L.nodes, (L.env, L.cf) = main, saved
    axes = {"scan_output_axes": [1] * (len(n.outputs) - ns)} if len(n.outputs) > ns else {}
    L.put(n, L.op("Scan", init + list(scans.values()), list(n.outputs), body=graph, num_scan_inputs=len(scans), **axes))


def _lstm(L, n) -> bool:
    """A loop whose hint marks an LSTM as one LSTM op per layer; False (nothing made) where that
    cannot be: no hint, a rounded activation in the body, a state or collected tensor the op does not give."""
    a, body, hint = n.attrs, n.attrs["body"], n.attrs["hint"].get("lstm")
    if not hint:
        return False
    layers = hint["layers"]
    ns, names, top = a["n_state"], a["names"], f"h{len(layers) - 1}"
    key = lambda s: names[names.index(s) if s in names else body.inputs.index(s)]  # noqa: E731
    acc = key(hint["acc"]) if hint.get("acc") else None
    known = {f"{s}{l}" for l in range(len(layers)) for s in "hc"} | {acc}
    if (any(m.op == "q" and m.attrs["scale"] is not None for m in body.walk()) or not set(names[:ns]) <= known
            or top not in names or any(o != body.outputs[names.index(top)] for o in body.outputs[ns:])):
        return False
    order = [hint["gates"].index(c) for c in "iofg"]  # ONNX's gate order
    re = lambda v, ax: np.concatenate([np.split(v, 4, axis=ax)[i] for i in order], axis=ax)  # noqa: E731
    init = {k: L.get(x) for k, x in zip(names[:ns], n.inputs[:ns])}
    x = L.op("Transpose", [L.get(n.inputs[names.index(key(hint["x"]))])], perm=[1, 0, 2])
    res = {}
    for l, lay in enumerate(layers):  # W^T [in, 4H] -> [1, 4H, in]; b -> [1, 8H] with Rb = 0
        W, R = (L.derived(lay[m], "lstm", lambda v: np.moveaxis(re(v, -1), -1, 0)[None], lambda ax: 1 if ax else 2,
                          lambda s, ax: re(s, 0) if ax else s) for m in "WR")
        b = L.derived(lay["b"], "lstm", lambda v: np.concatenate([re(v, 0), 0 * v])[None]) if lay.get("b") else ""
        h0, c0 = (L.op("Unsqueeze", [init[f"{s}{l}"], L.k([0])]) if f"{s}{l}" in init else "" for s in "hc")
        y, yh, yc = L.op("LSTM", [x, W, R, b, "", h0, c0], [L.fresh(f"Y{l}"), L.fresh("Y_h"), L.fresh("Y_c")],
                         hidden_size=hint["H"])
        x = L.op("Squeeze", [y, L.k([1])])  # [T, B, H]
        res[f"h{l}"], res[f"c{l}"] = (L.op("Squeeze", [v, L.k([0])]) for v in (yh, yc))
    if acc:
        res[acc] = L.op("Add", [init[acc], L.op("ReduceSum", [x, L.k([0])], keepdims=0)])
    seq = [L.op("Transpose", [x], perm=[1, 0, 2])] if len(n.outputs) > ns else []
    L.put(n, [res[k] for k in names[:ns]] + seq * (len(n.outputs) - ns))
    return True


_OPS = {
    "fc": _fc, "conv": _conv, "take": _time, "mean": _time, "slice": _time,
    "loop": lambda L, n: _lstm(L, n) or _scan(L, n),
    "concat": lambda L, n: L.emit(n, "Concat", map(L.get, n.inputs), axis=n.attrs["axis"]),
    "gather": lambda L, n: L.emit(n, "Gather", map(L.get, n.inputs), axis=-1),
    "reshape": lambda L, n: L.emit(n, "Reshape", [L.get(n.inputs[0]), L.k([0, *n.attrs["shape"]])]),
    "split": lambda L, n: L.put(n, L.op("Split", [L.get(n.inputs[0]), L.k(n.attrs["sizes"])],
                                        [o + L.suffix for o in n.outputs], axis=-1)),
    "zeros": lambda L, n: L.emit(n, "ConstantOfShape", [L.op("Concat", [L.op("Shape", [L.get(n.inputs[0])], end=1),
                                                                          L.k(n.attrs["shape"])], axis=0)]),
}


def to_onnx(g: Graph) -> onnx.ModelProto:
    """``g`` as a checked ONNX model: inputs and outputs keep their names, float32, batch ``"B"``,
    a time length left open ``"T"``."""
    L = _Lowering(g)
    L.lower(g.nodes)
    for o in g.outputs:
        if L.get(o) != o:
            L.op("Identity", [L.get(o)], o)

    def io(k):
        dims = ["B" if i == 0 else "T" if d is None else d for i, d in enumerate(g.shapes[k])]
        return helper.make_tensor_value_info(k, TensorProto.FLOAT, dims)

    graph = helper.make_graph(L.nodes, g.name, [io(k) for k in g.inputs], [io(k) for k in g.outputs], L.inits)
    opset = helper.make_opsetid("", 21 if L.quantized else 17)
    model = helper.make_model(graph, opset_imports=[opset], producer_name="edgeseq")
    model.ir_version = 10 if L.quantized else 8
    onnx.checker.check_model(model)
    return model
