"""Here-documents as bash reads them. Pure, standard library only.

tree-sitter-bash compares the terminator line with the delimiter word *as
written*; bash compares it with the word after quote removal (`<<E"O"F`,
`<<'EOF'`, `<<\\EOF` and `<<$'EOF'` all end at a line `EOF`), so the text
after that line is commands that tree-sitter would file under the body.
This scanner finds every here-document's body the way bash does, so the
parser can check tree-sitter's boundaries against it and, where they differ,
read the commands with the bodies taken out.
"""

from __future__ import annotations

from xguard._record import dataclass
from xguard.shell.words import dequote

_META = b" \t\n;&|<>()"


@dataclass
class Heredoc:
    """One here-document: byte offsets into the scanned text.

    body_start/body_end: the body (without the terminator line);
    end: just after the terminator line's text (its newline excluded), or
      len(text) when the text ends before any terminator.
    op_start/op_end: the `<<WORD` operator and its word.
    """

    delim: str
    quoted: bool
    strip_tabs: bool
    op_start: int
    op_end: int
    body_start: int
    body_end: int
    end: int
    terminated: bool


def _skip_quoted(src: bytes, i: int) -> int:
    """Index after the quoted piece (or escape) starting at src[i]."""
    n = len(src)
    c = src[i]
    if c == 0x5C:  # backslash
        return min(i + 2, n)
    if c == 0x27:  # '
        j = src.find(b"'", i + 1)
        return n if j < 0 else j + 1
    if c == 0x24 and src[i + 1 : i + 2] == b"'":  # $'…': backslash escapes a quote
        j = i + 2
        while j < n and src[j] != 0x27:
            j += 2 if src[j] == 0x5C else 1
        return min(j + 1, n)
    # double quotes (also $"…")
    j = i + (2 if c == 0x24 else 1)
    while j < n and src[j] != 0x22:
        j += 2 if src[j] == 0x5C else 1
    return min(j + 1, n)


def _skip_arith(src: bytes, i: int) -> int:
    """Index after the `))` that closes an arithmetic expression begun before src[i]."""
    depth = 2
    n = len(src)
    while i < n and depth:
        c = src[i]
        if c == 0x28:
            depth += 1
        elif c == 0x29:
            depth -= 1
        elif c == 0x0A:
            return i  # not arithmetic after all; let the newline be seen
        i += 1
    return i


def _is_quote_start(src: bytes, i: int) -> bool:
    c = src[i]
    return c in (0x5C, 0x27, 0x22) or (c == 0x24 and src[i + 1 : i + 2] in (b"'", b'"'))


def scan(src: bytes) -> list[Heredoc]:
    """Every here-document in `src`, in order, with bash's boundaries."""
    out: list[Heredoc] = []
    pending: list[tuple[bytes, bool, bool, int, int]] = []
    n = len(src)
    i = 0
    word_start = True  # a `#` here starts a comment
    while i < n:
        c = src[i]
        if c == 0x0A:  # newline: bodies of pending here-documents follow
            i += 1
            for raw, quoted, tabs, op_start, op_end in pending:
                delim = dequote(raw).value.encode("utf-8", "surrogateescape")
                body_start = i
                terminated = False
                end = n
                body_end = n
                while i < n:
                    nl = src.find(b"\n", i)
                    line_end = n if nl < 0 else nl
                    line = src[i:line_end]
                    if tabs:
                        line = line.lstrip(b"\t")
                    if line == delim:
                        body_end, end, terminated = i, line_end, True
                        i = line_end + 1 if nl >= 0 else n
                        break
                    i = line_end + 1 if nl >= 0 else n
                out.append(
                    Heredoc(
                        delim.decode("utf-8", "surrogateescape"),
                        quoted,
                        tabs,
                        op_start,
                        op_end,
                        body_start,
                        body_end,
                        end,
                        terminated,
                    )
                )
            pending = []
            word_start = True
            continue
        if c == 0x23 and word_start:  # comment to end of line
            j = src.find(b"\n", i)
            i = n if j < 0 else j
            continue
        if _is_quote_start(src, i):
            i = _skip_quoted(src, i)
            word_start = False
            continue
        if src[i : i + 3] == b"$((" or (word_start and src[i : i + 2] == b"(("):
            i = _skip_arith(src, i + (3 if c == 0x24 else 2))  # `1<<2` is a shift
            word_start = False
            continue
        if src[i : i + 3] == b"<<<":
            i += 3
            word_start = True
            continue
        if src[i : i + 2] == b"<<":
            op_start = i
            i += 2
            tabs = src[i : i + 1] == b"-"
            if tabs:
                i += 1
            while i < n and src[i] in b" \t":
                i += 1
            w0 = i
            while i < n and src[i] not in _META:
                i = _skip_quoted(src, i) if _is_quote_start(src, i) else i + 1
            raw = src[w0:i]
            if raw:
                quoted = any(q in raw for q in (b"'", b'"', b"\\"))
                pending.append((raw, quoted, tabs, op_start, i))
            word_start = False
            continue
        word_start = c in _META
        i += 1
    # An operator whose line never ends has an empty body (bash warns).
    for raw, quoted, tabs, op_start, op_end in pending:
        out.append(
            Heredoc(
                dequote(raw).value,
                quoted,
                tabs,
                op_start,
                op_end,
                n,
                n,
                n,
                False,
            )
        )
    return out


def without_bodies(src: bytes, docs: list[Heredoc]) -> bytes:
    """The text with every here-document operator and body blanked out, so
    what remains is the commands bash runs (each `<<WORD` becomes blanks, each
    body and terminator line becomes empty lines)."""
    out = bytearray(src)
    for d in docs:
        for k in range(d.op_start, d.op_end):
            out[k] = 0x20
        for k in range(d.body_start, min(d.end, len(out))):
            if out[k] != 0x0A:
                out[k] = 0x20
    return bytes(out)
