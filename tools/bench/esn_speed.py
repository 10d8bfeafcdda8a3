"""ESN speed on this machine: training on all of DS1, and batched states against reservoirpy's `run`.

    python tools/bench/esn_speed.py [--data ../shared/data/mitdb] [--n-seq 2000] [--json FILE]

(a) `edgeseq train ecg` on every DS1 record in DIR, wall time split into reading + states + readout.
(b) The same reservoir (the default ESN's hyper-parameters and seed) and the same DS1 beat windows
    through reservoirpy's own `Reservoir.run` (all sequences in one call, with workers=1 and -1, and
    one call per sequence), and through edgeseq's batched states in float64 and float32. States must
    agree within 1e-6 in float64; the speed-up is a ratio against the fastest reservoirpy way,
    measured in this one run.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def machine() -> dict:
    """edgeseq.profile's machine description plus the host-side library versions."""
    import reservoirpy
    import scipy

    from edgeseq.profile.core import machine as base

    return {**base(), "scipy": scipy.__version__, "reservoirpy": reservoirpy.__version__}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "mitdb"))
    ap.add_argument("--n-seq", type=int, default=2000, help="beat windows for the reservoirpy comparison")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()

    from reservoirpy.nodes import Reservoir

    from edgeseq.models.esn import ESNClassifier, batched_states
    from edgeseq.tasks import ecg

    out: dict = {"machine": machine()}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        info = ecg.train(args.data, out=Path(tmp) / "b", progress=False)
        out["train"] = {"seconds": round(time.perf_counter() - t0, 2), "n_beats": info["n_beats"],
                        "records": len(info["records"]), "seconds_reading": info["seconds_reading"]}
        print(f"(a) train on DS1: {info['n_beats']} beats from {len(info['records'])} records in "
              f"{out['train']['seconds']:.1f} s (reading and filtering {info['seconds_reading']:.1f} s)")

    prep = ecg.EcgPreprocessing()
    beats = ecg.load_beats(args.data, ["208", "209", "119"], prep, progress=False)
    rng = np.random.default_rng(0)
    pick = rng.choice(len(beats.windows), args.n_seq, replace=False)
    U = beats.windows[pick].astype(np.float64)
    est = ESNClassifier()
    est.init_reservoir(1)
    W, Win, b, lr = est.W_, est.Win_, est.bias_, est.lr
    const = est.reservoir_rr(beats.rr[pick])  # RR inputs, constant over each window

    # reservoirpy's own multi-sequence run: every sequence starts from the same (zero) state,
    # as edgeseq's batched states do. workers=1 is its default; -1 uses every core via joblib.
    X = np.concatenate([U[:, :, None], np.repeat(const[:, None, :], U.shape[1], axis=1)], axis=2)
    timings = {}
    for workers in (1, -1):
        res = Reservoir(units=W.shape[0], lr=lr, W=W, Win=Win, bias=b)
        t0 = time.perf_counter()
        states = res.run(X, workers=workers)
        timings[workers] = time.perf_counter() - t0
    rp_last, rp_mean = states[:, -1], states.mean(axis=1)
    # A hand loop over sequences with reset() is what many users write, and is faster here.
    res = Reservoir(units=W.shape[0], lr=lr, W=W, Win=Win, bias=b)
    t0 = time.perf_counter()
    for i, x in enumerate(X):
        if i:  # reservoirpy 0.4 cannot reset a reservoir that has not run yet
            res.reset()
        s = res.run(x)
        assert np.abs(s[-1] - rp_last[i]).max() < 1e-12
    timings["loop"] = time.perf_counter() - t0
    t_rp = min(timings.values())  # the ratio is against the fastest way to run reservoirpy
    t0 = time.perf_counter()
    last64, mean64 = batched_states(U, W, Win, b, lr, const=const, dtype=np.float64)
    t_64 = time.perf_counter() - t0
    t0 = time.perf_counter()
    last32, mean32 = batched_states(U, W, Win, b, lr, const=const, dtype=np.float32)
    t_32 = time.perf_counter() - t0
    err64 = float(max(np.abs(last64 - rp_last).max(), np.abs(mean64 - rp_mean).max()))
    err32 = float(max(np.abs(last32 - rp_last).max(), np.abs(mean32 - rp_mean).max()))
    out["states"] = {"n_seq": len(U), "steps": U.shape[1], "units": int(W.shape[0]),
                     "reservoirpy_run_s": round(timings[1], 3), "reservoirpy_run_all_cores_s": round(timings[-1], 3),
                     "reservoirpy_loop_s": round(timings["loop"], 3), "reservoirpy_fastest_s": round(t_rp, 3),
                     "batched_float64_s": round(t_64, 3),
                     "batched_float32_s": round(t_32, 3), "ratio_float64": round(t_rp / t_64, 1),
                     "ratio_float32": round(t_rp / t_32, 1), "max_abs_diff_float64": err64,
                     "max_abs_diff_float32": err32}
    print(f"(b) {len(U)} beat windows x {U.shape[1]} steps, {W.shape[0]} units: reservoirpy run(all) "
          f"{timings[1]:.2f} s, run(all, workers=-1) {timings[-1]:.2f} s, run() per sequence {timings['loop']:.2f} s; "
          f"against the fastest ({t_rp:.2f} s): "
          f"batched float64 {t_64:.3f} s ({t_rp / t_64:.0f}x), float32 {t_32:.3f} s ({t_rp / t_32:.0f}x); "
          f"max |diff| float64 {err64:.1e}, float32 {err32:.1e}")
    assert err64 < 1e-6, f"batched float64 states differ from reservoirpy by {err64}"
    m = out["machine"]
    print(f"machine: {m['cpu']}, {m['cores']} cores, numpy {m['numpy']}, reservoirpy {m['reservoirpy']}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
