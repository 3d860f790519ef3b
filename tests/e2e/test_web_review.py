"""`xguard review --web` driven in a real headless Chromium (issue 15), on the
file spool and on a real PostgreSQL queue alike."""

from __future__ import annotations

import http.server
import json
import os
import signal
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.conftest import xguard_exe

selenium = pytest.importorskip("selenium")  # the `test` extra installs it; CI too
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

XG = xguard_exe()
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PHONE = (390, 844)
PROFILES = "profiles:\n  production:\n    production: true\n"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # the tests run as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
    ):
        opts.add_argument(arg)
    # A phone's viewport (headless windows will not get narrower than ~500 px).
    opts.add_experimental_option(
        "mobileEmulation",
        {"deviceMetrics": {"width": PHONE[0], "height": PHONE[1], "pixelRatio": 1.0}},
    )
    driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


@dataclass
class Site:
    url: str  # the one-time URL the server printed
    base: str
    agent_env: dict[str, str]
    reviewer_home: Path
    work: Path
    proc: subprocess.Popen[str]

    def start(self, command: str, **extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*XG, "-c", command],
            env={**self.agent_env, "XGUARD_WAIT": "60", **extra},
            cwd=self.work,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def audit(self) -> list[dict[str, Any]]:
        f = self.reviewer_home / "audit" / "audit.jsonl"
        return [json.loads(x) for x in f.read_text().splitlines()] if f.exists() else []

    def pending_ids(self) -> list[str]:
        p = subprocess.run(
            [*XG, "pending", "--json"],
            env={**os.environ, "XGUARD_HOME": str(self.reviewer_home)},
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return [r["id"] for r in json.loads(p.stdout)]


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XGUARD_")}
    return {**env, **extra}


@pytest.fixture(params=["file", "postgres"])
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    work = tmp_path / "work"
    work.mkdir()
    if request.param == "file":
        home = tmp_path / "one-host"
        home.mkdir()
        (home / "config.yaml").write_text(PROFILES)
        agent_env = _clean_env(XGUARD_HOME=str(home))
        reviewer_home = home
    else:
        pg = request.getfixturevalue("pg_server")
        db = pg.new_database()
        agent_home, reviewer_home = tmp_path / "hosta", tmp_path / "revhost"
        for home, role in ((agent_home, "xguard_agent_hosta"), (reviewer_home, "xguard_rev_web")):
            home.mkdir()
            (home / "config.yaml").write_text(
                f'queue:\n  postgres: "{pg.dsn(role, db)}"\n{PROFILES}'
            )
        init = ["db", "init", "--dsn", pg.dsn(db=db), "--agent", "hosta"]
        subprocess.run(
            [*XG, *init, "--reviewer", "xguard_rev_web@revhost"],
            env=_clean_env(XGUARD_HOME=str(reviewer_home)),
            capture_output=True,
            check=True,
            timeout=60,
        )
        agent_env = _clean_env(XGUARD_HOME=str(agent_home), XGUARD_HOST="hosta")
    proc = subprocess.Popen(
        [*XG, "review", "--web", "--listen", "127.0.0.1:0"],
        env=_clean_env(XGUARD_HOME=str(reviewer_home), XGUARD_HOST="revhost"),
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = ""
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("open http"):
            url = line.split()[1]
            break
    assert url, proc.stderr.read() if proc.stderr else ""
    try:
        yield Site(url, url.split("/?")[0], agent_env, reviewer_home, work, proc)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _login(browser: webdriver.Chrome, site: Site) -> str:
    """Log in; -> the session's page, http://127.0.0.1:PORT/s/KEY/."""
    browser.delete_all_cookies()
    browser.get(site.url)
    # Traded for a cookie and sent on to a URL without the token; the queue is live.
    assert "token" not in browser.current_url
    assert browser.current_url.startswith(site.base + "/s/")
    WebDriverWait(browser, 20).until(ec.text_to_be_present_in_element((By.ID, "live"), "live ·"))
    return str(browser.current_url)


def _article(browser: webdriver.Chrome, timeout: float = 20) -> Any:
    return WebDriverWait(browser, timeout).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, "article"))
    )


