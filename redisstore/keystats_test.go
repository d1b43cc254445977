package redisstore_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/redisstore"
)

// ksOpen returns a Store on srv with cfg (Addr filled in), closed at
// cleanup.
func ksOpen(t testing.TB, srv *redistest.Server, cfg redisstore.Config) *redisstore.Store {
	t.Helper()
	cfg.Addr = srv.Addr()
	s, err := redisstore.Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// ksDial returns a plain connection to addr, closed at cleanup.
func ksDial(t testing.TB, addr string) redis.Conn {
	t.Helper()
	c, err := redis.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// ksPopulation is a set of sessions written through a Store: users[i]
// has sessions[i] sessions, and anonymous sessions have no user.
type ksPopulation struct {
	tag       func(i int) string // the hash tag of user or anonymous session i, "" for none
	users     int
	perUser   func(i int) int
	anonymous int
}

// write stores the population through s, with records of recordLen bytes,
// and returns the number of sessions and of index entries written.
func (p ksPopulation) write(t testing.TB, s *redisstore.Store, recordLen int) (sessions, entries int64) {
	t.Helper()
	ctx := context.Background()
	record := []byte(strings.Repeat("r", recordLen))
	deadline := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	for u := range p.users {
		user := p.tag(u) + fmt.Sprintf("user%04d", u)
		for k := range p.perUser(u) {
			_, err := s.AddUserSession(ctx, redisstore.UserSession{
				UserID: user, ID: p.tag(u) + fmt.Sprintf("u%04ds%03d", u, k), Record: record,
				TTL: time.Hour, Deadline: deadline.Add(time.Duration(k) * time.Second),
			})
			if err != nil {
				t.Fatalf("AddUserSession: %v", err)
			}
			sessions++
			entries++
		}
	}
	for a := range p.anonymous {
		ok, err := s.Insert(ctx, p.tag(a)+fmt.Sprintf("anon%04d", a), record, time.Hour)
		if err != nil || !ok {
			t.Fatalf("Insert = %v, %v; want true, nil", ok, err)
		}
		sessions++
	}
	return sessions, entries
}

// ksDirect is what a test finds on one server by itself, with SCAN,
// ZCARD and MEMORY USAGE ... SAMPLES 0 on every key.
type ksDirect struct {
	sessions, indexes, entries int64
	sessionMem, indexMem       []int64 // MEMORY USAGE of each key
	keys, expires              int64   // DBSIZE, and keys with a time to live
}

// ksMeasure walks every key of the server at addr.
func ksMeasure(t testing.TB, addr, prefix string) ksDirect {
	t.Helper()
	c := ksDial(t, addr)
	var d ksDirect
	for cursor := "0"; ; {
		reply, err := redis.Values(c.Do("SCAN", cursor, "COUNT", 1000))
		if err != nil {
			t.Fatalf("SCAN: %v", err)
		}
		cursor, _ = redis.String(reply[0], nil)
		keys, _ := redis.Strings(reply[1], nil)
		for _, key := range keys {
			typ, _ := redis.String(c.Do("TYPE", key))
			mem, err := redis.Int64(c.Do("MEMORY", "USAGE", key, "SAMPLES", 0))
			if err != nil {
				t.Fatalf("MEMORY USAGE: %v", err)
			}
			if ttl, _ := redis.Int64(c.Do("PTTL", key)); ttl > 0 {
				d.expires++
			}
			d.keys++
			switch {
			case strings.HasPrefix(key, prefix+"session:") && strings.HasSuffix(key, ":next"):
				// the pointer of a moved anonymous session, no record
			case strings.HasPrefix(key, prefix+"session:") && typ == "string":
				d.sessions++
				d.sessionMem = append(d.sessionMem, mem)
			case strings.HasPrefix(key, prefix+"user:") && typ == "zset":
				n, _ := redis.Int64(c.Do("ZCARD", key))
				d.indexes++
				d.entries += n
				d.indexMem = append(d.indexMem, mem)
			}
		}
		if cursor == "0" {
			return d
		}
	}
}

func ksSum(xs []int64) int64 {
	var n int64
	for _, x := range xs {
		n += x
	}
	return n
}

// sumRange returns the sums of the n smallest and the n largest of xs.
func ksSumRange(xs []int64, n int) (lo, hi int64) {
	s := slices.Clone(xs)
	slices.Sort(s)
	return ksSum(s[:n]), ksSum(s[len(s)-n:])
}

// ksCommands are the commands KeyStats may send. (redistest.Server.Calls
// leaves INFO out: the Nodes figures show that KeyStats read it.)
var ksCommands = map[string]bool{"scan": true, "zcard": true, "memory|usage": true, "info": true, "cluster|slots": true}

// checkCommands fails the test if calls (since a ResetStats) hold a
// command KeyStats must not send, KEYS above all.
func ksCheckCommands(t *testing.T, calls map[string]int64) {
	t.Helper()
	for name := range calls {
		if !ksCommands[name] {
			t.Errorf("KeyStats sent %q (%d times); want only %v", name, calls[name], slices.Sorted(maps.Keys(ksCommands)))
		}
	}
}

// TestKeyStats counts sessions and indexes written through the Store on
// one server, among keys of other programs, and checks the counts, the
// memory figures against MEMORY USAGE of every key, the server's INFO
// figures, and the commands sent.
func TestKeyStats(t *testing.T) {
	srv := redistest.Start(t)
	const prefix = "app:"
	s := ksOpen(t, srv, redisstore.Config{KeyPrefix: prefix})
	pop := ksPopulation{
		tag:       func(int) string { return "" },
		users:     40,
		perUser:   func(i int) int { return i%5 + 1 }, // 120 in all
		anonymous: 130,
	}
	sessions, entries := pop.write(t, s, 300)
	// One user with more sessions than a listpack holds (128): the index
	// becomes a skiplist, which KeyStats sizes from a sample of members.
	heavy := ksPopulation{tag: func(int) string { return "heavy-" }, users: 1, perUser: func(int) int { return 300 }}
	hs, he := heavy.write(t, s, 300)
	sessions, entries = sessions+hs, entries+he
	const users = 41
	// A renewed anonymous session: one record, and a pointer that KeyStats
	// must not count.
	ctx := context.Background()
	if _, err := s.Insert(ctx, "anon-from", []byte("rec"), time.Hour); err != nil {
		t.Fatal(err)
	}
	mv := redisstore.Move{From: "anon-from", To: "anon-to", TTL: time.Hour, Merge: func(b []byte) ([]byte, error) { return b, nil }}
	if moved, err := s.MoveSession(ctx, mv); !moved || err != nil {
		t.Fatalf("MoveSession = %v, %v", moved, err)
	}
	sessions++
	// Keys KeyStats must not count: other prefixes, other types.
	srv.Do(t, "SET", "session:noprefix", "x")
	srv.Do(t, "SET", "other:session:x", "x")
	srv.Do(t, "SADD", prefix+"session:a-set", "not a record")
	srv.Do(t, "SET", prefix+"user:a-string", "not an index")
	srv.Do(t, "HSET", prefix+"user:a-hash", "f", "v")

	d := ksMeasure(t, srv.Addr(), prefix)
	if d.sessions != sessions || d.indexes != users || d.entries != entries {
		t.Fatalf("setup: %d sessions, %d indexes, %d entries in Redis; want %d, %d, %d", d.sessions, d.indexes, d.entries, sessions, users, entries)
	}
	// A policy other than Redis's default, which KeyStats must report.
	srv.Do(t, "CONFIG", "SET", "maxmemory-policy", "volatile-lru")
	maxmemory, err := redis.Strings(srv.Do(t, "CONFIG", "GET", "maxmemory"), nil)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name            string
		sample          int
		wantSampled     int64 // records; indexes: min(wantSampled, users)
		wantMemoryCalls bool
	}{
		{name: "default sample, every key", sample: 0, wantSampled: sessions, wantMemoryCalls: true},
		{name: "sample of 10", sample: 10, wantSampled: 10, wantMemoryCalls: true},
		{name: "no sample", sample: -1, wantSampled: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv.ResetStats(t)
			got, err := s.KeyStats(context.Background(), redisstore.KeyStatsOptions{Sample: tc.sample})
			if err != nil {
				t.Fatalf("KeyStats: %v", err)
			}
			calls := srv.Calls(t)
			ksCheckCommands(t, calls)
			if calls["scan"] < 4 {
				t.Errorf("KeyStats sent %d SCAN, want several steps of each walk", calls["scan"])
			}
			if calls["zcard"] != users {
				t.Errorf("KeyStats sent %d ZCARD, want %d, one per index", calls["zcard"], users)
			}
			if (calls["memory|usage"] > 0) != tc.wantMemoryCalls {
				t.Errorf("KeyStats sent %d MEMORY USAGE, want some: %v", calls["memory|usage"], tc.wantMemoryCalls)
			}

			if got.Sessions != sessions || got.Indexes != users || got.IndexEntries != entries {
				t.Errorf("KeyStats = %d sessions, %d indexes, %d entries; want %d, %d, %d", got.Sessions, got.Indexes, got.IndexEntries, sessions, users, entries)
			}
			wantIdx := min(tc.wantSampled, users)
			if got.SampledSessions != tc.wantSampled || got.SampledIndexes != wantIdx {
				t.Errorf("KeyStats sampled %d records and %d indexes, want %d and %d", got.SampledSessions, got.SampledIndexes, tc.wantSampled, wantIdx)
			}
			switch {
			case tc.wantSampled == 0:
				if got.SessionBytes != 0 || got.IndexBytes != 0 || got.EstimatedBytes() != 0 || got.BytesPerSession() != 0 {
					t.Errorf("KeyStats without a sample = %+v, want no memory figures", got)
				}
			case tc.wantSampled == sessions:
				// Every key sized: the same as MEMORY USAGE ... SAMPLES 0, to
				// the byte for the records and the listpack indexes; the
				// heavy user's skiplist is estimated from 128 members.
				if want := ksSum(d.sessionMem); got.SessionBytes != want {
					t.Errorf("SessionBytes = %d, want %d (MEMORY USAGE of every record)", got.SessionBytes, want)
				}
				want := ksSum(d.indexMem)
				if diff := float64(got.IndexBytes-want) / float64(want); diff < -0.05 || diff > 0.05 {
					t.Errorf("IndexBytes = %d, want %d ± 5%% (MEMORY USAGE ... SAMPLES 0 of every index)", got.IndexBytes, want)
				}
				if got.SampledIndexEntries != entries {
					t.Errorf("SampledIndexEntries = %d, want %d", got.SampledIndexEntries, entries)
				}
				if e, want := got.EstimatedBytes(), got.SessionBytes+got.IndexBytes; e < want-1 || e > want+1 {
					t.Errorf("EstimatedBytes() = %d with every key sized, want %d", e, want)
				}
			default:
				lo, hi := ksSumRange(d.sessionMem, int(tc.wantSampled))
				if got.SessionBytes < lo || got.SessionBytes > hi {
					t.Errorf("SessionBytes of %d records = %d, want between %d and %d", tc.wantSampled, got.SessionBytes, lo, hi)
				}
				lo, hi = ksSumRange(d.indexMem, int(wantIdx))
				if got.IndexBytes < lo*95/100 || got.IndexBytes > hi*105/100 {
					t.Errorf("IndexBytes of %d indexes = %d, want between %d and %d", wantIdx, got.IndexBytes, lo, hi)
				}
				if got.SampledIndexEntries < wantIdx || got.SampledIndexEntries > entries {
					t.Errorf("SampledIndexEntries = %d, want between %d and %d", got.SampledIndexEntries, wantIdx, entries)
				}
			}
			if tc.wantSampled > 0 {
				lo, hi := slices.Min(d.sessionMem), slices.Max(d.sessionMem)
				if b := got.BytesPerSession(); b < float64(lo) || b > float64(hi) {
					t.Errorf("BytesPerSession() = %.1f, want between %d and %d", b, lo, hi)
				}
			}

			if len(got.Nodes) != 1 {
				t.Fatalf("KeyStats has %d nodes, want 1", len(got.Nodes))
			}
			n := got.Nodes[0]
			if n.Addr != "" || n.Sessions != got.Sessions || n.Indexes != got.Indexes || n.IndexEntries != got.IndexEntries {
				t.Errorf("Nodes[0] = %+v, want no address and the totals", n)
			}
			if n.Keys != d.keys || n.Expires != d.expires {
				t.Errorf("Nodes[0] keys, expires = %d, %d; want %d, %d", n.Keys, n.Expires, d.keys, d.expires)
			}
			if n.MaxMemoryPolicy != "volatile-lru" {
				t.Errorf("Nodes[0].MaxMemoryPolicy = %q, want volatile-lru", n.MaxMemoryPolicy)
			}
			if n.UsedMemory < ksSum(d.sessionMem) || n.FragmentationRatio <= 0 || fmt.Sprint(n.MaxMemory) != maxmemory[1] {
				t.Errorf("Nodes[0] = %+v; want used_memory above the records' %d bytes, a fragmentation ratio and maxmemory %s", n, ksSum(d.sessionMem), maxmemory[1])
			}
		})
	}
}

