# coldharbor — build, test and demo. `make demo` and `make test` are the two
# commands a newcomer needs; both install what they need first.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
BIN := bin/coldharbor

# The real cosign CLI verifies what we write. Pinned; built once from the Go
# module proxy into a cache shared by every clone on this machine (~3.5 min).
COSIGN_VERSION := v2.6.5
TOOLS_DIR ?= $(HOME)/.cache/coldharbor/tools
COSIGN := $(TOOLS_DIR)/cosign-$(COSIGN_VERSION)/cosign
# cosign v3 writes sigstore bundles as OCI 1.1 referrers; tests sign upstream
# images with it and verify what import carries (~3.5 min, cached the same way).
COSIGN3_VERSION := v3.1.3
COSIGN3 := $(TOOLS_DIR)/cosign-$(COSIGN3_VERSION)/cosign
# crane pulls through Harbor and the serve gate in the tests and races coldharbor in `make bench`;
# pinned to the go-containerregistry version the module uses, cached like cosign.
CRANE_VERSION := v0.22.1
CRANE := $(TOOLS_DIR)/crane-$(CRANE_VERSION)/crane

DEMO_DIR ?= $(CURDIR)/.demo
TEST_TIMEOUT ?= 15m

.PHONY: all build test vet fmt-check nocgo deps tools demo clean bench

all: build

build: deps
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/coldharbor

# Installs, with apt-get, the system packages the build and tests need, only
# those missing; a no-op when all are present.
deps:
	@scripts/deps.sh

tools: $(COSIGN) $(COSIGN3) $(CRANE)

$(COSIGN):
	@echo "building cosign $(COSIGN_VERSION) (once; cached in $(TOOLS_DIR))"
	GOBIN=$(dir $(COSIGN)) $(GO) install github.com/sigstore/cosign/v2/cmd/cosign@$(COSIGN_VERSION)

$(COSIGN3):
	@echo "building cosign $(COSIGN3_VERSION) (once; cached in $(TOOLS_DIR))"
	GOBIN=$(dir $(COSIGN3)) $(GO) install github.com/sigstore/cosign/v3/cmd/cosign@$(COSIGN3_VERSION)

fmt-check:
	@bad=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$bad" ]; then echo "gofmt would change: $$bad"; exit 1; fi

vet:
	$(GO) vet ./...

test: deps tools fmt-check vet nocgo
	COLDHARBOR_COSIGN=$(COSIGN) COLDHARBOR_COSIGN3=$(COSIGN3) COLDHARBOR_CRANE=$(CRANE) $(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

# piv-go and crypto11 need cgo; a build without it must still work, with
# errors that say how to get YubiKey and PKCS#11 support.
nocgo:
	CGO_ENABLED=0 $(GO) build ./...
	CGO_ENABLED=0 $(GO) vet ./...
	CGO_ENABLED=0 $(GO) test -count=1 -run 'NoCgo|WithoutCgo' ./hsm

demo: build
	$(GO) build -o bin/demoenv ./internal/demoenv
	@scripts/demo.sh $(CURDIR)/$(BIN) $(CURDIR)/bin/demoenv $(DEMO_DIR) $(COSIGN)

clean:
	rm -rf bin $(DEMO_DIR)

# `make bench` compares coldharbor with crane on the same work in the same run
# (two loopback registries) and prints ratios; a measurement, not a test.
# BENCH_FLAGS passes flags through: make bench BENCH_FLAGS=-quick.
BENCH_FLAGS ?=

$(CRANE):
	@echo "building crane $(CRANE_VERSION) (once; cached in $(TOOLS_DIR))"
	GOBIN=$(dir $(CRANE)) $(GO) install github.com/google/go-containerregistry/cmd/crane@$(CRANE_VERSION)

bench: build $(CRANE)
	$(GO) build -o bin/bench ./internal/bench
	COLDHARBOR_CRANE=$(CRANE) bin/bench -coldharbor $(CURDIR)/$(BIN) $(BENCH_FLAGS)
