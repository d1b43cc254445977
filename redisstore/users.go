package redisstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gomodule/redigo/redis"
)

// A user's sessions are indexed in a sorted set, "<KeyPrefix>user:<userID>:sessions",
// whose members are session ids scored by their absolute deadline in unix
// milliseconds. Scoring by the absolute deadline, which never moves, rather
// than by the idle expiry, which every read moves, keeps reads at one
// command: the index is never touched by a read. The set expires with its
// latest deadline, and every write prunes members past their deadline, so
// it holds at most the sessions created within one lifetime. Members whose
// record ended earlier (idle timeout, a lost write) are pruned whenever the
// index is read; they are never returned.
//
// Each operation leaves the index safe to read if it were split into single
// commands, as Redis Cluster would need: records are written after their
// member is added and deleted before it is removed, and readers check that
// a member's record exists.

// maxAttempts bounds the retries of an optimistic (WATCH) transaction whose
// index changed under it.
const maxAttempts = 10

var errContention = errors.New("index changed on every attempt")

func (s *Store) userKey(userID string) string {
	return s.keyPrefix + "user:" + userID + ":sessions"
}

// AddUserSession stores a new session of userID, in one round trip: the
// record under id with a time to live of ttl, only if id is free (SET NX);
// the id in the user's index, scored by deadline; and the removal of the
// record of replaced (the session the login request came with; "" for
// none). With limit > 0 it also revokes the user's oldest live sessions so
// that at most limit remain, counting the new one, and returns their ids;
// then the index is watched and the writes are one MULTI/EXEC transaction,
// so that two logins cannot both slip under the limit, at the cost of two
// more round trips.
//
// Without a limit the commands go as a plain pipeline, ordered so that
// every prefix of it is safe (as Redis Cluster, which cannot run them as one
// transaction, would need): the replaced record goes first, so a failure
// never leaves the old token alive beside the new one; the new record comes
// before its index entry, and the token is not handed out before the whole
// pipeline has run, so no usable session is ever missing from the index.
func (s *Store) AddUserSession(ctx context.Context, userID, id string, record []byte, ttl time.Duration, deadline time.Time, limit int, replaced string) (revoked []string, err error) {
	if ttl <= 0 {
		return nil, errors.New("redisstore: add user session: ttl must be positive")
	}
	if userID == "" {
		return nil, errors.New("redisstore: add user session: empty user id")
	}
	add := addition{index: s.userKey(userID), id: id, record: record, ttl: ttl, deadline: deadline, replaced: replaced}
	err = s.do(ctx, "add user session", func(ctx context.Context, conn redis.Conn) error {
		if limit <= 0 {
			setAt := s.sendAddition(conn, add)
			replies, err := redis.Values(cmd(ctx, conn, "")) // flush, read every reply
			if err != nil {
				return err
			}
			return added(replies, setAt)
		}
		for range maxAttempts {
			if _, err := cmd(ctx, conn, "WATCH", add.index); err != nil {
				return err
			}
			live, dead, err := s.members(ctx, conn, add.index)
			if err != nil {
				return err
			}
			add.gone, revoked = dead, nil
			if n := len(live) - (limit - 1); n > 0 {
				revoked = live[:n] // oldest first
			}
			conn.Send("MULTI")
			setAt := s.sendAddition(conn, add, revoked...)
			replies, err := redis.Values(cmd(ctx, conn, "EXEC"))
			if errors.Is(err, redis.ErrNil) {
				continue // the watched index changed: look again
			}
			if err != nil {
				return err
			}
			return added(replies, setAt)
		}
		return errContention
	})
	return revoked, err
}

// addition is what AddUserSession writes.
type addition struct {
	index, id string
	record    []byte
	ttl       time.Duration
	deadline  time.Time
	replaced  string   // record to delete with it, or ""
	gone      []string // index members whose record is gone
}

// sendAddition queues the commands of a, and the deletion of the sessions
// revoked, in an order whose every prefix is safe (see AddUserSession), and
// returns the position of the SET among them.
func (s *Store) sendAddition(conn redis.Conn, a addition, revoked ...string) (setAt int) {
	n := 0
	send := func(name string, args ...any) {
		conn.Send(name, args...)
		n++
	}
	if a.replaced != "" {
		send("DEL", s.prefix+a.replaced)
	}
	for _, rid := range revoked {
		send("DEL", s.prefix+rid)
	}
	setAt = n
	send("SET", s.prefix+a.id, a.record, "PX", milliseconds(a.ttl), "NX")
	ms := a.deadline.UnixMilli()
	send("ZADD", a.index, ms, a.id)
	// NX sets the expiry of a new index, GT moves it later; GT alone would
	// leave a new index (no expiry yet) without one.
	send("PEXPIREAT", a.index, ms, "NX")
	send("PEXPIREAT", a.index, ms, "GT")
	send("ZREMRANGEBYSCORE", a.index, "-inf", time.Now().UnixMilli())
	if gone := append(a.gone, revoked...); len(gone) > 0 {
		send("ZREM", redis.Args{a.index}.AddFlat(gone)...)
	}
	return setAt
}

