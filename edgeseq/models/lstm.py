"""A small LSTM over the window (PyTorch training; inference is :func:`describe` on the numpy
interpreter).

Layer ``l`` has arrays ``lstm_Wih{l}`` ``(4H, in)``, ``lstm_Whh{l}`` ``(4H, H)`` and ``lstm_b{l}``
``(4H,)`` (PyTorch's ``b_ih + b_hh``), gates in PyTorch's order ``i, f, g, o``::

    i, f, g, o = split(x_t @ Wih.T + h @ Whh.T + b)
    c' = sigmoid(f) * c + sigmoid(i) * tanh(g)
    h' = sigmoid(o) * tanh(c')                       h, c start at zero for every window

The step form is the description's ``step`` graph: explicit ``(h, c)`` per layer and the sum of
the top layer's outputs, one call per sample. Head and pooling: :mod:`edgeseq.models.neural`.
"""

from __future__ import annotations

import numpy as np

from ..checks import Range
from ..errors import EdgeseqError
from .base import Optional
from .neural import TRAIN_PARAMS, NeuralSequenceModel


class LSTMModel(NeuralSequenceModel):
    """LSTM window model. ``size="small"``: 1 layer of 32 units, trains on DS1 on a 2-core CPU;
    ``"full"``: 2 layers of 128 (a GPU's job). Explicit ``hidden``/``layers``/``head``/``epochs``
    override the preset."""

    _NAME, KIND = "LSTM", "lstm"
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
        L = self.n_layers if "lstm_Whh0_" in vars(self) else 0
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

    def description(self, T: int, F: int, form: str = "window"):
        """:func:`describe`: the graph every export lowers and the numpy interpreter runs."""
        return describe(self, T, F, form)

    def architecture(self) -> dict:
        return {**super().architecture(), "layers": self.n_layers, "gate_order": "ifgo"}


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
                     name="lstm", hint={"lstm": {"layers": layers, "H": H, "gates": "ifog", "x": "lstm_x", "acc": "acc"}})
        last, acc = end[f"h{L - 1}"], end["acc"]
    else:
        st = {k: g.input(k, H) for k in [*names, "acc"]}
        out = cell(g, x, **st)
        last, acc = out[f"h{L - 1}"], out["acc"]
    describe_head(g, est, last, g.mul(acc, g.const("invT", 1.0 / T), name="mean_f"), rr, BITS)
    g.output("logits", *([f"{k}_out" for k in [*names, "acc"]] if top else []))
    return g
