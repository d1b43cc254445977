package redisstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gomodule/redigo/redis"
)

// Defaults of the [NearCache] fields.
const (
	// DefaultNearCacheStaleness is the default NearCache.Staleness.
	DefaultNearCacheStaleness = 20 * time.Millisecond
	// DefaultNearCacheExtendEvery is the default NearCache.ExtendEvery.
	DefaultNearCacheExtendEvery = time.Minute
)

// NearCache configures a Store's near-cache: session records kept in the
// process's memory, so that a Load of a hot session costs no round trip,
// while Redis tells the Store of every change to a session key through a
// dedicated connection (CLIENT TRACKING in broadcast mode), so that a
// logout or revocation made by any process is honoured here within
// Staleness. See docs/near-cache.md for the guarantee, its cost, and how
// each failure is handled.
//
// The zero value is off. It works on one server and under Sentinel; on a
// Redis Cluster it is not available yet (Open returns an error).
type NearCache struct {
	// MaxEntries turns the near-cache on when above zero: the most records
	// it keeps, the least recently used going first. An entry costs its
	// record plus about 150 bytes (id, map slot, list links): 100,000
	// records of 300 bytes take about 45 MB. A session.Manager on the Store
	// keeps as many records decoded besides: count about 1.2 KB a session
	// in all for a small record, and about four times the record for a
	// large one: MaxEntries bounds the count, not the bytes (up to
	// session.Config.MaxRecordBytes a record; docs/near-cache.md).
	// Default 0: no near-cache, every Load is a Redis command.
	MaxEntries int

	// Staleness is the bound L: a change to a session made anywhere (a
	// logout, a revocation, a write) is seen by this Store's Loads that
	// start more than Staleness after the change was acknowledged, or
	// the near-cache serves nothing. It is also the lease of the
	// invalidation connection: the Store sends a PING on it every
	// Staleness/4, or every Config.ReadTimeout/2 when that is shorter (a
	// Staleness above 2 x ReadTimeout), so that a healthy connection always
	// hears from Redis within ReadTimeout, and serves from memory only
	// within Staleness of the sending of the last PING answered, so a
	// silent network partition stops the near-cache after at most
	// Staleness. Default 20ms when zero; at least 4ms.
	Staleness time.Duration

	// Strict makes every Load served from memory first wait for a barrier:
	// the answer to a PING on the invalidation connection sent after the
	// Load began, which proves that every change acknowledged before it
	// began has been applied. A logout is then refused on the very next
	// request, as without the near-cache, at the cost of one round trip on
	// a single connection that all concurrent Loads share (never a pooled
	// connection, never a key read). Default false: Loads are served at
	// once, and may see a change up to Staleness late.
	Strict bool

	// ExtendEvery is how often, at most, a Load served from memory
	// extends a session's idle window in Redis (the ttl given to Load):
	// when the key's time to live, as last read, has fallen more than
	// min(ExtendEvery, ttl/4) below ttl, the Load goes to Redis (GETEX)
	// instead. Every time-to-live change makes Redis invalidate the
	// record everywhere, so this trades idle-timeout precision for hits:
	// an idle session ends between ttl - min(ExtendEvery, ttl/4) and ttl
	// after its last request, never later. Default 1m when zero.
	ExtendEvery time.Duration
}

// normalize validates n for a deployment of mode m and fills in its
// defaults.
func (n NearCache) normalize(m mode) (NearCache, error) {
	if n.MaxEntries < 0 {
		return n, fieldError("NearCache.MaxEntries", errNegative)
	}
	if n.Staleness < 0 {
		return n, fieldError("NearCache.Staleness", errNegative)
	}
	if n.ExtendEvery < 0 {
		return n, fieldError("NearCache.ExtendEvery", errNegative)
	}
	if n.MaxEntries == 0 {
		return n, nil
	}
	if m == modeCluster {
		return n, fieldError("NearCache", errors.New("not available on a Redis Cluster yet (see docs/near-cache.md)"))
	}
	if n.Staleness == 0 {
		n.Staleness = DefaultNearCacheStaleness
	}
	if n.Staleness < minNearCacheStaleness {
		return n, fieldError("NearCache.Staleness", fmt.Errorf("must be at least %v", minNearCacheStaleness))
	}
	if n.ExtendEvery == 0 {
		n.ExtendEvery = DefaultNearCacheExtendEvery
	}
	return n, nil
}

