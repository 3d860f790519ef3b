"""Every terminal and environment fact the front ends branch on, in one object.

Made once per process (`Environment()`) and passed down, so a test can pin
any fact (`Environment(stdin_isatty=True)`) and reach a terminal branch
without a pty; one or two real-pty tests remain for the terminal itself.
(httpie's `Environment` does the same.) Facts are read lazily: an allowed
command pays for none it does not use. Imports nothing of xguard.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing costs ~3 ms to import on the hot path; type checkers see True
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import IO, Any


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (ValueError, OSError):  # closed or gone
        return False


class Environment:
    """The process's streams, whether each is a terminal, and its variables."""

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        *,
        stdin: IO[Any] | None = None,
        stdout: IO[Any] | None = None,
        stderr: IO[Any] | None = None,
        stdin_isatty: bool | None = None,
        stdout_isatty: bool | None = None,
        stderr_isatty: bool | None = None,
    ) -> None:
        self.environ = os.environ if environ is None else environ
        self.stdin = sys.stdin if stdin is None else stdin
        self.stdout = sys.stdout if stdout is None else stdout
        self.stderr = sys.stderr if stderr is None else stderr
        self._tty = {"stdin": stdin_isatty, "stdout": stdout_isatty, "stderr": stderr_isatty}

    def _is(self, name: str) -> bool:
        v = self._tty[name]
        if v is None:
            v = self._tty[name] = _isatty(getattr(self, name))
        return v

    @property
    def stdin_isatty(self) -> bool:
        return self._is("stdin")

    @property
    def stdout_isatty(self) -> bool:
        return self._is("stdout")

    @property
    def stderr_isatty(self) -> bool:
        return self._is("stderr")

    @property
    def at_terminal(self) -> bool:
        """A person at a terminal: stdin and stderr are both one (sudo's test for a prompt)."""
        return self.stdin_isatty and self.stderr_isatty
