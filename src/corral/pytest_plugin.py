"""corral's pytest plugin: fixtures for testing harnesses and sandbox providers.

Installing corral registers this module with pytest (the ``pytest11`` entry
point ``corral``); nothing else imports it, so ``import corral`` never
imports pytest. Its fixtures are all named ``corral_*``:

* ``corral_task``: a running task scope (:func:`corral.task`), entered for
  the test and exited after it; ``@pytest.mark.corral_task(**kwargs)``
  passes arguments to :func:`corral.task` (the name defaults to the test's,
  and ``handle_signals`` to ``False``: a test does not install process-wide
  signal handlers unless it asks).
* ``corral_sample``: a running sample of ``corral_task``;
  ``@pytest.mark.corral_sample(**kwargs)`` passes arguments to
  :meth:`corral.Task.sample` (the id defaults to ``1``). Inside the test,
  ``store()``, ``transcript()`` and ``sandbox()`` resolve to the sample's.
* ``corral_memory_sandbox``: a fresh in-memory sandbox
  (:class:`corral.sandboxes.testing.MemorySandboxEnvironment`) as samples
  see it, behind the sandbox proxy that enforces the contract.
* ``corral_local_sandbox``: a local sandbox (a private directory under the
  temporary directory), made by its provider's ``sample_init`` and released
  by ``sample_cleanup`` after the test; also behind the proxy.
* ``corral_no_leftovers``: fails the test (an error at teardown) if it left
  behind processes, file descriptors, temporary files or local sandbox
  directories; it yields a marker (``"300.NNNNNNNN"``, a ``sleep``
  duration no other test uses) by which processes can be found anywhere.

The async fixtures (``corral_task``, ``corral_sample``,
``corral_local_sandbox``) run under anyio's pytest plugin (tests marked
``@pytest.mark.anyio``, on each backend ``anyio_backend`` names) or under
pytest-asyncio (tests marked ``@pytest.mark.asyncio``, or its auto mode).
Either way the task and sample scopes run in a helper task, and the test
runs with their context (the current task, the sample's store, transcript,
limits and sandboxes), outside their cancel scopes: what ends a scope (a
sample's time limit, a failure in the task's work) ends the scope, not the
test body, and fails the test at teardown. See ``docs/testing.md``.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import secrets
import shutil
import sys
import tempfile
import types
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import asyncio
    from collections.abc import AsyncIterator, Callable, Iterator
    from contextlib import AbstractAsyncContextManager

    from anyio.abc import TaskStatus

    from . import Sample, Task
    from .util import SandboxEnvironment

__all__ = [
    "corral_local_sandbox",
    "corral_memory_sandbox",
    "corral_no_leftovers",
    "corral_sample",
    "corral_task",
]

#: How long a leftover process that is already dying is waited for before it counts.
_DYING_GRACE = 10.0


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers that configure ``corral_task`` and ``corral_sample``."""
    config.addinivalue_line(
        "markers",
        "corral_task(**kwargs): arguments for corral.task() in the corral_task fixture",
    )
    config.addinivalue_line(
        "markers",
        "corral_sample(**kwargs): arguments for Task.sample() in the corral_sample fixture",
    )


# -- the task and the sample ----------------------------------------------------------------


def _marker_kwargs(request: pytest.FixtureRequest, name: str) -> dict[str, Any]:
    marker = request.node.get_closest_marker(name)
    if marker is None:
        return {}
    if marker.args:
        raise TypeError(f"@pytest.mark.{name} takes keyword arguments only, got {marker.args!r}")
    return dict(marker.kwargs)


def _open_task(request: pytest.FixtureRequest) -> Task:
    import corral

    kwargs: dict[str, Any] = {"name": request.node.name, "handle_signals": False}
    kwargs.update(_marker_kwargs(request, "corral_task"))
    return corral.task(**kwargs)


def _open_sample(request: pytest.FixtureRequest, task: Task) -> AbstractAsyncContextManager[Sample]:
    kwargs: dict[str, Any] = {"id": 1}
    kwargs.update(_marker_kwargs(request, "corral_sample"))
    return task.sample(**kwargs)


class _Context:
    """corral's context variables as a scope set them, adopted by the test's context.

    The scopes run in a helper task, so that nothing they cancel (a sample at
    its time limit, a task whose background work failed) is the test itself,
    which pytest would see as a crash; the test runs with their context.
    """

    def __init__(self, context: contextvars.Context) -> None:
        self._tokens = [
            var.set(value)
            for var, value in context.items()
            if var.name.startswith("corral") and var.get(_UNSET) is not value
        ]

    def restore(self) -> None:
        for token in reversed(self._tokens):
            token.var.reset(token)


