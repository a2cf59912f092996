"""An in-memory sandbox for tests: files in a dict, a handful of builtin commands.

Like ``httpx.MockTransport``, :class:`MemorySandboxEnvironment` lets tests of
code that uses sandboxes (the lifecycle, ``sandbox_with``, the proxy) run
without processes or a file system, fast and deterministically. It is not
registered by default; register it where needed::

    register_sandbox("memory", "corral.sandboxes._memory:MemorySandboxEnvironment")

Paths are POSIX paths; a relative path is resolved in ``/work``. Directories
exist implicitly, as the parents of the files. ``exec`` understands:

* ``true``, ``false``;
* ``echo [ARGS...]``;
* ``cat`` (stdin to stdout) and ``cat FILE...``;
* ``test -r FILE`` / ``test -e FILE`` / ``test -f FILE`` / ``test -d DIR``;
* ``which PROGRAM`` (a builtin, or a file in ``/bin``, ``/usr/bin``,
  ``/usr/local/bin``);
* ``sleep SECONDS`` (``anyio.sleep``, so virtual clocks apply);
* ``exit CODE``.

Anything else exits with 127 and ``"<name>: command not found"`` on stderr.
Like a third-party provider, it leaves the contract's rules to the sandbox
proxy (argument checks, ``timeout=``, the output limits) and returns plain
results. After ``sample_cleanup`` every call raises
:class:`~corral.util.SandboxUnavailableError`.

Configuration (``SandboxEnvironmentSpec("memory", config)``): ``None`` for one
environment named ``"default"``; a list of names for one empty environment
each (the first is the default); or a dict of name -> initial files.
"""

from __future__ import annotations

import errno
import posixpath
from collections.abc import Mapping
from typing import Any, Literal, overload

import anyio
import anyio.lowlevel

from .._process._subprocess import ExecResult
from ._environment import SandboxConnection, SandboxEnvironment
from ._errors import SandboxUnavailableError

__all__ = ["MemorySandboxEnvironment"]

_HOME = "/work"
_PATH_DIRS = ("/bin", "/usr/bin", "/usr/local/bin")
_BUILTINS = frozenset({"true", "false", "echo", "cat", "test", "which", "sleep", "exit"})


class MemorySandboxEnvironment(SandboxEnvironment):
    """A sandbox whose files live in a dict and whose commands are Python builtins.

    Args:
        files: Initial files, path -> contents (``str`` is stored as UTF-8).

    Attributes:
        files: The files, absolute path -> bytes (tests may read and change it).
        commands: Every command passed to :meth:`exec`, in order.
        closed: Whether ``sample_cleanup`` released this environment.
    """

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
    ) -> ExecResult[str]:
        """Run a builtin command (see the module docs); *env*, *user* and *timeout* are ignored.

        Raises:
            SandboxUnavailableError: The environment was cleaned up.
        """
        await anyio.lowlevel.checkpoint()
        self._check_open()
        self.commands.append(list(cmd))
        stdin = input.encode("utf-8") if isinstance(input, str) else (input or b"")
        workdir = self._resolve(cwd) if cwd is not None else _HOME
        code, out, err = await self._run(list(cmd), stdin, workdir)
        stdout = out.decode("utf-8", errors="replace")
        stderr = err.decode("utf-8", errors="replace")
        return ExecResult(code == 0, code, stdout, stderr)

    async def _run(self, cmd: list[str], stdin: bytes, cwd: str) -> tuple[int, bytes, bytes]:
        if not cmd:
            return 127, b"", b"empty command\n"
        program, args = cmd[0], cmd[1:]
        if program == "true":
            return 0, b"", b""
        if program == "false":
            return 1, b"", b""
        if program == "exit":
            return int(args[0]) if args else 0, b"", b""
        if program == "echo":
            return 0, (" ".join(args) + "\n").encode("utf-8"), b""
        if program == "cat":
            return self._cat(args, stdin, cwd)
        if program == "test":
            return self._test(args, cwd), b"", b""
        if program == "which":
            return self._which(args)
        if program == "sleep":
            await anyio.sleep(float(args[0]))
            return 0, b"", b""
        return 127, b"", f"{program}: command not found\n".encode()

    def _cat(self, args: list[str], stdin: bytes, cwd: str) -> tuple[int, bytes, bytes]:
        if not args:
            return 0, stdin, b""
        out, err, code = b"", b"", 0
        for name in args:
            try:
                out += self._read(name, cwd)
            except OSError as exc:
                err += f"cat: {name}: {exc.strerror}\n".encode()
                code = 1
        return code, out, err

    def _test(self, args: list[str], cwd: str) -> int:
        if len(args) != 2 or args[0] not in ("-r", "-e", "-f", "-d"):
            return 2
        path = self._resolve(args[1], cwd)
        if args[0] == "-d":
            return 0 if self._is_dir(path) else 1
        if args[0] == "-e":
            return 0 if path in self.files or self._is_dir(path) else 1
        return 0 if path in self.files else 1

    def _which(self, args: list[str]) -> tuple[int, bytes, bytes]:
        out, code = b"", 0 if args else 1
        for name in args:
            found = next(
                (f"{d}/{name}" for d in _PATH_DIRS if f"{d}/{name}" in self.files),
                f"/bin/{name}" if name in _BUILTINS else None,
            )
            if found is None:
                code = 1
            else:
                out += f"{found}\n".encode()
        return code, out, b""

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

    async def connection(self) -> SandboxConnection:
        """A placeholder connection: there is no shell to open."""
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
