#!/usr/bin/env bash
# Checks the Swagger UI as a user would: starts `dibop serve` (scripts/browser-server.sh), opens
# /api/v1/docs in Debian's headless Chromium, authorizes with a token and runs one call.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/browser-server.sh
source scripts/browser-server.sh swagger@check.example
shot="${SWAGGER_SCREENSHOT:-${CARGO_TARGET_DIR:-$root/target}/swagger-check.png}"
node tests/browser/swagger-check.mjs "$shot"
