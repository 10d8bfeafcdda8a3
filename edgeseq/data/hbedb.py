"""Balance trials: the public hbedb force-platform set, or a user's balance-board recordings, as corner forces.

Every trial comes out as the four corner forces of a balance board (``CORNERS`` order of
:mod:`edgeseq.preprocess.balance`), uniformly sampled at ``fs``, with its condition (vision x surface),
its subject and its clinical scores. Two directory layouts are read:

**hbedb** (Santos & Duarte 2016, PhysioNet doi:10.13026/C2WW2W). ``data_dir`` is the hbedb root
(holding ``BDS/``) or ``BDS/`` itself. ``BDS/BDSinfo.txt`` is tab-separated, one row per trial of the
whole study; ``BDS/data/<trial>.txt`` is tab-separated with the header
``Time[s] Fx[N] Fy[N] Fz[N] Mx[Nm] My[Nm] Mz[Nm] COPx[cm] COPy[cm]`` at 100 Hz. The corner forces are
``corner_forces(Fz, COPx, COPy)``: the forces a Wii-sized board would have measured, whose COP is the
platform's. A trial's scores are the numeric cells of its info row except the identity and demographic
columns (``_HBEDB_NOT_SCORES``): Best_1..Best_14 and Best_T (Mini-BESTest), FES_*, TMT_*, Falls12m, ...

**User CSV** (a Wii Balance Board or any four-cell board). ``data_dir`` holds:

* ``trials.csv``: comma-separated, a header row, one row per trial. Columns (names case-insensitive):
  ``trial`` (the file stem), ``subject``, and either ``vision`` (``Open``/``Closed``) and ``surface``
  (``Firm``/``Foam``) or a single ``condition`` column (``Open/Firm``, ``Closed/Foam``, ...); values are
  case-insensitive. Every other column is a score column (e.g. ``Best_T``, ``Berg``): a cell that parses
  as a finite number is a score, an empty cell is a missing score.
* ``<trial>.csv`` per trial: comma-separated with the header
  ``time_s,top_left,top_right,bottom_left,bottom_right`` (any column order, extra columns ignored):
  time in seconds, strictly increasing, possibly irregular (a board over Bluetooth jitters around
  60-100 Hz), gaps of at most 0.5 s, at least 20 Hz; forces in N or kg, kept as given (only their ratios
  set the COP, their scale only the force features).

Trials are resampled to ``fs`` by :func:`resample_uniform` (linear interpolation after an anti-alias FIR
when decimating), except a file already uniform at ``fs``, which is returned unchanged. Anything wrong
with a directory, file, row or sample raises :class:`~edgeseq.errors.EdgeseqError` naming where.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import EdgeseqError
from . import check_dir
from ..preprocess.balance import CORNERS, corner_forces

VISIONS = ("Open", "Closed")
SURFACES = ("Firm", "Foam")
CONDITIONS = ("Open/Firm", "Open/Foam", "Closed/Firm", "Closed/Foam")

#: Below this rate a file is not a balance recording we can trust (sway needs ~10 Hz, jitter margin).
MIN_SOURCE_RATE = 20.0
#: Longest hole in the timestamps that interpolation may bridge.
MAX_GAP_S = 0.5

HBEDB_INFO, CSV_INFO = "BDSinfo.txt", "trials.csv"
_HBEDB_TIME, _HBEDB_FZ, _HBEDB_COPX, _HBEDB_COPY = "Time[s]", "Fz[N]", "COPx[cm]", "COPy[cm]"
_CSV_COLUMNS = ("time_s",) + CORNERS
_IDENTITY = ("trial", "subject", "vision", "surface", "condition")
#: hbedb info columns that describe the person or the session, not a clinical score.
_HBEDB_NOT_SCORES = frozenset(c.lower() for c in (
    "Age", "AgeGroup", "Gender", "Height", "Weight", "BMI", "FootLen", "Nationality", "SkinColor",
    "Ystudy", "Footwear", "Illness", "Illness2", "Nmedication", "Medication", "Ortho-Prosthesis",
    "Ortho-Prosthesis2", "Disability", "Disability2", "Date"))


@dataclass
class Trial:
    """One quiet-standing trial as corner forces ``(n, 4)`` at ``fs``."""

    name: str
    subject: str
    vision: str  # "Open" | "Closed"
    surface: str  # "Firm" | "Foam"
    forces: np.ndarray  # (n, 4) float64, CORNERS order, uniform at fs
    fs: float
    scores: dict  # score column -> float, only the cells that parse as finite numbers
    source_fs: float  # the file's nominal rate (median of its timestamp steps)

    @property
    def condition(self) -> str:
        return f"{self.vision}/{self.surface}"


# ----------------------------------------------------------------------------------------- layout




def dataset_root(data_dir) -> Path:
    """The directory holding the info file: ``DIR/BDS``, ``DIR`` itself (``BDS/``), or a user CSV dir."""
    path = check_dir(data_dir)
    for root in (path / "BDS", path):
        if (root / HBEDB_INFO).is_file():
            return root
    if (path / CSV_INFO).is_file():
        return path
    if (path / "BDS").is_dir() or (path / "data").is_dir() and path.name == "BDS":
        bds = path / "BDS" if (path / "BDS").is_dir() else path
        raise EdgeseqError(f"hbedb directory {bds} has no {HBEDB_INFO} (the per-trial info file)")
    if any(path.glob("*.csv")):
        raise EdgeseqError(f"balance CSV directory {path} has no {CSV_INFO} (the per-trial info file)")
    raise EdgeseqError(f"{path} holds neither the hbedb data set (BDS/{HBEDB_INFO}) nor balance CSV "
                       f"recordings ({CSV_INFO} and one <trial>.csv per trial)")


def _is_hbedb(root: Path) -> bool:
    return (root / HBEDB_INFO).is_file()


def _signal_path(root: Path, name: str) -> Path:
    return root / "data" / f"{name}.txt" if _is_hbedb(root) else root / f"{name}.csv"


def _norm_choice(value: str, allowed: tuple[str, ...], what: str, where: str) -> str:
    for a in allowed:
        if value.strip().lower() == a.lower():
            return a
    raise EdgeseqError(f"{where}: {what} {value!r} is not one of {', '.join(allowed)}")


def load_info(data_dir) -> dict[str, dict]:
    """Trial name -> its info row (str values).

    Each row keeps the info file's own columns (``Trial``, ``Best_T``, ... for hbedb) and also carries
    the canonical keys ``trial``, ``subject``, ``vision``, ``surface`` and ``condition``, so code
    reading either layout can use ``row["subject"]``. ``vision``/``surface`` are checked against
    ``VISIONS``/``SURFACES`` and normalised to their spelling there.
    """
    root = dataset_root(data_dir)
    hbedb = _is_hbedb(root)
    path = root / (HBEDB_INFO if hbedb else CSV_INFO)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        text = path.read_text(encoding="latin-1")
    except OSError as exc:
        raise EdgeseqError(f"cannot read {path}: {exc.strerror or exc}") from None
    reader = csv.reader(text.splitlines(), delimiter="\t" if hbedb else ",")
    header = [h.strip() for h in next(reader, [])]
    if not any(header):
        raise EdgeseqError(f"{path} is empty (expected a header row)")
    lower = [h.lower() for h in header]
    col = {k: lower.index(k) for k in _IDENTITY if k in lower}
    missing = [k for k in ("trial", "subject") if k not in col]
    if "condition" not in col:
        missing += [k for k in ("vision", "surface") if k not in col]
    if missing:
        raise EdgeseqError(f"{path}: header lacks column(s) {', '.join(missing)} "
                           f"(need trial, subject, and vision+surface or condition)")
    rows: dict[str, dict] = {}
    for lineno, cells in enumerate(reader, start=2):
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            raise EdgeseqError(f"{path} line {lineno}: {len(cells)} fields, the header has {len(header)}")
        row = {h: c.strip() for h, c in zip(header, cells)}
        name = cells[col["trial"]].strip()
        where = f"{path} line {lineno} (trial {name or '?'})"
        if not name:
            raise EdgeseqError(f"{path} line {lineno}: empty trial name")
        if name in rows:
            raise EdgeseqError(f"{where}: trial {name} listed twice")
        subject = cells[col["subject"]].strip()
        if not subject:
            raise EdgeseqError(f"{where}: empty subject")
        if "vision" in col and "surface" in col:
            vision, surface = cells[col["vision"]], cells[col["surface"]]
        else:
            cond = cells[col["condition"]]
            if cond.count("/") != 1:
                raise EdgeseqError(f"{where}: condition {cond!r} is not one of {', '.join(CONDITIONS)}")
            vision, surface = cond.split("/")
        vision = _norm_choice(vision, VISIONS, "vision", where)
        surface = _norm_choice(surface, SURFACES, "surface", where)
        row.update(trial=name, subject=subject, vision=vision, surface=surface,
                   condition=f"{vision}/{surface}")
        rows[name] = row
    if not rows:
        raise EdgeseqError(f"{path} lists no trials")
    return rows


def _scores(row: dict, hbedb: bool) -> dict[str, float]:
    out = {}
    for key, value in row.items():
        k = key.lower()
        if k in _IDENTITY or (hbedb and k in _HBEDB_NOT_SCORES):
            continue
        try:
            v = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(v):
            out[key] = v
    return out


def _score_columns(info: dict[str, dict], hbedb: bool) -> list[str]:
    seen: dict[str, None] = {}
    for row in info.values():
        for k in _scores(row, hbedb):
            seen.setdefault(k)
    return list(seen)


def list_trials(data_dir) -> list[str]:
    """Sorted names of the trials that have both a signal file and an info row."""
    root = dataset_root(data_dir)
    info = load_info(root)
    if _is_hbedb(root):
        files = {p.stem for p in (root / "data").glob("*.txt")}
    else:
        files = {p.stem for p in root.glob("*.csv")} - {Path(CSV_INFO).stem}
    names = sorted(files & set(info))
    if not names:
        where = root / "data" if _is_hbedb(root) else root
        raise EdgeseqError(f"no trial in {where} has both a signal file and a row in its info file "
                           f"({len(files)} signal files, {len(info)} info rows)")
    return names


# ------------------------------------------------------------------------------------------ files


def _read_table(path: Path, delimiter: str, needed: tuple[str, ...]) -> tuple[dict[str, np.ndarray], int]:
    """The ``needed`` columns of a delimited text file with a header row, as float64 arrays.

    Returns the columns and the file line number of the first data row (for error messages).
    """
    try:
        lines = path.read_text(encoding="utf-8-sig", errors="replace").splitlines()
    except OSError as exc:
        raise EdgeseqError(f"cannot read {path}: {exc.strerror or exc}") from None
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise EdgeseqError(f"{path} is empty (expected the header {delimiter.join(needed)})")
    header = [h.strip() for h in lines[0].split(delimiter)]
    missing = [c for c in needed if c not in header]
    if missing:
        raise EdgeseqError(f"{path}: missing column(s) {', '.join(missing)} "
                           f"(header has {', '.join(h for h in header if h) or 'nothing'})")
    idx = [header.index(c) for c in needed]
    body = lines[1:]
    if not body:
        raise EdgeseqError(f"{path} has a header but no samples")
    try:
        data = np.loadtxt(body, delimiter=delimiter, usecols=idx, dtype=np.float64, ndmin=2)
        if data.shape[0] != len(body):  # loadtxt skips blank lines: find them below
            raise ValueError
    except ValueError:
        _raise_parse_error(path, body, delimiter, needed, idx)
        raise  # unreachable: the scan always finds the bad line
    bad = ~np.isfinite(data)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise EdgeseqError(f"{path} line {r + 2}: {needed[c]} is {body[r].split(delimiter)[idx[c]].strip()!r} "
                           f"(not a finite number)")
    return {c: data[:, i] for i, c in enumerate(needed)}, 2


def _raise_parse_error(path, body, delimiter, needed, idx):
    for r, line in enumerate(body):
        lineno = r + 2
        if not line.strip():
            raise EdgeseqError(f"{path} line {lineno}: empty line among the samples")
        cells = line.split(delimiter)
        if len(cells) <= max(idx):
            raise EdgeseqError(f"{path} line {lineno}: {len(cells)} fields, need column "
                               f"{needed[idx.index(max(idx))]} at field {max(idx) + 1}")
        for name, i in zip(needed, idx):
            try:
                float(cells[i])
            except ValueError:
                raise EdgeseqError(f"{path} line {lineno}: {name} is {cells[i].strip()!r}, "
                                   f"not a number") from None
    raise EdgeseqError(f"{path}: cannot parse the samples")  # pragma: no cover


def _check_samples(t: np.ndarray, x: np.ndarray, where: str, line0: int | None) -> None:
    """Shared checks of timestamps and values; ``where`` prefixes messages, ``line0`` maps sample -> line."""

    def at(i: int) -> str:
        return f"sample {i}" + (f" (line {i + line0})" if line0 is not None else "")

    if t.ndim != 1:
        raise EdgeseqError(f"{where}timestamps must be one-dimensional, got shape {t.shape}")
    if x.shape[0] != t.shape[0]:
        raise EdgeseqError(f"{where}{t.shape[0]} timestamps but {x.shape[0]} samples")
    if t.shape[0] < 2:
        raise EdgeseqError(f"{where}{t.shape[0]} sample(s); need at least 2 to resample")
    bad = ~np.isfinite(t)
    if bad.any():
        raise EdgeseqError(f"{where}timestamp is NaN or infinite at {at(int(np.argmax(bad)))}")
    bad = ~np.isfinite(x.reshape(x.shape[0], -1)).all(axis=1)
    if bad.any():
        raise EdgeseqError(f"{where}value is NaN or infinite at {at(int(np.argmax(bad)))}")
    dt = np.diff(t)
    if np.any(dt <= 0):
        i = int(np.argmax(dt <= 0)) + 1
        raise EdgeseqError(f"{where}timestamps not increasing at {at(i)}: {t[i]:.6g} s after {t[i - 1]:.6g} s")
    if np.any(dt > MAX_GAP_S):
        i = int(np.argmax(dt > MAX_GAP_S))
        raise EdgeseqError(f"{where}gap of {dt[i]:.3g} s between {at(i)} at {t[i]:.6g} s and the next "
                           f"(longest allowed {MAX_GAP_S:g} s)")


# ------------------------------------------------------------------------------------- resampling


def _lowpass_fir(cutoff: float, transition: float) -> np.ndarray:
    """Blackman-windowed sinc, ``cutoff`` and ``transition`` in cycles/sample, unit DC gain."""
    n = int(math.ceil(5.5 / transition)) | 1  # Blackman: transition ~ 5.5 / taps, stopband ~ -74 dB
    k = np.arange(n) - (n - 1) / 2
    h = 2 * cutoff * np.sinc(2 * cutoff * k) * np.blackman(n)
    return h / h.sum()


def resample_uniform(t, x, fs) -> np.ndarray:
    """``x`` sampled at times ``t`` (s, increasing, possibly irregular) -> uniform samples at ``fs`` from ``t[0]``.

    ``x`` is ``(n,)`` or ``(n, k)``; the result has ``floor((t[-1] - t[0]) * fs) + 1`` rows. Linear
    interpolation; when the input's median rate is above ``fs`` the input is first put on a uniform grid
    at its median rate and low-passed by a Blackman-windowed sinc (flat to 0.4 fs, >70 dB down from
    fs/2), so decimation does not alias.
    """
    t = np.asarray(t, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    if not (np.isfinite(fs) and fs > 0):
        raise EdgeseqError(f"output sample rate must be a positive number, got {fs}")
    _check_samples(t, x, "", None)
    fs = float(fs)
    n_out = int(math.floor((t[-1] - t[0]) * fs + 1e-6)) + 1
    t_out = t[0] + np.arange(n_out) / fs
    flat = x.reshape(x.shape[0], -1)
    rate_in = 1.0 / float(np.median(np.diff(t)))
    if rate_in > fs * (1 + 1e-6):
        n_mid = int(math.floor((t[-1] - t[0]) * rate_in + 1e-6)) + 1
        t_mid = t[0] + np.arange(n_mid) / rate_in
        mid = np.column_stack([np.interp(t_mid, t, flat[:, j]) for j in range(flat.shape[1])])
        h = _lowpass_fir(0.45 * fs / rate_in, 0.1 * fs / rate_in)
        pad = len(h) // 2
        # odd reflection about the end samples keeps level and slope there (scipy filtfilt's default)
        padded = (np.pad(mid, ((pad, pad), (0, 0)), mode="reflect", reflect_type="odd") if pad < n_mid
                  else np.pad(mid, ((pad, pad), (0, 0)), mode="edge"))
        mid = np.column_stack([np.convolve(padded[:, j], h, mode="valid") for j in range(flat.shape[1])])
        t, flat = t_mid, mid
    out = np.column_stack([np.interp(t_out, t, flat[:, j]) for j in range(flat.shape[1])])
    return out.reshape((n_out,) + x.shape[1:])


# ----------------------------------------------------------------------------------------- trials


def _load(root: Path, info: dict[str, dict], name: str, fs: float) -> Trial:
    hbedb = _is_hbedb(root)
    path = _signal_path(root, name)
    if not path.is_file():
        raise EdgeseqError(f"trial {name} not found in {root} (no {path.relative_to(root)} there)")
    if name not in info:
        raise EdgeseqError(f"trial {name}: no row in {root / (HBEDB_INFO if hbedb else CSV_INFO)}")
    row = info[name]
    if hbedb:
        cols, line0 = _read_table(path, "\t", (_HBEDB_TIME, _HBEDB_FZ, _HBEDB_COPX, _HBEDB_COPY))
        t = cols[_HBEDB_TIME]
        raw = None
    else:
        cols, line0 = _read_table(path, ",", _CSV_COLUMNS)
        t = cols["time_s"]
        raw = np.column_stack([cols[c] for c in CORNERS])
    _check_samples(t, t, f"{path}: ", line0)
    rate = 1.0 / float(np.median(np.diff(t)))
    if rate < MIN_SOURCE_RATE:
        raise EdgeseqError(f"{path}: timestamps imply {rate:.3g} Hz, too low for balance "
                           f"(need at least {MIN_SOURCE_RATE:g} Hz)")
    if hbedb:
        if np.any(cols[_HBEDB_FZ] <= 0):
            i = int(np.argmax(cols[_HBEDB_FZ] <= 0))
            raise EdgeseqError(f"{path} line {i + line0}: Fz is {cols[_HBEDB_FZ][i]:g} N, nobody standing?")
        forces = corner_forces(cols[_HBEDB_FZ], cols[_HBEDB_COPX], cols[_HBEDB_COPY])
    else:
        forces = raw
    _check_samples(t, forces, f"{path}: ", line0)
    dt = np.diff(t)
    uniform = bool(np.all(np.abs(dt - 1.0 / fs) <= 1e-6 / fs))
    if not (uniform and abs(rate - fs) <= 1e-6 * fs):
        forces = resample_uniform(t, forces, fs)
    return Trial(name=name, subject=row["subject"], vision=row["vision"], surface=row["surface"],
                 forces=np.ascontiguousarray(forces, dtype=np.float64), fs=float(fs),
                 scores=_scores(row, hbedb), source_fs=round(rate, 3))


def _check_fs(fs) -> float:
    try:
        fs = float(fs)
    except (TypeError, ValueError):
        raise EdgeseqError(f"sample rate must be a number, got {fs!r}") from None
    if not (math.isfinite(fs) and fs > 0):
        raise EdgeseqError(f"sample rate must be a positive number, got {fs}")
    return fs


def load_trial(data_dir, name, *, fs: float = 100.0) -> Trial:
    """One trial's corner forces at ``fs``."""
    root = dataset_root(data_dir)
    return _load(root, load_info(root), str(name).strip(), _check_fs(fs))


