"""Pooled SSH connections per host, and the choice of host for a new sample.

Everything here runs on the SSH loop (see :mod:`._bridge`), so it is plain
asyncio with no locking across threads.

A :class:`HostPool` keeps connections to one host and lends out *session
slots*: each open channel (an exec, the SFTP subsystem, a kill) holds one
slot of its connection, and a connection never has more than the host's
``max_sessions`` (the server's ``MaxSessions``) at once. When every
connection is full, one more is opened; a closed connection (keepalive
failed, the server went away) is dropped and replaced on the next use. If
the server refuses a channel although we stayed under ``max_sessions`` (its
limit is lower, or it frees the slots of closed channels late, as OpenSSH
does), that connection holds no more than it had open for a second, and the
channel is opened elsewhere. A connection that does not answer one of our own
commands in time (see :data:`ANSWER_WAIT`) is *retired*: it takes no new
channels, keeps those open on it, and is closed once they end.

A :class:`HostSet` is the pools of one configuration on one loop. It is
reference-counted: ``task_init`` and each ``sample_init`` hold it, and its
connections are closed when the last one lets go, so nothing outlives the
tasks and samples that use it.
"""

from __future__ import annotations

import asyncio
import functools
import getpass
import logging
import math
import os
import shlex
import time
import weakref
from typing import TYPE_CHECKING, TypeVar

import anyio
import anyio.lowlevel
import asyncssh
import asyncssh.config
from pydantic import ValidationError

from .._errors import HostRefusedError, SandboxUnavailableError
from ._config import (
    DEFAULT_SSH_CONFIG,
    IGNORE_KNOWN_HOSTS,
    SSHConfigError,
    SSHHostConfig,
    SSHSandboxConfig,
)
from ._errors import connecting, is_connection_error, lost_connection, talking
from ._script import mkdtemp_script

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

T = TypeVar("T")

__all__ = [
    "CommandFailedError",
    "HostPool",
    "HostSet",
    "Link",
    "hold",
    "host_set",
    "let_go",
    "proxy_jumps",
]

logger = logging.getLogger("corral.sandbox")

#: Keepalive probes a connection may miss before it is closed.
KEEPALIVE_COUNT_MAX = 3
#: Seconds a host that could not be reached is passed over by new samples
#: (unless every host is down, when all are tried again).
DOWN_FOR = 30.0
#: asyncssh's default ciphers, AES-GCM first: with AES-NI it is the cheapest
#: authenticated cipher for asyncssh to run (chacha20-poly1305, asyncssh's first
#: choice, builds several cipher contexts per packet in Python): about 20 % off
#: the latency of a short command here.
ENCRYPTION_ALGS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes256-ctr",
    "aes192-ctr",
    "aes128-ctr",
)
#: Seconds beyond ``connect_timeout`` that making (or removing) a working
#: directory may take, shielded from cancellation.
WORKDIR_MARGIN = 5.0
#: Seconds a connection whose server refused a channel takes no more than it had open.
REFUSAL_HOLD = 1.0
#: Seconds a connection has to confirm the channel of a kill or a cleanup
#: before it is retired and the command is sent on another (a new one if need
#: be). Loopback answers in about a millisecond; keepalives, which close a
#: dead connection for everyone, take ``keepalive_interval`` times
#: :data:`KEEPALIVE_COUNT_MAX`: far too long for the end of a time limit.
ANSWER_WAIT = 1.0


class CommandFailedError(SandboxUnavailableError):
    """One of our own commands ran and failed (its exit status was not 0): not worth a retry."""


class _NoAnswer(Exception):
    """A connection did not confirm a channel within the time asked for."""


