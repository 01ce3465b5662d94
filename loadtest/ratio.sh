#!/usr/bin/env bash
# The service's redirect throughput as a share of the ceiling: a bare hyper server answering
# a fixed 302 (loadtest/bare_redirect.rs), both measured with the same generator (wrk), on
# loopback, in one run.
#
#   loadtest/ratio.sh                 full measurement (about ROUNDS x 4 x DURATION plus warm-up)
#   QUICK=1 loadtest/ratio.sh         smoke mode: ROUNDS=1 DURATION=2s LINKS=2000
#
# Settings (environment variables, defaults in brackets):
#   ROUNDS       interleaved rounds [5; QUICK: 1]
#   DURATION     length of one wrk run [10s; QUICK: 2s]
#   CONNECTIONS  wrk connections [64]
#   THREADS      wrk threads [2]
#   LINKS        links seeded into Postgres [100000; QUICK: 2000]
#   SERVER_CPU   CPU list both servers are pinned to (taskset -c) [0]
#   LOAD_CPU     CPU list wrk is pinned to [1]
#   PG_CPU       CPU list Postgres (and Redis, when used) is pinned to while the script runs
#                [SERVER_CPU]: the click
#                flushes the service causes are charged to the server side, not to wrk; the
#                machine's Postgres gets all CPUs back at exit
#   STATS_FLUSH_INTERVAL  the service's click flush interval [1s, the default]; 1h keeps
#                every click in memory for the run, which isolates the service's own cost
#                from the cost of Postgres writing the clicks on the same two CPUs
#   CACHE_CAPACITY  the service's SHORTENER_CACHE_CAPACITY [max(2 x LINKS, 1000000)]; smaller
#                than LINKS makes part of the spread scenario miss memory
#   REDIS        off, single (127.0.0.1:6379) or cluster (127.0.0.1:7001-7003 seeds) [off]
#   RATE_LIMIT_REDIRECT  the service's SHORTENER_RATE_LIMIT_REDIRECT [off]: every request
#                comes from 127.0.0.1, so any per-client limit would measure the limiter
#                refusing, not the service serving
#   OUT          output directory [target/loadtest/ratio-<timestamp>]
#
# Builds once (release), starts Postgres (scripts/stack.sh up), recreates the database
# shortener_ratio, migrates it and seeds LINKS links with SQL (codes r0000000001...), starts the
# service on 127.0.0.1:18080 (admin 127.0.0.1:19090) and the bare server on 127.0.0.1:18090,
# walks every code once through the service so its cache holds them all, then runs ROUNDS
# rounds of two scenarios: `hot` (one code) and `spread` (a random code of LINKS per request).
# In each round and scenario both servers are measured back to back, the order alternating
# between rounds so drift cancels. Every wrk output lands in $OUT, the numbers in
# $OUT/runs.csv, the summary (medians, per-round service/bare ratios, machine, settings) in
# $OUT/summary.md and on stdout. Runs with non-2xx/3xx answers or socket errors are flagged;
# the script then exits with status 3.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${QUICK:-0}" = 1 ]; then
  ROUNDS=${ROUNDS:-1} DURATION=${DURATION:-2s} LINKS=${LINKS:-2000}
fi
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
LINKS=${LINKS:-100000}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
PG_CPU=${PG_CPU:-$SERVER_CPU}
STATS_FLUSH_INTERVAL=${STATS_FLUSH_INTERVAL:-1s}
OUT=${OUT:-target/loadtest/ratio-$(date +%Y%m%dT%H%M%S)}

DB=shortener_ratio
DATABASE_URL=postgres://postgres@127.0.0.1:5432/$DB
SERVICE_PORT=18080
ADMIN_PORT=19090
BARE_PORT=18090
CACHE_CAPACITY=${CACHE_CAPACITY:-$(( LINKS * 2 > 1000000 ? LINKS * 2 : 1000000 ))}
REDIS=${REDIS:-off}
RATE_LIMIT_REDIRECT=${RATE_LIMIT_REDIRECT:-off}
case "$REDIS" in
  off) redis_env=() ;;
  single) redis_env=(REDIS_URL=redis://127.0.0.1:6379) ;;
  cluster) redis_env=("REDIS_CLUSTER_NODES=127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003") ;;
  *) echo "REDIS must be off, single or cluster (got '$REDIS')" >&2; exit 2 ;;
