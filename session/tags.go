package session

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"hash"
)

// Hash tags keep the Redis keys of each user's sessions in one Redis
// Cluster hash slot, so that the store can change a user's sessions and
// their index in one transaction (see Config.TagKey). With a TagKey, every
// token carries a tag, "{tag}<token>", inside its signed value, and the
// session id and the user key the store sees start with the same
// "{tag}", which Redis Cluster hashes instead of the whole key:
//
//	session id   {tag}<base64url(SHA-256(token))>
//	user key     {tag}<userID>
//
// A user's tag is tagLen characters of base64url(HMAC-SHA256(TagKey,
// userID)): the same on every instance and for every session of the user,
// and, being keyed, it says nothing about the user id to whoever sees a
// cookie. An anonymous session's tag comes from its first token's hash, and
// a renewal keeps it, so that the session's old and new records share a
// slot too. A login gets the user's tag; it deletes the replaced anonymous
// session on its own, in that session's slot.
//
// Tokens without a tag keep today's keys: without a TagKey nothing changes.

// tagLen is the length of a hash tag: 4 base64url characters, 24 bits, so
// 16,777,216 tags over Redis Cluster's 16,384 slots, 1,024 a slot (983 to
// 1,068: CRC16 spreads them within 4.3%). With 3 characters the slots
// would get 8 to 23 tags each, and the busiest slot 1.4 times the mean
// load.
const tagLen = 4

// splitTag returns the tag of a tagged token or id, and the rest; tag is ""
// for an untagged one.
func splitTag(t string) (tag, rest string) {
	if len(t) > tagLen+2 && t[0] == '{' && t[tagLen+1] == '}' {
		return t[1 : tagLen+1], t[tagLen+2:]
	}
	return "", t
}

// withTag returns s with the tag in front, or s itself for tag "".
func withTag(tag, s string) string {
	if tag == "" {
		return s
	}
	return "{" + tag + "}" + s
}

// userTag returns the tag of userID, or "" without a TagKey.
func (m *Manager) userTag(userID string) string {
	if m.cfg.TagKey == nil || userID == "" {
		return ""
	}
	tag := m.userTagOf(userID)
	return string(tag[:])
}

// hasUserTag reports whether tag is the tag of userID under the TagKey;
// false without one. It allocates nothing: load checks the tag of every
// logged-in session it reads.
func (m *Manager) hasUserTag(tag, userID string) bool {
	if m.cfg.TagKey == nil {
		return false
	}
	want := m.userTagOf(userID)
	return string(want[:]) == tag
}

// userTagOf computes the tag of userID with a pooled HMAC state: a new one
// costs 9 allocations and 0.7 µs, on every read of a logged-in session.
// The tag's 3 bytes of MAC are its tagLen base64url characters.
func (m *Manager) userTagOf(userID string) (tag [tagLen]byte) {
	t, _ := m.tagMACs.Get().(*tagMAC)
	if t == nil {
		t = &tagMAC{h: hmac.New(sha256.New, m.cfg.TagKey)}
	}
	t.h.Reset()
	t.in = append(t.in[:0], userID...)
	t.h.Write(t.in)
	sum := t.h.Sum(t.sum[:0])
	base64.RawURLEncoding.Encode(tag[:], sum[:tagLen*3/4])
	m.tagMACs.Put(t)
	return tag
}

// tagMAC is an HMAC-SHA256 state keyed with TagKey, with buffers for its
// input and sum, so that a pooled one computes a tag without allocating.
type tagMAC struct {
	h   hash.Hash
	in  []byte
	sum [sha256.Size]byte
}

// anonTag returns the tag of a new anonymous session whose token is token,
// or "" without a TagKey.
func (m *Manager) anonTag(token string) string {
	if m.cfg.TagKey == nil {
		return ""
	}
	return idOf(token)[:tagLen]
}

// taggedStore is the Store of a Manager with a TagKey: it puts the user's
// tag in front of every user id it passes on, so that the index key shares
// its slot with the user's session keys.
//
// Sessions made before the TagKey was set are listed in the user's untagged
// index. Outside a Redis Cluster (legacy is set) listings and "log out
// everywhere" read that index too, and a logout of such a session takes it
// out of it, so that turning a TagKey on hides no session from them. (Only
// the session limit counts tagged sessions alone.) On a Cluster, where the
// untagged index and its sessions lie in other slots, sessions made before
// the TagKey are not supported beyond reading and logging out.
type taggedStore struct {
	Store
	m      *Manager
	legacy bool
}

func (s taggedStore) user(userID string) string { return withTag(s.m.userTag(userID), userID) }

func (s taggedStore) AddUserSession(ctx context.Context, n NewSession) ([]string, error) {
	n.UserID = s.user(n.UserID)
	return s.Store.AddUserSession(ctx, n)
}

