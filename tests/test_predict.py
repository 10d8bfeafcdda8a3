"""``edgeseq predict`` (labels as the board computes them, JSON lines, the ECG strip), the device
WFDB reader against wfdb, ``edgeseq compare`` (float against int8), ``evaluate`` and ``train`` of
balance bundles, and their one-line errors."""

import json
import subprocess
import sys

import numpy as np
import pytest

from edgeseq.cli import main

LABELS = ["N", "S", "V", "F", "Q"]


def _lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def _last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


# ---- the device-side WFDB reader --------------------------------------------------------------

def _same_as_wfdb(d, name):
    import wfdb

    from edgeseq.preprocess.wfdb_lite import read_record

    h = wfdb.rdheader(str(d / name))
    for ch, lead in enumerate(h.sig_name):
        rec = read_record(d, name, lead=lead, annotations=None)
        want = wfdb.rdrecord(str(d / name), channels=[ch], physical=True).p_signal[:, 0]
        assert rec.fs == h.fs and rec.signal.dtype == np.float64
        np.testing.assert_array_equal(rec.signal, want)  # the same float64 operation: exactly equal


def test_wfdb_lite_reads_records_and_annotations_as_wfdb_does(sample, mitdb):
    import wfdb

    from edgeseq.preprocess.wfdb_lite import read_record

    # the shipped excerpts (gain with a baseline in the header), and full records with two leads;
    # 207 holds flutter episodes, rhythm and noise annotations with aux notes
    for d, names in ((sample, ["106", "208"]), (mitdb, ["207", "208"])):
        for name in names:
            _same_as_wfdb(d, name)
            ann = wfdb.rdann(str(d / name), "atr")
            rec = read_record(d, name)
            np.testing.assert_array_equal(rec.ann_samples, ann.sample)
            assert rec.ann_symbols == list(ann.symbol)


@pytest.mark.parametrize("fmt", ["16", "80", "212"])
def test_wfdb_lite_formats_and_interleaving(tmp_path, fmt):
    """Three interleaved signals, an odd length (212 packs samples in pairs), every format read here."""
    import wfdb

    rng = np.random.default_rng(0)
    hi = {"16": 30000, "80": 120, "212": 2000}[fmt]
    d = rng.integers(-hi, hi, size=(1001, 3))
    wfdb.wrsamp("r", fs=250, units=["mV"] * 3, sig_name=["a", "MLII", "c"], d_signal=d, fmt=[fmt] * 3,
                adc_gain=[200.0, 100.0, 50.0], baseline=[0, 12, -7], write_dir=str(tmp_path))
    _same_as_wfdb(tmp_path, "r")


def test_wfdb_lite_refuses_what_it_does_not_read(tmp_path, sample):
    from edgeseq.errors import EdgeseqError
    from edgeseq.preprocess.wfdb_lite import read_record

    (tmp_path / "x.hea").write_text("x 1 360 100\nx.dat 310 200 12 0 0 0 0 MLII\n")
    (tmp_path / "x.dat").write_bytes(b"\0" * 200)
    with pytest.raises(EdgeseqError, match="format 310 is not read on the device"):
        read_record(tmp_path, "x")
    (tmp_path / "y.hea").write_text((sample / "208.hea").read_text().replace("208.dat", "y.dat"))
    (tmp_path / "y.dat").write_bytes((sample / "208.dat").read_bytes()[:3000])
    with pytest.raises(EdgeseqError, match="truncated"):
        read_record(tmp_path, "y")


# ---- predict: ECG ------------------------------------------------------------------------------