class Link:
    """One SSH connection and the session slots lent out on it."""

    __slots__ = ("capacity", "conn", "gone", "lowered", "lowered_until", "retired", "sessions")

    def __init__(self, conn: asyncssh.SSHClientConnection, capacity: int) -> None:
        self.conn = conn
        self.capacity = capacity
        self.sessions = 0
        #: Found broken by a failed channel, before asyncssh noticed.
        self.gone = False
        #: After a refusal: the capacity to keep to until ``lowered_until``.
        self.lowered = capacity
        self.lowered_until = 0.0
        #: Did not answer in time: no new channels; closed once its last one ends.
        self.retired = False

    def has_room(self, now: float) -> bool:
        if self.retired:
            return False
        limit = self.lowered if now < self.lowered_until else self.capacity
        return self.sessions < limit

    @property
    def closed(self) -> bool:
        return self.gone or self.conn.is_closed()


def _ssh_config_arg(config: SSHSandboxConfig) -> list[str] | tuple[()]:
    """The ``config`` argument of ``asyncssh.connect``: ``()`` reads ``~/.ssh/config``."""
    return [config.config] if config.config is not None else ()


def proxy_jumps(config: SSHSandboxConfig, host: SSHHostConfig) -> list[SSHHostConfig]:
    """The ``ProxyJump`` hosts the ``ssh_config`` gives *host*, in order (none: ``[]``).

    Read as asyncssh reads it, for the host name, port and user corral's
    configuration gives (what it leaves out is the ``ssh_config``'s).

    Raises:
        asyncssh.config.ConfigParseError: The ``ssh_config`` does not parse.
        OSError: It cannot be read.
        SSHConfigError: A ProxyJump entry is not ``[user@]host[:port]``.
        ValueError: The local user name is unknown.
    """
    paths: list[str]
    if config.config is not None:
        paths = [config.config]
    else:
        default = os.path.expanduser(DEFAULT_SSH_CONFIG)
        paths = [default] if os.access(default, os.R_OK) else []
    if not paths:
        return []
    try:
        local_user = getpass.getuser()
    except KeyError:  # as asyncssh.connect reports it
        raise ValueError("unknown local user name: set LOGNAME or USER") from None
    resolved = asyncssh.config.SSHClientConfig.load(
        None,
        paths,
        False,  # reload
        False,  # canonical
        False,  # final
        local_user,
        host.username if host.username is not None else (),
        host.host,
        host.port if host.port is not None else (),
    )
    jumps = resolved.get("ProxyJump")
    if not isinstance(jumps, str) or not jumps:
        return []
    hops = []
    for hop in jumps.split(","):
        try:
            hops.append(SSHHostConfig.model_validate(hop.removeprefix("ssh://")))
        except ValidationError:
            raise SSHConfigError(
                f"invalid ssh sandbox configuration: config: the ProxyJump {jumps!r} for "
                f"{host.label} in {' '.join(paths)}: {hop!r} is not [user@]host[:port]"
            ) from None
    return hops


