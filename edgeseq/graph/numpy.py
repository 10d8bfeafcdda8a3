"""The numpy interpreter of a model description: the float reference every export is tested
against, the int8 reference once ``graph/quantize.py`` has set the scales, and the calibration
tracer (``observe`` sees every tensor a node makes, inside loops once per step).

Decision: float32 throughout and numpy's own kernels, in the order the description states, so a
lowering that keeps the order agrees to float32 rounding. Quantize rounds half to even and
saturates, as onnxruntime's QuantizeLinear does.
"""

from __future__ import annotations

import numpy as np

from . import Graph, Weight

F32 = np.float32


def _sigmoid(x):
    return (F32(0.5) * (np.tanh(F32(0.5) * x) + F32(1))).astype(F32)


def qdq(x, scale: float, bits: int):
    """Round ``x`` to the ``bits``-wide grid of ``scale`` (symmetric, zero point 0), saturating."""
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return (np.clip(np.round(x / F32(scale)), lo, hi) * F32(scale)).astype(F32)


def _conv(x, w, b, dilation):
    B, T, _ = x.shape
    K = w.shape[2]
    y = np.broadcast_to(b, (B, T, len(b))).astype(F32)
    for k in range(K):
        shift = (K - 1 - k) * dilation
        if shift < T:
            y[:, shift:] += x[:, :T - shift] @ w[:, :, k].T
    return y


_OPS = {
    "fc": lambda n, x, w, b=None: x @ w if b is None else x @ w + b,
    "add": lambda n, a, b: a + b, "sub": lambda n, a, b: a - b, "mul": lambda n, a, b: a * b,
    "max": lambda n, a, b: np.maximum(a, b), "min": lambda n, a, b: np.minimum(a, b),
    "tanh": lambda n, x: np.tanh(x), "sigmoid": lambda n, x: _sigmoid(x), "relu": lambda n, x: np.maximum(x, F32(0)),
    "log": lambda n, x: np.log(x), "clip": lambda n, x: np.clip(x, F32(n.attrs["lo"]), F32(n.attrs["hi"])),
    "concat": lambda n, *xs: np.concatenate(xs, axis=n.attrs["axis"]),
    "gather": lambda n, x, idx: x[..., idx],
    "reshape": lambda n, x: x.reshape(len(x), *n.attrs["shape"]),
    "take": lambda n, x: x[:, n.attrs["index"]],
    "slice": lambda n, x: x[:, n.attrs["start"]:n.attrs["start"] + n.attrs["length"]],
    "mean": lambda n, x: x.mean(axis=1, dtype=F32),
    "conv": lambda n, x, w, b: _conv(x, w, b, n.attrs["dilation"]),
    "zeros": lambda n, like: np.zeros((len(like), *n.attrs["shape"]), F32),
    "q": lambda n, x: x if n.attrs["scale"] is None else qdq(x, n.attrs["scale"], n.attrs["bits"]),
}


def constants(g: Graph) -> dict:
    """The constants as the computation sees them (int8 weights dequantized once)."""
    return {k: (v.value() if isinstance(v, Weight) else v) for k, v in g.consts.items()}


def run(g: Graph, feeds: dict, *, observe=None, env: dict | None = None) -> dict:
    """Run ``g`` on ``feeds`` (input name -> array) and return ``{output name: array}``.
    ``observe(name, value)`` is called for every tensor a node makes."""
    env = dict(constants(g) if env is None else env)
    for k in g.inputs:
        env[k] = np.asarray(feeds[k], F32)
    for n in g.nodes:
        args = [env[i] for i in n.inputs]
        if n.op == "loop":
            outs = _loop(n, args, env, observe)
        elif n.op == "split":
            outs = np.split(args[0], np.cumsum(n.attrs["sizes"])[:-1], axis=-1)
        else:
            outs = [_OPS[n.op](n, *args)]
        for name, v in zip(n.outputs, outs):
            env[name] = v = np.asarray(v, F32) if v.dtype != F32 else v
            if observe is not None:
                observe(name, v)
    return {k: env[k] for k in g.outputs}


def _loop(n, args, env, observe):
    body, a = n.attrs["body"], n.attrs
    ns, nc = a["n_state"], a["n_carry"]
    state, carry, scans = args[:ns], args[ns:ns + nc], args[ns + nc:]
    names = body.inputs
    collected = [[] for _ in body.outputs[ns:]]
    inner = dict(env)
    for t in range(scans[0].shape[1] if a["steps"] is None else a["steps"]):
        feeds = dict(zip(names, [*state, *carry, *[s[:, t] for s in scans]]))
        outs = run(body, feeds, observe=observe, env=inner)
        vals = [outs[k] for k in body.outputs]
        state = vals[:ns]
        for c, v in zip(collected, vals[ns:]):
            c.append(v)
    return [*state, *[np.stack(c, axis=1) for c in collected]]
