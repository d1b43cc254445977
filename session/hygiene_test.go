package session

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/internal/syncbuf"
)

// logBuffer keeps the lines a Manager logs.
type logBuffer struct{ syncbuf.Buffer }

// take returns the lines logged so far and forgets them.
func (l *logBuffer) take() []string {
	s := strings.TrimSpace(l.Take())
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// takeCount returns how many of the lines logged so far contain text, and
// forgets them all.
func (l *logBuffer) takeCount(text string) int {
	n := 0
	for _, line := range l.take() {
		if strings.Contains(line, text) {
			n++
		}
	}
	return n
}

// loud returns the lines of lines at level INFO or above.
func loud(lines []string) []string {
	var out []string
	for _, l := range lines {
		if !strings.Contains(l, "level=DEBUG") {
			out = append(out, l)
		}
	}
	return out
}

// newLoggedManager is newTestManager with the Manager's log, at Debug
// level, and its events kept for the test.
func newLoggedManager(t *testing.T, cfg Config) (*Manager, *redistest.Server, *clock, *logBuffer, *eventLog) {
	t.Helper()
	events := &eventLog{}
	cfg.OnEvent = events.add
	m, r, clk := newTestManager(t, cfg)
	buf := &logBuffer{}
	m.log = slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	m.cfg.Logger = m.log
	return m, r, clk, buf, events
}

// TestDeadTokensAreQuiet checks that tokens anyone can replay at will (of
// a session that ended, or forged) are logged at Debug level only and are
// no event: what ended a session was reported when it happened.
func TestDeadTokensAreQuiet(t *testing.T) {
	tests := []struct {
		name string
		// kill ends alice's session of cookie and returns the cookie to
		// replay.
		kill func(t *testing.T, m *Manager, r *redistest.Server, cookie, id string) string
		// free: the replay costs no Redis command.
		free bool
	}{
		{"destroyed", func(t *testing.T, m *Manager, r *redistest.Server, cookie, id string) string {
			serve(t, m, cookie, func(ctx context.Context) {
				if err := Destroy(ctx); err != nil {
					t.Fatal(err)
				}
			})
			return cookie
		}, false},
		{"revoked", func(t *testing.T, m *Manager, r *redistest.Server, cookie, id string) string {
			if err := m.Revoke(context.Background(), "alice", id); err != nil {
				t.Fatal(err)
			}
			return cookie
		}, false},
		{"revoked with the others", func(t *testing.T, m *Manager, r *redistest.Server, cookie, id string) string {
			if _, err := m.RevokeAll(context.Background(), "alice"); err != nil {
				t.Fatal(err)
			}
			return cookie
		}, false},
		{"renewed", func(t *testing.T, m *Manager, r *redistest.Server, cookie, id string) string {
			serve(t, m, cookie, func(ctx context.Context) {
				if err := Renew(ctx); err != nil {
					t.Fatal(err)
				}
			})
			return cookie
		}, false},
		{"idle", func(t *testing.T, m *Manager, r *redistest.Server, cookie, id string) string {
			r.Do(t, "DEL", "session:"+id) // as Redis does when the idle timeout passes
			return cookie
		}, false},
		{"forged", func(t *testing.T, m *Manager, r *redistest.Server, cookie, id string) string {
			other := newSigner([][]byte{testKey(9)}, nil, time.Hour)
			return other.sign(strings.Repeat("f", tokenLen), time.Now().Add(time.Hour))
		}, true},
		{"garbage", func(t *testing.T, m *Manager, r *redistest.Server, cookie, id string) string {
			return "session:*"
		}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, r, _, buf, events := newLoggedManager(t, Config{})
			var token string
			var info Info
			cookie := serve(t, m, "", func(ctx context.Context) {
				var err error
				if info, err = Create(ctx, "alice"); err != nil {
					t.Fatal(err)
				}
				token = stateFrom(ctx).stored
			})
			replay := tc.kill(t, m, r, cookie, info.ID)
			killLog := buf.take()
			events.take()
			r.ResetStats(t)
			loggedIn, cookies := 0, 0
			for range 50 {
				h, err := exchange(t, m, replay, func(ctx context.Context) {
					if _, ok := UserID(ctx); ok || LoadError(ctx) != nil {
						loggedIn++
					}
				})
				if err != nil {
					t.Fatalf("Commit of a replay = %v, want nil", err)
				}
				if _, ok := sessionCookie(m, h); ok {
					cookies++
				}
			}
			if loggedIn != 0 || cookies != 0 {
				t.Errorf("50 replays: %d logged in or failed to load, %d set the cookie; want 0, 0", loggedIn, cookies)
			}
			lines := buf.take()
			if l := loud(lines); len(l) != 0 {
				t.Errorf("50 replays logged %d lines at INFO or above, want 0; first: %s", len(l), l[0])
			}
			if e := events.take(); len(e) != 0 {
				t.Errorf("50 replays gave %d events, want 0; first: %+v", len(e), e[0])
			}
			if n := r.TotalCalls(t); tc.free && n != 0 {
				t.Errorf("50 replays cost %d Redis commands, want 0", n)
			}
			all := strings.Join(append(killLog, lines...), "\n")
			for what, secret := range map[string]string{"cookie": cookie, "token": token, "session id": info.ID} {
				if strings.Contains(all, secret) {
					t.Errorf("the log holds the %s", what)
				}
			}
		})
	}
}

