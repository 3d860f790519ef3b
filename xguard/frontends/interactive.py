"""The interactive gated shell: `xguard` with no arguments on a terminal (issue 7).

Good enough to be tmux's `default-shell`, a login shell, or the target of
`exec xguard` from bash: a prompt, line editing and history (readline), and
every line gated by the same engine as `xguard -c` before it runs.

How a line runs. Each approved line runs in a fresh `bash -c` (so what runs
is exactly the text that was decided, as in shell mode), followed by a fixed
trailer that stops the process once the line is done:

    <line>
    __xguard_st=$?
    POSIXLY_CORRECT=1
    __XGUARD_STATUS=$__xguard_st \\exec /bin/kill -STOP $$

`exec` keeps the pid, so when xguard sees the child stop (waitpid WUNTRACED,
or, for a line in its bubblewrap box, where bash is bwrap's grandchild, its
state in /proc) it reads the new working folder from /proc/PID/cwd and the
exported variables from /proc/PID/environ (the kernel's copy of what bash
exported at exec), then kills the stopped process. An allowed line runs in
the box its decision describes (issue 11), like `xguard -c`. Nothing is read from a pipe or a file the line
could have written to, so a gated line cannot forge the state the next line
starts with; the worst it can do is not reach the trailer (it calls `exit`,
`exec`s something else, dies), and then the state simply stays as it was.
POSIX mode makes `exec` a special builtin that a shell function cannot
shadow (and defining such a function is require_approval anyway).

What is kept between lines: the folder (`cd`) and exported variables, minus
those that would make bash run code before the next line is gated (BASH_ENV,
ENV, SHELLOPTS, BASHOPTS, PS4, exported functions). Not kept: unexported shell
variables, functions, aliases, options, `$?` (each line starts a new bash).

Signals: Ctrl-C reaches the running command (the terminal signals the whole
foreground process group; xguard ignores SIGINT while it waits) and brings
back the prompt; at the prompt it clears the line. Ctrl-D on an empty line,
`exit` and `logout` leave. Ctrl-Z is ignored: there is no job control.

Linux only for the kept state (it needs /proc); elsewhere lines still run
gated but `cd` and `export` last for one line.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

from xguard.errors import XguardError
from xguard.gate.execenv import ExecResult, LocalExecutor

TRAILER = (
    "\n__xguard_st=$?\nPOSIXLY_CORRECT=1\n__XGUARD_STATUS=$__xguard_st \\exec {stopper} -STOP $$\n"
)
# Never carried from one line to the next: each would let bash run code, or
# change how it parses, before the next line is gated.
DROP_ENV = frozenset(
    {
        "BASH_ENV",
        "ENV",
        "SHELLOPTS",
        "BASHOPTS",
        "PS4",
        "BASH_XTRACEFD",
        "PROMPT_COMMAND",
        "POSIXLY_CORRECT",
        "SHLVL",
        "_",
        "__XGUARD_STATUS",
        "XGUARD_GATED",
    }
)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_EXIT = re.compile(r"\s*(exit|logout)(?:\s+(\d{1,3}))?\s*;?\s*")
HISTORY_LINES = 5000


def _find_stopper() -> str | None:
    for p in ("/bin/kill", "/usr/bin/kill"):
        if os.access(p, os.X_OK):
            return p
    return None


class Shell:
    """One interactive session: its folder, its environment, its last status."""

    def __init__(self, login: bool = False) -> None:
        self.login = login
        self.status = 0
        self.home = os.environ.get("HOME") or os.path.expanduser("~")
        try:
            self.cwd = os.getcwd()
        except OSError:
            self.cwd = self.home if os.path.isdir(self.home) else "/"
            os.chdir(self.cwd)
        self.stopper = _find_stopper() if os.path.isdir("/proc/self") else None
        self.env: dict[str, str] | None = None  # set from the rules' env: on the first line
        self.exe = _xguard_exe()
        self.history: Path | None = None

    # -- environment -------------------------------------------------------
    def base_env(self, gate: Any) -> dict[str, str]:
        """The scrubbed start environment (SPEC §5), as shell mode gives each command."""
        from xguard.gate.execenv import scrub

        env_cfg = gate.ruleset.env
        prof = gate.ruleset.profiles.get(gate.profile or "", {}) if gate.profile else {}
        keep = prof.get("env", {}).get("keep", env_cfg["keep"])
        set_ = {**env_cfg.get("set", {}), **prof.get("env", {}).get("set", {})}
        env = scrub(dict(os.environ), keep, set_)
        env["PWD"] = self.cwd
        env["SHLVL"] = "1"
        if self.exe:
            # Programs that start "the user's shell" ($SHELL: vim's :!, less's !)
            # come back through the gate instead of reaching bash directly.
            env["SHELL"] = self.exe
        return env

    # -- the loop ------------------------------------------------------------
    def run(self) -> int:
        _setup_signals()
        self._setup_readline()
        self._banner()
        while True:
            try:
                text = self.read_command()
            except EOFError:
                _tty_write("exit\n")
                return self.status
            if text is None:
                continue
            m = _EXIT.fullmatch(text)
            if m:
                return int(m.group(2)) & 0xFF if m.group(2) else self.status
            self.status = self.run_line(text)

    def prompt(self, cont: bool = False) -> str:
        if cont:
            return "> "
        cwd = self.cwd
        if self.home and self.home != "/" and (cwd == self.home or cwd.startswith(self.home + "/")):
            cwd = "~" + cwd[len(self.home) :]
        mark = "#" if os.geteuid() == 0 else "$"
        return f"xguard:{cwd}{mark} "

    def read_command(self) -> str | None:
        """One complete command (continuation lines included), None for nothing."""
        lines: list[str] = []
        while True:
            try:
                line = _read_line(self.prompt(cont=bool(lines)))
            except KeyboardInterrupt:
                _tty_write("\n")
                return None
            except EOFError:
                if lines:
                    _tty_write("\n")
                    return None
                raise
            lines.append(line)
            text = "\n".join(lines)
            if not _incomplete(text):
                break
        if not text.strip() or all(
            not x.strip() or x.lstrip().startswith("#") for x in text.splitlines()
        ):
            return None
        self._remember(text)
        return text

    # -- one line --------------------------------------------------------------
    def run_line(self, text: str) -> int:
        """Gate the line like `xguard -c` does, run it, keep its folder and exports."""
        from xguard.approval.wait import obtain_approval
        from xguard.util import say
        from xguard.gate.pipeline import run_request
        from xguard.gate.request import Request, env_wait, load_gate

        try:
            os.chdir(self.cwd)
        except OSError as e:
            sys.stderr.write(f"xguard: {self.cwd}: {e.strerror}; now in {self.home}\n")
            self.cwd = self.home if os.path.isdir(self.home) else "/"
            os.chdir(self.cwd)
        try:
            req = Request(
                text=text,
                session=os.environ.get("XGUARD_SESSION") or None,
                source="interactive",
                wait=env_wait(),
                cwd=self.cwd,
            )
            # A Gate per line: a long-lived shell sees rule changes (cached, cheap).
            gate = load_gate(req, self.cwd, confinable=True)  # the line runs in its box
            if self.env is None:
                self.env = self.base_env(gate)
            outcome = run_request(req, gate, ask=obtain_approval, execute=_LineExecutor(self))
        except XguardError as e:
            sys.stderr.write(f"xguard: {e.message}\n")
            return int(e.exit_code)
        if outcome.message:
            say(outcome.message)
        return outcome.exit_code

    def _take_state(self, pid: int) -> int | None:
        """Read the stopped trailer's /proc entries; None if it is not our trailer."""
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().split(b"\0")
            # `$$` is the pid in the line's own namespace (2 in its box), which
            # the last NSpid field of /proc/PID/status gives.
            if cmdline[:3] != [os.fsencode(self.stopper or ""), b"-STOP", _own_pid(pid)]:
                return None
            with open(f"/proc/{pid}/environ", "rb") as f:
                raw = f.read()
            phys = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            return None
        env: dict[str, str] = {}
        for item in raw.split(b"\0"):
            k, sep, v = item.partition(b"=")
            if not sep:
                continue
            env[os.fsdecode(k)] = os.fsdecode(v)
        try:
            status = int(env.get("__XGUARD_STATUS", "0"))
        except ValueError:
            status = 0
        self.env = {k: v for k, v in env.items() if _NAME.fullmatch(k) and k not in DROP_ENV}
        self.env["SHLVL"] = "1"
        if phys.endswith(" (deleted)"):
            phys = phys[: -len(" (deleted)")]
        logical = self.env.get("PWD", "")
        try:
            same = logical.startswith("/") and os.path.samefile(logical, phys)
        except OSError:
            same = False
        self.cwd = logical if same else phys
        self.env["PWD"] = self.cwd
        return status

    # -- readline ------------------------------------------------------------
    def _setup_readline(self) -> None:
        try:
            import readline
        except ImportError:  # pragma: no cover - Python built without readline
            return
        readline.set_completer_delims(" \t\n;|&<>()=")
        readline.set_completer(_Completer(self).complete)
        if "libedit" in (getattr(readline, "__doc__", "") or ""):
            readline.parse_and_bind("bind ^I rl_complete")
        else:
            readline.parse_and_bind("tab: complete")
        try:
            from xguard.paths import ensure_dir, get_paths

            state = get_paths().state_dir
            ensure_dir(state)
            self.history = state / "history"
            readline.set_history_length(HISTORY_LINES)
            if self.history.exists():
                readline.read_history_file(str(self.history))
        except (OSError, XguardError):
            self.history = None

    def _remember(self, text: str) -> None:
        try:
            import readline
        except ImportError:  # pragma: no cover
            return
        # input() already added the last physical line; keep the whole command instead.
        n = readline.get_current_history_length()
        if n and "\n" in text:
            readline.remove_history_item(n - 1)
            readline.add_history(text)
        if self.history is None:
            return
        try:
            if not self.history.exists():
                fd = os.open(self.history, os.O_WRONLY | os.O_CREAT, 0o600)
                os.close(fd)
            readline.append_history_file(1, str(self.history))
            readline.set_history_length(HISTORY_LINES)
        except OSError:
            pass

    def _banner(self) -> None:
        if os.environ.get("XGUARD_QUIET"):
            return
        try:
            from xguard.paths import get_paths
            from xguard.policy.rules import rules_source

            src = rules_source(
                get_paths(), dict(os.environ), os.environ.get("XGUARD_PROFILE") or None
            )
        except XguardError:
            src = Path("?")
        extra = "" if self.stopper else " (cd and export last one line on this system)"
        sys.stderr.write(
            f"xguard: gated shell; every line is checked against {src}{extra}. "
            "Ctrl-D or `exit` leaves.\n"
        )


