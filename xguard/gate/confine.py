"""Kernel confinement of allowed commands (issue 11 part 3, SPEC §8).

The static reading of a command decides what needs a person; this module makes
the kernel enforce what an `allow` says, so a misreading of bash costs a failed
write, not a breach. The box is derived per command from its own decision:

- the file system is read-only, except the paths that allowed write units name
  (and /dev/null and the terminal);
- every path a path rule denies or gates for reading is masked (an empty
  read-only tmpfs over a folder, /dev/null over a file), and so are xguard's own
  config, rules, spool, cache and audit folders;
- no network unless a rule that matched says `network: allow`;
- a pid namespace of its own (it cannot signal the agent's other processes),
  no_new_privs (`sudo` inside fails), TIOCSTI/TIOCLINUX refused (it cannot
  type into the terminal), and it dies with xguard.

bubblewrap does this where it can start; where it cannot (no user namespaces),
Landlock does what it can (read-only except the allowed writes, reads limited
to an allowlist that leaves the masked paths out, TCP connect and signals to
outside processes denied where the ABI has them).

Standard library only and no `re`: this runs on every allowed command. What
works on this machine is probed once and kept in the state folder, keyed by
the kernel, the bwrap binary and the user-namespace settings.
"""

from __future__ import annotations

import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

BWRAP_PATHS = ("/usr/bin/bwrap", "/bin/bwrap", "/usr/local/bin/bwrap")
FORCE_ENV = (
    "XGUARD_CONFINE_FORCE"  # bwrap | landlock: test one mechanism on a machine that has both
)
ASK_MARKER = "# xguard: unconfined"  # first line of a command that asks to run outside the box
SETTINGS = ("auto", "required", "off")

# Sockets that reach other programs across the network namespace (a socket
# file connects on a read-only mount): masked unless the network is granted.
SOCKET_MASKS = (
    "/run/user",
    "/run/docker.sock",
    "/var/run/docker.sock",
    "/run/containerd",
    "/run/podman",
    "/run/snapd.socket",
    "/run/dbus",
    "/var/run/dbus",
)
# Folders skipped when searching the project and home for `**/name` secrets:
# large, generated, and not where credentials live.
SKIP_DIRS = frozenset(
    {".git", "node_modules", ".venv", "venv", "__pycache__", ".tox", ".mypy_cache", ".cache"}
)
WALK_BUDGET = 4000  # directory entries looked at per root
HOME_DEPTH, CWD_DEPTH = 3, 5
MAX_FILE_MASKS = 16  # more masked files than this in one folder: mask the folder


# ---------------------------------------------------------------------------
# What works here


class Support:
    """Which mechanisms start on this machine, and why the others do not."""

    __slots__ = ("abi", "bwrap", "why")

    def __init__(self, bwrap: str | None, abi: int, why: dict[str, str]) -> None:
        self.bwrap = bwrap  # path of a bwrap that starts a box, or None
        self.abi = abi  # Landlock ABI version, 0 when unavailable
        self.why = why  # mechanism -> why it does not work ("" when it does)

    def best(self) -> str:
        if self.bwrap:
            return "bwrap"
        return "landlock" if self.abi >= 1 else "none"


def _read_small(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(64).decode("ascii", "replace").strip()
    except OSError:
        return "-"


def _support_key() -> tuple[str, str | None]:
    """What the answer depends on: kernel, bwrap binary, uid, user-namespace knobs."""
    u = os.uname()
    bwrap = None
    parts = [u.release, u.version, u.machine, str(os.geteuid())]
    for p in BWRAP_PATHS:
        try:
            st = os.stat(p)
        except OSError:
            continue
        bwrap = p
        parts += [p, str(st.st_mtime_ns), str(st.st_size), str(st.st_mode)]
        break
    for knob in (
        "/proc/sys/user/max_user_namespaces",
        "/proc/sys/kernel/unprivileged_userns_clone",
        "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
    ):
        parts.append(_read_small(knob))
    from xguard.util import sha256

    return sha256("\0".join(parts).encode()).hexdigest()[:24], bwrap


def support(cache_dir: str | None, *, refresh: bool = False) -> Support:
    """Probe (or read the kept answer of) what confinement works here."""
    key, bwrap = _support_key()
    cache = os.path.join(cache_dir, f"confine-{key}.txt") if cache_dir else None
    if cache and not refresh:
        try:
            with open(cache, encoding="utf-8") as f:
                lines = f.read().split("\n")
            # The cache sits in the user's own state folder (the agent's, in
            # strict mode): its bwrap path is used only when it is the one
            # found now among the fixed system paths. A forged path would be
            # run as "bubblewrap" with the command's argv, i.e. with no box.
            if len(lines) >= 4 and lines[0] == "v1" and lines[1] in ("", bwrap):
                return Support(
                    lines[1] or None, int(lines[2]), {"bwrap": lines[3], "landlock": lines[4]}
                )
        except (OSError, ValueError, IndexError):
            pass
    why_bwrap = "" if bwrap else "bubblewrap is not installed (apt-get install bubblewrap)"
    if bwrap:
        why_bwrap = _probe_bwrap(bwrap)
    abi, why_ll = landlock_abi()
    s = Support(bwrap if not why_bwrap else None, abi, {"bwrap": why_bwrap, "landlock": why_ll})
    if cache:
        try:
            os.makedirs(cache_dir or "", mode=0o700, exist_ok=True)
            tmp = f"{cache}.{os.getpid()}.tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                f.write("\n".join(["v1", s.bwrap or "", str(abi), why_bwrap, why_ll, ""]))
            os.replace(tmp, cache)
        except OSError:
            pass  # an optimisation only
    return s


def _probe_bwrap(bwrap: str) -> str:
    """Start the smallest box with every namespace the real one uses; '' if it works."""
    import _signal
    import select

    argv = [bwrap, *_BASE, "--unshare-net", "--new-session"]
    if os.geteuid() == 0:
        argv += ["--cap-drop", "ALL"]
    argv += ["--", "/bin/sh", "-c", ":"]
    # bwrap waits for its child's SIGCHLD: a caller that ignores SIGCHLD (the
    # disposition survives exec) would leave it waiting for ever.
    old = _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)
    r, w = os.pipe()
    pid = -1
    try:
        devnull = os.open(os.devnull, os.O_RDWR)
        try:
            pid = os.posix_spawn(
                bwrap,
                argv,
                {"PATH": "/usr/bin:/bin"},
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, devnull, 0),
                    (os.POSIX_SPAWN_DUP2, devnull, 1),
                    (os.POSIX_SPAWN_DUP2, w, 2),
                ],
                setsigdef=(_signal.SIGCHLD, _signal.SIGPIPE),
            )
        finally:
            os.close(devnull)
        os.close(w)
        w = -1
        err = b""
        deadline = time.monotonic() + 10
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                os.kill(pid, _signal.SIGKILL)
                os.waitpid(pid, 0)
                return f"{bwrap} did not finish starting a box within 10 seconds"
            chunk = os.read(r, 4096)
            if not chunk:
                break
            err += chunk[: 4096 - len(err)]
        _, status = os.waitpid(pid, 0)
    except OSError as e:
        return f"{bwrap} cannot start: {e.strerror}"
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
        _signal.signal(_signal.SIGCHLD, old)
    if os.waitstatus_to_exitcode(status) == 0:
        return ""
    msg = err.decode("utf-8", "replace").strip().splitlines()
    return f"{bwrap} cannot create its namespaces here: {msg[-1] if msg else 'failed'}"


