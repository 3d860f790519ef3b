"""Audit log reading speed on a generated 1,000,000-line log (issue 4, "Speed").

Run: python3 benchmarks/bench_audit.py [--lines N] [--runs R] [--keep DIR]

The log is written in the writer's exact format and is chain-valid, but it is
generated from a few record templates (timestamp, seq and prev filled in, the
hash computed) rather than by a million AuditLog.append calls, which would
take minutes of fsyncs. Each figure is the median of R whole `xguard …`
processes, output to a pipe, as an agent's tooling would run them.

Targets: --last 20 <= 0.3 s; verify >= 200,000 lines/s; --grep >= 100,000 lines/s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from hashlib import sha256
from pathlib import Path
from typing import Any

from xguard.audit.log import GENESIS, build_record, seal, utc_timestamp

TEMPLATES: list[tuple[str, dict[str, Any]]] = [
    (
        "decision",
        {
            "id": "k3x9pq",
            "session": "s-build",
            "user": "agent",
            "host": "dev1",
            "pid": 4242,
            "cwd": "/home/agent/src/app",
            "command": "git status",
            "units": [
                {
                    "kind": "command",
                    "text": "git status",
                    "decision": "allow",
                    "rule": "rules.yaml:12",
                    "why": 'matches pattern "git status"',
                }
            ],
            "decision": "allow",
            "rules": ["rules.yaml:12"],
            "source": "shell",
        },
    ),
    (
        "exit",
        {
            "id": "k3x9pq",
            "session": "s-build",
            "command": "git status",
            "cwd": "/home/agent/src/app",
            "exit_code": 0,
            "duration_ms": 12,
        },
    ),
    (
        "decision",
        {
            "id": "m2c7rt",
            "session": "s-test",
            "user": "agent",
            "host": "dev1",
            "pid": 4243,
            "cwd": "/home/agent/src/app",
            "command": "pytest -q tests/unit",
            "units": [
                {
                    "kind": "command",
                    "text": "pytest -q tests/unit",
                    "decision": "allow",
                    "rule": "rules.yaml:20",
                    "why": 'matches pattern "pytest"',
                }
            ],
            "decision": "allow",
            "rules": ["rules.yaml:20"],
            "source": "shell",
        },
    ),
    (
        "pending",
        {
            "id": "w8h4zn",
            "session": "s-deploy",
            "user": "agent",
            "host": "dev1",
            "pid": 4244,
            "cwd": "/home/agent/src/app",
            "command": "kubectl apply -f deploy.yaml",
            "units": [
                {
                    "kind": "command",
                    "text": "kubectl apply -f deploy.yaml",
                    "decision": "require_approval",
                    "rule": "default",
                    "why": "no rule matches",
                }
            ],
            "decision": "require_approval",
            "rules": [],
            "source": "shell",
        },
    ),
]
NEEDLE = "needle-7f3a"  # in one record of every 1,000: what --grep looks for


def generate(path: Path, n: int) -> None:
    """Write an n-line, chain-valid log to path in the writer's format."""
    needle_record = ("decision", {**TEMPLATES[0][1], "command": f"grep {NEEDLE} notes.txt"})
    parts = []
    for event, fields in [*TEMPLATES, needle_record]:
        line = seal(build_record(event, fields, ts=utc_timestamp(0), seq=0, prev=GENESIS))[0]
        start = line.index(b'"seq":0') + len(b'"seq":0')
        end = line.rindex(b',"prev":"')
        parts.append(line[start:end])
    rare = parts.pop()
    t0 = time.time_ns() - n * 2_000_000_000  # one record every two seconds, ending now
    prev = GENESIS.encode()
    out = bytearray()
    with open(path, "wb") as fh:
        for seq in range(1, n + 1):
            middle = rare if seq % 1000 == 500 else parts[seq % len(parts)]
            body = b'{"ts":"%s","seq":%d%s,"prev":"%s"' % (
                utc_timestamp(t0 + seq * 2_000_000_000).encode(),
                seq,
                middle,
                prev,
            )
            prev = sha256(body).hexdigest().encode()
            out += body + b',"hash":"' + prev + b'"}\n'
            if len(out) > 1 << 22:
                fh.write(out)
                out.clear()
        fh.write(out)


def timed(cmd: list[str], env: dict[str, str], runs: int, want_rc: int = 0) -> float:
    """Median wall time of `runs` whole processes (output to a pipe, discarded)."""
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, check=False)
        times.append(time.perf_counter() - t)
        if proc.returncode != want_rc:
            sys.exit(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.decode()[:500]}")
    return statistics.median(times)


def main() -> int:
    """Generate the log, time the three commands, print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument(
        "--keep", metavar="DIR", help="generate into DIR and keep it (default: a temp dir)"
    )
    args = ap.parse_args()

    home = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="xguard-bench-"))
    try:
        log = home / "audit" / "audit.jsonl"
        log.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        t = time.perf_counter()
        generate(log, args.lines)
        gen = time.perf_counter() - t
        size = log.stat().st_size
        print(f"generated {args.lines:,} lines ({size / 1e6:.0f} MB) in {gen:.1f} s")

        env = {**os.environ, "XGUARD_HOME": str(home)}
        exe = shutil.which("xguard") or sys.exit("the xguard console script is not on PATH")
        bare = timed([sys.executable, "-c", "pass"], env, 5)
        last = timed([exe, "audit", "--last", "20"], env, max(5, args.runs))
        ver = timed([exe, "audit", "verify"], env, args.runs)
        grep = timed([exe, "audit", "--grep", NEEDLE], env, args.runs)
        print(f"bare interpreter start        {bare * 1000:7.0f} ms")
        print(f"xguard audit --last 20        {last * 1000:7.0f} ms     (target <= 300 ms)")
        rate = f"{args.lines / ver:10,.0f} lines/s"
        print(f"xguard audit verify           {ver:7.2f} s  {rate}  (target >= 200,000)")
        rate = f"{args.lines / grep:10,.0f} lines/s"
        print(f"xguard audit --grep {NEEDLE} {grep:7.2f} s  {rate}  (target >= 100,000)")
    finally:
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
