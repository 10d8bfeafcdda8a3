"""A real SSH server on 127.0.0.1 for tests that reach a "board" with the system ``ssh``.

There is no ``sshd`` in this container, so the server is asyncssh's: it speaks the SSH protocol
to OpenSSH's client (key exchange, host key, public-key authentication), and runs each command
with ``/bin/sh -c`` in a local subprocess whose stdin/stdout/stderr are redirected to the channel
(``SSHServerProcess.redirect``) and whose exit status is the channel's. The "board" is a directory:
commands run with ``HOME`` and cwd there, and ``PATH`` starting with a ``bin`` directory of
stand-ins the test provides.

``LoopbackBoard`` writes what a user would have: a client key (OpenSSH format, mode 0600), a
``known_hosts`` holding the server's host key for ``[127.0.0.1]:PORT``, and an ssh config file
(``Host board``) that names them, for ``ssh -F``.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import asyncssh


class _Server(asyncssh.SSHServer):
    """Public-key authentication only (asyncssh checks ``authorized_client_keys``), for one user."""

    def __init__(self, user: str):
        self._user = user

    def begin_auth(self, username: str) -> bool:
        if username != self._user:
            raise asyncssh.PermissionDenied(f"no such user {username!r}")
        return True

    def password_auth_supported(self) -> bool:
        return False


class LoopbackSSHD:
    """asyncssh serving ``127.0.0.1:port`` from a background thread with its own event loop."""

    def __init__(self, *, home: Path, env: dict, user: str, host_key, authorized_key: bytes):
        self.home, self.env, self.user = Path(home), dict(env), user
        self.host_key, self.authorized_key = host_key, authorized_key
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="loopback-sshd", daemon=True)
        self._server = None
        self._children: set = set()
        self.port = None

    async def _handle(self, process: asyncssh.SSHServerProcess) -> None:
        if process.command is None:  # no interactive shells: a deploy never asks for one
            process.stderr.write(b"this test server runs commands only\n")
            process.exit(1)
            return
        child = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", process.command, cwd=self.home, env=self.env, start_new_session=True,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        self._children.add(child)
        try:
            # send_eof=False: stdout and stderr both feed the channel, and the exit closes it
            await process.redirect(stdin=child.stdin, stdout=child.stdout, stderr=child.stderr, send_eof=False)
            # drain() waits until a redirected stream reaches its end, so no output is cut off
            await process.stdout.drain()
            await process.stderr.drain()
            process.exit(await child.wait())
            try:  # let the stdin forwarder finish (it may never, if the command did not read it all)
                await asyncio.wait_for(process.wait_closed(), 5)
            except (asyncio.TimeoutError, OSError):
                pass
        finally:
            self._children.discard(child)

    async def _start(self):
        keys = asyncssh.import_authorized_keys(self.authorized_key.decode())
        self._server = await asyncssh.create_server(
            lambda: _Server(self.user), "127.0.0.1", 0, server_host_keys=[self.host_key],
            authorized_client_keys=keys, process_factory=self._handle, encoding=None,
            kbdint_auth=False, password_auth=False, allow_scp=False, sftp_factory=None)
        return self._server.get_port()

    async def _stop(self):
        self._server.close()
        await self._server.wait_closed()
        for child in list(self._children):
            if child.returncode is None:
                child.kill()

    def __enter__(self) -> "LoopbackSSHD":
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)
        return self

    def __exit__(self, *exc) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(30)
            self.loop.close()


class LoopbackBoard:
    """A board directory served over SSH on loopback, and the client files that reach it as ``board``."""

    def __init__(self, root: Path, env: dict, user: str = "pi"):
        self.root = Path(root)
        self.home = self.root / "home"
        self.client = self.root / "client"
        self.home.mkdir(parents=True, exist_ok=True)
        self.client.mkdir(parents=True, exist_ok=True)
        self.user = user
        self.host = "board"
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        key = asyncssh.generate_private_key("ssh-ed25519")
        self.identity = self.client / "id_ed25519"
        key.write_private_key(str(self.identity))  # OpenSSH format
        os.chmod(self.identity, 0o600)
        self.sshd = LoopbackSSHD(home=self.home, env={**env, "HOME": str(self.home), "USER": user, "LOGNAME": user},
                                 user=user, host_key=self.host_key, authorized_key=key.export_public_key())
        self.config = self.known_hosts = None

    def ssh_config(self, name: str, known_hosts_key) -> Path:
        """An ssh config (``Host board``) trusting ``known_hosts_key`` as the board's host key."""
        known = self.client / f"{name}.known_hosts"
        known.write_bytes(f"[127.0.0.1]:{self.sshd.port} ".encode() + known_hosts_key.export_public_key())
        config = self.client / f"{name}.config"
        config.write_text(f"""Host {self.host}
  HostName 127.0.0.1
  Port {self.sshd.port}
  User {self.user}
  IdentityFile {self.identity}
  IdentitiesOnly yes
  UserKnownHostsFile {known}
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  UpdateHostKeys no
  PasswordAuthentication no
  KbdInteractiveAuthentication no
""")
        return config

    def __enter__(self) -> "LoopbackBoard":
        self.sshd.__enter__()
        self.config = self.ssh_config("board", self.host_key)
        return self

    def __exit__(self, *exc) -> None:
        self.sshd.__exit__(*exc)


