"""Parser tables: command -> units (SPEC §3 "Units", "Fail closed").

Each row lists the command and write-path units expected, in order, as
"kind:text" (read paths that only might name a file are left out as noise),
and whether the parser itself must force require_approval (a floor).
"""

from __future__ import annotations

import gc

import pytest

from xguard.shell.parser import Unit, parse, parse_argv
from xguard.shell.words import dequote


def summary(units: list[Unit]) -> list[str]:
    out = []
    for u in units:
        if u.kind == "path" and (u.access == "read"):
            continue
        out.append(f"{u.kind}:{u.text}" if u.kind != "path" else f"write:{u.path}")
    return out


def floored(units: list[Unit]) -> bool:
    return any(u.floor for u in units)


CASES = [
    # lists, pipelines, groups, subshells
    ("git status", ["command:git status"], False),
    ("ls -la; rm -rf ~", ["command:ls -la", "command:rm -rf ~", "write:~"], False),
    (
        "head -n 5 README.md;chmod -R 777 ~",
        ["command:head -n 5 README.md", "command:chmod -R 777 ~", "write:~"],
        False,
    ),
    (
        "git status || rm -rf .git",
        ["command:git status", "command:rm -rf .git", "write:.git"],
        False,
    ),
    ("pwd & rm x", ["command:pwd", "command:rm x", "write:x"], False),
    ("cat a |& rm b", ["command:cat a", "command:rm b", "write:b"], False),
    ("( ( ( rm -rf ~ ) ) )", ["command:rm -rf ~", "write:~"], False),
    ("{ rm x; }", ["command:rm x", "write:x"], False),
    ("! rm x", ["command:rm x", "write:x"], False),
    # substitutions, also in double quotes, expansions and arithmetic
    ("echo $(rm -rf ~)", ["command:echo $(rm -rf ~)", "command:rm -rf ~", "write:~"], False),
    ('echo "$(rm x)"', ["command:echo $(rm x)", "command:rm x", "write:x"], False),
    (
        'echo "${HOME:+$(rm x)}"',
        ["command:echo ${HOME:+$(rm x)}", "command:rm x", "write:x"],
        False,
    ),
    ("echo `rm x`", ["command:echo `rm x`", "command:rm x", "write:x"], False),
    # arithmetic evaluates values as code: at least require_approval
    (
        "head -n $(( $(rm x; echo 1) )) f",
        [
            "input:arithmetic, indirection (${!x}), substring offset (${x:o}), array subscript,"
            " ${x@P} or ${x:=v}: bash evaluates a variable's value as code or assigns it",
            "command:head -n $(( $(rm x; echo 1) )) f",
            "command:rm x",
            "write:x",
            "command:echo 1",
        ],
        True,
    ),
    (
        "diff <(ls) <(rm x)",
        ["command:diff <(ls) <(rm x)", "command:ls", "command:rm x", "write:x"],
        False,
    ),
    ("ls > >(sh)", ["command:ls", "command:sh"], True),
    (
        "[[ -n $(rm x) ]] && ls",
        ["command:[[ -n $(rm x) ]]", "command:rm x", "write:x", "command:ls"],
        False,
    ),
    # heredocs: unquoted bodies are scanned, quoted ones are literal text
    ("cat <<EOF\n$(rm x)\nEOF", ["command:cat", "command:rm x", "write:x"], False),
    ("cat <<'EOF'\n$(rm x)\nEOF", ["command:cat"], False),
    ("cat <<'EOF' | sh\nrm -rf ~\nEOF", ["command:cat", "command:sh"], True),
    ("bash <<EOF\nrm x\nEOF", ["command:bash", "command:rm x", "write:x"], True),
    ("cat <<'EOF'; rm x\nhello\nEOF", None, True),  # tree-sitter errs here; see test_error_recovery
    # redirections
    ("echo hi > out.txt", ["write:out.txt", "command:echo hi"], False),
    ("ls 3>~/.bashrc", ["write:~/.bashrc", "command:ls"], False),
    ("> ~/.ssh/authorized_keys", ["write:~/.ssh/authorized_keys"], False),
    ("ls 2>/dev/null >&2", ["write:/dev/null", "command:ls"], False),
    ("ls &> log", ["write:log", "command:ls"], False),
    # quote removal as bash does it
    ("p''rintenv", ["command:printenv"], False),
    ("\\printenv", ["command:printenv"], False),
    ("$'\\x70rintenv'", ["command:printenv"], False),
    ('$"rm" x', ["command:rm x", "write:x"], False),
    ("r\\m x", ["command:rm x", "write:x"], False),
    ('"sh"red -u f', ["command:shred -u f", "write:f"], False),
    # tree-sitter splits `=="x"` into an operator token and a string; bash reads one word
    ('cat =="x y"', ["command:cat ==x y"], False),
    ("r\\\nm x", None, True),  # backslash-newline inside a word; see test_joined_word
    # wrappers, with their real option syntax
    ("nice -n 10 rm x", ["command:nice -n 10 rm x", "command:rm x", "write:x"], False),
    ("nice -10 rm x", ["command:nice -10 rm x", "command:rm x", "write:x"], False),
    (
        "timeout -k 1 -s KILL 60 rm x",
        ["command:timeout -k 1 -s KILL 60 rm x", "command:rm x", "write:x"],
        False,
    ),
    (
        "sudo -u postgres dropdb app",
        ["command:sudo -u postgres dropdb app", "command:dropdb app"],
        False,
    ),
    (
        "env -u HOME --chdir=/ rm x",
        ["command:env -u HOME --chdir=/ rm x", "command:rm x", "write:x"],
        False,
    ),
    (
        "env GIT_PAGER=x git log",
        ["command:env GIT_PAGER=x git log", "assign:GIT_PAGER", "command:git log"],
        False,
    ),
    ("exec -a ls rm x", ["command:exec -a ls rm x", "command:rm x", "write:x"], False),
    ("command -p rm x", ["command:command -p rm x", "command:rm x", "write:x"], False),
    (
        "builtin eval 'rm x'",
        ["command:builtin eval rm x", "command:eval rm x", "command:rm x", "write:x"],
        False,
    ),
    ("time rm x", ["command:time rm x", "command:rm x", "write:x"], False),
    (
        "xargs -I{} rm -rf {}",
        ["command:xargs -I{} rm -rf {}", "command:rm -rf {}", "write:{}"],
        False,
    ),
    (
        "xargs -n1 kubectl delete",
        ["command:xargs -n1 kubectl delete", "command:kubectl delete"],
        False,
    ),
    ("find . -exec rm {} +", ["command:find . -exec rm {} +", "command:rm {}", "write:{}"], False),
    ("find . -fprint out", ["command:find . -fprint out", "write:out"], False),
    (
        "bash -c 'ls; rm x'",
        ["command:bash -c ls; rm x", "command:ls", "command:rm x", "write:x"],
        False,
    ),
    ("bash -lc 'rm x'", ["command:bash -lc rm x", "command:rm x", "write:x"], False),
    (
        "sh -o pipefail -c 'rm x'",
        ["command:sh -o pipefail -c rm x", "command:rm x", "write:x"],
        False,
    ),
    ("su -c 'rm x' root", ["command:su -c rm x root", "command:rm x", "write:x"], False),
    ("ssh host rm x", ["command:ssh host rm x", "command:rm x", "write:x"], False),
    (
        "ssh -p 22 host 'ls; rm x'",
        ["command:ssh -p 22 host ls; rm x", "command:ls", "command:rm x", "write:x"],
        False,
    ),
    (
        "kubectl exec web-0 -- rm -rf /data",
        ["command:kubectl exec web-0 -- rm -rf /data", "command:rm -rf /data", "write:/data"],
        False,
    ),
    (
        "docker exec -u root c rm x",
        ["command:docker exec -u root c rm x", "command:rm x", "write:x"],
        False,
    ),
    ("watch rm x", ["command:watch rm x", "command:rm x", "write:x"], False),
    ("flock /tmp/l -c 'rm x'", ["command:flock /tmp/l -c rm x", "command:rm x", "write:x"], False),
    (
        "script -qc 'rm x' /dev/null",
        ["command:script -qc rm x /dev/null", "write:/dev/null", "command:rm x", "write:x"],
        False,
    ),
    # nested shell code is parsed after the text that holds it
    (
        "trap 'rm x' EXIT; ls",
        ["command:trap rm x EXIT", "command:ls", "command:rm x", "write:x"],
        False,
    ),
    # writers
    ("tee -a f1 f2", ["command:tee -a f1 f2", "write:f1", "write:f2"], False),
    ("cp a b", ["command:cp a b", "write:b"], False),
    ("cp -t dir a b", ["command:cp -t dir a b", "write:dir"], False),
    ("mv a b", ["command:mv a b", "write:b", "write:a"], False),
    (
        "dd if=/dev/zero of=/dev/sda",
        ["command:dd if=/dev/zero of=/dev/sda", "write:/dev/sda"],
        False,
    ),
    ("sed -i 's/a/b/' f", ["command:sed -i s/a/b/ f", "write:f"], False),
    ("sed -n 1p f", ["command:sed -n 1p f"], False),
    ("chmod 600 f", ["command:chmod 600 f", "write:f"], False),
    ("sort -o out in", ["command:sort -o out in", "write:out"], False),
    (
        "git log --output=/etc/passwd",
        ["command:git log --output=/etc/passwd", "write:/etc/passwd"],
        False,
    ),
    # assignments
    ("X=1 ls", ["assign:X=1", "command:ls"], False),
    ("X=$(rm x) ls", ["assign:X=$(rm x)", "command:ls", "command:rm x", "write:x"], False),
    ("export PATH=/tmp", ["assign:PATH=/tmp", "command:export PATH=/tmp"], True),
    # fail closed
    ("$X -rf ~", ["command:$X -rf ~"], True),
    ("${X:-rm} -rf ~", ["command:${X:-rm} -rf ~"], True),
    ("/???/r? -rf ~", ["command:/???/r? -rf ~"], True),
    ("{rm,-rf,~}", None, True),
    ("f() { rm x; }", ["function:function f", "command:rm x", "write:x"], True),
    ('eval "$(cat p)"', ["command:eval $(cat p)", "command:cat p"], True),
    ("source ./x.sh", ["command:source ./x.sh"], True),
    (". ./x.sh", ["command:. ./x.sh"], True),
    ("alias ls='rm -rf ~'", ["command:alias ls=rm -rf ~"], True),
    ("coproc X { rm x; }", None, True),
    (
        "(( a[$(rm x)] ))",
        [
            "input:((…)) arithmetic reads variables' values as code",
            "command:(( a[$(rm x)] ))",
            "command:rm x",
            "write:x",
        ],
        True,
    ),
    ("echo 'unterminated", None, True),
    ("ls\r; rm x", None, True),
    ("r\x00m x", None, True),
    ("l\u200bs", None, True),
    ("ｃａｔ f", None, True),
    ("gіt status", None, True),
    ("ls\u00a0-la", None, True),
]


