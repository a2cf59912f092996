"""Streaming execution: the handle :meth:`SandboxEnvironment.exec_remote` returns, and its events.

The names are ``inspect_ai.util``'s (0.3.285): a command started with
``exec_remote`` is an :class:`ExecRemoteProcess`, an async iterator of
:class:`ExecStdout` and :class:`ExecStderr` chunks ended by one
:class:`ExecCompleted`. Options come as :class:`ExecRemoteStreamingOptions`
(``stream=True``) or :class:`ExecRemoteAwaitableOptions` (``stream=False``).

:class:`ExecRemoteProcess` is abstract: a provider that can stream returns a
subclass of its own. Providers that only have ``exec`` get the base class's
*slow path*, :class:`ExecFallbackProcess`, which runs the command through
``exec`` when the iteration begins and reports its whole output at the end.
corral does not poll: the ``poll_*`` options are accepted so that code written
for inspect_ai runs unchanged, and ignored.
"""

from __future__ import annotations

import abc
import collections
import contextlib
import dataclasses
import typing
from typing import TYPE_CHECKING, ClassVar

import anyio
import anyio.lowlevel

from .._core._settings import start_in_sample

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from .._process._subprocess import ExecResult
    from ._environment import SandboxEnvironment

__all__ = [
    "ExecCompleted",
    "ExecFallbackProcess",
    "ExecOutput",
    "ExecRemoteAwaitableOptions",
    "ExecRemoteCommonOptions",
    "ExecRemoteProcess",
    "ExecRemoteStreamingOptions",
    "ExecStderr",
    "ExecStdout",
    "chunk_event",
    "stdin_bytes",
]


@dataclasses.dataclass
class ExecStdout:
    """Text the command wrote to its stdout (one chunk, as it arrived)."""

    type: ClassVar[str] = "stdout"

    data: str


@dataclasses.dataclass
class ExecStderr:
    """Text the command wrote to its stderr (one chunk, as it arrived)."""

    type: ClassVar[str] = "stderr"

    data: str


@dataclasses.dataclass
class ExecCompleted:
    """The command ended with *exit_code*; the last event of a process."""

    type: ClassVar[str] = "completed"

    exit_code: int

    @property
    def success(self) -> bool:
        """Whether the exit code is 0."""
        return self.exit_code == 0


ExecOutput = ExecStdout | ExecStderr | ExecCompleted
"""An event of an :class:`ExecRemoteProcess`."""


@dataclasses.dataclass
class ExecRemoteCommonOptions:
    """Options of :meth:`~corral.util.SandboxEnvironment.exec_remote` in both modes.

    Attributes:
        input: Written to the command's stdin first.
        cwd: The working directory.
        env: Variables added to the command's environment.
        user: The user to run the command as.
        poll_interval: Accepted for inspect_ai's code and ignored: corral does not poll.
        poll_timeout: Accepted and ignored, as *poll_interval*.
        poll_timeout_retry: Accepted and ignored, as *poll_interval*.
        concurrency: Whether the command takes a slot of the subprocess
            concurrency limit (for providers that run commands locally).
        poll_timeout_recovery: Accepted and ignored, as *poll_interval*
            (keyword-only). Combining it with ``poll_timeout_retry=False``
            raises ``ValueError``, as in inspect_ai.
    """

    input: str | bytes | None = None
    cwd: str | None = None
    env: dict[str, str] | None = None
    user: str | None = None
    poll_interval: float | None = None
    poll_timeout: float | None = None
    poll_timeout_retry: bool | None = None
    concurrency: bool = True
    poll_timeout_recovery: float | None = dataclasses.field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        if self.poll_timeout_recovery is not None and self.poll_timeout_retry is False:
            raise ValueError(
                "poll_timeout_recovery and poll_timeout_retry=False contradict each other "
                "(the first re-issues timed-out polls, the second asks for no retries); "
                "give at most one of them"
            )


