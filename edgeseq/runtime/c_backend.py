"""A C bundle on the host: its ``model.c`` built once with the system C compiler into a shared
library (cached by the hash of the sources, the compiler and its flags) and called through ctypes.
Numpy, the standard library and a C compiler: nothing else on the device.

Decisions: the library is built from the bytes ``load_bundle`` verified, never from the path; a
build goes to a temporary name and is renamed into the cache, so two processes never load half a
file; calls are serialized per library (the generated code keeps its arena in static memory, as a
microcontroller would). A C bundle is native code: load only bundles you trust (``--trust``).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np

from ..errors import EdgeseqError

# -O3 and this machine's vector unit for the dense twin of sparse products (ES_DENSE): the
# integers, and so the outputs, are those of any other build
FLAGS = ["-std=c99", "-O3", "-ffp-contract=off", "-fPIC", "-shared", "-DES_DENSE"]
NATIVE = ["-march=native"]  # dropped where the compiler has no such option (some ARM gcc)
_LOCKS: dict = {}


def compiler() -> list[str]:
    """``$CC``, else the first of cc, gcc, clang on PATH; else a one-line error."""
    cc = os.environ.get("CC")
    if cc:
        return cc.split()
    for name in ("cc", "gcc", "clang"):
        if shutil.which(name):
            return [name]
    raise EdgeseqError("this C bundle needs a C compiler to build on first use: install one (e.g. apt install gcc) "
                       "or set CC")


def cache_root() -> Path:
    """edgeseq's cache (C libraries here, zig's compiles for ``profile --target``):
    EDGESEQ_CACHE_DIR, else XDG_CACHE_HOME/edgeseq, else ~/.cache/edgeseq; a temp dir if none of
    those is writable (a read-only home on some CI)."""
    base = os.environ.get("EDGESEQ_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "edgeseq")
    for cand in (Path(base), Path(tempfile.gettempdir()) / f"edgeseq-cache-{os.getuid()}"):
        try:
            cand.mkdir(parents=True, exist_ok=True)
            if os.access(cand, os.W_OK):
                return cand
        except OSError:
            continue
    raise EdgeseqError(f"no writable cache directory: set EDGESEQ_CACHE_DIR (tried {base})")


def cache_dir() -> Path:
    return cache_root() / "c"


def build(sources: dict, *, libm: bool) -> Path:
    """The shared library of ``sources`` (``{file name: bytes}``, ``model.c`` among them), built
    now or found in the cache."""
    cc = compiler()
    flags, link = FLAGS, (["-lm"] if libm else [])
    try:
        version = subprocess.run([*cc, "--version"], capture_output=True, text=True, timeout=30).stdout.splitlines()[:1]
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EdgeseqError(f"C compiler {' '.join(cc)} does not run: {exc}") from None
    h = hashlib.sha256(repr((sorted(sources.items()), cc, flags, link, version, _cpu())).encode()).hexdigest()[:24]
    lib = cache_dir() / h / "libmodel.so"
    if lib.exists():
        return lib
    lib.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=lib.parent) as work:
        for name, data in sources.items():
            (Path(work) / name).write_bytes(data)
        out = Path(work) / "libmodel.so"
        args = [*flags, "-o", str(out), str(Path(work) / "model.c"), *link]
        r = subprocess.run([*cc, *NATIVE, *args], capture_output=True, text=True, timeout=600)
        if r.returncode != 0 and "march" in r.stderr:
            r = subprocess.run([*cc, *args], capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            first = next((ln for ln in r.stderr.splitlines() if "error" in ln), r.stderr.strip()[:200])
            raise EdgeseqError(f"building the C bundle failed: {first}")
        os.replace(out, lib)
    return lib


def _cpu() -> str:
    """What -march=native compiles for: the CPU's model (a cache shared by machines keeps one
    library per model)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith(("model name", "CPU part"))),
                        os.uname().machine)
    except OSError:
        return os.uname().machine


class CBackend:
    """The bundle's generated library: ``run("model" | "step", feeds)`` as the other backends."""

    def __init__(self, root: Path, runtime: dict, *, threads: int = 1):
        from ..bundle import read_verified

        self._rt = rt = runtime
        header = rt["c"]["header"]
        sources = {"model.c": read_verified(root / rt["step"]), "model.h": read_verified(root / header)}
        path = build(sources, libm=rt.get("precision") != "int8")
        self._lib = ctypes.CDLL(str(path))
        self._lock = _LOCKS.setdefault(str(path), threading.Lock())
        self._sequence = rt["interface"] == "sequence"

    def _call(self, fn: str, lead: int, ins: list, outs: list) -> int:
        P = ctypes.POINTER(ctypes.c_float)
        args = [ctypes.c_int(lead)] + [a.ctypes.data_as(P) for a in ins + outs]
        with self._lock:
            return getattr(self._lib, fn)(*args)

    def run(self, which: str, feeds: dict) -> dict:
        rt = self._rt
        spec_in, spec_out = (rt["inputs"], rt["outputs"]) if which == "model" else (rt["step_inputs"], rt["step_outputs"])
        if which == "model" and self._sequence:
            spec_in = {**{"x": rt["inputs"]["x"]}, **{k: rt["step_inputs"][k] for k in rt["state"]}}
            spec_out = rt["step_outputs"]
        ins = [np.ascontiguousarray(feeds[k], np.float32) for k in spec_in]
        n = len(ins[0])
        if which == "model" and self._sequence:  # one stream: x [1, T, D], outputs y [1, T, O]
            T = ins[0].shape[1]
            outs = {k: np.zeros(v["shape"][1:] if k in {s + "_out" for s in rt["state"]} else [T, *v["shape"][1:]],
                                np.float32) for k, v in spec_out.items()}
            self._call("es_run", T, ins, list(outs.values()))
            return {k: v[None] for k, v in outs.items()}
        outs = {k: np.zeros([n if d == "B" else d for d in v["shape"]], np.float32) for k, v in spec_out.items()}
        self._call("es_window_batch" if which == "model" else "es_step_batch", n, ins, list(outs.values()))
        return outs
