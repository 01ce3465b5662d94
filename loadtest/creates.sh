#!/usr/bin/env bash
# Durable creates per second from outside: group commit (the defaults: one writer, batches of
# up to BATCH_MAX) against the same binary with SHORTENER_CREATE_BATCH_MAX=1 and
# SHORTENER_CREATE_WRITERS=8 (one transaction per create, as many at once as the write pool
# has connections: the design before group commit), same pools, same database, in one run; without and with an Idempotency-Key; then the latency at half of each
# mode's peak rate (fixed rate, corrected for coordinated omission); and pg_test_fsync's figure
# for the disk under Postgres.
#
#   loadtest/creates.sh            full measurement (about ROUNDS x 4 x DURATION + 2 x DURATION)
#   QUICK=1 loadtest/creates.sh    smoke mode: ROUNDS=1 DURATION=2s
#   loadtest/creates.sh A B        two builds side by side ("what did this change cost"): both
#                                  with the default group commit, interleaved rounds (the order
#                                  alternating), the service pinned to SERVER_CPU [0] and the
#                                  generators to LOAD_CPU [1] (Postgres unpinned); B/A per round
#                                  and the median, without and with an Idempotency-Key. The
#                                  database is migrated by B. ROUNDS defaults to 9 here.
#
# Settings (environment variables, defaults in brackets):
#   ROUNDS       interleaved rounds [3; QUICK: 1]
#   DURATION     length of one run [10s; QUICK: 2s]
#   CONNECTIONS  client connections [64]
#   BATCH_MAX    the group-commit side's SHORTENER_CREATE_BATCH_MAX [256]
#   LINGER       both sides' SHORTENER_CREATE_LINGER [0s]
#   WRITERS      the group-commit side's SHORTENER_CREATE_WRITERS [1]
#   OUT          output directory [target/loadtest/creates-<timestamp>]
#
# Everything runs on this machine's two CPUs, unpinned: the generators (oha without a key, wrk
# with a Lua script that sends a fresh key per request, since oha cannot vary a header), the
# service and Postgres (the local one, stock settings: fsync and synchronous_commit on). Only
# loopback is used (all from 127.0.0.1, so the create limit is off), every run is bounded in time, and the database shortener_creates is
# recreated at the start. A run with any answer but 201 is flagged and the script exits 3.
set -euo pipefail
cd "$(dirname "$0")/.."

A=${1:-}
B=${2:-}
if [ -n "$A" ]; then
  [[ -x $A && -x $B ]] || { echo "usage: loadtest/creates.sh [BINARY_A BINARY_B]" >&2; exit 1; }
  ROUNDS=${ROUNDS:-9}
fi
if [ "${QUICK:-0}" = 1 ]; then
  ROUNDS=${ROUNDS:-1} DURATION=${DURATION:-2s}
fi
ROUNDS=${ROUNDS:-3}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
BATCH_MAX=${BATCH_MAX:-256}
LINGER=${LINGER:-0s}
WRITERS=${WRITERS:-1}
OUT=${OUT:-target/loadtest/creates-$(date +%Y%m%dT%H%M%S)}
DB=shortener_creates
# No TLS on loopback: what is measured is the service and Postgres, not the encryption.
DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB?sslmode=disable"
PORT=18180
ADMIN_PORT=19180

