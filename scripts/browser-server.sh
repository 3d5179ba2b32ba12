# shellcheck shell=bash
# Sourced by the headless-Chromium checks (swagger-check.sh, console-check.sh): installs
# chromium (apt) and playwright-core (npm, from tests/browser's lockfile) if missing, builds
# `dibop`, serves it on a free port with a throw-away data directory and an admin, and exports
# DIBOP_URL, DIBOP_EMAIL and DIBOP_PASSWORD for the check. The server stops when the script
# exits. Expects `root` (the repository) and takes the admin's e-mail as $1; the database is
# DIBOP_BROWSER_DATABASE_URL (default: SQLite in the data directory).
if ! command -v chromium >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
(cd "$root/tests/browser" && npm ci --no-audit --no-fund --silent)

# DIBOP_BIN: a dibop binary to serve instead of building one.
bin="${DIBOP_BIN:-}"
if [ -z "$bin" ]; then
  cargo build -q -p dibop
  bin="${CARGO_TARGET_DIR:-$root/target}/debug/dibop"
fi
data="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
export DIBOP_ADMIN_EMAIL="$1" DIBOP_ADMIN_PASSWORD="browser-check-password"
DIBOP_LISTEN="127.0.0.1:$port" DIBOP_DATA_DIR="$data" DATABASE_URL="${DIBOP_BROWSER_DATABASE_URL:-}" "$bin" serve >"$data/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
  sleep 0.1
done
export DIBOP_URL="http://127.0.0.1:$port" DIBOP_EMAIL="$DIBOP_ADMIN_EMAIL" DIBOP_PASSWORD="$DIBOP_ADMIN_PASSWORD"
