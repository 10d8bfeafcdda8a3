"""Pictures for results (host side; matplotlib is imported only when a plot is drawn).

Every figure is written by :func:`edgeseq.outputs.save_figure` (rendered in memory, then the
checked, atomic writer), so a plot path fails the way any other output path does: one line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .outputs import save_figure


def confusion_png(rep: dict, path, title: str = "") -> Path:
    """Row-normalised confusion matrix with counts, so rare classes stay readable."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = rep["labels"]
    conf = np.asarray(rep["confusion"], dtype=float)
    extra = "missed" in rep
    if extra:  # a column for beats the detector never delivered
        conf = np.concatenate([conf, np.asarray(rep["missed"], float)[:, None]], axis=1)
    rows = conf.sum(axis=1, keepdims=True)
    frac = np.divide(conf, rows, out=np.zeros_like(conf), where=rows > 0)
    fig, ax = plt.subplots(figsize=(5.2 + extra, 4.6))
    ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    cols = labels + (["missed"] if extra else [])
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    for i in range(conf.shape[0]):
        for j in range(conf.shape[1]):
            ax.text(j, i, f"{int(conf[i, j])}\n{100 * frac[i, j]:.0f}%", ha="center", va="center",
                    fontsize=8, color="white" if frac[i, j] > 0.6 else "black")
    acc = rep.get("accuracy")
    ax.set_title((title + "\n" if title else "") + (f"accuracy {100 * acc:.1f}%" if acc is not None else ""),
                 fontsize=10)
    fig.tight_layout()
    try:
        return save_figure(fig, path, dpi=120)
    finally:
        plt.close(fig)


def scores_png(rep: dict, path, title: str = "") -> Path:
    """Predicted against true score, one column per subject: every trial (dots), the subject's
    mean prediction (bar) for the model and the baseline, and the identity line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pt = rep["per_trial"]
    subj, true = np.asarray(pt["subject"]), np.asarray(pt["true"], float)
    fig, ax = plt.subplots(figsize=(6.0, 5.0))
    lo, hi = min(true.min(), np.min(pt["pred"]), np.min(pt["baseline"])) - 1, max(true.max(), np.max(pt["pred"])) + 1
    ax.plot([lo, hi], [lo, hi], color="0.6", lw=1, zorder=0)
    rng = np.random.default_rng(0)
    for key, color, dx, name in (("pred", "tab:blue", -0.12, "ESN"), ("baseline", "tab:orange", 0.12, "baseline")):
        p = np.asarray(pt[key], float)
        ax.scatter(true + dx + rng.uniform(-0.04, 0.04, len(p)), p, s=8, alpha=0.35, color=color)
        for s in sorted(set(subj)):
            m = subj == s
            ax.plot([true[m][0] + dx - 0.1, true[m][0] + dx + 0.1], [p[m].mean()] * 2, color=color, lw=2.5,
                    label=name if s == subj[0] else None)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel(f"true {rep['target']}")
    ax.set_ylabel(f"predicted {rep['target']} (leave-subject-out)")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title((title + "\n" if title else "") + f"MAE {rep['mae']:.2f} (ESN) vs {rep['baseline']['mae']:.2f} "
                 f"(baseline); bars = subject means", fontsize=9)
    fig.tight_layout()
    try:
        return save_figure(fig, path, dpi=120)
    finally:
        plt.close(fig)


def latency_png(results, path, title: str = "") -> Path:
    """Per-call latency of one or more profiles: histogram (log time axis) and CDF, for the window
    call and the step call, p50/p99 marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = results if isinstance(results, list) else [results]
    fig, axes = plt.subplots(2, 2, figsize=(9.5, 6.2))
    for col, what in enumerate(("window", "step")):
        for res in results:
            us = np.asarray(res["latency_samples_us"][what], float)
            name = f"{Path(res['bundle']).name} ({res['runtime']})"
            bins = np.logspace(np.log10(max(us.min(), 0.1)), np.log10(us.max() * 1.01), 60)
            axes[0, col].hist(us, bins=bins, alpha=0.55, label=name)
            xs = np.sort(us)
            axes[1, col].plot(xs, np.arange(1, len(xs) + 1) / len(xs), label=name)
            for q, ls in ((50, "--"), (99, ":")):
                axes[1, col].axvline(np.percentile(us, q), ls=ls, lw=0.8, color=axes[1, col].lines[-1].get_color())
        for row in (0, 1):
            axes[row, col].set_xscale("log")
            axes[row, col].set_xlabel(f"{what} call latency (us)")
        axes[0, col].set_ylabel("calls")
        axes[1, col].set_ylabel("fraction of calls")
        axes[0, col].set_title(f"one {what}" + (" (dashed p50, dotted p99)" if col == 0 else ""), fontsize=9)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(title or "edgeseq profile", fontsize=10)
    fig.tight_layout()
    try:
        return save_figure(fig, path, dpi=110)
    finally:
        plt.close(fig)
