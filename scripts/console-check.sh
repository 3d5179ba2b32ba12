#!/usr/bin/env bash
# Checks the web console in Debian's headless Chromium (tests/browser/console-check.mjs): starts
# `dibop serve` (scripts/browser-server.sh) and drives the console as its users do. On SQLite,
# or on a fresh PostgreSQL database when DIBOP_TEST_DATABASE_URL is set (a server URL such as
# postgres://postgres@127.0.0.1:5432/postgres). Screenshots and the axe-core findings go to
# <target>/console-shots (console-shots-postgres).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
shots="${CONSOLE_SCREENSHOTS:-$target/console-shots}"
if [ -n "${DIBOP_TEST_DATABASE_URL:-}" ]; then
  database="dibop_t_console_$$"
  psql "$DIBOP_TEST_DATABASE_URL" -qc "CREATE DATABASE $database"
  export DIBOP_BROWSER_DATABASE_URL="${DIBOP_TEST_DATABASE_URL%/*}/$database"
  shots="${CONSOLE_SCREENSHOTS:-$target/console-shots-postgres}"
fi
# The check's stand-in for vPIC listens on loopback, which plugins may reach only when allowed.
export DIBOP_ALLOW_PRIVATE_NETWORKS=true
# shellcheck source=scripts/browser-server.sh
source scripts/browser-server.sh console@check.example
DIBOP_GUESTS="$target/wasm-plugins/wasm32-wasip2/release" node tests/browser/console-check.mjs "$shots"
