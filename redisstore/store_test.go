package redisstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/internal/syncbuf"
	"github.com/sessionkit/sessionkit/redisstore"
)

// open returns a Store on srv with cfg (Addr filled in), closed at cleanup.
func open(t *testing.T, srv *redistest.Server, cfg redisstore.Config) *redisstore.Store {
	t.Helper()
	cfg.Addr = srv.Addr()
	s, err := redisstore.Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func pttl(t *testing.T, srv *redistest.Server, key string) time.Duration {
	t.Helper()
	ms, err := redis.Int64(srv.Do(t, "PTTL", key), nil)
	if err != nil {
		t.Fatal(err)
	}
	return time.Duration(ms) * time.Millisecond
}

func TestStoreSemantics(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv, redisstore.Config{})
	ctx := context.Background()

	tests := []struct {
		name      string
		setup     func(key string) // state before the call, "" for none
		call      func(id string) (bool, error)
		want      bool
		wantValue string // value under the key after the call, "" for none
	}{
		{
			name: "Insert on missing writes",
			call: func(id string) (bool, error) { return s.Insert(ctx, id, []byte("new"), time.Minute) },
			want: true, wantValue: "new",
		},
		{
			name:  "Insert on existing does not overwrite",
			setup: func(key string) { srv.Do(t, "SET", key, "old", "PX", 60000) },
			call:  func(id string) (bool, error) { return s.Insert(ctx, id, []byte("new"), time.Minute) },
			want:  false, wantValue: "old",
		},
		{
			name:  "Update on existing writes",
			setup: func(key string) { srv.Do(t, "SET", key, "old", "PX", 60000) },
			call:  func(id string) (bool, error) { return s.Update(ctx, id, []byte("new"), time.Minute) },
			want:  true, wantValue: "new",
		},
		{
			name: "Update on missing creates nothing",
			call: func(id string) (bool, error) { return s.Update(ctx, id, []byte("new"), time.Minute) },
			want: false,
		},
		{
			name:  "Load existing",
			setup: func(key string) { srv.Do(t, "SET", key, "old", "PX", 60000) },
			call: func(id string) (bool, error) {
				b, ok, err := s.Load(ctx, id, 0)
				if ok && string(b) != "old" {
					return false, fmt.Errorf("Load = %q, want %q", b, "old")
				}
				return ok, err
			},
			want: true, wantValue: "old",
		},
		{
			name: "Load missing",
			call: func(id string) (bool, error) { _, ok, err := s.Load(ctx, id, time.Minute); return ok, err },
			want: false,
		},
		{
			name:  "Remove existing",
			setup: func(key string) { srv.Do(t, "SET", key, "old") },
			call:  func(id string) (bool, error) { return true, s.Remove(ctx, id) },
			want:  true,
		},
		{
			name: "Remove missing",
			call: func(id string) (bool, error) { return true, s.Remove(ctx, id) },
			want: true,
		},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprintf("id-%d", i)
			key := "session:" + id
			if tc.setup != nil {
				tc.setup(key)
			}
			got, err := tc.call(id)
			if err != nil || got != tc.want {
				t.Fatalf("got %v, %v, want %v, nil", got, err, tc.want)
			}
			value, err := redis.String(srv.Do(t, "GET", key), nil)
			if errors.Is(err, redis.ErrNil) {
				value = ""
			}
			if value != tc.wantValue {
				t.Fatalf("GET %s = %q, want %q", key, value, tc.wantValue)
			}
			if value != "" {
				if d := pttl(t, srv, key); d <= 0 {
					t.Fatalf("PTTL %s = %v, want an expiry", key, d)
				}
			}
		})
	}
}

func TestWriteTTL(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv, redisstore.Config{})
	ctx := context.Background()

	for _, ttl := range []time.Duration{0, -time.Second} {
		if _, err := s.Insert(ctx, "a", []byte("x"), ttl); err == nil {
			t.Errorf("Insert with ttl %v succeeded, want an error", ttl)
		}
		if _, err := s.Update(ctx, "a", []byte("x"), ttl); err == nil {
			t.Errorf("Update with ttl %v succeeded, want an error", ttl)
		}
	}
	if _, _, err := s.Load(ctx, "a", -time.Second); err == nil {
		t.Error("Load with a negative ttl succeeded, want an error")
	}
	if n, _ := redis.Int(srv.Do(t, "EXISTS", "session:a"), nil); n != 0 {
		t.Fatal("a write with a bad ttl created the key")
	}

	// A sub-millisecond ttl rounds up to 1ms rather than down to no expiry.
	if ok, err := s.Insert(ctx, "tiny", []byte("x"), time.Microsecond); !ok || err != nil {
		t.Fatalf("Insert(1µs) = %v, %v, want true, nil", ok, err)
	}
	if ok, err := s.Insert(ctx, "b", []byte("x"), 90*time.Second); !ok || err != nil {
		t.Fatalf("Insert = %v, %v, want true, nil", ok, err)
	}
	if d := pttl(t, srv, "session:b"); d <= 80*time.Second || d > 90*time.Second {
		t.Fatalf("PTTL after Insert(90s) = %v, want about 90s", d)
	}
}