_UNSET: Any = object()


async def _hosted_by_anyio(scope: AbstractAsyncContextManager[Any]) -> AsyncIterator[Any]:
    """Enter *scope* in a helper task; yield its value in its context; exit it after."""
    import anyio

    release = anyio.Event()
    failures: list[Exception] = []

    async def host(*, task_status: TaskStatus[tuple[Any, contextvars.Context]]) -> None:
        started = False
        try:
            async with scope as value:
                task_status.started((value, contextvars.copy_context()))
                started = True
                await release.wait()
        except Exception as exc:
            if not started:
                raise
            failures.append(exc)  # raised at teardown: the test is not cancelled for it

    try:
        async with anyio.create_task_group() as task_group:
            value, context = await task_group.start(host)
            adopted = _Context(context)
            try:
                yield value
            finally:
                adopted.restore()
                release.set()
    except ExceptionGroup as group:  # the scope's own error, not the helper task's group
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
    if failures:
        raise failures[0]


async def _hosted_by_asyncio(
    scope: AbstractAsyncContextManager[Any], request: pytest.FixtureRequest
) -> AsyncIterator[Any]:
    """As :func:`_hosted_by_anyio`, for pytest-asyncio.

    pytest-asyncio runs set-up and teardown in separate tasks, so no task
    group can span them: the helper is an asyncio task. Its failure is
    raised by a finalizer that runs after pytest-asyncio's own, since a
    teardown that raises keeps pytest-asyncio from restoring the context
    variables it copied out of the fixture.
    """
    import asyncio

    loop = asyncio.get_running_loop()
    entered: asyncio.Future[tuple[Any, contextvars.Context]] = loop.create_future()
    release = asyncio.Event()
    failures: list[BaseException] = []

    async def host() -> None:
        try:
            async with scope as value:
                entered.set_result((value, contextvars.copy_context()))
                await release.wait()
        except BaseException as exc:
            if entered.done():
                raise
            if not isinstance(exc, Exception):
                entered.cancel()
                raise
            entered.set_exception(exc)

    def raise_failure() -> None:
        if failures:
            raise failures[0]

    helper = loop.create_task(host())
    value, context = await entered
    request.addfinalizer(raise_failure)
    adopted = _Context(context)
    try:
        yield value
    finally:
        adopted.restore()
        release.set()
        try:
            await helper
        except Exception as exc:
            failures.append(exc)


@pytest.fixture
async def corral_task(request: pytest.FixtureRequest) -> AsyncIterator[Task]:
    """A running task scope, entered before the test and exited after it.

    ``@pytest.mark.corral_task(**kwargs)`` passes arguments to
    :func:`corral.task` (the name defaults to the test's, ``handle_signals``
    to ``False``). An error in the task's work, or its exit, fails the test
    at teardown.
    """
    async for task in _hosted_by_anyio(_open_task(request)):
        yield task


@pytest.fixture
async def corral_sample(request: pytest.FixtureRequest, corral_task: Task) -> AsyncIterator[Sample]:
    """A running sample of ``corral_task``, entered before the test and exited after it.

    ``@pytest.mark.corral_sample(**kwargs)`` passes arguments to
    :meth:`corral.Task.sample` (the id defaults to ``1``). The test runs
    with the sample's context: ``store()``, ``transcript()``,
    ``sample_limits()`` and ``sandbox()`` are the sample's. A limit that
    ends the sample ends it, not the test body: its ``TimeoutError`` fails
    the test at teardown.
    """
    async for sample in _hosted_by_anyio(_open_sample(request, corral_task)):
        yield sample


async def _corral_task_asyncio(request: pytest.FixtureRequest) -> AsyncIterator[Task]:
    async for task in _hosted_by_asyncio(_open_task(request), request):
        yield task


async def _corral_sample_asyncio(
    request: pytest.FixtureRequest, corral_task: Task
) -> AsyncIterator[Sample]:
    async for sample in _hosted_by_asyncio(_open_sample(request, corral_task), request):
        yield sample


# -- sandboxes ------------------------------------------------------------------------------


@pytest.fixture
def corral_memory_sandbox() -> SandboxEnvironment:
    """A fresh in-memory sandbox, behind the sandbox proxy (as ``sandbox()`` returns it)."""
    from .sandboxes._proxy import SandboxEnvironmentProxy
    from .sandboxes.testing import MemorySandboxEnvironment

    return SandboxEnvironmentProxy(MemorySandboxEnvironment())


