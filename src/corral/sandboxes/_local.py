"""The local sandbox: commands and files in a private directory on this machine.

Each sample gets its own temporary working directory
(``corral-sandbox-XXXXXXXX`` under :func:`tempfile.gettempdir`). Relative
paths and ``cwd`` resolve inside it; absolute paths are used as they are, so
this isolates samples from each other's files by convention, not by force.

Commands run under the process layer's supervision
(:func:`~corral._process._subprocess.run_supervised`, as ``subprocess()``
does): each one leads its own process group, and a cancellation (the sandbox
proxy's timeout among them) terminates the whole group before the call
returns. The rules of the contract (argument checks, the timeout, the output
limit, events) are the proxy's; this module keeps the mechanics. Every command also
carries ``CORRAL_LOCAL_SANDBOX=<token>`` in its environment, which is how
:meth:`LocalSandboxEnvironment.sample_cleanup` finds processes that escaped
their group (a daemon that called ``setsid``) and kills them.
"""

from __future__ import annotations

import errno
import logging
import os
import pwd
import re
import secrets
import shlex
import shutil
import stat
import tempfile
from typing import TYPE_CHECKING, Any, Literal, overload

import anyio
import anyio.lowlevel
import anyio.to_thread

from .._core._files import file_kind
from .._core._leftovers import record_sandbox, resolve_sandbox
from .._core._settings import subprocess_limiter
from .._core._working import waiting
from .._process._guardian import forget_directory, harness_tag, watch_directory
from .._process._reaper import remove_tree, stop_processes
from .._process._subprocess import ExecResult, check_command, run_supervised
from ._calls import exec_call
from ._environment import SandboxConnection, SandboxEnvironment
from ._errors import OutputLimitExceededError, SandboxUnavailableError
from ._output_limits import human_size, max_read_file_size
from ._ssh._script import env_reader_argv, export_line

if TYPE_CHECKING:
    from .._process._stream import StreamingProcess
    from .._process._subprocess import Command
    from ._exec_remote import (
        ExecRemoteAwaitableOptions,
        ExecRemoteProcess,
        ExecRemoteStreamingOptions,
    )
    from ._sweep import Leftover, SweepResult

__all__ = ["LocalSandboxEnvironment"]

logger = logging.getLogger("corral.sandbox")

#: The environment variable that tags every process a local sandbox starts.
MARKER_ENV = "CORRAL_LOCAL_SANDBOX"

#: Reads and writes up to this size run on the event loop thread; larger ones
#: (and reads of anything but a regular file, which may block) run in a worker
#: thread so the event loop is never held up by file IO.
_INLINE_IO_MAX = 256 * 1024

#: What ``sudo -n`` prints when it cannot run the command as the user at all.
_SUDO_REFUSED = re.compile(
    r"^sudo: .*(password is required|unknown user|not in the sudoers|"
    r"not allowed to|a terminal is required|no tty present)",
    re.MULTILINE,
)


def _current_user() -> str | None:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:  # a uid without a passwd entry (some containers)
        return None


def _open_regular(path: str, flags: int) -> int:
    """Open *path* without blocking and return the fd, if it is a regular file.

    ``O_NONBLOCK`` makes opening a FIFO return at once (or fail with
    ``ENXIO`` for writing with no reader) instead of waiting for the other
    end forever; what was opened is then checked on the fd itself, so a file
    swapped for a FIFO after a ``stat`` cannot slip through.

    Raises:
        IsADirectoryError: *path* is a directory.
        OSError: *path* is a FIFO, socket or device (``EINVAL``, naming it), or
            cannot be opened.
    """
    try:
        fd = os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY, 0o666)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a FIFO nobody reads
            raise OSError(errno.EINVAL, "refusing to write to a FIFO", path) from None
        raise
    mode = os.fstat(fd).st_mode
    if stat.S_ISREG(mode):
        return fd
    os.close(fd)
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    raise OSError(
        errno.EINVAL, f"only regular files are read and written; this is {file_kind(mode)}", path
    )


def _read_sync(path: str, text: bool, limit: int) -> str | bytes:
    with open(_open_regular(path, os.O_RDONLY), "rb") as f:
        if os.fstat(f.fileno()).st_size > limit:
            raise OutputLimitExceededError(human_size(limit), None)
        # Never more than limit + 1 bytes: a file that grows while it is read
        # cannot make us read without bound.
        data = f.read(limit + 1)
    if len(data) > limit:
        raise OutputLimitExceededError(human_size(limit), None)
    return data.decode("utf-8") if text else data


