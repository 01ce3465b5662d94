#!/usr/bin/env bash
# RSS over a soak: the service (release) under a Zipf-popular redirect load over LINKS seeded
# links with a cache of a quarter of them, for SOAK seconds (600), /metrics scraped every
# 30 s like a Prometheus would; RSS sampled every 30 s. Reports the samples and whether RSS
# is flat over the second half (growth under 5 %).
#
#   loadtest/soak.sh            LINKS=200000 SOAK=600 CONNECTIONS=16
#
# Loopback only, bounded in time; the service on 127.0.0.1:18780 (admin 19780), the database
# shortener_soak recreated. Output in OUT [target/loadtest/soak-<timestamp>].
set -euo pipefail
cd "$(dirname "$0")/.."

LINKS=${LINKS:-200000}
SOAK=${SOAK:-600}
CONNECTIONS=${CONNECTIONS:-16}
OUT=${OUT:-target/loadtest/soak-$(date +%Y%m%dT%H%M%S)}
DB=shortener_soak
DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB?sslmode=disable"
PORT=18780
ADMIN_PORT=19780
KEY=soak-measurement-code-key

NAME=soak
# shellcheck source=loadtest/common.sh
. loadtest/common.sh
command -v wrk >/dev/null || { log "wrk is required (apt-get install wrk)"; exit 1; }
mkdir -p "$OUT"
cargo build --release --bin shortener
fresh_database "$DB" target/release/shortener
DATABASE_URL=$DATABASE_URL SHORTENER_CODE_KEY=$KEY RUST_LOG=warn timeout 600 \
  target/release/shortener seed --links "$LINKS" --codes-out "$OUT/codes.txt"
env -i PATH="$PATH" DATABASE_URL="$DATABASE_URL" RUST_LOG=warn SHORTENER_CODE_KEY=$KEY \
  SHORTENER_LISTEN=127.0.0.1:$PORT SHORTENER_ADMIN_LISTEN=127.0.0.1:$ADMIN_PORT \
  SHORTENER_RATE_LIMIT_REDIRECT=off SHORTENER_CACHE_CAPACITY=$(( LINKS / 4 )) \
  target/release/shortener serve >"$OUT/service.log" 2>&1 &
pid=$!
trap 'stop_pid "$pid"' EXIT
wait_ready "$ADMIN_PORT"
log "soaking for $SOAK s"
timeout $(( SOAK + 60 )) wrk -t2 -c"$CONNECTIONS" -d"${SOAK}s" --timeout 5s -s loadtest/scenario.lua \
  "http://127.0.0.1:$PORT" -- zipf "$OUT/codes.txt" 0 >"$OUT/wrk.txt" 2>&1 &
load=$!
echo "seconds,rss_bytes" >"$OUT/rss.csv"
started=$(date +%s)
while kill -0 "$load" 2>/dev/null; do
  curl -s -o /dev/null "http://127.0.0.1:$ADMIN_PORT/metrics"
  echo "$(( $(date +%s) - started )),$(awk '/^VmRSS/ {print $2 * 1024}' "/proc/$pid/status")" >>"$OUT/rss.csv"
  sleep 30
done
python3 - "$OUT/rss.csv" <<'PY' | tee "$OUT/summary.md"
import csv, sys
rows = [(int(r["seconds"]), int(r["rss_bytes"])) for r in csv.DictReader(open(sys.argv[1]))]
half = [rss for s, rss in rows if s >= rows[-1][0] / 2]
print("RSS (MiB) every 30 s: " + " ".join(f"{rss / 2**20:.0f}" for _, rss in rows))
growth = (half[-1] - half[0]) / half[0]
print(f"second half: {half[0] / 2**20:.1f} -> {half[-1] / 2**20:.1f} MiB ({growth:+.1%}); "
      f"{'flat' if abs(growth) < 0.05 else 'NOT flat'}")
PY
grep -E 'Requests/sec|requests in' "$OUT/wrk.txt" | tee -a "$OUT/summary.md"