async def _local_sandbox() -> AsyncIterator[SandboxEnvironment]:
    """A local sandbox, behind the sandbox proxy, released after the test."""
    from .sandboxes._local import LocalSandboxEnvironment
    from .sandboxes._proxy import SandboxEnvironmentProxy

    environments = await LocalSandboxEnvironment.sample_init("pytest", None, {})
    try:
        yield SandboxEnvironmentProxy(environments["default"])
    finally:
        await LocalSandboxEnvironment.sample_cleanup("pytest", None, environments, False)


corral_local_sandbox = pytest.fixture(_local_sandbox, name="corral_local_sandbox")


def _copy(function: Callable[..., Any]) -> Callable[..., Any]:
    """A distinct function object with the same code, to mark for pytest-asyncio."""
    copy = types.FunctionType(
        function.__code__,
        function.__globals__,
        function.__name__,
        function.__defaults__,
        function.__closure__,
    )
    copy.__qualname__ = function.__qualname__
    return copy


#: What pytest-asyncio runs in place of each async fixture (not under anyio).
_ASYNCIO_VARIANTS: dict[str, Callable[..., Any]] = {
    "corral_task": _corral_task_asyncio,
    "corral_sample": _corral_sample_asyncio,
    "corral_local_sandbox": _copy(_local_sandbox),
}
_marked: set[str] = set()


def _under_pytest_asyncio(item: pytest.Item) -> bool:
    """Whether pytest-asyncio, rather than anyio's plugin, runs the test *item*."""
    return (
        "anyio_backend" not in getattr(item, "fixturenames", ())
        and item.config.pluginmanager.has_plugin("asyncio")
        and item.get_closest_marker("asyncio") is not None
    )


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item) -> Any:
    """Under pytest-asyncio, swap in the async fixtures' variants for the test's run."""
    swapped: list[tuple[pytest.FixtureDef[Any], Callable[..., Any]]] = []
    if _under_pytest_asyncio(item):
        info = getattr(item, "_fixtureinfo", None)
        definitions = {} if info is None else info.name2fixturedefs
        for name, variant in _ASYNCIO_VARIANTS.items():
            fixturedef = definitions[name][-1] if definitions.get(name) else None
            if fixturedef is None or getattr(fixturedef.func, "__module__", None) != __name__:
                continue  # not used, or overridden by the user
            if name not in _marked:
                import pytest_asyncio

                pytest_asyncio.fixture(variant)  # marks the function as pytest-asyncio's to run
                _marked.add(name)
            swapped.append((fixturedef, fixturedef.func))
            fixturedef.func = variant  # as pytest-asyncio and anyio do
    try:
        return (yield)
    finally:
        for fixturedef, original in swapped:
            fixturedef.func = original  # type: ignore[misc]


