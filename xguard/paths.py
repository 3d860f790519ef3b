"""Where xguard keeps its config, spool, sessions, cache and audit log.

`XGUARD_HOME` puts everything in one folder (tests always set it). Otherwise
config lives in the user config dir and state in the user state dir, as
platformdirs defines them. The hot path computes the Linux/XDG answer itself,
because importing platformdirs costs ~20 ms on every command; a unit test
proves the two agree. Other platforms go through platformdirs.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

APP = "xguard"


def _P(s: str) -> Path:
    from pathlib import Path  # ~4 ms with its imports: only off the hot path

    return Path(s)


class Paths:
    """The folders, as strings (`*_s`, for the hot path, which must not import
    pathlib) and as Path objects (everything else)."""

    __slots__ = ("config_dir_s", "state_dir_s")

    def __init__(
        self, config_dir: str | os.PathLike[str], state_dir: str | os.PathLike[str]
    ) -> None:
        self.config_dir_s = os.fspath(config_dir)
        self.state_dir_s = os.fspath(state_dir)

    def __repr__(self) -> str:
        return f"Paths({self.config_dir_s!r}, {self.state_dir_s!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Paths) and (self.config_dir_s, self.state_dir_s) == (
            other.config_dir_s,
            other.state_dir_s,
        )

    __hash__ = None  # type: ignore[assignment]

    # -- strings ------------------------------------------------------------
    @property
    def rules_file_s(self) -> str:
        return os.path.join(self.config_dir_s, "rules.yaml")

    @property
    def config_file_s(self) -> str:
        return os.path.join(self.config_dir_s, "config.yaml")

    @property
    def rules_d_s(self) -> str:
        return os.path.join(self.config_dir_s, "rules.d")

    @property
    def audit_dir_s(self) -> str:
        return os.path.join(self.state_dir_s, "audit")

    @property
    def audit_file_s(self) -> str:
        return os.path.join(self.state_dir_s, "audit", "audit.jsonl")

    @property
    def spool_dir_s(self) -> str:
        return os.path.join(self.state_dir_s, "spool")

    @property
    def sessions_dir_s(self) -> str:
        return os.path.join(self.state_dir_s, "sessions")

    @property
    def cache_dir_s(self) -> str:
        return os.path.join(self.state_dir_s, "cache")

    @property
    def socket_path_s(self) -> str:
        return os.path.join(self.state_dir_s, "xguard.sock")

    def protected_s(self) -> list[str]:
        """Folders whose contents a gated command may never write (SPEC §3)."""
        return [self.config_dir_s, self.state_dir_s]

    # -- Path objects ---------------------------------------------------------
    @property
    def config_dir(self) -> Path:
        return _P(self.config_dir_s)

    @property
    def state_dir(self) -> Path:
        return _P(self.state_dir_s)

    @property
    def rules_file(self) -> Path:
        return _P(self.rules_file_s)

    @property
    def config_file(self) -> Path:
        return _P(self.config_file_s)

    @property
    def rules_d(self) -> Path:
        return _P(self.rules_d_s)

    @property
    def audit_dir(self) -> Path:
        return _P(self.audit_dir_s)

    @property
    def audit_file(self) -> Path:
        return _P(self.audit_file_s)

    @property
    def spool_dir(self) -> Path:
        return _P(self.spool_dir_s)

    @property
    def sessions_dir(self) -> Path:
        return _P(self.sessions_dir_s)

    @property
    def cache_dir(self) -> Path:
        return _P(self.cache_dir_s)

    @property
    def socket_path(self) -> Path:
        return _P(self.socket_path_s)

    def protected(self) -> list[Path]:
        return [_P(p) for p in self.protected_s()]


def _xdg(var: str, fallback: str) -> str:
    value = os.environ.get(var, "").strip()
    # XDG says relative values are invalid and must be ignored.
    if value and os.path.isabs(value):
        return value
    return os.path.expanduser(fallback)


def get_paths(environ: dict[str, str] | None = None) -> Paths:
    """Resolve the folders, honouring XGUARD_HOME first."""
    env = os.environ if environ is None else environ
    home = env.get("XGUARD_HOME", "").strip()
    if home:
        p = os.path.abspath(os.path.expanduser(home))
        return Paths(p, p)
    if sys.platform.startswith("linux"):
        return Paths(
            os.path.join(_xdg("XDG_CONFIG_HOME", "~/.config"), APP),
            os.path.join(_xdg("XDG_STATE_HOME", "~/.local/state"), APP),
        )
    import platformdirs  # slow import: only off Linux

    return Paths(platformdirs.user_config_dir(APP), platformdirs.user_state_dir(APP))


def host_name(environ: dict[str, str] | None = None) -> str:
    """This host's name in records and requests: XGUARD_HOST, else the node name.

    The override exists for hosts whose node name says nothing (containers);
    where a shared queue is configured, the database binds each request to
    the host its role is mapped to, whatever this says.
    """
    env = os.environ if environ is None else environ
    return env.get("XGUARD_HOST", "").strip() or os.uname().nodename


def ensure_dir(path: str | os.PathLike[str]) -> str:
    """Create a private folder (0700) if it is missing; never loosen one that exists."""
    p = os.fspath(path)
    try:
        os.makedirs(p, mode=0o700, exist_ok=True)
    except OSError as e:
        from xguard.errors import XguardError

        raise XguardError(f"cannot create {p}: {e.strerror}") from e
    return p
