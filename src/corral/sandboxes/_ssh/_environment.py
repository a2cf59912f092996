"""The ``"ssh"`` sandbox: samples run in private directories on remote hosts."""

from __future__ import annotations

import errno
import logging
import posixpath
import secrets
import shlex
from typing import TYPE_CHECKING, Any, Literal, overload

import anyio
import anyio.lowlevel

from ..._core._leftovers import record_sandbox, resolve_sandbox
from ..._core._settings import current_kill_grace
from ..._process._subprocess import ExecResult
from .._calls import exec_call
from .._environment import SandboxConnection, SandboxEnvironment
from .._errors import OutputLimitExceededError
from .._output_limits import human_size, max_read_file_size
from ._bridge import run_on_ssh_loop
from ._config import IGNORE_KNOWN_HOSTS, SSHSandboxConfig
from ._pool import HostSet, hold, let_go
from ._remote import RemoteSandbox
from ._script import STATUSES, exec_script, export_line
from ._sweep import record_details, sweep_ssh

if TYPE_CHECKING:
    from .._exec_remote import (
        ExecRemoteAwaitableOptions,
        ExecRemoteProcess,
        ExecRemoteStreamingOptions,
    )
    from .._sweep import Leftover, SweepResult

__all__ = ["SSHSandboxEnvironment"]

logger = logging.getLogger("corral.sandbox")


async def _place(config: SSHSandboxConfig) -> RemoteSandbox:
    hosts = hold(config)
    try:
        pool, workdir = await hosts.place()
    except BaseException:
        await let_go(hosts)
        raise
    return RemoteSandbox(hosts, pool, workdir, secrets.token_hex(8))


async def _hold_connected(config: SSHSandboxConfig) -> HostSet:
    hosts = hold(config)
    try:
        await hosts.connect_all()
    except BaseException:
        await let_go(hosts)
        raise
    return hosts