async def _connect_hop(
    hop: SSHHostConfig,
    label: str,
    config: SSHSandboxConfig,
    tunnel: asyncssh.SSHClientConnection | None,
) -> asyncssh.SSHClientConnection:
    """A connection to the ProxyJump host *hop* of *label*, through *tunnel* (the hop before).

    As OpenSSH does, the hop is reached with the ``ssh_config``'s settings
    for it alone (its ``User``, ``IdentityFile``, ``UserKnownHostsFile``),
    not corral's ``client_keys`` and ``known_hosts``, which are for the
    configured hosts; ``connect_timeout`` and keepalives apply to it too.

    Raises:
        HostRefusedError: The hop's key is not trusted, or it refused the
            keys (the message names the hop and *label*).
        SandboxUnavailableError: The hop cannot be reached.
        SSHConfigError: A local file named for the hop cannot be used.
    """
    where = f"the ProxyJump host {hop.label} of {label}"
    ssh_config = config.config or DEFAULT_SSH_CONFIG
    hop_config = config.model_copy(update={"client_keys": None, "known_hosts": None})
    try:
        with connecting(where, username=hop.username, config=hop_config):
            conn = await asyncssh.connect(
                hop.host,
                hop.port if hop.port is not None else (),
                tunnel=tunnel if tunnel is not None else (),
                username=hop.username if hop.username is not None else (),
                config=_ssh_config_arg(config),
                connect_timeout=config.connect_timeout,
                keepalive_interval=config.keepalive_interval,
                keepalive_count_max=KEEPALIVE_COUNT_MAX,
                encryption_algs=list(ENCRYPTION_ALGS),
            )
    except HostRefusedError as exc:
        cause = exc.__cause__
        if isinstance(cause, asyncssh.HostKeyNotVerifiable):
            raise HostRefusedError(
                f"the host key of {where} is not trusted: {cause.reason}. A ProxyJump host "
                f"is checked against the known_hosts files {ssh_config} names for it "
                "(UserKnownHostsFile, else ~/.ssh/known_hosts), not against known_hosts; "
                "add its key there (ssh-keyscan)"
            ) from cause
        if isinstance(cause, asyncssh.PermissionDenied):
            raise HostRefusedError(
                f"authentication failed at {where}: {cause.reason or 'permission denied'}; "
                f"a ProxyJump host is logged in to with the User and IdentityFile {ssh_config} "
                "gives it (or the agent and ~/.ssh/id_*), not client_keys"
            ) from cause
        raise
    if tunnel is not None:
        conn.set_tunnel(tunnel)  # the hop before is closed with this one
    return conn


def _same(session: asyncssh.SSHClientSession[bytes]) -> asyncssh.SSHClientSession[bytes]:
    return session


async def _start_sftp(link: Link) -> asyncssh.SFTPClient:
    return await link.conn.start_sftp_client()


class _Collect(asyncssh.SSHClientSession[bytes]):
    """The output of one of our own short commands."""

    def __init__(self) -> None:
        self.stdout = b""
        self.stderr = b""
        self.lost: Exception | None = None
        self.closed = asyncio.Event()

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if datatype == asyncssh.EXTENDED_DATA_STDERR:
            self.stderr += data
        else:
            self.stdout += data

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc
        self.closed.set()


