"""Supervised subprocesses: ``subprocess()`` and ``ExecResult``.

Two levels, as in trio: :func:`_spawn` only starts a child (in its own
session and process group, with pipes the supervisor owns), and
:func:`_supervise` runs it to the end, feeding stdin and draining stdout and
stderr in a task group while it waits. Any exit from :func:`_supervise` other
than a normal one (cancellation, a timeout, an error in the supervisor)
terminates the child's whole process group inside a shielded, bounded scope
before the exception propagates, and every pipe is closed on every path.

For the rest of corral, :func:`check_command` and :func:`run_supervised` are
the layer under :func:`subprocess`: the local sandbox checks and runs its
commands with them, taking its slot itself and reading the output into
buffers the sandbox proxy gave it.
"""

from __future__ import annotations

import errno
import logging
import os
import shlex
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, overload

import anyio

from .._core._checks import (
    check_argument,
    check_bool,
    check_bytes,
    check_env,
    check_no_nul,
    check_seconds,
    check_str_list,
    type_name,
)
from .._core._settings import current_kill_grace, subprocess_limiter
from .._core._tail import TailBuffer
from .._core._working import waiting
from ..tracing._actions import trace_action
from ._child import Child, start_child
from ._guardian import forget_group, harness_tag, watch_group
from ._pipes import OutputCapture, close_fd, feed_input, make_pipe
from ._process_group import group_alive, terminate_group

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from .._core._limiters import Limiter

__all__ = ["Command", "ExecResult", "check_command", "run_supervised", "subprocess"]

logger = logging.getLogger("corral.subprocess")

T = TypeVar("T", str, bytes)


@dataclass
class ExecResult(Generic[T]):
    """The outcome of a command run with :func:`subprocess`.

    Attributes:
        success: ``returncode == 0``.
        returncode: The exit status; ``-N`` when the child died of signal ``N``.
        stdout: What the child wrote to stdout (empty without capture).
        stderr: What the child wrote to stderr (empty without capture).
    """

    success: bool
    returncode: int
    stdout: T
    stderr: T


@dataclass(frozen=True, slots=True)
class Command:
    """A checked command: nothing about it can fail later but the OS.

    Attributes:
        argv: The program and its arguments.
        display: How messages and traces show the command.
        input: Bytes for the child's stdin; ``None`` gives it ``/dev/null``.
        cwd: The child's working directory (checked to be a directory).
        env: The child's whole environment (ours, the caller's variables and
            the harness tag of :mod:`._guardian`).
        capture: Whether stdout and stderr are captured.
    """

    argv: list[str]
    display: str
    input: bytes | None
    cwd: str | None
    env: Mapping[str, str] | Mapping[bytes, bytes]
    capture: bool


def check_command(
    args: object, input: object, cwd: object, env: object, capture_output: object
) -> Command:
    """Check the arguments of a command, as ``subprocess()`` takes them.

    Raises:
        TypeError: An argument has the wrong type (the message names it).
        ValueError: The command is empty.
        FileNotFoundError: *cwd* does not exist.
        NotADirectoryError: *cwd* is not a directory.
    """
    if isinstance(args, str):
        if not args.strip():
            raise ValueError("args must not be an empty command")
        check_argument("args", args)
        argv = ["/bin/sh", "-c", args]
        display = args
    elif isinstance(args, list | tuple):
        argv = check_str_list("args", args, paths=True)
        display = shlex.join(argv)
    else:
        raise TypeError(f"args must be a str or a list of str, got {type_name(args)}")

    data = check_bytes("input", input, optional=True)

    cwd_path: str | None = None
    if cwd is not None:
        if not isinstance(cwd, (str, os.PathLike)):
            raise TypeError(f"cwd must be a str or a path, got {type_name(cwd)}")
        cwd_path = os.fspath(cwd)
        if not isinstance(cwd_path, str):
            raise TypeError(f"cwd must be a str or a path, got {type_name(cwd_path)}")
        check_no_nul("cwd", cwd_path)
        try:
            mode = os.stat(cwd_path).st_mode
        except FileNotFoundError:
            raise FileNotFoundError(errno.ENOENT, "cwd does not exist", cwd_path) from None
        if not stat.S_ISDIR(mode):
            raise NotADirectoryError(errno.ENOTDIR, "cwd is not a directory", cwd_path)

    extra = check_env("env", env)
    name, token = harness_tag()
    merged = _child_environment({**extra, name: token} if extra else {name: token})

    capture = check_bool("capture_output", capture_output)
    return Command(argv, display, data or None, cwd_path, merged, capture)


