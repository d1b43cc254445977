package redisstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/sessionkit/sessionkit/internal/loglimit"
)

// Source is where a [Store] gets its connections. A *redis.Pool satisfies
// it; so can a source of Sentinel or Cluster connections. Connections must
// support redis.DoWithTimeout (implement redis.ConnWithTimeout), and their
// Close must end a transaction left open (UNWATCH, or DISCARD after MULTI)
// before the connection is used again, as a *redis.Pool's connections do:
// a Store relies on it when a merge function fails after a WATCH.
type Source interface {
	GetContext(ctx context.Context) (redis.Conn, error)
}

// Dialer is an optional interface of a [Source]: DialContext opens a new
// connection outside whatever pool the Source keeps, exactly as its pooled
// connections are opened (the same address, credentials, TLS and
// database). A Store that [New] makes on a Source with a
// [Config.NearCache] opens the near-cache's own connection with it, as it
// does with a *redis.Pool's DialContext or Dial, and then uses none of the
// Config's Addr, credentials and TLS for that connection. A Source that
// wraps a *redis.Pool (to add tracing or metrics, say) implements it by
// calling the pool's DialContext, or Dial; without it, New dials
// Config.Addr itself and refuses a Password without TLS.
//
// DialContext should give up when ctx ends; the Store gives up on it then
// in any case (see [Store.Close]). The Store closes the connection, which
// must not be lent out by the Source.
type Dialer interface {
	DialContext(ctx context.Context) (redis.Conn, error)
}

// Store keeps session records in Redis, each as a string under the key
// "<KeyPrefix>session:<id>" with a time to live, and the sessions of each
// user in an index (see the package documentation). It uses only plain
// commands, so it runs under an ACL user that is denied scripting.
//
// The caller chooses each id, and it must not be the secret a client
// presents (see the package documentation): ids become Redis keys, which
// MONITOR, SLOWLOG, replicas and backups all see. An id holds no colon
// (the session package's are base64url, after a {tag} on a Cluster):
// Iterate and KeyStats leave out the keys that hold one after
// "<KeyPrefix>session:", which are another Store's or a renewal's pointer.
// Store never writes an id or a key into an error or a log.
//
// A Store is safe for concurrent use.
type Store struct {
	src       Source
	cluster   *clusterSource // the Source on a Redis Cluster, else nil
	keyPrefix string         // KeyPrefix
	prefix    string         // KeyPrefix + "session:"
	timeout   time.Duration
	replicas  int           // WaitReplicas
	waits     chan struct{} // places of the calls that wait for replicas; see confirming
	readWaits chan struct{} // places of the reads that wait for replicas; see confirmAbsent
	maxActive int           // MaxActive, per node on a Cluster
	observer  Observer      // Config.Observer, or nil
	dials     *dialCounter  // of the pools Open built, else nil
	turns     turns         // of optimistic transactions on one key; see doTurn
	near      *nearCache    // Config.NearCache, or nil; see nearcache.go
	// borrow runs the near-cache's borrows from a foreign Source (see
	// sameServer), which Close lets end before it closes the Source.
	borrow detachedCall
	closed atomic.Bool // set by Close, before it closes the Source; see getConn

	log *slog.Logger // Config.Logger, or slog.Default()
	// checkEviction says that Ping sends INFO memory, to warn of a
	// maxmemory-policy that may evict keys (see evictionCheck), and
	// evicting limits that warning; evictingCounters limits PingCounter's.
	checkEviction    atomic.Bool
	evicting         loglimit.Limiter
	evictingCounters loglimit.Limiter
	// fewReplicas limits Ping's warning that fewer replicas than
	// WaitReplicas answered (see replicasCheck), and pingTurn says which
	// master of a Cluster a Ping asks.
	fewReplicas loglimit.Limiter
	pingTurn    atomic.Uint32
}

// New returns a Store that takes its connections from src. Of cfg it uses
// only KeyPrefix, Timeout, WaitReplicas, NearCache, Logger, Observer and,
// with WaitReplicas, MaxActive (the other fields configure [NewPool], and the
// near-cache's own connection when src is neither a *redis.Pool nor a
// [Dialer]), but it
// validates all of it. With WaitReplicas, MaxActive must be the most
// connections src hands out at once, which New reads itself when src is a
// *redis.Pool with a MaxActive: a quarter of it is the bound on logouts
// waiting for replicas (see [Config.WaitReplicas]). Close on the Store
// closes src if src has a Close method.
//
// New is for one server (or a Source that always hands out connections to
// the current master); cfg must not name Sentinel or Cluster nodes, which
// [Open] connects to itself.
//
// With [Config.NearCache] and a *redis.Pool as src, the near-cache's own
// connection is opened by the pool's DialContext (or Dial), outside the
// pool: the same address, credentials, TLS and database as every pooled
// connection, whatever cfg's Addr, Username, Password, DB and TLS say;
// likewise by DialContext when src implements [Dialer]. With another
// Source, it dials cfg.Addr with cfg's credentials, TLS and timeouts: Addr
// is then required, not defaulted, since it must reach the server src
// hands out connections to, or the near-cache would hear of none of their
// changes; and New refuses a Password without TLS, which that connection
// would send in clear text whether or not src's connections use TLS (pass
// the *redis.Pool itself, implement Dialer on src, or set TLS as src's
// connections use it). Either way, each time that connection connects, it
// compares the server's run_id (INFO server) with the one read through
// src, and stays disconnected (every Load reads Redis) while they differ or
// cannot be read: an ACL user then also needs "+info". While it cannot
// connect, the Store logs a warning to [Config.Logger] at most every 10s.
// A connect attempt gives up after DialTimeout plus ReadTimeout, or at
// Close, even when the pool's Dial, which takes no context, has not
// returned (see [Store.Close]).
func New(src Source, cfg Config) (*Store, error) {
	if src == nil {
		return nil, errors.New("redisstore: New: nil Source")
	}
	if cfg.NearCache.MaxEntries > 0 && cfg.mode() == modeSingle && nearDialsConfig(src) {
		if cfg.Addr == "" {
			return nil, fieldError("Addr", errors.New("required with NearCache in New when the Source is neither a *redis.Pool with a dial function nor a redisstore.Dialer: the near-cache's connection dials it, and it must reach the Source's server"))
		}
		if cfg.Password != "" && cfg.TLS == nil {
			return nil, fieldError("TLS", errors.New("required with NearCache and a Password in New when the Source is neither a *redis.Pool with a dial function nor a redisstore.Dialer: the near-cache's connection dials Addr itself and would send the Password in clear text; pass the *redis.Pool, implement redisstore.Dialer (DialContext) on the Source, or set TLS as the Source's connections use it"))
		}
	}
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	if cfg.mode() != modeSingle {
		return nil, errors.New("redisstore: New: Config names Sentinel or Cluster nodes; use Open")
	}
	if p, ok := src.(*redis.Pool); ok && p.MaxActive > 0 {
		cfg.MaxActive = p.MaxActive
	}
	return newStore(src, cfg, true), nil
}

