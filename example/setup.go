package main

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	sessionkitprom "github.com/sessionkit/sessionkit/prometheus"
	"github.com/sessionkit/sessionkit/redisstore"
	"github.com/sessionkit/sessionkit/session"
)

// app is the wired example: its handler, where to listen, the pieces the
// handler is built from, and what to close at exit.
type app struct {
	handler  http.Handler
	addr     string // ADDR, the address to listen on
	store    *redisstore.Store
	sessions *session.Manager
	close    func()
	// delay is SHUTDOWN_DELAY: how long the server goes on serving after
	// a signal, with /readyz failing (stopping), before it closes its
	// listener (see serve).
	delay    time.Duration
	stopping func()
}

// loopback reports whether addr, host:port as ADDR holds it, listens on a
// loopback address only ("localhost", 127.0.0.0/8, ::1).
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// defaultAddr is where the example listens without ADDR.
const defaultAddr = "127.0.0.1:8080"

// setup wires the example from the environment. Before it connects to
// Redis it logs the effective configuration in one line.
func setup(log *slog.Logger) (_ *app, err error) {
	var closers []func()
	closeAll := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	defer func() {
		if err != nil {
			closeAll()
		}
	}()

	addr := os.Getenv("ADDR")
	if addr == "" {
		addr = defaultAddr
	}
	delay, err := shutdownDelay()
	if err != nil {
		return nil, err
	}
	rcfg, err := redisstore.FromEnv()
	if err != nil {
		return nil, err
	}
	waitReplicas := rcfg.WaitReplicas
	embedded := !redisFromEnv()
	if embedded {
		mr := miniredis.NewMiniRedis()
		if err := mr.Start(); err != nil {
			return nil, fmt.Errorf("example: embedded redis: %w", err)
		}
		mr.ClockTTL(true) // expire keys as time passes: sessions, and the login limits' windows
		closers = append(closers, mr.Close)
		// Of the REDIS_* variables only the near-cache's apply to the
		// embedded Redis.
		rcfg = redisstore.Config{Addr: mr.Addr(), NearCache: rcfg.NearCache}
		log.Info("example: no Redis server named (" + strings.Join(redisServerVars, ", ") + "): using an embedded in-memory Redis (miniredis); sessions end with the process")
		if rcfg.NearCache.MaxEntries > 0 {
			log.Warn("example: the near-cache is on, but the embedded Redis has no CLIENT TRACKING: it stays disconnected and every session read goes to Redis")
		}
		if waitReplicas > 0 {
			log.Warn("example: REDIS_WAIT_REPLICAS is set, but the embedded Redis has no replicas: logouts wait for none")
		}
	}

	scfg, err := session.FromEnv()
	if err != nil {
		return nil, err
	}
	keysSet := len(scfg.Keys) > 0
	if !keysSet {
		key := make([]byte, 32)
		rand.Read(key) // never fails
		scfg.Keys = [][]byte{key}
		log.Warn("example: SESSION_KEYS is not set: signing with a random key, so sessions do not survive a restart")
	}
	if os.Getenv("SESSION_COOKIE_SECURE") == "" { // unset or empty, as session.FromEnv reads it
		// The example serves plain HTTP on localhost; a deployment behind
		// TLS sets SESSION_COOKIE_SECURE=true.
		scfg.InsecureCookie = true
		if !loopback(addr) {
			log.Warn("example: SESSION_COOKIE_SECURE is not set: the session cookie is not Secure, as plain HTTP on localhost needs; behind TLS, set SESSION_COOKIE_SECURE=true", "addr", addr)
		}
	}
	if len(rcfg.ClusterNodes) > 0 && scfg.TagKey == nil {
		// A TagKey made from the signing keys would change when they
		// rotate, and with it every user's index key: log out everywhere,
		// the device list and the session limit would miss every session
		// made before, for a whole Lifetime. Only with keys that live no
		// longer than this process anyway may the TagKey do the same.
		if keysSet {
			return nil, errors.New("example: SESSION_TAG_KEY: required on a Redis Cluster when SESSION_KEYS is set (the base64 of 32 random bytes of its own, e.g. openssl rand -base64 32, never rotated)")
		}
		scfg.TagKey = make([]byte, 32)
		rand.Read(scfg.TagKey) // never fails
		log.Warn("example: SESSION_TAG_KEY is not set: using a random hash-tag key for this process, as for its signing key")
	}
	login, err := loginConfigFromEnv(slices.Concat(scfg.Keys, scfg.RetiredKeys))
	if err != nil {
		return nil, err
	}
	if !login.keySet {
		login.key = make([]byte, 32)
		rand.Read(login.key) // never fails
		log.Warn("example: RATE_LIMIT_KEY is not set: keying the login limits with a random key, so each instance counts apart and counts start afresh at a restart")
	}
	log.LogAttrs(context.Background(), slog.LevelInfo, "example: configuration",
		append(configAttrs(addr, embedded, rcfg, scfg, login), slog.Duration("shutdown_delay", delay))...)

	a, err := newApp(log, rcfg, scfg, login)
	if err != nil {
		return nil, err
	}
	closers = append(closers, a.close)
	a.addr, a.close, a.delay = addr, closeAll, delay
	return a, nil
}

