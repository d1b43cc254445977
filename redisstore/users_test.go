package redisstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/redisstore"
	"github.com/sessionkit/sessionkit/session"
)

// The Store implements the session package's contract, which also checks
// that redisstore.UserSession and redisstore.Move stay identical to
// session.NewSession and session.Move.
var _ session.Store = (*redisstore.Store)(nil)

// errAny stands, in a table, for "some error, whichever".
var errAny = errors.New("any error")

// checkErr reports whether err is what want asks for: nil, any error
// (errAny), or one matching want with errors.Is.
func checkErr(err, want error) bool {
	switch want {
	case nil:
		return err == nil
	case errAny:
		return err != nil
	}
	return errors.Is(err, want)
}

// deadlines returns n absolute deadlines an hour or more ahead, a minute
// apart, in whole milliseconds so that they equal their index scores.
func deadlines(n int) []time.Time {
	base := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	d := make([]time.Time, n)
	for i := range d {
		d[i] = base.Add(time.Duration(i) * time.Minute)
	}
	return d
}

// alice returns a session of the user "alice" with the record "rec-<id>"
// and a time to live of an hour.
func alice(id string, deadline time.Time) redisstore.UserSession {
	return redisstore.UserSession{UserID: "alice", ID: id, Record: []byte("rec-" + id), TTL: time.Hour, Deadline: deadline}
}

// addAll stores the sessions, failing the test on any error.
func addAll(t *testing.T, s *redisstore.Store, adds ...redisstore.UserSession) {
	t.Helper()
	for _, a := range adds {
		if _, err := s.AddUserSession(context.Background(), a); err != nil {
			t.Fatalf("AddUserSession(%s): %v", a.ID, err)
		}
	}
}

// setRecord writes a record straight into Redis, with a minute to live.
func setRecord(t *testing.T, srv *redistest.Server, id, record string) {
	t.Helper()
	srv.Do(t, "SET", "session:"+id, record, "PX", 60000)
}

// records returns every session record in Redis, by id: the keys under
// "session:" but the pointers of moved sessions (see pointers).
func records(t *testing.T, srv *redistest.Server) map[string]string {
	t.Helper()
	got := make(map[string]string)
	for cursor := 0; ; {
		reply, err := redis.Values(srv.Do(t, "SCAN", cursor, "MATCH", "session:*", "COUNT", 1000), nil)
		if err != nil {
			t.Fatal(err)
		}
		cursor, _ = redis.Int(reply[0], nil)
		keys, _ := redis.Strings(reply[1], nil)
		for _, k := range keys {
			if strings.HasSuffix(k, ":next") || strings.HasSuffix(k, ":ended") {
				continue // a pointer, or a logout's mark
			}
			v, err := redis.String(srv.Do(t, "GET", k), nil)
			if err == nil {
				got[strings.TrimPrefix(k, "session:")] = v
			}
		}
		if cursor == 0 {
			return got
		}
	}
}

// pointers returns the pointers that moves of anonymous sessions left
// behind, "session:<from>:next" holding the id moved to, by from.
func pointers(t *testing.T, srv *redistest.Server) map[string]string {
	t.Helper()
	keys, err := redis.Strings(srv.Do(t, "KEYS", "session:*:next"), nil) // a test's few keys
	if err != nil {
		t.Fatal(err)
	}
	got := make(map[string]string)
	for _, k := range keys {
		if v, err := redis.String(srv.Do(t, "GET", k), nil); err == nil {
			got[strings.TrimSuffix(strings.TrimPrefix(k, "session:"), ":next")] = v
		}
	}
	return got
}

func indexKey(userID string) string { return "user:" + userID + ":sessions" }

// index returns the members of the index of userID with their scores.
func index(t *testing.T, srv *redistest.Server, userID string) map[string]int64 {
	t.Helper()
	m, err := redis.StringMap(srv.Do(t, "ZRANGE", indexKey(userID), 0, -1, "WITHSCORES"), nil)
	if err != nil {
		t.Fatal(err)
	}
	got := make(map[string]int64, len(m))
	for id, score := range m {
		f, err := strconv.ParseFloat(score, 64)
		if err != nil {
			t.Fatal(err)
		}
		got[id] = int64(f)
	}
	return got
}

// expireTime returns the absolute expiry of key in unix milliseconds (-1
// for none, -2 for no key).
func expireTime(t *testing.T, srv *redistest.Server, key string) int64 {
	t.Helper()
	ms, err := redis.Int64(srv.Do(t, "PEXPIRETIME", key), nil)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

func dbSize(t *testing.T, srv *redistest.Server) int {
	t.Helper()
	n, err := redis.Int(srv.Do(t, "DBSIZE"), nil)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// checkTTL fails the test unless the record under id expires in (ttl-5s, ttl].
func checkTTL(t *testing.T, srv *redistest.Server, id string, ttl time.Duration) {
	t.Helper()
	if d := pttl(t, srv, "session:"+id); d <= ttl-5*time.Second || d > ttl {
		t.Errorf("PTTL session:%s = %v, want about %v", id, d, ttl)
	}
}

// together runs every f at once, each on its own goroutine, and returns
// when all have returned.
func together(fs ...func()) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, f := range fs {
		wg.Go(func() {
			<-start
			f()
		})
	}
	close(start)
	wg.Wait()
}

func TestAddUserSession(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv, redisstore.Config{})
	ctx := context.Background()
	d := deadlines(3)
	ms := func(i int) int64 { return d[i].UnixMilli() }

	tests := []struct {
		name        string
		before      []redisstore.UserSession
		setup       func(t *testing.T)
		add         redisstore.UserSession
		wantErr     bool
		wantEnded   []string // the replaced session, when its record existed
		wantRecords map[string]string
		wantIndex   map[string]int64
		// limitGone says that under a limit the call writes nothing and
		// fails with ErrReplacedGone: a renewal may have moved the
		// replaced session to an id that would count.
		limitGone bool
	}{
		{
			name:        "first session",
			add:         redisstore.UserSession{UserID: "alice", ID: "a", Record: []byte("new"), TTL: 90 * time.Second, Deadline: d[1]},
			wantRecords: map[string]string{"a": "new"},
			wantIndex:   map[string]int64{"a": ms(1)},
		},
		{
			name:        "beside others",
			before:      []redisstore.UserSession{alice("a", d[0]), {UserID: "bob", ID: "b", Record: []byte("rec-b"), TTL: time.Hour, Deadline: d[0]}},
			add:         alice("c", d[2]),
			wantRecords: map[string]string{"a": "rec-a", "b": "rec-b", "c": "rec-c"},
			wantIndex:   map[string]int64{"a": ms(0), "c": ms(2)},
		},
		{
			name:   "replaces",
			before: []redisstore.UserSession{alice("a", d[0]), alice("old", d[1])},
			add: redisstore.UserSession{
				UserID: "alice", ID: "new", Record: []byte("rec-new"), TTL: time.Hour, Deadline: d[2], Replaces: "old",
			},
			wantEnded:   []string{"old"},
			wantRecords: map[string]string{"a": "rec-a", "new": "rec-new"},
			wantIndex:   map[string]int64{"a": ms(0), "new": ms(2)},
		},
		{
			name: "replaces a missing session",
			add: redisstore.UserSession{
				UserID: "alice", ID: "new", Record: []byte("rec-new"), TTL: time.Hour, Deadline: d[2], Replaces: "gone",
			},
			wantRecords: map[string]string{"new": "rec-new"},
			wantIndex:   map[string]int64{"new": ms(2)},
			limitGone:   true,
		},
		{
			name: "prunes members past their deadline",
			setup: func(t *testing.T) {
				srv.Do(t, "ZADD", indexKey("alice"), time.Now().Add(-time.Minute).UnixMilli(), "past")
			},
			add:         alice("a", d[0]),
			wantRecords: map[string]string{"a": "rec-a"},
			wantIndex:   map[string]int64{"a": ms(0)},
		},
		{
			name:        "id taken",
			setup:       func(t *testing.T) { setRecord(t, srv, "a", "someone else's") },
			add:         alice("a", d[0]),
			wantErr:     true,
			wantRecords: map[string]string{"a": "someone else's"},
			wantIndex:   map[string]int64{},
		},
	}
	// Without a limit the writes are a pipeline, with one a transaction:
	// both must do the same.
	for _, limit := range []int{0, 10} {
		for _, tc := range tests {
			t.Run(fmt.Sprintf("limit=%d/%s", limit, tc.name), func(t *testing.T) {
				srv.Do(t, "FLUSHALL")
				addAll(t, s, tc.before...)
				if tc.setup != nil {
					tc.setup(t)
				}
				a := tc.add
				a.Limit = limit
				ended, err := s.AddUserSession(ctx, a)
				if limit > 0 && tc.limitGone {
					if !errors.Is(err, redisstore.ErrReplacedGone) || len(ended) != 0 {
						t.Errorf("AddUserSession(%s) = %q, %v; want nothing ended and ErrReplacedGone", a.ID, ended, err)
					}
					if n, _ := srv.Do(t, "DBSIZE").(int64); n != 0 {
						t.Errorf("AddUserSession(%s) that found the replaced session gone wrote %d keys, want none", a.ID, n)
					}
					return
				}
				if (err != nil) != tc.wantErr || !slices.Equal(ended, tc.wantEnded) {
					t.Fatalf("AddUserSession(%s) = %q, %v, want %q, error %v", a.ID, ended, err, tc.wantEnded, tc.wantErr)
				}
				if got := records(t, srv); !maps.Equal(got, tc.wantRecords) {
					t.Errorf("records after AddUserSession(%s) = %v, want %v", a.ID, got, tc.wantRecords)
				}
				if got := index(t, srv, "alice"); !maps.Equal(got, tc.wantIndex) {
					t.Errorf("index after AddUserSession(%s) = %v, want %v", a.ID, got, tc.wantIndex)
				}
				if !tc.wantErr {
					checkTTL(t, srv, a.ID, a.TTL)
				}
			})
		}
	}
}

