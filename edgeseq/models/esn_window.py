"""Echo-state network for whole analysis windows of a multichannel signal: a score (regression)
or a class per window. The balance task's model.

The readout sees the **mean reservoir state** over the window, nothing else. That is a choice
for the device: a linear readout of the mean state equals the mean over the window of a per-step
linear readout, so the exported model is the plain sequence graph (reservoir + readout at every
step) and the window's prediction is the average of its outputs; no extra operator, and a board
can run it sample by sample with constant memory.

States come from :func:`edgeseq.models.esn.batched_states` (one product per step for all windows).
"""

from __future__ import annotations

import numpy as np

from ..errors import EdgeseqError
from ..finite import decide, require_finite
from .base import HyperParams, ridge_solve
from .esn import RESERVOIR_PARAMS, batched_states, reservoir_init

_HYPER = ("objective", "units", "lr", "sr", "input_scaling", "rc_connectivity", "input_connectivity",
          "bias_scaling", "ridge", "seed", "batch_size")


class ESNWindowModel(HyperParams):
    """``objective="regression"`` (one score per window) or ``"classification"`` (ridge on one-hot
    targets, argmax). scikit-learn contract: hyper-parameters here, ``fit`` returns self, learned
    attributes end in ``_``."""

    _HYPER, _NAME = _HYPER, "ESN"
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

    def reservoir_features(self, X: np.ndarray, progress=None) -> np.ndarray:
        """Mean state per window ``(B, units)`` for inputs ``(B, T, D)``."""
        if not hasattr(self, "W_"):
            raise EdgeseqError("ESN reservoir not initialised: call fit or init_reservoir first")
        _, mean = batched_states(X, self.W_, self.Win_, self.bias_, self.lr, dtype=np.float32,
                                 batch_size=self.batch_size, progress=progress)
        return mean

    def fit_readout(self, features: np.ndarray, y: np.ndarray, n_classes: int | None = None) -> "ESNWindowModel":
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

    def fit(self, X: np.ndarray, y: np.ndarray, n_classes: int | None = None, progress=None) -> "ESNWindowModel":
        X = require_finite(X, "training windows")
        if X.ndim != 3:
            raise EdgeseqError(f"windows must have shape (B, T, D), got {X.shape}")
        self.init_reservoir(X.shape[2])
        return self.fit_readout(self.reservoir_features(X, progress), y, n_classes)

    def decision_function_from_features(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(features, dtype=np.float64) @ self.Wout_ + self.bout_

    def decision_function(self, X: np.ndarray, progress=None) -> np.ndarray:
        return self.decision_function_from_features(self.reservoir_features(X, progress))

    def predict(self, X: np.ndarray, progress=None) -> np.ndarray:
        z = self.decision_function(X, progress)
        return decide(z)[0] if self.objective == "classification" else z[:, 0]

    def to_arrays(self) -> dict[str, np.ndarray]:
        """In the sequence-model layout (per-unit ``lr``, readout on the state), so the sequence
        exporters and runtime take a balance bundle as it is."""
        return {"W": self.W_.astype(np.float32), "Win": self.Win_.astype(np.float32),
                "bias": self.bias_.astype(np.float32), "lr": np.full(self.W_.shape[0], self.lr, np.float32),
                "Wout": self.Wout_.astype(np.float32), "bout": self.bout_.astype(np.float32)}

    @classmethod
    def from_arrays(cls, params: dict, arrays: dict) -> "ESNWindowModel":
        hyper = {k: v for k, v in params.items() if k in _HYPER}
        model = cls(**hyper)
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
        N, D = self.Win_.shape
        return {**self.get_params(), "inputs": int(D), "outputs": int(self.Wout_.shape[1]),
                "activation": "tanh", "input_to_readout": False, "initial_state": "zero",
                "readout_rows": ["state"], "window_output": "mean"}
