package session

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// countingMetrics records what a Manager reports to its Metrics.
type countingMetrics struct {
	mu     sync.Mutex
	counts map[string]int
}

func (c *countingMetrics) add(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counts == nil {
		c.counts = map[string]int{}
	}
	c.counts[name]++
}

func (c *countingMetrics) SessionEvent(kind EventKind)       { c.add("event:" + string(kind)) }
func (c *countingMetrics) TokenRejected(reason RejectReason) { c.add("rejected:" + string(reason)) }
func (c *countingMetrics) ServedAnonymous()                  { c.add("anonymous") }
func (c *countingMetrics) CommitFailed()                     { c.add("commit-failed") }

// take returns the counts so far and starts again.
func (c *countingMetrics) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	got := c.counts
	c.counts = nil
	if got == nil {
		got = map[string]int{}
	}
	return got
}

// TestMetrics checks that every counted thing reaches Config.Metrics
// exactly once, with its reason, and that refused tokens still cost no
// Redis command.
func TestMetrics(t *testing.T) {
	rec := &countingMetrics{}
	retired := testKey(8)
	m, r, clk := newTestManager(t, Config{Metrics: rec, RetiredKeys: [][]byte{retired}, Lifetime: time.Hour})
	cookie, _ := login(t, m, "alice")
	serve(t, m, cookie, func(ctx context.Context) {
		if err := Renew(ctx); err != nil {
			t.Fatal(err)
		}
	})
	if got, want := rec.take(), map[string]int{"event:created": 1, "event:renewed": 1}; !maps.Equal(got, want) {
		t.Errorf("login and renewal: %v, want %v", got, want)
	}

	signedBy := func(key []byte, deadline time.Time) string {
		return newSigner([][]byte{key}, nil, time.Hour).sign(strings.Repeat("t", tokenLen), deadline)
	}
	r.ResetStats(t)
	for _, tc := range []struct {
		name, token string
		want        RejectReason
	}{
		{"oversized", strings.Repeat("A", maxSignedLen+1), RejectOversized},
		{"malformed", "not a token", RejectMalformed},
		{"base64 without the parts", "YWJj", RejectMalformed},
		{"forged", signedBy(testKey(9), clk.t.Add(time.Hour)), RejectBadSignature},
		{"retired key", signedBy(retired, clk.t.Add(time.Hour)), RejectRetiredKey},
	} {
		serve(t, m, tc.token, func(ctx context.Context) {
			if _, ok := UserID(ctx); ok {
				t.Errorf("%s token: logged in", tc.name)
			}
		})
		if got, want := rec.take(), map[string]int{"rejected:" + string(tc.want): 1}; !maps.Equal(got, want) {
			t.Errorf("%s token: %v, want %v", tc.name, got, want)
		}
	}
	if n := r.TotalCalls(t); n != 0 {
		t.Errorf("refused tokens cost %d Redis commands, want 0", n)
	}

	// Past its deadline, and past the MAC's age limit: both are expiries,
	// never accepted.
	clk.t = clk.t.Add(time.Hour + time.Second)
	serve(t, m, cookie, func(context.Context) {})
	old := signedBy(testKey(7), time.Now().Add(-3*time.Hour))
	serve(t, m, old, func(ctx context.Context) {
		if _, ok := UserID(ctx); ok {
			t.Error("a token past the MAC's age limit was accepted")
		}
	})
	if got, want := rec.take(), map[string]int{"event:expired": 2}; !maps.Equal(got, want) {
		t.Errorf("expired tokens: %v, want %v", got, want)
	}
	clk.t = time.Now()

	// An outage: a read is served anonymous, a write fails its commit.
	cookie, _ = login(t, m, "bob")
	rec.take()
	r.Stop(t)
	serve(t, m, cookie, func(context.Context) {})
	if got, want := rec.take(), map[string]int{"anonymous": 1}; !maps.Equal(got, want) {
		t.Errorf("read during an outage: %v, want %v", got, want)
	}
	r.Restart(t) // empty: the test server keeps nothing
	cookie, _ = login(t, m, "bob")
	rec.take()
	req := httptest.NewRequest("GET", "/", nil)
	req.AddCookie(&http.Cookie{Name: m.cfg.CookieName, Value: cookie})
	ctx := m.Load(req)
	if err := Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	r.Stop(t)
	if err := m.Commit(ctx, http.Header{}); !errors.Is(err, ErrStoreUnavailable) {
		t.Errorf("Commit during an outage = %v, want ErrStoreUnavailable", err)
	}
	if got, want := rec.take(), map[string]int{"commit-failed": 1}; !maps.Equal(got, want) {
		t.Errorf("write during an outage: %v, want %v", got, want)
	}
}

