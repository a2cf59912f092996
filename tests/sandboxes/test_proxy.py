"""The proxy around every environment: events, tracing, timeouts and the output limit."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from corral._state._events import SandboxEvent
from corral._state._transcript import Transcript, current_transcript
from corral.sandboxes._memory import MemorySandboxEnvironment
from corral.sandboxes._proxy import SandboxEnvironmentProxy, display_content, wrap_environments
from corral.tracing import _install
from corral.util import (
    OutputLimitExceededError,
    SandboxTimeoutError,
    SpanBeginEvent,
    override_sandbox_output_limit,
    span,
)
from tests.tracing.test_install import isolate, read_records

pytestmark = pytest.mark.anyio


@pytest.fixture
def record() -> Iterator[Transcript]:
    """A fresh transcript for the test's events."""
    fresh = Transcript()
    token = current_transcript.set(fresh)
    try:
        yield fresh
    finally:
        current_transcript.reset(token)


def events(record: Transcript) -> list[SandboxEvent]:
    found = [e for e in record.events if isinstance(e, SandboxEvent)]
    assert len(found) == len(record.events)
    return found


def proxy(files: dict[str, str | bytes] | None = None) -> SandboxEnvironmentProxy:
    return SandboxEnvironmentProxy(MemorySandboxEnvironment(files))


# -- wrapping --------------------------------------------------------------------------------


async def test_wrapping_is_idempotent_and_exposes_the_inner_env() -> None:
    inner = MemorySandboxEnvironment()
    once = SandboxEnvironmentProxy(inner)
    assert SandboxEnvironmentProxy(once) is once
    assert once.inner is inner
    assert "MemorySandboxEnvironment" in repr(once)
    wrapped = wrap_environments({"a": inner, "b": once})
    assert list(wrapped) == ["a", "b"]
    assert wrapped["b"] is once
    assert isinstance(wrapped["a"], SandboxEnvironmentProxy)
    assert wrapped["a"].inner is inner
    with pytest.raises(TypeError, match="SandboxEnvironment"):
        SandboxEnvironmentProxy("nope")  # type: ignore[arg-type]


async def test_connection_is_delegated() -> None:
    connection = await proxy().connection()
    assert connection.type == "memory"


async def test_lifecycle_methods_belong_to_the_provider() -> None:
    with pytest.raises(TypeError, match=r"type\(proxy.inner\)"):
        await SandboxEnvironmentProxy.sample_init("t", None, {})
    with pytest.raises(TypeError, match="sample_cleanup"):
        await SandboxEnvironmentProxy.sample_cleanup("t", None, {}, False)


# -- events ----------------------------------------------------------------------------------


async def test_exec_event(record: Transcript) -> None:
    env = proxy()
    result = await env.exec(["echo", "hello world", "it's"])
    assert result.stdout == "hello world it's\n"
    [event] = events(record)
    assert event.action == "exec"
    assert event.cmd == "echo 'hello world' 'it'\"'\"'s'"
    assert event.options == {}
    assert event.input is None
    assert event.result == 0
    assert event.output == "hello world it's\n"
    assert event.completed is not None
    assert event.timestamp <= event.completed


async def test_exec_event_options_input_and_stderr(record: Transcript) -> None:
    env = proxy()
    await env.exec(
        ["cat"], input="in", cwd="/tmp", env={"A": "1"}, user="me", timeout=5, timeout_retry=False
    )
    await env.exec(["nosuch"], env={}, timeout_retry=True)
    first, second = events(record)
    assert first.options == {
        "cwd": "/tmp",
        "env": {"A": "1"},
        "user": "me",
        "timeout": 5,
        "timeout_retry": False,
    }
    assert first.input == "in"
    assert first.output == "in"
    assert second.options == {}
    assert second.result == 127
    assert second.output == "nosuch: command not found\n\n\n"


async def test_exec_event_combines_stderr_and_stdout(record: Transcript) -> None:
    env = proxy({"/a": "A"})
    await env.exec(["cat", "/a", "/missing"])
    [event] = events(record)
    assert event.result == 1
    assert event.output == "cat: /missing: No such file or directory\n\n\nA"


