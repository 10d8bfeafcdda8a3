"""The wire format against the shared vectors (the C tests read the same files), and the decoders
against garbage: hypothesis fuzzes them with arbitrary bytes and damaged frame streams."""

import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeseq.bridge import protocol as P
from edgeseq.bridge.decoder import FrameDecoder, TextLineDecoder

VECTORS = Path(__file__).resolve().parents[1] / "firmware_bridge" / "vectors"


def rows(name):
    return [line.split() for line in (VECTORS / name).read_text().splitlines() if line and not line.startswith("#")]


def unhex(s):
    return b"" if s == "-" else bytes.fromhex(s)


def test_crc_vectors_and_check_value():
    assert P.crc16(b"123456789") == 0x29B1
    table = rows("crc.txt")
    assert len(table) > 10
    for data, crc in table:
        assert P.crc16(unhex(data)) == int(crc, 16)


def test_cobs_vectors_round_trip():
    table = rows("cobs.txt")
    assert len(table) > 20
    for raw, enc in table:
        raw, enc = unhex(raw), unhex(enc)
        assert P.cobs_encode(raw) == enc
        assert 0 not in enc
        assert P.cobs_decode(enc) == raw


def test_frame_vectors_byte_for_byte():
    for name, typ, seq, ts, ch, fmt, payload, raw, wire in rows("frames.txt"):
        f = P.Frame(int(typ), int(seq), int(ts), int(ch), int(fmt), unhex(payload))
        assert P.pack_frame(f) == unhex(raw), name
        assert P.encode_frame(f) == unhex(wire), name
        assert P.unpack_frame(unhex(raw)) == f, name
        (got,) = FrameDecoder().feed(unhex(wire))
        assert got == f, name


def test_frame_vector_payloads_mean_what_they_say():
    frames = {r[0]: P.unpack_frame(unhex(r[7])) for r in rows("frames.txt")}
    info = P.parse_info(frames["info_ecg"])
    assert (info.device_id, info.sample_rate, info.units, info.channels) == ("ecg-ad8232", 360.0, "mV", 1)
    assert info.to_physical(np.array([[1024]]))[0, 0] == pytest.approx(0.0, abs=1e-5)
    first, x = P.parse_samples(frames["samples_int32"])
    assert first == 4294967290 and x.shape == (2, 4) and x[0, 0] == 812345
    assert P.parse_heartbeat(frames["heartbeat"]) == 360
    assert P.parse_error(frames["error"]) == (1, "adc overrun")
    assert P.parse_prediction(frames["prediction"]) == (6510, 2, 0.875, "V")


@pytest.mark.parametrize("chunk", [None, 1, 3, 64])
def test_stream_vector_in_any_chunking(chunk):
    names = {r[7]: r[0] for r in rows("frames.txt")}
    expect = dict(line.split(maxsplit=1) for line in (VECTORS / "stream.txt").read_text().splitlines()
                  if line and not line.startswith("#"))
    data = (VECTORS / "stream.bin").read_bytes()
    d = FrameDecoder()
    got = []
    step = chunk or len(data)
    for i in range(0, len(data), step):
        got += d.feed(data[i:i + step])
    assert [names[P.pack_frame(f).hex()] for f in got] == expect["frames"].split()
    assert d.crc_errors == int(expect["crc_errors"])
    assert d.framing_errors == int(expect["framing_errors"])
    assert len(d._buf) == int(expect["pending_bytes"])


def test_payload_errors_say_what_is_wrong():
    f = P.Frame(P.SAMPLES, 0, 0, 4, 2, P.samples_payload(0, np.zeros((1, 4), np.int32), 2)[:-3])
    with pytest.raises(P.ProtocolError, match="not a u32 index plus whole samples of 4 x int32"):
        P.parse_samples(f)
    with pytest.raises(P.ProtocolError, match="payload of 300 bytes exceeds"):
        P.pack_frame(P.Frame(P.SAMPLES, 0, payload=bytes(300)))
    bad = bytearray(P.pack_frame(P.Frame(P.HEARTBEAT, 1, payload=P.heartbeat_payload(5))))
    bad[3] ^= 1
    with pytest.raises(P.ProtocolError, match="CRC mismatch"):
        P.unpack_frame(bytes(bad))


