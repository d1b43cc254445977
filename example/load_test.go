package main

// The HTTP load test: `make load` runs BenchmarkLoad, which puts the
// example server, wired by setup exactly as `make run` wires it, the same
// with the near-cache on
// (REDIS_NEAR_CACHE_MAX_ENTRIES), an scs v2 + scs/redisstore twin of its
// /api/me route, and a floor twin whose /api/me sends one raw GET and does
// no session work, on loopback listeners over real redis-servers, and
// drives GET /api/me on each with a Go load generator: 64 workers on 64
// keep-alive connections, a short warm-up, then a timed phase, in
// interleaved rounds (sessionkit, sessionkit-near, scs, floor, sessionkit,
// ...) so that drift of the machine shows in the figures.
//
// The near-cache contender has a redis-server of its own: its invalidation
// connection PINGs every 5ms and is told of every session key the other
// contenders change, which would count, and cost, in their phases. The
// others share one.
//
// The generator, the servers and the redis-servers share the machine's
// cores (2 on the development VM): the figures compare the stacks under the
// same conditions in the same run; they are not capacity numbers for any.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/gob"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	scsredisstore "github.com/alexedwards/scs/redisstore"
	"github.com/alexedwards/scs/v2"
	"github.com/gomodule/redigo/redis"
	"go.uber.org/goleak"

	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/redisstore"
)

// Flags of BenchmarkLoad. Test flags are the one kind of package-level
// state a test binary has; they are read once, at the start of the
// benchmark.
var (
	loadDuration = flag.Duration("load.duration", 10*time.Second,
		"BenchmarkLoad: length of each timed phase (one per contender and round)")
	loadWarmup = flag.Duration("load.warmup", 1500*time.Millisecond,
		"BenchmarkLoad: untimed warm-up before each timed phase")
	loadConns = flag.Int("load.conns", 64,
		"BenchmarkLoad: concurrent workers, each with a keep-alive connection and a session of its own")
	loadRounds = flag.Int("load.rounds", 2,
		"BenchmarkLoad: interleaved rounds (sessionkit, sessionkit-near, scs, floor, sessionkit, ...)")
	loadMaxRequests = flag.Int("load.maxrequests", 2_000_000,
		"BenchmarkLoad: most requests of one timed or warm-up phase, across all workers")
)

const (
	// loadContenders is how many servers BenchmarkLoad drives: sessionkit,
	// sessionkit-near, the scs twin and the floor twin.
	loadContenders = 4
	// loadNearEntries is REDIS_NEAR_CACHE_MAX_ENTRIES of sessionkit-near:
	// room for every session of the run.
	loadNearEntries = 100_000
	// loadMaxTotal bounds the planned length of a whole run, so that it
	// ends well within go test's default -timeout of 10 minutes.
	loadMaxTotal = 8 * time.Minute
	// loadRequestGrace is how long a request that started just before the
	// end of a phase may still take before it is cancelled (and counted as
	// an error).
	loadRequestGrace = 5 * time.Second
	// loadLoginTimeout bounds logging every worker in. Each login is a
	// PBKDF2 check (of testIterations in the tests, 600,000 in the
	// program: see TestMain), and all of them queue for the same cores.
	loadLoginTimeout = 2 * time.Minute
	// scsCleanup is the goroutine scs.New starts for the in-memory store
	// it installs by default (see newSCSTwin).
	scsCleanup = "github.com/alexedwards/scs/v2/memstore.(*MemStore).startCleanup"
)

// loadUsers are the example's demo accounts; worker i logs in as
// loadUsers[i%2].
var loadUsers = [...]struct{ name, password string }{
	{"alice", "wonderland"},
	{"bob", "builder"},
}

