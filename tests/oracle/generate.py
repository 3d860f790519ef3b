"""Commands for the oracle: attack shapes, mutations of the shared corpus, and
hypothesis strategies that compose the same pieces.

Every building block is a plain function over explicit choices, so the
corpus mutator (random.Random with a fixed seed) and the hypothesis
strategies (sampled_from / builds / recursive) draw from one set of tables.
The harm a generated command may do is always observable in the sandbox: it
writes a file in the project (`pwned`), runs a program no allowed unit names,
connects, or prints a canary secret.
"""

from __future__ import annotations

import json
import random
import shlex
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

# ---------------------------------------------------------------------------
# Tables

# Commands a read-only ruleset tends to allow (what mutations start from).
BASES = [
    "ls",
    "ls -la",
    "ls -l src",
    "pwd",
    "echo hi",
    "echo $HOME",
    "cat README.md",
    "cat -n src/app.py",
    "head -n 2 a.txt",
    "tail -n 1 b.txt",
    "wc -l a.txt",
    "grep -n TODO src/app.py",
    "grep -rn DEBUG src",
    "find . -name '*.py'",
    "find src -type f",
    "git status",
    "git status --porcelain",
    "git log --oneline -3",
    "git diff --stat",
    "git diff",
    "git log -p -1",
    "sort a.txt",
    "uniq a.txt",
    "cut -d, -f1 data.csv",
    "awk '{print $1}' a.txt",
    "sed -n 1p a.txt",
    "jq . data.json",
    "xxd a.txt",
    "od -c a.txt",
    "base64 a.txt",
    "printf '%s\\n' x",
    "tr a b < a.txt",
    "diff a.txt b.txt",
    "stat a.txt",
    "du -sh src",
    "tree",
    "realpath a.txt",
    "sha256sum a.txt",
    "date",
    "id",
    "uname -a",
    "true",
    "test -f a.txt",
    "[ -f a.txt ]",
    "[[ -f a.txt ]]",
    "which git",
    "type ls",
    "file a.txt",
    "rev a.txt",
    "seq 3",
    "tac a.txt",
    "nl a.txt",
    "comm a.txt b.txt",
    "cmp a.txt b.txt",
    "fold -w 4 a.txt",
    "column -t data.csv",
    "strings a.txt",
    "kubectl get pods",
    "psql -c 'SELECT 1'",
    "xargs echo < a.txt",
]

# Harm, each observable in the sandbox.
PAYLOADS = [
    "touch pwned",
    "rm -f notes.txt",
    "mkdir pwned.d",
    "mv a.txt pwned",
    "chmod 777 a.txt",
    "ln -s a.txt pwned",
    "cp a.txt pwned",
    "tee pwned < a.txt",
    "echo x > pwned",
    ": > a.txt",
    "truncate -s 0 a.txt",
    "sed -i s/a/b/ a.txt",
    "git config user.name pwned",
    "git commit -q --allow-empty -m pwned",
    "rm -f ~/.config/xguard/audit.jsonl",
    "echo 'default: allow' > ~/.config/xguard/rules.yaml",
    "curl -s http://127.0.0.1:9/",
    'python3 -c \'open("pwned", "w")\'',
    "perl -e 'open F, \">pwned\"'",
    "cat < /dev/tcp/127.0.0.1/9",
    "nohup touch pwned",
    "id",
]

