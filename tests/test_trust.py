"""Bundles are untrusted input (issue 13, defect 5): malformed manifests, hash-check bypasses,
resource exhaustion and crashing interpreters all end in one line (exit status 2), and signed
bundles are refused under --trust once altered, unsigned or signed by another key."""

import hashlib
import json
import os
import random
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edgeseq import bundle as B
from edgeseq.bundle import MANIFEST, SIGNATURE, WEIGHTS, load_bundle, require_signature
from edgeseq.errors import EdgeseqError

PY = [sys.executable, "-m", "edgeseq"]


# ---- helpers -------------------------------------------------------------------------------------

def clone(src, dst) -> Path:
    shutil.copytree(src, dst)
    (Path(dst) / SIGNATURE).unlink(missing_ok=True)
    return Path(dst)


def manifest(b) -> dict:
    return json.loads((Path(b) / MANIFEST).read_text())


def put_manifest(b, m) -> None:
    (Path(b) / MANIFEST).write_text(json.dumps(m, indent=1))


def rehash(b, *names) -> None:
    """What an attacker does after changing a file: record its new hash, so only the signature
    (or the content checks) can catch it."""
    m = manifest(b)
    for name in names:
        data = (Path(b) / name).read_bytes()
        m["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    put_manifest(b, m)


def cli(*args, timeout=120, env=None):
    return subprocess.run([*PY, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def one_line(r, pattern=None):
    import re

    assert r.returncode == 2, (r.returncode, r.stdout[-500:], r.stderr[-2000:])
    # serve announces its connection on stderr first; after that, the one error line and nothing else
    lines = [line for line in r.stderr.strip().splitlines() if not line.startswith("serve: connected to ")]
    assert len(lines) == 1 and lines[0].startswith("edgeseq: error: "), r.stderr[-2000:]
    if pattern:
        assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def exported(small_bundle, tmp_path_factory):
    from edgeseq.export import export

    d = tmp_path_factory.mktemp("trust")
    return {fmt: export(small_bundle, d / f"f.{fmt}", fmt=fmt) for fmt in ("onnx", "tflite")}


@pytest.fixture
def no_trust(monkeypatch):
    """Leave no trust policy behind for the next test."""
    monkeypatch.delenv(B.TRUST_ENV, raising=False)
    B._TRUSTED.clear()
    yield
    B._TRUSTED.clear()
    os.environ.pop(B.TRUST_ENV, None)


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    for name in ("k", "other"):
        r = cli("keygen", "--out", d / name)
        assert r.returncode == 0, r.stderr
    return d


# ---- malformed manifests: one line each, never a traceback --------------------------------------

def _del(path):
    def f(m):
        *head, last = path
        for k in head:
            m = m[k]
        del m[last]
    return f


def _set(path, value):
    def f(m):
        *head, last = path
        for k in head:
            m = m[k]
        m[last] = value
    return f


MALFORMED = {
    "files a string": (_set(["files"], "weights.npz"), r"files: 'weights.npz' is not of type 'object'"),
    "model a string": (_set(["model"], "esn"), r"model: 'esn' is not of type 'object'"),
    "labels a number": (_set(["labels"], 5), r"labels: 5 is not of type 'array'"),
    "two labels for five outputs": (_set(["labels"], ["N", "S"]), r"2 labels, but the model's bout has shape \[5\]"),
    "seven labels for five outputs": (_set(["labels"], list("NSVFQXY")), r"7 labels, but the model's bout"),
    "no preprocessing": (_del(["preprocessing"]), r"'preprocessing' is a required property"),
    "no detector": (_del(["detector"]), r"'detector' is a required property"),
    "no params": (_del(["model", "params"]), r"model: 'params' is a required property"),
    "decimate 0": (_set(["preprocessing", "decimate"], 0), r"preprocessing: decimate: 0 is less than the minimum"),
    "pre_s 1e9": (_set(["preprocessing", "pre_s"], 1e9), r"pre_s: 1000000000.0 is greater than the maximum"),
    "detector fs negative": (_set(["detector", "fs"], -360), r"detector: fs: -360 is less than or equal to"),
    "sos row of five": (_set(["detector", "sos"], [[1, 0, 0, 1, 0]]), r"detector: sos: 0: .* is too short"),
    "duplicate labels": (_set(["labels"], ["N", "N", "V", "F", "Q"]), r"labels: .* non-unique"),
    "unknown task": (_set(["task"], "weather"), r"task: 'weather' is not one of"),
    "format version 7": (_set(["format_version"], 7), r"format version 7 is not supported"),
    "sha256 missing": (_del(["files", WEIGHTS, "sha256"]), r"files: weights.npz: 'sha256' is a required property"),
    "weights outside": (_set(["model", "weights"], "../weights.npz"), r"not a plain file name inside the bundle"),
    "weights absolute": (_set(["model", "weights"], "/etc/passwd"), r"not a plain file name inside the bundle"),
    "array shape not the params'": (_set(["model", "arrays", "W", "shape"], [61, 60]),
                                    r"ESN arrays W \[61, 60\], .* do not fit units=60"),
    "array dtype not the file's": (_set(["model", "arrays", "W", "dtype"], "float64"),
                                   r"array W in weights.npz is float32 of shape \[60, 60\], manifest.json says float64"),
    "an ESN array missing": (_del(["model", "arrays", "bias"]), r"an ESN needs the arrays W, Win, bias, Wout, bout"),
    "sample rate a string": (_set(["sample_rate"], "360"), r"sample_rate: '360' is not of type 'number'"),
    "rr_inputs not fitting Win": (_set(["model", "params", "rr_inputs"], [[3, 1.0]]),
                                  r"ESN arrays .* do not fit units=60 with 2 inputs per step"),
    "ESN lr a string": (_set(["model", "params", "lr"], "fast"), r"model: params: lr: 'fast' is not of type 'number'"),
    "unknown preprocessing key": (_set(["preprocessing", "gain"], 2), r"Additional properties are not allowed"),
}

RAW = {
    "NaN": (lambda t: t.replace('"sample_rate": 360.0', '"sample_rate": NaN', 1), r"NaN is not a JSON number"),
    "Infinity": (lambda t: t.replace('"ridge": 0.02', '"ridge": Infinity', 1), r"Infinity is not a JSON number"),
    "1e400": (lambda t: t.replace('"ridge": 0.02', '"ridge": 1e400', 1), r"1e400 overflows a float"),
    "100k-deep nesting": (lambda t: t.replace('"training": {', '"training": {"x": ' + "[" * 100000 + "]" * 100000
                                              + ", ", 1), r"nested too deeply|nested deeper"),
    "40-deep nesting": (lambda t: t.replace('"training": {', '"training": {"x": ' + "[" * 40 + "]" * 40 + ", ", 1),
                        r"nested deeper than 32"),
    "a JSON list": (lambda t: "[1, 2]", r"is not a JSON object"),
    "not UTF-8": (lambda t: "\udcff".encode("utf-8", "surrogateescape").decode("latin-1") + t,
                  r"not valid JSON"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_manifest_is_one_line(small_bundle, tmp_path, case):
    fn, msg = MALFORMED[case]
    b = clone(small_bundle, tmp_path / "b")
    m = manifest(b)
    fn(m)
    put_manifest(b, m)
    with pytest.raises(EdgeseqError, match=msg) as e:
        load_bundle(b)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("case", sorted(RAW))
def test_malformed_manifest_text_is_one_line(small_bundle, tmp_path, case):
    fn, msg = RAW[case]
    b = clone(small_bundle, tmp_path / "b")
    text = fn((b / MANIFEST).read_text().replace("\n", "").replace("  ", " ").replace("  ", " "))
    assert text != (b / MANIFEST).read_text()
    (b / MANIFEST).write_bytes(text.encode("latin-1") if case == "not UTF-8" else text.encode())
    with pytest.raises(EdgeseqError, match=msg) as e:
        load_bundle(b)
    assert "\n" not in str(e.value)


def test_manifest_is_a_directory(small_bundle, tmp_path):
    b = clone(small_bundle, tmp_path / "b")
    (b / MANIFEST).unlink()
    (b / MANIFEST).mkdir()
    with pytest.raises(EdgeseqError, match="manifest.json is a directory"):
        load_bundle(b)


@pytest.mark.parametrize("kind", ["onnx", "tflite"])
def test_runtime_section_without_inputs(exported, tmp_path, kind):
    from edgeseq import runtime

    b = clone(exported[kind], tmp_path / "b")
    m = manifest(b)
    del m["runtime"]["inputs"]
    put_manifest(b, m)
    with pytest.raises(EdgeseqError, match="runtime: 'inputs' is a required property"):
        runtime.load(b)


EXPORTED_MALFORMED = {
    "inputs renamed": (lambda rt: rt["inputs"].update(x=rt["inputs"].pop("window")),
                       r"runtime: inputs: 'window' is a required property"),
    "a third output": (lambda rt: rt["outputs"].update(extra={"shape": ["B", 5], "dtype": "float32"}),
                       r"runtime: outputs: .* has too many properties"),
    "step without rr": (lambda rt: rt["step_inputs"].pop("rr"), r"runtime: step_inputs: 'rr' is a required property"),
    "a state the step does not take": (lambda rt: rt["state"].append("h"), r"the step has no input 'h', output 'h_out'"),
    "a state the step does not give back": (lambda rt: rt["step_outputs"].pop("acc_out"),
                                            r"the step has no output 'acc_out'"),
    "a held input the step does not take": (lambda rt: rt["held"].append("u"), r"the step has no input 'u'"),
    "rank-3 window": (lambda rt: rt["inputs"]["window"].update(shape=["B", 126, 1]),
                      r"runtime: inputs: window: shape: .* is too long"),
    "model outside": (lambda rt: rt.update(model="../model.onnx"), r"not a plain file name inside the bundle"),
}


@pytest.mark.parametrize("case", sorted(EXPORTED_MALFORMED))
def test_malformed_runtime_section_is_one_line(exported, tmp_path, case):
    from edgeseq import runtime

    fn, msg = EXPORTED_MALFORMED[case]
    b = clone(exported["onnx"], tmp_path / "b")
    m = manifest(b)
    fn(m["runtime"])
    put_manifest(b, m)
    with pytest.raises(EdgeseqError, match=msg) as e:
        runtime.load(b)
    assert "\n" not in str(e.value)


def test_malformed_manifest_through_the_cli(small_bundle, tmp_path, sample):
    b = clone(small_bundle, tmp_path / "b")
    m = manifest(b)
    m["preprocessing"]["decimate"] = 0
    put_manifest(b, m)
    one_line(cli("evaluate", b, "--data", sample, "--records", "208", "--quiet"), "decimate: 0 is less than")


# ---- the hash check cannot be bypassed ------------------------------------------------------------

def test_weights_naming_an_unlisted_file_is_refused(small_bundle, tmp_path):
    b = clone(small_bundle, tmp_path / "b")
    np.savez(b / "other.npz", W=np.zeros((60, 60), np.float32))
    m = manifest(b)
    m["model"]["weights"] = "other.npz"
    put_manifest(b, m)
    with pytest.raises(EdgeseqError, match="model.weights 'other.npz' is not listed in files"):
        load_bundle(b)


def test_an_unlisted_file_in_the_bundle_is_refused(small_bundle, tmp_path):
    b = clone(small_bundle, tmp_path / "b")
    (b / "model.onnx.data").write_bytes(b"\0" * 64)
    with pytest.raises(EdgeseqError, match="model.onnx.data is not listed in manifest.json"):
        load_bundle(b)


def test_a_symlink_inside_the_bundle_is_refused(small_bundle, tmp_path):
    b = clone(small_bundle, tmp_path / "b")
    real = tmp_path / "elsewhere.npz"
    (b / WEIGHTS).rename(real)
    (b / WEIGHTS).symlink_to(real)
    with pytest.raises(EdgeseqError, match="weights.npz is a symbolic link"):
        load_bundle(b)


def test_extra_arrays_in_the_npz_are_refused(small_bundle, tmp_path):
    b = clone(small_bundle, tmp_path / "b")
    with np.load(b / WEIGHTS) as z:
        arrays = {k: z[k] for k in z.files}
    np.savez(b / WEIGHTS, **arrays, evil=np.ones(3, np.float32))
    rehash(b, WEIGHTS)
    with pytest.raises(EdgeseqError, match=r"does not hold the arrays manifest.json names \(unnamed: evil\)"):
        load_bundle(b)


def _onnx_with_external_data(path: Path, location: str) -> None:
    import onnx
    from onnx import TensorProto, helper

    t = onnx.TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1, 5], data_location=TensorProto.EXTERNAL)
    e = t.external_data.add()
    e.key, e.value = "location", location
    g = helper.make_graph(
        [helper.make_node("ReduceSum", ["window"], ["s"], keepdims=1),
         helper.make_node("ReduceSum", ["rr"], ["r"], keepdims=1),
         helper.make_node("Add", ["s", "r"], ["sr"]), helper.make_node("Mul", ["sr", "w"], ["logits"])],
        "g", [helper.make_tensor_value_info("window", TensorProto.FLOAT, ["B", 126]),
              helper.make_tensor_value_info("rr", TensorProto.FLOAT, ["B", 9])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["B", 5])], [t])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    path.write_bytes(m.SerializeToString())


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/hostname", "weights.npz"])
def test_onnx_external_data_is_refused(exported, tmp_path, location):
    from edgeseq import runtime

    pytest.importorskip("onnx")
    b = clone(exported["onnx"], tmp_path / "b")
    (tmp_path / "secret.bin").write_bytes(np.ones(5, np.float32).tobytes())
    _onnx_with_external_data(b / "model.onnx", location)
    rehash(b, "model.onnx")
    with pytest.raises(EdgeseqError, match="keeps tensors in external data files"):
        runtime.load(b)


@pytest.mark.parametrize("kind", ["onnx", "tflite"])
def test_a_model_whose_outputs_disagree_with_the_labels_is_refused(exported, tmp_path, kind):
    """The model files give 5 logits; a manifest edited to say 7 labels (and 7 outputs) is refused."""
    from edgeseq import runtime

    b = clone(exported[kind], tmp_path / "b")
    m = manifest(b)
    m["runtime"]["outputs"]["logits"]["shape"] = ["B", 7]
    m["labels"] = list("NSVFQXY")
    put_manifest(b, m)
    with pytest.raises(EdgeseqError, match=r"7 labels, but runtime output logits has shape \['B', 5\]"):
        runtime.load(b)  # the step's outputs still say 5: refused before any model is opened
    # the consistent lie: manifest edited everywhere but the model files
    m["runtime"]["step_outputs"]["logits"]["shape"] = ["B", 7]
    put_manifest(b, m)
    with pytest.raises(EdgeseqError, match=r"the model's outputs are \{logits: float32\[None, 5\]\}, the manifest "
                                           r"declares \{logits: float32\[B, 7\]\}"):
        runtime.load(b)
    b2 = clone(exported[kind], tmp_path / "b2")
    m = manifest(b2)
    m["runtime"]["inputs"]["rr"]["shape"] = ["B", 8]
    put_manifest(b2, m)
    with pytest.raises(EdgeseqError, match=r"the model's inputs are .*rr: float32\[None, 9\].* the manifest declares "
                                           r".*rr: float32\[B, 8\]"):
        runtime.load(b2)


# ---- resources -----------------------------------------------------------------------------------

def test_a_deflated_giant_array_is_refused_before_decompressing(small_bundle, tmp_path, monkeypatch):
    """A few hundred kB of deflated zeros claiming more than the bundle may hold: refused from the
    zip directory alone (the bound is lowered here so the test stays small; 1 GiB by default)."""
    monkeypatch.setattr(B, "MAX_ARRAY_BYTES", 64 << 20)
    b = clone(small_bundle, tmp_path / "b")
    with np.load(b / WEIGHTS) as z:
        arrays = {k: z[k] for k in z.files}
    n = 1 << 26  # 256 MiB of float32
    with zipfile.ZipFile(b / WEIGHTS, "w", zipfile.ZIP_DEFLATED) as z:
        for k, v in arrays.items():
            with z.open(k + ".npy", "w") as f:
                np.lib.format.write_array(f, v)
        with z.open("huge.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (n,)})
            chunk = bytes(1 << 20)
            for _ in range(n * 4 // len(chunk)):
                f.write(chunk)
    assert (b / WEIGHTS).stat().st_size < 4 << 20
    m = manifest(b)
    m["model"]["arrays"]["huge"] = {"shape": [n], "dtype": "float32"}
    put_manifest(b, m)
    rehash(b, WEIGHTS)
    with pytest.raises(EdgeseqError, match=r"array huge in weights.npz unpacks to 268435\d+ bytes, more than"):
        load_bundle(b)


def test_an_oversized_manifest_is_refused(small_bundle, tmp_path):
    b = clone(small_bundle, tmp_path / "b")
    m = manifest(b)
    m["training"]["padding"] = "x" * (B.MAX_MANIFEST_BYTES + 1)
    put_manifest(b, m)
    with pytest.raises(EdgeseqError, match="manifest.json has .* bytes, more than"):
        load_bundle(b)


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_a_manifest_that_would_hang_is_refused(small_bundle, tmp_path, sample, kind):
    b = clone(small_bundle, tmp_path / "b")
    (b / MANIFEST).unlink()
    if kind == "fifo":
        os.mkfifo(b / MANIFEST)
    else:
        (b / MANIFEST).symlink_to("/dev/zero")
    r = cli("evaluate", b, "--data", sample, "--records", "208", "--quiet", timeout=60)
    one_line(r, "manifest.json is a FIFO" if kind == "fifo" else "manifest.json is a symbolic link")


def test_write_bundle_over_a_fifo_manifest_does_not_hang(small_bundle, tmp_path):
    """Defect 1's guard reads the old manifest before replacing a directory: it reads within bounds too."""
    out = tmp_path / "out"
    out.mkdir()
    os.mkfifo(out / MANIFEST)
    r = subprocess.run([sys.executable, "-c", "import sys; from edgeseq.export import export; "
                        "export(sys.argv[1], sys.argv[2], fmt='onnx')", str(small_bundle), str(out)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "refusing to replace" in r.stderr and "no readable manifest.json" in r.stderr


def _looping_onnx(path: Path) -> None:
    """window [B, 126], rr [B, 9] -> logits [B, 5], through a Loop whose condition stays true."""
    from onnx import TensorProto, helper

    body = helper.make_graph(
        [helper.make_node("Identity", ["c_in"], ["c_out"]), helper.make_node("Identity", ["v_in"], ["v_out"])],
        "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                 helper.make_tensor_value_info("c_in", TensorProto.BOOL, []),
                 helper.make_tensor_value_info("v_in", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.FLOAT, None)])
    g = helper.make_graph(
        [helper.make_node("Constant", [], ["cond"], value=helper.make_tensor("t", TensorProto.BOOL, [], [True])),
         helper.make_node("Loop", ["", "cond", "window"], ["v"], body=body),
         helper.make_node("Constant", [], ["w"], value=helper.make_tensor("z", TensorProto.FLOAT, [126, 5],
                                                                           [0.0] * 630)),
         helper.make_node("MatMul", ["v", "w"], ["logits"])],
        "g", [helper.make_tensor_value_info("window", TensorProto.FLOAT, ["B", 126]),
              helper.make_tensor_value_info("rr", TensorProto.FLOAT, ["B", 9])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["B", 5])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    path.write_bytes(m.SerializeToString())


def _raw_stream(path: Path, sample, seconds: int = 30) -> Path:
    from edgeseq.bridge import protocol as P
    from edgeseq.bridge.emulator import load_source

    src = load_source(f"mitdb:{sample}/208")
    x = src.counts[: seconds * 360]
    out = bytearray(P.encode_frame(P.Frame(P.INFO, 0, 0, 1, 1, P.info_payload("dev", 360.0, src.scale, src.offset, "mV"))))
    for k, i in enumerate(range(0, len(x), 10)):
        out += P.encode_frame(P.Frame(P.SAMPLES, 1 + k, 0, 1, 1, P.samples_payload(i, x[i:i + 10], 1)))
    path.write_bytes(bytes(out))
    return path


def test_an_onnx_loop_that_never_ends_does_not_hang_serve(exported, tmp_path, sample):
    pytest.importorskip("onnx")
    b = clone(exported["onnx"], tmp_path / "b")
    _looping_onnx(b / "model.onnx")
    rehash(b, "model.onnx")
    raw = _raw_stream(tmp_path / "s.raw", sample)
    r = cli("serve", "--port", raw, "--bundle", b, "--quiet", timeout=120, env={"EDGESEQ_RUN_TIMEOUT_S": "2"})
    one_line(r, r"model.onnx: one run took longer than 2 s and was stopped")


def _u(b, o, n):
    return int.from_bytes(b[o:o + n], "little", signed=n == 4 and False)


def _field(b, table, index):
    """Absolute offset of field ``index`` of the flatbuffer table at ``table``, or None."""
    vt = table - int.from_bytes(b[table:table + 4], "little", signed=True)
    slot = 4 + 2 * index
    if slot + 2 > _u(b, vt, 2):
        return None
    off = _u(b, vt + slot, 2)
    return table + off if off else None


def _stuck_while(data: bytes) -> bytes:
    """The int8 WHILE model with its loop step ``i + 1`` turned into ``i + 0``: the loop never ends.
    (The int32 constant 1 is the only 4-byte buffer holding 1 in that file.)"""
    b = bytearray(data)
    f = _field(b, _u(b, 0, 4), 4)  # Model.buffers
    vec = f + _u(b, f, 4)
    hits = []
    for k in range(_u(b, vec, 4)):
        e = vec + 4 + 4 * k
        d = _field(b, e + _u(b, e, 4), 0)  # Buffer.data
        if d is not None:
            dv = d + _u(b, d, 4)
            if _u(b, dv, 4) == 4 and bytes(b[dv + 4:dv + 8]) == (1).to_bytes(4, "little"):
                hits.append(dv + 4)
    assert len(hits) == 1, hits
    b[hits[0]:hits[0] + 4] = bytes(4)
    return bytes(b)


def test_a_tflite_loop_that_never_ends_does_not_hang_serve(small_bundle, tmp_path, sample):
    """A TFLite invoke cannot be interrupted, and the int8 exporter writes WHILE loops itself, so
    the CLI ends with one line once a run exceeds its bound (EDGESEQ_RUN_TIMEOUT_S)."""
    from edgeseq.export import export

    pytest.importorskip("ai_edge_litert")
    b = export(small_bundle, tmp_path / "q.tflite", fmt="tflite", int8=True)  # the ESN's ranges are fixed
    assert manifest(b)["runtime"]["graph_form"] == "while"
    (b / "model.tflite").write_bytes(_stuck_while((b / "model.tflite").read_bytes()))
    rehash(b, "model.tflite")
    raw = _raw_stream(tmp_path / "s.raw", sample)
    r = cli("serve", "--port", raw, "--bundle", b, "--quiet", timeout=120, env={"EDGESEQ_RUN_TIMEOUT_S": "2"})
    one_line(r, r"model.tflite: one run took longer than 2 s; a TFLite run cannot be stopped")


def test_tflm_crash_on_a_damaged_tflite_is_one_line(exported, tmp_path):
    """A .tflite damaged so that tflite-micro dies by a signal (found by seeded scribbling; the hash
    is recomputed, as a crafted bundle would have it): profile reports one line, exit status 2."""
    pytest.importorskip("tflite_micro")
    from edgeseq.profile.tflm import _PROBE

    src = (exported["tflite"] / "step.tflite").read_bytes()
    bad = None
    for seed in range(100):  # the float step file of the 60-unit ESN first crashes at seed 42
        r = random.Random(seed)
        d = bytearray(src)
        for _ in range(20):
            d[r.randrange(8, len(d))] = r.randrange(256)
        (tmp_path / "try.tflite").write_bytes(bytes(d))
        p = subprocess.run([sys.executable, "-c", _PROBE, str(tmp_path / "try.tflite"), str(8 << 20)],
                           capture_output=True, timeout=60)
        if p.returncode < 0:
            bad = bytes(d)
            break
    if bad is None:
        pytest.skip("no seeded damage crashed tflite-micro here")
    b = clone(exported["tflite"], tmp_path / "b")
    (b / "step.tflite").write_bytes(bad)
    rehash(b, "step.tflite")
    r = cli("profile", b, "--runtime", "tflm", "--n", "10", timeout=300)
    one_line(r, r"tflite-micro crashed \(SIG[A-Z]+\) running")


# ---- signing --------------------------------------------------------------------------------------

def test_keygen_writes_a_private_key_and_refuses_to_overwrite(keys, tmp_path):
    assert stat.S_IMODE(os.stat(keys / "k").st_mode) == 0o600
    assert (keys / "k.pub").read_text().startswith("edgeseq-ed25519-public ")
    before = (keys / "k").read_bytes()
    one_line(cli("keygen", "--out", keys / "k"), "exists: refusing to overwrite a key")
    assert (keys / "k").read_bytes() == before
    (tmp_path / "lonely.pub").write_text("mine")
    one_line(cli("keygen", "--out", tmp_path / "lonely"), "lonely.pub exists")
    assert not (tmp_path / "lonely").exists()


@pytest.fixture
def signed(exported, keys, tmp_path):
    b = clone(exported["onnx"], tmp_path / "signed")
    r = cli("sign", b, "--key", keys / "k")
    assert r.returncode == 0, r.stderr
    return b


def test_signed_bundle_is_accepted_and_unsigned_refused(signed, exported, keys, tmp_path, no_trust):
    from edgeseq import runtime

    require_signature(keys / "k.pub")
    assert runtime.load(signed).labels == ["N", "S", "V", "F", "Q"]
    with pytest.raises(EdgeseqError, match="is not signed, and --trust accepts only bundles signed by key"):
        runtime.load(clone(exported["onnx"], tmp_path / "unsigned"))


def test_a_bundle_this_process_wrote_is_trusted_until_changed(exported, keys, no_trust):
    """export --trust reads back the unsigned bundle it has just written; a changed manifest is not exempt."""
    from edgeseq import runtime

    require_signature(keys / "k.pub")
    assert runtime.load(exported["onnx"]).labels == ["N", "S", "V", "F", "Q"]
    m = manifest(exported["onnx"])
    m["labels"] = ["S", "N", "V", "F", "Q"]
    original = (exported["onnx"] / MANIFEST).read_text()
    put_manifest(exported["onnx"], m)
    try:
        with pytest.raises(EdgeseqError, match="is not signed"):
            runtime.load(exported["onnx"])
    finally:
        (exported["onnx"] / MANIFEST).write_text(original)


TAMPER = {
    "labels reordered": lambda b: put_manifest(b, {**manifest(b), "labels": ["S", "N", "V", "F", "Q"]}),
    # an exported bundle's weights are in its model files (weights.npz holds initial states only)
    "model byte changed, hash recomputed": lambda b: (
        (b / "model.onnx").write_bytes((lambda d: d[:-30] + bytes([d[-30] ^ 1]) + d[-29:])((b / "model.onnx").read_bytes())),
        rehash(b, "model.onnx")),
    "step byte changed": lambda b: (b / "step.onnx").write_bytes(
        (lambda d: d[:-30] + bytes([d[-30] ^ 1]) + d[-29:])((b / "step.onnx").read_bytes())),
    "unlisted file added": lambda b: (b / "extra.onnx").write_bytes(b"x"),
    "signature swapped for garbage": lambda b: (b / SIGNATURE).write_text('{"format": "x"}'),
    "signature removed": lambda b: (b / SIGNATURE).unlink(),
}


@pytest.mark.parametrize("case", sorted(TAMPER))
def test_altered_signed_bundle_is_refused(signed, keys, case, no_trust):
    from edgeseq import runtime

    TAMPER[case](signed)
    require_signature(keys / "k.pub")
    with pytest.raises(EdgeseqError, match="altered|not listed|not signed|not an edgeseq signature|sha256") as e:
        runtime.load(signed)
    assert "\n" not in str(e.value)


def test_a_bundle_signed_by_another_key_is_refused(signed, keys, no_trust):
    require_signature(keys / "other.pub")
    with pytest.raises(EdgeseqError, match="is signed by key [0-9a-f]{16}, not by the trusted key"):
        load_bundle(signed)


def test_trust_policy_covers_every_loader(exported, small_bundle, keys, tmp_path, no_trust):
    """Set once, the policy reaches loaders owned by others: the runtime, the ECG task, the bridge."""
    from edgeseq import runtime
    from edgeseq.bridge.pipelines import open_pipeline
    from edgeseq.tasks import ecg

    onnx, trained = clone(exported["onnx"], tmp_path / "o"), clone(small_bundle, tmp_path / "t")
    require_signature(keys / "k.pub")
    for load in (lambda: runtime.load(onnx), lambda: ecg.load_model(trained), lambda: open_pipeline(trained)):
        with pytest.raises(EdgeseqError, match="is not signed"):
            load()


def test_without_trust_a_signed_bundle_loads_and_nacl_is_not_imported(signed):
    code = ("import sys; from edgeseq import runtime; m = runtime.load(sys.argv[1]); "
            "print(m.labels, 'nacl' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != B.TRUST_ENV}
    r = subprocess.run([sys.executable, "-c", code, str(signed)], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("False")


def test_trust_on_the_cli(signed, exported, small_bundle, keys, tmp_path, sample):
    pub = keys / "k.pub"
    raw = _raw_stream(tmp_path / "s.raw", sample, seconds=10)
    # every command that loads a bundle refuses an unsigned one, before any work
    one_line(cli("evaluate", small_bundle, "--data", sample, "--records", "208", "--trust", pub), "is not signed")
    one_line(cli("profile", exported["onnx"], "--n", "10", "--trust", pub), "is not signed")
    one_line(cli("profile", "--compare", signed, exported["onnx"], "--n", "10", "--trust", pub), "is not signed")
    one_line(cli("serve", "--port", raw, "--bundle", exported["onnx"], "--quiet", "--trust", pub), "is not signed")
    one_line(cli("export", small_bundle, "--out", tmp_path / "x", "--trust", pub), "is not signed")
    one_line(cli("profile", signed, "--n", "10", "--trust", keys / "other.pub"), "signed by key")
    one_line(cli("profile", signed, "--n", "10", "--trust", keys / "k"), "is not an edgeseq public key")
    # and accepts a signed one
    r = cli("profile", signed, "--n", "10", "--no-arena", "--trust", pub)
    assert r.returncode == 0, r.stderr
    r = cli("serve", "--port", raw, "--bundle", signed, "--quiet", "--trust", pub)
    assert r.returncode == 0 and json.loads(r.stdout.strip().splitlines()[-1])["predictions"] > 5, r.stderr
    src = clone(small_bundle, tmp_path / "train")
    assert cli("sign", src, "--key", keys / "k").returncode == 0
    r = cli("export", src, "--out", tmp_path / "x", "--trust", pub)  # reads back its own unsigned output
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("kind", ["onnx", "tflite"])
def test_a_model_swapped_after_verification_is_not_loaded(exported, tmp_path, kind):
    """The runtime loads the bytes it checked: a model file replaced (same size) between the hash
    check and the load is refused, as are the weights."""
    b = clone(exported[kind], tmp_path / "b")
    load_bundle(b)
    rt = manifest(b)["runtime"]
    for name in (rt["model"], rt["step"], WEIGHTS):
        f = b / name
        data = bytearray(f.read_bytes())
        data[len(data) // 2] ^= 0xFF
        f.write_bytes(bytes(data))
        with pytest.raises(EdgeseqError, match="changed after its hash was verified"):
            B.read_verified(f)
    with pytest.raises(EdgeseqError, match="changed after its hash was verified"):
        B._read_arrays(b, WEIGHTS, {})
