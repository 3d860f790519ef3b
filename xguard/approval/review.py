"""`xguard review`: the reviewer's live terminal (issue 3 item 3).

Pending requests, oldest first, with their age; a detail pane for the
selected one (command with control characters escaped, each unit with its
decision, rule and reason, cwd and git branch, session, profile, agent
process); keys ↑/↓ j/k move, a approve once, A approve for a while (asks how
long, default 15m), d deny (asks a reason), Enter full details, q quit. A
bell rings on each new request. The screen follows the spool within a second
(wake-up socket, re-read every POLL seconds as the fallback), fits 80x24,
redraws on resize and honours NO_COLOR (rich does). Several reviewers may
run at once: the first decision wins and the others show who made it.
A PRODUCTION request has a red, double-lined pane and a ‼ PRODUCTION ‼ badge,
so it stands out without colour too, and approving it asks for a `y`.

The only module that imports rich.live; nothing on the hot path imports it.
All text that comes from a request is shown through `printable` inside
rich `Text` objects, so neither terminal escapes nor rich markup in a command
can reach the reviewer's screen as anything but characters.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import termios
import time
import tty
from dataclasses import dataclass
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.layout import Layout
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from xguard.approval.backend import open_queue, reviewer_name
from xguard.approval.queue import POLL
from xguard.approval.wait import seen_as_production
from xguard.errors import XguardError
from xguard.paths import host_name
from xguard.util import format_age as age
from xguard.util import parse_duration
from xguard.util import printable

DEFAULT_FOR = "15m"
PROD_BADGE = "‼ PRODUCTION ‼"


def parse_keys(data: bytes) -> list[str]:
    """Bytes read from a cbreak terminal -> key names ('up', 'enter', 'a', …)."""
    text = data.decode("utf-8", "replace")
    keys = []
    i = 0
    seqs = {
        "[A": "up",
        "OA": "up",
        "[B": "down",
        "OB": "down",
        "[5~": "pgup",
        "[6~": "pgdn",
        "[H": "home",
        "OH": "home",
        "[F": "end",
        "OF": "end",
    }
    while i < len(text):
        c = text[i]
        if c == "\x1b":
            for seq, name in seqs.items():
                if text.startswith(seq, i + 1):
                    keys.append(name)
                    i += 1 + len(seq)
                    break
            else:
                if text.startswith("[", i + 1):  # an unknown CSI sequence: skip it whole
                    j = i + 2
                    while j < len(text) and not ("@" <= text[j] <= "~"):
                        j += 1
                    i = j + 1
                else:
                    keys.append("esc")
                    i += 1
            continue
        if c in "\r\n":
            keys.append("enter")
        elif c in "\x7f\x08":
            keys.append("backspace")
        elif c.isprintable():
            keys.append(c)
        i += 1
    return keys


@dataclass
class _Ask:
    """A one-line question in the footer (how long, why, are you sure)."""

    kind: str  # "for" | "reason" | "confirm" | "reset" (rid is then a session id)
    rid: str
    prompt: str
    buffer: str = ""
    then: str = ""  # for "confirm": what to do after a yes ("once" or a duration)


class Reviewer:
    """State and drawing of one reviewer's screen; `run()` drives it."""

    def __init__(self, gate: Any, console: Console, bell: bool = True) -> None:
        from xguard.approval.wait import settings

        self.gate = gate
        self.console = console
        self.bell = bell
        self.spool = open_queue(gate)
        self.log = gate.audit()
        self.once_seconds = settings(gate, None)[1]
        self.who = reviewer_name(self.spool)
        self.host = host_name()
        self.items: list[dict[str, Any]] = []
        self.sel = 0
        # None until the first load: no bell for what was already there.
        self.seen: set[str] | None = None
        self.mine: set[str] = set()
        self.details = False
        self.ask: _Ask | None = None
        self.status = ""
        self.quit = False
        self.last_load = 0.0
        # Sessions whose loop breaker tripped (issue 5): only a reviewer resets them.
        self.tripped: list[dict[str, Any]] = []
        # Requests this reviewer approved whose command has not ended yet: when
        # it does, the status line says how, and where its output is (issue 14).
        self.running: dict[str, float] = {}

    # -- data ---------------------------------------------------------------
    def reload(self) -> None:
        """Re-read the spool; ring for new requests; say who decided what vanished."""
        try:
            self.spool.sweep(self.log)
            current = self.spool.pending()
            for r in current:
                r["production"] = seen_as_production(self.gate, r)
        except XguardError as e:  # a shared queue out of reach: say so, retry next POLL
            self.status = f"{e.message}; retrying"
            self.last_load = time.monotonic()
            return
        from xguard.gate.limits import tripped_sessions

        self.tripped = tripped_sessions(self.gate.paths)
        self.last_load = time.monotonic()
        if self.running:
            self._ended()
        sel_id = self.items[self.sel]["id"] if self.items else None
        ids = {r["id"] for r in current}
        if self.seen is not None:
            new = [r for r in current if r["id"] not in self.seen]
            if new and (self.bell or any(r.get("bell") for r in new)):
                self._ring()
            if new:
                self.status = f"new request {new[-1]['id']}"
            for r in self.items:
                if r["id"] not in ids and r["id"] not in self.mine:
                    v = self.spool.verdict(r["id"]) or {}
                    self.status = f"{r['id']} {v.get('state', 'gone')} by {v.get('by', '?')}"
        self.seen = (self.seen or set()) | ids
        self.items = current
        if sel_id in ids:
            self.sel = next(i for i, r in enumerate(current) if r["id"] == sel_id)
        self.sel = max(0, min(self.sel, len(current) - 1))
        if self.ask is not None and self.ask.kind != "reset" and self.ask.rid not in ids:
            self.ask = None
        if not current:
            self.details = False

    def _ended(self) -> None:
        """Say which approved commands have ended, with the link to their output."""
        from xguard.audit.read import AuditReadError, Filter, tail

        try:
            ends = tail(self.log.path, 50, Filter(event=("exit",)))
        except AuditReadError:
            return
        for e in ends:
            rid = e.record.get("id")
            if rid in self.running:
                del self.running[rid]
                line = ended_line(e.record)
                # After "approved <id>" when that is still showing, else alone.
                self.status = f"{self.status} · {line}" if str(rid) in self.status else line
        for rid, since in list(self.running.items()):
            if time.monotonic() - since > 3600:  # it never ran (the agent gave up): stop looking
                del self.running[rid]

    def _ring(self) -> None:
        # Straight to the terminal: rich.live redirects sys.stdout.
        with contextlib.suppress(OSError):
            os.write(self.console.file.fileno(), b"\a")

    def selected(self) -> dict[str, Any] | None:
        """The request under the cursor."""
        return self.items[self.sel] if self.items else None

    def decide(
        self, rid: str, state: str, *, for_seconds: float | None = None, reason: str | None = None
    ) -> None:
        """Approve or deny; the first reviewer wins, the others are told."""
        self.mine.add(rid)
        try:
            won, v = self.spool.decide(
                rid,
                state,
                self.who,
                reason=reason,
                for_seconds=for_seconds,
                once_seconds=self.once_seconds,
                log=self.log,
            )
        except LookupError:
            won, v = False, {"state": "gone", "by": "?"}
        if won and state == "approved":
            self.running[rid] = time.monotonic()
        if won:
            how = (
                f" for {age(for_seconds)}"
                if for_seconds
                else (" once" if state == "approved" else "")
            )
            self.status = f"{state} {rid}{how}"
        else:
            self.status = f"{rid} was already {v.get('state')} by {v.get('by')}"
        self.reload()

    # -- keys ---------------------------------------------------------------
    def key(self, k: str) -> None:
        """Handle one key."""
        if self.ask is not None:
            self._ask_key(k)
            return
        r = self.selected()
        if k == "q":
            self.quit = True
        elif k in ("up", "k"):
            self.sel = max(0, self.sel - 1)
        elif k in ("down", "j"):
            self.sel = min(max(len(self.items) - 1, 0), self.sel + 1)
        elif k in ("pgup", "home", "g"):
            self.sel = 0
        elif k in ("pgdn", "end", "G"):
            self.sel = max(len(self.items) - 1, 0)
        elif k == "enter" and r is not None:
            self.details = not self.details
        elif k == "esc":
            self.details = False
        elif k == "a" and r is not None:
            if r.get("production"):
                self.ask = _Ask(
                    "confirm", r["id"], f"Approve {r['id']} on PRODUCTION once? [y/N] ", then="once"
                )
            else:
                self.decide(r["id"], "approved")
        elif k == "A" and r is not None:
            self.ask = _Ask("for", r["id"], f"Approve {r['id']} for how long? [{DEFAULT_FOR}] ")
        elif k == "d" and r is not None:
            self.ask = _Ask("reason", r["id"], f"Deny {r['id']}, reason: ")
        elif k == "R":
            if not self.tripped:
                self.status = "no tripped session"
            else:
                t = self.tripped[0]
                self.ask = _Ask(
                    "reset",
                    str(t["session"]),
                    f"Reset tripped session {t['session']} "
                    f"({t.get('why') or 'loop breaker'})? [y/N] ",
                )

    def _ask_key(self, k: str) -> None:
        a = self.ask
        assert a is not None
        if k == "esc":
            self.ask = None
            self.status = "cancelled"
        elif k == "backspace":
            a.buffer = a.buffer[:-1]
        elif k == "enter":
            self.ask = None
            self._submit(a)
        elif a.kind == "confirm":
            self.ask = None
            if k in ("y", "Y"):
                self._approve(a.rid, a.then)
            else:
                self.status = "not approved"
        elif a.kind == "reset":
            self.ask = None
            if k in ("y", "Y"):
                self._reset(a.rid)
            else:
                self.status = "not reset"
        elif len(k) == 1 and len(a.buffer) < 300:
            a.buffer += k

    def _submit(self, a: _Ask) -> None:
        if a.kind == "reason":
            self.decide(a.rid, "denied", reason=a.buffer.strip() or None)
        elif a.kind == "for":
            text = a.buffer.strip() or DEFAULT_FOR
            if not parse_duration(text):
                self.status = f"{text!r} is not a duration (like 30s, 15m, 2h)"
                return
            r = next((x for x in self.items if x["id"] == a.rid), None)
            if r is not None and r.get("production"):
                self.ask = _Ask(
                    "confirm", a.rid, f"Approve {a.rid} on PRODUCTION for {text}? [y/N] ", then=text
                )
            else:
                self._approve(a.rid, text)
        elif a.kind == "confirm":
            self.status = "not approved"

    def _reset(self, session_id: str) -> None:
        from xguard.gate.limits import reset_session as reset

        try:
            reset(self.gate.paths, session_id, self.who, self.log)
        except LookupError:
            self.status = f"no session {session_id}"
            return
        self.status = f"session {session_id} reset by {self.who}"
        self.tripped = [t for t in self.tripped if str(t["session"]) != session_id]

    def _approve(self, rid: str, how: str) -> None:
        self.decide(rid, "approved", for_seconds=None if how == "once" else parse_duration(how))

    # -- drawing ------------------------------------------------------------
    def render(self) -> RenderableType:
        """The whole screen for the current terminal size."""
        width, height = self.console.size
        body_h = max(height - 3, 4)
        layout = Layout()
        layout.split_column(
            Layout(self._header(), size=1), Layout(name="body"), Layout(self._footer(), size=2)
        )
        r = self.selected()
        if self.details and r is not None:
            layout["body"].update(self._detail(r, body_h, full=True))
        else:
            list_h = max(4, min(len(self.items) + 3, body_h // 2))
            if r is None:
                list_h = body_h
            layout["body"].split_column(
                Layout(self._list(list_h, width), size=list_h), Layout(name="detail")
            )
            if r is not None:
                layout["body"]["detail"].update(self._detail(r, body_h - list_h, full=False))
            else:
                layout["body"]["detail"].visible = False
        return layout

    def _header(self) -> RenderableType:
        grid = Table.grid(expand=True)
        grid.add_column(ratio=1)
        grid.add_column(justify="right")
        n = len(self.items)
        prod = sum(1 for r in self.items if r.get("production"))
        left = Text.assemble(("xguard review", "bold"), f" · {n} pending")
        if prod:
            left.append(f" · {prod} PRODUCTION", style="bold white on red")
        if self.tripped:
            left.append(f" · {len(self.tripped)} TRIPPED (R resets)", style="bold white on red")
        grid.add_row(
            left, Text(f"{self.who}@{self.host}  {time.strftime('%H:%M:%S')}", style="dim")
        )
        return grid

    def _list(self, h: int, width: int) -> RenderableType:
        if not self.items:
            msg = Text(
                "No pending requests. Waiting for new ones (a bell rings when one arrives).",
                style="dim",
            )
            return Panel(msg, title="pending", box=box.ROUNDED)
        rows = max(h - 3, 1)
        start = min(max(self.sel - rows + 1, 0), max(len(self.items) - rows, 0))
        start = min(start, self.sel)
        t = Table(box=None, expand=True, pad_edge=False, show_edge=False, header_style="bold")
        t.add_column(" ", width=1, no_wrap=True)
        t.add_column("ID", no_wrap=True, min_width=6)
        t.add_column("AGE", no_wrap=True, justify="right", min_width=4)
        t.add_column("PROFILE", no_wrap=True, max_width=14)
        if width >= 70:
            t.add_column("SESSION", no_wrap=True, max_width=10, overflow="ellipsis")
        t.add_column("COMMAND", no_wrap=True, overflow="ellipsis", ratio=1)
        now = time.time()
        for i, r in enumerate(self.items[start : start + rows], start):
            mark = ">" if i == self.sel else " "
            prof = Text(printable(str(r.get("profile") or "-"), 14))
            if r.get("production"):
                prof = Text("PRODUCTION", style="bold white on red")
            cells: list[Any] = [mark, r["id"], age(now - r.get("created", now)), prof]
            if width >= 70:
                cells.append(Text(printable(str(r.get("session") or "-"), 10)))
            cells.append(Text(printable(str(r.get("command", "")), 300)))
            t.add_row(*cells, style="reverse" if i == self.sel else None)
        more = len(self.items) - rows
        title = f"pending ({len(self.items)})" + (
            f" · {more} more, scroll with j/k" if more > 0 else ""
        )
        return Panel(t, title=title, title_align="left", box=box.ROUNDED)

    def _detail(self, r: dict[str, Any], h: int, full: bool) -> RenderableType:
        prod = bool(r.get("production"))
        now = time.time()
        limit = 4000 if full else 600
        # Two columns, so a long value wraps under itself, not under the labels.
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="bold", no_wrap=True, min_width=8)
        grid.add_column(overflow="fold", ratio=1)
        if full:
            created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.get("created", now)))
            grid.add_row("request", f"{r['id']} · created {created} · source {r.get('source')}")
        grid.add_row("command", Text(printable(str(r.get("command", "")), limit), style="bold"))
        for it in r.get("impact") or []:
            # issue 13: what the statement would touch, read before the units
            grid.add_row("impact", _impact_line(it, limit))
        if full and r.get("exec"):
            grid.add_row("runs", Text(printable(str(r["exec"]), limit), style="dim"))
        cwd = printable(str(r.get("cwd")), 300)
        if r.get("git_branch"):
            cwd += f"  (branch {printable(str(r['git_branch']), 60)})"
        grid.add_row("cwd", cwd)
        session = printable(str(r.get("session") or "-"), 40)
        sp = Text(f"{session}   profile {printable(str(r.get('profile') or '-'), 40)}")
        if prod:
            sp.append("  " + PROD_BADGE, style="bold white on red")
        grid.add_row("session", sp)
        grid.add_row(
            "agent",
            f"{printable(str(r.get('parent') or '?'), 40)} (pid {r.get('ppid')}) · "
            f"xguard pid {r.get('pid')} · {r.get('user')}@{r.get('host')}",
        )
        grid.add_row(
            "age",
            f"{age(now - r.get('created', now))} · expires in {age(r.get('expires', now) - now)}"
            + (f" · notify {', '.join(map(str, r['notify']))}" if r.get("notify") else ""),
        )
        units = Table.grid(padding=(0, 1))
        units.add_column(no_wrap=True)
        units.add_column(overflow="fold", ratio=1)
        for u in r.get("units") or []:
            d = str(u.get("decision"))
            style = {"allow": "green", "require_approval": "yellow", "deny": "bold red"}.get(d, "")
            t = Text(f"{u.get('kind', '')}: ", style="dim")
            t.append(printable(str(u.get("text", "")), limit), style="")
            if u.get("rule"):
                t.append(f"  [rule {printable(str(u['rule']), 80)}]", style="cyan")
            if d != "allow" and u.get("why"):
                t.append(f"\n└ {printable(str(u['why']), limit)}", style="dim")
            units.add_row(Text(d, style=style), t)
        grid.add_row("units", units)
        if full and r.get("rules"):
            grid.add_row("rules", "; ".join(printable(str(x), 300) for x in r["rules"]))
        title = Text.assemble(
            (f" {PROD_BADGE} ", "bold white on red") if prod else "", f" {r['id']} "
        )
        keys = "a approve · A approve for… · d deny · Enter back" if full else "Enter: all details"
        return Panel(
            grid,
            title=title,
            title_align="left",
            subtitle=keys,
            subtitle_align="right",
            box=box.DOUBLE if prod else box.ROUNDED,
            border_style="bold red" if prod else "blue",
            height=max(h, 3),
        )

    def _footer(self) -> RenderableType:
        wide = self.console.size.width >= 66
        keys = Text(
            "↑↓/jk move  a approve  A approve for…  d deny  ⏎ details  R reset  q quit"
            if wide
            else "jk · a/A approve · d deny · ⏎ · R reset · q quit",
            style="dim",
            no_wrap=True,
            overflow="ellipsis",
        )
        if self.ask is not None:
            # Keep the end of what is being typed in view.
            line = Text(self.ask.prompt, style="bold yellow", no_wrap=True, overflow="crop")
            room = max(self.console.size.width - len(self.ask.prompt) - 2, 8)
            line.append(self.ask.buffer[-room:] + "█")
        else:
            line = Text(self.status, no_wrap=True, overflow="ellipsis")
        return Group(keys, line)

    # -- the loop -------------------------------------------------------------
    def run(self) -> int:
        """Draw, read keys and wake-ups, until `q`."""
        fd = sys.stdin.fileno()
        saved = termios.tcgetattr(fd)
        rpipe, wpipe = os.pipe()
        os.set_blocking(wpipe, False)
        old_wakeup = signal.set_wakeup_fd(wpipe)
        # A handler (not SIG_DFL, which ignores it) so a resize wakes select().
        old_winch = signal.signal(signal.SIGWINCH, lambda *_: None)
        listener = self.spool.listener()
        try:
            tty.setcbreak(fd)
            with Live(
                console=self.console, screen=True, auto_refresh=False, transient=True
            ) as live:
                self.reload()
                live.update(self.render(), refresh=True)
                while not self.quit:
                    ready, _, _ = select.select(
                        [x for x in (fd, listener, rpipe) if x is not None], [], [], POLL
                    )
                    if rpipe in ready:
                        os.read(rpipe, 512)  # a resize (or another signal): just redraw
                    woken = False
                    if listener is not None and listener in ready:
                        listener.drain()
                        woken = True
                    if fd in ready:
                        data = os.read(fd, 1024)
                        if not data:
                            break
                        for k in parse_keys(data):
                            self.key(k)
                            if self.quit:
                                break
                    if woken or time.monotonic() - self.last_load >= POLL:
                        self.reload()
                    if not self.quit:
                        live.update(self.render(), refresh=True)
        finally:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
            signal.signal(signal.SIGWINCH, old_winch)
            signal.set_wakeup_fd(old_wakeup)
            os.close(rpipe)
            os.close(wpipe)
            if listener is not None:
                listener.close()
        return 0


