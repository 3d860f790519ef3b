"""Two agent hosts, one PostgreSQL, a third host reviewing (issue 15); printed, not a test.

    python benchmarks/bench_fleet.py [--requests 15]

Each "host" is its own XGUARD_HOME and database role on this machine; the
server is a throwaway cluster (tests/pgcluster.py). For each request, host A
or B (alternately) runs `xguard -c` whose command writes the clock when it
starts, and the reviewer host runs `xguard pending --json` back to back:

1. request -> visible: from the request row's creation (the database clock,
   which is this machine's) to the first `pending --json` on the reviewer
   host that lists it. Target: median <= 200 ms. A one-shot `pending` pays
   for its own start (the interpreter, click, and ~150 ms for psycopg's
   import), so the same figure is also shown for a reviewer that stays
   connected and LISTENs, as `xguard review` and `review --web` do.
2. approved -> command starts: from the decision row's commit (`at`) to the
   command's first instruction on host A/B. Target: median <= 200 ms.
   Also shown: from `xguard approve` being started on the reviewer host.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from tests.pgcluster import PgCluster  # noqa: E402

XG = os.path.join(os.path.dirname(sys.executable), "xguard")


def host_env(home: Path, name: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XGUARD_")}
    return {**env, "XGUARD_HOME": str(home), "XGUARD_HOST": name, "XGUARD_WAIT": "60"}


def stats(name: str, xs: list[float], target: float | None = None) -> None:
    xs = sorted(xs)
    med = statistics.median(xs)
    p90 = xs[int(0.9 * (len(xs) - 1))]
    verdict = ""
    if target is not None:
        verdict = f"   target <= {target * 1000:.0f} ms: {'met' if med <= target else 'NOT met'}"
    print(
        f"  {name:<46} median {med * 1000:7.1f} ms   p90 {p90 * 1000:7.1f} ms   "
        f"min {xs[0] * 1000:6.1f} ms{verdict}"
    )


def wait_line(p: subprocess.Popen[bytes]) -> str:
    """The request id from the waiter's one stderr line."""
    assert p.stderr is not None
    err = b""
    while b"waiting for approval" not in err or not err.endswith(b"\n"):
        r, _, _ = select.select([p.stderr], [], [], 60)
        chunk = os.read(p.stderr.fileno(), 4096) if r else b""
        if not chunk:
            raise SystemExit(f"waiter failed: {err.decode()}")
        err += chunk
    return err.decode().split("waiting for approval ")[1].split()[0]


def watch(dsn: str, seen: dict[str, float], stop: threading.Event) -> None:
    """What `xguard review` and the web page do: LISTEN, and list on each wake-up."""
    from xguard.approval.pgqueue import PgQueue

    q = PgQueue(dsn)
    waker = q.listener()
    assert waker is not None
    while not stop.is_set():
        select.select([waker], [], [], 0.5)
        waker.drain()
        now = time.time()
        for r in q.pending():
            seen.setdefault(r["id"], now)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=15)
    args = ap.parse_args()
    pg = PgCluster()
    try:
        return run(pg, args.requests)
    finally:
        pg.stop()


def run(pg: PgCluster, n: int) -> int:
    db = pg.new_database()
    tmp = Path(tempfile.mkdtemp(prefix="xguard-bench-fleet-"))
    work = tmp / "work"
    work.mkdir()
    homes = {}
    for name, role in (
        ("hosta", "xguard_agent_hosta"),
        ("hostb", "xguard_agent_hostb"),
        ("revhost", "xguard_rev_bench"),
    ):
        homes[name] = tmp / name
        homes[name].mkdir()
        (homes[name] / "config.yaml").write_text(f'queue:\n  postgres: "{pg.dsn(role, db)}"\n')
    rev_env = host_env(homes["revhost"], "revhost")
    init = ["db", "init", "--dsn", pg.dsn(db=db), "--agent", "hosta", "--agent", "hostb"]
    subprocess.run(
        [XG, *init, "--reviewer", "xguard_rev_bench@revhost"],
        env=rev_env,
        check=True,
        capture_output=True,
    )
    admin = psycopg.connect(pg.dsn(db=db), autocommit=True)
    live: dict[str, float] = {}
    stop = threading.Event()
    watcher = threading.Thread(
        target=watch, args=(pg.dsn("xguard_rev_bench", db), live, stop), daemon=True
    )
    watcher.start()
    visible, listed_live, started, from_cli, pending_runs = [], [], [], [], []
    for i in range(n):
        host = "hosta" if i % 2 == 0 else "hostb"
        stamp = work / f"start-{i}"
        agent = subprocess.Popen(
            [XG, "-c", f"date +%s.%N > {stamp.name}"],
            env=host_env(homes[host], host),
            cwd=work,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        rid = None
        # The reviewer polls as a person's script would: `pending --json`, back to back.
        while rid is None:
            t0 = time.time()
            out = subprocess.run(
                [XG, "pending", "--json"], env=rev_env, capture_output=True, check=True
            ).stdout
            seen = time.time()
            pending_runs.append(seen - t0)
            reqs = json.loads(out)
            if reqs:
                rid = reqs[0]["id"]
                assert reqs[0]["host"] == host
                created = reqs[0]["created"]
                visible.append(seen - created)
        assert wait_line(agent) == rid
        end = time.time() + 5  # the watcher lists in its own thread: let it catch up
        while rid not in live and time.time() < end:
            time.sleep(0.01)
        listed_live.append(live[rid] - created)
        t_cli = time.time()
        subprocess.run([XG, "approve", rid], env=rev_env, check=True, capture_output=True)
        agent.wait(timeout=60)
        assert agent.returncode == 0, agent.stderr.read() if agent.stderr else ""
        t_start = float(stamp.read_text())
        at = admin.execute("SELECT at FROM xguard.decisions WHERE id = %s", (rid,)).fetchone()
        assert at is not None
        started.append(t_start - float(at[0]))
        from_cli.append(t_start - t_cli)
    stop.set()
    watcher.join()
    print(f"xguard shared queue: 2 agent hosts, 1 reviewer host, PostgreSQL, {n} requests")
    stats("request -> listed by `pending --json` (C)", visible, 0.2)
    stats("request -> listed by a LISTENing reviewer (C)", listed_live)
    stats("approved (decision row) -> command starts", started, 0.2)
    stats("`xguard approve` started -> command starts", from_cli)
    stats("one `pending --json` run on the reviewer host", pending_runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
