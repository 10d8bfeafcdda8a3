"""What the trained sequence models (LSTM, TCN) share: input scaling, side features, pooling, head,
bundle arrays, and inference through the family's description.

Both families map a window ``u`` (``(B, T)`` or ``(B, T, D)``) and optional per-window side
features ``s`` (``(B, F)``: the beat's RR features for ECG, none for balance) to outputs::

    x_t  = u_t * in_scale                                   (D,) scale learned from the data
    h_t  = core(x_0 .. x_t)                                 (H,) LSTM or causal TCN: h_t never sees the future
    z    = clip((s - side_center) * side_scale, -4, 4)      robust standardisation; bounded for int8
    f    = [h_{T-1}, mean_t h_t, z]
    out  = relu(f @ W1 + b1) @ W2 + b2                      logits (classification) or scores (regression)

``last`` and ``mean`` are what a device accumulates step by step, so the step form (the
description's ``step`` graph: the core fed one sample at a time with explicit state, the head
after the window's last sample) equals the window form.

Inference is the description (``describe`` in ``lstm.py``/``tcn.py``, the head here) on the numpy
interpreter; ``fit`` trains in PyTorch (``edgeseq.models.torch_fit``, host only). The estimator
contract of :class:`~edgeseq.models.base.Estimator` holds: hyper-parameters in ``__init__``
(``None`` takes the ``size`` preset), ``fit`` returns self, learned attributes end in ``_``.
"""

from __future__ import annotations

import numpy as np

from ..checks import SEED, Range
from ..errors import EdgeseqError
from ..finite import require_finite
from .base import Estimator, Optional, balanced_class_weights, check_fitted, run_description

SIDE_CLIP = 4.0
OBJECTIVES = ("classification", "regression")


#: Ranges of the training hyper-parameters every neural family takes (``None``: the ``size``
#: preset's value); each family's ``__init__`` takes these after its core's own.
TRAIN_PARAMS = {
    "objective": OBJECTIVES, "size": ("small", "full"), "head": Optional(Range(1, 4096, integer=True)),
    "epochs": Optional(Range(1, 100_000, integer=True)), "batch_size": Range(1, 1_000_000, integer=True),
    "learning_rate": Range(0, 10, lo_open=True), "weight_decay": Range(0, 10),
    "class_weight": ("balanced", None), "class_weight_power": Range(0, 10),
    "class_weight_cap": Optional(Range(0, 1e6, lo_open=True)), "device": ("cpu", "cuda", "auto"),
    "amp": (True, False), "seed": SEED, "threads": Optional(Range(1, 256, integer=True)),
}