// indexGrace is how long a user's index outlives its latest deadline, and
// a member its own (redisstore's indexGrace).
const indexGrace = time.Minute

// TestAddUserSessionIndexExpiry checks that the index expires with its
// latest deadline: a later deadline moves the expiry later, an earlier one
// leaves it.
func TestAddUserSessionIndexExpiry(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv, redisstore.Config{})
	d := deadlines(4)
	steps := []struct {
		id       string
		deadline time.Time
		want     time.Time
	}{
		{"a", d[1], d[1]},
		{"b", d[3], d[3]},
		{"c", d[0], d[3]},
		{"d", d[2], d[3]},
	}
	for _, limit := range []int{0, 10} {
		t.Run(fmt.Sprintf("limit=%d", limit), func(t *testing.T) {
			srv.Do(t, "FLUSHALL")
			for _, step := range steps {
				a := alice(step.id, step.deadline)
				a.Limit = limit
				addAll(t, s, a)
				if got, want := expireTime(t, srv, indexKey("alice")), step.want.Add(indexGrace).UnixMilli(); got != want {
					t.Errorf("PEXPIRETIME of the index after AddUserSession(%s, deadline %d) = %d, want %d",
						step.id, step.deadline.UnixMilli(), got, want)
				}
			}
		})
	}
}

// TestAddUserSessionAnonymousNoWait: a login that replaces an anonymous
// session (Merge: its record taken in a step of its own) does not wait
// for replicas, however many stale entries the index prune removes: with
// WaitReplicas 1 and no replica, it succeeds with 0, 1 or 2 of them. (The
// check for the replaced session's ZREM read the prune's count, which
// made the login with exactly one stale entry wait, fail, and lose the
// anonymous session's values.)
func TestAddUserSessionAnonymousNoWait(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv, redisstore.Config{WaitReplicas: 1, Timeout: 500 * time.Millisecond})
	ctx := context.Background()
	for stale := range 3 {
		srv.Do(t, "FLUSHALL")
		for i := range stale {
			srv.Do(t, "ZADD", indexKey("alice"), time.Now().Add(-2*time.Minute).UnixMilli(), fmt.Sprint("old", i))
		}
		if _, err := s.Insert(ctx, "anon", []byte("cart"), time.Hour); err != nil {
			t.Fatal(err)
		}
		a := alice("new", deadlines(1)[0])
		a.Replaces = "anon"
		a.Merge = func(replaced []byte) ([]byte, error) { return append([]byte("rec+"), replaced...), nil }
		if _, err := s.AddUserSession(ctx, a); err != nil {
			t.Errorf("login over an anonymous session with %d stale index entries = %v, want nil (no wait for replicas)", stale, err)
		}
	}
}

func TestAddUserSessionInvalid(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv, redisstore.Config{})
	deadline := time.Now().Add(time.Hour)
	tests := []struct {
		name string
		add  redisstore.UserSession
	}{
		{"zero ttl", redisstore.UserSession{UserID: "alice", ID: "a", Record: []byte("r"), Deadline: deadline, Replaces: "old"}},
		{"negative ttl", redisstore.UserSession{UserID: "alice", ID: "a", Record: []byte("r"), TTL: -time.Second, Deadline: deadline, Replaces: "old"}},
		{"no user", redisstore.UserSession{ID: "a", Record: []byte("r"), TTL: time.Hour, Deadline: deadline, Replaces: "old"}},
	}
	for _, limit := range []int{0, 3} {
		for _, tc := range tests {
			t.Run(fmt.Sprintf("limit=%d/%s", limit, tc.name), func(t *testing.T) {
				srv.Do(t, "FLUSHALL")
				setRecord(t, srv, "old", "rec-old")
				a := tc.add
				a.Limit = limit
				if _, err := s.AddUserSession(context.Background(), a); err == nil {
					t.Errorf("AddUserSession(%s) = nil error, want an error", tc.name)
				}
				want := map[string]string{"old": "rec-old"}
				if got := records(t, srv); !maps.Equal(got, want) || dbSize(t, srv) != 1 {
					t.Errorf("records after AddUserSession(%s) = %v and %d keys, want %v and nothing else",
						tc.name, got, dbSize(t, srv), want)
				}
			})
		}
	}
}

func TestAddUserSessionLimit(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv, redisstore.Config{})
	ctx := context.Background()
	d := deadlines(5)
	ms := func(i int) int64 { return d[i].UnixMilli() }
	with := func(a redisstore.UserSession, limit int, replaces string) redisstore.UserSession {
		a.Limit, a.Replaces = limit, replaces
		return a
	}

	tests := []struct {
		name        string
		before      []redisstore.UserSession // in this order; the index orders by deadline
		setup       func(t *testing.T)
		add         redisstore.UserSession
		wantEnded   []string // the replaced session, if its record existed, then those revoked, oldest first
		wantRecords map[string]string
		wantIndex   map[string]int64
	}{
		{
			name:        "under the limit",
			before:      []redisstore.UserSession{alice("a", d[0])},
			add:         with(alice("n", d[4]), 3, ""),
			wantRecords: map[string]string{"a": "rec-a", "n": "rec-n"},
			wantIndex:   map[string]int64{"a": ms(0), "n": ms(4)},
		},
		{
			name:        "oldest revoked first",
			before:      []redisstore.UserSession{alice("b", d[1]), alice("c", d[2]), alice("a", d[0])},
			add:         with(alice("n", d[4]), 2, ""),
			wantEnded:   []string{"a", "b"},
			wantRecords: map[string]string{"c": "rec-c", "n": "rec-n"},
			wantIndex:   map[string]int64{"c": ms(2), "n": ms(4)},
		},
		{
			name:        "limit 1",
			before:      []redisstore.UserSession{alice("a", d[0]), alice("b", d[1])},
			add:         with(alice("n", d[4]), 1, ""),
			wantEnded:   []string{"a", "b"},
			wantRecords: map[string]string{"n": "rec-n"},
			wantIndex:   map[string]int64{"n": ms(4)},
		},
		{
			name:        "members whose record is gone are pruned, not counted",
			before:      []redisstore.UserSession{alice("a", d[0]), alice("b", d[1])},
			setup:       func(t *testing.T) { srv.Do(t, "DEL", "session:a") },
			add:         with(alice("n", d[4]), 2, ""),
			wantRecords: map[string]string{"b": "rec-b", "n": "rec-n"},
			wantIndex:   map[string]int64{"b": ms(1), "n": ms(4)},
		},
		{
			name:        "the replaced session is not counted",
			before:      []redisstore.UserSession{alice("a", d[0]), alice("b", d[1])},
			add:         with(alice("c", d[4]), 2, "b"),
			wantEnded:   []string{"b"},
			wantRecords: map[string]string{"a": "rec-a", "c": "rec-c"},
			wantIndex:   map[string]int64{"a": ms(0), "c": ms(4)},
		},
		{
			name:        "replaced and revoked",
			before:      []redisstore.UserSession{alice("a", d[0]), alice("b", d[1]), alice("c", d[2])},
			add:         with(alice("n", d[4]), 2, "c"),
			wantEnded:   []string{"c", "a"},
			wantRecords: map[string]string{"b": "rec-b", "n": "rec-n"},
			wantIndex:   map[string]int64{"b": ms(1), "n": ms(4)},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv.Do(t, "FLUSHALL")
			addAll(t, s, tc.before...)
			if tc.setup != nil {
				tc.setup(t)
			}
			ended, err := s.AddUserSession(ctx, tc.add)
			if err != nil || !slices.Equal(ended, tc.wantEnded) {
				t.Fatalf("AddUserSession(%s, limit %d) = %q, %v, want %q, nil", tc.add.ID, tc.add.Limit, ended, err, tc.wantEnded)
			}
			if got := records(t, srv); !maps.Equal(got, tc.wantRecords) {
				t.Errorf("records after AddUserSession(%s) = %v, want %v", tc.add.ID, got, tc.wantRecords)
			}
			if got := index(t, srv, "alice"); !maps.Equal(got, tc.wantIndex) {
				t.Errorf("index after AddUserSession(%s) = %v, want %v", tc.add.ID, got, tc.wantIndex)
			}
		})
	}
}

// TestAddUserSessionLimitConcurrent logs one user in 40 times at once
// through two Stores, as two instances of an application would: each login
// chooses what to revoke and inserts as one step, so exactly 3 sessions
// remain, all indexed, and every other one was revoked by exactly one login.
func TestAddUserSessionLimitConcurrent(t *testing.T) {
	srv := redistest.Start(t)
	stores := []*redisstore.Store{open(t, srv, redisstore.Config{}), open(t, srv, redisstore.Config{})}
	ctx := context.Background()
	base := time.Now().Add(time.Hour).Truncate(time.Millisecond)

	const n, limit = 40, 3
	revoked := make([][]string, n)
	errs := make([]error, n)
	fs := make([]func(), n)
	for i := range n {
		fs[i] = func() {
			a := alice(fmt.Sprintf("s%02d", i), base.Add(time.Duration(i)*time.Millisecond))
			a.Limit = limit
			revoked[i], errs[i] = stores[i%2].AddUserSession(ctx, a)
		}
	}
	together(fs...)

	for i, err := range errs {
		if err != nil {
			t.Errorf("AddUserSession(s%02d, limit %d) = %v, want nil", i, limit, err)
		}
	}
	if t.Failed() {
		return
	}
	live := records(t, srv)
	idx := index(t, srv, "alice")
	if len(live) != limit {
		t.Errorf("%d live sessions after %d logins with limit %d, want %d", len(live), n, limit, limit)
	}
	for id := range live {
		if _, ok := idx[id]; !ok {
			t.Errorf("live session %s is not in the index %v", id, idx)
		}
	}
	if len(idx) != len(live) {
		t.Errorf("index = %v, want exactly the live sessions %v", idx, slices.Sorted(maps.Keys(live)))
	}
	seen := make(map[string]bool)
	for id := range live {
		seen[id] = true
	}
	for i, ids := range revoked {
		for _, id := range ids {
			if seen[id] {
				t.Errorf("AddUserSession(s%02d) revoked %s, which is live or was revoked by another login", i, id)
			}
			seen[id] = true
		}
	}
	if len(seen) != n {
		t.Errorf("live and revoked sessions = %d, want all %d", len(seen), n)
	}
}

