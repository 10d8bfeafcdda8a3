"""The C lowering: a model's step, printed as a C99 library (``model.h``, ``model.c``) for a
microcontroller or the host runtime (``runtime/c_backend.py``).

int8: the fixed-point :class:`~edgeseq.graph.fixed.Program`, kernel by kernel, integers only (no
libm, no float but at the float entry points), equal to ``graph/fixed.py`` bit for bit. float32:
the step graph in float arithmetic with libm (tanhf, logf), within float rounding of the numpy
interpreter. Both print the same shape of library:

- weights ``const`` (flash); a recurrent matrix sparse where that stores fewer bytes (per output,
  one word per weight: value and input index), with a dense 16-bit twin for hosts with vector
  units (``ES_DENSE``); activations in one static arena whose offsets come from the tensors'
  lifetimes; runs of pointwise kernels fused into one loop; the state in an explicit struct
  ``es_state_t``, updated in place where nothing reads its old value later.
- ``es_init``, ``es_step`` (one sample, state struct), ``es_window`` (window models: one window
  from the initial state: the held inputs' work once, the state's T times, the output's once)
  and ``_batch`` forms with float states, whose arguments follow the manifest's ``step_inputs``
  then ``step_outputs`` (``inputs`` then ``outputs``): what the host runtime calls.

Decision: C is a lowering of the step only. A window model's window is its step looped, which the
description guarantees equal; so the C has one code path per model, and a stream and a window
classify alike.
"""

from __future__ import annotations

import numpy as np

from ..graph import Graph, Weight
from ..graph import fixed as fx

_HEADER_GUARD = "EDGESEQ_MODEL_H"


def _c_array(ctype: str, name: str, values, per_line: int = 16) -> str:
    v = np.asarray(values).ravel()
    if ctype == "float":
        items = [repr(float(np.float32(x))) + "f" for x in v]
    else:
        items = [str(int(x)) for x in v]
    lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)] or ["0"]
    return f"static const {ctype} {name}[{max(len(v), 1)}] = {{\n  " + ",\n  ".join(lines) + "\n};\n"


def _ident(name: str) -> str:
    return "t_" + "".join(c if c.isalnum() else "_" for c in name)


def _int_type(lo: int, hi: int) -> str:
    for t, b in (("int8_t", 8), ("int16_t", 16), ("int32_t", 32)):
        if lo >= -(1 << (b - 1)) and hi < (1 << (b - 1)):
            return t
    return "int64_t"


# -- the schedule: which work runs once per window, every step, or only where an output is read ---

def _parts(ops, inputs, states, held, outputs) -> list:
    """Part of each op: 0 held (depends on held inputs and constants only), 1 state (feeds a
    state output), 2 output (the rest)."""
    made = {}
    held_t = set(held)
    part = []
    for o in ops:
        made.update({t: o for t in o.outputs})
    need = set(k + "_out" for k in states)
    state_ops = set()
    for o in reversed(ops):
        if any(t in need for t in o.outputs):
            state_ops.add(id(o))
            need.update(o.inputs)
    for o in ops:
        srcs = [i for i in o.inputs if i in made or i in inputs]
        if all(i in held_t for i in srcs):
            held_t.update(o.outputs)
            part.append(0)
        else:
            part.append(1 if id(o) in state_ops else 2)
    return part


def _arena(order: list, sizes: dict, pinned: set) -> tuple[dict, int]:
    """First-fit offsets for tensors written in ``order`` (a list of (defined, used) name lists per
    op); ``pinned`` tensors live to the end. Returns ``({tensor: offset}, total)``."""
    last = {}
    for i, (_, used) in enumerate(order):
        for t in used:
            last[t] = i
    n = len(order)
    live: list = []  # (start, end, offset, size)
    off = {}
    for i, (defined, _) in enumerate(order):
        live = [x for x in live if x[1] >= i]
        for t in defined:
            if t in off:
                continue
            end = n if t in pinned else last.get(t, n)
            size = sizes[t]
            spans = sorted((x[2], x[2] + x[3]) for x in live)
            pos = 0
            for a, b in spans:
                if pos + size <= a:
                    break
                pos = max(pos, b)
            off[t] = pos
            live.append((i, end, pos, size))
    total = max([off[t] + sizes[t] for t in off], default=0)
    return off, total


class _Writer:
    """Prints one library: constants, the arena, the kernels of each part."""

    def __init__(self, prog: fx.Program, graph: Graph | None):
        self.p, self.g = prog, graph
        self.decl: list[str] = []
        self.names: dict = {}
        self.declared: set = set()
        self.bound: dict = {}  # largest |integer| a tensor can hold (int8 path)

    # tensors -----------------------------------------------------------------------------------
    def n(self, t) -> int:
        return int(np.prod(self.p.shape[t], dtype=np.int64))

    def ref(self, t) -> str:
        """A C expression for tensor ``t``'s first element pointer."""
        return self.names[t]

    def const(self, name: str, values, ctype: str) -> str:
        cname = _ident(name)
        if cname not in self.declared:
            self.declared.add(cname)
            self.decl.append(_c_array(ctype, cname, values))
        return cname

    def rq_arrays(self, key: str, r, bound_in: float) -> tuple[str, str, str | None]:
        """C names (or literals) for a multiplier; the clip is dropped where it cannot bind."""
        M, sh, xmax = (np.atleast_1d(a) for a in r)
        clip = bound_in * float(M.max(initial=0)) >= 2.0 ** 62
        xm = (str(int(xmax.max())) + "LL") if clip else None
        if M.size == 1 or (M == M[0]).all():
            return str(int(M[0])), str(int(sh[0])), xm
        # one shift and one clip for every channel (graph/fixed.py's multiplier)
        return self.const(key + "_M", M, "int32_t") + "[c]", str(int(sh[0])), xm


def _rq(x: str, m: str, sh: str, xmax: str | None) -> str:
    return f"es_rq({x}, {m}, {sh}, {xmax})" if xmax else f"es_rq_nc({x}, {m}, {sh})"


