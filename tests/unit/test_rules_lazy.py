"""The rules cache's lazy index decides exactly as the full rule set does.

A ruleset read from the cache makes only the rules a unit can match (by its
first word, its first character, or because the rule can match anything).
The reference here tries every rule on every unit, with no index at all.
Every command of both corpora, the built-in defaults' own examples and a
table of edge shapes (non-ASCII, wrappers, SQL, paths) is decided under both,
which must agree on the decision, units, rules, reasons, notify targets and
max_runtime, for the built-in defaults and the shared fixtures. A command
must also really make few rules.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import CORPUS, FIXTURES
from xguard.paths import Paths
from xguard.policy.decide import Context, Decision, decide, real_glob
from xguard.policy.rules import (
    BUILTIN_RULES_S,
    Rule,
    Ruleset,
    build_ruleset_dict,
    load_ruleset,
    pack_ruleset,
    unpack_ruleset,
)
from xguard.shell.parser import parse


def _commands() -> list[str]:
    out: list[str] = []
    for name in ("evasion.jsonl", "benign.jsonl"):
        p = CORPUS / name
        if p.exists():
            out += [json.loads(x)["command"] for x in p.read_text().splitlines() if x.strip()]
    full = Ruleset(build_ruleset_dict(BUILTIN_RULES_S, None))
    out += [" ".join(t["argv"]) if "argv" in t else t["command"] for t in full.tests]
    out += [
        "ÉCHO x",  # non-ASCII: every unindexed rule is a candidate
        "lś -la",
        # IGNORECASE matches the Kelvin sign as k and dotless i (U+0131) as i: an
        # anchored (?i) rule still applies to these non-ASCII spellings.
        "\u212aubectl get secrets -o yaml",
        "g\u0131t -c core.pager=x log",
        "/usr/bin/printenv",
        "sudo -u x env printenv",
        "psql -c 'DELETE FROM users; SELECT 1'",
        "PSQL -C 'copy t to program $$id$$'",
        "cat ~/.ssh/id_rsa > /etc/x; touch y",
        "kubectl exec api-0 -- rm -rf /",
        "[ -f x ] && ls",
        ".venv/bin/python -V",
        "",
        "# only a comment",
    ]
    return out


COMMANDS = _commands()


def _rule_files() -> list[str]:
    files = [BUILTIN_RULES_S]
    files += [str(FIXTURES / n) for n in ("agent-readonly.yaml", "seed-rules.yaml")]
    return [f for f in files if Path(f).exists()]


class FullScan(Ruleset):
    """Every text rule is a candidate for every unit: no index to get wrong."""

    def candidates(self, text: str, alt_text: str | None) -> list[Rule]:
        return self.text_rules()


def _same(a: Decision) -> tuple[object, ...]:
    return (a.to_json(), a.rules, a.notify, a.max_runtime, [u.notify for u in a.units])


@pytest.mark.parametrize("rules_file", _rule_files(), ids=lambda p: Path(p).name)
def test_lazy_index_decides_as_the_full_set(rules_file: str, tmp_path: Path) -> None:
    d = build_ruleset_dict(rules_file, None)
    d["key"] = "k"
    full = FullScan(d)
    packed = pack_ruleset(d)
    # One process deciding many (check --batch), remembering matches throughout.
    shared = unpack_ruleset(packed, "k")
    assert shared is not None
    (tmp_path / "README.md").write_text("x")
    ctx = Context(cwd=str(tmp_path), home="/home/agent", expand_glob=real_glob)
    wants = []
    for command in COMMANDS:
        units = parse(command)
        full.memo.clear()  # the reference remembers nothing between commands
        want = _same(decide(units, full, ctx))
        fresh = unpack_ruleset(packed, "k")  # one process per command (xguard -c)
        assert fresh is not None
        assert _same(decide(units, fresh, ctx)) == want, command
        assert _same(decide(units, shared, ctx)) == want, command
        wants.append((units, want))
    for units, want in wants:  # again: now every match comes from the memo
        assert _same(decide(units, shared, ctx)) == want
    assert [r.id for r in shared.rules] == [r.id for r in full.rules]
    assert shared.tests == full.tests
    assert shared.with_runtime == full.with_runtime


def test_a_command_makes_only_the_rules_it_can_match(tmp_path: Path) -> None:
    paths = Paths(tmp_path, tmp_path)
    load_ruleset(paths, BUILTIN_RULES_S)  # writes the cache
    rs = load_ruleset(paths, BUILTIN_RULES_S)
    assert rs._blob is not None, "read from the cache"
    ctx = Context(cwd=str(tmp_path), home="/home/agent")
    assert decide(parse("true"), rs, ctx).decision == "allow"
    made = len(rs.loaded())
    total = len(rs.rules)
    assert total > 300
    assert made <= 20, f"`true` made {made} of {total} rules"


def test_a_stale_or_foreign_cache_is_not_used(tmp_path: Path) -> None:
    d = build_ruleset_dict(BUILTIN_RULES_S, None)
    d["key"] = "k"
    packed = pack_ruleset(d)
    assert unpack_ruleset(packed, "other") is None
    assert unpack_ruleset(b"\x00" * 40, "k") is None
    assert unpack_ruleset(packed[:20], "k") is None


def test_planning_the_box_makes_no_more_rules(tmp_path: Path) -> None:
    """The box reads the rules a decision names (confine: false, network,
    if_confined, the writable roots); they were made while matching, so
    reading them must not make the rest of the set. (Searching for secrets
    to mask reads the path rules: that search is kept between commands.)"""
    from xguard.gate import confine

    paths = Paths(tmp_path / "xg", tmp_path / "xg")
    ctx = Context(cwd=str(tmp_path), home="/home/agent", confined=True)
    load_ruleset(paths, BUILTIN_RULES_S)
    for command in ("true", "ls -la", "git status --porcelain", "ls > /dev/null"):
        rs = load_ruleset(paths, BUILTIN_RULES_S)  # one process per command
        assert rs._blob is not None, "read from the cache"
        d = decide(parse(command), rs, ctx)
        assert d.decision == "allow", command
        made = len(rs.loaded())
        confine.escalate(d, command, rs, "bwrap", "")
        assert d.decision == "allow", command
        assert confine._unconfined_rule(d, rs) is None
        assert confine._network(d, rs) is False
        assert confine._writable(d, rs, ctx) == []
        assert len(rs.loaded()) == made, command


def test_patterns_from_the_cache_match_as_re_compiles_them(tmp_path: Path) -> None:
    """A rule read from the cache hands its regex to the engine with what
    re.compile worked out when the cache was written (no `re` import at run
    time). Every regex of the built-in defaults and the fixture, so made,
    matches every corpus command exactly as re.compile's own pattern does."""
    import re

    texts = [*COMMANDS, *(c.upper() for c in COMMANDS[:50]), "", "git", "git status --porcelain"]
    made = 0
    for src in (BUILTIN_RULES_S, FIXTURES / "agent-readonly.yaml", FIXTURES / "seed-rules.yaml"):
        d = build_ruleset_dict(src, None)
        d["key"] = "k"
        rs = unpack_ruleset(pack_ruleset(d), "k")
        assert rs is not None
        for rule in rs.rules:
            if "\x00" in rule.rx_src:
                assert rule.sre is None  # $HOME or the cwd: compiled at run time
                continue
            assert rule.sre is not None, rule.id
            ours, theirs = rule.regex(), re.compile(rule.rx_src)
            assert type(ours) is type(theirs)
            assert (ours.pattern, ours.flags, ours.groups) == (
                theirs.pattern,
                theirs.flags,
                theirs.groups,
            )
            for t in texts:
                a, b = ours.search(t), theirs.search(t)
                assert (a and a.span()) == (b and b.span()), (rule.id, t)
            made += 1
    assert made > 300


def test_a_cached_pattern_the_engine_refuses_is_compiled_anew() -> None:
    d = build_ruleset_dict(BUILTIN_RULES_S, None)
    d["key"] = "k"
    rs = unpack_ruleset(pack_ruleset(d), "k")
    assert rs is not None
    rule = next(r for r in rs.rules if r.type == "regex")
    rule.sre = (0, [1, 2, 3], 0, {}, ())  # not a program the engine accepts
    assert rule.regex().pattern == rule.rx_src
    assert rule.sre is None
