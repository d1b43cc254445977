package redisstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/sessionkit/sessionkit/internal/redistest"
)

// fakeTracking is a server that plays Redis for a near-cache's invalidation
// connection, so that a test decides when each PING is answered: it
// accepts the handshake (INFO server, which it answers with the reply of
// the server it stands in for, PTTL, CLIENT ID, CLIENT TRACKING, SUBSCRIBE) and answers
// each PING as Redis does in RESP2 subscribe mode, ["pong", <argument>],
// at once until [fakeTracking.lag] is called. It never publishes an
// invalidation. Its goroutines end, and its connections close, at cleanup.
type fakeTracking struct {
	ln   net.Listener
	info string // the reply to INFO server
	wg   sync.WaitGroup

	mu     sync.Mutex
	conns  []net.Conn
	lagged bool          // set by lag
	lagNow chan struct{} // closed by lag
}

// startFakeTracking starts a fakeTracking that stands in for srv.
func startFakeTracking(t *testing.T, srv *redistest.Server) *fakeTracking {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	info, err := redis.String(srv.Do(t, "INFO", "server"), nil)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeTracking{ln: ln, info: info, lagNow: make(chan struct{})}
	f.wg.Add(1)
	go f.accept()
	t.Cleanup(func() {
		ln.Close()
		f.mu.Lock()
		for _, c := range f.conns {
			c.Close()
		}
		f.mu.Unlock()
		f.wg.Wait()
	})
	return f
}

func (f *fakeTracking) addr() string { return f.ln.Addr().String() }

// lag makes the server, on the current connection and any later one, send
// once more the answer it sent last, as if it were late, and from then on
// answer each PING only when the next one arrives: one answer behind.
func (f *fakeTracking) lag() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.lagged {
		f.lagged = true
		close(f.lagNow)
	}
}

func (f *fakeTracking) accept() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.mu.Lock()
		f.conns = append(f.conns, c)
		f.mu.Unlock()
		f.wg.Add(1)
		go f.serve(c)
	}
}

// serve answers the commands of one connection until it closes.
func (f *fakeTracking) serve(c net.Conn) {
	defer f.wg.Done()
	defer c.Close()
	cmds := make(chan []string)
	f.wg.Add(1)
	go func() { // reads the client's commands, which are RESP arrays like replies
		defer f.wg.Done()
		defer close(cmds)
		r := redis.NewConn(c, 0, 0)
		for {
			args, err := redis.Strings(r.Receive())
			if err != nil || len(args) == 0 {
				return
			}
			cmds <- args
		}
	}()
	pong := func(arg string) string { return fmt.Sprintf("*2\r\n$4\r\npong\r\n$%d\r\n%s\r\n", len(arg), arg) }
	var last, pending string // the last answer sent; the PING held back
	lagNow := f.lagNow
	for {
		var args []string
		select {
		case a, ok := <-cmds:
			if !ok {
				return
			}
			args = a
		case <-lagNow:
			lagNow = nil
			if last != "" {
				c.Write([]byte(last))
			}
			continue
		}
		var reply string
		switch cmd := args[0]; {
		case cmd == "INFO":
			reply = fmt.Sprintf("$%d\r\n%s\r\n", len(f.info), f.info)
		case cmd == "PTTL":
			reply = ":-2\r\n"
		case cmd == "CLIENT" && args[1] == "ID":
			reply = ":7\r\n"
		case cmd == "CLIENT":
			reply = "+OK\r\n"
		case cmd == "SUBSCRIBE":
			reply = fmt.Sprintf("*3\r\n$9\r\nsubscribe\r\n$%d\r\n%s\r\n:1\r\n", len(args[1]), args[1])
		case cmd == "PING":
			arg := ""
			if len(args) > 1 {
				arg = args[1]
			}
			if lagNow != nil {
				reply, last = pong(arg), pong(arg)
				break
			}
			reply, pending = pending, pong(arg)
		default:
			reply = "-ERR unknown command\r\n"
		}
		if _, err := c.Write([]byte(reply)); err != nil {
			return
		}
	}
}