@dataclasses.dataclass
class ExecRemoteStreamingOptions(ExecRemoteCommonOptions):
    """Options of ``exec_remote(..., stream=True)``.

    Attributes:
        stdin_open: Keep stdin open after *input*, so that
            :meth:`ExecRemoteProcess.write_stdin` and
            :meth:`~ExecRemoteProcess.close_stdin` may be called. By default
            stdin is closed once *input* (if any) is written.
    """

    stdin_open: bool = False


@dataclasses.dataclass
class ExecRemoteAwaitableOptions(ExecRemoteCommonOptions):
    """Options of ``exec_remote(..., stream=False)``.

    Attributes:
        timeout: Seconds the command may run. When they pass it is stopped
            and the call raises ``TimeoutError``
            (:class:`~corral.util.SandboxTimeoutError`, whose
            ``truncated_output`` keeps what it printed), as ``exec`` does.
    """

    timeout: float | None = None


class ExecRemoteProcess(abc.ABC):
    """A command started by ``exec_remote``: iterate it for its events.

    ``async for event in process`` yields :data:`ExecOutput` events in the
    order the command produced them, stdout and stderr apart, and ends after
    the :class:`ExecCompleted` event (or with no such event once the process
    was killed). A process is iterated once; the loop owns it: leaving it
    early (``break``, ``return``, an exception in its body) kills the process,
    in the running sample's task group, before the sample goes on to clean up
    its sandboxes. ``await anext(process)`` reads one event without tying the
    process's life to a loop (a server the sample talks to once it is ready,
    say). Providers subclass it; users get one from
    :meth:`~corral.util.SandboxEnvironment.exec_remote`.
    """

    _iterated = False

    def __aiter__(self) -> AsyncIterator[ExecOutput]:
        """The events, once, for an ``async for`` that kills the process if left early.

        Raises:
            RuntimeError: It was iterated before (as in inspect_ai).
        """
        if self._iterated:
            raise RuntimeError("ExecRemoteProcess can only be iterated once")
        self._iterated = True
        return _Iteration(self)

    @abc.abstractmethod
    async def __anext__(self) -> ExecOutput:
        """The next event; ``StopAsyncIteration`` after the last."""

    @property
    @abc.abstractmethod
    def pid(self) -> int:
        """The process id in the sandbox.

        Raises:
            RuntimeError: The implementation has none to give.
        """

    @abc.abstractmethod
    async def write_stdin(self, data: str | bytes) -> None:
        """Write *data* (``str`` as UTF-8) to the command's stdin.

        Raises:
            RuntimeError: The process was not started with
                ``stdin_open=True``, stdin is closed, or the process has ended.
        """

    @abc.abstractmethod
    async def close_stdin(self) -> None:
        """Close the command's stdin (end of file); again, or after the end, does nothing.

        Raises:
            RuntimeError: The process was not started with ``stdin_open=True``.
        """

    @abc.abstractmethod
    async def kill(self) -> None:
        """Stop the command; once it has ended (or been killed), does nothing."""


@typing.final
class _Iteration:
    """What ``async for`` iterates: the process's events, and its kill if left early.

    Python tells an iterator nothing when a loop is left early; it drops it.
    This one sees that in ``__del__`` (at once in CPython: the loop holds the
    only reference) and, unless the events were over, starts the process's
    ``kill()`` (shielded: it finishes even as the sample is cancelled) in the
    sample's task group, which the sample waits for before its sandboxes'
    cleanup. An async generator would be closed the same way, but by the event
    loop's finaliser: outside the sample's context, and under trio with a
    ``ResourceWarning``. Outside a sample nothing is started: the handle's
    ``kill()``, or the provider's cleanup, stops the process.
    """

    __slots__ = ("_over", "_process")

    def __init__(self, process: ExecRemoteProcess) -> None:
        self._process = process
        self._over = False

    def __aiter__(self) -> _Iteration:
        return self

    async def __anext__(self) -> ExecOutput:
        try:
            event = await self._process.__anext__()
        except StopAsyncIteration:
            self._over = True
            raise
        if isinstance(event, ExecCompleted):
            self._over = True
        return event

    def __del__(self) -> None:
        if self._over:
            return
        self._over = True
        with contextlib.suppress(Exception):  # a finaliser must not raise
            start_in_sample(self._process.kill, name=f"kill {self._process!r}: its loop was left")


