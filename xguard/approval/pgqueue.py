"""The approval queue in PostgreSQL, shared by many hosts (issue 15).

Configured with `queue: {postgres: DSN}` (a libpq connection string, URI or
`service=NAME`); imported only then, so psycopg never loads otherwise. The
same calls as the file spool (xguard/approval/backend.py: Queue), mapped on
the tables of xguard/approval/pgschema.py:

- a request is one row of xguard.requests; the database sets its host (from
  the login role's mapping), its role and its creation time, and the primary
  key keeps ids unique across hosts (a clash draws a new id);
- a waiter holds a session advisory lock on its request's id: that is how
  others know somebody still waits (the flock of the file spool);
- a decision is one row of xguard.decisions; INSERT … ON CONFLICT DO NOTHING
  on its primary key lets exactly one of several reviewers, prompts and
  sweeps win; the decider's own audit record is written inside the same
  transaction, so an unaudited decision never becomes visible;
- the answer a re-run gets is derived from the decision (approved or denied,
  `for` a while or once); a once-answer is used up by inserting its id into
  xguard.consumed, which only one run can do;
- wake-ups are LISTEN/NOTIFY (triggers notify on every insert); listeners
  also re-read every POLL seconds, so a lost notification only costs time.

Every failure to reach or use the database is a QueueError (exit 70: nothing
ran) that names the server tried.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
import time
from typing import Any

import psycopg
from psycopg import pq
from psycopg.types.json import Jsonb

from xguard.approval.pgschema import CHANNEL_DECIDED, CHANNEL_QUEUE

from xguard.approval.queue import KEEP_DECIDED, STATES, audit_fields, pick_request
from xguard.audit.log import utc_timestamp
from xguard.errors import QueueError
from xguard.gate.request import request_key
from xguard.util import dsn_server as server_of

DEFAULT_CONNECT_TIMEOUT = 5
# A session in these states has a query in flight that nobody will read (an
# exception raised by a signal handler left it there) or is in no known state.
_IN_FLIGHT = (pq.TransactionStatus.ACTIVE, pq.TransactionStatus.UNKNOWN)
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
# Queries name their columns in this order: request rows (id, host, role, key,
# created, expires, body), then decision rows (id, state, by, role, at, body).
# Fields of a decision's body and the types they may have; anything else is dropped.
_VERDICT_BODY: dict[str, type | tuple[type, ...]] = {
    "reason": str,
    "note": str,
    "for": (int, float),
    "origin": dict,
    "ts": str,
    "uid": int,
}


def _lock_key(rid: str) -> str:
    return f"xguard:{rid}"


def _bound(key: str, body: dict[str, Any]) -> bool:
    """Whether a row's key is made of the command, cwd, session and profile it shows.

    The key is what a later run's answer is looked up by; a row whose key
    belongs to another command would let a reviewer approve `ls` and the
    agent then run something else without asking. Such rows never count.
    """
    how = body.get("how")
    if not isinstance(how, list) or not all(isinstance(h, str) for h in how):
        return False
    session, profile = body.get("session"), body.get("profile")
    if not (session is None or isinstance(session, str)):
        return False
    if not (profile is None or isinstance(profile, str)):
        return False
    made = request_key(str(body.get("command")), str(body.get("cwd")), session, profile, how)
    return secrets.compare_digest(made, key)


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


class PgTicket:
    """A request this process waits on: the advisory lock on its id is held until release()."""

    def __init__(self, queue: PgQueue, rid: str, request: dict[str, Any]) -> None:
        self.queue = queue
        self.id = rid
        self.request = request
        self.held = True

    def release(self) -> None:
        """Stop waiting (drops the advisory lock; closing the connection would too)."""
        if self.held:
            self.held = False
            # When the session is gone, its locks went with it.
            with contextlib.suppress(psycopg.Error):
                self.queue.conn.execute(
                    "SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (_lock_key(self.id),)
                )


class PgListener:
    """A connection that LISTENs; select() on it, then drain().

    When that connection breaks, the listener turns into a pipe nobody
    writes to: select() then never wakes for it and its owner polls every
    POLL seconds, instead of spinning on a dead socket that is always readable.

    Any role may NOTIFY any channel (PostgreSQL has no privilege for it), so
    one agent in a loop would wake every waiter and reviewer page of every
    host, each re-reading the queue as fast as the database answers. A
    listener therefore wakes its owner at most once per WAKE_GAP seconds;
    notifications in between are taken together.
    """

    WAKE_GAP = 0.2

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn: psycopg.Connection[Any] | None = conn
        self._quiet: tuple[int, int] | None = None
        self._last = 0.0

    def fileno(self) -> int:
        """For select()."""
        if self.conn is not None:
            return self.conn.fileno()
        assert self._quiet is not None
        return self._quiet[0]

    def drain(self) -> list[dict[str, Any]]:
        """Read every queued notification (hints only: the tables are the truth)."""
        if self.conn is None:
            return []
        wait = self._last + self.WAKE_GAP - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self._last = time.monotonic()
        try:
            return [{"channel": n.channel} for n in self.conn.notifies(timeout=0)]
        except psycopg.Error:
            self.conn.close()
            self.conn = None
            self._quiet = os.pipe()
            return []

    def close(self) -> None:
        """Stop listening."""
        if self.conn is not None:
            self.conn.close()
        if self._quiet is not None:
            for fd in self._quiet:
                os.close(fd)
            self._quiet = None


class PgQueue:
    """The shared queue, seen through one database session."""

    def __init__(self, dsn: str, *, connect_timeout: float | None = None) -> None:
        self.dsn = dsn
        self.where = server_of(dsn)
        self.timeout = max(1, int(connect_timeout or DEFAULT_CONNECT_TIMEOUT))
        self._warned: set[str] = set()
        self.conn = self._connect()

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(
                self.dsn,
                autocommit=True,
                connect_timeout=self.timeout,
                application_name="xguard",
            )
        except psycopg.Error as e:
            raise QueueError(
                f"approval queue unreachable: postgres at {self.where}: {_first_line(e)}"
            ) from e

    def _usable(self) -> None:
        """Replace the session when it cannot take a query: the server went away
        and may be back (a reviewer's page retries through here), or a signal
        interrupted a query mid-way, leaving it in flight (the waiting xguard's
        SIGTERM, whose handler must then write the cancel). A waiter's advisory
        lock goes with the old session."""
        status = self.conn.info.transaction_status
        if self.conn.broken or self.conn.closed or status in _IN_FLIGHT:
            try:
                self.conn.close()
            except psycopg.Error:
                pass
            self.conn = self._connect()

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        self._usable()
        try:
            cur = self.conn.execute(sql, params)
            return cur.fetchall() if cur.description is not None else []
        except psycopg.OperationalError as e:
            raise QueueError(
                f"approval queue unreachable: postgres at {self.where}: {_first_line(e)}"
            ) from e
        except psycopg.Error as e:
            raise QueueError(
                f"approval queue at postgres {self.where} refused: {_first_line(e)}"
            ) from e

    def _warn(self, rid: str, what: str) -> None:
        if rid not in self._warned:
            self._warned.add(rid)
            sys.stderr.write(f"xguard: warning: ignoring request {rid!r} in the queue: {what}\n")

    # -- rows -> the dicts the rest of xguard knows ----------------------------
    def _request(self, row: tuple[Any, ...]) -> dict[str, Any] | None:
        rid, host, role, key, created, expires, body = row
        if not isinstance(body, dict):
            self._warn(rid, "its body is not an object")
            return None
        if not isinstance(body.get("command"), str) or not isinstance(body.get("units"), list):
            self._warn(rid, "it has no command or units")
            return None
        if not _bound(key, body):
            self._warn(rid, "its key is not that of its command, cwd, session and profile")
            return None
        req = dict(body)
        claimed = req.get("host")
        # What the database says wins over what the client wrote.
        req.update(id=rid, host=host, role=role, key=key, created=created, expires=expires)
        if claimed and claimed != host:
            req["host_claimed"] = claimed
        req["expires_ts"] = utc_timestamp(int(expires * 1e9))
        return req

    @staticmethod
    def _verdict(row: tuple[Any, ...]) -> dict[str, Any]:
        rid, state, by, role, at, body = row
        v: dict[str, Any] = {"id": rid, "state": state, "by": by, "role": role, "at": at}
        if isinstance(body, dict):
            for k, kind in _VERDICT_BODY.items():
                if isinstance(body.get(k), kind) and not isinstance(body.get(k), bool):
                    v[k] = body[k]
        v.setdefault("ts", utc_timestamp(int(at * 1e9)))
        return v

    # -- the Queue interface ---------------------------------------------------
    def ensure(self) -> PgQueue:
        """The schema is made by `xguard db init`; nothing to create here."""
        return self

    def describe(self) -> str:
        """Where the queue lives, for people."""
        return f"postgres at {self.where}"

    def close(self) -> None:
        """End the session (and with it any advisory lock still held)."""
        self.conn.close()

    def _now(self) -> float:
        return float(self._rows("SELECT extract(epoch FROM clock_timestamp())")[0][0])

    def create(self, request: dict[str, Any], new_id: Any) -> PgTicket:
        """Queue a new request and start waiting on it (locked before it is visible)."""
        expiry = max(float(request.get("expires", 0)) - float(request.get("created", 0)), 1.0)
        body = {k: v for k, v in request.items() if k not in ("expires", "expires_ts")}
        while True:
            rid = request["id"]
            self._rows("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (_lock_key(rid),))
            rows = self._rows(
                "INSERT INTO xguard.requests (id, key, expires, body) VALUES "
                "(%s, %s, extract(epoch FROM clock_timestamp()) + %s, %s) "
                "ON CONFLICT (id) DO NOTHING RETURNING host, created, expires",
                (rid, request["key"], expiry, Jsonb(body)),
            )
            if rows:
                host, created, expires = rows[0]
                claimed = request.get("host")
                request.update(host=host, created=created, expires=expires)
                request["expires_ts"] = utc_timestamp(int(expires * 1e9))
                if claimed and claimed != host:
                    request["host_claimed"] = claimed
                return PgTicket(self, rid, request)
            self._rows("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (_lock_key(rid),))
            request["id"] = body["id"] = new_id()

    def adopt(self, key: str, now: float | None = None) -> PgTicket | None:
        """Take over a pending request for the same command whose waiter is gone."""
        for req in self.pending():
            if req.get("key") != key or req["expires"] <= self._now():
                continue
            got = self._rows(
                "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (_lock_key(req["id"]),)
            )
            if not got[0][0]:
                continue  # somebody is waiting on it already
            ticket = PgTicket(self, req["id"], req)
            if self.verdict(req["id"]) is not None:
                ticket.release()
                continue
            return ticket
        return None

    def get(self, rid: str) -> dict[str, Any] | None:
        """The request with this id, with its `state` (and `verdict`)."""
        rows = self._rows(
            "SELECT r.id, r.host, r.role, r.key, r.created, r.expires, r.body "
            "FROM xguard.requests r WHERE r.id = %s",
            (rid,),
        )
        req = self._request(rows[0]) if rows else None
        if req is None:
            return None
        v = self.verdict(rid)
        req["state"] = v["state"] if v else "pending"
        if v:
            req["verdict"] = v
        return req

    def verdict(self, rid: str) -> dict[str, Any] | None:
        """The decision on a request, or None while it is pending."""
        rows = self._rows(
            "SELECT d.id, d.state, d.by, d.role, d.at, d.body "
            "FROM xguard.decisions d WHERE d.id = %s",
            (rid,),
        )
        return self._verdict(rows[0]) if rows else None

    def read_verdict(self, rid: str) -> tuple[dict[str, Any] | None, str | None]:
        """(decision or None, problem): the table's constraints leave no torn decision."""
        return self.verdict(rid), None

    def pending(self) -> list[dict[str, Any]]:
        """Pending requests (of every host this role may see), oldest first."""
        rows = self._rows(
            "SELECT r.id, r.host, r.role, r.key, r.created, r.expires, r.body "
            "FROM xguard.requests r WHERE NOT EXISTS "
            "(SELECT 1 FROM xguard.decisions d WHERE d.id = r.id) ORDER BY r.created, r.id"
        )
        out = []
        for row in rows:
            req = self._request(row)
            if req is not None:
                req["state"] = "pending"
                out.append(req)
        return out

    def all(self) -> list[dict[str, Any]]:
        """Pending requests and those decided in the last KEEP_DECIDED seconds, oldest first."""
        rows = self._rows(
            "SELECT r.id, r.host, r.role, r.key, r.created, r.expires, r.body, "
            "d.id, d.state, d.by, d.role, d.at, d.body FROM xguard.requests r "
            "LEFT JOIN xguard.decisions d ON d.id = r.id "
            "WHERE d.id IS NULL OR d.at > extract(epoch FROM clock_timestamp()) - %s "
            "ORDER BY r.created, r.id",
            (KEEP_DECIDED,),
        )
        out = []
        for row in rows:
            req = self._request(row[:7])
            if req is None:
                continue
            if row[7] is not None:
                req["verdict"] = self._verdict(row[7:])
                req["state"] = req["verdict"]["state"]
            else:
                req["state"] = "pending"
            out.append(req)
        return out

    def resolve(self, ref: str) -> str:
        """An exact id or an unambiguous prefix of one -> the id; LookupError otherwise."""
        ref = ref.strip().lower()
        if not ref or not _ID_CHARS.issuperset(ref):
            raise LookupError(f"no request {ref!r} (see xguard pending)")
        rows = self._rows(
            "SELECT id FROM xguard.requests WHERE id LIKE %s ORDER BY id LIMIT 20", (ref + "%",)
        )
        return pick_request(ref, [str(r[0]) for r in rows])

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
        """Decide a request; the first decision wins (see the module docstring).

        `once_seconds` is how long a once-answer stays valid; the database
        keeps it with the decision, since the re-run may come from a process
        that reads another config.
        """
        if state not in STATES[1:]:
            raise ValueError(f"not a decision: {state}")
        req = self.get(rid)
        if req is None:
            raise LookupError(f"no request {rid!r}")
        body: dict[str, Any] = {"ts": utc_timestamp(), "uid": os.getuid(), "once": once_seconds}
        if reason:
            body["reason"] = reason
        if note:
            body["note"] = note
        if for_seconds and state == "approved":
            body["for"] = for_seconds
        if origin:
            body["origin"] = origin
        try:
            self._usable()
            with self.conn.transaction():
                rows = self._rows(
                    "INSERT INTO xguard.decisions (id, state, by, body) VALUES (%s, %s, %s, %s) "
                    "ON CONFLICT (id) DO NOTHING RETURNING id, state, by, role, at, body",
                    (rid, state, by, Jsonb(body)),
                )
                if not rows:
                    won = False
                else:
                    won = True
                    v = self._verdict(rows[0])
                    if log is not None:
                        # Inside the transaction: if the audit log cannot be
                        # written, the decision is rolled back, never seen.
                        log.append(
                            state,
                            **audit_fields(req),
                            reviewer=by,
                            note=note or reason,
                            reason=reason,
                            for_seconds=body.get("for"),
                            waited_ms=int((v["at"] - req.get("created", v["at"])) * 1000),
                            **({"origin": origin} if origin else {}),
                        )
        except psycopg.OperationalError as e:
            raise QueueError(
                f"approval queue unreachable: postgres at {self.where}: {_first_line(e)}"
            ) from e
        if not won:
            return False, self.verdict(rid) or {"id": rid, "state": "unknown"}
        return True, v

    def use_answer(self, key: str, now: float | None = None) -> dict[str, Any] | None:
        """The answer already given to this command (approved or denied), or None.

        A timed approval is used as is; a once-answer is used up by inserting
        into xguard.consumed (only one run can), and skipped while its own
        request still has a waiter, to whom it belongs.
        """
        rows = self._rows(
            "SELECT d.id, d.state, d.by, d.role, d.at, d.body, "
            "r.body, (c.id IS NOT NULL), "
            "d.at + COALESCE((d.body ->> 'for')::float8, (d.body ->> 'once')::float8, 3600) "
            "FROM xguard.decisions d JOIN xguard.requests r ON r.id = d.id "
            "LEFT JOIN xguard.consumed c ON c.id = d.id "
            "WHERE r.key = %s AND d.state IN ('approved', 'denied') "
            "AND d.at + COALESCE((d.body ->> 'for')::float8, (d.body ->> 'once')::float8, 3600) "
            "    > extract(epoch FROM clock_timestamp()) "
            "ORDER BY d.at DESC",
            (key,),
        )
        for row in rows:
            v = self._verdict(row[:6])
            body, used, until = row[6], row[7], row[8]
            if not isinstance(body, dict) or not _bound(key, body):
                self._warn(v["id"], "its key is not that of its command, cwd, session and profile")
                continue
            session = body.get("session")
            timed = v["state"] == "approved" and "for" in v
            answer = {
                "key": key,
                "id": v["id"],
                "state": v["state"],
                "once": not timed,
                "by": v["by"],
                "reason": v.get("reason"),
                "session": session,
                "at": v["at"],
                "until": until,
            }
            if timed:
                return answer
            if used:
                continue
            lk = _lock_key(v["id"])
            if not self._rows("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (lk,))[0][0]:
                continue  # its own waiter is still there: the answer is theirs
            try:
                took = self._rows(
                    "INSERT INTO xguard.consumed (id) VALUES (%s) "
                    "ON CONFLICT (id) DO NOTHING RETURNING id",
                    (v["id"],),
                )
            finally:
                self._rows("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (lk,))
            if took:
                return answer
        return None

    def consume_own_answer(self, ticket: Any) -> None:
        """The waiter got its answer itself: a once-answer is used up."""
        v = self.verdict(ticket.id)
        if v is not None and v["state"] in ("approved", "denied") and "for" not in v:
            self._rows(
                "INSERT INTO xguard.consumed (id) VALUES (%s) ON CONFLICT (id) DO NOTHING",
                (ticket.id,),
            )

    def sweep(self, log: Any = None, now: float | None = None) -> list[str]:
        """Expire overdue requests (audited by whoever wins). Old rows stay: the owner prunes."""
        rows = self._rows(
            "SELECT r.id FROM xguard.requests r WHERE r.expires <= extract(epoch FROM "
            "clock_timestamp()) AND NOT EXISTS (SELECT 1 FROM xguard.decisions d "
            "WHERE d.id = r.id) ORDER BY r.created"
        )
        expired = []
        for (rid,) in rows:
            won, _ = self.decide(rid, "expired", "xguard", log=log)
            if won:
                expired.append(rid)
        return expired

    def listener(self) -> PgListener | None:
        """A LISTENing session of its own (None when it cannot be had: then poll)."""
        try:
            conn = psycopg.connect(
                self.dsn, autocommit=True, connect_timeout=self.timeout, application_name="xguard"
            )
            conn.execute(f"LISTEN {CHANNEL_QUEUE}")
            conn.execute(f"LISTEN {CHANNEL_DECIDED}")
        except psycopg.Error:
            return None
        return PgListener(conn)

    def wake(self, msg: dict[str, Any]) -> None:
        """Nothing to do: the database's triggers notify every listener."""

    def ping(self) -> float:
        """Seconds one round trip takes (raises QueueError when the database is gone)."""
        t = time.monotonic()
        self._rows("SELECT 1")
        return time.monotonic() - t
