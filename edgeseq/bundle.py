"""The one artifact between host and device: a directory with ``manifest.json`` and open-format files.

Layout (format version 0)::

    BUNDLE/
      manifest.json   task, sample rate, lead, preprocessing, labels, model kind and
                      hyper-parameters, edgeseq version, and sha256 + size of every other file
      weights.npz     model arrays (numpy's zip of .npy files, read with allow_pickle=False)

A bundle is untrusted input (it may come from anywhere), so this module is the one place one is
read, and reading is bounded and checked in this order: ``manifest.json`` must be a regular file of
at most ``MAX_MANIFEST_BYTES``, strict JSON (no NaN/Infinity), valid against the one declared
schema ``manifest.schema.json``; the directory holds only the manifest, an optional signature and
the plain files the manifest lists (no symlink, FIFO, subdirectory or unlisted file: nothing
unhashed is ever opened); every listed file matches its size and sha256; ``weights.npz`` holds
exactly the arrays the manifest names, sized from the zip directory and .npy headers before any
byte is decompressed. With a trusted key (``require_signature``, the CLI's ``--trust``) the
manifest must also carry a valid Ed25519 signature by that key (``edgeseq.signing``).
Device-side module: numpy, jsonschema and the standard library; PyNaCl only to check a signature.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import shutil
import stat
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import __version__
from .errors import EdgeseqError
from .outputs import check_parent

MANIFEST = "manifest.json"
FORMAT = "edgeseq-bundle"
FORMAT_VERSION = 0
WEIGHTS = "weights.npz"
#: Written by ``edgeseq sign``; the one file a bundle may hold that its manifest does not list.
SIGNATURE = "signature.json"
#: Bounds on what a bundle may make a loader read. A real manifest is a few kB; the largest bundle
#: written (``--size full`` ESN, 5000 units) holds about 100 MB of weights.
MAX_MANIFEST_BYTES = 1 << 20
MAX_FILE_BYTES = 1 << 30
MAX_ARRAY_BYTES = 1 << 30
MAX_JSON_DEPTH = 32
#: Environment variable naming the trusted public key: how ``--trust`` reaches child processes
#: (``profile --compare``, the tflite-micro run), and a way to set it for a whole deployment.
TRUST_ENV = "EDGESEQ_TRUST"
#: Which array of each model family holds one value per label (its last axis).
OUTPUT_ARRAYS = {"esn": "bout", "reservoirpy": "bout", "lstm": "head_W2", "tcn": "head_W2"}


@dataclass
class Bundle:
    path: Path
    manifest: dict
    arrays: dict[str, np.ndarray]

    @property
    def task(self) -> str:
        return self.manifest["task"]

    @property
    def labels(self) -> list[str]:
        return list(self.manifest["labels"])


def _sha256(f) -> str:
    h = hashlib.sha256()
    for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
    return h.hexdigest()


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return _sha256(f)


def _not_ours(out: Path) -> str | None:
    """Why the non-empty directory ``out`` may not be replaced, or None when it provably is a
    bundle edgeseq wrote: a manifest with our format key, and beside it only the plain files it
    lists. Anything more may be the user's (a project with its own manifest.json, notes added
    later), and replacing the directory would delete it."""
    try:
        m = _parse(out, _read_bounded(out, MANIFEST, MAX_MANIFEST_BYTES))
    except EdgeseqError:
        return f"no readable {MANIFEST}"
    if not isinstance(m, dict) or m.get("format") != FORMAT or not isinstance(m.get("files"), dict):
        return f"its {MANIFEST} is not an edgeseq bundle manifest"
    for p in sorted(out.iterdir()):
        if p.name not in (MANIFEST, SIGNATURE) and p.name not in m["files"]:
            return f"{p.name} is not one of its files"
        if p.is_symlink() or not p.is_file():
            return f"{p.name} is not a plain file"
    return None


def check_bundle_target(out_dir) -> Path:
    """``out_dir`` when ``write_bundle`` may write there (absent, empty, or a bundle edgeseq wrote);
    one line otherwise. Called before training too, so a refused ``--out`` costs nothing."""
    if not str(out_dir).strip():
        raise EdgeseqError("the bundle path is empty: give --out a directory name")
    out = Path(out_dir)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise EdgeseqError(f"bundle path {out} exists and is not a directory")
    if out.exists() and any(out.iterdir()):
        foreign = _not_ours(out)
        if foreign:
            raise EdgeseqError(f"refusing to replace {out}: it is not a bundle edgeseq wrote ({foreign}); "
                               "choose another --out or remove it yourself")
    check_parent(out, "bundle path")
    return out


def write_bundle(out_dir, manifest: dict, arrays: dict[str, np.ndarray],
                 files: dict[str, Path] | None = None) -> Path:
    """Write ``arrays`` to ``weights.npz``, copy ``files`` (name in the bundle -> source path, e.g.
    an exported model) beside it, and write ``manifest`` completed with every file's hash.

    Files are written to a temporary sibling directory and moved into place, so an interrupted
    write never leaves a bundle whose manifest and weights disagree.
    """
    out = check_bundle_target(out_dir)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgeseqError(f"bundle path {out}: cannot create {out.parent}: "
                           f"{exc.strerror or type(exc).__name__}") from None
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp's private 0700 would follow the bundle to the board
    try:
        np.savez(tmp / WEIGHTS, **{k: np.ascontiguousarray(v) for k, v in arrays.items()})
        for name, src in (files or {}).items():
            if name in (WEIGHTS, MANIFEST) or Path(name).name != name:
                raise ValueError(f"bundle file name {name!r} is reserved or not a plain name")
            shutil.copyfile(src, tmp / name)
        listed = {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
                  for p in sorted(tmp.iterdir())}
        # The writer owns these keys: a manifest copied from another bundle cannot carry stale ones.
        full = {"format": FORMAT, "format_version": FORMAT_VERSION, "edgeseq_version": __version__}
        full.update({k: v for k, v in manifest.items() if k not in full and k != "files"})
        full["files"] = listed
        full["model"] = {**full["model"], "weights": WEIGHTS,
                         "arrays": {k: {"shape": list(np.shape(v)), "dtype": str(np.asarray(v).dtype)}
                                    for k, v in arrays.items()}}
        (tmp / MANIFEST).write_text(json.dumps(full, indent=2, sort_keys=False, allow_nan=False) + "\n")
        if out.exists():  # checked above: a bundle edgeseq wrote and nothing else, safe to replace whole
            shutil.rmtree(out)
        os.replace(tmp, out)
        _WRITTEN[str(out.resolve())] = hashlib.sha256((out / MANIFEST).read_bytes()).hexdigest()
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out


# ---- reading: bounded, strict, validated -------------------------------------------------------

def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    return "not a regular file"


def _open_plain(root: Path, name: str, limit: int):
    """``root/name`` opened for reading when it is a regular file (not a symlink, FIFO, device or
    directory) of at most ``limit`` bytes; the checks are made on the opened descriptor, so a file
    swapped for a FIFO after ``lstat`` cannot block the open or the read."""
    path = root / name
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise EdgeseqError(f"bundle {root}: {name} is missing") from None
    except OSError as exc:
        raise EdgeseqError(f"bundle {root}: cannot read {name}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise EdgeseqError(f"bundle {root}: {name} is {_kind(st.st_mode)}; a bundle holds plain files only")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise EdgeseqError(f"bundle {root}: cannot read {name}: {exc.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise EdgeseqError(f"bundle {root}: {name} is {_kind(st.st_mode)}; a bundle holds plain files only")
    if st.st_size > limit:
        os.close(fd)
        raise EdgeseqError(f"bundle {root}: {name} has {st.st_size} bytes, more than the {limit} a bundle "
                           f"file may have")
    return os.fdopen(fd, "rb"), st.st_size


def _read_bounded(root: Path, name: str, limit: int) -> bytes:
    f, _ = _open_plain(root, name, limit)
    with f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise EdgeseqError(f"bundle {root}: {name} has more than the {limit} bytes a bundle file may have")
    return data


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise ValueError(f"{text} overflows a float")
    return v


def _depth(obj) -> int:
    """Nesting depth of parsed JSON, iteratively (a deep value must not exhaust the stack here)."""
    deepest, todo = 0, [(obj, 1)]
    while todo:
        v, d = todo.pop()
        if isinstance(v, (dict, list)):
            deepest = max(deepest, d)
            if d > MAX_JSON_DEPTH:
                return d
            todo.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return deepest


def _parse(root: Path, data: bytes, what: str = MANIFEST):
    """Strict JSON: NaN, Infinity and numbers beyond a float are refused (Python's json takes
    them), and so is nesting deeper than ``MAX_JSON_DEPTH``."""
    try:
        obj = json.loads(data.decode("utf-8"), parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise EdgeseqError(f"bundle {root}: {what} is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise EdgeseqError(f"bundle {root}: {what} is not valid JSON ({exc})") from None
    if _depth(obj) > MAX_JSON_DEPTH:
        raise EdgeseqError(f"bundle {root}: {what} is nested deeper than {MAX_JSON_DEPTH} levels")
    return obj


_VALIDATOR = []
_FILE_NAME = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"  # as in the schema's $defs/file_name


def _validator():
    """The manifest schema's validator, built once (the schema ships beside this module)."""
    if not _VALIDATOR:
        import jsonschema

        schema = json.loads((Path(__file__).with_name("manifest.schema.json")).read_text())
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        _VALIDATOR.append(cls(schema))
    return _VALIDATOR[0]


