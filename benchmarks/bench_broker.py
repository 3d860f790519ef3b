"""Strict mode's cost: an allowed command through the broker vs the local path (issue 6).

    python benchmarks/bench_broker.py [--runs 60]

Runs `xguard -c true` (allowed, audited: a decision and an exit record
each) in fresh processes, alternating between

  local    the same-user path: this process reads the rules, decides, writes the log
  broker   strict mode: XGUARD_BROKER points at an `xguard serve` started here;
           the broker decides and writes both records, this process runs `true`

and prints the medians, the 90th percentiles and the extra cost of the broker
(median of broker minus median of local). Issue target: extra cost < 10 ms.
Both paths fsync the log twice per command, so the difference is the socket
round trips against loading the rules and the parser in-process.

The broker here runs as the invoking user (`--allow-same-user`, a test-only
switch): the uid does not change the timing, and a benchmark should not
create users. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RULES = """\
default: require_approval
rules:
  - {pattern: "true", action: allow}
  - {pattern: "ls", action: allow, dynamic: allow}
  - {pattern: "git status", action: allow}
"""


def xguard() -> str:
    exe = shutil.which(
        "xguard", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    )
    if not exe:
        sys.exit("xguard is not installed (pip install -e .)")
    return exe


def once(cmd: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    p = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.decode(errors='replace')}")
    return dt * 1000


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument("--command", default="true")
    a = ap.parse_args()
    exe = xguard()
    me = pwd.getpwuid(os.getuid()).pw_name
    with tempfile.TemporaryDirectory(prefix="xg-bench-broker-") as tmp:
        t = Path(tmp)
        local_home, broker_home, agent_home = t / "local", t / "broker", t / "agent"
        for d in (local_home, broker_home, agent_home):
            d.mkdir(mode=0o700)
            (d / "rules.yaml").write_text(RULES)
        (broker_home / "config.yaml").write_text(f"agents: [{me}]\n")
        sock = t / "run" / "broker.sock"
        base = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", tmp),
            "LANG": "C.UTF-8",
        }
        broker = subprocess.Popen(
            [exe, "serve", "--allow-same-user", "--socket", str(sock)],
            env={**base, "XGUARD_HOME": str(broker_home)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            end = time.monotonic() + 30
            while not sock.exists():
                if broker.poll() is not None or time.monotonic() > end:
                    err = broker.stderr.read().decode() if broker.stderr else ""
                    sys.exit(f"the broker did not start: {err}")
                time.sleep(0.05)
            local_env = {**base, "XGUARD_HOME": str(local_home)}
            broker_env = {**base, "XGUARD_HOME": str(agent_home), "XGUARD_BROKER": str(sock)}
            cmd = [exe, "-c", a.command]
            for env in (
                local_env,
                broker_env,
                local_env,
                broker_env,
            ):  # warm caches, rules cache, .pyc
                once(cmd, env)
            local, via = [], []
            for _ in range(a.runs):
                local.append(once(cmd, local_env))
                via.append(once(cmd, broker_env))
            bare = [
                once([sys.executable, "-I", "-c", "pass"], base)
                for _ in range(max(10, a.runs // 3))
            ]
        finally:
            broker.send_signal(signal.SIGTERM)
            try:
                broker.wait(15)
            except subprocess.TimeoutExpired:
                broker.kill()
                broker.wait(5)
        lines = (broker_home / "audit" / "audit.jsonl").read_text().count("\n")
    ml, mb = statistics.median(local), statistics.median(via)
    print(f"xguard -c {a.command!r}, {a.runs} runs each, alternating (whole process, ms)")
    print(f"  python -I -c pass (floor)   median {statistics.median(bare):7.2f}")
    print(f"  local path                  median {ml:7.2f}   p90 {pct(local, 0.9):7.2f}")
    print(f"  through the broker          median {mb:7.2f}   p90 {pct(via, 0.9):7.2f}")
    print(
        f"  extra cost of the broker    {mb - ml:+7.2f} ms (target < 10 ms)   ratio {mb / ml:.2f}x"
    )
    print(f"  broker audit lines written  {lines} (decision + exit per command)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
