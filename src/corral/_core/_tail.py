"""A byte buffer that keeps all it is given, or exactly the last *limit* bytes.

Shared by everything that captures a command's output under a limit: the
supervised subprocess's pipe readers and the ssh sandbox's channel sessions.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["TailBuffer"]


class TailBuffer:
    """Chunks appended, keeping all of them, or exactly the last *limit* bytes.

    With a limit, chunks are kept whole in a deque and the oldest is dropped as
    soon as the rest still covers *limit* bytes, so memory stays within
    ``limit`` plus one chunk however much is appended; :meth:`value` then cuts
    the join to exactly the last *limit* bytes.

    Args:
        limit: Bytes to keep; ``None`` keeps everything.
        on_over: Called once, from the appending thread, when more than
            *limit* bytes have been appended in all.

    Attributes:
        total: How many bytes were appended in all (kept or not).
    """

    __slots__ = ("_chunks", "_limit", "_on_over", "_size", "total")

    def __init__(self, limit: int | None, on_over: Callable[[], None] | None = None) -> None:
        self._limit = limit
        self._on_over = on_over
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self.total = 0

    def append(self, chunk: bytes) -> None:
        chunks = self._chunks
        chunks.append(chunk)
        self._size += len(chunk)
        self.total += len(chunk)
        limit = self._limit
        if limit is not None:
            while self._size - len(chunks[0]) >= limit:
                self._size -= len(chunks.popleft())
            if self.total > limit and self._on_over is not None:
                on_over, self._on_over = self._on_over, None
                on_over()

    def value(self) -> bytes:
        """The bytes kept (the last *limit* of them, with a limit)."""
        data = b"".join(self._chunks)
        if self._limit is not None and len(data) > self._limit:
            return data[len(data) - self._limit :]
        return data