# ---- fuzzing -------------------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=700), max_size=20))
def test_decoder_survives_any_bytes_and_stays_bounded(chunks):
    d = FrameDecoder()
    for c in chunks:
        for f in d.feed(c):
            # Whatever it accepts is a frame whose CRC checked out.
            assert P.unpack_frame(P.pack_frame(f)) == f
        assert len(d._buf) < P.MAX_WIRE
    assert d.bytes == sum(map(len, chunks))


frames_st = st.builds(
    lambda typ, seq, ts, n, vals: P.Frame(typ, seq, ts, 1, 1, P.samples_payload(seq, np.array(vals[:n], np.int16)
                                                                               .reshape(-1, 1), 1)),
    st.just(P.SAMPLES), st.integers(0, 65535), st.integers(0, 2**32 - 1), st.integers(1, 100),
    st.lists(st.integers(-32768, 32767), min_size=100, max_size=100))


@settings(max_examples=200, deadline=None)
@given(st.lists(frames_st, min_size=1, max_size=12), st.lists(st.tuples(st.sampled_from(["flip", "junk", "cut"]),
       st.integers(0, 10**6)), max_size=6), st.integers(1, 50))
def test_damaged_streams_never_yield_a_wrong_frame(frames, damage, chunk):
    """Frames with flipped bits, junk between them and cuts: every frame the decoder accepts is one
    that was sent, unaltered, and every frame left untouched (with intact delimiters around it)
    comes through."""
    wires = [bytearray(P.encode_frame(f)) for f in frames]
    touched = set()
    junk_before = {}
    for kind, k in damage:
        i = k % len(wires)
        if kind == "flip":
            pos = k % (len(wires[i]) * 8)
            wires[i][pos // 8] ^= 1 << (pos % 8)
            touched.add(i)
            if pos // 8 == len(wires[i]) - 1:
                touched.add(i + 1)  # its delimiter is gone: the next frame merges with it
        elif kind == "cut":
            wires[i] = wires[i][:max(1, k % len(wires[i]))]
            touched.update({i, i + 1})
        else:
            junk = random.Random(k).randbytes(1 + k % 40)
            junk_before[i] = junk
            if junk[-1] != 0:
                touched.add(i)
    stream = b"".join(junk_before.get(i, b"") + bytes(w) for i, w in enumerate(wires))
    d = FrameDecoder()
    got = []
    for j in range(0, len(stream), chunk):
        got += d.feed(stream[j:j + chunk])
    sent = [P.pack_frame(f) for f in frames]
    for f in got:
        assert P.pack_frame(f) in sent
    for i, f in enumerate(frames):
        if i not in touched:
            assert f in got


def test_text_lines_parse_separators_and_count_bad_lines():
    d = TextLineDecoder()
    runs = d.feed(b"hello from setup()\r\n1,2,3,4\n5\t6 7;8\n9,x,1,1\n")
    runs += d.feed(b"10, 11, 12, 13\r\n14,15\n16,17,18,19\n" + b"1," * 200 + b"\n20,21,22,23\n")
    assert d.skipped_lines == 1 and d.channels == 4
    assert d.bad_lines == 3  # "9,x,...", "14,15", the over-long line
    values = np.concatenate([v for v, _ in runs])
    assert values[:, 0].tolist() == [1, 5, 10, 16, 20]
    assert sum(n for _, n in runs) == 3 and runs[0][1] == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=400), max_size=10))
def test_text_decoder_survives_any_bytes(chunks):
    d = TextLineDecoder(channels=2)
    for c in chunks:
        for v, lost in d.feed(c):
            assert v.ndim == 2 and v.shape[1] == 2 and np.isfinite(v).all() and lost >= 0
        assert len(d._buf) <= d.MAX_LINE