func (s taggedStore) MoveSession(ctx context.Context, mv Move) (bool, error) {
	mv.UserID = s.user(mv.UserID)
	return s.Store.MoveSession(ctx, mv)
}

func (s taggedStore) RemoveUserSession(ctx context.Context, userID, id string) (bool, error) {
	if tag, _ := splitTag(id); tag == "" && s.legacy {
		return s.Store.RemoveUserSession(ctx, userID, id) // listed in the untagged index
	}
	return s.Store.RemoveUserSession(ctx, s.user(userID), id)
}

// UserSessions lists the untagged index, the tagged one, and the untagged
// one again. A renewal racing the call moves its session from one index to
// the other: into the tagged one on an instance with the TagKey, back into
// the untagged one on an instance without it (while a deployment sets or
// removes the key). Whenever the move falls, one of the reads finds the
// session, before the move under its old id or after it under its new
// one; with two reads, a move between them in one of the directions would
// hide it from both, and a Revoke would answer ErrNotFound. A session may
// so be listed twice or three times: the Manager keeps one (see
// Manager.list).
func (s taggedStore) UserSessions(ctx context.Context, userID string) ([]string, [][]byte, error) {
	if !s.legacy {
		return s.Store.UserSessions(ctx, s.user(userID))
	}
	var ids []string
	var records [][]byte
	for _, index := range []string{userID, s.user(userID), userID} {
		more, moreRecords, err := s.Store.UserSessions(ctx, index)
		if err != nil {
			return nil, nil, err
		}
		ids, records = append(ids, more...), append(records, moreRecords...)
	}
	return ids, records, nil
}

// VouchUser vouches for a listing of userID's sessions (see voucher) on
// the master of the user's tagged index; the untagged one of a legacy
// listing is on the same server, outside a Cluster.
func (s taggedStore) VouchUser(ctx context.Context, userID string) error {
	if v, ok := s.Store.(voucher); ok {
		return v.VouchUser(ctx, s.user(userID))
	}
	return nil
}

// RemoveUserSessions keeps keep in the index that lists it: the user's
// tagged index, where a renewal moves any session, or the untagged one of
// a session made before the TagKey was set. The other index it empties.
//
// The untagged index goes first: a renewal racing the call either moved
// its session into the tagged index before the first pass, and the second
// pass ends it there, or finds it deleted. The other order would let a
// renewal between the passes carry a session past both. So with legacy
// sessions around, the tagged pass may answer ErrKeepGone after the
// untagged one removed sessions: the removed ids come back with it, and
// the Manager emits their events before it asks again.
func (s taggedStore) RemoveUserSessions(ctx context.Context, userID, keep string) ([]string, error) {
	keepUntagged, keepTagged := "", keep
	switch tag, _ := splitTag(keep); {
	case tag == "":
		// keep was made before the TagKey was set. A renewal moves it
		// into the tagged index and leaves its id in the untagged one,
		// so a renewal racing this call goes unseen, and the renewed
		// session is removed with the others: a rare case, while a
		// deployment adopts a TagKey.
		keepUntagged, keepTagged = keep, ""
	case keep != "" && tag != s.m.userTag(userID):
		// keep was made under another TagKey, in an index this one
		// cannot name; the tagged index never lists it, and the store
		// would answer, every time, that it is gone. As above, a renewal
		// (which moves it into the tagged index) racing this call is
		// removed with the others.
		keepTagged = ""
	}
	var removed []string
	var untaggedErr error
	if s.legacy {
		var err error
		removed, err = s.Store.RemoveUserSessions(ctx, userID, keepUntagged)
		var c interface{ Contention() bool }
		switch {
		case err == nil:
		case keepGone(err), errors.As(err, &c) && c.Contention():
			return removed, err
		default:
			// Fewer replicas than WaitReplicas confirmed the pass
			// (which waits even when it ended none), or Redis failed:
			// the tagged index, which lists every session made since
			// the TagKey, is still emptied on the master, as a store
			// ends sessions there whatever its replicas confirm.
			untaggedErr = err
		}
	}
	more, err := s.Store.RemoveUserSessions(ctx, s.user(userID), keepTagged)
	removed = append(removed, more...)
	if err = errors.Join(untaggedErr, err); err != nil || !s.legacy || keep != "" {
		return removed, err
	}
	// "Log out everywhere" empties the untagged index again: an instance
	// without the TagKey (while a deployment sets or removes it) renewing
	// a session between the passes moves it there from the tagged one.
	// (Sign out the others keeps a session, which such a renewal may move
	// there as well, under a new id that this pass could not tell from
	// the others.)
	more, err = s.Store.RemoveUserSessions(ctx, userID, "")
	return append(removed, more...), err
}
