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

# Dies unless DURATION looks like 5s and each named variable is a positive integer.
check_knobs() { # VARIABLE...
  [[ $DURATION =~ ^[1-9][0-9]*s$ ]] || die "DURATION must look like 5s (got '$DURATION')"
  local knob
  for knob in "$@"; do
    [[ ${!knob} =~ ^[1-9][0-9]*$ ]] || die "$knob must be a positive integer (got '${!knob}')"
  done
}

# The one service a script runs at a time: start it with `... & service_pid=$!`, stop it with
# stop_service (also the scripts' EXIT trap; a second call does nothing).
service_pid=''
stop_service() {
  [ -n "$service_pid" ] || return 0
  stop_pid "$service_pid"
  service_pid=''
}
