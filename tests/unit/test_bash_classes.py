"""Classes of misreading: where the static reading and bash disagreed.

Each table is one class (issue 11, part 1), fixed at its root in the shell
reading or the policy, not case by case. Rows are decided in-process under
the built-in defaults in a folder laid out like a project with a fake home;
where a row's meaning depends on what a real shell does, a test runs real
bash (and dash) to prove that it does.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from xguard.paths import Paths
from xguard.policy.decide import Context, decide, real_glob
from xguard.policy.rules import BUILTIN_RULES, Ruleset, load_ruleset
from xguard.shell.heredoc import scan
from xguard.shell.parser import parse
from xguard.shell.posix import bash_only

ALLOW, REQUIRE, DENY = "allow", "require_approval", "deny"
NOT_ALLOW = "not allow"  # require_approval or deny: either is right


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> Ruleset:
    state = tmp_path_factory.mktemp("xghome")
    return load_ruleset(Paths(state, state), BUILTIN_RULES, use_cache=False)


@pytest.fixture(scope="module")
def where(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A project inside a fake home that holds the usual secrets."""
    home = tmp_path_factory.mktemp("home")
    project = home / "project"
    for rel in ("README.md", "a", "b", "f", "db", "src/app.py", ".git/config", ".env"):
        p = project / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("x\n", encoding="utf-8")
    for rel in (".ssh/id_rsa", ".ssh/id_rsa.pub", ".ssh/known_hosts", ".gitconfig"):
        p = home / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("secret\n", encoding="utf-8")
    clean = home / "clean"
    (clean / "sub").mkdir(parents=True)
    (clean / "sub" / "notes.txt").write_text("x\n", encoding="utf-8")
    return project, home


def _decide(command: str, rules: Ruleset, where: tuple[Path, Path], **ctx: Any) -> str:
    project, home = where
    c = Context(cwd=str(project), home=str(home), expand_glob=real_glob, **ctx)
    d = decide(parse(command), rules, c)
    return d.decision


def _check(command: str, expect: str, rules: Ruleset, where: tuple[Path, Path]) -> None:
    got = _decide(command, rules, where)
    if expect == NOT_ALLOW:
        assert got != ALLOW, command
    else:
        assert got == expect, command


def _rows(rows: list[tuple[str, str]]) -> list[object]:
    return [pytest.param(c, e, id=c[:60]) for c, e in rows]


# ---------------------------------------------------------------------------
# Here-documents end at the first line equal to the delimiter after quote
# removal; the text after that line is commands.
HEREDOC = [
    ('cat <<E"O"F\nhi\nEOF\ntouch pwned\nE"O"F', NOT_ALLOW),
    ("cat <<$'EOF'\nhi\nEOF\nrm -rf ~\n$'EOF'", DENY),
    ("cat <<E'O'F\nhi\nEOF\ncat ~/.ssh/id_rsa\nE'O'F", DENY),
    ('cat <<"E"OF\nx\nEOF\ntouch pwned\n"E"OF', NOT_ALLOW),
    ("cat <<-E\\OF\n\tx\n\tEOF\ntouch pwned\nE\\OF", NOT_ALLOW),
    ("cat <<'EOF'\nhi\nEOF\ngit status", ALLOW),
    ('cat <<"EOF"\nhi\n"EOF"\nEOF', ALLOW),
    ("cat <<-EOF\n\thi\n\tEOF\nls", ALLOW),
    ("cat <<EOF\nhi $(date)\nEOF\necho $((1<<2))", ALLOW),
    ("echo $((1<<2))\nls", ALLOW),
]


@pytest.mark.parametrize(("command", "expect"), _rows(HEREDOC))
def test_heredoc(command: str, expect: str, rules: Ruleset, where: tuple[Path, Path]) -> None:
    _check(command, expect, rules, where)


@pytest.mark.parametrize(
    "command", [c for c, e in HEREDOC if "touch pwned" in c], ids=lambda c: c[:30]
)
def test_heredoc_bash_runs_what_follows_the_terminator(command: str, tmp_path: Path) -> None:
    """Real bash runs the line after the quote-removed terminator as a command."""
    subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, check=False)
    assert (tmp_path / "pwned").exists()
    docs = scan(command.encode())
    assert docs and docs[0].terminated and command.encode()[docs[0].end :].startswith(b"\ntouch")


# ---------------------------------------------------------------------------
# A line that begins with a backslash is a new command to bash; tree-sitter
# glued it onto the previous command as an argument (`echo a` NL `\\rm x`),
# the class behind `<<\\EOF` bodies whose `\\EOF` line follows a command.
LINE_START_BACKSLASH = [
    ("echo a\n\\touch pwned", NOT_ALLOW),
    ("echo a\n\n\\touch pwned", NOT_ALLOW),
    ("echo a # note\n\\touch pwned", NOT_ALLOW),
    ("ls > /dev/null\n\\touch pwned", NOT_ALLOW),
    ('ls\n\\t"ouch" pwned', NOT_ALLOW),
    ("f() { echo\n\\touch pwned; }; f", NOT_ALLOW),
    ("echo a\n\\rm -rf ~", DENY),
    ("tree <<\\EOF\nhello\nEOF\ntac .git/config\n\\EOF", NOT_ALLOW),
    ("tree <<\\EOF\nhello\nEOF\ngrep -r '' ..\n\\EOF", NOT_ALLOW),
    ("tree <<\\EOF\nhello\nEOF\ncat < /dev/tcp/127.0.0.1/9\n\\EOF", NOT_ALLOW),
    ("echo a\n\\ls", ALLOW),
    ("echo a \\\n\\ls", ALLOW),
    ("echo 'a\n\\touch pwned'", ALLOW),
    ("cat <<\\EOF\nx\n\\touch pwned\nEOF", ALLOW),
]


