package redisstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/mna/redisc"
)

// A user's sessions are indexed in a sorted set, "<KeyPrefix>user:<userID>:sessions",
// whose members are session ids scored by their absolute deadline in unix
// milliseconds. Scoring by the absolute deadline, which never moves, rather
// than by the idle expiry, which every read moves, keeps reads at one
// command: the index is never touched by a read. The set expires with its
// latest deadline, and every write prunes members past their deadline, so
// it holds at most the sessions created within one lifetime. Members whose
// record ended earlier (idle timeout, a lost write) are pruned whenever the
// index is read; they are never returned.
//
// Each operation leaves the index safe to read if it were split into single
// commands, as Redis Cluster would need: a record is written before its
// member is added (its token is handed out only once both are done) and
// deleted before its member is removed, and readers check that
// a member's record exists.

func (s *Store) userKey(userID string) string {
	return s.keyPrefix + "user:" + userID + ":sessions"
}

// UserSession is what [Store.AddUserSession] stores.
//
// It is an alias of an unnamed struct type, identical to
// session.NewSession, so that a Store satisfies session.Store without this
// package importing session.
type UserSession = struct {
	UserID   string
	ID       string
	Record   []byte
	TTL      time.Duration // the record's time to live
	Deadline time.Time     // the session's absolute deadline, its score in the index
	Limit    int           // with Limit > 0, at most Limit sessions of the user remain
	Replaces string        // id of the session this one replaces, or ""
	// Merge, with Replaces, returns the new record, instead of Record,
	// from the record of Replaces as it is when it is deleted (nil when
	// there is none). An error from it ends the call with the new session
	// unwritten (and Replaces deleted). Record holds what Merge would make
	// of the replaced record as the caller loaded it, so a store that
	// ignores Merge (one written before it) still carries those values
	// over, and loses only what another request saved there meanwhile.
	Merge func(replaced []byte) ([]byte, error)
}

// Move is what [Store.MoveSession] does. Like UserSession, it is an alias of
// an unnamed struct type, identical to session.Move.
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

