"""A real OpenSSH server on a loopback port, for tests and benchmarks.

:class:`OpenSSHServer` runs the system's own ``/usr/sbin/sshd`` (not a Python
imitation) on ``127.0.0.1`` and a free port, with a configuration written from
scratch: public-key logins only, ``UsePAM no``, no ``AcceptEnv``, a bounded
``MaxSessions``. It creates two dedicated local users (a login user and a second
one it may ``sudo`` to), generates every key it needs, and can kill the
per-connection ``sshd`` processes or the whole server to simulate failures.

It changes the machine (users, a sudoers rule, ``/run/sshd``), so it needs root,
and it needs OpenSSH's server and ``ssh-keygen``; ``make test`` installs the
``openssh-server`` and ``sudo`` packages when run as root.  Without them
:meth:`OpenSSHServer.start` raises :class:`SSHServerUnavailable`, which test
suites turn into a skip.

The class is synchronous (``subprocess`` and ``/proc``), so it can serve a
session-scoped pytest fixture as well as a benchmark script::

    with OpenSSHServer(Path(tempfile.mkdtemp())) as server:
        config = server.sandbox_config()
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import random
import re
import select
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import weakref
from collections.abc import Callable
from pathlib import Path

from corral._core._procfs import live_descendants, pids, read_stat

__all__ = ["DEFAULT_USERS", "OpenSSHServer", "SSHServerUnavailable"]

_SSHD = "/usr/sbin/sshd"
_PRIVSEP_DIR = Path("/run/sshd")
_SUDOERS_DIRECTORY = Path("/etc/sudoers.d")
_INSTALL_HINT = "`make test` installs openssh-server and sudo when run as root"
#: Names of the executables of OpenSSH's per-connection server processes
#: (``sshd-session``/``sshd-auth`` since OpenSSH 9.8/10.0, a re-executed ``sshd`` before).
_SESSION_EXES = frozenset({"sshd", "sshd-session", "sshd-auth"})
_USERNAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_START_TIMEOUT = 10.0
_LOCK_DIRECTORY = Path("/run/lock")
_LOCK_TIMEOUT = 30.0
_KILL_TIMEOUT = 5.0
_POLL_INTERVAL = 0.01
#: Ports below the ephemeral range that a server may take, and how many to try.
_PORT_SPAN = 8000
_PORT_TRIES = 200
#: The users a server takes by default: the first (login, other) pair nobody holds.
DEFAULT_USERS = [(f"corral-ssh-test{i}", f"corral-ssh-other{i}") for i in range(8)]


class SSHServerUnavailable(RuntimeError):
    """sshd cannot be run here (not root, sshd missing, ...); the message says why."""


class OpenSSHServer:
    """A real OpenSSH ``sshd`` listening on ``127.0.0.1`` for tests and benchmarks.

    Everything generated (keys, ``sshd_config``, pid file, log file,
    ``authorized_keys``) lives under *directory*. Outside it, :meth:`start`
    creates the two users if missing, writes the sudoers rule
    ``/etc/sudoers.d/<username>`` (``corral-ssh-test`` by default; one file per
    login user, so that servers for other users do not overwrite it), creates
    ``/run/sshd`` and, since sshd reads ``authorized_keys`` with the user's
    permissions, adds the search bit for others to *directory*'s ancestors that
    lack it.

    Attributes:
        directory: Where everything generated lives.
        host: The address sshd listens on, ``"127.0.0.1"``.
        username: The login user; :attr:`client_key` is authorised for it and it
            may run anything as :attr:`other_username` with ``sudo -n``.
        other_username: A second user, the only one :attr:`username` may sudo to.
        client_key: Private ed25519 key (no passphrase) authorised for :attr:`username`.
        unauthorized_key: Private ed25519 key authorised for nobody.
        known_hosts: A known_hosts file with the server's host key for its address.
        wrong_known_hosts: The same host pattern with a different ed25519 key.
        log_file: sshd's log (``LogLevel VERBOSE`` unless told), appended to across restarts.
        log_level: sshd's ``LogLevel``.
        config_file: The generated ``sshd_config``.
    """

    def __init__(
        self,
        directory: Path,
        *,
        username: str | None = None,
        other_username: str | None = None,
        max_sessions: int = 10,
        own_users: bool = False,
        log_level: str = "VERBOSE",
    ) -> None:
        """Describe a server; nothing happens on the machine before :meth:`start`.

        Args:
            directory: Where to put keys, configuration and logs (created if missing).
            username: The login user (created if missing). By default the first
                :meth:`start` takes the first pair of :data:`DEFAULT_USERS` that
                no other process holds, so concurrent test sessions on one
                machine never share (or kill) each other's users.
            other_username: The user :attr:`username` may sudo to (created if
                missing); given with *username*, or not at all.
            max_sessions: sshd's ``MaxSessions``: channels allowed per connection.
            own_users: With the default users, take a pair that no server of
                this process holds either (by default a second server of one
                process shares the first one's pair). Since :meth:`stop`
                kills every process of its users, this lets a second server
                (a ProxyJump host, say) stop without killing the sessions of
                the first.
            log_level: sshd's ``LogLevel`` (``DEBUG1`` logs each forwarded
                connection, ``direct-tcpip`` to its target).

        Raises:
            ValueError: A username is not a plain lowercase POSIX name, both are
                the same, only one is given (or given with *own_users*),
                *max_sessions* is not positive or *log_level* not a word.
        """
        if (username is None) != (other_username is None):
            raise ValueError("give both username and other_username, or neither")
        if own_users and username is not None:
            raise ValueError("own_users picks the users: give no username with it")
        if not log_level.isalnum():
            raise ValueError(f"not an sshd LogLevel: {log_level!r}")
        self._own_users = own_users
        self.log_level = log_level
        self._auto_users = username is None
        if username is None or other_username is None:
            username, other_username = DEFAULT_USERS[0]
        for name in (username, other_username):
            if not _USERNAME.fullmatch(name):
                raise ValueError(f"not a plain POSIX username: {name!r}")
        if username == other_username:
            raise ValueError("username and other_username must differ")
        if max_sessions < 1:
            raise ValueError(f"max_sessions must be positive, got {max_sessions}")
        self.directory = Path(directory).absolute()
        self.host = "127.0.0.1"
        self.username = username
        self.other_username = other_username
        self.max_sessions = max_sessions
        self.client_key = self.directory / "client_ed25519"
        self.unauthorized_key = self.directory / "unauthorized_ed25519"
        self.known_hosts = self.directory / "known_hosts"
        self.wrong_known_hosts = self.directory / "wrong_known_hosts"
        self.log_file = self.directory / "sshd.log"
        self.config_file = self.directory / "sshd_config"
        self._host_key = self.directory / "ssh_host_ed25519_key"
        self._wrong_host_key = self.directory / "wrong_host_ed25519_key"
        # sshd reads authorized_keys as the user logging in, so every directory
        # above it must stay searchable by that user. Not under *directory*:
        # a pytest session starting anywhere on the machine takes the search
        # permission off its own root (/tmp/pytest-of-USER, chmod 0700), and
        # every later login to a server whose keys live below it was refused.
        self._authorized_keys = Path(tempfile.mkdtemp(prefix="corral-sshd-keys-"))
        weakref.finalize(self, shutil.rmtree, self._authorized_keys, ignore_errors=True)
        self._pid_file = self.directory / "sshd.pid"
        self._port: int | None = None
        self._log_offset = 0
        self._prepared = False
        self._locked = False
        self._port_lock: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    # -- public API ---------------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port, chosen (free) at the first :meth:`start` and kept afterwards.

        Raises:
            RuntimeError: The server was never started.
        """
        if self._port is None:
            raise RuntimeError("OpenSSHServer.port: the server was never started")
        return self._port

    @property
    def running(self) -> bool:
        """Whether the listening sshd process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start sshd, and wait until its port answers with an SSH banner.

        Idempotent. The first call checks the machine, creates the users, the
        sudoers rule, the keys and the configuration; later calls (after
        :meth:`stop`) reuse the port and the keys.

        Since :meth:`stop` kills every process of the two users, the first call
        also takes a machine-wide lock on them (waiting up to 30 s for another
        process, e.g. a concurrent test session, to release it). The lock is
        shared by the servers of one process, and held until :meth:`__exit__`
        or the end of the process.

        Raises:
            SSHServerUnavailable: sshd cannot run here; the message says why
                (and includes sshd's output or log when sshd itself failed, or
                which process holds the users).
        """
        if self.running:
            return
        self._check_machine()
        if not self._locked:
            if self._auto_users:
                self.username, self.other_username = _lock_free_pair(own=self._own_users)
            else:
                _lock_users(self.username, self.other_username)
            self._locked = True
        if not self._prepared:
            self._prepare()
            self._prepared = True
        if self._port is not None:
            self._launch()
            return
        # First start: a port outside the ephemeral range (no client connection
        # is ever given it) that no other test sshd of this machine holds, kept
        # across restarts. Something else may still take it before sshd binds it.
        for attempt in range(3):
            self._port, self._port_lock = _reserve_port(self.host)
            try:
                self._write_port_files()
                self._launch()
            except SSHServerUnavailable:
                in_use = "Address already in use" in self._read_log()
                self._release_port()
                if attempt == 2 or not in_use:
                    raise
            else:
                return

    def stop(self) -> None:
        """Kill sshd and everything that ran through it; wait until it is all gone.

        SIGKILLs the listener and all its descendants (the per-connection sshd
        processes and what they started), every per-connection sshd process of
        this server that lost its parent, then every process of :attr:`username`
        and :attr:`other_username` (whether it came through this server or not).
        The users, keys and port stay, so :meth:`start` brings the same server back.

        Raises:
            RuntimeError: Some process survived SIGKILL for several seconds.
        """
        process, self._process = self._process, None
        if process is not None:
            process.kill()  # our child: its pid stays ours until we reap it
        deadline = time.monotonic() + _KILL_TIMEOUT
        while True:
            found = set(self._marked_processes()) | set(self._processes_of_users())
            if process is not None and process.poll() is None:
                found.update(live_descendants(process.pid))
            if not found:
                break
            left = _kill_and_wait(found, self._is_ours, deadline)
            if left:
                raise RuntimeError(f"OpenSSHServer.stop: processes survived SIGKILL: {left}")
        if process is not None:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise RuntimeError(
                    f"OpenSSHServer.stop: sshd (pid {process.pid}) survived SIGKILL"
                ) from None

    def kill_sessions(self) -> None:
        """SIGKILL the per-connection sshd processes; the listener keeps running.

        What the sessions started (shells, commands) is not killed, as after a
        crash of sshd: it lives on, orphaned, until it exits by itself or
        :meth:`stop` kills it. Returns when the killed processes are gone.

        Raises:
            RuntimeError: Some sshd process survived SIGKILL for several seconds.
        """
        deadline = time.monotonic() + _KILL_TIMEOUT
        while found := set(self.session_processes()):
            left = _kill_and_wait(found, self._is_session, deadline)
            if left:
                raise RuntimeError(f"OpenSSHServer.kill_sessions: processes survived: {left}")

    def _is_ours(self, pid: int) -> bool:
        """Whether *pid* is one of this server's sshd processes, or runs as one of its users."""
        if self._is_session(pid):
            return True
        users = {pwd.getpwnam(name).pw_uid for name in (self.username, self.other_username)}
        return bool(users & set(_uids(pid) or ()))

    def _is_session(self, pid: int) -> bool:
        """Whether *pid* is an sshd process logging to this server's log (not the listener)."""
        listener = self._process.pid if self._process is not None else None
        if pid == listener or not _runs_sshd(pid):
            return False
        try:
            return os.readlink(f"/proc/{pid}/fd/2") == str(self.log_file)
        except OSError:
            return False

    def session_processes(self) -> list[int]:
        """Live PIDs of this server's per-connection sshd processes.

        These are the listener's descendants that run an sshd executable
        (``sshd: user [priv]``, ``sshd: user@notty``, or ``sshd-session``), plus
        any that outlived the listener.
        """
        found: set[int] = set()
        if self._process is not None and self._process.poll() is None:
            listener = self._process.pid
            found.update(pid for pid in live_descendants(listener) if _runs_sshd(pid))
        found.update(self._marked_processes())
        return sorted(pid for pid in found if _alive(pid))

    def processes_of(self, username: str | None = None) -> list[int]:
        """Live (non-zombie) PIDs whose real or effective user is *username*.

        Args:
            username: Whose processes; :attr:`username` by default. A user that
                does not exist has none.

        Returns:
            The PIDs, sorted, read from ``/proc``.
        """
        try:
            uid = pwd.getpwnam(self.username if username is None else username).pw_uid
        except KeyError:
            return []
        return sorted(pid for pid, uids in _process_uids().items() if uid in uids)

    def sandbox_config(self, **overrides: object) -> dict[str, object]:
        """Configuration for the SSH sandbox provider that logs in to this server.

        Args:
            **overrides: Keys to add or replace.

        Returns:
            ``hosts`` (one entry: host, port, username), ``client_keys`` and
            ``known_hosts``, updated with *overrides*.
        """
        config: dict[str, object] = {
            "hosts": [{"host": self.host, "port": self.port, "username": self.username}],
            "client_keys": [str(self.client_key)],
            "known_hosts": str(self.known_hosts),
        }
        config.update(overrides)
        return config

    def __enter__(self) -> OpenSSHServer:
        """Start the server (see :meth:`start`)."""
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop the server (see :meth:`stop`) and release the users; they stay."""
        try:
            self.stop()
        finally:
            self._release_port()
            if self._locked:
                self._locked = False
                _unlock_users(self.username, self.other_username)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<OpenSSHServer {self.host}:{self._port} {state} in {self.directory}>"

    # -- setup --------------------------------------------------------------------

    def _check_machine(self) -> None:
        if os.geteuid() != 0:
            raise SSHServerUnavailable(
                f"running OpenSSH's sshd for the SSH tests needs root (euid is {os.geteuid()}); "
                f"as root, {_INSTALL_HINT}"
            )
        if not os.access(_SSHD, os.X_OK):
            raise SSHServerUnavailable(
                f"{_SSHD} is missing: install openssh-server ({_INSTALL_HINT})"
            )
        if shutil.which("ssh-keygen") is None:
            raise SSHServerUnavailable(
                f"ssh-keygen is missing: install openssh-client ({_INSTALL_HINT})"
            )

    def _prepare(self) -> None:
        for name in (self.username, self.other_username):
            _ensure_user(name)
        self._write_sudoers()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o755)
        _make_traversable(self.directory)
        _PRIVSEP_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
        _PRIVSEP_DIR.chmod(0o755)
        for key in (self._host_key, self._wrong_host_key, self.client_key, self.unauthorized_key):
            _ensure_key(key)
        self._authorized_keys.chmod(0o755)  # in the system's temp dir, searchable by all
        for name in (self.username, self.other_username):
            keys = self._authorized_keys / name
            keys.write_text(f"{_public_key(self.client_key)}\n" if name == self.username else "")
            keys.chmod(0o644)

    def _write_sudoers(self) -> None:
        """Let :attr:`username` run anything as :attr:`other_username`, and only that."""
        if not _SUDOERS_DIRECTORY.is_dir():
            return  # sudo is not installed; tests of sudo skip themselves
        target = _SUDOERS_DIRECTORY / self.username  # no dot: sudo's @includedir reads it
        rule = f"{self.username} ALL=({self.other_username}) NOPASSWD: ALL\n"
        with contextlib.suppress(OSError):
            if target.read_text() == rule:
                return
        # A name with a dot is ignored by sudo's @includedir, so the half-written
        # file is never read; it is validated before it replaces the real one.
        staging = target.with_name(f".{target.name}.{os.getpid()}")
        staging.write_text(rule)
        staging.chmod(0o440)
        try:
            visudo = shutil.which("visudo")
            if visudo is not None:
                check = _run([visudo, "-cf", str(staging)])
                if check.returncode != 0:
                    raise SSHServerUnavailable(
                        f"visudo rejected the sudoers rule {rule!r}: {_output(check)}"
                    )
            os.replace(staging, target)
        finally:
            staging.unlink(missing_ok=True)

    def _write_port_files(self) -> None:
        pattern = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
        self.known_hosts.write_text(f"{pattern} {_public_key(self._host_key)}\n")
        self.wrong_known_hosts.write_text(f"{pattern} {_public_key(self._wrong_host_key)}\n")
        self.config_file.write_text(self._config_text())
        check = _run([_SSHD, "-t", "-f", str(self.config_file)])
        if check.returncode != 0:
            raise SSHServerUnavailable(
                f"sshd rejected its configuration {self.config_file}: {_output(check)}"
            )

    def _config_text(self) -> str:
        lines = [
            "# Written by corral's OpenSSHServer; a test server on the loopback interface.",
            f"ListenAddress {self.host}",
            f"Port {self.port}",
            f"HostKey {_quote(self._host_key)}",
            f"PidFile {_quote(self._pid_file)}",
            f"AuthorizedKeysFile {_quote(f'{self._authorized_keys}/%u')}",
            "StrictModes no",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "HostbasedAuthentication no",
            "PermitRootLogin no",
            "UsePAM no",
            f"AllowUsers {self.username} {self.other_username}",
            f"MaxSessions {self.max_sessions}",
            "MaxStartups 100:30:200",
            "PermitUserEnvironment no",
            "PrintMotd no",
            "PrintLastLog no",
            "X11Forwarding no",
            "UseDNS no",
            f"LogLevel {self.log_level}",
            "Subsystem sftp internal-sftp",
        ]
        return "\n".join(lines) + "\n"

    # -- running ------------------------------------------------------------------

    def _release_port(self) -> None:
        self._port = None
        lock, self._port_lock = self._port_lock, None
        if lock is not None:
            _unlock(lock)

    def _launch(self) -> None:
        self._log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(
                [_SSHD, "-D", "-e", "-f", str(self.config_file), "-E", str(self.log_file)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + _START_TIMEOUT
        while not self._answers():
            if self._process.poll() is not None:
                self._process = None
                raise SSHServerUnavailable(
                    f"sshd exited before listening on {self.host}:{self.port}; "
                    f"its log ({self.log_file}):\n{self._read_log()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise SSHServerUnavailable(
                    f"sshd did not listen on {self.host}:{self.port} within "
                    f"{_START_TIMEOUT:g} s; its log ({self.log_file}):\n{self._read_log()}"
                )
            time.sleep(_POLL_INTERVAL * 2)
        if self._process.poll() is not None:  # someone else answered on the port
            self._process = None
            raise SSHServerUnavailable(
                f"sshd exited although {self.host}:{self.port} answered (another server "
                f"holds the port?); its log ({self.log_file}):\n{self._read_log()}"
            )

    def _answers(self) -> bool:
        """Whether the port accepts a TCP connection and sends an SSH banner."""
        try:
            with socket.create_connection((self.host, self.port), timeout=1.0) as connection:
                banner = b""
                while b"\n" not in banner and len(banner) < 256:
                    received = connection.recv(256)
                    if not received:
                        break
                    banner += received
                return banner.startswith(b"SSH-")
        except OSError:
            return False

    def _read_log(self) -> str:
        """What sshd logged since the last launch (its last 8000 characters)."""
        try:
            with self.log_file.open("rb") as log:
                log.seek(self._log_offset)
                text = log.read().decode(errors="replace")
        except OSError as error:
            return f"(cannot read the log: {error})"
        return text[-8000:] or "(empty)"

    def _marked_processes(self) -> list[int]:
        """sshd processes writing to this server's log, except the listener.

        Every per-connection sshd process logs to :attr:`log_file` on its
        standard error (``-E`` is passed on when sshd re-executes itself, and
        forked processes inherit it), which finds them even once orphaned.
        """
        listener = self._process.pid if self._process is not None else None
        log = str(self.log_file)
        found = []
        for pid in pids():
            if pid == listener or not _runs_sshd(pid):
                continue
            try:
                stderr = os.readlink(f"/proc/{pid}/fd/2")
            except OSError:
                continue
            if stderr == log and _alive(pid):
                found.append(pid)
        return found

    def _processes_of_users(self) -> list[int]:
        return self.processes_of(self.username) + self.processes_of(self.other_username)


# -- helpers ------------------------------------------------------------------------


#: Locks this process holds on test users: lock file -> [descriptor, holders].
_held_locks: dict[Path, list[int]] = {}


def _lock_users(*names: str) -> None:
    """Take the machine-wide lock of each user (sorted: no deadlock), re-entrantly."""
    taken: list[str] = []
    try:
        for name in sorted(names):
            _lock(_lock_path(name))
            taken.append(name)
    except BaseException:
        _unlock_users(*taken)
        raise


def _unlock_users(*names: str) -> None:
    for name in names:
        _unlock(_lock_path(name))


def _unlock(path: Path) -> None:
    held = _held_locks.get(path)
    if held is not None:
        held[1] -= 1
        if held[1] == 0:
            del _held_locks[path]
            os.close(held[0])  # releases the flock


def _lock_free_pair(*, own: bool = False) -> tuple[str, str]:
    """Lock the first pair of :data:`DEFAULT_USERS` no other process holds, and return it.

    With *own*, pairs this process holds are passed over too. When every pair
    is held, wait for the first one (as :func:`_lock_users` does), or with
    *own* for the first one this process does not hold.
    """
    for pair in DEFAULT_USERS:
        paths = [_lock_path(name) for name in sorted(pair)]
        if own and any(path in _held_locks for path in paths):
            continue
        if not _try_lock(paths[0]):
            continue
        if _try_lock(paths[1]):
            return pair
        _unlock(paths[0])
    for pair in DEFAULT_USERS:
        if not own or not any(_lock_path(name) in _held_locks for name in pair):
            _lock_users(*pair)
            return pair
    raise SSHServerUnavailable("every pair of test users is held by a server of this process")


def _try_lock(path: Path) -> bool:
    """Take the flock of *path* if nobody holds it (re-entrantly); never wait."""
    if path in _held_locks:
        _held_locks[path][1] += 1
        return True
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held_locks[path] = [fd, 1]
    return True


def _lock_path(name: str) -> Path:
    directory = _LOCK_DIRECTORY if _LOCK_DIRECTORY.is_dir() else Path(tempfile.gettempdir())
    return directory / f"corral-ssh-{name}.lock"


def _lock(path: Path) -> None:
    if path in _held_locks:
        _held_locks[path][1] += 1
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + _LOCK_TIMEOUT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise SSHServerUnavailable(
                    f"another process (pid {holder}) has been running a test sshd for the "
                    f"same users for over {_LOCK_TIMEOUT:g} s (lock {path})"
                ) from None
            time.sleep(0.1)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held_locks[path] = [fd, 1]


def _run(argv: list[str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=60, check=False
    )


def _output(result: subprocess.CompletedProcess[bytes]) -> str:
    text = (result.stderr + result.stdout).decode(errors="replace").strip()
    return text or f"exit status {result.returncode}"


def _quote(path: Path | str) -> str:
    """*path* as one sshd_config argument."""
    text = str(path)
    if '"' in text:
        raise SSHServerUnavailable(f"sshd_config cannot express the path {text!r}")
    return f'"{text}"' if any(c.isspace() for c in text) else text


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (what port 0 and clients get)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _reserve_port(host: str) -> tuple[int, Path]:
    """A port below the ephemeral range that binds now, and the lock held on it.

    Ports handed out for port 0, and the local ports of outgoing connections,
    come from the ephemeral range: a port below it is not taken behind our back
    between a stop and a restart. The lock keeps other test servers of this
    machine off it.
    """
    low = _ephemeral_low()
    first = max(1024, low - _PORT_SPAN)
    candidates = list(range(first, low))
    random.shuffle(candidates)
    for port in candidates[:_PORT_TRIES]:
        path = _lock_path(f"port-{port}")
        if not _try_lock(path):
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((host, port))
            except OSError:
                _unlock(path)
                continue
        return port, path
    raise SSHServerUnavailable(f"no free port for sshd in {first}-{low - 1} on {host}")


def _ensure_user(name: str) -> None:
    """Create *name* (shell ``/bin/sh``) if missing; make its password field ``*``.

    With ``UsePAM no`` sshd refuses accounts whose password field marks them
    locked (``!``, what ``useradd`` writes); ``*`` means "no password" instead.
    """
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        result = _run(["useradd", "-m", "-s", "/bin/sh", name])
        if result.returncode != 0:
            try:
                entry = pwd.getpwnam(name)  # created concurrently
            except KeyError:
                raise SSHServerUnavailable(
                    f"cannot create the SSH test user {name!r} with useradd: {_output(result)}"
                ) from None
        else:
            entry = pwd.getpwnam(name)
    if entry.pw_shell == "/bin/sh" and _password_field(name) == "*":
        return
    result = _run(["usermod", "-s", "/bin/sh", "-p", "*", name])
    if result.returncode != 0:
        raise SSHServerUnavailable(
            f"cannot unlock the SSH test user {name!r} with usermod: {_output(result)}"
        )


def _password_field(name: str) -> str | None:
    try:
        with open("/etc/shadow") as shadow:
            for line in shadow:
                fields = line.split(":")
                if fields[0] == name and len(fields) > 1:
                    return fields[1]
    except OSError:
        pass
    return None


def _ensure_key(path: Path) -> None:
    public = path.with_name(path.name + ".pub")
    if path.exists() and public.exists():
        return
    path.unlink(missing_ok=True)
    public.unlink(missing_ok=True)
    keygen = shutil.which("ssh-keygen") or "ssh-keygen"
    result = _run([keygen, "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)])
    if result.returncode != 0:
        raise SSHServerUnavailable(f"ssh-keygen failed for {path}: {_output(result)}")


def _public_key(private: Path) -> str:
    """``TYPE BASE64`` of *private*'s public key (without its comment)."""
    return " ".join(private.with_name(private.name + ".pub").read_text().split()[:2])


