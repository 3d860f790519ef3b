"""`xguard review --web`: approve or deny from a browser or a phone (issue 15).

One page: the queue, kept live with server-sent events, each request with
its command, units, reasons, host, session, profile (production in a red
banner) and any impact figures; approve once or for a while, deny with a
reason. It works on whichever queue the config names (open_queue).

Starlette on uvicorn, not the standard library's http.server: that module
says of itself that it is not for exposed use, and this page may sit behind
a reverse proxy; uvicorn's h11 parser and Starlette's request handling are
small, maintained, and keep this file about security, not HTTP parsing.

Secure by default:

- it listens on 127.0.0.1 unless told otherwise;
- it prints a URL with a one-time token; the first visit trades it for a
  random session id in an HttpOnly, SameSite=Strict cookie and redirects to
  a URL without it; the token never works again;
- the session lives under a secret path, /s/KEY/, and its cookie is scoped to
  that path: browsers send a cookie to every port of a host (a page an agent
  serves on 127.0.0.1:3000 would receive it), but only to the paths it names;
  a session is accepted only with its cookie on its own path;
- every POST needs that session, a CSRF token bound to it, and an Origin
  header equal to the page's own origin (X-Forwarded-Host/-Proto and -For
  are believed only from the addresses in `web.trusted_proxies`);
- a refused request gets 403, changes nothing and is audited (web_refused),
  a few times a minute per reason and address, the rest counted (see
  _count_refusal): a page elsewhere must not be able to flood the log;
- approving a production request asks a second time;
- every decision records who made it and from where (the peer address, and
  when the peer is a trusted proxy the address it saw: the rightmost of
  X-Forwarded-For that is not itself a trusted proxy) in the queue and the log;
- a strict Content-Security-Policy: no inline script, no framing.

Request text is shown through `printable` and then HTML-escaped, so neither
markup nor terminal escapes in a command reach the page as anything but text.
The command is shown whole, never cut: one too long for a page (CMD_SHOWN)
can be denied here but approved only where it can be read in full.
"""

from __future__ import annotations

import asyncio
import html
import ipaddress
import secrets
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from xguard.approval.backend import open_queue, reviewer_name
from xguard.approval.queue import POLL
from xguard.approval.wait import seen_as_production
from xguard.errors import UsageError, XguardError
from xguard.util import format_age as age
from xguard.util import parse_duration, printable

