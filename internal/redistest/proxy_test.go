package redistest_test

import (
	"bytes"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/sessionkit/sessionkit/internal/redistest"
)

// shortTimeout is the read timeout of connections that must fail on a fault.
const shortTimeout = 200 * time.Millisecond

// proxied starts a server holding k=v and a proxy in front of it.
func proxied(t *testing.T) (*redistest.Server, *redistest.Proxy) {
	t.Helper()
	s := redistest.Start(t)
	s.Do(t, "SET", "k", "v")
	return s, s.Proxy(t)
}

// get runs GET k on c and fails the test unless the reply is "v".
func get(t *testing.T, c redis.Conn) {
	t.Helper()
	if got, err := redis.String(c.Do("GET", "k")); err != nil || got != "v" {
		t.Fatalf("GET k = %q, %v, want %q", got, err, "v")
	}
}

func TestProxyForwards(t *testing.T) {
	verifyNone(t)
	_, p := proxied(t)
	if !strings.HasPrefix(p.Addr(), "127.0.0.1:") {
		t.Fatalf("Addr() = %q, want 127.0.0.1:<port>", p.Addr())
	}
	c := dial(t, p.Addr(), shortTimeout)
	get(t, c)

	// A value larger than the proxy's buffer crosses in many chunks.
	big := bytes.Repeat([]byte("0123456789"), 100_000)
	if _, err := c.Do("SET", "big", big); err != nil {
		t.Fatal(err)
	}
	if got, err := redis.Bytes(c.Do("GET", "big")); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("GET big = %d bytes, %v, want the %d bytes set", len(got), err, len(big))
	}
}

func TestProxyDrop(t *testing.T) {
	verifyNone(t)
	_, p := proxied(t)
	c := dial(t, p.Addr(), shortTimeout)
	get(t, c)

	p.Drop()
	if _, err := c.Do("GET", "k"); err == nil || isTimeout(err) {
		t.Fatalf("GET on a dropped connection: err = %v, want a connection error, not a timeout", err)
	}
	// A new connection is closed at once: the dial may succeed, the command
	// cannot.
	if c, err := redis.Dial("tcp", p.Addr(), redis.DialReadTimeout(shortTimeout)); err == nil {
		_, err = c.Do("GET", "k")
		c.Close()
		if err == nil || isTimeout(err) {
			t.Fatalf("GET on a new connection while dropping: err = %v, want a connection error, not a timeout", err)
		}
	}

	p.Heal()
	get(t, dial(t, p.Addr(), shortTimeout))
}

func TestProxyStall(t *testing.T) {
	verifyNone(t)
	_, p := proxied(t)
	c := dial(t, p.Addr(), shortTimeout)
	get(t, c)

	p.Stall()
	if _, err := c.Do("GET", "k"); !isTimeout(err) {
		t.Fatalf("GET on a stalled connection: err = %v, want a timeout", err)
	}
	if _, err := dial(t, p.Addr(), shortTimeout).Do("GET", "k"); !isTimeout(err) {
		t.Fatalf("GET on a new stalled connection: err = %v, want a timeout", err)
	}

	// Bytes sent while stalled are held and delivered after Heal.
	raw, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Write([]byte("PING\r\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len("+PONG\r\n"))
	raw.SetReadDeadline(time.Now().Add(shortTimeout))
	if _, err := io.ReadFull(raw, buf); !isTimeout(err) {
		t.Fatalf("read while stalled: err = %v, want a timeout", err)
	}

	p.Heal()
	raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(raw, buf); err != nil || string(buf) != "+PONG\r\n" {
		t.Fatalf("read after Heal = %q, %v, want %q", buf, err, "+PONG\r\n")
	}
	get(t, dial(t, p.Addr(), shortTimeout))
}

func TestProxySlow(t *testing.T) {
	verifyNone(t)
	_, p := proxied(t)
	c := dial(t, p.Addr(), 5*time.Second)
	get(t, c)

	const delay = 100 * time.Millisecond
	p.Slow(delay)
	start := time.Now()
	get(t, c)
	if elapsed := time.Since(start); elapsed < delay {
		t.Fatalf("GET through Slow(%v) took %v, want at least %v", delay, elapsed, delay)
	}

	p.Heal()
	get(t, c)
}

// TestProxyServerRestart checks that a proxy keeps serving a restarted
// server, and closes clients at once while the server is down.
func TestProxyServerRestart(t *testing.T) {
	verifyNone(t)
	s, p := proxied(t)
	s.Stop(t)
	c, err := redis.Dial("tcp", p.Addr(), redis.DialReadTimeout(shortTimeout))
	if err == nil {
		_, err = c.Do("PING")
		c.Close()
	}
	if err == nil || isTimeout(err) {
		t.Fatalf("PING through a proxy to a stopped server: err = %v, want a connection error", err)
	}
	s.Restart(t)
	if _, err := dial(t, p.Addr(), shortTimeout).Do("PING"); err != nil {
		t.Fatalf("PING after Restart: %v", err)
	}
}

// TestProxyCleanup leaves bytes held by each fault, on a connection the
// client keeps open, at the end of the test: the cleanup of the proxy must
// still end every goroutine at once.
func TestProxyCleanup(t *testing.T) {
	faults := []struct {
		name  string
		apply func(*redistest.Proxy)
	}{
		{"Stall", (*redistest.Proxy).Stall},
		{"Slow", func(p *redistest.Proxy) { p.Slow(time.Hour) }},
		{"Drop", (*redistest.Proxy).Drop},
	}
	for _, tc := range faults {
		t.Run(tc.name, func(t *testing.T) {
			verifyNone(t)
			var c redis.Conn
			t.Cleanup(func() { // after the proxy's cleanup
				if c != nil {
					c.Close()
				}
			})
			_, p := proxied(t)
			c, err := redis.Dial("tcp", p.Addr(), redis.DialReadTimeout(shortTimeout))
			if err != nil {
				t.Fatal(err)
			}
			get(t, c)
			tc.apply(p)
			c.Send("GET", "k")
			c.Flush()
		})
	}
}

// TestProxyConcurrentFaults switches faults while clients send commands, for
// the race detector; afterwards the healed proxy must work.
func TestProxyConcurrentFaults(t *testing.T) {
	verifyNone(t)
	_, p := proxied(t)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 20 {
				c, err := redis.Dial("tcp", p.Addr(),
					redis.DialConnectTimeout(time.Second),
					redis.DialReadTimeout(20*time.Millisecond),
				)
				if err != nil {
					continue
				}
				c.Do("GET", "k") // any outcome is fine
				c.Close()
			}
		})
	}
	faults := []func(){p.Drop, p.Stall, func() { p.Slow(time.Millisecond) }, p.Heal}
	for i := range 40 {
		faults[i%len(faults)]()
		time.Sleep(time.Millisecond)
	}
	wg.Wait()
	p.Heal()
	get(t, dial(t, p.Addr(), shortTimeout))
}
