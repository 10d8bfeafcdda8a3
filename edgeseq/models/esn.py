"""Echo-state network beat classifier.

The reservoir is reservoirpy's (its initialisers draw ``W``, ``Win`` and ``bias`` from the usual
hyper-parameters), but training states are computed here for a whole batch of beats at once: one
dense matrix product per time step for thousands of beats, instead of one reservoirpy ``run`` per
beat. Inference is the family's description (:func:`describe`, the graph every export lowers) on
the numpy interpreter: numpy only, the float reference on a device.

Update rule (reservoirpy 0.4's ``Reservoir``)::

    x[t] = (1 - lr) * x[t-1] + lr * tanh(W x[t-1] + Win u[t] + bias),    x[-1] = 0

Each beat window is its own sequence starting from a zero state. The input ``u[t]`` is the ECG
sample plus a few rhythm features of the beat held constant over the window (log record-normalised
RR intervals and rhythm irregularity): the reservoir then mixes rhythm and morphology nonlinearly,
which a linear readout of rhythm features cannot (a premature beat is ectopic in a regular rhythm,
not in atrial fibrillation). The readout sees the last state, the mean state and all per-beat
features, and is ridge regression on one-hot targets with tempered, capped class-balanced weights.
"""

from __future__ import annotations

import numpy as np

from ..checks import SEED, Range
from ..errors import EdgeseqError
from ..finite import require_finite
from .base import (Each, Estimator, Optional, balanced_class_weights, check_fitted, ridge_solve,
                   run_description)

#: ``--size full``: a reservoir that wants the CUDA path (torch) for its training states.
FULL_UNITS = 5000


#: Reservoir hyper-parameter ranges shared by the beat ESN and the window ESN. ``units`` starts at
#: 10 (reservoirpy's spectral-radius estimate needs a few) and stops at 20000: W alone is then
#: 3 GB in float64, and a bigger one ends in an out-of-memory kill rather than a message.
#: Connectivities are fractions > 0 (reservoirpy's initialisers cannot draw from none), ``lr`` a
#: leak in (0, 1], ``sr`` a spectral radius a reservoir can still be stable near.
RESERVOIR_PARAMS = {
    "units": Range(10, 20000, integer=True),
    "lr": Range(0, 1, lo_open=True),
    "sr": Range(0, 10, lo_open=True),
    "input_scaling": Each(Range(0, 100)),
    "rc_connectivity": Range(0, 1, lo_open=True),
    "input_connectivity": Range(0, 1, lo_open=True),
    "bias_scaling": Range(0, 100),
    "ridge": Range(0, 1e12, lo_open=True),  # 1e9 is a fair "shrink everything" point in a search
    "seed": SEED,
    "batch_size": Range(1, 1_000_000, integer=True),
}


def _rr_inputs(value):
    """``[[column, ref], ...]``: columns of RR_FEATURES, finite non-negative references."""
    if not isinstance(value, (list, tuple)):
        raise ValueError("must be a list of [column, ref] pairs")
    out = []
    for pair in value:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ValueError("must be a list of [column, ref] pairs")
        out.append([Range(0, 8, integer=True).parse(pair[0]), Range(0, 100).parse(pair[1])])
    return out