def _check_output_limit(output_limit: object) -> int | None:
    if output_limit is not None:
        if isinstance(output_limit, bool) or not isinstance(output_limit, int):
            raise TypeError(f"output_limit must be an int, got {type_name(output_limit)}")
        if output_limit <= 0:
            raise ValueError(f"output_limit must be > 0 bytes, got {output_limit}")
    return output_limit


def _child_environment(extra: Mapping[str, str]) -> Mapping[str, str] | Mapping[bytes, bytes]:
    """``os.environ`` with *extra* on top, as the child will get it.

    Copying ``os.environ`` itself decodes every variable in Python (about
    50 us per call, then ``Popen`` encodes them all again). On POSIX CPython
    keeps the environment as a dict of bytes behind it, which copies in C and
    which ``Popen`` takes as is; use it when it is there.
    """
    raw = getattr(os.environ, "_data", None)
    if os.name != "posix" or not isinstance(raw, dict):
        return {**os.environ, **extra}
    merged: dict[bytes, bytes] = dict(raw)
    for key, value in extra.items():
        merged[os.fsencode(key)] = os.fsencode(value)
    return merged


class _Fds:
    """The parent's pipe ends for one child; each is closed exactly once."""

    __slots__ = ("_open",)

    def __init__(self) -> None:
        self._open: set[int] = set()

    def pipe(self) -> tuple[int, int]:
        read_fd, write_fd = make_pipe()
        self._open.update((read_fd, write_fd))
        return read_fd, write_fd

    def close(self, fd: int | None) -> None:
        if fd is not None and fd in self._open:
            self._open.discard(fd)
            close_fd(fd)

    def open_fds(self) -> list[int]:
        return list(self._open)

    def close_all(self) -> None:
        for fd in list(self._open):
            self.close(fd)


async def _spawn(command: Command, fds: _Fds) -> tuple[Child, int | None, int | None, int | None]:
    """Start *command*; return the process and the parent's (stdin, stdout, stderr) ends."""
    from subprocess import DEVNULL  # imported by the first spawn (Popen needs it then too)

    stdin_r = stdin_w = out_r = out_w = err_r = err_w = None
    if command.input is not None:
        stdin_r, stdin_w = fds.pipe()
    if command.capture:
        out_r, out_w = fds.pipe()
        err_r, err_w = fds.pipe()
    try:
        process = await start_child(
            command.argv,
            stdin=stdin_r if stdin_r is not None else DEVNULL,
            stdout=out_w,
            stderr=err_w,
            cwd=command.cwd,
            env=command.env,
        )
    finally:
        # The child has its own copies now (or there is no child).
        fds.close(stdin_r)
        fds.close(out_w)
        fds.close(err_w)
    return process, stdin_w, out_r, err_r


