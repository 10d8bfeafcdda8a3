"""What a search leaves in OUT besides the storage: ``best.json``, the optimisation history and the
parameter importances as PNGs. Read from the study alone, so they are the same whichever engine
ran the trials and however many runs the study took.

The plots are drawn here rather than with ``optuna.visualization.matplotlib``: that module is
experimental (a warning per call) and draws pruned trials at their last fold's score, which
reads as a result; here a pruned trial is drawn at its bound, the most it could have reached.
All three are written through :mod:`edgeseq.outputs` (atomic, one line on a bad path).
"""

from __future__ import annotations

from pathlib import Path

import optuna

from ..outputs import save_figure, write_json
from .search import Settings, best_of

COMPLETE, PRUNED = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def history_png(study, path: Path, metric: str) -> Path:
    """Each finished trial's value, pruned trials at their bound, and the best so far."""
    plt = _pyplot()
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == COMPLETE]
    pruned = [t for t in trials if t.state == PRUNED and t.user_attrs.get("pruned")]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.scatter([t.number for t in done], [t.value for t in done], color="tab:blue", zorder=3,
               label="finished trial (mean over folds)")
    if pruned:
        ax.scatter([t.number for t in pruned], [t.user_attrs["pruned"]["bound"] for t in pruned],
                   marker="x", color="tab:gray", zorder=3, label="pruned trial, at its bound")
    best, xs, ys = None, [], []
    for t in sorted(done, key=lambda t: t.number):
        best = t.value if best is None else max(best, t.value)
        xs.append(t.number)
        ys.append(best)
    if xs:
        ax.step(xs + [max(t.number for t in trials)], ys + [ys[-1]], where="post", color="tab:red",
                label="best so far")
    ax.set_xlabel("trial")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # trials are numbered, not measured
    ax.set_ylabel(f"{metric} (mean over folds)")
    ax.set_title(f"optimisation history: {len(done)} finished, {len([t for t in trials if t.state == PRUNED])} "
                 f"pruned", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    try:
        return save_figure(fig, path, dpi=120)
    finally:
        plt.close(fig)


def importances(study) -> tuple[dict | None, str | None]:
    """``(importances, None)``, or ``(None, why not)`` when the study cannot say yet."""
    done = study.get_trials(deepcopy=False, states=(COMPLETE,))
    if len(done) < 2:
        return None, f"parameter importances need at least 2 finished trials, the study has {len(done)}"
    try:
        imp = optuna.importance.get_param_importances(study)
    except (ValueError, RuntimeError, ZeroDivisionError) as exc:
        return None, f"parameter importances could not be computed: {exc}"
    if not imp:
        return None, "parameter importances: no hyper-parameter varied between finished trials"
    return {k: float(v) for k, v in imp.items()}, None


def importances_png(imp: dict | None, note: str | None, path: Path, metric: str) -> Path:
    """A bar per hyper-parameter, or the reason there are none written in the picture."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 0.5 * max(len(imp or {}), 3) + 1.4))
    if imp:
        names = list(imp)[::-1]  # most important on top
        ax.barh(names, [imp[n] for n in names], color="tab:blue")
        ax.set_xlabel(f"importance for {metric} (Optuna PED-ANOVA, sums to 1)")
        ax.set_xlim(0, 1)
        ax.grid(alpha=0.3, axis="x")
    else:
        ax.axis("off")
        ax.text(0.5, 0.5, note, ha="center", va="center", wrap=True, fontsize=10)
    ax.set_title("hyper-parameter importances", fontsize=10)
    fig.tight_layout()
    try:
        return save_figure(fig, path, dpi=120)
    finally:
        plt.close(fig)


def best_json(study, settings: Settings, seconds: float, note: str | None, imp: dict | None) -> dict:
    """The best trial and how the search was run; None for the best when nothing finished."""
    trials = study.get_trials(deepcopy=False)
    _, number = best_of(study)
    best = trials[number] if number is not None else None
    counts = {s.name.lower(): sum(t.state == s for t in trials) for s in optuna.trial.TrialState}
    out = {
        "metric": settings.metric,
        "objective": f"mean over {settings.folds} record-grouped folds of {settings.metric} (0..1, higher is better)",
        "best_trial": None if best is None else best.number,
        "value": None if best is None else best.value,
        "params": None if best is None else best.params,
        "fold_values": None if best is None else [best.intermediate_values[k] for k in sorted(best.intermediate_values)],
        "pooled": None if best is None else best.user_attrs.get("pooled"),
        "trials": {k: v for k, v in counts.items() if v},
        "importances": imp,
        "importances_note": note,
        "seconds_this_run": round(seconds, 1),
        "storage": str(settings.storage_path),
        "settings": {"model": settings.model, "data": settings.data, "records": settings.records,
                     "folds": settings.folds, "seed": settings.seed, "metric": settings.metric,
                     "space": settings.space, "trials": settings.trials, "jobs": settings.jobs,
                     "address": settings.address, "gpus_per_trial": settings.gpus_per_trial},
    }
    return out


def write_outputs(study, settings: Settings, seconds: float) -> dict:
    out = Path(settings.out)
    imp, note = importances(study)
    best = best_json(study, settings, seconds, note, imp)
    write_json(out / "best.json", best, "best.json")
    history_png(study, out / "history.png", settings.metric)
    importances_png(imp, note, out / "importances.png", settings.metric)
    return best
