#!/usr/bin/env bash
# What the data costs on disk, in WAL and in CPU: the figures the capacity plan (ADR 0009,
# "Storage") multiplies.
#
#   loadtest/storage.sh [BINARY]      (BINARY: target/release/shortener)
#
# 1. LINKS (1,000,000) links with target URLs of a realistic spread of lengths (below), written
#    in one statement: bytes a link in the table and in each index, and WAL a link.
# 2. 100,000 idempotency records with a stored answer as a create writes it: bytes a record.
# 3. 1,000,000 daily click rows, then 100,000 of them updated and 100,000 inserted the way the
#    flusher does (INSERT … ON CONFLICT DO UPDATE): bytes a row, WAL an update and an insert.
# 4. Creates through the service with Redis (write-through and the shared create limit; wrk,
#    POST /shorten, CONNECTIONS connections, DURATION, URLs of the mean length): WAL a create,
#    and the CPU a create of the service, the primary and Redis.
# 5. Lookups by code as the read path makes them (pgbench, 8 clients, DURATION): the primary's
#    CPU a lookup.
#
# URL lengths (bytes): 30 % 40–59, 40 % 60–119, 20 % 120–249, 9 % 250–599, 1 % 600–1,999
# (mean about 140): short marketing links, article URLs, URLs with tracking parameters.
# The Postgres CPU is the primary's processes' (its postmaster's children, from /proc),
# utime + stime. Settings: LINKS [1000000], DURATION [10s], CONNECTIONS [32]. Loopback only,
# bounded in time; the database shortener_storage recreated; the service on 127.0.0.1:18500.
# Output in OUT [target/loadtest/storage-<timestamp>].
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=storage
# shellcheck source=loadtest/common.sh
. loadtest/common.sh
BINARY=${1:-target/release/shortener}
LINKS=${LINKS:-1000000}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
OUT=${OUT:-target/loadtest/storage-$(date +%Y%m%dT%H%M%S)}
DB=shortener_storage
PORT=18500
ADMIN_PORT=19500
check_knobs LINKS CONNECTIONS
[ -x "$BINARY" ] || die "$BINARY is not an executable (cargo build --release)"
command -v wrk >/dev/null || die "wrk is required (apt-get install wrk)"
command -v pgbench >/dev/null || die "pgbench is required (Debian's postgresql-contrib or postgresql)"
mkdir -p "$OUT"
log "output in $OUT"
fresh_database "$DB" "$BINARY"
q() { psql -w -d "$DB" -v ON_ERROR_STOP=1 -Atqc "$1"; }
lsn() { q "SELECT pg_current_wal_lsn()"; }
wal_since() { q "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$1')::bigint"; }
# utime + stime of the primary's server processes, in clock ticks (reads its postmaster.pid:
# run as root or postgres).
pg_ticks() {
  local pid
  pid=$(head -n 1 "$(q 'SHOW data_directory')/postmaster.pid")
  # The postmaster and its children.
  { echo "$pid"; ps -o pid= --ppid "$pid"; } | while read -r p; do
    awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || true
  done | awk '{s += $1} END {print s + 0}'
}
# utime + stime of one process (all its threads), in clock ticks.
proc_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# The Redis server on PORT's process id.
redis_pid() { redis-cli -p "$1" info server | awk -F: '/^process_id:/ {print $2 + 0}'; }
TICKS=$(getconf CLK_TCK)
report() { echo "$*" | tee -a "$OUT/figures.txt"; }

# 1. Links.
log "writing $LINKS links"
q "SELECT setseed(0.42)" >/dev/null
before=$(lsn)
q "INSERT INTO links (id, code, target_url, created_at)
   SELECT n, 'c' || lpad(n::text, 10, '0'),
          left('https://example.com/p/' || n || '?q=' || repeat(md5(n::text) || md5((n + 1)::text), 32),
               CASE WHEN r < 0.30 THEN 40 + floor(random() * 20)
                    WHEN r < 0.70 THEN 60 + floor(random() * 60)
                    WHEN r < 0.90 THEN 120 + floor(random() * 130)
                    WHEN r < 0.99 THEN 250 + floor(random() * 350)
                    ELSE 600 + floor(random() * 1400) END::int),
          now()
   FROM (SELECT n, random() AS r FROM generate_series(1, $LINKS) AS n) AS g"
wal_links=$(wal_since "$before")
q "VACUUM ANALYZE links"
report "links: $LINKS, mean target $(q "SELECT round(avg(length(target_url)))::int FROM links") bytes (median $(q "SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY length(target_url)) FROM links"), p99 $(q "SELECT percentile_disc(0.99) WITHIN GROUP (ORDER BY length(target_url)) FROM links"))"
report "links: heap $(q "SELECT pg_relation_size('links') / $LINKS") B a link, with TOAST $(q "SELECT pg_table_size('links') / $LINKS") B, all indexes $(q "SELECT pg_indexes_size('links') / $LINKS") B, total $(q "SELECT pg_total_relation_size('links') / $LINKS") B"
q "SELECT indexrelid::regclass || ': ' || round(pg_relation_size(indexrelid)::numeric / $LINKS, 1) || ' B a link'
   FROM pg_index WHERE indrelid = 'links'::regclass ORDER BY 1" | while read -r line; do report "  index $line"; done