// minNearCacheStaleness is the smallest NearCache.Staleness: the PING
// interval, a quarter of it, must leave the timers of a busy Go runtime
// time to fire.
const minNearCacheStaleness = 4 * time.Millisecond

// NearCacheStats is a snapshot of a Store's near-cache counters, since the
// Store opened. All are zero without a near-cache.
type NearCacheStats struct {
	// Hits counts Loads served from memory; Misses the Loads that went to
	// Redis (absent or expired entry, idle window due for extension,
	// near-cache suspended).
	Hits, Misses int64
	// Invalidations counts entries dropped because Redis reported a
	// change to their key, or because this Store changed it.
	Invalidations int64
	// Flushes counts the times the whole near-cache was emptied while it
	// was connected: once per loss of a subscribed invalidation connection
	// (closed by Redis or the network, timed out, replaced after a
	// Sentinel failover, or closed by Store.Close), however many entries it
	// held, and once per FLUSHDB or FLUSHALL that Redis reported. The first
	// subscription and failed attempts to connect count nothing: a Store
	// whose connection never broke reports 0.
	Flushes int64
	// LeaseExpiries counts the times the lease ran out before a PING was
	// answered, while it waited or before it was sent, at most once a
	// PING, which suspends the near-cache until the next answer: a slow,
	// far or partitioned network, or a starved process.
	LeaseExpiries int64
	// Evictions counts entries dropped to stay within MaxEntries.
	Evictions int64
	// Entries is the number of records held now.
	Entries int
	// Connected reports whether the invalidation connection is up and
	// subscribed now.
	Connected bool
}

// NearCacheStats returns a snapshot of the near-cache's counters; it sends
// no command.
func (s *Store) NearCacheStats() NearCacheStats {
	if s.near == nil {
		return NearCacheStats{}
	}
	return s.near.stats()
}

// NearCacheSize returns the most records the near-cache keeps
// (NearCache.MaxEntries), 0 without one. Package session asks for it to keep
// as many records decoded.
func (s *Store) NearCacheSize() int {
	if s.near == nil {
		return 0
	}
	return s.near.cfg.MaxEntries
}

// nearCache holds session records in memory for a Store (see NearCache).
//
// Correctness rests on four rules:
//   - An entry is inserted only when the invalidation connection was
//     subscribed before the read that produced it was sent, and no
//     invalidation of its key nor flush came in between (the fill ticket:
//     a per-key generation, and the epoch of flushes).
//   - It is served only within the lease (see certify and tracker.ping),
//     or after a barrier (Strict, or a lapsed lease), and before its own
//     deadline, the key's expiry as read (Redis reports natural expiries
//     late).
//   - Every loss of the invalidation connection flushes everything.
//   - The Store's own writes drop their entries before the call returns
//     (see writeNoter), without waiting for Redis's report.
type nearCache struct {
	cfg    NearCache
	prefix string // of the keys, KeyPrefix + "session:"
	base   time.Time

	// lease is the clock() value until which entries may be served;
	// certified is the clock() value of the sending of the last PING
	// answered (every change acknowledged before it has been applied).
	lease, certified atomic.Int64
	// slowTrips is whether the PINGs come back too slowly for a barrier
	// (see slow).
	slowTrips atomic.Bool

	mu      sync.Mutex
	entries map[string]*nearEntry // by session id
	lru     nearEntry             // sentinel of the recency list: lru.next is the most recent
	pending map[string]*fillMark  // ids being read from Redis
	epoch   uint64                // incremented by every flush
	live    bool                  // the invalidation connection is subscribed
	wake    chan struct{}         // closed and replaced by every certify, for Strict waiters
	trips   [5]int64              // round trips of the last PINGs answered, for slowTrips
	tripAt  int                   // index in trips of the next round trip

	hits, misses, invalidations, flushes, leaseExpiries, evictions atomic.Int64

	track *tracker
	// afterRead, when set by a test, runs between a fill's read and its
	// insert.
	afterRead func(id string)
}

// nearEntry is one cached record.
type nearEntry struct {
	id         string
	record     []byte
	expires    int64 // clock() value of the key's expiry as read
	prev, next *nearEntry
}

// fillMark counts the invalidations of an id while reads of it are in
// flight.
type fillMark struct {
	gen  uint64
	refs int
}

