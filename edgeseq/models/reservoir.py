"""A reservoir with a linear readout at every step: the models ``edgeseq.from_reservoirpy`` imports
and the balance ESN (whose window score is the mean of its step outputs). Arrays: ``W`` (N, N),
``Win`` (N, D), ``bias`` (N,), ``lr`` (N,), ``Wout`` (N [+ D], O), ``bout`` (O,) and optionally
``x0`` (N,), the state a run starts from (zero without it)::

    s[t] = (1 - lr) * s[t-1] + lr * f(W s[t-1] + Win x[t] + bias)      reservoirpy's order
    y[t] = s[t] @ Wout[:N] (+ x[t] @ Wout[N:]) + bout
"""

from __future__ import annotations

import numpy as np

from ..errors import EdgeseqError

ACTIVATIONS = ("tanh", "identity", "sigmoid", "relu")
#: |s| < 1 when f is bounded by 1 and 0 < lr <= 1: one fixed int16 scale, no calibration.
STATE_SCALE = 1.0 / 32767


def check(arrays: dict, params: dict) -> tuple[int, int, int]:
    """``(N, D, O)`` of a sequence bundle's arrays, or one line saying what does not fit."""
    act = params.get("activation", "tanh")
    if act not in ACTIVATIONS:
        raise EdgeseqError(f"reservoir activation {act!r} is not supported (known: {', '.join(ACTIVATIONS)})")
    missing = [k for k in ("W", "Win", "bias", "lr", "Wout", "bout") if k not in arrays]
    if missing:
        raise EdgeseqError(f"sequence bundle lacks arrays {', '.join(missing)}")
    N, D = np.shape(arrays["Win"])
    O = np.shape(arrays["Wout"])[1]
    rows = N + (D if params.get("input_to_readout") else 0)
    if np.shape(arrays["W"]) != (N, N) or np.shape(arrays["bias"]) != (N,) or np.shape(arrays["lr"]) != (N,) \
            or np.shape(arrays["Wout"])[0] != rows or np.shape(arrays["bout"]) != (O,) \
            or np.shape(arrays.get("x0", np.zeros(N))) != (N,):
        raise EdgeseqError("sequence bundle arrays have inconsistent shapes")
    return N, D, O


def describe(arrays: dict, params: dict, form: str = "window"):
    """``window``: ``(x [B, T, D], s [B, N]) -> (y [B, T, O], s_out)`` for any T; ``step``:
    ``(x [B, D], s) -> (y [B, O], s_out)``. The state ``s`` is an input: the runtime starts it
    at ``x0`` and carries it from call to call, as reservoirpy's ``run`` does.

    Precision: ``W`` and ``Win`` int8 per channel; the state int16 where the activation bounds
    it (fixed scale), calibrated int16 otherwise; the readout float (O small, values unbounded)."""
    from ..graph import Graph

    N, D, O = check(arrays, params)
    act = params.get("activation", "tanh")
    a = {k: np.asarray(v, np.float32) for k, v in arrays.items()}
    g = Graph(f"reservoir_{form}")
    WinT = g.const("WinT", a["Win"].T, weight_axis=1)
    WT, bias = g.const("WT", a["W"].T, weight_axis=1), g.const("bias", a["bias"])
    lr, keep = g.const("lr", a["lr"]), g.const("keep", np.float32(1) - a["lr"])
    Wout_s, bout = g.const("Wout_s", a["Wout"][:N]), g.const("bout", a["bout"])
    Wout_x = g.const("Wout_x", a["Wout"][N:]) if params.get("input_to_readout") else None
    fixed = STATE_SCALE if act in ("tanh", "sigmoid") else None
    top = form == "step"

    def cell(b, x, s):
        # one name in both forms: the step graph takes the ranges calibrated on the window graph
        pre = b.add(b.fc(b.q(s, 16, fixed, name="sq"), WT), b.fc(x, WinT, bias))
        f = pre if act == "identity" else b.unary(act, pre)
        s = b.add(b.mul(keep, s), b.mul(lr, f), name="s_out" if top else None)
        y = b.fc(s, Wout_s)
        if Wout_x is not None:
            y = b.add(y, b.fc(x, Wout_x))
        return {"s": s, "y": b.add(y, bout, name="y" if top else None)}

    if form == "window":
        x, s = g.input("x", None, D), g.input("s", N)
        g.loop(None, cell, scan={"x": x}, state={"s": s}, collect=("y",), name="res", out={"s": "s_out", "y": "y"})
    else:
        cell(g, g.input("x", D), g.input("s", N))
    g.output("y", "s_out")
    return g


def initial_state(arrays: dict) -> dict:
    """``{"s": the state a run starts from}``: ``x0`` when the bundle has one, else zeros."""
    return {"s": np.asarray(arrays.get("x0", np.zeros(len(arrays["W"]))), np.float32)}
