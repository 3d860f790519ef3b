"""Policy tables: (command, decision) under a small rules file, and the
matching rules of SPEC §3 one by one."""

from __future__ import annotations

from pathlib import Path

import pytest

from xguard.paths import Paths
from xguard.policy.decide import Context, decide
from xguard.policy.rules import Ruleset, glob_regex, load_ruleset, pattern_regex
from xguard.shell.parser import parse, parse_argv

RULES = """\
default: require_approval
rules:
  - {pattern: "ls", action: allow, dynamic: allow}
  - {pattern: "echo", action: allow, dynamic: allow}
  - {pattern: "cat", action: allow}
  - {pattern: "cd", action: allow}
  - {pattern: "git status", action: allow}
  - {pattern: "git log", action: allow}
  - {pattern: "kubectl get", action: allow}
  - {pattern: "psql * -c", action: allow}
  - {pattern: "psql -c", action: allow}
  - {pattern: "SELECT", action: allow}
  - {pattern: "kubectl exec.*-- rm -rf", action: deny}
  - {regex: '^kubectl scale .* --replicas=\\d{2,}', action: deny, reason: "too many replicas"}
  - {pattern: "kubectl scale", action: require_approval, notify: ["#platform"]}
  - {pattern: "printenv", action: deny}
  - {pattern: "DELETE FROM", action: require_approval}
  - {path: "/dev/null", access: write, action: allow}
  - {path: "~/.ssh/**", action: deny}
  - {path: "**/.env", action: deny}
  - {path: "/etc/**", access: write, action: require_approval}
  - {path: "/etc/shadow", access: read, action: deny}
  - {path: "/srv/app/out/**", access: write, action: allow}
notify:
  "#platform": {webhook: "http://127.0.0.1:9/hook"}
"""

HOME = "/home/agent"
EXISTING = {"/srv/app/README.md", "/srv/app/notes", "/home/agent/.ssh/id_rsa", "/srv/app/-rf"}


@pytest.fixture(scope="module")
def ruleset(tmp_path_factory: pytest.TempPathFactory) -> Ruleset:
    d = tmp_path_factory.mktemp("rules")
    f = d / "rules.yaml"
    f.write_text(RULES)
    return load_ruleset(Paths(d, d), f, use_cache=False)


def ctx() -> Context:
    return Context(
        cwd="/srv/app",
        home=HOME,
        protected=["/home/agent/.local/state/xguard"],
        exists=lambda p: p in EXISTING,
        expand_glob=lambda pat, cwd: sorted(p for p in EXISTING if Path(p).match(pat)),
    )


CASES = [
    ("ls -la", "allow"),
    ("kubectl get pods", "allow"),
    ("kubectl getaway", "require_approval"),  # a pattern ends at a word break
    ("echo kubectl get", "allow"),
    ("git status && git log --oneline", "allow"),
    ("git status; rm -rf x", "require_approval"),  # strictest unit wins
    ("printenv", "deny"),
    ("/usr/bin/printenv", "deny"),  # matched with the folder dropped
    ("env printenv", "deny"),
    ("echo $(printenv)", "deny"),
    ("./ls", "require_approval"),  # not the system's ls: an allow for ls does not apply
    ("'git status' x", "require_approval"),  # a blank inside the name is not a word break
    ("/usr/bin/ls", "allow"),
    ("/usr/bin/../bin/ls", "allow"),
    ("kubectl exec web-0 -- rm -rf /data", "deny"),
    ("kubectl scale deploy/api --replicas=3", "require_approval"),
    (
        "kubectl scale deploy/api --replicas=30",
        "deny",
    ),  # deny > require_approval, order never matters
    ("cat $F", "require_approval"),  # dynamic argument, no dynamic: allow
    ("ls $HOME", "allow"),  # dynamic: allow
    ("$CMD", "require_approval"),  # a run-time command name is never allowed
    ("echo hi > /dev/null", "allow"),
    ("echo hi > out.txt", "require_approval"),  # a written file no rule names takes default
    ("echo hi > out/log.txt", "allow"),
    ("echo hi > /etc/motd", "require_approval"),
    ("cat /etc/shadow", "deny"),
    ("cat ~/.ssh/id_rsa", "deny"),
    ("cat $HOME/.ssh/id_rsa", "deny"),  # $HOME is known for path matching
    ("cd ~/.ssh && cat id_rsa", "deny"),  # resolved from the folder cd moved to
    ("cat .env", "deny"),
    ("cat sub/../.env", "deny"),  # .. resolved
    ("cat README.md", "allow"),
    ("cat notes", "allow"),
    ("cat ~/.ssh/*", "deny"),  # a glob matched as written
    ("ls *", "require_approval"),  # the glob expands to -rf: an option
    ("X=1 ls", "require_approval"),
    ("LANG=C ls", "allow"),  # env.assign_ok
    ("psql -c 'SELECT 1'", "allow"),
    ("psql -d app -c 'select now()'", "allow"),  # SQL patterns are case-insensitive
    ("psql -c 'SELECT 1; DELETE FROM users'", "require_approval"),
    ("psql -c 'SELECT 1; DROP TABLE users'", "require_approval"),
    ("xguard approve abc123", "deny"),  # built-in self-protection
    ("python3 -m xguard deny abc", "deny"),
    ("xguard session reset s1", "deny"),
    ("echo x > /home/agent/.local/state/xguard/audit/audit.jsonl", "deny"),
    ("rm /home/agent/.local/state/xguard/spool/x.json", "deny"),
    ("# only a comment", "allow"),
    ("", "allow"),
]


