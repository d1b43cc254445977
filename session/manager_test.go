package session

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/redisstore"
)

// clock is a settable time source for the Manager's now.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// newTestManager returns a Manager on a real redis-server whose clock the
// test sets.
func newTestManager(t *testing.T, cfg Config) (*Manager, *redistest.Server, *clock) {
	t.Helper()
	r := redistest.Start(t)
	store := openTestStore(t, r)
	cfg.Keys = [][]byte{testKey(7)}
	cfg.InsecureCookie = true
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := New(store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Now()}
	m.now = clk.now
	return m, r, clk
}

// openTestStore opens a Store on r, with a timeout that a slow machine
// under load keeps.
func openTestStore(t *testing.T, r *redistest.Server) *redisstore.Store {
	t.Helper()
	store, err := redisstore.Open(redisstore.Config{Addr: r.Addr(), Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store
}

// serve runs fn as a handler of one request carrying cookie (if not empty)
// and returns the response's Set-Cookie value.
func serve(t *testing.T, m *Manager, cookie string, fn func(ctx context.Context)) string {
	t.Helper()
	// localhost: the test Managers have InsecureCookie, and plain HTTP
	// elsewhere gets no Clear-Site-Data (see Manager.plainHTTP).
	req := httptest.NewRequest("GET", "http://localhost/", nil)
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: m.cfg.CookieName, Value: cookie})
	}
	ctx := m.Load(req)
	fn(ctx)
	h := http.Header{}
	if err := m.Commit(ctx, h); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	resp := http.Response{Header: h}
	for _, c := range resp.Cookies() {
		return c.Value
	}
	return ""
}

func login(t *testing.T, m *Manager, user string) (cookie, id string) {
	t.Helper()
	cookie = serve(t, m, "", func(ctx context.Context) {
		info, err := Create(ctx, user)
		if err != nil {
			t.Fatalf("Create: %v", err)
		}
		id = info.ID
	})
	return cookie, id
}

func TestAbsoluteTimeout(t *testing.T) {
	m, r, clk := newTestManager(t, Config{Lifetime: time.Hour, IdleTimeout: 30 * time.Minute})
	cookie, _ := login(t, m, "alice")
	serve(t, m, cookie, func(ctx context.Context) {
		if _, ok := UserID(ctx); !ok {
			t.Error("no user right after login")
		}
	})
	clk.t = clk.t.Add(time.Hour + time.Second)
	r.ResetStats(t)
	set := serve(t, m, cookie, func(ctx context.Context) {
		if u, ok := UserID(ctx); ok {
			t.Errorf("UserID after the absolute deadline = %q, want none", u)
		}
	})
	if n := r.TotalCalls(t); n != 0 {
		t.Errorf("a session past its deadline cost %d Redis commands, want 0", n)
	}
	if set != "" {
		t.Errorf("expired cookie not cleared: Set-Cookie value %q", set)
	}
}

// TestTTLCappedAtDeadline checks that neither a write nor a read sets a time
// to live that runs past the absolute deadline.
func TestTTLCappedAtDeadline(t *testing.T) {
	m, r, clk := newTestManager(t, Config{Lifetime: time.Hour, IdleTimeout: 30 * time.Minute})
	cookie, id := login(t, m, "alice")
	pttl := func() time.Duration {
		ms, _ := r.Do(t, "PTTL", "session:"+id).(int64)
		return time.Duration(ms) * time.Millisecond
	}
	if got := pttl(); got > 30*time.Minute || got < 29*time.Minute {
		t.Errorf("PTTL after login = %v, want the 30m idle timeout", got)
	}
	clk.t = clk.t.Add(50 * time.Minute) // 10 minutes of lifetime left
	serve(t, m, cookie, func(ctx context.Context) {})
	if got := pttl(); got > 10*time.Minute+time.Second || got < 9*time.Minute {
		t.Errorf("PTTL after a read 10m before the deadline = %v, want about 10m", got)
	}
	serve(t, m, cookie, func(ctx context.Context) {
		if err := Put(ctx, "k", 1); err != nil {
			t.Fatal(err)
		}
	})
	if got := pttl(); got > 10*time.Minute+time.Second || got < 9*time.Minute {
		t.Errorf("PTTL after a write 10m before the deadline = %v, want about 10m", got)
	}
}

