#!/bin/sh
# DEVELOPMENT ONLY. The one-shot `redis-cluster-init` service of docker-compose.yml: waits for
# the six Redis nodes, and when they do not already form a healthy cluster, resets them and
# creates one of three masters with one replica each. Idempotent: a healthy cluster is left as
# it is, so `docker compose up` can run it every time.
set -eu

nodes="redis-1 redis-2 redis-3 redis-4 redis-5 redis-6"

answers() { redis-cli -h "$1" ping 2>/dev/null | grep -q PONG; }
healthy() { redis-cli -h redis-1 cluster info 2>/dev/null | grep -q '^cluster_state:ok'; }

for node in $nodes; do
    tries=0
    until answers "$node"; do
        tries=$((tries + 1))
        [ "$tries" -le 120 ] || { echo "cluster-init: $node does not answer" >&2; exit 1; }
        sleep 0.5
    done
done

if healthy; then
    echo "cluster-init: the Redis Cluster is already healthy"
    exit 0
fi

# CLUSTER MEET needs addresses, not names: resolve each node. A node left from an earlier
# cluster is emptied and forgotten first (the cluster is a cache; nothing in it must survive).
addresses=""
for node in $nodes; do
    redis-cli -h "$node" flushall >/dev/null 2>&1 || true
    redis-cli -h "$node" cluster reset hard >/dev/null
    address=$(getent hosts "$node" | awk '{ print $1; exit }')
    [ -n "$address" ] || { echo "cluster-init: cannot resolve $node" >&2; exit 1; }
    addresses="$addresses $address:6379"
done

echo "cluster-init: creating the Redis Cluster on$addresses"
# shellcheck disable=SC2086 # one word per node address
redis-cli --cluster create $addresses --cluster-replicas 1 --cluster-yes

tries=0
until healthy; do
    tries=$((tries + 1))
    [ "$tries" -le 120 ] || { echo "cluster-init: the cluster did not become healthy" >&2; exit 1; }
    sleep 0.5
done
echo "cluster-init: the Redis Cluster is healthy"
