package bench

import (
	"flag"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/sessionkit/sessionkit/internal/paired"
)

// A scenario prepares n operations of one kind for a contender and returns
// the operation the benchmark times: op(i), for i in [0, n), sends the i-th
// request and fails tb unless the answer is the one the scenario expects, so
// a contender that silently stopped doing the work would fail rather than
// look fast. Everything that is not the request itself (logins for the
// sessions the requests carry, building the requests) happens in the
// scenario, before the timer starts.
type scenario func(tb testing.TB, c *contender, n int) (op func(i int))

// read is an authenticated read: the request carries the cookie of a
// logged-in session and the handler reads the user id.
func read(tb testing.TB, c *contender, _ int) func(int) {
	r := request(http.MethodGet, "/read", c.login(tb))
	return func(int) { expect(tb, c, c.serve(r), userID, false) }
}

// write stores a value in a logged-in session.
func write(tb testing.TB, c *contender, _ int) func(int) {
	r := request(http.MethodPost, "/write", c.login(tb))
	return func(int) { expect(tb, c, c.serve(r), "ok", false) }
}

// login creates a session for a request that came without one.
//
// Each user logs in loginsPerUser times, so that every login finds its
// user's index as a login of a user with a few devices does, whatever the
// run's length. (Logging one user in b.N times grows that user's index to
// tens of thousands of sessions within a run, so that the time per login
// depends on b.N; loginOneUser keeps that shape as a reference.)
func login(tb testing.TB, c *contender, n int) func(int) {
	run := loginRuns.Add(1) // users of their own: the same Redis serves every round
	reqs := make([]*http.Request, n)
	for i := range reqs {
		reqs[i] = request(http.MethodPost, fmt.Sprintf("/login?user=login-%d-%d", run, i/loginsPerUser), nil)
	}
	return func(i int) { expect(tb, c, c.serve(reqs[i]), "ok", true) }
}

// loginsPerUser is how many sessions login gives each user: a phone, a
// laptop, a work computer and a tablet, as BenchmarkSessionBytes's middle
// shape.
const loginsPerUser = 4

// loginRuns numbers the scenarios login made, for their user names.
var loginRuns atomic.Int64

// loginOneUser logs the same user in at every operation, without logging
// out: that user's index grows by one session per operation, to tens of
// thousands in a run, and with it the cost of a sessionkit login.
func loginOneUser(tb testing.TB, c *contender, _ int) func(int) {
	r := request(http.MethodPost, "/login", nil)
	return func(int) { expect(tb, c, c.serve(r), "ok", true) }
}

// loginValues creates a session holding the user id and two small values.
func loginValues(tb testing.TB, c *contender, _ int) func(int) {
	r := request(http.MethodPost, "/login-values", nil)
	return func(int) { expect(tb, c, c.serve(r), "ok", true) }
}

// logout ends a logged-in session. Each operation needs a session of its
// own, so the scenario logs in n times first.
func logout(tb testing.TB, c *contender, n int) func(int) {
	reqs := make([]*http.Request, n)
	for i := range reqs {
		reqs[i] = request(http.MethodPost, "/logout", c.login(tb))
	}
	return func(i int) { expect(tb, c, c.serve(reqs[i]), "ok", true) }
}

// forged sends a well-formed cookie that is not a session of the contender:
// for sessionkit a real token signed with another key, for gorilla a
// session id encoded with another key, for scs (whose tokens are not
// signed) a random token.
func forged(tb testing.TB, c *contender, _ int) func(int) {
	r := request(http.MethodGet, "/read", c.forged)
	return func(int) { expect(tb, c, c.serve(r), anonymous, false) }
}

// noCookie sends no cookie at all.
func noCookie(tb testing.TB, c *contender, _ int) func(int) {
	r := request(http.MethodGet, "/read", nil)
	return func(int) { expect(tb, c, c.serve(r), anonymous, false) }
}

