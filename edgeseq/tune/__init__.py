"""``edgeseq tune``: hyper-parameter search over record-grouped cross-validation, any family.

Optuna proposes points (seeded TPE); each trial cross-validates one point with the same seed and
folds, and its objective is the mean over folds of a per-fold score (:data:`search.METRICS`).
Trials report fold by fold and stop once they provably cannot beat the best finished trial
(:class:`search.BoundPruner`). The study lives in ``OUT/study.journal``: the same command with
more ``--trials`` continues it. Without ``--address`` trials run in processes on this machine
(:mod:`.local`); with it, on a Ray cluster through Ray Tune (:mod:`.cluster`).

Host only: nothing on the device path imports this package.

Modules, in reading order: ``search`` (scores, spaces, pruning rule, storage, one trial),
``local``, ``cluster`` (the two engines), ``results`` (best.json and plots).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

from ..errors import EdgeseqError
from .search import (DEFAULT_METRIC, METRICS, BoundPruner, Settings, count_done, fail_stale, load_space,
                     metric_fn, open_study)

__all__ = ["tune", "METRICS", "BoundPruner", "load_space"]


def tune(model: str, data, space="default", *, trials: int, folds: int, out, records=None,
         address: str | None = None, gpus_per_trial: float = 0, jobs: int | None = None,
         metric: str = DEFAULT_METRIC, seed: int = 0, train_best: bool = False, quiet: bool = False) -> dict:
    """Run (or continue) a search until the study in ``out`` holds ``trials`` finished or pruned
    trials; write ``best.json`` and the plots there; return best.json's content.

    Everything the user can get wrong is checked before Optuna or Ray start: a bad space or a
    data directory with fewer records than folds should cost a second, not a cluster's start.
    Local trials run in spawned processes when ``jobs`` > 1: a script calling this needs the
    ``if __name__ == "__main__":`` guard.
    """
    from ..data.mitdb import select_records

    t0 = time.perf_counter()
    space = load_space(space, model)
    metric_fn(metric)
    names = select_records(data, records)
    if not 2 <= folds <= len(names):
        raise EdgeseqError(f"--folds must be between 2 and the number of records in {data} ({len(names)}), "
                           f"not {folds}")
    if trials < 1:
        raise EdgeseqError(f"--trials must be at least 1, not {trials}")
    if gpus_per_trial < 0:
        raise EdgeseqError(f"--gpus-per-trial must be >= 0, not {gpus_per_trial}")
    if gpus_per_trial and not address:
        raise EdgeseqError("--gpus-per-trial needs --address: Ray places GPU trials on GPU nodes; local "
                           "trials run on this machine's CPUs")
    if jobs is not None and jobs < 1:
        raise EdgeseqError(f"--jobs must be at least 1, not {jobs}")
    settings = Settings(model=model, data=str(Path(data).resolve()), records=names, folds=folds, seed=seed,
                        metric=metric, space=space, trials=trials, out=str(Path(out).resolve()),
                        jobs=jobs if address else jobs or os.cpu_count() or 1, address=address,
                        gpus_per_trial=gpus_per_trial, quiet=quiet, train_best=train_best)

    if address:
        from .cluster import run_ray as run, session  # connected first: an unreachable cluster writes nothing
    else:
        from .local import run_local as run

        session = lambda _: contextlib.nullcontext()  # noqa: E731
    with session(address):
        study = open_study(settings)
        fail_stale(study, out=None if quiet else sys.stderr)
        done = count_done(study)
        quota = trials - done
        if not quiet:
            where = f"Ray cluster {address}" if address else f"{min(settings.jobs, max(quota, 1))} local process(es)"
            print(f"tune {model}: {len(names)} records, {folds} folds, metric {metric}; study "
                  f"{settings.storage_path} holds {done} trial(s), running {max(quota, 0)} more on {where}",
                  file=sys.stderr, flush=True)
        if quota > 0:
            run(settings, quota, len(study.get_trials(deepcopy=False)))

    from .results import write_outputs

    best = write_outputs(open_study(settings), settings, time.perf_counter() - t0)
    if train_best and best["params"] is not None:
        from ..tasks import ecg

        info = ecg.train(settings.data, names, out=Path(settings.out) / "best.bundle", model=model, seed=seed,
                         params=best["params"], progress=not quiet)
        best["bundle"] = info["bundle"]
    return best
