import ast
import json
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeseq.errors import EdgeseqError
from edgeseq.preprocess import filters
from edgeseq.preprocess.filters import SOSFilter, design_bandpass, sosfilt

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mitdb"
FS = 360.0


@pytest.fixture(scope="module")
def ecg():
    if not DATA.is_dir():
        pytest.skip(f"MIT-BIH data not found at {DATA}")
    import wfdb

    return wfdb.rdrecord(str(DATA / "208"), sampto=360 * 120).p_signal[:, 0]


def close(y, ref, scale):
    return np.max(np.abs(y - ref), initial=0.0) <= 1e-9 * scale


DESIGNS = [(5, 15, 2), (0.5, 40, 2), (0.5, 40, 4), (1, 100, 1), (0.05, 100, 2)]


@pytest.mark.parametrize("low,high,order", DESIGNS)
def test_whole_signal_matches_scipy_on_ecg(ecg, low, high, order):
    sos = design_bandpass(FS, low, high, order)
    assert close(sosfilt(sos, ecg), scipy.signal.sosfilt(sos, ecg), np.max(np.abs(ecg)))


@pytest.mark.parametrize("low,high,order", DESIGNS)
def test_whole_signal_matches_scipy_on_noise(low, high, order):
    x = np.random.default_rng(1).normal(size=20_000) * 3.0
    sos = design_bandpass(FS, low, high, order)
    assert close(sosfilt(sos, x), scipy.signal.sosfilt(sos, x), np.max(np.abs(x)))


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 700), min_size=1, max_size=30),
    design=st.sampled_from(DESIGNS),
    block=st.sampled_from([1, 7, 64, 256]),
)
def test_random_chunking_matches_scipy(sizes, design, block):
    x = np.random.default_rng(len(sizes)).normal(size=sum(sizes))
    sos = design_bandpass(FS, *design)
    f = SOSFilter(sos, block=block)
    cuts = np.cumsum([0] + sizes)
    y = np.concatenate([f.process(x[a:b]) for a, b in zip(cuts[:-1], cuts[1:])])
    assert y.shape == x.shape
    ref = scipy.signal.sosfilt(sos, x) if len(x) else x  # scipy rejects empty input
    assert close(y, ref, max(1.0, np.max(np.abs(x), initial=0)))


def test_chunks_of_one_and_odd_sizes_on_ecg(ecg):
    x = ecg[:5000]
    sos = design_bandpass(FS, 5, 15)
    ref = scipy.signal.sosfilt(sos, x)
    for size in (1, 7, 255, 256, 257, 4999):
        f = SOSFilter(sos)
        y = np.concatenate([f.process(x[i : i + size]) for i in range(0, len(x), size)])
        assert close(y, ref, np.max(np.abs(x))), size


def test_state_continuity_and_reset():
    sos = design_bandpass(FS, 5, 15)
    x = np.random.default_rng(2).normal(size=3000)
    f = SOSFilter(sos)
    first = f.process(x[:1000])
    rest = f.process(x[1000:])
    assert close(np.concatenate([first, rest]), scipy.signal.sosfilt(sos, x), 10)
    # Without the carried state the second half would start from rest and differ.
    assert not close(rest, scipy.signal.sosfilt(sos, x[1000:]), 10)
    f.reset()
    assert close(f.process(x[:1000]), first, 10)


def test_steady_state_reset_removes_start_up_step():
    sos = design_bandpass(FS, 5, 15)
    f = SOSFilter(sos)
    f.reset(x0=2.5)
    assert np.max(np.abs(f.process(np.full(500, 2.5)))) < 1e-9


def test_empty_chunk_and_nested_list_coefficients():
    sos = design_bandpass(FS, 5, 15)
    f = SOSFilter(json.loads(json.dumps(sos.tolist())))  # as read from a JSON manifest
    assert f.process(np.zeros(0)).shape == (0,)
    x = np.arange(10.0)
    assert close(f.process(x), scipy.signal.sosfilt(sos, x), 10)


def test_whole_record_is_fast():
    x = np.random.default_rng(3).normal(size=650_000)
    f = SOSFilter(design_bandpass(FS, 5, 15))
    t = time.perf_counter()
    f.process(x)
    assert time.perf_counter() - t < 0.5


def test_bad_input():
    with pytest.raises(EdgeseqError, match="shape"):
        SOSFilter(np.zeros((2, 5)))
    with pytest.raises(EdgeseqError, match="a0"):
        SOSFilter([[1, 0, 0, 0, 0, 0]])
    with pytest.raises(EdgeseqError, match="1-D"):
        SOSFilter(design_bandpass(FS, 5, 15)).process(np.zeros((3, 2)))
    with pytest.raises(EdgeseqError, match="fs/2"):
        design_bandpass(FS, 5, 200)


def test_device_module_imports_only_numpy_and_stdlib():
    import sys

    tree = ast.parse(Path(filters.__file__).read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = {a.name.split(".")[0] for n in top if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in top if isinstance(n, ast.ImportFrom) and n.module}
    assert names <= {"numpy", "edgeseq", "__future__"} | set(sys.stdlib_module_names)
