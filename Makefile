# sessionkit: `make run` starts the example server, `make test` runs every
# test; bare `make` (or `make help`) lists the targets.
GO ?= go
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
FUZZTIME ?= 20s
# Where `make run` and the test targets put the binaries they build
# (gitignored).
BIN ?= bin
# The go test command line every test target runs, in each module.
GOTEST = $(GO) test -race -count=1 ./...
# Runs GOTEST in the five modules (the core, and prometheus/, example/,
# internal/bench and internal/scscompat, each with its own go.mod so that
# their dependencies stay out of the core's) and prints go test's usual package lines, the output
# of failing tests, and how many tests passed, failed and were skipped.
TESTSUMMARY = $(BIN)/testsummary -C . -C prometheus -C example -C internal/bench -C internal/scscompat -- $(GOTEST)

.DEFAULT_GOAL := help
.PHONY: help run test test-unit check-redis check-browser screenshots bench load fuzz lint tidy-check verify testsummary

help: ## list the targets (what bare `make` does)
	@echo "make targets:"
	@awk 'BEGIN { FS = ":[^#]*## " } /^[a-z-]+:.*## / { printf "  %-14s %s\n", $$1, $$2 }' $(firstword $(MAKEFILE_LIST))

# The example is a module of its own (example/go.mod: it serves /metrics
# through the Prometheus adapter). It is built, then exec'd, so that it is
# make's own child: a signal to make (Ctrl-C, kill) reaches the server,
# which shuts down and frees its port, rather than a `go run` in between.
run: ## build and start the example server on http://127.0.0.1:8080 (ADDR to change)
	cd example && $(GO) build -o ../$(BIN)/example .
	exec $(BIN)/example

# The real-Redis suites start their own redis-servers (and redis-cli for the
# test clusters), and the example's browser test drives chromium: `make test`
# refuses to run without them, and sets SESSIONKIT_REQUIRE_REDIS=1 and
# SESSIONKIT_REQUIRE_BROWSER=1 so that no test can skip for want of them.
# SESSIONKIT_UNIT_ONLY=1 makes `make test` the same as `make test-unit`.
ifeq ($(SESSIONKIT_UNIT_ONLY),1)
ifeq ($(SESSIONKIT_REQUIRE_REDIS),1)
test:
	@echo "make test: SESSIONKIT_UNIT_ONLY=1 and SESSIONKIT_REQUIRE_REDIS=1 contradict each other: unset one" >&2; exit 1
else
test: test-unit
endif
else
test: check-redis check-browser testsummary ## every test with -race, against real redis-servers and in chromium (needs redis-server, redis-cli, chromium)
	SESSIONKIT_REQUIRE_REDIS=1 SESSIONKIT_REQUIRE_BROWSER=1 $(TESTSUMMARY)
endif

# Without the Redis and browser requirements: the real-Redis tests skip
# when redis-server is missing, the browser test when chromium is, and the
# last line counts them.
test-unit: testsummary ## every test that can run here: without redis-server or chromium their tests skip (counted)
	SESSIONKIT_REQUIRE_REDIS=0 SESSIONKIT_REQUIRE_BROWSER=0 $(TESTSUMMARY)
	@echo "test-unit: tests that need redis-server or chromium skip without them; run make test for the whole suite"

check-redis: ## fail with the install hint unless redis-server and redis-cli are in PATH
	@missing=""; \
	for b in redis-server redis-cli; do command -v $$b >/dev/null 2>&1 || missing="$$missing $$b"; done; \
	if [ -n "$$missing" ]; then \
		echo "make test: not in PATH:$$missing. The real-Redis tests start their own redis-server (Redis 7.0 or later) and use redis-cli for clusters; they never touch a Redis you run." >&2; \
		echo "  install them:  apt-get install redis-server redis-tools   (Debian, Ubuntu)" >&2; \
		echo "                 brew install redis                         (macOS)" >&2; \
		echo "  or run only the tests that need no Redis: make test-unit (or SESSIONKIT_UNIT_ONLY=1 make test)" >&2; \
		exit 1; \
	fi

check-browser: ## fail with the install hint unless chromium is in PATH
	@if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then \
		echo "make test: chromium is not in PATH. The example's browser test (example/browser_test.go) drives it headless, on 127.0.0.1 only." >&2; \
		echo "  install it:  apt-get install chromium           (Debian)" >&2; \
		echo "               apt-get install chromium-browser   (Ubuntu)" >&2; \
		echo "  or run every test but the browser test: make test-unit (or SESSIONKIT_UNIT_ONLY=1 make test), which also skips the real-Redis tests if redis-server is missing" >&2; \
		exit 1; \
	fi

# The screenshots in docs/img (the README shows docs/img/devices.png) are
# the ones the browser test takes: a laptop and a phone (390x844) on the
# login page, the dashboard, the devices page, the signed-out notice and
# the outage pages.
screenshots: check-redis check-browser ## regenerate the screenshots in docs/img with the browser test (needs chromium)
	cd example && SESSIONKIT_REQUIRE_REDIS=1 SESSIONKIT_REQUIRE_BROWSER=1 SESSIONKIT_SCREENSHOTS=$(CURDIR)/docs/img \
		$(GO) test -count=1 -run '^TestBrowser$$' .

testsummary:
	@$(GO) build -o $(BIN)/testsummary ./internal/testsummary

