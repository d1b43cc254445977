package session

import (
	"errors"
	"fmt"
)

var (
	// ErrStoreUnavailable reports that the session store could not be asked
	// within the configured timeout. Protected routes answer 503 with
	// Retry-After; a user is never logged out by an outage.
	ErrStoreUnavailable = errors.New("session: store unavailable")

	// ErrEndUnconfirmed is what LoadError reports, beside
	// ErrStoreUnavailable, for a request whose token the store found no
	// session for but could not vouch that it has ended: with
	// redisstore.Config.WaitReplicas, on a master without that many
	// replicas, such as one that a failover has just replaced, where the
	// session may still live on the master that took over. Serve the
	// request as in an outage, never as signed out (RequireAuth answers
	// 503); a login (Create) on it goes on, so a login page may show its
	// form.
	ErrEndUnconfirmed = errors.New("session: no session found, but the store could not confirm that it has ended")

	// ErrContention reports a write that, within the store's time budget,
	// lost every race against concurrent writes to the same session or
	// user, or lost one and then ran out of time, or waited its turn behind
	// writes that did. It is no outage: the writes that won got through.
	// A slow or paused Redis during a burst of such writes gives it too,
	// and so does a Commit whose anonymous session a login on the same
	// browser took, with its values, while the request changed it.
	// The request may be tried again.
	ErrContention = errors.New("session: too many concurrent changes")

	// ErrNoSession reports that there is no session to act on: the request
	// context carries no session state (the handler does not run behind the
	// Sessions middleware), the session is anonymous, or it was ended
	// (logged out, revoked, renewed or expired) by another request. Put
	// also returns it in a request whose token leads to no session, which
	// may not start an anonymous one (see the package documentation), and,
	// as ErrCrossSite, in a cross-site request that SameSite kept the
	// cookie from.
	ErrNoSession = errors.New("session: no session")

	// ErrCrossSite is what Put returns when it would start a session in a
	// cross-site request that came without the session cookie, where the
	// cookie's SameSite keeps it from such requests: the browser may hold
	// a signed-in cookie, which the new one would replace. It matches
	// ErrNoSession. Destroy does not lift it; a request of the same site
	// does: under Strict, a page of yours the cross-site link lands on
	// that moves on to the page that stores the value (a meta refresh);
	// under Lax, a 303 from a cross-site POST (an OIDC form_post
	// callback, a payment provider's return) to a GET, which carries the
	// cookie. A login (Create) in the request lifts it too.
	ErrCrossSite = fmt.Errorf("%w: a cross-site request without the session cookie, which the cookie's SameSite keeps from such requests, cannot start a session: its cookie would replace one the browser holds", ErrNoSession)

	// ErrResponseStarted reports a change asked for after the response
	// began (after the first Write, WriteHeader or Flush): the session was
	// committed then, and a later change could not reach the client.
	ErrResponseStarted = errors.New("session: response already started: log in, renew, put or log out before the handler's first Write, WriteHeader or Flush")

	// ErrReservedKey reports a value key that is empty, starts with "__",
	// the prefix sessionkit keeps for itself, or is not valid UTF-8. The
	// error for a key that is not valid UTF-8 matches ErrInvalidValue too:
	// the record, JSON, cannot keep such a key.
	ErrReservedKey = errors.New(`session: value key empty, starting with "__" (kept for sessionkit) or not valid UTF-8`)

	// ErrInvalidUserID reports a user id that is empty, not valid UTF-8,
	// longer than MaxUserIDLength bytes, or that begins as a key with a
	// hash tag does ("{", four bytes, "}", then more).
	ErrInvalidUserID = errors.New("session: invalid user id")

	// ErrInvalidValue reports a value that Put cannot store so that Get
	// returns it unchanged, such as a NaN or a time outside years 0-9999,
	// or that would take the session's record over Config.MaxRecordBytes.
	// Commit, Create and Renew return it, and write nothing, when values
	// the request put would leave the record they write over that limit,
	// or when a value cannot be encoded into the record at all (which Put
	// refuses first): never ErrStoreUnavailable, since no retry mends it.
	ErrInvalidValue = errors.New("session: value cannot be stored")
)

// errKeyNotUTF8 reports a value key that is not valid UTF-8. It matches
// ErrReservedKey, as every key Put and Remove refuse does, and
// ErrInvalidValue, as every input Put refuses because the record could not
// give it back does.
var errKeyNotUTF8 error = keyNotUTF8{}

// keyNotUTF8 is the type of errKeyNotUTF8.
type keyNotUTF8 struct{}

func (keyNotUTF8) Error() string { return "session: value key is not valid UTF-8" }

// Is reports whether target is ErrReservedKey or ErrInvalidValue.
func (keyNotUTF8) Is(target error) bool {
	return target == ErrReservedKey || target == ErrInvalidValue
}

// MaxUserIDLength is the longest user id accepted, in bytes.
const MaxUserIDLength = 256
