#!/usr/bin/env bash
# Instructions per cached redirect, counted by valgrind's callgrind (repeatable whatever else the
# machine does), for one or more builds of examples/redirect_instructions.rs: each is run with
# N1 and N2 requests, and (Ir(N2) - Ir(N1)) / (N2 - N1) is the cost of one request (hyper's
# parsing and writing included, the in-memory client's too).
#
#   cargo build --release --example redirect_instructions
#   loadtest/instructions.sh target/release/examples/redirect_instructions [OTHER_BUILD...]
#
# Settings: N1 [2000], N2 [12000]. Needs valgrind (installed from Debian when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=instructions
# shellcheck source=loadtest/common.sh
. loadtest/common.sh
N1=${N1:-2000}
N2=${N2:-12000}
[ $# -ge 1 ] || die "usage: loadtest/instructions.sh BINARY [BINARY...]"
if ! command -v valgrind >/dev/null; then
  log "installing valgrind (Debian package)"
  apt-get update -qq && apt-get install -y -qq valgrind >/dev/null
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
count() { # BINARY N -> instructions collected inside `exchanges`
  valgrind --tool=callgrind --toggle-collect='*exchanges*' --callgrind-out-file="$out/cg" \
    "$1" "$2" >/dev/null 2>&1
  awk '/^summary:/ {print $2}' "$out/cg"
}
for binary in "$@"; do
  [ -x "$binary" ] || die "$binary is not an executable"
  first=$(count "$binary" "$N1")
  second=$(count "$binary" "$N2")
  echo "$binary: $(( (second - first) / (N2 - N1) )) instructions per redirect ($N1: $first, $N2: $second)"
done
