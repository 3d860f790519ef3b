"""Property tests: the parser never crashes, never takes long, never lets a
command be allowed while one of its units is not, and its fast lexer agrees
with the tree-sitter path on every input it accepts."""

from __future__ import annotations

import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xguard._record import asdict
from xguard.policy.decide import Context, decide
from xguard.policy.rules import Ruleset, compile_config
from xguard.shell.parser import parse
from xguard.shell.words import fast_list, fast_words

SHELL_ALPHABET = st.sampled_from(
    [
        *list("abcdefgrmlsxyz01-_./~*?[]{},=:@%+ \t\n;&|<>()$`'\"\\#!"),
        "$(",
        "`",
        "<(",
        "<<EOF\n",
        "\nEOF\n",
        "&&",
        "||",
        "2>&1",
        "${",
        "}",
        "$'",
        "\\\n",
        "\r",
        "\x00",
        "\u200b",
        "é",
    ]
)
SHELLISH = st.lists(SHELL_ALPHABET, max_size=60).map("".join)
WORDS = st.sampled_from(
    [
        "ls",
        "rm",
        "git",
        "status",
        "-rf",
        "~",
        "/etc/x",
        "$(rm x)",
        "'a b'",
        ";",
        "|",
        "&&",
        "bash",
        "-c",
        "eval",
        "xargs",
        "sudo",
        "env",
        "X=1",
        ">",
        "out",
        "<<EOF",
        "EOF",
        "\n",
        "printenv",
        "cat",
        ".env",
        "(",
        ")",
        "{",
        "}",
        "`",
        "$X",
        "*",
        "psql",
        "'SELECT 1; DROP t'",
    ]
)
COMMANDLIKE = st.lists(WORDS, max_size=14).map(" ".join)

RULES = Ruleset(
    compile_config(
        {
            "default": "require_approval",
            "rules": [
                {"pattern": "ls", "action": "allow", "line": 1, "dynamic": "allow"},
                {"pattern": "git status", "action": "allow", "line": 2},
                {"pattern": "cat", "action": "allow", "line": 3},
                {"pattern": "echo", "action": "allow", "line": 4, "dynamic": "allow"},
                {"pattern": "printenv", "action": "deny", "line": 5},
                {"pattern": "SELECT", "action": "allow", "line": 6},
                {"path": "**/.env", "action": "deny", "line": 7},
                {"path": "/dev/null", "access": "write", "action": "allow", "line": 8},
            ],
        },
        "prop.yaml",
        [],
    )
)
CTX = Context(
    cwd="/tmp", home="/home/agent", protected=["/home/agent/.xguard"], exists=lambda p: False
)
STRICT = {"allow": 0, "require_approval": 1, "deny": 2}


# The first parse in a process loads tree-sitter and the parser's lazy
# modules; that one-time cost is not the parse's, so it is paid here.
parse(
    "true; ls > /dev/null <<EOF\n$(x)\nEOF\necho ${a:-b} | sh -c 'awk 1'; psql -h h -c 'SELECT 1'; "
    "sed -n p f; find . -name x; git -c a=b log; xxd -r - out; mysql -e 'DELETE FROM t'"
)


def _check(text: str) -> None:
    # The parser's own work (CPU time of this thread), which other processes on
    # a loaded machine cannot inflate. A one-off cost inside the thread (a garbage
    # collection, a first use of a cached pattern) can still land on one call, so
    # the best of three is kept: a blow-up in the parser is paid every time and
    # still fails it.
    elapsed = float("inf")
    for _ in range(3):
        t0 = time.thread_time()
        units = parse(text)
        elapsed = min(elapsed, time.thread_time() - t0)
        if elapsed < 0.1:
            break
    assert elapsed < 0.1, f"parse took {elapsed * 1000:.0f} ms"
    d = decide(units, RULES, CTX)
    worst = max((STRICT[u.decision] for u in d.units), default=0)
    assert STRICT[d.decision] == worst
    if d.decision == "allow":
        assert all(u.decision == "allow" for u in d.units)
        assert not any(u.floor for u in units)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(SHELLISH)
def test_random_shell_text(text: str) -> None:
    _check(text)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(COMMANDLIKE)
def test_random_commands(text: str) -> None:
    _check(text)


@settings(max_examples=200, deadline=None)
@given(
    COMMANDLIKE,
    st.integers(0, 200),
    st.sampled_from(["\x00", "\r", "\u202e", "\\\n", "$(", "'", '"', "`", "\u00a0"]),
)
def test_mutated_commands(text: str, pos: int, insert: str) -> None:
    pos = min(pos, len(text))
    _check(text[:pos] + insert + text[pos:])


FAST_ALPHABET = st.sampled_from(
    [
        *list("abcgilmrstxy01-_./:,@%+= |&;"),
        "git",
        "ls",
        "rm",
        "status",
        "psql",
        "xargs",
        "sudo",
        "env",
        "nice",
        "bash",
        "-c",
        "find",
        "-exec",
        "export",
        "if",
        "time",
        "cat",
        "cd",
        " && ",
        " || ",
        " | ",
        "; ",
        "cd /tmp",
        "cd ..",
        "'",
        '"',
        "'a b'",
        '"x y"',
        "'*.py'",
        '"~/x"',
        "''",
        '""',
        "'a|b'",
        '"c;d"',
        "'#'",
        '"{a,b}"',
        "'$x'",
        '"$x"',
        "'\\'",
        "'!'",
        "=",
        "--format='%H %s'",
        '"%"',
        "'@'",
        "'e&f'",
        "\t",
        "==",
        " == ",
        "=~",
        " =",
        "!=",
        'x=="y"',
    ]
)


@settings(max_examples=2000, deadline=None)
@given(st.lists(FAST_ALPHABET, min_size=1, max_size=20).map("".join))
def test_fast_lexer_equals_tree_sitter(text: str) -> None:
    """Differential: wherever the fast lexer accepts a line, the units are the
    same as the tree-sitter path's (field by field)."""
    if fast_list(text) is None:
        return
    fast = [asdict(u) for u in parse(text)]
    slow = [asdict(u) for u in parse(text, fast=False)]
    assert fast == slow


def test_fast_lexer_rejects_everything_with_meaning() -> None:
    for text in [
        "a;b",
        "a|b",
        "a&b",
        "a>b",
        "a<b",
        "$x",
        "`x`",
        "'a'",
        '"a"',
        "a\\b",
        "a*",
        "a?",
        "[a]",
        "{a,b}",
        "~/x",
        "a#b",
        "X=1 ls",
        "if x",
        "export A=1",
        "a\nb",
        "a\tb",
        "(a)",
        "!x",
    ]:
        assert fast_words(text) is None, text
    assert fast_words("git status --porcelain=v2") == ["git", "status", "--porcelain=v2"]
    for text in [
        "a & b",
        "a |& b",
        "a ;; b",
        "a &&",
        "&& a",
        "a || ",
        "a | | b",
        "a;&b",
        "'ls' x",
        'g"it" x',
        "echo 'a",
        'echo "$x"',
        'echo "`id`"',
        "echo '\\'",
    ]:
        assert fast_list(text) is None, text
    assert fast_list('grep -rn "TODO: fix" src | wc -l') == [
        ["grep", "-rn", "TODO: fix", "src"],
        ["wc", "-l"],
    ]
    assert fast_list("git status && git diff --stat | tail -1; ls") == [
        ["git", "status"],
        ["git", "diff", "--stat"],
        ["tail", "-1"],
        ["ls"],
    ]
