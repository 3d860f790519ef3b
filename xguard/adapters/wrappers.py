"""Agent runtimes' own wrappers around the model's command.

A runtime whose SHELL (or shell prefix) is xguard hands it the model's command
inside scaffolding of its own (Claude Code: `eval 'CMD' && pwd -P >| FILE`).
The model's command is what is decided, shown and audited; the scaffolding,
recognised exactly, is what runs around it.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping


class Unwrapped:
    """The model's command found inside a runtime's wrapper."""

    __slots__ = ("command", "exec_text", "source", "writes")

    def __init__(
        self, command: str, exec_text: str, source: str, writes: tuple[str, ...] = ()
    ) -> None:
        self.command = command
        self.exec_text = exec_text
        self.source = source
        # Files the scaffolding itself writes (the cwd report): the kernel box
        # lets these through (issue 11).
        self.writes = writes


def unwrap(text: str, environ: Mapping[str, str] | None) -> Unwrapped | None:
    """The model's command when `text` is a known runtime's wrapper, else None."""
    if " && pwd -P >| " in text:  # cheap test before importing the adapter
        from xguard.adapters.claude_code import parse_claude_code_wrapper

        w = parse_claude_code_wrapper(text, environ)
        if w is not None:
            return Unwrapped(w.command, w.exec_text, "shell:claude-code", (w.cwd_file,))
    return None
