"""`freeapi rollups rebuild` on a busy ledger: N rows (default 1,000,000) in one SQLite file
over the last 24 h (bench/rollups.py's fill, rollups included), the rollups deleted, then
the real CLI rebuilds them: its peak RSS (ru_maxrss of the child), its time, and whether
the rebuilt buckets equal the ones written live.

Run (from a worktree):  /work/main/.venv/bin/python bench/rollups_rebuild.py [--rows N]
Not a test: prints figures and the target (RSS < 150 MB for 1M rows).
"""

from __future__ import annotations

import argparse
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from rollups import fill  # noqa: E402  (bench/rollups.py)


def buckets(path: str) -> dict:
    with sqlite3.connect(path) as db:
        return {(p, d, s, f): a for p, d, s, f, a in db.execute(
            "SELECT period, dim, start, field, amount FROM rollups WHERE period != 'm'")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "state.db")
        took = fill(db, args.rows, time.time())
        print(f"filled {args.rows} rows in {took:.0f} s")
        live = buckets(db)
        with sqlite3.connect(db) as con:
            con.execute("DELETE FROM rollups")
        cfg = os.path.join(tmp, "config.yaml")
        with open(cfg, "w") as f:
            f.write(f"state: {{path: '{db}'}}\n")
        t0 = time.time()
        out = subprocess.run([sys.executable, "-m", "freeapi", "rollups", "rebuild",
                              "--config", cfg, "--since", "3d"], capture_output=True,
                             text=True, cwd=os.path.dirname(HERE))
        took = time.time() - t0
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(out.stdout.strip().splitlines()[-1] if out.stdout else out.stderr)
        rebuilt = buckets(db)
        same = rebuilt.keys() == live.keys() and all(
            abs(rebuilt[k] - live[k]) <= 1e-6 * max(1.0, abs(live[k])) for k in live)
        print(f"rebuild: {took:.1f} s, peak RSS {rss:.0f} MB (target < 150 MB), "
              f"hour/15-min/day buckets equal to the live ones: {same}")


if __name__ == "__main__":
    main()