COOKIE = "xguard_session"
SESSION_TTL = 12 * 3600
FOR_CHOICES = ("15m", "1h", "4h", "8h")
HEARTBEAT = 15.0
FORM_MAX = 8192
# Longer commands cannot be approved on the page (the terminal shows them whole).
CMD_SHOWN = 65536
REFUSALS_AUDITED = 5  # per reason and address, per minute
REFUSALS_AUDITED_ALL = 60  # of every kind and from everywhere, per minute
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # Not no-referrer: under it browsers send `Origin: null` on the page's own POSTs.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT`, `[V6]:PORT` or `PORT` -> (host, port); UsageError otherwise."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or int(port) > 65535:
        raise UsageError(f"--listen {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8765")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """Whether a listen address reaches only this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class Session:
    """A browser that traded the one-time token."""

    csrf: str
    addr: str
    key: str  # the secret path the session lives under: /s/KEY/
    created: float = field(default_factory=time.time)
    flash: list[str] = field(default_factory=list)


class Board:
    """The queue as the page shows it, re-read by one thread on every wake-up."""

    def __init__(self, gate: Any) -> None:
        self.gate = gate
        self.queue = open_queue(gate)
        self.log = gate.audit()
        self.lock = threading.Lock()
        self.items: list[dict[str, Any]] = []
        self.error: str | None = None
        self.version = 0
        self.changed: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self.stop = threading.Event()

    def reload(self) -> None:
        """Sweep and re-read; tell every page when something changed."""
        with self.lock:
            try:
                self.queue.sweep(self.log)
                items, error = self.queue.pending(), None
                for r in items:
                    r["production"] = seen_as_production(self.gate, r)
            except XguardError as e:  # out of reach: say so on the page, retry
                items, error = self.items, f"{e.message}; retrying"
        if [r["id"] for r in items] != [r["id"] for r in self.items] or error != self.error:
            self.items, self.error = items, error
            self.version += 1
            for loop, ev in list(self.changed):
                loop.call_soon_threadsafe(ev.set)

    def watch(self) -> None:
        """The watcher thread: wake-ups (NOTIFY or datagrams), else every POLL seconds."""
        import select

        waker = None
        while not self.stop.is_set():
            if waker is None:
                with self.lock:
                    waker = self.queue.listener()
            self.reload()
            try:
                ready, _, _ = select.select([waker] if waker else [], [], [], POLL)
            except (OSError, ValueError):
                ready = []
                waker = None
            if waker is not None and ready:
                waker.drain()

    def decide(self, rid: str, state: str, **kw: Any) -> tuple[bool, dict[str, Any]]:
        """Decide through the queue (first decision wins), then refresh."""
        from xguard.approval.wait import settings

        with self.lock:
            won, v = self.queue.decide(
                rid,
                state,
                reviewer_name(self.queue) + " (web)",
                once_seconds=settings(self.gate, None)[1],
                log=self.log,
                **kw,
            )
        self.reload()
        return won, v

    def find(self, rid: str) -> dict[str, Any] | None:
        """A pending request on the board by its exact id."""
        return next((r for r in self.items if r["id"] == rid), None)


# ---------------------------------------------------------------------------
# Rendering. Every value from a request goes through _t (printable, escaped).


def _t(value: Any, limit: int = 400) -> str:
    return html.escape(printable(str(value if value is not None else "-"), limit), quote=True)


def _impact(r: dict[str, Any]) -> str:
    imp = r.get("impact")
    if isinstance(imp, dict) and imp.get("error"):
        return f'<p class="impact err">impact preview failed: {_t(imp["error"], 300)}</p>'
    if not isinstance(imp, list) or not imp:
        return ""
    rows = []
    for i in imp:
        if not isinstance(i, dict):
            continue
        if i.get("error"):
            rows.append(f'<tr><td colspan="4">{_t(i.get("unit"))}: {_t(i["error"])}</td></tr>')
            continue
        total = f" of {_t(i.get('table_rows'))}" if i.get("table_rows") is not None else ""
        rows.append(
            f"<tr><td>{_t(i.get('table'), 80)}</td><td class=num>{_t(i.get('rows'), 20)}{total}"
            f"</td><td>{_t(i.get('method'), 10)}</td><td>{_t(i.get('statement'), 200)}</td></tr>"
        )
    return (
        '<table class="impact"><caption>impact</caption><tr><th>table</th><th>rows</th>'
        "<th>how</th><th>statement</th></tr>" + "".join(rows) + "</table>"
    )


def render_request(r: dict[str, Any], csrf: str, now: float) -> str:
    """One request as an <article>: details and its forms."""
    rid = _t(r["id"], 20)
    prod = bool(r.get("production"))
    banner = (
        '<p class="prod">‼ PRODUCTION ‼ profile '
        f"{_t(r.get('profile'), 40)}: approving asks twice</p>"
        if prod
        else ""
    )
    units = "".join(
        f'<li class="u-{_t(u.get("decision"), 20)}"><b>{_t(u.get("decision"), 20)}</b> '
        f"{_t(u.get('kind'), 20)}: <code>{_t(u.get('text'), 300)}</code>"
        + (f" <i>[{_t(u.get('rule'), 80)}]</i>" if u.get("rule") else "")
        + (
            f"<br><small>{_t(u.get('why'), 300)}</small>"
            if u.get("why") and u.get("decision") != "allow"
            else ""
        )
        + "</li>"
        for u in (r.get("units") or [])
        if isinstance(u, dict)
    )
    reasons = "".join(f"<li>{_t(x, 200)}</li>" for x in (r.get("reasons") or [])[:10])
    branch = f" ({_t(r.get('git_branch'), 60)})" if r.get("git_branch") else ""
    hidden = f'<input type="hidden" name="csrf" value="{html.escape(csrf)}">' + (
        f'<input type="hidden" name="id" value="{rid}">'
    )
    options = "".join(f'<option value="{d}">{d}</option>' for d in FOR_CHOICES)
    command = str(r.get("command"))
    if len(command) > CMD_SHOWN:
        approve = (
            f'<p class="err">The command is {len(command)} characters long, too long to show '
            "here: approve it in the terminal (xguard review), or deny it.</p>"
        )
    else:
        # Forms post to the page's own path (relative: /s/KEY/decide).
        approve = f"""<form method="post" action="decide" class="approve">{hidden}