class NeuralSequenceModel(Estimator):
    """Base of :class:`~edgeseq.models.lstm.LSTMModel` and :class:`~edgeseq.models.tcn.TCNModel`.

    Subclasses define ``PRESETS`` (per ``size``), ``core_array_names``, ``_load_core`` and
    ``description(T, F, form)`` (their module's ``describe``).
    """

    PRESETS: dict = {}
    KIND = ""

    # -- hyper-parameters ----------------------------------------------------------------------
    def _init_train(self, objective, size, head, epochs, batch_size, learning_rate, weight_decay,
                    class_weight, class_weight_power, class_weight_cap, device, amp, seed, threads):
        self.objective = objective
        self.size = size
        self.head = head
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.class_weight = class_weight
        self.class_weight_power = class_weight_power
        self.class_weight_cap = class_weight_cap
        self.device = device
        self.amp = amp
        self.seed = seed
        self.threads = threads

    def resolved(self) -> dict:
        """Hyper-parameters with ``None`` replaced by the ``size`` preset."""
        if self.size not in self.PRESETS:
            raise EdgeseqError(f"{self._NAME} size must be one of {', '.join(self.PRESETS)}, not {self.size!r}")
        if self.objective not in OBJECTIVES:
            raise EdgeseqError(f"objective must be 'classification' or 'regression', not {self.objective!r}")
        preset = self.PRESETS[self.size]
        return {k: (preset[k] if v is None and k in preset else v) for k, v in self.get_params().items()}

    # -- training (host): torch --------------------------------------------------------------
    def fit(self, X, y, side=None, *, n_classes: int | None = None, progress=None):
        """Train on windows ``X`` ``(B, T[, D])``, targets ``y`` (class indices, or scores for
        ``objective="regression"``) and side features ``(B, F)`` or None. ``progress(epoch,
        epochs, note)`` is called after every epoch."""
        from .torch_fit import fit_model

        if y is None:
            raise EdgeseqError(f"{self._NAME}.fit needs targets y")
        windows = require_finite(self._as3d(X), "training windows")
        side = None if side is None else require_finite(np.asarray(side, np.float32), "training side features")
        y = require_finite(np.asarray(y), "training targets")
        fit_model(self, windows, side, y, n_classes, progress)
        for name, a in self.to_arrays().items():  # a diverged fit must not become a bundle
            require_finite(a, f"{self._NAME} weights {name} after training (lower learning_rate)")
        return self

    def class_weights(self, counts: np.ndarray) -> np.ndarray:
        return balanced_class_weights(counts, self.class_weight, self.class_weight_power, self.class_weight_cap)

    # -- inference: the description ----------------------------------------------------------
    @staticmethod
    def _as3d(windows) -> np.ndarray:
        w = np.asarray(windows, dtype=np.float32)
        if w.ndim == 2:
            w = w[:, :, None]
        if w.ndim != 3:
            raise EdgeseqError(f"windows must have shape (B, T) or (B, T, D), got {w.shape}")
        return w

    def _check(self):
        check_fitted(self, "head_W2_")

    def _side(self, side, n: int) -> np.ndarray:
        """The side features ``(n, F)`` as given, checked: F as fitted, finite."""
        F = len(self.side_center_)
        if F == 0:
            return np.zeros((n, 0), np.float32)
        if side is None:
            raise EdgeseqError(f"this {self._NAME} reads {F} side features per window (the beats' rr): pass them")
        s = np.asarray(side, dtype=np.float32)
        if s.ndim != 2 or s.shape[1] != F:
            raise EdgeseqError(f"side features must be (B, {F}), got {s.shape}")
        if len(s) != n:
            raise EdgeseqError(f"got {len(s)} rows of side features for {n} windows")
        if not np.isfinite(s).all():
            bad = np.argwhere(~np.isfinite(s))[0]
            raise EdgeseqError(f"side feature {bad[1]} of window {bad[0]} is not finite")
        return s

    def description(self, T: int, F: int, form: str = "window"):
        raise NotImplementedError

    def decision_function(self, X, side=None) -> np.ndarray:
        """Outputs ``(B, outputs)``: the description's window graph on the numpy interpreter."""
        self._check()
        w = self._as3d(X)
        D = len(self.in_scale_)
        if w.shape[2] != D:
            raise EdgeseqError(f"this {self._NAME} takes {D} input channels, got {w.shape[2]}")
        if not np.isfinite(w).all():
            raise EdgeseqError(f"window {np.argwhere(~np.isfinite(w))[0][0]} contains NaN or inf")
        s = self._side(side, len(w))
        feeds = {"window": w[:, :, 0] if D == 1 else w}
        if s.shape[1]:
            feeds["rr"] = s
        return run_description(self.description(w.shape[1], s.shape[1]), feeds, "logits", 4096)

    # -- bundle I/O ---------------------------------------------------------------------------
    COMMON_ARRAYS = ("in_scale", "side_center", "side_scale", "head_W1", "head_b1", "head_W2", "head_b2")

    def to_arrays(self) -> dict[str, np.ndarray]:
        self._check()
        names = self.COMMON_ARRAYS + tuple(self.core_array_names())
        return {k: np.ascontiguousarray(getattr(self, k + "_"), dtype=np.float32) for k in names}

    @classmethod
    def from_arrays(cls, params: dict, arrays: dict) -> "NeuralSequenceModel":
        known = cls.hyper_parameters()
        model = cls().set_params(**{k: v for k, v in params.items() if k in known})
        missing = [k for k in cls.COMMON_ARRAYS if k not in arrays]
        if missing:
            raise EdgeseqError(f"{cls._NAME} bundle lacks weight arrays: {', '.join(missing)}")
        for k in cls.COMMON_ARRAYS:
            setattr(model, k + "_", np.asarray(arrays[k], np.float32))
        model._load_core(arrays)
        missing = [k for k in model.core_array_names() if k not in arrays]
        if missing:
            raise EdgeseqError(f"{cls._NAME} bundle lacks weight arrays: {', '.join(missing)}")
        for k in model.core_array_names():
            setattr(model, k + "_", np.asarray(arrays[k], np.float32))
        model._check_shapes()
        if model.objective == "classification":
            model.classes_ = np.arange(model.head_W2_.shape[1])
        return model

    def _check_shapes(self):
        H, F = self.hidden_size, len(self.side_center_)
        if self.head_W1_.shape[0] != 2 * H + F or self.side_scale_.shape != (F,):
            raise EdgeseqError(f"{self._NAME} bundle weights have inconsistent shapes: head_W1 "
                               f"{self.head_W1_.shape} for hidden size {H} and {F} side features")

    def architecture(self) -> dict:
        """What an exporter needs beside the arrays (shapes say the rest)."""
        self._check()
        return {"kind": self.KIND, "inputs": int(len(self.in_scale_)), "side": int(len(self.side_center_)),
                "hidden": int(self.hidden_size), "head": int(self.head_W1_.shape[1]),
                "outputs": int(self.head_W2_.shape[1]), "objective": self.objective,
                "n_params": int(self.n_params())}

    def n_params(self) -> int:
        return int(sum(getattr(self, k + "_").size for k in self.core_array_names())
                   + sum(getattr(self, k).size for k in ("head_W1_", "head_b1_", "head_W2_", "head_b2_")))


