"""End to end through the installed console script: a real bash runs the
commands; exit status, signals, stdout, the scrubbed environment, the audit
chain and fail-closed config handling are checked as a user would see them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import xguard_exe
import itertools

RULES = """\
default: require_approval
rules:
  - {pattern: "echo", action: allow, dynamic: allow}
  - {pattern: "true", action: allow}
  - {pattern: "false", action: allow}
  - {pattern: "cat", action: allow}
  - {pattern: "env", action: allow}
  - {pattern: "sleep", action: allow}
  - {pattern: "sh -c", action: allow}
  - {pattern: "exit", action: allow}
  - {pattern: "kill", action: allow, dynamic: allow}
  - {pattern: "yes", action: allow}
  - {pattern: "head", action: allow}
  - {pattern: "printenv", action: deny, reason: "prints secrets"}
  - {pattern: "printf", action: allow}
  - {path: "/dev/null", access: write, action: allow}
env:
  keep: [PATH, HOME, LANG]
  set: {PAGER: cat}
"""


@pytest.fixture
def home(xguard_home: Path) -> Path:
    xguard_home.mkdir(parents=True, exist_ok=True)
    (xguard_home / "rules.yaml").write_text(RULES)
    return xguard_home


def xg(
    *args: str, env: dict[str, str] | None = None, input: bytes | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[bytes]:
    # No test here waits for a reviewer: a command needing approval ends at once.
    e = {**os.environ, "XGUARD_WAIT": "0", **(env or {})}
    return subprocess.run(
        [*xguard_exe(), *args],
        env=e,
        input=input,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def audit_lines(home: Path) -> list[dict[str, Any]]:
    f = home / "audit" / "audit.jsonl"
    return [json.loads(x) for x in f.read_text().splitlines()]


def test_allowed_command_runs_with_stdout_untouched(home: Path) -> None:
    p = xg("-c", "echo hello; printf 'a\\0b'")
    assert p.returncode == 0
    assert p.stdout == b"hello\na\x00b"
    assert p.stderr == b""


@pytest.mark.parametrize(
    "flags",
    [
        ["-c"],
        ["-lc"],
        ["-l", "-c"],
        ["--login", "-c"],
        ["-ic"],
        ["-e", "-c"],
        ["-o", "pipefail", "-c"],
        ["-c", "-l"],
    ],
)
def test_shell_flag_shapes(home: Path, flags: list[str]) -> None:
    p = xg(*flags, "echo ok")
    assert (p.returncode, p.stdout) == (0, b"ok\n"), p.stderr


def test_pipefail_and_errexit_reach_bash(home: Path) -> None:
    assert xg("-o", "pipefail", "-c", "false | true").returncode == 1
    assert xg("-c", "false | true").returncode == 0
    assert xg("-e", "-c", "false; echo after").stdout == b""


def test_positional_parameters(home: Path) -> None:
    p = xg("-c", 'echo "$0 $1 $2"', "name", "a", "b")
    assert p.stdout == b"name a b\n"


def test_exit_status_passes_through(home: Path) -> None:
    assert xg("-c", "exit 3").returncode == 3
    assert xg("-c", "false").returncode == 1


def test_signal_death_is_128_plus_n(home: Path) -> None:
    p = xg("-c", "kill -TERM $$")
    assert p.returncode == 128 + signal.SIGTERM


def test_sigterm_to_xguard_reaches_the_command(home: Path, tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [*xguard_exe(), "-c", "sleep 30"], env=os.environ.copy(), stderr=subprocess.PIPE
    )
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 128 + signal.SIGTERM
    rec = [r for r in audit_lines(home) if r["event"] == "exit"]
    assert rec and rec[-1]["exit_code"] == 128 + signal.SIGTERM


def test_sigpipe_restored_in_child(home: Path) -> None:
    # Python ignores SIGPIPE; if the child inherited that, `yes` would never end.
    p = xg("-c", "yes | head -n 2", timeout=20)
    assert (p.returncode, p.stdout) == (0, b"y\ny\n")


def test_stdin_is_the_callers(home: Path) -> None:
    p = xg("-c", "cat", input=b"piped in\n")
    assert p.stdout == b"piped in\n"


def test_script_on_stdin(home: Path) -> None:
    p = xg("-s", input=b"echo one\necho two\n")
    assert (p.returncode, p.stdout) == (0, b"one\ntwo\n")
    p = xg(input=b"echo three\n")
    assert p.stdout == b"three\n"


def test_secrets_never_reach_the_command(home: Path) -> None:
    p = xg(
        "-c",
        "env",
        env={"AWS_SECRET_ACCESS_KEY": "s3cr3t", "GITHUB_TOKEN": "ghp_x", "LANG": "C.UTF-8"},
    )
    out = p.stdout.decode()
    assert "s3cr3t" not in out and "ghp_x" not in out
    names = {line.split("=", 1)[0] for line in out.splitlines()}
    # XGUARD_GATED marks a gated child so approving verbs refuse to run there.
    assert names <= {
        "PATH",
        "HOME",
        "LANG",
        "PAGER",
        "PWD",
        "SHLVL",
        "_",
        "OLDPWD",
        "XGUARD_GATED",
    }, names
    assert "PAGER=cat" in out and "LANG=C.UTF-8" in out


def test_run_mode_execs_argv_without_a_shell(home: Path) -> None:
    p = xg("run", "--", "echo", "$(printenv)", ";", "rm", "-rf", "/")
    assert (p.returncode, p.stdout) == (0, b"$(printenv) ; rm -rf /\n")


def test_denied_command_never_runs(home: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    p = xg("-c", f"printenv; echo x > {marker}")
    assert p.returncode == 77
    assert p.stderr.decode().startswith("xguard: denied: printenv; echo x >")
    assert "prints secrets" in p.stderr.decode()
    assert not marker.exists()


@pytest.mark.parametrize(
    "cmd",
    [
        "/usr/bin/printenv",
        "env printenv",
        "echo $(printenv)",
        "p''rintenv",
        "\\printenv",
        "$'\\x70rintenv'",
        "sh -c printenv",
    ],
)
def test_deny_cannot_be_dodged(home: Path, cmd: str) -> None:
    assert xg("-c", cmd).returncode == 77


def test_require_approval_does_not_run_without_a_reviewer(home: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    p = xg("-c", f"touch {marker}", env={"XGUARD_WAIT": "0"})
    assert p.returncode == 75
    assert b"xguard: pending approval " in p.stderr
    assert b"go on with other work and run it again later" in p.stderr
    assert not marker.exists()


def test_audit_chain_is_valid_and_complete(home: Path) -> None:
    xg("-c", "echo one")
    xg("-c", "printenv")
    xg("-c", "false")
    recs = audit_lines(home)
    assert [
        (r["event"], r["decision"] if r["event"] == "decision" else r["exit_code"]) for r in recs
    ] == [
        ("decision", "allow"),
        ("exit", 0),
        ("decision", "deny"),
        ("decision", "allow"),
        ("exit", 1),
    ]
    assert recs[0]["prev"] == "0" * 64
    for a, b in itertools.pairwise(recs):
        assert b["prev"] == a["hash"] and b["seq"] == a["seq"] + 1
    raw = (home / "audit" / "audit.jsonl").read_bytes().splitlines()
    import hashlib

    for line in raw:
        body, _, h = line.rpartition(b',"hash":"')
        assert hashlib.sha256(body).hexdigest() == h[:-2].decode()
    first = recs[0]
    for key in (
        "ts",
        "seq",
        "event",
        "id",
        "session",
        "profile",
        "user",
        "host",
        "pid",
        "cwd",
        "command",
        "units",
        "decision",
        "rules",
        "prev",
        "hash",
    ):
        assert key in first
    assert list(first)[-1] == "hash"


@pytest.mark.parametrize(
    ("content", "line", "what"),
    [
        ("rules:\n  - pattern: ls\n    acton: allow\n", 3, "unknown key 'acton'"),
        ("rules:\n  - pattern: ls\n    action: alow\n", 3, "must be one of"),
        ("rules:\n  - regex: '(unclosed'\n    action: deny\n", 2, "invalid regex"),
        ("rules: [\n", 2, "invalid YAML"),
        ("", 1, "empty file"),
        (
            "rules:\n  - {pattern: ls, action: allow}\n  - {pattern: ls, action: allow, pattern: rm}\n",
            3,
            "duplicate key",
        ),
        ("default: maybe\n", 1, "must be one of"),
        ("rules:\n  - {action: allow}\n", 2, "exactly one of pattern, regex, path"),
        # issue 11: confinement settings
        ("rules:\n  - pattern: curl\n    action: allow\n    network: 1\n", 4, "must be one of"),
        ("rules:\n  - {pattern: curl, action: allow, network: yes}\n", 2, "must be one of"),
        ("rules:\n  - pattern: make\n    action: allow\n    confine: no-box\n", 4, "true or false"),
        ("rules:\n  - {pattern: cd, action: deny, if_confined: true}\n", 2, "if_confined"),
        ("rules:\n  - {path: /x, action: allow, if_confined: true}\n", 2, "if_confined"),
        ("rules:\n  - {path: /x, action: allow, network: allow}\n", 2, "command rules"),
        (
            "rules:\n  - {pattern: x, action: allow, if_confined: true, confine: false}\n",
            2,
            "contradict",
        ),
        ("default: allow\nconfine: maybe\n", 2, "auto, required, off"),
        ("default: allow\nconfine: true\n", 2, "auto, required, off"),
        ("default: allow\nconfine_approved: 1\n", 2, "true or false"),
    ],
)
def test_bad_rules_fail_closed(
    home: Path, tmp_path: Path, content: str, line: int, what: str
) -> None:
    (home / "rules.yaml").write_text(content)
    marker = tmp_path / "ran"
    p = xg("-c", f"echo x > {marker}")
    assert p.returncode == 78
    err = p.stderr.decode()
    assert err.startswith(f"xguard: config error: {home / 'rules.yaml'}:{line}: "), err
    assert what in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    assert not marker.exists()


def test_unreadable_rules_fail_closed(home: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads everything")
    (home / "rules.yaml").chmod(0)
    assert xg("-c", "echo x").returncode == 78


def test_missing_home_is_created_private(xguard_home: Path) -> None:
    assert not xguard_home.exists()
    p = xg("-c", "true")
    assert p.returncode in (0, 75)
    assert (xguard_home.stat().st_mode & 0o777) == 0o700


def test_unwritable_audit_log_means_nothing_runs(home: Path, tmp_path: Path) -> None:
    (home / "audit").mkdir(parents=True, exist_ok=True)
    (home / "audit" / "audit.jsonl").mkdir()  # a folder where the log file should be: cannot append
    marker = tmp_path / "ran"
    p = xg("-c", f"echo x > {marker}; true")
    assert p.returncode in (70, 78)
    assert b"xguard: " in p.stderr and b"Traceback" not in p.stderr
    assert not marker.exists()


def test_check_exit_codes_and_json(home: Path) -> None:
    assert xg("check", "-c", "echo hi").returncode == 0
    assert xg("check", "-c", "rm -rf /").returncode == 1
    assert xg("check", "-c", "printenv").returncode == 2
    p = xg("check", "--json", "-c", "echo hi && printenv")
    d = json.loads(p.stdout)
    assert d["decision"] == "deny"
    assert set(d) == {"decision", "units", "reasons"}
    assert all(set(u) == {"kind", "text", "decision", "rule", "why"} for u in d["units"])
    assert not (home / "audit" / "audit.jsonl").exists()  # check runs nothing and logs nothing


def test_check_batch(home: Path, tmp_path: Path) -> None:
    f = tmp_path / "in.jsonl"
    f.write_text(
        '{"command": "echo hi", "id": 1}\n{"command": "printenv", "id": 2}\n{"command": "rm x", "id": 3}\n'
    )
    p = xg("check", "--batch", str(f))
    out = [json.loads(x) for x in p.stdout.splitlines()]
    assert [(o["id"], o["decision"]) for o in out] == [
        (1, "allow"),
        (2, "deny"),
        (3, "require_approval"),
    ]
    assert p.returncode == 0
    p = xg("check", "--batch", "-", input=b'{"command": "echo"}\n')
    assert json.loads(p.stdout)["decision"] == "allow"


def test_usage_errors_are_64(home: Path) -> None:
    assert xg("-c").returncode == 64
    assert xg("run").returncode == 64
    assert xg("check").returncode == 64
    assert xg("nosuchverb").returncode == 64


def test_version_and_help(home: Path) -> None:
    from xguard import __version__

    assert xg("--version").stdout.decode().strip().endswith(__version__)
    assert b"Examples" in xg("--help").stdout


def test_symlinks_are_followed_for_path_rules(home: Path, tmp_path: Path) -> None:
    """A link to a secret is the secret; a link into xguard's files is xguard's files."""
    (home / "rules.yaml").write_text(
        RULES.replace("env:\n", "  - {path: '**/secret.key', action: deny}\nenv:\n", 1)
    )
    secret = tmp_path / "vault" / "secret.key"
    secret.parent.mkdir()
    secret.write_text("s3cr3t")
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes").symlink_to(secret)
    (work / "log").symlink_to(home / "audit" / "audit.jsonl")
    p = subprocess.run(
        [*xguard_exe(), "-c", "cat notes"],
        cwd=work,
        capture_output=True,
        check=False,
        env={**os.environ, "XGUARD_WAIT": "0"},
    )
    assert p.returncode == 77 and b"s3cr3t" not in p.stdout
    p = subprocess.run(
        [*xguard_exe(), "-c", "echo x > log"],
        cwd=work,
        capture_output=True,
        check=False,
        env={**os.environ, "XGUARD_WAIT": "0"},
    )
    assert p.returncode == 77 and b"self-protection" in p.stderr


@pytest.mark.parametrize(
    ("command", "code"),
    [
        ("cat /dev/stdin", 0),
        ("wc -l < /dev/fd/0", 0),
        ("ls > /dev/stdin", 1),
        ("ls >> /dev/fd/0", 1),
        ("echo x | tee /proc/self/fd/0", 2),
    ],
)
def test_writing_to_stdin_writes_the_file_given_as_input(
    xguard_home: Path, tmp_path: Path, command: str, code: int
) -> None:
    """Opening /dev/stdin anew opens the caller's input file: for writing, that
    is a write to that file (under the built-in defaults, no rules file)."""
    xguard_home.mkdir(parents=True, exist_ok=True)
    given = tmp_path / "input.txt"
    given.write_text("the caller's file\n")
    with open(given, "rb") as stdin:
        p = subprocess.run(
            [*xguard_exe(), "check", "-c", command],
            env={**os.environ, "XGUARD_WAIT": "0"},
            stdin=stdin,
            capture_output=True,
            timeout=30,
            check=False,
        )
    assert p.returncode == code, p.stdout
    with open(given, "rb") as stdin:
        ran = subprocess.run(
            [*xguard_exe(), "-c", command],
            env={**os.environ, "XGUARD_WAIT": "0"},
            stdin=stdin,
            capture_output=True,
            timeout=30,
            check=False,
        )
    assert given.read_text() == "the caller's file\n"
    assert ran.returncode == {0: 0, 1: 75, 2: 77}[code], ran.stderr
