"""Balance recipes (host side): trials -> windows -> model -> bundle, and leave-subject-out
cross-validation with a classic posturography baseline measured on the same folds.

Targets: a clinical score column (``Best_T``, the Mini-BESTest total, in the shared data; ``Berg``
or any numeric column of a user's ``trials.csv``) as regression, or ``condition`` (vision
open/closed x surface firm/foam, four classes) as classification, or one factor of it
(``vision``, ``surface``). Every window of a trial gets a prediction;
the trial's prediction averages its windows (the mean score, or the mean decision values).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..bundle import check_bundle_target, load_bundle, write_bundle
from ..errors import EdgeseqError
from ..finite import decide, require_finite
from ..preprocess.balance import SWAY_FEATURES, BalancePreprocessing
from ..progress import Progress

TASK = "balance"
#: Score ranges of known clinical scales (for the error as a share of the range).
SCALE_RANGES = {"Best_T": (0.0, 28.0), "Berg": (0.0, 56.0), "BBS": (0.0, 56.0)}


@dataclass
class WindowSet:
    X: np.ndarray  # (B, steps, 4) model inputs
    sway: np.ndarray  # (B, 8) posturography features
    trial: np.ndarray  # (B,) index into trials
    trials: list  # Trial objects (forces dropped after windowing)
    y: np.ndarray  # per trial: float score or int condition index
    labels: list  # class names for condition, [] for a score

    @property
    def subjects(self) -> np.ndarray:
        return np.array([t.subject for t in self.trials])


#: Classification targets: the standing condition, or one of its two factors.
CLASS_TARGETS = {"condition": None, "vision": ("Open", "Closed"), "surface": ("Firm", "Foam")}


def _targets(trials, target: str) -> tuple[np.ndarray, list]:
    from ..data.hbedb import CONDITIONS

    if target == "condition":
        return np.array([CONDITIONS.index(t.condition) for t in trials], np.int64), list(CONDITIONS)
    if target in CLASS_TARGETS:
        labels = CLASS_TARGETS[target]
        return np.array([labels.index(getattr(t, target)) for t in trials], np.int64), list(labels)
    return np.array([t.scores[target] for t in trials], np.float64), []


def load_windows(data_dir, prep: BalancePreprocessing, target: str, *, names=None, progress=True) -> WindowSet:
    from ..data.hbedb import load_trials

    trials = load_trials(data_dir, names, fs=prep.sample_rate, target="condition" if target in CLASS_TARGETS else target,
                         progress=progress)
    if not trials:
        raise EdgeseqError(f"no balance trials found in {data_dir}")
    Xs, Ss, idx = [], [], []
    for i, t in enumerate(trials):
        try:
            X, S, _ = prep.windows(t.forces)
        except EdgeseqError as e:
            raise EdgeseqError(f"trial {t.name}: {e}") from None
        Xs.append(X)
        Ss.append(S)
        idx.append(np.full(len(X), i))
        t.forces = None  # the windows are all that is needed; 200 trials x 60 s stay small
    y, labels = _targets(trials, target)
    return WindowSet(np.concatenate(Xs), np.concatenate(Ss), np.concatenate(idx), trials, y, labels)


def _model(target: str, seed: int, params: dict | None, kind: str = "esn", *, size: str | None = None,
           device: str | None = None):
    """The window model of family ``kind`` (the registry's) for ``target``: the ESN (mean-state
    ridge readout) or a trained LSTM/TCN (``size``, ``device`` as the CLI's ``--size``/``--device``;
    explicit ``params`` win)."""
    from ..models import build

    objective = "classification" if target in CLASS_TARGETS else "regression"
    return build(TASK, kind, seed=seed, params=params, size=size, device=device, objective=objective)


def _per_trial(values: np.ndarray, trial: np.ndarray, n: int) -> np.ndarray:
    """Mean of window values per trial, ``(n, ...)``."""
    out = np.zeros((n,) + values.shape[1:])
    np.add.at(out, trial, values)
    return out / np.bincount(trial, minlength=n).reshape((n,) + (1,) * (values.ndim - 1))


def train(data_dir, *, target: str, out, model: str = "esn", seed: int = 0, params: dict | None = None,
          progress: bool = True, size: str | None = None, device: str | None = None):
    check_bundle_target(out)  # before the work: a refused --out must not cost a training run
    est = _model(target, seed, params, model, size=size, device=device)
    prep = BalancePreprocessing()
    ws = load_windows(data_dir, prep, target, progress=progress)
    est.fit(ws.X, ws.y[ws.trial], n_classes=len(ws.labels) or None,
            progress=est.fit_progress(model, len(ws.X), progress))
    section = {"kind": model, "params": est.bundle_params()}
    arch = est.architecture()
    if arch is not None:
        section["architecture"] = arch
    manifest = {"task": TASK, "target": target, "sample_rate": prep.sample_rate, "labels": ws.labels,
                "channels": ["top_left", "top_right", "bottom_left", "bottom_right"], "units": "N",
                "score_range": list(_score_range(target, ws.y)) if not ws.labels else None,
                "preprocessing": prep.config(),
                "model": section,
                "training": {"data": str(data_dir), "trials": [t.name for t in ws.trials],
                             "subjects": sorted({t.subject for t in ws.trials}, key=_natural),
                             "n_windows": int(len(ws.X)), **getattr(est, "training_", {})}}
    return write_bundle(out, manifest, est.to_arrays())


def load_model(bundle_path):
    """``(bundle, preprocessing, estimator)`` from a verified balance bundle."""
    from ..models import family

    b = load_bundle(bundle_path, task=TASK)
    prep = BalancePreprocessing.from_config(b.manifest["preprocessing"])
    return b, prep, family(b.manifest).estimator.from_arrays(b.manifest["model"]["params"], b.arrays)


def _natural(s: str):
    return (0, int(s)) if str(s).isdigit() else (1, str(s))


def _score_range(target: str, y: np.ndarray) -> tuple[float, float]:
    if target in SCALE_RANGES:
        return SCALE_RANGES[target]
    return float(np.min(y)), float(np.max(y))


# ---- baseline -------------------------------------------------------------------------------

def _sway_design(S: np.ndarray) -> np.ndarray:
    # Sway measures are positive and skewed over an order of magnitude: logs make them linear-friendly.
    return np.log(np.maximum(S, 1e-6))


def _fit_ridge(Z, Y, alpha):
    """Ridge on standardised ``Z`` (intercept not shrunk): the models' one solver."""
    from ..models.base import ridge_solve

    mu, sd = Z.mean(axis=0), Z.std(axis=0)
    sd[sd < 1e-12] = 1.0
    beta = ridge_solve(np.concatenate([(Z - mu) / sd, np.ones((len(Z), 1))], axis=1), Y, alpha,
                       what="baseline ridge")
    return lambda Q: np.concatenate([(Q - mu) / sd, np.ones((len(Q), 1))], axis=1) @ beta


