package sessionkitprom

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/middleware"
	"github.com/sessionkit/sessionkit/redisstore"
	"github.com/sessionkit/sessionkit/session"
)

// maxActive is the pool size of the scripted traffic's Store.
const maxActive = 8

// site is an HTTP server with sessions in a real redis-server, whose Store
// and Manager report to Metrics.
type site struct {
	t     *testing.T
	redis *redistest.Server
	store *redisstore.Store
	srv   *httptest.Server
	// Signing keys: key signs and verifies, retired is in RetiredKeys,
	// unknown is known to nobody.
	key, retired, unknown []byte
}

func newSite(t *testing.T, m *Metrics) *site {
	t.Helper()
	s := &site{
		t:       t,
		redis:   redistest.Start(t),
		key:     []byte("the signing key of the traffic, 32 b"),
		retired: []byte("the retired key of the traffic, 32 b"),
		unknown: []byte("a key nobody configured, of 32 bytes"),
	}
	store, err := redisstore.Open(redisstore.Config{
		Addr:      s.redis.Addr(),
		MaxActive: maxActive,
		Timeout:   2 * time.Second, // generous: -race
		Observer:  m,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	s.store = store
	if err := m.WatchPool(store); err != nil {
		t.Fatal(err)
	}
	mgr, err := session.New(store, session.Config{
		Keys:           [][]byte{s.key},
		RetiredKeys:    [][]byte{s.retired},
		InsecureCookie: true, // httptest serves plain HTTP
		Metrics:        m,
		Logger:         slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	auth, err := middleware.RequireAuth(middleware.AuthConfig{})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		if _, err := session.Create(r.Context(), r.FormValue("user")); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		}
	})
	mux.HandleFunc("GET /me", func(w http.ResponseWriter, r *http.Request) {
		user, ok := session.UserID(r.Context())
		if !ok {
			user = "anonymous"
		}
		io.WriteString(w, user)
	})
	mux.Handle("POST /logout", auth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := session.Destroy(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})))
	mux.HandleFunc("POST /cart", func(w http.ResponseWriter, r *http.Request) {
		if err := session.Put(r.Context(), "cart", "1 book"); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "saved")
	})
	s.srv = httptest.NewServer(middleware.Sessions(mgr)(mux))
	t.Cleanup(s.srv.Close)
	return s
}

// client returns an HTTP client with a cookie jar of its own.
func (s *site) client() *http.Client {
	jar, _ := cookiejar.New(nil)
	tr := &http.Transport{}
	s.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Jar: jar, Transport: tr, Timeout: 10 * time.Second}
}

// do sends a request with c, with a session cookie of value cookie if not
// empty, and checks its answer.
func (s *site) do(c *http.Client, method, path, cookie string, wantCode int, wantBody string) {
	s.t.Helper()
	req, err := http.NewRequest(method, s.srv.URL+path, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: session.DefaultInsecureCookieName, Value: cookie})
	}
	resp, err := c.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if body := strings.TrimSpace(string(b)); resp.StatusCode != wantCode || body != wantBody {
		s.t.Errorf("%s %s = %d %q, want %d %q", method, path, resp.StatusCode, body, wantCode, wantBody)
	}
}

