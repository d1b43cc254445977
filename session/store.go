package session

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Store keeps session records and the index of each user's sessions, keyed
// by session id (the hash of the token, never the token). redisstore.Store
// implements it on Redis. Records expire by themselves after their time to
// live; every method must honour ctx, and bound its own time: the calls
// that end sessions (Destroy, Revoke and the like) come with a context
// that is never canceled and has no deadline, so that a client going away
// does not stop a logout; a login's AddUserSession and a renewal's
// MoveSession come with one that reports no deadline, though it ends at
// the request's (see Renew), so that the wait for the reply of a
// transaction already sent is bounded by the Store's own time alone.
//
// The Manager calls the Store itself, with explicit arguments, for every
// read and write: loading a session, saving its changes, inserting a login,
// moving a session to a new token, and ending sessions.
//
// A Store may also have a method
//
//	MovedTo(ctx context.Context, id string) (to string, err error)
//
// that returns the id to which MoveSession moved the session id, or the
// id of the session whose AddUserSession replaced id (a user's session:
// Merge nil), or "" when neither did. With it, a logout that loaded an
// anonymous session before a parallel Renew moved it ends the session
// under its new id, and a change saved by such a request reaches it
// there, as for a user's session, which the Manager finds through the
// user's index; a logout that loaded a user's session before a parallel
// login on the same browser replaced it ends the session that login made;
// and a logout or a login that comes with the old token of a session,
// anonymous or a user's, that a Renew moved, or a login replaced, before
// the request loaded it ends the session under its new id (see Destroy).
// Without it, such a logout ends nothing and the renewed session, or the
// login's, lives on, and such a change is dropped. MoveSession and
// AddUserSession should keep that id for as long as a request in flight
// may follow it (redisstore: the new record's time to live, up to 10
// minutes), from the moment the old record is gone; AddUserSession the
// first it wrote, when two logins replace one session. It must not for
// an anonymous session a login replaced (Merge not nil): its token would
// then reach the signed-in session. redisstore.Store has it.
//
// A Store with MovedTo may also have
//
//	SetMovedTo(ctx context.Context, id, to string, ttl time.Duration) error
//
// which leaves the same pointer from id to to, for ttl (or less), in
// place of any id has. A login whose replaced session a parallel renewal
// or login had moved ends the session where it went, and leaves this
// pointer from it, and from the session it replaced, to its own: a logout
// with any token of that chain, sent after the login, then ends the
// login's session too, and the chain from the replaced session stays one
// hop long however often a client logs in again with its token.
// redisstore.Store has it.
//
// RemoveUserSession(ctx, "", id), the removal of an anonymous session, is
// its logout: a store may leave, in the same step, a mark that the session
// was logged out, by which its AddUserSession, for a login request that
// loaded the session before, merges nil rather than write Record (see
// NewSession.Merge); without such a mark a store cannot tell, where the
// record is gone, a logout from a parallel login, and merging nil then
// carries nothing over in either case. redisstore.Store does. Such a
// Store may also have
//
//	RemoveUnmarked(ctx context.Context, id string) (removed bool, err error)
//
// which removes an anonymous session without the mark: a login that ends
// the anonymous session a renewal moved its token's session to calls it,
// so that a login request that loaded the renewed session (a form sent
// twice) still carries its values over. Without it (a Store wrapped in a
// type that hides it) that end is marked as a logout, and that login
// carries nothing over. redisstore.Store has it.
//
// Two more methods a Store may have, which redisstore.Store has too:
//
//	Cluster() bool
//
// reports that the Store runs on a Redis Cluster, where New requires
// Config.TagKey (to keep each user's keys in one hash slot); and
//
//	NearCacheSize() int
//
// returns the most records the Store keeps in memory (a near-cache), 0 for
// none: the Manager then keeps as many records decoded, so that a request
// served from memory does not decode the same JSON again.
type Store interface {
	RecordStore
	UserStore
}

