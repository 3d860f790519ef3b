"""Real agent runtimes' shell-running code, driven through xguard (issue 7).

"A gate that a runtime silently bypasses is worse than none": every row of
docs/runtimes.md marked "tested" rests on a test here, and where a runtime
does NOT go through $SHELL, a test shows that too, so the table cannot
quietly go stale.

aider (PyPI `aider-chat`, pinned below) is installed without its dependency
tree (it pins ~100 packages exactly); its `aider/run_cmd.py` needs only
pexpect and psutil:

    pip install --no-deps aider-chat==0.86.2 && pip install psutil pexpect
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import xguard_exe

AIDER_VERSION = "0.86.2"
RULES = """\
default: require_approval
rules:
  - {pattern: "echo", action: allow, dynamic: allow}
  - {pattern: "touch", action: allow}
  - {pattern: "printenv", action: deny, reason: "prints secrets"}
  - {path: "/**", action: allow}
"""


@pytest.fixture
def env(tmp_path: Path, xguard_home: Path) -> dict[str, str]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    e = {k: v for k, v in os.environ.items() if not k.startswith("XGUARD_")}
    e.update(
        XGUARD_HOME=str(xguard_home),
        XGUARD_RULES=str(rules),
        XGUARD_WAIT="0",
        SHELL=xguard_exe()[0],
        XG_PROBE="secret-value",
    )
    return e


def audit_commands(home: Path) -> list[tuple[str, str, str]]:
    f = home / "audit" / "audit.jsonl"
    recs = [json.loads(x) for x in f.read_text().splitlines()] if f.exists() else []
    return [(r["event"], r["command"], r.get("decision") or "") for r in recs]


# ---------------------------------------------------------------------------
# aider: aider/run_cmd.py. On a terminal it runs pexpect.spawn($SHELL, ["-i", "-c", cmd]);
# without one, subprocess.Popen(cmd, shell=True), i.e. /bin/sh whatever $SHELL says.
DRIVER = textwrap.dedent("""\
    import json, sys
    import aider
    from aider.run_cmd import run_cmd
    code, out = run_cmd(sys.argv[1], cwd=sys.argv[2])
    with open(sys.argv[3], "w") as f:
        json.dump({"code": code, "out": out, "version": aider.__version__, "tty": sys.stdin.isatty()}, f)
""")


def _aider() -> None:
    try:
        import aider
        import aider.run_cmd
    except ImportError as e:
        pytest.skip(
            f"aider-chat is not installed (pip install --no-deps aider-chat=={AIDER_VERSION} "
            f"psutil pexpect): {e}"
        )
    if aider.__version__.split("+")[0] != AIDER_VERSION:
        pytest.skip(f"aider-chat {aider.__version__} is installed; these tests pin {AIDER_VERSION}")


def run_aider(env: dict[str, str], tmp_path: Path, command: str, tty: bool) -> dict[str, object]:
    import pexpect

    driver = tmp_path / "drive_aider.py"
    driver.write_text(DRIVER)
    result = tmp_path / f"result-{time.monotonic_ns()}.json"
    argv = [sys.executable, str(driver), command, str(tmp_path), str(result)]
    if tty:
        child = pexpect.spawn(argv[0], argv[1:], env=env, cwd=str(tmp_path), timeout=60)
        child.expect(pexpect.EOF)
        child.close()
    else:
        subprocess.run(
            argv,
            env=env,
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=60,
            check=True,
        )
    return json.loads(result.read_text())


def test_aider_on_a_terminal_runs_commands_through_xguard(
    env: dict[str, str], tmp_path: Path, xguard_home: Path
) -> None:
    _aider()
    r = run_aider(env, tmp_path, "touch allowed-marker && echo aider-ran-this", tty=True)
    assert r["tty"] is True
    assert r["code"] == 0, r
    assert "aider-ran-this" in str(r["out"])
    assert (tmp_path / "allowed-marker").exists()

    r = run_aider(env, tmp_path, "touch denied-marker; printenv XG_PROBE", tty=True)
    assert r["code"] == 77, r
    assert "xguard: denied" in str(r["out"]) and "secret-value" not in str(r["out"])
    assert not (tmp_path / "denied-marker").exists()

    cmds = audit_commands(xguard_home)
    assert ("decision", "touch allowed-marker && echo aider-ran-this", "allow") in cmds
    assert ("decision", "touch denied-marker; printenv XG_PROBE", "deny") in cmds


def test_aider_without_a_terminal_does_not_use_shell(
    env: dict[str, str], tmp_path: Path, xguard_home: Path
) -> None:
    """The documented gap: aider's non-TTY path is /bin/sh, so SHELL=xguard does not gate it."""
    _aider()
    r = run_aider(env, tmp_path, "printenv XG_PROBE", tty=False)
    assert r["tty"] is False
    assert r["code"] == 0 and "secret-value" in str(r["out"])
    assert audit_commands(xguard_home) == []