// TestKeyStatsACL checks KeyStats under an ACL user without MEMORY USAGE:
// refused (ErrRefused, naming no key) with a sample, counted without one.
func TestKeyStatsACL(t *testing.T) {
	srv := redistest.Start(t)
	admin := ksOpen(t, srv, redisstore.Config{})
	sessions, entries := ksPopulation{
		tag: func(int) string { return "" }, users: 3, perUser: func(int) int { return 2 }, anonymous: 4,
	}.write(t, admin, 10)
	srv.Do(t, "ACL", "SETUSER", "stats", "on", ">stats-pw", "~*", "resetchannels", "-@all", "+scan", "+zcard", "+info")
	s := ksOpen(t, srv, redisstore.Config{Username: "stats", Password: "stats-pw"})
	ctx := context.Background()

	_, err := s.KeyStats(ctx, redisstore.KeyStatsOptions{})
	if !errors.Is(err, redisstore.ErrRefused) || strings.Contains(err.Error(), "session:") || strings.Contains(err.Error(), "user:") {
		t.Errorf("KeyStats without +memory|usage = %v, want ErrRefused naming no key", err)
	}
	got, err := s.KeyStats(ctx, redisstore.KeyStatsOptions{Sample: -1})
	if err != nil || got.Sessions != sessions || got.Indexes != 3 || got.IndexEntries != entries {
		t.Errorf("KeyStats(Sample: -1) = %d sessions, %d indexes, %d entries, %v; want %d, 3, %d, nil", got.Sessions, got.Indexes, got.IndexEntries, err, sessions, entries)
	}
}

