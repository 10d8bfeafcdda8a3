"""``edgeseq profile --ssh user@host BUNDLE``: profile on the board itself, with its own runtime.

The bundle is copied to a fresh temporary directory on the board (``scp -r``), the board's
``python3 -m edgeseq profile`` runs there and prints its JSON, which comes back over ssh; the
directory is removed either way. The board needs edgeseq with its runtime installed
(``pip install "edgeseq[device]"``), and ssh keys (BatchMode: no password prompts in a pipeline).
"""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

from ..errors import EdgeseqError

SSH_OPTS = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]


def check_host(host: str) -> str:
    """``host`` when it can only be read as ``[user@]host``: not empty, no leading ``-``, no
    whitespace or control characters."""
    if not host or host.startswith("-") or any(c.isspace() or not c.isprintable() for c in host):
        raise EdgeseqError(f"--ssh: {host!r} is not a USER@HOST (a host may not start with '-' or hold spaces)")
    return host


def commands(host: str, bundle, remote_dir: str, profile_args: list[str], *, ssh: str = "ssh", scp: str = "scp",
             python: str = "python3") -> dict:
    """The commands, as argument lists (no local shell); the remote side gets one quoted line.

    ``--`` ends the options of ssh and scp before the destination, and a host starting with ``-``
    is refused outright: ``--ssh=-oProxyCommand=...`` would otherwise be an ssh option that runs
    a local command, not a host name."""
    check_host(host)
    name = Path(bundle).name
    remote_bundle = f"{remote_dir}/{name}"
    line = " ".join(shlex.quote(a) for a in [python, "-m", "edgeseq", "profile", remote_bundle, *profile_args,
                                               "--json", "-"])
    return {
        "mkdir": [ssh, *SSH_OPTS, "--", host, "mktemp -d /tmp/edgeseq-profile.XXXXXX"],
        "copy": [scp, *SSH_OPTS, "-q", "-r", "--", str(bundle), f"{host}:{remote_dir}/"],
        "profile": [ssh, *SSH_OPTS, "--", host, line],
        "cleanup": [ssh, *SSH_OPTS, "--", host, f"rm -rf {shlex.quote(remote_dir)}"],
    }


def _run(cmd: list[str], what: str, host: str, timeout: float) -> str:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise EdgeseqError(f"{cmd[0]} not found: --ssh needs the OpenSSH client") from None
    except subprocess.TimeoutExpired:
        raise EdgeseqError(f"{what} on {host} timed out after {timeout:g} s") from None
    if r.returncode != 0:
        tail = (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1]
        raise EdgeseqError(f"{what} on {host} failed: {tail}")
    return r.stdout


def profile_remote(host: str, bundle, profile_args: list[str], *, ssh: str = "ssh", scp: str = "scp",
                   python: str = "python3", timeout: float = 600.0) -> dict:
    check_host(host)
    if not Path(bundle).is_dir():
        raise EdgeseqError(f"bundle {bundle} not found")
    remote_dir = _run(commands(host, bundle, "", [], ssh=ssh)["mkdir"], "creating a directory", host, 60).strip()
    if not remote_dir.startswith("/tmp/edgeseq-profile."):
        raise EdgeseqError(f"unexpected answer from mktemp on {host}: {remote_dir[:80]!r}")
    cmd = commands(host, bundle, remote_dir, profile_args, ssh=ssh, scp=scp, python=python)
    try:
        _run(cmd["copy"], "copying the bundle", host, timeout)
        out = _run(cmd["profile"], "profiling", host, timeout)
    finally:
        try:
            _run(cmd["cleanup"], "removing the copy", host, 60)
        except EdgeseqError:
            pass
    try:
        res = json.loads(out)
    except json.JSONDecodeError:
        raise EdgeseqError(f"the profiler on {host} did not print JSON: {out.strip()[:120]!r}") from None
    res["host"] = host
    return res
