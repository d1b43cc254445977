package session

import (
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/alexedwards/scs/v2"
	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/redisstore"
)

// The tests of an import from records that real scs and scs/redisstore
// write are in internal/scscompat, a module of its own, so that
// scs/redisstore stays out of this module's go.mod.

// failingRecords is an SCSRecords whose store cannot be asked.
type failingRecords struct{}

func (failingRecords) Take(context.Context, string) ([]byte, bool, error) {
	return nil, false, errors.New("connection refused")
}

func (failingRecords) Retire(context.Context, string, time.Time) error {
	return errors.New("connection refused")
}

// TestSCSImportOutage checks that an unreachable store leaves the scs
// cookie alone and reports the outage like any load.
func TestSCSImportOutage(t *testing.T) {
	m, _, _ := newTestManager(t, Config{FromSCS: &SCSImport{Records: failingRecords{}, UserKey: "userID"}, CookieName: "sk"})
	req := httptest.NewRequest("GET", "/", nil)
	req.AddCookie(&http.Cookie{Name: "session", Value: strings.Repeat("A", tokenLen)})
	ctx := m.Load(req)
	if !errors.Is(LoadError(ctx), ErrStoreUnavailable) {
		t.Fatalf("LoadError = %v", LoadError(ctx))
	}
	h := http.Header{}
	if err := m.Commit(ctx, h); err != nil || len(h["Set-Cookie"]) != 0 {
		t.Fatalf("Commit: %v, Set-Cookie %v", err, h["Set-Cookie"])
	}
}

// recordingRecords counts Take calls.
type recordingRecords struct{ keys []string }

func (r *recordingRecords) Take(_ context.Context, key string) ([]byte, bool, error) {
	r.keys = append(r.keys, key)
	return nil, false, nil
}

func (r *recordingRecords) Retire(context.Context, string, time.Time) error { return nil }

// TestSCSImportOnlyWithoutSession checks that a request with a session of
// the Manager's own, a Bearer token, or a cookie that is no scs token (a
// session id of this release among them) never asks for an scs record, and
// that HashTokenInStore hashes the key.
func TestSCSImportOnlyWithoutSession(t *testing.T) {
	rec := &recordingRecords{}
	m, _, _ := newTestManager(t, Config{FromSCS: &SCSImport{Records: rec, HashTokenInStore: true}, CookieName: "sk"})
	cookie, _ := login(t, m, "u1")
	scsToken := strings.Repeat("B", tokenLen)
	for name, req := range map[string]*http.Request{
		"own session": httptest.NewRequest("GET", "/", nil),
		"bearer":      httptest.NewRequest("GET", "/", nil),
		"not a token": httptest.NewRequest("GET", "/", nil),
		"current id":  httptest.NewRequest("GET", "/", nil),
		"tagged id":   httptest.NewRequest("GET", "/", nil),
	} {
		switch name {
		case "own session":
			req.AddCookie(&http.Cookie{Name: "sk", Value: cookie})
			req.AddCookie(&http.Cookie{Name: "session", Value: scsToken})
		case "bearer":
			req.Header.Set("Authorization", "Bearer "+cookie)
			req.AddCookie(&http.Cookie{Name: "session", Value: scsToken})
		case "not a token":
			req.AddCookie(&http.Cookie{Name: "session", Value: "x"})
		case "current id": // a session id of this release: 22 characters
			req.AddCookie(&http.Cookie{Name: "session", Value: idOf(scsToken[:shortTokenLen])})
		case "tagged id": // a session id on a Redis Cluster
			req.AddCookie(&http.Cookie{Name: "session", Value: "{t}" + scsToken[3:]})
		}
		m.Load(req)
		if len(rec.keys) != 0 {
			t.Fatalf("%s: Take called", name)
		}
	}
	req := httptest.NewRequest("GET", "/", nil)
	req.AddCookie(&http.Cookie{Name: "session", Value: scsToken})
	m.Load(req)
	if want := []string{idOf(scsToken)}; !reflect.DeepEqual(rec.keys, want) {
		t.Fatalf("Take keys %q, want the hash %q", rec.keys, want)
	}

	// A cookie of the Manager's that no key of its signed (one of another
	// deployment on the domain, or signed by a key since removed) is no
	// session: the scs session beside it migrates, rather than keep the
	// user signed out for as long as the browser keeps it.
	other, err := New(openTestStore(t, redistest.Start(t)), Config{Keys: [][]byte{testKey(0x6f)}, InsecureCookie: true, CookieName: "sk"})
	if err != nil {
		t.Fatal(err)
	}
	foreign, _ := login(t, other, "u1")
	for name, value := range map[string]string{"no token": "garbage", "another key's": foreign} {
		rec.keys = nil
		req := httptest.NewRequest("GET", "/", nil)
		req.AddCookie(&http.Cookie{Name: "sk", Value: value})
		req.AddCookie(&http.Cookie{Name: "session", Value: scsToken})
		m.Load(req)
		if want := []string{idOf(scsToken)}; !reflect.DeepEqual(rec.keys, want) {
			t.Errorf("%s cookie beside scs's: Take keys %q, want %q", name, rec.keys, want)
		}
	}
}