@pytest.hookimpl(tryfirst=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> None:
    """Refuse, with a clear message, to run an async fixture with no async plugin to run it."""
    name = fixturedef.argname
    if (
        name in _ASYNCIO_VARIANTS
        and getattr(fixturedef.func, "__module__", None) == __name__
        and "anyio_backend" not in request.fixturenames
        and not _under_pytest_asyncio(request.node)
    ):
        pytest.fail(
            f"{name} is an async fixture: run {request.node.nodeid} under anyio "
            "(@pytest.mark.anyio) or pytest-asyncio (@pytest.mark.asyncio)",
            pytrace=False,
        )


# -- leftovers ------------------------------------------------------------------------------


def _fds() -> dict[int, str]:
    """This process's open file descriptors and what each refers to."""
    found = {}
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor, closed by now
            found[int(name)] = os.readlink(f"/proc/self/fd/{name}")
    return found


def _own_fds() -> set[int]:
    """Descriptors corral keeps open across tests: the guardian's pipe, records, the trace file."""
    own = set()
    guardian = sys.modules.get("corral._process._guardian")
    if guardian is not None and guardian._guardian.fd is not None:
        own.add(guardian._guardian.fd)
    records = sys.modules.get("corral._core._leftovers")
    if records is not None and records._writer.fd is not None:
        own.add(records._writer.fd)  # open while any sandbox of the process is recorded
    install = sys.modules.get("corral.tracing._install")
    handler = None if install is None else install._handler
    if handler is not None:
        path = str(handler.path)
        own.update(fd for fd, target in _fds().items() if target == path)
    return own


class _Leftovers:
    """What the process holds when a test starts, to compare with what it holds at the end."""

    def __init__(self) -> None:
        from ._core._procfs import pids

        self.marker = f"300.{secrets.randbelow(10**8):08d}"
        self.pid = os.getpid()
        self.session = os.getsid(0)
        self.processes = set(pids())
        self.fds = _fds()
        self.base_tmp = tempfile.gettempdir()
        self.tmp = tempfile.mkdtemp(prefix="corral-test-tmp-", dir=self.base_tmp)
        self._env_tmpdir = os.environ.get("TMPDIR")
        self._tempdir = tempfile.tempdir
        os.environ["TMPDIR"] = self.tmp
        tempfile.tempdir = self.tmp

    def _suspects(self) -> dict[int, str]:
        """Live processes the test started, with why each counts as the test's."""
        from ._core._procfs import cmdline, live_descendants, processes, processes_with_environ
        from ._process._guardian import guardian_pid, harness_tag

        suspects: dict[int, str] = {}
        for pid in live_descendants(self.pid):
            if pid not in self.processes:
                suspects[pid] = "a child of the test process"
        tag = "=".join(harness_tag()).encode()
        for pid in processes_with_environ(tag, exclude=self.pid):
            if pid not in self.processes:
                suspects.setdefault(pid, "started by corral in the test process")
        stats = {info.pid: info for info in processes()}
        for info in stats.values():
            if not info.alive or info.pid in self.processes or info.session != self.session:
                continue
            parent = stats.get(info.ppid)
            if info.ppid == 1 or parent is None or parent.session != self.session:
                suspects.setdefault(info.pid, f"an orphan in process group {info.pgrp}")
        for pid, info in stats.items():
            line = cmdline(pid) if info.alive and pid != self.pid else None
            if line is not None and self.marker in line:
                suspects.setdefault(pid, f"its command line holds the marker {self.marker}")
        suspects.pop(guardian_pid() or -1, None)
        return suspects

    def finish(self) -> list[str]:
        """Restore the temporary directory; describe (and remove) what the test left."""
        from ._core._procfs import cmdline, kill_and_wait, wait_gone

        if self._env_tmpdir is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = self._env_tmpdir
        tempfile.tempdir = self._tempdir
        problems = []

        suspects = self._suspects()
        left = wait_gone(sorted(suspects), _DYING_GRACE)  # a process being killed may be dying
        for pid in left:
            problems.append(f"process {pid} ({suspects[pid]}): {cmdline(pid)!r}")
        kill_and_wait(left, _DYING_GRACE)

        own = _own_fds()
        for fd, target in sorted(_fds().items()):
            if fd not in own and self.fds.get(fd) != target:
                problems.append(f"file descriptor {fd} -> {target}")

        for name in sorted(os.listdir(self.tmp)):
            if name.startswith("corral-sandbox-"):
                what = "local sandbox directory"
            elif os.path.isdir(os.path.join(self.tmp, name)):
                what = "temporary directory"
            else:
                what = "temporary file"
            problems.append(f"{what} {name} (in $TMPDIR, {self.tmp})")
        shutil.rmtree(self.tmp, ignore_errors=True)
        return problems


@pytest.fixture
def corral_no_leftovers(request: pytest.FixtureRequest) -> Iterator[str]:
    """Fail the test if it leaves processes, fds, temporary files or sandbox dirs behind.

    The check compares what the test process holds after the test with what
    it held before. Processes count if they are new and descend from the
    test process, carry corral's harness tag (every child corral starts
    does, even one that left its process group and session), were orphaned
    inside the test's session (a process group whose leader exited without
    stopping it), or carry the marker the fixture yields on their command
    line. A process already dying is waited for (on its pidfd) before it
    counts; whatever is left is killed. File descriptors count if they are
    new (corral's own long-lived ones aside: the guardian's pipe and the
    trace file). For the test, ``$TMPDIR`` (and :func:`tempfile.gettempdir`)
    is a fresh directory, inherited by the test's children, where the local
    sandbox makes its sample directories too: anything left in it counts,
    and it is removed after.

    Request it first, so that it sees what the other fixtures leave.

    Yields:
        The marker: a ``sleep`` duration no other test uses.
    """
    # pytest's own temporary directory must not be made inside ours.
    request.getfixturevalue("tmp_path_factory").getbasetemp()
    check = _Leftovers()
    try:
        yield check.marker
    finally:
        problems = check.finish()
    if problems:
        pytest.fail(
            f"{request.node.nodeid} left behind:\n  " + "\n  ".join(problems), pytrace=False
        )