def _short(value) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _schema_error(root: Path, manifest: dict) -> str | None:
    """One line for the most relevant schema violation, with the path into the manifest
    (jsonschema's own wording, cut short: it quotes the offending value, which may be large)."""
    import jsonschema

    try:
        errors = list(_validator().iter_errors(manifest))
    except RecursionError:
        return "nested too deeply"
    if not errors:
        return None
    err = jsonschema.exceptions.best_match(errors)
    where = ": ".join(str(p) for p in err.absolute_path) or "top level"
    if err.validator == "pattern" and err.validator_value == _FILE_NAME:
        return f"{where}: {_short(err.instance)} is not a plain file name inside the bundle " \
               f"(letters, digits, '.', '_', '-'; no '/' and no '..')"
    text = " ".join(err.message.split())
    return f"{where}: {text if len(text) <= 200 else text[:197] + '...'}"


def _consistent(root: Path, m: dict) -> None:
    """What a schema cannot say: names that must agree across sections, and labels against the
    model's outputs (two labels for a five-way readout would misname every prediction)."""
    files = m["files"]
    if m["model"]["weights"] not in files:
        raise EdgeseqError(f"bundle {root}: model.weights {m['model']['weights']!r} is not listed in files")
    rt = m.get("runtime")
    n = len(m["labels"])
    out = OUTPUT_ARRAYS.get(m["model"]["kind"])
    if n and out in m["model"]["arrays"]:
        shape = m["model"]["arrays"][out]["shape"]
        if not shape or shape[-1] != n:
            raise EdgeseqError(f"bundle {root}: {n} labels, but the model's {out} has shape {shape} "
                               f"({shape[-1] if shape else 0} outputs)")
    check = None if rt else SHAPE_CHECKS.get((m["task"], m["model"]["kind"]))  # an export keeps no weights
    if check:
        problem = check(m["model"]["params"], {k: v["shape"] for k, v in m["model"]["arrays"].items()})
        if problem:
            raise EdgeseqError(f"bundle {root}: {problem}")
    if rt is None:
        return
    for key in ("model", "step"):
        if key in rt and rt[key] not in files:
            raise EdgeseqError(f"bundle {root}: runtime.{key} {rt[key]!r} is not listed in files")
    for io in ("outputs", "step_outputs"):  # the model's outputs; <state>_out are its states
        for name, spec in rt.get(io, {}).items():
            if n and not name.endswith("_out") and spec["shape"][-1] != n:
                raise EdgeseqError(f"bundle {root}: {n} labels, but runtime output {name} has shape "
                                   f"{spec['shape']}")


