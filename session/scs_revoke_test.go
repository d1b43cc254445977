package session

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alexedwards/scs/v2"
	"github.com/gomodule/redigo/redis"

	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/redisstore"
)

// newSCSRevokeManager returns a Manager on a real Redis that migrates scs
// sessions with redisstore's records, which can mark users.
func newSCSRevokeManager(t *testing.T, cfg Config) (*Manager, *redistest.Server) {
	t.Helper()
	r := redistest.Start(t)
	return newSCSRevokeManagerOn(t, r, cfg), r
}

// newSCSRevokeManagerOn is newSCSRevokeManager on r, for another instance
// of the same app.
func newSCSRevokeManagerOn(t *testing.T, r *redistest.Server, cfg Config) *Manager {
	t.Helper()
	store := openTestStore(t, r)
	imp := SCSImport{UserKey: "userID"}
	if cfg.FromSCS != nil {
		imp = *cfg.FromSCS
	}
	imp.Records = store.SCSRecords("")
	cfg.FromSCS = &imp
	cfg.Keys = [][]byte{testKey(7)}
	cfg.InsecureCookie = true
	cfg.CookieName = "sk"
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := New(store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// putSCS writes an scs session of userID under token, as scs/redisstore
// does, and returns token.
func putSCS(t *testing.T, r *redistest.Server, token, userID string) string {
	t.Helper()
	deadline := time.Now().Add(time.Hour)
	b, err := scs.GobCodec{}.Encode(deadline, map[string]any{"userID": userID, "theme": "dark"})
	if err != nil {
		t.Fatal(err)
	}
	r.Do(t, "SET", "scs:session:"+token, b, "PXAT", deadline.UnixMilli())
	return token
}

// loadSCS loads a request that carries the scs cookie token, and, if
// cookie is not empty, the Manager's own cookie beside it.
func loadSCS(m *Manager, token, cookie string) context.Context {
	req := httptest.NewRequest("GET", "http://localhost/", nil)
	req.AddCookie(&http.Cookie{Name: DefaultSCSCookieName, Value: token})
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: "sk", Value: cookie})
	}
	return m.Load(req)
}

// pausedAdd is a Store whose AddUserSession, once armed, signals reached
// and waits for release before it inserts: a test runs a revocation in
// between.
type pausedAdd struct {
	Store
	reached, release chan struct{}
}

func (p pausedAdd) AddUserSession(ctx context.Context, s NewSession) ([]string, error) {
	close(p.reached)
	<-p.release
	return p.Store.AddUserSession(ctx, s)
}

// TestSCSRevokeAllEndsUnmigrated checks that RevokeAll and RevokeOthers
// during a migration end the user's scs sessions that have not migrated,
// which no index lists: their cookies, and any copy of them, then migrate
// into nothing, while another user's scs session still migrates.
func TestSCSRevokeAllEndsUnmigrated(t *testing.T) {
	for _, revoke := range []string{"RevokeAll", "RevokeOthers"} {
		t.Run(revoke, func(t *testing.T) {
			m, r := newSCSRevokeManager(t, Config{})
			laptop := putSCS(t, r, strings.Repeat("L", tokenLen), "u1")
			phone := putSCS(t, r, strings.Repeat("P", tokenLen), "u1")
			other := putSCS(t, r, strings.Repeat("O", tokenLen), "u2")
			// The laptop migrates, and ends the user's other sessions
			// (RevokeOthers, after a password change), or an
			// administrator ends them all.
			ctx := loadSCS(m, laptop, "")
			if id, _ := UserID(ctx); id != "u1" {
				t.Fatalf("laptop: user %q, want u1", id)
			}
			var n int
			var err error
			if revoke == "RevokeAll" {
				n, err = m.RevokeAll(context.Background(), "u1")
			} else {
				n, err = m.RevokeOthers(ctx)
			}
			if want := map[string]int{"RevokeAll": 1, "RevokeOthers": 0}[revoke]; err != nil || n != want {
				t.Fatalf("%s = %d, %v; want %d, nil", revoke, n, err, want)
			}
			if id, _ := UserID(loadSCS(m, phone, "")); id != "" {
				t.Errorf("the phone's scs session migrated after %s: user %q", revoke, id)
			}
			if n := r.Do(t, "EXISTS", "scs:session:"+phone); n != int64(0) {
				t.Error("the phone's scs record outlived its refused migration")
			}
			if id, _ := UserID(loadSCS(m, other, "")); id != "u2" {
				t.Errorf("another user's scs session after %s: user %q, want u2", revoke, id)
			}
			list, err := m.List(context.Background(), "u1")
			if want := map[string]int{"RevokeAll": 0, "RevokeOthers": 1}[revoke]; err != nil || len(list) != want {
				t.Errorf("List(u1) = %d sessions, %v; want %d", len(list), err, want)
			}
			// The mark lasts scs's Lifetime, by default Config.Lifetime
			// or 24h, whichever is longer.
			ttl, _ := redis.Int64(r.Do(t, "PTTL", "scs_migrated:user:u1"), nil)
			if ttl < int64(23*time.Hour/time.Millisecond) || ttl > int64(24*time.Hour/time.Millisecond) {
				t.Errorf("PTTL of the user's mark = %d ms, want about 24h", ttl)
			}
		})
	}
}