// list lists the sessions of a user who has 10 while env.listOthers
// sessions of other users sit in the same Redis. sessionkit reads the user's index;
// scs has no index, so its only way is SessionManager.Iterate, which with
// scs/redisstore runs KEYS and a GET per session in the store.
func list(tb testing.TB, c *contender, _ int) func(int) {
	c.env.redis.Do(tb, "FLUSHDB") // only this contender's sessions count
	for range 10 {
		c.login(tb)
	}
	for range c.env.listOthers {
		expect(tb, c, c.serve(request(http.MethodPost, "/login-other", nil)), "ok", true)
	}
	r := request(http.MethodGet, "/list", c.login(tb))
	return func(int) { expect(tb, c, c.serve(r), "11", false) }
}

// measure runs the scenario b.N times against c, reports allocations and
// Redis commands per operation, and records the figures for the ratio
// lines (see TestMain).
//
// It uses a b.N loop rather than b.Loop because the logout scenario must
// create b.N sessions before the timer starts, and b.Loop does not tell the
// iteration count in advance. Setup garbage is collected before the timer
// starts, so that it is not charged to the operation.
func measure(b *testing.B, e *env, sc scenario, c *contender) {
	b.ReportAllocs()
	if c.env != nil {
		e = c.env // the contender's own deployment, where it differs
	}
	op := sc(b, c, b.N)
	runtime.GC()
	e.resetStats(b)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for i := range b.N {
		op(i)
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	cmds := float64(e.totalCalls(b)) / float64(b.N)
	b.ReportMetric(cmds, "redis-cmds/op")
	if c.lastKey != "" {
		reportRecordSize(b, e, c.lastKey)
	}
	record(b.Name(), b.N, result{
		nsPerOp:     float64(b.Elapsed().Nanoseconds()) / float64(b.N),
		allocsPerOp: float64(after.Mallocs-before.Mallocs) / float64(b.N),
		cmdsPerOp:   cmds,
	})
}

// maker builds a contender; the name is known before it is built.
type maker struct {
	name  string
	build func(tb testing.TB) *contender
}

// The contenders, with the settings of each benchmark. Where a library has
// an idle timeout it is 30 minutes unless the name says otherwise.
func (e *env) sessionkit(idleTimeout time.Duration) maker {
	return maker{"sessionkit", func(tb testing.TB) *contender { return newSessionkit(tb, e, idleTimeout) }}
}

func (e *env) sessionkitCluster(idleTimeout time.Duration) maker {
	return maker{"sessionkit-cluster", func(tb testing.TB) *contender { return newSessionkit(tb, e, idleTimeout) }}
}

func (e *env) scs(idleTimeout time.Duration) maker {
	return maker{"scs", func(tb testing.TB) *contender { return newSCS(tb, e, idleTimeout) }}
}

func (e *env) gorilla() maker {
	return maker{"gorilla", func(tb testing.TB) *contender { return newGorilla(tb, e) }}
}

func (e *env) bare() maker {
	return maker{"bare", func(testing.TB) *contender { return newBare() }}
}

func (e *env) redigoGet() maker {
	return maker{"redigo-get", func(tb testing.TB) *contender { return newRedigoGet(tb, e) }}
}

// rounds is how many times each contender runs each scenario. The rounds
// interleave the contenders (sessionkit, scs, gorilla, sessionkit, scs,
// ...), unlike -count, which repeats one benchmark before the next: on a
// machine whose load drifts, contenders compared in the same round saw the
// same conditions. The testing package names the repeats name#01, name#02.
var rounds = flag.Int("rounds", 3, "run each contender's benchmarks this many `times`, interleaved")

// each runs scenario sc for every contender, as sub-benchmarks named after
// them, in rounds. A contender is built anew for every run of its
// sub-benchmark (the testing package runs it several times with a growing
// b.N); the scenario's setup warms its pool before the timer starts.
func each(b *testing.B, e *env, sc scenario, makers ...maker) {
	for range max(*rounds, 1) {
		for _, mk := range makers {
			b.Run(mk.name, func(b *testing.B) { measure(b, e, sc, mk.build(b)) })
		}
	}
}

// BenchmarkRead measures an authenticated read, with an idle timeout of 30
// minutes (gorilla has none) and without, and the floors: a handler without
// sessions and a handler that sends one GET.
func BenchmarkRead(b *testing.B) {
	e := newEnv(b)
	b.Run("idle", func(b *testing.B) {
		each(b, e, read, e.sessionkit(idle), e.scs(idle))
	})
	b.Run("noidle", func(b *testing.B) {
		each(b, e, read, e.sessionkit(-1), e.scs(0), e.gorilla())
	})
	b.Run("floor", func(b *testing.B) {
		each(b, e, read, e.bare(), e.redigoGet())
	})
}

// BenchmarkWrite measures a request that stores a value in the session.
func BenchmarkWrite(b *testing.B) {
	e := newEnv(b)
	each(b, e, write, e.sessionkit(idle), e.scs(idle), e.gorilla())
}

// BenchmarkLogin measures creating a session: session.Create for
// sessionkit, which also adds the session to its user's index, RenewToken
// and Put for scs, a new session and Save for gorilla. Each user logs in
// loginsPerUser times (see login). Each round ends with sessionkit and scs
// paired (see measurePaired), which login-vs-scs compares.
func BenchmarkLogin(b *testing.B) {
	e := newEnv(b)
	for range max(*rounds, 1) {
		for _, mk := range []maker{e.sessionkit(idle), e.scs(idle), e.gorilla()} {
			b.Run(mk.name, func(b *testing.B) { measure(b, e, login, mk.build(b)) })
		}
		b.Run("paired", func(b *testing.B) { measurePaired(b, login, e.sessionkit(idle), e.scs(idle)) })
	}
}

// BenchmarkLoginCommands takes login-vs-scs apart in Redis: what the
// commands of a login cost without sessionkit's or scs's Go code. A redigo
// connection sends, for each login, the pipeline scs/redisstore sends
// (MULTI, SET, PEXPIREAT, EXEC) with the record an scs login stores, and
// others send sessionkit's pipeline (redisstore's AddUserSession without a
// limit or a replaced session) with the record a sessionkit login stores,
// cut after its first command, its second, and so on: "sessionkit-1-set"
// sends the record alone, "sessionkit-2-zadd" the record and the ZADD,
// "sessionkit-5-zremrangebyscore" all five. Users log in loginsPerUser
// times, as in BenchmarkLogin; every side writes keys of its own. All
// sides are timed together in alternating blocks (internal/paired), and
// each prints a reference ratio line against scs's pipeline, the median of
// the rounds'.
func BenchmarkLoginCommands(b *testing.B) {
	e := newEnv(b)
	skRecord, scsRecord := loginRecord(b, e, e.sessionkit(idle), "session:*"), loginRecord(b, e, e.scs(idle), "scs:session:*")
	// Each of sessionkit's sides sends the first n commands of these.
	skCommands := []string{"set", "zadd", "pexpireat-nx", "pexpireat-gt", "zremrangebyscore"}
	const ttl = 30 * time.Minute
	for range max(*rounds, 1) {
		b.Run("paired", func(b *testing.B) {
			run := loginRuns.Add(1) // keys of their own, at every b.N
			ops := make([]func(int), 1+len(skCommands))
			names := make([]string, len(ops))
			names[0] = "scs"
			conn := dial(b, e)
			ops[0] = func(i int) {
				// The length of an scs token, 43 characters.
				key := fmt.Sprintf("scs:session:%020d%023d", run, i)
				conn.Send("MULTI")
				conn.Send("SET", key, scsRecord)
				conn.Send("PEXPIREAT", key, time.Now().Add(ttl).UnixMilli())
				conn.Send("EXEC")
				flush(b, conn)
			}
			for n := 1; n <= len(skCommands); n++ {
				names[n] = skSide(n, skCommands[n-1])
				conn := dial(b, e)
				ops[n] = func(i int) {
					id := fmt.Sprintf("%02d%06d%014d", n, run, i) // 22 characters, as an id
					index := fmt.Sprintf("user:login-%d-%d-%d:sessions", run, n, i/loginsPerUser)
					deadline := time.Now().Add(24 * time.Hour).UnixMilli()
					conn.Send("SET", "session:"+id, skRecord, "PX", ttl.Milliseconds(), "NX")
					if n > 1 {
						conn.Send("ZADD", index, deadline, id)
					}
					if n > 2 {
						conn.Send("PEXPIREAT", index, deadline+time.Minute.Milliseconds(), "NX")
					}
					if n > 3 {
						conn.Send("PEXPIREAT", index, deadline+time.Minute.Milliseconds(), "GT")
					}
					if n > 4 {
						conn.Send("ZREMRANGEBYSCORE", index, "-inf", time.Now().Add(-time.Minute).UnixMilli())
					}
					flush(b, conn)
				}
			}
			timePaired(b, names, ops)
		})
	}
	var ts []target
	for i, c := range skCommands {
		name := skSide(i+1, c)
		ts = append(ts, target{name: "login-commands-" + name + "-vs-scs", num: "BenchmarkLoginCommands/paired/" + name, den: "BenchmarkLoginCommands/paired/scs", paired: true})
	}
	printTargets(os.Stdout, ts, false)
}

// skSide names the side of BenchmarkLoginCommands that sends the first n
// of sessionkit's commands, the last of them command.
func skSide(n int, command string) string {
	return fmt.Sprintf("sessionkit-%d-%s", n, command)
}

// loginRecord logs a user in through the contender mk builds and returns
// the record it stored, the value of the one key matching pattern.
func loginRecord(b *testing.B, e *env, mk maker, pattern string) []byte {
	b.Helper()
	c := mk.build(b) // which may log in sessions of its own
	e.redis.Do(b, "FLUSHALL", "SYNC")
	c.login(b)
	keys, err := redis.Strings(e.redis.Do(b, "KEYS", pattern), nil)
	if err != nil || len(keys) != 1 {
		b.Fatalf("%s: want the key of one record, got %q (%v)", pattern, keys, err)
	}
	record, err := redis.Bytes(e.redis.Do(b, "GET", keys[0]), nil)
	if err != nil {
		b.Fatal(err)
	}
	e.redis.Do(b, "FLUSHALL", "SYNC")
	return record
}

// dial returns a connection to e's server, closed when tb ends.
func dial(tb testing.TB, e *env) redis.Conn {
	tb.Helper()
	conn, err := redis.Dial("tcp", e.redis.Addr())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return conn
}

// flush sends what conn queued and reads every reply, failing tb on an
// error reply.
func flush(tb testing.TB, conn redis.Conn) {
	replies, err := redis.Values(conn.Do(""))
	if err != nil {
		tb.Fatal(err)
	}
	for _, r := range replies {
		if err, ok := r.(redis.Error); ok {
			tb.Fatal(err)
		}
	}
}

// measurePaired runs b.N operations of sc through each of two contenders,
// built anew, in alternating blocks (internal/paired), and records the
// time an operation took through each as a run of
// "<benchmark>/<contender>" (as BenchmarkLogin/paired/sessionkit). Two runs
// half a second apart can each land in a slow or a fast phase of the
// machine; a target that compares paired contenders takes the median of the
// rounds' ratios (target.paired). Allocations and commands are those of the
// separate runs; the garbage collector's work lands on whichever contender
// runs when it does, so the one that allocates more shares its collections
// with the other.
func measurePaired(b *testing.B, sc scenario, a, c maker) {
	cs := []*contender{a.build(b), c.build(b)}
	timePaired(b, []string{cs[0].name, cs[1].name}, []func(int){sc(b, cs[0], b.N), sc(b, cs[1], b.N)})
}

// timePaired times b.N operations of each of ops in alternating blocks
// (internal/paired) and records each side's time an operation as a run of
// "<benchmark>/<name>", names[k] naming ops[k].
func timePaired(b *testing.B, names []string, ops []func(int)) {
	runtime.GC()
	b.ResetTimer()
	spent := paired.Time(b.N, ops...)
	b.StopTimer()
	for i, name := range names {
		ns := float64(spent[i].Nanoseconds()) / float64(b.N)
		b.ReportMetric(ns, name+"-ns/op")
		record(trimRepeat(b.Name())+"/"+name, b.N, result{nsPerOp: ns})
	}
}

// BenchmarkLoginOneUser measures a login of a user who logged in at every
// earlier operation and never out (see loginOneUser): a reference for
// what a user's very large index costs a login.
func BenchmarkLoginOneUser(b *testing.B) {
	e := newEnv(b)
	each(b, e, loginOneUser, e.sessionkit(idle), e.scs(idle))
}

// BenchmarkLogout measures ending a session: session.Destroy, scs's
// Destroy, gorilla's MaxAge -1 and Save.
func BenchmarkLogout(b *testing.B) {
	e := newEnv(b)
	each(b, e, logout, e.sessionkit(idle), e.scs(idle), e.gorilla())
}

// BenchmarkForgedCookie measures a request with a well-formed cookie that is
// not a session (see forged).
func BenchmarkForgedCookie(b *testing.B) {
	e := newEnv(b)
	each(b, e, forged, e.sessionkit(idle), e.scs(idle), e.gorilla())
}

// BenchmarkNoCookie measures a request without a cookie.
func BenchmarkNoCookie(b *testing.B) {
	e := newEnv(b)
	each(b, e, noCookie, e.sessionkit(idle), e.scs(idle), e.gorilla())
}

// BenchmarkList measures listing a user's sessions (see list). gorilla has
// no way to do it.
func BenchmarkList(b *testing.B) {
	e := newEnv(b)
	each(b, e, list, e.sessionkit(idle), e.scs(idle))
}

// BenchmarkCluster measures an authenticated read and a login on a Redis
// Cluster of three masters (no replicas), beside the same on one server:
// the cost of binding each call to its slot's node. Both contenders are
// sessionkit with the same settings; the cluster one has a TagKey, which
// a cluster requires.
func BenchmarkCluster(b *testing.B) {
	one, cl := newEnv(b), newClusterEnv(b)
	b.Run("read", func(b *testing.B) {
		each(b, one, read, one.sessionkit(idle), cl.sessionkitCluster(idle))
	})
	// The login of these figures: one user, whose index grows (see
	// loginOneUser).
	b.Run("login", func(b *testing.B) {
		each(b, one, loginOneUser, one.sessionkit(idle), cl.sessionkitCluster(idle))
	})
}

// BenchmarkRecordSize measures a login that also stores two small values,
// and reports the Redis memory of the session it creates (MEMORY USAGE of
// the key, which counts the key, the value and Redis's overhead) and the
// length of the stored record.
func BenchmarkRecordSize(b *testing.B) {
	e := newEnv(b)
	each(b, e, loginValues, e.sessionkit(idle), e.scs(idle), e.gorilla())
}

// reportRecordSize reports the Redis memory of the session under key
// (MEMORY USAGE, which counts the key, the value and Redis's overhead) and
// the length of the stored record.
func reportRecordSize(b *testing.B, e *env, key string) {
	mem, err := redis.Int64(e.redis.Do(b, "MEMORY", "USAGE", key), nil)
	if err != nil {
		b.Fatalf("MEMORY USAGE: %v", err)
	}
	n, err := redis.Int64(e.redis.Do(b, "STRLEN", key), nil)
	if err != nil || n == 0 {
		b.Fatalf("STRLEN = %d, %v: no record under the key", n, err)
	}
	b.ReportMetric(float64(mem), "redis-B/session")
	b.ReportMetric(float64(n), "record-B/session")
}

// TestScenarios runs every scenario a few times against every contender
// that takes part in it, checking each answer, so that a broken harness
// fails "make test" rather than producing figures for requests that did not
// do the work.
func TestScenarios(t *testing.T) {
	e := newEnv(t)
	contenders := map[string]maker{
		"sessionkit-idle":   e.sessionkit(idle),
		"sessionkit-noidle": e.sessionkit(-1),
		"scs-idle":          e.scs(idle),
		"scs-noidle":        e.scs(0),
		"gorilla":           e.gorilla(),
	}
	scenarios := map[string]scenario{
		"read": read, "write": write, "login": login, "login-one-user": loginOneUser, "login-values": loginValues,
		"logout": logout, "forged": forged, "no-cookie": noCookie, "list": list,
	}
	e.listOthers = 100 // the benchmark's 10,000 would make this test slow
	for cname, mk := range contenders {
		for sname, sc := range scenarios {
			if sname == "list" && !strings.HasPrefix(cname, "sessionkit") && !strings.HasPrefix(cname, "scs") {
				continue
			}
			t.Run(cname+"/"+sname, func(t *testing.T) {
				c := mk.build(t)
				const n = 3
				op := sc(t, c, n)
				for i := range n {
					op(i)
				}
			})
		}
	}
	t.Run("floor", func(t *testing.T) {
		for _, c := range []*contender{newBare(), newRedigoGet(t, e)} {
			op := read(t, c, 1)
			op(0)
		}
	})
	t.Run("logout-ends-session", func(t *testing.T) {
		for _, mk := range contenders {
			c := mk.build(t)
			cookie := c.login(t)
			expect(t, c, c.serve(request(http.MethodPost, "/logout", cookie)), "ok", true)
			expect(t, c, c.serve(request(http.MethodGet, "/read", cookie)), anonymous, false)
		}
	})
}

// desktopUserAgent is the user agent of the memory benchmark: Chrome on
// Windows, the most common desktop browser, in the reduced form Chrome
// sends.
const desktopUserAgent = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"

// memoryLogins is how many logins one operation of BenchmarkSessionBytes
// makes.
const memoryLogins = 2000

// BenchmarkSessionBytes measures what a logged-in session costs in Redis
// memory: the growth of INFO's used_memory over memoryLogins logins, each
// with a desktop browser's user agent and two small values, divided by the
// logins. Each operation starts from an empty database. For sessionkit the
// figure holds the record and the session's share of its user's index; the
// users have perUser sessions each (1: every login a new user, whose index
// is a key of its own; memoryLogins: one user, whose index is one large
// sorted set).
//
// It ends with one ratio line per user shape, sessionkit's bytes over
// scs's: the target is at most 1.
func BenchmarkSessionBytes(b *testing.B) {
	for _, perUser := range []int{1, 4, memoryLogins} {
		e := newEnv(b)
		name := fmt.Sprintf("per-user=%d", perUser)
		b.Run(name, func(b *testing.B) {
			each(b, e, sessionBytes(perUser), e.sessionkit(idle), e.scs(idle))
		})
		sk, scs := sessionBytesOf(b.Name()+"/"+name+"/sessionkit"), sessionBytesOf(b.Name()+"/"+name+"/scs")
		if sk == 0 || scs == 0 {
			continue // filtered out by -bench
		}
		verdict := "ok"
		if sk/scs > 1 {
			verdict = "MISS"
		}
		fmt.Printf("ratio session-bytes-%s-vs-scs %.3f 1.00 %s\n", name, sk/scs, verdict)
	}
}

// sessionBytesResults holds the last used-B/session figure of each
// sub-benchmark of BenchmarkSessionBytes, by name without the #01 of a
// repeat, for its ratio lines.
var sessionBytesResults = struct {
	sync.Mutex
	m map[string]float64
}{m: make(map[string]float64)}

// sessionBytesOf returns the figure of sub-benchmark name, or 0.
func sessionBytesOf(name string) float64 {
	sessionBytesResults.Lock()
	defer sessionBytesResults.Unlock()
	return sessionBytesResults.m[name]
}

// sessionBytes returns the scenario of BenchmarkSessionBytes: each
// operation empties the database (FLUSHALL), logs memoryLogins sessions
// in, perUser of each user, and reports the growth of used_memory per session as the
// metric "used-B/session".
func sessionBytes(perUser int) scenario {
	return func(tb testing.TB, c *contender, n int) func(int) {
		b := tb.(*testing.B)
		reqs := make([]*http.Request, memoryLogins)
		for i := range reqs {
			reqs[i] = request(http.MethodPost, fmt.Sprintf("/login-values?user=user-%05d", i/perUser), nil)
			reqs[i].Header.Set("User-Agent", desktopUserAgent)
		}
		var total int64
		return func(i int) {
			b.StopTimer()
			if i == 0 {
				// One unmeasured batch first, with every command the
				// measured ones send: Redis 7 allocates each command's
				// latency histogram on its first call after CONFIG
				// RESETSTAT (which measure sends before the first
				// operation), about 100 KB in all, which would otherwise
				// be charged to the first batch's sessions and make the
				// figure depend on how many operations the run makes.
				c.env.redis.Do(b, "FLUSHALL", "SYNC")
				usedMemory(b, c.env)
				for _, r := range reqs {
					expect(b, c, c.serve(r), "ok", true)
				}
			}
			c.env.redis.Do(b, "FLUSHALL", "SYNC")
			before := usedMemory(b, c.env)
			b.StartTimer()
			for _, r := range reqs {
				expect(b, c, c.serve(r), "ok", true)
			}
			b.StopTimer()
			total += usedMemory(b, c.env) - before
			if i == n-1 {
				perSession := float64(total) / float64(n*memoryLogins)
				b.ReportMetric(perSession, "used-B/session")
				name := b.Name()
				if i := strings.LastIndexByte(name, '#'); i >= 0 {
					name = name[:i]
				}
				sessionBytesResults.Lock()
				sessionBytesResults.m[name] = perSession
				sessionBytesResults.Unlock()
			}
			b.StartTimer()
		}
	}
}

// usedMemory returns INFO's used_memory of e's server.
func usedMemory(tb testing.TB, e *env) int64 {
	tb.Helper()
	info, err := redis.String(e.redis.Do(tb, "INFO", "memory"), nil)
	if err != nil {
		tb.Fatal(err)
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return n
		}
	}
	tb.Fatal("INFO memory has no used_memory")
	return 0
}