def test_predict_ecg_labels_the_beats_the_board_finds(small_bundle, sample, tmp_path, capsys):
    """Every beat the bundle's own detector finds, labelled by its runtime: the same R peaks and
    labels as the offline recipe, JSON lines that add up to the summary, a reference where the
    record is annotated, and a strip plot of sane size."""
    from PIL import Image

    from edgeseq.bundle import read_manifest
    from edgeseq.preprocess.ecg import EcgPreprocessing
    from edgeseq.preprocess.qrs import QRSDetector
    from edgeseq.preprocess.wfdb_lite import read_record
    from edgeseq.runtime import load

    out, plot = tmp_path / "b.jsonl", tmp_path / "strip.png"
    assert main(["predict", str(small_bundle), "--data", str(sample), "--records", "208", "--out", str(out),
                 "--plot", str(plot), "--start", "60", "--seconds", "25", "--quiet"]) == 0
    text = capsys.readouterr().out
    summary = _last_json(text)
    assert text.startswith("208: ") and summary["task"] == "ecg" and summary["runtime"]["format"] == "numpy"
    lines = _lines(out)
    assert len(lines) == summary["beats"] > 500 and summary["nonfinite_outputs"] == 0
    assert summary["labels"] == {k: sum(x["label"] == k for x in lines) for k in LABELS}
    for x in lines[:50]:
        assert set(x) == {"record", "sample", "time_s", "label", "confidence", "probabilities", "reference"}
        p = x["probabilities"]
        assert list(p) == LABELS and abs(sum(p.values()) - 1) < 1e-3 and x["confidence"] == max(p.values())
        assert x["label"] == max(p, key=p.get) and x["time_s"] == round(x["sample"] / 360, 4)
    # the offline recipe that the streaming path equals
    m = read_manifest(small_bundle)
    rec = read_record(sample, "208")
    det = QRSDetector.from_config(m["detector"])
    peaks = np.concatenate([det.process(rec.signal), det.flush()])
    w, f, idx = EcgPreprocessing.from_config(m["preprocessing"]).beats(rec.signal, peaks)
    assert [x["sample"] for x in lines] == peaks[idx].tolist()
    want = load(small_bundle).classify(w, f)
    assert np.mean([LABELS[k] == x["label"] for k, x in zip(want, lines)]) == 1.0
    # reference: the nearest annotated beat within 150 ms; agreement recomputed from the lines
    refd = [x for x in lines if x["reference"] is not None]
    assert len(refd) > 0.98 * len(lines) and {x["reference"] for x in refd} >= {"N", "V"}
    agree = np.mean([x["reference"] == x["label"] for x in refd])
    assert summary["reference"]["matched"] == len(refd)
    assert summary["reference"]["agreement"] == pytest.approx(agree)
    # 25 s: three rows of 10 s at 25 mm/s on ECG paper (about 1,600 px wide at 150 dpi)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and 50_000 < plot.stat().st_size < 5_000_000
    wpx, hpx = Image.open(plot).size
    assert 1400 < wpx < 1800 and 900 < hpx < 1500


def test_nearest_reference_takes_the_closest_beat_within_the_window():
    from edgeseq.tasks.predict import nearest_reference

    got = nearest_reference([5, 100, 149, 160, 400], [0, 150, 158, 300], [1, 2, 3, 4], 54)
    assert got.tolist() == [1, 2, 2, 3, -1]
    assert nearest_reference([1, 2], [], [], 54).tolist() == [-1, -1]


# ---- compare ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def exported(small_bundle, sample, tmp_path_factory):
    """The small bundle exported to ONNX float and int8."""
    pytest.importorskip("onnxruntime")
    root = tmp_path_factory.mktemp("cmp")
    f, q = root / "f.bundle", root / "q.bundle"
    assert main(["export", str(small_bundle), "--format", "onnx", "--out", str(f)]) == 0
    assert main(["export", str(small_bundle), "--format", "onnx", "--int8", "--calibration", str(sample),
                 "--records", "119", "--out", str(q)]) == 0
    return f, q


