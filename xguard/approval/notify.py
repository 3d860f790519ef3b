"""Notifications for a new pending request (SPEC §4, issue 3 item 6).

A rule's `notify: [NAME…]` names targets defined under `notify:` in the config:

    notify:
      "#ops":    {webhook: "https://hooks.slack.com/…", timeout: 5s, headers: {X-Token: …}}
      "@oncall": {command: ["notify-send", "xguard"]}
      review:    {bell: true}

A webhook gets an HTTP POST of a JSON body Slack accepts (`text`) plus the
request's structured fields; a command gets the same JSON on stdin; a bell
target marks the request so every `xguard review` rings for it, even one
started with `--no-bell`.

Sending never delays the gate: `dispatch` double-forks a detached child (its
own session, stdio on /dev/null, every inherited descriptor closed, so it
holds neither the agent's pipes nor the waiter's lock) and returns at once.
The child sends to all targets in parallel, each with its timeout, and
records each failure in the audit log as `notify_failed`. Heavy modules
(urllib, subprocess, threading) are imported in the child only.
"""

from __future__ import annotations

import json
import os
import signal
import sys

TYPE_CHECKING = False  # typing costs ~3 ms to import on the hot path; type checkers see True

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

DEFAULT_TIMEOUT = 5.0
# What a notification command may see of the agent's environment: enough for
# desktop notifiers, nothing that could carry the agent's secrets.
COMMAND_ENV = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "TZ",
    "DISPLAY",
    "WAYLAND_DISPLAY",
    "DBUS_SESSION_BUS_ADDRESS",
    "XDG_RUNTIME_DIR",
)


def _slack_escape(s: str) -> str:
    # Slack reads &, < and > as markup (links, mentions); a command must not.
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def payload(request: dict[str, Any]) -> dict[str, Any]:
    """The JSON every target gets: Slack's `text` plus the request's fields."""
    from xguard.audit.log import utc_timestamp
    from xguard.util import printable

    rid = request["id"]
    cmd = printable(str(request.get("command", "")), 300)
    why = "; ".join(request.get("reasons") or []) or "needs approval"
    where = f"{request.get('user')}@{request.get('host')}"
    prod = " *PRODUCTION*" if request.get("production") else ""
    text = (
        f"xguard: approval needed{prod} [{rid}] {where} in {request.get('cwd')}\n"
        f"`{cmd}`\n{why}\n"
        f"xguard approve {rid}   ·   xguard deny {rid}"
    )
    fields = (
        "session",
        "profile",
        "production",
        "user",
        "host",
        "pid",
        "parent",
        "cwd",
        "git_branch",
        "units",
        "reasons",
        "rules",
        "notify",
        "source",
        "impact",
    )
    body: dict[str, Any] = {
        "text": _slack_escape(text),
        "event": "pending",
        "id": rid,
        "command": request.get("command"),
    }
    body.update((k, request.get(k)) for k in fields)
    for k in ("created", "expires"):
        if request.get(k) is not None:
            body[k] = utc_timestamp(int(request[k] * 1e9))
    body["approve"] = f"xguard approve {rid}"
    body["deny"] = f"xguard deny {rid}"
    return body


def dispatch(
    targets: dict[str, Any],
    names: list[str],
    request: dict[str, Any],
    log_factory: Callable[[], Any],
) -> None:
    """Send `request` to the named targets in a detached child; return at once.

    `log_factory()` opens the audit log in the child (the parent's log object
    may hold descriptors the child closes).
    """
    jobs = [(n, targets.get(n)) for n in names]
    jobs = [(n, t) for n, t in jobs if t is None or t.get("webhook") or t.get("command")]
    if not jobs:
        return
    try:
        pid = os.fork()
    except OSError as e:
        _log_failures(
            log_factory, request, [(n, f"cannot start the sender: {e.strerror}") for n, _ in jobs]
        )
        return
    if pid:
        # The middle child exits at once; reaping it leaves no zombie behind.
        os.waitpid(pid, 0)
        return
    try:
        os.setsid()
        if os.fork():
            os._exit(0)
        _detach()
        _send_all(jobs, request, log_factory)
    except BaseException:  # noqa: S110  # a sender never reports back to a gate that has moved on
        pass
    finally:
        os._exit(0)


