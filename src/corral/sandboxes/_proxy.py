"""The wrapper every sandbox environment is used through, and the one owner of the contract's rules.

:class:`SandboxEnvironmentProxy` does, once for every provider, what the
contract promises about every call, so that providers keep only the
mechanics:

* it **checks the arguments** of ``exec``, ``read_file`` and ``write_file``
  before anything happens (no slot taken, nothing sent), raising
  ``TypeError``/``ValueError`` that names the parameter;
* it **applies** ``timeout=`` as a cancel scope around the provider's
  ``exec`` and raises :class:`~corral.util.SandboxTimeoutError` (with the
  output so far, when the provider shares it through
  :mod:`~corral.sandboxes._calls`); a ``TimeoutError`` the provider raises
  itself becomes the same error;
* it **enforces the output limits**: an ``exec`` stream over
  ``max_exec_output_size()`` bytes, or a file over ``max_read_file_size()``,
  raises :class:`~corral.util.OutputLimitExceededError`;
* it **records** each call as a :class:`~corral.util.SandboxEvent` in the
  running sample's transcript and **traces** it as the action ``"Sandbox"``.

The lifecycle class methods (``sample_init``, ``sample_cleanup``, ...) are
called on the provider class, never on the proxy, and ``sample_cleanup``
receives the provider's own environments (see :attr:`~SandboxEnvironmentProxy.inner`).

The proxy is not an instance of the provider's class: ``isinstance`` answers
for the proxy (a ``SandboxEnvironment``), and
:meth:`~SandboxEnvironmentProxy.as_type` gives the provider's object. Public
attributes the proxy does not have itself are read from the wrapped
environment (``sandbox().directory`` for a local sandbox); private ones
(``_name``) are not, and the proxy's own methods are never shadowed.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import shlex
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, NoReturn, TypeVar, overload

from .._core._checks import (
    check_bool,
    check_bytes,
    check_env,
    check_path,
    check_seconds,
    check_str,
    check_str_list,
    type_name,
)
from .._state._events import SandboxEvent, current_span, seconds_into_sample
from .._state._transcript import transcript
from ..tracing._actions import trace_action
from ._calls import ExecCall, current_exec_call
from ._environment import SandboxEnvironment
from ._errors import OutputLimitExceededError, SandboxTimeoutError
from ._exec_remote import ExecRemoteAwaitableOptions, ExecRemoteStreamingOptions
from ._output_limits import human_size, max_exec_output_size, max_read_file_size

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pydantic import JsonValue

    from .._core._tail import TailBuffer
    from .._process._subprocess import ExecResult
    from ._environment import SandboxConnection
    from ._exec_remote import ExecRemoteProcess
    from ._exec_remote_record import RecordedProcess

__all__ = ["SandboxEnvironmentProxy", "display_content", "wrap_environments"]

_ST = TypeVar("_ST", bound=SandboxEnvironment)

_logger = logging.getLogger("corral.sandbox")

_MAX_LINES = 20
_MAX_CHARS = 10_000
_MAX_TRACE_DETAIL = 1_000


def display_content(content: str | bytes | None) -> str | None:
    """Shorten *content* for a transcript event.

    Text longer than 20 lines or 10,000 characters keeps its start, followed
    by ``"\\n\\nOutput truncated (N additional lines)"``; bytes are shown as
    their size (``"binary (1.50 KB)"``).
    """
    if content is None:
        return None
    if isinstance(content, bytes):
        return f"binary ({_binary_size(len(content))})"
    lines = content.splitlines(keepends=True)
    if len(lines) <= _MAX_LINES and len(content) <= _MAX_CHARS:
        return content
    head = "".join(lines[:_MAX_LINES])[:_MAX_CHARS]
    hidden_lines = len(lines) - len(head.splitlines())
    head = head.removesuffix("\n").removesuffix("\r")
    if hidden_lines > 0:
        return f"{head}\n\nOutput truncated ({hidden_lines} additional lines)"
    return f"{head}\n\nOutput truncated ({len(content) - len(head)} additional characters)"


def _binary_size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024**2:
        return f"{size / 1024:.2f} KB"
    return f"{size / 1024**2:.2f} MB"


def _trace_detail(text: str) -> str:
    if len(text) <= _MAX_TRACE_DETAIL:
        return text
    return f"{text[:_MAX_TRACE_DETAIL]}... ({len(text) - _MAX_TRACE_DETAIL} more characters)"


def _tail(text: str, limit: int) -> str:
    """The last *limit* bytes of *text* (as UTF-8), cut at a character boundary."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[-limit:].decode("utf-8", errors="ignore")


