package redisstore

import (
	"testing"

	"github.com/sessionkit/sessionkit/internal/leakcheck"
	"github.com/sessionkit/sessionkit/internal/redistest"
)

// TestMain checks that no test leaves a goroutine behind: every pool is
// closed and every redis-server reaped in t.Cleanup. The exception is the
// cleanup goroutine of the memstore that scs.New installs by default (the
// scs test replaces that store): scs's StopCleanup races with the start of
// that goroutine (a data race under -race), so it cannot be stopped safely.
// ExampleOpen runs against a redis-server of its own (REDIS_URL).
func TestMain(m *testing.M) {
	leakcheck.Main(func() int { return redistest.RunWithServer(m, "ExampleOpen") },
		"github.com/alexedwards/scs/v2/memstore.(*MemStore).startCleanup",
	)
}
