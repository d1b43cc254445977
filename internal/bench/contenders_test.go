package bench

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	scsredisstore "github.com/alexedwards/scs/redisstore"
	"github.com/alexedwards/scs/v2"
	"github.com/boj/redistore"
	"github.com/gomodule/redigo/redis"
	"github.com/gorilla/securecookie"

	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/middleware"
	"github.com/sessionkit/sessionkit/redisstore"
	"github.com/sessionkit/sessionkit/session"
)

const (
	// userID is the user every contender logs in.
	userID = "user-42"
	// anonymous is what the read route answers without a session.
	anonymous = "anonymous"
	// userAgent is sent with every request, so that sessionkit, which keeps
	// the user agent in its record, stores a realistic one.
	userAgent = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
	// idle is the idle timeout of the contenders that have one.
	idle = 30 * time.Minute
)

// Signing keys. The forging key signs the well-formed but forged cookies.
// On a cluster, both Managers tag keys with clusterTagKey, a key of its
// own (session.New refuses a TagKey that is also a signing key).
var (
	signingKey    = []byte("benchmark signing key of 32 bytes")
	forgingKey    = []byte("the forger's own key, of 32 bytes")
	clusterTagKey = []byte("benchmark hash-tag key, 32 bytes!")
)

// env is the redis-server of one benchmark function and the pool settings
// every contender shares, or for BenchmarkCluster a Redis Cluster.
type env struct {
	redis   *redistest.Server  // nil for a cluster
	cluster *redistest.Cluster // nil for one server
	cfg     redisstore.Config
	// listOthers is how many sessions of other users the list scenario
	// puts in Redis.
	listOthers int
}

// newEnv starts a redis-server that lives as long as tb.
func newEnv(tb testing.TB) *env {
	tb.Helper()
	e := newEnvSettings()
	e.redis = redistest.Start(tb)
	e.cfg.Addr = e.redis.Addr()
	return e
}

// newEnvSettings returns an env with the shared settings and no server.
func newEnvSettings() *env {
	return &env{listOthers: 10_000, cfg: redisstore.Config{
		DialTimeout:  time.Second,
		ReadTimeout:  time.Second,
		WriteTimeout: time.Second,
		MaxActive:    64,
		MaxIdle:      64,
		IdleTimeout:  5 * time.Minute,
		Timeout:      time.Second, // used by sessionkit's Store only
	}}
}

// newClusterEnv starts a Redis Cluster of three masters without replicas
// that lives as long as tb, with the settings of newEnv.
func newClusterEnv(tb testing.TB) *env {
	tb.Helper()
	c := redistest.StartCluster(tb, redistest.ClusterOptions{ReplicasPerMaster: -1})
	e := newEnvSettings()
	e.cluster = c
	e.cfg.ClusterNodes = c.Addrs()
	return e
}

// servers returns the servers whose commands count: the one server, or
// the cluster's masters.
func (e *env) servers(tb testing.TB) []*redistest.Server {
	if e.cluster != nil {
		return e.cluster.Masters(tb)
	}
	return []*redistest.Server{e.redis}
}

// resetStats resets the command counts of e's servers.
func (e *env) resetStats(tb testing.TB) {
	for _, s := range e.servers(tb) {
		s.ResetStats(tb)
	}
}

// totalCalls returns the commands e's servers ran since resetStats.
func (e *env) totalCalls(tb testing.TB) int64 {
	var n int64
	for _, s := range e.servers(tb) {
		n += s.TotalCalls(tb)
	}
	return n
}

// pool returns a new pool with the shared settings, closed when tb ends.
// Every contender gets its own, built the same way (including redisstore's
// TestOnBorrow, a non-blocking read that sends no command).
func (e *env) pool(tb testing.TB) *redis.Pool {
	tb.Helper()
	p, err := redisstore.NewPool(e.cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.Close() })
	return p
}

// contender is one session library behind the benchmark app, whose routes
// are
//
//	GET  /read          answers the user id, or "anonymous"
//	POST /write         stores the value "visits" (a counter), answers "ok"
//	POST /login         logs in (userID, or the query parameter user) with a
//	                    new session, answers "ok"
//	POST /login-values  logs in (userID, or the query parameter user) and
//	                    stores "theme" and "lang", answers "ok"
//	POST /logout        ends the session, answers "ok"
//	POST /login-other   logs in another user each time, answers "ok"
//	GET  /list          answers how many sessions the caller's user has
//
// A contender without sessions (bare, redigo-get) has only /read, which
// answers userID.
type contender struct {
	env        *env
	name       string
	handler    http.Handler
	cookieName string       // "" for a contender without sessions
	forged     *http.Cookie // well-formed, but not a session of this contender

	visits  int    // last value stored by /write
	others  int    // other users logged in by /login-other
	lastKey string // Redis key of the session /login-values last created
}

