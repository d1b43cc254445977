package middleware_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	redigo "github.com/gomodule/redigo/redis"
	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/session"
)

// The tests of this file check that an ended session stays ended, whoever
// ends it and whatever request is still in flight with its token, and that
// a response racing a new token never logs the browser out.

// TestLateRenewOfEndedSession holds a request that loaded session S while
// something else ends S, then has it call session.Renew. The late Renew must
// report ErrNoSession and write nothing: no new record, no change to the
// user's index or live sessions, and S's token stays worthless.
func TestLateRenewOfEndedSession(t *testing.T) {
	redis := redistest.Start(t)
	ctx := context.Background()
	cases := []struct {
		name string
		// end ends the session id of user, which the client c holds.
		end func(t *testing.T, h *harness, c *http.Client, user, id string)
		// alive: c's cookie still leads to a session afterwards (the
		// ending request gave it a new token).
		alive bool
	}{
		{name: "logout", end: func(t *testing.T, h *harness, c *http.Client, user, id string) {
			t.Helper()
			if got := h.do(c, "POST", "/logout", nil).code; got != http.StatusNoContent {
				t.Fatalf("POST /logout = %d, want 204", got)
			}
		}},
		{name: "revoke", end: func(t *testing.T, h *harness, c *http.Client, user, id string) {
			t.Helper()
			if err := h.m.Revoke(ctx, user, id); err != nil {
				t.Fatalf("Revoke = %v, want nil", err)
			}
		}},
		{name: "revoke all", end: func(t *testing.T, h *harness, c *http.Client, user, id string) {
			t.Helper()
			if n, err := h.m.RevokeAll(ctx, user); n != 1 || err != nil {
				t.Fatalf("RevokeAll = %d, %v, want 1, nil", n, err)
			}
		}},
		{name: "renewed by another request", alive: true, end: func(t *testing.T, h *harness, c *http.Client, user, id string) {
			t.Helper()
			if resp := h.do(c, "POST", "/renew", nil); resp.code != http.StatusOK {
				t.Fatalf("POST /renew = %d %s, want 200", resp.code, resp.body)
			}
		}},
		{name: "pushed out by the session limit", end: func(t *testing.T, h *harness, c *http.Client, user, id string) {
			t.Helper()
			// The limit ends the sessions of the earliest deadline, whose
			// order within one millisecond is the ids': log in later.
			time.Sleep(2 * time.Millisecond)
			h.login(h.client(), user)
			h.login(h.client(), user) // the limit is 2: this one pushes id out
		}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOpts{redis: redis, limit: 2})
			ho := newHolder(h)
			user := "late" + strconv.Itoa(i)
			c := h.client()
			id, token := h.login(c, user)

			errc := make(chan error, 1)
			late := ho.hold(map[string]string{"Cookie": cookieHeader(token)}, func(w http.ResponseWriter, r *http.Request) {
				errc <- session.Renew(r.Context())
			})
			tc.end(t, h, c, user, id)
			if h.exists(id) {
				t.Fatalf("after %s, session %s still exists", tc.name, id[:8])
			}
			records, index, live := sorted(h.sessionIDs()), sorted(h.indexMembers(user)), h.liveIDs(user)

			resp := late.finish()
			if err := <-errc; !errors.Is(err, session.ErrNoSession) {
				t.Errorf("late Renew = %v, want ErrNoSession", err)
			}
			if got := sorted(h.sessionIDs()); !slices.Equal(got, records) {
				t.Errorf("session records after the late Renew = %v, want %v (unchanged)", short(got), short(records))
			}
			if got := sorted(h.indexMembers(user)); !slices.Equal(got, index) {
				t.Errorf("index of %s after the late Renew = %v, want %v (unchanged)", user, short(got), short(index))
			}
			if got := h.liveIDs(user); !slices.Equal(got, live) {
				t.Errorf("List(%s) after the late Renew = %v, want %v (unchanged)", user, short(got), short(live))
			}
			if len(live) > 2 {
				t.Errorf("List(%s) has %d sessions, want at most the limit 2", user, len(live))
			}
			if ck, ok := sessionCookie(resp); ok && ck.Value != "" {
				t.Errorf("late Renew's response sets a session cookie of %d bytes, want no new token", len(ck.Value))
			}
			if got := h.do(&http.Client{}, "GET", "/me", bearer(token)).code; got != http.StatusUnauthorized {
				t.Errorf("GET /me with the ended token = %d, want 401", got)
			}
			want := http.StatusUnauthorized
			if tc.alive {
				want = http.StatusOK
			}
			if got := h.do(c, "GET", "/me", nil).code; got != want {
				t.Errorf("GET /me with the browser's cookie = %d, want %d", got, want)
			}
		})
	}
}