// TestExpiredTokenEvent checks that a token past its absolute deadline
// gives EventExpired each time it comes, logged at Debug level only.
func TestExpiredTokenEvent(t *testing.T) {
	m, _, clk, buf, events := newLoggedManager(t, Config{Lifetime: time.Hour})
	cookie, id := login(t, m, "alice")
	clk.t = clk.t.Add(time.Hour + time.Second)
	buf.take()
	events.take()
	for range 3 {
		if u := userOf(t, m, cookie); u != "" {
			t.Errorf("UserID past the deadline = %q, want anonymous", u)
		}
	}
	got := events.take()
	if len(got) != 3 {
		t.Fatalf("events of 3 expired requests = %+v, want 3 EventExpired", got)
	}
	for _, e := range got {
		if e.Kind != EventExpired || e.SessionID != id || !e.Time.Equal(clk.t) {
			t.Errorf("event = %+v, want %s of %.8s at %v", e, EventExpired, id, clk.t)
		}
	}
	lines := buf.take()
	if l := loud(lines); len(l) != 0 {
		t.Errorf("expired requests logged %q at INFO or above, want Debug only", l)
	}
	n := 0
	for _, l := range lines {
		if strings.Contains(l, `msg="session: expired"`) {
			n++
		}
	}
	if n != 3 {
		t.Errorf("expired requests logged %d Debug lines %q, want 3; log:\n%s", n, "session: expired", strings.Join(lines, "\n"))
	}
}

// TestOutageLogRate checks that while the store is down a Manager warns
// once per outageLogInterval, counting the requests it kept quiet about,
// instead of once per request.
func TestOutageLogRate(t *testing.T) {
	m, r, clk, buf, events := newLoggedManager(t, Config{})
	cookie, _ := login(t, m, "alice")
	r.Stop(t)
	buf.take()
	events.take()
	start := clk.t
	request := func(i int) {
		t.Helper()
		h, err := exchange(t, m, cookie, func(ctx context.Context) {
			if err := LoadError(ctx); !errors.Is(err, ErrStoreUnavailable) {
				t.Fatalf("request %d with the store down: LoadError = %v, want ErrStoreUnavailable", i, err)
			}
		})
		if c, ok := sessionCookie(m, h); ok || err != nil {
			t.Fatalf("request %d with the store down: Set-Cookie %v, Commit %v; want none, nil", i, c, err)
		}
	}
	// 100 requests over 9.9 seconds.
	for i := range 100 {
		clk.t = start.Add(time.Duration(i) * 99 * time.Millisecond)
		request(i)
	}
	warnings := func(lines []string) []string {
		var w []string
		for _, l := range lines {
			if strings.Contains(l, "level=WARN") && strings.Contains(l, "store unavailable") {
				w = append(w, l)
			}
		}
		return w
	}
	lines := buf.take()
	if w := warnings(lines); len(w) != 1 || !strings.Contains(w[0], "suppressed=0") {
		t.Errorf("100 requests in 10s with the store down logged %d warnings %q, want 1 with suppressed=0", len(w), w)
	}
	if l := loud(lines); len(l) != 1 {
		t.Errorf("100 requests with the store down logged %d lines at INFO or above, want 1: %q", len(l), l)
	}
	clk.t = start.Add(11 * time.Second)
	request(100)
	if w := warnings(buf.take()); len(w) != 1 || !strings.Contains(w[0], "suppressed=99") {
		t.Errorf("the first request after 11s logged %q, want one warning with suppressed=99", w)
	}
	if e := events.take(); len(e) != 0 {
		t.Errorf("requests with the store down gave events %+v, want none", e)
	}
}

// TestCommitFailureLogged checks that changes a Redis refuses to save (out
// of memory) are logged, at Warn once per outageLogInterval with the count
// held back and Redis's own reply: the handler never sees that error, and
// the client gets a 503 in place of its answer. The first save that works
// after the interval ends the line.
func TestCommitFailureLogged(t *testing.T) {
	m, r, clk, buf, _ := newLoggedManager(t, Config{})
	cookie, _ := login(t, m, "alice")
	put := func(i int) error {
		t.Helper()
		_, err := exchange(t, m, cookie, func(ctx context.Context) {
			if err := Put(ctx, "cart", i); err != nil {
				t.Fatalf("Put = %v", err)
			}
		})
		return err
	}
	lines := func(level, text string) []string {
		var w []string
		for _, l := range buf.take() {
			if strings.Contains(l, "level="+level) && strings.Contains(l, text) {
				w = append(w, l)
			}
		}
		return w
	}
	buf.take()
	r.Do(t, "CONFIG", "SET", "maxmemory-policy", "noeviction")
	r.Do(t, "CONFIG", "SET", "maxmemory", "1")
	t.Cleanup(func() { r.Do(t, "CONFIG", "SET", "maxmemory", "0") })
	start := clk.t
	for i := range 5 {
		clk.t = start.Add(time.Duration(i) * time.Second)
		if err := put(i); !errors.Is(err, ErrStoreUnavailable) {
			t.Fatalf("commit %d on a Redis out of memory = %v, want ErrStoreUnavailable", i, err)
		}
	}
	if w := lines("WARN", "session: changes not saved"); len(w) != 1 || !strings.Contains(w[0], "OOM") || !strings.Contains(w[0], "suppressed=0") {
		t.Errorf("5 failed commits in 5s logged %q, want one warning with Redis's OOM and suppressed=0", w)
	}
	r.Do(t, "CONFIG", "SET", "maxmemory", "0")
	clk.t = start.Add(11 * time.Second)
	if err := put(5); err != nil {
		t.Fatalf("commit once Redis has room = %v", err)
	}
	if l := lines("INFO", "session: changes saved again"); len(l) != 1 || !strings.Contains(l[0], "suppressed=4") {
		t.Errorf("the first commit that worked 11s on logged %q, want one line with suppressed=4", l)
	}
	for _, l := range buf.take() {
		if strings.Contains(l, cookie) || strings.Contains(l, idOf(tokenOf(t, m, cookie))) {
			t.Errorf("a line names the token or the session id: %q", l)
		}
	}
}