_PRELUDE_INT = r"""
#define ES_LIMIT 8388607
/* a host build asks for dense twins of sparse products (ES_DENSE); they pay only with 16-bit
   multiply-add vectors (AVX2, NEON), without which the sparse loop is faster */
#if defined(ES_DENSE) && (defined(__AVX2__) || defined(__ARM_NEON))
#define ES_USE_DENSE 1
#endif
static const union { uint32_t u; float f; } es_nan = {0x7fc00000u};
static int es_bad;  /* a non-finite input reached the current step: its outputs are NaN */

/* x * m / 2**sh, rounding half up; x clipped where x * m could leave int64 (then it saturates) */
static inline int64_t es_rq_nc(int64_t x, int32_t m, int32_t sh) {
  return sh > 0 ? (x * m + ((int64_t)1 << (sh - 1))) >> sh : x * m;
}
static inline int64_t es_rq(int64_t x, int32_t m, int32_t sh, int64_t xmax) {
  if (x > xmax) x = xmax; else if (x < -xmax) x = -xmax;
  return es_rq_nc(x, m, sh);
}
static inline int32_t es_sat(int32_t x, int32_t lim) { return x > lim ? lim : x < -lim - 1 ? -lim - 1 : x; }
static inline int32_t es_clip64(int64_t x, int32_t lim) { return (int32_t)(x > lim ? lim : x < -lim ? -lim : x); }
static inline int32_t es_sat64(int64_t x, int32_t lim) { return (int32_t)(x > lim ? lim : x < -lim - 1 ? -lim - 1 : x); }
/* x * m for a power of two m, x clamped first to +-c: what saturating the exact product at c * m gives */
static inline int32_t es_shl(int32_t x, int32_t c, int32_t m) { return (x > c ? c : x < -c ? -c : x) * m; }
/* float -> int at a power-of-two scale (exact), half away from zero; a non-finite value marks the step */
static inline int32_t es_in(float x, float inv) {
  float v;
  if (!(x - x == 0.0f)) { es_bad = 1; return 0; }
  v = x * inv;
  if (v > 8388607.0f) v = 8388607.0f; else if (v < -8388607.0f) v = -8388607.0f;
  v = v >= 0.0f ? v + 0.5f : v - 0.5f;
  return (int32_t)v;
}
static inline float es_out(int32_t x, float s) { return es_bad ? es_nan.f : (float)x * s; }
static inline int32_t es_max32(int32_t a, int32_t b) { return a > b ? a : b; }
static inline int32_t es_min32(int32_t a, int32_t b) { return a < b ? a : b; }
"""

_PRELUDE_TANH = r"""
/* tanh of a Q16 magnitude in Q15: table on [0, 8), step 1/128, linear in between */
static inline int32_t es_tanh_q16(int32_t z) {
  int32_t i, f, j;
  if (z > (8 << 16)) z = 8 << 16;
  i = (int32_t)(z >> 9); f = (int32_t)(z & 511);
  if (i > 1024) i = 1024;
  j = i < 1024 ? i + 1 : 1024;
  return (int32_t)es_tanh_t[i] + ((((int32_t)es_tanh_t[j] - (int32_t)es_tanh_t[i]) * f + 256) >> 9);
}
"""

_PRELUDE_LOG = r"""
/* log2 of x > 0 in Q24: the leading one's position and a mantissa table, step 1/256 */
static inline int64_t es_log2_q24(int32_t x) {
  int32_t e = 31 - __builtin_clz((uint32_t)x);
  uint32_t m = e >= 30 ? (uint32_t)x >> (e - 30) : (uint32_t)x << (30 - e);
  uint32_t frac = m - (1u << 30);
  int32_t i = (int32_t)(frac >> 22), f = (int32_t)(frac & ((1u << 22) - 1));
  int64_t t0 = es_log2_t[i], t1 = es_log2_t[i < 256 ? i + 1 : 256];
  return ((int64_t)e << 24) + t0 + (((t1 - t0) * f + (1 << 21)) >> 22);
}
"""

_PRELUDE_FLOAT = r"""
#include <math.h>
static int es_bad;
static const union { uint32_t u; float f; } es_nan = {0x7fc00000u};
static inline float es_in(float x) { if (!(x - x == 0.0f)) es_bad = 1; return x; }
static inline float es_out(float x) { return es_bad ? es_nan.f : x; }
"""


def _loops(shape: tuple, ins: list) -> tuple[str, str, list]:
    """Nested loops over ``shape`` and, per input ``(name, shape)``, the index expression that
    broadcasts it (numpy's rules: shapes aligned on the right). Returns (open, close, indices)."""
    rank = len(shape)
    idx = [f"i{d}" for d in range(rank)]
    opens = "".join(f"for (int i{d} = 0; i{d} < {shape[d]}; ++i{d}) " for d in range(rank)) + "{"
    out_index = " + ".join(f"i{d} * {int(np.prod(shape[d + 1:], dtype=np.int64))}" for d in range(rank)) or "0"
    exprs = []
    for s in ins:
        s = tuple(s)
        pad = (1,) * (rank - len(s)) + s
        terms = [f"i{d} * {int(np.prod(pad[d + 1:], dtype=np.int64))}" for d in range(rank) if pad[d] != 1]
        exprs.append(" + ".join(terms) or "0")
    return opens, "}", [out_index, *exprs]


