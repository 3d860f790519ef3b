"""Impact preview speed (issue 13), printed, not a test.

    python benchmarks/bench_impact.py [--runs 50]

Starts a real PostgreSQL (tests/dbservers.py: the seed's `orders`, 12,000
rows with an index on created_at) and times `impact.preview_unit` for the
seed's DELETE: the sqlglot rewrite, psql started with the command's own
options, BEGIN READ ONLY, the two counts, ROLLBACK. Target: p50 ≤ 50 ms.
Also printed: a bare `-c 'SELECT 1'` through Debian's psql (pg_wrapper, a
Perl script) and through the psql binary the preview runs, and `psql
--version`: the floors any preview through the client itself pays (process
start, connection); and the sqlglot rewrite alone. On a loaded machine
compare the ratio to the floor.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import dbservers  # noqa: E402
from xguard.gate import impact  # noqa: E402
from xguard.policy.decide import UnitDecision  # noqa: E402
from xguard.shell.parser import parse  # noqa: E402

SHAPES = {
    "seed DELETE (index range)": "DELETE FROM orders WHERE created_at < now() - interval '7 days'",
    "UPDATE … FROM (join)": (
        "UPDATE orders o SET total = 0 FROM users u WHERE o.user_id = u.id AND u.banned"
    ),
    "TRUNCATE": "TRUNCATE session_tokens",
}


def ms(samples: list[float]) -> str:
    s = sorted(samples)
    p95 = s[min(len(s) - 1, int(len(s) * 0.95))]
    return f"p50 {statistics.median(s) * 1000:6.1f} ms   p95 {p95 * 1000:6.1f} ms"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=50)
    n = ap.parse_args().runs
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root")}
    with dbservers.postgres() as pg:
        conn = f"psql -h {pg.socket_dir} -p {pg.port} -U {pg.superuser} -d shop"
        rows = pg.psql("SELECT count(*) FROM orders")
        print(f"PostgreSQL on {pg.socket_dir}, orders: {rows} rows")
        impact.plan("DELETE FROM t WHERE a = 1", "psql")  # sqlglot imported once, as in a real run
        p50s = {}
        for label, sql in SHAPES.items():
            [u] = [u for u in parse(f'{conn} -c "{sql}"') if u.kind == "sql"]
            d = UnitDecision("sql", u.text, "require_approval", None, "", u)
            times = []
            for _ in range(n):
                t0 = time.perf_counter()
                [item, *_] = impact.preview_unit(
                    1, d, env, "/", to=impact.Timeouts(), pure=impact.PURE_FUNCTIONS
                )
                times.append(time.perf_counter() - t0)
            assert "error" not in item, item
            p50s[label] = statistics.median(times)
            print(f"preview  {label:<28} {ms(times)}   ({impact.describe(item)})")
        direct = impact.connection(u, env, "/", 3.0).argv[0]  # past Debian's pg_wrapper
        floor_direct: list[float] = []
        for label, argv in (
            ("psql -c SELECT 1", [*conn.split(), "-X", "-w", "-c", "SELECT 1"]),
            (f"{direct} -c SELECT 1", [direct, *conn.split()[1:], "-X", "-w", "-c", "SELECT 1"]),
            ("psql --version", ["psql", "--version"]),
        ):
            floor = []
            for _ in range(n):
                t0 = time.perf_counter()
                subprocess.run(argv, check=True, capture_output=True, stdin=subprocess.DEVNULL)
                floor.append(time.perf_counter() - t0)
            print(f"floor    {label[-28:]:<28} {ms(floor)}")
            if label.startswith(direct):
                floor_direct = floor
        rewrite = []
        for _ in range(n):
            t0 = time.perf_counter()
            impact.plan(SHAPES["seed DELETE (index range)"], "psql")
            rewrite.append(time.perf_counter() - t0)
        print(f"rewrite  {'sqlglot, seed DELETE':<28} {ms(rewrite)}")
        seed = p50s["seed DELETE (index range)"]
        verdict = "meets" if seed <= 0.050 else "MISSES"
        print(
            f"\nseed DELETE preview p50 {seed * 1000:.1f} ms: {verdict} the 50 ms target "
            f"({seed / statistics.median(floor_direct):.2f}x a bare round trip of that psql)"
        )


if __name__ == "__main__":
    main()
