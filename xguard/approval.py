"""Obtaining a human's approval for a require_approval command (SPEC §4).

This is the minimal contract the runner relies on; the queue, the waiting
agent and the reviewer build on it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from .errors import ExitCode


@dataclass
class ApprovalOutcome:
    """exit_code None means approved: run the command. Otherwise exit with it."""

    exit_code: int | None
    request_id: str | None = None
    reviewer: str | None = None


def obtain_approval(gate: Any, req: Any, decision: Any, record: dict[str, Any], log: Any) -> ApprovalOutcome:
    """Queue the request; without a reviewer the command does not run (exit 75)."""
    log.append("pending", **record)
    rid = str(record["id"])
    sys.stderr.write(
        f"xguard: pending approval {rid}: the command did not run; go on with other work and run it again later\n"
    )
    return ApprovalOutcome(int(ExitCode.TEMPFAIL), rid)
