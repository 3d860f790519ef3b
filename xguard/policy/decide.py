"""Decide a command from its units and the rules (SPEC §3 "Matching").

`decide` is pure given its `Context`: file-system facts (does a word name an
existing file, what does a glob expand to) come in through the context's
callables, so tests can pin them and the Gate can use the real disk.

The order of precedence, for every unit: built-in self-protection (deny) >
rules (strictest wins, order never matters) > `default`; then the parser's
floor, dynamic words and the built-in secrets floor (policy/floor.py: the
well-known credential files in $HOME) can raise allow to require_approval,
never lower.
A command takes the strictest action among its units.
"""

from __future__ import annotations

import os

from xguard._record import dataclass, field
from xguard.policy.floor import floor_hits, floor_rules
from xguard.policy.rules import STRICTNESS, Rule, Ruleset
from xguard.shell.parser import Unit

TYPE_CHECKING = False  # collections.abc imports collections: ~2 ms on the hot path
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

ALLOW, REQUIRE, DENY = "allow", "require_approval", "deny"
GLOB_LIMIT = 1000  # beyond this many matches a glob is too broad to check

# xguard's own verbs that decide or reconfigure (SPEC §3 built-in deny).
SELF_VERBS = frozenset({"approve", "deny", "review", "init", "serve", "setup"})
SELF_SUBVERBS = {
    "session": frozenset({"reset", "start"}),
    "rules": frozenset({"edit", "add", "remove", "set"}),
    # a server started by the agent would load whatever its environment names
    "warm": frozenset({"start", "serve"}),
}
PYTHONS = ("python", "python3")


def real_path(path: str) -> str:
    """os.path.realpath that takes any word: a NUL (which the parser has
    already floored) makes it the path as written, not an exception."""
    try:
        return os.path.realpath(path)
    except ValueError:
        return path


def real_listdir(path: str) -> list[str] | None:
    """Entries of a real folder (a folder's name ends with '/', a symlink's
    with '@'), None if it is not one."""
    try:
        with os.scandir(path) as it:
            return [
                e.name + "/"
                if e.is_dir(follow_symlinks=False)
                else e.name + "@"
                if e.is_symlink()
                else e.name
                for e in it
            ]
    except (OSError, ValueError):  # ValueError: a NUL in the name (bash cannot pass one)
        return None


@dataclass
class Context:
    """Facts about where the command runs."""

    cwd: str
    home: str
    protected: list[str] = field(
        default_factory=list
    )  # xguard's config/spool/audit folders and files
    exists: Callable[[str], bool] = os.path.exists
    # Where a path really leads: `notes -> ~/.ssh/id_rsa` is the key, for rules and self-protection.
    realpath: Callable[[str], str] = real_path
    expand_glob: Callable[[str, str], list[str] | None] | None = (
        None  # (pattern, cwd) -> matches, None if too many
    )
    # Entries of a folder (folders end with '/', symlinks with '@'; None when
    # it is not one): a
    # recursive search of a folder reads the secrets inside it.
    listdir: Callable[[str], list[str] | None] | None = real_listdir
    isdir: Callable[[str], bool] = os.path.isdir
    # name -> (the program the agent's PATH runs, whether it lies in a folder
    # the agent can write); None when the name is not a program on PATH.
    # Built by the gate (policy/resolve.py: path_resolver); None: not checked.
    which: Callable[[str], tuple[str, bool] | None] | None = None
    # The command will run in the kernel box (xguard/gate/confine.py): rules
    # marked `if_confined` count only then (issue 11: `cd DIR && …`).
    confined: bool = False
    # Answers worked out from the file system that the caller lets decide()
    # reuse (check --batch, for a few seconds); None: look every time.
    memo: dict[tuple[object, ...], object] | None = None


class UnitDecision:
    """The decision for one unit: what SPEC §2's `check --json` calls a unit.

    A plain slotted class: batch checks make these by the hundred thousand.
    """

    __slots__ = ("decision", "kind", "notify", "rule", "rule_ids", "text", "unit", "why")

    def __init__(
        self,
        kind: str,
        text: str,
        decision: str,
        rule: str | None,
        why: str,
        unit: Unit | None = None,
        notify: list[str] | None = None,
        rule_ids: list[str] | None = None,
    ) -> None:
        self.kind = kind
        self.text = text
        self.decision = decision
        self.rule = rule
        self.why = why
        self.unit = unit
        self.notify = notify if notify is not None else []
        self.rule_ids = rule_ids if rule_ids is not None else []

    def __repr__(self) -> str:
        return f"UnitDecision({self.kind!r}, {self.text!r}, {self.decision!r}, rule={self.rule!r})"

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "text": self.text,
            "decision": self.decision,
            "rule": self.rule,
            "why": self.why,
        }


