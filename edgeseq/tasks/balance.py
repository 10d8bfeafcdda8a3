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

from ..bundle import check_bundle_target, load_bundle, read_manifest, write_bundle
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
          progress: bool = True, size: str | None = None, device: str | None = None, trials=None):
    """Fit on the trials of ``data_dir`` (all, or the named ``trials``) and write a bundle; its
    manifest's ``training`` section says what it saw (trials, subjects, the target's range or class
    counts) and how well it fits them (``fit``: trial MAE or accuracy on the training trials, each
    trial the average of its windows as cross-validation scores one; an in-sample figure)."""
    check_bundle_target(out)  # before the work: a refused --out must not cost a training run
    est = _model(target, seed, params, model, size=size, device=device)
    prep = BalancePreprocessing()
    ws = load_windows(data_dir, prep, target, names=trials, progress=progress)
    k = len(ws.labels) or None
    fit_progress = est.fit_progress(model, len(ws.X), progress)
    if est.SHARED_FEATURES:  # the reservoir's states, once: the fit below reads them again for free
        feats = est.shared_features(require_finite(ws.X, "training windows"), progress=fit_progress)
        est.fit_readout(feats, ws.y[ws.trial], n_classes=k)
        outputs = est.decision_function_from_features(feats)
    else:
        est.fit(ws.X, ws.y[ws.trial], n_classes=k, progress=fit_progress)
        outputs = est.decision_function(ws.X)
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
                             "n_windows": int(len(ws.X)), **_training_summary(ws, outputs),
                             **getattr(est, "training_", {})}}
    return write_bundle(out, manifest, est.to_arrays())


def _training_summary(ws: WindowSet, outputs: np.ndarray) -> dict:
    """The target as the training trials hold it, and the model's in-sample fit on them."""
    pred = _per_trial(np.asarray(outputs, np.float64).reshape(len(ws.X), -1), ws.trial, len(ws.trials))
    if ws.labels:
        k = decide(pred)[0]
        return {"n_trials": len(ws.trials),
                "class_counts": {c: int(n) for c, n in zip(ws.labels, np.bincount(ws.y, minlength=len(ws.labels)))},
                "fit": {"accuracy": float(np.mean(k == ws.y)), "unlabelled": int((k < 0).sum())}}
    p = pred[:, 0]
    ok = np.isfinite(p)
    return {"n_trials": len(ws.trials), "target_range": [float(ws.y.min()), float(ws.y.max())],
            "target_mean": float(ws.y.mean()),
            "fit": {"mae": float(np.mean(np.abs(p[ok] - ws.y[ok]))) if ok.any() else None,
                    "unscored": int((~ok).sum())}}


def format_training(path) -> str:
    """What ``edgeseq train balance`` prints about the bundle it wrote, like ``train ecg``'s beats
    and class counts."""
    m = read_manifest(path)  # the bundle train just wrote: its manifest is all this prints
    tr = m["training"]
    lines = [f"trained {m['model']['kind']} on {tr['n_trials']} trials of {len(tr['subjects'])} subjects, "
             f"{tr['n_windows']} windows, target {m['target']}"]
    fit = tr.get("fit", {})
    if m["labels"]:
        counts = " ".join(f"{k}={v}" for k, v in tr["class_counts"].items())
        lines.append(f"classes: {counts}")
        lines.append(f"training fit (in-sample): trial accuracy {100 * fit['accuracy']:.1f}%")
    else:
        lo, hi = tr["target_range"]
        lines.append(f"{m['target']} in these trials: {lo:g}-{hi:g} (mean {tr['target_mean']:.2f}) "
                     f"of {m['score_range'][0]:g}-{m['score_range'][1]:g}")
        mae = fit.get("mae")
        lines.append("training fit (in-sample): " + (f"trial MAE {mae:.2f}" if mae is not None else "no finite score"))
    return "\n".join(lines)


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


