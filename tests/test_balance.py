"""Balance task on the real force-platform data: preprocessing, leave-subject-out CV with its
baseline, the ESN and TCN bundles exported to ONNX and TFLite (float and int8), and streaming
over the serial bridge."""

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edgeseq.cli import main
from edgeseq.preprocess.balance import BalancePreprocessing, corner_forces, sway_features



def test_window_inputs_follow_the_cop():
    prep = BalancePreprocessing()
    t = np.arange(6000) / 100.0
    x, y = 0.3 * np.sin(2 * np.pi * 0.5 * t), 0.1 * np.cos(2 * np.pi * 0.2 * t)
    F = corner_forces(np.full(len(t), 600.0), x, y)
    X, S, starts = prep.windows(F)
    assert X.shape == (11, 250, 4) and starts.tolist() == list(range(0, 5001, 500))
    # the input's first channel is the decimated, centred COP x over the scale
    d = x[:1000].reshape(250, 4).mean(axis=1)
    np.testing.assert_allclose(X[0, :, 0], (d - d.mean()) / prep.input_scale[0], atol=1e-5)
    # RMS of a 0.3 cm sine is 0.3 / sqrt(2); its mean frequency is its own 0.5 Hz x (pi / (2 sqrt 2)) / ...
    assert S[0, 0] == pytest.approx(0.3 / np.sqrt(2), rel=0.02)
    assert sway_features(np.zeros((1, 100, 2)) + 1.0, 100.0)[0, 3] == 0.0


@pytest.mark.parametrize("target", ["Best_T", "condition"])
def test_leave_subject_out_cv_with_baseline(hbedb, tmp_path, target):
    out = tmp_path / f"{target}.json"
    assert main(["cv", "balance", "--model", "esn", "--data", str(hbedb), "--target", target, "--json", str(out),
                 "--quiet", "--param", "units=150"]) == 0
    rep = json.loads(out.read_text())
    assert rep["task"] == "balance" and rep["target"] == target
    assert rep["n_trials"] == 200 and rep["n_subjects"] == 17 and rep["cv"] == "leave-one-subject-out"
    if target == "condition":
        conf = np.array(rep["confusion"])
        assert conf.sum() == 200 and 0.25 < rep["accuracy"] <= 1 and "accuracy" in rep["baseline"]
        # firm against foam is what sway shows plainly; eyes open against closed it barely does
        surface = (conf[[0, 2]][:, [0, 2]].sum() + conf[[1, 3]][:, [1, 3]].sum()) / conf.sum()
        assert surface > 0.8
        assert (out.with_name(out.stem + ".confusion.png")).stat().st_size > 5000
    else:
        assert set(rep["per_subject"]) == {str(i) for i in range(1, 18)}
        assert rep["observed_range"] == [21.0, 27.0] and rep["score_range"] == [0.0, 28.0]
        for r in (rep, rep["baseline"], rep["constant"]):
            assert 0 < r["mae"] < 3 and r["mae_pct_range"] == pytest.approx(100 * r["mae"] / 28)
        assert (out.with_name(out.stem + ".subjects.png")).stat().st_size > 5000


FORMATS = ["onnx", "tflite"]


def _trial_windows(hbedb, prep, names):
    from edgeseq.data.hbedb import load_trial

    return np.concatenate([prep.windows(load_trial(hbedb, n).forces)[0] for n in names]).astype(np.float32)


@pytest.mark.parametrize("fmt", FORMATS)
def test_exported_score_model_equals_the_training_bundle(hbedb, score_bundle, tmp_path, fmt):
    """The balance ESN is a sequence model: each window's score is the mean of its step outputs,
    from the initial state (the bridge runs it so); exported, float and int8, it scores as the
    training bundle does on the numpy runtime."""
    from edgeseq import runtime
    from edgeseq.tasks import balance

    if fmt == "tflite":
        pytest.importorskip("ai_edge_litert")
    _, prep, est = balance.load_model(score_bundle)
    X = _trial_windows(hbedb, prep, ["BDS00042"])
    ref = runtime.load(score_bundle)
    assert ref.runtime["format"] == "numpy" and ref.runtime["interface"] == "sequence"
    want = np.array([ref.run(x, ref.initial_state()).mean(axis=0)[0] for x in X])
    np.testing.assert_allclose(want, est.predict(X), atol=1e-4)  # the numpy runtime is the estimator
    out = tmp_path / f"b.{fmt}"
    assert main(["export", str(score_bundle), "--format", fmt, "--out", str(out)]) == 0
    m = runtime.load(out)
    assert m.runtime["format"] == fmt and m.runtime["interface"] == "sequence"
    got = np.array([m.run(x, m.initial_state()).mean(axis=0)[0] for x in X])
    np.testing.assert_allclose(got, want, atol=1e-4)
    # int8 needs no calibration data: the tanh state has a fixed range
    q8 = tmp_path / f"q.{fmt}"
    assert main(["export", str(score_bundle), "--format", fmt, "--int8", "--out", str(q8)]) == 0
    q = runtime.load(q8)
    assert q.runtime["precision"] == "int8" and q.runtime["quantization"]["calibration_inputs"] == 0
    got8 = np.array([q.run(x, q.initial_state()).mean(axis=0)[0] for x in X])
    # measured on 220 windows of 20 trials: at most 0.016 points of float on the 0-28 score
    np.testing.assert_allclose(got8, want, atol=0.1)
    assert np.abs(got8 - want).max() > 0  # the weights really are int8


