# Hotpath: the two quick-start commands are `make demo` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MIX := mix

.PHONY: help bootstrap bootstrap-e2e demo test test-rust test-elixir package-check e2e nif \
	test-modern test-latest format bench clean

help:
	@echo "make demo        - set up (scripts/bootstrap), build, run the live demo (mix hotpath.demo)"
	@echo "make test        - set up, then everything CI checks (.ci/run): the host lane"
	@echo "                   (Rust, ExUnit, package check, e2e) and make test-modern"
	@echo "make test-modern - the Elixir checks on Debian trixie (OTP 27, Elixir 1.18), in CI"
	@echo "make test-latest - the same on Debian sid (newest OTP, Elixir, rustc), not in CI"
	@echo "make format      - mix format with Elixir 1.18 (the formatter CI checks)"
	@echo "make e2e         - headless Chromium checks the demo dashboard under load"
	@echo "make bench       - run every benches/*.exs and print the tables"

bootstrap:
	@scripts/bootstrap

# The browser test also needs Debian's chromium and chromium-driver.
bootstrap-e2e:
	@HOTPATH_BOOTSTRAP_EXTRA="chromium chromium-driver $${HOTPATH_BOOTSTRAP_EXTRA:-}" scripts/bootstrap

demo: bootstrap
	$(MIX) hotpath.demo

test: bootstrap bootstrap-e2e test-rust test-elixir package-check e2e test-modern

test-rust:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
	cargo test --workspace --locked

# The host lane (Debian bookworm: OTP 25, Elixir 1.14). `mix format --check-formatted` runs in
# the trixie lane only: the formatters of 1.14 and 1.18 disagree on some layouts.
test-elixir:
	MIX_ENV=test $(MIX) compile --force --warnings-as-errors
	MIX_ENV=test $(MIX) test --warnings-as-errors

# Screenshot: _build/e2e/dashboard.png
e2e: bootstrap-e2e
	MIX_ENV=test $(MIX) test --only e2e

package-check:
	MIX_ENV=test $(MIX) run --no-compile --no-start scripts/package_check.exs

# The release NIF built on the host, which the Debian lanes install with HOTPATH_NIF_PATH. Their
# test suites call the debug NIFs of the `bench` feature; the package never enables it.
nif:
	cd native/hotpath_nif && cargo build --release --locked --features bench --target-dir ../../target

# Debian roots are cached in ~/.cache/hotpath/debian (scripts/debian_root) and rebuilt when
# missing. Both lanes need root.
test-modern: nif
	HOTPATH_LANE_FORMAT=1 scripts/debian_lane trixie

# The formatter is pinned to Elixir 1.18 (the trixie lane checks it).
format:
	scripts/debian_lane trixie mix format

test-latest:
	cargo fetch --locked
	scripts/debian_lane sid

bench: bootstrap
	@mkdir -p _build
	HOTPATH_CARGO_FEATURES=bench MIX_ENV=prod $(MIX) run benches/run.exs | tee _build/bench-latest.md

clean:
	$(MIX) clean
	cargo clean
