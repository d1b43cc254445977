package redisstore_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/redisstore"
)

// observed is one call reported to an Observer.
type observed struct {
	op  string
	err error
}

// recorder is an Observer that keeps what it is told.
type recorder struct {
	mu    sync.Mutex
	calls []observed
}

func (r *recorder) ObserveCall(op string, took time.Duration, err error) {
	if took <= 0 {
		panic("ObserveCall with a duration of " + took.String())
	}
	r.mu.Lock()
	r.calls = append(r.calls, observed{op, err})
	r.mu.Unlock()
}

func (r *recorder) take() []observed {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.calls
	r.calls = nil
	return c
}

// TestObserver checks that every call reaches the Observer once, under its
// op, with an error of the right class.
func TestObserver(t *testing.T) {
	srv := redistest.Start(t)
	rec := &recorder{}
	s := open(t, srv, redisstore.Config{Observer: rec, Timeout: 300 * time.Millisecond})
	ctx := context.Background()
	deadline := time.Now().Add(time.Hour)
	steps := []struct {
		op   string
		call func() error
	}{
		{"insert", func() error { _, err := s.Insert(ctx, "a", []byte("v"), time.Minute); return err }},
		{"load", func() error { _, _, err := s.Load(ctx, "a", time.Minute); return err }},
		{"update", func() error { _, err := s.Update(ctx, "a", []byte("w"), time.Minute); return err }},
		{"merge", func() error {
			_, err := s.Merge(ctx, "a", time.Minute, func(b []byte) ([]byte, error) { return b, nil })
			return err
		}},
		{"add_user_session", func() error {
			_, err := s.AddUserSession(ctx, redisstore.UserSession{UserID: "u", ID: "b", Record: []byte("r"), TTL: time.Minute, Deadline: deadline})
			return err
		}},
		{"move_session", func() error {
			_, err := s.MoveSession(ctx, redisstore.Move{UserID: "u", From: "b", To: "c", TTL: time.Minute, Deadline: deadline,
				Merge: func(b []byte) ([]byte, error) { return b, nil }})
			return err
		}},
		{"user_sessions", func() error { _, _, err := s.UserSessions(ctx, "u"); return err }},
		{"remove_user_session", func() error { _, err := s.RemoveUserSession(ctx, "u", "c"); return err }},
		{"remove_user_sessions", func() error { _, err := s.RemoveUserSessions(ctx, "u", ""); return err }},
		{"remove", func() error { return s.Remove(ctx, "a") }},
		{"ping", func() error { return s.Ping(ctx) }},
		{"iterate", func() error { return s.Iterate(ctx, func(string, []byte) error { return nil }) }},
	}
	for _, st := range steps {
		if err := st.call(); err != nil {
			t.Fatalf("%s: %v", st.op, err)
		}
		if got := rec.take(); len(got) != 1 || got[0].op != st.op || got[0].err != nil {
			t.Errorf("%s reported %v, want one %s without error", st.op, got, st.op)
		}
	}
	srv.Stop(t)
	if _, _, err := s.Load(ctx, "a", 0); !errors.Is(err, redisstore.ErrUnavailable) {
		t.Fatalf("Load with Redis down = %v", err)
	}
	if got := rec.take(); len(got) != 1 || got[0].op != "load" || !errors.Is(got[0].err, redisstore.ErrUnavailable) {
		t.Errorf("a failed load reported %v, want one load with ErrUnavailable", got)
	}
}

// TestPoolStats checks the dial counts and the exhaustion a readiness probe
// looks at.
func TestPoolStats(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv, redisstore.Config{MaxActive: 1, Timeout: 2 * time.Second})
	ctx := context.Background()
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if ps := s.PoolStats(); ps.Dials != 1 || ps.DialErrors != 0 || ps.Active != 1 || ps.Idle != 1 || ps.MaxActive != 1 || ps.Exhausted() {
		t.Errorf("after one call: %+v", ps)
	}
	// A merge holds the only connection while its function runs.
	if _, err := s.Insert(ctx, "a", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	// hold has a merge hold the only connection while during runs.
	hold := func(during func()) {
		t.Helper()
		holding, release := make(chan struct{}), make(chan struct{})
		done := make(chan error)
		go func() {
			_, err := s.Merge(ctx, "a", time.Minute, func(b []byte) ([]byte, error) {
				close(holding)
				<-release
				return b, nil
			})
			done <- err
		}()
		<-holding
		during()
		close(release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	hold(func() {
		if ps := s.PoolStats(); !ps.Exhausted() {
			t.Errorf("with the only connection in use: %+v, want Exhausted", ps)
		}
		short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		if err := s.Ping(short); !errors.Is(err, redisstore.ErrUnavailable) {
			t.Errorf("Ping on an exhausted pool = %v, want ErrUnavailable", err)
		}
	})
	// A call that waits, then gets the connection back, counts as a wait.
	// redigo counts a wait once it ends, so nothing tells that the Ping
	// waits before the merge lets go; one scheduled only after that waits
	// for nothing, and then the hold is made again, up to 5 times.
	for try := 1; try <= 5 && s.PoolStats().Waits < 1; try++ {
		pinged := make(chan error, 1)
		hold(func() {
			go func() { pinged <- s.Ping(ctx) }()
			time.Sleep(time.Duration(try) * 50 * time.Millisecond)
		})
		if err := <-pinged; err != nil {
			t.Fatal(err)
		}
	}
	if ps := s.PoolStats(); ps.Waits < 1 || ps.WaitTime <= 0 {
		t.Errorf("after a call waited: %+v, want Waits >= 1", ps)
	}
	srv.Stop(t)
	s.Ping(ctx) // the idle connection is found closed, and the dial fails
	if ps := s.PoolStats(); ps.Dials < 2 || ps.DialErrors < 1 {
		t.Errorf("after a failed dial: %+v, want another dial, failed", ps)
	}
}

// TestPoolStatsNearCacheDial: with Open, the near-cache's own connection
// counts in Dials (it is dialled like the pool's) but not in Active, which
// counts pooled connections: Dials 1, Active 0 before any call, as
// PoolStats documents.
func TestPoolStatsNearCacheDial(t *testing.T) {
	srv := redistest.Start(t)
	s, err := redisstore.Open(redisstore.Config{Addr: srv.Addr(), NearCache: redisstore.NearCache{MaxEntries: 10}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for deadline := time.Now().Add(10 * time.Second); !s.NearCacheStats().Connected; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("near-cache not connected within 10s: %+v", s.NearCacheStats())
		}
	}
	if ps := s.PoolStats(); ps.Dials != 1 || ps.DialErrors != 0 || ps.Active != 0 {
		t.Errorf("PoolStats = %+v, want Dials 1 (the near-cache's), DialErrors 0, Active 0", ps)
	}
}
