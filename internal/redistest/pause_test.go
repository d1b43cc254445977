//go:build unix

package redistest_test

import (
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/sessionkit/sessionkit/internal/redistest"
)

func TestPauseResume(t *testing.T) {
	s := redistest.Start(t)
	s.Do(t, "SET", "k", "v")

	s.Pause(t)
	c := dial(t, s.Addr(), 200*time.Millisecond) // the kernel still accepts
	if _, err := c.Do("GET", "k"); !isTimeout(err) {
		t.Fatalf("GET on a paused server: err = %v, want a timeout", err)
	}

	s.Resume(t)
	c = dial(t, s.Addr(), 200*time.Millisecond)
	if got, err := redis.String(c.Do("GET", "k")); err != nil || got != "v" {
		t.Fatalf("GET after Resume = %q, %v, want %q", got, err, "v")
	}
	s.Resume(t) // resuming a running server does nothing
}

// TestStopPaused checks that a paused server can be stopped, restarted and
// cleaned up without being resumed first.
func TestStopPaused(t *testing.T) {
	t.Run("Stop", func(t *testing.T) {
		s := redistest.Start(t)
		s.Pause(t)
		s.Stop(t)
		s.Restart(t)
		s.Do(t, "PING")
	})
	t.Run("Restart", func(t *testing.T) {
		s := redistest.Start(t)
		s.Pause(t)
		s.Restart(t)
		s.Do(t, "PING")
	})
	t.Run("Cleanup", func(t *testing.T) {
		s := redistest.Start(t)
		s.Pause(t) // left paused for the cleanup of Start
	})
}
