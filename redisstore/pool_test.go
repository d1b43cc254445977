package redisstore_test

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/redisstore"
)

const idleConns = 8

// fillIdle leaves exactly idleConns idle connections in pool, each used once.
func fillIdle(t *testing.T, pool *redis.Pool) {
	t.Helper()
	conns := make([]redis.Conn, idleConns)
	for i := range conns {
		c, err := pool.GetContext(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := redis.DoContext(c, context.Background(), "GET", "session:warm"); err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	for _, c := range conns {
		c.Close()
	}
	if got := pool.Stats().IdleCount; got != idleConns {
		t.Fatalf("IdleCount = %d, want %d", got, idleConns)
	}
}

// callAll runs a Load per idle connection, sequentially then concurrently,
// and returns the errors.
func callAll(s *redisstore.Store) []error {
	var mu sync.Mutex
	var errs []error
	load := func(i int) {
		if _, _, err := s.Load(context.Background(), fmt.Sprint("id", i), time.Minute); err != nil {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
	}
	for i := range idleConns {
		load(i)
	}
	var wg sync.WaitGroup
	for i := range idleConns {
		wg.Go(func() { load(i) })
	}
	wg.Wait()
	return errs
}

// TestRestartNoErrors checks that after a Redis restart no call fails on a
// connection the old server closed.
func TestRestartNoErrors(t *testing.T) {
	if runtime.GOOS == "windows" || runtime.GOOS == "plan9" || runtime.GOOS == "js" || runtime.GOOS == "wasip1" {
		t.Skip("the idle-connection check is Unix-only")
	}
	srv := redistest.Start(t)
	pool, err := redisstore.NewPool(redisstore.Config{Addr: srv.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	s, err := redisstore.New(pool, redisstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range idleConns {
		if _, err := s.Insert(context.Background(), fmt.Sprint("id", i), []byte("rec"), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	fillIdle(t, pool)

	srv.Restart(t)
	srv.ResetStats(t)
	if errs := callAll(s); len(errs) != 0 {
		t.Fatalf("%d calls failed after a restart, want none; first: %v", len(errs), errs[0])
	}
	// The check sends nothing: the server saw only the loads.
	if got, want := srv.Calls(t), map[string]int64{"getex": 2 * idleConns}; got["getex"] != want["getex"] || len(got) != 1 {
		t.Fatalf("Calls = %v, want %v", got, want)
	}
}

// TestRestartWithoutCheck shows what TestRestartNoErrors guards against: the
// same pool without the liveness check fails once per stale connection.
func TestRestartWithoutCheck(t *testing.T) {
	srv := redistest.Start(t)
	pool, err := redisstore.NewPool(redisstore.Config{Addr: srv.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	pool.TestOnBorrow = nil
	s, err := redisstore.New(pool, redisstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fillIdle(t, pool)

	srv.Restart(t)
	if errs := callAll(s); len(errs) == 0 {
		t.Fatal("no call failed after a restart without the check; the test above proves nothing")
	}
}

// TestIdlePastReadDeadline checks that a pooled connection left idle past
// the read deadline of its last reply (the call's Timeout, here 150 ms) is
// lent again, not dialled anew: RawConn.Read refuses to run the liveness
// check past that deadline. And that a connection idle so long whose
// server restarted is still replaced without a failed call.
func TestIdlePastReadDeadline(t *testing.T) {
	if runtime.GOOS == "windows" || runtime.GOOS == "plan9" || runtime.GOOS == "js" || runtime.GOOS == "wasip1" {
		t.Skip("the idle-connection check is Unix-only")
	}
	const timeout, idle = 150 * time.Millisecond, 400 * time.Millisecond
	srv := redistest.Start(t)
	s, err := redisstore.Open(redisstore.Config{Addr: srv.Addr(), Timeout: timeout, ReadTimeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if _, err := s.Insert(ctx, "idle", []byte("rec"), time.Minute); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		time.Sleep(idle)
		if _, found, err := s.Load(ctx, "idle", 0); err != nil || !found {
			t.Fatalf("Load after %v idle = %v, %v", idle, found, err)
		}
	}
	if got := s.PoolStats().Dials; got != 1 {
		t.Errorf("%d dials for four calls on one goroutine, each after %v idle, with a Timeout of %v; want 1", got, idle, timeout)
	}

	srv.Restart(t)
	time.Sleep(idle)
	if _, err := s.Insert(ctx, "idle", []byte("rec"), time.Minute); err != nil {
		t.Fatalf("Insert on a connection idle past its read deadline, after a restart: %v", err)
	}
	if got := s.PoolStats().Dials; got != 2 {
		t.Errorf("%d dials after a restart, want 2", got)
	}
}

// TestDialUserWithoutPasswordStalled dials, as an ACL user without a
// password (AUTH user ""), a Redis that stops answering: the reply to AUTH
// is bounded by ReadTimeout, as every reply of a dial is. redigo's
// DoWithTimeout with 0 clears the read deadline: without that bound, a
// borrow without a deadline, and every dial of the Sentinel source to a
// sentinel (which authenticates so), would wait for ever.
func TestDialUserWithoutPasswordStalled(t *testing.T) {
	srv := redistest.Start(t)
	srv.Do(t, "ACL", "SETUSER", "app", "on", "nopass", "~*", "+@all")
	proxy := srv.Proxy(t)
	proxy.Stall()
	t.Cleanup(proxy.Heal)
	const readTimeout = 300 * time.Millisecond
	pool, err := redisstore.NewPool(redisstore.Config{Addr: proxy.Addr(), Username: "app", ReadTimeout: readTimeout})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		conn := pool.Get()
		defer conn.Close()
		_, err := conn.Do("PING")
		done <- err
	}()
	select {
	case err := <-done:
		took := time.Since(start)
		if err == nil || took > 2*time.Second {
			t.Errorf("a dial as a user without a password to a stalled Redis: %v after %v, want an error within about ReadTimeout (%v)", err, took.Round(time.Millisecond), readTimeout)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a dial as a user without a password to a stalled Redis still waits after 5s")
	}
	// A borrow with a deadline far off: ReadTimeout still bounds the
	// reply, as for the AUTH redigo sends with a password, rather than
	// the deadline's 4s.
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	start = time.Now()
	conn, err := pool.GetContext(ctx)
	if err == nil {
		conn.Close()
	}
	if took := time.Since(start); err == nil || took > 2*time.Second {
		t.Errorf("a dial with a 4s deadline as a user without a password to a stalled Redis: %v after %v, want an error within about ReadTimeout (%v)", err, took.Round(time.Millisecond), readTimeout)
	}
}