def _fit_baseline(Z, y, k: int):
    """The posturography baseline on sway features: logistic regression over ``k`` classes, or
    ridge for a score (``k`` 0)."""
    return _fit_logistic(Z, y, k, alpha=1e-2) if k else _fit_ridge(Z, y.reshape(-1, 1), alpha=1e-2)


def _accuracy(trial_out, y, window_out, yw, k: int) -> tuple[dict, np.ndarray]:
    """Trial accuracy, confusion and window accuracy of a classifier's outputs, and its trial
    labels. finite.decide: a trial whose outputs are not finite is unlabelled (wrong, and
    counted), never argmax(NaN) = class 0."""
    from ..metrics import confusion

    p = decide(trial_out)[0]
    return {"accuracy": float(np.mean(p == y)), "confusion": confusion(y[p >= 0], p[p >= 0], k).tolist(),
            "window": {"accuracy": float(np.mean(decide(window_out)[0] == yw))}}, p


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
        base_w[test_w] = _fit_baseline(Zs[~test_w], yw[~test_w], k)(Zs[test_w])
        if not classify:
            const_t[test_t] = ws.y[~test_t].mean()
        show(f + 1, note=f"subject {g}")
    esn_t, base_t = _per_trial(esn_w, ws.trial, n), _per_trial(base_w, ws.trial, n)
    rep = {"task": TASK, "target": target, "model": model, "n_trials": n, "n_subjects": len(groups),
           "n_windows": int(len(ws.X)), "window_s": prep.window_s, "hop_s": prep.hop_s,
           "cv": "leave-one-subject-out", "seed": seed, "data": str(data_dir)}
    if classify:
        figs, pe = _accuracy(esn_t, ws.y, esn_w, yw, k)
        base, pb = _accuracy(base_t, ws.y, base_w, yw, k)
        rep.update({"labels": ws.labels, **figs, "unlabelled": int((pe < 0).sum()),
                    "baseline": {"model": "logistic regression on log sway features " + ",".join(SWAY_FEATURES),
                                 **base}})
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


def format_report(rep: dict, title: str | None = None) -> str:
    """The table of ``cv balance`` and ``evaluate`` on a balance bundle: the model, and the references
    the report holds (the posturography baseline; for scores, the training subjects' mean)."""
    how = rep.get("cv") or rep.get("evaluation")
    lines = [title] if title else []
    over = f"{how} over" if rep.get("cv") else f"{how}:"
    lines.append(f"balance {rep['target']}: {over} {rep['n_subjects']} subjects, {rep['n_trials']} trials "
                 f"({rep['n_windows']} windows of {rep['window_s']:g} s)")
    name = str(rep.get("model", "esn")).upper()
    refs = [(k, rep[k]) for k in ("baseline", "constant") if rep.get(k)]
    if "accuracy" in rep:
        lines.append(f"{'':12}{'trial acc %':>12}{'window acc %':>14}")
        for label, r in [(name, rep)] + refs:
            lines.append(f"{label:12}{100 * r['accuracy']:12.1f}{100 * r['window']['accuracy']:14.1f}")
        if rep.get("unlabelled"):
            lines.append(f"{rep['unlabelled']} trials with non-finite outputs: not labelled, counted as errors")
    else:
        lines.append(f"{'':12}{'trial MAE':>10}{'% of range':>12}{'window MAE':>12}")
        for label, r in [(name, rep)] + refs:
            if r["mae"] is None:
                lines.append(f"{label:12}{'-':>10}")
                continue
            w = r.get("window", {}).get("mae")
            lines.append(f"{label:12}{r['mae']:10.2f}{r['mae_pct_range']:12.1f}"
                         + (f"{w:12.2f}" if w is not None else ""))
        if rep.get("unscored"):
            lines.append(f"{rep['unscored']} trials with non-finite outputs: not scored")
        lo, hi = rep["observed_range"]
        lines.append(f"scores in these data span {lo:g}-{hi:g} of {rep['score_range'][0]:g}-{rep['score_range'][1]:g}")
    if "evaluation" in rep and not refs:
        lines.append("no baseline: the bundle's training trials are not all in the data directory")
    return "\n".join(lines)


