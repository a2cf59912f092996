"""The local sandbox passes the conformance suite, under trio and asyncio."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from corral.sandboxes._local import LocalSandboxEnvironment
from corral.sandboxes.testing import SandboxConformance
from corral.util import SandboxEnvironment

pytestmark = pytest.mark.anyio


class TestLocalConformance(SandboxConformance):
    @pytest.fixture
    async def sandbox_env(self) -> AsyncIterator[SandboxEnvironment]:
        environments = await LocalSandboxEnvironment.sample_init("conformance", None, {})
        try:
            yield environments["default"]
        finally:
            await LocalSandboxEnvironment.sample_cleanup("conformance", None, environments, False)
