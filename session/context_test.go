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

// TestOtherManagersMiddleware checks that a Manager's method on a request
// that only another Manager's middleware ran for says that, rather than
// that no middleware ran.
func TestOtherManagersMiddleware(t *testing.T) {
	ctx := context.WithValue(context.Background(), stateKey{}, &state{m: &Manager{}})
	_, err := (&Manager{}).RevokeOthers(ctx)
	if !errors.Is(err, ErrNoSession) || !strings.Contains(err.Error(), "this Manager's middleware.Sessions did not run") {
		t.Errorf("RevokeOthers under another Manager's middleware only = %v, want ErrNoSession saying this Manager's did not run", err)
	}
}
