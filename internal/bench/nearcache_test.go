package bench

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sessionkit/sessionkit/middleware"
	"github.com/sessionkit/sessionkit/redisstore"
	"github.com/sessionkit/sessionkit/session"
)

// nearEntries is the near-cache size of the sessionkit-near contender.
const nearEntries = 10_000

// sessionkitNear is sessionkit with redisstore's near-cache on (default
// Staleness, 20ms), the idle timeout of the other contenders, and only the
// routes the read and load scenarios use (/read, /login).
func (e *env) sessionkitNear(idleTimeout time.Duration, strict bool) maker {
	name := "sessionkit-near"
	if strict {
		name += "-strict"
	}
	return maker{name, func(tb testing.TB) *contender { return newSessionkitNear(tb, e, name, idleTimeout, strict) }}
}

func newSessionkitNear(tb testing.TB, e *env, name string, idleTimeout time.Duration, strict bool) *contender {
	tb.Helper()
	cfg := e.cfg
	cfg.NearCache = redisstore.NearCache{MaxEntries: nearEntries, Strict: strict}
	store, err := redisstore.New(e.pool(tb), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { store.Close() }) // stops the invalidation connection
	deadline := time.Now().Add(10 * time.Second)
	for !store.NearCacheStats().Connected {
		if time.Now().After(deadline) {
			tb.Fatal("near-cache not connected after 10s")
		}
		time.Sleep(time.Millisecond)
	}
	m, err := session.New(store, session.Config{
		Keys:        [][]byte{signingKey},
		IdleTimeout: idleTimeout,
		Logger:      slog.New(slog.DiscardHandler),
	})
	if err != nil {
		tb.Fatal(err)
	}
	c := &contender{env: e, name: name, cookieName: session.DefaultCookieName}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /read", func(w http.ResponseWriter, r *http.Request) {
		user, ok := session.UserID(r.Context())
		if !ok {
			user = anonymous
		}
		io.WriteString(w, user)
	})
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		if _, err := session.Create(r.Context(), userID); err != nil {
			fail(w, err)
			return
		}
		io.WriteString(w, "ok")
	})
	c.handler = middleware.Sessions(m)(mux)
	return c
}

// BenchmarkNearCache measures an authenticated read served from the
// near-cache (sessionkit-near), beside the one-GET floor (redigo-get),
// sessionkit without it, and scs, all with a 30-minute idle timeout, in
// -rounds interleaved rounds; then prints
//
//	ratio near-read-vs-get-floor <value> 0.20 ok|MISS
//	ratio near-read-vs-scs <value> ...
//
// from the medians, as TestMain does for the other targets.
func BenchmarkNearCache(b *testing.B) {
	e := newEnv(b)
	b.Run("read", func(b *testing.B) {
		each(b, e, read, e.redigoGet(), e.sessionkitNear(idle, false), e.sessionkit(idle), e.scs(idle))
	})
	printTargets(os.Stdout, []target{
		{name: "near-read-vs-get-floor", num: "BenchmarkNearCache/read/sessionkit-near", den: "BenchmarkNearCache/read/redigo-get", max: 0.2},
		{name: "near-read-vs-scs", num: "BenchmarkNearCache/read/sessionkit-near", den: "BenchmarkNearCache/read/scs", max: 0.2},
		{name: "near-read-vs-sessionkit", num: "BenchmarkNearCache/read/sessionkit-near", den: "BenchmarkNearCache/read/sessionkit", max: 0.2},
	}, true)
}

var (
	nearLoadDuration = flag.Duration("nearload.duration", 3*time.Second, "how long BenchmarkNearCacheLoad drives each contender in each round")
	nearLoadWorkers  = flag.Int("nearload.workers", 64, "workers (and keep-alive connections) of BenchmarkNearCacheLoad")
	nearLoadSessions = flag.Int("nearload.sessions", 1000, "sessions the workers of BenchmarkNearCacheLoad read, round robin")
)

// BenchmarkNearCacheLoad drives each contender over loopback HTTP
// (httptest.NewServer) with -nearload.workers workers on as many
// keep-alive connections, each sending GET /read with the cookies of
// -nearload.sessions logged-in sessions in turn, for -nearload.duration
// after a 1s warm-up, in -rounds interleaved rounds. Every answer is
// checked. It prints one line per contender and round,
//
//	nearload <name> round=<n> requests=<n> rps=<n> p50=<ms> p99=<ms> errors=<n> redis-cmds/req=<n>
//
// and the ratio of the medians' requests per second, sessionkit-near to
// scs, against the target of 3.
func BenchmarkNearCacheLoad(b *testing.B) {
	e := newEnv(b)
	makers := []maker{e.sessionkitNear(idle, false), e.sessionkitNear(idle, true), e.sessionkit(idle), e.scs(idle)}
	rps := map[string][]float64{}
	for round := 1; round <= max(*rounds, 1); round++ {
		for _, mk := range makers {
			c := mk.build(b)
			res := nearLoad(b, e, c)
			rps[mk.name] = append(rps[mk.name], res.rps())
			// Recorded like the other benchmarks' figures (ns per request
			// of the whole server), so that TestMain knows figures exist.
			record("BenchmarkNearCacheLoad/"+mk.name, 1, result{nsPerOp: 1e9 / res.rps(), cmdsPerOp: float64(res.cmds) / float64(res.requests)})
			fmt.Printf("nearload %s round=%d %s\n", mk.name, round, res)
		}
	}
	med := func(name string) float64 { return median(slices.Clone(rps[name])) }
	v := med("sessionkit-near") / med("scs")
	verdict := "ok"
	if v < 3 {
		verdict = "MISS"
	}
	fmt.Printf("ratio nearload-rps-vs-scs %.2f 3.00(min) %s\n", v, verdict)
	fmt.Printf("ratio nearload-rps-strict-vs-sessionkit %.2f\n", med("sessionkit-near-strict")/med("sessionkit"))
}

