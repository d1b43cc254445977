package redisstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/sessionkit/sessionkit/internal/loglimit"
)

// invalidateChannel is where Redis publishes the invalidation messages of
// CLIENT TRACKING to a RESP2 connection that redirects them to itself.
const invalidateChannel = "__redis__:invalidate"

// Reconnection backoff of the invalidation connection.
const (
	trackMinBackoff = 10 * time.Millisecond
	trackMaxBackoff = time.Second
)

// tracker owns the near-cache's invalidation connection and its two
// goroutines, started by newTracker and stopped by close: run, which
// (re)connects and then reads every message, certifying each PING answer
// to the cache, and, while connected, ping, which sends one PING at a time
// and waits for its answer.
//
// The connection sends CLIENT TRACKING ON REDIRECT <its own id> BCAST
// PREFIX <KeyPrefix>session:, then SUBSCRIBE __redis__:invalidate: Redis
// then publishes, on this one connection, the name of every key under the
// prefix that any client changes, expires or deletes (and a nil for
// FLUSHDB and FLUSHALL), whichever connection changed it. The pooled
// connections stay untracked. In RESP2 (redigo's protocol) a connection in
// subscribe mode may still send PING, and its answer comes after every
// message Redis queued for it before (see certify). Each PING carries its
// sending time as its argument, which Redis echoes (["pong", <argument>]):
// an answer certifies the PING it answers, never another one in flight.
type tracker struct {
	c    *nearCache
	dial func(ctx context.Context) (*checkedConn, error)
	cfg  Config
	log  *slog.Logger
	// failures limits the warnings of failed connects to one per
	// nearLogInterval; strays those of unexpected messages (see serve).
	failures, strays loglimit.Limiter
	// check, when set, runs on each new connection before it subscribes;
	// an error leaves it unsubscribed (see Store.sameServer).
	check func(ctx context.Context, conn redis.Conn) error

	pokes chan struct{} // a Strict Load wants a PING now; buffered, one is enough
	stop  chan struct{} // closed by close
	once  sync.Once
	wg    sync.WaitGroup

	mu   sync.Mutex
	conn *checkedConn // the current connection, closed by close to end run's read
	id   int64        // its CLIENT ID, for tests
	// reconnected is when refused closed the connection last, so that it
	// does so at most once per nearLogInterval.
	reconnected time.Time
}

func newTracker(c *nearCache, cfg Config, dial func(ctx context.Context) (*checkedConn, error), check func(ctx context.Context, conn redis.Conn) error) *tracker {
	t := &tracker{
		c:     c,
		dial:  dial,
		cfg:   cfg,
		log:   cmp.Or(cfg.Logger, slog.Default()),
		check: check,
		pokes: make(chan struct{}, 1),
		stop:  make(chan struct{}),
	}
	t.failures.Interval = nearLogInterval
	t.strays.Interval = nearLogInterval
	c.track = t
	t.wg.Add(1)
	go t.run()
	return t
}

// close stops the goroutines and closes the connection. Closing again
// does nothing.
func (t *tracker) close() {
	t.once.Do(func() {
		close(t.stop)
		t.mu.Lock()
		if t.conn != nil {
			t.conn.Close()
		}
		t.mu.Unlock()
		t.wg.Wait()
	})
}

// refused reports err, Redis's refusal of a read for the cache (an ACL
// that lost +pttl since the connection checked it): it logs it and closes
// the current connection, so that run connects again and its check turns
// the cache off, at most once per nearLogInterval (an ACL that allows the
// check's key but not the sessions' would have every read reconnect).
func (t *tracker) refused(err error) {
	t.mu.Lock()
	if t.conn == nil || time.Since(t.reconnected) < nearLogInterval {
		t.mu.Unlock()
		return
	}
	t.reconnected = time.Now()
	t.conn.Close()
	t.mu.Unlock()
	t.log.Warn("redisstore: near-cache: Redis refused a read for the cache; connecting again", "error", safeText(err))
}

// demand asks for a PING as soon as none is in flight.
func (t *tracker) demand() {
	select {
	case t.pokes <- struct{}{}:
	default:
	}
}

// run connects, serves the connection until it fails, flushes the cache,
// and connects again after a backoff, until close.
func (t *tracker) run() {
	defer t.wg.Done()
	backoff := trackMinBackoff
	for {
		conn, err := t.connect()
		if err == nil {
			backoff = trackMinBackoff
			t.connected()
			t.serve(conn)
		} else {
			t.warn(err)
		}
		select {
		case <-t.stop:
			return
		case <-time.After(backoff):
		}
		if err != nil {
			backoff = min(2*backoff, trackMaxBackoff)
		}
	}
}

// nearLogInterval is how often, at most, a Store logs that its
// near-cache's connection cannot connect; the attempts in between are
// counted in the next line.
const nearLogInterval = 10 * time.Second

// connected logs that the connection is up, with the count of the failed
// attempts to connect that warn held back, once nearLogInterval has passed
// since its last line (see loglimit.Limiter.End). run calls it as a
// connection comes up, and handle on each PING answer, so that the count
// of a failure shorter than that interval comes out with the first answer
// after it, not with the next failure.
func (t *tracker) connected() {
	t.failures.End(time.Now(), func(suppressed int) {
		t.log.Info("redisstore: near-cache: its invalidation connection connected", "suppressed", suppressed)
	})
}

