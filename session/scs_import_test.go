package session

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/alexedwards/scs/v2"
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
// the Manager's own, a Bearer token, or a cookie that is no scs token never
// asks for an scs record, and that HashTokenInStore hashes the key.
func TestSCSImportOnlyWithoutSession(t *testing.T) {
	rec := &recordingRecords{}
	m, _, _ := newTestManager(t, Config{FromSCS: &SCSImport{Records: rec, HashTokenInStore: true}, CookieName: "sk"})
	cookie, _ := login(t, m, "u1")
	scsToken := strings.Repeat("B", tokenLen)
	for name, req := range map[string]*http.Request{
		"own session": httptest.NewRequest("GET", "/", nil),
		"bearer":      httptest.NewRequest("GET", "/", nil),
		"not a token": httptest.NewRequest("GET", "/", nil),
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
	if strings.Contains(logs, "__rememberMe") || strings.Count(logs, "reserved key") != 1 || !strings.Contains(logs, "key=__flash") {
		t.Errorf("logs = %q, want one warning, naming __flash", logs)
	}
}
