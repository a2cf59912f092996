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

A provider with a configuration model of its own overrides
:meth:`SandboxEnvironment.config_deserialize`; a ``dict`` config is then
turned into that model whenever it reaches the provider (every lifecycle
call) and when a :class:`SandboxEnvironmentSpec` is validated, so a spec read
back from JSON holds the provider's model again.
"""

from __future__ import annotations

import abc
import logging
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

import anyio.lowlevel
from pydantic import BaseModel, ConfigDict, model_validator

if TYPE_CHECKING:
    from .._process._subprocess import ExecResult
    from ._exec_remote import (
        ExecRemoteAwaitableOptions,
        ExecRemoteProcess,
        ExecRemoteStreamingOptions,
    )

__all__ = [
    "HostMapping",
    "PortMapping",
    "SandboxConnection",
    "SandboxEnvironment",
    "SandboxEnvironmentSpec",
]

_logger = logging.getLogger("corral.sandbox")

ST = TypeVar("ST", bound="SandboxEnvironment")


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
    """Which provider to use and its configuration: ``SandboxEnvironmentSpec("local")``.

    A non-empty ``dict`` config is handed to the provider's
    :meth:`~SandboxEnvironment.config_deserialize` when the spec is
    validated (constructed, or read with ``model_validate_json``), if the
    provider is registered and overrides it; a docker-compatible provider's
    config that is a valid compose file becomes a ``ComposeConfig`` first. So
    ``SandboxEnvironmentSpec.model_validate_json(spec.model_dump_json())``
    gives back the provider's model, not a ``dict``. Otherwise (an unknown
    type, a provider without a model, or one that refuses the dict) the
    ``dict`` is kept as it is, and the refusal is raised when the config
    reaches the provider, at ``task_init``.
    """

    model_config = ConfigDict(frozen=True, defer_build=True)

    type: str
    config: Any = None

    def __init__(self, type: str, config: Any = None) -> None:
        super().__init__(type=type, config=config)

    @model_validator(mode="before")
    @classmethod
    def _provider_model(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        kind, config = data.get("type"), data.get("config")
        if not (isinstance(kind, str) and isinstance(config, dict) and config):
            return data
        # The registry imports this module; it is always loaded first (by the
        # package), so this import only looks it up.
        from ._registry import spec_config

        return {**data, "config": spec_config(kind, config)}


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
        concurrency: bool = True,
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
            concurrency: Whether the command takes a slot of the concurrency
                limit its provider applies to commands it runs on this
                machine (the local provider: the ``"subprocesses"`` limit).
                ``False`` runs it without waiting for, or holding, such a
                slot. Resources a command cannot run without (an SSH
                session on a connection) are still taken. The proxy passes
                it only to providers whose ``exec`` declares it.

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

    async def connection(self, *, user: str | None = None) -> SandboxConnection:
        """Return how to open a shell in this sandbox by hand.

        Args:
            user: Open the shell as this user instead of the sandbox's default.

        Raises:
            NotImplementedError: The provider offers no connection.
            ConnectionError: The sandbox is not running.
        """
        raise NotImplementedError(f"{type(self).__name__} does not offer a connection")

    @overload
    async def exec_remote(
        self,
        cmd: list[str],
        options: ExecRemoteStreamingOptions | None = None,
        *,
        stream: Literal[True] = True,
    ) -> ExecRemoteProcess: ...
    @overload
    async def exec_remote(
        self,
        cmd: list[str],
        options: ExecRemoteAwaitableOptions | None = None,
        *,
        stream: Literal[False],
    ) -> ExecResult[str]: ...
    async def exec_remote(
        self,
        cmd: list[str],
        options: ExecRemoteStreamingOptions | ExecRemoteAwaitableOptions | None = None,
        *,
        stream: bool = True,
    ) -> ExecRemoteProcess | ExecResult[str]:
        """Start *cmd* and return a handle on it, or (``stream=False``) its result.

        ``stream=True`` returns an :class:`~corral.util.ExecRemoteProcess`:
        ``async for event in process`` yields its
        :class:`~corral.util.ExecStdout` and :class:`~corral.util.ExecStderr`
        chunks and then one :class:`~corral.util.ExecCompleted`.
        ``stream=False`` runs the command to its end and returns its
        ``ExecResult``, as :meth:`exec` does (``timeout`` of
        :class:`~corral.util.ExecRemoteAwaitableOptions` included).

        This implementation is the **slow path**, for providers that only have
        :meth:`exec`; a provider that can stream overrides it. Streaming, it
        returns an :class:`~corral.sandboxes._exec_remote.ExecFallbackProcess`
        (not started yet): the command runs through one ``exec`` call when the
        iteration begins, and its output arrives as one stdout and one stderr
        event at the end; ``write_stdin`` (with ``stdin_open=True``) collects
        stdin until the iteration begins; ``pid`` raises ``RuntimeError``.
        Both modes run ``exec`` through the sandbox proxy, so its argument
        checks, output limits, events and trace apply. Cancelling the task
        that iterates (or awaits ``stream=False``) cancels that ``exec``,
        which stops the command before the cancellation propagates.

        Args:
            cmd: The command and its arguments.
            options: :class:`~corral.util.ExecRemoteStreamingOptions` or
                :class:`~corral.util.ExecRemoteAwaitableOptions` (either is
                taken in either mode; ``timeout`` applies only with
                ``stream=False``, ``stdin_open`` only with ``stream=True``).
            stream: Return a process handle (``True``) or the result (``False``).

        Raises:
            TypeError: *cmd* is not a list of ``str``, *options* is not one
                of the option classes, or *stream* not a bool.
            ValueError: *cmd* is empty.
            SandboxTimeoutError: (``stream=False``) the command ran past
                ``timeout``; ``truncated_output`` keeps what it printed.
        """
        from ._exec_remote import ExecFallbackProcess, check_options, exec_awaitable

        opts = check_options(cmd, options, stream)
        if not stream:
            return await exec_awaitable(self, cmd, opts)
        await anyio.lowlevel.checkpoint()
        return ExecFallbackProcess(self, cmd, opts)

    def as_type(self, sandbox_cls: type[ST]) -> ST:
        """Return this environment as a *sandbox_cls*, to reach what only that provider has.

        ``sandbox().as_type(LocalSandboxEnvironment).directory``. Through the
        proxy (as ``sandbox()`` returns it) this is the provider's own object,
        which the proxy's checks, limits and events do not cover.

        Not a checkpoint.

        Raises:
            TypeError: The environment is not a *sandbox_cls* (the message
                names both types), or *sandbox_cls* is not a class.
        """
        if not isinstance(sandbox_cls, type):
            raise TypeError(f"sandbox_cls must be a class, got {sandbox_cls!r}")
        if isinstance(self, sandbox_cls):
            return self
        raise TypeError(f"Expected instance of {sandbox_cls.__name__}, got {type(self).__name__}")

    def default_polling_interval(self) -> float:
        """Seconds between polls for providers' sandbox services (2 by default).

        corral has no sandbox services that poll; the value is kept for
        providers and tools that read it.
        """
        return 2

    @classmethod
    def config_files(cls) -> list[str]:
        """Names of configuration files this provider recognises in a task's directory."""
        return []

    @classmethod
    def is_docker_compatible(cls) -> bool:
        """Whether the provider takes Docker configurations (a Dockerfile or ``compose.yaml``).

        By default, whether one of :meth:`config_files` contains
        ``"compose.yaml"`` (so ``False`` for a provider that lists none).
        A docker-compatible provider's ``dict`` config that is a valid
        compose file becomes a ``ComposeConfig`` before
        :meth:`config_deserialize` is asked.
        """
        return any("compose.yaml" in name for name in cls.config_files())

    @classmethod
    def config_deserialize(cls, config: dict[str, Any]) -> BaseModel:
        """Turn a ``dict`` config (a model dumped to JSON and read back) into the provider's model.

        Override it when the provider has a configuration model:
        ``return MyConfig.model_validate(config)``. Only overriding providers
        are asked; for the others a ``dict`` config reaches the lifecycle
        methods as it is.

        Raises:
            NotImplementedError: The provider has no configuration model (the default).
        """
        raise NotImplementedError(
            f"{cls.__name__} has no configuration model: override config_deserialize() "
            "to turn a dict config into one"
        )

    @classmethod
    def default_concurrency(cls) -> int | None:
        """How many samples may hold an environment at once (``None``: no limit)."""
        return None

    @classmethod
    async def task_init(cls, task_name: str, config: Any) -> None:
        """Prepare the provider for a task, once, before its first sample.

        Once per config and per distinct environment that
        :meth:`task_init_environment` asks for.
        """

    @classmethod
    async def task_init_environment(cls, config: Any, metadata: dict[str, Any]) -> dict[str, str]:
        """Environment variables that a sample's ``task_init`` needs (none by default).

        Called for the task's own sandbox when the task starts (with empty
        *metadata*) and for each sample before its sandbox is made, with the
        sample's metadata. Samples that get the same variables (by default
        none) share one ``task_init``; each distinct set gets a ``task_init``
        of its own, run with these variables set in ``os.environ`` (which
        the whole process sees while it runs), and a ``task_cleanup``.

        Args:
            config: The sandbox's configuration.
            metadata: The sample's metadata.

        Returns:
            Variable names and values (``{}`` to share the task's ``task_init``).
        """
        return {}

    @classmethod
    async def sample_init(
        cls, task_name: str, config: Any, metadata: dict[str, Any]
    ) -> dict[str, SandboxEnvironment]:
        """Create the environments of one sample.

        Every provider overrides this; the default (as in ``inspect_ai``)
        returns no environments, which the sample's scope refuses with a
        ``ValueError`` naming the provider.

        Returns:
            Environments by name; the first one is the sample's default.
        """
        return {}

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