// BenchmarkLoad measures requests per second and latency percentiles of
// GET /api/me at -load.conns (64) concurrent keep-alive connections, for the
// example server without and with the near-cache, its scs twin and the
// floor twin, in the same run (the near-cache's contender on a
// redis-server of its own, see the top of this file). It prints one line
// per contender and round, such as
//
//	load sessionkit round=1 conns=64 secs=10.0 requests=123456 rps=12345 p50=1.23ms p99=4.56ms max=12.34ms errors=0 redis-cmds/req=1.00 redis-dials=0 new-http-conns=0
//
// then one line per contender over all rounds, one "load ratio" line each
// for sessionkit and sessionkit-near over scs and over the floor, and
// sessionkit-near over sessionkit, and the targets as ratio lines (see
// printLoadTarget), and
// reports the all-round rps and p99 of each contender with b.ReportMetric.
// redis-cmds/req counts every command the redis-server ran in the timed
// phase (INFO commandstats) per request, for sessionkit-near its
// invalidation connection's PINGs included; redis-dials counts the
// connections the contender's Redis pool opened in it, and new-http-conns the HTTP
// connections the generator opened in it (0: every worker kept its
// connection). The lines of sessionkit-near add the near-cache's counters
// in the phase (Store.NearCacheStats): near-hits, near-misses,
// lease-expiries and flushes.
//
// Every response is checked (200 and the worker's own user_id and
// session_id in the body); any error is printed and fails the benchmark.
// The body runs once whatever b.N is: the length of the measurement is
// -load.duration, not -benchtime. Run it with
//
//	go test -run '^$' -bench '^BenchmarkLoad$' -benchtime 1x ./example
//
// Both clients send the session cookie (scs has no Bearer tokens), so the
// requests are alike. Without redis-server in PATH it skips, as the
// real-Redis tests do.
func BenchmarkLoad(b *testing.B) {
	opts := loadOptionsFromFlags(b)
	// Registered first, so it runs last: after the servers, pools,
	// transports and redis-server below are closed, nothing of the
	// benchmark may still run but scs's cleanup goroutine.
	running := goleak.IgnoreCurrent()
	b.Cleanup(func() { goleak.VerifyNone(b, running, goleak.IgnoreTopFunction(scsCleanup)) })

	targets := startLoadTargets(b, opts.conns)

	all := make(map[string][]loadResult)
	for round := 1; round <= opts.rounds; round++ {
		for _, t := range targets {
			if warm := t.run(opts.warmup, opts.maxRequests); warm.errors > 0 {
				b.Fatalf("load %s round=%d: warm-up had %d errors of %d requests; first: %v",
					t.name, round, warm.errors, warm.requests, warm.firstErr)
			}
			res := t.measure(b, opts)
			fmt.Printf("load %s round=%d %s\n", t.name, round, res.format(opts.conns))
			if res.errors > 0 {
				b.Fatalf("load %s round=%d: %d errors of %d requests; first: %v",
					t.name, round, res.errors, res.requests, res.firstErr)
			}
			if res.capped {
				fmt.Printf("load %s round=%d: stopped by -load.maxrequests before -load.duration\n", t.name, round)
			}
			all[t.name] = append(all[t.name], res)
		}
	}

	b.ReportMetric(0, "ns/op") // the wall time of the whole run says nothing
	sum := make(map[string]loadResult)
	for _, t := range targets {
		s := mergeResults(all[t.name])
		sum[t.name] = s
		fmt.Printf("load %s all-rounds %s\n", t.name, s.format(opts.conns))
		b.ReportMetric(s.rps(), t.name+"-rps")
		b.ReportMetric(ms(s.percentile(0.99)), t.name+"-p99-ms")
		b.ReportMetric(s.cmdsPerRequest(), t.name+"-redis-cmds/req")
	}
	sk, near, sc, fl := sum["sessionkit"], sum["sessionkit-near"], sum["scs"], sum["floor"]
	for _, ratio := range []struct {
		name string
		a, b loadResult
	}{
		{"sessionkit/scs", sk, sc},
		{"sessionkit/floor", sk, fl},
		{"sessionkit-near/scs", near, sc},
		{"sessionkit-near/floor", near, fl},
		{"sessionkit-near/sessionkit", near, sk},
	} {
		fmt.Printf("load ratio %s rps=%.2fx p50=%.2fx p99=%.2fx\n", ratio.name,
			ratio.a.rps()/ratio.b.rps(),
			float64(ratio.a.percentile(0.50))/float64(ratio.b.percentile(0.50)),
			float64(ratio.a.percentile(0.99))/float64(ratio.b.percentile(0.99)))
	}
	// The targets, over all rounds: "ratio <name> <value> <bound> ok|MISS",
	// the bound a floor (>=) or a ceiling (<=) as its name says.
	printLoadTarget("load-rps-vs-scs-min", sk.rps()/sc.rps(), 1.7, true)
	printLoadTarget("load-rps-vs-floor-min", sk.rps()/fl.rps(), 0.8, true)
	printLoadTarget("load-p99-vs-scs-max", float64(sk.percentile(0.99))/float64(sc.percentile(0.99)), 1.0, false)
	printLoadTarget("load-rps-near-vs-scs-min", near.rps()/sc.rps(), 3.0, true)
}

