# The two commands: `make run` and `make test`. Both bring up what they need first.
SHELL := /bin/bash
DB_NAME ?= shortener
# Development default: the local Postgres with password-less TCP (see scripts/stack.sh).
DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/$(DB_NAME)
export SHORTENER_TEST_ADMIN_URL ?= postgres://postgres@127.0.0.1:5432/postgres

.PHONY: run test services db migrate build lint bench ratio ci

## Start Postgres (installing it if missing), migrate, build in release, serve on :8080.
run: db build
	DATABASE_URL=$(DATABASE_URL) ./target/release/shortener migrate
	DATABASE_URL=$(DATABASE_URL) ./target/release/shortener serve

## Start Postgres, then run the whole test suite (each test makes its own database).
test: services
	./scripts/stack.sh drop-test-dbs
	cargo test --all-targets

services:
	./scripts/stack.sh up

db: services
	./scripts/stack.sh createdb $(DB_NAME)

migrate: db build
	DATABASE_URL=$(DATABASE_URL) ./target/release/shortener migrate

build:
	cargo build --release

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

## Criterion micro-benchmarks of the hot-path pieces (docs/benchmarks.md).
bench:
	cargo bench --bench hot_path

## The service against a bare hyper server returning a fixed 302, one generator, one run
## (loadtest/ratio.sh; QUICK=1 for a smoke run of a few seconds).
ratio: services
	loadtest/ratio.sh

## What CI runs.
ci: test lint
