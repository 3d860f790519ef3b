"""Load, validate and compile rules (SPEC §3 "Rules", "Matching").

A rules file is YAML, read with the C loader and checked against a
declarative schema: an unknown key, a bad value, a duplicate key or an
invalid regex is a config error naming `file:line: what`, because a typo in a
security config must never silently weaken it.

Compiled rules are cached (marshal) under the state folder, keyed by the
SHA-256 of the source files' bytes (and xguard's version), so the hot path
loads them with the standard library only; YAML is imported only when the
cache is stale. A command reads the cache's index and makes only the rules
its units can match; regexes are compiled when a unit first needs them.
"""

from __future__ import annotations

import marshal
import os
import sys

from xguard import __version__
from xguard.errors import ConfigError
from xguard.paths import Paths, ensure_dir
from xguard.util import parse_duration, parse_size

TYPE_CHECKING = False  # typing costs ~3 ms to import on the hot path; type checkers see True

if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

ACTIONS = ("allow", "require_approval", "deny")
STRICTNESS = {"allow": 0, "require_approval": 1, "deny": 2}
# The hot path never imports re, json or pathlib (each pulls in several ms of
# imports); YAML, regex compilation and Path objects belong to the cold path.
BUILTIN_RULES_S = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "default-rules.yaml"
)


def __getattr__(name: str) -> Any:
    if name == "BUILTIN_RULES":  # a Path, for the CLI; built lazily
        from pathlib import Path

        return Path(BUILTIN_RULES_S)
    raise AttributeError(name)


# Part of the rules cache's key: bumped when what a compiled rule holds changes.
CACHE_FORMAT = b"2"

DEFAULT_ENV_KEEP = [
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_*",
    "TERM",
    "TZ",
    "TMPDIR",
    "PWD",
]
DEFAULT_ASSIGN_OK = ["LANG", "LC_*", "TZ", "NO_COLOR", "TERM", "COLUMNS", "LINES"]

# ---------------------------------------------------------------------------
# The schema. Each key maps to a checker: a type name, a tuple of allowed
# values, or a nested dict. `*` in a dict means "any key, values of this kind".
_DURATION = "duration"
_RULE_SCHEMA: dict[str, Any] = {
    "pattern": "str",
    "regex": "regex",
    "path": "str",
    "access": ("read", "write", "any"),
    "except": "strlist",  # path rules: globs the rule does not cover (`**/.ssh/*.pub`)
    "action": ACTIONS,
    "reason": "str",
    "notify": "strlist",
    "dynamic": ("allow", "require_approval"),
    "max_runtime": _DURATION,
    "caps": {"*": "number"},
    # issue 5: above growth x baseline needs approval; issue 13: `live` reads the
    # current value from the cluster (`baseline: live` is `{--replicas: live}`)
    "baseline": "baseline",
    "growth": "number",
    "read": "bool",  # issue 5: the loop breaker's reads (limits.py)
    "limits": {"max_rows": "int", "max_rows_hard": "int"},  # issue 13: row caps
    "name": "str",
    # issue 11: how an allowed command runs (xguard/gate/confine.py)
    "confine": "bool",  # false: the tool needs the whole machine; it runs unconfined
    "network": ("allow", "deny"),  # allow: the box keeps the network
    "if_confined": "bool",  # this allow counts only when the command will run in the box
    "record": "bool",  # issue 14: `record: false` keeps no output of what this rule matches
}
_TEST_SCHEMA = {
    "command": "str",
    "expect": ACTIONS,
    "cwd": "str",
    "argv": "strlist",
    "confined": "bool",  # decided as where the kernel box can start (issue 11)
}
_NOTIFY_TARGET = {
    "webhook": "str",
    "command": "strlist",
    "bell": "bool",
    "timeout": _DURATION,
    "headers": {"*": "str"},
}
_LIMITS = {
    "max_runtime": _DURATION,
    "kill_grace": _DURATION,
    "rate": {"commands_per_minute": "int", "approvals_per_hour": "int"},
    "loop": {"same_rule": "int", "same_command": "int", "window": _DURATION, "trip_at": "int"},
    "max_rows": "int",  # issue 13: a statement's preview above it needs approval
    "max_rows_hard": "int",  # and above this it is denied
}
_ENV = {"keep": "strlist", "set": {"*": "str"}, "assign_ok": "strlist"}
_SIZE = "size"
# Output recordings (issue 14); a profile may also say just `record: false`.
_RECORD = {"output": "bool", "max_bytes": _SIZE, "mask": "bool"}
_SETTINGS: dict[str, Any] = {
    "wait": _DURATION,
    "expiry": _DURATION,
    "prompt": "bool",
    "shell": "str",
    "audit": {
        "rotate_bytes": "int",
        "keep": "int",
        "forward": "any",
    },
    "limits": _LIMITS,
    "sessions": {"required": "bool", "max_ttl": _DURATION, "default_ttl": _DURATION},
    "hook": {
        "claude_code": {"require_approval": ("ask", "wait", "deny")},
        # never ask: Codex treats "ask" as unsupported and runs the command
        "codex": {"require_approval": ("wait", "deny")},
        "gemini": {"require_approval": ("ask", "wait", "deny")},
    },
    "reviewers": "strlist",
    "agents": "strlist",
    # issue 11: folders whose programs count as the system's own, though the
    # agent could write there (a team's tool folder, a test's stand-ins).
    "trust_path": "strlist",
    "strict": "bool",
    "socket": "str",
    "confine": "confine_mode",  # issue 11: auto | required | off (kernel confinement)
    "confine_approved": "bool",  # approved commands run in the box too
    # a warm server (xguard/commands/warmserver.py) started on first use
    "warm": "bool",
    "warm_idle": _DURATION,
    "record": _RECORD,
    # issue 15: one queue for many hosts (a libpq connection string or service)
    "queue": {"postgres": "str", "connect_timeout": _DURATION},
    "web": {"trusted_proxies": "strlist"},
    # issue 13: the impact preview (xguard/gate/impact.py)
    "impact": {
        "timeout": _DURATION,
        "lock_timeout": _DURATION,
        "connect_timeout": _DURATION,
        "pure": "strlist",
    },
}
_PROFILE = {
    "rules": "str",
    "env": _ENV,
    "limits": _LIMITS,
    "sessions": _SETTINGS["sessions"],
    "production": "bool",
    "wait": _DURATION,
    "record": "record",
}
TOP_SCHEMA: dict[str, Any] = {
    "default": ACTIONS,
    "rules": ["rule"],
    "tests": ["test"],
    "env": _ENV,
    "notify": {"*": _NOTIFY_TARGET},
    "profiles": {"*": _PROFILE},
    **_SETTINGS,
}


