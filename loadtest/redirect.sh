#!/usr/bin/env bash
# A bounded redirect load test against a local instance (loopback only).
#
#   loadtest/redirect.sh [BASE_URL] [DURATION] [CONNECTIONS]
#   defaults:             http://127.0.0.1:8080  10s        64
#
# Creates LINKS links, then runs wrk for DURATION over them (a Lua script picks codes at random)
# and prints wrk's latency distribution. Every request comes from one address: run the
# instance with SHORTENER_RATE_LIMIT_CREATE=off and SHORTENER_RATE_LIMIT_REDIRECT=off, or what is
# measured is the limiter answering 429. The fuller harness (mixed workload, Zipf popularity,
# open-loop latency at a fixed rate, reports and plots) grows here with the performance work.
set -euo pipefail
BASE=${1:-http://127.0.0.1:8080}
DURATION=${2:-10s}
CONNECTIONS=${3:-64}
LINKS=${LINKS:-200}

case "$BASE" in
  http://127.*|http://localhost*|http://\[::1\]*) ;;
  *) echo "refusing to load anything but a loopback address: $BASE" >&2; exit 2 ;;
esac
if ! command -v wrk >/dev/null; then
  echo "installing wrk (Debian package)" >&2
  if [ "$(id -u)" -eq 0 ]; then apt-get update -qq && apt-get install -y -qq wrk >/dev/null
  else sudo apt-get update -qq && sudo apt-get install -y -qq wrk >/dev/null; fi
fi

codes_file=$(mktemp)
script=$(mktemp --suffix=.lua)
trap 'rm -f "$codes_file" "$script"' EXIT
for i in $(seq 1 "$LINKS"); do
  curl -sf -X POST "$BASE/shorten" -H 'Content-Type: application/json' \
    -d "{\"url\": \"https://example.com/load/$i\"}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["code"])' >>"$codes_file"
done
{
  echo "codes = {"
  sed 's/.*/  "&",/' "$codes_file"
  echo "}"
  cat <<'LUA'
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/" .. codes[math.random(#codes)])
end
LUA
} >"$script"
timeout $(( ${DURATION%s} + 30 )) wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$script" "$BASE"
