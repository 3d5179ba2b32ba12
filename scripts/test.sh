#!/usr/bin/env bash
# The test command: the whole suite on SQLite, then again on PostgreSQL when
# DIBOP_TEST_DATABASE_URL names a server database (each test creates its own database there).
# Ends with one line "tests: N passed, N failed" over every run.
set -euo pipefail
cd "$(dirname "$0")/.."
log="$(mktemp)"
trap 'rm -f "$log"' EXIT

echo "== guest unit tests (plugins/ and the SDK, on the host target)"
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}/guest-host-tests" \
  cargo test --locked --manifest-path plugins/Cargo.toml --workspace 2>&1 | tee -a "$log"
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}/guest-host-tests" \
  cargo test --manifest-path sdk/Cargo.toml 2>&1 | tee -a "$log"
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}/guest-host-tests" \
  cargo test --manifest-path sdk/xml/Cargo.toml 2>&1 | tee -a "$log"

# Connectors in Python and JavaScript (the polyglot tests upload them).
scripts/build-connectors.sh

# The durability test starts and kills the `dibop` binary itself.
cargo build -p dibop --bin dibop

echo "== tests on SQLite"
env -u DIBOP_TEST_DATABASE_URL cargo test --workspace 2>&1 | tee -a "$log"

if [ -n "${DIBOP_TEST_DATABASE_URL:-}" ]; then
  echo "== tests on PostgreSQL ($DIBOP_TEST_DATABASE_URL)"
  cargo test --workspace 2>&1 | tee -a "$log"
fi

awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;/) p += $i; if ($(i+1) ~ /^failed;/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