def _status(url: str, *, data: bytes | None = None, headers: dict[str, str] | None = None) -> int:
    # Always http://127.0.0.1:PORT of the server under test.
    req = urllib.request.Request(url, data=data, headers=headers or {})  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


# ---------------------------------------------------------------------------
def test_approve_and_deny_by_click(browser: webdriver.Chrome, site: Site) -> None:
    _login(browser, site)
    # The request arrives after the page was loaded: server-sent events bring it.
    agent = site.start("touch clicked && echo ran")
    art = _article(browser)
    rid = art.get_attribute("id")[2:]
    assert "touch clicked" in art.find_element(By.CSS_SELECTOR, "pre.cmd").text
    art.find_element(By.CSS_SELECTOR, "button[value=approve]").click()
    out, err = agent.communicate(timeout=20)
    assert agent.returncode == 0 and out == "ran\n", err
    assert (site.work / "clicked").exists()
    rec = next(r for r in site.audit() if r["event"] == "approved" and r["id"] == rid)
    assert rec["reviewer"].endswith("(web)")
    assert rec["origin"]["via"] == "web" and rec["origin"]["addr"] == "127.0.0.1"

    agent = site.start("touch refused")
    WebDriverWait(browser, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, "article"))
    art = _article(browser)
    art.find_element(By.CSS_SELECTOR, "input[name=reason]").send_keys("not on a Friday")
    art.find_element(By.CSS_SELECTOR, "button[value=deny]").click()
    _out, err = agent.communicate(timeout=20)
    assert agent.returncode == 77 and "not on a Friday" in err
    assert not (site.work / "refused").exists()


def test_production_approval_asks_twice(browser: webdriver.Chrome, site: Site) -> None:
    _login(browser, site)
    agent = site.start("touch prod-change", XGUARD_PROFILE="production")
    art = _article(browser)
    assert "PRODUCTION" in art.find_element(By.CSS_SELECTOR, ".prod").text
    art.find_element(By.CSS_SELECTOR, "button[value=approve]").click()
    confirm = WebDriverWait(browser, 10).until(ec.element_to_be_clickable((By.ID, "confirm")))
    assert "on production" in browser.find_element(By.TAG_NAME, "h1").text
    time.sleep(0.5)
    assert agent.poll() is None  # the first click approved nothing
    confirm.click()
    _out, err = agent.communicate(timeout=20)
    assert agent.returncode == 0, err


def test_page_without_the_token_is_refused(browser: webdriver.Chrome, site: Site) -> None:
    assert _status(site.base + "/") == 403
    assert _status(site.base + "/?token=not-the-token") == 403
    assert _status(site.base + "/events") == 403
    _login(browser, site)
    # The token worked once; replayed, it is refused.
    assert _status(site.url) == 403
    refused = [r["note"] for r in site.audit() if r["event"] == "web_refused"]
    assert refused == ["no session", "bad token", "no session", "bad or already used token"]


def _send_page(handler: http.server.BaseHTTPRequestHandler, body: bytes) -> None:
    """Answer a GET with an HTML page (the other sites these tests serve)."""
    handler.send_response(200)
    handler.send_header("Content-Type", "text/html")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


