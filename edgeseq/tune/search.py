"""What a search is, whichever engine runs it: the score of a fold, the space, the pruning rule,
the study's storage and the body of one trial.

The objective of a trial is the mean over the K record-grouped folds of a per-fold score in 0..1.
A mean of bounded terms is what makes fold-by-fold pruning exact rather than a guess: after k
folds the best the trial can still reach is known, so a trial is stopped only when it provably
cannot beat the best finished one, never because its first folds happen to be hard records.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import optuna

from ..errors import EdgeseqError
from ..models import lookup

optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own line per trial replaces Optuna's


# -- per-fold scores ---------------------------------------------------------------------------
def _ratio(rep: dict, cls: str, key: str) -> float:
    """Se or +P of a class; None (no beats of the class, or none predicted as it) counts 0."""
    v = rep["classes"].get(cls, {}).get(key)
    return 0.0 if v is None else float(v)


def _f1(rep: dict, cls: str) -> float:
    se, ppv = _ratio(rep, cls, "se"), _ratio(rep, cls, "ppv")
    return 2 * se * ppv / (se + ppv) if se + ppv else 0.0


def sveb_veb(rep: dict) -> float:
    """Mean of SVEB Se, SVEB +P, VEB Se and VEB +P: the four figures inter-patient papers report,
    and the ones a model that calls every beat normal (high accuracy) scores 0 on."""
    return float(np.mean([_ratio(rep, c, k) for c in ("S", "V") for k in ("se", "ppv")]))


#: ``--metric`` name -> score of one fold's report (edgeseq.metrics.report), in 0..1, higher is better.
METRICS = {
    "sveb_veb": sveb_veb,
    "accuracy": lambda rep: 0.0 if rep["accuracy"] is None else float(rep["accuracy"]),
    "sveb_f1": lambda rep: _f1(rep, "S"),
    "veb_f1": lambda rep: _f1(rep, "V"),
}
DEFAULT_METRIC = "sveb_veb"
MAX_SCORE = 1.0  # every METRICS entry is bounded by 1: the pruning bound relies on it


def metric_fn(name: str):
    try:
        return METRICS[name]
    except KeyError:
        raise EdgeseqError(f"unknown --metric {name!r} (known: {', '.join(METRICS)})") from None


# -- search spaces -----------------------------------------------------------------------------
#: Per family: the hyper-parameters that move the inter-patient figures most, in ranges that train
#: on a laptop CPU. The ESN's input_scaling is a per-input tuple (ECG then RR columns) and stays at
#: its tuned default; a space file may still set it as one float for every input.
DEFAULT_SPACES = {
    "esn": {
        "units": {"type": "int", "low": 50, "high": 600, "log": True},
        "lr": {"type": "float", "low": 0.05, "high": 1.0},
        "sr": {"type": "float", "low": 0.3, "high": 1.5},
        "ridge": {"type": "float", "low": 1e-4, "high": 1.0, "log": True},
        "class_weight_power": {"type": "float", "low": 0.25, "high": 1.0},
        "bias_scaling": {"type": "float", "low": 0.0, "high": 1.0},
    },
    "lstm": {
        "hidden": {"type": "int", "low": 16, "high": 128, "log": True},
        "layers": {"type": "int", "low": 1, "high": 2},
        "learning_rate": {"type": "float", "low": 3e-4, "high": 1e-2, "log": True},
        "epochs": {"type": "int", "low": 4, "high": 16},
        "weight_decay": {"type": "float", "low": 1e-6, "high": 1e-2, "log": True},
        "class_weight_power": {"type": "float", "low": 0.25, "high": 1.0},
    },
    "tcn": {
        "channels": {"type": "int", "low": 8, "high": 64, "log": True},
        "blocks": {"type": "int", "low": 3, "high": 7},
        "kernel": {"type": "categorical", "choices": [2, 3, 5]},
        "learning_rate": {"type": "float", "low": 3e-4, "high": 1e-2, "log": True},
        "epochs": {"type": "int", "low": 4, "high": 16},
        "class_weight_power": {"type": "float", "low": 0.25, "high": 1.0},
    },
}

#: Hyper-parameters the command itself sets: searching them would make trials incomparable
#: (seed: the same reservoir draw and folds for every trial) or change the task (objective).
RESERVED = {"seed": "--seed sets it for every trial", "device": "--gpus-per-trial decides it",
            "objective": "the ECG task is classification"}


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_range(name: str, spec: dict, where: str, integer: bool) -> None:
    low, high = spec.get("low"), spec.get("high")
    ok = (lambda v: isinstance(v, int) and not isinstance(v, bool)) if integer else _number
    kind = "integers" if integer else "finite numbers"
    if not ok(low) or not ok(high):
        raise EdgeseqError(f"{where}: {name!r} needs 'low' and 'high' as {kind}, got {low!r} and {high!r}")
    if low >= high:
        raise EdgeseqError(f"{where}: {name!r} has an empty range: low {low} >= high {high}")
    if not isinstance(spec.get("log", False), bool):
        raise EdgeseqError(f"{where}: {name!r}: 'log' must be true or false, not {spec['log']!r}")
    if spec.get("log") and low <= 0:
        raise EdgeseqError(f"{where}: {name!r} is log-scaled, so low must be > 0, not {low}")
    if "step" in spec:
        if spec.get("log"):
            raise EdgeseqError(f"{where}: {name!r}: 'step' and 'log' cannot be combined")
        if not ok(spec["step"]) or spec["step"] <= 0:
            raise EdgeseqError(f"{where}: {name!r}: 'step' must be positive {kind}, not {spec['step']!r}")


def _check_choices(name: str, spec: dict, where: str) -> None:
    choices = spec.get("choices")
    if not isinstance(choices, list) or not choices:
        raise EdgeseqError(f"{where}: {name!r} needs a non-empty 'choices' list, got {choices!r}")
    bad = [c for c in choices if not (c is None or isinstance(c, (bool, int, float, str)))]
    if bad:
        raise EdgeseqError(f"{where}: {name!r}: choices must be numbers, strings, true/false or null, "
                           f"not {bad[0]!r}")


#: spec "type" -> (checker, allowed keys)
_SPEC_TYPES = {
    "int": (lambda n, s, w: _check_range(n, s, w, True), {"type", "low", "high", "log", "step"}),
    "float": (lambda n, s, w: _check_range(n, s, w, False), {"type", "low", "high", "log", "step"}),
    "categorical": (_check_choices, {"type", "choices"}),
}


def load_space(space, model: str) -> dict:
    """The validated space: ``"default"``, a path to a JSON file, or a dict already read.

    Every mistake is one EdgeseqError naming the file and the hyper-parameter, raised before any
    trial starts: a typo found after an hour of search costs the hour.
    """
    estimator = lookup("ecg", model).estimator  # an unknown kind: one line naming the known ones
    where = "default space"
    if isinstance(space, (str, Path)) and str(space) == "default":
        space = DEFAULT_SPACES[model]
    elif isinstance(space, (str, Path)):
        where = str(space)
        path = Path(space)
        # A device or FIFO would block the read (/dev/zero never ends): a space is a small file.
        if path.exists() and (not path.is_file() or path.stat().st_size > 1 << 20):
            raise EdgeseqError(f"space file {where} is not a regular JSON file of at most 1 MiB")
        try:
            space = json.loads(path.read_text())
        except FileNotFoundError:
            raise EdgeseqError(f"space file {where} not found") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise EdgeseqError(f"space file {where} is not JSON: {exc}") from None
    if not isinstance(space, dict) or not space:
        raise EdgeseqError(f"{where}: a space is a non-empty JSON object of name -> "
                           '{"type": "int"|"float"|"categorical", ...}')
    known = [k for k in estimator.hyper_parameters() if k not in RESERVED]
    for name, spec in space.items():
        if name in RESERVED:
            raise EdgeseqError(f"{where}: {name!r} cannot be searched ({RESERVED[name]})")
        if name not in known:
            raise EdgeseqError(f"{where}: unknown {model} hyper-parameter {name!r} (known: {', '.join(known)})")
        if not isinstance(spec, dict) or spec.get("type") not in _SPEC_TYPES:
            raise EdgeseqError(f"{where}: {name!r} needs a \"type\" of {', '.join(_SPEC_TYPES)}, got {spec!r}")
        check, allowed = _SPEC_TYPES[spec["type"]]
        extra = sorted(set(spec) - allowed)
        if extra:
            raise EdgeseqError(f"{where}: {name!r} ({spec['type']}) has unknown keys {', '.join(extra)} "
                               f"(allowed: {', '.join(sorted(allowed))})")
        check(name, spec, where)
    return dict(space)


def suggest(trial, space: dict) -> dict:
    """Draw one point through Optuna's define-by-run API (the local trials' ``optuna.Trial`` and
    OptunaSearch's captor alike)."""
    params = {}
    for name, spec in space.items():
        if spec["type"] == "categorical":
            params[name] = trial.suggest_categorical(name, spec["choices"])
        else:
            draw = trial.suggest_int if spec["type"] == "int" else trial.suggest_float
            kw = {"log": spec.get("log", False)}
            if "step" in spec:
                kw["step"] = spec["step"]
            params[name] = draw(name, spec["low"], spec["high"], **kw)
    return params