// TestTrackingAnswerCertifiesItsPing: an answer that comes when another
// PING is awaited (here a repeated one; in practice one that came after
// its wait gave up) must certify only the PING it answers. If the PING
// loop took it for the answer to the PING in flight, it would run one
// answer behind, each answer certifying the sending of a later PING: a
// Strict Load that began after a change would pass its barrier on the
// answer to a PING sent before the change, and serve the old record.
func TestTrackingAnswerCertifiesItsPing(t *testing.T) {
	srv := redistest.Start(t)
	fake := startFakeTracking(t, srv)
	pool, err := NewPool(Config{Addr: srv.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(otherSource{pool}, Config{Addr: fake.addr(), NearCache: NearCache{MaxEntries: 10, Staleness: 100 * time.Millisecond, Strict: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	waitLease(t, s)
	set(t, srv, "a", "v1")
	warm(t, s, "a")

	fake.lag()
	// The fake reports no invalidation: from here on, only a barrier
	// certified by a PING sent after the DEL could let a Load see v1.
	srv.Do(t, "DEL", "session:a")
	for i := range 5 {
		if b, found, err := s.Load(context.Background(), "a", 0); err != nil || found {
			t.Fatalf("Load %d after the DEL = %q, %v, %v, want no record", i, b, found, err)
		}
	}
}

// TestURLSafeText: the text of an error from a pool's dial function that
// dials a URL (redigo's DialURL) holds no part of the URL's password,
// whatever character of the password made the URL malformed; other text
// is left as it is.
func TestURLSafeText(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		secret []string // none may be in the text
		want   string   // in the text
	}{
		{"unescaped slash, no user", dialURLError(t, "redis://:se/cret-pw@127.0.0.1:36100"), []string{"se/", "cret", `":se"`},
			`parse "redis://[redacted]@127.0.0.1:36100": malformed URL`},
		{"unescaped slash, user", dialURLError(t, "redis://near:se/cret-pw@127.0.0.1:36100"), []string{"se/", "cret", "near"},
			`"redis://[redacted]@127.0.0.1:36100"`},
		{"unescaped slash, password only", dialURLError(t, "redis://se/cret-pw@127.0.0.1:36100"), []string{"cret"},
			"invalid database: [not shown]"},
		{"space", dialURLError(t, "rediss://:se cret@127.0.0.1:36100"), []string{"se cret", "cret"},
			`"rediss://[redacted]@127.0.0.1:36100"`},
		{"bad escape", dialURLError(t, "redis://:se%zzcret@127.0.0.1:36100"), []string{"cret", "%zz"},
			`"redis://[redacted]@127.0.0.1:36100"`},
		{"opaque", dialURLError(t, "redis:se/cret@127.0.0.1:36100"), []string{"cret"},
			"url is opaque: [not shown]"},
		{"wrapped, upper-case scheme, two URLs", fmt.Errorf("dialling REDIS://u:pw1@h1:1 then rediss://:pw2@h2:2: %w", errors.New("refused")),
			[]string{"pw1", "pw2"}, "REDIS://[redacted]@h2:2: refused"},
		{"no credentials", errors.New("dial tcp redis://127.0.0.1:1: connection refused"), nil,
			"dial tcp redis://127.0.0.1:1: connection refused"},
		// redigo's DialURL takes Valkey's schemes too.
		{"valkey", dialURLError(t, "valkey://:se/cret-pw@127.0.0.1:36100"), []string{"se/", "cret"},
			`parse "valkey://[redacted]@127.0.0.1:36100": malformed URL`},
		{"valkeys", dialURLError(t, "valkeys://near:se/cret-pw@127.0.0.1:36100"), []string{"se/", "cret", "near"},
			`"valkeys://[redacted]@127.0.0.1:36100"`},
		{"other scheme", errors.New("see https://user@example.com/x"), nil, "see https://user@example.com/x"},
		// url.Parse quotes the URL before the "#" only: no "@" is left.
		{"hash, user", dialURLError(t, "redis://app:S3CRET#pw@127.0.0.1:36100"), []string{"S3CRET", "app"},
			`parse "redis://[not shown]": malformed URL`},
		{"hash, no user", dialURLError(t, "redis://:S3CRET#pw@127.0.0.1:36100"), []string{"S3CRET"},
			`parse "redis://[not shown]": malformed URL`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := urlSafeText(tc.err)
			for _, s := range tc.secret {
				if strings.Contains(got, s) {
					t.Errorf("urlSafeText(%q) = %q, holds %q", tc.err, got, s)
				}
			}
			if !strings.Contains(got, tc.want) {
				t.Errorf("urlSafeText(%q) = %q, want %q in it", tc.err, got, tc.want)
			}
		})
	}
}

// dialURLError returns the error of redis.DialURL(u), which must fail
// before it dials.
func dialURLError(t *testing.T, u string) error {
	t.Helper()
	c, err := redis.DialURL(u, redis.DialConnectTimeout(time.Millisecond))
	if err == nil {
		c.Close()
		t.Fatalf("DialURL(%q) succeeded", u)
	}
	return err
}

// TestRedactedErrorChain: the error of a Store call whose cause quoted a
// password (a pool's DialURL of a malformed URL) holds none in any error
// its chain unwraps to, which error trackers print one by one; errors.Is
// and errors.As still find its class and its cause.
func TestRedactedErrorChain(t *testing.T) {
	for _, err := range []error{
		classify("load", dialURLError(t, "redis://:se/cret-pw@127.0.0.1:36100"), false),
		classify("load", fmt.Errorf("%w: %w", context.Canceled, dialURLError(t, "redis://:se/cret-pw@127.0.0.1:36100")), false),
	} {
		var walk func(err error, depth int)
		walk = func(err error, depth int) {
			if err == nil {
				return
			}
			if strings.Contains(err.Error(), "cret") {
				t.Errorf("an error %d links down the chain holds the password: %q", depth, err)
			}
			switch u := err.(type) {
			case interface{ Unwrap() error }:
				walk(u.Unwrap(), depth+1)
			case interface{ Unwrap() []error }:
				for _, e := range u.Unwrap() {
					walk(e, depth+1)
				}
			}
		}
		walk(err, 0)
		var ue *url.Error
		if !errors.As(err, &ue) {
			t.Errorf("errors.As(%q, *url.Error) = false, want the cause", err)
		}
	}
	err := classify("load", dialURLError(t, "redis://:se/cret-pw@127.0.0.1:36100"), false)
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("errors.Is(%q, ErrUnavailable) = false", err)
	}
}
