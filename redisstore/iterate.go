package redisstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
// MGET are skipped, and so are the pointers that renewed sessions leave
// behind (see [Store.MoveSession]), which are no records, and the
// records of another Store on the same database whose KeyPrefix lies
// under this one's (a KeyPrefix of "session:" under none): their keys
// hold a colon after this Store's "<KeyPrefix>session:", which no id does. On a Redis Cluster it walks every master in turn, as
// CLUSTER SLOTS lists them when Iterate starts. The connection goes back to
// the pool before fn runs, so fn may call the Store, even with a pool of one
// connection.
//
// SCAN's guarantees apply: every record that exists for the whole iteration
// is visited, records added or removed meanwhile may or may not be, and an
// id may occasionally be visited twice. On a Cluster that holds only while
// no slot moves and no master fails over during the walk: a record whose
// slot moves may be visited twice or not at all, and while a master serves
// a slot left half moved by a failover, Iterate fails with ErrUnavailable
// (CLUSTERDOWN) until redis-cli --cluster fix settles it (docs/scaling.md,
// "While slots move"). An error from fn stops the
// iteration and Iterate returns it unchanged. The Store's Timeout bounds
// each batch (one SCAN and one MGET), not the whole iteration; bound that
// with ctx.
func (s *Store) Iterate(ctx context.Context, fn func(id string, record []byte) error) error {
	if s.cluster == nil {
		return s.iterate(ctx, s.src, fn)
	}
	var masters []string
	err := s.do(ctx, "iterate", "", func(ctx context.Context, conn redis.Conn) error {
		var err error
		masters, err = clusterMasters(ctx, conn)
		return err
	})
	if err != nil {
		return err
	}
	for _, addr := range masters {
		if err := s.iterate(ctx, nodeSource{s.cluster, addr}, fn); err != nil {
			return err
		}
	}
	return nil
}

// nodeSource is the Source of one node of a cluster.
type nodeSource struct {
	cs   *clusterSource
	addr string
}

func (n nodeSource) GetContext(ctx context.Context) (redis.Conn, error) {
	return n.cs.node(ctx, n.addr)
}

// iterate is Iterate over the keys of the server that src connects to.
func (s *Store) iterate(ctx context.Context, src Source, fn func(id string, record []byte) error) error {
	match := escapeGlob(s.prefix) + "*"
	cursor := "0"
	for {
		var keys []string
		var records [][]byte
		err := s.doOn(ctx, src, "iterate", func(ctx context.Context, conn redis.Conn) error {
			var err error
			cursor, keys, err = scan(ctx, conn, cursor, match, "")
			keys = slices.DeleteFunc(keys, s.notRecord)
			if err != nil || len(keys) == 0 {
				return err
			}
			records, err = s.fetch(ctx, conn, keys)
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

// fetch returns the values of keys, nil for those that are gone: with one
// MGET, or on a Redis Cluster, where the keys of one node lie in many
// slots and MGET takes keys of one slot only, with pipelined GETs, one
// round trip either way. There a key whose slot moved away since SCAN
// counts as gone: it is visited on its new node, or not, as SCAN allows.
func (s *Store) fetch(ctx context.Context, conn redis.Conn, keys []string) ([][]byte, error) {
	if s.cluster == nil {
		args := make([]any, len(keys))
		for i, k := range keys {
			args[i] = k
		}
		records, err := redis.ByteSlices(cmd(ctx, conn, "MGET", args...))
		if err == nil && len(records) != len(keys) {
			err = fmt.Errorf("MGET returned %d values for %d keys", len(records), len(keys))
		}
		return records, err
	}
	for _, k := range keys {
		conn.Send("GET", k)
	}
	if err := conn.Flush(); err != nil {
		return nil, err
	}
	records := make([][]byte, len(keys))
	for i := range keys {
		reply, err := receive(ctx, conn)
		switch replyCode(err) {
		case "MOVED", "ASK":
			continue // moved away; any other error (CLUSTERDOWN) fails the batch
		case "WRONGTYPE":
			continue // another program's key, no record: MGET reads it as nil too
		}
		records[i], err = redis.Bytes(reply, err)
		if err != nil && !errors.Is(err, redis.ErrNil) {
			return nil, err
		}
	}
	return records, nil
}

// scan runs one SCAN step over the keys that match match and, unless typ
// is "", are of type typ, and returns the next cursor and the keys.
func scan(ctx context.Context, conn redis.Conn, cursor, match, typ string) (string, []string, error) {
	args := redis.Args{cursor, "MATCH", match, "COUNT", scanCount}
	if typ != "" {
		args = append(args, "TYPE", typ)
	}
	reply, err := redis.Values(cmd(ctx, conn, "SCAN", args...))
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