// TestAddUserSessionMerge adds a session whose record a merge makes from
// the record of the session it replaces, with and without a limit: the
// merge gets that record as it is when the call takes it, a change saved
// into it before is in the new record, and a write into it after the call
// took it finds no session, so that no change is acknowledged and lost; a
// second login replacing the same session finds it gone and writes its
// Record, the values as its request loaded them; a replaced session that
// renewals moved is ended where it went, and the login writes its Record
// (the moved record's values are the new token's); a replaced session
// that a logout ended, which leaves its mark, gives the merge nil; a
// merge that fails writes no new session, and the replaced one stays
// ended.
func TestAddUserSessionMerge(t *testing.T) {
	srv := redistest.Start(t)
	s1, s2 := open(t, srv, redisstore.Config{}), open(t, srv, redisstore.Config{})
	ctx := context.Background()
	d := deadlines(1)
	for _, limit := range []int{0, 2} {
		t.Run(fmt.Sprintf("limit=%d", limit), func(t *testing.T) {
			srv.Do(t, "FLUSHALL")
			setRecord(t, srv, "anon", "cart")
			// Another request saves a value before the login takes the record.
			if written, err := s2.Merge(ctx, "anon", time.Minute, func(cur []byte) ([]byte, error) { return append(cur, "+pen"...), nil }); err != nil || !written {
				t.Fatalf("Merge before the login = %v, %v; want written", written, err)
			}
			var seen []string
			a := alice("a", d[0])
			a.Replaces, a.Limit = "anon", limit
			a.Merge = func(replaced []byte) ([]byte, error) {
				seen = append(seen, string(replaced))
				// Another request saves a value once the record is taken:
				// it finds no session, and says so.
				if written, err := s2.Merge(ctx, "anon", time.Minute, func(cur []byte) ([]byte, error) { return append(cur, "+late"...), nil }); err != nil || written {
					t.Errorf("Merge after the login took the record = %v, %v; want not written", written, err)
				}
				return append([]byte("alice:"), replaced...), nil
			}
			ended, err := s1.AddUserSession(ctx, a)
			if err != nil || !slices.Equal(ended, []string{"anon"}) {
				t.Fatalf("AddUserSession with a merge = %q, %v; want [anon], nil", ended, err)
			}
			if want := []string{"cart+pen"}; !slices.Equal(seen, want) {
				t.Errorf("the merge saw %q, want %q", seen, want)
			}
			if got, want := records(t, srv), map[string]string{"a": "alice:cart+pen"}; !maps.Equal(got, want) {
				t.Errorf("records = %v, want %v", got, want)
			}
			if got, want := index(t, srv, "alice"), map[string]int64{"a": d[0].UnixMilli()}; !maps.Equal(got, want) {
				t.Errorf("index = %v, want %v", got, want)
			}

			// A second login replacing the same session (a form sent
			// twice) finds the record gone, and no logout's mark: it
			// writes its Record, the values as its request loaded them.
			seen = nil
			a2 := alice("a2", d[0])
			a2.Replaces, a2.Limit, a2.Merge = "anon", limit, a.Merge
			if ended, err := s1.AddUserSession(ctx, a2); err != nil || len(ended) != 0 {
				t.Fatalf("second AddUserSession replacing a taken record = %q, %v; want none, nil", ended, err)
			}
			if len(seen) != 0 {
				t.Errorf("the second login's merge saw %q, want no call", seen)
			}
			if got := records(t, srv); got["a2"] != "rec-a2" {
				t.Errorf("record of the second login = %q, want its Record", got["a2"])
			}

			// Renewals moved the replaced session: the login ends it
			// where it went, and writes its own Record.
			setRecord(t, srv, "moved3", "cart3")
			srv.Do(t, "SET", "session:moved1:next", "moved2")
			srv.Do(t, "SET", "session:moved2:next", "moved3")
			seen = nil
			a3 := alice("a3", d[0])
			a3.Replaces, a3.Limit, a3.Merge = "moved1", limit, a.Merge
			if ended, err := s1.AddUserSession(ctx, a3); err != nil || slices.Contains(ended, "moved1") {
				t.Fatalf("AddUserSession replacing a moved session = %q, %v; want nil, and moved1 not among those ended (its record was gone)", ended, err)
			}
			if len(seen) != 0 {
				t.Errorf("the merge of a moved session saw %q, want no call", seen)
			}
			if got := records(t, srv); got["moved3"] != "" || got["a3"] != "rec-a3" {
				t.Errorf("records after a login replacing a moved session = %v, want moved3 gone and a3 its Record", got)
			}
			srv.Do(t, "DEL", "session:a2", "session:a3")

			// A logout ended the replaced session, here after a renewal
			// moved it: the merge gets nil, and carries nothing over.
			setRecord(t, srv, "ended2", "cart")
			srv.Do(t, "SET", "session:ended1:next", "ended2")
			if removed, err := s2.RemoveUserSession(ctx, "", "ended2"); err != nil || !removed {
				t.Fatalf("RemoveUserSession(ended2) = %v, %v; want removed", removed, err)
			}
			if ttl, _ := redis.Int64(srv.Do(t, "PTTL", "session:ended2:ended"), nil); ttl <= 0 || ttl > (10*time.Minute).Milliseconds() {
				t.Errorf("PTTL of the logout's mark = %d ms, want up to 10 minutes", ttl)
			}
			b := alice("b", d[0])
			b.Replaces, b.Limit = "ended1", limit
			b.Merge = func(replaced []byte) ([]byte, error) {
				if replaced != nil {
					t.Errorf("merge of a logged-out session got %q, want nil", replaced)
				}
				return []byte("alice:new"), nil
			}
			if ended, err := s1.AddUserSession(ctx, b); err != nil || len(ended) != 0 {
				t.Fatalf("AddUserSession replacing a logged-out session = %q, %v; want none, nil", ended, err)
			}
			if got, _ := redis.String(srv.Do(t, "GET", "session:b"), nil); got != "alice:new" {
				t.Errorf("record replacing a logged-out one = %q, want alice:new", got)
			}

			// A merge that fails writes no new session; the replaced one
			// was taken, and stays ended.
			setRecord(t, srv, "anon2", "cart")
			c := alice("c", d[0])
			c.Replaces, c.Limit = "anon2", limit
			c.Merge = func([]byte) ([]byte, error) { return nil, errors.New("merge failed") }
			ended, err = s1.AddUserSession(ctx, c)
			if err == nil || !strings.Contains(err.Error(), "merge failed") || !slices.Equal(ended, []string{"anon2"}) {
				t.Errorf("AddUserSession with a failing merge = %q, %v; want [anon2] and its error", ended, err)
			}
			if got := records(t, srv); got["anon2"] != "" || got["c"] != "" {
				t.Errorf("records after a failing merge = %v, want neither anon2 nor c", got)
			}
			if _, ok := index(t, srv, "alice")["c"]; ok {
				t.Error("a failing merge put its session in the index")
			}
		})
	}
}

// TestSetMovedTo checks the pointer a login leaves from a session it
// ended where a renewal had moved the one it replaced: MovedTo reads it,
// it replaces the one there was, and it lives no longer than 10 minutes.
func TestSetMovedTo(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv, redisstore.Config{})
	ctx := context.Background()
	if err := s.SetMovedTo(ctx, "r", "l1", time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := s.SetMovedTo(ctx, "r", "l2", time.Hour); err != nil {
		t.Fatal(err)
	}
	if to, err := s.MovedTo(ctx, "r"); err != nil || to != "l2" {
		t.Errorf("MovedTo(r) = %q, %v; want l2, the last pointer", to, err)
	}
	if ttl, err := redis.Int64(srv.Do(t, "PTTL", "session:r:next"), nil); err != nil || ttl <= 0 || ttl > (10*time.Minute).Milliseconds() {
		t.Errorf("PTTL of the pointer = %d, %v; want up to 10 minutes", ttl, err)
	}
	if err := s.SetMovedTo(ctx, "r", "l3", 0); err == nil {
		t.Error("SetMovedTo with no time to live = nil, want an error")
	}
}

// TestAddUserSessionMergeReads logs in from an anonymous session that
// other connections read without pause, with an idle timeout (GETEX with
// PX, a change of the key to WATCH): the login takes the record at once,
// never retrying, and carries it over. A login that watched the record
// retried until its time budget ran out (ErrContention).
func TestAddUserSessionMergeReads(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv, redisstore.Config{Timeout: 500 * time.Millisecond})
	readers := open(t, srv, redisstore.Config{})
	ctx := context.Background()
	d := deadlines(1)
	setRecord(t, srv, "anon", "cart")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1_000_000; i++ { // bounded; stopped far sooner
				select {
				case <-stop:
					return
				default:
				}
				readers.Load(ctx, "anon", time.Minute)
			}
		}()
	}
	time.Sleep(50 * time.Millisecond) // the readers are going
	srv.ResetStats(t)
	a := alice("a", d[0])
	a.Replaces = "anon"
	a.Merge = func(replaced []byte) ([]byte, error) { return append([]byte("alice:"), replaced...), nil }
	ended, err := s.AddUserSession(ctx, a)
	calls := srv.Calls(t)
	close(stop)
	wg.Wait()
	if err != nil || !slices.Equal(ended, []string{"anon"}) {
		t.Fatalf("AddUserSession while the replaced session is read = %q, %v; want [anon], nil", ended, err)
	}
	if got, _ := redis.String(srv.Do(t, "GET", "session:a"), nil); got != "alice:cart" {
		t.Errorf("record = %q, want alice:cart", got)
	}
	if calls["exec"] != 1 || calls["watch"] != 0 {
		t.Errorf("the login sent EXEC %d times and WATCH %d times, want 1 and 0", calls["exec"], calls["watch"])
	}
}

