#!/usr/bin/env bash
# Memory per cached link: RSS of the service (release) before and after every one of LINKS
# seeded links (60-byte targets, `shortener seed`) is read once, so memory holds them all;
# then RSS again 10 s later. Clicks are flushed every second as by default, so their tallies
# hold about a second's worth of links, not all of them (wrk cannot send HEAD, which counts
# none). Reports bytes per link.
#
#   loadtest/memory.sh            LINKS=1000000
#   BIN=/tmp/jemalloc/shortener loadtest/memory.sh     another build (e.g. another allocator)
#
# Then a flood: FLOOD connections (5,000) open at once for 5 s against a cached code, and RSS
# once they are closed and the service has idled 10 s (glibc keeps what a flood freed).
#
# Loopback only, bounded; the service on 127.0.0.1:18580 (admin 19580) with a cache of
# LINKS entries and a 1 h TTL, the database shortener_memory recreated. Output in OUT
# [target/loadtest/memory-<timestamp>].
set -euo pipefail
cd "$(dirname "$0")/.."

LINKS=${LINKS:-1000000}
FLOOD=${FLOOD:-5000}
BIN=${BIN:-}
OUT=${OUT:-target/loadtest/memory-$(date +%Y%m%dT%H%M%S)}
DB=shortener_memory
DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB?sslmode=disable"
PORT=18580
ADMIN_PORT=19580
KEY=memory-measurement-code-key

NAME=memory
# shellcheck source=loadtest/common.sh
. loadtest/common.sh
command -v wrk >/dev/null || { log "wrk is required (apt-get install wrk)"; exit 1; }
mkdir -p "$OUT"
if [ -z "$BIN" ]; then
  cargo build --release --bin shortener
  BIN=target/release/shortener
fi
fresh_database "$DB" "$BIN"
log "seeding $LINKS links"
DATABASE_URL=$DATABASE_URL SHORTENER_CODE_KEY=$KEY RUST_LOG=warn timeout 600 \
  "$BIN" seed --links "$LINKS" --codes-out "$OUT/codes.txt"

env -i PATH="$PATH" DATABASE_URL="$DATABASE_URL" RUST_LOG=warn SHORTENER_CODE_KEY=$KEY \
  SHORTENER_LISTEN=127.0.0.1:$PORT SHORTENER_ADMIN_LISTEN=127.0.0.1:$ADMIN_PORT \
  SHORTENER_RATE_LIMIT_REDIRECT=off SHORTENER_CACHE_CAPACITY="$LINKS" SHORTENER_CACHE_TTL=1h \
  "$BIN" serve >"$OUT/service.log" 2>&1 &
pid=$!
trap 'stop_pid "$pid"' EXIT
wait_ready "$ADMIN_PORT"
rss() { awk '/^VmRSS/ {print $2 * 1024}' "/proc/$pid/status"; }
entries() { curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '/^shortener_cache_entries\{cache="links"\}/ {print $2}'; }
before=$(rss)

cat >"$OUT/walk.lua" <<'LUA'
-- Each request the next code of codes.txt, every code once per pass; threads split the list.
local codes, n = {}, 0
function setup(thread)
  thread:set("id", n); n = n + 1
end
function init(args)
  for line in io.lines(args[1]) do codes[#codes + 1] = line end
  i = id
end
function request()
  local code = codes[(i % #codes) + 1]
  i = i + 2
  return wrk.format("GET", "/" .. code)
end
LUA
# Two threads, each a half of the list: a pass takes LINKS / rate seconds; run two passes' worth.
log "walking every code"
timeout 300 wrk -t2 -c32 -d"$(( LINKS / 20000 + 10 ))s" -s "$OUT/walk.lua" \
  "http://127.0.0.1:$PORT" -- "$OUT/codes.txt" >"$OUT/walk.txt" 2>&1
after=$(rss)
held=$(entries)
sleep 10
settled=$(rss)
log "flood: $FLOOD connections for 5 s"
hot=$(head -n 1 "$OUT/codes.txt")
timeout 60 wrk -t2 -c"$FLOOD" -d5s "http://127.0.0.1:$PORT/$hot" >"$OUT/flood.txt" 2>&1 || true
flooded=$(rss)
sleep 10
idle=$(rss)
python3 - "$before" "$after" "$settled" "$held" "$LINKS" "$flooded" "$idle" "$BIN" <<'PY' | tee "$OUT/summary.md"
import sys
before, after, settled, held, links, flooded, idle = (float(x) for x in sys.argv[1:8])
print(f"binary {sys.argv[8]}")
print(f"RSS before {before/2**20:,.1f} MiB; with {held:,.0f} links cached {after/2**20:,.1f} MiB; "
      f"10 s later {settled/2**20:,.1f} MiB")
print(f"per cached link: {(settled - before) / max(held, 1):,.0f} bytes "
      f"({links:,.0f} seeded, 60-byte targets)")
print(f"after the flood {flooded/2**20:,.1f} MiB; idle 10 s later {idle/2**20:,.1f} MiB "
      f"({(idle - settled)/2**20:+,.1f} MiB kept)")
PY