_LANDLOCK_CREATE_RULESET, _LANDLOCK_ADD_RULE, _LANDLOCK_RESTRICT_SELF = 444, 445, 446


def _libc() -> Any:
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def landlock_abi() -> tuple[int, str]:
    """The kernel's Landlock ABI version (0 when none) and why not."""
    if not sys.platform.startswith("linux"):
        return 0, "Landlock is Linux only"
    try:
        import ctypes

        libc = _libc()
        libc.syscall.restype = ctypes.c_long
        abi = libc.syscall(_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    except (OSError, AttributeError) as e:
        return 0, f"cannot call into libc: {e}"
    if abi >= 1:
        return int(abi), ""
    err = ctypes.get_errno()
    if err == 38:  # ENOSYS
        return (
            0,
            f"kernel {os.uname().release} has no Landlock (needs 5.13+, CONFIG_SECURITY_LANDLOCK)",
        )
    if err == 95:  # EOPNOTSUPP
        return 0, "Landlock is built in but not enabled (add landlock to the lsm= boot parameter)"
    return 0, f"landlock_create_ruleset failed: {os.strerror(err)}"


# ---------------------------------------------------------------------------
# The setting and the decision


def setting(ruleset: Any) -> str:
    return str(ruleset.setting("confine", "auto"))


def resolve(ruleset: Any, cache_dir: str | None, environ: dict[str, str]) -> tuple[str, str]:
    """(mechanism, why) for this process: `none` with a reason when nothing can run a box."""
    mode = setting(ruleset)
    if mode == "off":
        return "none", "confine: off"
    sup = support(cache_dir)
    forced = environ.get(FORCE_ENV, "")
    if forced in ("bwrap", "landlock"):
        # Only ever a choice between mechanisms that work: an environment
        # variable must never be a way out of the box.
        if forced == "bwrap" and sup.bwrap:
            return "bwrap", ""
        if forced == "landlock" and sup.abi >= 1:
            return "landlock", ""
    best = sup.best()
    if best != "none":
        return best, ""
    return (
        "none",
        f"no sandbox can start here (bwrap: {sup.why['bwrap']}; landlock: {sup.why['landlock']})",
    )


def _rules_by_id(ruleset: Any) -> dict[str, Any]:
    # Every rule a decision names was made while matching it, so the rules made
    # so far are enough: asking for all of them would load the whole set (the
    # built-in defaults hold over 300) on every allowed command.
    idx: dict[str, Any] = ruleset.loaded()
    return idx


def _allow_rules(ruleset: Any, ud: Any) -> list[Any]:
    idx = _rules_by_id(ruleset)
    return [idx[i] for i in ud.rule_ids if i in idx and idx[i].action == "allow"]


def escalate(decision: Any, text: str, ruleset: Any, mechanism: str, why: str) -> None:
    """Raise an `allow` that must not run the way it would: confine: required
    with no mechanism, an allow that relied on the box (`if_confined`) when the
    box would not be used, or a command that asks to run unconfined."""
    if decision.decision != "allow":
        return
    reason = None
    first = text.lstrip().split("\n", 1)[0].strip() if text else ""
    if first == ASK_MARKER:
        reason = "asks to run outside the sandbox (# xguard: unconfined)"
    elif mechanism == "none" and setting(ruleset) == "required":
        reason = f"confine: required, and {why}"
    elif _unconfined_rule(decision, ruleset) is not None and _relies_on_box(decision, ruleset):
        reason = "allowed only in the sandbox, but a rule it matched says confine: false"
    if reason is None:
        return
    decision.decision = "require_approval"
    decision.reasons.append(reason)


def _relies_on_box(decision: Any, ruleset: Any) -> bool:
    for ud in decision.units:
        rules = _allow_rules(ruleset, ud)
        if rules and all(getattr(r, "if_confined", False) for r in rules):
            return True
    return False


def _unconfined_rule(decision: Any, ruleset: Any) -> str | None:
    for ud in decision.units:
        for r in _allow_rules(ruleset, ud):
            if getattr(r, "confine", True) is False:
                return str(r.id)
    return None


def _network(decision: Any, ruleset: Any) -> bool:
    for ud in decision.units:
        if ud.kind != "command":
            continue
        for r in _allow_rules(ruleset, ud):
            if getattr(r, "network", None) == "allow":
                return True
    return False


# ---------------------------------------------------------------------------
# The box


class Box:
    """What a command may touch, and how it is enforced."""

    __slots__ = (
        "abi",
        "bwrap",
        "cwd",
        "masked_dirs",
        "masked_files",
        "mechanism",
        "network",
        "partial",
        "why",
        "writable",
    )

    def __init__(self, mechanism: str, cwd: str = "/", why: str = "") -> None:
        self.mechanism = mechanism
        self.cwd = cwd
        self.why = why
        self.writable: list[str] = []
        self.masked_dirs: list[str] = []
        self.masked_files: list[str] = []
        self.network = False
        self.partial = False  # the search for `**/name` secrets ran out of budget
        self.bwrap = ""
        self.abi = 0

    def __repr__(self) -> str:
        return (
            f"Box({self.mechanism}, writable={self.writable}, masked_dirs={self.masked_dirs}, "
            f"masked_files={self.masked_files}, network={self.network})"
        )

    # -- bubblewrap ----------------------------------------------------------
    def bwrap_argv(
        self, path: str, argv: list[str], *, tty: bool, seccomp_fd: int | None
    ) -> list[str]:
        """The bwrap command line that runs `path argv[1:]` in this box."""
        out = [self.bwrap, *_BASE]
        if not self.network:
            out.append("--unshare-net")
        if not tty:
            # No terminal to keep: a new session also drops the controlling
            # terminal, so /dev/tty cannot be opened either.
            out.append("--new-session")
        if os.geteuid() == 0:
            out += ["--cap-drop", "ALL"]  # root in the box must not remount or mount
        for p in self.writable:
            out += ["--bind", p, p]
        for d in self.masked_dirs:
            out += ["--tmpfs", d, "--remount-ro", d]
        for f in self.masked_files:
            out += ["--ro-bind", "/dev/null", f]
        if seccomp_fd is not None:
            out += ["--seccomp", str(seccomp_fd)]
        out += ["--chdir", self.cwd, "--", path, *argv[1:]]
        return out

    # -- Landlock --------------------------------------------------------------
    def landlock_ruleset(self) -> int:
        """A Landlock ruleset fd describing the box, made in the parent (the
        child only restricts itself with it, then execs); the caller closes it."""
        return _landlock_ruleset(self)


# Every box: the whole tree read-only, a minimal /dev (null, zero, full,
# random, urandom, tty, and the terminal as /dev/console), a /proc of its own
# pid namespace, no System V IPC of others, dies with xguard.
_BASE = (
    "--ro-bind",
    "/",
    "/",
    "--dev",
    "/dev",
    "--proc",
    "/proc",
    "--unshare-pid",
    "--unshare-ipc",
    "--die-with-parent",
)
# How `xguard approve` and the other deciding verbs know they run in a box
# (its init's command line starts so), even with XGUARD_GATED unset.
BOX_SIGNATURE = _BASE


def plan(
    decision: Any,
    ruleset: Any,
    ctx: Any,
    paths: Any,
    mechanism: str,
    *,
    approved: bool = False,
    cache_dir: str | None = None,
    here: bool = True,
) -> Box:
    """The box for one decided command. `none` when it runs unconfined: the
    setting is off, nothing works here, a person approved it, or a rule it
    matched says `confine: false`. `here=False`: another process starts it
    (strict mode's client), which finds bubblewrap and Landlock itself."""
    cwd = ctx.cwd
    if mechanism == "none":
        return Box("none", cwd, "no mechanism")
    if approved and not ruleset.setting("confine_approved", False):
        return Box("none", cwd, "approved by a person")
    rid = _unconfined_rule(decision, ruleset)
    if rid is not None:
        return Box("none", cwd, f"rule {rid} says confine: false")
    box = Box(mechanism, cwd)
    if here:
        sup = support(cache_dir)
        box.bwrap = sup.bwrap or ""
        box.abi = sup.abi
    box.network = _network(decision, ruleset)
    box.writable = _writable(decision, ruleset, ctx)
    dirs, files = _masks(ruleset, ctx, paths, box, cache_dir)
    # A mask wins over a write: secrets stay hidden even under a writable folder,
    # and a writable path inside a masked folder stays masked.
    box.writable = [w for w in box.writable if not any(_under(w, d) for d in dirs)]
    # A folder that holds the cwd stays visible: the user chose to work there.
    box.masked_dirs = _outermost(sorted(d for d in dirs if d == cwd or not _under(cwd, d)))
    box.masked_files = sorted(f for f in files if not any(_under(f, d) for d in box.masked_dirs))
    return box


def _under(p: str, d: str) -> bool:
    return p == d or p.startswith(d.rstrip("/") + "/")


def _outermost(dirs: list[str]) -> list[str]:
    out: list[str] = []
    for d in sorted(dirs):
        if not out or not _under(d, out[-1]):
            out.append(d)
    return out


def _writable(decision: Any, ruleset: Any, ctx: Any) -> list[str]:
    """Folders and files the allowed write units may write, as existing paths."""
    from xguard.policy.decide import resolve_path

    out: list[str] = []
    for ud in decision.units:
        u = ud.unit
        if ud.kind != "path" or ud.decision != "allow" or u is None or u.access != "write":
            continue
        for p in resolve_path(u, ctx):
            if p.startswith("/dev/"):
                continue  # /dev/null and the terminal are in every box
            target = None
            for r in _allow_rules(ruleset, ud):
                root = _rule_root(r.src, ctx, p)
                if root and os.path.exists(root):
                    target = root
                    break
            if target is None:
                target = _existing_file(p)
            if target is not None:
                real = os.path.realpath(target)
                if real not in out and real not in ("/", ctx.home):
                    out.append(real)
    return out


def _existing_file(p: str) -> str | None:
    """A single file an allow rule names: bind it (created empty first when its
    folder exists, as the redirect would create it) rather than its folder."""
    if os.path.isdir(p):
        return p
    if not os.path.exists(p):
        parent = os.path.dirname(p)
        if not os.path.isdir(parent):
            return None
        try:
            os.close(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666))
        except OSError:
            return None
    return p