def ended_line(rec: dict[str, Any]) -> str:
    """`<id> ran: exit N · output 12 bytes: xguard audit show <id>` for an exit record."""
    rid = rec.get("id")
    line = f"{rid} ran: exit {rec.get('exit_code')}"
    out = rec.get("output")
    if isinstance(out, dict) and out.get("file"):
        line += f" · output {out.get('bytes')} bytes: xguard audit show {rid}"
    elif isinstance(out, dict) and out.get("error"):
        line += f" · {out['error']}"
    return line


def _impact_line(it: dict[str, Any], limit: int) -> Text:
    from xguard.gate.impact import describe

    if "error" in it:
        return Text(printable(describe(it), limit), style="yellow")
    rows, total = it.get("rows"), it.get("table_rows")
    big = isinstance(rows, int) and isinstance(total, int) and total and rows * 2 > total
    return Text(printable(describe(it), limit), style="bold red" if big else "bold")


def review_main(gate: Any, bell: bool = True) -> int:
    """Run the reviewer's terminal on this process's terminal."""
    # COLUMNS/LINES exported by a shell are a snapshot; rich would obey them
    # forever and never follow a resize. The terminal's own size is the truth.
    for var in ("COLUMNS", "LINES"):
        os.environ.pop(var, None)
    console = Console()
    return Reviewer(gate, console, bell=bell).run()
