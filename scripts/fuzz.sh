#!/usr/bin/env bash
# OpenAPI fuzzing: schemathesis (tests/fuzz/requirements.txt, installed into a venv under
# $DIBOP_TOOLS_DIR, default ~/.cache/dibop-tools) generates requests for every operation of
# /api/v1/openapi.json, valid and invalid, and sends them with an admin token to a `dibop serve`
# on a throw-away database. Fails on any 5xx, on any answer whose body does not match its
# documented schema, on an undocumented status code or content type.
#
# The server and the fuzzer run in a network namespace of their own that has only a loopback
# interface, so nothing the fuzzer makes up (connection base URLs, alert webhooks) reaches
# anything but 127.0.0.1. SQLite by default; with DATABASE_URL=postgres://user@127.0.0.1:5432/db
# a fresh database is created on that server for the run, and dropped after.
#
# No operation and no check is excluded. POST /auth/login is fuzzed too: the generated
# addresses are not the admin's, so its lockout never locks the fuzzer out; the admin cannot
# demote, deactivate or delete itself (409, documented); the resources named in /{id} paths come
# from tests/fuzz/seed.py (tests/fuzz/schemathesis.toml), those that get deleted are spares; and
# tests/fuzz/hooks.py keeps a valid PUT /settings from lowering the enterprise's own rate limits
# (it raises them to the maximum instead), which would otherwise turn the rest of the run into 429s.
#
# Knobs: FUZZ_MAX_EXAMPLES (examples per operation and phase, default 100: about 3 minutes on
# two cores), FUZZ_SEED, FUZZ_WORKERS, FUZZ_KEEP=1 (keep the work directory with the server
# log); extra arguments go to `st run`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

if [ "${DIBOP_FUZZ_INSIDE:-}" != 1 ]; then
  tools="${DIBOP_TOOLS_DIR:-$HOME/.cache/dibop-tools}"
  requirements=tests/fuzz/requirements.txt
  version="$(sed -n 's/^schemathesis==//p' "$requirements")"
  venv="$tools/schemathesis-$version"
  mkdir -p "$tools"

  # Python 3 with venv from Debian when missing; socat relays PostgreSQL into the namespace.
  missing=()
  command -v python3 >/dev/null || missing+=(python3)
  python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
  command -v curl >/dev/null || missing+=(curl)
  command -v ip >/dev/null || missing+=(iproute2)
  if [ -n "${DATABASE_URL:-}" ]; then
    command -v socat >/dev/null || missing+=(socat)
    command -v psql >/dev/null || missing+=(postgresql-client)
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  if ! unshare --net true 2>/dev/null; then
    echo "fuzz: cannot create a network namespace (unshare --net); run as root" >&2
    exit 1
  fi

  if ! "$venv/bin/st" --version 2>/dev/null | grep -qx "st, version $version"; then
    echo "== installing schemathesis $version into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  fi

  echo "== building dibop"
  cargo build -q -p dibop --bin dibop

  work="$(mktemp -d)"
  relay=""
  database=""
  cleanup() {
    [ -n "$relay" ] && kill "$relay" 2>/dev/null || true
    if [ -n "$database" ]; then
      psql -q -d "$DATABASE_URL" -c "DROP DATABASE IF EXISTS \"$database\" WITH (FORCE)" >/dev/null || true
    fi
    [ -n "${FUZZ_KEEP:-}" ] && echo "fuzz: kept $work" || rm -rf "$work"
  }
  trap cleanup EXIT

  if [ -n "${DATABASE_URL:-}" ]; then
    # A fresh database on the same server, reached from inside the namespace through a relay:
    # TCP on the same loopback address and port inside -> unix socket -> the server outside.
    read -r pg_host pg_port fuzz_url < <(python3 - "$DATABASE_URL" "dibop_fuzz_$$" <<'EOF'
import sys, urllib.parse
url = urllib.parse.urlsplit(sys.argv[1])
host = url.hostname or ""
if host not in ("127.0.0.1", "localhost"):
    sys.exit(f"fuzz: DATABASE_URL must name a server on 127.0.0.1, not {host!r}")
port = url.port or 5432
user = url.netloc.rpartition("@")[0]
netloc = f"{user}@127.0.0.1:{port}" if user else f"127.0.0.1:{port}"
print("127.0.0.1", port, url._replace(netloc=netloc, path="/" + sys.argv[2]).geturl())
EOF
    )
    database="dibop_fuzz_$$"
    psql -q -d "$DATABASE_URL" -c "CREATE DATABASE \"$database\"" >/dev/null
    socat "UNIX-LISTEN:$work/pg.sock,fork" "TCP:$pg_host:$pg_port" &
    relay=$!
    export DIBOP_FUZZ_PG_PORT="$pg_port" DIBOP_FUZZ_DATABASE_URL="$fuzz_url"
  fi

  DIBOP_FUZZ_INSIDE=1 DIBOP_FUZZ_WORK="$work" DIBOP_FUZZ_ST="$venv/bin/st" \
    unshare --net --fork --kill-child=TERM -- bash "$root/scripts/fuzz.sh" "$@"
  exit $?