// TestNoSessionInContext checks that the helpers answer, not panic, outside
// the middleware.
func TestNoSessionInContext(t *testing.T) {
	ctx := context.Background()
	if _, ok := UserID(ctx); ok {
		t.Error("UserID: ok = true")
	}
	if _, ok := FromContext(ctx); ok {
		t.Error("FromContext: ok = true")
	}
	if _, ok := Token(ctx); ok {
		t.Error("Token: ok = true")
	}
	if _, ok := Get[int](ctx, "k"); ok {
		t.Error("Get: ok = true")
	}
	if _, ok := Pop[int](ctx, "k"); ok {
		t.Error("Pop: ok = true")
	}
	for name, err := range map[string]error{
		"Put":       Put(ctx, "k", 1),
		"Remove":    Remove(ctx, "k"),
		"Destroy":   Destroy(ctx),
		"LoadError": LoadError(ctx),
	} {
		if !errors.Is(err, ErrNoSession) {
			t.Errorf("%s = %v, want ErrNoSession", name, err)
		}
	}
	if _, err := Create(ctx, "alice"); !errors.Is(err, ErrNoSession) {
		t.Errorf("Create = %v, want ErrNoSession", err)
	}
	if err := m0().Commit(ctx, http.Header{}); !errors.Is(err, ErrNoSession) {
		t.Errorf("Commit without a session = %v, want ErrNoSession: it saves nothing", err)
	}
}

func m0() *Manager {
	m, err := New(nopStore{}, Config{Keys: [][]byte{testKey(1)}})
	if err != nil {
		panic(err)
	}
	return m
}

func TestReservedKeys(t *testing.T) {
	m, _, _ := newTestManager(t, Config{})
	serve(t, m, "", func(ctx context.Context) {
		for _, k := range []string{"", "__sessionkit", "__x"} {
			if err := Put(ctx, k, 1); !errors.Is(err, ErrReservedKey) || errors.Is(err, ErrInvalidValue) {
				t.Errorf("Put(%q) = %v, want ErrReservedKey alone", k, err)
			}
		}
		if err := Put(ctx, "ch", make(chan int)); err == nil {
			t.Error("Put(chan) = nil, want an error")
		}
	})
}

