//go:build unix

package redistest

import (
	"syscall"
	"testing"
)

// Pause freezes the server with SIGSTOP, as a long GC pause, a stuck disk or
// a hung VM would: connections stay open and new ones are accepted by the
// kernel, but nothing is answered until [Server.Resume]. Stop, Restart and
// the cleanup of Start work on a paused server; they kill it without resuming
// it first.
func (s *Server) Pause(t testing.TB) {
	t.Helper()
	s.signal(t, syscall.SIGSTOP)
}

// Resume lets a server frozen by [Server.Pause] run again with SIGCONT; it
// then answers the requests that waited. Resuming a running server does
// nothing.
func (s *Server) Resume(t testing.TB) {
	t.Helper()
	s.signal(t, syscall.SIGCONT)
}

// signal sends sig to the running server process.
func (s *Server) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if s.proc == nil {
		t.Fatalf("redistest: %v: the server on port %d is stopped", sig, s.Port)
	}
	if err := s.proc.Process.Signal(sig); err != nil {
		t.Fatalf("redistest: %v: %v", sig, err)
	}
}