@pytest.mark.parametrize(("command", "expected"), CASES, ids=[c[0][:40] or "empty" for c in CASES])
def test_decisions(ruleset: Ruleset, command: str, expected: str) -> None:
    d = decide(parse(command), ruleset, ctx())
    assert d.decision == expected, d.reasons


def test_notify_targets_come_from_matching_rules(ruleset: Ruleset) -> None:
    d = decide(parse("kubectl scale deploy/api --replicas=3"), ruleset, ctx())
    assert d.notify == ["#platform"]


def test_reasons_name_the_rule(ruleset: Ruleset) -> None:
    d = decide(parse("kubectl scale deploy/api --replicas=30"), ruleset, ctx())
    assert any("too many replicas" in r for r in d.reasons)
    (u,) = [u for u in d.units if u.decision == "deny"]
    assert u.rule == "rules.yaml:14"  # file:line of the rule


def test_run_mode_argv(ruleset: Ruleset) -> None:
    assert decide(parse_argv(["ls", "$(rm -rf ~)"]), ruleset, ctx()).decision == "allow"
    assert decide(parse_argv(["printenv"]), ruleset, ctx()).decision == "deny"


@pytest.mark.parametrize(
    ("pattern", "text", "match"),
    [
        ("kubectl get", "kubectl get pods", True),
        ("kubectl get", "kubectl get", True),
        ("kubectl get", "kubectl getaway", False),
        ("kubectl get", "echo kubectl get", False),
        ("kubectl  get", "kubectl get pods", True),  # a run of blanks is one word break
        ("psql * -c", "psql -d app -c SELECT 1", True),
        ("kubectl exec.*-- rm -rf", "kubectl exec web-0 -- rm -rf /data", True),
        ("SELECT * FROM", "SELECT id FROM t", True),
        ("a.b", "axb", False),  # every other character is literal
    ],
)
def test_pattern_semantics(pattern: str, text: str, match: bool) -> None:
    import re

    assert bool(re.match(pattern_regex(pattern), text)) == match


@pytest.mark.parametrize(
    ("glob", "path", "match"),
    [
        ("/etc/**", "/etc", True),  # dir/** matches dir itself
        ("/etc/**", "/etc/cron.d/x", True),
        ("/etc/*", "/etc/cron.d/x", False),
        ("**/.env", "/srv/app/.env", True),
        ("**/.env", "/.env", True),
        (".env", "/srv/app/.env", True),  # a relative rule glob matches at any depth
        ("/proc/*/environ", "/proc/1/environ", True),
        ("/proc/*/environ", "/proc/*/environ", True),  # a path holding a glob, as written
        ("**/id_rsa*", "/home/a/.ssh/id_rsa.pub", True),
    ],
)
def test_glob_semantics(glob: str, path: str, match: bool) -> None:
    import re

    assert bool(re.match(glob_regex(glob), path)) == match


@pytest.mark.parametrize(
    ("glob", "exact"),
    [
        ("/dev/null", "/dev/null"),
        ("  /etc/shadow ", "/etc/shadow"),
        ("/a b/c.d+(x)", "/a b/c.d+(x)"),  # regex metacharacters are plain text in a glob
        ("/etc/*", None),
        ("/tmp/[ab]", None),
        ("~/.netrc", None),  # $HOME is known only at run time
        ("./build", None),
        (".env", None),
    ],
)
def test_a_path_rule_naming_one_path_is_matched_as_a_string(glob: str, exact: str | None) -> None:
    """Such a rule's regex says equality; the string test agrees with it on
    every path tried, and a rule with `except` keeps its regex."""
    import re

    from xguard.policy.rules import compile_rule

    rule = compile_rule({"path": glob, "action": "deny", "line": 1}, "t.yaml")
    assert rule.get("exact") == exact
    if exact is None:
        return
    for path in (exact, exact + "/", exact + "x", exact + "/x", exact[:-1]):
        assert (path == exact) == bool(re.match(rule["rx"], path)), path
    with_except = compile_rule({"path": glob, "action": "deny", "except": ["/x"], "line": 1}, "t")
    assert "exact" not in with_except
