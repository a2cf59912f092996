"""Packaging: what the default install holds, and what a feature needs its extra for.

asyncssh (with cryptography) serves only the ``"ssh"`` sandbox provider and httpx only
``resource()`` with ``http(s)://`` URLs, so both are extras (``corral[ssh]``,
``corral[http]``). The default install must still run everything else, ``corral demo``
included, and using a feature without its extra must raise an ``ImportError`` that names
the extra. The tests block the modules in a fresh interpreter (``sys.modules[name] = None``
makes every ``import name`` raise ``ImportError``), since the test environment has every
extra installed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
#: Every module an extra installs (and what they pull in that corral might import).
EXTRA_MODULES = ["asyncssh", "cryptography", "httpx", "httpcore", "opentelemetry"]
#: The ``corral`` command, run with the interpreter's arguments.
CLI = "from corral._cli import main\nmain(sys.argv[1:])"


def run_without(
    modules: list[str], code: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run *code* in a fresh interpreter in which importing any of *modules* fails."""
    block = "".join(f"sys.modules[{name!r}] = None\n" for name in modules)
    return subprocess.run(
        [sys.executable, "-c", f"import sys\n{block}{code}", *args],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        env=None if env is None else {**os.environ, **env},
    )


def requirement_names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0].lower() for r in requirements}


def test_feature_dependencies_are_extras_and_dev_has_them_all() -> None:
    default = requirement_names(PROJECT["dependencies"])
    extras = PROJECT["optional-dependencies"]
    assert not default & {"asyncssh", "httpx", "opentelemetry-api"}
    assert requirement_names(extras["ssh"]) == {"asyncssh"}
    assert requirement_names(extras["http"]) == {"httpx"}
    assert requirement_names(extras["otel"]) == {"opentelemetry-api"}
    assert "corral[ssh,http,otel,docs]" in extras["dev"]


def test_dev_tools_are_pinned() -> None:
    extras = PROJECT["optional-dependencies"]
    tools = [r for r in extras["dev"] + extras["docs"] if not r.startswith(("corral", "opentel"))]
    assert tools
    for requirement in tools:
        assert "==" in requirement, f"{requirement} is not pinned"


def test_classifiers_name_the_running_python() -> None:
    classifiers = PROJECT["classifiers"]
    for minor in (11, 12, 13):
        assert f"Programming Language :: Python :: 3.{minor}" in classifiers
    running = f"Programming Language :: Python :: {sys.version_info[0]}.{sys.version_info[1]}"
    assert running in classifiers
    assert PROJECT["requires-python"] == ">=3.11"


def test_the_demo_runs_without_any_extra(tmp_path: Path) -> None:
    done = run_without(EXTRA_MODULES, CLI, *["demo", "--samples", "8", "--logs", str(tmp_path)])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "as designed" in done.stdout


def test_the_public_modules_import_without_any_extra() -> None:
    code = (
        "import corral, corral.util, corral.sandboxes, corral.tracing, corral._cli\n"
        "from corral.sandboxes import SSHSandboxConfig\n"
        "SSHSandboxConfig.model_validate({'hosts': ['example.org']})\n"
        "print('imported')"
    )
    done = run_without(EXTRA_MODULES, code)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "imported\n"


def test_ssh_sandbox_without_its_extra_names_the_extra() -> None:
    code = """
import anyio, corral
from corral.util import sandbox

async def main() -> None:
    async with corral.task("t", sandbox=("ssh", {"hosts": ["127.0.0.1:1"]})) as task:
        async with task.sample(1):
            await sandbox().exec(["true"])

try:
    anyio.run(main)
except ImportError as exc:
    print(type(exc).__name__, exc.name, exc)
"""
    done = run_without(["asyncssh"], code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ImportError asyncssh "), done.stdout
    assert "pip install 'corral[ssh]'" in done.stdout


def test_http_resource_without_its_extra_names_the_extra(tmp_path: Path) -> None:
    page = tmp_path / "page.txt"
    page.write_text("from a file\n")
    code = """
from corral.util import resource
print(resource(sys.argv[1]), end="")  # files and literal text need no extra
print(resource("literal text"))
try:
    resource("http://127.0.0.1:1/prompt.txt")
except ImportError as exc:
    print(type(exc).__name__, exc.name, exc)
"""
    done = run_without(["httpx"], code, str(page))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:2] == ["from a file", "literal text"]
    assert lines[2].startswith("ImportError httpx "), lines
    assert "http://127.0.0.1:1/prompt.txt" in lines[2]
    assert "pip install 'corral[http]'" in lines[2]


def test_sandbox_cleanup_without_the_ssh_extra_skips_ssh_and_cleans_the_rest(
    tmp_path: Path,
) -> None:
    done = run_without(
        ["asyncssh"],
        CLI,
        *["sandbox", "cleanup"],
        env={"CORRAL_STATE_DIR": str(tmp_path)},  # no records: nothing of the suite's
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "local: nothing to clean" in done.stdout
    assert "ssh: skipped (" in done.stderr
    assert "pip install 'corral[ssh]'" in done.stderr
