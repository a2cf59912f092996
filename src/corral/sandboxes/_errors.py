"""Errors raised by sandboxes.

Hierarchy::

    Exception
    ├── OutputLimitExceededError      an exec stream or a file is over its limit
    ├── RuntimeError
    │   ├── SandboxUnavailableError   the provider cannot run anything (host down, ...)
    │   │   └── HostRefusedError      a host was reached but refused us (host key, login)
    │   └── SandboxUserUnsupportedError  the sandbox cannot run anything as that user
    └── OSError
        └── TimeoutError
            └── SandboxTimeoutError   exec, read_file or write_file ran out of time

Beyond these, every provider raises the builtins a user can rely on:
``FileNotFoundError``, ``IsADirectoryError`` and ``PermissionError`` naming
the path, and ``UnicodeDecodeError`` for invalid UTF-8 read as text.
"""

from __future__ import annotations

__all__ = [
    "HostRefusedError",
    "OutputLimitExceededError",
    "SandboxTimeoutError",
    "SandboxUnavailableError",
    "SandboxUserUnsupportedError",
]


class OutputLimitExceededError(Exception):
    """An exec output stream, or a file read, is over the sandbox's limit.

    Args:
        limit_str: The limit, for display (``"10 MiB"``).
        truncated_output: What was kept of the output (exec only; ``None``
            for ``read_file``, which never truncates).
    """

    def __init__(self, limit_str: str, truncated_output: str | None) -> None:
        super().__init__(f"The sandbox output stream limit of {limit_str} was exceeded.")
        self.limit_str = limit_str
        self.truncated_output = truncated_output

    def __reduce__(self) -> tuple[type[OutputLimitExceededError], tuple[str, str | None]]:
        return (type(self), (self.limit_str, self.truncated_output))


class SandboxTimeoutError(TimeoutError):
    """A sandbox operation ran out of time.

    Attributes:
        truncated_output: Output of an ``exec`` up to the timeout, when the
            provider has it; ``None`` otherwise.
    """

    def __init__(self, message: str, truncated_output: str | None = None) -> None:
        super().__init__(message)
        self.truncated_output = truncated_output


class SandboxUnavailableError(RuntimeError):
    """The sandbox cannot run anything: its host or container is gone."""


class HostRefusedError(SandboxUnavailableError):
    """A host was reached but will not have us: its key is not trusted, or it refused ours.

    A configuration error, not a passing fault: it is raised as it is and
    never retried on another host (trying other hosts with the same keys would
    only hide it). The SSH provider raises it from ``task_init``, so a task
    whose sandbox has a wrong host key or a refused key fails once, on
    entering ``corral.task(...)``, with this error itself; a sample with an
    SSH sandbox of its own raises it inside the task's nursery, where
    ``except* HostRefusedError`` catches it.
    """


class SandboxUserUnsupportedError(RuntimeError):
    """The sandbox's configuration rules out running commands as the requested user.

    A provider's ``exec`` raises it when ``user=`` can never work in this
    sandbox (a provider that only runs as the current user, a container
    without that account), as ``inspect_ai``'s providers do. It is not for a
    fault that might pass (a timeout, a lost connection) nor for a command
    that ran and failed: those stay ``TimeoutError``,
    :class:`SandboxUnavailableError` and an unsuccessful ``ExecResult``.

    corral's own providers report a user they cannot switch to with
    :class:`PermissionError` instead, which the contract documents; code that
    must handle both catches ``(SandboxUserUnsupportedError, PermissionError)``.
    """
