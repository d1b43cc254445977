package session

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// ErrNotFound reports a session id that is not among the user's sessions.
var ErrNotFound = errors.New("session: no such session for this user")

// List returns the live sessions of userID, oldest first (by creation
// time), for a "your devices" page or an administrator. The session of the
// request in ctx, if it is among them, has Current set. The cost depends on
// the user's sessions only, never on the number of sessions in the store.
func (m *Manager) List(ctx context.Context, userID string) ([]Info, error) {
	if err := validUserID(userID); err != nil {
		return nil, err
	}
	return m.list(ctx, userID, m.currentID(ctx))
}

// list returns the live sessions of userID, with Current set on the one
// whose id is current. It takes no lock: callers may hold a state's.
func (m *Manager) list(ctx context.Context, userID, current string) ([]Info, error) {
	ids, records, err := m.store.UserSessions(ctx, userID)
	if err == nil {
		err = m.vouch(ctx, userID)
	}
	if err != nil {
		return nil, storeError(err)
	}
	now := m.now()
	infos := make([]Info, 0, len(ids))
	for i, id := range ids {
		deadline, values, err := m.codec.Decode(records[i])
		if err != nil {
			// Load deletes such a record when its owner next comes; a list
			// only leaves it out.
			m.log.Warn("session: unreadable record left out of a list", "session", fingerprint(id), "error", err)
			continue
		}
		md, _ := values[metaKey].(meta)
		// Past its deadline, a session is over whatever its record's time
		// to live says (another instance's clock, or Lifetime, set it, and
		// Load refuses it all the same).
		deadline = m.capped(deadline, md)
		if md.UserID != userID || !deadline.After(now) {
			continue
		}
		infos = append(infos, Info{
			ID:        id,
			FirstID:   lineage(id, md),
			UserID:    md.UserID,
			CreatedAt: md.CreatedAt,
			ExpiresAt: deadline,
			LastSeen:  md.LastSeen,
			IP:        md.IP,
			UserAgent: md.UserAgent,
			Device:    m.codec.device(md),
			Current:   id == current,
		})
	}
	// The index orders sessions by deadline, which follows the creation
	// time only while every instance has the same Lifetime, and a store
	// with a TagKey lists a user's sessions from before it apart.
	slices.SortStableFunc(infos, func(a, b Info) int { return a.CreatedAt.Compare(b.CreatedAt) })
	// With a TagKey, a session renewed as the store listed it, or one of
	// before the TagKey, may be listed more than once (see
	// taggedStore.UserSessions): the last is its newest id.
	for i := 1; i < len(infos); i++ {
		for j := i - 1; j >= 0 && infos[j].CreatedAt.Equal(infos[i].CreatedAt); j-- {
			if infos[j].FirstID == infos[i].FirstID {
				infos[i].Current = infos[i].Current || infos[j].Current
				infos = slices.Delete(infos, j, j+1)
				i--
				break
			}
		}
	}
	return infos, nil
}

// Revoke ends the session id of userID, on every app instance: its token is
// unauthenticated from its very next request. id is the session's Info.ID
// or its Info.FirstID, which a renewal keeps: a list shown before the
// session renewed still revokes it by FirstID. It returns ErrNotFound when
// id is neither of one of the user's live sessions, so a user can only
// revoke their own, and without a store call when id cannot be a session's
// (see Info.ID). If the session is renewed while Revoke runs, Revoke
// ends it under its new token. An error may come after the store deleted
// the session (too few replicas confirmed, say): Config.OnEvent hears of
// it as revoked all the same. Revoking the session of ctx itself also
// expires the cookie in the response, unless the response has started
// (the session ends all the same; Destroy reports that case with
// ErrResponseStarted, Revoke does not). Like Destroy, it is not stopped by
// ctx's cancellation or deadline: the store bounds each of its calls.
func (m *Manager) Revoke(ctx context.Context, userID, id string) error {
	if err := validUserID(userID); err != nil {
		return err
	}
	if !validID(id) {
		return ErrNotFound // no session has it: nothing to ask the store
	}
	ctx = ending(ctx)
	ids, records, err := m.store.UserSessions(ctx, userID)
	if err != nil {
		return storeError(err)
	}
	i, md := m.member(ids, records, userID, id)
	if i < 0 {
		// A revocation sent again after one that failed unconfirmed
		// must not be answered as done by a master that a failover has
		// just replaced.
		if err := m.vouch(ctx, userID); err != nil {
			return storeError(err)
		}
		return ErrNotFound
	}
	line := lineage(ids[i], md)
	ended, err := m.endSession(ctx, userID, ids[i], line, false)
	if ended != "" {
		m.revoked(ctx, userID, []string{ended}, line, false)
	}
	return err
}