// newApp opens the store described by rcfg and builds the example's
// handler on it, with a Manager configured by scfg (its Logger set to
// log) and login limits counted in the store, configured by login. The
// store (its near-cache too, when rcfg turns it on), the Manager and the
// login limits report to Prometheus metrics of a registry of the app's
// own, served on GET /metrics (see newMetrics). Its close closes the store.
func newApp(log *slog.Logger, rcfg redisstore.Config, scfg session.Config, login loginConfig) (_ *app, err error) {
	reg, metrics, err := newMetrics()
	if err != nil {
		return nil, err
	}
	rateMetrics, err := sessionkitprom.NewRateLimitMetrics(reg, sessionkitprom.RateLimitOptions{Rules: loginRules})
	if err != nil {
		return nil, err
	}
	rcfg.Observer = metrics // before Open: the start-up PING below counts too
	rcfg.Logger = log       // the near-cache's connection warnings
	store, err := redisstore.Open(rcfg)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			store.Close()
		}
	}()
	if err := metrics.WatchPool(store); err != nil {
		return nil, err
	}
	if rcfg.NearCache.MaxEntries > 0 {
		if err := metrics.WatchNearCache(store); err != nil {
			return nil, err
		}
	}
	counterChecked := false
	if err := ping(store); errors.Is(err, redisstore.ErrRefused) {
		if why := redisstore.Describe(err, rcfg); why != "" {
			return nil, fmt.Errorf("example: Redis refused the connection settings; check the REDIS_* variables, the server's ACL and its version: %s: %w", why, err)
		}
		return nil, fmt.Errorf("example: Redis refused the connection settings; check the REDIS_* variables, the server's ACL and its version: %w", err)
	} else if err != nil {
		log.Warn("example: Redis cannot serve sessions yet; requests are anonymous (protected routes 503) until it can", "cause", describe(err, rcfg, healthTimeout), "error", err)
	} else if err := pingCounter(store); errors.Is(err, redisstore.ErrRefused) {
		// Ping checks the store's permissions only; every login goes
		// through the login limit's counter too.
		return nil, fmt.Errorf("example: Redis refused the login limit's counter; check the server's ACL (the rate limiter's line in the redisstore documentation): %s: %w", redisstore.Describe(err, rcfg), err)
	} else {
		counterChecked = err == nil
	}

	scfg.Logger = log
	scfg.Metrics = metrics
	// The devices page names sessions as mileusna/useragent does, and
	// shows the raw user agent in each session's details line.
	scfg.DeviceName = nameDevice
	scfg.KeepUserAgent = true
	manager, err := session.New(store, scfg)
	if err != nil {
		return nil, err
	}
	srv := newServer(manager, store, metricsHandler(reg, log), log)
	srv.redis = rcfg
	srv.counter, srv.login, srv.rateMetrics = store, login, rateMetrics
	srv.counterChecked.Store(counterChecked)
	srv.idle, srv.insecureCookie = cmp.Or(scfg.IdleTimeout, session.DefaultIdleTimeout), scfg.InsecureCookie
	h, err := routes(srv)
	if err != nil {
		return nil, err
	}
	closeApp := func() {
		srv.stopChecks() // before the store closes under them
		store.Close()
	}
	return &app{handler: h, addr: defaultAddr, store: store, sessions: manager, close: closeApp,
		stopping: func() { srv.stopping.Store(true) }}, nil
}

