"""The display setting and console input: ``display_type()`` and ``input_screen()``.

``display_type()`` reads ``$CORRAL_DISPLAY`` (else ``inspect_ai``'s
``$INSPECT_DISPLAY``) on every call (dictionary lookups, so nothing is
cached and a change to the environment takes effect at once).
``input_screen()`` hands out a rich console for talking to the user,
pauses the live display while they type, and records what the screen showed
as an :class:`~corral.util.InputEvent` in the transcript.

A display that draws with a ``rich.live.Live`` makes it known with
:func:`registered_live`, so that ``input_screen()`` can stop it while the
user types and start it again afterwards.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

from .._core._env import env_variable
from .._state._events import InputEvent
from .._state._transcript import transcript

if TYPE_CHECKING:
    from collections.abc import Iterator

    from rich.console import Console
    from rich.live import Live

__all__ = [
    "DISPLAY_ENV",
    "INSPECT_DISPLAY_ENV",
    "DisplayType",
    "display_type",
    "input_screen",
    "registered_live",
]

DisplayType = Literal["full", "conversation", "rich", "plain", "log", "none"]
"""How progress is displayed: ``$CORRAL_DISPLAY``, read by :func:`display_type`."""

#: Environment variable holding the display type.
DISPLAY_ENV = "CORRAL_DISPLAY"
#: inspect_ai's name for it, read when ``$CORRAL_DISPLAY`` is unset.
INSPECT_DISPLAY_ENV = "INSPECT_DISPLAY"

_DISPLAY_TYPES: dict[str, DisplayType] = {
    "full": "full",
    "conversation": "conversation",
    "rich": "rich",
    "plain": "plain",
    "log": "log",
    "none": "none",
}

logger = logging.getLogger("corral.display")
_warned: set[str] = set()

_live: Live | None = None
_live_lock = threading.Lock()


def display_type() -> DisplayType:
    """Return the display type: ``$CORRAL_DISPLAY``, else ``$INSPECT_DISPLAY``, else ``"full"``.

    The value is stripped and lower-cased. An unknown value logs a warning
    (once per value) and counts as ``"full"``. Off the main thread, ``"full"``
    and ``"rich"`` become ``"plain"``, since a live display belongs to the main
    thread; ``"conversation"``, ``"plain"``, ``"log"`` and ``"none"`` stay as
    they are. ``"log"`` (inspect_ai's display that prints log records rather
    than progress) draws no live display.

    The environment is read on every call; this is not a checkpoint.
    """
    variable = env_variable(DISPLAY_ENV, INSPECT_DISPLAY_ENV)
    raw = os.environ.get(variable, "")
    name = raw.strip().lower() or "full"
    value = _DISPLAY_TYPES.get(name)
    if value is None:
        if name not in _warned:
            _warned.add(name)
            logger.warning(
                "Unknown display type %r in $%s (setting display to 'full'); use one of %s",
                raw,
                variable,
                ", ".join(_DISPLAY_TYPES),
            )
        value = "full"
    if value in ("full", "rich") and threading.current_thread() is not threading.main_thread():
        return "plain"
    return value


@contextmanager
def registered_live(live: Live) -> Iterator[Live]:
    """Make *live* the live display that :func:`input_screen` pauses, for the block.

    Registrations nest: leaving the block restores the previous one.
    """
    global _live
    with _live_lock:
        previous, _live = _live, live
    try:
        yield live
    finally:
        with _live_lock:
            _live = previous


@functools.cache
def _input_console_class() -> type[Console]:
    """A recording console that also records what the user types at ``input()``.

    Made on first use, so that rich is imported only by code that asks for input.
    """
    from rich.console import Console

    class InputConsole(Console):
        def input(self, *args: Any, **kwargs: Any) -> str:
            answer = super().input(*args, **kwargs)
            if not kwargs.get("password", False):
                # The terminal echoed the answer; put it in the record only.
                screen = self.file
                self.file = io.StringIO()
                try:
                    self.print(
                        answer.removesuffix("\n"),
                        markup=False,
                        emoji=False,
                        highlight=False,
                        soft_wrap=True,
                    )
                finally:
                    self.file = screen
            return answer

    return InputConsole


@contextmanager
def input_screen(
    header: str | None = None,
    transient: bool | None = None,
    width: int | None = None,
    record_event: bool = True,
) -> Iterator[Console]:
    """Pause the live display and yield a console for asking the user something.

    The console writes where the registered live display writes (else where
    rich's global console writes) and records everything: the header, what
    the code prints, and what the user types at ``console.input()`` (except
    passwords). On exit, the recording is added to the transcript as an
    ``InputEvent`` (``input``: plain text, ``input_ansi``: with ANSI styles).

    Unlike ``inspect_ai``, no running evaluation is needed: without a
    registered live display there is nothing to pause, and the console
    writes to the terminal.

    Args:
        header: Text for a rule printed at the top (plain text, not markup).
        transient: Whether the live display starts again after the input.
            ``False`` leaves it stopped. ``None`` means ``True`` unless
            :func:`display_type` is ``"conversation"``.
        width: The console's width, at most the terminal's (``None``: the
            terminal's).
        record_event: Whether to add the ``InputEvent``; ``False`` for a
            caller that records the exchange in an event of its own.

    Yields:
        A ``rich.console.Console``.

    Raises:
        TypeError: An argument has the wrong type.
        ValueError: *width* is less than 1.

    This is a sync context manager and not a checkpoint; ``console.input()``
    blocks the thread, event loop included, until the user answers.

    **Cancellation:** if the block is left by an exception, a cancellation
    delivered at an ``await`` inside it included, what was recorded so far is
    still added to the transcript and the live display is restarted (when
    *transient*) before the exception propagates.
    """
    if header is not None and not isinstance(header, str):
        raise TypeError(f"header must be a str or None, got {type(header).__name__}")
    if transient is not None and not isinstance(transient, bool):
        raise TypeError(f"transient must be a bool or None, got {type(transient).__name__}")
    if width is not None:
        if isinstance(width, bool) or not isinstance(width, int):
            raise TypeError(f"width must be an int or None, got {type(width).__name__}")
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
    if not isinstance(record_event, bool):
        raise TypeError(f"record_event must be a bool, got {type(record_event).__name__}")
    if transient is None:
        transient = display_type() != "conversation"

    import rich
    from rich.text import Text

    with _live_lock:
        live = _live
    base = live.console if live is not None else rich.get_console()
    # A console of our own, so that recording and width stay ours; it writes
    # where *base* writes, with the same terminal and colour settings.
    color_system: Any = base.color_system  # a name Console accepts back, or None
    console = _input_console_class()(
        file=base.file,
        width=base.width if width is None else min(width, base.width),
        force_terminal=base.is_terminal,
        color_system=color_system,
        no_color=base.no_color,
        record=True,
    )
    paused = live is not None and live.is_started
    if paused:
        assert live is not None
        live.stop()
    try:
        if header:
            console.rule(Text(header, style="bold"))
            console.print()
        yield console
    finally:
        try:
            if record_event:
                text = console.export_text(clear=False, styles=False)
                ansi = console.export_text(clear=True, styles=True)
                transcript()._event(InputEvent(input=text, input_ansi=ansi))
        finally:
            if paused and transient:
                assert live is not None
                live.start()
