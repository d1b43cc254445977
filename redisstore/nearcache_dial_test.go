package redisstore_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/internal/syncbuf"
	"github.com/sessionkit/sessionkit/redisstore"
)

// hiddenPool is a Source that is not a *redis.Pool, as a wrapper adding
// metrics or tracing would be: New cannot dial through it.
type hiddenPool struct{ *redis.Pool }

// dialingSource is a wrapper Source, as one adding tracing would be, that
// implements redisstore.Dialer with its pool's DialContext and counts the
// dials.
type dialingSource struct {
	pool  *redis.Pool
	dials *atomic.Int64
}

func (d dialingSource) GetContext(ctx context.Context) (redis.Conn, error) {
	return d.pool.GetContext(ctx)
}

func (d dialingSource) DialContext(ctx context.Context) (redis.Conn, error) {
	d.dials.Add(1)
	return d.pool.DialContext(ctx)
}

func (d dialingSource) Close() error { return d.pool.Close() }

var _ redisstore.Dialer = dialingSource{}

// tapProxy forwards the connections it accepts to target and copies what
// the clients send into sent. It stops at cleanup.
func tapProxy(t *testing.T, target string, sent io.Writer) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	track := func(c net.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	}
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			track(c)
			track(u)
			wg.Add(2)
			go func() {
				defer wg.Done()
				io.Copy(u, io.TeeReader(c, sent))
				u.Close()
			}()
			go func() {
				defer wg.Done()
				io.Copy(c, u)
				c.Close()
			}()
		}
	}()
	return l.Addr().String()
}

// TestNearCacheDialsLikeThePool: a Store that New makes on a TLS pool, with
// a Config that names the server and its password but no TLS (as when
// moving from scs, whose pool the app builds), opens its near-cache's
// connection as the pool does, over TLS: it connects, on the TLS port, and
// no password crosses the wire in clear, whether Config.Addr names the TLS
// port or the plain one.
func TestNearCacheDialsLikeThePool(t *testing.T) {
	dir := t.TempDir()
	caPool := writeCerts(t, dir)
	tlsPort := closedPort(t)
	const password = "near-pw-5Jq8v"
	srv := redistest.Start(t, "--requirepass", password,
		"--tls-port", strconv.Itoa(tlsPort),
		"--tls-cert-file", filepath.Join(dir, "server.pem"),
		"--tls-key-file", filepath.Join(dir, "server-key.pem"),
		"--tls-ca-cert-file", filepath.Join(dir, "ca.pem"),
		"--tls-auth-clients", "no")
	var sent syncbuf.Buffer
	tlsAddr := tapProxy(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(tlsPort)), &sent)

	for _, tc := range []struct{ name, addr string }{
		{"Addr on the TLS port", tlsAddr},
		{"Addr on the plain port", srv.Addr()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sent.Reset()
			pool, err := redisstore.NewPool(redisstore.Config{Addr: tlsAddr, Password: password, TLS: &tls.Config{RootCAs: caPool, ServerName: "localhost"}})
			if err != nil {
				t.Fatal(err)
			}
			s, err := redisstore.New(pool, redisstore.Config{Addr: tc.addr, Password: password, NearCache: redisstore.NearCache{MaxEntries: 10},
				Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if err := s.Ping(context.Background()); err != nil {
				t.Fatalf("Ping through the TLS pool: %v", err)
			}
			deadline := time.Now().Add(10 * time.Second)
			for !s.NearCacheStats().Connected {
				if time.Now().After(deadline) {
					t.Fatalf("near-cache not connected within 10s: %+v", s.NearCacheStats())
				}
				time.Sleep(5 * time.Millisecond)
			}
			if n := strings.Count(sent.String(), password); n > 0 {
				t.Errorf("the password crossed the wire in clear %d times", n)
			}
			// The subscribed client, the near-cache's, is on the TLS port.
			list, err := redis.String(srv.Do(t, "CLIENT", "LIST"), nil)
			if err != nil {
				t.Fatal(err)
			}
			subscribed := 0
			for line := range strings.Lines(list) {
				if !strings.Contains(line, " sub=1 ") {
					continue
				}
				subscribed++
				if want := " laddr=127.0.0.1:" + strconv.Itoa(tlsPort) + " "; !strings.Contains(line, want) {
					t.Errorf("near-cache client %q, want it on the TLS port (%s)", strings.TrimSpace(line), want)
				}
			}
			if subscribed != 1 {
				t.Errorf("%d subscribed clients, want 1 (the near-cache's)", subscribed)
			}
		})
	}
}

