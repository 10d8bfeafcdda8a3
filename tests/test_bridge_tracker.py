"""StreamTracker: sequence numbers, sample indices and the device clock, including their wraps."""

import numpy as np
import pytest

from edgeseq.bridge import protocol as P
from edgeseq.bridge.tracker import StreamTracker


def info(seq=0, rate=360.0):
    return P.Frame(P.INFO, seq, 0, 1, 1, P.info_payload("dev", rate, [0.5], [1.0], "mV"))


def samples(seq, first, values, ts=0):
    return P.Frame(P.SAMPLES, seq & 0xFFFF, ts & 0xFFFFFFFF, 1, 1,
                   P.samples_payload(first, np.asarray(values, np.int16).reshape(-1, 1), 1))


def test_gaps_duplicates_and_lost_samples():
    t = StreamTracker()
    assert t.on_frame(info(0), 0.0) == []
    (b,) = t.on_frame(samples(1, 100, [2, 4]), 0.0)
    assert b.first_index == 100 and b.lost_before == 0 and b.samples[:, 0].tolist() == [2.0, 3.0]
    assert t.on_frame(samples(1, 100, [2, 4]), 0.0) == []  # duplicate
    (b,) = t.on_frame(samples(4, 108, [0]), 0.0)  # seq 2, 3 lost, carrying samples 102..107
    assert b.lost_before == 6
    assert (t.duplicates, t.seq_gaps, t.lost_frames, t.lost_samples) == (1, 1, 2, 6)


def test_sequence_and_index_wrap_without_false_gaps():
    t = StreamTracker()
    t.on_frame(info(65534), 0.0)
    first = 2**32 - 4
    out = []
    for k in range(6):
        out += t.on_frame(samples(65535 + k, (first + 2 * k) % 2**32, [k, k], ts=(2**32 - 10 + 5 * k)), 0.0)
    assert t.seq_gaps == 0 and t.lost_samples == 0
    assert [b.first_index for b in out] == [first + 2 * k for k in range(6)]
    times = [b.device_time_us for b in out]
    assert times == sorted(times) and times[-1] == 2**32 - 10 + 25


def test_heartbeat_counts_samples_lost_at_the_end():
    t = StreamTracker()
    t.on_frame(info(0), 0.0)
    t.on_frame(samples(1, 0, [1, 1, 1]), 0.0)
    # Frames 2 and 3 (samples 3..8) lost, then the final heartbeat says the next index is 9.
    (b,) = t.on_frame(P.Frame(P.HEARTBEAT, 4, 0, 0, 0, P.heartbeat_payload(9)), 0.0)
    assert b.lost_before == 6 and len(b.samples) == 0
    assert t.lost_samples == 6 and t.lost_frames == 2


def test_samples_before_info_are_held_then_released():
    t = StreamTracker()
    assert t.on_frame(samples(5, 10, [2]), 0.0) == [] and t.needs_info
    blocks = t.on_frame(info(6), 0.0)
    assert [b.first_index for b in blocks] == [10] and not t.needs_info


def test_a_payload_that_contradicts_info_is_reported_not_fatal():
    t = StreamTracker()
    t.on_frame(info(0), 0.0)
    bad = P.Frame(P.SAMPLES, 1, 0, 2, 1, P.samples_payload(0, np.zeros((1, 2), np.int16), 1))
    assert t.on_frame(bad, 0.0) == []
    assert t.payload_errors == 1 and "INFO announced 1" in t.last_error
    assert len(t.on_frame(samples(2, 0, [1]), 0.0)) == 1


def test_device_error_frames_are_kept():
    t = StreamTracker()
    t.on_frame(P.Frame(P.ERROR, 0, 0, 0, 0, P.error_payload(2, "leads off")), 0.0)
    assert t.device_errors == 1 and t.device_error_messages == [(2, "leads off")]


@pytest.mark.parametrize("rate", [0.0, float("nan")])
def test_info_with_a_bad_rate_is_a_payload_error(rate):
    t = StreamTracker()
    t.on_frame(info(0, rate=rate), 0.0)
    assert t.payload_errors == 1 and t.needs_info
