"""Model families. Each class follows the scikit-learn estimator contract and serialises to arrays
plus JSON hyper-parameters for a bundle (``to_arrays`` / ``from_arrays``). Inference is numpy for
every family; training the LSTM and TCN needs PyTorch (``edgeseq.models.torch_fit``)."""

from __future__ import annotations

from ..errors import EdgeseqError
from .esn import ESNClassifier
from .lstm import LSTMModel
from .tcn import TCNModel

MODELS = {"esn": ESNClassifier, "lstm": LSTMModel, "tcn": TCNModel}
NEURAL = ("lstm", "tcn")


def model_class(kind: str):
    try:
        return MODELS[kind]
    except KeyError:
        raise EdgeseqError(f"unknown model kind {kind!r} (known: {', '.join(sorted(MODELS))})") from None
