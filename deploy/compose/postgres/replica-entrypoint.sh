#!/usr/bin/env bash
# DEVELOPMENT ONLY. Entry point of the Compose stack's streaming replica (official postgres
# image): every start makes a fresh copy of the primary with pg_basebackup (a physical
# replication slot keeps the WAL it needs), then starts it as a hot standby through the image's
# own entry point. Rebuilding on every start costs seconds on a development database and means
# the replica can never be left behind a primary that was recreated.
set -euo pipefail

primary=${PRIMARY_HOST:?PRIMARY_HOST is required}
slot=${REPLICATION_SLOT:-compose_replica}
export PGPASSWORD=$REPLICATION_PASSWORD

for _ in $(seq 1 120); do
    pg_isready -q -h "$primary" -U "$REPLICATION_USER" -d "$POSTGRES_DB" && break
    sleep 1
done
pg_isready -q -h "$primary" -U "$REPLICATION_USER" -d "$POSTGRES_DB" \
    || { echo "replica: the primary $primary does not answer" >&2; exit 1; }

# A slot left by an earlier run of this replica (not streaming now) is dropped, so that
# pg_basebackup can create it again.
psql -h "$primary" -U "$REPLICATION_USER" -d "$POSTGRES_DB" -v ON_ERROR_STOP=1 -Atq \
    --set=slot="$slot" <<'SQL' >/dev/null
SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
 WHERE slot_name = :'slot' AND NOT active;
SQL

rm -rf "${PGDATA:?}"/*
mkdir -p "$PGDATA"
chown postgres:postgres "$PGDATA"
chmod 700 "$PGDATA"
echo "replica: copying the primary $primary (pg_basebackup, slot $slot)"
# -R writes standby.signal and primary_conninfo (with the replication password, development only).
gosu postgres pg_basebackup -h "$primary" -U "$REPLICATION_USER" -D "$PGDATA" \
    -X stream -C -S "$slot" -R --checkpoint=fast

exec docker-entrypoint.sh postgres -c hot_standby=on -c hot_standby_feedback=on