class _Checker:
    """Validate a composed YAML node tree against the schema, with line numbers."""

    def __init__(self, file: str) -> None:
        self.file = file

    def fail(self, node: Any, what: str) -> ConfigError:
        return ConfigError(what, self.file, node.start_mark.line + 1)

    def check(self, node: Any, schema: Any, where: str) -> Any:
        import yaml

        if schema == "any":
            return _plain(node, self.file)
        if isinstance(schema, dict):
            if not isinstance(node, yaml.MappingNode):
                raise self.fail(node, f"{where}: expected a mapping")
            out: dict[str, Any] = {}
            for k, v in node.value:
                if not isinstance(k, yaml.ScalarNode):
                    raise self.fail(k, f"{where}: keys must be plain text")
                key = k.value
                if key in out:
                    raise self.fail(k, f"{where}: duplicate key '{key}'")
                if key in schema:
                    sub = schema[key]
                elif "*" in schema:
                    sub = schema["*"]
                else:
                    known = ", ".join(sorted(x for x in schema if x != "*"))
                    hint = ""
                    if ":" in key and key.split(":", 1)[0] in schema:
                        hint = " (in YAML a ':' needs a space after it)"
                    raise self.fail(k, f"unknown key '{key}' in {where}{hint} (known: {known})")
                out[key] = self.check(v, sub, f"{where}.{key}" if where else key)
            return out
        if isinstance(schema, list):
            if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null"):
                return []
            if not isinstance(node, yaml.SequenceNode):
                raise self.fail(node, f"{where}: expected a list")
            return [self.check(v, schema[0], f"{where}[{i}]") for i, v in enumerate(node.value)]
        if schema == "rule":
            return self.rule(node, where)
        if schema == "test":
            t = self.check(node, _TEST_SCHEMA, where)
            if "expect" not in t or ("command" not in t and "argv" not in t):
                raise self.fail(node, f"{where}: a test needs 'command' and 'expect'")
            return t
        value = _plain(node, self.file)
        if isinstance(schema, tuple):
            if not isinstance(node, yaml.ScalarNode) or value not in schema:
                raise self.fail(node, f"{where}: must be one of {', '.join(schema)}, not {value!r}")
            return value
        if schema == "str":
            if not isinstance(node, yaml.ScalarNode) or node.tag.endswith((":null", ":bool")):
                raise self.fail(node, f"{where}: expected text")
            return str(node.value)
        if schema == "strlist":
            if isinstance(node, yaml.ScalarNode) and not node.tag.endswith(":null"):
                return [str(node.value)]
            if not isinstance(node, yaml.SequenceNode) or not all(
                isinstance(x, yaml.ScalarNode) for x in node.value
            ):
                raise self.fail(node, f"{where}: expected a list of text")
            return [str(x.value) for x in node.value]
        if schema == "bool":
            if not isinstance(value, bool):
                raise self.fail(node, f"{where}: expected true or false")
            return value
        if schema in ("int", "number"):
            ok = isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
            if not ok or (schema == "int" and not isinstance(value, int)):
                raise self.fail(
                    node,
                    f"{where}: expected a non-negative {'whole ' if schema == 'int' else ''}number",
                )
            return value
        if schema == "confine_mode":
            # YAML 1.1 reads a bare `off` as false: that is what the user meant.
            if value is False:
                return "off"
            if not isinstance(node, yaml.ScalarNode) or value not in ("auto", "required", "off"):
                raise self.fail(node, f"{where}: must be one of auto, required, off, not {value!r}")
            return value
        if schema == _SIZE:
            if parse_size(value) is None:
                raise self.fail(node, f"{where}: expected a size like 10MB, 512KB or 1048576")
            return value
        if schema == "record":
            if isinstance(node, yaml.ScalarNode):
                if not isinstance(value, bool):
                    raise self.fail(node, f"{where}: expected true, false or a mapping")
                return {"output": value}
            return self.check(node, _RECORD, where)
        if schema == _DURATION:
            if parse_duration(value) is None:
                raise self.fail(node, f"{where}: expected a duration like 30s, 15m, 2h")
            return value
        if schema == "baseline":
            if isinstance(node, yaml.ScalarNode) and value == "live":
                return {"--replicas": "live"}
            if not isinstance(node, yaml.MappingNode):
                raise self.fail(node, f"{where}: expected `live` or a mapping of option: number")
            out = {}
            for k, v in node.value:
                val = _plain(v)
                if val != "live":
                    val = self.check(v, "number", f"{where}.{k.value}")
                out[str(k.value)] = val
            return out
        if schema == "regex":
            import re

            if not isinstance(node, yaml.ScalarNode) or isinstance(value, bytes | bool | None):
                raise self.fail(node, f"{where}: expected a regular expression")
            s = str(value)
            try:
                re.compile(s)
            except (re.error, OverflowError, RecursionError, ValueError) as e:
                raise self.fail(node, f"{where}: invalid regex: {e}") from None
            return s
        raise AssertionError(f"schema kind {schema!r}")  # pragma: no cover

    def rule(self, node: Any, where: str) -> dict[str, Any]:
        r = self.check(node, _RULE_SCHEMA, where)
        kinds = [k for k in ("pattern", "regex", "path") if k in r]
        if len(kinds) != 1:
            raise self.fail(node, f"{where}: a rule needs exactly one of pattern, regex, path")
        if "action" not in r:
            raise self.fail(node, f"{where}: a rule needs an action ({', '.join(ACTIONS)})")
        if "access" in r and kinds[0] != "path":
            raise self.fail(node, f"{where}: 'access' applies to path rules only")
        if "except" in r and kinds[0] != "path":
            raise self.fail(node, f"{where}: 'except' applies to path rules only")
        if kinds[0] == "pattern" and not r["pattern"].strip():
            raise self.fail(node, f"{where}: empty pattern")
        if kinds[0] == "path" and not r["path"].strip():
            raise self.fail(node, f"{where}: empty path")
        if r.get("if_confined") and (r["action"] != "allow" or kinds[0] == "path"):
            raise self.fail(node, f"{where}: 'if_confined' applies to allow rules for commands")
        if r.get("if_confined") and r.get("confine") is False:
            raise self.fail(node, f"{where}: 'if_confined' and 'confine: false' contradict")
        if ("network" in r or "confine" in r) and kinds[0] == "path":
            raise self.fail(node, f"{where}: 'network' and 'confine' apply to command rules")
        if kinds[0] == "path":
            import re

            # The glob becomes a regex compiled at decision time: a glob that
            # cannot (`[z-a]`) must fail here, not as an internal error later.
            try:
                re.compile(
                    glob_regex(r["path"])
                    .replace("\x00HOME\x00", "/home")
                    .replace("\x00CWD\x00", "/w")
                )
            except (re.error, OverflowError, RecursionError, ValueError) as e:
                raise self.fail(node, f"{where}.path: invalid glob: {e}") from None
        r["line"] = node.start_mark.line + 1
        return r