def test_compare_float_and_int8_side_by_side(exported, sample, tmp_path, capsys):
    f, q = exported
    js = tmp_path / "cmp.json"
    capsys.readouterr()
    assert main(["compare", str(f), str(q), "--data", str(sample), "--records", "208,209", "--json", str(js),
                 "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "(esn, onnx float32, 1 thread)" in text and "(esn, onnx int8, 1 thread)" in text
    assert "label agreement:" in text and "Se A" in text and "+P B" in text
    rep = json.loads(js.read_text())
    ag = rep["agreement"]
    table = np.array(ag["table"])
    assert table.shape == (5, 5) and table.sum() == ag["n"] == rep["a"]["n_beats"] == rep["b"]["n_beats"]
    assert 0 <= ag["fraction"] <= 1 and ag["fraction"] == pytest.approx(np.trace(table) / table.sum())
    assert ag["fraction"] > 0.95 and ag["differ"] == table.sum() - np.trace(table)
    assert set(ag["per_record"]) == {"208", "209"}
    assert rep["a"]["runtime"]["precision"] == "float32" and rep["b"]["runtime"]["precision"] == "int8"
    if ag["differ"]:
        assert "disagreements (rows: A's label, columns: B's label)" in text
    # the hook hands over what the evaluation scored, and runs nothing twice: each report is the
    # figure evaluate gives alone
    from edgeseq.tasks import ecg

    alone = ecg.evaluate(q, sample, ["208", "209"], progress=False)
    assert alone["confusion"] == rep["b"]["confusion"]


def test_evaluate_says_which_runtime_it_ran(exported, sample, capsys):
    _, q = exported
    assert main(["evaluate", str(q), "--data", str(sample), "--records", "208", "--quiet"]) == 0
    assert "runtime onnx int8, 1 thread" in capsys.readouterr().out.splitlines()[0]


# ---- balance -----------------------------------------------------------------------------------

TRIALS = ["BDS00001", "BDS00002", "BDS00013", "BDS00014", "BDS00025", "BDS00026"]


def test_evaluate_balance_bundle(score_bundle, hbedb, tmp_path, capsys):
    """The score bundle saw every subject: all named trials, with the note, the cv table with the
    baseline fitted on its training trials, JSON and the subjects plot."""
    js = tmp_path / "e.json"
    assert main(["evaluate", str(score_bundle), "--data", str(hbedb), "--records", ",".join(TRIALS),
                 "--json", str(js), "--quiet"]) == 0
    text = capsys.readouterr().out
    first = text.splitlines()[0]
    assert "runtime numpy float32" in first and "includes subjects the model was trained on" in first
    assert "trial MAE" in text and "baseline" in text and "constant" in text
    rep = json.loads(js.read_text())
    assert rep["n_trials"] == 6 and rep["n_windows"] == 66 and rep["includes_training_subjects"]
    assert rep["trials"] == TRIALS and 0 <= rep["mae"] < 5 and rep["baseline"]["mae"] >= 0
    true = np.array(rep["per_trial"]["true"])
    assert rep["mae"] == pytest.approx(np.mean(np.abs(np.array(rep["per_trial"]["pred"]) - true)))
    assert (tmp_path / "e.subjects.png").stat().st_size > 10_000


def test_balance_window_outputs_equal_the_board_pipeline(score_bundle, hbedb, tmp_path):
    """evaluate's windows through a step-only format (TFLite: all windows stepped together) give
    what the board's per-window pipeline gives."""
    pytest.importorskip("ai_edge_litert")
    from edgeseq.bridge.pipelines import WindowPipeline
    from edgeseq.bridge.tracker import Block
    from edgeseq.data.hbedb import load_trial
    from edgeseq.preprocess.balance import BalancePreprocessing
    from edgeseq.runtime import load
    from edgeseq.tasks.balance import window_outputs

    out = tmp_path / "t.bundle"
    assert main(["export", str(score_bundle), "--format", "tflite", "--out", str(out)]) == 0
    model = load(out)
    assert not model.runtime.get("model")  # no window form: the batched step path
    forces = load_trial(hbedb, "BDS00007").forces
    X, _, _ = BalancePreprocessing.from_config(model.manifest["preprocessing"]).windows(forces)
    got = window_outputs(model, X)[:, 0]
    pipe = WindowPipeline(out)
    board = [p.score for p in pipe.feed(Block(0, forces, 0, 0, 0.0))]
    np.testing.assert_allclose(got, board, atol=1e-5)


def test_predict_balance_windows_and_trial_average(score_bundle, hbedb, tmp_path, capsys):
    out = tmp_path / "w.jsonl"
    assert main(["predict", str(score_bundle), "--data", str(hbedb), "--records", "BDS00001,BDS00042",
                 "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    summary = _last_json(text)
    assert "BDS00001 window 0 (0-10 s): score" in text and "BDS00042: mean of 11 windows" in text
    lines = _lines(out)
    assert len(lines) == 24 and summary["windows"] == 22
    windows = [x["score"] for x in lines if x["trial"] == "BDS00042" and "window" in x]
    trial = next(x for x in lines if x["trial"] == "BDS00042" and "windows" in x)
    assert trial["score"] == pytest.approx(np.mean(windows), abs=1e-3) and trial["reference"] == 26.0


def test_train_balance_reports_what_it_saw_and_unseen_subjects_are_the_default(hbedb, tmp_path, capsys):
    from edgeseq.bundle import read_manifest
    from edgeseq.tasks.balance import default_trials

    b = tmp_path / "c.bundle"
    assert main(["train", "balance", "--data", str(hbedb), "--target", "surface", "--records", ",".join(TRIALS),
                 "--param", "units=40", "--out", str(b), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "trained esn on 6 trials of 3 subjects, 66 windows, target surface" in text
    assert "classes: Firm=" in text and "training fit (in-sample): trial accuracy" in text
    m = read_manifest(b)
    assert m["training"]["trials"] == TRIALS and 0 <= m["training"]["fit"]["accuracy"] <= 1
    names, seen = default_trials(hbedb, m)
    assert not seen and len(names) == 200 - 36 and not set(names) & set(TRIALS)  # 12 trials per subject
    assert main(["evaluate", str(b), "--data", str(hbedb), "--records", "BDS00040,BDS00100", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "subjects the bundle was not trained on: 2 subjects, 2 trials" in text and "trial acc %" in text


# ---- one-line errors ----------------------------------------------------------------------------

@pytest.mark.parametrize("extra, message", [
    (["--records", "999"], "record 999: header"),
    (["--records", "208", "--seconds", "0"], "argument --seconds"),
    (["--records", "208", "--seconds", "nan"], "argument --seconds"),
    (["--records", "208", "--plot", "p.png", "--start", "700"], "past the end of record 208"),
])
def test_predict_bad_input_is_one_line(small_bundle, sample, tmp_path, capsys, extra, message):
    extra = [str(tmp_path / a) if a.endswith(".png") else a for a in extra]
    assert main(["predict", str(small_bundle), "--data", str(sample), *extra, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("edgeseq: error:") and message in err


def test_compare_refuses_other_tasks_and_labels(small_bundle, score_bundle, hbedb, sample, tmp_path, capsys):
    assert main(["compare", str(small_bundle), str(score_bundle), "--data", str(sample)]) == 2
    assert "compare takes two bundles of one task" in capsys.readouterr().err
    cls = tmp_path / "cls.bundle"
    assert main(["train", "balance", "--data", str(hbedb), "--target", "vision", "--records", "BDS00001,BDS00002",
                 "--param", "units=20", "--out", str(cls), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["compare", str(cls), str(score_bundle), "--data", str(hbedb)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "have different labels" in err


# ---- the device path ----------------------------------------------------------------------------

DEVICE_SCRIPT = r"""
import json, sys
from edgeseq.cli import main
assert main(["predict", sys.argv[1], "--data", sys.argv[2], "--records", "208", "--quiet"]) == 0
assert main(["predict", sys.argv[3], "--data", sys.argv[4], "--records", "BDS00001", "--quiet"]) == 0
print(json.dumps(sorted(sys.modules)))
"""


def test_predict_runs_on_the_device_path(small_bundle, score_bundle, sample, hbedb):
    """``edgeseq predict`` on the board: numpy and a runtime; no wfdb, scipy, matplotlib or trainer."""
    out = subprocess.run([sys.executable, "-c", DEVICE_SCRIPT, str(small_bundle), str(sample), str(score_bundle),
                          str(hbedb)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    loaded = {m.split(".")[0] for m in json.loads(out.stdout.strip().splitlines()[-1])}
    heavy = {"scipy", "reservoirpy", "torch", "tensorflow", "wfdb", "matplotlib", "pandas", "sklearn", "onnx"}
    assert not loaded & heavy, loaded & heavy


@pytest.mark.parametrize("cmd", ["predict", "compare"])
def test_help(cmd, capsys):
    assert main([cmd, "--help"]) == 0 and f"usage: edgeseq {cmd}" in capsys.readouterr().out


def test_predict_never_labels_a_non_finite_output(small_bundle, sample, tmp_path, capsys, monkeypatch):
    """A beat whose logits are NaN is counted in the summary and left out of the labels."""
    from edgeseq.bridge.pipelines import EcgPipeline

    real = EcgPipeline._model

    def poisoned(path, threads):
        logits = real(path, threads)

        def run(w, f):
            z = np.array(logits(w, f))
            z[::7] = np.nan
            return z
        return run

    monkeypatch.setattr(EcgPipeline, "_model", staticmethod(poisoned))
    out = tmp_path / "b.jsonl"
    assert main(["predict", str(small_bundle), "--data", str(sample), "--records", "209", "--out", str(out),
                 "--quiet"]) == 0
    text = capsys.readouterr().out
    summary = _last_json(text)
    lines = _lines(out)
    assert summary["nonfinite_outputs"] > 10 and len(lines) == summary["beats"]
    assert all(x["label"] in LABELS for x in lines) and "non-finite outputs (not labelled)" in text
