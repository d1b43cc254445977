package redisstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/mna/redisc"

	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/redisstore"
)

// The tests of this file run a Store on a Redis Cluster of three masters,
// each with a replica, with keys tagged as package session tags them:
// "session:{tag}<id>" and "user:{tag}<userID>:sessions".

// clusterTimeout is the Timeout of the Stores of the cluster tests.
const clusterTimeout = time.Second

// openCluster returns a Store on c, seeded with one node only (the others
// it must learn with CLUSTER SLOTS), closed at cleanup.
func openCluster(t *testing.T, c *redistest.Cluster, cfg redisstore.Config) *redisstore.Store {
	t.Helper()
	cfg.ClusterNodes = c.Addrs()[:1]
	if cfg.Timeout == 0 {
		cfg.Timeout = clusterTimeout
	}
	s, err := redisstore.Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	if !s.Cluster() {
		t.Fatal("Store.Cluster() = false on a Config with ClusterNodes")
	}
	return s
}

// clusterCheck fails the test on any error of a Store call, and says so
// loudly for the two that must never happen on a cluster, whatever moves:
// CROSSSLOT and ErrRefused.
func clusterCheck(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v%s", what, err, forbidden(err))
	}
}

// forbidden describes err if it is CROSSSLOT or ErrRefused, or returns "".
func forbidden(err error) string {
	var notes []string
	if err != nil && strings.Contains(err.Error(), "CROSSSLOT") {
		notes = append(notes, "CROSSSLOT")
	}
	if errors.Is(err, redisstore.ErrRefused) {
		notes = append(notes, "ErrRefused")
	}
	if len(notes) == 0 {
		return ""
	}
	return " (" + strings.Join(notes, ", ") + ": never allowed on a cluster)"
}

// tagged returns the id "{tag}<rest>".
func tagged(tag, rest string) string { return "{" + tag + "}" + rest }

// owner returns the master that serves key.
func owner(t *testing.T, c *redistest.Cluster, key string) *redistest.Server {
	t.Helper()
	return c.MasterOf(t, redistest.Slot(key))
}

// tagsOnMasters returns, for each master of c, in the order of c.Masters,
// n tags ("t000", "t001", ...) whose slots it serves, and no two of them in
// one slot.
func tagsOnMasters(t *testing.T, c *redistest.Cluster, n int) [][]string {
	t.Helper()
	masters := c.Masters(t)
	out := make([][]string, len(masters))
	slots := map[int]bool{}
	for i, full := 0, 0; full < len(masters); i++ {
		if i > 5000 {
			t.Fatal("cannot find tags on every master")
		}
		tag := fmt.Sprintf("t%03d", i)
		slot := redistest.Slot("{" + tag + "}")
		if slots[slot] {
			continue
		}
		slots[slot] = true
		m := c.MasterOf(t, slot)
		k := slices.Index(masters, m)
		if len(out[k]) < n {
			if out[k] = append(out[k], tag); len(out[k]) == n {
				full++
			}
		}
	}
	return out
}

// otherMasterThan returns a master of c other than m.
func otherMasterThan(t *testing.T, c *redistest.Cluster, m *redistest.Server) *redistest.Server {
	t.Helper()
	for _, o := range c.Masters(t) {
		if o != m {
			return o
		}
	}
	t.Fatal("no other master")
	return nil
}

// exists reports whether key exists on the master that serves it.
func exists(t *testing.T, c *redistest.Cluster, key string) bool {
	t.Helper()
	n, err := redis.Int(owner(t, c, key).Do(t, "EXISTS", key), nil)
	if err != nil {
		t.Fatal(err)
	}
	return n == 1
}

// clusterIndex returns the sorted members of the index of userID.
func clusterIndex(t *testing.T, c *redistest.Cluster, userID string) []string {
	t.Helper()
	key := indexKey(userID)
	m, err := redis.Strings(owner(t, c, key).Do(t, "ZRANGE", key, 0, -1), nil)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(m)
	return m
}

// clusterRecords returns every record in the cluster, by id, read on every
// master with SCAN.
func clusterRecords(t *testing.T, c *redistest.Cluster) map[string]string {
	t.Helper()
	all := map[string]string{}
	for _, m := range c.Masters(t) {
		maps.Copy(all, records(t, m))
	}
	return all
}

// userSessionOf returns a session of userID with the record "rec-<id>", an
// hour to live and the deadline d.
func userSessionOf(userID, id string, d time.Time) redisstore.UserSession {
	return redisstore.UserSession{UserID: userID, ID: id, Record: []byte("rec-" + id), TTL: time.Hour, Deadline: d}
}

// crossSlotErrors returns how many CROSSSLOT error replies the running
// nodes gave since their statistics were last reset (INFO errorstats).
func crossSlotErrors(t *testing.T, nodes []*redistest.Server) int {
	t.Helper()
	n := 0
	for _, s := range nodes {
		info, err := redis.String(s.Do(t, "INFO", "errorstats"), nil)
		if err != nil {
			t.Fatal(err)
		}
		for line := range strings.Lines(info) {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "errorstat_CROSSSLOT:count="); ok {
				k, _ := strconv.Atoi(rest)
				n += k
			}
		}
	}
	return n
}