// AddUserSession stores a new session of a.UserID: the record under a.ID
// with a time to live of a.TTL, only if a.ID is free (SET NX); the id in the
// user's index, scored by a.Deadline; and the removal of the record of
// a.Replaces (the session the login request came with; "" for none) from
// Redis and from the index. With a.Limit > 0 it also revokes the user's
// oldest live sessions so that at most a.Limit remain, counting the new one
// and not the replaced one. It returns the ids of the sessions it ended:
// a.Replaces first when its record still existed, then those the limit
// revoked, oldest first; with an error, a.Replaces when it was deleted
// before the call failed (with a.Merge, see below). The deletion of
// a.Replaces and the new session are one MULTI/EXEC transaction, so that
// a Redis out of memory, which refuses the new record but runs deletions,
// refuses both, and a re-login that fails leaves the user signed in. A
// replaced session (without a.Merge: a user's) leaves a pointer to the
// new one, as MoveSession's does, where a logout or a login that comes
// with its token finds it (see [Store.MovedTo]); on a Redis Cluster only
// when the pointer lies in the index's slot (a session of the same user,
// under the same tag), and only where no other login left one first. A
// replaced session that was in the user's index (signed in) ends as a
// logout does: with Config.WaitReplicas the call waits for the replicas,
// and fails with ErrUnavailable, having replaced it, when fewer confirm. With
// a limit, the index is watched
// and the writes are one MULTI/EXEC transaction, so that two logins cannot
// both slip under the limit, at the cost of three more round trips, repeated
// (after a short random wait) while other writers change the index, for as
// long as the call's time budget allows (then ErrContention); and when the
// record of a.Replaces is gone by then, it writes nothing and returns
// ErrReplacedGone, since a renewal may have moved that session to an id
// that would count against the limit.
//
// With a.Merge and a.Replaces, the record written is a.Merge(the record of
// a.Replaces), read and deleted at once (GET and DEL in one MULTI/EXEC,
// one more round trip) before the new session is added, so that a change
// another request saved into the replaced session meanwhile is carried
// over, not lost: a login carries over the anonymous session's values as
// they are, not as the login request loaded them. When the record is gone,
// the merge gets nil, which carries nothing over, if a logout ended the
// session (the mark RemoveUserSession leaves, "<KeyPrefix>session:<id>:ended");
// else the call writes a.Record, the values as the caller loaded them (a
// parallel login took the record: a form sent twice; or it expired), and
// where a renewal moved the session, it ends it where it went, following
// up to 8 renewals, a round trip each (the id it deleted there is not
// among those returned). A failure after that step, an error from a.Merge
// included, leaves the replaced session ended and the new one not added.
//
// Without a limit and without a replaced session the commands go as a plain
// pipeline, one round trip, ordered so that every prefix of it is safe: the
// new record comes before its index entry, and the token is not handed out
// before the whole pipeline has run, so no usable session is ever missing
// from the index. In a transaction the replaced record goes first, so that
// a refusal part way (the SET NX of a taken id) never leaves the old token
// alive beside the new one.
func (s *Store) AddUserSession(ctx context.Context, a UserSession) (ended []string, err error) {
	if a.TTL <= 0 {
		return nil, errors.New("redisstore: add user session: ttl must be positive")
	}
	if a.UserID == "" {
		return nil, errors.New("redisstore: add user session: empty user id")
	}
	start := time.Now() // a.TTL's, see px
	index := s.userKey(a.UserID)
	gone := "" // a.Replaces, once its DEL deleted a record
	if a.Replaces == "" {
		a.Merge = nil
	}
	if a.Replaces != "" && a.Merge == nil {
		// A replaced session of this user's (a re-login's) ends as a
		// logout does: with WaitReplicas, the call waits for the replicas
		// (see confirm).
		var release func()
		ctx, release = s.confirming(ctx)
		defer release()
	}
	switch {
	case a.Merge != nil:
		// Take the replaced record first, read and deleted at once
		// (getDel), and make the new record from it, so that a change
		// another request saved there meanwhile is carried over: a
		// request that writes it later finds it gone. Then add the new
		// session alone: a failure in between ends the replaced session,
		// and never leaves it alive beside the new one.
		t, err := s.takeReplaced(ctx, a.Replaces)
		if t.record != nil {
			gone = a.Replaces
		}
		if err != nil {
			return endedOf(gone, nil), err
		}
		if t.took {
			ctx = context.WithoutCancel(ctx) // the change has begun: see confirmMade
		}
		if t.record != nil || t.ended {
			// Else a.Record stands: see takeReplaced.
			if a.Record, err = a.Merge(t.record); err != nil {
				return endedOf(gone, nil), fmt.Errorf("redisstore: add_user_session: %w", err)
			}
		}
		a.Replaces, a.Merge = "", nil
	case a.Replaces != "" && !s.sameSlot(s.prefix+a.Replaces, index):
		// On a Redis Cluster the replaced session (anonymous, or another
		// user's) lies in another slot, so it cannot be in this user's
		// index, nor deleted in the same transaction: delete it first, so
		// that a failure still never leaves it alive beside the new one.
		key := s.prefix + a.Replaces
		err := s.do(ctx, "add_user_session", key, func(ctx context.Context, conn redis.Conn) error {
			n, err := redis.Int(cmd(ctx, conn, "DEL", key))
			if n == 1 {
				gone = a.Replaces
			}
			return err
		})
		if err != nil {
			return endedOf(gone, nil), err
		}
		a.Replaces = ""
		if gone != "" {
			ctx = context.WithoutCancel(ctx) // the change has begun: see confirmMade
		}
	}
	if a.Limit <= 0 {
		err = s.do(ctx, "add_user_session", index, func(ctx context.Context, conn redis.Conn) error {
			var setAt int
			queue := func(send sender) { setAt = s.sendAddition(send, index, a, start, nil) }
			run := s.batch
			if a.Replaces != "" {
				// One transaction, on one server too: a Redis out of
				// memory, or an ACL that denies a queued command,
				// refuses it whole, where a plain pipeline would delete
				// the replaced session and leave the login without any.
				run = s.transaction
			}
			replies, err := run(ctx, conn, queue)
			if err != nil {
				return err
			}
			if replaced(replies, a) {
				gone = a.Replaces
			}
			err = added(replies, setAt)
			err = s.takeBackRecord(ctx, conn, err, replies, setAt, a.ID)
			if err == nil && a.Replaces != "" && gone != "" && replies[len(replies)-1] == int64(1) {
				// The ZREM, last, took the replaced session out of the
				// index: it was signed in. (A session replaced in a step
				// of its own, above, left no ZREM in this batch.)
				err = s.confirmMade(ctx, conn)
			}
			if errors.Is(err, errIDTaken) {
				// A batch cannot skip the ZADD after a SET NX that did not
				// write: take the id back out, so that the index never
				// lists a record this call did not write.
				_, zerr := cmd(ctx, conn, "ZREM", index, a.ID)
				err = errors.Join(err, zerr)
			}
			return err
		})
		if err != nil {
			return endedOf(gone, nil), err
		}
		return endedOf(gone, nil), nil
	}
	var revoked []string // the sessions the limit revoked, oldest first
	err = s.doTurn(ctx, "add_user_session", index, func(ctx context.Context, conn redis.Conn) error {
		key := s.prefix + a.ID
		return s.optimistic(ctx, func() (retry bool, err error) {
			// The replaced record is read, not watched: every read of it
			// with an idle timeout (GETEX) would abort the transaction,
			// and a renewal or a logout of it changes the index, which is.
			conn.Send("WATCH", index, key)
			if a.Replaces != "" {
				conn.Send("EXISTS", s.prefix+a.Replaces)
			}
			conn.Send("EXISTS", key)
			replies, err := redis.Values(cmd(ctx, conn, ""))
			if err == nil {
				err = firstError(replies)
			}
			if err != nil {
				return false, err
			}
			if a.Replaces != "" && replies[1] == int64(0) {
				// Counting the new id a renewal moved it to would revoke
				// another session: see ErrReplacedGone.
				_, err := cmd(ctx, conn, "UNWATCH")
				return false, errors.Join(errReplacedGone, err)
			}
			if replies[len(replies)-1] == int64(1) {
				_, err := cmd(ctx, conn, "UNWATCH")
				return false, errors.Join(errIDTaken, err)
			}
			live, dead, err := s.members(ctx, conn, index)
			if err != nil {
				return false, err
			}
			// The replaced session goes in this transaction: it does not count.
			signedIn := slices.Contains(live, a.Replaces)
			live = slices.DeleteFunc(live, func(id string) bool { return id == a.Replaces })
			revoked = nil
			if n := len(live) - (a.Limit - 1); n > 0 {
				revoked = live[:n] // oldest first
			}
			var setAt int
			replies, err = s.transaction(ctx, conn, func(send sender) {
				setAt = s.sendAddition(send, index, a, start, append(dead, revoked...), revoked...)
			})
			if errors.Is(err, redis.ErrNil) {
				return true, nil // the watched index changed: look again
			}
			if err != nil {
				return false, err
			}
			if replaced(replies, a) {
				gone = a.Replaces
			}
			err = added(replies, setAt)
			err = s.takeBackRecord(ctx, conn, err, replies, setAt, a.ID)
			if err == nil && gone != "" && signedIn {
				err = s.confirmMade(ctx, conn)
			}
			return false, err
		})
	})
	if errors.Is(err, errReplacedGone) {
		return nil, ErrReplacedGone
	}
	if err != nil {
		return endedOf(gone, nil), err
	}
	return endedOf(gone, revoked), nil
}

// takeReplaced reads and deletes the record of the anonymous session id
// that a login replaces, in one MULTI/EXEC transaction (GET, DEL) of one
// round trip, and returns it. Unlike an optimistic transaction (WATCH) it
// cannot lose a race, not even to a read: GETEX with a time to live, which
// every read of a session with an idle timeout sends, counts as a change
// of a watched key, so a login that watched its anonymous record would
// starve while that session is read. (GETDEL does the same in one command,
// but needs +getdel, which the package documentation's ACL line does not
// grant.)
//
// When the record is gone, the same round trip reads what tells why: the
// mark a logout leaves (see endedSuffix), which reports the session ended,
// so that the login carries nothing of it over; or the pointer a renewal
// leaves (see MoveSession), which it follows, up to maxTakeHops renewals,
// deleting the record where the session went (the session package ends a
// moved session a login replaces anyway: took reports it) and looking
// there for a logout's mark in turn. With no record at id, and no mark,
// the login writes the values as its request loaded them
// (NewSession.Record): a parallel login took the record (a login form
// sent twice), or a renewal moved it (its values are the new token's, not
// the old token's the login came with), or it expired. (On a Redis
// Cluster, an id without a hash tag, from before session.Config.TagKey was
// set, has its mark and pointer in other slots: its record is only taken.)
func (s *Store) takeReplaced(ctx context.Context, id string) (t replacedTake, err error) {
	for hop := 0; hop <= maxTakeHops; hop++ {
		key, mark, pointer := s.prefix+id, s.endedKey(id), s.nextKey(id)
		why := s.sameSlot(key, mark) && s.sameSlot(key, pointer)
		var replies []any
		err = s.do(ctx, "add_user_session", key, func(ctx context.Context, conn redis.Conn) error {
			var err error
			replies, err = s.transaction(ctx, conn, func(send sender) {
				send("GET", key)
				send("DEL", key)
				if why {
					send("GET", mark)
					send("GET", pointer)
				}
			})
			if err == nil {
				err = firstError(replies)
			}
			return err
		})
		if err != nil {
			return t, err
		}
		if record, _ := replies[0].([]byte); record != nil {
			t.took = true
			if hop == 0 {
				t.record = record
			}
			return t, nil
		}
		if !why {
			return t, nil
		}
		if replies[2] != nil {
			t.ended = true
			return t, nil
		}
		next, _ := replies[3].([]byte)
		if next == nil {
			return t, nil
		}
		id = string(next)
	}
	return t, nil
}

