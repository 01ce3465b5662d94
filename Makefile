# The two commands: `make run` and `make test`. Both bring up what they need first.
SHELL := /bin/bash
DB_NAME ?= shortener
# Development default: the local Postgres with password-less TCP (see scripts/stack.sh), and its
# streaming replica. A DATABASE_URL from the environment or the command line names a database
# elsewhere: then the local stack is not set up for it, and no local replica is used.
DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/$(DB_NAME)
ifeq ($(filter environment command%,$(origin DATABASE_URL)),)
LOCAL_DATABASE := yes
DATABASE_REPLICA_URLS ?= postgres://postgres@127.0.0.1:5433/$(DB_NAME)
REDIS_CLUSTER_NODES ?= 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003
endif
# Exported to the service only (never to the tests, which configure their own), and never
# written into a command line, so make does not echo a password.
run migrate: export DATABASE_URL := $(DATABASE_URL)
run: export DATABASE_REPLICA_URLS := $(DATABASE_REPLICA_URLS)
run: export REDIS_CLUSTER_NODES := $(REDIS_CLUSTER_NODES)
export SHORTENER_TEST_ADMIN_URL ?= postgres://postgres@127.0.0.1:5432/postgres
TARGET := $(or $(CARGO_TARGET_DIR),target)
BIN := $(TARGET)/release/shortener
# COVERAGE=1: `test` and `fault` run instrumented, under cargo-llvm-cov (scripts/coverage.sh),
# in one build that `make coverage` then reports on; CI runs them so.
COVERAGE ?= 0

.PHONY: run test fault soak services stop db migrate build lint bench ratio ci monitoring coverage deny loadtest deploy-check

## Start the local stack (installing what is missing), migrate, build in release, serve on :8080.
run: db build
	@$(BIN) migrate
	@echo "shortener: serving on http://localhost:8080 (admin: http://localhost:9090/healthz, /readyz); Ctrl-C stops"
	@$(BIN) serve

## Start the local stack, then run the whole test suite (each test makes its own database).
test: services
	./scripts/stack.sh drop-test-dbs
ifeq ($(COVERAGE),1)
	./scripts/coverage.sh run --all-targets
else
	cargo test --all-targets
endif

## Fault-injection scenarios (tests/faults.rs; tests/under_load.rs and tests/fleet.rs at a tenth
## of each row's rate), one at a time; each faults only processes it started itself.
fault: services
ifeq ($(COVERAGE),1)
	./scripts/coverage.sh run --test faults --test under_load --test fleet -- --ignored --test-threads=1
else
	cargo test --test faults --test under_load --test fleet -- --ignored --test-threads=1
endif

## The faults under load at their full rates and durations against the release binary, their
## latency bounds asserted too (docs/reliability.md). Not run by CI: about 15 minutes.
soak: services build
	SHORTENER_LOAD_SCALE=1 SHORTENER_SERVICE_BIN=$(abspath $(BIN)) \
	  cargo test --release --test under_load --test fleet -- --ignored --test-threads=1 --nocapture

## The suite and the fault scenarios once, instrumented; then line coverage per file and in
## total, failing when a file under src/http/ is below 80 % of its lines.
coverage:
	./scripts/coverage.sh clean
	$(MAKE) test fault COVERAGE=1
	./scripts/coverage.sh report

## Postgres (and a streaming replica), Redis, and a Redis Cluster, each only if not running.
services:
	./scripts/stack.sh up

## Stop what `services` started itself (the replica and the cluster).
stop:
	./scripts/stack.sh stop

db:
ifdef LOCAL_DATABASE
	./scripts/stack.sh up
	./scripts/stack.sh createdb $(DB_NAME)
endif

migrate: db build
	@$(BIN) migrate

build:
	cargo build --release

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

## Criterion micro-benchmarks of the hot-path pieces (docs/benchmarks.md); the create benchmarks
## fill the database shortener_bench, made afresh.
bench: services
	psql -w "$(SHORTENER_TEST_ADMIN_URL)" -qc 'DROP DATABASE IF EXISTS shortener_bench' -c 'CREATE DATABASE shortener_bench'
	SHORTENER_BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/shortener_bench cargo bench --bench hot_path

## The load harness (loadtest/harness.sh): seeds LINKS links (1,000,000), runs the hot, hot-set,
## Zipf, mixed and open-loop sweep scenarios against the service and the reference server,
## and writes reports under loadtest/reports/. QUICK=1 for a run under two minutes.
loadtest: services
	loadtest/harness.sh

## The service against a bare hyper server returning a fixed 302, one generator, one run
## (loadtest/ratio.sh; QUICK=1 for a smoke run of a few seconds).
ratio: services
	loadtest/ratio.sh

## The alert rules (promtool check and unit tests), every dashboard query, and the catalogue;
## with the scrape that `make test` keeps (tests/metrics.rs), promtool check metrics on it too.
monitoring:
	scripts/check-monitoring.sh $(shell ls -t $(TARGET)/tmp/metrics-scrape.prom $(TARGET)/llvm-cov-target/tmp/metrics-scrape.prom 2>/dev/null | head -1)

## deny.toml: licences, duplicate versions, sources (cargo-deny, offline; advisories are left
## to a CI with a network).
deny:
	./scripts/deny.sh

## What CI runs (.ci/run).
ci: coverage monitoring lint deny deploy-check

## The Dockerfile (hadolint), the Compose file (docker-compose 1.29 and Compose v2's parser),
## the Kubernetes overlays rendered and schema-validated, the PrometheusRule against the alert
## rules, and every configuration name they use against `shortener serve --list-config-names`;
## offline, installing its tools when missing (scripts/check-deploy.sh).
deploy-check:
	./scripts/check-deploy.sh
