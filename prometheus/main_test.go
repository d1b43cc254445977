package sessionkitprom

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind: a pool,
// a server or a request that never ended.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