// signedBy returns a valid session token signed with key alone, made
// through a store without an Observer so that it moves no series.
func (s *site) signedBy(key []byte) string {
	s.t.Helper()
	plain, err := redisstore.Open(redisstore.Config{Addr: s.redis.Addr()})
	if err != nil {
		s.t.Fatal(err)
	}
	defer plain.Close()
	mgr, err := session.New(plain, session.Config{Keys: [][]byte{key}, InsecureCookie: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		s.t.Fatal(err)
	}
	ctx := mgr.Load(httptest.NewRequest("POST", "/login", nil))
	if _, err := session.Create(ctx, "mallory"); err != nil {
		s.t.Fatal(err)
	}
	token, ok := session.Token(ctx)
	if !ok {
		s.t.Fatal("session.Token after Create: no token")
	}
	return token
}

// TestScriptedTraffic drives a Store and Manager on a real redis-server
// through logins, reads, refused tokens, a logout and an outage, and
// checks that every series moved by exactly what that traffic should
// count, and no other.
func TestScriptedTraffic(t *testing.T) {
	m, reg := newMetrics(t, Options{})
	s := newSite(t, m)
	retiredToken, forgedToken := s.signedBy(s.retired), s.signedBy(s.unknown)
	stranger := s.client()
	alice, bob, carol := s.client(), s.client(), s.client()
	before := gather(t, reg)
	poolBefore := s.store.PoolStats()

	// 3 logins: add_user_session ×3, created ×3.
	s.do(alice, "POST", "/login?user=alice", "", http.StatusOK, "")
	s.do(bob, "POST", "/login?user=bob", "", http.StatusOK, "")
	s.do(carol, "POST", "/login?user=carol", "", http.StatusOK, "")
	// 5 reads: load ×5.
	s.do(alice, "GET", "/me", "", http.StatusOK, "alice")
	s.do(alice, "GET", "/me", "", http.StatusOK, "alice")
	s.do(bob, "GET", "/me", "", http.StatusOK, "bob")
	s.do(bob, "GET", "/me", "", http.StatusOK, "bob")
	s.do(carol, "GET", "/me", "", http.StatusOK, "carol")
	// Refused tokens: no store call, one rejection each.
	s.do(stranger, "GET", "/me", forgedToken, http.StatusOK, "anonymous")
	s.do(stranger, "GET", "/me", strings.Repeat("A", 5000), http.StatusOK, "anonymous")
	s.do(stranger, "GET", "/me", "not-a-session-token", http.StatusOK, "anonymous")
	s.do(stranger, "GET", "/me", retiredToken, http.StatusOK, "anonymous")
	// A logout: load, remove_user_session, destroyed.
	s.do(carol, "POST", "/logout", "", http.StatusNoContent, "")
	// An outage: a read with a valid cookie goes on anonymous (a failed
	// load); a write cannot be saved (a failed insert) and gets 503.
	s.redis.Stop(t)
	s.do(alice, "GET", "/me", "", http.StatusOK, "anonymous")
	s.do(stranger, "POST", "/cart", "", http.StatusServiceUnavailable, `{"error":"session store unavailable"}`)

	poolAfter := s.store.PoolStats()
	after := gather(t, reg)
	if again := s.store.PoolStats(); again != poolAfter {
		t.Fatalf("PoolStats changed with no traffic: %+v, then %+v", poolAfter, again)
	}

	// The pool's series are the Store's own snapshot.
	for k, want := range map[string]float64{
		`sessionkit_redis_pool_connections{state="in_use"}`: float64(poolAfter.Active - poolAfter.Idle),
		`sessionkit_redis_pool_connections{state="idle"}`:   float64(poolAfter.Idle),
		`sessionkit_redis_pool_max_connections`:             maxActive,
		`sessionkit_redis_pool_waits_total`:                 float64(poolAfter.Waits),
		`sessionkit_redis_pool_wait_seconds_total`:          poolAfter.WaitTime.Seconds(),
		`sessionkit_redis_dials_total`:                      float64(poolAfter.Dials),
		`sessionkit_redis_dial_errors_total`:                float64(poolAfter.DialErrors),
	} {
		if got, ok := after[k]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v from PoolStats", k, got, ok, want)
		}
	}
	if poolAfter.Active != poolAfter.Idle {
		t.Errorf("PoolStats after the traffic = %+v: connections still in use", poolAfter)
	}
	if poolAfter.Waits != 0 {
		t.Errorf("PoolStats.Waits = %d with one request at a time and %d connections, want 0", poolAfter.Waits, maxActive)
	}
	if poolAfter.DialErrors <= poolBefore.DialErrors {
		t.Errorf("dial errors went from %d to %d across an outage, want more", poolBefore.DialErrors, poolAfter.DialErrors)
	}
	if poolAfter.Dials-poolAfter.DialErrors < 1 {
		t.Errorf("PoolStats = %+v, want at least one successful dial", poolAfter)
	}

	want := map[string]float64{
		`sessionkit_sessions_total{event="created"}`:   3,
		`sessionkit_sessions_total{event="destroyed"}`: 1,

		`sessionkit_tokens_rejected_total{reason="bad_signature"}`: 1,
		`sessionkit_tokens_rejected_total{reason="oversized"}`:     1,
		`sessionkit_tokens_rejected_total{reason="malformed"}`:     1,
		`sessionkit_tokens_rejected_total{reason="retired_key"}`:   1,

		`sessionkit_requests_anonymous_on_outage_total`: 1,
		`sessionkit_commit_failures_total`:              1,

		`sessionkit_store_operation_duration_seconds_count{op="add_user_session"}`:    3,
		`sessionkit_store_operation_duration_seconds_count{op="load"}`:                7, // 5 reads, the logout, the outage read
		`sessionkit_store_operation_duration_seconds_count{op="remove_user_session"}`: 1,
		`sessionkit_store_operation_duration_seconds_count{op="insert"}`:              1,

		`sessionkit_store_errors_total{class="unavailable",op="load"}`:   1,
		`sessionkit_store_errors_total{class="unavailable",op="insert"}`: 1,
	}
	moved := diff(before, after)
	for k, v := range moved {
		switch {
		case strings.HasPrefix(k, "sessionkit_redis_"):
			// Checked against PoolStats above.
		case strings.HasPrefix(k, "sessionkit_store_operation_duration_seconds_sum{"):
			count := strings.Replace(k, "_sum{", "_count{", 1)
			if want[count] == 0 || v <= 0 {
				t.Errorf("%s moved by %v, want a positive amount only for the ops called", k, v)
			}
		default:
			if v != want[k] {
				t.Errorf("%s moved by %v, want %v", k, v, want[k])
			}
		}
	}
	for k, w := range want {
		if _, ok := moved[k]; !ok {
			t.Errorf("%s moved by 0, want %v", k, w)
		}
	}
}