// TestNewRefusesClearNearCache: when New cannot dial through its Source
// (not a *redis.Pool, or a pool without a dial function), the near-cache
// dials Config.Addr with Config's credentials, and New refuses a Password
// without TLS, which that connection would send in clear whatever the
// Source's connections do.
func TestNewRefusesClearNearCache(t *testing.T) {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(closedPort(t)))
	const password = "near-pw-Zx41k"
	newPool := func(t *testing.T) *redis.Pool {
		t.Helper()
		p, err := redisstore.NewPool(redisstore.Config{Addr: addr, Password: password})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	near := redisstore.NearCache{MaxEntries: 10}
	tlsCfg := &tls.Config{ServerName: "localhost"}
	for _, tc := range []struct {
		name string
		src  func(t *testing.T) redisstore.Source
		cfg  redisstore.Config
		want string // in the error; "" for none
	}{
		{"other Source, Password, no TLS", func(t *testing.T) redisstore.Source { return hiddenPool{newPool(t)} },
			redisstore.Config{Addr: addr, Password: password, NearCache: near}, "redisstore.Dialer"},
		{"pool without a dial function, Password, no TLS", func(t *testing.T) redisstore.Source { return &redis.Pool{} },
			redisstore.Config{Addr: addr, Password: password, NearCache: near}, "Config.TLS"},
		{"Dialer Source, Password, no TLS", func(t *testing.T) redisstore.Source { return dialingSource{newPool(t), new(atomic.Int64)} },
			redisstore.Config{Addr: addr, Password: password, NearCache: near}, ""},
		{"Dialer Source, no Addr", func(t *testing.T) redisstore.Source { return dialingSource{newPool(t), new(atomic.Int64)} },
			redisstore.Config{NearCache: near}, ""},
		{"other Source, Password, TLS", func(t *testing.T) redisstore.Source { return hiddenPool{newPool(t)} },
			redisstore.Config{Addr: addr, Password: password, TLS: tlsCfg, NearCache: near}, ""},
		{"other Source, no Password", func(t *testing.T) redisstore.Source { return hiddenPool{newPool(t)} },
			redisstore.Config{Addr: addr, NearCache: near}, ""},
		{"other Source, Password, no TLS, no near-cache", func(t *testing.T) redisstore.Source { return hiddenPool{newPool(t)} },
			redisstore.Config{Addr: addr, Password: password}, ""},
		{"pool, Password, no TLS", func(t *testing.T) redisstore.Source { return newPool(t) },
			redisstore.Config{Addr: addr, Password: password, NearCache: near}, ""},
		{"pool, no Addr", func(t *testing.T) redisstore.Source { return newPool(t) },
			redisstore.Config{NearCache: near}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := tc.src(t)
			tc.cfg.Logger = slog.New(slog.DiscardHandler)
			s, err := redisstore.New(src, tc.cfg)
			if s != nil {
				defer s.Close()
			} else if c, ok := src.(io.Closer); ok {
				defer c.Close()
			}
			if tc.want == "" {
				if err != nil {
					t.Fatalf("New = %v, want no error", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v, want an error naming %s", err, tc.want)
			}
			if strings.Contains(err.Error(), password) {
				t.Errorf("New's error %q holds the password", err)
			}
		})
	}
}

// TestNearCacheDialsThroughDialer: a wrapper Source that implements
// redisstore.Dialer gets a connected near-cache on a plain-TCP Redis with a
// password (a private network, or a TLS sidecar), which New refuses for a
// Source without it: the near-cache's connection is the Source's own
// DialContext's, with its credentials.
func TestNearCacheDialsThroughDialer(t *testing.T) {
	const password = "near-pw-Hc62w"
	srv := redistest.Start(t, "--requirepass", password)
	pool, err := redisstore.NewPool(redisstore.Config{Addr: srv.Addr(), Password: password})
	if err != nil {
		t.Fatal(err)
	}
	src := dialingSource{pool, new(atomic.Int64)}
	cfg := redisstore.Config{Addr: srv.Addr(), Password: password, NearCache: redisstore.NearCache{MaxEntries: 10},
		Logger: slog.New(slog.DiscardHandler)}
	s, err := redisstore.New(src, cfg)
	if err != nil {
		t.Fatalf("New(Dialer, Password without TLS) = %v, want no error", err)
	}
	defer s.Close()
	waitConnected(t, s)
	if n := src.dials.Load(); n < 1 {
		t.Errorf("%d dials through the Source's DialContext, want the near-cache's", n)
	}
	ctx := context.Background()
	if _, err := s.Insert(ctx, "a", []byte("v1"), time.Minute); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); s.NearCacheStats().Hits == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no Load served from memory within 10s: %+v", s.NearCacheStats())
		}
		if b, found, err := s.Load(ctx, "a", 0); err != nil || !found || string(b) != "v1" {
			t.Fatalf("Load = %q, %v, %v", b, found, err)
		}
	}
}

