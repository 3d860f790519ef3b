"""Which program a command name runs: the agent's PATH, looked up before deciding.

A rule allows `ls` by name; bash runs the first `ls` on PATH. When that is in
a folder the agent can write (~/.local/bin, the project, /tmp), the program
is whatever the agent put there, and the allow for `ls` does not cover it.
The resolver is built by the gate from the agent's PATH and handed to
`decide` through its Context, so `decide` stays pure.

Standard library only (hot path): a few stat calls per command name, cached
per process.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

# bash runs these itself, whatever PATH holds (a function could shadow them,
# and function definitions are floored by the parser).
BUILTINS = frozenset(
    {
        "alias",
        "bg",
        "bind",
        "break",
        "builtin",
        "caller",
        "cd",
        "command",
        "compgen",
        "complete",
        "compopt",
        "continue",
        "declare",
        "dirs",
        "disown",
        "echo",
        "enable",
        "eval",
        "exec",
        "exit",
        "export",
        "false",
        "fc",
        "fg",
        "getopts",
        "hash",
        "help",
        "history",
        "jobs",
        "kill",
        "let",
        "local",
        "logout",
        "mapfile",
        "popd",
        "printf",
        "pushd",
        "pwd",
        "read",
        "readarray",
        "readonly",
        "return",
        "set",
        "shift",
        "shopt",
        "source",
        "suspend",
        "test",
        "times",
        "trap",
        "true",
        "type",
        "typeset",
        "ulimit",
        "umask",
        "unalias",
        "unset",
        "wait",
        ".",
        ":",
        "[",
        "[[",
    }
)
# Where the agent or anyone can put a program, whoever owns the folder.
_SCRATCH = ("/tmp", "/var/tmp", "/dev/shm", "/run/user")  # noqa: S108 (names, not files made)


def _under(path: str, folder: str) -> bool:
    folder = folder.rstrip("/") or "/"
    return path == folder or path.startswith(folder + "/")


def trusted_folder(folder: str, home: str, cwd: str) -> bool:
    """A system folder: owned by root, writable by no one else, and not in
    the home folder, the project or a scratch folder."""
    if any(_under(folder, f) for f in (home, cwd, *_SCRATCH) if f):
        return False
    try:
        st = os.stat(folder)
    except OSError:
        return False
    return st.st_uid == 0 and not (st.st_mode & 0o022)


def _root_owned_file(path: str) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return st.st_uid == 0 and not (st.st_mode & 0o022)


def path_resolver(
    path_env: str, home: str, cwd: str, trusted: list[str] | None = None
) -> Callable[[str], tuple[str, bool] | None]:
    """name -> (the program bash would run, whether it lies outside the
    system's own folders), or None when PATH has no such program (a builtin,
    or nothing runs). `trusted`: folders the configuration vouches for
    (`trust_path:`), `~` expanded."""
    vouched = [os.path.normpath(home + t[1:] if t.startswith("~") else t) for t in (trusted or [])]
    cache: dict[str, tuple[str, bool] | None] = {}
    folders = [d or "." for d in path_env.split(":")]

    def resolve(name: str) -> tuple[str, bool] | None:
        if name in cache:
            return cache[name]
        found: tuple[str, bool] | None = None
        if name not in BUILTINS and "/" not in name and name:
            for d in folders:
                full = os.path.join(d if os.path.isabs(d) else os.path.join(cwd, d), name)
                if os.path.isfile(full) and os.access(full, os.X_OK):
                    real = os.path.realpath(full)
                    untrusted = not any(_under(full, v) for v in vouched) and not (
                        trusted_folder(os.path.dirname(os.path.abspath(full)), home, cwd)
                        and trusted_folder(os.path.dirname(real), home, cwd)
                        and _root_owned_file(real)
                    )
                    found = (os.path.abspath(full), untrusted)
                    break
        cache[name] = found
        return found

    return resolve