# ---------------------------------------------------------------------------
# Plain subprocess and $SHELL -c: how most runtimes start a command.
def test_subprocess_shell_true_with_executable(env: dict[str, str], tmp_path: Path) -> None:
    exe = xguard_exe()[0]
    r = subprocess.run(
        "echo one && echo two",
        shell=True,
        executable=exe,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (r.returncode, r.stdout) == (0, "one\ntwo\n"), r.stderr
    r = subprocess.run(
        f"touch {tmp_path}/m; printenv XG_PROBE",
        shell=True,
        executable=exe,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 77 and r.stdout == "" and "xguard: denied" in r.stderr
    assert not (tmp_path / "m").exists()


def test_subprocess_shell_true_without_executable_is_not_gated(env: dict[str, str]) -> None:
    """shell=True alone is /bin/sh -c: $SHELL is never consulted (LangChain's BashProcess does this)."""
    r = subprocess.run(
        "printenv XG_PROBE", shell=True, env=env, capture_output=True, text=True, check=False
    )
    assert r.stdout == "secret-value\n"


@pytest.mark.parametrize(
    "shape",
    [
        [
            "-c"
        ],  # Goose (`<shell> -c <command>`), sshd for an agent user whose login shell is xguard
        ["-lc"],  # Codex (`[shell, "-lc", command]`)
        ["-c", "-l"],  # Claude Code without a snapshot
        ["-i", "-c"],  # aider on a terminal
        ["-e", "-c"],
        ["-o", "pipefail", "-c"],
    ],
)
def test_dollar_shell_dash_c(env: dict[str, str], shape: list[str]) -> None:
    flags = " ".join(shape)
    r = subprocess.run(
        ["/bin/bash", "-c", f'"$SHELL" {flags} "echo via shell"'],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert (r.returncode, r.stdout) == (0, "via shell\n"), r.stderr
    r = subprocess.run(
        ["/bin/bash", "-c", f'"$SHELL" {flags} "printenv XG_PROBE"'],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 77 and "secret-value" not in r.stdout


def test_secrets_in_the_agents_environment_do_not_reach_the_command(env: dict[str, str]) -> None:
    r = subprocess.run(
        [xguard_exe()[0], "-c", "echo probe=${XG_PROBE-unset}"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.stdout == "probe=unset\n", r.stderr


def test_path_shim_named_bash(env: dict[str, str], tmp_path: Path) -> None:
    """Gemini CLI spawns the bare name `bash` (found on PATH); a `bash` shim that is xguard gates it.
    xguard itself runs /bin/bash by absolute path, so the shim never loops."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "bash").symlink_to(xguard_exe()[0])
    e = {**env, "PATH": f"{shim}{os.pathsep}{env['PATH']}"}
    r = subprocess.run(
        ["bash", "-c", "echo through the shim"], env=e, capture_output=True, text=True, check=False
    )
    assert (r.returncode, r.stdout) == (0, "through the shim\n"), r.stderr
    r = subprocess.run(
        ["bash", "-c", "printenv XG_PROBE"], env=e, capture_output=True, text=True, check=False
    )
    assert r.returncode == 77


def test_claude_code_shell_needs_bash_in_the_name(
    env: dict[str, str], tmp_path: Path, xguard_home: Path
) -> None:
    """Claude Code takes SHELL/CLAUDE_CODE_SHELL only when the path contains "bash" or "zsh"
    (findSuitableShell); a symlink named xguard-bash works, and its wrapper is unwrapped."""
    link = tmp_path / "bin" / "xguard-bash"
    link.parent.mkdir()
    link.symlink_to(xguard_exe()[0])
    cwdf = Path("/tmp") / f"claude-{os.getpid():x}ee-cwd"
    cwdf.unlink(missing_ok=True)
    wrapper = (
        f"shopt -u extglob 2>/dev/null || true && eval {shlex.quote('echo from claude')} \\< /dev/null"
        f" && pwd -P >| {cwdf}"
    )
    r = subprocess.run(
        [str(link), "-c", "-l", wrapper],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert (r.returncode, r.stdout) == (0, "from claude\n"), r.stderr
    assert cwdf.read_text().strip() == str(tmp_path.resolve())
    cwdf.unlink()
    assert ("decision", "echo from claude", "allow") in audit_commands(xguard_home)


def test_gemini_wrapper_through_the_shim(
    env: dict[str, str], tmp_path: Path, xguard_home: Path
) -> None:
    """Gemini CLI's wrapper (0.61.0): the model's command is decided and runs;
    the trap still reports background pids to the file Gemini named."""
    piddir = Path(tempfile.mkdtemp(prefix="gemini-shell-"))
    pidfile = piddir / "bgpids.tmp"
    text = (
        f"shopt -u promptvars nullglob extglob nocaseglob dotglob; _bgpids_file={pidfile}\n(\n"
        "  trap 'jobs -p > \"$_bgpids_file\"' EXIT\necho from gemini\n)\n__code=$?\nexit $__code"
    )
    try:
        r = subprocess.run(
            [xguard_exe()[0], "-c", text], env=env, capture_output=True, text=True, check=False
        )
        assert (r.returncode, r.stdout) == (0, "from gemini\n"), r.stderr
        assert pidfile.exists()
    finally:
        shutil.rmtree(piddir)
    assert ("decision", "echo from gemini", "allow") in audit_commands(xguard_home)


TRAILER_RULES = """\
default: require_approval
confine: {mode}
rules:
  - {{pattern: "ln", action: allow}}
  - {{pattern: "cd", action: allow, dynamic: allow}}
  - {{pattern: "echo", action: allow, dynamic: allow}}
  - {{path: "/**", action: allow}}
  - {{path: "/tmp/**", access: write, action: allow}}
"""


@pytest.mark.parametrize("runtime", ["claude-code", "gemini"])
@pytest.mark.parametrize("mode", ["off", "auto"])
def test_a_trailer_file_made_a_symlink_by_the_command_writes_nothing_through_it(
    env: dict[str, str], tmp_path: Path, runtime: str, mode: str
) -> None:
    """The wrapper's own trailer (Claude Code's cwd report, Gemini CLI's
    background pids) writes after the command: a command that replaces the
    file with a symlink (`ln -sf`, decided as a write in /tmp) must not get
    the trailer to write into the link's target, a file it never named."""
    (tmp_path / "rules.yaml").write_text(TRAILER_RULES.format(mode=mode))
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    work = Path(tempfile.mkdtemp(prefix="xg-trailer-"))
    if runtime == "claude-code":
        trailer = Path("/tmp") / f"claude-{os.getpid():x}{len(mode)}c-cwd"
        cmd = f"ln -sf {victim} {trailer} && cd {work} && echo done"
        text = f"eval {shlex.quote(cmd)} < /dev/null && pwd -P >| {trailer}"
    else:
        trailer = work / "gemini-shell-x" / "bgpids.tmp"
        trailer.parent.mkdir()
        cmd = f"ln -sf {victim} {trailer} && echo done"
        text = (
            f"_bgpids_file={trailer}\n(\n  trap 'jobs -p > \"$_bgpids_file\"' EXIT\n"
            f"{cmd}\n)\n__code=$?\nexit $__code"
        )
    try:
        r = subprocess.run(
            [xguard_exe()[0], "-c", text],
            env={**env, "TMPDIR": "/tmp"},
            capture_output=True,
            text=True,
            check=False,
            cwd=tmp_path,
        )
        assert (r.returncode, r.stdout) == (0, "done\n"), r.stderr
        assert victim.read_text() == "precious\n"
        assert trailer.is_symlink()  # what the command made, and nothing more
    finally:
        trailer.unlink(missing_ok=True)
        shutil.rmtree(work)


def test_unknown_preparation_statement_is_decided_with_the_command(
    env: dict[str, str], xguard_home: Path
) -> None:
    """A statement of a kind xguard does not know stays gated: it is decided,
    shown and audited with the model's command, never dropped."""
    cwdf = Path(tempfile.gettempdir()) / f"claude-{os.getpid():x}ef-cwd"
    text = f"export CLAUDE_NEW=1 && eval 'echo hi' < /dev/null && pwd -P >| {cwdf}"
    r = subprocess.run(
        [xguard_exe()[0], "-c", text], env=env, capture_output=True, text=True, check=False
    )
    assert r.returncode == 75, r.stderr  # an assignment needs approval (XGUARD_WAIT=0)
    decided = "export CLAUDE_NEW=1 && eval 'echo hi' < /dev/null"
    assert ("pending", decided, "require_approval") in audit_commands(xguard_home)
    assert not cwdf.exists()
