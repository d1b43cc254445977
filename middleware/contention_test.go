package middleware_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/redisstore"
	"github.com/sessionkit/sessionkit/session"
)

// requestStatus sends a request with c and an optional Cookie header, and
// returns the status and the body. It never fails the test, so goroutines
// may call it.
func requestStatus(c *http.Client, method, url, cookie string) (int, string) {
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		return 0, err.Error()
	}
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// nonOK collects the responses of concurrent requests that were not 200.
type nonOK struct {
	mu    sync.Mutex
	n     int
	first string
}

func (f *nonOK) add(code int, body string) {
	if code == http.StatusOK {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == 0 {
		f.first = fmt.Sprintf("%d %q", code, body)
	}
	f.n++
}

// latency is the one-way delay of the network between the app and Redis in
// these tests: what a Redis on another host adds, so that the transactions
// of concurrent requests overlap as they do in production, not as loopback
// and two busy cores happen to schedule them.
const latency = 250 * time.Microsecond

// remoteRedis starts a redis-server behind a proxy with the given latency
// and returns it with a store configuration that connects through the proxy.
func remoteRedis(t *testing.T) (*redistest.Server, *redisstore.Config) {
	t.Helper()
	r := redistest.Start(t)
	proxy := r.Proxy(t)
	proxy.Slow(latency)
	// Ten times the 1s default: a burst's last request queues behind the
	// others' transactions, which can take close to 2s on a loaded
	// machine.
	// What the turns save is checked by counting transactions, not by
	// the time the burst takes.
	return r, &redisstore.Config{Addr: proxy.Addr(), Timeout: 10 * time.Second}
}

// burst runs fire(c, i) for i in [0, n) in n goroutines at once, each with
// its own client. Each goroutine first runs warm(c, i), and all wait for
// every warm-up to end, so that the burst finds its HTTP connections and
// the Redis pools' connections open.
func burst(n int, warm, fire func(c *http.Client, i int)) {
	tr := &http.Transport{MaxIdleConnsPerHost: n}
	defer tr.CloseIdleConnections()
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			// Longer than the store's Timeout, which is what ends a request.
			c := &http.Client{Transport: tr, Timeout: 20 * time.Second}
			warm(c, i)
			ready.Done()
			<-start
			fire(c, i)
		}()
	}
	ready.Wait()
	close(start)
	done.Wait()
}

// meet returns a function that blocks each of its first n callers until all
// n have called it, for 5s at most. Handlers call it so that the requests of
// a burst reach Redis together, however the server scheduled them.
func meet(n int) func() {
	var mu sync.Mutex
	arrived := 0
	all := make(chan struct{})
	return func() {
		mu.Lock()
		if arrived++; arrived == n {
			close(all)
		}
		mu.Unlock()
		select {
		case <-all:
		case <-time.After(5 * time.Second):
		}
	}
}

