"""Strict mode's ground rules (issue 6): who may own what, and how to set it up.

Checks. In strict mode the broker refuses to start, and refuses every
request, while any file or folder it trusts is writable by an agent: the
rules, config.yaml, rules.d, the spool (queue), the audit log, the rules
cache, the sessions folder, the socket's folder, and every folder above them.
sudo refuses a writable sudoers and OpenSSH a loose authorized_keys the same
way. A path is refused when

- it is owned by an agent user;
- it is owned by anybody but root, the broker's own user or a reviewer;
- it is writable by group or others (an ACL that grants write shows in the
  group bits as its mask, so this covers ACLs too). A folder *above* them may
  be world-writable only with the sticky bit and owned by root, as /tmp is.

The error is a config error (exit 78) that names the file, what is wrong and
the command that fixes it.

Setup. `plan()` lists the steps of `xguard setup strict`: each has a title,
the commands a person would type, and (for --apply) a function that does it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shlex
import stat
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from xguard.errors import ConfigError
from xguard.paths import Paths

DEFAULT_SOCKET = "/run/xguard/broker.sock"
CLIENT_CONF = "/etc/xguard/client.conf"
UNIT_NAME = "xguard-broker.service"
UNIT_PATH = f"/etc/systemd/system/{UNIT_NAME}"
KEYS_DIR = "/etc/xguard/ssh"


# ---------------------------------------------------------------------------
# Ownership and modes.


def user_label(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def path_problem(
    path: str, st: os.stat_result, *, agents: Iterable[int], trusted: Iterable[int], above: bool
) -> str | None:
    """Why `path` cannot be trusted, or None. `above`: a folder above the files."""
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid in set(agents):
        return f"owned by the agent user {user_label(st.st_uid)}: the agent could change it"
    if st.st_uid not in set(trusted):
        return (
            f"owned by {user_label(st.st_uid)}, who is neither root, the broker's user "
            f"nor a reviewer (chown the broker's user {path})"
        )
    if mode & 0o022:
        if above and stat.S_ISDIR(st.st_mode) and mode & stat.S_ISVTX and st.st_uid == 0:
            return None  # /tmp: others may add names, never replace ours
        who = (
            "group and others" if mode & 0o022 == 0o022 else ("others" if mode & 0o002 else "group")
        )
        return f"writable by {who} (mode {mode:04o}): strict mode refuses it (chmod go-w {path})"
    return None


def insecure(
    paths: Iterable[str | os.PathLike[str]], *, agents: Iterable[int], trusted: Iterable[int]
) -> tuple[str, str] | None:
    """The first (path, why) among `paths` and the folders above them; None when all are safe.

    Missing paths are skipped (they are created later with safe modes); a
    symlink is followed and the folders above its target are checked too."""
    agents, trusted = set(agents), set(trusted)
    seen: set[str] = set()

    def one(p: str, above: bool) -> tuple[str, str] | None:
        if p in seen:
            return None
        seen.add(p)
        try:
            st = os.stat(p)
        except OSError:
            return None
        why = path_problem(p, st, agents=agents, trusted=trusted, above=above)
        return (p, why) if why else None

    for raw in paths:
        p = os.path.abspath(os.fspath(raw))
        for candidate in dict.fromkeys([p, os.path.realpath(p)]):
            bad = one(candidate, False)
            if bad:
                return bad
            d = os.path.dirname(candidate)
            while True:
                bad = one(d, True)
                if bad:
                    return bad
                if d == "/":
                    break
                d = os.path.dirname(d)
    return None


def broker_files(paths: Paths, sources: Iterable[str], socket_path: str | None = None) -> list[str]:
    """Everything the broker trusts: rules, config, queue, log, cache, sessions, socket folder."""
    out: list[str | os.PathLike[str]] = [
        *sources,
        paths.config_dir,
        paths.rules_file,
        paths.config_file,
        paths.rules_d,
        paths.state_dir,
        paths.spool_dir,
        paths.spool_dir / "answers",
        paths.state_dir / "wake",
        paths.audit_dir,
        paths.audit_file,
        paths.cache_dir,
        paths.sessions_dir,
    ]
    with contextlib.suppress(OSError):
        out += sorted(paths.rules_d.glob("*.yaml"))
    with contextlib.suppress(OSError):
        out += sorted(
            p for p in paths.audit_dir.iterdir() if p.name.startswith(paths.audit_file.name)
        )
    if socket_path:
        out.append(os.path.dirname(os.path.abspath(socket_path)))
    return [os.fspath(p) for p in out]


def require_secure(
    paths: Paths,
    sources: Iterable[str],
    *,
    agents: Iterable[int],
    trusted: Iterable[int],
    socket_path: str | None = None,
) -> None:
    """ConfigError (exit 78) naming the first file an agent could change."""
    bad = insecure(broker_files(paths, sources, socket_path), agents=agents, trusted=trusted)
    if bad:
        raise ConfigError(f"{bad[1]}", bad[0], 1)


# ---------------------------------------------------------------------------
# Users named in the config.


def resolve_users(names: Iterable[object], key: str, file: str | None) -> dict[int, str]:
    """`agents:` / `reviewers:` entries (names or uids) -> {uid: name}."""
    out: dict[int, str] = {}
    for n in names:
        s = str(n).strip()
        try:
            if s.isdigit():
                uid = int(s)
                out[uid] = pwd.getpwuid(uid).pw_name if _known(uid) else s
            else:
                pw = pwd.getpwnam(s)
                out[pw.pw_uid] = pw.pw_name
        except KeyError:
            raise ConfigError(f"{key}: no such user {s!r}", file, 1) from None
    return out


def _known(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


# ---------------------------------------------------------------------------
# Setup.


@dataclass
class Step:
    title: str
    commands: list[str]
    apply: Callable[[], None] | None = None
    notes: list[str] = field(default_factory=list)


def xguard_executable() -> str:
    """The absolute path of the installed `xguard` console script."""
    import shutil

    exe = shutil.which("xguard") or sys.argv[0]
    return os.path.abspath(exe)


def unit_text(reviewer: str, exe: str, socket_path: str = DEFAULT_SOCKET) -> str:
    """The systemd unit of the broker (foreground process, clean stop on SIGTERM)."""
    run_dir = os.path.dirname(socket_path)
    runtime = ""
    if run_dir.startswith("/run/") and run_dir.count("/") == 2:
        runtime = f"RuntimeDirectory={os.path.basename(run_dir)}\nRuntimeDirectoryMode=0755\n"
    return f"""\