// loadResult is what one nearLoad run measured.
type loadResult struct {
	requests, errors int
	elapsed          time.Duration
	latencies        []time.Duration // one sample per 16 requests
	cmds             int64
}

func (r loadResult) rps() float64 { return float64(r.requests) / r.elapsed.Seconds() }

func (r loadResult) String() string {
	slices.Sort(r.latencies)
	pct := func(p float64) float64 {
		if len(r.latencies) == 0 {
			return 0
		}
		return float64(r.latencies[int(p*float64(len(r.latencies)-1))]) / float64(time.Millisecond)
	}
	return fmt.Sprintf("requests=%d rps=%.0f p50=%.2fms p99=%.2fms errors=%d redis-cmds/req=%.3f",
		r.requests, r.rps(), pct(0.5), pct(0.99), r.errors, float64(r.cmds)/float64(max(r.requests, 1)))
}

// nearLoad serves c over loopback HTTP and drives it (see
// BenchmarkNearCacheLoad).
func nearLoad(b *testing.B, e *env, c *contender) loadResult {
	srv := httptest.NewServer(c.handler)
	defer srv.Close()
	cookies := make([]*http.Cookie, *nearLoadSessions)
	for i := range cookies {
		cookies[i] = c.login(b)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: *nearLoadWorkers, MaxConnsPerHost: *nearLoadWorkers}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	run := func(d time.Duration) loadResult {
		var mu sync.Mutex
		var total loadResult
		var wg sync.WaitGroup
		start := time.Now()
		stop := start.Add(d)
		for w := range *nearLoadWorkers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var res loadResult
				var buf bytes.Buffer
				for i := w; time.Now().Before(stop); i += *nearLoadWorkers {
					req, _ := http.NewRequest(http.MethodGet, srv.URL+"/read", nil)
					req.Header.Set("User-Agent", userAgent)
					req.AddCookie(cookies[i%len(cookies)])
					t0 := time.Now()
					resp, err := client.Do(req)
					if err == nil {
						buf.Reset()
						_, err = buf.ReadFrom(resp.Body)
						resp.Body.Close()
						if err == nil && (resp.StatusCode != http.StatusOK || buf.String() != userID) {
							err = fmt.Errorf("answer %d %q", resp.StatusCode, buf.String())
						}
					}
					res.requests++
					if err != nil {
						res.errors++
					}
					if res.requests%16 == 0 {
						res.latencies = append(res.latencies, time.Since(t0))
					}
				}
				mu.Lock()
				total.requests += res.requests
				total.errors += res.errors
				total.latencies = append(total.latencies, res.latencies...)
				mu.Unlock()
			}()
		}
		wg.Wait()
		total.elapsed = time.Since(start)
		return total
	}
	run(time.Second) // warm-up: connections, pools, the near-cache
	e.resetStats(b)
	res := run(*nearLoadDuration)
	res.cmds = e.totalCalls(b)
	if res.errors > 0 {
		b.Fatalf("nearload %s: %d errors of %d requests", c.name, res.errors, res.requests)
	}
	return res
}

// TestNearCacheHarness runs the read scenario against the near-cache
// contenders, and checks that a logout through plain sessionkit on the same
// Redis is refused by them, so that a broken contender fails "make test"
// rather than producing figures.
func TestNearCacheHarness(t *testing.T) {
	e := newEnv(t)
	for _, strict := range []bool{false, true} {
		mk := e.sessionkitNear(idle, strict)
		t.Run(mk.name, func(t *testing.T) {
			near := mk.build(t)
			op := read(t, near, 3)
			for i := range 3 {
				op(i)
			}
			// Another instance (plain sessionkit, same keys) logs the
			// session out; the near-cache instance refuses it within the
			// default Staleness, 20ms.
			other := newSessionkit(t, e, idle)
			cookie := near.login(t)
			expect(t, near, near.serve(request(http.MethodGet, "/read", cookie)), userID, false)
			expect(t, other, other.serve(request(http.MethodPost, "/logout", cookie)), "ok", true)
			loggedOut := time.Now()
			deadline := loggedOut.Add(10 * time.Second)
			for {
				start := time.Now()
				w := near.serve(request(http.MethodGet, "/read", cookie))
				if w.Body.String() == anonymous {
					break
				}
				if start.Sub(loggedOut) > redisstore.DefaultNearCacheStaleness {
					t.Fatalf("%s: read %v after the logout = %q, want %q", mk.name, start.Sub(loggedOut), w.Body.String(), anonymous)
				}
				if time.Now().After(deadline) {
					t.Fatal("never refused")
				}
			}
		})
	}
}
