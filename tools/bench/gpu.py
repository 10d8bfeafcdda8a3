"""The CUDA host path against the CPU: ESN states for a large reservoir, and epochs of full-size
LSTM/TCN models.

    python tools/bench/gpu.py [--data ../shared/data/mitdb] [--units 5000] [--beats 4000] [--json FILE]

(a) ESN states, N = ``--units``, for ``--beats`` DS1 beat windows (126 steps, 4 constant RR
    inputs): the CPU batched path (numpy float32, ``edgeseq.models.esn.batched_states``) against
    the same computation in torch on the GPU (``edgeseq.models.esn_torch``), in one run; the
    states must agree within float32 tolerance (max |diff| reported). Target: >= 50x.
(b) One training epoch of the ``--size full`` LSTM and TCN on the same DS1 beats, on the CPU
    (float32) and on the GPU (mixed precision), median of the epochs after the first.

Without a GPU the CPU figures are still measured and the GPU ones are recorded as absent, with
the reason. The machine description goes into the JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/mitdb", help="MIT-BIH records (run from the repository root)")
    ap.add_argument("--units", type=int, default=5000)
    ap.add_argument("--beats", type=int, default=4000)
    ap.add_argument("--epochs", type=int, default=3, help="epochs per full-size model and device")
    ap.add_argument("--cpu-beats", type=int, default=None,
                    help="beats for the CPU side of (a) when the full count would take too long "
                         "(the time is scaled up linearly: states cost the same per beat)")
    ap.add_argument("--json")
    args = ap.parse_args()

    import torch

    from edgeseq.models import ESNClassifier, LSTMModel, TCNModel
    from edgeseq.models.esn import batched_states
    from edgeseq.models.esn_torch import batched_states_torch
    from edgeseq.profile.core import machine
    from edgeseq.tasks import ecg

    gpu = torch.cuda.is_available()
    out = {"machine": {**machine(), "torch": torch.__version__,
                       "gpu": torch.cuda.get_device_name(0) if gpu else None},
           "command": "python tools/bench/gpu.py " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
                                                            if v is not None and k != "json")}
    if not gpu:
        out["gpu_absent"] = (f"torch {torch.__version__}: " + ("built without CUDA" if torch.version.cuda is None
                                                               else "no CUDA device found"))
    beats = ecg.load_beats(args.data, ["101", "106", "108", "109", "112", "114", "115", "116", "118", "119"],
                           ecg.EcgPreprocessing(), progress=False)
    idx = np.random.default_rng(0).choice(len(beats.labels), min(args.beats, len(beats.labels)), replace=False)
    W_, rr, y = beats.windows[idx], beats.rr[idx], beats.labels[idx]

    # (a) ESN states
    esn = ESNClassifier(units=args.units, seed=0).init_reservoir(1)
    const = esn.reservoir_rr(rr)
    n_cpu = min(args.cpu_beats or len(W_), len(W_))
    t = time.perf_counter()
    cpu_last, cpu_mean = batched_states(W_[:n_cpu], esn.W_, esn.Win_, esn.bias_, esn.lr, const=const[:n_cpu],
                                        dtype=np.float32)
    cpu_s = (time.perf_counter() - t) * len(W_) / n_cpu
    a = {"units": args.units, "beats": int(len(W_)), "steps": int(W_.shape[1]), "cpu_beats_timed": n_cpu,
         "cpu_seconds": round(cpu_s, 3), "cpu_threads": torch.get_num_threads()}
    print(f"(a) ESN N={args.units}: CPU numpy batched {cpu_s:.2f} s for {len(W_)} beats", flush=True)
    if gpu:
        batched_states_torch(W_[:256], esn.W_, esn.Win_, esn.bias_, esn.lr, const=const[:256], device="cuda")  # warm-up
        torch.cuda.synchronize()
        t = time.perf_counter()
        g_last, g_mean = batched_states_torch(W_, esn.W_, esn.Win_, esn.bias_, esn.lr, const=const, device="cuda")
        gpu_s = time.perf_counter() - t
        diff = max(float(np.abs(g_last[:n_cpu] - cpu_last).max()), float(np.abs(g_mean[:n_cpu] - cpu_mean).max()))
        a.update({"gpu_seconds": round(gpu_s, 4), "speedup": round(cpu_s / gpu_s, 1), "max_abs_diff": diff,
                  "target": 50, "met": cpu_s / gpu_s >= 50})
        print(f"    GPU torch {gpu_s:.3f} s: {cpu_s / gpu_s:.1f}x, states within {diff:.1e}", flush=True)
    out["esn_states"] = a

    # (b) full-size epochs
    out["epochs"] = {}
    for cls in (LSTMModel, TCNModel):
        row = {}
        for dev in (["cpu", "cuda"] if gpu else ["cpu"]):
            m = cls(size="full", epochs=args.epochs, device=dev, seed=0)
            m.fit(W_, y, rr, n_classes=5)
            secs = [e["seconds"] for e in m.training_["epochs"]]
            row[dev] = {"epoch_seconds": secs, "median_after_first": float(np.median(secs[1:] if len(secs) > 1 else secs)),
                        "amp": m.training_["amp"], "params": m.n_params()}
            print(f"(b) {cls.__name__} full on {dev}: {row[dev]['median_after_first']:.2f} s/epoch "
                  f"({len(W_)} beats, {m.n_params():,} params, amp {row[dev]['amp']})", flush=True)
        if "cuda" in row:
            row["speedup"] = round(row["cpu"]["median_after_first"] / row["cuda"]["median_after_first"], 1)
        out["epochs"][cls.KIND] = row
    text = json.dumps(out, indent=1)
    if args.json:
        Path(args.json).write_text(text + "\n")
    else:
        print(text)


if __name__ == "__main__":
    main()
