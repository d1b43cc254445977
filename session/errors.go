package session

import "errors"

var (
	// ErrStoreUnavailable reports that the session store could not be asked
	// within the configured timeout. Protected routes answer 503 with
	// Retry-After; a user is never logged out by an outage.
	ErrStoreUnavailable = errors.New("session: store unavailable")

	// ErrNoSession reports that the request context carries no session state:
	// the handler does not run behind the Sessions middleware.
	ErrNoSession = errors.New("session: no session in context")

	// ErrReservedKey reports a value key that is empty or starts with "__",
	// the prefix sessionkit keeps for itself.
	ErrReservedKey = errors.New("session: empty or reserved value key")
)