// TestKeyStatsContext checks that KeyStats stops when its context ends:
// before it starts, and part way through a walk.
func TestKeyStatsContext(t *testing.T) {
	srv := redistest.Start(t)
	s := ksOpen(t, srv, redisstore.Config{})
	c := ksDial(t, srv.Addr())
	const n = 20000
	for i := range n {
		c.Send("SET", fmt.Sprintf("session:k%05d", i), "r", "PX", 3600000)
	}
	if _, err := c.Do(""); err != nil {
		t.Fatal(err)
	}

	srv.ResetStats(t)
	full, err := s.KeyStats(context.Background(), redisstore.KeyStatsOptions{})
	if err != nil || full.Sessions != n {
		t.Fatalf("KeyStats = %d sessions, %v; want %d, nil", full.Sessions, err, n)
	}
	fullScans := srv.Calls(t)["scan"]
	t.Logf("a whole KeyStats of %d keys sent %d SCAN", n, fullScans)

	t.Run("canceled before", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		srv.ResetStats(t)
		_, err := s.KeyStats(ctx, redisstore.KeyStatsOptions{})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("KeyStats(canceled ctx) = %v, want context.Canceled", err)
		}
		if calls := srv.Calls(t); len(calls) != 0 {
			t.Errorf("KeyStats(canceled ctx) sent %v, want nothing", calls)
		}
	})
	t.Run("canceled during", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		srv.ResetStats(t)
		// Cancel once the walk is under way: after its third SCAN.
		watched := make(chan struct{})
		go func() {
			defer close(watched)
			for ctx.Err() == nil && srv.Calls(t)["scan"] < 3 {
			}
			cancel()
		}()
		_, err := s.KeyStats(ctx, redisstore.KeyStatsOptions{})
		<-watched
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("KeyStats canceled part way = %v, want context.Canceled", err)
		}
		if scans := srv.Calls(t)["scan"]; scans < 3 || scans >= fullScans {
			t.Errorf("KeyStats canceled after its third SCAN sent %d SCAN in all, want fewer than the %d of a whole walk", scans, fullScans)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
		defer cancel()
		_, err := s.KeyStats(ctx, redisstore.KeyStatsOptions{})
		if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, redisstore.ErrUnavailable) {
			t.Fatalf("KeyStats past its deadline = %v, want context.DeadlineExceeded and ErrUnavailable", err)
		}
	})
}

