"""Shell words: quote removal as bash does it, and the strict fast lexer.

Pure functions, standard library only (this is on the hot path).

A `Word` is one shell word after quote removal. Expansions (`$X`, `${X}`,
`$(…)`, backticks, `$((…))`) are kept as written in `value` and make the word
`dynamic`; their spans come from the tree-sitter parse (`expansions`), and any
`$`/backtick the dequoter meets outside those spans is reported as `missed`, so
a construct tree-sitter did not see can never slip through as literal text.
"""

from __future__ import annotations


# ANSI-C escapes of $'…' (bash(1), QUOTING).
_C_ESCAPES = {
    ord("a"): b"\a",
    ord("b"): b"\b",
    ord("e"): b"\x1b",
    ord("E"): b"\x1b",
    ord("f"): b"\f",
    ord("n"): b"\n",
    ord("r"): b"\r",
    ord("t"): b"\t",
    ord("v"): b"\v",
    ord("\\"): b"\\",
    ord("'"): b"'",
    ord('"'): b'"',
    ord("?"): b"?",
}
_HEX = b"0123456789abcdefABCDEF"
_OCT = b"01234567"
# Characters after `$` that start an expansion (bash: parameter, special, ${, $(, $[).
_EXPANSION_START = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_0123456789{([@*#?$!-"
)
_GLOB = frozenset(b"*?[")


class Word:
    """One word after quote removal.

    value   -- the text after quote removal; expansions kept as written
    dynamic -- holds a parameter/command/arithmetic expansion: known only at run time
    glob    -- holds an unquoted * ? or [ (pathname expansion may change it)
    brace   -- holds an unquoted brace expansion ({a,b} or {1..3})
    tilde   -- starts with an unquoted ~ (tilde expansion)
    approx  -- value with each expansion replaced by '*' (for path matching only)
    missed  -- an expansion the tree-sitter parse did not report (fail closed)
    joined  -- a backslash-newline was removed inside the word (SPEC §3: suspicious)
    listing -- the word is `$(git ls-files)`: the repository's file names

    A plain slotted class (not a record type): words are made by the
    hundred thousand in batch checks. Treat it as immutable.
    """

    __slots__ = (
        "approx",
        "brace",
        "dynamic",
        "glob",
        "joined",
        "listing",
        "missed",
        "tilde",
        "value",
    )

    def __init__(
        self,
        value: str,
        dynamic: bool = False,
        glob: bool = False,
        brace: bool = False,
        tilde: bool = False,
        approx: str = "",
        missed: bool = False,
        joined: bool = False,
        listing: bool = False,
    ) -> None:
        self.value = value
        self.dynamic = dynamic
        self.glob = glob
        self.brace = brace
        self.tilde = tilde
        self.approx = approx
        self.missed = missed
        self.joined = joined
        self.listing = listing

    def __repr__(self) -> str:
        return f"Word({self.value!r}, dynamic={self.dynamic}, glob={self.glob}, brace={self.brace})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Word):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    __hash__ = None  # type: ignore[assignment]

    @property
    def literal(self) -> bool:
        """Known before run time, exactly (no expansion of any kind)."""
        return not (self.dynamic or self.glob or self.brace or self.missed)


def lit(value: str) -> Word:
    """A word that is literal text (used for words built by xguard itself)."""
    return Word(value, approx=value)


def _decode(b: bytes | bytearray) -> str:
    return bytes(b).decode("utf-8", "surrogateescape")


def _ansi_c(src: bytes, i: int, out: bytearray) -> int:
    """Decode a $'…' body starting at src[i]; return the index after the closing quote."""
    n = len(src)
    while i < n:
        c = src[i]
        if c == 0x27:  # '
            return i + 1
        if c != 0x5C or i + 1 >= n:  # not a backslash
            out.append(c)
            i += 1
            continue
        e = src[i + 1]
        if e in _C_ESCAPES:
            out += _C_ESCAPES[e]
            i += 2
        elif e in _OCT:
            j = i + 1
            while j < n and j < i + 4 and src[j] in _OCT:
                j += 1
            out.append(int(src[i + 1 : j], 8) & 0xFF)
            i = j
        elif e == ord("x"):
            j = i + 2
            while j < n and j < i + 4 and src[j] in _HEX:
                j += 1
            if j == i + 2:
                out += b"\\x"
            else:
                out.append(int(src[i + 2 : j], 16))
            i = j
        elif e in (ord("u"), ord("U")):
            width = 4 if e == ord("u") else 8
            j = i + 2
            while j < n and j < i + 2 + width and src[j] in _HEX:
                j += 1
            if j == i + 2:
                out += src[i : i + 2]
            else:
                out += chr(int(src[i + 2 : j], 16)).encode("utf-8", "surrogatepass")
            i = j
        elif e == ord("c") and i + 2 < n:
            out.append(src[i + 2] & 0x1F)
            i += 3
        else:
            out += src[i : i + 2]
            i += 2
    return n


def dequote(src: bytes, expansions: tuple[tuple[int, int], ...] = ()) -> Word:
    """Quote removal of one shell word, as bash performs it.

    `src` is the word's source bytes; `expansions` are (start, end) byte spans,
    relative to `src`, of the expansions the parser found inside it. Their text
    is kept verbatim and makes the word dynamic.
    """
    out = bytearray()
    approx = bytearray()
    dynamic = glob = brace = missed = joined = False
    tilde = src[:1] == b"~"
    spans = sorted(expansions)
    si = 0
    i = 0
    n = len(src)
    in_dq = False
    brace_open = -1  # index in `out` of an unquoted '{' that may start a brace expansion
    brace_sep = False

    def emit(b: bytes | int) -> None:
        if isinstance(b, int):
            out.append(b)
            approx.append(b)
        else:
            out.extend(b)
            approx.extend(b)

    while i < n:
        if si < len(spans) and i >= spans[si][0]:
            _s, e = spans[si]
            si += 1
            if e <= i:
                continue
            out.extend(src[i:e])
            # $HOME is known to the policy; keep it so ~/.ssh rules still see it.
            text = src[i:e]
            approx.extend(b"$HOME" if text in (b"$HOME", b"${HOME}") else b"*")
            dynamic = True
            i = e
            continue
        c = src[i]
        if in_dq:
            if c == 0x22:  # closing "
                in_dq = False
                i += 1
            elif c == 0x5C and i + 1 < n and src[i + 1] in b'$`"\\\n':
                if src[i + 1] == 0x0A:
                    joined = True
                else:
                    emit(src[i + 1])
                i += 2
            elif c == 0x60 or (c == 0x24 and i + 1 < n and src[i + 1] in _EXPANSION_START):
                missed = dynamic = True
                emit(c)
                i += 1
            else:
                emit(c)
                i += 1
            continue
        if c == 0x5C:  # backslash
            if i + 1 < n:
                if src[i + 1] == 0x0A:
                    joined = True  # bash joins the word across the newline
                else:
                    emit(src[i + 1])
                i += 2
            else:
                emit(c)
                i += 1
        elif c == 0x27:  # '
            j = src.find(b"'", i + 1)
            j = n if j < 0 else j
            emit(src[i + 1 : j])
            i = j + 1
        elif c == 0x22:  # "
            in_dq = True
            i += 1
        elif c == 0x24 and i + 1 < n and src[i + 1] == 0x27:  # $'…'
            body = bytearray()
            i = _ansi_c(src, i + 2, body)
            emit(bytes(body))
        elif c == 0x24 and i + 1 < n and src[i + 1] == 0x22:  # $"…" (locale translation)
            in_dq = True
            i += 2
        elif c == 0x60 or (c == 0x24 and i + 1 < n and src[i + 1] in _EXPANSION_START):
            missed = dynamic = True
            emit(c)
            i += 1
        else:
            if c in _GLOB:
                glob = True
            elif c == 0x7B:  # {
                brace_open = len(out)
                brace_sep = False
            elif (c == 0x2C and brace_open >= 0) or (
                c == 0x2E and brace_open >= 0 and src[i + 1 : i + 2] == b"."
            ):  # ,
                brace_sep = True
            elif c == 0x7D and brace_open >= 0 and brace_sep:  # }
                brace = True
            emit(c)
            i += 1
    return Word(
        _decode(out),
        dynamic=dynamic,
        glob=glob,
        brace=brace,
        tilde=tilde,
        approx=_decode(approx),
        missed=missed,
        joined=joined,
    )


# ---------------------------------------------------------------------------
# The strict fast lexer.
#
# Most commands an agent runs are plain: `git status`, `ls -la src`. For those
# the tree-sitter parse (~20-35 ms to import) is pure overhead. A command
# made only of these characters has no quoting, expansion, globbing,
# redirection, separator or keyword that could change its meaning, so
# splitting on blanks is exactly what bash does. A differential property test
# (tests/unit/test_fastpath.py) proves fast_words() and the tree-sitter path
# agree on every string fast_words() accepts.
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./")
_FAST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./:,@%+= ")
# Reserved words that start compound commands; never on the fast path.
_RESERVED = frozenset(
    "if then else elif fi case esac for select while until do done function time "
    "coproc in ! [[ ]] { }".split()
)
# Declaration builtins: their words are assignments the tree-sitter path
# reports as assign units, so they never take the fast path.
_DECLARATIONS = frozenset("export declare typeset local readonly unset".split())


# Inside quotes on the fast path: printable ASCII, but never what a double
# quote still expands ($ ` \\) nor either quote character.
_QUOTED_CHARS = frozenset(chr(c) for c in range(32, 127)) - frozenset("$`\\'\"!")


def _fast_split(text: str) -> list[str] | None:
    """Split on blanks, removing plain quotes; None if anything is not plain."""
    words: list[str] = []
    cur: list[str] = []
    in_word = False
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == " ":
            if in_word:
                words.append("".join(cur))
                cur = []
                in_word = False
            i += 1
            continue
        if c in "'\"":
            j = text.find(c, i + 1)
            if j < 0 or not _QUOTED_CHARS.issuperset(text[i + 1 : j]):
                return None
            cur.append(text[i + 1 : j])
            in_word = True
            i = j + 1
            continue
        if c not in _FAST_CHARS:
            return None
        cur.append(c)
        in_word = True
        i += 1
    if in_word:
        words.append("".join(cur))
    return words


def fast_words(text: str) -> list[str] | None:
    """Split a plain one-command line, or return None if it is not plain."""
    if not text:
        return None
    if text.lstrip(" ").startswith("=") or " =" in text:
        # tree-sitter-bash reads a word that starts with `=`, `==` or `=~` as
        # an operator; keep such text on that path so both paths agree.
        return None
    if not _FAST_CHARS.issuperset(text):
        if "'" not in text and '"' not in text:
            return None
        words = _fast_split(text)
        if words is None:
            return None
    else:
        words = [w for w in text.split(" ") if w]
    if not words:
        return None
    first = words[0]
    # The command name is never quoted on the fast path (a quoted name can hide
    # a keyword or an assignment from the checks below).
    raw_first = text.lstrip(" ").split(" ", 1)[0]
    if "'" in raw_first or '"' in raw_first:
        return None
    # An assignment (X=1 cmd) or a reserved word changes what runs: full parse.
    if "=" in first or first in _RESERVED or first in _DECLARATIONS:
        return None
    # tree-sitter-bash reports errors for some names with '@', '%', '+', ':'
    # (`a@`, `a+:`); keep the command name to [A-Za-z0-9_./-] so both paths
    # stay equal (checked exhaustively up to 4 characters, and by the
    # differential property test).
    if not _NAME_CHARS.issuperset(first):
        return None
    return words


_LIST_CHARS = _FAST_CHARS | frozenset("|&;")
_LIST_QUOTED = _LIST_CHARS | _QUOTED_CHARS | frozenset("'\"")


def fast_list(text: str) -> list[list[str]] | None:
    """Split a plain list or pipeline (`a && b | c; d`) into plain commands.

    Only the operators `|`, `&&`, `||` and `;` between plain commands
    (fast_words) are accepted; a lone `&`, `|&`, `;;`, an empty command or
    anything else sends the text to the tree-sitter path. The order of the
    commands is the source order, as the tree-sitter walk gives it (the
    differential property test checks both agree).
    """
    if not text or not _LIST_QUOTED.issuperset(text):
        return None
    segments: list[str] = []
    start = 0
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c in "'\"":
            j = text.find(c, i + 1)  # operators inside quotes are text
            if j < 0:
                return None
            i = j + 1
            continue
        if c in "|&;":
            two = text[i : i + 2]
            if two in ("&&", "||"):
                step = 2
            elif (c == "|" and two != "|&") or (c == ";" and two != ";;"):
                step = 1
            else:
                return None  # background `&`, `|&`, `;;`
            segments.append(text[start:i])
            i += step
            start = i
            continue
        i += 1
    segments.append(text[start:])
    out = []
    for seg in segments:
        words = fast_words(seg)
        if words is None:
            return None
        out.append(words)
    return out
