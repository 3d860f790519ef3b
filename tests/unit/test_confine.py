"""The box a decision describes (xguard/gate/confine.py), as tables: what is
writable, what is masked, when the network stays, what needs a person, and
the line an agent gets after a refused write. The real kernel side is in
tests/e2e/test_confine.py."""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

import pytest

from xguard.gate import confine
from xguard.paths import Paths
from xguard.policy.decide import Context, decide, real_glob
from xguard.policy.rules import Ruleset, build_ruleset_dict
from xguard.shell.parser import parse

BASE_RULES = """\
default: require_approval
rules:
  - {pattern: ls, action: allow}
  - {pattern: cat, action: allow}
  - {pattern: echo, action: allow}
  - {pattern: make, action: allow, confine: false}
  - {pattern: "kubectl get", action: allow, network: allow}
  - {pattern: cd, action: allow, if_confined: true}
  - {path: "./build/**", access: write, action: allow}
  - {path: "OUTDIR/**", access: write, action: allow}
  - {path: "**/*.log", access: write, action: allow}
  - {path: "**/.env", action: deny}
  - {path: "**/.ssh/**", action: deny}
  - {path: "**/*.pem", action: require_approval}
  - {path: "**/.kube/config", action: deny}
  - {path: "**/secrets/**", access: write, action: deny}
"""


@pytest.fixture
def world(tmp_path: Path) -> tuple[Path, Path, Paths]:
    project = tmp_path / "project"
    for d in ("build", "src/deep/er", "keys", ".git"):
        (project / d).mkdir(parents=True)
    (project / ".env").write_text("x")
    (project / "src" / "deep" / "er" / ".env").write_text("x")
    (project / "keys" / "server.pem").write_text("x")
    (project / ".git" / "x.pem").write_text("x")  # .git is not searched
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".kube").mkdir()
    (home / ".kube" / "config").write_text("x")
    (tmp_path / "out").mkdir()
    (tmp_path / "xg").mkdir(mode=0o700)
    return project, home, Paths(tmp_path / "xg", tmp_path / "xg")


def _box(
    world: tuple[Path, Path, Paths], cmd: str, rules: str = BASE_RULES, *, approved: bool = False
) -> confine.Box:
    project, home, paths = world
    f = project.parent / "rules.yaml"
    f.write_text(rules)
    rs = Ruleset(build_ruleset_dict(f, None))
    ctx = Context(cwd=str(project), home=str(home), expand_glob=real_glob, confined=True)
    d = decide(parse(cmd), rs, ctx)
    return confine.plan(d, rs, ctx, paths, "bwrap", approved=approved)


def test_masks_follow_the_rules_that_deny_or_gate_reads(world: tuple[Path, Path, Paths]) -> None:
    project, home, paths = world
    box = _box(world, "ls")
    assert {str(project / ".env"), str(project / "src/deep/er/.env")} <= set(box.masked_files)
    assert str(project / "keys/server.pem") in box.masked_files
    assert str(home / ".kube/config") in box.masked_files
    assert str(home / ".ssh") in box.masked_dirs
    assert paths.config_dir_s in box.masked_dirs  # xguard's own folder
    assert str(project / ".git/x.pem") not in box.masked_files  # .git is not searched
    # A write-only rule masks nothing; nothing in the project is writable.
    assert not any("secrets" in p for p in box.masked_dirs)
    assert box.writable == [] and box.network is False


@pytest.mark.parametrize(
    ("cmd", "writable"),
    [
        ("echo hi > build/out.txt", ["project/build"]),  # the folder the rule names
        ("echo hi > build/a/b.txt", ["project/build"]),
        ("echo hi > OUTDIR/x", None),  # resolved below: the rule's own folder
        ("echo hi > run.log", ["project/run.log"]),  # a file rule: the file, created empty
        ("echo hi > nodir/run.log", []),  # no folder to create it in
        ("ls > /dev/null", []),  # /dev/null is in every box
    ],
)
def test_writable_paths_are_what_allowed_write_units_name(
    world: tuple[Path, Path, Paths], cmd: str, writable: list[str] | None
) -> None:
    project, _, _ = world
    out = str(project.parent / "out")
    box = _box(world, cmd.replace("OUTDIR", out), BASE_RULES.replace("OUTDIR", out))
    if writable is None:
        assert box.writable == [str(project.parent / "out")]
    else:
        assert box.writable == [str(project.parent / w) for w in writable]
    if "run.log" in cmd and writable:
        assert (project / "run.log").read_text() == ""


@pytest.mark.parametrize(
    ("cmd", "mechanism", "network"),
    [
        ("kubectl get pods", "bwrap", True),  # network: allow
        ("kubectl get pods | cat", "bwrap", True),
        ("ls", "bwrap", False),
        ("make", "none", False),  # confine: false
        ("ls && make", "none", False),
    ],
)
def test_network_and_unconfined_rules(
    world: tuple[Path, Path, Paths], cmd: str, mechanism: str, network: bool
) -> None:
    box = _box(world, cmd)
    assert box.mechanism == mechanism
    assert box.network is network


