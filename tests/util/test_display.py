"""display_type() and input_screen(): the environment, the thread rule, recording, pausing."""

from __future__ import annotations

import io
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import TypeVar

import anyio
import pytest
from rich.console import Console
from rich.live import Live

from corral._state._events import InputEvent
from corral._state._transcript import Transcript, current_transcript
from corral.util._display import DISPLAY_ENV, display_type, input_screen, registered_live

T = TypeVar("T")


@pytest.fixture
def fresh_transcript() -> Iterator[Transcript]:
    record = Transcript()
    token = current_transcript.set(record)
    try:
        yield record
    finally:
        current_transcript.reset(token)


@pytest.fixture
def screen() -> Console:
    """Where the live display draws: a plain console writing to a string."""
    return Console(file=io.StringIO(), width=60, force_terminal=False, color_system=None)


@pytest.fixture
def live(screen: Console) -> Iterator[Live]:
    """A started live display, registered for input_screen() to pause."""
    display = Live("status: working", console=screen, auto_refresh=False)
    display.start()
    try:
        with registered_live(display):
            yield display
    finally:
        display.stop()


def screen_text(console: Console) -> str:
    file = console.file
    assert isinstance(file, io.StringIO)
    return file.getvalue()


def running(display: Live) -> bool:
    """Whether *display* is started (a call, so that mypy does not narrow it)."""
    return display.is_started


def input_event(record: Transcript) -> InputEvent:
    [event] = record.events
    assert isinstance(event, InputEvent)
    return event


def in_thread(func: Callable[[], T]) -> T:
    results: list[T] = []
    thread = threading.Thread(target=lambda: results.append(func()))
    thread.start()
    thread.join()
    [result] = results
    return result


# -- display_type -----------------------------------------------------------------------------


def test_display_type_defaults_to_full(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DISPLAY_ENV, raising=False)
    assert display_type() == "full"
    monkeypatch.setenv(DISPLAY_ENV, "  ")
    assert display_type() == "full"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("full", "full"),
        ("conversation", "conversation"),
        (" Rich ", "rich"),
        ("PLAIN", "plain"),
        ("none\n", "none"),
    ],
)
def test_display_type_reads_the_environment(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: str
) -> None:
    monkeypatch.setenv(DISPLAY_ENV, raw)
    assert display_type() == expected


def test_display_type_is_read_on_every_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DISPLAY_ENV, "plain")
    assert display_type() == "plain"
    monkeypatch.setenv(DISPLAY_ENV, "none")
    assert display_type() == "none"
    monkeypatch.setenv(DISPLAY_ENV, "log")  # inspect_ai's, taken as it is
    assert display_type() == "log"


def test_unknown_display_type_warns_once_and_is_full(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    bogus = f"bogus-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv(DISPLAY_ENV, bogus)
    with caplog.at_level(logging.WARNING, logger="corral.display"):
        assert display_type() == "full"
        assert display_type() == "full"
    [warning] = caplog.records
    assert warning.getMessage().startswith("Unknown display type")
    assert bogus in warning.getMessage()
    assert DISPLAY_ENV in warning.getMessage()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("full", "plain"),
        ("rich", "plain"),
        ("plain", "plain"),
        ("conversation", "conversation"),
        ("none", "none"),
    ],
)
def test_display_type_off_the_main_thread(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: str
) -> None:
    monkeypatch.setenv(DISPLAY_ENV, raw)
    assert in_thread(display_type) == expected


# -- input_screen -----------------------------------------------------------------------------


def test_input_screen_yields_a_console_and_records_what_it_shows(
    fresh_transcript: Transcript, live: Live, screen: Console
) -> None:
    with input_screen(header="Approve the plan?") as console:
        assert isinstance(console, Console)
        console.print("The agent wants to run: rm -rf build/")
    shown = screen_text(screen)
    assert "Approve the plan?" in shown
    assert "The agent wants to run: rm -rf build/" in shown
    event = input_event(fresh_transcript)
    assert "Approve the plan?" in event.input
    assert "The agent wants to run: rm -rf build/" in event.input
    assert "The agent wants to run: rm -rf build/" in event.input_ansi


def test_input_screen_without_recording_adds_no_event(
    fresh_transcript: Transcript, live: Live, screen: Console
) -> None:
    with input_screen(header="Approve?", record_event=False) as console:
        console.print("shown, not recorded")
    assert "shown, not recorded" in screen_text(screen)
    assert list(fresh_transcript.events) == []
    with (
        pytest.raises(TypeError, match="record_event must be a bool"),
        input_screen(record_event=1),  # type: ignore[arg-type]
    ):
        pass


