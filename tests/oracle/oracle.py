"""The oracle's loop: decide every generated command in-process, run each one
allowed under plain `bash -c` in the sandbox, and judge what it did against
what its decision listed."""

from __future__ import annotations

import os
import queue
import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tests.oracle.sandbox import Run, Sandbox
from tests.oracle.trace import Trace, Violation
from xguard.gate.request import Gate
from xguard.policy.decide import Decision


def allowed_programs(decision: Decision) -> set[str]:
    """Basenames of the programs an allowed decision's command units name."""
    names = set()
    for u in decision.units:
        unit = u.unit
        if u.kind == "command" and unit is not None and unit.words:
            names.add(os.path.basename(unit.words[0]))
    return names


# Issue 11's classes of misreading, recognised from the command's text, most
# specific first: a finding's class says which part of the reading to fix.
CLASSES = [
    (
        "redirect beside a process substitution",
        re.compile(r">\s*[^\s(]+.*[<>]\(|[<>]\(.*[^<>]>\s*\w"),
    ),
    ("line begun with a backslash", re.compile(r"\n[ \t]*\\[^\n]")),
    ("here-document delimiter", re.compile(r"<<-?\s*(['\"\\$]|\w+[\"'\\])")),
    ("psql connection string", re.compile(r"\bpsql\b.*(://|\bhost=|-h ?\d)")),
    ("login shell", re.compile(r"\bbash (-\\?l|--login|'-l')")),
    ("sh -c is not bash", re.compile(r"\b(sh|dash) (\\\n)?-c\b")),
    ("values evaluated at run time", re.compile(r"\$\{!|\$\{\w+:|\$\(\(\w|\[\$\(|\blet\b|\(\(\w")),
    ("unit never created (redirect to a substitution)", re.compile(r">\s*[\"]?(\$\(|`|\$\{)")),
    (
        "program inside arguments",
        re.compile(r"\b(awk|gawk|mawk|sed|find|git -c|git --config-env|GIT_\w+=|xargs|man|less)\b"),
    ),
    (
        "tool option or operand that writes",
        re.compile(
            r"(--output|--profile-output|--cache-dir|--cursor-file"
            r"|\bxxd\b|\buniq\b|\btree\b|\bsort\b|\bbase64 -o|\bfile -C)"
        ),
    ),
]


# A leaked secret is a misreading of structure only when one of these hid the read.
_HIDING = (
    "line begun with a backslash",
    "here-document delimiter",
    "sh -c is not bash",
    "values evaluated at run time",
)


def classify(command: str, violations: list[Violation]) -> str:
    secret_only = all(v.kind == "secret" for v in violations)
    for name, pattern in CLASSES:
        if secret_only and name not in _HIDING:
            continue
        if pattern.search(command):
            return name
    return "secret read" if secret_only else "other"


@dataclass
class Finding:
    ruleset: str
    command: str
    violations: list[Violation]

    @property
    def cls(self) -> str:
        return classify(self.command, self.violations)

    def line(self) -> str:
        """One line for the findings file: the command, the ruleset, what happened."""
        what = "; ".join(str(v) for v in self.violations[:3])
        return f"{self.command!r}\t{self.ruleset}\t[{self.cls}] {what}"


@dataclass
class Report:
    generated: int = 0
    allowed: dict[str, int] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)
    run: int = 0
    timed_out: list[str] = field(default_factory=list)
    seconds: float = 0.0  # running the allowed commands
    total: float = 0.0  # generating, deciding and running
    findings: list[Finding] = field(default_factory=list)

    def by_ruleset(self, name: str) -> list[Finding]:
        return [f for f in self.findings if f.ruleset == name]

    def kinds(self, name: str) -> Counter[str]:
        """How many commands did each kind of harm (a command may do several)."""
        return Counter(k for f in self.by_ruleset(name) for k in {v.kind for v in f.violations})

    def classes(self, name: str) -> Counter[str]:
        return Counter(f.cls for f in self.by_ruleset(name))

    def summary(self) -> list[str]:
        lines = [
            f"oracle: {self.generated} commands generated, {self.run} run "
            f"({len(self.timed_out)} stopped at the time limit) in {self.seconds:.0f}s; "
            f"{self.total:.0f}s with generating and deciding"
        ]
        for name, n in self.allowed.items():
            found = self.by_ruleset(name)
            kinds = ", ".join(f"{k} {c}" for k, c in sorted(self.kinds(name).items())) or "none"
            lines.append(
                f"  {name}: {n} allowed, {len(found)} did harm ({kinds}); "
                f"{len(self.errors.get(name, []))} raised"
            )
            for cls, c in self.classes(name).most_common():
                lines.append(f"      {c:5d}  {cls}")
        lines.extend(f"  stopped at the time limit: {c!r}" for c in self.timed_out[:10])
        return lines


def decide_all(
    gates: dict[str, Gate], commands: list[str], cwd: Path, report: Report
) -> dict[str, dict[str, set[str]]]:
    """command -> {ruleset: allowed program names} for every command some ruleset allows.

    Decided in the project folder: the gate expands globs against the
    process's working directory, as it would in the agent's."""
    allowed: dict[str, dict[str, set[str]]] = {}
    here = os.getcwd()
    os.chdir(cwd)
    try:
        for name, gate in gates.items():
            report.allowed[name] = 0
            for c in commands:
                try:
                    d = gate.decide_text(c, str(cwd))
                except Exception as e:  # a crash is a finding of its own, never an allow
                    report.errors.setdefault(name, []).append(f"{c!r}: {type(e).__name__}: {e}")
                    continue
                if d.decision == "allow":
                    report.allowed[name] += 1
                    allowed.setdefault(c, {})[name] = allowed_programs(d)
    finally:
        os.chdir(here)
    return allowed


def run_all(sandbox: Sandbox, allowed: dict[str, dict[str, set[str]]], report: Report) -> None:
    """Run each allowed command once, in parallel slots; judge it per ruleset."""
    slots: queue.Queue[Path] = queue.Queue()
    for s in sandbox.slots:
        slots.put(s)

    def one(command: str) -> tuple[str, Run, dict[str, list[Violation]]]:
        slot = slots.get()
        try:
            r = sandbox.run(command, slot)
            trace = Trace.parse(r.trace)
            judged = {}
            for name, programs in allowed[command].items():
                v = trace.judge(programs)
                v += [Violation("secret", f"output holds {x}") for x in r.leaked]
                judged[name] = v
            if r.timed_out or any(judged.values()):
                sandbox.restore(slot)  # a harmful command may have changed the slot
            return command, r, judged
        finally:
            slots.put(slot)

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(sandbox.slots)) as pool:
        for command, r, judged in pool.map(one, sorted(allowed)):
            report.run += 1
            if r.timed_out:
                report.timed_out.append(command)
            for name, v in judged.items():
                if v:
                    report.findings.append(Finding(name, command, v))
    report.seconds += time.monotonic() - start
