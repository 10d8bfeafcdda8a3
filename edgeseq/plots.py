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
    cols = labels + (["missed"] if extra else [])
    # Cells of a fixed size (smaller past 6 classes), the figure sized around them and the longest
    # name: names never overlap, however many classes or however long their names. A column name
    # wider than its cell (10 pt: about 0.09 in a character) is turned 35 degrees.
    cell = 0.85 if len(cols) <= 6 else 0.65
    longest = max(len(str(c)) for c in cols)
    turn = 0.09 * longest > 0.9 * cell
    fig, ax = plt.subplots(figsize=(max(4.6, 1.3 + 0.09 * longest + cell * len(cols)),
                                    max(3.8, 1.3 + (0.06 * longest if turn else 0.3) + cell * len(labels))))
    ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(labels)), labels)
    if turn:
        plt.setp(ax.get_xticklabels(), rotation=35, ha="right", rotation_mode="anchor")
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    for i in range(conf.shape[0]):
        for j in range(conf.shape[1]):
            ax.text(j, i, f"{int(conf[i, j])}\n{100 * frac[i, j]:.0f}%", ha="center", va="center",
                    fontsize=8 if len(cols) <= 6 else 6.5, color="white" if frac[i, j] > 0.6 else "black")
    acc = rep.get("accuracy")
    ax.set_title((title + "\n" if title else "") + (f"accuracy {100 * acc:.1f}%" if acc is not None else ""),
                 fontsize=10)
    fig.tight_layout()
    try:
        return save_figure(fig, path, dpi=120, bbox_inches="tight")  # nothing clipped at the edges
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
        # A log axis under two decades labels its minor ticks too (2x10^2, 3x10^2...), which collide:
        # label at most 6 round numbers (1-2-5, else 1-3, else powers of ten), the minor ticks bare.
        from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

        lo = min(max(np.min(r["latency_samples_us"][what]), 0.1) for r in results) / 1.05
        hi = max(np.max(r["latency_samples_us"][what]) for r in results) * 1.05
        decades = range(int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi))) + 1)
        for subs in ((1, 2, 5), (1, 3), (1,)):
            ticks = [m * 10.0 ** e for e in decades for m in subs if lo <= m * 10.0 ** e <= hi]
            if len(ticks) <= 6:
                break
        if len(ticks) < 2:  # a range narrower than one step: its ends, rounded
            ticks = sorted({float(f"{lo * 1.05:.2g}"), float(f"{hi / 1.05:.2g}")})
        for row in (0, 1):
            ax = axes[row, col]
            ax.set_xscale("log")
            ax.set_xlim(lo, hi)
            ax.xaxis.set_major_locator(FixedLocator(ticks))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 10 else f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel(f"{what} call latency (us)")
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


#: Label colours of the strip: N stays ink, every other class stands out.
STRIP_COLOURS = {"N": "#1a1a1a", "S": "#1f5fbf", "V": "#c8102e", "F": "#d97a00", "Q": "#2e8b57"}


