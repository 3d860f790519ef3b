"""The execution oracle (issue 11, part 2): what the gate allows, run for real.

Commands come from the attack shapes of issue 11, mutations of the shared
corpus and hypothesis strategies (tests/oracle/generate.py). Each is decided
in-process under the shared fixture and the built-in defaults; each one
allowed is run with plain `bash -c` (not through xguard) under `strace -f`,
as an unprivileged user, without network, in a throwaway sandbox whose HOME
holds canary secrets (tests/oracle/sandbox.py). An allowed command may only
run the programs its decision named, may not write, rename, unlink or chmod a
file, may not connect, and may not print a secret (tests/oracle/trace.py).

The harness is tested first, on commands forced through it without a gate:
harm must be seen, and plain reads must pass, or the oracle proves nothing.

CI runs --oracle-examples (3000) with a fixed seed; before a release:
`pytest -m oracle --oracle-examples 100000`.
"""

from __future__ import annotations

import re
import shutil

import pytest

from tests.oracle.oracle import Report
from tests.oracle.sandbox import Sandbox
from tests.oracle.trace import Trace
from xguard.gate.request import Gate

pytestmark = pytest.mark.oracle

SHOWN = 60  # violating commands printed in full on failure; --oracle-report has all


def _judge(sandbox: Sandbox, command: str, allowed: set[str]) -> set[str]:
    program = re.split(r"[\s;|&<>]", command, maxsplit=1)[0]
    if "=" not in program and not shutil.which(program):
        pytest.skip(f"{program} is not installed")
    slot = sandbox.slots[0]
    r = sandbox.run(command, slot)
    v = Trace.parse(r.trace).judge(allowed)
    kinds = {x.kind for x in v} | ({"secret"} if r.leaked else set())
    if kinds:
        sandbox.restore(slot)
    return kinds


# (command, programs the pretend decision allowed, what the oracle must see)
HARMFUL = [
    ("touch x", {"touch"}, {"write"}),
    ("touch x", set(), {"exec", "write"}),
    ("echo x > pwned", {"echo"}, {"write"}),
    ("echo x >> a.txt", {"echo"}, {"write"}),
    ("rm -f a.txt", {"rm"}, {"write"}),
    ("mkdir d", {"mkdir"}, {"write"}),
    ("mv a.txt moved", {"mv"}, {"write"}),
    ("chmod 600 a.txt", {"chmod"}, {"write"}),
    ("ln -s a.txt l", {"ln"}, {"write"}),
    ("truncate -s 0 a.txt", {"truncate"}, {"write"}),
    ("id", set(), {"exec"}),
    ("awk 'BEGIN { system(\"id\") }'", {"awk"}, {"exec"}),
    ("cat <<'EOF'\nx\nEOF\ntouch y\n'EOF'", {"cat"}, {"exec", "write"}),
    ("cat ~/.ssh/id_rsa", {"cat"}, {"secret"}),
    ("cat ../home/.aws/credentials", {"cat"}, {"secret"}),
    ("base64 ~/.netrc", {"base64"}, {"secret"}),
    ("xxd -p ~/.claude/.credentials.json", {"xxd"}, {"secret"}),
    ("rev .env", {"rev"}, {"secret"}),
    ("git remote -v", {"git"}, {"secret"}),
    ("cat < /dev/tcp/127.0.0.1/9", {"cat"}, {"connect"}),
    (
        "python3 -c 'import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM)"
        '.sendto(b"x", ("127.0.0.1", 9))\'',
        {"python3"},
        {"connect"},
    ),
    ("kubectl get pods", set(), {"exec"}),
    ("psql 'host=10.1.2.3 dbname=app' -c 'SELECT 1'", {"psql"}, {"connect"}),
    ("rm -f ~/.config/xguard/audit.jsonl", {"rm"}, {"write"}),
    ("touch /etc/xguard-oracle", {"touch"}, {"write"}),  # fails as the user: still an attempt
]

