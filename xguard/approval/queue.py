"""The approval spool: durable pending requests, first-wins decisions, answers, wake-ups.

Layout under the state folder (folders 0700, files 0600):

    spool/<id>.json              the request, written once and never rewritten
                                 (tmp + fsync + link + fsync of the folder). A
                                 waiting xguard holds flock(LOCK_EX) on it: that
                                 is how others know somebody is still waiting.
    spool/<id>.decision          the verdict (approved, denied, expired,
                                 cancelled), created with link(2) so that of
                                 several reviewers, prompts and sweeps exactly
                                 one wins, and nobody ever reads half a file.
    spool/answers/<key>.<id>.json the answer a re-run of the same command gets
                                 (the agent may have stopped waiting): an
                                 approval once (consumed by unlinking it, which
                                 only one process can do) or until a time
                                 (`--for 30m`); a denial once, so the agent
                                 learns of it with exit 77 and its reason.
    wake/<pid>-<rand>.sock       datagram sockets (0600) of the waiters and
                                 reviewers that are online. Every change sends
                                 a datagram to each, so they react at once; the
                                 files above stay the only truth, and listeners
                                 also re-read them every POLL seconds in case a
                                 datagram was lost.

A request's state is derived, never stored twice: no decision file means
pending. Decided requests are pruned after KEEP_DECIDED (the audit log keeps
them); `spool/.pruned` records when that scan last ran. Standard library
only: this module is on the agent's hot path.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from xguard.audit.log import utc_timestamp
from xguard.errors import XguardError


from xguard.paths import Paths, ensure_dir

TYPE_CHECKING = False  # typing costs ~3 ms to import on the hot path; type checkers see True

if TYPE_CHECKING:
    from collections.abc import Iterator
    from dataclasses import dataclass
    from typing import Any

    from xguard.approval.backend import Ticket as AnyTicket
else:
    from xguard._record import dataclass

STATES = ("pending", "approved", "denied", "expired", "cancelled")
# Listeners re-read the spool this often, so a decision arrives in under a
# second even when a wake-up datagram is lost.
POLL = 0.5
# Decided requests stay in `pending --all` this long; the audit log keeps them for good.
KEEP_DECIDED = 7 * 86400
TMP_MAX_AGE = 3600  # leftovers of a writer that died mid-write
CORRUPT_EXPIRY = 3600  # a request whose file is corrupt expires this long after it was written
PRUNE_EVERY = 600  # pruning scans every decided request: not on each sweep
_SOCK_PATH_MAX = 100  # sun_path holds 108 bytes; longer folders are reached through /proc/self/fd


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _tmp_path(folder: Path) -> Path:
    return folder / f".tmp-{os.getpid()}-{os.urandom(4).hex()}"


def pick_request(ref: str, hits: list[str]) -> str:
    """The request `ref` names among the ids that start with it (spool or
    database): itself, or the only one; LookupError otherwise."""
    if ref in hits:
        return ref
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise LookupError(f"no request {ref!r} (see xguard pending)")
    raise LookupError(f"{ref!r} is ambiguous: {', '.join(sorted(hits))}")


class SpoolOwnerError(LookupError):
    """A decision this user cannot hand to the requester in a file it can read."""


def _give(fd: int, owner: os.stat_result | None, shared_mode: int = 0o640) -> None:
    """Make a spool file readable by the user who owns the request (`owner`,
    the request file's stat). As root (approving an agent user's request in
    the same-user layout) the file becomes that user's; another user may
    share it through the request's group; otherwise refuse, loudly, before
    anything is published: a decision its waiter cannot read helps nobody."""
    if owner is None or owner.st_uid == os.geteuid():
        return
    try:
        if os.geteuid() == 0:
            os.fchown(fd, owner.st_uid, owner.st_gid)
        else:
            os.fchown(fd, -1, owner.st_gid)
            os.fchmod(fd, shared_mode)
    except OSError as e:
        raise SpoolOwnerError(
            f"the request belongs to uid {owner.st_uid} and this user (uid {os.geteuid()}) "
            f"cannot give it a file it can read ({e.strerror}): decide it as that user or as root"
        ) from None


def _write_tmp(folder: Path, data: bytes, owner: os.stat_result | None = None) -> tuple[Path, int]:
    """A complete, fsynced file under a hidden temporary name; returns (path, open fd)."""
    tmp = _tmp_path(folder)
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        _give(fd, owner)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp, fd


def write_atomic(
    path: Path, data: bytes, *, exclusive: bool = False, owner: os.stat_result | None = None
) -> bool:
    """Put `data` at `path` all at once and durably.

    exclusive=True publishes with link(2), which fails when `path` exists: the
    first writer wins and False tells the others they lost. Otherwise rename(2)
    replaces whatever was there. `owner`: see _give.
    """
    tmp, fd = _write_tmp(path.parent, data, owner)
    os.close(fd)
    try:
        if exclusive:
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
        else:
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    _fsync_dir(path.parent)
    return True


def _read_json(path: Path) -> dict[str, Any] | None:
    return _load(path)[0]


def _load(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(object, None), (None, None) when the file is missing, or (None, what
    is wrong) when it is there but cannot be trusted: unreadable, torn, not
    a JSON object."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None, None
    except OSError as e:
        try:
            owner = f" (owned by uid {os.stat(path).st_uid})"
        except OSError:
            owner = ""
        return None, f"unreadable: {e.strerror}{owner}"
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):
        return None, "not valid JSON (torn or corrupted)"
    if not isinstance(obj, dict):
        return None, "not a JSON object (corrupted)"
    return obj, None


def _dumps(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8", "surrogateescape"
    )


# ---------------------------------------------------------------------------
@dataclass
class Ticket:
    """A request this process waits on; holding `fd` (flock'd) says so to others."""

    id: str
    request: dict[str, Any]
    fd: int

    def release(self) -> None:
        """Stop waiting (closing the descriptor drops the lock)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Spool:
    """The pending requests of one xguard state folder."""

    def __init__(self, paths: Paths) -> None:
        self.dir = paths.spool_dir
        self.answers_dir = self.dir / "answers"
        self.wake_dir = paths.state_dir / "wake"

    def ensure(self) -> Spool:
        """Create the folders (0700) if missing."""
        for d in (self.dir, self.answers_dir):
            ensure_dir(d)
        return self

    # -- paths --------------------------------------------------------------
    def _req_path(self, rid: str) -> Path:
        return self.dir / f"{rid}.json"

    def _dec_path(self, rid: str) -> Path:
        return self.dir / f"{rid}.decision"

    # -- requests -----------------------------------------------------------
    def create(self, request: dict[str, Any], new_id: Any) -> Ticket:
        """Publish a new pending request and start waiting on it.

        The file is locked before it becomes visible (flock on the temporary
        file, then link), so no other process can ever see it without a waiter.
        On an id collision a new id is drawn from `new_id()`.
        """
        self.ensure()
        while True:
            tmp, fd = _write_tmp(self.dir, _dumps(request))
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                os.link(tmp, self._req_path(request["id"]))
            except FileExistsError:
                os.close(fd)
                request["id"] = new_id()
                continue
            except BaseException:
                os.close(fd)
                raise
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            _fsync_dir(self.dir)
            return Ticket(request["id"], request, fd)

    def adopt(self, key: str, now: float | None = None) -> Ticket | None:
        """Take over a pending request for the same command whose waiter is gone
        (it timed out with 75), so re-running a command does not queue a twin."""
        now = time.time() if now is None else now
        for req in self.pending():
            if req.get("key") != key or req.get("expires", 0) <= now:
                continue
            try:
                fd = os.open(self._req_path(req["id"]), os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # somebody is waiting on it already
                os.close(fd)
                continue
            if self.verdict(req["id"]) is not None:  # decided while we looked
                os.close(fd)
                continue
            return Ticket(req["id"], req, fd)
        return None

    def get(self, rid: str) -> dict[str, Any] | None:
        """The request with this exact id, with its current `state` (and `verdict`).

        A request or decision file that cannot be trusted is shown, flagged
        `corrupt`, never hidden: it can still be denied (never approved: what
        would run is unknown) and it expires like any other."""
        req, problem = _load(self._req_path(rid))
        if req is None:
            if problem is None:
                return None
            req = self._corrupt_entry(rid, f"the request file is {problem}")
        v, vproblem = self.read_verdict(rid)
        req["state"] = v["state"] if v else "pending"
        if v:
            req["verdict"] = v
        if vproblem:
            why = f"the decision file is {vproblem}: decide it again"
            req["corrupt"] = f"{req['corrupt']}; {why}" if req.get("corrupt") else why
        return req

    def _corrupt_entry(self, rid: str, why: str) -> dict[str, Any]:
        try:
            created = os.stat(self._req_path(rid), follow_symlinks=False).st_mtime
        except OSError:
            created = time.time()
        return {
            "id": rid,
            "key": None,
            "created": created,
            "expires": created + CORRUPT_EXPIRY,
            "command": f"<{why}>",
            "reasons": [why],
            "rules": [],
            "corrupt": why,
        }

    def verdict(self, rid: str) -> dict[str, Any] | None:
        """The decision on a request, or None while it is pending (or while
        its decision file cannot be trusted: see read_verdict)."""
        return _load(self._dec_path(rid))[0]

    def read_verdict(self, rid: str) -> tuple[dict[str, Any] | None, str | None]:
        """(decision or None, what is wrong with a decision file that is there
        but cannot be trusted, or None)."""
        return _load(self._dec_path(rid))

    def _names(self) -> tuple[list[str], set[str]]:
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return [], set()
        ids = [n[:-5] for n in names if n.endswith(".json") and not n.startswith(".")]
        decided = {n[:-9] for n in names if n.endswith(".decision")}
        return ids, decided

    def pending(self) -> list[dict[str, Any]]:
        """Pending requests, oldest first (corrupt ones too, flagged: see get)."""
        ids, decided = self._names()
        out = []
        for rid in ids:
            if rid in decided and self.verdict(rid) is not None:
                continue
            req = self.get(rid)
            if req is not None and req["state"] == "pending":
                out.append(req)
        out.sort(key=lambda r: (r.get("created", 0), r.get("id", "")))
        return out

    def all(self) -> list[dict[str, Any]]:
        """Every request still in the spool (pending and recently decided), oldest first."""
        ids, _ = self._names()
        out = [r for r in (self.get(rid) for rid in ids) if r is not None]
        out.sort(key=lambda r: (r.get("created", 0), r.get("id", "")))
        return out

    def resolve(self, ref: str) -> str:
        """An exact id or an unambiguous prefix of one -> the id; LookupError otherwise."""
        ids, _ = self._names()
        ref = ref.strip().lower()
        return pick_request(ref, [i for i in ids if i.startswith(ref)] if ref else [])

    # -- decisions ----------------------------------------------------------
    def decide(
        self,
        rid: str,
        state: str,
        by: str,
        *,
        reason: str | None = None,
        note: str | None = None,
        for_seconds: float | None = None,
        once_seconds: float = 3600.0,
        log: Any = None,
        origin: dict[str, Any] | None = None,
    ) -> tuple[bool, dict[str, Any]]:
        """Decide a request; the first decision wins.

        Returns (won, verdict): when another reviewer, the prompt or the expiry
        sweep decided first, won is False and verdict is theirs. The winner
        writes the audit record (event = the state) to `log`. An approval or
        a denial also leaves the answer a re-run of the same command gets:
        once (valid `once_seconds`) or, for an approval with `for_seconds`,
        any number of times for that long. Every listener is woken.
        `origin` says where the decision was made (the web page's remote
        address); it is kept in the verdict and the audit record.
        """
        if state not in STATES[1:]:
            raise ValueError(f"not a decision: {state}")
        req, problem = _load(self._req_path(rid))
        try:
            owner = os.stat(self._req_path(rid), follow_symlinks=False)
        except FileNotFoundError:
            owner = None
        if owner is None or (req is None and problem is None):
            raise LookupError(f"no request {rid!r}")
        if req is None and owner.st_uid != os.geteuid() and os.geteuid() != 0:
            raise SpoolOwnerError(
                f"request {rid} belongs to uid {owner.st_uid} and this user (uid "
                f"{os.geteuid()}) cannot read it ({problem}): decide it as that user or as root"
            )
        if req is None:
            if state == "approved":
                raise LookupError(
                    f"request {rid} cannot be approved: its spool file is {problem}, so what "
                    f"would run is unknown; deny it (xguard deny {rid}) or let it expire"
                )
            req = {"id": rid}
        now = time.time()
        v: dict[str, Any] = {
            "id": rid,
            "state": state,
            "by": by,
            "at": now,
            "ts": utc_timestamp(),
            "uid": os.getuid(),
        }
        if reason:
            v["reason"] = reason
        if note:
            v["note"] = note
        if for_seconds:
            v["for"] = for_seconds
        if origin:
            v["origin"] = origin
        if problem:
            v["corrupt"] = f"the request file is {problem}"
        data = _dumps(v)
        won = write_atomic(self._dec_path(rid), data, exclusive=True, owner=owner)
        replaced = None
        if not won:
            replaced = self._dec_problem_replaced(rid, data, owner)
            if replaced is None:
                return False, self.verdict(rid) or {"id": rid, "state": "unknown"}
        if log is not None:
            try:
                log.append(
                    state,
                    **audit_fields(req),
                    reviewer=by,
                    note=note or reason,
                    reason=reason,
                    for_seconds=for_seconds,
                    waited_ms=int((now - req.get("created", now)) * 1000),
                    **({"origin": origin} if origin else {}),
                    **({"corrupt": v["corrupt"]} if "corrupt" in v else {}),
                    **({"replaced": replaced} if replaced else {}),
                )
            except BaseException:
                # An unaudited approval must not run: turn it into a cancel
                # (best effort; the waiter's own decision line would fail too).
                v.update(state="cancelled", reason="the audit log could not be written")
                write_atomic(self._dec_path(rid), _dumps(v), owner=owner)
                wake_all(self.wake_dir, {"id": rid, "state": "cancelled"})
                raise
        if state in ("approved", "denied") and req.get("key"):
            self._ensure_answers(owner)
            timed = for_seconds if state == "approved" and for_seconds else None
            # The session travels along: sessions (issue 5) revoke their own answers.
            answer = {
                "key": req["key"],
                "id": rid,
                "state": state,
                "once": timed is None,
                "by": by,
                "reason": reason,
                "session": req.get("session"),
                "at": now,
                "until": now + (timed or once_seconds),
            }
            write_atomic(self.answers_dir / f"{req['key']}.{rid}.json", _dumps(answer), owner=owner)
        wake_all(self.wake_dir, {"id": rid, "state": state})
        return True, v

    # -- wake-ups, as the Queue interface names them ----------------------------
    def listener(self) -> Listener | None:
        """A wake-up socket for this spool (None: poll only)."""
        return Listener.open(self.wake_dir)

    def wake(self, msg: dict[str, Any]) -> None:
        """Tell every listener to look again."""
        wake_all(self.wake_dir, msg)

    def describe(self) -> str:
        """Where the queue lives, for people."""
        return str(self.dir)

    def close(self) -> None:
        """Nothing to close: every call opens and closes its own files."""

    def _dec_problem_replaced(
        self, rid: str, data: bytes, owner: os.stat_result | None
    ) -> str | None:
        """When the decision file that beat us is one nobody can trust (torn,
        corrupted, unreadable), move it aside and publish ours, first wins
        again. Returns what was wrong with it, or None when a real decision
        stands (we lost). Serialised by a lock, so two reviewers repairing at
        once cannot move each other's good decision aside."""
        if self.read_verdict(rid)[1] is None:
            return None
        fd = os.open(self.dir / ".repair.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            problem = self.read_verdict(rid)[1]
            if problem is None:
                return None
            # Kept a while as evidence (pruned like other leftovers), never read as a verdict.
            with contextlib.suppress(FileNotFoundError):
                os.rename(self._dec_path(rid), self.dir / f".tmp-torn-{rid}-{os.urandom(3).hex()}")
            if not write_atomic(self._dec_path(rid), data, exclusive=True, owner=owner):
                return None
            return f"a decision file that was {problem}"
        finally:
            os.close(fd)

    def _ensure_answers(self, owner: os.stat_result | None) -> None:
        if os.path.isdir(self.answers_dir):
            return
        ensure_dir(self.answers_dir)
        if owner is not None and owner.st_uid != os.geteuid():
            fd = os.open(self.answers_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                _give(fd, owner, 0o750)
            finally:
                os.close(fd)

    # -- answers for re-runs -------------------------------------------------
    def use_answer(self, key: str, now: float | None = None) -> dict[str, Any] | None:
        """The answer already given to this command (`state` approved or denied), or None.

        The newest valid answer counts. A timed approval (`--for`) is used as
        is; a once answer is consumed by unlinking it, which only one process
        can do, and is skipped while its own request still has a waiter, to
        whom it belongs.
        """
        now = time.time() if now is None else now
        try:
            names = [n for n in os.listdir(self.answers_dir) if n.startswith(key + ".")]
        except FileNotFoundError:
            return None
        answers = []
        for n in names:
            a = _read_json(self.answers_dir / n)
            if a is None or a.get("key") != key:
                continue
            if a.get("until", 0) <= now:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.answers_dir / n)
                continue
            answers.append((n, a))
        answers.sort(key=lambda na: na[1].get("at", 0), reverse=True)
        for n, a in answers:
            if not a.get("once"):
                return a
            with self._no_waiter(a["id"]) as free:
                if not free:
                    continue
                try:
                    os.unlink(self.answers_dir / n)
                except FileNotFoundError:  # another run took it first
                    continue
                return a
        return None

    @contextlib.contextmanager
    def _no_waiter(self, rid: str) -> Iterator[bool]:
        try:
            fd = os.open(self._req_path(rid), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            yield True
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            yield False
            return
        try:
            yield True
        finally:
            os.close(fd)

    def consume_own_answer(self, ticket: AnyTicket) -> None:
        """The waiter got its answer itself: a once answer is used up."""
        path = self.answers_dir / f"{ticket.request['key']}.{ticket.id}.json"
        a = _read_json(path)
        if a is not None and a.get("once"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    # -- upkeep -------------------------------------------------------------
    def sweep(self, log: Any = None, now: float | None = None) -> list[str]:
        """Expire overdue requests (audited by whoever wins), and prune old files.

        Called by waiters, `pending` and the reviewer, so expiry happens even
        with nobody watching (a SIGKILLed waiter's request, a reboot).
        """
        now = time.time() if now is None else now
        expired = []
        for req in self.pending():
            if req.get("expires", now + 1) > now:
                continue
            won, _ = self.decide(req["id"], "expired", "xguard", log=log)
            if won:
                expired.append(req["id"])
        marker = self.dir / ".pruned"
        try:
            due = marker.stat().st_mtime < now - PRUNE_EVERY
        except FileNotFoundError:
            due = True
        if due:
            with contextlib.suppress(OSError):
                marker.touch()
                self._prune(now)
        return expired

    def _prune(self, now: float) -> None:
        for e in list(os.scandir(self.dir)):
            # A decision file is written once, so its mtime is when it was decided.
            if e.name.endswith(".decision") and e.stat().st_mtime < now - KEEP_DECIDED:
                rid = e.name[: -len(".decision")]
                for p in (self._req_path(rid), self._dec_path(rid)):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(p)
        for folder in (self.dir, self.answers_dir):
            try:
                entries = list(os.scandir(folder))
            except FileNotFoundError:
                continue
            for e in entries:
                if e.name.startswith(".tmp-"):
                    with contextlib.suppress(OSError):
                        if e.stat().st_mtime < now - TMP_MAX_AGE:
                            os.unlink(e.path)
                elif folder is self.answers_dir:
                    a = _read_json(Path(e.path))
                    if a is not None and a.get("until", 0) <= now:
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(e.path)


def audit_fields(req: dict[str, Any]) -> dict[str, Any]:
    """The fields of a request that every lifecycle audit record repeats."""
    keys = ("id", "session", "profile", "user", "host", "pid", "cwd", "command", "rules")
    return {k: req.get(k) for k in keys}


# ---------------------------------------------------------------------------
# Wake-ups. A datagram says only "look again"; the spool files are the truth,
# so a forged or lost datagram can never decide anything.


class _Folder:
    """An address prefix for sockets in `folder`, short enough for sun_path."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.fd = -1
        if len(str(folder)) + 32 > _SOCK_PATH_MAX:
            # Long paths (deep test folders) go through the folder's descriptor.
            self.fd = os.open(folder, os.O_PATH | os.O_CLOEXEC)
            self.prefix = f"/proc/self/fd/{self.fd}"
        else:
            self.prefix = str(folder)

    def addr(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Listener:
    """A waiter's or reviewer's wake-up socket; select() on it, then drain()."""

    def __init__(self, wake_dir: Path) -> None:
        ensure_dir(wake_dir)
        self.name = f"{os.getpid()}-{os.urandom(3).hex()}.sock"
        self.path = wake_dir / self.name
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        folder = _Folder(wake_dir)
        old = os.umask(0o177)  # the socket is born 0600: no window with looser modes
        try:
            self.sock.bind(folder.addr(self.name))
        except OSError:
            self.sock.close()
            raise
        finally:
            os.umask(old)
            folder.close()
        self.sock.setblocking(False)

    @classmethod
    def open(cls, wake_dir: Path) -> Listener | None:
        """A listener, or None when no socket can be made (then polling alone serves)."""
        try:
            return cls(wake_dir)
        except (OSError, XguardError):
            return None

    def fileno(self) -> int:
        """For select()."""
        return self.sock.fileno()

    def drain(self) -> list[dict[str, Any]]:
        """Read every queued wake-up (their contents are hints only)."""
        out: list[dict[str, Any]] = []
        while True:
            try:
                data = self.sock.recv(4096)
            except (BlockingIOError, InterruptedError):
                return out
            with contextlib.suppress(ValueError):
                msg = json.loads(data)
                if isinstance(msg, dict):
                    out.append(msg)

    def close(self) -> None:
        """Stop listening and remove the socket file."""
        self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def wake_all(wake_dir: Path, msg: dict[str, Any]) -> None:
    """Tell every listener to look again; never blocks, never fails the caller."""
    try:
        names = [n for n in os.listdir(wake_dir) if n.endswith(".sock")]
    except OSError:
        return
    if not names:
        return
    data = _dumps(msg)[:4096]
    folder = _Folder(wake_dir)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.setblocking(False)
    try:
        for n in names:
            try:
                s.sendto(data, folder.addr(n))
            except (ConnectionRefusedError, FileNotFoundError):
                # Its owner died (SIGKILL): nobody listens there any more.
                with contextlib.suppress(OSError):
                    os.unlink(wake_dir / n)
            except OSError:
                # A full queue (a busy listener) or no permission (another
                # user's socket in strict setups): that listener polls anyway.
                pass
    finally:
        s.close()
        folder.close()