// warn logs err, the failure of an attempt to connect, unless the tracker
// is closing or another line went out less than nearLogInterval ago. The
// near-cache is then off, and nothing else would show it but
// NearCacheStats: a wrong address, TLS setting or ACL user would go
// unnoticed. err comes from dialling, AUTH, the server check or the
// subscription: redigo's and the server's errors name addresses and
// commands, never a password, but a pool's own dial function may dial a
// URL, whose parsing error quotes it, password included: the line carries
// safeText's text.
func (t *tracker) warn(err error) {
	select {
	case <-t.stop:
		return
	default:
	}
	t.failures.Do(time.Now(), func(suppressed int) {
		t.log.Warn("redisstore: near-cache: its invalidation connection cannot connect; every Load reads Redis until it does",
			"error", safeText(err), "suppressed", suppressed)
	})
}

// stray logs err, a message on the invalidation connection that Redis's
// tracking does not send, unless another line went out less than
// nearLogInterval ago. Its invalidations come as lists of keys; a PUBLISH
// to the channel by any client that may publish there comes as a string.
// The cache cannot tell what such a message stands for, so serve empties
// it and connects again, as after a lost connection: nothing stale is
// served, but a client that keeps publishing keeps the cache empty, and
// this line shows why. err is handle's: it names types, never a key.
func (t *tracker) stray(err error) {
	t.strays.Do(time.Now(), func(suppressed int) {
		t.log.Warn("redisstore: near-cache: unexpected message on its invalidation connection, such as another client's PUBLISH to "+invalidateChannel+"; cache emptied, connecting again",
			"error", err.Error(), "suppressed", suppressed)
	})
}

// connect dials, enables tracking and subscribes. The cache becomes live
// (fills may keep what they read) once the subscription is confirmed;
// entries are served only once the first PING is answered.
func (t *tracker) connect() (*checkedConn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), t.cfg.DialTimeout+t.cfg.ReadTimeout)
	defer cancel()
	go func() { // close aborts a dial in progress
		select {
		case <-t.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	conn, err := t.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("dialling: %w", err)
	}
	t.mu.Lock()
	select {
	case <-t.stop:
		t.mu.Unlock()
		conn.Close()
		return nil, errClosed
	default:
	}
	t.conn = conn
	t.mu.Unlock()
	if err := t.subscribe(ctx, conn); err != nil {
		t.drop(conn)
		return nil, err
	}
	return conn, nil
}

// subscribe runs the check, if any, then enables tracking on conn,
// redirected to itself, and subscribes it to the invalidation channel.
// Its errors say which step failed (the warning shows them).
func (t *tracker) subscribe(ctx context.Context, conn *checkedConn) error {
	if t.check != nil {
		if err := t.check(ctx, conn); err != nil {
			return fmt.Errorf("checking the server: %w", err)
		}
	}
	// Reads for the cache send PTTL, which the Store's own reads do not:
	// an ACL user without it would have every one of them refused. The
	// key has a session key's form (an ACL may allow the prefix alone),
	// but no id has that length.
	if _, err := cmd(ctx, conn, "PTTL", t.c.prefix+"x"); err != nil {
		return fmt.Errorf("PTTL: %w", err)
	}
	// The connection PINGs once subscribed (see ping): refused there (an
	// ACL user without +ping, a renamed command), the first answer would
	// drop a connection that connected, which run tries again at once, for
	// ever and without a word. Refused here, it is a failure to connect:
	// warned of, and tried again backing off.
	if _, err := cmd(ctx, conn, "PING"); err != nil {
		return fmt.Errorf("PING: %w", err)
	}
	id, err := redis.Int64(cmd(ctx, conn, "CLIENT", "ID"))
	if err != nil {
		return fmt.Errorf("CLIENT ID: %w", err)
	}
	if _, err := cmd(ctx, conn, "CLIENT", "TRACKING", "ON", "REDIRECT", id, "BCAST", "PREFIX", t.c.prefix); err != nil {
		return fmt.Errorf("CLIENT TRACKING: %w", err)
	}
	// Invalidations are published only once the connection is in subscribe
	// mode, so nothing read before the confirmation may be kept.
	if err := conn.Send("SUBSCRIBE", invalidateChannel); err != nil {
		return fmt.Errorf("SUBSCRIBE: %w", err)
	}
	reply, err := redis.Values(cmd(ctx, conn, ""))
	if err == nil && len(reply) == 1 {
		reply, err = redis.Values(reply[0], nil)
	}
	if err != nil {
		return fmt.Errorf("SUBSCRIBE: %w", err)
	}
	if kind, _ := redis.String(reply[0], nil); len(reply) != 3 || kind != "subscribe" {
		return fmt.Errorf("unexpected reply to SUBSCRIBE %s", invalidateChannel)
	}
	t.mu.Lock()
	t.id = id
	t.mu.Unlock()
	t.c.flush(true)
	return nil
}