class _LineExecutor(LocalExecutor):
    """How a line runs: the one executor, in the box its decision describes
    (issue 11), with the shell's kept environment and the trailer that hands
    back the line's folder and exports."""

    def __init__(self, shell: Shell) -> None:
        super().__init__()
        self.shell = shell

    def environment(self, gate: Any, req: Any) -> dict[str, str]:
        assert self.shell.env is not None  # set before the first line runs
        return dict(self.shell.env)

    def launch_options(self, req: Any) -> dict[str, Any]:
        sh = self.shell
        if not sh.stopper:
            return {}
        # exec_text: psql's run-time row cap wraps the statement (issue 13)
        return {
            "script": (req.exec_text or req.text) + TRAILER.format(stopper=sh.stopper),
            "on_stop": sh._take_state,
        }

    def run(self, gate: Any, req: Any, decision: Any, record: dict[str, Any]) -> ExecResult:
        result = super().run(gate, req, decision, record)
        sig = result.fields.get("signal")
        if isinstance(sig, int):
            if sig == signal.SIGINT:
                _tty_write("\n")
            elif sig != signal.SIGPIPE:
                try:
                    name = signal.strsignal(sig) or f"signal {sig}"
                except ValueError:
                    name = f"signal {sig}"
                sys.stderr.write(f"{name}\n")
        return result


