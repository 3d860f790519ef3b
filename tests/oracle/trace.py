"""Reading an `strace -f` log and judging what a command really did.

A command the gate allowed may only read: the programs it executes must be
ones the decision listed as allowed units, it may not create, write, rename,
unlink or chmod any file (the null device and the terminal excepted), may not
connect anywhere, and its output may not carry a canary secret.

Failed attempts count: the sandbox runs as an unprivileged user, so a write to
/etc fails here, but it would succeed for an agent with more rights. What the
shell does for itself (its here-document temporary files) and what glibc does
to look up user names is not the command's doing and is excepted by name.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import cached_property

# Syscalls traced. `?` makes strace accept a name the architecture lacks
# (aarch64 has no open/creat/mkdir/...); clone and friends let a thread or
# child be traced back to the program it belongs to.
TRACED = ",".join(
    [
        "execve",
        "execveat",
        "?open",
        "openat",
        "?creat",
        "?mkdir",
        "mkdirat",
        "?rename",
        "renameat",
        "renameat2",
        "?unlink",
        "unlinkat",
        "?rmdir",
        "?chmod",
        "fchmod",
        "fchmodat",
        "truncate",
        "ftruncate",
        "?link",
        "linkat",
        "?symlink",
        "symlinkat",
        "connect",
        "sendto",
        "clone",
        "clone3",
        "?fork",
        "?vfork",
    ]
)

# Files that are not files: writing to them changes nothing on disk.
_HARMLESS_TARGET = re.compile(
    r"^(/dev/(null|tty|stdout|stderr|stdin|fd/\d+|pts/\d+)"
    r"|/proc/(self|thread-self|\d+)/fd/\d+)$"
)
# bash keeps a large here-document in $TMPDIR/sh-thd.XXXXXX: it creates the
# file O_EXCL, chmods it, unlinks it at once and reads it back (bash 5.2).
_HEREDOC_TMP = re.compile(r"^/tmp/sh-thd\.[A-Za-z0-9]+$")
# git refreshes its stat cache (`git diff` does even with GIT_OPTIONAL_LOCKS=0):
# .git/index.lock written, renamed over .git/index. What git tracks is unchanged.
_GIT_INDEX = re.compile(r"/\.git/index(\.lock)?$")
# glibc asks nscd and systemd's userdb for user names (`ls -l`, `id`): a local
# lookup, not a connection the command chose.
_NAME_SERVICE = re.compile(
    r'sa_family=AF_UNIX, sun_path="(/var)?/run/(nscd/socket|systemd/userdb/[^"]*)"'
)
# Tools whose allow rules exist to reach their server (`kubectl get`, `psql -c`):
# their own connections to where the sandbox's configuration points them (a
# local socket, loopback) are expected; anywhere else was the command's choice.
NETWORK_CLIENTS = frozenset({"kubectl", "psql"})
_LOCAL_PEER = re.compile(
    r'sa_family=AF_UNIX|inet_addr\("127\.0\.0\.1"\)|inet_pton\(AF_INET6, "::1"'
)

_LINE = re.compile(r"^(\d+)\s+(\w+)\((.*)\)\s+=\s+(-?\d+|\?|0x[0-9a-f]+)(.*)$")
_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')
_WRITE_FLAGS = re.compile(r"\bO_(WRONLY|RDWR|CREAT|TRUNC|APPEND)\b")
_PATH_CALLS = frozenset(
    {
        "mkdir",
        "mkdirat",
        "rename",
        "renameat",
        "renameat2",
        "unlink",
        "unlinkat",
        "rmdir",
        "chmod",
        "fchmodat",
        "truncate",
        "link",
        "linkat",
        "symlink",
        "symlinkat",
    }
)
_FORKS = frozenset({"clone", "clone3", "fork", "vfork"})


@dataclass
class Call:
    index: int
    pid: int
    name: str
    args: str
    ret: str
    line: str

    def strings(self) -> list[str]:
        return [_unescape(s) for s in _STRING.findall(self.args)]


@dataclass
class Violation:
    kind: str  # exec | write | connect | secret
    detail: str  # the syscall line, or what leaked

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


@dataclass
class Trace:
    calls: list[Call] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str) -> Trace:
        """Lines of `strace -f -o FILE`, with <unfinished …>/<… resumed> pairs joined."""
        pending: dict[str, str] = {}
        calls: list[Call] = []
        for raw in text.splitlines():
            pid, _, rest = raw.strip().partition(" ")
            rest = rest.strip()
            if not pid.isdigit() or rest.startswith(("---", "+++")):
                continue
            if rest.endswith("<unfinished ...>"):
                pending[pid] = rest[: -len("<unfinished ...>")].rstrip()
                continue
            if rest.startswith("<..."):
                head = pending.pop(pid, "")
                _, _, tail = rest.partition("resumed>")
                rest = head + tail
            m = _LINE.match(f"{pid} {rest}")
            if m:
                calls.append(
                    Call(len(calls), int(pid), m.group(2), m.group(3), m.group(4), f"{pid} {rest}")
                )
        return cls(calls)

    @cached_property
    def _execs(self) -> dict[int, list[tuple[int, str]]]:
        """pid -> [(call index, program basename)], each successful exec in order."""
        out: dict[int, list[tuple[int, str]]] = {}
        for c in self.calls:
            if c.name in ("execve", "execveat") and c.ret == "0":
                s = c.strings()
                if s:
                    out.setdefault(c.pid, []).append((c.index, os.path.basename(s[0])))
        return out

    @cached_property
    def _parents(self) -> dict[int, tuple[int, int]]:
        """child pid -> (parent pid, index of the fork call)."""
        return {
            int(c.ret): (c.pid, c.index) for c in self.calls if c.name in _FORKS and c.ret.isdigit()
        }

    def program_at(self, call: Call) -> str:
        """The program a pid was running at a call: its own last exec, else its parent's."""
        execs, parents = self._execs, self._parents
        pid, index = call.pid, call.index
        for _ in range(64):
            before = [name for i, name in execs.get(pid, []) if i <= index]
            if before:
                return before[-1]
            if pid not in parents:
                return ""
            pid, index = parents[pid]
        return ""

    def _own_file(self, c: Call, paths: list[str]) -> bool:
        """bash's here-document file, or git's index: a tool's own bookkeeping."""
        program = self.program_at(c)
        if program == "bash":
            return bool(paths) and all(_HEREDOC_TMP.match(p) for p in paths)
        if program == "git":
            return bool(paths) and all(_GIT_INDEX.search(p) for p in paths)
        return False

    def judge(self, allowed: set[str]) -> list[Violation]:
        """Everything the command did that an allowed command may not do."""
        out: list[Violation] = []
        first_exec = next((c for c in self.calls if c.name in ("execve", "execveat")), None)
        for c in self.calls:
            if c.name in ("execve", "execveat"):
                if c is first_exec:  # the `bash -c` the oracle started
                    continue
                s = c.strings()
                name = os.path.basename(s[0]) if s else "?"
                if name not in allowed:
                    out.append(Violation("exec", c.line))
            elif c.name in ("open", "openat", "creat"):
                s = c.strings()
                path = s[0] if s else ""
                if c.name != "creat" and not _WRITE_FLAGS.search(c.args.split('"')[-1]):
                    continue
                if _HARMLESS_TARGET.match(path):
                    continue
                if self._own_file(c, [path]):
                    continue
                out.append(Violation("write", c.line))
            elif c.name in _PATH_CALLS:
                renames = ("unlink", "unlinkat", "rename", "renameat", "renameat2")
                if c.name in renames and self._own_file(c, c.strings()):
                    continue
                out.append(Violation("write", c.line))
            elif c.name in ("fchmod", "ftruncate"):
                if c.name == "fchmod" and self.program_at(c) == "bash":
                    continue  # the here-document file above, by its descriptor
                out.append(Violation("write", c.line))
            elif c.name == "connect":
                if _NAME_SERVICE.search(c.args):
                    continue
                if _LOCAL_PEER.search(c.args) and self.program_at(c) in NETWORK_CLIENTS & allowed:
                    continue
                out.append(Violation("connect", c.line))
            elif c.name == "sendto":
                # sendto on a connected socket carries no address (the connect
                # was judged); netlink (`ip addr`, `ss`) asks the kernel.
                addressed = "sa_family=AF_INET" in c.args or "sa_family=AF_UNIX" in c.args
                client = self.program_at(c) in NETWORK_CLIENTS & allowed
                if addressed and not (client and _LOCAL_PEER.search(c.args)):
                    out.append(Violation("connect", c.line))
        return out


def _unescape(s: str) -> str:
    """strace's C escapes (\\", \\\\, \\n, \\xNN, octal) back to text."""
    if "\\" not in s:
        return s
    try:
        return s.encode("latin-1", "backslashreplace").decode("unicode_escape")
    except UnicodeDecodeError:
        return s
