#!/usr/bin/env bash
# freeapi's benchmark: one command, one table (bench/README.md).
#   bench/run.sh                 full run (~4 min on 2 cores)
#   BENCH_DURATION=2 BENCH_SKIP=litellm,slow bench/run.sh   a quick look
#   bench/run.sh --profile       py-spy profiles of freeapi under load
#   bench/run.sh --variants      freeapi as is vs with uvloop / orjson
# Results: the table on stdout and in bench/results/latest.md, raw numbers in
# bench/results/latest.json. Run bench/setup.sh once first.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
# 2,000 streams need ~3 descriptors each in the gateway (client, upstream) and one in the
# client and the upstream.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
PY="$ROOT/.venv/bin/python"; [ -x "$PY" ] || PY=python3
# The orchestrator itself stays off the server core.
CPU=${BENCH_CLIENT_CPU:-1}
PIN=(); if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then PIN=(taskset -c "$CPU"); fi
exec "${PIN[@]}" "$PY" "$HERE/bench.py" "$@"
