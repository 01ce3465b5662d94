#!/usr/bin/env bash
# The local stack the service and its tests need, started only where it is not running yet.
#
#   scripts/stack.sh up           everything below (installs Debian packages where missing):
#                                   Postgres on 127.0.0.1:5432,
#                                   a streaming replica of it on 127.0.0.1:5433,
#                                   Redis on 127.0.0.1:6379,
#                                   a Redis Cluster of 3 masters and 3 replicas on 127.0.0.1:7001-7006
#                                 and openssl, with which the TLS tests make their certificates
#   scripts/stack.sh stop         stops what `up` started itself (the replica and the cluster);
#                                 the machine's own Postgres and Redis are left running
#   scripts/stack.sh createdb NAME   creates database NAME if it does not exist
#   scripts/stack.sh drop-test-dbs   drops databases left behind by earlier test runs
#
# The replica and the cluster live under $SHORTENER_STACK_DIR (default /var/tmp/shortener-stack).
# Another stack beside this one (scripts/newcomer-check.sh) takes ports and names of its own:
# REPLICA_PORT [5433], REDIS_PORT [6379], SHORTENER_CLUSTER_BASE_PORT [7001] (six ports from
# it), SHORTENER_REPLICA_SLOT [shortener_replica].
#
# Runs as root or as a user with sudo: what needs root (packages, the machine's Postgres
# settings, files of the replica, which belong to postgres) goes through sudo; the rest runs
# as the user.
#
# DEVELOPMENT ONLY: on a machine where this script installs Postgres itself, it lets local TCP
# connections in without a password (trust on 127.0.0.1 and ::1), and it lets local replication
# connections in without one everywhere. Never use this on a server.
set -euo pipefail

PGHOST=127.0.0.1
PGPORT=${PGPORT:-5432}
PGUSER=${PGUSER:-postgres}
PGCONNECT_TIMEOUT=${PGCONNECT_TIMEOUT:-5}
export PGHOST PGPORT PGUSER PGCONNECT_TIMEOUT
REPLICA_PORT=${REPLICA_PORT:-5433}
REDIS_PORT=${REDIS_PORT:-6379}
CLUSTER_BASE_PORT=${SHORTENER_CLUSTER_BASE_PORT:-7001}
CLUSTER_PORTS=()
for offset in 0 1 2 3 4 5; do CLUSTER_PORTS+=($((CLUSTER_BASE_PORT + offset))); done
STACK_DIR=${SHORTENER_STACK_DIR:-/var/tmp/shortener-stack}
SLOT=${SHORTENER_REPLICA_SLOT:-shortener_replica}

log() { printf 'stack: %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

postgres_answers() { pg_isready -q -h "$PGHOST" -p "$PGPORT" 2>/dev/null; }

install_postgres() {
  if ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    return
  fi
  log "installing PostgreSQL from Debian packages"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq postgresql postgresql-client >/dev/null
}

start_postgres() {
  local version
  version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$version" ]; then
    version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
    log "creating cluster $version/main"
    as_root pg_createcluster "$version" main >/dev/null
  fi
  log "starting PostgreSQL $version/main"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 60); do
    postgres_answers && break
    sleep 0.5
  done
  postgres_answers || { log "PostgreSQL did not start"; exit 1; }
  # Development only: password-less local TCP for the postgres user, as on the CI machines.
  if ! psql -w -h "$PGHOST" -U "$PGUSER" -d postgres -Atqc 'SELECT 1' >/dev/null 2>&1; then
    local hba="/etc/postgresql/$version/main/pg_hba.conf"
    log "allowing password-less local TCP connections in $hba (development only)"
    as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload
  fi
}

as_postgres() {
  if [ "$(id -un)" = postgres ]; then "$@"; else as_root runuser -u postgres -- "$@"; fi
}

replica_answers() { pg_isready -q -h "$PGHOST" -p "$REPLICA_PORT" 2>/dev/null; }

