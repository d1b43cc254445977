package redisstore

import (
	"context"
	"errors"
	"testing"

	"github.com/gomodule/redigo/redis"

	"github.com/sessionkit/sessionkit/internal/redistest"
)

// endingSource ends the call's context as the call borrows from the pool,
// as a timeout that expires between getConn's check of the context and
// the pool's wait for a free connection would.
type endingSource struct {
	*redis.Pool
	end context.CancelFunc
}

func (s *endingSource) GetContext(ctx context.Context) (redis.Conn, error) {
	s.end()
	return s.Pool.GetContext(ctx)
}

// TestCallEndingAfterClose: a call on a closed Store whose context ends
// as it borrows fails with an error, and does not take the process down:
// redigo's Pool.GetContext, given an ended context and a closed pool,
// panics (send on closed channel) half the time, which getConn recovers
// from once the Store is closed. 50 calls, all of which must fail.
func TestCallEndingAfterClose(t *testing.T) {
	srv := redistest.Start(t)
	pool, err := NewPool(Config{Addr: srv.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	src := &endingSource{Pool: pool, end: func() {}}
	s, err := New(src, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Load(context.Background(), "a", 0); err != nil {
		t.Fatal(err)
	}
	s.Close()
	for range 50 {
		ctx, cancel := context.WithCancel(context.Background())
		src.end = cancel
		if _, _, err := s.Load(ctx, "a", 0); !errors.Is(err, ErrUnavailable) && !errors.Is(err, context.Canceled) {
			t.Fatalf("Load after Close, its context ending as it borrows = %v, want ErrUnavailable or context.Canceled", err)
		}
	}
}
