# smelt's policy: every target here is what CI and developers run.
GO        ?= go
SMELT_MODELS ?= $(abspath ../shared/models)
FUZZTIME  ?= 10s
BIN       := bin/smelt
LDFLAGS   := -s -w -buildid=
export SMELT_MODELS
export CGO_ENABLED ?= 0

.PHONY: build test test-large measure-prune test-race check fuzz bench demo golden generate check-generate lint-arch clean

build:
	$(GO) build -trimpath -buildvcs=false -ldflags='$(LDFLAGS)' -o $(BIN) ./cmd/smelt

test: build
	$(GO) test -count=1 -timeout 25m ./...

# The slow reference checks: full-text perplexity of stories260K (stride 256,
# fp16) and ref29m (strides 512 and 256) against the torch numbers, with the
# AVX2/FMA kernels (about 16 min on 2 idle cores). CI runs it after make test.
test-large:
	GOEXPERIMENT=simd $(GO) test -tags large -count=1 -timeout 120m -v -run 'Large|Ref29m' ./internal/exec/

# Pruning numbers on ref29m (every method, held-out perplexity; ~20 min).
measure-prune:
	$(GO) test -tags large -count=1 -timeout 2h -v -run TestRef29mPruning ./internal/prunerun

test-race:
	CGO_ENABLED=1 $(GO) test -race -count=1 ./...

check: lint-arch
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1)
	@if command -v staticcheck >/dev/null 2>&1; then staticcheck ./...; \
	elif [ -x "$$($(GO) env GOPATH)/bin/staticcheck" ]; then "$$($(GO) env GOPATH)/bin/staticcheck" ./...; \
	else echo "staticcheck not installed (go install honnef.co/go/tools/cmd/staticcheck@v0.7.0); skipped"; fi

# Each fuzz target runs for FUZZTIME.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "fuzz $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; done

# Benchmarks, compared with benchstat. BENCH and BENCHPKGS narrow the run;
# BENCHCOUNT repeats. The large-data benchmarks (1 GiB shard write, 2.2 GB
# sharded open) honour -benchtime; run them alone with BENCHTIME=1x.
BENCH      ?= .
BENCHPKGS  ?= ./...
BENCHCOUNT ?= 5
BENCHTIME  ?= 1s
bench:
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -benchtime $(BENCHTIME) -count=$(BENCHCOUNT) $(BENCHPKGS) | tee bench.out

# Rewrite golden files (every package whose tests take -update).
GOLDENPKGS = $(sort $(dir $(shell grep -rl '"update", false' --include=*_test.go . )))
golden:
	$(GO) test -count=1 $(GOLDENPKGS) -update

generate:
	$(GO) generate ./...

check-generate: generate
	@git diff --exit-code || (echo "generated files are stale: run make generate"; exit 1)

# Architecture rules: pure packages touch no OS/network; deterministic
# packages read no clock and no global rand; only cmd/ imports cobra.
lint-arch:
	@! grep -rnE '"(os|net|net/http|os/exec)"' --include='*.go' --exclude='*_test.go' quantize prune wgsl 2>/dev/null | grep -v '^$$' || (echo "lint-arch: os/net import in a pure package"; exit 1)
	@! grep -rnE 'time\.Now|"math/rand"' --include='*.go' --exclude='*_test.go' shard manifest 2>/dev/null || (echo "lint-arch: clock or global rand in shard/ or manifest/"; exit 1)
	@! grep -rln 'github.com/spf13/cobra' --include='*.go' . | grep -v '^./cmd/' || (echo "lint-arch: cobra imported outside cmd/"; exit 1)

# The main job on the embedded default model: keygen, build the demo recipe
# (GPTQ INT4, kernels, runtime, signed, accuracy gates), verify, inspect, and
# generate with the Go executor and with the JS runtime on WebGPU (Dawn).
demo: build
	BIN=$(BIN) ./scripts/demo.sh

clean:
	rm -rf bin bench.out
