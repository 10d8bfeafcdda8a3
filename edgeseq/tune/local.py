"""Trials on this machine: J worker processes, each running Optuna trials one at a time against
the shared journal storage, with :class:`~edgeseq.tune.search.BoundPruner`.

Processes rather than ``study.optimize(n_jobs=J)`` threads: a trial's time goes to reading and
filtering records (Python, scipy, wfdb) as much as to numpy products, so threads serialise on the
GIL and oversubscribe BLAS. Measured on the 2-core test machine, 6 ESN trials on 6 shipped
excerpts, 3 folds (seconds; one process / two threads / two processes, the last including their
~2 s start): units 20-40: 10.7 / 19.2 / 6.9; units 200-400: 35.8 / 33.0 / 23.1. Rather than a
local Ray instance: Ray's start alone (~10 s here) outlasts a small search, and Optuna's own
pruner interface then applies unchanged. Workers are spawned, not forked (no inherited BLAS or
torch threads), so a script calling ``tune(jobs>1)`` needs the ``if __name__ == "__main__":`` guard.

Workers draw trials from one shared counter, so a worker whose trials are pruned early takes
more of them, and the study ends with exactly ``--trials`` finished or pruned trials.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

import optuna

from ..errors import EdgeseqError
from .search import (ONE_THREAD, BoundPruner, Settings, compact, make_sampler, open_study, run_trial,
                     trial_line)

_claims = None  # the shared count of trials still to start, set in each worker


def _init_worker(claims) -> None:
    global _claims
    _claims = claims


def _claim() -> bool:
    with _claims.get_lock():
        if _claims.value <= 0:
            return False
        _claims.value -= 1
        return True


def _objective(trial: optuna.Trial, settings: Settings, pruner: BoundPruner) -> float:
    from .search import suggest

    params = suggest(trial, settings.space)
    trial.set_user_attr("pid", os.getpid())
    folds = []

    def on_fold_score(k, score, rep):
        trial.report(score, k)
        folds.append(compact(rep))
        trial.set_user_attr("folds", folds)
        if trial.should_prune():
            trial.set_user_attr("pruned", pruner.last.get(trial.number))
            raise optuna.TrialPruned()

    try:
        res = run_trial(settings, params, on_fold_score)
    except EdgeseqError as exc:
        # The user's space can reach a point the model refuses: the message says which.
        trial.set_user_attr("error", str(exc))
        raise EdgeseqError(f"trial {trial.number} ({params}): {exc}") from None
    trial.set_user_attr("pooled", res["pooled"])
    return res["value"]


def worker(settings: Settings, index: int, n_existing: int) -> int:
    """Run trials until the shared counter is spent; returns how many this worker ran."""
    pruner = BoundPruner(settings.folds)
    study = open_study(settings, sampler=make_sampler(settings, n_existing, index), pruner=pruner)
    show = (lambda st, t: print(trial_line(t, st), file=sys.stderr, flush=True)) if not settings.quiet else None
    ran = 0
    try:
        while _claim():
            study.optimize(lambda t: _objective(t, settings, pruner), n_trials=1,
                           callbacks=[show] if show else None, catch=())
            ran += 1
    except BaseException:
        with _claims.get_lock():  # the others stop after their current trial
            _claims.value = 0
        raise
    return ran


def run_local(settings: Settings, quota: int, n_existing: int) -> None:
    """``quota`` more trials on ``settings.jobs`` processes (in this process when jobs is 1)."""
    ctx = mp.get_context("spawn")  # a fresh interpreter: no forked BLAS or Ray threads
    claims = ctx.Value("i", quota)
    jobs = max(1, min(settings.jobs, quota))
    if jobs == 1:
        _init_worker(claims)
        worker(settings, 0, n_existing)
        return
    saved = {k: os.environ.get(k) for k in ONE_THREAD}
    os.environ.update(ONE_THREAD)  # spawned workers inherit the environment as it is at their start
    try:
        with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init_worker, initargs=(claims,)) as pool:
            futures = [pool.submit(worker, settings, i, n_existing) for i in range(jobs)]
            wait(futures, return_when=FIRST_EXCEPTION)
            for f in futures:
                f.result()  # the first worker's error, as raised there
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
