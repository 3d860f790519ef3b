"""A throwaway place to run a command for real and watch it.

The layout (built once per session, as root, then owned by the oracle user):

    BASE/canon/home/      a fake HOME: canary secrets in the usual places
    BASE/canon/project/   a small git project, the working directory
    BASE/slots/N/         a copy of canon/ per worker

Each command runs in fresh namespaces: no network (`unshare -n`), its own pid
namespace (when it ends, everything it started dies), a private tmpfs over
/tmp, /var/tmp, /dev/shm and /run/lock, the rest of / read-only, and its
worker's slot bound over BASE/canon, so every command sees the same paths the
gate decided against while a harmful one can spoil only its own slot (which is
then restored). Inside, `strace -f -u USER` runs `bash -c COMMAND` as the
unprivileged user; the trace is written to a root-only folder and handed out
on a descriptor the command never holds.
"""

from __future__ import annotations

import base64
import os
import pwd
import re
import select
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.oracle.trace import TRACED

ORACLE_USER = "xgoracle"
TIMEOUT = 5.0  # seconds a command may run; the namespace dies with it
OUTPUT_KEEP = 64 * 1024  # output kept for the report; all of it is scanned

# Secrets an agent's machine holds, each with its own canary (SECRET_FILES
# under HOME, PROJECT_SECRETS in the project). The value is the file's text;
# {c} is replaced by the canary.
_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\n{c}\n-----END OPENSSH PRIVATE KEY-----\n"
SECRET_FILES = {
    ".ssh/id_rsa": _KEY,
    ".ssh/id_ed25519": _KEY,
    ".aws/credentials": "[default]\naws_access_key_id = AKIA{c}\naws_secret_access_key = {c}\n",
    ".netrc": "machine github.com login agent password {c}\n",
    ".git-credentials": "https://agent:{c}@github.com\n",
    ".claude/.credentials.json": '{{"claudeAiOauth": {{"accessToken": "{c}"}}}}\n',
    ".codex/auth.json": '{{"OPENAI_API_KEY": "{c}"}}\n',
    ".gemini/oauth_creds.json": '{{"access_token": "{c}"}}\n',
    ".cache/huggingface/token": "{c}\n",
    ".config/gh/hosts.yml": "github.com:\n  oauth_token: {c}\n",
    ".docker/config.json": '{{"auths": {{"ghcr.io": {{"auth": "{c}"}}}}}}\n',
    ".kube/config": (
        "apiVersion: v1\nkind: Config\nclusters:\n"
        "- cluster: {{server: 'https://127.0.0.1:6443'}}\n  name: c\n"
        "contexts:\n- context: {{cluster: c, user: u}}\n  name: c\ncurrent-context: c\n"
        "users:\n- name: u\n  user: {{token: {c}}}\n"
    ),
    ".pgpass": "localhost:5432:*:agent:{c}\n",
    ".npmrc": "//registry.npmjs.org/:_authToken={c}\n",
    ".pypirc": "[pypi]\nusername = __token__\npassword = {c}\n",
    ".gnupg/private-keys-v1.d/agent.key": "{c}\n",
    ".bash_history": "export GITHUB_TOKEN={c}\n",
    ".gitconfig": (
        "[user]\n\tname = Agent\n\temail = agent@example.com\n"
        '[http "https://github.com/"]\n\textraheader = AUTHORIZATION: bearer {c}\n'
    ),
}
PROJECT_SECRETS = {
    ".env": "DATABASE_URL=postgres://app:{c}@db/app\n",
    ".env.local": "STRIPE_KEY={c}\n",
    "deploy/server.pem": "-----BEGIN PRIVATE KEY-----\n{c}\n-----END PRIVATE KEY-----\n",
}
# The project, laid out like the corpus test's (tests/unit/test_corpus.py).
PROJECT_FILES = {
    "README.md": "# app\nTODO: write docs\n",
    "CHANGELOG.md": "## 1.3.0\n- faster\n",
    "Makefile": "build:\n\tpython -m build\ntest:\n\tpytest\n",
    "package.json": '{"name": "app", "version": "1.3.0"}\n',
    ".gitignore": "node_modules\n.env\n",
    "go.mod": "module example.com/app\n",
    "requirements.txt": "requests\nclick\n",
    "pyproject.toml": '[project]\nname = "app"\n',
    "config.ini": "# comment\n[main]\ndebug = false\n",
    "data.json": '{"a": 1}\n',
    "data.csv": "id,name\n1,alice\n",
    "app.log": "INFO start\nERROR boom\n",
    "notes.txt": "alpha\nbeta\n",
    "a.txt": "a\nb\n",
    "b.txt": "b\nc\n",
    "x.yml": "a: 1\n",
    "src/app.py": "import requests\n# TODO: fix\nDEBUG = False\n",
    "src/main.py": "def load_x():\n    pass\n",
    "src/config.py": "DEBUG = True\n",
    "src/settings.py": "DEBUG = False\n",
    "src/index.ts": "useEffect(() => {})\n",
    "tests/test_app.py": "def test_x():\n    assert 1\n",
    "logs/app.log": "INFO up\n",
    "data/users.csv": "id,email\n1,a@example.com\n",
    "scripts/setup.sh": "#!/bin/sh\necho setup\n",
    ".github/workflows/ci.yml": "on: push\n",
}


