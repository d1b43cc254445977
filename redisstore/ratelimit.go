package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gomodule/redigo/redis"
)

// maxRateKeys bounds the counters one CountRequests call may touch: a
// limiter has a handful of rules, never hundreds.
const maxRateKeys = 16

// CountRequests adds one request to each of the fixed-window counters
// named by keys, and returns, for each, the requests counted in its
// current window and the time until that window ends. It is the counter
// of package middleware's rate limiter (middleware.RateCounter).
//
// The counter of keys[i] lives under "<KeyPrefix>rate_limit:<keys[i]>". Its
// window opens at the first request counted there and lasts windows[i]
// (whole milliseconds, rounded up); when it ends, Redis deletes the key and
// the next request opens a new window. Every request in a window is
// counted, so the first n of a window see counts 1 to n, whatever the
// number of Stores (app instances) sharing the Redis: a limiter that admits
// counts up to N admits exactly N per window. The window is kept by Redis's
// own clock (the key's time to live), so the app instances' clocks play no
// part.
//
// Each key costs INCR, PEXPIRE key ms LT and PTTL, all keys in one
// MULTI/EXEC transaction: one round trip, plain commands (no Lua), and a key
// never lives without an expiry, even if a connection breaks part way. LT
// leaves the time to live of an open window alone, unless it is longer
// than the window given (a window made shorter): requests refused for
// being over the limit do not prolong it. On a Redis Cluster each key is
// counted in a transaction of its own (the keys of one call hash to
// different slots), one round trip per key.
//
// keys are the caller's: they must be non-empty, without "{" or "}" (hash
// tags would move them between Cluster slots), and must not embed a
// secret, a user name or an address, since MONITOR, SLOWLOG and backups
// show them; middleware's limiter passes "<keyed hash>:<rule name>". A
// call with no keys, more than 16, keys and windows of different lengths,
// a bad key or a window under a millisecond is an error and sends nothing.
// Failures are classified like every Store call (ErrUnavailable,
// ErrRefused) and reported to the Observer as op "rate_limit".
func (s *Store) CountRequests(ctx context.Context, keys []string, windows []time.Duration) (counts []int64, resets []time.Duration, err error) {
	if err := checkRateKeys(keys, windows); err != nil {
		return nil, nil, err
	}
	full := make([]string, len(keys))
	for i, k := range keys {
		full[i] = s.keyPrefix + "rate_limit:" + k
	}
	counts = make([]int64, len(keys))
	resets = make([]time.Duration, len(keys))
	pattern := "~" + s.keyPrefix + "rate_limit:*" // what the ACL must allow
	if s.cluster == nil {
		err = s.do(ctx, "rate_limit", full[0], func(ctx context.Context, conn redis.Conn) error {
			return keyDenied(countRequests(ctx, conn, full, windows, counts, resets), "INCR", pattern)
		})
		return counts, resets, err
	}
	for i := range full {
		err := s.do(ctx, "rate_limit", full[i], func(ctx context.Context, conn redis.Conn) error {
			return keyDenied(countRequests(ctx, conn, full[i:i+1], windows[i:i+1], counts[i:i+1], resets[i:i+1]), "INCR", pattern)
		})
		if err != nil {
			return nil, nil, err
		}
	}
	return counts, resets, nil
}