// printLoadTarget prints the ratio line of a target of BenchmarkLoad: v
// must be at least bound if atLeast, else at most bound.
func printLoadTarget(name string, v, bound float64, atLeast bool) {
	verdict := "ok"
	if math.IsNaN(v) || (atLeast && v < bound) || (!atLeast && v > bound) {
		verdict = "MISS"
	}
	fmt.Printf("ratio %s %.3f %.2f %s\n", name, v, bound, verdict)
}

// startLoadTargets starts two redis-servers; on the first, the example as
// `make run` wires it (setup with REDIS_URL and SESSION_KEYS from the
// environment), and the scs and floor twins on a pool built from the same
// environment (one pool each); on the second, the example wired the same
// way with REDIS_NEAR_CACHE_MAX_ENTRIES added. Each serves on a loopback
// listener; conns workers log in on each. Everything stops when tb ends.
func startLoadTargets(tb testing.TB, conns int) []*loadTarget {
	tb.Helper()
	r, rNear := redistest.Start(tb), redistest.Start(tb)
	if r.Port == 6379 || rNear.Port == 6379 {
		tb.Fatal("redistest started redis-server on 6379; the load test never uses that port")
	}
	key := make([]byte, 32)
	rand.Read(key) // never fails
	tb.Setenv("REDIS_URL", "redis://"+r.Addr())
	tb.Setenv("SESSION_KEYS", base64.StdEncoding.EncodeToString(key))
	// Every worker logs in as one of two users from one address: the
	// login limits (5 a user, 100 an address) would refuse most of them.
	tb.Setenv("LOGIN_LIMIT_PER_USER", "100000")
	tb.Setenv("LOGIN_LIMIT_PER_IP", "100000")

	// sessionkit: the example as `make run` wires it from the environment.
	a, err := setup(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(a.close)

	// scs and the floor: pools from the same environment, so with the same
	// settings.
	rcfg, err := redisstore.FromEnv()
	if err != nil {
		tb.Fatal(err)
	}

	// sessionkit-near: the same, on its own redis-server, with the
	// near-cache on.
	tb.Setenv("REDIS_URL", "redis://"+rNear.Addr())
	tb.Setenv("REDIS_NEAR_CACHE_MAX_ENTRIES", strconv.Itoa(loadNearEntries))
	near, err := setup(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(near.close)

	newPool := func() *redis.Pool {
		pool, err := redisstore.NewPool(rcfg)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { pool.Close() })
		return pool
	}

	targets := []*loadTarget{
		newLoadTarget(tb, "sessionkit", a.handler, r, conns),
		newLoadTarget(tb, "sessionkit-near", near.handler, rNear, conns),
		newLoadTarget(tb, "scs", newSCSTwin(newPool()), r, conns),
		newLoadTarget(tb, "floor", newFloorTwin(newPool()), r, conns),
	}
	targets[0].store, targets[1].store = a.store, near.store
	for _, t := range targets {
		t.loginAll(tb)
	}
	return targets
}

// targetNames returns the names of targets, in order.
func targetNames(targets []*loadTarget) []string {
	names := make([]string, len(targets))
	for i, t := range targets {
		names[i] = t.name
	}
	return names
}

// loadOptions are the validated flags of BenchmarkLoad.
type loadOptions struct {
	duration, warmup time.Duration
	conns, rounds    int
	maxRequests      int
}

// loadOptionsFromFlags validates the -load.* flags, failing b with the name
// of a bad one.
func loadOptionsFromFlags(b *testing.B) loadOptions {
	b.Helper()
	o := loadOptions{*loadDuration, *loadWarmup, *loadConns, *loadRounds, *loadMaxRequests}
	switch {
	case o.duration <= 0:
		b.Fatalf("-load.duration = %v, want > 0", o.duration)
	case o.warmup < 0:
		b.Fatalf("-load.warmup = %v, want >= 0", o.warmup)
	case o.conns < 1 || o.conns > 1024:
		b.Fatalf("-load.conns = %d, want 1 to 1024", o.conns)
	case o.rounds < 1:
		b.Fatalf("-load.rounds = %d, want >= 1", o.rounds)
	case o.maxRequests < o.conns:
		b.Fatalf("-load.maxrequests = %d, want at least -load.conns (%d)", o.maxRequests, o.conns)
	}
	if total := time.Duration(loadContenders*o.rounds) * (o.warmup + o.duration); total > loadMaxTotal {
		b.Fatalf("-load.rounds × %d contenders × (-load.warmup + -load.duration) = %v, want at most %v (go test's default -timeout is 10m)", loadContenders, total, loadMaxTotal)
	}
	return o
}

// loadTarget is one contender: a server on a loopback listener, the
// redis-server it uses, the generator's transport to it and the sessions
// its workers send.
type loadTarget struct {
	name      string
	url       string            // "http://127.0.0.1:<port>"
	redis     *redistest.Server // whose commands and dials count for it
	store     *redisstore.Store // the example's, nil for the twins
	transport *http.Transport
	client    *http.Client
	accepted  *atomic.Int64 // connections the server has accepted
	sessions  []loadSession // one per worker
}

// loadSession is the session of one worker.
type loadSession struct {
	cookie string   // the Cookie header: "session=<token>"
	want   [][]byte // what the body of GET /api/me must contain
}

// newLoadTarget serves h, which uses redis-server r, on a new loopback
// listener with the timeouts of the example's http.Server (main.go), and
// builds the generator's transport for conns workers. Both are closed when
// b ends.
func newLoadTarget(tb testing.TB, name string, h http.Handler, r *redistest.Server, conns int) *loadTarget {
	tb.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ReadHeaderTimeout = 5 * time.Second
	srv.Config.ReadTimeout = 10 * time.Second
	srv.Config.WriteTimeout = 10 * time.Second
	srv.Config.IdleTimeout = 60 * time.Second
	accepted := new(atomic.Int64)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			accepted.Add(1)
		}
	}
	srv.Start()
	tb.Cleanup(srv.Close)
	if u, err := url.Parse(srv.URL); err != nil || u.Hostname() != "127.0.0.1" {
		tb.Fatalf("%s: server URL %q is not on 127.0.0.1", name, srv.URL)
	}

	// A zero Transport uses no proxy. With as many connections allowed and
	// kept idle as there are workers, each request finds an idle
	// connection: no worker dials during the timed phase (new-http-conns
	// shows it).
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxConnsPerHost:     conns,
		MaxIdleConnsPerHost: conns,
		MaxIdleConns:        conns,
		DisableCompression:  true,
	}
	tb.Cleanup(tr.CloseIdleConnections)
	return &loadTarget{
		name:      name,
		url:       srv.URL,
		redis:     r,
		transport: tr,
		client:    &http.Client{Transport: tr}, // requests are bounded by their context
		accepted:  accepted,
		sessions:  make([]loadSession, conns),
	}
}

