"""Model families. Each class follows the scikit-learn estimator contract and serialises to arrays
plus JSON hyper-parameters for a bundle (``to_arrays`` / ``from_arrays``)."""

from __future__ import annotations

from ..errors import EdgeseqError
from .esn import ESNClassifier

MODELS = {"esn": ESNClassifier}


def model_class(kind: str):
    try:
        return MODELS[kind]
    except KeyError:
        raise EdgeseqError(f"unknown model kind {kind!r} (known: {', '.join(sorted(MODELS))})") from None