# xguard strict-mode broker: owns the rules, the approval queue and the audit log.
# Written by `xguard setup strict`; see docs/strict-mode.md.
[Unit]
Description=xguard broker (strict mode)
After=local-fs.target

[Service]
Type=simple
User={reviewer}
ExecStart={exe} serve --socket {socket_path}
ExecReload=/bin/kill -HUP $MAINPID
KillSignal=SIGTERM
TimeoutStopSec=20
Restart=on-failure
RestartSec=2
UMask=0077
{runtime}NoNewPrivileges=yes
PrivateTmp=yes
ProtectSystem=full

[Install]
WantedBy=multi-user.target
"""


def sshd_snippet(agent: str, exe: str) -> str:
    return f"""\
# xguard strict mode for the agent user {agent} (written by `xguard setup strict`).
# Every SSH command goes through the gate; keys live where the agent cannot write.
Match User {agent}
    ForceCommand {exe} ssh-gate
    AuthorizedKeysFile {KEYS_DIR}/%u.keys
    DisableForwarding yes
    PermitUserRC no
"""


def client_conf_text(agent: str, socket_path: str) -> str:
    return f"""\
# Users whose xguard asks the broker (strict mode); root-owned, mode 0644.
socket: {socket_path}
agents: {agent}
"""


def _run(argv: list[str]) -> None:
    p = subprocess.run(argv, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise RuntimeError(
            f"{shlex.join(argv)} failed ({p.returncode}): {(p.stderr or p.stdout).strip()[:400]}"
        )


def _write(path: str, text: str, mode: int, *, overwrite: bool = True) -> None:
    p = Path(path)
    if p.exists() and not overwrite:
        return
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.chown(tmp, 0, 0)
    os.chmod(tmp, mode)
    os.replace(tmp, p)


def _reviewer_paths(reviewer: pwd.struct_passwd) -> Paths:
    home = Path(reviewer.pw_dir)
    return Paths(home / ".config" / "xguard", home / ".local" / "state" / "xguard")


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def reachable(path: str) -> str | None:
    """Why a user other than the owner could not run `path` (a folder above not o+x), else None."""
    p = os.path.realpath(path)
    d = p
    while d != "/":
        d = os.path.dirname(d)
        try:
            st = os.stat(d)
        except OSError as e:
            return f"{d}: {e.strerror}"
        if not st.st_mode & 0o001:
            return f"{d} is mode {stat.S_IMODE(st.st_mode):04o}: other users cannot reach {p}"
    return None


def plan(
    agent: str,
    reviewer: str,
    exe: str,
    *,
    socket_path: str = DEFAULT_SOCKET,
    ssh: bool = True,
    systemd: bool = True,
) -> list[Step]:
    """The steps of strict mode, in order; each can be printed or applied."""
    try:
        rev = pwd.getpwnam(reviewer)
    except KeyError:
        raise ConfigError(f"--reviewer: no such user {reviewer!r}") from None
    if agent in (reviewer, "root"):
        raise ConfigError("the agent user must be a user of its own, neither root nor the reviewer")
    rp = _reviewer_paths(rev)
    q = shlex.quote
    steps: list[Step] = []

    exists = _user_exists(agent)
    if exists:
        user_cmd = ["usermod", "--shell", exe, agent]
    else:
        # '*' rather than '!': no password can ever log in, yet the account is
        # not "locked", which sshd would refuse even for key logins.
        user_cmd = ["useradd", "--create-home", "--shell", exe, "--password", "*", agent]
    notes = []
    why = reachable(exe)
    if why:
        notes.append(
            f"WARNING: {why}. Install xguard where every user can run it "
            "(e.g. `pipx install --global xguard`, or a venv under /opt) before going on."
        )
    steps.append(
        Step(
            f"Agent user {agent}: its login shell is xguard",
            [
                shlex.join(user_cmd),
                f"grep -qx {q(exe)} /etc/shells || echo {q(exe)} >> /etc/shells",
            ],
            lambda: _steps(lambda: _run(user_cmd), lambda: _add_shell(exe)),
            notes,
        )
    )

    cfg_lines = f"agents: [{agent}]\nreviewers: [{reviewer}]\nsocket: {socket_path}\n"
    cdir, sdir, cfile = q(str(rp.config_dir)), q(str(rp.state_dir)), q(str(rp.config_file))

    def do_config() -> None:
        for d in (rp.config_dir, rp.state_dir):
            _mkdirs_as(d, rev.pw_uid, rev.pw_gid)
        kept = _append_config(
            rp.config_file,
            {"agents": f"[{agent}]", "reviewers": f"[{reviewer}]", "socket": socket_path},
        )
        for k in kept:
            sys.stderr.write(
                f"xguard: {rp.config_file} already sets `{k}:`; left as it is: "
                f"check that it says what step 2 shows\n"
            )
        for d in (rp.config_dir, rp.state_dir):
            os.chown(d, rev.pw_uid, rev.pw_gid)
            os.chmod(d, 0o700)
        os.chown(rp.config_file, rev.pw_uid, rev.pw_gid)
        os.chmod(rp.config_file, 0o600)

    steps.append(
        Step(
            f"The broker's config, owned by {reviewer} (the agent can neither read nor write it)",
            [
                f"install -d -o {q(reviewer)} -m 0700 {cdir} {sdir}",
                f"cat >> {cfile} <<'EOF'\n{cfg_lines}EOF",
                f"chown {q(reviewer)} {cfile} && chmod 0600 {cfile}",
                f"chmod -R go-w {cdir} {sdir}",
            ],
            do_config,
            [f"Rules: {rp.rules_file} (`xguard init` as {reviewer}), else the built-in defaults."],
        )
    )

    steps.append(
        Step(
            "Client config: the agent's xguard always asks the broker (root-owned, mode 0644)",
            [
                "install -d -m 0755 /etc/xguard",
                f"cat > {CLIENT_CONF} <<'EOF'\n{client_conf_text(agent, socket_path)}EOF",
                f"chown root:root {CLIENT_CONF} && chmod 0644 {CLIENT_CONF}",
            ],
            lambda: _write(CLIENT_CONF, client_conf_text(agent, socket_path), 0o644),
        )
    )

    unit = unit_text(reviewer, exe, socket_path)
    if systemd:
        steps.append(
            Step(
                f"Broker service {UNIT_NAME}, running as {reviewer}",
                [
                    f"cat > {UNIT_PATH} <<'EOF'\n{unit}EOF",
                    "systemctl daemon-reload",
                    f"systemctl enable --now {UNIT_NAME}",
                ],
                lambda: _steps(
                    lambda: _write(UNIT_PATH, unit, 0o644),
                    lambda: _systemctl(["daemon-reload"]),
                    lambda: _systemctl(["enable", "--now", UNIT_NAME]),
                ),
                [
                    f"Without systemd: run `{exe} serve --socket {socket_path}` as {reviewer} "
                    f"(the socket's folder must belong to {reviewer})."
                ],
            )
        )
    if ssh:
        snippet = sshd_snippet(agent, exe)
        conf = f"/etc/ssh/sshd_config.d/xguard-{agent}.conf"
        steps.append(
            Step(
                "SSH: every command of the agent goes through `xguard ssh-gate`",
                [
                    f"install -d -m 0755 {KEYS_DIR}",
                    f"touch {KEYS_DIR}/{agent}.keys && chmod 0644 {KEYS_DIR}/{agent}.keys",
                    f"cat > {conf} <<'EOF'\n{snippet}EOF",
                    "sshd -t && systemctl reload ssh",
                ],
                lambda: _steps(
                    lambda: _write(f"{KEYS_DIR}/{agent}.keys", "", 0o644, overwrite=False),
                    lambda: _write(conf, snippet, 0o644),
                    lambda: _run(["sshd", "-t"]),
                    lambda: _systemctl(["reload", "ssh"]),
                ),
                [
                    f"Add the agent's public key to {KEYS_DIR}/{agent}.keys "
                    f"(not to ~{agent}/.ssh: the agent owns that)."
                ],
            )
        )
    steps.append(
        Step(
            "Check",
            [
                f"{q(exe)} serve --check   # as {reviewer}: exit 0, or 78 naming the file to fix",
                f"runuser -u {q(agent)} -- {q(exe)} -c 'echo hello'   # goes through the broker",
            ],
            None,
        )
    )
    return steps


def _steps(*actions: Callable[[], object]) -> None:
    for a in actions:
        a()


def _mkdirs_as(path: Path, uid: int, gid: int) -> None:
    """mkdir -p, giving the folders it creates to uid:gid (not to root, who runs setup)."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        d.mkdir(mode=0o700)
        os.chown(d, uid, gid)