// TestCluster runs every Store method on tagged keys on one Redis Cluster,
// then moves slots under it (at once, and slowly, key by key) and fails a
// master over, and checks that calls follow.
func TestCluster(t *testing.T) {
	start := time.Now()
	c := redistest.StartCluster(t, redistest.ClusterOptions{})
	t.Logf("cluster started in %v", time.Since(start).Round(time.Millisecond))
	s := openCluster(t, c, redisstore.Config{})
	s2 := openCluster(t, c, redisstore.Config{}) // a second instance
	ctx := context.Background()
	masters := c.Masters(t)
	if len(masters) != 3 {
		t.Fatalf("%d masters, want 3", len(masters))
	}
	tags := tagsOnMasters(t, c, 5)
	d := deadlines(4)
	// noCrossSlot checks that no node answered CROSSSLOT since the last
	// reset of its statistics; resetStats checks that, then resets the
	// statistics of every node, for Calls.
	noCrossSlot := func(t *testing.T) {
		t.Helper()
		if n := crossSlotErrors(t, c.Nodes()); n > 0 {
			t.Errorf("the nodes answered CROSSSLOT %d times, want never", n)
		}
	}
	resetStats := func(t *testing.T) {
		t.Helper()
		noCrossSlot(t)
		for _, n := range c.Nodes() {
			n.ResetStats(t)
		}
	}
	defer noCrossSlot(t)

	clusterCheck(t, "Ping", s.Ping(ctx))

	t.Run("Records", func(t *testing.T) {
		for k, m := range masters {
			id := tagged(tags[k][0], "rec")
			key := "session:" + id
			written, err := s.Insert(ctx, id, []byte("v1"), time.Minute)
			clusterCheck(t, "Insert", err)
			if !written {
				t.Fatal("Insert of a new id did not write")
			}
			if again, err := s2.Insert(ctx, id, []byte("v0"), time.Minute); again || err != nil {
				t.Fatalf("second Insert = %v, %v, want false, nil", again, err)
			}
			if got, _ := redis.String(m.Do(t, "GET", key), nil); got != "v1" {
				t.Fatalf("master %d: GET %s = %q, want v1 on the master serving its slot", k, key, got)
			}
			rec, found, err := s2.Load(ctx, id, time.Hour)
			clusterCheck(t, "Load", err)
			if !found || string(rec) != "v1" {
				t.Fatalf("Load = %q, %v, want v1, true", rec, found)
			}
			if d := pttl(t, m, key); d < 59*time.Minute {
				t.Errorf("PTTL after Load(ttl 1h) = %v, want about 1h", d)
			}
			written, err = s.Update(ctx, id, []byte("v2"), time.Minute)
			clusterCheck(t, "Update", err)
			if !written {
				t.Fatal("Update of an existing record did not write")
			}
			written, err = s2.Merge(ctx, id, time.Minute, func(cur []byte) ([]byte, error) { return append(cur, "+m"...), nil })
			clusterCheck(t, "Merge", err)
			if rec, _, err := s.Load(ctx, id, 0); !written || err != nil || string(rec) != "v2+m" {
				t.Fatalf("after Merge: written %v, Load = %q, %v; want v2+m", written, rec, err)
			}
			clusterCheck(t, "Remove", s.Remove(ctx, id))
			if _, found, err := s2.Load(ctx, id, 0); found || err != nil {
				t.Fatalf("Load after Remove = %v, %v, want not found", found, err)
			}
			if written, err := s.Update(ctx, id, []byte("v3"), time.Minute); written || err != nil {
				t.Fatalf("Update after Remove = %v, %v, want false, nil", written, err)
			}
		}
	})

	t.Run("ReadIsOneCommand", func(t *testing.T) {
		for k, m := range masters {
			id := tagged(tags[k][1], "read")
			_, err := s.Insert(ctx, id, []byte("v"), time.Minute)
			clusterCheck(t, "Insert", err)
			for _, tc := range []struct {
				ttl  time.Duration
				want map[string]int64
			}{{time.Hour, map[string]int64{"getex": 1}}, {0, map[string]int64{"get": 1}}} {
				resetStats(t)
				_, found, err := s.Load(ctx, id, tc.ttl)
				clusterCheck(t, "Load", err)
				if !found {
					t.Fatal("Load: not found")
				}
				for j, o := range masters {
					want := map[string]int64{}
					if o == m {
						want = tc.want
					}
					if got := clientCalls(t, o); !maps.Equal(got, want) {
						t.Errorf("Load(ttl %v) of a key of master %d: master %d ran %v, want %v", tc.ttl, k, j, got, want)
					}
				}
			}
		}
	})

	t.Run("ConcurrentMerges", func(t *testing.T) {
		id := tagged(tags[1][0], "merge")
		_, err := s.Insert(ctx, id, []byte("{}"), time.Minute)
		clusterCheck(t, "Insert", err)
		const n = 40
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				_, errs[i] = []*redisstore.Store{s, s2}[i%2].Merge(ctx, id, time.Minute, func(cur []byte) ([]byte, error) {
					var v map[string]int
					if err := json.Unmarshal(cur, &v); err != nil {
						return nil, err
					}
					v[fmt.Sprintf("f%02d", i)] = i
					return json.Marshal(v)
				})
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("Merge %d: %v%s", i, err, forbidden(err))
			}
		}
		rec, _, err := s.Load(ctx, id, 0)
		clusterCheck(t, "Load", err)
		var v map[string]int
		if err := json.Unmarshal(rec, &v); err != nil || len(v) != n {
			t.Fatalf("record after %d concurrent merges has %d values (%v), want every one", n, len(v), err)
		}
	})

	t.Run("UserSessions", func(t *testing.T) {
		tag := tags[0][2]
		user := tagged(tag, "alice")
		ids := []string{tagged(tag, "a1"), tagged(tag, "a2"), tagged(tag, "a3")}
		for i, id := range ids {
			_, err := s.AddUserSession(ctx, userSessionOf(user, id, d[i]))
			clusterCheck(t, "AddUserSession", err)
		}
		if got := clusterIndex(t, c, user); !slices.Equal(got, ids) {
			t.Fatalf("index = %q, want %q", got, ids)
		}
		got, recs, err := s2.UserSessions(ctx, user)
		clusterCheck(t, "UserSessions", err)
		if !slices.Equal(got, ids) || len(recs) != 3 || string(recs[2]) != "rec-"+ids[2] {
			t.Fatalf("UserSessions = %q, %q, want %q with their records", got, recs, ids)
		}

		// Replaces in the same slot: a re-login of the user.
		a := userSessionOf(user, tagged(tag, "a4"), d[3])
		a.Replaces = ids[0]
		_, err = s.AddUserSession(ctx, a)
		clusterCheck(t, "AddUserSession replacing in the slot", err)
		ids = []string{ids[1], ids[2], a.ID}
		if exists(t, c, "session:"+a.Replaces) {
			t.Error("the replaced session of the same slot still exists")
		}
		if got := clusterIndex(t, c, user); !slices.Equal(got, ids) {
			t.Fatalf("index after a replacing login = %q, want %q", got, ids)
		}

		// Replaces in another slot, on another master: an anonymous session
		// tagged by its id.
		anonTag := tags[2][2]
		anon := tagged(anonTag, anonTag+"-anonymous")
		_, err = s.Insert(ctx, anon, []byte("anon"), time.Minute)
		clusterCheck(t, "Insert anonymous", err)
		a = userSessionOf(user, tagged(tag, "a5"), d[3])
		a.Replaces = anon
		_, err = s2.AddUserSession(ctx, a)
		clusterCheck(t, "AddUserSession replacing an anonymous session of another slot", err)
		ids = append(ids, a.ID)
		if exists(t, c, "session:"+anon) {
			t.Error("the replaced anonymous session of another slot still exists")
		}
		if got := clusterIndex(t, c, user); !slices.Equal(got, ids) {
			t.Fatalf("index after replacing an anonymous session = %q, want %q", got, ids)
		}

		// A limit, replacing an anonymous session of another slot: the
		// oldest sessions go so that 2 remain.
		_, err = s.Insert(ctx, anon, []byte("anon"), time.Minute)
		clusterCheck(t, "Insert anonymous", err)
		a = userSessionOf(user, tagged(tag, "a6"), d[3])
		a.Replaces, a.Limit = anon, 2
		ended, err := s.AddUserSession(ctx, a)
		clusterCheck(t, "AddUserSession with a limit", err)
		if len(ended) != 4 || ended[0] != anon || exists(t, c, "session:"+anon) {
			t.Fatalf("AddUserSession with limit 2 over 4 sessions ended %q, anonymous left %v; want the anonymous one and 3 revoked, the anonymous one deleted", ended, exists(t, c, "session:"+anon))
		}
		// The deadlines are a1 < a2 < a3 < a4 = a5 = a6: the two kept are
		// among a4, a5 and a6, with a6.
		left := clusterIndex(t, c, user)
		if len(left) != 2 || !slices.Contains(left, a.ID) {
			t.Fatalf("index after the limited login = %q, want 2 with %q", left, a.ID)
		}
		for _, id := range ended {
			if exists(t, c, "session:"+id) {
				t.Errorf("ended session %q still exists", id)
			}
		}

		// A merge, replacing an anonymous session of another slot: the new
		// record is made from the anonymous one, taken as it is deleted.
		_, err = s.Insert(ctx, anon, []byte("anon"), time.Minute)
		clusterCheck(t, "Insert anonymous", err)
		mg := userSessionOf(user, tagged(tag, "a6m"), d[3])
		mg.Replaces = anon
		mg.Merge = func(cur []byte) ([]byte, error) { return append([]byte("merged:"), cur...), nil }
		ended, err = s2.AddUserSession(ctx, mg)
		clusterCheck(t, "AddUserSession with a merge across slots", err)
		if !slices.Equal(ended, []string{anon}) || exists(t, c, "session:"+anon) {
			t.Fatalf("AddUserSession with a merge across slots ended %q, anonymous left %v; want the anonymous one, deleted", ended, exists(t, c, "session:"+anon))
		}
		if got := clusterRecords(t, c)[mg.ID]; got != "merged:anon" {
			t.Errorf("record merged across slots = %q, want merged:anon", got)
		}

		// MoveSession: a renewal of the user's session, in its slot.
		moved, err := s2.MoveSession(ctx, redisstore.Move{UserID: user, From: a.ID, To: tagged(tag, "a7"), TTL: time.Hour, Deadline: d[3],
			Merge: func(cur []byte) ([]byte, error) { return append(cur, "+moved"...), nil }})
		clusterCheck(t, "MoveSession", err)
		if !moved || exists(t, c, "session:"+a.ID) {
			t.Fatalf("MoveSession = %v, old record exists %v; want moved", moved, exists(t, c, "session:"+a.ID))
		}
		left = clusterIndex(t, c, user)
		if !slices.Contains(left, tagged(tag, "a7")) || slices.Contains(left, a.ID) {
			t.Fatalf("index after MoveSession = %q, want a7 instead of a6", left)
		}
		if to, err := s.MovedTo(ctx, a.ID); err != nil || to != tagged(tag, "a7") {
			t.Errorf("MovedTo(a6) after MoveSession = %q, %v; want a7", to, err)
		}
		// MoveSession of an anonymous session, keeping its own tag.
		_, err = s.Insert(ctx, anon, []byte("anon"), time.Minute)
		clusterCheck(t, "Insert anonymous", err)
		to := tagged(anonTag, anonTag+"-renewed")
		moved, err = s.MoveSession(ctx, redisstore.Move{From: anon, To: to, TTL: time.Hour, Deadline: d[3],
			Merge: func(cur []byte) ([]byte, error) { return cur, nil }})
		clusterCheck(t, "MoveSession anonymous", err)
		if !moved || exists(t, c, "session:"+anon) || !exists(t, c, "session:"+to) {
			t.Fatal("anonymous MoveSession did not move the record")
		}

		// RemoveUserSession, of a user's session and of an anonymous one.
		removed, err := s.RemoveUserSession(ctx, user, tagged(tag, "a7"))
		clusterCheck(t, "RemoveUserSession", err)
		if !removed || slices.Contains(clusterIndex(t, c, user), tagged(tag, "a7")) {
			t.Fatalf("RemoveUserSession = %v, index %q; want removed and out of the index", removed, clusterIndex(t, c, user))
		}
		removed, err = s2.RemoveUserSession(ctx, "", to)
		clusterCheck(t, "RemoveUserSession anonymous", err)
		if !removed || exists(t, c, "session:"+to) {
			t.Fatal("anonymous RemoveUserSession did not remove")
		}

		// RemoveUserSessions, keeping one, then all.
		ids = []string{tagged(tag, "b1"), tagged(tag, "b2"), tagged(tag, "b3")}
		for i, id := range ids {
			_, err := s2.AddUserSession(ctx, userSessionOf(user, id, d[i]))
			clusterCheck(t, "AddUserSession", err)
		}
		all := clusterIndex(t, c, user)
		ended, err = s.RemoveUserSessions(ctx, user, ids[1])
		clusterCheck(t, "RemoveUserSessions keeping one", err)
		if got := clusterIndex(t, c, user); !slices.Equal(got, []string{ids[1]}) || len(ended) != len(all)-1 {
			t.Fatalf("RemoveUserSessions(keep b2) ended %q, index %q; want all of %q but b2", ended, got, all)
		}
		ended, err = s2.RemoveUserSessions(ctx, user, "")
		clusterCheck(t, "RemoveUserSessions", err)
		if !slices.Equal(ended, []string{ids[1]}) || exists(t, c, indexKey(user)) || exists(t, c, "session:"+ids[1]) {
			t.Fatalf("RemoveUserSessions ended %q, want [b2] and no key left", ended)
		}
	})

	t.Run("AnonymousMoves", func(t *testing.T) {
		// A moved anonymous session leaves a pointer from its old id to
		// its new one, which MovedTo returns for as long as it lives: in
		// the transaction of the move for a tagged session, whose keys
		// share a slot; on its own, after the new record, for an untagged
		// one (made before a TagKey), whose keys lie in three slots.
		same := func([]byte) ([]byte, error) { return []byte("anon"), nil }
		var across [2]string // untagged ids whose record keys and pointer lie in three slots
		for i := 0; across[0] == ""; i++ {
			from, to := fmt.Sprintf("xa%d", i), fmt.Sprintf("xb%d", i)
			a, b, p := redistest.Slot("session:"+from), redistest.Slot("session:"+to), redistest.Slot("session:"+from+":next")
			if a != b && a != p && b != p {
				across = [2]string{from, to}
			}
		}
		for _, ids := range [][2]string{{tagged(tags[1][0], "a1"), tagged(tags[1][0], "a2")}, across} {
			from, to := ids[0], ids[1]
			_, err := s.Insert(ctx, from, []byte("anon"), time.Minute)
			clusterCheck(t, "Insert", err)
			slow := func(b []byte) ([]byte, error) { time.Sleep(300 * time.Millisecond); return same(b) }
			moved, err := s2.MoveSession(ctx, redisstore.Move{From: from, To: to, TTL: time.Minute, Merge: slow})
			clusterCheck(t, "MoveSession", err)
			if !moved || exists(t, c, "session:"+from) || !exists(t, c, "session:"+to) {
				t.Fatalf("MoveSession(%s to %s) = %v, want the record moved", from, to, moved)
			}
			pointer := "session:" + from + ":next"
			if got, _ := redis.String(owner(t, c, pointer).Do(t, "GET", pointer), nil); got != to {
				t.Errorf("pointer of %s = %q, want %q", from, got, to)
			}
			d, rd := pttl(t, owner(t, c, pointer), pointer), pttl(t, owner(t, c, "session:"+to), "session:"+to)
			if d <= 55*time.Second || d > time.Minute || rd-d > 50*time.Millisecond {
				t.Errorf("PTTL of the pointer of %s = %v, want about a minute, the record's (%v)", from, d, rd)
			}
			for range 2 {
				got, err := s.MovedTo(ctx, from)
				clusterCheck(t, "MovedTo", err)
				if got != to {
					t.Errorf("MovedTo(%s) = %q, want %q", from, got, to)
				}
			}
			clusterCheck(t, "Remove", s.Remove(ctx, to))
		}
		// A user's session made before a TagKey, renewed under the user's
		// tag: the record moves across slots, and its pointer too, last.
		{
			tag := tags[1][1]
			user, from, to := tagged(tag, "dave"), across[0]+"-dave", tagged(tag, "dave2")
			_, err := s.Insert(ctx, from, []byte("rec-dave"), time.Minute) // its index was another, untagged
			clusterCheck(t, "Insert", err)
			moved, err := s2.MoveSession(ctx, redisstore.Move{UserID: user, From: from, To: to, TTL: time.Minute, Deadline: d[2], Merge: same})
			clusterCheck(t, "MoveSession of a user's session across slots", err)
			if !moved || exists(t, c, "session:"+from) || !slices.Equal(clusterIndex(t, c, user), []string{to}) {
				t.Fatalf("MoveSession(%s to %s) = %v, index %q; want moved, and %s alone in the index", from, to, moved, clusterIndex(t, c, user), to)
			}
			if got, err := s.MovedTo(ctx, from); err != nil || got != to {
				t.Errorf("MovedTo(%s) after a user's move across slots = %q, %v; want %q", from, got, err, to)
			}
		}
		// Two renewals of one session across slots at once, from
		// requests that both loaded it: one moves it, the other finds it
		// gone and writes nothing, not even a pointer, so the pointer
		// leads to the session that lives.
		for round := range 200 {
			from := across[0]
			to := [2]string{fmt.Sprintf("%s-%d-a", across[1], round), fmt.Sprintf("%s-%d-b", across[1], round)}
			_, err := s.Insert(ctx, from, []byte("anon"), time.Minute)
			clusterCheck(t, "Insert", err)
			var moved [2]bool
			var merr [2]error
			together(
				func() {
					moved[0], merr[0] = s.MoveSession(ctx, redisstore.Move{From: from, To: to[0], TTL: time.Minute, Merge: same})
				},
				func() {
					time.Sleep(time.Duration(round%20) * 40 * time.Microsecond) // at each step of the other move in turn
					moved[1], merr[1] = s2.MoveSession(ctx, redisstore.Move{From: from, To: to[1], TTL: time.Minute, Merge: same})
				},
			)
			clusterCheck(t, "MoveSession", errors.Join(merr[:]...))
			if moved[0] == moved[1] {
				t.Fatalf("round %d: two racing moves reported moved %v, want exactly one", round, moved)
			}
			winner := to[0]
			if moved[1] {
				winner = to[1]
			}
			if got, err := s.MovedTo(ctx, from); err != nil || got != winner {
				t.Fatalf("round %d: MovedTo = %q, %v; want the winner %q", round, got, err, winner)
			}
			for i, id := range to {
				if exists(t, c, "session:"+id) != moved[i] {
					t.Fatalf("round %d: record of %s exists %v, moved %v", round, id, !moved[i], moved[i])
				}
			}
			clusterCheck(t, "Remove", s.Remove(ctx, winner))
			owner(t, c, "session:"+from+":next").Do(t, "DEL", "session:"+from+":next")
		}
		// A pointer its node refuses (out of memory) leaves the session
		// moved, without a pointer, not ended.
		var from, to string
		for i := 0; from == ""; i++ {
			f, n := fmt.Sprintf("oa%d", i), fmt.Sprintf("ob%d", i)
			p := owner(t, c, "session:"+f+":next").Addr()
			if owner(t, c, "session:"+f).Addr() != p && owner(t, c, "session:"+n).Addr() != p {
				from, to = f, n
			}
		}
		_, err := s.Insert(ctx, from, []byte("anon"), time.Minute)
		clusterCheck(t, "Insert", err)
		full := owner(t, c, "session:"+from+":next")
		full.Do(t, "CONFIG", "SET", "maxmemory-policy", "noeviction")
		full.Do(t, "CONFIG", "SET", "maxmemory", "1")
		moved, err := s.MoveSession(ctx, redisstore.Move{From: from, To: to, TTL: time.Minute, Merge: same})
		full.Do(t, "CONFIG", "SET", "maxmemory", "0")
		if !moved || err != nil || !exists(t, c, "session:"+to) || exists(t, c, "session:"+from+":next") {
			t.Errorf("MoveSession with its pointer refused = %v, %v; want the session moved, without a pointer", moved, err)
		}
		clusterCheck(t, "Remove", s.Remove(ctx, to))
	})

	t.Run("LimitConcurrent", func(t *testing.T) {
		const limit, n = 3, 24
		tag := tags[2][1]
		user := tagged(tag, "bob")
		revoked := make([][]string, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				a := userSessionOf(user, tagged(tag, fmt.Sprintf("c%02d", i)), d[0])
				a.Limit = limit
				revoked[i], errs[i] = []*redisstore.Store{s, s2}[i%2].AddUserSession(ctx, a)
			})
		}
		wg.Wait()
		seen := map[string]int{}
		for i, err := range errs {
			if err != nil {
				t.Errorf("login %d: %v%s", i, err, forbidden(err))
			}
			for _, id := range revoked[i] {
				seen[id]++
			}
		}
		live := clusterIndex(t, c, user)
		for _, id := range live {
			if !exists(t, c, "session:"+id) {
				t.Errorf("index lists %q, whose record is gone", id)
			}
			seen[id]++
		}
		if len(live) != limit {
			t.Errorf("%d concurrent logins with limit %d left %d sessions: %q", n, limit, len(live), live)
		}
		// Each session is either revoked by exactly one login or live.
		for i := range n {
			if id := tagged(tag, fmt.Sprintf("c%02d", i)); seen[id] != 1 {
				t.Errorf("session %q: revoked or live %d times, want once", id, seen[id])
			}
		}
		var recs int
		for id := range records(t, owner(t, c, indexKey(user))) {
			if strings.HasPrefix(id, "{"+tag+"}c") {
				recs++
			}
		}
		if recs != limit {
			t.Errorf("%d records of the user remain, want %d", recs, limit)
		}
	})

	t.Run("Iterate", func(t *testing.T) {
		// Records on every master, in many slots each.
		want := map[string]string{}
		for k := range masters {
			for _, tag := range tags[k] {
				for j := range 30 {
					id := tagged(tag, fmt.Sprintf("it%02d", j))
					want[id] = "r-" + id
					_, err := s.Insert(ctx, id, []byte(want[id]), time.Minute)
					clusterCheck(t, "Insert", err)
				}
			}
		}
		all := clusterRecords(t, c)
		for k, m := range masters {
			if len(records(t, m)) == 0 {
				t.Fatalf("master %d holds no record", k)
			}
		}
		got := map[string]string{}
		err := s2.Iterate(ctx, func(id string, rec []byte) error {
			got[id] = string(rec)
			return nil
		})
		clusterCheck(t, "Iterate", err)
		if !maps.Equal(got, all) {
			t.Errorf("Iterate visited %d records, the masters hold %d", len(got), len(all))
		}
		for id := range want {
			if _, ok := got[id]; !ok {
				t.Errorf("Iterate missed %q", id)
			}
		}
		// An error from fn stops it and comes back unchanged.
		stop := errors.New("stop")
		visits := 0
		if err := s.Iterate(ctx, func(string, []byte) error { visits++; return stop }); err != stop || visits != 1 {
			t.Errorf("Iterate with a failing fn = %v after %d visits, want stop after 1", err, visits)
		}
	})

	t.Run("MoveSlot", func(t *testing.T) {
		tag := tags[0][3]
		user := tagged(tag, "carol")
		ids := []string{tagged(tag, "m1"), tagged(tag, "m2")}
		for i, id := range ids {
			_, err := s.AddUserSession(ctx, userSessionOf(user, id, d[i]))
			clusterCheck(t, "AddUserSession", err)
		}
		slot := redistest.Slot(indexKey(user))
		from := c.MasterOf(t, slot)
		to := otherMasterThan(t, c, from)
		keys, _ := redis.Int(from.Do(t, "CLUSTER", "COUNTKEYSINSLOT", slot), nil)
		t.Logf("MoveSlot of %d keys: %v", keys, c.MoveSlot(t, slot, to).Round(time.Millisecond))

		// Each call meets MOVED (each Store once) and follows it.
		rec, found, err := s.Load(ctx, ids[0], time.Hour)
		clusterCheck(t, "Load after MoveSlot", err)
		if !found || string(rec) != "rec-"+ids[0] {
			t.Fatalf("Load after MoveSlot = %q, %v", rec, found)
		}
		got, _, err := s2.UserSessions(ctx, user)
		clusterCheck(t, "UserSessions after MoveSlot", err)
		if !slices.Equal(got, ids) {
			t.Fatalf("UserSessions after MoveSlot = %q, want %q", got, ids)
		}
		a := userSessionOf(user, tagged(tag, "m3"), d[2])
		a.Limit = 2
		revoked, err := s2.AddUserSession(ctx, a)
		clusterCheck(t, "AddUserSession after MoveSlot", err)
		if !slices.Equal(revoked, ids[:1]) {
			t.Fatalf("AddUserSession with limit 2 revoked %q, want %q", revoked, ids[:1])
		}
		_, err = s.Merge(ctx, ids[1], time.Hour, func(cur []byte) ([]byte, error) { return cur, nil })
		clusterCheck(t, "Merge after MoveSlot", err)
		if n, _ := redis.Int(to.Do(t, "CLUSTER", "COUNTKEYSINSLOT", slot), nil); n != keys {
			t.Errorf("the new master has %d keys in the slot, want %d (one revoked, one added)", n, keys)
		}
		// Reads are one command on the new master again, once the refresh
		// of the slot map that the MOVED replies started is over.
		time.Sleep(200 * time.Millisecond)
		resetStats(t)
		_, _, err = s.Load(ctx, ids[1], time.Hour)
		clusterCheck(t, "Load", err)
		for _, o := range masters {
			want := map[string]int64{}
			if o == to {
				want = map[string]int64{"getex": 1}
			}
			if got := clientCalls(t, o); !maps.Equal(got, want) {
				t.Errorf("Load after MoveSlot: port %d ran %v, want %v", o.Port, got, want)
			}
		}
		ended, err := s.RemoveUserSessions(ctx, user, "")
		clusterCheck(t, "RemoveUserSessions after MoveSlot", err)
		if len(ended) != 2 {
			t.Errorf("RemoveUserSessions ended %q, want 2", ended)
		}
	})

	t.Run("SlowMigration", func(t *testing.T) {
		// A Store with a short Timeout, so that calls that must wait for
		// the end of the migration give up quickly.
		short := openCluster(t, c, redisstore.Config{Timeout: 150 * time.Millisecond})
		tag := tags[1][3]
		user := tagged(tag, "dave")
		ids := []string{tagged(tag, "s1"), tagged(tag, "s2"), tagged(tag, "s3")}
		for i, id := range ids {
			_, err := s.AddUserSession(ctx, userSessionOf(user, id, d[i]))
			clusterCheck(t, "AddUserSession", err)
		}
		clusterCheck(t, "warm up", short.Ping(ctx))
		if _, _, err := short.Load(ctx, ids[0], 0); err != nil {
			t.Fatal(err)
		}
		slot := redistest.Slot(indexKey(user))
		from := c.MasterOf(t, slot)
		to := otherMasterThan(t, c, from)

		// calls runs every kind of call on the slot and returns which
		// failed, failing the test on any error but ErrUnavailable.
		fresh := 0
		calls := func(phase string) (failed []string) {
			t.Helper()
			fresh++
			nid := tagged(tag, fmt.Sprintf("n%d", fresh))
			same := func(cur []byte) ([]byte, error) { return cur, nil }
			for _, call := range []struct {
				name string
				f    func() error
			}{
				{"Load s2", func() error { _, _, err := short.Load(ctx, ids[1], time.Hour); return err }},
				{"Load s1", func() error { _, _, err := short.Load(ctx, ids[0], time.Hour); return err }},
				{"Update s2", func() error { _, err := short.Update(ctx, ids[1], []byte("rec-"+ids[1]), time.Hour); return err }},
				{"Merge s2", func() error { _, err := short.Merge(ctx, ids[1], time.Hour, same); return err }},
				{"Insert new", func() error { _, err := short.Insert(ctx, nid+"x", []byte("x"), time.Minute); return err }},
				{"UserSessions", func() error { _, _, err := short.UserSessions(ctx, user); return err }},
				{"AddUserSession", func() error { _, err := short.AddUserSession(ctx, userSessionOf(user, nid, d[3])); return err }},
				{"AddUserSession limit", func() error {
					a := userSessionOf(user, nid+"l", d[3])
					a.Limit = 10
					_, err := short.AddUserSession(ctx, a)
					return err
				}},
			} {
				err := call.f()
				switch {
				case err == nil:
				case errors.Is(err, redisstore.ErrUnavailable) && forbidden(err) == "":
					failed = append(failed, call.name)
				default:
					t.Errorf("%s: %s: %v, want success or ErrUnavailable%s", phase, call.name, err, forbidden(err))
				}
			}
			t.Logf("%s: failed with ErrUnavailable: %q", phase, failed)
			return failed
		}

		m := c.BeginMoveSlot(t, slot, to)
		failed := calls("slot migrating, no key moved yet")
		for _, name := range []string{"Load s1", "Load s2", "Update s2", "Merge s2", "UserSessions"} {
			if slices.Contains(failed, name) {
				t.Errorf("%s failed while its keys were all still on the source", name)
			}
		}
		m.MoveKeys(t, "session:"+ids[0])
		failed = calls("slot migrating, s1 moved")
		if slices.Contains(failed, "Load s2") {
			t.Error("Load of a key still on the source failed")
		}
		keys, err := redis.Strings(from.Do(t, "CLUSTER", "GETKEYSINSLOT", slot, 1000), nil)
		if err != nil {
			t.Fatal(err)
		}
		m.MoveKeys(t, keys...)
		failed = calls("slot migrating, every key moved")
		if !slices.Contains(failed, "Load s1") {
			t.Log("note: Load of a moved key succeeded during the migration")
		}
		start := time.Now()
		m.Finish(t)
		t.Logf("Finish: %v", time.Since(start).Round(time.Millisecond))
		if failed := calls("after Finish"); len(failed) > 0 {
			t.Errorf("after the migration finished, %q failed", failed)
		}
		for _, id := range ids {
			rec, found, err := s2.Load(ctx, id, 0)
			clusterCheck(t, "Load after the migration", err)
			if !found || string(rec) != "rec-"+id {
				t.Errorf("Load(%s) after the migration = %q, %v", id, rec, found)
			}
		}
		if n, _ := redis.Int(to.Do(t, "CLUSTER", "COUNTKEYSINSLOT", slot), nil); n == 0 {
			t.Error("the target has no key of the slot")
		}
	})

	t.Run("StaleSlotMap", func(t *testing.T) {
		// An optimistic transaction reads its WATCH and its reads as a
		// pipeline, whose MOVED redisc does not see: the Store must still
		// learn where the slot went, or each attempt goes back to the old
		// master until the call's time runs out. Each call is the first
		// of its Store on the slot since the slot moved.
		same := func(cur []byte) ([]byte, error) { return cur, nil }
		for k, call := range []struct {
			name string
			f    func(st *redisstore.Store, user, tag string) error
		}{
			{"AddUserSession with a limit", func(st *redisstore.Store, user, tag string) error {
				a := userSessionOf(user, tagged(tag, "stale2"), d[1])
				a.Limit = 5
				_, err := st.AddUserSession(ctx, a)
				return err
			}},
			{"MoveSession", func(st *redisstore.Store, user, tag string) error {
				_, err := st.MoveSession(ctx, redisstore.Move{UserID: user, From: tagged(tag, "stale1"), To: tagged(tag, "stale2"),
					TTL: time.Hour, Deadline: d[1], Merge: same})
				return err
			}},
		} {
			t.Run(call.name, func(t *testing.T) {
				tag := tags[k][4]
				user := tagged(tag, "stale")
				_, err := s.AddUserSession(ctx, userSessionOf(user, tagged(tag, "stale1"), d[0]))
				clusterCheck(t, "AddUserSession", err)
				st := openCluster(t, c, redisstore.Config{})
				_, _, err = st.Load(ctx, tagged(tag, "stale1"), 0) // learns the slot map
				clusterCheck(t, "Load", err)
				slot := redistest.Slot(indexKey(user))
				c.MoveSlot(t, slot, otherMasterThan(t, c, c.MasterOf(t, slot)))
				clusterCheck(t, call.name+" after the slot moved", call.f(st, user, tag))
			})
		}
	})

	t.Run("WaitReplicas", func(t *testing.T) {
		// The calls that end sessions wait for the master's replica (WAIT)
		// on the connection of their slot.
		w := openCluster(t, c, redisstore.Config{WaitReplicas: 1})
		tag := tags[2][0]
		user := tagged(tag, "wendy")
		anon := tagged(tags[0][0], "wait-anon")
		_, err := w.Insert(ctx, anon, []byte("a"), time.Minute)
		clusterCheck(t, "Insert", err)
		a := userSessionOf(user, tagged(tag, "w1"), d[0])
		a.Replaces = anon
		_, err = w.AddUserSession(ctx, a)
		clusterCheck(t, "AddUserSession replacing, with WaitReplicas", err)
		a = userSessionOf(user, tagged(tag, "w2"), d[1])
		a.Replaces, a.Limit = tagged(tag, "w1"), 1
		_, err = w.AddUserSession(ctx, a)
		clusterCheck(t, "AddUserSession with a limit, with WaitReplicas", err)
		_, err = w.MoveSession(ctx, redisstore.Move{UserID: user, From: a.ID, To: tagged(tag, "w3"), TTL: time.Hour, Deadline: d[1],
			Merge: func(cur []byte) ([]byte, error) { return cur, nil }})
		clusterCheck(t, "MoveSession with WaitReplicas", err)
		_, err = w.RemoveUserSession(ctx, user, tagged(tag, "w3"))
		clusterCheck(t, "RemoveUserSession with WaitReplicas", err)
		_, err = w.AddUserSession(ctx, userSessionOf(user, tagged(tag, "w4"), d[2]))
		clusterCheck(t, "AddUserSession with WaitReplicas", err)
		ended, err := w.RemoveUserSessions(ctx, user, "")
		clusterCheck(t, "RemoveUserSessions with WaitReplicas", err)
		clusterCheck(t, "Remove with WaitReplicas", w.Remove(ctx, anon))
		if len(ended) != 1 || exists(t, c, indexKey(user)) {
			t.Errorf("RemoveUserSessions ended %q, want one and no index left", ended)
		}
	})

	t.Run("Failover", func(t *testing.T) {
		tag := tags[2][3]
		user := tagged(tag, "erin")
		ids := []string{tagged(tag, "f1"), tagged(tag, "f2")}
		for i, id := range ids {
			_, err := s.AddUserSession(ctx, userSessionOf(user, id, d[i]))
			clusterCheck(t, "AddUserSession", err)
		}
		master := owner(t, c, indexKey(user))
		replica := c.ReplicaOf(t, master)

		// Calls keep running during the failover: they succeed or fail
		// with ErrUnavailable.
		var ok, unavailable atomic.Int64
		stop := callsUntilStopped(4, func(w, i int) bool {
			var err error
			switch i % 3 {
			case 0:
				_, _, err = s2.Load(ctx, ids[0], time.Hour)
			case 1:
				_, _, err = s2.UserSessions(ctx, user)
			case 2:
				_, err = s2.Merge(ctx, ids[1], time.Hour, func(cur []byte) ([]byte, error) { return cur, nil })
			}
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, redisstore.ErrUnavailable) && forbidden(err) == "":
				unavailable.Add(1)
			default:
				t.Errorf("worker %d during CLUSTER FAILOVER: %v%s", w, err, forbidden(err))
				return false
			}
			return true
		})
		time.Sleep(100 * time.Millisecond)
		took := c.Failover(t, master)
		time.Sleep(100 * time.Millisecond)
		stop()
		t.Logf("CLUSTER FAILOVER: %v; calls meanwhile: %d ok, %d ErrUnavailable", took.Round(time.Millisecond), ok.Load(), unavailable.Load())
		if owner(t, c, indexKey(user)) != replica {
			t.Fatal("the replica did not take the slot")
		}

		// Every call works after, on the new master.
		got, _, err := s.UserSessions(ctx, user)
		clusterCheck(t, "UserSessions after failover", err)
		if !slices.Equal(got, ids) {
			t.Fatalf("UserSessions after failover = %q, want %q", got, ids)
		}
		a := userSessionOf(user, tagged(tag, "f3"), d[2])
		a.Limit, a.Replaces = 2, ids[0]
		_, err = s.AddUserSession(ctx, a)
		clusterCheck(t, "AddUserSession after failover", err)
		moved, err := s.MoveSession(ctx, redisstore.Move{UserID: user, From: ids[1], To: tagged(tag, "f4"), TTL: time.Hour, Deadline: d[3],
			Merge: func(cur []byte) ([]byte, error) { return cur, nil }})
		clusterCheck(t, "MoveSession after failover", err)
		if !moved {
			t.Fatal("MoveSession after failover did not move")
		}
		_, err = s.Insert(ctx, tagged(tag, "anon"), []byte("x"), time.Minute)
		clusterCheck(t, "Insert after failover", err)
		clusterCheck(t, "Remove after failover", s.Remove(ctx, tagged(tag, "anon")))
		removed, err := s.RemoveUserSession(ctx, user, a.ID)
		clusterCheck(t, "RemoveUserSession after failover", err)
		ended, err := s.RemoveUserSessions(ctx, user, "")
		clusterCheck(t, "RemoveUserSessions after failover", err)
		if !removed || !slices.Equal(ended, []string{tagged(tag, "f4")}) {
			t.Errorf("after failover: RemoveUserSession %v, RemoveUserSessions ended %q; want true, [f4]", removed, ended)
		}
		clusterCheck(t, "Iterate after failover", s.Iterate(ctx, func(string, []byte) error { return nil }))
		// A refresh of the slot map that a call during the failover
		// started may still be on its way to the promoted replica, where
		// its CLUSTER SLOTS would be counted (on a loaded machine): let it
		// land before counting.
		time.Sleep(500 * time.Millisecond)
		resetStats(t)
		_, err = s.Insert(ctx, ids[0], []byte("x"), time.Minute)
		clusterCheck(t, "Insert", err)
		_, _, err = s.Load(ctx, ids[0], time.Hour)
		clusterCheck(t, "Load", err)
		if got := clientCalls(t, replica); !maps.Equal(got, map[string]int64{"set": 1, "getex": 1}) {
			t.Errorf("Insert and Load on the promoted replica ran %v, want one SET and one GETEX", got)
		}
	})
}

