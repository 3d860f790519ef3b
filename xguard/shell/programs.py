"""Programs inside arguments: awk programs and sed scripts, read with small
lexers of those languages. Pure, standard library only.

A regex over the joined command text cannot tell `print "}" > "/tmp/x"` (a
write) from `print "a > b"` (text), nor `s/a/b/w /tmp/x` (a write) from
`s/a/b w/`: these read the program the way awk and sed do, token by token.
"""

from __future__ import annotations

from xguard._record import dataclass, field
from xguard.shell.cmdspec import getopt
from xguard.shell.words import Word

AWKS = frozenset({"awk", "gawk", "mawk", "nawk", "busybox-awk"})

_AWK_NAMES = {
    "system": "awk system() runs a command",
    "getline": "awk getline reads another file or a command's output",
    "ENVIRON": "awk ENVIRON reads the environment (secrets)",
    "PROCINFO": "awk PROCINFO reads process details",
    "ARGV": "awk ARGV changes which files it reads",
    "ARGC": "awk ARGC changes which files it reads",
}
_IDENT = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_0123456789")


@dataclass
class ProgramCheck:
    """What a program argument does beyond reading its input.

    issues: reasons the command's unit needs at least require_approval;
    reads/writes: file names the program itself opens (sed r/w).
    """

    issues: list[str] = field(default_factory=list)
    reads: list[str] = field(default_factory=list)
    writes: list[str] = field(default_factory=list)


# Words after which an expression, and so a regex literal, may begin: a
# slash after them opens a regex (`print /x/`, `else /"/ ; …`). After any
# other name or number a slash divides.
_AWK_EXPR_AFTER = frozenset(
    {"print", "printf", "return", "exit", "case", "in", "else", "do", "delete", "getline"}
)
# Their `(…)` is a condition: a statement, which may begin with a regex,
# follows its `)` (`if (x) /"/ ; …`); after any other `)` a slash divides.
_AWK_COND = frozenset({"if", "while", "for", "switch"})


def _awk_bracket_end(prog: str, j: int) -> int:
    """Index of the `]` that closes the bracket expression opening at j, read
    as gawk reads it: `]` first (after an optional `^`) is a member, `[:…:]`
    `[.….]` `[=…=]` are classes, a backslash escapes. len(prog) if none."""
    n = len(prog)
    k = j + 1
    if prog[k : k + 1] == "^":
        k += 1
    if prog[k : k + 1] == "]":
        k += 1
    while k < n and prog[k] != "]":
        if prog[k] == "[" and prog[k + 1 : k + 2] in (":", ".", "="):
            close = prog.find(prog[k + 1] + "]", k + 2)
            if close < 0:
                return n
            k = close + 2
            continue
        k += 2 if prog[k] == "\\" else 1
    return k