@pytest.mark.parametrize(("command", "expect"), _rows(LINE_START_BACKSLASH))
def test_line_start_backslash(
    command: str, expect: str, rules: Ruleset, where: tuple[Path, Path]
) -> None:
    _check(command, expect, rules, where)


@pytest.mark.parametrize(
    ("command", "expect"), _rows([(c, e) for c, e in LINE_START_BACKSLASH if "pwned" in c])
)
def test_line_start_backslash_under_bash(command: str, expect: str, tmp_path: Path) -> None:
    """Real bash runs a backslash-led line as its own command (the rows that
    are not allowed); inside quotes or a here-document body it is text."""
    subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, check=False)
    assert (tmp_path / "pwned").exists() == (expect != ALLOW)


# ---------------------------------------------------------------------------
# `sh -c` runs under /bin/sh, which is dash on Debian: where the string leaves
# the POSIX subset, bash's reading is not what runs.
DASH = [
    ("sh -c \"echo $'a\\\\' ; touch pwned ; \\\\''\"", NOT_ALLOW),
    ("sh -c 'ls &> /dev/null'", NOT_ALLOW),
    ("dash -c '[[ -f x ]] && ls'", NOT_ALLOW),
    ("sh -c 'echo {a,b}'", NOT_ALLOW),
    ("sh -c 'cat <(ls)'", NOT_ALLOW),
    ("sh -c 'echo ${x:1}'", NOT_ALLOW),
    ("watch 'ls &> /dev/null'", NOT_ALLOW),
    ("sh -c 'git status'", ALLOW),
    ("sh -c 'ls -la | wc -l'", ALLOW),
    ("bash -c 'ls &> /dev/null'", ALLOW),
]


@pytest.mark.parametrize(("command", "expect"), _rows(DASH))
def test_posix_shell(command: str, expect: str, rules: Ruleset, where: tuple[Path, Path]) -> None:
    _check(command, expect, rules, where)


DASH_DIFFERS = [
    "echo $'\\x41'",
    "echo a &> /dev/null; echo b",
    "echo {a,b}",
    "x=abc; echo ${x:1}",
    "[[ a == a ]] && echo yes",
]
DASH_SAME = ["echo a b | wc -w", "x=1; echo \"$x\" 'q'", "for i in 1 2; do echo $i; done"]


@pytest.mark.skipif(shutil.which("dash") is None, reason="needs dash (apt-get install dash)")
@pytest.mark.parametrize("text", DASH_DIFFERS + DASH_SAME)
def test_bash_only_agrees_with_real_dash(text: str, tmp_path: Path) -> None:
    """bash_only() flags exactly the strings real dash and bash run differently."""

    def run(sh: str) -> tuple[str, bool, int]:
        p = subprocess.run(
            [sh, "-c", text], cwd=tmp_path, capture_output=True, text=True, check=False
        )
        return p.stdout, p.stderr != "", p.returncode

    differs = run("bash") != run("dash")
    assert differs == (text in DASH_DIFFERS)
    assert (bash_only(text) is not None) == differs


# ---------------------------------------------------------------------------
# Values evaluated at run time: arithmetic, indirection and substring offsets
# evaluate a variable's value as code, however the value was set.
EVAL = [
    ("for x in 'a[$(id)]'; do echo ${!x}; done", REQUIRE),
    ("x='a[$(id)]'; echo ${y:x}", REQUIRE),
    ("echo ${@:x}", REQUIRE),
    ("echo ${x: -1}", REQUIRE),
    ("echo ${a[i]}", REQUIRE),
    ("echo $((x+1))", REQUIRE),
    ("x=${!y}", REQUIRE),
    ("for f in ${!p}; do ls; done", REQUIRE),
    ("cat > ${!x}", REQUIRE),
    ("a[i]=1", REQUIRE),
    ("for ((i=0;i<n;i++)); do ls; done", REQUIRE),
    ("((x))", REQUIRE),
    ("[[ x -eq 1 ]]", REQUIRE),
    ("echo ${x:=a}", REQUIRE),
    ("echo ${!x[1]}", REQUIRE),
    ("echo ${!a[@]:1}", REQUIRE),
    # An offset after a literal subscript is arithmetic too (bash 5.2 runs the
    # value's subscript): `[@]` must not end the reading.
    ("a=(1 2); x='b[$(id)]'; echo ${a[@]:x}", REQUIRE),
    ("for x in 'b[$(id)]'; do echo ${BASH_VERSINFO[@]:x}; done", REQUIRE),
    ("echo ${a[*]:x:1}", REQUIRE),
    ("echo ${a[0]:x}", REQUIRE),
    ("echo ${a[1]=v}", REQUIRE),
    ("echo $((1+2))", ALLOW),
    ('for i in "${!arr[@]}"; do echo $i; done', ALLOW),  # an array's keys
    ("echo ${!BASH*}", ALLOW),  # names with a prefix
    ("echo ${x:-d}", ALLOW),
    ("echo ${#x}", ALLOW),
    ("echo ${a[0]}", ALLOW),
    ("echo ${a[@]}", ALLOW),
    ("echo ${#a[@]}", ALLOW),
    ('echo "${a[@]:+x}"', ALLOW),
    ("echo ${a[0]:-d}", ALLOW),
    ("echo ${a[@]/x/y}", ALLOW),
]


