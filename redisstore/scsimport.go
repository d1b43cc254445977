package redisstore

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gomodule/redigo/redis"
)

// DefaultSCSPrefix is the key prefix of github.com/alexedwards/scs/redisstore
// (redisstore.New): an scs session's record lives under
// "scs:session:<token>".
const DefaultSCSPrefix = "scs:session:"

// SCSRecords reads the session records that github.com/alexedwards/scs/redisstore
// wrote, for a migration to package session (session.Config.FromSCS). Get
// one from [Store.SCSRecords]. It is safe for concurrent use.
type SCSRecords struct {
	s      *Store
	prefix string
	err    error // why the records cannot be used, or nil; see Err
}

// SCSRecords returns the scs records of the Redis that s uses, under the
// keys "<prefix><token>": the prefix given to scs's redisstore.NewWithPrefix,
// or "" for DefaultSCSPrefix, that of redisstore.New. The Store's KeyPrefix
// plays no part in those keys, which are where scs put them; it prefixes
// the markers of [SCSRecords.Retire], "<KeyPrefix>scs_migrated:<hash>".
//
// A prefix that overlaps the Store's own keys gives records that cannot be
// used (see [SCSRecords.Err]): every key the Store writes is its KeyPrefix
// followed by "session:", "user:", "rate_limit:" or "scs_migrated:", and
// neither the prefix nor any of those four beginnings may begin with the
// other. With [Config.KeyPrefix] "scs:" and scs's default "scs:session:",
// for example, the Store's records would be "scs:session:<id>", and a
// request whose scs cookie held a session's id (43 characters, like scs's
// tokens, for sessions made by the previous release or with
// session.Config.PreviousFormat) would take that session as an scs record
// and end it: knowing an id would be enough to log its user out. Give the
// Store another KeyPrefix ("app:"). The records may come from another
// Store than the Manager's (on the Redis scs used, say): session.New then
// checks their prefix against the Manager's Store too (see
// [SCSRecords.CheckStore]).
func (s *Store) SCSRecords(prefix string) *SCSRecords {
	if prefix == "" {
		prefix = DefaultSCSPrefix
	}
	r := &SCSRecords{s: s, prefix: prefix}
	r.err = r.CheckStore(s)
	return r
}

// CheckStore reports, when store is a *Store, or a type that embeds one
// (a wrapper that adds instrumentation), whether r's prefix overlaps the
// keys store writes (see [Store.SCSRecords]), whichever Store r came from:
// session.New calls it with the Manager's Store. Any other store gives
// nil.
func (r *SCSRecords) CheckStore(store any) error {
	var s *Store
	switch st := store.(type) {
	case *Store:
		s = st
	case interface{ SCSRecords(string) *SCSRecords }:
		// A wrapper of a Store: its promoted SCSRecords checks against
		// the Store's own keys.
		return st.SCSRecords(r.prefix).Err()
	}
	if s == nil {
		return nil
	}
	// What follows the KeyPrefix in every key the Store writes: session
	// records, users' indexes, rate limit counters, and the markers of
	// migrated scs keys.
	for _, family := range [...]string{"session:", "user:", "rate_limit:", "scs_migrated:"} {
		own := s.keyPrefix + family
		if strings.HasPrefix(r.prefix, own) || strings.HasPrefix(own, r.prefix) {
			return fmt.Errorf("redisstore: SCSRecords: prefix %q overlaps the Store's keys under %q (KeyPrefix %q): a cookie holding a session's id would take that session as an scs record; give the Store another KeyPrefix", r.prefix, own, s.keyPrefix)
		}
	}
	return nil
}

// Err reports why r cannot be used: nil, or the overlap of its prefix with
// the Store's own keys (see [Store.SCSRecords]). [SCSRecords.Take] and
// [SCSRecords.Retire] then return it without sending anything, and
// session.New refuses records whose Err is not nil.
func (r *SCSRecords) Err() error {
	return r.err
}

