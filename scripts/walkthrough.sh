#!/usr/bin/env bash
# Follows docs/connectors.md from nothing to an executed orchestration in one language, and
# prints how long each step took: `scripts/walkthrough.sh rust|js|python`. It starts what a new
# author already has: a `dibop serve` on a throw-away SQLite database and a small HTTP API the
# connector reads (a Python mock of `GET /items/{id}` and `/health` on loopback). Uses the
# `dibop` binary of DIBOP_BIN (default: target/debug/dibop, built with `cargo build -p dibop`).
set -euo pipefail
lang="${1:?usage: scripts/walkthrough.sh rust|js|python}"
root="$(cd "$(dirname "$0")/.." && pwd)"
dibop="${DIBOP_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/dibop}"
work="$(mktemp -d)"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

api_port="$(port)"
cat > "$work/api.py" <<'PY'
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class Api(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health":
            body, status = {"ok": True}, 200
        elif self.path == "/items/42" and self.headers.get("X-Api-Key") == "KEY":
            body, status = {"id": "42", "name": "Wheel"}, 200
        else:
            body, status = {"error": "no such item"}, 404
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *args):
        pass
HTTPServer(("127.0.0.1", int(sys.argv[1])), Api).serve_forever()
PY
python3 "$work/api.py" "$api_port" & pids+=($!)

server_port="$(port)"
export DIBOP_URL="http://127.0.0.1:$server_port"
DIBOP_LISTEN="127.0.0.1:$server_port" DIBOP_DATA_DIR="$work/data" DIBOP_JWT_SECRET="walkthrough-secret-0123456789abcdef" \
  DIBOP_ADMIN_EMAIL=admin@example.com DIBOP_ADMIN_PASSWORD=walkthrough-pass-1 DIBOP_ALLOW_PRIVATE_NETWORKS=true \
  DIBOP_LOG=warn "$dibop" serve > "$work/server.log" 2>&1 & pids+=($!)
for _ in $(seq 1 100); do curl -sf "$DIBOP_URL/healthz" > /dev/null && break; sleep 0.1; done

started=$(date +%s.%N)
last=$started
step() {
  local now; now=$(date +%s.%N)
  printf '%-44s %6s s\n' "$1" "$(python3 -c "print(f'{$now - $last:.1f}')")"
  last=$now
}
cd "$work"
"$dibop" connector new shop-items --lang "$lang" > /dev/null 2>&1
cd shop-items
step "1. dibop connector new"
case "$lang" in
  rust) cargo test -q > /dev/null 2>&1 ;;
  js) npm test > /dev/null 2>&1 ;;
  python) python3 -m unittest -q > /dev/null 2>&1 ;;
esac
step "   unit tests"
"$dibop" connector build > /dev/null 2>&1
step "2. dibop connector build"
"$dibop" connector test dist/shop-items.wasm --operation get_item --input '{"id": "42"}' \
  --config "base_url=http://127.0.0.1:$api_port" --secret api_key=KEY --allow-private-networks > test.json 2>/dev/null
grep -q '"Wheel"' test.json
step "   dibop connector test"
token=$(curl -sf -X POST "$DIBOP_URL/api/v1/auth/login" -H 'Content-Type: application/json' \
  -d '{"email": "admin@example.com", "password": "walkthrough-pass-1"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
DIBOP_TOKEN=$(curl -sf -X POST "$DIBOP_URL/api/v1/settings/api-keys" -H "Authorization: Bearer $token" \
  -H 'Content-Type: application/json' -d '{"name": "author", "role": "enterprise_admin"}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
export DIBOP_TOKEN
step "3. token and API key"
"$dibop" plugin push dist/shop-items.wasm > /dev/null
step "   dibop plugin push"
curl -sf -X POST "$DIBOP_URL/api/v1/connections" -H "Authorization: Bearer $DIBOP_TOKEN" -H 'Content-Type: application/json' \
  -d "{\"name\": \"shop-items\", \"system\": \"shop-items\", \"config\": {\"base_url\": \"http://127.0.0.1:$api_port\"},
       \"credentials\": {\"api_key\": \"KEY\"}, \"test\": {\"operation\": \"get_item\", \"input\": {\"id\": \"42\"}}}" > /dev/null
step "4. connection (with its test)"
"$dibop" orchestration apply -f orchestration.yaml > /dev/null
"$dibop" execute "Shop items lookup" --param id=42 > run.json
grep -q '"Wheel"' run.json
step "5. orchestration apply and execute"
printf '%-44s %6s s\n' "total ($lang)" "$(python3 -c "print(f'{$last - $started:.1f}')")"