@pytest.mark.parametrize(("command", "expect"), _rows(EVAL))
def test_evaluated_values(
    command: str, expect: str, rules: Ruleset, where: tuple[Path, Path]
) -> None:
    _check(command, expect, rules, where)


@pytest.mark.parametrize(
    "cmd",
    [
        "for x in 'a[$(touch pwned)]'; do echo ${!x}; done",
        "for x in 'b[$(touch pwned)]'; do echo ${BASH_VERSINFO[@]:x}; done",
    ],
)
def test_indirection_runs_code_under_bash(cmd: str, tmp_path: Path) -> None:
    """The reason for the EVAL rows: a literal for-list value, expanded
    indirectly or as an array's offset, runs a command."""
    subprocess.run(["bash", "-c", cmd], cwd=tmp_path, capture_output=True, check=False)
    assert (tmp_path / "pwned").exists()


# ---------------------------------------------------------------------------
# Substitutions tree-sitter-bash reads as text: inside the operand of `${…}`
# (`${x:-`cmd`}`, `${x#$(cmd)}`, `${x^<(cmd)}`) it files them as a plain word
# or regex, and inside backquotes bash unescapes \` \$ \\ before it reads the
# body (`echo \`touch x\``, `cat \\.env`). Every NOT_ALLOW row with `pwned`
# creates it under bash.
HIDDEN_SUBST = [
    ("echo ${x:-`touch pwned`}", NOT_ALLOW),
    ('echo "${x:-`touch pwned`}"', NOT_ALLOW),
    ("echo ${x-`touch pwned`}", NOT_ALLOW),
    ("echo ${PWD:+`touch pwned`}", NOT_ALLOW),
    ("echo ${PWD#$(touch pwned)}", NOT_ALLOW),
    ("echo ${PWD%%$(touch pwned)}", NOT_ALLOW),
    ("echo ${PWD^$(touch pwned)}", NOT_ALLOW),
    ("echo ${PWD,,`touch pwned`}", NOT_ALLOW),
    ("echo ${PWD/#a/`touch pwned`}", NOT_ALLOW),
    ("echo ${x:-<(touch pwned)}", NOT_ALLOW),
    ("echo \"${x:-'`touch pwned`'}\"", NOT_ALLOW),  # '…' is text inside "…"
    ("cat <<EOF\n${x:-`touch pwned`}\nEOF", NOT_ALLOW),
    ("echo `echo \\`touch pwned\\``", NOT_ALLOW),
    ('echo "`echo \\`touch pwned\\``"', NOT_ALLOW),
    ("x=`echo \\`touch pwned\\``", NOT_ALLOW),
    ("echo ${x:-`echo \\`touch pwned\\``}", NOT_ALLOW),
    ("echo `cat \\\\.env`", NOT_ALLOW),  # bash reads .env
    ("f=.env; echo `cat \\$f`", NOT_ALLOW),
    ("echo ${x:-default}", ALLOW),
    ("echo ${x#*/}", ALLOW),
    ('echo "${f%.py}"', ALLOW),
    ("echo ${x:-$HOME}", ALLOW),
    ("echo `git rev-parse HEAD`", ALLOW),
    ('echo "`git status --short`"', ALLOW),
]


@pytest.mark.parametrize(("command", "expect"), _rows(HIDDEN_SUBST))
def test_hidden_substitutions(
    command: str, expect: str, rules: Ruleset, where: tuple[Path, Path]
) -> None:
    _check(command, expect, rules, where)


@pytest.mark.parametrize(
    "command", [c for c, e in HIDDEN_SUBST if "pwned" in c], ids=lambda c: c[:40]
)
def test_hidden_substitutions_run_under_bash(command: str, tmp_path: Path) -> None:
    subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, check=False)
    assert (tmp_path / "pwned").exists()


# ---------------------------------------------------------------------------
# Units that were never created.
UNITS = [
    ("echo hi > $(echo f)", REQUIRE),
    ("echo hi > `echo f`", REQUIRE),
    ('echo hi >"$(echo f)"', REQUIRE),
    ("cat < $(echo f)", REQUIRE),
    ("xxd -r - out", REQUIRE),
    ("xxd -r x.hex out", REQUIRE),
    ("base64 -o out f", REQUIRE),
    ("shuf -o out f", REQUIRE),
    ("iconv -f utf8 -t ascii -o out f", REQUIRE),
    ("script -c ls", REQUIRE),
    ("xxd f", ALLOW),
    ("xxd -r -", ALLOW),
    ("sort a > >(cat)", ALLOW),
]