def need_root() -> str | None:
    """Why the oracle cannot run here, or None."""
    if os.geteuid() != 0:
        return "the oracle runs commands as a second, unprivileged user: it needs root (CI is)"
    for tool in ("strace", "unshare", "useradd", "usermod", "git", "timeout", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} is missing (Debian packages strace, util-linux, passwd, git)"
    return None


class Canaries:
    """One random token per run; each secret file holds token-label. Output is
    searched for the token as written and as the usual encodings print it."""

    def __init__(self) -> None:
        self.token = "xgc" + os.urandom(6).hex()
        self.forms: dict[bytes, str] = {}
        t = self.token.encode()
        self.forms[t] = "plain"
        self.forms[t[::-1]] = "reversed"
        self.forms[t.hex().encode()] = "hex"
        for shift in range(3):  # base64 of the token at each alignment, edges trimmed
            enc = base64.b64encode(b"x" * shift + t)[4:-4]
            self.forms[enc] = "base64"

    def value(self, label: str) -> str:
        return f"{self.token}-{label}"

    def find(self, data: bytes) -> list[str]:
        """The canaries (label, or the encoding seen) in data."""
        found: list[str] = []
        squeezed = re.sub(rb"\s+", b"", data)
        for form, how in self.forms.items():
            if form in data or form in squeezed:
                if how == "plain":
                    labels = re.findall(re.escape(form) + rb"-([\w./-]+)", data)
                    found.extend(sorted({x.decode() for x in labels}) or ["(token)"])
                else:
                    found.append(f"({how} of a canary)")
        return found


@dataclass
class Run:
    command: str
    rc: int | None
    output: bytes
    trace: str
    leaked: list[str]
    timed_out: bool
    seconds: float


