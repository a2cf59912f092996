"""The ssh sandbox passes the conformance suite against a real OpenSSH server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from corral.sandboxes._ssh._environment import SSHSandboxEnvironment
from corral.sandboxes.testing import SandboxConformance
from corral.util import SandboxEnvironment
from tests.support.sshd import OpenSSHServer

pytestmark = pytest.mark.anyio


class TestSSHConformance(SandboxConformance):
    @pytest.fixture
    def sample_config(self, sshd: OpenSSHServer) -> Any:
        """The config of the samples the suite starts itself: the same server."""
        return sshd.sandbox_config()

    @pytest.fixture
    async def sandbox_env(
        self, sshd: OpenSSHServer, no_remote_leftovers: OpenSSHServer
    ) -> AsyncIterator[SandboxEnvironment]:
        config = sshd.sandbox_config()
        environments = await SSHSandboxEnvironment.sample_init("conformance", config, {})
        try:
            yield environments["default"]  # the suite wraps it in the proxy
        finally:
            await SSHSandboxEnvironment.sample_cleanup("conformance", config, environments, False)