def awk_program_issues(prog: str) -> list[str]:
    """Why an awk program does more than read its input and print.

    A lexer, not a parser: it must tell a regex literal from a division the
    way awk does, or a `/` read the wrong way hides what follows inside a
    string the program does not have (`x++ / 2; print "}" > "f"; y = 1 / 1`)."""
    out: list[str] = []

    def add(why: str) -> None:
        if why not in out:
            out.append(why)

    n = len(prog)
    i = 0
    depth = 0
    print_depth = -1  # paren depth of the print statement being read, or -1
    operand = False  # the last token ends an operand (so '/' divides)
    last = ""  # the last character of the last token (comments and blanks aside)
    cond_next = False  # the last word was if/while/for/switch: its `(` is a condition
    conds: list[bool] = []  # for each open `(`: is it a condition?
    while i < n:
        c = prog[i]
        if c == '"':
            last = c
            j = i + 1
            while j < n and prog[j] != '"':
                j += 2 if prog[j] == "\\" else 1
            i = j + 1
            operand = True
            cond_next = False
            continue
        if c == "/" and not operand:  # a regex literal
            j = i + 1
            while j < n and prog[j] != "/" and prog[j] != "\n":
                if prog[j] == "[":
                    k = _awk_bracket_end(prog, j)
                    if "/" in prog[j:k]:
                        # gawk reads a `/` in brackets as a member, other awks
                        # may end the regex there: the two readings differ.
                        add("awk regex with '/' inside brackets (awks read it differently)")
                    j = k
                j += 2 if prog[j : j + 1] == "\\" else 1
            i = j + 1
            operand = True
            last = c
            cond_next = False
            continue
        if c == "#":
            j = prog.find("\n", i)
            i = n if j < 0 else j
            continue
        if c in _IDENT:
            j = i
            while j < n and prog[j] in _IDENT:
                j += 1
            word = prog[i:j]
            if word in _AWK_NAMES:
                add(_AWK_NAMES[word])
            if word in ("print", "printf"):
                print_depth = depth
            i = j
            operand = word not in _AWK_EXPR_AFTER
            cond_next = word in _AWK_COND
            last = "a"
            continue
        if c in "+-" and prog[i + 1 : i + 2] == c:
            # `x++ / 2`: after a postfix ++/-- a slash divides, after a prefix
            # one an operand follows; either way the operand state stands.
            i += 2
            last = c
            cond_next = False
            continue
        if c == "@":
            add("gawk @-directive or indirect call")
        elif c == "|":
            if prog[i : i + 2] == "||":
                i += 2
                operand = False
                last = c
                cond_next = False
                continue
            add("awk '|' pipes to or from a command")
        elif c == ">" and print_depth == depth and print_depth >= 0:
            add("awk print > writes a file")
        elif c == "(":
            depth += 1
            conds.append(cond_next)
        elif c == ")":
            depth -= 1
        elif c == "\n" and ((last != "" and last in ",\\&|?:") or depth > print_depth):
            # The statement goes on: awk joins a line that ends in `\`, `,`,
            # `&&`, `||` (gawk also `?`, `:`) to the next, so
            # `print $1,\n$0 > "f"` is one print that writes f.
            pass
        elif c in ";{}\n":
            print_depth = -1
        if c == "$":
            operand = False  # `$1`, `$(x)`: the field expression follows
        elif c == ")":
            # After a condition's `)` a statement begins; after a call's or a
            # group's `)` an operand has ended.
            operand = not (conds.pop() if conds else False)
        elif c == "]":
            operand = True
        elif not c.isspace() or c == "\n":
            # A newline ends a statement (or continues one after `,` `&&` …),
            # so a slash at the start of the next line opens a regex: `y = x`
            # NL `/"/` is a pattern, not `x` divided by a string.
            operand = False
        if not c.isspace():
            last = c
            cond_next = False
        i += 1
    return out


def check_awk(args: list[Word]) -> ProgramCheck:
    """Check the program an awk command line runs."""
    res = ProgramCheck()
    o = getopt(
        args,
        "fvFEeil",
        frozenset({"file", "assign", "field-separator", "exec", "source", "include", "load"}),
        short_optional="dopD",
        long_optional=frozenset({"dump-variables", "profile", "pretty-print", "debug"}),
    )
    progs: list[Word] = []
    for k, v in o.opts:
        if k in ("f", "file", "E", "exec", "i", "include", "l", "load"):
            res.issues.append("awk runs a program from a file")
        elif k in ("e", "source") and v is not None:
            progs.append(v)
        elif k in ("dump-variables", "profile", "pretty-print", "debug", "d", "o", "p", "D"):
            res.issues.append(f"awk -{k} writes a file or debugs")
    if o.operands and not any(k in ("f", "file", "E", "exec", "e", "source") for k, _ in o.opts):
        progs.append(o.operands[0])
    for w in progs:
        if not w.literal:
            res.issues.append("awk program known only at run time")
            continue
        res.issues.extend(x for x in awk_program_issues(w.value) if x not in res.issues)
    return res


# sed ----------------------------------------------------------------------
_SED_SIMPLE = frozenset("=dDgGhHlnNpPxzF{}")


