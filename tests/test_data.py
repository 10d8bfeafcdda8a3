"""Reading MIT-BIH records: AAMI labels, record selection, resampling, and clear errors."""

import shutil

import numpy as np
import pytest
import wfdb

from edgeseq.data.mitdb import (AAMI_CLASSES, DS1, PACED, SYMBOL_TO_CLASS, list_records, load_record,
                                parse_records, select_records)
from edgeseq.errors import EdgeseqError


def test_aami_mapping_follows_ec57():
    expect = {"N": "NLRej", "S": "AaJS", "V": "VE", "F": "F", "Q": "/fQ"}
    for cls, symbols in expect.items():
        for s in symbols:
            assert AAMI_CLASSES[SYMBOL_TO_CLASS[s]] == cls
    for non_beat in "+~|x![]\"":
        assert non_beat not in SYMBOL_TO_CLASS


def test_record_208_counts_match_the_database(mitdb):
    rec = load_record(mitdb, "208")
    assert rec.fs == 360 and rec.lead == "MLII" and len(rec.signal) == 650000
    # PhysioNet's table for 208: 1586 N, 2 S, 992 V, 373 F, 2 Q
    assert np.bincount(rec.beat_labels, minlength=5).tolist() == [1586, 2, 992, 373, 2]


def test_default_records_are_ds1_without_paced(mitdb):
    names = select_records(mitdb)
    assert names == list(DS1)
    assert not set(names) & set(PACED)


def test_paced_record_needs_explicit_consent(mitdb):
    with pytest.raises(EdgeseqError, match="paced"):
        select_records(mitdb, ["102"])
    assert select_records(mitdb, ["102"], include_paced=True) == ["102"]


def test_parse_records():
    assert parse_records("101, 106,,208") == ["101", "106", "208"]
    assert parse_records(None) is None
    for empty in ("", " ", ",,,"):
        with pytest.raises(EdgeseqError, match="names no record"):
            parse_records(empty)


def test_resampling_keeps_beats_on_their_peaks(sample):
    native = load_record(sample, "119")
    low = load_record(sample, "119", fs=250.0)
    assert low.fs == 250.0 and abs(len(low.signal) - len(native.signal) * 250 / 360) <= 1
    assert len(low.beat_samples) == len(native.beat_samples)
    # The annotation lands where the resampled signal has the same value as the original R peak.
    t_native = native.beat_samples / 360.0
    t_low = low.beat_samples / 250.0
    assert np.abs(t_native - t_low).max() <= 0.5 / 250.0 + 1e-9
    np.testing.assert_allclose(low.signal[low.beat_samples[5:-5]], native.signal[native.beat_samples[5:-5]],
                               atol=0.15)


@pytest.fixture
def copy_dir(tmp_path, sample):
    def make(*names):
        for n in names:
            for ext in ("hea", "dat", "atr"):
                shutil.copy(sample / f"{n}.{ext}", tmp_path / f"{n}.{ext}")
        return tmp_path
    return make


def test_missing_directory(tmp_path):
    with pytest.raises(EdgeseqError, match="does not exist"):
        list_records(tmp_path / "nope")


def test_directory_without_records(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(EdgeseqError, match=r"no WFDB records"):
        list_records(tmp_path)


def test_unknown_record(copy_dir):
    d = copy_dir("119")
    with pytest.raises(EdgeseqError, match="record 999 not found"):
        select_records(d, ["999"])


def test_corrupt_header(copy_dir):
    d = copy_dir("119")
    (d / "119.hea").write_text("this is not a header\n")
    with pytest.raises(EdgeseqError, match=r"record 119: cannot parse header .*119\.hea"):
        load_record(d, "119")


def test_missing_signal_file(copy_dir):
    d = copy_dir("119")
    (d / "119.dat").unlink()
    with pytest.raises(EdgeseqError, match=r"signal file .*119\.dat not found"):
        load_record(d, "119")


def test_truncated_signal_file(copy_dir):
    d = copy_dir("119")
    data = (d / "119.dat").read_bytes()
    (d / "119.dat").write_bytes(data[: len(data) // 2])
    with pytest.raises(EdgeseqError, match=r"119.*(truncated|cannot read signal)"):
        load_record(d, "119")


def test_missing_annotations(copy_dir):
    d = copy_dir("119")
    (d / "119.atr").unlink()
    with pytest.raises(EdgeseqError, match=r"annotations .*119\.atr not found"):
        load_record(d, "119")


def test_missing_lead(copy_dir):
    d = copy_dir("119")
    with pytest.raises(EdgeseqError, match="lead V5 not in"):
        load_record(d, "119", lead="V5")


def test_sample_rate_too_low(tmp_path):
    sig = np.sin(np.linspace(0, 60, 3000))[:, None]
    wfdb.wrsamp("slow", fs=50, units=["mV"], sig_name=["MLII"], p_signal=sig, fmt=["16"],
                write_dir=str(tmp_path))
    with pytest.raises(EdgeseqError, match=r"sample rate 50 Hz .* below"):
        load_record(tmp_path, "slow", annotations=False)


@pytest.mark.parametrize("rate", ["-360", "abc", "0x168", "3.6e2"])
def test_unreadable_sample_rate_is_refused_not_read_as_250(copy_dir, rate):
    """wfdb reads these as its 250 Hz default (3.6e2 as 3.6 Hz); the record would be resampled from a
    rate it never had."""
    d = copy_dir("119")
    lines = (d / "119.hea").read_text().splitlines()
    lines[0] = lines[0].replace(" 360 ", f" {rate} ")
    (d / "119.hea").write_text("\n".join(lines) + "\n")
    with pytest.raises(EdgeseqError, match=rf"119\.hea: sample rate '{rate}' is not a positive number"):
        load_record(d, "119")


@pytest.mark.parametrize("field", ["360", "360.0", "360/1", "360(0)"])
def test_valid_sample_rate_forms_still_read(copy_dir, field):
    d = copy_dir("119")
    lines = (d / "119.hea").read_text().splitlines()
    lines[0] = lines[0].replace(" 360 ", f" {field} ")
    (d / "119.hea").write_text("\n".join(lines) + "\n")
    rec = load_record(d, "119")
    assert rec.source_fs == 360.0 and len(rec.beat_samples) > 0


def test_empty_annotation_file_is_refused_not_read_as_no_beats(copy_dir):
    d = copy_dir("119")
    (d / "119.atr").write_bytes(b"")
    with pytest.raises(EdgeseqError, match=r"annotations .*119\.atr are empty \(0 bytes\)"):
        load_record(d, "119")