def _make_traversable(directory: Path) -> None:
    """Give others the search (not read) permission on *directory*'s ancestors.

    sshd opens ``authorized_keys`` with the logging-in user's permissions.
    """
    for parent in directory.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def _alive(pid: int) -> bool:
    info = read_stat(pid)
    return info is not None and info.alive


def _runs_sshd(pid: int) -> bool:
    try:
        executable = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        try:
            with open(f"/proc/{pid}/comm") as f:
                executable = f.read().strip()
        except OSError:
            return False
    name = os.path.basename(executable.removesuffix(" (deleted)"))
    return name in _SESSION_EXES


def _uids(pid: int) -> tuple[int, int] | None:
    """Real and effective uid of *pid*, or ``None`` if it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/status") as f:
            status = f.read()
    except OSError:
        return None
    state = uids = None
    for line in status.splitlines():
        if line.startswith("State:"):
            state = line.split()[1]
        elif line.startswith("Uid:"):
            uids = line.split()[1:3]
    if state is None or state in ("Z", "X") or uids is None:
        return None
    return int(uids[0]), int(uids[1])


def _process_uids() -> dict[int, tuple[int, int]]:
    """Real and effective uid of every live (non-zombie) process."""
    found = {pid: _uids(pid) for pid in pids()}
    return {pid: uids for pid, uids in found.items() if uids is not None}


def _kill_and_wait(pids: set[int], ours: Callable[[int], bool], deadline: float) -> list[int]:
    """SIGKILL those of *pids* that are still *ours*, and wait until they are gone.

    Through pidfds, so that a pid reused by another process (the machine's pid
    space is small, and a second test session may run beside this one) is
    never signalled: each pid is opened first, then checked to still be ours,
    then killed and waited for through its descriptor. Returns the pids still
    alive at *deadline*.
    """
    opened: list[tuple[int, int]] = []
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except OSError:  # gone already
            continue
        if ours(pid):
            opened.append((pid, fd))
        else:
            os.close(fd)
    left = []
    try:
        for _, fd in opened:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(fd, signal.SIGKILL)
        for pid, fd in opened:
            if not select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
                left.append(pid)
    finally:
        for _, fd in opened:
            os.close(fd)
    return left