# -- the pruning rule --------------------------------------------------------------------------
class BoundPruner(optuna.pruners.BasePruner):
    """Prune a trial once the best objective it can still reach is below the best finished trial's.

    With per-fold scores ``s_1..s_k`` after k of K folds, and every score at most ``max_score``,
    the trial's mean can at most reach ``(s_1 + ... + s_k + (K - k) * max_score) / K``. It is
    pruned when that bound is strictly below the best COMPLETE trial's value; a trial is never
    pruned after its last fold (it has finished, even if worse) nor before any trial has finished.
    No trial that could have become the best is ever stopped, unlike a median or percentile
    pruner, which is what a search over a handful of expensive trials can afford.

    The Ray engine's scheduler applies the same rule through :meth:`verdict`.
    """

    def __init__(self, n_folds: int, max_score: float = MAX_SCORE):
        self.n_folds, self.max_score = int(n_folds), float(max_score)
        self.last: dict[int, dict] = {}  # trial number -> the verdict that pruned it (for the line)

    def bound(self, scores) -> float:
        return (float(np.sum(scores)) + (self.n_folds - len(scores)) * self.max_score) / self.n_folds

    def verdict(self, scores, best: float | None) -> dict | None:
        """``{"after_fold", "bound", "best"}`` when the rule prunes, else None."""
        if best is None or not 0 < len(scores) < self.n_folds:
            return None
        b = self.bound(scores)
        return {"after_fold": len(scores), "n_folds": self.n_folds, "bound": b, "best": best} if b < best else None

    def prune(self, study, trial) -> bool:
        steps = sorted(trial.intermediate_values)
        v = self.verdict([trial.intermediate_values[s] for s in steps], best_of(study)[0])
        if v is not None:
            self.last[trial.number] = v
        return v is not None


