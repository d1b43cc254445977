package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/sessionkit/sessionkit/redisstore"
)

// readyTimeout bounds the Store.Ping of /readyz, including the wait for a
// pooled connection. It is shorter than the store's own timeout (1s by default),
// so that a probe with a one-second timeout gets an answer.
const readyTimeout = 500 * time.Millisecond

// healthTimeout bounds the Store.Ping of /healthz, and of the start-up
// check.
const healthTimeout = time.Second

// The checks /readyz names when it answers 503.
const (
	checkRedis    = "redis"    // Store.Ping failed: Redis did not answer in time, or refused (a read-only replica, say)
	checkPool     = "pool"     // every pooled connection was busy and none came free in time: too few, or a stalled Redis holds them
	checkShutdown = "shutdown" // the server is shutting down (see serve)
	// Redis refuses the login limit's counter (its ACL lacks the rate
	// limiter's line), which start-up could not check: Redis did not
	// answer then (see setup).
	checkCounter = "rate_limit"
)

// livez answers 200 while the process serves HTTP. It does nothing else,
// Redis least of all: an orchestrator restarts an instance whose liveness
// probe fails, and restarting every instance does not bring Redis back.
func (s *server) livez(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz answers 200 when the store can serve: Store.Ping succeeds within
// readyTimeout (Redis answers and accepts writes, so a read-only replica
// is not ready). Otherwise it answers 503 and names the check that failed:
// "pool" when every connection of the pool was in use as the check began
// and the Ping got none within readyTimeout, "rate_limit" while Redis
// refuses the login limit's counter (checked here until it passes once,
// when Redis did not answer at start-up: see setup), "redis" otherwise,
// and "shutdown", without asking Redis, once a signal has started the
// shutdown (see serve). A pool that
// is fully busy but hands a connection on within readyTimeout counts as
// ready, so that a burst of traffic does not take an instance out of
// service.
//
// The probes that come while a check runs share its outcome (see
// sharedCheck).
func (s *server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.stopping.Load() {
		answerNotReady(w, checkShutdown)
		return
	}
	res, ok := s.ready.do(r.Context(), readyTimeout, s.checkReady)
	if !ok {
		return // the client went away, and nobody reads the answer
	}
	if res.failed != "" {
		answerNotReady(w, res.failed)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// checkReady is /readyz's check of Redis, under ctx's deadline of
// readyTimeout; it logs a change of readiness.
func (s *server) checkReady(ctx context.Context) checkResult {
	pool := s.store.PoolStats()
	failed := ""
	err := s.store.Ping(ctx)
	if err == nil && !s.counterChecked.Load() {
		// Start-up checks the counter's permissions and stops without
		// them; when Redis did not answer then, they are checked here,
		// once, so that an instance that would refuse every login is not
		// put into service.
		if err = s.store.PingCounter(ctx); err == nil {
			s.counterChecked.Store(true)
		} else if errors.Is(err, redisstore.ErrRefused) {
			failed = checkCounter
		}
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		// stop cut it short: it says nothing of Redis.
		return checkResult{failed: checkShutdown, err: err}
	}
	if err != nil && failed == "" {
		failed = checkRedis
		if pool.Exhausted() {
			failed = checkPool
		}
	}
	s.noteReadiness(failed, err, pool)
	return checkResult{failed: failed, err: err}
}

// checkResult is the outcome of a probe's check of Redis: the check that
// failed ("" for none, see readyz) and the error.
type checkResult struct {
	failed string
	err    error
}

// sharedCheck runs a probe's check of Redis once for all the probes that
// come while it runs: they wait for its outcome, each until its client
// goes away, rather than each sending Redis a Ping of its own. The probes
// are public (whoever reaches the port can send them), and a Ping takes a
// pooled connection and sends a dozen commands: a flood of probes would
// otherwise take connections from the sessions. The check runs under a
// deadline of its own, not under the context of the probe that started
// it, so that a client that goes away cuts short no check that others
// wait for, and no failure of such a cut is taken for Redis's; stop ends
// it before the store closes. Its zero value is ready for use.
type sharedCheck struct {
	mu      sync.Mutex
	run     *checkRun // the check running, nil when none is
	stopped bool
	runs    sync.WaitGroup
}

// checkRun is one run of a sharedCheck: res is set when done is closed.
type checkRun struct {
	done   chan struct{}
	cancel context.CancelFunc
	res    checkResult
}

// errStopped is the error of a probe answered after sharedCheck.stop.
var errStopped = errors.New("example: shutting down")

// do returns the outcome of check, run under a deadline of timeout, or of
// the check running already; ok is false when ctx ended first. After stop
// it answers that the server is shutting down.
func (c *sharedCheck) do(ctx context.Context, timeout time.Duration, check func(context.Context) checkResult) (res checkResult, ok bool) {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return checkResult{failed: checkShutdown, err: errStopped}, true
	}
	run := c.run
	if run == nil {
		runCtx, cancel := context.WithTimeout(context.Background(), timeout)
		run = &checkRun{done: make(chan struct{}), cancel: cancel}
		c.run = run
		c.runs.Go(func() {
			defer cancel()
			run.res = check(runCtx)
			c.mu.Lock()
			c.run = nil
			c.mu.Unlock()
			close(run.done)
		})
	}
	c.mu.Unlock()
	select {
	case <-run.done:
		return run.res, true
	case <-ctx.Done():
		return checkResult{}, false
	}
}

// stop cancels the check running, if any, waits for it to end, and starts
// no more: the store is about to close, under a check that a probe whose
// client went away may have left running. The cancellation stops the
// check at its next command; one in flight ends within the check's
// deadline (healthTimeout at most).
func (c *sharedCheck) stop() {
	c.mu.Lock()
	c.stopped = true
	if c.run != nil {
		c.run.cancel()
	}
	c.mu.Unlock()
	c.runs.Wait()
}

// answerNotReady answers /readyz with 503, naming the check that failed.
func answerNotReady(w http.ResponseWriter, check string) {
	// A struct, not a map, keeps the fields in the documented order.
	writeJSON(w, http.StatusServiceUnavailable, struct {
		Status string `json:"status"`
		Check  string `json:"check"`
	}{"unavailable", check})
}

// noteReadiness logs a change of readiness: when /readyz fails after
// succeeding (or on its first probe), when the failing check or its cause
// changes (Redis that refused connections comes up with another password:
// the log must say so, not go on blaming the first cause), and when it
// succeeds again. A probe that answers as the one before logs nothing, so
// probes cannot fill the log.
func (s *server) noteReadiness(failed string, err error, pool redisstore.PoolStats) {
	var cause string
	if err != nil {
		cause = describe(err, s.redis, readyTimeout)
	}
	state := failed
	if failed != "" {
		state += "\x00" + cause
	}
	prev := s.notReady.Swap(&state)
	if prev != nil && *prev == state || prev == nil && state == "" {
		return
	}
	if failed == "" {
		s.log.Info("example: ready: Redis answers")
		return
	}
	// Redis may answer and still fail the check (a read-only replica, a
	// master short of replicas): cause says which.
	msg := "example: not ready: Redis cannot serve sessions"
	switch {
	case failed == checkCounter:
		msg = "example: not ready: Redis refused the login limit's counter; check the server's ACL (the rate limiter's line in the redisstore documentation)"
	case failed == checkPool:
		msg = "example: not ready: every pooled Redis connection is busy and none came free in time: Redis is stalled (a frozen or overloaded server holds every call), or the pool is too small for the load (redisstore.Config.MaxActive)"
	case errors.Is(err, redisstore.ErrRefused):
		msg = "example: not ready: Redis refuses the configuration; check the REDIS_* variables, the server's ACL and its version"
	}
	s.log.Warn(msg, "check", failed, "cause", cause, "error", err,
		"pool_active", pool.Active, "pool_idle", pool.Idle, "pool_max_active", pool.MaxActive, "pool_waits", pool.Waits)
}

// healthz answers 200 when Store.Ping succeeds within a second (Redis
// answers and accepts writes), 503 otherwise. The probes that come while
// a check runs share its outcome (see sharedCheck).
func (s *server) healthz(w http.ResponseWriter, r *http.Request) {
	res, ok := s.health.do(r.Context(), healthTimeout, s.checkHealth)
	if !ok {
		return // the client went away, and nobody reads the answer
	}
	if res.err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// checkHealth is /healthz's check of Redis, under ctx's deadline of
// healthTimeout. It logs when the check starts failing, when its cause
// changes, and when it passes again, not at every probe: anyone who can
// reach /healthz could otherwise fill the log.
func (s *server) checkHealth(ctx context.Context) checkResult {
	err := s.store.Ping(ctx)
	if errors.Is(ctx.Err(), context.Canceled) {
		return checkResult{err: errStopped} // stop cut it short: it says nothing of Redis
	}
	if err == nil {
		if s.unhealthy.Swap(nil) != nil {
			s.log.Info("example: health check: Redis answers again")
		}
		return checkResult{}
	}
	cause := describe(err, s.redis, healthTimeout)
	if prev := s.unhealthy.Swap(&cause); prev == nil || *prev != cause {
		msg := "example: health check: Redis unavailable"
		if errors.Is(err, redisstore.ErrRefused) {
			msg = "example: health check: Redis refuses the configuration; check the REDIS_* variables, the server's ACL and its version"
		}
		s.log.Error(msg, "cause", cause, "error", err)
	}
	return checkResult{err: err}
}

// describe returns redisstore.Describe(err, cfg) for err, the error of a
// Store.Ping under a deadline of probe. Where Describe says that Redis did
// not answer within the store's Timeout but probe is shorter, which is
// then the deadline that ran out, it names probe instead.
func describe(err error, cfg redisstore.Config, probe time.Duration) string {
	cause := redisstore.Describe(err, cfg)
	if probe < cmp.Or(cfg.Timeout, redisstore.DefaultTimeout) && cause == redisstore.Describe(context.DeadlineExceeded, cfg) {
		return fmt.Sprintf("Redis did not answer within the probe's deadline of %v: it is overloaded, a command is slow (SLOWLOG), the network is, or every pooled connection is busy (Config.MaxActive)", probe)
	}
	return cause
}

// clientGone reports whether r's client went away (its context cancelled),
// so that a call that failed for it is not taken for Redis's failure.
func clientGone(r *http.Request) bool {
	return errors.Is(r.Context().Err(), context.Canceled)
}

// getOnly answers a probe's path asked with a method other than GET or
// HEAD: 405, as http.ServeMux answers a method it has no route for.
func getOnly(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Allow", "GET, HEAD")
	http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
}