// Open returns a Store connected as cfg says: to one server through a pool
// built by [NewPool]; with SentinelAddrs, to the master the sentinels name,
// following it through failovers; with ClusterNodes, to a Redis Cluster.
// Close the Store to close its connections. Open does not contact Redis
// (under Sentinel it starts asking the sentinels in the background); call
// [Store.Ping] to check the servers at start-up.
func Open(cfg Config) (*Store, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	// The Store keeps its own copies of the address lists, which the
	// sources read for as long as it lives.
	cfg.SentinelAddrs, cfg.ClusterNodes = slices.Clone(cfg.SentinelAddrs), slices.Clone(cfg.ClusterNodes)
	cfg.dials = new(dialCounter)
	switch cfg.mode() {
	case modeSentinel:
		return newStore(newSentinelSource(cfg), cfg, false), nil
	case modeCluster:
		cs := newClusterSource(cfg)
		s := newStore(cs, cfg, false)
		s.cluster = cs
		return s, nil
	}
	return newStore(newPool(cfg), cfg, false), nil
}

// newStore returns a Store on src. foreign says that src was built by the
// caller (New), so that the near-cache's connection must check that it
// reached src's server (see startNearCache).
func newStore(src Source, cfg Config, foreign bool) *Store {
	s := &Store{
		src:              src,
		keyPrefix:        cfg.KeyPrefix,
		prefix:           cfg.KeyPrefix + "session:",
		timeout:          cfg.Timeout,
		replicas:         cfg.WaitReplicas,
		maxActive:        cfg.MaxActive,
		dials:            cfg.dials,
		observer:         cfg.Observer,
		log:              cmp.Or(cfg.Logger, slog.Default()),
		evicting:         loglimit.Limiter{Interval: evictionLogInterval},
		evictingCounters: loglimit.Limiter{Interval: evictionLogInterval},
		// Its state may last as long as a policy's: a master set up with
		// fewer replicas than WaitReplicas.
		fewReplicas: loglimit.Limiter{Interval: evictionLogInterval},
	}
	// Only as Redis's default user, which may run every command unless
	// restricted: an ACL user as documented may not run INFO, and each
	// command it is refused adds to ACL LOG, which operators watch for
	// attacks. A default user refused INFO is not asked again.
	s.checkEviction.Store(cfg.Username == "")
	// On a Cluster each master has a pool of its own, which one stalled
	// replica can only exhaust for its master's slots, while places shared
	// by all the masters would let it fail the logouts of the others.
	if s.replicas > 0 && cfg.mode() != modeCluster {
		s.waits = make(chan struct{}, max(1, cmp.Or(s.maxActive, DefaultMaxActive)/4))
	}
	if s.replicas > 0 {
		// Shared by a Cluster's masters too: a flood of ended tokens
		// on one master's slots would otherwise take that master's
		// whole pool, and the reads of live sessions there with it.
		s.readWaits = make(chan struct{}, max(1, cmp.Or(s.maxActive, DefaultMaxActive)/8))
	}
	s.startNearCache(cfg, foreign)
	return s
}

// Load returns the record stored under id and whether there is one. A ttl >
// 0 also resets the record's time to live to ttl, rounded up to whole
// milliseconds, in the same command (GETEX key PX ms); ttl == 0 only reads
// (GET). A missing record is not an error. With [Config.NearCache], a Load
// may be answered from memory and extends the time to live less often:
// see [NearCache].
//
// A key under id that holds another type than a string (a hash or a list
// that another program wrote under the key prefix) is no record: Load
// returns an ErrRefused error with a method NotRecord() bool that reports
// true, by which package session deletes the key as an unreadable record
// rather than answer 503 for as long as the key lives.
func (s *Store) Load(ctx context.Context, id string, ttl time.Duration) ([]byte, bool, error) {
	if ttl < 0 {
		return nil, false, errors.New("redisstore: load: negative ttl")
	}
	var b []byte
	var found bool
	var err error
	var start time.Time // of the call, which confirmAbsent's wait ends within a Timeout of
	if s.replicas > 0 {
		start = time.Now()
	}
	if s.near != nil {
		b, found, err = s.loadNear(ctx, id, ttl)
	} else {
		b, found, err = s.load(ctx, "load", s.prefix+id, ttl)
	}
	if err != nil && replyCode(err) == "WRONGTYPE" {
		err = notRecord{err}
	}
	if err == nil && !found && s.replicas > 0 {
		err = s.confirmAbsent(ctx, s.prefix+id, start)
	}
	return b, found, err
}

// confirmAbsent backs a Load that found no record under key, with
// WaitReplicas: as after a removal, the master must have that many
// replicas in step (WAIT), within a Timeout of start, when the Load began,
// or the Load fails, with an absent error. Without it, a master that a
// failover has just replaced, to which the Store goes on sending calls
// until it learns of the new one, answers "no session" for a session whose
// logout only it holds: the logout failed unconfirmed, the client sent it
// again, as it is told to, and was told the session had ended, while the
// new master, which never saw the deletion, still holds it. A replaced
// master has fewer replicas than WaitReplicas (the promoted one left it),
// so its WAIT fails.
//
// Such reads come from any request with an ended token, as often as a
// client sends it, so at most an eighth of MaxActive of them (at least
// one, and on a Cluster in all) wait for replicas at once, apart from the
// calls that end sessions (see confirming): neither those nor the reads of
// live sessions then run out of connections while a replica is stalled. A
// read that finds no place within a quarter of the Timeout, holding no
// connection meanwhile, fails with errNoPlace. Its Observer op is vouch.
func (s *Store) confirmAbsent(ctx context.Context, key string, start time.Time) error {
	ctx, cancel := context.WithDeadline(ctx, start.Add(s.timeout))
	defer cancel()
	wait, stop := context.WithTimeout(ctx, s.timeout/4)
	defer stop()
	select {
	case s.readWaits <- struct{}{}:
		defer func() { <-s.readWaits }()
	case <-wait.Done():
		return absent{classify("vouch", errNoPlace, s.cluster != nil)}
	}
	if err := s.do(ctx, "vouch", key, s.confirmNow); err != nil {
		return absent{err}
	}
	return nil
}

// errNoPlace is confirmAbsent's error when every place to wait for
// replicas was taken for a quarter of the Timeout: a burst of reads of
// ended sessions, or a stalled replica holding them.
var errNoPlace = errors.New("too many reads of ended sessions were waiting for the replicas at once (Config.WaitReplicas)")

// confirmNow is confirm for a connection that may have made no write, or
// none lately: it sends a command first, in the same round trip, since
// Redis 7 has WAIT count the replicas that have the master's writes up to
// the connection's latest command, and one that has sent none (a new
// connection) would count a lagging replica as in step.
func (s *Store) confirmNow(ctx context.Context, conn redis.Conn) error {
	if err := conn.Send("PING"); err != nil {
		return err
	}
	return s.confirm(ctx, conn)
}

// absent is the error of a Load that found no record, under WaitReplicas,
// on a master that fewer replicas than that confirmed (see confirmAbsent).
// It is the WAIT's error, ErrUnavailable, with a method Absent() bool that
// reports true: the record is not on the master the Store asked, which
// package session tells from an outage, so that a login on a browser whose
// token led nowhere still goes on.
type absent struct{ error }