// member returns the index in ids, a user's sessions with their records,
// of the session whose id or first id (see lineage) is id, and its meta;
// -1 when there is none. A record that cannot be decoded is found by its
// id only, with an empty meta: Load deletes such a record when its owner
// next comes, a revocation deletes it now.
func (m *Manager) member(ids []string, records [][]byte, userID, id string) (int, meta) {
	if i := slices.Index(ids, id); i >= 0 {
		_, values, err := m.codec.Decode(records[i])
		if err != nil {
			return i, meta{}
		}
		// Another user's session in this user's index (written there by
		// hand) is not this user's to end, as List leaves it out.
		if md, _ := values[metaKey].(meta); md.UserID == userID {
			return i, md
		}
		return -1, meta{}
	}
	for i := range ids {
		_, values, err := m.codec.Decode(records[i])
		if err != nil {
			continue
		}
		if md, _ := values[metaKey].(meta); md.UserID == userID && lineage(ids[i], md) == id {
			return i, md
		}
	}
	return -1, meta{}
}

// RevokeAll ends every session of userID ("log out everywhere", or an
// administrator disabling an account) and returns how many it ended. It
// ends every session whose login had finished when it was called; a login
// running at the same time may survive it, but is in the user's index, so
// the next RevokeAll ends it. With an error, the count is of the sessions
// it ended all the same (the store deleted them, then, say, too few
// replicas confirmed), which Config.OnEvent hears of as revoked. Called
// with a request's context whose session is among them, it also expires
// that request's cookie, with Clear-Site-Data, as Destroy does (unless the
// response has started). Like Destroy, it is not stopped by ctx's
// cancellation or deadline. During a migration from scs (Config.FromSCS),
// it also ends the user's scs sessions not migrated yet, which are in no
// index and so not counted: it marks the user first, and none of them
// migrates after (see SCSRecords; an error then says that they may).
func (m *Manager) RevokeAll(ctx context.Context, userID string) (int, error) {
	if err := validUserID(userID); err != nil {
		return 0, err
	}
	ctx = ending(ctx)
	// A failed mark leaves the sessions in the index to end all the same.
	scsErr := m.retireSCSUser(ctx, userID)
	ids, err := m.store.RemoveUserSessions(ctx, userID, "")
	m.revoked(ctx, userID, ids, "", true)
	if err == nil {
		err = scsErr
	}
	if err != nil {
		return len(ids), storeError(err)
	}
	return len(ids), nil
}