def best_of(study) -> tuple[float | None, int | None]:
    """``(value, number)`` of the best COMPLETE trial, ``(None, None)`` before any."""
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not done:
        return None, None
    t = max(done, key=lambda t: (t.value, -t.number))
    return t.value, t.number


def trial_line(trial, study) -> str:
    """The line printed per finished or pruned trial, with the best so far."""
    best, number = best_of(study)
    best_txt = "no finished trial yet" if best is None else f"best {best:.4f}, trial {number}"
    state = trial.state
    if state == optuna.trial.TrialState.COMPLETE:
        return f"trial {trial.number} finished: {trial.value:.4f} ({best_txt})"
    if state == optuna.trial.TrialState.PRUNED:
        v = trial.user_attrs.get("pruned") or {}
        if v:
            return (f"trial {trial.number} pruned after fold {v['after_fold']}/{v['n_folds']}: "
                    f"bound {v['bound']:.4f} < best {v['best']:.4f}")
        return f"trial {trial.number} pruned ({best_txt})"
    return f"trial {trial.number} {state.name.lower()}: {trial.user_attrs.get('error', '')} ({best_txt})"


# -- settings and storage ----------------------------------------------------------------------
@dataclass
class Settings:
    """Everything a trial needs, picklable: it travels to worker processes and Ray nodes."""

    model: str
    data: str
    records: list[str]
    folds: int
    seed: int
    metric: str
    space: dict
    trials: int
    out: str
    jobs: int | None = 1  # local: processes; Ray: most trials at once (None: as many as fit)
    address: str | None = None
    gpus_per_trial: float = 0
    quiet: bool = False
    train_best: bool = False

    @property
    def storage_path(self) -> Path:
        return Path(self.out) / "study.journal"

    def identity(self) -> dict:
        """What must not change when a study is resumed: a different value means a different
        objective, and mixing their trials would compare apples with pears."""
        return {k: v for k, v in asdict(self).items() if k in ("model", "data", "records", "folds", "seed",
                                                                 "metric", "space")}