def ecg_strip_png(signal, fs: float, beats, path, *, start_s: float = 0.0, seconds: float = 10.0, title: str = "",
                  reference=None, labels=("N", "S", "V", "F", "Q"), units: str = "mV") -> Path:
    """An ECG rhythm strip as a cardiologist reads one: the raw signal on pink paper at 25 mm/s and
    10 mm/mV (minor grid 0.04 s x 0.1 mV, major 0.2 s x 0.5 mV, squares kept square), 10 s per row.

    ``beats``: dicts with ``sample``, ``label``, ``confidence`` (and ``reference``), drawn above the
    complex as the label over its confidence, a dot on the R peak, non-N in colour; neighbours
    closer than a label's width alternate between two heights. ``reference``: ``(samples,
    labels)`` of the annotated beats, drawn under the trace in grey where the nearest label within
    150 ms is the same and in red where it differs or no beat was found there; a detection with no
    annotated beat gets a red dash. Decision: the raw signal, not the band-passed one the model
    reads: it is the trace a clinician knows (baseline wander included)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    x = np.asarray(signal, dtype=float)
    a = max(0, int(round(start_s * fs)))
    b = min(len(x), a + max(1, int(round(seconds * fs))))
    row_s = min(10.0, (b - a) / fs)
    rows = [(a + int(round(k * row_s * fs)), min(b, a + int(round((k + 1) * row_s * fs))))
            for k in range(int(np.ceil((b - a) / fs / row_s - 1e-9)))]
    window = int(round(0.150 * fs))
    ref_s = np.asarray(reference[0], np.int64) if reference is not None else np.zeros(0, np.int64)
    ref_l = list(reference[1]) if reference is not None else []
    beat_s = np.array([bt["sample"] for bt in beats], np.int64)
    label_band, ref_band = 1.0, 0.6  # mV kept free above and below the trace (a text line ~0.25 mV)
    spans = []
    for r0, r1 in rows:
        seg = x[r0:r1]
        # the whole trace, R peaks included; only a spike far beyond the rest (an artifact) may
        # leave the paper, so that it cannot squash the row
        p_lo, p_hi = np.percentile(seg, [0.2, 99.8])
        top = seg.max() if seg.max() - p_hi < 1.5 else p_hi
        bottom = seg.min() if p_lo - seg.min() < 1.5 else p_lo
        lo = np.floor((bottom - ref_band) / 0.5) * 0.5
        hi = np.ceil((top + label_band) / 0.5) * 0.5
        spans.append((lo, hi))
    mm = 1 / 25.4  # inches
    heights = [(hi - lo) * 10 * mm for lo, hi in spans]  # the paper's true size: 10 mm per mV
    width = row_s * 25 * mm  # and 25 mm per second
    left, right, top, bottom, gap = 0.55, 0.15, 0.62 if reference is not None else 0.5, 0.42, 0.3  # inches
    fig_w, fig_h = width + left + right, sum(heights) + gap * (len(rows) - 1) + top + bottom
    fig, axes = plt.subplots(len(rows), 1, figsize=(fig_w, fig_h), gridspec_kw={"height_ratios": heights},
                             squeeze=False)
    fig.subplots_adjust(left=left / fig_w, right=1 - right / fig_w, top=1 - top / fig_h, bottom=bottom / fig_h,
                        hspace=gap / (sum(heights) / len(rows)))
    for (r0, r1), (lo, hi), ax in zip(rows, spans, axes[:, 0]):
        t0 = r0 / fs
        ax.set_xlim(t0, t0 + row_s)
        ax.set_ylim(lo, hi)
        ax.set_aspect(0.4)  # 1 mV (10 mm) against 1 s (25 mm): the paper's squares stay square
        ax.xaxis.set_major_locator(MultipleLocator(0.2))
        ax.xaxis.set_minor_locator(MultipleLocator(0.04))
        ax.yaxis.set_major_locator(MultipleLocator(0.5))
        ax.yaxis.set_minor_locator(MultipleLocator(0.1))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0f}" if abs(v - round(v)) < 1e-6 else ""))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.grid(which="minor", color="#f7cfd4", lw=0.35)
        ax.grid(which="major", color="#e58f9b", lw=0.8)
        ax.set_axisbelow(True)
        ax.tick_params(which="both", length=0, labelsize=6, colors="#7a3b44")
        for side in ax.spines.values():
            side.set_color("#e58f9b")
        ax.set_facecolor("#fff6f6")
        t = np.arange(r0, r1) / fs
        ax.plot(t, x[r0:r1], color="black", lw=0.7, zorder=3)
        ax.set_ylabel(units, fontsize=7, color="#7a3b44")
        last = [-np.inf, -np.inf]  # last label x per height level
        for bt in beats:
            s = int(bt["sample"])
            if not r0 <= s < r1:
                continue
            tx, lab = s / fs, bt["label"]
            colour = STRIP_COLOURS.get(lab, "#6a3d9a")
            level = 0 if tx - last[0] >= 0.24 else 1 if tx - last[1] >= 0.24 else 0
            last[level] = tx
            y = hi - 0.08 - level * 0.5
            # the detector's fiducial point, marked under the label: on the trace it would sit on a
            # slope of the raw complex (the detector reads the band-passed signal)
            ax.plot(tx, y - 0.6, "v", ms=2.6, color=colour, zorder=4)
            ax.text(tx, y, lab, ha="center", va="top", fontsize=7.5, color=colour,
                    fontweight="normal" if lab == "N" else "bold", zorder=5)
            ax.text(tx, y - 0.2, f"{bt['confidence']:.2f}", ha="center", va="top", fontsize=5.5, color=colour, zorder=5)
            if reference is not None and bt.get("reference", "") is None:  # a detection with no annotated beat
                ax.text(tx, lo + 0.06, "\u2013", ha="center", va="bottom", fontsize=8, color="#c8102e",
                        fontweight="bold", zorder=5)
        for s, lab in zip(ref_s, ref_l):
            if not r0 <= s < r1:
                continue
            near = np.abs(beat_s - s)
            j = int(np.argmin(near)) if len(near) else -1
            same = j >= 0 and near[j] <= window and beats[j]["label"] == lab
            colour = "#8c8c8c" if same else "#c8102e"
            ax.plot(s / fs, lo + 0.47, "^", ms=2.6, color=colour, zorder=4)
            ax.text(s / fs, lo + 0.04, lab, ha="center", va="bottom", fontsize=6.5, color=colour,
                    fontweight="normal" if same else "bold", zorder=5)
    axes[-1, 0].set_xlabel("time (s)", fontsize=7, color="#7a3b44")
    key = ("25 mm/s, 10 mm/mV; small squares 0.04 s x 0.1 mV. Above each beat: label and softmax confidence "
           "(" + ", ".join(f"{k}" for k in labels) + "; non-N in colour).")
    if reference is not None:
        key += ("\nBelow: reference annotation (grey = same label, red = another label or no labelled beat within "
                "150 ms; a red dash: a labelled beat with no annotated beat).")
    fig.suptitle((title + "\n" if title else "") + key, fontsize=7.5, x=left / fig_w, y=1 - 0.06 / fig_h,
                 ha="left", va="top")
    try:
        return save_figure(fig, path, dpi=150)
    finally:
        plt.close(fig)