def _scale_c(w: _Writer, key: str, x: str, r, bound: int, limit: int) -> tuple[str, int]:
    """C for ``rq(x, r)`` whose result the caller saturates within ``limit`` (a power of two), and
    the bound of that C value. A power-of-two ratio is a shift in int32 (left: the operand clamped
    first, which gives what saturating the wide product gives); any other ratio multiplies in
    int64 (``es_rq``)."""
    M, sh, _ = (np.atleast_1d(v) for v in r)
    if M.size == 1 and M[0] > 0 and not int(M[0]) & (int(M[0]) - 1):
        s = int(sh[0]) - (int(M[0]).bit_length() - 1)  # x * 2**-s
        if s > 0 and bound + (1 << (s - 1)) < 2 ** 31:
            return f"((({x}) + {1 << (s - 1)}) >> {s})", (bound >> s) + 1
        if s == 0 and bound < 2 ** 31:
            return f"({x})", bound
        if s < 0 and (limit >> -s) >= 1:
            c = limit >> -s
            return f"es_shl({x}, {c}, {1 << -s})", c << -s
    m, s_, xm = w.rq_arrays(key, r, bound)
    out = min(bound, int(xmax_of(r))) * int(M.max(initial=0)) // (1 << int(sh.max(initial=0))) + 1
    if out < 2 ** 31:  # the rescaled value fits 32 bits: saturate it with one instruction
        return f"(int32_t){_rq(f'(int64_t)({x})', m, s_, xm)}", out
    return _rq(f"(int64_t)({x})", m, s_, xm), 2 ** 62


def xmax_of(r) -> int:
    return int(np.atleast_1d(r[2]).max(initial=0))


POINTWISE = ("add", "sub", "max", "min", "mul", "rescale", "q", "tanh", "sigmoid", "relu", "clip", "log")


def _elem_int(w: _Writer, o: fx.Op, key: str, args: list) -> str:
    """The int32 C expression of one element of a pointwise kernel, its inputs' elements given as
    C expressions (``args``); equal to ``fixed._kernel``."""
    p, op, y = o.p, o.op, o.outputs[0]
    bnd = lambda t: w.bound.get(t, fx.LIMIT)  # noqa: E731
    w.bound[y] = fx.LIMIT
    if op == "mul":
        a, b = o.inputs
        pb = bnd(a) * bnd(b)
        prod = f"{args[0]} * {args[1]}" if pb < 2 ** 31 else f"(int64_t){args[0]} * {args[1]}"
        e, eb = _scale_c(w, key, prod, p["r"], pb, fx.LIMIT + 1)
        return f"es_sat64({e}, ES_LIMIT)" if eb >= 2 ** 31 else f"es_sat({e}, ES_LIMIT)"
    if op in ("add", "sub", "max", "min"):
        parts = []
        for k2, (X_, t, r) in enumerate(zip(args, o.inputs, (p["ra"], p["rb"]))):
            e, eb = _scale_c(w, f"{key}{'ab'[k2]}", X_, r, bnd(t), fx.OPERAND)
            parts.append(e if eb <= fx.OPERAND else f"es_clip64({e}, {fx.OPERAND})")
        u, v = parts
        return "es_sat(" + {"add": f"{u} + {v}", "sub": f"{u} - {v}", "max": f"es_max32({u}, {v})",
                            "min": f"es_min32({u}, {v})"}[op] + ", ES_LIMIT)"
    x, X = o.inputs[0], args[0]
    if op in ("rescale", "q"):
        lim = p.get("lim", fx.LIMIT)
        e, eb = _scale_c(w, key, X, p["r"], bnd(x), lim + 1)
        w.bound[y] = lim + 1
        return f"es_sat64({e}, {lim})" if eb >= 2 ** 31 else f"es_sat({e}, {lim})"
    if op in ("tanh", "sigmoid"):
        e, eb = _scale_c(w, key, f"({X} < 0 ? -{X} : {X})", p["r"], bnd(x), 8 << 16)
        e = f"es_sat64({e}, {8 << 16})" if eb >= 2 ** 31 else e
        w.bound[y] = 65536
        t = f"es_tanh_q16({e})"
        return f"({'32768 + ' if op == 'sigmoid' else ''}({X} < 0 ? -{t} : {t}))"
    if op == "log":
        m, s_, xm = w.rq_arrays(key, p["r"], 2 ** 30)
        return f"({X} > 0 ? es_sat64({_rq(f'es_log2_q24({X})', m, s_, xm)} + {p['c']}, ES_LIMIT) : -ES_LIMIT)"
    w.bound[y] = bnd(x)
    if op == "relu":
        return f"({X} > 0 ? {X} : 0)"
    if op == "clip":
        return f"({X} > {p['hi']} ? {p['hi']} : {X} < {p['lo']} ? {p['lo']} : {X})"
    raise ValueError(f"{op} is not pointwise")


