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
from ._record import dataclass
from pathlib import Path

APP = "xguard"


@dataclass(frozen=True)
class Paths:
    config_dir: Path
    state_dir: Path

    @property
    def rules_file(self) -> Path:
        return self.config_dir / "rules.yaml"

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.yaml"

    @property
    def rules_d(self) -> Path:
        return self.config_dir / "rules.d"

    @property
    def audit_dir(self) -> Path:
        return self.state_dir / "audit"

    @property
    def audit_file(self) -> Path:
        return self.audit_dir / "audit.jsonl"

    @property
    def spool_dir(self) -> Path:
        return self.state_dir / "spool"

    @property
    def sessions_dir(self) -> Path:
        return self.state_dir / "sessions"

    @property
    def cache_dir(self) -> Path:
        return self.state_dir / "cache"

    @property
    def socket_path(self) -> Path:
        return self.state_dir / "xguard.sock"

    def protected(self) -> list[Path]:
        """Folders whose contents a gated command may never write (SPEC §3)."""
        return [self.config_dir, self.state_dir]


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var, "").strip()
    # XDG says relative values are invalid and must be ignored.
    if value and os.path.isabs(value):
        return Path(value)
    return Path(os.path.expanduser(fallback))


def get_paths(environ: dict[str, str] | None = None) -> Paths:
    """Resolve the folders, honouring XGUARD_HOME first."""
    env = os.environ if environ is None else environ
    home = env.get("XGUARD_HOME", "").strip()
    if home:
        p = Path(home).expanduser()
        if not p.is_absolute():
            p = Path.cwd() / p
        return Paths(p, p)
    if sys.platform.startswith("linux"):
        return Paths(
            _xdg("XDG_CONFIG_HOME", "~/.config") / APP,
            _xdg("XDG_STATE_HOME", "~/.local/state") / APP,
        )
    import platformdirs  # slow import: only off Linux

    return Paths(
        Path(platformdirs.user_config_dir(APP)), Path(platformdirs.user_state_dir(APP))
    )


def ensure_dir(path: Path) -> Path:
    """Create a private folder (0700) if it is missing; never loosen one that exists."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        from .errors import XguardError

        raise XguardError(f"cannot create {path}: {e.strerror}") from e
    return path