// TestRenewRacingRenew has two requests renew the same session at once:
// exactly one gets a new token, the other ErrNoSession, and the user is left
// with one live session, the winner's.
func TestRenewRacingRenew(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	ho := newHolder(h)
	type renewal struct {
		err   error
		token string
	}
	const rounds = 10
	for i := range rounds {
		user := "racer" + strconv.Itoa(i)
		_, token := h.login(h.client(), user)
		out := make(chan renewal, 2)
		renew := func(w http.ResponseWriter, r *http.Request) {
			err := session.Renew(r.Context())
			tok, _ := session.Token(r.Context())
			out <- renewal{err, tok}
		}
		cookie := map[string]string{"Cookie": cookieHeader(token)}
		a, b := ho.hold(cookie, renew), ho.hold(cookie, renew)
		a.open()
		b.open()
		a.finish()
		b.finish()

		var won []string
		for range 2 {
			switch r := <-out; {
			case r.err == nil:
				won = append(won, r.token)
			case !errors.Is(r.err, session.ErrNoSession):
				t.Errorf("round %d: Renew = %v, want nil or ErrNoSession", i, r.err)
			}
		}
		if len(won) != 1 {
			t.Errorf("round %d: successful renewals = %d, want 1", i, len(won))
		}
		if got := h.liveIDs(user); len(got) != 1 {
			t.Errorf("round %d: live sessions after two racing renewals = %d, want 1", i, len(got))
		}
		if got := len(h.indexMembers(user)); got != 1 {
			t.Errorf("round %d: index members after two racing renewals = %d, want 1", i, got)
		}
		if got := h.do(&http.Client{}, "GET", "/me", bearer(token)).code; got != http.StatusUnauthorized {
			t.Errorf("round %d: GET /me with the pre-renewal token = %d, want 401", i, got)
		}
		if len(won) == 1 {
			if got := h.do(&http.Client{}, "GET", "/me", bearer(won[0])).code; got != http.StatusOK {
				t.Errorf("round %d: GET /me with the winner's token = %d, want 200", i, got)
			}
		}
		if t.Failed() {
			return
		}
	}
}

