"""The hot path never imports the heavy libraries (DESIGN-NOTES: every
millisecond is paid on each of an agent's hundreds of commands).

Each verb runs in a fresh interpreter after the rules cache is warm, then the
test lists which forbidden modules ended up in sys.modules (the way pip's
test_no_network_imports checks its network stack)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

FORBIDDEN = [
    "click",
    "rich",
    "yaml",
    "filelock",
    "platformdirs",
    "_hashlib",
    "subprocess",
    "threading",
    # issue 15: the database driver and the web stack, never on the hot path
    "psycopg",
    "starlette",
    "uvicorn",
]

PROBE = r"""
import os, sys
# Whatever the interpreter's own start-up (site, .pth files) loaded is not ours.
BASELINE = set(sys.modules)
os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # the command's own output is not ours to read
stdin = sys.argv[1]
if stdin:
    import io
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin.encode()))
from xguard.__main__ import main
try:
    main(sys.argv[2:])
except SystemExit:
    pass
found = sorted(m for m in {forbidden} if m in sys.modules and m not in BASELINE)
os.write(2, ("\nFOUND=" + ",".join(found) + "\n").encode())
"""


def _probe(
    args: list[str],
    home: Path,
    stdin: str = "",
    extra_env: dict[str, str] | None = None,
    forbidden: list[str] = FORBIDDEN,
) -> list[str]:
    env = {
        "XGUARD_HOME": str(home),
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        **(extra_env or {}),
    }
    code = PROBE.replace("{forbidden}", repr(forbidden))
    # Warm the rules cache first (building it is allowed to import yaml).
    for _ in range(2):
        p = subprocess.run(
            [sys.executable, "-c", code, stdin, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    line = [ln for ln in p.stderr.splitlines() if ln.startswith("FOUND=")]
    assert line, p.stderr
    return [m for m in line[-1][len("FOUND=") :].split(",") if m]


@pytest.mark.parametrize(
    "args",
    [
        ["-c", "true"],
        ["-c", "ls -la"],
        ["-lc", "git status && echo ok"],
        ["-c", "printenv"],  # denied
        ["run", "--", "true"],
        ["check", "-c", "ls"],
        ["check", "--json", "-c", "rm -rf ~"],
    ],
    ids=" ".join,
)
def test_hot_path_imports_nothing_heavy(args: list[str], xguard_home: Path) -> None:
    assert _probe(args, xguard_home) == []


def test_hook_imports_nothing_heavy(xguard_home: Path) -> None:
    hook = json.dumps(
        {
            "session_id": "s1",
            "cwd": "/tmp",
            "hook_event_name": "PreToolUse",
            "tool_name": "Bash",
            "tool_input": {"command": "ls"},
        }
    )
    assert _probe(["hook", "claude-code"], xguard_home, stdin=hook) == []


@pytest.mark.parametrize(
    ("runtime", "event", "tool"),
    [("codex", "PreToolUse", "Bash"), ("gemini", "BeforeTool", "run_shell_command")],
)
def test_other_hooks_import_nothing_heavy(
    runtime: str, event: str, tool: str, xguard_home: Path
) -> None:
    hook = json.dumps(
        {
            "session_id": "s1",
            "cwd": "/srv",  # the runtime's cwd in the hook input; it need not exist
            "hook_event_name": event,
            "tool_name": tool,
            "tool_input": {"command": "ls"},
        }
    )
    assert _probe(["hook", runtime], xguard_home, stdin=hook) == []


# An allowed plain command under the built-in rules pays for none of these
# either (each costs milliseconds): the launcher, the rules cache (marshal),
# the audit writer (its own JSON) and the literal prefilters keep them out.
LEAN = [
    *FORBIDDEN,
    "re",
    "json",
    "pathlib",
    "enum",
    "typing",
    "collections",  # ~3 ms with operator, keyword and reprlib: annotations only need it for mypy
    "dataclasses",
    "inspect",
    "tree_sitter",
    # xguard's own modules that only some commands need
    "xguard.adapters.wrappers",  # a runtime's wrapper or start-up step
    "xguard.gate.sessions",  # sessions or limits configured, or a session given
]


@pytest.mark.parametrize(
    "args",
    [["-c", "true"], ["-c", "ls -la"], ["-c", "cat README.md"], ["run", "--", "true"]],
    ids=" ".join,
)
def test_allowed_plain_command_is_lean(args: list[str], xguard_home: Path) -> None:
    assert _probe(args, xguard_home, forbidden=LEAN) == []


def test_shared_queue_keeps_the_driver_off_an_allowed_command(xguard_home: Path) -> None:
    # With a postgres queue configured, an allowed command's audit copy is made by
    # a detached process (xguard/audit/dbsync.py): the command itself loads nothing.
    xguard_home.mkdir(parents=True, exist_ok=True)
    (xguard_home / "config.yaml").write_text(
        'queue:\n  postgres: "host=127.0.0.1 port=9 dbname=x connect_timeout=1"\n'
    )
    assert _probe(["-c", "true"], xguard_home) == []


# A command that needs the full tree-sitter parse loads the two extension
# modules directly (xguard/shell/tsload.py): the packages' `__init__` would
# bring importlib.resources (pathlib, tempfile, shutil, zipfile) and typing,
# about 20 ms on every such command.
FULL_PARSE_LEAN = [
    *FORBIDDEN,
    "importlib.resources",
    "typing",
    "pathlib",
    "tempfile",
    "shutil",
    "zipfile",
    "tree_sitter",  # the package's __init__; tree_sitter._binding is expected
    "tree_sitter_bash",
]

FULL_PARSE = [
    ["-c", "ls > /dev/null"],
    ["-c", "echo $(git rev-parse HEAD)"],
    ["-c", "git log -1 > /dev/null && echo `date`"],
    ["-c", "diff <(sort a) <(sort b)"],  # denied or asked: the parse is the same
    ["check", "-c", "cat x > y"],
]


@pytest.mark.parametrize("args", FULL_PARSE, ids=" ".join)
def test_full_parse_is_lean(args: list[str], xguard_home: Path) -> None:
    binding = ["tree_sitter._binding", "tree_sitter_bash._binding"]
    # The command did reach tree-sitter (not the fast lexer), so the check below means something.
    assert _probe(args, xguard_home, forbidden=binding) == binding
    assert _probe(args, xguard_home, forbidden=FULL_PARSE_LEAN) == []


# Common commands load neither `re` nor `enum` (~10 ms): tree-sitter's
# extension starts with stand-ins for them (xguard/shell/tsload.py), a path
# rule that names one path (`/dev/null`) is matched as a string, and a regex
# rule read from the cache (every `git` command meets several under the
# defaults) goes to the regex engine with what re.compile worked out when the
# cache was written. `full`: the command needs tree-sitter's full parse.
NO_REGEX_MODULE = [
    (["-c", "ls > /dev/null"], True),
    (["-c", "ls -la 2>&1 | head -5"], True),
    (["-c", "ls -la 2>/dev/null"], True),
    (["check", "-c", "cat README.md > /dev/null 2>&1"], True),
    (["-c", "git status --porcelain"], False),
    (["-c", "git log --oneline -5 | head -3"], False),
    (["-c", "echo $(git rev-parse HEAD)"], True),
    (["check", "-c", "cat x > y"], True),
]


@pytest.mark.parametrize(
    ("args", "full"), NO_REGEX_MODULE, ids=lambda v: " ".join(v) if isinstance(v, list) else ""
)
def test_common_commands_load_no_regex_module(
    args: list[str], full: bool, xguard_home: Path
) -> None:
    binding = ["tree_sitter._binding"]
    assert _probe(args, xguard_home, forbidden=binding) == (binding if full else [])
    assert _probe(args, xguard_home, forbidden=[*FULL_PARSE_LEAN, "re", "enum"]) == []


@pytest.mark.parametrize(
    "args", [["pending"], ["pending", "--json"], ["pending", "--all", "--json"]]
)
def test_polling_the_queue_needs_no_click(args: list[str], xguard_home: Path) -> None:
    """A reviewer's script runs `pending --json` in a loop: no click, no rich."""
    assert _probe(args, xguard_home, forbidden=["click", "rich"]) == []


def test_the_plain_verbs_take_exactly_their_faces_options() -> None:
    """The lean dispatch and the click face declare the same flags: a flag
    added to one and not the other would behave differently by route."""
    from xguard.__main__ import PLAIN_COMMANDS
    from xguard.commands import faces

    for verb, (_module, name, flags) in PLAIN_COMMANDS.items():
        face = getattr(faces, name)
        declared = {o: p.name for p in face.params for o in p.opts}
        assert declared == flags, verb
