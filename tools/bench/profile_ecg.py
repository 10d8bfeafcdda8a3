"""``edgeseq profile --compare`` on the default ECG ESN's four exports (float and int8, ONNX and
TFLite), one thread, written to ``results/profile_ecg.json`` (per-call samples dropped) with the
latency plot beside it.

    python tools/bench/profile_ecg.py F.onnx Q.onnx F.tflite Q.tflite [--n 1000]

The bundles: ``edgeseq train ecg --data ../shared/data/mitdb --out B`` then ``edgeseq export B
--format onnx|tflite [--int8 --calibration ../shared/data/mitdb] --out ...``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgeseq.plots import latency_png
from edgeseq.profile import compare, format_compare

OUT = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundles", nargs="+")
    ap.add_argument("--n", type=int, default=1000)
    args = ap.parse_args()
    results = compare(args.bundles, threads=1, n=args.n)
    print(format_compare(results))
    latency_png(results, OUT / "profile_ecg.png", "default ECG ESN (300 units), one thread")
    for r in results:
        r.pop("latency_samples_us", None)
    (OUT / "profile_ecg.json").write_text(json.dumps(
        {"command": "python tools/bench/profile_ecg.py " + " ".join(sys.argv[1:]), "machine": results[0]["machine"],
         "compare": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