// TestParallelRequestKeepsNewCookie has a browser send two requests with
// token T1: one renews or logs in, the other answers after it. The late
// response must not touch the session cookie, so the browser, which applies
// both responses in that order, keeps the new token. Only a logout expires
// the cookie.
func TestParallelRequestKeepsNewCookie(t *testing.T) {
	type (
		before int // the cookie the browser starts with
		action int // what the first request does
		late   int // how the second request goes
	)
	const (
		loggedIn before = iota // a live session
		forged                 // a value that fails verification
		expired                // a signed token whose record is gone
	)
	const (
		renew action = iota // POST /renew
		login               // POST /login
	)
	const (
		readLoaded late = iota // loaded T1 before the action, reads, answers after
		readAfter              // reaches the server with T1 after the action
		write                  // loaded T1 before the action, Puts a value after
		writeAfter             // reaches the server with T1 after the action, Puts a value
		renewAfter             // loaded T1 before the action, Renews and then Puts after
	)
	cases := []struct {
		name   string
		before before
		stale  bool // T1's last-seen time is old: the late read refreshes it
		action action
		late   late
	}{
		{"renew, read loaded before", loggedIn, false, renew, readLoaded},
		{"renew, read loaded before, last seen stale", loggedIn, true, renew, readLoaded},
		{"renew, read arriving after", loggedIn, false, renew, readAfter},
		{"renew, write", loggedIn, false, renew, write},
		{"re-login, read loaded before", loggedIn, false, login, readLoaded},
		{"re-login, read loaded before, last seen stale", loggedIn, true, login, readLoaded},
		{"re-login, read arriving after", loggedIn, false, login, readAfter},
		{"re-login, write", loggedIn, false, login, write},
		{"login, forged cookie, read loaded before", forged, false, login, readLoaded},
		{"login, forged cookie, read arriving after", forged, false, login, readAfter},
		{"login, expired cookie, read loaded before", expired, false, login, readLoaded},
		{"login, expired cookie, read arriving after", expired, false, login, readAfter},
		{"renew, write arriving after", loggedIn, false, renew, writeAfter},
		{"re-login, write arriving after", loggedIn, false, login, writeAfter},
		{"renew, renew and write", loggedIn, false, renew, renewAfter},
		{"login, forged cookie, write arriving after", forged, false, login, writeAfter},
		{"login, expired cookie, write arriving after", expired, false, login, writeAfter},
	}
	redis := redistest.Start(t)
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOpts{redis: redis})
			ho := newHolder(h)
			user := "browser" + strconv.Itoa(i)
			jar, _ := cookiejar.New(nil)
			c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
			u := mustURL(h.srv.URL)

			var t1 string
			switch tc.before {
			case loggedIn:
				var id string
				id, t1 = h.login(c, user)
				if tc.stale {
					h.ageLastSeen(id, 2*session.DefaultLastSeenInterval)
				}
			case forged:
				t1 = "forged" + strings.Repeat("A", 40)
				jar.SetCookies(u, []*http.Cookie{{Name: session.DefaultInsecureCookieName, Value: t1, Path: "/"}})
			case expired:
				var id string
				id, t1 = h.login(c, user)
				h.redis.Do(t, "DEL", "session:"+id) // as if its idle timeout had passed
			}
			oldCookie := map[string]string{"Cookie": cookieHeader(t1)}

			var held *heldRequest
			switch tc.late {
			case readLoaded:
				held = ho.hold(oldCookie, func(w http.ResponseWriter, r *http.Request) {
					session.UserID(r.Context())
					io.WriteString(w, "read")
				})
			case write:
				held = ho.hold(oldCookie, func(w http.ResponseWriter, r *http.Request) {
					session.Put(r.Context(), "late", "value") // finds the record gone at commit
					io.WriteString(w, "wrote")
				})
			case renewAfter:
				held = ho.hold(oldCookie, func(w http.ResponseWriter, r *http.Request) {
					if err := session.Renew(r.Context()); !errors.Is(err, session.ErrNoSession) {
						t.Errorf("late Renew = %v, want ErrNoSession", err)
					}
					// A session of its own would need a cookie over the new one.
					if err := session.Put(r.Context(), "late", "value"); !errors.Is(err, session.ErrNoSession) {
						t.Errorf("Put after a lost Renew = %v, want ErrNoSession", err)
					}
				})
			}

			switch tc.action {
			case renew:
				if resp := h.do(c, "POST", "/renew", nil); resp.code != http.StatusOK {
					t.Fatalf("POST /renew = %d %s, want 200", resp.code, resp.body)
				}
			case login:
				h.login(c, user)
			}

			var resp response
			if tc.late == writeAfter {
				// An anonymous request now: a new session of its own would
				// need a cookie over the one the action set.
				held = ho.hold(oldCookie, func(w http.ResponseWriter, r *http.Request) {
					if err := session.Put(r.Context(), "late", "value"); !errors.Is(err, session.ErrNoSession) {
						t.Errorf("Put with a token that leads nowhere = %v, want ErrNoSession", err)
					}
				})
			}
			if held != nil {
				resp = held.finish()
			} else {
				resp = h.do(&http.Client{}, "GET", "/public", oldCookie)
			}
			if ck, ok := sessionCookie(resp); ok {
				t.Errorf("late response's Set-Cookie = %q, want none", ck.String())
			}
			jar.SetCookies(u, (&http.Response{Header: resp.header}).Cookies())
			if got := h.do(c, "GET", "/me", nil); got.code != http.StatusOK || got.body != user {
				t.Errorf("GET /me after both responses = %d %q, want 200 %q", got.code, got.body, user)
			}
		})
	}

	t.Run("logout expires the cookie", func(t *testing.T) {
		h := newHarness(t, harnessOpts{redis: redis})
		c := h.client()
		h.login(c, "leaver")
		resp := h.do(c, "POST", "/logout", nil)
		if resp.code != http.StatusNoContent {
			t.Fatalf("POST /logout = %d, want 204", resp.code)
		}
		if ck, ok := sessionCookie(resp); !ok || ck.MaxAge >= 0 {
			t.Errorf("POST /logout's Set-Cookie = %v, want an expired session cookie", resp.header.Values("Set-Cookie"))
		}
		for _, ck := range c.Jar.Cookies(mustURL(h.srv.URL)) {
			if ck.Name == session.DefaultInsecureCookieName {
				t.Errorf("browser's session cookie after logout = %q, want none", ck.Value)
			}
		}
		if got := h.do(c, "GET", "/me", nil).code; got != http.StatusUnauthorized {
			t.Errorf("GET /me after logout = %d, want 401", got)
		}
	})
}

