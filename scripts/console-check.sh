#!/usr/bin/env bash
# Checks the web console in Debian's headless Chromium (tests/browser/console-check.mjs): starts
# `dibop serve` on a free port with a throw-away data directory and drives the console as a
# user. Screenshots go to <target>/console-shots. Installs chromium (apt) and playwright-core
# (npm, from the lockfile) if missing.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

if ! command -v chromium >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
(cd tests/browser && npm ci --no-audit --no-fund --silent)

cargo build -q -p dibop
bin="${CARGO_TARGET_DIR:-$root/target}/debug/dibop"
data="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
export DIBOP_ADMIN_EMAIL=console@check.example DIBOP_ADMIN_PASSWORD=console-check-password
DIBOP_LISTEN="127.0.0.1:$port" DIBOP_DATA_DIR="$data" DATABASE_URL= "$bin" serve >"$data/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
  sleep 0.1
done
shots="${CONSOLE_SCREENSHOTS:-${CARGO_TARGET_DIR:-$root/target}/console-shots}"
DIBOP_URL="http://127.0.0.1:$port" DIBOP_EMAIL="$DIBOP_ADMIN_EMAIL" DIBOP_PASSWORD="$DIBOP_ADMIN_PASSWORD" \
  node tests/browser/console-check.mjs "$shots"
