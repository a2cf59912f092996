"""corral's pytest plugin, tested as its users run it: test files in a pytester directory.

Each test writes a test module (or copies one of the documented examples)
into a fresh directory and runs pytest on it in this process, with the
plugins installed here: corral's (by its entry point), anyio's and
pytest-asyncio's.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
EXAMPLES = ROOT / "docs" / "examples" / "testing"

#: The inner runs' settings: pytest-asyncio's loop scope set (it warns otherwise), warnings
#: as errors, as a harness author's suite would have them.
INI = """\
[pytest]
asyncio_default_fixture_loop_scope = function
filterwarnings = error
"""


def run(pytester: pytest.Pytester, source: str, *args: str) -> pytest.RunResult:
    pytester.makeini(INI)
    pytester.makepyfile(test_it=textwrap.dedent(source))
    return pytester.runpytest("-p", "no:cacheprovider", "-v", "-ra", *args)


def run_example(pytester: pytest.Pytester, name: str, *args: str) -> pytest.RunResult:
    return run(pytester, (EXAMPLES / name).read_text(), *args)


def test_the_plugin_is_registered_by_its_entry_point(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    result = pytester.runpytest("--fixtures", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*fixtures defined from corral.pytest_plugin*"])
    for name in [
        "corral_task",
        "corral_sample",
        "corral_memory_sandbox",
        "corral_local_sandbox",
        "corral_no_leftovers",
    ]:
        result.stdout.fnmatch_lines([f"{name}*"])


def test_importing_corral_does_not_import_pytest_or_the_plugin() -> None:
    code = (
        "import json, sys, corral, corral.util, corral.sandboxes, corral.tracing;"
        "print(json.dumps([m for m in ('pytest', 'corral.pytest_plugin') if m in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(done.stdout) == []


def test_the_anyio_example_runs_each_test_under_both_backends(pytester: pytest.Pytester) -> None:
    result = run_example(pytester, "pytest_anyio_example.py")
    result.assert_outcomes(passed=6)
    for test in ["test_grade", "test_files", "test_local"]:
        result.stdout.fnmatch_lines([f"*::{test}?trio? PASSED*"])
        result.stdout.fnmatch_lines([f"*::{test}?asyncio? PASSED*"])


def test_the_pytest_asyncio_example_runs(pytester: pytest.Pytester) -> None:
    result = run_example(pytester, "pytest_asyncio_example.py")
    result.assert_outcomes(passed=2)


def test_pytest_asyncio_auto_mode_needs_no_marks(pytester: pytest.Pytester) -> None:
    source = (EXAMPLES / "pytest_asyncio_example.py").read_text()
    source = source.replace("pytestmark = pytest.mark.asyncio\n", "")
    assert "pytest.mark.asyncio" not in source
    result = run(pytester, source, "-o", "asyncio_mode=auto")
    result.assert_outcomes(passed=2)


def test_the_conformance_example_runs_against_the_memory_provider(
    pytester: pytest.Pytester,
) -> None:
    result = run_example(pytester, "pytest_conformance_example.py")
    outcomes = result.parseoutcomes()
    assert result.ret == 0, result.stdout.str()
    assert outcomes["passed"] >= 60  # about 40 tests, each under trio and asyncio
    assert outcomes.get("failed", 0) == 0
    result.stdout.fnmatch_lines(
        ["*TestMemorySandbox::test_text_round_trip?trio? PASSED*"], consecutive=False
    )
    # Skips name the declaration, so they show in the report.
    result.stdout.fnmatch_lines(["*TestMemorySandbox.lacks declares the sandbox has no*"])


@pytest.mark.parametrize("mark", ["anyio", "asyncio"])
def test_the_sample_sees_the_task_and_its_settings(pytester: pytest.Pytester, mark: str) -> None:
    result = run(
        pytester,
        f"""
        import pytest
        import corral
        from corral.util import sample_limits, store, transcript

        @pytest.mark.{mark}
        @pytest.mark.corral_task(name="graded", max_subprocesses=3)
        @pytest.mark.corral_sample(id=7, metadata={{"k": "v"}}, store={{"a": 1}}, time_limit=600)
        async def test_it(corral_task, corral_sample):
            assert corral.current_task() is corral_task
            assert corral_task.name == "graded"
            assert corral_task.max_subprocesses == 3
            assert corral_task.handle_signals is False
            assert corral_sample.id == 7 and corral_sample.metadata == {{"k": "v"}}
            assert store() is corral_sample.store and store().get("a") == 1
            assert transcript() is corral_sample.transcript
            assert sample_limits().time.limit == 600

        @pytest.mark.{mark}
        async def test_defaults(request, corral_task, corral_sample):
            assert corral_task.name == request.node.name
            assert corral_sample.id == 1
        """,
    )
    result.assert_outcomes(passed=4 if mark == "anyio" else 2)


@pytest.mark.parametrize("mark", ["anyio", "asyncio"])
def test_the_task_is_closed_after_the_test(pytester: pytest.Pytester, mark: str) -> None:
    result = run(
        pytester,
        f"""
        import pytest
        import corral

        seen = []

        @pytest.mark.{mark}
        async def test_first(corral_task):
            seen.append(corral_task)

        def test_then():
            assert corral.current_task() is None
            assert [task.statistics().state for task in seen] == ["closed"] * len(seen)
        """,
    )
    result.assert_outcomes(passed=3 if mark == "anyio" else 2)


def test_an_async_fixture_without_an_async_plugin_is_refused_by_name(
    pytester: pytest.Pytester,
) -> None:
    result = run(
        pytester,
        """
        def test_sync(corral_sample):
            pass
        """,
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*corral_task is an async fixture: run test_it.py::test_sync under anyio "
            "(@pytest.mark.anyio) or pytest-asyncio (@pytest.mark.asyncio)*"
        ]
    )


def test_a_marker_with_positional_arguments_is_refused(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest

        @pytest.mark.anyio
        @pytest.mark.corral_task("name")
        async def test_it(corral_task):
            pass
        """,
    )
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        ["*@pytest.mark.corral_task takes keyword arguments only, got ('name',)*"]
    )