func TestMoveSession(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv, redisstore.Config{})
	ctx := context.Background()
	d := deadlines(3)
	ms := func(i int) int64 { return d[i].UnixMilli() }
	moved := func(current []byte) ([]byte, error) { return append(current, "+moved"...), nil }
	errMerge := errors.New("merge failed")
	failing := func([]byte) ([]byte, error) { return nil, errMerge }
	move := func(userID, from, to string, deadline time.Time, merge func([]byte) ([]byte, error)) redisstore.Move {
		return redisstore.Move{UserID: userID, From: from, To: to, TTL: 90 * time.Second, Deadline: deadline, Merge: merge}
	}

	tests := []struct {
		name        string
		before      []redisstore.UserSession
		setup       func(t *testing.T)
		move        redisstore.Move
		wantMoved   bool
		wantErr     error
		wantRecords map[string]string
		wantIndex   map[string]int64
		wantExpiry  time.Time         // of the index; zero: no index
		wantPointer map[string]string // see pointers
	}{
		{
			name:        "a user's session",
			before:      []redisstore.UserSession{alice("a", d[0])},
			move:        move("alice", "a", "b", d[2], moved),
			wantMoved:   true,
			wantRecords: map[string]string{"b": "rec-a+moved"},
			wantIndex:   map[string]int64{"b": ms(2)},
			wantPointer: map[string]string{"a": "b"},
			wantExpiry:  d[2],
		},
		{
			name:        "an earlier deadline leaves the index expiry",
			before:      []redisstore.UserSession{alice("a", d[0]), alice("x", d[2])},
			move:        move("alice", "a", "b", d[1], moved),
			wantMoved:   true,
			wantRecords: map[string]string{"b": "rec-a+moved", "x": "rec-x"},
			wantIndex:   map[string]int64{"b": ms(1), "x": ms(2)},
			wantPointer: map[string]string{"a": "b"},
			wantExpiry:  d[2],
		},
		{
			name:        "missing From",
			before:      []redisstore.UserSession{alice("x", d[0])},
			move:        move("alice", "a", "b", d[2], failing), // never called
			wantRecords: map[string]string{"x": "rec-x"},
			wantIndex:   map[string]int64{"x": ms(0)},
			wantExpiry:  d[0],
		},
		{
			name:        "anonymous",
			setup:       func(t *testing.T) { setRecord(t, srv, "a", "anon") },
			move:        move("", "a", "b", d[2], moved),
			wantMoved:   true,
			wantRecords: map[string]string{"b": "anon+moved"},
			wantPointer: map[string]string{"a": "b"},
		},
		{
			name:        "a time to live past the pointer's limit",
			before:      []redisstore.UserSession{alice("a", d[0])},
			move:        redisstore.Move{UserID: "alice", From: "a", To: "b", TTL: time.Hour, Deadline: d[2], Merge: moved},
			wantMoved:   true,
			wantRecords: map[string]string{"b": "rec-a+moved"},
			wantIndex:   map[string]int64{"b": ms(2)},
			wantPointer: map[string]string{"a": "b"},
			wantExpiry:  d[2],
		},
		{
			name: "anonymous, missing From",
			move: move("", "a", "b", d[2], failing),
		},
		{
			name:        "merge error",
			before:      []redisstore.UserSession{alice("a", d[0])},
			move:        move("alice", "a", "b", d[2], failing),
			wantErr:     errMerge,
			wantRecords: map[string]string{"a": "rec-a"},
			wantIndex:   map[string]int64{"a": ms(0)},
			wantExpiry:  d[0],
		},
		{
			name:        "To taken",
			before:      []redisstore.UserSession{alice("a", d[0])},
			setup:       func(t *testing.T) { setRecord(t, srv, "b", "someone else's") },
			move:        move("alice", "a", "b", d[2], moved),
			wantErr:     errAny,
			wantRecords: map[string]string{"a": "rec-a", "b": "someone else's"},
			wantIndex:   map[string]int64{"a": ms(0)},
			wantExpiry:  d[0],
		},
		{
			name:   "zero ttl",
			before: []redisstore.UserSession{alice("a", d[0])},
			move: redisstore.Move{
				UserID: "alice", From: "a", To: "b", Deadline: d[2], Merge: moved,
			},
			wantErr:     errAny,
			wantRecords: map[string]string{"a": "rec-a"},
			wantIndex:   map[string]int64{"a": ms(0)},
			wantExpiry:  d[0],
		},
		{
			name:        "no merge",
			before:      []redisstore.UserSession{alice("a", d[0])},
			move:        move("alice", "a", "b", d[2], nil),
			wantErr:     errAny,
			wantRecords: map[string]string{"a": "rec-a"},
			wantIndex:   map[string]int64{"a": ms(0)},
			wantExpiry:  d[0],
		},
		{
			name:        "From is To",
			before:      []redisstore.UserSession{alice("a", d[0])},
			move:        move("alice", "a", "a", d[2], moved),
			wantErr:     errAny,
			wantRecords: map[string]string{"a": "rec-a"},
			wantIndex:   map[string]int64{"a": ms(0)},
			wantExpiry:  d[0],
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv.Do(t, "FLUSHALL")
			addAll(t, s, tc.before...)
			if tc.setup != nil {
				tc.setup(t)
			}
			m := tc.move
			got, err := s.MoveSession(ctx, m)
			if got != tc.wantMoved || !checkErr(err, tc.wantErr) {
				t.Fatalf("MoveSession(%s to %s) = %v, %v, want %v, %v", m.From, m.To, got, err, tc.wantMoved, tc.wantErr)
			}
			if got := records(t, srv); !maps.Equal(got, tc.wantRecords) {
				t.Errorf("records after MoveSession(%s to %s) = %v, want %v", m.From, m.To, got, tc.wantRecords)
			}
			if got := index(t, srv, "alice"); !maps.Equal(got, tc.wantIndex) {
				t.Errorf("index after MoveSession(%s to %s) = %v, want %v", m.From, m.To, got, tc.wantIndex)
			}
			if got := pointers(t, srv); !maps.Equal(got, tc.wantPointer) && len(got)+len(tc.wantPointer) > 0 {
				t.Errorf("pointers after MoveSession(%s to %s) = %v, want %v", m.From, m.To, got, tc.wantPointer)
			}
			for from := range tc.wantPointer {
				want := min(m.TTL, 10*time.Minute) // the record's, up to 10 minutes
				if d := pttl(t, srv, "session:"+from+":next"); d <= want-5*time.Second || d > want {
					t.Errorf("PTTL of the pointer of %s = %v, want about %v", from, d, want)
				}
			}
			wantKeys := len(tc.wantRecords) + len(tc.wantPointer)
			if !tc.wantExpiry.IsZero() {
				wantKeys++ // the index
				if got, want := expireTime(t, srv, indexKey("alice")), tc.wantExpiry.Add(indexGrace).UnixMilli(); got != want {
					t.Errorf("PEXPIRETIME of the index after MoveSession(%s to %s) = %d, want %d", m.From, m.To, got, want)
				}
			}
			if got := dbSize(t, srv); got != wantKeys {
				t.Errorf("DBSIZE after MoveSession(%s to %s) = %d, want %d", m.From, m.To, got, wantKeys)
			}
			if tc.wantMoved {
				checkTTL(t, srv, m.To, m.TTL)
			}
		})
	}
}

// TestMoveSessionRace moves one session twice at once, through two Stores:
// one move wins, the other finds the session gone, and the session lives
// on under one id only.
func TestMoveSessionRace(t *testing.T) {
	srv := redistest.Start(t)
	s1, s2 := open(t, srv, redisstore.Config{}), open(t, srv, redisstore.Config{})
	ctx := context.Background()
	deadline := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	merge := func(current []byte) ([]byte, error) { return current, nil }

	for round := range 20 {
		from := fmt.Sprintf("r%02d", round)
		to := []string{from + "-1", from + "-2"}
		user := "u" + from
		addAll(t, s1, redisstore.UserSession{UserID: user, ID: from, Record: []byte("rec"), TTL: time.Hour, Deadline: deadline})

		var moved [2]bool
		var errs [2]error
		together(
			func() {
				moved[0], errs[0] = s1.MoveSession(ctx, redisstore.Move{UserID: user, From: from, To: to[0], TTL: time.Hour, Deadline: deadline, Merge: merge})
			},
			func() {
				moved[1], errs[1] = s2.MoveSession(ctx, redisstore.Move{UserID: user, From: from, To: to[1], TTL: time.Hour, Deadline: deadline, Merge: merge})
			},
		)
		if errs[0] != nil || errs[1] != nil || moved[0] == moved[1] {
			t.Fatalf("round %d: MoveSession(%s to %s) = %v, %v and MoveSession(%s to %s) = %v, %v, want exactly one true and no error",
				round, from, to[0], moved[0], errs[0], from, to[1], moved[1], errs[1])
		}
		winner := to[0]
		if moved[1] {
			winner = to[1]
		}
		var live []string
		for id := range records(t, srv) {
			if strings.HasPrefix(id, from) {
				live = append(live, id)
			}
		}
		if !slices.Equal(live, []string{winner}) {
			t.Errorf("round %d: records after both moves = %q, want [%s]", round, live, winner)
		}
		if got, want := index(t, srv, user), map[string]int64{winner: deadline.UnixMilli()}; !maps.Equal(got, want) {
			t.Errorf("round %d: index after both moves = %v, want %v", round, got, want)
		}
	}
}