def test_an_approved_command_runs_unconfined_unless_configured(
    world: tuple[Path, Path, Paths],
) -> None:
    assert _box(world, "ls", approved=True).mechanism == "none"
    rules = "confine_approved: true\n" + BASE_RULES
    assert _box(world, "ls", rules, approved=True).mechanism == "bwrap"


@pytest.mark.parametrize(
    "case",
    [
        ("required", "none", "ls", "require_approval", "confine: required"),
        ("auto", "none", "ls", "allow", None),
        ("required", "bwrap", "ls", "allow", None),
        ("auto", "bwrap", "# xguard: unconfined\nls", "require_approval", "unconfined"),
        ("auto", "bwrap", "cd src && make", "require_approval", "confine: false"),
        ("auto", "bwrap", "cd src && ls", "allow", None),
    ],
)
def test_escalation(world: tuple[Path, Path, Paths], case: tuple[str, ...]) -> None:
    setting, mechanism, cmd, expect, why = case
    project, home, _ = world
    f = project.parent / "rules.yaml"
    f.write_text(f"confine: {setting}\n" + BASE_RULES)
    rs = Ruleset(build_ruleset_dict(f, None))
    ctx = Context(cwd=str(project), home=str(home), confined=True)
    d = decide(parse(cmd), rs, ctx)
    confine.escalate(d, cmd, rs, mechanism, "no sandbox can start here")
    assert d.decision == expect
    if why:
        assert why in d.reasons[-1]


def test_if_confined_rules_count_only_in_the_box(world: tuple[Path, Path, Paths]) -> None:
    project, home, _ = world
    f = project.parent / "rules.yaml"
    f.write_text(BASE_RULES)
    rs = Ruleset(build_ruleset_dict(f, None))
    for confined, expect in ((True, "allow"), (False, "require_approval")):
        ctx = Context(cwd=str(project), home=str(home), confined=confined)
        assert decide(parse("cd src && ls"), rs, ctx).decision == expect


@pytest.mark.parametrize(
    ("mechanism", "stderr", "line"),
    [
        ("bwrap", "touch: cannot touch 'src/x': Read-only file system\n", "write src/x"),
        ("bwrap", "bash: line 1: out.txt: Read-only file system\n", "write out.txt"),
        (
            "bwrap",
            "mkdir: cannot create directory \u2018d\u2019: Read-only file system\n",
            "write d",
        ),
        ("bwrap", "OSError: [Errno 30] Read-only file system: 'a.txt'\n", "write a.txt"),
        ("bwrap", "curl: (6) Could not resolve host: example.com\n", "without network"),
        ("bwrap", "OSError: [Errno 101] Network is unreachable\n", "without network"),
        ("bwrap", "grep: x: No such file or directory\n", None),
        ("bwrap", "cat: f: Permission denied\n", None),  # bwrap says EROFS for its refusals
        ("landlock", "PermissionError: [Errno 13] Permission denied\n", "without network"),
        # Not the box's refusal: the user could not write there either.
        ("landlock", "cat: /nonexistent/dir/f: Permission denied\n", None),
    ],
)
def test_the_hint(tmp_path: Path, mechanism: str, stderr: str, line: str | None) -> None:
    box = confine.Box(mechanism, str(tmp_path))
    got = confine.hint(box, 1, stderr.encode())
    if line is None:
        assert got is None
    else:
        assert got is not None and line in got and got.startswith("xguard: this command ran")
        assert got.endswith("as the command's first line")
    assert confine.hint(box, 0, stderr.encode()) is None  # it succeeded: nothing to say


def test_the_hint_under_landlock_names_writes_the_user_could_make(tmp_path: Path) -> None:
    box = confine.Box("landlock", str(tmp_path))
    got = confine.hint(box, 1, b"PermissionError: [Errno 13] Permission denied: 'new.txt'\n")
    assert got is not None and "tried to write new.txt" in got
    box.masked_files = [str(tmp_path / "new.txt")]
    assert confine.hint(box, 1, b"cat: new.txt: Permission denied\n") is None


@pytest.mark.parametrize(
    "pat",
    [
        "*.pem",
        "id_rsa*",
        "*_history",
        ".env.*",
        "a?c",
        "a[bx]c",
        "a[!b]c",
        "*b*c",
        "x",
        "*",
        "[a-c]z",
    ],
)
@pytest.mark.parametrize(
    "name",
    ["a.pem", "id_rsa.pub", "bash_history", ".env.local", "abc", "axc", "adc", "bz", "x", ""],
)
def test_glob_match_is_fnmatch(pat: str, name: str) -> None:
    assert confine._glob_match(name, pat) == fnmatch.fnmatchcase(name, pat)


