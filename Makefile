# tickrelay — see README.md. `make test` and the Go targets need only Go (and make);
# the web targets (proto-ts*, ts-test, demo, e2e) also need Node 20 and `npm ci`.
GO        ?= go
BUF       := $(GO) run github.com/bufbuild/buf/cmd/buf@v1.75.0
STATICCHECK := $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2
ERRCHECK  := $(GO) run github.com/kisielk/errcheck@v1.10.0
FUZZTIME  ?= 10s
PKGS      := ./...

.PHONY: run build test vet lint proto proto-check fuzz bench bench-quick clean proto-ts proto-ts-check ts-test demo demo-build demo-screenshot e2e

## run: start a relay on the embedded defaults (ws://0.0.0.0:7600/ws)
run:
	$(GO) run .

## build: build the relay, client-sim and the baseline relay into bin/
build:
	$(GO) build -o bin/tickrelay .
	$(GO) build -o bin/client-sim ./client-sim
	$(GO) build -o bin/baseline ./bench/baseline

## test: formatting, vet and lint, generated-code freshness, then every test with -race,
## then the allocation budgets without it (the race detector makes sync.Pool drop items, so
## those tests skip under -race)
test: vet proto-check
	$(GO) test -race -timeout 15m $(PKGS)
	$(GO) test -count=1 -run 'Allocations$$' -timeout 5m ./room/

vet:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	@$(MAKE) --no-print-directory lint

## lint: staticcheck, and errcheck on non-test code (.errcheck-excludes lists what may go unchecked)
lint:
	$(STATICCHECK) $(PKGS)
	$(ERRCHECK) -ignoretests -exclude .errcheck-excludes $(PKGS)

## proto: lint the protocol and regenerate the committed Go code
proto:
	$(BUF) lint
	$(BUF) generate

## proto-check: fail when the committed generated code is stale
proto-check:
	@tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && \
	  $(BUF) lint && $(BUF) generate --output $$tmp && \
	  diff -r -x '*.proto' $$tmp/proto/tickrelay proto/tickrelay && \
	  echo "proto: generated code is up to date"

## proto-ts: regenerate the TypeScript SDK's code (clients/ts/src/gen and closes_gen.ts)
NPX := npx --no-install
proto-ts:
	$(NPX) buf generate --template buf.gen.ts.yaml --path proto/tickrelay/v1
	$(GO) run ./clients/ts/closesgen

## proto-ts-check: fail when the TypeScript SDK's generated code is stale
proto-ts-check:
	@tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && \
	  $(NPX) buf generate --template buf.gen.ts.yaml --path proto/tickrelay/v1 --output $$tmp && \
	  diff -r $$tmp/clients/ts/src/gen clients/ts/src/gen && \
	  $(GO) run ./clients/ts/closesgen -o $$tmp/closes_gen.ts && \
	  diff $$tmp/closes_gen.ts clients/ts/src/closes_gen.ts && \
	  echo "proto-ts: generated code is up to date"

## ts-test: the TypeScript SDK's tests (node --test) against a relay built from here
ts-test: proto-ts-check
	npm test -w clients/ts

## demo-build: the SDK and the demo page's bundle (demo/public/app.js)
demo-build:
	npm run build -w clients/ts
	npm run build -w demo

## demo: a relay and the demo page: open http://127.0.0.1:8080/ in two tabs (Ctrl-C stops both)
DEMO_LISTEN ?= 127.0.0.1:8080
DEMO_RELAY  ?= 127.0.0.1:7600
demo: demo-build
	$(GO) build -o bin/tickrelay .
	$(GO) build -o bin/demo-serve ./demo/serve
	@bin/tickrelay -listen $(DEMO_RELAY) -admin-listen off & relay=$$!; \
	  trap 'kill $$relay 2>/dev/null; wait $$relay 2>/dev/null' EXIT INT TERM; \
	  bin/demo-serve -listen $(DEMO_LISTEN) -dir demo/public -relay ws://$(DEMO_RELAY)/ws

## demo-screenshot: two demo pages side by side in headless Chromium -> demo/screenshot.png
demo-screenshot: demo-build
	npm run screenshot -w e2e

## e2e: browsers and Node through nginx (TLS) to the relay: needs chromium, nginx, openssl
e2e: demo-build
	npm test -w e2e

## fuzz: run every fuzz target for FUZZTIME each
fuzz:
	@scripts/fuzz-all.sh $(FUZZTIME)

## bench: the full benchmark suite (writes bench/RESULTS.md)
bench:
	$(GO) run ./bench/harness -mode full

## bench-quick: a short run for development (under 2 minutes)
bench-quick:
	$(GO) run ./bench/harness -mode quick

clean:
	rm -rf bin