report "links: WAL $((wal_links / LINKS)) B a link (one INSERT … SELECT of them all)"

# 2. Idempotency records.
answer='{"code":"AbCdEfGhIjK","short_url":"https://sho.rt/AbCdEfGhIjK","url":"https://example.com/a/path/of/an/ordinary/length?utm_source=newsletter&utm_medium=email&utm_campaign=december","created_at":"2026-12-07T10:00:00Z","expires_at":null}'
q "INSERT INTO idempotency_keys (scope, key, fingerprint, status, body, link_id)
   SELECT 'key:17', 'retry-' || md5(n::text), sha256(n::text::bytea), 201, '$answer', n
   FROM generate_series(1, 100000) AS n"
q "VACUUM ANALYZE idempotency_keys"
report "idempotency_keys: $(q "SELECT pg_total_relation_size('idempotency_keys') / 100000") B a record with its indexes (stored answer ${#answer} B)"

# 3. Daily click rows: a million (a link a day), then the flusher's upserts.
q "INSERT INTO link_clicks_daily (link_id, day, clicks, bot_clicks, last_click_at)
   SELECT n, current_date - (n % 30), 1 + n % 50, n % 3, now() FROM generate_series(1, 1000000) AS n"
q "VACUUM ANALYZE link_clicks_daily"
report "link_clicks_daily: $(q "SELECT pg_total_relation_size('link_clicks_daily') / 1000000") B a row with its indexes (heap $(q "SELECT pg_relation_size('link_clicks_daily') / 1000000") B)"
before=$(lsn)
q "INSERT INTO link_clicks_daily AS d (link_id, day, clicks, bot_clicks, last_click_at)
   SELECT n, current_date - (n % 30), 1, 0, now() FROM generate_series(1, 100000) AS n
   ON CONFLICT (link_id, day) DO UPDATE SET clicks = d.clicks + excluded.clicks,
     bot_clicks = d.bot_clicks + excluded.bot_clicks,
     last_click_at = greatest(d.last_click_at, excluded.last_click_at)"
report "link_clicks_daily: WAL $(( $(wal_since "$before") / 100000 )) B an updated row (100,000 in one statement)"
before=$(lsn)
q "INSERT INTO link_clicks_daily AS d (link_id, day, clicks, bot_clicks, last_click_at)
   SELECT n, current_date + 1, 1, 0, now() FROM generate_series(1, 100000) AS n
   ON CONFLICT (link_id, day) DO UPDATE SET clicks = d.clicks + excluded.clicks"
report "link_clicks_daily: WAL $(( $(wal_since "$before") / 100000 )) B an inserted row (100,000 in one statement)"

# 4. Creates through the service, with Redis as production has it (write-through, and the
#    shared create limit, set too high to refuse anything): WAL a create, and the CPU a create
#    of the service, the primary and Redis.
trap stop_service EXIT
env -i PATH="$PATH" DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB?sslmode=disable" \
  RUST_LOG=warn SHORTENER_LISTEN=127.0.0.1:$PORT SHORTENER_ADMIN_LISTEN=127.0.0.1:$ADMIN_PORT \
  SHORTENER_RATE_LIMIT_CREATE=1000000/s,burst=1000000 SHORTENER_MAX_CONNECTIONS_PER_PEER=100000 \
  REDIS_URL=redis://127.0.0.1:6379 SHORTENER_REDIS_KEY_PREFIX="storage-$$-creates:" \
  "$BINARY" serve >>"$OUT/service.log" 2>&1 &
service_pid=$!
wait_ready "$ADMIN_PORT"
url="https://example.com/articles/2026/12/07/a-title-of-an-ordinary-length?utm_source=newsletter&utm_medium=email&utm_campaign=dec"
cat >"$OUT/create.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"url": "$url"}'
LUA
links_before=$(q "SELECT count(*) FROM links")
before=$(lsn)
redis=$(redis_pid 6379)
ticks_before=$(pg_ticks); service_before=$(proc_ticks "$service_pid"); redis_before=$(proc_ticks "$redis")
timeout 120 wrk -t2 -c"$CONNECTIONS" -d"$DURATION" -s "$OUT/create.lua" "http://127.0.0.1:$PORT/shorten" >"$OUT/wrk-creates.txt" 2>&1
ticks=$(( $(pg_ticks) - ticks_before ))
service_ticks=$(( $(proc_ticks "$service_pid") - service_before )); redis_ticks=$(( $(proc_ticks "$redis") - redis_before ))
wal=$(wal_since "$before")
creates=$(( $(q "SELECT count(*) FROM links") - links_before ))
stop_service
report "creates through the service: $creates (target ${#url} B), $(awk '/Requests\/sec/ {print int($2)}' "$OUT/wrk-creates.txt")/s: WAL $((wal / creates)) B a create, CPU a create: primary $(python3 -c "print(round($ticks / $TICKS / $creates * 1e6, 1))") µs, service $(python3 -c "print(round($service_ticks / $TICKS / $creates * 1e6, 1))") µs, Redis $(python3 -c "print(round($redis_ticks / $TICKS / $creates * 1e6, 1))") µs"

