package redisstore_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/internal/syncbuf"
	"github.com/sessionkit/sessionkit/redisstore"
)

// TestCountRequestsResetEndsWindow waits, again and again, exactly the
// reset CountRequests answers: the window has ended by then, and the next
// call opens a new one. The key's PTTL alone ends on the millisecond
// Redis still keeps the key through, and a client that waited a
// whole-second Retry-After made of it would be refused again.
func TestCountRequestsResetEndsWindow(t *testing.T) {
	s := open(t, redistest.Start(t), redisstore.Config{Timeout: 2 * time.Second})
	ctx := context.Background()
	windows := []time.Duration{20 * time.Millisecond}
	for round := range 30 {
		keys := []string{"reset:" + strconv.Itoa(round)}
		if _, _, err := s.CountRequests(ctx, keys, windows); err != nil {
			t.Fatal(err)
		}
		// A later call of the window, as a refused request is.
		counts, resets, err := s.CountRequests(ctx, keys, windows)
		if err != nil || counts[0] != 2 {
			t.Fatalf("second call = %v, %v; want count 2", counts, err)
		}
		time.Sleep(resets[0])
		if counts, _, err := s.CountRequests(ctx, keys, windows); err != nil || counts[0] != 1 {
			t.Fatalf("round %d: a call %v after the reset answered = %v, %v; want count 1, a new window", round, resets[0], counts, err)
		}
	}
}

// TestCountRequests counts two keys in one call: each call adds one to
// both, the keys live under "<KeyPrefix>rate_limit:" with the window as
// their time to live, which later calls leave alone, and the call is one
// MULTI/EXEC transaction.
func TestCountRequests(t *testing.T) {
	srv := redistest.Start(t)
	s, err := redisstore.Open(redisstore.Config{Addr: srv.Addr(), KeyPrefix: "app:", Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	keys := []string{"h1:a", "h2:b"}
	windows := []time.Duration{time.Minute, 2 * time.Hour}
	for want := int64(1); want <= 3; want++ {
		srv.ResetStats(t)
		counts, resets, err := s.CountRequests(ctx, keys, windows)
		if err != nil {
			t.Fatal(err)
		}
		for i := range keys {
			if counts[i] != want || resets[i] <= 0 || resets[i] > windows[i] {
				t.Errorf("call %d, key %s: count %d reset %v; want %d and within %v", want, keys[i], counts[i], resets[i], want, windows[i])
			}
		}
		calls := srv.Calls(t)
		for cmd, n := range map[string]int64{"multi": 1, "incr": 2, "pexpire": 2, "pttl": 2, "exec": 1} {
			if calls[cmd] != n {
				t.Errorf("call %d: %d × %s, want %d (all commands: %v)", want, calls[cmd], cmd, n, calls)
			}
		}
	}
	for i, k := range keys {
		ttl, err := redis.Int64(srv.Do(t, "PTTL", "app:rate_limit:"+k), nil)
		if err != nil || ttl <= 0 || ttl > windows[i].Milliseconds() {
			t.Errorf("PTTL app:rate_limit:%s = %d, %v; want within %v", k, ttl, err, windows[i])
		}
	}
	// A key left without an expiry (by another program) gets one.
	srv.Do(t, "SET", "app:rate_limit:h3:c", 7)
	counts, _, err := s.CountRequests(ctx, []string{"h3:c"}, []time.Duration{time.Minute})
	if err != nil || counts[0] != 8 {
		t.Errorf("count on a key without expiry = %v, %v; want 8", counts, err)
	}
	if ttl, _ := redis.Int64(srv.Do(t, "PTTL", "app:rate_limit:h3:c"), nil); ttl <= 0 {
		t.Errorf("PTTL after counting = %d, want an expiry", ttl)
	}
}

// TestPingCounter: PingCounter passes for an ACL user with the rate
// limiter's permissions and refuses, as ErrRefused naming what to add, one
// without the command or without the key pattern; either way it writes
// nothing, and a later CountRequests agrees with it.
func TestPingCounter(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	base := []any{"SETUSER", "app", "reset", "on", ">app-pw-3310", "resetchannels", "-@all", "~myapp:session:*", "+ping", "+get", "+getex"}
	tx := []any{"+multi", "+exec", "+discard"}
	counter := []any{"~myapp:rate_limit:*", "+incr", "+pexpire", "+pttl"}
	for _, tc := range []struct {
		name  string
		rules []any
		want  string // in Describe's text; "" for a pass
	}{
		{"no key pattern", append(slices.Clone(tx), "+incr", "+pexpire", "+pttl"), "~myapp:rate_limit:*"},
		{"no INCR", append(slices.Clone(tx), "~myapp:rate_limit:*", "+pexpire", "+pttl"), "+incr"},
		{"no PTTL", append(slices.Clone(tx), "~myapp:rate_limit:*", "+incr", "+pexpire"), "+pttl"},
		// Without MULTI the counter's commands would run, and write.
		{"no MULTI", append([]any{"+exec", "+discard"}, counter...), "+multi"},
		// Without DISCARD the connection would stay in the transaction.
		{"no DISCARD", append([]any{"+multi", "+exec"}, counter...), "+discard"},
		{"allowed", append(slices.Clone(tx), counter...), ""}, // last: it counts
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv.Do(t, "ACL", append(slices.Clone(base), tc.rules...)...)
			cfg := redisstore.Config{Username: "app", Password: "app-pw-3310", KeyPrefix: "myapp:", MaxActive: 1}
			s := open(t, srv, cfg)
			err := s.PingCounter(ctx)
			if n, _ := redis.Int(srv.Do(t, "DBSIZE"), nil); tc.want != "" && n != 0 {
				t.Errorf("DBSIZE = %d after a refused PingCounter, want 0", n)
			}
			// The one connection serves the next call as it should.
			if _, found, err := s.Load(ctx, "abc", 0); err != nil || found {
				t.Errorf("Load of a missing session after PingCounter = %v, %v; want not found", found, err)
			}
			if tc.want == "" {
				if _, _, countErr := s.CountRequests(ctx, []string{"k"}, []time.Duration{time.Minute}); err != nil || countErr != nil {
					t.Fatalf("PingCounter = %v, CountRequests = %v; want both nil", err, countErr)
				}
				return
			}
			if !errors.Is(err, redisstore.ErrRefused) || !strings.Contains(redisstore.Describe(err, cfg), tc.want) {
				t.Errorf("PingCounter = %v (Describe: %q), want ErrRefused naming %s", err, redisstore.Describe(err, cfg), tc.want)
			}
			if strings.HasPrefix(tc.name, "no MULTI") || strings.HasPrefix(tc.name, "no DISCARD") {
				// CountRequests needs no DISCARD, and without MULTI runs
				// its commands outside a transaction: PingCounter's
				// refusal is what counts.
				return
			}
			if _, _, countErr := s.CountRequests(ctx, []string{"k"}, []time.Duration{time.Minute}); !errors.Is(countErr, redisstore.ErrRefused) {
				t.Errorf("CountRequests = %v, want ErrRefused as PingCounter said", countErr)
			}
		})
	}
	if n, _ := redis.Int(srv.Do(t, "EXISTS", "myapp:rate_limit:"), nil); n != 0 {
		t.Error("PingCounter left its key in Redis")
	}
}