def _rule_root(src: str, ctx: Any, path: str) -> str | None:
    """The folder a `…/**` write rule covers that holds `path`: `./build/**` is
    the cwd's build folder, `/tmp/**` is /tmp, `build/**` (any depth) is the
    nearest folder named build above `path`. None for rules that name files."""
    g = src.strip()
    if not g.endswith("/**"):
        return None
    head = g[:-3]
    if any(c in head for c in "*?["):
        if not head.startswith("**/"):
            return None
        head = head[3:]
        if any(c in head for c in "*?["):
            return None
    if head.startswith("~"):
        root = ctx.home + head[1:]
    elif head.startswith("/"):
        root = head
    elif head.startswith(("./", "../")) or head in (".", ".."):
        root = os.path.join(ctx.cwd, head)
    else:
        # Unanchored: the nearest ancestor of `path` whose trailing parts are `head`.
        parts = head.strip("/").split("/")
        comps = path.split("/")
        for i in range(len(comps) - 1, len(parts) - 1, -1):
            if comps[i - len(parts) + 1 : i + 1] == parts:
                return "/".join(comps[: i + 1]) or "/"
        return None
    root = os.path.normpath(root)
    return root if _under(path, root) else None


# -- masks -------------------------------------------------------------------


def _glob_match(name: str, pat: str) -> bool:
    """fnmatch for one path component (`*`, `?`, `[...]`), without `re`
    (fnmatch and glob import it: several ms on every command)."""
    if not any(c in pat for c in "*?["):
        return name == pat
    n = p = 0
    star_p = star_n = -1
    while n < len(name):
        if p < len(pat) and pat[p] == "*":
            star_p, star_n = p, n
            p += 1
            continue
        if p < len(pat):
            step = _one(name[n], pat, p)
            if step:
                n += 1
                p += step
                continue
        if star_p < 0:
            return False
        star_n += 1
        n, p = star_n, star_p + 1
    while p < len(pat) and pat[p] == "*":
        p += 1
    return p == len(pat)