func (e absent) Unwrap() error { return e.error }

// Absent reports true: see absent.
func (absent) Absent() bool { return true }

// notRecord marks a Load error whose key holds another type than a
// record: see Load.
type notRecord struct{ error }

func (e notRecord) Unwrap() error { return e.error }

// NotRecord reports true: see Load.
func (notRecord) NotRecord() bool { return true }

// Insert stores a new record under id with a time to live of ttl, rounded
// up to whole milliseconds, only if no record exists under id (SET key val
// PX ms NX). It reports whether it wrote. A ttl <= 0 is an error: a record
// is never written without an expiry.
func (s *Store) Insert(ctx context.Context, id string, record []byte, ttl time.Duration) (bool, error) {
	return s.set(ctx, "insert", id, record, ttl, "NX")
}

// Update replaces the record under id and sets its time to live to ttl,
// rounded up to whole milliseconds, only while a record still exists under
// id (SET key val PX ms XX), so a request that was in flight during logout
// can never bring the session back. It reports whether it wrote. A ttl <= 0
// is an error.
func (s *Store) Update(ctx context.Context, id string, record []byte, ttl time.Duration) (bool, error) {
	return s.set(ctx, "update", id, record, ttl, "XX")
}

// Remove deletes the record under id. Removing a missing id is not an
// error. With [Config.WaitReplicas], it then waits for the replicas.
func (s *Store) Remove(ctx context.Context, id string) error {
	key := s.prefix + id
	ctx, release := s.confirming(ctx)
	defer release()
	return s.do(ctx, "remove", key, func(ctx context.Context, conn redis.Conn) error {
		if _, err := cmd(ctx, conn, "DEL", key); err != nil {
			return err
		}
		return s.confirm(ctx, conn)
	})
}

// Ping checks that Redis can serve sessions, for readiness probes and
// start-up checks: on one server or under Sentinel, that the server answers,
// is not a read-only replica, and is no Cluster node; on a Cluster, that
// every master CLUSTER SLOTS lists answers (a call fails for the slots of
// any that does not, so one master down fails Ping on every instance) and
// none reports the cluster down (see clusterDown), the error naming the
// first master that failed ("master 10.0.0.5:7001: ...", but for a cluster
// that is down, which every master reports); and
// everywhere, that the ACL user allows every command the Store's sessions,
// logins and logouts send, on the documented key patterns.
//
// On one server or under Sentinel it sends PING, GETEX
// "<KeyPrefix>session:" and EXISTS of two keys "<KeyPrefix>session:{tag}"
// in different slots, then the permission checks below, all pipelined in one round trip. GETEX is a write command, so a read-only
// replica refuses it with READONLY whatever its key, as it refuses every
// login and, with an idle timeout, every read of a session: Ping then fails
// with [ErrUnavailable] instead of reporting ready.
// A Cluster node refuses the EXISTS with CROSSSLOT, and the GETEX before
// it with MOVED unless it owns that key's slot: Ping then fails with
// [ErrRefused], which [Describe] explains, rather than passing on a node
// that serves the slots of some users and answers MOVED for the others.
// A server out of memory (maxmemory with noeviction) passes: GETEX adds no
// memory, and such a server still serves every read while it refuses
// logins and changes. That state is shared by every instance of the app,
// so a readiness probe that failed on it would take them all out of
// rotation, reads included; alert on the refused writes instead.
//
// The permission checks are GET, SET XX, DEL and MGET of
// "<KeyPrefix>session:", SCAN with a COUNT of 1, ZADD XX, ZRANGE, ZREM,
// ZREMRANGEBYSCORE of an empty score range and PEXPIREAT with NX and with
// GT (a login's two forms) of "<KeyPrefix>user:", WATCH and UNWATCH, an
// empty MULTI/EXEC, and DISCARD. Those keys, the prefixes
// with no id, are never a session's or a user's, and each command leaves
// a missing key missing, so nothing changes. Redis looks the command up
// and counts its arguments, then checks the ACL, then the key's slot. So
// of their replies a NOPERM counts (an OOM, a MOVED, a DISCARD without
// MULTI say the command was allowed): Ping then fails with [ErrRefused]
// naming every command denied, and [Describe] names the permissions to
// add (for a refusal of keys, the pattern of the first refused). So
// does an unknown command (a provider renamed or disabled it, or the
// server is a Redis too old for it), and any refusal of PEXPIREAT's NX or
// GT, options of Redis 7.0 that Redis 6.2 answers with "wrong number of
// arguments": Describe names the command, or the Redis version needed.
// Any Redis 7.0 or later that the documented ACL line (see the package
// documentation) allows passes. With WaitReplicas, Ping also sends
// WAIT 0 0, which returns at once, and a WAIT for WaitReplicas replicas of
// at most 100 ms (on a Cluster, to one master a Ping, in turn), which
// passes whatever it counts but logs a warning to [Config.Logger], at most
// once an hour, when fewer replicas answered: until enough are in step,
// every logout fails (see replicasCheck); the extra permissions of the rate
// limiter, KeyStats, the near-cache and the scs migration are not
// checked. (SELECT, and ROLE under Sentinel, are sent as each connection
// opens.)
//
// A Cluster's Store only ever talks to the masters, so Ping sends each of
// them PING, GETEX and EXISTS of "<KeyPrefix>session:" and the permission
// checks, where a MOVED reply (Redis checks the command and the ACL before
// the slot) counts as allowed: a master that does not know one of them, or
// whose ACL denies it, fails Ping. MaxActive Pings run at once a Store,
// and others wait for one of them to end, within their contexts: each
// holds a connection of a random node, beyond the MaxActive calls of that
// node's turns, while it asks every master, and a master that stalls
// makes it wait. (Iterate and KeyStats take the same turns while they ask
// for the list of masters, and so do calls on a slot the slot map names
// no master for.)
//
// As Redis's default user (no Config.Username), Ping also sends each
// server INFO memory, and logs a warning to [Config.Logger], at most once
// an hour, when the server has a maxmemory and a maxmemory-policy other
// than noeviction: such a Redis, once full, evicts keys, a user's index
// among them, and "log out everywhere" then misses that user's live
// sessions (see the package documentation). That warning is all INFO's
// reply does: an INFO refused, or a server without it, fails nothing, and
// once refused by the ACL it is not sent again. An ACL user (Username) is
// not sent it: the documented ACL line has no INFO, and each refusal would
// add to the server's ACL LOG. With [New] and a Source whose connections
// log in as an ACL user, set Username too, or the Store's first Ping adds
// one refusal to ACL LOG. The warning names one server an hour: on a
// Cluster, the first master found evicting. Check the policy of such a
// deployment with [Store.KeyStats] as an admin user, or CONFIG GET
// maxmemory-policy.
func (s *Store) Ping(ctx context.Context) error {
	return s.do(ctx, "ping", "", func(ctx context.Context, conn redis.Conn) error {
		if s.cluster == nil {
			return s.pingWritable(ctx, conn)
		}
		if _, err := cmd(ctx, conn, "PING"); err != nil {
			return err
		}
		masters, err := clusterMasters(ctx, conn)
		if err != nil {
			return err
		}
		// One master a Ping, in turn, waits for its replicas (see
		// replicasCheck): all of them, one after another, would take the
		// probe past its deadline on a Cluster of a few masters whose
		// replicas lag.
		turn := int((s.pingTurn.Add(1) - 1) % uint32(max(len(masters), 1)))
		for i, addr := range masters {
			err := s.pingNode(ctx, addr, i == turn)
			var reply redis.Error
			switch {
			case err == nil:
			case errors.As(err, &reply) && clusterDown(reply):
				// Every master says so: no one of them is to blame.
				return err
			default:
				// Which master: an ACL line mended on all but one node,
				// or one master down, shows nowhere else.
				return fmt.Errorf("master %s: %w", addr, err)
			}
		}
		return nil
	})
}

