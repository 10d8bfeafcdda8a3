"""LSTM and TCN window models: their descriptions (numpy) against PyTorch, the step form (the
description's step graph, run by ``edgeseq.runtime``) against the window form, determinism,
device selection, and the ESN's torch state path."""

import json
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgeseq import runtime  # noqa: E402
from edgeseq.bundle import write_bundle  # noqa: E402
from edgeseq.cli import main  # noqa: E402
from edgeseq.errors import EdgeseqError  # noqa: E402
from edgeseq.models import LSTMModel, TCNModel  # noqa: E402
from edgeseq.models.base import NotFittedError  # noqa: E402
from edgeseq.models.torch_fit import _modules, resolve_device  # noqa: E402
from edgeseq.preprocess.balance import BalancePreprocessing  # noqa: E402
from edgeseq.preprocess.ecg import RR_FEATURES, EcgPreprocessing  # noqa: E402
from edgeseq.preprocess.qrs import QRSDetector  # noqa: E402
from edgeseq.tasks import ecg  # noqa: E402


@pytest.fixture(scope="module")
def beats(sample):
    return ecg.load_beats(sample, ["119", "201", "223"], EcgPreprocessing(), progress=False)


def _from_net(cls, kind, hp, D, F, C, seed=0):
    """A numpy model carrying the weights of a freshly initialised torch module, and the module."""
    torch.manual_seed(seed)
    net = _modules()[kind](D, F, C, hp).eval()
    arr = net.arrays()
    h = net.head
    rng = np.random.default_rng(seed)
    arr.update(in_scale=rng.uniform(0.5, 2, D).astype(np.float32),
               side_center=rng.normal(size=F).astype(np.float32),
               side_scale=rng.uniform(0.5, 2, F).astype(np.float32),
               head_W1=h.fc1.weight.detach().numpy().T, head_b1=h.fc1.bias.detach().numpy(),
               head_W2=h.fc2.weight.detach().numpy().T, head_b2=h.fc2.bias.detach().numpy())
    return cls.from_arrays({}, arr), net, arr


CASES = [("lstm", LSTMModel, {"hidden": 12, "layers": 2, "head": 8}),
         ("tcn", TCNModel, {"channels": 6, "blocks": 4, "kernel": 3, "head": 8}),
         ("tcn", TCNModel, {"channels": 3, "blocks": 3, "kernel": 2, "head": 4})]  # D == C: no projection


@pytest.mark.parametrize("kind,cls,hp", CASES)
def test_numpy_reference_equals_torch(kind, cls, hp):
    D = 3
    m, net, arr = _from_net(cls, kind, hp, D=D, F=4, C=5)
    rng = np.random.default_rng(1)
    u = rng.normal(size=(7, 50, D)).astype(np.float32)
    s = rng.normal(size=(7, 4)).astype(np.float32) * 3
    z = np.clip((s - arr["side_center"]) * arr["side_scale"], -4, 4)
    with torch.no_grad():
        ref = net(torch.from_numpy(u * arr["in_scale"]), torch.from_numpy(z)).numpy()
    np.testing.assert_allclose(m.decision_function(u, s), ref, atol=2e-5)
    assert (kind == "tcn" and hp["channels"] != D) == ("tcn_P" in m.to_arrays())


def _training_bundle(path, m, kind, task):
    """``m`` as a training bundle of ``task``: one channel and the beats' rr (ecg, 126-sample
    windows), or four channels and no side features (balance, the preprocessing's windows)."""
    if task == "ecg":
        prep = EcgPreprocessing()
        manifest = {"task": "ecg", "sample_rate": prep.sample_rate, "lead": prep.lead,
                    "labels": ["N", "S", "V", "F", "Q"], "preprocessing": prep.config(),
                    "detector": QRSDetector(prep.sample_rate).config(),
                    "model": {"kind": kind, "params": m.get_params(),
                              "input": {"window_length": prep.window_length, "rr_features": list(RR_FEATURES)}}}
    else:
        prep = BalancePreprocessing()
        manifest = {"task": "balance", "target": "condition", "sample_rate": prep.sample_rate,
                    "labels": ["a", "b", "c", "d", "e"], "preprocessing": prep.config(),
                    "model": {"kind": kind, "params": m.get_params()}}
    return write_bundle(path, manifest, m.to_arrays())


STEP_CASES = [("ecg", "lstm", LSTMModel, {"hidden": 12, "layers": 2, "head": 8}, 1, len(RR_FEATURES)),
              ("ecg", "tcn", TCNModel, {"channels": 6, "blocks": 4, "kernel": 3, "head": 8}, 1, len(RR_FEATURES)),
              ("balance", "tcn", TCNModel, {"channels": 4, "blocks": 3, "kernel": 2, "head": 4}, 4, 0)]  # D == C