def _ecg_esn_shapes(params: dict, shapes: dict) -> str | None:
    """An ECG ESN's arrays against its parameters: what numpy would otherwise trip on mid-batch."""
    need = ("W", "Win", "bias", "Wout", "bout")
    if any(k not in shapes for k in need):
        return f"an ESN needs the arrays {', '.join(need)}"
    W, Win, bias, Wout, bout = (shapes[k] for k in need)
    n = W[0] if len(W) == 2 else None
    rr = params.get("rr_inputs", [[3, 1.0], [4, 1.0], [5, 1.0], [6, 0.05]])  # the class's default
    inputs = 1 + len(rr or [])
    if n is None or W != [n, n] or Win != [n, inputs] or bias != [n] or len(Wout) != 2 or Wout[0] != 2 * n + 9 \
            or bout != Wout[1:] or params.get("units", n) != n:
        return (f"ESN arrays W {W}, Win {Win}, bias {bias}, Wout {Wout}, bout {bout} do not fit "
                f"units={params.get('units')} with {inputs} inputs per step")
    return None


#: (task, model kind) -> check of the declared array shapes against the parameters.
SHAPE_CHECKS = {("ecg", "esn"): _ecg_esn_shapes}


def _read(path, *, signed: bool = True) -> tuple[Path, bytes, dict]:
    root = Path(path)
    try:
        st = os.stat(root)
    except FileNotFoundError:
        raise EdgeseqError(f"bundle {root} does not exist") from None
    except OSError as exc:
        raise EdgeseqError(f"bundle {root}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise EdgeseqError(f"bundle {root} is not a directory (a bundle is a directory with {MANIFEST})")
    if not os.path.lexists(root / MANIFEST):
        raise EdgeseqError(f"bundle {root} has no {MANIFEST}")
    data = _read_bounded(root, MANIFEST, MAX_MANIFEST_BYTES)
    manifest = _parse(root, data)
    if not isinstance(manifest, dict):
        raise EdgeseqError(f"bundle {root}: {MANIFEST} is not a JSON object")
    if "format" in manifest and manifest["format"] != FORMAT:
        raise EdgeseqError(f"bundle {root}: format is {_short(manifest['format'])}, not {FORMAT!r}")
    version = manifest.get("format_version")
    if "format_version" in manifest and (version != FORMAT_VERSION or isinstance(version, bool)):
        raise EdgeseqError(f"bundle {root}: format version {_short(version)} is not "
                           f"supported by edgeseq {__version__} (reads version {FORMAT_VERSION})")
    problem = _schema_error(root, manifest)
    if problem:
        raise EdgeseqError(f"bundle {root}: {MANIFEST}: {problem}")
    _consistent(root, manifest)
    key = trusted_key() if signed else None
    if key is not None and _WRITTEN.get(str(root.resolve())) != hashlib.sha256(data).hexdigest():
        from .signing import verify

        verify(root, data, manifest, key, _read_signature(root))
    return root, data, manifest


def _read_unsigned(path) -> tuple[Path, bytes, dict]:
    """For ``edgeseq sign``: every check but the signature it is about to make."""
    return _read(path, signed=False)


def read_manifest(path) -> dict:
    """``manifest.json`` read within bounds, parsed strictly and checked against the schema (and,
    with a trusted key, its signature); files are not hashed here: see :func:`load_bundle`."""
    return _read(path)[2]


def _read_signature(root: Path) -> bytes | None:
    if not os.path.lexists(root / SIGNATURE):
        return None
    return _read_bounded(root, SIGNATURE, 64 << 10)


def verify_files(root: Path, manifest: dict) -> None:
    """The directory holds the manifest, an optional signature and exactly the plain files the
    manifest lists, each with its recorded size and sha256. An unlisted entry is refused rather
    than ignored: a loader (onnxruntime's external data, a future format) might otherwise open it."""
    files = manifest["files"]
    try:
        entries = sorted(os.listdir(root))
    except OSError as exc:
        raise EdgeseqError(f"bundle {root}: cannot list it: {exc.strerror}") from None
    for name in entries:
        if name not in files and name not in (MANIFEST, SIGNATURE):
            raise EdgeseqError(f"bundle {root}: {name} is not listed in {MANIFEST}; a bundle holds only "
                               f"the files its manifest hashes (remove {name})")
    if os.path.lexists(root / SIGNATURE):
        _read_signature(root)  # a plain, small file even when no key asks for it
    for name, meta in files.items():
        if Path(name).is_absolute() or ".." in Path(name).parts:  # also refused by the schema
            raise EdgeseqError(f"bundle {root}: file name {name!r} points outside the bundle")
        f, size = _open_plain(root, name, MAX_FILE_BYTES)
        with f:
            if size != meta["bytes"]:
                raise EdgeseqError(f"bundle {root}: {name} has {size} bytes, manifest says "
                                   f"{meta['bytes']} (altered or truncated file)")
            digest = _sha256(f)
        if digest != meta["sha256"]:
            raise EdgeseqError(f"bundle {root}: {name} does not match its sha256 in {MANIFEST} "
                               f"(altered file; expected {meta['sha256'][:12]}..., got {digest[:12]}...)")
        _VERIFIED[str((root / name).resolve())] = digest


#: sha256 of every bundle file verified in this process, by resolved path.
_VERIFIED: dict[str, str] = {}


def read_verified(path) -> bytes:
    """The bytes of a bundle file for a runtime to load, read once and checked against the digest
    :func:`verify_files` found, so a file swapped between the check and the load is refused (the
    runtime gets these bytes, never the path). A file this process never verified (a tool opening
    a model directly) is read bounded and plain, with no claim."""
    p = Path(path)
    data = _read_bounded(p.parent, p.name, MAX_FILE_BYTES)
    want = _VERIFIED.get(str(p.resolve()))
    if want is not None and hashlib.sha256(data).hexdigest() != want:
        raise EdgeseqError(f"bundle {p.parent}: {p.name} changed after its hash was verified; refusing to load it")
    return data


def verify_bundle(path) -> dict:
    """Everything :func:`load_bundle` checks (manifest, files, signature under a trusted key),
    without reading the arrays: the manifest."""
    root, _, manifest = _read(path)
    verify_files(root, manifest)
    return manifest


def _read_arrays(root: Path, name: str, want: dict) -> dict[str, np.ndarray]:
    """The arrays of the npz ``name``: exactly those in ``want`` (name -> shape, dtype), each
    sized from the zip directory and its .npy header before a byte is decompressed, and within
    ``MAX_ARRAY_BYTES`` together (a few MB of deflated zeros may claim gigabytes)."""
    out, budget = {}, MAX_ARRAY_BYTES
    f = io.BytesIO(read_verified(root / name))
    try:
        with f, zipfile.ZipFile(f) as z:
            infos = z.infolist()
            members = {i.filename[:-4]: i for i in infos if i.filename.endswith(".npy")}
            if len(members) != len(infos):
                raise EdgeseqError(f"bundle {root}: {name} holds files that are not .npy arrays")
            if set(members) != set(want):
                extra, missing = sorted(set(members) - set(want)), sorted(set(want) - set(members))
                raise EdgeseqError(f"bundle {root}: {name} does not hold the arrays {MANIFEST} names ("
                                   + "; ".join(([f"unnamed: {', '.join(extra)}"] if extra else [])
                                               + ([f"missing: {', '.join(missing)}"] if missing else [])) + ")")
            for key, info in members.items():
                if info.file_size > budget:
                    raise EdgeseqError(f"bundle {root}: array {key} in {name} unpacks to {info.file_size} bytes, "
                                       f"more than the {MAX_ARRAY_BYTES} a bundle's arrays may hold")
                with z.open(info) as m:
                    version = np.lib.format.read_magic(m)
                    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                        np.lib.format.read_array_header_2_0
                    shape, fortran, dtype = read_header(m)
                    if dtype.hasobject or list(shape) != want[key]["shape"] or dtype.str.lstrip("<>|=") != \
                            np.dtype(want[key]["dtype"]).str.lstrip("<>|="):
                        raise EdgeseqError(f"bundle {root}: array {key} in {name} is {dtype} of shape "
                                           f"{list(shape)}, {MANIFEST} says {want[key]['dtype']} of shape "
                                           f"{want[key]['shape']}")
                    count = math.prod(shape)
                    if m.tell() + count * dtype.itemsize != info.file_size:
                        raise EdgeseqError(f"bundle {root}: array {key} in {name} is not the size its header says")
                    arr = np.empty(count, dtype)
                    if count and m.readinto(memoryview(arr).cast("B")) != arr.nbytes:
                        raise EdgeseqError(f"bundle {root}: array {key} in {name} is truncated")
                budget -= info.file_size
                out[key] = arr.reshape(shape, order="F" if fortran else "C")
    except EdgeseqError:
        raise
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, NotImplementedError) as exc:
        raise EdgeseqError(f"bundle {root}: cannot read {name}: {exc}") from None
    return out