def load_trials(data_dir, names=None, *, fs: float = 100.0, target: str | None = None,
                progress: bool = True) -> list[Trial]:
    """The named trials (all of :func:`list_trials` by default), in order.

    ``target`` names what a model will predict: ``"condition"`` or a score column (``"Best_T"``,
    ``"Berg"``, ...). With a score target every trial must carry a numeric value for it: this is
    checked on the info rows before any signal is read.
    """
    fs = _check_fs(fs)
    root = dataset_root(data_dir)
    hbedb = _is_hbedb(root)
    info = load_info(root)
    names = list_trials(root) if names is None else [str(n).strip() for n in names]
    if not names:
        raise EdgeseqError(f"no trials asked for in {root}")
    for n in names:
        path = _signal_path(root, n)
        if not path.is_file():
            raise EdgeseqError(f"trial {n} not found in {root} (no {path.relative_to(root)} there)")
        if n not in info:
            raise EdgeseqError(f"trial {n}: no row in {root / (HBEDB_INFO if hbedb else CSV_INFO)}")
    if target is not None and target != "condition":
        known = _score_columns(info, hbedb)
        if target not in known:
            raise EdgeseqError(f"target {target!r} is not a score column of {root} "
                               f"(score columns: {', '.join(known) or 'none'}; or use condition, vision or surface)")
        for n in names:
            if target not in _scores(info[n], hbedb):
                raise EdgeseqError(f"trial {n} (subject {info[n]['subject']}) has no numeric {target} "
                                   f"(value {info[n].get(target, '')!r}) in its info row")
    from ..progress import Progress

    tick = Progress("trials", len(names), enabled=progress)
    out = []
    for i, n in enumerate(names):
        out.append(_load(root, info, n, fs))
        tick(i + 1)
    return out