async def test_file_events(record: Transcript) -> None:
    env = proxy()
    await env.write_file("t.txt", "text")
    await env.write_file("/b.bin", b"\x00" * 2048)
    assert await env.read_file("t.txt") == "text"
    assert await env.read_file("/b.bin", text=False) == b"\x00" * 2048
    write_text, write_bin, read_text, read_bin = events(record)
    assert (write_text.action, write_text.file, write_text.input) == ("write_file", "t.txt", "text")
    assert write_bin.input == "binary (2.00 KB)"
    assert (read_text.action, read_text.file, read_text.output) == ("read_file", "t.txt", "text")
    assert read_bin.output == "binary (2.00 KB)"
    assert all(e.completed is not None for e in (write_text, write_bin, read_text, read_bin))


async def test_no_event_when_the_operation_raises(record: Transcript) -> None:
    env = proxy()
    with pytest.raises(FileNotFoundError, match="/missing"):
        await env.read_file("/missing")
    await env.write_file("/d/f", "x")
    with pytest.raises(IsADirectoryError):
        await env.write_file("/d", "x")
    with pytest.raises(TimeoutError):
        await env.exec(["sleep", "10"], timeout=0.01)
    assert [e.action for e in events(record)] == ["write_file"]


async def test_no_event_when_cancelled(record: Transcript) -> None:
    env = proxy()
    with anyio.move_on_after(0.01):
        await env.exec(["sleep", "10"])
    assert events(record) == []


async def test_shortened_display(record: Transcript) -> None:
    env = proxy()
    many = "".join(f"line {i}\n" for i in range(50))
    await env.exec(["cat"], input=many)
    [event] = events(record)
    expected = "".join(f"line {i}\n" for i in range(20)).removesuffix("\n")
    assert event.input == f"{expected}\n\nOutput truncated (30 additional lines)"
    assert event.output == event.input


