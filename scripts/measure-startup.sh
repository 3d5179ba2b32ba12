#!/usr/bin/env bash
# Measures what large connectors cost at upload and at restart: starts `dibop serve` on a fresh
# SQLite data directory, uploads the Python and JavaScript connectors (built by
# scripts/build-connectors.sh), restarts the server on the same directory and times readiness
# and the first call of each connector. Prints one line per figure.
# Usage: scripts/measure-startup.sh [path/to/dibop]   (default: <target>/debug/dibop)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
bin="${1:-$target/debug/dibop}"
dir="$(mktemp -d)"
port=$((20000 + RANDOM % 20000))
api="http://127.0.0.1:$port/api/v1"
export DIBOP_DATA_DIR="$dir" DIBOP_LISTEN="127.0.0.1:$port" DIBOP_ADMIN_EMAIL=admin@example.com \
  DIBOP_ADMIN_PASSWORD=startup-password DIBOP_ALLOW_PRIVATE_NETWORKS=true DIBOP_LOG_FORMAT=json
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc; }
start() {
  local t; t=$(now)
  "$bin" serve >>"$dir/server.log" 2>&1 &
  pid=$!
  until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do sleep 0.01; done
  echo "ready after $(since "$t") s"
}
trap 'kill $pid 2>/dev/null || true; rm -rf "$dir"' EXIT

echo "== first start"; start
token=$(curl -sf -X POST "$api/auth/login" -H 'Content-Type: application/json' \
  -d '{"email":"admin@example.com","password":"startup-password"}' | sed 's/.*"access_token":"\([^"]*\)".*/\1/')
for name in vpic_py vpic_js; do
  t=$(now)
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$api/plugins" -H "Authorization: Bearer $token" \
    -H 'Content-Type: application/wasm' --data-binary @"$target/polyglot/$name.wasm")
  echo "upload $name ($(stat -c %s "$target/polyglot/$name.wasm") bytes): HTTP $code after $(since "$t") s"
  system=${name/_/-}
  curl -sf -X POST "$api/connections" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    -d "{\"name\":\"$system\",\"system\":\"$system\",\"config\":{}}" |
    sed 's/^{"id":"\([^"]*\)".*/\1/' >"$dir/$system.id"
done
ls -l --time-style=+%T "$dir/plugins/artifacts" | tail -n +2 | awk '{print "artifact", $6, $NF}'
kill "$pid"; wait "$pid" 2>/dev/null || true

echo "== restart on the same data directory"; start
token=$(curl -sf -X POST "$api/auth/login" -H 'Content-Type: application/json' \
  -d '{"email":"admin@example.com","password":"startup-password"}' | sed 's/.*"access_token":"\([^"]*\)".*/\1/')
for system in vpic-py vpic-js; do
  id=$(cat "$dir/$system.id")
  t=$(now)
  out=$(curl -sf -X POST "$api/connections/$id/test" -H "Authorization: Bearer $token" \
    -H 'Content-Type: application/json' -d '{"operation":"echo","input":{"n":1}}')
  echo "first call of $system after restart: $(since "$t") s ($(echo "$out" | grep -o '"output":{[^}]*}'))"
done
ls -l --time-style=+%T "$dir/plugins/artifacts" | tail -n +2 | awk '{print "artifact", $6, $NF}'
