"""Lower a model description (``edgeseq/graph``) to a TFLite flatbuffer: ``to_tflite(g)``, the one
TFLite lowering every family's ``describe()`` goes through. The file is written directly with the
schema module ai-edge-litert ships (``ai_edge_litert.schema_py_generated``, imported lazily): no
TensorFlow converter, a 1+ GB install for a dozen op kinds. ``graph/numpy.py`` says what each op
means; the lowering keeps the description's order of operations, so the two agree to float32
rounding.

Decisions:

- Tensors keep the description's names (and the ``serving_default`` signature its input and
  output names). Activations carry batch 1 in ``shape`` and -1 in ``shape_signature``: an
  interpreter runs one beat as is, ``resize_tensor_input`` gives any batch.
- A loop over time is ``unroll`` (default) or ``while``. ``unroll`` inlines the body ``steps``
  times, scan inputs SPLIT once into ``[B, D]`` columns (not a ``[B, T, D]`` drive: a device running
  one beat holds a few small tensors), every step reading the same constant tensors, so the file
  holds each weight once: fewest ops per invoke, the faster float form. ``while`` is a WHILE op
  over one stored step whose body GATHERs step ``i`` of the whole scan tensors: the file holds one
  step, not T (the int8 form, where the file size is the point). Dynamic time (``steps`` None)
  has no TFLite form: sequence models are exported as step graphs.
- int8 (after ``graph/quantize.py``): a :class:`~edgeseq.graph.Weight` is stored int8 per channel
  (``quantizedDimension`` its channel axis) and DEQUANTIZE-d to float where a subgraph first reads
  it: a constant's DEQUANTIZE runs once at prepare, in a WHILE body too, not per step. An active
  ``q`` node is QUANTIZE + DEQUANTIZE at its scale, zero point 0. The arithmetic runs in float
  kernels, so numpy interpreter, ONNX and TFLite agree at int8 as at float, but for values within
  one float32 ulp of a half-way point, where a different summation order moves a rounding by one
  step (exact ties round to even in both).
- Every operator code is written at version 1: each resolver registers it, and the kernels
  dispatch on tensor types. Constant buffers start on 16-byte boundaries (kernels read them in
  place, SIMD code expects weights aligned as the converter writes them); equal constants share
  one buffer.
"""

from __future__ import annotations

import numpy as np

from ..errors import EdgeseqError
from ..graph import Graph, Weight

#: operator -> its options table (ops absent here take none)
_OPTS = {"ADD": "Add", "SUB": "Sub", "MUL": "Mul", "FULLY_CONNECTED": "FullyConnected",
         "CONCATENATION": "Concatenation", "SPLIT": "Split", "SPLIT_V": "SplitV", "GATHER": "Gather",
         "MEAN": "Reducer", "CONV_2D": "Conv2D", "PACK": "Pack", "WHILE": "While"}
_BINARY = {"add": "ADD", "sub": "SUB", "mul": "MUL", "max": "MAXIMUM", "min": "MINIMUM"}
_UNARY = {"tanh": "TANH", "sigmoid": "LOGISTIC", "relu": "RELU", "log": "LOG"}
#: a constant's layout per reader: (IR array -> TFLite array, where each IR axis goes)
_LAYOUT = {"fc": (lambda a: a.T, (1, 0)),                                   # [in, out] -> [out, in]
           "conv": (lambda a: a.transpose(0, 2, 1)[:, None], (0, 3, 2))}  # [O, I, K] -> [O, 1, K, I]


def _schema():
    try:
        from ai_edge_litert import schema_py_generated as s
    except ImportError:
        raise EdgeseqError("TFLite export needs the schema module of ai-edge-litert "
                           "(pip install ai-edge-litert)") from None
    return s


def _make(cls, **fields):
    """A schema object-API object with ``fields`` set (constructors take no arguments in every
    ai-edge-litert 2.x)."""
    obj = cls()
    for k, v in fields.items():
        setattr(obj, k, v)
    return obj


class _AlignedBuffer:
    """A ``BufferT`` whose bytes start on a 16-byte boundary."""

    def __init__(self, data: bytes):
        self.data = data

    def Pack(self, builder):
        s = _schema()
        builder.StartVector(1, len(self.data), 16)
        builder.head -= len(self.data)
        builder.Bytes[builder.head:builder.head + len(self.data)] = self.data
        builder.vectorNumElems = len(self.data)
        vec = builder.EndVector()
        s.BufferStart(builder)
        s.BufferAddData(builder, vec)
        return s.BufferEnd(builder)


