"""Writes the protocol test vectors in ``firmware_bridge/vectors/`` from the Python reference.

The files are committed: the C tests (``make -C firmware_bridge test``) and the Python tests
(``tests/test_bridge_vectors.py``) both check their implementation against them byte for byte,
so a change to either side that alters the wire format fails one of them. Rerun only when the
protocol itself changes (and bump ``VERSION``).

    python tools/make_vectors.py
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

import numpy as np

from edgeseq.bridge import protocol as P

OUT = Path(__file__).resolve().parents[1] / "firmware_bridge" / "vectors"


def hx(b: bytes) -> str:
    return b.hex() if b else "-"


def crc_vectors(rng: random.Random) -> list[str]:
    items = [b"", b"123456789", b"\x00", b"\xff" * 8, bytes(range(256))]
    items += [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))) for _ in range(16)]
    return [f"{hx(d)} {P.crc16(d):04x}" for d in items]


def cobs_vectors(rng: random.Random) -> list[str]:
    items = [b"", b"\x00", b"\x00\x00", b"\x11\x22\x00\x33", b"\x11\x22\x33\x44", b"\x11\x00\x00\x00",
             bytes(range(1, 255)), bytes(range(0, 255)), bytes(range(1, 256)), bytes(range(2, 256)) + b"\x00",
             bytes(range(3, 256)) + b"\x00\x01", b"\x01" * 253, b"\x01" * 254, b"\x01" * 255, b"\x01" * 508]
    for _ in range(16):
        n = rng.randrange(1, 600)
        p0 = rng.choice([0.0, 0.01, 0.3])
        items.append(bytes(0 if rng.random() < p0 else rng.randrange(1, 256) for _ in range(n)))
    return [f"{hx(d)} {hx(P.cobs_encode(d))}" for d in items]


def frame_list() -> list[tuple[str, P.Frame]]:
    ecg = np.array([-512, -1, 0, 1, 255, 256, 1023, -1024, 32767, -32768], dtype=np.int16).reshape(-1, 1)
    cells = np.array([[812345, 790001, -3, 0], [812400, 789950, 2, -1]], dtype=np.int32)
    flt = np.array([[0.5, -1.25, 3.0e-3, 1.0e6]], dtype=np.float32)
    return [
        ("info_ecg", P.Frame(P.INFO, 0, 0, 1, 1, P.info_payload("ecg-ad8232", 360.0, [0.005], [-5.12], "mV"))),
        ("info_cells", P.Frame(P.INFO, 1, 1234, 4, 2,
                               P.info_payload("hx711x4", 100.0, [0.01] * 4, [0.0, 0.5, -0.5, 0.0], "N"))),
        ("samples_int16", P.Frame(P.SAMPLES, 2, 27778, 1, 1, P.samples_payload(0, ecg, 1))),
        ("samples_int32", P.Frame(P.SAMPLES, 65535, 0xFFFFFFF0, 4, 2, P.samples_payload(4294967290, cells, 2))),
        ("samples_float32", P.Frame(P.SAMPLES, 7, 99, 4, 3, P.samples_payload(12, flt, 3))),
        ("samples_full", P.Frame(P.SAMPLES, 8, 1, 1, 1,
                                 P.samples_payload(300, np.arange(1, 120, dtype=np.int16).reshape(-1, 1), 1))),
        ("samples_zeros", P.Frame(P.SAMPLES, 256, 0, 1, 1, P.samples_payload(0, np.zeros((5, 1), np.int16), 1))),
        ("heartbeat", P.Frame(P.HEARTBEAT, 9, 1000000, 0, 0, P.heartbeat_payload(360))),
        ("error", P.Frame(P.ERROR, 10, 5, 0, 0, P.error_payload(1, "adc overrun"))),
        ("start", P.Frame(P.START, 0)),
        ("stop", P.Frame(P.STOP, 1)),
        ("prediction", P.Frame(P.PREDICTION, 2, 0, 0, 0, P.prediction_payload(6510, 2, 0.875, "V"))),
        ("prediction_score", P.Frame(P.PREDICTION, 3, 0, 0, 0, P.prediction_payload(100, P.NO_LABEL, 24.5, ""))),
    ]


def frame_vectors() -> list[str]:
    rows = []
    for name, f in frame_list():
        raw = P.pack_frame(f)
        rows.append(f"{name} {f.type} {f.seq} {f.timestamp_us} {f.channels} {f.sample_format} "
                    f"{hx(f.payload)} {hx(raw)} {hx(P.encode_frame(f))}")
    return rows


def stream_vector(rng: random.Random) -> tuple[bytes, list[str]]:
    """A byte stream mixing good frames with every kind of damage, and what a decoder must make of
    it: the accepted frames in order (by name) and the counts of rejected ones."""
    frames = dict(frame_list())
    wire = {k: P.encode_frame(f) for k, f in frames.items()}
    s = bytearray()
    expect = []
    crc = framing = 0

    def good(name):
        s.extend(wire[name])
        expect.append(name)

    s.extend(b"\x00")  # idle fill
    good("info_ecg")
    good("samples_int16")
    # One flipped bit inside a data byte: decodes, CRC fails.
    bad = bytearray(wire["samples_int16"])
    bad[12] ^= 0x04
    s.extend(bad)
    crc += 1
    good("heartbeat")
    # Truncated frame (a device reset mid-frame): merges with the next one, both rejected.
    s.extend(wire["samples_full"][:40])
    s.extend(wire["samples_int32"])
    framing += 1  # the merged chunk is not valid COBS or fails CRC: counted once, as decided below
    good("error")
    # Garbage burst without a zero, longer than any frame, then a delimiter.
    s.extend(bytes(rng.randrange(1, 256) for _ in range(300)))
    s.extend(b"\x00")
    framing += 1
    good("samples_float32")
    s.extend(b"\x00\x00")  # idle
    good("samples_zeros")
    # Too short to be a frame.
    s.extend(P.cobs_encode(b"\x01\x02\x03") + b"\x00")
    framing += 1
    # Foreign version with a valid CRC.
    body = bytearray(P.pack_frame(frames["stop"])[:-2])
    body[0] = 2
    s.extend(P.cobs_encode(bytes(body) + struct.pack("<H", P.crc16(bytes(body)))) + b"\x00")
    framing += 1
    good("prediction")
    good("samples_full")
    s.extend(wire["info_cells"][:-1])  # last frame without its delimiter: still pending at the end
    return bytes(s), expect, crc, framing


def main() -> None:
    rng = random.Random(20261123)
    OUT.mkdir(parents=True, exist_ok=True)
    head = "# generated by tools/make_vectors.py from edgeseq.bridge.protocol; hex, '-' = empty\n"
    (OUT / "crc.txt").write_text(head + "# input crc16_ccitt_false\n" + "\n".join(crc_vectors(rng)) + "\n")
    (OUT / "cobs.txt").write_text(head + "# raw cobs_encoded(no delimiter)\n" + "\n".join(cobs_vectors(rng)) + "\n")
    (OUT / "frames.txt").write_text(
        head + "# name type seq timestamp_us channels sample_format payload frame(before COBS) wire(COBS + 00)\n"
        + "\n".join(frame_vectors()) + "\n")
    stream, expect, crc, framing = stream_vector(rng)
    # Which rejections are CRC and which framing depends on the bytes: let the reference decide,
    # and check here that the total is what was built.
    from edgeseq.bridge.decoder import FrameDecoder

    d = FrameDecoder()
    got = d.feed(stream)
    names = {P.pack_frame(f): k for k, f in frame_list()}
    got_names = [names[P.pack_frame(f)] for f in got]
    assert got_names == expect, (got_names, expect)
    assert d.bad_frames == crc + framing, (d.crc_errors, d.framing_errors, crc, framing)
    (OUT / "stream.bin").write_bytes(stream)
    (OUT / "stream.txt").write_text(
        head + "# decoding stream.bin in one call or byte by byte gives these frames (names from frames.txt)\n"
        f"frames {' '.join(expect)}\ncrc_errors {d.crc_errors}\nframing_errors {d.framing_errors}\n"
        f"pending_bytes {len(frames_wire_tail(stream))}\n")
    print(f"wrote {OUT}: {len(stream)} stream bytes, {len(expect)} frames, "
          f"{d.crc_errors} CRC + {d.framing_errors} framing errors")


def frames_wire_tail(stream: bytes) -> bytes:
    return stream[stream.rindex(b"\x00") + 1:]


if __name__ == "__main__":
    main()