// RevokeOthers ends every session of the logged-in user of ctx except the
// current one, as after a password change, and returns how many it ended.
// It returns ErrNoSession when the request has no session, having ended
// nothing: its session has itself ended meanwhile, or its token was
// replaced before the request loaded it (after a failed load, before this
// call read it), as by a renewal in another tab
// whose answer had not reached the browser yet (the session goes on under
// the new token, which the browser sends next: call it again then; a
// replaced token keeps no power over the user's other sessions); but,
// while a deployment adopts a
// TagKey, maybe sessions from before it; and, called from a session made
// before a TagKey was set or changed, the others, with a renewal of its
// own that a parallel request made meanwhile: see Config.TagKey). With an
// error, the count is of the sessions it ended all the same, as for
// RevokeAll. Like Destroy, it is not stopped by ctx's cancellation or
// deadline, and when the request's session could not be read at load
// time (LoadError), it reads it first, returning an error matching
// ErrStoreUnavailable when it still cannot. During a migration from scs,
// it ends the user's scs sessions not migrated yet, as RevokeAll does.
// The current session is m's own in ctx, even under a nested Manager.
func (m *Manager) RevokeOthers(ctx context.Context) (int, error) {
	st := m.stateIn(ctx)
	switch {
	case st == nil && stateFrom(ctx) == nil:
		return 0, errNoMiddleware
	case st == nil:
		return 0, errOtherMiddleware
	}
	st.mu.Lock()
	// After a Renew of this request lost to a parallel one, the session
	// it had is kept where that Renew moved it (see state.held).
	h := st.held()
	userID, id := h.userID, ""
	if h.token != "" {
		id = idOf(h.token)
	}
	md := h.md
	// When the store was down at load time, the request knows only the
	// token it presented: read its record now, as Destroy does, so that a
	// hiccup at load (or a client gone before it) neither stops the call
	// nor makes it report the session ended.
	presented, failed := "", id == "" && st.loadFailed
	if failed {
		presented = st.presented
	}
	st.mu.Unlock()
	ctx = ending(ctx)
	if presented != "" {
		// Only a session Load would have found has power over the others.
		read, _, live, err := m.recordMeta(ctx, idOf(presented))
		if err != nil {
			return 0, err
		}
		if live {
			userID, id, md = read.UserID, idOf(presented), read
		}
	}
	if failed && presented == "" {
		// Nothing to read again: the load that failed was of an scs
		// session being migrated.
		return 0, ErrStoreUnavailable
	}
	if userID == "" || id == "" {
		return 0, ErrNoSession
	}
	line := lineage(id, md)
	// A Renew by a parallel request may move the current session to a new
	// token, before this call or while it runs: keep it there. The store
	// removes nothing while the session to keep is not in the user's index
	// (see UserStore.RemoveUserSessions): then look for it again.
	ended := 0
	var scsErr error
	// endedToo reports that the current session has ended meanwhile: it
	// cannot speak for the user any more.
	endedToo := func() (int, error) {
		st.mu.Lock()
		st.gone()
		st.mu.Unlock()
		if scsErr != nil {
			return ended, errors.Join(ErrNoSession, storeError(scsErr))
		}
		return ended, ErrNoSession
	}
	for i := range maxFollow {
		keep, err := m.successor(ctx, userID, id, line)
		if err != nil {
			return ended, err
		}
		if keep == "" {
			return endedToo()
		}
		if i == 0 {
			// As in RevokeAll: the user's scs sessions not migrated yet
			// are all others.
			scsErr = m.retireSCSUser(ctx, userID)
		}
		ids, err := m.store.RemoveUserSessions(ctx, userID, keep)
		// Under a TagKey with sessions from before it, the answer that keep
		// is gone may come after some sessions were ended (see
		// taggedStore.RemoveUserSessions): they count, and their events go
		// out, all the same.
		ended += len(ids)
		m.revoked(ctx, userID, ids, "", false)
		if keepGone(err) {
			id = keep
			continue
		}
		if tag, _ := splitTag(keep); err == nil && m.cfg.TagKey != nil && tag != m.userTag(userID) {
			// keep is in no index this TagKey names (made before it was
			// set, or under another), so the pass emptied the tagged index
			// whole: with keep's renewal in it, if a parallel request
			// renewed the session meanwhile. Say so, as when it ended.
			switch now, err := m.successor(ctx, userID, keep, line); {
			case err != nil:
				return ended, err
			case now == "":
				return endedToo()
			}
		}
		if err == nil {
			err = scsErr
		}
		if err != nil {
			return ended, storeError(err)
		}
		return ended, nil
	}
	return ended, fmt.Errorf("%w: the session kept moving to new tokens", ErrContention)
}

