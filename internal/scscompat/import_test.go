package scscompat_test

import (
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	scsredis "github.com/alexedwards/scs/redisstore"
	"github.com/alexedwards/scs/v2"
	"github.com/gomodule/redigo/redis"

	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/redisstore"
	"github.com/sessionkit/sessionkit/session"
)

// scsCart is an app type stored in scs sessions, registered with gob as an
// scs application must.
type scsCart struct {
	Items []string
	Total int
}

// scsApp is an application on plain scs with scs's own redisstore, the
// deployment being migrated from.
type scsApp struct {
	sm   *scs.SessionManager
	ts   *httptest.Server
	pool *redis.Pool
}

func newSCSApp(t *testing.T, srv *redistest.Server, lifetime time.Duration) *scsApp {
	t.Helper()
	// What an scs application registers for the types it stores.
	gob.Register(scsCart{})
	gob.Register(time.Time{})
	gob.Register(map[string]string{})
	pool := &redis.Pool{Dial: func() (redis.Conn, error) { return redis.Dial("tcp", srv.Addr()) }}
	t.Cleanup(func() { pool.Close() })
	sm := &scs.SessionManager{ // a literal: scs.New starts a memstore goroutine
		Lifetime: lifetime,
		Store:    scsredis.New(pool),
		Codec:    scs.GobCodec{},
		ErrorFunc: func(w http.ResponseWriter, r *http.Request, err error) {
			t.Errorf("scs: %v", err)
			http.Error(w, "scs failed", 500)
		},
		Cookie: scs.SessionCookie{Name: "session", Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode, Persist: false},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/login", func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if err := sm.RenewToken(ctx); err != nil {
			t.Error(err)
		}
		sm.Put(ctx, "userID", 42)
		sm.Put(ctx, "name", "Zoë")
		sm.Put(ctx, "count", 7)
		sm.Put(ctx, "big", int64(1)<<60)
		sm.Put(ctx, "ratio", 0.25)
		sm.Put(ctx, "admin", true)
		sm.Put(ctx, "raw", []byte{0, 1, 2})
		sm.Put(ctx, "when", time.Date(2024, 5, 6, 7, 8, 9, 10, time.FixedZone("X", 3600)))
		sm.Put(ctx, "small", uint32(9))
		sm.Put(ctx, "tags", []string{"a", "b"})
		sm.Put(ctx, "prefs", map[string]string{"theme": "dark"})
		sm.Put(ctx, "cart", scsCart{Items: []string{"tea"}, Total: 3})
		fmt.Fprint(w, sm.Deadline(ctx).UnixMilli())
	})
	mux.HandleFunc("/visit", func(w http.ResponseWriter, r *http.Request) {
		sm.Put(r.Context(), "flash", "hello")
	})
	ts := httptest.NewServer(sm.LoadAndSave(mux))
	t.Cleanup(ts.Close)
	return &scsApp{sm: sm, ts: ts, pool: pool}
}

// newImportManager returns a Manager on srv that takes over scs sessions,
// with cfg's FromSCS fields beside Records, and a test server running h
// under it.
func newImportManager(t *testing.T, srv *redistest.Server, cfg session.Config, h func(w io.Writer, r *http.Request)) (*session.Manager, *httptest.Server) {
	t.Helper()
	return newImportManagerPrefix(t, srv, "", cfg, h)
}

// newImportManagerPrefix is newImportManager with Records that read the
// scs prefix prefix ("" for scs's default).
func newImportManagerPrefix(t *testing.T, srv *redistest.Server, prefix string, cfg session.Config, h func(w io.Writer, r *http.Request)) (*session.Manager, *httptest.Server) {
	t.Helper()
	store := openStore(t, srv)
	imp := session.SCSImport{UserKey: "userID"}
	if cfg.FromSCS != nil {
		imp = *cfg.FromSCS
	}
	imp.Records = store.SCSRecords(prefix)
	cfg.FromSCS = &imp
	cfg.Keys = [][]byte{[]byte("scs import test signing key, 32 b")}
	cfg.InsecureCookie = true
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	m, err := session.New(store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r = r.WithContext(m.Load(r))
		var body bytes.Buffer
		h(&body, r)
		if err := m.Commit(r.Context(), w.Header()); err != nil {
			t.Error(err)
		}
		w.Write(body.Bytes())
	}))
	t.Cleanup(ts.Close)
	return m, ts
}

// get requests u with client and returns the body and the response.
func get(t *testing.T, client *http.Client, u string) (string, *http.Response) {
	t.Helper()
	resp, err := client.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b), resp
}