// replacedTake is what takeReplaced found of the anonymous session a
// login replaces.
type replacedTake struct {
	record []byte // the record of the id the login came with; nil when it was gone
	took   bool   // it deleted a record: that one, or one where a renewal moved the session
	ended  bool   // a logout ended the session (see endedSuffix)
}

// maxTakeHops bounds how many renewals in a row takeReplaced follows.
const maxTakeHops = 8

// endedSuffix ends the key of the mark that a logout of an anonymous
// session leaves (RemoveUserSession), for pointerLife,
// "<KeyPrefix>session:<id>:ended": a
// login request that loaded the session before the logout finds it, where
// the record is gone, and carries none of the session's values over. An
// id never holds a colon, so no record's key ends so (see notRecord).
const endedSuffix = ":ended"

// endedKey returns the key of the mark a logout of the anonymous session
// id leaves.
func (s *Store) endedKey(id string) string {
	return s.prefix + id + endedSuffix
}

// endedOf returns the ids of the sessions AddUserSession ended: gone (the
// replaced session, "" when its record was already gone), then revoked.
func endedOf(gone string, revoked []string) []string {
	if gone == "" {
		return revoked
	}
	return append([]string{gone}, revoked...)
}

// sender queues a command, as redis.Conn's Send does.
type sender = func(name string, args ...any) error

// batch queues commands with queue and runs them in one round trip, and
// returns their replies, error replies included. On one server they go as a
// plain pipeline; on a Redis Cluster as a MULTI/EXEC transaction, so that a
// batch refused part way by a moving slot (MOVED, ASK) ran not at all and
// can be tried again whole. A node out of memory refuses every command
// queued in a transaction, deletions and reads too: then they go again as
// a plain pipeline, as on one server, where each command that adds no
// memory runs. The commands must all use keys of one slot.
func (s *Store) batch(ctx context.Context, conn redis.Conn, queue func(send sender)) ([]any, error) {
	if s.cluster != nil {
		replies, err := s.transaction(ctx, conn, queue)
		if !outOfMemory(err, true) {
			return replies, err
		}
	}
	queue(conn.Send)
	return redis.Values(cmd(ctx, conn, "")) // flush, read every reply
}

// transaction runs the commands queue queues as one MULTI/EXEC
// transaction, also on one server, and returns their replies, error
// replies included: a Redis out of memory, or an ACL that denies one of
// the queued commands, refuses them all (EXECABORT), where a plain
// pipeline runs each one it can. (An ACL that denies MULTI itself, which
// the documented ACL line grants and Ping checks, would have them run one
// by one.) The commands must all use keys of one slot.
func (s *Store) transaction(ctx context.Context, conn redis.Conn, queue func(send sender)) ([]any, error) {
	conn.Send("MULTI")
	queue(conn.Send)
	return redis.Values(cmd(ctx, conn, "EXEC"))
}

// sameSlot reports whether keys a and b lie in one hash slot, which is
// always so outside a Redis Cluster.
func (s *Store) sameSlot(a, b string) bool {
	return s.cluster == nil || redisc.Slot(a) == redisc.Slot(b)
}

// sendAddition queues the commands that store a in index, with the
// deletion of the sessions revoked and the removal of the index members
// gone (whose records are gone or go now), in an order whose every prefix
// is safe (see AddUserSession), and returns the position of the SET among
// them.
func (s *Store) sendAddition(queue sender, index string, a UserSession, start time.Time, gone []string, revoked ...string) (setAt int) {
	n := 0
	send := func(name string, args ...any) {
		queue(name, args...)
		n++
	}
	if a.Replaces != "" {
		send("DEL", s.prefix+a.Replaces)
		gone = append(gone, a.Replaces)
		// Where a logout or a login with its token finds the new session
		// (see MovedTo): the first login's, should two replace it at once.
		if pointer := s.nextKey(a.Replaces); s.sameSlot(index, pointer) {
			send("SET", pointer, a.ID, "PX", px(start, min(a.TTL, pointerLife)), "NX")
		}
	}
	for _, rid := range revoked {
		send("DEL", s.prefix+rid)
	}
	setAt = n
	send("SET", s.prefix+a.ID, a.Record, "PX", px(start, a.TTL), "NX")
	s.sendIndexed(send, index, a.ID, a.Deadline)
	if len(gone) > 0 {
		send("ZREM", redis.Args{index}.AddFlat(gone)...)
	}
	return setAt
}

// sendIndexed queues, through send, the commands that add id to index with
// the score deadline, move the index's expiry to indexGrace after its
// latest deadline, and prune the members indexGrace past theirs.
func (s *Store) sendIndexed(send func(name string, args ...any), index, id string, deadline time.Time) {
	ms := deadline.UnixMilli()
	send("ZADD", index, ms, id)
	// NX sets the expiry of a new index, GT moves it later; GT alone would
	// leave a new index (no expiry yet) without one. (One interface value
	// for both: one allocation, not two, on every login.)
	var expires any = ms + indexGrace.Milliseconds()
	send("PEXPIREAT", index, expires, "NX")
	send("PEXPIREAT", index, expires, "GT")
	send("ZREMRANGEBYSCORE", index, "-inf", pruneBefore())
}

