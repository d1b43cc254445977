// Package redisstore keeps session records in Redis, on a redigo connection
// pool.
//
// # Keys and records
//
// A record is an opaque byte string stored under "<KeyPrefix>session:<id>"
// with a time to live. The id is chosen by the caller and should be derived
// from the client's secret token, never be the token itself: the session
// package uses base64url(SHA-256(token)), so a key seen in MONITOR, SLOWLOG,
// a replica or a backup cannot be replayed as a cookie. The Store never puts
// an id, a key or a password into an error.
//
// Only plain commands are used, no Lua, so the Store works under an ACL user
// restricted to the key prefix and to the commands below, with scripting
// denied. The calls on one session cost one command each:
//
//	Load(ctx, id, 0)      GET key
//	Load(ctx, id, ttl)    GETEX key PX ttl      read and extend in one round trip
//	Insert(ctx, id, ...)  SET key val PX ttl NX creates, never overwrites
//	Update(ctx, id, ...)  SET key val PX ttl XX only while the session exists
//	Remove(ctx, id)       DEL key
//	Iterate(ctx, fn)      SCAN ... MATCH <KeyPrefix>session:* then MGET per batch
//
// A logged-in user's sessions are also listed in a sorted set,
// "<KeyPrefix>user:<userID>:sessions", of session ids scored by absolute
// deadline, so that listing and revoking them costs in proportion to that
// user's sessions, never to the key space:
//
//	AddUserSession      one pipelined round trip: DEL of the replaced session, SET NX,
//	                    ZADD, PEXPIREAT, ZREMRANGEBYSCORE, ZREM; with a limit, WATCH,
//	                    ZRANGE and EXISTS first, then the same as a MULTI/EXEC transaction
//	MoveSession         WATCH and GET, then MULTI/EXEC with SET NX, DEL, and for a
//	                    user's session ZADD, PEXPIREAT, ZREMRANGEBYSCORE and ZREM
//	RemoveUserSession   DEL and ZREM, pipelined
//	UserSessions        ZREMRANGEBYSCORE and ZRANGE, then MGET (and ZREM of ids found gone)
//	RemoveUserSessions  WATCH, ZRANGE, then MULTI/EXEC with DEL and ZREM; under a
//	                    flood of logins, ZRANGE, DEL and ZREM passes instead
//	Merge               WATCH and GET, then MULTI/EXEC with SET XX
//
// Merge, MoveSession, RemoveUserSessions and AddUserSession with a limit are
// optimistic transactions: when another writer changes the watched key
// before EXEC, they wait a short random time and try again, for as long as
// the call's time budget allows, and then fail with ErrContention. Calls of
// one Store on the same key take turns, so they only race with other
// processes.
//
// Every command a Store can send, in any configuration, and so what an ACL
// user needs: GET GETEX SET DEL SCAN MGET PING EXISTS MULTI EXEC DISCARD
// WATCH UNWATCH ZADD ZRANGE ZREM ZREMRANGEBYSCORE PEXPIREAT, and SELECT when
// [Config.DB] is not 0 (sent once per connection). DISCARD and UNWATCH are sent by the pool when
// a connection goes back mid-transaction. The connection's AUTH needs no
// permission. Redis 7.0 or later is required (GETEX, and PEXPIREAT with NX
// and GT), for example:
//
//	ACL SETUSER sessionkit on >password ~session:* ~user:* resetchannels -@all
//	    +get +getex +set +del +scan +mget +ping +exists +multi +exec +discard
//	    +watch +unwatch +zadd +zrange +zrem +zremrangebyscore +pexpireat +select
//
// Update's XX is what makes logout final: a request that loaded the session
// before a concurrent logout cannot write it back.
//
// # Connecting
//
// Configure the connection in code or from the environment:
//
//	cfg, err := redisstore.FromEnv() // REDIS_URL, or REDIS_HOST, REDIS_PORT, ...
//	if err != nil {
//		log.Fatal(err) // names the bad variable, never echoes a password
//	}
//	cfg.KeyPrefix = "myapp:"
//	store, err := redisstore.Open(cfg)
//	if err != nil {
//		log.Fatal(err)
//	}
//	defer store.Close()
//	if err := store.Ping(ctx); err != nil {
//		log.Fatal(err)
//	}
//
// Open builds its own pool with [NewPool]. To share a pool, or to use a
// Sentinel or Cluster connection source, build the [Source] yourself and
// call [New].
//
// # Failures
//
// Each call is bounded by [Config.Timeout] (1s by default) and the caller's
// context, including the wait for a free pooled connection, so an
// unreachable, stalled or saturated Redis makes calls fail fast instead of
// hanging. Errors read "redisstore: <operation>: <cause>" and wrap the cause
// from redigo, the network or the context, so errors.Is(err,
// context.DeadlineExceeded) works.
//
// After Redis restarts, every idle pooled connection has been closed by the
// server. A pool from [NewPool] notices that when it lends the connection,
// with a non-blocking read on the socket (as go-sql-driver/mysql does), and
// dials a new one; no request fails and no PING is sent, so an unmodified
// request still costs exactly one Redis command. This check is available on
// Unix systems; elsewhere each stale connection fails one call.
//
// # scs
//
// A Store is also an scs.CtxStore, for applications that use
// github.com/alexedwards/scs/v2 directly; see [Store.FindCtx].
package redisstore