// TestMoveSessionInterleaved runs another write, through a second Store,
// at the worst moment for a move: after it has read the record and before
// it writes, from inside its merge function. A move must never bring back
// a session ended meanwhile, nor keep a session under two ids; a change
// made meanwhile is merged again.
func TestMoveSessionInterleaved(t *testing.T) {
	srv := redistest.Start(t)
	s1, s2 := open(t, srv, redisstore.Config{}), open(t, srv, redisstore.Config{})
	ctx := context.Background()
	d := deadlines(2)

	tests := []struct {
		name        string
		between     func() error // runs once, between the move's read and its write
		wantMoved   bool
		wantRecords map[string]string
		wantIndex   map[string]int64
	}{
		{
			name:    "RemoveUserSession",
			between: func() error { _, err := s2.RemoveUserSession(ctx, "alice", "a"); return err },
		},
		{
			name: "RemoveUserSessions",
			between: func() error {
				_, err := s2.RemoveUserSessions(ctx, "alice", "")
				return err
			},
		},
		{
			name: "revoked by a login with a limit",
			between: func() error {
				n := alice("n", d[1])
				n.Limit = 1
				_, err := s2.AddUserSession(ctx, n)
				return err
			},
			wantRecords: map[string]string{"n": "rec-n"},
			wantIndex:   map[string]int64{"n": d[1].UnixMilli()},
		},
		{
			name: "another move",
			between: func() error {
				_, err := s2.MoveSession(ctx, redisstore.Move{
					UserID: "alice", From: "a", To: "other", TTL: time.Hour, Deadline: d[0],
					Merge: func(current []byte) ([]byte, error) { return append(current, "+other"...), nil },
				})
				return err
			},
			wantRecords: map[string]string{"other": "rec-a+other"},
			wantIndex:   map[string]int64{"other": d[0].UnixMilli()},
		},
		{
			name: "Merge",
			between: func() error {
				_, err := s2.Merge(ctx, "a", time.Hour, func(current []byte) ([]byte, error) { return append(current, "+merged"...), nil })
				return err
			},
			wantMoved:   true,
			wantRecords: map[string]string{"b": "rec-a+merged+moved"},
			wantIndex:   map[string]int64{"b": d[0].UnixMilli()},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv.Do(t, "FLUSHALL")
			addAll(t, s1, alice("a", d[0]))
			calls := 0
			var betweenErr error
			moved, err := s1.MoveSession(ctx, redisstore.Move{
				UserID: "alice", From: "a", To: "b", TTL: time.Hour, Deadline: d[0],
				Merge: func(current []byte) ([]byte, error) {
					if calls++; calls == 1 {
						betweenErr = tc.between()
					}
					return append(current, "+moved"...), nil
				},
			})
			if betweenErr != nil {
				t.Fatalf("%s between the move's read and write: %v", tc.name, betweenErr)
			}
			if moved != tc.wantMoved || err != nil {
				t.Fatalf("MoveSession(a to b) with %s in between = %v, %v, want %v, nil", tc.name, moved, err, tc.wantMoved)
			}
			if got := records(t, srv); !maps.Equal(got, tc.wantRecords) {
				t.Errorf("records after MoveSession(a to b) with %s in between = %v, want %v", tc.name, got, tc.wantRecords)
			}
			if got := index(t, srv, "alice"); !maps.Equal(got, tc.wantIndex) {
				t.Errorf("index after MoveSession(a to b) with %s in between = %v, want %v", tc.name, got, tc.wantIndex)
			}
		})
	}
}

// TestMoveSessionRemoveUserSessionsRace races a move against "log out
// everywhere", through two Stores. Whichever goes first, once both have
// returned no session of the user is left: the move either lost (the
// removal deleted From first) or its new id was in the index the removal
// cleared. RemoveUserSessions reports the id it found.
func TestMoveSessionRemoveUserSessionsRace(t *testing.T) {
	srv := redistest.Start(t)
	s1, s2 := open(t, srv, redisstore.Config{}), open(t, srv, redisstore.Config{})
	ctx := context.Background()
	deadline := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	merge := func(current []byte) ([]byte, error) { return current, nil }

	wins := 0
	for round := range 50 {
		user := fmt.Sprintf("u%02d", round)
		from, to, other := user+"-from", user+"-to", user+"-other"
		addAll(t, s1,
			redisstore.UserSession{UserID: user, ID: from, Record: []byte("rec"), TTL: time.Hour, Deadline: deadline},
			redisstore.UserSession{UserID: user, ID: other, Record: []byte("rec"), TTL: time.Hour, Deadline: deadline},
		)
		var moved bool
		var removed []string
		var moveErr, removeErr error
		together(
			func() {
				moved, moveErr = s1.MoveSession(ctx, redisstore.Move{UserID: user, From: from, To: to, TTL: time.Hour, Deadline: deadline, Merge: merge})
			},
			func() { removed, removeErr = s2.RemoveUserSessions(ctx, user, "") },
		)
		if moveErr != nil || removeErr != nil {
			t.Fatalf("round %d: MoveSession = %v, %v; RemoveUserSessions = %q, %v; want no errors", round, moved, moveErr, removed, removeErr)
		}
		if moved {
			wins++
		}
		want := []string{from, other}
		if moved {
			want = []string{other, to}
		}
		if got := slices.Sorted(slices.Values(removed)); !slices.Equal(got, want) {
			t.Errorf("round %d: RemoveUserSessions(%s) = %q with MoveSession = %v, want %q", round, user, got, moved, want)
		}
		for id := range records(t, srv) {
			if strings.HasPrefix(id, user) {
				t.Errorf("round %d: session %s survived RemoveUserSessions (MoveSession = %v)", round, id, moved)
			}
		}
		if idx := index(t, srv, user); len(idx) != 0 {
			t.Errorf("round %d: index after RemoveUserSessions = %v, want empty", round, idx)
		}
	}
	t.Logf("the move won %d of 50 rounds", wins)
}

// TestMoveSessionRemoveUserSessionRace races a move against the logout of
// the session it moves, through two Stores. RemoveUserSession of an id
// already moved away succeeds without finding anything, so the outcomes
// are: the removal went first and the move reports false, having written
// nothing; or the move went first and the session lives on, indexed, under
// the new id only. The old id never survives, and nothing is ever left
// outside the index.
func TestMoveSessionRemoveUserSessionRace(t *testing.T) {
	srv := redistest.Start(t)
	s1, s2 := open(t, srv, redisstore.Config{}), open(t, srv, redisstore.Config{})
	ctx := context.Background()
	deadline := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	merge := func(current []byte) ([]byte, error) { return current, nil }

	wins := 0
	for round := range 50 {
		user := fmt.Sprintf("u%02d", round)
		from, to := user+"-from", user+"-to"
		addAll(t, s1, redisstore.UserSession{UserID: user, ID: from, Record: []byte("rec"), TTL: time.Hour, Deadline: deadline})
		var moved bool
		var moveErr, removeErr error
		together(
			func() {
				moved, moveErr = s1.MoveSession(ctx, redisstore.Move{UserID: user, From: from, To: to, TTL: time.Hour, Deadline: deadline, Merge: merge})
			},
			func() { _, removeErr = s2.RemoveUserSession(ctx, user, from) },
		)
		if moveErr != nil || removeErr != nil {
			t.Fatalf("round %d: MoveSession = %v, %v; RemoveUserSession = %v; want no errors", round, moved, moveErr, removeErr)
		}
		var left []string
		for id := range records(t, srv) {
			if strings.HasPrefix(id, user) {
				left = append(left, id)
			}
		}
		wantLeft := []string(nil)
		wantIndex := map[string]int64{}
		if moved {
			wins++
			wantLeft = []string{to}
			wantIndex = map[string]int64{to: deadline.UnixMilli()}
		}
		if !slices.Equal(left, wantLeft) {
			t.Errorf("round %d: records left = %q with MoveSession = %v, want %q", round, left, moved, wantLeft)
		}
		if got := index(t, srv, user); !maps.Equal(got, wantIndex) {
			t.Errorf("round %d: index = %v with MoveSession = %v, want %v", round, got, moved, wantIndex)
		}
	}
	t.Logf("the move won %d of 50 rounds", wins)
}

func TestMerge(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv, redisstore.Config{})
	ctx := context.Background()
	errMerge := errors.New("merge failed")

	tests := []struct {
		name       string
		before     string // the record before, "" for none
		ttl        time.Duration
		merge      func([]byte) ([]byte, error)
		want       bool
		wantErr    error
		wantRecord string // "" for none
		wantTTL    time.Duration
	}{
		{
			name:   "merges",
			before: "v1", ttl: 90 * time.Second,
			merge:      func(current []byte) ([]byte, error) { return append(current, "+v2"...), nil },
			want:       true,
			wantRecord: "v1+v2", wantTTL: 90 * time.Second,
		},
		{
			name:  "missing record",
			ttl:   90 * time.Second,
			merge: func([]byte) ([]byte, error) { return nil, errors.New("merge called") },
		},
		{
			name:   "merge error",
			before: "v1", ttl: 90 * time.Second,
			merge:      func([]byte) ([]byte, error) { return nil, errMerge },
			wantErr:    errMerge,
			wantRecord: "v1", wantTTL: time.Minute,
		},
		{
			name:    "zero ttl",
			before:  "v1",
			merge:   func(current []byte) ([]byte, error) { return append(current, "+v2"...), nil },
			wantErr: errAny, wantRecord: "v1", wantTTL: time.Minute,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv.Do(t, "FLUSHALL")
			if tc.before != "" {
				setRecord(t, srv, "m", tc.before)
			}
			got, err := s.Merge(ctx, "m", tc.ttl, tc.merge)
			if got != tc.want || !checkErr(err, tc.wantErr) {
				t.Fatalf("Merge(%s) = %v, %v, want %v, %v", tc.name, got, err, tc.want, tc.wantErr)
			}
			want := map[string]string{}
			if tc.wantRecord != "" {
				want["m"] = tc.wantRecord
			}
			if got := records(t, srv); !maps.Equal(got, want) || dbSize(t, srv) != len(want) {
				t.Errorf("records after Merge(%s) = %v, want %v and nothing else", tc.name, got, want)
			}
			if tc.wantRecord != "" {
				checkTTL(t, srv, "m", tc.wantTTL)
			}
		})
	}
}

