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