// RecordStore is the part of a Store that keeps one session's record.
//
// A time to live given to any Store method counts from the call: a store
// that waits before it writes (for a turn, between optimistic attempts)
// gives the record what is left of it, so that a time to live the Manager
// cut at a session's absolute deadline does not run past it. (redisstore
// counts it down to when it sends the command; a command that a stalled
// Redis holds runs that much later, and its time to live counts from
// then. The Manager refuses a session past its deadline all the same.)
type RecordStore interface {
	// Load returns the record stored under id and whether there is one. A
	// ttl > 0 also resets the record's time to live to ttl in the same
	// command; ttl == 0 only reads. A store that finds under id something
	// that is no record (redisstore: a key of another type) may return an
	// error with a method NotRecord() bool that reports true: the Manager
	// then deletes it (Remove) as an unreadable record, rather than take
	// it for an outage. A store that found no record but cannot vouch for
	// that (redisstore with WaitReplicas, on a master without its
	// replicas) may return an error with a method Absent() bool that
	// reports true: the request is then served as in an outage (LoadError
	// reports it, RequireAuth answers 503 rather than take the session for
	// ended), but a login on it goes on as for a token that leads nowhere.
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
	// all survive. It reports whether it wrote. When merge returns current
	// itself (the same bytes: the changes were removals of values the
	// record no longer holds), there is nothing to write: the Store may
	// skip the write, the ttl with it, and reports true all the same,
	// having found the record.
	Merge(ctx context.Context, id string, ttl time.Duration, merge func(current []byte) ([]byte, error)) (bool, error)

	// Remove deletes the record under id. Removing a missing id is not an
	// error.
	Remove(ctx context.Context, id string) error
}

// UserStore is the part of a Store that keeps each user's sessions together
// with their index, which lists a user's sessions by absolute deadline.
//
// A method that gives up because concurrent writers kept changing what it
// read, for its whole time budget, returns an error with a method
// Contention() bool that reports true; the Manager reports it as
// ErrContention rather than as an outage. One that sent nothing (it got no
// connection) may return an error with a method Unsent() bool that reports
// true: after a failed AddUserSession, the Manager otherwise removes the
// new session, which a call that timed out may still have stored.
type UserStore interface {
	// AddUserSession stores a new session of s.UserID: the record under
	// s.ID, only if s.ID is free, and s.ID in the user's index. It deletes
	// the record of s.Replaces, if any (the anonymous session the login
	// request came with, or this user's signed-in one, which it also takes
	// out of the index), in the same step. With s.Limit > 0
	// it also removes the user's oldest sessions so that at most s.Limit
	// remain, counting the new one and not counting s.Replaces. It returns
	// the ids of the sessions it ended: s.Replaces first, when its record
	// still existed, then those the limit removed; with an error, those it
	// ended before failing (s.Replaces, deleted first). A failure part way must
	// never leave the replaced session alive beside the new one, nor a
	// usable session outside the index; with a limit, choosing the
	// sessions to revoke and inserting must be one atomic step. With
	// s.Merge, reading the record of s.Replaces and deleting it must be one
	// atomic step too, before the insert, so that a change saved into it
	// meanwhile is in the new record, and one saved after it fails.
	// Without s.Merge, deleting s.Replaces and inserting must be one step
	// that a refused insert (a store out of memory) undoes whole, so that
	// a re-login that fails leaves the user signed in. With s.Limit > 0,
	// while the record of s.Replaces is gone, it may write nothing and
	// return an error with a method ReplacedGone() bool that reports true:
	// the Manager then ends that session where a renewal moved it, and
	// adds the new one without s.Replaces. (A store that counts the moved
	// session instead revokes one more of the user's sessions than the
	// limit needs when a re-login races a renewal.)
	AddUserSession(ctx context.Context, s NewSession) (ended []string, err error)

	// MoveSession moves a session to a new id, atomically: only while the
	// record under m.From exists, it writes m.Merge(that record) under m.To,
	// deletes m.From, and replaces m.From with m.To in the index of
	// m.UserID ("" for an anonymous session, which has no index; a Store
	// with MovedTo, see Store, keeps m.To for it instead). It reports
	// whether it moved; false means the session had ended, and nothing
	// was written.
	MoveSession(ctx context.Context, m Move) (bool, error)

	// RemoveUserSession deletes the record under id and takes id out of
	// the index of userID; an empty userID is an anonymous session, which
	// has no index. It reports whether the record existed; removing a
	// missing id is not an error. removed is valid alongside an error: true
	// when the record was deleted before the call failed (when fewer
	// replicas than redisstore.Config.WaitReplicas confirmed it, say).
	RemoveUserSession(ctx context.Context, userID, id string) (removed bool, err error)

	// UserSessions returns the ids and records of the live sessions of
	// userID, at a cost that depends on that user's sessions only. A store
	// with a method VouchUser(ctx, userID) error (redisstore's) is asked
	// to vouch for a listing before List answers with it, or Revoke
	// reports a session missing from it as not found.
	UserSessions(ctx context.Context, userID string) (ids []string, records [][]byte, err error)

	// RemoveUserSessions deletes every session of userID but keep ("" for
	// none) and returns the ids of those it ended, whose record still
	// existed; alongside an error, those it ended before the call failed
	// (all of them when only the replicas' confirmation failed). Every
	// session added before it was called is deleted; one
	// added while it runs may stay, in the index. While keep is not in the
	// user's index (a Renew moved it to a new id, or it ended), it deletes
	// nothing and returns an error with a method KeepGone() bool that
	// reports true; the Manager then looks for the session's new id and
	// asks again. Deciding that and deleting must be one atomic step, so
	// that a renewal cannot slip in between and lose the session to keep.
	RemoveUserSessions(ctx context.Context, userID, keep string) (removed []string, err error)
}