// TestAnonymousValuesCarryOver checks what Create keeps: an anonymous
// session's values, but not another user's.
func TestAnonymousValuesCarryOver(t *testing.T) {
	m, _, _ := newTestManager(t, Config{})
	cookie := serve(t, m, "", func(ctx context.Context) {
		if err := Put(ctx, "cart", "book"); err != nil {
			t.Fatal(err)
		}
	})
	if cookie == "" {
		t.Fatal("anonymous Put set no cookie")
	}
	cookie = serve(t, m, cookie, func(ctx context.Context) {
		if _, err := Create(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		if v, _ := Get[string](ctx, "cart"); v != "book" {
			t.Errorf("after login, cart = %q, want book", v)
		}
		if err := Put(ctx, "secret", "alice's"); err != nil {
			t.Fatal(err)
		}
	})
	serve(t, m, cookie, func(ctx context.Context) {
		if _, err := Create(ctx, "bob"); err != nil {
			t.Fatal(err)
		}
		if v, ok := Get[string](ctx, "secret"); ok {
			t.Errorf("bob's new session holds alice's value %q", v)
		}
	})
}

// TestCookieDefaults checks the cookie of a Manager with the default Config.
func TestCookieDefaults(t *testing.T) {
	r := redistest.Start(t)
	store, err := redisstore.Open(redisstore.Config{Addr: r.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	m, err := New(store, Config{Keys: [][]byte{testKey(3)}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	sc := loginCookie(t, m)
	for _, want := range []string{"__Host-session=", "; Path=/", "; HttpOnly", "; Secure", "; SameSite=Lax", "; Max-Age="} {
		if !strings.Contains(sc, want) {
			t.Errorf("Set-Cookie %q lacks %q", sc, want)
		}
	}
	if strings.Contains(sc, "Domain=") {
		t.Errorf("Set-Cookie %q has a Domain, which __Host- forbids", sc)
	}
	if len(sc) >= 4096 {
		t.Errorf("Set-Cookie is %d bytes, want under 4096", len(sc))
	}

	// The configurable attributes: SameSite Strict or None (which needs
	// Secure), and no Secure under InsecureCookie, whose name then lacks
	// the __Host- prefix.
	for _, tc := range []struct {
		cfg        Config
		want, lack []string
	}{
		{Config{SameSite: http.SameSiteStrictMode}, []string{"__Host-session=", "; Secure", "; SameSite=Strict"}, []string{"SameSite=Lax"}},
		{Config{SameSite: http.SameSiteNoneMode}, []string{"__Host-session=", "; Secure", "; SameSite=None"}, []string{"SameSite=Lax"}},
		{Config{InsecureCookie: true}, []string{"session=", "; HttpOnly", "; SameSite=Lax"}, []string{"__Host-", "Secure"}},
	} {
		tc.cfg.Keys = [][]byte{testKey(3)}
		tc.cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		m, err := New(store, tc.cfg)
		if err != nil {
			t.Fatal(err)
		}
		sc := loginCookie(t, m)
		for _, want := range tc.want {
			if !strings.Contains(sc, want) {
				t.Errorf("SameSite %v, InsecureCookie %v: Set-Cookie %q lacks %q", tc.cfg.SameSite, tc.cfg.InsecureCookie, sc, want)
			}
		}
		for _, lack := range tc.lack {
			if strings.Contains(sc, lack) {
				t.Errorf("SameSite %v, InsecureCookie %v: Set-Cookie %q has %q", tc.cfg.SameSite, tc.cfg.InsecureCookie, sc, lack)
			}
		}
	}
}

// TestInsecureCookieOverHTTPS checks that a Manager with InsecureCookie
// says so, once, when a request comes over HTTPS (TLS, or through a proxy
// that says so), and never on plain HTTP: a setting copied from the
// README's localhost set-up into production must not go unnoticed.
func TestInsecureCookieOverHTTPS(t *testing.T) {
	const plain, secure = "http://app.example/", "https://app.example/"
	for _, tc := range []struct {
		name   string
		secure bool // Config.InsecureCookie unset
		url    string
		header map[string]string
		warn   bool
	}{
		{"plain HTTP", false, plain, nil, false},
		{"TLS", false, secure, nil, true},
		{"behind a TLS proxy", false, plain, map[string]string{"X-Forwarded-Proto": "HTTPS"}, true},
		{"behind two proxies", false, plain, map[string]string{"X-Forwarded-Proto": " https, http"}, true},
		{"Forwarded", false, plain, map[string]string{"Forwarded": `for=192.0.2.60;proto="https";by=203.0.113.43, for=10.0.0.1;proto=http`}, true},
		{"X-Forwarded-Ssl", false, plain, map[string]string{"X-Forwarded-Ssl": "on"}, true},
		{"behind a plain-HTTP proxy", false, plain, map[string]string{"X-Forwarded-Proto": "http, https", "Forwarded": "for=192.0.2.60;proto=http"}, false},
		{"Secure cookie over TLS", true, secure, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs logBuffer
			m, err := New(nopStore{}, Config{Keys: [][]byte{testKey(1)}, InsecureCookie: !tc.secure,
				Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			for range 3 {
				r := httptest.NewRequest("GET", tc.url, nil)
				for k, v := range tc.header {
					r.Header.Set(k, v)
				}
				m.Load(r)
			}
			warned := logs.takeCount("InsecureCookie is set, but a request came over HTTPS")
			if want := map[bool]int{false: 0, true: 1}[tc.warn]; warned != want {
				t.Errorf("3 requests logged %d InsecureCookie warnings, want %d", warned, want)
			}
		})
	}
}

// TestSecureCookieOverPlainHTTP checks that a Manager whose cookie is
// Secure warns, once, when it sets that cookie in answer to a request over
// plain HTTP to a host other than localhost or a loopback address, which
// browsers drop it from; and only then: not for a request that sets no
// cookie, not over TLS or behind a TLS proxy, not on a loopback host.
func TestSecureCookieOverPlainHTTP(t *testing.T) {
	r := redistest.Start(t)
	store := openTestStore(t, r)
	for _, tc := range []struct {
		name   string
		url    string
		header map[string]string
		login  bool
		warn   bool
	}{
		{"plain HTTP to a host name", "http://app.example:8080/", nil, true, true},
		{"plain HTTP to a LAN address", "http://192.168.1.20/", nil, true, true},
		{"no cookie set", "http://app.example/", nil, false, false},
		{"TLS", "https://app.example/", nil, true, false},
		{"behind a TLS proxy", "http://app.example/", map[string]string{"X-Forwarded-Proto": "https"}, true, false},
		{"localhost", "http://localhost:8080/", nil, true, false},
		{"a name under .localhost", "http://app.localhost/", nil, true, false},
		{"127.0.0.1", "http://127.0.0.1:8080/", nil, true, false},
		{"::1", "http://[::1]:8080/", nil, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs logBuffer
			m, err := New(store, Config{Keys: [][]byte{testKey(1)}, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			for range 3 {
				req := httptest.NewRequest("GET", tc.url, nil)
				for k, v := range tc.header {
					req.Header.Set(k, v)
				}
				ctx := m.Load(req)
				if tc.login {
					if _, err := Create(ctx, "alice"); err != nil {
						t.Fatal(err)
					}
				}
				if err := m.Commit(ctx, http.Header{}); err != nil {
					t.Fatal(err)
				}
			}
			warned := logs.takeCount("the session cookie is Secure, but was set in answer to a request over plain HTTP")
			if want := map[bool]int{false: 0, true: 1}[tc.warn]; warned != want {
				t.Errorf("3 requests logged %d warnings of a Secure cookie over plain HTTP, want %d", warned, want)
			}
		})
	}
}

// TestDropsSecureAllocates checks that the check every request of a
// Manager with a Secure cookie makes until it has warned (see
// dropsSecure) allocates nothing, with and without a port in the Host.
func TestDropsSecureAllocates(t *testing.T) {
	for _, host := range []string{"app.example", "app.example:8080", "127.0.0.1:8080", "localhost"} {
		r := httptest.NewRequest("GET", "http://"+host+"/", nil)
		if n := testing.AllocsPerRun(100, func() { dropsSecure(r) }); n != 0 {
			t.Errorf("dropsSecure of a request to %s: %v allocations, want 0", host, n)
		}
	}
}

// TestCreateBesideRequestEdits has a handler change the request's
// address and headers in one goroutine while another logs in: the session
// records the client as the request came (Load reads it), and, under
// -race, nothing races with the edits.
func TestCreateBesideRequestEdits(t *testing.T) {
	m, _, _ := newTestManager(t, Config{})
	req := httptest.NewRequest("GET", "http://localhost/", nil)
	req.RemoteAddr = "192.0.2.7:1234"
	ctx := m.Load(req)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 200 {
			req.Header.Set("User-Agent", fmt.Sprint("edited ", i))
			req.Header.Set("X-Forwarded-Proto", "https")
			req.RemoteAddr = "198.51.100.1:1"
		}
	}()
	info, err := Create(ctx, "alice")
	<-done
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Commit(ctx, http.Header{}); err != nil {
		t.Fatal(err)
	}
	if info.IP != "192.0.2.7" {
		t.Errorf("Info.IP = %q, want the address the request came from, 192.0.2.7", info.IP)
	}
}

// loginCookie logs alice in through m on a request to localhost and
// returns the Set-Cookie header the commit writes.
func loginCookie(t *testing.T, m *Manager) string {
	t.Helper()
	ctx := m.Load(httptest.NewRequest("GET", "http://localhost/", nil))
	if _, err := Create(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	if err := m.Commit(ctx, h); err != nil {
		t.Fatal(err)
	}
	return h.Get("Set-Cookie")
}

// TestTokensAreRandom checks the tokens Create issues: 42 base64url
// characters (252 random bits) each, all different, and each drawn from
// crypto/rand. The test records what crypto/rand.Reader hands out while it
// runs and finds every token's bytes in it, so a token from any other
// generator (math/rand, a counter, a hash of the time), however distinct,
// fails it.
func TestTokensAreRandom(t *testing.T) {
	drawn := &recordingReader{r: rand.Reader}
	rand.Reader = drawn
	t.Cleanup(func() { rand.Reader = drawn.r })
	m, _, _ := newTestManager(t, Config{})
	seen := map[string]bool{}
	for range 50 {
		serve(t, m, "", func(ctx context.Context) {
			if _, err := Create(ctx, "alice"); err != nil {
				t.Fatal(err)
			}
			token := stateFrom(ctx).stored
			raw, err := base64.RawURLEncoding.DecodeString(token)
			if err != nil || len(token) != shortTokenLen || len(raw) != 31 {
				t.Fatalf("token %q: %d characters, %d bytes, %v; want %d characters of base64url", token, len(token), len(raw), err, shortTokenLen)
			}
			if seen[token] {
				t.Fatal("Create issued the same token twice")
			}
			seen[token] = true
			if !drawn.gave(raw) {
				t.Fatal("a token's bytes are not among those crypto/rand gave")
			}
		})
	}
}

// recordingReader passes on what r reads and keeps a copy of it.
type recordingReader struct {
	r    io.Reader
	mu   sync.Mutex
	read []byte
}

func (rr *recordingReader) Read(p []byte) (int, error) {
	n, err := rr.r.Read(p)
	rr.mu.Lock()
	rr.read = append(rr.read, p[:n]...)
	rr.mu.Unlock()
	return n, err
}

// gave reports whether b was read, all in one piece.
func (rr *recordingReader) gave(b []byte) bool {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	return bytes.Contains(rr.read, b)
}

// TestLastSeenInterval checks that a read refreshes the last-seen time only
// once it is older than the interval, and that the refresh is the only extra
// work.
func TestLastSeenInterval(t *testing.T) {
	m, r, clk := newTestManager(t, Config{LastSeenInterval: time.Minute})
	cookie, id := login(t, m, "alice")
	lastSeen := func() time.Time {
		var rec struct {
			C, S int64 // last seen is c until a write sets s
		}
		b, _ := r.Do(t, "GET", "session:"+id).([]byte)
		if err := json.Unmarshal(b, &rec); err != nil {
			t.Fatal(err)
		}
		if rec.S == 0 {
			return time.UnixMilli(rec.C)
		}
		return time.UnixMilli(rec.S)
	}
	first := lastSeen()
	for _, tc := range []struct {
		after     time.Duration
		wantCalls map[string]int64
		refreshed bool
	}{
		{30 * time.Second, map[string]int64{"getex": 1}, false},
		// The refresh is a merge: WATCH and GET, then MULTI, SET, EXEC.
		{61 * time.Second, map[string]int64{"getex": 1, "watch": 1, "get": 1, "multi": 1, "set": 1, "exec": 1}, true},
	} {
		clk.t = first.Add(tc.after)
		r.ResetStats(t)
		serve(t, m, cookie, func(ctx context.Context) {})
		if got := r.Calls(t); !maps.Equal(got, tc.wantCalls) {
			t.Errorf("%v after login: commands = %v, want %v", tc.after, got, tc.wantCalls)
		}
		if got := lastSeen(); got.Equal(first) == tc.refreshed {
			t.Errorf("%v after login: last_seen = %v (login %v), want refreshed = %v", tc.after, got, first, tc.refreshed)
		}
	}
}

// TestLastSeenRefreshRefused checks that a request that changes nothing is
// served when the only write due, the last-seen refresh, is refused (Redis
// out of memory: reads work, writes do not), and that a request that
// changes a value still fails.
func TestLastSeenRefreshRefused(t *testing.T) {
	m, r, clk := newTestManager(t, Config{LastSeenInterval: time.Minute})
	cookie, _ := login(t, m, "alice")
	r.Do(t, "CONFIG", "SET", "maxmemory-policy", "noeviction")
	r.Do(t, "CONFIG", "SET", "maxmemory", "1")
	t.Cleanup(func() { r.Do(t, "CONFIG", "SET", "maxmemory", "0") })
	clk.t = clk.t.Add(2 * time.Minute)
	for range 2 {
		req := httptest.NewRequest("GET", "/", nil)
		req.AddCookie(&http.Cookie{Name: m.cfg.CookieName, Value: cookie})
		ctx := m.Load(req)
		if user, ok := UserID(ctx); !ok || user != "alice" {
			t.Fatalf("read under OOM: user %q, %v; want alice", user, ok)
		}
		h := http.Header{}
		if err := m.Commit(ctx, h); err != nil || h.Get("Set-Cookie") != "" {
			t.Fatalf("read under OOM, last seen due: Commit = %v, Set-Cookie %q; want nil and none", err, h.Get("Set-Cookie"))
		}
	}
	req := httptest.NewRequest("GET", "/", nil)
	req.AddCookie(&http.Cookie{Name: m.cfg.CookieName, Value: cookie})
	ctx := m.Load(req)
	if err := Put(ctx, "theme", "dark"); err != nil {
		t.Fatal(err)
	}
	if err := m.Commit(ctx, http.Header{}); !errors.Is(err, ErrStoreUnavailable) {
		t.Errorf("a change under OOM: Commit = %v, want ErrStoreUnavailable", err)
	}
}

// TestOutageLoggedAfterLastSeenWarning has a last-seen refresh refused
// (Redis out of memory), then Redis stopped: the outage is logged, though
// the warning about the refresh came a moment before: the two messages
// have limits of their own, so that the first cannot hold the outage back.
func TestOutageLoggedAfterLastSeenWarning(t *testing.T) {
	m, r, clk := newTestManager(t, Config{LastSeenInterval: time.Minute})
	var logs strings.Builder // the requests run one after the other
	m.log = slog.New(slog.NewTextHandler(&logs, nil))
	cookie, _ := login(t, m, "alice")
	r.Do(t, "CONFIG", "SET", "maxmemory-policy", "noeviction")
	r.Do(t, "CONFIG", "SET", "maxmemory", "1")
	clk.t = clk.t.Add(2 * time.Minute)
	serve(t, m, cookie, func(context.Context) {})
	r.Stop(t)
	serve(t, m, cookie, func(ctx context.Context) {
		if err := LoadError(ctx); !errors.Is(err, ErrStoreUnavailable) {
			t.Errorf("LoadError with Redis stopped = %v, want ErrStoreUnavailable", err)
		}
	})
	for _, want := range []string{"last-seen time not refreshed", "serving requests as anonymous"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %q:\n%s", want, logs.String())
		}
	}
}

// TestLastSeenPausedAfterFailure: with Redis out of memory, which refuses
// writes but serves reads, a read of a session whose last-seen time is due
// tries the refresh once, and the reads of the next 5 seconds do not (each
// would cost two more round trips on a Redis in trouble); then one tries
// again. Every read is served.
func TestLastSeenPausedAfterFailure(t *testing.T) {
	m, r, clk := newTestManager(t, Config{LastSeenInterval: time.Minute})
	cookie, _ := login(t, m, "alice")
	r.Do(t, "CONFIG", "SET", "maxmemory-policy", "noeviction")
	r.Do(t, "CONFIG", "SET", "maxmemory", "1")
	watches := func() int64 { return r.Calls(t)["watch"] }
	read := func() {
		t.Helper()
		serve(t, m, cookie, func(ctx context.Context) {
			if u, ok := UserID(ctx); !ok || u != "alice" {
				t.Errorf("UserID = %q, %v; want alice: reads are served", u, ok)
			}
		})
	}
	clk.t = clk.t.Add(2 * time.Minute)
	before := watches()
	read()
	if got := watches() - before; got == 0 {
		t.Fatal("the first read due for a last-seen refresh sent no WATCH: it did not try")
	}
	before = watches()
	for range 3 {
		clk.t = clk.t.Add(time.Second)
		read()
	}
	if got := watches() - before; got != 0 {
		t.Errorf("reads within 5s of a failed refresh sent %d WATCH, want 0", got)
	}
	clk.t = clk.t.Add(3 * time.Second)
	read()
	if got := watches() - before; got == 0 {
		t.Error("a read 5s after the failed refresh sent no WATCH: it did not try again")
	}
}

// TestOutageEndLogged: the requests of an outage shorter than the log's
// interval are counted by the first read Redis answers once that interval
// has passed, not with the next outage's first line, maybe hours later.
func TestOutageEndLogged(t *testing.T) {
	m, r, clk := newTestManager(t, Config{})
	var logs strings.Builder // the requests run one after the other
	m.log = slog.New(slog.NewTextHandler(&logs, nil))
	cookie, _ := login(t, m, "alice")
	r.Stop(t)
	for range 3 { // one line, two held back
		serve(t, m, cookie, func(context.Context) {})
	}
	r.Restart(t) // empty: the session is gone, but the read succeeds
	serve(t, m, cookie, func(ctx context.Context) {
		if err := LoadError(ctx); err != nil {
			t.Errorf("LoadError once Redis answers again = %v, want nil", err)
		}
	})
	if strings.Contains(logs.String(), "available again") {
		t.Errorf("the end of the outage logged within the interval of its first line:\n%s", logs.String())
	}
	clk.t = clk.t.Add(11 * time.Second)
	serve(t, m, cookie, func(context.Context) {})
	serve(t, m, cookie, func(context.Context) {})
	out := logs.String()
	if n := strings.Count(out, "serving requests as anonymous"); n != 1 {
		t.Errorf("%d outage lines, want 1:\n%s", n, out)
	}
	if n := strings.Count(out, `msg="session: store available again" suppressed=2`); n != 1 {
		t.Errorf("%d lines saying the store answers again with 2 held back, want 1:\n%s", n, out)
	}
	// Another outage a second later has its own line at Warn: the line
	// that the store answers again does not hold it back (an operator
	// who watches Warn sees each outage of a Redis that comes and goes).
	r.Stop(t)
	clk.t = clk.t.Add(time.Second)
	serve(t, m, cookie, func(context.Context) {})
	serve(t, m, cookie, func(context.Context) {})
	out = logs.String()
	if n := strings.Count(out, `level=WARN msg="session: store unavailable, serving requests as anonymous"`); n != 2 {
		t.Errorf("%d outage lines at Warn after a second outage, want 2:\n%s", n, out)
	}
}

// TestCreateThenPut checks that values put after Create in the same request
// are saved with one more command, a SET XX over the record the login just
// wrote, not a WATCH merge.
func TestCreateThenPut(t *testing.T) {
	m, r, _ := newTestManager(t, Config{})
	r.ResetStats(t)
	cookie := serve(t, m, "", func(ctx context.Context) {
		if _, err := Create(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		if err := Put(ctx, "role", "admin"); err != nil {
			t.Fatal(err)
		}
	})
	want := map[string]int64{"set": 2, "zadd": 1, "pexpireat": 2, "zremrangebyscore": 1}
	if got := r.Calls(t); !maps.Equal(got, want) {
		t.Errorf("login with a value: commands = %v, want %v", got, want)
	}
	serve(t, m, cookie, func(ctx context.Context) {
		if v, _ := Get[string](ctx, "role"); v != "admin" {
			t.Errorf("value put after Create = %q, want admin", v)
		}
	})
}

// TestEndingOutlivesCancel checks that a logout or a revocation whose
// request context is canceled (the client went away right after asking)
// still ends the sessions.
func TestEndingOutlivesCancel(t *testing.T) {
	m, r, _ := newTestManager(t, Config{})
	exists := func(id string) bool {
		n, _ := r.Do(t, "EXISTS", "session:"+id).(int64)
		return n == 1
	}
	canceled := func(cookie string) context.Context {
		req := httptest.NewRequest("POST", "/logout", nil)
		req.AddCookie(&http.Cookie{Name: m.cfg.CookieName, Value: cookie})
		ctx, cancel := context.WithCancel(m.Load(req))
		cancel()
		return ctx
	}

	cookie, id := login(t, m, "alice")
	if err := Destroy(canceled(cookie)); err != nil || exists(id) {
		t.Errorf("Destroy with a canceled context = %v, record left %v; want nil and the record gone", err, exists(id))
	}

	_, id1 := login(t, m, "bob")
	cookie2, id2 := login(t, m, "bob")
	if err := m.Revoke(canceled(cookie2), "bob", id1); err != nil || exists(id1) {
		t.Errorf("Revoke with a canceled context = %v, record left %v", err, exists(id1))
	}
	_, id3 := login(t, m, "bob")
	if n, err := m.RevokeOthers(canceled(cookie2)); err != nil || n != 1 || exists(id3) || !exists(id2) {
		t.Errorf("RevokeOthers with a canceled context = %d, %v; other left %v, own left %v", n, err, exists(id3), exists(id2))
	}
	if n, err := m.RevokeAll(canceled(cookie2), "bob"); err != nil || n != 1 || exists(id2) {
		t.Errorf("RevokeAll with a canceled context = %d, %v; record left %v", n, err, exists(id2))
	}
}

// TestFailedReloginKeepsSession has a user sign in again on a browser
// already signed in as them while Redis is out of memory, which refuses
// new records but still runs deletions: the login fails and changes
// nothing, with a session limit or without. The session the request came
// with is neither deleted nor reported ended, the request still has it,
// and its cookie works once Redis has memory again: a re-login that
// deleted the session and then failed would sign the user out over an
// outage.
func TestFailedReloginKeepsSession(t *testing.T) {
	for _, limit := range []int{0, 2} {
		t.Run(fmt.Sprintf("limit %d", limit), func(t *testing.T) {
			var got []string
			m, r, _ := newTestManager(t, Config{MaxSessionsPerUser: limit, OnEvent: func(e Event) {
				got = append(got, string(e.Kind)+":"+e.UserID+":"+e.SessionID)
			}})
			cookie, id := login(t, m, "alice")
			r.Do(t, "CONFIG", "SET", "maxmemory-policy", "noeviction")
			r.Do(t, "CONFIG", "SET", "maxmemory", "1")
			t.Cleanup(func() { r.Do(t, "CONFIG", "SET", "maxmemory", "0") })
			h, err := exchange(t, m, cookie, func(ctx context.Context) {
				if _, err := Create(ctx, "alice"); !errors.Is(err, ErrStoreUnavailable) {
					t.Errorf("Create under OOM = %v, want ErrStoreUnavailable", err)
				}
				if u, ok := UserID(ctx); !ok || u != "alice" {
					t.Errorf("after the failed re-login, UserID = %q, %v; want alice: nothing changed", u, ok)
				}
			})
			if sc, ok := sessionCookie(m, h); ok || err != nil {
				t.Errorf("failed re-login: Set-Cookie %v, Commit %v; want no cookie and no error", sc, err)
			}
			if n, _ := r.Do(t, "EXISTS", "session:"+id).(int64); n != 1 {
				t.Fatal("the failed re-login deleted the session the request came with")
			}
			if want := []string{"created:alice:" + id}; !slices.Equal(got, want) {
				t.Errorf("events = %q, want %q", got, want)
			}
			r.Do(t, "CONFIG", "SET", "maxmemory", "0")
			if u := userOf(t, m, cookie); u != "alice" {
				t.Errorf("the cookie after the failed re-login: UserID = %q, want alice", u)
			}
			if sessions, err := m.List(context.Background(), "alice"); err != nil || len(sessions) != 1 || sessions[0].ID != id {
				t.Errorf("List(alice) = %v, %v; want the one session", sessions, err)
			}
		})
	}
}

// TestTokenDeadlineBounds checks that the deadline signed into the token
// bounds the session when its record, rewritten in Redis, names a later
// one: neither the request's Info, nor the token Token signs for it, nor
// the cookie of a renewal carries the later deadline, and the session ends
// at the token's.
func TestTokenDeadlineBounds(t *testing.T) {
	m, r, clk := newTestManager(t, Config{Lifetime: time.Hour})
	cookie, id := login(t, m, "alice")
	rec, _ := r.Do(t, "GET", "session:"+id).([]byte)
	var fields map[string]any
	if err := json.Unmarshal(rec, &fields); err != nil {
		t.Fatal(err)
	}
	signed := time.UnixMilli(int64(fields["e"].(float64)))
	fields["e"] = signed.Add(24 * time.Hour).UnixMilli()
	later, _ := json.Marshal(fields)
	r.Do(t, "SET", "session:"+id, later, "KEEPTTL")

	deadlineOf := func(what, value string) {
		t.Helper()
		if _, d, err := m.signer.verify(value); err != nil || !d.Equal(signed) {
			t.Errorf("%s deadline = %v, %v; want the login's %v", what, d, err, signed)
		}
	}
	var token string
	renewed := serve(t, m, cookie, func(ctx context.Context) {
		if info, _ := FromContext(ctx); !info.ExpiresAt.Equal(signed) {
			t.Errorf("Info.ExpiresAt = %v, want the token's %v", info.ExpiresAt, signed)
		}
		token, _ = Token(ctx)
		if err := Renew(ctx); err != nil {
			t.Fatal(err)
		}
	})
	deadlineOf("Token's", token)
	deadlineOf("the renewed cookie's", renewed)
	clk.t = signed
	for _, v := range []string{token, renewed} {
		if u := userOf(t, m, v); u != "" {
			t.Errorf("at the login's deadline: UserID = %q, want anonymous", u)
		}
	}
}