def _one(c: str, pat: str, p: int) -> int:
    """Does character c match the pattern item at p? -> its length, or 0."""
    if pat[p] == "?":
        return 1
    if pat[p] == "[":
        end = pat.find("]", p + 2)
        if end > 0:
            body = pat[p + 1 : end]
            neg = body[:1] in ("!", "^")
            if neg:
                body = body[1:]
            hit = False
            i = 0
            while i < len(body):
                if i + 2 < len(body) and body[i + 1] == "-":
                    hit = hit or body[i] <= c <= body[i + 2]
                    i += 3
                else:
                    hit = hit or body[i] == c
                    i += 1
            return end - p + 1 if hit != neg else 0
    return 1 if pat[p] == c else 0


class _Matcher:
    """The unanchored mask rules (`**/.env`, `**/.ssh/**`, `*.pem`) as
    component patterns, matched against the trailing parts of a path. Indexed
    by last component (exact name, `*suffix`, `prefix*`) so that a walk of a
    few thousand entries costs a dict lookup and two str calls each."""

    def __init__(self) -> None:
        self.by_name: dict[str, list[list[str]]] = {}
        self.by_suffix: dict[str, list[list[str]]] = {}
        self.by_prefix: dict[str, list[list[str]]] = {}
        self.generic: list[list[str]] = []
        self.suffixes: tuple[str, ...] = ()
        self.prefixes: tuple[str, ...] = ()

    def add(self, parts: list[str]) -> None:
        last = parts[-1]
        wild = [c for c in last if c in "*?["]
        if not wild:
            self.by_name.setdefault(last, []).append(parts)
        elif wild == ["*"] and last.startswith("*"):
            self.by_suffix.setdefault(last[1:], []).append(parts)
            self.suffixes = tuple(self.by_suffix)
        elif wild == ["*"] and last.endswith("*"):
            self.by_prefix.setdefault(last[:-1], []).append(parts)
            self.prefixes = tuple(self.by_prefix)
        else:
            self.generic.append(parts)

    def __bool__(self) -> bool:
        return bool(self.by_name or self.by_suffix or self.by_prefix or self.generic)

    def match(self, path: str, name: str) -> bool:
        """Does a mask rule name this path?"""
        cands = list(self.by_name.get(name, ()))
        if self.suffixes and name.endswith(self.suffixes):
            cands += [p for x, ps in self.by_suffix.items() if name.endswith(x) for p in ps]
        if self.prefixes and name.startswith(self.prefixes):
            cands += [p for x, ps in self.by_prefix.items() if name.startswith(x) for p in ps]
        cands += [p for p in self.generic if _glob_match(name, p[-1])]
        for parts in cands:
            if len(parts) == 1:
                return True
            comps = path.split("/")
            if len(comps) > len(parts) and all(
                _glob_match(c, x) for c, x in zip(comps[-len(parts) : -1], parts[:-1], strict=True)
            ):
                return True
        return False