// TestNearCacheLogsConnectFailures: a near-cache whose connection cannot
// subscribe (here an ACL user without +client|tracking), or cannot PING
// once subscribed (an ACL user without +ping), says so in the Store's log,
// once per interval however often it retries, without the password, and
// retries backing off, while every Load still reads Redis. Without +ping
// the connection subscribes and fails at its first PING: it must neither
// connect again at once, many times a second, nor log nothing.
func TestNearCacheLogsConnectFailures(t *testing.T) {
	for _, denied := range []string{"client|tracking", "ping"} {
		t.Run("without "+denied, func(t *testing.T) {
			srv := redistest.Start(t)
			const password = "near-pw-Lm29c"
			srv.Do(t, "ACL", "SETUSER", "near", "on", ">"+password, "~*", "&*", "+@all", "-"+denied)
			pool, err := redisstore.NewPool(redisstore.Config{Addr: srv.Addr(), Username: "near", Password: password})
			if err != nil {
				t.Fatal(err)
			}
			var logged syncbuf.Buffer
			s, err := redisstore.New(pool, redisstore.Config{NearCache: redisstore.NearCache{MaxEntries: 10},
				Logger: slog.New(slog.NewTextHandler(&logged, nil))})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			if _, err := s.Insert(ctx, "a", []byte("v1"), time.Minute); err != nil {
				t.Fatal(err)
			}
			before := infoInt(t, srv, "stats", "total_connections_received")
			// The retries back off from 10ms to 1s: about eight in 1.5s.
			for end := time.Now().Add(1500 * time.Millisecond); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
				if b, found, err := s.Load(ctx, "a", 0); err != nil || !found || string(b) != "v1" {
					t.Fatalf("Load = %q, %v, %v", b, found, err)
				}
			}
			if n := infoInt(t, srv, "stats", "total_connections_received") - before; n > 15 {
				t.Errorf("%d connections in 1.5s, want the retries to back off (about 8)", n)
			}
			if st := s.NearCacheStats(); st.Connected || st.Hits != 0 {
				t.Errorf("stats %+v, want not connected and no hits", st)
			}
			out := logged.String()
			if n := strings.Count(out, "near-cache"); n != 1 {
				t.Errorf("%d lines about the near-cache in 1.5s, want 1:\n%s", n, out)
			}
			if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "NOPERM") {
				t.Errorf("log %q, want a warning with the server's NOPERM", out)
			}
			if strings.Contains(out, password) {
				t.Errorf("log %q holds the password", out)
			}
		})
	}
}