def _kept(buffer: TailBuffer) -> str:
    """The tail a buffer kept, decoded; a character cut at its start is dropped."""
    data = buffer.value()
    start = 0
    while start < min(len(data), 3) and 0x80 <= data[start] < 0xC0:  # continuation bytes
        start += 1
    return data[start:].decode("utf-8", errors="replace")


def _now() -> datetime:
    return datetime.now(UTC)


def _record(**fields: Any) -> None:
    # Built (and validated) when the transcript is read: the fields are ours.
    transcript()._event_later(
        functools.partial(
            SandboxEvent,
            span_id=current_span.get(),
            working_start=seconds_into_sample(),
            **fields,
        )
    )


def _check_cmd(cmd: object) -> list[str]:
    if isinstance(cmd, str):  # a common mistake, with a remedy
        raise TypeError(
            "cmd must be a list of arguments, not a str; "
            f"to run it through a shell, use ['sh', '-c', {cmd!r}]"
        )
    argv = check_str_list("cmd", cmd)
    if "=" in argv[0]:
        # ``env`` and ``sudo`` (how a command runs as another user) would take it
        # for an assignment and run the next argument instead.
        raise ValueError(f"cmd[0] must not contain '=', got {argv[0]!r}")
    return argv


def _over(text: str, limit: int) -> bool:
    # A str holds at least one byte per character: only a long one can be over.
    return len(text) > limit // 4 and len(text.encode("utf-8")) > limit


def _too_big(contents: str | bytes, limit: int) -> bool:
    """Whether *contents* holds more than *limit* bytes (a ``str`` counted as UTF-8)."""
    if isinstance(contents, bytes):
        return len(contents) > limit
    return _over(contents, limit)


@functools.cache
def _takes(method: Any, parameter: str) -> bool:
    """Whether the function *method* accepts the keyword *parameter* (or any keyword)."""
    try:
        parameters = inspect.signature(method).parameters
    except (TypeError, ValueError):  # no signature to read: assume the current contract
        return True
    found = parameters.get(parameter)
    if found is not None:
        return found.kind in (found.POSITIONAL_OR_KEYWORD, found.KEYWORD_ONLY)
    return any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def _accepts(env: SandboxEnvironment, method: str, parameter: str) -> bool:
    """Whether *env*'s *method* takes *parameter*: providers written before it was added do not."""
    function = getattr(type(env), method, None)
    return function is None or _takes(function, parameter)


