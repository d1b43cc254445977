package redisstore_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/alexedwards/scs/v2"
	"github.com/gomodule/redigo/redis"
	"github.com/mna/redisc"

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

// scsMarker is the key that SCSRecords.Retire writes for scs key key in a
// Store with keyPrefix: the base64url SHA-256 of the scs key.
func scsMarker(keyPrefix, key string) string {
	sum := sha256.Sum256([]byte(key))
	return keyPrefix + "scs_migrated:" + base64.RawURLEncoding.EncodeToString(sum[:])
}

// TestSCSRecordsRetire takes an scs record, retires its key, and has the
// record written back (as an scs instance that loaded it before does): Take
// then deletes the copy and does not return it, while other keys are taken
// as before. The marker holds no token and lives until the time given. On
// one server and on a Cluster, where the marker lies in another slot.
func TestSCSRecordsRetire(t *testing.T) {
	ctx := context.Background()
	for _, cluster := range []bool{false, true} {
		t.Run(map[bool]string{false: "single", true: "cluster"}[cluster], func(t *testing.T) {
			var store *redisstore.Store
			var node func(key string) *redistest.Server // the server of key
			if cluster {
				c := redistest.StartCluster(t, redistest.ClusterOptions{ReplicasPerMaster: -1})
				store = openCluster(t, c, redisstore.Config{KeyPrefix: "app:"})
				node = func(key string) *redistest.Server { return c.MasterOf(t, redisc.Slot(key)) }
			} else {
				srv := redistest.Start(t)
				store = open(t, srv, redisstore.Config{KeyPrefix: "app:"})
				node = func(string) *redistest.Server { return srv }
			}
			write := func(token, value string) {
				t.Helper()
				key := redisstore.DefaultSCSPrefix + token
				node(key).Do(t, "SET", key, value, "PX", time.Hour.Milliseconds())
			}
			records := store.SCSRecords("")
			const token, other = "tok", "other"
			write(token, "rec")
			if b, found, err := records.Take(ctx, token); err != nil || !found || string(b) != "rec" {
				t.Fatalf("Take = %q, %v, %v, want %q, true, nil", b, found, err, "rec")
			}
			until := time.Now().Add(time.Hour).Truncate(time.Millisecond)
			if err := records.Retire(ctx, token, until); err != nil {
				t.Fatalf("Retire = %v", err)
			}
			mark := scsMarker("app:", redisstore.DefaultSCSPrefix+token)
			at, err := redis.Int64(node(mark).Do(t, "PEXPIRETIME", mark), nil)
			if err != nil || at != until.UnixMilli() {
				t.Errorf("PEXPIRETIME of the marker = %d, %v, want %d", at, err, until.UnixMilli())
			}

			write(token, "written back")
			if b, found, err := records.Take(ctx, token); err != nil || found || b != nil {
				t.Errorf("Take of a retired key = %q, %v, %v, want nothing", b, found, err)
			}
			key := redisstore.DefaultSCSPrefix + token
			if n, _ := redis.Int(node(key).Do(t, "EXISTS", key), nil); n != 0 {
				t.Error("the written-back record is still there")
			}
			write(other, "rec2")
			if b, found, err := records.Take(ctx, other); err != nil || !found || string(b) != "rec2" {
				t.Errorf("Take of another key = %q, %v, %v, want %q, true, nil", b, found, err, "rec2")
			}
			if b, found, err := records.Take(ctx, other); err != nil || found {
				t.Errorf("second Take = %q, %v, %v, want nothing", b, found, err)
			}
		})
	}
}

// scsImportACL is what the package documentation says a migration from
// scs adds to the ACL SETUSER example, for the default prefixes.
var scsImportACL = []string{"+getdel", "~scs:session:*", "~scs_migrated:*"}

// TestSCSRecordsACL takes and retires scs records as an ACL user with the
// documented commands and keys plus scsImportACL: nothing is denied.
func TestSCSRecordsACL(t *testing.T) {
	srv := redistest.Start(t)
	servers := []*redistest.Server{srv}
	aclModesSetUser(t, servers, aclModesDataUser, append(aclCommands(t), scsImportACL...))
	s, err := redisstore.Open(redisstore.Config{Addr: srv.Addr(), Username: aclModesDataUser, Password: aclModesUserPassword})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	records := s.SCSRecords("")
	srv.Do(t, "SET", "scs:session:tok", "rec", "PX", 600000)
	if _, found, err := records.Take(ctx, "tok"); err != nil || !found {
		t.Fatalf("Take = %v, %v", found, err)
	}
	if err := records.Retire(ctx, "tok", time.Now().Add(time.Hour)); err != nil {
		t.Fatalf("Retire = %v", err)
	}
	srv.Do(t, "SET", "scs:session:tok", "rec", "PX", 600000)
	if _, found, err := records.Take(ctx, "tok"); err != nil || found {
		t.Fatalf("Take of a retired key = %v, %v", found, err)
	}
	aclModesNoDenials(t, "scs import", servers)

	// Without the marker's key pattern, Take is refused: it is needed.
	aclModesSetUser(t, servers, aclModesDataUser, append(aclCommands(t), slices.DeleteFunc(slices.Clone(scsImportACL), func(r string) bool { return r == "~scs_migrated:*" })...))
	s2, err := redisstore.Open(redisstore.Config{Addr: srv.Addr(), Username: aclModesDataUser, Password: aclModesUserPassword})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s2.Close() })
	if _, _, err := s2.SCSRecords("").Take(ctx, "tok"); !errors.Is(err, redisstore.ErrRefused) {
		t.Errorf("Take without ~scs_migrated:* = %v, want ErrRefused", err)
	}
}

// TestSCSRecordsTakeNoWait takes and retires an scs record through a Store
// with WaitReplicas on a server without replicas, where WAIT always falls
// short: neither waits, as a login does not, so the record taken reaches
// its migration instead of being lost behind an error.
func TestSCSRecordsTakeNoWait(t *testing.T) {
	srv := redistest.Start(t)
	store := open(t, srv, redisstore.Config{WaitReplicas: 1, Timeout: 300 * time.Millisecond})
	ctx := context.Background()
	records := store.SCSRecords("")
	srv.Do(t, "SET", "scs:session:tok", "rec", "PX", 600000)
	if b, found, err := records.Take(ctx, "tok"); err != nil || !found || string(b) != "rec" {
		t.Fatalf("Take = %q, %v, %v, want %q, true, nil", b, found, err, "rec")
	}
	if err := records.Retire(ctx, "tok", time.Now().Add(time.Hour)); err != nil {
		t.Fatalf("Retire = %v, want nil", err)
	}
}
