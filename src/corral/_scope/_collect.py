"""``collect()``, a gather for both backends, and ``background()``, work as long as a sample.

Both are task groups. ``collect()`` opens one for its awaitables and returns
when all have finished. ``background()`` starts work in the task group of
the running sample, which the sample scope opens inside its span
(:func:`sample_background`) and cancels when the sample's body ends, so
background work can never outlive its sample or write to its store after the
sample's changes were recorded.
"""

from __future__ import annotations

import contextlib
import logging
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar, TypeVarTuple, cast

import anyio

from .._core._settings import sample_group
from .._state._span import span
from ._limits import LimitExceededError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator


__all__ = ["background", "collect", "sample_background"]

logger = logging.getLogger("corral.sample")

T = TypeVar("T")
PosArgsT = TypeVarTuple("PosArgsT")


@contextlib.contextmanager
def _one_error() -> Iterator[None]:
    """Let a task group's only exception out bare; a group of several stays a group.

    The exception keeps its own ``__cause__`` and ``__context__`` (raising it
    while the group is being handled would make the group its context).
    """
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) != 1:
            raise
        error = group.exceptions[0]
        context, suppress = error.__context__, error.__suppress_context__
        try:
            raise error  # the group is not what the error came from: restore its own context
        finally:
            error.__context__, error.__suppress_context__ = context, suppress


async def collect(*tasks: Awaitable[T]) -> list[T]:
    """Run awaitables concurrently and return their results in order.

    Works under trio and asyncio alike (unlike ``asyncio.gather()``). Each
    awaitable runs in a task of its own, inside a span named ``task-1``,
    ``task-2``, ... (type ``"task"``), so its events are grouped in the
    transcript.

    Args:
        *tasks: The awaitables to run (coroutines, usually).

    Returns:
        The results, in the order of *tasks*.

    Raises:
        Exception: The exception of the one awaitable that failed; when
            several failed at once, an ``ExceptionGroup`` of them.

    **Cancellation:** this is a checkpoint. The first failure cancels the
    other awaitables; cancelling the caller cancels them all. It returns or
    raises only once every awaitable has finished.
    """
    results: list[Any] = [None] * len(tasks)

    async def run(index: int, task: Awaitable[T]) -> None:
        async with span(f"task-{index + 1}", type="task"):
            results[index] = await task

    with _one_error():
        async with anyio.create_task_group() as group:
            for index, task in enumerate(tasks):
                group.start_soon(run, index, task, name=f"collect task-{index + 1}")
    return cast("list[T]", results)


@asynccontextmanager
async def sample_background(sample_id: int | str) -> AsyncIterator[None]:
    """The sample's task group for :func:`background`, cancelled when the body ends.

    The body's own exception leaves bare (not in a group); so does a
    background task's, which cancels the body.
    """
    with _one_error():
        async with anyio.create_task_group() as group:
            token = sample_group.set(group)
            try:
                yield
            finally:
                sample_group.reset(token)
                group.cancel_scope.cancel(f"sample {sample_id!r} ended")


def background(func: Callable[[*PosArgsT], Awaitable[Any]], *args: *PosArgsT) -> None:
    """Run ``func(*args)`` in the background of the running sample.

    The work runs until it returns or the sample's body ends, whichever comes
    first; then it is cancelled (catch ``anyio.get_cancelled_exc_class()`` to
    clean up, and re-raise), and the sample scope exits only once it has
    finished. If it raises, the error is logged, the sample's body is
    cancelled, and the sample raises that error (a
    :class:`LimitExceededError` is not logged).

    This is not a checkpoint.

    Args:
        func: An async function.
        *args: Its positional arguments.

    Raises:
        RuntimeError: No sample is running in this context.
    """
    group = sample_group.get()
    if group is None:
        raise RuntimeError(
            "background() must be called inside a sample (async with task.sample(...)); "
            "use the task's start_soon() for work that is not a sample's"
        )

    async def run() -> None:
        try:
            await func(*args)
        except LimitExceededError:
            raise
        except Exception as exc:
            logger.error("background work %r of the sample failed: %r", func, exc)
            raise

    group.start_soon(run, name=f"background {getattr(func, '__qualname__', func)!r}")
