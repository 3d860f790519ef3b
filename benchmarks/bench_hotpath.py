"""Hot-path speed: whole-process medians, printed as ratios (not a test).

    python benchmarks/bench_hotpath.py [--runs 40]

Compares, on this machine and in one run:
  python -I -c pass        the bare interpreter xguard runs on (the floor)
  bash -c true             what a plain $SHELL costs
  xguard -c true           an allowed command, gated, audited and run
  xguard -c 'ls -la'       a plain command with arguments (fast lexer)
  xguard -c 'git status…'  the same, running a real program
  xguard -c 'ls > /dev/null', xguard -c 'echo $(git rev-parse HEAD)'
                           commands that need the full tree-sitter parse
  xguard -c '… | … && …'   a compound command
  xguard run -- true
  xguard check -c true
all cold (XGUARD_WARM=0: each command loads xguard), and the xguard rows again
with a warm server running (the default: the command is served by a fork of
an xguard already loaded; the CPU column is left out for them, as that work
is done outside this process tree).
The rows are timed interleaved (one run of each, round after round), so that a
loaded machine's noise falls on all of them alike; each is printed as a ratio
of wall-clock medians to `python -I -c pass` and to `bash -c true`, and of the
process tree's CPU time (user+sys, from rusage) to python's, which a loaded
machine disturbs much less than the wall clock.
and `xguard check --batch` throughput over both corpora (commands/s), each
first under the built-in defaults (what a new user runs: no rules file), then
under the small rules file below.
Targets, under the built-in defaults: `xguard -c true` ≤ 1.7 times `python -I
-c pass` on a quiet machine; a full-parse command ≤ 2.5 times; `check --batch`
≥ 10,000 commands/s over the corpora repeated to 20,000 lines (also printed:
each command once, which no remembered parse or match can help).
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import resource
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


def one_run(cmd: list[str], env: dict[str, str], cwd: Path = ROOT) -> tuple[float, float]:
    """Wall-clock and CPU (user+sys of the whole process tree) seconds of one run."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=cwd, check=False
    )
    wall = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime


def median_ms(cmd: list[str], env: dict[str, str], runs: int) -> float:
    return statistics.median(one_run(cmd, env)[0] for _ in range(runs)) * 1000


def interleaved(
    rows: list[tuple[str, list[str], dict[str, str]]], runs: int
) -> dict[str, tuple[float, float]]:
    """Median wall and CPU milliseconds per row, the rows taking turns."""
    walls: dict[str, list[float]] = {name: [] for name, _, _ in rows}
    cpus: dict[str, list[float]] = {name: [] for name, _, _ in rows}
    for _ in range(runs):
        for name, cmd, env in rows:
            wall, cpu = one_run(cmd, env)
            walls[name].append(wall)
            cpus[name].append(cpu)
    return {
        name: (statistics.median(walls[name]) * 1000, statistics.median(cpus[name]) * 1000)
        for name in walls
    }


