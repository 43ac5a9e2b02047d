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

bench: build
	MESHLITE_BIN=$(BIN) $(GO) test -run '^$$' -bench . -benchmem ./...

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