def _emit_int(w: _Writer, o: fx.Op, k: int) -> str:
    """C for one fixed-point kernel (equal to ``fixed._kernel``)."""
    p, op, sh = o.p, o.op, w.p.shape
    y = o.outputs[0]
    Y = w.ref(y)
    bnd = lambda t: w.bound.get(t, fx.LIMIT)  # noqa: E731
    key = f"op{k}"
    if op in POINTWISE:
        op_, cl, (iy, *ix) = _loops(sh[y], [sh[t] for t in o.inputs])
        args = [f"{w.ref(t)}[{i}]" for t, i in zip(o.inputs, ix)]
        return f"{op_} {Y}[{iy}] = {_elem_int(w, o, key, args)}; {cl}"
    x = o.inputs[0]
    X = w.ref(x)
    w.bound[y] = fx.LIMIT
    if op == "fc":
        wq = w.p.consts[o.inputs[1]]
        K, C = wq.shape
        wmax = int(np.abs(wq).max(initial=0))
        acc_bound = bnd(x) * wmax * K
        acc_t = "int32_t" if acc_bound < 2 ** 31 else "int64_t"
        wt = "int8_t" if o.p["bits"] == 8 else "int16_t"
        nnz = int(np.count_nonzero(wq))
        idx_t = "uint16_t" if K < 65536 else "uint32_t"
        ptr_t = "uint16_t" if nnz < 65536 else "uint32_t"
        esz = 1 if wt == "int8_t" else 2
        sparse = nnz * (esz + 2) + 2 * (C + 1) < K * C * esz
        base = _ident(o.inputs[1])
        if sparse:
            cols = [np.nonzero(wq[:, c])[0] for c in range(C)]
            ptr = np.concatenate([[0], np.cumsum([len(c) for c in cols])])
            idx = np.concatenate(cols) if nnz else np.zeros(1, np.int64)
            val = np.concatenate([wq[c_, c] for c, c_ in enumerate(cols)]) if nnz else np.zeros(1, np.int64)
            if bnd(x) <= 32768 and K < 65536 and acc_t == "int32_t":
                # one word per weight, value above index: a Cortex-M4 reads it with one load and
                # multiplies the halves with SMLABT (4 instructions a weight, against 6)
                # rows padded to 4 entries with zero weights: the loop unrolls without a remainder
                pk = [np.concatenate([(wq[c_, c].astype(np.int64) << 16) | c_, np.zeros(-len(c_) % 4, np.int64)])
                      for c, c_ in enumerate(cols)]
                pptr = np.concatenate([[0], np.cumsum([len(v) for v in pk])])
                ptr_t = "uint16_t" if pptr[-1] < 65536 else "uint32_t"
                w.decl += [_c_array(ptr_t, base + "_ptr", pptr), _c_array("int32_t", base + "_pk", np.concatenate(pk))]
                term = lambda j: f"(int16_t)xr[e{j} & 0xffff] * (e{j} >> 16)"  # noqa: E731
                dot = (f"for (int k = {base}_ptr[c]; k < {base}_ptr[c + 1]; k += 4) {{ "
                       + " ".join(f"int32_t e{j} = {base}_pk[k + {j}];" for j in range(4))
                       + f" acc += {' + '.join(term(j) for j in range(4))}; }}")
            else:
                w.decl += [_c_array(ptr_t, base + "_ptr", ptr), _c_array(idx_t, base + "_idx", idx),
                           _c_array(wt, base + "_val", val)]
                dot = (f"for (int k = {base}_ptr[c]; k < {base}_ptr[c + 1]; ++k) "
                       f"acc += ({acc_t})xr[{base}_idx[k]] * {base}_val[k];")
            if bnd(x) <= 32768 and acc_t == "int32_t":
                # a host with a vector unit: the dense int16 product runs 16-32 multiply-adds an
                # instruction, faster than the sparse gather; the same integers, so the same sums
                # rows padded to 64 with zeros: whole vectors, no remainder loop
                Kp = -(-K // 64) * 64
                dense = np.zeros((C, Kp), np.int64)
                dense[:, :K] = wq.T
                w.decl.append("#ifdef ES_USE_DENSE\n" + _c_array("int16_t", base + "_d", dense) + "#endif\n")
                rows = int(np.prod(sh[y][:-1], dtype=np.int64))
                store = _fc_store(w, key, p, acc_bound)
                return (f"for (int r = 0; r < {rows}; ++r) {{ const int32_t *xr = {X} + r * {K}; int32_t *yr = {Y} + r * {C};\n"
                        f"#ifdef ES_USE_DENSE\n  int16_t xs[{Kp}] = {{0}}; int32_t accs[{C}];\n"
                        f"  for (int i = 0; i < {K}; ++i) xs[i] = (int16_t)xr[i];\n"
                        f"  for (int c = 0; c < {C}; ++c) {{ int32_t acc = 0; const int16_t *wc = {base}_d + c * {Kp}; "
                        f"for (int i = 0; i < {Kp}; ++i) acc += xs[i] * wc[i]; accs[c] = acc; }}\n"
                        f"  for (int c = 0; c < {C}; ++c) {{ int32_t acc = accs[c]; {store} }}\n#else\n"
                        f"  for (int c = 0; c < {C}; ++c) {{ int32_t acc = 0; {dot} {store} }}\n#endif\n  }}")
        else:
            w.decl.append(_c_array(wt, base + "_w", wq.T))
            dot = (f"const {wt} *wc = {base}_w + c * {K}; "
                   f"for (int i = 0; i < {K}; ++i) acc += ({acc_t})xr[i] * wc[i];")
        rows = int(np.prod(sh[y][:-1], dtype=np.int64))
        return (f"for (int r = 0; r < {rows}; ++r) {{ const int32_t *xr = {X} + r * {K}; int32_t *yr = {Y} + r * {C}; "
                f"for (int c = 0; c < {C}; ++c) {{ {acc_t} acc = 0; {dot} {_fc_store(w, key, p, acc_bound)} }} }}")
    if op == "concat":
        w.bound[y] = fx.LIMIT
        def part(i, e, k2):
            e, eb = _scale_c(w, f"{key}_{k2}", e, p["rs"][k2], bnd(i), fx.LIMIT + 1)
            return f"es_sat64({e}, ES_LIMIT)" if eb >= 2 ** 31 else f"es_sat({e}, ES_LIMIT)"
        return _concat(w, o, part)
    w.bound[y] = bnd(x)
    return _copy(w, o)


def _emit_shift(w: _Writer, o: fx.Op, k: int) -> str:
    """A history state moved one row in place (its rows 1.. to 0..), the new row rescaled into the
    last: the concat of ``fixed._kernel`` without a copy (the old rows' rescale is the identity)."""
    y, new = o.outputs[0], o.inputs[1]
    row, n = w.n(new), w.n(y)
    e, eb = _scale_c(w, f"op{k}_1", f"{w.ref(new)}[c]", o.p["rs"][1], w.bound.get(new, fx.LIMIT), fx.LIMIT + 1)
    e = f"es_sat64({e}, ES_LIMIT)" if eb >= 2 ** 31 else f"es_sat({e}, ES_LIMIT)"
    w.bound[y] = fx.LIMIT
    return (f"for (int c = 0; c < {n - row}; ++c) {w.ref(y)}[c] = {w.ref(y)}[c + {row}];\n"
            f"  for (int c = 0; c < {row}; ++c) {w.ref(y)}[{n - row} + c] = {e};")


def _fc_store(w: _Writer, key: str, p: dict, acc_bound: int) -> str:
    """``yr[c] =`` the rescaled accumulator plus the bias, saturated: in 32 bits where the bound
    allows (one SSAT), as ``fixed._kernel``'s fc."""
    m, s_, xm = w.rq_arrays(key, p["r"], acc_bound)
    M, sh = np.atleast_1d(p["r"][0]), int(np.atleast_1d(p["r"][1])[0])
    bias, bb = "", 0
    if p["bias"] is not None:
        bias = " + " + w.const(key + "_bias", p["bias"], "int32_t") + "[c]"
        bb = int(np.abs(p["bias"]).max(initial=0))
    out = min(acc_bound, int(np.atleast_1d(p["r"][2])[0])) * int(M.max(initial=0)) // (1 << sh) + 1 + bb
    if out < 2 ** 31:
        return f"yr[c] = es_sat((int32_t){_rq('acc', m, s_, xm)}{bias}, ES_LIMIT);"
    return f"yr[c] = es_sat64({_rq('acc', m, s_, xm)}{bias}, ES_LIMIT);"


def _flat(shape) -> tuple:
    return tuple(shape[next((i for i, d in enumerate(shape) if d != 1), len(shape)):])


def _fuse(w: _Writer, ops: list) -> list:
    """Runs of consecutive pointwise kernels of one part over the same elements, each input an
    earlier member's output, a tensor laid out alike, or one value: one loop for the run, its
    intermediates in registers (on a Cortex-M4 a load, a store and the loop's count per element
    and kernel saved)."""
    groups, cur, made, shape, part = [], [], set(), None, None
    for k, (o, pt) in enumerate(ops):
        out = _flat(w.p.shape[o.outputs[0]])
        ok = o.op in POINTWISE and all(t in made or _flat(w.p.shape[t]) == out or w.n(t) == 1 for t in o.inputs)
        if ok and cur and pt == part and out == shape:
            cur.append(k)
            made.update(o.outputs)
            continue
        if cur:
            groups.append(cur)
        cur, made, shape, part = [k], set(o.outputs), out, pt
        if not ok:
            groups.append(cur)
            cur = []
    if cur:
        groups.append(cur)
    return groups


def _emit_fused(w: _Writer, run: list, internal: set) -> str:
    """One loop for a run of pointwise kernels (``_fuse``)."""
    n = w.n(run[0][1].outputs[0])
    local, lines = {}, []
    for k, o in run:
        args = [local[t] if t in local else f"{w.ref(t)}[{'0' if w.n(t) == 1 else 'c'}]" for t in o.inputs]
        y = o.outputs[0]
        local[y] = f"v{k}"
        lines.append(f"int32_t v{k} = {_elem_int(w, o, f'op{k}', args)};")
        if y not in internal:
            lines.append(f"{w.ref(y)}[c] = v{k};")
    return f"for (int c = 0; c < {n}; ++c) {{\n    " + "\n    ".join(lines) + "\n  }"


def _copy(w: _Writer, o) -> str:
    """The ops that move values without arithmetic: reshape, gather, slice, split."""
    op, p, sh = o.op, o.p, w.p.shape
    x, y = o.inputs[0], o.outputs[0]
    X, Y, n = w.ref(x), w.ref(y), w.n(y)
    if op == "reshape":
        return f"for (int c = 0; c < {n}; ++c) {Y}[c] = {X}[c];"
    if op == "gather":
        idx = w.const(f"{y}_idx", p["index"], _int_type(0, int(np.max(p["index"], initial=0))))
        return f"for (int c = 0; c < {n}; ++c) {Y}[c] = {X}[{idx}[c]];"
    if op == "slice":
        row = int(np.prod(sh[x][1:], dtype=np.int64))
        return f"for (int c = 0; c < {n}; ++c) {Y}[c] = {X}[{p['start'] * row} + c];"
    if op in ("copy_split", "split"):
        sizes = p["sizes"]
        start, width = int(sum(sizes[:p["which"]])), sizes[p["which"]]
        total = sh[x][-1]
        rows = n // width
        return (f"for (int r = 0; r < {rows}; ++r) for (int c = 0; c < {width}; ++c) "
                f"{Y}[r * {width} + c] = {X}[r * {total} + {start} + c];")
    raise fx.Unsupported(f"op {op!r} (node {o.outputs[0]}) has no C kernel")


def _concat(w: _Writer, o, conv) -> str:
    sh = w.p.shape
    y = o.outputs[0]
    axis = o.p["axis"] - 1 if o.p["axis"] >= 0 else o.p["axis"] % len(sh[y])  # the graph's axes count the batch
    outer = int(np.prod(sh[y][:axis], dtype=np.int64))
    total = int(np.prod(sh[y][axis:], dtype=np.int64))
    code, start = [], 0
    for k2, i in enumerate(o.inputs):
        inner = int(np.prod(sh[i][axis:], dtype=np.int64))
        e = conv(i, f"{w.ref(i)}[r * {inner} + c]", k2)
        code.append(f"for (int r = 0; r < {outer}; ++r) for (int c = 0; c < {inner}; ++c) "
                    f"{w.ref(y)}[r * {total} + {start} + c] = {e};")
        start += inner
    return "\n  ".join(code)


def _emit_float(w: _Writer, o, k: int) -> str:
    """C for one float op of the step graph (the numpy interpreter's float32 arithmetic)."""
    op, sh = o.op, w.p.shape
    y = o.outputs[0]
    Y = w.ref(y)
    if op in ("add", "sub", "max", "min", "mul"):
        a, b = o.inputs
        op_, cl, (iy, ia, ib) = _loops(sh[y], [sh[a], sh[b]])
        A, B = f"{w.ref(a)}[{ia}]", f"{w.ref(b)}[{ib}]"
        expr = {"add": f"{A} + {B}", "sub": f"{A} - {B}", "mul": f"{A} * {B}",
                "max": f"({A} > {B} ? {A} : {B})", "min": f"({A} < {B} ? {A} : {B})"}[op]
        return f"{op_} {Y}[{iy}] = {expr}; {cl}"
    x = o.inputs[0]
    X, n = w.ref(x), w.n(y)
    if op == "fc":
        wv = w.g.consts[o.inputs[1]]
        wv = wv.value() if isinstance(wv, Weight) else np.asarray(wv, np.float32)
        K, C = wv.shape
        base = _ident(o.inputs[1])
        nnz = int(np.count_nonzero(wv))
        sparse = nnz * 6 + 2 * (C + 1) < K * C * 4
        if sparse:
            cols = [np.nonzero(wv[:, c])[0] for c in range(C)]
            ptr = np.concatenate([[0], np.cumsum([len(c) for c in cols])])
            w.decl += [_c_array("int32_t", base + "_ptr", ptr), _c_array("uint16_t", base + "_idx", np.concatenate(cols)),
                       _c_array("float", base + "_val", np.concatenate([wv[c_, c] for c, c_ in enumerate(cols)]))]
            dot = f"for (int k = {base}_ptr[c]; k < {base}_ptr[c + 1]; ++k) acc += xr[{base}_idx[k]] * {base}_val[k];"
        else:
            w.decl.append(_c_array("float", base + "_w", wv.T))
            dot = f"const float *wc = {base}_w + c * {K}; for (int i = 0; i < {K}; ++i) acc += xr[i] * wc[i];"
        bias = ""
        if len(o.inputs) > 2:
            bias = " + " + w.const(o.inputs[2], np.asarray(w.g.consts[o.inputs[2]], np.float32), "float") + "[c]"
        rows = int(np.prod(sh[y][:-1], dtype=np.int64))
        return (f"for (int r = 0; r < {rows}; ++r) {{ const float *xr = {X} + r * {K}; float *yr = {Y} + r * {C}; "
                f"for (int c = 0; c < {C}; ++c) {{ float acc = 0.0f; {dot} yr[c] = acc{bias}; }} }}")
    unary = {"tanh": "tanhf(v)", "sigmoid": "0.5f * (tanhf(0.5f * v) + 1.0f)", "relu": "(v > 0.0f ? v : 0.0f)",
             "log": "logf(v)", "q": "v", "rescale": "v"}
    if op in unary:
        return f"for (int c = 0; c < {n}; ++c) {{ float v = {X}[c]; {Y}[c] = {unary[op]}; }}"
    if op == "clip":
        lo, hi = (repr(float(np.float32(o.p[k]))) + "f" for k in ("lo", "hi"))
        return f"for (int c = 0; c < {n}; ++c) {{ float v = {X}[c]; {Y}[c] = v > {hi} ? {hi} : v < {lo} ? {lo} : v; }}"
    if op == "concat":
        return _concat(w, o, lambda i, e, k2: e)
    return _copy(w, o)


def _float_ops(g: Graph) -> list:
    """The float step graph's nodes as the C writer walks them (split named per piece)."""
    ops = []
    for nd in g.nodes:
        if nd.op == "loop":
            raise fx.Unsupported(f"its step graph holds a loop (node {nd.outputs[0]}); the C form runs one step at a time")
        if nd.op == "split":
            for j, o in enumerate(nd.outputs):
                ops.append(fx.Op("copy_split", nd.inputs[:1], [o], {"sizes": nd.attrs["sizes"], "which": j}))
        elif nd.op == "gather":
            ops.append(fx.Op("gather", nd.inputs[:1], nd.outputs, {"index": np.asarray(g.consts[nd.inputs[1]])}))
        else:
            p = dict(nd.attrs)
            ops.append(fx.Op(nd.op, list(nd.inputs), list(nd.outputs), p))
    return ops


def float_program(g: Graph, initial: dict) -> fx.Program:
    """The float step graph in the :class:`Program` shape the writer walks (scales unused)."""
    shape = {k: tuple(int(d) for d in (s if k in g.consts else s[1:])) for k, s in g.shapes.items()}
    states = [k for k in g.inputs if k + "_out" in g.outputs]
    held = [k for k in g.inputs[1:] if k not in states]
    consts = {k: np.asarray(v.value() if isinstance(v, Weight) else v) for k, v in g.consts.items()}
    init = {k: np.broadcast_to(np.asarray(initial.get(k, 0.0), np.float32), shape[k]) for k in states}
    return fx.Program(g.name, list(g.inputs), list(g.outputs), states, held, {}, shape, _float_ops(g), consts, init)


def to_c(prog: fx.Program, *, int8: bool, window_length: int | None, graph: Graph | None = None,
         inputs: list | None = None, outputs: list | None = None) -> dict:
    """``{"model.h": text, "model.c": text, "arena_bytes": n}`` for ``prog`` (a fixed-point
    program, or :func:`float_program`'s with ``graph`` its float step graph). ``inputs`` and
    ``outputs``: the window form's names (``es_window_batch``'s arguments)."""
    w = _Writer(prog, graph)
    P = prog
    sample = P.inputs[0]
    parts = _parts(P.ops, P.inputs, P.states, P.held, P.outputs)
    ops = [(o, pt) for want in (0, 1, 2) for o, pt in zip(P.ops, parts) if pt == want]  # execution order
    elt = "int32_t" if int8 else "float"
    # in the order the ops read them (a set's order changes with the hash seed: the same model
    # would print another file, with another sha256, on each export)
    for t in dict.fromkeys(t for o in P.ops if o.op != "fc" for t in o.inputs if t in P.consts):
        w.names[t] = w.const(t, P.consts[t], elt)
        w.bound[t] = int(np.abs(P.consts[t]).max(initial=0)) if int8 else 0
    for k in P.states:
        w.names[k] = f"s->{_ident(k)}"
        w.bound[k] = fx.LIMIT
    groups = _fuse(w, ops) if int8 else [[k] for k in range(len(ops))]
    used_by = {}
    for k, (o, _) in enumerate(ops):
        for t in o.inputs:
            used_by.setdefault(t, set()).add(k)
    kept = {k + "_out" for k in P.states} | set(P.outputs)
    # a fused run keeps in registers what no op outside it reads: no arena slot, no store
    internal = {t for g in groups if len(g) > 1 for k in g for t in ops[k][0].outputs
                if t not in kept and used_by.get(t, set()) <= set(g)}
    # a state updated element by element, once nothing reads its old value any more, is written
    # straight into the struct: no arena slot and no copy at the end of the step
    start = {k: g[0] for g in groups for k in g}
    for st in P.states:
        prod = next((k for k, (o, _) in enumerate(ops) if st + "_out" in o.outputs), None)
        if prod is None or ops[prod][0].op not in POINTWISE or ops[prod][1] != 1:
            continue
        run = next(g for g in groups if prod in g)
        readers = used_by.get(st, set())
        if all(r < start[prod] or (r in run and r <= prod and w.n(st) == w.n(st + "_out")) for r in readers):
            w.names[st + "_out"] = f"s->{_ident(st)}"
            w.bound[st + "_out"] = fx.LIMIT
    # a history that shifts by one row a step (concat of its rows 1.. and a new row, as the TCN's)
    # moves in place once nothing reads its old value: no second copy of it in RAM
    shifted = {}
    for st in P.states if int8 else ():
        prod = next((k for k, (o, _) in enumerate(ops) if st + "_out" in o.outputs), None)
        o = ops[prod][0] if prod is not None else None
        if o is None or o.op != "concat" or o.p["axis"] != 1 or len(o.inputs) != 2:
            continue
        src = next((k for k, (q, _) in enumerate(ops) if o.inputs[0] in q.outputs), None)
        q = ops[src][0] if src is not None else None
        M, sh_, _ = (np.atleast_1d(v) for v in o.p["rs"][0])
        if (q is None or q.op != "slice" or q.inputs[0] != st or q.p["start"] != 1 or used_by.get(o.inputs[0]) != {prod}
                or int(M[0]) != 1 << int(sh_[0]) or not all(r < prod for r in used_by.get(st, set()))):
            continue
        shifted[prod] = src
        w.names[st + "_out"] = f"s->{_ident(st)}"
        w.bound[st + "_out"] = fx.LIMIT
    skipped = set(shifted.values())
    # the arena: what ops write and the converted sample and held inputs, placed by lifetime;
    # the held part's tensors live across a whole window
    # (a fused run is one step: what it reads stays live while it writes, element by element)
    order = [([sample, *P.held], [sample, *P.held])] + [
        ([t for k in g for t in ops[k][0].outputs], [t for k in g for t in ops[k][0].inputs]) for g in groups]
    order.append(([], [k + "_out" for k in P.states] + list(P.outputs)))
    pinned = set(P.held) | {t for o, pt in ops if pt == 0 for t in o.outputs}
    internal |= {t for k in skipped for t in ops[k][0].outputs}
    sizes = {t: w.n(t) for t in P.shape if t not in internal and not w.names.get(t, "").startswith("s->")}
    off, total = _arena([([d for d in ds if d in sizes], [u for u in us if u in sizes and u not in w.names])
                         for ds, us in order], sizes, pinned)
    for t, o_ in off.items():
        w.names.setdefault(t, f"(es_arena + {o_})")
    body = {0: [], 1: [], 2: []}
    for g in groups:
        pt = ops[g[0]][1]
        if g[0] in skipped:
            continue
        if g[0] in shifted:
            body[pt].append(_emit_shift(w, ops[g[0]][0], g[0]))
        elif len(g) == 1:
            body[pt].append((_emit_int if int8 else _emit_float)(w, ops[g[0]][0], g[0]))
        else:
            body[pt].append(_emit_fused(w, [(k, ops[k][0]) for k in g], internal))
    A = _ident_arg
    scale = (lambda t: f", {float(np.float32(P.scale[t]))!r}f") if int8 else (lambda t: "")  # noqa: E731
    inv = (lambda t: f", {float(np.float32(1 / P.scale[t]))!r}f") if int8 else (lambda t: "")  # noqa: E731

    def conv_in(t, dst, src):
        return f"for (int c = 0; c < {w.n(t)}; ++c) {dst}[c] = es_in({src}[c]{inv(t)});"

    def conv_out(t, dst, src):
        return f"for (int c = 0; c < {w.n(t)}; ++c) {dst}[c] = es_out({src}[c]{scale(t)});"

    def args(names, const):
        return [f"{'const ' if const else ''}float *{A(k)}" for k in names]

    outs = [k for k in P.outputs if k not in {s + "_out" for s in P.states}]
    held_sig = ", ".join(args(P.held, True)) or "void"
    held_call = ", ".join(A(k) for k in P.held)
    out_call = ", ".join(A(k) for k in outs)
    step_sig = ", ".join(["es_state_t *s", *args([sample, *P.held], True), *args(outs, False)])
    win_in = (inputs or [sample])[0]
    win_sig = ", ".join([*args([win_in, *P.held], True), *args(outs, False)])
    batch_sig = ", ".join(["int n", *args([sample, *P.inputs[1:]], True), *args(P.outputs, False)])
    wb_sig = ", ".join(["int n", *args(inputs or [win_in, *P.held], True), *args(outputs or outs, False)])
    run_sig = ", ".join(["int T", *args([sample, *P.states], True), *args(P.outputs, False)])

    def fn(name, sig, stmts):
        return f"static void {name}({sig}) {{\n  " + "\n  ".join(stmts) + "\n}\n"

    src = [f"/* Generated by edgeseq from the model description ({P.name}), "
           f"{'int8 fixed point: integers only, no libm' if int8 else 'float32'}. Do not edit: export again. */",
           '#include "model.h"', _PRELUDE_INT if int8 else _PRELUDE_FLOAT]
    if int8 and any(o.op in ("tanh", "sigmoid") for o in P.ops):
        # a host's vector gathers read 32-bit words (a 16-bit table keeps the loop scalar); a
        # microcontroller keeps the 2 kB table
        src += ["#ifdef ES_USE_DENSE\ntypedef int32_t es_tanh_elt;\n#else\ntypedef uint16_t es_tanh_elt;\n#endif",
                _c_array("es_tanh_elt", "es_tanh_t", fx.TANH_TABLE), _PRELUDE_TANH]
    if int8 and any(o.op == "log" for o in P.ops):
        src += [_c_array("int32_t", "es_log2_t", fx.LOG2_TABLE), _PRELUDE_LOG]
    src += w.decl + [_c_array(elt, f"es_x0_{_ident(k)}", P.initial[k]) for k in P.states]
    src.append(f"static {elt} es_arena[{max(total, 1)}];\n")
    src.append(fn("es_part_held", held_sig, [conv_in(k, w.ref(k), A(k)) for k in P.held] + body[0] + ["(void)0;"]))
    # restrict: the struct is no table's alias, which lets a compiler vectorize the fused loops
    src.append(fn("es_part_state", f"es_state_t *restrict s, const float *{A(sample)}",
                  ["(void)s;", conv_in(sample, w.ref(sample), A(sample))] + body[1]))
    src.append(fn("es_part_out", ", ".join(["es_state_t *restrict s", *args(outs, False)]),
                  ["(void)s;"] + body[2] + [conv_out(k, A(k), w.ref(k)) for k in outs]))
    src.append(fn("es_commit", "es_state_t *s", ["(void)s;"] + [
        f"for (int c = 0; c < {w.n(k)}; ++c) s->{_ident(k)}[c] = {w.ref(k + '_out')}[c];" for k in P.states
        if w.ref(k + "_out") != f"s->{_ident(k)}"]))
    src.append("void es_init(es_state_t *s) {\n  (void)s;\n" + "".join(
        f"  for (int c = 0; c < {w.n(k)}; ++c) s->{_ident(k)}[c] = es_x0_{_ident(k)}[c];\n" for k in P.states) + "}\n")
    src.append(f"int es_step({step_sig}) {{\n  es_bad = 0;\n  es_part_held({held_call});\n"
               f"  es_part_state(s, {A(sample)});\n  es_part_out({', '.join(['s', *([out_call] if outs else [])])});\n"
               f"  es_commit(s);\n  return es_bad;\n}}\n")
    D = w.n(sample)
    if window_length:
        src.append(f"int es_window({win_sig}) {{\n  es_state_t st;\n  es_init(&st);\n  es_bad = 0;\n"
                   f"  es_part_held({held_call});\n  for (int t = 0; t < {window_length}; ++t) {{\n"
                   f"    es_part_state(&st, {A(win_in)} + t * {D});\n"
                   f"    if (t == {window_length - 1}) es_part_out({', '.join(['&st', *([out_call] if outs else [])])});\n"
                   f"    es_commit(&st);\n  }}\n  return es_bad;\n}}\n")
    # host entry points: rows of a batch with states as float arrays, the other formats' signatures
    row = lambda k: f"({A(k)} + b * {w.n(k)})"  # noqa: E731
    st = ["int bad = 0;", "es_state_t st;", "for (int b = 0; b < n; ++b) {", "  int sb, r;", "  es_bad = 0;"]
    st += ["  " + conv_in(k, "st." + _ident(k), row(k)) for k in P.states]
    st += ["  sb = es_bad;", f"  r = es_step({', '.join(['&st', *[row(k) for k in [sample, *P.held, *outs]]])}) | sb;",
           "  bad |= r;", "  es_bad = r;"]
    st += ["  " + conv_out(k, row(k + "_out"), "st." + _ident(k)) for k in P.states]
    st += ["  if (r) {"] + [f"    for (int c = 0; c < {w.n(k)}; ++c) {row(k)}[c] = es_nan.f;" for k in outs]
    st += ["  }", "}", "return bad;"]
    src.append(f"int es_step_batch({batch_sig}) {{\n  " + "\n  ".join(st) + "\n}\n")
    if window_length:
        sizes_in = {win_in: window_length * D, **{k: w.n(k) for k in P.held}}
        wcall = ", ".join([f"{A(k)} + b * {sizes_in[k]}" for k in (inputs or [win_in, *P.held])] + [row(k) for k in outs])
        src.append(f"int es_window_batch({wb_sig}) {{\n  int bad = 0;\n"
                   f"  for (int b = 0; b < n; ++b) bad |= es_window({wcall});\n  return bad;\n}}\n")
    else:  # a sequence model: T steps of one stream, the state round-tripping as the other runtimes'
        st = ["int bad = 0;"] + [f"for (int c = 0; c < {w.n(k)}; ++c) {A(k + '_out')}[c] = {A(k)}[c];" for k in P.states]
        call = [f"{A(sample)} + t * {D}", *[A(k + "_out") for k in P.states],
                *[A(k) if k in {s + "_out" for s in P.states} else f"{A(k)} + t * {w.n(k)}" for k in P.outputs]]
        st += [f"for (int t = 0; t < T; ++t) bad |= es_step_batch(1, {', '.join(call)});", "return bad;"]
        src.append(f"int es_run({run_sig}) {{\n  " + "\n  ".join(st) + "\n}\n")
    fields = "\n".join(f"  {elt} {_ident(k)}[{w.n(k)}];" for k in P.states) or "  int32_t unused;"
    hdr = [f"/* Generated by edgeseq ({P.name}, {'int8 fixed point' if int8 else 'float32'}): the model's C API.",
           "   es_step runs one sample on the state struct, es_window one window from the initial state; the",
           "   _batch forms take n rows and float states. Each returns 1 when an input was not finite (its",
           "   outputs are then NaN). */",
           f"#ifndef {_HEADER_GUARD}", f"#define {_HEADER_GUARD}", "#include <stdint.h>", "",
           f"#define ES_SAMPLE_SIZE {D}", *[f"#define ES_{A(k)[2:].upper()}_SIZE {w.n(k)}" for k in [*P.held, *outs]],
           *([f"#define ES_WINDOW_LENGTH {window_length}"] if window_length else []),
           f"#define ES_ARENA_BYTES {total * 4}", "", "typedef struct {", fields, "} es_state_t;", "",
           "void es_init(es_state_t *s);", f"int es_step({step_sig});", f"int es_step_batch({batch_sig});"]
    hdr += [f"int es_window({win_sig});", f"int es_window_batch({wb_sig});"] if window_length else [f"int es_run({run_sig});"]
    hdr += ["", f"#endif /* {_HEADER_GUARD} */", ""]
    return {"model.h": "\n".join(hdr), "model.c": "\n".join(src), "arena_bytes": total * 4}


def _ident_arg(name: str) -> str:
    return "a_" + "".join(c if c.isalnum() else "_" for c in name)
