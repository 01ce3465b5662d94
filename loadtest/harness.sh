#!/usr/bin/env bash
# The load harness (`make loadtest`; `QUICK=1 make loadtest` runs in under two minutes).
#
# Brings up the local stack, builds the service and the reference server (a bare hyper server
# answering a fixed 302, loadtest/bare_redirect.rs) in release, seeds LINKS links with
# `shortener seed` (the run's code key, COPY), starts both on loopback, and runs:
#   hot      one code, closed loop (wrk), against the service and the reference server
#   hotset   a random one of the first 100 codes
#   zipf     every code, Zipf-popular (s = 1), with a cache of a quarter of the links
#   mixed    the targets' mix (docs/requirements.md): ~95 % Zipf redirects, ~4 % creates, ~1 % stats
#   sweep    open loop (oha, fixed rates, latency from the intended send time) over the hot
#            set, service and reference server, rising until p99 passes 50 ms; the report
#            names the knee (the last rate with p99 under 5 ms and errors under 0.1 %). Not
#            with LIMITER=on: oha cannot spread X-Forwarded-For over clients
# Each scenario's report lands in loadtest/reports/<date>-<scenario>/ (report.md, the raw
# results, the service's /metrics before and after; the sweep's latency.svg): throughput,
# p50/p90/p99/p99.9, errors by kind, 429s apart, server CPU and RSS, tier hit ratios.
#
# Settings: QUICK=1 (LINKS=20000, DURATION=3s, a short sweep), TIERS [postgres: no Redis, no
# replica, misses read the primary; full: the stack's Redis Cluster (:7001-7003 seeds, a key
# prefix of this run's own, so it starts empty) and its streaming replica (:5433), Redis first
# warmed by walking every code for WARM [60s; 0s: cold]], SCENARIOS [hot hotset zipf mixed
# sweep], LINKS [1000000], DURATION
# [10s], CONNECTIONS [64], LIMITER [off; on: the default per-client limits, 127.0.0.1
# trusted, X-Forwarded-For spread over 10,000 addresses, each under its limit], SWEEP_RATES
# [10000 20000 40000 60000 80000 100000 120000 150000; QUICK: 10000 30000 60000],
# REPORTS [loadtest/reports]. Loopback only; every run bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${QUICK:-0}" = 1 ]; then
  LINKS=${LINKS:-20000} DURATION=${DURATION:-3s} SWEEP_RATES=${SWEEP_RATES:-"10000 30000 60000"}
  SWEEP_DURATION=${SWEEP_DURATION:-2s}
fi
LINKS=${LINKS:-1000000}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
LIMITER=${LIMITER:-off}
SWEEP_RATES=${SWEEP_RATES:-"10000 20000 40000 60000 80000 100000 120000 150000"}
SWEEP_DURATION=${SWEEP_DURATION:-5s}
REPORTS=${REPORTS:-loadtest/reports}
STAMP=$(date +%Y%m%d-%H%M)
DB=shortener_loadtest
DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB?sslmode=disable"
KEY=load-harness-code-key-not-secret
PORT=18680
ADMIN_PORT=19680
BARE_PORT=18690
WORK=$(mktemp -d)
CACHE_CAPACITY=$(( LINKS / 4 > 1000 ? LINKS / 4 : 1000 ))
TIERS=${TIERS:-postgres}
WARM=${WARM:-60s}
SCENARIOS=${SCENARIOS:-hot hotset zipf mixed sweep}
REDIS_PREFIX="loadtest:$STAMP:$$:"

NAME=loadtest
# shellcheck source=loadtest/common.sh
. loadtest/common.sh
[[ $DURATION =~ ^[1-9][0-9]*s$ ]] || die "DURATION must look like 10s"
[[ $LIMITER == on || $LIMITER == off ]] || die "LIMITER must be on or off"
[[ $TIERS == postgres || $TIERS == full ]] || die "TIERS must be postgres or full"
[[ $WARM =~ ^[0-9]+s$ ]] || die "WARM must look like 60s"
wants() { [[ " $SCENARIOS " == *" $1 "* ]]; }
for cmd in cargo curl psql python3; do command -v "$cmd" >/dev/null || die "$cmd is required"; done
if ! command -v wrk >/dev/null; then
  log "installing wrk (Debian package)"
  if [ "$(id -u)" -eq 0 ]; then apt-get update -qq && apt-get install -y -qq wrk >/dev/null
  else sudo apt-get update -qq && sudo apt-get install -y -qq wrk >/dev/null; fi
fi
if ! command -v oha >/dev/null; then
  log "installing oha from crates.io (once; a few minutes)"
  cargo install oha --version 1.16.0 --locked
fi