func newJar(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Jar: jar}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func jarCookie(c *http.Client, u, name string) string {
	pu, _ := url.Parse(u)
	for _, ck := range c.Jar.Cookies(pu) {
		if ck.Name == name {
			return ck.Value
		}
	}
	return ""
}

func scsKeys(t *testing.T, srv *redistest.Server) []string {
	keys, err := redis.Strings(srv.Do(t, "KEYS", "scs:session:*"), nil)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// loginLogout returns a handler that logs user 7 in at /login and out at
// /logout, and writes the user id of the session it ends with.
func loginLogout(t *testing.T) func(w io.Writer, r *http.Request) {
	return func(w io.Writer, r *http.Request) {
		ctx := r.Context()
		switch r.URL.Path {
		case "/login":
			if _, err := session.Create(ctx, "7"); err != nil {
				t.Errorf("Create = %v", err)
			}
		case "/logout":
			if err := session.Destroy(ctx); err != nil {
				t.Errorf("Destroy = %v", err)
			}
		}
		id, _ := session.UserID(ctx)
		fmt.Fprint(w, id)
	}
}

// TestSCSImport logs a user in on two devices with real scs, then moves
// both browsers (the same cookie jars, as a rolling deploy would) to a
// Manager with FromSCS, under a cookie name of its own and under scs's.
func TestSCSImport(t *testing.T) {
	for _, name := range []string{"sk", "session"} {
		t.Run("cookie="+name, func(t *testing.T) {
			srv := redistest.Start(t)
			app := newSCSApp(t, srv, 2*time.Hour)
			var (
				mu     sync.Mutex
				events []session.Event
			)
			onEvent := func(e session.Event) { mu.Lock(); events = append(events, e); mu.Unlock() }
			m, ts := newImportManager(t, srv, session.Config{CookieName: name, OnEvent: onEvent}, func(w io.Writer, r *http.Request) {
				ctx := r.Context()
				info, _ := session.FromContext(ctx)
				fmt.Fprintf(w, "%s %s %d|", info.UserID, info.ID, info.ExpiresAt.UnixMilli())
				if _, ok := session.Get[int](ctx, "userID"); ok {
					fmt.Fprint(w, "userID kept|")
				}
				s, _ := session.Get[string](ctx, "name")
				n, _ := session.Get[int](ctx, "count")
				big, _ := session.Get[int64](ctx, "big")
				ratio, _ := session.Get[float64](ctx, "ratio")
				admin, _ := session.Get[bool](ctx, "admin")
				raw, _ := session.Get[[]byte](ctx, "raw")
				when, _ := session.Get[time.Time](ctx, "when")
				small, _ := session.Get[uint32](ctx, "small")
				tags, _ := session.Get[[]string](ctx, "tags")
				prefs, _ := session.Get[map[string]string](ctx, "prefs")
				cart, _ := session.Get[scsCart](ctx, "cart")
				fmt.Fprintf(w, "%s %d %d %v %v %v %s %d %v %v %+v", s, n, big, ratio, admin, raw, when.Format(time.RFC3339Nano), small, tags, prefs, cart)
			})
			const wantValues = "Zoë 7 1152921504606846976 0.25 true [0 1 2] 2024-05-06T07:08:09.00000001+01:00 9 [a b] map[theme:dark] {Items:[tea] Total:3}"

			devices := []*http.Client{newJar(t), newJar(t)}
			var deadlines []string
			for _, c := range devices {
				d, _ := get(t, c, app.ts.URL+"/login")
				deadlines = append(deadlines, d)
			}
			if n := len(scsKeys(t, srv)); n != 2 {
				t.Fatalf("scs wrote %d records, want 2", n)
			}
			var ids []string
			for i, c := range devices {
				scsToken := jarCookie(c, ts.URL, "session")
				body, resp := get(t, c, ts.URL+"/")
				head, values, _ := strings.Cut(body, "|")
				f := strings.Fields(head)
				if len(f) != 3 || f[0] != "42" || f[2] != deadlines[i] {
					t.Fatalf("device %d: got %q, want user 42 with scs's deadline %s", i, head, deadlines[i])
				}
				if values != wantValues {
					t.Errorf("device %d: values\n got %s\nwant %s", i, values, wantValues)
				}
				ids = append(ids, f[1])
				if ex, _ := redis.Int(srv.Do(t, "EXISTS", "scs:session:"+scsToken), nil); ex != 0 {
					t.Errorf("device %d: scs record still there", i)
				}
				if name != "session" && jarCookie(c, ts.URL, "session") != "" {
					t.Errorf("device %d: scs cookie not expired: %v", i, resp.Header["Set-Cookie"])
				}
				if v := jarCookie(c, ts.URL, name); v == "" || v == scsToken {
					t.Fatalf("device %d: no new cookie: %v", i, resp.Header["Set-Cookie"])
				}
				// The next request is an ordinary one.
				body, resp = get(t, c, ts.URL+"/")
				if !strings.HasPrefix(body, "42 "+f[1]+" ") || len(resp.Header["Set-Cookie"]) != 0 {
					t.Errorf("device %d: second request: %q, Set-Cookie %v", i, body, resp.Header["Set-Cookie"])
				}
			}
			if ids[0] == ids[1] {
				t.Fatal("both devices got one session")
			}
			// Each migration is its own event, not a login's ("created",
			// which a new sign-in alert would take for one).
			mu.Lock()
			for _, e := range events {
				if e.Kind != session.EventMigrated || e.UserID != "42" || !slices.Contains(ids, e.SessionID) {
					t.Errorf("event %+v, want only %q events of user 42's migrated sessions", e, session.EventMigrated)
				}
			}
			if len(events) != 2 {
				t.Errorf("%d events for 2 migrations, want 2", len(events))
			}
			mu.Unlock()
			list, err := m.List(context.Background(), "42")
			if err != nil || len(list) != 2 {
				t.Fatalf("List: %d sessions, %v; want 2", len(list), err)
			}
			if keys := scsKeys(t, srv); len(keys) != 0 {
				t.Errorf("scs records left: %d", len(keys))
			}
		})
	}
}

// TestSCSImportAnonymous carries the values of an scs session without a
// user over into an anonymous session.
func TestSCSImportAnonymous(t *testing.T) {
	srv := redistest.Start(t)
	app := newSCSApp(t, srv, time.Hour)
	_, ts := newImportManager(t, srv, session.Config{CookieName: "sk"}, func(w io.Writer, r *http.Request) {
		_, loggedIn := session.UserID(r.Context())
		flash, _ := session.Get[string](r.Context(), "flash")
		_, hasToken := session.Token(r.Context())
		fmt.Fprint(w, loggedIn, flash, hasToken)
	})
	c := newJar(t)
	get(t, c, app.ts.URL+"/visit")
	if body, _ := get(t, c, ts.URL+"/"); body != "falsehellotrue" {
		t.Fatalf("got %q, want an anonymous session with the flash", body)
	}
	if jarCookie(c, ts.URL, "sk") == "" || jarCookie(c, ts.URL, "session") != "" {
		t.Fatal("cookies not swapped")
	}
}

// TestSCSImportWrongPrefix checks that a migration whose Records read
// another prefix than scs wrote to logs nobody out for good: the scs user
// is served as anonymous, the scs cookie and record stay, a warning says
// what to check, and once the setting is mended the session migrates.
func TestSCSImportWrongPrefix(t *testing.T) {
	srv := redistest.Start(t)
	app := newSCSApp(t, srv, time.Hour)
	user := func(w io.Writer, r *http.Request) {
		id, _ := session.UserID(r.Context())
		fmt.Fprint(w, id)
	}
	browser := newJar(t)
	get(t, browser, app.ts.URL+"/login")

	var logs bytes.Buffer // one request at a time
	_, wrong := newImportManagerPrefix(t, srv, "scs:sesion:", session.Config{CookieName: "sk", Logger: slog.New(slog.NewTextHandler(&logs, nil))}, user)
	for range 2 {
		body, resp := get(t, browser, wrong.URL+"/")
		if body != "" || len(resp.Header["Set-Cookie"]) != 0 {
			t.Fatalf("with the wrong prefix: user %q, Set-Cookie %v; want anonymous and no cookie set", body, resp.Header["Set-Cookie"])
		}
	}
	if n := len(scsKeys(t, srv)); n != 1 {
		t.Fatalf("%d scs records after requests with the wrong prefix, want 1", n)
	}
	if n := strings.Count(logs.String(), "level=WARN msg=\"session: scs cookie without an scs record"); n != 1 {
		t.Errorf("logs after two requests with the wrong prefix:\n%s\nwant one warning", &logs)
	}

	_, mended := newImportManager(t, srv, session.Config{CookieName: "sk"}, user)
	if body, _ := get(t, browser, mended.URL+"/"); body != "42" {
		t.Fatalf("with the prefix mended: user %q, want 42", body)
	}
	if jarCookie(browser, mended.URL, "session") != "" || jarCookie(browser, mended.URL, "sk") == "" {
		t.Error("cookies not swapped once the prefix is mended")
	}
}

// TestSCSCookieEndsWithLoginOrLogout checks that an scs cookie left in
// the browser (its record not found yet, here under a wrong prefix) goes
// with the browser's next login or logout: its scs session, once found,
// must not log the browser back in after a logout, as whoever it was.
func TestSCSCookieEndsWithLoginOrLogout(t *testing.T) {
	srv := redistest.Start(t)
	app := newSCSApp(t, srv, time.Hour)
	h := loginLogout(t)
	cfg := session.Config{CookieName: "sk", KeepSiteData: true} // no Clear-Site-Data to lean on
	_, wrong := newImportManagerPrefix(t, srv, "scs:sesion:", cfg, h)
	_, mended := newImportManager(t, srv, cfg, h)

	t.Run("login", func(t *testing.T) {
		browser := newJar(t)
		get(t, browser, app.ts.URL+"/login") // scs's user 42
		if body, _ := get(t, browser, wrong.URL+"/"); body != "" {
			t.Fatalf("with the wrong prefix: user %q, want anonymous", body)
		}
		if body, _ := get(t, browser, wrong.URL+"/login"); body != "7" {
			t.Fatalf("login: user %q, want 7", body)
		}
		if jarCookie(browser, wrong.URL, "session") != "" {
			t.Error("the scs cookie outlived the login")
		}
		get(t, browser, mended.URL+"/logout")
		if body, _ := get(t, browser, mended.URL+"/"); body != "" {
			t.Errorf("after the logout, with the prefix mended: user %q, want anonymous", body)
		}
	})
	t.Run("scs cookie at /app", func(t *testing.T) {
		// The browser does not send it to /login or /logout.
		pathCfg := cfg
		pathCfg.FromSCS = &session.SCSImport{UserKey: "userID", CookiePath: "/app"}
		_, wrongPath := newImportManagerPrefix(t, srv, "scs:sesion:", pathCfg, h)
		_, mendedPath := newImportManager(t, srv, pathCfg, h)
		b, err := scs.GobCodec{}.Encode(time.Now().Add(time.Hour), map[string]any{"userID": 42})
		if err != nil {
			t.Fatal(err)
		}
		const token = "CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC"
		if err := scsredis.New(app.pool).Commit(token, b, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		browser := newJar(t)
		u, _ := url.Parse(wrongPath.URL)
		browser.Jar.SetCookies(u, []*http.Cookie{{Name: "session", Value: token, Path: "/app"}})
		get(t, browser, wrongPath.URL+"/login")
		get(t, browser, wrongPath.URL+"/logout")
		if body, _ := get(t, browser, mendedPath.URL+"/app/x"); body != "" {
			t.Errorf("after a login and logout outside /app, with the prefix mended: user %q, want anonymous", body)
		}
	})
	t.Run("logout", func(t *testing.T) {
		browser := newJar(t)
		get(t, browser, wrong.URL+"/login")  // sessionkit's user 7 first
		get(t, browser, app.ts.URL+"/login") // then scs's 42, beside it
		if body, _ := get(t, browser, mended.URL+"/"); body != "7" {
			t.Fatalf("with both cookies: user %q, want sessionkit's 7", body)
		}
		get(t, browser, mended.URL+"/logout")
		if jarCookie(browser, mended.URL, "session") != "" {
			t.Error("the scs cookie outlived the logout")
		}
		if body, _ := get(t, browser, mended.URL+"/"); body != "" {
			t.Errorf("after the logout: user %q, want anonymous", body)
		}
	})
}

// scsGhost and scsGhostLater are app types of the same shape: the first
// writes the records of TestSCSImportUnregistered, the second is
// registered under the name those records are patched to.
type scsGhost struct{ Note string }
type scsGhostLater struct{ Note string }

// unregisteredOnce is set by the first run of TestSCSImportUnregistered.
var unregisteredOnce atomic.Bool

// TestSCSImportUnregistered checks that a record holding a type the
// migrating app has not registered with gob, as the scs app did, stays in
// Redis with its cookie, its user served as anonymous and the mistake
// logged at Error, and migrates once the type is registered; where Take
// alone would delete it.
func TestSCSImportUnregistered(t *testing.T) {
	if !unregisteredOnce.CompareAndSwap(false, true) {
		// gob's registry is the process's: the type registered below
		// stays so in the next run of -count.
		t.Skip("runs once per process")
	}
	srv := redistest.Start(t)
	gob.RegisterName("scscompat.ghost", scsGhost{})
	b, err := scs.GobCodec{}.Encode(time.Now().Add(time.Hour), map[string]any{"userID": 42, "note": scsGhost{Note: "kept"}})
	if err != nil {
		t.Fatal(err)
	}
	// The same length: the stream stays well formed, under a name nothing
	// registered yet.
	b = bytes.Replace(b, []byte("scscompat.ghost"), []byte("scscompat.ghosx"), 1)
	pool := &redis.Pool{Dial: func() (redis.Conn, error) { return redis.Dial("tcp", srv.Addr()) }}
	t.Cleanup(func() { pool.Close() })
	const token = "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"
	if err := scsredis.New(pool).Commit(token, b, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer // one request at a time
	_, ts := newImportManager(t, srv, session.Config{CookieName: "sk", Logger: slog.New(slog.NewTextHandler(&logs, nil))}, func(w io.Writer, r *http.Request) {
		id, _ := session.UserID(r.Context())
		note, _ := session.Get[scsGhostLater](r.Context(), "note")
		fmt.Fprint(w, id, " ", note.Note)
	})
	browser := newJar(t)
	u, _ := url.Parse(ts.URL)
	browser.Jar.SetCookies(u, []*http.Cookie{{Name: "session", Value: token, Path: "/"}})

	body, resp := get(t, browser, ts.URL+"/")
	if body != " " || len(resp.Header["Set-Cookie"]) != 0 {
		t.Fatalf("with the type unregistered: %q, Set-Cookie %v; want anonymous and no cookie set", body, resp.Header["Set-Cookie"])
	}
	if n := len(scsKeys(t, srv)); n != 1 {
		t.Fatalf("%d scs records after the request, want the record left", n)
	}
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "scscompat.ghosx") {
		t.Errorf("logs = %s, want an error naming the type", &logs)
	}

	gob.RegisterName("scscompat.ghosx", scsGhostLater{})
	if body, _ := get(t, browser, ts.URL+"/"); body != "42 kept" {
		t.Fatalf("with the type registered: %q, want user 42 and the note", body)
	}
	if n := len(scsKeys(t, srv)); n != 0 {
		t.Errorf("%d scs records after the migration, want 0", n)
	}
}

// TestSCSImportExpired checks that an scs session past its deadline, or
// already gone from Redis, gives no session, and that its cookie is
// dropped; but for one gone before Records found any record (the setting of
// Records may be wrong: see TestSCSImportWrongPrefix), which is left.
func TestSCSImportExpired(t *testing.T) {
	srv := redistest.Start(t)
	app := newSCSApp(t, srv, 100*time.Millisecond)
	_, ts := newImportManager(t, srv, session.Config{CookieName: "sk"}, func(w io.Writer, r *http.Request) {
		_, ok := session.UserID(r.Context())
		fmt.Fprint(w, ok, " ", errors.Is(session.Put(r.Context(), "k", "v"), session.ErrNoSession))
	})

	// Gone from Redis: scs's own expiry removed the key.
	first, gone := newJar(t), newJar(t)
	get(t, first, app.ts.URL+"/login")
	get(t, gone, app.ts.URL+"/login")
	time.Sleep(200 * time.Millisecond)
	// Still in Redis, but past its deadline (scs's store kept it longer).
	past := newJar(t)
	b, err := scs.GobCodec{}.Encode(time.Now().Add(-time.Minute), map[string]any{"userID": 42})
	if err != nil {
		t.Fatal(err)
	}
	const token = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	if err := scsredis.New(app.pool).Commit(token, b, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(ts.URL)
	past.Jar.SetCookies(u, []*http.Cookie{{Name: "session", Value: token, Path: "/"}})

	for _, tc := range []struct {
		name string
		c    *http.Client
		left bool // the scs cookie stays
	}{
		{"gone, before any record was found", first, true},
		{"past deadline", past, false},
		{"gone", gone, false},
	} {
		if jarCookie(tc.c, ts.URL, "session") == "" {
			t.Fatalf("%s: no scs cookie to begin with", tc.name)
		}
		body, resp := get(t, tc.c, ts.URL+"/")
		if body != "false true" {
			t.Errorf("%s: got %q, want anonymous and no new session", tc.name, body)
		}
		if (jarCookie(tc.c, ts.URL, "session") != "") != tc.left || jarCookie(tc.c, ts.URL, "sk") != "" {
			t.Errorf("%s: cookies after: %v", tc.name, resp.Header["Set-Cookie"])
		}
	}
	if keys := scsKeys(t, srv); len(keys) != 0 {
		t.Errorf("scs records left: %d", len(keys))
	}
}

// TestSCSImportConcurrent sends the same scs cookie in many requests at
// once: exactly one migrates it, the others set no cookie and cannot start
// a session of their own.
func TestSCSImportConcurrent(t *testing.T) {
	for _, name := range []string{"sk", "session"} {
		t.Run("cookie="+name, func(t *testing.T) {
			srv := redistest.Start(t)
			app := newSCSApp(t, srv, time.Hour)
			m, ts := newImportManager(t, srv, session.Config{CookieName: name}, func(w io.Writer, r *http.Request) {
				id, _ := session.UserID(r.Context())
				session.Put(r.Context(), "visited", true) // refused for the losers
				fmt.Fprint(w, id)
			})
			c := newJar(t)
			get(t, c, app.ts.URL+"/login")
			scsToken := jarCookie(c, app.ts.URL, "session")

			const n = 16
			var wg sync.WaitGroup
			start := make(chan struct{})
			bodies := make([]string, n)
			cookies := make([][]*http.Cookie, n)
			for i := range n {
				wg.Go(func() {
					req, _ := http.NewRequest("GET", ts.URL+"/", nil)
					req.AddCookie(&http.Cookie{Name: "session", Value: scsToken})
					<-start
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Error(err)
						return
					}
					defer resp.Body.Close()
					b, _ := io.ReadAll(resp.Body)
					bodies[i], cookies[i] = string(b), resp.Cookies()
				})
			}
			close(start)
			wg.Wait()
			winners, issued := 0, 0
			for i := range n {
				if bodies[i] == "42" {
					winners++
				} else if bodies[i] != "" {
					t.Errorf("request %d: user %q", i, bodies[i])
				}
				for _, ck := range cookies[i] {
					if ck.Name == name && ck.Value != "" {
						issued++
					}
					if ck.Name == "session" && ck.Value == "" && name == "session" {
						t.Errorf("request %d expired the shared cookie", i)
					}
				}
			}
			if winners != 1 || issued != 1 {
				t.Fatalf("%d requests logged in, %d cookies issued; want 1 and 1", winners, issued)
			}
			list, err := m.List(context.Background(), "42")
			if err != nil || len(list) != 1 {
				t.Fatalf("List: %d sessions, %v; want 1", len(list), err)
			}
			// The sessions store holds the one migrated session and no
			// anonymous one from a loser's Put.
			keys, _ := redis.Strings(srv.Do(t, "KEYS", "session:*"), nil)
			if len(keys) != 1 || len(scsKeys(t, srv)) != 0 {
				t.Fatalf("keys: %d session records, %d scs records; want 1 and 0", len(keys), len(scsKeys(t, srv)))
			}
		})
	}
}

// The user id types of an app that names them, registered with gob for
// scs as such an app does.
type (
	scsUserNumber int64
	scsUserName   string
)

// TestSCSImportNamedUserID migrates scs sessions whose user id has a named
// type of an integer or a string kind: the user stays logged in, as the
// decimal form or the string.
func TestSCSImportNamedUserID(t *testing.T) {
	gob.Register(scsUserNumber(0))
	gob.Register(scsUserName(""))
	srv := redistest.Start(t)
	app := newSCSApp(t, srv, time.Hour)
	_, ts := newImportManager(t, srv, session.Config{CookieName: "sk"}, func(w io.Writer, r *http.Request) {
		id, _ := session.UserID(r.Context())
		fmt.Fprint(w, id)
	})
	u, _ := url.Parse(ts.URL)
	for i, tc := range []struct {
		id   any
		want string
	}{
		{scsUserNumber(42), "42"},
		{scsUserName("alice"), "alice"},
	} {
		b, err := scs.GobCodec{}.Encode(time.Now().Add(time.Hour), map[string]any{"userID": tc.id, "theme": "dark"})
		if err != nil {
			t.Fatal(err)
		}
		token := fmt.Sprintf("%043d", i)
		if err := scsredis.New(app.pool).Commit(token, b, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		c := newJar(t)
		c.Jar.SetCookies(u, []*http.Cookie{{Name: "session", Value: token, Path: "/"}})
		if body, _ := get(t, c, ts.URL+"/"); body != tc.want {
			t.Errorf("scs session of user %#v: logged in as %q after the migration, want %q", tc.id, body, tc.want)
		}
	}
}

// TestSCSImportLogout logs out in the request that migrates an scs
// session, the browser holding only scs's cookie: the session ends, scs's
// cookie is expired, and the response clears site data, as any logout of
// a session that came in a cookie does.
func TestSCSImportLogout(t *testing.T) {
	srv := redistest.Start(t)
	app := newSCSApp(t, srv, time.Hour)
	m, ts := newImportManager(t, srv, session.Config{CookieName: "sk"}, func(w io.Writer, r *http.Request) {
		if err := session.Destroy(r.Context()); err != nil {
			t.Error(err)
		}
	})
	browser := newJar(t)
	get(t, browser, app.ts.URL+"/login")
	_, resp := get(t, browser, ts.URL+"/logout")
	if got := resp.Header.Get("Clear-Site-Data"); got != `"cookies"` {
		t.Errorf("logout of a migrating scs session: Clear-Site-Data %q, want \"cookies\"", got)
	}
	if jarCookie(browser, ts.URL, "session") != "" || jarCookie(browser, ts.URL, "sk") != "" {
		t.Errorf("cookies after the logout: %v, want none", resp.Header["Set-Cookie"])
	}
	if list, err := m.List(context.Background(), "42"); err != nil || len(list) != 0 {
		t.Errorf("List after the logout: %d sessions, %v; want none", len(list), err)
	}
}

// TestSCSImportWriteBack runs the rolling deploy of the migration guide: an
// old scs instance loads a session, a new instance migrates it meanwhile,
// and the old instance then writes the session back, as scs does at the
// end of every request that changed it (or with an idle timeout, every
// request). The copy must not become a second session: the next request
// with the scs cookie to a new instance is anonymous, deletes the copy and
// expires the cookie, and after the migrated session's logout nothing of
// the user is left. The key that retires the scs key holds no token and
// lives until scs's deadline, past the idle timeout that a write-back
// would renew.
func TestSCSImportWriteBack(t *testing.T) {
	srv := redistest.Start(t)
	app := newSCSApp(t, srv, time.Hour)
	app.sm.IdleTimeout = time.Minute
	loaded, release := make(chan struct{}), make(chan struct{})
	old := httptest.NewServer(app.sm.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(loaded)
		<-release
		app.sm.Put(r.Context(), "cart", scsCart{Items: []string{"tea", "milk"}})
	})))
	defer old.Close()
	m, ts := newImportManager(t, srv, session.Config{CookieName: "sk"}, func(w io.Writer, r *http.Request) {
		if r.URL.Path == "/logout" {
			if err := session.Destroy(r.Context()); err != nil {
				t.Error(err)
			}
		}
		id, _ := session.UserID(r.Context())
		fmt.Fprint(w, id)
	})

	browser := newJar(t)
	get(t, browser, app.ts.URL+"/login")
	scsToken := jarCookie(browser, app.ts.URL, "session")
	done := make(chan struct{})
	go func() {
		defer close(done)
		req, _ := http.NewRequest("GET", old.URL+"/", nil)
		req.AddCookie(&http.Cookie{Name: "session", Value: scsToken})
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		} else {
			t.Error(err)
		}
	}()
	<-loaded
	if body, _ := get(t, browser, ts.URL+"/"); body != "42" {
		t.Fatalf("migration: logged in as %q, want 42", body)
	}
	close(release)
	<-done
	if n := len(scsKeys(t, srv)); n != 1 {
		t.Fatalf("%d scs records after the old instance's write-back, want 1", n)
	}

	// The user logs out on a new instance; whoever holds the old scs
	// cookie (a thief, the browser's history) then tries it there.
	get(t, browser, ts.URL+"/logout")
	stale := newJar(t)
	u, _ := url.Parse(ts.URL)
	stale.Jar.SetCookies(u, []*http.Cookie{{Name: "session", Value: scsToken, Path: "/"}})
	body, resp := get(t, stale, ts.URL+"/")
	if body != "" {
		t.Errorf("after the logout, the written-back scs session migrated again, as user %q", body)
	}
	if list, err := m.List(context.Background(), "42"); err != nil || len(list) != 0 {
		t.Errorf("List after the logout: %d sessions, %v; want none", len(list), err)
	}
	if jarCookie(stale, ts.URL, "session") != "" || jarCookie(stale, ts.URL, "sk") != "" {
		t.Errorf("cookies after the refused copy: %v, want the scs cookie expired and no new one", resp.Header["Set-Cookie"])
	}
	if n := len(scsKeys(t, srv)); n != 0 {
		t.Errorf("%d scs records after the refused copy, want 0", n)
	}

	marks, err := redis.Strings(srv.Do(t, "KEYS", "scs_migrated:*"), nil)
	if err != nil || len(marks) != 1 {
		t.Errorf("marker keys %q, %v; want one", marks, err)
	}
	for _, k := range marks {
		if strings.Contains(k, scsToken) {
			t.Error("the marker key holds the scs token")
		}
		if pttl, _ := redis.Int64(srv.Do(t, "PTTL", k), nil); pttl < (59 * time.Minute).Milliseconds() {
			t.Errorf("marker PTTL = %dms, want until scs's deadline, an hour away", pttl)
		}
	}

}

