"""Load, validate and compile rules (SPEC §3 "Rules", "Matching").

A rules file is YAML, read with the C loader and checked against a
declarative schema: an unknown key, a bad value, a duplicate key or an
invalid regex is a config error naming `file:line: what`, because a typo in a
security config must never silently weaken it.

Compiled rules are cached as JSON under the state folder, keyed by the SHA-256
of the source files' bytes (and xguard's version), so the hot path loads them
with the standard library only; YAML is imported only when the cache is stale.
Regexes are compiled lazily, when a unit first needs them.
"""

from __future__ import annotations

import marshal
import os
import sys

TYPE_CHECKING = False  # typing costs ~3 ms to import on the hot path; type checkers see True

from xguard import __version__
from xguard.errors import ConfigError
from xguard.util import parse_duration
from xguard.paths import Paths, ensure_dir

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
    "action": ACTIONS,
    "reason": "str",
    "notify": "strlist",
    "dynamic": ("allow", "require_approval"),
    "max_runtime": _DURATION,
    "caps": {"*": "number"},
    "baseline": {"*": "number"},  # issue 5: above growth x baseline needs approval
    "growth": "number",
    "read": "bool",  # issue 5: the loop breaker's reads (limits.py)
    "name": "str",
    # issue 11: how an allowed command runs (xguard/gate/confine.py)
    "confine": "bool",  # false: the tool needs the whole machine; it runs unconfined
    "network": ("allow", "deny"),  # allow: the box keeps the network
    "if_confined": "bool",  # this allow counts only when the command will run in the box
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
}
_ENV = {"keep": "strlist", "set": {"*": "str"}, "assign_ok": "strlist"}
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
    "hook": {"claude_code": {"require_approval": ("ask", "wait", "deny")}},
    "reviewers": "strlist",
    "agents": "strlist",
    "strict": "bool",
    "socket": "str",
    "confine": "confine_mode",  # issue 11: auto | required | off (kernel confinement)
    "confine_approved": "bool",  # approved commands run in the box too
}
_PROFILE = {
    "rules": "str",
    "env": _ENV,
    "limits": _LIMITS,
    "sessions": _SETTINGS["sessions"],
    "production": "bool",
    "wait": _DURATION,
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
            return _plain(node)
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
                    raise self.fail(k, f"unknown key '{key}' in {where} (known: {known})")
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
        value = _plain(node)
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
        if schema == _DURATION:
            if parse_duration(value) is None:
                raise self.fail(node, f"{where}: expected a duration like 30s, 15m, 2h")
            return value
        if schema == "regex":
            import re

            s = str(value)
            try:
                re.compile(s)
            except re.error as e:
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
        r["line"] = node.start_mark.line + 1
        return r


def _plain(node: Any) -> Any:
    import yaml

    return yaml.load(yaml.serialize(node), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506


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
        from re import _constants as C  # type: ignore[attr-defined]
        from re import _parser as P  # type: ignore[attr-defined]
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
        from re import _constants as C  # type: ignore[attr-defined]
        from re import _parser as P  # type: ignore[attr-defined]
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
        if len(sub) == 1 and sub[0][0] is C.BRANCH:
            alts = [literal_run(b) for b in sub[0][1][1]]
        else:
            alts = [literal_run(sub)]
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
        c["access"] = r.get("access", "any")
        # $HOME is only known at run time; the literals after it still hold.
        c["need"] = _required_literals(
            c["rx"].replace("\x00HOME\x00", "").replace("\x00CWD\x00", "")
        )
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
        "first",
        "id",
        "if_confined",
        "literal",
        "max_runtime",
        "need",
        "need1",
        "network",
        "notify",
        "pre",
        "pre_ci",
        "pre_low",
        "read",
        "reason",
        "rx_src",
        "src",
        "type",
    )

    def __init__(self, d: dict[str, Any]) -> None:
        self.id = d["id"]
        self.type = d["type"]
        self.src = d["src"]
        self.rx_src = d["rx"]
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
        if self._rx is None or (self.type == "path" and self._rx[0] != (home, cwd)):
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
                if low is not None and not low.startswith(self.pre_low):  # type: ignore[arg-type]
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


class Ruleset:
    """Compiled rules plus the settings that travel with them."""

    def __init__(self, d: dict[str, Any]) -> None:
        self.data = d
        self.sources: list[str] = d["sources"]
        self.default: str = d["default"]
        self.rules = [Rule(r) for r in d["rules"]]
        self.tests: list[dict[str, Any]] = d.get("tests", [])
        self.env: dict[str, Any] = d["env"]
        self.notify: dict[str, Any] = d.get("notify", {})
        self.profiles: dict[str, Any] = d.get("profiles", {})
        self.settings: dict[str, Any] = d.get("settings", {})
        self.with_runtime = {r.id: r.max_runtime for r in self.rules if r.max_runtime}
        self._text_rules = [r for r in self.rules if r.type != "path"]
        self.by_first: dict[str, list[Rule]] = {}
        self.unindexed: list[Rule] = []
        self.path_rules: list[Rule] = []
        for r in self.rules:
            if r.type == "path":
                self.path_rules.append(r)
            elif r.first:
                self.by_first.setdefault(r.first, []).append(r)
            else:
                self.unindexed.append(r)

        # Unindexed rules with anchored prefixes, bucketed by the (lowercase)
        # first character a matching unit must start with.
        self.by_char: dict[str, list[Rule]] = {}
        self.no_prefix: list[Rule] = []
        for r in self.unindexed:
            if r.pre_low:
                for ch in {x[0] for x in r.pre_low}:
                    self.by_char.setdefault(ch, []).append(r)
            else:
                self.no_prefix.append(r)

    def candidates(self, text: str, alt_text: str | None) -> list[Rule]:
        """The rules that can match a command unit (its text or its alt text):
        those indexed under its first word, plus the unindexed ones whose
        anchored prefix can start it. Other rules cannot match."""
        first = text.split(" ", 1)[0]
        out = list(self.by_first.get(first, ()))
        if alt_text is not None:
            out += self.by_first.get(alt_text.split(" ", 1)[0], ())
        if not text.isascii() or (alt_text is not None and not alt_text.isascii()):
            out += self.unindexed  # IGNORECASE can match non-ASCII letters: no bucketing
        else:
            out += self.by_char.get(text[:1].lower(), ())
            if alt_text is not None:
                out += self.by_char.get(alt_text[:1].lower(), ())
            out += self.no_prefix
        return list(dict.fromkeys(out)) if alt_text is not None else out

    def text_rules(self) -> list[Rule]:
        """Every pattern and regex rule (what an SQL unit is matched against)."""
        return self._text_rules

    def setting(self, key: str, default: Any = None) -> Any:
        return self.settings.get(key, default)


def _digest(parts: list[bytes]) -> str:
    try:
        from _sha256 import sha256  # type: ignore[import-not-found]  # 3.11: no OpenSSL load
    except ImportError:  # pragma: no cover
        from hashlib import sha256
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

    The cache is marshal data (the fastest format the standard library
    reads), keyed by the SHA-256 of the source files' bytes, their paths,
    xguard's version and the Python version.
    """
    src = (
        os.fspath(rules_file) if rules_file is not None else rules_source_s(paths, environ, profile)
    )
    settings_path = paths.config_file_s
    raw = _read(src, "rules file")
    if raw is None:
        raise ConfigError("rules file not found", src, 1)
    sraw = _read(settings_path, "config")
    key = _digest(
        [
            __version__.encode(),
            sys.version.encode(),
            src.encode(),
            raw,
            settings_path.encode(),
            sraw if sraw is not None else b"\x00none",
            (profile or "").encode(),
        ]
    )
    cache = os.path.join(paths.cache_dir_s, f"ruleset-{key[:32]}.marshal")
    if use_cache:
        try:
            with open(cache, "rb") as f:
                d = marshal.load(f)
            if (
                isinstance(d, dict)
                and d.get("key") == key
                and all(  # a profile's own rules file (issue 5)
                    _digest([_read(p, "rules file") or b""]) == h for p, h in d.get("deps", ())
                )
            ):
                return Ruleset(d)
        except (OSError, ValueError, EOFError, TypeError, KeyError):
            pass
    d = build_ruleset_dict(src, settings_path if sraw is not None else None, profile)
    d["key"] = key
    if use_cache:
        _write_cache(paths, cache, d)
    return Ruleset(d)


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


def _write_cache(paths: Paths, cache: str, d: dict[str, Any]) -> None:
    try:
        ensure_dir(paths.cache_dir_s)
        tmp = f"{cache}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            marshal.dump(d, f)
        os.replace(tmp, cache)
    except Exception:  # noqa: S110  # the cache is an optimisation; never fail on it
        pass


def load_ruleset_for_report() -> Ruleset | None:
    """The rules in effect (for `audit report`), or None when they cannot be read."""
    from xguard.paths import get_paths

    try:
        return load_ruleset(get_paths())
    except ConfigError:
        return None