// TestPingCounterMissingCommand: on a server without PEXPIRE (renamed
// away, as a managed Redis that disables it does), or whose PEXPIRE
// refuses LT (as Redis 6.2 does: this one has STRLEN, which takes one
// argument, in its place), PingCounter must fail with ErrRefused naming
// the command, as every count would, and change nothing.
func TestPingCounterMissingCommand(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name, describe string
		rename         []string
	}{
		{"renamed away", "does not know PEXPIRE,", []string{"--rename-command", "PEXPIRE", ""}},
		{"refusing LT", "the server refuses PEXPIRE with LT: it is a Redis older than 7.0", []string{"--rename-command", "PEXPIRE", "", "--rename-command", "STRLEN", "PEXPIRE"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.Start(t, tc.rename...)
			cfg := redisstore.Config{Addr: srv.Addr()}
			s := open(t, srv, cfg)
			err := s.PingCounter(ctx)
			if d := redisstore.Describe(err, cfg); !errors.Is(err, redisstore.ErrRefused) || !strings.Contains(d, tc.describe) {
				t.Errorf("PingCounter = %v (Describe: %q), want ErrRefused described as %q", err, d, tc.describe)
			}
			if n, _ := redis.Int(srv.Do(t, "DBSIZE"), nil); n != 0 {
				t.Errorf("DBSIZE = %d after a refused PingCounter, want 0", n)
			}
			if _, _, err := s.CountRequests(ctx, []string{"k"}, []time.Duration{time.Minute}); !errors.Is(err, redisstore.ErrRefused) {
				t.Errorf("CountRequests = %v, want ErrRefused as PingCounter said", err)
			}
		})
	}
}

