"""Approval speed (issue 3), printed, not a test.

    python benchmarks/bench_approval.py [--requests 50]

1. From `xguard approve ID` starting to the approved command starting, over
   N requests, each with a real waiting `xguard -c` in the background (the
   command writes the nanosecond clock when it starts). Target: median ≤ 100 ms.
   Also split into the `approve` process itself and decision -> start.
2. A new request visible: from the request being durable (its `created`
   time) to (a) a reviewer's wake-up socket receiving the datagram and
   (b) `xguard pending --json`, run back to back, listing it. Target ≤ 100 ms.
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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from xguard.paths import get_paths  # noqa: E402
from xguard.approval.queue import Listener, Spool  # noqa: E402

XG = os.path.join(os.path.dirname(sys.executable), "xguard")


def start_waiter(cmd: str, env: dict[str, str], cwd: str) -> tuple[subprocess.Popen[bytes], str]:
    """A background agent-side xguard; returns it and its request id."""
    p = subprocess.Popen(
        [XG, "-c", cmd],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert p.stderr is not None
    err = b""
    while b"waiting for approval" not in err or not err.endswith(b"\n"):
        r, _, _ = select.select([p.stderr], [], [], 30)
        chunk = os.read(p.stderr.fileno(), 4096) if r else b""
        if not chunk:
            raise SystemExit(f"waiter failed: {err.decode()}")
        err += chunk
    return p, err.decode().split("waiting for approval ")[1].split()[0]


def stats(name: str, xs: list[float], target: float | None = None) -> None:
    xs = sorted(xs)
    med = statistics.median(xs)
    p90 = xs[int(0.9 * (len(xs) - 1))]
    verdict = (
        "" if target is None else ("  OK" if med <= target else f"  OVER the {target:g} ms target")
    )
    figures = f"median {med:7.1f} ms   p90 {p90:7.1f}   max {xs[-1]:7.1f}   (n={len(xs)})"
    print(f"  {name:<46} {figures}{verdict}")


def bench_approve_to_start(n: int, env: dict[str, str], work: Path) -> None:
    total, approve_proc, decided_to_start = [], [], []
    spool = Spool(get_paths(env))
    for i in range(n):
        out = work / f"start-{i}"
        proc, rid = start_waiter(f"date +%s%N > {out}", env, str(work))
        t0 = time.time_ns()
        subprocess.run([XG, "approve", rid], env=env, stdout=subprocess.DEVNULL, check=True)
        t1 = time.time_ns()
        proc.wait(30)
        started = int(out.read_text())
        verdict = spool.verdict(rid)
        assert verdict is not None and verdict["state"] == "approved"
        total.append((started - t0) / 1e6)
        approve_proc.append((t1 - t0) / 1e6)
        decided_to_start.append((started - verdict["at"] * 1e9) / 1e6)
    print(f"\n1. `xguard approve` -> the command starts ({n} requests, one waiter each)")
    stats("approve started -> command started", total, 100)
    stats("  of which: the `xguard approve` process", approve_proc)
    stats("  of which: decision written -> command started", decided_to_start)


def bench_visible(n: int, env: dict[str, str], work: Path) -> None:
    paths = get_paths(env)
    spool = Spool(paths)
    listener = Listener(spool.wake_dir)
    woken, listed, pending_run = [], [], []
    try:
        for i in range(n):
            listener.drain()
            proc, rid = start_waiter(f"touch {work}/visible-{i}", env, str(work))
            # The waiting line is printed after the request is durable and
            # announced, so the datagram is already queued (or lost).
            r, _, _ = select.select([listener], [], [], 5)
            t_wake = time.time()
            assert r, "no wake-up datagram"
            created = spool.get(rid)["created"]  # type: ignore[index]
            woken.append((t_wake - created) * 1000)
            while True:
                t = time.time()
                p = subprocess.run(
                    [XG, "pending", "--json"], env=env, capture_output=True, check=True
                )
                done = time.time()
                pending_run.append((done - t) * 1000)
                if rid in {x["id"] for x in json.loads(p.stdout)}:
                    listed.append((done - created) * 1000)
                    break
            proc.terminate()
            proc.wait(30)
    finally:
        listener.close()
    print(f"\n2. a new request becomes visible ({n} requests)")
    stats("created -> reviewer socket woken (upper bound)", woken, 100)
    stats("created -> listed by `xguard pending --json`", listed, 100)
    stats("  one `xguard pending --json` run", pending_run)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=50)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="xg-bench-") as tmp:
        work = Path(tmp)
        rules = work / "rules.yaml"
        rules.write_text("default: require_approval\nprompt: false\n")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": tmp,
            "XGUARD_HOME": str(work / "home"),
            "XGUARD_RULES": str(rules),
            "XGUARD_WAIT": "60",
            "LANG": "C.UTF-8",
        }
        subprocess.run(
            [XG, "check", "-c", "true"], env=env, capture_output=True, check=False
        )  # warm the cache
        print(
            f"xguard approval benchmark · python {sys.version.split()[0]} · {os.cpu_count()} CPUs"
        )
        bench_approve_to_start(a.requests, env, work)
        bench_visible(max(a.requests // 2, 10), env, work)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