// Take returns the record stored for the scs key token (the token itself,
// or its hash when scs ran with HashTokenInStore) and deletes it, so of
// concurrent calls for the same token at most one gets the record. A
// missing record is not an error. A record under a key that [SCSRecords.Retire]
// marked is deleted too, but not returned: an scs instance that loaded the
// session before its migration wrote it back.
//
// It costs one round trip, a MULTI/EXEC with a SET of the marker and
// GETDEL of the record. The SET (NX, GET, for takenMarkTTL) reads whether
// the key was marked, and marks it if not, until Retire marks it for
// longer: a logout of the same browser that finds the record gone then
// finds the marker too (see [SCSRecords.SwapMark]). On a Redis Cluster,
// where the two keys lie in different slots, it sends the SET and then
// GETDEL.
//
// It does not wait for replicas, not even with [Config.WaitReplicas]: once
// the record is taken, the migration that took it must go on (waiting could
// only fail a request whose record is gone already), and a migration is a
// login, which does not wait either. A failover right after it can bring
// the record back, without its mark, as it can lose a login.
//
// An ACL user needs "+getdel" and the key patterns of the prefix and of the
// markers ("~scs:session:* ~scs_migrated:*") besides the commands of the
// package documentation.
func (r *SCSRecords) Take(ctx context.Context, token string) (record []byte, found bool, err error) {
	if r.err != nil {
		return nil, false, r.err
	}
	key, mark := r.prefix+token, r.marker(token)
	if !r.s.sameSlot(key, mark) {
		return r.takeSplit(ctx, key, mark)
	}
	err = r.s.do(ctx, "take_scs", key, func(ctx context.Context, conn redis.Conn) error {
		conn.Send("MULTI")
		conn.Send("SET", mark, "1", "NX", "PX", takenMarkTTL.Milliseconds(), "GET")
		conn.Send("GETDEL", key)
		replies, err := redis.Values(cmd(ctx, conn, "EXEC"))
		if err == nil {
			err = firstError(replies)
		}
		if err != nil {
			return keyDenied(err, "GETDEL", r.patterns())
		}
		record, found, err = taken(replies[1], replies[0] != nil)
		return err
	})
	if err != nil {
		return nil, false, err
	}
	return record, found, nil
}

// Peek returns the record stored for the scs key token, as Take does, but
// leaves it in place, marked or not: one GET. The session package reads
// each record with it before taking it, so that a record it cannot decode
// for want of a type registered with gob stays, to migrate once the type
// is registered. Its Observer op is take_scs.
func (r *SCSRecords) Peek(ctx context.Context, token string) (record []byte, found bool, err error) {
	if r.err != nil {
		return nil, false, r.err
	}
	key := r.prefix + token
	err = r.s.do(ctx, "take_scs", key, func(ctx context.Context, conn redis.Conn) error {
		reply, err := cmd(ctx, conn, "GET", key)
		if err != nil {
			return keyDenied(err, "GET", r.patterns())
		}
		record, found, err = taken(reply, false)
		return err
	})
	if err != nil {
		return nil, false, err
	}
	return record, found, nil
}

// takeSplit is Take for a marker in another hash slot than the record: the
// marker is read and set first, so that a record written back after a
// migration that has marked it is never returned. (A record written back
// after this SET and before the GETDEL, by a migration that ran in
// between, is: the same window as that between a migration's GETDEL and
// its Retire.)
func (r *SCSRecords) takeSplit(ctx context.Context, key, mark string) (record []byte, found bool, err error) {
	var retired bool
	err = r.s.do(ctx, "take_scs", mark, func(ctx context.Context, conn redis.Conn) error {
		reply, err := cmd(ctx, conn, "SET", mark, "1", "NX", "PX", takenMarkTTL.Milliseconds(), "GET")
		retired = reply != nil
		return keyDenied(err, "SET", r.patterns())
	})
	if err != nil {
		return nil, false, err
	}
	err = r.s.do(ctx, "take_scs", key, func(ctx context.Context, conn redis.Conn) error {
		reply, err := cmd(ctx, conn, "GETDEL", key)
		if err != nil {
			return keyDenied(err, "GETDEL", r.patterns())
		}
		record, found, err = taken(reply, retired)
		return err
	})
	if err != nil {
		return nil, false, err
	}
	return record, found, nil
}

// takenMarkTTL is how long the marker that Take sets lasts, unless Retire
// marks the key for longer: the round trips of a migration from its take
// to its Retire, with room to spare.
const takenMarkTTL = time.Minute

// taken reads the reply of GETDEL: the record, unless there was none or
// its key was retired.
func taken(reply any, retired bool) ([]byte, bool, error) {
	b, err := redis.Bytes(reply, nil)
	if errors.Is(err, redis.ErrNil) || (err == nil && retired) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return b, true, nil
}

// Retire marks the scs key token as migrated until the given time, the
// deadline of the scs session that Take returned, so that Take deletes and
// never returns a record written under it again until then: an scs
// instance still running during a rolling deploy, which loaded the session
// before it was taken, writes it back when its request ends, and with an
// idle timeout that copy lives longer than the record taken, up to that
// deadline. The marker is "<KeyPrefix>scs_migrated:<hash>", the base64url
// SHA-256 of the scs key, never the key itself: a SET with NX and PXAT,
// and a PEXPIREAT of a marker that was there (Take's, whose value, maybe
// one [SCSRecords.SwapMark] put since, it keeps), in one round trip.
//
// Like Take, it does not wait for replicas, and its Observer op is take_scs.
func (r *SCSRecords) Retire(ctx context.Context, token string, until time.Time) error {
	if r.err != nil {
		return r.err
	}
	mark := r.marker(token)
	at := markerExpiry(until)
	return r.s.do(ctx, "take_scs", mark, func(ctx context.Context, conn redis.Conn) error {
		conn.Send("SET", mark, "1", "NX", "PXAT", at)
		_, err := cmd(ctx, conn, "PEXPIREAT", mark, at)
		return keyDenied(err, "PEXPIREAT", r.patterns())
	})
}

