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

import json
import os
import re
from pathlib import Path
TYPE_CHECKING = False  # typing costs ~3 ms to import on the hot path; type checkers see True

from . import __version__
from .errors import ConfigError
from .paths import Paths, ensure_dir

if TYPE_CHECKING:
    from typing import Any

ACTIONS = ("allow", "require_approval", "deny")
STRICTNESS = {"allow": 0, "require_approval": 1, "deny": 2}
BUILTIN_RULES = Path(__file__).parent / "data" / "default-rules.yaml"

DEFAULT_ENV_KEEP = ["PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_*", "TERM", "TZ", "TMPDIR", "PWD"]
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
    "name": "str",
}
_TEST_SCHEMA = {"command": "str", "expect": ACTIONS, "cwd": "str", "argv": "strlist"}
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
}
_PROFILE = {"rules": "str", "env": _ENV, "limits": _LIMITS, "sessions": _SETTINGS["sessions"],
            "production": "bool", "wait": _DURATION}
TOP_SCHEMA: dict[str, Any] = {
    "default": ACTIONS,
    "rules": ["rule"],
    "tests": ["test"],
    "env": _ENV,
    "notify": {"*": _NOTIFY_TARGET},
    "profiles": {"*": _PROFILE},
    **_SETTINGS,
}


def parse_duration(value: object) -> float | None:
    """`30s`, `15m`, `2h`, `1d`, `500ms` or a bare number (seconds) -> seconds."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if value >= 0 else None
    if not isinstance(value, str):
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*", value)
    if not m:
        return None
    n = float(m.group(1))
    return n * {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]


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
            if not isinstance(node, yaml.SequenceNode) or not all(isinstance(x, yaml.ScalarNode) for x in node.value):
                raise self.fail(node, f"{where}: expected a list of text")
            return [str(x.value) for x in node.value]
        if schema == "bool":
            if not isinstance(value, bool):
                raise self.fail(node, f"{where}: expected true or false")
            return value
        if schema in ("int", "number"):
            ok = isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
            if not ok or (schema == "int" and not isinstance(value, int)):
                raise self.fail(node, f"{where}: expected a non-negative {'whole ' if schema == 'int' else ''}number")
            return value
        if schema == _DURATION:
            if parse_duration(value) is None:
                raise self.fail(node, f"{where}: expected a duration like 30s, 15m, 2h")
            return value
        if schema == "regex":
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


def pattern_regex(pattern: str) -> str:
    """SPEC §3 `pattern`: `*` and `.*` match any text, blanks match one word break,
    everything else is literal; anchored at the start, ending at a word break."""
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


_FIRST_WORD = re.compile(r"\^([A-Za-z0-9_][A-Za-z0-9_.+-]*)(?:\(| |\\s|\$|\[ \]|\\b)")


def _regex_first_word(rx: str) -> str | None:
    """The command name a regex can only match, if it is plainly `^name…` with no
    top-level alternation; such rules are indexed by name (and compiled only
    when a unit with that name shows up)."""
    m = _FIRST_WORD.match(rx)
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
    A relative glob matches at any depth (`.env` is `**/.env`)."""
    g = glob.strip()
    if not g.startswith(("/", "~", "*")):
        g = "**/" + g
    out = []
    i = 0
    if g.startswith("~"):
        out.append("\x00HOME\x00")
        i = 1
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


def compile_rule(r: dict[str, Any], file: str) -> dict[str, Any]:
    base = os.path.basename(file)
    c: dict[str, Any] = {
        "id": f"{base}:{r['line']}",
        "action": r["action"],
        "reason": r.get("reason"),
        "notify": r.get("notify", []),
        "dynamic": r.get("dynamic") == "allow",
        "max_runtime": parse_duration(r["max_runtime"]) if "max_runtime" in r else None,
        "caps": r.get("caps"),
        "first": None,
        "literal": None,
    }
    if "pattern" in r:
        c["type"] = "pattern"
        c["src"] = r["pattern"]
        c["rx"] = pattern_regex(r["pattern"])
        c["literal"] = _literal_pattern(r["pattern"])
        c["first"] = r["pattern"].split()[0] if "*" not in r["pattern"].split()[0] else None
    elif "regex" in r:
        c["type"] = "regex"
        c["src"] = r["regex"]
        c["rx"] = r["regex"]
        c["first"] = _regex_first_word(r["regex"])
    else:
        c["type"] = "path"
        c["src"] = r["path"]
        c["rx"] = glob_regex(r["path"])
        c["access"] = r.get("access", "any")
    return c


