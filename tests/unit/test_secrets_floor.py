"""The built-in secrets floor (issue 11, policy/floor.py): a well-known
credential file in the agent's home is never `allow`, under any ruleset —
the shared fixture, the built-in defaults, the seed rules, and a file that
says `default: allow` and nothing else — however the path is spelled.
Its harmless neighbours stay as the rules decide them.

The home folder is a real one, holding every floor file, with the project
inside it (as an agent's usually is): globs, symlinks and recursive searches
are resolved on disk as the gate resolves them.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from tests.conftest import FIXTURES
from xguard.paths import Paths
from xguard.policy.decide import Context, Decision, decide, real_glob
from xguard.policy.floor import FLOOR, FLOOR_ID, floor_hits, floor_listing
from xguard.policy.rules import BUILTIN_RULES, Ruleset, load_ruleset
from xguard.shell.parser import parse

RULESETS = ["fixture", "defaults", "seed", "allow-all"]


def _concrete(glob: str) -> str:
    """A file a floor glob names, relative to $HOME (`~/.ssh/id_*` -> .ssh/id_x)."""
    return glob[2:].replace("/**", "/sub/file").replace("*", "x")


FLOOR_FILES = [_concrete(g) for g, _ in FLOOR if g.startswith("~/")]


@pytest.fixture(scope="module")
def where(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    home = tmp_path_factory.mktemp("floor") / "home" / "u"
    project = home / "project"
    (project / "src").mkdir(parents=True)
    (project / ".git").mkdir()
    for rel in ["README.md", ".git/config", ".git/HEAD", "src/config"]:
        (project / rel).write_text("hello\n")
    for rel in [*FLOOR_FILES, ".ssh/id_rsa", ".ssh/id_rsa.pub", ".gitignore", ".bashrc"]:
        p = home / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("token-123\n")
    (project / "notes").symlink_to(home / ".cache/huggingface/token")
    (project / "keylink").symlink_to(home / ".ssh")
    return project, home


@pytest.fixture(scope="module")
def rulesets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Ruleset]:
    state = tmp_path_factory.mktemp("xghome")
    allow_all = state / "allow-all.yaml"
    allow_all.write_text("default: allow\n")
    files = {
        "fixture": FIXTURES / "agent-readonly.yaml",
        "defaults": BUILTIN_RULES,
        "seed": FIXTURES / "seed-rules.yaml",
        "allow-all": allow_all,
    }
    missing = [str(p) for p in files.values() if not Path(p).exists()]
    if missing:
        pytest.skip(f"not beside this checkout: {missing}")
    return {k: load_ruleset(Paths(state, state), p, use_cache=False) for k, p in files.items()}


def _decide(rules: Ruleset, where: tuple[Path, Path], command: str) -> Decision:
    project, home = where
    ctx = Context(cwd=str(project), home=str(home), expand_glob=real_glob)
    return decide(parse(command), rules, ctx)


def _spellings(rel: str, home: Path) -> list[str]:
    return [
        f"cat ~/{rel}",
        f"cat {home}/{rel}",
        f"cat ../{rel}",
        f"cat ./../{rel}",
        f"cat ../project/src/../../{rel}",
        f"cat ~/project/../{rel}",
        f"head -n 5 ~/{rel}",
        f"tail -n 5 {home}/./{rel}",
        f"grep -h . ~/{rel}",
        f"cd .. && cat {rel}",
        f"cat README.md ~/{rel}",
    ]


@pytest.mark.parametrize("rules_name", RULESETS)
@pytest.mark.parametrize("rel", FLOOR_FILES)
def test_a_floor_file_is_never_allowed(
    rel: str, rules_name: str, rulesets: dict[str, Ruleset], where: tuple[Path, Path]
) -> None:
    rules = rulesets[rules_name]
    for command in _spellings(rel, where[1]):
        d = _decide(rules, where, command)
        assert d.decision != "allow", f"{rules_name}: {command!r} is allowed"


# Globs, links, recursive searches, writes and other ways of reaching them.
INDIRECT = [
    "cat ~/.ssh/*",
    "cat ~/.ssh/id_*",
    "cat ~/.aws/*",
    "cat ~/.config/gcloud/*/*",
    "cat ~/.cache/huggingface/*",
    "cat ~/.c*/huggingface/token",
    "cat notes",  # project/notes -> ~/.cache/huggingface/token
    "cat keylink/id_rsa",  # project/keylink -> ~/.ssh
    "grep -r token ~/.cache",
    "grep -rh token ~/.",
    "grep -r token ~",
    "grep -r '' ..",
    "grep -r token ../.config",
    "grep -rn TODO .",  # the project holds links to ~/.ssh and the token
    "grep -rn token ~/.azure",
    "cat $HOME/.netrc",
    "cat ${HOME}/.codex/auth.json",
    "echo x > ~/.ssh/id_rsa",
    "echo x >> ~/.gitconfig",
    "cat README.md > ~/.pgpass",
    "cp ~/.claude/.credentials.json /tmp/c",
    # The project's own git settings (extraheader tokens, credentials in URLs).
    "cat .git/config",
    "head -n 5 ./.git/config",
    "grep -h . src/../.git/config",
    "cat ~/project/.git/config",
    "cat .g*/config",
]


@pytest.mark.parametrize("rules_name", RULESETS)
@pytest.mark.parametrize("command", INDIRECT)
def test_indirect_reads_of_the_floor_are_never_allowed(
    command: str, rules_name: str, rulesets: dict[str, Ruleset], where: tuple[Path, Path]
) -> None:
    d = _decide(rulesets[rules_name], where, command)
    assert d.decision != "allow", f"{rules_name}: {command!r} is allowed"


def test_home_spelled_as_a_user_name(rulesets: dict[str, Ruleset], tmp_path: Path) -> None:
    """`~user/…` is the agent's own home when the user is the agent."""
    me = pwd.getpwuid(os.getuid())
    ctx = Context(cwd=str(tmp_path), home=me.pw_dir, expand_glob=real_glob)
    for name, rules in rulesets.items():
        for rel in FLOOR_FILES:
            d = decide(parse(f"cat ~{me.pw_name}/{rel}"), rules, ctx)
            assert d.decision != "allow", f"{name}: ~{me.pw_name}/{rel} is allowed"