# 5. Lookups by code on the primary, as a miss makes them.
cat >"$OUT/lookup.sql" <<SQL
\set n random(1, $LINKS)
SELECT id, code, target_url, created_at, expires_at, disabled_at, version, deleted_at, owner_key_id, max_visits, visits_left FROM links WHERE code = 'c' || lpad(:n::text, 10, '0');
SQL
# Backends that exit take their CPU time with them: measured over a window while pgbench's
# connections are all open, against the transactions committed in the same window.
seconds=${DURATION%s}
PGDATABASE=$DB timeout 120 pgbench -n -M prepared -f "$OUT/lookup.sql" -c 8 -j 2 -T "$((seconds + 4))" \
  -h 127.0.0.1 -U postgres >"$OUT/pgbench.txt" 2>&1 &
bench=$!
sleep 2
commits() { q "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"; }
ticks_before=$(pg_ticks); commits_before=$(commits)
sleep "$seconds"
ticks=$(( $(pg_ticks) - ticks_before )); lookups=$(( $(commits) - commits_before ))
wait "$bench"
report "lookups by code on the primary: $lookups in ${seconds}s (8 clients): primary CPU $(python3 -c "print(round($ticks / $TICKS / $lookups * 1e6, 1))") µs a lookup (pgbench's own CPU not counted)"
# 6. Redis memory a link, by the service's own write-through: 2,000 links of the same spread
#    of lengths created through it, then MEMORY USAGE of each key (key, value and Redis's
#    own entry), against 2,000 of 60 bytes.
prefix="storage-$$:link:"
env -i PATH="$PATH" DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB?sslmode=disable" \
  RUST_LOG=warn SHORTENER_LISTEN=127.0.0.1:$PORT SHORTENER_ADMIN_LISTEN=127.0.0.1:$ADMIN_PORT \
  SHORTENER_RATE_LIMIT_CREATE=off REDIS_URL=redis://127.0.0.1:6379 \
  SHORTENER_REDIS_KEY_PREFIX="$prefix" "$BINARY" serve >>"$OUT/service.log" 2>&1 &
service_pid=$!
wait_ready "$ADMIN_PORT"
python3 - "$PORT" "$prefix" <<'PY' | while read -r line; do report "$line"; done
import json, random, subprocess, sys, urllib.request
port, prefix = sys.argv[1], sys.argv[2]
random.seed(42)
def length():
    r = random.random()
    if r < 0.30: return 40 + random.randrange(20)
    if r < 0.70: return 60 + random.randrange(60)
    if r < 0.90: return 120 + random.randrange(130)
    if r < 0.99: return 250 + random.randrange(350)
    return 600 + random.randrange(1400)
def create(url):
    request = urllib.request.Request(f"http://127.0.0.1:{port}/shorten", data=json.dumps({"url": url}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    return json.load(urllib.request.urlopen(request, timeout=10))["code"]
def usage(code):
    out = subprocess.run(["redis-cli", "-p", "6379", "MEMORY", "USAGE", prefix + code], capture_output=True, text=True).stdout
    return int(out.strip() or 0)
for name, lengths in (("60-byte targets", [60] * 2000), ("the spread of lengths", [length() for _ in range(2000)])):
    sizes, urls = [], []
    for n, size in enumerate(lengths):
        base = f"https://example.com/r/{n}-"
        urls.append((base + "x" * size)[:size] if size > len(base) else base)
    codes = [create(url) for url in urls]
    used = [u for u in (usage(code) for code in codes) if u > 0]
    mean_url = sum(len(u) for u in urls) / len(urls)
    print(f"redis: {sum(used) / len(used):.0f} B a link by MEMORY USAGE with {name} (mean target {mean_url:.0f} B, {len(used)} keys)")
PY
stop_service
for pattern in "$prefix*" "storage-$$-creates:*"; do
  redis-cli -p 6379 --scan --pattern "$pattern" | xargs -r -n 500 redis-cli -p 6379 UNLINK >/dev/null
done
log "figures in $OUT/figures.txt"
