"""`xguard doctor`: is this setup what you think it is? (issue 7 item 5)

It reports which rules file and profile are in effect, where the queue and
the audit log live, whether a reviewer is watching, which agent integrations
it can see (SHELL, the login shell, Claude Code's hook, SHELL or prefix,
Codex's and Gemini CLI's hooks, a `bash` shim on PATH), and what is unsafe:
also a runtime hook that will never run or fails open (an untrusted Codex
hook, a Claude Code hook under Codex or Gemini CLI). Unsafe means a gate that
can be quietly weakened or that cannot keep its promises: rules, config or
state folders that other users (group or world) can write, files owned by
someone else, a rules file that does not load, an audit log that cannot be
written or has no room. Exit 1 when anything is unsafe, else 0; warnings
(no reviewer online, a hook whose matcher skips Bash …) do not change it.

`diagnose()` does the work and returns plain data; `doctor()` only
prints it.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any


from xguard.errors import ExitCode, XguardError

MIN_FREE = 16 * 1024 * 1024  # below this the audit log may fail mid-line: nothing would run
HOOK_NEEDLE = "xguard hook claude-code"


class Report:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.problems: list[str] = []
        self.warnings: list[str] = []

    def problem(self, msg: str) -> None:
        self.problems.append(msg)

    def warn(self, msg: str) -> None:
        self.warnings.append(msg)


def _mode_problem(path: Path, what: str, euid: int, *, is_dir: bool) -> str | None:
    """Group/world-writable, or owned by another user (root excepted)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    except OSError as e:
        return f"{what} {path}: cannot stat: {e.strerror}"
    if st.st_uid not in (euid, 0):
        return f"{what} {path} is owned by uid {st.st_uid}, not by you ({euid}) or root"
    if st.st_mode & stat.S_IWOTH and not (is_dir and st.st_mode & stat.S_ISVTX and st.st_uid == 0):
        return f"{what} {path} is world-writable (chmod o-w {path})"
    if st.st_mode & stat.S_IWGRP:
        return f"{what} {path} is group-writable (chmod g-w {path})"
    return None


def _nearest_existing(p: Path) -> Path:
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _same_program(value: str, exe: str | None) -> bool:
    """Does this path (or command) start xguard? By name, or by resolving to the script."""
    if not value:
        return False
    first = value.split(maxsplit=1)[0] if value.split() else value
    base = os.path.basename(first)
    if "xguard" in base:
        return True
    try:
        return exe is not None and os.path.realpath(first) == os.path.realpath(exe)
    except OSError:
        return False