// drop closes conn and makes the cache forget everything: whatever changed
// while it was down was never reported.
func (t *tracker) drop(conn *checkedConn) {
	t.c.suspend()
	t.c.flush(false)
	t.mu.Lock()
	t.conn, t.id = nil, 0
	t.mu.Unlock()
	conn.Close()
}

// serve reads the messages of conn until it fails (or close closes it),
// with ping sending the PINGs, then drops it.
func (t *tracker) serve(conn *checkedConn) {
	done := make(chan struct{})
	var pinger sync.WaitGroup
	pinger.Add(1)
	go func() {
		defer pinger.Done()
		t.ping(conn, done)
	}()
	for {
		// The PINGs keep replies coming; ReadTimeout without any means the
		// connection or the server is stuck.
		reply, err := redis.ReceiveWithTimeout(conn, t.cfg.ReadTimeout)
		if err == nil {
			err = t.handle(conn, reply)
			if err != nil && !errors.Is(err, errRetired) {
				t.stray(err)
			}
		}
		if err != nil {
			break
		}
	}
	t.c.suspend()
	conn.Close() // ends a Flush in progress in ping
	close(done)
	pinger.Wait()
	t.drop(conn)
}

// handle applies one message of the invalidation connection conn.
func (t *tracker) handle(conn *checkedConn, reply any) error {
	msg, err := redis.Values(reply, nil)
	if err != nil || len(msg) < 2 {
		return fmt.Errorf("unexpected message on the invalidation connection: %w", err)
	}
	kind, _ := redis.String(msg[0], nil)
	switch {
	case kind == "pong":
		if conn.retired != nil && conn.retired() {
			// Under Sentinel: the sentinels named another master, which
			// the pooled connections now write to. This answer says
			// nothing of its writes, so it certifies nothing: reconnect,
			// to the new master.
			return errRetired
		}
		// The argument of the PING answered: its sending time.
		sent, err := redis.Int64(msg[1], nil)
		if err != nil {
			return fmt.Errorf("unexpected answer to PING on the invalidation connection: %w", err)
		}
		t.c.certify(sent)
		t.connected()
		return nil
	case kind == "message" && len(msg) == 3:
		if msg[2] == nil { // FLUSHDB or FLUSHALL
			t.c.flush(true)
			return nil
		}
		keys, err := redis.Strings(msg[2], nil)
		if err != nil {
			return err
		}
		t.c.invalidate(keys)
		return nil
	}
	return errors.New("unexpected message on the invalidation connection")
}

// ping sends a PING every pingInterval, or at once when a Strict Load asks,
// but never while one is unanswered: the answer to a PING sent at time T,
// when no other command is in flight on the connection, comes after the
// invalidations of every change Redis made before T (it publishes them
// before it answers anything read in a later pass of its event loop), so
// its arrival certifies T. It ends when done is closed; a PING unanswered
// for ReadTimeout closes the connection.
func (t *tracker) ping(conn *checkedConn, done chan struct{}) {
	interval := pingInterval(t.c.cfg.Staleness, t.cfg.ReadTimeout)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-done:
			return
		case <-timer.C:
		case <-t.pokes:
		}
		sent := t.c.clock()
		err := conn.Send("PING", sent)
		if err == nil {
			err = conn.Flush()
		}
		if err != nil {
			conn.Close()
			return
		}
		if !t.awaitPong(conn, done, sent) {
			return
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(interval)
	}
}

// pingInterval returns the time between PINGs: Staleness/4, so that the
// lease is renewed three times before it runs out, but at most
// ReadTimeout/2, so that on a healthy connection the reader, which gives
// up after ReadTimeout without a message, always gets an answer in time.
func pingInterval(staleness, readTimeout time.Duration) time.Duration {
	return min(staleness/4, readTimeout/2)
}

// awaitPong waits for the answer to the PING sent at the clock() value sent
// (the reader certifies it), counting a lease expiry, at most one, if the
// lease runs out first or had run out before the PING was sent (but for
// the first PING of a connection, which no lease precedes). It reports
// false when done is closed or when ReadTimeout passes without that
// answer, and then closes conn.
func (t *tracker) awaitPong(conn *checkedConn, done chan struct{}, sent int64) bool {
	giveUp := time.NewTimer(t.cfg.ReadTimeout)
	defer giveUp.Stop()
	var expired <-chan time.Time
	switch lease, now := t.c.lease.Load(), t.c.clock(); {
	case lease > now:
		timer := time.NewTimer(time.Duration(lease - now))
		defer timer.Stop()
		expired = timer.C
	case lease > 0:
		// The last answer came too late to start a lease that would
		// last until this PING: the process or the network is as slow
		// for Staleness as when a lease runs out while a PING waits
		// (below).
		t.c.leaseExpiries.Add(1)
	}
	for {
		wake := t.c.waiter()
		if t.c.certified.Load() >= sent {
			return true
		}
		select {
		case <-done:
			return false
		case <-wake:
		case <-expired:
			t.c.leaseExpiries.Add(1)
			expired = nil
		case <-giveUp.C:
			conn.Close()
			return false
		}
	}
}
