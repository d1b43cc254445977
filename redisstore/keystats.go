package redisstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/gomodule/redigo/redis"
)

// DefaultKeyStatsSample is the default KeyStatsOptions.Sample.
const DefaultKeyStatsSample = 1000

// memorySamples is the SAMPLES argument of each MEMORY USAGE: how many
// members of a sorted set Redis looks at to size it. An index of up to 128
// members is stored as one listpack, whose size Redis reads at once, so its
// figure is exact whatever SAMPLES says; a larger one is a skiplist, which
// SAMPLES 0 would walk whole, holding the server for as long as that
// takes on an index of 100,000 sessions: Redis sizes it from its first 128
// members instead, which is close, since all members are session ids
// of one length. A record's figure is always exact.
const memorySamples = 128

// KeyStatsOptions configures [Store.KeyStats]. The zero value measures the
// memory of up to DefaultKeyStatsSample records and as many indexes.
type KeyStatsOptions struct {
	// Sample is how many session records, and how many user indexes,
	// KeyStats sizes with MEMORY USAGE to estimate the memory of all: the
	// first it meets, in SCAN's order, which is the order of the keys'
	// hashes and so in effect random. On a Cluster the sample is shared
	// among the masters. Default DefaultKeyStatsSample (1000) when zero;
	// negative sizes nothing and sends no MEMORY USAGE.
	Sample int
}

// KeyStats counts the sessions and user indexes of a Store and estimates
// their memory, for capacity planning; see [Store.KeyStats] and
// docs/capacity.md.
type KeyStats struct {
	// Sessions is the number of session records: string keys
	// "<KeyPrefix>session:*", but for the pointers renewed and replaced
	// sessions leave behind, "<KeyPrefix>session:<id>:next" (see
	// [Store.MovedTo]), the marks logouts of anonymous sessions leave,
	// "<KeyPrefix>session:<id>:ended" (see [Store.RemoveUserSession]),
	// and any other key with a colon after
	// "session:".
	Sessions int64
	// Indexes is the number of user indexes, sorted sets
	// "<KeyPrefix>user:*", and IndexEntries the number of session ids they
	// list in all (ZCARD). Ids whose record has ended stay listed until
	// the next write or listing of the user prunes them, so IndexEntries
	// may exceed the logged-in sessions among Sessions.
	Indexes      int64
	IndexEntries int64

	// SampledSessions is the number of records sized with MEMORY USAGE,
	// and SessionBytes their size in all.
	SampledSessions int64
	SessionBytes    int64
	// SampledIndexes is the number of indexes sized with MEMORY USAGE,
	// SampledIndexEntries the entries they hold, and IndexBytes their size
	// in all.
	SampledIndexes      int64
	SampledIndexEntries int64
	IndexBytes          int64

	// Nodes has one entry per server walked: the master on one server or
	// under Sentinel, every master on a Cluster.
	Nodes []NodeStats
}

// NodeStats is what [Store.KeyStats] found on one server.
type NodeStats struct {
	// Addr is the master's address, as CLUSTER SLOTS names it, on a
	// Cluster; "" on one server or under Sentinel.
	Addr string
	// Sessions, Indexes and IndexEntries count this server's keys, as in
	// KeyStats.
	Sessions     int64
	Indexes      int64
	IndexEntries int64

	// UsedMemory is INFO memory's used_memory: every byte Redis has
	// allocated, for the data of every database, its tables and buffers,
	// but not the allocator's fragmentation.
	UsedMemory int64
	// MaxMemory is the server's maxmemory; 0 means no limit.
	MaxMemory int64
	// MaxMemoryPolicy is the server's maxmemory-policy. Sessions need
	// noeviction (Redis's default) wherever MaxMemory is set: every key
	// sessionkit writes has a time to live, so any other policy (volatile-*
	// as much as allkeys-*) lets Redis evict a user's index and keep the
	// user's sessions, which "log out everywhere" then misses, or evict
	// sessions, which logs their users out at random.
	MaxMemoryPolicy string
	// FragmentationRatio is mem_fragmentation_ratio, the resident memory
	// over UsedMemory.
	FragmentationRatio float64
	// Keys and Expires are INFO keyspace's keys and expires, summed over
	// all the server's databases, whatever their keys' prefix.
	Keys    int64
	Expires int64
}