// TestCountRequestsBadInput checks that bad arguments are refused before
// anything is sent, and that a key holding another type is ErrRefused.
func TestCountRequestsBadInput(t *testing.T) {
	srv := redistest.Start(t)
	s, err := redisstore.Open(redisstore.Config{Addr: srv.Addr(), Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	many := make([]string, 17)
	manyWindows := make([]time.Duration, 17)
	for i := range many {
		many[i], manyWindows[i] = "k"+strings.Repeat("x", i), time.Minute
	}
	srv.ResetStats(t)
	for _, tc := range []struct {
		name    string
		keys    []string
		windows []time.Duration
	}{
		{"no keys", nil, nil},
		{"too many keys", many, manyWindows},
		{"lengths differ", []string{"a", "b"}, []time.Duration{time.Minute}},
		{"empty key", []string{""}, []time.Duration{time.Minute}},
		{"hash tag", []string{"{a}b"}, []time.Duration{time.Minute}},
		{"zero window", []string{"a"}, []time.Duration{0}},
		{"sub-millisecond window", []string{"a"}, []time.Duration{time.Microsecond}},
	} {
		if _, _, err := s.CountRequests(ctx, tc.keys, tc.windows); err == nil || !strings.HasPrefix(err.Error(), "redisstore: rate_limit: ") {
			t.Errorf("CountRequests(%s) = %v, want a redisstore: rate_limit: error", tc.name, err)
		}
	}
	if n := srv.TotalCalls(t); n != 0 {
		t.Errorf("bad calls sent %d commands, want none: %v", n, srv.Calls(t))
	}
	srv.Do(t, "SET", "rate_limit:str", "not a number")
	if _, _, err := s.CountRequests(ctx, []string{"str"}, []time.Duration{time.Minute}); !errors.Is(err, redisstore.ErrRefused) {
		t.Errorf("CountRequests on a non-integer value = %v, want ErrRefused", err)
	}
}

// TestCountRequestsCluster counts keys of different slots in one call on a
// Redis Cluster: each is counted on its own node.
func TestCountRequestsCluster(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterOptions{ReplicasPerMaster: -1})
	s, err := redisstore.Open(redisstore.Config{ClusterNodes: c.Addrs(), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	// Find keys in slots of at least two different masters.
	var keys []string
	owners := make(map[string]bool)
	for i := 0; len(owners) < 2 && i < 1000; i++ {
		k := "h" + strings.Repeat("y", i%7) + string(rune('a'+i%26)) + ":r"
		owner := c.MasterOf(t, redistest.Slot("rate_limit:"+k)).Addr()
		if !owners[owner] {
			owners[owner] = true
			keys = append(keys, k)
		}
	}
	if len(keys) < 2 {
		t.Fatal("no two keys on different masters")
	}
	windows := []time.Duration{time.Minute, time.Minute}
	for want := int64(1); want <= 2; want++ {
		counts, _, err := s.CountRequests(context.Background(), keys, windows)
		if err != nil {
			t.Fatal(err)
		}
		if counts[0] != want || counts[1] != want {
			t.Errorf("call %d: counts %v, want %d each", want, counts, want)
		}
	}
}

// TestPingCounterEvictionPolicy checks that PingCounter, which an app
// calls at start-up for a limiter's Redis of its own, warns of a Redis
// that may evict keys, as Ping does: a maxmemory-policy of volatile-*
// evicts counters, which have an expiry, and with them the limits they
// hold. Nothing for noeviction.
func TestPingCounterEvictionPolicy(t *testing.T) {
	const warning = "redisstore: Redis may evict rate-limit counters once full"
	for _, policy := range []string{"volatile-lru", "noeviction"} {
		t.Run(policy, func(t *testing.T) {
			srv := redistest.Start(t, "--maxmemory", "100mb", "--maxmemory-policy", policy)
			logs := new(syncbuf.Buffer)
			s := open(t, srv, redisstore.Config{Logger: slog.New(slog.NewTextHandler(logs, nil))})
			// Ping first, as the example does on one Store: its own
			// warning must not silence PingCounter's.
			if err := s.Ping(context.Background()); err != nil {
				t.Fatal(err)
			}
			if err := s.PingCounter(context.Background()); err != nil {
				t.Fatalf("PingCounter = %v, want nil: the policy is a warning, not a failure", err)
			}
			if got, want := strings.Contains(logs.String(), warning), policy != "noeviction"; got != want {
				t.Errorf("maxmemory-policy %s: warning logged %v, want %v; log:\n%s", policy, got, want, logs.String())
			}
			if keys, _ := redis.Strings(srv.Do(t, "KEYS", "*"), nil); len(keys) != 0 {
				t.Errorf("keys after PingCounter: %q, want none", keys)
			}
		})
	}
}
