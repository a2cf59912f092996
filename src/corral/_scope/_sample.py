"""Sample scopes: ``task.sample(...)`` and the :class:`Sample` it yields.

Inside a sample, ``store()`` and ``transcript()`` resolve to the sample's
own, through context variables, so concurrent samples never see each other's
state. The sample scope is itself a span (type ``"sample"``), so every change
a sample makes to its store is recorded at least once.

The scope is one generator of nested ``with`` blocks (:func:`_run_sample`):
the sample's limits outermost (the time limit's cancel scope, then the
working limit's, see :mod:`corral._scope._limits`), then the sample's context
variables, its sandboxes, its span, and the task group of its
``background()`` work, cancelled when the body ends. Python unwinds them in
order whatever raises where, so a failing span exit (a store value changed in
place into something that is not JSON) can never leave the time limit
applying to code after the sample.
"""

from __future__ import annotations

import contextlib
import time
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, final

from pydantic_core import PydanticSerializationError, to_jsonable_python

from .._core._public import NoPublicConstructor
from .._state._events import StoreEvent, current_span, sample_started
from .._state._log import SampleLog
from .._state._snapshot import Snapshot, diff, snapshot
from .._state._span import span
from .._state._store import Store, current_store
from .._state._transcript import Transcript, current_transcript
from ..tracing._context import enter_sample, leave
from ._collect import sample_background
from ._lifecycle import sample_sandboxes
from ._limits import sample_limit_scope

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from contextlib import AbstractAsyncContextManager
    from types import TracebackType

    from ..sandboxes._environment import SandboxEnvironmentSpec
    from ._lifecycle import TaskSandboxes

__all__ = ["Sample", "open_sample"]


@final
class Sample(metaclass=NoPublicConstructor):
    """A running sample; get one from ``task.sample(...)``.

    Attributes:
        id: The sample's id.
        metadata: The sample's metadata.
        store: The sample's :class:`~corral.util.Store`.
        transcript: The sample's :class:`~corral.util.Transcript`.
    """

    __slots__ = ("id", "metadata", "store", "transcript")

    def __init__(
        self, id: int | str, metadata: dict[str, Any], store: Store, transcript: Transcript
    ) -> None:
        self.id = id
        self.metadata = metadata
        self.store = store
        self.transcript = transcript

    def __repr__(self) -> str:
        return f"<corral Sample {self.id!r}>"

    def log(self) -> SampleLog:
        """Return the sample's id, metadata, store and events as a :class:`~corral.util.SampleLog`.

        Raises:
            TypeError: A store value was changed in place into something that
                is not JSON-serialisable (the message names the key).
        """
        return SampleLog(
            id=self.id,
            metadata=self.metadata,
            store=snapshot(self.store).tree,
            events=list(self.transcript.events),
        )


@contextlib.contextmanager
def _sample_context(sample: Sample) -> Iterator[None]:
    """The sample's store, transcript, start time, (empty) span stack and trace place."""
    store_token = current_store.set(sample.store)
    transcript_token = current_transcript.set(sample.transcript)
    started_token = sample_started.set(time.monotonic())
    span_token = current_span.set(None)  # the sample's transcript has a span tree of its own
    trace_token = enter_sample(sample.id)  # trace records name the sample
    try:
        yield
    finally:
        leave(trace_token)
        current_span.reset(span_token)
        sample_started.reset(started_token)
        current_transcript.reset(transcript_token)
        current_store.reset(store_token)


@asynccontextmanager
async def _run_sample(
    sample: Sample,
    sandboxes: TaskSandboxes | None,
    spec: SandboxEnvironmentSpec | None,
    time_limit: float | None,
    working_limit: float | None,
) -> AsyncIterator[Sample]:
    # Cancel the sample's body (and its sandbox set-up) at a limit; the
    # cleanup has run by the time the limit raises (a TimeoutError).
    with sample_limit_scope(sample.id, time_limit, working_limit), _sample_context(sample):
        # Record the initial contents, so that the store rebuilt from the
        # transcript equals the live one.
        initial = diff(Snapshot({}), snapshot(sample.store))
        if initial:
            sample.transcript._event(StoreEvent(changes=initial))
        async with contextlib.AsyncExitStack() as stack:
            if spec is not None:
                assert sandboxes is not None
                metadata = {**sample.metadata, "__sample_id__": sample.id}
                await stack.enter_async_context(sample_sandboxes(sandboxes, spec, metadata))
            async with span(f"sample {sample.id}", type="sample"), sample_background(sample.id):
                yield sample


@final
class _SampleScope:
    """The async context manager ``task.sample()`` returns: one use of :func:`_run_sample`."""

    __slots__ = ("_run", "_sample", "_scope")

    def __init__(self, sample: Sample, run: AbstractAsyncContextManager[Sample]) -> None:
        self._sample = sample
        self._run: AbstractAsyncContextManager[Sample] | None = run
        self._scope: AbstractAsyncContextManager[Sample] | None = None

    async def __aenter__(self) -> Sample:
        run, self._run = self._run, None
        if run is None:
            raise RuntimeError(f"sample {self._sample.id!r} has already been entered")
        self._scope = run
        return await run.__aenter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        scope, self._scope = self._scope, None
        assert scope is not None
        return await scope.__aexit__(exc_type, exc_value, traceback)


def open_sample(
    id: int | str,
    metadata: dict[str, Any] | None,
    store: Store | dict[str, Any] | None,
    sandboxes: TaskSandboxes | None = None,
    spec: SandboxEnvironmentSpec | None = None,
    time_limit: float | None = None,
    working_limit: float | None = None,
) -> AbstractAsyncContextManager[Sample]:
    """Check the arguments of ``task.sample()`` and return its context manager.

    Raises:
        TypeError: An argument has the wrong type, or *metadata* is not
            JSON-serialisable.
    """
    if isinstance(id, bool) or not isinstance(id, (int, str)):
        raise TypeError(f"id must be an int or a str, got {type(id).__name__}")
    if metadata is None:
        metadata = {}
    elif not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict or None, got {type(metadata).__name__}")
    else:
        try:
            to_jsonable_python(metadata)
        except PydanticSerializationError as exc:
            raise TypeError(f"metadata must be JSON-serialisable: {exc}") from None
    if store is None or isinstance(store, dict):
        sample_store = Store(store)
    elif isinstance(store, Store):
        sample_store = store
    else:
        raise TypeError(f"store must be a Store, a dict or None, got {type(store).__name__}")
    sample = Sample._create(id, metadata, sample_store, Transcript())
    return _SampleScope(sample, _run_sample(sample, sandboxes, spec, time_limit, working_limit))