// TestKeyStatsCluster counts sessions and indexes on a Redis Cluster of
// three masters, per master and in all, and checks that the sample is
// shared among the masters.
func TestKeyStatsCluster(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterOptions{ReplicasPerMaster: -1})
	s, err := redisstore.Open(redisstore.Config{ClusterNodes: c.Addrs()[:1], Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	// Tags as package session makes them: "{tag}" before the user id and
	// the session id, so that a user's keys share a slot; the 60 users
	// and 60 anonymous sessions fall on every master.
	pop := ksPopulation{
		tag:       func(i int) string { return fmt.Sprintf("{t%03d}", i) },
		users:     60,
		perUser:   func(i int) int { return i%3 + 1 }, // 120 in all
		anonymous: 60,
	}
	sessions, entries := pop.write(t, s, 300)

	masters := c.Masters(t)
	want := map[string]ksDirect{}
	var all ksDirect
	for _, m := range masters {
		d := ksMeasure(t, m.Addr(), "")
		if d.sessions == 0 || d.indexes == 0 {
			t.Fatalf("setup: master %s holds %d sessions and %d indexes, want some of each", m.Addr(), d.sessions, d.indexes)
		}
		want[m.Addr()] = d
		all.sessionMem = append(all.sessionMem, d.sessionMem...)
		all.indexMem = append(all.indexMem, d.indexMem...)
	}

	for _, tc := range []struct {
		name   string
		sample int
	}{{"default sample", 0}, {"sample of 6", 6}} {
		t.Run(tc.name, func(t *testing.T) {
			for _, m := range masters {
				m.ResetStats(t)
			}
			got, err := s.KeyStats(context.Background(), redisstore.KeyStatsOptions{Sample: tc.sample})
			if err != nil {
				t.Fatalf("KeyStats: %v", err)
			}
			for _, m := range masters {
				ksCheckCommands(t, m.Calls(t))
			}
			if got.Sessions != sessions || got.Indexes != int64(pop.users) || got.IndexEntries != entries {
				t.Errorf("KeyStats = %d sessions, %d indexes, %d entries; want %d, %d, %d", got.Sessions, got.Indexes, got.IndexEntries, sessions, pop.users, entries)
			}
			if len(got.Nodes) != len(masters) {
				t.Fatalf("KeyStats has %d nodes, want %d", len(got.Nodes), len(masters))
			}
			for _, n := range got.Nodes {
				d, ok := want[n.Addr]
				if !ok {
					t.Fatalf("KeyStats has node %q, not a master", n.Addr)
				}
				if n.Sessions != d.sessions || n.Indexes != d.indexes || n.IndexEntries != d.entries || n.Keys != d.keys || n.Expires != d.expires || n.UsedMemory == 0 {
					t.Errorf("node %s = %+v; want %d sessions, %d indexes, %d entries, %d keys, %d expires", n.Addr, n, d.sessions, d.indexes, d.entries, d.keys, d.expires)
				}
				delete(want, n.Addr) // each master once
				defer func() { want[n.Addr] = d }()
			}
			switch tc.sample {
			case 0:
				if got.SampledSessions != sessions || got.SessionBytes != ksSum(all.sessionMem) || got.IndexBytes != ksSum(all.indexMem) {
					t.Errorf("KeyStats sized %d records, %d bytes, indexes %d bytes; want %d, %d, %d", got.SampledSessions, got.SessionBytes, got.IndexBytes, sessions, ksSum(all.sessionMem), ksSum(all.indexMem))
				}
			default:
				// Every master holds more than 2 of each: 2 from each.
				if got.SampledSessions != 6 || got.SampledIndexes != 6 {
					t.Errorf("KeyStats sized %d records and %d indexes, want 6 and 6", got.SampledSessions, got.SampledIndexes)
				}
				lo, hi := ksSumRange(all.sessionMem, 6)
				if got.SessionBytes < lo || got.SessionBytes > hi {
					t.Errorf("SessionBytes of 6 records = %d, want between %d and %d", got.SessionBytes, lo, hi)
				}
			}
		})
	}
}

// capacityID returns the i-th session id as package session makes them:
// base64url of the first 16 bytes of SHA-256(token), 22 characters.
func capacityID(i int) string {
	h := sha256.Sum256(fmt.Appendf(nil, "token-%d", i))
	return base64.RawURLEncoding.EncodeToString(h[:16])
}

// capacityRecord returns a record as package session writes it (see the
// README's "Data in Redis") for a logged-in user with two small values:
// the shape BenchmarkRecordSize measures.
func capacityRecord(t testing.TB) []byte {
	t.Helper()
	created := time.Date(2026, 11, 25, 10, 0, 0, 123000000, time.UTC).UnixMilli()
	rec, err := json.Marshal(struct {
		V      int                        `json:"v"`
		UserID string                     `json:"user_id"`
		C      int64                      `json:"c"`
		E      int64                      `json:"e"`
		S      int64                      `json:"s"`
		IP     string                     `json:"ip"`
		D      string                     `json:"d"`
		Val    map[string]json.RawMessage `json:"val"`
	}{
		V: 2, UserID: "user-000123",
		C: created, E: created + (24 * time.Hour).Milliseconds(), S: created + time.Minute.Milliseconds(),
		IP: "203.0.113.7",
		D:  "Chrome 131 on Linux",
		Val: map[string]json.RawMessage{
			"theme":  json.RawMessage(`"dark"`),
			"visits": json.RawMessage(`{"int":3}`),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// usedMemory returns INFO memory's used_memory of srv.
func usedMemory(t testing.TB, srv *redistest.Server) int64 {
	t.Helper()
	return infoInt(t, srv, "memory", "used_memory")
}

// infoInt returns the integer field of INFO section of srv.
func infoInt(t testing.TB, srv *redistest.Server, section, field string) int64 {
	t.Helper()
	info, err := redis.String(srv.Do(t, "INFO", section), nil)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatalf("INFO %s: %s: %v", section, field, err)
			}
			return n
		}
	}
	t.Fatalf("INFO %s has no %s", section, field)
	return 0
}

// TestCapacityFigures measures, with MEMORY USAGE and INFO memory, the
// figures docs/capacity.md quotes, and logs them:
//
//	go test -run TestCapacityFigures -v ./redisstore
//
// It checks only that they are sane; the document has the figures of one
// run and what they mean.
func TestCapacityFigures(t *testing.T) {
	srv := redistest.Start(t)
	s := ksOpen(t, srv, redisstore.Config{})
	ctx := context.Background()
	record := capacityRecord(t)
	deadline := time.Now().Add(24 * time.Hour).Truncate(time.Millisecond)
	memoryUsage := func(key string) int64 {
		t.Helper()
		n, err := redis.Int64(srv.Do(t, "MEMORY", "USAGE", key, "SAMPLES", 0), nil)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	add := func(user, id string, i int) {
		t.Helper()
		_, err := s.AddUserSession(ctx, redisstore.UserSession{
			UserID: user, ID: id, Record: record, TTL: time.Hour,
			Deadline: deadline.Add(time.Duration(i) * time.Millisecond),
		})
		if err != nil {
			t.Fatalf("AddUserSession: %v", err)
		}
	}

	// One record, as one server and as a Cluster (with a hash tag) name it.
	const tag = "{AbCd}"
	add("alice", capacityID(0), 0)
	add(tag+"bob", tag+capacityID(1), 0)
	perSession := memoryUsage("session:" + capacityID(0))
	t.Logf("record: %d bytes; MEMORY USAGE of its key: %d bytes, %d with a hash tag",
		len(record), perSession, memoryUsage("session:"+tag+capacityID(1)))
	if perSession < int64(len(record)) || perSession > int64(len(record))+400 {
		t.Errorf("MEMORY USAGE of a record of %d bytes = %d", len(record), perSession)
	}
	// Records of other sizes, for apps that store more values: Redis
	// allocates in size classes, so the figure moves in steps.
	var sizes []string
	for _, n := range []int{100, 200, 300, 400, 500, 1000, 2000, 4000} {
		key := "session:" + capacityID(2)
		srv.Do(t, "SET", key, strings.Repeat("r", n), "PX", 60000)
		sizes = append(sizes, fmt.Sprintf("%d: %d", n, memoryUsage(key)))
		srv.Do(t, "DEL", key)
	}
	t.Logf("MEMORY USAGE by record length: %s", strings.Join(sizes, ", "))

	// Indexes of n sessions: the first 128 fit in one listpack, then
	// Redis converts the sorted set to a skiplist and a hash table.
	var lines []string
	prev, prevN := int64(0), 0
	var at128, at129 int64
	for n := 1; n <= 1000; n++ {
		add("carol", capacityID(1000+n), n)
		switch n {
		case 1, 2, 10, 100, 128, 129, 1000:
			m := memoryUsage("user:carol:sessions")
			per := ""
			if prevN > 0 {
				per = fmt.Sprintf(", %.1f each since %d", float64(m-prev)/float64(n-prevN), prevN)
			}
			lines = append(lines, fmt.Sprintf("%4d sessions: %6d bytes (%.1f a session%s)", n, m, float64(m)/float64(n), per))
			prev, prevN = m, n
			switch n {
			case 128:
				at128 = m
			case 129:
				at129 = m
			}
		}
	}
	t.Logf("MEMORY USAGE of a user's index:\n\t%s", strings.Join(lines, "\n\t"))
	if at129 <= at128 {
		t.Errorf("index of 129 sessions = %d bytes, not above 128's %d: no conversion to a skiplist?", at129, at128)
	}
	sampled, err := redis.Int64(srv.Do(t, "MEMORY", "USAGE", "user:carol:sessions", "SAMPLES", 128), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("index of 1000 sessions sized from 128 members (as KeyStats does): %d bytes, %.2f of SAMPLES 0's", sampled, float64(sampled)/float64(prev))
	for n := 1; n <= 10; n++ {
		add(tag+"dave", tag+capacityID(3000+n), n)
	}
	t.Logf("index of 10 sessions with a hash tag: %d bytes", memoryUsage("user:"+tag+"dave:sessions"))

	// All-in cost at scale: used_memory before and after n sessions, which
	// adds what MEMORY USAGE leaves out: the key's entry in the table of
	// expiries and the buckets of both tables. The first round fills the
	// pool, whose connections would count otherwise.
	const n = 20000
	for _, sc := range []struct {
		name    string
		perUser int // 0: anonymous sessions, no index
	}{
		{"", 0}, // the pool's round
		{"anonymous (Insert, no index)", 0},
		{"1 session a user", 1},
		{"2 sessions a user", 2},
		{"10 sessions a user", 10},
	} {
		srv.Do(t, "FLUSHALL")
		before := usedMemory(t, srv)
		var wg sync.WaitGroup
		const workers = 8
		for w := range workers {
			wg.Go(func() {
				for i := w; i < n; i += workers {
					id := capacityID(10000 + i)
					var err error
					if sc.perUser == 0 {
						_, err = s.Insert(ctx, id, record, time.Hour)
					} else {
						_, err = s.AddUserSession(ctx, redisstore.UserSession{
							UserID: fmt.Sprintf("user-%06d", i/sc.perUser), ID: id, Record: record, TTL: time.Hour,
							Deadline: deadline.Add(time.Duration(i) * time.Millisecond),
						})
					}
					if err != nil {
						t.Errorf("write: %v", err)
						return
					}
				}
			})
		}
		wg.Wait()
		after := usedMemory(t, srv)
		if sc.name == "" {
			continue
		}
		start := time.Now()
		ks, err := s.KeyStats(ctx, redisstore.KeyStatsOptions{})
		took := time.Since(start)
		if err != nil {
			t.Fatalf("KeyStats: %v", err)
		}
		if ks.Sessions != n {
			t.Fatalf("KeyStats counted %d sessions, want %d", ks.Sessions, n)
		}
		perAll := float64(after-before) / n
		t.Logf("%d sessions, %s: used_memory +%d bytes, %.1f a session; KeyStats in %v: %d keys, %d indexes, %.1f bytes a record, %.1f an index entry, EstimatedBytes %.1f a session",
			n, sc.name, after-before, perAll, took.Round(time.Millisecond), ks.Nodes[0].Keys, ks.Indexes, ks.BytesPerSession(), ks.BytesPerIndexEntry(), float64(ks.EstimatedBytes())/n)
		if perAll < ks.BytesPerSession() {
			t.Errorf("used_memory grew by %.1f bytes a session, less than MEMORY USAGE's %.1f", perAll, ks.BytesPerSession())
		}
	}
}
