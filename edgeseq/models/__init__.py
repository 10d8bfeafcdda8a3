"""Model families, as a registry: per ``(task, kind)`` of a bundle manifest, its estimator (the
scikit-learn contract; arrays + JSON hyper-parameters in a bundle), its description (the graph
every export lowers and the numpy runtime interprets) and the runtime interface its exported
bundles offer. Inference is numpy for every family; training the LSTM and TCN needs PyTorch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..errors import EdgeseqError
from . import esn, lstm, reservoir, tcn
from .esn import ESNClassifier
from .esn_window import ESNWindowModel
from .lstm import LSTMModel
from .tcn import TCNModel

#: the estimators of the beat (ECG) task, by ``--model``
MODELS = {"esn": ESNClassifier, "lstm": LSTMModel, "tcn": TCNModel}


def model_class(kind: str):
    try:
        return MODELS[kind]
    except KeyError:
        raise EdgeseqError(f"unknown model kind {kind!r} (known: {', '.join(sorted(MODELS))})") from None


@dataclass(frozen=True)
class Family:
    """``describe(manifest, arrays, form)`` gives the ``window`` or ``step`` graph; ``interface``
    names the runtime adapter (``runtime.INTERFACES``) of its exported bundles."""

    estimator: type | None
    describe: Callable
    interface: str
    initial: Callable = lambda arrays: {}  # arrays -> {state: the value a run starts from}


def _input(m: dict) -> tuple[int, int]:
    """``(T, F)``: window length and side-feature count of a window model's manifest."""
    inp = m["model"].get("input", {})
    if "window_length" in inp:
        return int(inp["window_length"]), len(inp.get("rr_features", []))
    from ..preprocess.balance import BalancePreprocessing

    return BalancePreprocessing.from_config(m["preprocessing"]).steps, 0


def _window_model(module, cls):
    def describe(m, arrays, form):
        est = cls.from_arrays(m["model"]["params"], arrays)
        return module.describe(est, *_input(m), form)
    return describe


def _sequence(m, arrays, form):
    return reservoir.describe(arrays, m["model"]["params"], form)


FAMILIES = {
    ("ecg", "esn"): Family(ESNClassifier, _window_model(esn, ESNClassifier), "beats"),
    ("ecg", "lstm"): Family(LSTMModel, _window_model(lstm, LSTMModel), "beats"),
    ("ecg", "tcn"): Family(TCNModel, _window_model(tcn, TCNModel), "beats"),
    ("balance", "esn"): Family(ESNWindowModel, _sequence, "sequence", reservoir.initial_state),
    ("balance", "lstm"): Family(LSTMModel, _window_model(lstm, LSTMModel), "windows"),
    ("balance", "tcn"): Family(TCNModel, _window_model(tcn, TCNModel), "windows"),
    ("sequence", "reservoirpy"): Family(None, _sequence, "sequence", reservoir.initial_state),
}


def family(manifest: dict) -> Family:
    key = (manifest.get("task"), manifest.get("model", {}).get("kind"))
    if key not in FAMILIES:
        raise EdgeseqError(f"no model family for task {key[0]!r}, kind {key[1]!r} "
                           f"(known: {', '.join(f'{t}/{k}' for t, k in FAMILIES)})")
    return FAMILIES[key]