@pytest.mark.parametrize("task,kind,cls,hp,D,F", STEP_CASES)
def test_step_graph_equals_decision_function(task, kind, cls, hp, D, F, tmp_path):
    """The description's step graph, run sample by sample by the runtime on a training bundle,
    ends each window with the logits ``decision_function`` gives for the whole window."""
    m, _, _ = _from_net(cls, kind, hp, D=D, F=F, C=5, seed=2)
    model = runtime.load(_training_bundle(tmp_path / "m.bundle", m, kind, task))
    T = model.window_length
    assert T > 70  # longer than the small TCNs' receptive fields
    rng = np.random.default_rng(3)
    u = rng.normal(size=(5, T, D)).astype(np.float32)
    s = rng.normal(size=(5, F)).astype(np.float32)
    want = m.decision_function(u, s if F else None)
    for _ in range(2):  # a new initial state starts the next window from zero
        st = model.initial_state(5, **({"rr": s} if F else {}))
        for t in range(T):
            y, st = model.step(np.ascontiguousarray(u[:, t]), st)
            assert (y is None) == (t < T - 1)
        np.testing.assert_allclose(y, want, atol=1e-5 * max(1.0, np.abs(want).max()))
    assert np.abs(want).max() > 1e-3  # not a vacuous zero model


def test_tcn_step_state_is_bounded_by_the_kernel_not_the_window(tmp_path):
    m, _, _ = _from_net(TCNModel, "tcn", {"channels": 4, "blocks": 5, "kernel": 3, "head": 4}, D=1,
                        F=len(RR_FEATURES), C=5)
    model = runtime.load(_training_bundle(tmp_path / "m.bundle", m, "tcn", "ecg"))
    st = model.initial_state(1, rr=np.ones((1, len(RR_FEATURES)), np.float32))
    sizes = {k: st[k].shape[1] for k in model.state_names if k.startswith("buf")}
    assert sizes == {f"buf{l}": 2 * 2 ** l for l in range(5)}  # (K-1) * dilation rows per block
    for _ in range(300):  # past the window: the state keeps its size
        _, st = model.step(np.ones((1, 1), np.float32), st)
    assert {k: st[k].shape[1] for k in sizes} == sizes


@pytest.mark.parametrize("cls", [LSTMModel, TCNModel])
def test_unfitted_model_raises_not_fitted(cls):
    with pytest.raises(NotFittedError, match="not fitted"):
        cls().predict(np.zeros((2, 30), np.float32))
    with pytest.raises(ValueError):  # scikit-learn's NotFittedError is a ValueError and an AttributeError
        cls().to_arrays()


@pytest.mark.parametrize("cls,params", [(LSTMModel, {"hidden": 8}), (TCNModel, {"channels": 6, "blocks": 3})])
def test_fit_is_deterministic_and_learns(beats, cls, params):
    w, r, y = beats.windows[::3], beats.rr[::3], beats.labels[::3]
    fits = [cls(epochs=8, batch_size=64, seed=5, **params).fit(w, y, r, n_classes=5) for _ in range(2)]
    a, b = fits[0].to_arrays(), fits[1].to_arrays()
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    other = cls(epochs=1, seed=6, **params).fit(w, y, r, n_classes=5)
    assert not np.array_equal(other.to_arrays()["head_W2"], a["head_W2"])
    losses = [e["loss"] for e in fits[0].training_["epochs"]]
    assert losses[-1] < losses[0]
    # better than always saying N on the beats it saw, balanced for the classes present
    pred = fits[0].predict(w, r)
    present = np.unique(y)
    recall = np.mean([(pred[y == c] == c).mean() for c in present])
    assert recall > 1.5 / len(present)


def test_regression_objective_returns_scores_on_the_target_scale():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 30, 2)).astype(np.float32)
    y = 20 + 3 * X[:, :, 0].mean(axis=1) / X[:, :, 0].mean(axis=1).std()
    m = TCNModel(objective="regression", channels=6, blocks=3, epochs=30, learning_rate=1e-2).fit(X, y)
    pred = m.predict(X)
    assert pred.shape == (300,)
    assert np.corrcoef(pred, y)[0, 1] > 0.8
    assert abs(pred.mean() - y.mean()) < 1.0


def test_cuda_request_without_a_gpu_falls_back_with_one_line(capsys):
    if torch.cuda.is_available():
        assert resolve_device("cuda")[0].type == "cuda"
        return
    dev, note = resolve_device("cuda")
    assert dev.type == "cpu"
    err = capsys.readouterr().err
    assert "--device cuda" in err and "training on the CPU instead" in err and err.count("\n") == 1
    assert resolve_device("auto") == (torch.device("cpu"), "")
    assert resolve_device("cpu") == (torch.device("cpu"), "")
    with pytest.raises(EdgeseqError, match="--device must be one of"):
        resolve_device("tpu")


def test_full_size_is_wider_and_deeper():
    small, full = LSTMModel().resolved(), LSTMModel(size="full").resolved()
    assert full["hidden"] > small["hidden"] and full["layers"] > small["layers"]
    small, full = TCNModel().resolved(), TCNModel(size="full").resolved()
    assert full["channels"] > small["channels"] and full["blocks"] > small["blocks"]
    assert LSTMModel(size="full", hidden=7).resolved()["hidden"] == 7  # explicit beats the preset
    with pytest.raises(EdgeseqError, match="size must be"):
        LSTMModel(size="huge").resolved()