class _Watch:
    """The folders an answer was read from, with their mtimes taken before
    reading: a folder's mtime changes whenever a name in it is added,
    removed or renamed, so the answer holds as long as these stat calls say so."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    def dir(self, d: str) -> None:
        while d not in self.seen:
            try:
                self.seen[d] = os.stat(d).st_mtime_ns
                return
            except OSError:
                if d in ("/", ""):
                    return
                d = os.path.dirname(d)  # a missing folder: its parent says when it appears

    def path(self, p: str) -> None:
        self.dir(os.path.dirname(p) or "/")


def _masks(
    ruleset: Any, ctx: Any, paths: Any, box: Box, cache_dir: str | None = None
) -> tuple[set[str], set[str]]:
    """(folders, files) to mask, kept in the state folder with the mtimes of
    every folder consulted, so most commands pay a few stat calls for it."""
    sources = [s for s in ruleset.sources if s]
    protected = paths.protected_s()
    key_src = "\0".join(
        [
            "v3",
            str(ruleset.data.get("key", "")),
            ctx.cwd,
            ctx.home,
            "net" if box.network else "-",
            *protected,
            *sources,
        ]
    )
    cache = None
    if cache_dir:
        from xguard.util import sha256

        digest = sha256(key_src.encode("utf-8", "surrogateescape")).hexdigest()
        cache = os.path.join(cache_dir, f"confine-masks-{digest[:24]}.txt")
        kept = _read_masks(cache)
        if kept is not None:
            box.partial = kept[2]
            return kept[0], kept[1]
    watch = _Watch()
    dirs, files = _compute_masks(ruleset, ctx, protected, sources, box=box, watch=watch)
    if cache:
        lines = ["v3", "P" if box.partial else "-"]
        lines += [f"D{m}\t{d}" for d, m in watch.seen.items()]
        lines += [f"d{d}" for d in sorted(dirs)] + [f"f{f}" for f in sorted(files)]
        try:
            os.makedirs(cache_dir or "", mode=0o700, exist_ok=True)
            tmp = f"{cache}.{os.getpid()}.tmp"
            with open(tmp, "w", encoding="utf-8", errors="surrogateescape") as f:
                f.write("\n".join(lines) + "\n")
            os.replace(tmp, cache)
        except OSError:
            pass  # an optimisation only
    return dirs, files


def _read_masks(cache: str) -> tuple[set[str], set[str], bool] | None:
    try:
        with open(cache, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().split("\n")
    except OSError:
        return None
    if lines[:1] != ["v3"] or len(lines) < 3:
        return None
    dirs: set[str] = set()
    files: set[str] = set()
    for line in lines[2:]:
        tag, rest = line[:1], line[1:]
        if tag == "D":
            mtime, _, d = rest.partition("\t")
            try:
                if str(os.stat(d).st_mtime_ns) != mtime:
                    return None
            except OSError:
                return None
        elif tag == "d":
            dirs.add(rest)
        elif tag == "f":
            files.add(rest)
    return dirs, files, lines[1] == "P"


def _compute_masks(
    ruleset: Any, ctx: Any, protected: list[str], sources: list[str], *, box: Box, watch: _Watch
) -> tuple[set[str], set[str]]:
    dirs: set[str] = set()
    files: set[str] = set()

    def add(p: str) -> None:
        # The mount goes on the real file: a symlink to a secret leads to the mask.
        watch.path(p)
        q = os.path.realpath(p)
        if q != p:
            watch.path(q)
        if q.startswith(("/proc/", "/dev/", "/sys/")) or q in ("/", "/proc", "/dev", "/sys"):
            return  # the box has a /proc and /dev of its own
        if os.path.isdir(q):
            dirs.add(q)
        elif os.path.exists(q):
            files.add(q)

    for p in protected:
        add(p)
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for src in sources:
        if not src.startswith(package):
            add(src)
    if not box.network:
        for sock in SOCKET_MASKS:
            add(sock)
    matcher = _Matcher()
    from xguard.policy.floor import FLOOR

    # Every path a rule gates or denies for reading, and the built-in secrets
    # floor, which is gated under any rules (its globs as written: compiling
    # its rules would import `re` on every allowed command).
    globs = [r.src for r in ruleset.path_rules if r.action != "allow" and r.access != "write"] + [
        glob for glob, _what in FLOOR
    ]
    for src in globs:
        g = src.strip()
        if g.startswith("~"):
            g = ctx.home.rstrip("/") + g[1:]
        elif g.startswith(("./", "../")):
            g = os.path.normpath(os.path.join(ctx.cwd, g))
        if g.startswith("/"):
            _anchored(g, add, watch)
            continue
        while g.startswith("**/"):
            g = g[3:]
        if g.endswith("/**"):
            g = g[:-3]  # the folder itself is masked
        parts = [x for x in g.split("/") if x]
        if not parts or "**" in parts:
            continue
        matcher.add(parts)
    if matcher:
        roots = [(ctx.cwd, CWD_DEPTH), (ctx.home, HOME_DEPTH)]
        # The folders above the cwd hold `../.env` too.
        d = os.path.dirname(ctx.cwd)
        while d and d != "/":
            roots.append((d, 1))
            d = os.path.dirname(d)
        seen: set[str] = set()
        for root, depth in roots:
            if root and root != "/" and root not in seen:
                seen.add(root)
                found: list[str] = []
                if _walk(root, depth, matcher, found, watch, skip=frozenset(dirs)):
                    box.partial = True
                for m in found:
                    add(m)
    # Many masked files in one folder: mask the folder (each mask is a mount).
    by_parent: dict[str, int] = {}
    for f in files:
        by_parent[os.path.dirname(f)] = by_parent.get(os.path.dirname(f), 0) + 1
    for parent, n in by_parent.items():
        if n > MAX_FILE_MASKS and parent != ctx.cwd:
            dirs.add(parent)
    return dirs, files


def _anchored(g: str, add: Any, watch: _Watch) -> None:
    """An absolute rule glob: the literal folder of `X/**`, the path itself, or
    its (bounded) expansion."""
    if g.endswith("/**") and not any(c in g[:-3] for c in "*?["):
        add(g[:-3] or "/")
        return
    if not any(c in g for c in "*?["):
        add(g)
        return
    if g.startswith(("/proc/", "/dev/", "/sys/")):
        return
    pattern = g[:-3] if g.endswith("/**") else g
    found = ["/"]
    for part in pattern.strip("/").split("/"):
        if part == "**":
            return  # a recursive glob in the middle of an absolute path: too broad to walk
        nxt: list[str] = []
        for d in found:
            watch.dir(d)
            if not any(c in part for c in "*?["):
                q = os.path.join(d, part)
                if os.path.lexists(q):
                    nxt.append(q)
                continue
            try:
                names = sorted(os.listdir(d))
            except OSError:
                continue
            nxt += [os.path.join(d, x) for x in names if _glob_match(x, part)]
        found = nxt[:256]
    for m in found:
        add(m)


def _walk(
    root: str,
    depth: int,
    matcher: _Matcher,
    found: list[str],
    watch: _Watch,
    *,
    skip: frozenset[str] = frozenset(),
) -> bool:
    """Bounded search under root for what unanchored mask rules name; -> whether
    the budget ran out. Folders in `skip` are masked whole already: nothing in
    them needs finding, and watching them would make the kept result stale on
    every command (xguard's own state folder, where the audit log and this
    cache are written, is one)."""
    todo = [(root, depth)]
    budget = WALK_BUDGET
    while todo:
        d, left = todo.pop()
        watch.dir(d)
        try:
            it = os.scandir(d)
        except OSError:
            continue
        with it:
            for e in it:
                budget -= 1
                if budget < 0:
                    return True
                if matcher.match(e.path, e.name):
                    found.append(e.path)
                    continue
                try:
                    is_dir = e.is_dir(follow_symlinks=False)
                except OSError:
                    continue
                if is_dir and left > 1 and e.name not in SKIP_DIRS and e.path not in skip:
                    todo.append((e.path, left - 1))
    return False


# ---------------------------------------------------------------------------
# seccomp: refuse TIOCSTI and TIOCLINUX (typing into the terminal)

_AUDIT_ARCH_X86_64, _AUDIT_ARCH_I386, _AUDIT_ARCH_AARCH64 = 0xC000003E, 0x40000003, 0xC00000B7
_IOCTL_NR = ((_AUDIT_ARCH_X86_64, 16), (_AUDIT_ARCH_I386, 54), (_AUDIT_ARCH_AARCH64, 29))
_TIOCSTI, _TIOCLINUX = 0x5412, 0x541C


def seccomp_filter() -> bytes:
    """A classic BPF program (struct sock_filter[]) that makes ioctl(TIOCSTI)
    and ioctl(TIOCLINUX) fail with EPERM and allows everything else. Without it
    a command on the agent's terminal could push keystrokes into the shell
    that started the agent (CVE-2017-5226)."""
    ld, jeq, ret = 0x20, 0x15, 0x06
    allow, deny = 0x7FFF0000, 0x00050000 | 1  # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO|EPERM
    n = len(_IOCTL_NR)
    # Layout: [0] ld arch; per arch: jeq arch, ld nr, jeq nr; ret allow;
    # check: ld arg1, jeq TIOCSTI, jeq TIOCLINUX, ret allow, ret deny.
    prog: list[tuple[int, int, int, int]] = [(ld, 0, 0, 4)]
    allow_at = 1 + 3 * n
    check_at = allow_at + 1
    deny_at = check_at + 4
    for i, (arch, nr) in enumerate(_IOCTL_NR):
        at = 1 + 3 * i
        # Another arch: skip this arch's two instructions (the accumulator
        # still holds the arch for the next test; after the last, allow).
        prog.append((jeq, 0, 2, arch))
        prog.append((ld, 0, 0, 0))
        prog.append((jeq, check_at - (at + 3), allow_at - (at + 3), nr))
    prog.append((ret, 0, 0, allow))
    prog += [
        (ld, 0, 0, 24),  # args[1], low 32 bits: the kernel truncates the request
        (jeq, deny_at - (check_at + 2), 0, _TIOCSTI),
        (jeq, deny_at - (check_at + 3), 0, _TIOCLINUX),
        (ret, 0, 0, allow),
        (ret, 0, 0, deny),
    ]
    # struct sock_filter {u16 code; u8 jt; u8 jf; u32 k;}, native (little) endian
    return b"".join(
        c.to_bytes(2, "little") + bytes((jt, jf)) + k.to_bytes(4, "little") for c, jt, jf, k in prog
    )


def seccomp_fd(prog: bytes) -> int:
    """The read end of a pipe holding the seccomp program, inheritable, for
    `bwrap --seccomp FD` (which reads it once); the caller closes it. (The
    program is far smaller than a pipe's buffer: the write never blocks.)"""
    r, w = os.pipe()
    try:
        os.write(w, prog)
        os.set_inheritable(r, True)
    except BaseException:
        os.close(r)
        raise
    finally:
        os.close(w)
    return r


# ---------------------------------------------------------------------------
# Landlock

_LL_EXECUTE, _LL_WRITE_FILE, _LL_READ_FILE, _LL_READ_DIR = 1, 2, 4, 8
_LL_REFER, _LL_TRUNCATE = 1 << 13, 1 << 14
_LL_FILE_RIGHTS = _LL_EXECUTE | _LL_WRITE_FILE | _LL_READ_FILE | _LL_TRUNCATE
_LL_NET_BIND_TCP, _LL_NET_CONNECT_TCP = 1, 2
_LL_SCOPE_ABSTRACT_UNIX, _LL_SCOPE_SIGNAL = 1, 2
_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty")


# A process that runs command after command (a warm worker) keeps the last
# Landlock ruleset it built (~20 ms: a rule per entry of every folder that
# holds a masked path) and restricts the next command with it again, as long
# as the box asks for the same and every folder whose entries it listed is
# provably unchanged (device, inode, mtime, ctime: an entry added, removed or
# renamed changes its folder's times). A folder changed within the last
# second is not trusted to its times (two changes in one tick look alike).
_KEEP_RULESETS: list[bool] = []
_RULESET: list[tuple[tuple[Any, ...], tuple[str, ...], tuple[object, ...], int]] = []


def keep_rulesets() -> None:
    _KEEP_RULESETS[:] = [True]


def held_fds() -> set[int]:
    """The descriptor of the kept ruleset (not a request's leftover)."""
    return {fd for *_, fd in _RULESET}


def _ruleset_key(box: Box) -> tuple[Any, ...]:
    ttys = []
    for fd in (0, 1, 2):
        try:
            ttys.append(os.ttyname(fd) if os.isatty(fd) else "")
        except OSError:
            ttys.append("")
    return (
        landlock_abi()[0],
        box.network,
        tuple(box.masked_dirs),
        tuple(box.masked_files),
        tuple(box.writable),
        tuple(ttys),
    )


def _landlock_ruleset(box: Box) -> int:
    from xguard.util import inodes, settled

    if not _KEEP_RULESETS:
        return _landlock_build(box, [])
    # The writable paths are granted by inode: one renamed away (`build`
    # moved to `src`) would take its grant with it; what is at each path now
    # must be what was granted.
    key = (*_ruleset_key(box), inodes(box.writable))
    if _RULESET:
        k, dirs, ident, fd = _RULESET[0]
        if k == key and settled(dirs) == ident:
            return os.dup(fd)
        _RULESET.clear()
        os.close(fd)
    scanned: list[str] = []
    fd = _landlock_build(box, scanned)
    dirs = tuple(scanned)
    # Taken after the build: a folder that changed while it ran changed within
    # the last second, and settled() refuses to vouch for it.
    before = settled(dirs)
    if before is not None and key[-1] == inodes(box.writable):
        _RULESET.append((key, dirs, before, os.dup(fd)))
    return fd


def _landlock_build(box: Box, scanned: list[str]) -> int:
    """A new ruleset for the box; `scanned` gets every folder whose entries
    it lists."""
    import ctypes
    import struct

    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    # The kernel's ABI, asked now: box.abi comes from a cache the user can
    # edit (or a plan), and a lower one would leave rights unhandled (network
    # from ABI 4, truncate from 3) in a box still called confined.
    abi, why = landlock_abi()
    if abi < 1:
        raise OSError(0, f"Landlock cannot start: {why}")
    fs_all = (1 << 13) - 1
    if abi >= 2:
        fs_all |= _LL_REFER
    if abi >= 3:
        fs_all |= _LL_TRUNCATE
    net = 0 if box.network or abi < 4 else _LL_NET_BIND_TCP | _LL_NET_CONNECT_TCP
    scoped = 0
    if abi >= 6:
        scoped = _LL_SCOPE_SIGNAL | (0 if box.network else _LL_SCOPE_ABSTRACT_UNIX)
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    attr = struct.pack("<QQQ", fs_all, net, scoped)[:size]
    buf = ctypes.create_string_buffer(attr, size)
    rfd = libc.syscall(_LANDLOCK_CREATE_RULESET, buf, ctypes.c_size_t(size), ctypes.c_uint32(0))
    if rfd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"landlock_create_ruleset: {os.strerror(err)}")

    def add(path: str, access: int) -> None:
        try:
            pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            return
        try:
            import stat

            if not stat.S_ISDIR(os.fstat(pfd).st_mode):
                access &= _LL_FILE_RIGHTS
            access &= fs_all
            if not access:
                return
            rule = ctypes.create_string_buffer(struct.pack("<Qi", access, pfd), 12)
            if libc.syscall(_LANDLOCK_ADD_RULE, rfd, 1, rule, 0) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"landlock_add_rule {path}: {os.strerror(err)}")
        finally:
            os.close(pfd)

    try:
        read = _LL_EXECUTE | _LL_READ_FILE | _LL_READ_DIR
        # Names may be listed everywhere (what `ls` shows); contents are read
        # only along the allowlist, which leaves the masked paths out.
        add("/", _LL_READ_DIR)
        masked = [*box.masked_dirs, *box.masked_files, "/dev"]
        _allow_tree("/", masked, lambda p: add(p, read), scanned)
        for dev in _DEVICES:
            add(dev, _LL_READ_FILE | _LL_WRITE_FILE)
        for fd in (0, 1, 2):
            try:
                if os.isatty(fd):
                    add(os.ttyname(fd), _LL_READ_FILE | _LL_WRITE_FILE)
            except OSError:
                pass
        # Writes without reads: a writable folder that holds a masked secret
        # may be written, but the secret still cannot be read.
        for w in box.writable:
            add(w, fs_all & ~read | _LL_READ_DIR)
    except BaseException:
        os.close(rfd)
        raise
    return int(rfd)