class ExecFallbackProcess(ExecRemoteProcess):
    """The slow path: ``exec_remote`` for a provider that only has ``exec``.

    ``exec`` has no handle on a running command, so this one runs the command
    as one ``exec`` call (through the sandbox proxy: its argument checks,
    output limits, event and trace apply) when the iteration begins, in the
    iterating task, and then yields all of its stdout as one
    :class:`ExecStdout`, all of its stderr as one :class:`ExecStderr` (each
    only when not empty) and the :class:`ExecCompleted`. Nothing arrives
    while the command runs.

    * **stdin:** with ``stdin_open=True``, :meth:`write_stdin` collects the
      data, after *input*, until :meth:`close_stdin` or the start of the
      iteration (which closes stdin: the command cannot be fed later);
      writing then raises ``RuntimeError``. Without it, stdin is *input* only
      and :meth:`write_stdin` raises ``RuntimeError``.
    * **kill:** before the iteration the command never runs and the
      iteration ends at once; during it the ``exec`` call is cancelled (the
      provider stops the command) and the iteration ends without an
      :class:`ExecCompleted`. Idempotent.
    * **cancellation** of the iterating task cancels the ``exec`` call, so the
      command is stopped before the cancellation propagates.
    * **pid** raises ``RuntimeError``: there is no process id to give.
    * Errors of ``exec`` (an output limit, an unavailable sandbox) are raised
      by the iteration.
    """

    def __init__(
        self,
        sandbox: SandboxEnvironment,
        cmd: list[str],
        options: ExecRemoteCommonOptions,
    ) -> None:
        self._sandbox = sandbox
        self._cmd = list(cmd)
        self._options = options
        self._stdin_open = isinstance(options, ExecRemoteStreamingOptions) and options.stdin_open
        first = options.input
        self._stdin: list[bytes] = [] if first is None else [_as_bytes(first)]
        self._stdin_closed = not self._stdin_open
        self._closed_by_caller = False
        self._state = "pending"  # -> "running" -> "completed" | "killed"
        self._events: collections.deque[ExecOutput] = collections.deque()
        self._scope: anyio.CancelScope | None = None

    def __repr__(self) -> str:
        return f"<ExecFallbackProcess {self._cmd!r} {self._state}>"

    @property
    def pid(self) -> int:
        raise RuntimeError(
            "this sandbox has no native exec_remote: its commands run through exec(), "
            "which has no process id"
        )

    async def __anext__(self) -> ExecOutput:
        await anyio.lowlevel.checkpoint()
        if self._state == "pending":
            await self._run()
        if self._events:
            return self._events.popleft()
        raise StopAsyncIteration

    async def _run(self) -> None:
        self._state = "running"
        self._stdin_closed = True
        stdin = b"".join(self._stdin) if self._stdin else None
        self._stdin.clear()
        options = self._options
        with anyio.CancelScope() as scope:
            self._scope = scope
            try:
                result = await _proxied(self._sandbox).exec(
                    self._cmd,
                    input=stdin,
                    cwd=options.cwd,
                    env=options.env,
                    user=options.user,
                    concurrency=options.concurrency,
                )
            except BaseException:
                self._state = "killed"
                raise
            finally:
                self._scope = None
        if scope.cancelled_caught or self._state == "killed":
            self._state = "killed"
            return
        self._state = "completed"
        if result.stdout:
            self._events.append(ExecStdout(result.stdout))
        if result.stderr:
            self._events.append(ExecStderr(result.stderr))
        self._events.append(ExecCompleted(result.returncode))

    async def write_stdin(self, data: str | bytes) -> None:
        await anyio.lowlevel.checkpoint()
        payload = stdin_bytes(self._stdin_open, "write_stdin", data)
        if self._closed_by_caller:
            raise RuntimeError("cannot write to stdin: it is closed")
        if self._state in ("completed", "killed"):
            raise RuntimeError("cannot write to stdin: the process has ended")
        if self._stdin_closed:
            raise RuntimeError(
                "cannot write to stdin: it is closed (this sandbox's exec_remote runs the "
                "command through exec() once the iteration begins)"
            )
        self._stdin.append(payload)

    async def close_stdin(self) -> None:
        await anyio.lowlevel.checkpoint()
        stdin_bytes(self._stdin_open, "close_stdin")
        self._stdin_closed = self._closed_by_caller = True

    async def kill(self) -> None:
        await anyio.lowlevel.checkpoint()
        if self._state == "pending":
            self._state = "killed"
            self._stdin.clear()
        elif self._state == "running":
            self._state = "killed"
            if self._scope is not None:
                self._scope.cancel()


