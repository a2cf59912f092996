"""The small types around the sandbox contract that providers annotate with.

``inspect_ai.util`` exports them and published providers import them, so
:mod:`corral.util` has them under the same names:

* :data:`SandboxEnvironmentConfigType`, what a sandbox's ``config`` may be;
* :data:`SandboxEnvironmentType`, the ways of naming a sandbox for a task or sample;
* :class:`SandboxEnvironments`, a set of environments and its cleanup;
* :class:`SandboxEnvironmentLimits`, the output limits as class attributes.

The limits are not a second copy of corral's: each attribute reads
:func:`~corral.sandboxes.max_exec_output_size` or
:func:`~corral.sandboxes.max_read_file_size` when it is looked up, so it shows
what the sandbox proxy enforces at that moment, environment variable and
``override_sandbox_output_limit`` included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

from pydantic import BaseModel

from ._environment import SandboxEnvironment, SandboxEnvironmentSpec
from ._output_limits import human_size, max_exec_output_size, max_read_file_size

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = [
    "SandboxEnvironmentConfigType",
    "SandboxEnvironmentLimits",
    "SandboxEnvironmentType",
    "SandboxEnvironments",
]

SandboxEnvironmentConfigType: TypeAlias = BaseModel | str
"""A sandbox's configuration: a file name (``"compose.yaml"``) or a provider's model."""

SandboxEnvironmentType: TypeAlias = str | tuple[str, str] | SandboxEnvironmentSpec
"""A sandbox named by its type (``"local"``), a ``(type, config file)`` pair, or a spec."""


@dataclass
class SandboxEnvironments:
    """The environments of one sample, by name, with an optional cleanup of their own.

    Attributes:
        environments: The environments by name; the first is the default one.
        cleanup: Called once with ``True`` when the sample was cancelled,
            ``False`` otherwise; ``None`` when there is nothing to clean up.
    """

    environments: dict[str, SandboxEnvironment]
    cleanup: Callable[[bool], Awaitable[None]] | None = None


class _Reading:
    """A class attribute computed from a limit on every lookup."""

    def __init__(self, limit: Callable[[], int]) -> None:
        self._limit = limit

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = f"{owner.__name__}.{name}"

    def __set__(self, obj: object, value: object) -> None:
        raise AttributeError(f"{self._name} is read-only: it shows the limit corral enforces")


class _IntLimit(_Reading):
    def __get__(self, obj: object, objtype: type | None = None) -> int:
        return self._limit()


class _StrLimit(_Reading):
    def __get__(self, obj: object, objtype: type | None = None) -> str:
        return human_size(self._limit())


class _ReadOnlyLimits(type):
    """Refuses assignments to the limits, which would hide the limits in force."""

    def __setattr__(cls, name: str, value: object) -> None:
        if isinstance(cls.__dict__.get(name), _Reading):
            raise AttributeError(
                f"{cls.__name__}.{name} is read-only: it shows the limit corral enforces; "
                "change it with corral.util.override_sandbox_output_limit(...) or "
                "$CORRAL_SANDBOX_MAX_EXEC_OUTPUT_SIZE / $CORRAL_SANDBOX_MAX_READ_FILE_SIZE"
            )
        super().__setattr__(name, value)

    def __delattr__(cls, name: str) -> None:
        if isinstance(cls.__dict__.get(name), _Reading):
            raise AttributeError(f"{cls.__name__}.{name} is read-only")
        super().__delattr__(name)


class SandboxEnvironmentLimits(metaclass=_ReadOnlyLimits):
    """The sandbox output limits in force, read as class attributes.

    Each lookup reads the limit now in force: 10 MiB of output per exec
    stream and 100 MiB per file read by default,
    ``$CORRAL_SANDBOX_MAX_EXEC_OUTPUT_SIZE`` and
    ``$CORRAL_SANDBOX_MAX_READ_FILE_SIZE`` for the process, and
    :func:`~corral.util.override_sandbox_output_limit` inside its block. A
    provider that sizes its buffers from these attributes therefore agrees
    with the sandbox proxy, which enforces the same limits. As in
    ``inspect_ai`` 0.3.285, the values are not fixed when the class is
    defined; unlike it, assigning to them is an :class:`AttributeError`.

    Attributes:
        MAX_EXEC_OUTPUT_SIZE: Bytes of output kept per exec stream.
        MAX_EXEC_OUTPUT_SIZE_STR: The same, for messages (``"10 MiB"``).
        MAX_READ_FILE_SIZE: The largest file ``read_file`` reads, in bytes.
        MAX_READ_FILE_SIZE_STR: The same, for messages (``"100 MiB"``).

    Raises:
        ValueError: On lookup, when the environment variable of that limit is
            not a positive integer.
    """

    MAX_EXEC_OUTPUT_SIZE = _IntLimit(max_exec_output_size)
    MAX_EXEC_OUTPUT_SIZE_STR = _StrLimit(max_exec_output_size)
    MAX_READ_FILE_SIZE = _IntLimit(max_read_file_size)
    MAX_READ_FILE_SIZE_STR = _StrLimit(max_read_file_size)
