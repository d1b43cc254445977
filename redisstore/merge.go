package redisstore

import (
	"bytes"
	"context"
	"errors"
	"time"

	"github.com/gomodule/redigo/redis"
)

// Merge replaces the record under id with merge(current record) and sets its
// time to live to ttl, only while a record exists, as one optimistic
// transaction: it WATCHes the key and reads it, then writes with
// MULTI/SET XX/EXEC, and starts again, after a short random wait, if another
// write got in between, for as long as the call's time budget allows (then
// ErrContention). So two requests that change different parts of a session
// both keep their change, and a session ended meanwhile is not written back.
// It reports whether it wrote; an error from merge ends it, unwritten.
// When merge returns the record as it is (the same bytes), there is
// nothing to write: it UNWATCHes, leaves the time to live as it is, and
// reports true, the record being there (see session.Store).
//
// Each attempt is two round trips: WATCH and GET pipelined, then the
// transaction.
func (s *Store) Merge(ctx context.Context, id string, ttl time.Duration, merge func(current []byte) ([]byte, error)) (written bool, err error) {
	if ttl <= 0 {
		return false, errors.New("redisstore: merge: ttl must be positive")
	}
	start := time.Now()
	key := s.prefix + id
	err = s.doTurn(ctx, "merge", key, func(ctx context.Context, conn redis.Conn) error {
		return s.optimistic(ctx, func() (retry bool, err error) {
			conn.Send("WATCH", key)
			current, err := redis.Bytes(cmd(ctx, conn, "GET", key))
			if errors.Is(err, redis.ErrNil) {
				_, err := cmd(ctx, conn, "UNWATCH")
				return false, err // gone: nothing to merge into
			}
			if err != nil {
				return false, err
			}
			next, err := merge(current)
			if err != nil {
				// The pool's connection wrapper UNWATCHes on Close.
				return false, callerError{err}
			}
			if bytes.Equal(next, current) {
				// Nothing to write (see session.Store's Merge): the
				// record is there, as the caller's changes leave it.
				written = true
				_, err := cmd(ctx, conn, "UNWATCH")
				return false, err
			}
			conn.Send("MULTI")
			conn.Send("SET", key, next, "PX", px(start, ttl), "XX")
			replies, err := redis.Values(cmd(ctx, conn, "EXEC"))
			if errors.Is(err, redis.ErrNil) {
				return true, nil // written by someone else since the GET: merge again
			}
			if err != nil {
				return false, err
			}
			if e, ok := replies[0].(redis.Error); ok {
				return false, e
			}
			written = replies[0] != nil
			return false, nil
		})
	})
	return written, err
}
