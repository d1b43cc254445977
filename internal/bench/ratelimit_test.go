package bench

// The rate limiters compared: sessionkit's middleware.RateLimit, the
// Redis-backed peer github.com/ulule/limiter/v3 with its Redis store (on
// go-redis, with a Lua script), and github.com/go-chi/httprate with its
// in-memory counter, the floor a limiter that asks no server cannot beat
// (and that several app instances cannot share).

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-chi/httprate"
	goredis "github.com/redis/go-redis/v9"
	"github.com/ulule/limiter/v3"
	"github.com/ulule/limiter/v3/drivers/middleware/stdlib"
	ululeredis "github.com/ulule/limiter/v3/drivers/store/redis"

	"github.com/sessionkit/sessionkit/middleware"
	"github.com/sessionkit/sessionkit/redisstore"
)

// rateSecret is sessionkit's key for hashing the limited addresses.
var rateSecret = []byte("benchmark rate limit secret, 32 b")

// limitedOK is what the limited handler answers.
const limitedOK = "ok"

// limitedHandler answers limitedOK.
var limitedHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	io.WriteString(w, limitedOK)
})

// rateMaker builds one app instance of a limiter that admits limit
// requests per window per client address.
type rateMaker struct {
	name  string
	build func(tb testing.TB, e *env, limit int, window time.Duration) http.Handler
}

// rateMakers are the contenders, in the order each round runs them.
var rateMakers = []rateMaker{
	{"sessionkit", newSessionkitLimiter},
	{"ulule-redis", newUluleLimiter},
	{"httprate-memory", newHTTPRateLimiter},
}

