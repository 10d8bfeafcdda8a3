"""Per-beat latency of exported bundles: one thread, one beat per call, median and p99 of 500 calls
after 50 warm-up calls, on real beats of record 208, beside the training bundle on the numpy
runtime (the same ``edgeseq.runtime.load``, interpreting the model's description).

    python tools/bench/export_latency.py ds1.bundle ds1.onnx.bundle ds1.int8.bundle ... [--data DIR]
"""

import argparse
import time
from pathlib import Path

import numpy as np

from edgeseq import runtime
from edgeseq.tasks import ecg


def timed(fn, w, rr, n=550, warm=50):
    t = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(w[i:i + 1], rr[i:i + 1])
        t.append(time.perf_counter() - t0)
    t = np.array(t[warm:]) * 1e6
    return np.median(t), np.percentile(t, 99)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trained", help="the training bundle (numpy reference)")
    ap.add_argument("exported", nargs="+", help="exported bundles")
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[3] / "shared" / "data" / "mitdb"))
    args = ap.parse_args()
    _, prep, _ = ecg.load_model(args.trained)
    beats = ecg.load_beats(args.data, ["208"], prep, progress=False)
    w, rr = beats.windows[:550].astype(np.float32), beats.rr[:550].astype(np.float32)
    for path in args.exported:
        med, p99 = timed(runtime.load(path, threads=1).logits, w, rr)
        print(f"{Path(path).name:24s} median {med:7.0f} us  p99 {p99:7.0f} us")
    med, p99 = timed(runtime.load(args.trained, threads=1).logits, w, rr)
    print(f"{'numpy (training bundle)':24s} median {med:7.0f} us  p99 {p99:7.0f} us")


if __name__ == "__main__":
    main()