// indexGrace is how long a user's index outlives the latest deadline it
// lists, and a member its own deadline. A session's record lives by the
// clock of the app instance that wrote it (its time to live), and is
// accepted by the clock of the one that reads it, while the index expires
// by Redis's clock and is pruned by yet another instance's: with clocks
// that differ by less than indexGrace, no session that some instance still
// accepts is missing from its user's index, so "log out everywhere" ends
// it.
const indexGrace = time.Minute

// pruneBefore returns the score below which index members are past their
// deadline by more than indexGrace, in unix milliseconds.
func pruneBefore() int64 {
	return time.Now().Add(-indexGrace).UnixMilli()
}

// firstError returns the first error reply among replies, or nil.
func firstError(replies []any) error {
	for _, r := range replies {
		if e, ok := r.(redis.Error); ok {
			return e
		}
	}
	return nil
}

// replaced reports whether the replies of the commands sendAddition queued
// for a say that the record of a.Replaces existed: its DEL, queued first,
// deleted one key.
func replaced(replies []any, a UserSession) bool {
	if a.Replaces == "" || len(replies) == 0 {
		return false
	}
	n, ok := replies[0].(int64)
	return ok && n == 1
}

// added checks the replies of the commands sendAddition queued.
func added(replies []any, setAt int) error {
	if err := firstError(replies); err != nil {
		return err
	}
	if setAt >= len(replies) || replies[setAt] == nil {
		return errIDTaken
	}
	return nil
}

// takeBackRecord returns err, the check of the replies of the commands
// sendAddition queued, after deleting the new record under id when its
// SET wrote it but another command failed: an error reply that a
// transaction does not abort for (WRONGTYPE, from a key of the user's
// index that another program wrote as another type), or one of a plain
// pipeline. The login fails and hands out no token, so that record would
// be a session in no index, which "log out everywhere" could not end.
func (s *Store) takeBackRecord(ctx context.Context, conn redis.Conn, err error, replies []any, setAt int, id string) error {
	if err == nil || errors.Is(err, errIDTaken) || setAt >= len(replies) || replies[setAt] != "OK" {
		return err
	}
	_, derr := cmd(ctx, conn, "DEL", s.prefix+id)
	return errors.Join(err, derr)
}

// errIDTaken reports a new session id that already has a record: 256
// random bits never collide, so a taken id means a broken random source.
var errIDTaken = errors.New("session id already taken")

// errReplacedGone is AddUserSession's report, within a transaction, that the
// record of the session a login replaces is gone; the call returns
// ErrReplacedGone for it.
var errReplacedGone = errors.New("replaced gone")

// MoveSession moves a session to a new id, as one optimistic transaction:
// it WATCHes the record under m.From and reads it; if there is none, the
// session has ended and it returns false, having written nothing.
// Otherwise, in one MULTI/EXEC, it writes m.Merge(record) under m.To with a
// time to live of m.TTL (SET NX), deletes m.From and, for a user's session
// (m.UserID not ""), replaces m.From with m.To in the user's index; and it
// leaves m.To under "<KeyPrefix>session:<m.From>:next" with the same time
// to live, up to 10 minutes, where a logout or a login with the token of
// m.From finds it (see [Store.MovedTo]). If the record changed or went
// before EXEC, it starts again (after a short random wait, for as long as
// the call's time budget allows; then ErrContention), so that a session
// ended by logout, revocation or another move is never brought back under a
// new id, and a session moved twice at once ends up under one id only.
//
// Each attempt is two round trips: WATCH and GET pipelined, then the
// transaction.
func (s *Store) MoveSession(ctx context.Context, m Move) (moved bool, err error) {
	if m.TTL <= 0 {
		return false, errors.New("redisstore: move session: ttl must be positive")
	}
	if m.Merge == nil || m.From == m.To {
		return false, errors.New("redisstore: move session: want a merge function and two ids")
	}
	start := time.Now() // m.TTL's, see px
	from, to := s.prefix+m.From, s.prefix+m.To
	pointer := s.nextKey(m.From) // the pointer the session leaves behind
	if !s.sameSlot(from, to) || !s.sameSlot(from, pointer) {
		return s.moveAcross(ctx, m, start, from, to)
	}
	err = s.doTurn(ctx, "move_session", from, func(ctx context.Context, conn redis.Conn) error {
		return s.optimistic(ctx, func() (retry bool, err error) {
			conn.Send("WATCH", from, to)
			conn.Send("GET", from)
			conn.Send("EXISTS", to)
			replies, err := redis.Values(cmd(ctx, conn, "")) // flush, read every reply
			if err == nil {
				err = firstError(replies)
			}
			if err != nil {
				return false, err
			}
			current, err := redis.Bytes(replies[1], nil)
			if errors.Is(err, redis.ErrNil) {
				_, err := cmd(ctx, conn, "UNWATCH")
				return false, err // ended: nothing to move
			}
			if err != nil {
				return false, err
			}
			if taken, _ := redis.Bool(replies[2], nil); taken {
				_, err := cmd(ctx, conn, "UNWATCH")
				return false, errors.Join(errIDTaken, err)
			}
			next, err := m.Merge(current)
			if err != nil {
				return false, callerError{err} // the pool's connection wrapper UNWATCHes on Close
			}
			send := func(name string, args ...any) { conn.Send(name, args...) }
			send("MULTI")
			send("SET", to, next, "PX", px(start, m.TTL), "NX")
			send("DEL", from)
			if m.UserID != "" {
				index := s.userKey(m.UserID)
				s.sendIndexed(send, index, m.To, m.Deadline)
				send("ZREM", index, m.From)
			}
			send("SET", pointer, m.To, "PX", px(start, min(m.TTL, pointerLife)))
			replies, err = redis.Values(cmd(ctx, conn, "EXEC"))
			if errors.Is(err, redis.ErrNil) {
				return true, nil // the record changed or went since the GET: look again
			}
			if err != nil {
				return false, err
			}
			if err := added(replies, 0); err != nil {
				return false, err
			}
			moved = true
			return false, nil
		})
	})
	return moved, err
}

