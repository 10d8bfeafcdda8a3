"""The fixed-point form of a step description: integers only, the arithmetic the generated C runs
(``export/c.py``) and the numpy reference it must equal bit for bit.

:func:`lower` turns an int8 step graph (``graph/quantize.py``) and the largest |value| of each of
its tensors (:func:`ranges`) into a :class:`Program`: every tensor an int32 vector with one scale,
every node an integer kernel whose constants (weights, multipliers, shifts, tables) are decided
here once; :func:`run` executes it in numpy and ``export/c.py`` prints it as C.

Decisions, and why:

- Scales. A ``q`` node keeps its own grid and width, so the integer form stores what the int8
  ONNX and TFLite exports store. Every other tensor has a power-of-two scale that puts its
  calibrated max at or under ``2**18`` and saturates at ``2**23``: 18 bits is finer than any
  int16 grid, the 32x headroom covers values far beyond calibration (an RR interval of 100 s
  after a gap, where 8x clipped one DS1 beat of record 207 at 64 s and changed its label), and
  products of two such values stay inside int64.
- Powers of two make rescaling a shift (a multiply only where a weight's or a ``q`` grid's scale
  enters), which the C prints as int32 arithmetic a vector unit or a Cortex-M4 runs in a few
  instructions; and float <-> int at inputs, states and outputs exact both ways, so a state
  handed back and forth by a host loop loses nothing.
- Rescaling is ``(x * M + 2**(sh-1)) >> sh``: exact integer arithmetic, equal in numpy's int64
  and C (arithmetic right shift, as every compiler we target does; C99 leaves it to the
  implementation). Operands of a sum saturate at ``2**24`` so the sum fits int32.
- tanh and sigmoid read one 1025-entry table of tanh on [0, 8) in Q15 with linear interpolation
  (Q16 input); log uses the leading-one position and a 257-entry log2 table. No libm.
- Dot products accumulate exactly (int64; numpy checks the bound and uses float64 BLAS, exact
  below 2**53), so summation order does not matter and sparse equals dense.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import Graph, Weight
from .numpy import run as run_float

NOMINAL = 1 << 18  # where a tensor's calibrated max lands: 32x under the saturation
LIMIT = (1 << 23) - 1  # every intermediate saturates here
TANH_MAX = 8  # tanh(8) = 1 - 2e-7: the table's range
TANH_BITS = 7  # table step 1 / 2**7 (1025 entries); input Q16
LOG_BITS = 8  # log2 mantissa table step 1 / 2**8 (257 entries), output Q24
PASS = ("reshape", "gather", "slice", "split", "relu", "clip")  # ops that keep their input's scale

OPERAND = 1 << 24  # an operand of add/sub/max/min, rescaled, saturates here (so a sum fits int32)
TANH_TABLE = np.round(np.tanh(np.arange(TANH_MAX * (1 << TANH_BITS) + 1) / (1 << TANH_BITS)) * 32768).astype(np.int32)
LOG2_TABLE = np.round(np.log2(1 + np.arange((1 << LOG_BITS) + 1) / (1 << LOG_BITS)) * (1 << 24)).astype(np.int64)


def multiplier(r) -> tuple:
    """``(M, sh, xmax)`` with ``x * r ~= (x * M + 2**(sh-1)) >> sh`` for |x| <= xmax (beyond
    which the result saturates anyway and ``x * M`` would leave int64). Per-channel ratios share
    one shift, the largest channel's ``M`` in ``[2**14, 2**15)``: a constant shift, which a
    32-bit core does inline where a per-channel 64-bit shift calls a library helper; a channel
    k times smaller keeps ``M / k`` (the rounding of a nearly dead class's weights is moot)."""
    r = np.minimum(np.asarray(r, np.float64), 2.0 ** 30)
    top = float(r.max(initial=0.0))
    sh = int(np.clip(14 - np.floor(np.log2(top)), 0, 62)) if top > 0 else 62
    M = np.where(r > 0, np.round(r * 2.0 ** sh), 0).astype(np.int64)
    xmax = (np.int64(1) << 62) // max(int(M.max(initial=1)), 1)
    return M, np.full(np.shape(r), sh, np.int64), np.full(np.shape(r), xmax, np.int64)


def rq(x, M, sh, xmax):
    """``x`` (int64) rescaled by ``M / 2**sh``, rounding half up."""
    x = np.clip(x, -xmax, xmax)
    half = np.where(sh > 0, np.left_shift(np.int64(1), np.maximum(sh - 1, 0)), 0)
    return (x * M + half) >> sh


def _sat(x, lim=LIMIT):
    """Two's-complement saturation, ``[-lim - 1, lim]``: one SSAT instruction on a Cortex-M4."""
    return np.clip(x, -lim - 1, lim)


@dataclass
class Op:
    op: str
    inputs: list
    outputs: list
    p: dict = field(default_factory=dict)  # integer constants and small parameters


@dataclass
class Program:
    """An integer step. ``scale[t]``: the value of one unit of tensor ``t``; ``shape[t]``: its
    shape without the batch; ``consts``: integer arrays the kernels read (weights, tables)."""

    name: str
    inputs: list
    outputs: list
    states: list  # state input names; output k + "_out"
    held: list
    scale: dict
    shape: dict
    ops: list
    consts: dict
    initial: dict  # state -> int32 vector at its scale


class Unsupported(ValueError):
    """A description the fixed-point form (and so the C lowering) has no kernel for."""


def _pow2(top: float, nominal: int = NOMINAL) -> float:
    """The power-of-two scale that puts ``top`` at or just under ``nominal``."""
    return float(2.0 ** np.ceil(np.log2(max(top, 1e-30) / nominal)))


def ranges(step: Graph, batches, initial: dict) -> dict:
    """Largest |value| of every tensor of the ``step`` graph, stepped from ``initial`` over each
    window of ``batches`` (a window graph's feed dicts, as calibration gives them)."""
    from .numpy import constants

    top: dict = {}
    env = constants(step)  # int8 weights dequantized once, not once a step
    states = [k for k in step.inputs if k + "_out" in step.outputs]
    shapes = {k: tuple(v[1:]) for k, v in step.shapes.items()}

    def observe(name, v):
        m = float(np.nanmax(np.abs(v), initial=0.0)) if np.size(v) else 0.0
        if np.isfinite(m):
            top[name] = max(top.get(name, 0.0), m)

    def one(feeds):
        for k in step.inputs:
            observe(k, feeds[k])
        return run_float(step, feeds, observe=observe, env=env)

    for feeds in batches:
        scan_steps(one, step.inputs, shapes, states, feeds, initial)
    return top


def _const_int(v: np.ndarray, axis: int | None, bits: int) -> tuple:
    """A float constant as integers with one scale per index of ``axis`` (None: one scale)."""
    v = np.asarray(v, np.float64)
    lim = 2 ** (bits - 1) - 1
    if axis is None:
        s = np.float64(max(np.abs(v).max(initial=0.0), 1e-30) / lim)
        return np.round(v / s).astype(np.int64), np.asarray(s)
    moved = np.moveaxis(v, axis, -1)
    s = np.maximum(np.abs(moved).reshape(-1, moved.shape[-1]).max(axis=0), 1e-30) / lim
    q = np.round(moved / s)
    return np.moveaxis(q, -1, axis).astype(np.int64), s


def lower(g: Graph, top: dict, initial: dict | None = None) -> Program:
    """The fixed-point program of the (int8-quantized) step graph ``g``; ``top``: :func:`ranges`
    of its tensors; ``initial``: float initial states (zeros where absent)."""
    shape = {k: tuple(int(d) for d in s[1:]) for k, s in g.shapes.items()}
    states = [k for k in g.inputs if k + "_out" in g.outputs]
    held = [k for k in g.inputs[1:] if k not in states]
    scale: dict = {}
    for k in g.inputs:
        scale[k] = _pow2(max(top.get(k, 0.0), top.get(k + "_out", 0.0)))
    forced = {k + "_out": scale[k] for k in states}
    for k in g.outputs:
        forced.setdefault(k, _pow2(top.get(k, 0.0)))
    ops, consts = [], {}
    env = {k: v for k, v in g.consts.items()}

    def const_tensor(name):
        """A constant read as a tensor (elementwise operand): int32 at its own scale."""
        if name not in scale:
            v = env[name].value() if isinstance(env[name], Weight) else np.asarray(env[name], np.float64)
            if v.dtype.kind in "iu":
                raise ValueError(f"integer constant {name!r} used as a tensor")
            s = _pow2(float(np.abs(v).max(initial=0.0)))
            consts[name] = np.round(np.asarray(v, np.float64) / s).astype(np.int64)
            scale[name], shape[name] = s, tuple(np.shape(v))
        return name

    def free(y):
        """The scale of a tensor whose kernel can write any: a state's or output's, else from its
        range (a power of two too: rescaling between such tensors is a shift)."""
        return forced.get(y, _pow2(top.get(y, 0.0)))

    def emit(op, ins, out, natural, **p):
        """``op`` writing ``out`` at ``natural`` scale; a rescale follows where ``out`` must have
        another (a state or output crossing to float)."""
        want = forced.get(out, natural)
        tmp = out if want == natural else out + "__n"
        scale[tmp], shape[tmp] = natural, shape[out]
        ops.append(Op(op, ins, [tmp], p))
        if tmp != out:
            scale[out] = want
            ops.append(Op("rescale", [tmp], [out], {"r": multiplier(natural / want)}))

    for n in g.nodes:
        op, ins, out = n.op, n.inputs, n.outputs
        for i in ins:
            if i in g.consts and not (op == "fc" and i != ins[0]) and op != "gather":
                const_tensor(i)
        if op == "loop":
            raise Unsupported(f"its step graph holds a loop (node {out[0]}); the C form runs one step at a time")
        y = out[0]
        if op == "split":  # passthrough pieces; a forced piece gets its rescale
            for o in out:
                emit("copy_split", [ins[0]], o, scale[ins[0]], sizes=n.attrs["sizes"], which=out.index(o))
            continue
        if op in PASS:
            p = {}
            if op == "gather":
                p["index"] = np.asarray(env[ins[1]], np.int64)
            elif op == "clip":
                s = scale[ins[0]]
                p["lo"], p["hi"] = int(max(round(n.attrs["lo"] / s), -LIMIT)), int(min(round(n.attrs["hi"] / s), LIMIT))
            elif op == "slice":
                p["start"], p["length"] = n.attrs["start"], n.attrs["length"]
            emit(op, ins[:1], y, scale[ins[0]], **p)
        elif op == "q":
            emit("q", ins, y, n.attrs["scale"], r=multiplier(scale[ins[0]] / n.attrs["scale"]),
                 lim=2 ** (n.attrs["bits"] - 1) - 1)
        elif op in ("add", "sub", "max", "min"):
            s = free(y)
            emit(op, ins, y, s, ra=multiplier(scale[ins[0]] / s), rb=multiplier(scale[ins[1]] / s))
        elif op == "mul":
            s = free(y)
            emit(op, ins, y, s, r=multiplier(scale[ins[0]] * scale[ins[1]] / s))
        elif op in ("tanh", "sigmoid"):
            half = 0.5 if op == "sigmoid" else 1.0
            emit(op, ins, y, 2.0 ** -15 if op == "tanh" else 2.0 ** -16, r=multiplier(scale[ins[0]] * half * 65536))
        elif op == "log":
            s = free(y)
            # ln(x S) = log2(x) ln2 + ln S, log2(x) in Q24
            emit(op, ins, y, s, r=multiplier(np.log(2) / (1 << 24) / s), c=int(round(np.log(scale[ins[0]]) / s)))
        elif op == "concat":
            s = free(y)
            emit(op, ins, y, s, axis=n.attrs["axis"], rs=[multiplier(scale[i] / s) for i in ins])
        elif op == "fc":
            w = env[ins[1]]
            if isinstance(w, Weight):
                wq, ws = w.q.astype(np.int64), w.scale.astype(np.float64)
            else:  # a float matrix (a readout): int16 per output column, still integers only
                wq, ws = _const_int(w, 1, 16)
            s = free(y)
            bias = None
            if len(ins) > 2:
                b = env[ins[2]].value() if isinstance(env[ins[2]], Weight) else np.asarray(env[ins[2]], np.float64)
                bias = np.clip(np.round(b / s), -LIMIT, LIMIT).astype(np.int64)
            wname = ins[1] + ("__q8" if isinstance(w, Weight) else "__q16")
            consts[wname] = wq
            emit("fc", [ins[0], wname], y, s, r=multiplier(scale[ins[0]] * ws / s), bias=bias,
                 bits=8 if isinstance(w, Weight) else 16)
        else:
            raise Unsupported(f"op {op!r} (node {y}) has no fixed-point kernel")
    init = {}
    for k in states:
        v = np.broadcast_to(np.asarray((initial or {}).get(k, 0.0), np.float64), shape[k])
        init[k] = np.clip(np.round(v / scale[k]), -LIMIT, LIMIT).astype(np.int64)
    return Program(g.name, list(g.inputs), list(g.outputs), states, held, scale, shape, ops, consts, init)


# -- the numpy interpreter of a Program (the reference the C must equal) ----------------------------

def to_int(x: np.ndarray, s: float) -> tuple:
    """Float32 -> int at the power-of-two scale ``s``: exact scaling, round half away from zero,
    saturating; and the rows holding a non-finite value (their outputs become NaN)."""
    x = np.asarray(x, np.float32)
    bad = ~np.isfinite(x).reshape(len(x), -1).all(axis=1)
    v = np.where(np.isfinite(x), x, np.float32(0)) * np.float32(1 / s)
    v = np.clip(v, np.float32(-LIMIT), np.float32(LIMIT))
    v = np.trunc(v + np.where(v >= 0, np.float32(0.5), np.float32(-0.5)).astype(np.float32))
    return v.astype(np.int64), bad


def to_float(x: np.ndarray, s: float) -> np.ndarray:
    return x.astype(np.float32) * np.float32(s)


def _tanh_q(z):
    """tanh of a Q16 magnitude, in Q15."""
    z = np.minimum(z, TANH_MAX << 16)
    i = np.minimum(z >> (16 - TANH_BITS), TANH_MAX << TANH_BITS)
    f = z & ((1 << (16 - TANH_BITS)) - 1)
    j = np.minimum(i + 1, TANH_MAX << TANH_BITS)
    t0, t1 = TANH_TABLE[i].astype(np.int64), TANH_TABLE[j].astype(np.int64)
    return t0 + (((t1 - t0) * f + (1 << (15 - TANH_BITS))) >> (16 - TANH_BITS))


def _log2_q24(x):
    """log2 of positive int64 ``x`` (< 2**31) in Q24."""
    e = np.frexp(x.astype(np.float64))[1].astype(np.int64) - 1  # floor(log2 x), exact
    m = np.where(e >= 30, x >> np.maximum(e - 30, 0), x << np.maximum(30 - e, 0))  # [2**30, 2**31)
    frac = m - (1 << 30)
    i = frac >> (30 - LOG_BITS)
    f = frac & ((1 << (30 - LOG_BITS)) - 1)
    t0, t1 = LOG2_TABLE[i], LOG2_TABLE[np.minimum(i + 1, 1 << LOG_BITS)]
    return (e << 24) + t0 + (((t1 - t0) * f + (1 << (29 - LOG_BITS))) >> (30 - LOG_BITS))


def _dot(x, w):
    """Exact ``x @ w`` of integer arrays (float64 BLAS while every partial sum fits 53 bits)."""
    bound = float(np.abs(x).max(initial=0)) * float(np.abs(w).max(initial=0)) * w.shape[0]
    if bound < 2.0 ** 52:
        return (x.astype(np.float64) @ w.astype(np.float64)).astype(np.int64)
    return x @ w


def _kernel(o: Op, a: list, p: dict, consts: dict):
    x = a[0]
    op = o.op
    if op == "rescale":
        return _sat(rq(x, *p["r"]))
    if op in ("add", "sub", "max", "min"):
        u, v = (np.clip(rq(x_, *r_), -OPERAND, OPERAND) for x_, r_ in ((a[0], p["ra"]), (a[1], p["rb"])))
        f = {"add": np.add, "sub": np.subtract, "max": np.maximum, "min": np.minimum}[op]
        return _sat(f(u, v))
    if op == "mul":
        return _sat(rq(a[0] * a[1], *p["r"]))
    if op == "fc":
        acc = _dot(x, consts[o.inputs[1]])
        y = rq(acc, *p["r"])
        return _sat(y if p["bias"] is None else y + p["bias"])
    if op == "q":
        return _sat(rq(x, *p["r"]), p["lim"])
    if op in ("tanh", "sigmoid"):
        t = _tanh_q(rq(np.abs(x), *p["r"]))
        t = np.where(x < 0, -t, t)
        return t if op == "tanh" else 32768 + t
    if op == "log":
        pos = x > 0
        y = rq(_log2_q24(np.where(pos, x, 1)), *p["r"]) + p["c"]
        return np.where(pos, _sat(y), -LIMIT)
    if op == "relu":
        return np.maximum(x, 0)
    if op == "clip":
        return np.clip(x, p["lo"], p["hi"])
    if op == "gather":
        return x[..., p["index"]]
    if op == "reshape":
        return x.reshape(len(x), -1)
    if op == "slice":
        return x[:, p["start"]:p["start"] + p["length"]]
    if op == "copy_split":
        return np.split(x, np.cumsum(p["sizes"])[:-1], axis=-1)[p["which"]]
    if op == "concat":
        parts = [_sat(rq(v, *r)) for v, r in zip(a, p["rs"])]
        return np.concatenate(parts, axis=p["axis"])
    raise ValueError(f"no fixed-point kernel for {op!r}")


def step(prog: Program, ints: dict) -> dict:
    """One step of ``prog`` on integer inputs ``{name: int64 [B, ...]}``: every tensor it makes."""
    env = dict(ints)
    for k, v in prog.consts.items():
        env.setdefault(k, v)
    for o in prog.ops:
        args = [env[i] for i in o.inputs]
        v = _kernel(o, args, o.p, prog.consts)
        if o.op == "reshape":
            v = v.reshape(len(args[0]), *prog.shape[o.outputs[0]])
        env[o.outputs[0]] = v
    return env


def run(prog: Program, feeds: dict) -> dict:
    """One step on float feeds, as the generated C's float entry point: ``{output: float32}``;
    rows with a non-finite input give NaN in every output."""
    ints, bad = {}, None
    for k in prog.inputs:
        ints[k], b = to_int(feeds[k], prog.scale[k])
        bad = b if bad is None else bad | b
    env = step(prog, ints)
    outs = {}
    for k in prog.outputs:
        y = to_float(env[k], prog.scale[k])
        y[bad] = np.nan
        outs[k] = y
    return outs


def scan_steps(run_step, inputs: list, shapes: dict, states: list, feeds: dict, initial: dict, *, every: bool = False):
    """Drive a step function over whole windows or sequences: ``feeds`` are a window graph's
    (its first input ``[B, T, ...]`` scanned; states given there, else ``initial``, else zeros;
    other inputs held). Returns the outputs after the last step, or with ``every`` each output
    stacked over time ``[B, T, ...]``. ``run_step(feeds) -> outputs`` is the float description,
    a :class:`Program` (``run``) or a compiled library alike."""
    scanned = next(iter(feeds))
    X = np.asarray(feeds[scanned], np.float32)
    B, T = X.shape[:2]
    sample = inputs[0]
    st = {k: np.ascontiguousarray(np.broadcast_to(feeds[k] if k in feeds else initial.get(k, np.float32(0)),
                                                  (B, *shapes[k])), np.float32) for k in states}
    held = {k: np.asarray(feeds[k], np.float32) for k in inputs[1:] if k not in states}
    seq, outs = [], {}
    for t in range(T):
        outs = run_step({sample: X[:, t].reshape(B, *shapes[sample]), **st, **held})
        st = {k: outs[k + "_out"] for k in states}
        if every:
            seq.append(outs)
    if every:
        return {k: np.stack([o[k] for o in seq], axis=1) for k in outs}
    return outs
