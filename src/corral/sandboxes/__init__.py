"""Sandboxes: the :class:`SandboxEnvironment` contract, its errors and limits.

The local provider, the registry and the per-sample lifecycle are built on
these; :mod:`corral.util` re-exports the stable names.
"""

from ._environment import (
    HostMapping,
    PortMapping,
    SandboxConnection,
    SandboxEnvironment,
    SandboxEnvironmentSpec,
)
from ._errors import OutputLimitExceededError, SandboxTimeoutError, SandboxUnavailableError
from ._limits import override_sandbox_output_limit

__all__ = [
    "HostMapping",
    "OutputLimitExceededError",
    "PortMapping",
    "SandboxConnection",
    "SandboxEnvironment",
    "SandboxEnvironmentSpec",
    "SandboxTimeoutError",
    "SandboxUnavailableError",
    "override_sandbox_output_limit",
]

from .._util import fixup_module_metadata

fixup_module_metadata(__name__, globals())
del fixup_module_metadata