@pytest.mark.parametrize(
    ("command", "expected", "floor"), CASES, ids=[repr(c[0])[:40] for c in CASES]
)
def test_units(command: str, expected: list[str] | None, floor: bool) -> None:
    units = parse(command)
    if expected is not None:
        assert summary(units) == expected
    assert floored(units) == floor, [(u.kind, u.text, u.why) for u in units if u.floor]


def test_error_recovery_still_finds_commands() -> None:
    # tree-sitter swallows `rm x` into an error node; the statement split finds it.
    units = parse("cat <<'EOF'; printenv\nhello\nEOF")
    assert "command:printenv" in summary(units)


def test_joined_word_is_read_as_bash_joins_it() -> None:
    units = parse("print\\\nenv")
    assert "command:printenv" in summary(units)
    assert any(u.floor for u in units)


def test_sql_units_from_psql() -> None:
    units = parse("psql -c 'SELECT 1; DROP TABLE users'")
    assert [u.text for u in units if u.kind == "sql"] == ["SELECT 1", "DROP TABLE users"]


def test_psql_meta_command_is_floored() -> None:
    # \! runs a program: the client's own unit is floored; \dt only reads and is left to the rules.
    units = parse("psql -c '\\! rm -rf ~'")
    (cmd,) = [u for u in units if u.kind == "command"]
    assert cmd.floor and any(u.kind == "sql" and u.meta for u in units)
    units = parse("psql -c '\\dt'")
    assert not any(u.floor for u in units)


