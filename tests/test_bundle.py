"""Bundle v0: open formats only, every file hashed, anything altered refused."""

import json

import numpy as np
import pytest

from edgeseq.bundle import MANIFEST, WEIGHTS, load_bundle, read_manifest, write_bundle
from edgeseq.errors import EdgeseqError


#: The smallest manifest the schema accepts for an ECG bundle (preprocessing and detector are required).
PREP = {"sample_rate": 360.0, "sos": [[1.0, 0.0, 0.0, 1.0, 0.0, 0.0]], "pre_s": 0.25, "post_s": 0.45, "decimate": 2}
DETECTOR = {"fs": 360.0, "sos": [[1.0, 0.0, 0.0, 1.0, 0.0, 0.0]]}


def _write(tmp_path, **arrays):
    arrays = arrays or {"W": np.arange(6, dtype=np.float32).reshape(2, 3)}
    manifest = {"task": "ecg", "sample_rate": 360.0, "labels": ["N", "S"], "preprocessing": PREP,
                "detector": DETECTOR, "model": {"kind": "plain", "params": {}}}
    return write_bundle(tmp_path / "b.bundle", manifest, arrays)


def test_round_trip(tmp_path):
    path = _write(tmp_path)
    b = load_bundle(path, task="ecg")
    np.testing.assert_array_equal(b.arrays["W"], np.arange(6, dtype=np.float32).reshape(2, 3))
    m = json.loads((path / MANIFEST).read_text())
    assert m["files"][WEIGHTS]["sha256"] and m["edgeseq_version"] and m["format_version"] == 0
    assert m["model"]["arrays"]["W"] == {"shape": [2, 3], "dtype": "float32"}
    assert sorted(p.name for p in path.iterdir()) == [MANIFEST, WEIGHTS]


def test_overwrite_replaces_bundle(tmp_path):
    _write(tmp_path)
    path = _write(tmp_path, W=np.ones(3, np.float32))
    assert load_bundle(path).arrays["W"].shape == (3,)


def test_refuses_to_overwrite_a_foreign_directory(tmp_path):
    (tmp_path / "b.bundle").mkdir()
    (tmp_path / "b.bundle" / "precious.txt").write_text("keep me")
    with pytest.raises(EdgeseqError, match="not a bundle"):
        _write(tmp_path)
    assert (tmp_path / "b.bundle" / "precious.txt").read_text() == "keep me"


def test_altered_weights_are_refused(tmp_path):
    path = _write(tmp_path)
    data = bytearray((path / WEIGHTS).read_bytes())
    data[-30] ^= 0x01
    (path / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(EdgeseqError, match=r"weights\.npz does not match its sha256"):
        load_bundle(path)


def test_truncated_weights_are_refused(tmp_path):
    path = _write(tmp_path)
    (path / WEIGHTS).write_bytes((path / WEIGHTS).read_bytes()[:-10])
    with pytest.raises(EdgeseqError, match="altered or truncated"):
        load_bundle(path)


def test_missing_weights(tmp_path):
    path = _write(tmp_path)
    (path / WEIGHTS).unlink()
    with pytest.raises(EdgeseqError, match="weights.npz is missing"):
        load_bundle(path)


def test_manifest_errors(tmp_path):
    path = _write(tmp_path)
    (path / MANIFEST).write_text("{not json")
    with pytest.raises(EdgeseqError, match="not valid JSON"):
        read_manifest(path)
    (path / MANIFEST).write_text(json.dumps({"format": "edgeseq-bundle"}))
    with pytest.raises(EdgeseqError, match="'format_version' is a required property"):
        read_manifest(path)
    with pytest.raises(EdgeseqError, match="does not exist"):
        read_manifest(tmp_path / "nowhere")
    with pytest.raises(EdgeseqError, match="no manifest.json"):
        read_manifest(tmp_path)


def test_wrong_task_is_refused(tmp_path):
    with pytest.raises(EdgeseqError, match="is a 'ecg' model, not 'balance'"):
        load_bundle(_write(tmp_path), task="balance")


def test_pickled_arrays_are_never_loaded(tmp_path):
    path = _write(tmp_path, W=np.array([{"evil": 1}], dtype=object))
    with pytest.raises(EdgeseqError, match="arrays: W: dtype: 'object' is not one of"):
        load_bundle(path)


def test_path_escape_in_manifest_is_refused(tmp_path):
    path = _write(tmp_path)
    m = json.loads((path / MANIFEST).read_text())
    m["files"]["../outside"] = {"sha256": "0", "bytes": 0}
    (path / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(EdgeseqError, match=r"files: '\.\./outside' is not a plain file name inside the bundle"):
        load_bundle(path)


@pytest.mark.parametrize("extra", ["plots/old.png", "notes.txt"])
def test_a_bundle_with_content_it_does_not_list_is_not_replaced(tmp_path, extra):
    """Replacing a directory deletes what is in it: only a bundle holding nothing but its own files
    may go (issue 13: a project's manifest.json must not get its src/ deleted)."""
    path = _write(tmp_path)
    (path / extra).parent.mkdir(exist_ok=True)
    (path / extra).write_bytes(b"mine")
    with pytest.raises(EdgeseqError, match=f"refusing to replace .*{extra.split('/')[0]} is not one of its files"):
        _write(tmp_path, W=np.ones(2, np.float32))
    assert (path / extra).read_bytes() == b"mine" and (path / WEIGHTS).is_file()
    with pytest.raises(EdgeseqError, match="is not listed in manifest.json"):  # and it is not loaded either
        load_bundle(path)


@pytest.mark.parametrize("manifest", ['{}', '{"format": "something-else", "files": {}}', 'not json', '[1, 2]'])
def test_a_foreign_manifest_is_not_a_licence_to_delete(tmp_path, manifest):
    app = tmp_path / "b.bundle"
    (app / "src").mkdir(parents=True)
    (app / MANIFEST).write_text(manifest)
    (app / "src" / "main.js").write_text("x")
    with pytest.raises(EdgeseqError, match="refusing to replace"):
        _write(tmp_path)
    assert (app / "src" / "main.js").read_text() == "x" and (app / MANIFEST).read_text() == manifest


def test_a_symlinked_out_is_refused(tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / "b.bundle").symlink_to(target)
    with pytest.raises(EdgeseqError, match="not a directory"):
        _write(tmp_path)
    assert target.is_dir() and not any(target.iterdir())
