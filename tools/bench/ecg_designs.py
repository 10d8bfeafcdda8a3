"""ECG model designs tried against the inter-patient targets, each scored the same way.

    python tools/bench/ecg_designs.py [--data ../shared/data/mitdb] [--only NAME,...]

Every row is leave-one-record-out cross-validation inside DS1 (22 folds, one patient each), pooled
over all 50,977 beats, and per patient (mean and worst fold), written to ``results/ecg_designs.json``
with the command that reproduces it.
Rows that ``edgeseq cv`` can express run through ``edgeseq.tasks.ecg.cross_validate`` itself; the
others are readout- or input-level variants of the same ESN built from its own pieces
(``reservoir_features`` and ``fit_readout``), because they are questions, not shipped designs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from compare_models import LABELS, RESULTS, ROOT, machine

CV = "edgeseq cv ecg --data ../shared/data/mitdb --folds 22"
SCRIPT = "python tools/bench/ecg_designs.py --only"

#: name -> (what it changes, CLI parameters); run through cross_validate.
CLI_ROWS = {
    "default": ("ESN defaults (300 units, lr 0.3, last + mean state readout)", {}),
    "seed1": ("another reservoir draw (seed 1)", {"seed": 1}),
    "seed2": ("another reservoir draw (seed 2)", {"seed": 2}),
    "weights_0.5": ("class weights tempered more (power 0.5)", {"class_weight_power": 0.5}),
    "weights_1.0_cap30": ("fully balanced class weights, cap 30", {"class_weight_power": 1.0, "class_weight_cap": 30}),
    "ridge_0.1": ("5x stronger ridge", {"ridge": 0.1}),
    "lr_0.1": ("slower reservoir (lr 0.1)", {"lr": 0.1}),
    "lr_0.6": ("faster reservoir (lr 0.6)", {"lr": 0.6}),
    "tuned_5fold": ("best of `edgeseq tune` (8 trials, 5 folds), scored on 22",
                    {"units": 416, "lr": 0.5464, "sr": 0.6805, "ridge": 0.0396, "class_weight_power": 0.782,
                     "bias_scaling": 0.253}),
}
SCRIPT_ROWS = {
    "two_leads": "MLII and the record's second lead (V1; V5 in 114, V4 in 124) as two reservoir inputs",
    "mean_readout": "readout on the mean state only (no last state)",
    "relative_states": "readout also sees each state minus the patient's causal mean over its previous 64 beats",
    "two_timescales": "two reservoirs (lr 0.3 and 0.1) side by side under one readout",
    "ensemble3": "mean of the logits of three reservoirs (seeds 0, 1, 2), each with its own readout",
    "fq_as_n": "F and Q never predicted: a beat whose top logit is F or Q is labelled N",
    "fq_unweighted": "F and Q beats left out of the readout fit (class weight 0), their logits constant",
}


def by_patient(y: np.ndarray, pred: np.ndarray, rec: np.ndarray) -> dict:
    """Mean and worst fold: with one record per fold, the mean and the worst patient."""
    from edgeseq.metrics import confusion, fold_summary, report

    return fold_summary([report(confusion(y[rec == r], pred[rec == r], 5), LABELS) for r in np.unique(rec)], LABELS)


def stored(rep: dict) -> dict:
    """The part of a report (``edgeseq.metrics.report``, or ``cross_validate``'s) a row keeps."""
    return {"accuracy": rep["accuracy"], "confusion": rep["confusion"],
            "classes": {c: {k: v[k] for k in ("se", "ppv")} for c, v in rep["classes"].items()}}


class Beats:
    """DS1 beats and reservoir features, computed once per reservoir and shared by the rows."""

    def __init__(self, data):
        from edgeseq.data.mitdb import load_record, select_records
        from edgeseq.preprocess.ecg import EcgPreprocessing
        from edgeseq.tasks.ecg import load_beats

        self.data, self.prep = data, EcgPreprocessing()
        self.names = select_records(data, None)
        b = load_beats(data, self.names, self.prep, progress=False)
        self.windows, self.rr, self.y, self.rec = b.windows, b.rr, b.labels, b.record_index
        self._cache = {}
        self._load_record = load_record

    def second_lead(self) -> np.ndarray:
        import wfdb

        out = []
        for name in self.names:
            ref = self._load_record(self.data, name, fs=self.prep.sample_rate, lead="MLII")
            lead = [s for s in wfdb.rdheader(str(Path(self.data) / name)).sig_name if s != "MLII"][0]
            rec = self._load_record(self.data, name, fs=self.prep.sample_rate, lead=lead)
            out.append(self.prep.beats(rec.signal, ref.beat_samples)[0])
        return np.concatenate(out)

    def features(self, key, **params):
        from edgeseq.models.esn import ESNClassifier

        if key not in self._cache:
            windows = self.windows
            if key == "two_leads":
                windows = np.stack([self.windows, self.second_lead()], axis=2)
            self._cache[key] = ESNClassifier(**params).shared_features(windows, self.rr)
        return self._cache[key]

    def logits(self, feats, est_factory, *, y=None, fix=None) -> np.ndarray:
        """Leave-one-record-out logits of a readout on ``feats``."""
        y = self.y if y is None else y
        out = np.zeros((len(self.y), 5))
        for r in range(len(self.names)):
            test = self.rec == r
            est = est_factory().fit_readout(feats[~test], y[~test], self.rr[~test], n_classes=5)
            if fix:
                fix(est)
            out[test] = est.decision_function_from_features(feats[test], self.rr[test])
        return out


def relative(feats: np.ndarray, rec: np.ndarray, k: int = 64) -> np.ndarray:
    out = np.empty_like(feats)
    for r in np.unique(rec):
        idx = np.flatnonzero(rec == r)
        X = feats[idx].astype(np.float64)
        cs = np.concatenate([np.zeros((1, X.shape[1])), np.cumsum(X, 0)])
        i = np.arange(len(X))
        lo = np.maximum(0, i - k)
        mean = (cs[i] - cs[lo]) / np.maximum(i - lo, 1)[:, None]
        mean[0] = X[0]
        out[idx] = X - mean
    return out.astype(feats.dtype)


def script_row(name: str, beats: Beats) -> np.ndarray:
    """Predicted labels of one script-only design."""
    from edgeseq.models.esn import ESNClassifier

    base = beats.features("default")
    units = base.shape[1] // 2
    if name == "two_leads":
        scaling = (1.0, 1.0, 0.5, 0.5, 0.5, 0.1)
        feats = beats.features("two_leads", input_scaling=scaling)
        return beats.logits(feats, lambda: ESNClassifier(input_scaling=scaling)).argmax(1)
    if name == "mean_readout":
        return beats.logits(base[:, units:], ESNClassifier).argmax(1)
    if name == "relative_states":
        feats = np.concatenate([base, relative(base, beats.rec)], axis=1)
        return beats.logits(feats, ESNClassifier).argmax(1)
    if name == "two_timescales":
        feats = np.concatenate([base, beats.features("lr0.1", lr=0.1, seed=1)], axis=1)
        return beats.logits(feats, ESNClassifier).argmax(1)
    if name == "ensemble3":
        total = sum(beats.logits(beats.features(f"seed{s}", seed=s) if s else base, ESNClassifier)
                    for s in (0, 1, 2))
        return total.argmax(1)
    if name == "fq_as_n":
        pred = beats.logits(base, ESNClassifier).argmax(1)
        pred[pred >= 3] = 0
        return pred

    if name == "fq_unweighted":
        class NoFQ(ESNClassifier):
            def _class_weights(self, counts):
                w = super()._class_weights(counts)
                w[3:] = 0
                return w

        def constant(est):
            est.Wout_[:, 3:] = 0
            est.bout_[3:] = -1  # the target of "not this class": what the fit gives a class with no beats

        return beats.logits(base, NoFQ, fix=constant).argmax(1)
    raise KeyError(name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "mitdb"))
    ap.add_argument("--only", help="comma-separated row names (default: all)")
    ap.add_argument("--markdown", action="store_true", help="print the stored rows as a table and stop")
    args = ap.parse_args()
    if args.markdown:
        from report import designs_table

        print("\n".join(designs_table(json.loads((RESULTS / "ecg_designs.json").read_text())["rows"])))
        return
    from edgeseq.metrics import confusion, report
    from edgeseq.tasks import ecg

    wanted = args.only.split(",") if args.only else list(CLI_ROWS) + list(SCRIPT_ROWS)
    out_path = RESULTS / "ecg_designs.json"
    rows = json.loads(out_path.read_text())["rows"] if out_path.exists() else {}
    beats = None
    for name in wanted:
        t0 = time.perf_counter()
        if name in CLI_ROWS:
            what, params = CLI_ROWS[name]
            rep = ecg.cross_validate(args.data, folds=22, params=params, progress=False)
            row = {"design": what, **stored(rep), "fold_summary": rep["fold_summary"],
                   "command": CV + "".join(f" --param {k}={v}" for k, v in params.items())}
        else:
            beats = beats or Beats(args.data)
            pred = script_row(name, beats)
            row = {"design": SCRIPT_ROWS[name], **stored(report(confusion(beats.y, pred, 5), LABELS)),
                   "fold_summary": by_patient(beats.y, pred, beats.rec), "command": f"{SCRIPT} {name}"}
        row["seconds"] = round(time.perf_counter() - t0, 1)
        rows[name] = row
        c = row["classes"]
        print(f"{name:<18} acc {100 * row['accuracy']:.2f}  S {100 * c['S']['se']:.1f}/{100 * c['S']['ppv']:.1f}"
              f"  V {100 * c['V']['se']:.1f}/{100 * c['V']['ppv']:.1f}  ({row['seconds']} s)", flush=True)
        out_path.write_text(json.dumps({"protocol": "leave-one-record-out inside DS1 (22 folds), pooled",
                                        "machine": machine(), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
