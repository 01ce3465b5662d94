#!/usr/bin/env bash
# B2: schemathesis against the real server, from the server's own openapi.json, with every
# check, its stateful phase following the OpenAPI links (create → redirect → stats → QR → edit →
# delete) with an API key. The settings that differ from schemathesis' defaults, and why, are in
# api-fuzz/schemathesis.toml.
#
#   scripts/api-fuzz.sh [BINARY]       (BINARY: target/debug/shortener)
#
# Schemathesis (PyPI, pinned below) is installed into a virtual environment under target/ when
# missing. The service runs on 127.0.0.1:18610 against the database shortener_apifuzz (made
# afresh), its rate limits off for the run. Settings: SEED [20261207], MAX_EXAMPLES [40].
# Exits non-zero when schemathesis finds anything.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/debug/shortener}
SCHEMATHESIS_VERSION=4.32.5
VENV=${SCHEMATHESIS_VENV:-target/schemathesis-venv}
SEED=${SEED:-20261207}
MAX_EXAMPLES=${MAX_EXAMPLES:-40}
PORT=18610
ADMIN_PORT=19610
DB=shortener_apifuzz
log() { printf 'api-fuzz: %s\n' "$*" >&2; }

[ -x "$BIN" ] || { log "$BIN is not built"; exit 2; }
if [ "$("$VENV/bin/schemathesis" --version 2>/dev/null)" != "schemathesis, version $SCHEMATHESIS_VERSION" ]; then
  log "installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION"
fi

./scripts/stack.sh up
export PGHOST=127.0.0.1 PGUSER=postgres
psql -w -d postgres -v ON_ERROR_STOP=1 -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB?sslmode=disable"
LLVM_PROFILE_FILE=/dev/null "$BIN" migrate >/dev/null
key=$(LLVM_PROFILE_FILE=/dev/null "$BIN" apikey create --name api-fuzz --scope links | head -n 1)
log=$(mktemp)
env -i PATH="$PATH" DATABASE_URL="$DATABASE_URL" RUST_LOG=warn LLVM_PROFILE_FILE=/dev/null \
  SHORTENER_LISTEN=127.0.0.1:$PORT SHORTENER_ADMIN_LISTEN=127.0.0.1:$ADMIN_PORT \
  SHORTENER_PUBLIC_BASE_URL=http://sho.rt SHORTENER_RATE_LIMIT_CREATE=off \
  SHORTENER_RATE_LIMIT_REDIRECT=off SHORTENER_RATE_LIMIT_STATS=off \
  "$BIN" serve >"$log" 2>&1 &
service=$!
trap 'kill "$service" 2>/dev/null || true; wait "$service" 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 100); do
  curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$ADMIN_PORT/readyz" && break
  sleep 0.1
done

log "schemathesis $SCHEMATHESIS_VERSION, seed $SEED, at most $MAX_EXAMPLES examples an operation"
status=0
NO_COLOR=1 "$VENV/bin/schemathesis" --config-file api-fuzz/schemathesis.toml run \
  "http://127.0.0.1:$PORT/openapi.json" --checks all --seed "$SEED" \
  --max-examples "$MAX_EXAMPLES" -H "Authorization: Bearer $key" || status=$?
if grep -q '"level":"ERROR"' "$log"; then
  log "the service logged at error level:"; grep '"level":"ERROR"' "$log" | head -n 20 >&2
fi
exit "$status"
