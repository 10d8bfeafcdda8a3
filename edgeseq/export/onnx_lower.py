"""Lower a model description (:mod:`edgeseq.graph`), float or quantized, to ONNX: :func:`to_onnx`.

The decisions the hand-built exporters measured, kept here once for every family:

- The loop over time is one ``Scan`` (faster than an unrolled graph at one beat and in batches,
  and one copy of the body); carry tensors are read from the outer scope, not passed as inputs.
  ``loop="unroll"`` inlines the body ``steps`` times, for measurement only.
- A loop the LSTM description marks (``attrs["hint"]["lstm"]``) is onnxruntime's ``LSTM`` op, one
  per layer (several times faster than the explicit cell in a Scan), unless its body quantizes an
  activation, which the op cannot: then it is a Scan like any loop.
- ``conv`` is ``Conv`` over ``[B, C, T]`` with dilation and left-only pads ``(K-1) d`` (a third of
  the time of shifted taps and MatMul). A run of conv and elementwise ops stays channels-first;
  a tensor is transposed back to the description's ``[B, T, C]`` only where something reads it so
  (``take`` and ``mean`` read channels-first directly).
- A :class:`~edgeseq.graph.Weight` is an int8 initializer, its per-channel scales and a
  DequantizeLinear in the main graph, also when a loop body uses it (folded once per session, the
  file keeps the int8 bytes). Activations are quantized only at ``q`` nodes (QuantizeLinear +
  DequantizeLinear, zero point 0, int8 or int16); in a float graph ``q`` is no node at all.
- Opset 17 / IR 8 for float graphs; 21 / IR 10 once anything is quantized (the first opset whose
  Quantize/DequantizeLinear take int16).
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
    """ONNX nodes and initializers for one description. ``env``: IR tensor -> ONNX name in the
    description's layout; ``cf``: IR tensor -> ONNX name channels-first (``[B, C, T]``)."""

    def __init__(self, g: Graph, loop: str):
        if loop not in ("scan", "unroll"):
            raise ValueError(f"unknown loop form {loop!r}")
        self.g, self.loop = g, loop
        self.quantized = (any(isinstance(v, Weight) for v in g.consts.values())
                          or any(n.op == "q" and n.attrs["scale"] is not None for n in g.walk()))
        self.opset = 21 if self.quantized else 17
        self.main = self.nodes = []
        self.inits, self.made, self.n, self.suffix = [], {}, 0, ""
        self.env, self.cf = ChainMap({k: k for k in g.inputs}), ChainMap()

    # -- names, constants, layouts ----------------------------------------------------------------
    def op(self, kind, ins, out=None, **attrs):
        """One ONNX node in the graph being built; ``out`` a name, a list of names, or None (fresh)."""
        outs = out if isinstance(out, list) else [out or self.fresh(kind)]
        self.nodes.append(helper.make_node(kind, list(ins), outs, **attrs))
        return outs if isinstance(out, list) else outs[0]

    def fresh(self, base: str) -> str:
        self.n += 1
        return f"{base}/{self.n}"

    def out(self, x: str) -> str:
        """The ONNX name the IR tensor ``x`` is defined under here (unrolled steps add ``@t``)."""
        return x + self.suffix

    def put(self, n, ys, cf: bool = False) -> None:
        (self.cf if cf else self.env).update(zip(n.outputs, [ys] if isinstance(ys, str) else ys))

    def init(self, name: str, arr) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(arr, order="C"), name))
        return name

    def k(self, value, dtype=np.int64) -> str:
        """A small constant (axes, shapes, scales), one initializer per value."""
        arr = np.asarray(value, dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self.made:
            self.made[key] = self.init(self.fresh("k"), arr)
        return self.made[key]

    def const(self, name: str, v) -> str:
        """A description constant, made once in the main graph: a Weight as int8 + scales +
        DequantizeLinear, integers (gather indices) as int64, the rest float32."""
        if name not in self.made:
            if isinstance(v, Weight):
                q, s = self.init(name + "/q", v.q), self.init(name + "/scale", v.scale)
                self.main.append(helper.make_node("DequantizeLinear", [q, s], [name], axis=v.axis))
                self.made[name] = name
            else:
                self.made[name] = self.init(name, v.astype(np.int64) if v.dtype.kind in "iu" else v)
        return self.made[name]

    def get(self, x: str) -> str:
        """``x`` in the description's layout (a channels-first tensor is transposed once, here)."""
        if x in self.g.consts:
            return self.const(x, self.g.consts[x])
        if x not in self.env:
            self.env[x] = self.op("Transpose", [self.cf[x]], perm=[0, 2, 1])
        return self.env[x]

    def get_cf(self, x: str) -> str:
        if x not in self.cf:
            self.cf[x] = self.op("Transpose", [self.get(x)], perm=[0, 2, 1])
        return self.cf[x]

    def only_cf(self, x: str) -> bool:
        return x in self.cf and x not in self.env

    def neutral(self, x: str) -> bool:
        """A tensor that broadcasts the same in either layout (a scalar)."""
        return all(d == 1 for d in self.g.shapes[x])

    # -- nodes ------------------------------------------------------------------------------------
    def lower(self, graph: Graph) -> None:
        for n in graph.nodes:
            if n.op not in _ELEMENTWISE:
                _OPS[n.op](self, n)
                continue
            shape = self.g.shapes[n.outputs[0]]
            wide = [x for x in n.inputs if not self.neutral(x)]
            cf = (any(self.only_cf(x) for x in wide) and len(shape) == 3
                  and all(self.g.shapes[x] == shape for x in wide))
            ins = [self.get_cf(x) if cf and x in wide else self.get(x) for x in n.inputs]
            self.put(n, _ELEMENTWISE[n.op](self, n, ins, self.fresh(n.outputs[0]) if cf else self.out(n.outputs[0])), cf)

    def reduce(self, kind: str, x: str, axis: int, out=None) -> str:
        if kind == "ReduceMean" and self.opset < 18:  # axes an attribute until opset 18
            return self.op(kind, [x], out, axes=[axis], keepdims=0)
        return self.op(kind, [x, self.k([axis])], out, keepdims=0)

    def scans(self, n) -> list:
        """The loop's scanned inputs, cut to ``steps`` where they are longer."""
        a = n.attrs
        xs = n.inputs[a["n_state"] + a["n_carry"]:]
        return [self.get(x) if a["steps"] in (None, self.g.shapes[x][1]) else
                self.op("Slice", [self.get(x), self.k([0]), self.k([a["steps"]]), self.k([1])]) for x in xs]

    def gates(self, name: str, order, bias: bool = False) -> str:
        """``W^T [in, 4H]`` as the LSTM op's ``[1, 4H, in]`` (a bias ``[4H]`` as ``[1, 8H]``, with
        ``Rb = 0``), gate blocks reordered; a Weight stays int8."""
        v = self.g.consts[name]
        re = lambda a, ax: np.concatenate([np.split(a, 4, axis=ax)[i] for i in order], axis=ax)  # noqa: E731
        if bias:
            b = re(v.value() if isinstance(v, Weight) else v, 0)
            return self.const(name + "/lstm", np.concatenate([b, np.zeros_like(b)])[None])
        tf = lambda a: np.moveaxis(re(a, -1), -1, 0)[None]  # noqa: E731
        if isinstance(v, Weight):
            on_gates = v.axis == v.q.ndim - 1
            v = Weight(tf(v.q), re(v.scale, 0) if on_gates else v.scale, 1 if on_gates else 2)
        return self.const(name + "/lstm", v if isinstance(v, Weight) else tf(v))


# -- ops ------------------------------------------------------------------------------------------
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


def _fc(L, n):
    x, w, *b = n.inputs
    y = L.op("MatMul", [L.get(x), L.get(w)], None if b else L.out(n.outputs[0]))
    L.put(n, L.op("Add", [y, L.get(b[0])], L.out(n.outputs[0])) if b else y)


def _on_time(L, n, cf_op, op):
    """``take``/``mean``/``slice``: over axis 1, or axis 2 of a channels-first tensor."""
    x = n.inputs[0]
    cf = L.only_cf(x)
    y = op(L, n, L.cf[x] if cf else L.get(x), 2 if cf else 1, L.fresh(n.outputs[0]) if cf and cf_op else L.out(n.outputs[0]))
    L.put(n, y, cf and cf_op)


def _slice(L, n, x, axis, out):
    s = n.attrs["start"]
    return L.op("Slice", [x, L.k([s]), L.k([s + L.g.shapes[n.outputs[0]][1]]), L.k([axis])], out)


def _zeros(L, n):
    b = L.op("Shape", [L.get(n.inputs[0])], end=1)
    L.put(n, L.op("ConstantOfShape", [L.op("Concat", [b, L.k(n.attrs["shape"])], axis=0)], L.out(n.outputs[0])))


def _conv(L, n):
    x, w, b = n.inputs
    d, K = n.attrs["dilation"], L.g.shapes[w][2]
    L.put(n, L.op("Conv", [L.get_cf(x), L.get(w), L.get(b)], L.fresh(n.outputs[0]), kernel_shape=[K],
                  dilations=[d], pads=[(K - 1) * d, 0]), cf=True)


def _scan(L, n):
    a, body = n.attrs, n.attrs["body"]
    ns, nc = a["n_state"], a["n_carry"]
    init, scans = [L.get(x) for x in n.inputs[:ns]], L.scans(n)
    own = body.inputs[:ns] + body.inputs[ns + nc:]
    carry = {k: L.get(x) for k, x in zip(body.inputs[ns:ns + nc], n.inputs[ns:ns + nc])}
    saved = L.nodes, L.env, L.cf
    L.nodes, L.env, L.cf = [], L.env.new_child({**{k: k for k in own}, **carry}), L.cf.new_child()
    L.lower(body)
    made, outs = {o for nd in L.nodes for o in nd.output}, []
    for o in map(L.get, body.outputs):  # a Scan output must be made in the body, and only once
        outs.append(o if o in made and o not in outs else L.op("Identity", [o]))
    vi = lambda k: helper.make_tensor_value_info(k, TensorProto.FLOAT, None)  # noqa: E731
    graph = helper.make_graph(L.nodes, body.name, [vi(k) for k in own], [vi(k) for k in outs])
    L.nodes, L.env, L.cf = saved
    axes = {"scan_output_axes": [1] * (len(n.outputs) - ns)} if len(n.outputs) > ns else {}
    L.put(n, L.op("Scan", init + scans, [L.out(o) for o in n.outputs], body=graph, num_scan_inputs=len(scans),
                  scan_input_axes=[1] * len(scans), **axes))


def _unroll(L, n):
    a, body = n.attrs, n.attrs["body"]
    ns, nc = a["n_state"], a["n_carry"]
    steps = a["steps"] or L.g.shapes[n.inputs[-1]][1]
    if steps is None:
        raise ValueError(f"loop {body.name!r}: unrolling needs a known number of steps")
    outer, scans = [L.get(x) for x in n.inputs[:ns + nc]], L.scans(n)
    state, cols, saved = outer[:ns], [[] for _ in body.outputs[ns:]], (L.env, L.cf)
    for t in range(steps):
        L.suffix = f"@{t}"
        step = [L.op("Gather", [s, L.k(t)], axis=1) for s in scans]
        L.env, L.cf = saved[0].new_child(dict(zip(body.inputs, state + outer[ns:] + step))), saved[1].new_child()
        L.lower(body)
        vals = [L.get(o) for o in body.outputs]
        state = vals[:ns]
        for c, v in zip(cols, vals[ns:]):
            c.append(L.op("Unsqueeze", [v, L.k([1])]))
    (L.env, L.cf), L.suffix = saved, ""
    L.put(n, state + [L.op("Concat", c, L.out(o), axis=1) for c, o in zip(cols, n.outputs[ns:])])


def _lstm(L, n, hint) -> bool:
    """The marked loop as one ONNX LSTM op per layer; False (nothing made) where that cannot be."""
    a, body = n.attrs, n.attrs["body"]
    ns, layers = a["n_state"], hint["layers"]
    key = lambda s: a["names"][a["names"].index(s) if s in a["names"] else body.inputs.index(s)]  # noqa: E731
    top = body.outputs[a["names"].index(f"h{len(layers) - 1}")] if f"h{len(layers) - 1}" in a["names"] else None
    acc = key(hint["acc"]) if hint.get("acc") else None
    known = {f"{s}{l}" for l in range(len(layers)) for s in "hc"} | {acc}
    if (any(m.op == "q" and m.attrs["scale"] is not None for m in body.walk())
            or not set(a["names"][:ns]) <= known or any(o != top for o in body.outputs[ns:])):
        return False
    order, H = [hint["gates"].index(c) for c in "iofg"], hint["H"]
    init = {k: L.get(x) for k, x in zip(a["names"][:ns], n.inputs[:ns])}
    x = L.op("Transpose", [L.scans(n)[a["names"][ns + a["n_carry"]:].index(key(hint["x"]))]], perm=[1, 0, 2])
    zero, res = None, {}
    for l, lay in enumerate(layers):
        if f"h{l}" in init and f"c{l}" in init:
            h0, c0 = (L.op("Unsqueeze", [init[f"{s}{l}"], L.k([0])]) for s in "hc")
        else:
            h0 = c0 = ""
        b = L.gates(lay["b"], order, bias=True) if lay.get("b") else ""
        y, yh, yc = L.op("LSTM", [x, L.gates(lay["W"], order), L.gates(lay["R"], order), b, "", h0, c0],
                         [L.fresh("Y"), L.fresh("Y_h"), L.fresh("Y_c")], hidden_size=H)
        x = L.op("Squeeze", [y, L.k([1])])  # [T, B, H]
        res[f"h{l}"], res[f"c{l}"] = (L.op("Squeeze", [v, L.k([0])]) for v in (yh, yc))
    if acc:
        res[acc] = L.op("Add", [init[acc], L.reduce("ReduceSum", x, 0)])
    seq = [L.op("Transpose", [x], perm=[1, 0, 2])] * (len(n.outputs) - ns)
    L.put(n, [res[k] for k in a["names"][:ns]] + seq)
    return True


def _loop(L, n):
    hint = n.attrs.get("hint", {}).get("lstm")
    if not (hint and _lstm(L, n, hint)):
        (_unroll if L.loop == "unroll" or not n.attrs["n_scan"] else _scan)(L, n)


def _one(kind, *args, **attrs):
    """An op that is one ONNX node on the IR inputs (plus constants ``args(L, n)``)."""
    return lambda L, n: L.put(n, L.op(kind, [L.get(x) for x in n.inputs] + [f(L, n) for f in args],
                                      L.out(n.outputs[0]), **{k: v(n) if callable(v) else v for k, v in attrs.items()}))


_OPS = {
    "fc": _fc, "conv": _conv, "zeros": _zeros, "loop": _loop,
    "concat": _one("Concat", axis=lambda n: n.attrs["axis"]),
    "gather": _one("Gather", axis=-1),
    "reshape": _one("Reshape", lambda L, n: L.k([0, *n.attrs["shape"]])),
    "split": lambda L, n: L.put(n, L.op("Split", [L.get(n.inputs[0]), L.k(n.attrs["sizes"])],
                                        [L.out(o) for o in n.outputs], axis=-1)),
    "take": lambda L, n: _on_time(L, n, False, lambda L, n, x, ax, out: L.op("Gather", [x, L.k(n.attrs["index"])], out, axis=ax)),
    "mean": lambda L, n: _on_time(L, n, False, lambda L, n, x, ax, out: L.reduce("ReduceMean", x, ax, out)),
    "slice": lambda L, n: _on_time(L, n, True, _slice),
}


def to_onnx(g: Graph, *, loop: str = "scan") -> onnx.ModelProto:
    """``g`` as a checked ONNX model: inputs and outputs keep their names, float32, batch ``"B"``
    and a time length left open ``"T"``. ``loop``: ``"scan"`` or ``"unroll"`` (measurement only)."""
    L = _Lowering(g, loop)
    L.lower(g)
    for o in g.outputs:
        if L.get(o) != o:
            L.op("Identity", [L.get(o)], o)

    def io(k):
        dims = ["B" if i == 0 else "T" if d is None else d for i, d in enumerate(g.shapes[k])]
        return helper.make_tensor_value_info(k, TensorProto.FLOAT, dims)

    graph = helper.make_graph(L.nodes, g.name, [io(k) for k in g.inputs], [io(k) for k in g.outputs], L.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", L.opset)], producer_name="edgeseq")
    model.ir_version = 10 if L.quantized else 8
    onnx.checker.check_model(model)
    return model