def _shared_queue(rep: Report, queue: dict[str, Any], dsn: str, paths: Any) -> None:
    """The shared PostgreSQL queue (issue 15): reachable, pending, the audit copy's last result."""
    import json

    from xguard.audit.dbsync import STATUS
    from xguard.util import dsn_server

    try:
        from xguard.approval.pgqueue import PgQueue
    except ImportError:
        rep.problem("queue.postgres is set but psycopg is missing: pip install 'xguard[teams]'")
        return
    queue["postgres"] = dsn_server(dsn)
    try:
        q = PgQueue(dsn)
        try:
            queue["pending"] = len(q.pending())
            queue["reachable"] = True
        finally:
            q.close()
    except XguardError as e:
        queue["reachable"] = False
        rep.problem(f"{e.message}: commands that need approval fail closed (exit 70)")
    try:
        status = json.loads((paths.audit_dir / STATUS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        status = None
    queue["audit_copy"] = status
    if isinstance(status, dict) and not status.get("ok"):
        rep.warn(f"the last copy of the audit log to the database failed: {status.get('message')}")


def _reviewers(wake_dir: Path) -> list[int]:
    """Live `xguard review` processes with a wake-up socket (Linux /proc)."""
    out: list[int] = []
    try:
        names = os.listdir(wake_dir)
    except OSError:
        return out
    for n in names:
        if not n.endswith(".sock"):
            continue
        pid_s = n.split("-", 1)[0]
        if not pid_s.isdigit():
            continue
        try:
            with open(f"/proc/{pid_s}/cmdline", "rb") as f:
                argv = [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
        except OSError:
            continue
        if "review" in argv and any("xguard" in a for a in argv):
            out.append(int(pid_s))
    return sorted(set(out))


def _socket_accepts(path: Path) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_SEQPACKET):
        s = socket.socket(socket.AF_UNIX, kind)
        s.settimeout(0.5)
        try:
            s.connect(str(path))
            return True
        except OSError:
            continue
        finally:
            s.close()
    return False


def _claude_settings(home: Path, cwd: Path) -> list[Path]:
    files = [home / ".claude" / "settings.json"]
    d = cwd
    while True:
        for name in ("settings.json", "settings.local.json"):
            files.append(d / ".claude" / name)
        if (d / ".git").exists() or d.parent == d:
            break
        d = d.parent
    seen: list[Path] = []
    for f in files:
        if f not in seen:
            seen.append(f)
    return seen


def _matcher_covers_bash(matcher: object) -> bool:
    import re

    if matcher in (None, "", "*"):
        return True
    if not isinstance(matcher, str):
        return False
    if re.fullmatch(
        r"[A-Za-z0-9_ ,|-]*", matcher
    ):  # exact names split on | or , (docs, "Matcher patterns")
        return "Bash" in {x.strip() for x in re.split(r"[|,]", matcher)}
    try:
        return re.search(matcher, "Bash") is not None
    except re.error:
        return False


def _claude_hooks(f: Path, rep: Report) -> list[dict[str, Any]]:
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as e:
        rep.warn(f"Claude Code settings {f} cannot be read: {e}")
        return []
    found = []
    groups = ((data.get("hooks") or {}) if isinstance(data, dict) else {}).get("PreToolUse") or []
    for g in groups if isinstance(groups, list) else []:
        if not isinstance(g, dict):
            continue
        for h in g.get("hooks") or []:
            cmd = h.get("command") if isinstance(h, dict) else None
            args = h.get("args") if isinstance(h, dict) else None
            text = " ".join([cmd or "", *(args if isinstance(args, list) else [])])
            if HOOK_NEEDLE in text or (
                "xguard" in text and "hook" in text and "claude-code" in text
            ):
                entry = {
                    "file": str(f),
                    "matcher": g.get("matcher"),
                    "command": text.strip(),
                    "timeout": h.get("timeout"),
                }
                found.append(entry)
                if not _matcher_covers_bash(g.get("matcher")):
                    rep.warn(
                        f"the xguard hook in {f} has matcher {g.get('matcher')!r}, "
                        "which does not match Bash"
                    )
    return found


def diagnose(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Report:
    """Everything doctor reports, as data (no printing)."""
    import pwd
    import shutil

    from xguard import __version__
    from xguard.paths import get_paths
    from xguard.policy.rules import BUILTIN_RULES, load_ruleset, rules_source

    env = dict(os.environ if environ is None else environ)
    cwd = cwd or Path(os.getcwd())
    euid = os.geteuid()
    home = Path(env.get("HOME") or os.path.expanduser("~"))
    rep = Report()
    paths = get_paths(env)
    profile = env.get("XGUARD_PROFILE") or None
    exe = shutil.which("xguard", path=env.get("PATH"))
    rep.data["version"] = __version__
    rep.data["xguard"] = exe
    from xguard.policy.floor import floor_listing

    # Built in, like self-protection: no rules file can lower it.
    rep.data["secrets_floor"] = floor_listing(str(home))

    # -- rules ---------------------------------------------------------------
    src = rules_source(paths, env, profile)
    rules: dict[str, Any] = {
        "file": str(src),
        "builtin": src == BUILTIN_RULES,
        "profile": profile,
        "from": "XGUARD_RULES"
        if env.get("XGUARD_RULES", "").strip()
        else (
            "profile"
            if profile and src.parent == paths.rules_d
            else ("built-in" if src == BUILTIN_RULES else "config folder")
        ),
        "config_file": str(paths.config_file) if paths.config_file.exists() else None,
    }
    dsn = None
    try:
        rs = load_ruleset(paths, None, env, use_cache=False, profile=profile)
        dsn = ((rs.setting("queue") or {}).get("postgres")) or None
        rules.update(
            loads=True,
            rules=len(rs.rules),
            default=rs.default,
            tests=len(rs.tests),
            profiles=sorted(rs.profiles),
            confine=rs.setting("confine", "auto"),
            warm=rs.setting("warm", True),
        )
        if (
            profile
            and profile not in rs.profiles
            and not (paths.rules_d / f"{profile}.yaml").exists()
        ):
            rep.problem(
                f"profile {profile!r} (XGUARD_PROFILE) is not defined: "
                "every command fails with a config error"
            )
        hook_mode = ((rs.setting("hook", {}) or {}).get("claude_code", {}) or {}).get(
            "require_approval", "ask"
        )
        rules["claude_code_require_approval"] = hook_mode
    except XguardError as e:
        rules.update(loads=False, error=e.message)
        rep.problem(f"the rules do not load, so every command is refused: {e.message}")
    if rules["builtin"]:
        rep.warn(
            "no rules file of your own: using the built-in rules "
            f"(xguard init writes {paths.rules_file})"
        )
    rep.data["rules"] = rules

    # -- where things live -------------------------------------------------
    rep.data["paths"] = {
        "config_dir": str(paths.config_dir),
        "state_dir": str(paths.state_dir),
        "queue": str(paths.spool_dir),
        "audit_log": str(paths.audit_file),
        "socket": str(paths.socket_path),
    }
    checks: list[tuple[Path, str, bool]] = [
        (paths.config_dir, "config folder", True),
        (paths.rules_d, "profile rules folder", True),
        (paths.state_dir, "state folder", True),
        (paths.spool_dir, "queue folder", True),
        (paths.audit_dir, "audit folder", True),
        (paths.audit_file, "audit log", False),
        (paths.config_file, "config file", False),
    ]
    if not rules["builtin"]:
        checks += [(src, "rules file", False), (src.parent, "rules file's folder", True)]
    for p, what, is_dir in checks:
        msg = _mode_problem(p, what, euid, is_dir=is_dir)
        if msg:
            rep.problem(msg)

    # -- audit log -----------------------------------------------------------
    audit: dict[str, Any] = {"file": str(paths.audit_file), "exists": paths.audit_file.exists()}
    if audit["exists"]:
        audit["bytes"] = paths.audit_file.stat().st_size
        if not os.access(paths.audit_file, os.W_OK):
            rep.problem(f"the audit log {paths.audit_file} is not writable: nothing can run")
    there = _nearest_existing(paths.audit_dir)
    if there.exists() and not there.is_dir():
        rep.problem(f"{there} is not a folder: the audit log cannot be written there")
    try:
        vfs = os.statvfs(there if there.is_dir() else there.parent)
        free = vfs.f_bavail * vfs.f_frsize
        audit["free_bytes"] = free
        if free < MIN_FREE:
            rep.problem(
                f"only {free // 1024} KiB free for the audit log in {there}: "
                "when it cannot be written, nothing runs"
            )
    except OSError as e:
        rep.problem(f"cannot check free space for the audit log: {e.strerror}")
    rep.data["audit"] = audit

    # -- queue and reviewer ------------------------------------------------
    queue: dict[str, Any] = {"dir": str(paths.spool_dir), "pending": None}
    try:
        queue["pending"] = sum(
            1
            for n in os.listdir(paths.spool_dir)
            if n.endswith(".json") and not (paths.spool_dir / (n[:-5] + ".decision")).exists()
        )
    except OSError:
        queue["pending"] = 0
    if dsn:
        _shared_queue(rep, queue, dsn, paths)
    rep.data["queue"] = queue
    pids = _reviewers(paths.state_dir / "wake")
    serving = paths.socket_path.exists() and _socket_accepts(paths.socket_path)
    rep.data["reviewer"] = {
        "watching": bool(pids) or serving,
        "review_pids": pids,
        "socket": str(paths.socket_path),
        "socket_accepts": serving,
    }
    if not pids and not serving and not dsn:  # a shared queue's reviewers are elsewhere
        rep.warn(
            "no reviewer is watching: commands that need approval wait, then exit 75 "
            "(run `xguard review` in a terminal that is not an xguard shell)"
        )

    # -- integrations --------------------------------------------------------
    found: list[dict[str, Any]] = []
    shell = env.get("SHELL", "")
    if _same_program(shell, exe):
        found.append({"name": "SHELL", "detail": shell})
    try:
        login = pwd.getpwuid(os.getuid()).pw_shell
    except KeyError:
        login = ""
    if _same_program(login, exe):
        found.append({"name": "login shell", "detail": login})
    ccs = env.get("CLAUDE_CODE_SHELL", "")
    if _same_program(ccs, exe):
        found.append({"name": "Claude Code CLAUDE_CODE_SHELL", "detail": ccs})
        if "bash" not in ccs and "zsh" not in ccs:
            rep.warn(
                f"CLAUDE_CODE_SHELL={ccs} is ignored by Claude Code: "
                "the path must contain 'bash' or 'zsh' "
                "(symlink it as ~/.local/bin/xguard-bash)"
            )
    if (
        _same_program(shell, exe)
        and env.get("CLAUDECODE")
        and "bash" not in shell
        and "zsh" not in shell
    ):
        rep.warn(
            "SHELL is xguard but Claude Code only uses a SHELL whose path contains 'bash' or 'zsh'"
        )
    prefix = env.get("CLAUDE_CODE_SHELL_PREFIX", "")
    if prefix and "xguard" in prefix:
        found.append({"name": "Claude Code CLAUDE_CODE_SHELL_PREFIX", "detail": prefix})
    for f in _claude_settings(home, cwd):
        for h in _claude_hooks(f, rep):
            found.append(
                {
                    "name": "Claude Code PreToolUse hook",
                    "detail": f"{h['file']} (matcher "
                    f"{h['matcher'] if h['matcher'] not in (None, '') else '*'})",
                    **h,
                }
            )
    from xguard.commands import doctor_runtimes

    login_is_xguard = any(x["name"] == "login shell" for x in found)
    found += doctor_runtimes.codex(home, env, login_is_xguard, warn=rep.warn, problem=rep.problem)
    found += doctor_runtimes.gemini(home, cwd, env, exe, warn=rep.warn, problem=rep.problem)
    if env.get("XGUARD_GATED"):
        found.append(
            {"name": "running inside a gated command", "detail": f"request {env['XGUARD_GATED']}"}
        )
    rep.data["integrations"] = found
    if not found:
        rep.warn(
            "no agent integration found: set the agent's SHELL to xguard, or add "
            "`xguard hook claude-code|codex|gemini` as the runtime's hook (see man xguard)"
        )
    rep.data["confine"] = _confinement(rep, paths, rules, env)
    from xguard.warm import server_pid

    rep.data["warm"] = {
        "setting": rules.get("warm", True) is not False and env.get("XGUARD_WARM") != "0",
        "pid": server_pid(paths.state_dir_s),
    }
    rep.data["ok"] = not rep.problems
    rep.data["problems"] = rep.problems
    rep.data["warnings"] = rep.warnings
    return rep


def _confinement(
    rep: Report, paths: Any, rules: dict[str, Any], env: dict[str, str]
) -> dict[str, Any]:
    """Which kernel box works here and why not the others (issue 11), probed
    afresh (not from the kept answer)."""
    from xguard.gate import confine

    sup = confine.support(paths.cache_dir_s, refresh=True)
    setting = rules.get("confine", "auto")
    mechanism = "none" if setting == "off" else sup.best()
    forced = env.get(confine.FORCE_ENV, "")
    if setting != "off" and forced == "landlock" and sup.abi >= 1:
        mechanism = "landlock"
    tiocsti = confine._read_small("/proc/sys/dev/tty/legacy_tiocsti")
    out = {
        "setting": setting,
        "mechanism": mechanism,
        "bwrap": {"works": not sup.why["bwrap"], "path": sup.bwrap, "why_not": sup.why["bwrap"]},
        "landlock": {"works": sup.abi >= 1, "abi": sup.abi, "why_not": sup.why["landlock"]},
        "legacy_tiocsti": tiocsti,
    }
    if setting == "off":
        rep.warn("confine: off: allowed commands run unconfined (no kernel box)")
    elif mechanism == "none":
        msg = (
            f"no sandbox can start here (bwrap: {sup.why['bwrap']}; "
            f"landlock: {sup.why['landlock']})"
        )
        if setting == "required":
            rep.warn(f"{msg}: with confine: required every command needs approval")
        else:
            rep.warn(f"{msg}: allowed commands run unconfined")
    elif mechanism == "landlock" and sup.abi < 4:
        rep.warn(f"Landlock ABI {sup.abi} cannot deny TCP connections (needs 4, Linux 6.7)")
    return out


def _print(rep: Report) -> None:
    d = rep.data
    r = d["rules"]
    out = [
        f"xguard {d['version']} ({d.get('xguard') or 'not on PATH'})",
        "",
        f"rules      {r['file']}  [{r['from']}]",
    ]
    if r.get("loads"):
        out.append(
            f"           {r['rules']} rules, default {r['default']}, {r['tests']} examples"
            + (f", profiles: {', '.join(r['profiles'])}" if r.get("profiles") else "")
        )
    else:
        out.append(f"           DOES NOT LOAD: {r.get('error')}")
    out.append(f"profile    {r['profile'] or '(none)'}")
    out.append(
        f"floor      {len(d['secrets_floor'])} credential files need approval under any rules"
        " (--json lists them)"
    )
    if r.get("config_file"):
        out.append(f"config     {r['config_file']}")
    q, a, rv = d["queue"], d["audit"], d["reviewer"]
    if q.get("postgres"):
        state = "reachable" if q.get("reachable") else "UNREACHABLE"
        out.append(f"queue      postgres at {q['postgres']}, {state}  ({q['pending']} pending)")
    else:
        out.append(f"queue      {q['dir']}  ({q['pending']} pending)")
    size = f"{a['bytes']} bytes" if a.get("bytes") is not None else "not created yet"
    free = (
        f", {a['free_bytes'] // (1024 * 1024)} MiB free" if a.get("free_bytes") is not None else ""
    )
    out.append(f"audit log  {a['file']}  ({size}{free})")
    who = (
        f"yes: xguard review pid {', '.join(map(str, rv['review_pids']))}"
        if rv["review_pids"]
        else ("yes: socket accepts connections" if rv["socket_accepts"] else "no")
    )
    out.append(f"reviewer   {who}")
    c = d["confine"]
    out.append(f"confine    {c['mechanism']}  [confine: {c['setting']}]")
    for name in ("bwrap", "landlock"):
        m = c[name]
        extra = f" (ABI {m['abi']})" if name == "landlock" and m["works"] else ""
        out.append(f"           {name}: {'works' + extra if m['works'] else m['why_not']}")
    w = d["warm"]
    if w["pid"] is not None:
        out.append(f"warm       a server runs (pid {w['pid']}): commands skip xguard's start-up")
    else:
        out.append(
            "warm       none running; the next command starts one"
            if w["setting"]
            else "warm       off (warm: false or XGUARD_WARM=0)"
        )
    if d["integrations"]:
        for i, x in enumerate(d["integrations"]):
            out.append(f"{'agents' if i == 0 else '':<10} {x['name']}: {x['detail']}")
    else:
        out.append("agents     none found")
    out.append("")
    for w in rep.warnings:
        out.append(f"warning: {w}")
    for p in rep.problems:
        out.append(f"UNSAFE: {p}")
    out.append(
        "ok: nothing unsafe found"
        if not rep.problems
        else f"{len(rep.problems)} problem(s): exit 1"
    )
    print("\n".join(out))


def doctor(as_json: bool) -> int:
    """Check the setup: rules and profile in effect, queue, audit log, reviewer,"""
    rep = diagnose()
    if as_json:
        sys.stdout.write(json.dumps(rep.data, indent=2, default=str) + "\n")
    else:
        _print(rep)
    return int(ExitCode.UNSAFE) if rep.problems else int(ExitCode.OK)