# Development only: password-less replication connections from loopback.
allow_replication() {
  if psql -w "host=$PGHOST port=$PGPORT user=$PGUSER dbname=postgres replication=true" \
      -Atqc 'IDENTIFY_SYSTEM' >/dev/null 2>&1; then
    return
  fi
  local hba
  hba=$(psql -w -d postgres -Atqc 'SHOW hba_file')
  log "allowing password-less local replication connections in $hba (development only)"
  as_root sed -i '1i host replication all 127.0.0.1/32 trust' "$hba"
  psql -w -d postgres -Atqc 'SELECT pg_reload_conf()' >/dev/null
}

# A settings file for the replica: Debian keeps the primary's configuration outside its data
# directory, so the copy has none. Hot standby requires these to be at least the primary's.
write_replica_config() {
  local dir=$1 setting
  # The directory is postgres's, mode 0700 (pg_basebackup made it): written as postgres.
  {
    echo "port = $REPLICA_PORT"
    echo "listen_addresses = '127.0.0.1'"
    echo "unix_socket_directories = '$STACK_DIR'"
    echo "hot_standby = on"
    echo "hot_standby_feedback = on"
    for setting in max_connections max_worker_processes max_wal_senders \
                   max_prepared_transactions max_locks_per_transaction; do
      echo "$setting = $(psql -w -d postgres -Atqc "SHOW $setting")"
    done
  } | as_postgres tee "$dir/postgresql.conf" >/dev/null
  printf 'local all all trust\nhost all all 127.0.0.1/32 trust\n' |
    as_postgres tee "$dir/pg_hba.conf" >/dev/null
}

# A streaming replica of the local primary, rebuilt from a fresh base backup whenever the one
# on disk cannot start or catch up (a lost slot, a primary that was recreated).
start_replica() {
  if replica_answers; then
    log "PostgreSQL replica already answers on $PGHOST:$REPLICA_PORT"
    # A test that paused replay and died before resuming it must not leave it paused.
    psql -w -p "$REPLICA_PORT" -d postgres -Atqc 'SELECT pg_wal_replay_resume()' >/dev/null 2>&1 || true
    return
  fi
  local major bin dir=$STACK_DIR/pg-replica
  major=$(psql -w -d postgres -Atqc "SELECT current_setting('server_version_num')::int / 10000")
  bin=/usr/lib/postgresql/$major/bin
  as_root mkdir -p "$STACK_DIR"
  as_root chmod 1777 "$STACK_DIR"
  allow_replication
  # The data directory is postgres's (mode 0700): looked into as postgres.
  if as_postgres test -f "$dir/standby.signal" && [ "$(psql -w -d postgres -Atqc \
      "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '$SLOT'")" = 1 ]; then
    log "starting the PostgreSQL replica on $PGHOST:$REPLICA_PORT"
    if as_postgres "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 30 start >/dev/null; then
      return
    fi
    log "the replica on disk did not start; rebuilding it"
    as_postgres "$bin/pg_ctl" -D "$dir" -m immediate stop >/dev/null 2>&1 || true
  fi
  as_root rm -rf "$dir"
  psql -w -d postgres -Atqc "SELECT pg_drop_replication_slot('$SLOT') \
    FROM pg_replication_slots WHERE slot_name = '$SLOT' AND NOT active" >/dev/null
  log "making a PostgreSQL replica on $PGHOST:$REPLICA_PORT (pg_basebackup into $dir)"
  as_postgres "$bin/pg_basebackup" -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" -D "$dir" \
    -X stream -C -S "$SLOT" -R --checkpoint=fast
  write_replica_config "$dir"
  as_postgres "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 start >/dev/null ||
    { log "the PostgreSQL replica did not start; see $dir/server.log"; exit 1; }
}

stop_replica() {
  local dir=$STACK_DIR/pg-replica bin
  as_postgres test -f "$dir/postmaster.pid" || return 0
  bin=/usr/lib/postgresql/$(as_postgres cat "$dir/PG_VERSION")/bin
  log "stopping the PostgreSQL replica"
  as_postgres "$bin/pg_ctl" -D "$dir" -m fast -w -t 30 stop >/dev/null || true
}

install_redis() {
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null && return
  log "installing Redis from Debian packages"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq redis-server redis-tools >/dev/null
}

redis_answers() { redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null | grep -q PONG; }

