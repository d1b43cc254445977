package redisstore

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/sessionkit/sessionkit/internal/redistest"
)

func TestOptimistic(t *testing.T) {
	errAttempt := errors.New("attempt failed")
	type result struct {
		retry bool
		err   error
	}
	tests := []struct {
		name         string
		results      []result // one per attempt; the last repeats
		want         error
		wantAttempts int // 0: more than one, until the budget runs out
	}{
		{"done", []result{{false, nil}}, nil, 1},
		{"error", []result{{false, errAttempt}}, errAttempt, 1},
		{"retried, then done", []result{{true, nil}, {true, nil}, {false, nil}}, nil, 3},
		{"retried, then error", []result{{true, nil}, {false, errAttempt}}, errAttempt, 2},
		{"always retried", []result{{true, nil}}, ErrContention, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			const budget = 50 * time.Millisecond
			ctx, cancel := context.WithTimeout(context.Background(), budget)
			defer cancel()
			attempts := 0
			start := time.Now()
			err := optimistic(ctx, func() (bool, error) {
				r := tc.results[min(attempts, len(tc.results)-1)]
				attempts++
				return r.retry, r.err
			})
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("optimistic(%s) = %v, want %v", tc.name, err, tc.want)
			}
			switch {
			case tc.wantAttempts == 0 && attempts < 2:
				t.Errorf("optimistic(%s) made %d attempts, want several", tc.name, attempts)
			case tc.wantAttempts > 0 && attempts != tc.wantAttempts:
				t.Errorf("optimistic(%s) made %d attempts, want %d", tc.name, attempts, tc.wantAttempts)
			}
			if took := time.Since(start); took > budget+time.Second {
				t.Errorf("optimistic(%s) took %v, want it bounded by the %v budget", tc.name, took, budget)
			}
		})
	}
}

// TestOptimisticCanceled checks that a context canceled without a deadline
// ends the retries with its error: the caller gave up, which is no
// contention.
func TestOptimisticCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	attempts := 0
	err := optimistic(ctx, func() (bool, error) {
		attempts++
		cancel()
		return true, nil
	})
	if !errors.Is(err, context.Canceled) || attempts != 1 {
		t.Fatalf("optimistic(canceled) = %v after %d attempts, want %v after 1", err, attempts, context.Canceled)
	}
}

func TestTurns(t *testing.T) {
	var tr turns
	ctx := context.Background()

	held, release, err := tr.take(ctx, "k")
	if err != nil {
		t.Fatalf("take(k) = %v, want nil", err)
	}
	// Another key does not wait.
	_, other, err := tr.take(ctx, "other")
	if err != nil {
		t.Fatalf("take(other) while k is taken = %v, want nil", err)
	}
	other()

	// The same key waits, for as long as the context allows: behind a call
	// that loses no race while it waits (stuck on Redis, say) it gives up
	// with the deadline, an outage; behind one that loses races meanwhile,
	// with ErrContention.
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, _, err := tr.take(short, "k"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("take(k) while k is taken by a call that lost no race = %v, want %v", err, context.DeadlineExceeded)
	}
	waited := func(d time.Duration, during func()) error {
		short, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		errc := make(chan error, 1)
		go func() { _, _, err := tr.take(short, "k"); errc <- err }()
		waitRefs(t, &tr, "k", 2)
		during()
		return <-errc
	}
	if err := waited(200*time.Millisecond, func() { noteRace(held) }); !errors.Is(err, ErrContention) {
		t.Fatalf("take(k) while k is taken by a call that lost a race = %v, want %v", err, ErrContention)
	}
	if n := refsOf(&tr, "k"); n != 1 {
		t.Fatalf("refs(k) after the waiters gave up = %d, want 1", n)
	}

	// A waiter gets the turn when it is released.
	got := make(chan error, 1)
	go func() {
		_, r, err := tr.take(ctx, "k")
		if err == nil {
			r()
		}
		got <- err
	}()
	waitRefs(t, &tr, "k", 2)
	release()
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("take(k) after release = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("take(k) did not get the turn after release")
	}

	tr.mu.Lock()
	n := len(tr.keys)
	tr.mu.Unlock()
	if n != 0 {
		t.Fatalf("turns holds %d keys after every turn ended, want 0", n)
	}
}

// TestOutageIsNotContention makes calls of one Store queue for the same
// key while Redis is paused: every one fails as an outage, and none of
// those queued behind the first reports ErrContention, "concurrent
// writers kept changing the keys", on a Redis that nobody writes to.
func TestOutageIsNotContention(t *testing.T) {
	srv := redistest.Start(t)
	s, err := Open(Config{Addr: srv.Addr(), Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	if err := s.Ping(ctx); err != nil { // a pooled connection, so that calls do not fail dialing
		t.Fatal(err)
	}
	srv.Pause(t)
	defer srv.Resume(t)
	const n = 6
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, errs[i] = s.Merge(ctx, "ZZ-queued-id", time.Minute, func(b []byte) ([]byte, error) { return b, nil })
		})
	}
	wg.Wait()
	for i, err := range errs {
		if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrContention) {
			t.Errorf("call %d of %d queued on one key while Redis is paused: %v, want ErrUnavailable", i, n, err)
		}
	}
}

