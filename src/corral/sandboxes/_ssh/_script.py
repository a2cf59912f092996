"""The shell scripts the ``"ssh"`` sandbox sends to a host.

SSH sends a command as one string for the login shell, so each argument is
quoted here (:func:`shlex.quote`: single quotes, nothing inside interpreted)
and nothing the caller gives is ever spliced into a script unquoted. The
scripts use POSIX ``sh`` only, so the user's login shell must be
POSIX-compatible (sh, dash, bash, ksh, zsh).

An exec script first prints one header line on stdout,
``corral-exec <pid> <pgid> <status>``, then ``exec``\\ s the command, so the
command keeps the shell's process id. OpenSSH makes each session's command
a session leader, so ``pgid`` equals ``pid`` and the whole process group can
be killed on a timeout or a cancellation; on a server that does not,
``pgid`` is the shell's group and only ``pid`` is killed. ``status`` is
``ok``, or why the command was not started (see :data:`STATUSES`); the
checks are shell builtins, so they cost no extra process.

Environment values never go on a command line: any user can read every
process's ``/proc/PID/cmdline``, and asyncssh logs the exec request's command.
The variables travel on the command's stdin instead, as one line of shell
(:func:`export_line`) sent before the input; the script reads and evaluates it
before it ``exec``\\ s the command (through sudo, a ``/bin/sh`` run as the other
user does, see :func:`env_reader_argv`). Only the sandbox's tag, which is not
secret and by which cleanup finds the command, stays on the command line.

sshd does not kill a session's command when the connection drops, so
before the ``exec`` the script leaves a watcher in the command's group that
kills it once its channel or connection is gone (see :func:`_watcher`):
commands die with the harness that started them, even a SIGKILLed one.
"""

from __future__ import annotations

import re
import shlex
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "HEADER",
    "STATUSES",
    "TAG_VARIABLE",
    "cleanup_script",
    "count_script",
    "env_reader_argv",
    "exec_script",
    "export_line",
    "kill_script",
    "mkdtemp_script",
]

#: The first word of the header line an exec script prints.
HEADER = b"corral-exec"

#: Every process an ssh sandbox starts carries ``CORRAL_SSH_SANDBOX=<token>``;
#: cleanup finds the sample's leftovers by it.
TAG_VARIABLE = "CORRAL_SSH_SANDBOX"

#: Header statuses other than ``ok``: the reason the command did not start.
STATUSES = {
    "nocwd": "the working directory does not exist",
    "notdir": "the working directory is not a directory",
    "cwdperm": "the working directory cannot be entered",
    "noprog": "the program was not found",
    "noexec": "the program is not an executable file",
    "nosudo": "the command cannot be run as that user (sudo -n refused or missing)",
}

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

_q = shlex.quote

#: Reads the line :func:`export_line` sent into ``e``, without reading past it
#: (``read`` takes a pipe's bytes one at a time), and sets ``n`` to the newline
#: that line refers to. Nothing is evaluated yet.
_READ_ENV = (
    "n='\n'; IFS= read -r e || "
    "{ echo 'corral: the environment did not arrive on stdin' >&2; exit 125; }"
)


def export_line(env: Mapping[str, str]) -> bytes:
    """One line of shell that exports *env*, sent on the command's stdin before its input.

    Each value is single-quoted, and each newline in it is written
    ``'"$n"'`` (the reader sets ``n`` to a newline), so the line holds one
    newline, at its end, whatever the values hold. The shell expands every
    argument of ``export`` before it assigns any, so a variable of *env*
    named ``n`` or ``e`` does not change what the others get. Encoded as
    UTF-8, lone surrogates as the bytes they stand for (as in ``argv``).

    Raises:
        ValueError: A name is not a shell variable name, or a value holds
            NUL (the sandbox proxy refuses both before this).
    """
    words = []
    for key, value in env.items():
        if not _NAME.match(key):
            raise ValueError(f"env key {key!r} is not a shell variable name")
        if "\0" in value:
            raise ValueError(f"env[{key!r}] holds NUL")
        quoted = value.replace("'", "'\\''").replace("\n", "'\"$n\"'")
        words.append(f"{key}='{quoted}'")
    return ("export " + " ".join(words) + "\n").encode("utf-8", "surrogateescape")


