"""A small temporal convolutional network (numpy inference, PyTorch training).

Block ``l`` (dilation ``d = 2**l``, kernel ``K``) is a causal dilated convolution with a residual::

    y_t  = sum_k tcn_W{l}[:, :, k] @ x_{t - (K-1-k) d} + tcn_b{l}      x_{<0} = 0 (left zero padding)
    h_t  = relu(y_t) + (tcn_P @ x_t + tcn_pb  if l == 0 and the widths differ,  else x_t)

``tcn_W{l}`` is ``(C, C_in, K)``, PyTorch's ``Conv1d`` layout. The receptive field is
``1 + (K-1)(2**L - 1)`` steps; the ``small`` preset (6 blocks, K=3) sees 127 >= the 126-step
beat window.

The streaming form (:class:`TCNStream`) keeps, per block, a ring buffer of the last ``(K-1) d``
inputs of that block: a step reads ``K-1`` taps from it and writes one row, so a step costs
``O(layers x kernel x C^2)`` whatever the receptive field, and its outputs equal the
full-sequence convolution (``tests/test_neural.py``).
"""

from __future__ import annotations

import numpy as np

from ..checks import Range
from ..errors import EdgeseqError
from .base import Optional
from .neural import TRAIN_HYPER, TRAIN_PARAMS, NeuralSequenceModel, relu


class TCNModel(NeuralSequenceModel):
    """Causal TCN window model. ``size="small"``: 6 blocks of 24 channels, kernel 3; ``"full"``:
    8 blocks of 64 channels, kernel 3 (receptive field 511)."""

    _NAME, KIND = "TCN", "tcn"
    _HYPER = ("channels", "blocks", "kernel") + TRAIN_HYPER
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
        return hasattr(self, "tcn_P_")

    def dilation(self, l: int) -> int:
        return 2 ** l

    def receptive_field(self) -> int:
        return 1 + (self.kernel_size - 1) * (2 ** self.n_blocks - 1)

    def core_array_names(self):
        if not hasattr(self, "tcn_W0_"):
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

    def block(self, l: int, x: np.ndarray) -> np.ndarray:
        """Block ``l`` over a whole sequence ``x`` ``(B, T, C_in)``."""
        W, b = getattr(self, f"tcn_W{l}_"), getattr(self, f"tcn_b{l}_")
        B, T, _ = x.shape
        K, d = W.shape[2], self.dilation(l)
        y = np.broadcast_to(b, (B, T, len(b))).copy()
        for k in range(K):
            shift = (K - 1 - k) * d
            if shift < T:
                y[:, shift:] += x[:, :T - shift] @ W[:, :, k].T
        return relu(y) + self._residual(l, x)

    def _residual(self, l, x):
        if l == 0 and self.has_projection:
            return x @ self.tcn_P_.T + self.tcn_pb_
        return x

    def sequence(self, x: np.ndarray) -> np.ndarray:
        h = x.astype(np.float32)
        for l in range(self.n_blocks):
            h = self.block(l, h)
        return h

    def stream(self, batch: int = 1) -> "TCNStream":
        self._check()
        return TCNStream(self, batch)

    def architecture(self) -> dict:
        return {**super().architecture(), "blocks": self.n_blocks, "kernel": self.kernel_size,
                "dilations": [self.dilation(l) for l in range(self.n_blocks)],
                "projection": self.has_projection, "receptive_field": self.receptive_field()}


class TCNStream:
    """The step form. Block ``l``'s ring ``buf{l}`` ``(B, (K-1) d, C_in)`` holds its last
    ``(K-1) d`` inputs; row ``t mod len`` is the oldest, so the tap ``j`` steps of ``d`` back
    is row ``(t - j d) mod len``. ``push(u_t)`` returns the top block's ``h_t``."""

    def __init__(self, model: TCNModel, batch: int = 1):
        self.m = model
        self.batch = batch
        self.reset()

    def reset(self):
        m = self.m
        self.t = 0
        self.state = {}
        prev = len(m.in_scale_)
        for l in range(m.n_blocks):
            self.state[f"buf{l}"] = np.zeros((self.batch, (m.kernel_size - 1) * m.dilation(l), prev), np.float32)
            prev = m.hidden_size

    def push(self, u) -> np.ndarray:
        m = self.m
        x = np.asarray(u, np.float32).reshape(self.batch, -1) * m.in_scale_
        K = m.kernel_size
        for l in range(m.n_blocks):
            W, b = getattr(m, f"tcn_W{l}_"), getattr(m, f"tcn_b{l}_")
            d = m.dilation(l)
            buf = self.state[f"buf{l}"]
            n = buf.shape[1]
            y = x @ W[:, :, K - 1].T + b
            for j in range(1, K):  # tap j * d steps back
                y += buf[:, (self.t - j * d) % n] @ W[:, :, K - 1 - j].T
            buf[:, self.t % n] = x
            x = relu(y) + m._residual(l, x)
        self.t += 1
        return x


# -- the description: what every export lowers (edgeseq/graph) ------------------------------------

def bits(L: int) -> dict:
    """Activation widths of the int8 export, by measurement on the 50,977 DS1 beats (DS1 ``small``
    bundle): the residual stream ``h{l}`` (every block's input, summed over all blocks), the input,
    the last output and the head's hidden layer int16 (each alone at int8 moved 9 to 40 labels
    more); the ReLU branches int8 but for the middle blocks 3 .. L-2, whose int8 pushed beats into
    the 8-beat Q class; the projection, mean and side features int8."""
    out = {"x": 16, "res0": 8, "last": 16, "mean": 8, "z": 8, "hid": 16}
    for l in range(L):
        out.update({f"r{l}": 16 if 3 <= l < L - 1 else 8, f"h{l}": 16})
    return out


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
