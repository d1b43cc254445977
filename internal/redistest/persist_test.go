package redistest_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/sessionkit/sessionkit/internal/redistest"
)

// TestRestartKeepsData kills a server with SIGKILL after writes that were
// persisted and checks that Restart reloads them from the same directory.
func TestRestartKeepsData(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		persist func(t *testing.T, s *redistest.Server) // makes the writes durable
	}{
		{"aof always", redistest.AppendOnly("always"), func(*testing.T, *redistest.Server) {}},
		{"aof everysec", redistest.AppendOnly("everysec"), waitAOFWritten},
		{"rdb save", nil, func(t *testing.T, s *redistest.Server) { s.Do(t, "SAVE") }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := redistest.Start(t, tc.args...)
			port := s.Port
			s.Do(t, "MSET", keyValues(100)...)
			tc.persist(t, s)

			s.Restart(t)
			if s.Port != port {
				t.Fatalf("Port after Restart = %d, want %d", s.Port, port)
			}
			if n, _ := redis.Int(s.Do(t, "DBSIZE"), nil); n != 100 {
				t.Fatalf("DBSIZE after Restart = %d, want 100", n)
			}
			if got, _ := redis.String(s.Do(t, "GET", "k42"), nil); got != "v42" {
				t.Fatalf("GET k42 after Restart = %q, want %q", got, "v42")
			}
		})
	}
}

// TestRestartWaitsForLoading makes the restarted server load its RDB file
// slowly (key-load-delay is a hidden Redis debug setting, in microseconds
// per key) while answering -LOADING, and checks that Restart returns only
// once data commands work.
func TestRestartWaitsForLoading(t *testing.T) {
	s := redistest.Start(t,
		"--key-load-delay", "300",
		"--loading-process-events-interval-bytes", "1024", // answer while loading
	)
	s.Do(t, "MSET", keyValues(1000)...)
	s.Do(t, "SAVE")

	s.Restart(t)
	if n, _ := redis.Int(s.Do(t, "DBSIZE"), nil); n != 1000 {
		t.Fatalf("DBSIZE after Restart = %d, want 1000", n)
	}
}

// keyValues returns the MSET arguments k0 v0 k1 v1 ... for n keys.
func keyValues(n int) []any {
	args := make([]any, 0, 2*n)
	for i := range n {
		args = append(args, fmt.Sprint("k", i), fmt.Sprint("v", i))
	}
	return args
}

// waitAOFWritten waits until the server has written its AOF buffer to the
// file (INFO persistence reports aof_buffer_length:0). With appendfsync
// everysec Redis may postpone that write, while a background fsync runs,
// after it has replied; once written, the data survives SIGKILL.
func waitAOFWritten(t *testing.T, s *redistest.Server) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		info, _ := redis.String(s.Do(t, "INFO", "persistence"), nil)
		if strings.Contains(info, "\naof_buffer_length:0\r") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("AOF buffer not written within 5s:\n%s", info)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
