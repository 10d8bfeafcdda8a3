"""Trials on a Ray cluster (``--address``): Ray Tune places and runs them, one CPU each (and
``--gpus-per-trial`` GPUs, so GPU trials land on GPU nodes); Optuna's TPE proposes them through
Ray's ``OptunaSearch``, writing to the same journal storage as a local search.

Two things Ray's classes do not do, added here:

- Pruning: :class:`BoundScheduler` is a FIFO scheduler that returns STOP when
  :class:`~edgeseq.tune.search.BoundPruner`'s rule says so (the rule lives there, once).
- Recording: ``OptunaSearch.on_trial_complete`` tells Optuna COMPLETE with the last reported
  value for a trial a scheduler stopped (it marks PRUNED only when there is no result at all),
  and Tune does not pass the result that triggered a STOP to the searcher, so the last fold
  would be missing. :class:`RecordingSearch` reports every fold score as an intermediate value
  and tells PRUNED, COMPLETE or FAIL itself.

Only the driver writes the storage. With ``ray://`` (Ray Client) this process is not a Ray
driver and Tune would run its driver on the head node, writing a journal there; instead the
whole driver runs as one task on the cluster, starting from this machine's journal and sending
the updated one back.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import optuna
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search.optuna import OptunaSearch

from ..errors import EdgeseqError
from .search import (STUDY_NAME, BoundPruner, Settings, best_of, compact, make_sampler, open_study, run_trial,
                     storage, suggest, trial_line)

CONNECT_TIMEOUT_S = 10


def _host_port(address: str) -> tuple[str, int] | None:
    rest = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]") or "127.0.0.1", int(port)


def connect(address: str) -> None:
    """``ray.init`` on an existing cluster, or one line saying why not, within seconds.

    A TCP connect with a timeout comes first: Ray's own client waits 30 s on a closed port and
    its driver retries the GCS for longer.
    """
    import ray

    if address != "auto":
        hp = _host_port(address)
        if hp is None:
            raise EdgeseqError(f"--address must be ray://HOST:PORT, HOST:PORT or auto, not {address!r}")
        try:
            socket.create_connection(hp, timeout=CONNECT_TIMEOUT_S).close()
        except OSError as exc:
            raise EdgeseqError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}") from None
    # Workers' own output (Ray's shutdown noise when Tune ends a trial) stays in the cluster's
    # logs; a failed trial's error comes back through Tune. Under Ray Client the driver itself
    # is a task, so its lines only arrive through that forwarding.
    client = address.startswith("ray://")
    for attempt in (1, 2):
        try:
            ray.init(address=address, logging_level="WARNING", log_to_driver=client)
            return
        except (ConnectionError, RuntimeError, ValueError) as exc:
            # Ray Client's proxy forks a server per client; the fork can die in a gRPC race ("Check
            # failed: next_worker->state == KICKED" in the cluster's ray_client_server.err, seen once
            # in CI), which reaches us as ConnectionAbortedError "Initialization failure from
            # server". A second connection gets a new server; a cluster that refuses twice is reported.
            if not (client and attempt == 1 and isinstance(exc, ConnectionAbortedError)):
                raise EdgeseqError(f"cannot connect to the Ray cluster at {address}: "
                                   f"{str(exc).splitlines()[0]}") from None
            try:
                ray.shutdown()
            except Exception:  # noqa: BLE001 (a half-made client: nothing to shut down is fine)
                pass


# -- the trainable, on a worker node -----------------------------------------------------------
def trainable(config: dict, settings: Settings) -> None:
    """One trial: a result per fold (nested figures as JSON strings: Tune flattens dicts), then
    one with the pooled figures once the cross-validation has finished."""
    import ray
    from ray import tune

    where = {"node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}
    scores, folds = [], []

    def on_fold_score(k, score, rep):
        scores.append(score)
        folds.append(compact(rep))
        tune.report({"score": float(np.mean(scores)), "fold_scores": list(scores),
                     "folds_json": json.dumps(folds), **where})

    res = run_trial(settings, config, on_fold_score, device="cuda" if settings.gpus_per_trial else None)
    tune.report({"score": res["value"], "fold_scores": res["fold_scores"], "folds_json": json.dumps(folds),
                 "pooled_json": json.dumps(res["pooled"]), **where})


# -- scheduler and searcher, in the driver -----------------------------------------------------
class BoundScheduler(FIFOScheduler):
    """FIFO order; STOP when the bound rule prunes. ``pruned`` keeps each verdict for the
    searcher, which runs next in the same driver loop."""

    def __init__(self, rule: BoundPruner, study):
        super().__init__()
        self.rule, self.study, self.pruned = rule, study, {}

    def on_trial_result(self, tune_controller, trial, result):
        verdict = self.rule.verdict(result["fold_scores"], best_of(self.study)[0])
        if verdict is None:
            return TrialScheduler.CONTINUE
        self.pruned[trial.trial_id] = verdict
        return TrialScheduler.STOP


class Suggest:
    """The define-by-run space for OptunaSearch, as an object: Tune pickles the searcher."""

    def __init__(self, space: dict):
        self.space = space

    def __call__(self, trial):
        return suggest(trial, self.space)


class RecordingSearch(OptunaSearch):
    """OptunaSearch that records fold scores as intermediate values (step = fold index, as local
    trials do) and tells each trial's real state."""

    def __init__(self, *args, scheduler: BoundScheduler, quiet: bool, **kwargs):
        super().__init__(*args, **kwargs)
        self._scheduler, self._quiet, self._reported = scheduler, quiet, {}

    def _record(self, trial_id: str, result: dict) -> None:
        ot = self._ot_trials[trial_id]
        scores = result.get("fold_scores") or []
        for k in range(self._reported.get(trial_id, 0), len(scores)):
            ot.report(float(scores[k]), k)
        self._reported[trial_id] = len(scores)
        for key in ("node_id", "pid"):
            if key in result:
                ot.set_user_attr(key, result[key])
        if "folds_json" in result:
            ot.set_user_attr("folds", json.loads(result["folds_json"]))

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self._record(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self._completed_trials:
            return
        ot = self._ot_trials[trial_id]
        if result:
            self._record(trial_id, result)
        verdict = self._scheduler.pruned.pop(trial_id, None)
        state, value = optuna.trial.TrialState.FAIL, None
        if error:
            ot.set_user_attr("error", "the trial raised: see the Ray log above")
        elif verdict is not None:
            ot.set_user_attr("pruned", verdict)
            state = optuna.trial.TrialState.PRUNED
        elif result and "pooled_json" in result:
            ot.set_user_attr("pooled", json.loads(result["pooled_json"]))
            state, value = optuna.trial.TrialState.COMPLETE, float(np.mean(result["fold_scores"]))
        else:
            ot.set_user_attr("error", "stopped before its last fold (the run was interrupted)")
        self._ot_study.tell(ot, value, state=state)
        self._completed_trials.add(trial_id)
        if not self._quiet:
            print(trial_line(self._ot_study.get_trials(deepcopy=False)[ot.number], self._ot_study),
                  file=sys.stderr, flush=True)

    def save(self, checkpoint_path: str) -> None:
        """Nothing: the study is resumed from its journal, not from Tune's experiment checkpoint."""

    def restore(self, checkpoint_path: str) -> None:
        """Nothing, as for :meth:`save`."""


def drive(settings: Settings, quota: int, n_existing: int) -> None:
    """Run ``quota`` trials through Ray Tune from this (driver) process."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: no tables, our lines only
    logging.getLogger("ray.tune").setLevel(logging.WARNING)
    from ray import tune
    from ray.tune import FailureConfig, RunConfig, TuneConfig

    store = storage(settings)
    study = open_study(settings, store=store)
    scheduler = BoundScheduler(BoundPruner(settings.folds), study)
    search = RecordingSearch(space=Suggest(settings.space), metric="score", mode="max",
                             sampler=make_sampler(settings, n_existing), study_name=STUDY_NAME, storage=store,
                             scheduler=scheduler, quiet=settings.quiet)
    run = tune.with_resources(tune.with_parameters(trainable, settings=settings),
                              {"cpu": 1, "gpu": settings.gpus_per_trial})
    tuner = tune.Tuner(
        run,
        tune_config=TuneConfig(search_alg=search, scheduler=scheduler, num_samples=quota,
                               max_concurrent_trials=settings.jobs),
        run_config=RunConfig(storage_path=str(Path(settings.out).resolve() / "ray_results"), verbose=0,
                             failure_config=FailureConfig(max_failures=0, fail_fast=True)))
    grid = tuner.fit()
    if grid.errors:
        err = grid.errors[0]
        cause = getattr(err, "cause", None) or err
        raise EdgeseqError(f"a trial failed on the cluster: {str(cause).strip().splitlines()[-1]}")


def _drive_remote(settings: Settings, quota: int, n_existing: int, journal: bytes) -> bytes:
    """The driver as a task on the cluster (Ray Client): a private copy of the journal there."""
    with tempfile.TemporaryDirectory() as tmp:
        here = replace(settings, out=tmp)
        here.storage_path.write_bytes(journal)
        drive(here, quota, n_existing)
        return here.storage_path.read_bytes()


@contextmanager
def session(address: str):
    """Connected to the cluster for the duration; disconnected (the cluster keeps running) after."""
    import ray

    connect(address)
    try:
        yield
    finally:
        ray.shutdown()


def run_ray(settings: Settings, quota: int, n_existing: int) -> None:
    """``quota`` trials on the cluster this process is connected to (:func:`session`)."""
    import ray

    if ray.util.client.ray.is_connected():
        path = settings.storage_path
        journal = path.read_bytes() if path.exists() else b""
        task = ray.remote(num_cpus=0)(_drive_remote)
        path.write_bytes(ray.get(task.remote(settings, quota, n_existing, journal)))
    else:
        drive(settings, quota, n_existing)