// pingWritable sends PING, GETEX of the key prefix (the session prefix
// with no id) and EXISTS of two keys under it in different hash slots,
// then the permission checks, pipelined, and returns what sendProbes
// does: the first error any of the first three gets, such as READONLY
// from a replica for GETEX (a write command), LOADING, a broken
// connection, or from a Redis Cluster node named as one server MOVED (the
// GETEX, on a node that does not own its slot) or CROSSSLOT (the EXISTS,
// which such a node refuses whichever slots it owns).
func (s *Store) pingWritable(ctx context.Context, conn redis.Conn) error {
	// The hash tags {a} and {b} put the keys in slots 15495 and 3300,
	// whatever the prefix. Neither key is ever a session's (no id).
	checks := append([]probe{
		{"PING", nil, "", ""},
		{"GETEX", []any{s.prefix}, "session:", ""},
		{"EXISTS", []any{s.prefix + "{a}", s.prefix + "{b}"}, "session:", ""},
	}, s.permissionProbes()...)
	return s.sendProbes(ctx, conn, checks, 3, append(s.evictionCheck("", evictsSessions, &s.evicting), s.replicasCheck("")...)...)
}

// pingNode sends PING and the permission checks to the cluster node at
// addr.
func (s *Store) pingNode(ctx context.Context, addr string, replicas bool) (err error) {
	conn, err := s.getConn(ctx, nodeSource{s.cluster, addr})
	if err != nil {
		return err
	}
	defer func() {
		// As attempt does: Close would send the probes queued and wait
		// for their replies for ReadTimeout, past ctx's deadline, while
		// this Ping holds the Store's turn of calls without a key.
		if err != nil && contextError(ctx) != nil {
			abandon(conn)
		}
		conn.Close()
	}()
	// GETEX and EXISTS, as on one server, of a key of one slot: a master
	// that does not own it answers MOVED, which Redis sends after it has
	// found the command and checked the ACL.
	checks := append([]probe{
		{"PING", nil, "", ""},
		{"GETEX", []any{s.prefix}, "session:", ""},
		{"EXISTS", []any{s.prefix}, "session:", ""},
	}, s.permissionProbes()...)
	reads := s.evictionCheck(addr, evictsSessions, &s.evicting)
	if replicas {
		reads = append(reads, s.replicasCheck(addr)...)
	}
	return s.sendProbes(ctx, conn, checks, 1, reads...)
}

// probe is a command Ping sends.
type probe struct {
	cmd  string
	args []any
	keys string // the key pattern its keys fall in, without KeyPrefix and "~" ("session:"), or ""
	// since is the Redis version that introduced the command in the form
	// sent ("7.0" for PEXPIREAT with NX), or "" for a form older than any
	// Redis sessionkit knows. An unknown command fails Ping whatever the
	// probe: the server is older, or its provider renamed or disabled the
	// command. Any other ERR reply fails it only for a probe with a since
	// (see versionError).
	since string
}

// versionError is an ERR reply other than "unknown command" to a probe
// with a since: an older Redis refuses an option it does not know with
// "wrong number of arguments" (Redis 6.2 for PEXPIREAT ... NX) or a syntax
// error. Its text names the form and the version it needs. An unknown
// command stays the server's reply, which Describe explains.
type versionError struct {
	form  string // "PEXPIREAT with NX"
	since string // "7.0"
	reply redis.Error
}

func (e *versionError) Error() string {
	return fmt.Sprintf("%s needs Redis %s or later: %s", e.form, e.since, e.reply)
}

func (e *versionError) Unwrap() error { return e.reply }

// refusedForm returns the error with which Ping fails on reply, an ERR
// reply to p: an unknown command, or any to a probe with a since, whose
// last argument names the option of that version ("NX").
func refusedForm(p probe, reply redis.Error) error {
	if unknownCommand(reply) != "" {
		return reply
	}
	form := p.cmd
	if len(p.args) > 1 {
		if opt, ok := p.args[len(p.args)-1].(string); ok {
			form += " with " + opt
		}
	}
	return &versionError{form: form, since: p.since, reply: reply}
}

// reader is a command Ping sends for its reply, which is no check: read
// is called with it, whatever it is, and it fails nothing.
type reader struct {
	cmd  string
	args []any
	read func(reply any)
}

// evictionLogInterval is the least time between two of Ping's warnings
// that Redis may evict keys: a setting that lasts needs no line every
// readiness probe.
const evictionLogInterval = time.Hour

// Warnings of evictionCheck: what evicted keys cost, for Ping and for
// PingCounter.
const (
	evictsSessions = `redisstore: Redis may evict sessions and user indexes once full: set maxmemory-policy noeviction; an evicted index makes "log out everywhere" miss its user's live sessions`
	evictsCounters = `redisstore: Redis may evict rate-limit counters once full: set maxmemory-policy noeviction; a flood of new counters then lifts the limits of the counters it evicts, lockouts too`
)

// evictionCheck returns the INFO memory with which Ping (and PingCounter)
// checks that the server at addr ("" on one server or under Sentinel)
// cannot evict keys, and logs warning when it can, at most as often as
// limiter lets it (each warning has its own, so that a Store that does both
// warns of both): a maxmemory with a maxmemory-policy other than
// noeviction. It returns none when the Store does not check (see
// checkEviction).
func (s *Store) evictionCheck(addr, warning string, limiter *loglimit.Limiter) []reader {
	if !s.checkEviction.Load() {
		return nil
	}
	return []reader{{cmd: "INFO", args: []any{"memory"}, read: func(reply any) {
		info, err := redis.String(reply, nil)
		var re redis.Error
		if errors.As(err, &re) && replyCode(re) == "NOPERM" {
			s.checkEviction.Store(false)
		}
		if err != nil {
			return // refused, or a server without INFO
		}
		var ns NodeStats
		if parseNodeInfo(info, &ns) != nil || ns.MaxMemory == 0 || ns.MaxMemoryPolicy == "" || ns.MaxMemoryPolicy == "noeviction" {
			return
		}
		limiter.Do(time.Now(), func(suppressed int) {
			attrs := []slog.Attr{
				slog.String("maxmemory_policy", ns.MaxMemoryPolicy),
				slog.Int64("maxmemory", ns.MaxMemory),
			}
			if addr != "" {
				attrs = append(attrs, slog.String("node", addr))
			}
			s.log.LogAttrs(context.Background(), slog.LevelWarn, warning, append(attrs, slog.Int("suppressed", suppressed))...)
		})
	}}}
}

