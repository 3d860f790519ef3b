"""Where a POSIX shell (dash, posh, sh that is not bash) reads text differently
from bash. Pure, standard library only.

`sh -c STRING` is parsed with bash's grammar like any nested code; for the
POSIX subset the two readings are the same. Outside it they are not: dash
reads `$'\\x41'` as a `$` and a single-quoted string, `a &> f` as `a &`
then `> f`, and has no `[[`, brace expansion, process substitution or
`${x:o:l}`. `bash_only` finds such constructs with a small quote-aware
lexer, so the unit can be floored instead of trusting one reading.
"""

from __future__ import annotations

_WORD_END = frozenset(" \t\n;&|<>()")


def bash_only(text: str) -> str | None:
    """The first construct that dash would read differently from bash, or None."""
    n = len(text)
    i = 0
    at_word = True  # at the start of a word
    at_cmd = True  # where a command name (or reserved word) may stand
    brace = -1  # index of an unquoted `{` in the current word
    while i < n:
        c = text[i]
        two = text[i : i + 2]
        if c == "\\":
            i += 2
            at_word = at_cmd = False
            continue
        if c == "'":
            j = text.find("'", i + 1)
            i = n if j < 0 else j + 1
            at_word = at_cmd = False
            continue
        if two in ("$'", '$"'):
            return f"{two}…{two[1]} quoting (dash reads a '$' and a quoted string)"
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            inner = text[i + 1 : j]
            why = _expansion_issue(inner)
            if why:
                return why
            i = j + 1
            at_word = at_cmd = False
            continue
        if c == "#" and at_word:
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if two in ("<(", ">("):
            return f"process substitution {two}…) (not in dash)"
        if two in ("&>", "|&") or text[i : i + 3] in ("<<<", ">>&"):
            return f"'{two}' (dash reads it differently)"
        if two == ";&" or text[i : i + 3] == ";;&":
            return "case fall-through ';&' (not in dash)"
        if c == "$" and two in ("${", "$["):
            if two == "$[":
                return "$[…] arithmetic (not in dash)"
            j = text.find("}", i)
            why = _expansion_issue(text[i : (n if j < 0 else j + 1)])
            if why:
                return why
        if c == "=" and text[i + 1 : i + 2] == "(" and not at_word:
            return "array assignment NAME=(…) (not in dash)"
        if at_cmd and at_word:
            word_end = i
            while word_end < n and text[word_end] not in _WORD_END:
                word_end += 1
            word = text[i:word_end]
            if word in ("[[", "function", "select", "coproc"):
                return f"'{word}' (not a dash keyword)"
            if two == "((":
                return "((…)) arithmetic command (not in dash)"
        if c in _WORD_END:
            at_word = True
            brace = -1
            if c in ";&|()\n":
                at_cmd = True
            i += 1
            continue
        if c == "{":
            brace = i
        elif c in ",." and brace >= 0 and (c == "," or text[i : i + 2] == ".."):
            close = text.find("}", i)
            if close >= 0 and not any(x in _WORD_END for x in text[i:close]):
                return "brace expansion {a,b} (not in dash)"
        at_word = False
        i += 1
    return None


def _expansion_issue(text: str) -> str | None:
    """Bash-only parameter expansions inside `text` (`${!x}`, `${x:o:l}`,
    `${x/a/b}`, `${x^^}`, `${x,,}`, `${x@Q}`)."""
    i = text.find("${")
    while i >= 0:
        j = text.find("}", i)
        body = text[i + 2 : (len(text) if j < 0 else j)]
        if body.startswith("!"):
            return "indirect expansion ${!x} (not in dash)"
        k = 0
        while k < len(body) and (body[k].isalnum() or body[k] == "_"):
            k += 1
        if k == 0 and body[:1] in ("@", "*", "#", "?", "$", "-"):
            k = 1
        op = body[k : k + 2]
        if op[:1] in ("/", "^", ",", "@") or (
            op[:1] == ":" and op[1:2] not in ("-", "=", "?", "+")
        ):
            return f"${{{body}}} expansion (not in dash)"
        if op[:1] == "[":
            return "array subscript (not in dash)"
        i = text.find("${", i + 2)
    if "$[" in text:
        return "$[…] arithmetic (not in dash)"
    return None
