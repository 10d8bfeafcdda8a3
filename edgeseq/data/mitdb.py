"""MIT-BIH Arrhythmia records: WFDB files in, one lead at the model's rate plus AAMI beat labels out.

This is where an ECG sample enters edgeseq on the host. Reading goes through the ``wfdb`` package
(format 212 is never parsed by hand); everything a user can get wrong about a directory or a record
becomes an :class:`~edgeseq.errors.EdgeseqError` that names the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import EdgeseqError
from . import check_dir
from ..preprocess.qrs import vf_episodes

#: Inter-patient split of de Chazal et al. (IEEE TBME 2004): DS1 trains, DS2 tests.
DS1 = ("101", "106", "108", "109", "112", "114", "115", "116", "118", "119", "122",
       "124", "201", "203", "205", "207", "208", "209", "215", "220", "223", "230")
DS2 = ("100", "103", "105", "111", "113", "117", "121", "123", "200", "202", "210",
       "212", "213", "214", "219", "221", "222", "228", "231", "232", "233", "234")
#: Paced records, excluded by the AAMI EC57 convention.
PACED = ("102", "104", "107", "217")

#: AAMI EC57 heartbeat classes, in the order used for labels and confusion matrices.
AAMI_CLASSES = ("N", "S", "V", "F", "Q")
_AAMI_GROUPS = {"N": "NLRej", "S": "AaJS", "V": "VE", "F": "F", "Q": "/fQ"}
SYMBOL_TO_CLASS = {s: AAMI_CLASSES.index(c) for c, syms in _AAMI_GROUPS.items() for s in syms}

#: Below this rate a 40 Hz ECG band cannot be represented; resampling up would invent nothing useful.
MIN_SAMPLE_RATE = 100.0


@dataclass
class Record:
    """One lead of one record at ``fs``, with its AAMI-labelled reference beats."""

    name: str
    signal: np.ndarray  # float64, physical units (mV)
    fs: float
    lead: str
    beat_samples: np.ndarray  # int64 R-peak positions at ``fs``
    beat_labels: np.ndarray  # int64 index into AAMI_CLASSES
    source_fs: float
    #: (start, end) sample intervals of ventricular flutter/fibrillation, excluded from beat detection
    #: scoring by EC57 (bracketed by '[' and ']' annotations).
    vf_episodes: list[tuple[int, int]] = field(default_factory=list)




def aami_beats(samples, symbols) -> tuple[np.ndarray, np.ndarray]:
    """The annotations that are beats: their samples and AAMI class indices (``SYMBOL_TO_CLASS``)."""
    keep = np.array([s in SYMBOL_TO_CLASS for s in symbols], dtype=bool)
    return (np.asarray(samples, np.int64)[keep] if len(keep) else np.zeros(0, np.int64),
            np.array([SYMBOL_TO_CLASS[s] for s, k in zip(symbols, keep) if k], dtype=np.int64))


def list_records(data_dir) -> list[str]:
    """Names of the WFDB records (``*.hea``) in ``data_dir``, sorted."""
    path = check_dir(data_dir)
    names = sorted(p.stem for p in path.glob("*.hea"))
    if not names:
        raise EdgeseqError(f"no WFDB records (*.hea files) in {path}")
    return names


def select_records(data_dir, records=None, *, include_paced=False) -> list[str]:
    """The records to use: the DS1 records present by default, else the ones asked for.

    Asking for a record that is not there, or for a paced record without ``include_paced``, is an
    error rather than a silent skip: a figure over fewer records than asked for is a wrong figure.
    """
    present = list_records(data_dir)
    if records is None or len(records) == 0:
        chosen = [r for r in DS1 if r in present]
        if not chosen:
            raise EdgeseqError(
                f"none of the DS1 records is in {data_dir} (found {', '.join(present[:8])}"
                f"{'...' if len(present) > 8 else ''}); name the records with --records")
        return chosen
    chosen = []
    for rec in records:
        rec = str(rec).strip()
        if rec not in present:
            raise EdgeseqError(f"record {rec} not found in {data_dir} (no {rec}.hea there)")
        if rec in PACED and not include_paced:
            raise EdgeseqError(f"record {rec} is a paced record, excluded by AAMI EC57; "
                               "pass --include-paced to use it anyway")
        if rec not in chosen:
            chosen.append(rec)
    return chosen


def parse_records(text: str | None) -> list[str] | None:
    """``"101,106, 208"`` -> ``["101", "106", "208"]``; None (option not given) -> None, the default
    set. A given but empty list (``--records "$R"`` with R unset) is refused: silently taking the
    default would train or test on records the user did not name."""
    if text is None:
        return None
    names = [r.strip() for r in text.split(",") if r.strip()]
    if not names:
        raise EdgeseqError(f"--records {text!r} names no record (leave the option out for the default set)")
    return names


def resample(signal: np.ndarray, fs_from: float, fs_to: float) -> np.ndarray:
    """Polyphase resampling between two rates (host side; needs scipy)."""
    if fs_from == fs_to:
        return signal
    from scipy.signal import resample_poly

    ratio = Fraction(fs_to / fs_from).limit_denominator(1000)
    return resample_poly(signal, ratio.numerator, ratio.denominator)


_RATE = re.compile(r"^(\d+(\.\d*)?|\.\d+)(/[^\s(]+)?(\([^)]*\))?$")


def _check_rate_field(name: str, hea: Path) -> None:
    """The record line's sample-rate field, when present, must be a positive number: wfdb reads an
    unparsable one (``-360``, ``abc``) as the 250 Hz default and ``3.6e2`` as 3.6 Hz, and the
    record would be resampled from a rate it never had. An absent field is WFDB's documented 250 Hz default."""
    try:
        lines = hea.read_text(errors="replace").splitlines()
    except OSError as exc:
        raise EdgeseqError(f"record {name}: cannot read header {hea}: {exc.strerror}") from None
    record_line = next((ln.split() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")), [])
    if len(record_line) >= 3 and not _RATE.match(record_line[2]):
        raise EdgeseqError(f"record {name}: cannot parse header {hea}: sample rate {record_line[2]!r} is not "
                           "a positive number")


def load_record(data_dir, name: str, *, fs: float = 360.0, lead: str = "MLII",
                annotations: bool = True) -> Record:
    """Read one record's ``lead`` and its beat annotations, resampled to ``fs`` if needed."""
    import wfdb

    path = check_dir(data_dir) / str(name)
    hea, dat = path.with_suffix(".hea"), None
    if not hea.exists():
        raise EdgeseqError(f"record {name}: header {hea} not found")
    _check_rate_field(name, hea)
    try:
        header = wfdb.rdheader(str(path))
    except Exception as exc:  # wfdb raises many types for a malformed header
        raise EdgeseqError(f"record {name}: cannot parse header {hea}: {_why(exc)}") from None
    if not header.fs or not np.isfinite(header.fs) or header.fs <= 0:
        raise EdgeseqError(f"record {name}: header {hea} gives no valid sample rate ({header.fs})")
    if header.fs < MIN_SAMPLE_RATE:
        raise EdgeseqError(f"record {name}: sample rate {header.fs:g} Hz in {hea} is below the "
                           f"{MIN_SAMPLE_RATE:g} Hz an ECG model needs")
    leads = [str(n) for n in (header.sig_name or [])]  # a cut signal line has None for its name
    if lead not in leads:
        raise EdgeseqError(f"record {name}: lead {lead} not in {hea} (leads: {', '.join(leads) or 'none'})")
    channel = leads.index(lead)
    dat = Path(data_dir) / header.file_name[channel]
    if not dat.exists():
        raise EdgeseqError(f"record {name}: signal file {dat} not found")
    try:
        rec = wfdb.rdrecord(str(path), channels=[channel], physical=True)
    except Exception as exc:
        raise EdgeseqError(f"record {name}: cannot read signal {dat}: {_why(exc)}") from None
    signal = np.asarray(rec.p_signal[:, 0], dtype=np.float64)
    if header.sig_len and signal.shape[0] != header.sig_len:
        raise EdgeseqError(f"record {name}: signal file {dat} holds {signal.shape[0]} samples, "
                           f"header {hea} says {header.sig_len} (truncated file?)")
    bad = ~np.isfinite(signal)
    if bad.any():
        raise EdgeseqError(f"record {name}: signal {dat} has {int(bad.sum())} invalid samples "
                           f"(first at sample {int(np.argmax(bad))})")

    beat_samples = np.zeros(0, np.int64)
    beat_labels = np.zeros(0, np.int64)
    episodes: list[tuple[int, int]] = []
    if annotations:
        atr = path.with_suffix(".atr")
        if not atr.exists():
            raise EdgeseqError(f"record {name}: reference annotations {atr} not found")
        if atr.stat().st_size == 0:  # wfdb reads it as "no beats": the record would silently drop out
            raise EdgeseqError(f"record {name}: reference annotations {atr} are empty (0 bytes)")
        try:
            ann = wfdb.rdann(str(path), "atr")
        except Exception as exc:
            raise EdgeseqError(f"record {name}: cannot read annotations {atr}: {_why(exc)}") from None
        samples = np.asarray(ann.sample, dtype=np.int64)
        if len(samples) and (samples.max() >= len(signal) or samples.min() < 0):
            raise EdgeseqError(f"record {name}: annotations {atr} point outside the signal "
                               f"(sample {int(samples.max())} of {len(signal)})")
        beat_samples, beat_labels = aami_beats(samples, ann.symbol)
        episodes = vf_episodes(ann.symbol, samples)

    if header.fs != fs:
        scale = fs / header.fs
        signal = resample(signal, header.fs, fs)
        beat_samples = np.minimum(np.round(beat_samples * scale).astype(np.int64), len(signal) - 1)
        episodes = [(int(round(a * scale)), int(round(b * scale))) for a, b in episodes]
    return Record(name=str(name), signal=signal, fs=float(fs), lead=lead, beat_samples=beat_samples,
                  beat_labels=beat_labels, source_fs=float(header.fs), vf_episodes=episodes)


def _why(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]
