"""The one artifact between host and device: a directory with ``manifest.json`` and open-format files.

Layout (format version 0)::

    BUNDLE/
      manifest.json   task, sample rate, lead, preprocessing, labels, model kind and
                      hyper-parameters, edgeseq version, and sha256 + size of every other file
      weights.npz     model arrays (numpy's zip of .npy files, read with allow_pickle=False)

Loading verifies every listed file against its hash before reading it and refuses anything
else: a bundle is never half-trusted. Device-side module: numpy and the standard library only.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import __version__
from .errors import EdgeseqError

MANIFEST = "manifest.json"
FORMAT = "edgeseq-bundle"
FORMAT_VERSION = 0
WEIGHTS = "weights.npz"
_REQUIRED = ("format", "format_version", "task", "sample_rate", "labels", "model", "files")


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


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _not_ours(out: Path) -> str | None:
    """Why the non-empty directory ``out`` may not be replaced, or None when it provably is a
    bundle edgeseq wrote: a manifest with our format key, and beside it only the plain files it
    lists. Anything more may be the user's (a project with its own manifest.json, notes added
    later), and replacing the directory would delete it."""
    try:
        m = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return f"no readable {MANIFEST}"
    if not isinstance(m, dict) or m.get("format") != FORMAT or not isinstance(m.get("files"), dict):
        return f"its {MANIFEST} is not an edgeseq bundle manifest"
    for p in sorted(out.iterdir()):
        if p.name != MANIFEST and p.name not in m["files"]:
            return f"{p.name} is not one of its files"
        if p.is_symlink() or not p.is_file():
            return f"{p.name} is not a plain file"
    return None


def check_bundle_target(out_dir) -> Path:
    """``out_dir`` when ``write_bundle`` may write there (absent, empty, or a bundle edgeseq wrote);
    one line otherwise. Called before training too, so a refused ``--out`` costs nothing."""
    out = Path(out_dir)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise EdgeseqError(f"bundle path {out} exists and is not a directory")
    if out.exists() and any(out.iterdir()):
        foreign = _not_ours(out)
        if foreign:
            raise EdgeseqError(f"refusing to replace {out}: it is not a bundle edgeseq wrote ({foreign}); "
                               "choose another --out or remove it yourself")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgeseqError(f"bundle path {out}: cannot create {out.parent}: "
                           f"{exc.strerror or type(exc).__name__}") from None
    if not os.access(out.parent, os.W_OK | os.X_OK):
        raise EdgeseqError(f"bundle path {out}: {out.parent} is not writable")
    return out


def write_bundle(out_dir, manifest: dict, arrays: dict[str, np.ndarray],
                 files: dict[str, Path] | None = None) -> Path:
    """Write ``arrays`` to ``weights.npz``, copy ``files`` (name in the bundle -> source path, e.g.
    an exported model) beside it, and write ``manifest`` completed with every file's hash.

    Files are written to a temporary sibling directory and moved into place, so an interrupted
    write never leaves a bundle whose manifest and weights disagree.
    """
    out = check_bundle_target(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
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
        (tmp / MANIFEST).write_text(json.dumps(full, indent=2, sort_keys=False) + "\n")
        if out.exists():  # checked above: a bundle edgeseq wrote and nothing else, safe to replace whole
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out


def read_manifest(path) -> dict:
    """Parse and sanity-check ``manifest.json`` (no hash check: see :func:`load_bundle`)."""
    root = Path(path)
    if not root.exists():
        raise EdgeseqError(f"bundle {root} does not exist")
    if not root.is_dir():
        raise EdgeseqError(f"bundle {root} is not a directory (a bundle is a directory with {MANIFEST})")
    mpath = root / MANIFEST
    if not mpath.exists():
        raise EdgeseqError(f"bundle {root} has no {MANIFEST}")
    try:
        manifest = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EdgeseqError(f"bundle {root}: {MANIFEST} is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise EdgeseqError(f"bundle {root}: {MANIFEST} is not a JSON object")
    missing = [k for k in _REQUIRED if k not in manifest]
    if missing:
        raise EdgeseqError(f"bundle {root}: {MANIFEST} lacks {', '.join(missing)}")
    if manifest["format"] != FORMAT:
        raise EdgeseqError(f"bundle {root}: format is {manifest['format']!r}, not {FORMAT!r}")
    if manifest["format_version"] != FORMAT_VERSION:
        raise EdgeseqError(f"bundle {root}: format version {manifest['format_version']} is not "
                           f"supported by edgeseq {__version__} (reads version {FORMAT_VERSION})")
    return manifest


def verify_files(root: Path, manifest: dict) -> None:
    """Every file the manifest lists exists with its recorded size and sha256."""
    files = manifest["files"]
    if not isinstance(files, dict) or not files:
        raise EdgeseqError(f"bundle {root}: {MANIFEST} lists no files")
    for name, meta in files.items():
        p = root / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise EdgeseqError(f"bundle {root}: file name {name!r} points outside the bundle")
        if not p.is_file():
            raise EdgeseqError(f"bundle {root}: {name} is missing")
        if p.stat().st_size != meta.get("bytes"):
            raise EdgeseqError(f"bundle {root}: {name} has {p.stat().st_size} bytes, manifest says "
                               f"{meta.get('bytes')} (altered or truncated file)")
        digest = sha256_file(p)
        if digest != meta.get("sha256"):
            raise EdgeseqError(f"bundle {root}: {name} does not match its sha256 in {MANIFEST} "
                               f"(altered file; expected {str(meta.get('sha256'))[:12]}..., "
                               f"got {digest[:12]}...)")


def load_bundle(path, *, task: str | None = None) -> Bundle:
    """Read a bundle after checking every file's hash; ``task`` refuses a bundle of another task."""
    root = Path(path)
    manifest = read_manifest(root)
    if task is not None and manifest["task"] != task:
        raise EdgeseqError(f"bundle {root} is a {manifest['task']!r} model, not {task!r}")
    verify_files(root, manifest)
    weights = manifest["model"].get("weights", WEIGHTS)
    try:
        with np.load(root / weights, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as exc:  # a hash-valid but unreadable file means a writer bug, still say where
        raise EdgeseqError(f"bundle {root}: cannot read {weights}: {exc}") from None
    for name, meta in manifest["model"].get("arrays", {}).items():
        if name not in arrays or list(arrays[name].shape) != meta["shape"]:
            raise EdgeseqError(f"bundle {root}: array {name} in {weights} does not match the manifest")
    return Bundle(path=root, manifest=manifest, arrays=arrays)
