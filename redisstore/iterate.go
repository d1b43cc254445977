package redisstore

import (
	"context"
	"fmt"
	"strings"

	"github.com/gomodule/redigo/redis"
)

// scanCount is the COUNT hint of each SCAN: about how many keys Redis
// examines per batch.
const scanCount = 100

// Iterate calls fn for every session record in the store with its id, for
// example to end all sessions of a user when no index exists. It walks the
// keys with SCAN (never KEYS, which blocks the server) matching
// "<KeyPrefix>session:*", COUNT 100, and fetches each batch with one MGET on
// the same connection; records that expired or were removed between SCAN and
// MGET are skipped. The connection goes back to the pool before fn runs, so
// fn may call the Store, even with a pool of one connection.
//
// SCAN's guarantees apply: every record that exists for the whole iteration
// is visited, records added or removed meanwhile may or may not be, and an
// id may occasionally be visited twice. An error from fn stops the iteration
// and Iterate returns it unchanged. The Store's Timeout bounds each batch
// (one SCAN and one MGET), not the whole iteration; bound that with ctx.
func (s *Store) Iterate(ctx context.Context, fn func(id string, record []byte) error) error {
	match := escapeGlob(s.prefix) + "*"
	cursor := "0"
	for {
		var keys []string
		var records [][]byte
		err := s.do(ctx, "iterate", func(ctx context.Context, conn redis.Conn) error {
			var err error
			cursor, keys, err = scan(ctx, conn, cursor, match)
			if err != nil || len(keys) == 0 {
				return err
			}
			args := make([]any, len(keys))
			for i, k := range keys {
				args[i] = k
			}
			records, err = redis.ByteSlices(cmd(ctx, conn, "MGET", args...))
			if err == nil && len(records) != len(keys) {
				err = fmt.Errorf("MGET returned %d values for %d keys", len(records), len(keys))
			}
			return err
		})
		if err != nil {
			return err
		}
		for i, key := range keys {
			if records[i] == nil { // expired, removed, or not a string
				continue
			}
			if err := fn(strings.TrimPrefix(key, s.prefix), records[i]); err != nil {
				return err
			}
		}
		if cursor == "0" {
			return nil
		}
	}
}

// scan runs one SCAN step and returns the next cursor and the keys.
func scan(ctx context.Context, conn redis.Conn, cursor, match string) (string, []string, error) {
	reply, err := redis.Values(cmd(ctx, conn, "SCAN", cursor, "MATCH", match, "COUNT", scanCount))
	if err != nil {
		return "", nil, err
	}
	if len(reply) != 2 {
		return "", nil, fmt.Errorf("SCAN returned %d values, want 2", len(reply))
	}
	next, err := redis.String(reply[0], nil)
	if err != nil {
		return "", nil, fmt.Errorf("SCAN cursor: %w", err)
	}
	keys, err := redis.Strings(reply[1], nil)
	if err != nil {
		return "", nil, fmt.Errorf("SCAN keys: %w", err)
	}
	return next, keys, nil
}