async def _supervise(
    command: Command, grace: float, stdout: TailBuffer | None, stderr: TailBuffer | None
) -> int:
    fds = _Fds()
    process: Child | None = None
    try:
        process, stdin_w, out_r, err_r = await _spawn(command, fds)
        # From here the guardian stops the group if the harness dies first.
        watch_group(process.pid)
        try:
            async with anyio.create_task_group() as tg:
                if stdin_w is not None:
                    assert command.input is not None
                    tg.start_soon(_feed, fds, stdin_w, command.input)
                if out_r is not None and stdout is not None:
                    tg.start_soon(OutputCapture(out_r, stdout).run)
                if err_r is not None and stderr is not None:
                    tg.start_soon(OutputCapture(err_r, stderr).run)
                returncode = await process.wait()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await terminate_group(process, grace, f"command {command.display!r}")
            _forget_if_gone(process.pid)
            raise
        if group_alive(process.pid):
            # The child is done, but something it started in its group is
            # still running: it must not outlive this call.
            with anyio.CancelScope(shield=True):
                await terminate_group(process, grace, f"command {command.display!r}")
        _forget_if_gone(process.pid)
    finally:
        fds.close_all()
        if process is not None:
            process.close()
    return returncode


def _forget_if_gone(pgid: int) -> None:
    # A group that could not be stopped (members run as another user) stays
    # watched: the guardian tries again when the harness exits.
    if not group_alive(pgid):
        forget_group(pgid)


async def _feed(fds: _Fds, fd: int, data: bytes) -> None:
    try:
        await feed_input(fd, data)
    finally:
        fds.close(fd)


@overload
async def subprocess(
    args: str | list[str],
    text: Literal[True] = True,
    input: str | bytes | memoryview | None = None,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    capture_output: bool = True,
    output_limit: int | None = None,
    timeout: float | None = None,
    concurrency: bool = True,
) -> ExecResult[str]: ...


@overload
async def subprocess(
    args: str | list[str],
    text: Literal[False],
    input: str | bytes | memoryview | None = None,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    capture_output: bool = True,
    output_limit: int | None = None,
    timeout: float | None = None,
    concurrency: bool = True,
) -> ExecResult[bytes]: ...


@overload
async def subprocess(
    args: str | list[str],
    text: bool = True,
    input: str | bytes | memoryview | None = None,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    capture_output: bool = True,
    output_limit: int | None = None,
    timeout: float | None = None,
    concurrency: bool = True,
) -> ExecResult[str] | ExecResult[bytes]: ...