service_pid='' bare_pid=''
stop_servers() {
  # shellcheck disable=SC2086 # empty until the servers start
  stop_pid $service_pid $bare_pid
  rm -rf "$WORK"
}
trap stop_servers EXIT

if [ "$TIERS" = full ]; then
  log "starting the stack's replica and Redis Cluster (scripts/stack.sh up)"
  ./scripts/stack.sh up >/dev/null
fi
log "building the service and the reference server (release)"
cargo build --release --bin shortener --example bare_redirect
fresh_database "$DB" target/release/shortener
log "seeding $LINKS links"
DATABASE_URL=$DATABASE_URL SHORTENER_CODE_KEY=$KEY RUST_LOG=warn timeout 900 \
  target/release/shortener seed --links "$LINKS" --codes-out "$WORK/codes.txt"
tiers=()
if [ "$TIERS" = full ]; then
  REPLICA_URL="postgres://postgres@127.0.0.1:5433/$DB?sslmode=disable"
  tiers=("REDIS_CLUSTER_NODES=127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"
         SHORTENER_REDIS_KEY_PREFIX="$REDIS_PREFIX" DATABASE_REPLICA_URLS="$REPLICA_URL")
  log "waiting for the replica to replay the seed"
  for _ in $(seq 1 600); do
    [ "$(psql -qtA "$REPLICA_URL" -c 'SELECT count(*) FROM links' 2>/dev/null || echo 0)" -ge "$LINKS" ] && break
    sleep 0.5
  done
fi
redis_keys() { # keys of this run in the cluster's masters, and their used memory in bytes
  local keys=0 memory=0 port role
  for port in 7001 7002 7003 7004 7005 7006; do
    role=$(redis-cli -p "$port" role 2>/dev/null | head -n 1) || continue
    [ "$role" = master ] || continue
    keys=$(( keys + $(redis-cli -p "$port" dbsize) ))
    memory=$(( memory + $(redis-cli -p "$port" info memory | awk -F: '/^used_memory:/ { print $2+0 }') ))
  done
  echo "$keys $memory"
}

if [ "$LIMITER" = on ]; then
  limits=(SHORTENER_TRUSTED_PROXIES=127.0.0.1/32) clients=10000
else
  limits=(SHORTENER_RATE_LIMIT_REDIRECT=off SHORTENER_RATE_LIMIT_CREATE=off
          SHORTENER_RATE_LIMIT_STATS=off) clients=0
fi
env -i PATH="$PATH" DATABASE_URL="$DATABASE_URL" RUST_LOG=warn SHORTENER_CODE_KEY=$KEY \
  SHORTENER_LISTEN=127.0.0.1:$PORT SHORTENER_ADMIN_LISTEN=127.0.0.1:$ADMIN_PORT \
  SHORTENER_CACHE_CAPACITY=$CACHE_CAPACITY SHORTENER_PUBLIC_BASE_URL=http://sho.rt \
  SHORTENER_MAX_CONNECTIONS_PER_PEER=100000 "${limits[@]}" "${tiers[@]}" \
  target/release/shortener serve >"$WORK/service.log" 2>&1 &
service_pid=$!
target/release/examples/bare_redirect "127.0.0.1:$BARE_PORT" >"$WORK/bare.log" 2>&1 &
bare_pid=$!
for _ in $(seq 1 100); do
  curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$ADMIN_PORT/readyz" &&
    curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$BARE_PORT/x" && break
  sleep 0.1
done
if [ "$TIERS" = full ]; then
  read -r keys_before memory_before < <(redis_keys)
  if [ "$WARM" != 0s ]; then
    log "warming Redis: walking every code for $WARM"
    timeout 900 wrk -t2 -c"$CONNECTIONS" -d"$WARM" --timeout 5s -s loadtest/scenario.lua \
      "http://127.0.0.1:$PORT" -- walk "$WORK/codes.txt" 0 >"$WORK/warm.txt" 2>&1 || true
  fi
  read -r keys_after memory_after < <(redis_keys)
  warmed=$(( keys_after - keys_before ))
  per_key=$(( warmed > 0 ? (memory_after - memory_before) / warmed : 0 ))
  tier_text="Redis Cluster (3 masters, 3 replicas, on this machine) below the cache, warmed for \
$WARM: $warmed of the $LINKS links in Redis ($per_key bytes of Redis memory a link, masters only); \
misses read the streaming replica (links older than the lag bound)"
else
  tier_text="no Redis tier, so nothing to warm; no replica: misses read the primary"
