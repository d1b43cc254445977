package redistest_test

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/sessionkit/sessionkit/internal/leakcheck"
)

// TestMain fails the run if any test leaves a goroutine behind: the helper
// owns the goroutines that reap servers and run proxies, and must end them.
func TestMain(m *testing.M) {
	leakcheck.VerifyTestMain(m)
}

// verifyNone checks for leaked goroutines once the test and all its cleanups
// are done; call it first, so that its cleanup runs last.
func verifyNone(t *testing.T) {
	t.Helper()
	t.Cleanup(func() { leakcheck.VerifyNone(t) })
}

// dial connects to addr with every timeout set to timeout, failing the test
// on error; the connection is closed when the test ends.
func dial(t *testing.T, addr string, timeout time.Duration) redis.Conn {
	t.Helper()
	c, err := redis.Dial("tcp", addr,
		redis.DialConnectTimeout(timeout),
		redis.DialReadTimeout(timeout),
		redis.DialWriteTimeout(timeout),
	)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// isTimeout reports whether err is a network timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