// TestSCSImportWaitReplicas migrates an scs session through a Store with
// WaitReplicas on a Redis without replicas, where every WAIT falls short: a
// migration does not wait, as a login does not, so the user is logged in,
// not served 503 and then logged out with the record already taken.
func TestSCSImportWaitReplicas(t *testing.T) {
	srv := redistest.Start(t)
	app := newSCSApp(t, srv, time.Hour)
	store, err := redisstore.Open(redisstore.Config{Addr: srv.Addr(), Timeout: 300 * time.Millisecond, WaitReplicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	m, err := session.New(store, session.Config{
		Keys:           [][]byte{[]byte("scs import test signing key, 32 b")},
		InsecureCookie: true,
		CookieName:     "sk",
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
		FromSCS:        &session.SCSImport{Records: store.SCSRecords(""), UserKey: "userID"},
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := m.Load(r)
		id, _ := session.UserID(ctx)
		if err := m.Commit(ctx, w.Header()); err != nil {
			t.Error(err)
		}
		fmt.Fprint(w, id, " ", session.LoadError(ctx))
	}))
	t.Cleanup(ts.Close)

	c := newJar(t)
	get(t, c, app.ts.URL+"/login")
	if body, _ := get(t, c, ts.URL+"/"); body != "42 <nil>" {
		t.Fatalf("first request after the switch: %q, want user 42 and no load error", body)
	}
	if body, _ := get(t, c, ts.URL+"/"); body != "42 <nil>" {
		t.Errorf("second request: %q, want user 42", body)
	}
	if n := len(scsKeys(t, srv)); n != 0 {
		t.Errorf("%d scs records left, want 0", n)
	}
}

// TestSCSImportWrongUserKey checks that a FromSCS.UserKey that names no
// key of the scs sessions, which migrates every logged-in scs user as
// anonymous (their scs record gone), is warned about, with the session's
// keys that look like a user key (no other: their names may hold data), at
// most once per interval; that no such warning comes
// once a session had the key (anonymous sessions are then expected); and
// that New warns of an empty UserKey.
func TestSCSImportWrongUserKey(t *testing.T) {
	srv := redistest.Start(t)
	app := newSCSApp(t, srv, time.Hour)
	user := func(w io.Writer, r *http.Request) {
		id, _ := session.UserID(r.Context())
		fmt.Fprint(w, id)
	}
	warnings := func(logs *bytes.Buffer) int {
		return strings.Count(logs.String(), `level=WARN msg="session: scs session migrated as anonymous: it has no value under FromSCS.UserKey`)
	}

	var logs bytes.Buffer // one request at a time
	_, wrong := newImportManager(t, srv, session.Config{CookieName: "sk", FromSCS: &session.SCSImport{UserKey: "userId"},
		Logger: slog.New(slog.NewTextHandler(&logs, nil))}, user)
	for i := range 2 {
		browser := newJar(t)
		get(t, browser, app.ts.URL+"/login")
		if body, _ := get(t, browser, wrong.URL+"/"); body != "" {
			t.Fatalf("with UserKey userId: user %q, want anonymous", body)
		}
		if n := warnings(&logs); n != 1 {
			t.Fatalf("after %d migrations with UserKey userId, %d warnings, want 1; logs:\n%s", i+1, n, &logs)
		}
	}
	if !strings.Contains(logs.String(), `user_key=userId keys=12 user_keys=[userID]`) {
		t.Errorf("the warning names not the UserKey, the count of keys and the one like it alone:\n%s", &logs)
	}

	logs.Reset()
	_, right := newImportManager(t, srv, session.Config{CookieName: "sk", Logger: slog.New(slog.NewTextHandler(&logs, nil))}, user)
	browser := newJar(t)
	get(t, browser, app.ts.URL+"/login")
	if body, _ := get(t, browser, right.URL+"/"); body != "42" {
		t.Fatalf("with UserKey userID: user %q, want 42", body)
	}
	visitor := newJar(t)
	get(t, visitor, app.ts.URL+"/visit")
	get(t, visitor, right.URL+"/")
	if n := warnings(&logs); n != 0 {
		t.Errorf("an anonymous scs session after one with the UserKey logged %d warnings, want none:\n%s", n, &logs)
	}

	logs.Reset()
	newImportManager(t, srv, session.Config{CookieName: "sk", FromSCS: &session.SCSImport{}, Logger: slog.New(slog.NewTextHandler(&logs, nil))}, user)
	if !strings.Contains(logs.String(), "level=WARN msg=\"session: FromSCS.UserKey is empty") {
		t.Errorf("New with an empty UserKey logged:\n%s\nwant a warning", &logs)
	}
}
