#!/usr/bin/env bash
# The test command: the whole suite on SQLite, then again on PostgreSQL when
# DIBOP_TEST_DATABASE_URL names a server database (each test creates its own database there).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== tests on SQLite"
env -u DIBOP_TEST_DATABASE_URL cargo test --workspace

if [ -n "${DIBOP_TEST_DATABASE_URL:-}" ]; then
  echo "== tests on PostgreSQL ($DIBOP_TEST_DATABASE_URL)"
  cargo test --workspace
fi
