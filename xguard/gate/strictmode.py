"""Does strict mode apply to this process, and where is its broker? (issue 6)

Strict mode applies when /etc/xguard/client.conf (root's, not writable by
anyone else) lists this user, or when XGUARD_BROKER names a socket (set by
the login setup: sshd's SetEnv, a systemd unit). The variable can turn strict
mode on, never off: client.conf wins. Every front end asks this before it
decides anything locally; xguard/strict/ holds the broker and its client.

Hot path: standard library only.
"""

from __future__ import annotations

import os

from xguard.errors import ConfigError

TYPE_CHECKING = False  # typing costs ~3 ms to import on the hot path; type checkers see True
if TYPE_CHECKING:
    from typing import Any

CLIENT_CONF = "/etc/xguard/client.conf"
ENV_VAR = "XGUARD_BROKER"


def configured(environ: Any = None) -> bool:
    """Cheap test before reading client.conf: is strict mode possibly on here?"""
    env = os.environ if environ is None else environ
    return bool(env.get(ENV_VAR)) or os.path.exists(CLIENT_CONF)


def broker_socket(environ: Any = None) -> str | None:
    """The broker's socket when strict mode applies to this process, else None."""
    env = os.environ if environ is None else environ
    sock = _client_conf()
    if sock is not None:
        return sock
    v = env.get(ENV_VAR, "").strip()
    return v or None


def _client_conf(path: str = CLIENT_CONF) -> str | None:
    """The socket named by a client.conf that lists this user, else None.

    Format (a YAML subset, read without YAML):

        socket: /run/xguard/broker.sock
        agents: claude, codex        # user names or uids; `*` = every user but root
    """
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror}", path, 1) from None
    # Like sudo with sudoers: a file that decides who is contained must be root's alone.
    if st.st_uid != 0:
        raise ConfigError(
            f"owned by uid {st.st_uid}, not root: strict mode refuses it (chown root {path})",
            path,
            1,
        )
    if st.st_mode & 0o022:
        raise ConfigError(
            f"writable by group/others (mode {st.st_mode & 0o7777:04o}): strict mode refuses it "
            f"(chmod go-w {path})",
            path,
            1,
        )
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read: {getattr(e, 'strerror', None) or e}", path, 1) from None
    conf = parse_client_conf(lines, path)
    if not conf.get("socket"):
        raise ConfigError("no 'socket:' line", path, 1)
    agents = conf.get("agents") or []
    uid = os.getuid()
    if "*" in agents and uid != 0:
        return conf["socket"]
    if str(uid) in agents:
        return conf["socket"]
    import pwd

    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        return None
    return conf["socket"] if name in agents else None


def parse_client_conf(lines: list[str], path: str) -> dict[str, Any]:
    """`key: value` lines; `agents` takes a comma list or a [flow, list]."""
    out: dict[str, Any] = {}
    for n, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        key, sep, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if not sep or key not in ("socket", "agents"):
            raise ConfigError(
                f"expected 'socket: PATH' or 'agents: NAME, …', not {raw.strip()[:80]!r}", path, n
            )
        if key in out:
            raise ConfigError(f"duplicate key '{key}'", path, n)
        if key == "socket":
            value = value.strip("'\"")
            if not value.startswith("/"):
                raise ConfigError("socket: must be an absolute path", path, n)
            out[key] = value
        else:
            value = value.strip()
            if value.startswith("[") and value.endswith("]"):
                value = value[1:-1]
            out[key] = [v.strip().strip("'\"") for v in value.split(",") if v.strip()]
    return out


def refuse_local(environ: Any = None) -> None:
    """Fail closed where a strict-mode agent would otherwise decide locally.

    Called by the Gate (xguard/gate/request.py): in strict mode the agent's own rules (which
    it can edit) must never decide anything (issue 6)."""
    sock = broker_socket(environ)
    if sock:
        raise ConfigError(
            f"strict mode: the broker at {sock} decides this user's commands; "
            "this xguard verb cannot decide locally "
            "(use `xguard -c`, `xguard run` or `xguard check`)"
        )
