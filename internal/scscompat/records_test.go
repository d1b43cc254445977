package scscompat_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	scsredis "github.com/alexedwards/scs/redisstore"
	"github.com/alexedwards/scs/v2"
	"github.com/gomodule/redigo/redis"

	"github.com/sessionkit/sessionkit/internal/redistest"
)

// TestSCSRecordsTake reads records written by scs's own redisstore, under
// its default prefix and a custom one, and checks that of concurrent Takes
// of one record exactly one gets it, and that it is gone afterwards.
func TestSCSRecordsTake(t *testing.T) {
	srv := redistest.Start(t)
	store := openStore(t, srv)
	pool := &redis.Pool{Dial: func() (redis.Conn, error) { return redis.Dial("tcp", srv.Addr()) }}
	defer pool.Close()
	rec, err := scs.GobCodec{}.Encode(time.Now().Add(time.Hour), map[string]any{"userID": "u1"})
	if err != nil {
		t.Fatal(err)
	}
	for prefix, scsStore := range map[string]*scsredis.RedisStore{
		"":       scsredis.New(pool),
		"myapp:": scsredis.NewWithPrefix(pool, "myapp:"),
	} {
		const token = "tok"
		if err := scsStore.Commit(token, rec, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		records := store.SCSRecords(prefix)
		var wg sync.WaitGroup
		var found atomic.Int32
		for range 8 {
			wg.Go(func() {
				b, ok, err := records.Take(context.Background(), token)
				if err != nil {
					t.Error(err)
				}
				if ok {
					found.Add(1)
					if string(b) != string(rec) {
						t.Errorf("prefix %q: record changed", prefix)
					}
				}
			})
		}
		wg.Wait()
		if n := found.Load(); n != 1 {
			t.Fatalf("prefix %q: %d Takes found the record, want 1", prefix, n)
		}
		if _, ok, _ := scsStore.Find(token); ok {
			t.Fatalf("prefix %q: record still there", prefix)
		}
	}
}
