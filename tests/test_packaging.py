"""The packages a board installs: ``python -m build`` makes a wheel and an sdist without warnings,
``twine check`` passes them, the wheel carries the package's data (the MIT-BIH excerpt with its
attribution, the manifest schema, the C sources) and nothing of the repository's tests or tools,
and installed into a fresh venv with only its base dependencies it runs the CLI and a bundle.

Built once, from a copy of the source tree (an in-tree build writes ``build/`` and ``*.egg-info``
beside other work), without isolation: the test extra holds setuptools, and an isolated build
installs it again each time (about 12 s against 3 s). The wheel is built from the sdist, as
``python -m build`` does, so the sdist is checked to hold what the wheel needs.

The install is a real ``pip install WHEEL`` into a venv without system site-packages, pip
resolving the wheel's own metadata offline (``--no-index``) against a wheelhouse of its base
dependencies repacked from this environment (``_wheelhouse``): a dependency missing from the
metadata fails here rather than on a board, in any checkout, with or without a network or a
package mirror (a file mirror works offline too, but takes twice as long here).
"""

import email.parser
import json
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "edgeseq" / "data" / "sample"
#: Build outputs and caches that an sdist must never pick up from a working tree.
_SKIP_TOP = {".git", ".venv", "build", "dist", ".pytest_cache", ".hypothesis"}
#: Lines of a clean build that are not ours to fix (PYTHONDONTWRITEBYTECODE makes setuptools say so).
_BENIGN = re.compile(r"warning: (build_py|install_lib): byte-compiling is disabled")
#: What the base install must not pull in (extras: training, export, serial, signing).
NOT_BASE = ["scipy", "wfdb", "reservoirpy", "torch", "onnx", "onnxruntime", "serial", "nacl", "matplotlib"]

pytest.importorskip("build")
pytest.importorskip("twine")


def _copy_tree(dst: Path) -> Path:
    def ignore(d, names):
        out = {n for n in names if n == "__pycache__" or n.endswith((".egg-info", ".bundle", ".pyc"))}
        return out | (_SKIP_TOP & set(names) if Path(d) == ROOT else set())

    shutil.copytree(ROOT, dst, ignore=ignore)
    return dst


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """(wheel, sdist, build log) built once from a copy of the tree."""
    tmp = tmp_path_factory.mktemp("pkg")
    src, out = _copy_tree(tmp / "src"), tmp / "dist"
    proc = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(src)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (wheel,), (sdist,) = out.glob("*.whl"), out.glob("*.tar.gz")
    return wheel, sdist, proc.stdout + proc.stderr


def test_build_is_clean_and_twine_passes(dist):
    wheel, sdist, log = dist
    warnings = [ln for ln in log.splitlines()
                if re.search(r"warn|deprecat|^!!", ln, re.I) and not _BENIGN.search(ln)]
    assert not warnings, "\n".join(warnings)
    proc = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", str(wheel), str(sdist)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.count("PASSED") == 2, proc.stdout + proc.stderr


def test_wheel_carries_the_data_and_no_tests(dist):
    wheel, sdist, _ = dist
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"edgeseq/data/sample/{p.name}" for p in SAMPLE.iterdir() if p.is_file()}
    assert {"edgeseq/data/sample/ATTRIBUTION.md", "edgeseq/data/sample/208.dat"} <= shipped
    assert shipped <= names, sorted(shipped - names)
    csrc = {f"edgeseq/csrc/{p.name}" for p in (ROOT / "edgeseq" / "csrc").iterdir() if p.suffix in (".c", ".h")}
    assert csrc and csrc <= names, sorted(csrc - names)
    assert "edgeseq/manifest.schema.json" in names
    assert {f"edgeseq/{p.relative_to(ROOT / 'edgeseq')}" for p in (ROOT / "edgeseq").rglob("*.py")
            if "__pycache__" not in p.parts} <= names
    tops = {n.split("/")[0] for n in names}
    assert tops == {"edgeseq", wheel.name.split("-py3")[0] + ".dist-info"}, tops  # no tests/, tools/, ...
    assert not [n for n in names if n.endswith((".pyc", ".o")) or "__pycache__" in n or "conftest" in n]
    meta = zipfile.ZipFile(wheel).read(f"{wheel.name.split('-py3')[0]}.dist-info/METADATA").decode()
    assert "License-Expression: MIT AND ODC-By-1.0" in meta
    # The sdist is the source release: the wheel's inputs, and the tests with what they read.
    with tarfile.open(sdist) as t:
        members = {m.split("/", 1)[1] for m in t.getnames() if "/" in m}
    assert {"pyproject.toml", "README.md", "edgeseq/data/sample/208.dat", "tests/conftest.py",
            "firmware_bridge/src/edgeseq_frame.c", "tools/bench/report.py"} <= members
    assert not [m for m in members if "__pycache__" in m or m.startswith("firmware_bridge/build")]


