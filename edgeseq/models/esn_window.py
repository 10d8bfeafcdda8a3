"""Echo-state network for whole analysis windows of a multichannel signal: a score (regression)
or a class per window. The balance task's model.

The readout sees the **mean reservoir state** over the window, nothing else. That is a choice
for the device: a linear readout of the mean state equals the mean over the window of a per-step
linear readout, so the exported model is the plain sequence graph (reservoir + readout at every
step) and the window's prediction is the average of its outputs; no extra operator, and a board
can run it sample by sample with constant memory.

Training states come from :func:`edgeseq.models.esn.batched_states` (one product per step for all
windows); inference is the sequence description (:func:`edgeseq.models.reservoir.describe`) on the
numpy interpreter, its step outputs averaged over the window.
"""

from __future__ import annotations

import numpy as np

from ..errors import EdgeseqError
from ..finite import require_finite
from .base import check_fitted, ridge_solve, run_description
from .esn import RESERVOIR_PARAMS, ReservoirEstimator, batched_states, reservoir_init


class ESNWindowModel(ReservoirEstimator):
    """``objective="regression"`` (one score per window) or ``"classification"`` (ridge on one-hot
    targets, argmax). The estimator contract of :class:`~edgeseq.models.base.Estimator` (``X``
    the windows ``(B, T, D)``; no side features): hyper-parameters here, ``fit`` returns self,
    learned attributes end in ``_``."""

    _NAME = "ESN"
    SHARED_FEATURES = True  # the reservoir is label-free: cross-validation computes its states once
    PARAMS = {**RESERVOIR_PARAMS, "objective": ("regression", "classification")}

    def __init__(self, objective: str = "regression", units: int = 300, lr: float = 0.1, sr: float = 0.9,
                 input_scaling=2.0, rc_connectivity: float = 0.1, input_connectivity: float = 1.0,
                 bias_scaling: float = 0.5, ridge: float = 1e-2, seed: int = 0, batch_size: int = 1024):
        self.objective = objective
        self.units = units
        self.lr = lr
        self.sr = sr
        self.input_scaling = input_scaling
        self.rc_connectivity = rc_connectivity
        self.input_connectivity = input_connectivity
        self.bias_scaling = bias_scaling
        self.ridge = ridge
        self.seed = seed
        self.batch_size = batch_size

    def init_reservoir(self, input_dim: int) -> "ESNWindowModel":
        if self.objective not in ("regression", "classification"):
            raise EdgeseqError(f"objective must be 'regression' or 'classification', not {self.objective!r}")
        self.W_, self.Win_, self.bias_ = reservoir_init(
            int(self.units), input_dim, lr=self.lr, sr=self.sr, input_scaling=self.input_scaling,
            rc_connectivity=self.rc_connectivity, input_connectivity=self.input_connectivity,
            bias_scaling=self.bias_scaling, seed=self.seed)
        return self

    def reservoir_features(self, X: np.ndarray, side=None, progress=None) -> np.ndarray:
        """Mean state per window ``(B, units)`` for inputs ``(B, T, D)``: the training path."""
        check_fitted(self, "W_")
        _, mean = batched_states(self._windows(X, side), self.W_, self.Win_, self.bias_, self.lr, dtype=np.float32,
                                 batch_size=self.batch_size, progress=progress)
        return mean

    def shared_features(self, X: np.ndarray, side=None, progress=None) -> np.ndarray:
        """Draw the reservoir for ``X``'s channels and return :meth:`reservoir_features`."""
        return self.init_reservoir(self._windows(X, side).shape[2]).reservoir_features(X, side, progress)

    def fit_readout(self, features: np.ndarray, y: np.ndarray, side=None, *,
                    n_classes: int | None = None) -> "ESNWindowModel":
        F = require_finite(np.asarray(features, dtype=np.float64),
                           "ESN reservoir states (lower sr or input_scaling, or check the data)")
        require_finite(np.asarray(y, dtype=np.float64), "training targets")
        if self.objective == "classification":
            y = np.asarray(y, dtype=np.int64)
            k = int(n_classes or y.max() + 1)
            Y = np.full((len(y), k), -1.0)
            Y[np.arange(len(y)), y] = 1.0
            self.classes_ = np.arange(k)
        else:
            Y = np.asarray(y, dtype=np.float64).reshape(len(F), -1)
        with np.errstate(all="ignore"):  # an overflow is refused just below, not warned about on stderr
            mu, sd = F.mean(axis=0), F.std(axis=0)
            sd[sd < 1e-8] = 1.0
            Z = np.concatenate([(F - mu) / sd, np.ones((len(F), 1))], axis=1)
        require_finite(Z, "standardised ESN readout inputs (values too large; check the data)")
        beta = ridge_solve(Z, Y, self.ridge)
        # Standardisation folded in (one affine map); checked, so NaN weights are never kept.
        self.Wout_ = require_finite(beta[:-1] / sd[:, None], "fitted ESN readout weights (check the data)")
        self.bout_ = require_finite(beta[-1] - mu @ self.Wout_, "fitted ESN readout bias (check the data)")
        return self

    def fit(self, X: np.ndarray, y: np.ndarray, side=None, *, n_classes: int | None = None,
            progress=None) -> "ESNWindowModel":
        X = require_finite(X, "training windows")
        return self.fit_readout(self.shared_features(X, side, progress), y, side, n_classes=n_classes)

    def decision_function_from_features(self, features: np.ndarray, side=None) -> np.ndarray:
        """The readout on :meth:`reservoir_features` (cross-validation's folds)."""
        check_fitted(self, "Wout_")
        return np.asarray(features, dtype=np.float64) @ self.Wout_ + self.bout_

    def description(self, T: int | None = None, F: int = 0, form: str = "window"):
        """The sequence description (:func:`edgeseq.models.reservoir.describe`) of this model: an
        output per step, whose mean over a window is the window's output."""
        from . import reservoir

        return reservoir.describe(self.to_arrays(), self.sequence_params(), form)

    def decision_function(self, X: np.ndarray, side=None) -> np.ndarray:
        """The mean over each window of the description's step outputs, ``(B, outputs)``."""
        check_fitted(self, "W_", "Wout_")
        X = np.asarray(self._windows(X, side), np.float32)
        s0 = np.zeros((len(X), self.W_.shape[0]), np.float32)
        if not len(X):
            return np.zeros((0, self.Wout_.shape[1]), np.float32)
        return run_description(self.description(), {"x": X, "s": s0}, "y", self.batch_size).mean(axis=1)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """In the sequence-model layout (per-unit ``lr``, readout on the state), so the sequence
        exporters and runtime take a balance bundle as it is."""
        check_fitted(self, "W_", "Wout_")
        return {"W": self.W_.astype(np.float32), "Win": self.Win_.astype(np.float32),
                "bias": self.bias_.astype(np.float32), "lr": np.full(self.W_.shape[0], self.lr, np.float32),
                "Wout": self.Wout_.astype(np.float32), "bout": self.bout_.astype(np.float32)}

    @classmethod
    def from_arrays(cls, params: dict, arrays: dict) -> "ESNWindowModel":
        known = cls.hyper_parameters()
        model = cls(**{k: v for k, v in params.items() if k in known})
        try:
            model.W_, model.Win_, model.bias_ = arrays["W"], arrays["Win"], arrays["bias"]
            model.Wout_, model.bout_ = arrays["Wout"], arrays["bout"]
        except KeyError as e:
            raise EdgeseqError(f"ESN bundle lacks weight array {e.args[0]}") from None
        if model.objective == "classification":
            model.classes_ = np.arange(model.Wout_.shape[1])
        return model

    def sequence_params(self) -> dict:
        """The manifest ``params`` the sequence exporters and runtime read, plus the hyper-parameters."""
        check_fitted(self, "Win_", "Wout_")
        N, D = self.Win_.shape
        return {**self.get_params(), "inputs": int(D), "outputs": int(self.Wout_.shape[1]),
                "activation": "tanh", "input_to_readout": False, "initial_state": "zero",
                "readout_rows": ["state"], "window_output": "mean"}

    bundle_params = sequence_params

    @staticmethod
    def _windows(X, side=None) -> np.ndarray:
        if side is not None:
            raise EdgeseqError("the window ESN takes no side features (side must be None)")
        X = np.asarray(X)
        if X.ndim != 3:
            raise EdgeseqError(f"windows must have shape (B, T, D), got {X.shape}")
        return X
