package middleware_test

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/sessionkit/sessionkit/session"
)

// TestMixedFleetWrites races one session's requests across the two kinds
// of instance of a rolling upgrade, one with session.Config.PreviousFormat
// (records of version 1, 43-character tokens) and one without (version 2),
// on one Redis: in each of 100 rounds, requests that all loaded the
// session before any of them saves put a value each, through both
// instances in turn, after a random wait; every value survives, read
// through either instance, and the user stays logged in. The session is
// made on each kind of instance in turn.
func TestMixedFleetWrites(t *testing.T) {
	const rounds, writers = 100, 6
	prev := newHarness(t, harnessOpts{previousFormat: true})
	cur := newHarness(t, harnessOpts{redis: prev.redis})
	fleet := []*harness{prev, cur}
	for _, first := range fleet {
		name := "login on the current format"
		if first == prev {
			name = "login on the previous format"
		}
		t.Run(name, func(t *testing.T) {
			c := first.client() // one jar: the servers share the host 127.0.0.1
			first.login(c, "alice")
			for round := range rounds {
				var loaded sync.WaitGroup
				loaded.Add(writers)
				start := make(chan struct{})
				write := func(w http.ResponseWriter, r *http.Request) {
					loaded.Done()
					<-start // every request has read the record before any writes it
					time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
					k := r.URL.Query().Get("k")
					if err := session.Put(r.Context(), k, k); err != nil {
						t.Error(err)
					}
				}
				prev.hooked, cur.hooked = write, write
				var done sync.WaitGroup
				for i := range writers {
					done.Add(1)
					go func() {
						defer done.Done()
						h := fleet[i%2]
						if resp := h.do(c, "POST", fmt.Sprintf("/hook?k=r%d-w%d", round, i), nil); resp.code != http.StatusOK {
							t.Errorf("round %d, writer %d: %d %s", round, i, resp.code, resp.body)
						}
					}()
				}
				loaded.Wait()
				close(start)
				done.Wait()
				for _, h := range fleet {
					h.hooked = func(w http.ResponseWriter, r *http.Request) {
						if user, ok := session.UserID(r.Context()); !ok || user != "alice" {
							t.Errorf("round %d: user %q, %v; want alice", round, user, ok)
						}
						for i := range writers {
							k := fmt.Sprintf("r%d-w%d", round, i)
							if v, ok := session.Get[string](r.Context(), k); !ok || v != k {
								t.Errorf("round %d: value %s = %q, %v: lost", round, k, v, ok)
							}
						}
					}
					h.do(c, "GET", "/hook", nil)
				}
				if t.Failed() {
					t.FailNow()
				}
			}
		})
	}
}
