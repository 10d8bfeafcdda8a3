"""The format-neutral description of a model's computation: what every family states once, and
what the numpy interpreter (``graph/numpy.py``), the quantization pass (``graph/quantize.py``) and
the ONNX and TFLite lowerings (``export/onnx.py``, ``export/tflite.py``) consume.

A :class:`Graph` is named tensors and a short list of nodes over a handful of ops. Activations
carry a leading batch dimension (``None`` in ``shapes``); constants are arrays. A ``loop`` node
runs a body graph once per time step: it slices ``scan`` inputs ``[B, T, ...]`` along axis 1,
reads ``carry`` tensors unchanged, threads named ``state`` tensors from step to step and stacks
``collect`` outputs into ``[B, T, ...]``. A ``q`` node marks where an integer export stores a
tensor at ``bits`` wide (identity in float; Quantize/Dequantize once ``scale`` is set). A
constant may be a :class:`Weight`: int8 values with one scale per output channel.

Decision: no shapes beyond what a TFLite tensor needs, no dtype but float32 for activations, no
control flow but the loop over time: the models here need nothing else, and every op added is an
op each lowering and the C generator must implement.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: op -> number of outputs (``split`` and ``loop`` say theirs in attributes)
OPS = {"fc": 1, "add": 1, "sub": 1, "mul": 1, "max": 1, "min": 1, "tanh": 1, "sigmoid": 1, "relu": 1,
       "log": 1, "clip": 1, "concat": 1, "split": None, "gather": 1, "reshape": 1, "take": 1, "mean": 1,
       "slice": 1, "conv": 1, "zeros": 1, "q": 1, "loop": None}


@dataclass
class Weight:
    """A constant stored as int8 ``q`` with one float scale per index of ``axis`` (its output
    channel): ``value = q * scale`` broadcast along ``axis``."""

    q: np.ndarray
    scale: np.ndarray
    axis: int

    def value(self) -> np.ndarray:
        shape = [1] * self.q.ndim
        shape[self.axis] = -1
        return (self.q.astype(np.float32) * self.scale.reshape(shape)).astype(np.float32)

    @property
    def shape(self):
        return self.q.shape


@dataclass
class Node:
    op: str
    inputs: list
    outputs: list
    attrs: dict = field(default_factory=dict)


def _broadcast(a: tuple, b: tuple) -> tuple:
    n = max(len(a), len(b))
    a, b = (1,) * (n - len(a)) + tuple(a), (1,) * (n - len(b)) + tuple(b)
    return tuple(None if x is None or y is None else max(x, y) for x, y in zip(a, b))


class Graph:
    """Nodes in execution order. ``inputs``/``outputs`` are tensor names; ``weights`` names the
    constants an int8 export stores as :class:`Weight` (value: the output-channel axis)."""

    def __init__(self, name: str, parent: "Graph | None" = None):
        self.name = name
        root = parent.root if parent else self
        self.root = root
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        self.nodes: list[Node] = []
        # one namespace for the whole model: bodies read the root's constants by name
        self.consts: dict = root.consts if parent else {}
        self.shapes: dict = root.shapes if parent else {}
        self.weights: dict = root.weights if parent else {}
        self._n = root._n if parent else [0]

    # -- tensors -----------------------------------------------------------------------------
    def _name(self, name, op) -> str:
        if name is None:
            self._n[0] += 1
            name = f"{op}{self._n[0]}"
        if name in self.shapes:
            raise ValueError(f"tensor {name!r} defined twice in graph {self.name!r}")
        return name

    def input(self, name: str, *shape) -> str:
        self.shapes[self._name(name, "in")] = (None, *shape)
        self.inputs.append(name)
        return name

    def const(self, name: str, value, *, weight_axis: int | None = None) -> str:
        """A constant; ``weight_axis`` (its output channel) makes it int8 in an integer export."""
        arr = np.ascontiguousarray(value, np.int32 if np.asarray(value).dtype.kind in "iu" else np.float32)
        self.shapes[self._name(name, "k")] = tuple(arr.shape)
        self.consts[name] = arr
        if weight_axis is not None:
            self.weights[name] = weight_axis % arr.ndim
        return name

    def output(self, *names: str) -> None:
        self.outputs.extend(names)

    def node(self, op: str, inputs, out_shape: tuple, name=None, **attrs) -> str:
        out = self._name(name, op)
        self.shapes[out] = tuple(out_shape)
        self.nodes.append(Node(op, list(inputs), [out], attrs))
        return out

    # -- ops ---------------------------------------------------------------------------------
    def fc(self, x, w, b=None, name=None) -> str:
        """``x @ w (+ b)`` over the last axis; ``w`` is ``[in, out]``."""
        ins = [x, w] + ([b] if b is not None else [])
        return self.node("fc", ins, (*self.shapes[x][:-1], self.shapes[w][1]), name)

    def binary(self, op, a, b, name=None) -> str:
        return self.node(op, [a, b], _broadcast(self.shapes[a], self.shapes[b]), name)

    def add(self, a, b, name=None):
        return self.binary("add", a, b, name)

    def sub(self, a, b, name=None):
        return self.binary("sub", a, b, name)

    def mul(self, a, b, name=None):
        return self.binary("mul", a, b, name)

    def unary(self, op, x, name=None) -> str:
        return self.node(op, [x], self.shapes[x], name)

    def clip(self, x, lo: float, hi: float, name=None) -> str:
        return self.node("clip", [x], self.shapes[x], name, lo=float(lo), hi=float(hi))

    def concat(self, xs, axis: int = -1, name=None) -> str:
        """Along ``axis``: -1 (features) or 1 (time)."""
        shape = list(self.shapes[xs[0]])
        shape[axis] = sum(self.shapes[x][axis] for x in xs)
        return self.node("concat", xs, tuple(shape), name, axis=int(axis))

    def split(self, x, sizes, names) -> list[str]:
        """Along the last axis."""
        shape = self.shapes[x]
        outs = [self._name(n, "split") for n in names]
        for o, s in zip(outs, sizes):
            self.shapes[o] = (*shape[:-1], int(s))
        self.nodes.append(Node("split", [x], outs, {"sizes": [int(s) for s in sizes]}))
        return outs

    def gather(self, x, index, name=None) -> str:
        """``x[..., index]`` with a constant integer ``index`` (a list)."""
        idx = self.const(self._name(None, "idx"), np.asarray(index, np.int32))
        return self.node("gather", [x, idx], (*self.shapes[x][:-1], len(index)), name)

    def reshape(self, x, *shape, name=None) -> str:
        """To ``[B, *shape]``."""
        return self.node("reshape", [x], (None, *shape), name, shape=[int(s) for s in shape])

    def take(self, x, t: int, name=None) -> str:
        """``x[:, t]`` of ``[B, T, ...]``."""
        shape = self.shapes[x]
        return self.node("take", [x], (shape[0], *shape[2:]), name, index=int(t))

    def slice(self, x, start: int, length: int, name=None) -> str:
        """``x[:, start:start + length]`` of ``[B, T, ...]``."""
        shape = self.shapes[x]
        return self.node("slice", [x], (shape[0], int(length), *shape[2:]), name, start=int(start), length=int(length))

    def mean(self, x, name=None) -> str:
        """Mean over axis 1 (time) of ``[B, T, ...]``."""
        shape = self.shapes[x]
        return self.node("mean", [x], (shape[0], *shape[2:]), name)

    def conv(self, x, w, b, dilation: int, name=None) -> str:
        """Causal dilated convolution of ``x`` ``[B, T, C_in]`` with ``w`` ``[C_out, C_in, K]``:
        ``y_t = sum_k w[:, :, k] @ x_{t - (K-1-k) d} + b``, zeros before the start."""
        shape = self.shapes[x]
        return self.node("conv", [x, w, b], (*shape[:2], self.shapes[w][0]), name, dilation=int(dilation))

    def zeros(self, like, *shape, name=None) -> str:
        """Zeros ``[B, *shape]``, the batch of ``like``."""
        return self.node("zeros", [like], (None, *shape), name, shape=[int(s) for s in shape])

    def q(self, x, bits: int, scale: float | None = None, name=None) -> str:
        """Where an integer export stores ``x`` at ``bits`` (8 or 16): at the ``scale`` fixed here,
        else a calibrated one (``graph/quantize.py`` sets ``scale``). Identity until then."""
        return self.node("q", [x], self.shapes[x], name, bits=int(bits), fixed=scale, scale=None)

    def loop(self, steps: int | None, body, *, scan: dict, carry: dict | None = None, state: dict,
             collect: tuple = (), name: str = "loop", out: dict | None = None, hint: dict | None = None) -> dict:
        """Run ``body(g, **tensors) -> {state name: new tensor, collect name: tensor}`` for ``steps``
        steps (None: the scanned inputs' length, known at run time only; else theirs, where known).
        The body's inputs, in order: ``state`` ``{name: initial tensor}``, ``carry`` ``{name: tensor}``,
        ``scan`` ``{name: [B, T, ...] tensor}``. ``hint``: what a lowering may use (``{"lstm": ..}``).
        Returns ``{state name: final tensor, collect name: [B, T, ...] tensor}``, named as ``out`` says."""
        carry = carry or {}
        if any(steps is not None and self.shapes[v][1] not in (None, steps) for v in scan.values()):
            raise ValueError(f"loop {name!r}: {steps} steps over scanned inputs of another length")
        g = Graph(name, parent=self)
        ins = {k: g.input(f"{name}_{k}", *self.shapes[v][1:]) for k, v in {**state, **carry}.items()}
        ins.update({k: g.input(f"{name}_{k}", *self.shapes[v][2:]) for k, v in scan.items()})
        res = body(g, **ins)
        g.output(*[res[k] for k in state], *[res[k] for k in collect])
        outs, out = {}, out or {}
        for k in state:
            outs[k] = self._name(out.get(k, f"{name}_{k}_T"), "loop")
            self.shapes[outs[k]] = self.shapes[state[k]]
        for k in collect:
            outs[k] = self._name(out.get(k, f"{name}_{k}_seq"), "loop")
            self.shapes[outs[k]] = (None, steps, *g.shapes[res[k]][1:])
        self.nodes.append(Node("loop", [*state.values(), *carry.values(), *scan.values()], list(outs.values()),
                               {"body": g, "steps": steps, "n_state": len(state), "n_carry": len(carry),
                                "n_scan": len(scan), "names": [*state, *carry, *scan], "hint": hint or {}}))
        return outs

    # -- walking -----------------------------------------------------------------------------
    def walk(self):
        """Every node of this graph and of its loop bodies, bodies first at their loop."""
        for n in self.nodes:
            if n.op == "loop":
                yield from n.attrs["body"].walk()
            yield n


def macs(g: Graph) -> int:
    """Multiply-accumulates of one run of ``g`` for one batch row: products and convolutions, a
    loop's body once per step (once in all when its length is only known at run time)."""
    total = 0
    for n in g.nodes:
        if n.op == "loop":
            total += macs(n.attrs["body"]) * (n.attrs["steps"] or 1)
        elif n.op in ("fc", "conv"):
            w = g.shapes[n.inputs[1]]
            rows = int(np.prod([d or 1 for d in g.shapes[n.outputs[0]][1:-1]]))
            total += rows * int(np.prod(w))
    return total
