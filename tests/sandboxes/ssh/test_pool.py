"""Session slots of the ssh connection pool, without a network."""

from __future__ import annotations

import pytest

from corral.sandboxes import SSHSandboxConfig
from corral.sandboxes._ssh import _pool
from corral.sandboxes._ssh._pool import HostPool, HostSet, Link


class _Conn:
    def __init__(self) -> None:
        self.closed = False

    def is_closed(self) -> bool:
        return self.closed


def _pool_with(*links: Link) -> HostPool:
    config = SSHSandboxConfig.load({"hosts": [{"host": "h", "max_sessions": 3}]})
    pool = HostPool(config.hosts[0], config)
    pool._links = list(links)
    return pool


def test_least_busy_connection_with_room_is_chosen() -> None:
    a, b = Link(_Conn(), 3), Link(_Conn(), 3)  # type: ignore[arg-type]
    a.sessions, b.sessions = 2, 1
    pool = _pool_with(a, b)
    assert pool._free_link() is b
    b.sessions = 3
    assert pool._free_link() is a
    a.sessions = 3
    assert pool._free_link() is None


def test_closed_connections_are_dropped() -> None:
    a, b = Link(_Conn(), 3), Link(_Conn(), 3)  # type: ignore[arg-type]
    a.conn.closed = True  # type: ignore[attr-defined]
    pool = _pool_with(a, b)
    assert pool._free_link() is b
    assert pool._links == [b]


def test_a_refusal_holds_the_connection_for_a_while(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr("time.monotonic", lambda: clock[0])
    link = Link(_Conn(), 3)  # type: ignore[arg-type]
    pool = _pool_with(link)
    link.sessions = 1
    pool.refused(link)  # the server would not take a second channel now
    assert pool._free_link() is None
    clock[0] += _pool.REFUSAL_HOLD / 2
    assert pool._free_link() is None
    clock[0] += _pool.REFUSAL_HOLD
    assert pool._free_link() is link  # then the configured capacity again


def test_least_loaded_reachable_host_first(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr("time.monotonic", lambda: clock[0])
    config = SSHSandboxConfig.load({"hosts": ["a", "b", {"host": "c", "max_sandboxes": 1}]})
    hosts = HostSet(config, "key")
    a, b, c = hosts.pools
    assert [p.host.host for p in hosts._candidates()] == ["a", "b", "c"]
    a.sandboxes = 2
    b.sandboxes = 1
    assert [p.host.host for p in hosts._candidates()] == ["c", "b", "a"]
    c.sandboxes = 1  # full
    b.down_until = clock[0] + 5  # unreachable a moment ago: tried last
    assert [p.host.host for p in hosts._candidates()] == ["a", "b"]
    clock[0] += 10
    assert [p.host.host for p in hosts._candidates()] == ["b", "a"]