// loginAll logs every worker in, at most GOMAXPROCS logins at a time: each
// is a PBKDF2 check, so more at once would not finish sooner, and 64 of the
// program's 600,000-iteration checks at once on 2 cores starve the
// goroutine that writes the new session so long that the store's 1s
// budget runs out (503). The
// workers' connections that the logins did not open are opened in the
// warm-up.
func (t *loadTarget) loginAll(tb testing.TB) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), loadLoginTimeout)
	defer cancel()
	errs := make([]error, len(t.sessions))
	slots := make(chan struct{}, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for i := range t.sessions {
		wg.Go(func() {
			slots <- struct{}{}
			defer func() { <-slots }()
			u := loadUsers[i%len(loadUsers)]
			t.sessions[i], errs[i] = t.login(ctx, u.name, u.password)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			tb.Fatalf("%s: login of worker %d: %v", t.name, i, err)
		}
	}
}

// login posts the JSON credentials to /api/login and returns the session
// cookie it sets and what /api/me must answer for it.
func (t *loadTarget) login(ctx context.Context, user, password string) (loadSession, error) {
	body, _ := json.Marshal(credentials{Username: user, Password: password})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url+"/api/login", bytes.NewReader(body))
	if err != nil {
		return loadSession{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := t.client.Do(req)
	if err != nil {
		return loadSession{}, err
	}
	defer resp.Body.Close()
	var got struct {
		Token     string `json:"token"`
		SessionID string `json:"session_id"`
		UserID    string `json:"user_id"`
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return loadSession{}, fmt.Errorf("POST /api/login = %d %s, want 200", resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		return loadSession{}, fmt.Errorf("POST /api/login: %v", err)
	}
	if got.Token == "" || got.SessionID == "" || got.UserID != user {
		return loadSession{}, fmt.Errorf("POST /api/login answered %+v, want a token and a session_id for %s", got, user)
	}
	for _, c := range resp.Cookies() {
		if c.Name == "session" { // both the example (InsecureCookie) and scs
			return loadSession{
				cookie: (&http.Cookie{Name: c.Name, Value: c.Value}).String(),
				want: [][]byte{
					[]byte(`"user_id":` + strconv.Quote(user)),
					[]byte(`"session_id":` + strconv.Quote(got.SessionID)),
				},
			}, nil
		}
	}
	return loadSession{}, fmt.Errorf("POST /api/login set no session cookie")
}

// measure runs one timed phase on t and adds what its redis-server, and
// its near-cache if it has one, did during it.
func (t *loadTarget) measure(tb testing.TB, o loadOptions) loadResult {
	tb.Helper()
	accepted := t.accepted.Load()
	var before redisstore.NearCacheStats
	withNear := t.store != nil && t.store.NearCacheSize() > 0
	if withNear {
		before = t.store.NearCacheStats()
	}
	t.redis.ResetStats(tb)
	res := t.run(o.duration, o.maxRequests)
	if withNear {
		after := t.store.NearCacheStats()
		res.near = &redisstore.NearCacheStats{
			Hits:          after.Hits - before.Hits,
			Misses:        after.Misses - before.Misses,
			LeaseExpiries: after.LeaseExpiries - before.LeaseExpiries,
			Flushes:       after.Flushes - before.Flushes,
		}
	}
	res.redisCalls = t.redis.TotalCalls(tb)
	res.redisDials = redisDials(tb, t.redis)
	res.newConns = t.accepted.Load() - accepted
	return res
}

// redisDials returns the connections redis-server accepted since the last
// ResetStats, except the one this question itself opens.
func redisDials(tb testing.TB, r *redistest.Server) int64 {
	tb.Helper()
	info, _ := redis.String(r.Do(tb, "INFO", "stats"), nil)
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "total_connections_received:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				tb.Fatalf("INFO stats: %q", line)
			}
			return n - 1
		}
	}
	tb.Fatal("INFO stats has no total_connections_received")
	return 0
}

