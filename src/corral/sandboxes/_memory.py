"""An in-memory sandbox for tests: files in a dict, a handful of builtin commands.

Like ``httpx.MockTransport``, :class:`MemorySandboxEnvironment` lets tests of
code that uses sandboxes (the lifecycle, ``sandbox_with``, the proxy) run
without processes or a file system, fast and deterministically. Its public
home is :mod:`corral.sandboxes.testing` (this module's path keeps working);
pytest's ``corral_memory_sandbox`` fixture gives a test one (see
``docs/testing.md``). It is not registered by default; register it where
needed::

    register_sandbox("memory", "corral.sandboxes.testing:MemorySandboxEnvironment")

Paths are POSIX paths; a relative path is resolved in ``/work``. Directories
exist implicitly, as the parents of the files. ``exec`` understands:

* ``true``, ``false``;
* ``echo [ARGS...]``;
* ``printf FORMAT [ARGS...]`` (``%s`` and ``%%``; ``\\n``, ``\\t``, ``\\\\`` and
  octal ``\\NNN`` escapes; the format is reused while arguments remain);
* ``printenv NAME`` (the value from the call's *env*: there is no other);
* ``pwd``;
* ``cat`` (stdin to stdout) and ``cat FILE...``;
* ``test -r FILE`` / ``test -e FILE`` / ``test -f FILE`` / ``test -d DIR``;
* ``which PROGRAM`` (a builtin, or a file in ``/bin``, ``/usr/bin``,
  ``/usr/local/bin``);
* ``sleep SECONDS`` (``anyio.sleep``, so virtual clocks apply);
* ``exit CODE``;
* ``yes [STRING...]``, which writes for ever, as ``yes`` does, until the
  exec output limit stops it;
* ``sh -c SCRIPT``, where *SCRIPT* is a list of these commands separated by
  ``;`` (words split and quotes removed as ``shlex`` does; no expansions,
  redirections, pipes or background jobs), run one after the other.

Anything else exits with 127 and ``"<name>: command not found"`` on stderr.
Like a third-party provider, it leaves the contract's rules to the sandbox
proxy (argument checks, ``timeout=``, the output limits) and returns plain
results, with one exception: ``yes`` and ``sh`` write their output as they
go into the proxy's buffers (see :mod:`~corral.sandboxes._calls`), as the
built-in providers do, so a timeout keeps what they printed and the exec
output limit stops an endless writer. Commands in flight are listed in
:attr:`MemorySandboxEnvironment.running` until they finish or are cancelled.
After ``sample_cleanup`` every call raises
:class:`~corral.util.SandboxUnavailableError`.

Configuration (``SandboxEnvironmentSpec("memory", config)``): ``None`` for one
environment named ``"default"``; a list of names for one empty environment
each (the first is the default); or a dict of name -> initial files.
"""

from __future__ import annotations

import dataclasses
import errno
import posixpath
import re
import shlex
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal, overload

import anyio
import anyio.lowlevel

from .._process._subprocess import ExecResult
from ._calls import ExecCall, exec_call
from ._environment import SandboxConnection, SandboxEnvironment
from ._errors import SandboxUnavailableError

__all__ = ["MemorySandboxEnvironment"]

_HOME = "/work"
_PATH_DIRS = ("/bin", "/usr/bin", "/usr/local/bin")
_BUILTINS = frozenset(
    {
        "true",
        "false",
        "echo",
        "printf",
        "printenv",
        "pwd",
        "cat",
        "test",
        "which",
        "sleep",
        "exit",
        "yes",
        "sh",
    }
)
#: The builtins that write into the proxy's buffers as they go.
_STREAMING = frozenset({"yes", "sh"})
#: Bytes ``yes`` writes between checkpoints.
_YES_CHUNK = 64 * 1024
#: ``printf``'s escapes and conversions.
_PRINTF = re.compile(r"\\([0-7]{1,3}|.)|%(.)|\\$", re.DOTALL)
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", "a": "\a", "r": "\r"}