def _fit_logistic(Z, y, k, alpha):
    """Multinomial logistic regression with an L2 penalty (scipy's L-BFGS; host only)."""
    from scipy.optimize import minimize

    mu, sd = Z.mean(axis=0), Z.std(axis=0)
    sd[sd < 1e-12] = 1.0
    Zs = np.concatenate([(Z - mu) / sd, np.ones((len(Z), 1))], axis=1)
    Y = np.eye(k)[y]
    d = Zs.shape[1]
    mask = np.ones((d, k))
    mask[-1] = 0.0

    def loss(w):
        B = w.reshape(d, k)
        L = Zs @ B
        L -= L.max(axis=1, keepdims=True)
        P = np.exp(L)
        P /= P.sum(axis=1, keepdims=True)
        f = -np.sum(Y * np.log(P + 1e-300)) / len(Z) + 0.5 * alpha * np.sum((B * mask) ** 2)
        g = Zs.T @ (P - Y) / len(Z) + alpha * B * mask
        return f, g.ravel()

    w = minimize(loss, np.zeros(d * k), jac=True, method="L-BFGS-B").x.reshape(d, k)
    return lambda Q: np.concatenate([(Q - mu) / sd, np.ones((len(Q), 1))], axis=1) @ w


# ---- cross-validation -------------------------------------------------------------------------