fi
settings="Settings: $LINKS links seeded ($tier_text), cache \
capacity $CACHE_CAPACITY, limiter $LIMITER$( [ "$LIMITER" = on ] && echo " (defaults; \
X-Forwarded-For over $clients addresses, 127.0.0.1 trusted)"), clicks flushed every 1 s, \
wrk 2 threads $CONNECTIONS connections for $DURATION; machine: $(nproc) CPUs, \
$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); commit \
$(git rev-parse --short HEAD)$(git diff --quiet || echo ' (with uncommitted changes)')."

cpu_seconds() { # PID: user + system seconds
  awk -v ticks="$(getconf CLK_TCK)" '{ print ($14 + $15) / ticks }' "/proc/$1/stat"
}
rss_bytes() { awk '/^VmRSS/ { print $2 * 1024 }' "/proc/$1/status"; }

run_scenario() { # NAME MODE TARGET_PORT SERVER_PID
  local name=$1 mode=$2 port=$3 pid=$4 dir="$REPORTS/$STAMP-$1"
  mkdir -p "$dir"
  log "scenario $name: wrk for $DURATION"
  echo "$settings" >"$dir/settings.txt"
  curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" >"$dir/before.prom"
  local cpu_before; cpu_before=$(cpu_seconds "$pid")
  WRK_RESULT="$dir/run.json" timeout 120 wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --timeout 5s \
    -s loadtest/scenario.lua "http://127.0.0.1:$port" -- "$mode" "$WORK/codes.txt" "$clients" \
    >"$dir/wrk.txt" 2>&1
  curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" >"$dir/after.prom"
  { echo "cpu_seconds=$(echo "$(cpu_seconds "$pid") - $cpu_before" | bc -l)"
    echo "rss_bytes=$(rss_bytes "$pid")"; } >"$dir/server.txt"
  python3 loadtest/report.py scenario "$dir" | sed -n '5,6p' >&2
}

command -v bc >/dev/null || { apt-get install -y -qq bc >/dev/null 2>&1 || die "bc is required"; }
# Warm: the hot set, and the popular head of the Zipf list, into memory.
run_scenario warmup hotset "$PORT" "$service_pid" >/dev/null 2>&1 || true
rm -rf "$REPORTS/$STAMP-warmup"
suffix=''
if [ "$TIERS" = full ]; then suffix=-full; fi
if wants hot; then
  run_scenario "hot$suffix" hot "$PORT" "$service_pid"
  run_scenario "hot-reference$suffix" hot "$BARE_PORT" "$bare_pid"
fi
wants hotset && run_scenario "hotset$suffix" hotset "$PORT" "$service_pid"
wants zipf && run_scenario "zipf$suffix" zipf "$PORT" "$service_pid"
wants mixed && run_scenario "mixed$suffix" mixed "$PORT" "$service_pid"
if ! wants sweep; then
  log "reports in $REPORTS/$STAMP-*"
  exit 0
fi

# The sweep: oha at fixed rates over the hot set's first code list, service and reference.
# oha sends one set of headers, so it cannot spread X-Forwarded-For: with the limiter on,
# every request would be one client's, and the sweep would measure the limiter refusing.
if [ "$LIMITER" = on ]; then
  log "limiter on: no sweep (oha cannot spread X-Forwarded-For over clients)"
  log "reports in $REPORTS/$STAMP-*"
  exit 0
fi
sweep="$REPORTS/$STAMP-sweep$suffix"
mkdir -p "$sweep"
echo "$settings Sweep: oha, $CONNECTIONS connections, $SWEEP_DURATION a rate." >"$sweep/settings.txt"
head -n 100 "$WORK/codes.txt" | sed "s|^|http://127.0.0.1:$PORT/|" >"$WORK/urls.txt"
for target in service reference; do
  for rate in $SWEEP_RATES; do
    if [ "$target" = service ]; then urls=(--urls-from-file "$WORK/urls.txt")
    else urls=("http://127.0.0.1:$BARE_PORT/x"); fi
    log "sweep $target at $rate req/s for $SWEEP_DURATION"
    timeout 120 oha --no-tui --output-format json -z "$SWEEP_DURATION" -c "$CONNECTIONS" -q "$rate" \
      --latency-correction --redirect 0 "${urls[@]}" >"$sweep/rate-$rate-$target.json" 2>/dev/null || true
    p99=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print((d.get('latencyPercentiles',{}).get('p99') or 0)*1000)" \
      "$sweep/rate-$rate-$target.json" 2>/dev/null || echo 1e9)
    if python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) > 50 else 1)" "$p99"; then
      log "sweep $target: p99 $p99 ms at $rate req/s, past the knee; stopping"
      break
    fi
  done
done
python3 loadtest/report.py sweep "$sweep" | tail -n +5 >&2
log "reports in $REPORTS/$STAMP-*"