def _as_bytes(data: str | bytes) -> bytes:
    return data.encode() if isinstance(data, str) else data


def stdin_bytes(stdin_open: bool, method: str, data: object = b"") -> bytes:
    """*data* for the command's stdin as bytes (``str`` as UTF-8), after the checks of *method*.

    Raises:
        RuntimeError: The process was not started with ``stdin_open=True``.
        TypeError: *data* is neither ``str`` nor ``bytes``.
    """
    if not stdin_open:
        raise RuntimeError(f"{method}() requires stdin_open=True in ExecRemoteStreamingOptions")
    if not isinstance(data, str | bytes):
        raise TypeError(f"data must be str or bytes, got {type(data).__name__}")
    return _as_bytes(data)


def chunk_event(chunk: tuple[str, str] | int | None) -> ExecOutput:
    """The event for a native handle's next piece: ``(stream, text)``, an exit status, or the end.

    Raises:
        StopAsyncIteration: *chunk* is ``None`` (there is nothing more).
    """
    if chunk is None:
        raise StopAsyncIteration
    if isinstance(chunk, int):
        return ExecCompleted(chunk)
    name, text = chunk
    return ExecStdout(text) if name == "stdout" else ExecStderr(text)


def _proxied(sandbox: SandboxEnvironment) -> SandboxEnvironment:
    """*sandbox* behind the proxy (itself if it is one), so that ``exec``'s rules apply."""
    from ._proxy import SandboxEnvironmentProxy

    return SandboxEnvironmentProxy(sandbox)


def check_options(cmd: object, options: object, stream: bool) -> ExecRemoteCommonOptions:
    """*options* as given, or the mode's defaults for ``None``, once *cmd* is checked.

    Raises:
        TypeError: *cmd* is not a list of ``str``, *options* is not an
            ``ExecRemote*Options``, or *stream* not a bool.
        ValueError: *cmd* is empty.
    """
    if not isinstance(cmd, list) or not all(isinstance(arg, str) for arg in cmd):
        raise TypeError(f"cmd must be a list of str, got {cmd!r}")
    if not cmd:
        raise ValueError("cmd must not be empty")
    if not isinstance(stream, bool):
        raise TypeError(f"stream must be a bool, got {type(stream).__name__}")
    if options is None:
        return ExecRemoteStreamingOptions() if stream else ExecRemoteAwaitableOptions()
    if not isinstance(options, ExecRemoteCommonOptions):
        raise TypeError(
            "options must be ExecRemoteStreamingOptions or ExecRemoteAwaitableOptions, "
            f"got {type(options).__name__}"
        )
    return options


async def exec_awaitable(
    sandbox: SandboxEnvironment, cmd: list[str], options: ExecRemoteCommonOptions
) -> ExecResult[str]:
    """``exec_remote(..., stream=False)`` through ``exec``: its timeout and limits apply."""
    timeout = options.timeout if isinstance(options, ExecRemoteAwaitableOptions) else None
    return await _proxied(sandbox).exec(
        cmd,
        input=options.input,
        cwd=options.cwd,
        env=options.env,
        user=options.user,
        timeout=timeout,
        concurrency=options.concurrency,
    )
