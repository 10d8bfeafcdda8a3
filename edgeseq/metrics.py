"""Classification figures in the AAMI EC57 style: confusion matrix, per-class Se and +P, and how
far they can be trusted (per-record table, bootstrap intervals, mean and worst fold).

Numpy only. Sensitivity (Se) = TP / reference beats of the class; positive predictivity (+P) =
TP / beats predicted as the class. When beats come from a detector, a reference beat with no
prediction counts against Se of its class, and a detection with no reference beat counts against
+P of the class it was given: a missed or invented beat is an error, never silently dropped.

Per record, those misses and false detections travel inside the confusion matrix itself: an
*extended* matrix has one more row and column, "no beat" (``ext[i, k]``: reference beats of class
i that got no prediction; ``ext[k, j]``: detections predicted j with no reference beat). Se and
+P are then diagonal over row and column sums and accuracy is trace over total, for plain and
extended matrices alike, so per-record matrices add up to the pooled figures exactly.

Confidence intervals resample *records* (patients), not beats: the beats of one patient share
morphology, rhythm and noise and are far from independent, so a beat bootstrap would give
intervals as if 50,000 patients had been seen when there were 22. The record bootstrap asks
instead how much the pooled figure moves if another set of patients like these had been recorded.
"""

from __future__ import annotations

import numpy as np


