"""Where bytes enter: a serial port read in a thread (reconnecting when it vanishes), or a recorded
raw stream replayed from a file.

Both hand out ``(kind, data, arrival)`` items: ``("data", bytes, t)`` as read, ``("connect", n, t)``
after every (re)connection (what follows is a new byte stream: reset the decoder) and
``("end", reason, t)`` once nothing more will come. ``arrival`` is ``time.perf_counter()`` at the
read, the start of the latency a prediction reports.
"""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path

from ..errors import EdgeseqError


class _Recorder:
    """The raw byte stream as read, appended through ``outputs.Appender`` (target checked before
    the port opens, flushed at least once a second, a full disk one line), fsynced at the end."""

    def __init__(self, path):
        from ..outputs import Appender

        self._out = Appender(path, "raw recording (--record)", binary=True)
        self.path = self._out.path
        self.bytes = 0

    def write(self, data: bytes) -> None:
        self._out.write(data)
        self.bytes += len(data)

    def close(self) -> None:
        self._out.close(sync=True)


class SerialLink:
    """A serial port (pyserial) read in a background thread.

    When the port vanishes (USB unplugged, the device reset, a pseudo-terminal closed) the thread
    closes it and retries with exponential back-off from ``backoff[0]`` to ``backoff[1]`` seconds;
    ``on_connect(link)`` runs after every successful open (the bridge sends ``START`` there).
    With ``give_up_s`` the link ends after the port has been gone that long.

    The queue to the consumer is bounded and ``put`` blocks when it is full, so a slow consumer
    slows the reads (the OS buffer, then the device, see the pressure) instead of dropping bytes.
    """

    def __init__(self, port: str, *, baudrate: int = 115200, on_connect=None, record=None,
                 backoff=(0.05, 2.0), give_up_s: float | None = None, max_queue: int = 4096):
        try:
            import serial  # noqa: F401  (device dependency, imported when a port is opened)
        except ImportError:
            raise EdgeseqError("reading a serial port needs pyserial: pip install pyserial "
                               "(or the 'device' extra)") from None
        self.port, self.baudrate = port, int(baudrate)
        self.on_connect = on_connect
        self.backoff = backoff
        self.give_up_s = give_up_s
        self._q: queue.Queue = queue.Queue(maxsize=max_queue)
        self._stop = threading.Event()
        self._ser = None
        self._wlock = threading.Lock()
        self._rec = _Recorder(record) if record else None
        self.connects = self.disconnects = 0
        self.bytes = self.write_failures = 0
        self.last_error: str | None = None
        self.in_use: str | None = None
        self._thread = threading.Thread(target=self._run, name=f"edgeseq-serial-{port}", daemon=True)

    def start(self) -> "SerialLink":
        self._thread.start()
        return self

    def get(self, timeout: float):
        try:
            return self._q.get(timeout=timeout)
        except queue.Empty:
            return None

    def write(self, data: bytes) -> bool:
        """Best effort: False (and counted) when the port is not open right now."""
        with self._wlock:
            ser = self._ser
            if ser is None:
                self.write_failures += 1
                return False
            try:
                ser.write(data)
                return True
            except Exception as e:  # noqa: BLE001  (pyserial raises several types for a vanished port)
                self.write_failures += 1
                self.last_error = f"write to {self.port} failed: {e}"
                return False

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        with self._wlock:
            if self._ser is not None:
                try:
                    self._ser.close()
                except Exception:  # noqa: BLE001
                    pass
                self._ser = None
        if self._rec:
            self._rec.close()

    def _put(self, item) -> None:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _open(self):
        import serial

        try:
            # Exclusive (flock): a second reader on the same port would silently take half the bytes.
            return serial.Serial(self.port, self.baudrate, timeout=0.05, write_timeout=1.0, exclusive=True)
        except (serial.SerialException, OSError, ValueError) as e:
            self.last_error = f"cannot open {self.port}: {e}"
            if "exclusively lock" in str(e):
                self.in_use = f"{self.port} is in use by another process (opened exclusively); stop it first"
            return None

    def _run(self) -> None:
        try:
            self._serve_port()
        except EdgeseqError as e:  # the raw recording failed (a full disk): end the run with it
            self._put(("error", str(e), time.perf_counter()))

    def _serve_port(self) -> None:
        import serial

        delay = self.backoff[0]
        gone_since = time.monotonic()
        while not self._stop.is_set():
            ser = self._open()
            if ser is None and self.in_use:
                self._put(("error", self.in_use, time.perf_counter()))
                return
            if ser is None:
                if self.give_up_s is not None and time.monotonic() - gone_since > self.give_up_s:
                    self._put(("end", f"{self.port} gone for {self.give_up_s:g} s ({self.last_error})",
                               time.perf_counter()))
                    return
                self._stop.wait(delay)
                delay = min(delay * 2, self.backoff[1])
                continue
            delay = self.backoff[0]
            self.connects += 1
            with self._wlock:
                self._ser = ser
            self._put(("connect", self.connects, time.perf_counter()))
            if self.on_connect:
                self.on_connect(self)
            try:
                while not self._stop.is_set():
                    data = ser.read(max(1, ser.in_waiting))
                    if data:
                        t = time.perf_counter()
                        if self._rec:
                            self._rec.write(data)
                        self.bytes += len(data)
                        self._put(("data", data, t))
            except (serial.SerialException, OSError, TypeError) as e:
                # TypeError: pyserial 3.5 can fail inside in_waiting on a closed descriptor.
                self.last_error = f"{self.port} vanished: {e}"
                self.disconnects += 1
            with self._wlock:
                self._ser = None
            try:
                ser.close()
            except Exception:  # noqa: BLE001
                pass
            gone_since = time.monotonic()


