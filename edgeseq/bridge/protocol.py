"""The wire format of ``firmware_bridge/PROTOCOL.md``: frames, COBS, CRC and message payloads.

Standard library only. Bytes become a :class:`Frame` here and a frame becomes meaning (samples,
device info, a prediction) through the ``*_payload`` / ``parse_*`` pairs; the C side in
``firmware_bridge/`` implements the same layout and both are checked on the shared test vectors.
"""

from __future__ import annotations

import binascii
import struct
from dataclasses import dataclass
from functools import cached_property

import numpy as np

VERSION = 1
HEADER = struct.Struct("<BBHIBB")  # version, type, seq, timestamp_us, channels, sample_format
HEADER_SIZE = HEADER.size  # 10
CRC_SIZE = 2
MAX_FRAME = 254  # unencoded, CRC included
MAX_PAYLOAD = MAX_FRAME - HEADER_SIZE - CRC_SIZE  # 242
# COBS adds one code byte per started run of 254 non-zero bytes, plus a final 0x01 when the data
# ends on a full run: 254 non-zero bytes encode to 256. Then the 0x00 delimiter.
MAX_WIRE = MAX_FRAME + 3
DELIMITER = b"\x00"

# Message types. Device to host below 0x10, host to device from 0x10.
INFO, SAMPLES, HEARTBEAT, ERROR = 0x01, 0x02, 0x03, 0x04
START, STOP, PREDICTION = 0x10, 0x11, 0x12
TYPE_NAMES = {INFO: "info", SAMPLES: "samples", HEARTBEAT: "heartbeat", ERROR: "error",
              START: "start", STOP: "stop", PREDICTION: "prediction"}

# Sample formats: code -> (name, numpy little-endian dtype).
FORMATS = {0: ("none", None), 1: ("int16", "<i2"), 2: ("int32", "<i4"), 3: ("float32", "<f4")}
FORMAT_CODES = {name: code for code, (name, _) in FORMATS.items()}

ERROR_CODES = {1: "overrun", 2: "sensor", 3: "command", 4: "other"}
NO_LABEL = 0xFF