def test_shell_version_runs_nothing() -> None:
    assert not any(u.floor for u in parse("bash --version"))
    assert any(u.floor for u in parse("bash -k -c 'ls X=1'"))


def test_assigning_expansion_is_floored() -> None:
    assert any(u.floor for u in parse("echo ${GLOBIGNORE:=*}; ls"))
    assert not any(u.floor for u in parse("echo ${HOME:-x}"))


def test_psql_heredoc_is_sql() -> None:
    units = parse("psql <<EOF\nSELECT 1;\nDROP TABLE users;\nEOF")
    assert [u.text for u in units if u.kind == "sql"] == ["SELECT 1", "DROP TABLE users"]


def test_over_64k_is_refused_without_parsing() -> None:
    units = parse("ls " + "a" * (64 * 1024))
    assert [u.kind for u in units] == ["input"] and units[0].floor


def test_deep_nesting_is_cheap_and_fails_closed() -> None:
    cmd = "echo " + "$(" * 3000 + "x" + ")" * 3000
    units = parse(cmd)
    assert any(u.floor for u in units)


def test_deeply_nested_bash_c_hits_depth_cap() -> None:
    # Each `eval` re-parses the rest as shell code: 40 levels, linear in size.
    units = parse("eval " * 40 + "rm x")
    assert any(u.floor and "nested" in " ".join(u.why) for u in units)