// replicasCheck returns, with WaitReplicas, a WAIT for that many replicas,
// which returns the number of the master's replicas that are connected,
// not resyncing, and have the writes the connection made, if it made any
// (one that made none, such as a new one, counts a replica stalled but
// connected), as soon as they have answered, or within a short wait
// (replicasCheckWait; not WAIT 0 0, which counts the replicas' last
// acknowledgements, up to a second old: it would miss those in step with
// a connection that has just written), and logs a
// warning when that is fewer than WaitReplicas, at most once an hour:
// until more are in step, every logout and revocation, and every request
// with an ended token, fails (503), while Ping passes, as it does for a
// Redis that refuses writes for want of memory. A replica in step but
// slower to answer than the wait (far away) counts as lacking, which the
// warning names as a cause. A refused WAIT is the permission probe's to
// report. addr names the node, on a Cluster, where a Ping asks one master
// in turn.
func (s *Store) replicasCheck(addr string) []reader {
	if s.replicas == 0 {
		return nil
	}
	wait := max(min(replicasCheckWait, s.timeout/4).Milliseconds(), 1)
	return []reader{{cmd: "WAIT", args: []any{s.replicas, wait}, read: func(reply any) {
		n, err := redis.Int(reply, nil)
		if err != nil || n >= s.replicas {
			return
		}
		s.fewReplicas.Do(time.Now(), func(suppressed int) {
			attrs := []slog.Attr{slog.Int("replicas", n), slog.Int("wait_replicas", s.replicas), slog.Int64("waited_ms", wait)}
			if addr != "" {
				attrs = append(attrs, slog.String("node", addr))
			}
			s.log.LogAttrs(context.Background(), slog.LevelWarn,
				"redisstore: fewer replicas than WaitReplicas acknowledged the master's writes within Ping's wait: logouts and reads of ended sessions fail (503) while they lack (a replica down, resyncing, or slower than that to answer); check INFO replication, or lower REDIS_WAIT_REPLICAS",
				append(attrs, slog.Int("suppressed", suppressed))...)
		})
	}}}
}

// replicasCheckWait is the most that Ping's check of the replicas waits for
// them (see replicasCheck): their answer takes a round trip when they are
// in step, so only a master without enough of them makes Ping this slower.
const replicasCheckWait = 100 * time.Millisecond

// permissionProbes returns the commands with which Ping checks the ACL
// user's permissions: a form that changes nothing of every command the
// Store sends for sessions and users' indexes, on the keys
// "<KeyPrefix>session:" and "<KeyPrefix>user:", which no session or index
// ever has. An EXEC the ACL refuses discards the transaction, and DISCARD,
// sent after it, answers "without MULTI" when allowed, so none is left
// open.
func (s *Store) permissionProbes() []probe {
	sess, user := s.prefix, s.keyPrefix+"user:"
	expires := time.Now().Add(time.Hour).UnixMilli()
	probes := []probe{
		{"GET", []any{sess}, "session:", ""},
		{"SET", []any{sess, "", "XX"}, "session:", ""},
		{"DEL", []any{sess}, "session:", ""},
		{"MGET", []any{sess}, "session:", ""},
		{"SCAN", []any{0, "MATCH", escapeGlob(sess), "COUNT", 1}, "", ""},
		{"ZADD", []any{user, "XX", 0, ""}, "user:", ""},
		{"ZRANGE", []any{user, 0, -1}, "user:", ""},
		{"ZREM", []any{user, ""}, "user:", ""},
		{"ZREMRANGEBYSCORE", []any{user, 1, 0}, "user:", ""},
		// A login's two forms: Redis 6.2 refuses both options.
		{"PEXPIREAT", []any{user, expires, "NX"}, "user:", "7.0"},
		{"PEXPIREAT", []any{user, expires, "GT"}, "user:", "7.0"},
		{"WATCH", []any{sess}, "session:", ""},
		{"UNWATCH", nil, "", ""},
	}
	if s.replicas > 0 {
		// Waiting for no replica returns at once.
		probes = append(probes, probe{"WAIT", []any{0, 0}, "", ""})
	}
	return append(probes,
		probe{"MULTI", nil, "", ""},
		probe{"EXEC", nil, "", ""},
		probe{"DISCARD", nil, "", ""},
	)
}

// sendProbes sends the probes, then the commands of reads, pipelined, and
// reads every reply. It returns the first error reply of the first strict
// probes; after those, the first unknown command or refused form (see
// probe.since), in the order sent; else the first NOPERM of the probes, as
// a *permissionError that also lists the other commands denied. A NOPERM
// of a strict probe comes before an unknown command. Each read gets its
// command's reply.
func (s *Store) sendProbes(ctx context.Context, conn redis.Conn, probes []probe, strict int, reads ...reader) error {
	for _, p := range probes {
		if err := conn.Send(p.cmd, p.args...); err != nil {
			return err
		}
	}
	for _, r := range reads {
		if err := conn.Send(r.cmd, r.args...); err != nil {
			return err
		}
	}
	replies, err := redis.Values(cmd(ctx, conn, "")) // flushes, then reads every reply
	if err != nil {
		return err
	}
	var refused error
	strictRefused := false // a strict probe got NOPERM: that comes first
	for i, r := range replies {
		if i >= len(probes) && i-len(probes) < len(reads) {
			reads[i-len(probes)].read(r)
			continue
		}
		reply, ok := r.(redis.Error)
		if !ok || i >= len(probes) {
			continue
		}
		if replyCode(reply) == "ERR" && (unknownCommand(reply) != "" || probes[i].since != "") && !strictRefused {
			// The server lacks the command, or the form sent.
			return refusedForm(probes[i], reply)
		}
		if code := replyCode(reply); code == "EXECABORT" {
			// EXEC refused by the ACL answers "EXECABORT Transaction
			// discarded because of: NOPERM ...", and discards the
			// transaction.
			if _, noperm, ok := strings.Cut(string(reply), ": NOPERM"); ok {
				reply = redis.Error("NOPERM" + noperm)
			}
		}
		if replyCode(reply) == "NOPERM" {
			pe := &permissionError{cmd: probes[i].cmd, reply: reply}
			if probes[i].keys != "" {
				pe.keys = "~" + s.keyPrefix + probes[i].keys + "*"
			}
			// Every command denied, not only the first: an ACL line
			// mended one command per restart takes a dozen restarts.
			if first, ok := refused.(*permissionError); ok {
				first.add(pe)
			} else {
				refused = cmp.Or(refused, error(pe))
			}
			strictRefused = strictRefused || i < strict
		} else if (i < strict || clusterDown(reply)) && refused == nil {
			return reply
		}
	}
	return refused
}

