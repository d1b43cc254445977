package redisstore

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Backoff between the attempts of an optimistic transaction.
const (
	minBackoff = time.Millisecond
	maxBackoff = 32 * time.Millisecond
)

// optimistic runs attempt, one try of an optimistic transaction (WATCH,
// read, then MULTI/EXEC), until it reports that it is done or fails. Each
// time a watched key changed before EXEC (retry), it waits a random time up
// to a bound that doubles from minBackoff to maxBackoff, so that writers
// racing for the same keys spread out instead of colliding again, and tries
// again for as long as the deadline of ctx leaves time for one more wait and
// attempt. Then it gives up with ErrContention: a contended call fails as
// contention, not as a timeout that looks like an outage.
func optimistic(ctx context.Context, attempt func() (retry bool, err error)) error {
	var b backoff
	for tries := 0; ; tries++ {
		start := time.Now()
		retry, err := attempt()
		if err != nil && tries > 0 && errors.Is(contextError(ctx), context.DeadlineExceeded) {
			// The deadline cut short an attempt that only ran because the
			// earlier ones lost to other writers.
			return ErrContention
		}
		if err != nil || !retry {
			return err
		}
		noteRace(ctx)
		if !b.wait(ctx, time.Since(start)) {
			if errors.Is(ctx.Err(), context.Canceled) {
				return ctx.Err() // the caller gave up: no contention to report
			}
			return ErrContention
		}
	}
}

// errSwitched ends an optimistic transaction of a Store under Sentinel
// whose sentinels named another master after its first attempt: its
// connection goes to the former master, where a write is lost once it is
// demoted. Each attempt before lost its EXEC to another writer, so nothing
// of the call ran, and run tries it again on a connection to the new
// master.
var errSwitched = errors.New("the sentinels named another master during the transaction")

// optimistic is the package's optimistic for a call of s. Under Sentinel
// it also stops, with errSwitched, before an attempt that would run after
// the sentinels named another master: a call that keeps losing to other
// writers would otherwise go on retrying on the connection it borrowed
// before the switch, which only a new borrow retires.
func (s *Store) optimistic(ctx context.Context, attempt func() (retry bool, err error)) error {
	src, ok := s.src.(*sentinelSource)
	if !ok {
		return optimistic(ctx, attempt)
	}
	gen := src.generation()
	return optimistic(ctx, func() (bool, error) {
		if src.generation() != gen {
			return false, errSwitched
		}
		return attempt()
	})
}

// backoff spaces the attempts of a call that must try again: before each
// new attempt it waits a random time up to a bound that doubles from
// minBackoff to maxBackoff, so that callers racing for the same keys, or
// waiting for a cluster to settle, spread out instead of colliding again.
// The zero value is ready to use.
type backoff struct {
	bound time.Duration
}

// wait waits before the next attempt, given that the last one took took,
// and reports whether to make it: false when the deadline of ctx leaves no
// time for the wait and another attempt as long, or when ctx ends first.
func (b *backoff) wait(ctx context.Context, took time.Duration) bool {
	if ctx.Err() != nil {
		return false
	}
	if b.bound == 0 {
		b.bound = minBackoff
	}
	wait := rand.N(b.bound) + 1 // rand.N panics on 0
	b.bound = min(2*b.bound, maxBackoff)
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait+2*took {
		return false
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		// When ctx ends as the timer fires, select picks either case:
		// check again so that an ended context never buys an attempt.
		return ctx.Err() == nil
	}
}

// turns makes the optimistic transactions of one Store on the same key
// take turns, so that they contend only with other processes' writers:
// without it, n requests of one instance writing one session at once make
// on the order of n² attempts between them, and the last ones run out of
// time. The zero value is ready to use.
type turns struct {
	mu   sync.Mutex
	keys map[string]*turn
}

// turn is the queue of one key: ch holds a value while a call has its turn.
type turn struct {
	ch   chan struct{}
	refs int // calls holding or waiting for a turn
	// races counts the races to other writers that the calls holding the
	// turn lost (see noteRace); it only goes up, so that a waiter can tell
	// whether any were lost while it waited, whoever held the turn then.
	races atomic.Uint64
}

// raceNoteKey is the context key of the turn a call holds, for noteRace.
type raceNoteKey struct{}

// noteRace records that an attempt of the call of ctx lost a race to
// another writer, on the turn it holds, if any: a call that times out
// waiting behind it then reports contention, not an outage.
func noteRace(ctx context.Context) {
	if tn, ok := ctx.Value(raceNoteKey{}).(*turn); ok {
		tn.races.Add(1)
	}
}

// take waits for the turn of key and returns the function that ends it,
// and ctx carrying the turn, for noteRace. When ctx is done first it gives
// up with ErrContention if the calls that held the turn while it waited
// lost races to other instances' writers; with ctx's deadline error
// otherwise, which is then an outage: the call ahead is stuck on an
// unavailable Redis (or a slot that moves), and the calls queued behind it
// would wrongly blame contention; or with ctx's error when the caller
// canceled.
func (t *turns) take(ctx context.Context, key string) (turnCtx context.Context, release func(), err error) {
	t.mu.Lock()
	tn := t.keys[key]
	if tn == nil {
		if t.keys == nil {
			t.keys = make(map[string]*turn)
		}
		tn = &turn{ch: make(chan struct{}, 1)}
		t.keys[key] = tn
	}
	tn.refs++
	// Read under mu, in the same step that queues the call: a race noted
	// once the call is seen waiting (refs) counts as lost while it waited.
	races := tn.races.Load()
	t.mu.Unlock()
	select {
	case tn.ch <- struct{}{}:
		return context.WithValue(ctx, raceNoteKey{}, tn), func() {
			<-tn.ch
			t.leave(key, tn)
		}, nil
	case <-ctx.Done():
		t.leave(key, tn)
		if errors.Is(ctx.Err(), context.Canceled) || tn.races.Load() == races {
			return nil, nil, ctx.Err()
		}
		return nil, nil, ErrContention
	}
}

// leave forgets tn once no call holds or waits for it.
func (t *turns) leave(key string, tn *turn) {
	t.mu.Lock()
	if tn.refs--; tn.refs == 0 {
		delete(t.keys, key)
	}
	t.mu.Unlock()
}
