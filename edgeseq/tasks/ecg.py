"""The ECG arrhythmia task on the host: records -> beats -> model -> bundle, and bundle -> figures.

``train`` writes a bundle; ``evaluate`` reads one and scores it on records, either at the annotated
beats (as the literature reports) or at the beats the streaming detector finds (as the device
would); ``cross_validate`` gives record-grouped (patient-wise) figures inside one data set.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..bundle import check_bundle_target, load_bundle, write_bundle
from ..data.mitdb import AAMI_CLASSES, DS1, DS2, PACED, list_records, load_record, select_records
from ..errors import EdgeseqError
from ..finite import decide
from ..metrics import bootstrap_ci, confusion, extended, fold_summary, per_record, report
from ..models import build, family
from ..preprocess.ecg import RR_FEATURES, EcgPreprocessing
from ..preprocess.qrs import QRSDetector, match_beats
from ..progress import Progress

TASK = "ecg"
N_CLASSES = len(AAMI_CLASSES)


@dataclass
class BeatSet:
    """Model inputs for the annotated beats of several records, one row per beat."""

    windows: np.ndarray  # (n, window_length) float32
    rr: np.ndarray  # (n, len(RR_FEATURES)) float32
    labels: np.ndarray  # (n,) int64 AAMI class index
    record_index: np.ndarray  # (n,) int64 into ``records``
    records: list[str]

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=N_CLASSES)
        return {c: int(n) for c, n in zip(AAMI_CLASSES, counts)}


def load_beats(data_dir, records: list[str], prep: EcgPreprocessing, *, progress=True) -> BeatSet:
    windows, rr, labels, rec_idx = [], [], [], []
    show = Progress("reading records", len(records), enabled=progress)
    for i, name in enumerate(records):
        rec = load_record(data_dir, name, fs=prep.sample_rate, lead=prep.lead)
        w, f, idx = prep.beats(rec.signal, rec.beat_samples)
        windows.append(w)
        rr.append(f)
        labels.append(rec.beat_labels[idx])
        rec_idx.append(np.full(len(idx), i, np.int64))
        show(i + 1, note=name)
    return BeatSet(np.concatenate(windows), np.concatenate(rr), np.concatenate(labels),
                   np.concatenate(rec_idx), list(records))


def _build_model(kind: str, seed: int, params: dict | None, *, size: str | None = None,
                 device: str | None = None):
    """The estimator of family ``kind`` (the registry's); ``size`` and ``device`` are the CLI's
    ``--size``/``--device`` (explicit ``params`` win over what ``size`` implies)."""
    return build(TASK, kind, seed=seed, params=params, size=size, device=device)


def _model_section(kind: str, est, prep: EcgPreprocessing) -> dict:
    section = {"kind": kind, "params": est.bundle_params(),
               "input": {"window_length": prep.window_length, "rr_features": list(RR_FEATURES)}}
    arch = est.architecture()
    if arch is not None:
        section["architecture"] = arch
    return section


def train(data_dir, records=None, *, out, model: str = "esn", seed: int = 0, params: dict | None = None,
          prep: EcgPreprocessing | None = None, include_paced: bool = False, progress: bool = True,
          size: str | None = None, device: str | None = None) -> dict:
    """Fit a model on the annotated beats of ``records`` and write a bundle to ``out``."""
    t0 = time.perf_counter()
    check_bundle_target(out)  # before the work: a refused --out must not cost a training run
    est = _build_model(model, seed, params, size=size, device=device)  # bad --param: before reading too
    prep = prep or EcgPreprocessing()
    names = select_records(data_dir, records, include_paced=include_paced)
    beats = load_beats(data_dir, names, prep, progress=progress)
    if len(beats.labels) == 0:
        raise EdgeseqError(f"no usable beats in records {', '.join(names)} of {data_dir}")
    t_load = time.perf_counter() - t0
    est.fit(beats.windows, beats.labels, beats.rr, n_classes=N_CLASSES,
            progress=est.fit_progress(model, len(beats.labels), progress))
    seconds = time.perf_counter() - t0
    manifest = {
        "task": TASK,
        "sample_rate": prep.sample_rate,
        "lead": prep.lead,
        "labels": list(AAMI_CLASSES),
        "preprocessing": prep.config(),
        "detector": QRSDetector(prep.sample_rate).config(),
        "model": _model_section(model, est, prep),
        "training": {"data": str(data_dir), "records": names, "n_beats": int(len(beats.labels)),
                     "class_counts": beats.class_counts(), "seconds": round(seconds, 2),
                     "seconds_reading": round(t_load, 2), **getattr(est, "training_", {})},
    }
    path = write_bundle(out, manifest, est.to_arrays())
    return {"bundle": str(path), **manifest["training"]}


def load_model(bundle_path):
    """``(bundle, preprocessing, estimator)`` from a verified ECG bundle."""
    bundle = load_bundle(bundle_path, task=TASK)
    m = bundle.manifest
    prep = EcgPreprocessing.from_config(m["preprocessing"])
    est = family(m).estimator.from_arrays(m["model"]["params"], bundle.arrays)
    return bundle, prep, est


def load_predictor(bundle_path, threads: int = 1):
    """``(model, preprocessing, predict(windows, rr) -> labels)``: one runtime for every bundle, an
    exported one on its format's runtime, a training one on the numpy interpreter of its family's
    description (``edgeseq.runtime.load``)."""
    from ..runtime import load

    model = load(bundle_path, task=TASK, threads=threads)
    prep = EcgPreprocessing.from_config(model.manifest["preprocessing"])
    return model, prep, lambda w, f: model.classify(np.asarray(w, np.float32), np.asarray(f, np.float32))


def _default_eval_records(data_dir, trained: list[str]) -> tuple[list[str], bool]:
    """Records present that the bundle did not train on; all of them if there are none."""
    present = [r for r in list_records(data_dir) if r not in PACED]
    known = [r for r in present if r in DS1 or r in DS2] or present
    unseen = [r for r in known if r not in trained]
    return (unseen, False) if unseen else (known, True)


def _outside(samples: np.ndarray, episodes) -> np.ndarray:
    keep = np.ones(len(samples), dtype=bool)
    for a, b in episodes:
        keep &= ~((samples >= a) & (samples <= b))
    return keep


def evaluate(bundle_path, data_dir, records=None, *, beats: str = "reference", include_paced: bool = False,
             progress: bool = True, threads: int = 1, on_beats=None) -> dict:
    """Score a bundle on records. ``beats="detected"`` finds the beats with the streaming detector
    stored in the bundle; missed reference beats and false detections count as errors.

    A beat whose model output is not finite is left unlabelled (``finite.decide``): counted in
    ``unlabelled`` and as missed, never as a class. ``n_scored`` says how many beats the matrix
    holds; with none (a flat record, a dead detector) ``accuracy`` is None, not a ratio over nothing.

    ``on_beats(record, samples, reference, predicted)``, when given, receives each record's beats as
    scored (label indices; -1: no reference beat, or not labelled), so a caller comparing bundles
    (``edgeseq compare``) needs no second run."""
    if beats not in ("reference", "detected"):
        raise EdgeseqError(f"--beats must be 'reference' or 'detected', not {beats!r}")
    bundle, prep, predict = load_predictor(bundle_path, threads)
    trained = bundle.manifest.get("training", {}).get("records", [])
    if records:
        names = select_records(data_dir, records, include_paced=include_paced)
        seen = any(r in trained for r in names)
    else:
        names, seen = _default_eval_records(data_dir, trained)
    by_record = {}  # record -> extended confusion (misses and false detections inside)
    det_tp = det_fn = det_fp = 0
    unlabelled = 0  # beats whose logits were not finite: missed, never a class (finite.decide)
    detection = {}
    show = Progress(f"evaluating ({beats} beats)", len(names), enabled=progress)
    for i, name in enumerate(names):
        rec = load_record(data_dir, name, fs=prep.sample_rate, lead=prep.lead)
        if beats == "reference":
            w, f, idx = prep.beats(rec.signal, rec.beat_samples)
            pred, lab = predict(w, f), rec.beat_labels[idx]
            got = pred >= 0
            unlabelled += int((~got).sum())
            by_record[name] = extended(confusion(lab[got], pred[got], N_CLASSES),
                                       np.bincount(lab[~got], minlength=N_CLASSES))
            if on_beats is not None:
                on_beats(name, rec.beat_samples[idx], lab, pred)
        else:
            detector = QRSDetector.from_config(bundle.manifest["detector"])
            peaks = np.concatenate([detector.process(rec.signal), detector.flush()]).astype(np.int64)
            w, f, idx = prep.beats(rec.signal, peaks)
            pred = np.full(len(peaks), -1, np.int64)
            if len(idx):
                pred[idx] = predict(w, f)
                unlabelled += int((pred[idx] < 0).sum())
            ref_ok = _outside(rec.beat_samples, rec.vf_episodes)
            det_ok = _outside(peaks, rec.vf_episodes)
            ref, ref_lab = rec.beat_samples[ref_ok], rec.beat_labels[ref_ok]
            det, det_pred = peaks[det_ok], pred[det_ok]
            m_ref, m_det, miss, false = match_beats(ref, det, prep.sample_rate)
            got = det_pred[m_det] >= 0  # matched, but the window or RR did not fit (record edges)
            c = confusion(ref_lab[m_ref][got], det_pred[m_det][got], N_CLASSES)
            missed = np.bincount(ref_lab[miss], minlength=N_CLASSES)
            missed += np.bincount(ref_lab[m_ref][~got], minlength=N_CLASSES)
            fp_pred = det_pred[false]
            false_det = np.bincount(fp_pred[fp_pred >= 0], minlength=N_CLASSES)
            by_record[name] = extended(c, missed, false_det)
            det_tp, det_fn, det_fp = det_tp + len(m_ref), det_fn + len(miss), det_fp + len(false)
            if on_beats is not None:
                det_ref = np.full(len(det), -1, np.int64)
                det_ref[m_det] = ref_lab[m_ref]
                on_beats(name, det, det_ref, det_pred)
            detection[name] = {"tp": len(m_ref), "fn": len(miss), "fp": len(false)}
        show(i + 1, note=name)
    # The pooled figures are the sum of the per-record matrices, so the two can never disagree.
    pooled = sum(by_record.values(), np.zeros((N_CLASSES + 1, N_CLASSES + 1), np.int64))
    nc = N_CLASSES
    out = {"task": TASK, **report(pooled[:nc, :nc], AAMI_CLASSES, missed=pooled[:nc, nc],
                                  false_detections=pooled[nc, :nc] if beats == "detected" else None)}
    out["n_scored"] = int(pooled[:nc, :nc].sum())
    out["unlabelled"] = unlabelled
    if out["n_scored"] == 0:  # a flat record, a dead detector: no accuracy over nothing
        out["accuracy"] = None
    if beats == "detected":
        out["detection"] = {"se": det_tp / (det_tp + det_fn) if det_tp + det_fn else None,
                            "ppv": det_tp / (det_tp + det_fp) if det_tp + det_fp else None,
                            "n_reference": det_tp + det_fn, "n_detected": det_tp + det_fp,
                            "window_s": 0.150, "excluded": "ventricular flutter episodes ([ ... ])"}
    from ..runtime import runtime_info

    out["runtime"] = runtime_info(bundle.manifest, threads)
    out.update({"beats": beats, "bundle": str(bundle.path), "data": str(data_dir), "records": names,
                "includes_training_records": bool(seen)})
    out["ci95"] = bootstrap_ci(by_record, AAMI_CLASSES) if by_record else None
    out["per_record"] = per_record(by_record, AAMI_CLASSES)
    for name, d in detection.items():
        out["per_record"][name]["detection"] = d
    return out


def _scored(y_true, pred) -> np.ndarray:
    """Extended confusion (see :mod:`edgeseq.metrics`) of ``pred`` against ``y_true``: a beat that
    ``finite.decide`` left unlabelled (index < 0) is in the "no beat" column, an error against Se
    of its class, never a class of its own."""
    y_true, pred = np.asarray(y_true, np.int64), np.asarray(pred, np.int64)
    got = pred >= 0
    return extended(confusion(y_true[got], pred[got], N_CLASSES), np.bincount(y_true[~got], minlength=N_CLASSES))


def _report(ext: np.ndarray) -> dict:
    nc = N_CLASSES
    out = report(ext[:nc, :nc], AAMI_CLASSES, missed=ext[:nc, nc])
    out["unlabelled"] = int(ext[:nc, nc].sum())
    return out


def check_folds(k: int, n_records: int) -> None:
    if not 2 <= k <= n_records:
        raise EdgeseqError(f"--folds must be between 2 and the number of records ({n_records}), not {k}")


def record_folds(records: list[str], sizes, k: int, seed: int = 0) -> list[list[str]]:
    """Split records into ``k`` groups with similar beat counts; no record is in two folds."""
    check_folds(k, len(records))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(records))
    order = order[np.argsort(-np.asarray(sizes)[order], kind="stable")]
    folds, load = [[] for _ in range(k)], np.zeros(k)
    for i in order:
        j = int(np.argmin(load))
        folds[j].append(records[i])
        load[j] += sizes[i]
    return [sorted(f) for f in folds]


def cross_validate(data_dir, records=None, *, model: str = "esn", folds: int | None = None, seed: int = 0,
                   params: dict | None = None, prep: EcgPreprocessing | None = None,
                   include_paced: bool = False, progress: bool = True, size: str | None = None,
                   device: str | None = None, on_fold=None) -> dict:
    """Record-grouped K-fold cross-validation (leave-one-record-out when ``folds`` is None).

    A family whose features are label-free (``SHARED_FEATURES``: the ESN's reservoir states)
    computes them once for all beats and fits only the readout per fold; nothing a fold's readout
    learns comes from its test records. Other families are trained anew per fold.
    ``on_fold(k, n_folds, fold_report)`` is called after each fold (``edgeseq tune`` reports and
    prunes there: an exception it raises ends the cross-validation).
    """
    t0 = time.perf_counter()
    prep = prep or EcgPreprocessing()
    names = select_records(data_dir, records, include_paced=include_paced)
    if len(names) < 2:
        raise EdgeseqError("cross-validation needs at least two records")
    if folds is not None:
        check_folds(folds, len(names))  # before minutes of reading records
    beats = load_beats(data_dir, names, prep, progress=progress)
    sizes = np.bincount(beats.record_index, minlength=len(names))
    empty = [r for r, n in zip(names, sizes) if n == 0]
    if empty:  # its fold would be scored over nothing, and its own figures would be empty
        raise EdgeseqError(f"record(s) {', '.join(empty)} of {data_dir} have no usable beats; "
                           "leave them out of --records")
    groups = record_folds(names, sizes, folds or len(names), seed)
    est = _build_model(model, seed, params, size=size, device=device)
    shared = est.SHARED_FEATURES
    if shared:
        feats = est.shared_features(beats.windows, beats.rr,
                                    progress=est.fit_progress(model, len(beats.labels), progress))
    conf = np.zeros((N_CLASSES + 1, N_CLASSES + 1), np.int64)
    per_fold, fit_seconds = [], []
    by_record, fold_of = {}, {}
    show = Progress("folds", len(groups), enabled=progress)
    for k, group in enumerate(groups):
        test = np.isin(beats.record_index, [names.index(r) for r in group])
        train_ = ~test
        if shared:
            est.fit_readout(feats[train_], beats.labels[train_], beats.rr[train_], n_classes=N_CLASSES)
            pred = decide(est.decision_function_from_features(feats[test], beats.rr[test]))[0]
        else:
            t_fit = time.perf_counter()
            est.fit(beats.windows[train_], beats.labels[train_], beats.rr[train_], n_classes=N_CLASSES,
                    progress=est.fit_progress(f"fold {k + 1}/{len(groups)}", int(train_.sum()), progress))
            fit_seconds.append(time.perf_counter() - t_fit)
            pred = est.predict(beats.windows[test], beats.rr[test])
        c = _scored(beats.labels[test], pred)
        conf += c
        rec_test = beats.record_index[test]
        for r in group:  # each test record's own matrix: the unit of the bootstrap
            own = rec_test == names.index(r)
            by_record[r] = _scored(beats.labels[test][own], pred[own])
            fold_of[r] = k
        per_fold.append({"fold": k, "records": group, **_report(c)})
        if not shared:
            per_fold[-1]["seconds_fit"] = round(fit_seconds[-1], 2)
        show(k + 1)
        if on_fold is not None:
            on_fold(k, len(groups), per_fold[-1])
    out = {"task": TASK, **_report(conf), "folds": per_fold, "n_folds": len(groups),
           "grouping": "record", "model": _model_section(model, est, prep),
           "data": str(data_dir), "records": names, "seconds": round(time.perf_counter() - t0, 2)}
    by_record = {r: by_record[r] for r in names}
    out["ci95"] = bootstrap_ci(by_record, AAMI_CLASSES)
    out["fold_summary"] = fold_summary(per_fold, AAMI_CLASSES)
    out["per_record"] = per_record(by_record, AAMI_CLASSES, folds=fold_of)
    return out