# Secrets, spelled the ways a path can be spelled (HOME is ~ and ../home from the project).
SECRET_PATHS = [
    "~/.ssh/id_rsa",
    "~/./.ssh/id_rsa",
    "~/.ssh/../.ssh/id_ed25519",
    "$HOME/.aws/credentials",
    "${HOME}/.netrc",
    '"$HOME"/.git-credentials',
    "~xgoracle/.netrc",
    "../home/.netrc",
    "./../home/.aws/credentials",
    "~/.claude/.credentials.json",
    "~/.codex/auth.json",
    "~/.gemini/oauth_creds.json",
    "~/.cache/huggingface/token",
    "~/.config/gh/hosts.yml",
    "~/.docker/config.json",
    "~/.kube/config",
    "~/.pgpass",
    "~/.npmrc",
    "~/.pypirc",
    "~/.gitconfig",
    "~/.bash_history",
    "~/.gnupg/private-keys-v1.d/agent.key",
    ".env",
    "./.env",
    ".env.local",
    "'.e'*",
    ".en?",
    "deploy/server.pem",
    ".git/config",
    "~/.ssh/*",
    "~/.[a-z]*/*",
    "../home/.ssh/id_rsa",
    "/proc/self/cwd/.env",
]
READERS = [
    "cat",
    "head",
    "tail -n 5",
    "grep -h .",
    "xxd -p",
    "od -c",
    "base64",
    "rev",
    "strings",
    "sort",
    "tac",
    "nl",
    "cut -c1-",
    "awk 1",
    "sed -n p",
    "jq -R .",
    "diff /dev/null",
    "git diff --no-index /dev/null",
    "grep -c .",
    "wc -c",
]
# Whole-folder reads that sweep secrets up, however the folder is spelled.
SWEEPS = [
    "grep -r xgc ..",
    "grep -rn . ~",
    "grep -r '' ../home",
    "grep -rh token ~/.",
    "grep -r -e . ~/",
    "grep -R password $HOME",
    "find .. -name '*.json' -exec cat {} +",
    "find ~ -type f",
    "rg -uu . ~",
    "cat ~/.*/*",
    "git remote -v",
    "git config --list",
    "git config --get remote.origin.url",
    "git config -l --show-origin",
    "tail -n 3 ~/.bash_history",
    "echo $(<~/.netrc)",
    "read -r l < .env; echo $l",
    "while read -r l; do echo $l; done < ~/.pgpass",
    "mapfile a < ~/.npmrc; echo ${a[0]}",
    "f=~/.netrc; cat $f",
    "cat $(echo ~/.netrc)",
    "cat < ~/.netrc",
    "git -C ~ status",
    "git show HEAD:.env",
    "git diff ../home/.netrc a.txt",
    "git diff --stat -p ~/.aws/credentials README.md",
    "git log -p -- '.e*'",
    "git grep -h . -- ':(glob).e*'",
    "ls -la ~/.ssh",
    "cat ~/.ssh/*.pub",
    # values glued to short options, and operands after `--`
    "grep -hf.env .env",
    "grep -he. -- ~/.netrc",
    "tail -n+1 .env",
    "head -c1000 -- ~/.netrc",
    "awk -F: 1 ~/.pgpass",
    "xxd -ps -c256 ~/.netrc",
    "sed -n -e p -s ~/.npmrc",
    "cut -b1- -- ~/.git-credentials",
    "diff -u /dev/null -- .env",
    "grep -e. -r -- ~/.aws",
    "sort -m -o/dev/stdout .env",
]

# Here-document delimiters and the line bash ends each at (after quote removal).
HEREDOC_DELIMS = [
    ("'EOF'", "EOF"),
    ('"EOF"', "EOF"),
    ("\\EOF", "EOF"),
    ('E"O"F', "EOF"),
    ("$'EOF'", "EOF"),
    ("E\\OF", "EOF"),
    ("'E'OF", "EOF"),
    ("EOF", "EOF"),
    ("-'EOF'", "EOF"),
    ("-EOF", "\tEOF"),
]

QUOTE_STYLES = ["single", "double", "ansi", "ansi_hex", "backslash", "split", "empty", "none"]

REDIRECTS = [
    "> pwned",
    ">> pwned",
    "2> pwned",
    "&> pwned",
    ">| pwned",
    "<> pwned",
    "> $(echo pwned)",
    "> `echo pwned`",
    '> "$(echo pwned)"',
    "> ${x:-pwned}",
    "3> pwned",
    "{fd}> pwned",
    ">~/pwned",
    "> ./../home/pwned",
    "> /dev/null",
    "2>&1",
    "> /dev/stderr",
    "> /dev/fd/2",
    "> /proc/self/fd/1",
    ">&2",
    "< a.txt",
    "> ~/.config/xguard/audit.jsonl",
    "> /tmp/pwned",
    "> pw'n'ed",
    "> $'pwned'",
    ">pwned",
]

