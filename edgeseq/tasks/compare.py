"""Two bundles of one task on the same data, side by side: ``edgeseq compare A B``.

Decision: each bundle is scored by its task's own evaluation (``edgeseq.tasks.ecg.evaluate``,
``edgeseq.tasks.balance.evaluate``), which hands over its per-beat (per-trial) outputs through a
hook, so nothing is run twice; agreement is then counted on the beats (trials) both scored, by
record and sample. Any two bundles of one task and label set compare (float against int8, ONNX
against TFLite, ESN against TCN); the header says what each is. ``COMPARERS`` maps a task to its
comparison.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..bundle import read_manifest
from ..errors import EdgeseqError
from ..runtime import runtime_label


def _what(path, manifest: dict) -> str:
    return f"{Path(path).name} ({manifest['model']['kind']}, {runtime_label(manifest, prefix='')})"


def _label_agreement(a: np.ndarray, b: np.ndarray, labels: list) -> dict:
    """Agreement of two label-index arrays over the items both labelled (index >= 0)."""
    from ..metrics import confusion

    both = (a >= 0) & (b >= 0)
    k = len(labels)
    table = confusion(a[both], b[both], k)
    n = int(both.sum())
    same = int(np.trace(table))
    return {"n": n, "same": same, "fraction": same / n if n else None, "differ": n - same,
            "labelled_by_one_only": int(((a >= 0) ^ (b >= 0)).sum()), "labels": list(labels),
            "table": table.tolist()}


def _compare_ecg(a, b, ma, mb, data_dir, records, *, beats, include_paced, progress) -> dict:
    from ..data.mitdb import select_records
    from . import ecg

    if records:
        names = select_records(data_dir, records, include_paced=include_paced)
    else:  # the records A did not train on, passed to both so that both score the same beats
        names, _ = ecg._default_eval_records(data_dir, ma.get("training", {}).get("records", []))
    got = {}
    reps = []
    for key, path in (("a", a), ("b", b)):
        seen = got[key] = {}
        reps.append(ecg.evaluate(path, data_dir, names, beats=beats, include_paced=True, progress=progress,
                                 on_beats=lambda rec, s, r, p, seen=seen: seen.__setitem__(rec, (s, p))))
    la, lb, per_record = [], [], {}
    for rec in names:
        (sa, pa), (sb, pb) = got["a"][rec], got["b"][rec]
        _, ia, ib = np.intersect1d(sa, sb, assume_unique=False, return_indices=True)
        la.append(pa[ia])
        lb.append(pb[ib])
        per_record[rec] = _label_agreement(pa[ia], pb[ib], ma["labels"])
        del per_record[rec]["table"], per_record[rec]["labels"]
    agreement = _label_agreement(np.concatenate(la), np.concatenate(lb), ma["labels"])
    agreement["unit"] = "beats"
    agreement["per_record"] = per_record
    return {"task": "ecg", "beats": beats, "records": names, "a": reps[0], "b": reps[1], "agreement": agreement}


def _compare_balance(a, b, ma, mb, data_dir, records, *, beats, include_paced, progress) -> dict:
    from ..finite import decide
    from . import balance

    if ma["target"] != mb["target"]:
        raise EdgeseqError(f"{a} predicts {ma['target']}, {b} predicts {mb['target']}: nothing to compare")
    names, _ = balance.default_trials(data_dir, ma, records)
    got, reps = {}, []
    for key, path in (("a", a), ("b", b)):
        reps.append(balance.evaluate(path, data_dir, names, progress=progress,
                                     on_trials=lambda n, y, key=key: got.__setitem__(key, (n, y))))
    (na, ya), (nb, yb) = got["a"], got["b"]
    assert na == nb  # the same named trials, in the data's order, for both
    if ma["labels"]:
        agreement = _label_agreement(decide(ya)[0], decide(yb)[0], ma["labels"])
    else:
        d = np.abs(ya[:, 0] - yb[:, 0])
        ok = np.isfinite(d)
        agreement = {"n": int(ok.sum()), "mean_abs_difference": float(d[ok].mean()) if ok.any() else None,
                     "max_abs_difference": float(d[ok].max()) if ok.any() else None}
    agreement["unit"] = "trials"
    return {"task": "balance", "target": ma["target"], "trials": na, "a": reps[0], "b": reps[1],
            "agreement": agreement}


COMPARERS = {"ecg": _compare_ecg, "balance": _compare_balance}


def compare(a, b, data_dir, records=None, *, beats: str = "reference", include_paced: bool = False,
            progress: bool = True) -> dict:
    """Both bundles scored on the same beats or trials, and how often they agree."""
    ma, mb = read_manifest(a), read_manifest(b)
    if ma.get("task") != mb.get("task"):
        raise EdgeseqError(f"{a} is for task {ma.get('task')!r}, {b} for task {mb.get('task')!r}: "
                           "compare takes two bundles of one task")
    if list(ma.get("labels") or []) != list(mb.get("labels") or []):
        raise EdgeseqError(f"{a} and {b} have different labels ({', '.join(ma.get('labels') or ['none'])} vs "
                           f"{', '.join(mb.get('labels') or ['none'])}): their outputs cannot be compared")
    task = ma.get("task")
    if task not in COMPARERS:
        raise EdgeseqError(f"compare knows tasks {', '.join(COMPARERS)}, not {task!r}")
    rep = COMPARERS[task](a, b, ma, mb, data_dir, records, beats=beats, include_paced=include_paced,
                          progress=progress)
    rep["bundles"] = {"a": {"path": str(a), "what": _what(a, ma), "runtime": rep["a"]["runtime"]},
                      "b": {"path": str(b), "what": _what(b, mb), "runtime": rep["b"]["runtime"]}}
    return rep


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _diff(x, y, digits: int = 1) -> str:
    # + 0.0 turns the -0.0 that round() leaves into 0.0: a difference rounded away has no sign
    return "-" if x is None or y is None else f"{round(100 * (y - x), digits) + 0.0:+.{digits}f}"


def format_compare(rep: dict) -> str:
    """A | B | B - A for every class's Se and +P (or the balance figures), then the agreement."""
    A, B = rep["a"], rep["b"]
    wa, wb = rep["bundles"]["a"]["what"], rep["bundles"]["b"]["what"]
    ag = rep["agreement"]
    lines = [f"A: {wa}", f"B: {wb}"]
    if rep["task"] == "ecg":
        note = "; includes records A or B was trained on" if A["includes_training_records"] or \
            B["includes_training_records"] else ""
        n = len(rep["records"])
        lines.append(f"on {n} record{'s' if n != 1 else ''} ({', '.join(rep['records'])}), {rep['beats']} beats{note}")
        lines.append(f"{'class':<6}{'n':>8}{'Se A':>8}{'Se B':>8}{'B-A':>7}  |{'+P A':>7}{'+P B':>8}{'B-A':>7}")
        for lab in A["labels"]:
            ca, cb = A["classes"][lab], B["classes"][lab]
            lines.append(f"{lab:<6}{ca['n']:>8,}{_pct(ca['se']):>8}{_pct(cb['se']):>8}{_diff(ca['se'], cb['se']):>7}  |"
                         f"{_pct(ca['ppv']):>7}{_pct(cb['ppv']):>8}{_diff(ca['ppv'], cb['ppv']):>7}")
        acc = [("-" if v is None else f"{100 * v:.2f}") for v in (A["accuracy"], B["accuracy"])]
        lines.append(f"{'accuracy %':<14}{acc[0]:>8}{acc[1]:>8}{_diff(A['accuracy'], B['accuracy'], 2):>7}")
    else:
        how = A["evaluation"]
        lines.append(f"balance {rep['target']}: {how}, {A['n_trials']} trials of {A['n_subjects']} subjects")
        if "accuracy" in A:
            lines.append(f"{'':<16}{'A':>8}{'B':>8}{'B-A':>7}")
            lines.append(f"{'trial acc %':<16}{_pct(A['accuracy']):>8}{_pct(B['accuracy']):>8}"
                         f"{_diff(A['accuracy'], B['accuracy']):>7}")
            lines.append(f"{'window acc %':<16}{_pct(A['window']['accuracy']):>8}{_pct(B['window']['accuracy']):>8}"
                         f"{_diff(A['window']['accuracy'], B['window']['accuracy']):>7}")
        else:
            def num(x):
                return "-" if x is None else f"{x:.3f}"

            lines.append(f"{'':<16}{'A':>8}{'B':>8}{'B-A':>8}")
            for name, ka, kb in (("trial MAE", A["mae"], B["mae"]),
                                 ("window MAE", A["window"]["mae"], B["window"]["mae"])):
                d = "-" if ka is None or kb is None else f"{kb - ka:+.3f}"
                lines.append(f"{name:<16}{num(ka):>8}{num(kb):>8}{d:>8}")
            lines.append(f"trial scores: A and B differ by {num(ag['mean_abs_difference'])} on average, "
                         f"at most {num(ag['max_abs_difference'])}, over {ag['n']} trials")
            return "\n".join(lines)
    unit = ag["unit"]
    if ag["fraction"] is None:
        lines.append(f"label agreement: no {unit} labelled by both")
        return "\n".join(lines)
    lines.append(f"label agreement: {100 * ag['fraction']:.2f}% of {ag['n']:,} {unit} labelled by both "
                 f"({ag['differ']:,} differ" + (f"; {ag['labelled_by_one_only']:,} labelled by one only"
                                                if ag["labelled_by_one_only"] else "") + ")")
    if ag["differ"]:
        labs = ag["labels"]
        lines.append("disagreements (rows: A's label, columns: B's label):")
        lines.append("      " + "".join(f"{c:>7}" for c in labs))
        for i, r in enumerate(ag["table"]):
            lines.append(f"{labs[i]:<6}" + "".join(f"{'.' if i == j else v:>7}" for j, v in enumerate(r)))
    return "\n".join(lines)