class SandboxEnvironmentProxy(SandboxEnvironment):
    """Check, time, limit, record and trace every call to the environment it wraps.

    ``SandboxEnvironmentProxy(env)`` wraps *env*; wrapping a proxy returns
    that same proxy, so wrapping is idempotent. Use :attr:`inner` to reach
    the provider's own object.

    Args:
        inner: The provider's environment.

    Raises:
        TypeError: *inner* is not a ``SandboxEnvironment``.
    """

    _inner: SandboxEnvironment

    def __new__(cls, inner: SandboxEnvironment) -> SandboxEnvironmentProxy:
        if isinstance(inner, SandboxEnvironmentProxy):
            return inner
        if not isinstance(inner, SandboxEnvironment):
            raise TypeError(f"inner must be a SandboxEnvironment, got {type_name(inner)}")
        return super().__new__(cls)

    def __init__(self, inner: SandboxEnvironment) -> None:
        if inner is self:  # __new__ returned an existing proxy
            return
        self._inner = inner
        # exec_remote handles that may still run (see kill_processes).
        self._processes: set[RecordedProcess] = set()

    @property
    def inner(self) -> SandboxEnvironment:
        """The wrapped environment, as the provider created it."""
        return self._inner

    def __repr__(self) -> str:
        return f"<SandboxEnvironmentProxy of {self._inner!r}>"

    if not TYPE_CHECKING:  # for type checkers, only the contract's attributes exist

        def __getattr__(self, name: str) -> Any:
            # Called only when the proxy has no such attribute of its own.
            if name.startswith("_"):
                raise AttributeError(
                    f"{type(self).__name__!r} object has no attribute {name!r} "
                    "(private attributes of the wrapped environment are not forwarded)"
                )
            try:
                inner = object.__getattribute__(self, "_inner")
            except AttributeError:
                raise AttributeError(name) from None
            return getattr(inner, name)

    def __dir__(self) -> list[str]:
        names = set(super().__dir__())
        names.update(name for name in dir(self._inner) if not name.startswith("_"))
        return sorted(names)

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
        """Run *cmd* in the wrapped environment; see :meth:`SandboxEnvironment.exec`.

        *concurrency* is passed on only to a provider whose ``exec`` declares
        it (or takes ``**kwargs``); one written before it existed runs the
        command as it always did. It is not recorded in the event.

        Raises:
            TypeError: An argument has the wrong type (the message names it);
                *cmd* is a ``str`` rather than a list of arguments.
            ValueError: *cmd* is empty or *timeout* negative.
            SandboxTimeoutError: The command ran longer than *timeout*
                (``truncated_output`` holds what it printed, when the
                provider shares it), or the provider raised a ``TimeoutError``.
            OutputLimitExceededError: stdout or stderr is over
                ``max_exec_output_size()`` bytes; ``truncated_output`` keeps
                the tail of the stream(s) over it. The event is still recorded.
            Exception: Whatever else the provider raises, unchanged.

        **Cancellation:** the provider's ``exec`` is cancelled (and stops the
        command); the cancellation propagates and no event is recorded. The
        timeout is a cancel scope of this call's own: only it becomes
        ``SandboxTimeoutError``.
        """
        argv = _check_cmd(cmd)
        data = check_bytes("input", input, optional=True)
        check_path("cwd", cwd, optional=True)
        variables = check_env("env", env, names=True)
        check_path("user", user, optional=True)
        seconds = check_seconds("timeout", timeout)
        check_bool("timeout_retry", timeout_retry)
        check_bool("concurrency", concurrency)
        limit = max_exec_output_size()
        extra: dict[str, bool] = {}
        if _accepts(self._inner, "exec", "concurrency"):
            extra["concurrency"] = concurrency

        command = shlex.join(argv)
        options: dict[str, JsonValue] = {}
        if cwd is not None:
            options["cwd"] = cwd
        if variables:
            options["env"] = dict(variables)
        if user is not None:
            options["user"] = user
        if timeout is not None:
            options["timeout"] = timeout
        if not timeout_retry:
            options["timeout_retry"] = False
        event: dict[str, Any] = {
            "action": "exec",
            "cmd": command,
            "input": display_content(input if isinstance(input, str | None) else data),
            "options": options,
        }
        call = ExecCall(limit, seconds)
        with trace_action(_logger, "Sandbox", "%s %s", "exec", _trace_detail(command)):
            start = _now()
            token = current_exec_call.set(call)
            try:
                with call.scope:
                    call.start_clock()
                    result = await self._inner.exec(
                        argv,
                        input=input,
                        cwd=cwd,
                        env=variables,
                        user=user,
                        timeout=timeout,
                        timeout_retry=timeout_retry,
                        **extra,
                    )
            except SandboxTimeoutError:
                raise
            except TimeoutError as exc:
                output = getattr(exc, "truncated_output", None)
                raise SandboxTimeoutError(
                    str(exc) or f"exec {command!r} timed out",
                    truncated_output=output if isinstance(output, str) else call.output_so_far(),
                ) from exc
            except OutputLimitExceededError as exc:  # a provider that enforces it itself
                _record(
                    **event,
                    output=display_content(exc.truncated_output),
                    timestamp=start,
                    completed=_now(),
                )
                raise
            finally:
                current_exec_call.reset(token)
            if call.scope.cancelled_caught and call.over_limit:
                # Stopped as soon as a stream passed the limit: the kept tail of it.
                out_over = call.stdout.total > limit
                kept = (_kept(call.stdout) if out_over else "") + (
                    _kept(call.stderr) if call.stderr.total > limit else ""
                )
                _record(**event, output=display_content(kept), timestamp=start, completed=_now())
                raise OutputLimitExceededError(human_size(limit), truncated_output=kept)
            if call.scope.cancelled_caught:
                raise SandboxTimeoutError(
                    f"Command {command!r} timed out after {timeout:g} seconds",
                    truncated_output=call.output_so_far(),
                )
            output = f"{result.stderr}\n\n{result.stdout}" if result.stderr else result.stdout
            _record(
                **event,
                result=result.returncode,
                output=display_content(output),
                timestamp=start,
                completed=_now(),
            )
            if call.shared:  # the buffers counted the bytes the command printed
                out_over = call.stdout.total > limit
                err_over = call.stderr.total > limit
                if out_over or err_over:
                    kept = (_kept(call.stdout) if out_over else "") + (
                        _kept(call.stderr) if err_over else ""
                    )
                    raise OutputLimitExceededError(human_size(limit), truncated_output=kept)
            else:  # only the text is known: count it as UTF-8
                out_over = _over(result.stdout, limit)
                err_over = _over(result.stderr, limit)
                if out_over or err_over:
                    kept = (_tail(result.stdout, limit) if out_over else "") + (
                        _tail(result.stderr, limit) if err_over else ""
                    )
                    raise OutputLimitExceededError(human_size(limit), truncated_output=kept)
        return result

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
        """Start *cmd* in the wrapped environment; see :meth:`SandboxEnvironment.exec_remote`.

        The arguments are checked as :meth:`exec` checks its own (the message
        names the parameter, ``options.cwd`` for instance). ``stream=False``
        always runs through this proxy's :meth:`exec` (its timeout, output
        limit, event and trace). Streaming, a provider whose class overrides
        ``exec_remote`` gets the call, and its handle is wrapped so that the
        process is recorded as one ``SandboxEvent`` (its exit code, and its
        output within ``max_exec_output_size()`` bytes per stream) when it
        completes or is killed, and traced; other providers get the slow path
        of :class:`SandboxEnvironment`.

        Raises:
            TypeError: An argument has the wrong type (the message names it).
            ValueError: *cmd* is empty, or ``options.timeout`` negative.
        """
        from ._exec_remote import check_options
        from ._exec_remote_record import RecordedProcess

        argv = _check_cmd(cmd)
        opts = check_options(argv, options, stream)
        check_bytes("options.input", opts.input, optional=True)
        check_path("options.cwd", opts.cwd, optional=True)
        variables = check_env("options.env", opts.env, names=True)
        check_path("options.user", opts.user, optional=True)
        check_bool("options.concurrency", opts.concurrency)
        if isinstance(opts, ExecRemoteAwaitableOptions):
            check_seconds("options.timeout", opts.timeout)
        if isinstance(opts, ExecRemoteStreamingOptions):
            check_bool("options.stdin_open", opts.stdin_open)
        native = type(self._inner).exec_remote is not SandboxEnvironment.exec_remote
        if not stream or not native:
            return await super().exec_remote(argv, opts, stream=stream)  # type: ignore[call-overload,no-any-return]
        if variables != opts.env:
            opts = dataclasses.replace(opts, env=variables)

        command = shlex.join(argv)
        event_options: dict[str, JsonValue] = {}
        if opts.cwd is not None:
            event_options["cwd"] = opts.cwd
        if variables:
            event_options["env"] = dict(variables)
        if opts.user is not None:
            event_options["user"] = opts.user
        data = opts.input
        fields: dict[str, Any] = {
            "action": "exec",
            "cmd": command,
            "input": display_content(data),
            "options": event_options,
        }
        start = _now()

        def record(result: int | None, output: str) -> None:
            _record(
                **fields,
                result=result,
                output=display_content(output),
                timestamp=start,
                completed=_now(),
            )

        process = await self._inner.exec_remote(argv, opts, stream=True)  # type: ignore[call-overload]
        return RecordedProcess(process, command, max_exec_output_size(), record, self._processes)

    async def kill_processes(self) -> None:
        """Kill the ``exec_remote`` processes started here that still run (the sample ends).

        Each is recorded as killed. The runtime calls this before the
        provider's ``sample_cleanup``. **Cancellation:** shielded, as ``kill()`` is.
        """
        for process in list(self._processes):
            await process.kill()

    async def write_file(self, file: str, contents: str | bytes) -> None:
        """Write *file* in the wrapped environment; see :meth:`SandboxEnvironment.write_file`.

        Raises:
            TypeError: *file* is not a ``str``, or *contents* neither ``str`` nor bytes.
            ValueError: *file* is empty.
            SandboxTimeoutError: The provider timed out.
            Exception: Whatever else the provider raises, unchanged.

        **Cancellation:** propagates unchanged; no event is recorded.
        """
        check_str("file", file, empty=False)
        check_path("file", file)
        data = check_bytes("contents", contents)
        assert data is not None
        with trace_action(_logger, "Sandbox", "%s %s", "write_file", _trace_detail(file)):
            start = _now()
            try:
                await self._inner.write_file(file, contents if isinstance(contents, str) else data)
            except SandboxTimeoutError:
                raise
            except TimeoutError as exc:
                raise SandboxTimeoutError(str(exc) or f"write_file {file!r} timed out") from exc
            _record(
                action="write_file",
                file=file,
                input=display_content(contents if isinstance(contents, str) else data),
                timestamp=start,
                completed=_now(),
            )

    @overload
    async def read_file(self, file: str, text: Literal[True] = True) -> str: ...
    @overload
    async def read_file(self, file: str, text: Literal[False]) -> bytes: ...
    async def read_file(self, file: str, text: bool = True) -> str | bytes:
        """Read *file* in the wrapped environment; see :meth:`SandboxEnvironment.read_file`.

        Raises:
            TypeError: *file* is not a ``str``, or *text* not a ``bool``.
            ValueError: *file* is empty.
            OutputLimitExceededError: The file is over ``max_read_file_size()``.
            SandboxTimeoutError: The provider timed out.
            Exception: Whatever else the provider raises, unchanged.

        **Cancellation:** propagates unchanged; no event is recorded.
        """
        check_str("file", file, empty=False)
        check_path("file", file)
        check_bool("text", text)
        limit = max_read_file_size()
        with trace_action(_logger, "Sandbox", "%s %s", "read_file", _trace_detail(file)):
            start = _now()
            try:
                contents: str | bytes = await self._inner.read_file(file, text)  # type: ignore[call-overload]
            except SandboxTimeoutError:
                raise
            except TimeoutError as exc:
                raise SandboxTimeoutError(str(exc) or f"read_file {file!r} timed out") from exc
            if _too_big(contents, limit):
                raise OutputLimitExceededError(human_size(limit), None)
            _record(
                action="read_file",
                file=file,
                output=display_content(contents),
                timestamp=start,
                completed=_now(),
            )
        return contents

    async def connection(self, *, user: str | None = None) -> SandboxConnection:
        """The wrapped environment's :meth:`~SandboxEnvironment.connection`.

        *user* is passed on only when given, so a provider whose
        ``connection()`` takes no arguments still works without it.

        Raises:
            TypeError: *user* is not a ``str`` (or ``None``), or is given to
                a provider whose ``connection()`` does not take it.
            ValueError: *user* is empty or holds NUL.
            NotImplementedError: The provider offers no connection.
            ConnectionError: The sandbox is not running.

        **Cancellation:** propagates unchanged.
        """
        check_path("user", user, optional=True)
        if user is None:
            return await self._inner.connection()
        if not _accepts(self._inner, "connection", "user"):
            raise TypeError(
                f"{type(self._inner).__name__}.connection() does not take user=; "
                "call connection() without it"
            )
        return await self._inner.connection(user=user)

    def as_type(self, sandbox_cls: type[_ST]) -> _ST:
        """The wrapped environment as a *sandbox_cls* (the proxy itself for the proxy's class).

        Not a checkpoint.

        Raises:
            TypeError: The wrapped environment is not a *sandbox_cls* (the
                message names both types), or *sandbox_cls* is not a class.
        """
        if not isinstance(sandbox_cls, type):
            raise TypeError(f"sandbox_cls must be a class, got {sandbox_cls!r}")
        if isinstance(self._inner, sandbox_cls):
            return self._inner
        if isinstance(self, sandbox_cls):  # only SandboxEnvironmentProxy (and its bases) get here
            return self
        raise TypeError(
            f"Expected instance of {sandbox_cls.__name__}, got {type(self._inner).__name__}"
        )

    def default_polling_interval(self) -> float:
        """The wrapped environment's :meth:`~SandboxEnvironment.default_polling_interval`."""
        return self._inner.default_polling_interval()

    # The lifecycle belongs to the provider class. These exist because the ABC
    # declares them abstract; calling them on the proxy is a mistake.

    @classmethod
    def _not_here(cls, method: str) -> NoReturn:
        raise TypeError(
            f"{method}() is a lifecycle method of the provider class: call it on "
            "type(proxy.inner), not on SandboxEnvironmentProxy"
        )

    @classmethod
    async def sample_init(
        cls, task_name: str, config: Any, metadata: dict[str, Any]
    ) -> dict[str, SandboxEnvironment]:
        """Not available on the proxy: call the provider class.

        Raises:
            TypeError: Always.
        """
        cls._not_here("sample_init")

    @classmethod
    async def sample_cleanup(
        cls,
        task_name: str,
        config: Any,
        environments: dict[str, SandboxEnvironment],
        interrupted: bool,
    ) -> None:
        """Not available on the proxy: call the provider class.

        Raises:
            TypeError: Always.
        """
        cls._not_here("sample_cleanup")


def wrap_environments(
    envs: Mapping[str, SandboxEnvironment],
) -> dict[str, SandboxEnvironmentProxy]:
    """Wrap each environment of *envs* in a :class:`SandboxEnvironmentProxy`, keeping the order.

    Already wrapped environments are kept as they are.

    Raises:
        TypeError: A value is not a ``SandboxEnvironment``.
    """
    return {name: SandboxEnvironmentProxy(env) for name, env in envs.items()}
