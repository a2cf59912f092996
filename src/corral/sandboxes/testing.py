"""Testing sandbox providers, and code that uses sandboxes.

* :class:`SandboxConformance`: the conformance suite, a pytest base class.
  A provider subclasses it in a test module and names itself; the suite
  creates each environment the way the runtime does (``sample_init``) and
  releases it afterwards (``sample_cleanup``), and calls it through the
  sandbox proxy, as samples do, since the proxy owns the rules every
  provider obeys (argument checks, ``timeout=``, output limits)::

      class TestMySandbox(SandboxConformance):
          provider = MySandbox

  A provider that makes its environments another way overrides the
  ``sandbox_env`` fixture instead.

* :class:`MemorySandboxEnvironment`: a provider whose files live in a dict
  and whose commands are a handful of builtins, for testing code that uses
  sandboxes without processes or a file system (register it with
  ``register_sandbox("memory", MemorySandboxEnvironment)``). Its old path,
  ``corral.sandboxes._memory``, keeps working.

corral's pytest plugin (:mod:`corral.pytest_plugin`, loaded by pytest
wherever corral is installed) adds fixtures for both: ``corral_memory_sandbox``
and ``corral_local_sandbox``, with a running task and sample and a check for
leftovers (see ``docs/testing.md``).

This module imports pytest; it is meant for test suites only.
"""

from ._conformance import SandboxConformance
from ._memory import MemorySandboxEnvironment

__all__ = ["MemorySandboxEnvironment", "SandboxConformance"]

from .._core._public import fixup_module_metadata

fixup_module_metadata(__name__, globals())
del fixup_module_metadata