class _Model:
    """What the subgraphs of one file share: buffers, operator codes, the description."""

    def __init__(self, g: Graph, loop: str):
        self.s, self.g, self.loop = _schema(), g, loop
        self.buffers, self.by_bytes = [self.s.BufferT()], {}  # buffer 0: empty, for activations
        self.codes, self.subs = {}, []  # builtin code -> index; subgraphs, main first

    def buffer(self, arr: np.ndarray) -> int:
        data = np.ascontiguousarray(arr, arr.dtype.newbyteorder("<")).tobytes()
        if data not in self.by_bytes:
            self.buffers.append(_AlignedBuffer(data))
            self.by_bytes[data] = len(self.buffers) - 1
        return self.by_bytes[data]

    def pack(self, description: str) -> bytes:
        import flatbuffers
        s, main = self.s, self.subs[0]
        # deprecatedBuiltinCode is what readers before schema 3a look at (127: see builtinCode)
        codes = [_make(s.OperatorCodeT, builtinCode=c, deprecatedBuiltinCode=min(c, 127), version=1)
                 for c in sorted(self.codes, key=self.codes.get)]
        subs = [_make(s.SubGraphT, name=g.name, tensors=g.tensors, operators=g.ops, inputs=g.inputs, outputs=g.outputs)
                for g in self.subs]
        sig = _make(s.SignatureDefT, signatureKey="serving_default", subgraphIndex=0, **{
            k: [_make(s.TensorMapT, name=main.tensors[i].name, tensorIndex=i) for i in getattr(main, k)]
            for k in ("inputs", "outputs")})
        m = _make(s.ModelT, version=3, description=description, buffers=self.buffers, operatorCodes=codes,
                  subgraphs=subs, signatureDefs=[sig])
        b = flatbuffers.Builder(1 << 20)
        b.Finish(m.Pack(b), file_identifier=b"TFL3")
        return bytes(b.Output())


