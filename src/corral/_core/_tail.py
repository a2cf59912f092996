"""A byte buffer that keeps all it is given, or exactly the last *limit* bytes.

Shared by everything that captures a command's output under a limit: the
supervised subprocess's pipe readers and the ssh sandbox's channel sessions.
"""

from __future__ import annotations

from collections import deque

__all__ = ["TailBuffer"]


class TailBuffer:
    """Chunks appended, keeping all of them, or exactly the last *limit* bytes.

    With a limit, chunks are kept whole in a deque and the oldest is dropped as
    soon as the rest still covers *limit* bytes, so memory stays within
    ``limit`` plus one chunk however much is appended; :meth:`value` then cuts
    the join to exactly the last *limit* bytes.

    Attributes:
        total: How many bytes were appended in all (kept or not).
    """

    __slots__ = ("_chunks", "_limit", "_size", "total")

    def __init__(self, limit: int | None) -> None:
        self._limit = limit
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

    def value(self) -> bytes:
        """The bytes kept (the last *limit* of them, with a limit)."""
        data = b"".join(self._chunks)
        if self._limit is not None and len(data) > self._limit:
            return data[len(data) - self._limit :]
        return data