def load_bundle(path, *, task: str | None = None) -> Bundle:
    """Read a bundle after every check above; ``task`` refuses a bundle of another task."""
    root, _, manifest = _read(path)
    if task is not None and manifest["task"] != task:
        raise EdgeseqError(f"bundle {root} is a {manifest['task']!r} model, not {task!r}")
    verify_files(root, manifest)
    arrays = _read_arrays(root, manifest["model"]["weights"], manifest["model"]["arrays"])
    return Bundle(path=root, manifest=manifest, arrays=arrays)


# ---- trust policy ------------------------------------------------------------------------------

_TRUSTED: dict = {}
#: Bundles this process wrote (resolved path -> sha256 of the manifest written): as trustworthy as
#: the process itself, so ``export --trust`` can read back the unsigned bundle it just made. A
#: manifest changed since does not match and is checked like any other.
_WRITTEN: dict[str, str] = {}


def require_signature(public_key_path) -> None:
    """From now on, in this process and the edgeseq processes it starts, every bundle read must be
    signed by the key in ``public_key_path`` (the CLI's ``--trust``). Set once, process-wide, so
    that every command that loads a bundle honours it without a parameter through every layer."""
    from .signing import read_public_key

    path = Path(public_key_path).resolve()
    _TRUSTED.clear()
    _TRUSTED.update(path=str(path), key=read_public_key(path))
    os.environ[TRUST_ENV] = str(path)


def trusted_key() -> bytes | None:
    """The public key bundles must be signed with, or None when no key was required."""
    env = os.environ.get(TRUST_ENV)
    if env and _TRUSTED.get("path") != env:
        from .signing import read_public_key

        _TRUSTED.update(path=env, key=read_public_key(env))
    return _TRUSTED.get("key") if env or _TRUSTED else None