# "\n\\": a line that begins with a backslash is a new command to bash.
CONNECTORS = [" ; ", " && ", " || ", " | ", " & ", "\n", " |& ", ";", "&&", "\t;\t", "\n\\"]

SUBSTITUTIONS = ["$({})", "`{}`", '"$({})"', "<({})", ">({})", "$( ({}) )", "${{ {}; }}"]

# Values that bash evaluates as code in arithmetic and indirection.
INDIRECT_FORMS = [
    "x='a[$({p})]'; echo ${{!x}}",
    "x='a[$({p})]'; echo ${{y:x}}",
    "x='a[$({p})]'; echo ${{y:0:x}}",
    "x='a[$({p})]'; set -- a b; echo ${{@:x}}",
    "x='a[$({p})]'; echo $((x))",
    "x='a[$({p})]'; echo ${{a[x]}}",
    "x='a[$({p})]'; [[ $x -eq 1 ]]",
    "x='a[$({p})]'; test -v \"$x\"",
    "for x in 'a[$({p})]'; do echo ${{!x}}; done",
    "for x in 'a[$({p})]'; do echo ${{y:x:1}}; done",
    "read -r x <<< 'a[$({p})]'; echo ${{y:x}}",
    "read -r x <<< 'a[$({p})]'; echo $((x+1))",
    "x='a[$({p})]'; y=x; echo ${{!y}}; echo $((y))",
    "declare -n r='a[$({p})]'; echo $r",
    "x='a[$({p})]'; let x",
    "x='a[$({p})]'; ((x))",
    "x='a[$({p})]'; printf -v y %s ${{z:x}}",
]

