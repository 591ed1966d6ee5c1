# Hotpath: the two quick-start commands are `make demo` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MIX := mix

.PHONY: help bootstrap bootstrap-e2e demo test test-rust test-elixir package-check e2e bench clean

help:
	@echo "make demo    - set up (scripts/bootstrap), build, run the live demo (mix hotpath.demo)"
	@echo "make test    - set up, then everything CI checks (.ci/run), make e2e included"
	@echo "make e2e     - headless Chromium checks the demo dashboard under load"
	@echo "make bench   - run every benches/*.exs and print the tables"

bootstrap:
	@scripts/bootstrap

# The browser test also needs Debian's chromium and chromium-driver.
bootstrap-e2e:
	@HOTPATH_BOOTSTRAP_EXTRA="chromium chromium-driver $${HOTPATH_BOOTSTRAP_EXTRA:-}" scripts/bootstrap

demo: bootstrap
	$(MIX) hotpath.demo

test: bootstrap bootstrap-e2e test-rust test-elixir package-check e2e

test-rust:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	cargo test --workspace --locked

test-elixir:
	$(MIX) format --check-formatted
	MIX_ENV=test $(MIX) compile --force --warnings-as-errors
	MIX_ENV=test $(MIX) test --warnings-as-errors

# Screenshot: _build/e2e/dashboard.png
e2e: bootstrap-e2e
	MIX_ENV=test $(MIX) test --only e2e

package-check:
	MIX_ENV=test $(MIX) run --no-compile --no-start scripts/package_check.exs

bench: bootstrap
	@mkdir -p _build
	MIX_ENV=prod $(MIX) run benches/run.exs | tee _build/bench-latest.md

clean:
	$(MIX) clean
	cargo clean