// TestTurnsRaceBeforeHandover queues C behind B behind A: A loses races
// while C waits, then hands the turn to B, and C times out behind B. C
// reports contention, which is what it waited on, not an outage: the turn
// keeps whether any holder lost a race while C waited, not only its
// current holder.
func TestTurnsRaceBeforeHandover(t *testing.T) {
	// refs tells when B has joined the queue, not when it blocks on the
	// turn: if C blocked first, it got the turn before B (and gave it up at
	// once, so that nothing hangs): then run it again.
	for try := 1; ; try++ {
		err := raceBeforeHandover(t)
		if err != nil || try == 5 {
			if !errors.Is(err, ErrContention) {
				t.Fatalf("C timed out behind A, which lost a race, and B: %v, want %v", err, ErrContention)
			}
			return
		}
		t.Logf("try %d: C got the turn before B, which queued first: trying again", try)
	}
}

// raceBeforeHandover runs TestTurnsRaceBeforeHandover once and returns
// what C's take returned: nil if C got the turn before B.
func raceBeforeHandover(t *testing.T) error {
	t.Helper()
	var tr turns
	ctxA, releaseA, err := tr.take(context.Background(), "k")
	if err != nil {
		t.Fatal(err)
	}
	bTook := make(chan func(), 1)
	go func() {
		_, releaseB, err := tr.take(context.Background(), "k")
		if err != nil {
			t.Error(err)
		}
		bTook <- releaseB
	}()
	waitRefs(t, &tr, "k", 2) // B queues first, so that the turn goes to B, not C
	// C's deadline passes when the test says, once B holds the turn, so
	// that a busy machine cannot make it pass before the race is noted.
	ctxC := newDeadlineCtx()
	cDone := make(chan error, 1)
	go func() {
		_, releaseC, err := tr.take(ctxC, "k")
		if err == nil {
			releaseC()
		}
		cDone <- err
	}()
	waitRefs(t, &tr, "k", 3)
	noteRace(ctxA) // A loses a race while C waits
	releaseA()
	releaseB := <-bTook
	ctxC.expire()
	err = <-cDone
	releaseB()
	return err
}

// deadlineCtx is a context whose deadline passes when expire is called: it
// is then done with context.DeadlineExceeded, as on a real deadline.
type deadlineCtx struct {
	context.Context
	done chan struct{}
}

func newDeadlineCtx() *deadlineCtx {
	return &deadlineCtx{Context: context.Background(), done: make(chan struct{})}
}

func (c *deadlineCtx) Done() <-chan struct{} { return c.done }

func (c *deadlineCtx) Err() error {
	select {
	case <-c.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

func (c *deadlineCtx) expire() { close(c.done) }

// refsOf returns how many calls hold or wait for the turn of key in tr.
func refsOf(tr *turns, key string) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tn := tr.keys[key]; tn != nil {
		return tn.refs
	}
	return 0
}

// waitRefs waits, for 5s at most, until n calls hold or wait for the turn
// of key in tr.
func waitRefs(t *testing.T, tr *turns, key string, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); refsOf(tr, key) < n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d calls hold or wait for the turn of %s, want %d", refsOf(tr, key), key, n)
		}
	}
}

// TestAbandonedCallReturnsInTime runs a call whose deadline passes after
// it queued commands and before it sent them, on a Redis that stalls: it
// returns within its Timeout, not after the connection's ReadTimeout, for
// which the pool's Close would wait on the replies of the commands it
// sends then (a rate limit would answer after its Timeout plus its
// ReadTimeout). The connection is not lent again.
func TestAbandonedCallReturnsInTime(t *testing.T) {
	srv := redistest.Start(t)
	proxy := srv.Proxy(t)
	const timeout = 200 * time.Millisecond
	s, err := Open(Config{Addr: proxy.Addr(), Timeout: timeout, ReadTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	if _, _, err := s.Load(ctx, "k", 0); err != nil { // a pooled connection
		t.Fatal(err)
	}
	proxy.Stall()
	start := time.Now()
	err = s.do(ctx, "test", "k", func(ctx context.Context, conn redis.Conn) error {
		conn.Send("MULTI")
		conn.Send("GET", "k")
		<-ctx.Done() // the deadline passes before anything is sent
		_, err := cmd(ctx, conn, "EXEC")
		return err
	})
	took := time.Since(start)
	proxy.Heal()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("the call = %v, want the deadline exceeded", err)
	}
	if took > timeout+time.Second {
		t.Errorf("the call returned after %v, want within its %v Timeout", took.Round(time.Millisecond), timeout)
	}
	// The next call gets a connection of its own, not the abandoned one
	// with its queued commands' replies to come.
	if _, _, err := s.Load(ctx, "k", 0); err != nil {
		t.Errorf("Load after the abandoned call: %v", err)
	}
}