# -- the description: what every export lowers (edgeseq/graph) ------------------------------------

def describe_input(g, est, T: int, F: int, form: str):
    """The inputs of a window or step graph: ``(x, rr)`` with ``x`` already ``* in_scale``:
    ``[B, T, D]`` for a window (``window`` is ``[B, T]`` for one channel), ``[B, D]`` for a step."""
    D = len(est.in_scale_)
    scale = g.const("in_scale", est.in_scale_)
    if form == "window":
        w = g.input("window", T) if D == 1 else g.input("window", T, D)
        x = g.mul(g.reshape(w, T, D), scale, name="x_f")
    else:
        x = g.mul(g.input("u", D), scale, name="x_f")
    return x, (g.input("rr", F) if F else None)


def describe_head(g, est, last: str, mean: str, rr, bits: dict) -> str:
    """``logits = relu([last, mean, z] @ W1 + b1) @ W2 + b2``, each input of a product at the
    width ``bits`` gives it (the family's measured plan; ``z`` is clipped, so its range is fixed)."""
    feats = [g.q(last, bits["last"], name="last"), g.q(mean, bits["mean"], name="mean")]
    if rr is not None:
        z = g.clip(g.mul(g.sub(rr, g.const("side_center", est.side_center_)), g.const("side_scale", est.side_scale_)),
                   -SIDE_CLIP, SIDE_CLIP, name="z_f")
        feats.append(g.q(z, bits["z"], SIDE_CLIP / (2 ** (bits["z"] - 1) - 1), name="z"))
    hid = g.unary("relu", g.fc(g.concat(feats), g.const("head_W1", est.head_W1_, weight_axis=1),
                               g.const("head_b1", est.head_b1_)), name="hid_f")
    return g.fc(g.q(hid, bits["hid"], name="hid"), g.const("head_W2", est.head_W2_, weight_axis=1),
                g.const("head_b2", est.head_b2_), name="logits")
