#!/usr/bin/env bash
# Dependency policy: `cargo deny --offline check licenses bans` against deny.toml (the licenses
# we accept, the crates we refuse, duplicate versions reported as warnings). No advisory
# database is fetched. Installs the pinned cargo-deny into ~/.cargo/bin when it is missing or at
# another version: a build from crates.io, about 7 minutes on two cores the first time.
set -euo pipefail
cd "$(dirname "$0")/.."
version=0.20.2

if ! cargo deny --version 2>/dev/null | grep -qx "cargo-deny $version"; then
  echo "== installing cargo-deny $version"
  # Its own throw-away target directory: the tool shares nothing with the workspace build.
  env -u CARGO_TARGET_DIR cargo install --locked --quiet cargo-deny --version "$version"
fi

# The host workspace, and the guest workspaces whose plugins are embedded in the binary, all
# against the one deny.toml here.
for manifest in Cargo.toml plugins/Cargo.toml sdk/Cargo.toml; do
  # cargo metadata (which cargo-deny reads offline) needs the sources of every package in the
  # lock file, including those of other platforms that no build here downloads.
  cargo fetch --locked --quiet --manifest-path "$manifest"
  echo "== cargo deny check licenses bans (offline): $manifest"
  cargo deny --offline --manifest-path "$manifest" check licenses bans
done