def env_reader_argv(argv: list[str], *, tags: Mapping[str, str], stdin: bool) -> list[str]:
    """*argv* behind a ``/bin/sh`` that first reads and exports the :func:`export_line` line.

    For a command run through ``sudo``, which resets the environment: the
    shell exports *tags* (names and values that are not secret: they are on
    its command line), reads the line from its stdin, evaluates it and
    ``exec``\\ s *argv* (looked up in the new ``PATH``) with the rest of
    stdin, or with ``/dev/null`` without *stdin*. It replaces the ``env``
    that set the variables before, so it costs no extra ``execve``; the
    shell itself, until it ``exec``\\ s, carries no tag.
    """
    exports = " ".join(f"{key}={_q(value)}" for key, value in tags.items())
    script = (
        (f"export {exports}; " if exports else "")
        + f'{_READ_ENV}; eval "$e"; exec "$@"'
        + ("" if stdin else " </dev/null")
    )
    return ["/bin/sh", "-c", script, "sh", *argv]


def exec_script(
    argv: list[str],
    *,
    cwd: str,
    env: Mapping[str, str],
    tag: str,
    user: str | None,
    stdin: bool = True,
) -> str:
    """The script that checks *cwd*, *argv[0]* and *user*, prints the header and runs *argv*.

    *env* holds shell variable names and no NUL (the sandbox proxy checked
    it); *tag* is the sandbox's token. The script holds no value of *env*:
    when *env* is not empty, the caller sends :func:`export_line` ``(env)``
    on the channel first, then the input (if any). Without *stdin*, the
    command reads ``/dev/null`` (as a local command given no input does),
    and the channel needs no EOF from us.

    Before it ``exec``\\ s the command, the script starts a watcher (see
    :func:`_watcher`) that kills the command's group once the channel or the
    connection is gone. It watches the channel itself only when nothing but
    us reads it after that: not when the command reads its input, nor when
    the shell that reads the variables for another user is still to start.
    """
    cwd_q = _q(cwd)
    lines = [
        "s=ok g=0 t= u=" + ("" if user is None else _q(user)),
        # Our group, and our start time (which exec keeps): the watcher's check
        # that the pid still names the command.
        "{ read -r l </proc/$$/stat; } 2>/dev/null && { set -- ${l##*) }; g=$3 t=${20}; }",
        f"if ! cd -- {cwd_q} 2>/dev/null; then "
        f"if [ ! -e {cwd_q} ]; then s=nocwd; elif [ ! -d {cwd_q} ]; then s=notdir; "
        "else s=cwdperm; fi",
    ]
    command = " ".join(_q(arg) for arg in argv) + ("" if stdin else " </dev/null")
    program = _q(argv[0])
    channel = not stdin
    if user is None:
        if "/" in argv[0]:
            lines.append(
                f"elif [ ! -e {program} ]; then s=noprog; "
                f"elif [ -d {program} ] || [ ! -x {program} ]; then s=noexec"
            )
        else:
            lines.append(f"elif ! command -v {program} >/dev/null 2>&1; then s=noprog")
        lines.append("fi")
        # Evaluated after the watcher has forked: it carries neither the tag nor the values.
        run = f"export {TAG_VARIABLE}={tag}; " + ('eval "$e"; ' if env else "") + f"exec {command}"
    else:
        # sudo resets the environment: ``env`` puts the tag back, or a shell
        # run as the user exports it and reads the variables.
        lines.append(f"elif ! sudo -n -u {_q(user)} true >/dev/null 2>&1; then s=nosudo")
        lines.append("fi")
        if env:
            reader = env_reader_argv(argv, tags={TAG_VARIABLE: tag}, stdin=stdin)
            run = f"exec sudo -n -u {_q(user)} -- " + " ".join(_q(arg) for arg in reader)
            channel = False  # the watcher would race that shell for the line
        else:
            run = f"exec sudo -n -u {_q(user)} -- env {TAG_VARIABLE}={tag} {command}"
    lines.append(f'printf \'{HEADER.decode()} %s %s %s\\n\' "$$" "$g" "$s"')
    lines.append('[ "$s" = ok ] || exit 0')
    if env and user is None:
        lines.append(_READ_ENV)  # before the watcher forks, so that it cannot read the line
    lines.append(_watcher(channel=channel))
    lines.append(run)
    return "\n".join(lines)