# Neighbours of the floor files that are no secret: the rules decide them,
# and the floor never takes part.
BENIGN = [
    "cat ~/.ssh/id_rsa.pub",
    "cat ~/.ssh/*.pub",
    "ls ~/.ssh",
    "ls -la ~/.ssh",
    "ls ~/.aws",
    "cat ~/.gitignore",
    "cat ~/.bashrc",
    "cat README.md",
    "cat src/../README.md",
    "grep -rn TODO src",
    "ls ..",
    "cat ~/project/README.md",
    "echo hi > /dev/null",
    "cat .git/HEAD",
    "ls .git",
    "cat src/config",
]


@pytest.mark.parametrize("rules_name", RULESETS)
@pytest.mark.parametrize("command", BENIGN)
def test_benign_neighbours_are_not_floored(
    command: str, rules_name: str, rulesets: dict[str, Ruleset], where: tuple[Path, Path]
) -> None:
    d = _decide(rulesets[rules_name], where, command)
    assert FLOOR_ID not in d.rules, f"{rules_name}: {command!r}: {d.reasons}"
    # The fixture refuses all of ~/.ssh itself; `default: allow` allows the rest.
    if rules_name == "allow-all" or (rules_name == "fixture" and ".ssh/" not in command):
        assert d.decision == "allow", f"{rules_name}: {command!r}: {d.reasons}"


@pytest.mark.parametrize(
    ("command", "expect"),
    [
        # A rule's deny wins over the floor, and is the rule named.
        ("cat ~/.ssh/id_rsa", "deny"),
        ("cat ~/.aws/credentials", "deny"),
        # Where the fixture names nothing, the floor asks, and says why.
        ("cat ~/.cache/huggingface/token", "require_approval"),
        ("cat ~/.gitconfig", "require_approval"),
        ("cat ~/.claude/.credentials.json", "require_approval"),
        ("cat ~/.codex/auth.json", "require_approval"),
        ("cat ~/.gemini/oauth_creds.json", "require_approval"),
    ],
)
def test_the_floor_only_raises(
    command: str, expect: str, rulesets: dict[str, Ruleset], where: tuple[Path, Path]
) -> None:
    d = _decide(rulesets["fixture"], where, command)
    assert d.decision == expect, d.reasons
    if expect == "deny":
        assert FLOOR_ID not in d.rules
    else:
        assert [u.rule for u in d.units if u.decision != "allow"] == [FLOOR_ID]
        assert "built-in secrets floor" in d.reasons[0]


def test_an_allow_rule_does_not_lower_the_floor(tmp_path: Path, where: tuple[Path, Path]) -> None:
    f = tmp_path / "r.yaml"
    f.write_text(
        "default: allow\nrules:\n"
        '  - {path: "~/**", action: allow}\n'
        '  - {path: "~/.netrc", access: read, action: allow}\n'
        '  - {pattern: "cat", action: allow}\n'
    )
    rules = load_ruleset(Paths(tmp_path, tmp_path), f, use_cache=False)
    for rel in FLOOR_FILES:
        assert _decide(rules, where, f"cat ~/{rel}").decision == "require_approval", rel


def test_paths_elsewhere_cost_a_string_comparison() -> None:
    """No floor rule is compiled for a path outside the floor's folders (the
    hot path: `cat README.md` must not import re)."""
    assert (
        floor_hits(["/home/u/project/README.md", "/etc/hosts", "/home/u/.bashrc"], "/home/u") == []
    )
    assert floor_hits(["/home/u/.ssh/id_rsa.pub"], "/home/u") == []
    assert [r.id for r in floor_hits(["/home/u/.ssh/id_rsa"], "/home/u")] == [FLOOR_ID]


def test_the_listing_names_every_file_under_home() -> None:
    listing = floor_listing("/home/u/")
    assert "/home/u/.cache/huggingface/token" in listing
    assert all(p.startswith(("/home/u/.", "**/")) for p in listing)
    assert len(listing) == len(FLOOR)
