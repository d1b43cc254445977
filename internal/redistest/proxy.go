package redistest

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"
)

// Proxy is a TCP proxy on a free loopback port that forwards bytes both ways
// between its clients and a target address, and can inject network faults:
// [Proxy.Drop], [Proxy.Stall] and [Proxy.Slow], each undone by [Proxy.Heal].
// Each fault replaces the previous one. Its methods are safe to call from any
// goroutine.
//
// The Proxy owns one goroutine that accepts connections and two per
// forwarded connection; all of them end, and the listener and every
// connection are closed, in the cleanup registered by [NewProxy].
type Proxy struct {
	target string
	ln     net.Listener
	ctx    context.Context // canceled at cleanup; aborts dials to the target
	cancel context.CancelFunc
	wg     sync.WaitGroup // the accept loop and the serve goroutines

	mu      sync.Mutex
	fault   fault
	delay   time.Duration      // with fault == slow
	changed chan struct{}      // closed and replaced whenever fault changes
	links   map[*link]struct{} // forwarded connections
	closed  bool               // set at cleanup; no new links after it
}

// fault is the fault a Proxy currently injects.
type fault int

const (
	healthy fault = iota // forward bytes as they come
	drop                 // close connections at once
	stall                // hold bytes until healed
	slow                 // delay each chunk by Proxy.delay
)

// link is one forwarded connection: a client of the proxy and its own
// connection to the target.
type link struct {
	client, upstream net.Conn
	once             sync.Once
	done             chan struct{} // closed by close
}

// close closes both connections, which ends both pipe goroutines: one is
// blocked in Read or Write and gets an error, the other may be waiting for a
// stall or a delay and sees done.
func (l *link) close() {
	l.once.Do(func() {
		close(l.done)
		l.client.Close()
		l.upstream.Close()
	})
}

// NewProxy starts a proxy to target (host:port) on a free 127.0.0.1 port and
// registers a cleanup that stops it. The target need not be up: a client
// whose connection to the target fails is disconnected.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("redistest: proxy listen: %v", err)
	}
	p := &Proxy{target: target, ln: ln, changed: make(chan struct{}), links: make(map[*link]struct{})}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.wg.Add(1)
	go p.accept(t)
	t.Cleanup(p.close)
	return p
}

// Proxy starts a [Proxy] in front of the server, as [NewProxy] does. It
// keeps working across [Server.Restart], which keeps the port.
func (s *Server) Proxy(t testing.TB) *Proxy {
	t.Helper()
	return NewProxy(t, s.Addr())
}

// Addr returns the address clients connect to, "127.0.0.1:<port>".
func (p *Proxy) Addr() string {
	return p.ln.Addr().String()
}

// Drop closes every current connection and, until [Proxy.Heal], closes new
// ones as soon as they are accepted, as a crashed load balancer or a reset
// network path would: clients see an error at once.
func (p *Proxy) Drop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.set(drop, 0)
	for l := range p.links {
		l.close()
	}
}

// Stall stops forwarding in both directions until [Proxy.Heal], as a network
// partition would: connections stay open and new ones are accepted, but no
// byte gets through, so clients run into their read timeouts. Bytes are held,
// not lost, and flow once the proxy is healed.
func (p *Proxy) Stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.set(stall, 0)
}

// Slow delays every chunk of bytes forwarded in either direction by d until
// [Proxy.Heal], so that a request and its reply take at least 2*d.
func (p *Proxy) Slow(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.set(slow, d)
}

// Heal ends the current fault: bytes held by [Proxy.Stall] or [Proxy.Slow]
// are forwarded now and new connections are forwarded normally again.
// Connections closed by [Proxy.Drop] stay closed.
func (p *Proxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.set(healthy, 0)
}

// set switches to fault f and wakes the pipes waiting for a change. The
// caller holds p.mu.
func (p *Proxy) set(f fault, d time.Duration) {
	p.fault, p.delay = f, d
	close(p.changed)
	p.changed = make(chan struct{})
}

// close stops the proxy: no new links, the listener and every link closed,
// pending dials aborted, then it waits for all goroutines to end.
func (p *Proxy) close() {
	p.mu.Lock()
	p.closed = true
	for l := range p.links {
		l.close()
	}
	p.mu.Unlock()
	p.cancel()
	p.ln.Close()
	p.wg.Wait()
}

// accept runs in its own goroutine until the listener is closed.
func (p *Proxy) accept(t testing.TB) {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				// close waits for this goroutine, so the test is still running.
				t.Errorf("redistest: proxy accept: %v", err)
			}
			return
		}
		p.mu.Lock()
		refuse := p.fault == drop || p.closed
		if !refuse {
			p.wg.Add(1) // under p.mu, so never after close started waiting
		}
		p.mu.Unlock()
		if refuse {
			c.Close()
			continue
		}
		go p.serve(c)
	}
}

// serve connects client to the target and forwards both ways until either
// side closes, the link is dropped or the proxy is closed.
func (p *Proxy) serve(client net.Conn) {
	defer p.wg.Done()
	dialCtx, cancel := context.WithTimeout(p.ctx, ioTimeout)
	upstream, err := new(net.Dialer).DialContext(dialCtx, "tcp", p.target)
	cancel()
	if err != nil {
		client.Close()
		return
	}
	l := &link{client: client, upstream: upstream, done: make(chan struct{})}
	p.mu.Lock()
	if p.fault == drop || p.closed {
		l.close()
	}
	p.links[l] = struct{}{}
	p.mu.Unlock()

	toClient := make(chan struct{})
	go func() { // owned by serve, which waits for it below
		defer close(toClient)
		p.pipe(l, client, upstream)
	}()
	p.pipe(l, upstream, client)
	<-toClient

	p.mu.Lock()
	delete(p.links, l)
	p.mu.Unlock()
}

// pipe copies src to dst, chunk by chunk, waiting before each write for the
// current fault to allow it. It closes the link when it stops.
func (p *Proxy) pipe(l *link, dst, src net.Conn) {
	defer l.close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.wait(l) {
				return
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// wait blocks while the proxy stalls, or for the delay of Slow, and reports
// whether the chunk may be written: false once the link is closed. Each
// change of fault re-evaluates the wait, so Heal releases held chunks at once.
func (p *Proxy) wait(l *link) bool {
	for {
		p.mu.Lock()
		f, d, changed := p.fault, p.delay, p.changed
		p.mu.Unlock()

		var timeout <-chan time.Time // nil, so never ready, while stalled
		switch f {
		case stall:
		case slow:
			timeout = time.After(d)
		default:
			return true // with drop, the write fails on the closed link
		}
		select {
		case <-timeout:
			return true
		case <-changed:
		case <-l.done:
			return false
		}
	}
}