def test_parse_argv_does_not_reinterpret() -> None:
    # `xguard run -- echo '$(rm x)'`: the argument is text, never a substitution.
    units = parse_argv(["echo", "$(rm x)"])
    assert summary(units) == ["command:echo $(rm x)"]
    assert not any(u.floor for u in units)


def test_usr_bin_name_has_alt_text() -> None:
    (u,) = [u for u in parse("/usr/bin/printenv") if u.kind == "command"]
    assert u.alt_text == "printenv" and u.alt_trusted
    (v,) = [u for u in parse("./printenv") if u.kind == "command"]
    assert v.alt_text == "printenv" and not v.alt_trusted


@pytest.mark.parametrize(
    ("src", "value", "dynamic", "glob"),
    [
        (b"'a b'", "a b", False, False),
        (b'"a\\$b"', "a$b", False, False),
        (b"a\\ b", "a b", False, False),
        (b"$'\\x41\\101\\u00e9\\n'", "AAé\n", False, False),
        (b"$'\\cA'", "\x01", False, False),
        (b"*.py", "*.py", False, True),
        (b"'*.py'", "*.py", False, False),
        (b'"$x"', "$x", True, False),
    ],
)
def test_dequote(src: bytes, value: str, dynamic: bool, glob: bool) -> None:
    w = dequote(src)
    assert (w.value, w.dynamic, w.glob) == (value, dynamic, glob)


def test_cd_targets_become_path_bases() -> None:
    units = parse("cd ~/.ssh && cat id_rsa")
    (p,) = [u for u in units if u.kind == "path" and u.path == "id_rsa"]
    assert p.bases == ("~/.ssh",)


def test_cd_to_runtime_folder_floors_later_relative_paths() -> None:
    units = parse('cd "$D" && cat notes.txt')
    (p,) = [u for u in units if u.kind == "path" and u.path == "notes.txt"]
    assert p.floor


def test_lone_surrogate_never_crashes() -> None:
    for units in (parse("ls \ud800"), parse_argv(["ls", "\ud800"])):
        assert [u.kind for u in units] == ["input"] and units[0].floor


def test_no_collection_is_charged_to_a_parse() -> None:
    """The time budget is the parse's own CPU time: a garbage collection (which
    in a long-lived process can take longer than the budget) never runs inside
    it, and collection is back on afterwards."""
    started: list[str] = []

    def on_gc(phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            started.append(phase)

    threshold = gc.get_threshold()
    gc.set_threshold(1)  # without the pause, every allocation would collect
    gc.callbacks.append(on_gc)
    try:
        units = parse("eval " * 8 + "ls > /dev/null $(git log -1) <<EOF\nx\nEOF")
        during = len(started)
        run_argv = parse_argv(["ls", "-la"])
        during_argv = len(started) - during
    finally:
        gc.callbacks.remove(on_gc)
        gc.set_threshold(*threshold)
    assert units and run_argv
    assert (during, during_argv) == (0, 0)
    assert gc.isenabled()