// moveAcross is MoveSession for ids in two slots of a Redis Cluster (a
// session made before session.Config.TagKey was set, renewed under its
// user's tag, or whose pointer lies in another slot), which no transaction
// can span. It first takes the record under from away, in one optimistic
// transaction of its slot (WATCH and GET, merge, then MULTI/DEL/EXEC), so
// that a session ended or moved meanwhile is not brought back and a change
// made meanwhile is merged again; then it writes the merged record under
// to, with the index. A failure between the two ends the session: it is
// never alive under both ids, nor brought back.
//
// The pointer (see MoveSession) comes last, once the new record is written,
// and only from the move that took the record: a move that lost the race,
// or came after a logout, writes none. A logout or a change that lands
// between the take and the pointer finds neither the old record nor the
// pointer, and ends or changes nothing: a window, a few round trips long,
// in which a session renewed across slots escapes a logout with its old
// token (an anonymous one, also a logout that loaded it before the
// renewal). A pointer that cannot be written (its node out of memory or
// unreachable) leaves the session moved without one, for its whole life.
func (s *Store) moveAcross(ctx context.Context, m Move, start time.Time, from, to string) (moved bool, err error) {
	record, taken, err := s.take(ctx, "move_session", from, m.Merge)
	if err != nil || !taken {
		return false, err // ended: nothing to move
	}
	// The record is taken: the change has begun (see confirmMade).
	ctx = context.WithoutCancel(ctx)
	ttl := m.TTL                                             // counted from start
	m.TTL = time.Duration(px(start, ttl)) * time.Millisecond // less the time taken so far
	if m.UserID != "" {
		_, err = s.AddUserSession(ctx, UserSession{UserID: m.UserID, ID: m.To, Record: record, TTL: m.TTL, Deadline: m.Deadline})
	} else {
		var written bool
		written, err = s.Insert(ctx, m.To, record, m.TTL)
		if err == nil && !written {
			err = classify("move_session", errIDTaken, s.cluster != nil)
		}
	}
	if err != nil {
		return false, err
	}
	pointer := s.nextKey(m.From)
	// Not stopped by a client going away (the Store's Timeout bounds it).
	// The Observer hears of a failure; the move stands without its
	// pointer.
	s.do(context.WithoutCancel(ctx), "move_session", pointer, func(ctx context.Context, conn redis.Conn) error {
		_, err := cmd(ctx, conn, "SET", pointer, m.To, "PX", px(start, min(ttl, pointerLife)))
		return err
	})
	return true, nil
}

// pointerLife bounds how long the pointer a moved session leaves behind
// lives (see MoveSession): less when the moved record has less time to
// live. What follows it are requests that came with the old token while
// the renewal's answer was on its way, or that loaded the session before
// the renewal: requests in flight, which proxies and server timeouts cut
// off long before. It keeps a renewed session's old token from ending it
// for the session's whole life, and renewals made every few minutes, with
// the idle timeout off, from piling up pointers.
const pointerLife = 10 * time.Minute

// nextSuffix ends the key of the pointer a session leaves behind when
// MoveSession moves it, "<KeyPrefix>session:<id>:next": an id
// never holds a colon, so no record's key ends so, and Iterate and KeyStats
// leave these keys out (see notRecord).
const nextSuffix = ":next"

// nextKey returns the key of the pointer that MoveSession leaves behind
// when it moves the session id.
func (s *Store) nextKey(id string) string {
	return s.prefix + id + nextSuffix
}

// notRecord reports whether key, a key that SCAN found under
// "<KeyPrefix>session:", is none of this Store's session records, as an id
// never holds a colon: a pointer MoveSession left behind, or a key of
// another Store on the same database whose KeyPrefix lies under this one's
// ("session:" under ""), whose sessions Iterate must not hand out as this
// Store's ids.
func (s *Store) notRecord(key string) bool {
	return strings.Contains(key[len(s.prefix):], ":")
}

// MovedTo returns the id to which MoveSession moved the session id, or
// the id of the session with which AddUserSession replaced it (see
// there), or "" when there is none: the session was neither moved nor
// replaced so, or the pointer has expired. The pointer lives as long as
// the new record's time to live when it was written (the idle timeout, or
// the time left to the absolute deadline), up to 10 minutes. The session
// package calls it when a logout or a change of an anonymous session finds
// its record gone, so that a logout that loaded the session before a
// parallel renewal, or a parallel login on the same browser, ends the new
// session too, and a change reaches a renewed one; and when a logout or a
// login comes with a token whose record is gone, so that a renewal or a
// login whose answer has not reached the browser yet (which still sends
// the old token) does not undo them. It leaves the pointer, so that a
// logout that fails part way can be tried again. It costs one GET, and
// reports as load to the Observer.
func (s *Store) MovedTo(ctx context.Context, id string) (to string, err error) {
	key := s.nextKey(id)
	err = s.do(ctx, "load", key, func(ctx context.Context, conn redis.Conn) error {
		var err error
		to, err = redis.String(cmd(ctx, conn, "GET", key))
		if errors.Is(err, redis.ErrNil) {
			err = nil
		}
		return err
	})
	return to, err
}

// SetMovedTo leaves the pointer MovedTo reads from the session id to the
// session to, for ttl (up to 10 minutes, as AddUserSession's), in place of
// any id has. The session package calls it after a login that replaced a
// user's session found that session moved, by a parallel renewal or
// login, and ended it where it had gone: from there, and from the session
// it replaced, whose pointer led to the ended one. A logout sent after the
// login with either token would otherwise follow the chain to the ended
// session and end nothing; and re-pointing the first hop keeps the chain
// short however often a client logs in again with the same old token. It
// costs one SET, and reports as add_user_session to the Observer.
func (s *Store) SetMovedTo(ctx context.Context, id, to string, ttl time.Duration) error {
	if ttl <= 0 {
		return errors.New("redisstore: set moved to: ttl must be positive")
	}
	key := s.nextKey(id)
	start := time.Now()
	return s.do(ctx, "add_user_session", key, func(ctx context.Context, conn redis.Conn) error {
		_, err := cmd(ctx, conn, "SET", key, to, "PX", px(start, min(ttl, pointerLife)))
		return err
	})
}

// take deletes the record under key and returns merge(that record), as one
// optimistic transaction of key's slot: WATCH and GET, merge, then
// MULTI/DEL/EXEC, started again (after a short random wait) if the record
// changed or went before EXEC, so that what merge returns comes from the
// record as it was deleted. taken is false, and merge is not called, when
// there is no record.
func (s *Store) take(ctx context.Context, op, key string, merge func(current []byte) ([]byte, error)) (next []byte, taken bool, err error) {
	err = s.doTurn(ctx, op, key, func(ctx context.Context, conn redis.Conn) error {
		return s.optimistic(ctx, func() (retry bool, err error) {
			conn.Send("WATCH", key)
			current, err := redis.Bytes(cmd(ctx, conn, "GET", key))
			if errors.Is(err, redis.ErrNil) {
				_, err := cmd(ctx, conn, "UNWATCH")
				return false, err
			}
			if err != nil {
				return false, err
			}
			n, err := merge(current)
			if err != nil {
				return false, callerError{err} // the pool's connection wrapper UNWATCHes on Close
			}
			conn.Send("MULTI")
			conn.Send("DEL", key)
			replies, err := redis.Values(cmd(ctx, conn, "EXEC"))
			if errors.Is(err, redis.ErrNil) {
				return true, nil // the record changed or went since the GET: look again
			}
			if err == nil {
				err = firstError(replies)
			}
			if err == nil {
				next, taken = n, true
			}
			return false, err
		})
	})
	return next, taken, err
}

