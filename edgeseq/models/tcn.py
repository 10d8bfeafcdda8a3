"""A small temporal convolutional network (PyTorch training; inference is :func:`describe` on the
numpy interpreter).

Block ``l`` (dilation ``d = 2**l``, kernel ``K``) is a causal dilated convolution with a residual::

    y_t  = sum_k tcn_W{l}[:, :, k] @ x_{t - (K-1-k) d} + tcn_b{l}      x_{<0} = 0 (left zero padding)
    h_t  = relu(y_t) + (tcn_P @ x_t + tcn_pb  if l == 0 and the widths differ,  else x_t)

``tcn_W{l}`` is ``(C, C_in, K)``, PyTorch's ``Conv1d`` layout. The receptive field is
``1 + (K-1)(2**L - 1)`` steps; the ``small`` preset (6 blocks, K=3) sees 127 >= the 126-step
beat window.

The step form (the description's ``step`` graph) keeps, per block, the last ``(K-1) d`` inputs
of that block: a step reads ``K-1`` taps from them and shifts in one row, so a step costs
``O(layers x kernel x C^2)`` whatever the receptive field, and its outputs equal the
full-sequence convolution (``tests/test_neural.py``).
"""

from __future__ import annotations

import numpy as np

from ..checks import Range
from ..errors import EdgeseqError
from .base import Optional
from .neural import TRAIN_PARAMS, NeuralSequenceModel


class TCNModel(NeuralSequenceModel):
    """Causal TCN window model. ``size="small"``: 6 blocks of 24 channels, kernel 3; ``"full"``:
    8 blocks of 64 channels, kernel 3 (receptive field 511)."""

    _NAME, KIND = "TCN", "tcn"
    PARAMS = {"channels": Optional(Range(1, 4096, integer=True)), "blocks": Optional(Range(1, 32, integer=True)),
              "kernel": Optional(Range(1, 64, integer=True)), **TRAIN_PARAMS}
    PRESETS = {"small": {"channels": 24, "blocks": 6, "kernel": 3, "head": 32, "epochs": 12},
               "full": {"channels": 64, "blocks": 8, "kernel": 3, "head": 128, "epochs": 30}}

    def __init__(self, channels: int | None = None, blocks: int | None = None, kernel: int | None = None, *,
                 objective: str = "classification", size: str = "small", head: int | None = None,
                 epochs: int | None = None, batch_size: int = 256, learning_rate: float = 3e-3,
                 weight_decay: float = 1e-4, class_weight: str | None = "balanced",
                 class_weight_power: float = 0.75, class_weight_cap: float | None = 10.0,
                 device: str = "cpu", amp: bool = True, seed: int = 0, threads: int | None = None):
        self.channels = channels
        self.blocks = blocks
        self.kernel = kernel
        self._init_train(objective, size, head, epochs, batch_size, learning_rate, weight_decay,
                         class_weight, class_weight_power, class_weight_cap, device, amp, seed, threads)

    # -- core ---------------------------------------------------------------------------------
    @property
    def n_blocks(self) -> int:
        return sum(1 for k in vars(self) if k.startswith("tcn_W") and k.endswith("_"))

    @property
    def hidden_size(self) -> int:
        return int(self.tcn_W0_.shape[0])

    @property
    def kernel_size(self) -> int:
        return int(self.tcn_W0_.shape[2])

    @property
    def has_projection(self) -> bool:
        return "tcn_P_" in vars(self)

    def dilation(self, l: int) -> int:
        return 2 ** l

    def receptive_field(self) -> int:
        return 1 + (self.kernel_size - 1) * (2 ** self.n_blocks - 1)

    def core_array_names(self):
        if "tcn_W0_" not in vars(self):
            return []
        names = [f"tcn_{p}{l}" for l in range(self.n_blocks) for p in ("W", "b")]
        return names + (["tcn_P", "tcn_pb"] if self.has_projection else [])

    def _load_core(self, arrays):
        L = 0
        while f"tcn_W{L}" in arrays:
            setattr(self, f"tcn_W{L}_", np.asarray(arrays[f"tcn_W{L}"], np.float32))
            L += 1
        if L == 0:
            raise EdgeseqError("TCN bundle has no block weights (tcn_W0 ...)")
        if "tcn_P" in arrays:
            self.tcn_P_ = np.asarray(arrays["tcn_P"], np.float32)

    def _check_shapes(self):
        C, K, prev = self.hidden_size, self.kernel_size, len(self.in_scale_)
        for l in range(self.n_blocks):
            W, b = getattr(self, f"tcn_W{l}_"), getattr(self, f"tcn_b{l}_")
            if W.shape != (C, prev, K) or b.shape != (C,):
                raise EdgeseqError(f"TCN bundle block {l} has inconsistent shapes: W {W.shape}, b {b.shape} "
                                   f"for {C} channels, {prev} inputs, kernel {K}")
            prev = C
        D = len(self.in_scale_)
        if (D != C) != self.has_projection or (self.has_projection and self.tcn_P_.shape != (C, D)):
            raise EdgeseqError(f"TCN bundle: the input projection does not fit {D} inputs and {C} channels")
        super()._check_shapes()

    def description(self, T: int, F: int, form: str = "window"):
        """:func:`describe`: the graph every export lowers and the numpy interpreter runs."""
        return describe(self, T, F, form)

    def architecture(self) -> dict:
        return {**super().architecture(), "blocks": self.n_blocks, "kernel": self.kernel_size,
                "dilations": [self.dilation(l) for l in range(self.n_blocks)],
                "projection": self.has_projection, "receptive_field": self.receptive_field()}