def cross_validate(data_dir, *, target: str, model: str = "esn", seed: int = 0, params: dict | None = None,
                   progress: bool = True, size: str | None = None, device: str | None = None) -> dict:
    """Leave-one-subject-out: every subject is predicted by models that never saw any of its
    trials. A family with label-free features (``SHARED_FEATURES``: the ESN's reservoir, drawn once,
    untrained) computes them once and each fold fits only the readout; an LSTM or TCN is trained
    anew per fold. The baseline is fitted on the same folds."""
    est = _model(target, seed, params, model, size=size, device=device)
    prep = BalancePreprocessing()
    ws = load_windows(data_dir, prep, target, progress=progress)
    subj = ws.subjects
    groups = sorted(set(subj), key=_natural)
    if len(groups) < 3:
        raise EdgeseqError(f"leave-subject-out needs at least 3 subjects, found {len(groups)} in {data_dir}")
    classify = bool(ws.labels)
    k = len(ws.labels)
    shared = est.SHARED_FEATURES  # label-free features (the reservoir's states): once for all folds
    if shared:
        feats = est.shared_features(ws.X, progress=est.fit_progress(model, len(ws.X), progress))
    Zs = _sway_design(ws.sway)
    n = len(ws.trials)
    yw = ws.y[ws.trial]
    out_dim = k if classify else 1
    esn_w, base_w = np.zeros((len(ws.X), out_dim)), np.zeros((len(ws.X), out_dim))
    const_t = np.zeros(n)
    show = Progress("folds (leave one subject out)", len(groups), enabled=progress)
    for f, g in enumerate(groups):
        test_t = subj == g
        test_w = test_t[ws.trial]
        if shared:
            est.fit_readout(feats[~test_w], yw[~test_w], n_classes=k or None)
            esn_w[test_w] = est.decision_function_from_features(feats[test_w])
        else:
            est.fit(ws.X[~test_w], yw[~test_w], n_classes=k or None)
            esn_w[test_w] = est.decision_function(ws.X[test_w])
        if classify:
            base_w[test_w] = _fit_logistic(Zs[~test_w], yw[~test_w], k, alpha=1e-2)(Zs[test_w])
        else:
            base_w[test_w] = _fit_ridge(Zs[~test_w], yw[~test_w].reshape(-1, 1), alpha=1e-2)(Zs[test_w])
            const_t[test_t] = ws.y[~test_t].mean()
        show(f + 1, note=f"subject {g}")
    esn_t, base_t = _per_trial(esn_w, ws.trial, n), _per_trial(base_w, ws.trial, n)
    rep = {"task": TASK, "target": target, "model": model, "n_trials": n, "n_subjects": len(groups),
           "n_windows": int(len(ws.X)), "window_s": prep.window_s, "hop_s": prep.hop_s,
           "cv": "leave-one-subject-out", "seed": seed, "data": str(data_dir)}
    if classify:
        from ..metrics import confusion

        # finite.decide: a trial whose outputs are not finite is unlabelled (wrong, and counted),
        # never argmax(NaN) = class 0.
        pe, pb = decide(esn_t)[0], decide(base_t)[0]
        rep.update({"labels": ws.labels, "accuracy": float(np.mean(pe == ws.y)),
                    "confusion": confusion(ws.y[pe >= 0], pe[pe >= 0], k).tolist(),
                    "unlabelled": int((pe < 0).sum()),
                    "window": {"accuracy": float(np.mean(decide(esn_w)[0] == yw))},
                    "baseline": {"model": "logistic regression on log sway features " + ",".join(SWAY_FEATURES),
                                 "accuracy": float(np.mean(pb == ws.y)),
                                 "confusion": confusion(ws.y[pb >= 0], pb[pb >= 0], k).tolist(),
                                 "window": {"accuracy": float(np.mean(decide(base_w)[0] == yw))}}})
    else:
        lo, hi = _score_range(target, ws.y)
        span = hi - lo
        pe, pb = esn_t[:, 0], base_t[:, 0]
        require_finite(pe, f"{model} scores predicted for the held-out subjects (check the data)")

        def mae(p, t):
            return float(np.mean(np.abs(p - t)))

        rep.update({"score_range": [lo, hi], "observed_range": [float(ws.y.min()), float(ws.y.max())],
                    "mae": mae(pe, ws.y), "mae_pct_range": 100 * mae(pe, ws.y) / span,
                    "window": {"mae": mae(esn_w[:, 0], yw)},
                    "baseline": {"model": "ridge on log sway features " + ",".join(SWAY_FEATURES),
                                 "mae": mae(pb, ws.y), "mae_pct_range": 100 * mae(pb, ws.y) / span,
                                 "window": {"mae": mae(base_w[:, 0], yw)}},
                    "constant": {"model": "mean score of the training subjects", "mae": mae(const_t, ws.y),
                                 "mae_pct_range": 100 * mae(const_t, ws.y) / span},
                    "per_subject": {g: {"true": float(ws.y[subj == g][0]),
                                        "pred": float(pe[subj == g].mean()),
                                        "baseline": float(pb[subj == g].mean()),
                                        "n_trials": int((subj == g).sum())} for g in groups},
                    "per_trial": {"subject": subj.tolist(), "true": ws.y.tolist(), "pred": pe.tolist(),
                                  "baseline": pb.tolist()}})
    return rep


def format_report(rep: dict) -> str:
    lines = [f"balance {rep['target']}: {rep['cv']} over {rep['n_subjects']} subjects, {rep['n_trials']} trials "
             f"({rep['n_windows']} windows of {rep['window_s']:g} s)"]
    name = str(rep.get("model", "esn")).upper()
    if "accuracy" in rep:
        lines.append(f"{'':12}{'trial acc %':>12}{'window acc %':>14}")
        lines.append(f"{name:12}{100 * rep['accuracy']:12.1f}{100 * rep['window']['accuracy']:14.1f}")
        b = rep["baseline"]
        lines.append(f"{'baseline':12}{100 * b['accuracy']:12.1f}{100 * b['window']['accuracy']:14.1f}")
    else:
        lines.append(f"{'':12}{'trial MAE':>10}{'% of range':>12}{'window MAE':>12}")
        for label, r in ((name, rep), ("baseline", rep["baseline"]), ("constant", rep["constant"])):
            w = r.get("window", {}).get("mae")
            lines.append(f"{label:12}{r['mae']:10.2f}{r['mae_pct_range']:12.1f}" + (f"{w:12.2f}" if w is not None else ""))
        lo, hi = rep["observed_range"]
        lines.append(f"scores in these data span {lo:g}-{hi:g} of {rep['score_range'][0]:g}-{rep['score_range'][1]:g}")
    return "\n".join(lines)
