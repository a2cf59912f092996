"""Counting what an ssh sandbox left running, read only (the demo's summary uses it)."""

from __future__ import annotations

import os

import anyio
import pytest

from corral._core._leftovers import harness_records
from corral.sandboxes._ssh._environment import SSHSandboxEnvironment
from corral.sandboxes._ssh._sweep import count_ssh
from corral.sandboxes._sweep import Leftover
from tests.sandboxes.ssh.conftest import remote_leftovers
from tests.support.processes import unique_sleep
from tests.support.sshd import OpenSSHServer

pytestmark = pytest.mark.anyio


def _recorded(directory: str) -> Leftover:
    for record in harness_records():
        if record.pid == os.getpid():
            for id, entry in record.entries.items():
                if entry.get("dir") == directory:
                    return Leftover("ssh", id, entry, os.getpid(), record.path)
    raise AssertionError(f"no record of {directory}")


async def test_processes_a_sandbox_left_are_counted_until_its_cleanup(
    sshd: OpenSSHServer, no_remote_leftovers: OpenSSHServer
) -> None:
    config = sshd.sandbox_config()
    marker = unique_sleep()
    environments = await SSHSandboxEnvironment.sample_init("count", config, {})
    env = environments["default"]
    assert isinstance(env, SSHSandboxEnvironment)
    leftover = _recorded(env.directory)
    try:
        assert await count_ssh([leftover]) == [0]
        # Two daemons that left the command's group: only their tag says whose they are.
        script = f"for i in 1 2; do setsid sleep {marker} </dev/null >/dev/null 2>&1 & done"
        assert (await env.exec(["sh", "-c", script])).returncode == 0
        with anyio.fail_after(30):
            while len(remote_leftovers(sshd)) < 2:  # noqa: ASYNC110 - nothing to await
                await anyio.sleep(0.05)
        assert await count_ssh([leftover]) == [2]
    finally:
        await SSHSandboxEnvironment.sample_cleanup("count", config, environments, False)
    assert await count_ssh([leftover]) == [0]


async def test_an_unreachable_host_or_a_damaged_record_counts_as_unknown(
    sshd: OpenSSHServer,
) -> None:
    config = sshd.sandbox_config()
    config["hosts"] = [f"{sshd.username}@127.0.0.1:1"]  # nothing listens there
    config["connect_timeout"] = 5
    unreachable = Leftover("ssh", "x", {"dir": "/x", "tag": "t", "config": config}, 1, "")
    damaged = Leftover("ssh", "y", {"dir": "/y"}, 1, "")
    assert await count_ssh([unreachable, damaged]) == [None, None]
