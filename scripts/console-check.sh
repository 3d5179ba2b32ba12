#!/usr/bin/env bash
# Checks the web console in Debian's headless Chromium (tests/browser/console-check.mjs): starts
# `dibop serve` (scripts/browser-server.sh) and drives the console as a user. Screenshots go to
# <target>/console-shots.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/browser-server.sh
source scripts/browser-server.sh console@check.example
node tests/browser/console-check.mjs "${CONSOLE_SCREENSHOTS:-${CARGO_TARGET_DIR:-$root/target}/console-shots}"
