package session

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/gorilla/securecookie"

	"github.com/sessionkit/sessionkit/internal/redistest"
)

// checkDeadline checks that the deadline of a new session, as Info, the
// token and the record carry it, is a lifetime after its creation, rounded
// up to the millisecond at most.
func checkDeadline(t *testing.T, m *Manager, info Info, cookie string, record []byte) {
	t.Helper()
	lifetime := m.cfg.Lifetime
	if d := info.ExpiresAt.Sub(info.CreatedAt); d < lifetime || d >= lifetime+time.Millisecond {
		t.Errorf("Info.ExpiresAt - Info.CreatedAt = %v, want [%v, %v)", d, lifetime, lifetime+time.Millisecond)
	}
	if _, signed, err := m.signer.verify(cookie); err != nil || !signed.Equal(info.ExpiresAt) {
		t.Errorf("token deadline = %v, %v; want Info.ExpiresAt %v", signed, err, info.ExpiresAt)
	}
	var rec struct {
		C int64 `json:"c"`
		E int64 `json:"e"`
	}
	if err := json.Unmarshal(record, &rec); err != nil {
		t.Fatalf("record %q: %v", record, err)
	}
	if rec.E != info.ExpiresAt.UnixMilli() || rec.C != info.CreatedAt.UnixMilli() {
		t.Errorf("record c, e = %d, %d; want %d, %d", rec.C, rec.E, info.CreatedAt.UnixMilli(), info.ExpiresAt.UnixMilli())
	}
}

// TestShortLifetime checks that a session with a lifetime under a second
// lives its whole lifetime, whatever the fraction of a second it starts at,
// and not a millisecond longer than the rounding of its deadline.
func TestShortLifetime(t *testing.T) {
	const lifetime = 500 * time.Millisecond
	m, r, clk := newTestManager(t, Config{Lifetime: lifetime})
	// Ahead of the real clock, so that the user index, which expires by
	// the session deadline, lives as long as its records.
	base := time.Now().Truncate(time.Second).Add(2 * time.Second)
	for i := range 20 {
		// Creation times spread over one second, at odd microseconds.
		created := base.Add(time.Duration(i)*53*time.Millisecond + time.Duration(i)*37*time.Microsecond)
		clk.t = created
		var info Info
		cookie := serve(t, m, "", func(ctx context.Context) {
			var err error
			if info, err = Create(ctx, "alice"); err != nil {
				t.Fatalf("Create = %v", err)
			}
		})
		// A record keeps whole milliseconds: the creation time is the
		// clock's, rounded up.
		if want := wholeMilli(created); !info.CreatedAt.Equal(want) || info.CreatedAt.Before(created) {
			t.Errorf("login %d: Info.CreatedAt = %v, want the clock's %v rounded up to %v", i, info.CreatedAt, created, want)
		}
		rec, _ := r.Do(t, "GET", "session:"+info.ID).([]byte)
		checkDeadline(t, m, info, cookie, rec)

		for _, after := range []time.Duration{100 * time.Millisecond, lifetime - time.Millisecond} {
			clk.t = created.Add(after)
			if u := userOf(t, m, cookie); u != "alice" {
				t.Errorf("login %d at %v, %v later: UserID = %q, want alice", i, created.Format(".000000"), after, u)
			}
		}
		clk.t = info.ExpiresAt
		r.ResetStats(t)
		if u := userOf(t, m, cookie); u != "" {
			t.Errorf("login %d at its deadline: UserID = %q, want anonymous", i, u)
		}
		if n := r.TotalCalls(t); n != 0 {
			t.Errorf("login %d at its deadline cost %d Redis commands, want 0", i, n)
		}
	}
}

// TestShortLifetimeRealClock is TestShortLifetime on the real clock. The
// logins happen early in a second (the request waits for one, under a
// second), where a deadline rounded down to the whole second would lie
// before the login itself.
func TestShortLifetimeRealClock(t *testing.T) {
	const lifetime = 500 * time.Millisecond
	m, r, _ := newTestManager(t, Config{Lifetime: lifetime})
	m.now = time.Now
	if f := time.Since(time.Now().Truncate(time.Second)); f < 100*time.Millisecond || f > 300*time.Millisecond {
		time.Sleep(time.Second + 100*time.Millisecond - f)
	}
	var cookies []string
	var created []time.Time
	for i := range 10 {
		var info Info
		cookie := serve(t, m, "", func(ctx context.Context) {
			var err error
			if info, err = Create(ctx, "alice"); err != nil {
				t.Fatalf("Create = %v", err)
			}
		})
		rec, _ := r.Do(t, "GET", "session:"+info.ID).([]byte)
		checkDeadline(t, m, info, cookie, rec)
		if u := userOf(t, m, cookie); u != "alice" && time.Since(info.CreatedAt) < lifetime {
			t.Errorf("login %d at %s, %v later: UserID = %q, want alice",
				i, info.CreatedAt.Format(".000"), time.Since(info.CreatedAt), u)
		}
		cookies, created = append(cookies, cookie), append(created, info.CreatedAt)
	}
	for i, cookie := range cookies {
		if u := userOf(t, m, cookie); u != "alice" && time.Since(created[i]) < lifetime {
			t.Errorf("login %d, checked again %v later: UserID = %q, want alice", i, time.Since(created[i]), u)
		}
	}
}

