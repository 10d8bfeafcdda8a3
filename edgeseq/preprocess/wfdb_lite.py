"""A WFDB record on the device: the header, one signal of format 212, 16 or 80, and MIT-format
annotations, read with numpy alone.

Decision: ``edgeseq predict`` runs on the board, whose install is numpy, a runtime and pyserial;
the ``wfdb`` package (the host's reader, :mod:`edgeseq.data.mitdb`) is a host extra that brings
pandas, scipy and matplotlib. So the few formats MIT-BIH-style recordings use are read here, and
a test checks them against ``wfdb`` sample for sample (physical values ``(d - baseline) / gain``,
the same float64 operation). It lives beside the other device-side modules rather than in
``edgeseq/data/`` (host side by the layout, where ``wfdb`` may be imported). Anything else
(multi-segment records, skew, several samples per frame, other formats) is refused in one line:
read such a record on the host.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import EdgeseqError

#: Bytes per sample of the formats read here (212: two 12-bit samples in three bytes).
FORMATS = {"212": 1.5, "16": 2, "80": 1}
#: The value a format uses for "no sample" (wfdb turns it into NaN; so does this reader).
_INVALID = {"212": -2048, "16": -32768, "80": -128}
#: MIT annotation codes -> symbols (the WFDB library's table; 0 is not an annotation).
CODES = {1: "N", 2: "L", 3: "R", 4: "a", 5: "V", 6: "F", 7: "J", 8: "A", 9: "S", 10: "E", 11: "j", 12: "/",
         13: "Q", 14: "~", 16: "|", 18: "s", 19: "T", 20: "*", 21: "D", 22: '"', 23: "=", 24: "p", 25: "B",
         26: "^", 27: "t", 28: "+", 29: "u", 30: "?", 31: "!", 32: "[", 33: "]", 34: "e", 35: "n", 36: "@",
         37: "x", 38: "f", 39: "(", 40: ")", 41: "r"}
_SKIP, _NUM, _SUB, _CHN, _AUX = 59, 60, 61, 62, 63
_GAIN = re.compile(r"^([-+]?[0-9.eE+-]+)(?:\(([-+]?\d+)\))?(?:/(\S+))?$")


@dataclass
class Signal:
    """One signal line of a header."""

    file: str
    fmt: str
    gain: float
    baseline: int
    units: str
    name: str
    byte_offset: int = 0


@dataclass
class Header:
    name: str
    fs: float
    n_samples: int | None
    signals: list[Signal] = field(default_factory=list)


@dataclass
class LiteRecord:
    """One signal of one record in physical units, and its annotations (None: no annotation file)."""

    name: str
    signal: np.ndarray  # float64
    fs: float
    lead: str
    units: str
    ann_samples: np.ndarray | None = None  # int64
    ann_symbols: list | None = None


def _fail(where: Path, why: str) -> EdgeseqError:
    return EdgeseqError(f"record {where.stem}: {why} ({where})")


def read_header(path) -> Header:
    """The ``.hea`` file at ``path`` (with or without the suffix)."""
    hea = Path(path).with_suffix(".hea")
    if not hea.is_file():
        raise EdgeseqError(f"record {hea.stem}: header {hea} not found")
    try:
        text = hea.read_bytes()[:1 << 20].decode("ascii", errors="replace")
    except OSError as exc:
        raise _fail(hea, f"cannot read header: {exc.strerror}") from None
    lines = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines:
        raise _fail(hea, "empty header")
    rec = lines[0].split()
    if len(rec) < 2 or "/" in rec[0]:
        raise _fail(hea, "not a single-segment record line (name, signals, rate, length)")
    try:
        n_sig = int(rec[1])
        fs = float(re.split(r"[/(]", rec[2])[0]) if len(rec) > 2 else 250.0
        n_samples = int(rec[3]) if len(rec) > 3 else None
    except ValueError:
        raise _fail(hea, f"cannot parse the record line {lines[0]!r}") from None
    if not (np.isfinite(fs) and fs > 0):
        raise _fail(hea, f"sample rate {fs:g} is not a positive number")
    if n_sig < 1 or len(lines) < 1 + n_sig:
        raise _fail(hea, f"{n_sig} signals announced, {len(lines) - 1} signal lines found")
    signals = [_signal_line(hea, ln) for ln in lines[1:1 + n_sig]]
    return Header(rec[0], fs, n_samples, signals)


def _signal_line(hea: Path, line: str) -> Signal:
    parts = line.split(maxsplit=8)
    m = re.fullmatch(r"(\d+)(x\d+)?(:\d+)?(\+\d+)?", parts[1]) if len(parts) > 1 else None
    if m is None:
        raise _fail(hea, f"cannot parse the signal line {line!r}")
    fmt, spf, skew, offset = m.groups()
    if fmt not in FORMATS:
        raise _fail(hea, f"signal format {fmt} is not read on the device (only {', '.join(FORMATS)}); "
                         "read it on the host")
    if (spf and spf != "x1") or (skew and skew != ":0"):
        raise _fail(hea, f"signal {parts[0]}: several samples per frame or skew are not read on the device")
    gain, baseline, units = 200.0, None, "mV"
    if len(parts) > 2:
        g = _GAIN.match(parts[2])
        if g is None:
            raise _fail(hea, f"cannot parse the gain {parts[2]!r}")
        try:
            gain = float(g.group(1))
        except ValueError:
            raise _fail(hea, f"cannot parse the gain {parts[2]!r}") from None
        baseline = int(g.group(2)) if g.group(2) is not None else None
        units = g.group(3) or units
    if not np.isfinite(gain):
        raise _fail(hea, f"gain {parts[2]!r} is not a finite number")
    gain = gain or 200.0  # WFDB: a gain of 0 means uncalibrated, taken as 200 units per mV
    try:
        adc_zero = int(parts[4]) if len(parts) > 4 else 0
    except ValueError:
        raise _fail(hea, f"cannot parse the ADC zero {parts[4]!r}") from None
    name = parts[8].strip() if len(parts) > 8 else ""
    return Signal(parts[0], fmt, gain, adc_zero if baseline is None else baseline, units, name,
                  int(offset[1:]) if offset else 0)


def _unpack(raw: np.ndarray, fmt: str, n: int) -> np.ndarray:
    """``n`` interleaved samples (int64) from the bytes of a signal file."""
    if fmt == "16":
        return raw[:2 * n].view("<i2").astype(np.int64)
    if fmt == "80":
        return raw[:n].astype(np.int64) - 128
    b = raw[:3 * ((n + 1) // 2)]
    if len(b) % 3:  # an odd count ends in one sample in two bytes
        b = np.concatenate([b, np.zeros(3 - len(b) % 3, np.uint8)])
    b = b.reshape(-1, 3).astype(np.int64)
    out = np.empty(2 * len(b), np.int64)
    out[0::2] = b[:, 0] | ((b[:, 1] & 0x0F) << 8)
    out[1::2] = b[:, 2] | ((b[:, 1] & 0xF0) << 4)
    out[out >= 2048] -= 4096  # 12-bit two's complement
    return out[:n]


def read_signal(data_dir, name: str, lead: str) -> tuple[np.ndarray, Header, Signal]:
    """Signal ``lead`` of record ``name`` in physical units (float64), its header and signal line."""
    path = Path(data_dir) / str(name)
    if not Path(data_dir).is_dir():
        raise EdgeseqError(f"data directory {data_dir} does not exist")
    h = read_header(path)
    names = [s.name for s in h.signals]
    if lead not in names:
        raise EdgeseqError(f"record {name}: lead {lead} not in {path.with_suffix('.hea')} "
                           f"(leads: {', '.join(n for n in names if n) or 'none'})")
    ch = names.index(lead)
    sig = h.signals[ch]
    group = [s for s in h.signals if s.file == sig.file]  # signals sharing a file are interleaved
    if any(s.fmt != sig.fmt or s.byte_offset != sig.byte_offset for s in group):
        raise _fail(path.with_suffix(".hea"), f"signals of {sig.file} differ in format or offset")
    dat = Path(data_dir) / sig.file
    if not dat.is_file():
        raise EdgeseqError(f"record {name}: signal file {dat} not found")
    try:
        raw = np.fromfile(dat, dtype=np.uint8, offset=sig.byte_offset)
    except (OSError, ValueError) as exc:
        raise EdgeseqError(f"record {name}: cannot read signal {dat}: {exc}") from None
    k, j = len(group), group.index(sig)
    frames = int(len(raw) // (FORMATS[sig.fmt] * k))
    if h.n_samples is not None:
        if frames < h.n_samples:
            raise EdgeseqError(f"record {name}: signal file {dat} holds {frames} samples, header says "
                               f"{h.n_samples} (truncated file?)")
        frames = h.n_samples
    d = _unpack(raw, sig.fmt, frames * k)[j::k]
    x = (d - sig.baseline) / sig.gain
    bad = d == _INVALID[sig.fmt]
    if bad.any():
        raise EdgeseqError(f"record {name}: signal {dat} has {int(bad.sum())} invalid samples "
                           f"(first at sample {int(np.argmax(bad))})")
    return x, h, sig


def read_annotations(path) -> tuple[np.ndarray, list]:
    """``(samples, symbols)`` of a MIT-format annotation file (e.g. ``208.atr``)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise EdgeseqError(f"cannot read annotations {p}: {exc.strerror}") from None
    if len(raw) % 2:
        raw += b"\0"
    w = np.frombuffer(raw, "<u2").astype(np.int64)
    codes, ivals = w >> 10, w & 0x3FF
    samples, symbols, aux = [], [], []
    t, i, n = 0, 0, len(w)
    while i < n:
        a = int(codes[i])
        if a == 0 and ivals[i] == 0:  # end of file
            break
        if a == _SKIP:
            if i + 2 >= n:
                raise EdgeseqError(f"annotations {p}: cut in a SKIP field")
            d = (int(w[i + 1]) << 16) | int(w[i + 2])
            t += d - (1 << 32) if d >= 1 << 31 else d
            i += 3
            continue
        if a in (_NUM, _SUB, _CHN):
            i += 1
            continue
        if a == _AUX:
            length = int(ivals[i])
            if symbols:
                aux[-1] = raw[2 * i + 2:2 * i + 2 + length].decode("latin-1")
            i += 1 + (length + 1) // 2
            continue
        t += int(ivals[i])
        samples.append(t)
        symbols.append(CODES.get(a, "?") if a else "")
        aux.append("")
        i += 1
    # Not annotations: code 0, and the definition notes WFDB puts at sample 0 ("## time resolution").
    keep = [k for k in range(len(samples))
            if symbols[k] and not (samples[k] == 0 and symbols[k] == '"' and aux[k].startswith("## "))]
    return np.array([samples[k] for k in keep], np.int64), [symbols[k] for k in keep]


def read_record(data_dir, name: str, *, lead: str = "MLII", annotations: str | None = "atr") -> LiteRecord:
    """One signal of a record and, when the ``annotations`` file exists, its annotations."""
    x, h, sig = read_signal(data_dir, name, lead)
    rec = LiteRecord(str(name), x, h.fs, lead, sig.units)
    atr = Path(data_dir) / f"{name}.{annotations}" if annotations else None
    if atr is not None and atr.is_file() and atr.stat().st_size:
        rec.ann_samples, rec.ann_symbols = read_annotations(atr)
        if len(rec.ann_samples) and (rec.ann_samples.min() < 0 or rec.ann_samples.max() >= len(x)):
            raise EdgeseqError(f"record {name}: annotations {atr} point outside the signal "
                               f"(sample {int(rec.ann_samples.max())} of {len(x)})")
    return rec