// SwapMark puts value in place of what the marker of the scs key token,
// which [SCSRecords.Take] or [SCSRecords.Retire] set, holds, and returns
// what it held: their "1", or what an earlier SwapMark put; "" when there is no marker (never
// set, or expired), which it leaves so. The marker keeps its time to
// live. The session package puts there the id of the session the record
// became, with the time, and a logout or a login of the same browser that found the
// record taken puts a mark of its own, so that of a migration and such a
// request running side by side, the one that comes second ends the
// migrated session (see session.SCSImport). One SET with XX, KEEPTTL and
// GET; like Retire, it does not wait for replicas, and its Observer op is
// take_scs.
func (r *SCSRecords) SwapMark(ctx context.Context, token, value string) (string, error) {
	if r.err != nil {
		return "", r.err
	}
	mark := r.marker(token)
	var prev string
	err := r.s.do(ctx, "take_scs", mark, func(ctx context.Context, conn redis.Conn) error {
		var err error
		prev, err = redis.String(cmd(ctx, conn, "SET", mark, value, "XX", "KEEPTTL", "GET"))
		if errors.Is(err, redis.ErrNil) {
			return nil
		}
		return keyDenied(err, "SET", r.patterns())
	})
	return prev, err
}

// markerExpiry is the PXAT of a marker until the time given: rounded up,
// so that the marker outlives a copy that expires at the same deadline in
// milliseconds (PEXPIREAT, as scs writes it).
func markerExpiry(until time.Time) int64 {
	return until.Add(time.Millisecond - 1).UnixMilli()
}

// setMarker sets the marker mark until the time given.
func (r *SCSRecords) setMarker(ctx context.Context, mark string, until time.Time) error {
	at := markerExpiry(until)
	return r.s.do(ctx, "take_scs", mark, func(ctx context.Context, conn redis.Conn) error {
		_, err := cmd(ctx, conn, "SET", mark, "1", "PXAT", at)
		return keyDenied(err, "SET", r.patterns())
	})
}

// RetireUser marks the scs sessions of userID, the user id a session.SCSImport
// reads under its UserKey, as ended until the given time, so that
// [SCSRecords.UserRetired] reports true until then: the session package
// calls it from RevokeAll and RevokeOthers while a migration is on, since
// scs sessions not migrated yet are in no user's index, and refuses to
// migrate the sessions of a retired user. The marker is
// "<KeyPrefix>scs_migrated:user:<userID>": one SET with PXAT. (The markers
// of [SCSRecords.Retire] are a base64url hash, which holds no colon: the
// two never meet.)
//
// Like Take, it does not wait for replicas, and its Observer op is take_scs.
func (r *SCSRecords) RetireUser(ctx context.Context, userID string, until time.Time) error {
	if r.err != nil {
		return r.err
	}
	return r.setMarker(ctx, r.userMarker(userID), until)
}

// UserRetired reports whether [SCSRecords.RetireUser] marked userID, and its
// mark has not expired: one EXISTS. Its Observer op is take_scs.
func (r *SCSRecords) UserRetired(ctx context.Context, userID string) (bool, error) {
	if r.err != nil {
		return false, r.err
	}
	mark := r.userMarker(userID)
	var n int
	err := r.s.do(ctx, "take_scs", mark, func(ctx context.Context, conn redis.Conn) error {
		var err error
		n, err = redis.Int(cmd(ctx, conn, "EXISTS", mark))
		return keyDenied(err, "EXISTS", r.patterns())
	})
	return n == 1, err
}

// userMarker returns the key of RetireUser's marker of userID.
func (r *SCSRecords) userMarker(userID string) string {
	return r.s.keyPrefix + "scs_migrated:user:" + userID
}

// patterns returns the ACL key patterns of the keys r uses, scs's and the
// markers', for Describe to name when the ACL denies them.
func (r *SCSRecords) patterns() string {
	return "~" + r.prefix + "* ~" + r.s.keyPrefix + "scs_migrated:*"
}

// marker returns the key of the marker of the scs key token: hashed, since
// scs keys hold live tokens unless scs ran with HashTokenInStore.
func (r *SCSRecords) marker(token string) string {
	sum := sha256.Sum256([]byte(r.prefix + token))
	return r.s.keyPrefix + "scs_migrated:" + base64.RawURLEncoding.EncodeToString(sum[:])
}
