# shellcheck shell=bash
# Helpers shared by the load scripts (sourced, not run). Each script sets NAME first.

log() { printf '[%s %s] %s\n' "$NAME" "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# The local stack up, and database DB dropped, created again and migrated with BINARY.
fresh_database() { # DB BINARY
  ./scripts/stack.sh up
  export PGHOST=127.0.0.1 PGUSER=postgres PGCONNECT_TIMEOUT=5
  psql -w -d postgres -v ON_ERROR_STOP=1 -qc "DROP DATABASE IF EXISTS $1 WITH (FORCE)"
  psql -w -d postgres -v ON_ERROR_STOP=1 -qc "CREATE DATABASE $1"
  DATABASE_URL="postgres://postgres@127.0.0.1:5432/$1?sslmode=disable" RUST_LOG=warn \
    timeout 60 "$2" migrate
}

# Waits (10 s at most) until the admin listener on PORT answers /readyz.
wait_ready() { # ADMIN_PORT
  for _ in $(seq 1 100); do
    curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$1/readyz" && return 0
    sleep 0.1
  done
}

# SIGTERM, then SIGKILL if PID is still there after 30 s (a service writes its clicks first).
stop_pid() { # PID...
  local pid
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "$@"; do
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
}
