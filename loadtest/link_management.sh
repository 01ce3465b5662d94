#!/usr/bin/env bash
# Link management under load (issue #18), against the release build, loopback only, bounded:
#  1. keys nobody made: DURATION of wrk sending `GET /links` with a random `shk_` key per
#     request; how many lookups reached the database (shortener_db_operations_total
#     {operation="key_lookup"}) against how many requests were answered 401;
#  2. visit limits: three instances on one database, wrk against each at once, for a link with
#     `max_visits` (a visit taken on the primary per redirect) and for an ordinary link,
#     interleaved ROUNDS times; redirects/s of all three together, and the ratio;
#  3. what a key costs a create: one instance, oha sending `POST /shorten` with an API key
#     (`Authorization: Bearer`) and without, interleaved ROUNDS times; creates/s and the ratio.
#
#   loadtest/link_management.sh       DURATION [5s], ROUNDS [3], CONNECTIONS [16 per instance]
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-5s}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-16}
OUT=${OUT:-target/loadtest/link-management-$(date +%Y%m%dT%H%M%S)}
DB=shortener_link_management
DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB?sslmode=disable"
BIN=target/release/shortener

NAME=link-management
# shellcheck source=loadtest/common.sh
. loadtest/common.sh
command -v wrk >/dev/null || die "wrk is required (apt-get install wrk)"
mkdir -p "$OUT"
cargo build --release --quiet --bin shortener
fresh_database "$DB" "$BIN"