// clusterDown reports whether reply is a Cluster node's refusal of every
// command with a key: the cluster is down (a slot without a master, under
// Redis's default cluster-require-full-coverage yes, or most masters
// unreachable), where PING still answers. Not "CLUSTERDOWN
// Hash slot not served", which with cluster-require-full-coverage no
// refuses one slot's keys only: Ping's key happens to be in one, and
// failing every instance's readiness for it would take the other slots'
// users down too.
func clusterDown(reply redis.Error) bool {
	return replyCode(reply) == "CLUSTERDOWN" && !strings.Contains(string(reply), "Hash slot not served")
}

// permissionError is a NOPERM reply to one of Ping's commands. Its text
// names the commands, never a key.
type permissionError struct {
	cmd   string   // "ZADD"
	more  []string // other commands denied with it, in the order sent
	keys  string   // the ACL key pattern its keys need, "~myapp:user:*", or "" for none
	reply redis.Error
}

// keyDenial reports whether e is a refusal of keys rather than of the
// command: "NOPERM this user has no permissions to access one of the keys
// used as arguments" (Redis 7.0), "NOPERM No permissions to access a key"
// (7.2). A refusal of the command says "to run" instead, and from 7.2 names
// the user, whose name may hold "key" ("monkey"), never "to access".
func (e *permissionError) keyDenial() bool { return keyRefusal(e.reply) }

// keyRefusal reports whether reply, a NOPERM, refuses keys: see
// permissionError.keyDenial.
func keyRefusal(reply redis.Error) bool {
	text := strings.ToLower(string(reply))
	return strings.Contains(text, "to access") && strings.Contains(text, "key")
}

// add records that o's command was denied too, when both are refusals of
// commands. A refusal of keys names its own pattern alone: the other
// pattern, or commands, then show once that one is added.
func (e *permissionError) add(o *permissionError) {
	if !e.keyDenial() && !o.keyDenial() && o.cmd != e.cmd && !slices.Contains(e.more, o.cmd) {
		e.more = append(e.more, o.cmd)
	}
}

// commands returns the commands denied, e.cmd first.
func (e *permissionError) commands() []string {
	return append([]string{e.cmd}, e.more...)
}

func (e *permissionError) Error() string {
	return fmt.Sprintf("the ACL user (REDIS_USERNAME) may not run %s as sessionkit does: %s", strings.Join(e.commands(), ", "), e.reply)
}

func (e *permissionError) Unwrap() error { return e.reply }

// keyDenied returns err as a permissionError of cmd and the key patterns
// keys when it is Redis refusing cmd's keys under the ACL (NOPERM ... keys),
// so that Describe names the patterns to add; any other err as it is.
func keyDenied(err error, cmd, keys string) error {
	var reply redis.Error
	if errors.As(err, &reply) && replyCode(reply) == "NOPERM" && keyRefusal(reply) {
		return &permissionError{cmd: cmd, keys: keys, reply: reply}
	}
	return err
}

// Cluster reports whether the Store is on a Redis Cluster, where every call
// must keep to keys of one hash slot: package session then requires a
// TagKey, whose hash tags keep each user's keys together.
func (s *Store) Cluster() bool {
	return s.cluster != nil
}

// closeSettle is how long Close waits for the near-cache's borrow from
// its Source to end (see Close).
const closeSettle = 100 * time.Millisecond