_STANDINS = {
    "systemctl": """# Stand-in for systemctl: there is no systemd in this container. Logs its arguments and
# answers is-active (active once a restart was asked for).
echo "systemctl $*" >> "{log}"
case " $* " in
  *" is-active "*) if grep -q "^systemctl --user restart" "{log}"; then echo active; exit 0; fi
                   echo inactive; exit 3 ;;
esac
exit 0
""",
    "journalctl": """# Stand-in for journalctl: logs its arguments and prints canned journal lines.
echo "journalctl $*" >> "{log}"
echo "Jan 01 00:00:00 board systemd[411]: Started edgeseq-serve.service - edgeseq serve."
echo 'Jan 01 00:00:03 board edgeseq[4242]: {{"t": 1.02, "label": "N"}}'
""",
    "loginctl": """# Stand-in for loginctl: refuses linger, as a board may for ordinary users.
echo "loginctl $*" >> "{log}"
echo "Could not enable linger: Access denied" >&2
exit 1
""",
}


def board_env(root: Path) -> dict:
    """The environment board commands run in: ``PATH`` = the stand-ins (``root/bin``, and a
    ``python3`` that is this interpreter's base Python, without the test venv) + this machine's
    PATH without the test venv; what pip needs to reach this machine's package mirror (``PIP_*``,
    the user's pip config copied into the board's home, XDG config dirs, certificates)."""
    import shutil
    import sys

    root = Path(root)
    bin_dir, home, log = root / "bin", root / "home", root / "standins.log"
    bin_dir.mkdir(parents=True, exist_ok=True)
    home.mkdir(parents=True, exist_ok=True)
    log.touch()
    for name, body in {**_STANDINS, "python3": 'exec "{py}" "$@"\n'}.items():
        f = bin_dir / name
        f.write_text("#!/bin/sh\n" + body.format(log=log, py=getattr(sys, "_base_executable", sys.executable)))
        f.chmod(0o755)
    venv_bin = Path(sys.prefix) / "bin" if sys.prefix != sys.base_prefix else None
    path = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d and Path(d) != venv_bin]
    for rel in (".config/pip/pip.conf", ".pip/pip.conf"):
        src = Path.home() / rel
        if src.is_file():
            (home / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, home / rel)
    keep = ("LANG", "LC_ALL", "TMPDIR", "XDG_CONFIG_DIRS", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE")
    env = {k: v for k, v in os.environ.items() if k in keep or k.startswith("PIP_")}
    env.update(PATH=os.pathsep.join([str(bin_dir), *path]), SHELL="/bin/sh", LANG=env.get("LANG", "C.UTF-8"))
    return env
