"""Any YAML text either loads as rules or is a config error naming file:line.

A rules file the loader cannot read must stop xguard with exit 78 and a line
to fix, never an internal error (exit 70): the shapes below each crashed the
loader once, and hypothesis looks for more, from rules-like structures with
YAML's sharp edges (flow mappings without a space after ':', empty values,
tags, anchors) and from mutations of the built-in defaults.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import xguard_exe
from xguard.errors import ConfigError
from xguard.policy.decide import Context, decide
from xguard.policy.rules import BUILTIN_RULES_S, Ruleset, build_ruleset_dict
from xguard.shell.parser import parse

# (rules file text, the line the error must name)
BAD_SHAPES = [
    ("rules:\n  - {pattern: ls, action: ,}\n", 2),
    ("rules:\n  - pattern: ls\n    action: ,\n", 3),
    ("rules:\n  - {pattern:ls, action: allow}\n", 2),
    ("rules:\n  - {pattern: ls, action:allow}\n", 2),
    ("default: !foo allow\n", 1),
    ("default: allow\nrules:\n  - {regex: 'a{99999999999}', action: deny}\n", 3),
    ("default: allow\nrules:\n  - {path: '[z-a]', action: deny}\n", 3),
    ("default: allow\nrules:\n  - {regex: [a], action: deny}\n", 3),
    ("default: allow\nrules:\n  - {regex: !!binary aGk=, action: deny}\n", 3),
]


@pytest.mark.parametrize(("text", "line"), BAD_SHAPES)
def test_bad_shapes_are_config_errors(text: str, line: int, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        build_ruleset_dict(rules, None)
    assert (e.value.file, e.value.line) == (str(rules), line), e.value.message


@pytest.mark.parametrize(("text", "line"), BAD_SHAPES[:3])
def test_bad_shapes_exit_78(text: str, line: int, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(text, encoding="utf-8")
    out = subprocess.run(
        [*xguard_exe(), "check", "--rules", str(rules), "-c", "ls"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 78, out.stderr
    assert out.stderr.startswith(f"xguard: config error: {rules}:{line}: "), out.stderr
    assert "\n" not in out.stderr.rstrip("\n"), "one line, no traceback"


def _load_or_config_error(tmp: Path, text: str) -> None:
    rules = tmp / "rules.yaml"
    rules.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        d = build_ruleset_dict(rules, None)
    except ConfigError as e:
        assert e.file == str(rules) and isinstance(e.line, int) and e.line >= 1, e.message
        return
    # It loaded: it must also decide without an internal error.
    rs = Ruleset({**d, "key": "x"})
    ctx = Context(cwd=str(tmp), home=str(tmp))
    for command in ("ls -la", "cat ~/.ssh/id_rsa > /etc/x", "psql -c 'DELETE FROM t'", "éx"):
        decide(parse(command), rs, ctx)


SCALARS = st.one_of(
    st.sampled_from(
        ["allow", "deny", "require_approval", "ls", "git status", "", ",", "~", "null", "1e400"]
    ),
    st.sampled_from(["'^ls'", '"[z-a]"', "'a{9999999999}'", "'(?'", "/etc/**", "'[!a]'", "'\\\\'"]),
    st.sampled_from(["!!binary aGk=", "!foo x", "&a x", "*a", "!!int x", "!!float .nan", ".inf"]),
    st.integers(-5, 10**30).map(str),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=6),
)
KEYS = st.sampled_from(
    [
        "pattern",
        "regex",
        "path",
        "action",
        "access",
        "dynamic",
        "notify",
        "reason",
        "caps",
        "baseline",
        "growth",
        "max_runtime",
        "read",
        "name",
        "x",
    ]
)
# After a key: the separators YAML accepts and the ones people type by mistake.
# tmp_path is only a folder to write into: reusing it across examples is fine.
TMP_OK = HealthCheck.function_scoped_fixture
COLONS = st.sampled_from([": ", ":", " : ", ":  ", ":\t"])


@st.composite
def flow_rule(draw: st.DrawFn) -> str:
    items = draw(st.lists(st.tuples(KEYS, COLONS, SCALARS), max_size=5))
    inner = ", ".join(f"{k}{c}{v}" for k, c, v in items)
    return "{" + inner + draw(st.sampled_from(["}", ",}", "", "]"]))


@st.composite
def rules_text(draw: st.DrawFn) -> str:
    head = draw(st.sampled_from(["", "default: allow\n", "default: deny\n", "default:allow\n"]))
    rules = draw(st.lists(flow_rule(), max_size=4))
    body = "".join(f"  - {r}\n" for r in rules)
    tail = draw(
        st.sampled_from(
            ["", "notify: {a: {}}\n", "env: {keep: [PATH], set: {A: 1}}\n", "tests: [{}]\n"]
        )
    )
    return head + ("rules:\n" + body if rules or draw(st.booleans()) else "") + tail


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=rules_text())
def test_rules_like_yaml_loads_or_names_a_line(text: str, tmp_path: Path) -> None:
    _load_or_config_error(tmp_path, text)


DEFAULTS = Path(BUILTIN_RULES_S).read_text(encoding="utf-8")
EDITS = st.sampled_from([*":,{}[]-!&*'\"#|>\n\t ?%@`\\", ": ", "\n  ", "\x00", "\ud800"])


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    edits=st.lists(
        st.tuples(st.integers(0, len(DEFAULTS)), st.integers(0, 3), EDITS), min_size=1, max_size=4
    )
)
def test_mutated_defaults_load_or_name_a_line(
    edits: list[tuple[int, int, str]], tmp_path: Path
) -> None:
    text = DEFAULTS
    for at, cut, put in edits:
        text = text[:at] + put + text[at + cut :]
    _load_or_config_error(tmp_path, text)