func TestLoadResetsTTL(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv, redisstore.Config{})
	ctx := context.Background()
	srv.Do(t, "SET", "session:x", "rec", "PX", 5000)

	if _, _, err := s.Load(ctx, "x", 0); err != nil {
		t.Fatal(err)
	}
	if d := pttl(t, srv, "session:x"); d > 5*time.Second {
		t.Fatalf("PTTL after Load(ttl 0) = %v, want at most 5s (unchanged)", d)
	}
	b, ok, err := s.Load(ctx, "x", time.Hour)
	if err != nil || !ok || string(b) != "rec" {
		t.Fatalf("Load = %q, %v, %v, want %q, true, nil", b, ok, err, "rec")
	}
	if d := pttl(t, srv, "session:x"); d < 59*time.Minute {
		t.Fatalf("PTTL after Load(ttl 1h) = %v, want about 1h", d)
	}
}

// pingCalls are the commands Ping sends one server, pipelined in one round
// trip (PEXPIREAT twice: with NX and with GT, as a login sends it).
var pingCalls = map[string]int64{"ping": 1, "getex": 1, "exists": 1,
	"get": 1, "set": 1, "del": 1, "mget": 1, "scan": 1, "zadd": 1, "zrange": 1, "zrem": 1, "zremrangebyscore": 1,
	"pexpireat": 2, "watch": 1, "unwatch": 1, "multi": 1, "exec": 1, "discard": 1}