# The comparison suite (internal/bench): sessionkit, scs and gorilla/sessions
# on real redis-servers it starts, then one "ratio" line per target.
# Each benchmark runs in 3 interleaved rounds (-rounds 3: sessionkit, scs,
# gorilla, sessionkit, ...; the repeats print as name#01, name#02), 500ms
# each; the ratios use the medians. The login's round ends with sessionkit
# and scs paired, their logins sent in alternating blocks of 64, and
# login-vs-scs is the median of those rounds' ratios, which the machine's
# slow phases move far less. BenchmarkCluster compares a read and a
# login on a 3-master Redis Cluster with the same on one server.
# BenchmarkParallel drives the read and the forged cookie from GOMAXPROCS
# goroutines at once (b.RunParallel) and prints its own ratio lines;
# BenchmarkSessionBytes counts Redis used_memory growth per session over
# 2,000 logins, sessionkit against scs, with a ratio line per shape of users.
# BenchmarkRateLimit (internal/bench/ratelimit_test.go) times a request
# admitted and one refused by middleware.RateLimit, ulule/limiter/v3 on its
# Redis store and go-chi/httprate's in-memory counter in the same rounds,
# prints their ratio lines, then an "admitted" line per limiter: how many
# of 2,000 concurrent requests four app instances let through with a limit
# of 100. The whole run takes about three minutes on 2 cores.
# Then the listing of a user's sessions with 0 and 100,000 other sessions in
# Redis (redisstore.BenchmarkUserSessions): the time must not grow; and what
# one user with 100,000 sessions costs (redisstore.BenchmarkHeavyUser); and
# a read with the Prometheus metrics on next to off (prometheus.BenchmarkRead):
# the extra allocations (must be 0) and the time ratio (at most 1.05), the
# latter from reads of both sent in alternating blocks of 64.
# Last, the near-cache (docs/near-cache.md): a Load from memory beside a raw
# GET, 64 parallel loaders, and the two-instance revocation latency.
bench: ## the comparison with scs and gorilla and of the rate limiters, then the redisstore, prometheus and near-cache benchmarks (~5 min)
	cd internal/bench && $(GO) test -run '^$$' -bench . -benchtime 500ms -count 1 . -rounds 3
	$(GO) test -run '^$$' -bench '^BenchmarkUserSessions$$' -benchtime 2000x ./redisstore
	$(GO) test -run '^$$' -bench '^BenchmarkHeavyUser$$' -benchtime 10x ./redisstore
	cd prometheus && $(GO) test -run '^$$' -bench '^BenchmarkRead$$' -benchtime 500ms -count 1 . -rounds 3
	$(GO) test -run '^$$' -bench '^BenchmarkNearCache(Read|Parallel|Revocation)$$' -benchtime 1s -count 1 ./redisstore

# The HTTP load test (example/load_test.go): four contenders on loopback
# listeners over real redis-servers it starts: the example server
# (sessionkit), the same with REDIS_NEAR_CACHE_MAX_ENTRIES=100000
# (sessionkit-near, on a redis-server of its own), an scs twin of its
# /api/me and a floor twin that sends one raw GET per request. Each is
# driven by 64 workers on 64 keep-alive connections for 10s after a 1.5s
# warm-up, in 2 interleaved rounds; one "load" line per contender and round
# (rps, p50, p99, max, errors, Redis commands per request; the near-cache's
# hits, misses, lease expiries and flushes), "load ratio" lines, and one
# "ratio <name> <value> <target> ok|MISS" line per target, among them
# load-rps-near-vs-scs-min (at least 3). About two minutes. Options go in
# LOADFLAGS, for example LOADFLAGS='-load.duration 5s -load.rounds 3'.
load: ## the HTTP load test of the example, with and without the near-cache, against scs and floor twins (~2 min; LOADFLAGS)
	cd example && $(GO) test -run '^$$' -bench '^BenchmarkLoad$$' -benchtime 1x . $(LOADFLAGS)

# Each fuzz target of the core's packages (every Fuzz function that
# `go test -list` finds, so a new one cannot be forgotten) runs for FUZZTIME.
FUZZPKGS = ./session ./redisstore ./middleware
fuzz: ## each fuzz target for FUZZTIME (default 20s)
	@for pkg in $(FUZZPKGS); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "fuzz $$pkg $$f"; \
			$(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
		done; \
	done

lint: ## go vet, staticcheck and gofmt on the five modules
	$(GO) vet ./...
	cd prometheus && $(GO) vet ./...
	cd example && $(GO) vet ./...
	cd internal/bench && $(GO) vet ./...
	cd internal/scscompat && $(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	cd prometheus && $(GO) run $(STATICCHECK) ./...
	cd example && $(GO) run $(STATICCHECK) ./...
	cd internal/bench && $(GO) run $(STATICCHECK) ./...
	cd internal/scscompat && $(GO) run $(STATICCHECK) ./...
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt would change the files above"; exit 1; }

tidy-check: ## fail if go mod tidy would change a go.mod or go.sum
	$(GO) mod tidy -diff
	cd prometheus && $(GO) mod tidy -diff
	cd example && $(GO) mod tidy -diff
	cd internal/bench && $(GO) mod tidy -diff
	cd internal/scscompat && $(GO) mod tidy -diff

verify: lint tidy-check test fuzz bench ## lint, tidy-check, test, fuzz and bench
