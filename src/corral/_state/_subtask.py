"""Subtasks: async functions that run with their own store and transcript.

Each call of a ``@subtask`` function runs in a child task of the caller, with
a store of its own (fresh, unless one is given) and a transcript of its own,
and is recorded in the caller's transcript as one :class:`SubtaskEvent`
whose ``events`` hold the subtask's transcript.
"""

from __future__ import annotations

import functools
import inspect
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar, overload, runtime_checkable

import anyio

from ..tracing._actions import trace_action
from ._events import SubtaskEvent, current_span
from ._span import span
from ._store import Store, current_store
from ._transcript import Transcript, current_transcript

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["Subtask", "subtask"]

logger = logging.getLogger("corral.subtask")

P = ParamSpec("P")
R = TypeVar("R")


@runtime_checkable
class Subtask(Protocol):
    """An async callable recorded as a subtask."""

    async def __call__(self, *args: Any, **kwargs: Any) -> Any: ...


def _display(value: object) -> Any:
    """JSON for the transcript: what cannot be serialised is shown by its repr."""
    from pydantic_core import to_jsonable_python

    return to_jsonable_python(value, fallback=repr)


def _log_input(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        bound = inspect.signature(func).bind_partial(*args, **kwargs)
        values: dict[str, Any] = dict(bound.arguments)
    except (TypeError, ValueError):
        values = {f"arg{i}": arg for i, arg in enumerate(args)} | kwargs
    return _display(values)


def _wrap(
    func: Callable[P, Awaitable[R]],
    name: str | None,
    store: Store | None,
    type: str | None,
    input: dict[str, Any] | None,
) -> Callable[P, Awaitable[R]]:
    subtask_name = name or getattr(func, "__name__", None) or "subtask"

    @functools.wraps(func)
    async def run(*args: P.args, **kwargs: P.kwargs) -> R:
        if not inspect.iscoroutinefunction(func) and not inspect.iscoroutinefunction(
            getattr(func, "__call__", None)  # noqa: B004
        ):
            raise TypeError(f"'{subtask_name}' is not declared as an async callable.")
        logged = _display(input) if input is not None else _log_input(func, args, kwargs)
        event = SubtaskEvent(
            name=subtask_name, type=type, input=logged if isinstance(logged, dict) else {}
        )
        current_transcript.get()._event(event)
        own_store = store if store is not None else Store()
        own_transcript = Transcript()
        outcome: list[R] = []

        async def child() -> None:
            # A child task: context-variable changes made by the subtask stay there.
            current_store.set(own_store)
            current_transcript.set(own_transcript)
            current_span.set(None)  # the subtask's transcript has a span tree of its own
            with trace_action(logger, "Subtask", "%s", subtask_name):
                async with span(subtask_name, type="subtask"):
                    outcome.append(await func(*args, **kwargs))

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(child, name=f"subtask {subtask_name}")
        except BaseExceptionGroup as group:
            error = group.exceptions[0] if len(group.exceptions) == 1 else group
            event.error = f"{error.__class__.__name__}: {error}"
            _finish(event, own_transcript)
            if error is group:
                raise
            raise error from None
        except BaseException as exc:
            event.error = f"{exc.__class__.__name__}: {exc}"
            _finish(event, own_transcript)
            raise
        _finish(event, own_transcript)
        event.result = _display(outcome[0])
        return outcome[0]

    return run


def _finish(event: SubtaskEvent, transcript: Transcript) -> None:
    event.completed = datetime.now(UTC)
    event.working_time = (event.completed - event.timestamp).total_seconds()
    event.events = list(transcript.events)


@overload
def subtask(name: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]: ...
@overload
def subtask(
    name: str | None = None,
    store: Store | None = None,
    type: str | None = None,
    input: dict[str, Any] | None = None,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]: ...
def subtask(
    name: str | Callable[P, Awaitable[R]] | None = None,
    store: Store | None = None,
    type: str | None = None,
    input: dict[str, Any] | None = None,
) -> Any:
    """Decorate an async function so each call runs as a subtask.

    Usable bare (``@subtask``) or with arguments (``@subtask("name", ...)``).

    Args:
        name: Name recorded for the subtask (default: the function's name).
        store: Store for every call to use (default: a fresh, empty store per call).
        type: Kind of subtask, recorded in the event.
        input: Input to record (default: the call's arguments by parameter name).

    Each call runs in a child task of the caller, with its own store and
    transcript; it is recorded in the caller's transcript as a
    :class:`SubtaskEvent` whose ``events`` hold the subtask's transcript,
    completed with ``result`` (or ``error``) and ``working_time``.

    Raises:
        TypeError: (at call time) the decorated callable is not async.

    **Cancellation:** cancelling the caller cancels the subtask. An exception
    raised by the subtask propagates to the caller as is (not wrapped in an
    exception group) and is recorded in the event's ``error``.
    """
    if callable(name):
        return _wrap(name, None, store, type, input)
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a str or None, got {name.__class__.__name__}")

    def decorate(func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        return _wrap(func, name, store, type, input)

    return decorate