class FileLink:
    """A raw stream recorded with ``serve --record`` (or any file of wire bytes), replayed as fast
    as it is consumed; one connection, then the end."""

    def __init__(self, path, *, chunk: int = 4096, record=None):
        self.path = Path(path)
        try:
            self._f = open(self.path, "rb")
        except OSError as e:
            raise EdgeseqError(f"cannot read {self.path}: {e.strerror}") from None
        self.chunk = chunk
        self._state = 0
        self._rec = _Recorder(record) if record else None
        self.connects, self.disconnects, self.bytes, self.write_failures = 1, 0, 0, 0
        self.last_error = None

    def start(self) -> "FileLink":
        return self

    def get(self, timeout: float):
        if self._state == 0:
            self._state = 1
            return ("connect", 1, time.perf_counter())
        if self._state == 2:
            return None
        data = self._f.read(self.chunk)
        if not data:
            self._state = 2
            return ("end", f"end of {self.path}", time.perf_counter())
        self.bytes += len(data)
        if self._rec:
            self._rec.write(data)
        return ("data", data, time.perf_counter())

    def write(self, data: bytes) -> bool:
        return False  # a recording has no device to answer

    def close(self) -> None:
        self._f.close()
        if self._rec:
            self._rec.close()


def available_ports() -> list[str]:
    """The serial ports pyserial finds on this machine now (USB, ACM and built-in UARTs, with
    their /dev/serial/by-id links; not pseudo-terminals), for the line that says a port is not
    there. Listing is best effort: a platform where it fails still gets the line, without names."""
    try:
        from serial.tools import list_ports

        return sorted({p.device for p in list_ports.comports(include_links=True)})
    except (ImportError, OSError):
        return []


def port_missing(port: str) -> str | None:
    """Why ``port`` cannot be a serial port here, naming those that exist (None: it exists)."""
    import os

    if os.path.exists(port):
        return None
    ports = available_ports()
    if port in ports:  # COM3 on Windows is no path
        return None
    return f"{port} does not exist (serial ports here: {', '.join(ports) if ports else 'none found'})"


def open_link(port: str, **kw):
    """A regular file replays a recording; anything else is a serial port (which may not exist
    yet: the link waits for it)."""
    p = Path(port)
    if p.is_file():
        return FileLink(p, record=kw.get("record"))
    return SerialLink(port, **kw)
