"""Pictures for results (host side; matplotlib is imported only when a plot is drawn)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


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
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
