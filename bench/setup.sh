#!/usr/bin/env bash
# One-time setup for bench/run.sh. Everything comes from the package registries:
#   Debian: wrk (and taskset from util-linux)
#   PyPI:   litellm[proxy] in its own venv (bench/.venvs/litellm); py-spy, uvloop and orjson
#           as a side directory (bench/.venvs/extras) used only by `run.sh --profile` and
#           `run.sh --variants`, never by freeapi itself
#   npm:    @portkey-ai/gateway (bench/node_modules)
# Idempotent; re-running only installs what is missing.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
# Pinned. 1.108+ needs a litellm-proxy-extras build that PyPI does not carry; the 1.107.x
# releases were pulled after a supply-chain compromise.
LITELLM_VERSION=${LITELLM_VERSION:-1.106.12}

need() { command -v "$1" >/dev/null 2>&1; }

if ! need wrk || ! need taskset; then
  echo "== apt: wrk util-linux"
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq wrk util-linux >/dev/null
fi

if ! need node; then
  echo "bench: Node.js (>= 18) is needed for the fake upstream and Portkey" >&2
  exit 1
fi

if [ ! -x "$ROOT/.venv/bin/freeapi" ]; then
  echo "== freeapi venv"
  python3 -m venv "$ROOT/.venv"
  "$ROOT/.venv/bin/pip" install -q -e "$ROOT"
fi
if [ ! -x "$HERE/.venvs/extras/bin/py-spy" ]; then
  echo "== py-spy, uvloop, orjson for --profile / --variants (bench/.venvs/extras)"
  "$ROOT/.venv/bin/pip" install -q --target "$HERE/.venvs/extras" py-spy uvloop orjson \
    || echo "bench: extras not installed; --profile and --variants will not work"
fi

if [ ! -x "$HERE/.venvs/litellm/bin/litellm" ]; then
  echo "== LiteLLM proxy $LITELLM_VERSION (bench/.venvs/litellm)"
  python3 -m venv "$HERE/.venvs/litellm"
  "$HERE/.venvs/litellm/bin/pip" install -q "litellm[proxy]==$LITELLM_VERSION"
fi

if [ ! -f "$HERE/node_modules/@portkey-ai/gateway/build/start-server.js" ]; then
  echo "== Portkey gateway (npm)"
  (cd "$HERE" && npm install --no-audit --no-fund --loglevel=error)
fi
echo "bench: setup done"