// Close stops the near-cache, if any, and closes the Source if it has a
// Close method (as a *redis.Pool does); otherwise the latter does nothing
// and returns nil. It returns promptly even while Redis is stalled. A
// near-cache's dial through a *redis.Pool's Dial, which takes no context
// and may wait for as long as Redis does not answer (redigo's Dial without
// timeouts), is left running in one goroutine, which closes the connection
// when that Dial returns; likewise a borrow from the Source that New's
// near-cache makes to check the server (Close first waits up to 100ms for
// it, so as not to close a *redis.Pool under it); and, under Sentinel, a
// lookup of the master that stalled sentinels hold (Close waits up to
// 100ms for it, then leaves it to end within their timeouts). Give your pool
// DialContext, or Dial options with timeouts, to bound it. Calls after
// Close fail with ErrUnavailable, or with their context's error when it
// has ended; so do calls still running when it is called (handlers that
// outlived a server's Shutdown), without the panic that redigo's pool would
// give them (see getConn).
func (s *Store) Close() error {
	s.closed.Store(true)
	if s.near != nil {
		s.near.track.close()
		// redigo's Pool.Close races with a GetContext that waits for a
		// free connection (its first use sets up the pool's channel, and
		// one whose context ends hands its slot back, neither under the
		// pool's lock), and may make it panic: let a borrow the
		// near-cache left behind get past that wait first. Its context
		// has ended, so it does at once, unless it is dialling, which the
		// pool's Close does not race with.
		s.borrow.settle(closeSettle)
	}
	if c, ok := s.src.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// load reads the key, extending its time to live when ttl > 0.
func (s *Store) load(ctx context.Context, op, key string, ttl time.Duration) (record []byte, found bool, err error) {
	start := time.Now()
	err = s.do(ctx, op, key, func(ctx context.Context, conn redis.Conn) error {
		var reply any
		var err error
		if ttl > 0 {
			reply, err = cmd(ctx, conn, "GETEX", key, "PX", px(start, ttl))
		} else {
			reply, err = cmd(ctx, conn, "GET", key)
		}
		record, err = redis.Bytes(reply, err)
		if errors.Is(err, redis.ErrNil) {
			return nil
		}
		found = err == nil
		return err
	})
	return record, found, err
}

// set writes the record under id with SET key val PX ms and the condition
// (NX or XX), and reports whether Redis wrote it.
func (s *Store) set(ctx context.Context, op, id string, record []byte, ttl time.Duration, cond string) (written bool, err error) {
	if ttl <= 0 {
		return false, fmt.Errorf("redisstore: %s: ttl must be positive", op)
	}
	start := time.Now()
	key := s.prefix + id
	err = s.do(ctx, op, key, func(ctx context.Context, conn redis.Conn) error {
		_, err := redis.String(cmd(ctx, conn, "SET", key, record, "PX", px(start, ttl), cond))
		if errors.Is(err, redis.ErrNil) { // condition not met
			return nil
		}
		written = err == nil
		return err
	})
	return written, err
}

// remove deletes the key.
func (s *Store) remove(ctx context.Context, op, key string) error {
	return s.do(ctx, op, key, func(ctx context.Context, conn redis.Conn) error {
		_, err := cmd(ctx, conn, "DEL", key)
		return err
	})
}

// do runs f on a pooled connection under the Store's Timeout and wraps any
// error with its class (ErrUnavailable, ErrRefused or ErrContention) and op.
// The causes come from redigo, the network or the context and never contain
// command arguments, so no key reaches an error.
//
// key is the key f works on ("" for none): on a Redis Cluster the
// connection is bound to the node that serves key's hash slot, and every
// key f uses must share that slot. There, a call that failed without any
// command having run (no connection to the node yet, or a reply of MOVED,
// ASK, TRYAGAIN, CLUSTERDOWN or EXECABORT while slots move or a replica
// takes over) is tried again whole, after a short random wait, for as long
// as the time budget allows.
func (s *Store) do(ctx context.Context, op, key string, f func(ctx context.Context, conn redis.Conn) error) error {
	return s.run(ctx, op, s.src, key, f)
}

// doOn is do on a connection from src, which is not bound to a slot: for
// the calls that work on one cluster node's keys.
func (s *Store) doOn(ctx context.Context, src Source, op string, f func(ctx context.Context, conn redis.Conn) error) error {
	return s.run(ctx, op, src, "", f)
}

// run is do on a connection from src. It reports the call to the Store's
// Observer, if it has one.
func (s *Store) run(ctx context.Context, op string, src Source, key string, f func(ctx context.Context, conn redis.Conn) error) (err error) {
	if s.observer != nil {
		start := time.Now()
		defer func() { s.observer.ObserveCall(op, time.Since(start), err) }()
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var b backoff
	var bounced error // on a Cluster, the error of the last attempt that did not run
	for {
		var start time.Time
		if s.cluster != nil {
			start = time.Now() // for the backoff between retries
		}
		err := s.attempt(ctx, src, key, f)
		if err == nil {
			return nil
		}
		var cb callerError
		if errors.As(err, &cb) {
			return fmt.Errorf("redisstore: %s: %w", op, cb.err)
		}
		if errors.Is(err, errSwitched) && b.wait(ctx, 0) {
			continue // nothing ran: again, on a connection to the new master
		}
		// Only attempts that ran nothing come before this one (see the
		// retries above and below): with no connection for it either, the
		// call sent Redis nothing.
		sentNothing := errors.As(err, new(errNoConn))
		if s.cluster != nil && notRun(err) {
			if b.wait(ctx, time.Since(start)) {
				bounced = err
				continue
			}
		} else if ctxErr := contextError(ctx); bounced != nil && ctxErr != nil && !errors.As(err, new(redis.Error)) {
			// The call's time ran out during an attempt after others had
			// not run (a refused dial of the slot's master, or a MOVED
			// while a slot moves, say): name why they did not first, and
			// keep the cut-short attempt's error, whose commands may have
			// run (session's outcomeUnknown reads it).
			err = fmt.Errorf("%w, then %w: %w", bounced, ctxErr, err)
		}
		// redigo turns the context's deadline into a read deadline, so a
		// call that ran out of time often fails with an i/o timeout instead
		// of the context's error; add the latter so that errors.Is(err,
		// context.DeadlineExceeded) holds whichever fired first. Not to a
		// reply of Redis's own (LOADING, NOPERM...): it came in time, and
		// only the clock has moved on since.
		var reply redis.Error
		if ctxErr := contextError(ctx); ctxErr != nil && !errors.Is(err, ctxErr) && !errors.As(err, &reply) {
			err = fmt.Errorf("%w: %w", ctxErr, err)
		}
		err = classify(op, err, s.cluster != nil)
		if sentNothing {
			return unsent{err}
		}
		return err
	}
}

// getConn borrows a connection from src. It stands between the Store and
// redigo v1.9.3's Pool.GetContext, which panics (send on closed channel)
// when its context ends as it takes a free connection from a pool that
// Close has closed: waitVacantConn hands the slot back to the pool's
// channel without the pool's lock. A call that races Close (a handler still
// running as the server shuts down, its timeout expiring) would take the
// process down. So getConn refuses a context that has already ended (which
// meets that panic half the time on a closed pool), and once the Store is
// closed turns a panic of GetContext into errClosed: the pool is closed and
// left as it was.
func (s *Store) getConn(ctx context.Context, src Source) (conn redis.Conn, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	defer func() {
		if s.closed.Load() {
			if r := recover(); r != nil {
				conn, err = nil, errClosed
			}
		}
	}()
	return src.GetContext(ctx)
}

// attempt runs f once on a connection from src for key (see do), bound to
// key's slot when src is the Store's cluster. It tells the Store's Source
// of a failure that may mean the servers changed roles.
func (s *Store) attempt(ctx context.Context, src Source, key string, f func(ctx context.Context, conn redis.Conn) error) (err error) {
	if n, ok := s.src.(failureNoter); ok {
		defer func() {
			if err != nil {
				n.noteFailure(err)
			}
		}()
	}
	conn, err := s.getConn(ctx, src)
	if err != nil {
		return errNoConn{err}
	}
	if s.near != nil {
		conn = s.near.noteWrites(conn) // see nearwrites.go
	}
	var gate *nodeGate // the call's turn at its Cluster node, if any
	if s.cluster != nil && src == Source(s.cluster) {
		if gate, err = s.cluster.bind(ctx, conn, key); err != nil {
			conn.Close()
			return errNoConn{err}
		}
	}
	defer func() {
		conn.Close()
		gate.release() // after the connection is back in its pool
	}()
	defer func() {
		// contextError, not ctx.Err: cmd stops at the deadline itself,
		// which the context's timer may report a moment later.
		if err != nil && contextError(ctx) != nil {
			abandon(conn)
		}
	}()
	return f(ctx, conn)
}

// abandon makes conn unusable at once, for a call that ran out of time or
// was canceled. It may hold commands queued but never sent (cmd sends
// nothing once the context is done), or a WATCH or MULTI left open: the
// pool's Close would send them, with UNWATCH or DISCARD, and wait for the
// replies under the connection's own read timeout, far past the call's
// deadline when Redis stalls (a rate limit answered after its Timeout plus
// its ReadTimeout). A read deadline already past fails at once, and a
// redigo connection whose read failed is closed, which the pool then
// drops. What was queued is sent all the same, as the pool's Close would
// have sent it.
func abandon(conn redis.Conn) {
	redis.DoWithTimeout(conn, time.Nanosecond, "PING")
}

// failureNoter is a Source that wants to hear of failed calls: a Sentinel
// or Cluster source asks where the master is when a call fails in a way
// that says it may have moved.
type failureNoter interface {
	noteFailure(err error)
}

// errNoConn reports that no connection could be had, so no command was
// sent.
type errNoConn struct{ err error }

func (e errNoConn) Error() string { return e.err.Error() }
func (e errNoConn) Unwrap() error { return e.err }

// unsent marks the error of a call that sent Redis nothing: it got no
// connection (a pool exhausted or closed, a dial that failed), on its last
// attempt as on every one before. Its method Unsent tells package session,
// which does not import this one, that the call cannot have run, where a
// timeout alone would leave that open.
type unsent struct{ error }

func (e unsent) Unwrap() error { return e.error }

// Unsent reports true: see unsent.
func (unsent) Unsent() bool { return true }

// confirmMade is confirm after Redis has made the call's change. From then
// on a call goes on without ctx's cancellation (context.WithoutCancel,
// within the Store's Timeout for each step), whatever its step: stopping
// part way would leave the change half made (a login that ended the
// anonymous session it replaces, then stopped, would leave the request
// with neither) or made and unreported. confirmMade waits within the time
// ctx had left, which under a caller whose context reports no deadline
// (package session's finishing) is the Store's own.
func (s *Store) confirmMade(ctx context.Context, conn redis.Conn) error {
	if s.replicas == 0 {
		return nil
	}
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(s.timeout)
	}
	ctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), dl)
	defer cancel()
	return s.confirm(ctx, conn)
}

