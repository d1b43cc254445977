package redisstore_test

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/internal/syncbuf"
	"github.com/sessionkit/sessionkit/redisstore"
)

// nearCacheACL are the rules the package documentation says the near-cache
// adds to its ACL SETUSER example.
var nearCacheACL = []string{"+client|id", "+client|tracking", "+subscribe", "+pttl", "&__redis__:invalidate"}

// TestNearCacheACL runs the near-cache as an ACL user with exactly the
// documented commands and channel: it connects, serves from memory, sees a
// deletion, and nothing is denied. Without +client|tracking it never
// connects, and every Load is still answered from Redis.
func TestNearCacheACL(t *testing.T) {
	srv := redistest.Start(t)
	servers := []*redistest.Server{srv}
	ctx := context.Background()
	open := func(t *testing.T) *redisstore.Store {
		t.Helper()
		s, err := redisstore.Open(redisstore.Config{
			Addr: srv.Addr(), Username: aclModesDataUser, Password: aclModesUserPassword,
			NearCache: redisstore.NearCache{MaxEntries: 10},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	srv.Do(t, "SET", "session:a", "v1", "PX", 600000)

	t.Run("documented", func(t *testing.T) {
		aclModesSetUser(t, servers, aclModesDataUser, append(aclCommands(t), nearCacheACL...))
		s := open(t)
		deadline := time.Now().Add(10 * time.Second)
		for s.NearCacheStats().Hits == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("no hit within 10s: %+v", s.NearCacheStats())
			}
			if _, found, err := s.Load(ctx, "a", 0); err != nil || !found {
				t.Fatalf("Load = %v, %v", found, err)
			}
			time.Sleep(time.Millisecond)
		}
		srv.Do(t, "DEL", "session:a")
		deadline = time.Now().Add(10 * time.Second)
		for {
			if _, found, err := s.Load(ctx, "a", 0); err != nil || !found {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("deletion never seen")
			}
		}
		aclModesNoDenials(t, "near-cache", servers)
	})

	// Without +pttl, every read for the cache would be refused: the
	// near-cache stays off, and Loads, with an idle timeout too, are
	// answered from Redis.
	t.Run("without pttl", func(t *testing.T) {
		srv.Do(t, "SET", "session:a", "v1", "PX", 600000)
		rules := nearCacheRulesWithout(t, "+pttl")
		aclModesSetUser(t, servers, aclModesDataUser, rules)
		s := open(t)
		for range 50 {
			if _, found, err := s.Load(ctx, "a", time.Minute); err != nil || !found {
				t.Fatalf("Load = %v, %v", found, err)
			}
			time.Sleep(time.Millisecond)
		}
		if st := s.NearCacheStats(); st.Connected || st.Hits != 0 {
			t.Errorf("stats %+v without +pttl, want not connected and no hits", st)
		}
	})

	// An ACL that loses +pttl once the near-cache is connected: reads go
	// on, from Redis, and the near-cache turns itself off.
	t.Run("pttl revoked", func(t *testing.T) {
		srv.Do(t, "SET", "session:a", "v1", "PX", 600000)
		rules := append(aclCommands(t), nearCacheACL...)
		aclModesSetUser(t, servers, aclModesDataUser, rules)
		s := open(t)
		deadline := time.Now().Add(10 * time.Second)
		for !s.NearCacheStats().Connected {
			if time.Now().After(deadline) {
				t.Fatalf("not connected within 10s: %+v", s.NearCacheStats())
			}
			time.Sleep(time.Millisecond)
		}
		srv.Do(t, "ACL", "SETUSER", aclModesDataUser, "-pttl")
		srv.Do(t, "SET", "session:a", "v2", "PX", 600000)
		for range 50 {
			if b, found, err := s.Load(ctx, "a", time.Minute); err != nil || !found {
				t.Fatalf("Load = %q, %v, %v", b, found, err)
			}
			time.Sleep(time.Millisecond)
		}
		deadline = time.Now().Add(10 * time.Second)
		for s.NearCacheStats().Connected {
			if time.Now().After(deadline) {
				t.Fatalf("still connected 10s after PTTL was refused: %+v", s.NearCacheStats())
			}
			time.Sleep(time.Millisecond)
		}
	})

	// An ACL that allows PTTL on the connection's check (a key of a
	// session's form) but not on the sessions: every read for the cache is
	// refused, and each would close the connection, which the check then
	// lets up again. It reconnects once per 10 seconds at most, with a
	// warning.
	t.Run("pttl allowed on the check's key only", func(t *testing.T) {
		srv.Do(t, "SET", "session:a", "v1", "PX", 600000)
		rules := nearCacheRulesWithout(t, "+pttl")
		aclModesSetUser(t, servers, aclModesDataUser, append(rules, "(+pttl ~session:x)"))
		logs := new(syncbuf.Buffer)
		s, err := redisstore.Open(redisstore.Config{
			Addr: srv.Addr(), Username: aclModesDataUser, Password: aclModesUserPassword,
			NearCache: redisstore.NearCache{MaxEntries: 10}, Logger: slog.New(slog.NewTextHandler(logs, nil)),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		deadline := time.Now().Add(10 * time.Second)
		for !s.NearCacheStats().Connected {
			if time.Now().After(deadline) {
				t.Fatalf("not connected within 10s: %+v\n%s", s.NearCacheStats(), logs)
			}
			time.Sleep(time.Millisecond)
		}
		before := infoInt(t, srv, "stats", "total_connections_received")
		for range 100 {
			if _, found, err := s.Load(ctx, "a", time.Minute); err != nil || !found {
				t.Fatalf("Load = %v, %v", found, err)
			}
			time.Sleep(5 * time.Millisecond)
		}
		if n := infoInt(t, srv, "stats", "total_connections_received") - before; n > 5 {
			t.Errorf("%d connections in 100 reads whose PTTL was refused, want a reconnect once per 10s at most", n)
		}
		if n := strings.Count(logs.String(), "refused a read for the cache"); n != 1 {
			t.Errorf("%d warnings of a refused read, want 1:\n%s", n, logs)
		}
	})

	t.Run("without tracking", func(t *testing.T) {
		srv.Do(t, "SET", "session:a", "v1", "PX", 600000)
		rules := nearCacheRulesWithout(t, "+client|tracking")
		aclModesSetUser(t, servers, aclModesDataUser, rules)
		s := open(t)
		for range 50 {
			if _, found, err := s.Load(ctx, "a", 0); err != nil || !found {
				t.Fatalf("Load = %v, %v", found, err)
			}
			time.Sleep(time.Millisecond)
		}
		if st := s.NearCacheStats(); st.Connected || st.Hits != 0 {
			t.Errorf("stats %+v without +client|tracking, want not connected and no hits", st)
		}
	})
}

// nearCacheRulesWithout returns the documented ACL line with the
// near-cache's additions, but for rule.
func nearCacheRulesWithout(t *testing.T, rule string) []string {
	t.Helper()
	return slices.DeleteFunc(append(aclCommands(t), nearCacheACL...), func(r string) bool { return r == rule })
}