def _plain(node: Any, file: str = "") -> Any:
    """The Python value of a composed node, built by the safe constructor
    directly (re-serialising the node and loading it again fails on values
    such as a lone `,` that the emitter writes back unquoted)."""
    import yaml

    try:
        return yaml.SafeLoader("").construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError) as e:
        what = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"invalid value: {what}", file, node.start_mark.line + 1) from None


def load_yaml_file(path: Path, schema: dict[str, Any] = TOP_SCHEMA) -> dict[str, Any]:
    """Read and validate one YAML file; ConfigError with file:line on any problem."""
    import yaml

    Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        text = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror}", str(path), 1) from None
    try:
        node = yaml.compose(text, Loader=Loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"invalid YAML: {problem}", str(path), line) from None
    except UnicodeDecodeError:
        raise ConfigError("not UTF-8 text", str(path), 1) from None
    if node is None:
        raise ConfigError("empty file", str(path), 1)
    return _Checker(str(path)).check(node, schema, "")


# ---------------------------------------------------------------------------
# Compilation: the cacheable form of a rule (plain JSON types only).


def _required_literals(rx: str) -> list[list[str]] | None:
    """Literal strings a match of `rx` must contain, as AND-of-ORs, lowercased.

    Computed once when rules are compiled (from the regex's own parse tree)
    and kept in the cache, so a rule whose literals are absent from a unit is
    skipped without compiling or running its regex. Lowercasing keeps the
    test valid under IGNORECASE; non-ASCII units always get the full regex.
    """
    import re

    try:
        from re import _constants as C  # type: ignore[attr-defined]  # private, no stub
        from re import _parser as P  # type: ignore[attr-defined]  # private, no stub
    except ImportError:  # pragma: no cover
        return None
    try:
        tree = P.parse(rx)
    except (re.error, RecursionError, OverflowError):
        return None

    def seq(items: Any) -> list[set[str]]:
        out: list[set[str]] = []
        run: list[str] = []
        for op, av in items:
            if op is C.LITERAL:
                run.append(chr(av))
                continue
            if run:
                out.append({"".join(run)})
                run = []
            if op is C.SUBPATTERN:
                out.extend(seq(av[-1]))
            elif (
                op in (C.MAX_REPEAT, C.MIN_REPEAT, getattr(C, "POSSESSIVE_REPEAT", None))
                and av[0] >= 1
            ):
                out.extend(seq(av[2]))
            elif op is C.ASSERT and av[0] == 1:
                out.extend(seq(av[1]))
            elif op is C.BRANCH:
                alts = [seq(b) for b in av[1]]
                if alts and all(alts):
                    out.append(set().union(*(max(a, key=lambda s: min(map(len, s))) for a in alts)))
        if run:
            out.append({"".join(run)})
        return out

    try:
        sets = seq(tree)
    except (TypeError, ValueError, AttributeError):
        return None
    need = [sorted({x.lower() for x in s}) for s in sets if s and all(x and x.isascii() for x in s)]
    return need or None


def _anchored_prefixes(rx: str) -> tuple[list[str], bool] | None:
    """Literal prefixes one of which every match must start with, for a regex
    anchored with `^` (`^(grep|egrep)( .*)?…` -> ["grep", "egrep"]), and
    whether they are case-insensitive. Checked with one str.startswith at run
    time, before any regex is compiled."""
    import re

    try:
        from re import _constants as C  # type: ignore[attr-defined]  # private, no stub
        from re import _parser as P  # type: ignore[attr-defined]  # private, no stub
    except ImportError:  # pragma: no cover
        return None
    try:
        tree = P.parse(rx)
    except (re.error, RecursionError, OverflowError):
        return None
    items = list(tree)
    if not items or items[0] != (C.AT, C.AT_BEGINNING):
        return None
    ci = bool(tree.state.flags & re.IGNORECASE)

    def literal_run(seq: Any) -> tuple[str, bool]:
        """The literal characters a sequence starts with, and whether that is all of it."""
        out: list[str] = []
        for op, av in seq:
            if op is not C.LITERAL:
                return "".join(out), False
            out.append(chr(av))
        return "".join(out), True

    prefixes = [""]
    for op, av in items[1:]:
        if op is C.LITERAL:
            prefixes = [p + chr(av) for p in prefixes]
            continue
        if op is not C.SUBPATTERN:
            break
        ci = ci or bool(av[1] & re.IGNORECASE)  # a (?i:…) group
        sub = list(av[-1])
        alts = (
            [literal_run(b) for b in sub[0][1][1]]
            if len(sub) == 1 and sub[0][0] is C.BRANCH
            else [literal_run(sub)]
        )
        if any(not a for a, _ in alts):
            break
        prefixes = [p + a for p in prefixes for a, _ in alts]
        if len(prefixes) > 256:
            return None
        if not all(complete for _, complete in alts):
            break
    if any(not p for p in prefixes) or not all(p.isascii() for p in prefixes):
        return None
    return sorted(set(prefixes)), ci