// members returns the ids in index whose record still exists, oldest
// deadline first, and those whose record is gone. It prunes nothing.
func (s *Store) members(ctx context.Context, conn redis.Conn, index string) (live, dead []string, err error) {
	ids, err := redis.Strings(cmd(ctx, conn, "ZRANGE", index, 0, -1))
	if err != nil || len(ids) == 0 {
		return nil, nil, err
	}
	for _, id := range ids {
		conn.Send("EXISTS", s.prefix+id)
	}
	if err := conn.Flush(); err != nil {
		return nil, nil, err
	}
	for _, id := range ids {
		n, err := redis.Int(receive(ctx, conn))
		if err != nil {
			return nil, nil, err
		}
		if n == 1 {
			live = append(live, id)
		} else {
			dead = append(dead, id)
		}
	}
	return live, dead, nil
}

// RemoveUserSession deletes the record under id and removes id from the
// index of userID ("" for an anonymous session, which has no index), and
// reports whether the record existed. Removing a missing id is not an
// error.
//
// An anonymous session's removal is its logout: it first leaves, in the
// same round trip, a mark that a logout ended the session,
// "<KeyPrefix>session:<id>:ended", for 10 minutes (the longest a pointer
// lives), so that a login request that loaded the session before carries
// none of its values over (see AddUserSession). The mark is best effort: a
// Redis out of memory refuses it, and the logout stands (such a login may
// then carry the values over, should memory come back before it). On a
// Redis Cluster an id without a hash tag, from before
// session.Config.TagKey was set, gets no mark, which would lie in another
// slot. RemoveUnmarked removes one without the mark.
func (s *Store) RemoveUserSession(ctx context.Context, userID, id string) (removed bool, err error) {
	return s.removeSession(ctx, userID, id, userID == "")
}

// RemoveUnmarked deletes the record of the anonymous session id, as
// RemoveUserSession(ctx, "", id) does, but leaves no logout's mark: the
// session package calls it for a login that ends the anonymous session a
// renewal moved its request's token to, which a login request that loaded
// the renewed session (a login form sent twice) must still carry over.
func (s *Store) RemoveUnmarked(ctx context.Context, id string) (removed bool, err error) {
	return s.removeSession(ctx, "", id, false)
}

// removeSession is RemoveUserSession, with the logout's mark when mark is
// set.
func (s *Store) removeSession(ctx context.Context, userID, id string, mark bool) (removed bool, err error) {
	key := s.prefix + id
	ctx, release := s.confirming(ctx)
	defer release()
	if userID != "" && !s.sameSlot(key, s.userKey(userID)) {
		// On a Redis Cluster, a session made before session.Config.TagKey
		// was set lies in another slot than the user's index: delete the
		// record, then take it out of the index (which may lag, never
		// lead).
		err = s.do(ctx, "remove_user_session", key, func(ctx context.Context, conn redis.Conn) error {
			n, err := redis.Int(cmd(ctx, conn, "DEL", key))
			removed = n == 1
			if err == nil {
				err = s.confirm(ctx, conn)
			}
			return err
		})
		if err != nil {
			return removed, err
		}
		index := s.userKey(userID)
		err = s.do(ctx, "remove_user_session", index, func(ctx context.Context, conn redis.Conn) error {
			_, err := cmd(ctx, conn, "ZREM", index, id)
			return err
		})
		return removed, err
	}
	err = s.do(ctx, "remove_user_session", key, func(ctx context.Context, conn redis.Conn) error {
		marked := mark && s.sameSlot(key, s.endedKey(id))
		replies, err := s.batch(ctx, conn, func(send sender) {
			if marked {
				// Before the record goes: a login's take that finds
				// the record gone finds the mark, also should the
				// pipeline be split between the two.
				send("SET", s.endedKey(id), "", "PX", pointerLife.Milliseconds())
			}
			send("DEL", key)
			if userID != "" {
				send("ZREM", s.userKey(userID), id) // after the record: the index may lag, never lead
			}
		})
		if marked && err == nil {
			replies = replies[1:] // the mark is best effort: see RemoveUserSession
		}
		if err == nil {
			err = firstError(replies)
		}
		if err != nil {
			return err
		}
		n, err := redis.Int(replies[0], nil)
		removed = n == 1
		if err == nil {
			err = s.confirm(ctx, conn)
		}
		return err
	})
	return removed, err
}

// UserSessions returns the ids and records of the live sessions of userID,
// oldest deadline first. Its cost depends on that user's sessions only:
// ZRANGE on the index, then one MGET. Members whose record is gone, and
// members past their deadline, are pruned from the index on the way.
//
// With Config.WaitReplicas, it does not wait for the replicas: see
// VouchUser.
//
// A session that lives through the call is always listed, also when a
// renewal moves it to a new id between the two reads. When a record is
// missing, it reads the index again together with the records, in one
// MULTI/EXEC; if a member without a record has left the index by then, and
// another has joined it, it reads the new members' records the same way, a
// few times at most, then fails with ErrContention. A missing record thus
// always means that the session ended.
func (s *Store) UserSessions(ctx context.Context, userID string) (ids []string, records [][]byte, err error) {
	index := s.userKey(userID)
	err = s.do(ctx, "user_sessions", index, func(ctx context.Context, conn redis.Conn) error {
		// The prunes (this one, and the ZREM below) are writes, which a
		// master short of replicas (NOREPLICAS, under
		// min-replicas-to-write) or a replica (READONLY: a master just
		// demoted) refuses while it serves reads: the listing does without
		// them, and a later one prunes (see skippablePrune). The replies
		// are received one by one: Do would fail the pipeline on the
		// prune's refusal, and Do("") would keep a Cluster's MOVED, in a
		// reply inside its list, from redisc, which refreshes its map of
		// slots on one.
		conn.Send("ZREMRANGEBYSCORE", index, "-inf", pruneBefore())
		conn.Send("ZRANGE", index, 0, -1)
		if err := conn.Flush(); err != nil {
			return err
		}
		if _, err := receive(ctx, conn); err != nil && !skippablePrune(err) {
			return err
		}
		all, err := redis.Strings(receive(ctx, conn))
		if err != nil {
			return err
		}
		// The first read takes the records alone: when all are there,
		// every member listed was live; only a missing one needs the
		// index read again at the same moment.
		for read := range userSessionsReads {
			ids, records = nil, nil
			if len(all) == 0 {
				return nil
			}
			now, recs, err := s.readMembers(ctx, conn, index, all, read > 0)
			if err != nil {
				return err
			}
			var gone []string
			for i, rec := range recs {
				if rec == nil {
					gone = append(gone, all[i])
					continue
				}
				ids, records = append(ids, all[i]), append(records, rec)
			}
			switch {
			case len(gone) == 0:
				return nil
			case read > 0 && !maybeMoved(gone, all, now):
				_, err = cmd(ctx, conn, "ZREM", redis.Args{index}.AddFlat(gone)...)
				if skippablePrune(err) {
					return nil // see above
				}
				return err
			case read > 0:
				all = now
			}
		}
		ids, records = nil, nil
		return ErrContention
	})
	return ids, records, err
}

