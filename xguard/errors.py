"""One exception tree and one exit-code table for all of xguard.

Every failure that reaches the user goes through `XguardError.exit_code` and
`XguardError.message`; `__main__` prints `xguard: <message>` and exits. A
traceback is shown only with `--debug` / `XGUARD_DEBUG=1`.
"""

from __future__ import annotations


class ExitCode:
    """Exit statuses of SPEC §2 (sysexits.h numbering where SPEC uses it).

    Plain int constants, not an IntEnum: `enum` costs ~3.5 ms to import and
    this module is on every command's path.
    """

    OK = 0
    CHECK_APPROVAL = 1  # `xguard check`: the command would need approval
    CHECK_DENY = 2  # `xguard check`: the command would be denied
    UNSAFE = 1  # `doctor` / `audit verify`: something is wrong
    TIMEOUT = 124  # max_runtime killed the command, as timeout(1) does
    USAGE = 64
    SOFTWARE = 70  # internal error: fail closed, nothing ran
    TEMPFAIL = 75  # approval not given within the wait
    NOPERM = 77  # denied by a rule, a reviewer, a session or a limit
    CONFIG = 78  # configuration error: nothing runs


class XguardError(Exception):
    """Base of every error xguard reports to a user."""

    exit_code: int = ExitCode.SOFTWARE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(XguardError):
    exit_code = ExitCode.USAGE


class ConfigError(XguardError):
    """A rules or config file that cannot be trusted: nothing may run."""

    exit_code = ExitCode.CONFIG

    def __init__(self, what: str, file: str | None = None, line: int | None = None) -> None:
        where = ""
        if file is not None:
            where = f"{file}:{line if line is not None else 1}: "
        super().__init__(f"config error: {where}{what}")
        self.file = file
        self.line = line
        self.what = what


class AuditError(XguardError):
    """The audit log could not be written, so the command must not run."""

    exit_code = ExitCode.SOFTWARE


class Denied(XguardError):
    exit_code = ExitCode.NOPERM


class PendingTimeout(XguardError):
    exit_code = ExitCode.TEMPFAIL


class QueueError(XguardError):
    """The shared approval queue (PostgreSQL) cannot be reached or refused us:
    fail closed, nothing runs (issue 15)."""

    exit_code = ExitCode.SOFTWARE


class InternalError(XguardError):
    exit_code = ExitCode.SOFTWARE
