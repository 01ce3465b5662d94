#!/usr/bin/env bash
# DEVELOPMENT ONLY. Run once by the official postgres image when it initialises the primary's
# data directory (mounted into /docker-entrypoint-initdb.d/): creates the replication role and
# lets it connect for streaming replication from the Compose network, with a password
# (scram-sha-256). The values come from deploy/compose/postgres.env.
set -euo pipefail

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    --set=role="$REPLICATION_USER" --set=password="$REPLICATION_PASSWORD" <<'SQL'
CREATE ROLE :"role" WITH REPLICATION LOGIN PASSWORD :'password';
SQL

# The image's pg_hba.conf allows every database with a password, but "all" does not cover
# replication connections: they need a line of their own. Read when the server restarts at the
# end of initialisation.
echo "host replication $REPLICATION_USER all scram-sha-256" >>"$PGDATA/pg_hba.conf"