def test_seccomp_program_shape() -> None:
    prog = confine.seccomp_filter()
    assert len(prog) % 8 == 0 and len(prog) // 8 < 32
    # Every jump lands inside the program.
    n = len(prog) // 8
    for i in range(n):
        code = int.from_bytes(prog[i * 8 : i * 8 + 2], "little")
        jt, jf = prog[i * 8 + 2], prog[i * 8 + 3]
        if code == 0x15:
            assert i + 1 + max(jt, jf) < n


def test_support_is_kept_on_disk(tmp_path: Path) -> None:
    first = confine.support(str(tmp_path))
    kept = list(tmp_path.glob("confine-*.txt"))
    assert len(kept) == 1
    again = confine.support(str(tmp_path))
    assert (again.bwrap, again.abi, again.why) == (first.bwrap, first.abi, first.why)
    assert os.stat(kept[0]).st_mode & 0o777 <= 0o644


@pytest.mark.parametrize("named", ["/tmp/fakebwrap", "/home/u/bin/bwrap", "bwrap"])
def test_a_kept_answer_naming_another_bwrap_is_not_believed(tmp_path: Path, named: str) -> None:
    """The kept answer is in the user's own folder: a bwrap path other than
    the system one found now is probed again, never run as the box."""
    first = confine.support(str(tmp_path))
    (kept,) = tmp_path.glob("confine-*.txt")
    kept.write_text(f"v1\n{named}\n0\n\n\n")
    again = confine.support(str(tmp_path))
    assert again.bwrap == first.bwrap and again.bwrap != named


def test_the_kept_masks_follow_the_disk(world: tuple[Path, Path, Paths], tmp_path: Path) -> None:
    """The masks are kept with the mtimes of the folders read: a secret created
    anywhere the search looks is masked on the next command, one removed is not."""
    project, home, paths = world
    f = project.parent / "rules.yaml"
    f.write_text(BASE_RULES)
    rs = Ruleset(build_ruleset_dict(f, None))
    rs.data["key"] = "k"
    ctx = Context(cwd=str(project), home=str(home), confined=True)
    d = decide(parse("ls"), rs, ctx)
    cache = str(tmp_path / "cache")

    def masked() -> set[str]:
        box = confine.plan(d, rs, ctx, paths, "bwrap", cache_dir=cache)
        return {*box.masked_files, *box.masked_dirs}

    first = masked()
    assert str(project / "src/deep/er/.env") in first
    assert masked() == first  # from the kept answer
    (project / "src" / "deep" / ".env").write_text("new")
    (project / "src" / "deep" / "er" / ".env").unlink()
    (home / ".gnupg").mkdir()
    now = masked()
    assert str(project / "src/deep/.env") in now
    assert str(project / "src/deep/er/.env") not in now
    (home / ".aws").mkdir()
    f.write_text(BASE_RULES + '  - {path: "~/.aws/**", action: deny}\n')
    rs2 = Ruleset(build_ruleset_dict(f, None))
    rs2.data["key"] = "k2"  # new rules, new key
    box = confine.plan(decide(parse("ls"), rs2, ctx), rs2, ctx, paths, "bwrap", cache_dir=cache)
    assert str(home / ".aws") in box.masked_dirs


def test_the_kept_masks_survive_xguards_own_writes(tmp_path: Path) -> None:
    """xguard's state folder usually lies under the home folder the search
    walks; the audit log and the kept masks are written there on every command.
    That folder is masked whole, so it is not searched: the kept answer does
    not watch it (else every command would search again), and it still
    watches where secrets may appear."""
    home = tmp_path / "home"
    project = home / "project"
    (project / "src").mkdir(parents=True)
    (project / ".env").write_text("x")
    state = home / ".xguard"  # XGUARD_HOME=~/.xguard
    (state / "audit").mkdir(parents=True, mode=0o700)
    paths = Paths(state, state)
    f = tmp_path / "rules.yaml"
    f.write_text(BASE_RULES)
    rs = Ruleset(build_ruleset_dict(f, None))
    rs.data["key"] = "k"
    ctx = Context(cwd=str(project), home=str(home), confined=True)
    d = decide(parse("ls"), rs, ctx)
    cache = state / "cache"
    first = confine.plan(d, rs, ctx, paths, "bwrap", cache_dir=str(cache))
    assert str(project / ".env") in first.masked_files
    assert str(state) in first.masked_dirs
    (kept,) = cache.glob("confine-masks-*.txt")
    watched = [
        line[1:].split("\t", 1)[1] for line in kept.read_text().splitlines() if line[:1] == "D"
    ]
    assert str(project / "src") in watched and str(home) in watched
    assert not [w for w in watched if w == str(state) or w.startswith(str(state) + "/")]
    (state / "audit" / "audit.jsonl").write_text("{}\n")  # what a command leaves there
    again = confine.plan(d, rs, ctx, paths, "bwrap", cache_dir=str(cache))
    assert (again.masked_files, again.masked_dirs) == (first.masked_files, first.masked_dirs)
