"""A C bundle on a microcontroller, measured in an emulator: ``edgeseq profile --target cortex-m4``.

The bundle's ``model.c``, the C ECG front end (``edgeseq/csrc/edgeseq_ecg.c``, configured from the
bundle's own manifest) and the classify loop of a firmware (``csrc/pipeline.c``) are built for the
target (``profile/mcu.py``: zig's clang) and run on a real recording in unicorn, counting every
instruction. Reported: flash (text + rodata + data image), RAM (data + bss + the stack's measured
high water), instructions per beat (the model alone) and per second of signal (front end and model
over the whole recording), and whether the emulated outputs equal the host's: the beats those of
the Python front end (``EcgBeatStream``), the logits those of the same C built for this machine
(``edgeseq.runtime``), bit for bit for an int8 bundle.

Decision: the whole pipeline is measured, not the model alone, because that is what must fit next
to a firmware; the per-beat figure isolates the model for comparison with other families.
"""

from __future__ import annotations

import tempfile
from importlib import resources
from pathlib import Path

import numpy as np

from ..bundle import load_bundle, read_verified
from ..errors import EdgeseqError

CHUNK = 3600  # samples per emulated call: 10 s at 360 Hz
MAX_BEATS = 8192


def csrc(name: str) -> Path:
    """A C source shipped in ``edgeseq/csrc``."""
    return Path(str(resources.files("edgeseq") / "csrc" / name))


def _signal(data, record: str, seconds: float, fs: float) -> np.ndarray:
    from ..data.mitdb import load_record

    sig = np.asarray(load_record(data, record, fs=fs, annotations=False).signal, np.float64)
    n = int(round(seconds * fs))
    if len(sig) < n:
        raise EdgeseqError(f"record {record} holds {len(sig) / fs:.0f} s, fewer than --seconds {seconds:g}")
    return sig[:n]


def build_pipeline(bundle_path, work: Path, target: str = "cortex-m4") -> tuple[Path, dict]:
    """The ELF of front end + model + classify loop for ``target``, and the bundle's manifest."""
    from ..export.c_frontend import frontend_config_header
    from . import mcu

    b = load_bundle(bundle_path)
    m = b.manifest
    rt = m.get("runtime") or {}
    if rt.get("format") != "c":
        raise EdgeseqError(f"bundle {bundle_path} is {rt.get('format') or 'a training bundle'}: --target runs a C "
                           f"bundle (edgeseq export BUNDLE --format c --int8 --calibration DIR)")
    if m.get("task") != "ecg" or rt.get("interface") != "beats":
        raise EdgeseqError(f"bundle {bundle_path}: --target measures the ECG beat pipeline; this is a "
                           f"{m.get('task')} {rt.get('interface')} model")
    if rt.get("precision") != "int8":
        raise EdgeseqError(f"bundle {bundle_path} is float32 C, which needs libm: export it with --int8 for "
                           f"a microcontroller (integers only)")
    root = Path(bundle_path)
    (work / "model.c").write_bytes(read_verified(root / rt["step"]))
    (work / "model.h").write_bytes(read_verified(root / rt["c"]["header"]))
    (work / "edgeseq_ecg_config.h").write_text(frontend_config_header(m, source=str(root)))
    elf = mcu.build([work / "model.c", csrc("edgeseq_ecg.c"), csrc("pipeline.c")], work / "pipeline.elf",
                    include_dirs=[work, csrc("")], target=target,
                    keep=["es_pipeline_init", "es_pipeline_feed", "es_pipeline_beat"])
    return elf, m