def cpu_ms(cmd: list[str], env: dict[str, str], runs: int, cwd: Path = ROOT) -> float:
    """Median CPU time (user + system) of a whole run, children included: on a
    busy machine wall time mostly measures the queue, CPU time the work."""
    return statistics.median(one_run(cmd, env, cwd)[1] for _ in range(runs)) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument(
        "--session", action="store_true", help="also run with a live session and limits on"
    )
    a = ap.parse_args()
    # An installed copy has its bytecode compiled at install time; an editable
    # one under PYTHONDONTWRITEBYTECODE would compile every module on every run.
    compileall.compile_dir(str(ROOT / "xguard"), quiet=1)

    exe = shutil.which("xguard", path=str(Path(sys.executable).parent)) or shutil.which("xguard")
    if not exe:
        print("xguard is not installed next to this interpreter", file=sys.stderr)
        return 1
    top = Path(tempfile.mkdtemp(prefix="xguard-bench-"))
    # One user's home per configuration, as on a real machine: the box's search
    # for secrets looks through the home folder, so one configuration's writes
    # (its audit log) under another's home would make it search again each time.
    home, home_small = top / "home", top / "home-small"
    builtin = home / ".xguard"  # no rules.yaml here: the built-in defaults (300+ rules)
    small = home_small / ".xguard"
    for d in (builtin, small):
        d.mkdir(parents=True)
    (small / "rules.yaml").write_text(RULES)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XGUARD_HOME": str(builtin),
        "XGUARD_WARM": "0",  # cold: every command loads xguard itself
    }
    senv_small = {**env, "HOME": str(home_small), "XGUARD_HOME": str(small)}
    # The same defaults with a warm server (xguard warm): a home of its own.
    home_warm = top / "home-warm"
    (home_warm / ".xguard").mkdir(parents=True)
    wenv = {**env, "HOME": str(home_warm), "XGUARD_HOME": str(home_warm / ".xguard")}
    del wenv["XGUARD_WARM"]  # as a user runs it: the first command starts a server
    for e in (env, senv_small, wenv):
        subprocess.run([exe, "-c", "true"], env=e, check=True)  # warm the rules cache
    subprocess.run([exe, "warm", "start", "--idle", "30m"], env=wenv, check=True)

    rows = [
        ("python -I -c pass", [sys.executable, "-I", "-c", "pass"]),
        ("bash -c true", ["bash", "-c", "true"]),
        ("xguard -c true", [exe, "-c", "true"]),
        ("xguard -c 'ls -la'", [exe, "-c", "ls -la"]),
        ("xguard -c 'git status --porcelain'", [exe, "-c", "git status --porcelain"]),
        ("xguard -c 'ls > /dev/null' [full parse]", [exe, "-c", "ls > /dev/null"]),
        (
            "xguard -c 'echo $(git rev-parse HEAD)' [full parse]",
            [exe, "-c", "echo $(git rev-parse HEAD)"],
        ),
        ("xguard -c 'ls -la | grep x && wc -l f'", [exe, "-c", "ls -la | grep x && wc -l f"]),
        ("xguard run -- true", [exe, "run", "--", "true"]),
        ("xguard check -c true", [exe, "check", "-c", "true"]),
    ]
    for _, cmd in rows:  # the first run of each pays for cold caches
        subprocess.run(cmd, env=env, capture_output=True, cwd=ROOT, check=False)
    warm_rows = [
        (f"{name} [warm]", cmd, wenv)
        for name, cmd in rows
        if name.startswith("xguard") and "ls -la |" not in name
    ]
    for _, cmd, e in warm_rows:
        subprocess.run(cmd, env=e, capture_output=True, cwd=ROOT, check=False)
    try:
        measured = interleaved(
            [(name, cmd, env) for name, cmd in rows]
            + [("xguard -c true [small rules file]", [exe, "-c", "true"], senv_small)]
            + warm_rows,
            a.runs,
        )
    finally:
        subprocess.run([exe, "warm", "stop"], env=wenv, check=False, capture_output=True)
    results = {name: wall for name, (wall, _) in measured.items()}
    extra = []
    # issue 5: the same allowed commands in a live session, with rate caps and the loop breaker on
    if a.session:
        shome = top / "home-session" / ".xguard"  # the small rules, with sessions and limits
        shome.mkdir(parents=True)
        (shome / "rules.yaml").write_text(
            RULES + "sessions: {required: true}\nlimits: {max_runtime: 10m, rate: "
            "{commands_per_minute: 100000, approvals_per_hour: 20}, loop: "
            "{same_rule: 3, same_command: 3, window: 5m, trip_at: 6}}\n"
        )
        senv = {**env, "HOME": str(shome.parent), "XGUARD_HOME": str(shome)}
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
    base, base_cpu = measured["python -I -c pass"]
    bash = results["bash -c true"]
    print(
        f"whole-process medians over {a.runs} interleaved runs ({os.cpu_count()} cores, "
        f"load {os.getloadavg()[0]:.2f}); under the built-in defaults unless marked"
    )
    print(f"  {'':<52} {'wall':>8}  {'/python':>8} {'/bash':>7}   {'cpu':>8}  {'/python':>8}")
    for name, ms in results.items():
        cpu = measured[name][1] if name in measured else float("nan")
        if name.endswith("[warm]"):
            cpu = float("nan")  # the work is done in the server's worker, not this process tree
        print(
            f"  {name:<52} {ms:6.1f} ms {ms / base:7.2f}x {ms / bash:6.1f}x "
            f"  {cpu:6.1f} ms {cpu / base_cpu:7.2f}x"
        )
    for name, goal in (
        ("xguard -c true", 1.7),
        ("xguard -c 'ls > /dev/null' [full parse]", 2.5),
        ("xguard -c 'echo $(git rev-parse HEAD)' [full parse]", 2.5),
    ):
        wall, cpu = measured[name]
        warm = measured[f"{name} [warm]"][0]
        print(
            f"  target: {name} <= {goal}x python -I under the built-in defaults: "
            f"{wall / base:.2f}x wall, {cpu / base_cpu:.2f}x cpu; with a warm server "
            f"{warm / base:.2f}x wall"
        )
    for name, delta in extra:
        print(f"  session+limits cost, paired median: {name:<40} {delta:+6.1f} ms")

    corpus = []
    for name in ("evasion.jsonl", "benign.jsonl"):
        p = SHARED / "corpus" / name
        if p.exists():
            corpus += [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
    if corpus:
        # Decided from a small project folder, as an agent's commands are (a
        # recursive search looks inside its cwd, so the cwd matters).
        project = top / "project"
        for rel in ("README.md", "Makefile", "src/app.py", "src/util.py", "tests/test_app.py"):
            (project / rel).parent.mkdir(parents=True, exist_ok=True)
            (project / rel).write_text("x\n")
        reps = max(1, 20000 // len(corpus))
        for label, lines in (("repeated", corpus * reps), ("each once", corpus)):
            batch = top / f"batch-{reps if label == 'repeated' else 1}.jsonl"
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