@pytest.mark.parametrize(("command", "expect"), _rows(UNITS))
def test_units_never_created(
    command: str, expect: str, rules: Ruleset, where: tuple[Path, Path]
) -> None:
    _check(command, expect, rules, where)


# ---------------------------------------------------------------------------
# Programs inside arguments: awk programs and sed scripts are read by lexers.
PROGRAMS = [
    ('awk \'{print "}" > "/tmp/x"}\' f', REQUIRE),
    ('awk \'BEGIN{print "x;" > "/tmp/x"}\'', REQUIRE),
    ("awk 'BEGIN{system(\"id\")}'", REQUIRE),
    ("awk '{print | \"sh\"}' f", REQUIRE),
    ("awk '{print ENVIRON[\"TOKEN\"]}' f", REQUIRE),
    ("awk -f prog.awk f", REQUIRE),
    ("sed 's/a/b/w /tmp/x' f", REQUIRE),
    ("sed 's/a/b/ w /tmp/x' f", REQUIRE),
    ("sed -n 'w /tmp/x' f", REQUIRE),
    ("sed -n '/a/,/b/p;s/x/y/gw out' f", REQUIRE),
    ("sed 'e id' f", REQUIRE),
    ("sed 's/a/id/e' f", REQUIRE),
    ("sed 'r ~/.ssh/id_rsa' f", DENY),
    ("sed '1R /etc/hosts' f", REQUIRE),
    ("sed -f x.sed f", REQUIRE),
    ("sed 'W /tmp/x' f", REQUIRE),
    ("find . -name x -exec rm {} ;", REQUIRE),
    ("find . -fprint /tmp/x", REQUIRE),
    ("find . -delete", REQUIRE),
    ("find . -exec sh -c 'echo $\\'a\\'' \\;", REQUIRE),
    ("git -c core.pager='sh -c id' log", REQUIRE),
    ("git --config-env=core.pager=X log", REQUIRE),
    ("git -c alias.st='!id' st", REQUIRE),
    ("awk '{print $1}' f", ALLOW),
    ("awk -F: '{ if ($3 > 100) print $1 }' f", ALLOW),
    ("awk '/a\\/b/ {n++} END {print n}' f", ALLOW),
    ("awk '{ s += $2 / 2 } END { print s }' f", ALLOW),
    ("sed -n '1,5p' f", ALLOW),
    ("sed 's/}/x/g;s#a#b#' f", ALLOW),
    ("sed -e 's/a/b/' -e '/x/d' f", ALLOW),
    ("sed 's/w/W/' f", ALLOW),
    ("sed '1!G;h;$!d' f", ALLOW),
    ("sed ':a;N;$!ba;s/\\n/ /g' f", ALLOW),
]


@pytest.mark.parametrize(("command", "expect"), _rows(PROGRAMS))
def test_programs_in_arguments(
    command: str, expect: str, rules: Ruleset, where: tuple[Path, Path]
) -> None:
    _check(command, expect, rules, where)


# The awk lexer must split statements, regex literals and divisions as awk
# does: one slash read the wrong way opens a string the program does not have,
# and the print redirect after it is hidden (the `}` in "}" also hides it from
# the defaults' regex rule). Every NOT_ALLOW row writes `pwned` under gawk.
AWK_LEXER = [
    ("awk '{print $1,\n$0 > \"pwned\"}' f", NOT_ALLOW),  # newline after a comma
    ("awk '{print $0 \\\n> \"pwned\"}' f", NOT_ALLOW),  # backslash-newline
    ("awk '{print $1, # c\n$0 > \"pwned\"}' f", NOT_ALLOW),
    ("awk '{print $1 &&\n$2 > \"pwned\"}' f", NOT_ALLOW),
    ('awk \'{ y = x\n/"/ ; print "}" > "pwned" }\' f', NOT_ALLOW),  # NL ends `y = x`
    ('awk \'BEGIN{x++ / 2; print "}" > "pwned"; y = 1 / 1}\'', NOT_ALLOW),  # postfix ++
    ('awk \'BEGIN{x-- / 2; print "}" > "pwned"; y = 1 / 1}\'', NOT_ALLOW),
    ('awk \'{ y = /[^]/]/ / 2; print "}" > "pwned"; x = 1 / 1 }\' f', NOT_ALLOW),
    ('awk \'{ if (x) /"/; y = 4 / 2; print "}" > "pwned"; z = 1 / 1 }\' f', NOT_ALLOW),
    ('awk \'{ if (x) y = 1; else /"/ ; print "}" > "pwned" }\' f', NOT_ALLOW),
    ('awk \'{ print "}" > "pwned"; exit /"/ }\' f', NOT_ALLOW),
    ("awk '{print $1\nif ($2 > 1) n++}' f", ALLOW),
    ("awk 'NR>1 {s += $3}\nEND {print s}' f", ALLOW),
    ("awk '{print $1,\n$2}\n$3 > 5 {n++}' f", ALLOW),
    ("awk '{ n++ } /x/ { m++ } END { print n / 2, m }' f", ALLOW),
    ("awk '{ a = ++n / 2; print a }' f", ALLOW),
    ("awk '/[[:alpha:]]/ { n++ } END { print n / 2 }' f", ALLOW),
    ("awk '{ if (NF > 2) print $1 / 2 }' f", ALLOW),
    ("awk -F, '$3 ~ /^[0-9]+$/ { t += $3 } END { printf \"%.2f\\n\", t / NR }' f", ALLOW),
]


