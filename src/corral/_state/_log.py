"""A finished (or running) sample as data: :class:`SampleLog`."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from ._events import Event

__all__ = ["SampleLog"]


class SampleLog(BaseModel):
    """A finished (or running) sample as data: what ``Sample.log()`` returns.

    It writes to and reads back from JSON without loss; ``store`` holds the
    store's JSON, which :func:`~corral.util.store_from_events` rebuilds from
    ``events``.
    """

    model_config = ConfigDict(extra="forbid", defer_build=True)

    id: int | str
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    store: dict[str, JsonValue] = Field(default_factory=dict)
    events: list[Event] = Field(default_factory=list)

    def write_json(self, path: str | Path) -> None:
        """Write the log to *path* as JSON."""
        Path(path).write_text(self.model_dump_json(indent=2))

    @classmethod
    def read_json(cls, path: str | Path) -> SampleLog:
        """Read a log written by :meth:`write_json`.

        Raises:
            pydantic.ValidationError: The file is not a valid sample log.
        """
        return cls.model_validate_json(Path(path).read_bytes())
