#!/usr/bin/env bash
# A newcomer who is not root: the local stack set up, and a test binary already built run
# against it, as a user with sudo (made here: `shortener-newcomer`, sudo without a password),
# on ports and in directories of its own beside the stack `make test` uses, which is left
# alone. Then everything it started is stopped and its replication slot dropped.
#
#   scripts/newcomer-check.sh TEST_BINARY      e.g. the built tests/replica.rs
#
# Run as root (CI): it makes the user and installs sudo when missing. Run as anyone else with
# sudo, it runs the stack set-up as that user.
set -euo pipefail
cd "$(dirname "$0")/.."

binary=${1:?usage: scripts/newcomer-check.sh TEST_BINARY}
[ -x "$binary" ] || { echo "newcomer-check: $binary is not an executable" >&2; exit 2; }
NEWCOMER=shortener-newcomer
STACK_DIR=/var/tmp/shortener-newcomer
REPLICA_PORT=5443
REDIS_PORT=6390
CLUSTER_BASE_PORT=7101
SLOT=shortener_newcomer_replica
log() { printf 'newcomer-check: %s\n' "$*" >&2; }

settings=(
  "SHORTENER_STACK_DIR=$STACK_DIR" "REPLICA_PORT=$REPLICA_PORT" "REDIS_PORT=$REDIS_PORT"
  "SHORTENER_CLUSTER_BASE_PORT=$CLUSTER_BASE_PORT" "SHORTENER_REPLICA_SLOT=$SLOT"
)
if [ "$(id -u)" -eq 0 ]; then
  if ! command -v sudo >/dev/null; then
    log "installing sudo (Debian package)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sudo >/dev/null
  fi
  id "$NEWCOMER" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$NEWCOMER"
  echo "$NEWCOMER ALL=(ALL) NOPASSWD: ALL" >"/etc/sudoers.d/$NEWCOMER"
  chmod 0440 "/etc/sudoers.d/$NEWCOMER"
  as_newcomer() { runuser -u "$NEWCOMER" -- env "${settings[@]}" "$@"; }
else
  as_newcomer() { env "${settings[@]}" "$@"; }
fi

cleanup() {
  log "stopping what the newcomer's stack started"
  as_newcomer ./scripts/stack.sh stop || true
  redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  psql -w -h 127.0.0.1 -U postgres -d postgres -Atqc "SELECT pg_drop_replication_slot('$SLOT') \
    FROM pg_replication_slots WHERE slot_name = '$SLOT' AND NOT active" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# A stack left by an earlier run is made again from scratch, as the newcomer.
cleanup
sudo_or_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
sudo_or_root rm -rf "$STACK_DIR"

log "the stack, as $(as_newcomer id -un)"
as_newcomer ./scripts/stack.sh up
log "$binary, as $(as_newcomer id -un), against it"
as_newcomer LLVM_PROFILE_FILE=/dev/null \
  SHORTENER_TEST_REPLICA_URL="postgres://postgres@127.0.0.1:$REPLICA_PORT/postgres" \
  SHORTENER_TEST_REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
  SHORTENER_TEST_REDIS_CLUSTER_NODES="127.0.0.1:$CLUSTER_BASE_PORT,127.0.0.1:$((CLUSTER_BASE_PORT + 1)),127.0.0.1:$((CLUSTER_BASE_PORT + 2))" \
  "$binary" --test-threads=2
log "passed: the stack and the tests run for a user who is not root"
