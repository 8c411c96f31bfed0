# clb: the commands a person or CI runs. `make run` and `make test` are the two the
# README promises to work on a bare machine.

CARGO ?= cargo
# Front-end port of the demo load balancer (`make run PORT=9000`) and the port its
# demo instances listen on at 127.0.0.2-4.
PORT ?= 8080
INSTANCE_PORT ?= 8081
# Seconds each fuzz target runs in `make fuzz`.
FUZZ_SECONDS ?= 30

.PHONY: build run cluster test lint fuzz bench bench-probes bench-slow

build:
	$(CARGO) build --release

run: build
	PORT=$(PORT) INSTANCE_PORT=$(INSTANCE_PORT) scripts/demo.sh

# etcd, three clb nodes on 127.0.1.1/127.0.2.1/127.0.3.1 and the demo instances
# (README "Running several nodes"); DNS_PORT=, API_PORT=, ETCD_PORT= move the ports.
cluster: build
	PORT=$(PORT) INSTANCE_PORT=$(INSTANCE_PORT) scripts/cluster.sh

# Integration tests start the real binaries; each test picks its own ports, so the
# default test threads (one per core) are safe.
test:
	$(CARGO) build
	$(CARGO) test --no-fail-fast

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

# cargo-fuzz needs nightly; every target in fuzz/ runs for FUZZ_SECONDS. It starts from
# the committed corpus (fuzz/corpus/TARGET) and writes what it finds to fuzz/scratch/TARGET
# (ignored by git): a crash goes to fuzz/artifacts/, and becomes a corpus file by hand.
fuzz:
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	set -e; for target in $$($(CARGO) +nightly fuzz list); do \
		mkdir -p fuzz/scratch/$$target fuzz/corpus/$$target; \
		$(CARGO) +nightly fuzz run $$target fuzz/scratch/$$target fuzz/corpus/$$target \
			-- -max_total_time=$(FUZZ_SECONDS); \
	done

# clb against nginx and HAProxy on loopback (issues 5, 6 and 14): about 17 minutes, writes
# tests/bench/results.md. ROUNDS=, DURATION= (seconds per run), LOADS= (a subset) or
# QUICK=1 (about 2.5 minutes), SLOW_CLIENTS=0 (skip the slow-clients phase); see
# tests/bench/README.md.
bench:
	tests/bench/run.sh

# Health-probe cost: 1,000 instances every 5 s (issue 3); needs nginx, about 40 s.
bench-probes:
	tests/bench/probe_cost.sh

# Normal clients beside 5,000 slow-loris connections, clb against nginx and HAProxy, and
# the control row clb-sink (the slow clients sent where no proxy sees them; issues 7 and
# 14); about 2 minutes. PACE=paced spreads the slow clients' bytes over each 2 s.
bench-slow:
	tests/bench/slow_clients.sh
