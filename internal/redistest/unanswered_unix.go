//go:build unix

package redistest

import (
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// Unanswered returns a loopback address at which connection attempts get
// no answer and time out, as to a host that is down or behind a firewall
// that drops the traffic: a socket that listens with a backlog of zero and
// never accepts, its one place in the queue taken by a connection of its
// own. Linux drops the SYNs that find the accept queue full; the dialler
// sends them again until its timeout. The socket closes at cleanup.
func Unanswered(t testing.TB) string {
	t.Helper()
	syscall.ForkLock.RLock()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err == nil {
		syscall.CloseOnExec(fd) // as in holdPort
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
	// The accept queue holds backlog+1 connections: fill it.
	filler, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { filler.Close() })
	if c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
		c.Close()
		t.Fatalf("redistest: a connection to %s was answered, want none", addr)
	}
	return addr
}
