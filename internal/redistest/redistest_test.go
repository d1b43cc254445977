package redistest_test

import (
	"maps"
	"os"
	"path/filepath"
	"testing"

	"github.com/gomodule/redigo/redis"

	"github.com/sessionkit/sessionkit/internal/redistest"
)

func TestStartDo(t *testing.T) {
	s := redistest.Start(t)
	if s.Port <= 0 || s.Port == 6379 {
		t.Fatalf("Port = %d, want a free port other than 6379", s.Port)
	}
	s.Do(t, "SET", "k", "v")
	if got, _ := redis.String(s.Do(t, "GET", "k"), nil); got != "v" {
		t.Fatalf("GET k = %q, want %q", got, "v")
	}
}

// TestCalls pins down what INFO commandstats reports: after ResetStats a
// single GET shows as exactly {"get": 1}, with neither the reset nor the
// INFO that reads the statistics in the way.
func TestCalls(t *testing.T) {
	s := redistest.Start(t)
	s.Do(t, "SET", "k", "v")

	s.ResetStats(t)
	if got := s.Calls(t); len(got) != 0 {
		t.Fatalf("Calls after ResetStats = %v, want none", got)
	}
	s.Do(t, "GET", "k")
	if got, want := s.Calls(t), map[string]int64{"get": 1}; !maps.Equal(got, want) {
		t.Fatalf("Calls = %v, want %v", got, want)
	}
	// Calls itself must not count: asking twice gives the same answer.
	if got, want := s.Calls(t), map[string]int64{"get": 1}; !maps.Equal(got, want) {
		t.Fatalf("Calls asked again = %v, want %v", got, want)
	}

	s.Do(t, "GETEX", "k", "PX", 1000)
	s.Do(t, "CLIENT", "ID")
	want := map[string]int64{"get": 1, "getex": 1, "client|id": 1}
	if got := s.Calls(t); !maps.Equal(got, want) {
		t.Fatalf("Calls = %v, want %v", got, want)
	}
	if got := s.TotalCalls(t); got != 3 {
		t.Fatalf("TotalCalls = %d, want 3", got)
	}
}

func TestRestart(t *testing.T) {
	s := redistest.Start(t)
	port := s.Port
	s.Do(t, "SET", "k", "v")

	// A connection opened before the restart sees the old server go away.
	c, err := redis.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Do("PING"); err != nil {
		t.Fatal(err)
	}

	s.Restart(t)
	if s.Port != port {
		t.Fatalf("Port after Restart = %d, want %d", s.Port, port)
	}
	if _, err := c.Do("PING"); err == nil {
		t.Fatal("PING on a connection to the stopped server succeeded, want an error")
	}
	if n, _ := redis.Int(s.Do(t, "EXISTS", "k"), nil); n != 0 {
		t.Fatalf("EXISTS k after Restart = %d, want 0 (persistence is off)", n)
	}

	s.Stop(t)
	s.Stop(t) // stopping twice is fine
	s.Restart(t)
	s.Do(t, "PING")
}

func TestStartArgs(t *testing.T) {
	s := redistest.Start(t, "--requirepass", "hunter2")
	c, err := redis.Dial("tcp", s.Addr(), redis.DialPassword("hunter2"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Do("PING"); err != nil {
		t.Fatalf("PING with password: %v", err)
	}
	s.Do(t, "SET", "k", "v") // the helper authenticates itself
	s.ResetStats(t)
	if got := s.TotalCalls(t); got != 0 {
		t.Fatalf("TotalCalls after ResetStats = %d, want 0", got)
	}
}

// TestStartConfigFile starts a server with a configuration file followed by
// many options, as StartSentinel does, and checks that all of them apply,
// also after a CONFIG REWRITE and a Restart.
func TestStartConfigFile(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "redis.conf")
	if err := os.WriteFile(conf, []byte("maxmemory-policy allkeys-lru\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := redistest.Start(t, conf, "--requirepass", "pw", "--hz", "20", "--databases", "4",
		"--timeout", "100", "--tcp-keepalive", "60", "--maxclients", "1000", "--maxmemory", "10mb")
	want := map[string]string{
		"maxmemory-policy": "allkeys-lru", "requirepass": "pw", "hz": "20", "databases": "4",
		"timeout": "100", "tcp-keepalive": "60", "maxclients": "1000", "maxmemory": "10485760",
	}
	if got := configGet(t, s, want); !maps.Equal(got, want) {
		t.Fatalf("CONFIG GET = %v, want %v", got, want)
	}

	s.Do(t, "CONFIG", "SET", "maxmemory-policy", "volatile-ttl")
	s.Do(t, "CONFIG", "REWRITE")
	s.Restart(t)
	want["maxmemory-policy"] = "volatile-ttl"
	if got := configGet(t, s, want); !maps.Equal(got, want) {
		t.Fatalf("CONFIG GET after Restart = %v, want %v", got, want)
	}
}

// configGet returns the values of the parameters named by the keys of
// params.
func configGet(t *testing.T, s *redistest.Server, params map[string]string) map[string]string {
	t.Helper()
	got := make(map[string]string)
	for name := range params {
		m, err := redis.StringMap(s.Do(t, "CONFIG", "GET", name), nil)
		if err != nil {
			t.Fatal(err)
		}
		maps.Copy(got, m)
	}
	return got
}
