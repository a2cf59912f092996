"""One argument or environment entry over Linux's MAX_ARG_STRLEN: the same clear error everywhere.

Before, a 1 MiB argument was ``E2BIG`` locally (after a slot was taken) and
exit status 126 over SSH; now every provider and ``subprocess()`` refuse it
before anything starts, naming the parameter and the limit. One at the limit runs.
"""

from __future__ import annotations

import pytest

import corral
from corral._core._checks import MAX_ARGUMENT
from corral.util import sandbox, subprocess

pytestmark = pytest.mark.anyio

#: Prints the size of its argument, and of the variable ``BIG``.
_SIZES = ["sh", "-c", 'printf "%s %s" "${#1}" "${#BIG}"', "sh"]


async def test_an_argument_at_the_limit_runs_and_one_over_is_refused() -> None:
    async with corral.task("t", sandbox="local") as task, task.sample(1):
        result = await sandbox().exec([*_SIZES, "a" * MAX_ARGUMENT])
        assert result.stdout == f"{MAX_ARGUMENT} 0"
        # An environment entry counts its "BIG=" too.
        big = "b" * (MAX_ARGUMENT - len("BIG="))
        result = await sandbox().exec([*_SIZES, "x"], env={"BIG": big})
        assert result.stdout == f"1 {len(big)}"

        with pytest.raises(ValueError, match=r"cmd\[4\] is 131,072 bytes; .* 131,071 bytes"):
            await sandbox().exec([*_SIZES, "a" * (MAX_ARGUMENT + 1)])
        with pytest.raises(ValueError, match=r"env\['BIG'\] is 1,048,580 bytes"):
            await sandbox().exec([*_SIZES, "x"], env={"BIG": "b" * 2**20})
        # Counted in UTF-8 bytes, not characters.
        with pytest.raises(ValueError, match=r"cmd\[4\] is 131,073 bytes"):
            await sandbox().exec([*_SIZES, "a" + "é" * (MAX_ARGUMENT // 2 + 1)])


async def test_subprocess_refuses_an_argument_over_the_limit() -> None:
    assert (await subprocess(["printf", "%s", "a" * MAX_ARGUMENT])).stdout == "a" * MAX_ARGUMENT
    with pytest.raises(ValueError, match=r"args\[2\] is 1,048,576 bytes"):
        await subprocess(["printf", "%s", "a" * 2**20])
    with pytest.raises(ValueError, match=r"^args is 1,048,576 bytes"):
        await subprocess("#" * 2**20)
    with pytest.raises(ValueError, match=r"env\['BIG'\] is"):
        await subprocess(["true"], env={"BIG": "b" * 2**20})
