package session

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// EventKind names what happened to a session.
type EventKind string

// The kinds of Event.
const (
	EventCreated   EventKind = "created"   // Create logged a user in
	EventRenewed   EventKind = "renewed"   // Renew replaced the token
	EventDestroyed EventKind = "destroyed" // Destroy logged the user out
	EventRevoked   EventKind = "revoked"   // Revoke, RevokeAll, RevokeOthers or the session limit ended it
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
	Kind EventKind
	// UserID is the session's user; empty when it is not known, as for an
	// expired session whose record is gone.
	UserID string
	// SessionID is the session's id (see Info.ID), not its token.
	SessionID string
	Time      time.Time
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

// logLimiter lets a repeated log line through at most once per interval and
// counts the ones it holds back, so that a failure seen by every request
// (an outage) logs a line per interval, not one per request.
type logLimiter struct {
	interval time.Duration

	mu         sync.Mutex
	next       time.Time // when the next line may go out
	suppressed int       // lines held back since the last one
}

// do calls log with the number of lines held back since the last one, if a
// line may go out at now; otherwise it counts one more.
func (l *logLimiter) do(now time.Time, log func(suppressed int)) {
	l.mu.Lock()
	if now.Before(l.next) {
		l.suppressed++
		l.mu.Unlock()
		return
	}
	n := l.suppressed
	l.next, l.suppressed = now.Add(l.interval), 0
	l.mu.Unlock()
	log(n)
}
