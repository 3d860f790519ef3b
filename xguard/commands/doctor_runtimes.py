"""What `xguard doctor` can tell about Codex CLI and Gemini CLI set-ups.

Read from the runtimes' own files (Codex CLI 0.171.0: config.toml, hooks.json,
`[hooks.state]` trust records; Gemini CLI 0.61.0: settings.json `hooks`), and
from the behaviour tests/runtimes/ shows:

- Codex runs a hook only once it has been trusted (`/hooks` in its terminal
  UI records a `trusted_hash` under `[hooks.state]`); `codex exec` skips an
  untrusted hook without a word.
- Codex answers "ask" by running the command, so a Claude Code hook
  (`xguard hook claude-code`, which may answer ask) fails open there.
- Codex's `exec_command` lets the model pick the shell: with only the login
  shell set to xguard, `"shell": "/bin/sh"` goes around it.
- Gemini CLI reads `{"decision": …}`: a Claude Code hook's answer has none,
  so Gemini runs the command.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

Warn = Callable[[str], None]


def _commands(groups: object) -> list[tuple[object, dict[str, Any]]]:
    """(matcher, hook) for every command hook in a list of matcher groups."""
    out: list[tuple[object, dict[str, Any]]] = []
    for g in groups if isinstance(groups, list) else []:
        if isinstance(g, dict):
            for h in g.get("hooks") or []:
                if isinstance(h, dict) and isinstance(h.get("command"), str):
                    out.append((g.get("matcher"), h))
    return out


def _xguard_hook(command: str) -> str | None:
    """The runtime an xguard hook command names (claude-code, codex, gemini)."""
    words = command.split()
    for i, w in enumerate(words[:-1]):
        if os.path.basename(w) == "xguard" and words[i + 1] == "hook" and i + 2 < len(words):
            return words[i + 2]
    return None


def codex(
    home: Path, env: Mapping[str, str], login_is_xguard: bool, *, warn: Warn, problem: Warn
) -> list[dict[str, Any]]:
    """Codex CLI's config: its xguard hooks, whether Codex will run them."""
    import tomllib

    codex_home = Path(env.get("CODEX_HOME") or home / ".codex")
    cfg_file = codex_home / "config.toml"
    found: list[dict[str, Any]] = []
    cfg: dict[str, Any] = {}
    try:
        cfg = tomllib.loads(cfg_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as e:
        warn(f"Codex config {cfg_file} cannot be read: {e}")
    sources: list[tuple[Path, object]] = [(cfg_file, (cfg.get("hooks") or {}).get("PreToolUse"))]
    hooks_json = codex_home / "hooks.json"
    try:
        data = json.loads(hooks_json.read_text(encoding="utf-8"))
        sources.append((hooks_json, ((data.get("hooks") or data) or {}).get("PreToolUse")))
    except FileNotFoundError:
        pass
    except (OSError, ValueError, AttributeError) as e:
        warn(f"Codex hooks {hooks_json} cannot be read: {e}")
    state = (cfg.get("hooks") or {}).get("state") or {}
    trusted = sum(
        1
        for v in (state.values() if isinstance(state, dict) else [])
        if isinstance(v, dict) and v.get("trusted_hash")
    )
    enabled = (cfg.get("features") or {}).get("hooks", True) is not False
    gated = False
    for f, groups in sources:
        for _matcher, h in _commands(groups):
            runtime = _xguard_hook(h["command"])
            if runtime is None:
                continue
            found.append(
                {
                    "name": "Codex PreToolUse hook",
                    "detail": f"{f} ({h['command']})",
                    "file": str(f),
                    "command": h["command"],
                    "trusted_hashes": trusted,
                }
            )
            if runtime != "codex":
                problem(
                    f'Codex runs `{h["command"]}` in {f}, but Codex treats an "ask" answer as '
                    "unsupported and runs the command: use `xguard hook codex`, which never asks"
                )
                continue
            if not enabled:
                problem(
                    f"Codex hooks are turned off ([features] hooks = false in {cfg_file}): "
                    f"`{h['command']}` never runs"
                )
                continue
            if not trusted:
                problem(
                    f"the Codex hook `{h['command']}` in {f} is installed but not trusted: Codex "
                    "skips it without a word until you trust it (`/hooks` in codex); "
                    "`codex exec --dangerously-bypass-hook-trust` also runs it"
                )
                continue
            gated = True
    if cfg_file.exists() and login_is_xguard and not gated:
        warn(
            "Codex lets the model pick the shell (exec_command's `shell` argument): with only "
            'the login shell set to xguard, a command run with "shell": "/bin/sh" is not gated; '
            "add `xguard hook codex` as a PreToolUse hook and trust it"
        )
    return found


def gemini(
    home: Path, cwd: Path, env: Mapping[str, str], exe: str | None, *, warn: Warn, problem: Warn
) -> list[dict[str, Any]]:
    """Gemini CLI's settings: its xguard hooks, and a `bash` shim on PATH."""
    import re

    found: list[dict[str, Any]] = []
    for f in (home / ".gemini" / "settings.json", cwd / ".gemini" / "settings.json"):
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as e:
            warn(f"Gemini CLI settings {f} cannot be read: {e}")
            continue
        groups = ((data.get("hooks") or {}) if isinstance(data, dict) else {}).get("BeforeTool")
        for matcher, h in _commands(groups):
            runtime = _xguard_hook(h["command"])
            if runtime is None:
                continue
            found.append(
                {
                    "name": "Gemini CLI BeforeTool hook",
                    "detail": f"{f} ({h['command']})",
                    "file": str(f),
                    "command": h["command"],
                    "timeout_ms": h.get("timeout"),
                }
            )
            if runtime != "gemini":
                problem(
                    f"Gemini CLI runs `{h['command']}` in {f}, but Gemini reads "
                    '{"decision": …}, which that hook does not print, so Gemini runs the command: '
                    "use `xguard hook gemini`"
                )
            try:
                covers = matcher in (None, "", "*") or bool(
                    re.search(str(matcher), "run_shell_command")
                )
            except re.error:
                covers = False
            if not covers:
                warn(
                    f"the xguard hook in {f} has matcher {matcher!r}, which does not match "
                    "run_shell_command"
                )
            if "wait" in h["command"].split() and not h.get("timeout"):
                warn(
                    f"the xguard hook in {f} waits for a reviewer, but Gemini stops hooks after "
                    '60 s by default: set its "timeout" (milliseconds) and pass the same in '
                    "seconds as --timeout"
                )
    bash = shutil.which("bash", path=env.get("PATH", os.defpath))
    if bash and exe and os.path.realpath(bash) == os.path.realpath(exe):
        found.append({"name": "PATH shim `bash` (Gemini CLI)", "detail": bash})
    return found
