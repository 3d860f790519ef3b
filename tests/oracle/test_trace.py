"""The oracle's judge on strace lines as Debian's strace 6 prints them: what
counts as harm, what is the shell's or a tool's own bookkeeping, and how a
thread's connect is traced back to the program that made it."""

from __future__ import annotations

import pytest

from tests.oracle.trace import Trace

pytestmark = pytest.mark.oracle

BASH = '10 execve("/usr/bin/bash", ["bash", "-c", "x"], 0x7ffc /* 9 vars */) = 0'

# (name, lines after bash's own exec, allowed programs, kinds expected)
CASES = [
    ("plain read", ['10 openat(AT_FDCWD, "a.txt", O_RDONLY) = 3'], set(), set()),
    (
        "write",
        ['10 openat(AT_FDCWD, "pwned", O_WRONLY|O_CREAT|O_TRUNC, 0666) = 3'],
        set(),
        {"write"},
    ),
    (
        "failed write still counts",
        ['10 openat(AT_FDCWD, "/etc/x", O_WRONLY|O_CREAT, 0666) = -1 EACCES (Permission denied)'],
        set(),
        {"write"},
    ),
    ("O_RDWR", ['10 openat(AT_FDCWD, "a.txt", O_RDWR|O_CREAT, 0666) = 3'], set(), {"write"}),
    ("creat", ['10 creat("x", 0644) = 3'], set(), {"write"}),
    (
        "null device and terminal",
        [
            '10 openat(AT_FDCWD, "/dev/null", O_WRONLY|O_CREAT|O_TRUNC, 0666) = 3',
            '10 openat(AT_FDCWD, "/dev/tty", O_RDWR|O_NONBLOCK) = -1 ENXIO (No such device)',
            '10 openat(AT_FDCWD, "/dev/stderr", O_WRONLY|O_CREAT|O_TRUNC, 0666) = 3',
            '10 openat(AT_FDCWD, "/dev/fd/2", O_WRONLY|O_CREAT|O_TRUNC, 0666) = 3',
            '10 openat(AT_FDCWD, "/proc/self/fd/1", O_WRONLY|O_CREAT|O_TRUNC, 0666) = 3',
        ],
        set(),
        set(),
    ),
    ("/dev/null-ish name", ['10 openat(AT_FDCWD, "/dev/nullx", O_WRONLY) = 3'], set(), {"write"}),
    (
        "bash's here-document file",
        [
            "10 clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|SIGCHLD) = 11",
            '11 openat(AT_FDCWD, "/tmp/sh-thd.iD0MTf", O_RDWR|O_CREAT|O_EXCL, 0600) = 3',
            "11 fchmod(3, 0600) = 0",
            '11 unlink("/tmp/sh-thd.iD0MTf") = 0',
        ],
        set(),
        set(),
    ),
    (
        "the same name written by another program",
        [
            '10 execve("/usr/bin/touch", ["touch", "/tmp/sh-thd.x1"], 0x1 /* 9 vars */) = 0',
            '10 openat(AT_FDCWD, "/tmp/sh-thd.x1", O_WRONLY|O_CREAT, 0666) = 3',
        ],
        {"touch"},
        {"write"},
    ),
    (
        "git's stat cache",
        [
            '10 execve("/usr/bin/git", ["git", "diff"], 0x1 /* 9 vars */) = 0',
            '10 openat(AT_FDCWD, "/p/.git/index.lock", O_RDWR|O_CREAT|O_EXCL|O_CLOEXEC, 0666) = 3',
            '10 rename("/p/.git/index.lock", "/p/.git/index") = 0',
        ],
        {"git"},
        set(),
    ),
    (
        "git writing its config",
        [
            '10 execve("/usr/bin/git", ["git", "config"], 0x1 /* 9 vars */) = 0',
            '10 openat(AT_FDCWD, "/p/.git/config.lock", O_RDWR|O_CREAT|O_EXCL, 0666) = 3',
        ],
        {"git"},
        {"write"},
    ),
    ("unlink", ['10 unlinkat(AT_FDCWD, "notes.txt", 0) = 0'], set(), {"write"}),
    ("mkdir", ['10 mkdir("d", 0777) = 0'], set(), {"write"}),
    (
        "rename",
        ['10 renameat2(AT_FDCWD, "a", AT_FDCWD, "b", RENAME_NOREPLACE) = 0'],
        set(),
        {"write"},
    ),
    ("chmod", ['10 fchmodat(AT_FDCWD, "a.txt", 0777) = 0'], set(), {"write"}),
    ("symlink", ['10 symlinkat("a.txt", AT_FDCWD, "l") = 0'], set(), {"write"}),
    (
        "a listed program",
        ['11 execve("/usr/bin/ls", ["ls"], 0x1 /* 9 vars */) = 0'],
        {"ls"},
        set(),
    ),
    (
        "an unlisted program",
        ['11 execve("/usr/bin/id", ["id"], 0x1 /* 9 vars */) = 0'],
        {"ls"},
        {"exec"},
    ),
    (
        "an unlisted program that is not there still counts",
        ['11 execve("/usr/local/bin/id", ["id"], 0x1 /* 9 vars */) = -1 ENOENT (No such file)'],
        set(),
        {"exec"},
    ),
    (
        "user-name lookup",
        [
            '10 connect(3, {sa_family=AF_UNIX, sun_path="/var/run/nscd/socket"}, 110) = -1 ENOENT',
        ],
        set(),
        set(),
    ),
    (
        "connect",
        [
            '10 connect(3, {sa_family=AF_INET, sin_port=htons(80), sin_addr=inet_addr("1.2.3.4")},'
            " 16) = -1 ENETUNREACH (Network is unreachable)",
        ],
        set(),
        {"connect"},
    ),
    (
        "a socket the command chose",
        ['10 connect(3, {sa_family=AF_UNIX, sun_path="/run/docker.sock"}, 110) = -1 ENOENT'],
        set(),
        {"connect"},
    ),
    (
        "datagram",
        [
            '10 sendto(3, "x", 1, 0, {sa_family=AF_INET, sin_port=htons(53), '
            'sin_addr=inet_addr("8.8.8.8")}, 16) = 1',
        ],
        set(),
        {"connect"},
    ),
    (
        "netlink",
        ["10 sendto(3, [{nlmsg_len=20}], 20, 0, {sa_family=AF_NETLINK}, 12) = 20"],
        set(),
        set(),
    ),
    (
        "a network client's thread, traced back through clone",
        [
            '10 execve("/usr/bin/kubectl", ["kubectl", "get", "pods"], 0x1 /* 9 vars */) = 0',
            "10 clone(child_stack=0xc000, flags=CLONE_VM|CLONE_THREAD <unfinished ...>",
            "12 connect(3, {sa_family=AF_INET, sin_port=htons(6443), "
            'sin_addr=inet_addr("127.0.0.1")}, 16) = -1 ENETUNREACH (Network is unreachable)',
            "10 <... clone resumed>, tls=0xc0) = 12",
        ],
        {"kubectl"},
        set(),
    ),
    (
        "a network client sent elsewhere",
        [
            '10 execve("/usr/bin/psql", ["psql", "-c", "SELECT 1", "host=10.1.2.3"], 0x1) = 0',
            "10 connect(3, {sa_family=AF_INET, sin_port=htons(5432), "
            'sin_addr=inet_addr("10.1.2.3")}, 16) = -1 ENETUNREACH',
        ],
        {"psql"},
        {"connect"},
    ),
    (
        "the same connect from a program not allowed to reach its server",
        [
            '10 execve("/usr/bin/curl", ["curl", "x"], 0x1 /* 9 vars */) = 0',
            '10 connect(3, {sa_family=AF_INET, sin_port=htons(80), sin_addr=inet_addr("127.0.0.1")}'
            ", 16) = -1 ENETUNREACH",
        ],
        {"curl"},
        {"connect"},
    ),
    (
        "an unfinished write, resumed",
        [
            '10 openat(AT_FDCWD, "pwned", O_WRONLY|O_CREAT|O_TRUNC, 0666 <unfinished ...>',
            "11 --- SIGCHLD {si_signo=SIGCHLD} ---",
            "10 <... openat resumed>) = 3",
        ],
        set(),
        {"write"},
    ),
]


@pytest.mark.parametrize(
    ("lines", "allowed", "expect"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_judge(lines: list[str], allowed: set[str], expect: set[str]) -> None:
    trace = Trace.parse("\n".join([BASH, *lines]))
    assert {v.kind for v in trace.judge(allowed)} == expect


def test_quoted_paths_are_unescaped() -> None:
    """A path with a quote or a newline in it is still one path (strace escapes them)."""
    t = Trace.parse(BASH + '\n10 openat(AT_FDCWD, "/dev/null\\"x", O_WRONLY) = 3')
    assert [v.kind for v in t.judge(set())] == ["write"]
    assert t.calls[1].strings() == ['/dev/null"x']