// serve sends r to the contender as a server would send a new request: a
// shallow copy (gorilla/sessions stores its registry in the request it is
// given) and a new recorder.
func (c *contender) serve(r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	c.handler.ServeHTTP(w, r.WithContext(r.Context()))
	return w
}

// login logs userID in and returns the session cookie, or nil for a
// contender without sessions.
func (c *contender) login(tb testing.TB) *http.Cookie {
	tb.Helper()
	if c.cookieName == "" {
		return nil
	}
	w := c.serve(request(http.MethodPost, "/login", nil))
	expect(tb, c, w, "ok", true)
	for _, ck := range w.Result().Cookies() {
		if ck.Name == c.cookieName {
			return &http.Cookie{Name: ck.Name, Value: ck.Value}
		}
	}
	tb.Fatalf("%s: POST /login set no %s cookie", c.name, c.cookieName)
	return nil
}

// loginUser returns the user /login and /login-values log in: the query parameter
// user, or userID without one.
func loginUser(r *http.Request) string {
	if u := r.URL.Query().Get("user"); u != "" {
		return u
	}
	return userID
}

// request returns a request for target carrying the cookie c, if not nil.
func request(method, target string, c *http.Cookie) *http.Request {
	r := httptest.NewRequest(method, target, nil)
	r.Header.Set("User-Agent", userAgent)
	if c != nil {
		r.AddCookie(c)
	}
	return r
}

// expect fails tb unless w is a 200 with body want and, if setCookie, a
// Set-Cookie header. It does not allocate, so it can run inside the timed
// loop: every timed request is checked.
func expect(tb testing.TB, c *contender, w *httptest.ResponseRecorder, want string, setCookie bool) {
	//lint:ignore S1030 the compiler compares string(b) without copying b; Body.String() would allocate
	if w.Code != http.StatusOK || string(w.Body.Bytes()) != want {
		tb.Helper()
		tb.Fatalf("%s: answer = %d %q, want 200 %q", c.name, w.Code, w.Body.String(), want)
	}
	if setCookie && len(w.Header()["Set-Cookie"]) == 0 {
		tb.Helper()
		tb.Fatalf("%s: answer has no Set-Cookie", c.name)
	}
}

// fail answers a handler error with a 500 the checks will report.
func fail(w http.ResponseWriter, err error) {
	http.Error(w, err.Error(), http.StatusInternalServerError)
}

// newSessionkit returns sessionkit with the given idle timeout (negative:
// none), signing with key. Logging goes to slog.DiscardHandler: the
// figures compare session handling, not log output.
func newSessionkit(tb testing.TB, e *env, idleTimeout time.Duration) *contender {
	tb.Helper()
	c := sessionkitWithKey(tb, e, idleTimeout, signingKey)
	// A forged cookie: a real session token, signed by a key this
	// Manager does not know.
	c.forged = sessionkitWithKey(tb, e, idleTimeout, forgingKey).login(tb)
	return c
}