// waitConnected waits until the near-cache of s is subscribed.
func waitConnected(t *testing.T, s *redisstore.Store) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !s.NearCacheStats().Connected {
		if time.Now().After(deadline) {
			t.Fatalf("near-cache not connected within 10s: %+v", s.NearCacheStats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// closeWithin calls s.Close and fails t unless it returns within limit;
// it waits for it all the same (up to 20s), so that nothing is left
// running.
func closeWithin(t *testing.T, s *redisstore.Store, limit time.Duration) {
	t.Helper()
	done := make(chan struct{})
	start := time.Now()
	go func() {
		s.Close()
		close(done)
	}()
	select {
	case <-done:
		return
	case <-time.After(limit):
	}
	t.Errorf("Store.Close blocked for more than %v", limit)
	select {
	case <-done:
		t.Logf("Store.Close returned after %v", time.Since(start))
	case <-time.After(20 * time.Second):
		t.Fatal("Store.Close still blocked after 20s")
	}
}

// TestNearCacheCloseDialOnlyPool: with a pool that has only Dial (no
// DialContext), as redigo's README builds one, with no timeouts, Close
// returns promptly while Redis is stalled, though the near-cache's redial
// waits in that Dial for AUTH's answer, which nothing can cancel; and once
// Redis answers, the connection that Dial returns late is closed, not left
// open. Likewise when the Dial that hangs is the pool's own, lending the
// connection that checks the server (a wrapper Source, so that New checks).
func TestNearCacheCloseDialOnlyPool(t *testing.T) {
	const password = "near-pw-Qd83n"
	t.Run("near-cache dial", func(t *testing.T) {
		srv := redistest.Start(t, "--requirepass", password)
		pool := &redis.Pool{Dial: func() (redis.Conn, error) {
			return redis.Dial("tcp", srv.Addr(), redis.DialPassword(password))
		}}
		s, err := redisstore.New(pool, redisstore.Config{ReadTimeout: 200 * time.Millisecond,
			NearCache: redisstore.NearCache{MaxEntries: 10}, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		waitConnected(t, s)
		srv.Pause(t)
		resumed := false
		defer func() {
			if !resumed {
				srv.Resume(t)
			}
		}()
		time.Sleep(1500 * time.Millisecond) // the read times out; the redial hangs
		closeWithin(t, s, time.Second)
		srv.Resume(t)
		resumed = true
		// The late connection is closed: only the test's own client is left.
		// (With the garbage collector off, which would close it in the end.)
		defer debug.SetGCPercent(debug.SetGCPercent(-1))
		deadline := time.Now().Add(5 * time.Second)
		for {
			info, err := redis.String(srv.Do(t, "INFO", "clients"), nil)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(info, "connected_clients:1\r\n") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("connections left open after Close and Resume:\n%s", info)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	t.Run("pool dial for the server check", func(t *testing.T) {
		srv := redistest.Start(t)
		release := make(chan struct{})
		var dialling atomic.Int32
		pool := &redis.Pool{Dial: func() (redis.Conn, error) {
			dialling.Add(1)
			defer dialling.Add(-1)
			<-release // stalls until the test ends
			return redis.Dial("tcp", srv.Addr())
		}}
		defer pool.Close()
		defer func() {
			close(release)
			for deadline := time.Now().Add(10 * time.Second); dialling.Load() > 0; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("the pool's Dial still running 10s after its release")
				}
			}
		}()
		s, err := redisstore.New(hiddenPool{pool}, redisstore.Config{Addr: srv.Addr(),
			NearCache: redisstore.NearCache{MaxEntries: 10}, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(10 * time.Second); dialling.Load() == 0; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the near-cache did not borrow a connection within 10s")
			}
		}
		closeWithin(t, s, time.Second)
	})
}

// TestNearCacheHidesURLPassword: a pool whose Dial dials a URL with an
// unescaped "/" in its password fails with url.Parse's error, which quotes
// the URL; neither the near-cache's warning nor the errors of the Store's
// calls repeat any part of the password, and the calls' errors keep their
// class.
func TestNearCacheHidesURLPassword(t *testing.T) {
	const password = "se/cret-pw"
	srv := redistest.Start(t, "--requirepass", password)
	pool := &redis.Pool{Dial: func() (redis.Conn, error) {
		return redis.DialURL("redis://:" + password + "@" + srv.Addr())
	}}
	var logged syncbuf.Buffer
	s, err := redisstore.New(pool, redisstore.Config{NearCache: redisstore.NearCache{MaxEntries: 10},
		Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logged.String(), "near-cache"); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no near-cache warning within 10s")
		}
	}
	_, _, loadErr := s.Load(context.Background(), "a", 0)
	if !errors.Is(loadErr, redisstore.ErrUnavailable) {
		t.Errorf("Load = %v, want ErrUnavailable", loadErr)
	}
	for what, text := range map[string]string{"log": logged.String(), "Load's error": fmt.Sprint(loadErr)} {
		for _, part := range []string{password, "cret", `":se"`} {
			if strings.Contains(text, part) {
				t.Errorf("%s %q holds %q, of the password", what, text, part)
			}
		}
		if !strings.Contains(text, "[redacted]@"+srv.Addr()) {
			t.Errorf("%s %q, want the URL without its userinfo", what, text)
		}
	}
}

// TestNearCacheWarningNamesStep: the near-cache's warning says which step
// of connecting failed, so that "context deadline exceeded" from an
// exhausted pool reads as such; and the near-cache connects once the
// cause is gone.
func TestNearCacheWarningNamesStep(t *testing.T) {
	srv := redistest.Start(t)
	const password = "near-pw-Tr50d"
	srv.Do(t, "ACL", "SETUSER", "notrack", "on", ">"+password, "~*", "&*", "+@all", "-client|tracking")
	srv.Do(t, "ACL", "SETUSER", "noinfo", "on", ">"+password, "~*", "&*", "+@all", "-info")
	closed := net.JoinHostPort("127.0.0.1", strconv.Itoa(closedPort(t)))
	for _, tc := range []struct {
		name string
		pool redisstore.Config // of the pool
		hold bool              // hold the pool's one connection, then let it go
		want []string          // in the warning
	}{
		{"exhausted pool", redisstore.Config{Addr: srv.Addr(), MaxActive: 1}, true,
			[]string{"checking the server: reading the Source's run_id: borrowing a connection: ", "deadline exceeded"}},
		{"refused", redisstore.Config{Addr: closed}, false,
			[]string{"dialling: ", "refused"}},
		{"no CLIENT TRACKING", redisstore.Config{Addr: srv.Addr(), Username: "notrack", Password: password}, false,
			[]string{"CLIENT TRACKING: NOPERM"}},
		{"no INFO", redisstore.Config{Addr: srv.Addr(), Username: "noinfo", Password: password}, false,
			[]string{"checking the server: reading its own run_id: NOPERM"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool, err := redisstore.NewPool(tc.pool)
			if err != nil {
				t.Fatal(err)
			}
			var held redis.Conn
			if tc.hold {
				held, err = pool.GetContext(context.Background())
				if err == nil {
					_, err = held.Do("PING")
				}
				if err != nil {
					t.Fatal(err)
				}
				defer held.Close()
			}
			var logged syncbuf.Buffer
			s, err := redisstore.New(pool, redisstore.Config{DialTimeout: 200 * time.Millisecond, ReadTimeout: 200 * time.Millisecond,
				NearCache: redisstore.NearCache{MaxEntries: 10}, Logger: slog.New(slog.NewTextHandler(&logged, nil))})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logged.String(), "near-cache"); time.Sleep(5 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("no near-cache warning within 10s")
				}
			}
			out := logged.String()
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("warning %q, want %q in it", out, w)
				}
			}
			if held != nil {
				held.Close()
				waitConnected(t, s)
			}
		})
	}
}