def pattern_regex(pattern: str) -> str:
    """SPEC §3 `pattern`: `*` and `.*` match any text, blanks match one word break,
    everything else is literal; anchored at the start, ending at a word break."""
    import re

    out = []
    i = 0
    p = pattern.strip()
    while i < len(p):
        c = p[i]
        if p.startswith(".*", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append(".*")
            i += 1
        elif c.isspace():
            while i < len(p) and p[i].isspace():
                i += 1
            out.append(" ")
        else:
            out.append(re.escape(c))
            i += 1
    return "^" + "".join(out) + "(?= |$)"


def _literal_pattern(pattern: str) -> str | None:
    p = " ".join(pattern.split())
    return None if "*" in p else p


_FIRST_WORD = r"\^([A-Za-z0-9_][A-Za-z0-9_.+-]*)(?:\(| |\\s|\$|\[ \]|\\b)"


def _regex_first_word(rx: str) -> str | None:
    """The command name a regex can only match, if it is plainly `^name…` with no
    top-level alternation; such rules are indexed by name (and compiled only
    when a unit with that name shows up)."""
    import re

    m = re.match(_FIRST_WORD, rx)
    if not m:
        return None
    depth = 0
    in_class = False
    i = 0
    while i < len(rx):
        c = rx[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "|" and depth == 0:
            return None
        i += 1
    return m.group(1)


def glob_regex(glob: str) -> str:
    """SPEC §3 `path`: a glob over an absolute path; `**` spans folders and
    `dir/**` matches `dir` itself too. A leading `~` stands for $HOME and is
    kept as the marker `~` for expansion when the rule is compiled at run time.
    A relative glob matches at any depth (`.env` is `**/.env`); one that starts
    with `./` is taken from the cwd."""
    import re

    g = glob.strip()
    cwd_relative = g == "." or g.startswith("./")
    if not g.startswith(("/", "~", "*")) and not cwd_relative:
        g = "**/" + g
    out = []
    i = 0
    if g.startswith("~"):
        out.append("\x00HOME\x00")
        i = 1
    elif cwd_relative:
        # `./build/**` is the cwd's build folder (SPEC §3: relative paths are
        # taken from the cwd); the cwd is known only when a command is decided.
        out.append("\x00CWD\x00")
        g = g[1:]
    while i < len(g):
        c = g[i]
        if g.startswith("/**", i) and i + 3 == len(g):
            out.append("(?:/.*)?")
            i += 3
        elif g.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif g.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            j = g.find("]", i + 2)
            if j < 0:
                out.append(re.escape(c))
                i += 1
            else:
                body = g[i + 1 : j]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = j + 1
        else:
            out.append(re.escape(c))
            i += 1
    rx = "".join(out)
    if rx.startswith("(?:.*/)?") and not rx.startswith("(?:.*/)?/"):
        rx = "(?:.*/)?" + rx[len("(?:.*/)?") :]
    return "^" + rx + "$"


def _caps(r: dict[str, Any]) -> dict[str, list[Any]] | None:
    """Numeric caps (issue 5) -> {option: [limit, how it was set]}: `caps` as
    given, `baseline` times `growth` (default 2); the lower one counts."""
    caps: dict[str, list[Any]] = {k: [float(v), f"{v:g}"] for k, v in (r.get("caps") or {}).items()}
    g = r.get("growth", 2)
    for k, b in (r.get("baseline") or {}).items():
        if b == "live":
            continue  # known only from the cluster, at request time (gate/impact.py)
        if k not in caps or b * g < caps[k][0]:
            caps[k] = [float(b * g), f"{b * g:g} ({g:g} x {b:g})"]
    return caps or None


def compile_rule(r: dict[str, Any], file: str) -> dict[str, Any]:
    base = os.path.basename(file)
    c: dict[str, Any] = {
        "id": f"{base}:{r['line']}",
        "action": r["action"],
        "reason": r.get("reason"),
        "notify": r.get("notify", []),
        "dynamic": r.get("dynamic") == "allow",
        "max_runtime": parse_duration(r["max_runtime"]) if "max_runtime" in r else None,
        "caps": _caps(r),
        "read": r.get("read"),
        "confine": r.get("confine", True),
        "network": r.get("network"),
        "if_confined": r.get("if_confined", False),
        "record": r.get("record"),
        "max_rows": (r.get("limits") or {}).get("max_rows"),
        "max_rows_hard": (r.get("limits") or {}).get("max_rows_hard"),
        "live": {k: r.get("growth", 2) for k, b in (r.get("baseline") or {}).items() if b == "live"}
        or None,
        "first": None,
        "literal": None,
    }
    if "pattern" in r:
        c["type"] = "pattern"
        c["src"] = r["pattern"]
        c["rx"] = pattern_regex(r["pattern"])
        c["literal"] = _literal_pattern(r["pattern"])
        c["first"] = r["pattern"].split()[0] if "*" not in r["pattern"].split()[0] else None
        c["need"] = _required_literals(c["rx"])
        c["prefixes"] = _anchored_prefixes(c["rx"])
    elif "regex" in r:
        c["type"] = "regex"
        c["src"] = r["regex"]
        c["rx"] = r["regex"]
        c["first"] = _regex_first_word(r["regex"])
        c["need"] = _required_literals(r["regex"])
        c["prefixes"] = _anchored_prefixes(r["regex"])
    else:
        c["type"] = "path"
        c["src"] = r["path"]
        c["rx"] = glob_regex(r["path"])
        # An absolute path with no wildcard (`/dev/null`): its regex says
        # equality, so it is matched as a string and `re` stays unloaded.
        g = r["path"].strip()
        if g.startswith("/") and not any(ch in g for ch in "*?[") and not r.get("except"):
            c["exact"] = g
        c["access"] = r.get("access", "any")
        # $HOME is only known at run time; the literals after it still hold.
        c["need"] = _required_literals(
            c["rx"].replace("\x00HOME\x00", "").replace("\x00CWD\x00", "")
        )
        if r.get("except"):
            # A path the rule would match but an `except` glob names is not
            # covered: a lookahead in front of the rule's own regex.
            ex = "|".join("(?:" + glob_regex(g)[1:] + ")" for g in r["except"])
            c["rx"] = "^(?!" + ex + ")" + c["rx"][1:]
    return c


def compile_config(
    data: dict[str, Any], file: str, settings_files: list[tuple[str, dict[str, Any]]]
) -> dict[str, Any]:
    """Turn validated YAML data into the cacheable ruleset dict."""
    env = {"keep": list(DEFAULT_ENV_KEEP), "set": {}, "assign_ok": list(DEFAULT_ASSIGN_OK)}
    settings: dict[str, Any] = {}
    notify: dict[str, Any] = {}
    profiles: dict[str, Any] = {}
    # config.yaml first, then the rules file: the rules file wins on conflicts.
    for _f, d in [*settings_files, (file, data)]:
        for k, v in d.get("env", {}).items():
            env[k] = v
        notify.update(d.get("notify", {}))
        profiles.update(d.get("profiles", {}))
        for k in _SETTINGS:
            if k in d:
                settings[k] = d[k]
    rules = [compile_rule(r, file) for r in data.get("rules", [])]
    # A rule may only name notify targets that exist: a typo must not drop a page.
    for r, src in zip(rules, data.get("rules", []), strict=True):
        for t in r["notify"]:
            if notify and t not in notify:
                raise ConfigError(
                    f"rule notifies '{t}', which is not defined under notify:", file, src["line"]
                )
    return {
        "xguard": __version__,
        "sources": [file, *[f for f, _ in settings_files]],
        "default": data.get("default", "require_approval"),
        "rules": rules,
        "tests": data.get("tests", []),
        "env": env,
        "notify": notify,
        "profiles": profiles,
        "settings": settings,
    }


# ---------------------------------------------------------------------------
# Runtime form.


class Rule:
    __slots__ = (
        "_rx",
        "access",
        "action",
        "caps",
        "confine",
        "dynamic",
        "exact",
        "first",
        "id",
        "if_confined",
        "literal",
        "live",
        "max_rows",
        "max_rows_hard",
        "max_runtime",
        "need",
        "need1",
        "network",
        "notify",
        "pos",
        "pre",
        "pre_ci",
        "pre_low",
        "read",
        "reason",
        "record",
        "rx_src",
        "src",
        "sre",
        "type",
    )

    def __init__(self, d: dict[str, Any], pos: int = 0) -> None:
        self.pos = pos  # place in the file: ties between equally strict rules go to the first
        self.id = d["id"]
        self.type = d["type"]
        self.src = d["src"]
        self.rx_src = d["rx"]
        self.exact: str | None = d.get("exact")  # path rules: the one path it names
        self.sre: tuple[Any, ...] | None = d.get("sre")  # see _sre_args
        self.action = d["action"]
        self.reason = d.get("reason")
        self.notify = d.get("notify") or []
        self.dynamic = d.get("dynamic", False)
        self.max_runtime = d.get("max_runtime")
        self.caps = d.get("caps")
        self.read: bool | None = d.get("read")
        self.confine: bool = d.get("confine", True)
        self.network: str | None = d.get("network")
        self.if_confined: bool = d.get("if_confined", False)
        self.record: bool | None = d.get("record")
        self.max_rows: int | None = d.get("max_rows")
        self.max_rows_hard: int | None = d.get("max_rows_hard")
        # {option: growth} for `baseline: live` (issue 13): the cap is growth x
        # the value the cluster reports now.
        self.live: dict[str, float] | None = d.get("live")
        self.first = d.get("first")
        self.literal = d.get("literal")
        self.access = d.get("access", "any")
        self.need: list[list[str]] | None = d.get("need")
        # At run time only the most selective alternative set is checked:
        # one necessary condition is enough to skip a rule, and cheaper.
        self.need1: tuple[str, ...] | None = (
            tuple(max(self.need, key=lambda alt: min(len(x) for x in alt))) if self.need else None
        )
        self._rx: Any = None
        pre = d.get("prefixes")
        self.pre: tuple[str, ...] | None = tuple(pre[0]) if pre else None
        self.pre_ci: bool = bool(pre and pre[1])
        self.pre_low: tuple[str, ...] | None = tuple(x.lower() for x in pre[0]) if pre else None

    def regex(self, home: str = "", cwd: str = "") -> Any:
        """The compiled regex (re.Pattern), compiled on first use (per home
        folder for path rules that start with `~`, per cwd for `./`)."""
        if self._rx is None and self.sre is not None:
            import _sre

            try:
                self._rx = ((home, cwd), _sre.compile(self.rx_src, *self.sre))
                return self._rx[1]
            except (TypeError, ValueError, RuntimeError):  # not this engine's: compile anew
                self.sre = None
        if self._rx is None or (
            self.type == "path" and self.sre is None and self._rx[0] != (home, cwd)
        ):
            import re

            src = self.rx_src
            if self.type == "path":
                src = src.replace("\x00HOME\x00", re.escape(home.rstrip("/")) if home else "\x00")
                src = src.replace("\x00CWD\x00", re.escape(cwd.rstrip("/")) if cwd else "\x00")
            self._rx = ((home, cwd), re.compile(src))
        return self._rx[1]

    def matches_text(self, text: str, sql: bool = False, low: str | None = None) -> bool:
        """Does the rule match a unit's text? `low` is text.lower() when the
        text is ASCII (the caller computes it once per unit), else None."""
        if self.type == "pattern" and self.literal is not None:
            t, p = (text.lower(), self.literal.lower()) if sql else (text, self.literal)
            return t == p or t.startswith(p + " ")
        if self.pre is not None:
            # Anchored regexes: one C-level startswith before anything else.
            if sql or self.pre_ci:
                if low is None and text.isascii():
                    low = text.lower()
                if low is not None and not low.startswith(self.pre_low):  # type: ignore[arg-type]  # set with pre
                    return False
            elif not text.startswith(self.pre):
                return False
        need = self.need1
        if need is not None:
            if low is None and text.isascii():
                low = text.lower()
            if low is not None:
                for x in need:
                    if x in low:
                        break
                else:
                    return False  # a literal every match must contain is absent
        if self.type == "pattern":
            if sql:
                import re

                return re.match(self.rx_src, text, re.IGNORECASE) is not None
            return self.regex().match(text) is not None
        return self.regex().search(text) is not None


def rule_index(rules: list[dict[str, Any]]) -> dict[str, Any]:
    """Which rules (by position) a unit can match, by what it starts with.

    `first`: rules that can only match a unit whose first word is the key;
    `char`: anchored rules, by the (lowercase) first character a matching
    unit must start with; `no_prefix`: rules that can match any command text;
    `unindexed`: every text rule without a first word (what a non-ASCII unit
    is matched against: IGNORECASE can match non-ASCII letters); `text`:
    every pattern and regex rule (SQL units); `path`: path rules. Each list
    is in rule order. Built once, when the cache is written.
    """
    ix: dict[str, Any] = {
        "first": {},
        "char": {},
        "no_prefix": [],
        "unindexed": [],
        "text": [],
        "path": [],
    }
    for i, r in enumerate(rules):
        if r["type"] == "path":
            ix["path"].append(i)
            continue
        ix["text"].append(i)
        if r.get("first"):
            ix["first"].setdefault(r["first"], []).append(i)
            continue
        ix["unindexed"].append(i)
        pre = r.get("prefixes")
        if pre:
            for ch in sorted({x[0].lower() for x in pre[0]}):
                ix["char"].setdefault(ch, []).append(i)
        else:
            ix["no_prefix"].append(i)
    return ix


_NONE: list[Rule] = []
MEMO_SIZE = 4096


def no_record(rules: list[dict[str, Any]]) -> dict[str, str]:
    """Rules that say `record: false` (issue 14), by id, with their reason."""
    return {r["id"]: r.get("reason") or "" for r in rules if r.get("record") is False}


class Ruleset:
    """Compiled rules plus the settings that travel with them.

    The rules are reached through `rule_index`: a ruleset read from the cache
    builds a Rule only when a unit can match it (the built-in defaults hold
    over 300 rules; `ls` needs a handful), so every command pays for what it
    can match, not for the whole set. Built from a full dict (`Ruleset(d)`),
    every rule is made at once; decisions are the same either way.
    """

    def __init__(
        self, d: dict[str, Any], blob: Any = None, offsets: list[int] | None = None
    ) -> None:
        self.data = d
        self.sources: list[str] = d["sources"]
        self.default: str = d["default"]
        self.env: dict[str, Any] = d["env"]
        self.notify: dict[str, Any] = d.get("notify", {})
        self.profiles: dict[str, Any] = d.get("profiles", {})
        self.settings: dict[str, Any] = d.get("settings", {})
        self._blob = blob  # the cache file's bytes, read once (a memoryview)
        self._offsets = offsets  # rule i is blob[offsets[i]:offsets[i + 1]]; tests follow
        if blob is None:
            full = d["rules"]
            self._loaded: dict[int, Rule] = {i: Rule(r, i) for i, r in enumerate(full)}
            self._count = len(full)
            ix = rule_index(full)
            self.with_runtime: dict[str, float] = {
                r["id"]: r["max_runtime"] for r in full if r.get("max_runtime")
            }
            self.no_record: dict[str, str] = no_record(full)
        else:
            self._loaded = {}
            self._count = d["count"]
            ix = d["index"]
            self.with_runtime = d["with_runtime"]
            self.no_record = d.get("no_record", {})
        self._first: dict[str, list[int]] = ix["first"]
        self._char: dict[str, list[int]] = ix["char"]
        self._ix = ix
        # Rules per index key, made on first use.
        self._by_first: dict[str, list[Rule]] = {}
        self._by_char: dict[str, list[Rule]] = {}
        self._groups: dict[str, list[Rule]] = {}
        # What pure matching found for a unit text or a set of paths (policy/decide.py).
        self.memo: dict[tuple[Any, ...], list[Rule]] = {}

    def remember(self, key: tuple[Any, ...], hits: list[Rule]) -> None:
        if len(self.memo) >= MEMO_SIZE:
            self.memo.clear()  # a bound, not an LRU: refilling costs one match per unit
        self.memo[key] = hits

    def _rule(self, i: int) -> Rule:
        r = self._loaded.get(i)
        if r is None:
            assert self._blob is not None and self._offsets is not None
            # The blob is from our own cache file, in the private (0700) state folder.
            blob = self._blob[self._offsets[i] : self._offsets[i + 1]]
            r = Rule(marshal.loads(blob), i)  # noqa: S302
            self._loaded[i] = r
        return r

    def _group(self, name: str) -> list[Rule]:
        g = self._groups.get(name)
        if g is None:
            g = self._groups[name] = [self._rule(i) for i in self._ix[name]]
        return g

    def _first_rules(self, word: str) -> list[Rule]:
        g = self._by_first.get(word)
        if g is None:
            ids = self._first.get(word)
            g = self._by_first[word] = [self._rule(i) for i in ids] if ids else _NONE
        return g

    def _char_rules(self, ch: str) -> list[Rule]:
        g = self._by_char.get(ch)
        if g is None:
            ids = self._char.get(ch)
            g = self._by_char[ch] = [self._rule(i) for i in ids] if ids else _NONE
        return g

    @property
    def rules(self) -> list[Rule]:
        """Every rule, in file order (loads them all: not for the hot path)."""
        return [self._rule(i) for i in range(self._count)]

    def loaded(self) -> dict[str, Rule]:
        """The rules made so far, by id: every rule a decision of this ruleset names."""
        return {r.id: r for r in self._loaded.values()}

    @property
    def tests(self) -> list[dict[str, Any]]:
        """The file's own examples (`rules test`)."""
        if self._blob is None:
            return self.data.get("tests", [])
        assert self._offsets is not None
        tests: list[dict[str, Any]] = marshal.loads(self._blob[self._offsets[self._count] :])  # noqa: S302
        return tests

    @property
    def path_rules(self) -> list[Rule]:
        return self._group("path")

    def candidates(self, text: str, alt_text: str | None) -> list[Rule]:
        """The rules that can match a command unit (its text or its alt text):
        those indexed under its first word, plus the unindexed ones whose
        anchored prefix can start it. Other rules cannot match."""
        out = self._first_rules(text.split(" ", 1)[0])
        if alt_text is not None:
            out = out + self._first_rules(alt_text.split(" ", 1)[0])
        if not text.isascii() or (alt_text is not None and not alt_text.isascii()):
            out = out + self._group("unindexed")  # IGNORECASE can match non-ASCII letters
        else:
            out = out + self._char_rules(text[:1].lower())
            if alt_text is not None:
                out += self._char_rules(alt_text[:1].lower())
            out += self._group("no_prefix")
        return list(dict.fromkeys(out)) if alt_text is not None else out

    def text_rules(self) -> list[Rule]:
        """Every pattern and regex rule (what an SQL unit is matched against)."""
        return self._group("text")

    def setting(self, key: str, default: Any = None) -> Any:
        return self.settings.get(key, default)


def _digest(parts: list[bytes]) -> str:
    from xguard.util import sha256

    h = sha256()
    for p in parts:
        h.update(len(p).to_bytes(8, "big"))
        h.update(p)
    return h.hexdigest()


def rules_source_s(
    paths: Paths, environ: dict[str, str] | None = None, profile: str | None = None
) -> str:
    """Which rules file is in effect: XGUARD_RULES, a profile's file, the user's, or the built-in."""
    env = os.environ if environ is None else environ
    explicit = env.get("XGUARD_RULES", "").strip()
    if explicit:
        return os.path.expanduser(explicit)
    if profile:
        p = os.path.join(paths.rules_d_s, f"{profile}.yaml")
        if os.path.exists(p):
            return p
    if os.path.exists(paths.rules_file_s):
        return paths.rules_file_s
    return BUILTIN_RULES_S


def rules_source(
    paths: Paths, environ: dict[str, str] | None = None, profile: str | None = None
) -> Path:
    """rules_source_s as a Path (for the CLI)."""
    from pathlib import Path

    return Path(rules_source_s(paths, environ, profile))


def _read(path: str, what: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise ConfigError(f"cannot read {what}: is a folder", path, 1) from None
    except OSError as e:
        raise ConfigError(f"cannot read {what}: {e.strerror}", path, 1) from None


def load_ruleset(
    paths: Paths,
    rules_file: str | os.PathLike[str] | None = None,
    environ: dict[str, str] | None = None,
    use_cache: bool = True,
    profile: str | None = None,
) -> Ruleset:
    """Load the rules in effect, from the cache when the sources are unchanged.

    The cache (see pack_ruleset) is marshal data, the fastest format the
    standard library reads, keyed by the SHA-256 of the source files' bytes,
    their paths, xguard's version and the Python version.
    """
    src = (
        os.fspath(rules_file) if rules_file is not None else rules_source_s(paths, environ, profile)
    )
    settings_path = paths.config_file_s
    ident = None
    if use_cache:
        kept = _kept(src, settings_path, profile)
        if kept is not None:
            return kept
        ident = _identity([src, settings_path])  # before reading: a later change shows
    raw = _read(src, "rules file")
    if raw is None:
        raise ConfigError("rules file not found", src, 1)
    sraw = _read(settings_path, "config")
    key = _digest(
        [
            CACHE_FORMAT,
            __version__.encode(),
            sys.version.encode(),
            src.encode(),
            raw,
            settings_path.encode(),
            sraw if sraw is not None else b"\x00none",
            (profile or "").encode(),
        ]
    )
    cache = os.path.join(paths.cache_dir_s, f"ruleset-{key[:32]}.rules")
    if use_cache:
        rs = _read_cache(cache, key)
        if rs is not None:
            _keep(src, settings_path, profile, ident, rs)
            return rs
    d = build_ruleset_dict(src, settings_path if sraw is not None else None, profile)
    d["key"] = key
    if use_cache:
        _write_cache(paths, cache, d)
    return Ruleset(d)


# The ruleset last read from the cache, for a process that decides command
# after command (a warm worker): reused, with no reading, hashing or
# unpacking, while every file it came from is provably the same file with the
# same contents (util.settled).
_KEPT: list[tuple[tuple[Any, ...], Ruleset]] = []


def _identity(files: list[str]) -> tuple[Any, ...] | None:
    from xguard.util import settled

    got = settled(files)
    return None if got is None else (*files, *got)


def _keep(
    src: str, settings_path: str, profile: str | None, ident: tuple[Any, ...] | None, rs: Ruleset
) -> None:
    _KEPT.clear()
    if ident is None:
        return
    deps = [p for p, _h in rs.data.get("deps", ())]
    more = _identity(deps)
    if more is not None:
        _KEPT.append(((src, settings_path, profile or "", ident, tuple(deps), more), rs))


def _kept(src: str, settings_path: str, profile: str | None) -> Ruleset | None:
    if not _KEPT:
        return None
    (k_src, k_settings, k_profile, ident, deps, more), rs = _KEPT[0]
    if (k_src, k_settings, k_profile) != (src, settings_path, profile or ""):
        return None
    if _identity([src, settings_path]) != ident or _identity(list(deps)) != more:
        return None
    return rs


def build_ruleset_dict(
    src: str | os.PathLike[str],
    settings_path: str | os.PathLike[str] | None,
    profile: str | None = None,
) -> dict[str, Any]:
    """Parse and validate from YAML (the slow path)."""
    from pathlib import Path

    data = load_yaml_file(Path(src))
    if "rules" not in data and "default" not in data:
        raise ConfigError(
            "no 'rules' and no 'default': this is not a rules file", os.fspath(src), 1
        )
    settings_files = []
    if settings_path is not None:
        sd = load_yaml_file(Path(settings_path))
        for k in ("rules", "tests", "default"):
            if k in sd:
                raise ConfigError(
                    f"'{k}' belongs in the rules file, not in config.yaml",
                    os.fspath(settings_path),
                    1,
                )
        settings_files.append((os.fspath(settings_path), sd))
    sub = (
        {
            **(settings_files[0][1].get("profiles", {}) if settings_files else {}),
            **data.get("profiles", {}),
        }.get(profile or "")
        or {}
    ).get("rules")
    if sub:  # issue 5: `profiles: {NAME: {rules: FILE}}`: that file's rules, this file's settings under them
        folder = os.path.dirname(
            os.fspath(src if profile in data.get("profiles", {}) else settings_path or src)
        )
        path = os.path.join(folder, os.path.expanduser(sub))
        d = compile_config(
            load_yaml_file(Path(path)), path, [*settings_files, (os.fspath(src), data)]
        )
        d["deps"] = [[path, _digest([_read(path, "rules file") or b""])]]
        return d
    return compile_config(data, os.fspath(src), settings_files)


# The cache file: MAGIC, the header's length (4 bytes), the header (marshal:
# settings, the rule index, where each rule starts), then one marshal blob
# per rule and the tests. A command unmarshals the header and the few rules
# it can match: loading all 300-odd default rules on every command cost more
# than the rest of the hot path.
_MAGIC = b"xguard-rules\x01"


def _sre_args(rx: str) -> tuple[Any, ...] | None:
    """What `re.compile(rx)` hands to the regex engine (`_sre.compile`), worked
    out once when the cache is written, so that matching a rule read from the
    cache needs neither the `re` module (~10 ms to import with `enum`) nor its
    compiler: every `git` command meets several regex rules. CPython's own
    steps (re/_compiler.py `compile`); the cache's key holds the Python
    version. None where they are not available or disagree with `re.compile`."""
    try:
        import _sre
        import re
        from re import _compiler as C  # type: ignore[attr-defined]  # private, no stub
        from re import _parser as P  # type: ignore[attr-defined]  # private, no stub

        p = P.parse(rx, 0)
        code = C._code(p, 0)
        groupindex = dict(p.state.groupdict)
        indexgroup: list[str | None] = [None] * p.state.groups
        for k, i in groupindex.items():
            indexgroup[i] = k
        # Plain ints: the flags are a RegexFlag and the opcodes int subclasses,
        # which marshal does not write.
        args = (
            int(p.state.flags),
            [int(x) for x in code],
            p.state.groups - 1,
            groupindex,
            tuple(indexgroup),
        )
        ours, theirs = _sre.compile(rx, *args), re.compile(rx)
    except Exception:
        return None
    if (ours.flags, ours.groups, ours.groupindex) != (
        theirs.flags,
        theirs.groups,
        theirs.groupindex,
    ):
        return None
    return args


def pack_ruleset(d: dict[str, Any]) -> bytes:
    """The cache file's bytes for a compiled ruleset dict."""
    rules = []
    for rule in d["rules"]:
        # A path rule's $HOME or cwd is known only at run time: compiled then.
        sre = _sre_args(rule["rx"]) if "\x00" not in rule["rx"] else None
        rules.append({**rule, "sre": sre} if sre is not None else rule)
    blobs = [marshal.dumps(r) for r in rules]
    offsets = [0]
    for b in blobs:
        offsets.append(offsets[-1] + len(b))
    header = {k: v for k, v in d.items() if k not in ("rules", "tests")}
    header["count"] = len(blobs)
    header["index"] = rule_index(d["rules"])
    header["with_runtime"] = {r["id"]: r["max_runtime"] for r in d["rules"] if r.get("max_runtime")}
    header["no_record"] = no_record(d["rules"])
    header["offsets"] = offsets
    hb = marshal.dumps(header)
    return b"".join(
        [_MAGIC, len(hb).to_bytes(4, "big"), hb, *blobs, marshal.dumps(d.get("tests", []))]
    )


def unpack_ruleset(data: bytes, key: str | None = None) -> Ruleset | None:
    """A lazy Ruleset over cache bytes, or None when they are not a current cache."""
    m = len(_MAGIC)
    if data[:m] != _MAGIC or len(data) < m + 4:
        return None
    n = int.from_bytes(data[m : m + 4], "big")
    view = memoryview(data)
    try:
        header = marshal.loads(view[m + 4 : m + 4 + n])  # noqa: S302  # our own cache file
    except (ValueError, EOFError, TypeError):
        return None
    if not isinstance(header, dict) or (key is not None and header.get("key") != key):
        return None
    for p, h in header.get("deps", ()):  # a profile's own rules file (issue 5)
        if _digest([_read(p, "rules file") or b""]) != h:
            return None
    base = m + 4 + n
    return Ruleset(header, view, [base + o for o in header["offsets"]])


def _read_cache(cache: str, key: str) -> Ruleset | None:
    try:
        with open(cache, "rb") as f:
            data = f.read()
        return unpack_ruleset(data, key)
    except (OSError, ValueError, EOFError, TypeError, KeyError):
        return None


def _write_cache(paths: Paths, cache: str, d: dict[str, Any]) -> None:
    tmp = f"{cache}.{os.getpid()}.tmp"
    try:
        ensure_dir(paths.cache_dir_s)
        with open(tmp, "wb") as f:
            f.write(pack_ruleset(d))
        os.replace(tmp, cache)
    except Exception:  # the cache is an optimisation; never fail on it
        try:
            os.unlink(tmp)
        except OSError:
            pass


def load_ruleset_for_report() -> Ruleset | None:
    """The rules in effect (for `audit report`), or None when they cannot be read."""
    from xguard.paths import get_paths

    try:
        return load_ruleset(get_paths())
    except ConfigError:
        return None
