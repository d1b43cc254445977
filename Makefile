# sessionkit: `make run` starts the example server, `make test` runs every test.
GO ?= go
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
FUZZTIME ?= 20s

.PHONY: run test bench fuzz lint tidy-check verify

run:
	$(GO) run ./example

test:
	$(GO) test -race -count=1 ./...

# The comparison suite (internal/bench): sessionkit, scs and gorilla/sessions
# on real redis-servers it starts, then one "ratio" line per target.
# Each benchmark runs in 3 interleaved rounds (-rounds 3: sessionkit, scs,
# gorilla, sessionkit, ...; the repeats print as name#01, name#02), 500ms
# each; the ratios use the medians. The whole run takes about 70 seconds on
# 2 cores.
bench:
	$(GO) test -run '^$$' -bench . -benchtime 500ms -count 1 ./internal/bench -rounds 3

# Each fuzz target runs for FUZZTIME.
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(FUZZTIME) ./session
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./session
	$(GO) test -run '^$$' -fuzz '^FuzzFromEnv$$' -fuzztime $(FUZZTIME) ./session
	$(GO) test -run '^$$' -fuzz '^FuzzParseURL$$' -fuzztime $(FUZZTIME) ./redisstore

lint:
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt would change the files above"; exit 1; }

tidy-check:
	$(GO) mod tidy -diff

verify: lint tidy-check test fuzz bench
