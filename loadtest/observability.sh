#!/usr/bin/env bash
# What observability costs on the redirect path: redirect throughput of one cached code with
# metrics off (SHORTENER_METRICS=off), on (the default), on with the access log at `all` (one
# JSON line per request, written to a file), and on with the access log at `all` sampled at
# 1 % (SHORTENER_ACCESS_LOG_SAMPLE=0.01), same binary, same generator, interleaved rounds in
# one run (the order rotates between rounds so drift cancels). The redirect limit is
# off (every request comes from 127.0.0.1); clicks stay in memory for the run.
#
#   loadtest/observability.sh      ROUNDS=5 DURATION=5s CONNECTIONS=64
#
# Loopback only, every run bounded in time; the service on 127.0.0.1:18380 (admin 19380), the
# database shortener_observability recreated. Output in OUT
# [target/loadtest/observability-<timestamp>]: each wrk output, runs.csv, summary.md.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-64}
OUT=${OUT:-target/loadtest/observability-$(date +%Y%m%dT%H%M%S)}
DB=shortener_observability
DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB?sslmode=disable"
PORT=18380
ADMIN_PORT=19380

NAME=observability
# shellcheck source=loadtest/common.sh
. loadtest/common.sh
check_knobs ROUNDS CONNECTIONS
command -v wrk >/dev/null || die "wrk is required (apt-get install wrk)"
mkdir -p "$OUT"
log "output in $OUT"
cargo build --release --bin shortener
fresh_database "$DB" target/release/shortener
psql -w -d "$DB" -v ON_ERROR_STOP=1 -qc \
  "INSERT INTO links (id, code, target_url, created_at) VALUES (1, 'hot-code', 'https://example.com/hot', now())"

trap stop_service EXIT

start_service() { # MODE: off | on | access | sampled
  local metrics=on access=off sample=1
  case $1 in
    off) metrics=off ;;
    access) access=all ;;
    sampled) access=all sample=0.01 ;;
  esac
  env -i PATH="$PATH" DATABASE_URL="$DATABASE_URL" RUST_LOG=info \
    SHORTENER_LISTEN=127.0.0.1:$PORT SHORTENER_ADMIN_LISTEN=127.0.0.1:$ADMIN_PORT \
    SHORTENER_RATE_LIMIT_REDIRECT=off SHORTENER_METRICS=$metrics SHORTENER_ACCESS_LOG=$access \
    SHORTENER_ACCESS_LOG_SAMPLE=$sample \
    SHORTENER_LOG_FORMAT=json SHORTENER_STATS_FLUSH_INTERVAL=1h SHORTENER_CACHE_TTL=1h \
    target/release/shortener serve >"$OUT/service-$1.log" 2>&1 &
  service_pid=$!
  wait_ready "$ADMIN_PORT"
  curl -s -o /dev/null "http://127.0.0.1:$PORT/hot-code"
}

modes=(off on access sampled)
echo "round,mode,rps,non_3xx" >"$OUT/runs.csv"
problems=0
for round in $(seq 1 "$ROUNDS"); do
  shift_by=$(( (round - 1) % ${#modes[@]} ))
  order=("${modes[@]:$shift_by}" "${modes[@]:0:$shift_by}")
  for mode in "${order[@]}"; do
    start_service "$mode"
    file="$OUT/round$round-$mode.txt"
    timeout 60 wrk -t2 -c"$CONNECTIONS" -d"$DURATION" "http://127.0.0.1:$PORT/hot-code" >"$file" 2>&1
    stop_service
    rps=$(awk '/Requests\/sec/ {print int($2)}' "$file")
    bad=$(awk '/Non-2xx or 3xx/ {print $NF}' "$file"); bad=${bad:-0}
    echo "$round,$mode,$rps,$bad" >>"$OUT/runs.csv"
    log "round $round $mode: $rps redirects/s, $bad other answers"
    [ "$bad" = 0 ] || problems=$((problems + 1))
  done
done
access_lines=$(grep -c '"target":"access"' "$OUT/service-access.log" || true)
log "the last access-log run wrote $access_lines access lines"

python3 - "$OUT/runs.csv" <<'PY' | tee "$OUT/summary.md"
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
by = lambda mode: {r["round"]: float(r["rps"]) for r in rows if r["mode"] == mode}
off, on, access, sampled = by("off"), by("on"), by("access"), by("sampled")
rounds = sorted(off, key=int)
def ratios(a, b):
    return [a[r] / b[r] for r in rounds]
metrics = ratios(on, off)
logging = ratios(access, on)
sampling = ratios(sampled, on)
print(f"medians: metrics off {statistics.median(off.values()):,.0f}, on {statistics.median(on.values()):,.0f}, "
      f"on + access log {statistics.median(access.values()):,.0f}, "
      f"on + access log sampled at 1 % {statistics.median(sampled.values()):,.0f} redirects/s")
print(f"metrics on/off per round: {' '.join(f'{x:.3f}' for x in metrics)}; median {statistics.median(metrics):.3f}")
print(f"access log all/off (metrics on) per round: {' '.join(f'{x:.3f}' for x in logging)}; median {statistics.median(logging):.3f}")
print(f"access log sampled at 1 %/off (metrics on) per round: {' '.join(f'{x:.3f}' for x in sampling)}; median {statistics.median(sampling):.3f}")
PY
[ "$problems" = 0 ] || { log "$problems runs had answers other than 3xx"; exit 3; }