// signPayload signs payload as the cookie value, the way every version signs
// it, whatever the payload's form.
func signPayload(t *testing.T, m *Manager, payload string) string {
	t.Helper()
	v, err := securecookie.EncodeMulti(macName, []byte(payload), codecs(m.cfg.Keys, 0)...)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestLegacyToken checks that a token signed by an earlier version,
// "<token>.<deadline in unix seconds>", still verifies, so that an upgrade
// logs nobody out.
func TestLegacyToken(t *testing.T) {
	m, _, _ := newTestManager(t, Config{})
	var token string
	var info Info
	serve(t, m, "", func(ctx context.Context) {
		var err error
		if info, err = Create(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		token = stateFrom(ctx).stored
	})
	sec := info.ExpiresAt.Unix() // whole seconds, as the earlier version signed
	legacy := signPayload(t, m, token+"."+strconv.FormatInt(sec, 10))
	if tok, deadline, err := m.signer.verify(legacy); err != nil || tok != token || !deadline.Equal(time.Unix(sec, 0)) {
		t.Errorf("verify(legacy token) = %.8q, %v, %v; want the token, %v, nil", tok, deadline, err, time.Unix(sec, 0))
	}
	serve(t, m, legacy, func(ctx context.Context) {
		if got, ok := FromContext(ctx); !ok || got.ID != info.ID || got.UserID != "alice" {
			t.Errorf("session of the legacy token = %+v, %v; want alice's %.8s", got, ok, info.ID)
		}
	})
}

// TestSignedDeadline checks the deadlines a signed payload may carry, in
// milliseconds after ":" or in seconds after ".": positive and no later
// than the end of year 9999.
func TestSignedDeadline(t *testing.T) {
	m, _, _ := newTestManager(t, Config{})
	tok := strings.Repeat("a", tokenLen)
	end := time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) // first instant past year 9999
	ms := func(v int64) string { return strconv.FormatInt(v, 10) }
	valid := []struct {
		name    string
		payload string
		want    time.Time
	}{
		{"milliseconds", tok + ":1700000000123", time.UnixMilli(1700000000123)},
		{"seconds", tok + ".1700000000", time.Unix(1700000000, 0)},
		{"first millisecond", tok + ":1", time.UnixMilli(1)},
		{"last millisecond of 9999", tok + ":" + ms(end.UnixMilli()-1), end.Add(-time.Millisecond)},
		{"last second of 9999", tok + "." + ms(end.Unix()-1), end.Add(-time.Second)},
	}
	for _, tc := range valid {
		t.Run(tc.name, func(t *testing.T) {
			got, deadline, err := m.signer.verify(signPayload(t, m, tc.payload))
			if err != nil || got != tok || !deadline.Equal(tc.want) {
				t.Errorf("verify(signed %q) = %q, %v, %v; want %q, %v, nil", tc.payload, got, deadline, err, tok, tc.want)
			}
		})
	}
	refused := []struct{ name, payload string }{
		{"both separators, colon first", tok + ":1700000000000.5"},
		{"both separators, dot first", tok + ".1700000000:5"},
		{"neither separator", tok + "1700000000"},
		{"no deadline", tok + ":"},
		{"zero milliseconds", tok + ":0"},
		{"zero seconds", tok + ".0"},
		{"negative milliseconds", tok + ":-1"},
		{"negative seconds", tok + ".-1"},
		{"milliseconds past 9999", tok + ":" + ms(end.UnixMilli())},
		{"seconds past 9999", tok + "." + ms(end.Unix())},
		{"seconds overflowing milliseconds", tok + "." + ms(1<<62)},
		{"largest int64", tok + ":" + ms(1<<63-1)},
		{"bad token", strings.Repeat("*", tokenLen) + ":1700000000000"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			if got, deadline, err := m.signer.verify(signPayload(t, m, tc.payload)); err == nil {
				t.Errorf("verify(signed %q) = %q, %v, nil; want an error", tc.payload, got, deadline)
			}
		})
	}
}