esac
redis_env+=("SHORTENER_REDIS_KEY_PREFIX=ratio:$(date +%s):")
# Links the service's memory can hold: with a smaller cache, misses go to Redis / Postgres.
EXPECTED_CACHED=$(( CACHE_CAPACITY < LINKS ? CACHE_CAPACITY * 9 / 10 : LINKS ))
HOT_CODE=r0000000001

log() { printf '[ratio %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Seconds in a wrk duration (10, 10s, 2m, 1h).
seconds() {
  case "$1" in
    *h) echo $(( ${1%h} * 3600 )) ;;
    *m) echo $(( ${1%m} * 60 )) ;;
    *s) echo "${1%s}" ;;
    *) echo "$1" ;;
  esac
}
[[ $DURATION =~ ^[1-9][0-9]*[smh]?$ ]] || die "DURATION must look like 10s, 2m or 1h (got '$DURATION')"
for knob in ROUNDS CONNECTIONS THREADS LINKS; do
  [[ ${!knob} =~ ^[1-9][0-9]*$ ]] || die "$knob must be a positive integer (got '${!knob}')"
done
[ "$CONNECTIONS" -ge "$THREADS" ] || die "CONNECTIONS must be at least THREADS"
[ "$SERVER_CPU" != "$LOAD_CPU" ] || log "warning: SERVER_CPU and LOAD_CPU are the same CPU"
for cmd in cargo curl psql python3 taskset timeout; do
  command -v "$cmd" >/dev/null || die "$cmd is required"
done
if ! command -v wrk >/dev/null; then
  log "installing wrk (Debian package)"
  if [ "$(id -u)" -eq 0 ]; then apt-get update -qq && apt-get install -y -qq wrk >/dev/null
  else sudo apt-get update -qq && sudo apt-get install -y -qq wrk >/dev/null; fi
fi
if ! taskset -c "$SERVER_CPU" true || ! taskset -c "$LOAD_CPU" true; then
  die "cannot pin to SERVER_CPU=$SERVER_CPU / LOAD_CPU=$LOAD_CPU"
fi
for port in $SERVICE_PORT $ADMIN_PORT $BARE_PORT; do
  if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/"; then
    die "something already answers on 127.0.0.1:$port; stop it first"
  fi
done

mkdir -p "$OUT"
log "output in $OUT"

log "building (release)"
cargo build --release --bin shortener --example bare_redirect