// TestClusterConfig checks the Config errors peculiar to a Cluster.
func TestClusterConfig(t *testing.T) {
	nodes := []string{"127.0.0.1:7000"}
	for _, tc := range []struct {
		name string
		cfg  redisstore.Config
		want string
	}{
		{"KeyPrefix with {", redisstore.Config{ClusterNodes: nodes, KeyPrefix: "app{1}:"}, "KeyPrefix"},
		{"KeyPrefix with }", redisstore.Config{ClusterNodes: nodes, KeyPrefix: "app}:"}, "KeyPrefix"},
		{"DB", redisstore.Config{ClusterNodes: nodes, DB: 1}, "DB"},
		{"Addr", redisstore.Config{ClusterNodes: nodes, Addr: "127.0.0.1:6379"}, "Addr"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := redisstore.Open(tc.cfg)
			if err == nil {
				s.Close()
				t.Fatalf("Open(%+v) = nil error", tc.cfg)
			}
			if !strings.Contains(err.Error(), "Config."+tc.want) {
				t.Errorf("Open error %q does not name Config.%s", err, tc.want)
			}
		})
	}
	s, err := redisstore.Open(redisstore.Config{ClusterNodes: nodes, KeyPrefix: "app:"})
	if err != nil {
		t.Fatalf("Open with a KeyPrefix without braces: %v", err)
	}
	s.Close()
}

