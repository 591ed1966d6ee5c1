# Hotpath: the two quick-start commands are `make demo` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MIX := mix

.PHONY: help bootstrap demo test test-rust test-elixir package-check bench clean

help:
	@echo "make demo    - set up (scripts/bootstrap), build, run the demo"
	@echo "make test    - set up, then everything CI checks (.ci/run)"
	@echo "make bench   - run every benches/*.exs and print the tables"

bootstrap:
	@scripts/bootstrap

demo: bootstrap
	$(MIX) hotpath.demo

test: bootstrap test-rust test-elixir package-check

test-rust:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	cargo test --workspace --locked

test-elixir:
	$(MIX) format --check-formatted
	MIX_ENV=test $(MIX) compile --force --warnings-as-errors
	MIX_ENV=test $(MIX) test --warnings-as-errors

package-check:
	MIX_ENV=test $(MIX) run --no-compile --no-start scripts/package_check.exs

bench: bootstrap
	@mkdir -p _build
	MIX_ENV=prod $(MIX) run benches/run.exs | tee _build/bench-latest.md

clean:
	$(MIX) clean
	cargo clean