pids=()
stop_all() { [ ${#pids[@]} -eq 0 ] || stop_pid "${pids[@]}"; pids=(); }
trap stop_all EXIT
start() { # PORT ADMIN_PORT
  env -i PATH="$PATH" DATABASE_URL="$DATABASE_URL" RUST_LOG=warn \
    SHORTENER_LISTEN=127.0.0.1:$1 SHORTENER_ADMIN_LISTEN=127.0.0.1:$2 \
    SHORTENER_RATE_LIMIT_REDIRECT=off SHORTENER_RATE_LIMIT_STATS=off \
    SHORTENER_RATE_LIMIT_CREATE=off SHORTENER_STATS_FLUSH_INTERVAL=1s \
    SHORTENER_PUBLIC_BASE_URL=http://127.0.0.1:$1 "$BIN" serve >>"$OUT/service.log" 2>&1 &
  pids+=($!)
  wait_ready "$2"
}
counter() { # ADMIN_PORT NAME LABEL
  curl -s "http://127.0.0.1:$1/metrics" | awk -v n="$2" -v l="$3" \
    'index($0, n "{") == 1 && index($0, l) { sum += $NF } END { print sum + 0 }'
}

# 1. Unknown keys.
start 18490 19490
cat >"$OUT/random-keys.lua" <<'LUA'
local chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
math.randomseed(os.time())
request = function()
  local key = {}
  for i = 1, 40 do
    local at = math.random(1, #chars)
    key[i] = chars:sub(at, at)
  end
  return wrk.format("GET", "/links", { ["Authorization"] = "Bearer shk_" .. table.concat(key) })
end
LUA
before=$(counter 19490 shortener_db_operations_total 'operation="key_lookup"')
timeout 60 wrk -t1 -c8 -d"$DURATION" -s "$OUT/random-keys.lua" http://127.0.0.1:18490/ \
  >"$OUT/unknown-keys.txt" 2>&1
after=$(counter 19490 shortener_db_operations_total 'operation="key_lookup"')
requests=$(awk '/requests in/ {print $1}' "$OUT/unknown-keys.txt")
refused=$(awk '/Non-2xx or 3xx/ {print $NF}' "$OUT/unknown-keys.txt")
echo "unknown keys: $requests requests in $DURATION, $refused answered non-2xx (401), $((after - before)) key lookups reached the database" | tee "$OUT/summary.txt"
stop_all

# 2. Visit limits, three instances.
for n in 0 1 2; do start $((18491 + n)) $((19491 + n)); done
made=$(curl -s -H 'Content-Type: application/json' \
  -d '{"url": "https://example.com/limited", "max_visits": 1000000000000}' \
  http://127.0.0.1:18491/shorten)
limited=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["code"])' "$made")
plain=$(curl -s -H 'Content-Type: application/json' -d '{"url": "https://example.com/plain"}' \
  http://127.0.0.1:18491/shorten | python3 -c 'import json,sys; print(json.load(sys.stdin)["code"])')
echo "round,link,rps" >"$OUT/visits.csv"
for round in $(seq 1 "$ROUNDS"); do
  if (( round % 2 )); then order="plain limited"; else order="limited plain"; fi
  for which in $order; do
    code=$plain; [ "$which" = limited ] && code=$limited
    loads=()
    for n in 0 1 2; do
      timeout 60 wrk -t1 -c"$CONNECTIONS" -d"$DURATION" "http://127.0.0.1:$((18491 + n))/$code" \
        >"$OUT/round$round-$which-$n.txt" 2>&1 &
      loads+=($!)
    done
    wait "${loads[@]}"
    rps=$(cat "$OUT"/round"$round"-"$which"-*.txt | awk '/Requests\/sec/ {sum += $2} END {print int(sum)}')
    bad=$(cat "$OUT"/round"$round"-"$which"-*.txt | awk '/Non-2xx or 3xx/ {sum += $NF} END {print sum + 0}')
    [ "$bad" = 0 ] || die "round $round $which: $bad answers were not redirects"
    echo "$round,$which,$rps" >>"$OUT/visits.csv"
    log "round $round $which: $rps redirects/s on three instances"
  done
done
python3 - "$OUT/visits.csv" <<'PY' | tee -a "$OUT/summary.txt"
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
by = lambda which: [float(r["rps"]) for r in rows if r["link"] == which]
plain, limited = statistics.median(by("plain")), statistics.median(by("limited"))
print(f"three instances: ordinary links {plain:,.0f} redirects/s, max_visits links {limited:,.0f} redirects/s (median of rounds), ratio {limited / plain:.3f}")
PY
visits=$(psql -w -d "$DB" -Atc "SELECT 1000000000000 - visits_left FROM links WHERE code = '$limited'")
echo "visits taken in Postgres: $visits" | tee -a "$OUT/summary.txt"
stop_all

# 3. Creates with a key against anonymous ones, one instance.
command -v oha >/dev/null || die "oha is required (cargo install oha)"
start 18495 19495
key=$(env -i PATH="$PATH" DATABASE_URL="$DATABASE_URL" "$BIN" apikey create --name load --scope links | head -1)
BODY='{"url":"https://example.com/some/long/path/for/a/benchmark"}'
echo "round,caller,rps" >"$OUT/creates.csv"
for round in $(seq 1 "$ROUNDS"); do
  if (( round % 2 )); then order="anonymous keyed"; else order="keyed anonymous"; fi
  for which in $order; do
    auth=()
    [ "$which" = keyed ] && auth=(-H "Authorization: Bearer $key")
    timeout 60 oha --no-tui -w -z "$DURATION" -c "$CONNECTIONS" -m POST \
      -H 'Content-Type: application/json' "${auth[@]}" -d "$BODY" \
      --output-format json http://127.0.0.1:18495/shorten >"$OUT/round$round-create-$which.json"
    read -r rps other < <(python3 - "$OUT/round$round-create-$which.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
codes = r.get("statusCodeDistribution", {})
other = sum(n for code, n in codes.items() if code != "201") + sum(r.get("errorDistribution", {}).values())
print(f'{r["summary"]["requestsPerSec"]:.0f} {other}')
PY
)
    [ "$other" = 0 ] || die "round $round $which creates: $other answers were not 201"
    echo "$round,$which,$rps" >>"$OUT/creates.csv"
    log "round $round $which: $rps creates/s"
  done
done
python3 - "$OUT/creates.csv" <<'PY' | tee -a "$OUT/summary.txt"
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
by = lambda which: {r["round"]: float(r["rps"]) for r in rows if r["caller"] == which}
anonymous, keyed = by("anonymous"), by("keyed")
ratios = [keyed[r] / anonymous[r] for r in sorted(anonymous, key=int)]
print(f"creates: anonymous {statistics.median(anonymous.values()):,.0f}/s, with an API key "
      f"{statistics.median(keyed.values()):,.0f}/s (medians); keyed/anonymous per round "
      f"{' '.join(f'{x:.3f}' for x in ratios)}, median {statistics.median(ratios):.3f}")
PY