def test_a_user_fixture_of_the_same_name_wins(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest

        @pytest.fixture
        def corral_task():
            return "mine"

        @pytest.mark.asyncio
        async def test_asyncio(corral_task):
            assert corral_task == "mine"

        def test_sync(corral_task):
            assert corral_task == "mine"
        """,
    )
    result.assert_outcomes(passed=2)


# -- corral_no_leftovers --------------------------------------------------------------------

#: One leak of each kind, as a test body, and what the failure must say about it.
LEAKS = {
    "child": (
        "KEPT.append(subprocess.Popen(['sleep', corral_no_leftovers]))",
        "*process * (a child of the test process): 'sleep 300.*'",
    ),
    "orphaned group": (
        # sh leads a process group of its own, starts sleep in it, and exits: sleep is orphaned.
        "subprocess.run(['sh', '-c', 'sleep 299.5 >/dev/null &'], process_group=0, check=True)",
        "*process * (an orphan in process group *): '*sleep 299.5*'",
    ),
    "new session": (
        "subprocess.run(['setsid', '-f', 'sleep', corral_no_leftovers], check=True)",
        "*process * (its command line holds the marker 300.*): '*sleep 300.*'",
    ),
    "escaped from corral": (
        # It escapes (a new session) before the command ends, so that corral's supervisor, which
        # stops the command's process group, cannot stop it first; its output goes elsewhere,
        # as subprocess() waits until nothing holds its pipes.
        "anyio.run(corral.util.subprocess, ['sh', '-c', ESCAPE])",
        "*process * (started by corral in the test process): '*sleep 299.25*'",
    ),
    "fd": ("LEAKED.append(os.open(os.devnull, os.O_RDONLY))", "*file descriptor * -> /dev/null"),
    "temporary file": ("os.close(tempfile.mkstemp(prefix='kept-')[0])", "*temporary file kept-*"),
    "temporary directory": ("tempfile.mkdtemp(prefix='kept-')", "*temporary directory kept-*"),
    "sandbox directory": (
        "SANDBOXES.append(anyio.run(LocalSandbox.sample_init, 'leaky', None, {}))",
        "*local sandbox directory corral-sandbox-*",
    ),
}


@pytest.mark.parametrize("kind", LEAKS)
def test_no_leftovers_fails_a_leaking_test_and_passes_a_clean_one(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, no_leftovers: str, kind: str
) -> None:
    # A leftover is alive until it is killed: give it less time to die than users get.
    monkeypatch.setattr("corral.pytest_plugin._DYING_GRACE", 1.0)
    leak, message = LEAKS[kind]
    result = run(
        pytester,
        f"""
        import os, subprocess, tempfile

        import anyio
        import corral.util
        from corral.sandboxes._local import LocalSandboxEnvironment as LocalSandbox

        LEAKED = []
        KEPT = []
        SANDBOXES = []
        ESCAPE = (
            "mkfifo escaped && setsid -f sh -c "
            "'echo >escaped; exec sleep 299.25 </dev/null >/dev/null 2>&1' && read _ <escaped"
        )

        def test_clean(corral_no_leftovers):
            subprocess.run(['sleep', '0'], check=True)
            os.close(os.open(os.devnull, os.O_RDONLY))
            with tempfile.TemporaryDirectory():
                pass

        def test_leaky(corral_no_leftovers):
            {leak}

        def test_after():
            for fd in LEAKED:
                os.close(fd)
            for process in KEPT:
                process.wait()  # killed by corral_no_leftovers
            for environments in SANDBOXES:  # its directory removed by corral_no_leftovers
                anyio.run(LocalSandbox.sample_cleanup, 'leaky', None, environments, False)
        """,
    )
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(
        ["*ERROR at teardown of test_leaky*", "*test_it.py::test_leaky left behind:*", message]
    )
    assert "test_clean left behind" not in result.stdout.str()


def test_no_leftovers_waits_for_a_process_that_is_dying(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import os, signal, subprocess

        KEPT = []

        def test_killed(corral_no_leftovers):
            KEPT.append(subprocess.Popen(["sleep", corral_no_leftovers]))
            os.kill(KEPT[0].pid, signal.SIGKILL)  # not waited for: still dying, or a zombie

        def test_after():
            assert KEPT[0].wait() == -signal.SIGKILL
        """,
    )
    result.assert_outcomes(passed=2)