def _detach() -> None:
    # SIGPIPE stays ignored (Python's default): a target command that does not
    # read its stdin must give an error here, not kill the sender.
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_DFL)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    # The waiter's flock on its request and its wake socket must not live on here.
    os.closerange(3, _max_fd())
    sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115


def _max_fd() -> int:
    try:
        return max(int(n) for n in os.listdir("/proc/self/fd")) + 1
    except (OSError, ValueError):
        return os.sysconf("SC_OPEN_MAX")


def _send_all(
    jobs: list[tuple[str, dict[str, Any] | None]],
    request: dict[str, Any],
    log_factory: Callable[[], Any],
) -> None:
    import threading

    body = json.dumps(payload(request), ensure_ascii=False).encode("utf-8", "surrogateescape")
    failures: list[tuple[str, str]] = []

    def one(name: str, target: dict[str, Any] | None) -> None:
        try:
            if target is None:
                raise _Failure("no such target under notify: in the config")
            err = send_one(target, body, request["id"])
        except _Failure as e:
            err = str(e)
        except Exception as e:  # any bug in one target must not hide the others' failures
            err = f"{type(e).__name__}: {e}"
        if err:
            failures.append((name, err))

    threads = [threading.Thread(target=one, args=job, daemon=True) for job in jobs]
    for t in threads:
        t.start()
    longest = max(_timeout(t) for _, t in jobs if t) if any(t for _, t in jobs) else DEFAULT_TIMEOUT
    for t in threads:
        t.join(longest + 2)
    stuck = [name for (name, _), t in zip(jobs, threads, strict=True) if t.is_alive()]
    failures += [(n, "did not finish in time") for n in stuck if n not in {f for f, _ in failures}]
    if failures:
        _log_failures(log_factory, request, failures)


class _Failure(Exception):
    pass


def _timeout(target: dict[str, Any]) -> float:
    from xguard.util import parse_duration

    t = parse_duration(target.get("timeout", DEFAULT_TIMEOUT))
    return t if t else DEFAULT_TIMEOUT


def send_one(target: dict[str, Any], body: bytes, rid: str) -> str | None:
    """Deliver one notification synchronously; an error message, or None on success."""
    timeout = _timeout(target)
    errors = []
    if target.get("webhook"):
        errors.append(_post(target["webhook"], body, target.get("headers") or {}, timeout))
    if target.get("command"):
        errors.append(_run(target["command"], body, rid, timeout))
    return "; ".join(e for e in errors if e) or None


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> str | None:
    import urllib.error
    import urllib.request

    if not url.startswith(("http://", "https://")):
        return f"webhook {url!r}: only http:// and https:// URLs are sent to"
    req = urllib.request.Request(  # noqa: S310  # the scheme is checked above
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "xguard", **headers},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            resp.read(65536)
            status = resp.status
    except urllib.error.HTTPError as e:
        return f"webhook answered HTTP {e.code}"
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        return f"webhook failed: {reason}"
    return None if 200 <= status < 300 else f"webhook answered HTTP {status}"


def _run(argv: list[str], body: bytes, rid: str, timeout: float) -> str | None:
    import subprocess

    env = {k: v for k, v in os.environ.items() if k in COMMAND_ENV}
    env["XGUARD_REQUEST_ID"] = rid
    try:
        p = subprocess.run(
            argv,
            input=body,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=timeout,
            env=env,
            check=False,
            start_new_session=True,
        )
    except subprocess.TimeoutExpired:
        return f"command {argv[0]} did not finish within {timeout:g}s"
    except OSError as e:
        return f"command {argv[0]}: {e.strerror}"
    if p.returncode != 0:
        tail = p.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] if p.stderr else []
        return f"command {argv[0]} exited {p.returncode}" + (f": {tail[0][:200]}" if tail else "")
    return None


def _log_failures(
    log_factory: Callable[[], Any], request: dict[str, Any], failures: list[tuple[str, str]]
) -> None:
    from xguard.approval.queue import audit_fields

    try:
        log = log_factory()
        for name, err in failures:
            log.append("notify_failed", **audit_fields(request), target=name, error=err)
    except Exception:  # noqa: S110  # nowhere left to report to; the gate must not break
        pass