// parallelTargets are the goals of BenchmarkParallel, whose benchmark
// function prints their ratio lines itself (see printTargets). The forged
// cookie has no goal of its own under concurrency; its figures print with
// the benchmark's.
var parallelTargets = []target{
	{name: "parallel-read-idle-vs-scs", num: "BenchmarkParallel/read/sessionkit", den: "BenchmarkParallel/read/scs", max: 0.45},
	{name: "parallel-read-idle-vs-get-floor", num: "BenchmarkParallel/read/sessionkit", den: "BenchmarkParallel/read/redigo-get", max: 2.0},
}

// BenchmarkParallel drives the read with an idle timeout and the forged
// cookie with b.RunParallel, GOMAXPROCS goroutines at once, so that every
// CPU is busy and the CPU each request costs decides the throughput: the
// figures are the time per request of the whole machine. It ends with the
// ratio lines of parallelTargets.
func BenchmarkParallel(b *testing.B) {
	e := newEnv(b)
	b.Run("read", func(b *testing.B) {
		eachParallel(b, e, "/read", false, e.sessionkit(idle), e.scs(idle), e.redigoGet())
	})
	b.Run("forged", func(b *testing.B) {
		eachParallel(b, e, "/read", true, e.sessionkit(idle), e.scs(idle))
	})
	printTargets(os.Stdout, parallelTargets, true)
}