// TestConcurrentLoginsAcrossInstances logs one user in 50 times at once
// through two app instances sharing one Redis, with a limit of 3 sessions.
// Redis is healthy, so every login succeeds (losing a race with another
// login is no outage), and the limit holds afterwards.
func TestConcurrentLoginsAcrossInstances(t *testing.T) {
	const logins, limit = 50, 3
	r, cfg := remoteRedis(t)
	h1 := newHarness(t, harnessOpts{limit: limit, redis: r, storeCfg: cfg})
	h2 := newHarness(t, harnessOpts{limit: limit, redis: r, storeCfg: cfg})
	instance := func(i int) *harness { return []*harness{h1, h2}[i%2] }
	together := meet(logins)
	login := func(w http.ResponseWriter, r *http.Request) { // POST /login, once all have come
		together()
		info, err := session.Create(r.Context(), "alice")
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"id": info.ID})
	}
	h1.hooked, h2.hooked = login, login

	var warmFailed, failed nonOK
	ids := make([]string, logins)
	r.ResetStats(t)
	burst(logins, func(c *http.Client, i int) {
		// Another user's login: it opens the Redis connections the burst uses.
		warmFailed.add(requestStatus(c, "POST", instance(i).srv.URL+"/login?user=warm"+strconv.Itoa(i), ""))
	}, func(c *http.Client, i int) {
		code, body := requestStatus(c, "POST", instance(i).srv.URL+"/hook", "")
		failed.add(code, body)
		var out struct{ ID string }
		if code == http.StatusOK && json.Unmarshal([]byte(body), &out) == nil {
			ids[i] = out.ID
		}
	})
	if warmFailed.n > 0 {
		t.Fatalf("%d of %d warm-up logins of other users failed, first: %s", warmFailed.n, logins, warmFailed.first)
	}
	if failed.n > 0 {
		t.Errorf("%d of %d concurrent logins failed, first: %s; want all 200", failed.n, logins, failed.first)
	}
	// A login under a limit is one optimistic transaction, tried again when
	// another writer got in first. The calls of one instance on alice's
	// index take turns, so that they race only with the other instance's:
	// 112 to 137 transactions in all here (the warm-ups' 50 included),
	// against 552 to 646 without the turns, when every login races the
	// other 49, whether or not other processes keep the CPUs busy.
	n := r.Calls(t)["exec"]
	t.Logf("the logins ran %d transactions", n)
	if n > 4*logins {
		t.Errorf("the logins ran %d transactions, want at most %d: concurrent logins of one instance race each other", n, 4*logins)
	}
	indexed := h1.indexMembers("alice")
	var live []string
	for _, id := range ids {
		if id != "" && h1.exists(id) {
			live = append(live, id)
			if !slices.Contains(indexed, id) {
				t.Errorf("session %s is live but not in alice's index", id[:8])
			}
		}
	}
	if len(live) > limit {
		t.Errorf("alice has %d live sessions after %d logins, want at most %d", len(live), logins, limit)
	}
}

// TestConcurrentWritesToOneSession has 100 requests of one session each put
// a different value at once, through two app instances sharing one Redis.
// Redis is healthy, so every request succeeds and every value is in the
// session afterwards.
func TestConcurrentWritesToOneSession(t *testing.T) {
	const writers = 100
	r, cfg := remoteRedis(t)
	h := newHarness(t, harnessOpts{redis: r, storeCfg: cfg})
	h2 := newHarness(t, harnessOpts{redis: r, storeCfg: cfg})
	instance := func(i int) *harness { return []*harness{h, h2}[i%2] }
	c := h.client()
	h.login(c, "alice")
	var cookies []string
	for _, ck := range c.Jar.Cookies(mustURL(h.srv.URL)) {
		cookies = append(cookies, ck.Name+"="+ck.Value)
	}
	cookie := strings.Join(cookies, "; ")

	together := meet(writers)
	put := func(w http.ResponseWriter, r *http.Request) {
		i := r.FormValue("i")
		if err := session.Put(r.Context(), "k"+i, "v"+i); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
		together() // the middleware saves once the handler returns
	}
	h.hooked, h2.hooked = put, put
	var warmFailed, failed nonOK
	burst(writers, func(c *http.Client, i int) {
		// A read of the session: it opens the Redis connections the burst uses.
		warmFailed.add(requestStatus(c, "GET", instance(i).srv.URL+"/me", cookie))
	}, func(c *http.Client, i int) {
		failed.add(requestStatus(c, "POST", instance(i).srv.URL+"/hook?i="+strconv.Itoa(i), cookie))
	})
	if warmFailed.n > 0 {
		t.Fatalf("%d of %d warm-up reads failed, first: %s", warmFailed.n, writers, warmFailed.first)
	}
	if failed.n > 0 {
		t.Errorf("%d of %d concurrent writes to one session failed, first: %s; want all 200", failed.n, writers, failed.first)
	}

	h.hooked = func(w http.ResponseWriter, r *http.Request) {
		var missing []string
		for i := range writers {
			k := "k" + strconv.Itoa(i)
			if v, _ := session.Get[string](r.Context(), k); v != "v"+strconv.Itoa(i) {
				missing = append(missing, k)
			}
		}
		fmt.Fprint(w, len(missing), missing[:min(len(missing), 5)])
	}
	if got := h.do(c, "GET", "/hook", nil); got.code != 200 || got.body != "0 []" {
		t.Errorf("after %d concurrent writes: GET /hook = %d, missing values (count, first) %s; want 200, 0 []", writers, got.code, got.body)
	}
}
