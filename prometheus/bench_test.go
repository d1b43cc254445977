package sessionkitprom

// The cost of the metrics on the read path: an authenticated read through
// middleware.Sessions, session.Manager and redisstore.Store on one real
// redis-server, with the metrics off and on, apart and paired
// (alternating blocks of reads). BenchmarkRead prints two "ratio <name>
// <value> <target> ok|MISS" lines, like internal/bench;
// TestReadAllocsWithMetrics checks in every "make test" that the metrics add
// no allocation to a read.

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionkit/sessionkit/internal/paired"
	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/middleware"
	"github.com/sessionkit/sessionkit/redisstore"
	"github.com/sessionkit/sessionkit/session"
)

// rounds is how many times BenchmarkRead runs each contender. The rounds
// interleave them (metrics-off, metrics-on, metrics-off, ...), as in
// internal/bench, so that both saw the same conditions on a machine whose
// load drifts; the testing package names the repeats name#01, name#02.
var rounds = flag.Int("rounds", 3, "run each contender of BenchmarkRead this many `times`, interleaved")

const (
	// readUser is the user every reader logs in; the read route answers it.
	readUser = "user-42"
	// readUserAgent is sent with every request, as a browser would.
	readUserAgent = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
	// warmReads are sent before anything is measured.
	warmReads = 10
)

// readKey signs the readers' session tokens.
var readKey = []byte("benchmark signing key, 32 bytes!")

// reader is the app of internal/bench's sessionkit contender, reduced to a
// login and a read: middleware.Sessions in front of a session.Manager on a
// redisstore.Store of its own, with the settings of internal/bench. With
// the metrics on, a Metrics registered with a fresh registry is the
// Manager's session.Metrics and the Store's redisstore.Observer, and
// watches the Store's pool; nothing else differs.
type reader struct {
	name    string
	handler http.Handler
	req     *http.Request        // GET /read with the cookie of a logged-in session
	reg     *prometheus.Registry // nil with the metrics off
}

// newReader returns a reader on the redis-server at addr whose session is
// logged in, with its Store closed when tb ends.
func newReader(tb testing.TB, addr string, metricsOn bool) *reader {
	tb.Helper()
	r := &reader{name: "metrics-off"}
	storeCfg := redisstore.Config{
		Addr:         addr,
		DialTimeout:  time.Second,
		ReadTimeout:  time.Second,
		WriteTimeout: time.Second,
		MaxActive:    64,
		MaxIdle:      64,
		IdleTimeout:  5 * time.Minute,
		Timeout:      time.Second,
	}
	sessionCfg := session.Config{
		Keys:        [][]byte{readKey},
		IdleTimeout: 30 * time.Minute,
		Logger:      slog.New(slog.DiscardHandler),
	}
	var m *Metrics
	if metricsOn {
		r.name, r.reg = "metrics-on", prometheus.NewRegistry()
		var err error
		if m, err = New(r.reg, Options{}); err != nil {
			tb.Fatal(err)
		}
		// Set only here: a nil *Metrics in an interface would not be nil.
		storeCfg.Observer, sessionCfg.Metrics = m, m
	}
	store, err := redisstore.Open(storeCfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { store.Close() })
	if m != nil {
		if err := m.WatchPool(store); err != nil {
			tb.Fatal(err)
		}
	}
	mgr, err := session.New(store, sessionCfg)
	if err != nil {
		tb.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /read", func(w http.ResponseWriter, r *http.Request) {
		user, ok := session.UserID(r.Context())
		if !ok {
			user = "anonymous"
		}
		io.WriteString(w, user)
	})
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		if _, err := session.Create(r.Context(), readUser); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "ok")
	})
	r.handler = middleware.Sessions(mgr)(mux)

	w := r.serve(readRequest(http.MethodPost, "/login", nil))
	if w.Code != http.StatusOK || w.Body.String() != "ok" {
		tb.Fatalf("%s: POST /login = %d %q, want 200 \"ok\"", r.name, w.Code, w.Body.String())
	}
	for _, c := range w.Result().Cookies() {
		if c.Name == session.DefaultCookieName {
			r.req = readRequest(http.MethodGet, "/read", &http.Cookie{Name: c.Name, Value: c.Value})
		}
	}
	if r.req == nil {
		tb.Fatalf("%s: POST /login set no %s cookie", r.name, session.DefaultCookieName)
	}
	for range warmReads {
		r.read(tb)
	}
	return r
}

// readRequest returns a request for target carrying cookie c, if not nil.
func readRequest(method, target string, c *http.Cookie) *http.Request {
	req := httptest.NewRequest(method, target, nil)
	req.Header.Set("User-Agent", readUserAgent)
	if c != nil {
		req.AddCookie(c)
	}
	return req
}

// serve sends req as a server would send a new request: a shallow copy and
// a new recorder (internal/bench's contender.serve).
func (r *reader) serve(req *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	r.handler.ServeHTTP(w, req.WithContext(req.Context()))
	return w
}

