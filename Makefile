# sluice — common tasks. `make run` and `make test` are the two that matter.
GO          ?= go
BIN         := bin/sluice
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -s -w -X main.version=$(VERSION)
STATICCHECK_VERSION := v0.8.2
GOBIN       := $(shell $(GO) env GOPATH)/bin
FUZZTIME    ?= 30s

.PHONY: all build run test fmt-check vet staticcheck race allocs bench-smoke soak fuzz bench bench-quick benchstat profile clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/sluice

## run: build sluice and serve the demo (3 upstreams on loopback) on 127.0.0.1:8080
run: build
	./$(BIN) demo

## test: gofmt check, go vet, staticcheck, every test with the race detector,
## then the zero-allocation tests (built only without -race: the detector
## allocates) and every benchmark once (so none rots unnoticed)
test: fmt-check vet staticcheck race allocs bench-smoke

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

staticcheck:
	@test -x $(GOBIN)/staticcheck || $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	$(GOBIN)/staticcheck ./...

race:
	$(GO) test -race -count=1 -timeout 15m ./...

allocs:
	$(GO) test -count=1 -timeout 5m -run 'Alloc' ./...

## soak: restarts, upgrades, workers and reloads of the real binary under
## load, every request counted (build tag soak; not part of make test)
soak:
	$(GO) vet -tags soak ./cmd/sluice
	$(GO) test -race -tags soak -count=1 -timeout 10m -run 'Soak' ./cmd/sluice

bench-smoke:
	$(GO) test -count=1 -timeout 5m -run '^$$' -bench . -benchtime 1x ./...

## fuzz: run every fuzz target for FUZZTIME each. Go 1.26's fuzz runner
## can end a run with "context deadline exceeded" and no failing input
## (golang/go#75804, fixed in Go 1.27): such a run is tried once more;
## a failing input, or a second failure, stops it.
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$t"; \
	    out=$$($(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg 2>&1); rc=$$?; echo "$$out"; \
	    if [ $$rc -ne 0 ]; then \
	      case "$$out" in *"Failing input written"*) exit 1 ;; *"context deadline exceeded"*) ;; *) exit 1 ;; esac; \
	      echo "== $$pkg $$t again (the fuzz runner's deadline race, no failing input)"; \
	      $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	    fi; \
	  done; \
	done

## bench: side-by-side load benchmark against nginx, HAProxy, Caddy (bench/README.md)
bench:
	bench/run.sh

bench-quick:
	bench/run.sh --quick

## benchstat: Go micro-benchmarks, 10 runs, into bench/work/new.txt; compare with benchstat
benchstat:
	@mkdir -p bench/work
	$(GO) test -run '^$$' -bench 'BenchmarkProxy|BenchmarkPick' -benchmem -count 10 ./proxy/ ./balancer/ | tee bench/work/new.txt
	@test -x $(GOBIN)/benchstat || $(GO) install golang.org/x/perf/cmd/benchstat@latest
	@if [ -f bench/work/old.txt ]; then $(GOBIN)/benchstat bench/work/old.txt bench/work/new.txt; \
	 else echo "no bench/work/old.txt: check out the base commit, run make benchstat, mv bench/work/new.txt bench/work/old.txt"; fi

## profile: CPU and allocation profiles of sluice under wrk load
profile:
	bench/profile.sh

clean:
	rm -rf bin bench/work