@dataclasses.dataclass
class _Run:
    """What one builtin runs with: its input, directory, variables and output sinks."""

    stdin: bytes
    cwd: str
    env: Mapping[str, str]
    out: Callable[[bytes], object]
    err: Callable[[bytes], object]
    call: ExecCall | None  # the proxy's call, for the streaming builtins


class MemorySandboxEnvironment(SandboxEnvironment):
    """A sandbox whose files live in a dict and whose commands are Python builtins.

    Args:
        files: Initial files, path -> contents (``str`` is stored as UTF-8).

    Attributes:
        files: The files, absolute path -> bytes (tests may read and change it).
        commands: Every command passed to :meth:`exec`, in order.
        closed: Whether ``sample_cleanup`` released this environment.
        running: The commands of every memory environment that are running
            now (the "processes" of the one host they all share), each
            removed when its ``exec`` returns, raises or is cancelled.
    """

    running: ClassVar[list[list[str]]] = []

    def __init__(self, files: Mapping[str, str | bytes] | None = None) -> None:
        self.files: dict[str, bytes] = {}
        self.commands: list[list[str]] = []
        self.closed = False
        for path, contents in (files or {}).items():
            self.files[self._resolve(path)] = (
                contents.encode("utf-8") if isinstance(contents, str) else contents
            )

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<MemorySandboxEnvironment {state}, {len(self.files)} files>"

    @staticmethod
    def _resolve(path: str, cwd: str = _HOME) -> str:
        return posixpath.normpath(posixpath.join(cwd, path))

    def _is_dir(self, path: str) -> bool:
        if path == "/":
            return True
        prefix = path.rstrip("/") + "/"
        return any(name.startswith(prefix) for name in self.files)

    def _check_open(self) -> None:
        if self.closed:
            raise SandboxUnavailableError("the memory sandbox was cleaned up")

    def _read(self, file: str, cwd: str = _HOME) -> bytes:
        path = self._resolve(file, cwd)
        if path in self.files:
            return self.files[path]
        if self._is_dir(path):
            raise IsADirectoryError(errno.EISDIR, "Is a directory", file)
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", file)

    async def exec(
        self,
        cmd: list[str],
        input: str | bytes | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        user: str | None = None,
        timeout: int | float | None = None,
        timeout_retry: bool = True,
        concurrency: bool = True,
    ) -> ExecResult[str]:
        """Run a builtin command (see the module docs); *user* and *timeout* are ignored.

        *concurrency* is ignored too: nothing runs as a process, so there is
        no limit to take a slot of.

        *env* is the whole environment of the command (``printenv`` reads it).

        Raises:
            SandboxUnavailableError: The environment was cleaned up.

        **Cancellation:** the command stops at once (it is a coroutine of this
        process) and leaves :attr:`running`; the cancellation propagates.
        """
        await anyio.lowlevel.checkpoint()
        self._check_open()
        argv = list(cmd)
        self.commands.append(argv)
        stdin = input.encode("utf-8") if isinstance(input, str) else (input or b"")
        workdir = self._resolve(cwd) if cwd is not None else _HOME
        out, err = bytearray(), bytearray()
        call = exec_call() if argv and argv[0] in _STREAMING else None
        if call is None:
            run = _Run(stdin, workdir, env or {}, out.extend, err.extend, None)
        else:
            run = _Run(stdin, workdir, env or {}, call.stdout.append, call.stderr.append, call)
        MemorySandboxEnvironment.running.append(argv)
        try:
            code = await self._run(argv, run)
        finally:
            MemorySandboxEnvironment.running.remove(argv)
        if call is not None:
            out[:], err[:] = call.stdout.value(), call.stderr.value()
        stdout = out.decode("utf-8", errors="replace")
        stderr = err.decode("utf-8", errors="replace")
        return ExecResult(code == 0, code, stdout, stderr)

    async def _run(self, cmd: list[str], run: _Run) -> int:
        if not cmd:
            run.err(b"empty command\n")
            return 127
        program, args = cmd[0], cmd[1:]
        if program in ("true", "false"):
            return 0 if program == "true" else 1
        if program == "exit":
            return int(args[0]) if args else 0
        if program == "echo":
            run.out((" ".join(args) + "\n").encode("utf-8"))
            return 0
        if program == "printf":
            return self._printf(args, run)
        if program == "printenv":
            found = [run.env[name] for name in args if name in run.env]
            run.out("".join(f"{value}\n" for value in found).encode("utf-8"))
            return 0 if args and len(found) == len(args) else 1
        if program == "pwd":
            run.out(f"{run.cwd}\n".encode())
            return 0
        if program == "cat":
            return self._cat(args, run)
        if program == "test":
            return self._test(args, run.cwd)
        if program == "which":
            return self._which(args, run)
        if program == "sleep":
            await anyio.sleep(float(args[0]))
            return 0
        if program == "yes":
            return await self._yes(args, run)
        if program == "sh":
            return await self._sh(args, run)
        run.err(f"{program}: command not found\n".encode())
        return 127

    @staticmethod
    def _printf(args: list[str], run: _Run) -> int:
        if not args:
            run.err(b"printf: missing operand\n")
            return 1
        form, rest = args[0], args[1:]
        while True:
            used = False
            out = bytearray()
            position = 0
            for match in _PRINTF.finditer(form):
                out += form[position : match.start()].encode("utf-8")
                position = match.end()
                escape, conversion = match.group(1), match.group(2)
                if conversion == "s":
                    out += (rest.pop(0) if rest else "").encode("utf-8")
                    used = True
                elif conversion is not None:
                    out += b"%" if conversion == "%" else match.group(0).encode("utf-8")
                elif escape is None:
                    out += b"\\"
                elif escape[0] in "01234567":
                    out.append(int(escape, 8) & 0xFF)  # a byte, not a character
                else:
                    out += _ESCAPES.get(escape, "\\" + escape).encode("utf-8")
            out += form[position:].encode("utf-8")
            run.out(bytes(out))
            if not rest or not used:  # the format is reused while it takes arguments
                return 0

    async def _yes(self, args: list[str], run: _Run) -> int:
        assert run.call is not None  # a streaming builtin
        line = ((" ".join(args) if args else "y") + "\n").encode("utf-8")
        chunk = line * max(1, _YES_CHUNK // len(line))
        # The buffer stops the call as soon as it passes the exec output
        # limit (cancelling the proxy's scope); called without the proxy,
        # it only marks the call, and the loop ends there.
        while not run.call.over_limit:
            run.out(chunk)
            await anyio.lowlevel.checkpoint()
        run.err(b"yes: stopped: the output passed the exec output limit\n")
        return 141  # as yes killed by SIGPIPE when its reader goes away

    async def _sh(self, args: list[str], run: _Run) -> int:
        if len(args) < 2 or args[0] != "-c":
            run.err(b"sh: only 'sh -c SCRIPT' is supported\n")
            return 2
        lexer = shlex.shlex(args[1], posix=True, punctuation_chars=";")
        lexer.whitespace_split = True
        try:
            tokens = list(lexer)
        except ValueError as exc:  # an unclosed quote
            run.err(f"sh: {exc}\n".encode())
            return 2
        commands: list[list[str]] = [[]]
        for token in tokens:
            if token.strip(";"):
                commands[-1].append(token)
            else:
                commands.append([])
        code = 0
        for command in commands:
            if command:
                code = await self._run(command, run)
                await anyio.lowlevel.checkpoint()
        return code

    def _cat(self, args: list[str], run: _Run) -> int:
        if not args:
            run.out(run.stdin)
            return 0
        code = 0
        for name in args:
            try:
                run.out(self._read(name, run.cwd))
            except OSError as exc:
                run.err(f"cat: {name}: {exc.strerror}\n".encode())
                code = 1
        return code

    def _test(self, args: list[str], cwd: str) -> int:
        if len(args) != 2 or args[0] not in ("-r", "-e", "-f", "-d"):
            return 2
        path = self._resolve(args[1], cwd)
        if args[0] == "-d":
            return 0 if self._is_dir(path) else 1
        if args[0] == "-e":
            return 0 if path in self.files or self._is_dir(path) else 1
        return 0 if path in self.files else 1

    def _which(self, args: list[str], run: _Run) -> int:
        code = 0 if args else 1
        for name in args:
            found = next(
                (f"{d}/{name}" for d in _PATH_DIRS if f"{d}/{name}" in self.files),
                f"/bin/{name}" if name in _BUILTINS else None,
            )
            if found is None:
                code = 1
            else:
                run.out(f"{found}\n".encode())
        return code

    async def write_file(self, file: str, contents: str | bytes) -> None:
        """Store *contents* at *file*.

        Raises:
            IsADirectoryError: *file* is a directory.
            NotADirectoryError: A parent of *file* is a file.
            SandboxUnavailableError: The environment was cleaned up.
        """
        await anyio.lowlevel.checkpoint()
        self._check_open()
        path = self._resolve(file)
        if self._is_dir(path):
            raise IsADirectoryError(errno.EISDIR, "Is a directory", file)
        parent = posixpath.dirname(path)
        while parent != "/":
            if parent in self.files:
                raise NotADirectoryError(errno.ENOTDIR, "Not a directory", file)
            parent = posixpath.dirname(parent)
        self.files[path] = contents.encode("utf-8") if isinstance(contents, str) else contents

    @overload
    async def read_file(self, file: str, text: Literal[True] = True) -> str: ...
    @overload
    async def read_file(self, file: str, text: Literal[False]) -> bytes: ...
    async def read_file(self, file: str, text: bool = True) -> str | bytes:
        """Return the contents of *file*.

        Raises:
            FileNotFoundError: *file* does not exist.
            IsADirectoryError: *file* is a directory.
            UnicodeDecodeError: *text* is true and the file is not UTF-8.
            SandboxUnavailableError: The environment was cleaned up.
        """
        await anyio.lowlevel.checkpoint()
        self._check_open()
        data = self._read(file)
        return data.decode("utf-8") if text else data

    async def connection(self, *, user: str | None = None) -> SandboxConnection:
        """A placeholder connection, for any *user*: there is no shell to open."""
        await anyio.lowlevel.checkpoint()
        self._check_open()
        return SandboxConnection(type="memory", command="true")

    @classmethod
    async def sample_init(
        cls, task_name: str, config: Any, metadata: dict[str, Any]
    ) -> dict[str, SandboxEnvironment]:
        """One environment per configured name (see the module docs).

        Raises:
            TypeError: *config* is not ``None``, a list of names or a dict.
        """
        await anyio.lowlevel.checkpoint()
        if config is None:
            return {"default": cls()}
        if isinstance(config, list | tuple):
            return {str(name): cls() for name in config}
        if isinstance(config, Mapping):
            return {str(name): cls(files) for name, files in config.items()}
        raise TypeError(
            f"memory sandbox config must be None, a list of names or a dict, "
            f"got {type(config).__name__}"
        )

    @classmethod
    async def sample_cleanup(
        cls,
        task_name: str,
        config: Any,
        environments: dict[str, SandboxEnvironment],
        interrupted: bool,
    ) -> None:
        """Mark the environments closed; later calls raise ``SandboxUnavailableError``."""
        for env in environments.values():
            inner = getattr(env, "inner", env)
            if isinstance(inner, MemorySandboxEnvironment):
                inner.closed = True
        await anyio.lowlevel.checkpoint()
