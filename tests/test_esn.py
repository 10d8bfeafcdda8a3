"""ESN: reservoirpy's weights and equations, batched; the estimator contract every family keeps;
inference through the description; bundle round trip; the registry's dispatch."""

import numpy as np
import pytest
from reservoirpy.nodes import Reservoir

from edgeseq.errors import EdgeseqError
from edgeseq.models import FAMILIES, build
from edgeseq.models.base import NotFittedError
from edgeseq.models.esn import ESNClassifier, batched_states, reservoir_init
from edgeseq.models.esn_window import ESNWindowModel
from edgeseq.preprocess.ecg import RR_FEATURES


def _beats(n=240, T=40, seed=0):
    """Synthetic two-class sequences (a bump early or late): labels a reservoir can separate."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    t = np.arange(T)
    centre = np.where(y == 0, 10, 28)[:, None]
    X = np.exp(-0.5 * ((t - centre) / 3.0) ** 2) + 0.05 * rng.normal(size=(n, T))
    rr = (1 + 0.1 * rng.normal(size=(n, len(RR_FEATURES)))).astype(np.float32)  # physical-looking
    return X.astype(np.float32), rr, y


@pytest.mark.parametrize("lr,bias", [(1.0, 0.0), (0.3, 0.2)])
def test_batched_states_equal_reservoirpy_run(lr, bias):
    W, Win, b = reservoir_init(80, 1, lr=lr, sr=0.9, input_scaling=0.7, rc_connectivity=0.1,
                               input_connectivity=1.0, bias_scaling=bias, seed=5)
    U = np.random.default_rng(1).normal(size=(4, 60))
    last, mean = batched_states(U, W, Win, b, lr, dtype=np.float64, batch_size=3)
    for i in range(len(U)):
        res = Reservoir(units=80, lr=lr, W=W, Win=Win, bias=b if bias else 0.0)
        states = res.run(U[i][:, None])
        np.testing.assert_allclose(last[i], states[-1], atol=1e-10)
        np.testing.assert_allclose(mean[i], states.mean(axis=0), atol=1e-10)


def test_weights_come_from_reservoirpy_hyper_parameters():
    W, Win, b = reservoir_init(100, 1, lr=0.5, sr=0.8, input_scaling=0.5, rc_connectivity=0.2,
                               input_connectivity=1.0, bias_scaling=0.0, seed=3)
    assert np.isclose(np.abs(np.linalg.eigvals(W)).max(), 0.8)
    assert abs((W != 0).mean() - 0.2) < 0.02
    assert set(np.unique(np.abs(Win))) == {0.5}
    assert not b.any()


def test_estimator_contract_and_learning():
    X, rr, y = _beats()
    est = ESNClassifier(units=50, seed=2)
    assert not any(k.endswith("_") for k in vars(est))  # nothing learned before fit
    assert est.fit(X[:160], y[:160], rr[:160]) is est
    assert {"W_", "Win_", "bias_", "Wout_", "bout_", "classes_"} <= set(vars(est))
    acc = (est.predict(X[160:], rr[160:]) == y[160:]).mean()
    assert acc > 0.95
    assert est.get_params()["units"] == 50
    with pytest.raises(ValueError):
        est.set_params(nonsense=1)


def test_seed_makes_training_deterministic():
    X, rr, y = _beats()
    a = ESNClassifier(units=40, seed=7).fit(X, y, rr).decision_function(X, rr)
    b = ESNClassifier(units=40, seed=7).fit(X, y, rr).decision_function(X, rr)
    c = ESNClassifier(units=40, seed=8).fit(X, y, rr).decision_function(X, rr)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_class_balancing_changes_the_readout():
    X, rr, y = _beats(n=300)
    y = np.where(np.arange(300) % 10 == 0, y, 0)  # class 1 becomes rare
    bal = ESNClassifier(units=40, seed=1).fit(X, y, rr)
    raw = ESNClassifier(units=40, seed=1, class_weight=None).fit(X, y, rr)
    assert (bal.predict(X, rr) == 1).sum() > (raw.predict(X, rr) == 1).sum()


def test_arrays_round_trip_gives_identical_predictions():
    X, rr, y = _beats()
    est = ESNClassifier(units=30, seed=4).fit(X, y, rr)
    again = ESNClassifier.from_arrays(est.get_params(), est.to_arrays())
    np.testing.assert_allclose(again.decision_function(X, rr), est.decision_function(X, rr), atol=1e-4)


@pytest.mark.parametrize("est", [ESNClassifier(), ESNWindowModel()])
def test_unfitted_model_says_so(est):
    X = np.zeros((1, 5)) if isinstance(est, ESNClassifier) else np.zeros((1, 5, 4))
    for call in (lambda: est.predict(X, np.zeros((1, 9)) if isinstance(est, ESNClassifier) else None),
                 lambda: est.to_arrays(), lambda: est.reservoir_features(X)):
        with pytest.raises(NotFittedError, match="not fitted yet: call fit") as exc:
            call()
        # one error type for every family: an EdgeseqError (one line on the CLI) and, as
        # scikit-learn's NotFittedError, a ValueError and an AttributeError
        assert isinstance(exc.value, EdgeseqError) and isinstance(exc.value, ValueError) \
            and isinstance(exc.value, AttributeError)


def test_decision_function_is_the_description_and_equals_the_training_readout():
    """Inference runs the description; the readout cross-validation fits on the training path's
    states (batched_states) gives the same logits, to float32 rounding."""
    X, rr, y = _beats()
    est = ESNClassifier(units=40, seed=3).fit(X[:160], y[:160], rr[:160])
    z = est.decision_function(X[160:], rr[160:])
    assert z.dtype == np.float32 and z.shape == (80, 2)
    ref = est.decision_function_from_features(est.reservoir_features(X[160:], rr[160:]), rr[160:])
    np.testing.assert_allclose(z, ref, atol=1e-5 * np.abs(ref).max())
    g = est.description(X.shape[1], rr.shape[1])
    assert g.inputs == ["window", "rr"] and g.outputs == ["logits"]
    with pytest.raises(EdgeseqError, match=r"RR features must be \(beats, 9\)"):
        est.decision_function(X[:3], rr[:3, :4])
    with pytest.raises(EdgeseqError, match="one channel"):
        est.decision_function(np.stack([X[:3], X[:3]], axis=2), rr[:3])


def test_step_graph_of_a_training_bundle_equals_decision_function(small_bundle, sample):
    """The description's step graph, fed one sample at a time by the runtime with the beat's rr
    held, ends the window with ``decision_function``'s logits."""
    from edgeseq import runtime
    from edgeseq.tasks import ecg

    _, prep, est = ecg.load_model(small_bundle)
    beats = ecg.load_beats(sample, ["208"], prep, progress=False)
    w, rr = beats.windows[:8], beats.rr[:8]
    want = est.decision_function(w, rr)
    model = runtime.load(small_bundle)
    st = model.initial_state(len(w), rr=rr)
    for t in range(w.shape[1]):
        y, st = model.step(np.ascontiguousarray(w[:, t:t + 1]), st)
    np.testing.assert_allclose(y, want, atol=1e-5 * np.abs(want).max())
    np.testing.assert_allclose(model.logits(w, rr), want, atol=1e-5 * np.abs(want).max())