// TestReloginUnderLimit logs a user in on a phone and a laptop with a limit
// of two sessions, then again on the laptop with its cookie: the laptop's
// old session is replaced, not counted, so the phone stays logged in.
func TestReloginUnderLimit(t *testing.T) {
	h := newHarness(t, harnessOpts{limit: 2})
	phone, laptop := h.client(), h.client()
	phoneID, _ := h.login(phone, "alice")
	oldID, oldToken := h.login(laptop, "alice")
	newID, _ := h.login(laptop, "alice") // same browser, old cookie still in it

	if got := h.do(phone, "GET", "/me", nil).code; got != http.StatusOK {
		t.Errorf("phone after the laptop's re-login: GET /me = %d, want 200", got)
	}
	if got := h.do(laptop, "GET", "/me", nil).code; got != http.StatusOK {
		t.Errorf("laptop after its re-login: GET /me = %d, want 200", got)
	}
	if h.exists(oldID) {
		t.Errorf("laptop's old session %s exists after re-login, want it gone", oldID[:8])
	}
	if got := h.do(&http.Client{}, "GET", "/me", bearer(oldToken)).code; got != http.StatusUnauthorized {
		t.Errorf("GET /me with the laptop's old token = %d, want 401", got)
	}
	if got, want := h.liveIDs("alice"), sorted([]string{phoneID, newID}); !slices.Equal(got, want) {
		t.Errorf("List(alice) = %v, want %v (phone and new laptop)", short(got), short(want))
	}
	if got := len(h.indexMembers("alice")); got != 2 {
		t.Errorf("index members = %d, want 2", got)
	}
}

// holder serves /hook for a harness: every request it starts is held after
// the middleware has loaded its session, until the test releases it.
type holder struct {
	h     *harness
	mu    sync.Mutex
	next  int
	hooks map[string]http.HandlerFunc
}

// newHolder installs a holder as h.hooked. Call it before h serves /hook.
func newHolder(h *harness) *holder {
	ho := &holder{h: h, hooks: make(map[string]http.HandlerFunc)}
	h.hooked = func(w http.ResponseWriter, r *http.Request) {
		ho.mu.Lock()
		f := ho.hooks[r.Header.Get("X-Hold")]
		ho.mu.Unlock()
		if f == nil {
			http.Error(w, "no hook for this request", http.StatusInternalServerError)
			return
		}
		f(w, r)
	}
	return ho
}

// heldRequest is a request to /hook whose handler waits for open.
type heldRequest struct {
	t       *testing.T
	release chan struct{}
	once    sync.Once
	done    chan sent
}

type sent struct {
	resp response
	err  error
}