@pytest.mark.parametrize(("command", "expect"), _rows(AWK_LEXER))
def test_awk_lexer(command: str, expect: str, rules: Ruleset, where: tuple[Path, Path]) -> None:
    _check(command, expect, rules, where)


@pytest.mark.skipif(shutil.which("gawk") is None, reason="needs gawk")
@pytest.mark.parametrize("command", [c for c, e in AWK_LEXER if e != ALLOW], ids=lambda c: c[:40])
def test_awk_lexer_rows_write_under_gawk(command: str, tmp_path: Path) -> None:
    """Each refused AWK_LEXER row really writes its file under gawk."""
    (tmp_path / "f").write_text("a b\n", encoding="utf-8")
    cmd = "gawk" + command[len("awk") :]
    subprocess.run(["bash", "-c", cmd], cwd=tmp_path, capture_output=True, check=False)
    assert (tmp_path / "pwned").exists()


def test_sed_write_flag_after_a_blank_writes_under_real_sed(tmp_path: Path) -> None:
    """GNU sed really writes with `s/a/b/ w FILE` (a blank before the flag)."""
    (tmp_path / "f").write_text("a\n", encoding="utf-8")
    subprocess.run(["sed", "s/a/b/ w out", "f"], cwd=tmp_path, capture_output=True, check=True)
    assert (tmp_path / "out").read_text(encoding="utf-8") == "b\n"


# ---------------------------------------------------------------------------
# Paths: glued option values, `.`/`..`/`~` before the recursive check, git
# pathspecs, and a recursive search of a folder that holds secrets.
PATHS = [
    ("grep -f~/.ssh/id_rsa x", DENY),
    ("grep -f.env x", DENY),
    ("sort -T/tmp -o/dev/null ~/.aws/credentials", DENY),
    ("cat --file=.env", DENY),
    ("grep -r x ~/./", REQUIRE),
    ("grep -r x ~/../$(basename ~)", NOT_ALLOW),
    ("grep -rn x ..", REQUIRE),
    ("grep -Rn x ~/.ssh/..", REQUIRE),
    ("grep --directories=recurse x ~", REQUIRE),
    ("grep -rn TODO .", REQUIRE),  # the project holds .env: grep -r reads it
    ("rg --hidden TODO", REQUIRE),
    ("rg -uu TODO", REQUIRE),
    ("diff -r ~/.ssh ~/clean", DENY),
    ("git diff ~/.ssh /dev/null", DENY),
    ("git log -p -- '.e*'", DENY),
    ("git diff -- ':(top).env'", DENY),
    ("git show HEAD:.env", DENY),
    ("rg TODO", ALLOW),  # rg skips hidden files: .env is not read
    ("rg TODO src", ALLOW),
    ("grep -rn TODO src", ALLOW),
    ("grep -rn x ~/clean", ALLOW),
    ("git log -p -- 'src/*.py'", ALLOW),
]


@pytest.mark.parametrize(("command", "expect"), _rows(PATHS))
def test_paths(command: str, expect: str, rules: Ruleset, where: tuple[Path, Path]) -> None:
    _check(command, expect, rules, where)


def test_listed_files_that_link_to_a_secret(
    tmp_path: Path, rules: Ruleset, where: tuple[Path, Path]
) -> None:
    """A tracked symlink to ~/.ssh/id_rsa: `cat $(git ls-files)` prints the key."""
    _, home = where
    project = tmp_path / "repo"
    project.mkdir()
    (project / "README.md").write_text("x\n", encoding="utf-8")
    c = Context(cwd=str(project), home=str(home), expand_glob=real_glob)
    assert decide(parse("cat $(git ls-files)"), rules, c).decision == ALLOW
    (project / "k").symlink_to(home / ".ssh" / "id_rsa")
    assert decide(parse("cat $(git ls-files)"), rules, c).decision == REQUIRE
    assert decide(parse("grep -R x ."), rules, c).decision == REQUIRE