class HostPool:
    """Connections to one host, shared by every sandbox placed on it.

    Args:
        host: The host.
        config: The configuration it came from (keys, known_hosts, timeouts).
    """

    def __init__(self, host: SSHHostConfig, config: SSHSandboxConfig) -> None:
        self.host = host
        self.label = host.label
        self._config = config
        self._links: list[Link] = []
        self._opening = asyncio.Lock()
        self._sftp: tuple[Link, asyncssh.SFTPClient] | None = None
        self._sftp_opening = asyncio.Lock()
        #: Sandboxes placed on this host and not yet cleaned up.
        self.sandboxes = 0
        #: ``time.monotonic()`` until which new samples pass this host over.
        self.down_until = 0.0
        self._closed = False

    def __repr__(self) -> str:
        busy = sum(link.sessions for link in self._links)
        return (
            f"<HostPool {self.label} connections={len(self._links)} "
            f"sessions={busy} sandboxes={self.sandboxes}>"
        )

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called."""
        return self._closed

    # -- connections ----------------------------------------------------------------

    async def _connect(self) -> asyncssh.SSHClientConnection:
        """A new connection, through the host's ProxyJump hosts if it has any.

        Options corral's configuration leaves unset (the port, the user, the
        keys, the known_hosts files) are the ``ssh_config``'s, as asyncssh
        reads them. The ProxyJump hosts are connected to here, one by one,
        rather than by asyncssh, so that a failure names the hop at fault.
        A failure or a cancellation closes the hops opened so far; a host
        that cannot be reached (directly or through its hops) is passed
        over for :data:`DOWN_FOR` seconds.
        """
        config = self._config
        known_hosts: object = () if config.known_hosts is None else config.known_hosts
        if config.known_hosts == IGNORE_KNOWN_HOSTS:
            known_hosts = None
        tunnel: asyncssh.SSHClientConnection | None = None
        try:
            with connecting(self.label, username=self.host.username, config=config):
                hops = proxy_jumps(config, self.host)
            for hop in hops:
                tunnel = await _connect_hop(hop, self.label, config, tunnel)
            with connecting(self.label, username=self.host.username, config=config):
                conn = await asyncssh.connect(
                    self.host.host,
                    self.host.port if self.host.port is not None else (),
                    tunnel=tunnel if tunnel is not None else (),
                    username=self.host.username if self.host.username is not None else (),
                    client_keys=config.client_keys if config.client_keys is not None else (),
                    known_hosts=known_hosts,
                    config=_ssh_config_arg(config),
                    connect_timeout=config.connect_timeout,
                    keepalive_interval=config.keepalive_interval,
                    keepalive_count_max=KEEPALIVE_COUNT_MAX,
                    encryption_algs=list(ENCRYPTION_ALGS),
                )
        except BaseException as exc:
            if tunnel is not None:
                tunnel.close()  # and the hops before it (each holds the one it went through)
            if isinstance(exc, SandboxUnavailableError) and not isinstance(exc, HostRefusedError):
                self.down_until = time.monotonic() + DOWN_FOR
            raise
        if tunnel is not None:
            conn.set_tunnel(tunnel)  # closed with the connection
        return conn

    def _free_link(self) -> Link | None:
        best: Link | None = None
        live = []
        now = time.monotonic()
        for link in self._links:
            if link.closed:
                continue
            live.append(link)
            if link.has_room(now) and (best is None or link.sessions < best.sessions):
                best = link
        if len(live) != len(self._links):
            self._links = live
        return best

    async def acquire(self) -> Link:
        """Take a session slot on a connection with room, opening one if needed.

        Raises:
            SandboxUnavailableError: The host cannot be reached.
            HostRefusedError: The host key is not trusted, or our keys were refused.
        """
        if self._closed:
            raise SandboxUnavailableError(f"the connections to {self.label} have been closed")
        link = self._free_link()
        if link is None:
            async with self._opening:
                link = self._free_link()
                if link is None:
                    link = Link(await self._connect(), self.host.max_sessions)
                    if self.closed:  # closed while we connected
                        link.conn.close()
                        raise SandboxUnavailableError(
                            f"the connections to {self.label} have been closed"
                        )
                    self._links.append(link)
                    self.down_until = 0.0
        link.sessions += 1
        return link

    async def ensure_connected(self) -> None:
        """Make sure a connection is open (connecting if need be), taking no slot.

        Raises:
            SandboxUnavailableError: The host cannot be reached.
            HostRefusedError: The host key is not trusted, or our keys were refused.
        """
        self.release(await self.acquire())

    def release(self, link: Link) -> None:
        """Give back a slot taken by :meth:`acquire`; a retired connection left idle is closed."""
        link.sessions -= 1
        if link.retired and link.sessions == 0:
            link.conn.close()

    def retire(self, link: Link, what: str, waited: float) -> None:
        """*link* did not answer *what* within *waited* seconds: open no more channels on it.

        The channels open on it keep it (they may yet finish, or keepalives
        close it); it is closed once the last of them is released.
        """
        if link.retired:
            return
        link.retired = True
        logger.warning(
            "%s did not answer %s within %g s; opening no more channels on that connection",
            self.label,
            what,
            waited,
        )
        if link.sessions == 0:
            link.conn.close()

    def refused(self, link: Link) -> None:
        """The server refused a channel on *link* (slot given back) while others were open.

        Either its ``MaxSessions`` is lower than ``max_sessions``, or (as
        OpenSSH does) it has not yet freed the slots of channels just closed:
        *link* takes no more than it has open for :data:`REFUSAL_HOLD` seconds.
        """
        link.lowered = max(1, link.sessions)
        link.lowered_until = time.monotonic() + REFUSAL_HOLD
        logger.debug(
            "%s refused a channel with %d open on the connection; holding it at %d for %g s",
            self.label,
            link.sessions,
            link.lowered,
            REFUSAL_HOLD,
        )

    async def sftp(self) -> asyncssh.SFTPClient:
        """The host's SFTP client, started on first use; it holds one slot while open.

        Raises:
            SandboxUnavailableError: The host cannot be reached.
        """
        current = self._sftp
        if current is not None and not current[0].closed:
            return current[1]
        async with self._sftp_opening:
            current = self._sftp
            if current is not None and not current[0].closed:
                return current[1]
            if current is not None:
                self.release(current[0])
                self._sftp = None
            with talking(self.label, "starting SFTP"):
                link, client = await self._open_on_live_link(_start_sftp)
            self._sftp = (link, client)
            return client

    def drop_sftp(self, client: asyncssh.SFTPClient) -> None:
        """*client*'s session has ended: the next :meth:`sftp` starts another."""
        current = self._sftp
        if current is not None and current[1] is client:
            self._sftp = None
            self.release(current[0])
            client.exit()

    async def open_session(
        self,
        session: asyncssh.SSHClientSession[bytes],
        command: str,
        what: str,
        *,
        answer_within: float | None = None,
    ) -> tuple[Link, asyncssh.SSHClientChannel[bytes]]:
        """Open a channel running *command*, its events going to *session*.

        The slot taken stays taken until :meth:`release`. A channel refused
        while others are open on the connection lowers its capacity and is
        tried again elsewhere; see :meth:`_open_on_live_link` for a
        connection found gone. With *answer_within*, a connection that has
        not confirmed the channel and the command in that many seconds is
        retired (:meth:`retire`) and the next one tried: only for commands
        of ours that are harmless to start twice (kills, cleanups).

        Raises:
            SandboxUnavailableError: The host cannot be reached (naming it and *what*).
        """

        async def open_channel(link: Link) -> asyncssh.SSHClientChannel[bytes]:
            # Shielded: a channel cancelled half-open could start the command
            # unseen. The caller's next checkpoint delivers the cancellation,
            # with the channel in hand to clean up. Only *answer_within* ends
            # the wait early, and the connection is retired then.
            with anyio.CancelScope(shield=True):
                with anyio.move_on_after(
                    math.inf if answer_within is None else answer_within
                ) as bound:
                    chan, _ = await link.conn.create_session(
                        functools.partial(_same, session), command, encoding=None
                    )
            if bound.cancelled_caught:
                raise _NoAnswer
            return chan

        with talking(self.label, what):
            return await self._open_on_live_link(
                open_channel, what, 0.0 if answer_within is None else answer_within
            )

    async def _open_on_live_link(
        self, open: Callable[[Link], Awaitable[T]], what: str = "", waited: float = 0.0
    ) -> tuple[Link, T]:
        """Take a slot and *open* a channel on its connection; the slot stays taken.

        A connection the server dropped may look open until asyncssh has
        cleaned it up, a loop iteration later. Opening fails on it before
        anything runs, so that is safe to try again: on each other connection
        (each may be gone as well), then on a new one. A refusal by a live server with other
        channels open lowers that connection's capacity (:meth:`refused`),
        and the next connection is tried; so is one that did not answer
        (*open* raised :class:`_NoAnswer` after *waited* seconds), once retired.

        Raises:
            OSError, asyncssh.Error: As *open* raised them, for the caller to map.
            SandboxUnavailableError: The host cannot be reached.
        """
        tries_left = len(self._links) + 1
        while True:
            link = await self.acquire()
            try:
                return link, await open(link)
            except _NoAnswer:
                self.release(link)
                self.retire(link, what, waited)
                tries_left -= 1
                if tries_left > 0:
                    continue
                raise SandboxUnavailableError(
                    f"{self.label} did not answer {what} within {waited:g} s"
                ) from None
            except (OSError, asyncssh.Error) as exc:
                self.release(link)
                if isinstance(exc, asyncssh.ChannelOpenError) and not link.closed:
                    # On a connection whose socket has just closed, asyncssh fails
                    # the channel at once (as OpenSSH's own refusal reads) and has
                    # queued its cleanup on the loop, which marks it closed: let it run.
                    await asyncio.sleep(0)
                if is_connection_error(exc) or link.closed:
                    link.gone = True
                    link.conn.close()  # gone already; closing it frees what asyncssh holds
                    tries_left -= 1
                    if tries_left > 0:
                        continue
                elif isinstance(exc, asyncssh.ChannelOpenError) and link.sessions > 0:
                    self.refused(link)
                    continue
                raise
            except BaseException:
                self.release(link)
                raise

    async def run(self, command: str, what: str, *, answer_within: float | None = None) -> str:
        """Run a short *command* of our own (mktemp, cleanup, kill) and return its stdout.

        *answer_within* is passed to :meth:`open_session`.

        Raises:
            SandboxUnavailableError: The host cannot be reached.
            CommandFailedError: The command failed (the message has its stderr).
        """
        session = _Collect()
        link, chan = await self.open_session(session, command, what, answer_within=answer_within)
        try:
            chan.write_eof()
            await session.closed.wait()
        finally:
            if not session.closed.is_set():
                chan.close()  # cancelled: abandon the channel, not the connection
            self.release(link)
        if session.lost is not None:
            raise lost_connection(self.label, what, session.lost)
        status = chan.get_returncode()
        if status != 0:
            raise CommandFailedError(
                f"{what} failed on {self.label} (exit status {status}): "
                f"{session.stderr.decode('utf-8', 'replace').strip()}"
            )
        return session.stdout.decode("utf-8", "replace")

    async def aclose(self) -> None:
        """Close every connection; later calls to :meth:`acquire` fail."""
        self._closed = True
        links, self._links = self._links, []
        self._sftp = None
        for link in links:
            link.conn.close()
        for link in links:
            await link.conn.wait_closed()


