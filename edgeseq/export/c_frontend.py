"""The C ECG front end's configuration from a bundle: ``edgeseq_ecg_config.h``.

``firmware_bridge/src/edgeseq_ecg.c`` is the device twin of
:class:`edgeseq.preprocess.stream.EcgBeatStream`; its numbers (band-pass coefficients, window,
detector settings, history lengths) and the sizes of its fixed buffers come from this header, so
a bundle's own preprocessing is compiled in rather than retyped::

    python -m edgeseq.export.c_frontend BUNDLE -o firmware_bridge/src/edgeseq_ecg_config.h

Sample counts are taken from the Python objects built from the manifest (``EcgPreprocessing``,
``QRSDetector``), not recomputed here, so their rounding (and the detector's group delay) is the
one the Python stream uses. Doubles are written with ``repr``, which a C compiler reads back to the
same bits. numpy and the standard library only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import EdgeseqError

__all__ = ["frontend_config", "frontend_config_header"]

N_FEATURES = 9  # edgeseq.preprocess.ecg.RR_FEATURES


def frontend_config(manifest: dict) -> dict:
    """The numbers of the C config struct and the capacities, from a manifest's ``preprocessing``
    and ``detector`` sections."""
    from ..preprocess.ecg import RR_FEATURES, EcgPreprocessing
    from ..preprocess.filters import SOSFilter
    from ..preprocess.qrs import QRSDetector

    if not isinstance(manifest, dict):
        raise EdgeseqError(f"bundle manifest must be a mapping, got {type(manifest).__name__}")
    for key in ("preprocessing", "detector"):
        if not isinstance(manifest.get(key), dict):
            raise EdgeseqError(f"bundle manifest has no '{key}' section: not an ECG bundle?")
    if not manifest["preprocessing"].get("sos"):
        raise EdgeseqError("bundle preprocessing has no band-pass coefficients ('sos')")
    assert len(RR_FEATURES) == N_FEATURES
    prep = EcgPreprocessing.from_config(manifest["preprocessing"])
    det = QRSDetector.from_config(manifest["detector"])
    if abs(det.fs - float(prep.sample_rate)) > 1e-9:
        raise EdgeseqError(f"detector runs at {det.fs:g} Hz but preprocessing expects {prep.sample_rate:g} Hz")
    sos = SOSFilter(prep.sos).sos  # normalised to a0 = 1, as the Python filter runs it
    for name in ("local_beats", "running_beats", "irregularity_beats", "template_beats", "decimate"):
        if int(getattr(prep, name)) < 1:
            raise EdgeseqError(f"preprocessing {name} must be at least 1 for the C front end, "
                               f"got {getattr(prep, name)}")
    if int(det.params["n_avg"]) < 1:
        raise EdgeseqError(f"detector n_avg must be at least 1, got {det.params['n_avg']}")
    if prep.pre < 0:
        raise EdgeseqError(f"preprocessing pre_s must not be negative, got {prep.pre_s}")
    offsets = list(range(-prep.pre, prep.post, prep.decimate))
    if not offsets:
        raise EdgeseqError("preprocessing window is empty (post_s <= -pre_s)")
    cfg = dict(
        fs=float(prep.sample_rate),
        n_sections=len(sos), sos=sos.tolist(),
        pre=int(prep.pre), decimate=int(prep.decimate), window=len(offsets), last_offset=int(offsets[-1]),
        local_beats=int(prep.local_beats), running_beats=int(prep.running_beats),
        irregularity_beats=int(prep.irregularity_beats), template_beats=int(prep.template_beats),
        det_n_sections=len(det.sos), det_sos=det.sos.tolist(),
        mwi=det._W, refractory=det._refr, twave=det._twave, lookahead=det._look, refine=det._refine,
        relearn=det._relearn, frame=det._F, group_delay=det._gd, history=det._H, delay=int(det.delay_samples),
        n_avg=int(det.params["n_avg"]),
        twave_slope=float(det.params["twave_slope"]), th=float(det.params["th"]),
        searchback_rr=float(det.params["searchback_rr"]), searchback_frac=float(det.params["searchback_frac"]),
        init_rr=float(det.params["init_rr_s"]) * det.fs,  # the product the Python forms, same bits
        seed_ratio=float(det.params["seed_ratio"]),
    )
    cfg["capacity"] = capacities(cfg)
    return cfg


def capacities(c: dict) -> dict:
    """Buffer sizes (es_ecg_init checks the same bounds). Why each bound holds:

    * CANDS: undecided candidates lie within lookahead + one frame of the newest sample, and
      MWI local maxima (strict on the left) are at least 2 samples apart.
    * RECENT: decided candidates within +-refractory, again at least 2 apart.
    * OUT: beats held for the fixed delay (and at a flush, those decided at once), at least
      refractory apart.
    * PENDING: the beat awaiting its next R peak, one finished but not yet returned, the new one;
      windows reaching past the detector's delay keep a few more waiting.
    * RING: a window's first sample is still there when the window can be cut.
    """
    refr = c["refractory"]
    late = c["last_offset"] - c["delay"]
    return dict(
        WINDOW=c["window"],
        MAX_SECTIONS=max(c["n_sections"], c["det_n_sections"]),
        RING=c["pre"] + max(c["delay"], c["last_offset"] + 1) + 2,
        HIST=c["history"],
        MWI=c["mwi"],
        FRAME=c["frame"],
        CANDS=(c["lookahead"] + c["frame"]) // 2 + 4,
        RECENT=refr // 2 + 3,
        OUT=(c["delay"] + c["lookahead"] + 2 * c["frame"] + c["refine"]) // refr + 4,
        NAVG=c["n_avg"],
        SEEDSEG=c["refine"] + c["lookahead"] + 1,
        RUNNING=c["running_beats"],
        IRREG=c["irregularity_beats"],
        TEMPLATE=c["template_beats"],
        PENDING=4 + ((late + c["refine"] + 1) // refr + 2 if late >= 0 else 0),
    )


def _d(x: float) -> str:
    r = repr(float(x))
    if r in ("inf", "-inf", "nan"):
        raise EdgeseqError(f"front-end config holds a non-finite number ({r})")
    return r if ("." in r or "e" in r) else r + ".0"


def _sos(rows, n_max: int) -> str:
    rows = [list(r) for r in rows] + [[0.0] * 6] * (n_max - len(rows))
    return "{" + ", ".join("{" + ", ".join(_d(v) for v in r) + "}" for r in rows) + "}"


def frontend_config_header(manifest: dict, source: str | None = None) -> str:
    """``edgeseq_ecg_config.h`` for the bundle whose manifest this is (``source`` names it in the
    header's comment)."""
    c = frontend_config(manifest)
    cap = c["capacity"]
    n = cap["MAX_SECTIONS"]
    ints = ("pre", "decimate", "window", "last_offset", "local_beats", "running_beats", "irregularity_beats",
            "template_beats")
    dets = ("mwi", "refractory", "twave", "lookahead", "refine", "relearn", "frame", "group_delay", "history",
            "delay", "n_avg")
    dbls = ("twave_slope", "th", "searchback_rr", "searchback_frac", "init_rr", "seed_ratio")
    init = [
        f"    {_d(c['fs'])}, /* fs */",
        f"    {c['n_sections']}, {_sos(c['sos'], n)}, /* band-pass of the windows */",
        "    " + ", ".join(str(c[k]) for k in ints) + ", /* " + " ".join(ints) + " */",
        f"    {c['det_n_sections']}, {_sos(c['det_sos'], n)}, /* detector band-pass */",
        "    " + ", ".join(str(c[k]) for k in dets) + ", /* " + " ".join(dets) + " */",
        "    " + ", ".join(_d(c[k]) for k in dbls) + " /* " + " ".join(dbls) + " */",
    ]
    lines = [
        "/* edgeseq_ecg_config.h: generated by edgeseq.export.c_frontend"
        + (f" from {source}" if source else "") + "; do not edit.",
        " * The numbers of one ECG bundle for the C front end (edgeseq_ecg.h) and the sizes of its",
        " * buffers. Use: static const es_ecg_config_t cfg = ES_ECG_CONFIG_INIT; es_ecg_init(&s, &cfg); */",
        "#ifndef EDGESEQ_ECG_CONFIG_H",
        "#define EDGESEQ_ECG_CONFIG_H",
        "",
        *(f"#define ES_ECG_{k} {v}" for k, v in cap.items()),
        f"#define ES_ECG_DELAY {c['delay']} /* detector delay, samples */",
        "",
        "#define ES_ECG_CONFIG_INIT { \\",
        *(line + " \\" for line in init),
        "}",
        "",
        "#endif",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Write edgeseq_ecg_config.h from an ECG bundle (or its manifest.json).")
    ap.add_argument("bundle", type=Path, help="bundle directory or manifest.json")
    ap.add_argument("-o", "--out", type=Path, help="header to write (default: stdout)")
    args = ap.parse_args(argv)
    try:
        manifest = _read_manifest(args.bundle)
        text = frontend_config_header(manifest, source=args.bundle.name)
    except EdgeseqError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.out:
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def _read_manifest(path: Path) -> dict:
    import json

    p = path / "manifest.json" if path.is_dir() else path
    try:
        return json.loads(p.read_text())
    except OSError as e:
        raise EdgeseqError(f"cannot read manifest {p}: {e.strerror}") from None
    except ValueError as e:
        raise EdgeseqError(f"manifest {p} is not JSON: {e}") from None


if __name__ == "__main__":
    sys.exit(main())