// TestEarlierSession checks a session an earlier version made: a token of
// tokenLen characters, whose id is the whole SHA-256 of the token (43
// characters), and a record of version 1. It is read as it was; a change
// writes the record back as version 2 under the same key; and a login from
// it replaces it with a session of this version's shape.
func TestEarlierSession(t *testing.T) {
	m, r, clk := newTestManager(t, Config{})
	token := strings.Repeat("E", tokenLen)
	sum := sha256.Sum256([]byte(token))
	id := base64.RawURLEncoding.EncodeToString(sum[:])
	if got := idOf(token); got != id {
		t.Fatalf("idOf(earlier token) = %q, want the whole SHA-256, %q", got, id)
	}
	deadline := clk.t.Add(time.Hour).Truncate(time.Millisecond)
	v1 := fmt.Sprintf(`{"v":1,"user_id":"alice","created_at":%q,"expires_at":%q,"last_seen":%q,"ip":"10.0.0.1","user_agent":"curl/8.5.0","values":{"n":{"int":3}}}`,
		clk.t.Format(time.RFC3339Nano), deadline.Format(time.RFC3339Nano), clk.t.Format(time.RFC3339Nano))
	r.Do(t, "SET", "session:"+id, v1, "PX", 3_600_000)
	r.Do(t, "ZADD", "user:alice:sessions", deadline.UnixMilli(), id)
	cookie := signPayload(t, m, token+":"+strconv.FormatInt(deadline.UnixMilli(), 10))

	serve(t, m, cookie, func(ctx context.Context) {
		info, ok := FromContext(ctx)
		if n, _ := Get[int](ctx, "n"); !ok || info.ID != id || info.UserID != "alice" || info.UserAgent != "curl/8.5.0" || info.Device != "curl 8" || n != 3 {
			t.Fatalf("earlier session = %+v, %v, n %d; want alice's %.8s, curl/8.5.0, curl 8, n 3", info, ok, n, id)
		}
		if err := Put(ctx, "n", 4); err != nil {
			t.Fatal(err)
		}
	})
	b, _ := r.Do(t, "GET", "session:"+id).([]byte)
	if !strings.HasPrefix(string(b), `{"v":2,"user_id":"alice",`) || !strings.Contains(string(b), `"d":"curl 8"`) || !strings.Contains(string(b), `"n":{"int":4}`) {
		t.Errorf("record after a change = %s, want version 2 with the device and n 4", b)
	}
	serve(t, m, cookie, func(ctx context.Context) {
		if n, _ := Get[int](ctx, "n"); n != 4 {
			t.Errorf("n after the upgrade = %d, want 4", n)
		}
		info, err := Create(ctx, "alice")
		if err != nil || len(info.ID) != 22 {
			t.Errorf("login from the earlier session = %+v, %v; want a 22-character id", info, err)
		}
	})
	if n, _ := r.Do(t, "EXISTS", "session:"+id).(int64); n != 0 {
		t.Error("the earlier session's record survived the login that replaced it")
	}
}

// TestIndexOutlivesSkew runs the app 3 s behind Redis's clock: the record
// lives by the app's clock (its time to live), the index expires by
// Redis's. Past the index's deadline by Redis's clock, while the app still
// accepts the session, the index must still list it, so that RevokeAll
// ends it (redisstore keeps indexes a minute past their deadline).
func TestIndexOutlivesSkew(t *testing.T) {
	m, _, clk := newTestManager(t, Config{Lifetime: 5 * time.Second, IdleTimeout: -1})
	const skew = 3 * time.Second
	clk.t = time.Now().Add(-skew)
	cookie, _ := login(t, m, "alice")
	time.Sleep(2200 * time.Millisecond) // past the deadline by Redis's clock, not by the app's
	clk.t = time.Now().Add(-skew)
	if list, err := m.List(context.Background(), "alice"); err != nil || len(list) != 1 {
		t.Errorf("List(alice) = %d sessions, %v; want the one the app still accepts", len(list), err)
	}
	if n, err := m.RevokeAll(context.Background(), "alice"); n != 1 || err != nil {
		t.Errorf("RevokeAll(alice) = %d, %v; want 1, nil", n, err)
	}
	if u := userOf(t, m, cookie); u != "" {
		t.Errorf("after RevokeAll, the session is still accepted: UserID = %q", u)
	}
}