def _sed_to_eol(s: str, i: int) -> tuple[str, int]:
    j = s.find("\n", i)
    j = len(s) if j < 0 else j
    return s[i:j], j


def sed_script(script: str) -> ProgramCheck:
    """Read a GNU sed script: what it executes, reads and writes."""
    res = ProgramCheck()
    s = script
    n = len(s)
    i = 0

    def skip_regex(i: int, delim: str) -> int:
        while i < n and s[i] != delim:
            i += 2 if s[i] == "\\" else 1
        return i + 1

    while i < n:
        c = s[i]
        if c in " \t\n;":
            i += 1
            continue
        if c == "#":
            _, i = _sed_to_eol(s, i)
            continue
        # Addresses: N, $, /re/, \cREc, first~step, addr,+N, addr,~N, then '!'.
        for _ in range(2):
            if i < n and (s[i].isdigit() or s[i] in "$+~"):
                i += 1
                while i < n and (s[i].isdigit() or s[i] == "~"):
                    i += 1
            elif i < n and s[i] == "/":
                i = skip_regex(i + 1, "/")
                while i < n and s[i] in "IM":
                    i += 1
            elif i < n and s[i] == "\\" and i + 1 < n:
                i = skip_regex(i + 2, s[i + 1])
                while i < n and s[i] in "IM":
                    i += 1
            if i < n and s[i] == ",":
                i += 1
                continue
            break
        while i < n and s[i] in " \t!":
            i += 1
        if i >= n:
            break
        c = s[i]
        i += 1
        if c in _SED_SIMPLE:
            continue
        if c in "qQlL":
            while i < n and (s[i].isdigit() or s[i] in " \t"):
                i += 1
        elif c in "bBtT:v":
            while i < n and s[i] not in ";\n":
                i += 1
        elif c in "aic":
            _, i = _sed_to_eol(s, i)
        elif c in "rRwW":
            name, i = _sed_to_eol(s, i)
            name = name.strip()
            if c in "rR":
                # A read unit (path rules apply) and a floor: the file's text
                # goes to the output whatever the rules say about reading it.
                res.reads.append(name)
                res.issues.append(f"sed {c} reads another file into the output")
            else:
                res.writes.append(name)
        elif c == "e":
            res.issues.append("sed e runs a command")
            _, i = _sed_to_eol(s, i)
        elif c in "sy":
            if i >= n:
                res.issues.append("sed script the checker cannot read")
                break
            delim = s[i]
            if delim in "\n\\":
                res.issues.append("sed script the checker cannot read")
                break
            i = skip_regex(i + 1, delim)
            i = skip_regex(i, delim)
            if c == "y":
                continue
            while i < n and s[i] in "gpiImM0123456789e":
                if s[i] == "e":
                    res.issues.append("sed s///e runs the pattern space as a command")
                i += 1
            if i < n and s[i] in "wW":
                name, i = _sed_to_eol(s, i + 1)
                res.writes.append(name.strip())
        else:
            res.issues.append(f"sed command '{c}' the checker cannot read")
            break
    return res


def check_sed(args: list[Word]) -> ProgramCheck:
    """Check the script a sed command line runs (its -i targets are in WRITERS)."""
    o = getopt(
        args,
        "efl",
        frozenset({"expression", "file", "line-length"}),
        short_optional="i",
        long_optional=frozenset({"in-place"}),
    )
    res = ProgramCheck()
    scripts: list[Word] = [v for k, v in o.opts if k in ("e", "expression") and v is not None]
    if any(k in ("f", "file") for k, _ in o.opts):
        res.issues.append("sed runs a script from a file")
    elif not scripts and o.operands:
        scripts.append(o.operands[0])
    for w in scripts:
        if not w.literal:
            res.issues.append("sed script known only at run time")
            continue
        r = sed_script(w.value)
        res.issues.extend(x for x in r.issues if x not in res.issues)
        res.reads += r.reads
        res.writes += r.writes
    return res