# ---------------------------------------------------------------------------
# Which program runs: a name is decided on the program the agent's PATH
# runs; an allow for `ls` does not cover an `ls` the agent could have written.
def test_program_from_a_writable_folder_needs_approval(
    tmp_path: Path, rules: Ruleset, where: tuple[Path, Path]
) -> None:
    from xguard.policy.resolve import path_resolver

    project, home = where
    planted = home / ".local" / "bin"
    planted.mkdir(parents=True, exist_ok=True)
    fake = planted / "ls"
    fake.write_text("#!/bin/sh\necho planted\n", encoding="utf-8")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    which = path_resolver(f"{planted}:/usr/bin:/bin", str(home), str(project))
    c = Context(cwd=str(project), home=str(home), expand_glob=real_glob, which=which)
    d = decide(parse("ls -la && git status"), rules, c)
    assert d.decision == REQUIRE
    ls_unit = next(u for u in d.units if u.text == "ls -la")
    assert ls_unit.decision == REQUIRE and str(fake) in ls_unit.why
    assert next(u for u in d.units if u.text == "git status").decision == ALLOW
    # The same command with the system's folders only is allowed.
    system = path_resolver("/usr/bin:/bin", str(home), str(project))
    c2 = Context(cwd=str(project), home=str(home), expand_glob=real_glob, which=system)
    assert decide(parse("ls -la && git status"), rules, c2).decision == ALLOW
    # Builtins run whatever PATH holds: `echo` is never looked up.
    (planted / "echo").write_text("#!/bin/sh\n", encoding="utf-8")
    (planted / "echo").chmod(0o755)
    assert decide(parse("echo hi"), rules, c).decision == ALLOW