class _Sub:
    """One subgraph being written: its tensors and operators, and ``env``, description tensor name
    -> tensor index. ``tag`` suffixes the names made inside an unrolled step."""

    def __init__(self, m: _Model, name: str):
        self.m, self.s, self.name, self.tag = m, m.s, name, ""
        self.tensors, self.ops, self.inputs, self.outputs = [], [], [], []
        self.env, self.consts = {}, {}  # consts: (name, layout) or a literal's bytes -> tensor
        m.subs.append(self)

    def shape(self, name: str) -> tuple:
        return self.m.g.shapes[name]

    # -- tensors ----------------------------------------------------------------------------
    def new(self, name, shape, ttype="FLOAT32", quant=None, buffer=0) -> int:
        """A tensor; ``None`` in ``shape`` (the batch) is 1 in ``shape``, -1 in the signature."""
        self.tensors.append(_make(
            self.s.TensorT, name=name, type=getattr(self.s.TensorType, ttype), buffer=buffer, quantization=quant,
            shape=[1 if d is None else int(d) for d in shape], hasRank=True,
            shapeSignature=[-1 if d is None else int(d) for d in shape] if None in shape else None))
        return len(self.tensors) - 1

    def tmp(self, base: str, what: str, shape, **kw) -> int:
        """An intermediate of the lowering of ``base``."""
        return self.new(f"{base}{self.tag}/{what}", shape, **kw)

    def out(self, n, i: int = 0) -> int:
        """The tensor of ``n``'s output ``i``, bound to its name."""
        name = n.outputs[i]
        self.env[name] = self.new(name + self.tag, self.shape(name))
        return self.env[name]

    def quant(self, scale, axis: int = 0):
        scale = [float(v) for v in np.atleast_1d(scale)]
        return _make(self.s.QuantizationParametersT, scale=scale, zeroPoint=[0] * len(scale),
                     quantizedDimension=int(axis))

    def lit(self, value, dtype=np.float32) -> int:
        """A constant the lowering itself needs (a shape, an axis, a bound): one tensor per value."""
        arr = np.asarray(value, dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self.consts:
            self.consts[key] = self.new(f"c{len(self.consts)}", arr.shape, _ttype(arr), buffer=self.m.buffer(arr))
        return self.consts[key]

    def t(self, name: str, layout: str = "") -> int:
        """The float tensor of description tensor ``name``; a constant in ``layout``'s order, made
        in this subgraph on first use (a Weight: int8 tensor + DEQUANTIZE)."""
        if name in self.env:
            return self.env[name]
        if name not in self.m.g.consts:
            raise ValueError(f"{name!r} is not visible in subgraph {self.name!r}: a loop body reads outer "
                             "activations only as carry")
        key = (name, layout)
        if key not in self.consts:
            v = self.m.g.consts[name]
            fn, axes = _LAYOUT.get(layout, (lambda a: a, range(8)))
            if isinstance(v, Weight):
                q = fn(v.q)
                qt = self.new(name, q.shape, "INT8", self.quant(v.scale, axes[v.axis]), self.m.buffer(q))
                self.consts[key] = self.op("DEQUANTIZE", [qt], [self.new(name + "/f", q.shape)])
            else:
                a = fn(v)
                self.consts[key] = self.new(name, a.shape, _ttype(a), buffer=self.m.buffer(a))
        return self.consts[key]

    # -- operators --------------------------------------------------------------------------
    def op(self, code: str, ins, outs, **options) -> int:
        """Append operator ``code``; returns its first output."""
        s, kind = self.s, _OPTS.get(code)
        o = _make(s.OperatorT, opcodeIndex=self.m.codes.setdefault(getattr(s.BuiltinOperator, code), len(self.m.codes)),
                  inputs=list(ins), outputs=list(outs))
        if kind:
            o.builtinOptionsType = getattr(s.BuiltinOptions, f"{kind}Options")
            o.builtinOptions = _make(getattr(s, f"{kind}OptionsT"), **options)
        self.ops.append(o)
        return outs[0]

    def lower(self, g: Graph) -> None:
        for n in g.nodes:
            _LOWER[n.op](self, n)

    def result(self, name: str) -> int:
        """Graph output ``name``: its tensor renamed, or a copy where the tensor is not the
        node's own (an input, a constant, another output)."""
        i = self.t(name)
        t = self.tensors[i]
        if i in self.inputs or i in self.outputs or t.buffer:
            shape = self.shape(name)
            return self.op("RESHAPE", [i, self.lit([-1, *shape[1:]], np.int32)], [self.new(name, shape)])
        t.name = name
        return i


def _ttype(a: np.ndarray) -> str:
    return "INT32" if a.dtype.kind in "iu" else "FLOAT32"


# -- ops: one small function each, (subgraph, node) -> None, binding the node's outputs ------------

def _fc(b: _Sub, n) -> None:
    x, w, *bias = n.inputs
    b.op("FULLY_CONNECTED", [b.t(x), b.t(w, "fc"), b.t(bias[0]) if bias else -1], [b.out(n)],
         keepNumDims=len(b.shape(x)) > 2)


def _clip(b: _Sub, n) -> None:
    x, o = n.inputs[0], n.outputs[0]
    lo = b.op("MAXIMUM", [b.t(x), b.lit(n.attrs["lo"])], [b.tmp(o, "lo", b.shape(x))])
    b.op("MINIMUM", [lo, b.lit(n.attrs["hi"])], [b.out(n)])


def _split(b: _Sub, n) -> None:
    x = n.inputs[0]
    b.op("SPLIT_V", [b.t(x), b.lit(n.attrs["sizes"], np.int32), b.lit(len(b.shape(x)) - 1, np.int32)],
         [b.out(n, i) for i in range(len(n.outputs))], numSplits=len(n.outputs))


def _slice(b: _Sub, n) -> None:
    rest, a = len(b.shape(n.inputs[0])) - 2, n.attrs
    b.op("SLICE", [b.t(n.inputs[0]), b.lit([0, a["start"], *[0] * rest], np.int32),
                   b.lit([-1, a["length"], *[-1] * rest], np.int32)], [b.out(n)])


def _conv(b: _Sub, n) -> None:
    """Causal dilated conv as CONV_2D on [B, 1, T, C]: dilation on W, (K-1) d zeros PADded left."""
    x, w, bias = n.inputs
    o, (_, T, C), (Co, _, K), d = n.outputs[0], b.shape(x), b.shape(w), n.attrs["dilation"]
    y = b.op("RESHAPE", [b.t(x), b.lit([-1, 1, T, C], np.int32)], [b.tmp(o, "x4", (None, 1, T, C))])
    if K > 1:
        p = (K - 1) * d
        y = b.op("PAD", [y, b.lit([[0, 0], [0, 0], [p, 0], [0, 0]], np.int32)],
                 [b.tmp(o, "pad", (None, 1, T + p, C))])
    y = b.op("CONV_2D", [y, b.t(w, "conv"), b.t(bias)], [b.tmp(o, "y4", (None, 1, T, Co))],
             padding=b.s.Padding.VALID, strideW=1, strideH=1, dilationWFactor=d, dilationHFactor=1)
    b.op("RESHAPE", [y, b.lit([-1, T, Co], np.int32)], [b.out(n)])


def _zeros(b: _Sub, n) -> None:
    """One column of ``like`` ([B, 1, ..]) times a zero constant of ``shape``, broadcast."""
    like, o, shape = n.inputs[0], n.outputs[0], n.attrs["shape"]
    x, width = b.t(like), int(np.prod(b.shape(like)[1:]))
    if len(b.shape(like)) != 2:
        x = b.op("RESHAPE", [x, b.lit([-1, width], np.int32)], [b.tmp(o, "flat", (None, width))])
    ones = [1] * len(shape)
    col = b.op("GATHER", [x, b.lit(np.zeros(ones), np.int32)], [b.tmp(o, "col", (None, *ones))], axis=1)
    b.op("MUL", [col, b.lit(np.zeros(shape))], [b.out(n)])


def _q(b: _Sub, n) -> None:
    x, o, scale = b.t(n.inputs[0]), n.outputs[0], n.attrs["scale"]
    if scale is None:  # float graph: identity
        b.env[o] = x
        return
    qt = b.tmp(o, "q", b.shape(o), ttype="INT16" if n.attrs["bits"] == 16 else "INT8", quant=b.quant(scale))
    b.op("DEQUANTIZE", [b.op("QUANTIZE", [x], [qt])], [b.out(n)])


def _scan_steps(b: _Sub, x: str, name: str, T: int) -> list[int]:
    """``x`` [B, T, *D] as T tensors [B, *D]: one RESHAPE to [B, T * prod(D)], one SPLIT."""
    D, flat = b.shape(x)[2:], b.t(x)
    w = int(np.prod(D))
    if len(D):
        flat = b.op("RESHAPE", [flat, b.lit([-1, T * w], np.int32)], [b.tmp(name, "flat", (None, T * w))])
    cols = [b.new(f"{name}{b.tag}@{t}", (None, w)) for t in range(T)]
    b.op("SPLIT", [b.lit(1, np.int32), flat], cols, numSplits=T)
    if len(D) == 1:
        return cols
    return [b.op("RESHAPE", [c, b.lit([-1, *D], np.int32)], [b.new(f"{name}{b.tag}@{t}/r", (None, *D))])
            for t, c in enumerate(cols)]


def _unroll(b: _Sub, n) -> None:
    a, body = n.attrs, n.attrs["body"]
    T, ns, nc = a["steps"], a["n_state"], a["n_carry"]
    vals = [b.t(i) for i in n.inputs[:ns + nc]]
    scans = [_scan_steps(b, x, name, T) for x, name in zip(n.inputs[ns + nc:], body.inputs[ns + nc:])]
    collected = [[] for _ in body.outputs[ns:]]
    tag = b.tag
    for t in range(T):
        b.env.update(zip(body.inputs, [*vals, *[s[t] for s in scans]]))
        b.tag = f"{tag}@{t}"
        b.lower(body)
        new = [b.t(o) for o in body.outputs]
        vals[:ns] = new[:ns]
        for c, v in zip(collected, new[ns:]):
            c.append(v)
    b.tag = tag
    b.env.update(zip(n.outputs[:ns], vals[:ns]))
    for k, c in enumerate(collected):
        b.op("PACK", c, [b.out(n, ns + k)], valuesCount=T, axis=1)


def _while(b: _Sub, n) -> None:
    """WHILE over loop variables ``(i, *states, *carry, *scans)``: subgraph ``cond`` is ``i < steps``,
    ``body`` one step, which GATHERs step ``i`` of each whole scan tensor."""
    a, body, m = n.attrs, n.attrs["body"], b.m
    ns, nc = a["n_state"], a["n_carry"]
    if len(body.outputs) > ns:
        raise EdgeseqError(f"loop {body.name!r} collects per-step outputs: the WHILE lowering carries "
                           "states only (lower it with loop='unroll')")
    names = ["i", *body.inputs[:ns + nc], *[f"{k}_seq" for k in body.inputs[ns + nc:]]]
    shapes = [(), *[b.shape(x) for x in n.inputs]]

    def loop_vars(sub: _Sub, prefix: str = "") -> list[int]:
        return [sub.new(prefix + k, sh, "INT32" if j == 0 else "FLOAT32")
                for j, (k, sh) in enumerate(zip(names, shapes))]

    cond, step = _Sub(m, f"{body.name}_cond"), _Sub(m, f"{body.name}_body")
    cond.inputs = loop_vars(cond)
    cond.outputs = [cond.op("LESS", [cond.inputs[0], cond.lit(a["steps"], np.int32)], [cond.new("more", (), "BOOL")])]
    v = step.inputs = loop_vars(step)
    step.env.update(zip(body.inputs[:ns + nc], v[1:]))
    for k, x in zip(body.inputs[ns + nc:], v[1 + ns + nc:]):
        step.env[k] = step.op("GATHER", [x, v[0]], [step.new(k, body.shapes[k])], axis=1)
    step.lower(body)
    i_next = step.op("ADD", [v[0], step.lit(1, np.int32)], [step.new("i_next", (), "INT32")])
    step.outputs = [i_next, *[step.t(o) for o in body.outputs], *v[1 + ns:]]
    outs = loop_vars(b, f"{body.name}_out_")
    b.op("WHILE", [b.lit(0, np.int32), *[b.t(x) for x in n.inputs]], outs,
         condSubgraphIndex=m.subs.index(cond), bodySubgraphIndex=m.subs.index(step))
    for name, idx in zip(n.outputs, outs[1:]):
        b.tensors[idx].name = name
        b.env[name] = idx


_LOWER = {
    "fc": _fc, "clip": _clip, "split": _split, "slice": _slice, "conv": _conv, "zeros": _zeros, "q": _q,
    **{k: (lambda b, n, code=code: b.op(code, [b.t(i) for i in n.inputs], [b.out(n)])) for k, code in _BINARY.items()},
    **{k: (lambda b, n, code=code: b.op(code, [b.t(n.inputs[0])], [b.out(n)])) for k, code in _UNARY.items()},
    "concat": lambda b, n: b.op("CONCATENATION", [b.t(i) for i in n.inputs], [b.out(n)],
                                axis=n.attrs["axis"] % len(b.shape(n.outputs[0]))),
    "gather": lambda b, n: b.op("GATHER", [b.t(i) for i in n.inputs], [b.out(n)], axis=len(b.shape(n.inputs[0])) - 1),
    "reshape": lambda b, n: b.op("RESHAPE", [b.t(n.inputs[0]), b.lit([-1, *n.attrs["shape"]], np.int32)], [b.out(n)]),
    "take": lambda b, n: b.op("GATHER", [b.t(n.inputs[0]), b.lit(n.attrs["index"] % b.shape(n.inputs[0])[1], np.int32)],
                              [b.out(n)], axis=1),
    "mean": lambda b, n: b.op("MEAN", [b.t(n.inputs[0]), b.lit([1], np.int32)], [b.out(n)], keepDims=False),
    "loop": lambda b, n: (_unroll if b.m.loop == "unroll" else _while)(b, n),
}


def to_tflite(g: Graph, *, loop: str = "unroll", description: str = "") -> bytes:
    """The TFLite flatbuffer of description ``g`` (float, or integer after ``graph/quantize.py``);
    ``loop``: ``"unroll"`` (the body inlined ``steps`` times) or ``"while"`` (a WHILE op over one
    stored step)."""
    if loop not in ("unroll", "while"):
        raise ValueError(f"loop must be 'unroll' or 'while', not {loop!r}")
    if any(n.op == "loop" and n.attrs["steps"] is None for n in g.walk()):
        raise EdgeseqError(f"{g.name} loops over a number of steps known only at run time, which has no "
                           "TFLite form here: sequence models are exported as step graphs for TFLite")
    m = _Model(g, loop)
    main = _Sub(m, g.name)
    main.inputs = [main.new(k, g.shapes[k]) for k in g.inputs]
    main.env.update(zip(g.inputs, main.inputs))
    main.lower(g)
    for name in g.outputs:
        main.outputs.append(main.result(name))
    return m.pack(description or f"edgeseq {g.name}")
