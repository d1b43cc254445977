package session

import (
	"context"
	"errors"
	"slices"
)

// ErrNotFound reports a session id that is not among the user's sessions.
var ErrNotFound = errors.New("session: no such session for this user")

// List returns the live sessions of userID, oldest first, for a "your
// devices" page or an administrator. The session of the request in ctx, if
// it is among them, has Current set. The cost depends on the user's sessions
// only, never on the number of sessions in the store.
func (m *Manager) List(ctx context.Context, userID string) ([]Info, error) {
	if err := validUserID(userID); err != nil {
		return nil, err
	}
	ids, records, err := m.store.UserSessions(ctx, userID)
	if err != nil {
		return nil, storeError(err)
	}
	current := m.currentID(ctx)
	infos := make([]Info, 0, len(ids))
	for i, id := range ids {
		deadline, values, err := codec{}.Decode(records[i])
		if err != nil {
			// Load deletes such a record when its owner next comes; a list
			// only leaves it out.
			m.log.Warn("session: unreadable record left out of a list", "session", fingerprint(id), "error", err)
			continue
		}
		md, _ := values[metaKey].(meta)
		if md.UserID != userID {
			continue
		}
		infos = append(infos, Info{
			ID:        id,
			UserID:    md.UserID,
			CreatedAt: md.CreatedAt,
			ExpiresAt: deadline,
			LastSeen:  md.LastSeen,
			IP:        md.IP,
			UserAgent: md.UserAgent,
			Current:   id == current,
		})
	}
	return infos, nil
}

// Revoke ends the session id of userID, on every app instance: its token is
// unauthenticated from its very next request. It returns ErrNotFound when id
// is not one of the user's live sessions, so a user can only revoke their
// own. Revoking the session of ctx itself also expires the cookie in the
// response.
func (m *Manager) Revoke(ctx context.Context, userID, id string) error {
	if err := validUserID(userID); err != nil {
		return err
	}
	ids, _, err := m.store.UserSessions(ctx, userID)
	if err != nil {
		return storeError(err)
	}
	if !slices.Contains(ids, id) {
		return ErrNotFound
	}
	if err := m.store.RemoveUserSession(ctx, userID, id); err != nil {
		return storeError(err)
	}
	m.revoked(ctx, userID, []string{id})
	return nil
}

// RevokeAll ends every session of userID ("log out everywhere", or an
// administrator disabling an account) and returns how many it ended. A
// session created while it runs is either ended too or was created after it
// returned.
func (m *Manager) RevokeAll(ctx context.Context, userID string) (int, error) {
	if err := validUserID(userID); err != nil {
		return 0, err
	}
	ids, err := m.store.RemoveUserSessions(ctx, userID, "")
	if err != nil {
		return 0, storeError(err)
	}
	m.revoked(ctx, userID, ids)
	return len(ids), nil
}

// RevokeOthers ends every session of the logged-in user of ctx except the
// current one, as after a password change, and returns how many it ended.
// The current session is m's own in ctx, even under a nested Manager.
func (m *Manager) RevokeOthers(ctx context.Context) (int, error) {
	st := m.stateIn(ctx)
	if st == nil {
		return 0, ErrNoSession
	}
	st.mu.Lock()
	info := m.info(st)
	st.mu.Unlock()
	if info.UserID == "" {
		return 0, ErrNoSession
	}
	ids, err := m.store.RemoveUserSessions(ctx, info.UserID, info.ID)
	if err != nil {
		return 0, storeError(err)
	}
	m.revoked(ctx, info.UserID, ids)
	return len(ids), nil
}

// revoked emits the events of revoked sessions and, when m's session in ctx
// is among them, ends it in the request too: the request revoked its own
// session, so the response expires the cookie.
func (m *Manager) revoked(ctx context.Context, userID string, ids []string) {
	now := m.now()
	for _, id := range ids {
		m.emit(EventRevoked, userID, id, now)
	}
	st := m.stateIn(ctx)
	if st == nil {
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.stored != "" && slices.Contains(ids, idOf(st.stored)) {
		st.end()
	}
}

// currentID returns the id of m's session in ctx, or "".
func (m *Manager) currentID(ctx context.Context) string {
	st := m.stateIn(ctx)
	if st == nil {
		return ""
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.stored == "" {
		return ""
	}
	return idOf(st.stored)
}