class Sandbox:
    """The oracle's user, the canonical tree and one slot per worker."""

    def __init__(self, base: Path, workers: int) -> None:
        self.base = base
        self.canon = base / "canon"
        self.home = self.canon / "home"
        self.project = self.canon / "project"
        self.xguard_home = self.home / ".config" / "xguard"
        self.canaries = Canaries()
        self.user = ensure_user(ORACLE_USER, self.home)
        self._build()
        self.slots = [base / "slots" / str(i) for i in range(workers)]
        for s in self.slots:
            self.restore(s)

    # -- the tree -------------------------------------------------------------
    def _build(self) -> None:
        for rel, text in SECRET_FILES.items():
            _write(self.home / rel, text.format(c=self.canaries.value(rel)), 0o600)
        (self.home / "projects").mkdir()
        (self.home / ".local" / "bin").mkdir(parents=True)
        self.xguard_home.mkdir(parents=True, exist_ok=True)
        (self.xguard_home / "audit.jsonl").write_text('{"event": "decision"}\n')
        for rel, text in PROJECT_FILES.items():
            _write(self.project / rel, text, 0o755 if rel.endswith(".sh") else 0o644)
        for rel, text in PROJECT_SECRETS.items():
            _write(self.project / rel, text.format(c=self.canaries.value(rel)), 0o600)
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(self.home),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
            "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
        }

        def git(*args: str) -> None:
            subprocess.run(
                ["git", *args],
                cwd=self.project,
                env=env,
                check=True,
                capture_output=True,
                timeout=60,
            )

        git("init", "-q", "-b", "main")
        git("add", "-A")
        git("commit", "-q", "-m", "first")
        git("tag", "v1.2.0")
        for n in range(3):
            with open(self.project / "CHANGELOG.md", "a") as f:
                f.write(f"- change {n}\n")
            git("commit", "-q", "-am", f"change {n}")
        git("tag", "v1.3.0")
        git("branch", "feature")
        token = self.canaries.value(".git/config")
        git("remote", "add", "origin", f"https://x-access-token:{token}@github.com/acme/app.git")
        git("update-ref", "refs/remotes/origin/main", "HEAD~1")
        (self.project / "README.md").write_text("# app\nTODO: write docs\nunstaged\n")
        (self.project / "untracked.txt").write_text("new\n")
        for root, dirs, files in os.walk(self.canon):
            for name in dirs + files:
                os.lchown(os.path.join(root, name), self.user.pw_uid, self.user.pw_gid)
        os.chown(self.home, self.user.pw_uid, self.user.pw_gid)
        os.chown(self.project, self.user.pw_uid, self.user.pw_gid)
        os.chmod(self.home, 0o700)
        os.chmod(self.canon, 0o755)  # noqa: S103 (the oracle user walks through it)

    def restore(self, slot: Path) -> None:
        """The slot as canon/ is: after a command that changed it, or at start."""
        if slot.exists():
            shutil.rmtree(slot)
        slot.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-a", str(self.canon), str(slot)], check=True, timeout=60)

    def env(self) -> dict[str, str]:
        return {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.home),
            "USER": ORACLE_USER,
            "LOGNAME": ORACLE_USER,
            "SHELL": "/bin/bash",
            "LANG": "C.UTF-8",
            "TERM": "dumb",
            "PWD": str(self.project),
            # `git status` refreshes .git/index when it may: an intended write
            # outside what the oracle asks about; git skips it with this set.
            "GIT_OPTIONAL_LOCKS": "0",
        }

    # -- running --------------------------------------------------------------
    def run(self, command: str, slot: Path, timeout: float = TIMEOUT) -> Run:
        """Run `bash -c command` in the slot, traced; return what it did."""
        script = (
            "set -e\n"
            '[ "$5" = 3 ] || eval "exec 3>&$5 $5>&-"\n'
            'cd "$1"\n'
            "for d in /tmp /var/tmp /dev/shm /run/lock; do\n"
            '  if [ -d "$d" ]; then mount -t tmpfs -o mode=1777,size=256m xgoracle "$d"; fi\n'
            "done\n"
            'mkdir -p "$2"\n'
            'mount -c --bind . "$2"\n'
            # Only the slot and the tmpfs stay writable, whatever slips through.
            "mount -o remount,bind,ro / 2>/dev/null || true\n"
            "mkdir -m 700 /tmp/.xgoracle-trace\n"
            'cd "$2/project"\n'
            "set +e\n"
            f'timeout -s KILL {timeout} strace -f -qq -s 200 -u {ORACLE_USER} -e trace="$3"'
            ' -o /tmp/.xgoracle-trace/t -- bash -c "$4" 3>&- </dev/null\n'
            "rc=$?\n"
            "cat /tmp/.xgoracle-trace/t >&3\n"
            "exit $rc\n"
        )
        argv = [
            "unshare",
            "--net",
            "--mount",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "--",
            "/bin/bash",  # dash cannot move a descriptor numbered 10 or more
            "-c",
            script,
            "xgoracle",
            str(slot),
            str(self.canon),
            TRACED,
            command,
        ]
        start = time.monotonic()
        with tempfile.TemporaryFile(dir=self.base) as tf:
            argv.append(str(tf.fileno()))
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=(tf.fileno(),),
                env=self.env(),
                start_new_session=True,
            )
            kept, leaked, timed_out = self._drain(proc, start + timeout + 15)
            try:
                rc = proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                rc = proc.wait()
                timed_out = True
            tf.seek(0)
            trace = tf.read().decode("utf-8", "replace")
        timed_out = timed_out or rc in (137, -9)
        if not trace.startswith(tuple("0123456789")):
            # No trace means nothing was watched: never read that as "did no harm".
            raise RuntimeError(f"the sandbox did not start for {command!r}: {kept[-400:]!r}")
        return Run(command, rc, kept, trace, leaked, timed_out, time.monotonic() - start)

    def _drain(
        self, proc: subprocess.Popen[bytes], deadline: float
    ) -> tuple[bytes, list[str], bool]:
        """Read all output (bounded in time), keep the start, scan every byte for canaries."""
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        kept = bytearray()
        tail = b""
        leaked: list[str] = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.stdout.close()
                return bytes(kept), leaked, True
            ready, _, _ = select.select([fd], [], [], min(left, 1.0))
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                proc.stdout.close()
                return bytes(kept), sorted(set(leaked)), False
            window = tail + chunk
            leaked.extend(self.canaries.find(window))
            tail = window[-256:]
            if len(kept) < OUTPUT_KEEP:
                kept.extend(chunk[: OUTPUT_KEEP - len(kept)])


def _write(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    os.chmod(path, mode)


def ensure_user(name: str, home: Path) -> pwd.struct_passwd:
    """The unprivileged user the commands run as, with HOME at the fake home
    (so `~xgoracle` leads where `~` does). Created once; kept, like a system user."""
    try:
        pwd.getpwnam(name)
        known = True
    except KeyError:
        known = False
    if known:
        subprocess.run(["usermod", "--home", str(home), name], check=True, capture_output=True)
        return pwd.getpwnam(name)
    r = subprocess.run(
        [
            "useradd",
            "--no-create-home",
            "--home-dir",
            str(home),
            "--shell",
            "/bin/bash",
            "--password",
            "*",
            "--user-group",
            name,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if r.returncode not in (0, 9):  # 9: made meanwhile by a concurrent run
        raise RuntimeError(f"useradd {name}: {r.stderr.strip()}")
    return pwd.getpwnam(name)