// hold sends POST /hook with the headers hdr and returns once the
// middleware has loaded the request's session. The handler then waits until
// the request is opened, and runs run.
func (ho *holder) hold(hdr map[string]string, run http.HandlerFunc) *heldRequest {
	t := ho.h.t
	t.Helper()
	hr := &heldRequest{t: t, release: make(chan struct{}), done: make(chan sent, 1)}
	loaded := make(chan struct{})
	ho.mu.Lock()
	ho.next++
	key := strconv.Itoa(ho.next)
	ho.hooks[key] = func(w http.ResponseWriter, r *http.Request) {
		close(loaded)
		<-hr.release
		run(w, r)
	}
	ho.mu.Unlock()
	t.Cleanup(hr.open) // before the server's Close, which waits for the handler

	headers := map[string]string{"X-Hold": key}
	for k, v := range hdr {
		headers[k] = v
	}
	go func() {
		resp, err := send(ho.h, "POST", "/hook", headers)
		hr.done <- sent{resp, err}
	}()
	select {
	case <-loaded:
	case s := <-hr.done:
		t.Fatalf("held request = %d %q, %v, want its handler to run", s.resp.code, s.resp.body, s.err)
	}
	return hr
}

// open lets the handler go on.
func (hr *heldRequest) open() { hr.once.Do(func() { close(hr.release) }) }

// finish opens the request and returns its response.
func (hr *heldRequest) finish() response {
	hr.t.Helper()
	hr.open()
	s := <-hr.done
	if s.err != nil {
		hr.t.Fatalf("held request: %v", s.err)
	}
	return s.resp
}

// send is h.do for goroutines other than the test's: it returns the error.
func send(h *harness, method, path string, hdr map[string]string) (response, error) {
	req, err := http.NewRequest(method, h.srv.URL+path, nil)
	if err != nil {
		return response{}, err
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return response{code: resp.StatusCode, body: strings.TrimSpace(string(b)), header: resp.Header}, err
}

// liveIDs returns the sorted ids of the live sessions of user.
func (h *harness) liveIDs(user string) []string {
	h.t.Helper()
	list, err := h.m.List(context.Background(), user)
	if err != nil {
		h.t.Fatalf("List(%s): %v", user, err)
	}
	var ids []string
	for _, s := range list {
		ids = append(ids, s.ID)
	}
	return sorted(ids)
}

// ageLastSeen moves the last-seen time in the record of session id back by
// age, as if its user had been idle that long.
func (h *harness) ageLastSeen(id string, age time.Duration) {
	h.t.Helper()
	b, err := redigo.Bytes(h.redis.Do(h.t, "GET", "session:"+id), nil)
	if err != nil {
		h.t.Fatalf("GET session:%s: %v", id[:8], err)
	}
	var record map[string]any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&record); err != nil {
		h.t.Fatal(err)
	}
	// The record's last-seen time, in unix milliseconds: "s", or "c"
	// while it equals the creation time.
	seen, ok := record["s"].(json.Number)
	if !ok {
		seen, ok = record["c"].(json.Number)
	}
	ms, err := seen.Int64()
	if !ok || err != nil {
		h.t.Fatalf("record's last-seen time: %v, %v", record["s"], err)
	}
	record["s"] = ms - age.Milliseconds()
	if b, err = json.Marshal(record); err != nil {
		h.t.Fatal(err)
	}
	if got, _ := redigo.String(h.redis.Do(h.t, "SET", "session:"+id, b, "XX", "KEEPTTL"), nil); got != "OK" {
		h.t.Fatalf("SET session:%s = %q, want OK", id[:8], got)
	}
}

// sessionCookie returns the session cookie that resp sets, if any.
func sessionCookie(resp response) (*http.Cookie, bool) {
	for _, c := range (&http.Response{Header: resp.header}).Cookies() {
		if c.Name == session.DefaultInsecureCookieName {
			return c, true
		}
	}
	return nil, false
}

func cookieHeader(token string) string {
	return session.DefaultInsecureCookieName + "=" + token
}

func bearer(token string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + token}
}

func sorted(ids []string) []string {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	return ids
}

// short abbreviates session ids for failure messages.
func short(ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id[:min(8, len(id))]
	}
	return out
}