def test_window_esn_decision_function_is_the_mean_of_the_sequence_description():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 25, 4)).astype(np.float32)
    y = X[:, :, 0].mean(axis=1)
    m = ESNWindowModel(units=30).fit(X, y)
    z = m.decision_function(X)
    ref = m.decision_function_from_features(m.reservoir_features(X))
    assert z.shape == (60, 1)
    np.testing.assert_allclose(z, ref, atol=1e-5 * np.abs(ref).max())
    assert np.corrcoef(m.predict(X), y)[0, 1] > 0.5
    with pytest.raises(EdgeseqError, match="no side features"):
        m.predict(X, np.zeros((60, 2)))


ESTIMATORS = sorted({f.estimator for f in FAMILIES.values() if f.estimator}, key=lambda c: c.__name__)


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_hyper_parameters_are_init_parameters_each_with_a_range(cls):
    """get_params reads __init__'s signature (nothing to drift), and every name has a PARAMS rule."""
    import inspect

    names = cls.hyper_parameters()
    assert list(names) == [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    assert set(names) == set(cls.PARAMS)
    est = cls()
    assert list(est.get_params()) == list(names)
    again = cls(**est.get_params())  # scikit-learn's clone
    assert again.get_params() == est.get_params()
    with pytest.raises(ValueError, match="unknown .* hyper-parameter 'nonsense'"):
        est.set_params(nonsense=1)
    sig = inspect.signature(cls.fit).parameters
    assert list(sig)[:4] == ["self", "X", "y", "side"] and sig["n_classes"].kind == sig["progress"].kind \
        == inspect.Parameter.KEYWORD_ONLY
    assert list(inspect.signature(cls.predict).parameters) == ["self", "X", "side"]
    assert list(inspect.signature(cls.decision_function).parameters) == ["self", "X", "side"]


def test_build_dispatches_on_the_registry():
    assert build("ecg", "esn", size="full").units == 5000 and build("ecg", "esn", size="small").units == 300
    assert build("balance", "esn", size="full", device="cuda").units == 5000  # no device: none set
    tcn = build("balance", "tcn", seed=4, objective="regression", device="cpu")
    assert (tcn.epochs, tcn.class_weight, tcn.objective, tcn.seed) == (40, None, "regression", 4)
    assert build("balance", "lstm", size="full", objective="regression").epochs is None  # the full preset's
    assert build("ecg", "lstm", params={"epochs": 3}, size="full").get_params()["epochs"] == 3  # --param wins
    assert build("ecg", "esn", device="cuda").device == "cuda"
    with pytest.raises(EdgeseqError, match="no model family for task 'ecg', kind 'gru' \\(known: esn, lstm, tcn\\)"):
        build("ecg", "gru")
    with pytest.raises(EdgeseqError, match="--size must be small or full"):
        build("ecg", "esn", size="huge")
    assert build("ecg", "esn").SHARED_FEATURES and not build("ecg", "tcn").SHARED_FEATURES
