"""What the kernel box costs (issue 11 part 3), printed, not a test.

    python benchmarks/bench_confine.py [--runs 60]

1. Added time: the median of `xguard -c true` under the built-in rules with
   `confine: auto` (bubblewrap here) and with Landlock forced, minus the same
   with `confine: off`. Target: ≤ 5 ms.
2. The box's own parts, in process: planning it (masks, writable paths) and
   bwrap's start-up (`bwrap … true` against plain `true`).
3. `xguard -c true` confined against a bare `python3 -I -c pass`. Target ≤ 2.0x.

Runs alternate between the variants so that a busy machine slows all alike.
"""

from __future__ import annotations

import argparse
import compileall
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

XG = os.path.join(os.path.dirname(sys.executable), "xguard")


def once(argv: list[str], env: dict[str, str], cwd: str) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, check=False)
    ms = (time.perf_counter() - t0) * 1000
    if r.returncode != 0:
        raise SystemExit(f"{argv} failed with {r.returncode}")
    return ms


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=60)
    n = ap.parse_args().runs
    # An installed copy has its bytecode compiled at install time; an editable
    # one under PYTHONDONTWRITEBYTECODE would compile every module on every run.
    compileall.compile_dir(str(ROOT / "xguard"), quiet=1)
    work = Path(tempfile.mkdtemp(prefix="xg-bench-confine-"))
    project = work / "project"
    project.mkdir()
    (project / ".env").write_text("SECRET=1\n")
    homes = {}
    for name, conf in (
        ("off", "off"),
        ("auto", "auto"),
        ("landlock", "auto"),
        ("off, cold", "off"),
        ("auto, cold", "auto"),
    ):
        h = work / f"xg-{name}"
        h.mkdir(mode=0o700)
        rules = (ROOT / "xguard" / "data" / "default-rules.yaml").read_text()
        (h / "rules.yaml").write_text(f"confine: {conf}\n" + rules)
        homes[name] = h
    base = {k: v for k, v in os.environ.items() if not k.startswith("XGUARD_")}
    envs = {}
    for name, h in homes.items():
        e = dict(base, XGUARD_HOME=str(h))
        if name == "landlock":
            e["XGUARD_CONFINE_FORCE"] = "landlock"
        if name.endswith("cold"):
            e["XGUARD_WARM"] = "0"  # each command loads xguard itself
        envs[name] = e
    cmd = [XG, "-c", "true"]
    for e in envs.values():  # warm the rules cache and the probe; start the warm servers
        once(cmd, e, str(project))
    time.sleep(2)
    times: dict[str, list[float]] = {k: [] for k in envs}
    py: list[float] = []
    for _ in range(n):
        for name, e in envs.items():
            times[name].append(once(cmd, e, str(project)))
        py.append(once([sys.executable, "-I", "-c", "pass"], base, str(project)))

    for e in envs.values():
        subprocess.run([XG, "warm", "stop"], env=e, capture_output=True, check=False)
    print(f"xguard -c true, built-in rules, median of {n} (cwd holds a .env):")
    print("(with the warm server, the default, unless marked cold: XGUARD_WARM=0)")
    for off_name, names in (("off", ("auto", "landlock")), ("off, cold", ("auto, cold",))):
        off = med(times[off_name])
        print(f"  confine: {off_name:<17} {off:7.1f} ms")
        for name in names:
            m = med(times[name])
            added = m - off
            verdict = "OK" if added <= 5 else "OVER the 5 ms target"
            print(f"  confine: {name:<17} {m:7.1f} ms   added {added:+6.1f} ms   {verdict}")
    bare = med(py)
    print(f"  python3 -I -c pass         {bare:7.1f} ms")
    for name in ("auto", "auto, cold"):
        ratio = med(times[name]) / bare
        verdict = "OK" if ratio <= 2.0 else "OVER the 2.0x target"
        print(f"  ratio confined ({name}) / bare {ratio:5.2f}x  {verdict}")

    # The parts, in process.
    os.environ["XGUARD_HOME"] = str(homes["auto"])
    os.chdir(project)
    from xguard.gate import confine
    from xguard.gate.request import Gate

    g = Gate(confinable=True)
    d = g.decide_text("true")
    mech, _ = g.confine()
    plans = []
    for _ in range(n):
        t0 = time.perf_counter()
        box = confine.plan(d, g.ruleset, g.context(), g.paths, mech, cache_dir=g.paths.cache_dir_s)
        plans.append((time.perf_counter() - t0) * 1000)
    print(f"\nthe box here: {box!r}")
    print(f"  planning the box           {med(plans):7.2f} ms")
    if box.bwrap:
        argv = box.bwrap_argv("/bin/true", ["true"], tty=False, seccomp_fd=None)
        bw, tr = [], []
        for _ in range(n):
            bw.append(once(argv, base, str(project)))
            tr.append(once(["/bin/true"], base, str(project)))
        print(f"  bwrap start-up             {med(bw) - med(tr):7.2f} ms (bwrap … true minus true)")


if __name__ == "__main__":
    main()