def test_gate_resolves_the_agents_path(tmp_path: Path) -> None:
    """Through the installed program: PATH with a planted `ls` first."""
    from tests.conftest import xguard_exe

    planted = tmp_path / "bin"
    planted.mkdir()
    (planted / "ls").write_text("#!/bin/sh\necho planted\n", encoding="utf-8")
    (planted / "ls").chmod(0o755)
    env = dict(os.environ, XGUARD_HOME=str(tmp_path / "xg"), PATH=f"{planted}:{os.defpath}")
    env.pop("XGUARD_RULES", None)
    p = subprocess.run(
        [*xguard_exe(), "check", "--json", "-c", "ls -la"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert p.returncode == 1, p.stderr
    assert str(planted / "ls") in p.stdout


# ---------------------------------------------------------------------------
# Secrets the defaults did not name, and read-only tools' options that write,
# log bodies or connect.
SECRETS = [
    ("cat ~/.claude/.credentials.json", DENY),
    ("xxd -p ~/.claude/.credentials.json", DENY),
    ("cat ~/.claude.json", REQUIRE),
    ("base64 ~/.codex/auth.json", DENY),
    ("rev ~/.codex/auth.json", DENY),
    ("cat ~/.gemini/oauth_creds.json", DENY),
    ("cat ~/.gemini/.env", DENY),
    ("od -c ~/.cache/huggingface/token", DENY),
    ("cat ~/.huggingface/token", DENY),
    ("xxd -p ~/.gitconfig", REQUIRE),
    ("cat .git/config", REQUIRE),
    ("head ~/.netrc", DENY),
    ("cat ~/.npmrc", DENY),
    ("cat ~/.pypirc", DENY),
    ("cat ~/.docker/config.json", DENY),
    ("cat ~/.kube/config", DENY),
    ("cat ~/.config/gh/hosts.yml", DENY),
    ("ls ~/.config/gcloud/x", DENY),
    ("cat ~/.azure/accessTokens.json", DENY),
    ("git remote -v", REQUIRE),
    ("git remote get-url origin", REQUIRE),
    ("git config --get remote.origin.url", REQUIRE),
    ("git config --list", REQUIRE),
    ("kubectl -v 9 get pods", REQUIRE),
    ("kubectl -v=6 get pods", REQUIRE),
    ("kubectl --v=8 get secrets", REQUIRE),
    ("kubectl get pods --cache-dir /tmp/c", REQUIRE),
    ("kubectl get pods --profile-output=pwned --profile=cpu", REQUIRE),
    ("systemctl -H host status x", REQUIRE),
    ("systemctl status -H host x", REQUIRE),
    ("journalctl --cursor-file=/tmp/c -n 5", REQUIRE),
    ("psql -c 'SELECT 1' 'host=evil.example.com'", REQUIRE),
    ("psql -c 'SELECT 1' postgresql://u@evil.example.com/db", REQUIRE),
    ("bash -l -c ls", REQUIRE),
    ("bash --login -c ls", REQUIRE),
    ("bash '-l' -c ls", REQUIRE),
    ("base64 -o out f", REQUIRE),
    ("rg -zn foo", REQUIRE),
    ("rg -nz foo", REQUIRE),
    ("fd -xH cat", REQUIRE),
    ("git remote", ALLOW),
    ("kubectl -v 4 get pods", ALLOW),
    ("bash -c ls", ALLOW),
    ("git config --get user.name", ALLOW),
]


@pytest.mark.parametrize(("command", "expect"), _rows(SECRETS))
def test_secrets_and_tool_options(
    command: str, expect: str, rules: Ruleset, where: tuple[Path, Path]
) -> None:
    _check(command, expect, rules, where)


# ---------------------------------------------------------------------------
# A database client whose target host is not this machine is at least
# require_approval, whatever the rules say (xguard/shell/dbhost.py): the
# connection string, -h, -d or an environment variable may sit anywhere.
DB_HOSTS = [
    ("psql -c 'SELECT 1' postgres://10.1.2.3/app", REQUIRE),
    ("psql -c 'SELECT 1' app postgresql://u@db.example/x", REQUIRE),
    ("psql -c 'SELECT 1' -d 'dbname=app host=10.1.2.3'", REQUIRE),
    ("psql -c 'SELECT 1' --dbname=postgres://db.example/app", REQUIRE),
    ("psql -c 'SELECT 1' 'postgres:///app?host=10.0.0.1'", REQUIRE),
    ("psql -c 'SELECT 1' 'postgres://localhost,10.0.0.9/app'", REQUIRE),
    ("psql -c 'SELECT 1' 'service=prod'", REQUIRE),
    ("psql -c 'SELECT 1' -hdb.example", REQUIRE),
    ("PGHOST=db.example psql -c 'SELECT 1'", REQUIRE),
    ("PGHOSTADDR=10.1.2.3 psql -c 'SELECT 1'", REQUIRE),
    ("env PGHOST=10.1.2.3 psql -c 'SELECT 1'", REQUIRE),
    ("PGHOST=db.example timeout 5 psql -c 'SELECT 1'", REQUIRE),
    ("env PGSERVICE=prod psql -c 'SELECT 1'", REQUIRE),
    ("pg_dump -h 10.1.2.3 app", REQUIRE),
    ("pg_dump postgres://10.1.2.3/app", REQUIRE),
    ("mysql -e 'SELECT 1' -h db.example", REQUIRE),
    ("MYSQL_HOST=db.example mysql -e 'SELECT 1'", REQUIRE),
    ("redis-cli -h 10.0.0.1 ping", REQUIRE),
    ("redis-cli -u redis://10.0.0.1:6379 ping", REQUIRE),
    ("mongosh mongodb://db.example/app --eval 'db.x.countDocuments()'", REQUIRE),
    ("psql -c 'SELECT 1'", ALLOW),
    ("psql -c 'SELECT 1' app bob", ALLOW),
    ("psql -c \"SELECT 'host=db.example'\"", ALLOW),
]


@pytest.mark.parametrize(("command", "expect"), _rows(DB_HOSTS))
def test_database_client_hosts(
    command: str, expect: str, rules: Ruleset, where: tuple[Path, Path]
) -> None:
    _check(command, expect, rules, where)


# Local targets: no floor; the rules decide (the defaults ask for any
# connection string, the fixture for one in first position).
DB_LOCAL = [
    "psql -c 'SELECT 1' postgres://localhost/app",
    "psql -c 'SELECT 1' 'postgres://127.0.0.1:5432/app'",
    "psql -c 'SELECT 1' 'postgres://[::1]/app'",
    "psql -c 'SELECT 1' 'postgresql://%2Fvar%2Frun%2Fpostgresql/app'",
    "psql -c 'SELECT 1' 'host=/var/run/postgresql dbname=app'",
    "psql -h /var/run/postgresql -c 'SELECT 1'",
    "PGHOST=localhost psql -c 'SELECT 1'",
    "env PGHOST=127.0.0.1 psql -c 'SELECT 1'",
    "mysql -h 127.0.0.1 -e 'SELECT 1'",
    "redis-cli -h localhost ping",
    "mongosh --eval 'db.x.find({a:1})'",
]


@pytest.mark.parametrize("command", DB_LOCAL)
def test_database_client_local_targets_are_not_floored(command: str) -> None:
    for u in parse(command):
        assert not any("another machine" in w for w in u.why), (command, u.why)


@pytest.mark.parametrize(("command", "expect"), _rows(DB_HOSTS))
def test_database_client_hosts_under_the_fixture(
    command: str, expect: str, fixture_rules: Ruleset, where: tuple[Path, Path]
) -> None:
    """The floor holds whatever the rules say: the shared fixture allows
    `psql * -c` and SELECT, and catches only a first-position string."""
    if expect == ALLOW:
        return  # the fixture's own rules decide local targets
    _check(command, NOT_ALLOW, fixture_rules, where)


# ---------------------------------------------------------------------------
# False refusals agents hit daily: allowed under the defaults.
EVERYDAY = [
    "echo $((1+2))",
    "diff <(sort a) <(sort b)",
    'while read -r l; do echo "$l"; done < f',
    'x=$(git rev-parse HEAD); echo "$x"',
    "grep -n TODO $(git ls-files)",
    "git ls-files -z | xargs -0 grep -n foo",
    "sqlite3 db 'SELECT count(*) FROM t'",
    "psql -c '\\dt'",
    "psql -c '\\d users'",
    "ss -tlnp",
    "ip addr",
    "ip -br a",
    "ip route show",
    "ls -la ~/.ssh",
    "cat ~/.ssh/*.pub",
    "cat ~/.ssh/id_rsa.pub",
    "git diff | tee /dev/stderr | wc -l",
    "git diff | tee /dev/fd/2 | wc -l",
    "read -r first < f",
]
# ... and what they must not let through.
EVERYDAY_LIMITS = [
    ("cat ~/.ssh/id_rsa", DENY),
    ("cat ~/.ssh/*", DENY),
    ("rm -rf ~/.ssh", DENY),
    ("echo x >> ~/.ssh/id_rsa.pub", DENY),
    ("git ls-files | xargs rm", REQUIRE),
    ("sort -o x $(git ls-files)", REQUIRE),
    ("cat $(git ls-files -o)", REQUIRE),
    ("git ls-files | xargs -0 sort -o x", REQUIRE),
    ("read 'a[$(id)]'", REQUIRE),
    ("PATH=/tmp ls", REQUIRE),
    ("http_proxy=http://evil ls", REQUIRE),
    ("psql -c '\\! id'", REQUIRE),
    ("ip addr add 1.2.3.4 dev eth0", REQUIRE),
    ("ip -b cmds", REQUIRE),
    ("ss -K dst 1.2.3.4", REQUIRE),
    ("ss -E", REQUIRE),
    ("sqlite3 db \"select writefile('/tmp/x', 1)\"", REQUIRE),
    ("sqlite3 -Axf db", REQUIRE),
    ("tee /dev/sda < f", DENY),
    ("cat /dev/fd/3 3<~/.ssh/id_rsa", DENY),
]


@pytest.mark.parametrize("command", [pytest.param(c, id=c[:60]) for c in EVERYDAY])
def test_everyday_reads_are_allowed(command: str, rules: Ruleset, where: tuple[Path, Path]) -> None:
    _check(command, ALLOW, rules, where)


@pytest.mark.parametrize(("command", "expect"), _rows(EVERYDAY_LIMITS))
def test_everyday_limits(
    command: str, expect: str, rules: Ruleset, where: tuple[Path, Path]
) -> None:
    _check(command, expect, rules, where)


# ---------------------------------------------------------------------------
# Found by the execution oracle (allowed, then harmful under bash): each is a
# row here, decided under the ruleset it got through.
ORACLE = [
    ("rev a <<$'EOF'\nhello\nEOF\nrm -f notes.txt\n$'EOF'", "defaults"),
    ('cat -n src/app.py <<E"O"F\nhello\nEOF\nsort\nE"O"F', "fixture"),
    ("grep -c x <<$'EOF'\n$(touch pwned)\nEOF\ntouch pwned\n$'EOF'", "fixture"),
    (
        'cat a | grep -n DEBUG <<E"O"F\nhello\nEOF\n: > a\nE"O"F',
        "fixture",
    ),
    ("git status -s <<$'EOF'\nhello\nEOF\n: > a\n$'EOF'", "defaults"),
    ("id <<$'EOF'\nhello\nEOF\ngit $'log' -1 --output=pwned\n$'EOF'", "defaults"),
    ("bash '-l' -c ls&&find ~ -type f", "defaults"),
    ("grep -r '' ..", "fixture"),
    ("grep -rh token ~/.", "fixture"),
    ("case x in x) grep -r '' ..;; esac", "fixture"),
    ("kubectl get pods --profile-output=pwned --profile=cpu", "fixture"),
    ("xxd -p ~/.cache/huggingface/token", "defaults"),
    # tree-sitter files the words after `> FILE` under the redirection
    ("ls > pwned <(tr a b < a)", "defaults"),
    ("ls >~/pwned >(uniq a)", "fixture"),
    ("git diff > `echo pwned` <(sort a)", "defaults"),
    ("ls 2>&1 >pwned $(echo hi) >(grep -rn DEBUG src)", "fixture"),
    ("kubectl get ns >~/pwned ~/.config/gh/hosts.yml >(uniq a)", "defaults"),
    ("cat a | wc -l <<\\EOF\nhello\nEOF\ncat < /dev/tcp/127.0.0.1/9\n\\EOF", "fixture"),
    # xxd takes the word after INFILE as OUTFILE, whatever it looks like
    ("xxd a --", "defaults"),
    ('sh -c "xxd a --"', "defaults"),
    ("rev \\\n\\\n~/.codex/auth.json", "defaults"),
    # tree-sitter glued a backslash-led line onto the command before it
    ("sort <<\\EOF\nhello\nEOF\ntac .git/config\n\\EOF", "defaults"),
    ("tree <<\\EOF\nhello\nEOF\ngrep -r '' ../home\n\\EOF", "defaults"),
    ("cat a | wc -l <<\\EOF\nhello\nEOF\ncat < /dev/tcp/127.0.0.1/9\n\\EOF", "defaults"),
    # a connection string after the SQL
    ("psql -c 'SELECT 1' postgres://10.1.2.3/app", "fixture"),
    ("psql -c 'SELECT 1' 'host=10.1.2.3 dbname=app'", "fixture"),
]


@pytest.fixture(scope="module")
def fixture_rules(tmp_path_factory: pytest.TempPathFactory) -> Ruleset:
    from tests.conftest import FIXTURES

    path = FIXTURES / "agent-readonly.yaml"
    if not path.exists():
        pytest.skip("shared/fixtures is not beside this checkout")
    state = tmp_path_factory.mktemp("xgfix")
    return load_ruleset(Paths(state, state), path, use_cache=False)


@pytest.mark.parametrize(("command", "ruleset"), [pytest.param(c, r, id=c[:60]) for c, r in ORACLE])
def test_oracle_findings(
    command: str,
    ruleset: str,
    rules: Ruleset,
    fixture_rules: Ruleset,
    where: tuple[Path, Path],
) -> None:
    _check(command, NOT_ALLOW, rules if ruleset == "defaults" else fixture_rules, where)