// aclCommands returns the rules of the example ACL user in the package
// documentation (doc.go), without its name and password.
func aclCommands(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	var rules []string
	in := false
	for line := range strings.Lines(string(b)) {
		text := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "//"))
		switch {
		case strings.HasPrefix(text, "ACL SETUSER"):
			in = true
			rules = append(rules, strings.Fields(text)[3:]...) // after ACL SETUSER <name>
		case in && strings.HasPrefix(text, "+"):
			rules = append(rules, strings.Fields(text)...)
		case in:
			in = false
		}
	}
	if !slices.Contains(rules, "+getex") || !slices.Contains(rules, "-@all") {
		t.Fatalf("cannot find the ACL SETUSER example in doc.go: got %q", rules)
	}
	return slices.DeleteFunc(rules, func(r string) bool { return strings.HasPrefix(r, ">") })
}

// TestClusterPingClusterDown takes a slot from every node's map. Under
// cluster-require-full-coverage no, only the slot's keys are refused
// (CLUSTERDOWN Hash slot not served), Ping's own key's slot taken here:
// Ping passes, as readiness that failed on every instance would take the
// other slots' users down too. Under the default yes, each node then
// reports the cluster down and refuses every command with a key
// (CLUSTERDOWN), and Ping fails, though each master still answers PING.
func TestClusterPingClusterDown(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterOptions{ReplicasPerMaster: -1, Args: []string{"--cluster-require-full-coverage", "no"}})
	s := openCluster(t, c, redisstore.Config{})
	ctx := context.Background()
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping of a healthy Cluster = %v, want nil", err)
	}
	slot := redistest.Slot("session:") // the key Ping's checks send
	for _, n := range c.Nodes() {
		n.Do(t, "CLUSTER", "DELSLOTS", slot)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping with slot %d of Ping's own key unserved, under cluster-require-full-coverage no = %v, want nil", slot, err)
	}
	// A change of the setting alone does not make a node look at its
	// state again: taking another slot does.
	for _, n := range c.Nodes() {
		n.Do(t, "CONFIG", "SET", "cluster-require-full-coverage", "yes")
		n.Do(t, "CLUSTER", "DELSLOTS", (slot+1)%redisc.HashSlots)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		down := 0
		for _, n := range c.Nodes() {
			info, _ := redis.String(n.Do(t, "CLUSTER", "INFO"), nil)
			if strings.Contains(info, "cluster_state:fail") {
				down++
			}
		}
		if down == len(c.Nodes()) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d nodes report the cluster down 10 s after DELSLOTS", down, len(c.Nodes()))
		}
	}
	err := s.Ping(ctx)
	if !errors.Is(err, redisstore.ErrUnavailable) || !strings.Contains(fmt.Sprint(err), "CLUSTERDOWN") {
		t.Fatalf("Ping of a Cluster that is down = %v, want ErrUnavailable with CLUSTERDOWN", err)
	}
	// Every master says so: the error blames none.
	if strings.Contains(fmt.Sprint(err), "master ") {
		t.Errorf("Ping of a Cluster that is down = %v, naming a master", err)
	}
}

// TestClusterPingACL: on a Cluster, Ping checks the ACL user's permissions
// on every master, where its keys' slots are mostly another's (Redis checks
// the ACL before the slot): with the documented line it passes; with
// "+zadd" or "~user:*" taken away on one master only, it fails with
// ErrRefused naming ZADD.
func TestClusterPingACL(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterOptions{ReplicasPerMaster: -1})
	const password = "acl-password"
	rules := append(aclCommands(t), "+cluster|slots")
	for _, n := range c.Nodes() {
		n.Do(t, "ACL", append([]any{"SETUSER", "sessionkit", ">" + password}, anys(rules)...)...)
	}
	ctx := context.Background()
	s := openCluster(t, c, redisstore.Config{Username: "sessionkit", Password: password})
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping as the documented ACL user = %v, want nil", err)
	}
	last := c.Masters(t)[len(c.Masters(t))-1]
	for _, missing := range []string{"+zadd", "~user:*"} {
		user := "no" + strings.Trim(missing, "+~:*")
		for _, n := range c.Nodes() {
			n.Do(t, "ACL", append([]any{"SETUSER", user, ">" + password}, anys(rules)...)...)
		}
		last.Do(t, "ACL", "SETUSER", user, "reset", "on", ">"+password, "resetchannels",
			"-@all", "+@all", "~session:*", "-zadd") // every command but ZADD on session keys only
		if missing == "+zadd" {
			last.Do(t, "ACL", "SETUSER", user, "~user:*")
		} else {
			last.Do(t, "ACL", "SETUSER", user, "+zadd")
		}
		err := openCluster(t, c, redisstore.Config{Username: user, Password: password}).Ping(ctx)
		if !errors.Is(err, redisstore.ErrRefused) || !strings.Contains(err.Error(), "ZADD") || !strings.Contains(err.Error(), "master "+last.Addr()+":") {
			t.Errorf("Ping on a Cluster with %s missing on one master = %v, want ErrRefused naming ZADD and that master, %s", missing, err, last.Addr())
		}
	}
	// EXISTS, which renewals, limited logins and listings send, on every
	// master.
	noExists := slices.DeleteFunc(slices.Clone(rules), func(r string) bool { return r == "+exists" })
	for _, n := range c.Nodes() {
		n.Do(t, "ACL", append([]any{"SETUSER", "noexists", ">" + password}, anys(noExists)...)...)
	}
	err := openCluster(t, c, redisstore.Config{Username: "noexists", Password: password}).Ping(ctx)
	if !errors.Is(err, redisstore.ErrRefused) || !strings.Contains(err.Error(), "EXISTS") {
		t.Errorf("Ping on a Cluster without +exists = %v, want ErrRefused naming EXISTS", err)
	}
}