class ProtocolError(ValueError):
    """A frame that cannot be what it claims to be; the message says what and where."""


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final xor): check value
    0x29B1 for b"123456789". ``binascii.crc_hqx`` is exactly this CRC when given init 0xFFFF."""
    return binascii.crc_hqx(data, 0xFFFF)


def cobs_encode(data: bytes) -> bytes:
    """Consistent-overhead byte stuffing: no 0x00 in the output, one code byte per run of up to
    254 non-zero bytes (Cheshire & Baker 1999). Does not append the delimiter."""
    out = bytearray()
    for part in bytes(data).split(b"\x00"):
        # A run of 254 non-zero bytes gets code 0xFF and no implied zero after it.
        while len(part) >= 254:
            out.append(0xFF)
            out += part[:254]
            part = part[254:]
        out.append(len(part) + 1)
        out += part
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    """Inverse of :func:`cobs_encode` for one frame without its delimiter."""
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        code = data[i]
        if code == 0:
            raise ProtocolError(f"COBS: zero byte inside a frame at offset {i}")
        end = i + code
        if end > n:
            raise ProtocolError(f"COBS: code {code} at offset {i} runs past the frame end ({n} bytes)")
        block = data[i + 1:end]
        if 0 in block:
            raise ProtocolError(f"COBS: zero byte inside a frame at offset {i + 1 + block.index(0)}")
        out += block
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


@dataclass(frozen=True)
class Frame:
    type: int
    seq: int
    timestamp_us: int = 0
    channels: int = 0
    sample_format: int = 0
    payload: bytes = b""
    version: int = VERSION

    @property
    def type_name(self) -> str:
        return TYPE_NAMES.get(self.type, f"0x{self.type:02x}")


def pack_frame(frame: Frame) -> bytes:
    """Header + payload + CRC, before COBS."""
    if len(frame.payload) > MAX_PAYLOAD:
        raise ProtocolError(f"payload of {len(frame.payload)} bytes exceeds the maximum {MAX_PAYLOAD}")
    body = HEADER.pack(frame.version, frame.type, frame.seq & 0xFFFF, frame.timestamp_us & 0xFFFFFFFF,
                       frame.channels, frame.sample_format) + bytes(frame.payload)
    return body + struct.pack("<H", crc16(body))


def encode_frame(frame: Frame) -> bytes:
    """What goes on the wire: COBS of :func:`pack_frame` and the 0x00 delimiter."""
    return cobs_encode(pack_frame(frame)) + DELIMITER


def unpack_frame(raw: bytes) -> Frame:
    """A frame from its unencoded bytes; :class:`ProtocolError` (``.kind`` = "crc", "short",
    "version") when it is not one."""
    if len(raw) < HEADER_SIZE + CRC_SIZE:
        raise _err("short", f"frame of {len(raw)} bytes is shorter than header + CRC ({HEADER_SIZE + CRC_SIZE})")
    if len(raw) > MAX_FRAME:
        raise _err("long", f"frame of {len(raw)} bytes is longer than the maximum {MAX_FRAME}")
    body, (crc,) = raw[:-CRC_SIZE], struct.unpack("<H", raw[-CRC_SIZE:])
    if crc16(body) != crc:
        raise _err("crc", f"CRC mismatch: frame says 0x{crc:04x}, bytes give 0x{crc16(body):04x}")
    version, typ, seq, ts, ch, fmt = HEADER.unpack_from(body)
    if version != VERSION:
        raise _err("version", f"protocol version {version}, this host speaks {VERSION}")
    return Frame(typ, seq, ts, ch, fmt, bytes(body[HEADER_SIZE:]), version)


def _err(kind: str, msg: str) -> ProtocolError:
    e = ProtocolError(msg)
    e.kind = kind
    return e


# ---- payloads --------------------------------------------------------------------------------

@dataclass(frozen=True)
class DeviceInfo:
    device_id: str
    sample_rate: float
    channels: int
    sample_format: int
    units: str
    scale: tuple
    offset: tuple

    @cached_property
    def _affine(self) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.scale, np.float64), np.asarray(self.offset, np.float64)

    def to_physical(self, raw: np.ndarray) -> np.ndarray:
        """``raw * scale + offset`` per channel, float64."""
        scale, offset = self._affine
        return raw.astype(np.float64) * scale + offset


def _short_str(s: str, what: str) -> bytes:
    b = s.encode("ascii")
    if len(b) > 255:
        raise ProtocolError(f"{what} longer than 255 bytes")
    return bytes([len(b)]) + b


def _read_str(p: bytes, i: int, what: str) -> tuple[str, int]:
    if i >= len(p):
        raise _err("payload", f"{what}: length byte missing at offset {i}")
    n = p[i]
    if i + 1 + n > len(p):
        raise _err("payload", f"{what}: {n} bytes announced at offset {i}, {len(p) - i - 1} present")
    try:
        return p[i + 1:i + 1 + n].decode("ascii"), i + 1 + n
    except UnicodeDecodeError:
        raise _err("payload", f"{what} is not ASCII") from None


def info_payload(device_id: str, sample_rate: float, scale, offset, units: str) -> bytes:
    scale, offset = [float(s) for s in scale], [float(o) for o in offset]
    if len(scale) != len(offset):
        raise ProtocolError("scale and offset need one value per channel")
    return (struct.pack("<f", sample_rate) + struct.pack(f"<{len(scale)}f", *scale)
            + struct.pack(f"<{len(offset)}f", *offset) + _short_str(device_id, "device id")
            + _short_str(units, "units"))


def parse_info(frame: Frame) -> DeviceInfo:
    p, c = frame.payload, frame.channels
    need = 4 + 8 * c
    if frame.sample_format not in FORMATS or frame.sample_format == 0 or c == 0:
        raise _err("payload", f"device info: {c} channels of format {frame.sample_format} cannot carry samples")
    if len(p) < need:
        raise _err("payload", f"device info for {c} channels needs at least {need + 2} bytes, got {len(p)}")
    (rate,) = struct.unpack_from("<f", p)
    scale = struct.unpack_from(f"<{c}f", p, 4)
    offset = struct.unpack_from(f"<{c}f", p, 4 + 4 * c)
    dev, i = _read_str(p, need, "device id")
    units, _ = _read_str(p, i, "units")
    if not (np.isfinite(rate) and rate > 0):
        raise _err("payload", f"device info: sample rate {rate} is not a positive number")
    return DeviceInfo(dev, float(rate), c, frame.sample_format, units, scale, offset)


def samples_payload(first_index: int, samples: np.ndarray, sample_format: int) -> bytes:
    """``samples`` (n, channels) after the u32 index of its first sample."""
    dt = FORMATS[sample_format][1]
    return struct.pack("<I", first_index & 0xFFFFFFFF) + np.ascontiguousarray(samples, dtype=dt).tobytes()


def parse_samples(frame: Frame) -> tuple[int, np.ndarray]:
    """``(first_index, samples (n, channels))`` in the frame's raw format."""
    fmt = FORMATS.get(frame.sample_format)
    if fmt is None or fmt[1] is None or frame.channels == 0:
        raise _err("payload", f"samples frame with {frame.channels} channels of format {frame.sample_format}")
    p = frame.payload
    width = frame.channels * np.dtype(fmt[1]).itemsize
    if len(p) < 4 + width or (len(p) - 4) % width:
        raise _err("payload", f"samples payload of {len(p)} bytes is not a u32 index plus whole samples "
                              f"of {frame.channels} x {fmt[0]}")
    (first,) = struct.unpack_from("<I", p)
    return first, np.frombuffer(p, dtype=fmt[1], offset=4).reshape(-1, frame.channels)


def heartbeat_payload(next_index: int) -> bytes:
    return struct.pack("<I", next_index & 0xFFFFFFFF)


def parse_heartbeat(frame: Frame) -> int:
    if len(frame.payload) != 4:
        raise _err("payload", f"heartbeat payload must be 4 bytes, got {len(frame.payload)}")
    return struct.unpack("<I", frame.payload)[0]


def error_payload(code: int, message: str) -> bytes:
    return bytes([code]) + message.encode("ascii", "replace")[:MAX_PAYLOAD - 1]


def parse_error(frame: Frame) -> tuple[int, str]:
    if not frame.payload:
        raise _err("payload", "error frame without a code")
    return frame.payload[0], frame.payload[1:].decode("ascii", "replace")


def prediction_payload(sample_index: int, label_index: int, score: float, label: str) -> bytes:
    return struct.pack("<IBf", sample_index & 0xFFFFFFFF, label_index, score) + _short_str(label[:32], "label")


def parse_prediction(frame: Frame) -> tuple[int, int, float, str]:
    p = frame.payload
    if len(p) < 10:
        raise _err("payload", f"prediction payload needs at least 10 bytes, got {len(p)}")
    idx, lab, score = struct.unpack_from("<IBf", p)
    label, _ = _read_str(p, 9, "label")
    return idx, lab, score, label
