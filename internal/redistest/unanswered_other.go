//go:build !unix

package redistest

import "testing"

// Unanswered skips the test where sockets are not Unix's: it needs a
// listen backlog that drops connections.
func Unanswered(t testing.TB) string {
	t.Helper()
	t.Skip("redistest: Unanswered needs a Unix socket backlog")
	return ""
}
