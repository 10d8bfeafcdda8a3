"""Offline predictions for a recording, as the board computes them: ``edgeseq predict``.

Decision: the labels come from the board's own path, not the host's evaluation recipe. An ECG
record is read by the numpy WFDB reader (:mod:`edgeseq.preprocess.wfdb_lite`), streamed in
chunks through :class:`~edgeseq.bridge.pipelines.EcgPipeline` (the bundle's band-pass,
streaming QRS detector, beat windows and RR features, then the bundle on ``edgeseq.runtime``),
exactly as ``edgeseq serve`` runs it; a non-finite output is counted, never a label. A balance
trial goes through the bundle's windows and model as in :func:`edgeseq.tasks.balance.window_outputs`.
So this module imports numpy, a runtime and the standard library only (the plot, on request,
needs matplotlib), and runs on the board; ``tests/test_predict.py`` checks it in a fresh interpreter.

``PREDICTORS`` maps a bundle's task to its predictor: a new task adds one entry.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from ..bundle import read_manifest
from ..errors import EdgeseqError, install_hint
from ..outputs import check_target, dumps, write_text
from ..runtime import runtime_info, runtime_label

#: A reference beat this close to a detected one is its reference (the EC57 matching window).
MATCH_S = 0.150
#: Samples per chunk fed to the pipeline (100 s at 360 Hz): what a board's serial reads would give,
#: in fewer calls.
CHUNK = 36_000


def _names(records) -> list[str]:
    names = [str(r).strip() for r in (records or []) if str(r).strip()]
    if not names:
        raise EdgeseqError("predict needs --records: the record(s) (ECG) or trial(s) (balance) to label")
    return list(dict.fromkeys(names))


# ---- ECG ---------------------------------------------------------------------------------------

def nearest_reference(samples, ref_samples, ref_labels, window: int) -> np.ndarray:
    """Per detected beat, the label index of the nearest reference beat within ``window`` samples,
    else -1 (``ref_samples`` sorted)."""
    samples, ref = np.asarray(samples, np.int64), np.asarray(ref_samples, np.int64)
    out = np.full(len(samples), -1, np.int64)
    if not len(ref) or not len(samples):
        return out
    j = np.searchsorted(ref, samples)
    lo, hi = np.clip(j - 1, 0, len(ref) - 1), np.clip(j, 0, len(ref) - 1)
    pick = np.where(np.abs(samples - ref[lo]) <= np.abs(ref[hi] - samples), lo, hi)
    ok = np.abs(ref[pick] - samples) <= window
    out[ok] = np.asarray(ref_labels, np.int64)[pick[ok]]
    return out


def _aami(rec):
    """Reference beats of a record as ``(samples, AAMI class index)``; None without annotations."""
    if rec.ann_samples is None:
        return None
    from ..data.mitdb import aami_beats  # the AAMI table; mitdb imports no reader at module level

    return aami_beats(rec.ann_samples, rec.ann_symbols)


def _check_window(start_s, seconds, n: int, fs: float, name: str) -> tuple[float, float]:
    duration = n / fs
    if start_s >= duration:
        raise EdgeseqError(f"--start {start_s:g} s is past the end of record {name} ({duration:.1f} s)")
    return start_s, min(seconds, duration - start_s)


def predict_ecg(bundle, data_dir, records, *, out=None, plot=None, start_s=None, seconds=None,
                threads: int = 1, progress: bool = True, echo=print) -> dict:
    """Label every beat of ``records`` as the board does; JSON lines to ``out``, a strip plot to
    ``plot``. Returns the summary."""
    from ..bridge.pipelines import EcgPipeline
    from ..bridge.tracker import Block
    from ..preprocess.wfdb_lite import read_header, read_record
    from ..progress import Progress

    names = _names(records)
    start_s = 0.0 if start_s is None else float(start_s)
    seconds = 10.0 if seconds is None else float(seconds)
    if plot is not None:
        _need_matplotlib()
    manifest = read_manifest(bundle)
    fs = float(manifest["sample_rate"])
    lead = manifest["preprocessing"]["lead"]
    targets = {}
    if plot is not None:  # one strip per record: strip.png, or strip.208.png, strip.209.png, ...
        targets = {n: plot if len(names) == 1 else Path(plot).with_name(f"{Path(plot).stem}.{n}{Path(plot).suffix}")
                   for n in names}
        for t in targets.values():
            check_target(t, "--plot")
    for name in names:  # every record there, at the bundle's rate, before the first is labelled
        h = read_header(Path(data_dir) / name)
        if abs(h.fs - fs) > 1e-6 * fs:
            raise EdgeseqError(f"record {name} is sampled at {h.fs:g} Hz, bundle {bundle} at {fs:g} Hz: "
                               "resample it on the host (edgeseq.data.mitdb)")
        if plot is not None and h.n_samples is not None:
            _check_window(start_s, seconds, h.n_samples, fs, name)
    labels = list(manifest["labels"])
    window = int(round(MATCH_S * fs))
    lines, summary_records = [], []
    totals = Counter()
    agree = matched = 0
    have_ref = False
    plots = []
    for name in names:
        rec = read_record(data_dir, name, lead=lead)
        ref = _aami(rec)
        show = Progress(f"record {name}", len(rec.signal), enabled=progress)
        pipe = EcgPipeline(bundle, threads=threads)  # each record its own stream and counters
        preds = []
        for i in range(0, len(rec.signal), CHUNK):
            preds += pipe.feed(Block(i, rec.signal[i:i + CHUNK, None], 0, 0, 0.0))
            show(min(i + CHUNK, len(rec.signal)))
        preds += pipe.flush()
        samples = np.array([p.sample for p in preds], np.int64)
        ref_idx = nearest_reference(samples, *ref, window) if ref is not None else None
        counts = Counter(p.label for p in preds)
        totals.update(counts)
        beats = []
        for i, p in enumerate(preds):
            line = {"record": name, "sample": int(p.sample), "time_s": round(p.sample / fs, 4), "label": p.label,
                    "confidence": round(p.score, 4), "probabilities": dict(zip(labels, p.scores))}
            if ref is not None:
                line["reference"] = labels[ref_idx[i]] if ref_idx[i] >= 0 else None
            lines.append(line)
            beats.append(line)
        rs = {"record": name, "beats": len(preds), "labels": {k: counts.get(k, 0) for k in labels},
              "trained_on": name in manifest.get("training", {}).get("records", [])}
        if ref is not None:
            have_ref = True
            got = ref_idx >= 0
            same = int(sum(labels[r] == p.label for r, p, g in zip(ref_idx, preds, got) if g))
            # reference beats no detected beat claimed: the detector missed them
            claimed = nearest_reference(ref[0], samples, np.zeros(len(samples), np.int64), window)
            rs["reference"] = {"beats": int(len(ref[0])), "matched": int(got.sum()),
                               "agreement": same / int(got.sum()) if got.any() else None,
                               "unmatched_detections": int((~got).sum()),
                               "missed_reference_beats": int((claimed < 0).sum())}
            agree, matched = agree + same, matched + int(got.sum())
        rs.update({k: v for k, v in pipe.summary().items() if k in ("nonfinite_outputs", "windows_dropped",
                                                                     "beats_unscored")})
        summary_records.append(rs)
        echo(_record_line(rs))
        if plot is not None:
            from ..plots import ecg_strip_png

            a, sec = _check_window(start_s, seconds, len(rec.signal), fs, name)
            title = f"record {name} ({lead}), {Path(bundle).name}, {runtime_label(manifest, threads)}"
            plots.append(str(ecg_strip_png(rec.signal, fs, beats, targets[name], start_s=a, seconds=sec, title=title,
                                           reference=(ref[0], [labels[k] for k in ref[1]]) if ref is not None
                                           else None, labels=labels, units=rec.units)))
    if out is not None:
        write_text(out, "".join(dumps(x) + "\n" for x in lines), "--out")
    summary = {"task": "ecg", "bundle": str(bundle), "runtime": runtime_info(manifest, threads), "records": names,
               "beats": sum(r["beats"] for r in summary_records), "labels": {k: totals.get(k, 0) for k in labels},
               "nonfinite_outputs": sum(r["nonfinite_outputs"] for r in summary_records)}
    if have_ref:
        summary["reference"] = {"matched": matched, "agreement": agree / matched if matched else None}
    if out is not None:
        summary["out"] = str(out)
    if plots:
        summary["plots"] = plots
    return summary


def _record_line(rs: dict) -> str:
    counts = " ".join(f"{k}={v}" for k, v in rs["labels"].items())
    text = f"{rs['record']}: {rs['beats']} beats ({counts})"
    r = rs.get("reference")
    if r:
        agree = f"{100 * r['agreement']:.1f}%" if r["agreement"] is not None else "n/a"
        text += (f"; against the {r['beats']} annotated beats: {r['matched']} labelled beats have one within "
                 f"150 ms, same label {agree}; {r['unmatched_detections']} have none; "
                 f"{r['missed_reference_beats']} annotated beats have no labelled beat")
        if rs.get("trained_on"):  # agreement on a training record says little about a new patient
            text += " (the bundle was trained on this record)"
    if rs.get("nonfinite_outputs"):
        text += f"; {rs['nonfinite_outputs']} beats with non-finite outputs (not labelled)"
    return text


def _need_matplotlib() -> None:
    """Before the work: a board without the plotting extra learns it in one line, not after the labels."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise EdgeseqError(f"--plot needs matplotlib, part of the 'train' extra: {install_hint('train')}")


