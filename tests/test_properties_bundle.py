"""Property: whatever a bundle holds, loading it either gives a working model or one EdgeseqError
line. Examples are mutations of a real small ECG bundle: its manifest (wrong types, missing keys,
extreme numbers, deep nesting, NaN tokens) and its directory (extra files, symlinks, subdirectories,
renamed, removed or truncated files). Never another exception, never a NaN or out-of-range label."""

import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from edgeseq.bundle import MANIFEST, WEIGHTS
from edgeseq.errors import EdgeseqError

SETTINGS = settings(max_examples=100, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

RNG = np.random.default_rng(0)
WINDOWS = RNG.normal(0, 0.3, (4, 126)).astype(np.float32)
RR = RNG.uniform(0.5, 1.5, (4, 9)).astype(np.float32)


def _paths(obj):
    """Paths into the JSON ``obj`` (keys and the first list indexes), at most 12 levels down."""
    out, todo = [], [((), obj)]
    while todo:
        prefix, v = todo.pop()
        out.append(prefix)
        if len(prefix) < 12 and isinstance(v, dict):
            todo.extend((prefix + (k,), x) for k, x in v.items())
        elif len(prefix) < 12 and isinstance(v, list):
            todo.extend((prefix + (i,), x) for i, x in enumerate(v[:4]))
    return sorted(out, key=lambda p: [str(x) for x in p])


SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70),
    st.sampled_from([0, -1, 1, 2**31, 2**63, 1e308, -1e308, 1e-308, 0.0, -0.0, 1e9, 5e-324]),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["../weights.npz", "/dev/zero", "weights.npz", "manifest.json", "esn", "ecg", "B"]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                      max_leaves=8)


@st.composite
def manifest_mutation(draw, base: dict):
    m = json.loads(json.dumps(base))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(m) if p]
        path = draw(st.sampled_from(paths))
        parent = m
        for k in path[:-1]:
            parent = parent[k]
        op = draw(st.sampled_from(["replace", "delete", "nest", "extreme"]))
        key = path[-1]
        if op == "delete":
            if isinstance(parent, dict):
                del parent[key]
            else:
                parent.pop(key)
        elif op == "nest":
            v = parent[key]
            for _ in range(draw(st.sampled_from([1, 5, 40, 200]))):
                v = [v]
            parent[key] = v
        elif op == "extreme":
            parent[key] = draw(st.sampled_from([1e308, -1e308, 2**64, -2**63, 0, 1e-320, float("nan"),
                                                float("inf"), "", [], {}]))
        else:
            parent[key] = draw(VALUES)
        if not isinstance(m, dict):
            break
    return json.dumps(m, allow_nan=True)


TREE_OPS = ["extra file", "symlink listed", "rename listed", "remove listed", "subdirectory", "truncate listed",
            "symlink manifest", "fifo", "extra array"]


def _tree_mutation(root: Path, op: str, name: str) -> None:
    listed = sorted(json.loads((root / MANIFEST).read_text())["files"])
    target = root / listed[sum(map(ord, name)) % len(listed)]
    if op.endswith("listed") and not (target.is_file() and not target.is_symlink()):
        op = "remove listed" if os.path.lexists(target) else "extra file"
    if op == "extra file":
        if not os.path.lexists(root / name):
            (root / name).write_bytes(b"extra")
    elif op == "symlink listed":
        moved = root.parent / ("moved-" + target.name)
        target.rename(moved)
        target.symlink_to(moved)
    elif op == "rename listed":
        target.rename(root / ("renamed-" + target.name))
    elif op == "remove listed":
        target.unlink()
    elif op == "subdirectory":
        (root / (name or "d")).mkdir(exist_ok=True)
    elif op == "truncate listed":
        target.write_bytes(target.read_bytes()[: len(target.read_bytes()) // 2])
    elif op == "symlink manifest":
        (root / MANIFEST).unlink()
        (root / MANIFEST).symlink_to("/dev/zero")
    elif op == "fifo":
        os.mkfifo(root / (name or "f"))
    elif op == "extra array" and (root / WEIGHTS).is_file() and not (root / WEIGHTS).is_symlink():
        try:
            with np.load(root / WEIGHTS) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception:  # truncated by an earlier op: already a damaged bundle
            return
        np.savez(root / WEIGHTS, **arrays, **{f"extra{len(arrays)}": np.zeros(3)})


def _outcome(root: Path) -> str:
    """'ok' with a checked model, or 'refused' with a one-line EdgeseqError; anything else fails."""
    from edgeseq.finite import decide
    from edgeseq.tasks import ecg

    try:
        bundle, prep, est = ecg.load_model(root)
        logits = est.decision_function(WINDOWS, RR)
    except EdgeseqError as exc:
        assert "\n" not in str(exc) and str(exc), repr(exc)
        return "refused"
    labels = bundle.manifest["labels"]
    assert logits.shape == (len(WINDOWS), len(labels))
    assert np.isfinite(logits).all(), "a loaded bundle produced NaN or infinite logits"
    k, _ = decide(logits)
    assert ((0 <= k) & (k < len(labels))).all()
    return "ok"


@pytest.fixture(scope="module")
def base(small_bundle):
    return small_bundle, json.loads((Path(small_bundle) / MANIFEST).read_text())


@pytest.fixture(scope="module")
def reference(base):
    from edgeseq.tasks import ecg

    _, _, est = ecg.load_model(base[0])
    return est.decision_function(WINDOWS, RR)


def _copy(src) -> tuple[tempfile.TemporaryDirectory, Path]:
    tmp = tempfile.TemporaryDirectory(prefix="edgeseq-prop-")
    root = Path(tmp.name) / "b.bundle"
    shutil.copytree(src, root)
    return tmp, root


@given(data=st.data())
@SETTINGS
def test_any_manifest_loads_correctly_or_is_one_line(base, reference, data):
    src, m = base
    text = data.draw(manifest_mutation(m))
    tmp, root = _copy(src)
    with tmp:
        (root / MANIFEST).write_text(text)
        outcome = _outcome(root)
        event(outcome)
        if outcome == "ok":
            parsed = json.loads(text)
            # accepted only when every number is a real one, and the same weights give the same logits
            assert "NaN" not in text and "Infinity" not in text
            from edgeseq.tasks import ecg

            _, _, est = ecg.load_model(root)
            if parsed["model"]["params"] == m["model"]["params"]:
                np.testing.assert_allclose(est.decision_function(WINDOWS, RR), reference, rtol=1e-5, atol=1e-5)


@given(ops=st.lists(st.sampled_from(TREE_OPS), min_size=1, max_size=3),
       name=st.text(alphabet="abcXYZ019._-", min_size=1, max_size=10).filter(lambda s: s not in (".", "..")))
@SETTINGS
def test_any_bundle_tree_loads_correctly_or_is_one_line(base, reference, ops, name):
    src, _ = base
    tmp, root = _copy(src)
    with tmp:
        for op in ops:
            if (root / MANIFEST).is_symlink():
                break
            if op in ("extra file", "subdirectory", "fifo") and os.path.lexists(root / name):
                continue
            _tree_mutation(root, op, name)
        outcome = _outcome(root)
        # every one of these changes is a bundle that is not the one its manifest describes
        assert outcome == "refused", ops


def test_the_unmutated_bundle_loads(base, reference):
    tmp, root = _copy(base[0])
    with tmp:
        assert _outcome(root) == "ok"
        assert math.isfinite(float(reference.sum()))