// NewSession is what UserStore.AddUserSession stores.
//
// It is an alias of an unnamed struct type rather than a defined type, so
// that a store in another package can declare the identical struct and
// satisfy UserStore without importing this package, whose tests import
// that store (redisstore does; a test there checks that both still match).
type NewSession = struct {
	UserID   string
	ID       string
	Record   []byte
	TTL      time.Duration // the record's time to live
	Deadline time.Time     // the session's absolute deadline, its score in the index
	Limit    int           // with Limit > 0, at most Limit sessions of the user remain
	Replaces string        // id of the session this one replaces, or ""
	// Merge, with Replaces, returns the new record, instead of Record,
	// from the record of Replaces as it is when it is deleted (nil when
	// there is none, which carries nothing over: the session may have
	// been logged out). A store that can tell, where that record is
	// gone, that no logout ended the session (a parallel login took it,
	// a renewal moved it, it expired) may write Record instead, never the
	// values of a session a logout ended; and where a renewal moved it,
	// never the moved record's, which the renewal's token holds, not the
	// token the caller came with (redisstore does so). An error from it ends the call with the new session
	// unwritten (and Replaces deleted). Record holds what Merge would make
	// of the replaced record as the caller loaded it, so a store that
	// ignores Merge (one written before it) still carries those values
	// over, and loses only what another request saved there meanwhile.
	Merge func(replaced []byte) ([]byte, error)
}

// Move is what UserStore.MoveSession does. Like NewSession, it is an alias
// of an unnamed struct type.
type Move = struct {
	UserID   string
	From     string // id of the session's current record
	To       string // id of its new record
	TTL      time.Duration
	Deadline time.Time // the session's absolute deadline, its score in the index
	// Merge returns the new record from the current one. An error from it
	// ends the move, unwritten.
	Merge func(current []byte) ([]byte, error)
}

// errGone reports that a session's record disappeared while a request was
// using it: it was logged out, revoked or expired meanwhile.
var errGone = errors.New("session: session ended during the request")

// storeError wraps an error of the store so that callers can test it with
// errors.Is: ErrContention when concurrent writers kept getting in its way,
// ErrStoreUnavailable otherwise.
func storeError(err error) error {
	var c interface{ Contention() bool }
	if errors.As(err, &c) && c.Contention() {
		return fmt.Errorf("%w: %w", ErrContention, err)
	}
	return fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
}

// replacedGone reports whether err is a UserStore's report that the
// record of the session a login under a limit replaces is gone.
func replacedGone(err error) bool {
	var r interface{ ReplacedGone() bool }
	return errors.As(err, &r) && r.ReplacedGone()
}

// notRecord reports whether err is a RecordStore's report that Load found
// a key of another type than a record under the id (see RecordStore.Load).
func notRecord(err error) bool {
	var n interface{ NotRecord() bool }
	return errors.As(err, &n) && n.NotRecord()
}

// absentUnvouched reports whether err is a RecordStore's report that Load
// found no record but cannot vouch for that (see RecordStore.Load).
func absentUnvouched(err error) bool {
	var a interface{ Absent() bool }
	return errors.As(err, &a) && a.Absent()
}

// keepGone reports whether err is a UserStore's report that the session
// RemoveUserSessions was asked to keep is not in the user's index.
func keepGone(err error) bool {
	var k interface{ KeepGone() bool }
	return errors.As(err, &k) && k.KeepGone()
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