def reservoir_init(units: int, input_dim: int, *, lr: float, sr: float, input_scaling,
                   rc_connectivity: float, input_connectivity: float, bias_scaling: float,
                   seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw ``(W, Win, bias)`` with reservoirpy's own initialisers (host only).

    ``input_scaling`` is a float or one value per input column, as reservoirpy takes it.
    """
    from reservoirpy.mat_gen import bernoulli
    from reservoirpy.nodes import Reservoir

    if np.ndim(input_scaling):
        input_scaling = np.asarray(input_scaling, dtype=np.float64)
    bias = bernoulli(input_scaling=bias_scaling) if bias_scaling else 0.0
    res = Reservoir(units, lr=lr, sr=sr, input_scaling=input_scaling,
                    rc_connectivity=rc_connectivity, input_connectivity=input_connectivity,
                    bias=bias, seed=seed)
    try:
        res.initialize(np.zeros((1, input_dim)))
    except (ArithmeticError, ValueError, TypeError, RuntimeError) as exc:
        # In range one by one, but together too sparse for the spectral radius (no connection
        # drawn at all, or too few units for ARPACK): say which knobs, not scipy's internals.
        raise EdgeseqError(f"cannot draw a reservoir of {units} units with rc_connectivity={rc_connectivity:g}, "
                           f"input_connectivity={input_connectivity:g}: raise units or the connectivities "
                           f"({type(exc).__name__})") from None
    W = res.W.toarray() if hasattr(res.W, "toarray") else np.asarray(res.W)
    Win = res.Win.toarray() if hasattr(res.Win, "toarray") else np.asarray(res.Win)
    b = np.broadcast_to(np.asarray(res.bias.toarray() if hasattr(res.bias, "toarray") else res.bias,
                                   dtype=np.float64).reshape(-1), (units,)).copy()
    return W, Win, b


def batched_states(U: np.ndarray, W: np.ndarray, Win: np.ndarray, bias: np.ndarray, lr: float,
                   *, const: np.ndarray | None = None, dtype=np.float32, batch_size: int = 2048,
                   progress=None) -> tuple[np.ndarray, np.ndarray]:
    """Last and mean reservoir state of every sequence in ``U`` (shape ``(B, T)`` or ``(B, T, D)``).

    ``const`` (``(B, K)``) are inputs held constant over each sequence; they use the last ``K``
    columns of ``Win``. Input, constant inputs and bias ride in the same matrix product as the
    recurrence (``[x, u, c, 1] @ [W; Win; bias]``), so one ``(batch, N) @ (N, N)``-sized product
    and four elementwise passes are all the work of a step; batching bounds memory to a few
    ``(batch, N)`` arrays whatever ``B`` is. ``progress(done, total)`` is called per batch.

    The training path only (inference runs :func:`describe`): kept beside the description because
    running that is 1.15-1.5x slower on 5000 beats x 126 samples at N=300 (2-core host), and it
    cannot compute the ``dtype="float64"`` or multichannel states this path offers.
    """
    U = np.asarray(U)
    if U.ndim == 2:
        U = U[:, :, None]
    B, T, D = U.shape
    N = W.shape[0]
    K = 0 if const is None else np.shape(const)[1]
    if Win.shape != (N, D + K):
        raise ValueError(f"Win has shape {Win.shape}, expected {(N, D + K)} for {D} sequence and "
                         f"{K} constant inputs")
    WA = np.concatenate([np.asarray(W, np.float64).T, np.asarray(Win, np.float64).T,
                         np.asarray(bias, np.float64).reshape(1, N)]).astype(dtype)
    lr = np.dtype(dtype).type(lr)
    last = np.empty((B, N), dtype=dtype)
    mean = np.empty((B, N), dtype=dtype)
    for start in range(0, B, batch_size):
        u = np.ascontiguousarray(U[start:start + batch_size], dtype=dtype)
        n = u.shape[0]
        XA = np.zeros((n, N + D + K + 1), dtype=dtype)
        XA[:, N + D:N + D + K] = const[start:start + n] if K else 0
        XA[:, -1] = 1
        x = XA[:, :N]  # the state lives inside the product's left operand
        h = np.empty((n, N), dtype=dtype)
        acc = np.zeros((n, N), dtype=dtype)
        for t in range(T):
            XA[:, N:N + D] = u[:, t]
            np.matmul(XA, WA, out=h)
            np.tanh(h, out=h)
            h -= x
            h *= lr
            x += h
            acc += x
        last[start:start + n] = x
        mean[start:start + n] = acc / T
        if progress:
            progress(start + n, B)
    return last, mean


class ReservoirEstimator(Estimator):
    """What the two ESN estimators share: ``--size full`` means ``FULL_UNITS`` units, and their
    fit's progress is the reservoir states of the windows."""

    @classmethod
    def size_params(cls, size: str | None) -> dict:
        if size not in (None, "small", "full"):
            raise EdgeseqError(f"--size must be small or full, not {size!r}")
        return {"units": FULL_UNITS} if size == "full" else {}

    def fit_progress(self, label: str, n_windows: int, enabled: bool = True):
        from ..progress import Progress

        return Progress("reservoir states", n_windows, enabled=enabled)


class ESNClassifier(ReservoirEstimator):
    """Echo-state network for beat classification (the estimator contract of
    :class:`~edgeseq.models.base.Estimator`: ``X`` the beat windows ``(B, T)``, ``side`` their rr
    features ``(B, k)``).

    Hyper-parameters are the reservoirpy ``Reservoir`` ones (``units``, ``lr``, ``sr``,
    ``input_scaling`` -- a float or one value per input: the window's sample, then the
    ``rr_inputs`` --, ``rc_connectivity``, ``input_connectivity``, ``bias_scaling`` for a
    Bernoulli bias, ``seed``), plus:

    - ``rr_inputs``: ``[column, ref]`` pairs; each column of ``rr`` is fed to the reservoir as
      ``log((x + 0.01) / (ref + 0.01))`` (0 at a typical value; the 0.01 keeps a perfectly regular
      rhythm's zero irregularity finite). Defaults: the three record-normalised intervals and
      the irregularity of :data:`edgeseq.preprocess.ecg.RR_FEATURES`.
    - ``ridge``: readout regularisation on standardised features, per unit of sample weight, so
      the same value suits a few hundred beats and fifty thousand.
    - ``class_weight`` (``"balanced"`` or None), ``class_weight_power`` (tempering exponent on
      the balanced weights) and ``class_weight_cap`` (largest weight): full balancing lets a
      class of a few beats from one patient (MIT-BIH DS1 has 8 Q beats, 414 F beats mostly in one
      record) dominate the fit.
    - ``device``: ``"cpu"`` computes the training states in numpy; ``"cuda"`` (or ``"auto"`` with
      a GPU) in PyTorch on the GPU (:mod:`edgeseq.models.esn_torch`), for reservoirs of thousands
      of units. Inference is the description (:func:`describe`) on the numpy interpreter.

    Learned attributes end in ``_``.
    """

    _NAME = "ESN"
    SHARED_FEATURES = True  # the reservoir is label-free: cross-validation computes its states once
    classifies = True  # a beat classifier: no objective to choose
    PARAMS = {**RESERVOIR_PARAMS, "rr_inputs": _rr_inputs, "class_weight": ("balanced", None),
              "class_weight_power": Range(0, 10), "class_weight_cap": Optional(Range(0, 1e6, lo_open=True)),
              "dtype": ("float32", "float64"), "device": ("cpu", "cuda", "auto")}

    def __init__(self, units: int = 300, lr: float = 0.3, sr: float = 0.9,
                 input_scaling=(1.0, 0.5, 0.5, 0.5, 0.1), rc_connectivity: float = 0.1,
                 input_connectivity: float = 1.0, bias_scaling: float = 0.2,
                 rr_inputs=((3, 1.0), (4, 1.0), (5, 1.0), (6, 0.05)), ridge: float = 0.02,
                 class_weight: str | None = "balanced", class_weight_power: float = 0.75,
                 class_weight_cap: float | None = 10.0, seed: int = 0, dtype: str = "float32",
                 batch_size: int = 2048, device: str = "cpu"):
        self.units = units
        self.lr = lr
        self.sr = sr
        self.input_scaling = input_scaling
        self.rc_connectivity = rc_connectivity
        self.input_connectivity = input_connectivity
        self.bias_scaling = bias_scaling
        self.rr_inputs = rr_inputs
        self.ridge = ridge
        self.class_weight = class_weight
        self.class_weight_power = class_weight_power
        self.class_weight_cap = class_weight_cap
        self.seed = seed
        self.dtype = dtype
        self.batch_size = batch_size
        self.device = device

    # -- the reservoir: unsupervised, so cross-validation can share its states ---------------
    def init_reservoir(self, input_dim: int = 1) -> "ESNClassifier":
        """Draw the reservoir for windows of ``input_dim`` channels (plus the ``rr_inputs``)."""
        cols, ref = self._rr_spec()
        n_in = input_dim + len(cols)
        scaling = self.input_scaling
        if np.ndim(scaling) and len(scaling) != n_in:
            raise EdgeseqError(f"ESN input_scaling has {len(scaling)} values but the reservoir has "
                               f"{n_in} inputs ({input_dim} window channels + {len(cols)} rr_inputs)")
        self.W_, self.Win_, self.bias_ = reservoir_init(
            self.units, n_in, lr=self.lr, sr=self.sr, input_scaling=scaling,
            rc_connectivity=self.rc_connectivity, input_connectivity=self.input_connectivity,
            bias_scaling=self.bias_scaling, seed=self.seed)
        return self

    def reservoir_features(self, X: np.ndarray, side: np.ndarray | None = None, progress=None) -> np.ndarray:
        """``[last state, mean state]`` per beat, ``(B, 2 * units)``: the training path
        (:func:`batched_states`, or its CUDA twin). ``side`` (the beats' rr) is required when the
        reservoir takes ``rr_inputs`` (the default). ``X`` may have channels ``(B, T, D)`` (design
        questions, ``tools/bench/ecg_designs.py``); ``fit`` and inference take one."""
        check_fitted(self, "W_")
        windows = np.asarray(X)
        const = self.reservoir_rr(side)
        if const is not None and len(const) != len(windows):
            raise EdgeseqError(f"got {len(const)} rows of RR features for {len(windows)} beat windows")
        last, mean = None, None
        if self.device not in (None, "cpu"):  # host only: torch on a GPU for big reservoirs
            from .torch_fit import resolve_device

            dev, _ = resolve_device(self.device)
            if dev.type == "cuda":
                from .esn_torch import batched_states_torch

                last, mean = batched_states_torch(windows, self.W_, self.Win_, self.bias_, self.lr, const=const,
                                                  device=dev, progress=progress)
        if last is None:
            last, mean = batched_states(windows, self.W_, self.Win_, self.bias_, self.lr, const=const,
                                        dtype=np.dtype(self.dtype).type, batch_size=self.batch_size,
                                        progress=progress)
        return np.concatenate([last, mean], axis=1)

    def shared_features(self, X: np.ndarray, side: np.ndarray | None = None, progress=None) -> np.ndarray:
        """Draw the reservoir for ``X``'s channels and return :meth:`reservoir_features`: what
        every fold of a cross-validation shares."""
        X = np.asarray(X)
        return self.init_reservoir(1 if X.ndim == 2 else X.shape[2]).reservoir_features(X, side, progress)

    # -- readout ------------------------------------------------------------------------------
    def fit_readout(self, features: np.ndarray, y: np.ndarray, side: np.ndarray | None = None, *,
                    n_classes: int | None = None) -> "ESNClassifier":
        """Ridge readout on precomputed reservoir features plus the per-beat features ``side``."""
        y = np.asarray(y, dtype=np.int64)
        n_classes = int(n_classes if n_classes is not None else y.max() + 1)
        require_finite(features, "ESN reservoir states (lower sr or input_scaling, or check the data)")
        X = require_finite(self._design(features, side).astype(np.float64), "ESN readout inputs")
        with np.errstate(all="ignore"):  # an overflow is refused just below, not warned about on stderr
            mu = X.mean(axis=0)
            sd = X.std(axis=0)
            sd[sd < 1e-8] = 1.0
            Z = (X - mu) / sd
        require_finite(Z, "standardised ESN readout inputs (values too large; check the data)")
        counts = np.bincount(y, minlength=n_classes).astype(np.float64)
        w = self._class_weights(counts)[y]
        Y = np.full((len(y), n_classes), -1.0)
        Y[np.arange(len(y)), y] = 1.0
        Zb = np.concatenate([Z, np.ones((len(Z), 1))], axis=1)
        beta = ridge_solve(Zb, Y, self.ridge, w)
        # Fold the standardisation into the weights so inference is one affine map.
        coef = beta[:-1] / sd[:, None]
        # Checked before it is kept: a NaN readout would otherwise "train" and label every beat N.
        self.Wout_ = require_finite(coef, "fitted ESN readout weights (check the data and ridge)")
        self.bout_ = require_finite(beta[-1] - mu @ coef, "fitted ESN readout bias")
        self.classes_ = np.arange(n_classes)
        self.class_counts_ = counts.astype(np.int64)
        return self

    def fit(self, X: np.ndarray, y: np.ndarray, side: np.ndarray | None = None, *, n_classes: int | None = None,
            progress=None) -> "ESNClassifier":
        X = self._windows(require_finite(X, "training beat windows"))
        if side is not None:
            require_finite(side, "training RR features")
        return self.fit_readout(self.shared_features(X, side, progress), y, side, n_classes=n_classes)

    def decision_function_from_features(self, features: np.ndarray, side: np.ndarray | None = None) -> np.ndarray:
        """The readout on :meth:`reservoir_features` (cross-validation's folds)."""
        check_fitted(self, "Wout_")
        X = self._design(features, side)
        if X.shape[1] != self.Wout_.shape[0]:
            raise EdgeseqError(f"this ESN's readout takes {self.Wout_.shape[0]} features, got "
                               f"{features.shape[1]} reservoir + {X.shape[1] - features.shape[1]} per-beat")
        return X.astype(np.float64) @ self.Wout_ + self.bout_

    # -- inference: the description ----------------------------------------------------------
    def description(self, T: int, F: int, form: str = "window"):
        """:func:`describe`: the graph every export lowers."""
        return describe(self, T, F, form)

    def decision_function(self, X: np.ndarray, side: np.ndarray | None = None) -> np.ndarray:
        """Logits ``(B, classes)``: the description run on the numpy interpreter."""
        check_fitted(self, "W_", "Wout_")
        X = np.asarray(self._windows(X), np.float32)
        side = self._side(side, len(X))
        return run_description(self.description(X.shape[1], side.shape[1]), {"window": X, "rr": side}, "logits",
                               self.batch_size)

    # -- bundle I/O ---------------------------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        check_fitted(self, "W_", "Wout_")
        return {"W": self.W_.astype(np.float32), "Win": self.Win_.astype(np.float32),
                "bias": self.bias_.astype(np.float32), "Wout": self.Wout_.astype(np.float32),
                "bout": self.bout_.astype(np.float32)}

    @classmethod
    def from_arrays(cls, params: dict, arrays: dict[str, np.ndarray]) -> "ESNClassifier":
        unknown = set(params) - set(cls.hyper_parameters())
        if unknown:
            raise EdgeseqError(f"unknown ESN hyper-parameters in bundle: {', '.join(sorted(unknown))}")
        missing = [k for k in ("W", "Win", "bias", "Wout", "bout") if k not in arrays]
        if missing:
            raise EdgeseqError(f"ESN bundle lacks weight arrays: {', '.join(missing)}")
        model = cls(**params)
        model.device = "cpu"  # how it was trained is in the manifest; a loaded model runs numpy (the device path)
        model.W_, model.Win_, model.bias_ = arrays["W"], arrays["Win"], arrays["bias"]
        model.Wout_, model.bout_ = arrays["Wout"], arrays["bout"]
        units = model.W_.shape[0]
        if (model.W_.shape != (units, units) or model.Win_.shape[0] != units
                or model.Win_.shape[1] <= len(model._rr_spec()[0]) or model.bias_.shape != (units,)):
            raise EdgeseqError(f"ESN bundle weights have inconsistent shapes: W {model.W_.shape}, "
                               f"Win {model.Win_.shape}, bias {model.bias_.shape}")
        model.classes_ = np.arange(model.Wout_.shape[1])
        return model

    # -- helpers ------------------------------------------------------------------------------
    @staticmethod
    def _windows(X) -> np.ndarray:
        """Beat windows ``(B, T)``; ``(B, T, 1)`` is taken too. The description has one channel."""
        X = np.asarray(X)
        if X.ndim == 3 and X.shape[2] == 1:
            X = X[:, :, 0]
        if X.ndim != 2:
            raise EdgeseqError(f"ESN beat windows must have shape (B, T): one channel, got {X.shape}")
        return X

    def _side(self, side, n: int) -> np.ndarray:
        """The beats' rr features ``(n, F)`` float32, F as the readout was fitted."""
        F = self.Wout_.shape[0] - 2 * self.W_.shape[0]
        if side is None:
            if F:
                raise EdgeseqError(f"this ESN reads {F} RR features per beat (side): pass the beats' rr")
            return np.zeros((n, 0), np.float32)
        side = np.asarray(side, np.float32)
        if side.shape != (n, F):
            raise EdgeseqError(f"RR features must be (beats, {F}) with one row per beat; got {side.shape} "
                               f"for {n} beats")
        return side

    def _rr_spec(self) -> tuple[np.ndarray, np.ndarray]:
        spec = np.asarray(self.rr_inputs if self.rr_inputs is not None and len(self.rr_inputs)
                          else np.zeros((0, 2)), dtype=np.float64)
        if spec.ndim != 2 or spec.shape[1] != 2 or np.any(spec[:, 0] < 0) or np.any(spec[:, 0] % 1):
            raise EdgeseqError(f"ESN rr_inputs must be [column, ref] pairs, got {self.rr_inputs!r}")
        return spec[:, 0].astype(np.int64), spec[:, 1]

    def reservoir_rr(self, rr) -> np.ndarray | None:
        """The reservoir's constant inputs ``(B, len(rr_inputs))`` from the beats' ``rr``, or None
        when it takes none: what ``batched_states(..., const=)`` needs (the description states the
        same map for inference)."""
        cols, ref = self._rr_spec()
        if not len(cols):
            return None
        if rr is None:
            raise EdgeseqError("this ESN feeds RR features into its reservoir (rr_inputs): pass the "
                               "beats' rr as side")
        rr = np.asarray(rr, dtype=np.float64)
        if rr.ndim != 2 or rr.shape[1] <= cols.max():
            raise EdgeseqError(f"RR features must be (beats, k > {cols.max()}), got {rr.shape}")
        # Physiological values sit well inside +-3; the clip keeps a corrupt one from pinning
        # every unit of the reservoir.
        return np.clip(np.log(np.maximum(rr[:, cols] + 0.01, 1e-6) / (ref + 0.01)), -3.0, 3.0)

    def _class_weights(self, counts: np.ndarray) -> np.ndarray:
        return balanced_class_weights(counts, self.class_weight, self.class_weight_power, self.class_weight_cap)

    def _design(self, features: np.ndarray, rr) -> np.ndarray:
        if rr is None:
            raise EdgeseqError("the ESN readout reads the beats' RR features: pass them as side")
        rr = np.asarray(rr, dtype=features.dtype)
        if rr.ndim != 2 or len(rr) != len(features):
            raise EdgeseqError(f"RR features must be (beats, k) with one row per beat; got {rr.shape} "
                               f"for {len(features)} beats")
        return np.concatenate([features, rr], axis=1)


# -- the description: what every export lowers (edgeseq/graph) ------------------------------------

#: |x| < 1 always (x' = (1 - lr) x + lr tanh(.), 0 < lr <= 1, x starts at 0), and so are last and
#: mean: one fixed int16 scale covers the state without calibration and never clips.
STATE_SCALE = 1.0 / 32767


def describe(est: ESNClassifier, T: int, F: int, form: str = "window"):
    """The ESN beat classifier as a :class:`~edgeseq.graph.Graph`: ``window`` ``(window [B, T],
    rr [B, F]) -> logits``, or one ``step`` ``(u [B, 1], rr, x, acc) -> (logits, x_out, acc_out)``
    whose logits after T steps from zero equal the window's.

    Precision (measured on all DS1 beats, N=300): recurrent and input weights int8 per channel, the
    state int16 at ``STATE_SCALE`` before the recurrent product; last and mean int16; the readout
    float (an int8 one moved S +P by 2.2 points: 600 weights ~1 summed) and so are the rr inputs
    (raw seconds, unbounded: an int16 scale clipped a beat after a 100 s gap)."""
    from ..graph import Graph

    cols, ref = est._rr_spec()
    Win = np.asarray(est.Win_, np.float32)
    N = Win.shape[0]
    g = Graph(f"esn_{form}")
    if form == "window":
        window = g.input("window", T)
    else:
        u = g.input("u", 1)
    rr = g.input("rr", F)
    # the reservoir's constant inputs, as reservoir_rr: log((rr + 0.01) / (ref + 0.01)) clipped
    r = g.add(g.gather(rr, cols.tolist()), g.const("rr_eps", 0.01))
    r = g.mul(g.binary("max", r, g.const("rr_floor", 1e-6)), g.const("rr_inv", 1.0 / (ref + 0.01)))
    const = g.q(g.clip(g.unary("log", r), -3.0, 3.0, name="const_f"), 16, 3.0 / 32767, name="const")
    cdrive = g.fc(const, g.const("WinC", Win[:, 1:].T, weight_axis=1), g.const("bias", est.bias_), name="cdrive")
    win_u = g.const("win_u", Win[:, 0], weight_axis=0)
    WT = g.const("WT", np.asarray(est.W_, np.float32).T, weight_axis=1)
    lr = g.const("lr", np.float32(est.lr))

    def cell(b, u, cd, x, acc):
        d = b.add(b.mul(u, win_u), cd, name="d")
        pre = b.add(b.fc(b.q(x, 16, STATE_SCALE, name="xq"), WT), d, name="pre")
        xn = b.add(x, b.mul(b.sub(b.unary("tanh", pre), x), lr), name="x_out" if b is g else None)
        return {"x": xn, "acc": b.add(acc, xn, name="acc_out" if b is g else None)}

    if form == "window":
        zero = g.zeros(window, N)
        end = g.loop(T, lambda b, u, cd, x, acc: cell(b, u, cd, x, acc), scan={"u": g.reshape(window, T, 1)},
                     carry={"cd": cdrive}, state={"x": zero, "acc": zero}, name="res")
        x, acc = end["x"], end["acc"]
    else:
        x_in, acc_in = g.input("x", N), g.input("acc", N)
        out = cell(g, u, cdrive, x_in, acc_in)
        x, acc = out["x"], out["acc"]
    last = g.q(x, 16, STATE_SCALE, name="last")
    mean = g.q(g.mul(acc, g.const("invT", 1.0 / T), name="mean_f"), 16, STATE_SCALE, name="mean")
    g.fc(g.concat([last, mean, rr]), g.const("Wout", est.Wout_), g.const("bout", est.bout_), name="logits")
    g.output("logits", *(("x_out", "acc_out") if form == "step" else ()))
    return g
