package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/middleware"
	"github.com/sessionkit/sessionkit/session"
)

// TestLoginRefusedWhileHashingBusy holds every password-hashing slot, as a
// flood of wrong passwords from many addresses does: a login with the
// right password, by the API and by the form, gets 503 with Retry-After
// once hashingWait has passed, well before the server's WriteTimeout would
// cut its connection, and creates no session: waiting as long as the
// flood lasts, it would then make a session that no browser receives,
// which under SESSION_MAX_PER_USER would revoke one of the user's own.
func TestLoginRefusedWhileHashingBusy(t *testing.T) {
	r := redistest.Start(t)
	a := newTestApp(t, r)
	s := newServer(a.sessions, a.store, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	for range cap(s.hashing) {
		s.hashing <- struct{}{}
	}
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		req     *http.Request
	}{
		{"API", s.apiLogin, httptest.NewRequest("POST", "/api/login", strings.NewReader(`{"username":"alice","password":"wonderland"}`))},
		{"form", s.formLogin, httptest.NewRequest("POST", "/login", strings.NewReader(url.Values{"username": {"alice"}, "password": {"wonderland"}}.Encode()))},
	} {
		if tc.name == "form" {
			tc.req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			tc.req.Header.Set("Accept", "text/html")
		} else {
			tc.req.Header.Set("Content-Type", "application/json")
		}
		// The bound of a test that would otherwise wait for ever.
		ctx, cancel := context.WithTimeout(tc.req.Context(), 15*time.Second)
		defer cancel()
		w := httptest.NewRecorder()
		start := time.Now()
		middleware.Sessions(a.sessions)(tc.handler).ServeHTTP(w, tc.req.WithContext(ctx))
		took := time.Since(start)
		if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" || took > 5*time.Second {
			t.Errorf("%s login while every hashing slot is busy = %d, Retry-After %q, after %v; want 503 with Retry-After within about %v", tc.name, w.Code, w.Header().Get("Retry-After"), took, hashingWait)
		}
		if sc := w.Header().Values("Set-Cookie"); len(sc) > 0 {
			t.Errorf("%s login refused with a cookie: %q", tc.name, sc)
		}
	}
	if n := r.Do(t, "DBSIZE"); n != int64(0) {
		t.Errorf("after the refused logins Redis holds %v keys, want none", n)
	}

	<-s.hashing // one check may run again
	w := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/api/login", strings.NewReader(`{"username":"alice","password":"wonderland"}`))
	req.Header.Set("Content-Type", "application/json")
	middleware.Sessions(a.sessions)(http.HandlerFunc(s.apiLogin)).ServeHTTP(w, req)
	if w.Code != http.StatusOK {
		t.Errorf("login with a free hashing slot = %d %s, want 200", w.Code, w.Body)
	}
}

// TestFailureLogClientGone fails a session operation because the client
// hung up (its request's context cancelled, the store call with it): no
// outage, and any client can do it at will, so no error line either (not
// "session operation failed" for a half-closed login). The same error of
// a request whose client stayed is logged.
func TestFailureLogClientGone(t *testing.T) {
	var logs strings.Builder
	s := newServer(nil, nil, nil, slog.New(slog.NewTextHandler(&logs, nil)))
	err := fmt.Errorf("%w: redisstore: add_user_session: %w", session.ErrStoreUnavailable, context.Canceled)
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	s.storeError(httptest.NewRecorder(), httptest.NewRequest("POST", "/api/login", nil).WithContext(gone), err)
	if strings.Contains(logs.String(), "session operation failed") {
		t.Errorf("a request whose client went away logged:\n%s", logs.String())
	}
	s.storeError(httptest.NewRecorder(), httptest.NewRequest("POST", "/api/login", nil), err)
	if n := strings.Count(logs.String(), "session operation failed"); n != 1 {
		t.Errorf("a failed operation of a request whose client stayed logged %d lines, want 1:\n%s", n, logs.String())
	}
}

// TestFailureLogLimited fails 50 requests' session operations, as an
// outage or an ACL without a needed permission fails every request: the
// example logs one line, not one per request, which any client could
// multiply at will.
func TestFailureLogLimited(t *testing.T) {
	var logs strings.Builder
	s := newServer(nil, nil, nil, slog.New(slog.NewTextHandler(&logs, nil)))
	for range 50 {
		s.storeError(httptest.NewRecorder(), httptest.NewRequest("GET", "/api/me", nil), session.ErrStoreUnavailable)
	}
	if n := strings.Count(logs.String(), "session operation failed"); n != 1 {
		t.Errorf("50 failed operations logged %d lines, want 1:\n%s", n, logs.String())
	}
}

// TestHashingShareOfOneAddress checks that one address's password checks
// take at most its share of the hashing slots, so that parallel wrong
// passwords from one address cannot hold every slot and make everyone
// else's login wait, then fail with 503. With the
// address's one turn taken (a check of its running), another check from
// its IPv6 /64 waits for that turn, not for a free slot, and gets 503
// after hashingWait; meanwhile a login from another address gets a slot
// at once.
func TestHashingShareOfOneAddress(t *testing.T) {
	r := redistest.Start(t)
	a := newTestApp(t, r)
	s := newServer(a.sessions, a.store, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	s.hashing, s.turns = make(chan struct{}, 2), addressTurns{per: 1}
	login := func(addr, password string) int {
		req := httptest.NewRequest("POST", "/api/login", strings.NewReader(`{"username":"alice","password":"`+password+`"}`))
		req.Header.Set("Content-Type", "application/json")
		req.RemoteAddr = addr
		w := httptest.NewRecorder()
		middleware.Sessions(a.sessions)(http.HandlerFunc(s.apiLogin)).ServeHTTP(w, req)
		return w.Code
	}
	turn, done := s.turns.of(addressOf("[2001:db8::1]:1000"))
	turn <- struct{}{}
	var second sync.WaitGroup
	second.Go(func() {
		start := time.Now()
		if code, took := login("[2001:db8::2]:1001", "guess"), time.Since(start); code != http.StatusServiceUnavailable || took < hashingWait {
			t.Errorf("a check from an address whose turn is taken = %d after %v, want 503 after %v", code, took, hashingWait)
		}
	})
	time.Sleep(50 * time.Millisecond) // the second check waits for its turn
	if code := login("203.0.113.9:2000", "wonderland"); code != http.StatusOK {
		t.Errorf("a login from another address meanwhile = %d, want 200", code)
	}
	second.Wait()
	<-turn
	done()
	if n := len(s.turns.turns); n != 0 {
		t.Errorf("%d addresses' turns kept after their checks ended, want none", n)
	}
}

func TestAddressOf(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1:1234":            "192.0.2.1",
		"192.0.2.1":                 "192.0.2.1",
		"[::ffff:192.0.2.1]:80":     "192.0.2.1",
		"[2001:db8:1:2:3:4:5:6]:80": "2001:db8:1:2::/64",
		"[fe80::1%eth0]:80":         "fe80::/64",
		"2001:db8:1:2::9":           "2001:db8:1:2::/64",
		"pipe":                      "pipe",
	} {
		if got := addressOf(in); got != want {
			t.Errorf("addressOf(%q) = %q, want %q", in, got, want)
		}
	}
}
