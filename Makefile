# meshlite — see README.md. Every target works on a fresh Debian machine as root.
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.0.0-dev)
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
DATE ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
VPKG := github.com/meshlite/meshlite/cmd/internal/version
LDFLAGS := -s -w -X $(VPKG).Version=$(VERSION) -X $(VPKG).GitCommit=$(COMMIT) -X $(VPKG).BuildDate=$(DATE)
# Tools the tests need; installed with apt-get when missing (CI runs as root on Debian).
APT_TOOLS := iptables:iptables ip:iproute2 openssl:openssl
TEST_FLAGS ?= -race -count=1 -timeout 20m

.PHONY: all build test bench demo lint clean deps kube-deps images

all: build

build:
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/pilot-agent ./cmd/pilot-agent
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/istiod-lite ./cmd/istiod-lite
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/ ./examples/greeter ./examples/client ./examples/demo

# kube-deps installs etcd and builds a real kube-apiserver once per machine
# (cached outside the repo) for test/kube; when that fails, those scenarios
# skip with a message saying so, and the rest of the suite still runs.
kube-deps:
	@test/kube/setup.sh >/dev/null || echo "kube-deps: no kube-apiserver; the test/kube scenarios will skip (see docs/kubernetes.md)"

# deps installs the system tools the tests and the demo use, only when missing.
deps:
	@missing=""; for pair in $(APT_TOOLS); do cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing tools:$$missing (install them, or run as root on Debian)"; fi; \
	fi

# Packages whose tests create network namespaces and run real iptables; they
# run one package at a time so xtables locks and netns setup never race.
NETNS_PKGS := ./iptables/... ./test/netns/... ./test/kube/...

test: deps kube-deps build
	MESHLITE_BIN=$(BIN) $(GO) test $(TEST_FLAGS) $$($(GO) list ./... | grep -v -e '/iptables$$' -e '/test/netns$$' -e '/test/kube$$')
	MESHLITE_BIN=$(BIN) $(GO) test $(TEST_FLAGS) -p 1 $(NETNS_PKGS)

# bench prints one figure per line: the micro-benchmarks worth reporting, the
# iptables apply benchmark (root only), then the load programs, each once:
# xdsload (1000 proxyless clients), a 30 s soak (1000 sidecars, 200 CSRs) and
# the agent footprint with its floor program. About 2 minutes; docs/performance.md has the figures.
BENCH_MICRO := ^(BenchmarkEnvoy|BenchmarkValidate|BenchmarkLoadAndBuild|BenchmarkReloadOneFileChanged|BenchmarkGenerate1000Proxies|BenchmarkCreateCertificate|BenchmarkStartToFirstCert|BenchmarkMergeScrape)$$
BENCH_MICRO_PKGS := ./bootstrap ./istiod-lite/config ./istiod-lite/xds ./istiod-lite/ca ./sds/cache ./agent/status
BENCH_COUNT ?= 1
SOAK_DURATION ?= 30s
# Turns "BenchmarkX-2  N  v1 u1  v2 u2" into one "BenchmarkX: v u" line per
# figure, and drops go test's package chatter; anything else (a load program's
# figures, failures) passes through.
BENCH_FMT := awk '/^Benchmark/ { n=$$1; sub(/-[0-9]+$$/, "", n); for (i=3; i<NF; i+=2) printf "%s: %s %s\n", n, $$i, $$(i+1); fflush(); next } /^(goos|goarch|pkg|cpu|PASS)/ || /^ok[ \t]/ { next } { print; fflush() }'
XDSLOAD_EDITS ?= 10
BENCH_ONCE := -run '^$$' -benchtime 1x -timeout 15m

bench: build
	@set -o pipefail; echo "== micro-benchmarks"; \
	$(GO) test -run '^$$' -bench '$(BENCH_MICRO)' -benchmem -count $(BENCH_COUNT) $(BENCH_MICRO_PKGS) | $(BENCH_FMT)
	@set -o pipefail; echo "== iptables apply (fresh network namespace, -p 1)"; \
	if [ "$$(id -u)" = 0 ]; then \
	  $(GO) test -p 1 -run '^$$' -bench '^BenchmarkApply$$' -benchmem ./iptables | $(BENCH_FMT); \
	else echo "iptables apply: skipped (needs root)"; fi
	@set -o pipefail; echo "== xdsload: 1000 proxyless clients, VirtualService edits"; \
	XDSLOAD_EDITS=$(XDSLOAD_EDITS) MESHLITE_BIN=$(BIN) $(GO) test $(BENCH_ONCE) -bench '^BenchmarkXDSLoad$$' ./test/bench/xdsload | grep -v '^Benchmark' | $(BENCH_FMT)
	@set -o pipefail; echo "== soak: 1000 sidecars, 200 CSRs, a change every 5 s for $(SOAK_DURATION) (full run: go run ./test/bench/soak)"; \
	SOAK_DURATION=$(SOAK_DURATION) MESHLITE_BIN=$(BIN) $(GO) test $(BENCH_ONCE) -bench '^BenchmarkSoak$$' ./test/bench/soak | grep -v '^Benchmark' | $(BENCH_FMT)
	@set -o pipefail; echo "== agent footprint"; \
	if [ -d test/bench/agentfootprint ]; then \
	  MESHLITE_BIN=$(BIN) $(GO) test $(BENCH_ONCE) -bench '^BenchmarkAgentFootprint$$' ./test/bench/agentfootprint | grep -v '^Benchmark' | $(BENCH_FMT); \
	else echo "agent footprint: test/bench/agentfootprint is not in this tree"; fi

demo: build
	$(BIN)/demo --bin $(BIN) --mesh examples/mesh

lint:
	$(GO) vet ./...
	@command -v staticcheck >/dev/null 2>&1 || $(GO) install honnef.co/go/tools/cmd/staticcheck@latest
	"$$(go env GOPATH)/bin/staticcheck" ./...

clean:
	rm -rf $(BIN)
	$(GO) clean -testcache

# images builds the proxy and istiod-lite images with whichever engine works here.
IMAGE_REPO ?= meshlite
IMAGE_TAG ?= $(VERSION)
images:
	@engine=""; \
	if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then engine="docker build"; \
	elif command -v podman >/dev/null 2>&1; then engine="podman build"; \
	elif command -v buildah >/dev/null 2>&1; then engine="buildah bud"; fi; \
	if [ -z "$$engine" ]; then \
	  echo "make images: no container engine found (need a running docker daemon, podman or buildah)."; \
	  echo "The Dockerfiles are still checked by 'go test ./images/'."; exit 1; fi; \
	echo "building with $$engine"; \
	$$engine --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) -t $(IMAGE_REPO)/proxyv2:$(IMAGE_TAG) -f Dockerfile . && \
	$$engine --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) -t $(IMAGE_REPO)/istiod-lite:$(IMAGE_TAG) -f images/istiod-lite/Dockerfile .
