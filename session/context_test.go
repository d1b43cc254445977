package session

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestWithoutMiddleware checks that every call on a context no
// middleware.Sessions ran for fails with ErrNoSession whose message names
// the mistake, instead of a bare "no session" that reads like a logged-out
// user.
func TestWithoutMiddleware(t *testing.T) {
	ctx := context.Background()
	_, createErr := Create(ctx, "alice")
	m := &Manager{}
	_, revokeErr := m.RevokeOthers(ctx)
	for name, err := range map[string]error{
		"Create":       createErr,
		"Put":          Put(ctx, "k", "v"),
		"Renew":        Renew(ctx),
		"Destroy":      Destroy(ctx),
		"LoadError":    LoadError(ctx),
		"RevokeOthers": revokeErr,
	} {
		if !errors.Is(err, ErrNoSession) || !strings.Contains(err.Error(), "wrap the handler with middleware.Sessions") {
			t.Errorf("%s without the middleware = %v, want ErrNoSession naming middleware.Sessions", name, err)
		}
	}
}
