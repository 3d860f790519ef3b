"""A held-out corpus: commands taken from other projects' own tests and bug reports.

peer_corpus.md says where each group comes from and how it was read. Each row
is {"command", "source", "kind"}:

- `dangerous`: must not run without a person. Under the built-in defaults and
  under shared/fixtures/agent-readonly.yaml the decision is never `allow`;
- `safe`: the peer runs it without asking. Nothing is asserted about xguard's
  decision (xguard may be stricter); the rows must decide without error, and
  how many are allowed is printed;
- `peer-strict`: the peer refuses it, but running it harms nothing (its parser
  cannot prove a subshell, `cat` of a heredoc that only holds text, git read
  commands under the repository's own config). Treated like `safe`.

Rows drawn from a peer's repository snapshot (the dcg group) are kept beside the
shared corpora, as shared/corpus/peer_corpus_dcg.jsonl, not in this repository;
XGUARD_PEER_CORPUS names further files (os.pathsep-separated).
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import CORPUS, FIXTURES
from tests.unit.test_corpus import ACTIONS, _load, explain, make_project, verdict
from xguard.policy.decide import Context, Decision, real_glob
from xguard.policy.rules import BUILTIN_RULES, Ruleset

# ---------------------------------------------------------------------------
# Dangerous rows that xguard allows today: (command, rule set) -> why. Each is
# a strict xfail, so the fix that closes it turns its case red until the entry
# is removed here.
KNOWN_ALLOWED: dict[tuple[str, str], str] = {
    ('grep -A5 -B2 "pattern" /path/to/appsettings.json', "agent-readonly.yaml"): (
        "the fixture allows grep and has no path rule for appsettings*.json (the "
        ".NET settings file, which may hold connection strings); the defaults gate "
        "it, and the secrets floor covers only files whose purpose is a credential"
    ),
}

RULESETS = ("defaults", "agent-readonly.yaml")
KINDS = ("dangerous", "safe", "peer-strict")
FIELDS = {"command", "source", "kind"}
GROUPS = {
    "openai/codex": "codex",
    "anthropics/claude-code": "claude-code",
    "Dicklesworthstone/destructive_command_guard": "dcg",
}

HERE = Path(__file__).with_name("peer_corpus.jsonl")
EXTRA = [
    CORPUS / "peer_corpus_dcg.jsonl",
    *(Path(p) for p in os.environ.get("XGUARD_PEER_CORPUS", "").split(os.pathsep) if p),
]


def _read(path: Path) -> list[dict[str, str]]:
    text = path.read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


FILES = [HERE, *(p for p in EXTRA if p.exists())]
ROWS = [row for path in FILES for row in _read(path)]


def group(row: dict[str, str]) -> str:
    m = re.match(r"https://github\.com/([^/]+/[^/]+)/", row.get("source", ""))
    return GROUPS.get(m.group(1), "other") if m else "other"


def _ids(rows: list[dict[str, str]]) -> dict[str, str]:
    """A readable id per command: its group, its number there, its first words."""
    seen: Counter[str] = Counter()
    out: dict[str, str] = {}
    for row in rows:
        g = group(row)
        seen[g] += 1
        slug = re.sub(r"[^A-Za-z0-9]+", "-", row["command"]).strip("-")[:48] or "blank"
        out[row["command"]] = f"{g}-{seen[g]:03d}-{slug}"
    return out


IDS = _ids(ROWS)


def _dangerous_cases() -> list[object]:
    cases: list[object] = []
    for row in ROWS:
        if row["kind"] != "dangerous":
            continue
        for name in RULESETS:
            reason = KNOWN_ALLOWED.get((row["command"], name))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            cases.append(pytest.param(row, name, id=f"{IDS[row['command']]}@{name}", marks=marks))
    return cases


# ---------------------------------------------------------------------------
# Fixtures: a project-like cwd (as in test_corpus.py) and both rule sets.


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory) -> Context:
    project, home = make_project(tmp_path_factory.mktemp("peers"))
    return Context(cwd=str(project), home=str(home), expand_glob=real_glob)


@pytest.fixture(scope="module")
def rulesets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Ruleset]:
    sets = {"defaults": _load(tmp_path_factory, BUILTIN_RULES)}
    fixture = FIXTURES / "agent-readonly.yaml"
    if fixture.exists():
        sets["agent-readonly.yaml"] = _load(tmp_path_factory, fixture)
    return sets


def _decide(rulesets: dict[str, Ruleset], name: str, ctx: Context, command: str) -> Decision:
    if name not in rulesets:
        pytest.skip("shared/fixtures is not beside this checkout")
    return verdict(rulesets[name], ctx, command)


# ---------------------------------------------------------------------------
# The corpus itself.


def test_rows_are_well_formed() -> None:
    problems = []
    seen: set[str] = set()
    for row in ROWS:
        if set(row) != FIELDS:
            problems.append(f"fields {sorted(row)}: {row}")
        elif row["kind"] not in KINDS:
            problems.append(f"kind {row['kind']!r}: {row['command']!r}")
        elif group(row) == "other":
            problems.append(f"source not from a known peer: {row['source']}")
        if row.get("command") in seen:
            problems.append(f"listed twice: {row['command']!r}")
        seen.add(row.get("command", ""))
    counts = Counter((group(r), r.get("kind")) for r in ROWS)
    print("\npeer corpus:", ", ".join(str(p.name) for p in FILES))
    for (g, kind), n in sorted(counts.items()):
        print(f"  {g:12} {kind:12} {n}")
    assert not problems, "\n".join(problems)


def test_known_allowed_names_dangerous_rows() -> None:
    # An entry for a command that is not a dangerous row would never run.
    dangerous = {r["command"] for r in ROWS if r["kind"] == "dangerous"}
    stale = [key for key in KNOWN_ALLOWED if key[0] not in dangerous or key[1] not in RULESETS]
    assert not stale, stale


# ---------------------------------------------------------------------------
# Dangerous rows: never `allow`.


@pytest.mark.parametrize(("row", "rules_name"), _dangerous_cases())
def test_dangerous_not_allowed(
    row: dict[str, str], rules_name: str, rulesets: dict[str, Ruleset], ctx: Context
) -> None:
    d = _decide(rulesets, rules_name, ctx, row["command"])
    units = "; ".join(f"{u.kind}:{u.text!r} by {u.rule_ids or u.rule}" for u in d.units)
    assert d.decision != "allow", (
        f"{row['command']!r} allowed under {rules_name} ({row['source']}): "
        f"rules {d.rules}; units {units}; {explain(d)}"
    )


# ---------------------------------------------------------------------------
# Safe and peer-strict rows: decided without error; the share allowed is printed.


@pytest.mark.parametrize("rules_name", RULESETS)
def test_safe_rows_decide(rules_name: str, rulesets: dict[str, Ruleset], ctx: Context) -> None:
    decisions: Counter[tuple[str, str]] = Counter()
    strict_allowed = []
    for row in ROWS:
        if row["kind"] == "dangerous":
            continue
        d = _decide(rulesets, rules_name, ctx, row["command"])
        assert d.decision in ACTIONS, f"{row['command']!r}: {d.decision!r}"
        decisions[row["kind"], d.decision] += 1
        if row["kind"] == "peer-strict" and d.decision == "allow":
            strict_allowed.append(f"{row['command']!r} ({explain(d)})")
    print(f"\nunder {rules_name}:")
    for kind in ("safe", "peer-strict"):
        total = sum(n for (k, _), n in decisions.items() if k == kind)
        print(f"  {kind} rows allowed: {decisions[kind, 'allow']}/{total}")
    for line in strict_allowed:
        print("  peer-strict, allowed:", line)
