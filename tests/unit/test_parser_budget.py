"""The parser's time budget counts the CPU the parse used, not the wall clock.

On a loaded machine (or a process the scheduler stops for a while) the wall
clock runs on while the parser does nothing; an allowed command must not turn
into "parse exceeded its time budget" (require_approval) because of that. The
wall clock still has a generous cap of its own, so a parse can never hang.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from xguard.shell import parser

# Many nested shells: a parse of a few milliseconds with many budget checks.
COMMAND = " && ".join(f"bash -c 'ls -la src{i} | grep -c x{i} || wc -l f{i}'" for i in range(40))

CHILD = f"""
import os, sys
from xguard.shell.parser import parse
stop = sys.argv[1]
count = over = 0
print("ready", flush=True)
while not os.path.exists(stop):
    count += 1
    if any("time budget" in " ".join(u.why) for u in parse({COMMAND!r})):
        over += 1
print(count, over, flush=True)
"""


def test_a_stopped_parse_is_not_over_budget(tmp_path: Path) -> None:
    stop = tmp_path / "stop"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(stop)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    try:
        # The scheduler stopping the parser, as a loaded machine does: each
        # stop is longer than the whole budget, so a wall-clock budget trips.
        for _ in range(6):
            time.sleep(0.05)
            os.kill(child.pid, signal.SIGSTOP)
            time.sleep(parser.TIME_BUDGET * 1.6)
            os.kill(child.pid, signal.SIGCONT)
    finally:
        os.kill(child.pid, signal.SIGCONT)
        stop.write_text("")
    count, over = map(int, child.stdout.readline().split())
    child.wait(timeout=30)
    assert count > 0
    assert over == 0, f"{over} of {count} parses were over budget while the process was stopped"


def test_budget_still_bounds_cpu() -> None:
    # A budget of zero CPU seconds trips at the first check: the fail-closed floor.
    units = parser.parse(COMMAND, budget=0.0)
    assert any("time budget" in " ".join(u.why) for u in units)


def test_wall_cap_is_generous_but_finite() -> None:
    assert parser.WALL_CAP >= 10 * parser.TIME_BUDGET
    assert parser.WALL_CAP <= 60