// maxShutdownDelay bounds SHUTDOWN_DELAY: longer is a unit's slip (30m
// for 30s), past any orchestrator's grace period.
const maxShutdownDelay = 5 * time.Minute

// shutdownDelay reads SHUTDOWN_DELAY, a Go duration ("5s"), 0 when unset
// or empty. Its error names the variable.
func shutdownDelay() (time.Duration, error) {
	v := os.Getenv("SHUTDOWN_DELAY")
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 || d > maxShutdownDelay {
		return 0, fmt.Errorf("example: SHUTDOWN_DELAY=%q: want a duration from 0 to %v, such as 5s", v, maxShutdownDelay)
	}
	return d, nil
}

// rateLimitKey reads RATE_LIMIT_KEY, the key of the login limits' HMAC:
// the base64 (standard or URL alphabet, padded or not) of at least 32
// random bytes, the same on every instance, and none of the signing keys
// (signing). It returns nil when the variable is unset or empty. Its errors
// never repeat the value.
func rateLimitKey(signing [][]byte) ([]byte, error) {
	v := os.Getenv("RATE_LIMIT_KEY")
	if v == "" {
		return nil, nil
	}
	keys, err := session.ParseKeys(v)
	if err != nil || len(keys) != 1 {
		return nil, errors.New("example: RATE_LIMIT_KEY: want one key, the base64 of at least 32 random bytes")
	}
	for _, k := range signing {
		if hmac.Equal(k, keys[0]) {
			return nil, errors.New("example: RATE_LIMIT_KEY: want a key of its own, not one of SESSION_KEYS or SESSION_RETIRED_KEYS")
		}
	}
	return keys[0], nil
}

// redisServerVars are the variables of redisstore.FromEnv that say which
// Redis server to use or how to reach it: any one of them set, the example
// uses that server (127.0.0.1:6379 unless they say otherwise) rather than
// an embedded one. The near-cache's and REDIS_WAIT_REPLICAS do not.
var redisServerVars = []string{
	"REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_USERNAME", "REDIS_PASSWORD", "REDIS_DB", "REDIS_TLS",
	"REDIS_SENTINELS", "REDIS_CLUSTER_NODES",
}

// redisFromEnv reports whether the environment names a Redis to use.
func redisFromEnv() bool {
	for _, name := range redisServerVars {
		if os.Getenv(name) != "" {
			return true
		}
	}
	return false
}

// ping checks Redis at start-up, within healthTimeout.
func ping(store *redisstore.Store) error {
	ctx, cancel := context.WithTimeout(context.Background(), healthTimeout)
	defer cancel()
	return store.Ping(ctx)
}

// pingCounter checks at start-up, within healthTimeout, that Redis lets
// the login limits count (Store.PingCounter), so that an ACL without the
// rate limiter's permissions stops the example rather than refusing every
// login.
func pingCounter(store *redisstore.Store) error {
	ctx, cancel := context.WithTimeout(context.Background(), healthTimeout)
	defer cancel()
	return store.PingCounter(ctx)
}

// newMetrics returns a registry of the app's own with the Go runtime and
// process collectors and sessionkit's series, and the Metrics that feeds
// those (set as redisstore.Config.Observer and session.Config.Metrics; its
// WatchPool adds the pool series). A registry per app rather than
// prometheus.DefaultRegisterer, so that several apps in one process (as in
// the tests) each count their own traffic.
func newMetrics() (*prometheus.Registry, *sessionkitprom.Metrics, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	m, err := sessionkitprom.New(reg, sessionkitprom.Options{})
	if err != nil {
		return nil, nil, err
	}
	return reg, m, nil
}

// metricsHandler serves reg in the Prometheus exposition format, counting
// its own scrapes (promhttp_metric_handler_requests_total) as
// promhttp.Handler does for the default registry. An error gathering a
// collector is logged, and the scrape answers what it could gather.
func metricsHandler(reg *prometheus.Registry, log *slog.Logger) http.Handler {
	return promhttp.InstrumentMetricHandler(reg, promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelError),
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      reg,
	}))
}