// TestSCSRevokeDuringMigration runs a RevokeAll while a migration of the
// user's scs session stands between its first look at the user's mark and
// the insert: the revocation finds nothing in the index, and the session
// the migration then stores must not outlive it.
func TestSCSRevokeDuringMigration(t *testing.T) {
	m, r := newSCSRevokeManager(t, Config{})
	token := putSCS(t, r, strings.Repeat("R", tokenLen), "u1")
	p := pausedAdd{Store: m.store, reached: make(chan struct{}), release: make(chan struct{})}
	m.store = p
	loaded := make(chan context.Context)
	go func() { loaded <- loadSCS(m, token, "") }()
	<-p.reached
	if n, err := m.RevokeAll(context.Background(), "u1"); err != nil || n != 0 {
		t.Fatalf("RevokeAll during the migration = %d, %v; want 0, nil", n, err)
	}
	close(p.release)
	ctx := <-loaded
	if id, _ := UserID(ctx); id != "" {
		t.Errorf("the migration that ran beside RevokeAll signed in %q", id)
	}
	if list, err := m.List(context.Background(), "u1"); err != nil || len(list) != 0 {
		t.Errorf("List after RevokeAll = %d sessions, %v; want none", len(list), err)
	}
	if keys, _ := redis.Strings(r.Do(t, "KEYS", "session:*"), nil); len(keys) != 0 {
		t.Errorf("records left: %d, want none", len(keys))
	}
}

// TestSCSRevokedKeepsLimit checks that an scs session refused after a
// RevokeOthers takes no place under MaxSessionsPerUser: the session kept
// is not the oldest one the limit would end for it.
func TestSCSRevokedKeepsLimit(t *testing.T) {
	m, r := newSCSRevokeManager(t, Config{MaxSessionsPerUser: 1})
	token := putSCS(t, r, strings.Repeat("K", tokenLen), "u1")
	cookie, _ := login(t, m, "u1")
	serve(t, m, cookie, func(ctx context.Context) {
		if _, err := m.RevokeOthers(ctx); err != nil {
			t.Fatal(err)
		}
	})
	if id, _ := UserID(loadSCS(m, token, "")); id != "" {
		t.Fatalf("scs session after RevokeOthers: user %q, want anonymous", id)
	}
	if list, err := m.List(context.Background(), "u1"); err != nil || len(list) != 1 {
		t.Fatalf("List = %d sessions, %v; want the one kept", len(list), err)
	}
}

// TestSCSRevokeMarkFails checks that a RevokeAll whose mark of the user
// fails still ends the sessions in the index, and says that scs sessions
// may still migrate.
func TestSCSRevokeMarkFails(t *testing.T) {
	m, _ := newSCSRevokeManager(t, Config{})
	login(t, m, "u1")
	m.cfg.FromSCS.Records = failingUsers{m.cfg.FromSCS.Records}
	n, err := m.RevokeAll(context.Background(), "u1")
	if n != 1 || !errors.Is(err, ErrStoreUnavailable) || !strings.Contains(err.Error(), "scs sessions") {
		t.Fatalf("RevokeAll with the mark failing = %d, %v; want 1 and an error naming the scs sessions", n, err)
	}
}

