#!/usr/bin/env bash
# Two builds of the service side by side: redirect throughput of one cached code, binary A
# against binary B, same settings, same generator, interleaved rounds (the order alternating)
# in one run. For "what did this change cost": build the old commit in a worktree, then
#
#   loadtest/ab.sh /tmp/old/target/release/shortener target/release/shortener
#
# Settings: ROUNDS [5], DURATION [5s], CONNECTIONS [64], SERVER_CPU [0], LOAD_CPU [1] (the
# service pinned to one CPU and wrk to the other, as loadtest/ratio.sh does), EXTRA_ENV (more
# VAR=value settings for both). Clicks stay in memory, the redirect limit is off. Loopback
# only, bounded in time; the service on 127.0.0.1:18480; the database shortener_ab recreated
# (migrated by binary B). Output in OUT [target/loadtest/ab-<timestamp>].
set -euo pipefail
cd "$(dirname "$0")/.."

A=${1:?usage: loadtest/ab.sh BINARY_A BINARY_B}
B=${2:?usage: loadtest/ab.sh BINARY_A BINARY_B}
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-64}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
EXTRA_ENV=${EXTRA_ENV:-}
OUT=${OUT:-target/loadtest/ab-$(date +%Y%m%dT%H%M%S)}
DB=shortener_ab
DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB?sslmode=disable"
PORT=18480
ADMIN_PORT=19480

NAME=ab
# shellcheck source=loadtest/common.sh
. loadtest/common.sh
[[ -x $A && -x $B ]] || die "both binaries must exist and be executable"
[[ $DURATION =~ ^[1-9][0-9]*s$ ]] || die "DURATION must look like 5s"
command -v wrk >/dev/null || die "wrk is required (apt-get install wrk)"
mkdir -p "$OUT"
log "output in $OUT"
fresh_database "$DB" "$B"
psql -w -d "$DB" -v ON_ERROR_STOP=1 -qc \
  "INSERT INTO links (id, code, target_url, created_at) VALUES (1, 'hot-code', 'https://example.com/hot', now())"

trap stop_service EXIT

start_service() { # BINARY
  # shellcheck disable=SC2086 # EXTRA_ENV is a list of VAR=value words
  env -i PATH="$PATH" DATABASE_URL="$DATABASE_URL" RUST_LOG=warn \
    SHORTENER_LISTEN=127.0.0.1:$PORT SHORTENER_ADMIN_LISTEN=127.0.0.1:$ADMIN_PORT \
    SHORTENER_RATE_LIMIT_REDIRECT=off SHORTENER_STATS_FLUSH_INTERVAL=1h SHORTENER_CACHE_TTL=1h \
    $EXTRA_ENV taskset -c "$SERVER_CPU" "$1" serve >>"$OUT/service.log" 2>&1 &
  service_pid=$!
  wait_ready "$ADMIN_PORT"
  curl -s -o /dev/null "http://127.0.0.1:$PORT/hot-code"
}

echo "round,binary,rps,non_3xx" >"$OUT/runs.csv"
problems=0
for round in $(seq 1 "$ROUNDS"); do
  if (( round % 2 )); then order="A B"; else order="B A"; fi
  for which in $order; do
    if [ "$which" = A ]; then start_service "$A"; else start_service "$B"; fi
    file="$OUT/round$round-$which.txt"
    timeout 60 taskset -c "$LOAD_CPU" wrk -t2 -c"$CONNECTIONS" -d"$DURATION" \
      "http://127.0.0.1:$PORT/hot-code" >"$file" 2>&1
    stop_service
    rps=$(awk '/Requests\/sec/ {print int($2)}' "$file")
    bad=$(awk '/Non-2xx or 3xx/ {print $NF}' "$file"); bad=${bad:-0}
    echo "$round,$which,$rps,$bad" >>"$OUT/runs.csv"
    log "round $round $which: $rps redirects/s, $bad other answers"
    [ "$bad" = 0 ] || problems=$((problems + 1))
  done
done

python3 - "$OUT/runs.csv" "$A" "$B" <<'PY' | tee "$OUT/summary.md"
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
by = lambda which: {r["round"]: float(r["rps"]) for r in rows if r["binary"] == which}
a, b = by("A"), by("B")
ratios = [b[r] / a[r] for r in sorted(a, key=int)]
print(f"A = {sys.argv[2]}: median {statistics.median(a.values()):,.0f} redirects/s")
print(f"B = {sys.argv[3]}: median {statistics.median(b.values()):,.0f} redirects/s")
print(f"B/A per round: {' '.join(f'{x:.3f}' for x in ratios)}; median {statistics.median(ratios):.3f}")
PY
[ "$problems" = 0 ] || { log "$problems runs had answers other than 3xx"; exit 3; }
