"""ESN: reservoirpy's weights and equations, batched; the scikit-learn contract; bundle round trip."""

import numpy as np
import pytest
from reservoirpy.nodes import Reservoir

from edgeseq.preprocess.ecg import RR_FEATURES
from edgeseq.models.esn import ESNClassifier, batched_states, reservoir_init, sequence_states


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
        np.testing.assert_allclose(sequence_states(U[i], W, Win, b, lr), states, atol=1e-10)


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
    assert est.fit(X[:160], rr[:160], y[:160]) is est
    assert {"W_", "Win_", "bias_", "Wout_", "bout_", "classes_"} <= set(vars(est))
    acc = (est.predict(X[160:], rr[160:]) == y[160:]).mean()
    assert acc > 0.95
    assert est.get_params()["units"] == 50
    with pytest.raises(ValueError):
        est.set_params(nonsense=1)


def test_seed_makes_training_deterministic():
    X, rr, y = _beats()
    a = ESNClassifier(units=40, seed=7).fit(X, rr, y).decision_function(X, rr)
    b = ESNClassifier(units=40, seed=7).fit(X, rr, y).decision_function(X, rr)
    c = ESNClassifier(units=40, seed=8).fit(X, rr, y).decision_function(X, rr)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_class_balancing_changes_the_readout():
    X, rr, y = _beats(n=300)
    y = np.where(np.arange(300) % 10 == 0, y, 0)  # class 1 becomes rare
    bal = ESNClassifier(units=40, seed=1).fit(X, rr, y)
    raw = ESNClassifier(units=40, seed=1, class_weight=None).fit(X, rr, y)
    assert (bal.predict(X, rr) == 1).sum() > (raw.predict(X, rr) == 1).sum()


def test_arrays_round_trip_gives_identical_predictions():
    X, rr, y = _beats()
    est = ESNClassifier(units=30, seed=4).fit(X, rr, y)
    again = ESNClassifier.from_arrays(est.get_params(), est.to_arrays())
    np.testing.assert_allclose(again.decision_function(X, rr), est.decision_function(X, rr), atol=1e-4)


def test_unfitted_model_says_so():
    with pytest.raises(RuntimeError, match="fit"):
        ESNClassifier().predict(np.zeros((1, 5)), np.zeros((1, 6)))