// eachParallel is each for measureParallel.
func eachParallel(b *testing.B, e *env, path string, forged bool, makers ...maker) {
	for range max(*rounds, 1) {
		for _, mk := range makers {
			b.Run(mk.name, func(b *testing.B) { measureParallel(b, e, mk.build(b), path, forged) })
		}
	}
}

// measureParallel sends GET path from GOMAXPROCS goroutines at once with
// the cookie of a logged-in session (with forged, the contender's forged
// cookie) and checks every answer: the user id, or "anonymous" for a
// forged cookie. It records the figures as measure does.
func measureParallel(b *testing.B, e *env, c *contender, path string, forged bool) {
	b.ReportAllocs()
	cookie, want := c.login(b), userID
	if forged {
		cookie, want = c.forged, anonymous
	}
	r := request(http.MethodGet, path, cookie)
	runtime.GC()
	e.resetStats(b)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			w := c.serve(r)
			//lint:ignore S1030 the compiler compares string(b) without copying b
			if w.Code != http.StatusOK || string(w.Body.Bytes()) != want {
				b.Errorf("%s: answer = %d %q, want 200 %q", c.name, w.Code, w.Body.String(), want)
				return
			}
		}
	})
	b.StopTimer()
	runtime.ReadMemStats(&after)
	cmds := float64(e.totalCalls(b)) / float64(b.N)
	b.ReportMetric(cmds, "redis-cmds/op")
	record(b.Name(), b.N, result{
		nsPerOp:     float64(b.Elapsed().Nanoseconds()) / float64(b.N),
		allocsPerOp: float64(after.Mallocs-before.Mallocs) / float64(b.N),
		cmdsPerOp:   cmds,
	})
}