#: Seconds between the checks of a watcher that cannot read the channel.
WATCH_POLL = 1.0
#: Seconds a watcher gives the command between SIGTERM and SIGKILL.
WATCH_GRACE = 2.0


def _watcher(*, channel: bool) -> str:
    """The line that starts the watcher of the command about to be ``exec``\\ ed.

    sshd does not kill a session's command when the connection drops (unless
    it has a pty), so the script leaves a watcher behind: a subshell, forked
    twice so that the command has no extra child, with its output on
    ``/dev/null`` (it never holds the channel open) and without the sandbox's
    tag (cleanup does not count it). It stays in the command's process group,
    so that killing the group (:func:`kill_script`, :func:`cleanup_script`)
    kills it too: it does not ignore SIGTERM until it fires.

    With *channel* (the command reads ``/dev/null``, and we never send EOF),
    it blocks reading the channel's stdin, which ends when sshd closes it:
    when the command has exited, or the channel or the connection is gone.
    Otherwise (the command reads the channel) it checks every
    :data:`WATCH_POLL` seconds whether the command has exited or lost its
    parent, the sshd session process.

    It fires when the command (pid ``$c``, start time ``$t``) is still alive
    then: SIGTERM to its group (only to it when it does not lead one), the
    same through ``sudo -n -u $u`` for a command run as another user, up to
    :data:`WATCH_GRACE` seconds for the group to go, then SIGKILL, which
    ends the watcher too.
    """
    alive = (
        "alive() { { read -r l </proc/$c/stat; } 2>/dev/null || return 1; set -- ${l##*) }; "
        'q=$2; [ "$1" != Z ] && [ "${20}" = "$t" ]; }'
    )
    # The members of the group but the watcher itself (its own children are reaped by then).
    others = (
        'others() { [ "$k" = "$c" ] && { alive; return; }; for d in /proc/[0-9]*; do '
        '[ "$d" = /proc/$m ] && continue; { read -r l <"$d/stat"; } 2>/dev/null || continue; '
        'set -- ${l##*) }; [ "$3" = "$g" ] && [ "$1" != Z ] && return 0; done; return 1; }'
    )
    as_user = 'sudo -n -u "$u" /bin/sh -c \'kill -s "$0" -- "$1"\' '
    fire = " ".join(
        [
            "trap '' TERM;",
            "{ read -r m _ </proc/self/stat; } 2>/dev/null;",
            'k=$c; [ "$g" = "$c" ] && k=-$c;',
            'kill -s TERM -- "$k" 2>/dev/null;',
            f'[ -z "$u" ] || {as_user}TERM "$k" 2>/dev/null;',
            f"i={round(WATCH_GRACE / 0.1)};",
            "while [ $i -gt 0 ] && others; do sleep 0.1; i=$((i-1)); done;",
            f'[ -z "$u" ] || {as_user}KILL "$k" 2>/dev/null;',
            'kill -s KILL -- "$k" 2>/dev/null',
        ]
    )
    if channel:
        wait = "while read -r _; do :; done; alive || exit 0"
        fd = "<&3 3<&-"
    else:
        wait = f'while alive && [ "$q" = "$p" ]; do sleep {WATCH_POLL:g}; done; alive || exit 0'
        fd = "</dev/null 3<&-"
    return f"c=$$ p=$PPID; ( ( {alive}; {others}; {wait}; {fire} ) {fd} >/dev/null 2>&1 & ) 3<&0"


