"""Which approval queue a process uses, and what every queue offers (issue 15).

Two backends satisfy `Queue`: the file spool of one machine
(xguard/approval/queue.py, the default) and PostgreSQL shared by many hosts
(xguard/approval/pgqueue.py, when the config says `queue: {postgres: DSN}`).
The waiting agent (wait.py), the reviewer's terminal (review.py), the web
page (web.py) and the reviewer's verbs (commands/approval_cmd.py) all get
theirs from `open_queue`, so they never learn which one it is.

Standard library only: the agent imports this on its approval path, and the
database driver is imported only when a postgres queue is configured.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~3 ms to import on the hot path; type checkers see True

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, Protocol

    class Ticket(Protocol):
        """A request this process waits on; while held, others see a waiter."""

        id: str
        request: dict[str, Any]

        def release(self) -> None: ...

    class Waker(Protocol):
        """Something to select() on that becomes readable when the queue changed."""

        def fileno(self) -> int: ...

        def drain(self) -> list[dict[str, Any]]: ...

        def close(self) -> None: ...

    class Queue(Protocol):
        """Pending requests, first-wins decisions and the answers re-runs get."""

        def ensure(self) -> Queue: ...

        def create(self, request: dict[str, Any], new_id: Callable[[], str]) -> Ticket: ...

        def adopt(self, key: str, now: float | None = None) -> Ticket | None: ...

        def get(self, rid: str) -> dict[str, Any] | None: ...

        def verdict(self, rid: str) -> dict[str, Any] | None: ...

        def read_verdict(self, rid: str) -> tuple[dict[str, Any] | None, str | None]: ...

        def pending(self) -> list[dict[str, Any]]: ...

        def all(self) -> list[dict[str, Any]]: ...

        def resolve(self, ref: str) -> str: ...

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
        ) -> tuple[bool, dict[str, Any]]: ...

        def use_answer(self, key: str, now: float | None = None) -> dict[str, Any] | None: ...

        def consume_own_answer(self, ticket: Ticket) -> None: ...

        def sweep(self, log: Any = None, now: float | None = None) -> list[str]: ...

        def listener(self) -> Waker | None: ...

        def wake(self, msg: dict[str, Any]) -> None: ...

        def describe(self) -> str: ...

        def close(self) -> None: ...


def postgres_dsn(ruleset: Any) -> str | None:
    """The configured `queue: {postgres: DSN}`, or None for the file spool."""
    conf = ruleset.setting("queue") or {}
    dsn = conf.get("postgres") if isinstance(conf, dict) else None
    return dsn or None


def open_queue(gate: Any) -> Queue:
    """The approval queue the config names: PostgreSQL, else this host's file spool."""
    dsn = postgres_dsn(gate.ruleset)
    if dsn:
        from xguard.approval.pgqueue import PgQueue

        timeout = (gate.ruleset.setting("queue") or {}).get("connect_timeout")
        return PgQueue(dsn, connect_timeout=timeout)
    from xguard.approval.queue import Spool

    return Spool(gate.paths).ensure()


def reviewer_name(queue: Any) -> str:
    """Who decides: the user, and on a queue shared by hosts also where (user@host)."""
    from xguard.approval.queue import Spool
    from xguard.paths import host_name
    from xguard.util import user_name

    return user_name() if isinstance(queue, Spool) else f"{user_name()}@{host_name()}"