class Decision:
    """The decision for a whole command. A plain slotted class, like
    UnitDecision: check --batch makes one per line."""

    __slots__ = ("decision", "max_runtime", "no_record", "notify", "reasons", "rules", "units")

    def __init__(
        self,
        decision: str,
        units: list[UnitDecision],
        reasons: list[str],
        notify: list[str],
        rules: list[str],
        max_runtime: float | None = None,
        no_record: list[str] | None = None,
    ) -> None:
        self.decision = decision
        self.units = units
        self.reasons = reasons
        self.notify = notify
        self.rules = rules
        self.max_runtime = max_runtime
        # Rules that matched and say `record: false` (issue 14): "id: reason" each.
        self.no_record = no_record if no_record is not None else []

    def __repr__(self) -> str:
        return (
            f"Decision({self.decision!r}, units={self.units!r}, reasons={self.reasons!r}, "
            f"notify={self.notify!r}, rules={self.rules!r}, max_runtime={self.max_runtime!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Decision):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    def to_json(self) -> dict[str, object]:
        return {
            "decision": self.decision,
            "units": [u.to_json() for u in self.units],
            "reasons": self.reasons,
        }


def _stricter(a: str, b: str) -> str:
    return a if STRICTNESS[a] >= STRICTNESS[b] else b


def _self_protect_command(u: Unit) -> str | None:
    """A unit that runs xguard's approving verbs is denied, whatever the rules say."""
    words = list(u.words)
    if not words:
        return None
    name = words[0].rsplit("/", 1)[-1]
    if name in PYTHONS or name.startswith("python3."):
        if len(words) >= 3 and words[1] == "-m" and words[2] in ("xguard", "xguard.__main__"):
            words = words[2:]
        else:
            return None
    elif name != "xguard":
        return None
    rest = [w for w in words[1:] if not w.startswith("-")]
    if not rest:
        return None
    if rest[0] in SELF_VERBS:
        return f"an agent may not run 'xguard {rest[0]}' (built-in self-protection)"
    sub = SELF_SUBVERBS.get(rest[0])
    if sub and len(rest) > 1 and rest[1] in sub:
        return f"an agent may not run 'xguard {rest[0]} {rest[1]}' (built-in self-protection)"
    return None


def _under(path: str, folder: str) -> bool:
    folder = folder.rstrip("/") or "/"
    return path == folder or path.startswith(folder + "/")


def _absolute(p: str, base: str, home: str) -> str:
    if p.startswith("$HOME"):
        p = home + p[5:]
    elif p == "~" or p.startswith("~/"):
        p = home + p[1:]
    elif p.startswith("~"):
        try:
            p = os.path.expanduser(p)  # ~user/…
        except (ValueError, KeyError):
            pass  # a user name holding NUL or the like: keep it as written
    if not p.startswith("/"):
        p = os.path.join(base, p)
    p = os.path.normpath(p)
    return "/" + p.lstrip("/") if p.startswith("//") else p


def resolve_path(u: Unit, ctx: Context) -> list[str]:
    """Absolute, normalised paths a path unit may name (SPEC §3 `path`): from
    the cwd, and from each folder an earlier `cd` in the command may have
    moved to."""
    if ctx.memo is not None:
        key = ("abs", u.path, u.bases, ctx.cwd, ctx.home)
        known = ctx.memo.get(key)
        if not isinstance(known, tuple):
            known = ctx.memo[key] = tuple(_resolve_path(u, ctx))
        return list(known)
    return _resolve_path(u, ctx)


def _resolve_path(u: Unit, ctx: Context) -> list[str]:
    out = [_absolute(u.path, ctx.cwd, ctx.home)]
    base = ctx.cwd
    for b in u.bases:
        base = _absolute(b, base, ctx.home)
        p = _absolute(u.path, base, ctx.home)
        if p not in out:
            out.append(p)
    return out


def _match_path_rules(
    paths: list[str], access: str, ruleset: Ruleset, home: str, cwd: str = ""
) -> list[Rule]:
    """The path rules that match any of `paths` for this access, in file
    order; remembered per ruleset like _text_hits (a pure function)."""
    key = ("path", tuple(paths), access, home, cwd)
    hits = ruleset.memo.get(key)
    if hits is None:
        hits = _scan_path_rules(paths, access, ruleset, home, cwd)
        ruleset.remember(key, hits)
    return hits


def _scan_path_rules(
    paths: list[str], access: str, ruleset: Ruleset, home: str, cwd: str = ""
) -> list[Rule]:
    hits = []
    lows = [p.lower() for p in paths] if all(p.isascii() for p in paths) else None
    for r in ruleset.path_rules:
        if r.access not in ("any", access):
            continue
        if r.exact is not None:
            if r.exact in paths:
                hits.append(r)
            continue
        need = r.need1
        if need is not None and lows is not None:
            for low in lows:
                for x in need:
                    if x in low:
                        break
                else:
                    continue
                break
            else:
                continue  # no path holds a literal every match must contain
        rx = r.regex(home, cwd)
        if any(rx.match(p) for p in paths):
            hits.append(r)
    return hits


def _strictest(hits: list[Rule]) -> Rule:
    """The strictest rule; among equally strict ones the first in the file,
    so the rule named never depends on how candidates were gathered."""
    best = hits[0]
    for r in hits[1:]:
        s, b = STRICTNESS[r.action], STRICTNESS[best.action]
        if s > b or (s == b and r.pos < best.pos):
            best = r
    return best


def _pos(r: Rule) -> int:
    return r.pos


def _rule_why(r: Rule) -> str:
    label = f'{r.type} "{r.src}"'
    return f"{r.reason} ({label})" if r.reason else f"matches {label}"


def _text_hits(u: Unit, ruleset: Ruleset) -> list[Rule]:
    """The rules a command or SQL unit's text matches, in file order.

    A pure function of the unit's text and the rules, so it is remembered
    per ruleset (bounded): agents and batch files repeat commands.
    """
    sql = u.kind == "sql"
    key = (u.text, u.alt_text, u.alt_trusted, sql)
    memo = ruleset.memo
    hits = memo.get(key)
    if hits is not None:
        return hits
    cands = ruleset.text_rules() if sql else ruleset.candidates(u.text, u.alt_text)
    hits = []
    low = u.text.lower() if u.text.isascii() else None
    alt_low = u.alt_text.lower() if u.alt_text is not None and u.alt_text.isascii() else None
    for r in cands:
        if r.matches_text(u.text, sql, low):
            hits.append(r)
        elif (
            u.alt_text is not None
            and (r.action != ALLOW or u.alt_trusted)
            and r.matches_text(u.alt_text, sql, alt_low)
        ):
            # /usr/bin/printenv still matches a deny for printenv;
            # /tmp/x/ls never matches an allow for ls.
            hits.append(r)
    if len(hits) > 1:
        hits.sort(key=_pos)
    ruleset.remember(key, hits)
    return hits


def decide_unit(u: Unit, ruleset: Ruleset, ctx: Context) -> UnitDecision | None:
    """Decide one unit. None means the unit does not take part (a read path no rule names)."""
    if u.kind in ("input", "function"):
        return UnitDecision(u.kind, u.text, REQUIRE, None, "; ".join(u.why), u)
    if u.kind == "assign":
        return _decide_assign(u, ruleset)
    if u.kind == "path":
        return _decide_path(u, ruleset, ctx)
    hits = _text_hits(u, ruleset)
    if not ctx.confined and hits:
        hits = [r for r in hits if not r.if_confined]  # allows that hold only in the box
    if u.kind == "command":
        selfwhy = _self_protect_command(u)
        if selfwhy:
            return UnitDecision(
                u.kind,
                u.text,
                DENY,
                "builtin:self-protection",
                selfwhy,
                u,
                rule_ids=["builtin:self-protection"],
            )
    if hits:
        best = _strictest(hits)
        decision, rule, why = best.action, best.id, _rule_why(best)
    else:
        decision, rule, why = (
            ruleset.default,
            "default",
            f"no rule matches; default is {ruleset.default}",
        )
    notify = sorted({t for r in hits for t in r.notify})
    ud = UnitDecision(u.kind, u.text, decision, rule, why, u, notify, [r.id for r in hits])
    capped = _over_cap(u.words, hits) if decision == ALLOW and u.kind == "command" else None
    if capped:  # issue 5: numeric caps ("the first scaling beyond 2x triggers approval")
        ud.decision, ud.why = REQUIRE, capped
    if decision == ALLOW and u.dynamic and not any(r.dynamic for r in hits if r.action == ALLOW):
        ud.decision, ud.why = REQUIRE, f"an argument is known only at run time ({why})"
    if ud.decision == ALLOW and u.kind == "command" and ctx.which is not None and u.words:
        name = u.words[0]
        found = ctx.which(name) if "/" not in name else None
        if found is not None and found[1]:
            ud.decision = REQUIRE
            ud.why = (
                f"'{name}' runs {found[0]}, a program in a folder the agent can write, "
                f"not the system's {name} ({why})"
            )
    if u.floor and ud.decision == ALLOW:
        ud.decision = REQUIRE
    if u.floor:
        ud.why = "; ".join(u.why) + ("" if ud.decision == DENY or not hits else f"; {why}")
    return ud


def _over_cap(words: tuple[str, ...], hits: list[Rule]) -> str | None:
    """Why an option's number is over a matching rule's cap (`--replicas=20`,
    `--replicas 20`), or None. A value that is not a plain number is over:
    the cap cannot be checked (fail closed)."""
    for r in hits:
        for opt, cap in (r.caps or {}).items():
            limit, label = (cap, f"{cap:g}") if isinstance(cap, int | float) else cap
            for i, w in enumerate(words[1:], 1):
                if w == opt and i + 1 < len(words):
                    value = words[i + 1]
                elif w.startswith(opt + "="):
                    value = w[len(opt) + 1 :]
                else:
                    continue
                try:
                    n = float(value)
                except ValueError:
                    n = float("inf")
                if not n <= limit:
                    return f"{opt} {value} is over the cap of {label} in rule {r.id}"
    return None


def _decide_assign(u: Unit, ruleset: Ruleset) -> UnitDecision:
    import fnmatch

    ok = ruleset.env.get("assign_ok", [])
    # Proxy variables redirect every network client's traffic: only a name
    # listed exactly may be assigned, never one a glob happens to cover.
    bad = [
        n
        for n in u.names
        if not any(fnmatch.fnmatchcase(n, pat) for pat in ok)
        or (n.lower().endswith("_proxy") and n not in ok)
    ]
    if not bad:
        return UnitDecision(
            "assign", u.text, ALLOW, None, "assigns only variables in env.assign_ok", u
        )
    return UnitDecision(
        "assign",
        u.text,
        REQUIRE,
        None,
        f"assigns {', '.join(bad)}, which can change what a later command runs (not in env.assign_ok)",
        u,
    )


_STDIN_NAMES = ("/dev/stdin", "/dev/fd/0", "/proc/self/fd/0")


def _own_stream(path: str, write: bool) -> bool:
    """/dev/stdin, /dev/stdout, /dev/stderr, /dev/fd/N and /proc/self/fd/N name
    the command's own open files (pipes, when an agent runs it), not files on
    disk; whatever was opened on them is a unit of its own (`3< FILE`). Not
    stdin for writing: opening it anew opens the file the caller gave as
    input, and `ls > /dev/stdin` writes into it."""
    if write and path in _STDIN_NAMES:
        return False
    for prefix in ("/dev/fd/", "/proc/self/fd/"):
        if path.startswith(prefix) and path[len(prefix) :].isdigit():
            return True
    return path in ("/dev/stdin", "/dev/stdout", "/dev/stderr")


def _decide_path(u: Unit, ruleset: Ruleset, ctx: Context) -> UnitDecision | None:
    paths = resolve_path(u, ctx)
    write = u.access != "read"
    if not u.dynamic and not u.glob and all(_own_stream(p, write) for p in paths):
        return None
    if (
        u.names_only
        and not u.dynamic
        and not u.glob
        and all(ctx.isdir(ctx.realpath(p)) for p in paths)
    ):
        return None  # `ls ~/.ssh`: the folder's names, not its files
    why_extra = []
    if u.glob and not u.dynamic and ctx.expand_glob is not None:
        for pattern in list(paths):
            expanded = ctx.expand_glob(pattern, ctx.cwd)
            if expanded is None:
                why_extra.append("glob too broad to check")
                continue
            if any(os.path.basename(x).startswith("-") for x in expanded):
                why_extra.append("glob expands to a word that starts with '-' (an option)")
            paths = paths + [os.path.normpath(x) for x in expanded]
    if u.must_exist and not u.glob:
        paths = [p for p in paths if ctx.exists(p)]
        if not paths:
            return None  # a bare word that names no file is not a path
    for p in list(paths):
        try:
            real = ctx.realpath(p)
        except (OSError, ValueError):
            continue
        if real != p and real not in paths:
            paths.append(real)
    access = u.access
    inside = (
        _secrets_inside_memo(paths, ruleset, ctx, u.recursive == "all") if u.recursive else None
    )
    if inside is not None:
        r, found = inside
        # Reading a folder's tree reads what is in it. A person decides: the
        # search may never print the secret (`grep -rn TODO .` beside a .env),
        # and what a folder holds changes, so the same command must not flip
        # between allow and deny with the files around it.
        return UnitDecision(
            "path",
            f"read {paths[0]}",
            REQUIRE,
            r.id,
            f"a recursive search of {paths[0]} reads {found}: {_rule_why(r)}",
            u,
            sorted(r.notify),
            [r.id],
        )
    for prot in ctx.protected:
        if access == "write" and any(_under(p, prot) for p in paths):
            return UnitDecision(
                "path",
                u.text,
                DENY,
                "builtin:self-protection",
                f"writes xguard's own files under {prot} (built-in self-protection)",
                u,
                rule_ids=["builtin:self-protection"],
            )
    hits = _match_path_rules(paths, access, ruleset, ctx.home, ctx.cwd)
    if not hits or STRICTNESS[_strictest(hits).action] < STRICTNESS[REQUIRE]:
        # The secrets floor: whatever the rules say, a credential file is
        # read or written only with a person's approval.
        hits = hits + floor_hits(paths, ctx.home)
    if hits:
        best = _strictest(hits)
        decision, rule, why = best.action, best.id, _rule_why(best)
    elif access == "write":
        decision, rule, why = (
            ruleset.default,
            "default",
            f"writes a file no rule names; default is {ruleset.default}",
        )
    elif u.floor or why_extra:
        decision, rule, why = REQUIRE, None, ""
    else:
        return None
    notify = sorted({t for r in hits for t in r.notify})
    ud = UnitDecision(
        "path", f"{access} {paths[0]}", decision, rule, why, u, notify, [r.id for r in hits]
    )
    reasons = [*u.why, *why_extra]
    if reasons and decision == ALLOW:
        ud.decision = REQUIRE
    if reasons:
        ud.why = "; ".join(reasons + ([why] if why else []))
    return ud


WALK_LIMIT = 3000  # entries a recursive-search check looks at before it gives up
WALK_DEPTH = 4


def _secrets_inside_memo(
    paths: list[str], ruleset: Ruleset, ctx: Context, hidden: bool
) -> tuple[Rule, str] | None:
    """_secrets_inside, remembered in ctx.memo when the caller gives one: the
    walk reads up to WALK_LIMIT entries and matches each against the rules."""
    if ctx.memo is None:
        return _secrets_inside(paths, ruleset, ctx, hidden)
    key = ("inside", tuple(paths), hidden, ctx.home, id(ruleset))
    if key in ctx.memo:
        known = ctx.memo[key]
        return known if isinstance(known, tuple) else None
    found = ctx.memo[key] = _secrets_inside(paths, ruleset, ctx, hidden)
    return found


_STRICT_READ: dict[str, tuple[Ruleset, Any, Any]] = {}


def _strict_read_regexes(ruleset: Ruleset, home: str) -> tuple[Any, Any]:
    """(every path rule that does not allow reading, as one regex; the names
    those rules' globs are made of, as one regex). A walk tests thousands of
    entries: a name that is no part of any such rule (`src`, `main.py`)
    costs one short match, and only the rest are held against whole rules."""
    cached = _STRICT_READ.get(home)
    if cached is not None and cached[0] is ruleset:
        return cached[1], cached[2]
    import fnmatch
    import re

    strict = [r for r in ruleset.path_rules if r.action != ALLOW and r.access in ("read", "any")]
    strict += floor_rules()  # a folder that holds a credential file is never searched unasked
    full = re.compile("|".join(f"(?:{r.regex(home).pattern})" for r in strict)) if strict else None
    parts: set[str] = set()
    for r in strict:
        src = home + r.src[1:] if r.src.startswith("~") else r.src
        parts.update(c for c in src.split("/") if c not in ("", "*", "**"))
    names = re.compile("|".join(fnmatch.translate(c) for c in sorted(parts))) if parts else None
    if len(_STRICT_READ) > 8:
        _STRICT_READ.clear()
    _STRICT_READ[home] = (ruleset, full, names)
    return full, names


def _secrets_inside(
    paths: list[str], ruleset: Ruleset, ctx: Context, hidden: bool
) -> tuple[Rule, str] | None:
    """A path rule that does not allow reading and that a file inside one of
    the folders matches (a breadth-first look, bounded), with that file.

    A folder that holds the home folder (`/`, `/home`, `~/..`) holds every
    secret the rules name there, so the home folder is looked at too."""
    if ctx.listdir is None:
        return None
    rx, names = _strict_read_regexes(ruleset, ctx.home)
    todo: list[tuple[str, int]] = []
    for p in paths:
        todo.append((p, 0))
        if _under(ctx.home, p) and ctx.home != p:
            todo.append((ctx.home, 1))
    seen = 0
    while todo:
        folder, depth = todo.pop(0)
        entries = ctx.listdir(folder)
        if entries is None:
            continue
        base = folder.rstrip("/") + "/"
        for entry in entries:
            seen += 1
            if seen > WALK_LIMIT:
                return None
            name = entry[:-1] if entry.endswith(("/", "@")) else entry
            if not hidden and name.startswith("."):
                continue  # rg, and git's lists, skip hidden files
            child = base + name
            # Breadth first, so a folder a rule names (`.ssh`) is met before
            # anything inside it: a name that is no part of any rule cannot
            # be where a rule first matches.
            if not entry.endswith("@") and names.match(name) is None:
                if (
                    entry.endswith("/")
                    and depth + 1 < WALK_DEPTH
                    and name not in ("node_modules", ".git")
                ):
                    todo.append((child, depth + 1))
                continue
            probe = [child, child + "/x"]
            if entry.endswith("@"):
                # `cat $(git ls-files)` and `grep -R` follow a link to ~/.ssh/id_rsa.
                try:
                    probe.append(ctx.realpath(child))
                except (OSError, ValueError):
                    pass
            if any(rx.match(x) for x in probe):
                # Not _match_path_rules: one-off probes would flush its memo.
                hits = [
                    r
                    for r in _scan_path_rules(probe, "read", ruleset, ctx.home, ctx.cwd)
                    if r.action != ALLOW
                ] or floor_hits(probe, ctx.home)
                if hits:
                    return _strictest(hits), child
            # .git holds objects (compressed: a search does not show them) and
            # config, whose tokens a recursive search of the project would
            # print; the everyday `grep -rn X .` stays allowed all the same
            # (reading .git/config by name needs approval).
            if (
                entry.endswith("/")
                and depth + 1 < WALK_DEPTH
                and name not in ("node_modules", ".git")
            ):
                todo.append((child, depth + 1))
    return None


def decide(units: list[Unit], ruleset: Ruleset, ctx: Context) -> Decision:
    """The decision for a whole command: the strictest of its units' decisions."""
    decided: list[UnitDecision] = []
    for u in units:
        d = decide_unit(u, ruleset, ctx)
        if d is not None:
            decided.append(d)
    final = ALLOW
    for d in decided:
        final = _stricter(final, d.decision)
    if not decided:
        # Nothing to run (empty or comment-only): allow, it does nothing.
        final = ALLOW
    # Strictest first: the deny message, a hook's reason and the audit name the
    # unit that decided (`touch x; cat ~/.ssh/id_rsa` is denied for the key, not
    # for `touch x`), then the others in the order they stand.
    reasons = []
    for d in sorted(decided, key=lambda d: -STRICTNESS[d.decision]):
        if d.decision != ALLOW:
            r = f"{d.text}: {d.why}"
            if r not in reasons:
                reasons.append(r)
    notify = sorted({t for d in decided if d.decision != ALLOW for t in d.notify})
    rules = sorted({r for d in decided for r in d.rule_ids} | {d.rule for d in decided if d.rule})
    runtimes = [ruleset.with_runtime[r] for r in rules if r in ruleset.with_runtime]
    no_record = [
        f"{r}: {ruleset.no_record[r]}" if ruleset.no_record[r] else r
        for r in rules
        if r in ruleset.no_record
    ]
    return Decision(
        final, decided, reasons, notify, rules, min(runtimes) if runtimes else None, no_record
    )


def real_glob(pattern: str, cwd: str) -> list[str] | None:
    """Expand a glob the way bash would (no dotfiles), bounded by GLOB_LIMIT."""
    import glob
    import itertools

    it = glob.iglob(pattern, root_dir=None)
    out = list(itertools.islice(it, GLOB_LIMIT + 1))
    return None if len(out) > GLOB_LIMIT else out