def confusion(y_true, y_pred, n_classes: int) -> np.ndarray:
    """``conf[i, j]`` = beats of reference class i predicted as j."""
    idx = np.asarray(y_true, np.int64) * n_classes + np.asarray(y_pred, np.int64)
    return np.bincount(idx, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def extended(conf, missed=None, false_detections=None) -> np.ndarray:
    """The ``(k+1, k+1)`` matrix with a "no beat" row and column (see the module docstring)."""
    conf = np.asarray(conf, np.int64)
    k = len(conf)
    ext = np.zeros((k + 1, k + 1), np.int64)
    ext[:k, :k] = conf
    if missed is not None:
        ext[:k, k] = missed
    if false_detections is not None:
        ext[k, :k] = false_detections
    return ext


def _split(m: np.ndarray, k: int):
    """``(conf, missed, false_detections)`` of a plain ``(k, k)`` or extended ``(k+1, k+1)`` matrix."""
    m = np.asarray(m, np.int64)
    if m.shape == (k, k):
        return m, None, None
    if m.shape != (k + 1, k + 1):
        raise ValueError(f"confusion matrix of shape {m.shape} for {k} labels")
    return m[:k, :k], m[:k, k], m[k, :k]


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


def per_record(confusions_by_record: dict, labels, folds: dict | None = None) -> dict:
    """``{record: figures}`` in the layout of :func:`report` (less the shared ``labels``), with
    ``fold`` when ``folds`` (record -> fold index) is given.

    Plain or extended matrices (see the module docstring); a record's misses and false detections
    appear as ``missed``/``false_detections`` exactly as in the pooled report.
    """
    k = len(labels)
    out = {}
    for name, m in confusions_by_record.items():
        conf, missed, false_det = _split(m, k)
        rep = report(conf, labels, missed=missed, false_detections=false_det)
        del rep["labels"]
        out[str(name)] = ({"fold": int(folds[name])} if folds is not None else {}) | rep
    return out


def _interval(values: np.ndarray, defined: np.ndarray, level: float) -> list[float] | None:
    v = values[defined]
    if not len(v):
        return None
    tail = 50 * (1 - level)
    lo, hi = np.percentile(v, [tail, 100 - tail])
    return [float(lo), float(hi)]


def bootstrap_ci(confusions_by_record, labels, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """Percentile intervals of pooled accuracy and every class's Se and +P, records resampled.

    Each replicate draws ``n_records`` records with replacement (a multinomial count per record),
    and its pooled matrix is the count-weighted sum of the per-record matrices: one tensordot for
    all replicates, no loop. A ratio with no denominator in a replicate (no beats of the class
    drawn, or none predicted as it) has no value there and is left out of its interval, so the
    interval is conditional on the class being present; with no replicate defined it is None.
    A single record gives a zero-width interval: with one patient nothing can be said about others.
    So does a class whose beats all sit in one record (its Se is that record's in every replicate
    holding it): ``records`` counts the records behind each ratio's denominator so that such an
    interval can be told apart from a precise one (the table prints "1 record" instead).
    """
    if isinstance(confusions_by_record, dict):
        mats = list(confusions_by_record.values())
    else:
        mats = list(confusions_by_record)
    k = len(labels)
    if not mats:
        raise ValueError("bootstrap_ci needs at least one record")
    stack = np.stack([np.asarray(m, np.float64) for m in mats])  # (R, m, m); counts are exact in float64
    _split(stack[0], k)  # shape check
    n_rec = len(stack)
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n_rec, np.full(n_rec, 1.0 / n_rec), size=n_boot).astype(np.float64)
    boot = np.tensordot(counts, stack, axes=(1, 0))  # (B, m, m)
    idx = np.arange(k)
    tp = boot[:, idx, idx]
    n_ref, n_pred = boot.sum(axis=2)[:, :k], boot.sum(axis=1)[:, :k]
    total = boot.sum(axis=(1, 2))

    def frac(num, den):
        with np.errstate(divide="ignore", invalid="ignore"):
            return num / den, den > 0

    acc, acc_ok = frac(tp.sum(axis=1), total)
    se, se_ok = frac(tp, n_ref)
    ppv, ppv_ok = frac(tp, n_pred)
    with_ref = (stack.sum(axis=2)[:, :k] > 0).sum(axis=0)
    with_pred = (stack.sum(axis=1)[:, :k] > 0).sum(axis=0)
    return {"accuracy": _interval(acc, acc_ok, level),
            "classes": {lab: {"se": _interval(se[:, i], se_ok[:, i], level),
                              "ppv": _interval(ppv[:, i], ppv_ok[:, i], level),
                              "records": {"se": int(with_ref[i]), "ppv": int(with_pred[i])}}
                        for i, lab in enumerate(labels)},
            "level": level, "n_boot": int(n_boot), "seed": int(seed), "unit": "record", "n_units": int(n_rec)}


def _mean_min(values: list) -> dict | None:
    got = [(v, i) for i, v in enumerate(values) if v is not None]
    if not got:
        return None
    low, worst = min(got)
    return {"mean": float(np.mean([v for v, _ in got])), "min": float(low), "worst_fold": worst,
            "n_folds": len(got)}


def fold_summary(fold_reports: list[dict], labels) -> dict:
    """Mean and worst (minimum) over folds of accuracy and each class's Se and +P.

    A fold where a ratio is undefined (no beats of the class, or none predicted as it) is left out
    of that ratio's mean and minimum, rather than counted as 0 or 1: it says nothing either way.
    ``worst_fold`` is the fold's index and ``n_folds`` how many folds entered. The minimum over a
    fold with a handful of beats of a class is noisy; the per-record table shows the counts.
    """
    out = {"accuracy": _mean_min([f["accuracy"] for f in fold_reports])}
    for lab in labels:
        out[lab] = {r: _mean_min([f["classes"][lab][r] for f in fold_reports]) for r in ("se", "ppv")}
    return out


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _ci(iv, n_records: int | None = None) -> str:
    if iv is None:
        return ""
    if n_records == 1:  # a zero-width interval from one patient is not precision
        return "(1 record)"
    return f"[{100 * iv[0]:.1f}-{100 * iv[1]:.1f}]"


def format_table(rep: dict, title: str | None = None) -> str:
    """The per-class table a person reads in the terminal: with ``ci95`` the interval beside Se
    and +P, with ``fold_summary`` the worst fold's Se/+P; within 80 columns either way."""
    lines = [title] if title else []
    ci = rep.get("ci95")
    fs = rep.get("fold_summary")
    head = f"{'class':<6}{'n':>8}"
    head += f"{'Se %':>7}  {'[95% CI]':<13}{'+P %':>6}  {'[95% CI]':<13}" if ci else f"{'Se %':>9}{'+P %':>9}"
    if fs:
        head += f"{'':>2}worst fold Se / +P"
    lines.append(head.rstrip())
    for lab in rep["labels"]:
        c = rep["classes"][lab]
        row = f"{lab:<6}{c['n']:>8,}"
        if ci:
            cc = ci["classes"][lab]
            nrec = cc.get("records", {})  # absent from JSONs written before it existed
            row += (f"{_pct(c['se']):>7}  {_ci(cc['se'], nrec.get('se')):<13}"
                    f"{_pct(c['ppv']):>6}  {_ci(cc['ppv'], nrec.get('ppv')):<13}")
        else:
            row += f"{_pct(c['se']):>9}{_pct(c['ppv']):>9}"
        if fs:
            se, ppv = (fs[lab][r] and fs[lab][r]["min"] for r in ("se", "ppv"))
            row += f"{'':>2}{_pct(se):>5} / {_pct(ppv)}"
        lines.append(row.rstrip())
    acc = rep["accuracy"]
    scored = rep.get("n_scored")
    if scored is not None and scored < rep["n_beats"]:
        # Beats left out of the matrix are said, not hidden: missed by the detector, windows that
        # did not fit, or outputs that were not finite (counted by finite.decide, never labelled).
        unl = rep.get("unlabelled", 0)
        why = f" ({unl:,} with non-finite model output)" if unl else ""
        missed = rep["n_beats"] - scored
        lines.append(f"scored {scored:,} of {rep['n_beats']:,} reference beats; {missed:,} missed{why}")
    if acc is None:
        lines.append("no beats scored: no accuracy" if scored == 0 else "no beats")
    else:
        line = f"accuracy {100 * acc:.2f}%"
        if ci and ci["accuracy"] is not None:
            line += f" {_ci(ci['accuracy'])}"
        line += f" over {rep['n_beats']:,} beats"
        if fs and fs["accuracy"] is not None:
            a = fs["accuracy"]
            line += f"; folds: mean {100 * a['mean']:.1f}%, worst {100 * a['min']:.1f}% (fold {a['worst_fold']})"
        lines.append(line)
    if ci:
        few = "; too few records for a reliable interval" if ci["n_units"] < 10 else ""
        lines.append(f"[95% CI]: bootstrap over {ci['n_units']} records ({ci['n_boot']} replicates){few}")
    pr = rep.get("per_record")
    if pr and len(pr) > 1:
        name, r = min(((n, r) for n, r in pr.items() if r["accuracy"] is not None),
                      key=lambda x: x[1]["accuracy"], default=(None, None))
        if name is not None:
            fold = f", fold {r['fold']}" if "fold" in r else ""
            lines.append(f"lowest record: {name}, accuracy {100 * r['accuracy']:.1f}% over {r['n_beats']:,} beats{fold}")
    det = rep.get("detection")
    if det:
        pct = lambda x: "-" if x is None else f"{100 * x:.2f}%"  # noqa: E731  (None: no beat to divide by)
        lines.append(f"detection Se {pct(det['se'])}  +P {pct(det['ppv'])}  "
                     f"({det['n_detected']} detected / {det['n_reference']} reference beats)")
    return "\n".join(lines)
