#!/usr/bin/env bash
# The local stack the service and its tests need, started only where it is not running yet.
#
#   scripts/stack.sh up           Postgres on 127.0.0.1:5432 (installs the Debian package if missing)
#   scripts/stack.sh createdb NAME   creates database NAME if it does not exist
#   scripts/stack.sh drop-test-dbs   drops databases left behind by earlier test runs
#
# DEVELOPMENT ONLY: on a machine where this script installs Postgres itself, it lets local TCP
# connections in without a password (trust on 127.0.0.1 and ::1). Never use this on a server.
set -euo pipefail

PGHOST=127.0.0.1
PGPORT=${PGPORT:-5432}
PGUSER=${PGUSER:-postgres}
PGCONNECT_TIMEOUT=${PGCONNECT_TIMEOUT:-5}
export PGHOST PGPORT PGUSER PGCONNECT_TIMEOUT

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

up() {
  if postgres_answers; then
    log "PostgreSQL already answers on $PGHOST:$PGPORT"
  else
    install_postgres
    start_postgres
  fi
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
  createdb) createdb_if_missing "${2:?database name}" ;;
  drop-test-dbs) drop_test_dbs ;;
  *) echo "usage: $0 up | createdb NAME | drop-test-dbs" >&2; exit 2 ;;
esac