// TestClusterACL runs every operation as an ACL user with exactly the
// commands the package documentation lists, plus the one it names for a
// Cluster (+cluster|slots), set on every node: nothing is denied, as ACL
// LOG confirms on every node (it also sees commands whose errors the Store
// would swallow, such as the pool's UNWATCH).
func TestClusterACL(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterOptions{ReplicasPerMaster: -1})
	const user, password = "sessionkit", "acl-password"
	rules := append(aclCommands(t), "+cluster|slots")
	t.Logf("ACL SETUSER %s >... %s", user, strings.Join(rules, " "))
	for _, n := range c.Nodes() {
		n.Do(t, "ACL", append([]any{"SETUSER", user, ">" + password}, anys(rules)...)...)
		n.Do(t, "ACL", "LOG", "RESET")
	}
	s := openCluster(t, c, redisstore.Config{Username: user, Password: password})
	ctx := context.Background()
	tags := tagsOnMasters(t, c, 2)
	d := deadlines(3)
	same := func(cur []byte) ([]byte, error) { return cur, nil }
	errMerge := errors.New("merge failed")

	for k := range tags {
		tag, anonTag := tags[k][0], tags[(k+1)%len(tags)][1]
		user := tagged(tag, "alice")
		id := func(s string) string { return tagged(tag, s) }
		anon := tagged(anonTag, "anon")
		for _, call := range []struct {
			name string
			f    func() error
		}{
			{"Ping", func() error { return s.Ping(ctx) }},
			{"Insert", func() error { _, err := s.Insert(ctx, anon, []byte("a"), time.Minute); return err }},
			{"Load", func() error { _, _, err := s.Load(ctx, anon, 0); return err }},
			{"Load ttl", func() error { _, _, err := s.Load(ctx, anon, time.Hour); return err }},
			{"Update", func() error { _, err := s.Update(ctx, anon, []byte("b"), time.Minute); return err }},
			{"Merge", func() error { _, err := s.Merge(ctx, anon, time.Minute, same); return err }},
			{"Merge failing", func() error {
				if _, err := s.Merge(ctx, anon, time.Minute, func([]byte) ([]byte, error) { return nil, errMerge }); !errors.Is(err, errMerge) {
					return fmt.Errorf("got %v, want the merge's error", err)
				}
				return nil
			}},
			{"AddUserSession replacing another slot", func() error {
				a := userSessionOf(user, id("1"), d[0])
				a.Replaces = anon
				_, err := s.AddUserSession(ctx, a)
				return err
			}},
			{"AddUserSession replacing", func() error {
				a := userSessionOf(user, id("2"), d[1])
				a.Replaces = id("1")
				_, err := s.AddUserSession(ctx, a)
				return err
			}},
			{"AddUserSession limit", func() error {
				a := userSessionOf(user, id("3"), d[2])
				a.Limit = 1
				revoked, err := s.AddUserSession(ctx, a)
				if err == nil && len(revoked) != 1 {
					err = fmt.Errorf("revoked %q, want one", revoked)
				}
				return err
			}},
			{"MoveSession", func() error {
				_, err := s.MoveSession(ctx, redisstore.Move{UserID: user, From: id("3"), To: id("4"), TTL: time.Hour, Deadline: d[2], Merge: same})
				return err
			}},
			{"MoveSession failing", func() error {
				_, err := s.MoveSession(ctx, redisstore.Move{UserID: user, From: id("4"), To: id("5"), TTL: time.Hour, Deadline: d[2],
					Merge: func([]byte) ([]byte, error) { return nil, errMerge }})
				if !errors.Is(err, errMerge) {
					return fmt.Errorf("got %v, want the merge's error", err)
				}
				return nil
			}},
			{"UserSessions", func() error {
				ids, _, err := s.UserSessions(ctx, user)
				if err == nil && !slices.Equal(ids, []string{id("4")}) {
					err = fmt.Errorf("got %q", ids)
				}
				return err
			}},
			{"AddUserSession", func() error { _, err := s.AddUserSession(ctx, userSessionOf(user, id("6"), d[0])); return err }},
			{"RemoveUserSession", func() error { _, err := s.RemoveUserSession(ctx, user, id("6")); return err }},
			{"RemoveUserSession anonymous", func() error { _, err := s.RemoveUserSession(ctx, "", anon); return err }},
			{"RemoveUserSessions keep", func() error { _, err := s.RemoveUserSessions(ctx, user, id("4")); return err }},
			{"RemoveUserSessions", func() error {
				ended, err := s.RemoveUserSessions(ctx, user, "")
				if err == nil && len(ended) != 1 {
					err = fmt.Errorf("ended %q, want one", ended)
				}
				return err
			}},
			{"RemoveUserSessions of none", func() error { _, err := s.RemoveUserSessions(ctx, user, ""); return err }},
			{"Remove", func() error { return s.Remove(ctx, anon) }},
			{"Iterate", func() error {
				if _, err := s.Insert(ctx, anon, []byte("a"), time.Minute); err != nil {
					return err
				}
				n := 0
				err := s.Iterate(ctx, func(string, []byte) error { n++; return nil })
				if err == nil && n == 0 {
					err = errors.New("visited nothing")
				}
				return err
			}},
		} {
			if err := call.f(); err != nil {
				t.Errorf("master %d: %s as the documented ACL user: %v%s", k, call.name, err, forbidden(err))
			}
		}
	}
	for _, n := range c.Nodes() {
		entries, err := redis.Values(n.Do(t, "ACL", "LOG"), nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			fields := aclEntry(e)
			t.Errorf("port %d denied %s %q to %s (reason %s)", n.Port, fields["context"], fields["object"], fields["username"], fields["reason"])
		}
	}

	// Without +cluster|slots, the Store learns where slots are from MOVED
	// replies alone, but Iterate, which must list the masters, cannot: it
	// fails, and NOPERM is a refusal (ErrRefused) that no retry mends, not
	// an outage.
	rules = slices.DeleteFunc(rules, func(r string) bool { return r == "+cluster|slots" })
	for _, n := range c.Nodes() {
		n.Do(t, "ACL", append([]any{"SETUSER", "noslots", ">" + password}, anys(rules)...)...)
	}
	noslots := openCluster(t, c, redisstore.Config{Username: "noslots", Password: password})
	for k := range tags {
		id := tagged(tags[k][0], "noslots")
		if _, err := noslots.Insert(ctx, id, []byte("v"), time.Minute); err != nil {
			t.Errorf("Insert without +cluster|slots: %v", err)
		}
	}
	err := noslots.Iterate(ctx, func(string, []byte) error { return nil })
	if err == nil {
		t.Error("Iterate without +cluster|slots succeeded: the permission the documentation asks for is not needed")
	} else if !errors.Is(err, redisstore.ErrRefused) {
		t.Errorf("Iterate without +cluster|slots: %q, want ErrRefused (NOPERM will not go away by itself)", err)
	}

	// A wrong password is a refusal, as on one server, also when no node
	// gives a connection to learn the slots from, where redisc keeps only
	// the text of the dials' errors; and Describe names the settings.
	wrongCfg := redisstore.Config{ClusterNodes: c.Addrs()[:1], Username: "noslots", Password: "wrong-" + password, Timeout: 300 * time.Millisecond}
	wrong := openCluster(t, c, wrongCfg)
	err = wrong.Ping(ctx)
	if !errors.Is(err, redisstore.ErrRefused) {
		t.Errorf("Ping with a wrong password: %q, want ErrRefused", err)
	}
	if got, want := redisstore.Describe(err, wrongCfg), "authentication failed for user noslots (REDIS_USERNAME / REDIS_PASSWORD)"; got != want {
		t.Errorf("Describe(%q) = %q, want %q", err, got, want)
	}
	if _, err := wrong.Insert(ctx, tagged(tags[0][0], "x"), []byte("v"), time.Minute); !errors.Is(err, redisstore.ErrRefused) {
		t.Errorf("Insert with a wrong password: %q, want ErrRefused", err)
	}
}

// anys returns ss as a []any, for command arguments.
func anys(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// aclEntry returns an entry of ACL LOG as field -> value.
func aclEntry(e any) map[string]string {
	kv, _ := redis.Values(e, nil)
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		k, _ := redis.String(kv[i], nil)
		if b, ok := kv[i+1].([]byte); ok {
			m[k] = string(b)
		} else {
			m[k] = fmt.Sprint(kv[i+1])
		}
	}
	return m
}

// TestClusterPoolWaitHonoursContext checks, on a Cluster, what the package
// documentation promises of every call: the wait for a free pooled
// connection is bounded by the caller's context. A merge holds the only
// connection to a master; a Load of another key of that master, with a
// context of 100ms, must give up within about that, with the error of an
// exhausted pool on one server, and without refreshing the slot map.
func TestClusterPoolWaitHonoursContext(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterOptions{ReplicasPerMaster: -1})
	s := openCluster(t, c, redisstore.Config{MaxActive: 1, Timeout: 3 * time.Second}) // the held Merge outlasts the calls below
	ctx := context.Background()
	tags := tagsOnMasters(t, c, 2)
	held, other := tagged(tags[0][0], "held"), tagged(tags[0][1], "other")
	for _, id := range []string{held, other} {
		_, err := s.Insert(ctx, id, []byte("v"), time.Minute)
		clusterCheck(t, "Insert", err)
	}
	inMerge, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := s.Merge(ctx, held, time.Minute, func(cur []byte) ([]byte, error) {
			close(inMerge)
			<-release
			return cur, nil
		})
		done <- err
	}()
	<-inMerge
	time.AfterFunc(1500*time.Millisecond, func() { close(release) })
	for _, n := range c.Nodes() {
		n.ResetStats(t)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, err := s.Load(short, other, 0)
	took := time.Since(start)
	// More calls that wait their turn at the node: the map is right, and
	// their timeouts may not refresh it (at most one refresh per 100 ms
	// would be about one per call).
	const calls = 10
	for range calls - 1 {
		more, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		s.Load(more, other, 0)
		cancel()
	}
	slots := int64(0)
	for _, n := range c.Nodes() {
		slots += n.Calls(t)["cluster|slots"]
	}
	t.Logf("%d calls on an exhausted pool sent CLUSTER SLOTS %d times", calls, slots)
	if slots > 1 {
		t.Errorf("%d calls on an exhausted pool sent CLUSTER SLOTS %d times, want at most one: the map named the right node", calls, slots)
	}
	if err := <-done; err != nil {
		t.Errorf("Merge: %v", err)
	}
	t.Logf("Load with a 100ms context on an exhausted pool: %v after %v", err, took.Round(time.Millisecond))
	// What docs/troubleshooting.md, "Pool exhausted", says of a Cluster.
	if !errors.Is(err, redisstore.ErrUnavailable) || err.Error() != "redisstore: redis unavailable (load): context deadline exceeded" {
		t.Errorf("Load on an exhausted pool = %v, want ErrUnavailable, context deadline exceeded", err)
	}
	if took > 300*time.Millisecond {
		t.Errorf("Load with a 100ms context waited %v for a pooled connection (err %v): the caller's context does not bound the wait on a Cluster", took.Round(time.Millisecond), err)
	}
}

