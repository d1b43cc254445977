# sessionkit: `make run` starts the example server, `make test` runs every test.
GO ?= go
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
FUZZTIME ?= 20s

.PHONY: run test bench load fuzz lint tidy-check verify

# The example is a module of its own (example/go.mod: it serves /metrics
# through the Prometheus adapter), so it runs from its directory.
run:
	cd example && $(GO) run .

# The Prometheus adapter and the example are modules of their own (so that
# the core's go.mod stays free of Prometheus): their tests run from their
# directories.
test:
	$(GO) test -race -count=1 ./...
	cd prometheus && $(GO) test -race -count=1 ./...
	cd example && $(GO) test -race -count=1 ./...

# The comparison suite (internal/bench): sessionkit, scs and gorilla/sessions
# on real redis-servers it starts, then one "ratio" line per target.
# Each benchmark runs in 3 interleaved rounds (-rounds 3: sessionkit, scs,
# gorilla, sessionkit, ...; the repeats print as name#01, name#02), 500ms
# each; the ratios use the medians. BenchmarkCluster compares a read and a
# login on a 3-master Redis Cluster with the same on one server. The whole
# run takes about two minutes on 2 cores.
# Then the listing of a user's sessions with 0 and 100,000 other sessions in
# Redis (redisstore.BenchmarkUserSessions): the time must not grow; and what
# one user with 100,000 sessions costs (redisstore.BenchmarkHeavyUser); and
# a read with the Prometheus metrics on next to off (prometheus.BenchmarkRead):
# the extra allocations (must be 0) and the time ratio (at most 1.05).
bench:
	$(GO) test -run '^$$' -bench . -benchtime 500ms -count 1 ./internal/bench -rounds 3
	$(GO) test -run '^$$' -bench '^BenchmarkUserSessions$$' -benchtime 2000x ./redisstore
	$(GO) test -run '^$$' -bench '^BenchmarkHeavyUser$$' -benchtime 10x ./redisstore
	cd prometheus && $(GO) test -run '^$$' -bench '^BenchmarkRead$$' -benchtime 500ms -count 1 . -rounds 3

# The HTTP load test (example/load_test.go): the example server and an scs
# twin of its /api/me, on loopback listeners over one real redis-server it
# starts, each driven by 64 workers on 64 keep-alive connections for 10s
# after a 1.5s warm-up, in 2 interleaved rounds; one "load" line per
# contender and round (rps, p50, p99, max, errors, Redis commands per
# request). About a minute. Options go in LOADFLAGS, for example
# LOADFLAGS='-load.duration 5s -load.rounds 3'.
load:
	cd example && $(GO) test -run '^$$' -bench '^BenchmarkLoad$$' -benchtime 1x . $(LOADFLAGS)

# Each fuzz target runs for FUZZTIME.
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(FUZZTIME) ./session
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./session
	$(GO) test -run '^$$' -fuzz '^FuzzValue$$' -fuzztime $(FUZZTIME) ./session
	$(GO) test -run '^$$' -fuzz '^FuzzFromEnv$$' -fuzztime $(FUZZTIME) ./session
	$(GO) test -run '^$$' -fuzz '^FuzzParseURL$$' -fuzztime $(FUZZTIME) ./redisstore

lint:
	$(GO) vet ./...
	cd prometheus && $(GO) vet ./...
	cd example && $(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	cd prometheus && $(GO) run $(STATICCHECK) ./...
	cd example && $(GO) run $(STATICCHECK) ./...
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt would change the files above"; exit 1; }

tidy-check:
	$(GO) mod tidy -diff
	cd prometheus && $(GO) mod tidy -diff
	cd example && $(GO) mod tidy -diff

verify: lint tidy-check test fuzz bench
