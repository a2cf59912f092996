"""The sandbox contract: :class:`SandboxEnvironment` and the types around it.

A provider subclasses :class:`SandboxEnvironment`, implements the four
abstract methods and the lifecycle class methods it needs, and registers the
class with ``@sandboxenv("name")``. The runtime owns the lifecycle: it calls
``task_init`` once per task, ``sample_init`` and ``sample_cleanup`` around
each sample, and ``task_cleanup`` when the task scope exits.

The runtime also wraps every environment once, in the sandbox proxy (see
:mod:`corral.sandboxes._proxy`), which owns the rules every call obeys
whatever the provider: it checks the arguments before the provider sees
them, applies ``timeout=`` as a cancel scope (a ``TimeoutError`` becomes
``SandboxTimeoutError``), enforces the output limits, records each call as a
``SandboxEvent`` and traces it. A provider therefore keeps only the
mechanics: running the command, moving the bytes, and stopping what it
started when it is cancelled.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any, Literal, overload

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from .._process._subprocess import ExecResult

__all__ = [
    "HostMapping",
    "PortMapping",
    "SandboxConnection",
    "SandboxEnvironment",
    "SandboxEnvironmentSpec",
]


class HostMapping(BaseModel):
    """Where a container port is reachable on the host."""

    model_config = ConfigDict(defer_build=True)

    host_ip: str
    host_port: int


class PortMapping(BaseModel):
    """A container port and where it is reachable."""

    model_config = ConfigDict(defer_build=True)

    container_port: int
    protocol: Literal["tcp", "udp"] = "tcp"
    mappings: list[HostMapping]


class SandboxConnection(BaseModel):
    """How a user connects to a sandbox by hand.

    Attributes:
        type: The provider's name (``"local"``, ``"ssh"``).
        command: A shell command that opens a shell in the sandbox.
        vscode_command: Arguments of a VS Code command that attaches to it.
        ports: Ports the sandbox exposes.
        container: The container's name, for container providers.
    """

    model_config = ConfigDict(defer_build=True)

    type: str
    command: str
    vscode_command: list[Any] | None = None
    ports: list[PortMapping] | None = None
    container: str | None = None


class SandboxEnvironmentSpec(BaseModel):
    """Which provider to use and its configuration: ``SandboxEnvironmentSpec("local")``."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    type: str
    config: Any = None

    def __init__(self, type: str, config: Any = None) -> None:
        super().__init__(type=type, config=config)


