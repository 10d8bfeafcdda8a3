"""Figures a reader can trust: per-record tables, record-bootstrap intervals, mean and worst fold."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from edgeseq.cli import main
from edgeseq.metrics import bootstrap_ci, extended, fold_summary, format_table, per_record, report

LABELS = ["N", "S", "V", "F", "Q"]
ROOT = Path(__file__).resolve().parents[1]


def _conf(diag, off=None):
    """A 5x5 confusion with ``diag`` on the diagonal and ``off`` = {(i, j): n} elsewhere."""
    c = np.diag(np.asarray(diag, np.int64))
    for (i, j), n in (off or {}).items():
        c[i, j] = n
    return c


def _records():
    """Six hand-built records: different sizes and error patterns, S and V in some of them only."""
    return {
        "r1": _conf([900, 10, 0, 0, 0], {(0, 1): 20, (1, 0): 5}),
        "r2": _conf([1500, 0, 80, 0, 0], {(2, 0): 30, (0, 2): 10}),
        "r3": _conf([700, 40, 5, 0, 0], {(1, 0): 30, (0, 1): 60}),
        "r4": _conf([1200, 0, 200, 3, 0], {(3, 2): 20}),
        "r5": _conf([400, 2, 0, 0, 0], {(1, 0): 8}),
        "r6": _conf([1000, 0, 50, 0, 0], {(2, 0): 5, (0, 2): 40}),
    }


def _inside(iv, x):
    return iv[0] - 1e-12 <= x <= iv[1] + 1e-12


def test_one_record_gives_a_zero_width_interval_at_the_point_estimate():
    c = _conf([90, 7, 30, 0, 0], {(1, 0): 3, (0, 1): 5, (2, 0): 10})
    rep, ci = report(c, LABELS), bootstrap_ci({"a": c}, LABELS, n_boot=200)
    assert ci["accuracy"] == [pytest.approx(rep["accuracy"])] * 2
    for lab in ("N", "S", "V"):
        for r in ("se", "ppv"):
            assert ci["classes"][lab][r] == [pytest.approx(rep["classes"][lab][r])] * 2
    assert ci["classes"]["F"]["se"] is None and ci["classes"]["Q"]["ppv"] is None  # no beats at all
    assert ci["unit"] == "record" and ci["n_units"] == 1 and ci["n_boot"] == 200


def test_intervals_contain_the_pooled_figures_and_have_width():
    recs = _records()
    rep, ci = report(sum(recs.values()), LABELS), bootstrap_ci(recs, LABELS)
    assert ci["n_boot"] == 2000 and ci["n_units"] == 6
    assert _inside(ci["accuracy"], rep["accuracy"]) and ci["accuracy"][1] - ci["accuracy"][0] > 0.005
    for lab in ("N", "S", "V"):
        for r in ("se", "ppv"):
            iv = ci["classes"][lab][r]
            assert _inside(iv, rep["classes"][lab][r]) and iv[1] > iv[0], (lab, r, iv)
    assert ci["classes"]["S"]["records"] == {"se": 3, "ppv": 3}
    assert ci["classes"]["F"]["records"] == {"se": 1, "ppv": 1} and ci["classes"]["Q"]["ppv"] is None


def test_the_vectorised_bootstrap_equals_a_loop_over_replicates():
    """Same multinomial draws, pooled figures recomputed replicate by replicate with report()."""
    recs = _records()
    ci = bootstrap_ci(recs, LABELS, n_boot=300, seed=5)
    counts = np.random.default_rng(5).multinomial(6, np.full(6, 1 / 6), size=300)
    stack = np.stack(list(recs.values()))
    reps = [report(np.tensordot(w, stack, axes=(0, 0)), LABELS) for w in counts]
    assert ci["accuracy"] == pytest.approx(list(np.percentile([r["accuracy"] for r in reps], [2.5, 97.5])))
    for lab in ("S", "V"):
        for r in ("se", "ppv"):
            vals = [x["classes"][lab][r] for x in reps if x["classes"][lab][r] is not None]
            assert len(vals) < 300 or lab == "V"  # S is absent from some replicates: they are left out
            assert ci["classes"][lab][r] == pytest.approx(list(np.percentile(vals, [2.5, 97.5])))


def test_a_record_with_many_s_beats_moves_the_s_interval():
    recs = _records()
    before = bootstrap_ci(recs, LABELS)["classes"]["S"]["se"]
    recs["r7"] = _conf([500, 100, 0, 0, 0], {(1, 0): 900})  # 1,000 S beats, 10% found
    after = bootstrap_ci(recs, LABELS)["classes"]["S"]["se"]
    pooled = report(sum(recs.values()), LABELS)["classes"]["S"]["se"]  # 152 / 1,095
    assert after[0] < before[0] - 0.05 and after[1] < before[1] - 0.03 and _inside(after, pooled)


def test_seeded_bootstrap_is_reproducible():
    recs = _records()
    a, b = bootstrap_ci(recs, LABELS, seed=3), bootstrap_ci(recs, LABELS, seed=3)
    c = bootstrap_ci(recs, LABELS, seed=4)
    assert a == b and a["accuracy"] != c["accuracy"] and a["seed"] == 3


def test_undefined_ratios_are_left_out_or_none():
    # Q: no beats and no predictions anywhere; F: predicted in one record only, never present.
    recs = {"a": _conf([50, 5, 0, 0, 0]), "b": _conf([40, 0, 0, 0, 0], {(0, 3): 4}),
            "c": _conf([60, 0, 9, 0, 0])}
    ci = bootstrap_ci(recs, LABELS, n_boot=500)
    assert ci["classes"]["Q"] == {"se": None, "ppv": None, "records": {"se": 0, "ppv": 0}}
    assert ci["classes"]["F"]["se"] is None and ci["classes"]["F"]["ppv"] == [0.0, 0.0]
    # S only in record a, found every time: where S is drawn its Se is 1, never NaN.
    assert ci["classes"]["S"]["se"] == [1.0, 1.0] and ci["classes"]["S"]["records"]["se"] == 1
    assert all(np.isfinite(ci["accuracy"]))


def test_detector_misses_and_false_detections_count_in_the_bootstrap():
    conf = _conf([95, 8, 0, 0, 0])
    ext = extended(conf, missed=[5, 2, 0, 0, 0], false_detections=[0, 8, 0, 0, 0])
    rep = report(conf, LABELS, missed=[5, 2, 0, 0, 0], false_detections=[0, 8, 0, 0, 0])
    ci = bootstrap_ci({"a": ext}, LABELS, n_boot=50)
    assert ci["classes"]["S"]["se"][0] == pytest.approx(0.8) == rep["classes"]["S"]["se"]
    assert ci["classes"]["S"]["ppv"][0] == pytest.approx(0.5) == rep["classes"]["S"]["ppv"]
    assert ci["accuracy"][0] == pytest.approx(103 / 118) == rep["accuracy"]


def test_per_record_table_sums_back_to_the_pooled_matrix():
    recs = _records()
    recs["r5"] = extended(recs["r5"], missed=[1, 2, 0, 0, 0], false_detections=[3, 0, 0, 0, 0])
    table = per_record(recs, LABELS, folds={n: i % 2 for i, n in enumerate(recs)})
    assert list(table) == list(recs) and [t["fold"] for t in table.values()] == [0, 1, 0, 1, 0, 1]
    pooled = sum(np.asarray(extended(m) if len(m) == 5 else m) for m in recs.values())
    rep = report(pooled[:5, :5], LABELS, missed=pooled[:5, 5], false_detections=pooled[5, :5])
    assert np.sum([t["confusion"] for t in table.values()], axis=0).tolist() == rep["confusion"]
    assert sum(t["n_beats"] for t in table.values()) == rep["n_beats"]
    assert table["r5"]["missed"] == [1, 2, 0, 0, 0] and "missed" not in table["r1"]
    assert table["r5"]["classes"]["S"] == {"se": 2 / 12, "ppv": 1.0, "n": 12}  # 2 missed S beats count
    assert table["r1"]["classes"]["V"]["se"] is None and table["r2"]["classes"]["S"]["ppv"] is None


def test_fold_summary_leaves_out_folds_without_the_class():
    folds = [report(_conf([90, 5, 0, 0, 0], {(1, 0): 5}), LABELS),
             report(_conf([60, 0, 0, 0, 0], {(0, 1): 20}), LABELS),  # no S beats, S predicted
             report(_conf([50, 1, 0, 0, 0], {(1, 0): 9}), LABELS)]
    fs = fold_summary(folds, LABELS)
    assert fs["accuracy"]["min"] == pytest.approx(0.75) and fs["accuracy"]["worst_fold"] == 1
    assert fs["accuracy"]["mean"] == pytest.approx((0.95 + 0.75 + 51 / 60) / 3)
    assert fs["S"]["se"] == {"mean": pytest.approx(0.3), "min": pytest.approx(0.1), "worst_fold": 2, "n_folds": 2}
    assert fs["S"]["ppv"]["n_folds"] == 3 and fs["S"]["ppv"]["min"] == 0.0 and fs["S"]["ppv"]["worst_fold"] == 1
    assert fs["V"]["se"] is None and fs["Q"]["ppv"] is None


def test_table_shows_intervals_and_worst_fold_in_100_columns():
    recs = _records()
    rep = report(sum(recs.values()), LABELS)
    plain = format_table(rep)
    assert "[" not in plain and "worst" not in plain
    rep["ci95"] = bootstrap_ci(recs, LABELS)
    rep["fold_summary"] = fold_summary([report(m, LABELS) for m in recs.values()], LABELS)
    rep["per_record"] = per_record(recs, LABELS, folds={n: i for i, n in enumerate(recs)})
    text = format_table(rep, "title")
    s_row = next(line for line in text.splitlines() if line.startswith("S "))
    s = rep["ci95"]["classes"]["S"]
    assert f"[{100 * s['se'][0]:.1f}-{100 * s['se'][1]:.1f}]" in s_row
    assert f"[{100 * s['ppv'][0]:.1f}-{100 * s['ppv'][1]:.1f}]" in s_row
    assert s_row.endswith(f"{100 * rep['fold_summary']['S']['se']['min']:.1f} / "
                          f"{100 * rep['fold_summary']['S']['ppv']['min']:.1f}")
    f_row = next(line for line in text.splitlines() if line.startswith("F "))
    assert "(1 record)" in f_row  # all F beats in r4: a zero-width interval would look precise
    assert "bootstrap over 6 records" in text and "too few records" in text
    assert "lowest record: r3" in text  # 745 of 835 beats
    assert max(len(line) for line in text.splitlines()) <= 100


def _check_records(rep):
    table = rep["per_record"]
    assert list(table) == rep["records"]
    assert np.sum([t["confusion"] for t in table.values()], axis=0).tolist() == rep["confusion"]
    assert sum(t["n_beats"] for t in table.values()) == rep["n_beats"]
    ci = rep["ci95"]
    assert ci["unit"] == "record" and ci["n_units"] == len(rep["records"]) and ci["n_boot"] == 2000
    assert _inside(ci["accuracy"], rep["accuracy"]) and ci["accuracy"][1] > ci["accuracy"][0]
    for lab in LABELS:
        for r in ("se", "ppv"):
            assert (ci["classes"][lab][r] is None) == (rep["classes"][lab][r] is None)


def test_cv_json_has_per_record_table_intervals_and_fold_summary(sample, tmp_path, capsys):
    out = tmp_path / "cv.json"
    assert main(["cv", "ecg", "--data", str(sample), "--records", "106,119,201,208,223", "--folds", "3",
                 "--param", "units=40", "--json", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    rep = json.loads(out.read_text())
    _check_records(rep)
    for f in rep["folds"]:
        assert all(rep["per_record"][r]["fold"] == f["fold"] for r in f["records"])
        own = np.sum([rep["per_record"][r]["confusion"] for r in f["records"]], axis=0)
        assert own.tolist() == f["confusion"]
    fs = rep["fold_summary"]
    assert fs["accuracy"]["min"] == min(f["accuracy"] for f in rep["folds"])
    assert fs["accuracy"]["mean"] == pytest.approx(np.mean([f["accuracy"] for f in rep["folds"]]))
    assert fs["V"]["se"]["min"] == min(f["classes"]["V"]["se"] for f in rep["folds"] if f["classes"]["V"]["n"])
    assert "[95% CI]" in printed and "worst fold Se / +P" in printed
    assert f"worst {100 * fs['accuracy']['min']:.1f}%" in printed


def test_evaluate_detected_per_record_matrices_sum_to_the_pooled_one(small_bundle, sample, tmp_path):
    out = tmp_path / "det.json"
    assert main(["evaluate", str(small_bundle), "--data", str(sample), "--records", "106,208,209",
                 "--beats", "detected", "--json", str(out), "--quiet"]) == 0
    rep = json.loads(out.read_text())
    _check_records(rep)
    table = rep["per_record"].values()
    for key in ("missed", "false_detections"):
        assert np.sum([t.get(key, [0] * 5) for t in table], axis=0).tolist() == rep[key]
    assert sum(rep["missed"]) > 0  # the detector misses some beats here: the sums are not trivially zero
    assert sum(t["detection"]["tp"] + t["detection"]["fn"] for t in table) == rep["detection"]["n_reference"]
    # Per record, misses count against Se: n includes them, as in the pooled report.
    for t in table:
        assert sum(c["n"] for c in t["classes"].values()) == t["n_beats"]
        assert t["n_beats"] == t["detection"]["tp"] + t["detection"]["fn"]


def _bench_report():
    spec = importlib.util.spec_from_file_location("bench_report", ROOT / "tools" / "bench" / "report.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_report_shows_intervals_and_worst_fold_when_present(tmp_path):
    mod = _bench_report()
    recs = _records()
    rep = report(sum(recs.values()), LABELS)
    old = {"task": "ecg", **rep, "n_folds": 22, "model": {"kind": "lstm"}}
    new = {**old, "model": {"kind": "esn"}, "ci95": bootstrap_ci(recs, LABELS),
           "fold_summary": fold_summary([report(m, LABELS) for m in recs.values()], LABELS)}
    d = tmp_path / "results"
    d.mkdir()
    (d / "cv_ds1_esn_22fold.json").write_text(json.dumps(new))
    (d / "cv_ds1_lstm_22fold.json").write_text(json.dumps(old))
    text = mod.render(mod.load_results(d))
    lines = text.splitlines()
    esn = next(line for line in lines if line.startswith("| ESN | "))
    lstm = next(line for line in lines if line.startswith("| LSTM | "))
    acc = new["ci95"]["accuracy"]
    assert f"**{100 * rep['accuracy']:.1f}** [{100 * acc[0]:.1f}-{100 * acc[1]:.1f}]" in esn
    assert "(1 record)" in esn and "[" not in lstm  # an older JSON without ci95 renders as before
    worst = [line for line in lines if line.startswith("| ESN | ") and " / " in line.split("|")[2]]
    a = new["fold_summary"]["accuracy"]
    assert any(f"| {100 * a['mean']:.1f} / {100 * a['min']:.1f} |" in line for line in worst)
    assert "bootstrap over the 6 records" in text and "Mean and worst of the 22 folds" in text