async def subprocess(
    args: str | list[str],
    text: bool = True,
    input: str | bytes | memoryview | None = None,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    capture_output: bool = True,
    output_limit: int | None = None,
    timeout: float | None = None,
    concurrency: bool = True,
) -> ExecResult[str] | ExecResult[bytes]:
    """Run a command to completion under supervision and return its result.

    The child runs in its own session and process group. A ``str`` command
    runs through ``/bin/sh -c``; a list is executed directly.

    Args:
        args: The command: a shell command line, or a program and its arguments.
        text: Decode stdout and stderr as UTF-8 (undecodable bytes become
            U+FFFD) and return ``ExecResult[str]``; ``False`` returns bytes.
        input: Data for the child's stdin, written while its output is read,
            so a child echoing large input cannot deadlock. ``None`` or empty
            input gives the child an empty stdin (``/dev/null``).
        cwd: Working directory of the child.
        env: Variables set on top of ``os.environ`` for the child.
        capture_output: Capture stdout and stderr; ``False`` lets the child
            inherit the caller's and returns empty output.
        output_limit: Keep only the last *output_limit* bytes of each stream.
            The child runs to completion and memory stays bounded by the limit,
            however much it writes.
        timeout: Seconds the command may run, counted once it holds its
            concurrency slot (time spent waiting for the slot does not count).
        concurrency: Take a slot of the ``"subprocesses"`` limit (the running
            task's ``max_subprocesses``, else ``os.cpu_count()``) while running.

    Returns:
        An :class:`ExecResult`; ``success`` is ``returncode == 0``. A child
        killed by signal ``N`` has ``returncode == -N``. Output of processes
        the child left behind is captured until its pipes close.

    Raises:
        TypeError: An argument has the wrong type; the message names it
            (for ``env``, the key).
        ValueError: An empty command, a negative *timeout*, or an
            *output_limit* below 1.
        FileNotFoundError: The program or *cwd* does not exist (the message
            names it).
        NotADirectoryError: *cwd* is not a directory.
        PermissionError: The program is not executable.
        TimeoutError: The command ran longer than *timeout*; the message
            names the command and the seconds, and its ``stdout`` and
            ``stderr`` attributes hold what the command printed until then
            (``str`` or ``bytes`` as *text* says, within *output_limit*).

    The run is traced as a ``"Subprocess"`` action (see :mod:`corral.tracing`),
    from the moment the command holds its slot until it has been reaped.

    **Cancellation:** this is a checkpoint. When the caller is cancelled, or
    the timeout expires, the child's whole process group gets SIGTERM; once
    the child and every member of its group have exited (at once, for a child
    that dies on SIGTERM), or after the task's kill grace (``kill_grace``,
    ``$CORRAL_KILL_GRACE``, default 2 s), the group gets SIGKILL and a
    :class:`RuntimeWarning`. The child is then reaped in a shielded scope
    bounded in time, its pipes are closed (so a descendant that escaped the
    group cannot hold the caller), and the cancellation or ``TimeoutError``
    propagates. Processes left in the group after a normal exit are
    terminated the same way before this returns.
    """
    check_bool("text", text)
    command = check_command(args, input, cwd, env, capture_output)
    limit = _check_output_limit(output_limit)
    seconds = check_seconds("timeout", timeout)
    check_bool("concurrency", concurrency)
    grace = current_kill_grace()
    limiter: Limiter | None = subprocess_limiter() if concurrency else None
    out = TailBuffer(limit) if command.capture else None
    err = TailBuffer(limit) if command.capture else None

    try:
        if limiter is not None:
            slot = object()
            with waiting():  # the wait for a slot is not working time
                await limiter.acquire_on_behalf_of(slot)
            try:
                returncode = await run_supervised(command, out, err, timeout=seconds, grace=grace)
            finally:
                limiter.release_on_behalf_of(slot)
        else:
            returncode = await run_supervised(command, out, err, timeout=seconds, grace=grace)
    except TimeoutError as exc:
        # What it printed until then, as the result would have held it.
        exc.stdout, exc.stderr = _output(out, text), _output(err, text)  # type: ignore[attr-defined]
        raise

    stdout, stderr = _output(out, text), _output(err, text)
    result: ExecResult[Any] = ExecResult(returncode == 0, returncode, stdout, stderr)
    return result


def _output(buffer: TailBuffer | None, text: bool) -> str | bytes:
    data = buffer.value() if buffer is not None else b""
    return data.decode("utf-8", errors="replace") if text else data


async def run_supervised(
    command: Command,
    stdout: TailBuffer | None,
    stderr: TailBuffer | None,
    *,
    timeout: float | None = None,
    grace: float | None = None,
) -> int:
    """Run a checked *command* to the end, supervised; return its exit status.

    The lower level of :func:`subprocess`: no slot of a limit is taken, and
    the output goes to the caller's buffers (``None``: not read), which keep
    what was read when the run is cancelled. The run is traced as a
    ``"Subprocess"`` action.

    Args:
        command: From :func:`check_command`.
        stdout: Where the child's stdout goes (appended as it arrives).
        stderr: Where the child's stderr goes.
        timeout: Seconds the command may run.
        grace: The kill grace (default: :func:`~corral._core._settings.current_kill_grace`).

    Raises:
        TimeoutError: The command ran longer than *timeout*.
        OSError: The program could not be started.

    **Cancellation:** as :func:`subprocess`: the whole process group is
    stopped and the child reaped before the cancellation propagates.
    """
    if grace is None:
        grace = current_kill_grace()
    with trace_action(logger, "Subprocess", "%s", command.display):
        if timeout is None:
            return await _supervise(command, grace, stdout, stderr)
        with anyio.CancelScope(deadline=anyio.current_time() + timeout) as scope:
            return await _supervise(command, grace, stdout, stderr)
        assert scope.cancelled_caught
        raise TimeoutError(f"Command {command.display!r} timed out after {timeout:g} seconds")