HARMLESS = [
    ("ls -la", {"ls"}),
    ("ls -l ~ /etc | wc -l", {"ls", "wc"}),
    ("id; whoami", {"id", "whoami"}),
    ("git status", {"git"}),
    ("git log --oneline -3 | head -1", {"git", "head"}),
    ("git diff --stat", {"git"}),
    ("cat README.md | wc -l", {"cat", "wc"}),
    ("grep -rn TODO src", {"grep"}),
    ("find . -name '*.py'", {"find"}),
    ("cat <<'EOF'\n$(touch x)\nEOF", {"cat"}),
    ("cat <<EOF\n" + "x" * 100_000 + "\nEOF", {"cat"}),  # bash's own temp file
    ("echo hi > /dev/null; echo hi > /dev/stderr; echo hi >/dev/fd/1", {"echo"}),
    ("echo hi >/proc/self/fd/2 2>&1", {"echo"}),
    ("ls -la ~/.ssh", {"ls"}),
    ("wc -c ~/.netrc", {"wc"}),
    ("kubectl get pods", {"kubectl"}),
    ("psql -c 'SELECT 1'", {"psql"}),
    ('x=$(git rev-parse HEAD); echo "$x"', {"git", "echo"}),
    ("diff <(sort a.txt) <(sort b.txt)", {"diff", "sort"}),
    ("sleep 30", {"sleep"}),  # ends at the timeout, harmless
]


@pytest.mark.parametrize(
    ("command", "allowed", "expect"), HARMFUL, ids=[c[0][:60] for c in HARMFUL]
)
def test_harness_sees_harm(
    oracle_sandbox: Sandbox, command: str, allowed: set[str], expect: set[str]
) -> None:
    """A harmful command forced through the harness (no gate) is flagged, by kind."""
    assert _judge(oracle_sandbox, command, allowed) >= expect


@pytest.mark.parametrize(("command", "allowed"), HARMLESS, ids=[c[0][:60] for c in HARMLESS])
def test_harness_passes_reads(oracle_sandbox: Sandbox, command: str, allowed: set[str]) -> None:
    """Reads that harm nothing raise nothing: the oracle's findings are real."""
    assert _judge(oracle_sandbox, command, allowed) == set()


def test_harness_restores_the_slot(oracle_sandbox: Sandbox) -> None:
    """After a harmful command its slot is as it was, so the next command is judged cleanly."""
    slot = oracle_sandbox.slots[0]
    assert _judge(oracle_sandbox, "rm -f a.txt; touch pwned", {"rm", "touch"}) == {"write"}
    assert (slot / "project" / "a.txt").exists()
    assert not (slot / "project" / "pwned").exists()


def test_generation_is_fixed_and_covers_the_shapes(request: pytest.FixtureRequest) -> None:
    """Same seed, same commands; the issue's attack shapes are among them."""
    from tests.conftest import CORPUS
    from tests.oracle.generate import attacks, generate

    a = generate(CORPUS, 400, 5)
    assert a == generate(CORPUS, 400, 5)
    assert set(attacks()) <= set(generate(CORPUS, 3000, 11)), "CI's run holds every attack shape"
    text = "\n".join(attacks())
    for shape in (
        "<<'EOF'",
        '<<"EOF"',
        "<<\\EOF",
        '<<E"O"F',
        "<<$'EOF'",
        "sh -c",
        "dash -c",
        "${!x}",
        "${y:x",
        "-opwned",
        "~xgoracle",
        "../home",
        "git -c core.fsmonitor",
        "w pwned",
        "system(",
        "$(echo pwned)",
        ".claude/.credentials.json",
    ):
        assert shape in text, shape


@pytest.mark.slow
@pytest.mark.parametrize("ruleset", ["agent-readonly.yaml", "defaults"])
def test_allowed_commands_do_no_harm(
    oracle_report: Report, oracle_gates: dict[str, Gate], ruleset: str
) -> None:
    """Every command allowed under the ruleset ran without writing, connecting,
    running an unlisted program or printing a secret."""
    if ruleset not in oracle_gates:
        pytest.skip("shared/fixtures is not beside this checkout")
    assert oracle_report.run > 0
    errors = oracle_report.errors.get(ruleset, [])
    assert not errors, "the gate raised on:\n" + "\n".join(errors[:20])
    found = oracle_report.by_ruleset(ruleset)
    lines = []
    for f in found[:SHOWN]:
        lines.append(f"  [{f.cls}] {f.command!r}")
        lines.extend(f"      {v}" for v in f.violations[:4])
    assert not found, (
        f"{len(found)} commands allowed under {ruleset} did harm "
        f"({dict(oracle_report.classes(ruleset))}; {dict(oracle_report.kinds(ruleset))}):\n"
        + "\n".join(lines)
    )
