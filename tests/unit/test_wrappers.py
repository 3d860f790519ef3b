"""Runtime wrappers recognised by structure (xguard/adapters/wrappers.py).

The first rows are texts captured from the real programs (Claude Code
2.1.332 with bash, with zsh and with CLAUDE_CODE_SHELL_PREFIX; Gemini CLI
0.61.0); the rest are the variations an upstream release could bring, and
texts that must not pass for a wrapper.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from xguard.adapters import wrapped_or_startup
from xguard.adapters.wrappers import recognise, sq, startup

SNAP = "/home/u/.claude/shell-snapshots/snapshot-bash-1796538948874-k6txei.sh"
ZSNAP = "/home/u/.claude/shell-snapshots/snapshot-zsh-1796538960289-gfz60v.sh"
UNALIAS = (
    "{ \\builtin unalias -- 'which'; \\builtin unset -f -- 'which'; } >/dev/null 2>&1 || true && "
    "{ \\builtin unalias -- 'unsetenv'; \\builtin unset -f -- 'unsetenv'; } >/dev/null 2>&1 || true"
)
CWD = "/tmp/claude-6af6-cwd"
ZSH_OPTS = (
    "NO_EXTENDED_GLOB NO_BARE_GLOB_QUAL NO_BRACE_CCL NO_MAGIC_EQUAL_SUBST NO_RC_QUOTES NO_EQUALS"
)

# (text, the model's command, statements dropped)
CLAUDE = [
    # 2.1.332, CLAUDE_CODE_SHELL=…bash
    (
        f"source {SNAP} 2>/dev/null || true && \\builtin shopt -u extglob 2>/dev/null || true && "
        f"{UNALIAS} && eval 'ls /' < /dev/null && pwd -P >| {CWD}",
        "ls /",
        4,
    ),
    # 2.1.332, zsh
    (
        f"source {ZSNAP} 2>/dev/null || true && \\builtin setopt {ZSH_OPTS} 2>/dev/null || true && "
        f"{UNALIAS} && eval 'ls / | head -3' < /dev/null && pwd -P >| {CWD}",
        "ls / | head -3",
        4,
    ),
    # 2.1.332, CLAUDE_CODE_SHELL_PREFIX (one statement for bash and zsh)
    (
        f"source {ZSNAP} 2>/dev/null || true && {{ \\builtin shopt -u extglob || \\builtin setopt "
        f"{ZSH_OPTS}; }} >/dev/null 2>&1 || true && {UNALIAS} && eval 'ls /' < /dev/null && "
        f"pwd -P >| {CWD}",
        "ls /",
        4,
    ),
    # 2.1.332, heredoc (no redirect), no snapshot
    (
        f"\\builtin shopt -u extglob 2>/dev/null || true && eval 'cat <<EOF\nmulti\nEOF' && "
        f"pwd -P >| {CWD}",
        "cat <<EOF\nmulti\nEOF",
        1,
    ),
    # the issue's 2.1 prefix form
    (
        "{ shopt -u extglob || setopt NO_EXTENDED_GLOB NO_BARE_GLOB_QUAL; } >/dev/null 2>&1 || true"
        f" && eval 'git status' \\< /dev/null && pwd -P >| {CWD}",
        "git status",
        1,
    ),
    # A release that adds harmless statements of known kinds: still the command alone.
    (
        "builtin shopt -u extglob globstar 2>/dev/null || true && "
        "\\builtin unsetopt GLOB_SUBST 2>/dev/null || true && "
        "{ \\builtin unalias -- 'grep'; \\builtin unset -f -- 'grep'; } &>/dev/null || true && "
        f"eval 'npm test' < /dev/null && pwd -P >| {CWD}",
        "npm test",
        3,
    ),
]


@pytest.mark.parametrize(("text", "command", "dropped"), CLAUDE)
def test_claude_code_wrappers(text: str, command: str, dropped: int) -> None:
    w = recognise(text, {})
    assert w is not None and w.runtime == "claude-code"
    assert (w.command, len(w.dropped), w.extra) == (command, dropped, [])
    # what runs: the command under eval (without the cwd file's fd), then the
    # cwd report to the fd xguard opens on the file; never the snapshot
    stdin = " < /dev/null" if w.meta["stdin_null"] else ""
    assert w.exec_text == f"eval {sq(command)}{stdin} 9>&- && pwd -P >&9"
    assert w.writes == ((CWD, False),)
    assert "source" not in w.exec_text.split("eval ", 1)[0]
    assert "snapshot" not in w.exec_text


# A statement of an unknown kind is kept and decided with the command.
UNKNOWN = [
    ("export CLAUDE_X=1 2>/dev/null || true", "export CLAUDE_X=1 2>/dev/null || true"),
    ("shopt -s extglob && set -o noglob", "set -o noglob"),  # set is not in the table
    ("source /tmp/evil.sh", "source /tmp/evil.sh"),  # not a snapshot
    ("unset -- PATH", "unset -- PATH"),  # a variable, not a function
    (f"source {SNAP} || rm -f x", f"source {SNAP} || rm -f x"),  # more than the snapshot
    ("rm -rf ~/x", "rm -rf ~/x"),  # not even static: the whole text is gated
]


@pytest.mark.parametrize(("head", "kept"), UNKNOWN)
def test_unknown_statements_stay_gated(head: str, kept: str) -> None:
    text = f"{head} && eval 'ls' < /dev/null && pwd -P >| {CWD}"
    w = recognise(text, {})
    if "~" in head:
        assert w is None  # not static: gated whole, as any string
        return
    assert w is not None
    assert w.extra == [kept]
    assert w.command == f"{kept} && eval 'ls' < /dev/null"  # decided and shown
    assert w.exec_text == f"{w.command} 9>&- && pwd -P >&9"


NOT_WRAPPERS = [
    f"eval 'ls' && pwd -P >| {CWD}; rm -rf ~",
    f"eval 'ls' && rm -rf ~ && pwd -P >| {CWD}",
    "eval 'ls' && pwd -P >| /home/u/.bashrc",
    "eval 'ls' && pwd -P >| /tmp/../etc/claude-e4c0-cwd",
    f'eval "$CMD" && pwd -P >| {CWD}',
    f"{{ shopt -u extglob; && eval 'ls' && pwd -P >| {CWD}",
    f"shopt -u extglob\nrm -rf ~ && eval 'ls' && pwd -P >| {CWD}",
]


@pytest.mark.parametrize("text", NOT_WRAPPERS)
def test_not_wrappers(text: str) -> None:
    assert recognise(text, {}) is None


GEMINI_TRAP = "\n(\n  trap 'jobs -p > \"$_bgpids_file\"' EXIT\n"
GEMINI_TAIL = "\n)\n__code=$?\nexit $__code"


GEMINI_PID = "/tmp/gemini-shell-gUnptY/bgpids.tmp"


def gemini(command: str, pid: str = GEMINI_PID, guard: str = "") -> str:
    guard = guard or "shopt -u promptvars nullglob extglob nocaseglob dotglob; "
    return f"{guard}_bgpids_file={pid}{GEMINI_TRAP}{command}{GEMINI_TAIL}"


@pytest.mark.parametrize(
    ("text", "command"),
    [
        (gemini("ls /tmp/rt | head -2"), "ls /tmp/rt | head -2"),  # captured, 0.61.0
        (gemini("cat <<EOF\nx\nEOF"), "cat <<EOF\nx\nEOF"),
        (gemini("ls", guard="shopt -u promptvars nullglob globstar; "), "ls"),  # a new option
        (gemini("ls", pid="'/tmp/gemini-shell-a b/bgpids.tmp'"), None),  # not Gemini's name
        (gemini("ls", pid="/home/u/gemini-shell-abc/bgpids.tmp"), None),  # not a temp folder
        (gemini("ls", guard="export X=1; "), None),  # an unknown statement: gated whole
        (gemini(""), None),
    ],
)
def test_gemini_wrappers(text: str, command: str | None) -> None:
    w = recognise(text, {})
    if command is None:
        assert w is None
        return
    assert w is not None and w.runtime == "gemini" and w.command == command
    # The trap writes to the fd xguard opens on the pid file: the command can
    # neither redirect it by reassigning a variable nor by making the file a
    # symlink; the command runs under eval of its quoted text, without the fd.
    assert w.exec_text == f"(\n  trap 'jobs -p >&9' EXIT\n  eval {sq(command)} 9>&-\n)"
    assert w.writes == ((GEMINI_PID, True),)


def test_gemini_pid_file_may_not_be_a_symlink(tmp_path: Path) -> None:
    d = Path(tempfile.gettempdir()) / f"gemini-shell-x{os.getpid()}"
    d.mkdir(exist_ok=True)
    link = d / "bgpids.tmp"
    link.unlink(missing_ok=True)
    link.symlink_to(tmp_path / "elsewhere")
    try:
        assert recognise(gemini("ls", pid=str(link)), {}) is None
    finally:
        link.unlink()
        d.rmdir()


@pytest.mark.parametrize(
    ("text", "flags", "kind"),
    [
        ("env", [], "env-probe"),
        (
            "SNAPSHOT_FILE=/home/u/.claude/shell-snapshots/snapshot-bash-1796538948874-k6txei.sh\n"
            '      echo "# Snapshot file" >| "$SNAPSHOT_FILE"\n',
            [],
            "snapshot",
        ),
        (
            'if [ -z "${BASH_ENV-}" ]; then :; fi\n__codex_snapshot_command() {\n  "$@"\n}\n',
            [],
            "snapshot",
        ),
        ('set -e; . "/home/u/.codex/shell_snapshots/0190-aa.tmp-1796"', [], "snapshot-check"),
        ("env", ["-e"], None),
        ("env | grep KEY", [], None),
        ("SNAPSHOT_FILE=/tmp/x.sh\nrm -rf ~", [], None),
        (". /home/u/.bashrc", [], None),
    ],
)
def test_startup_steps(text: str, flags: list[str], kind: str | None) -> None:
    step = startup(text, flags)
    assert (step.kind if step else None) == kind


def test_the_shell_front_end_looks_closer_at_every_wrapper_it_must_read() -> None:
    """The shell front end imports this module only when the cheap test says a
    text may be a wrapper or a start-up step: it must say so for every text
    read here, and not for ordinary commands."""
    wrapped = [text for text, _, _ in CLAUDE] + [
        gemini("ls /tmp/rt | head -2"),
        gemini("cat <<EOF\nx\nEOF"),
        gemini("ls", guard="shopt -u promptvars nullglob globstar; "),
    ]
    for text in wrapped:
        assert recognise(text, {}) is not None, text
        assert wrapped_or_startup(text), text
    steps = [
        "env",
        f'SNAPSHOT_FILE={SNAP}\n      echo x >| "$SNAPSHOT_FILE"\n',
        '__codex_snapshot_command() {\n  "$@"\n}\n',
        'set -e; . "/home/u/.codex/shell_snapshots/0190-aa.tmp-1796"',
    ]
    for text in steps:
        assert wrapped_or_startup(text), text
    for text in ("ls -la", "git status", "cat env", "echo source", "pwd -P"):
        assert not wrapped_or_startup(text), text


def test_a_cwd_file_in_a_folder_that_resolves_out_of_the_temp_folders_is_not_a_wrapper(
    tmp_path: Path,
) -> None:
    """/tmp/d/claude-1-cwd with /tmp/d -> /etc/cron.d would write there."""
    link = Path(tempfile.gettempdir()) / f"xg-outside-{os.getpid()}"
    link.unlink(missing_ok=True)
    link.symlink_to(Path(__file__).resolve().parent)  # a folder outside every temp folder
    try:
        assert recognise(f"eval 'ls' && pwd -P >| {link}/claude-1a-cwd", {}) is None
        assert recognise(gemini("ls", pid=f"{link}/gemini-shell-a/bgpids.tmp"), {}) is None
        inside = tmp_path / "in"
        inside.mkdir()
        link.unlink()
        link.symlink_to(inside)  # a folder that stays in the temp folders: its real path is kept
        w = recognise(f"eval 'ls' && pwd -P >| {link}/claude-1a-cwd", {})
        assert w is not None and w.writes == ((f"{inside.resolve()}/claude-1a-cwd", False),)
    finally:
        link.unlink()


def _trailer(path: Path) -> tuple[bool, str]:
    """(the file was opened, not /dev/null; what was written through it)."""
    from xguard.gate.execenv import open_trailer_file

    t = open_trailer_file(str(path))
    try:
        os.write(t.fd, b"/the/cwd\n")
        opened = os.path.realpath(f"/proc/self/fd/{t.fd}") != os.devnull
    finally:
        t.close(keep_empty=False)
    return opened, path.read_text() if path.is_file() and not path.is_symlink() else ""


def test_the_trailer_file_is_opened_without_following_links(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    f = tmp_path / "claude-1-cwd"
    # absent: made and written
    assert _trailer(f) == (True, "/the/cwd\n")
    # a regular file of ours: truncated and written
    f.write_text("old contents, longer than the new\n")
    assert _trailer(f) == (True, "/the/cwd\n")
    f.unlink()
    # a symlink, to a file or to nowhere: never opened
    for target in (victim, tmp_path / "nowhere"):
        f.symlink_to(target)
        assert _trailer(f) == (False, "")
        f.unlink()
    assert not (tmp_path / "nowhere").exists()
    # a second name of another file (a hard link to ~/.bashrc): never truncated
    os.link(victim, f)
    assert _trailer(f)[0] is False
    f.unlink()
    # a FIFO: refused without blocking
    os.mkfifo(f)
    assert _trailer(f)[0] is False
    f.unlink()
    # a folder on the way that is a symlink
    (tmp_path / "real").mkdir()
    (tmp_path / "via").symlink_to(tmp_path / "real")
    assert _trailer(tmp_path / "via" / "claude-1-cwd") == (False, "")
    assert not (tmp_path / "real" / "claude-1-cwd").exists()
    assert victim.read_text() == "precious\n"


def test_an_unwritten_trailer_file_made_for_the_command_goes_again(tmp_path: Path) -> None:
    from xguard.gate.execenv import open_trailer_file

    f = tmp_path / "claude-1-cwd"
    open_trailer_file(str(f)).close(keep_empty=False)  # the command failed: no cwd report
    assert not f.exists()
    open_trailer_file(str(f)).close(keep_empty=True)  # Gemini's trap always writes
    assert f.exists()