// run sends GET /api/me from every worker, each with its own session,
// back to back for d, and at most maxRequests in all. A request is timed
// from just before the client sends it until its body has been read and
// checked. A request in flight when d is over finishes and counts.
func (t *loadTarget) run(d time.Duration, maxRequests int) loadResult {
	n := len(t.sessions)
	perWorker := maxRequests / n
	lat := make([][]time.Duration, n)
	errs := make([]int64, n)
	firstErr := make([]error, n)
	capped := make([]bool, n)

	start := time.Now()
	end := start.Add(d)
	ctx, cancel := context.WithDeadline(context.Background(), end.Add(loadRequestGrace))
	defer cancel()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			s := t.sessions[i]
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.url+"/api/me", nil)
			if err != nil {
				errs[i], firstErr[i] = 1, err
				return
			}
			req.Header.Set("Cookie", s.cookie)
			var body bytes.Buffer
			l := make([]time.Duration, 0, min(perWorker, 1<<14))
			for k := 0; ; k++ {
				t0 := time.Now()
				if !t0.Before(end) {
					break
				}
				if k == perWorker {
					capped[i] = true
					break
				}
				err := t.get(req, &body, s.want)
				l = append(l, time.Since(t0))
				if err != nil {
					errs[i]++
					if firstErr[i] == nil {
						firstErr[i] = err
					}
				}
			}
			lat[i] = l
		})
	}
	wg.Wait()

	res := loadResult{elapsed: time.Since(start)}
	for i := range n {
		res.latencies = append(res.latencies, lat[i]...)
		res.errors += errs[i]
		if res.firstErr == nil {
			res.firstErr = firstErr[i]
		}
		res.capped = res.capped || capped[i]
	}
	res.requests = int64(len(res.latencies))
	slices.Sort(res.latencies)
	return res
}

