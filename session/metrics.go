package session

// Metrics receives what a Manager counts, for a metrics system (the module
// github.com/sessionkit/sessionkit/prometheus implements it). Its methods
// are called synchronously on the request's goroutine and must be quick
// and safe for concurrent use. A Manager without Metrics (the default)
// pays one nil check at each place it would call one.
type Metrics interface {
	// SessionEvent counts a session event: created, renewed, destroyed,
	// revoked, expired when a request noticed it, or migrated (the same
	// events as Config.OnEvent).
	SessionEvent(kind EventKind)

	// TokenRejected counts a token refused before any store command,
	// by reason: a brute-force or misconfiguration signal.
	TokenRejected(reason RejectReason)

	// ServedAnonymous counts a request that carried a token and was served
	// without its session because the store was unavailable.
	ServedAnonymous()

	// CommitFailed counts a request whose session changes could not be
	// saved (mostly ErrStoreUnavailable or ErrContention, which
	// middleware.Sessions answers with 503; also a record that would pass
	// Config.MaxRecordBytes, answered with 500, or a value that cannot be
	// encoded).
	CommitFailed()
}

// RejectReason says why a token was refused without asking the store.
type RejectReason string

// The reasons of Metrics.TokenRejected.
const (
	// RejectOversized: longer than any token this package signs.
	RejectOversized RejectReason = "oversized"
	// RejectMalformed: not in the signed token's format at all.
	RejectMalformed RejectReason = "malformed"
	// RejectBadSignature: its MAC matches no key of Config.Keys or
	// Config.RetiredKeys: forged, altered, or signed by a key that is
	// no longer known.
	RejectBadSignature RejectReason = "bad_signature"
	// RejectRetiredKey: signed by a key of Config.RetiredKeys, which no
	// longer verifies: a client still holding a token from before a key
	// was retired, or an instance still signing with it.
	RejectRetiredKey RejectReason = "retired_key"
)

// A validly signed token past its deadline is no rejection but a session
// event, EventExpired.
