"""A small LSTM over the window (numpy inference, PyTorch training).

Layer ``l`` has arrays ``lstm_Wih{l}`` ``(4H, in)``, ``lstm_Whh{l}`` ``(4H, H)`` and ``lstm_b{l}``
``(4H,)`` (PyTorch's ``b_ih + b_hh``), gates in PyTorch's order ``i, f, g, o``::

    i, f, g, o = split(x_t @ Wih.T + h @ Whh.T + b)
    c' = sigmoid(f) * c + sigmoid(i) * tanh(g)
    h' = sigmoid(o) * tanh(c')                       h, c start at zero for every window

The streaming form is :class:`LSTMStream`: explicit ``(h, c)`` per layer, one call per sample.
Head and pooling: :mod:`edgeseq.models.neural`.
"""

from __future__ import annotations

import numpy as np

from ..checks import Range
from ..errors import EdgeseqError
from .base import Optional
from .neural import TRAIN_HYPER, TRAIN_PARAMS, NeuralSequenceModel


def sigmoid(x):
    # tanh form: no overflow warning for large negative x, and the same value
    return 0.5 * (np.tanh(0.5 * x) + 1.0)


def lstm_cell(gx, h, c, Whh_T, H):
    """One step from the input part of the gates ``gx = x_t @ Wih.T + b``."""
    g = gx + h @ Whh_T
    i, f, gg, o = sigmoid(g[:, :H]), sigmoid(g[:, H:2 * H]), np.tanh(g[:, 2 * H:3 * H]), sigmoid(g[:, 3 * H:])
    c = f * c + i * gg
    return o * np.tanh(c), c


class LSTMModel(NeuralSequenceModel):
    """LSTM window model. ``size="small"``: 1 layer of 32 units, trains on DS1 on a 2-core CPU;
    ``"full"``: 2 layers of 128 (a GPU's job). Explicit ``hidden``/``layers``/``head``/``epochs``
    override the preset."""

    _NAME, KIND = "LSTM", "lstm"
    _HYPER = ("hidden", "layers") + TRAIN_HYPER
    PARAMS = {"hidden": Optional(Range(1, 4096, integer=True)), "layers": Optional(Range(1, 16, integer=True)),
              **TRAIN_PARAMS}
    PRESETS = {"small": {"hidden": 32, "layers": 1, "head": 32, "epochs": 12},
               "full": {"hidden": 128, "layers": 2, "head": 128, "epochs": 30}}

    def __init__(self, hidden: int | None = None, layers: int | None = None, *,
                 objective: str = "classification", size: str = "small", head: int | None = None,
                 epochs: int | None = None, batch_size: int = 256, learning_rate: float = 3e-3,
                 weight_decay: float = 1e-4, class_weight: str | None = "balanced",
                 class_weight_power: float = 0.75, class_weight_cap: float | None = 10.0,
                 device: str = "cpu", amp: bool = True, seed: int = 0, threads: int | None = None):
        self.hidden = hidden
        self.layers = layers
        self._init_train(objective, size, head, epochs, batch_size, learning_rate, weight_decay,
                         class_weight, class_weight_power, class_weight_cap, device, amp, seed, threads)

    # -- core ---------------------------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        return sum(1 for k in vars(self) if k.startswith("lstm_Wih") and k.endswith("_"))

    @property
    def hidden_size(self) -> int:
        return int(self.lstm_Whh0_.shape[1])

    def core_array_names(self):
        L = self.n_layers if hasattr(self, "lstm_Whh0_") else 0
        return [f"lstm_{p}{l}" for l in range(L) for p in ("Wih", "Whh", "b")]

    def _load_core(self, arrays):
        L = 0
        while f"lstm_Wih{L}" in arrays:
            setattr(self, f"lstm_Wih{L}_", np.asarray(arrays[f"lstm_Wih{L}"], np.float32))
            L += 1
        if L == 0:
            raise EdgeseqError("LSTM bundle has no layer weights (lstm_Wih0 ...)")
        self.lstm_Whh0_ = np.asarray(arrays["lstm_Whh0"], np.float32)

    def _check_shapes(self):
        H = self.hidden_size
        prev = len(self.in_scale_)
        for l in range(self.n_layers):
            Wih, Whh, b = (getattr(self, f"lstm_{p}{l}_") for p in ("Wih", "Whh", "b"))
            if Wih.shape != (4 * H, prev) or Whh.shape != (4 * H, H) or b.shape != (4 * H,):
                raise EdgeseqError(f"LSTM bundle layer {l} has inconsistent shapes: Wih {Wih.shape}, "
                                   f"Whh {Whh.shape}, b {b.shape} for hidden size {H}, {prev} inputs")
            prev = H
        super()._check_shapes()

    def layer_weights(self, l: int):
        return (getattr(self, f"lstm_Wih{l}_"), getattr(self, f"lstm_Whh{l}_"), getattr(self, f"lstm_b{l}_"))

    def sequence(self, x: np.ndarray) -> np.ndarray:
        """Top-layer outputs ``(B, T, H)`` for scaled inputs ``x`` ``(B, T, D)``."""
        B, T, _ = x.shape
        H = self.hidden_size
        seq = x.astype(np.float32)
        for l in range(self.n_layers):
            Wih, Whh, b = self.layer_weights(l)
            gx = seq @ Wih.T + b  # every step's input part at once
            h = np.zeros((B, H), np.float32)
            c = np.zeros((B, H), np.float32)
            out = np.empty((B, T, H), np.float32)
            WhhT = np.ascontiguousarray(Whh.T)
            for t in range(T):
                h, c = lstm_cell(gx[:, t], h, c, WhhT, H)
                out[:, t] = h
            seq = out
        return seq

    def stream(self, batch: int = 1) -> "LSTMStream":
        self._check()
        return LSTMStream(self, batch)

    def architecture(self) -> dict:
        return {**super().architecture(), "layers": self.n_layers, "gate_order": "ifgo"}