// confirm waits, when the Store has WaitReplicas, until that many replicas
// have the writes made so far on conn (WAIT), within the time left, and
// fails with errUnconfirmed, which is ErrUnavailable, when fewer confirm.
func (s *Store) confirm(ctx context.Context, conn redis.Conn) error {
	if s.replicas == 0 {
		return nil
	}
	if ctx.Value(unplacedKey{}) != nil {
		return errUnconfirmed
	}
	left, err := timeLeft(ctx)
	if err != nil {
		return err
	}
	// Leave WAIT's reply time to arrive before the read deadline. Redis
	// answers a WAIT that timed out at its next cron tick, up to 1000/hz
	// ms late (100 ms at the default hz of 10): under a Timeout of a few
	// hundred milliseconds, a WAIT that no replica answers may then fail
	// as a timeout rather than as "0 of n". Giving it less would fail
	// logouts whose replicas are up but a few milliseconds away.
	ms := max(milliseconds(left*3/4), 1)
	n, err := redis.Int(cmd(ctx, conn, "WAIT", s.replicas, ms))
	var reply redis.Error
	if errors.As(err, &reply) && strings.Contains(string(reply), "replica") {
		// A master demoted since the write answers "ERR WAIT cannot be
		// used with replica instances": the write may be lost, which is
		// what errUnconfirmed says; the reply names no key. Other replies
		// (NOPERM without +wait) are what they are.
		return fmt.Errorf("%w: %s", errUnconfirmed, reply)
	}
	if err != nil {
		return err
	}
	if n < s.replicas {
		return fmt.Errorf("%w: %d of %d", errUnconfirmed, n, s.replicas)
	}
	return nil
}

// confirming is the start of a call that ends sessions, which with
// WaitReplicas holds its connection through WAIT: as long as the replicas
// take, up to three quarters of the Timeout while one is stalled (stopped,
// or resyncing). Without a bound, a burst of logouts would then hold
// every pooled connection, and reads, logins and Ping, which wait for no
// replica, would wait for one until they failed too. So at most a quarter of
// MaxActive such calls (at least one) wait for replicas at once: confirming
// gives ctx a time budget of one Timeout, and waits, holding no
// connection, up to half of it for a place. A call that gets none ends its
// sessions all the same, without WAIT, and fails as unconfirmed (see
// confirm), as it would after waiting in vain. It returns the budget and
// the release of the place. Without WaitReplicas it returns ctx as it is.
func (s *Store) confirming(ctx context.Context) (context.Context, func()) {
	if s.waits == nil {
		return ctx, func() {}
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	wait, stop := context.WithTimeout(ctx, s.timeout/2)
	defer stop()
	select {
	case s.waits <- struct{}{}:
		return ctx, func() { <-s.waits; cancel() }
	case <-wait.Done():
		return context.WithValue(ctx, unplacedKey{}, true), cancel
	}
}

// unplacedKey marks the context of a call that got no place to wait for
// replicas: see confirming.
type unplacedKey struct{}

// errUnconfirmed reports a WAIT that fewer replicas than WaitReplicas
// answered in time.
var errUnconfirmed = errors.New("fewer replicas than Config.WaitReplicas confirmed the write in time")

// doTurn is do for an optimistic transaction on key: it first waits, within
// the same time budget, for the turn of key among this Store's calls (see
// turns), before it borrows a connection, so that waiting calls hold none.
func (s *Store) doTurn(ctx context.Context, op, key string, f func(ctx context.Context, conn redis.Conn) error) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	ctx, release, err := s.turns.take(ctx, key)
	if err != nil {
		return classify(op, err, s.cluster != nil)
	}
	defer release()
	return s.do(ctx, op, key, f)
}

// callerError carries an error of the caller's own function (a merge), which
// says nothing about Redis: do returns it unclassified.
type callerError struct{ err error }

func (e callerError) Error() string { return e.err.Error() }
func (e callerError) Unwrap() error { return e.err }

// contextError returns ctx.Err(), or context.DeadlineExceeded once the
// deadline has passed even if ctx has not noticed yet: the read deadline
// redigo derived from it can fire first.
func contextError(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return context.DeadlineExceeded
	}
	return nil
}

// px returns what is left of ttl, a time to live that the caller measured
// from start (when it called the Store), in whole milliseconds for a PX
// argument, and at least 1. A call that waited (for its turn, between
// optimistic attempts, on a slow Redis or pool) so gives a record no more
// life than the caller asked: a time to live that the caller cut at the
// session's absolute deadline would otherwise run past that deadline by
// the wait.
func px(start time.Time, ttl time.Duration) int64 {
	return max(milliseconds(ttl-time.Since(start)), 1)
}

// milliseconds returns d in whole milliseconds, rounded up.
func milliseconds(d time.Duration) int64 {
	ms := int64(d / time.Millisecond)
	if d%time.Millisecond > 0 {
		ms++
	}
	return ms
}

// escapeGlob escapes the characters SCAN's MATCH treats as special, so that
// a KeyPrefix such as "app[1]:" matches literally.
func escapeGlob(s string) string {
	if !strings.ContainsAny(s, `*?[]\^`) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\^`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// cmd sends one command on conn, after any queued with Send, and returns
// its reply, within the deadline of ctx. It stands in for redis.DoContext,
// which starts a goroutine and a channel for every command to watch ctx:
// every call here runs under do, whose ctx always has a deadline (the
// Store's Timeout), so a read deadline of the time left bounds the command
// just as well, at no cost. A cancellation before the deadline is then
// noticed between commands rather than during one, at most Timeout late.
//
// Without a deadline (a dial's AUTH, run with context.Background), the
// connection's own read timeout bounds the reply: redigo's DoWithTimeout
// with 0 would wait for ever, and a stalled Redis or sentinel would hold
// the dial of an ACL user without a password for good.
func cmd(ctx context.Context, conn redis.Conn, name string, args ...any) (any, error) {
	left, err := timeLeft(ctx)
	switch {
	case err != nil:
		return nil, err
	case left == 0:
		return conn.Do(name, args...)
	}
	return redis.DoWithTimeout(conn, left, name, args...)
}

// receive reads the reply of a command queued with Send, like cmd.
func receive(ctx context.Context, conn redis.Conn) (any, error) {
	left, err := timeLeft(ctx)
	switch {
	case err != nil:
		return nil, err
	case left == 0:
		return conn.Receive()
	}
	return redis.ReceiveWithTimeout(conn, left)
}

// timeLeft returns the time until the deadline of ctx, or ctx's error when
// it is done; 0 when ctx has no deadline.
func timeLeft(ctx context.Context) (time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	dl, ok := ctx.Deadline()
	if !ok {
		return 0, nil
	}
	left := time.Until(dl)
	if left <= 0 {
		return 0, context.DeadlineExceeded
	}
	return left, nil
}