// failingUsers is SCSRecords whose marks of users fail.
type failingUsers struct{ SCSRecords }

func (failingUsers) RetireUser(context.Context, string, time.Time) error {
	return errors.New("connection refused")
}

func (failingUsers) UserRetired(context.Context, string) (bool, error) {
	return false, errors.New("connection refused")
}

// TestSCSRecordsWithoutUsers checks that New warns of SCSRecords that
// cannot mark users.
func TestSCSRecordsWithoutUsers(t *testing.T) {
	var logs bytes.Buffer
	_, err := New(openTestStore(t, redistest.Start(t)), Config{
		Keys:    [][]byte{testKey(7)},
		FromSCS: &SCSImport{Records: &recordingRecords{}, UserKey: "userID"},
		Logger:  slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "RevokeAll and RevokeOthers do not end the scs sessions not migrated yet") {
		t.Errorf("New logged %q, want a warning that revocations miss scs sessions", logs.String())
	}
}

// TestSCSImportLifetime checks FromSCS.Lifetime's bounds and default.
func TestSCSImportLifetime(t *testing.T) {
	for _, tc := range []struct {
		lifetime, scs, want time.Duration
	}{
		{0, 0, DefaultLifetime},
		{time.Hour, 0, DefaultLifetime},
		{72 * time.Hour, 0, 72 * time.Hour},
		{time.Hour, 30 * 24 * time.Hour, 30 * 24 * time.Hour},
		{0, -time.Second, -1},
		{0, 101 * 365 * 24 * time.Hour, -1},
	} {
		cfg, err := Config{Keys: [][]byte{testKey(7)}, Lifetime: tc.lifetime,
			FromSCS: &SCSImport{Records: &recordingRecords{}, Lifetime: tc.scs}}.withDefaults()
		switch {
		case tc.want < 0 && (err == nil || !strings.Contains(err.Error(), "FromSCS.Lifetime")):
			t.Errorf("FromSCS.Lifetime %v: %v, want an error naming it", tc.scs, err)
		case tc.want >= 0 && err != nil:
			t.Errorf("FromSCS.Lifetime %v beside Lifetime %v: %v", tc.scs, tc.lifetime, err)
		case tc.want >= 0 && cfg.FromSCS.Lifetime != tc.want:
			t.Errorf("FromSCS.Lifetime %v beside Lifetime %v = %v, want %v", tc.scs, tc.lifetime, cfg.FromSCS.Lifetime, tc.want)
		}
	}
}

// flakyTake is SCSRecords whose Take fails while fail is set.
type flakyTake struct {
	SCSRecords
	fail *bool
}

func (f flakyTake) Take(ctx context.Context, key string) ([]byte, bool, error) {
	if *f.fail {
		return nil, false, errors.New("i/o timeout")
	}
	return f.SCSRecords.Take(ctx, key)
}

// TestSCSEndFailsKeepsCookie checks that a logout or login that cannot end
// the scs session whose cookie came beside the Manager's leaves that
// cookie, so that a logout tried again ends it: expired, it would leave
// the record, and any copy of the cookie, alive with nobody able to end
// it. The logout says so; the login stands.
func TestSCSEndFailsKeepsCookie(t *testing.T) {
	for _, action := range []string{"logout", "login"} {
		t.Run(action, func(t *testing.T) {
			m, r := newSCSRevokeManager(t, Config{})
			fail := false
			m.cfg.FromSCS.Records = flakyTake{m.cfg.FromSCS.Records, &fail}
			cookie, _ := login(t, m, "u7")
			token := putSCS(t, r, strings.Repeat("F", tokenLen), "u1")
			ctx := loadSCS(m, token, cookie)
			fail = true
			var err error
			if action == "logout" {
				err = Destroy(ctx)
				if !errors.Is(err, ErrStoreUnavailable) || !strings.Contains(err.Error(), "scs session") {
					t.Errorf("Destroy with the scs record out of reach = %v, want ErrStoreUnavailable naming the scs session", err)
				}
			} else if _, err = Create(ctx, "u7"); err != nil {
				t.Errorf("Create with the scs record out of reach = %v, want the login to stand", err)
			}
			fail = false
			h := http.Header{}
			if err := m.Commit(ctx, h); err != nil {
				t.Fatal(err)
			}
			cookie = "" // the logout's expired it
			if v := h.Get("Clear-Site-Data"); v != "" {
				t.Errorf("the %s sent Clear-Site-Data %s, which deletes the scs cookie too", action, v)
			}
			for _, c := range (&http.Response{Header: h}).Cookies() {
				switch {
				case c.Name == DefaultSCSCookieName:
					t.Errorf("the %s expired the scs cookie though its session lives on: %q", action, h["Set-Cookie"])
				case c.Name == "sk" && c.MaxAge >= 0:
					cookie = c.Value // the login's
				}
			}
			// With the cookie kept, a logout (of the session the login
			// made, or of the scs session itself) ends it.
			ctx = loadSCS(m, token, cookie)
			if err := Destroy(ctx); err != nil {
				t.Fatal(err)
			}
			if n := r.Do(t, "EXISTS", "scs:session:"+token); n != int64(0) {
				t.Error("the scs record outlived the logout tried again")
			}
		})
	}
}

// TestSCSLifetimeTooShortWarns checks that a migration warns when an scs
// session's deadline lies beyond FromSCS.Lifetime from now: scs's Lifetime
// is longer than the Manager takes it for, and the mark of a revoked user
// could end before such a session does.
func TestSCSLifetimeTooShortWarns(t *testing.T) {
	m, r := newSCSRevokeManager(t, Config{})
	var logs bytes.Buffer
	m.log = slog.New(slog.NewTextHandler(&logs, nil))
	deadline := time.Now().Add(48 * time.Hour)
	b, err := scs.GobCodec{}.Encode(deadline, map[string]any{"userID": "u1"})
	if err != nil {
		t.Fatal(err)
	}
	token := strings.Repeat("W", tokenLen)
	r.Do(t, "SET", "scs:session:"+token, b, "PXAT", deadline.UnixMilli())
	if id, _ := UserID(loadSCS(m, token, "")); id != "u1" {
		t.Fatalf("migration: user %q, want u1", id)
	}
	if !strings.Contains(logs.String(), "set FromSCS.Lifetime to scs's SessionManager.Lifetime") {
		t.Errorf("logs %q, want a warning that FromSCS.Lifetime is too short", logs.String())
	}
	logs.Reset()
	putSCS(t, r, strings.Repeat("V", tokenLen), "u2") // an hour ahead: within it
	loadSCS(m, strings.Repeat("V", tokenLen), "")
	if strings.Contains(logs.String(), "FromSCS.Lifetime") {
		t.Errorf("logs %q: a warning for an scs session within FromSCS.Lifetime", logs.String())
	}
}

// TestSCSRevokeRacesMigrations runs, round after round, a revocation on
// one instance while another migrates the user's scs sessions, each
// cookie sent twice at once, the revocation starting at a varying point
// among them: whatever a migration acknowledged, no session of the user
// but the one RevokeOthers keeps outlives the round, and no scs record is
// left.
func TestSCSRevokeRacesMigrations(t *testing.T) {
	for _, revoke := range []string{"RevokeAll", "RevokeOthers"} {
		t.Run(revoke, func(t *testing.T) {
			revoker, r := newSCSRevokeManager(t, Config{})
			migrator := newSCSRevokeManagerOn(t, r, Config{})
			const rounds, tokens = 200, 4
			signedIn := 0
			for round := range rounds {
				user := fmt.Sprintf("u%d", round)
				var keep string
				if revoke == "RevokeOthers" {
					keep, _ = login(t, revoker, user)
				}
				var toks []string
				for i := range tokens {
					toks = append(toks, putSCS(t, r, fmt.Sprintf("%03d%d", round, i)+strings.Repeat("x", tokenLen-4), user))
				}
				var wg sync.WaitGroup
				var mu sync.Mutex
				start := make(chan struct{})
				for i := range 2 * tokens {
					wg.Go(func() {
						<-start
						if id, _ := UserID(loadSCS(migrator, toks[i%tokens], "")); id == user {
							mu.Lock()
							signedIn++
							mu.Unlock()
						}
					})
				}
				wg.Go(func() {
					<-start
					time.Sleep(time.Duration(rand.IntN(1500)) * time.Microsecond)
					if revoke == "RevokeAll" {
						if _, err := revoker.RevokeAll(context.Background(), user); err != nil {
							t.Errorf("RevokeAll: %v", err)
						}
						return
					}
					serve(t, revoker, keep, func(ctx context.Context) {
						if _, err := revoker.RevokeOthers(ctx); err != nil {
							t.Errorf("RevokeOthers: %v", err)
						}
					})
				})
				close(start)
				wg.Wait()
				want := map[string]int{"RevokeAll": 0, "RevokeOthers": 1}[revoke]
				if list, err := revoker.List(context.Background(), user); err != nil || len(list) != want {
					t.Fatalf("round %d: List after %s = %d sessions, %v; want %d", round, revoke, len(list), err, want)
				}
				if keys, _ := redis.Strings(r.Do(t, "KEYS", "scs:session:*"), nil); len(keys) != 0 {
					t.Fatalf("round %d: %d scs records left", round, len(keys))
				}
			}
			// Both orders happened: some migrations came before the
			// revocation (and were ended by it), some after.
			t.Logf("%d rounds: %d requests signed in before their session was ended", rounds, signedIn)
			if signedIn == 0 || signedIn == rounds*2*tokens {
				t.Errorf("%d of %d requests signed in: the revocation never raced the migrations", signedIn, rounds*2*tokens)
			}
		})
	}
}

// swapHook is redisstore's scs records, whose SwapMark runs before once,
// before a migration puts its session's id in a marker: a test runs a
// logout or a login of the same browser in between.
type swapHook struct {
	*redisstore.SCSRecords
	before func()
}

func (h *swapHook) SwapMark(ctx context.Context, key, value string) (string, error) {
	if f := h.before; f != nil && value != scsEnded {
		h.before = nil
		f()
	}
	return h.SCSRecords.SwapMark(ctx, key, value)
}

// TestSCSMigrationBesideLogout races the first requests of a browser after
// the switch from scs: one migrates its scs session, another, which finds
// the record taken, logs out, or logs in as another user. Whichever comes
// second, the migrated session ends and the migrating request sets no
// cookie: the browser is not signed in again as the scs user by the
// migrating request's answer coming after the logout's.
func TestSCSMigrationBesideLogout(t *testing.T) {
	for _, tc := range []struct {
		name       string
		loserFirst bool // the logout or login marks the scs key before the migration names its session there
		login      bool // a login as bob, not a logout
	}{
		{"logout after the migration", false, false},
		{"logout during the migration", true, false},
		{"login after the migration", false, true},
		{"login during the migration", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := redistest.Start(t)
			store := openTestStore(t, r)
			hook := &swapHook{SCSRecords: store.SCSRecords("")}
			m, err := New(store, Config{Keys: [][]byte{testKey(7)}, InsecureCookie: true, CookieName: "sk",
				FromSCS: &SCSImport{UserKey: "userID", Records: hook}, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			token := putSCS(t, r, strings.Repeat("T", tokenLen), "u1")
			var loserCookie *http.Cookie
			other := func() {
				ctx := loadSCS(m, token, "")
				if !HasToken(ctx) {
					// A logout route guarded by HasToken would refuse it.
					t.Error("HasToken of a request with the scs cookie = false, want true")
				}
				if tc.login {
					if _, err := Create(ctx, "bob"); err != nil {
						t.Errorf("Create beside the migration = %v", err)
					}
				} else if err := Destroy(ctx); err != nil {
					t.Errorf("Destroy beside the migration = %v", err)
				}
				h := http.Header{}
				if err := m.Commit(ctx, h); err != nil {
					t.Errorf("Commit of the logout or login = %v", err)
				}
				loserCookie, _ = cookieNamed(h, "sk")
			}
			if tc.loserFirst {
				hook.before = other
			}
			ctx := loadSCS(m, token, "")
			h := http.Header{}
			if err := m.Commit(ctx, h); err != nil {
				t.Fatalf("Commit of the migration = %v", err)
			}
			if !tc.loserFirst {
				other()
			}
			if list, err := m.List(context.Background(), "u1"); err != nil || len(list) != 0 {
				t.Errorf("u1's sessions after the migration and the logout or login = %d, %v; want none", len(list), err)
			}
			c, ok := cookieNamed(h, "sk")
			switch {
			case tc.loserFirst && ok:
				t.Errorf("the migration that came second set cookie %q, want none", c.Name)
			case !tc.loserFirst && ok && userOf(t, m, c.Value) != "":
				t.Errorf("the migration's cookie still signs in %q after the logout or login", userOf(t, m, c.Value))
			}
			if want := map[bool]string{true: "bob", false: ""}[tc.login]; loserCookie == nil && want != "" || loserCookie != nil && userOf(t, m, loserCookie.Value) != want {
				t.Errorf("the logout's or login's cookie = %v, want a session of %q", loserCookie, want)
			}
		})
	}
}

// cookieNamed returns the cookie name that h sets.
func cookieNamed(h http.Header, name string) (*http.Cookie, bool) {
	for _, c := range (&http.Response{Header: h}).Cookies() {
		if c.Name == name {
			return c, true
		}
	}
	return nil, false
}

// failingMark is redisstore's scs records, whose SwapMark fails for a
// migration's mark, as when Redis fails just then.
type failingMark struct{ *redisstore.SCSRecords }

func (f failingMark) SwapMark(ctx context.Context, key, value string) (string, error) {
	if value != scsEnded {
		return "", fmt.Errorf("%w: injected", redisstore.ErrUnavailable)
	}
	return f.SCSRecords.SwapMark(ctx, key, value)
}

// removeFailsOnce is a Store whose RemoveUserSession fails once armed.
type removeFailsOnce struct {
	*redisstore.Store
	arm atomic.Bool
}

func (s *removeFailsOnce) RemoveUserSession(ctx context.Context, userID, id string) (bool, error) {
	if s.arm.CompareAndSwap(true, false) {
		return false, fmt.Errorf("%w: injected", redisstore.ErrUnavailable)
	}
	return s.Store.RemoveUserSession(ctx, userID, id)
}

// TestSCSMigrationMarkLimits: the mark by which a logout beside a
// migration ends its session (TestSCSMigrationBesideLogout) serves that
// race alone. A copy of the dead scs cookie sent after
// scsRaceWindow ends nothing; a logout whose ending failed, tried again,
// ends the session; and a migration whose mark fails ends its session and
// sets no cookie, since the mark may hide a logout of its browser.
func TestSCSMigrationMarkLimits(t *testing.T) {
	manager := func(t *testing.T, store Store, records SCSRecords) (*Manager, *clock) {
		m, err := New(store, Config{Keys: [][]byte{testKey(7)}, InsecureCookie: true, CookieName: "sk",
			FromSCS: &SCSImport{UserKey: "userID", Records: records}, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		clk := &clock{t: time.Now()}
		m.now = clk.now
		return m, clk
	}
	migrate := func(t *testing.T, m *Manager, token string) (*http.Cookie, bool) {
		t.Helper()
		ctx := loadSCS(m, token, "")
		h := http.Header{}
		if err := m.Commit(ctx, h); err != nil {
			t.Fatalf("Commit of the migration = %v", err)
		}
		return cookieNamed(h, "sk")
	}
	logout := func(m *Manager, token string) error {
		ctx := loadSCS(m, token, "")
		err := Destroy(ctx)
		m.Commit(ctx, http.Header{})
		return err
	}

	// copied migrates on a clock at migrated, then logs out with a copy of
	// the scs cookie on a clock at copied: the migrated session goes on.
	copied := func(t *testing.T, migrated, copied time.Duration) {
		r := redistest.Start(t)
		store := openTestStore(t, r)
		m, clk := manager(t, store, store.SCSRecords(""))
		token := putSCS(t, r, strings.Repeat("T", tokenLen), "u1")
		now := clk.t
		clk.t = now.Add(migrated)
		c, ok := migrate(t, m, token)
		if !ok {
			t.Fatal("the migration set no cookie")
		}
		clk.t = now.Add(copied)
		if err := logout(m, token); err != nil {
			t.Fatalf("Destroy with the copy = %v", err)
		}
		if u := userOf(t, m, c.Value); u != "u1" {
			t.Errorf("the migrated session after a logout with a copy of the dead scs cookie: user %q, want u1", u)
		}
	}
	t.Run("a copy of the cookie after the window", func(t *testing.T) { copied(t, 0, scsRaceWindow+time.Second) })
	// The migrating instance's clock 10 minutes ahead of the one the
	// copy's logout runs on: its mark's time is no pass for later.
	t.Run("a mark from a clock ahead", func(t *testing.T) { copied(t, 10*time.Minute, 5*time.Minute) })

	t.Run("a failed logout tried again", func(t *testing.T) {
		r := redistest.Start(t)
		raw := openTestStore(t, r)
		store := &removeFailsOnce{Store: raw}
		m, _ := manager(t, store, raw.SCSRecords(""))
		token := putSCS(t, r, strings.Repeat("T", tokenLen), "u1")
		c, _ := migrate(t, m, token)
		store.arm.Store(true)
		if err := logout(m, token); !errors.Is(err, ErrStoreUnavailable) {
			t.Fatalf("Destroy whose ending failed = %v, want ErrStoreUnavailable", err)
		}
		if err := logout(m, token); err != nil {
			t.Fatalf("Destroy tried again = %v", err)
		}
		if u := userOf(t, m, c.Value); u != "" {
			t.Errorf("the migrated session after the logout tried again: user %q, want it ended", u)
		}
	})

	t.Run("the migration's mark failing", func(t *testing.T) {
		r := redistest.Start(t)
		store := openTestStore(t, r)
		m, _ := manager(t, store, failingMark{store.SCSRecords("")})
		token := putSCS(t, r, strings.Repeat("T", tokenLen), "u1")
		if c, ok := migrate(t, m, token); ok {
			t.Errorf("the migration whose mark failed set cookie %q, want none", c.Name)
		}
		if list, err := m.List(context.Background(), "u1"); err != nil || len(list) != 0 {
			t.Errorf("u1's sessions after the migration whose mark failed = %d, %v; want none", len(list), err)
		}
	})
}

// TestSCSMigrationRacesLogout races, with jitter, the first request of a
// browser after the switch from scs, on one instance, against a logout of
// the same browser on another, 300 rounds: whichever migrates the scs
// session, a logout answered without error leaves no live session behind
// the migration's cookie. Take marks the key as it takes the record:
// otherwise a logout that found the record taken before the migration had
// marked it would end nothing, and the browser would be signed back in.
func TestSCSMigrationRacesLogout(t *testing.T) {
	r := redistest.Start(t)
	instance := func() *Manager {
		store := openTestStore(t, r)
		m, err := New(store, Config{Keys: [][]byte{testKey(7)}, InsecureCookie: true, CookieName: "sk",
			FromSCS: &SCSImport{UserKey: "userID", Records: store.SCSRecords("")}, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	m1, m2 := instance(), instance()
	for i := range 300 {
		token := putSCS(t, r, fmt.Sprintf("%0*d", tokenLen, i), fmt.Sprintf("u%d", i))
		var wg sync.WaitGroup
		var migrated *http.Cookie
		var logoutErr error
		wg.Go(func() {
			jitter()
			ctx := loadSCS(m1, token, "")
			h := http.Header{}
			if err := m1.Commit(ctx, h); err != nil {
				t.Errorf("round %d: Commit of the migration = %v", i, err)
			}
			migrated, _ = cookieNamed(h, "sk")
		})
		wg.Go(func() {
			jitter()
			ctx := loadSCS(m2, token, "")
			logoutErr = Destroy(ctx)
			m2.Commit(ctx, http.Header{})
		})
		wg.Wait()
		if logoutErr == nil && migrated != nil && userOf(t, m1, migrated.Value) != "" {
			t.Errorf("round %d: the migration's cookie signs in after a logout answered as done", i)
		}
	}
}