class LSTMStream:
    """The step form: ``push(u_t)`` with ``u_t`` ``(B, D)`` raw samples returns the top layer's
    ``h_t``; ``state`` holds ``(h, c)`` per layer, exactly what the exported step graph takes."""

    def __init__(self, model: LSTMModel, batch: int = 1):
        self.m = model
        self.batch = batch
        self.reset()

    def reset(self):
        H, L = self.m.hidden_size, self.m.n_layers
        self.state = {f"{k}{l}": np.zeros((self.batch, H), np.float32) for l in range(L) for k in ("h", "c")}

    def push(self, u) -> np.ndarray:
        x = np.asarray(u, np.float32).reshape(self.batch, -1) * self.m.in_scale_
        for l in range(self.m.n_layers):
            Wih, Whh, b = self.m.layer_weights(l)
            h, c = lstm_cell(x @ Wih.T + b, self.state[f"h{l}"], self.state[f"c{l}"], Whh.T, self.m.hidden_size)
            self.state[f"h{l}"], self.state[f"c{l}"] = h, c
            x = h
        return x


# -- the description: what every export lowers (edgeseq/graph) ------------------------------------

#: Activation widths of the int8 export, by measurement on the 50,977 DS1 beats (DS1 ``small``
#: bundle): the pooled outputs int8; side features and the head's hidden layer int16 (int8 moved
#: 13 and 8 labels more). The recurrence runs on int8 weights without activation rounding.
BITS = {"last": 8, "mean": 8, "z": 16, "hid": 16}


def describe(est: LSTMModel, T: int, F: int, form: str = "window"):
    """The LSTM as a :class:`~edgeseq.graph.Graph`: ``window`` ``(window, rr) -> logits``, or one
    ``step`` ``(u, rr, h0, c0, .., acc) -> (logits, <state>_out)`` whose logits after T steps from
    zero equal the window's. Gates are stored ``i, f, o, g``: one sigmoid over the first 3H."""
    from ..graph import Graph
    from .neural import describe_head, describe_input

    g = Graph(f"lstm_{form}")
    H, L = est.hidden_size, est.n_layers
    rows = np.r_[0:2 * H, 3 * H:4 * H, 2 * H:3 * H]  # PyTorch's i, f, g, o -> i, f, o, g
    layers = [{"W": g.const(f"WihT{l}", Wih[rows].T, weight_axis=1), "R": g.const(f"WhhT{l}", Whh[rows].T, weight_axis=1),
               "b": g.const(f"b{l}", b[rows])} for l, (Wih, Whh, b) in enumerate(map(est.layer_weights, range(L)))]
    x, rr = describe_input(g, est, T, F, form)
    top = form == "step"  # name the step graph's state outputs

    def cell(b, x, acc, **st):
        out = {}
        for l, w in enumerate(layers):
            h, c = st[f"h{l}"], st[f"c{l}"]
            pre = b.add(b.fc(x, w["W"], w["b"]), b.fc(h, w["R"]))
            sg, gg = b.split(pre, [3 * H, H], [None, None])
            i, f, o = b.split(b.unary("sigmoid", sg), [H, H, H], [None] * 3)
            c = b.add(b.mul(f, c), b.mul(i, b.unary("tanh", gg)), name=f"c{l}_out" if top else None)
            x = out[f"h{l}"] = b.mul(o, b.unary("tanh", c), name=f"h{l}_out" if top else None)
            out[f"c{l}"] = c
        out["acc"] = b.add(acc, x, name="acc_out" if top else None)
        return out

    names = [f"{k}{l}" for l in range(L) for k in "hc"]
    if form == "window":
        zero = g.zeros(x, H)
        end = g.loop(T, lambda b, x, **st: cell(b, x, **st), scan={"x": x}, state={k: zero for k in [*names, "acc"]},
                     name="lstm")
        g.nodes[-1].attrs["hint"] = {"lstm": {"layers": layers, "H": H, "gates": "ifog", "x": "lstm_x", "acc": "acc"}}
        last, acc = end[f"h{L - 1}"], end["acc"]
    else:
        st = {k: g.input(k, H) for k in [*names, "acc"]}
        out = cell(g, x, **st)
        last, acc = out[f"h{L - 1}"], out["acc"]
    describe_head(g, est, last, g.mul(acc, g.const("invT", 1.0 / T), name="mean_f"), rr, BITS)
    g.output("logits", *([f"{k}_out" for k in [*names, "acc"]] if top else []))
    return g
