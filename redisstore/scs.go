package redisstore

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"time"

	"github.com/gomodule/redigo/redis"
)

// The methods in this file make a Store an scs.CtxStore (and scs.Store), so
// that an application using github.com/alexedwards/scs/v2 directly can
// adopt it:
//
//	sm := scs.New()
//	sm.Store = store // leave sm.HashTokenInStore false: the Store hashes
//
// They take the raw scs token and key Redis by its hash, id =
// base64url-without-padding(SHA-256(token)), exactly what scs computes when
// HashTokenInStore is set, so the live token is never a Redis key. Setting
// HashTokenInStore as well would hash twice; that works but gains nothing.
//
// The Store deliberately does not implement scs.IterableCtxStore or
// scs.IterableStore. Their AllCtx and All return records keyed by token, and
// a store that keeps only hashes cannot know the tokens. Returning ids
// instead would reproduce the scs bug where Destroy inside Iterate hashes an
// id a second time and deletes nothing. Use [Store.Iterate], which yields
// ids, and [Store.Remove] instead.

// FindCtx returns the data stored for an scs session token and whether there
// is any, as scs.CtxStore requires. It does not change the expiry.
func (s *Store) FindCtx(ctx context.Context, token string) ([]byte, bool, error) {
	return s.load(ctx, "find", s.prefix+hashToken(token), 0)
}

// CommitCtx stores data for an scs session token until expiry, replacing
// any data stored before (SET key val PXAT ms), as scs.CtxStore requires. An
// expiry that is not in the future deletes the data instead, as scs's own
// redisstore does.
func (s *Store) CommitCtx(ctx context.Context, token string, b []byte, expiry time.Time) error {
	key := s.prefix + hashToken(token)
	if !expiry.After(time.Now()) {
		return s.remove(ctx, "commit", key)
	}
	return s.do(ctx, "commit", key, func(ctx context.Context, conn redis.Conn) error {
		ms := expiry.UnixMilli()
		if expiry.Nanosecond()%int(time.Millisecond) != 0 {
			ms++ // round up, like the ttl of the other writes
		}
		_, err := cmd(ctx, conn, "SET", key, b, "PXAT", ms)
		return err
	})
}

// DeleteCtx deletes the data stored for an scs session token, as
// scs.CtxStore requires. Deleting a token that has no data is not an error.
func (s *Store) DeleteCtx(ctx context.Context, token string) error {
	return s.remove(ctx, "delete", s.prefix+hashToken(token))
}

// Find is [Store.FindCtx] with context.Background(); the Store's Timeout
// still bounds it.
func (s *Store) Find(token string) ([]byte, bool, error) {
	return s.FindCtx(context.Background(), token)
}

// Commit is [Store.CommitCtx] with context.Background(); the Store's Timeout
// still bounds it.
func (s *Store) Commit(token string, b []byte, expiry time.Time) error {
	return s.CommitCtx(context.Background(), token, b, expiry)
}

// Delete is [Store.DeleteCtx] with context.Background(); the Store's Timeout
// still bounds it.
func (s *Store) Delete(token string) error {
	return s.DeleteCtx(context.Background(), token)
}

// hashToken returns the id under which the scs methods store a token's
// data: the same value as scs's own hashing for HashTokenInStore.
func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
