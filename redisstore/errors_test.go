package redisstore_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/redisstore"
)

// TestErrorClasses provokes each kind of failure on real redis-servers and
// checks its class: ErrUnavailable for what passes by itself, ErrRefused for
// what needs the configuration fixed.
func TestErrorClasses(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name  string
		setup func(t *testing.T) (*redisstore.Store, func() error)
		want  error
		reply string // the Redis error code the failure must carry, if any
	}{
		{"redis stopped", func(t *testing.T) (*redisstore.Store, func() error) {
			srv := redistest.Start(t)
			s := open(t, srv, redisstore.Config{})
			srv.Stop(t)
			return s, func() error { _, _, err := s.Load(ctx, "x", 0); return err }
		}, redisstore.ErrUnavailable, ""},
		{"NOAUTH", func(t *testing.T) (*redisstore.Store, func() error) {
			s := open(t, redistest.Start(t, "--requirepass", "pw-1"), redisstore.Config{})
			return s, func() error { _, _, err := s.Load(ctx, "x", 0); return err }
		}, redisstore.ErrRefused, "NOAUTH"},
		{"WRONGPASS", func(t *testing.T) (*redisstore.Store, func() error) {
			s := open(t, redistest.Start(t, "--requirepass", "pw-1"), redisstore.Config{Password: "wrong-pw-2"})
			return s, func() error { _, _, err := s.Load(ctx, "x", 0); return err }
		}, redisstore.ErrRefused, "WRONGPASS"},
		{"NOPERM", func(t *testing.T) (*redisstore.Store, func() error) {
			srv := redistest.Start(t, "--user", "app", "on", ">pw-3", "~other:*", "+@all")
			s := open(t, srv, redisstore.Config{Username: "app", Password: "pw-3"})
			return s, func() error { _, _, err := s.Load(ctx, "x", 0); return err }
		}, redisstore.ErrRefused, "NOPERM"},
		{"READONLY", func(t *testing.T) (*redisstore.Store, func() error) {
			primary := redistest.Start(t)
			replica := redistest.Start(t, "--replicaof", "127.0.0.1", strconv.Itoa(primary.Port))
			s := open(t, replica, redisstore.Config{})
			return s, func() error { _, err := s.Insert(ctx, "x", []byte("r"), time.Minute); return err }
		}, redisstore.ErrUnavailable, "READONLY"},
		{"MASTERDOWN", func(t *testing.T) (*redisstore.Store, func() error) {
			replica := redistest.Start(t, "--replicaof", "127.0.0.1", strconv.Itoa(closedPort(t)), "--replica-serve-stale-data", "no")
			s := open(t, replica, redisstore.Config{})
			return s, func() error { _, _, err := s.Load(ctx, "x", 0); return err }
		}, redisstore.ErrUnavailable, "MASTERDOWN"},
		{"OOM", func(t *testing.T) (*redisstore.Store, func() error) {
			// An empty server already uses more than 1 byte: every write is refused.
			srv := redistest.Start(t, "--maxmemory", "1", "--maxmemory-policy", "noeviction")
			s := open(t, srv, redisstore.Config{})
			return s, func() error { _, err := s.Insert(ctx, "x", []byte("r"), time.Minute); return err }
		}, redisstore.ErrUnavailable, "OOM"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, call := tc.setup(t)
			err := call()
			if !errors.Is(err, tc.want) {
				t.Fatalf("error = %v, want %v", err, tc.want)
			}
			other := redisstore.ErrRefused
			if tc.want == redisstore.ErrRefused {
				other = redisstore.ErrUnavailable
			}
			if errors.Is(err, other) {
				t.Errorf("error %v is both classes", err)
			}
			if !strings.Contains(err.Error(), tc.reply) {
				t.Errorf("error %q does not carry the %s reply", err, tc.reply)
			}
			for _, secret := range []string{"pw-1", "wrong-pw-2", "pw-3"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q shows a password", err)
				}
			}
		})
	}
}

// TestLoadingIsUnavailable restarts a server that loads its snapshot slowly
// (key-load-delay, in microseconds per key) while a store keeps reading:
// the -LOADING replies it gets meanwhile are ErrUnavailable.
func TestLoadingIsUnavailable(t *testing.T) {
	_, err := provokeLoading(t) // see troubleshooting_test.go
	if !errors.Is(err, redisstore.ErrUnavailable) || errors.Is(err, redisstore.ErrRefused) {
		t.Errorf("LOADING error = %v, want ErrUnavailable only", err)
	}
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}