@pytest.mark.parametrize("fmt", FORMATS)
def test_tcn_balance_bundle_exports_float_and_int8(hbedb, tcn_condition_bundle, tmp_path, capsys, fmt):
    """A window model: float classifies every window as the training bundle does; int8 (its
    activation ranges calibrated on the data set) nearly always."""
    from edgeseq import runtime
    from edgeseq.data.hbedb import list_trials
    from edgeseq.tasks import balance

    if fmt == "tflite":
        pytest.importorskip("ai_edge_litert")
    _, prep, est = balance.load_model(tcn_condition_bundle)
    X = _trial_windows(hbedb, prep, list_trials(hbedb)[::10])  # 20 trials, 220 windows
    want = est.predict(X)
    assert 0 < want.mean() < 1  # both classes, so agreement means something
    out = tmp_path / f"f.{fmt}"
    assert main(["export", str(tcn_condition_bundle), "--format", fmt, "--out", str(out)]) == 0
    m = runtime.load(out)
    rt = m.runtime
    assert rt["interface"] == "windows" and rt["precision"] == "float32" and rt["window_length"] == prep.steps
    assert rt["inputs"] == {"window": {"shape": ["B", prep.steps, 4], "dtype": "float32"}}
    np.testing.assert_array_equal(m.classify(X), want)
    capsys.readouterr()
    q8 = tmp_path / f"q.{fmt}"
    assert main(["export", str(tcn_condition_bundle), "--format", fmt, "--int8", "--calibration", str(hbedb),
                 "--out", str(q8)]) == 0
    assert "exported int8" in capsys.readouterr().out
    q = runtime.load(q8)
    assert q.runtime["precision"] == "int8" and q.runtime["quantization"]["calibration_inputs"] > 1000
    agree = np.mean(q.classify(X) == want)
    assert agree >= 0.97, agree  # measured 0.995 (one window of 220)


def test_balance_bundle_streams_over_the_bridge(hbedb, score_bundle, tmp_path):
    from edgeseq.bridge.emulator import Emulator, load_source
    from edgeseq.bridge.serve import Bridge
    from edgeseq.tasks import balance

    trial = hbedb / "BDS" / "data" / "BDS00007.txt"
    src = load_source(f"hbedb:{trial}")
    link = tmp_path / "ttyBal"
    emu = Emulator(src, link, speed=None, log=lambda m: None, connect_timeout_s=20)
    th = threading.Thread(target=emu.run, daemon=True)
    th.start()
    while not link.is_symlink():
        time.sleep(0.01)
    preds = []
    bridge = Bridge(str(link), score_bundle, give_up_s=0.5, quiet=True)
    orig = bridge._emit
    bridge._emit = lambda p, **kw: (preds.extend(p), orig(p, **kw))[1]
    s = bridge.run()
    th.join(timeout=30)
    assert s["lost_samples"] == 0 and s["predictions"] == len(preds) == 11
    # the same windows offline, from the forces the device sent (0.01 N counts)
    _, prep, est = balance.load_model(score_bundle)
    X, _, starts = prep.windows(src.counts * 0.01)
    np.testing.assert_allclose([p.score for p in preds], est.predict(X), atol=1e-4)
    assert [p.sample for p in preds] == (starts + prep.window - 1).tolist()


def test_balance_cli_errors(hbedb, tmp_path, capsys, tcn_condition_bundle):
    cases = [
        (["cv", "balance", "--target", "Best_T"], "balance needs --data"),
        (["cv", "balance", "--data", str(hbedb)], "balance needs --target"),
        (["cv", "balance", "--data", str(hbedb), "--target", "Berg", "--quiet"], "Berg"),
        # a TCN's activation ranges are open: int8 needs the data set to calibrate them on
        (["export", str(tcn_condition_bundle), "--int8", "--out", str(tmp_path / "x")], "needs calibration data"),
    ]
    for args, msg in cases:
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith("edgeseq: error:") and msg in err, err


def test_tcn_balance_bundle_learns_surface_and_serves(hbedb, tcn_condition_bundle, tmp_path):
    from edgeseq.bridge.pipelines import open_pipeline
    from edgeseq.data.hbedb import list_trials, load_trial
    from edgeseq.tasks import balance

    b, prep, est = balance.load_model(tcn_condition_bundle)
    assert b.manifest["model"]["kind"] == "tcn" and b.manifest["labels"] == ["Firm", "Foam"]
    assert b.manifest["model"]["architecture"]["inputs"] == 4 and b.manifest["model"]["architecture"]["side"] == 0
    # on its own training trials it tells foam from firm (the sway shows it plainly)
    names = list_trials(hbedb)[:40]
    ws = balance.load_windows(hbedb, prep, "surface", names=names, progress=False)
    acc = np.mean(est.predict(ws.X) == ws.y[ws.trial])
    assert acc > 0.75
    # the training bundle runs in the bridge's window pipeline, one prediction per window
    trial = load_trial(hbedb, names[0])
    pipe = open_pipeline(tcn_condition_bundle)
    from edgeseq.bridge.tracker import Block

    blk = Block(first_index=0, samples=trial.forces, lost_before=0, device_time_us=0, arrival=0.0)
    preds = pipe.feed(blk)
    X, _, _ = prep.windows(trial.forces)
    assert len(preds) == len(X)
    np.testing.assert_array_equal([p.label_index for p in preds], est.predict(X))


def test_balance_lstm_cv(hbedb, tmp_path, capsys):
    pytest.importorskip("torch")
    out = tmp_path / "cv.json"
    assert main(["cv", "balance", "--model", "lstm", "--data", str(hbedb), "--target", "Best_T", "--json", str(out),
                 "--quiet", "--param", "hidden=8", "--param", "epochs=2"]) == 0
    rep = json.loads(out.read_text())
    assert rep["model"] == "lstm" and rep["n_subjects"] == 17 and 0 < rep["mae"] < 5
    assert "LSTM" in capsys.readouterr().out