// TestSCSImportSessionIDNoCredential plays a request that sends another
// user's session id (43 characters with PreviousFormat, the length of an
// scs token) as scs's cookie, without a cookie of the Manager's own. With
// the Store's KeyPrefix "scs:", its records would lie under scs's default
// prefix, and the import would take and delete the victim's record: that
// configuration is refused by New. With the others, the
// victim stays logged in.
func TestSCSImportSessionIDNoCredential(t *testing.T) {
	r := redistest.Start(t)
	for _, tc := range []struct {
		keyPrefix string
		refused   bool
	}{
		{"scs:", true},
		{"", false},
		{"app:", false},
	} {
		t.Run("KeyPrefix "+tc.keyPrefix, func(t *testing.T) {
			store, err := redisstore.Open(redisstore.Config{Addr: r.Addr(), KeyPrefix: tc.keyPrefix})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { store.Close() })
			m, err := New(store, Config{
				Keys:           [][]byte{testKey(7)},
				InsecureCookie: true,
				CookieName:     "sk",
				PreviousFormat: true,
				FromSCS:        &SCSImport{Records: store.SCSRecords(""), UserKey: "userID"},
				Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
			})
			switch {
			case tc.refused && err != nil:
				if !strings.Contains(err.Error(), "FromSCS.Records") || !strings.Contains(err.Error(), "KeyPrefix") {
					t.Errorf("New with KeyPrefix %q: %v, want an error naming FromSCS.Records and KeyPrefix", tc.keyPrefix, err)
				}
				return
			case tc.refused:
				t.Errorf("New with KeyPrefix %q and scs's default prefix = nil error, want the overlap refused", tc.keyPrefix)
			case err != nil:
				t.Fatal(err)
			}
			victim, id := login(t, m, "alice")
			if len(id) != tokenLen {
				t.Fatalf("session id of %d characters, want %d", len(id), tokenLen)
			}
			req := httptest.NewRequest("GET", "/", nil)
			req.AddCookie(&http.Cookie{Name: DefaultSCSCookieName, Value: id})
			ctx := m.Load(req)
			if err := m.Commit(ctx, http.Header{}); err != nil {
				t.Fatal(err)
			}
			var ok bool
			serve(t, m, victim, func(ctx context.Context) { _, ok = UserID(ctx) })
			if !ok {
				t.Error("the victim is logged out by a request that named only the session id")
			}
		})
	}
}

// TestSCSImportConfig checks FromSCS's validation.
func TestSCSImportConfig(t *testing.T) {
	_, err := (Config{Keys: [][]byte{testKey(1)}, FromSCS: &SCSImport{}}).withDefaults()
	if err == nil || !strings.Contains(err.Error(), "FromSCS.Records") {
		t.Fatalf("no Records: %v", err)
	}
	_, err = (Config{Keys: [][]byte{testKey(1)}, FromSCS: &SCSImport{Records: failingRecords{}, CookieName: "a b"}}).withDefaults()
	if err == nil || !strings.Contains(err.Error(), "FromSCS.CookieName") {
		t.Fatalf("bad CookieName: %v", err)
	}
	for _, bad := range []struct{ field, path, domain string }{
		{"CookiePath", "admin", ""},
		{"CookiePath", "/a;b", ""},
		{"CookieDomain", "", "exa mple.com"},
		{"CookieDomain", "/", "example.com;x=y"},
	} {
		_, err = (Config{Keys: [][]byte{testKey(1)}, FromSCS: &SCSImport{Records: failingRecords{}, CookiePath: bad.path, CookieDomain: bad.domain}}).withDefaults()
		if err == nil || !strings.Contains(err.Error(), "FromSCS."+bad.field) {
			t.Errorf("CookiePath %q CookieDomain %q: %v, want an error naming FromSCS.%s", bad.path, bad.domain, err, bad.field)
		}
	}
	if _, err := (Config{Keys: [][]byte{testKey(1)}, FromSCS: &SCSImport{Records: failingRecords{}, CookiePath: "/app", CookieDomain: "example.com"}}).withDefaults(); err != nil {
		t.Errorf("CookiePath /app, CookieDomain example.com: %v", err)
	}
	cfg, err := (Config{Keys: [][]byte{testKey(1)}, FromSCS: &SCSImport{Records: failingRecords{}}}).withDefaults()
	if err != nil || cfg.FromSCS.CookieName != DefaultSCSCookieName || cfg.FromSCS.CookiePath != "/" {
		t.Fatalf("defaults: %+v, %v", cfg.FromSCS, err)
	}
}