// get sends req (reused: it has no body, and the previous response is
// closed before it goes again), reads the whole body into buf, so that the
// connection goes back to the pool, and checks the answer: 200 with every
// one of want in the body.
func (t *loadTarget) get(req *http.Request, buf *bytes.Buffer, want [][]byte) error {
	resp, err := t.client.Do(req)
	if err != nil {
		return err
	}
	buf.Reset()
	_, err = buf.ReadFrom(resp.Body)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("GET /api/me: reading the body: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /api/me = %d %.200q, want 200", resp.StatusCode, buf.Bytes())
	}
	for _, w := range want {
		if !bytes.Contains(buf.Bytes(), w) {
			return fmt.Errorf("GET /api/me = %.300q, want %s in it", buf.Bytes(), w)
		}
	}
	return nil
}

// loadResult is what one phase, or several merged, measured.
type loadResult struct {
	requests   int64
	errors     int64
	firstErr   error
	capped     bool            // some worker stopped at its share of -load.maxrequests
	elapsed    time.Duration   // from the start until the last worker finished
	latencies  []time.Duration // of every request, sorted
	redisCalls int64           // commands redis-server ran during the phase
	redisDials int64           // connections redis-server accepted during it
	newConns   int64           // connections the server accepted during it
	// near holds how much the near-cache's Hits, Misses, LeaseExpiries
	// and Flushes grew during it; nil without a near-cache.
	near *redisstore.NearCacheStats
}

// mergeResults pools phases: requests, time and commands add up, and the
// percentiles are those of every request of every phase.
func mergeResults(rs []loadResult) loadResult {
	var m loadResult
	for _, r := range rs {
		m.requests += r.requests
		m.errors += r.errors
		m.capped = m.capped || r.capped
		m.elapsed += r.elapsed
		m.latencies = append(m.latencies, r.latencies...)
		m.redisCalls += r.redisCalls
		m.redisDials += r.redisDials
		m.newConns += r.newConns
		if r.near != nil {
			if m.near == nil {
				m.near = new(redisstore.NearCacheStats)
			}
			m.near.Hits += r.near.Hits
			m.near.Misses += r.near.Misses
			m.near.LeaseExpiries += r.near.LeaseExpiries
			m.near.Flushes += r.near.Flushes
		}
		if m.firstErr == nil {
			m.firstErr = r.firstErr
		}
	}
	slices.Sort(m.latencies)
	return m
}

// rps returns requests per second.
func (r loadResult) rps() float64 { return float64(r.requests) / r.elapsed.Seconds() }

// cmdsPerRequest returns the redis-server commands per request.
func (r loadResult) cmdsPerRequest() float64 { return float64(r.redisCalls) / float64(r.requests) }

// percentile returns the smallest latency that at least a fraction p of the
// requests did not exceed (nearest rank), or 0 without requests.
func (r loadResult) percentile(p float64) time.Duration {
	n := len(r.latencies)
	if n == 0 {
		return 0
	}
	rank := int(math.Ceil(float64(n)*p)) - 1
	return r.latencies[min(max(rank, 0), n-1)]
}

// format returns the figures of r as one line of key=value fields.
func (r loadResult) format(conns int) string {
	var maxLat time.Duration
	if len(r.latencies) > 0 {
		maxLat = r.latencies[len(r.latencies)-1]
	}
	line := fmt.Sprintf("conns=%d secs=%.1f requests=%d rps=%.0f p50=%.2fms p99=%.2fms max=%.2fms errors=%d redis-cmds/req=%.2f redis-dials=%d new-http-conns=%d",
		conns, r.elapsed.Seconds(), r.requests, r.rps(),
		ms(r.percentile(0.50)), ms(r.percentile(0.99)), ms(maxLat),
		r.errors, r.cmdsPerRequest(), r.redisDials, r.newConns)
	if r.near != nil {
		line += fmt.Sprintf(" near-hits=%d near-misses=%d lease-expiries=%d flushes=%d",
			r.near.Hits, r.near.Misses, r.near.LeaseExpiries, r.near.Flushes)
	}
	return line
}

