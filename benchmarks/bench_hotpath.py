"""Hot-path speed: whole-process medians, printed as ratios (not a test).

    python benchmarks/bench_hotpath.py [--runs 40]

Compares, on this machine and in one run:
  python -I -c pass        the bare interpreter xguard runs on (the floor)
  bash -c true             what a plain $SHELL costs
  xguard -c true           an allowed command, gated, audited and run
  xguard -c 'git status…'  a plain command with arguments (fast lexer)
  xguard -c '… | … && …'   a compound command (tree-sitter path)
  xguard run -- true
  xguard check -c true
and `xguard check --batch` throughput over both corpora (commands/s), each
first under the built-in defaults (what a new user runs: no rules file), then
under the small rules file below.
Targets, under the built-in defaults: `xguard -c true` ≤ 1.7 times `python -I
-c pass` on a quiet machine; `check --batch` ≥ 10,000 commands/s over the
corpora repeated to 20,000 lines (also printed: each command once, which no
remembered parse or match can help).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"

RULES = """\
default: require_approval
rules:
  - {pattern: "true", action: allow}
  - {pattern: "ls", action: allow, dynamic: allow}
  - {pattern: "git status", action: allow}
  - {pattern: "grep", action: allow}
  - {pattern: "head", action: allow}
  - {pattern: "wc", action: allow}
"""


def median_ms(cmd: list[str], env: dict[str, str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False
        )
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def cpu_ms(cmd: list[str], env: dict[str, str], runs: int, cwd: Path | None = None) -> float:
    """Median CPU time (user + system) of a whole run, children included: on a
    busy machine wall time mostly measures the queue, CPU time the work."""
    import resource

    times = []
    for _ in range(runs):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(
            cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False
        )
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        times.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
    return statistics.median(times) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument(
        "--session", action="store_true", help="also run with a live session and limits on"
    )
    a = ap.parse_args()

    exe = shutil.which("xguard", path=str(Path(sys.executable).parent)) or shutil.which("xguard")
    if not exe:
        print("xguard is not installed next to this interpreter", file=sys.stderr)
        return 1
    home = Path(tempfile.mkdtemp(prefix="xguard-bench-"))
    builtin = home / "builtin"  # no rules.yaml here: the built-in defaults (300+ rules)
    builtin.mkdir()
    small = home / "small"
    small.mkdir()
    (small / "rules.yaml").write_text(RULES)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XGUARD_HOME": str(builtin),
    }
    senv_small = {**env, "XGUARD_HOME": str(small)}
    for e in (env, senv_small):
        subprocess.run([exe, "-c", "true"], env=e, check=True)  # warm the rules cache

    rows = [
        ("python -I -c pass", [sys.executable, "-I", "-c", "pass"]),
        ("bash -c true", ["bash", "-c", "true"]),
        ("xguard -c true", [exe, "-c", "true"]),
        ("xguard -c 'git status --porcelain'", [exe, "-c", "git status --porcelain"]),
        ("xguard -c 'ls -la | grep x && wc -l f'", [exe, "-c", "ls -la | grep x && wc -l f"]),
        ("xguard run -- true", [exe, "run", "--", "true"]),
        ("xguard check -c true", [exe, "check", "-c", "true"]),
    ]
    results = {name: median_ms(cmd, env, a.runs) for name, cmd in rows}
    results["xguard -c true [small rules file]"] = median_ms(
        [exe, "-c", "true"], senv_small, a.runs
    )
    extra = []
    # issue 5: the same allowed commands in a live session, with rate caps and the loop breaker on
    if a.session:
        shome = home / "session"  # the small rules, with sessions and limits
        shome.mkdir()
        (shome / "rules.yaml").write_text(
            RULES + "sessions: {required: true}\nlimits: {max_runtime: 10m, rate: "
            "{commands_per_minute: 100000, approvals_per_hour: 20}, loop: "
            "{same_rule: 3, same_command: 3, window: 5m, trip_at: 6}}\n"
        )
        senv = {**env, "XGUARD_HOME": str(shome)}
        out = subprocess.run(
            [exe, "session", "start", "--ttl", "1h"], env=senv, check=True, capture_output=True
        )
        senv["XGUARD_SESSION"] = out.stdout.decode().split("XGUARD_SESSION=")[1].split()[0]
        subprocess.run([exe, "-c", "true"], env=senv, check=True)  # warm the rules cache
        for name, cmd in rows[2:6]:
            # Interleaved pairs, so that machine noise hits both sides alike.
            pairs = [
                (median_ms(cmd, senv_small, 1), median_ms(cmd, senv, 1)) for _ in range(a.runs)
            ]
            results[name + " [session+limits]"] = statistics.median(s for _, s in pairs)
            extra.append((name, statistics.median(s - b for b, s in pairs)))
    base = results["python -I -c pass"]
    bash = results["bash -c true"]
    print(
        f"whole-process medians over {a.runs} runs ({os.cpu_count()} cores, "
        f"load {os.getloadavg()[0]:.2f}); under the built-in defaults unless marked"
    )
    for name, ms in results.items():
        print(f"  {name:<42} {ms:7.1f} ms   {ms / base:5.2f}x python   {ms / bash:6.1f}x bash")
    print(
        "  target: xguard -c true <= 1.7x python -I under the built-in defaults: "
        f"{results['xguard -c true'] / base:.2f}x"
    )
    for name, delta in extra:
        print(f"  session+limits cost, paired median: {name:<40} {delta:+6.1f} ms")
    floor = cpu_ms([sys.executable, "-I", "-c", "pass"], env, a.runs)
    print("CPU time (user+sys, medians), steadier than wall time on a busy machine:")
    for label, e in (("the built-in defaults", env), ("the small rules", senv_small)):
        ms = cpu_ms([exe, "-c", "true"], e, a.runs)
        print(
            f"  xguard -c true under {label}: {ms:.1f} ms = "
            f"{ms / floor:.2f}x python -I ({floor:.1f} ms)"
        )

    corpus = []
    for name in ("evasion.jsonl", "benign.jsonl"):
        p = SHARED / "corpus" / name
        if p.exists():
            corpus += [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
    if corpus:
        # Decided from a small project folder, as an agent's commands are (a
        # recursive search looks inside its cwd, so the cwd matters).
        project = home / "project"
        for rel in ("README.md", "Makefile", "src/app.py", "src/util.py", "tests/test_app.py"):
            (project / rel).parent.mkdir(parents=True, exist_ok=True)
            (project / rel).write_text("x\n")
        reps = max(1, 20000 // len(corpus))
        for label, lines in (("repeated", corpus * reps), ("each once", corpus)):
            batch = home / f"batch-{reps if label == 'repeated' else 1}.jsonl"
            batch.write_text("".join(json.dumps({"command": c["command"]}) + "\n" for c in lines))
            for rules, e in (("the built-in defaults", env), ("the small rules", senv_small)):
                t = time.perf_counter()
                cpu = cpu_ms([exe, "check", "--batch", str(batch)], e, 1, project) / 1000
                dt = time.perf_counter() - t
                n = len(lines)
                target = " (target >= 10,000)" if label == "repeated" else ""
                print(
                    f"  check --batch, corpus {label}, under {rules}: {n} commands in "
                    f"{dt:.2f} s = {n / dt:,.0f} commands/s{target}; "
                    f"CPU {cpu:.2f} s = {n / cpu:,.0f} commands per CPU second"
                )
    shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