SCRIPT = r"""
import json, sys
import numpy as np
import edgeseq.runtime
from edgeseq.cli import SAMPLE_DIR
from edgeseq.bundle import read_manifest
from edgeseq.preprocess.ecg import EcgPreprocessing
from edgeseq.preprocess.qrs import QRSDetector

m = read_manifest(sys.argv[1])
prep, det = EcgPreprocessing.from_config(m["preprocessing"]), QRSDetector.from_config(m["detector"])
t = np.arange(360 * 20) / 360.0
ecg = np.exp(-0.5 * (((t % 0.8) - 0.4) / 0.01) ** 2) + 0.01 * np.random.default_rng(0).normal(size=t.size)
w, rr, idx = prep.beats(ecg, np.concatenate([det.process(ecg), det.flush()]))
z = edgeseq.runtime.load(sys.argv[1], task="ecg").logits(w.astype(np.float32), rr.astype(np.float32))
np.save(sys.argv[2], z)
print(json.dumps({"modules": sorted(sys.modules), "sample": sorted(p.name for p in SAMPLE_DIR.iterdir()),
                  "where": edgeseq.runtime.__file__}))
"""


def _requires(metadata_text: str) -> list:
    from packaging.requirements import Requirement

    reqs = [Requirement(r) for r in email.parser.Parser().parsestr(metadata_text).get_all("Requires-Dist") or []]
    return [r for r in reqs if r.marker is None or r.marker.evaluate({"extra": ""})]  # no extras


def _wheelhouse(wheel: Path, out: Path) -> Path:
    """Wheels of what ``wheel`` requires (no extras), and of what they require, repacked from
    this environment's installed copies (their RECORD names every file): a requirement missing from
    the wheel's metadata is then missing from the install, and one too many is installed and seen."""
    from importlib import metadata

    z = zipfile.ZipFile(wheel)
    todo, seen = _requires(z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()), {}
    while todo:
        d = metadata.distribution(todo.pop().name)
        if d.metadata["Name"].lower() not in seen:
            seen[d.metadata["Name"].lower()] = d
            todo += _requires(d.read_text("METADATA"))
    out.mkdir()
    for d in seen.values():
        tag = next(ln[5:] for ln in d.read_text("WHEEL").splitlines() if ln.startswith("Tag: "))
        with zipfile.ZipFile(out / f"{d.metadata['Name'].replace('-', '_')}-{d.version}-{tag}.whl", "w") as w:
            for f in d.files:
                if f.parts[0] != ".." and "__pycache__" not in f.parts:  # not scripts (pip makes them), not caches
                    w.write(f.locate(), str(f))
    return out


def test_wheel_installs_alone_and_runs(dist, tmp_path, small_bundle):
    """A venv with no system site-packages, ``pip install WHEEL`` (numpy, jsonschema and theirs):
    the console script answers --help, and the device side loads a bundle on the numpy
    interpreter and gives the logits this checkout gives, with nothing of the extras imported."""
    wheel, _, _ = dist
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    py = venv / "bin" / "python"
    # This interpreter's pip installs into the new venv (--python): no ensurepip (5 s) per run.
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-index",
                           "--find-links", str(_wheelhouse(wheel, tmp_path / "wheelhouse")), str(wheel)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "check"], capture_output=True,
                          timeout=60).returncode == 0
    listed = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "list", "--format", "json"],
                            capture_output=True, text=True, timeout=60, check=True)
    installed = {d["name"].lower().replace("_", "-") for d in json.loads(listed.stdout)}
    assert {"edgeseq", "numpy", "jsonschema"} <= installed
    assert not installed & {"scipy", "onnxruntime", "pyserial", "pynacl", "torch", "wfdb"}, installed

    helped = subprocess.run([str(venv / "bin" / "edgeseq"), "--help"], capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "usage: edgeseq" in helped.stdout, helped.stderr
    assert subprocess.run([str(py), "-m", "edgeseq", "--version"], capture_output=True, text=True,
                          timeout=60).returncode == 0

    def logits(python, name):
        out = tmp_path / name
        run = subprocess.run([str(python), "-c", SCRIPT, str(small_bundle), str(out)], capture_output=True,
                             text=True, timeout=120, cwd=tmp_path)  # not the checkout's directory
        assert run.returncode == 0, run.stderr[-3000:]
        return json.loads(run.stdout), np.load(out)

    res, got = logits(py, "wheel.npy")
    assert res["where"].startswith(str(venv)), res["where"]  # the installed package, not this checkout
    assert res["sample"] == sorted(p.name for p in SAMPLE.iterdir() if p.is_file())
    assert not {m.split(".")[0] for m in res["modules"]} & set(NOT_BASE)
    _, want = logits(sys.executable, "checkout.npy")
    assert got.shape == want.shape and len(got) > 10
    np.testing.assert_array_equal(got, want)