// PingCounter checks, counting nothing, that Redis lets CountRequests
// count: it queues CountRequests' commands (INCR, PEXPIRE LT, PTTL) for
// the key "<KeyPrefix>rate_limit:", which no counter has, in a
// transaction, which Redis checks against the ACL command by command as it
// queues them, and discards it, so nothing in Redis changes. It fails as
// CountRequests would, with ErrRefused naming the command or the key
// pattern the ACL denies, a command the server does not know, or PEXPIRE's
// LT, which a Redis older than 7.0 refuses (see Describe). Ping does not
// check these permissions, which only the rate limiter needs: call PingCounter at
// start-up where a limiter counts, so that an ACL without them stops the
// app rather than refusing every request the limiter counts. Like Ping, it
// logs a warning (at most once an hour) when the server may evict keys (a
// maxmemory-policy other than noeviction), which would evict counters, and
// with them the limits they hold.
func (s *Store) PingCounter(ctx context.Context) error {
	key := s.keyPrefix + "rate_limit:"
	return s.do(ctx, "ping", key, func(ctx context.Context, conn redis.Conn) error {
		// MULTI alone first: were it refused, the commands below would
		// run outside a transaction, and write.
		if err := s.sendProbes(ctx, conn, []probe{{"MULTI", nil, "", ""}}, 1); err != nil {
			return err
		}
		err := s.sendProbes(ctx, conn, []probe{
			{"INCR", []any{key}, "rate_limit:", ""},
			{"PEXPIRE", []any{key, 1000, "LT"}, "rate_limit:", "7.0"},
			{"PTTL", []any{key}, "rate_limit:", ""},
			{"DISCARD", nil, "", ""},
		}, 0, s.evictionCheck("", evictsCounters, &s.evictingCounters)...) // after DISCARD: INFO runs, not queued
		if err != nil {
			// The refusal may be DISCARD's, which would leave the
			// connection in the transaction: it goes, not back to the
			// pool.
			abandon(conn)
		}
		return err
	})
}

// checkRateKeys validates the arguments of CountRequests.
func checkRateKeys(keys []string, windows []time.Duration) error {
	switch {
	case len(keys) == 0:
		return errors.New("redisstore: rate_limit: no keys")
	case len(keys) > maxRateKeys:
		return fmt.Errorf("redisstore: rate_limit: %d keys, want at most %d", len(keys), maxRateKeys)
	case len(keys) != len(windows):
		return fmt.Errorf("redisstore: rate_limit: %d keys but %d windows", len(keys), len(windows))
	}
	for i, k := range keys {
		if k == "" || strings.ContainsAny(k, "{}") {
			return fmt.Errorf("redisstore: rate_limit: key %d is empty or contains { or }", i)
		}
		if windows[i] < time.Millisecond {
			return fmt.Errorf("redisstore: rate_limit: window %d is under a millisecond", i)
		}
	}
	return nil
}

// countRequests runs the transaction of CountRequests for keys (full key
// names) on conn and fills counts and resets.
func countRequests(ctx context.Context, conn redis.Conn, keys []string, windows []time.Duration, counts []int64, resets []time.Duration) error {
	conn.Send("MULTI")
	for i, k := range keys {
		conn.Send("INCR", k)
		// LT sets the window on a key that has no expiry (a new one:
		// Redis takes it for an infinite one) and shortens a longer one
		// (a rule whose Window was made shorter since), and leaves an
		// open window's alone, so that refused requests do not prolong it.
		// One millisecond less than the window: Redis keeps a key through
		// the millisecond its expiry names (it is gone only once the
		// clock is past it), so that the key lives the window exactly,
		// and the reset below, its PTTL and that millisecond, is the
		// window for the request that opens it, never ending on the
		// key's last millisecond.
		conn.Send("PEXPIRE", k, max(milliseconds(windows[i])-1, 1), "LT")
		conn.Send("PTTL", k)
	}
	replies, err := redis.Values(cmd(ctx, conn, "EXEC"))
	if err != nil {
		return err
	}
	if len(replies) != 3*len(keys) {
		return fmt.Errorf("EXEC answered %d replies, want %d", len(replies), 3*len(keys))
	}
	for i := range keys {
		n, err := redis.Int64(replies[3*i], nil)
		if err != nil {
			return err
		}
		ttl, err := redis.Int64(replies[3*i+2], nil)
		if err != nil {
			return err
		}
		counts[i] = n
		// The key is gone one millisecond after its PTTL runs out (see
		// the PEXPIRE above): a Retry-After made of the PTTL alone would
		// end on the key's last millisecond whenever the PTTL is a whole
		// number of seconds.
		resets[i] = time.Duration(ttl+1) * time.Millisecond
		if ttl < 0 {
			// -1 (no expiry) or -2 (gone) cannot follow PEXPIRE LT in the
			// same transaction; answer the whole window rather than zero.
			resets[i] = windows[i]
		}
	}
	return nil
}