def profile_target(bundle_path, *, target: str = "cortex-m4", data=None, record: str = "208",
                   seconds: float = 300.0, flash: int | None = None, ram: int | None = None) -> dict:
    """The figures of the module docstring; ``flash``/``ram``: budgets in bytes (a one-line error
    when the pipeline does not fit)."""
    from ..preprocess.ecg import EcgPreprocessing
    from ..preprocess.qrs import QRSDetector
    from ..preprocess.stream import EcgBeatStream
    from ..runtime import load
    from . import mcu

    data = data or Path(__file__).resolve().parents[1] / "data" / "sample"
    with tempfile.TemporaryDirectory(prefix="edgeseq-target-") as work:
        elf, m = build_pipeline(bundle_path, Path(work), target)
        size = mcu.sizes(elf)
        fs = float(m["sample_rate"])
        x = _signal(data, record, seconds, fs)
        machine = mcu.Machine(elf, target=target)
        if machine.call("es_pipeline_init") != 0:
            raise EdgeseqError(f"bundle {bundle_path}: its preprocessing does not fit the C front end's sizes")
        L = len(m["labels"])
        T = m["runtime"]["window_length"]
        F = m["runtime"]["inputs"]["rr"]["shape"][1]
        buf = machine.alloc(4 * CHUNK)
        r_at, w_at, rr_at, lg_at = (machine.alloc(4 * MAX_BEATS * k) for k in (1, T, F, L))
        machine.reset_counters()
        r, win, rr, logits, n = [], [], [], [], 0
        for i in range(0, len(x), CHUNK):
            chunk = x[i:i + CHUNK].astype("<f4")
            machine.write(buf, chunk.tobytes())
            k = machine.call("es_pipeline_feed", buf, len(chunk), int(i + CHUNK >= len(x)), r_at, w_at, rr_at, lg_at,
                             MAX_BEATS)
            k = int(np.int32(np.uint32(k)))
            if k:
                r.append(np.frombuffer(machine.read(r_at, 4 * k), "<u4").astype(np.int64))
                win.append(np.frombuffer(machine.read(w_at, 4 * k * T), "<f4").reshape(k, T))
                rr.append(np.frombuffer(machine.read(rr_at, 4 * k * F), "<f4").reshape(k, F))
                logits.append(np.frombuffer(machine.read(lg_at, 4 * k * L), "<f4").reshape(k, L))
            n += len(chunk)
        total = machine.instructions
        stack = machine.stack_high_water()
        R = np.concatenate(r) if r else np.zeros(0, np.int64)
        W, RR, LG = (np.concatenate(a) if a else np.zeros((0, d), np.float32) for a, d in ((win, T), (rr, F), (logits, L)))
        per_beat = []
        for i in range(len(W)):  # the model alone, beat by beat
            machine.write(w_at, W[i].astype("<f4").tobytes())
            machine.write(rr_at, RR[i].astype("<f4").tobytes())
            before = machine.instructions
            machine.call("es_pipeline_beat", w_at, rr_at, lg_at)
            per_beat.append(machine.instructions - before)
        stack = max(stack, machine.stack_high_water())
    # the host: the Python front end on the same float32 samples, the same C built for this machine
    py = EcgBeatStream(EcgPreprocessing.from_config(m["preprocessing"]), QRSDetector.from_config(m["detector"]))
    beats = py.feed(x.astype(np.float32)) + py.flush()
    py_r = np.array([b.r for b in beats if b.ok], np.int64)
    host = load(bundle_path).logits(W, RR) if len(W) else LG
    flash_bytes = int(size["flash_bytes"])
    ram_bytes = int(size["ram_static"] + stack)
    out = {
        "bundle": str(bundle_path), "target": target, "record": str(record), "seconds": float(n / fs),
        "flash_bytes": flash_bytes, "ram_bytes": ram_bytes, "sizes": {**size, "stack_high_water": int(stack)},
        "beats": int(len(R)),
        "instructions_total": int(total),
        "instructions_per_second": float(total / (n / fs)),
        "instructions_per_beat": float(np.mean(per_beat)) if per_beat else None,
        "instructions_per_beat_max": int(max(per_beat)) if per_beat else None,
        "frontend_instructions_per_second": float((total - sum(per_beat)) / (n / fs)),
        "beats_match_python": bool(np.array_equal(R, py_r)),
        "matches_host": bool(np.array_equal(R, py_r) and np.array_equal(LG, host)),
        "logits_max_diff": float(np.abs(LG - host).max()) if len(W) else 0.0,
        "toolchain": " ".join(mcu.toolchain()[-2:]),
    }
    for name, have, budget in (("flash", flash_bytes, flash), ("RAM", ram_bytes, ram)):
        if budget is not None and have > budget:
            raise EdgeseqError(f"{target}: the pipeline needs {have:,} bytes of {name}, over the budget of "
                               f"{budget:,} bytes (flash {flash_bytes:,}, RAM {ram_bytes:,}); try a smaller model")
    return out


def format_target(res: dict) -> str:
    """Sizes in bytes, as the CLI prints them everywhere (export, the budget error): one unit to
    compare against a budget, not KiB in one place and bytes in the next."""
    return "\n".join([
        f"{res['target']}: front end + model on record {res['record']} ({res['seconds']:.0f} s, {res['beats']} beats)",
        f"  flash {res['flash_bytes']:,} bytes  (text {res['sizes']['text']:,} + rodata {res['sizes']['rodata']:,} "
        f"+ data {res['sizes']['data']:,})",
        f"  RAM   {res['ram_bytes']:,} bytes  (data + bss {res['sizes']['ram_static']:,} + stack "
        f"{res['sizes']['stack_high_water']:,})",
        f"  instructions per second of signal {res['instructions_per_second'] / 1e6:.2f} M "
        f"(front end {res['frontend_instructions_per_second'] / 1e6:.2f} M)",
        f"  instructions per beat (model) {res['instructions_per_beat'] or 0:,.0f} (max {res['instructions_per_beat_max'] or 0:,})",
        f"  matches host: {res['matches_host']} (beats as the Python front end: {res['beats_match_python']}; "
        f"logits max diff {res['logits_max_diff']:.3g})",
    ])
