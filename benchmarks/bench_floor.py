"""What the built-in secrets floor (xguard/policy/floor.py) costs decide().

    python benchmarks/bench_floor.py [--rounds 7]

Decides every command of the shared benign corpus, in-process, under the
shared fixture rules, in a project folder inside a home folder that holds
the floor's files; alternately with the floor and with it switched off (its
two entry points in decide.py replaced by no-ops). Prints the median time
per command of each and their ratio. Target: the ratio stays within noise
(≤ 1.05) — a path outside the floor's folders costs a string comparison.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from xguard.paths import Paths
from xguard.policy import decide as D
from xguard.policy.floor import FLOOR
from xguard.policy.rules import load_ruleset
from xguard.shell.parser import parse

SHARED = Path(__file__).resolve().parents[2] / "shared"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp())
    home, project = root / "home", root / "home" / "project"
    (project / "src").mkdir(parents=True)
    for g, _ in FLOOR:
        if g.startswith("~/"):
            p = home / g[2:].replace("/**", "/sub/file").replace("*", "x")
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text("secret\n")
    lines = (SHARED / "corpus" / "benign.jsonl").read_text().splitlines()
    units = [parse(json.loads(x)["command"]) for x in lines if x.strip()]
    rules = load_ruleset(
        Paths(root / "xg", root / "xg"),
        SHARED / "fixtures" / "agent-readonly.yaml",
        use_cache=False,
    )
    ctx = D.Context(cwd=str(project), home=str(home), expand_glob=D.real_glob)
    real_hits, real_rules = D.floor_hits, D.floor_rules

    def once(on: bool) -> float:
        D.floor_hits = real_hits if on else (lambda paths, home: [])
        D.floor_rules = real_rules if on else (lambda: [])
        D._STRICT_READ.clear()
        rules.memo.clear()
        t = time.perf_counter()
        for u in units:
            D.decide(u, rules, ctx)
        return (time.perf_counter() - t) / len(units) * 1e6

    once(True)
    once(False)
    on, off = [], []
    for _ in range(args.rounds):
        on.append(once(True))
        off.append(once(False))
    m_on, m_off = statistics.median(on), statistics.median(off)
    print(f"{len(units)} benign commands, fixture rules, median of {args.rounds} rounds")
    print(f"  decide() with the floor      {m_on:8.1f} us/command")
    print(f"  decide() without the floor   {m_off:8.1f} us/command")
    print(f"  ratio                        {m_on / m_off:8.3f}")


if __name__ == "__main__":
    main()
