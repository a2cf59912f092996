"""Sandboxes beyond the ``inspect_ai``-compatible names: registry, limits, SSH configuration.

The sandbox contract itself (:class:`~corral.util.SandboxEnvironment`,
``sandbox()``, ``sandboxenv``, the errors users catch) is exported by
:mod:`corral.util`, as ``inspect_ai.util`` exports it; this package adds what
only corral has. Providers subclass ``SandboxEnvironment`` and register with
``@sandboxenv(name)``, :func:`register_sandbox` or the ``corral.sandboxes``
entry-point group; the task and sample scopes own their lifecycle, and every
environment is used through the sandbox proxy, which enforces the contract's
rules. :mod:`corral.sandboxes.testing` holds the conformance suite and an
in-memory provider.
"""

from ._environment import HostMapping, PortMapping
from ._errors import HostRefusedError
from ._output_limits import max_exec_output_size, max_read_file_size
from ._registry import register_sandbox, registered_sandboxes
from ._ssh._config import SSHHostConfig, SSHSandboxConfig

__all__ = [
    "HostMapping",
    "HostRefusedError",
    "PortMapping",
    "SSHHostConfig",
    "SSHSandboxConfig",
    "max_exec_output_size",
    "max_read_file_size",
    "register_sandbox",
    "registered_sandboxes",
]

from .._core._public import fixup_module_metadata

fixup_module_metadata(__name__, globals())
del fixup_module_metadata
