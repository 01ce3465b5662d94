#!/usr/bin/env bash
# The targets' mix, open loop, at rising rates: the rate a pod sustains within the mix's latency
# objective (p99 at most 10 ms, no errors: docs/requirements.md), and the service's CPU there.
# ADR 0009 sizes pods from it.
#
#   loadtest/open_mix.sh
#
# Seeds LINKS links (`shortener seed`), serves them with a cache of a quarter of them above the
# stack's Redis Cluster and streaming replica (as the load harness's TIERS=full), warms for
# WARM at the first rate, then runs loadtest/open_loop.rs (95 % redirects of Zipf-popular codes,
# 4 % creates, 1 % stats; latency from each request's due time) for DURATION at each of RATES,
# stopping after the first rate whose p99 passes 50 ms or whose errors pass 0.1 %. The
# service's, the primary's and the Redis Cluster's CPU are utime + stime from /proc over each
# run (run as root or postgres: the primary's postmaster.pid is read); everything shares this
# machine's CPUs (the generator, Postgres and Redis too).
#
# Settings: LINKS [1000000], RATES ["5000 10000 15000 20000 25000 30000 35000 40000"],
# DURATION [10s], WARM [20s], CONNECTIONS [256]. Loopback only, bounded in time; the service on
# 127.0.0.1:18510; the database shortener_openmix recreated. Output in OUT
# [target/loadtest/open-mix-<timestamp>].
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=open-mix
# shellcheck source=loadtest/common.sh
. loadtest/common.sh
LINKS=${LINKS:-1000000}
RATES=${RATES:-"5000 10000 15000 20000 25000 30000 35000 40000"}
DURATION=${DURATION:-10s}
WARM=${WARM:-20s}
CONNECTIONS=${CONNECTIONS:-256}
OUT=${OUT:-target/loadtest/open-mix-$(date +%Y%m%dT%H%M%S)}
DB=shortener_openmix
DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB?sslmode=disable"
REPLICA_URL="postgres://postgres@127.0.0.1:5433/$DB?sslmode=disable"
KEY=open-mix-code-key-not-secret
PORT=18510
ADMIN_PORT=19510
check_knobs LINKS CONNECTIONS
mkdir -p "$OUT"
log "output in $OUT"
cargo build --release --bin shortener --example open_loop
fresh_database "$DB" target/release/shortener
log "seeding $LINKS links"
DATABASE_URL=$DATABASE_URL SHORTENER_CODE_KEY=$KEY RUST_LOG=warn timeout 900 \
  target/release/shortener seed --links "$LINKS" --codes-out "$OUT/codes.txt"
for _ in $(seq 1 600); do
  [ "$(psql -qtA "$REPLICA_URL" -c 'SELECT count(*) FROM links' 2>/dev/null || echo 0)" -ge "$LINKS" ] && break
  sleep 0.5
done
trap stop_service EXIT
env -i PATH="$PATH" DATABASE_URL="$DATABASE_URL" RUST_LOG=warn SHORTENER_CODE_KEY=$KEY \
  SHORTENER_LISTEN=127.0.0.1:$PORT SHORTENER_ADMIN_LISTEN=127.0.0.1:$ADMIN_PORT \
  SHORTENER_CACHE_CAPACITY=$((LINKS / 4)) SHORTENER_PUBLIC_BASE_URL=http://sho.rt \
  SHORTENER_MAX_CONNECTIONS_PER_PEER=100000 SHORTENER_RATE_LIMIT_REDIRECT=off \
  SHORTENER_RATE_LIMIT_CREATE=off SHORTENER_RATE_LIMIT_STATS=off \
  REDIS_CLUSTER_NODES=127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003 \
  SHORTENER_REDIS_KEY_PREFIX="open-mix:$$:" DATABASE_REPLICA_URLS="$REPLICA_URL" \
  target/release/shortener serve >"$OUT/service.log" 2>&1 &
