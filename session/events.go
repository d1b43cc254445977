package session

import (
	"context"
	"log/slog"
	"time"
)

// EventKind names what happened to a session.
type EventKind string

// The kinds of Event.
const (
	EventCreated   EventKind = "created"   // Create logged a user in
	EventRenewed   EventKind = "renewed"   // Renew replaced the token
	EventDestroyed EventKind = "destroyed" // Destroy logged the user out, or a login in the same request (Create) replaced the session
	EventRevoked   EventKind = "revoked"   // Revoke, RevokeAll, RevokeOthers or the session limit ended it
	// EventMigrated reports a session of scs that came over, signed in
	// (Config.FromSCS): its user signed in with scs, before the migration,
	// and no credential was checked now, so an audit log or a "new
	// sign-in" alert tells it apart from Create's EventCreated.
	EventMigrated EventKind = "migrated"
	// EventExpired reports a request that came with a token past its
	// absolute deadline. Anyone holding such a token can send it again, so
	// it may repeat; it is logged at Debug level, for counting rather than
	// reading. A token whose record is gone (logged out, revoked, idle) is
	// no event: what ended it was reported when it happened.
	EventExpired EventKind = "expired"
)

// Event reports a change of a session's life, for audit logs. It never
// carries the token.
type Event struct {
	// Kind says what happened.
	Kind EventKind
	// UserID is the session's user; empty when it is not known, as for an
	// expired session whose record is gone.
	UserID string
	// SessionID is the session's id (see Info.ID), not its token.
	SessionID string
	// Time is when it happened (when the Manager saw it happen, for an
	// expiry), not when the session was created.
	Time time.Time
}

// emit logs an event, with a fingerprint of the session id only, and hands
// it to Config.OnEvent. Expiries go to Debug: see EventExpired.
func (m *Manager) emit(kind EventKind, userID, id string, at time.Time) {
	level := slog.LevelInfo
	if kind == EventExpired {
		level = slog.LevelDebug
	}
	m.log.Log(context.Background(), level, "session: "+string(kind), "session", fingerprint(id), "user", userID)
	if m.cfg.OnEvent != nil {
		m.cfg.OnEvent(Event{Kind: kind, UserID: userID, SessionID: id, Time: at})
	}
	if m.cfg.Metrics != nil {
		m.cfg.Metrics.SessionEvent(kind)
	}
}