def _make_parents(directory: str) -> None:
    """``os.makedirs(directory, exist_ok=True)`` without its recursion.

    ``os.makedirs`` calls itself once per missing level, so a deep path (a
    model's ``a/a/a/...``, 1,000 levels is enough) raised ``RecursionError``;
    here a path too long for the system is an ``OSError`` naming it.
    """
    missing = []
    while directory and not os.path.isdir(directory):
        missing.append(directory)
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    for level in reversed(missing):
        try:
            os.mkdir(level)
        except FileExistsError:
            if not os.path.isdir(level):
                raise


def _write_sync(path: str, data: bytes) -> None:
    parent = os.path.dirname(path)
    if parent:
        _make_parents(parent)
    # Truncated only once it is known to be a regular file.
    with open(_open_regular(path, os.O_WRONLY | os.O_CREAT), "wb") as f:
        f.truncate()
        f.write(data)


class LocalSandboxEnvironment(SandboxEnvironment):
    """A sandbox that runs commands on this machine, in a per-sample directory.

    Create it through :meth:`sample_init`; :meth:`sample_cleanup` kills
    whatever its commands left running and removes the directory. Once
    cleaned up, ``exec``, ``read_file`` and ``write_file`` raise
    :class:`~corral.util.SandboxUnavailableError` and ``connection`` raises
    :class:`ConnectionError`.

    Args:
        directory: The working directory, which the environment owns from
            now on (it is removed on cleanup).
    """

    def __init__(self, directory: str) -> None:
        self._directory = directory
        self._tag = f"{MARKER_ENV}={secrets.token_hex(8)}"
        self._ran_commands = False
        self._closed = False
        # Handles of exec_remote still running: stopped by the cleanup.
        self._processes: set[StreamingProcess] = set()

    @property
    def directory(self) -> str:
        """The sample's working directory (absolute)."""
        return self._directory

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<{type(self).__name__} {self._directory!r} {state}>"

    def _check_open(self) -> None:
        if self._closed:
            raise SandboxUnavailableError(
                f"the local sandbox in {self._directory} has been cleaned up"
            )

    def _resolve(self, path: str) -> str:
        return os.path.join(self._directory, path)

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
        """Run *cmd* on this machine and wait for it.

        The command runs in the sample's directory (or *cwd*, relative to
        it), with ``os.environ`` plus *env*, once it holds a slot of the
        ``"subprocesses"`` limit (the wait does not count against the
        timeout), unless *concurrency* is false. Stdout and stderr go to the
        proxy's buffers (see :mod:`~corral.sandboxes._calls`) and are
        returned decoded as UTF-8 with undecodable bytes replaced. The arguments arrive checked, and
        *timeout* and the output limit are the proxy's to enforce (through
        ``sandbox()``; a direct call has neither). *timeout_retry* is ignored:
        a local command is never retried.

        Args:
            cmd: The program and its arguments (not run through a shell).
            input: Data for the command's stdin.
            cwd: Working directory; relative paths resolve in the sample's directory.
            env: Variables set for the command on top of ``os.environ``.
            user: Run as this user. The current user (or ``None``) runs the
                command directly; another user needs ``sudo`` that works
                without a password (``sudo -n -u USER``). The values of *env*
                then reach the command through its stdin, ahead of *input*,
                and so are on no command line (which any user can read).
            timeout: Enforced by the proxy, as a cancellation.
            timeout_retry: Ignored.
            concurrency: Take a slot of the ``"subprocesses"`` limit
                (``max_subprocesses``) for the command's life. ``False``
                starts it at once, neither waiting for a slot nor holding
                one, as ``subprocess(concurrency=False)`` does.

        Returns:
            The exit status and the decoded output.

        Raises:
            FileNotFoundError: The program or *cwd* does not exist.
            NotADirectoryError: *cwd* is not a directory.
            PermissionError: The program cannot be run, or *user* cannot be
                used (no ``sudo``, a password is required, an unknown user);
                the message names the user.
            ValueError: With another *user*, an *env* key is not a shell
                variable name (the sandbox proxy refuses those first).
            SandboxUnavailableError: The sandbox has been cleaned up.

        **Cancellation:** the command's whole process group is terminated
        (SIGTERM, then SIGKILL after the kill grace) and reaped before the
        cancellation propagates; nothing it started in its group is left
        running. Cancelled while it waits for a slot, it takes none and
        starts nothing.
        """
        self._check_open()
        call = exec_call()
        command, via_sudo = self._command(cmd, input, cwd, env, user, keep_stdin=False)

        self._ran_commands = True
        limiter = subprocess_limiter() if concurrency else None
        slot = object()
        if limiter is not None:
            # As subprocess(): waiting for a slot is neither running (the timeout)
            # nor working time (working limits).
            with call.not_counting(), waiting():
                await limiter.acquire_on_behalf_of(slot)
        try:
            returncode = await run_supervised(command, call.stdout, call.stderr)
        finally:
            if limiter is not None:
                limiter.release_on_behalf_of(slot)

        out = call.stdout.value().decode("utf-8", errors="replace")
        err = call.stderr.value().decode("utf-8", errors="replace")
        if via_sudo and returncode != 0 and _SUDO_REFUSED.search(err):
            raise PermissionError(
                errno.EPERM, f"cannot run the command as user {user!r}: {err.strip()}"
            )
        return ExecResult(returncode == 0, returncode, out, err)

    def _command(
        self,
        cmd: list[str],
        input: str | bytes | None,
        cwd: str | None,
        env: dict[str, str] | None,
        user: str | None,
        *,
        keep_stdin: bool,
    ) -> tuple[Command, bool]:
        """The checked command that runs *cmd* here (and whether it goes through sudo).

        The rules of :meth:`exec`: the directory, the tags, *env* on top of
        ``os.environ`` or, through sudo, on stdin ahead of *input*.
        *keep_stdin*: stdin stays open after *input* (``exec_remote``).
        """
        workdir = self._directory if cwd is None else self._resolve(cwd)
        variables = dict(env) if env else {}
        name, _, value = self._tag.partition("=")
        tags = {name: value}
        name, value = harness_tag()  # through sudo too, which resets the environment
        tags[name] = value

        argv = list(cmd)
        via_sudo = user is not None and user != _current_user()
        if via_sudo:
            assert user is not None
            secret = {key: item for key, item in variables.items() if key not in tags}
            argv = self._sudo_argv(
                user, argv, tags, secret=bool(secret), stdin=bool(input) or keep_stdin
            )
            if secret:  # the values go on stdin, ahead of the input (see _sudo_argv)
                data = input.encode("utf-8") if isinstance(input, str) else (input or b"")
                input = export_line(secret) + data
            extra = tags  # sudo keeps none of the rest of its environment
        else:
            extra = {**variables, **tags}
        return check_command(argv, input, workdir, extra, True), via_sudo

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
        """Start *cmd* here and stream its output as it arrives (natively).

        The command runs as :meth:`exec` runs it (the directory, *env*,
        *user* through sudo, its own process group, a slot of the
        ``"subprocesses"`` limit unless ``concurrency=False``, held until it
        ends), and the handle is a
        :class:`~corral.sandboxes._local_remote.LocalProcess`: output is read
        only while the handle is iterated, at most 64 KiB of each stream at a
        time, so a consumer that stops reading makes the command block on a
        full pipe (backpressure). ``kill()`` stops the whole group (SIGTERM,
        the kill grace, SIGKILL); so does cancelling the iterating task
        (before the cancellation propagates) and :meth:`sample_cleanup`, so a
        handle never outlives its sample. ``stream=False`` is :meth:`exec`
        (through the proxy: its timeout and partial output).

        Raises:
            FileNotFoundError: The program or *cwd* does not exist.
            PermissionError: The program cannot be run.
            SandboxUnavailableError: The sandbox has been cleaned up.
        """
        from ._exec_remote import ExecRemoteStreamingOptions, check_options
        from ._local_remote import start_local

        opts = check_options(cmd, options, stream)
        if not stream:
            return await super().exec_remote(cmd, opts, stream=False)  # type: ignore[call-overload,no-any-return]
        self._check_open()
        keep = isinstance(opts, ExecRemoteStreamingOptions) and opts.stdin_open
        command, _ = self._command(cmd, opts.input, opts.cwd, opts.env, opts.user, keep_stdin=keep)
        self._ran_commands = True
        return await start_local(self._processes, command, keep_stdin=keep, slot=opts.concurrency)

    @staticmethod
    def _sudo_argv(
        user: str, argv: list[str], tags: dict[str, str], *, secret: bool, stdin: bool
    ) -> list[str]:
        """The command line that runs *argv* as *user* through ``sudo -n``.

        sudo resets the environment; ``env`` puts the *tags* (the cleanup and
        harness tags, which are not secret) back from the command line. With
        *secret*, the caller's variables follow on stdin instead, for a
        ``/bin/sh`` run as *user* to export (with the tags) before it
        ``exec``\\ s *argv* (with the rest of stdin, or ``/dev/null`` without
        *stdin*): anyone can read a command line in ``/proc``, only the user
        its environment.
        """
        sudo = shutil.which("sudo")
        if sudo is None:
            raise PermissionError(
                errno.EPERM,
                f"cannot run the command as user {user!r}: sudo is not available, "
                "and the local sandbox runs commands as the current user",
            )
        if secret:
            return [sudo, "-n", "-u", user, "--", *env_reader_argv(argv, tags=tags, stdin=stdin)]
        assignments = [f"{key}={value}" for key, value in tags.items()]
        return [sudo, "-n", "-u", user, "--", "env", *assignments, *argv]

    async def write_file(self, file: str, contents: str | bytes) -> None:
        """Write *contents* to *file*, creating its parent directories.

        A ``str`` is written as UTF-8, bytes as they are; an existing file is
        replaced. Files over 256 KiB are written in a worker thread.

        Raises:
            IsADirectoryError: *file* is a directory (the error names it).
            PermissionError: *file* or a parent cannot be written (the error names it).
            UnicodeEncodeError: *contents* holds lone surrogates.
            SandboxUnavailableError: The sandbox has been cleaned up.

        **Cancellation:** a write in a worker thread runs to the end before
        the cancellation propagates, so a file is never left half written by it.
        """
        data = contents.encode("utf-8") if isinstance(contents, str) else bytes(contents)
        self._check_open()
        path = self._resolve(file)
        if len(data) <= _INLINE_IO_MAX:
            _write_sync(path, data)
        else:
            await anyio.to_thread.run_sync(_write_sync, path, data)

    @overload
    async def read_file(self, file: str, text: Literal[True] = True) -> str: ...
    @overload
    async def read_file(self, file: str, text: Literal[False]) -> bytes: ...
    async def read_file(self, file: str, text: bool = True) -> str | bytes:
        """Read *file*, as UTF-8 text (newlines kept as they are) or as bytes.

        The file's size is checked before anything is read. Files over
        256 KiB, and anything that is not a regular file, are read in a
        worker thread.

        Raises:
            FileNotFoundError: *file* does not exist (the error names it).
            IsADirectoryError: *file* is a directory (the error names it).
            PermissionError: *file* cannot be read (the error names it).
            UnicodeDecodeError: *text* is true and the file is not UTF-8.
            OutputLimitExceededError: The file is larger than the read limit;
                nothing is read (``truncated_output`` is ``None``).
            SandboxUnavailableError: The sandbox has been cleaned up.

        **Cancellation:** a read in a worker thread runs to the end before
        the cancellation propagates; its result is dropped.
        """
        self._check_open()
        path = self._resolve(file)
        limit = max_read_file_size()
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        if info.st_size > limit:
            raise OutputLimitExceededError(human_size(limit), None)
        if info.st_size <= _INLINE_IO_MAX:  # a FIFO or device is refused, without blocking
            return _read_sync(path, text, limit)
        return await anyio.to_thread.run_sync(_read_sync, path, text, limit)

    async def connection(self, *, user: str | None = None) -> SandboxConnection:
        """Return a shell command that opens the user's shell in the sample's directory.

        A checkpoint, like every async call of the contract.

        Args:
            user: Open the shell as this user, through ``sudo -u USER`` (which
                may ask for a password: the command is run by hand). The
                current user, or ``None``, opens it directly.

        Raises:
            ConnectionError: The sandbox has been cleaned up.
        """
        await anyio.lowlevel.checkpoint()
        if self._closed:
            raise ConnectionError(f"the local sandbox in {self._directory} has been cleaned up")
        shell = '"${SHELL:-/bin/sh}"'
        if user is not None and user != _current_user():
            shell = f"sudo -u {shlex.quote(user)} -- {shell}"
        return SandboxConnection(
            type="local", command=f"cd {shlex.quote(self._directory)} && exec {shell}"
        )

    def default_polling_interval(self) -> float:
        """0.2 seconds: polling a local service is cheap."""
        return 0.2

    @classmethod
    def default_concurrency(cls) -> int | None:
        """No limit of its own: commands already share the ``"subprocesses"`` limit."""
        return None

    @classmethod
    async def sample_init(
        cls, task_name: str, config: Any, metadata: dict[str, Any]
    ) -> dict[str, SandboxEnvironment]:
        """Create the sample's environment and its private working directory.

        Returns:
            ``{"default": LocalSandboxEnvironment(...)}``.

        Raises:
            OSError: The temporary directory cannot be created.
        """
        directory = tempfile.mkdtemp(prefix="corral-sandbox-")
        environment = cls(directory)
        try:
            # Removed by the guardian if the harness dies first, or at the
            # latest by ``corral sandbox cleanup local``.
            watch_directory(directory)
            record_sandbox(
                "local", os.path.basename(directory), dir=directory, tag=environment._tag
            )
        except BaseException:
            environment._release()
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
        """Kill what the sample's commands left running and remove its directories.

        Processes still tagged with an environment's marker (daemons that
        left their process group) are killed with SIGKILL, together with
        their process groups; then the directory is removed, ignoring errors.
        Calling it again does nothing. Entries that are not local
        environments are skipped.

        **Cancellation:** each environment is released in one worker thread
        (one scan of ``/proc`` and one directory removal), which runs to the
        end once started. An environment whose release had not started when
        the cancellation came is left as it was, so calling this again
        finishes the job. The runtime calls it shielded and bounded in time.
        """
        for environment in environments.values():
            if isinstance(environment, LocalSandboxEnvironment):
                await environment._cleanup()

    async def _cleanup(self) -> None:
        if self._closed:
            return
        for process in list(self._processes):  # stopped and reaped, not only SIGKILLed
            await process.kill()
        killed = await anyio.to_thread.run_sync(self._release)
        if killed:
            logger.warning(
                "killed %d process(es) left running by commands of the local sandbox in %s",
                killed,
                self._directory,
            )

    def _release(self) -> int:
        """Close the environment, kill what its commands left running, remove its directory."""
        if self._closed:
            return 0
        self._closed = True
        killed = stop_processes((), self._tag.encode(), grace=0) if self._ran_commands else 0
        remove_tree(self._directory)
        forget_directory(self._directory)
        resolve_sandbox(os.path.basename(self._directory))
        return killed

    @classmethod
    async def cli_cleanup(cls, id: str | None) -> None:
        """Remove the local sandboxes that harnesses which are gone left behind (or only *id*).

        What is removed is printed, one line each. See ``corral sandbox cleanup``.

        Raises:
            ValueError: *id* is not a recorded local sandbox, or its harness is still running.
            OSError: Something could not be removed (it stays recorded).
        """
        from ._sweep import print_sweep

        await print_sweep("local", id)

    @classmethod
    async def _sweep_leftovers(cls, leftovers: list[Leftover], config: object) -> list[SweepResult]:
        """For :mod:`._sweep`: stop the processes and remove the directories of *leftovers*."""
        return [
            await anyio.to_thread.run_sync(_remove_leftover, leftover) for leftover in leftovers
        ]


def _remove_leftover(leftover: Leftover) -> SweepResult:
    from ._sweep import SweepResult

    directory = str(leftover.details.get("dir", ""))
    tag = str(leftover.details.get("tag", ""))
    killed = stop_processes((), tag.encode(), grace=0.5) if tag else 0
    existed = bool(directory) and os.path.lexists(directory)
    if existed:
        remove_tree(directory)
        if os.path.lexists(directory):
            return SweepResult(leftover, error=f"cannot remove everything in {directory}")
    if not existed and not killed:
        return SweepResult(leftover)
    what = directory if existed else f"the processes of {directory}"
    if killed:
        what += f" ({killed} process{'es' if killed > 1 else ''} stopped)"
    return SweepResult(leftover, removed=what)