def test_bad_inputs_are_one_clear_error(beats):
    m = TCNModel(channels=4, blocks=2, epochs=1).fit(beats.windows[:300], beats.labels[:300], beats.rr[:300],
                                                     n_classes=5)
    w = beats.windows[:3].copy()
    w[1, 5] = np.nan
    with pytest.raises(EdgeseqError, match="window 1 contains NaN"):
        m.predict(w, beats.rr[:3])
    with pytest.raises(EdgeseqError, match=r"side features must be \(B, 9\)"):
        m.predict(beats.windows[:3], beats.rr[:3, :4])
    with pytest.raises(EdgeseqError, match="pass them"):
        m.predict(beats.windows[:3])
    bad = beats.windows[:50].copy()
    bad[7, 0] = np.inf
    with pytest.raises(EdgeseqError, match="training windows holds NaN or infinite"):
        TCNModel(epochs=1).fit(bad, beats.labels[:50], beats.rr[:50], n_classes=5)


def test_esn_states_in_torch_equal_the_numpy_path():
    from edgeseq.models.esn import batched_states, reservoir_init
    from edgeseq.models.esn_torch import batched_states_torch

    rng = np.random.default_rng(0)
    W, Win, b = reservoir_init(400, 3, lr=0.3, sr=0.9, input_scaling=0.5, rc_connectivity=0.1,
                               input_connectivity=1.0, bias_scaling=0.2, seed=1)
    U = rng.normal(size=(300, 60, 1)).astype(np.float32)
    C = rng.normal(size=(300, 2)).astype(np.float32)
    ref = batched_states(U, W, Win, b, 0.3, const=C, batch_size=128)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    got = batched_states_torch(U, W, Win, b, 0.3, const=C, device=dev, batch_size=100)
    for r, g in zip(ref, got):
        np.testing.assert_allclose(g, r, atol=1e-5)


def test_esn_device_cuda_without_a_gpu_computes_on_the_cpu(beats, capsys):
    from edgeseq.models import ESNClassifier

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the fallback cannot be exercised")
    a = ESNClassifier(units=40, device="cuda", seed=2).fit(beats.windows[:200], beats.labels[:200], beats.rr[:200],
                                                           n_classes=5)
    b = ESNClassifier(units=40, seed=2).fit(beats.windows[:200], beats.labels[:200], beats.rr[:200], n_classes=5)
    np.testing.assert_array_equal(a.Wout_, b.Wout_)
    assert "training on the CPU instead" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["lstm", "tcn"])
def test_cli_train_evaluate_cv(kind, sample, tmp_path, capsys):
    out = tmp_path / f"{kind}.bundle"
    assert main(["train", "ecg", "--model", kind, "--records", "119,201,223", "--out", str(out), "--seed", "3",
                 "--param", "epochs=2", "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert err.count(f"{kind} epochs: ") == 2  # a line per epoch, also off a terminal
    m = json.loads((out / "manifest.json").read_text())
    assert m["model"]["kind"] == kind and m["model"]["architecture"]["n_params"] > 1000
    assert m["training"]["device"] == "cpu" and len(m["training"]["epochs"]) == 2
    assert main(["evaluate", str(out), "--records", "208", "--json", str(tmp_path / "e.json"), "--quiet"]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["n_beats"] > 1000
    assert main(["cv", "ecg", "--model", kind, "--records", "119,201,223,106", "--folds", "2", "--param", "epochs=1",
                 "--json", str(tmp_path / "cv.json"), "--quiet"]) == 0
    rep = json.loads((tmp_path / "cv.json").read_text())
    assert rep["n_folds"] == 2 and all("seconds_fit" in f for f in rep["folds"])
    assert rep["model"]["kind"] == kind


def test_cli_unknown_hyper_parameter(sample, tmp_path, capsys):
    assert main(["train", "ecg", "--model", "lstm", "--records", "119", "--out", str(tmp_path / "x"),
                 "--param", "units=3", "--quiet"]) == 2
    assert "unknown LSTM hyper-parameter 'units'" in capsys.readouterr().err


def test_numpy_inference_of_a_trained_bundle_needs_no_torch(sample, tmp_path):
    out = tmp_path / "t.bundle"
    ecg.train(sample, ["119"], out=out, model="tcn", params={"epochs": 1, "channels": 4}, progress=False)
    code = ("import sys, numpy as np; from edgeseq.tasks.ecg import load_model; "
            f"b, prep, est = load_model({str(out)!r}); "
            "est.predict(np.zeros((2, 126), np.float32), np.ones((2, 9), np.float32)); "
            "print(sorted(m for m in ('torch', 'reservoirpy', 'onnx', 'tensorflow') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "[]"