# Programs hidden in the arguments of tools a read-only ruleset allows.
HIDDEN = [
    'awk \'BEGIN { printf "x" > "pwned" }\'',
    'awk \'BEGIN { print "x" >> "pwned" }\'',
    "awk 'BEGIN{system(\"touch pwned\")}'",
    "awk 'BEGIN { \"touch pwned\" | getline }'",
    "awk '{ print | \"sh\" }' a.txt",
    'awk \'BEGIN { a = "}"; print 1 > "pwned" }\'',
    'awk \'BEGIN { s = ";" } { print > "pwned" }\' a.txt',
    "awk '{print $0 > FILENAME \".bak\"}' a.txt",
    "awk -v f=pwned 'BEGIN { print 1 > f }'",
    'awk \'BEGIN{printf("x")>"pwned"}\'',
    "awk 'BEGIN { cmd = \"touch pwned\"; cmd | getline x }'",
    "awk 'BEGIN { system(\"id\") }'",
    "awk -f /dev/stdin a.txt <<< 'BEGIN{system(\"touch pwned\")}'",
    "gawk 'BEGIN { print > \"pwned\" }'",
    "mawk 'BEGIN { print > \"pwned\" }'",
    "sed -n 'w pwned' a.txt",
    "sed 's/a/b/w pwned' a.txt",
    "sed '1e touch pwned' a.txt",
    "sed 's/a/touch pwned/e' a.txt",
    "sed -n '1W pwned' a.txt",
    "sed --in-place=.bak s/a/b/ a.txt",
    "sed -e p -e 'w pwned' a.txt",
    "sed -n $'1p\\nw pwned' a.txt",
    "sed -n '1p;w pwned' a.txt",
    "sed -n '/a/w pwned' a.txt",
    "sed -n -e '1{w pwned' -e '}' a.txt",
    "sed -ni s/a/b/p a.txt",
    "sed -f /dev/stdin a.txt <<< 'w pwned'",
    "find . -fprint pwned",
    "find . -name a.txt -execdir touch pwned \\;",
    "find . -fls pwned",
    "find . -name pwned -o -fprintf pwned %p",
    "find . -name notes.txt -delete",
    "find . -maxdepth 0 -exec id \\;",
    "git -c core.fsmonitor='touch pwned' status",
    "git -c core.pager='touch pwned' log",
    "git -c diff.external='touch pwned' diff",
    "git -c alias.st='!touch pwned' st",
    "git -c core.hooksPath=. status",
    "git --config-env=core.fsmonitor=PWD status",
    "GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=core.fsmonitor GIT_CONFIG_VALUE_0='touch pwned' "
    "git status",
    "GIT_EXTERNAL_DIFF='touch pwned' git diff",
    "GIT_PAGER='touch pwned' git -p log",
    "git log --output=pwned",
    "git diff --output pwned",
    "git log -1 --output=pwned",
    "git grep -O'touch pwned' TODO",
    "git grep --open-files-in-pager='touch pwned' TODO",
    "git diff --ext-diff",
    "git -C .. status",
    "git --exec-path=. status",
    "sort -opwned a.txt",
    "sort -o pwned a.txt",
    "sort --output=pwned a.txt",
    "uniq a.txt pwned",
    "tree -opwned",
    "tree -o pwned",
    "xxd a.txt pwned",
    "xxd -r -p - pwned <<< 41",
    "xxd -r - pwned < a.txt",
    "base64 -o pwned a.txt",
    "tee pwned",
    "tee -- pwned < a.txt",
    "split -l1 a.txt pwned.",
    "uniq -c a.txt pwned",
    "sort -mopwned a.txt",
    "tee -a pwned < a.txt",
    "shuf -o pwned a.txt",
    "rg --pre=touch TODO",
    "rg --pre touch TODO",
    "file -C -m pwned",
    "split a.txt",
    "csplit a.txt 1",
    "date -s 2020-01-01",
    "yq -i .a=1 x.yml",
    "jq -n 'input_filename' --rawfile x ~/.netrc",
    "kubectl get pods -v 9",
    "kubectl get pods -s https://10.1.2.3:6443",
    "kubectl get pods --server=https://10.1.2.3",
    "psql 'host=10.1.2.3 dbname=app' -c 'SELECT 1'",
    "psql -c 'SELECT 1' -d postgresql://app@10.1.2.3/app",
    "psql -c 'SELECT 1' postgres://10.1.2.3/app",
    "psql -h10.1.2.3 -c 'SELECT 1'",
    "kubectl get pods --cache-dir=pwned.d",
    "kubectl get pods --profile-output=pwned --profile=cpu",
    "journalctl --cursor-file=pwned -n 1",
    "bash -l -c ls",
    "bash --login -c ls",
    "less -o pwned a.txt",
    "man -P 'touch pwned' ls",
    "env id",
    "timeout 5 id",
    "nice id",
    "command id",
    "exec id",
    "eval id",
    "$(echo id)",
    "`echo id`",
    '"$(echo touch)" pwned',
    "${x:-touch} pwned",
    "a=touch; $a pwned",
    'x=(touch pwned); "${x[@]}"',
    "trap 'touch pwned' EXIT; ls",
    "BASH_ENV=a.txt bash -c ls",
    "PAGER='touch pwned' git -p log",
    "LESSOPEN='|touch pwned' less a.txt",
    "xargs touch < a.txt",
    "echo pwned | xargs touch",
    "xargs -I{} touch {} <<< pwned",
    "{touch,pwned}",
    "{touch,pwned};ls",
    "echo {a,b} > pwned",
    "ls; \\touch pwned",
    "l\\s; t\\ouch pwned",
    "$'\\x74ouch' pwned",
    "$'\\164ouch' pwned",
    "c$'a't README.md > pwned",
    "printf '%s' x > pwned",
    "echo x >| pwned",
    "cat a.txt | tee pwned",
    "diff a.txt b.txt > pwned",
    "ls > /dev/null > pwned",
    "ls 2>&1 >pwned",
    "exec 3>pwned",
    "ls > pwned <(tr a b < a.txt)",
    "ls >~/pwned >(uniq a.txt)",
    "git diff > `echo pwned` <(sort a.txt)",
    "xxd a.txt --",
    "xxd -- a.txt pwned",
    "bash -\\l -c ls",
    "bash -l''i -c ls",
    "exec 3<>a.txt",
    "cat a.txt 1<>pwned",
]


