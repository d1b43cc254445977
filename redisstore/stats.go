package redisstore

import (
	"sync/atomic"
	"time"

	"github.com/gomodule/redigo/redis"
)

// Observer is told of every Store call, for metrics. Its method is called
// synchronously when the call ends, on the caller's goroutine, and must be
// quick and safe for concurrent use.
type Observer interface {
	// ObserveCall reports a call named op that took took, including the
	// wait for a connection and any retries, and ended with err: nil, or
	// an error matching ErrUnavailable, ErrRefused or ErrContention (or,
	// from Merge and MoveSession, the merge function's own error). The ops
	// are load (and each pointer of a renewed session that a logout, a
	// login or a change looks for: MovedTo), insert, update, merge, remove, ping,
	// iterate (one per batch), add_user_session (a login), move_session (a
	// renewal), remove_user_session (a logout or revocation), user_sessions (a
	// listing), vouch (with WaitReplicas, the wait for the replicas of a
	// Load that found no record, and VouchUser), remove_user_sessions (log
	// out everywhere), key_stats
	// (Store.KeyStats: one per SCAN step and per node), rate_limit
	// (Store.CountRequests: one per call, one per key on a Redis Cluster;
	// middleware.RateLimit makes two for a request when rules by a body
	// field follow rules by address or user), take_scs (the reads of an scs session that
	// session.Config.FromSCS migrates, SCSRecords.Peek then Take, and the
	// marker it leaves; on a Redis Cluster Take reports two calls), and find, commit and delete (the
	// scs.Store methods). A Store method may report several
	// calls: on a Redis Cluster a login that replaces a session in another
	// slot reports add_user_session twice, and a renewal across slots
	// move_session then insert or add_user_session (an anonymous one:
	// move_session, insert, move_session); count logins and
	// renewals with session.Metrics.
	ObserveCall(op string, took time.Duration, err error)
}

// PoolStats is a snapshot of a Store's connections, for readiness probes
// and metrics. On a Redis Cluster it adds up the pools of every node
// (Nodes), but for MaxActive.
type PoolStats struct {
	// Active is the number of open connections, in use or idle.
	Active int
	// Idle is the number of idle connections.
	Idle int
	// MaxActive is the most connections a pool opens at once: a pool with
	// Active == MaxActive and Idle == 0 is exhausted, and calls wait for a
	// connection. On a Cluster it is the most calls bound to one node at
	// once, further calls waiting for their turn, and a node's pool opens
	// more, for up to MaxActive Pings and, while a node stalls, refreshes
	// of the slot map (see Config.MaxActive), so that Active may exceed it.
	MaxActive int
	// Nodes is, on a Cluster, how many nodes' pools the counts add up,
	// and ExhaustedNodes how many of those nodes had MaxActive calls bound
	// to them, further calls waiting, when the snapshot was taken. Both
	// are zero elsewhere.
	Nodes, ExhaustedNodes int
	// Waits is how many times a call had to wait for a connection and got
	// one, and WaitTime how long those waits took in all, since the Store
	// opened. A wait that timed out is not counted (redigo counts only
	// the waits that end with a connection): watch Exhausted instead. On a
	// Cluster they count the waits for a turn at a node, where at most
	// MaxActive calls bind at once (a node's pool has no cap of its own).
	Waits    int64
	WaitTime time.Duration
	// Dials is how many connections were dialled, and DialErrors how many
	// of those dials failed (refused, timed out, TLS or authentication
	// failures, a Sentinel-named server that was no master), since the
	// Store opened. With Config.NearCache they include the dials of the
	// near-cache's own connection, one per (re)connection, which is no
	// pooled connection: Active and Idle leave it out, so a Store whose
	// near-cache has connected reports Dials 1 and Active 0 before any
	// call. Zero for a Store built by New, whose pool is the caller's.
	Dials      int64
	DialErrors int64
	// SentinelsDown reports, for a Store opened with SentinelAddrs, that
	// no sentinel named a master the last time the Store asked (every
	// second): every sentinel is down or unreachable, refuses the
	// Store's credentials, or monitors no master called SentinelMaster;
	// or that they named different masters, as many of them each (see
	// Config.SentinelAddrs).
	// Calls go on to the master named last, and succeed while it serves,
	// but a failover now goes unnoticed and a Store opened now finds no
	// master. The Store also logs it (slog.Default, at Warn, at most
	// every 10 seconds) and logs, at Info, when the sentinels answer
	// again. SentinelLookupFailures counts those lookups since the Store
	// opened. Both are zero outside Sentinel.
	SentinelsDown          bool
	SentinelLookupFailures int64
	// SentinelsFailing is, for a Store opened with two or more
	// SentinelAddrs, how many of them did not say where the master is at
	// the Store's last check of them all (every 30 seconds, all at once,
	// each within its dial and read timeouts): down or unreachable, stalled,
	// refusing the Store's sentinel credentials, or monitoring no master
	// called SentinelMaster. Calls go on while another
	// answers, but fewer sentinels are left to vote on a failover. The
	// Store logs each (at Warn, at most every 10 seconds for each). Zero
	// outside Sentinel, with one sentinel, and until a master is known.
	SentinelsFailing int
}

// Exhausted reports whether every connection is in use and the pool may
// open no more: further calls wait. On a Cluster it reports whether any
// node has MaxActive calls bound to it (ExhaustedNodes).
func (p PoolStats) Exhausted() bool {
	if p.Nodes > 0 {
		return p.ExhaustedNodes > 0
	}
	return p.MaxActive > 0 && p.Active >= p.MaxActive && p.Idle == 0
}

// PoolStats returns a snapshot of the Store's connection pools. It sends
// no command. For a Store built by New on a Source that is not a
// *redis.Pool, only the dial counts are known (zero).
func (s *Store) PoolStats() PoolStats {
	var ps PoolStats
	add := func(st redis.PoolStats) {
		ps.Active += st.ActiveCount
		ps.Idle += st.IdleCount
		ps.Waits += st.WaitCount
		ps.WaitTime += st.WaitDuration
	}
	switch src := s.src.(type) {
	case *redis.Pool:
		add(src.Stats())
		ps.MaxActive = src.MaxActive
	case *sentinelSource:
		add(src.pool.Stats())
		ps.MaxActive = src.pool.MaxActive
		ps.SentinelsDown, ps.SentinelLookupFailures, ps.SentinelsFailing = src.sentinelStats()
	case *clusterSource:
		for addr, st := range src.c.Load().Stats() {
			add(st)
			ps.Nodes++
			if src.turnsTaken(addr) {
				ps.ExhaustedNodes++
			}
		}
		ps.MaxActive = s.maxActive
		// A call waits for its turn at the node, not in the pool.
		ps.Waits, ps.WaitTime = src.waitStats()
	}
	if s.dials != nil {
		ps.Dials = s.dials.dials.Load()
		ps.DialErrors = s.dials.errors.Load()
	}
	return ps
}

// dialCounter counts the dials of a Store's pools.
type dialCounter struct {
	dials, errors atomic.Int64
}

// count counts a dial that ended with *err.
func (d *dialCounter) count(err *error) {
	d.dials.Add(1)
	if *err != nil {
		d.errors.Add(1)
	}
}
