"""A TCN beat classifier, trained, exported to int8 ONNX and run sample by sample, as a device
that cannot hold a whole beat window would run it.

    python examples/stream_tcn.py [--data DIR] [--out DIR]     (needs the torch and export extras)

Trains a small TCN on shipped excerpts, exports it, then feeds one unseen beat window through the
step model (one call per sample; the state holds each block's last inputs and the running sum
of the outputs): after the window's last sample its output equals the window model's logits.
"""

import argparse
from pathlib import Path

import numpy as np

from edgeseq import runtime
from edgeseq.cli import SAMPLE_DIR
from edgeseq.data.mitdb import AAMI_CLASSES
from edgeseq.export import export
from edgeseq.tasks import ecg


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(SAMPLE_DIR))
    ap.add_argument("--out", default="tcn_example")
    args = ap.parse_args()
    out = Path(args.out)

    info = ecg.train(args.data, ["106", "118", "119", "201", "223"], out=out / "tcn.bundle", model="tcn")
    print(f"trained: {info['n_beats']} beats, {info['seconds']:.1f} s on {info['device']}")
    _, prep, _ = ecg.load_model(out / "tcn.bundle")
    beats = ecg.load_beats(args.data, ["208"], prep, progress=False)  # a record it has not seen
    export(out / "tcn.bundle", out / "tcn.int8.bundle", fmt="onnx", int8=True,
           calibration=(beats.windows[:500], beats.rr[:500]))

    model = runtime.load(out / "tcn.int8.bundle")
    i = int(np.flatnonzero(beats.labels == AAMI_CLASSES.index("V"))[0])
    window, rr = beats.windows[i:i + 1], beats.rr[i:i + 1]
    state = model.initial_state(1, rr=rr)
    for t in range(window.shape[1]):
        streamed, state = model.step(window[:, t:t + 1], state)  # None until the window's last sample
    whole = model.logits(window, rr)
    print(f"beat {i} of record 208 (annotated {AAMI_CLASSES[beats.labels[i]]}): "
          f"streamed -> {AAMI_CLASSES[int(streamed.argmax())]}, window model -> {AAMI_CLASSES[int(whole.argmax())]}")
    print(f"logits streamed {np.round(streamed[0], 3)}\n       window   {np.round(whole[0], 3)}")
    acc = np.mean(model.classify(beats.windows, beats.rr) == beats.labels)
    print(f"record 208, {len(beats.labels)} beats: accuracy {100 * acc:.1f}% (int8 ONNX)")


if __name__ == "__main__":
    main()
