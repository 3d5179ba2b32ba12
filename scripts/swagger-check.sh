#!/usr/bin/env bash
# Checks the Swagger UI as a user would: starts `dibop serve` on a free port with a throw-away
# data directory, opens /api/v1/docs in Debian's headless Chromium, authorizes with a token and
# runs one call. Installs chromium (apt) and playwright-core (npm, from the lockfile) if missing.
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
export DIBOP_ADMIN_EMAIL=swagger@check.example DIBOP_ADMIN_PASSWORD=swagger-check-password
DIBOP_LISTEN="127.0.0.1:$port" DIBOP_DATA_DIR="$data" DATABASE_URL= "$bin" serve >"$data/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
  sleep 0.1
done
shot="${SWAGGER_SCREENSHOT:-${CARGO_TARGET_DIR:-$root/target}/swagger-check.png}"
DIBOP_URL="http://127.0.0.1:$port" DIBOP_EMAIL="$DIBOP_ADMIN_EMAIL" DIBOP_PASSWORD="$DIBOP_ADMIN_PASSWORD" \
  node tests/browser/swagger-check.mjs "$shot"
