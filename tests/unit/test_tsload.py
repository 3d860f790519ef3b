"""xguard/shell/tsload.py: the bash parser from the extension modules directly,
the same parser as the packages' own import, and the ordinary import where the
layout differs."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from xguard.shell import tsload

COMMANDS = [
    "ls > /dev/null",
    "echo $(git rev-parse HEAD)",
    "cat <<'EOF'\nx\nEOF\necho y",
    "diff <(sort a) <(sort b) | tee /dev/stderr",
    'for f in *; do echo "$f"; done',
    "if [[ -n $x ]]; then rm -rf ~; fi",
]


@pytest.mark.parametrize("text", COMMANDS)
def test_direct_parser_reads_as_the_packages_do(text: str) -> None:
    import tree_sitter
    import tree_sitter_bash

    ours = tsload.bash_parser().parse(text.encode())
    theirs = tree_sitter.Parser(tree_sitter.Language(tree_sitter_bash.language())).parse(
        text.encode()
    )
    assert str(ours.root_node) == str(theirs.root_node)
    # One set of types: a Node from either is the same class.
    assert type(ours.root_node) is tree_sitter.Node


def test_a_package_without_the_extension_is_not_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "xg_no_binding").mkdir()
    (tmp_path / "xg_no_binding" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert tsload._binding("xg_no_binding") is None
    assert tsload._binding("xg_not_installed_anywhere") is None


SHADOW = """\
# A grammar package laid out differently: no _binding file beside this one; it
# hands over to the installed package (as a vendored or renamed build would).
import sys

sys.path.pop(0)
del sys.modules[__name__]
import tree_sitter_bash as _real

sys.modules[__name__] = _real
"""


def test_other_layout_falls_back_to_the_ordinary_import(tmp_path: Path) -> None:
    (tmp_path / "tree_sitter_bash").mkdir()
    (tmp_path / "tree_sitter_bash" / "__init__.py").write_text(SHADOW)
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        from xguard.shell import tsload
        assert tsload._direct() is None
        tree = tsload.bash_parser().parse(b"ls > /dev/null")
        assert "file_redirect" in str(tree.root_node), tree.root_node
        # the ordinary import ran: the package's __init__ is loaded this time
        assert "tree_sitter_bash" in sys.modules and "tree_sitter" in sys.modules
        print("ok")
        """
    )
    p = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert p.stdout.strip() == "ok", p.stderr


STAND_INS = """\
import sys
from xguard.shell import tsload

parser = tsload.bash_parser()
assert "file_redirect" in str(parser.parse(b"ls > /dev/null").root_node)
# the extension started without the real `re` and `enum` ...
assert "re" not in sys.modules and "enum" not in sys.modules, sorted(sys.modules)
# ... and left no stand-in behind: the next import is the real module
import re
import enum
assert re.sub("a", "b", "aa") == "bb" and issubclass(enum.IntEnum, int)
# a query predicate compiles its pattern with the real `re` (the stand-in hands over)
import tree_sitter
import tree_sitter_bash

lang = tree_sitter.Language(tree_sitter_bash.language())
query = tree_sitter.Query(lang, '((command_name) @n (#match? @n "^l[s]$"))')
tree = parser.parse(b"ls; cat x; lsof")
found = tree_sitter.QueryCursor(query).captures(tree.root_node)
assert [n.text for n in found["n"]] == [b"ls"], found
assert int(tree_sitter.LogType.PARSE) == 0 and int(tree_sitter.LogType.LEX) == 1
print("ok")
"""


def test_the_extension_starts_with_stand_ins_and_leaves_none_behind() -> None:
    p = subprocess.run(
        [sys.executable, "-c", STAND_INS], capture_output=True, text=True, timeout=60, check=False
    )
    assert p.stdout.strip() == "ok", p.stderr
