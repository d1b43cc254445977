package redisstore

import (
	"context"
	"errors"

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
}

// SCSRecords returns the scs records of the Redis that s uses, under the
// keys "<prefix><token>": the prefix given to scs's redisstore.NewWithPrefix,
// or "" for DefaultSCSPrefix, that of redisstore.New. The Store's KeyPrefix
// plays no part: scs keys are where scs put them.
func (s *Store) SCSRecords(prefix string) *SCSRecords {
	if prefix == "" {
		prefix = DefaultSCSPrefix
	}
	return &SCSRecords{s: s, prefix: prefix}
}

// Take returns the record stored for the scs key token (the token itself,
// or its hash when scs ran with HashTokenInStore) and deletes it, in one
// command (GETDEL, Redis 6.2 or later), so of concurrent calls for the same
// token exactly one gets the record. A missing record is not an error. With
// [Config.WaitReplicas], a record is returned only once that many replicas
// have its deletion, so that a failover cannot bring it back.
//
// An ACL user needs "+getdel" and the key pattern of the prefix
// ("~scs:session:*") besides the commands of the package documentation.
func (r *SCSRecords) Take(ctx context.Context, token string) (record []byte, found bool, err error) {
	key := r.prefix + token
	err = r.s.do(ctx, "take_scs", key, func(ctx context.Context, conn redis.Conn) error {
		b, err := redis.Bytes(cmd(ctx, conn, "GETDEL", key))
		if errors.Is(err, redis.ErrNil) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := r.s.confirm(ctx, conn); err != nil {
			return err
		}
		record, found = b, true
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	return record, found, nil
}