service_pid='' bare_pid=''
stop_servers() {
  local pid
  for pid in $service_pid $bare_pid; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in $service_pid $bare_pid; do
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  service_pid='' bare_pid=''
}
# Postgres' processes (the postmaster's children inherit its affinity), and Redis' when the
# service uses Redis: what they spend serving the service is charged to the server's side.
postgres_pids() {
  pgrep -x postgres || pgrep -f '^postgres:' || true
  if [ "$REDIS" != off ]; then pgrep -x redis-server || true; fi
}
pin_postgres() {
  local pid
  for pid in $(postgres_pids); do taskset -a -cp "$1" "$pid" >/dev/null 2>&1 || true; done
}
cleanup() {
  stop_servers
  pin_postgres "0-$(( $(nproc) - 1 ))"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

./scripts/stack.sh up
export PGHOST=127.0.0.1 PGUSER=postgres PGCONNECT_TIMEOUT=5
log "recreating database $DB"
psql -w -d postgres -v ON_ERROR_STOP=1 -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
psql -w -d postgres -v ON_ERROR_STOP=1 -qc "CREATE DATABASE $DB"
DATABASE_URL=$DATABASE_URL RUST_LOG=warn timeout 60 target/release/shortener migrate
log "seeding $LINKS links"
psql -w -d "$DB" -v ON_ERROR_STOP=1 -q <<SQL
INSERT INTO links (id, code, target_url, created_at)
SELECT n, 'r' || lpad(n::text, 10, '0'), 'https://example.com/some/long/path/' || n, now()
FROM generate_series(1, $LINKS) AS n;
ANALYZE links;
SQL
[ "$(psql -w -d "$DB" -Atqc 'SELECT count(*) FROM links')" = "$LINKS" ] || die "seeding failed"

# wrk scripts. Codes follow the SQL's formula: r + n zero-padded to 10 digits, n = 1..LINKS.
cat >"$OUT/hot.lua" <<LUA
-- One fixed code: wrk sends the same prebuilt request every time.
wrk.path = "/$HOT_CODE"
LUA
cat >"$OUT/spread.lua" <<LUA
-- A random code of $LINKS per request (requests prebuilt per thread in init).
local links = $LINKS
local counter = 0
local requests = {}
function setup(thread)
  counter = counter + 1
  thread:set("thread_no", counter)
end
function init(args)
  for n = 1, links do
    requests[n] = wrk.format("GET", string.format("/r%010d", n))
  end
  math.randomseed(os.time() * 1000 + thread_no)
end
function request()
  return requests[math.random(links)]
end
LUA
cat >"$OUT/walk.lua" <<LUA
-- Warm-up: every code in order, thread k of T taking codes k, k+T, k+2T, ... (wrapping).
local links = $LINKS
local threads = $THREADS
local counter = 0
function setup(thread)
  thread:set("thread_no", counter)
  counter = counter + 1
end
function init(args)
  step = 0
end
function request()
  local n = (step * threads + thread_no) % links + 1
  step = step + 1
  return wrk.format("GET", string.format("/r%010d", n))
end
LUA

log "starting the service on 127.0.0.1:$SERVICE_PORT (admin $ADMIN_PORT), CPU $SERVER_CPU"
DATABASE_URL=$DATABASE_URL \
SHORTENER_LISTEN=127.0.0.1:$SERVICE_PORT \
SHORTENER_ADMIN_LISTEN=127.0.0.1:$ADMIN_PORT \
SHORTENER_CACHE_CAPACITY=$CACHE_CAPACITY \
SHORTENER_CACHE_TTL=1h \
SHORTENER_STATS_FLUSH_INTERVAL=$STATS_FLUSH_INTERVAL \
SHORTENER_CODE_KEY=ratio-benchmark-code-key \
SHORTENER_MAX_CONNECTIONS=10000 \
SHORTENER_RATE_LIMIT_REDIRECT="$RATE_LIMIT_REDIRECT" \
RUST_LOG=warn \
  env "${redis_env[@]}" \
  taskset -c "$SERVER_CPU" target/release/shortener serve >"$OUT/service.log" 2>&1 &
service_pid=$!
log "starting the bare server on 127.0.0.1:$BARE_PORT, CPU $SERVER_CPU"
taskset -c "$SERVER_CPU" target/release/examples/bare_redirect "127.0.0.1:$BARE_PORT" \
  >"$OUT/bare.log" 2>&1 &
bare_pid=$!

wait_for() { # NAME PID URL
  for _ in $(seq 1 150); do
    kill -0 "$2" 2>/dev/null || die "$1 exited; see $OUT/${1}.log"
    curl -s -o /dev/null --max-time 1 "$3" && return 0
    sleep 0.2
  done
  die "$1 did not answer $3 within 30s"
}
wait_for service "$service_pid" "http://127.0.0.1:$ADMIN_PORT/healthz"
wait_for bare "$bare_pid" "http://127.0.0.1:$BARE_PORT/"
for _ in $(seq 1 50); do
  curl -sf -o /dev/null --max-time 1 "http://127.0.0.1:$ADMIN_PORT/readyz" && break
  sleep 0.2
done

# Both must answer 302 before anything is measured; the service with the seeded target.
check_redirect() { # PORT CODE EXPECTED_LOCATION
  local answer
  answer=$(curl -s -o /dev/null --max-time 5 -w '%{http_code} %{redirect_url}' "http://127.0.0.1:$1/$2")
  [ "$answer" = "302 $3" ] || die "GET 127.0.0.1:$1/$2 answered '$answer', expected '302 $3'"
}
last_code=$(printf 'r%010d' "$LINKS")
check_redirect "$SERVICE_PORT" "$HOT_CODE" https://example.com/some/long/path/1
check_redirect "$SERVICE_PORT" "$last_code" "https://example.com/some/long/path/$LINKS"
check_redirect "$BARE_PORT" "$HOT_CODE" https://example.com/some/long/path

cache_entries() {
  curl -s --max-time 2 "http://127.0.0.1:$ADMIN_PORT/readyz" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["tiers"]["cache_entries"])' ||
    echo 0
}

