"""The Landlock ruleset a warm worker keeps between commands (confine.py
`_RULESET`): used again only while the box asks for the same and every folder
whose entries it listed is unchanged; a new file in such a folder is readable
by the very next command, a masked one stays unreadable."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import xguard_exe
from tests.e2e.test_confine import CANARY_ENV, MECHANISMS, Box
from xguard.gate import confine

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
    time.sleep(confine._RACY_NS / 1e9 + 0.1)


def _reads(ruleset_fd: int, *files: Path) -> list[str]:
    """What a child restricted by the ruleset gets reading each file."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(r)
            confine._Enter(ruleset_fd)()
            out = []
            for f in files:
                try:
                    out.append(f.read_text().strip())
                except OSError as e:
                    out.append(f"errno {e.errno}")
            os.write(w, "\n".join(out).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 4096):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return data.decode().split("\n")


def test_the_kept_ruleset_is_used_until_a_folder_it_listed_changes(
    tmp_path: Path, keeping: None
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / ".env").write_text(CANARY_ENV + "\n")
    (project / "a.txt").write_text("a\n")
    box = confine.Box("landlock", cwd=str(project))
    box.masked_files = [str(project / ".env")]
    _settle()
    fd = box.landlock_ruleset()
    assert confine._RULESET, "a ruleset over settled folders is kept"
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
    _settle()
    box.landlock_ruleset()
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
    b = Box(tmp_path, xguard_home, "landlock")
    env = {**b.env(), "XGUARD_WARM": "1"}
    _settle()
    for _ in range(4):  # every worker of the pool builds (and keeps) its ruleset
        r = _xg(b, env, "cat src/a.txt")
        assert r.returncode == 0 and r.stdout == "hello from a\n", r.stderr
    _settle()
    for _ in range(4):  # (by now the rulesets are kept: the folders settled)
        assert _xg(b, env, "cat src/a.txt").returncode == 0
    (b.project / "new.txt").write_text("fresh\n")
    for _ in range(6):  # whichever worker takes it
        r = _xg(b, env, "cat new.txt")
        assert (r.returncode, r.stdout) == (0, "fresh\n"), r.stderr
    r = _xg(b, env, "python3 -c " + repr("print(open('.e' + 'nv').read())"))
    assert CANARY_ENV not in r.stdout and r.returncode != 0


def _xg(b: Box, env: dict[str, str], cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*xguard_exe(), "-c", cmd],
        env=env,
        cwd=b.project,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
