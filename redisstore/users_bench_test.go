package redisstore_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/redisstore"
)

// BenchmarkUserSessions lists the sessions of a user who has 10, with 0 and
// then 100,000 other sessions in the same Redis: the time must not grow
// with the others, since listing reads the user's index, never the key
// space.
func BenchmarkUserSessions(b *testing.B) {
	srv := redistest.Start(b)
	s, err := redisstore.Open(redisstore.Config{Addr: srv.Addr()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	ctx := context.Background()
	deadline := time.Now().Add(time.Hour)
	for i := range 10 {
		if _, err := s.AddUserSession(ctx, redisstore.UserSession{
			UserID: "alice", ID: fmt.Sprintf("alice-%02d", i), Record: []byte(`{"v":1}`), TTL: time.Hour, Deadline: deadline,
		}); err != nil {
			b.Fatal(err)
		}
	}
	others := 0
	for _, n := range []int{0, 100_000} {
		fill(b, srv, others, n)
		others = n
		b.Run(fmt.Sprintf("others=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ids, _, err := s.UserSessions(ctx, "alice")
				if err != nil || len(ids) != 10 {
					b.Fatalf("UserSessions = %d ids, %v; want 10", len(ids), err)
				}
			}
		})
	}
}

// fill adds sessions of other users, numbered from to to, in pipelined
// batches.
func fill(b *testing.B, srv *redistest.Server, from, to int) {
	b.Helper()
	if from >= to {
		return
	}
	conn, err := redis.Dial("tcp", srv.Addr())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	for i := from; i < to; i++ {
		conn.Send("SET", fmt.Sprintf("session:other-%d", i), `{"v":1}`, "PX", 3_600_000)
		if (i+1)%1000 == 0 || i == to-1 {
			if err := conn.Flush(); err != nil {
				b.Fatal(err)
			}
			for range (i % 1000) + 1 {
				if _, err := conn.Receive(); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	if n, _ := redis.Int(conn.Do("DBSIZE")); n < to {
		b.Fatalf("DBSIZE = %d after filling %d", n, to)
	}
}

// BenchmarkHeavyUser measures what one user with 100,000 sessions costs
// (the figures of docs/scaling.md): a login that adds one more, without
// and with a session limit (which reads the whole index and checks every
// record), listing them all, and the memory of the index. On a Redis
// Cluster all of them live in the user's one slot, so on one node.
func BenchmarkHeavyUser(b *testing.B) {
	const sessions = 100_000
	srv := redistest.Start(b)
	s, err := redisstore.Open(redisstore.Config{Addr: srv.Addr(), Timeout: 10 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	ctx := context.Background()
	deadline := time.Now().Add(time.Hour)
	record := bytes.Repeat([]byte("r"), 327) // a record's size, see docs/benchmarks.md
	conn, err := redis.Dial("tcp", srv.Addr())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	for i := range sessions {
		id := fmt.Sprintf("heavy-%06d", i)
		conn.Send("SET", "session:"+id, record, "PX", 3_600_000)
		conn.Send("ZADD", "user:heavy:sessions", deadline.UnixMilli(), id)
		if (i+1)%1000 == 0 {
			if _, err := conn.Do(""); err != nil {
				b.Fatal(err)
			}
		}
	}
	mem, err := redis.Int64(conn.Do("MEMORY", "USAGE", "user:heavy:sessions", "SAMPLES", 0))
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	add := func(limit int) {
		n++
		if _, err := s.AddUserSession(ctx, redisstore.UserSession{
			UserID: "heavy", ID: fmt.Sprintf("new-%d", n), Record: record, TTL: time.Hour,
			Deadline: deadline, Limit: limit,
		}); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("login", func(b *testing.B) {
		for b.Loop() {
			add(0)
		}
	})
	b.Run("login-limit", func(b *testing.B) {
		for b.Loop() {
			add(1_000_000) // above the count: checks all, revokes none
		}
	})
	b.Run("list", func(b *testing.B) {
		for b.Loop() {
			ids, _, err := s.UserSessions(ctx, "heavy")
			if err != nil || len(ids) < sessions {
				b.Fatalf("UserSessions = %d ids, %v", len(ids), err)
			}
		}
		b.ReportMetric(float64(mem), "index-B") // MEMORY USAGE of the index
	})
}