# ---- balance -----------------------------------------------------------------------------------

def predict_balance(bundle, data_dir, records, *, out=None, plot=None, start_s=None, seconds=None,
                    threads: int = 1, progress: bool = True, echo=print) -> dict:
    """Per window of each trial: the score (or label) the board gives; per trial the average
    (of scores, or of decision values, as cross-validation scores a trial)."""
    from ..data.hbedb import load_trial  # numpy and csv only: runs on a board too
    from ..finite import decide
    from ..preprocess.balance import BalancePreprocessing
    from ..runtime import load
    from .balance import CLASS_TARGETS, window_outputs

    if plot is not None or start_s is not None or seconds is not None:
        raise EdgeseqError("--plot, --start and --seconds draw an ECG strip: a balance bundle has none")
    names = _names(records)
    model = load(bundle, task="balance", threads=threads)
    m = model.manifest
    target, labels = m["target"], list(m["labels"])
    prep = BalancePreprocessing.from_config(m["preprocessing"])
    trials = [load_trial(data_dir, n, fs=prep.sample_rate) for n in names]  # every trial read first
    lines, per_trial, nonfinite = [], [], 0
    for t in trials:
        try:
            X, _, starts = prep.windows(t.forces)
        except EdgeseqError as e:
            raise EdgeseqError(f"trial {t.name}: {e}") from None
        with np.errstate(all="ignore"):
            Y = np.asarray(window_outputs(model, X), np.float64)
        truth = _truth(t, target, CLASS_TARGETS)
        for i, (s, y) in enumerate(zip(starts, Y)):
            line = {"trial": t.name, "subject": t.subject, "window": i, "start_s": round(s / prep.sample_rate, 3),
                    "end_s": round((s + prep.window) / prep.sample_rate, 3)}
            line.update(_balance_value(y, labels, decide))
            nonfinite += line[("label" if labels else "score")] is None
            lines.append(line)
            echo(f"{t.name} window {i} ({line['start_s']:g}-{line['end_s']:g} s): {_value_text(line)}")
        trial = {"trial": t.name, "subject": t.subject, "windows": len(Y)}
        trial.update(_balance_value(Y.mean(axis=0), labels, decide))
        trial["reference"] = truth
        lines.append(trial)
        per_trial.append((trial, Y.mean(axis=0)))
        echo(f"{t.name}: mean of {len(Y)} windows: {_value_text(trial)} (reference {target}: {truth})")
    if out is not None:
        write_text(out, "".join(dumps(x) + "\n" for x in lines), "--out")
    summary = {"task": "balance", "target": target, "bundle": str(bundle), "runtime": runtime_info(m, threads),
               "trials": names, "windows": sum(t["windows"] for t, _ in per_trial), "nonfinite_outputs": nonfinite}
    if labels:
        got = [t for t, _ in per_trial if t["label"] is not None]
        summary["labels"] = {k: sum(t["label"] == k for t in got) for k in labels}
        summary["agreement"] = sum(t["label"] == t["reference"] for t in got) / len(got) if got else None
    else:
        err = [abs(y[0] - t["reference"]) for t, y in per_trial if np.isfinite(y[0]) and t["reference"] is not None]
        summary["mae"] = float(np.mean(err)) if err else None
    if out is not None:
        summary["out"] = str(out)
    return summary