def kill_script(pid: int, pgid: int, grace: float, user: str | None = None) -> str:
    """SIGTERM the command's group (or the command), SIGKILL what is left after *grace* seconds.

    Returns once no member of the group is alive. Zombies do not count: an
    orphan whose parent died is reparented to PID 1, which in a container
    may never reap it, and ``kill -0`` would find it forever. For a command
    run as another *user*, SIGKILL also goes through ``sudo -n -u USER``:
    sudo passes SIGTERM on, but a command that ignores it is not ours to kill
    once sudo is gone.
    """
    if pgid == pid:
        target = f"-{pgid}"
        # ``kill -0`` first, for the usual case of an empty group; not for
        # another user's command, whose group ``kill -0`` cannot reach.
        first = "" if user is not None else "kill -s 0 -- " + target + " 2>/dev/null || return 1\n"
        alive = (
            "alive() { " + first + "  for d in /proc/[0-9]*; do\n"
            '    { read -r l <"$d/stat"; } 2>/dev/null || continue\n'
            '    set -- ${l##*) }; [ "$3" = ' + str(pgid) + ' ] && [ "$1" != Z ] && return 0\n'
            "  done; return 1; }"
        )
    else:
        target = str(pid)
        alive = (
            f"alive() {{ kill -s 0 -- {pid} 2>/dev/null; }}"
            if user is None
            else f"alive() {{ [ -e /proc/{pid} ]; }}"
        )
    kill = f"kill -s KILL -- {target} 2>/dev/null"
    if user is not None:
        kill = (
            f"sudo -n -u {_q(user)} /bin/sh -c 'kill -s KILL -- \"$0\"' {target} 2>/dev/null; "
            + kill
        )
    steps = max(1, round(grace / 0.02))
    return "\n".join(
        [
            alive,
            f"kill -s TERM -- {target} 2>/dev/null || alive || exit 0",
            "i=0",
            "while alive; do",
            f"  if [ $i -ge {steps} ]; then {kill}; break; fi",
            "  sleep 0.02; i=$((i+1))",
            "done",
            # SIGKILL is not instant on a loaded host: return once it has taken (at most 5 s).
            "i=0; while [ $i -lt 250 ] && alive; do sleep 0.02; i=$((i+1)); done",
        ]
    )


def mkdtemp_script(base: str) -> str:
    """Create and print a private working directory under *base*."""
    return f"mktemp -d {_q(base.rstrip('/') + '/corral-sandbox-XXXXXXXX')}"


def count_script(tag: str) -> str:
    """Print how many live processes carry the sandbox tag *tag* (read from ``/proc``).

    As for :func:`cleanup_script`, processes of other users cannot be read
    and are not counted.
    """
    return (
        f"t={_q(f'{TAG_VARIABLE}={tag}')}\n"
        'grep -lsxzF -e "$t" /proc/[0-9]*/environ 2>/dev/null | wc -l'
    )


def cleanup_script(workdir: str, tag: str) -> str:
    """Kill every process tagged *tag* (with its group), remove *workdir*, print the count killed.

    Processes are found by their environment in ``/proc`` (Linux); a
    process running as another user (through sudo) cannot be read, and is
    not found.
    """
    return "\n".join(
        [
            f"t={_q(f'{TAG_VARIABLE}={tag}')} n=0",
            "for r in 1 2 3; do",
            "  found=0",
            # One grep for all of /proc (not one per process: 50 cleanups at once
            # on a host with 300 processes would start 15,000 of them).
            '  for d in $(grep -lsxzF -e "$t" /proc/[0-9]*/environ 2>/dev/null); do',
            '    d=${d%/environ}; p=${d#/proc/}; [ "$p" = $$ ] && continue',
            "    found=1 n=$((n+1)) g=",
            '    { read -r l <"$d/stat"; } 2>/dev/null && { set -- ${l##*) }; g=$3; }',
            '    [ -n "$g" ] && [ "$g" != 1 ] && kill -s KILL -- "-$g" 2>/dev/null',
            '    kill -s KILL -- "$p" 2>/dev/null',
            "  done",
            '  [ "$found" = 0 ] && break',
            "done",
            f"rm -rf -- {_q(workdir)}",
            'echo "$n"',
        ]
    )