// TestOneCommandPerCall pins down the cost of each call as the server counts
// it: one command (Ping: pingCalls, pipelined in one round trip), and in
// particular no PING from the pool's liveness check.
func TestOneCommandPerCall(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv, redisstore.Config{})
	ctx := context.Background()
	if _, err := s.Insert(ctx, "x", []byte("rec"), time.Minute); err != nil { // warms the pool
		t.Fatal(err)
	}

	tests := []struct {
		name string
		call func() error
		want map[string]int64
	}{
		{"Load with ttl", func() error { _, _, err := s.Load(ctx, "x", time.Hour); return err }, map[string]int64{"getex": 1}},
		{"Load without ttl", func() error { _, _, err := s.Load(ctx, "x", 0); return err }, map[string]int64{"get": 1}},
		{"Update", func() error { _, err := s.Update(ctx, "x", []byte("r"), time.Hour); return err }, map[string]int64{"set": 1}},
		{"Remove", func() error { return s.Remove(ctx, "x") }, map[string]int64{"del": 1}},
		{"Ping", func() error { return s.Ping(ctx) }, pingCalls},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv.ResetStats(t)
			if err := tc.call(); err != nil {
				t.Fatal(err)
			}
			if got := srv.Calls(t); !maps.Equal(got, tc.want) {
				t.Fatalf("Calls = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestPingReadOnlyReplica points a Store at a read-only replica, which
// refuses every login and every read that extends a session (GETEX is a
// write command): Ping must fail with ErrUnavailable and the READONLY
// reply, not report the server ready. On the master, as an ACL user with
// no more than the documented commands and key patterns under a KeyPrefix,
// Ping succeeds and leaves no key behind.
func TestPingReadOnlyReplica(t *testing.T) {
	ctx := context.Background()
	master := redistest.Start(t)
	replica := redistest.Start(t, "--replicaof", "127.0.0.1", fmt.Sprint(master.Port))
	for _, tc := range []struct{ name, prefix string }{
		{"replica", ""},
		{"replica with KeyPrefix", "myapp:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t, replica, redisstore.Config{KeyPrefix: tc.prefix})
			err := s.Ping(ctx)
			if !errors.Is(err, redisstore.ErrUnavailable) || !strings.Contains(fmt.Sprint(err), "READONLY") {
				t.Fatalf("Ping on a read-only replica = %v, want ErrUnavailable with READONLY", err)
			}
		})
	}
	t.Run("master, ACL user", func(t *testing.T) {
		master.Do(t, "ACL", "SETUSER", "sessionkit", "on", ">acl-pw-8c1", "~myapp:session:*", "~myapp:user:*", "resetchannels", "-@all",
			"+get", "+getex", "+set", "+del", "+scan", "+mget", "+ping", "+exists", "+multi", "+exec", "+discard",
			"+watch", "+unwatch", "+zadd", "+zrange", "+zrem", "+zremrangebyscore", "+pexpireat", "+select")
		s := open(t, master, redisstore.Config{KeyPrefix: "myapp:", Username: "sessionkit", Password: "acl-pw-8c1"})
		if err := s.Ping(ctx); err != nil {
			t.Fatalf("Ping on the master as the documented ACL user = %v, want nil", err)
		}
		if n, _ := redis.Int(master.Do(t, "DBSIZE"), nil); n != 0 {
			t.Errorf("DBSIZE after Ping = %d, want 0", n)
		}
	})
}

// documentedACL returns the key patterns and commands of the package
// documentation's ACL line, the patterns under the KeyPrefix "myapp:".
func documentedACL(t *testing.T) []string {
	t.Helper()
	var perms []string
	for _, r := range aclCommands(t) {
		switch {
		case strings.HasPrefix(r, "~"):
			perms = append(perms, "~myapp:"+r[1:])
		case strings.HasPrefix(r, "+"):
			perms = append(perms, r)
		}
	}
	return perms
}

// TestPingACLMissingOne takes each permission of the documented ACL line
// away in turn, from a user on database 1 (so that SELECT counts): Ping
// must fail with ErrRefused, naming the refused command and
// REDIS_USERNAME, and Describe must name the permission to add, so that
// an app stops at start-up instead of failing every login or logout. With
// every permission, Ping passes and leaves no key behind.
func TestPingACLMissingOne(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	perms := documentedACL(t)
	for i, missing := range append([]string{""}, perms...) {
		name := "none missing"
		if missing != "" {
			name = "without " + missing
		}
		t.Run(name, func(t *testing.T) {
			user := fmt.Sprintf("sessionkit%d", i)
			acl := []any{"SETUSER", user, "reset", "on", ">acl-pw-61d", "resetchannels", "-@all"}
			for _, p := range perms {
				if p != missing {
					acl = append(acl, p)
				}
			}
			srv.Do(t, "ACL", acl...)
			cfg := redisstore.Config{KeyPrefix: "myapp:", DB: 1, Username: user, Password: "acl-pw-61d"}
			err := open(t, srv, cfg).Ping(ctx)
			if missing == "" {
				if err != nil {
					t.Fatalf("Ping as the documented ACL user = %v, want nil", err)
				}
				if info, _ := redis.String(srv.Do(t, "INFO", "keyspace"), nil); strings.Contains(info, "keys=") {
					t.Errorf("INFO keyspace after Ping = %q, want no keys", info)
				}
				return
			}
			if !errors.Is(err, redisstore.ErrRefused) || !strings.Contains(err.Error(), "NOPERM") {
				t.Fatalf("Ping = %v, want ErrRefused with NOPERM", err)
			}
			if strings.Contains(err.Error(), "acl-pw-61d") || strings.Contains(err.Error(), "myapp:") {
				t.Errorf("Ping = %v, which holds the password or a key", err)
			}
			cfg.Addr = srv.Addr()
			d := redisstore.Describe(err, cfg)
			if !strings.Contains(d, user) {
				t.Errorf("Describe(%v) = %q, want the user named", err, d)
			}
			if missing == "+select" { // refused as the connection opens, before Ping's commands
				return
			}
			cmd := strings.ToUpper(strings.TrimPrefix(missing, "+"))
			if strings.HasPrefix(missing, "~") {
				cmd = "" // the first command on those keys
			}
			if !strings.Contains(err.Error(), cmd+" ") || !strings.Contains(err.Error(), "REDIS_USERNAME") {
				t.Errorf("Ping = %v, want the refused command %s and REDIS_USERNAME named", err, cmd)
			}
			if !strings.Contains(d, "add "+missing) {
				t.Errorf("Describe(%v) = %q, want %q", err, d, "add "+missing)
			}
		})
	}
}

// TestPingMissingCommand renames each command of the documented ACL line
// away in turn, as a managed Redis that disables a command does (and as
// the server of a Redis too old for it answers): Ping must fail with
// ErrRefused, and Describe name the command, so that an app stops at
// start-up instead of failing every login, logout or read that sends it.
// (PING, which the test servers answer to start, is Ping's first command;
// SELECT is sent as a connection opens.)
func TestPingMissingCommand(t *testing.T) {
	ctx := context.Background()
	for _, perm := range documentedACL(t) {
		cmd, ok := strings.CutPrefix(perm, "+")
		if !ok || cmd == "ping" || cmd == "select" {
			continue
		}
		cmd = strings.ToUpper(cmd)
		t.Run(cmd, func(t *testing.T) {
			t.Parallel()
			srv := redistest.Start(t, "--rename-command", cmd, "")
			cfg := redisstore.Config{Addr: srv.Addr(), KeyPrefix: "myapp:"}
			err := open(t, srv, cfg).Ping(ctx)
			want := "the server does not know " + cmd + ","
			if d := redisstore.Describe(err, cfg); !errors.Is(err, redisstore.ErrRefused) || !strings.Contains(d, want) {
				t.Errorf("Ping = %v (Describe: %q), want ErrRefused, described as %q", err, d, want)
			}
			if strings.Contains(fmt.Sprint(err), "myapp:") {
				t.Errorf("Ping = %v, which holds a key", err)
			}
		})
	}
}

// TestPingRefusedForm: a Redis 6.2 knows PEXPIREAT but refuses the NX and
// GT of a login with "wrong number of arguments", so that Ping passed and
// every login failed. A Redis 7.0 takes those forms; this one has GETDEL
// (which takes one argument) in PEXPIREAT's place, so that it refuses them
// as 6.2 does: Ping must fail with ErrRefused, and Describe name the
// version needed. (TestRefusedForm has the texts of a real 6.2.)
func TestPingRefusedForm(t *testing.T) {
	srv := redistest.Start(t, "--rename-command", "PEXPIREAT", "", "--rename-command", "GETDEL", "PEXPIREAT")
	cfg := redisstore.Config{Addr: srv.Addr()}
	err := open(t, srv, cfg).Ping(context.Background())
	const want = "PEXPIREAT with NX needs Redis 7.0 or later: ERR wrong number of arguments"
	if !errors.Is(err, redisstore.ErrRefused) || !strings.Contains(fmt.Sprint(err), want) {
		t.Errorf("Ping = %v, want ErrRefused with %q", err, want)
	}
	if d := redisstore.Describe(err, cfg); !strings.HasPrefix(d, "the server refuses PEXPIREAT with NX: it is a Redis older than 7.0") {
		t.Errorf("Describe(%v) = %q, want it to name PEXPIREAT with NX and Redis 7.0", err, d)
	}
}

// TestPingOutOfMemory holds what Ping's documentation says of a Redis out
// of memory: it refuses a login, but serves reads, and Ping reports it
// ready, so that a readiness probe does not take every instance of the app
// out of rotation for a state they all share.
func TestPingOutOfMemory(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	s := open(t, srv, redisstore.Config{})
	if _, err := s.Insert(ctx, "before", []byte("rec"), time.Minute); err != nil {
		t.Fatal(err)
	}
	// An empty server already uses more than 1 byte: every write is refused.
	fillUp(t, srv)
	if _, err := s.Insert(ctx, "after", []byte("rec"), time.Minute); !errors.Is(err, redisstore.ErrUnavailable) || !strings.Contains(fmt.Sprint(err), "OOM") {
		t.Fatalf("Insert out of memory = %v, want ErrUnavailable with OOM", err)
	}
	if rec, found, err := s.Load(ctx, "before", time.Minute); err != nil || !found || string(rec) != "rec" {
		t.Fatalf("Load out of memory = %q, %v, %v; want the record", rec, found, err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping out of memory = %v, want nil (reads still work)", err)
	}
}

// TestPingEvictionPolicy holds Ping's warning of a Redis that may evict
// keys: a line naming the policy for a maxmemory with a policy other than
// noeviction, once for a run of Pings; none for noeviction or without a
// maxmemory. Ping sends INFO only as the default user: the documented ACL
// user is not sent it, and a default user refused it is sent it once, so
// that ACL LOG, which operators watch, holds no refusal, or one.
func TestPingEvictionPolicy(t *testing.T) {
	ctx := context.Background()
	const warning = "redisstore: Redis may evict sessions and user indexes once full"
	tests := []struct {
		name      string
		maxmemory string
		policy    string
		acl       string // "user": as the documented ACL user; "default": as the default user denied INFO
		want      bool
	}{
		{"allkeys-lru", "100mb", "allkeys-lru", "", true},
		{"volatile-ttl", "100mb", "volatile-ttl", "", true},
		{"noeviction", "100mb", "noeviction", "", false},
		{"no maxmemory", "0", "allkeys-lru", "", false},
		{"ACL user", "100mb", "allkeys-lru", "user", false},
		{"default user denied INFO", "100mb", "allkeys-lru", "default", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.Start(t, "--maxmemory", tc.maxmemory, "--maxmemory-policy", tc.policy)
			logs := new(syncbuf.Buffer)
			cfg := redisstore.Config{Logger: slog.New(slog.NewTextHandler(logs, nil))}
			switch tc.acl {
			case "user":
				srv.Do(t, "ACL", append([]any{"SETUSER", "sessionkit", "reset", "on", ">acl-pw-61d", "resetchannels", "-@all"}, anys(documentedACL(t))...)...)
				cfg.KeyPrefix, cfg.Username, cfg.Password = "myapp:", "sessionkit", "acl-pw-61d"
			case "default":
				srv.Do(t, "ACL", "SETUSER", "default", "-info")
			}
			srv.Do(t, "ACL", "LOG", "RESET")
			s := open(t, srv, cfg)
			for range 3 {
				if err := s.Ping(ctx); err != nil {
					t.Fatalf("Ping = %v, want nil: the policy is a warning, not a failure", err)
				}
			}
			denials, err := redis.Values(srv.Do(t, "ACL", "LOG"), nil)
			if err != nil {
				t.Fatal(err)
			}
			entries := make([]map[string]string, len(denials))
			for i, d := range denials {
				entries[i] = aclEntry(d)
			}
			switch {
			case tc.acl == "default" && (len(entries) != 1 || entries[0]["count"] != "1"):
				t.Errorf("ACL LOG after 3 Pings as a default user denied INFO = %v, want INFO refused once", entries)
			case tc.acl != "default" && len(entries) != 0:
				t.Errorf("ACL LOG after 3 Pings = %v, want it empty", entries)
			}
			got := strings.Count(logs.String(), warning)
			if !tc.want {
				if got != 0 {
					t.Fatalf("logs after 3 Pings:\n%s\nwant no eviction warning", logs)
				}
				return
			}
			if got != 1 {
				t.Fatalf("logs after 3 Pings:\n%s\nwant the eviction warning once", logs)
			}
			if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "maxmemory_policy="+tc.policy) || !strings.Contains(logs.String(), "maxmemory=104857600") {
				t.Errorf("warning = %s, want level WARN, the policy and the maxmemory", logs)
			}
		})
	}
}

func TestKeyPrefix(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv, redisstore.Config{KeyPrefix: "app[1]:"})
	ctx := context.Background()
	srv.Do(t, "SET", "session:other", "not ours") // unprefixed: another app's
	srv.Do(t, "SET", "app1:session:other", "not ours")

	if _, err := s.Insert(ctx, "id", []byte("rec"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if got, _ := redis.String(srv.Do(t, "GET", "app[1]:session:id"), nil); got != "rec" {
		t.Fatalf("GET app[1]:session:id = %q, want %q", got, "rec")
	}
	if _, ok, _ := s.Load(ctx, "other", 0); ok {
		t.Fatal("Load found a key outside the prefix")
	}
	var ids []string
	if err := s.Iterate(ctx, func(id string, _ []byte) error { ids = append(ids, id); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(ids) != 1 || ids[0] != "id" {
		t.Fatalf("Iterate visited %q, want [id] (the prefix is matched literally)", ids)
	}
}

func TestIterate(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv, redisstore.Config{MaxActive: 1}) // fn may use the Store even so
	ctx := context.Background()

	const n = 250
	want := make(map[string]string)
	for i := range n {
		id := fmt.Sprintf("id%03d", i)
		if _, err := s.Insert(ctx, id, []byte("rec-"+id), time.Minute); err != nil {
			t.Fatal(err)
		}
		want[id] = "rec-" + id
	}
	for i := 0; i < n; i += 10 { // removed
		id := fmt.Sprintf("id%03d", i)
		if err := s.Remove(ctx, id); err != nil {
			t.Fatal(err)
		}
		delete(want, id)
	}
	for i := 5; i < n; i += 10 { // expired
		id := fmt.Sprintf("id%03d", i)
		srv.Do(t, "PEXPIRE", "session:"+id, 1)
		delete(want, id)
	}
	// A renewed anonymous session: its record is visited, the pointer
	// the move left behind is not.
	if _, err := s.Insert(ctx, "anon-from", []byte("rec"), time.Minute); err != nil {
		t.Fatal(err)
	}
	mv := redisstore.Move{From: "anon-from", To: "anon-to", TTL: time.Minute, Merge: func(b []byte) ([]byte, error) { return b, nil }}
	if moved, err := s.MoveSession(ctx, mv); !moved || err != nil {
		t.Fatalf("MoveSession = %v, %v", moved, err)
	}
	want["anon-to"] = "rec"
	// Another Store on the same database, whose KeyPrefix lies under this
	// one's: its sessions are no ids of this one's, and a Remove of them
	// here would log its users out.
	other := open(t, srv, redisstore.Config{KeyPrefix: "session:"})
	if _, err := other.Insert(ctx, "theirs", []byte("rec"), time.Minute); err != nil {
		t.Fatal(err)
	}
	srv.Do(t, "SET", "user:1:sessions", "not a session")
	srv.Do(t, "SADD", "session:a-set", "not a string") // MGET gives nil: skipped
	time.Sleep(5 * time.Millisecond)                   // let the 1ms expiries pass

	got := make(map[string]string)
	err := s.Iterate(ctx, func(id string, record []byte) error {
		got[id] = string(record)
		// Removing from inside fn must work, even with a pool of one.
		return s.Remove(ctx, id)
	})
	if err != nil {
		t.Fatalf("Iterate: %v", err)
	}
	if !maps.Equal(got, want) {
		t.Fatalf("Iterate visited %d records, want %d", len(got), len(want))
	}
	if n, _ := srv.Do(t, "EXISTS", "session:session:theirs").(int64); n != 1 {
		t.Error("Iterate handed out, and its fn removed, a session of the Store with the KeyPrefix session:")
	}
	if n, _ := redis.Int(srv.Do(t, "DBSIZE"), nil); n != 4 {
		t.Fatalf("DBSIZE after removing every record = %d, want 4 (two keys of others, the other Store's record, a pointer)", n)
	}

	stop := errors.New("stop")
	calls := 0
	if _, err := s.Insert(ctx, "again", []byte("x"), time.Minute); err != nil {
		t.Fatal(err)
	}
	err = s.Iterate(ctx, func(string, []byte) error { calls++; return stop })
	if err != stop || calls != 1 {
		t.Fatalf("Iterate with a failing fn = %v after %d calls, want %v after 1", err, calls, stop)
	}
}

// TestErrorsHideIDs checks that no error text contains the id, while Redis
// is down.
func TestErrorsHideIDs(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv, redisstore.Config{Timeout: 200 * time.Millisecond})
	ctx := context.Background()
	const id = "ZZ-distinctive-id-6f1d"
	srv.Stop(t)

	errs := map[string]error{}
	_, _, errs["Load"] = s.Load(ctx, id, time.Minute)
	_, errs["Insert"] = s.Insert(ctx, id, []byte("x"), time.Minute)
	_, errs["Update"] = s.Update(ctx, id, []byte("x"), time.Minute)
	errs["Remove"] = s.Remove(ctx, id)
	errs["Iterate"] = s.Iterate(ctx, func(string, []byte) error { return nil })
	_, _, errs["Find"] = s.Find(id)
	errs["Commit"] = s.Commit(id, []byte("x"), time.Now().Add(time.Hour))
	errs["Delete"] = s.Delete(id)
	for name, err := range errs {
		if err == nil {
			t.Errorf("%s with Redis stopped succeeded, want an error", name)
			continue
		}
		if !strings.HasPrefix(err.Error(), "redisstore: ") {
			t.Errorf("%s error %q lacks the package prefix", name, err)
		}
		if strings.Contains(err.Error(), id) || strings.Contains(err.Error(), "session:") {
			t.Errorf("%s error %q contains the id or key", name, err)
		}
	}
}

// TestErrorsHideEchoedKeys calls the Store on a Redis that disabled the
// commands it sends, as a managed Redis may: Redis then answers "ERR
// unknown command 'GETEX', with args beginning with: 'session:<id>' ...",
// and the errors, which the Manager logs, leave those arguments out while
// still classifying and holding the reply: they carry the session's key.
func TestErrorsHideEchoedKeys(t *testing.T) {
	var args []string
	for _, c := range []string{"GET", "GETEX", "SET", "DEL", "ZADD"} {
		args = append(args, "--rename-command", c, "")
	}
	srv := redistest.Start(t, args...)
	s := open(t, srv, redisstore.Config{Timeout: 2 * time.Second})
	ctx := context.Background()
	const id = "ZZ-distinctive-id-6f1d"
	errs := map[string]error{}
	_, _, errs["Load"] = s.Load(ctx, id, time.Minute)
	_, _, errs["Load without idle"] = s.Load(ctx, id, 0)
	_, errs["Insert"] = s.Insert(ctx, id, []byte("x"), time.Minute)
	errs["Remove"] = s.Remove(ctx, id)
	_, errs["AddUserSession"] = s.AddUserSession(ctx, redisstore.UserSession{UserID: "alice", ID: id, Record: []byte("x"), TTL: time.Minute, Deadline: time.Now().Add(time.Hour)})
	for name, err := range errs {
		var reply redis.Error
		switch {
		case err == nil:
			t.Errorf("%s with its command disabled succeeded, want an error", name)
		case strings.Contains(err.Error(), id) || strings.Contains(err.Error(), "session:") || strings.Contains(err.Error(), "alice"):
			t.Errorf("%s error %q contains the id, a key or the user", name, err)
		case !errors.Is(err, redisstore.ErrRefused) || !errors.As(err, &reply) || !strings.Contains(err.Error(), "unknown command"):
			t.Errorf("%s error %q: want ErrRefused, holding Redis's reply, saying what Redis refused", name, err)
		}
	}
}

// within fails the test if f does not return within a generous bound: the
// point is that it returns at all, not how fast.
func within(t *testing.T, name string, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		t.Fatalf("%s did not return within 5s", name)
		return nil
	}
}

func TestRedisStopped(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv, redisstore.Config{Timeout: 200 * time.Millisecond})
	if err := s.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv.Stop(t)
	err := within(t, "Load", func() error { _, _, err := s.Load(context.Background(), "x", time.Minute); return err })
	if err == nil {
		t.Fatal("Load with Redis stopped succeeded, want an error")
	}
}