# ---- a bundle on trials --------------------------------------------------------------------------

def window_outputs(model, X) -> np.ndarray:
    """Per window ``(B, steps, D)`` the outputs ``(B, outputs)`` the board's pipeline gives
    (:class:`~edgeseq.bridge.pipelines.WindowPipeline`), on any runtime: a window model's logits, or
    a sequence model run from its initial state over each window, its step outputs averaged when
    the bundle says so (the balance ESN's mean-state readout), else its last. Decision: a format
    with a window form runs each window as the board does; one without (TFLite's sequence model is
    its step) steps all windows together, one call per time step instead of one per sample and
    window: equal to the per-window run within float rounding (tests/test_predict.py)."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    rt = model.runtime
    if rt["interface"] != "sequence":
        return model.logits(X)
    mean = model.manifest["model"]["params"].get("window_output") == "mean"
    if not len(X):
        out = next(v for k, v in rt["step_outputs"].items() if not k.endswith("_out"))
        return np.zeros((0, int(out["shape"][-1])))
    if rt.get("model"):
        return np.stack([_reduce(model.run(x, model.initial_state()), mean) for x in X])
    outs = []
    for i in range(0, len(X), 512):
        xb = X[i:i + 512]
        state = model.initial_state(len(xb))
        acc = 0.0
        for t in range(xb.shape[1]):
            y, state = model.step(np.ascontiguousarray(xb[:, t]), state)
            acc = acc + np.asarray(y, np.float64)
        outs.append(acc / xb.shape[1] if mean else np.asarray(y, np.float64))
    return np.concatenate(outs)


def _reduce(Y, mean: bool) -> np.ndarray:
    Y = np.asarray(Y, np.float64)
    return Y.mean(axis=0) if mean else Y[-1]


def default_trials(data_dir, manifest: dict, trials=None) -> tuple[list[str], bool]:
    """``(trials, includes_training_subjects)``: the named trials, else those of the subjects the
    bundle was not trained on, else (it saw every subject) all of them."""
    from ..data.hbedb import dataset_root, list_trials, load_info

    root = dataset_root(data_dir)
    present, info = list_trials(root), load_info(root)
    seen = set(manifest.get("training", {}).get("subjects", []))
    if trials:
        missing = [t for t in trials if t not in info]
        if missing:
            raise EdgeseqError(f"trial {missing[0]} not found in {root}")
        return list(dict.fromkeys(trials)), any(info[t]["subject"] in seen for t in trials)
    unseen = [t for t in present if info[t]["subject"] not in seen]
    return (unseen, False) if unseen else (present, True)


def evaluate(bundle_path, data_dir, trials=None, *, progress: bool = True, threads: int = 1,
             on_trials=None) -> dict:
    """Score a balance bundle on trials, through ``edgeseq.runtime`` (any format), each trial the
    average of its windows as in :func:`cross_validate`. By default the trials of the subjects the
    bundle was not trained on. Beside the model, when the bundle's training trials are in
    ``data_dir``: the posturography baseline fitted on them and (scores) their mean score, the
    references ``cv balance`` prints. A trial whose outputs are not finite is counted, never scored.
    ``on_trials(names, outputs)`` receives the trial outputs (``edgeseq compare``)."""
    from ..runtime import load, runtime_info

    model = load(bundle_path, task=TASK, threads=threads)
    m = model.manifest
    target, labels = m["target"], list(m["labels"])
    prep = BalancePreprocessing.from_config(m["preprocessing"])
    names, seen = default_trials(data_dir, m, trials)
    trained = list(m.get("training", {}).get("trials", []))
    from ..data.hbedb import dataset_root, list_trials

    present = set(list_trials(dataset_root(data_dir)))
    base_names = trained if trained and all(t in present for t in trained) else []
    ws = load_windows(data_dir, prep, target, names=list(dict.fromkeys(names + base_names)), progress=progress)
    tnames = [t.name for t in ws.trials]
    ev_t = np.isin(tnames, names)
    ev_w = ev_t[ws.trial]
    order = np.flatnonzero(ev_t)  # trials evaluated, in ws order
    remap = np.full(len(tnames), -1)
    remap[order] = np.arange(len(order))
    tw = remap[ws.trial[ev_w]]
    n = len(order)
    y = ws.y[order]
    subj = np.array([ws.trials[i].subject for i in order])
    with np.errstate(all="ignore"):
        Yw = np.asarray(window_outputs(model, ws.X[ev_w]), np.float64).reshape(int(ev_w.sum()), -1)
        Yt = _per_trial(Yw, tw, n)
    if on_trials is not None:
        on_trials([tnames[i] for i in order], Yt)
    base = None
    if base_names:
        tr_t = np.isin(tnames, base_names)
        tr_w = tr_t[ws.trial]
        Z = _sway_design(ws.sway)
        yw = ws.y[ws.trial]
        Bw = _fit_baseline(Z[tr_w], yw[tr_w], len(labels))(Z[ev_w])
        base = (Bw, _per_trial(Bw, tw, n), float(ws.y[tr_t].mean()) if not labels else None)
    rep = {"task": TASK, "target": target, "model": m["model"]["kind"], "bundle": str(bundle_path),
           "runtime": runtime_info(m, threads), "data": str(data_dir), "n_trials": n,
           "n_subjects": len(set(subj)), "n_windows": int(ev_w.sum()), "window_s": prep.window_s,
           "hop_s": prep.hop_s, "evaluation": "all trials, training subjects included" if seen
           else "subjects the bundle was not trained on", "includes_training_subjects": bool(seen),
           "trials": [tnames[i] for i in order]}
    if labels:
        figs, pe = _accuracy(Yt, y, Yw, y[tw], len(labels))
        rep.update({"labels": labels, **figs, "unlabelled": int((pe < 0).sum())})
        if base is not None:
            rep["baseline"] = {"model": "logistic regression on log sway features " + ",".join(SWAY_FEATURES)
                               + ", fitted on the bundle's training trials",
                               **_accuracy(base[1], y, base[0], y[tw], len(labels))[0]}
        return rep
    lo, hi = m.get("score_range") or _score_range(target, y)
    span = hi - lo
    pe = Yt[:, 0]
    ok = np.isfinite(pe)
    okw = np.isfinite(Yw[:, 0])

    def mae(p, t, keep):
        return float(np.mean(np.abs(p[keep] - t[keep]))) if keep.any() else None

    def pct(v):
        return None if v is None else 100 * v / span

    m_e = mae(pe, y, ok)
    rep.update({"score_range": [lo, hi], "observed_range": [float(y.min()), float(y.max())],
                "mae": m_e, "mae_pct_range": pct(m_e), "unscored": int((~ok).sum()),
                "window": {"mae": mae(Yw[:, 0], y[tw], okw)}})
    pt = {"subject": subj.tolist(), "true": y.tolist(), "pred": [float(v) if np.isfinite(v) else None for v in pe]}
    if base is not None:
        pb = base[1][:, 0]
        every = np.ones(n, bool)
        rep["baseline"] = {"model": "ridge on log sway features " + ",".join(SWAY_FEATURES)
                           + ", fitted on the bundle's training trials",
                           "mae": mae(pb, y, every), "mae_pct_range": pct(mae(pb, y, every)),
                           "window": {"mae": mae(base[0][:, 0], y[tw], np.ones(len(tw), bool))}}
        const = np.full(n, base[2])
        rep["constant"] = {"model": "mean score of the training trials", "mae": mae(const, y, every),
                           "mae_pct_range": pct(mae(const, y, every))}
        pt["baseline"] = pb.tolist()
    rep["per_subject"] = {g: {"true": float(y[subj == g][0]),
                              "pred": float(pe[(subj == g) & ok].mean()) if ((subj == g) & ok).any() else None,
                              "n_trials": int((subj == g).sum())} for g in sorted(set(subj), key=_natural)}
    rep["per_trial"] = pt
    return rep
