"""The Landlock ruleset a warm worker keeps between commands (confine.py
`_RULESET`): used again only while the box asks for the same and every folder
whose entries it listed is unchanged; a new file in such a folder is readable
by the very next command, a masked one stays unreadable."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.test_confine import CANARY_ENV, MECHANISMS, Box
from xguard.gate import confine
from xguard.util import RACY_NS

pytestmark = pytest.mark.skipif("landlock" not in MECHANISMS, reason="no Landlock here")


@pytest.fixture
def keeping() -> Iterator[None]:
    confine.keep_rulesets()
    try:
        yield
    finally:
        confine._KEEP_RULESETS.clear()
        while confine._RULESET:
            os.close(confine._RULESET.pop()[-1])


def _settle() -> None:
    time.sleep(RACY_NS / 1e9 + 0.1)


def _kept_one(box: confine.Box) -> int:
    """A ruleset for the box, built once its folders (/tmp among them, which
    other processes write to) were still for a second, and so kept."""
    for _ in range(10):
        _settle()
        fd = box.landlock_ruleset()
        if confine._RULESET:
            return fd
        os.close(fd)
    raise AssertionError("no ruleset was kept: its folders never settled")


def _restricted(ruleset_fd: int, act: Callable[[], str]) -> str:
    """What `act` returns in a child restricted by the ruleset."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(r)
            confine._Enter(ruleset_fd)()
            os.write(w, act().encode())
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 4096):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return data.decode()


def _outcome(do: Callable[[], object]) -> str:
    try:
        got = do()
    except OSError as e:
        return f"errno {e.errno}"
    return got.strip() if isinstance(got, str) else "written"


def _reads(ruleset_fd: int, *files: Path) -> list[str]:
    """What a child restricted by the ruleset gets reading each file."""
    return _restricted(ruleset_fd, lambda: "\n".join(_outcome(f.read_text) for f in files)).split(
        "\n"
    )


def _writes(ruleset_fd: int, f: Path) -> str:
    """What a child restricted by the ruleset gets creating the file."""
    return _restricted(ruleset_fd, lambda: _outcome(lambda: f.write_text("x")))


def test_the_kept_ruleset_is_used_until_a_folder_it_listed_changes(
    tmp_path: Path, keeping: None
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / ".env").write_text(CANARY_ENV + "\n")
    (project / "a.txt").write_text("a\n")
    box = confine.Box("landlock", cwd=str(project))
    box.masked_files = [str(project / ".env")]
    fd = _kept_one(box)
    kept = confine._RULESET[0]
    assert str(project) in kept[1], kept[1]  # the folder holding the mask was listed
    again = box.landlock_ruleset()
    assert confine._RULESET[0] is kept
    assert _reads(again, project / "a.txt", project / ".env") == ["a", "errno 13"]
    os.close(fd)
    os.close(again)
    # A new entry in a listed folder: built anew, and the new file is readable.
    (project / "new.txt").write_text("new\n")
    fresh = box.landlock_ruleset()
    assert not confine._RULESET or confine._RULESET[0] is not kept
    assert _reads(fresh, project / "new.txt", project / ".env") == ["new", "errno 13"]
    os.close(fresh)
    # Another box (one more mask) never gets the kept one.
    os.close(_kept_one(box))
    kept = confine._RULESET[0]
    other = confine.Box("landlock", cwd=str(project))
    other.masked_files = [str(project / ".env"), str(project / "a.txt")]
    fd = other.landlock_ruleset()
    assert not confine._RULESET or confine._RULESET[0] is not kept
    assert _reads(fd, project / "a.txt") == ["errno 13"]
    os.close(fd)


def test_a_file_added_next_to_a_secret_is_readable_by_the_next_warm_command(
    tmp_path: Path, xguard_home: Path
) -> None:
    b = Box(tmp_path, xguard_home, "landlock", warm=True)
    _settle()
    for _ in range(4):  # every worker of the pool builds (and keeps) its ruleset
        r = b.xg("cat src/a.txt")
        assert r.returncode == 0 and r.stdout == "hello from a\n", r.stderr
    _settle()
    for _ in range(4):  # (by now the rulesets are kept: the folders settled)
        assert b.xg("cat src/a.txt").returncode == 0
    (b.project / "new.txt").write_text("fresh\n")
    for _ in range(6):  # whichever worker takes it
        r = b.xg("cat new.txt")
        assert (r.returncode, r.stdout) == (0, "fresh\n"), r.stderr
    r = b.xg("python3 -c " + repr("print(open('.e' + 'nv').read())"))
    assert CANARY_ENV not in r.stdout and r.returncode != 0


def test_a_writable_folder_renamed_away_takes_no_grant_along(tmp_path: Path, keeping: None) -> None:
    """Landlock grants the write by inode: a kept ruleset whose writable
    folder was renamed (to a name no rule lets be written) is not used."""
    project = tmp_path / "project"
    (project / "out" / "build").mkdir(parents=True)
    (project / ".env").write_text(CANARY_ENV + "\n")
    box = confine.Box("landlock", cwd=str(project))
    box.masked_files = [str(project / ".env")]
    box.writable = [str(project / "out" / "build")]
    fd = _kept_one(box)
    assert _writes(fd, project / "out" / "build" / "a") == "written"
    os.close(fd)
    os.rename(project / "out" / "build", project / "out" / "other")
    (project / "out" / "build").mkdir()
    fd = box.landlock_ruleset()
    assert _writes(fd, project / "out" / "other" / "b") == "errno 13"
    assert _writes(fd, project / "out" / "build" / "c") == "written"
    os.close(fd)