def compile_config(data: dict[str, Any], file: str, settings_files: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
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
                raise ConfigError(f"rule notifies '{t}', which is not defined under notify:", file, src["line"])
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
    __slots__ = ("_rx", "access", "action", "caps", "dynamic", "first", "id", "literal", "max_runtime",
                 "notify", "reason", "src", "type", "rx_src")

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
        self.first = d.get("first")
        self.literal = d.get("literal")
        self.access = d.get("access", "any")
        self._rx: re.Pattern[str] | None = None

    def regex(self, home: str = "") -> re.Pattern[str]:
        if self._rx is None:
            src = self.rx_src
            if self.type == "path":
                src = src.replace("\x00HOME\x00", re.escape(home.rstrip("/")) if home else "\x00")
            self._rx = re.compile(src)
        return self._rx

    def matches_text(self, text: str, sql: bool = False) -> bool:
        if self.type == "pattern":
            if self.literal is not None:
                if sql:
                    t, p = text.lower(), self.literal.lower()
                else:
                    t, p = text, self.literal
                return t == p or t.startswith(p + " ")
            if sql:
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

    def command_rules(self, first: str) -> list[Rule]:
        return self.by_first.get(first, []) + self.unindexed

    def text_rules(self) -> list[Rule]:
        return [r for r in self.rules if r.type != "path"]

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


def rules_source(paths: Paths, environ: dict[str, str] | None = None, profile: str | None = None) -> Path:
    """Which rules file is in effect: XGUARD_RULES, a profile's file, the user's, or the built-in."""
    env = os.environ if environ is None else environ
    explicit = env.get("XGUARD_RULES", "").strip()
    if explicit:
        return Path(explicit).expanduser()
    if profile:
        p = paths.rules_d / f"{profile}.yaml"
        if p.exists():
            return p
    if paths.rules_file.exists():
        return paths.rules_file
    return BUILTIN_RULES


def load_ruleset(
    paths: Paths,
    rules_file: Path | None = None,
    environ: dict[str, str] | None = None,
    use_cache: bool = True,
    profile: str | None = None,
) -> Ruleset:
    """Load the rules in effect, from the JSON cache when the sources are unchanged."""
    src = rules_file or rules_source(paths, environ, profile)
    settings_path = paths.config_file
    try:
        raw = src.read_bytes()
    except FileNotFoundError:
        raise ConfigError("rules file not found", str(src), 1) from None
    except OSError as e:
        raise ConfigError(f"cannot read rules file: {e.strerror}", str(src), 1) from None
    try:
        sraw = settings_path.read_bytes()
    except FileNotFoundError:
        sraw = None
    except OSError as e:
        raise ConfigError(f"cannot read config: {e.strerror}", str(settings_path), 1) from None
    key = _digest([__version__.encode(), str(src).encode(), raw, str(settings_path).encode(), sraw or b"", (profile or "").encode()])
    cache = paths.cache_dir / f"ruleset-{key[:32]}.json"
    if use_cache:
        try:
            with open(cache, "rb") as f:
                d = json.load(f)
            if d.get("key") == key:
                return Ruleset(d)
        except (OSError, ValueError, KeyError):
            pass
    d = build_ruleset_dict(src, settings_path if sraw is not None else None)
    d["key"] = key
    if use_cache:
        _write_cache(paths, cache, d)
    return Ruleset(d)


def build_ruleset_dict(src: Path, settings_path: Path | None) -> dict[str, Any]:
    """Parse and validate from YAML (the slow path)."""
    data = load_yaml_file(src)
    if "rules" not in data and "default" not in data:
        raise ConfigError("no 'rules' and no 'default': this is not a rules file", str(src), 1)
    settings_files = []
    if settings_path is not None:
        sd = load_yaml_file(settings_path)
        for k in ("rules", "tests", "default"):
            if k in sd:
                raise ConfigError(f"'{k}' belongs in the rules file, not in config.yaml", str(settings_path), 1)
        settings_files.append((str(settings_path), sd))
    return compile_config(data, str(src), settings_files)


def _write_cache(paths: Paths, cache: Path, d: dict[str, Any]) -> None:
    try:
        ensure_dir(paths.cache_dir)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(d, f, separators=(",", ":"))
        os.replace(tmp, cache)
    except Exception:  # noqa: S110  # the cache is an optimisation; never fail on it
        pass


def load_ruleset_for_report() -> Ruleset | None:
    """The rules in effect (for `audit report`), or None when they cannot be read."""
    from .paths import get_paths

    try:
        return load_ruleset(get_paths())
    except ConfigError:
        return None
