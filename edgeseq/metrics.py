"""Classification figures in the AAMI EC57 style: confusion matrix, per-class Se and +P.

Numpy only. Sensitivity (Se) = TP / reference beats of the class; positive predictivity (+P) =
TP / beats predicted as the class. When beats come from a detector, a reference beat with no
prediction counts against Se of its class, and a detection with no reference beat counts against
+P of the class it was given: a missed or invented beat is an error, never silently dropped.
"""

from __future__ import annotations

import numpy as np


def confusion(y_true, y_pred, n_classes: int) -> np.ndarray:
    """``conf[i, j]`` = beats of reference class i predicted as j."""
    idx = np.asarray(y_true, np.int64) * n_classes + np.asarray(y_pred, np.int64)
    return np.bincount(idx, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def _ratio(num: float, den: float) -> float | None:
    return float(num / den) if den else None


def report(conf: np.ndarray, labels, *, missed=None, false_detections=None) -> dict:
    """JSON-ready figures from a confusion matrix.

    ``missed[i]``: reference beats of class i that got no prediction (detector misses);
    ``false_detections[j]``: predictions of class j on detections matching no reference beat.
    """
    conf = np.asarray(conf, dtype=np.int64)
    k = len(labels)
    missed = np.zeros(k, np.int64) if missed is None else np.asarray(missed, np.int64)
    false_det = np.zeros(k, np.int64) if false_detections is None else np.asarray(false_detections, np.int64)
    tp = np.diag(conf)
    n_ref = conf.sum(axis=1) + missed
    n_pred = conf.sum(axis=0) + false_det
    classes = {lab: {"se": _ratio(tp[i], n_ref[i]), "ppv": _ratio(tp[i], n_pred[i]), "n": int(n_ref[i])}
               for i, lab in enumerate(labels)}
    n_beats = int(n_ref.sum())
    out = {"n_beats": n_beats, "accuracy": _ratio(tp.sum(), n_beats + false_det.sum()),
           "labels": list(labels), "confusion": conf.tolist(), "classes": classes}
    if missed.any() or false_det.any():
        out["missed"] = missed.tolist()
        out["false_detections"] = false_det.tolist()
    return out


def format_table(rep: dict, title: str | None = None) -> str:
    """The per-class table a person reads in the terminal."""
    lines = [title] if title else []
    lines.append(f"{'class':<6}{'n':>8}{'Se %':>9}{'+P %':>9}")
    for lab in rep["labels"]:
        c = rep["classes"][lab]
        se = "-" if c["se"] is None else f"{100 * c['se']:.1f}"
        ppv = "-" if c["ppv"] is None else f"{100 * c['ppv']:.1f}"
        lines.append(f"{lab:<6}{c['n']:>8}{se:>9}{ppv:>9}")
    acc = rep["accuracy"]
    lines.append(f"accuracy {100 * acc:.2f}% over {rep['n_beats']} beats" if acc is not None else "no beats")
    det = rep.get("detection")
    if det:
        lines.append(f"detection Se {100 * det['se']:.2f}%  +P {100 * det['ppv']:.2f}%  "
                     f"({det['n_detected']} detected / {det['n_reference']} reference beats)")
    return "\n".join(lines)
