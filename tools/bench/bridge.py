"""Serial bridge throughput and latency, on one core (onnxruntime with one thread).

1. ECG: one 30-min MIT-BIH record (default 208) through decode + tracking + streaming
   preprocessing + the exported ONNX int8 beat classifier, as a multiple of real time:
   (a) replaying the raw wire bytes from a file (no pty, the host's work alone) and
   (b) live over a pseudo-terminal from ``edgeseq emulate --speed max`` in its own process.
2. Balance board: 4-channel int32 frames (one sample per frame, a real hbedb trial looped) through
   decode + tracking + a 1-s window model (a 4-input reservoirpy ESN exported to ONNX, 0.5-s hop),
   in frames per second: (a) replayed from a file, (b) live over a pty.
3. Latency from a frame's arrival (the read that brought its last byte) to its prediction, p50 and
   p99, with the emulator at 10x real time (no backlog: the figure is the host's own delay; an ECG
   beat additionally waits for the next R peak and the detector's fixed delay in *device* time,
   which is not included).

    python tools/bench/bridge.py --ecg-bundle B.onnx --mitdb ../shared/data/mitdb --hbedb ../shared/data/hbedb
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from esn_speed import machine  # noqa: E402

from edgeseq.bridge import protocol as P  # noqa: E402
from edgeseq.bridge.emulator import load_source  # noqa: E402
from edgeseq.bridge.serve import Bridge  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def wire_stream(src, seconds: float | None = None, loop: bool = False) -> bytes:
    """The exact bytes the emulator (and the firmware) would send, without a pty: INFO, SAMPLES,
    a HEARTBEAT a second."""
    fs, k, fmt = src.sample_rate, src.frame_samples, src.sample_format
    counts = src.counts
    n = len(counts) if seconds is None else int(seconds * fs)
    if loop and n > len(counts):
        counts = np.tile(counts, (-(-n // len(counts)), 1))
    out = bytearray(P.encode_frame(P.Frame(P.INFO, 0, 0, counts.shape[1], fmt,
                                           P.info_payload(src.device_id, fs, src.scale, src.offset, src.units))))
    seq = 1
    hb = int(fs)
    for i in range(0, n, k):
        j = min(i + k, n)
        out += P.encode_frame(P.Frame(P.SAMPLES, seq & 0xFFFF, int(i * 1e6 / fs) & 0xFFFFFFFF, counts.shape[1], fmt,
                                      P.samples_payload(i, counts[i:j], fmt)))
        seq += 1
        if j // hb != i // hb:
            out += P.encode_frame(P.Frame(P.HEARTBEAT, seq & 0xFFFF, 0, 0, 0, P.heartbeat_payload(j)))
            seq += 1
    return bytes(out)


def replay(raw: bytes, bundle, **kw) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".raw", delete=False) as f:
        f.write(raw)
    t = time.perf_counter()
    s = Bridge(f.name, bundle, quiet=True, **kw).run()
    s["wall_s"] = time.perf_counter() - t
    Path(f.name).unlink()
    return s


def live(source: str, bundle, *, speed, seconds, loop=False, frame_samples=None, **kw) -> tuple[dict, dict]:
    """Emulator in its own process (the device), bridge here."""
    with tempfile.TemporaryDirectory() as d:
        link = Path(d) / "tty"
        cmd = [sys.executable, "-m", "edgeseq", "emulate", "--source", source, "--link", str(link),
               "--speed", str(speed), "--duration", str(seconds)]
        if loop:
            cmd.append("--loop")
        if frame_samples:
            cmd += ["--frame-samples", str(frame_samples)]
        emu = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        while not link.is_symlink():
            time.sleep(0.01)
        t = time.perf_counter()
        s = Bridge(str(link), bundle, quiet=True, give_up_s=0.3, **kw).run()
        s["wall_s"] = time.perf_counter() - t - 0.3  # minus the give-up wait at the end
        rep = json.loads(emu.communicate(timeout=60)[0].strip().splitlines()[-1])
    return s, rep


def balance_bundle(trial: Path, out: Path) -> Path:
    """A 4-input reservoirpy ESN (100 units) fitted to predict the trial's COP x from the corner
    forces, written with from_reservoirpy and exported to ONNX: a stand-in of the right shape for
    the balance models, here only to measure the bridge."""
    from reservoirpy.nodes import Reservoir, Ridge

    from edgeseq.bridge.emulator import NEWTON_PER_COUNT
    from edgeseq.export import export
    from edgeseq.interop.reservoirpy import from_reservoirpy

    src = load_source(f"hbedb:{trial}")
    X = src.counts.astype(np.float64) * NEWTON_PER_COUNT
    fz = X.sum(axis=1, keepdims=True)
    y = (X[:, [1, 3]].sum(axis=1, keepdims=True) - X[:, [0, 2]].sum(axis=1, keepdims=True)) / fz
    model = Reservoir(100, lr=0.3, sr=0.9, input_scaling=0.005, seed=0) >> Ridge(ridge=1e-4)
    model.fit(X, y, warmup=100)
    # each window starts from zeros, as the balance ESN's do (not from where the fit left the reservoir)
    b = from_reservoirpy(model, out / "balance.esn", sample_rate=src.sample_rate, initial_state="zero")
    return export(b, out / "balance.onnx", fmt="onnx")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ecg-bundle", required=True, help="exported ECG bundle (edgeseq export --int8)")
    ap.add_argument("--mitdb", default=str(ROOT.parent / "shared" / "data" / "mitdb"))
    ap.add_argument("--hbedb", default=str(ROOT.parent / "shared" / "data" / "hbedb"))
    ap.add_argument("--record", default="208")
    ap.add_argument("--trial", default="BDS00001.txt")
    ap.add_argument("--out", default=str(ROOT / "tools" / "bench" / "results" / "bridge.json"))
    args = ap.parse_args()
    res = {"machine": machine(), "command": " ".join(sys.argv), "ecg": {}, "balance": {}}

    src = f"mitdb:{args.mitdb}/{args.record}"
    ecg = load_source(src)
    dur = len(ecg.counts) / ecg.sample_rate
    raw = wire_stream(ecg)
    s = replay(raw, args.ecg_bundle)
    res["ecg"]["replay"] = {"stream_s": dur, "wall_s": round(s["wall_s"], 3), "x_real_time": round(dur / s["wall_s"], 1),
                            "frames": s["frames"], "predictions": s["predictions"], "bytes": len(raw)}
    print("ecg replay", res["ecg"]["replay"], flush=True)
    s, rep = live(src, args.ecg_bundle, speed="max", seconds=dur)
    res["ecg"]["pty_max"] = {"stream_s": dur, "wall_s": round(s["wall_s"], 3), "x_real_time": round(dur / s["wall_s"], 1),
                             "frames": s["frames"], "predictions": s["predictions"],
                             "counts_match": all(s[k] == rep["expected"][k] for k in rep["expected"])}
    print("ecg pty max", res["ecg"]["pty_max"], flush=True)
    s, rep = live(src, args.ecg_bundle, speed=10, seconds=300)
    res["ecg"]["latency_10x"] = {"stream_s": 300, "predictions": s["predictions"], "latency_ms": s["latency_ms"]}
    print("ecg latency at 10x", res["ecg"]["latency_10x"], flush=True)

    with tempfile.TemporaryDirectory() as d:
        trial = Path(args.hbedb) / "BDS" / "data" / args.trial
        bundle = balance_bundle(trial, Path(d))
        bsrc = f"hbedb:{trial}"
        kw = dict(window_s=1.0, hop_s=0.5)
        raw = wire_stream(load_source(bsrc), seconds=600, loop=True)
        s = replay(raw, bundle, **kw)
        res["balance"]["replay"] = {"stream_s": 600, "frames": s["frames"], "wall_s": round(s["wall_s"], 3),
                                    "frames_per_s": round(s["frames"] / s["wall_s"]), "predictions": s["predictions"]}
        print("balance replay", res["balance"]["replay"], flush=True)
        s, rep = live(bsrc, bundle, speed="max", seconds=600, loop=True, **kw)
        res["balance"]["pty_max"] = {"stream_s": 600, "frames": s["frames"], "wall_s": round(s["wall_s"], 3),
                                     "frames_per_s": round(s["frames"] / s["wall_s"]), "predictions": s["predictions"],
                                     "counts_match": all(s[k] == rep["expected"][k] for k in rep["expected"])}
        print("balance pty max", res["balance"]["pty_max"], flush=True)
        s, rep = live(bsrc, bundle, speed=10, seconds=300, loop=True, **kw)
        res["balance"]["latency_10x"] = {"stream_s": 300, "predictions": s["predictions"], "latency_ms": s["latency_ms"]}
        print("balance latency at 10x", res["balance"]["latency_10x"], flush=True)
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