// read sends one authenticated read and fails tb unless it answers the
// logged-in user, so that a reader that stopped reading the session would
// fail rather than look fast. The check does not allocate.
func (r *reader) read(tb testing.TB) {
	w := r.serve(r.req)
	//lint:ignore S1030 the compiler compares string(b) without copying b; Body.String() would allocate
	if w.Code != http.StatusOK || string(w.Body.Bytes()) != readUser {
		tb.Helper()
		tb.Fatalf("%s: GET /read = %d %q, want 200 %q", r.name, w.Code, w.Body.String(), readUser)
	}
}

// loads returns how many store loads the reader's Metrics observed (the
// count of sessionkit_store_operation_duration_seconds{op="load"}), or 0
// with the metrics off.
func (r *reader) loads(tb testing.TB) uint64 {
	tb.Helper()
	if r.reg == nil {
		return 0
	}
	families, err := r.reg.Gather()
	if err != nil {
		tb.Fatalf("Gather: %v", err)
	}
	for _, f := range families {
		if f.GetName() != namespace+"_store_operation_duration_seconds" {
			continue
		}
		for _, mt := range f.GetMetric() {
			for _, l := range mt.GetLabel() {
				if l.GetName() == "op" && l.GetValue() == "load" {
					return mt.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	tb.Fatal(`no sessionkit_store_operation_duration_seconds{op="load"} series`)
	return 0
}

// checkObserved fails tb unless the reader's Metrics, if on, observed
// exactly want more loads than before: every read went through the
// Observer, so metrics-on measured what it claims to.
func (r *reader) checkObserved(tb testing.TB, before, want uint64) {
	tb.Helper()
	if r.reg == nil {
		return
	}
	if got := r.loads(tb) - before; got != want {
		tb.Fatalf("%s: the Metrics observed %d loads over %d reads, want one per read", r.name, got, want)
	}
}

// readRun is what one benchmark run measured.
type readRun struct {
	// allocsPerOp is the runtime.MemStats Mallocs delta around the timed
	// loop divided by b.N in integers, the figure -benchmem prints (and
	// testing.AllocsPerRun returns), so that a stray allocation elsewhere
	// in the process cannot make it fractional.
	allocsPerOp uint64
}

// measureRead times b.N reads of a new reader (b.N loop rather than
// b.Loop, as internal/bench's measure), reports the Redis commands per
// read, and returns the figures of the run. Setup garbage is collected
// before the timer starts, so that it is not charged to the reads.
func measureRead(b *testing.B, srv *redistest.Server, metricsOn bool) readRun {
	b.ReportAllocs()
	r := newReader(b, srv.Addr(), metricsOn)
	loadsBefore := r.loads(b)
	runtime.GC()
	srv.ResetStats(b)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for range b.N {
		r.read(b)
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(srv.TotalCalls(b))/float64(b.N), "redis-cmds/op")
	r.checkObserved(b, loadsBefore, uint64(b.N))
	return readRun{
		allocsPerOp: (after.Mallocs - before.Mallocs) / uint64(b.N),
	}
}

// measurePaired times b.N reads of each of a metrics-off and a metrics-on
// reader, built anew, sent in alternating blocks (internal/paired), and
// returns the time a read took with the metrics on over the time it took
// with them off. Two runs half a second apart (metrics-off, then
// metrics-on) can each land in a slow or a fast phase of the machine: the
// ratio of those runs moved between 0.82 and 1.21 on one VM, for a cost of
// the metrics that is a fraction of a percent.
func measurePaired(b *testing.B, srv *redistest.Server) float64 {
	off, on := newReader(b, srv.Addr(), false), newReader(b, srv.Addr(), true)
	loadsBefore := on.loads(b)
	runtime.GC()
	b.ResetTimer()
	spent := paired.Time(b.N, func(int) { off.read(b) }, func(int) { on.read(b) })
	b.StopTimer()
	on.checkObserved(b, loadsBefore, uint64(b.N))
	b.ReportMetric(float64(spent[0].Nanoseconds())/float64(b.N), "off-ns/read")
	b.ReportMetric(float64(spent[1].Nanoseconds())/float64(b.N), "on-ns/read")
	return float64(spent[1]) / float64(spent[0])
}

// BenchmarkRead measures an authenticated read (one GETEX on Redis) with
// the metrics off and on, in interleaved rounds (-rounds), each contender
// built anew, on a fresh registry, for every run, on one redis-server, and
// in each round both at once in alternating blocks (paired: see
// measurePaired). When its runs are done it prints two ratio lines (see
// printReadRatios): the allocations from the separate runs, the time from
// the paired ones.
//
// The lines come from the benchmark itself, not from TestMain as in
// internal/bench: this package's TestMain (main_test.go) is the leak check's.
// The testing package runs a benchmark that has sub-benchmarks once, so
// the lines are printed once per run of the binary, after the last
// sub-benchmark, and not at all without -bench.
//
// How the figures are kept: the testing package runs each sub-benchmark
// with b.N = 1, then with a growing b.N, and prints the last run (with
// -count, it does this count times in a row). A b.N = 1 run opens a new
// slot, later runs overwrite it, so each slot ends up holding a printed
// run; the ratios use the medians over the slots.
func BenchmarkRead(b *testing.B) {
	var off, on []readRun
	var paired []float64
	b.Cleanup(func() { printReadRatios(os.Stdout, off, on, paired) })
	srv := redistest.Start(b)
	for range max(*rounds, 1) {
		for _, metricsOn := range []bool{false, true} {
			name, runs := "metrics-off", &off
			if metricsOn {
				name, runs = "metrics-on", &on
			}
			var slots []readRun
			b.Run(name, func(b *testing.B) {
				run := measureRead(b, srv, metricsOn)
				if b.N == 1 || len(slots) == 0 {
					slots = append(slots, run)
				} else {
					slots[len(slots)-1] = run
				}
			})
			*runs = append(*runs, slots...)
		}
		var slots []float64
		b.Run("paired", func(b *testing.B) {
			ratio := measurePaired(b, srv)
			if b.N == 1 || len(slots) == 0 {
				slots = append(slots, ratio)
			} else {
				slots[len(slots)-1] = ratio
			}
		})
		paired = append(paired, slots...)
	}
}

// The targets for the cost of the metrics on a read.
const (
	// extraAllocsTarget is the most allocations a read may add with the
	// metrics on: none.
	extraAllocsTarget = 0.0
	// timeTarget is the most the median read with the metrics on may take,
	// relative to the median read with them off.
	timeTarget = 1.05
)

// printReadRatios prints, from the printed runs of each contender and of
// the paired runs,
//
//	ratio metrics-read-extra-allocs <median on − median off allocs/op> 0.00 ok|MISS
//	ratio metrics-read-time <median of the paired runs' on/off> 1.05 ok|MISS
//
// The first is deterministic: allocs/op are integers (see readRun), so
// their difference is exactly 0 unless the metrics allocate on the read
// path. When nothing ran (redis-server missing, so the benchmark skipped)
// it prints both lines as "n/a" and MISS, so that a run without figures
// cannot pass for a good one; when -bench left out a contender, only the
// line whose runs are all there.
func printReadRatios(w io.Writer, off, on []readRun, paired []float64) {
	if len(paired) > 0 {
		defer func() {
			ratio := readMedian(paired)
			fmt.Fprintf(w, "ratio metrics-read-time %.3f %.2f %s\n", ratio, timeTarget, verdict(ratio <= timeTarget))
		}()
	}
	if len(off) == 0 || len(on) == 0 {
		if len(off) == 0 && len(on) == 0 && len(paired) == 0 {
			fmt.Fprintf(w, "ratio metrics-read-extra-allocs n/a %.2f MISS\n", extraAllocsTarget)
			fmt.Fprintf(w, "ratio metrics-read-time n/a %.2f MISS\n", timeTarget)
		}
		return
	}
	allocs := func(runs []readRun) float64 {
		v := make([]float64, len(runs))
		for i, r := range runs {
			v[i] = float64(r.allocsPerOp)
		}
		return readMedian(v)
	}
	extra := allocs(on) - allocs(off)
	fmt.Fprintf(w, "ratio metrics-read-extra-allocs %.3f %.2f %s\n", extra, extraAllocsTarget, verdict(extra <= extraAllocsTarget))
}

func verdict(ok bool) string {
	if ok {
		return "ok"
	}
	return "MISS"
}

func readMedian(v []float64) float64 {
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// TestReadAllocsWithMetrics checks the allocation target in every "make
// test": an authenticated read on a real redis-server
// allocates exactly as often with the metrics on as with them off. Each
// reader is measured twice, interleaved, and every measurement must agree,
// so a fluke in one cannot hide a difference.
func TestReadAllocsWithMetrics(t *testing.T) {
	const reads = 200
	srv := redistest.Start(t)
	off, on := newReader(t, srv.Addr(), false), newReader(t, srv.Addr(), true)
	loadsBefore := on.loads(t)
	var got [2][]float64
	for range 2 {
		for i, r := range []*reader{off, on} {
			got[i] = append(got[i], testing.AllocsPerRun(reads, func() { r.read(t) }))
		}
	}
	// AllocsPerRun makes one warm-up call before its runs.
	on.checkObserved(t, loadsBefore, 2*(reads+1))
	want := got[0][0]
	if want == 0 {
		t.Fatalf("metrics-off: a read allocates 0 times: the reads did not reach the session layer")
	}
	for _, n := range slices.Concat(got[0], got[1]) {
		if n != want {
			t.Fatalf("allocations per read: metrics-off %v, metrics-on %v; want the same, the metrics must not allocate on the read path", got[0], got[1])
		}
	}
	t.Logf("allocations per read: metrics-off %v, metrics-on %v", got[0], got[1])
}
