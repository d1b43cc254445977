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
	"strings"
	"testing"
	"time"

	"github.com/alexedwards/scs/v2"
	"github.com/gomodule/redigo/redis"
	"github.com/mna/redisc"

	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/redisstore"
	"github.com/sessionkit/sessionkit/session"
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

// scsTestStore returns a Store with KeyPrefix "app:" on a server of its
// own, or on a Cluster without replicas, and a function that returns the
// server (the master) of a key.
func scsTestStore(t *testing.T, cluster bool) (*redisstore.Store, func(key string) *redistest.Server) {
	t.Helper()
	if cluster {
		c := redistest.StartCluster(t, redistest.ClusterOptions{ReplicasPerMaster: -1})
		return openCluster(t, c, redisstore.Config{KeyPrefix: "app:"}),
			func(key string) *redistest.Server { return c.MasterOf(t, redisc.Slot(key)) }
	}
	srv := redistest.Start(t)
	return open(t, srv, redisstore.Config{KeyPrefix: "app:"}), func(string) *redistest.Server { return srv }
}

// TestSCSRecordsRetire peeks at an scs record (which leaves it), takes it,
// retires its key, and has the
// record written back (as an scs instance that loaded it before does): Take
// then deletes the copy and does not return it, while other keys are taken
// as before. The marker holds no token and lives until the time given. On
// one server and on a Cluster, where the marker lies in another slot.
func TestSCSRecordsRetire(t *testing.T) {
	ctx := context.Background()
	for _, cluster := range []bool{false, true} {
		t.Run(map[bool]string{false: "single", true: "cluster"}[cluster], func(t *testing.T) {
			store, node := scsTestStore(t, cluster)
			write := func(token, value string) {
				t.Helper()
				key := redisstore.DefaultSCSPrefix + token
				node(key).Do(t, "SET", key, value, "PX", time.Hour.Milliseconds())
			}
			records := store.SCSRecords("")
			const token, other = "tok", "other"
			if b, found, err := records.Peek(ctx, token); err != nil || found || b != nil {
				t.Fatalf("Peek of no record = %q, %v, %v, want nothing", b, found, err)
			}
			write(token, "rec")
			for range 2 { // Peek leaves the record
				if b, found, err := records.Peek(ctx, token); err != nil || !found || string(b) != "rec" {
					t.Fatalf("Peek = %q, %v, %v, want %q, true, nil", b, found, err, "rec")
				}
			}
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

// TestSCSRecordsRetireUser marks users and checks that only they are
// retired, until the time given, under "<KeyPrefix>scs_migrated:user:<id>",
// apart from the markers of scs keys; user ids with a hash tag's braces
// among them, on one server and on a Cluster.
func TestSCSRecordsRetireUser(t *testing.T) {
	ctx := context.Background()
	for _, cluster := range []bool{false, true} {
		t.Run(map[bool]string{false: "single", true: "cluster"}[cluster], func(t *testing.T) {
			store, node := scsTestStore(t, cluster)
			records := store.SCSRecords("")
			until := time.Now().Add(time.Hour).Truncate(time.Millisecond)
			for _, user := range []string{"alice", "{x}bob"} {
				if retired, err := records.UserRetired(ctx, user); err != nil || retired {
					t.Fatalf("UserRetired(%q) before RetireUser = %v, %v; want false", user, retired, err)
				}
				if err := records.RetireUser(ctx, user, until); err != nil {
					t.Fatalf("RetireUser(%q) = %v", user, err)
				}
				if retired, err := records.UserRetired(ctx, user); err != nil || !retired {
					t.Errorf("UserRetired(%q) = %v, %v; want true", user, retired, err)
				}
				mark := "app:scs_migrated:user:" + user
				if at, err := redis.Int64(node(mark).Do(t, "PEXPIRETIME", mark), nil); err != nil || at != until.UnixMilli() {
					t.Errorf("PEXPIRETIME of %q = %d, %v; want %d", mark, at, err, until.UnixMilli())
				}
			}
			for _, user := range []string{"alic", "alice2", "bob", "{x}bo"} {
				if retired, err := records.UserRetired(ctx, user); err != nil || retired {
					t.Errorf("UserRetired(%q) = %v, %v; want false", user, retired, err)
				}
			}
			// A past time leaves no mark.
			if err := records.RetireUser(ctx, "carol", time.Now().Add(-time.Second)); err != nil {
				t.Fatal(err)
			}
			if retired, err := records.UserRetired(ctx, "carol"); err != nil || retired {
				t.Errorf("UserRetired after a mark in the past = %v, %v; want false", retired, err)
			}
		})
	}
}

// TestSCSRecordsPrefixOverlap checks that SCSRecords refuses an scs prefix
// that overlaps the Store's own keys, in either direction, and takes one
// that does not. With KeyPrefix "scs:" and scs's default prefix, a request
// whose scs cookie held a session's 43-character id would otherwise take
// and delete that session's record.
func TestSCSRecordsPrefixOverlap(t *testing.T) {
	srv := redistest.Start(t)
	for _, tc := range []struct {
		keyPrefix, scsPrefix string
		refused              bool
	}{
		{"scs:", "", true}, // "" is scs's "scs:session:", the Store's session records
		{"scs:", "scs:session:", true},
		{"scs:", "scs:", true},      // holds every key of the Store
		{"scs:", "scs:user:", true}, // users' indexes
		{"", "session:", true},
		{"", "sess", true},
		{"", "session:ab", true}, // within the records
		{"", "user:", true},
		{"", "rate_limit:", true},
		{"", "scs_migrated:", true},
		{"app:", "app:", true},
		{"app:", "a", true},
		{"app:", "app:rate_limit:x", true},
		{"scs:session:", "", true}, // the Store's keys lie under scs's prefix
		{"", "", false},
		{"app:", "", false},
		{"app:", "session:", false}, // scs's "session:<token>" beside the Store's "app:session:<id>"
		{"scs:", "myapp:", false},
		{"", "scs:session:", false},
		{"", "users:", false},
	} {
		store := open(t, srv, redisstore.Config{KeyPrefix: tc.keyPrefix})
		scsPrefix := tc.scsPrefix
		if scsPrefix == "" {
			scsPrefix = redisstore.DefaultSCSPrefix
		}
		token := strings.Repeat("v", 43)
		key := scsPrefix + token
		srv.Do(t, "SET", key, "victim")
		records := store.SCSRecords(tc.scsPrefix)
		err := records.Err()
		if !tc.refused {
			if err != nil {
				t.Errorf("KeyPrefix %q: SCSRecords(%q).Err() = %v, want nil", tc.keyPrefix, tc.scsPrefix, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), "KeyPrefix") {
			t.Errorf("KeyPrefix %q: SCSRecords(%q).Err() = %v, want an error naming KeyPrefix", tc.keyPrefix, tc.scsPrefix, err)
		}
		// Refused records send nothing: the key under their prefix stays.
		if _, _, terr := records.Take(context.Background(), token); terr != err {
			t.Errorf("KeyPrefix %q: Take with refused records = %v, want %v", tc.keyPrefix, terr, err)
		}
		if rerr := records.Retire(context.Background(), token, time.Now().Add(time.Hour)); rerr != err {
			t.Errorf("KeyPrefix %q: Retire with refused records = %v, want %v", tc.keyPrefix, rerr, err)
		}
		if rerr := records.RetireUser(context.Background(), "alice", time.Now().Add(time.Hour)); rerr != err {
			t.Errorf("KeyPrefix %q: RetireUser with refused records = %v, want %v", tc.keyPrefix, rerr, err)
		}
		if _, rerr := records.UserRetired(context.Background(), "alice"); rerr != err {
			t.Errorf("KeyPrefix %q: UserRetired with refused records = %v, want %v", tc.keyPrefix, rerr, err)
		}
		if n, _ := redis.Int(srv.Do(t, "EXISTS", key), nil); n != 1 {
			t.Errorf("KeyPrefix %q: refused records took %q", tc.keyPrefix, key)
		}
		srv.Do(t, "FLUSHALL")
	}
}

// TestSCSRecordsRefusesEveryStoreKey writes every kind of key a Store
// writes (a session, a user's index, a rate limit counter, the marker of a
// migrated scs key) and checks that SCSRecords refuses each key, and each
// key's beginning up to the KeyPrefix, as a prefix: the overlap check
// covers every key family the Store has.
func TestSCSRecordsRefusesEveryStoreKey(t *testing.T) {
	srv := redistest.Start(t)
	store := open(t, srv, redisstore.Config{KeyPrefix: "app:"})
	ctx := context.Background()
	if _, err := store.Insert(ctx, "anon", []byte("rec"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := store.AddUserSession(ctx, redisstore.UserSession{UserID: "alice", ID: "a", Record: []byte("rec"), TTL: time.Hour, Deadline: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := store.CountRequests(ctx, []string{"h:login"}, []time.Duration{time.Minute}); err != nil {
		t.Fatal(err)
	}
	if err := store.SCSRecords("").Retire(ctx, strings.Repeat("t", 43), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := store.SCSRecords("").RetireUser(ctx, "alice", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := store.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	keys, err := redis.Strings(srv.Do(t, "KEYS", "*"), nil)
	if err != nil || len(keys) != 6 {
		t.Fatalf("keys %q, %v, want 6: a session, an index and its session, a counter, the markers of a key and a user", keys, err)
	}
	for _, key := range keys {
		for _, prefix := range []string{key, key[:len("app:")+1]} {
			if err := store.SCSRecords(prefix).Err(); err == nil {
				t.Errorf("SCSRecords(%q) accepted, though the Store wrote %q", prefix, key)
			}
		}
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
	if err := records.RetireUser(ctx, "alice", time.Now().Add(time.Hour)); err != nil {
		t.Fatalf("RetireUser = %v", err)
	}
	if retired, err := records.UserRetired(ctx, "alice"); err != nil || !retired {
		t.Fatalf("UserRetired = %v, %v", retired, err)
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

// TestSCSRecordsOfAnotherStore checks that session.New refuses scs records
// taken from another Store than the Manager's when their prefix overlaps
// the keys of the Manager's Store: a check of only the Store the records
// come from would let a cookie holding a session's id end that session.
// Records that do not overlap are taken.
func TestSCSRecordsOfAnotherStore(t *testing.T) {
	srv := redistest.Start(t)
	key := []byte("0123456789abcdefghijklmnopqrstuvwxyzABCD")
	other := open(t, srv, redisstore.Config{})
	for _, tc := range []struct {
		keyPrefix string
		refused   bool
	}{
		{"scs:", true}, // the Manager's records are "scs:session:<id>", under scs's default prefix
		{"app:", false},
	} {
		manager := open(t, srv, redisstore.Config{KeyPrefix: tc.keyPrefix})
		records := other.SCSRecords("")
		if err := records.Err(); err != nil {
			t.Fatalf("SCSRecords of a Store without KeyPrefix: %v", err)
		}
		// The Store itself, and a wrapper that adds instrumentation,
		// which is checked the same.
		for _, st := range []session.Store{manager, wrappedStore{manager}} {
			_, err := session.New(st, session.Config{Keys: [][]byte{key}, FromSCS: &session.SCSImport{Records: records, UserKey: "userID"}})
			if tc.refused && (err == nil || !strings.Contains(err.Error(), "KeyPrefix")) {
				t.Errorf("New on a %T with KeyPrefix %q, records of another Store: %v, want an error naming KeyPrefix", st, tc.keyPrefix, err)
			}
			if !tc.refused && err != nil {
				t.Errorf("New on a %T with KeyPrefix %q, records of another Store: %v, want nil", st, tc.keyPrefix, err)
			}
		}
	}
}

// wrappedStore is a Store in a wrapper, as an app that adds
// instrumentation makes one.
type wrappedStore struct{ *redisstore.Store }