// scsRecord is an SCSRecords that holds one scs record, which the first
// Take returns.
type scsRecord struct{ b []byte }

func (r *scsRecord) Take(context.Context, string) ([]byte, bool, error) {
	b := r.b
	r.b = nil
	return b, b != nil, nil
}

func (r *scsRecord) Retire(context.Context, string, time.Time) error { return nil }

// migrateSCS migrates an scs session of values, a user "u1" under UserKey
// "userID" among them, through a new Manager and returns the context of
// the request that did, after its Commit, and what the Manager logged.
func migrateSCS(t *testing.T, values map[string]any) (context.Context, string) {
	t.Helper()
	b, err := scs.GobCodec{}.Encode(time.Now().Add(time.Hour), values)
	if err != nil {
		t.Fatal(err)
	}
	m, _, _ := newTestManager(t, Config{FromSCS: &SCSImport{Records: &scsRecord{b}, UserKey: "userID"}, CookieName: "sk"})
	var logs bytes.Buffer
	m.log = slog.New(slog.NewTextHandler(&logs, nil))
	req := httptest.NewRequest("GET", "/", nil)
	req.AddCookie(&http.Cookie{Name: "session", Value: strings.Repeat("C", tokenLen)})
	ctx := m.Load(req)
	if id, _ := UserID(ctx); id != "u1" {
		t.Fatalf("UserID after the migration = %q, want u1", id)
	}
	if err := m.Commit(ctx, http.Header{}); err != nil {
		t.Fatal(err)
	}
	return ctx, logs.String()
}

// TestSCSImportRememberMe migrates an scs session that holds scs's own
// "__rememberMe" (RememberMe(ctx, false)) and another reserved key: the
// first is scs's and dropped without a word, the second is dropped with a
// warning that names it.
func TestSCSImportRememberMe(t *testing.T) {
	ctx, logs := migrateSCS(t, map[string]any{"userID": "u1", "__rememberMe": false, "__flash": "x", "theme": "dark"})
	if v, _ := Get[string](ctx, "theme"); v != "dark" {
		t.Errorf("Get(theme) = %q, want dark", v)
	}
	if strings.Contains(logs, "__rememberMe") || strings.Count(logs, "invalid key (reserved") != 1 || !strings.Contains(logs, "key=__flash") {
		t.Errorf("logs = %q, want one warning, naming __flash", logs)
	}
}

// scsOpaque is an app type that gob carries through its GobEncoder alone:
// it has no exported field, so its JSON is {}.
type scsOpaque struct{ secret string }

func (o scsOpaque) GobEncode() ([]byte, error) { return []byte(o.secret), nil }
func (o *scsOpaque) GobDecode(b []byte) error  { o.secret = string(b); return nil }

// scsHidden is an app type with a field that JSON skips.
type scsHidden struct {
	Name string
	Note string `json:"-"`
}

// scsCartItem is an app type that JSON carries whole.
type scsCartItem struct {
	SKU   string
	Qty   uint16
	Added time.Time
	Extra any
	Tags  map[string]int
}