# -- the description: what every export lowers (edgeseq/graph) ------------------------------------

def bits(L: int) -> dict:
    """Activation widths of the int8 export, by measurement on the 50,977 DS1 beats (DS1 ``small``
    bundle): every block's ReLU branch, residual stream and projection, the input, the last output
    and the head's hidden layer int16; the mean and the side features int8. With the ReLU branches
    of the outer blocks and the projection at int8, F +P moved 1.03 points (28 labels); int16: 0.71
    (10 labels); the residual stream, input, last output or hidden layer alone at int8 moved 9 to
    40 labels more."""
    return {"x": 16, "res0": 16, "last": 16, "mean": 8, "z": 8, "hid": 16,
            **{f"{k}{l}": 16 for l in range(L) for k in "rh"}}


def describe(est: TCNModel, T: int, F: int, form: str = "window"):
    """The TCN as a :class:`~edgeseq.graph.Graph`: ``window`` ``(window, rr) -> logits`` (causal
    dilated convolutions), or one ``step`` ``(u, rr, buf0 .., acc) -> (logits, <state>_out)``:
    ``buf{l}`` holds block l's last ``(K-1) 2**l`` inputs, oldest first, and shifts by one row a
    step (a copy of a few kB; the taps are fixed slices, so no position counter)."""
    from ..graph import Graph
    from .neural import describe_head, describe_input

    g = Graph(f"tcn_{form}")
    L, K, C, D = est.n_blocks, est.kernel_size, est.hidden_size, len(est.in_scale_)
    B = bits(L)
    x_f, rr = describe_input(g, est, T, F, form)
    h = g.q(x_f, B["x"], name="x")
    step = form == "step"
    if step:
        acc = g.input("acc", C)
    for l in range(L):
        W, d, cin = getattr(est, f"tcn_W{l}_"), est.dilation(l), C if l else D
        bias = g.const(f"b{l}", getattr(est, f"tcn_b{l}_"))
        if step:  # taps j d steps back, j = 0..K-1, against W[:, :, K-1-j]
            n, buf = (K - 1) * d, g.input(f"buf{l}", (K - 1) * d, cin)
            taps = [h] + [g.reshape(g.slice(buf, n - j * d, 1), cin) for j in range(1, K)]
            Wt = g.const(f"Wt{l}", np.concatenate([W[:, :, K - 1 - j].T for j in range(K)]), weight_axis=1)
            y = g.fc(g.concat(taps), Wt, bias)
            if n > 1:
                g.concat([g.slice(buf, 1, n - 1), g.reshape(h, 1, cin)], axis=1, name=f"buf{l}_out")
            else:
                g.reshape(h, 1, cin, name=f"buf{l}_out")
        else:
            y = g.conv(h, g.const(f"W{l}", W, weight_axis=0), bias, d)
        r = g.q(g.unary("relu", y), B[f"r{l}"], name=f"r{l}")
        res = h
        if l == 0 and est.has_projection:
            res = g.q(g.fc(h, g.const("PT", est.tcn_P_.T, weight_axis=1), g.const("pb", est.tcn_pb_)), B["res0"],
                      name="res0")
        h = g.q(g.add(r, res), B[f"h{l}"], name=f"h{l}")
    if step:
        mean = g.mul(g.add(acc, h, name="acc_out"), g.const("invT", 1.0 / T), name="mean_f")
        describe_head(g, est, h, mean, rr, B)
        g.output("logits", *[f"buf{l}_out" for l in range(L)], "acc_out")
    else:
        describe_head(g, est, g.take(h, T - 1), g.mean(h, name="mean_f"), rr, B)
        g.output("logits")
    return g
