"""Session fixtures of the execution oracle: the sandbox, the two rulesets'
gates, and the one run of every generated command that both tests judge."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import CORPUS, FIXTURES
from tests.oracle.generate import generate
from tests.oracle.oracle import Report, decide_all, run_all
from tests.oracle.sandbox import Sandbox, need_root
from xguard.gate.request import Gate

WORKERS = 4  # strace'd commands mostly wait: a few more than the 2 cores of CI
REPORT_KEY = pytest.StashKey[Report]()


@pytest.fixture(scope="session")
def oracle_sandbox() -> Iterator[Sandbox]:
    why = need_root()
    if why:
        pytest.skip(why)
    base = Path(tempfile.mkdtemp(prefix="xguard-oracle-"))
    try:
        yield Sandbox(base, WORKERS)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def oracle_gates(oracle_sandbox: Sandbox) -> dict[str, Gate]:
    """The shared fixture's rules and the built-in defaults, as the gate loads them
    for an agent whose HOME is the sandbox's (xguard's own files included)."""
    env = {
        "HOME": str(oracle_sandbox.home),
        "XGUARD_HOME": str(oracle_sandbox.xguard_home),
        "PATH": "/usr/local/bin:/usr/bin:/bin",
    }
    gates: dict[str, Gate] = {"defaults": Gate(environ=env)}
    fixture = FIXTURES / "agent-readonly.yaml"
    if fixture.exists():
        gates["agent-readonly.yaml"] = Gate(environ=env, rules_file=str(fixture))
    return gates


@pytest.fixture(scope="session")
def oracle_report(
    request: pytest.FixtureRequest, oracle_sandbox: Sandbox, oracle_gates: dict[str, Gate]
) -> Report:
    config = request.config
    n = config.getoption("--oracle-examples")
    seed = config.getoption("--oracle-seed")
    start = time.monotonic()
    report = Report()
    commands = generate(CORPUS, n, seed)
    report.generated = len(commands)
    allowed = decide_all(oracle_gates, commands, oracle_sandbox.project, report)
    run_all(oracle_sandbox, allowed, report)
    report.total = time.monotonic() - start
    config.stash[REPORT_KEY] = report
    out = config.getoption("--oracle-report")
    if out:
        Path(out).write_text("".join(f.line() + "\n" for f in report.findings), encoding="utf-8")
    return report


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    report = config.stash.get(REPORT_KEY, None)
    if report is not None:
        terminalreporter.section("execution oracle")
        for line in report.summary():
            terminalreporter.write_line(line)