service_pid=$!
wait_ready "$ADMIN_PORT"
proc_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
ticks() { proc_ticks "$service_pid"; }
# The primary's processes (its postmaster and children: reads its postmaster.pid, so run as
# root or postgres) and the Redis Cluster's six servers, in clock ticks.
postmaster=$(head -n 1 "$(psql -w -d "$DB" -Atqc 'SHOW data_directory')/postmaster.pid")
pg_ticks() {
  { echo "$postmaster"; ps -o pid= --ppid "$postmaster"; } |
    while read -r p; do proc_ticks "$p"; done | awk '{s += $1} END {print s + 0}'
}
redis_pids=$(for port in 7001 7002 7003 7004 7005 7006; do
  redis-cli -p "$port" info server | awk -F: '/^process_id:/ {print $2 + 0}'; done)
redis_ticks() { for p in $redis_pids; do proc_ticks "$p"; done | awk '{s += $1} END {print s + 0}'; }
TICKS=$(getconf CLK_TCK)
first=${RATES%% *}
log "warming at $first/s for $WARM"
timeout 300 target/release/examples/open_loop "127.0.0.1:$PORT" "$first" "${WARM%s}" \
  "$OUT/codes.txt" "$CONNECTIONS" >"$OUT/warm.json"
echo "rate,answered,errors,p50_ms,p99_ms,p999_ms,max_ms,late,service_cpu_s,postgres_cpu_s,redis_cpu_s" >"$OUT/runs.csv"
for rate in $RATES; do
  before=$(ticks); pg_before=$(pg_ticks); redis_before=$(redis_ticks)
  timeout 300 target/release/examples/open_loop "127.0.0.1:$PORT" "$rate" "${DURATION%s}" \
    "$OUT/codes.txt" "$CONNECTIONS" >"$OUT/rate-$rate.json"
  cpu=$(python3 -c "print(($(ticks) - $before) / $TICKS)")
  pg_cpu=$(python3 -c "print(($(pg_ticks) - $pg_before) / $TICKS)")
  redis_cpu=$(python3 -c "print(($(redis_ticks) - $redis_before) / $TICKS)")
  line=$(python3 - "$OUT/rate-$rate.json" "$rate" "$cpu" "$pg_cpu" "$redis_cpu" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); a = r["all"]
print(f'{sys.argv[2]},{a["count"]},{a["errors"]},{a["p50_ms"]:.2f},{a["p99_ms"]:.2f},'
      f'{a["p999_ms"]:.2f},{a["max_ms"]:.1f},{r["late"]},{float(sys.argv[3]):.2f},'
      f'{float(sys.argv[4]):.2f},{float(sys.argv[5]):.2f}')
PY
)
  echo "$line" >>"$OUT/runs.csv"
  log "rate $rate: $line"
  IFS=, read -r _ answered errors _ p99 _ _ _ _ _ _ <<<"$line"
  if python3 -c "import sys; sys.exit(0 if $p99 > 50 or $errors > 0.001 * $answered else 1)"; then
    log "stopping: p99 past 50 ms or errors past 0.1 %"
    break
  fi
done
python3 - "$OUT/runs.csv" "${DURATION%s}" <<'PY' | tee "$OUT/summary.md"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]))); seconds = float(sys.argv[2])
print("| rate/s | answered | errors | p50 ms | p99 ms | p99.9 ms | max ms | sent late | service CPU (cores) | req/s a core | core-s a million: service / Postgres / Redis |")
print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
best = None
for r in rows:
    cores = float(r["service_cpu_s"]) / seconds
    per_core = int(r["answered"]) / float(r["service_cpu_s"]) if float(r["service_cpu_s"]) else 0
    million = lambda cpu: float(cpu) / int(r["answered"]) * 1e6
    print(f'| {r["rate"]} | {r["answered"]} | {r["errors"]} | {r["p50_ms"]} | {r["p99_ms"]} | {r["p999_ms"]} | {r["max_ms"]} | {r["late"]} | {cores:.2f} | {per_core:,.0f} | '
          f'{million(r["service_cpu_s"]):.1f} / {million(r["postgres_cpu_s"]):.1f} / {million(r["redis_cpu_s"]):.1f} |')
    if float(r["p99_ms"]) <= 10 and int(r["errors"]) == 0:
        best = (r["rate"], cores, per_core)
if best:
    print(f"\nWithin the objective (p99 ≤ 10 ms, no errors) up to {best[0]}/s, on {best[1]:.2f} of a core of service CPU: {best[2]:,.0f} req/s a core there.")
else:
    print("\nNo rate met the objective.")
PY