// ms returns d in milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// newSCSTwin returns the scs twin of the example's routes that the load
// test uses, built on scs v2 and scs/redisstore over pool the way the scs
// documentation shows, with the example's defaults (absolute lifetime 24h,
// idle timeout 30m) and the same outer layer (net/http's cross-origin
// protection):
//
//	POST /api/login  the same JSON body and PBKDF2 check (authenticate);
//	                 200 {"token","session_id","user_id","expires_at"}
//	GET  /api/me     200 {"user_id","session_id","created_at","expires_at"};
//	                 401 {"error":"unauthenticated"} without a session
//
// The session is scs's own: the token in its cookie, a gob record under
// "scs:session:<token>" holding user_id, session_id (the SHA-256 of the
// token, base64url, as sessionkit's ids are) and created_at; expires_at is
// scs's deadline. scs has no Bearer tokens: its clients send the cookie.
//
// scs.New starts the cleanup goroutine of the in-memory store it installs
// by default and that is replaced here at once; it ticks once a minute
// until the process exits, and cannot be stopped without a data race in
// scs v2.9.0 (StopCleanup reads a field the goroutine writes). Every scs
// application builds its manager this way, so the twin does too, and
// BenchmarkLoad's leak check leaves that one goroutine out.
func newSCSTwin(pool *redis.Pool) http.Handler {
	// scs keeps values in a gob-encoded map[string]any, so a time.Time
	// value needs registering, as scs's documentation says for every type
	// but gob's basic ones. Registering it again is a no-op.
	gob.Register(time.Time{})
	sm := scs.New()
	sm.Store = scsredisstore.New(pool)
	sm.Lifetime = 24 * time.Hour
	sm.IdleTimeout = 30 * time.Minute

	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/login", func(w http.ResponseWriter, r *http.Request) {
		c, ok := readCredentials(w, r)
		if !ok {
			return
		}
		if !authenticate(c.Username, c.Password) {
			writeError(w, http.StatusUnauthorized, "invalid credentials")
			return
		}
		ctx := r.Context()
		if err := sm.RenewToken(ctx); err != nil {
			writeError(w, http.StatusInternalServerError, "internal error")
			return
		}
		token := sm.Token(ctx)
		sum := sha256.Sum256([]byte(token))
		id := base64.RawURLEncoding.EncodeToString(sum[:])
		sm.Put(ctx, "user_id", c.Username)
		sm.Put(ctx, "session_id", id)
		sm.Put(ctx, "created_at", time.Now().UTC())
		// LoadAndSave commits before the header goes out.
		writeJSON(w, http.StatusOK, loginJSON{ExpiresAt: sm.Deadline(ctx), SessionID: id, Token: token, UserID: c.Username})
	})
	mux.HandleFunc("GET /api/me", func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		user := sm.GetString(ctx, "user_id")
		if user == "" {
			writeError(w, http.StatusUnauthorized, "unauthenticated")
			return
		}
		writeJSON(w, http.StatusOK, meJSON{
			CreatedAt: sm.GetTime(ctx, "created_at"), ExpiresAt: sm.Deadline(ctx),
			SessionID: sm.GetString(ctx, "session_id"), UserID: user,
		})
	})
	return http.NewCrossOriginProtection().Handler(sm.LoadAndSave(mux))
}

// newFloorTwin returns the floor of the load test: a server with the
// example's outer layer (net/http's cross-origin protection) whose
// GET /api/me costs one Redis GET and no session work, the least any
// server that keeps its sessions in Redis can do per request:
//
//	POST /api/login  the same JSON body and PBKDF2 check (authenticate),
//	                 then one SET of the answer /api/me will give under
//	                 "floor:<token>" (32 random bytes, base64url), with the
//	                 cookie session=<token>; 200 {"token","session_id",
//	                 "user_id","expires_at"}
//	GET  /api/me     one GET of "floor:<token>" from the cookie, whose
//	                 value is the answer as it stands: 200 {"user_id",
//	                 "session_id","created_at","expires_at"}; 401
//	                 {"error":"unauthenticated"} without a cookie or a value
//
// No signature, no hash of the token, no record to decode, no idle
// extension: the figures of sessionkit over these are the cost of its
// session handling.
func newFloorTwin(pool *redis.Pool) http.Handler {
	const lifetime = 24 * time.Hour
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/login", func(w http.ResponseWriter, r *http.Request) {
		c, ok := readCredentials(w, r)
		if !ok {
			return
		}
		if !authenticate(c.Username, c.Password) {
			writeError(w, http.StatusUnauthorized, "invalid credentials")
			return
		}
		raw := make([]byte, 32)
		rand.Read(raw) // never fails
		token := base64.RawURLEncoding.EncodeToString(raw)
		sum := sha256.Sum256([]byte(token))
		id := base64.RawURLEncoding.EncodeToString(sum[:])
		now := time.Now().UTC()
		me, _ := json.Marshal(meJSON{CreatedAt: now, ExpiresAt: now.Add(lifetime), SessionID: id, UserID: c.Username})
		conn, err := pool.GetContext(r.Context())
		if err == nil {
			_, err = redis.DoWithTimeout(conn, time.Second, "SET", "floor:"+token, me, "PX", lifetime.Milliseconds())
			conn.Close()
		}
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, "session store unavailable")
			return
		}
		http.SetCookie(w, &http.Cookie{Name: "session", Value: token, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
		writeJSON(w, http.StatusOK, loginJSON{ExpiresAt: now.Add(lifetime), SessionID: id, Token: token, UserID: c.Username})
	})
	mux.HandleFunc("GET /api/me", func(w http.ResponseWriter, r *http.Request) {
		ck, err := r.Cookie("session")
		if err != nil {
			writeError(w, http.StatusUnauthorized, "unauthenticated")
			return
		}
		conn, err := pool.GetContext(r.Context())
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, "session store unavailable")
			return
		}
		me, err := redis.Bytes(redis.DoWithTimeout(conn, time.Second, "GET", "floor:"+ck.Value))
		conn.Close()
		switch {
		case err == redis.ErrNil:
			writeError(w, http.StatusUnauthorized, "unauthenticated")
			return
		case err != nil:
			writeError(w, http.StatusServiceUnavailable, "session store unavailable")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(me)
	})
	return http.NewCrossOriginProtection().Handler(mux)
}