def _add_shell(exe: str) -> None:
    try:
        with open("/etc/shells", encoding="utf-8") as f:
            if exe in (ln.strip() for ln in f):
                return
    except FileNotFoundError:
        pass
    with open("/etc/shells", "a", encoding="utf-8") as f:
        f.write(exe + "\n")


def _systemctl(args: list[str]) -> None:
    if not os.path.isdir("/run/systemd/system"):
        raise RuntimeError(
            "systemd is not running here: start the broker by hand (see the note above)"
        )
    _run(["systemctl", *args])


def _append_config(path: Path, keys: dict[str, str]) -> list[str]:
    """Add the strict-mode keys to config.yaml unless it sets them (never rewrites a line)."""
    text = (
        path.read_text(encoding="utf-8")
        if path.exists()
        else "# xguard settings (see `xguard --help`)\n"
    )
    present = {
        ln.split(":", 1)[0].strip()
        for ln in text.splitlines()
        if ln and not ln[0].isspace() and ":" in ln and not ln.startswith("#")
    }
    add = "".join(f"{k}: {v}\n" for k, v in keys.items() if k not in present)
    if add:
        if text and not text.endswith("\n"):
            text += "\n"
        path.write_text(text + add, encoding="utf-8")
    return [k for k in keys if k in present]


def render(steps: list[Step]) -> str:
    out = []
    for i, s in enumerate(steps, 1):
        out.append(f"# {i}. {s.title}")
        out.extend(s.commands)
        out.extend(f"#    {n}" for n in s.notes)
        out.append("")
    return "\n".join(out) + "\n"
