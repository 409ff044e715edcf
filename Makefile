# Entry points. Quick start on a fresh Debian 12 machine, as root:
#   make demo    # a NAT director in network namespaces, end to end
#   make test    # fmt, clippy, unit + DPDK + netns end-to-end tests
# Both install what they need first (make deps), only when it is missing.

SHELL := /bin/bash
CARGO ?= cargo

.PHONY: all deps build demo test e2e soak bench bench-quick bench-tools fmt lint clean fuzz fuzz-quick

all: build

deps:
	@bash deploy/deps.sh

build: deps
	$(CARGO) build --release -p dpvs-control

demo: deps
	bash deploy/demo.sh

# e2e_* tests need root; they skip with a printed reason without it, and fail
# under CI=true instead.
test: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) test --workspace
	bash fuzz/run.sh quick $(TEST_FUZZ_SECONDS)

# Every fuzz target briefly (FUZZ_SECONDS each, default 20, two at a time),
# from the committed seeds and what earlier runs found (docs/fuzzing.md).
FUZZ_SECONDS ?= 20
# make test gives each target less: its build takes most of the time.
TEST_FUZZ_SECONDS ?= 8
fuzz-quick: deps
	bash fuzz/run.sh quick $(FUZZ_SECONDS)

# One target for long: make fuzz TARGET=pipeline_seq SECONDS=14400
# (TARGET=all runs each in turn). Crashes land in fuzz/artifacts/TARGET/.
TARGET ?= all
SECONDS ?= 600
fuzz: deps
	bash fuzz/run.sh run $(TARGET) $(SECONDS)

# The soak test alone, longer (docs/testing.md): make soak SECS=600
soak: deps
	DPVS_SOAK_SECS=$(or $(SECS),600) $(CARGO) test -p dpvs-control --test e2e_soak -- --nocapture

# Only the network-namespace end-to-end tests.
e2e: deps
	$(CARGO) test -p dpvs-control --test 'e2e_*'

# Benchmarks (docs/benchmarks.md). The testpmd baseline needs dpdk-testpmd
# (Debian dpdk-dev); it is installed here when missing.
bench-tools:
	@command -v dpdk-testpmd >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y dpdk-dev >/dev/null

# Everything, a few minutes: testpmd baseline, memory, Maglev, the in-process
# pipeline, `dpvs-bench gen` against dpvsd over memif (two processes) and the
# namespace comparison with the kernel (deploy/netns/compare.sh, root);
# writes docs/bench/bench.json, bench.md and the SVG plots.
bench: deps bench-tools
	$(CARGO) build --release -p dpvs-control -p dpvs-bench
	./target/release/dpvs-bench run --out docs/bench $(ARGS)

# Under two minutes (once built); prints the table and ends with one `bench:`
# line. Includes a short gen run against dpvsd over memif, not the netns one.
bench-quick: deps bench-tools
	$(CARGO) build --release -p dpvs-control -p dpvs-bench
	./target/release/dpvs-bench run --quick $(ARGS)

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@if command -v shellcheck >/dev/null; then \
	  shellcheck deploy/*.sh deploy/netns/*.sh .ci/run && echo "shellcheck: ok"; \
	else echo "shellcheck not installed: skipped shell lint"; fi

clean:
	-bash deploy/netns/topology.sh down dpvsdemo- >/dev/null 2>&1
	$(CARGO) clean
	rm -rf fuzz/target