// TestRetiredKeysConfig checks that a short retired key is refused.
func TestRetiredKeysConfig(t *testing.T) {
	_, err := Config{Keys: [][]byte{testKey(1)}, RetiredKeys: [][]byte{[]byte("short")}}.withDefaults()
	if err == nil || !strings.Contains(err.Error(), "Config.RetiredKeys[0]") {
		t.Errorf("short retired key: %v, want an error naming Config.RetiredKeys[0]", err)
	}
}

// TestClientGoneIsNoOutage sends a request whose client has gone (its
// context cancelled) with a valid token to a healthy store: the read
// fails, but that says nothing about Redis, so nothing is counted or
// logged as an outage, which any client could otherwise cause at will.
func TestClientGoneIsNoOutage(t *testing.T) {
	rec := &countingMetrics{}
	m, _, _ := newTestManager(t, Config{Metrics: rec})
	var logs strings.Builder
	m.log = slog.New(slog.NewTextHandler(&logs, nil))
	cookie, _ := login(t, m, "alice")
	rec.take()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := httptest.NewRequestWithContext(ctx, "GET", "/", nil)
	req.AddCookie(&http.Cookie{Name: m.cfg.CookieName, Value: cookie})
	loaded := m.Load(req)
	if _, ok := UserID(loaded); ok {
		t.Error("a request whose client had gone was served its session")
	}
	if got := rec.take(); len(got) != 0 {
		t.Errorf("a client gone before its session was read: metrics %v, want none", got)
	}
	if strings.Contains(logs.String(), "store unavailable") {
		t.Errorf("a client gone before its session was read logged an outage:\n%s", logs.String())
	}
	if u := userOf(t, m, cookie); u != "alice" {
		t.Errorf("the session after its client went away once: UserID = %q, want alice", u)
	}

	// A commit whose client has gone (a first Put on a public page, the
	// tab closed while it rendered) fails, but is no commit failure to
	// count.
	rec.take()
	ctx, cancel = context.WithCancel(context.Background())
	loaded = m.Load(httptest.NewRequestWithContext(ctx, "GET", "/", nil))
	if err := Put(loaded, "csrf", "x"); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := m.Commit(loaded, http.Header{}); err == nil {
		t.Log("the commit of a client gone succeeded") // a fast Redis may beat the cancellation
	}
	if got := rec.take(); len(got) != 0 {
		t.Errorf("a commit whose client had gone: metrics %v, want none", got)
	}
}

// TestRequestDeadlineOutage stalls Redis (SIGSTOP) under a request with a
// deadline of its own, shorter than the store's timeout (as under
// http.TimeoutHandler): the read fails at that deadline, and that is an
// outage like any other, logged and counted; only a client gone is
// excused (TestClientGoneIsNoOutage).
func TestRequestDeadlineOutage(t *testing.T) {
	rec := &countingMetrics{}
	m, r, _ := newTestManager(t, Config{Metrics: rec})
	var logs logBuffer
	m.log = slog.New(slog.NewTextHandler(&logs, nil))
	cookie, _ := login(t, m, "alice")
	rec.take()
	r.Pause(t)
	defer r.Resume(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	req := httptest.NewRequestWithContext(ctx, "GET", "/", nil)
	req.AddCookie(&http.Cookie{Name: m.cfg.CookieName, Value: cookie})
	loaded := m.Load(req)
	if !errors.Is(LoadError(loaded), ErrStoreUnavailable) {
		t.Errorf("LoadError = %v, want ErrStoreUnavailable", LoadError(loaded))
	}
	if got, want := rec.take(), map[string]int{"anonymous": 1}; !maps.Equal(got, want) {
		t.Errorf("a read cut by the request's deadline on a stalled Redis: metrics %v, want %v", got, want)
	}
	if lines := strings.Join(logs.take(), "\n"); !strings.Contains(lines, "store unavailable") {
		t.Errorf("a read cut by the request's deadline on a stalled Redis logged no outage:\n%s", lines)
	}
}
