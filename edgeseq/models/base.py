"""What every model family shares: scikit-learn's ``get_params`` / ``set_params`` over the
hyper-parameter names a class lists in ``_HYPER``."""

from __future__ import annotations

from ..errors import EdgeseqError


class HyperParameterError(EdgeseqError, ValueError):
    """An unknown hyper-parameter: a ValueError as scikit-learn raises, and one line on the CLI."""


def _lists(v):
    """Tuples as lists, so parameters are the same after a JSON round trip."""
    return [_lists(x) for x in v] if isinstance(v, (tuple, list)) else v


class HyperParams:
    _HYPER: tuple = ()
    _NAME = "model"

    def get_params(self, deep: bool = True) -> dict:
        return {k: _lists(getattr(self, k)) for k in self._HYPER}

    def set_params(self, **params):
        for k, v in params.items():
            if k not in self._HYPER:
                raise HyperParameterError(f"unknown {self._NAME} hyper-parameter {k!r} "
                                          f"(known: {', '.join(self._HYPER)})")
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