// TestLoadHarness runs BenchmarkLoad's harness briefly, so that `make test`
// keeps it honest: two workers per contender for a few hundred
// milliseconds with every answer checked, sessionkit and the floor at
// exactly one Redis command per request (so that no other contender's
// traffic counts in theirs), sessionkit-near serving from its near-cache
// and sessionkit without one, the request cap obeyed, and every contender
// answering 401 to a request without a session.
func TestLoadHarness(t *testing.T) {
	targets := startLoadTargets(t, 2)
	if names := targetNames(targets); !slices.Equal(names, []string{"sessionkit", "sessionkit-near", "scs", "floor"}) || len(names) != loadContenders {
		t.Fatalf("contenders %v, want sessionkit, sessionkit-near, scs and floor (loadContenders %d)", names, loadContenders)
	}
	for _, tg := range targets {
		if tg.name == "sessionkit-near" {
			waitFor(t, 10*time.Second, "sessionkit-near's near-cache to connect", func() bool { return tg.store.NearCacheStats().Connected })
		}
		res := tg.measure(t, loadOptions{duration: 300 * time.Millisecond, maxRequests: 1_000_000})
		if res.errors > 0 || res.requests == 0 {
			t.Errorf("%s: %d requests, %d errors (first: %v), want some and no errors", tg.name, res.requests, res.errors, res.firstErr)
		}
		if (tg.name == "sessionkit" || tg.name == "floor") && res.redisCalls != res.requests {
			t.Errorf("%s: %d Redis commands for %d requests, want one each", tg.name, res.redisCalls, res.requests)
		}
		switch {
		case tg.name == "sessionkit-near":
			if n := tg.store.NearCacheSize(); n != loadNearEntries || res.near == nil || res.near.Hits == 0 {
				t.Errorf("sessionkit-near: near-cache of %d entries, %+v in a phase of %d requests; want %d entries and hits",
					n, res.near, res.requests, loadNearEntries)
			} else if line := res.format(2); !strings.Contains(line, " near-hits=") {
				t.Errorf("sessionkit-near: load line %q lacks the near-cache's counters", line)
			}
		case res.near != nil || tg.store != nil && tg.store.NearCacheSize() != 0:
			t.Errorf("%s: has a near-cache (%+v in the phase), want none", tg.name, res.near)
		}
		if res := tg.run(time.Minute, 4); res.requests != 4 || !res.capped || res.errors > 0 {
			t.Errorf("%s: run capped at 4 requests = %d requests, capped %v, %d errors; want 4, true, 0", tg.name, res.requests, res.capped, res.errors)
		}

		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, tg.url+"/api/me", nil)
		resp, err := tg.client.Do(req)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), `"error"`) {
			t.Errorf("%s: GET /api/me without a session = %d %s, want 401 with an error", tg.name, resp.StatusCode, body)
		}
	}
}