// TestRedisStalled uses a server that accepts connections and never answers.
func TestRedisStalled(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	defer func() {
		l.Close()
		for c := range accepted {
			c.Close()
		}
	}()

	s, err := redisstore.Open(redisstore.Config{Addr: l.Addr().String(), Timeout: 200 * time.Millisecond, ReadTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = within(t, "Load", func() error { _, _, err := s.Load(context.Background(), "x", time.Minute); return err })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Load on a stalled server = %v, want context.DeadlineExceeded", err)
	}
}

func TestPoolExhausted(t *testing.T) {
	srv := redistest.Start(t)
	pool, err := redisstore.NewPool(redisstore.Config{Addr: srv.Addr(), MaxActive: 1})
	if err != nil {
		t.Fatal(err)
	}
	s, err := redisstore.New(pool, redisstore.Config{Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	held, err := pool.GetContext(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	err = within(t, "Load", func() error { _, _, err := s.Load(context.Background(), "x", time.Minute); return err })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Load on an exhausted pool = %v, want context.DeadlineExceeded", err)
	}
	// Nothing was sent, and the error says so to package session.
	if !unsent(err) {
		t.Errorf("Load on an exhausted pool = %v, without Unsent() true: nothing was sent", err)
	}
	held.Close()
	if _, _, err := s.Load(context.Background(), "x", time.Minute); err != nil {
		t.Fatalf("Load after the connection came back: %v", err)
	}
}

// TestCallsAfterClose: a call on a closed Store fails as unavailable, and
// one whose context has ended fails with the context's error, without a
// panic: redigo's Pool.GetContext, given both a closed pool and an ended
// context, sends on the pool's closed channel half the time.
func TestCallsAfterClose(t *testing.T) {
	srv := redistest.Start(t)
	s, err := redisstore.Open(redisstore.Config{Addr: srv.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Load(context.Background(), "a", 0); err != nil {
		t.Fatal(err)
	}
	s.Close()
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	for range 50 {
		if _, _, err := s.Load(ended, "a", 0); !errors.Is(err, context.Canceled) {
			t.Fatalf("Load with an ended context after Close = %v, want context.Canceled", err)
		}
	}
	if _, _, err := s.Load(context.Background(), "a", 0); !errors.Is(err, redisstore.ErrUnavailable) {
		t.Fatalf("Load after Close = %v, want ErrUnavailable", err)
	}
}

func TestNewNilSource(t *testing.T) {
	if _, err := redisstore.New(nil, redisstore.Config{}); err == nil {
		t.Fatal("New(nil) succeeded, want an error")
	}
}

func TestRecordBytesRoundTrip(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv, redisstore.Config{})
	ctx := context.Background()
	rec := []byte{0, 1, 2, 255, '\r', '\n'}
	if _, err := s.Insert(ctx, "bin", rec, time.Minute); err != nil {
		t.Fatal(err)
	}
	got, ok, err := s.Load(ctx, "bin", 0)
	if err != nil || !ok || !bytes.Equal(got, rec) {
		t.Fatalf("Load = %q, %v, %v, want %q, true, nil", got, ok, err, rec)
	}
}

// slowSource hands out connections of pool that take their time after each
// reply, as a call descheduled between Redis's answer and its next step.
type slowSource struct {
	pool  *redis.Pool
	pause time.Duration
}

func (s slowSource) GetContext(ctx context.Context) (redis.Conn, error) {
	conn, err := s.pool.GetContext(ctx)
	if err != nil {
		return nil, err
	}
	return slowConn{conn, s.pause}, nil
}

type slowConn struct {
	redis.Conn
	pause time.Duration
}

func (c slowConn) DoWithTimeout(d time.Duration, name string, args ...any) (any, error) {
	reply, err := redis.DoWithTimeout(c.Conn, d, name, args...)
	time.Sleep(c.pause)
	return reply, err
}

func (c slowConn) ReceiveWithTimeout(d time.Duration) (any, error) {
	reply, err := redis.ReceiveWithTimeout(c.Conn, d)
	time.Sleep(c.pause)
	return reply, err
}

// TestReplyPastDeadline checks that a reply of Redis's own that came in
// time stays what it is when the call's deadline has passed by the time
// the Store looks at it: no context.DeadlineExceeded, whose text would
// also change the error the troubleshooting guide quotes.
func TestReplyPastDeadline(t *testing.T) {
	srv := redistest.Start(t)
	srv.Do(t, "RPUSH", "session:x", "not a record") // GETEX answers WRONGTYPE
	pool, err := redisstore.NewPool(redisstore.Config{Addr: srv.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	s, err := redisstore.New(slowSource{pool, 150 * time.Millisecond}, redisstore.Config{Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, _, err = s.Load(context.Background(), "x", time.Minute)
	if !errors.Is(err, redisstore.ErrRefused) || errors.Is(err, context.DeadlineExceeded) ||
		err.Error() != "redisstore: redis refused the request (load): WRONGTYPE Operation against a key holding the wrong kind of value" {
		t.Fatalf("Load of a reply that came in time, looked at past the deadline = %v, want WRONGTYPE as ErrRefused alone", err)
	}
}

// TestTTLCountsTheWait checks that a write that waits before it writes
// (here each reply takes 300 ms to reach the Store) gives the record what
// is left of the time to live it was asked for at the call, not all of it:
// a time to live cut at a session's absolute deadline must not run past
// that deadline by the wait.
func TestTTLCountsTheWait(t *testing.T) {
	ctx := context.Background()
	const ttl, pause = 2 * time.Second, 300 * time.Millisecond
	deadline := time.Now().Add(time.Hour)
	same := func(b []byte) ([]byte, error) { return b, nil }
	for _, tc := range []struct {
		name string
		key  string // the record written
		op   func(s *redisstore.Store) error
	}{
		{"Merge", "session:m", func(s *redisstore.Store) error {
			// A merge that changes the record: one that returns it
			// unchanged writes nothing (TestUserCommands).
			_, err := s.Merge(ctx, "m", ttl, func(b []byte) ([]byte, error) { return append(b, '+'), nil })
			return err
		}},
		{"AddUserSession with a limit", "session:n", func(s *redisstore.Store) error {
			_, err := s.AddUserSession(ctx, redisstore.UserSession{UserID: "u", ID: "n", Record: []byte("rec"), TTL: ttl, Deadline: deadline, Limit: 3})
			return err
		}},
		{"AddUserSession replacing a record", "session:r", func(s *redisstore.Store) error {
			_, err := s.AddUserSession(ctx, redisstore.UserSession{UserID: "u", ID: "r", TTL: ttl, Deadline: deadline, Replaces: "m", Merge: same})
			return err
		}},
		{"MoveSession", "session:v", func(s *redisstore.Store) error {
			_, err := s.MoveSession(ctx, redisstore.Move{UserID: "u", From: "l", To: "v", TTL: ttl, Deadline: deadline, Merge: same})
			return err
		}},
		{"MoveSession of an anonymous session", "session:a2", func(s *redisstore.Store) error {
			_, err := s.MoveSession(ctx, redisstore.Move{From: "a1", To: "a2", TTL: ttl, Merge: same})
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.Start(t)
			srv.Do(t, "SET", "session:m", "rec", "PX", 3_600_000)
			srv.Do(t, "SET", "session:a1", "rec", "PX", 3_600_000)
			srv.Do(t, "SET", "session:l", "rec", "PX", 3_600_000)
			srv.Do(t, "ZADD", "user:u:sessions", deadline.UnixMilli(), "l")
			pool, err := redisstore.NewPool(redisstore.Config{Addr: srv.Addr()})
			if err != nil {
				t.Fatal(err)
			}
			s, err := redisstore.New(slowSource{pool, pause}, redisstore.Config{Timeout: 10 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			start := time.Now()
			if err := tc.op(s); err != nil {
				t.Fatal(err)
			}
			left := pttl(t, srv, tc.key)
			// 10 ms for rounding to milliseconds, in the call and in PTTL.
			if over := time.Since(start) + left - ttl; left <= 0 || over > 10*time.Millisecond {
				t.Fatalf("%s expires %v after the call's start plus its time to live (PTTL %v), want at most 10ms", tc.key, over, left)
			}
		})
	}
}

// unsent reports whether err has a method Unsent() bool that reports true:
// the call sent Redis nothing.
func unsent(err error) bool {
	var u interface{ Unsent() bool }
	return errors.As(err, &u) && u.Unsent()
}

// TestUnsentOnlyWhenNothingSent: a call that reached a stalled Redis timed
// out after sending its command, which Redis may run: its error must not
// say that nothing was sent (package session would then not remove a
// session that a login's transaction may still store).
func TestUnsentOnlyWhenNothingSent(t *testing.T) {
	p := redistest.Start(t).Proxy(t)
	s, err := redisstore.Open(redisstore.Config{Addr: p.Addr(), Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	p.Stall()
	defer p.Heal()
	_, err = s.Insert(context.Background(), "x", []byte("v"), time.Minute)
	if !errors.Is(err, redisstore.ErrUnavailable) {
		t.Fatalf("Insert on a stalled Redis = %v, want ErrUnavailable", err)
	}
	if unsent(err) {
		t.Errorf("Insert on a stalled Redis = %v, with Unsent() true: its command was sent", err)
	}
}
