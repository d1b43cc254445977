package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/redisstore"
)

// TestRemoveUserSessionsUnderLoginFlood logs one user in without a limit,
// through another Store, as fast as it goes while RemoveUserSessions runs:
// every attempt to remove in one transaction then finds the index changed.
// It still succeeds, and ends every session that existed when it started.
func TestRemoveUserSessionsUnderLoginFlood(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv, redisstore.Config{Timeout: 2 * time.Second})
	flooder := open(t, srv, redisstore.Config{Timeout: 2 * time.Second})
	ctx := context.Background()
	deadline := time.Now().Add(time.Hour)
	add := func(st *redisstore.Store, id string) error {
		_, err := st.AddUserSession(ctx, redisstore.UserSession{
			UserID: "alice", ID: id, Record: []byte("rec"), TTL: time.Hour, Deadline: deadline,
		})
		return err
	}
	var before []string
	for i := range 5 {
		id := fmt.Sprintf("before-%d", i)
		if err := add(s, id); err != nil {
			t.Fatal(err)
		}
		before = append(before, id)
	}

	stop := make(chan struct{})
	var logins atomic.Int64
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20_000 { // bounded; stopped much earlier
				select {
				case <-stop:
					return
				default:
				}
				if err := add(flooder, fmt.Sprintf("flood-%d-%d", w, i)); err != nil {
					t.Error(err)
					return
				}
				logins.Add(1)
			}
		}()
	}
	for logins.Load() < 200 { // the flood is under way
		time.Sleep(time.Millisecond)
	}
	removed, err := s.RemoveUserSessions(ctx, "alice", "")
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("RemoveUserSessions during a login flood = %v, want nil", err)
	}
	for _, id := range before {
		if !slices.Contains(removed, id) {
			t.Errorf("RemoveUserSessions = %d ids without %s, which existed before it started", len(removed), id)
		}
		if n, _ := srv.Do(t, "EXISTS", "session:"+id).(int64); n != 0 {
			t.Errorf("session %s survived RemoveUserSessions", id)
		}
	}
}

// TestRemoveUserSessionsUnderMoveStorm moves one session from id to id back
// to back through two Stores, as two app instances renewing it as fast as
// its browser asks, while a third runs RemoveUserSessions, keeping none or
// another session: each move changes the index, so the watched attempts
// fail and the call sweeps. A move that lands between a pass's read of the
// index and its deletes takes the session out of the pass's reach; whenever
// the call returns no error, the session must still have no record left
// under any id. Against such a storm it may return ErrContention instead.
func TestRemoveUserSessionsUnderMoveStorm(t *testing.T) {
	srv := redistest.Start(t)
	movers := []*redisstore.Store{open(t, srv, redisstore.Config{}), open(t, srv, redisstore.Config{})}
	admin := open(t, srv, redisstore.Config{Timeout: 500 * time.Millisecond})
	ctx := context.Background()
	deadline := time.Now().Add(time.Hour)
	merge := func(current []byte) ([]byte, error) { return current, nil }
	// sweepAfter is how many watched attempts RemoveUserSessions makes
	// before it sweeps, each with one ZRANGE: a call with more swept. The
	// rounds go on until sweeps of them have swept, as many as the machine
	// allows within maxRounds: a move slips between a pass's read and its
	// deletes in about one swept round of six.
	const sweeps, maxRounds, sweepAfter = 25, 400, 5

	for _, keep := range []string{"", "kept"} {
		t.Run("keep="+keep, func(t *testing.T) {
			want := map[string]string{}
			if keep != "" {
				want[keep] = "rec"
			}
			swept, contended, round := 0, 0, 0
			for ; swept < sweeps && round < maxRounds; round++ {
				srv.Do(t, "FLUSHALL")
				first := fmt.Sprintf("r%d-0", round)
				adds := []redisstore.UserSession{{UserID: "alice", ID: first, Record: []byte("rec"), TTL: time.Minute, Deadline: deadline}}
				if keep != "" {
					adds = append(adds, redisstore.UserSession{UserID: "alice", ID: keep, Record: []byte("rec"), TTL: time.Minute, Deadline: deadline})
				}
				addAll(t, movers[0], adds...)
				var current atomic.Value // the moved session's id, as last moved
				current.Store(first)
				var moves atomic.Int64
				stop := make(chan struct{})
				var wg sync.WaitGroup
				for _, s := range movers {
					wg.Go(func() {
						for range 100_000 { // bounded; stopped much earlier
							select {
							case <-stop:
								return
							default:
							}
							from := current.Load().(string)
							to := fmt.Sprintf("r%d-%d", round, moves.Add(1))
							moved, err := s.MoveSession(ctx, redisstore.Move{UserID: "alice", From: from, To: to, TTL: time.Minute, Deadline: deadline, Merge: merge})
							if err != nil && !errors.Is(err, redisstore.ErrContention) {
								t.Errorf("round %d: MoveSession = %v", round, err)
								return
							}
							if moved {
								current.CompareAndSwap(from, to)
							}
						}
					})
				}
				for moves.Load() < 4 { // the storm is under way
					time.Sleep(100 * time.Microsecond)
				}
				srv.ResetStats(t)
				removed, err := admin.RemoveUserSessions(ctx, "alice", keep)
				zranges := srv.Calls(t)["zrange"]
				close(stop)
				wg.Wait()
				if zranges > sweepAfter {
					swept++
				}
				switch {
				case errors.Is(err, redisstore.ErrContention):
					contended++
				case err != nil:
					t.Fatalf("round %d: RemoveUserSessions(alice, %q) under a move storm = %v, want nil or ErrContention", round, keep, err)
				default:
					if got := records(t, srv); !maps.Equal(got, want) {
						t.Errorf("round %d: RemoveUserSessions(alice, %q) = %q, nil, with records left %v, want %v", round, keep, removed, got, want)
					}
				}
			}
			t.Logf("%d of %d rounds swept, %d returned ErrContention", swept, round, contended)
			if swept == 0 {
				t.Fatalf("none of %d rounds swept: the storm never made RemoveUserSessions sweep", round)
			}
		})
	}
}