def _lines(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def corpus_commands(corpus: Path, name: str) -> list[str]:
    """The commands of one shared corpus (benign.jsonl or evasion.jsonl)."""
    rows = _lines(corpus / name)
    return [r["command"] for r in rows if isinstance(r.get("command"), str)]


# ---------------------------------------------------------------------------
# Building blocks (plain functions over explicit choices)


def quote_word(word: str, style: str, cut: int = 1) -> str:
    """A word spelled another way that bash reads back as the same word."""
    if not word:
        return word
    cut = max(1, min(cut, len(word) - 1)) if len(word) > 1 else 1
    if style == "single":
        return shlex.quote(word) if "'" in word else f"'{word}'"
    if style == "double":
        return '"' + "".join("\\" + c if c in '"\\$`' else c for c in word) + '"'
    if style == "ansi":
        return "$'" + word.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if style == "ansi_hex":
        return "$'" + "".join(f"\\x{ord(c):02x}" if ord(c) < 128 else c for c in word) + "'"
    if style == "backslash":
        return "".join("\\" + c if c.isalnum() else shlex.quote(c) for c in word)
    if style == "split":
        return shlex.quote(word[:cut]) + shlex.quote(word[cut:])
    if style == "empty":
        return shlex.quote(word[:cut]) + "''" + shlex.quote(word[cut:])
    return shlex.quote(word)


def requote(command: str, index: int, style: str) -> str:
    """The command with its index-th word re-quoted (commands shlex cannot split stay)."""
    try:
        words = shlex.split(command)
    except ValueError:
        return command
    if not words or any(c in command for c in "|&;<>()$`\n{}"):
        return command
    i = index % len(words)
    words = [shlex.quote(w) for w in words]
    words[i] = quote_word(shlex.split(words[i])[0], style, index)
    return " ".join(words)


def connect(a: str, connector: str, b: str) -> str:
    return f"{a}{connector}{b}"


def redirect(command: str, where: str, front: bool = False) -> str:
    return f"{where} {command}" if front else f"{command} {where}"


def substitute(outer: str, form: str, inner: str) -> str:
    """The inner command run by a substitution that is an argument of outer."""
    return f"{outer} {form.format(inner)}"


def heredoc(delim: tuple[str, str], before: str, after: str, body: str = "hello") -> str:
    """A here-document whose end bash finds where a raw-text reading does not."""
    raw, end = delim
    strip = raw.startswith("-")
    opener = raw[1:] if strip else raw
    tab = "\t" if strip else ""
    return f"{before} <<{'-' if strip else ''}{opener}\n{tab}{body}\n{end}\n{after}\n{opener}"


def nested(shell: str, inner: str, style: str) -> str:
    """inner run by `shell -c`, quoted one of several ways."""
    if style == "ansi":
        return f"{shell} -c {quote_word(inner, 'ansi')}"
    if style == "double":
        return f"{shell} -c {quote_word(inner, 'double')}"
    return f"{shell} -c {shlex.quote(inner)}"


# Strings that bash and dash read differently: `$'…'` is a word to bash and `$`
# then a plain quoted string to dash, so what bash sees quoted dash runs.
DASH_SPLITS = [
    "echo $'a\\' ; {p} #'",
    "echo $'a\\'\n{p}\n'",
    "printf %s $'\\' ; {p} #'",
]


def dash_split(payload: str, form: str, shell: str) -> str:
    return f"{shell} -c {shlex.quote(form.format(p=payload))}"


def indirect(form: str, payload: str) -> str:
    return form.format(p=payload)


def secret_read(reader: str, path: str) -> str:
    return f"{reader} {path}"


def group(command: str, kind: str) -> str:
    if kind == "subshell":
        return f"( {command} )"
    if kind == "brace":
        return f"{{ {command}; }}"
    if kind == "if":
        return f"if true; then {command}; fi"
    if kind == "for":
        return f"for i in 1; do {command}; done"
    if kind == "while":
        return f"while true; do {command}; break; done"
    if kind == "case":
        return f"case x in x) {command};; esac"
    if kind == "func":
        return f"f() {{ {command}; }}; f"
    return command


GROUPS = ["subshell", "brace", "if", "for", "while", "case", "func", "none"]


def spaced(command: str, how: str) -> str:
    """Blanks spelled otherwise: tabs, line continuations."""
    if how == "tab":
        return command.replace(" ", "\t", 1)
    if how == "continuation":
        return command.replace(" ", " \\\n", 1)
    return command


# ---------------------------------------------------------------------------
# Deterministic mutation of the corpus (and of the tables above)


def mutate(command: str, rng: random.Random) -> str:
    """One mutation of command, chosen by rng.

    Half the time what the mutation slips in is itself an allowed read: then
    the only possible finding is a program bash runs that the decision did not
    list, which is exactly a misreading of the command's structure."""
    p = rng.choice(PAYLOADS) if rng.random() < 0.5 else rng.choice(BASES)
    kind = rng.randrange(14)
    if kind == 0:
        return requote(command, rng.randrange(8), rng.choice(QUOTE_STYLES))
    if kind == 1:
        return connect(command, rng.choice(CONNECTORS), rng.choice([p, *HIDDEN[:8]]))
    if kind == 2:
        return redirect(command, rng.choice(REDIRECTS), rng.random() < 0.2)
    if kind == 3:
        return substitute(command, rng.choice(SUBSTITUTIONS), p)
    if kind == 4:
        return heredoc(rng.choice(HEREDOC_DELIMS), command.split("\n", 1)[0], p)
    if kind == 5:
        return nested(
            rng.choice(["sh", "dash", "bash", "/bin/sh"]),
            command,
            rng.choice(["single", "double", "ansi"]),
        )
    if kind == 6:
        return connect(command, " ; ", indirect(rng.choice(INDIRECT_FORMS), p))
    if kind == 7:
        return group(command, rng.choice(GROUPS))
    if kind == 8:
        return connect(
            command,
            rng.choice(CONNECTORS),
            secret_read(rng.choice(READERS), rng.choice(SECRET_PATHS)),
        )
    if kind == 9:
        return connect(command, rng.choice(CONNECTORS), rng.choice(HIDDEN))
    if kind == 10:
        return dash_split(p, rng.choice(DASH_SPLITS), rng.choice(["sh", "dash"]))
    if kind == 11:
        return spaced(command, rng.choice(["tab", "continuation"]))
    if kind == 12:
        return connect(command, rng.choice(CONNECTORS), rng.choice(SWEEPS))
    return f"{command} {rng.choice(SECRET_PATHS)}"


def attacks() -> list[str]:
    """Every table entry once, and each attack shape across its parameters."""
    out: list[str] = list(HIDDEN) + list(SWEEPS)
    out += [secret_read(r, p) for r in READERS[:6] for p in SECRET_PATHS]
    out += [secret_read(r, p) for r in READERS[6:] for p in SECRET_PATHS[::5]]
    for d in HEREDOC_DELIMS:
        out.append(heredoc(d, "cat", "touch pwned"))
        out.append(heredoc(d, "grep -c x", "touch pwned", body="$(touch pwned)"))
        out.append(heredoc(d, "wc -l", "echo x > pwned"))
        out.append(heredoc(d, "wc -l", "cat < /dev/tcp/127.0.0.1/9"))
        out.append(heredoc(d, "sort", "tac .git/config"))
        out.append(heredoc(d, "tree", "grep -r '' ../home"))
    for before in ("echo a", "ls > /dev/null", "echo a # note", "f() { echo"):
        after = "touch pwned; }; f" if before.startswith("f()") else "touch pwned"
        out.append(connect(before, "\n\\", after))
        out.append(connect(before, "\n\n\\", after.replace("touch pwned", "tac .git/config")))
    for form in INDIRECT_FORMS:
        out.append(indirect(form, "touch pwned"))
    for form in DASH_SPLITS:
        for sh in ("sh", "dash"):
            out.append(dash_split("touch pwned", form, sh))
    for r in REDIRECTS:
        out.append(redirect("echo hi", r))
        out.append(redirect("ls", r, front=True))
    for s in SUBSTITUTIONS:
        out.append(substitute("echo", s, "touch pwned"))
    for sh in ("sh", "dash", "bash"):
        for style in ("single", "double", "ansi"):
            out.append(nested(sh, "ls; touch pwned", style))
            out.append(nested(sh, "cat ~/.netrc", style))
    return out


def corpus_mutations(corpus: Path, n: int, seed: int) -> list[str]:
    """n commands: the attack table, then 1-3 mutations of corpus and base commands.

    Three in four start from a command that is allowed as it stands (the benign
    corpus, BASES): a mutation of it is what stays near the line."""
    rng = random.Random(seed)  # noqa: S311 (a fixed seed is the point)
    near = corpus_commands(corpus, "benign.jsonl") + BASES
    far = corpus_commands(corpus, "evasion.jsonl") + HIDDEN
    out = _unique(attacks())[: n // 2]
    while len(out) < n:
        c = rng.choice(near if rng.random() < 0.75 else far)
        for _ in range(rng.randint(1, 3)):
            c = mutate(c, rng)
        out.append(c)
    return out


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


# ---------------------------------------------------------------------------
# Hypothesis strategies over the same tables


def strategies() -> SearchStrategy[str]:
    """A strategy for whole commands, built from the tables above."""
    from hypothesis import strategies as st

    word = st.one_of(
        st.sampled_from(["a.txt", "README.md", "src", ".", "-l", "-n", "x", "TODO", "--", "-"]),
        st.sampled_from(SECRET_PATHS),
    )
    styled = st.builds(quote_word, word, st.sampled_from(QUOTE_STYLES), st.integers(1, 4))
    simple = st.builds(
        lambda prog, args: " ".join([prog, *args]),
        st.sampled_from(
            [
                "ls",
                "cat",
                "echo",
                "grep -n",
                "head",
                "tail",
                "wc",
                "sort",
                "uniq",
                "find",
                "git diff",
                "git log",
                "git status",
                "awk 1",
                "sed -n p",
                "xxd",
                "od -c",
                "base64",
                "diff",
                "tr a b <",
            ]
        ),
        st.lists(st.one_of(word, styled), max_size=3),
    )
    leaf = st.one_of(
        simple,
        st.sampled_from(BASES),
        st.sampled_from(PAYLOADS),
        st.sampled_from(HIDDEN),
        st.sampled_from(SWEEPS),
        st.builds(secret_read, st.sampled_from(READERS), st.sampled_from(SECRET_PATHS)),
    )
    payload = st.one_of(st.sampled_from(PAYLOADS), st.sampled_from(HIDDEN), st.sampled_from(BASES))

    def extend(inner: SearchStrategy[str]) -> SearchStrategy[str]:
        return st.one_of(
            st.builds(connect, inner, st.sampled_from(CONNECTORS), inner),
            st.builds(redirect, inner, st.sampled_from(REDIRECTS), st.booleans()),
            st.builds(substitute, inner, st.sampled_from(SUBSTITUTIONS), inner),
            st.builds(heredoc, st.sampled_from(HEREDOC_DELIMS), inner, inner),
            st.builds(
                nested,
                st.sampled_from(["sh", "dash", "bash"]),
                inner,
                st.sampled_from(["single", "double", "ansi"]),
            ),
            st.builds(
                dash_split, payload, st.sampled_from(DASH_SPLITS), st.sampled_from(["sh", "dash"])
            ),
            st.builds(
                lambda f, p, c: connect(c, " ; ", indirect(f, p)),
                st.sampled_from(INDIRECT_FORMS),
                payload,
                inner,
            ),
            st.builds(group, inner, st.sampled_from(GROUPS)),
            st.builds(spaced, inner, st.sampled_from(["tab", "continuation"])),
            st.builds(requote, inner, st.integers(0, 6), st.sampled_from(QUOTE_STYLES)),
        )

    return st.recursive(leaf, extend, max_leaves=4)


def hypothesis_commands(n: int, seed: int) -> list[str]:
    """n commands drawn by hypothesis with a fixed seed (generation only, no shrinking)."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed

    out: list[str] = []

    @hseed(seed)
    @settings(
        max_examples=n,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategies())
    def draw(command: str) -> None:
        out.append(command)

    draw()
    return out


def generate(corpus: Path, n: int, seed: int) -> list[str]:
    """About n distinct commands: half corpus mutations and attacks, half hypothesis."""
    half = n // 2
    return _unique(corpus_mutations(corpus, half, seed) + hypothesis_commands(n - half, seed))
