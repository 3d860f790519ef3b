"""The ruleset a long-lived process keeps between commands (policy/rules.py
`_KEPT`): reused only while every file it came from is provably the same, and
never when a file changed so recently that the kernel's record of it cannot
tell two versions apart."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from xguard.paths import Paths
from xguard.policy import rules as rules_mod
from xguard.policy.decide import Context, decide
from xguard.policy.rules import load_ruleset
from xguard.shell.parser import parse
from xguard.util import RACY_NS

ALLOW = "default: require_approval\nrules:\n  - {pattern: 'ls', action: allow}\n"
DENY_ = "default: require_approval\nrules:\n  - {pattern: 'ls', action: deny }\n"
assert len(ALLOW) == len(DENY_)  # a change that keeps the size


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    rules_mod._KEPT.clear()
    yield
    rules_mod._KEPT.clear()


def _settle() -> None:
    """Past the racy window: the files' records now vouch for them."""
    time.sleep(RACY_NS / 1e9 + 0.1)


def verdict(paths: Paths, f: Path) -> str:
    rs = load_ruleset(paths, f)
    return decide(parse("ls"), rs, Context(cwd="/", home="/home/agent")).decision


def test_an_unchanged_file_is_read_once(tmp_path: Path) -> None:
    paths = Paths(tmp_path, tmp_path)
    f = tmp_path / "rules.yaml"
    f.write_text(ALLOW)
    _settle()
    load_ruleset(paths, f)  # from YAML: writes the cache
    first = load_ruleset(paths, f)  # from the cache: kept
    assert load_ruleset(paths, f) is first
    assert load_ruleset(paths, f, use_cache=False) is not first  # `rules check` reads anew


@pytest.mark.parametrize("how", ["in place, same size and times", "replaced by rename"])
def test_a_changed_file_is_read_again(tmp_path: Path, how: str) -> None:
    paths = Paths(tmp_path, tmp_path)
    f = tmp_path / "rules.yaml"
    f.write_text(ALLOW)
    _settle()
    assert verdict(paths, f) == "allow"
    assert verdict(paths, f) == "allow"
    assert rules_mod._KEPT, "kept after a read from the cache"
    st = f.stat()
    if how == "replaced by rename":
        new = tmp_path / "new.yaml"
        new.write_text(DENY_)
        os.utime(new, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.rename(new, f)
    else:
        with open(f, "r+") as fh:
            fh.write(DENY_)
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # the old times put back
    assert verdict(paths, f) == "deny"  # at once: within the racy window
    _settle()
    assert verdict(paths, f) == "deny"
    assert verdict(paths, f) == "deny"  # and kept as such


def test_a_config_file_that_appears_is_read(tmp_path: Path) -> None:
    paths = Paths(tmp_path, tmp_path)
    f = tmp_path / "rules.yaml"
    f.write_text(ALLOW)
    _settle()
    rs = load_ruleset(paths, f)
    rs = load_ruleset(paths, f)
    assert load_ruleset(paths, f) is rs
    Path(paths.config_file_s).write_text("confine: off\n")
    assert load_ruleset(paths, f).setting("confine") == "off"


def test_a_file_changed_within_the_last_second_is_never_kept(tmp_path: Path) -> None:
    paths = Paths(tmp_path, tmp_path)
    f = tmp_path / "rules.yaml"
    f.write_text(ALLOW)
    load_ruleset(paths, f)
    load_ruleset(paths, f)
    assert not rules_mod._KEPT
