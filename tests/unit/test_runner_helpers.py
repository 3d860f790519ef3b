"""Small hot-path helpers that stand in for standard-library ones."""

from __future__ import annotations

import shlex

from hypothesis import given, settings
from hypothesis import strategies as st

from xguard.util import printable, shell_join


@settings(max_examples=500, deadline=None)
@given(st.lists(st.text(), max_size=6))
def test_shell_join_equals_shlex_join(argv: list[str]) -> None:
    assert shell_join(argv) == shlex.join(argv)


def test_printable_escapes_control_characters() -> None:
    assert printable("a\nb\tc\x1b[2Jd\x00") == "a\\nb\\tc\\x1b[2Jd\\x00"
    assert printable("x" * 500, 10) == "x" * 9 + "…"