def test_typed_answers_are_recorded_but_not_written_twice(
    fresh_transcript: Transcript, live: Live, screen: Console
) -> None:
    with input_screen() as console:
        answer = console.input("Name? ", stream=io.StringIO("Ada\n"))
    assert answer.strip() == "Ada"
    assert input_event(fresh_transcript).input == "Name? Ada\n"
    assert "Ada" not in screen_text(screen)


def test_passwords_are_not_recorded(
    fresh_transcript: Transcript, live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("getpass.getpass", lambda prompt="", stream=None: "hunter2")
    with input_screen() as console:
        assert console.input("Token: ", password=True) == "hunter2"
    assert "hunter2" not in input_event(fresh_transcript).input


def test_ansi_recording_keeps_styles(fresh_transcript: Transcript) -> None:
    colour = Console(file=io.StringIO(), width=60, force_terminal=True, color_system="truecolor")
    with registered_live(Live(console=colour)), input_screen() as console:  # not started
        console.print("[red]stop[/red]")
    event = input_event(fresh_transcript)
    assert event.input == "stop\n"
    assert "\x1b[" in event.input_ansi
    assert "stop" in event.input_ansi


def test_input_screen_pauses_and_resumes_the_live_display(
    fresh_transcript: Transcript, live: Live
) -> None:
    assert running(live)
    with input_screen():
        assert not running(live)
    assert running(live)


def test_not_transient_leaves_the_live_display_stopped(
    fresh_transcript: Transcript, live: Live
) -> None:
    with input_screen(transient=False):
        assert not running(live)
    assert not running(live)


@pytest.mark.parametrize(("raw", "restarted"), [("conversation", False), ("plain", True)])
def test_transient_default_follows_the_display_type(
    fresh_transcript: Transcript,
    live: Live,
    monkeypatch: pytest.MonkeyPatch,
    raw: str,
    restarted: bool,
) -> None:
    monkeypatch.setenv(DISPLAY_ENV, raw)
    with input_screen():
        pass
    assert running(live) is restarted


def test_an_error_inside_still_records_and_resumes(
    fresh_transcript: Transcript, live: Live
) -> None:
    def ask() -> None:
        with input_screen() as console:
            console.print("half a question")
            raise KeyError("user gave up")

    with pytest.raises(KeyError):
        ask()
    assert "half a question" in input_event(fresh_transcript).input
    assert running(live)


def test_without_a_live_display_it_writes_to_the_terminal(
    fresh_transcript: Transcript, capsys: pytest.CaptureFixture[str]
) -> None:
    with input_screen(header="Question") as console:
        console.print("Continue?")
    out = capsys.readouterr().out
    assert "Question" in out
    assert "Continue?" in out
    assert "Continue?" in input_event(fresh_transcript).input


def test_width_is_capped_by_the_screen(fresh_transcript: Transcript, live: Live) -> None:
    with input_screen(width=30) as console:
        assert console.width == 30
    with input_screen(width=500) as console:
        assert console.width == 60


def test_registrations_nest(fresh_transcript: Transcript, live: Live, screen: Console) -> None:
    inner = Live(console=Console(file=io.StringIO()), auto_refresh=False)
    with registered_live(inner), input_screen():
        assert running(live)  # only the registered (inner) display is paused
    with input_screen():
        assert not running(live)  # the outer registration is back


def test_nested_input_screens_resume_once(fresh_transcript: Transcript, live: Live) -> None:
    with input_screen(), input_screen():
        assert not running(live)
    assert running(live)
    assert len(fresh_transcript.events) == 2


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"header": 3}, TypeError, "header"),
        ({"transient": "yes"}, TypeError, "transient"),
        ({"width": 2.5}, TypeError, "width"),
        ({"width": True}, TypeError, "width"),
        ({"width": 0}, ValueError, "width"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], error: type[Exception], name: str) -> None:
    with pytest.raises(error, match=name), input_screen(**kwargs):  # type: ignore[arg-type]
        pass


@pytest.mark.anyio
async def test_cancelled_inside_still_records_and_resumes(live: Live) -> None:
    record = Transcript()
    token = current_transcript.set(record)
    try:
        with anyio.CancelScope() as scope, input_screen() as console:
            console.print("waiting for an answer")
            scope.cancel()
            await anyio.sleep_forever()
    finally:
        current_transcript.reset(token)
    assert scope.cancelled_caught
    assert "waiting for an answer" in input_event(record).input
    assert running(live)
