package middleware_test

import (
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/internal/syncbuf"
	"github.com/sessionkit/sessionkit/middleware"
	"github.com/sessionkit/sessionkit/redisstore"
	"github.com/sessionkit/sessionkit/session"
)

// harness is an HTTP server with sessions in a real redis-server.
type harness struct {
	t      *testing.T
	redis  *redistest.Server
	m      *session.Manager
	srv    *httptest.Server
	logs   *syncbuf.Buffer
	hooked func(w http.ResponseWriter, r *http.Request) // behind /hook, set by a test
}

type harnessOpts struct {
	idle     time.Duration
	keys     [][]byte           // signing keys; default one fixed test key
	password string             // Redis requirepass, when set
	redis    *redistest.Server  // share a server with another harness
	store    *redisstore.Store  // use this store instead of opening one
	storeCfg *redisstore.Config // store settings; default: the server's address and a 2s timeout
	limit    int                // MaxSessionsPerUser
	onEvent  func(session.Event)
	// previousFormat sets session.Config.PreviousFormat (a rolling
	// upgrade's first step).
	previousFormat bool
}

func newHarness(t *testing.T, opts harnessOpts) *harness {
	t.Helper()
	h := &harness{t: t, redis: opts.redis, logs: new(syncbuf.Buffer)}
	if h.redis == nil && opts.password != "" {
		h.redis = redistest.Start(t, "--requirepass", opts.password)
	} else if h.redis == nil {
		h.redis = redistest.Start(t)
	}
	if opts.keys == nil {
		opts.keys = [][]byte{[]byte("test signing key of 32 bytes: ok")}
	}
	store := opts.store
	if store == nil {
		cfg := redisstore.Config{
			Addr:     h.redis.Addr(),
			Password: opts.password,
			Timeout:  2 * time.Second, // generous: CI runs packages in parallel under -race
		}
		if opts.storeCfg != nil {
			cfg = *opts.storeCfg
			if cfg.Addr == "" {
				cfg.Addr = h.redis.Addr()
			}
		}
		var err error
		store, err = redisstore.Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close() })
	}
	m, err := session.New(store, session.Config{
		Keys:               opts.keys,
		MaxSessionsPerUser: opts.limit,
		OnEvent:            opts.onEvent,
		IdleTimeout:        opts.idle,
		PreviousFormat:     opts.previousFormat,
		InsecureCookie:     true, // httptest serves plain HTTP
		Logger:             slog.New(slog.NewTextHandler(h.logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	h.m = m
	auth, err := middleware.RequireAuth(middleware.AuthConfig{})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		info, err := session.Create(r.Context(), r.FormValue("user"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		token, _ := session.Token(r.Context())
		json.NewEncoder(w).Encode(map[string]string{"id": info.ID, "token": token})
	})
	mux.Handle("GET /me", auth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, _ := session.UserID(r.Context())
		io.WriteString(w, user)
	})))
	mux.HandleFunc("GET /public", func(w http.ResponseWriter, r *http.Request) {
		user, ok := session.UserID(r.Context())
		if !ok {
			user = "anonymous"
		}
		io.WriteString(w, user)
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		if err := session.Destroy(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /renew", func(w http.ResponseWriter, r *http.Request) {
		if err := session.Renew(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		token, _ := session.Token(r.Context())
		info, _ := session.FromContext(r.Context())
		json.NewEncoder(w).Encode(map[string]string{"id": info.ID, "token": token})
	})
	mux.Handle("GET /sessions", auth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, _ := session.UserID(r.Context())
		list, err := m.List(r.Context(), user)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		json.NewEncoder(w).Encode(list)
	})))
	mux.Handle("POST /revoke-others", auth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := m.RevokeOthers(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		}
	})))
	mux.HandleFunc("/hook", func(w http.ResponseWriter, r *http.Request) { h.hooked(w, r) })
	h.srv = httptest.NewServer(middleware.Sessions(m)(mux))
	t.Cleanup(h.srv.Close)
	return h
}

// client returns an HTTP client with its own cookie jar.
func (h *harness) client() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 10 * time.Second}
}

// login logs user in with c and returns the session id and signed token.
func (h *harness) login(c *http.Client, user string) (id, token string) {
	h.t.Helper()
	resp := h.do(c, "POST", "/login?user="+user, nil)
	if resp.code != http.StatusOK {
		h.t.Fatalf("POST /login = %d %s, want 200", resp.code, resp.body)
	}
	var out struct{ ID, Token string }
	if err := json.Unmarshal([]byte(resp.body), &out); err != nil {
		h.t.Fatal(err)
	}
	return out.ID, out.Token
}

type response struct {
	code   int
	body   string
	header http.Header
}

// do sends a request with c; hdr holds extra headers.
func (h *harness) do(c *http.Client, method, path string, hdr map[string]string) response {
	h.t.Helper()
	req, err := http.NewRequest(method, h.srv.URL+path, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{code: resp.StatusCode, body: strings.TrimSpace(string(b)), header: resp.Header}
}

// exists reports whether the record of session id is in Redis.
func (h *harness) exists(id string) bool {
	h.t.Helper()
	n, _ := h.redis.Do(h.t, "EXISTS", "session:"+id).(int64)
	return n == 1
}

// defaultLog points slog.Default, and with it package log, at a buffer for
// the rest of the test, and puts both back when it ends. Tests that use it
// must not run in parallel.
func defaultLog(t *testing.T) *syncbuf.Buffer {
	t.Helper()
	logs := new(syncbuf.Buffer)
	l, w, flags := slog.Default(), log.Writer(), log.Flags()
	t.Cleanup(func() {
		slog.SetDefault(l)
		log.SetOutput(w)
		log.SetFlags(flags)
	})
	slog.SetDefault(slog.New(slog.NewTextHandler(logs, nil)))
	return logs
}
