# vncedge — build, test, benchmark, fuzz.
# `make test` installs what the real-stack tests need (as root) and runs everything.

GO        ?= go
PKGS      ?= ./...
BIN       ?= bin/vncedge
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
FUZZTIME  ?= 20s
BENCHTIME ?= 1s
LISTEN    ?= 127.0.0.1:6080
TARGET    ?= tcp://127.0.0.1:5955

.PHONY: all build test test-short deps web jaeger bench bench-compare soak fuzz fuzz-smoke run run-xvnc run-sessions lint clean

all: build

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/vncedge

# deps installs the Debian packages the real-stack tests use (no-op when present).
deps:
	bash .ci/install-deps

# test: everything, the real-stack tests included (they skip only when a tool is missing,
# and deps makes sure none is). VNCEDGE_REQUIRE_REAL=1 turns those skips into failures.
# jaeger builds (or finds in the Go build cache) the Jaeger v2 binary the tracing
# tests run, from its own tools module. Cold: minutes and ~1.3 GB of modules; warm: seconds.
JAEGER_TOOL ?= tracing/jaegertool
jaeger:
	$(GO) -C $(JAEGER_TOOL) tool -n jaeger

# web installs the demo page's noVNC (npm @novnc/novnc, pinned in package-lock.json).
WEBDIR ?= cmd/vncedge/demo/web
web: $(WEBDIR)/node_modules/.package-lock.json
$(WEBDIR)/node_modules/.package-lock.json: $(WEBDIR)/package.json $(WEBDIR)/package-lock.json
	cd $(WEBDIR) && npm ci --no-audit --no-fund

test: deps web jaeger
	VNCEDGE_REQUIRE_REAL=1 $(GO) test -race -count=1 $(PKGS)
	$(GO) test -run '^$$' -bench . -benchtime=1x ./rfbparse/ ./proxy/... ./bench/...
	$(MAKE) fuzz-smoke

# test-short: unit tests only, no installs.
test-short:
	$(GO) test -short -count=1 $(PKGS)

bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./rfbparse/ ./proxy/... ./bench/...

# bench-compare runs the peer comparison (bench/cmd/vncbench): every workload
# against direct, a TCP relay, vncedge (tcp:// and ws:// via websockify), a
# gorilla/websocket proxy and websockify, each a separate process, plus
# vncedge recording (--record, a few cells, under $TMPDIR); RUNS runs, medians
# into docs/BENCHMARKS.md. Needs websockify (make deps). About 10 min at RUNS=3.
RUNS ?= 3
bench-compare: build deps
	$(GO) build -o bin/vncbench ./bench/cmd/vncbench
	$(GO) test -run '^$$' -bench 'Relay' -benchmem -count 3 ./bench/ > bin/micro-bench.txt; s=$$?; cat bin/micro-bench.txt; exit $$s
	ulimit -n $$(ulimit -Hn) && bin/vncbench compare -runs $(RUNS) -vncedge $(BIN) -micro bin/micro-bench.txt \
	  -out docs/BENCHMARKS.md -cmdline "make bench-compare RUNS=$(RUNS)"

# soak: vncsoak against bin/vncedge: 1,000 sessions moving checked data for 60 s, then
# 10,000 concurrent sessions (about 2 descriptors per session in vncedge and in vncsoak).
SOAK_SESSIONS   ?= 1000
SOAK_DURATION   ?= 60s
SOAK_CONCURRENT ?= 10000
soak: build
	$(GO) build -o bin/vncsoak ./bench/cmd/vncsoak
	ulimit -n $$(ulimit -Hn) && bin/vncsoak -sessions $(SOAK_SESSIONS) -duration $(SOAK_DURATION) -vncedge $(BIN)
	ulimit -n $$(ulimit -Hn) && bin/vncsoak -concurrent $(SOAK_CONCURRENT) -vncedge $(BIN)

# fuzz-smoke runs every fuzz target for FUZZTIME each (go test -fuzz takes one target at a time).
# A bare "context deadline exceeded" with no failing input is Go 1.26's own
# fuzztime race (golang/go#75804): .ci/fuzz-smoke reports it and goes on.
fuzz-smoke:
	GO=$(GO) FUZZTIME=$(FUZZTIME) bash .ci/fuzz-smoke

fuzz:
	$(MAKE) fuzz-smoke FUZZTIME=$(if $(filter 20s,$(FUZZTIME)),10m,$(FUZZTIME))

# run starts vncedge in front of its built-in demo VNC server; open the printed URL,
# press Take control and draw. run-xvnc does the same with a real Xvnc desktop on a free display.
run: build web
	$(BIN) demo --listen $(LISTEN) --log-format text

run-xvnc: build deps
	bash .ci/demo $(BIN) $(LISTEN)

# run-sessions: the platform flow of deploy/sessions.example.yaml (message channel, take
# control, clipboard over CDP) with a real Chromium on a real Xvnc desktop.
run-sessions: build deps
	bash .ci/demo-sessions $(BIN) $(LISTEN)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) tool staticcheck $(PKGS)

clean:
	rm -rf bin