class _EvilPage(http.server.BaseHTTPRequestHandler):
    target = ""
    rid = ""

    def do_GET(self) -> None:  # another site, auto-submitting a form to the review page
        body = (
            f'<form id=f method=post action="{self.target}/decide">'
            f'<input name=id value="{self.rid}"><input name=action value=approve></form>'
            "<script>document.getElementById('f').submit()</script>"
        ).encode()
        _send_page(self, body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_forged_cross_site_post_is_refused(browser: webdriver.Chrome, site: Site) -> None:
    agent = site.start("touch forged")
    try:
        home = _login(browser, site)
        rid = _article(browser).get_attribute("id")[2:]
        port = site.base.rsplit(":", 1)[1]
        cookie = browser.get_cookie(f"xguard_session_{port}")
        assert cookie and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        jar = f"{cookie['name']}={cookie['value']}"
        form = f"id={rid}&action=approve".encode()
        ctype = "application/x-www-form-urlencoded"
        # With the cookie but without the CSRF token: refused.
        assert (
            _status(
                home + "decide",
                data=form,
                headers={"Cookie": jar, "Origin": site.base, "Content-Type": ctype},
            )
            == 403
        )
        # With the CSRF token too, but from a foreign origin: refused.
        mine = urllib.request.Request(home, headers={"Cookie": jar})  # noqa: S310
        page = urllib.request.urlopen(mine, timeout=10).read()  # noqa: S310
        csrf = page.split(b'name="csrf" value="')[1].split(b'"')[0].decode()
        data = form + f"&csrf={csrf}".encode()
        for origin in ("http://evil.example", None):
            hdrs = {"Cookie": jar, "Content-Type": ctype, **({"Origin": origin} if origin else {})}
            assert _status(home + "decide", data=data, headers=hdrs) == 403
        # A real cross-site page in the same browser: the Strict cookie is not even sent.
        _EvilPage.target, _EvilPage.rid = home.rstrip("/"), rid
        evil = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EvilPage)
        threading.Thread(target=evil.serve_forever, daemon=True).start()
        try:
            browser.get(f"http://localhost:{evil.server_address[1]}/")
            WebDriverWait(browser, 10).until(lambda d: "refused" in d.page_source)
        finally:
            evil.shutdown()
        assert agent.poll() is None and site.pending_ids() == [rid]
        notes = [r["note"] for r in site.audit() if r["event"] == "web_refused"]
        assert notes[-4:] == [
            "missing or wrong CSRF token",
            "foreign or missing Origin (http://evil.example)",
            "foreign or missing Origin (none)",
            "no session",
        ]
    finally:
        agent.kill()
        agent.communicate()


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", head[16:24])
    return int(w), int(h)


def test_phone_width_screenshot_shows_the_queue(
    browser: webdriver.Chrome, site: Site, tmp_path: Path
) -> None:
    agents = [
        site.start(
            "kubectl --context prod rollout restart deploy/api", XGUARD_PROFILE="production"
        ),
        site.start("rm -rf build/ && make release"),
    ]
    try:
        _login(browser, site)
        WebDriverWait(browser, 20).until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, "article")) == 2
        )
        width = browser.execute_script("return document.documentElement.clientWidth")
        scroll = browser.execute_script("return document.documentElement.scrollWidth")
        assert width <= PHONE[0] and scroll <= width  # no sideways scrolling on a phone
        shot = tmp_path / "review-phone.png"
        assert browser.save_screenshot(str(shot))
        w, _h = _png_size(shot)
        assert w == PHONE[0]
        assert shot.stat().st_size > 20_000  # a page with content, not a blank one
        print(f"screenshot: {shot}")
    finally:
        for a in agents:
            a.kill()
            a.communicate()