// added checks the replies of the commands sendAddition queued.
func added(replies []any, setAt int) error {
	for _, r := range replies {
		if e, ok := r.(redis.Error); ok {
			return e
		}
	}
	if setAt >= len(replies) || replies[setAt] == nil {
		// 256 random bits never collide; a taken id means a broken random source.
		return errors.New("session id already taken")
	}
	return nil
}

// members returns the ids in index whose record still exists, oldest
// deadline first, and those whose record is gone. It prunes nothing.
func (s *Store) members(ctx context.Context, conn redis.Conn, index string) (live, dead []string, err error) {
	ids, err := redis.Strings(cmd(ctx, conn, "ZRANGE", index, 0, -1))
	if err != nil || len(ids) == 0 {
		return nil, nil, err
	}
	for _, id := range ids {
		conn.Send("EXISTS", s.prefix+id)
	}
	if err := conn.Flush(); err != nil {
		return nil, nil, err
	}
	for _, id := range ids {
		n, err := redis.Int(receive(ctx, conn))
		if err != nil {
			return nil, nil, err
		}
		if n == 1 {
			live = append(live, id)
		} else {
			dead = append(dead, id)
		}
	}
	return live, dead, nil
}

// RemoveUserSession deletes the record under id and removes id from the
// index of userID ("" for an anonymous session, which has no index).
// Removing a missing id is not an error.
func (s *Store) RemoveUserSession(ctx context.Context, userID, id string) error {
	if userID == "" {
		return s.Remove(ctx, id)
	}
	return s.do(ctx, "remove user session", func(ctx context.Context, conn redis.Conn) error {
		conn.Send("DEL", s.prefix+id) // record first: the index may lag, never lead
		_, err := cmd(ctx, conn, "ZREM", s.userKey(userID), id)
		return err
	})
}

// UserSessions returns the ids and records of the live sessions of userID,
// oldest deadline first. Its cost depends on that user's sessions only:
// ZRANGE on the index, then one MGET. Members whose record is gone, and
// members past their deadline, are pruned from the index on the way.
func (s *Store) UserSessions(ctx context.Context, userID string) (ids []string, records [][]byte, err error) {
	index := s.userKey(userID)
	err = s.do(ctx, "user sessions", func(ctx context.Context, conn redis.Conn) error {
		conn.Send("ZREMRANGEBYSCORE", index, "-inf", time.Now().UnixMilli())
		all, err := redis.Strings(cmd(ctx, conn, "ZRANGE", index, 0, -1))
		if err != nil || len(all) == 0 {
			return err
		}
		keys := make(redis.Args, len(all))
		for i, id := range all {
			keys[i] = s.prefix + id
		}
		recs, err := redis.ByteSlices(cmd(ctx, conn, "MGET", keys...))
		if err != nil {
			return err
		}
		if len(recs) != len(all) {
			return fmt.Errorf("MGET returned %d values for %d keys", len(recs), len(all))
		}
		var gone []string
		for i, rec := range recs {
			if rec == nil {
				gone = append(gone, all[i])
				continue
			}
			ids, records = append(ids, all[i]), append(records, rec)
		}
		if len(gone) > 0 {
			_, err = cmd(ctx, conn, "ZREM", redis.Args{index}.AddFlat(gone)...)
		}
		return err
	})
	return ids, records, err
}

// RemoveUserSessions deletes every session of userID except keep ("" keeps
// none) and returns the ids it took out of the index (which may include
// sessions that had already expired). The index is watched: a session
// added while this runs is either deleted too or was added after it
// returned.
func (s *Store) RemoveUserSessions(ctx context.Context, userID, keep string) (removed []string, err error) {
	index := s.userKey(userID)
	err = s.do(ctx, "remove user sessions", func(ctx context.Context, conn redis.Conn) error {
		for range maxAttempts {
			if _, err := cmd(ctx, conn, "WATCH", index); err != nil {
				return err
			}
			all, err := redis.Strings(cmd(ctx, conn, "ZRANGE", index, 0, -1))
			if err != nil {
				return err
			}
			removed = removed[:0]
			for _, id := range all {
				if id != keep {
					removed = append(removed, id)
				}
			}
			if len(removed) == 0 {
				_, err := cmd(ctx, conn, "UNWATCH")
				return err
			}
			keys := make(redis.Args, len(removed))
			for i, id := range removed {
				keys[i] = s.prefix + id
			}
			conn.Send("MULTI")
			conn.Send("DEL", keys...)
			conn.Send("ZREM", redis.Args{index}.AddFlat(removed)...)
			_, err = redis.Values(cmd(ctx, conn, "EXEC"))
			if errors.Is(err, redis.ErrNil) {
				continue
			}
			return err
		}
		return errContention
	})
	return removed, err
}
