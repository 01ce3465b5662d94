#!/usr/bin/env bash
# What writing clicks costs a redirect: the same binary, the same generator, interleaved
# rounds in one run (the order alternates so drift cancels), two modes:
#   memory   each click counted in memory, never written (SHORTENER_STATS_FLUSH_INTERVAL=1h)
#   flushed  counted and written to Postgres every second (the default)
# (Counting itself, without the writes, is in the criterion figures: `click_record` and
# `bot_detection`; wrk cannot send the HEAD requests that would count none.)
# over SPREAD cached codes (default 10,000; 1 = one hot code), a random one a request, wrk with
# a browser's User-Agent (so bot detection runs as for real clicks). The service is pinned to
# CPU 0 and wrk to CPU 1; Postgres floats, so on this two-CPU machine its writes take CPU from
# one or the other, as they would not where Postgres runs elsewhere (the flushes' own cost is
# in the report: rows written, from pg_stat_user_tables).
#
#   loadtest/clicks.sh          ROUNDS=5 DURATION=5s CONNECTIONS=64 SPREAD=10000
#
# Loopback only, bounded; the service on 127.0.0.1:18880 (admin 19880), the database
# shortener_clicks recreated. Output in OUT [target/loadtest/clicks-<timestamp>].
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-64}
SPREAD=${SPREAD:-10000}
OUT=${OUT:-target/loadtest/clicks-$(date +%Y%m%dT%H%M%S)}
DB=shortener_clicks
DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB?sslmode=disable"
PORT=18880
ADMIN_PORT=19880

NAME=clicks
# shellcheck source=loadtest/common.sh
. loadtest/common.sh
check_knobs ROUNDS CONNECTIONS SPREAD
for cmd in wrk taskset python3; do command -v "$cmd" >/dev/null || die "$cmd is required"; done
mkdir -p "$OUT"
log "output in $OUT"
cargo build --release --bin shortener
fresh_database "$DB" target/release/shortener
psql -w -d "$DB" -v ON_ERROR_STOP=1 -qc "INSERT INTO links (id, code, target_url, created_at)
  SELECT n, 'c' || lpad(n::text, 8, '0'), 'https://example.com/some/long/path/' || n, now()
  FROM generate_series(1, $SPREAD) AS n"
cat >"$OUT/clicks.lua" <<LUA
-- A random one of the $SPREAD codes.
local method = "GET"
function init(args) math.randomseed(os.time() + math.random(1000)) end
local agent = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
function request()
  return wrk.format(method, string.format("/c%08d", math.random(1, $SPREAD)), { ["User-Agent"] = agent })
end
LUA
cat >"$OUT/walk.lua" <<LUA
local n = 0
function request() n = n % $SPREAD + 1; return wrk.format("GET", string.format("/c%08d", n)) end
LUA

trap stop_service EXIT
rows_written() {
  psql -w -d "$DB" -Atqc "SELECT coalesce(sum(n_tup_ins + n_tup_upd), 0) FROM pg_stat_user_tables
    WHERE relname = 'link_clicks_daily'"
}

start_service() { # MODE
  local flush=1h
  [ "$1" = flushed ] && flush=1s
  env -i PATH="$PATH" DATABASE_URL="$DATABASE_URL" RUST_LOG=warn \
    SHORTENER_LISTEN=127.0.0.1:$PORT SHORTENER_ADMIN_LISTEN=127.0.0.1:$ADMIN_PORT \
    SHORTENER_RATE_LIMIT_REDIRECT=off SHORTENER_MAX_CONNECTIONS_PER_PEER=100000 \
    SHORTENER_STATS_FLUSH_INTERVAL=$flush SHORTENER_CACHE_TTL=1h \
    taskset -c 0 target/release/shortener serve >"$OUT/service-$1.log" 2>&1 &
  service_pid=$!
  wait_ready "$ADMIN_PORT"
  # Every code into memory first, so every mode measures cache hits.
  timeout 60 taskset -c 1 wrk -t1 -c1 -d"$(( SPREAD / 2000 + 2 ))s" -s "$OUT/walk.lua" \
    "http://127.0.0.1:$PORT" >/dev/null 2>&1 || true
}

modes=(memory flushed)
echo "round,mode,rps,non_3xx,rows" >"$OUT/runs.csv"
problems=0
for round in $(seq 1 "$ROUNDS"); do
  shift_by=$(( (round - 1) % ${#modes[@]} ))
  order=("${modes[@]:$shift_by}" "${modes[@]:0:$shift_by}")
  for mode in "${order[@]}"; do
    start_service "$mode"
    rows_before=$(rows_written)
    file="$OUT/round$round-$mode.txt"
    timeout 60 taskset -c 1 wrk -t2 -c"$CONNECTIONS" -d"$DURATION" -s "$OUT/clicks.lua" \
      "http://127.0.0.1:$PORT" >"$file" 2>&1
    stop_service
    rows=$(( $(rows_written) - rows_before ))
    rps=$(awk '/Requests\/sec/ {print int($2)}' "$file")
    bad=$(awk '/Non-2xx or 3xx/ {print $NF}' "$file"); bad=${bad:-0}
    echo "$round,$mode,$rps,$bad,$rows" >>"$OUT/runs.csv"
    log "round $round $mode: $rps redirects/s, $bad other answers, $rows click rows written"
    [ "$bad" = 0 ] || problems=$((problems + 1))
  done
done

python3 - "$OUT/runs.csv" <<'PY' | tee "$OUT/summary.md"
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
by = lambda mode: {r["round"]: float(r["rps"]) for r in rows if r["mode"] == mode}
memory, flushed = by("memory"), by("flushed")
rounds = sorted(memory, key=int)
def line(name, a, b):
    ratios = [a[r] / b[r] for r in rounds]
    print(f"{name} per round: {' '.join(f'{x:.3f}' for x in ratios)}; median **{statistics.median(ratios):.3f}**")
print(f"medians: clicks counted in memory {statistics.median(memory.values()):,.0f}, counted and "
      f"flushed every second {statistics.median(flushed.values()):,.0f} redirects/s")
line("flushed every second / in memory", flushed, memory)
rows_flushed = [int(r["rows"]) for r in rows if r["mode"] == "flushed"]
print(f"click rows written by the flushed runs: {' '.join(map(str, rows_flushed))}")
PY
[ "$problems" = 0 ] || { log "$problems runs had answers other than 3xx"; exit 3; }