class SSHSandboxEnvironment(SandboxEnvironment):
    """A sample's sandbox on a remote host, reached over SSH.

    Created by :meth:`sample_init` from an
    :class:`~corral.sandboxes.SSHSandboxConfig`; see ``docs/ssh.md``. Each
    sample gets a private directory (``mktemp -d`` under ``workdir_base``)
    on the least loaded host; relative paths and ``cwd`` resolve there.
    Commands run through the login shell (which must be POSIX-compatible),
    each as its own process group; files move over SFTP on the same
    connections.
    """

    def __init__(self, remote: RemoteSandbox, config: SSHSandboxConfig) -> None:
        self._remote = remote
        self._config = config

    @property
    def host(self) -> str:
        """The host it runs on, as ``user@host:port``."""
        return self._remote.label

    @property
    def directory(self) -> str:
        """The sample's working directory on the host."""
        return self._remote.workdir

    def __repr__(self) -> str:
        state = "closed" if self._remote.closed else "open"
        return f"<{type(self).__name__} {self.host} {self.directory!r} {state}>"

    async def exec(
        self,
        cmd: list[str],
        input: str | bytes | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        user: str | None = None,
        timeout: int | float | None = None,
        timeout_retry: bool = True,
        concurrency: bool = True,
    ) -> ExecResult[str]:
        """Run *cmd* on the host and wait for it.

        Each argument is quoted for the remote shell, so nothing in it is
        interpreted. Variables in *env* are sent on the channel ahead of the
        input and exported by the remote shell (the server's ``AcceptEnv`` is
        not needed): their values are on no command line on the host and in
        no log record of asyncssh. Stdout and stderr go to
        the proxy's buffers (see :mod:`~corral.sandboxes._calls`) and are
        returned decoded as UTF-8 with undecodable bytes replaced; *timeout*
        and the output limit are the proxy's to enforce. *timeout_retry* is
        ignored.

        Args:
            cmd: The program and its arguments.
            input: Data for the command's stdin, streamed over the channel.
            cwd: Working directory; relative paths resolve in the sample's directory.
            env: Variables to set for the command (names must be shell names).
            user: Run as this user through ``sudo -n -u USER``; the login
                user (or ``None``) runs the command directly.
            timeout: Enforced by the proxy, as a cancellation.
            timeout_retry: Ignored.
            concurrency: Accepted, and the same either way: a remote
                command takes no slot of corral's ``"subprocesses"`` limit
                (nothing runs on this machine), only a session slot of its
                connection (``max_sessions``), which the channel cannot be
                opened without and which ``False`` therefore still takes.

        Returns:
            The exit status (``-N`` for a command killed by signal N) and
            the decoded output.

        Raises:
            ValueError: An *env* key is not a shell variable name, or a value holds NUL.
            FileNotFoundError: The program or *cwd* does not exist on the host.
            NotADirectoryError: *cwd* is not a directory.
            PermissionError: The program is not executable, *cwd* cannot be
                entered, or *user* cannot be used (``sudo -n`` refused or
                missing); the message names it.
            SandboxUnavailableError: The connection to the host broke (the
                message names the host), or the sandbox has been cleaned up.

        **Cancellation:** the command's process group on the host is
        terminated (SIGTERM, then SIGKILL after the kill grace) and its
        channel closed before the cancellation propagates (the proxy's
        timeout arrives as a cancellation).
        """
        argv = list(cmd)
        data = input.encode("utf-8") if isinstance(input, str) else input
        remote = self._remote
        script, preamble, workdir, user = self._script(argv, data is not None, cwd, env, user)
        call = exec_call()
        action = f"exec {shlex.join(argv)[:200]!r}"
        # The buffers cross to the SSH loop; they are read here only once it is done.
        outcome = await run_on_ssh_loop(
            remote.exec,
            script,
            data,
            call.stdout,
            call.stderr,
            current_kill_grace(),
            action,
            user,
            preamble,
        )
        if outcome.status != "ok":
            raise self._not_started(outcome.status, argv[0], cwd or workdir, user)
        return ExecResult(
            outcome.returncode == 0,
            outcome.returncode,
            call.stdout.value().decode("utf-8", errors="replace"),
            call.stderr.value().decode("utf-8", errors="replace"),
        )

    def _script(
        self,
        argv: list[str],
        stdin: bool,
        cwd: str | None,
        env: dict[str, str] | None,
        user: str | None,
    ) -> tuple[str, bytes, str, str | None]:
        """The exec script for *argv*, the line of *env* sent ahead of the input,
        the working directory, and the user to switch to (``None``: the login user)."""
        remote = self._remote
        remote._check_open()
        workdir = remote.workdir if cwd is None else remote.resolve(cwd)
        if user is not None and user == remote.pool.host.username:
            user = None  # the login user: no sudo needed
        variables = env or {}
        script = exec_script(
            argv, cwd=workdir, env=variables, tag=remote.tag, user=user, stdin=stdin
        )
        # The values go on the channel, never in the command (see ._script).
        preamble = export_line(variables) if variables else b""
        return script, preamble, workdir, user

    @overload
    async def exec_remote(
        self,
        cmd: list[str],
        options: ExecRemoteStreamingOptions | None = None,
        *,
        stream: Literal[True] = True,
    ) -> ExecRemoteProcess: ...
    @overload
    async def exec_remote(
        self,
        cmd: list[str],
        options: ExecRemoteAwaitableOptions | None = None,
        *,
        stream: Literal[False],
    ) -> ExecResult[str]: ...
    async def exec_remote(
        self,
        cmd: list[str],
        options: ExecRemoteStreamingOptions | ExecRemoteAwaitableOptions | None = None,
        *,
        stream: bool = True,
    ) -> ExecRemoteProcess | ExecResult[str]:
        """Start *cmd* on the host and stream its output as SSH delivers it (natively).

        The command runs as :meth:`exec` runs it (quoted for the login
        shell, *env* on the channel, *user* through ``sudo -n``, its own
        process group, a watcher that kills it if the connection goes), on a
        channel of its own that holds a session slot of its connection
        until the command ends. This returns once the host said the command
        started. The handle is a :class:`~corral.sandboxes._ssh._stream.SSHProcess`:
        events come as the channel's data packets arrive; at most 1 MiB of
        output nobody took is held, then the channel's reading is paused
        and the remote command blocks (backpressure). ``kill()`` stops the
        remote process group (SIGTERM, the kill grace, SIGKILL); so do
        cancelling the iterating task (before the cancellation propagates)
        and :meth:`sample_cleanup`. ``stream=False`` is :meth:`exec`
        (through the proxy: its timeout and partial output).

        Raises:
            FileNotFoundError, NotADirectoryError, PermissionError: As for
                :meth:`exec`: the command did not start (nothing runs).
            SandboxUnavailableError: The connection to the host broke, or
                the sandbox has been cleaned up.
        """
        from .._exec_remote import ExecRemoteStreamingOptions, check_options
        from ._stream import SSHProcess, start_stream

        opts = check_options(cmd, options, stream)
        if not stream:
            return await super().exec_remote(cmd, opts, stream=False)  # type: ignore[call-overload,no-any-return]
        argv = list(cmd)
        keep = isinstance(opts, ExecRemoteStreamingOptions) and opts.stdin_open
        data = opts.input.encode("utf-8") if isinstance(opts.input, str) else opts.input
        if keep and data is None:
            data = b""
        script, preamble, workdir, user = self._script(
            argv, data is not None, opts.cwd, opts.env, opts.user
        )
        action = f"exec_remote {shlex.join(argv)[:200]!r}"
        remote = self._remote
        started = await run_on_ssh_loop(
            start_stream,
            remote,
            script,
            preamble,
            data,
            keep,
            current_kill_grace(),
            action,
            user,
        )
        if started.status != "ok":
            with anyio.CancelScope(shield=True):
                await run_on_ssh_loop(started.wait_closed)
            raise self._not_started(started.status, argv[0], opts.cwd or workdir, user)
        return SSHProcess(started, keep, shlex.join(argv))

    def _not_started(self, status: str, program: str, cwd: str, user: str | None) -> OSError:
        reason = STATUSES.get(status, f"unexpected status {status!r}")
        where = f"{reason} on {self.host}"
        if status == "nocwd":
            return FileNotFoundError(errno.ENOENT, where, cwd)
        if status == "notdir":
            return NotADirectoryError(errno.ENOTDIR, where, cwd)
        if status == "cwdperm":
            return PermissionError(errno.EACCES, where, cwd)
        if status == "noprog":
            return FileNotFoundError(errno.ENOENT, where, program)
        if status == "noexec":
            return PermissionError(errno.EACCES, where, program)
        if status == "nosudo":
            return PermissionError(errno.EPERM, f"cannot run the command as user {user!r}: {where}")
        return OSError(errno.EIO, where)

    async def write_file(self, file: str, contents: str | bytes) -> None:
        """Write *contents* to *file* over SFTP, creating its parent directories.

        A ``str`` is written as UTF-8, bytes as they are; an existing file is replaced.

        Raises:
            IsADirectoryError: *file* is a directory (the error names it).
            PermissionError: *file* or a parent cannot be written (the error names it).
            SandboxUnavailableError: The connection broke, or the sandbox has been cleaned up.

        **Cancellation:** the SFTP requests in flight are abandoned; the file
        may be left partly written.
        """
        data = contents.encode("utf-8") if isinstance(contents, str) else bytes(contents)
        remote = self._remote
        remote._check_open()
        await run_on_ssh_loop(remote.write, remote.resolve(file), data, file)

    @overload
    async def read_file(self, file: str, text: Literal[True] = True) -> str: ...
    @overload
    async def read_file(self, file: str, text: Literal[False]) -> bytes: ...
    async def read_file(self, file: str, text: bool = True) -> str | bytes:
        """Read *file* over SFTP, as UTF-8 text (newlines kept) or as bytes.

        The file's size is checked first; a file over the limit is not read.

        Raises:
            FileNotFoundError: *file* does not exist (the error names it).
            IsADirectoryError: *file* is a directory (the error names it).
            PermissionError: *file* cannot be read (the error names it).
            UnicodeDecodeError: *text* is true and the file is not UTF-8.
            OutputLimitExceededError: The file is larger than the read limit.
            SandboxUnavailableError: The connection broke, or the sandbox has been cleaned up.

        **Cancellation:** the SFTP requests in flight are abandoned.
        """
        remote = self._remote
        remote._check_open()
        limit = max_read_file_size()
        data = await run_on_ssh_loop(remote.read, remote.resolve(file), limit, file)
        if data is None:
            raise OutputLimitExceededError(human_size(limit), None)
        return data.decode("utf-8") if text else data

    async def connection(self, *, user: str | None = None) -> SandboxConnection:
        """The ``ssh`` command that opens a login shell in the sample's directory.

        A checkpoint, like every async call of the contract.

        Args:
            user: Open the shell as this user: the command logs in as the
                configured user and runs ``sudo -u USER`` (as ``exec`` does,
                but interactive, so sudo may ask for a password). The login
                user, or ``None``, gets the shell directly.

        Raises:
            ConnectionError: The sandbox has been cleaned up.
        """
        await anyio.lowlevel.checkpoint()
        remote = self._remote
        if remote.closed:
            raise ConnectionError(f"the ssh sandbox on {self.host} has been cleaned up")
        host = remote.pool.host
        config = self._config
        argv = ["ssh", "-t"]
        if host.port is not None:
            argv += ["-p", str(host.port)]
        for key in config.client_keys or ():
            argv += ["-i", key]
        if config.config is not None:
            argv += ["-F", config.config]
        if config.known_hosts == IGNORE_KNOWN_HOSTS:
            argv += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
        elif config.known_hosts is not None:
            argv += ["-o", f"UserKnownHostsFile={config.known_hosts}"]
        argv.append(f"{host.username}@{host.host}" if host.username else host.host)
        shell = '"${SHELL:-/bin/sh}" -l'
        if user is not None and user != host.username:
            shell = f"sudo -u {shlex.quote(user)} -- {shell}"
        argv.append(f"cd {shlex.quote(remote.workdir)} && exec {shell}")
        return SandboxConnection(type="ssh", command=shlex.join(argv))

    # -- lifecycle ------------------------------------------------------------------

    _task_holds: dict[tuple[str, str], list[HostSet]] = {}  # noqa: RUF012

    @classmethod
    def default_concurrency(cls) -> int | None:
        """No limit of its own: set ``max_sandboxes`` per host in the configuration."""
        return None

    @classmethod
    def config_deserialize(cls, config: dict[str, Any]) -> SSHSandboxConfig:
        """The :class:`~corral.sandboxes.SSHSandboxConfig` a ``dict`` config describes.

        So an ``("ssh", {...})`` spec, and one read back from JSON, holds the model.

        Raises:
            ValueError: The configuration is invalid (the message names the field).
        """
        return SSHSandboxConfig.load(config)

    @classmethod
    async def task_init(cls, task_name: str, config: Any) -> None:
        """Check the configuration, connect to every host at once, and keep the connections.

        Each host gets ``connect_timeout`` to answer, all of them at the same
        time, so a configuration error is reported here, once, before any
        sample starts. Hosts that cannot be reached are logged and passed
        over while at least one is up.

        Raises:
            ValueError: The configuration is invalid (the message names the field).
            FileNotFoundError: A configuration file does not exist.
            HostRefusedError: A host's key is not trusted, or it refused our keys.
            SandboxUnavailableError: No host could be reached (each one's reason given).
        """
        loaded = SSHSandboxConfig.load(config)
        hosts = await run_on_ssh_loop(_hold_connected, loaded)
        cls._task_holds.setdefault((task_name, hosts.key), []).append(hosts)

    @classmethod
    async def task_cleanup(cls, task_name: str, config: Any, cleanup: bool) -> None:
        """Close the connections kept for the task (once no sample uses them)."""
        loaded = SSHSandboxConfig.load(config)
        held = cls._task_holds.get((task_name, loaded.model_dump_json()))
        if not held:
            return
        hosts = held.pop()
        if not held:
            del cls._task_holds[(task_name, hosts.key)]
        await run_on_ssh_loop(let_go, hosts)

    @classmethod
    async def sample_init(
        cls, task_name: str, config: Any, metadata: dict[str, Any]
    ) -> dict[str, SandboxEnvironment]:
        """Place the sample on the least loaded host and create its working directory.

        Returns:
            ``{"default": SSHSandboxEnvironment(...)}``.

        Raises:
            ValueError: The configuration is invalid (the message names the field).
            SandboxUnavailableError: No host could be reached (the message
                has each host's reason), a host key is not trusted, or
                authentication failed.
        """
        loaded = SSHSandboxConfig.load(config)
        remote = await run_on_ssh_loop(_place, loaded)
        environment = cls(remote, loaded)
        try:
            # Until its cleanup succeeds, ``corral sandbox cleanup ssh`` can find it.
            details = record_details(loaded, remote.pool.host, remote.workdir, remote.tag)
            record_sandbox("ssh", posixpath.basename(remote.workdir), **details)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await run_on_ssh_loop(remote.close)
            raise
        return {"default": environment}

    @classmethod
    async def sample_cleanup(
        cls,
        task_name: str,
        config: Any,
        environments: dict[str, SandboxEnvironment],
        interrupted: bool,
    ) -> None:
        """Kill what the sample left running on its host and remove its directory.

        Leftovers are found by a token every command of the sample carries
        in its environment (processes run as another user through sudo are
        not found). Calling it again does nothing.

        Raises:
            SandboxUnavailableError: A host could not be reached; the other
                environments are cleaned up first.
        """
        first: BaseException | None = None
        for environment in environments.values():
            if not isinstance(environment, SSHSandboxEnvironment):
                continue
            try:
                killed = await run_on_ssh_loop(environment._remote.close)
            except Exception as exc:
                first = first or exc  # it stays recorded, for ``corral sandbox cleanup``
                continue
            resolve_sandbox(posixpath.basename(environment.directory))
            if killed:
                logger.warning(
                    "killed %d process(es) left running in the ssh sandbox %s on %s",
                    killed,
                    environment.directory,
                    environment.host,
                )
        if first is not None:
            raise first

    @classmethod
    async def cli_cleanup(cls, id: str | None) -> None:
        """Remove what harnesses that are gone left on the hosts (or only the sandbox *id*).

        Each sandbox is recorded with its host and connection settings when
        it is made, until its cleanup succeeds; this kills its processes and
        removes its directory, printing one line for each removed. See
        ``corral sandbox cleanup``.

        Raises:
            ValueError: *id* is not a recorded ssh sandbox, or its harness is still running.
            OSError: Something could not be removed (it stays recorded).
        """
        from .._sweep import print_sweep

        await print_sweep("ssh", id)

    @classmethod
    async def _sweep_leftovers(cls, leftovers: list[Leftover], config: Any) -> list[SweepResult]:
        """For :mod:`.._sweep`: remove *leftovers* from their hosts."""
        return await sweep_ssh(leftovers, config)
