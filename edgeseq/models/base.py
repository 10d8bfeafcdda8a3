"""What every model family shares: the estimator contract (:class:`Estimator`), scikit-learn's
``get_params`` / ``set_params`` over the names of ``__init__``'s parameters, each value checked
against the ranges the family declares in ``PARAMS`` (beside its ``__init__``), one
:class:`NotFittedError` and one ridge solver.

Decision: a hyper-parameter is checked where it is set, whoever sets it (``--param``, ``tune``, a
bundle's manifest), so ``units=1000000``, ``lr=NaN`` or ``rc_connectivity=0`` are one line before
any work, never a traceback, an out-of-memory kill or a readout of NaNs that still "trains".
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np

from ..checks import Range, check_params
from ..errors import EdgeseqError
from ..finite import decide


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


class NotFittedError(EdgeseqError, ValueError, AttributeError):
    """An estimator used before ``fit``: a ValueError and an AttributeError, as scikit-learn's is,
    and one line on the CLI."""


def check_fitted(est, *attrs: str) -> None:
    """Raise :class:`NotFittedError` unless ``est`` has every learned attribute ``attrs``."""
    if any(a not in vars(est) for a in attrs):
        raise NotFittedError(f"this {type(est).__name__} is not fitted yet: call fit() first")


def _lists(v):
    """Tuples as lists, so parameters are the same after a JSON round trip."""
    return [_lists(x) for x in v] if isinstance(v, (tuple, list)) else v


class HyperParams:
    """scikit-learn's contract: the hyper-parameters are the parameters of ``__init__``, stored
    under their own names, so ``get_params`` cannot drift from the signature."""

    _NAME = "model"
    PARAMS: dict = {}  # name -> rule (see check_hyper); every family declares one per __init__ parameter

    @classmethod
    def hyper_parameters(cls) -> tuple[str, ...]:
        """The names ``__init__`` takes, in its order."""
        return tuple(p.name for p in inspect.signature(cls.__init__).parameters.values()
                     if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))

    def get_params(self, deep: bool = True) -> dict:
        return {k: _lists(getattr(self, k)) for k in self.hyper_parameters()}

    def set_params(self, **params):
        known = self.hyper_parameters()
        for k in params:
            if k not in known:
                raise HyperParameterError(f"unknown {self._NAME} hyper-parameter {k!r} "
                                          f"(known: {', '.join(known)})")
        for k, v in check_hyper(params, self.PARAMS, self._NAME).items():
            setattr(self, k, v)
        return self


class Estimator(HyperParams):
    """The contract of every family's estimator (X: the windows ``(B, T)`` or ``(B, T, D)``;
    ``side``: per-window side features ``(B, F)``, such as the beats' rr, or None)::

        fit(X, y, side=None, *, n_classes=None, progress=None) -> self
        decision_function(X, side=None) -> (B, outputs)     the family's description, run in numpy
        predict(X, side=None) -> (B,)                        class index (-1: not finite) or score

    ``SHARED_FEATURES``: the label-free part of ``fit`` (a reservoir's states) depends on the
    windows only, so cross-validation computes it once for every fold with
    ``shared_features(X, side, progress)`` and fits only ``fit_readout(features, y, side, *,
    n_classes)`` per fold, scored by ``decision_function_from_features(features, side)``.
    """

    SHARED_FEATURES = False

    @property
    def classifies(self) -> bool:
        """Whether outputs are class scores (``predict`` takes their argmax) or scores."""
        return self.objective == "classification"

    def predict(self, X, side=None) -> np.ndarray:
        """Class index per window (``finite.UNLABELLED``, -1, where the outputs are not finite), or
        the score of a regression model."""
        z = self.decision_function(X, side)
        return decide(z)[0] if self.classifies else z[:, 0]

    def resolved(self) -> dict:
        """The hyper-parameters a fit uses (a family with presets fills in its ``None`` values)."""
        return self.get_params()

    @classmethod
    def size_params(cls, size: str | None) -> dict:
        """The hyper-parameters the CLI's ``--size`` (small, full) stands for."""
        return {} if size is None else {"size": size}

    def fit_progress(self, label: str, n_windows: int, enabled: bool = True):
        """What ``fit``'s ``progress`` reports (a trained family: one line per epoch)."""
        from ..progress import Progress

        return Progress(f"{label} epochs", self.resolved()["epochs"], enabled=enabled, every=True)

    def bundle_params(self) -> dict:
        """The manifest's ``model.params``."""
        return self.get_params()

    def architecture(self) -> dict | None:
        """What the manifest's ``model.architecture`` says beside the arrays, or None."""
        return None


def run_description(g, feeds: dict, output: str, chunk: int = 2048) -> np.ndarray:
    """Output ``output`` of description ``g`` run on the numpy interpreter, ``chunk`` windows at
    a time (memory stays a few ``(chunk, units)`` arrays whatever the batch)."""
    from ..graph.numpy import constants, run

    env = constants(g)
    n = len(next(iter(feeds.values())))
    outs = [run(g, {k: v[i:i + chunk] for k, v in feeds.items()}, env=env)[output] for i in range(0, n, chunk)]
    if outs:
        return np.concatenate(outs)
    return np.zeros((0, *[d or 0 for d in g.shapes[output][1:]]), np.float32)


def balanced_class_weights(counts, mode, power: float = 1.0, cap: float | None = None):
    """Per-class weights ``(n / (k * n_c)) ** power``, capped: scikit-learn's "balanced" tempered,
    because full balancing lets a class of a few beats from one patient dominate a fit (MIT-BIH
    DS1 has 8 Q beats, 414 F beats mostly in one record). Absent classes weigh 0."""
    counts = np.asarray(counts, dtype=np.float64)
    if mode is None:
        return np.ones(len(counts))
    if mode != "balanced":
        raise ValueError(f"class_weight must be 'balanced' or None, not {mode!r}")
    present = counts > 0
    cw = np.zeros(len(counts))
    cw[present] = (counts.sum() / (present.sum() * counts[present])) ** power
    return cw if cap is None else np.minimum(cw, cap)


def ridge_solve(Z: np.ndarray, Y: np.ndarray, ridge: float, w: np.ndarray | None = None, *,
                what: str = "ESN readout") -> np.ndarray:
    """Weighted ridge regression ``beta`` of ``Y`` on ``Z`` (its last column the intercept, which is
    not shrunk; the penalty scales with the total weight): the one solver of the ESN readouts and
    the balance baseline. Overflow is not warned about here: the callers check the weights they
    keep; a singular system is the data's problem, one line naming ``what``."""
    Zw = Z if w is None else Z * w[:, None]
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        A = Z.T @ Zw
        reg = np.full(A.shape[0], ridge * (len(Z) if w is None else float(w.sum())))
        reg[-1] = 0.0
        A[np.diag_indices_from(A)] += reg
        try:
            return np.linalg.solve(A, Zw.T @ Y)
        except np.linalg.LinAlgError:
            raise EdgeseqError(f"{what}: the training features are degenerate (constant or "
                               "overflowing); check the data") from None
