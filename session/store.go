package session

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Store keeps session records, keyed by session id (the hash of the token,
// never the token). redisstore.Store implements it on Redis. Records expire
// by themselves after their time to live; every method must honour ctx.
type Store interface {
	// Load returns the record stored under id and whether there is one. A
	// ttl > 0 also resets the record's time to live to ttl in the same
	// command; ttl == 0 only reads.
	Load(ctx context.Context, id string, ttl time.Duration) (record []byte, found bool, err error)

	// Insert stores a new record under id with the ttl, only if no record
	// exists under id. It reports whether it wrote.
	Insert(ctx context.Context, id string, record []byte, ttl time.Duration) (bool, error)

	// Update replaces the record under id, with the ttl, only while a record
	// exists under id. It reports whether it wrote. The Manager uses it for
	// a record this request created, which no other request can have
	// changed yet.
	Update(ctx context.Context, id string, record []byte, ttl time.Duration) (bool, error)

	// Merge replaces the record under id with merge(current record), with
	// the ttl, only while a record exists under id, so that a request in
	// flight during logout cannot bring the session back. It must be
	// atomic: if another write lands between reading and writing, it reads
	// again and merges again, so concurrent changes to different values
	// all survive. It reports whether it wrote.
	Merge(ctx context.Context, id string, ttl time.Duration, merge func(current []byte) ([]byte, error)) (bool, error)

	// Remove deletes the record under id. Removing a missing id is not an
	// error.
	Remove(ctx context.Context, id string) error

	// AddUserSession stores a new session of userID in one round trip:
	// the record under id with the ttl, only if id is free; id in the
	// user's index, which lists the user's sessions by absolute deadline;
	// and the removal of the record of replaced ("" for none). With
	// limit > 0 it also removes the user's oldest sessions so that at most
	// limit remain, counting the new one, and returns their ids. A failure
	// part way must never leave the replaced session alive beside the new
	// one, nor a usable session outside the index; with a limit, choosing
	// the sessions to revoke and inserting must be one atomic step.
	AddUserSession(ctx context.Context, userID, id string, record []byte, ttl time.Duration, deadline time.Time, limit int, replaced string) (revoked []string, err error)

	// RemoveUserSession deletes the record under id and takes id out of
	// the index of userID; an empty userID is an anonymous session, which
	// has no index. Removing a missing id is not an error.
	RemoveUserSession(ctx context.Context, userID, id string) error

	// UserSessions returns the ids and records of the live sessions of
	// userID, at a cost that depends on that user's sessions only.
	UserSessions(ctx context.Context, userID string) (ids []string, records [][]byte, err error)

	// RemoveUserSessions deletes every session of userID but keep ("" for
	// none) and returns their ids. A session added while it runs is either
	// deleted too or was added after it returned.
	RemoveUserSessions(ctx context.Context, userID, keep string) (removed []string, err error)
}

// errGone reports that a session's record disappeared while a request was
// using it: it was logged out, revoked or expired meanwhile.
var errGone = errors.New("session: session ended during the request")

// scsStore adapts a Store to the scs.CtxStore that scs.SessionManager calls.
// scs hands it tokens; it keys the Store by the token's id. It reads the
// request's state from ctx, which the Manager always puts there before
// calling scs, and is called with that state's lock held.
type scsStore struct {
	m *Manager
}

// FindCtx implements scs.CtxStore. It extends the idle deadline in the same
// command that reads the record.
func (a scsStore) FindCtx(ctx context.Context, token string) ([]byte, bool, error) {
	st := stateFrom(ctx)
	ttl := time.Duration(0)
	if a.m.cfg.IdleTimeout > 0 {
		ttl = min(a.m.cfg.IdleTimeout, st.deadline.Sub(a.m.now()))
	}
	b, found, err := a.m.store.Load(ctx, idOf(token), ttl)
	if err != nil {
		return nil, false, unavailable(err)
	}
	return b, found, nil
}

// CommitCtx implements scs.CtxStore. The Manager calls scs's Commit only
// for a new token (changes to a stored session go through Manager.merge), so
// this inserts: only if the id is free, together with the user's index, the
// session limit and the removal of the record the new token replaces.
func (a scsStore) CommitCtx(ctx context.Context, token string, b []byte, deadline time.Time) error {
	st := stateFrom(ctx)
	now := a.m.now()
	ttl, ok := a.m.ttl(deadline, now)
	if !ok {
		return errGone
	}
	id := idOf(token)
	if st.userID == "" {
		ok, err := a.m.store.Insert(ctx, id, b, ttl)
		switch {
		case err != nil:
			return unavailable(err)
		case !ok:
			// 256 random bits never collide; a taken id means a broken random source.
			return errors.New("session: new session id already taken")
		}
	} else {
		revoked, err := a.m.store.AddUserSession(ctx, st.userID, id, b, ttl, deadline, st.limit, st.replaced)
		if err != nil {
			return unavailable(err)
		}
		st.replaced = ""
		for _, rid := range revoked {
			a.m.emit(EventRevoked, st.userID, rid, now)
		}
	}
	st.stored, st.inserted = token, true
	return nil
}

// DeleteCtx implements scs.CtxStore. While a user's token is being renewed
// the deletion is left to the insert of the new token, which does both in
// one round trip; otherwise the record goes at once.
func (a scsStore) DeleteCtx(ctx context.Context, token string) error {
	if token == "" {
		return nil
	}
	st := stateFrom(ctx)
	if st.renewing && st.userID != "" {
		st.replaced = idOf(token)
		return nil
	}
	if err := a.m.store.RemoveUserSession(ctx, st.userID, idOf(token)); err != nil {
		return unavailable(err)
	}
	return nil
}

// errNoContext is returned by the context-free scs.Store methods. scs calls
// the context forms whenever a store has them, so these only satisfy the
// interface.
var errNoContext = errors.New("session: scs store called without a context")

// Find implements scs.Store; see errNoContext.
func (scsStore) Find(string) ([]byte, bool, error) { return nil, false, errNoContext }

// Commit implements scs.Store; see errNoContext.
func (scsStore) Commit(string, []byte, time.Time) error { return errNoContext }

// Delete implements scs.Store; see errNoContext.
func (scsStore) Delete(string) error { return errNoContext }

// unavailable wraps a store error so that callers can test it with
// errors.Is(err, ErrStoreUnavailable).
func unavailable(err error) error {
	return fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
}

// ttl returns the time to live of a record written at now: the idle
// timeout, capped at the absolute deadline. ok is false past the deadline.
func (m *Manager) ttl(deadline, now time.Time) (ttl time.Duration, ok bool) {
	ttl = deadline.Sub(now)
	if ttl <= 0 {
		return 0, false
	}
	if m.cfg.IdleTimeout > 0 {
		ttl = min(ttl, m.cfg.IdleTimeout)
	}
	return ttl, true
}
