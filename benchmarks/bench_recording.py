"""Output recording (issue 14): overhead and streaming, printed (not a test).

    python benchmarks/bench_recording.py [--runs 60] [--gib 1] [--streams 5]

1. `xguard -c true`, recording on vs `record: {output: false}`: whole-process
   medians over interleaved runs, the difference in ms (target ≤ 2 ms) and
   the ratio.
2. GIB GiB of text (`yes … | head -c`) through `xguard -c`, its stdout a
   pipe that `cat` empties into /dev/null: wall time with recording on and
   off (target: on ≤ 1.5 times off) and xguard's peak RSS (target < 50 MB).
3. The byte-exact round trip the issue measures: `seq 1 200000; printf
   '\\x00\\xff'`, read back with `xguard audit show ID --output`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ON = "default: allow\nrules: []\n"
OFF = "default: allow\nrecord: {output: false}\nrules: []\n"


def home_with(rules: str) -> dict[str, str]:
    home = Path(tempfile.mkdtemp(prefix="xguard-bench-rec-"))
    (home / "rules.yaml").write_text(rules)
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XGUARD_HOME": str(home),
    }


def once(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process and what it waited for)."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(f"{cmd} exited {p.returncode}")
    return time.perf_counter() - t, usage.ru_utime + usage.ru_stime


def in_process(runs: int) -> tuple[float, float]:
    """Median ms of run_child('/bin/true') with and without a recorder, in this process:
    the executor's own cost, without interpreter start-up and imports."""
    from xguard.audit.recording import Recorder
    from xguard.gate.execenv import run_child

    folder = tempfile.mkdtemp(prefix="xguard-bench-rec-")
    env = {"PATH": "/usr/bin:/bin"}
    saved = os.dup(1)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # not a terminal: pipes, as for an agent

    def one(record: bool) -> float:
        t = time.perf_counter()
        r = Recorder(folder, "bench") if record else None
        run_child("/bin/true", ["true"], env, recorder=r)
        if r is not None:
            r.finish()
        return time.perf_counter() - t

    on: list[float] = []
    off: list[float] = []
    try:
        for _ in range(runs):
            on.append(one(True))
            off.append(one(False))
    finally:
        os.dup2(saved, 1)
    return statistics.median(on) * 1000, statistics.median(off) * 1000


def stream(exe: str, env: dict[str, str], gib: float) -> tuple[float, int]:
    """(seconds, xguard's peak RSS in bytes) for GIB GiB through xguard into a pipe."""
    n = int(gib * (1 << 30))
    cat = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    assert cat.stdin is not None
    t = time.perf_counter()
    xg = subprocess.Popen(
        [exe, "-c", f"yes 'the quick brown fox jumps over the lazy dog 0123456789' | head -c {n}"],
        env=env,
        stdout=cat.stdin,
    )
    cat.stdin.close()
    _, status, usage = os.wait4(xg.pid, 0)
    cat.wait()
    took = time.perf_counter() - t
    xg.returncode = os.waitstatus_to_exitcode(status)
    if xg.returncode != 0:
        raise SystemExit(f"xguard exited {xg.returncode}")
    return took, usage.ru_maxrss * 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument("--gib", type=float, default=1.0)
    ap.add_argument("--streams", type=int, default=5)
    a = ap.parse_args()
    exe = shutil.which("xguard", path=str(Path(sys.executable).parent)) or shutil.which("xguard")
    if not exe:
        print("xguard is not installed next to this interpreter", file=sys.stderr)
        return 1
    on, off = home_with(ON), home_with(OFF)
    for env in (on, off):
        once([exe, "-c", "true"], env)  # warm the rules cache
        once([exe, "-c", "echo warm"], env)  # and the byte-compiled modules

    # 1. Overhead on an allowed `true`, interleaved so that load on the machine
    # falls on both alike.
    runs_on: list[tuple[float, float]] = []
    runs_off: list[tuple[float, float]] = []
    for _ in range(a.runs):
        runs_on.append(once([exe, "-c", "true"], on))
        runs_off.append(once([exe, "-c", "true"], off))
    for i, what in ((0, "wall"), (1, "CPU ")):
        m_on = statistics.median(r[i] for r in runs_on) * 1000
        m_off = statistics.median(r[i] for r in runs_off) * 1000
        print(
            f"xguard -c true {what} median of {a.runs}: recording on {m_on:7.2f} ms, "
            f"off {m_off:7.2f} ms, overhead {m_on - m_off:+.2f} ms (target <= 2 ms), "
            f"ratio {m_on / m_off:.3f}"
        )
    p_on, p_off = in_process(a.runs * 4)
    print(
        f"run_child(/bin/true) in process: on {p_on:.3f} ms, off {p_off:.3f} ms, "
        f"overhead {p_on - p_off:+.3f} ms (the rest of the whole-process overhead is imports)"
    )

    # 2. Streaming a lot of output: interleaved, the median of --streams runs
    # (on two cores the four processes of a run compete; one run is noise).
    ons: list[tuple[float, int]] = []
    offs: list[tuple[float, int]] = []
    for _ in range(a.streams):
        ons.append(stream(exe, on, a.gib))
        offs.append(stream(exe, off, a.gib))
    s_on, s_off = (statistics.median(t for t, _ in r) for r in (ons, offs))
    rss_on, rss_off = (max(m for _, m in r) for r in (ons, offs))
    for what, s, rss in (("on ", s_on, rss_on), ("off", s_off, rss_off)):
        print(
            f"{a.gib:g} GiB through xguard, recording {what}: median of {a.streams} "
            f"{s:6.2f} s, peak RSS {rss >> 20} MiB"
        )
    print(f"  ratio {s_on / s_off:.2f} (target <= 1.5), RSS target < 50 MiB")

    # 3. The round trip.
    cmd = "seq 1 200000; printf '\\x00\\xff'"
    direct = subprocess.run(["bash", "-c", cmd], capture_output=True, check=True).stdout
    got = subprocess.run([exe, "-c", cmd], env=on, capture_output=True, check=True).stdout
    log = Path(on["XGUARD_HOME"]) / "audit" / "audit.jsonl"
    rec = json.loads(log.read_text().splitlines()[-1])
    back = subprocess.run(
        [exe, "audit", "show", rec["id"], "--output"], env=on, capture_output=True, check=True
    ).stdout
    same = direct == got == back
    sha_ok = hashlib.sha256(back).hexdigest() == rec["output"]["sha256"]
    size = (Path(on["XGUARD_HOME"]) / "audit" / rec["output"]["file"]).stat().st_size
    print(
        f"round trip of {len(direct)} bytes: identical={same}, sha256 matches={sha_ok}, "
        f"stored {size} bytes compressed ({size / len(direct):.1%})"
    )
    return 0 if same and sha_ok else 1


if __name__ == "__main__":
    sys.exit(main())
