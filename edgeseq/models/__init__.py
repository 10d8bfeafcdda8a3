"""Model families, as a registry: per ``(task, kind)`` of a bundle manifest, its estimator (the
contract of :class:`~edgeseq.models.base.Estimator`; arrays + JSON hyper-parameters in a bundle),
its description (the graph every export lowers and the numpy runtime interprets) and the runtime
interface its exported bundles offer. Commands dispatch here (:func:`family`, :func:`build`), never
on a kind's name. Inference is numpy for every family; training the LSTM and TCN needs PyTorch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..errors import EdgeseqError
from . import esn, lstm, reservoir, tcn
from .esn import ESNClassifier
from .esn_window import ESNWindowModel
from .lstm import LSTMModel
from .tcn import TCNModel


@dataclass(frozen=True)
class Family:
    """``describe(manifest, arrays, form)`` gives the ``window`` or ``step`` graph; ``interface``
    names the runtime adapter (``runtime.INTERFACES``) of its exported bundles; ``defaults(size)``
    the hyper-parameters this task trains the estimator with unless told otherwise."""

    estimator: type | None
    describe: Callable
    interface: str
    initial: Callable = lambda arrays: {}  # arrays -> {state: the value a run starts from}
    defaults: Callable = lambda size: {}  # --size -> hyper-parameters (explicit --param win)


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


def _balance_trained(size):
    """Balance windows are 10 s at 25 Hz and a few thousand per data set: more epochs than for
    beats (the small size; full keeps its preset), and no class weighting."""
    return {"class_weight": None, **({} if size == "full" else {"epochs": 40})}


FAMILIES = {
    ("ecg", "esn"): Family(ESNClassifier, _window_model(esn, ESNClassifier), "beats"),
    ("ecg", "lstm"): Family(LSTMModel, _window_model(lstm, LSTMModel), "beats"),
    ("ecg", "tcn"): Family(TCNModel, _window_model(tcn, TCNModel), "beats"),
    ("balance", "esn"): Family(ESNWindowModel, _sequence, "sequence", reservoir.initial_state),
    ("balance", "lstm"): Family(LSTMModel, _window_model(lstm, LSTMModel), "windows", defaults=_balance_trained),
    ("balance", "tcn"): Family(TCNModel, _window_model(tcn, TCNModel), "windows", defaults=_balance_trained),
    ("sequence", "reservoirpy"): Family(None, _sequence, "sequence", reservoir.initial_state),
}


def lookup(task: str, kind: str) -> Family:
    """The family of ``kind`` for ``task``, or one line naming the known ones."""
    if (task, kind) not in FAMILIES:
        known = kinds(task) or [f"{t}/{k}" for t, k in FAMILIES]
        raise EdgeseqError(f"no model family for task {task!r}, kind {kind!r} (known: {', '.join(known)})")
    return FAMILIES[(task, kind)]


def family(manifest: dict) -> Family:
    """The family of a bundle manifest."""
    return lookup(manifest.get("task"), manifest.get("model", {}).get("kind"))


def kinds(task: str | None = None) -> list[str]:
    """The model kinds of a task (every task's, with ``task`` None), sorted."""
    return sorted({k for t, k in FAMILIES if task is None or t == task})


def model_class(kind: str, task: str = "ecg") -> type:
    """The estimator class of ``kind`` for ``task``: a registry lookup."""
    return lookup(task, kind).estimator


def build(task: str, kind: str, *, seed: int = 0, params: dict | None = None, size: str | None = None,
          device: str | None = None, **fixed):
    """A new estimator of ``kind`` for ``task``: ``fixed`` hyper-parameters (the task's, such as
    ``objective``), then what the CLI's ``--size`` stands for and the task's defaults, then
    ``device`` where the family has one, then explicit ``params`` (checked: an unknown name or a
    value out of range is one line listing the known ones)."""
    cls = lookup(task, kind).estimator
    chosen = {**cls.size_params(size), **lookup(task, kind).defaults(size)}
    if device is not None and "device" in cls.hyper_parameters():
        chosen["device"] = device
    return cls(seed=seed, **fixed).set_params(**{**chosen, **dict(params or {})})