def test_no_leftovers_sees_what_the_other_fixtures_leave(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest

        @pytest.mark.anyio
        async def test_local(corral_no_leftovers, corral_local_sandbox):
            await corral_local_sandbox.write_file("f.txt", "x")

        @pytest.mark.anyio
        async def test_sample(corral_no_leftovers, corral_sample):
            pass
        """,
    )
    result.assert_outcomes(passed=4)


@pytest.mark.parametrize("mark", ["anyio", "asyncio"])
def test_a_sample_uses_the_registered_memory_sandbox(pytester: pytest.Pytester, mark: str) -> None:
    """As docs/testing.md shows (under a name of its own: the registry is the process's)."""
    result = run(
        pytester,
        f"""
        import pytest
        from corral.sandboxes import register_sandbox
        from corral.sandboxes.testing import MemorySandboxEnvironment
        from corral.util import sandbox

        register_sandbox("memory-plugin-test", MemorySandboxEnvironment)

        @pytest.mark.{mark}
        @pytest.mark.corral_sample(sandbox=("memory-plugin-test", {{"default": {{"/a": "x"}}}}))
        async def test_it(corral_sample):
            assert await sandbox().read_file("/a") == "x"
            assert (await sandbox().exec(["cat", "/a"])).stdout == "x"

        @pytest.mark.{mark}
        async def test_fixture(corral_memory_sandbox):
            await corral_memory_sandbox.write_file("f", "y")
            assert (await corral_memory_sandbox.exec(["cat", "f"])).stdout == "y"
            assert (await corral_memory_sandbox.exec(["pwd"])).stdout == "/work\\n"
        """,
    )
    result.assert_outcomes(passed=4 if mark == "anyio" else 2)


@pytest.mark.parametrize("mark", ["anyio", "asyncio"])
def test_a_scope_that_cannot_start_is_an_error_at_set_up_naming_why(
    pytester: pytest.Pytester, mark: str
) -> None:
    result = run(
        pytester,
        f"""
        import pytest

        @pytest.mark.{mark}
        @pytest.mark.corral_sample(sandbox="nowhere")
        async def test_it(corral_sample):
            pass
        """,
    )
    result.assert_outcomes(errors=2 if mark == "anyio" else 1)
    result.stdout.fnmatch_lines(["E * ValueError: Sandbox type 'nowhere' is not recognized*"])
    assert "ExceptionGroup" not in result.stdout.str()


@pytest.mark.parametrize("mark", ["anyio", "asyncio"])
def test_a_failure_in_the_task_fails_the_test_at_teardown_not_its_body(
    pytester: pytest.Pytester, mark: str
) -> None:
    result = run(
        pytester,
        f"""
        import pytest

        import anyio, anyio.lowlevel
        import corral

        BODY_ENDED = []

        async def boom(failing):
            failing.set()
            raise RuntimeError("the task's work failed")

        @pytest.mark.{mark}
        async def test_it(corral_task):
            failing = anyio.Event()
            corral_task.start_soon(boom, failing)
            await failing.wait()
            for _ in range(3):
                await anyio.lowlevel.checkpoint()  # the task's group is cancelled, not the test
            BODY_ENDED.append(True)

        def test_after():
            assert BODY_ENDED
            assert corral.current_task() is None  # the context is restored all the same
        """,
    )
    # Each test_it passes its body (and test_after sees it ended), then errors at teardown.
    runs = 2 if mark == "anyio" else 1
    result.assert_outcomes(passed=runs + 1, errors=runs)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_it*", "*the task's work failed*"])


def test_the_plugin_exports_exactly_its_fixtures() -> None:
    import corral.pytest_plugin as plugin

    fixtures = {name for name in vars(plugin) if name.startswith("corral_")}
    assert sorted(plugin.__all__) == sorted(fixtures)
    assert {"corral_task", "corral_sample", "corral_no_leftovers"} <= fixtures
