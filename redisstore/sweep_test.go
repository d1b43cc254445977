package redisstore_test

import (
	"context"
	"fmt"
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
