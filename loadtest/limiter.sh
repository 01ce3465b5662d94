#!/usr/bin/env bash
# What the in-process redirect limiter costs: redirect throughput of one cached code with
# SHORTENER_RATE_LIMIT_REDIRECT on (the default, 1000/s,burst=2000 per client) against off, same
# binary, same generator, interleaved rounds in one run. The service trusts 127.0.0.1 as a proxy
# and wrk spreads X-Forwarded-For over CLIENTS addresses, each far under its limit, so the
# limiter decides every request and refuses none (a 429 would be flagged).
#
#   loadtest/limiter.sh            ROUNDS=3 DURATION=5s CONNECTIONS=64 CLIENTS=10000
#
# Loopback only, every run bounded in time; the service on 127.0.0.1:18280 (admin 19280), the
# database shortener_limiter recreated. Output in OUT [target/loadtest/limiter-<timestamp>].
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-64}
CLIENTS=${CLIENTS:-10000}
OUT=${OUT:-target/loadtest/limiter-$(date +%Y%m%dT%H%M%S)}
DB=shortener_limiter
DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB?sslmode=disable"
PORT=18280
ADMIN_PORT=19280

log() { printf '[limiter %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[[ $DURATION =~ ^[1-9][0-9]*s$ ]] || die "DURATION must look like 5s"
for knob in ROUNDS CONNECTIONS CLIENTS; do
  [[ ${!knob} =~ ^[1-9][0-9]*$ ]] || die "$knob must be a positive integer"
done
command -v wrk >/dev/null || die "wrk is required (apt-get install wrk)"
mkdir -p "$OUT"
log "output in $OUT"
cargo build --release --bin shortener
./scripts/stack.sh up
export PGHOST=127.0.0.1 PGUSER=postgres PGCONNECT_TIMEOUT=5
psql -w -d postgres -v ON_ERROR_STOP=1 -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
psql -w -d postgres -v ON_ERROR_STOP=1 -qc "CREATE DATABASE $DB"
DATABASE_URL=$DATABASE_URL RUST_LOG=warn timeout 60 target/release/shortener migrate
psql -w -d "$DB" -v ON_ERROR_STOP=1 -qc \
  "INSERT INTO links (id, code, target_url, created_at) VALUES (1, 'hot-code', 'https://example.com/hot', now())"

cat >"$OUT/spread.lua" <<LUA
-- One cached code; X-Forwarded-For cycles through $CLIENTS addresses (10.x.y.z).
local n = 0
function request()
  n = (n + 1) % $CLIENTS
  local address = string.format("10.%d.%d.%d", math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256)
  return wrk.format("GET", "/hot-code", { ["X-Forwarded-For"] = address })
end
LUA

service_pid=''
stop_service() {
  [ -n "$service_pid" ] || return 0
  kill -TERM "$service_pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$service_pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$service_pid" 2>/dev/null || true
  service_pid=''
}
trap stop_service EXIT

start_service() { # REDIRECT_LIMIT
  env -i PATH="$PATH" DATABASE_URL="$DATABASE_URL" RUST_LOG=warn \
    SHORTENER_LISTEN=127.0.0.1:$PORT SHORTENER_ADMIN_LISTEN=127.0.0.1:$ADMIN_PORT \
    SHORTENER_TRUSTED_PROXIES=127.0.0.1/32 SHORTENER_RATE_LIMIT_REDIRECT="$1" \
    SHORTENER_STATS_FLUSH_INTERVAL=1h SHORTENER_CACHE_TTL=1h \
    target/release/shortener serve >>"$OUT/service.log" 2>&1 &
  service_pid=$!
  for _ in $(seq 1 100); do
    curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$ADMIN_PORT/readyz" && break
    sleep 0.1
  done
  # Warm: the code into memory.
  curl -s -o /dev/null "http://127.0.0.1:$PORT/hot-code"
}

echo "round,limiter,rps,non_3xx" >"$OUT/runs.csv"
problems=0
for round in $(seq 1 "$ROUNDS"); do
  if (( round % 2 )); then order="on off"; else order="off on"; fi
  for mode in $order; do
    if [ "$mode" = on ]; then start_service "1000/s,burst=2000"; else start_service off; fi
    file="$OUT/round$round-$mode.txt"
    timeout 60 wrk -t2 -c"$CONNECTIONS" -d"$DURATION" -s "$OUT/spread.lua" "http://127.0.0.1:$PORT" >"$file" 2>&1
    stop_service
    rps=$(awk '/Requests\/sec/ {print int($2)}' "$file")
    bad=$(awk '/Non-2xx or 3xx/ {print $NF}' "$file"); bad=${bad:-0}
    echo "$round,$mode,$rps,$bad" >>"$OUT/runs.csv"
    log "round $round limiter $mode: $rps redirects/s, $bad other answers"
    [ "$bad" = 0 ] || problems=$((problems + 1))
  done
done

python3 - "$OUT/runs.csv" <<'PY' | tee "$OUT/summary.md"
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
on = [float(r["rps"]) for r in rows if r["limiter"] == "on"]
off = [float(r["rps"]) for r in rows if r["limiter"] == "off"]
ratios = [float(a["rps"]) / float(b["rps"]) for a, b in zip(
    [r for r in rows if r["limiter"] == "on"], [r for r in rows if r["limiter"] == "off"])]
print(f"limiter on: median {statistics.median(on):,.0f} redirects/s; off: {statistics.median(off):,.0f}; "
      f"on/off per round {' '.join(f'{x:.3f}' for x in ratios)}; median ratio {statistics.median(ratios):.3f}")
PY
[ "$problems" = 0 ] || { log "$problems runs had answers other than 3xx"; exit 3; }