// TestClusterSilentSeeds configures Stores with seeds that accept
// connections and never answer (a stalled or firewalled host) beside a
// node of the cluster: the first calls, which wait for the slot map, must
// still end within their context, and later calls find the cluster,
// rather than wait for redisc to try the seeds in turn (in random order),
// a read timeout each silent one, well past a context of 200 ms.
func TestClusterSilentSeeds(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterOptions{ReplicasPerMaster: -1})
	var seeds []string
	for range 10 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var conns []net.Conn // held open, never answered
		t.Cleanup(func() {
			l.Close()
			mu.Lock()
			defer mu.Unlock()
			for _, c := range conns {
				c.Close()
			}
		})
		go func() {
			for {
				conn, err := l.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				conns = append(conns, conn)
				mu.Unlock()
			}
		}()
		seeds = append(seeds, l.Addr().String())
	}
	ctx := context.Background()
	calls := []struct {
		name string
		f    func(s *redisstore.Store, ctx context.Context) error
	}{
		{"Ping", (*redisstore.Store).Ping},
		{"Load", func(s *redisstore.Store, ctx context.Context) error { _, _, err := s.Load(ctx, "x", 0); return err }},
		{"Insert", func(s *redisstore.Store, ctx context.Context) error {
			_, err := s.Insert(ctx, "x", []byte("v"), time.Minute)
			return err
		}},
	}
	var s *redisstore.Store
	// A fresh Store for each first call: redisc tries the seeds in random
	// order, and may find the cluster's node first.
	for round := range 3 {
		for _, call := range calls {
			var err error
			s, err = redisstore.Open(redisstore.Config{ClusterNodes: append(seeds, c.Addrs()[0]), ReadTimeout: 300 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			start := time.Now()
			err = call.f(s, short)
			cancel()
			if took := time.Since(start); took > 700*time.Millisecond {
				t.Errorf("round %d: first %s with a 200ms context behind silent seeds took %v (err %v), want it cut short", round, call.name, took.Round(time.Millisecond), err)
			}
		}
	}
	// The slot map comes once redisc reaches the cluster's node.
	var last error
	for start := time.Now(); time.Since(start) < 10*time.Second; time.Sleep(100 * time.Millisecond) {
		if _, last = s.Insert(ctx, "x", []byte("v"), time.Minute); last == nil {
			return
		}
	}
	t.Fatalf("Insert after the slot map came: %v", last)
}

// TestClusterEmptyNodeConfigured configures Stores with a lone Cluster
// node that belongs to no cluster, as a node restarted empty does, ahead
// of a node of the cluster: the lone node answers CLUSTER SLOTS with an
// empty map, which redisc takes and then asks it again first, for ever.
// Each Store must still find the cluster within its first call.
func TestClusterEmptyNodeConfigured(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterOptions{ReplicasPerMaster: -1})
	lone := redistest.Start(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
	ctx := context.Background()
	id := tagged(tagsOnMasters(t, c, 1)[0][0], "x")
	if _, err := openCluster(t, c, redisstore.Config{}).Insert(ctx, id, []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		s, err := redisstore.Open(redisstore.Config{ClusterNodes: []string{lone.Addr(), c.Addrs()[0]}, Timeout: clusterTimeout})
		if err != nil {
			t.Fatal(err)
		}
		rec, found, err := s.Load(ctx, id, 0)
		s.Close()
		clusterCheck(t, "first Load of a Store configured with an empty node first", err)
		if !found || string(rec) != "v" {
			t.Fatalf("Load = %q, %v, want v", rec, found)
		}
	}
}

// TestClusterEveryMasterReplaced kills every master of the cluster in
// turn, each replaced by its replica, while a Store makes no call: redisc
// asks only the masters it knows for the slot map, so the Store must find
// the new ones through its configured node and the replicas of the last
// map it learned, within its first call.
func TestClusterEveryMasterReplaced(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterOptions{})
	ctx := context.Background()
	tags := tagsOnMasters(t, c, 1)
	warm := openCluster(t, c, redisstore.Config{})
	for k := range tags {
		id := tagged(tags[k][0], "kept")
		_, err := warm.Insert(ctx, id, []byte("v"), time.Minute)
		clusterCheck(t, "Insert", err)
		owner(t, c, "session:"+id).Do(t, "WAIT", 1, 5000) // on the replica before the kill
	}
	// CLUSTER SLOTS lists a replica once its master has heard of its
	// replication offset, which the writes above moved.
	masters := c.Masters(t)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		ranges, err := redis.Values(masters[0].Do(t, "CLUSTER", "SLOTS"), nil)
		if err != nil {
			t.Fatal(err)
		}
		listed := 0
		for _, r := range ranges {
			if fields, _ := redis.Values(r, nil); len(fields) >= 4 {
				listed++
			}
		}
		if listed == len(ranges) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("CLUSTER SLOTS lists replicas for %d of %d slot ranges after 5 s", listed, len(ranges))
		}
	}
	// Configured with one master only (openCluster), which is killed: the
	// new masters must be found through the replicas of the slot map.
	if !slices.ContainsFunc(masters, func(m *redistest.Server) bool { return m.Addr() == c.Addrs()[0] }) {
		t.Fatalf("the first node, %s, is not a master", c.Addrs()[0])
	}
	s := openCluster(t, c, redisstore.Config{})
	if _, _, err := s.Load(ctx, tagged(tags[0][0], "kept"), 0); err != nil {
		t.Fatal(err)
	}
	for _, m := range masters {
		promoted, took := c.KillMaster(t, m)
		t.Logf("killed %s: %s promoted in %v", m.Addr(), promoted.Addr(), took.Round(time.Millisecond))
	}
	for k := range tags {
		id := tagged(tags[k][0], "kept")
		start := time.Now()
		rec, found, err := s.Load(ctx, id, 0)
		t.Logf("first Load on master %d's slot after every master was replaced: %v", k, time.Since(start).Round(time.Millisecond))
		clusterCheck(t, "Load after every master was replaced", err)
		if !found || string(rec) != "v" {
			t.Errorf("Load(%s) = %q, %v, want v", id, rec, found)
		}
	}
}

// recordOnEachMaster stores, through s, one record on each master of c,
// under the id tagged(tag, "x") of the tag tagsOnMasters gives it, and
// returns the tags.
func recordOnEachMaster(t *testing.T, c *redistest.Cluster, s *redisstore.Store) [][]string {
	t.Helper()
	tags := tagsOnMasters(t, c, 1)
	for k := range tags {
		_, err := s.Insert(context.Background(), tagged(tags[k][0], "x"), []byte("v"), time.Minute)
		clusterCheck(t, "Insert", err)
	}
	return tags
}

// TestClusterIterateSkipsForeignKeys puts a hash, as another program
// might, under the session prefix on one master: Iterate skips it, as it
// does on one server (MGET reads it as nil), rather than stop the walk at
// its WRONGTYPE; and a Load of it is marked NotRecord, for package
// session to delete it.
func TestClusterIterateSkipsForeignKeys(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterOptions{ReplicasPerMaster: -1})
	ctx := context.Background()
	s := openCluster(t, c, redisstore.Config{})
	tags := recordOnEachMaster(t, c, s)
	foreign := tagged(tags[0][0], "foreign")
	owner(t, c, "session:"+foreign).Do(t, "HSET", "session:"+foreign, "field", "value")
	n := 0
	if err := s.Iterate(ctx, func(string, []byte) error { n++; return nil }); err != nil || n != len(tags) {
		t.Errorf("Iterate with a hash under the prefix = %v after %d records, want nil after %d", err, n, len(tags))
	}
	_, _, err := s.Load(ctx, foreign, time.Minute)
	var nr interface{ NotRecord() bool }
	if !errors.Is(err, redisstore.ErrRefused) || !errors.As(err, &nr) || !nr.NotRecord() {
		t.Errorf("Load of the hash = %v, want ErrRefused with NotRecord", err)
	}
}

// TestClusterIterateFreshStores runs Iterate on new Stores right after
// concurrent first calls, which make the Store open its per-node pools at
// once: Iterate must find every master's pool usable.
func TestClusterIterateFreshStores(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterOptions{ReplicasPerMaster: -1})
	ctx := context.Background()
	tags := recordOnEachMaster(t, c, openCluster(t, c, redisstore.Config{}))
	for round := range 60 {
		s := openCluster(t, c, redisstore.Config{})
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range 48 {
			wg.Go(func() { <-start; s.Load(ctx, tagged(tags[i%len(tags)][0], "x"), 0) })
			wg.Go(func() { <-start; s.Ping(ctx) })
		}
		close(start)
		wg.Wait()
		n := 0
		if err := s.Iterate(ctx, func(string, []byte) error { n++; return nil }); err != nil || n != len(tags) {
			// Does the Store get over it?
			var again []error
			for range 3 {
				time.Sleep(100 * time.Millisecond)
				again = append(again, s.Iterate(ctx, func(string, []byte) error { return nil }))
			}
			t.Fatalf("round %d: Iterate on a Store whose pools opened concurrently: %v after %d records, want %d; three more Iterate calls: %v", round, err, n, len(tags), again)
		}
		s.Close()
	}
}

// clientCalls returns the commands s ran since its statistics were reset
// ([redistest.Server.Calls]), without the REPLCONF ACKs its replica sends
// every second.
func clientCalls(t *testing.T, s *redistest.Server) map[string]int64 {
	t.Helper()
	calls := s.Calls(t)
	delete(calls, "replconf")
	return calls
}

// TestClusterRefusalDoesNotStick has one node of a Cluster refuse the
// password once, then fixes it: a burst of calls with busy pools on the
// Store that met the refusal is served like one on a fresh Store, never
// failed as ErrRefused without a retry (see clusterSource.dialCause).
func TestClusterRefusalDoesNotStick(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterOptions{ReplicasPerMaster: -1})
	masters := c.Masters(t)
	// the node serving session:x's slot
	x := c.MasterOf(t, redisc.Slot("session:x"))
	for _, m := range masters {
		if m != x {
			m.Do(t, "CONFIG", "SET", "requirepass", "pw")
		}
	}
	burst := func(s *redisstore.Store) (refused, unavailable, ok int) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		for i := range 200 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _, err := s.Load(context.Background(), fmt.Sprint("k", i), 0)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					ok++
				case errors.Is(err, redisstore.ErrRefused):
					refused++
					if refused == 1 {
						t.Logf("first refused error: %v", err)
					}
				default:
					unavailable++
				}
			}()
		}
		wg.Wait()
		return
	}
	cfg := redisstore.Config{ClusterNodes: c.Addrs(), Password: "pw", MaxActive: 1, Timeout: 2 * time.Second}
	stale, err := redisstore.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer stale.Close()
	_, _, err = stale.Load(context.Background(), "x", 0)
	t.Logf("Load while node x refuses: %v", err)
	x.Do(t, "CONFIG", "SET", "requirepass", "pw") // fixed
	if _, _, err := stale.Load(context.Background(), "x", 0); err != nil {
		t.Fatalf("Load after the fix: %v", err)
	}
	fresh, err := redisstore.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if _, _, err := fresh.Load(context.Background(), "x", 0); err != nil {
		t.Fatalf("fresh Load: %v", err)
	}
	r1, u1, o1 := burst(fresh)
	r2, u2, o2 := burst(stale)
	t.Logf("fresh store burst: refused %d unavailable %d ok %d", r1, u1, o1)
	t.Logf("store that once met a refusal, burst: refused %d unavailable %d ok %d", r2, u2, o2)
	if r2 > 0 {
		t.Errorf("healthy cluster, pools merely busy: %d calls failed as ErrRefused (\"fix the configuration\") without retry", r2)
	}
}

