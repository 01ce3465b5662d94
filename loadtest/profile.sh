#!/usr/bin/env bash
# Where the gap to the bare server goes: the service and the reference server
# (loadtest/bare_redirect.rs) each pinned to CPU 0 under the same hot load (wrk pinned to CPU 1,
# one cached code, clicks flushed every second, limits off as in loadtest/ratio.sh), each
# sampled with `perf record -e cpu-clock` for PERF_SECONDS in the middle of its run. Writes,
# per server, the top symbols and the samples grouped by where they fall (kernel, libc, the
# allocator, and each Rust crate of the binary), then both side by side, per request.
#
#   loadtest/profile.sh                 DURATION=12s PERF_SECONDS=6 CONNECTIONS=64
#
# Needs perf (Debian's linux-perf; installed when missing) and a kernel that allows it
# (perf_event_paranoid ≤ 1, or root). Loopback only, bounded. Output in OUT
# [target/loadtest/profile-<timestamp>].
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-12s}
PERF_SECONDS=${PERF_SECONDS:-6}
CONNECTIONS=${CONNECTIONS:-64}
OUT=${OUT:-target/loadtest/profile-$(date +%Y%m%dT%H%M%S)}
DB=shortener_profile
DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB?sslmode=disable"
KEY=profile-code-key-not-secret
PORT=18980
ADMIN_PORT=19980
BARE_PORT=18990

NAME=profile
# shellcheck source=loadtest/common.sh
. loadtest/common.sh
[[ $DURATION =~ ^[1-9][0-9]*s$ ]] || die "DURATION must look like 12s"
[ "${DURATION%s}" -gt $(( PERF_SECONDS + 2 )) ] || die "DURATION must exceed PERF_SECONDS + 2"
for cmd in wrk taskset python3; do command -v "$cmd" >/dev/null || die "$cmd is required"; done
if ! command -v perf >/dev/null; then
  log "installing perf (Debian package linux-perf)"
  if [ "$(id -u)" -eq 0 ]; then apt-get update -qq && apt-get install -y -qq linux-perf >/dev/null
  else sudo apt-get update -qq && sudo apt-get install -y -qq linux-perf >/dev/null; fi
fi
mkdir -p "$OUT"
cargo build --release --bin shortener --example bare_redirect
fresh_database "$DB" target/release/shortener
DATABASE_URL=$DATABASE_URL SHORTENER_CODE_KEY=$KEY RUST_LOG=warn timeout 60 \
  target/release/shortener seed --links 1 --codes-out "$OUT/codes.txt"
code=$(head -n 1 "$OUT/codes.txt")

pids=()
trap 'stop_pid "${pids[@]}"' EXIT
env -i PATH="$PATH" DATABASE_URL="$DATABASE_URL" RUST_LOG=warn SHORTENER_CODE_KEY=$KEY \
  SHORTENER_LISTEN=127.0.0.1:$PORT SHORTENER_ADMIN_LISTEN=127.0.0.1:$ADMIN_PORT \
  SHORTENER_RATE_LIMIT_REDIRECT=off SHORTENER_MAX_CONNECTIONS_PER_PEER=100000 \
  taskset -c 0 target/release/shortener serve >"$OUT/service.log" 2>&1 &
pids+=($!)
taskset -c 0 target/release/examples/bare_redirect "127.0.0.1:$BARE_PORT" >"$OUT/bare.log" 2>&1 &
pids+=($!)
wait_ready "$ADMIN_PORT"
curl -s -o /dev/null "http://127.0.0.1:$PORT/$code"

profile() { # NAME PORT PID
  local name=$1 port=$2 pid=$3
  log "$name: wrk for $DURATION, perf for ${PERF_SECONDS}s of it"
  taskset -c 1 timeout 120 wrk -t2 -c"$CONNECTIONS" -d"$DURATION" "http://127.0.0.1:$port/$code" \
    >"$OUT/$name-wrk.txt" 2>&1 &
  local wrk_pid=$!
  sleep 2
  perf record -q -e cpu-clock -F 4999 -p "$pid" -o "$OUT/$name.data" -- sleep "$PERF_SECONDS" \
    >/dev/null 2>&1
  wait "$wrk_pid"
  perf report -i "$OUT/$name.data" --no-children --sort dso,sym --stdio 2>/dev/null \
    | grep -v '^#' | grep -v '^$' >"$OUT/$name-symbols.txt"
}
profile service "$PORT" "${pids[0]}"
profile bare "$BARE_PORT" "${pids[1]}"

python3 - "$OUT" <<'PY' | tee "$OUT/summary.md"
import re, sys, os
out = sys.argv[1]

def requests_per_second(name):
    text = open(os.path.join(out, f"{name}-wrk.txt")).read()
    return float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))

def groups(name):
    result = {}
    for line in open(os.path.join(out, f"{name}-symbols.txt")):
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.*)", line)
        if not m:
            continue
        share, dso, kind, symbol = float(m.group(1)), m.group(2), m.group(3), m.group(4)
        if kind == "k" or "kernel" in dso:
            group = "kernel (sockets, wake-ups, syscalls)"
        elif dso.startswith("libc"):
            group = "libc (memmove, memcpy, syscall stubs)"
        elif "jemalloc" in symbol or symbol.startswith(("_rjem", "je_", "_ZN17tikv_jemalloc")):
            group = "allocator (jemalloc)"
        else:
            s = symbol.replace("_$LT$", "<").lstrip("<")
            crate = re.match(r"([A-Za-z_][A-Za-z0-9_]*)::", s)
            group = crate.group(1) if crate else "other"
            if group in ("core", "alloc", "std"):
                group = "core/alloc/std"
            if group in ("bare_redirect", "shortener"):
                group = "the program's own code"
        result[group] = result.get(group, 0.0) + share
    return result

rates = {name: requests_per_second(name) for name in ("service", "bare")}
shares = {name: groups(name) for name in ("service", "bare")}
ns = {name: {g: v / 100 * 1e9 / rates[name] for g, v in shares[name].items()} for name in rates}
print(f"service {rates['service']:,.0f} req/s, bare {rates['bare']:,.0f} req/s "
      f"(ratio {rates['service'] / rates['bare']:.2f}); one CPU each, so a request costs "
      f"{1e9 / rates['service']:,.0f} ns and {1e9 / rates['bare']:,.0f} ns of it.\n")
print("| where | service share | bare share | service ns/req | bare ns/req | difference ns/req |")
print("| --- | ---: | ---: | ---: | ---: | ---: |")
keys = sorted(set(ns["service"]) | set(ns["bare"]), key=lambda g: -(ns["service"].get(g, 0) - ns["bare"].get(g, 0)))
for g in keys:
    a, b = ns["service"].get(g, 0), ns["bare"].get(g, 0)
    if max(a, b) < 20:
        continue
    print(f"| {g} | {shares['service'].get(g, 0):.1f} % | {shares['bare'].get(g, 0):.1f} % "
          f"| {a:,.0f} | {b:,.0f} | {a - b:+,.0f} |")
PY
log "output in $OUT (top symbols: service-symbols.txt, bare-symbols.txt)"