<button name="action" value="approve" class="ok">Approve once</button>
<span class="for"><button name="action" value="approve_for" class="ok">Approve for</button>
<select name="for" aria-label="how long">{options}</select></span></form>"""
    return f"""<article id="r-{rid}" class="{"production" if prod else ""}">
{banner}<header><b class="rid">{rid}</b> <span>{_t(age(now - float(r.get("created") or now)))}
 ago</span> · host <b class="host">{_t(r.get("host"), 60)}</b></header>
<pre class="cmd">{_t(command[:CMD_SHOWN], CMD_SHOWN * 6)}</pre>
{approve}
<form method="post" action="decide" class="deny">{hidden}
<input name="reason" maxlength="300" placeholder="reason (the agent sees it)" aria-label="reason">
<button name="action" value="deny" class="no">Deny</button></form>
<dl><dt>session</dt><dd>{_t(r.get("session"), 60)}</dd>
<dt>profile</dt><dd>{_t(r.get("profile"), 60)}</dd>
<dt>cwd</dt><dd>{_t(r.get("cwd"), 300)}{branch}</dd>
<dt>agent</dt><dd>{_t(r.get("user"), 40)} · {_t(r.get("parent"), 40)}
 (pid {_t(r.get("ppid"), 12)})</dd>
</dl>
<ul class="reasons">{reasons}</ul><ul class="units">{units}</ul>{_impact(r)}
</article>"""


def render_queue(board: Board, csrf: str) -> str:
    """The live part of the page (also what each server-sent event carries)."""
    now = time.time()
    head = f'<p id="count">{len(board.items)} pending on {_t(board.queue.describe(), 200)}</p>'
    if board.error:
        head += f'<p class="err" id="qerr">{_t(board.error, 400)}</p>'
    if not board.items:
        return head + '<p class="empty">No pending requests.</p>'
    return head + "".join(render_request(r, csrf, now) for r in board.items)


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>xguard review</title><link rel="stylesheet" href="/static/app.css"></head>
<body><h1>xguard review <small>{who}</small></h1>{flash}
<main id="queue">{queue}</main>
<p id="live" class="dim">connecting…</p>
<script src="/static/app.js"></script></body></html>"""