// ending returns ctx for the store calls that end sessions (a logout, a
// revocation): without its cancellation, so that a client that goes away
// right after asking to log out does not leave its session alive. The
// store's Timeout still bounds each call; a deadline of ctx no longer does.
func ending(ctx context.Context) context.Context {
	return context.WithoutCancel(ctx)
}

// finishing is the context of the store calls that give the request a new
// token, ending the one it came with (a renewal, a login that replaces a
// session): the request's, but with no deadline to report, so that the
// store bounds the wait for each reply by its own Timeout alone. The
// request's end, by its deadline or its cancellation, still stops the call
// before it sends anything more (see redisstore's cmd), with nothing
// changed. But a deadline that passed while the call waited for its
// transaction's reply (a timeout middleware's) had the store abandon that
// reply, of a transaction Redis runs all the same: the old token ended,
// and the response without the new one.
type finishing struct{ context.Context }

// Deadline reports none: see finishing.
func (finishing) Deadline() (time.Time, bool) { return time.Time{}, false }

// revoked emits the events of revoked sessions (ids, of userID) and, when
// m's session in ctx is among them, ends it in the request too: the request
// revoked its own session, so the response expires the cookie. Its own
// session is the one it has, or, after its Renew lost to a parallel one,
// the one it had (see state.held), wherever a parallel Renew moved it:
// for Revoke, line is the lineage of the session it ended, which is the
// request's own when the lineages match; for RevokeAll (line "", all),
// the own id is among ids, or an id that the pointers renewals and
// re-logins leave lead to from it (a read each, only when the own id is
// not among ids itself): a re-login of the same user that replaced the
// request's session, whose session is among ids too, ends the request's
// too. A session that a parallel login as another user ended leaves no
// pointer: the browser holds that login's cookie, which stays. After a
// failed load, the request's own is the session of the token it came
// with, when its id is among ids. RevokeOthers (neither) never ends the
// request's own.
func (m *Manager) revoked(ctx context.Context, userID string, ids []string, line string, all bool) {
	now := m.now()
	for _, id := range ids {
		m.emit(EventRevoked, userID, id, now)
	}
	st := m.stateIn(ctx)
	if st == nil || (line == "" && !all) || len(ids) == 0 {
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	h := st.held()
	var id string
	switch {
	case h.token != "" && h.userID == userID:
		id = idOf(h.token)
	case h.token == "" && st.loadFailed && st.presented != "":
		// The load failed: the request knows only the token it came
		// with, whose session ended here if its id is among ids. (One
		// it led to through a renewal's pointer is not the request's
		// own, as after a load that found nothing under the token.)
		if slices.Contains(ids, idOf(st.presented)) {
			st.end()
		}
		return
	default:
		return
	}
	if !all {
		if lineage(id, h.md) == line {
			st.end()
		}
		return
	}
	for range maxFollow {
		if slices.Contains(ids, id) {
			st.end()
			return
		}
		next, err := m.movedTo(ctx, id)
		if err != nil || next == "" || next == id {
			return
		}
		id = next
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

// maxFollow bounds how many renewals in a row endSession follows.
const maxFollow = 8

// endSession ends the session id of userID, of lineage line (see lineage),
// and returns the id whose record it deleted, or "" when the session had
// already ended; with an error too, when the store deleted the record
// before it failed (see UserStore.RemoveUserSession). A Renew that got in
// first moved the session to a new id, which keeps its lineage: then
// endSession ends it under that id, so that a logout or a revocation
// racing a renewal is not undone by it. An anonymous session (userID "")
// has no index to follow it through: it is followed through the pointer
// the move left behind, when the store keeps one (see mover); and where
// logout is set, it is ended as a logout, which a login that loaded it
// before finds (see removeSession).
func (m *Manager) endSession(ctx context.Context, userID, id, line string, logout bool) (string, error) {
	for range maxFollow {
		removed, err := m.removeSession(ctx, userID, id, logout)
		switch {
		case err != nil && removed:
			return id, storeError(err)
		case err != nil:
			return "", storeError(err)
		case removed:
			return id, nil
		case userID == "":
			id, err = m.movedTo(ctx, id)
		default:
			id, err = m.successor(ctx, userID, id, line)
		}
		if err != nil || id == "" {
			return "", err
		}
	}
	return "", fmt.Errorf("%w: the session kept moving to new tokens", ErrContention)
}

// endRenewedAway ends the session that a Renew moved away from the token
// the request came with, before the request loaded it, so that the token
// led nowhere (see Manager.Load). Such a request knows no session, but its
// browser sends the old token until the renewing request's answer sets
// the new one: a logout or a login sent meanwhile, from another tab, would
// otherwise end nothing, and that answer would then put the renewed
// session back in the browser, signed in after the logout, or in place of
// the login's cookie (see renewedAway, which then finds it gone and sends
// no cookie). It follows the pointers the store keeps of moves (see
// mover), and then the session as endSession does; the request gets
// nothing of the session, whose token it no longer holds: no values, no
// Info. It reports the user of the session it ended, "" for an anonymous
// one or none, and the id of the session it ended, "" for none. It costs
// one read when the token's session was not moved (it expired, or was
// ended), the common case. The caller calls it only when the token is known to have no
// record: its load found none, or failed and a read since found none.
// The caller holds st.mu.
func (m *Manager) endRenewedAway(ctx context.Context, st *state, logout bool) (userID, gone string, err error) {
	if st.presented == "" {
		return "", "", nil
	}
	return m.endMovedAway(ctx, idOf(st.presented), "", logout)
}

// endMovedAway ends the session to which the session id moved, when its
// record is gone: through the pointers the store keeps of renewals and of
// logins that replaced a signed-in session (see mover), and then as
// endSession does; never the session skip ("" for none). It reports the
// user of the session it ended, "" for an anonymous one or none, and the
// id of the session it ended, "" for none. With logout, it ends an
// anonymous session as a logout (see endSession).
func (m *Manager) endMovedAway(ctx context.Context, id, skip string, logout bool) (userID, gone string, err error) {
	for range maxFollow {
		if id, err = m.movedTo(ctx, id); err != nil || id == "" || id == skip {
			return "", "", err
		}
		md, found, _, err := m.recordMeta(ctx, id)
		if err != nil {
			return "", "", err
		}
		if !found {
			continue // renewed again, or ended
		}
		gone, err := m.endFound(ctx, id, md, logout)
		return md.UserID, gone, err
	}
	return "", "", fmt.Errorf("%w: the session kept moving to new tokens", ErrContention)
}

// endFound ends the session id, whose record a read just found with meta
// md, as endSession does, and reports its end (EventDestroyed); it returns
// the id of the session it ended, "" for none.
func (m *Manager) endFound(ctx context.Context, id string, md meta, logout bool) (string, error) {
	gone, err := m.endSession(ctx, md.UserID, id, lineage(id, md), logout)
	if gone != "" && md.UserID != "" {
		m.emit(EventDestroyed, md.UserID, gone, m.now())
	}
	return gone, err
}

// unmarkedRemover is the optional method of a Store that removes an
// anonymous session without the mark of a logout that RemoveUserSession
// leaves (see the Store doc). redisstore.Store has it.
type unmarkedRemover interface {
	RemoveUnmarked(ctx context.Context, id string) (removed bool, err error)
}

// removeSession removes the session id of userID from the store (see
// UserStore.RemoveUserSession); an anonymous one without logout set,
// without the logout's mark where the store can (see unmarkedRemover).
// Where it cannot (a Store wrapped in a type that hides the method),
// such an end is marked as a logout: a login request that loaded the
// session then carries nothing over, rather than a logout's values.
func (m *Manager) removeSession(ctx context.Context, userID, id string, logout bool) (bool, error) {
	if r, ok := baseStore(m.store).(unmarkedRemover); ok && !logout && userID == "" {
		return r.RemoveUnmarked(ctx, id)
	}
	return m.store.RemoveUserSession(ctx, userID, id)
}

// voucher is the optional method of a UserStore that vouches for a
// listing of a user's sessions made just before (redisstore's, with
// WaitReplicas: that the master it read has its replicas in step), before
// the Manager answers with it or reports a session missing from it as
// ended.
type voucher interface {
	VouchUser(ctx context.Context, userID string) error
}

// vouch asks the store to vouch for a listing of userID's sessions (see
// voucher); nil from a store that does not.
func (m *Manager) vouch(ctx context.Context, userID string) error {
	if v, ok := m.store.(voucher); ok {
		return v.VouchUser(ctx, userID)
	}
	return nil
}

// mover is the optional method of a Store that keeps, for each session
// MoveSession moved and each user's session a login replaced, where it
// went (see Store).
type mover interface {
	MovedTo(ctx context.Context, id string) (to string, err error)
}

// movedTo returns the id to which a Renew moved the session id, or of the
// session a login replaced it with, or "" when neither happened, or the
// store keeps no trace of them.
func (m *Manager) movedTo(ctx context.Context, id string) (string, error) {
	mv, ok := baseStore(m.store).(mover)
	if !ok {
		return "", nil
	}
	to, err := mv.MovedTo(ctx, id)
	if err != nil {
		return "", storeError(err)
	}
	return to, nil
}

// pointerSetter is the optional method of a Store that leaves, as
// MovedTo reads it, the pointer from a session that a login ended to the
// login's own (see Store).
type pointerSetter interface {
	SetMovedTo(ctx context.Context, id, to string, ttl time.Duration) error
}

// leavePointer leaves the pointer from the session id, which a login ended
// where a parallel renewal or login had moved the session it replaced, to
// to, the login's own, for ttl: a logout with any token of that chain,
// sent after the login, then ends the login's session too, as it does when
// nothing came between (the login's transaction leaves the pointer from
// the session it replaced). Best effort: the login stands without it.
func (m *Manager) leavePointer(ctx context.Context, id, to string, ttl time.Duration) {
	ps, ok := baseStore(m.store).(pointerSetter)
	if !ok {
		return
	}
	if err := ps.SetMovedTo(ctx, id, to, ttl); err != nil {
		m.log.Debug("session: no pointer left from the session a login ended to its own", "session", fingerprint(id), "error", err)
	}
}

// successor returns the id under which the session id of userID, of
// lineage line, lives now: id itself, or the id a Renew moved it to (see
// meta.Origin), or "" when it has ended.
func (m *Manager) successor(ctx context.Context, userID, id, line string) (string, error) {
	if tag, _ := splitTag(id); tag != m.userTag(userID) {
		// A session made before the TagKey was set is not in the user's
		// tagged index: ask for its record. If it is gone, a renewal may
		// have moved it into the index under the user's tag: look there.
		// A store that cannot vouch for what it read (absentUnvouched)
		// read it all the same: where a session lives is all this needs,
		// and the calls that end it wait for the replicas in turn.
		_, found, err := m.store.Load(ctx, id, 0)
		switch {
		case err != nil && !absentUnvouched(err):
			return "", storeError(err)
		case found:
			return id, nil
		}
	}
	ids, records, err := m.store.UserSessions(ctx, userID)
	if err != nil {
		return "", storeError(err)
	}
	if slices.Contains(ids, id) {
		return id, nil
	}
	for i, next := range ids {
		_, values, err := m.codec.Decode(records[i])
		if err != nil {
			continue // not a session any more: Load deletes it
		}
		if md, _ := values[metaKey].(meta); md.UserID == userID && lineage(next, md) == line {
			return next, nil
		}
	}
	return "", nil
}
