package session

import "time"

// EventKind names what happened to a session.
type EventKind string

// The kinds of Event.
const (
	EventCreated   EventKind = "created"   // Create logged a user in
	EventRenewed   EventKind = "renewed"   // Renew replaced the token
	EventDestroyed EventKind = "destroyed" // Destroy logged the user out
	EventRevoked   EventKind = "revoked"   // Revoke, RevokeAll, RevokeOthers or the session limit ended it
	EventExpired   EventKind = "expired"   // a request came with a session that had timed out or been ended elsewhere
)

// Event reports a change of a session's life, for audit logs. It never
// carries the token.
type Event struct {
	Kind EventKind
	// UserID is the session's user; empty when it is not known, as for an
	// expired session whose record is gone.
	UserID string
	// SessionID is the session's id (see Info.ID), not its token.
	SessionID string
	Time      time.Time
}

// emit logs an event, with a fingerprint of the session id only, and hands
// it to Config.OnEvent.
func (m *Manager) emit(kind EventKind, userID, id string, at time.Time) {
	m.log.Info("session: "+string(kind), "session", fingerprint(id), "user", userID)
	if m.cfg.OnEvent != nil {
		m.cfg.OnEvent(Event{Kind: kind, UserID: userID, SessionID: id, Time: at})
	}
}
