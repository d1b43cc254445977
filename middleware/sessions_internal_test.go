package middleware

import (
	"net/http"
	"testing"
)

// TestDiscardedHeadersCanonical checks that discardedHeaders holds the keys
// as Header.Set stores them, which the commit looks up without
// canonicalizing them.
func TestDiscardedHeadersCanonical(t *testing.T) {
	for _, k := range discardedHeaders {
		if c := http.CanonicalHeaderKey(k); c != k {
			t.Errorf("discardedHeaders holds %q, want %q", k, c)
		}
	}
}