// fillTicket is what a fill remembers from before its read.
type fillTicket struct {
	id    string
	mark  *fillMark
	gen   uint64
	epoch uint64
}

func newNearCache(cfg NearCache, prefix string) *nearCache {
	c := &nearCache{
		cfg:     cfg,
		prefix:  prefix,
		base:    time.Now(),
		entries: make(map[string]*nearEntry),
		pending: make(map[string]*fillMark),
		wake:    make(chan struct{}),
	}
	c.lru.next, c.lru.prev = &c.lru, &c.lru
	return c
}

// clock returns the monotonic time since the cache began, in nanoseconds.
func (c *nearCache) clock() int64 {
	return int64(time.Since(c.base))
}

// extendEvery returns how often an entry read with ttl extends the key.
func (c *nearCache) extendEvery(ttl time.Duration) int64 {
	return int64(min(c.cfg.ExtendEvery, ttl/4))
}

// get returns the entry of id if memory may answer for it at now: the
// lease holds, the entry has not passed its deadline, and, with ttl > 0,
// its idle window needs no extension yet.
func (c *nearCache) get(id string, ttl time.Duration, now int64) *nearEntry {
	if now >= c.lease.Load() {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.held(id, ttl, now)
}

// lapsed reports whether memory holds a usable entry of id that only the
// lease keeps from being served: the connection is subscribed, but the last
// PING answer came too long ago.
func (c *nearCache) lapsed(id string, ttl time.Duration, now int64) bool {
	if now < c.lease.Load() {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.live && c.held(id, ttl, now) != nil
}

// held returns the entry of id if it is usable at now, lease aside; c.mu
// is held.
func (c *nearCache) held(id string, ttl time.Duration, now int64) *nearEntry {
	e := c.entries[id]
	if e == nil {
		return nil
	}
	if now >= e.expires {
		c.drop(e)
		return nil
	}
	if c.overdue(e.expires, ttl, now) {
		return nil // due for extension: the caller sends GETEX
	}
	c.unlink(e)
	c.pushFront(e)
	return e
}

// due reports whether memory holds an entry of id, usable at now lease
// aside, whose idle window for ttl is due for extension (see held).
func (c *nearCache) due(id string, ttl time.Duration, now int64) bool {
	if ttl <= 0 {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[id]
	return e != nil && now < e.expires && c.overdue(e.expires, ttl, now)
}

// overdue reports whether a record whose key expires at expires (a clock()
// value) needs a GETEX at now, for an idle timeout of ttl (0: none): its
// idle window is due for extension, or it is longer than ttl, as when an
// instance with a longer idle timeout wrote it (a deployment that lowers
// the idle timeout, or two that share sessions), so that the GETEX cuts it
// to ttl, as a Store without the cache does. A window longer than ttl by
// less than a millisecond is PX's rounding up (see px), not a longer
// timeout.
func (c *nearCache) overdue(expires int64, ttl time.Duration, now int64) bool {
	if ttl <= 0 {
		return false
	}
	left := expires - now
	return left < int64(ttl)-c.extendEvery(ttl) || left > int64(ttl+time.Millisecond)
}

// begin starts a fill of id. It returns false when the invalidation
// connection is not subscribed, so that nothing read now may be kept.
func (c *nearCache) begin(id string) (fillTicket, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.live {
		return fillTicket{}, false
	}
	m := c.pending[id]
	if m == nil {
		m = &fillMark{}
		c.pending[id] = m
	}
	m.refs++
	return fillTicket{id: id, mark: m, gen: m.gen, epoch: c.epoch}, true
}

// finish ends the fill of t. With keep, it inserts record, whose key
// expires at the clock() value expires, unless an invalidation of the id or
// a flush came since begin.
func (c *nearCache) finish(t fillTicket, keep bool, record []byte, expires int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t.mark.refs--
	if t.mark.refs == 0 {
		delete(c.pending, t.id)
	}
	if !keep || t.mark.gen != t.gen || t.epoch != c.epoch || !c.live {
		return
	}
	if e := c.entries[t.id]; e != nil {
		c.drop(e)
	}
	e := &nearEntry{id: t.id, record: record, expires: expires}
	c.entries[t.id] = e
	c.pushFront(e)
	for len(c.entries) > c.cfg.MaxEntries {
		c.drop(c.lru.prev)
		c.evictions.Add(1)
	}
}

// invalidate drops the entries of keys (full Redis keys; others are
// ignored) and spoils the fills in flight for them.
func (c *nearCache) invalidate(keys []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range keys {
		id, ok := strings.CutPrefix(k, c.prefix)
		if !ok {
			continue
		}
		c.forgetLocked(id)
	}
}

// forgetLocked drops the entry of id and spoils the fills in flight for
// it; c.mu is held.
func (c *nearCache) forgetLocked(id string) {
	if m := c.pending[id]; m != nil {
		m.gen++
	}
	if e := c.entries[id]; e != nil {
		c.drop(e)
		c.invalidations.Add(1)
	}
}

// flush drops every entry and spoils every fill in flight; live says
// whether the invalidation connection is (still, or newly) subscribed. It
// counts a flush only when the connection was subscribed: entries can be
// held only then, so the loss of a connection counts once (not again when
// the next one subscribes), and a failed attempt to connect counts nothing.
func (c *nearCache) flush(live bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.live {
		c.flushes.Add(1)
	}
	c.live = live
	c.epoch++
	clear(c.entries)
	c.lru.next, c.lru.prev = &c.lru, &c.lru
}

// certify records that the PING sent at the clock() value sent was
// answered: every change acknowledged before then has been applied. It
// extends the lease to sent + Staleness and wakes the Strict waiters.
func (c *nearCache) certify(sent int64) {
	trip := c.clock() - sent
	c.certified.Store(sent)
	c.lease.Store(sent + int64(c.cfg.Staleness))
	c.mu.Lock()
	c.trips[c.tripAt] = trip
	c.tripAt = (c.tripAt + 1) % len(c.trips)
	trips := c.trips
	close(c.wake)
	c.wake = make(chan struct{})
	c.mu.Unlock()
	slices.Sort(trips[:])
	c.slowTrips.Store(trips[len(trips)/2] >= int64(c.cfg.Staleness)/2)
}

// waiter returns a channel that the next certify closes. A caller reads it
// before checking certified, so that no certify goes unnoticed.
func (c *nearCache) waiter() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.wake
}

// suspend ends the lease at once (the connection is gone).
func (c *nearCache) suspend() {
	c.lease.Store(0)
	c.certified.Store(0)
}

// slow reports whether the median round trip of the last five PINGs
// answered is half of Staleness or more. A barrier then costs a Load up to
// about Staleness, more than a direct read of that Redis: with PINGs sent
// one at a time and that slowly, one is nearly always in flight when a
// Load begins, and the answer the barrier needs, to a PING sent after it,
// comes up to two round trips later; from a round trip of Staleness on it
// times out, and the Load reads Redis all the same. With Redis that far
// (another zone), or a process that busy for that long, Loads skip the
// barrier and read Redis, until the PINGs come back faster. The
// median, not the last round trip: on a CPU busy for a moment the next
// PING may well come back in time, and a barrier then serves every Load
// waiting from memory for one PING, where skipping it would send each of
// them to Redis at once.
func (c *nearCache) slow() bool {
	return c.slowTrips.Load()
}

// barrier waits, for at most Staleness, until a PING sent at or after the
// clock() value start has been answered, asking the tracker to send one.
// It reports whether it has.
func (c *nearCache) barrier(ctx context.Context, start int64) bool {
	var timer *time.Timer
	for c.certified.Load() < start {
		wake := c.waiter()
		if c.certified.Load() >= start {
			break
		}
		c.track.demand()
		if timer == nil {
			timer = time.NewTimer(c.cfg.Staleness)
			defer timer.Stop()
		}
		select {
		case <-wake:
		case <-timer.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
	return true
}

func (c *nearCache) drop(e *nearEntry) {
	c.unlink(e)
	delete(c.entries, e.id)
}

func (c *nearCache) unlink(e *nearEntry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (c *nearCache) pushFront(e *nearEntry) {
	e.prev, e.next = &c.lru, c.lru.next
	c.lru.next.prev = e
	c.lru.next = e
}

func (c *nearCache) stats() NearCacheStats {
	c.mu.Lock()
	n, live := len(c.entries), c.live
	c.mu.Unlock()
	return NearCacheStats{
		Hits:          c.hits.Load(),
		Misses:        c.misses.Load(),
		Invalidations: c.invalidations.Load(),
		Flushes:       c.flushes.Load(),
		LeaseExpiries: c.leaseExpiries.Load(),
		Evictions:     c.evictions.Load(),
		Entries:       n,
		Connected:     live,
	}
}

// startNearCache starts the near-cache of a new Store when cfg asks for
// one. Its invalidation connection dials as the Store's connections do:
// under Sentinel, to the master the Store's Source follows; with a
// *redis.Pool (New's usual Source, and Open's on one server), through the
// pool's own DialContext or Dial, so with the pool's address, credentials,
// TLS and database; through DialContext with a Source that implements
// [Dialer]; only with another Source does it dial cfg's Addr with
// cfg's credentials and TLS (New checks that this sends no password in
// clear: see nearDialsConfig). With a foreign Source (New), each
// connection first checks that it reached the Source's server
// (sameServer).
//
// The caller's functions (the pool's Dial, which takes no context, and
// the Source's GetContext, which a pool with only Dial cannot cancel while
// it dials) run through a detached call, so that neither a stalled Redis
// nor a hung dial function keeps Store.Close waiting.
func (s *Store) startNearCache(cfg Config, foreign bool) {
	if cfg.NearCache.MaxEntries == 0 {
		return
	}
	s.near = newNearCache(cfg.NearCache, s.prefix)
	dialer := func(ctx context.Context) (*checkedConn, error) { return dial(ctx, cfg) }
	switch src := s.src.(type) {
	case *sentinelSource:
		dialer = func(ctx context.Context) (*checkedConn, error) {
			c, err := src.dialMaster(ctx)
			if err != nil {
				return nil, err
			}
			return c.(*checkedConn), nil
		}
	case *redis.Pool:
		if poolDials(src) {
			var d detachedCall
			dialer = func(ctx context.Context) (*checkedConn, error) {
				return dialDetached(ctx, &d, "the pool's dial function", func() (redis.Conn, error) {
					if src.DialContext != nil {
						return src.DialContext(ctx)
					}
					return src.Dial()
				})
			}
		}
	case Dialer:
		var d detachedCall
		dialer = func(ctx context.Context) (*checkedConn, error) {
			return dialDetached(ctx, &d, "the Source's DialContext", func() (redis.Conn, error) { return src.DialContext(ctx) })
		}
	}
	var check func(ctx context.Context, conn redis.Conn) error
	if foreign {
		check = s.sameServer
	}
	newTracker(s.near, cfg, dialer, check)
}

// nearDialsConfig reports whether the near-cache of a Store on src would
// dial Config.Addr with the Config's credentials and TLS (see
// startNearCache), rather than as src's connections do.
func nearDialsConfig(src Source) bool {
	switch src := src.(type) {
	case *sentinelSource:
		return false
	case *redis.Pool:
		return !poolDials(src)
	case Dialer:
		return false
	}
	return true
}

// poolDials reports whether p has a dial function of its own.
func poolDials(p *redis.Pool) bool {
	return p.DialContext != nil || p.Dial != nil
}

// dialDetached opens a connection, outside any pool, with f, a dial
// function of the caller's (named by what, for errors): a *redis.Pool's
// own DialContext or Dial, the one its pooled connections come from, or a
// [Dialer]'s DialContext. It runs through d (see detachedCall), so that it
// returns when ctx ends even while f does not (a Dial, which takes no
// context, waiting on a stalled server).
func dialDetached(ctx context.Context, d *detachedCall, what string, f func() (redis.Conn, error)) (*checkedConn, error) {
	c, err := d.call(ctx, f)
	if err != nil {
		return nil, err
	}
	if c == nil {
		return nil, fmt.Errorf("redisstore: near-cache: %s returned no connection", what)
	}
	if cc, ok := c.(*checkedConn); ok { // a pool built by NewPool
		return cc, nil
	}
	return &checkedConn{Conn: c}, nil
}

// detachedCall runs a function of the caller's that returns a connection
// and may not return when its context ends: a *redis.Pool's Dial takes no
// context (redigo's README builds pools with it, without timeouts, so it
// waits for as long as the server is stalled), and a pool's GetContext
// calls that Dial. call runs the function in a goroutine and returns at
// the end of its context; the goroutine, left behind, closes the
// connection the function returns, whenever it does. It is the one
// goroutine a Store leaves running after Close, and only while such a
// function has not returned. So that a server stalled for hours does not
// pile them up, one retry after another, call waits (within its own
// context) for the call it left behind to return before it starts another:
// at most one is left behind at any time.
type detachedCall struct {
	mu   sync.Mutex
	left *detachedRun // the run its caller gave up on, until it returns
}

// detachedRun is one run of a detachedCall's function.
type detachedRun struct {
	done chan struct{} // closed when the function has returned
	conn redis.Conn
	err  error
	// abandoned says that the caller has given up: the goroutine closes
	// the connection.
	abandoned bool
}

// call returns what f returns, or ctx's error when ctx ends first (see
// detachedCall). It is safe for concurrent use, but meant for one caller
// at a time: the tracker's run goroutine.
func (d *detachedCall) call(ctx context.Context, f func() (redis.Conn, error)) (redis.Conn, error) {
	d.mu.Lock()
	left := d.left
	d.mu.Unlock()
	if left != nil {
		select {
		case <-left.done:
		case <-ctx.Done():
			return nil, fmt.Errorf("an earlier call has not returned yet: %w", context.Cause(ctx))
		}
	}
	r := &detachedRun{done: make(chan struct{})}
	go func() {
		conn, err := f()
		d.mu.Lock()
		r.conn, r.err = conn, err
		close(r.done)
		abandoned := r.abandoned
		if d.left == r {
			d.left = nil
		}
		d.mu.Unlock()
		if abandoned && conn != nil {
			conn.Close()
		}
	}()
	select {
	case <-r.done:
		return r.conn, r.err
	case <-ctx.Done():
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	select {
	case <-r.done: // returned meanwhile: the connection is the caller's
		return r.conn, r.err
	default:
	}
	r.abandoned = true
	d.left = r
	return nil, context.Cause(ctx)
}

// settle waits for the run the caller gave up on, if any, to return, for
// at most timeout.
func (d *detachedCall) settle(timeout time.Duration) {
	d.mu.Lock()
	left := d.left
	d.mu.Unlock()
	if left == nil {
		return
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-left.done:
	case <-t.C:
	}
}

// errOtherServer reports that the near-cache's connection reached another
// Redis server than the Store's Source.
var errOtherServer = errors.New("its connection reached another Redis server than the Source's (INFO server's run_id differs)")

// sameServer checks that conn, the near-cache's connection, reached the
// server that the Store's Source hands out connections to: the run_id of
// INFO server, drawn at random by each start of a Redis server, is the same
// through both. A connection to another server would hear of no change made
// through the Source, and the near-cache would serve what it read for as
// long as the keys live.
//
// The Source's connection comes through s.borrow (see detachedCall): a
// *redis.Pool with only Dial cannot stop its GetContext while it dials.
func (s *Store) sameServer(ctx context.Context, conn redis.Conn) error {
	mine, err := runID(ctx, conn)
	if err != nil {
		return fmt.Errorf("reading its own run_id: %w", err)
	}
	pooled, err := s.borrow.call(ctx, func() (redis.Conn, error) { return s.getConn(ctx, s.src) })
	if err != nil {
		// An exhausted pool (MaxActive connections all in use) ends here.
		return fmt.Errorf("reading the Source's run_id: borrowing a connection: %w", err)
	}
	defer pooled.Close()
	theirs, err := runID(ctx, pooled)
	if err != nil {
		return fmt.Errorf("reading the Source's run_id: %w", err)
	}
	if mine != theirs {
		return errOtherServer
	}
	return nil
}

// runID returns the run_id field of INFO server on conn.
func runID(ctx context.Context, conn redis.Conn) (string, error) {
	info, err := redis.String(cmd(ctx, conn, "INFO", "server"))
	if err != nil {
		return "", err
	}
	for line := range strings.Lines(info) {
		if id, ok := strings.CutPrefix(strings.TrimSpace(line), "run_id:"); ok && id != "" {
			return id, nil
		}
	}
	return "", errors.New("redisstore: near-cache: no run_id in INFO server")
}

// loadNear is Load with the near-cache: from memory when it may answer,
// else from Redis, keeping what it reads when it safely can.
func (s *Store) loadNear(ctx context.Context, id string, ttl time.Duration) ([]byte, bool, error) {
	c := s.near
	start := c.clock()
	e := c.get(id, ttl, start)
	switch {
	case e != nil && c.cfg.Strict && (c.slow() || !s.confirmHit(ctx, e, start)):
		e = nil
	case e == nil && !c.slow() && c.lapsed(id, ttl, start) && c.barrier(ctx, start):
		// The lease ran out (a PING answer came late: a busy process or
		// network) while the entry is held: a barrier, shared by every
		// Load waiting, proves it current, for less than a read each.
		e = c.get(id, ttl, c.clock())
	}
	if e != nil {
		c.hits.Add(1)
		return append([]byte(nil), e.record...), true, nil // a copy: the caller may modify it
	}
	c.misses.Add(1)
	if c.due(id, ttl, start) {
		// Memory holds the record, but its idle window is due for
		// extension: extend it at once, without reading again what memory
		// holds. The GETEX drops this copy (see writeNoter), and the next
		// Load refills it.
		return s.load(ctx, "load", s.prefix+id, c.left(ttl, start))
	}
	t, ok := c.begin(id)
	if !ok {
		return s.load(ctx, "load", s.prefix+id, c.left(ttl, start))
	}
	record, found, expires, err := s.readForCache(ctx, id)
	keep := found && err == nil && expires > 0
	if found && err == nil && ttl > 0 && (!keep || c.overdue(expires, ttl, c.clock())) {
		// The idle window is due for extension or longer than ttl, or the
		// record has no expiry to keep it by (an outside writer's, a PERSIST, a PTTL
		// that failed): extend it, or give it one, as a Store without the
		// cache does. The GETEX makes Redis invalidate the record
		// everywhere, this copy too.
		c.finish(t, false, nil, 0)
		return s.load(ctx, "load", s.prefix+id, c.left(ttl, start))
	}
	if keep && c.afterRead != nil {
		c.afterRead(id)
	}
	c.finish(t, keep, record, expires)
	if err != nil || !found {
		return nil, false, err
	}
	return append([]byte(nil), record...), true, nil
}

// left returns what is left of ttl, a time to live given to a Load that
// began at start, for the GETEX that Load sends after a wait (a barrier,
// or a read for the cache): the record then lives no longer than asked
// from the call (see px). It is 0, a plain read, when ttl is, and at least
// a millisecond otherwise.
func (c *nearCache) left(ttl time.Duration, start int64) time.Duration {
	if ttl <= 0 {
		return 0
	}
	return max(ttl-time.Duration(c.clock()-start), time.Millisecond)
}

// confirmHit waits for the Strict barrier and then checks that e is still
// the entry of its id.
func (s *Store) confirmHit(ctx context.Context, e *nearEntry, start int64) bool {
	c := s.near
	return c.barrier(ctx, start) && c.get(e.id, 0, c.clock()) == e
}

// readForCache reads the record of id and its time to live in one round
// trip (GET and PTTL, pipelined), without changing the time to live. It
// returns the clock() value at which the key expires, measured from
// before the commands were sent, so never later than the real expiry; 0
// when the key has no expiry or is gone.
func (s *Store) readForCache(ctx context.Context, id string) (record []byte, found bool, expires int64, err error) {
	key := s.prefix + id
	err = s.do(ctx, "load", key, func(ctx context.Context, conn redis.Conn) error {
		sent := s.near.clock()
		if err := conn.Send("GET", key); err != nil {
			return err
		}
		if err := conn.Send("PTTL", key); err != nil {
			return err
		}
		replies, err := redis.Values(cmd(ctx, conn, "")) // flushes, then reads both replies
		if err != nil {
			return err
		}
		if len(replies) != 2 {
			return fmt.Errorf("%d replies to GET and PTTL", len(replies))
		}
		record, err = redis.Bytes(replies[0], nil)
		if errors.Is(err, redis.ErrNil) {
			return nil
		}
		if err != nil {
			return err
		}
		found = true
		// -1: no expiry, -2: gone since the GET; neither is kept, nor is a
		// record whose PTTL failed: expires stays 0, and loadNear reads it
		// again as a Store without the cache would. An ACL that lost
		// +pttl since the connection checked it would make every read two
		// round trips: the connection connects again, and its check then
		// turns the cache off, with a warning.
		ms, err := redis.Int64(replies[1], nil)
		switch {
		case err == nil && ms > 0:
			expires = sent + ms*int64(time.Millisecond)
		case replyCode(err) == "NOPERM":
			s.near.track.refused(err)
		}
		return nil
	})
	return record, found, expires, err
}