class HostSet:
    """The host pools of one configuration on one event loop."""

    def __init__(self, config: SSHSandboxConfig, key: str) -> None:
        self.config = config
        self.key = key
        self.pools = [HostPool(host, config) for host in config.hosts]
        self.holders = 0
        self._slot_freed = asyncio.Event()

    def _candidates(self) -> list[HostPool]:
        """Hosts with a free sandbox slot, up first, then least loaded, then in order."""
        now = time.monotonic()
        free = [
            pool
            for pool in self.pools
            if pool.host.max_sandboxes is None or pool.sandboxes < pool.host.max_sandboxes
        ]
        up = [pool for pool in free if pool.down_until <= now]
        down = [pool for pool in free if pool.down_until > now]
        return sorted(up, key=lambda pool: pool.sandboxes) + sorted(
            down, key=lambda pool: pool.down_until
        )

    async def place(self) -> tuple[HostPool, str]:
        """Pick the least loaded reachable host and make a working directory there.

        Waits while every host is at its ``max_sandboxes``. A host that
        cannot be reached is passed over for :data:`DOWN_FOR` seconds and
        the next one is tried.

        Returns:
            The host's pool (its sandbox count already taken) and the
            directory's absolute path.

        Raises:
            SandboxUnavailableError: No host could be reached; the message
                has each host's reason.
            HostRefusedError: A host's key is not trusted, or it refused our keys.
        """
        while True:
            candidates = self._candidates()
            if not candidates:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            failures: list[str] = []
            for pool in candidates:
                pool.sandboxes += 1
                try:
                    output = await self._make_workdir(pool)
                except HostRefusedError:
                    self.release(pool)
                    raise
                except SandboxUnavailableError as exc:
                    self.release(pool)
                    failures.append(str(exc))
                    continue
                except BaseException:
                    self.release(pool)
                    raise
                workdir = output.strip()
                if not workdir.startswith("/"):
                    self.release(pool)
                    raise SandboxUnavailableError(
                        f"mktemp on {pool.label} printed {workdir!r}, not a directory"
                    )
                return pool, workdir
            raise SandboxUnavailableError("no ssh host could be reached: " + "; ".join(failures))

    async def _make_workdir(self, pool: HostPool) -> str:
        """Run ``mktemp -d`` on *pool*'s host; its output.

        Connecting may be cancelled; the command itself runs shielded (and
        bounded), so that a cancellation cannot leave a directory nobody
        knows of: a directory made before a pending cancellation is removed.
        """
        await pool.ensure_connected()
        what = "creating the working directory"
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(self.config.connect_timeout + WORKDIR_MARGIN) as bound:
                output = await pool.run(mkdtemp_script(self.config.workdir_base), what)
            if bound.cancelled_caught:
                raise SandboxUnavailableError(f"{what} on {pool.label} did not finish in time")
        try:
            await anyio.lowlevel.checkpoint()
        except BaseException:
            with anyio.CancelScope(shield=True), anyio.move_on_after(WORKDIR_MARGIN):
                await pool.run(f"rm -rf -- {shlex.quote(output.strip())}", "removing it again")
            raise
        return output

    async def connect_all(self) -> None:
        """Connect to every host at once (each within ``connect_timeout``), for ``task_init``.

        A configuration error surfaces here, once, rather than in every
        sample. Hosts that cannot be reached are logged and passed over by
        new samples for :data:`DOWN_FOR` seconds, as long as one host is up.

        Raises:
            HostRefusedError: A host's key is not trusted, or it refused our keys.
            SandboxUnavailableError: No host could be reached; the message
                has each host's reason.
        """
        failures: dict[HostPool, SandboxUnavailableError] = {}

        async def connect(pool: HostPool) -> None:
            try:
                await pool.ensure_connected()
            except SandboxUnavailableError as exc:
                failures[pool] = exc

        async with anyio.create_task_group() as tg:
            for pool in self.pools:
                tg.start_soon(connect, pool)
        for pool in self.pools:  # the first refusal, in the configuration's order
            refusal = failures.get(pool)
            if isinstance(refusal, HostRefusedError):
                raise refusal
        if failures and len(failures) == len(self.pools):
            raise SandboxUnavailableError(
                "no ssh host could be reached: " + "; ".join(str(e) for e in failures.values())
            )
        for pool, exc in failures.items():
            logger.warning("ssh host %s is down for now: %s", pool.label, exc)

    def release(self, pool: HostPool) -> None:
        """A sandbox placed on *pool* is gone."""
        pool.sandboxes -= 1
        self._slot_freed.set()

    async def aclose(self) -> None:
        for pool in self.pools:
            await pool.aclose()


_sets: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, HostSet]] = (
    weakref.WeakKeyDictionary()
)


def host_set(config: SSHSandboxConfig) -> HostSet:
    """The running loop's :class:`HostSet` for *config*, created on first use (not held)."""
    loop = asyncio.get_running_loop()
    sets = _sets.setdefault(loop, {})
    key = config.model_dump_json()
    found = sets.get(key)
    if found is None:
        found = sets[key] = HostSet(config, key)
    return found


def hold(config: SSHSandboxConfig) -> HostSet:
    """Take a hold on *config*'s host set on the running loop."""
    hosts = host_set(config)
    hosts.holders += 1
    return hosts


async def let_go(hosts: HostSet) -> None:
    """Drop a hold; the last one closes the connections."""
    hosts.holders -= 1
    if hosts.holders > 0:
        return
    sets = _sets.get(asyncio.get_running_loop(), {})
    if sets.get(hosts.key) is hosts:
        del sets[hosts.key]
    await hosts.aclose()