def test_display_content() -> None:
    assert display_content(None) is None
    assert display_content("") == ""
    assert display_content("a\nb\n") == "a\nb\n"
    assert display_content(b"") == "binary (0 B)"
    assert display_content(b"x" * 1023) == "binary (1023 B)"
    assert display_content(b"x" * (3 * 1024**2 // 2)) == "binary (1.50 MB)"
    long_line = "x" * 10_005
    assert display_content(long_line) == (
        "x" * 10_000 + "\n\nOutput truncated (5 additional characters)"
    )
    wide = ("y" * 999 + "\n") * 15  # 15 lines, 15,000 characters
    shown = display_content(wide)
    assert shown is not None
    assert shown.endswith("\n\nOutput truncated (5 additional lines)")
    assert len(shown.split("\n\n")[0]) == 10_000 - 1


# -- timeouts --------------------------------------------------------------------------------


class Raising(MemorySandboxEnvironment):
    """Raises *error* from every operation."""

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error

    async def exec(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error

    async def read_file(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error

    async def write_file(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error


async def test_timeout_is_the_proxys_own_cancel_scope(record: Transcript) -> None:
    """A provider that ignores ``timeout`` (the memory one does) is cancelled at the deadline."""
    with anyio.fail_after(5):
        with pytest.raises(
            SandboxTimeoutError, match=r"'sleep 10' timed out after 0\.01 seconds"
        ) as info:
            await proxy().exec(["sleep", "10"], timeout=0.01)
    assert info.value.__cause__ is None
    assert info.value.truncated_output is None  # the provider does not share its output
    assert events(record) == []


async def test_timeout_keeps_the_truncated_output() -> None:
    error = TimeoutError()
    error.truncated_output = "partial"  # type: ignore[attr-defined]
    env = SandboxEnvironmentProxy(Raising(error))
    with pytest.raises(SandboxTimeoutError, match="exec 'true' timed out") as info:
        await env.exec(["true"])
    assert info.value.truncated_output == "partial"
    assert info.value.__cause__ is error
    with pytest.raises(SandboxTimeoutError, match="read_file '/f' timed out") as read:
        await env.read_file("/f")
    assert read.value.truncated_output is None
    with pytest.raises(SandboxTimeoutError, match="write_file '/f' timed out"):
        await env.write_file("/f", "x")


async def test_sandbox_timeout_error_is_left_alone() -> None:
    error = SandboxTimeoutError("provider's own", truncated_output="out")
    env = SandboxEnvironmentProxy(Raising(error))
    for call in (env.exec(["true"]), env.read_file("/f"), env.write_file("/f", "")):
        with pytest.raises(SandboxTimeoutError) as info:
            await call
        assert info.value is error


async def test_other_errors_pass_unchanged(record: Transcript) -> None:
    error = PermissionError("no")
    env = SandboxEnvironmentProxy(Raising(error))
    with pytest.raises(PermissionError) as info:
        await env.exec(["true"])
    assert info.value is error
    assert events(record) == []


class Counting(MemorySandboxEnvironment):
    """Counts the calls that reach the provider."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def exec(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return await super().exec(*args, **kwargs)

    async def read_file(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return await super().read_file(*args, **kwargs)

    async def write_file(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return await super().write_file(*args, **kwargs)


BAD_CALLS: list[tuple[str, tuple[Any, ...], dict[str, Any], type[Exception], str]] = [
    ("exec", (["echo", 1],), {}, TypeError, r"^cmd\[1\] must be a str, got int$"),
    ("exec", ([],), {}, ValueError, "^cmd must not be an empty list$"),
    ("exec", (("echo", b"x"),), {}, TypeError, r"^cmd\[1\] must be a str, got bytes$"),
    ("exec", (["true"],), {"input": 3}, TypeError, "^input must be str, bytes or None, got int$"),
    ("exec", (["true"],), {"cwd": 1}, TypeError, "^cwd must be a str or None, got int$"),
    ("exec", (["true"],), {"env": ["A=1"]}, TypeError, "^env must be a mapping"),
    ("exec", (["true"],), {"env": {"A": 1}}, TypeError, r"^env\['A'\] must be a str, got int$"),
    ("exec", (["true"],), {"env": {1: "a"}}, TypeError, "^env keys must be str, got 1$"),
    ("exec", (["true"],), {"user": 0}, TypeError, "^user must be a str or None, got int$"),
    ("exec", (["true"],), {"timeout": -1}, ValueError, "^timeout must be >= 0 seconds"),
    ("exec", (["true"],), {"timeout": "1"}, TypeError, "^timeout must be a number of seconds"),
    ("exec", (["true"],), {"timeout_retry": None}, TypeError, "^timeout_retry must be a bool"),
    ("write_file", (5, "x"), {}, TypeError, "^file must be a str, got int$"),
    ("write_file", ("", "x"), {}, ValueError, "^file must not be empty$"),
    ("write_file", ("f", 5), {}, TypeError, "^contents must be str or bytes, got int$"),
    ("read_file", (5,), {}, TypeError, "^file must be a str, got int$"),
    ("read_file", ("f",), {"text": "yes"}, TypeError, "^text must be a bool, got str$"),
]


@pytest.mark.parametrize(("method", "args", "kwargs", "error", "match"), BAD_CALLS)
async def test_bad_arguments_are_refused_before_the_provider_is_called(
    record: Transcript,
    method: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    error: type[Exception],
    match: str,
) -> None:
    """Regression: bad arguments failed inside the proxy with TypeErrors of shlex or len()."""
    inner = Counting()
    with pytest.raises(error, match=match):
        await getattr(SandboxEnvironmentProxy(inner), method)(*args, **kwargs)
    assert inner.calls == 0
    assert events(record) == []


async def test_the_provider_gets_the_checked_arguments(record: Transcript) -> None:
    seen: list[tuple[Any, ...]] = []

    class Seeing(MemorySandboxEnvironment):
        # Written before exec() took concurrency=: the proxy must not pass it.
        async def exec(  # type: ignore[override]
            self,
            cmd: Any,
            input: Any = None,
            cwd: Any = None,
            env: Any = None,
            user: Any = None,
            timeout: Any = None,
            timeout_retry: bool = True,
        ) -> Any:
            seen.append((cmd, input, env))
            return await super().exec(cmd, input, cwd, env, user, timeout, timeout_retry)

    env_in = {"A": "1"}
    await SandboxEnvironmentProxy(Seeing()).exec(("echo", "x"), input=bytearray(b"in"), env=env_in)  # type: ignore[arg-type]
    ((cmd, data, env),) = seen
    assert cmd == ["echo", "x"]
    assert data == bytearray(b"in")
    assert env == env_in
    assert env is not env_in  # a copy: the caller's dict may change while it runs


async def test_cmd_must_be_a_list() -> None:
    with pytest.raises(TypeError, match=r"\['sh', '-c', 'echo hi'\]"):
        await proxy().exec("echo hi")  # type: ignore[arg-type]


# -- output limit ----------------------------------------------------------------------------


async def test_output_limit(record: Transcript) -> None:
    env = proxy()
    with override_sandbox_output_limit(10, "exec"):
        assert (await env.exec(["echo", "123456789"])).stdout == "123456789\n"
        with pytest.raises(OutputLimitExceededError, match="limit of 10 bytes") as info:
            await env.exec(["cat"], input="0123456789abcdef")
        with pytest.raises(OutputLimitExceededError):
            await env.exec(["cat", "/missing-file-with-a-long-name"])
    assert info.value.truncated_output == "6789abcdef"
    _, second, third = events(record)
    assert second.output == "0123456789abcdef"  # the event is still recorded
    assert third.result == 1


async def test_output_limit_counts_utf8_bytes() -> None:
    with override_sandbox_output_limit(4, "exec"), pytest.raises(OutputLimitExceededError) as info:
        await proxy().exec(["cat"], input="ééé")  # 3 characters, 6 bytes
    assert info.value.truncated_output == "éé"


async def test_output_limit_raised_by_the_provider(record: Transcript) -> None:
    error = OutputLimitExceededError("1 KiB", truncated_output="tail")
    with pytest.raises(OutputLimitExceededError) as info:
        await SandboxEnvironmentProxy(Raising(error)).exec(["big"])
    assert info.value is error
    [event] = events(record)
    assert (event.cmd, event.output, event.result) == ("big", "tail", None)


# -- tracing ---------------------------------------------------------------------------------


@pytest.fixture
def trace_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = isolate(tmp_path, monkeypatch)
    try:
        yield path
    finally:
        _install._reset_for_tests()


async def test_trace_records(trace_file: Path, record: Transcript) -> None:
    env = proxy()
    await env.exec(["echo", "a b"])
    await env.write_file("/f", "x")
    await env.read_file("/f")
    with pytest.raises(SandboxTimeoutError):
        await env.exec(["sleep", "10"], timeout=0.01)
    with pytest.raises(FileNotFoundError):
        await env.read_file("/nope")
    records = [r for r in read_records(trace_file) if r.get("action") == "Sandbox"]
    got = [(r["event"], r["detail"]) for r in records]
    assert got == [
        ("enter", "exec echo 'a b'"),
        ("exit", "exec echo 'a b'"),
        ("enter", "write_file /f"),
        ("exit", "write_file /f"),
        ("enter", "read_file /f"),
        ("exit", "read_file /f"),
        ("enter", "exec sleep 10"),
        ("timeout", "exec sleep 10"),
        ("enter", "read_file /nope"),
        ("error", "read_file /nope"),
    ]
    assert logging.getLogger("corral.sandbox").isEnabledFor(13)


async def test_trace_detail_is_shortened(trace_file: Path, record: Transcript) -> None:
    await proxy().exec(["echo", "x" * 5000])
    [enter, _] = [r for r in read_records(trace_file) if r.get("action") == "Sandbox"]
    assert enter["detail"].endswith("... (4005 more characters)")
    [event] = events(record)
    assert event.cmd == "echo " + "x" * 5000


async def test_events_keep_their_span_and_place_though_built_later(record: Transcript) -> None:
    env = proxy()
    await env.exec(["echo", "before"])
    async with span("inner"):
        await env.exec(["echo", "inside"])
    await env.write_file("f.txt", "x")
    built = record.events
    kinds = [e.event for e in built]
    assert kinds == ["sandbox", "span_begin", "sandbox", "span_end", "sandbox"]
    begin = built[1]
    assert isinstance(begin, SpanBeginEvent)
    inside = built[2]
    assert isinstance(inside, SandboxEvent)
    assert inside.cmd == "echo inside"
    assert inside.span_id == begin.id
    assert built[0].span_id is None
    assert built[0].timestamp <= inside.timestamp <= built[4].timestamp
    assert len({e.uuid for e in built}) == 5
    # Reading again gives the same objects, and JSON round-trips them.
    assert record.events == built
    assert Transcript.from_json(record.to_json()).events == built