CONFIRM = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Approve on PRODUCTION?</title><link rel="stylesheet" href="/static/app.css"></head>
<body><article class="production"><p class="prod">‼ PRODUCTION ‼</p>
<h1>Approve {rid} on production{how}?</h1><pre class="cmd">{cmd}</pre>
<form method="post" action="decide"><input type="hidden" name="csrf" value="{csrf}">
<input type="hidden" name="id" value="{rid}"><input type="hidden" name="for" value="{for_}">
<input type="hidden" name="confirm" value="yes">
<button name="action" value="{action}" class="ok" id="confirm">Yes, approve on production</button>
<a href="./">No, go back</a></form></article></body></html>"""

CSS = """
body{font:16px/1.4 system-ui,sans-serif;margin:0 auto;max-width:60em;padding:.5em;color:#111}
h1{font-size:1.2em}small,.dim{color:#666}
article{border:2px solid #8ab;border-radius:.5em;padding:.6em;margin:.8em 0;overflow-wrap:anywhere}
article.production{border:4px double #c00;background:#fff4f4}
.prod{background:#c00;color:#fff;font-weight:bold;padding:.3em .5em;margin:0 0 .4em}
pre.cmd{white-space:pre-wrap;background:#f3f3f3;padding:.4em;font-size:1.05em;margin:.4em 0}
dl{display:grid;grid-template-columns:auto 1fr;gap:0 .6em;margin:.3em 0}dt{color:#555}dd{margin:0}
ul{padding-left:1.2em;margin:.3em 0}.u-deny b{color:#c00}.u-require_approval b{color:#a60}
.u-allow b{color:#070}table.impact{border-collapse:collapse;margin:.4em 0}
.impact td,.impact th{border:1px solid #ccc;padding:.1em .3em}.num{text-align:right}
form{display:flex;flex-wrap:wrap;gap:.4em;margin:.4em 0;align-items:center}
button,select,input{font-size:1em;padding:.55em .8em;border-radius:.4em;border:1px solid #888}
input[name=reason]{flex:1 1 12em;min-width:0}button.ok{background:#063;color:#fff}
button.no{background:#900;color:#fff}.err{color:#fff;background:#900;padding:.3em}
.flash{background:#ffd;padding:.3em}
"""

JS = """
(function () {
  var live = document.getElementById('live');
  function apply(html) {
    var t = document.createElement('template');
    t.innerHTML = html;
    var main = document.getElementById('queue');
    var keep = {};
    t.content.querySelectorAll('article').forEach(function (a) { keep[a.id] = a; });
    main.querySelectorAll('article').forEach(function (a) {
      if (!keep[a.id]) { a.remove(); } else { delete keep[a.id]; }
    });
    // Requests already shown stay as they are: a half-typed reason survives.
    ['count', 'qerr'].forEach(function (id) {
      var old = document.getElementById(id), neu = t.content.getElementById(id);
      if (old) { old.remove(); }
      if (neu) { main.prepend(neu); }
    });
    main.querySelectorAll('p.empty').forEach(function (p) { p.remove(); });
    Object.keys(keep).forEach(function (id) { main.appendChild(keep[id]); });
    if (!main.querySelector('article')) {
      var e = t.content.querySelector('p.empty');
      if (e) { main.appendChild(e); }
    }
  }
  var es = new EventSource('events');  // relative: /s/KEY/events
  es.addEventListener('queue', function (ev) {
    apply(ev.data);
    live.textContent = 'live · ' + new Date().toLocaleTimeString();
  });
  es.onerror = function () { live.textContent = 'connection lost; retrying…'; };
})();
"""


# ---------------------------------------------------------------------------
class WebReview:
    """The application: one-time token, sessions, CSRF and origin checks, routes."""

    def __init__(self, gate: Any, trusted_proxies: list[str], port: int) -> None:
        self.gate = gate
        # Cookies ignore ports: two pages on one host must not log each other out.
        self.cookie = f"{COOKIE}_{port}"
        self.board = Board(gate)
        self.token: str | None = secrets.token_urlsafe(32)
        self.sessions: dict[str, Session] = {}
        self.trusted = set(trusted_proxies)
        # (reason, address) -> [minute, refusals in it]: see refuse().
        self.refusals: dict[tuple[str, str], list[int]] = {}
        self.app = Starlette(
            routes=[
                Route("/", self.index, methods=["GET"]),
                Route("/s/{key}/", self.page, methods=["GET"]),
                Route("/s/{key}/events", self.events, methods=["GET"]),
                Route("/s/{key}/decide", self.decide, methods=["POST"]),
                # The old places, and any session path not given: refused and audited.
                Route("/events", self.nowhere, methods=["GET"]),
                Route("/decide", self.nowhere, methods=["POST"]),
                Route("/static/app.css", self.css, methods=["GET"]),
                Route("/static/app.js", self.js, methods=["GET"]),
            ]
        )

    # -- who is asking --------------------------------------------------------
    def peer(self, request: Request) -> dict[str, Any]:
        """Where a request comes from: the peer, and from a trusted proxy the address it saw."""
        addr = request.client.host if request.client else "?"
        out: dict[str, Any] = {"via": "web", "addr": addr}
        if addr in self.trusted:
            seen = _proxied_client(request.headers.getlist("x-forwarded-for"), self.trusted)
            if seen:
                out["forwarded_for"] = seen
        return out

    def own_origin(self, request: Request) -> str:
        """The origin the page was served under (what a same-origin POST's Origin says)."""
        host = request.headers.get("host", "")
        scheme = request.url.scheme
        addr = request.client.host if request.client else ""
        if addr in self.trusted:
            # The value the proxy set: the last one (a proxy that appends keeps
            # the client's own, believed by nobody, in front of it).
            host = _last(request.headers.getlist("x-forwarded-host")) or host
            scheme = _last(request.headers.getlist("x-forwarded-proto")) or scheme
        return f"{scheme}://{host}"

    def session(self, request: Request) -> tuple[str, Session] | None:
        """The caller's live session, or None: its cookie, on its own secret path."""
        sid = request.cookies.get(self.cookie, "")
        key = str(request.path_params.get("key", ""))
        for known, s in self.sessions.items():
            if not (sid and key):
                break
            # Both compared in constant time: a cookie that reached another
            # port's server, or a path out of the history, is not enough alone.
            same_sid = secrets.compare_digest(sid.encode(), known.encode())
            same_key = secrets.compare_digest(key.encode(), s.key.encode())
            if same_sid and same_key and time.time() - s.created <= SESSION_TTL:
                return known, s
        return None

    def refuse(self, request: Request, why: str) -> Response:
        """403, nothing changed, and the attempt in the audit log (coalesced under a flood)."""
        peer = self.peer(request)
        record = self._count_refusal(why, peer)
        if record is not None:
            try:
                self.board.log.append(
                    "web_refused",
                    note=why,
                    origin={**peer, "path": request.url.path[:200]},
                    method=request.method,
                    **record,
                )
            except XguardError as e:
                sys.stderr.write(f"xguard: warning: {e.message}\n")
        body = (
            "<!doctype html><title>refused</title><p>xguard review: refused: "
            f"{html.escape(why)}. Open the URL that <code>xguard review --web</code> printed.</p>"
        )
        return HTMLResponse(body, status_code=403, headers=_SECURITY_HEADERS)

    def _count_refusal(self, why: str, peer: dict[str, Any]) -> dict[str, Any] | None:
        """Fields for this refusal's audit record, or None to leave it unrecorded.

        Every refusal was audited, and any page the reviewer's browser opens
        can send a request here (a no-cors fetch needs no permission): a loop
        of them would fill the log. So the first REFUSALS_AUDITED of a minute
        per reason and address are recorded (and REFUSALS_AUDITED_ALL of all:
        a local process can send from any of 127.0.0.0/8), then one saying
        that more are being counted; the next one recorded says how many
        were left out.
        """
        reason = why.partition(" (")[0]  # "foreign or missing Origin (x)" counts as one reason
        minute = int(time.monotonic() // 60)
        if len(self.refusals) > 1000:  # addresses of minutes ago: forget them
            self.refusals = {k: v for k, v in self.refusals.items() if v[0] == minute}
        fields: dict[str, Any] = {}
        record = True
        who = (reason, str(peer.get("forwarded_for") or peer["addr"]))
        for key, cap in ((who, REFUSALS_AUDITED), (("*", "*"), REFUSALS_AUDITED_ALL)):
            seen = self.refusals.setdefault(key, [minute, 0, 0])
            if seen[0] != minute:
                seen[:] = [minute, 0, seen[2]]
            seen[1] += 1
            if seen[1] > cap + 1:
                record = False
            elif seen[1] == cap + 1:
                fields["flood"] = "more refusals like this are counted this minute, not recorded"
        if not record:
            for key in (who, ("*", "*")):
                self.refusals[key][2] += 1
            return None
        left_out = sum(self.refusals[k][2] for k in (who, ("*", "*")))
        if left_out:
            fields["suppressed"] = left_out
            for key in (who, ("*", "*")):
                self.refusals[key][2] = 0
        return fields

    # -- routes ---------------------------------------------------------------
    async def nowhere(self, request: Request) -> Response:
        return self.refuse(request, "no session")

    async def index(self, request: Request) -> Response:
        token = request.query_params.get("token")
        if token is not None:
            return self._login(request, token)
        return self.refuse(request, "no session")

    async def page(self, request: Request) -> Response:
        got = self.session(request)
        if got is None:
            return self.refuse(request, "no session")
        _sid, s = got
        flash = "".join(f'<p class="flash">{html.escape(m)}</p>' for m in s.flash)
        s.flash.clear()
        page = PAGE.format(
            who=html.escape(reviewer_name(self.board.queue)),
            flash=flash,
            queue=render_queue(self.board, s.csrf),
        )
        return HTMLResponse(page, headers=_SECURITY_HEADERS)

    def _login(self, request: Request, token: str) -> Response:
        want = self.token
        if want is None or not secrets.compare_digest(token.encode(), want.encode()):
            return self.refuse(
                request, "bad or already used token" if want is None else "bad token"
            )
        self.token = None  # one use only
        sid = secrets.token_urlsafe(32)
        key = secrets.token_urlsafe(24)
        peer = self.peer(request)
        self.sessions[sid] = Session(csrf=secrets.token_urlsafe(32), addr=peer["addr"], key=key)
        try:
            self.board.log.append("web_session", origin=peer, note="token traded for a session")
        except XguardError as e:
            sys.stderr.write(f"xguard: warning: {e.message}\n")
        # Off the token, so it is not left in the address bar or history.
        home = f"/s/{key}/"
        resp = RedirectResponse(home, status_code=303, headers=_SECURITY_HEADERS)
        secure = self.own_origin(request).startswith("https:")
        resp.set_cookie(
            self.cookie,
            sid,
            max_age=SESSION_TTL,
            path=home,  # sent to no other path, on this port or any other
            httponly=True,
            samesite="strict",
            secure=secure,
        )
        return resp

    async def events(self, request: Request) -> Response:
        got = self.session(request)
        if got is None:
            return self.refuse(request, "no session")
        csrf = got[1].csrf
        loop = asyncio.get_running_loop()
        ev = asyncio.Event()
        entry = (loop, ev)
        self.board.changed.append(entry)

        async def stream() -> AsyncIterator[str]:
            try:
                seen = -1
                while True:
                    if seen != self.board.version:
                        seen = self.board.version
                        data = render_queue(self.board, csrf).replace("\n", " ")
                        yield f"event: queue\ndata: {data}\n\n"
                    try:
                        await asyncio.wait_for(ev.wait(), HEARTBEAT)
                    except TimeoutError:
                        yield ": still here\n\n"
                    ev.clear()
            finally:
                self.board.changed.remove(entry)

        headers = {**_SECURITY_HEADERS, "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    async def decide(self, request: Request) -> Response:
        got = self.session(request)
        if got is None:
            return self.refuse(request, "no session")
        _sid, s = got
        home = f"/s/{s.key}/"
        origin = request.headers.get("origin")
        if not origin or origin != self.own_origin(request):
            return self.refuse(request, f"foreign or missing Origin ({origin or 'none'})")
        form = await _form(request)
        if form is None:
            return self.refuse(request, "not a small url-encoded form")
        csrf = str(form.get("csrf") or "")
        if not csrf or not secrets.compare_digest(csrf.encode(), s.csrf.encode()):
            return self.refuse(request, "missing or wrong CSRF token")
        rid, action = str(form.get("id") or ""), str(form.get("action") or "")
        r = self.board.find(rid)
        if r is None:
            s.flash.append(f"{rid} is no longer pending")
            return RedirectResponse(home, status_code=303, headers=_SECURITY_HEADERS)
        peer = self.peer(request)
        if action == "deny":
            reason = str(form.get("reason") or "").strip()[:300] or None
            won, v = await asyncio.to_thread(
                self.board.decide, rid, "denied", reason=reason, origin=peer
            )
        elif action in ("approve", "approve_for"):
            for_text = str(form.get("for") or "") if action == "approve_for" else ""
            for_seconds = parse_duration(for_text) if for_text else None
            if for_text and not for_seconds:
                s.flash.append(f"{for_text!r} is not a duration")
                return RedirectResponse(home, status_code=303, headers=_SECURITY_HEADERS)
            if len(str(r.get("command"))) > CMD_SHOWN:
                s.flash.append(f"{rid} is too long to read here: approve it in the terminal")
                return RedirectResponse(home, status_code=303, headers=_SECURITY_HEADERS)
            if r.get("production") and form.get("confirm") != "yes":
                page = CONFIRM.format(
                    rid=_t(rid, 20),
                    how=f" for {html.escape(for_text)}" if for_text else " once",
                    cmd=_t(r.get("command"), CMD_SHOWN * 6),
                    csrf=html.escape(s.csrf),
                    for_=html.escape(for_text),
                    action=html.escape(action),
                )
                return HTMLResponse(page, headers=_SECURITY_HEADERS)
            won, v = await asyncio.to_thread(
                self.board.decide, rid, "approved", for_seconds=for_seconds, origin=peer
            )
        else:
            return self.refuse(request, f"unknown action {action[:40]!r}")
        if won:
            s.flash.append(f"{v['state']} {rid}")
        else:
            s.flash.append(f"{rid} was already {v.get('state')} by {v.get('by')}")
        return RedirectResponse(home, status_code=303, headers=_SECURITY_HEADERS)

    async def css(self, request: Request) -> Response:
        return Response(CSS, media_type="text/css", headers=_SECURITY_HEADERS)

    async def js(self, request: Request) -> Response:
        return Response(JS, media_type="text/javascript", headers=_SECURITY_HEADERS)


def _last(values: list[str]) -> str:
    """The last comma-separated item of a header that may repeat ("" when none)."""
    items = [i.strip() for v in values for i in v.split(",")]
    return items[-1] if items else ""


def _proxied_client(values: list[str], trusted: set[str]) -> str:
    """The address a chain of trusted proxies saw the request come from.

    X-Forwarded-For grows to the right: each proxy appends the peer it saw.
    Walking from the right past our own proxies, the first other entry is
    the one our outermost proxy wrote; everything left of it the client
    could have sent itself.
    """
    items = [i.strip() for v in values for i in v.split(",") if i.strip()]
    for item in reversed(items):
        if item not in trusted:
            return item[:64]
    return items[0][:64] if items else ""


async def _form(request: Request) -> dict[str, str] | None:
    """The posted form (url-encoded, at most FORM_MAX bytes), or None."""
    from urllib.parse import parse_qsl

    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_MAX:
            return None
    try:
        return dict(parse_qsl(body.decode("utf-8"), max_num_fields=20))
    except (UnicodeDecodeError, ValueError):
        return None


def serve(gate: Any, listen: str, trusted_proxies: list[str]) -> int:
    """Run the page until interrupted; print its one-time URL first."""
    import uvicorn

    host, port = parse_listen(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise UsageError(f"--listen {listen}: {e.strerror}") from e
    sock.listen(64)
    port = sock.getsockname()[1]
    web = WebReview(gate, trusted_proxies, port)
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    if not is_loopback(host):
        sys.stderr.write(
            f"xguard: warning: listening on {host}, not loopback: anyone who can reach it "
            "and learns the token gets the page; prefer ssh -L or a TLS reverse proxy\n"
        )
    sys.stdout.write(
        f"xguard review --web on {web.board.queue.describe()}\n"
        f"open http://{shown}:{port}/?token={web.token}\n"
        "(the token works once: it becomes this browser's session)\n"
    )
    sys.stdout.flush()
    watcher = threading.Thread(target=web.board.watch, name="xguard-web-watch", daemon=True)
    watcher.start()
    config = uvicorn.Config(
        web.app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        proxy_headers=False,  # X-Forwarded-* are read above, and only from trusted proxies
        timeout_graceful_shutdown=1,
    )
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        web.board.stop.set()
        sock.close()
    return 0