// TestClusterOutOfMemory checks that on a Cluster whose node is out of
// memory, which refuses every command queued in a transaction, a user's
// sessions can still be listed (one of them ended by its idle timeout, so
// that the listing reads the index again), one ended, and the rest ended
// by log out everywhere: each as a plain pipeline of commands that add no
// memory, as on one server, instead of a transaction.
func TestClusterOutOfMemory(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterOptions{ReplicasPerMaster: -1})
	s := openCluster(t, c, redisstore.Config{})
	ctx := context.Background()
	d := deadlines(4)
	tagged := func(id string, i int) redisstore.UserSession {
		u := alice("{t}"+id, d[i])
		u.UserID = "{t}" // the index and the records in one slot, as a TagKey makes them
		return u
	}
	addAll(t, s, tagged("a", 0), tagged("b", 1), tagged("c", 2), tagged("d", 3))
	master := c.MasterOf(t, redisc.Slot("{t}"))
	master.Do(t, "DEL", "session:{t}d") // what its idle timeout does
	master.Do(t, "SET", "session:{t}anon", "cart")
	fillUp(t, master)

	if _, err := s.AddUserSession(ctx, tagged("e", 3)); !errors.Is(err, redisstore.ErrUnavailable) {
		t.Fatalf("a login on a node out of memory = %v, want ErrUnavailable", err)
	}
	ids, _, err := s.UserSessions(ctx, "{t}")
	if err != nil || !slices.Equal(ids, []string{"{t}a", "{t}b", "{t}c"}) {
		t.Fatalf("UserSessions out of memory = %v, %v; want [{t}a {t}b {t}c]", ids, err)
	}
	if removed, err := s.RemoveUserSession(ctx, "{t}", "{t}a"); err != nil || !removed {
		t.Fatalf("RemoveUserSession out of memory = %v, %v; want true, nil", removed, err)
	}
	// An anonymous session's logout, whose mark the node refuses.
	if removed, err := s.RemoveUserSession(ctx, "", "{t}anon"); err != nil || !removed {
		t.Fatalf("RemoveUserSession of an anonymous session out of memory = %v, %v; want true, nil", removed, err)
	}
	removed, err := s.RemoveUserSessions(ctx, "{t}", "")
	slices.Sort(removed)
	if err != nil || !slices.Equal(removed, []string{"{t}b", "{t}c"}) {
		t.Fatalf("RemoveUserSessions out of memory = %v, %v; want [{t}b {t}c]", removed, err)
	}
	if n, _ := redis.Int(master.Do(t, "EXISTS", "session:{t}b", "session:{t}c", "user:{t}:sessions"), nil); n != 0 {
		t.Errorf("%d of the records and the index left after log out everywhere, want 0", n)
	}
}

// TestPingClusterNodeAsOneServer names each master of a running Cluster
// as one server: Ping must fail on every one, with ErrRefused and the
// advice to configure the Cluster, whatever slots the node owns, rather
// than report ready while every login of a user in another master's slots
// fails with MOVED.
func TestPingClusterNodeAsOneServer(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterOptions{ReplicasPerMaster: -1})
	ctx := context.Background()
	for _, node := range c.Masters(t) {
		for _, prefix := range []string{"", "app1:"} {
			cfg := redisstore.Config{KeyPrefix: prefix}
			s := open(t, node, cfg)
			err := s.Ping(ctx)
			if !errors.Is(err, redisstore.ErrRefused) {
				t.Errorf("Ping of the Cluster master %s (prefix %q) as one server = %v, want ErrRefused", node.Addr(), prefix, err)
				continue
			}
			cfg.Addr = node.Addr()
			if d := redisstore.Describe(err, cfg); !strings.Contains(d, "REDIS_CLUSTER_NODES") {
				t.Errorf("Describe(Ping's error) = %q, want the advice to configure the Cluster", d)
			}
		}
	}
}

// TestClusterPoolStats checks that PoolStats reports an exhausted pool on
// a Cluster by node: the only connection to one master in use is
// exhaustion, though the other masters' pools are free; one of two
// connections in use on every master is none, though the counts added
// up have as many in use as one node's MaxActive and none idle.
func TestClusterPoolStats(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterOptions{ReplicasPerMaster: -1})
	ctx := context.Background()
	tags := tagsOnMasters(t, c, 1)
	// hold has a merge on each of keys hold its connection while during
	// runs.
	hold := func(s *redisstore.Store, keys []string, during func()) {
		t.Helper()
		var inMerge sync.WaitGroup
		release := make(chan struct{})
		done := make(chan error, len(keys))
		for _, k := range keys {
			_, err := s.Insert(ctx, k, []byte("v"), time.Minute)
			clusterCheck(t, "Insert", err)
			inMerge.Add(1)
			go func() {
				_, err := s.Merge(ctx, k, time.Minute, func(cur []byte) ([]byte, error) {
					inMerge.Done()
					<-release
					return cur, nil
				})
				done <- err
			}()
		}
		inMerge.Wait()
		during()
		close(release)
		for range keys {
			clusterCheck(t, "Merge", <-done)
		}
	}

	one := openCluster(t, c, redisstore.Config{MaxActive: 1})
	for _, tt := range tags { // a pool for every master
		_, err := one.Insert(ctx, tagged(tt[0], "other"), []byte("v"), time.Minute)
		clusterCheck(t, "Insert", err)
	}
	hold(one, []string{tagged(tags[0][0], "held")}, func() {
		if ps := one.PoolStats(); !ps.Exhausted() || ps.ExhaustedNodes != 1 || ps.Nodes != 3 {
			t.Errorf("MaxActive 1, the connection to one master in use: %+v, want Exhausted, 1 of 3 nodes", ps)
		}
	})
	if ps := one.PoolStats(); ps.Exhausted() || ps.ExhaustedNodes != 0 {
		t.Errorf("MaxActive 1, nothing in use: %+v, want not Exhausted", ps)
	}

	two := openCluster(t, c, redisstore.Config{MaxActive: 2})
	var keys []string
	for _, tt := range tags {
		keys = append(keys, tagged(tt[0], "held"))
	}
	hold(two, keys, func() {
		ps := two.PoolStats()
		t.Logf("MaxActive 2, one connection in use on each master: %+v", ps)
		if ps.Exhausted() || ps.ExhaustedNodes != 0 || ps.Nodes != 3 {
			t.Errorf("MaxActive 2, one connection in use on each master: %+v, want not Exhausted, 3 nodes", ps)
		}
	})
}

// TestClusterUnansweredNodes has every node announce an address at which
// connections get no answer (a wrong cluster-announce-port, as behind NAT
// or in containers; a host down or firewalled): each call must still end
// within its Timeout, and Describe must say what to check. redisc gives
// each dial a wait of its own and, when the slot's node fails, tries every
// other node in turn, which could make a call take several times its
// Timeout.
func TestClusterUnansweredNodes(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterOptions{ReplicasPerMaster: -1})
	announced := map[string]bool{}
	for _, n := range c.Nodes() {
		addr := redistest.Unanswered(t)
		_, port, _ := net.SplitHostPort(addr)
		n.Do(t, "CONFIG", "SET", "cluster-announce-port", port)
		announced[addr] = true
	}
	// Wait until the seed's slot map names the unanswered addresses alone.
	seed := c.Nodes()[0]
	for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		masters, err := redis.Values(seed.Do(t, "CLUSTER", "SLOTS"), nil)
		if err != nil {
			t.Fatal(err)
		}
		all := len(masters) > 0
		for _, r := range masters {
			fields, _ := redis.Values(r, nil)
			node, _ := redis.Values(fields[2], nil)
			port, _ := redis.Int(node[1], nil)
			all = all && announced[net.JoinHostPort("127.0.0.1", strconv.Itoa(port))]
		}
		if all {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatal("the nodes' announced ports did not reach the seed's slot map")
		}
	}
	const timeout = 500 * time.Millisecond
	cfg := redisstore.Config{Timeout: timeout}
	s := openCluster(t, c, cfg)
	cfg.ClusterNodes = c.Addrs()[:1]
	ctx := context.Background()
	calls := []struct {
		name string
		f    func() error
	}{
		{"Load", func() error { _, _, err := s.Load(ctx, "x", 0); return err }},
		{"Insert", func() error { _, err := s.Insert(ctx, "x", []byte("v"), time.Minute); return err }},
		{"AddUserSession", func() error {
			_, err := s.AddUserSession(ctx, userSessionOf("{t}u", "{t}s", time.Now().Add(time.Hour)))
			return err
		}},
	}
	for round := range 2 { // the first round dials afresh, the second through pools
		for _, call := range calls {
			start := time.Now()
			err := call.f()
			took := time.Since(start)
			if !errors.Is(err, redisstore.ErrUnavailable) {
				t.Fatalf("round %d: %s with every node unanswered = %v, want ErrUnavailable", round, call.name, err)
			}
			if took > timeout+300*time.Millisecond {
				t.Errorf("round %d: %s with every node unanswered took %v, want it within its Timeout of %v: %v", round, call.name, took.Round(time.Millisecond), timeout, err)
			}
			if d := redisstore.Describe(err, cfg); !strings.Contains(d, "cluster-announce-ip") {
				t.Errorf("round %d: Describe(%v) = %q, want it to name cluster-announce-ip", round, err, d)
			}
		}
	}
}

// TestClusterMaxClients fills every node of a Cluster to its maxclients:
// a Store's calls fail with ErrUnavailable, an overload that passes (the
// example waits for it at start-up), not ErrRefused, and Describe names
// the setting. A Cluster node's refusal reads "ERR max number of clients
// + cluster connections reached", which differs from one server's and
// must be classified all the same.
func TestClusterMaxClients(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterOptions{ReplicasPerMaster: -1})
	for _, n := range c.Masters(t) {
		// The test's connection and the node's cluster bus links take
		// all it allows; the test's gives it back at the end.
		conn, err := redis.Dial("tcp", n.Addr())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Do("CONFIG", "SET", "maxclients", "1"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			conn.Do("CONFIG", "SET", "maxclients", "10000") //nolint:errcheck // best effort, for the servers' shutdown
			conn.Close()
		})
	}
	s, err := redisstore.Open(redisstore.Config{ClusterNodes: c.Addrs()[:1], Timeout: clusterTimeout})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, _, err = s.Load(context.Background(), tagged("x", "id"), 0)
	if !errors.Is(err, redisstore.ErrUnavailable) || errors.Is(err, redisstore.ErrRefused) {
		t.Fatalf("Load from a Cluster at maxclients = %v, want ErrUnavailable", err)
	}
	if d := redisstore.Describe(err, redisstore.Config{ClusterNodes: c.Addrs()[:1]}); !strings.Contains(d, "maxclients") {
		t.Errorf("Describe(%v) = %q, want it to name maxclients", err, d)
	}
}