STUDY_NAME = "edgeseq-tune"


def storage(settings: Settings):
    """Optuna's journal storage in ``OUT/study.journal``.

    An append-only log file with file locks: several processes on one machine append to it
    safely (SQLite serialises writers and fails with "database is locked" under parallel
    trials), it needs no server, and it is one file to copy to resume elsewhere. In Ray mode only
    the driver writes it, so worker nodes need no shared disk.
    """
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    settings.storage_path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(settings.storage_path)))


def open_study(settings: Settings, sampler=None, pruner=None, store=None) -> optuna.Study:
    """Create or load the study; refuse to resume one whose objective differs."""
    study = optuna.create_study(storage=store or storage(settings), study_name=STUDY_NAME, direction="maximize",
                                sampler=sampler, pruner=pruner, load_if_exists=True)
    ident = json.loads(json.dumps(settings.identity()))
    old = study.user_attrs.get("settings")
    if old is None:
        study.set_user_attr("settings", ident)
    else:
        changed = [k for k in ident if old.get(k) != ident[k]]
        if changed:
            raise EdgeseqError(f"{settings.storage_path} holds a study with different {', '.join(changed)} "
                               f"(was {', '.join(f'{k}={old.get(k)!r}' for k in changed)}): use another --out "
                               "or the same settings to resume it")
    return study


def sampler_seed(seed: int, n_existing: int, worker: int = 0) -> int:
    """The TPE sampler's seed: the user's seed, mixed with how many trials the study already
    holds and which worker asks, so a resumed run or a second worker does not replay the same
    random start-up points."""
    return int(np.random.SeedSequence([seed, n_existing, worker]).generate_state(1)[0])


def make_sampler(settings: Settings, n_existing: int, worker: int = 0):
    """Seeded TPE; ``constant_liar`` keeps parallel workers off the points still running, and the
    model starts after max(3, N/4) random trials instead of Optuna's fixed 10, which would leave a
    search of 8 trials purely random."""
    return optuna.samplers.TPESampler(seed=sampler_seed(settings.seed, n_existing, worker), constant_liar=True,
                                      n_startup_trials=max(3, min(10, settings.trials // 4)))


def count_done(study) -> int:
    """Trials that count towards ``--trials``: finished or pruned (a failed one is retried)."""
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=states))


def fail_stale(study, out=None) -> int:
    """Trials left RUNNING by an interrupted run are marked FAIL: one tune run owns an OUT
    directory at a time, so nothing is still running them."""
    stale = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    for t in stale:
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        if out is not None:
            print(f"trial {t.number} was left running by an interrupted run: marked failed", file=out)
    return len(stale)


# -- one trial ---------------------------------------------------------------------------------
def compact(rep: dict) -> dict:
    """The figures of a report worth keeping per trial (JSON-ready, a few hundred bytes)."""
    keep = ("fold", "records", "n_beats", "accuracy", "confusion", "classes")
    return {k: rep[k] for k in keep if k in rep}


def run_trial(settings: Settings, params: dict, on_fold_score, device: str | None = None) -> dict:
    """Cross-validate one point. ``on_fold_score(k, score, fold_report)`` is called after each
    fold and may raise to stop the trial (pruning). Returns ``{"value", "fold_scores", "pooled"}``.

    Every trial uses the same seed, so the same folds and (for the ESN) the same reservoir draw
    for the same size: differences between trials are the hyper-parameters' doing.
    """
    from ..tasks import ecg

    score = metric_fn(settings.metric)
    scores = []

    def on_fold(k, n_folds, rep):
        scores.append(score(rep))
        on_fold_score(k, scores[-1], rep)

    rep = ecg.cross_validate(settings.data, settings.records, model=settings.model, folds=settings.folds,
                             seed=settings.seed, params=params, progress=False, device=device, on_fold=on_fold)
    return {"value": float(np.mean(scores)), "fold_scores": scores, "pooled": compact(rep)}


#: One BLAS/OpenMP thread per trial process: J processes with J threads each on J cores only
#: fight over them. Read by numpy and torch when they start, so set in a process's environment.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