// newSessionkitLimiter is middleware.RateLimit by address on a Store with
// the env's pool settings.
func newSessionkitLimiter(tb testing.TB, e *env, limit int, window time.Duration) http.Handler {
	tb.Helper()
	store, err := redisstore.New(e.pool(tb), e.cfg)
	if err != nil {
		tb.Fatal(err)
	}
	mw, err := middleware.RateLimit(store, middleware.RateLimitConfig{
		Secret: rateSecret,
		Rules:  []middleware.Rule{{Name: "bench", Limit: limit, Window: window, Key: middleware.ByIP()}},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return mw(limitedHandler)
}

// newUluleLimiter is ulule/limiter's net/http middleware (keyed by the
// address) with its Redis store, on a go-redis client with the env's pool
// size and timeouts.
func newUluleLimiter(tb testing.TB, e *env, limit int, window time.Duration) http.Handler {
	tb.Helper()
	client := goredis.NewClient(&goredis.Options{
		Addr:         e.cfg.Addr,
		PoolSize:     e.cfg.MaxActive,
		MaxIdleConns: e.cfg.MaxIdle,
		DialTimeout:  e.cfg.DialTimeout,
		ReadTimeout:  e.cfg.ReadTimeout,
		WriteTimeout: e.cfg.WriteTimeout,
	})
	tb.Cleanup(func() { client.Close() })
	store, err := ululeredis.NewStoreWithOptions(client, limiter.StoreOptions{Prefix: "ulule"})
	if err != nil {
		tb.Fatal(err)
	}
	l := limiter.New(store, limiter.Rate{Period: window, Limit: int64(limit)})
	return stdlib.NewMiddleware(l).Handler(limitedHandler)
}

// newHTTPRateLimiter is httprate's middleware keyed by the address, with
// its default in-memory counter.
func newHTTPRateLimiter(tb testing.TB, _ *env, limit int, window time.Duration) http.Handler {
	return httprate.LimitBy(limit, window, func(r *http.Request) (string, error) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		return host, err
	})(limitedHandler)
}

// admitted is a request that every limiter admits: the limit is far above
// any b.N. Each contender counts under its own keys.
func admitted(tb testing.TB, c *contender, _ int) func(int) {
	r := request(http.MethodGet, "/limited", nil)
	return func(int) { expect(tb, c, c.serve(r), limitedOK, false) }
}

// refused is a request over the limit (1 per hour; the scenario empties
// Redis, then spends it): the 429 path.
func refused(tb testing.TB, c *contender, _ int) func(int) {
	c.env.redis.Do(tb, "FLUSHDB")
	r := request(http.MethodGet, "/limited", nil)
	if w := c.serve(r); w.Code != http.StatusOK {
		tb.Fatalf("%s: first request = %d, want 200", c.name, w.Code)
	}
	return func(int) {
		if w := c.serve(r); w.Code != http.StatusTooManyRequests {
			tb.Helper()
			tb.Fatalf("%s: request over the limit = %d, want 429", c.name, w.Code)
		}
	}
}

// rateContenders returns the makers of each in contender form for limit
// requests per hour.
func rateContenders(e *env, limit int) []maker {
	ms := make([]maker, len(rateMakers))
	for i, rm := range rateMakers {
		ms[i] = maker{rm.name, func(tb testing.TB) *contender {
			return &contender{env: e, name: rm.name, handler: rm.build(tb, e, limit, time.Hour)}
		}}
	}
	return ms
}

// rateTargets are the goals for time per request, and the floor for
// reference.
var rateTargets = []target{
	{name: "ratelimit-admit-vs-ulule-redis", num: "BenchmarkRateLimit/admitted/sessionkit", den: "BenchmarkRateLimit/admitted/ulule-redis", max: 1.0},
	{name: "ratelimit-refuse-vs-ulule-redis", num: "BenchmarkRateLimit/refused/sessionkit", den: "BenchmarkRateLimit/refused/ulule-redis", max: 1.0},
}

// rateFloors compare with the in-memory counter: no target, a reference
// for what the Redis round trip costs.
var rateFloors = []target{
	{name: "ratelimit-admit-vs-httprate-memory", num: "BenchmarkRateLimit/admitted/sessionkit", den: "BenchmarkRateLimit/admitted/httprate-memory"},
}

// BenchmarkRateLimit measures a request admitted by each limiter and one
// refused with 429, in interleaved rounds (-rounds), then runs the
// exactness run (rateExactness) once per contender and prints a "ratio"
// line per target and an "admitted" line per contender: how many of 2,000
// concurrent requests from one address, spread over four app instances,
// a limit of 100 let through (sessionkit: exactly 100, else MISS).
func BenchmarkRateLimit(b *testing.B) {
	e := newEnv(b)
	b.Run("admitted", func(b *testing.B) {
		each(b, e, admitted, rateContenders(e, math.MaxInt32)...)
	})
	b.Run("refused", func(b *testing.B) {
		each(b, e, refused, rateContenders(e, 1)...)
	})
	printTargets(os.Stdout, rateTargets, true)
	printTargets(os.Stdout, rateFloors, true)
	const limit, requests = 100, 2000
	for _, rm := range rateMakers {
		n := rateExactness(b, e, rm, limit, requests)
		verdict := "peer" // only sessionkit has a goal here
		if rm.name == "sessionkit" {
			verdict = "ok"
			if n != limit {
				verdict = "MISS"
			}
		}
		fmt.Printf("admitted %s %d of %d, limit %d, overshoot %d, 4 instances %s\n", rm.name, n, requests, limit, n-limit, verdict)
	}
}

// rateExactness builds four app instances of rm (separate pools, clients
// or counters, as four processes would have), all admitting limit
// requests per hour per address, sends requests concurrently spread over
// them from one address, and returns how many were admitted. A shared,
// exact limiter admits exactly limit.
func rateExactness(tb testing.TB, e *env, rm rateMaker, limit, requests int) int {
	tb.Helper()
	const instances = 4
	e.redis.Do(tb, "FLUSHDB")
	hs := make([]http.Handler, instances)
	for i := range hs {
		hs[i] = rm.build(tb, e, limit, time.Hour)
	}
	var (
		ok, other atomic.Int64
		wg        sync.WaitGroup
	)
	start := make(chan struct{})
	for i := range requests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			r := httptest.NewRequest(http.MethodPost, "/login", nil).WithContext(context.Background())
			r.RemoteAddr = "203.0.113.50:" + strconv.Itoa(1024+i%60000)
			w := httptest.NewRecorder()
			hs[i%instances].ServeHTTP(w, r)
			switch w.Code {
			case http.StatusOK:
				ok.Add(1)
			case http.StatusTooManyRequests:
			default:
				other.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	if n := other.Load(); n > 0 {
		tb.Fatalf("%s: %d answers neither 200 nor 429", rm.name, n)
	}
	return int(ok.Load())
}

// TestRateLimitContenders runs the scenarios against every limiter, so
// that a broken harness fails "make test" rather than timing requests that
// did not do the work, and checks the exactness run: sessionkit admits
// exactly the limit across four instances.
func TestRateLimitContenders(t *testing.T) {
	e := newEnv(t)
	for _, sc := range []struct {
		name  string
		sc    scenario
		limit int
	}{{"admitted", admitted, math.MaxInt32}, {"refused", refused, 1}} {
		for _, mk := range rateContenders(e, sc.limit) {
			t.Run(sc.name+"/"+mk.name, func(t *testing.T) {
				op := sc.sc(t, mk.build(t), 3)
				for i := range 3 {
					op(i)
				}
			})
		}
	}
	for _, rm := range rateMakers {
		if rm.name != "sessionkit" {
			continue
		}
		if n := rateExactness(t, e, rm, 20, 200); n != 20 {
			t.Errorf("%s admitted %d of 200 concurrent requests with a limit of 20, want exactly 20", rm.name, n)
		}
	}
}