def _own_pid(pid: int) -> bytes:
    """A process's pid as it knows it (`$$`): in a pid namespace of its own
    (the kernel box) it differs from the pid seen here."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"NSpid:"):
                    return line.split()[-1]
    except OSError:
        pass
    return str(pid).encode()


class _Completer:
    """Tab completion: command names first, then file names."""

    def __init__(self, shell: Shell) -> None:
        self.shell = shell
        self.matches: list[str] = []

    def complete(self, text: str, state: int) -> str | None:
        if state == 0:
            try:
                self.matches = self._matches(text)
            except Exception:  # completion must never break the shell
                self.matches = []
        return self.matches[state] if state < len(self.matches) else None

    def _matches(self, text: str) -> list[str]:
        import glob
        import readline

        line = readline.get_line_buffer()[: readline.get_begidx()]
        first = not line.strip() or line.rstrip()[-1:] in ";|&("
        if first and "/" not in text:
            names = set()
            path = (self.shell.env or os.environ).get("PATH", os.defpath)
            for d in path.split(os.pathsep):
                try:
                    for n in os.listdir(d or "."):
                        if n.startswith(text):
                            names.add(n)
                except OSError:
                    continue
            names.update(
                b for b in ("cd", "exit", "export", "logout", "pwd", "echo") if b.startswith(text)
            )
            return sorted(n + " " for n in names)
        pat = os.path.expanduser(text) if text.startswith("~") else text
        base = pat if pat.startswith("/") else os.path.join(self.shell.cwd, pat)
        out = []
        for p in sorted(glob.glob(glob.escape(base) + "*"))[:500]:
            shown = text + p[len(base) :]
            out.append(shown + ("/" if os.path.isdir(p) else " "))
        return out


# ---------------------------------------------------------------------------
def _incomplete(text: str) -> bool:
    """Does bash need more lines (open quote, `if` without `fi`, heredoc, trailing \\)?"""
    stripped = text.rstrip("\n")
    trailing = len(stripped) - len(stripped.rstrip("\\"))
    if trailing % 2 == 1:
        return True
    import subprocess

    try:
        r = subprocess.run(
            ["/bin/bash", "-n", "-c", text],
            capture_output=True,
            timeout=5,
            env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"},
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    err = r.stderr.decode("utf-8", "replace")
    return any(
        m in err for m in ("unexpected end of file", "unexpected EOF", "delimited by end-of-file")
    )


def _setup_signals() -> None:
    # A shell is not stopped by Ctrl-Z or by touching the terminal from the
    # background; commands inherit the ignored SIGTSTP (no job control).
    for s in (signal.SIGTSTP, signal.SIGTTOU, signal.SIGTTIN):
        signal.signal(s, signal.SIG_IGN)
    # Ctrl-C interrupts the line being typed (see _read_line) or the running
    # command; between the two (audit, state) it is ignored, so a stray one
    # never takes the shell down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _read_line(prompt: str) -> str:
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return input(prompt)
    finally:
        signal.signal(signal.SIGINT, old)


def _tty_write(s: str) -> None:
    try:
        sys.stdout.write(s)
        sys.stdout.flush()
    except OSError:
        pass


def _xguard_exe() -> str | None:
    import shutil

    exe = shutil.which("xguard")
    if exe:
        return os.path.abspath(exe)
    argv0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(argv0).lstrip("-") == "xguard" and os.path.isabs(argv0):
        return argv0
    return None


def interactive_main(args: list[str]) -> int:
    """`xguard` (or `xguard -l`, `xguard -i`, a login shell) on a terminal."""
    login = any(
        a in ("-l", "--login") or (a.startswith("-") and not a.startswith("--") and "l" in a)
        for a in args
    )
    login = login or (bool(sys.argv) and sys.argv[0].startswith("-"))
    if not sys.stdin.isatty():
        from xguard.errors import UsageError

        raise UsageError(
            "the interactive shell needs a terminal; use xguard -c STRING or xguard -s"
        )
    return Shell(login=login).run()