log() { printf '[creates %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ $DURATION =~ ^[1-9][0-9]*s$ ]] || die "DURATION must look like 10s (got '$DURATION')"
for knob in ROUNDS CONNECTIONS BATCH_MAX; do
  [[ ${!knob} =~ ^[1-9][0-9]*$ ]] || die "$knob must be a positive integer (got '${!knob}')"
done
SECONDS_PER_RUN=${DURATION%s}
for cmd in cargo curl psql python3 timeout; do
  command -v "$cmd" >/dev/null || die "$cmd is required"
done
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v wrk >/dev/null; then
  log "installing wrk (Debian package)"
  as_root apt-get update -qq && as_root apt-get install -y -qq wrk >/dev/null
fi
if ! command -v oha >/dev/null; then
  log "installing oha (cargo install oha --locked; a few minutes)"
  cargo install oha --locked --quiet
fi
for port in $PORT $ADMIN_PORT; do
  if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/"; then
    die "something already answers on 127.0.0.1:$port; stop it first"
  fi
done
mkdir -p "$OUT"
log "output in $OUT"

if [ -z "$A" ]; then
  log "building (release)"
  cargo build --release --bin shortener
  B=target/release/shortener
fi
./scripts/stack.sh up
export PGHOST=127.0.0.1 PGUSER=postgres PGCONNECT_TIMEOUT=5
log "recreating database $DB"
psql -w -d postgres -v ON_ERROR_STOP=1 -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
psql -w -d postgres -v ON_ERROR_STOP=1 -qc "CREATE DATABASE $DB"
DATABASE_URL=$DATABASE_URL RUST_LOG=warn timeout 60 "$B" migrate
# The binary start_service runs, and how (A/B mode: pinned).
BINARY=$B
PIN_SERVER=()
PIN_LOAD=()
if [ -n "$A" ]; then
  PIN_SERVER=(taskset -c "$SERVER_CPU")
  PIN_LOAD=(taskset -c "$LOAD_CPU")
fi

service_pid=''
stop_service() {
  [ -n "$service_pid" ] || return 0
  kill -TERM "$service_pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$service_pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$service_pid" 2>/dev/null || true
  service_pid=''
}
trap stop_service EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# START_SERVICE BATCH_MAX WRITERS: starts the service and waits until it can create.
start_service() {
  env -i PATH="$PATH" DATABASE_URL="$DATABASE_URL" RUST_LOG=warn \
    SHORTENER_LISTEN=127.0.0.1:$PORT SHORTENER_ADMIN_LISTEN=127.0.0.1:$ADMIN_PORT \
    SHORTENER_CREATE_BATCH_MAX="$1" SHORTENER_CREATE_WRITERS="$2" \
    SHORTENER_CREATE_LINGER="$LINGER" SHORTENER_RATE_LIMIT_CREATE=off \
    "${PIN_SERVER[@]}" "$BINARY" serve >>"$OUT/service.log" 2>&1 &
  service_pid=$!
  for _ in $(seq 1 100); do
    if curl -s --max-time 1 "http://127.0.0.1:$ADMIN_PORT/readyz" | grep -q '"creates":"ready"'; then
      return 0
    fi
    sleep 0.1
  done
  die "the service did not become ready to create; see $OUT/service.log"
}

BODY='{"url":"https://example.com/some/long/path/for/a/benchmark"}'
cat >"$OUT/keyed.lua" <<LUA
-- A fresh Idempotency-Key on every request: thread number + counter, under this run's prefix.
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end
function init(args)
  counter = 0
  prefix = (args[1] or "run") .. "-" .. id .. "-"
end
function request()
  counter = counter + 1
  return wrk.format("POST", "/shorten", {
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = prefix .. counter,
  }, '$BODY')
end
LUA

echo "round,mode,keyed,rps,p50_ms,p99_ms,non_201" >"$OUT/runs.csv"
problems=0

# RUN_OHA FILE [RATE]: unkeyed creates for DURATION; prints "rps p50_ms p99_ms non_201".
run_oha() {
  local rate_args=()
  [ -n "${2:-}" ] && rate_args=(-q "$2" --latency-correction)
  timeout $(( SECONDS_PER_RUN + 30 )) "${PIN_LOAD[@]}" oha --no-tui -w -z "$DURATION" -c "$CONNECTIONS" \
    "${rate_args[@]}" -m POST -H 'Content-Type: application/json' -d "$BODY" \
    --output-format json "http://127.0.0.1:$PORT/shorten" >"$1"
  python3 - "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
codes = r.get("statusCodeDistribution", {})
other = sum(n for code, n in codes.items() if code != "201") + sum(r.get("errorDistribution", {}).values())
p = r["latencyPercentiles"]
print(f'{r["summary"]["requestsPerSec"]:.0f} {p["p50"]*1000:.2f} {p["p99"]*1000:.2f} {other}')
PY
}

# RUN_WRK FILE: keyed creates for DURATION; prints "rps p50_ms p99_ms non_201".
run_wrk() {
  timeout $(( SECONDS_PER_RUN + 30 )) "${PIN_LOAD[@]}" wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency \
    -s "$OUT/keyed.lua" "http://127.0.0.1:$PORT" -- "$(basename "$1" .txt)-$RANDOM" >"$1" 2>&1
  python3 - "$1" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def ms(value):
    number, unit = re.match(r"([\d.]+)(us|ms|s)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1, "s": 1000}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p50 = ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
p99 = ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
other = (int(bad.group(1)) if bad else 0) + (sum(map(int, errors.groups())) if errors else 0)
print(f"{rps:.0f} {p50:.2f} {p99:.2f} {other}")
PY
}

record() { # ROUND MODE KEYED "rps p50 p99 other"
  local rps p50 p99 other
  read -r rps p50 p99 other <<<"$4"
  echo "$1,$2,$3,$rps,$p50,$p99,$other" >>"$OUT/runs.csv"
  log "round $1 $2 keyed=$3: $rps creates/s (p50 ${p50} ms, p99 ${p99} ms)"
  if [ "$other" != 0 ]; then
    log "  $other answers were not 201"
    problems=$((problems + 1))
  fi
}

if [ -n "$A" ]; then
  for round in $(seq 1 "$ROUNDS"); do
    if (( round % 2 )); then order="A B"; else order="B A"; fi
    for which in $order; do
      if [ "$which" = A ]; then BINARY=$A; else BINARY=$B; fi
      start_service "$BATCH_MAX" "$WRITERS"
      record "$round" "$which" no "$(run_oha "$OUT/round$round-$which-unkeyed.json")"
      record "$round" "$which" yes "$(run_wrk "$OUT/round$round-$which-keyed.txt")"
      stop_service
    done
  done
  python3 - "$OUT/runs.csv" "$A" "$B" "$ROUNDS" "$DURATION" "$CONNECTIONS" <<'PY' | tee "$OUT/summary.md"
import csv, statistics, sys
path, a, b, rounds, duration, conns = sys.argv[1:]
rows = list(csv.DictReader(open(path)))
print(f"# Creates per second, two builds ({rounds} interleaved rounds of {duration}, {conns} connections)\n")
print(f"A = {a}\nB = {b}\n")
print("| key | A median creates/s | B median creates/s | B/A per round | median B/A |")
print("| --- | ---: | ---: | --- | ---: |")
for keyed, label in (("no", "none (oha)"), ("yes", "fresh Idempotency-Key (wrk)")):
    by = lambda which: {r["round"]: float(r["rps"]) for r in rows if r["mode"] == which and r["keyed"] == keyed}
    ra, rb = by("A"), by("B")
    ratios = [rb[r] / ra[r] for r in sorted(ra, key=int)]
    print(f"| {label} | {statistics.median(ra.values()):,.0f} | {statistics.median(rb.values()):,.0f} | "
          f"{' '.join(f'{x:.3f}' for x in ratios)} | **{statistics.median(ratios):.3f}** |")
PY
  [ "$problems" = 0 ] || { log "$problems runs had answers other than 201"; exit 3; }
  exit 0
fi

for round in $(seq 1 "$ROUNDS"); do
  if (( round % 2 )); then order="batched single"; else order="single batched"; fi
  for mode in $order; do
    if [ "$mode" = batched ]; then start_service "$BATCH_MAX" "$WRITERS"; else start_service 1 8; fi
    record "$round" "$mode" no "$(run_oha "$OUT/round$round-$mode-unkeyed.json")"
    record "$round" "$mode" yes "$(run_wrk "$OUT/round$round-$mode-keyed.txt")"
    stop_service
  done
done

median() { # MODE KEYED -> median rps over rounds
  python3 - "$OUT/runs.csv" "$1" "$2" <<'PY'
import csv, statistics, sys
rows = [r for r in csv.DictReader(open(sys.argv[1]))
        if r["mode"] == sys.argv[2] and r["keyed"] == sys.argv[3] and r["round"] != "half"]
print(int(statistics.median(float(r["rps"]) for r in rows)))
PY
}

# The latency at half each mode's median peak (unkeyed: oha's fixed rate).
for mode in batched single; do
  half=$(( $(median "$mode" no) / 2 ))
  if [ "$mode" = batched ]; then start_service "$BATCH_MAX" "$WRITERS"; else start_service 1 8; fi
  record half "$mode" no "$(run_oha "$OUT/half-$mode-unkeyed.json" "$half")"
  stop_service
done

data_dir=$(psql -w -d postgres -Atqc 'SHOW data_directory')
fsync_bin=$(ls -d /usr/lib/postgresql/*/bin/pg_test_fsync 2>/dev/null | sort -V | tail -n 1)
if [ -n "$fsync_bin" ]; then
  log "pg_test_fsync on $data_dir's file system"
  (cd "$data_dir/.." && timeout 120 "$fsync_bin" -s 2 -f "$data_dir/../pg_test_fsync.tmp") \
    >"$OUT/pg_test_fsync.txt" 2>&1 || true
fi

python3 - "$OUT" "$BATCH_MAX" "$LINGER" "$CONNECTIONS" "$DURATION" "$ROUNDS" "$WRITERS" <<'PY' | tee "$OUT/summary.md"
import csv, statistics, sys, re, os, subprocess
out, batch_max, linger, conns, duration, rounds, writers = sys.argv[1:]
rows = list(csv.DictReader(open(f"{out}/runs.csv")))
def med(mode, keyed, field="rps"):
    values = [float(r[field]) for r in rows if r["mode"] == mode and r["keyed"] == keyed and r["round"] != "half"]
    return statistics.median(values)
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
print(f"# Durable creates per second ({rounds} rounds of {duration}, {conns} connections, commit {commit})\n")
print(f"Group commit: SHORTENER_CREATE_BATCH_MAX={batch_max}, SHORTENER_CREATE_WRITERS={writers}, linger {linger}. "
      "Baseline: the same binary with SHORTENER_CREATE_BATCH_MAX=1 and SHORTENER_CREATE_WRITERS=8 "
      "(one transaction per create, eight at once). Postgres: the local one, fsync and synchronous_commit on.\n")
print("| key | group commit creates/s | one per transaction creates/s | ratio | group commit p99 at peak (ms) | one per transaction p99 at peak (ms) |")
print("| --- | ---: | ---: | ---: | ---: | ---: |")
for keyed, label in (("no", "none (oha)"), ("yes", "fresh Idempotency-Key (wrk)")):
    b, s = med("batched", keyed), med("single", keyed)
    print(f"| {label} | {b:,.0f} | {s:,.0f} | **{b/s:.1f}** | {med('batched', keyed, 'p99_ms'):.1f} | {med('single', keyed, 'p99_ms'):.1f} |")
print("\nAt half the peak rate (oha -q, latency corrected), without a key:\n")
print("| mode | offered creates/s | p50 (ms) | p99 (ms) |")
print("| --- | ---: | ---: | ---: |")
for r in rows:
    if r["round"] == "half":
        print(f"| {r['mode']} | {float(r['rps']):,.0f} | {r['p50_ms']} | {r['p99_ms']} |")
path = f"{out}/pg_test_fsync.txt"
if os.path.exists(path):
    text = open(path).read()
    match = re.search(r"fdatasync\s+([\d.,]+) ops/sec", text)
    if match:
        print(f"\npg_test_fsync: fdatasync {match.group(1)} ops/sec (one 8 kB write + flush; {path}).")
print("\nRaw numbers: runs.csv; outputs: round*-*.json|txt, half-*.json.")
PY
if [ "$problems" != 0 ]; then
  log "$problems runs had answers other than 201"
  exit 3
fi