// TestMergeInterleaved runs another write, through a second Store, between
// Merge's read and its write, from inside its merge function: a session
// ended meanwhile is not written back, and a change made meanwhile is
// merged again rather than lost.
func TestMergeInterleaved(t *testing.T) {
	srv := redistest.Start(t)
	s1, s2 := open(t, srv, redisstore.Config{}), open(t, srv, redisstore.Config{})
	ctx := context.Background()
	tests := []struct {
		name       string
		between    func() error // runs once, between Merge's read and its write
		want       bool
		wantRecord string // "" for none
	}{
		{"Remove", func() error { return s2.Remove(ctx, "m") }, false, ""},
		{"Merge", func() error {
			_, err := s2.Merge(ctx, "m", time.Minute, func(current []byte) ([]byte, error) { return append(current, "+other"...), nil })
			return err
		}, true, "v1+other+mine"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv.Do(t, "FLUSHALL")
			setRecord(t, srv, "m", "v1")
			calls := 0
			var betweenErr error
			written, err := s1.Merge(ctx, "m", time.Minute, func(current []byte) ([]byte, error) {
				if calls++; calls == 1 {
					betweenErr = tc.between()
				}
				return append(current, "+mine"...), nil
			})
			if betweenErr != nil {
				t.Fatalf("%s between Merge's read and write: %v", tc.name, betweenErr)
			}
			if written != tc.want || err != nil {
				t.Fatalf("Merge(m) with %s in between = %v, %v, want %v, nil", tc.name, written, err, tc.want)
			}
			want := map[string]string{}
			if tc.wantRecord != "" {
				want["m"] = tc.wantRecord
			}
			if got := records(t, srv); !maps.Equal(got, want) {
				t.Errorf("records after Merge(m) with %s in between = %v, want %v", tc.name, got, want)
			}
		})
	}
}

// TestMergeConcurrent has 100 requests, on two Stores, each change its own
// value of one session at once: every change survives, and on a healthy
// Redis none gives up with ErrContention.
func TestMergeConcurrent(t *testing.T) {
	srv := redistest.Start(t)
	stores := []*redisstore.Store{open(t, srv, redisstore.Config{}), open(t, srv, redisstore.Config{})}
	ctx := context.Background()
	setRecord(t, srv, "m", "{}")

	const n = 100
	written := make([]bool, n)
	errs := make([]error, n)
	fs := make([]func(), n)
	for i := range n {
		fs[i] = func() {
			written[i], errs[i] = stores[i%2].Merge(ctx, "m", time.Minute, func(current []byte) ([]byte, error) {
				var values map[string]int
				if err := json.Unmarshal(current, &values); err != nil {
					return nil, err
				}
				values[fmt.Sprintf("f%03d", i)] = i
				return json.Marshal(values)
			})
		}
	}
	together(fs...)
	for i := range n {
		if !written[i] || errs[i] != nil {
			t.Errorf("Merge(f%03d) = %v, %v, want true, nil", i, written[i], errs[i])
		}
	}
	var values map[string]int
	if err := json.Unmarshal([]byte(records(t, srv)["m"]), &values); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if v, ok := values[fmt.Sprintf("f%03d", i)]; !ok || v != i {
			t.Errorf("record[f%03d] = %v, %v, want %d, true", i, v, ok, i)
		}
	}
}

func TestRemoveUserSessions(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv, redisstore.Config{})
	ctx := context.Background()
	d := deadlines(3)
	bob := redisstore.UserSession{UserID: "bob", ID: "bob-1", Record: []byte("rec-bob-1"), TTL: time.Hour, Deadline: d[0]}
	three := []redisstore.UserSession{alice("c", d[2]), alice("a", d[0]), alice("b", d[1]), bob}

	tests := []struct {
		name        string
		before      []redisstore.UserSession
		setup       func(t *testing.T)
		keep        string
		want        []string
		wantErr     error
		wantRecords map[string]string
		wantIndex   map[string]int64
	}{
		{
			name:        "keep one",
			before:      three,
			keep:        "b",
			want:        []string{"a", "c"},
			wantRecords: map[string]string{"b": "rec-b", "bob-1": "rec-bob-1"},
			wantIndex:   map[string]int64{"b": d[1].UnixMilli()},
		},
		{
			name:        "keep none",
			before:      three,
			want:        []string{"a", "b", "c"},
			wantRecords: map[string]string{"bob-1": "rec-bob-1"},
		},
		{
			// A session to keep that a renewal moved, or that ended: the
			// caller must look for it again before anything is deleted.
			name:        "keep a missing id",
			before:      three,
			keep:        "zz",
			wantErr:     redisstore.ErrKeepGone,
			wantRecords: map[string]string{"a": "rec-a", "b": "rec-b", "c": "rec-c", "bob-1": "rec-bob-1"},
			wantIndex:   map[string]int64{"a": d[0].UnixMilli(), "b": d[1].UnixMilli(), "c": d[2].UnixMilli()},
		},
		{
			name:        "keep an id whose record is gone",
			before:      three,
			setup:       func(t *testing.T) { srv.Do(t, "DEL", "session:b") },
			keep:        "b",
			want:        []string{"a", "c"},
			wantRecords: map[string]string{"bob-1": "rec-bob-1"},
			wantIndex:   map[string]int64{"b": d[1].UnixMilli()},
		},
		{
			name:        "leaves out a member whose record is gone",
			before:      three,
			setup:       func(t *testing.T) { srv.Do(t, "DEL", "session:a") },
			want:        []string{"b", "c"},
			wantRecords: map[string]string{"bob-1": "rec-bob-1"},
		},
		{
			name:        "no sessions",
			before:      []redisstore.UserSession{bob},
			wantRecords: map[string]string{"bob-1": "rec-bob-1"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv.Do(t, "FLUSHALL")
			addAll(t, s, tc.before...)
			if tc.setup != nil {
				tc.setup(t)
			}
			removed, err := s.RemoveUserSessions(ctx, "alice", tc.keep)
			if !errors.Is(err, tc.wantErr) || !slices.Equal(removed, tc.want) {
				t.Fatalf("RemoveUserSessions(alice, %q) = %q, %v, want %q, %v", tc.keep, removed, err, tc.want, tc.wantErr)
			}
			if got := records(t, srv); !maps.Equal(got, tc.wantRecords) {
				t.Errorf("records after RemoveUserSessions(alice, %q) = %v, want %v", tc.keep, got, tc.wantRecords)
			}
			if got := index(t, srv, "alice"); !maps.Equal(got, tc.wantIndex) {
				t.Errorf("index after RemoveUserSessions(alice, %q) = %v, want %v", tc.keep, got, tc.wantIndex)
			}
			if got, want := index(t, srv, "bob"), map[string]int64{"bob-1": d[0].UnixMilli()}; !maps.Equal(got, want) {
				t.Errorf("bob's index after RemoveUserSessions(alice, %q) = %v, want %v", tc.keep, got, want)
			}
		})
	}
}

func TestRemoveUserSession(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv, redisstore.Config{})
	ctx := context.Background()
	d := deadlines(2)

	tests := []struct {
		name        string
		before      []redisstore.UserSession
		setup       func(t *testing.T)
		userID, id  string
		wantRecords map[string]string
		wantIndex   map[string]int64 // of userID
	}{
		{
			name:        "a user's session",
			before:      []redisstore.UserSession{alice("a", d[0]), alice("b", d[1])},
			userID:      "alice",
			id:          "a",
			wantRecords: map[string]string{"b": "rec-b"},
			wantIndex:   map[string]int64{"b": d[1].UnixMilli()},
		},
		{
			name:        "missing id",
			before:      []redisstore.UserSession{alice("b", d[1])},
			userID:      "alice",
			id:          "a",
			wantRecords: map[string]string{"b": "rec-b"},
			wantIndex:   map[string]int64{"b": d[1].UnixMilli()},
		},
		{
			// An anonymous session has no index: a key that looks like
			// the index of user "" is not touched.
			name: "anonymous",
			setup: func(t *testing.T) {
				setRecord(t, srv, "a", "anon")
				srv.Do(t, "ZADD", indexKey(""), d[0].UnixMilli(), "a")
			},
			id:          "a",
			wantRecords: map[string]string{},
			wantIndex:   map[string]int64{"a": d[0].UnixMilli()},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv.Do(t, "FLUSHALL")
			addAll(t, s, tc.before...)
			if tc.setup != nil {
				tc.setup(t)
			}
			if _, err := s.RemoveUserSession(ctx, tc.userID, tc.id); err != nil {
				t.Fatalf("RemoveUserSession(%q, %s) = %v, want nil", tc.userID, tc.id, err)
			}
			if got := records(t, srv); !maps.Equal(got, tc.wantRecords) {
				t.Errorf("records after RemoveUserSession(%q, %s) = %v, want %v", tc.userID, tc.id, got, tc.wantRecords)
			}
			if got := index(t, srv, tc.userID); !maps.Equal(got, tc.wantIndex) {
				t.Errorf("index after RemoveUserSession(%q, %s) = %v, want %v", tc.userID, tc.id, got, tc.wantIndex)
			}
		})
	}
}

func TestUserSessions(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv, redisstore.Config{})
	ctx := context.Background()
	d := deadlines(3)
	past := time.Now().Add(-time.Minute).UnixMilli()

	addAll(t, s, alice("a", d[1]), alice("b", d[0]))
	srv.Do(t, "ZADD", indexKey("alice"), d[2].UnixMilli(), "gone") // its record ended
	setRecord(t, srv, "past", "rec-past")
	srv.Do(t, "ZADD", indexKey("alice"), past, "past") // past its deadline

	ids, recs, err := s.UserSessions(ctx, "alice")
	if err != nil {
		t.Fatalf("UserSessions(alice) = %v", err)
	}
	if want := []string{"b", "a"}; !slices.Equal(ids, want) {
		t.Errorf("UserSessions(alice) = %q, want %q (oldest deadline first)", ids, want)
	}
	if got, want := fmt.Sprintf("%s", recs), "[rec-b rec-a]"; got != want {
		t.Errorf("UserSessions(alice) records = %s, want %s", got, want)
	}
	want := map[string]int64{"a": d[1].UnixMilli(), "b": d[0].UnixMilli()}
	if got := index(t, srv, "alice"); !maps.Equal(got, want) {
		t.Errorf("index after UserSessions(alice) = %v, want %v (pruned)", got, want)
	}

	ids, recs, err = s.UserSessions(ctx, "nobody")
	if err != nil || len(ids) != 0 || len(recs) != 0 {
		t.Errorf("UserSessions(nobody) = %q, %d records, %v, want none, nil", ids, len(recs), err)
	}
}