# wrk runs (always bounded by timeout); output to FILE.
run_wrk() { # FILE SCRIPT PORT DURATION
  local limit=$(( $(seconds "$4") + 30 ))
  taskset -c "$LOAD_CPU" timeout "$limit" \
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$4" --latency -s "$2" "http://127.0.0.1:$3" >"$1" 2>&1
}

walk_s=$(( LINKS / 5000 > 3 ? LINKS / 5000 : 3 ))
cached=0
for pass in 1 2 3; do
  log "warm-up pass $pass: walking all $LINKS codes through the service for ${walk_s}s"
  run_wrk "$OUT/warmup-service-$pass.txt" "$OUT/walk.lua" "$SERVICE_PORT" "${walk_s}s" ||
    log "warning: warm-up wrk failed (see $OUT/warmup-service-$pass.txt)"
  sleep 2 # /readyz's count is refreshed about once a second
  cached=$(cache_entries)
  log "service cache holds $cached links of $LINKS (expecting $EXPECTED_CACHED)"
  [ "$cached" -ge "$EXPECTED_CACHED" ] && [ "$REDIS" = off ] && break
done
log "warm-up: bare server for 2s"
run_wrk "$OUT/warmup-bare.txt" "$OUT/spread.lua" "$BARE_PORT" 2s ||
  log "warning: bare warm-up wrk failed"

# Waits (at most 30 s) until Postgres has run no query but ours for a second: a click flush
# or autovacuum left over from the previous run must not land on the next one.
settle() {
  local quiet=0
  for _ in $(seq 1 60); do
    busy=$(psql -w -d "$DB" -Atqc "SELECT count(*) FROM pg_stat_activity \
      WHERE state = 'active' AND pid <> pg_backend_pid() \
        AND backend_type IN ('client backend', 'autovacuum worker')" || echo 1)
    if [ "$busy" = 0 ]; then quiet=$(( quiet + 1 )); else quiet=0; fi
    [ "$quiet" -ge 2 ] && return
    sleep 0.5
  done
  log "warning: Postgres did not go quiet within 30s"
}

log "vacuuming the click table written during warm-up"
psql -w -d "$DB" -qc "VACUUM (ANALYZE) link_clicks_daily" || true
log "pinning Postgres to CPU $PG_CPU for the measurement"
pin_postgres "$PG_CPU"

parse_wrk() { # FILE -> "rps p50_us p99_us non3xx socket_errors"
  python3 - "$1" <<'PY'
import re, sys
text = open(sys.argv[1], errors="replace").read()
unit = {"us": 1, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}
def latency(pct):
    m = re.search(r"^\s*%s%%\s+([\d.]+)(us|ms|s|m|h)\s*$" % pct, text, re.M)
    return "%.1f" % (float(m.group(1)) * unit[m.group(2)]) if m else ""
rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
non3xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
print(rps.group(1) if rps else "0", latency(50) or "-", latency(99) or "-",
      non3xx.group(1) if non3xx else "0",
      sum(int(x) for x in sock.groups()) if sock else 0)
PY
}

echo "round,scenario,server,rps,p50_us,p99_us,non3xx,socket_errors" >"$OUT/runs.csv"
: >"$OUT/problems.txt"
for round in $(seq 1 "$ROUNDS"); do
  if [ $(( round % 2 )) -eq 1 ]; then order="bare service"; else order="service bare"; fi
  for scenario in hot spread; do
    for server in $order; do
      if [ "$server" = bare ]; then port=$BARE_PORT; else port=$SERVICE_PORT; fi
      file="$OUT/round$round-$scenario-$server.txt"
      settle
      if ! run_wrk "$file" "$OUT/$scenario.lua" "$port" "$DURATION"; then
        echo "round $round $scenario $server: wrk failed or timed out ($file)" >>"$OUT/problems.txt"
      fi
      read -r rps p50 p99 non3xx sockerr < <(parse_wrk "$file")
      echo "$round,$scenario,$server,$rps,$p50,$p99,$non3xx,$sockerr" >>"$OUT/runs.csv"
      line="round $round/$ROUNDS $scenario: $server ${rps%.*} req/s (p50 ${p50}us, p99 ${p99}us)"
      if [ "$non3xx" != 0 ] || [ "$sockerr" != 0 ]; then
        line="$line  !!! $non3xx non-2xx/3xx, $sockerr socket errors"
        echo "round $round $scenario $server: $non3xx non-2xx/3xx responses, $sockerr socket errors ($file)" \
          >>"$OUT/problems.txt"
      fi
      log "$line"
    done
  done
