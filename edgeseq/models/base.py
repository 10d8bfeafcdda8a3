"""What every model family shares: scikit-learn's ``get_params`` / ``set_params`` over the
hyper-parameter names a class lists in ``_HYPER``, each value checked against the ranges the
family declares in ``PARAMS`` (beside its ``__init__``).

Decision: a hyper-parameter is checked where it is set, whoever sets it (``--param``, ``tune``, a
bundle's manifest), so ``units=1000000``, ``lr=NaN`` or ``rc_connectivity=0`` are one line before
any work, never a traceback, an out-of-memory kill or a readout of NaNs that still "trains".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..checks import Range, check_params
from ..errors import EdgeseqError


@dataclass(frozen=True)
class Optional:
    """``None`` (take the default or the ``size`` preset) or a value the inner rule accepts."""

    rule: object


@dataclass(frozen=True)
class Each:
    """One value, or a list of them (per input column), each accepted by ``rule``."""

    rule: object


def check_hyper(params: dict, spec: dict, family: str) -> dict:
    """``params`` checked against ``spec`` (name -> ``Range``, tuple of allowed values, ``Optional``,
    ``Each``, or a function returning the value or raising ``ValueError``) through
    :func:`edgeseq.checks.check_params`; one line naming the parameter otherwise."""
    out = {}
    for key, value in params.items():
        rule = spec.get(key)
        if rule is None:
            out.update(check_params({key: value}, spec, family))  # the unknown-name line
            continue
        if isinstance(rule, Optional):
            if value is None:
                out[key] = None
                continue
            rule = rule.rule
        if isinstance(rule, Each):
            if isinstance(value, (list, tuple)):
                if not value:
                    raise EdgeseqError(f"--param {key}: an empty list")
                out[key] = [check_params({key: v}, {key: rule.rule}, family)[key] for v in value]
                continue
            rule = rule.rule
        if callable(rule) and not isinstance(rule, Range):
            try:
                out[key] = rule(value)
            except (ValueError, TypeError) as exc:
                raise EdgeseqError(f"--param {key}={value!r}: {exc}") from None
            continue
        out.update(check_params({key: value}, {key: rule}, family))
    return out


class HyperParameterError(EdgeseqError, ValueError):
    """An unknown hyper-parameter: a ValueError as scikit-learn raises, and one line on the CLI."""


def _lists(v):
    """Tuples as lists, so parameters are the same after a JSON round trip."""
    return [_lists(x) for x in v] if isinstance(v, (tuple, list)) else v


class HyperParams:
    _HYPER: tuple = ()
    _NAME = "model"
    PARAMS: dict = {}  # name -> rule (see check_hyper); every family declares one per _HYPER name

    def get_params(self, deep: bool = True) -> dict:
        return {k: _lists(getattr(self, k)) for k in self._HYPER}

    def set_params(self, **params):
        for k, v in params.items():
            if k not in self._HYPER:
                raise HyperParameterError(f"unknown {self._NAME} hyper-parameter {k!r} "
                                          f"(known: {', '.join(self._HYPER)})")
        for k, v in check_hyper(params, self.PARAMS, self._NAME).items():
            setattr(self, k, v)
        return self


def balanced_class_weights(counts, mode, power: float = 1.0, cap: float | None = None):
    """Per-class weights ``(n / (k * n_c)) ** power``, capped: scikit-learn's "balanced" tempered,
    because full balancing lets a class of a few beats from one patient dominate a fit (MIT-BIH
    DS1 has 8 Q beats, 414 F beats mostly in one record). Absent classes weigh 0."""
    import numpy as np

    counts = np.asarray(counts, dtype=np.float64)
    if mode is None:
        return np.ones(len(counts))
    if mode != "balanced":
        raise ValueError(f"class_weight must be 'balanced' or None, not {mode!r}")
    present = counts > 0
    cw = np.zeros(len(counts))
    cw[present] = (counts.sum() / (present.sum() * counts[present])) ** power
    return cw if cap is None else np.minimum(cw, cap)


def ridge_solve(Z: np.ndarray, Y: np.ndarray, ridge: float, w: np.ndarray | None = None) -> np.ndarray:
    """Weighted ridge regression ``beta`` of ``Y`` on ``Z`` (its last column the intercept, which is
    not shrunk; the penalty scales with the total weight). Overflow is not warned about here: the
    callers check the weights they keep; a singular system is the data's problem, one line."""
    Zw = Z if w is None else Z * w[:, None]
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        A = Z.T @ Zw
        reg = np.full(A.shape[0], ridge * (len(Z) if w is None else float(w.sum())))
        reg[-1] = 0.0
        A[np.diag_indices_from(A)] += reg
        try:
            return np.linalg.solve(A, Zw.T @ Y)
        except np.linalg.LinAlgError:
            raise EdgeseqError("ESN readout: the training features are degenerate (constant or "
                               "overflowing); check the data") from None
