"""The Python API behind `edgeseq train` and `edgeseq evaluate`, on the excerpt shipped with edgeseq.

    python examples/train_and_evaluate.py [--data DIR]

Trains an echo-state network on some records, writes a bundle, reloads it the way a device would
(hashes checked, numpy only), finds beats with the streaming QRS detector and classifies them.
"""

import argparse

import numpy as np

from edgeseq.cli import SAMPLE_DIR
from edgeseq.data.mitdb import AAMI_CLASSES, load_record
from edgeseq.metrics import format_table
from edgeseq.tasks import ecg


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(SAMPLE_DIR))
    ap.add_argument("--out", default="example.bundle")
    args = ap.parse_args()

    info = ecg.train(args.data, ["106", "118", "119", "124", "201", "205", "220", "223"], out=args.out)
    print(f"bundle {info['bundle']}: {info['n_beats']} beats in {info['seconds']} s")

    # What a device does with the bundle: rebuild preprocessing and detector from the manifest.
    bundle, prep, model = ecg.load_model(args.out)
    detector = ecg.QRSDetector.from_config(bundle.manifest["detector"])
    rec = load_record(args.data, "208", fs=prep.sample_rate, lead=prep.lead)
    peaks = np.empty(0, np.int64)
    for start in range(0, len(rec.signal), 360):  # one second at a time, as samples arrive
        peaks = np.concatenate([peaks, detector.process(rec.signal[start:start + 360])])
    peaks = np.concatenate([peaks, detector.flush()])
    windows, rr, idx = prep.beats(rec.signal, peaks)
    labels = model.predict(windows, rr)
    counts = np.bincount(labels, minlength=len(AAMI_CLASSES))
    print(f"record 208: {len(peaks)} beats detected (delay {detector.delay_samples / prep.sample_rate:.2f} s), "
          "labels " + ", ".join(f"{c}={n}" for c, n in zip(AAMI_CLASSES, counts)))

    print(format_table(ecg.evaluate(args.out, args.data, ["208"], beats="detected", progress=False),
                       "scored against the reference annotations:"))


if __name__ == "__main__":
    main()
