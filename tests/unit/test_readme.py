"""The README's security claims cite tests; every cited test must exist, and
the README must open with the two commands CI and users run."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_cited_tests_exist() -> None:
    cited = set(re.findall(r"`(tests/[\w/]+\.py)(?:::(\w+))?`", README))
    assert cited, "the README cites no tests"
    for path, name in cited:
        f = ROOT / path
        assert f.exists(), path
        if name:
            assert re.search(rf"^def {name}\(", f.read_text(encoding="utf-8"), re.M), (
                f"{path}::{name}"
            )


def test_readme_opens_with_install_and_test_commands() -> None:
    block = README.split("```sh\n", 1)[1].split("```", 1)[0].strip().splitlines()
    assert len(block) == 2
    assert "pip install" in block[0] and "xguard" in block[0]
    assert block[1] == "bash .ci/run"
    assert "pytest" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
