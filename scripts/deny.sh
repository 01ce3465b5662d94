#!/usr/bin/env bash
# The dependency policy of deny.toml: licences, bans (duplicate versions, wildcards) and
# sources, checked offline with cargo-deny (installed from crates.io when missing). The
# advisories check needs the RustSec database from GitHub, which these machines cannot reach:
# it is left to the users' CI (deny.toml says so).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CARGO_DENY_VERSION=0.20.2
if ! cargo deny --version >/dev/null 2>&1; then
  echo "deny: installing cargo-deny $CARGO_DENY_VERSION" >&2
  cargo install cargo-deny --version "$CARGO_DENY_VERSION" --locked
fi
# Offline, cargo-deny reads every crate of Cargo.lock, including those no build here needed
# (other platforms' dependencies): fetch them from crates.io first.
cargo fetch --locked --quiet
cargo deny --offline check licenses bans sources
