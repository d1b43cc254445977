package redisstore_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/alexedwards/scs/v2"
	"github.com/gomodule/redigo/redis"

	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/redisstore"
)

var _ scs.CtxStore = (*redisstore.Store)(nil)

// TestSCSRoundTrip runs a plain scs.SessionManager on the Store and checks
// that Redis holds the hash of the token, never the token.
func TestSCSRoundTrip(t *testing.T) {
	srv := redistest.Start(t)
	store := open(t, srv, redisstore.Config{})
	sm := scs.New()
	sm.Store = store

	mux := http.NewServeMux()
	mux.HandleFunc("/put", func(w http.ResponseWriter, r *http.Request) {
		sm.Put(r.Context(), "user", "alice")
	})
	mux.HandleFunc("/get", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, sm.GetString(r.Context(), "user"))
	})
	mux.HandleFunc("/destroy", func(w http.ResponseWriter, r *http.Request) {
		if err := sm.Destroy(r.Context()); err != nil {
			t.Error(err)
		}
	})
	ts := httptest.NewServer(sm.LoadAndSave(mux))
	defer ts.Close()
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar}
	defer client.CloseIdleConnections()
	get := func(path string) string {
		t.Helper()
		resp, err := client.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}

	get("/put")
	if got := get("/get"); got != "alice" {
		t.Fatalf("GET /get = %q, want %q", got, "alice")
	}

	u, _ := url.Parse(ts.URL)
	cookies := jar.Cookies(u)
	if len(cookies) != 1 {
		t.Fatalf("got %d cookies, want 1", len(cookies))
	}
	token := cookies[0].Value
	sum := sha256.Sum256([]byte(token))
	wantKey := "session:" + base64.RawURLEncoding.EncodeToString(sum[:])
	keys, _ := redis.Strings(srv.Do(t, "KEYS", "*"), nil)
	if len(keys) != 1 || keys[0] != wantKey {
		t.Fatalf("keys in Redis = %q, want [%q] (the hash of the token)", keys, wantKey)
	}
	if d, _ := redis.Int64(srv.Do(t, "PTTL", wantKey), nil); d <= 0 {
		t.Fatalf("PTTL = %dms, want an expiry", d)
	}

	get("/destroy")
	if n, _ := redis.Int(srv.Do(t, "DBSIZE"), nil); n != 0 {
		t.Fatalf("DBSIZE after Destroy = %d, want 0", n)
	}
}

func TestCommitPastExpiryDeletes(t *testing.T) {
	srv := redistest.Start(t)
	store := open(t, srv, redisstore.Config{})
	ctx := context.Background()
	if err := store.CommitCtx(ctx, "tok", []byte("x"), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if b, ok, err := store.FindCtx(ctx, "tok"); err != nil || !ok || string(b) != "x" {
		t.Fatalf("FindCtx = %q, %v, %v, want %q, true, nil", b, ok, err, "x")
	}
	if err := store.CommitCtx(ctx, "tok", []byte("y"), time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := store.FindCtx(ctx, "tok"); err != nil || ok {
		t.Fatalf("FindCtx after a past expiry = %v, %v, want false, nil", ok, err)
	}
}
