package scscompat_test

import (
	"testing"
	"time"

	"github.com/sessionkit/sessionkit/internal/leakcheck"
	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/redisstore"
)

// TestMain fails the package if a test leaves a goroutine behind.
func TestMain(m *testing.M) {
	leakcheck.VerifyTestMain(m)
}

// openStore opens a Store on srv, closed when the test ends.
func openStore(t *testing.T, srv *redistest.Server) *redisstore.Store {
	t.Helper()
	store, err := redisstore.Open(redisstore.Config{Addr: srv.Addr(), Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store
}
