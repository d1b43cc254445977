package redistest

import (
	"net"
	"runtime"
	"testing"
)

// TestStopHoldsPort checks that the port of a stopped server stays its
// own until Restart: refused to clients, but no other process may bind it
// (a parallel test's redis-server would otherwise answer there), and that
// Restart and the end of the test give it back.
func TestStopHoldsPort(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("holdPort holds nothing on Windows")
	}
	var port int
	t.Run("server", func(t *testing.T) {
		s := Start(t)
		port = s.Port
		s.Stop(t)
		if portFree(port) {
			t.Fatalf("port %d of a stopped server can be bound by anyone", port)
		}
		if c, err := net.Dial("tcp", s.Addr()); err == nil {
			c.Close()
			t.Fatalf("a connection to the stopped server's port %d was accepted", port)
		}
		s.Restart(t) // which fails the test unless the server answers again
		s.Stop(t)
	})
	if !portFree(port) {
		t.Errorf("port %d still held after the test that stopped its server ended", port)
	}
}