// TestUserCommands pins down what each call sends, as the server counts it
// (commands queued in MULTI count when EXEC runs them), against the table
// in the package documentation, and that a transaction given up before
// EXEC leaves its connection unwatched.
func TestUserCommands(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv, redisstore.Config{MaxActive: 1})
	ctx := context.Background()
	d := deadlines(2)
	failing := func([]byte) ([]byte, error) { return nil, errors.New("merge failed") }
	same := func(current []byte) ([]byte, error) { return current, nil }

	tests := []struct {
		name  string
		setup func(t *testing.T)
		call  func() error
		want  map[string]int64
	}{
		{
			name: "AddUserSession",
			call: func() error { _, err := s.AddUserSession(ctx, alice("a", d[0])); return err },
			want: map[string]int64{"set": 1, "zadd": 1, "pexpireat": 2, "zremrangebyscore": 1},
		},
		{
			name: "AddUserSession replacing",
			call: func() error {
				a := alice("b", d[0])
				a.Replaces = "a"
				_, err := s.AddUserSession(ctx, a)
				return err
			},
			// One transaction: a Redis out of memory refuses the DEL too.
			// Two SETs: the record, and the pointer from the replaced
			// session to it (see MovedTo).
			want: map[string]int64{"multi": 1, "del": 1, "set": 2, "zadd": 1, "pexpireat": 2, "zremrangebyscore": 1, "zrem": 1, "exec": 1},
		},
		{
			name:  "AddUserSession replacing with a merge",
			setup: func(t *testing.T) { setRecord(t, srv, "anon", "cart") },
			call: func() error {
				a := alice("m", d[0])
				a.UserID, a.Replaces, a.Merge = "mia", "anon", same // not alice, whose sessions the rows below count
				_, err := s.AddUserSession(ctx, a)
				return err
			},
			// The replaced record is read and deleted at once, with a
			// logout's mark and a renewal's pointer read (MULTI GET DEL
			// GET GET EXEC), then the session added as without a
			// replaced one.
			want: map[string]int64{"multi": 1, "get": 3, "del": 1, "exec": 1, "set": 1, "zadd": 1, "pexpireat": 2, "zremrangebyscore": 1},
		},
		{
			name: "AddUserSession with a limit",
			call: func() error {
				a := alice("c", d[0])
				a.Limit = 5
				_, err := s.AddUserSession(ctx, a)
				return err
			},
			want: map[string]int64{"watch": 1, "zrange": 1, "exists": 2, "multi": 1, "set": 1, "zadd": 1, "pexpireat": 2, "zremrangebyscore": 1, "exec": 1},
		},
		{
			name: "MoveSession",
			call: func() error {
				_, err := s.MoveSession(ctx, redisstore.Move{UserID: "alice", From: "c", To: "d", TTL: time.Hour, Deadline: d[1], Merge: same})
				return err
			},
			want: map[string]int64{"watch": 1, "get": 1, "exists": 1, "multi": 1, "set": 2, "del": 1, "zadd": 1, "pexpireat": 2, "zremrangebyscore": 1, "zrem": 1, "exec": 1},
		},
		{
			name: "MoveSession with a merge error",
			call: func() error {
				_, err := s.MoveSession(ctx, redisstore.Move{UserID: "alice", From: "d", To: "e", TTL: time.Hour, Deadline: d[1], Merge: failing})
				if err == nil {
					return errors.New("no error from the merge")
				}
				return nil
			},
			want: map[string]int64{"watch": 1, "get": 1, "exists": 1, "unwatch": 1},
		},
		{
			name: "MoveSession of a missing session",
			call: func() error {
				_, err := s.MoveSession(ctx, redisstore.Move{UserID: "alice", From: "zz", To: "e", TTL: time.Hour, Deadline: d[1], Merge: same})
				return err
			},
			want: map[string]int64{"watch": 1, "get": 1, "exists": 1, "unwatch": 1},
		},
		{
			name: "Merge",
			call: func() error {
				_, err := s.Merge(ctx, "d", time.Hour, func(current []byte) ([]byte, error) { return append(current, '+'), nil })
				return err
			},
			want: map[string]int64{"watch": 1, "get": 1, "multi": 1, "set": 1, "exec": 1},
		},
		{
			// A merge that returns the record as it is (a removal of a
			// value it does not hold) writes nothing, and reports the
			// record there.
			name: "Merge unchanged",
			call: func() error {
				written, err := s.Merge(ctx, "d", time.Hour, same)
				if err == nil && !written {
					err = errors.New("an unchanged Merge reported the record gone")
				}
				return err
			},
			want: map[string]int64{"watch": 1, "get": 1, "unwatch": 1},
		},
		{
			name: "Merge with a merge error",
			call: func() error {
				if _, err := s.Merge(ctx, "d", time.Hour, failing); err == nil {
					return errors.New("no error from the merge")
				}
				return nil
			},
			want: map[string]int64{"watch": 1, "get": 1, "unwatch": 1},
		},
		{
			name: "UserSessions",
			call: func() error { _, _, err := s.UserSessions(ctx, "alice"); return err },
			want: map[string]int64{"zremrangebyscore": 1, "zrange": 1, "mget": 1},
		},
		{
			name: "RemoveUserSession",
			call: func() error { _, err := s.RemoveUserSession(ctx, "alice", "b"); return err },
			want: map[string]int64{"del": 1, "zrem": 1},
		},
		{
			name: "RemoveUserSession anonymous",
			call: func() error { _, err := s.RemoveUserSession(ctx, "", "b"); return err },
			// The logout's mark, then the record, in one round trip.
			want: map[string]int64{"set": 1, "del": 1},
		},
		{
			name: "RemoveUnmarked",
			call: func() error { _, err := s.RemoveUnmarked(ctx, "b"); return err },
			want: map[string]int64{"del": 1},
		},
		{
			name: "RemoveUserSessions",
			call: func() error { _, err := s.RemoveUserSessions(ctx, "alice", ""); return err },
			want: map[string]int64{"watch": 1, "zrange": 1, "multi": 1, "del": 1, "zrem": 1, "exec": 1},
		},
		{
			name: "RemoveUserSessions of none",
			call: func() error { _, err := s.RemoveUserSessions(ctx, "alice", ""); return err },
			want: map[string]int64{"watch": 1, "zrange": 1, "unwatch": 1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup(t)
			}
			srv.ResetStats(t)
			if err := tc.call(); err != nil {
				t.Fatal(err)
			}
			if got := srv.Calls(t); !maps.Equal(got, tc.want) {
				t.Fatalf("Calls = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestContention has another connection change the watched key between
// the Store's read and its EXEC on every attempt, so that no transaction
// ever goes through: the call gives up within its Timeout with
// ErrContention, which is not an outage, and says so without naming a key.
// The writer runs inside the merge function, which each attempt calls
// exactly once between WATCH and EXEC, so that it never misses a window.
func TestContention(t *testing.T) {
	srv := redistest.Start(t)
	const timeout = 50 * time.Millisecond
	s := open(t, srv, redisstore.Config{Timeout: timeout})
	ctx := context.Background()
	const id = "ZZ-contended-id-3b7e"
	writer, err := redis.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	attempts := 0
	change := func(current []byte) ([]byte, error) {
		attempts++
		if attempts > 1000 { // bounded, whatever the Store does
			return nil, errors.New("too many attempts")
		}
		if _, err := writer.Do("SET", "session:"+id, fmt.Sprint("writer-", attempts), "KEEPTTL"); err != nil {
			return nil, err
		}
		return append(current, "+merged"...), nil
	}

	tests := []struct {
		name string
		call func() error
	}{
		{"Merge", func() error { _, err := s.Merge(ctx, id, time.Minute, change); return err }},
		{"MoveSession", func() error {
			_, err := s.MoveSession(ctx, redisstore.Move{
				UserID: "alice", From: id, To: id + "-new", TTL: time.Minute, Deadline: time.Now().Add(time.Hour), Merge: change,
			})
			return err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv.Do(t, "FLUSHALL")
			setRecord(t, srv, id, "v1")
			attempts = 0
			start := time.Now()
			err := tc.call()
			took := time.Since(start)
			if !errors.Is(err, redisstore.ErrContention) || errors.Is(err, redisstore.ErrUnavailable) {
				t.Fatalf("%s under constant contention = %v, want ErrContention and not ErrUnavailable", tc.name, err)
			}
			var c interface{ Contention() bool }
			if !errors.As(err, &c) || !c.Contention() {
				t.Errorf("%s error %v has no Contention() true", tc.name, err)
			}
			if msg := err.Error(); strings.Contains(msg, id) || strings.Contains(msg, "session:") {
				t.Errorf("%s error %q names the id or key", tc.name, msg)
			}
			if attempts < 2 {
				t.Errorf("%s made %d attempts, want it to try again", tc.name, attempts)
			}
			if took > timeout+time.Second {
				t.Errorf("%s gave up after %v, want about its Timeout %v", tc.name, took, timeout)
			}
			want := map[string]string{id: fmt.Sprint("writer-", attempts)}
			if got := records(t, srv); !maps.Equal(got, want) {
				t.Errorf("records after %s gave up = %v, want %v (the writer's only)", tc.name, got, want)
			}
			if n := dbSize(t, srv); n != 1 {
				t.Errorf("DBSIZE after %s gave up = %d, want 1", tc.name, n)
			}
		})
	}
}

// TestUserSessionsDuringRenewals moves one session from id to id back to
// back (MoveSession is atomic: it always exists under exactly one id in
// the index) while UserSessions runs 2,000 times: it must list the session
// every time, or a logout following a renewal would take it for ended. A
// storm like this one may wear a call out (ErrContention, which the
// documentation allows); it may never make the session look ended.
func TestUserSessionsDuringRenewals(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv, redisstore.Config{})
	ctx := context.Background()
	deadline := time.Now().Add(time.Hour)
	if _, err := s.AddUserSession(ctx, redisstore.UserSession{UserID: "alice", ID: "s0", Record: []byte("r"), TTL: time.Hour, Deadline: deadline}); err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	done := make(chan int)
	go func() {
		n := 0
		for !stop.Load() && n < 20000 {
			moved, err := s.MoveSession(ctx, redisstore.Move{UserID: "alice", From: fmt.Sprint("s", n), To: fmt.Sprint("s", n+1), TTL: time.Hour, Deadline: deadline,
				Merge: func(b []byte) ([]byte, error) { return b, nil }})
			if err != nil || !moved {
				t.Errorf("move %d: %v, %v", n, moved, err)
				break
			}
			n++
		}
		done <- n
	}()
	empty, contended, calls := 0, 0, 0
	var failed error
	for range 2000 {
		ids, _, err := s.UserSessions(ctx, "alice")
		calls++
		if errors.Is(err, redisstore.ErrContention) {
			contended++
			continue
		}
		if err != nil {
			failed = err
			break
		}
		if len(ids) == 0 {
			empty++
		}
	}
	stop.Store(true)
	moves := <-done
	if failed != nil {
		t.Fatal(failed)
	}
	t.Logf("%d moves; UserSessions listed no session %d times of %d, wore out %d times", moves, empty, calls, contended)
	if empty > 0 {
		t.Errorf("UserSessions lost a live session %d times of %d", empty, calls)
	}
}

// TestRemoveUserSessionsOutOfMemory checks that log out everywhere works
// on a Redis out of memory (maxmemory with noeviction), which refuses
// every command queued in a transaction, deletions too, but deletes
// outside one: a user must be able to end their sessions when Redis is
// full, and ending them frees memory.
func TestRemoveUserSessionsOutOfMemory(t *testing.T) {
	srv, s := aliceABC(t)
	ctx := context.Background()
	fillUp(t, srv)
	if _, err := s.AddUserSession(ctx, alice("d", deadlines(3)[2])); !errors.Is(err, redisstore.ErrUnavailable) {
		t.Fatalf("a login out of memory = %v, want ErrUnavailable", err)
	}
	removed, err := s.RemoveUserSessions(ctx, "alice", "b")
	slices.Sort(removed)
	if err != nil || !slices.Equal(removed, []string{"a", "c"}) {
		t.Fatalf("RemoveUserSessions keeping b out of memory = %v, %v; want [a c], nil", removed, err)
	}
	removed, err = s.RemoveUserSessions(ctx, "alice", "")
	if err != nil || !slices.Equal(removed, []string{"b"}) {
		t.Fatalf("RemoveUserSessions out of memory = %v, %v; want [b], nil", removed, err)
	}
	if n, _ := srv.Do(t, "DBSIZE").(int64); n != 0 {
		t.Errorf("DBSIZE after log out everywhere = %d, want 0", n)
	}
}

// TestRemoveAnonymousOutOfMemory checks that the logout of an anonymous
// session works on a Redis out of memory, which refuses the mark the
// logout leaves (see AddUserSession): the mark is best effort, the
// deletion is the logout.
func TestRemoveAnonymousOutOfMemory(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv, redisstore.Config{})
	setRecord(t, srv, "anon", "cart")
	fillUp(t, srv)
	if removed, err := s.RemoveUserSession(context.Background(), "", "anon"); err != nil || !removed {
		t.Fatalf("RemoveUserSession of an anonymous session out of memory = %v, %v; want true, nil", removed, err)
	}
	if n, _ := redis.Int(srv.Do(t, "EXISTS", "session:anon"), nil); n != 0 {
		t.Error("the anonymous record survived its logout")
	}
}

// TestUserSessionsOutOfMemory checks that a user's sessions can be listed
// on a Redis out of memory also when one of them ended by its idle timeout
// (its record gone, its index entry left until its deadline): the second
// read, index and records together, is a transaction, which Redis then
// refuses whole, reads too, so the reads then go as a plain pipeline.
// session.List, Revoke and RevokeOthers read it first, so a refused read
// would keep a user from signing a device out while Redis is full.
func TestUserSessionsOutOfMemory(t *testing.T) {
	srv, s := aliceABC(t)
	ctx := context.Background()
	srv.Do(t, "DEL", "session:c") // what its idle timeout does
	fillUp(t, srv)
	ids, records, err := s.UserSessions(ctx, "alice")
	if err != nil || !slices.Equal(ids, []string{"a", "b"}) || len(records) != 2 || string(records[1]) != "rec-b" {
		t.Fatalf("UserSessions out of memory, one record gone = %v, %q, %v; want [a b] and their records", ids, records, err)
	}
	if members, _ := redis.Strings(srv.Do(t, "ZRANGE", "user:alice:sessions", 0, -1), nil); !slices.Equal(members, []string{"a", "b"}) {
		t.Errorf("index after UserSessions = %v, want the gone member pruned: [a b]", members)
	}
}

// TestUserSessionsNoReplicas checks that a user's sessions can be listed
// on a master short of replicas (min-replicas-to-write: it answers
// NOREPLICAS to every write, reads go on), also when the listing would
// prune the index on the way: the prunes are writes, and the listing does
// without them, as a read of a session does.
func TestUserSessionsNoReplicas(t *testing.T) {
	srv, s := aliceABC(t)
	ctx := context.Background()
	srv.Do(t, "ZADD", "user:alice:sessions", time.Now().Add(-time.Hour).UnixMilli(), "expired")
	srv.Do(t, "DEL", "session:c") // what its idle timeout does
	srv.Do(t, "CONFIG", "SET", "min-replicas-to-write", "1")
	t.Cleanup(func() { srv.Do(t, "CONFIG", "SET", "min-replicas-to-write", "0") })
	c, err := redis.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Do("ZREM", "user:alice:sessions", "expired"); err == nil || !strings.HasPrefix(err.Error(), "NOREPLICAS") {
		t.Fatalf("a write with min-replicas-to-write 1 and no replica = %v, want NOREPLICAS", err)
	}
	ids, records, err := s.UserSessions(ctx, "alice")
	if err != nil || !slices.Equal(ids, []string{"a", "b"}) || len(records) != 2 || string(records[1]) != "rec-b" {
		t.Fatalf("UserSessions short of replicas = %v, %q, %v; want [a b] and their records", ids, records, err)
	}
}

// TestAddUserSessionReplacingOutOfMemory checks that a login replacing
// the user's session (a re-login on the same browser) changes nothing on a
// Redis out of memory, which refuses new records but runs deletions: the
// replaced session stays, in the index, with a limit or without, so that
// the user is still signed in when the login fails.
func TestAddUserSessionReplacingOutOfMemory(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv, redisstore.Config{})
	ctx := context.Background()
	d := deadlines(2)
	addAll(t, s, alice("old", d[0]))
	fillUp(t, srv)
	for _, limit := range []int{0, 3} {
		a := alice("new", d[1])
		a.Replaces, a.Limit = "old", limit
		if ended, err := s.AddUserSession(ctx, a); !errors.Is(err, redisstore.ErrUnavailable) || len(ended) != 0 {
			t.Errorf("limit %d: re-login out of memory = %q, %v; want nothing ended and ErrUnavailable", limit, ended, err)
		}
		if got := records(t, srv); !maps.Equal(got, map[string]string{"old": "rec-old"}) {
			t.Errorf("limit %d: records after the refused re-login = %v, want the old one alone", limit, got)
		}
		if got := index(t, srv, "alice"); !maps.Equal(got, map[string]int64{"old": d[0].UnixMilli()}) {
			t.Errorf("limit %d: index after the refused re-login = %v, want the old session alone", limit, got)
		}
	}
}

// fillUp makes srv a Redis out of memory, as maxmemory with noeviction
// does (an empty server already uses more than its 1 byte): it refuses
// every write that adds memory, and every transaction, until the test
// ends.
func fillUp(t *testing.T, srv *redistest.Server) {
	t.Helper()
	srv.Do(t, "CONFIG", "SET", "maxmemory-policy", "noeviction")
	srv.Do(t, "CONFIG", "SET", "maxmemory", "1")
	t.Cleanup(func() { srv.Do(t, "CONFIG", "SET", "maxmemory", "0") })
}

// aliceABC returns a Store on a redis-server of its own that holds alice's
// sessions a, b and c, with deadlines in that order, and the server.
func aliceABC(t *testing.T) (*redistest.Server, *redisstore.Store) {
	t.Helper()
	srv := redistest.Start(t)
	s := open(t, srv, redisstore.Config{})
	d := deadlines(3)
	addAll(t, s, alice("a", d[0]), alice("b", d[1]), alice("c", d[2]))
	return srv, s
}

// TestLoginOverForeignIndexKey stores a session of a user whose index key
// another program wrote as a string: the login fails with the WRONGTYPE
// reply, and leaves no record behind, in a plain pipeline and in a
// transaction (a re-login) alike: a record's SET that ran beside the
// failed ZADD would stay for its time to live, a session in no index,
// whose token nobody has.
func TestLoginOverForeignIndexKey(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv, redisstore.Config{})
	ctx := context.Background()
	d := deadlines(1)
	srv.Do(t, "SET", "user:alice:sessions", "another program's value")
	setRecord(t, srv, "old", "rec-old")
	for _, tc := range []struct {
		name     string
		replaces string
	}{{"login", ""}, {"re-login", "old"}} {
		a := alice("new-"+tc.name, d[0])
		a.Replaces = tc.replaces
		if _, err := s.AddUserSession(ctx, a); !errors.Is(err, redisstore.ErrRefused) || !strings.Contains(err.Error(), "WRONGTYPE") {
			t.Errorf("%s: AddUserSession over a string index = %v, want ErrRefused with WRONGTYPE", tc.name, err)
		}
		if n, _ := redis.Int(srv.Do(t, "EXISTS", "session:"+a.ID), nil); n != 0 {
			t.Errorf("%s: the failed login left its record", tc.name)
		}
	}
}
