# Herald's build. `make run` and `make test` are the whole set-up.
SHELL := /bin/bash
GO    ?= go
BIN   := bin
# herald version prints the commit and build date (GOFLAGS may turn off Go's
# own VCS stamping, so they are passed explicitly).
LDFLAGS := -X main.commit=$(shell git rev-parse --short=12 HEAD 2>/dev/null)$(shell git diff --quiet HEAD 2>/dev/null || echo +modified) -X main.buildDate=$(shell date -u +%Y-%m-%dT%H:%M:%SZ)
# Every main package under plugins/ becomes bin/plugins/<name>.
PLUGIN_DIRS := $(patsubst %/main.go,%,$(wildcard plugins/*/main.go))
EXAMPLE_PLUGIN_DIRS := $(patsubst %/main.go,%,$(wildcard examples/*-plugin/main.go))
FUZZTIME ?= 5s

.PHONY: all build run demo test vet unit fuzz-seed fuzz bench bench-documents bench-plugin bench-go bench-filter soak proto clean help

all: build

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-13s %s\n", $$1, $$2}'

build: ## build herald and every plugin into bin/
	@mkdir -p $(BIN)/plugins
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/herald ./cmd/herald
	@for d in $(PLUGIN_DIRS) $(EXAMPLE_PLUGIN_DIRS); do \
		name=$$(basename $$d); name=$${name%-plugin}; \
		echo "$(GO) build -o $(BIN)/plugins/$$name ./$$d"; \
		$(GO) build -o $(BIN)/plugins/$$name ./$$d || exit 1; \
	done

run: build ## build, then serve config.hcl on 127.0.0.1:7512
	$(BIN)/herald serve -config config.hcl

# The demo page (examples/web) on http://$(DEMO_LISTEN) (localhost:8080, an
# origin the dev config allows), against the herald serving config.hcl: the
# one already running (make run), or one it starts; Ctrl-C stops both.
DEMO_LISTEN ?= localhost:8080
demo: build ## the demo page on http://localhost:8080 (DEMO_LISTEN=host:port), with herald
	$(GO) run ./examples/web -config config.hcl -listen $(DEMO_LISTEN) -herald $(BIN)/herald

test: vet unit fuzz-seed ## vet and staticcheck, every test with -race, and a short run of every fuzz target

# go vet, then staticcheck (pinned by go.mod's tool line): unused code,
# deprecated calls and suspicious constructs fail the run.
vet:
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

# Every test with -race. go test's JSON goes through internal/testreport,
# which prints what a plain go test prints (failures in full) and then lists
# every skipped test with its reason: without node or Chromium, the
# Koncorde, JavaScript client and browser tests skip, and the run says so.
# pipefail keeps go test's exit status. PKGS narrows the run. The
# nats-server that internal/natstest runs for clusters is built first, once,
# rather than by each test package that needs it, in the middle of the run.
PKGS ?= ./...
unit:
	@set -o pipefail; $(GO) build -o $(BIN)/.testreport ./internal/testreport && \
	$(GO) tool -n nats-server >/dev/null && \
	$(GO) test -race -count=1 -timeout 15m -json $(PKGS) | $(BIN)/.testreport

# Each fuzz target runs for FUZZTIME beyond its seed corpus. A crash writes
# its input under testdata/fuzz and fails the run; go test's "context
# deadline exceeded" without such an input (the time ran out while a worker
# was still busy) is reported and does not.
fuzz-seed:
	@set -e; log=$$(mktemp); trap 'rm -f "$$log"' EXIT; \
	for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "fuzz $$pkg $$f ($(FUZZTIME))"; \
			if ! $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg > "$$log" 2>&1; then \
				if grep -q 'Failing input written' "$$log" || ! grep -q 'context deadline exceeded' "$$log"; then \
					cat "$$log"; exit 1; \
				fi; \
				echo "  (stopped at the time limit while an input was running: no failure)"; \
			fi; \
		done; \
	done

fuzz: ## fuzz every target for a minute each
	$(MAKE) fuzz-seed FUZZTIME=1m

bench: ## the standard load scenarios against a real herald (cmd/herald-bench), the cluster comparison, then the documents and plugin-path ones
	bash cmd/herald-bench/bench.sh
	CLUSTER=1 bash cmd/herald-bench/bench.sh
	bash cmd/documents-bench/bench.sh
	bash cmd/plugin-bench/bench.sh

.PHONY: bench-cluster
bench-cluster: ## three herald nodes on one NATS JetStream against one memory-broker node, same scenarios (CLUSTER_SCENARIOS, CLUSTER_DURATION, SPLIT)
	CLUSTER=1 bash cmd/herald-bench/bench.sh

.PHONY: bench-pair
bench-pair: ## herald and Centrifugo v6.9.1 in one run, same scenarios and generator, herald's figures as ratios (PAIR_SCENARIOS, PAIR_DURATION; builds bin/centrifugo if missing)
	bash cmd/herald-bench/pair.sh

bench-documents: ## the documents plugin end to end: 10,000 rooms, 1,000 clients, a write stream (cmd/documents-bench)
	bash cmd/documents-bench/bench.sh

bench-plugin: ## a plugin's emits delivered to WebSocket clients through herald, beside the recorder figure (cmd/plugin-bench)
	bash cmd/plugin-bench/bench.sh

bench-go: ## Go benchmarks of the hot paths
	$(GO) test -run '^$$' -bench . -benchmem ./core/...

bench-filter: ## the filter engine against Koncorde, side by side
	bash cmd/filterbench/bench.sh

# Not part of `make test` nor of CI: it runs for ten minutes with 10,000
# connections. SOAK_ARGS shortens it, e.g.
# make soak SOAK_ARGS="-conns 300 -duration 60s -interval 10s -kill-every 20s"
soak: ## soak herald under churn, publishes and plugin kills; says whether RSS, goroutines, files stay flat
	@mkdir -p $(BIN)/soak
	$(GO) build -o $(BIN)/herald ./cmd/herald
	$(GO) build -o $(BIN)/soak/tester ./internal/testplugins/tester
	$(GO) build -o $(BIN)/soak/herald-soak ./cmd/herald-soak
	$(BIN)/soak/herald-soak -herald $(BIN)/herald -plugin $(BIN)/soak/tester $(SOAK_ARGS)

proto: ## regenerate the plugin protocol's Go code (needs protoc)
	$(MAKE) -f sdk/proto/proto.mk

clean:
	rm -rf $(BIN)