// VouchUser vouches, with Config.WaitReplicas, for a listing of userID's
// sessions made just before (UserSessions): it waits until that many
// replicas of the master that holds the user's index are in step with it
// (WAIT), as a removal does, and fails with ErrUnavailable when fewer
// confirm. A listing says which sessions are not there (a device signed
// out, a revocation that finds nothing to end), and a master that a
// failover has just replaced, to which the Store still talks, may miss a
// session whose logout only it holds. Without WaitReplicas it returns nil
// and sends nothing. Package session calls it before it answers with a
// listing (Manager.List), or reports a session missing from one as not
// found (Manager.Revoke); its Observer op is vouch. It waits in the places
// of the calls that end sessions (see WaitReplicas), which a user's own
// actions take, not in those of the reads of ended sessions, which any
// client can fill.
func (s *Store) VouchUser(ctx context.Context, userID string) error {
	if s.replicas == 0 {
		return nil
	}
	ctx, release := s.confirming(ctx)
	defer release()
	return s.do(ctx, "vouch", s.userKey(userID), s.confirmNow)
}

// skippablePrune reports whether err is Redis's refusal of a write that it
// serves reads beside: NOREPLICAS or READONLY.
func skippablePrune(err error) bool {
	code := replyCode(err)
	return code == "NOREPLICAS" || code == "READONLY"
}

// readMembers returns the records of the members of index, with MGET;
// with withIndex, in one MULTI/EXEC with the members index lists at that
// moment (ZRANGE), which it also returns.
func (s *Store) readMembers(ctx context.Context, conn redis.Conn, index string, members []string, withIndex bool) (listed []string, recs [][]byte, err error) {
	keys := make(redis.Args, len(members))
	for i, id := range members {
		keys[i] = s.prefix + id
	}
	if !withIndex {
		recs, err = redis.ByteSlices(cmd(ctx, conn, "MGET", keys...))
	} else {
		conn.Send("MULTI")
		conn.Send("ZRANGE", index, 0, -1)
		conn.Send("MGET", keys...)
		var replies []any
		replies, err = redis.Values(cmd(ctx, conn, "EXEC"))
		if outOfMemory(err, s.cluster != nil) {
			// Out of memory, Redis refuses every command queued in a
			// transaction, reads too, and so every renewal (a transaction
			// that writes): no session can move between the two reads, so
			// they go as a plain pipeline.
			conn.Send("ZRANGE", index, 0, -1)
			conn.Send("MGET", keys...)
			replies, err = redis.Values(cmd(ctx, conn, ""))
			if err == nil {
				err = firstError(replies)
			}
		}
		if err == nil && len(replies) != 2 {
			err = fmt.Errorf("EXEC returned %d replies for 2 commands", len(replies))
		}
		if err == nil {
			listed, err = redis.Strings(replies[0], nil)
		}
		if err == nil {
			recs, err = redis.ByteSlices(replies[1], nil)
		}
	}
	if err == nil && len(recs) != len(members) {
		err = fmt.Errorf("MGET returned %d values for %d keys", len(recs), len(members))
	}
	return listed, recs, err
}

// userSessionsReads bounds how many times UserSessions reads a user's
// index and records while renewals keep moving sessions between the two.
const userSessionsReads = 5

// maybeMoved reports whether a renewal may have moved one of the members
// gone, whose records were missing after the index listed all, to an id
// that the index, read again, lists as again: one of gone has left the
// index, and a member has joined it. A member still listed has no record
// because its session ended (a renewal takes the old id out of the index
// in the step that moves the record), and a flood of logins that only adds
// members moves nothing.
func maybeMoved(gone, all, again []string) bool {
	listed := make(map[string]bool, len(again))
	for _, id := range again {
		listed[id] = true
	}
	left := slices.ContainsFunc(gone, func(id string) bool { return !listed[id] })
	if !left {
		return false
	}
	before := make(map[string]bool, len(all))
	for _, id := range all {
		before[id] = true
	}
	return slices.ContainsFunc(again, func(id string) bool { return !before[id] })
}