def _web_on(home: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [*XG, "review", "--web", "--listen", "127.0.0.1:0", *extra],
        env=_clean_env(XGUARD_HOME=str(home)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    url = next(line for line in proc.stdout if line.startswith("open http")).split()[1]
    return proc, url


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_page_says_when_the_database_is_away_and_recovers(
    browser: webdriver.Chrome, tmp_path: Path
) -> None:
    from tests.pgcluster import PgCluster

    pg = PgCluster()  # its own server: this test takes it down
    try:
        db = pg.new_database()
        home = tmp_path / "revhost"
        home.mkdir()
        (home / "config.yaml").write_text(f'queue:\n  postgres: "{pg.dsn("xguard_rev_out", db)}"\n')
        subprocess.run(
            [*XG, "db", "init", "--dsn", pg.dsn(db=db), "--reviewer", "xguard_rev_out"],
            env=_clean_env(XGUARD_HOME=str(home)),
            capture_output=True,
            check=True,
            timeout=60,
        )
        proc, url = _web_on(home)
        try:
            browser.delete_all_cookies()
            browser.get(url)
            wait = WebDriverWait(browser, 30)
            wait.until(ec.text_to_be_present_in_element((By.ID, "count"), "0 pending"))
            pg.stop_server()
            wait.until(ec.text_to_be_present_in_element((By.ID, "qerr"), "unreachable"))
            assert "retrying" in browser.find_element(By.ID, "qerr").text
            pg.start_server()
            wait.until(ec.invisibility_of_element_located((By.ID, "qerr")))
        finally:
            _stop(proc)
    finally:
        pg.stop()


def test_behind_a_trusted_reverse_proxy(tmp_path: Path) -> None:
    home = tmp_path / "h"
    home.mkdir()
    agent_env = _clean_env(XGUARD_HOME=str(home), XGUARD_WAIT="30")
    agent = subprocess.Popen(
        [*XG, "-c", "touch proxied"],
        env=agent_env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # The page has a form only once the request is queued, which the agent
    # announces after writing it.
    assert agent.stderr is not None
    waiting = agent.stderr.readline()
    assert waiting.startswith("xguard: waiting for approval "), waiting
    proxy = {
        "X-Forwarded-For": "203.0.113.7",
        "X-Forwarded-Host": "xg.example.com",
        "X-Forwarded-Proto": "https",
    }
    try:
        for trusted in (False, True):
            proc, url = _web_on(home, *(["--trust-proxy", "127.0.0.1"] if trusted else []))
            base = url.split("/?")[0]
            try:
                # What the proxy passes on: the browser's Origin is the public one.
                login = urllib.request.Request(url, headers=proxy)  # noqa: S310
                opener = urllib.request.build_opener(_NoRedirect)
                try:
                    opener.open(login, timeout=10)
                except urllib.error.HTTPError as e:
                    assert e.code == 303
                    cookie = e.headers["Set-Cookie"]
                    own = base + e.headers["Location"]  # the session's own path
                assert ("Secure" in cookie) is trusted  # https as the proxy says, if believed
                jar = cookie.split(";")[0]
                mine = urllib.request.Request(own, headers={"Cookie": jar, **proxy})  # noqa: S310
                page = opener.open(mine, timeout=10).read()
                csrf = page.split(b'name="csrf" value="')[1].split(b'"')[0].decode()
                rid = page.split(b'name="id" value="')[1].split(b'"')[0].decode()
                status = _status(
                    own + "decide",
                    data=f"id={rid}&action=approve&csrf={csrf}".encode(),
                    headers={
                        "Cookie": jar,
                        "Origin": "https://xg.example.com",
                        "Content-Type": "application/x-www-form-urlencoded",
                        **proxy,
                    },
                )
                # Untrusted, the forwarded host is ignored, so the Origin is foreign.
                assert status == (200 if trusted else 403)  # 200: the redirect, followed
            finally:
                _stop(proc)
        _out, err = agent.communicate(timeout=20)
        assert agent.returncode == 0, err
    finally:
        agent.kill()
    audit = [json.loads(x) for x in (home / "audit" / "audit.jsonl").read_text().splitlines()]
    approved = next(r for r in audit if r["event"] == "approved")
    assert approved["origin"] == {"via": "web", "addr": "127.0.0.1", "forwarded_for": "203.0.113.7"}
    refused = [r for r in audit if r["event"] == "web_refused"]
    assert refused[-1]["note"] == "foreign or missing Origin (https://xg.example.com)"
    assert "forwarded_for" not in refused[-1]["origin"]  # not believed from an untrusted peer


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class _AgentsDevServer(http.server.BaseHTTPRequestHandler):
    """A page an agent serves on another port of the same host; keeps the cookies it got."""

    cookies: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.cookies.append(self.headers.get("Cookie") or "")
        body = b"<!doctype html><title>preview</title><p>my app"
        _send_page(self, body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_session_cookie_does_not_reach_another_port(browser: webdriver.Chrome, site: Site) -> None:
    """Browsers send a host's cookies to all its ports: a page an agent serves on
    127.0.0.1 would get the session, then the page (and its CSRF token) with it."""
    agent = site.start("touch stolen")
    try:
        home = _login(browser, site)
        rid = _article(browser).get_attribute("id")[2:]
        dev = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _AgentsDevServer)
        threading.Thread(target=dev.serve_forever, daemon=True).start()
        try:
            for path in ("/", "/s/", home.removeprefix(site.base)[:-4]):
                browser.get(f"http://127.0.0.1:{dev.server_address[1]}{path}")
                WebDriverWait(browser, 10).until(lambda d: "my app" in d.page_source)
        finally:
            dev.shutdown()
        assert _AgentsDevServer.cookies and not any(
            "xguard_session" in c for c in _AgentsDevServer.cookies
        )
        # Had it got the cookie anyway, the cookie alone opens nothing: the
        # session is only on its own secret path, and the path alone is no session.
        browser.get(home)  # the browser lists a cookie only on the path it is for
        port = site.base.rsplit(":", 1)[1]
        cookie = browser.get_cookie(f"xguard_session_{port}")
        assert cookie and cookie["path"] == home.removeprefix(site.base)
        jar = {"Cookie": f"{cookie['name']}={cookie['value']}"}
        other = site.base + "/s/" + "A" * 32 + "/"
        for url, headers in (
            (site.base + "/", jar),
            (other, jar),
            (site.base + "/events", jar),
            (home, {}),
            (home + "events", {"Cookie": f"{cookie['name']}=not-the-session"}),
        ):
            assert _status(url, headers=headers) == 403, url
        form = {"Origin": site.base, "Content-Type": "application/x-www-form-urlencoded"}
        for url, headers in ((site.base + "/decide", jar), (other + "decide", jar)):
            data = f"id={rid}&action=approve&csrf=x".encode()
            assert _status(url, data=data, headers={**headers, **form}) == 403, url
        assert _status(home, headers=jar) == 200  # both together: the page
        assert agent.poll() is None and site.pending_ids() == [rid]
    finally:
        agent.kill()
        agent.communicate()


def test_a_flood_of_refused_requests_does_not_flood_the_audit_log(site: Site) -> None:
    """Any page the reviewer opens can make the browser send requests here."""
    before = len(site.audit())
    for _ in range(40):
        assert _status(site.base + "/") == 403
    refused = [r for r in site.audit()[before:] if r["event"] == "web_refused"]
    # 5 a minute and one saying more are counted (twice that if a minute turned).
    assert 6 <= len(refused) <= 12, len(refused)
    assert any("counted this minute" in r.get("flood", "") for r in refused)
    assert all(r["note"] == "no session" for r in refused)


@pytest.mark.parametrize("site", ["postgres"], indirect=True)
def test_a_request_cannot_talk_itself_out_of_production(site: Site) -> None:
    """Whoever holds a host's database role writes its rows: one that says
    `production: false` of a profile the reviewer's config calls production is
    still shown as production, and approving it still asks twice."""
    import psycopg

    from xguard.gate.request import request_key

    config = (Path(site.agent_env["XGUARD_HOME"]) / "config.yaml").read_text()
    dsn = config.split('postgres: "')[1].split('"')[0]
    how = ["shell", "--"]
    body = {
        "command": "touch quietly",
        "cwd": str(site.work),
        "session": None,
        "profile": "production",
        "production": False,
        "how": how,
        "units": [],
    }
    key = request_key("touch quietly", str(site.work), None, "production", how)
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(
            "INSERT INTO xguard.requests (id, key, expires, body) VALUES "
            "('quiet1', %s, extract(epoch FROM clock_timestamp()) + 600, %s)",
            (key, json.dumps(body)),
        )
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        opener.open(site.url, timeout=10)
    except urllib.error.HTTPError as e:
        assert e.code == 303
        jar = {"Cookie": e.headers["Set-Cookie"].split(";")[0]}
        own = site.base + e.headers["Location"]
    deadline = time.monotonic() + 20
    while b"quiet1" not in (page := opener.open(urllib.request.Request(own, headers=jar)).read()):  # noqa: S310
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert "‼ PRODUCTION ‼".encode() in page
    csrf = page.split(b'name="csrf" value="')[1].split(b'"')[0].decode()
    post = urllib.request.Request(  # noqa: S310
        own + "decide",
        data=f"id=quiet1&action=approve&csrf={csrf}".encode(),
        headers={**jar, "Origin": site.base, "Content-Type": "application/x-www-form-urlencoded"},
    )
    answer = opener.open(post, timeout=10).read()
    assert b"on production" in answer and b'id="confirm"' in answer
    assert site.pending_ids() == ["quiet1"]  # the first click approved nothing
