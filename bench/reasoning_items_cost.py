#!/usr/bin/env python3
"""What the Responses door's look for dropped reasoning costs per request, in-process: the
scan of the input items (`freeapi.reasoning.missing_items`) that runs before every
translation or pass-through. A request that kept its reasoning items costs the scan only;
one that dropped them also pays a key per run (and one state-store read, not measured
here). Stdlib + freeapi only:

    .venv/bin/python bench/reasoning_items_cost.py [-n 5000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import timeit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from freeapi.reasoning import missing_items  # noqa: E402

CODEX = json.load(open(os.path.join(ROOT, "tests", "golden", "responses",
                                    "request_codex_recorded.json")))["request"]["input"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=5000)
    n = ap.parse_args().n
    dropped = [i for i in CODEX if i.get("type") != "reasoning"]
    for label, items in (("Codex-shaped, reasoning kept", CODEX),
                         ("Codex-shaped, reasoning dropped", dropped),
                         ("50 Codex turns (350 items), reasoning kept", CODEX * 50)):
        best = min(timeit.repeat(lambda: missing_items(items), number=n, repeat=5)) / n
        print(f"{label}: {best * 1e6:.2f} us")


if __name__ == "__main__":
    main()