def _allow_tree(d: str, masked: list[str], add: Any, scanned: list[str]) -> None:
    """Allow `d` whole when no masked path lies in it; else its entries, one
    by one (Landlock cannot take a subpath back from an allowed folder)."""
    if d in masked:
        return
    if not any(_under(m, d) for m in masked):
        add(d)
        return
    scanned.append(d)
    try:
        entries = list(os.scandir(d))
    except OSError:
        return
    for e in entries:
        try:
            link = e.is_symlink()
        except OSError:
            continue
        if link:
            real = os.path.realpath(e.path)
            if not any(_under(real, m) or _under(m, real) for m in masked):
                add(e.path)
            continue
        _allow_tree(e.path, masked, add, scanned)


class _Enter:
    """What the child does between fork and exec under Landlock: everything it
    needs is made in the parent, so the child only makes three calls."""

    def __init__(self, ruleset_fd: int) -> None:
        import ctypes

        self.libc = _libc()
        self.libc.syscall.restype = ctypes.c_long
        self.ruleset_fd = ruleset_fd
        prog = seccomp_filter()
        self._filter = ctypes.create_string_buffer(prog, len(prog))

        class _Fprog(ctypes.Structure):
            _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))

        self._fprog = _Fprog(len(prog) // 8, ctypes.addressof(self._filter))
        self._ref = ctypes.byref(self._fprog)

    def __call__(self) -> None:
        libc = self.libc
        if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
            raise OSError("prctl(PR_SET_NO_NEW_PRIVS) failed")
        if libc.prctl(22, 2, self._ref, 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
            raise OSError("prctl(PR_SET_SECCOMP) failed")
        if libc.syscall(_LANDLOCK_RESTRICT_SELF, self.ruleset_fd, 0) != 0:
            raise OSError("landlock_restrict_self failed")


def landlock_preexec(box: Box) -> _Enter:
    return _Enter(box.landlock_ruleset())


# ---------------------------------------------------------------------------
# Telling the agent why it failed

_ROFS = "Read-only file system"
_EACCES = "Permission denied"
_NET = (
    "Network is unreachable",
    "Could not resolve host",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Couldn't connect to server",
    "Failed to connect",
    "Connection refused",
)


def hint(box: Box, exit_code: int, tail: bytes) -> str | None:
    """One line for the agent when a confined command failed on a write or a
    connect that the box refused, so it asks instead of trying other ways."""
    if exit_code == 0 or not tail:
        return None
    ask = f"ask for approval with: {ASK_MARKER!r} as the command's first line"
    text = tail.decode("utf-8", "replace")
    net = f"xguard: this command ran without network; it tried to connect — {ask}"
    for line in reversed(text.splitlines()):
        if _ROFS in line:
            f = _named_file(line, _ROFS)
            if f is not None and _masked(box, f):
                continue  # a write into a masked folder: the secret is the point, not the write
            what = f or "a file"
            return f"xguard: this command ran read-only; it tried to write {what} — {ask}"
        if _EACCES in line and box.mechanism == "landlock":
            # Landlock says EACCES for every refusal: a write the user could
            # make, a read of a masked file, a TCP connect.
            f = _named_file(line, _EACCES)
            if f is None:
                if not box.network:
                    return net
                continue
            if _masked(box, f) or not _box_refused_write(f, box.cwd):
                continue
            return f"xguard: this command ran read-only; it tried to write {f} — {ask}"
        if not box.network and any(n in line for n in _NET):
            return net
    return None


def _masked(box: Box, f: str) -> bool:
    p = os.path.realpath(f if f.startswith("/") else os.path.join(box.cwd, f))
    return p in box.masked_files or any(_under(p, d) for d in box.masked_dirs)


def _named_file(line: str, msg: str) -> str | None:
    """The file an error line names: quoted (in any of the quotes tools use) or the word
    before `: <msg>` (bash: `bash: line 1: FILE: Read-only file system`)."""
    for a, b in (("'", "'"), ("\u2018", "\u2019"), ('"', '"'), ("`", "'")):
        i = line.find(a)
        if i >= 0:
            j = line.find(b, i + 1)
            if j > i + 1:
                return line[i + 1 : j]
    if ": " + msg not in line:
        return None  # `[Errno 13] Permission denied` names no file
    head = line.split(": " + msg, 1)[0]
    seg = head.rsplit(": ", 1)[-1].split()
    return seg[-1] if seg else None


def _box_refused_write(f: str | None, cwd: str) -> bool:
    """An EACCES under Landlock is the box's when the user could write there."""
    if not f:
        return False
    p = f if f.startswith("/") else os.path.join(cwd, f)
    target = p if os.path.exists(p) else os.path.dirname(p) or "/"
    return os.access(target, os.W_OK)


def exit_note(box: Box | None, exit_code: int, tail: bytes) -> None:
    if box is None or box.mechanism == "none":
        return
    line = hint(box, exit_code, tail)
    if line:
        try:
            os.write(2, (line + "\n").encode("utf-8", "replace"))
        except OSError:  # our stderr is gone: nothing to tell (no contextlib: ~10 ms)
            return