fi

# --- Inside the namespace: only a loopback interface. -----------------------------------------
work="$DIBOP_FUZZ_WORK"
ip link set lo up
bin="${CARGO_TARGET_DIR:-$root/target}/debug/dibop"
server=""
inner_relay=""
stop() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
  [ -n "$inner_relay" ] && kill "$inner_relay" 2>/dev/null || true
}
trap stop EXIT
trap 'exit 143' TERM INT

database_url=""
if [ -n "${DIBOP_FUZZ_PG_PORT:-}" ]; then
  socat "TCP-LISTEN:$DIBOP_FUZZ_PG_PORT,bind=127.0.0.1,fork,reuseaddr" "UNIX-CONNECT:$work/pg.sock" &
  inner_relay=$!
  database_url="$DIBOP_FUZZ_DATABASE_URL"
fi

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
email=fuzz-admin@dibop.test
password="fuzz-admin-password-$$"
mkdir -p "$work/data"
DIBOP_LISTEN="127.0.0.1:$port" DIBOP_DATA_DIR="$work/data" DATABASE_URL="$database_url" \
  DIBOP_ADMIN_EMAIL="$email" DIBOP_ADMIN_PASSWORD="$password" \
  DIBOP_JWT_SECRET="fuzz-jwt-secret-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
  DIBOP_EXECUTE_WAIT_MS=2000 DIBOP_SHUTDOWN_GRACE_MS=500 \
  "$bin" serve >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 1 300); do
  curl -sf "$base/readyz" >/dev/null && break
  kill -0 "$server" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
  sleep 0.1
done

token="$(curl -sf -H 'Content-Type: application/json' \
  -d "{\"email\":\"$email\",\"password\":\"$password\"}" "$base/api/v1/auth/login" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')" ||
  { echo "fuzz: the admin cannot log in" >&2; tail -n 20 "$work/server.log" >&2; exit 1; }
# The fuzzer sends thousands of requests a minute: lift the enterprise's limits (platform rights).
curl -sf -X PUT -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
  -d '{"rate_limits":{"api_requests_per_minute":1000000,"executions_per_minute":1000000}}' \
  "$base/api/v1/settings" >/dev/null

# One resource of each kind for the operations on /{id} (tests/fuzz/schemathesis.toml).
seeded="$(python3 tests/fuzz/seed.py "$base" "$token")"
while IFS='=' read -r name value; do export "$name=$value"; done <<<"$seeded"

echo "== schemathesis against $base (server log: $work/server.log)"
status=0
PYTHONPATH="$root/tests/fuzz" SCHEMATHESIS_HOOKS=hooks \
  "$DIBOP_FUZZ_ST" --config-file tests/fuzz/schemathesis.toml run "$base/api/v1/openapi.json" --url "$base" \
  -H "Authorization: Bearer $token" \
  --checks not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance \
  --max-examples "${FUZZ_MAX_EXAMPLES:-100}" --seed "${FUZZ_SEED:-20260408}" \
  --workers "${FUZZ_WORKERS:-2}" --generation-database none --request-timeout 30 \
  --no-color "$@" || status=$?
if [ "$status" -ne 0 ]; then
  echo "== server errors logged during the run"
  grep -E 'ERROR|panicked' "$work/server.log" | tail -n 40 || true
  echo "fuzz: FAILED (seed ${FUZZ_SEED:-20260408}; replay a case with the curl line above)"
else
  echo "fuzz: no server error and no answer outside its documented schema"
fi
exit "$status"