// TestClusterBurst sends bursts of parallel calls, several times a node's
// MaxActive, on the keys of one master through Stores whose pools are new:
// every call must be answered, as on one server, where a call waits for a
// pooled connection within its time. A call that finds its node's pool
// full must not be sent to another node, which would answer MOVED and
// fail calls of a burst on a healthy cluster; with another master stalled
// (SIGSTOP), which holds none of the keys, calls bounced there would wait
// on it until their time ran out.
func TestClusterBurst(t *testing.T) {
	// The stalled master is never flagged as failing, which would take
	// the cluster down (CLUSTERDOWN), however long the test takes.
	c := redistest.StartCluster(t, redistest.ClusterOptions{ReplicasPerMaster: -1, NodeTimeout: time.Minute})
	ctx := context.Background()
	tags := tagsOnMasters(t, c, 20)
	seed := openCluster(t, c, redisstore.Config{})
	var ids []string
	for _, tag := range tags[0] {
		id := tagged(tag, "burst")
		_, err := seed.Insert(ctx, id, []byte("v"), time.Minute)
		clusterCheck(t, "Insert", err)
		ids = append(ids, id)
	}
	const calls, rounds = 300, 3
	burst := func(t *testing.T) {
		for round := range rounds {
			s := openCluster(t, c, redisstore.Config{MaxActive: 4})
			// The first call learns the slot map; the burst finds the
			// pools new.
			_, _, err := s.Load(ctx, ids[0], 0)
			clusterCheck(t, "Load", err)
			var wg sync.WaitGroup
			var failed atomic.Int64
			var first atomic.Pointer[error]
			for i := range calls {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, _, err := s.Load(ctx, ids[i%len(ids)], 0); err != nil {
						failed.Add(1)
						first.CompareAndSwap(nil, &err)
					}
				}()
			}
			wg.Wait()
			if n := failed.Load(); n > 0 {
				t.Errorf("round %d: %d of %d parallel Loads on one master failed, the first: %v", round, n, calls, *first.Load())
			}
			s.Close()
		}
	}
	t.Run("healthy", burst)
	t.Run("another master stalled", func(t *testing.T) {
		stalled := c.Masters(t)[2]
		stalled.Pause(t)
		t.Cleanup(func() { stalled.Resume(t) })
		burst(t)
	})
	// The calls on a stalled master's keys fail, each within its time, as
	// on one server: none is sent to another node and answered MOVED,
	// which an operator would take for a resharding. The refreshes of the
	// slot map that their timeouts start each hold one of the stalled
	// node's pooled connections, which must not make the calls of later
	// rounds fail so.
	//
	// Beside them, calls on a healthy master's keys all succeed, while
	// eight readiness probes Ping in parallel: each Ping holds a random
	// node's connection while it asks each master, and refreshes of the
	// slot map that overlap each hold one on the stalled node; neither
	// may take the connections of the calls that have their turn and
	// bounce them.
	t.Run("own master stalled", func(t *testing.T) {
		s := openCluster(t, c, redisstore.Config{MaxActive: 4, Timeout: 500 * time.Millisecond})
		healthy := tagged(tags[1][0], "healthy")
		_, err := s.Insert(ctx, healthy, []byte("v"), time.Minute) // and learns the slot map
		clusterCheck(t, "Insert", err)
		stalled := c.Masters(t)[0]
		stalled.Pause(t)
		t.Cleanup(func() { stalled.Resume(t) })
		stop := make(chan struct{})
		var probes sync.WaitGroup
		for range 8 {
			probes.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					ctx, cancel := context.WithTimeout(ctx, time.Second)
					s.Ping(ctx)
					cancel()
				}
			})
		}
		defer func() { close(stop); probes.Wait() }()
		for round := range 4 {
			var wg sync.WaitGroup
			var moved, failed atomic.Int64
			var firstMoved, firstFailed atomic.Pointer[error]
			for i := range 100 {
				wg.Add(2)
				go func() {
					defer wg.Done()
					if _, _, err := s.Load(ctx, ids[i%len(ids)], 0); err != nil && strings.Contains(err.Error(), "MOVED") {
						moved.Add(1)
						firstMoved.CompareAndSwap(nil, &err)
					}
				}()
				go func() {
					defer wg.Done()
					if _, _, err := s.Load(ctx, healthy, 0); err != nil {
						failed.Add(1)
						firstFailed.CompareAndSwap(nil, &err)
					}
				}()
			}
			wg.Wait()
			if n := moved.Load(); n > 0 {
				t.Errorf("round %d: %d of 100 Loads on a stalled master's keys failed with MOVED, the first: %v", round, n, *firstMoved.Load())
			}
			if n := failed.Load(); n > 0 {
				t.Errorf("round %d: %d of 100 Loads on a healthy master's key failed, the first: %v", round, n, *firstFailed.Load())
			}
		}
	})
	// Calls that time out often on a stalled master start a refresh of
	// the slot map every refreshInterval, and a refresh that asks the
	// stalled node first waits ReadTimeout for its answer: refreshes that
	// overlap must not take the connections of the calls that have their
	// turn, which would be bounced and answered MOVED.
	t.Run("own master stalled, slot map refreshed", func(t *testing.T) {
		s := openCluster(t, c, redisstore.Config{MaxActive: 4, Timeout: 100 * time.Millisecond, ReadTimeout: 3 * time.Second})
		_, _, err := s.Load(ctx, tagged(tags[1][0], "learn"), 0) // learns the slot map
		clusterCheck(t, "Load", err)
		stalled := c.Masters(t)[0]
		stalled.Pause(t)
		t.Cleanup(func() { stalled.Resume(t) })
		var moved atomic.Int64
		var first atomic.Pointer[error]
		for range 15 {
			var wg sync.WaitGroup
			for i := range 20 {
				wg.Go(func() {
					if _, _, err := s.Load(ctx, ids[i%len(ids)], 0); err != nil && strings.Contains(err.Error(), "MOVED") {
						moved.Add(1)
						first.CompareAndSwap(nil, &err)
					}
				})
			}
			wg.Wait()
		}
		if n := moved.Load(); n > 0 {
			t.Errorf("%d of 300 Loads on a stalled master's keys failed with MOVED, the first: %v", n, *first.Load())
		}
	})
}

// TestClusterMasterDown stops a master that has no replica: calls on its
// slots fail with the refused dial, as on one server, and start a refresh
// of the slot map; they are not sent to a random node to report its MOVED
// to the dead master, as if a slot were moving.
func TestClusterMasterDown(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterOptions{ReplicasPerMaster: -1, NodeTimeout: 2 * time.Minute})
	ctx := context.Background()
	tags := tagsOnMasters(t, c, 1)
	key := tagged(tags[1][0], "down")
	s := openCluster(t, c, redisstore.Config{Timeout: 200 * time.Millisecond})
	_, err := s.Insert(ctx, key, []byte("v"), time.Hour)
	clusterCheck(t, "Insert", err)
	down := c.Masters(t)[1]
	down.Stop(t)
	for range 5 {
		// The refused dial, or, when the call's time ran out during its
		// last try, that dial's timeout.
		_, _, err := s.Load(ctx, key, 0)
		if !errors.Is(err, redisstore.ErrUnavailable) || !strings.Contains(fmt.Sprint(err), "dial tcp "+down.Addr()) || strings.Contains(fmt.Sprint(err), "MOVED") {
			t.Fatalf("Load on a stopped master's key = %v, want ErrUnavailable with the failed dial of %s, no MOVED", err, down.Addr())
		}
	}
}

// TestClusterWrongPasswordOneNode changes the Store's password on one
// master: calls on its keys fail at once with the node's refusal, as on one
// server, and dial it once each, rather than being bound by redisc to a
// random node whose MOVED they would report after their whole Timeout,
// dialling the master at every try.
func TestClusterWrongPasswordOneNode(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterOptions{ReplicasPerMaster: -1})
	const password = "acl-password"
	for _, n := range c.Nodes() {
		n.Do(t, "ACL", append([]any{"SETUSER", "sessionkit", "on", ">" + password}, anys(append(aclCommands(t), "+cluster|slots"))...)...)
	}
	ctx := context.Background()
	tags := tagsOnMasters(t, c, 1)
	key := tagged(tags[1][0], "k")
	s := openCluster(t, c, redisstore.Config{Username: "sessionkit", Password: password, Timeout: time.Second})
	_, err := s.Insert(ctx, key, []byte("v"), time.Hour)
	clusterCheck(t, "Insert", err)
	changed := c.Masters(t)[1]
	changed.Do(t, "ACL", "SETUSER", "sessionkit", "resetpass", ">another-password")
	changed.Do(t, "CLIENT", "KILL", "USER", "sessionkit")
	before := infoInt(t, changed, "stats", "total_connections_received")
	const calls = 5
	start := time.Now()
	for range calls {
		_, _, err := s.Load(ctx, key, 0)
		if !errors.Is(err, redisstore.ErrRefused) || !strings.Contains(fmt.Sprint(err), "WRONGPASS") || strings.Contains(fmt.Sprint(err), "MOVED") {
			t.Fatalf("Load of a key on the master whose password changed = %v, want ErrRefused with WRONGPASS, no MOVED", err)
		}
	}
	took := time.Since(start)
	dials := infoInt(t, changed, "stats", "total_connections_received") - before
	t.Logf("%d Loads in %v dialled the master %d times", calls, took.Round(time.Millisecond), dials)
	if dials > 2*calls {
		t.Errorf("%d Loads dialled the master %d times, want one each (a retry at most)", calls, dials)
	}
	for _, p := range []string{password, "another-password"} {
		if strings.Contains(fmt.Sprint(err), p) {
			t.Errorf("the error holds a password")
		}
	}
}

// callsUntilStopped runs call(w, i) in a loop in each of workers
// goroutines, w the worker and i its round, until call returns false or the
// returned stop is called; stop returns once every worker has ended.
func callsUntilStopped(workers int, call func(w, i int) bool) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				if !call(w, i) {
					return
				}
			}
		})
	}
	return func() { close(done); wg.Wait() }
}

// TestClusterFailoverPools fails each master over in turn (CLUSTER
// FAILOVER, which loses nothing) while workers read and write keys on
// every master: no call fails. redisc closes the pool of a node that
// changes role at a refresh, the promoted replica's too, and the Store's
// check of the slot's master before each call, when it finds that closed
// pool, must not fail the calls on its slots ("get on closed pool") until
// redisc dials there again.
func TestClusterFailoverPools(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterOptions{})
	ctx := context.Background()
	s := openCluster(t, c, redisstore.Config{})
	tags := tagsOnMasters(t, c, 1)
	var keys []string
	for i, ts := range tags {
		keys = append(keys, tagged(ts[0], fmt.Sprint("pool", i)))
	}
	for _, k := range keys {
		_, err := s.Insert(ctx, k, []byte("v"), time.Hour)
		clusterCheck(t, "Insert", err)
	}
	var calls, closed atomic.Int64
	var firstErr atomic.Value
	stop := callsUntilStopped(6, func(w, i int) bool {
		k := keys[(w+i)%len(keys)]
		var err error
		if i%2 == 0 {
			_, _, err = s.Load(ctx, k, time.Hour)
		} else {
			_, err = s.Merge(ctx, k, time.Hour, func(cur []byte) ([]byte, error) { return cur, nil })
		}
		calls.Add(1)
		if err != nil {
			firstErr.CompareAndSwap(nil, err)
			if strings.Contains(err.Error(), "closed pool") {
				closed.Add(1)
			}
		}
		return true
	})
	for _, m := range c.Masters(t) {
		time.Sleep(50 * time.Millisecond)
		c.Failover(t, m)
	}
	time.Sleep(200 * time.Millisecond)
	stop()
	t.Logf("%d calls during 3 failovers", calls.Load())
	if err, _ := firstErr.Load().(error); err != nil {
		t.Errorf("a call during CLUSTER FAILOVER failed (%d with a closed pool): %v", closed.Load(), err)
	}
}

// TestClusterUnservedSlotTurns sends a burst of calls on a slot that no
// master serves (cluster-require-full-coverage no, the slot taken from
// every node's map): redisc binds them to nodes of its choosing, and they
// take their turns among the calls without a key, MaxActive at once, so
// that the node pools, which have no cap of their own, open no more than
// those.
func TestClusterUnservedSlotTurns(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterOptions{ReplicasPerMaster: -1, Args: []string{"--cluster-require-full-coverage", "no"}})
	ctx := context.Background()
	key := tagged("unserved", "k")
	for _, n := range c.Nodes() {
		n.Do(t, "CLUSTER", "DELSLOTS", redistest.Slot(key))
	}
	const maxActive = 4
	s := openCluster(t, c, redisstore.Config{MaxActive: maxActive, Timeout: 300 * time.Millisecond})
	_, _, err := s.Load(ctx, tagged("served", "k"), 0) // learns the slot map
	clusterCheck(t, "Load", err)
	stop := make(chan struct{})
	peak := make(chan int)
	go func() {
		most := 0
		for {
			select {
			case <-stop:
				peak <- most
				return
			case <-time.After(time.Millisecond):
				ps := s.PoolStats()
				most = max(most, ps.Active-ps.Idle)
			}
		}
	}()
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() {
			if _, _, err := s.Load(ctx, key, 0); !errors.Is(err, redisstore.ErrUnavailable) {
				t.Errorf("Load on an unserved slot = %v, want ErrUnavailable", err)
			}
		})
	}
	wg.Wait()
	close(stop)
	// Besides, the refreshes of the slot map take theirs: redisc's, which
	// it starts on a slot it knows no node for, and the Store's, which a
	// call its deadline cut short during a read starts, one every 100 ms
	// (a few at once on a slow machine). Without the turns, nearly every
	// call would hold a connection of its own.
	const refreshes = 3
	if n := <-peak; n > maxActive+refreshes {
		t.Errorf("100 parallel calls on an unserved slot had %d connections in use at once, want %d at most (MaxActive, and refreshes)", n, maxActive+refreshes)
	}
}

// TestClusterCloseWakesWaiters closes a Store while calls wait for their
// turn at a node whose only connection a merge holds: they fail at once,
// as calls waiting for the pool of one server do, not when the turn comes
// free.
func TestClusterCloseWakesWaiters(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterOptions{ReplicasPerMaster: -1})
	s := openCluster(t, c, redisstore.Config{MaxActive: 1, Timeout: 3 * time.Second})
	ctx := context.Background()
	tags := tagsOnMasters(t, c, 2)
	held, other := tagged(tags[0][0], "held"), tagged(tags[0][1], "other")
	_, err := s.Insert(ctx, held, []byte("v"), time.Minute)
	clusterCheck(t, "Insert", err)
	inMerge, release := make(chan struct{}), make(chan struct{})
	go s.Merge(ctx, held, time.Minute, func(cur []byte) ([]byte, error) {
		close(inMerge)
		<-release
		return cur, nil
	})
	<-inMerge
	defer close(release)
	const waiters = 10
	done := make(chan time.Time, waiters)
	for range waiters {
		go func() {
			s.Load(ctx, other, 0)
			done <- time.Now()
		}()
	}
	time.Sleep(200 * time.Millisecond) // they wait for the turn
	closed := time.Now()
	s.Close()
	for range waiters {
		if late := (<-done).Sub(closed); late > 500*time.Millisecond {
			t.Fatalf("a call waiting for its turn returned %v after Close, want at once", late.Round(time.Millisecond))
		}
	}
}