done
[ "$cached" -ge "$EXPECTED_CACHED" ] ||
  echo "service cache held only $cached of $LINKS links after warm-up" >>"$OUT/problems.txt"
kill -0 "$service_pid" 2>/dev/null || echo "the service exited during the run" >>"$OUT/problems.txt"
kill -0 "$bare_pid" 2>/dev/null || echo "the bare server exited during the run" >>"$OUT/problems.txt"
stop_servers

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -z "$(git status --porcelain 2>/dev/null)" ] || commit="$commit+dirty"
cat >"$OUT/meta.md" <<META
- date: $(date -Iseconds)
- machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r)
- wrk: $(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2)
- git commit: $commit
- settings: ROUNDS=$ROUNDS DURATION=$DURATION CONNECTIONS=$CONNECTIONS THREADS=$THREADS LINKS=$LINKS SERVER_CPU=$SERVER_CPU LOAD_CPU=$LOAD_CPU PG_CPU=$PG_CPU QUICK=${QUICK:-0}; each run starts once Postgres is quiet
- service: SHORTENER_CACHE_CAPACITY=$CACHE_CAPACITY SHORTENER_CACHE_TTL=1h SHORTENER_STATS_FLUSH_INTERVAL=$STATS_FLUSH_INTERVAL SHORTENER_MAX_CONNECTIONS=10000 REDIS=$REDIS SHORTENER_RATE_LIMIT_REDIRECT=$RATE_LIMIT_REDIRECT RUST_LOG=warn, other settings default; hot code /$HOT_CODE
- service cache after warm-up: $cached of $LINKS links
- output: $OUT
META

python3 - "$OUT" <<'PY' >"$OUT/summary.md"
import csv, statistics, sys
out = sys.argv[1]
rows = list(csv.DictReader(open(f"{out}/runs.csv")))
def num(v):
    try: return float(v)
    except ValueError: return None
def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None
def fmt(v, digits=0):
    return "-" if v is None else f"{v:,.{digits}f}"
print("# Service vs bare hyper: redirect throughput\n")
print(open(f"{out}/meta.md").read())
print("| scenario | bare req/s | service req/s | service/bare per round | median ratio "
      "| bare p50 / p99 (µs) | service p50 / p99 (µs) |")
print("|---|---:|---:|---|---:|---:|---:|")
for scenario in ("hot", "spread"):
    runs = [r for r in rows if r["scenario"] == scenario]
    by = {s: {int(r["round"]): r for r in runs if r["server"] == s} for s in ("bare", "service")}
    ratios = []
    for rnd in sorted(by["bare"]):
        b, s = num(by["bare"][rnd]["rps"]), num(by["service"].get(rnd, {}).get("rps", ""))
        ratios.append(s / b if b and s is not None else None)
    stat = {s: {k: med(num(r[k]) for r in by[s].values()) for k in ("rps", "p50_us", "p99_us")}
            for s in by}
    print(f"| {scenario} | {fmt(stat['bare']['rps'])} | {fmt(stat['service']['rps'])} "
          f"| {' '.join(fmt(x, 3) for x in ratios)} | **{fmt(med(ratios), 3)}** "
          f"| {fmt(stat['bare']['p50_us'])} / {fmt(stat['bare']['p99_us'])} "
          f"| {fmt(stat['service']['p50_us'])} / {fmt(stat['service']['p99_us'])} |")
print("\nMedians over rounds; raw numbers in runs.csv, wrk outputs in round*-*.txt.")
problems = [l.strip() for l in open(f"{out}/problems.txt") if l.strip()]
if problems:
    print("\n## !!! PROBLEMS: these numbers are not valid as they stand\n")
    for p in problems:
        print(f"- **{p}**")
else:
    print("\nAll runs: only 2xx/3xx answers, no socket errors.")
PY
echo
cat "$OUT/summary.md"
if [ -s "$OUT/problems.txt" ]; then
  log "!!! PROBLEMS flagged (see above and $OUT/problems.txt)"
  exit 3
fi