// TestSCSImportValues migrates scs values that do and do not come back
// from JSON unchanged: those that do are kept, for Get of their own type
// (interface values by encoding/json's rules); those that do not, or that
// a record may not hold (nested too deep for other languages' parsers), are dropped and logged by key and type, never with their content, instead
// of coming back as zero values.
func TestSCSImportValues(t *testing.T) {
	gob.Register(scsOpaque{})
	gob.Register(scsHidden{})
	gob.Register(scsCartItem{})
	gob.Register(map[string]any{})
	gob.Register([]any{})
	added := time.Date(2024, 5, 6, 7, 8, 9, 10, time.FixedZone("", 2*3600))
	item := scsCartItem{SKU: "tea", Qty: 3, Added: added, Extra: []any{"a", 2}, Tags: map[string]int{"x": 1}}
	ctx, logs := migrateSCS(t, map[string]any{
		"userID":    "u1",
		"opaque":    scsOpaque{secret: "opaque-secret-1f3"},
		"hidden":    scsHidden{Name: "n", Note: "hidden-secret-9c2"},
		"emptyOpaq": scsOpaque{},
		"item":      item,
		"m":         map[string]any{"n": 1, "s": []any{"a", int64(2)}},
		"u64":       uint64(1<<64 - 1),
		"f32":       float32(0.1),
		"deep":      nestedArrays(maxValueDepth + 1), // would make the record too deep for other parsers
	})
	for _, k := range []string{"opaque", "hidden", "deep"} {
		if _, ok := Get[any](ctx, k); ok {
			t.Errorf("Get(%s) found a value, want it dropped", k)
		}
		if !strings.Contains(logs, "key="+k) {
			t.Errorf("no warning names %s: %s", k, logs)
		}
	}
	if strings.Contains(logs, "secret-") {
		t.Errorf("a dropped value's content is in the logs: %s", logs)
	}
	if v, ok := Get[scsOpaque](ctx, "emptyOpaq"); !ok || v != (scsOpaque{}) {
		t.Errorf("Get(emptyOpaq) = %+v, %v, want the zero value, true", v, ok)
	}
	if v, ok := Get[scsCartItem](ctx, "item"); !ok || v.SKU != "tea" || v.Qty != 3 || !v.Added.Equal(added) || !reflect.DeepEqual(v.Tags, item.Tags) ||
		!reflect.DeepEqual(v.Extra, []any{"a", float64(2)}) {
		t.Errorf("Get(item) = %+v, %v", v, ok)
	}
	if v, ok := Get[map[string]any](ctx, "m"); !ok || !reflect.DeepEqual(v, map[string]any{"n": float64(1), "s": []any{"a", float64(2)}}) {
		t.Errorf("Get(m) = %v, %v", v, ok)
	}
	if v, ok := Get[uint64](ctx, "u64"); !ok || v != 1<<64-1 {
		t.Errorf("Get(u64) = %v, %v", v, ok)
	}
	if v, ok := Get[float32](ctx, "f32"); !ok || v != 0.1 {
		t.Errorf("Get(f32) = %v, %v", v, ok)
	}
}

// TestSCSCookiePartitioned expires a Partitioned scs cookie with a
// Set-Cookie that is Partitioned and Secure, as browsers require to
// reach it (Chromium keeps sending the cookie otherwise),
// also under InsecureCookie; and an ordinary one without.
func TestSCSCookiePartitioned(t *testing.T) {
	for _, tc := range []struct {
		partitioned, insecure bool
		want                  string
	}{
		{false, false, "session=; Path=/; Expires=Thu, 01 Jan 1970 00:00:01 GMT; Max-Age=0; HttpOnly; Secure; SameSite=Lax"},
		{true, false, "session=; Path=/; Expires=Thu, 01 Jan 1970 00:00:01 GMT; Max-Age=0; HttpOnly; Secure; SameSite=Lax; Partitioned"},
		{true, true, "session=; Path=/; Expires=Thu, 01 Jan 1970 00:00:01 GMT; Max-Age=0; HttpOnly; Secure; SameSite=Lax; Partitioned"},
	} {
		cfg, err := (Config{Keys: [][]byte{testKey(1)}, InsecureCookie: tc.insecure, CookieName: "sk",
			FromSCS: &SCSImport{Records: failingRecords{}, CookiePartitioned: tc.partitioned}}).withDefaults()
		if err != nil {
			t.Fatal(err)
		}
		h := http.Header{}
		(&Manager{cfg: cfg}).expireSCSCookie(h)
		if got := h.Get("Set-Cookie"); got != tc.want {
			t.Errorf("CookiePartitioned %v, InsecureCookie %v: Set-Cookie %q, want %q", tc.partitioned, tc.insecure, got, tc.want)
		}
	}
}