start_redis() {
  if redis_answers "$REDIS_PORT"; then
    log "Redis already answers on 127.0.0.1:$REDIS_PORT"
    return
  fi
  install_redis
  log "starting Redis on 127.0.0.1:$REDIS_PORT"
  as_root mkdir -p /var/lib/redis /var/log/redis
  as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" \
    --appendonly no --dir /var/lib/redis --logfile "/var/log/redis/shortener-$REDIS_PORT.log"
  for _ in $(seq 1 50); do redis_answers "$REDIS_PORT" && return; sleep 0.1; done
  log "Redis did not start"; exit 1
}

cluster_ok() {
  redis-cli -h 127.0.0.1 -p "${CLUSTER_PORTS[0]}" cluster info 2>/dev/null | grep -q 'cluster_state:ok'
}

# Three masters with a replica each. The cluster keeps nothing on disk: when it is not healthy
# it is made again from scratch.
start_redis_cluster() {
  if cluster_ok; then
    log "Redis Cluster already serves on 127.0.0.1:${CLUSTER_PORTS[0]}-${CLUSTER_PORTS[-1]}"
    return
  fi
  install_redis
  stop_redis_cluster
  local dir=$STACK_DIR/redis-cluster port
  as_root mkdir -p "$STACK_DIR"
  as_root chmod 1777 "$STACK_DIR"
  rm -rf "$dir"
  log "starting a Redis Cluster on 127.0.0.1:${CLUSTER_PORTS[0]}-${CLUSTER_PORTS[-1]}"
  for port in "${CLUSTER_PORTS[@]}"; do
    mkdir -p "$dir/$port"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --cluster-enabled yes \
      --cluster-config-file nodes.conf --cluster-node-timeout 2000 --save "" --appendonly no \
      --dir "$dir/$port" --logfile "$dir/$port/redis.log"
  done
  for port in "${CLUSTER_PORTS[@]}"; do
    for _ in $(seq 1 50); do redis_answers "$port" && break; sleep 0.1; done
  done
  local nodes=()
  for port in "${CLUSTER_PORTS[@]}"; do nodes+=("127.0.0.1:$port"); done
  redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >"$dir/create.log"
  for _ in $(seq 1 100); do cluster_ok && return; sleep 0.2; done
  log "the Redis Cluster did not become healthy; see $dir"; exit 1
}

stop_redis_cluster() {
  local port
  for port in "${CLUSTER_PORTS[@]}"; do
    if redis-cli -h 127.0.0.1 -p "$port" cluster info >/dev/null 2>&1; then
      redis-cli -h 127.0.0.1 -p "$port" shutdown nosave >/dev/null 2>&1 || true
    fi
  done
}

# The TLS tests make their certificates with openssl.
install_openssl() {
  command -v openssl >/dev/null && return
  log "installing openssl from Debian packages"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq openssl >/dev/null
}

up() {
  install_openssl
  if postgres_answers; then
    log "PostgreSQL already answers on $PGHOST:$PGPORT"
  else
    install_postgres
    start_postgres
  fi
  start_replica
  start_redis
  start_redis_cluster
}

stop() {
  stop_replica
  log "stopping the Redis Cluster"
  stop_redis_cluster
}

createdb_if_missing() {
  local name=$1
  if [ "$(psql -w -d postgres -Atqc "SELECT 1 FROM pg_database WHERE datname = '$name'")" != 1 ]; then
    log "creating database $name"
    psql -w -d postgres -qc "CREATE DATABASE \"$name\""
  fi
}

drop_test_dbs() {
  psql -w -d postgres -Atqc "SELECT datname FROM pg_database WHERE datname LIKE 'shortener\_test\_%'" |
    while read -r name; do
      psql -w -d postgres -qc "DROP DATABASE IF EXISTS \"$name\" WITH (FORCE)" || true
    done
}

case "${1:-}" in
  up) up ;;
  stop) stop ;;
  createdb) createdb_if_missing "${2:?database name}" ;;
  drop-test-dbs) drop_test_dbs ;;
  *) echo "usage: $0 up | stop | createdb NAME | drop-test-dbs" >&2; exit 2 ;;
esac