class SandboxEnvironment(abc.ABC):
    """A place to run commands and keep files for one sample.

    Every provider raises the same errors, so user code can rely on them:
    :class:`FileNotFoundError`, :class:`IsADirectoryError` and
    :class:`PermissionError` naming the path; :class:`UnicodeDecodeError`
    for invalid UTF-8 read as text; :class:`~corral.util.SandboxTimeoutError`
    (a :class:`TimeoutError`) when a timeout expires;
    :class:`~corral.util.OutputLimitExceededError` past the output limits;
    :class:`~corral.util.SandboxUnavailableError` when the sandbox cannot run
    anything any more.
    """

    @abc.abstractmethod
    async def exec(
        self,
        cmd: list[str],
        input: str | bytes | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        user: str | None = None,
        timeout: int | float | None = None,
        timeout_retry: bool = True,
    ) -> ExecResult[str]:
        """Run *cmd* (a program and its arguments, never through a shell) and wait for it.

        Called through ``sandbox()``, the arguments have been checked (a
        list of ``str``, ``str`` or bytes input, ``str`` to ``str`` env, a
        timeout >= 0), and the proxy enforces *timeout* and the output
        limit; a provider may also pass *timeout* on to its backend, and a
        ``TimeoutError`` it raises becomes ``SandboxTimeoutError``.

        Args:
            cmd: The program and its arguments.
            input: Data for the command's stdin.
            cwd: Working directory; a relative path is resolved in the
                sample's working directory, which is also the default.
            env: Variables set for the command, on top of the sandbox's own.
            user: Run as this user instead of the sandbox's default.
            timeout: Seconds the command may run.
            timeout_retry: Whether the provider may retry a command that timed
                out for reasons of its own (advisory).

        Returns:
            The command's exit status and output, decoded as UTF-8 with
            undecodable bytes replaced.

        Raises:
            SandboxTimeoutError: The command ran longer than *timeout*; nothing
                it started is left running.
            PermissionError: *user* cannot be used, or the program cannot be run.
            OutputLimitExceededError: A stream was over the exec output limit
                (10 MiB); ``truncated_output`` holds what was kept.
            SandboxUnavailableError: The sandbox cannot run anything.

        **Cancellation:** a provider must stop the command, and everything
        it started, before the cancellation propagates (the proxy's timeout
        arrives as a cancellation too); cleanup that has to wait runs
        shielded and bounded.
        """

    @abc.abstractmethod
    async def write_file(self, file: str, contents: str | bytes) -> None:
        """Write *contents* to *file*, creating its parent directories.

        A ``str`` is written as UTF-8. A relative *file* is resolved in the
        sample's working directory.

        Raises:
            TimeoutError: The write did not complete in time.
            PermissionError: The file or a parent cannot be written.
            IsADirectoryError: *file* is an existing directory.
        """

    @overload
    async def read_file(self, file: str, text: Literal[True] = True) -> str: ...
    @overload
    async def read_file(self, file: str, text: Literal[False]) -> bytes: ...
    @abc.abstractmethod
    async def read_file(self, file: str, text: bool = True) -> str | bytes:
        """Read *file*, as UTF-8 text (newlines kept as they are) or as bytes.

        Raises:
            TimeoutError: The read did not complete in time.
            FileNotFoundError: *file* does not exist.
            UnicodeDecodeError: *text* is true and the file is not UTF-8.
            PermissionError: *file* cannot be read.
            IsADirectoryError: *file* is a directory.
            OutputLimitExceededError: The file is larger than the read limit
                (100 MiB); nothing is read.
        """

    async def connection(self) -> SandboxConnection:
        """Return how to open a shell in this sandbox by hand.

        Raises:
            NotImplementedError: The provider offers no connection.
            ConnectionError: The sandbox is not running.
        """
        raise NotImplementedError(f"{type(self).__name__} does not offer a connection")

    @classmethod
    def config_files(cls) -> list[str]:
        """Names of configuration files this provider recognises in a task's directory."""
        return []

    @classmethod
    def default_concurrency(cls) -> int | None:
        """How many samples may hold an environment at once (``None``: no limit)."""
        return None

    @classmethod
    async def task_init(cls, task_name: str, config: Any) -> None:
        """Prepare the provider for a task, once, before its first sample."""

    @classmethod
    @abc.abstractmethod
    async def sample_init(
        cls, task_name: str, config: Any, metadata: dict[str, Any]
    ) -> dict[str, SandboxEnvironment]:
        """Create the environments of one sample.

        Returns:
            Environments by name; the first one is the sample's default.
        """

    @classmethod
    @abc.abstractmethod
    async def sample_cleanup(
        cls,
        task_name: str,
        config: Any,
        environments: dict[str, SandboxEnvironment],
        interrupted: bool,
    ) -> None:
        """Release the environments of one sample.

        Called once per successful ``sample_init``, with ``interrupted=True``
        when the sample was cancelled, timed out or raised. It must finish
        even when the sample was cancelled, and leave nothing running.
        """

    @classmethod
    async def task_cleanup(cls, task_name: str, config: Any, cleanup: bool) -> None:
        """Release what ``task_init`` prepared; *cleanup* is false to keep it for debugging."""

    @classmethod
    async def cli_cleanup(cls, id: str | None) -> None:
        """Remove resources left behind by earlier runs (``corral sandbox cleanup``)."""