func sessionkitWithKey(tb testing.TB, e *env, idleTimeout time.Duration, key []byte) *contender {
	tb.Helper()
	var store *redisstore.Store
	var tagKey []byte
	var err error
	if e.cluster != nil {
		// redisstore opens the cluster's pools itself, one per node, with
		// the same settings.
		store, err = redisstore.Open(e.cfg)
		tagKey = clusterTagKey
		if err == nil {
			tb.Cleanup(func() { store.Close() })
		}
	} else {
		store, err = redisstore.New(e.pool(tb), e.cfg)
	}
	if err != nil {
		tb.Fatal(err)
	}
	m, err := session.New(store, session.Config{
		Keys:        [][]byte{key},
		TagKey:      tagKey,
		IdleTimeout: idleTimeout,
		Logger:      slog.New(slog.DiscardHandler),
	})
	if err != nil {
		tb.Fatal(err)
	}
	c := &contender{env: e, name: "sessionkit", cookieName: session.DefaultCookieName}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /read", func(w http.ResponseWriter, r *http.Request) {
		user, ok := session.UserID(r.Context())
		if !ok {
			user = anonymous
		}
		io.WriteString(w, user)
	})
	mux.HandleFunc("POST /write", func(w http.ResponseWriter, r *http.Request) {
		c.visits++
		if err := session.Put(r.Context(), "visits", c.visits); err != nil {
			fail(w, err)
			return
		}
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		if _, err := session.Create(r.Context(), loginUser(r)); err != nil {
			fail(w, err)
			return
		}
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("POST /login-values", func(w http.ResponseWriter, r *http.Request) {
		// The natural order, login then values, costs sessionkit two
		// writes: Create stores the record at once, the values are saved
		// with the response.
		info, err := session.Create(r.Context(), loginUser(r))
		if err == nil {
			err = session.Put(r.Context(), "theme", "dark")
		}
		if err == nil {
			err = session.Put(r.Context(), "lang", "en")
		}
		if err != nil {
			fail(w, err)
			return
		}
		c.lastKey = "session:" + info.ID // KeyPrefix is ""
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("POST /login-other", func(w http.ResponseWriter, r *http.Request) {
		c.others++
		if _, err := session.Create(r.Context(), fmt.Sprintf("other-%d", c.others)); err != nil {
			fail(w, err)
			return
		}
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("GET /list", func(w http.ResponseWriter, r *http.Request) {
		user, _ := session.UserID(r.Context())
		list, err := m.List(r.Context(), user)
		if err != nil {
			fail(w, err)
			return
		}
		io.WriteString(w, strconv.Itoa(len(list)))
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		if err := session.Destroy(r.Context()); err != nil {
			fail(w, err)
			return
		}
		io.WriteString(w, "ok")
	})
	c.handler = middleware.Sessions(m)(mux)
	return c
}

// newSCS returns scs v2 with scs/redisstore, configured as the scs docs
// show, with the given idle timeout (0: none).
//
// scs.New starts the cleanup goroutine of the in-memory store it installs
// by default and that is replaced here at once. It ticks once a minute until
// the process exits; it cannot be stopped without a data race in scs
// v2.9.0 (StopCleanup reads a field the goroutine writes). Every scs user
// builds the manager this way, so the benchmark does too.
func newSCS(tb testing.TB, e *env, idleTimeout time.Duration) *contender {
	tb.Helper()
	sm := scs.New()
	sm.Store = scsredisstore.New(e.pool(tb))
	sm.IdleTimeout = idleTimeout
	c := &contender{env: e, name: "scs", cookieName: sm.Cookie.Name}
	// A forged cookie for scs is any 43-character token: scs cannot tell it
	// from a real one without asking Redis.
	c.forged = &http.Cookie{Name: sm.Cookie.Name, Value: randomToken(tb)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /read", func(w http.ResponseWriter, r *http.Request) {
		user := sm.GetString(r.Context(), "user_id")
		if user == "" {
			user = anonymous
		}
		io.WriteString(w, user)
	})
	mux.HandleFunc("POST /write", func(w http.ResponseWriter, r *http.Request) {
		c.visits++
		sm.Put(r.Context(), "visits", c.visits)
		io.WriteString(w, "ok")
	})
	login := func(ctx context.Context, user string) error {
		if err := sm.RenewToken(ctx); err != nil {
			return err
		}
		sm.Put(ctx, "user_id", user)
		return nil
	}
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		if err := login(r.Context(), loginUser(r)); err != nil {
			fail(w, err)
			return
		}
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("POST /login-values", func(w http.ResponseWriter, r *http.Request) {
		if err := sm.RenewToken(r.Context()); err != nil {
			fail(w, err)
			return
		}
		sm.Put(r.Context(), "user_id", loginUser(r))
		sm.Put(r.Context(), "theme", "dark")
		sm.Put(r.Context(), "lang", "en")
		c.lastKey = "scs:session:" + sm.Token(r.Context()) // scs/redisstore's default prefix
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("POST /login-other", func(w http.ResponseWriter, r *http.Request) {
		if err := sm.RenewToken(r.Context()); err != nil {
			fail(w, err)
			return
		}
		c.others++
		sm.Put(r.Context(), "user_id", fmt.Sprintf("other-%d", c.others))
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("GET /list", func(w http.ResponseWriter, r *http.Request) {
		user := sm.GetString(r.Context(), "user_id")
		n := 0
		// scs's only way to find a user's sessions: every session in the store.
		err := sm.Iterate(r.Context(), func(ctx context.Context) error {
			if sm.GetString(ctx, "user_id") == user {
				n++
			}
			return nil
		})
		if err != nil {
			fail(w, err)
			return
		}
		io.WriteString(w, strconv.Itoa(n))
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		if err := sm.Destroy(r.Context()); err != nil {
			fail(w, err)
			return
		}
		io.WriteString(w, "ok")
	})
	c.handler = sm.LoadAndSave(mux)
	return c
}

// randomToken returns a token shaped like scs's: 32 random bytes, base64url.
func randomToken(tb testing.TB) string {
	tb.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// newGorilla returns gorilla/sessions with boj/redistore (gob records, a
// signed cookie holding the session id, a 24h MaxAge like the other
// contenders' lifetime). It has no idle timeout and no token renewal: a
// login on a request without a session cookie gets a new session anyway.
func newGorilla(tb testing.TB, e *env) *contender {
	tb.Helper()
	store, err := redistore.NewRediStoreWithPool(e.pool(tb), signingKey) // sends one PING
	if err != nil {
		tb.Fatal(err)
	}
	store.SetMaxAge(int((24 * time.Hour) / time.Second))
	const name = "session"
	forged, err := securecookie.New(forgingKey, nil).Encode(name, "FORGEDSESSIONID")
	if err != nil {
		tb.Fatal(err)
	}
	c := &contender{env: e, name: "gorilla", cookieName: name, forged: &http.Cookie{Name: name, Value: forged}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /read", func(w http.ResponseWriter, r *http.Request) {
		// A cookie that does not decode gives an error and a new session:
		// anonymous.
		s, _ := store.Get(r, name)
		user, ok := s.Values["user_id"].(string)
		if !ok {
			user = anonymous
		}
		io.WriteString(w, user)
	})
	mux.HandleFunc("POST /write", func(w http.ResponseWriter, r *http.Request) {
		s, _ := store.Get(r, name)
		c.visits++
		s.Values["visits"] = c.visits
		if err := s.Save(r, w); err != nil {
			fail(w, err)
			return
		}
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		s, _ := store.Get(r, name)
		s.Values["user_id"] = loginUser(r)
		if err := s.Save(r, w); err != nil {
			fail(w, err)
			return
		}
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("POST /login-values", func(w http.ResponseWriter, r *http.Request) {
		s, _ := store.Get(r, name)
		s.Values["user_id"] = userID
		s.Values["theme"] = "dark"
		s.Values["lang"] = "en"
		if err := s.Save(r, w); err != nil {
			fail(w, err)
			return
		}
		c.lastKey = "session_" + s.ID // boj/redistore's default prefix
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		s, _ := store.Get(r, name)
		s.Options.MaxAge = -1
		if err := s.Save(r, w); err != nil {
			fail(w, err)
			return
		}
		io.WriteString(w, "ok")
	})
	c.handler = mux
	return c
}

// newBare returns a handler without sessions that answers what an
// authenticated read answers.
func newBare() *contender {
	return &contender{name: "bare", handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, userID)
	})}
}

// floorRecord is the value the redigo-get contender reads: about the size
// of a sessionkit record.
const floorRecord = `{"v":1,"user_id":"user-42","created_at":"2026-11-25T10:00:00Z","expires_at":"2026-11-26T10:00:00Z","last_seen":"2026-11-25T10:00:00Z","ip":"192.0.2.1","user_agent":"` + userAgent + `"}`

// newRedigoGet returns the floor: a handler that borrows a connection from
// the pool, sends one GET and answers. No session library does less and
// still reads Redis.
func newRedigoGet(tb testing.TB, e *env) *contender {
	tb.Helper()
	const key = "floor"
	e.redis.Do(tb, "SET", key, floorRecord)
	pool := e.pool(tb)
	return &contender{name: "redigo-get", handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		conn, err := pool.GetContext(ctx)
		if err != nil {
			fail(w, err)
			return
		}
		defer conn.Close()
		// DoWithTimeout, as sessionkit's store calls it: DoContext would
		// run the command on a goroutine of its own, a cost no floor has.
		if _, err := redis.Bytes(redis.DoWithTimeout(conn, time.Second, "GET", key)); err != nil {
			fail(w, err)
			return
		}
		io.WriteString(w, userID)
	})}
}
