"""Reaching a board over the system ``ssh``: the one implementation behind ``profile --ssh`` and
``deploy``. Host-side: standard library only, imported lazily by the CLI.

Decisions:
- OpenSSH's own client as a subprocess, with argument lists (never a local shell): the user's keys,
  agent, ``~/.ssh/config`` (or ``-F FILE``: port, identity, known_hosts) and host-key policy apply
  exactly as for a manual ``ssh``. ``BatchMode=yes`` so a pipeline never waits on a password or
  a host-key prompt; host keys are checked as ssh checks them, nothing here turns
  StrictHostKeyChecking off. ``--`` ends ssh's options, and a host starting with ``-`` is refused
  outright: ``--ssh=-oProxyCommand=...`` would otherwise be an option that runs a local command.
- The board gets one line per call, every value in it quoted (``shlex.quote``); scripts run as
  ``sh -c SCRIPT`` so the login shell (fish, zsh...) does not matter.
- Files travel as a tar stream on the ssh connection's stdin, extracted by the board's ``tar``:
  one connection, no SFTP subsystem (some boards and busybox dropbear have none, and scp's
  remote-path quoting differs between its SCP and SFTP modes), no local temporary tree. The tar is
  written to an unnamed temporary file first so ssh reads it as plain stdin (no pipe to keep full
  while also draining stderr).
- A failure is reported with the board's (or ssh's) last stderr line: that is where ssh says
  "Host key verification failed." and where edgeseq, pip or tar say what went wrong.
"""

from __future__ import annotations

import shlex
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import EdgeseqError

SSH_OPTS = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]


def check_host(host: str, option: str = "--ssh") -> str:
    """``host`` when it can only be read as ``[user@]host``: not empty, no leading ``-``, no
    whitespace or control characters."""
    if not host or host.startswith("-") or any(c.isspace() or not c.isprintable() for c in host):
        raise EdgeseqError(f"{option}: {host!r} is not a USER@HOST (a host may not start with '-' or hold spaces)")
    return host


class RemoteError(EdgeseqError):
    """A command on the board (or ssh itself) failed: ``what`` was being done, ``tail`` is the last
    line it wrote on stderr (else its exit status)."""

    def __init__(self, what: str, host: str, tail: str, stdout: str = ""):
        super().__init__(f"{what} on {host} failed: {tail}")
        self.tail, self.stdout = tail, stdout


def sh(script: str) -> str:
    """One remote line running ``script`` with ``sh``, whatever the user's login shell."""
    return "sh -c " + shlex.quote(script)


@dataclass(frozen=True)
class Board:
    """``host`` reached with ``ssh`` (``config``: an ssh config file, ``-F``)."""

    host: str
    config: str | None = None
    ssh: str = "ssh"

    def __post_init__(self):
        check_host(self.host)
        if self.config is not None and not Path(self.config).is_file():
            raise EdgeseqError(f"--ssh-config {self.config}: no such file")

    def argv(self, line: str) -> list[str]:
        """The local command running ``line`` on the board."""
        config = ["-F", str(self.config)] if self.config else []
        return [self.ssh, *config, *SSH_OPTS, "--", self.host, line]

    def run(self, line: str, what: str, *, timeout: float = 600.0, stdin=None) -> str:
        """``line`` on the board; its stdout, or :class:`RemoteError` with its last stderr line.
        ``stdin``: a file object fed to the remote command (else nothing)."""
        try:
            r = subprocess.run(self.argv(line), stdin=stdin if stdin is not None else subprocess.DEVNULL,
                               capture_output=True, timeout=timeout)
        except FileNotFoundError:
            raise EdgeseqError(f"{self.ssh} not found: reaching a board needs the OpenSSH client") from None
        except subprocess.TimeoutExpired:
            raise RemoteError(what, self.host, f"timed out after {timeout:g} s") from None
        out, err = r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")
        if r.returncode != 0:
            lines = [ln.strip() for ln in err.splitlines() if ln.strip()]
            raise RemoteError(what, self.host, lines[-1] if lines else f"exit status {r.returncode}", out)
        return out

    def send(self, entries: list[tuple[str, Path]], line: str, what: str, *, timeout: float = 600.0) -> str:
        """Stream ``entries`` (name in the archive, local file or directory) as a tar on the
        stdin of ``line``, which extracts it (``tar -xf - -C DIR``)."""
        with tar_of(entries) as f:
            return self.run(line, what, timeout=timeout, stdin=f)


def _plain(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """Owned by whoever extracts it, and nothing writable by others."""
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode &= 0o755
    return info


def tar_of(entries: list[tuple[str, Path]]):
    """An unnamed temporary file holding a tar of ``entries``, rewound. GNU format: long names
    that GNU tar and busybox tar both read."""
    f = tempfile.TemporaryFile()
    try:
        with tarfile.open(fileobj=f, mode="w", format=tarfile.GNU_FORMAT) as t:
            for name, path in entries:
                t.add(str(path), arcname=name, filter=_plain)
    except OSError as exc:
        f.close()
        raise EdgeseqError(f"cannot read {exc.filename or 'a file to send'}: {exc.strerror}") from None
    f.seek(0)
    return f
