#!/usr/bin/env bash
# The probes under a load that saturates the service: the service pinned to one CPU and wrk
# (CONNECTIONS connections on one hot code) on the other, for DURATION, while /healthz and
# /readyz on the admin port are asked every 50 ms; each probe's time (curl's time_total, a
# new connection each) is recorded. With several binaries, each in turn, same settings (the
# admin listener on a runtime of its own against one sharing the main runtime).
#
#   loadtest/probes.sh target/release/shortener [OTHER_BINARY...]
#
# Settings: DURATION [15s], CONNECTIONS [256], SERVER_CPU [0], LOAD_CPU [1]. Loopback only,
# bounded in time; the service on 127.0.0.1:18490 (admin 19490); the database shortener_probes
# recreated. Output in OUT [target/loadtest/probes-<timestamp>].
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=probes
# shellcheck source=loadtest/common.sh
. loadtest/common.sh
DURATION=${DURATION:-15s}
CONNECTIONS=${CONNECTIONS:-256}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
OUT=${OUT:-target/loadtest/probes-$(date +%Y%m%dT%H%M%S)}
DB=shortener_probes
PORT=18490
ADMIN_PORT=19490
[ $# -ge 1 ] || die "usage: loadtest/probes.sh BINARY [BINARY...]"
check_knobs CONNECTIONS
command -v wrk >/dev/null || die "wrk is required (apt-get install wrk)"
mkdir -p "$OUT"
log "output in $OUT"
fresh_database "$DB" "$1"
psql -w -d "$DB" -v ON_ERROR_STOP=1 -qc \
  "INSERT INTO links (id, code, target_url, created_at) VALUES (1, 'hot-code', 'https://example.com/hot', now())"
trap stop_service EXIT

seconds=${DURATION%s}
echo "binary,path,seconds" >"$OUT/probes.csv"
for binary in "$@"; do
  [ -x "$binary" ] || die "$binary is not an executable"
  env -i PATH="$PATH" DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB?sslmode=disable" \
    RUST_LOG=warn SHORTENER_LISTEN=127.0.0.1:$PORT SHORTENER_ADMIN_LISTEN=127.0.0.1:$ADMIN_PORT \
    SHORTENER_RATE_LIMIT_REDIRECT=off SHORTENER_MAX_CONNECTIONS_PER_PEER=100000 \
    taskset -c "$SERVER_CPU" "$binary" serve >>"$OUT/service.log" 2>&1 &
  service_pid=$!
  wait_ready "$ADMIN_PORT"
  timeout $((seconds + 30)) taskset -c "$LOAD_CPU" wrk -t2 -c"$CONNECTIONS" -d"$DURATION" \
    "http://127.0.0.1:$PORT/hot-code" >"$OUT/wrk-$(basename "$binary")-$service_pid.txt" 2>&1 &
  load=$!
  sleep 2 # the load at full rate
  end=$((SECONDS + seconds - 4))
  while [ "$SECONDS" -lt "$end" ]; do
    for path in /healthz /readyz; do
      took=$(taskset -c "$LOAD_CPU" curl -s -o /dev/null --max-time 5 -w '%{time_total}' \
        "http://127.0.0.1:$ADMIN_PORT$path" || echo 5)
      echo "$binary,$path,$took" >>"$OUT/probes.csv"
    done
    sleep 0.05
  done
  wait "$load" || true
  log "$binary: $(awk '/Requests\/sec/ {print int($2)}' "$OUT"/wrk-"$(basename "$binary")"-"$service_pid".txt) redirects/s during the probes"
  stop_service
done

python3 - "$OUT/probes.csv" <<'PY' | tee "$OUT/summary.md"
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
print("| binary | path | probes | median ms | p99 ms | max ms | over 100 ms |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for key in dict.fromkeys((r["binary"], r["path"]) for r in rows):
    ms = sorted(float(r["seconds"]) * 1000 for r in rows if (r["binary"], r["path"]) == key)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    over = sum(1 for x in ms if x > 100)
    print(f"| {key[0]} | {key[1]} | {len(ms)} | {statistics.median(ms):.2f} | {p99:.2f} | {ms[-1]:.2f} | {over} |")
PY