// RemoveUserSessions deletes every session of userID except keep ("" keeps
// none), takes them out of the index, and returns the ids of those whose
// record still existed: the sessions it ended. The index is watched, so a
// session added while this runs is either deleted too or was added after
// the transaction that deleted the others. While keep is not in the index
// (a renewal moved it to a new id, or it ended), it deletes nothing and
// returns ErrKeepGone: the session to keep may live on under a new id.
//
// Logins without a session limit change the index without waiting their
// turn, so a flood of them could make every watched attempt fail. After 5
// such attempts it therefore falls back to sweeping, without a transaction:
// at most 3 passes of deleting what the index lists and reading it again
// (see sweep). That still ends every session whose login had finished when
// it started; a login that finishes while it sweeps may survive. A renewal
// that moves one of those sessions out of a pass's reach, though, makes it
// pass again, and when the last pass may have missed one it returns
// ErrContention, with the ids of the sessions it did end, rather than
// success. It sweeps at once when Redis refuses the transaction for want
// of memory: a Redis out of memory refuses every command queued in one,
// deletions too, but deletes outside one.
func (s *Store) RemoveUserSessions(ctx context.Context, userID, keep string) (removed []string, err error) {
	index := s.userKey(userID)
	gone := false // keep is not in the index; not an error of Redis's
	ctx, release := s.confirming(ctx)
	defer release()
	err = s.doTurn(ctx, "remove_user_sessions", index, func(ctx context.Context, conn redis.Conn) error {
		// On a Cluster the Store runs this again after an error that ran
		// no command (ASK, TRYAGAIN), which a sweep's later pass can meet
		// after an earlier one ended sessions: those stay in removed, and
		// each run adds the sessions it ends. (Under Sentinel it runs it
		// again after a switch, errSwitched, which ends no session.)
		var got []string
		defer func() { removed = append(removed, got...) }()
		tries := 0
		err := s.optimistic(ctx, func() (retry bool, err error) {
			if tries++; tries > sweepAfter {
				return false, errSweep
			}
			if _, err := cmd(ctx, conn, "WATCH", index); err != nil {
				return false, err
			}
			members, err := s.indexed(ctx, conn, index, keep)
			gone = errors.Is(err, errKeepGone)
			if err != nil || len(members) == 0 {
				_, uerr := cmd(ctx, conn, "UNWATCH")
				if gone {
					err = nil
				}
				return false, errors.Join(err, uerr)
			}
			conn.Send("MULTI")
			sendRemoval(conn.Send, s.prefix, index, members)
			replies, err := redis.Values(cmd(ctx, conn, "EXEC"))
			if errors.Is(err, redis.ErrNil) {
				return true, nil // the index changed: look again
			}
			if outOfMemory(err, s.cluster != nil) {
				// A Redis out of memory refuses every command queued in a
				// transaction (OOM, then EXECABORT), deletions too, but
				// runs them outside one: ending sessions frees memory, so
				// sweep. Any other refusal fails the sweep in turn.
				return false, errSweep
			}
			if err != nil {
				return false, err
			}
			got, err = ended(replies, members)
			return false, err
		})
		if errors.Is(err, errSweep) {
			got, err = s.sweep(ctx, conn, index, keep)
			gone = errors.Is(err, errKeepGone)
			if gone {
				err = nil
			}
		}
		if gone && len(removed) > 0 {
			return ErrContention // an earlier run ended sessions, which ErrKeepGone would deny
		}
		if err == nil {
			// Also when it ended none: a call sent again after one that
			// failed unconfirmed finds the sessions gone, and is answered
			// so only by a master with its replicas (see confirmAbsent).
			err = s.confirm(ctx, conn)
		}
		return err
	})
	if err == nil && gone && len(removed) == 0 {
		return nil, ErrKeepGone
	}
	return removed, err
}

// sweep is RemoveUserSessions without a transaction. Each pass deletes the
// sessions the index listed and reads the index again, in one round trip
// (DEL, ZREM, then ZRANGE). A renewal that lands between a read and the
// deletes moves its session to an id the pass does not delete, and leaves
// the DEL of the old id with nothing to delete; the next read lists the
// new id. So a pass whose every DEL deleted a record leaves nothing to end
// behind, and sweep returns; after a pass where a record was missing (the
// session had ended, or moved), the next pass deletes what the index lists
// now, up to sweepPasses passes. When the last one still missed a record
// and the index lists sessions, sweep returns ErrContention with the ids of
// those it ended. When a read finds keep gone, it returns errKeepGone if
// it has ended no session yet, and ErrContention otherwise.
func (s *Store) sweep(ctx context.Context, conn redis.Conn, index, keep string) (removed []string, err error) {
	members, err := s.indexed(ctx, conn, index, keep)
	for pass := 0; err == nil && len(members) > 0; pass++ {
		if pass == sweepPasses {
			return removed, ErrContention
		}
		var gone, listed []string
		gone, listed, err = s.sweepPass(ctx, conn, index, members)
		removed = append(removed, gone...)
		if err != nil || len(gone) == len(members) {
			return removed, err
		}
		members, err = without(listed, keep)
		if errors.Is(err, errKeepGone) && len(removed) > 0 {
			return removed, ErrContention // ErrKeepGone says that nothing was deleted
		}
	}
	return removed, err
}

// sweepPass deletes the records of members and takes them out of index,
// then reads index, in one round trip. It returns the members whose record
// it deleted, and those index lists after.
func (s *Store) sweepPass(ctx context.Context, conn redis.Conn, index string, members []string) (gone, listed []string, err error) {
	replies, err := s.batch(ctx, conn, func(send sender) {
		sendRemoval(send, s.prefix, index, members)
		send("ZRANGE", index, 0, -1)
	})
	if err == nil {
		gone, err = ended(replies, members)
	}
	if err == nil {
		listed, err = redis.Strings(replies[len(replies)-1], nil)
	}
	return gone, listed, err
}

// How RemoveUserSessions gives up on a transaction (its documentation
// gives these numbers): after sweepAfter attempts that found the index
// changed, it sweeps, in at most sweepPasses passes.
const (
	sweepAfter  = 5
	sweepPasses = 3
)

var errSweep = errors.New("sweep instead")

// indexed returns the members of index but keep, or errKeepGone while keep
// is not among them (see RemoveUserSessions).
func (s *Store) indexed(ctx context.Context, conn redis.Conn, index, keep string) ([]string, error) {
	all, err := redis.Strings(cmd(ctx, conn, "ZRANGE", index, 0, -1))
	if err != nil {
		return nil, err
	}
	return without(all, keep)
}

// without returns the members all but keep, or errKeepGone while keep is
// not among them ("" keeps none).
func without(all []string, keep string) ([]string, error) {
	if keep == "" {
		return all, nil
	}
	if !slices.Contains(all, keep) {
		return nil, errKeepGone
	}
	return slices.DeleteFunc(all, func(id string) bool { return id == keep }), nil
}

// errKeepGone is indexed's report that keep is not in the index, which
// RemoveUserSessions turns into ErrKeepGone once the call is over, so that
// the Store's Observer does not count it as a failure of Redis's.
var errKeepGone = errors.New("keep gone")

// sendRemoval queues a DEL of the record of each member, one each so that
// the replies tell which existed, then their removal from index.
func sendRemoval(send sender, prefix, index string, members []string) {
	for _, id := range members {
		send("DEL", prefix+id)
	}
	send("ZREM", redis.Args{index}.AddFlat(members)...)
}

// ended returns the members whose DEL, in replies, deleted a record.
func ended(replies []any, members []string) ([]string, error) {
	if err := firstError(replies); err != nil {
		return nil, err
	}
	var gone []string
	for i, id := range members {
		if n, _ := redis.Int(replies[i], nil); n == 1 {
			gone = append(gone, id)
		}
	}
	return gone, nil
}
