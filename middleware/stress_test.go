package middleware_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sessionkit/sessionkit/session"
)

// TestEndingRacesRenewal runs, for hundreds of rounds on two app instances
// sharing one Redis, a renewal of a fresh session on instance A against a
// way of ending it on instance B, with a request on A that writes to the
// session, each starting after a random 0-2 ms. Whatever the interleaving:
// the session is never split in two, a writer never brings it back or
// starts a session of its own, and an ending that knew the session (a log
// out everywhere; a revocation or logout that found it) leaves nothing
// alive. A logout leaves nothing alive in any order: one that came with
// the token the renewal had replaced follows the renewal's pointer.
func TestEndingRacesRenewal(t *testing.T) {
	const rounds = 150
	a := newHarness(t, harnessOpts{})
	b := newHarness(t, harnessOpts{redis: a.redis})
	a.hooked = func(w http.ResponseWriter, r *http.Request) { // the writer
		if err := session.Put(r.Context(), "k", "v"); err != nil && !errors.Is(err, session.ErrNoSession) {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	}
	b.hooked = func(w http.ResponseWriter, r *http.Request) { // a logout that says whether it found the session
		_, found := session.UserID(r.Context())
		if err := session.Destroy(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		if found {
			io.WriteString(w, "found")
		}
	}
	jitter := func() { time.Sleep(time.Duration(rand.N(2000)) * time.Microsecond) }
	for _, ending := range []string{"logout", "revoke", "revoke all"} {
		t.Run(ending, func(t *testing.T) {
			survived := 0 // rounds where the ending did not find the session (the renewal won first)
			defer func() { t.Logf("%d of %d rounds: the renewal won and the session lives on", survived, rounds) }()
			for i := range rounds {
				user := ending[:3] + strconv.Itoa(i)
				before := len(a.sessionIDs())
				id, token := a.login(a.client(), user)
				cookie := map[string]string{"Cookie": cookieHeader(token)}
				var (
					wg      sync.WaitGroup
					knew    bool // the ending found the session it ended
					failure error
					mu      sync.Mutex
				)
				fail := func(err error) {
					mu.Lock()
					defer mu.Unlock()
					failure = errors.Join(failure, err)
				}
				wg.Add(3)
				go func() {
					defer wg.Done()
					jitter()
					if _, err := send(a, "POST", "/renew", cookie); err != nil {
						fail(err)
					}
				}()
				go func() {
					defer wg.Done()
					jitter()
					if resp, err := send(a, "POST", "/hook", cookie); err != nil || resp.code != http.StatusOK {
						fail(errors.Join(err, errors.New("writer: "+resp.body)))
					}
				}()
				go func() {
					defer wg.Done()
					jitter()
					switch ending {
					case "logout":
						resp, err := send(b, "POST", "/hook", cookie)
						if err != nil || resp.code != http.StatusOK {
							fail(errors.Join(err, errors.New("logout: "+resp.body)))
						}
						knew = resp.body == "found"
					case "revoke":
						err := b.m.Revoke(context.Background(), user, id)
						if err != nil && !errors.Is(err, session.ErrNotFound) {
							fail(err)
						}
						knew = err == nil
					case "revoke all":
						if _, err := b.m.RevokeAll(context.Background(), user); err != nil {
							fail(err)
						}
						knew = true
					}
				}()
				wg.Wait()
				if failure != nil {
					t.Fatalf("round %d: %v", i, failure)
				}
				live, err := a.m.List(context.Background(), user)
				if err != nil {
					t.Fatal(err)
				}
				switch {
				case len(live) > 1:
					t.Fatalf("round %d: %s left %d live sessions of one login, want at most 1", i, ending, len(live))
				case knew && len(live) != 0:
					t.Fatalf("round %d: %s that found the session left it alive under a new token", i, ending)
				case ending == "logout" && len(live) != 0:
					t.Fatalf("round %d: a logout with the token a renewal replaced left the renewed session alive", i)
				}
				survived += len(live)
				if n := len(a.sessionIDs()) - before; n > len(live) {
					t.Fatalf("round %d: %d new session records for %d live sessions: a writer started one", i, n, len(live))
				}
			}
		})
	}
}

// TestRenewalRacesOwnSession runs, for hundreds of rounds on two app
// instances sharing one Redis, a renewal on instance B against a request
// of the same browser on instance A that acts on that browser's session,
// each starting after a random 0-2 ms: "sign out the others", or a login
// again. The renewal never undoes either: the browser's own session
// survives "sign out the others" (under the renewed token when the
// renewal succeeded), which ends the phone's when it answers 200; a
// re-login that found the session ends it under every token.
func TestRenewalRacesOwnSession(t *testing.T) {
	const rounds = 200
	a := newHarness(t, harnessOpts{})
	b := newHarness(t, harnessOpts{redis: a.redis})
	a.hooked = func(w http.ResponseWriter, r *http.Request) { // a re-login that says whether it found a session
		_, found := session.UserID(r.Context())
		if _, err := session.Create(r.Context(), r.FormValue("user")); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		if found {
			io.WriteString(w, "found")
		}
	}
	jitter := func() { time.Sleep(time.Duration(rand.N(2000)) * time.Microsecond) }
	// race runs call on A and a renewal of token on B at once, and returns
	// A's answer and the token the browser holds afterwards.
	race := func(t *testing.T, token string, call func() response) (response, string) {
		t.Helper()
		var (
			wg      sync.WaitGroup
			got     response
			renewal response
			err     error
		)
		wg.Add(2)
		go func() { defer wg.Done(); jitter(); got = call() }()
		go func() {
			defer wg.Done()
			jitter()
			renewal, err = send(b, "POST", "/renew", map[string]string{"Cookie": cookieHeader(token)})
		}()
		wg.Wait()
		if err != nil {
			t.Fatal(err)
		}
		if renewal.code == http.StatusOK {
			var out struct{ Token string }
			if err := json.Unmarshal([]byte(renewal.body), &out); err != nil {
				t.Fatal(err)
			}
			token = out.Token
		}
		return got, token
	}
	alive := func(token string) bool {
		t.Helper()
		resp, err := send(a, "GET", "/me", map[string]string{"Cookie": cookieHeader(token)})
		if err != nil {
			t.Fatal(err)
		}
		return resp.code == http.StatusOK
	}
	t.Run("sign out the others", func(t *testing.T) {
		for i := range rounds {
			user := "others" + strconv.Itoa(i)
			_, phone := a.login(a.client(), user)
			_, laptop := a.login(a.client(), user)
			got, laptop := race(t, laptop, func() response {
				resp, err := send(a, "POST", "/revoke-others", map[string]string{"Cookie": cookieHeader(laptop)})
				if err != nil {
					t.Error(err)
				}
				return resp
			})
			if !alive(laptop) {
				t.Fatalf("round %d: the browser's own session ended by its own \"sign out the others\" (%d %s)", i, got.code, got.body)
			}
			if got.code == http.StatusOK && alive(phone) {
				t.Fatalf("round %d: \"sign out the others\" answered 200 and the phone's session lives", i)
			}
		}
	})
	t.Run("login again", func(t *testing.T) {
		for i := range rounds {
			user := "again" + strconv.Itoa(i)
			_, old := a.login(a.client(), user)
			got, old := race(t, old, func() response {
				resp, err := send(a, "POST", "/hook?user="+user, map[string]string{"Cookie": cookieHeader(old)})
				if err != nil {
					t.Error(err)
				}
				return resp
			})
			if got.code != http.StatusOK {
				t.Fatalf("round %d: login = %d %s", i, got.code, got.body)
			}
			if got.body == "found" && alive(old) {
				t.Fatalf("round %d: the session the login replaced lives on under its renewed token", i)
			}
		}
	})
}