// TestLastSeenNeverBeforeCreated writes a session in the millisecond of its
// login, and from an instance whose clock is 2 s behind: its last-seen time
// never comes before its creation, nor goes backwards.
func TestLastSeenNeverBeforeCreated(t *testing.T) {
	m, _, clk := newTestManager(t, Config{})
	created := time.Now().Truncate(time.Millisecond).Add(300 * time.Microsecond)
	clk.t = created
	cookie, _ := login(t, m, "alice")
	put := func(at time.Time) Info {
		t.Helper()
		clk.t = at
		serve(t, m, cookie, func(ctx context.Context) {
			if err := Put(ctx, "k", at.String()); err != nil {
				t.Fatal(err)
			}
		})
		list, err := m.List(context.Background(), "alice")
		if err != nil || len(list) != 1 {
			t.Fatalf("List = %v, %v", list, err)
		}
		return list[0]
	}
	if in := put(created.Add(400 * time.Microsecond)); in.LastSeen.Before(in.CreatedAt) {
		t.Errorf("a write in the login's millisecond: LastSeen %v before CreatedAt %v", in.LastSeen, in.CreatedAt)
	}
	later := put(created.Add(5 * time.Second))
	if in := put(created.Add(3 * time.Second)); in.LastSeen.Before(later.LastSeen) {
		t.Errorf("a write from a clock 2 s behind: LastSeen went back from %v to %v", later.LastSeen, in.LastSeen)
	}
}

// TestTTLAfterWaits checks that a write made after round trips that waited
// (here on a Redis paused for 700 ms) gives the record the time to live
// left from when it is written, not from before the wait, so that it does
// not outlive the session's absolute deadline: a change that follows a
// renewal to the new id, and a login that first ends the session the
// request came with.
func TestTTLAfterWaits(t *testing.T) {
	const pause = 700 * time.Millisecond
	// past reports how long the record under id outlives deadline.
	past := func(t *testing.T, r *redistest.Server, id string, deadline time.Time) time.Duration {
		t.Helper()
		ms, err := redis.Int64(r.Do(t, "PTTL", "session:"+id), nil)
		if err != nil || ms <= 0 {
			t.Fatalf("PTTL of the record = %d, %v", ms, err)
		}
		return time.Duration(ms)*time.Millisecond - time.Until(deadline)
	}
	// paused runs f while r is paused for pause, and returns once f has.
	paused := func(t *testing.T, r *redistest.Server, f func()) {
		t.Helper()
		r.Pause(t)
		done := make(chan struct{})
		go func() { defer close(done); f() }()
		time.Sleep(pause)
		r.Resume(t)
		<-done
	}
	t.Run("change following a renewal", func(t *testing.T) {
		m, r, _ := newTestManager(t, Config{Lifetime: 3 * time.Second, IdleTimeout: -1})
		m.now = time.Now
		a1 := serve(t, m, "", func(ctx context.Context) {
			if err := Put(ctx, "k", "v"); err != nil {
				t.Fatal(err)
			}
		})
		deadline := currentInfo(t, m, a1).ExpiresAt
		ctx := load(m, a1)
		id2 := currentInfo(t, m, renew(t, m, a1)).ID
		time.Sleep(time.Until(deadline.Add(-time.Second)))
		if err := Put(ctx, "cart", "book"); err != nil {
			t.Fatal(err)
		}
		var err error
		paused(t, r, func() { err = m.Commit(ctx, http.Header{}) })
		if err != nil {
			t.Fatalf("Commit = %v", err)
		}
		if over := past(t, r, id2, deadline); over > 50*time.Millisecond {
			t.Errorf("the renewed record outlives the session's deadline by %v", over)
		}
	})
	t.Run("login ending the session before", func(t *testing.T) {
		m, r, _ := newTestManager(t, Config{Lifetime: 3 * time.Second, IdleTimeout: -1})
		m.now = time.Now
		c, _ := login(t, m, "alice")
		ctx := load(m, c)
		var info Info
		var err error
		paused(t, r, func() { info, err = Create(ctx, "bob") })
		if err != nil {
			t.Fatalf("Create = %v", err)
		}
		if over := past(t, r, info.ID, info.ExpiresAt); over > 50*time.Millisecond {
			t.Errorf("the new login's record outlives its deadline by %v", over)
		}
	})
	t.Run("login ending the session before, longer than a lifetime", func(t *testing.T) {
		m, r, _ := newTestManager(t, Config{Lifetime: 300 * time.Millisecond, IdleTimeout: -1})
		m.now = time.Now
		c, _ := login(t, m, "alice")
		ctx := load(m, c)
		var info Info
		var err error
		paused(t, r, func() { info, err = Create(ctx, "bob") })
		if err != nil || !info.ExpiresAt.After(time.Now()) {
			t.Errorf("Create after a wait longer than the lifetime = %v, deadline %v; want a live session", err, info.ExpiresAt)
		}
	})
}

