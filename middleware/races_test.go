package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/sessionkit/sessionkit/session"
)

// TestLoginRacingLogoutEverywhere runs logins of one user concurrently with
// RevokeAll. Whatever the interleaving, no session escapes the index (a
// later "log out everywhere" could not end it), and a final RevokeAll leaves
// the user with no session at all.
func TestLoginRacingLogoutEverywhere(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	const rounds, logins = 20, 4
	for range rounds {
		var wg sync.WaitGroup
		for range logins {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := h.client().Post(h.srv.URL+"/login?user=alice", "", nil)
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("POST /login = %d", resp.StatusCode)
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := h.m.RevokeAll(context.Background(), "alice"); err != nil {
				t.Errorf("RevokeAll: %v", err)
			}
		}()
		wg.Wait()
		indexed := h.indexMembers("alice")
		for _, id := range h.sessionIDs() {
			if !slices.Contains(indexed, id) {
				t.Fatalf("session %s exists but is not in alice's index", id[:8])
			}
		}
	}
	if _, err := h.m.RevokeAll(context.Background(), "alice"); err != nil {
		t.Fatal(err)
	}
	if ids := h.sessionIDs(); len(ids) != 0 {
		t.Errorf("%d sessions survived log out everywhere", len(ids))
	}
}

// TestRevokeRacingWrite revokes a session while a request holds it loaded
// and then writes to it: the write must not bring it back.
func TestRevokeRacingWrite(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	for i := range 20 {
		c := h.client()
		id, _ := h.login(c, "alice")
		loaded, release := make(chan struct{}), make(chan struct{})
		h.hooked = func(w http.ResponseWriter, r *http.Request) {
			close(loaded)
			<-release
			session.Put(r.Context(), "k", i)
		}
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.do(c, "POST", "/hook", nil)
		}()
		<-loaded
		if err := h.m.Revoke(context.Background(), "alice", id); err != nil {
			t.Fatal(err)
		}
		close(release)
		wg.Wait()
		if h.exists(id) {
			t.Fatalf("round %d: a write in flight brought a revoked session back", i)
		}
		if got := h.do(c, "GET", "/me", nil).code; got != http.StatusUnauthorized {
			t.Fatalf("round %d: revoked session: GET /me = %d, want 401", i, got)
		}
	}
}

// sessionIDs returns the ids of every session record in Redis (not the
// pointers renewals leave behind).
func (h *harness) sessionIDs() []string {
	h.t.Helper()
	var ids []string
	for cursor := "0"; ; {
		reply, err := redis.Values(h.redis.Do(h.t, "SCAN", cursor, "MATCH", "session:*", "COUNT", 1000), nil)
		if err != nil {
			h.t.Fatal(err)
		}
		keys, _ := redis.Strings(reply[1], nil)
		for _, k := range keys {
			if !strings.HasSuffix(k, ":next") { // a renewal's pointer, no record
				ids = append(ids, strings.TrimPrefix(k, "session:"))
			}
		}
		if cursor, _ = redis.String(reply[0], nil); cursor == "0" {
			return ids
		}
	}
}

// TestReplacedSessionReportedOnce races a login on a signed-in browser (on
// one instance), which ends the session it came with, against a revocation
// of that session (on another), 200 rounds with jitter: whichever ends it
// reports it, so the session is reported exactly once, as destroyed by the
// login or revoked.
func TestReplacedSessionReportedOnce(t *testing.T) {
	var mu sync.Mutex
	ended := map[string][]session.EventKind{}
	onEvent := func(e session.Event) {
		if e.Kind == session.EventDestroyed || e.Kind == session.EventRevoked {
			mu.Lock()
			ended[e.SessionID] = append(ended[e.SessionID], e.Kind)
			mu.Unlock()
		}
	}
	h := newHarness(t, harnessOpts{onEvent: onEvent})
	h2 := newHarness(t, harnessOpts{redis: h.redis, onEvent: onEvent})
	const rounds = 200
	for i := range rounds {
		c := h.client()
		id, _ := h.login(c, "alice")
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(rand.IntN(500)) * time.Microsecond)
			if r := h.do(c, "POST", "/login?user=alice", nil); r.code != http.StatusOK {
				t.Errorf("login on the signed-in browser = %d %s", r.code, r.body)
			}
		}()
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(rand.IntN(500)) * time.Microsecond)
			if err := h2.m.Revoke(context.Background(), "alice", id); err != nil && !errors.Is(err, session.ErrNotFound) {
				t.Error(err)
			}
		}()
		wg.Wait()
		mu.Lock()
		kinds := ended[id]
		mu.Unlock()
		if len(kinds) != 1 {
			t.Fatalf("round %d: session ended by a login and a revocation at once was reported %v, want exactly once", i, kinds)
		}
	}
}

// TestHelpersFromGoroutines calls the helpers from several goroutines of
// one request at once, as a handler that fans its work out does: puts of
// their own keys beside a renewal. Every value is saved under the renewed
// token, and the old one is dead (make test runs it under -race, which
// fails it if the helpers do not lock the request's session).
func TestHelpersFromGoroutines(t *testing.T) {
	const puts = 16
	h := newHarness(t, harnessOpts{})
	c := h.client()
	oldID, _ := h.login(c, "alice")
	h.hooked = func(w http.ResponseWriter, r *http.Request) {
		var wg sync.WaitGroup
		for i := range puts {
			wg.Go(func() {
				if err := session.Put(r.Context(), "k"+strconv.Itoa(i), i); err != nil {
					t.Errorf("Put from goroutine %d: %v", i, err)
				}
			})
		}
		wg.Go(func() {
			if err := session.Renew(r.Context()); err != nil {
				t.Errorf("Renew beside the puts: %v", err)
			}
		})
		wg.Wait()
	}
	if resp := h.do(c, "POST", "/hook", nil); resp.code != http.StatusOK {
		t.Fatalf("POST /hook = %d %s", resp.code, resp.body)
	}
	h.hooked = func(w http.ResponseWriter, r *http.Request) {
		info, _ := session.FromContext(r.Context())
		n := 0
		for i := range puts {
			if v, ok := session.Get[int](r.Context(), "k"+strconv.Itoa(i)); ok && v == i {
				n++
			}
		}
		fmt.Fprintf(w, "%s %t %d", info.UserID, info.ID != oldID, n)
	}
	if resp := h.do(c, "GET", "/hook", nil); resp.body != fmt.Sprintf("alice true %d", puts) {
		t.Errorf("the next request reads %q, want \"alice true %d\" (user, renewed, values back)", resp.body, puts)
	}
	if h.exists(oldID) {
		t.Error("the record under the id before the renewal is still there")
	}
}
