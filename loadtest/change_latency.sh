#!/usr/bin/env bash
# How long a PATCH takes to reach another instance (examples/change_latency.rs): two instances
# on a fresh database, with one Redis node, with the stack's Redis Cluster, and without Redis
# (the feed alone).
# Loopback only, bounded (ROUNDS changes each, 10 s at most per change). Output in OUT
# [target/loadtest/change-latency-<timestamp>].
#
#   loadtest/change_latency.sh      ROUNDS [100], REDIS_URL [redis://127.0.0.1:6379],
#                                   REDIS_CLUSTER_NODES [127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003]
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-100}
REDIS_CLUSTER_NODES=${REDIS_CLUSTER_NODES:-127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
OUT=${OUT:-target/loadtest/change-latency-$(date +%Y%m%dT%H%M%S)}
DB=shortener_change_latency
DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB?sslmode=disable"

NAME=change-latency
# shellcheck source=loadtest/common.sh
. loadtest/common.sh
mkdir -p "$OUT"
cargo build --release --quiet --bin shortener --example change_latency
{
  fresh_database "$DB" target/release/shortener
  env -u REDIS_CLUSTER_NODES REDIS_URL="$REDIS_URL" DATABASE_URL="$DATABASE_URL" \
    target/release/examples/change_latency "$ROUNDS"
  fresh_database "$DB" target/release/shortener
  env -u REDIS_URL REDIS_CLUSTER_NODES="$REDIS_CLUSTER_NODES" DATABASE_URL="$DATABASE_URL" \
    target/release/examples/change_latency "$ROUNDS"
  fresh_database "$DB" target/release/shortener
  env -u REDIS_URL -u REDIS_CLUSTER_NODES DATABASE_URL="$DATABASE_URL" \
    target/release/examples/change_latency "$ROUNDS"
} 2>"$OUT/stderr.log" | tee "$OUT/summary.txt"
