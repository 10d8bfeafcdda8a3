"""Regenerate the MIT-BIH excerpt shipped in edgeseq/data/sample from the full records.

    python tools/make_sample.py --data ../shared/data/mitdb

Each excerpt is a 10-minute segment of lead MLII, digital samples copied unchanged (same gain,
baseline and format 212), with every annotation inside the segment shifted to the excerpt's start.
Segments were chosen to cover the AAMI classes: 208 and 209 are held out by the demo.
"""

import argparse
from pathlib import Path

import numpy as np
import wfdb

SEGMENT = 10 * 60 * 360
#: record -> index of its 10-minute segment
EXCERPTS = {"106": 1, "118": 1, "119": 0, "124": 0, "201": 2, "205": 1, "220": 1, "223": 1,
            "208": 0, "209": 1}
OUT = Path(__file__).resolve().parents[1] / "edgeseq" / "data" / "sample"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "mitdb"))
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    for name, seg in EXCERPTS.items():
        src = str(Path(args.data) / name)
        start, stop = seg * SEGMENT, (seg + 1) * SEGMENT
        rec = wfdb.rdrecord(src, channels=[0], physical=False, sampfrom=start, sampto=stop)
        assert rec.sig_name == ["MLII"], rec.sig_name
        wfdb.wrsamp(name, fs=rec.fs, units=rec.units, sig_name=rec.sig_name, d_signal=rec.d_signal,
                    fmt=["212"], adc_gain=rec.adc_gain, baseline=rec.baseline,
                    comments=[f"excerpt of MIT-BIH Arrhythmia Database record {name}, samples "
                              f"{start}-{stop} (ODC-By 1.0, see ATTRIBUTION.md)"],
                    write_dir=str(OUT))
        ann = wfdb.rdann(src, "atr", sampfrom=start, sampto=stop - 1, shift_samps=True)
        wfdb.wrann(name, "atr", np.asarray(ann.sample), symbol=ann.symbol, subtype=ann.subtype,
                   chan=np.zeros(len(ann.sample), dtype=int), num=ann.num, aux_note=ann.aux_note,
                   fs=rec.fs, write_dir=str(OUT))
        print(f"{name}: samples {start}-{stop}, {len(ann.sample)} annotations")


if __name__ == "__main__":
    main()