def _truth(trial, target: str, class_targets: dict):
    """The trial's own value of the bundle's target (a label or a score; None if the data lack it)."""
    if target in class_targets:
        return trial.condition if class_targets[target] is None else getattr(trial, target)
    return trial.scores.get(target)


def _balance_value(y, labels, decide) -> dict:
    y = np.atleast_1d(np.asarray(y, np.float64))
    if not labels:
        return {"score": round(float(y[0]), 4) if np.isfinite(y[0]) else None}
    (k,), (p,) = decide(y.reshape(1, -1))
    if k < 0:
        return {"label": None, "confidence": None, "probabilities": None}
    return {"label": labels[k], "confidence": round(float(p[k]), 4),
            "probabilities": {c: round(float(v), 4) for c, v in zip(labels, p)}}


def _value_text(line: dict) -> str:
    if "score" in line:
        return "non-finite output (not scored)" if line["score"] is None else f"score {line['score']:.2f}"
    return "non-finite output (not labelled)" if line["label"] is None else f"{line['label']} {line['confidence']:.2f}"


PREDICTORS = {"ecg": predict_ecg, "balance": predict_balance}


def predict(bundle, data_dir, records, **options) -> dict:
    """The predictor of the bundle's task (``PREDICTORS``); outputs checked before any work."""
    manifest = read_manifest(bundle)
    task = manifest.get("task")
    if task not in PREDICTORS:
        raise EdgeseqError(f"bundle {bundle}: predict knows tasks {', '.join(PREDICTORS)}, not {task!r}")
    if not Path(data_dir).is_dir():
        raise EdgeseqError(f"data directory {data_dir} does not exist")
    for key, what in (("out", "--out"), ("plot", "--plot")):
        if options.get(key) is not None:
            check_target(options[key], what)
    return PREDICTORS[task](bundle, data_dir, records, **options)