// TestLoginAfterFailedLoadWait checks that a login in a request that could
// not load its session, which reads that session's record first, begins
// the new session after that read: one that begins before it and waits
// longer than a (short) lifetime would give a session already past its
// deadline, and a misleading store error.
func TestLoginAfterFailedLoadWait(t *testing.T) {
	m, r, _ := newTestManager(t, Config{Lifetime: 300 * time.Millisecond, IdleTimeout: -1})
	base := time.Now()
	var off atomic.Int64
	m.now = func() time.Time { return base.Add(time.Duration(off.Load())) }
	anon := serve(t, m, "", func(ctx context.Context) {
		if err := Put(ctx, "k", "v"); err != nil {
			t.Fatal(err)
		}
	})
	r.Pause(t)
	ctx := load(m, anon) // fails after the store's 2 s timeout: loadFailed, presented set
	done := make(chan error)
	var info Info
	go func() {
		var err error
		info, err = Create(ctx, "bob")
		done <- err
	}()
	time.Sleep(200 * time.Millisecond)
	off.Store(int64(700 * time.Millisecond)) // recordMeta waits 700 ms on the store
	r.Resume(t)
	err := <-done
	if err != nil || !info.ExpiresAt.After(m.now()) {
		t.Errorf("Create after a recordMeta wait longer than the lifetime = %v, deadline %v (now %v); want a live session", err, info.ExpiresAt, m.now())
	}
}

// shrunkLifetime returns two Managers on one store and one clock, as
// before and after a deployment shrinks Lifetime from an hour to 30
// minutes: long, and short, configured with cfg besides (its events,
// say). Both take cfg's IdleTimeout.
func shrunkLifetime(t *testing.T, cfg Config) (long, short *Manager, clk *clock) {
	t.Helper()
	long, _, clk = newTestManager(t, Config{Lifetime: time.Hour, IdleTimeout: cfg.IdleTimeout})
	cfg.Keys, cfg.InsecureCookie, cfg.Lifetime = long.cfg.Keys, true, 30*time.Minute
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	short, err := New(long.store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	short.now = clk.now
	return long, short, clk
}

// TestShorterLifetime checks that an instance never accepts a session
// created longer than its own Lifetime ago, as Config.Lifetime says, even
// one created under a longer Lifetime whose cookie a Renew signed since
// (the MAC's age fence ends those whose cookie is that old, and the real
// clock is too young here for it to): it neither reads nor lists it, and
// a Renew of a younger one signs the earlier end.
func TestShorterLifetime(t *testing.T) {
	long, short, clk := shrunkLifetime(t, Config{IdleTimeout: -1})
	start := clk.t
	old, _ := login(t, long, "alice")
	clk.t = start.Add(20 * time.Minute)
	renewed := serve(t, long, old, func(ctx context.Context) {
		if err := Renew(ctx); err != nil {
			t.Fatalf("Renew: %v", err)
		}
	})
	younger, _ := login(t, long, "alice")
	clk.t = start.Add(40 * time.Minute)

	if u := userOf(t, long, renewed); u != "alice" {
		t.Errorf("the longer Lifetime's instance 40m after the login: UserID = %q, want alice", u)
	}
	if u := userOf(t, short, renewed); u != "" {
		t.Errorf("a 30m Lifetime's instance 40m after the login, renewed at 20m: UserID = %q, want none", u)
	}
	list, err := short.List(context.Background(), "alice")
	if err != nil || len(list) != 1 || !list[0].ExpiresAt.Equal(wholeMilli(start.Add(50*time.Minute))) {
		t.Errorf("List by the 30m instance = %+v, %v; want the younger session alone, to end 30m after its creation", list, err)
	}
	if list, err := long.List(context.Background(), "alice"); err != nil || len(list) != 2 {
		t.Errorf("List by the 1h instance = %d sessions, %v; want both", len(list), err)
	}

	var info Info
	again := serve(t, short, younger, func(ctx context.Context) {
		if err := Renew(ctx); err != nil {
			t.Fatalf("Renew: %v", err)
		}
		info, _ = FromContext(ctx)
	})
	if want := wholeMilli(start.Add(50 * time.Minute)); !info.ExpiresAt.Equal(want) {
		t.Errorf("ExpiresAt after a Renew by the 30m instance = %v, want %v", info.ExpiresAt, want)
	}
	clk.t = start.Add(51 * time.Minute)
	if u := userOf(t, long, again); u != "" {
		t.Errorf("the 1h instance, past the end the 30m instance's Renew signed: UserID = %q, want none", u)
	}
}