// BytesPerSession returns the mean MEMORY USAGE of the sampled records,
// or 0 if none was sampled.
func (k KeyStats) BytesPerSession() float64 {
	return ratio(k.SessionBytes, k.SampledSessions)
}

// BytesPerIndexEntry returns the mean MEMORY USAGE of the sampled indexes
// per session id they list, or 0 if none was sampled. It includes each
// index's own overhead, shared among its entries.
func (k KeyStats) BytesPerIndexEntry() float64 {
	return ratio(k.IndexBytes, k.SampledIndexEntries)
}

// EstimatedBytes returns the memory of all records and indexes as MEMORY
// USAGE counts it: Sessions times BytesPerSession plus IndexEntries times
// BytesPerIndexEntry. That counts each key, its value and the dictionary
// entry holding it, but not the key's entry in the table of expiries, the
// hash tables' buckets or the allocator's fragmentation: compare
// NodeStats.UsedMemory, and see docs/capacity.md for the difference.
func (k KeyStats) EstimatedBytes() int64 {
	return int64(math.Round(float64(k.Sessions)*k.BytesPerSession() + float64(k.IndexEntries)*k.BytesPerIndexEntry()))
}

// ratio returns a/b, or 0 when b is 0.
func ratio(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// KeyStats counts the session records and user indexes in Redis and
// estimates their memory, for capacity planning. It walks the keys with
// SCAN (never KEYS, which blocks the server), COUNT 100, MATCH
// "<KeyPrefix>session:*" TYPE string, then MATCH "<KeyPrefix>user:*" TYPE
// zset; for each batch of indexes it asks ZCARD, and for the keys of the
// sample (see [KeyStatsOptions]) MEMORY USAGE, all pipelined in one round
// trip after the SCAN. It then reads INFO memory and keyspace. On a Redis
// Cluster it walks every master in turn, as CLUSTER SLOTS lists them when
// KeyStats starts.
//
// Every command is short: SCAN examines about 100 keys, ZCARD and MEMORY
// USAGE of a record take constant time, and MEMORY USAGE of an index looks
// at 128 of its members at most, so other clients wait no longer than
// behind any ordinary command. The Store's Timeout bounds each batch, not
// the whole walk, which takes about one round trip per 100 keys of the
// database, whatever their prefix; bound it with ctx. On 100 million keys
// that is a million round trips per walk: run it from an admin tool or a
// job, not a request.
//
// The counts are SCAN's: exact for keys that exist throughout the walk;
// keys written or removed meanwhile may or may not count, and a key may
// occasionally count twice (or, on a Cluster while slots move, not at
// all). An index gone between its SCAN and its ZCARD does not count, nor
// does a key gone before its MEMORY USAGE count in the sample. On an error KeyStats returns it and no figures.
//
// Beyond the commands of the other calls, KeyStats needs ZCARD, MEMORY
// USAGE and INFO: add "+zcard +memory|usage +info" to the ACL user, or
// run it from a Store of an admin user. With a negative
// KeyStatsOptions.Sample it sends no MEMORY USAGE.
func (s *Store) KeyStats(ctx context.Context, opts KeyStatsOptions) (KeyStats, error) {
	sample := int64(opts.Sample)
	switch {
	case sample == 0:
		sample = DefaultKeyStatsSample
	case sample < 0:
		sample = 0
	}
	var ks KeyStats
	if s.cluster == nil {
		if err := s.nodeKeyStats(ctx, s.src, "", &ks, sample, sample); err != nil {
			return KeyStats{}, err
		}
		return ks, nil
	}
	var masters []string
	err := s.do(ctx, "key_stats", "", func(ctx context.Context, conn redis.Conn) error {
		var err error
		masters, err = clusterMasters(ctx, conn)
		return err
	})
	if err != nil {
		return KeyStats{}, err
	}
	for i, addr := range masters {
		// Share what is left of each sample among the masters left, so
		// that a master with fewer keys than its share leaves the rest to
		// the others.
		left := int64(len(masters) - i)
		sessions := ceilDiv(sample-ks.SampledSessions, left)
		indexes := ceilDiv(sample-ks.SampledIndexes, left)
		if err := s.nodeKeyStats(ctx, nodeSource{s.cluster, addr}, addr, &ks, sessions, indexes); err != nil {
			return KeyStats{}, err
		}
	}
	return ks, nil
}

// ceilDiv returns a/b rounded up, for a >= 0 and b > 0.
func ceilDiv(a, b int64) int64 {
	return (a + b - 1) / b
}

// keyKind is one of the two walks of KeyStats.
type keyKind struct {
	suffix string // of the key prefix, before the glob's "*"
	typ    string // SCAN's TYPE filter
	index  bool   // a user index, whose entries count too
}

var (
	sessionKeys = keyKind{suffix: "session:", typ: "string"}
	indexKeys   = keyKind{suffix: "user:", typ: "zset", index: true}
)

// walkCounts is what one walk found.
type walkCounts struct {
	keys, entries                       int64
	sampled, sampledEntries, sampledMem int64
}

// nodeKeyStats adds to ks the keys of the server that src connects to,
// sizing up to sessions records and indexes indexes, and that server's
// INFO.
func (s *Store) nodeKeyStats(ctx context.Context, src Source, addr string, ks *KeyStats, sessions, indexes int64) error {
	ns := NodeStats{Addr: addr}
	var rec, idx walkCounts
	if err := s.walk(ctx, src, sessionKeys, sessions, &rec); err != nil {
		return err
	}
	if err := s.walk(ctx, src, indexKeys, indexes, &idx); err != nil {
		return err
	}
	err := s.doOn(ctx, src, "key_stats", func(ctx context.Context, conn redis.Conn) error {
		info, err := redis.String(cmd(ctx, conn, "INFO", "memory", "keyspace"))
		if err != nil {
			return err
		}
		return parseNodeInfo(info, &ns)
	})
	if err != nil {
		return err
	}
	ns.Sessions, ns.Indexes, ns.IndexEntries = rec.keys, idx.keys, idx.entries
	ks.Sessions += rec.keys
	ks.SampledSessions += rec.sampled
	ks.SessionBytes += rec.sampledMem
	ks.Indexes += idx.keys
	ks.IndexEntries += idx.entries
	ks.SampledIndexes += idx.sampled
	ks.SampledIndexEntries += idx.sampledEntries
	ks.IndexBytes += idx.sampledMem
	ks.Nodes = append(ks.Nodes, ns)
	return nil
}

// walk counts the keys of kind on the server that src connects to, one
// SCAN step at a time, sizing the first quota of them, into c.
func (s *Store) walk(ctx context.Context, src Source, kind keyKind, quota int64, c *walkCounts) error {
	match := escapeGlob(s.keyPrefix+kind.suffix) + "*"
	cursor := "0"
	for {
		var next string
		var step walkCounts
		// f may run more than once (see do): it starts afresh each time,
		// and the step counts only once it has succeeded.
		err := s.doOn(ctx, src, "key_stats", func(ctx context.Context, conn redis.Conn) error {
			var keys []string
			var err error
			next, keys, err = scan(ctx, conn, cursor, match, kind.typ)
			if err != nil {
				return err
			}
			if !kind.index {
				keys = slices.DeleteFunc(keys, s.notRecord) // no records
			}
			step, err = s.measure(ctx, conn, kind, keys, quota-c.sampled)
			return err
		})
		if err != nil {
			return err
		}
		c.keys += step.keys
		c.entries += step.entries
		c.sampled += step.sampled
		c.sampledEntries += step.sampledEntries
		c.sampledMem += step.sampledMem
		if next == "0" {
			return nil
		}
		cursor = next
	}
}

// measure counts keys, which one SCAN step returned, and their entries
// (ZCARD, for indexes), and sizes the first quota of them (MEMORY USAGE),
// in one pipelined round trip. An index that is gone by then, or that moved
// to another node of a Cluster, does not count; nor does such a key in the
// sample.
func (s *Store) measure(ctx context.Context, conn redis.Conn, kind keyKind, keys []string, quota int64) (walkCounts, error) {
	var c walkCounts
	sized := min(int64(len(keys)), max(quota, 0))
	if !kind.index && sized == 0 {
		c.keys = int64(len(keys)) // nothing to ask
		return c, nil
	}
	for i, key := range keys {
		if kind.index {
			conn.Send("ZCARD", key)
		}
		if int64(i) < sized {
			conn.Send("MEMORY", "USAGE", key, "SAMPLES", memorySamples)
		}
	}
	if err := conn.Flush(); err != nil {
		return c, err
	}
	// Read every reply, even after an error, so that the connection goes
	// back to the pool with none pending.
	var first error
	next := func() (int64, bool) {
		n, err := redis.Int64(receive(ctx, conn))
		var re redis.Error
		switch {
		case err == nil:
			return n, true
		case errors.Is(err, redis.ErrNil): // MEMORY USAGE of a key that is gone
		case errors.As(err, &re) && notRun(re): // moved to another node
		default:
			if first == nil {
				first = err
			}
		}
		return 0, false
	}
	for i := range keys {
		entries, found := int64(0), true
		if kind.index {
			entries, found = next()
			found = found && entries > 0 // a sorted set that is gone has no members
		}
		var mem int64
		sizedOK := false
		if int64(i) < sized {
			mem, sizedOK = next()
		}
		if !found {
			continue
		}
		c.keys++
		c.entries += entries
		if sizedOK {
			c.sampled++
			c.sampledEntries += entries
			c.sampledMem += mem
		}
	}
	return c, first
}

// isDB reports whether name is a line of INFO keyspace: "db" and a number.
func isDB(name string) bool {
	n, ok := strings.CutPrefix(name, "db")
	if !ok || n == "" {
		return false
	}
	_, err := strconv.Atoi(n)
	return err == nil
}

// parseNodeInfo reads the fields of NodeStats from the reply of INFO
// memory keyspace, whose lines read "name:value", and for keyspace
// "db0:keys=3,expires=2,avg_ttl=0".
func parseNodeInfo(info string, ns *NodeStats) error {
	for line := range strings.Lines(info) {
		name, value, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue // a "# Section" header or a blank line
		}
		var err error
		switch {
		case name == "used_memory":
			ns.UsedMemory, err = strconv.ParseInt(value, 10, 64)
		case name == "maxmemory":
			ns.MaxMemory, err = strconv.ParseInt(value, 10, 64)
		case name == "maxmemory_policy":
			ns.MaxMemoryPolicy = value
		case name == "mem_fragmentation_ratio":
			ns.FragmentationRatio, err = strconv.ParseFloat(value, 64)
		case isDB(name):
			for field := range strings.SplitSeq(value, ",") {
				k, v, _ := strings.Cut(field, "=")
				var n int64
				switch k {
				case "keys":
					n, err = strconv.ParseInt(v, 10, 64)
					ns.Keys += n
				case "expires":
					n, err = strconv.ParseInt(v, 10, 64)
					ns.Expires += n
				}
				if err != nil {
					break
				}
			}
		}
		if err != nil {
			return fmt.Errorf("INFO: unexpected %s", name)
		}
	}
	return nil
}
