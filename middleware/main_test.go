package middleware_test

import (
	"testing"

	"github.com/sessionkit/sessionkit/internal/leakcheck"
)

// TestMain fails the package if a test leaves a goroutine behind: a pool,
// a proxy or a request that never ended.
func TestMain(m *testing.M) {
	leakcheck.VerifyTestMain(m)
}
