"""Sandboxes: the :class:`SandboxEnvironment` contract, the registry, and lookup.

Providers subclass :class:`SandboxEnvironment` and register with
``@sandboxenv(name)`` (or the ``corral.sandboxes`` entry-point group); the
runtime's task and sample scopes own their lifecycle, and inside a sample
:func:`sandbox` and :func:`sandbox_with` find the environments.
:mod:`corral.util` re-exports the stable names.
"""

from ._context import sandbox, sandbox_default, sandbox_with
from ._environment import (
    HostMapping,
    PortMapping,
    SandboxConnection,
    SandboxEnvironment,
    SandboxEnvironmentSpec,
)
from ._errors import OutputLimitExceededError, SandboxTimeoutError, SandboxUnavailableError
from ._limits import max_exec_output_size, max_read_file_size, override_sandbox_output_limit
from ._registry import register_sandbox, registered_sandboxes, sandboxenv
from ._ssh._config import SSHHostConfig, SSHSandboxConfig

__all__ = [
    "HostMapping",
    "OutputLimitExceededError",
    "PortMapping",
    "SSHHostConfig",
    "SSHSandboxConfig",
    "SandboxConnection",
    "SandboxEnvironment",
    "SandboxEnvironmentSpec",
    "SandboxTimeoutError",
    "SandboxUnavailableError",
    "max_exec_output_size",
    "max_read_file_size",
    "override_sandbox_output_limit",
    "register_sandbox",
    "registered_sandboxes",
    "sandbox",
    "sandbox_default",
    "sandbox_with",
    "sandboxenv",
]

from .._util import fixup_module_metadata

fixup_module_metadata(__name__, globals())
del fixup_module_metadata
