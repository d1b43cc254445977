// Package redisstore keeps session records in Redis, on a redigo connection
// pool.
//
// # Keys and records
//
// A record is an opaque byte string stored under "<KeyPrefix>session:<id>"
// with a time to live. The id is chosen by the caller and should be derived
// from the client's secret token, never be the token itself: the session
// package uses base64url of the token's SHA-256 (its first 128 bits, or all
// of it for tokens of earlier versions), so a key seen in MONITOR, SLOWLOG,
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
//	KeyStats(ctx, opts)   SCAN ... TYPE string / zset, ZCARD and MEMORY USAGE per batch, INFO
//	CountRequests(ctx, keys, windows)
//	                      MULTI, then INCR, PEXPIRE ms LT and PTTL per key, EXEC: one round trip
//
// A logged-in user's sessions are also listed in a sorted set,
// "<KeyPrefix>user:<userID>:sessions", of session ids scored by absolute
// deadline, so that listing and revoking them costs in proportion to that
// user's sessions, never to the key space:
//
//	AddUserSession      one pipelined round trip: SET NX, ZADD, PEXPIREAT,
//	                    ZREMRANGEBYSCORE; with a replaced session, DEL of it and SET NX
//	                    of its pointer, <id>:next, first and ZREM last, all as a
//	                    MULTI/EXEC transaction; with a limit, WATCH,
//	                    EXISTS, ZRANGE and EXISTS first, then the same as a MULTI/EXEC
//	                    transaction; with a merge of the replaced record, MULTI GET DEL
//	                    GET GET EXEC of it, a logout's mark <id>:ended and a
//	                    renewal's pointer first (again for each pointer it follows),
//	                    then the rest as without it
//	MoveSession         WATCH and GET, then MULTI/EXEC with SET NX, DEL, for a
//	                    user's session ZADD, PEXPIREAT, ZREMRANGEBYSCORE and ZREM,
//	                    and SET of the old id's pointer, <id>:next
//	MovedTo             GET of a moved or replaced session's pointer
//	RemoveUserSession   DEL and ZREM, pipelined (on a Cluster, as every batch of commands:
//	                    MULTI/EXEC, or pipelined when a node out of memory refuses it)
//	                    for an anonymous session SET PX of its mark <id>:ended first
//	RemoveUnmarked      DEL of an anonymous session's record
//	UserSessions        ZREMRANGEBYSCORE and ZRANGE, then MGET; when a record is missing,
//	                    MULTI/EXEC with ZRANGE and MGET (again while a renewal moves a
//	                    session meanwhile; pipelined instead when Redis, out of memory,
//	                    refuses the transaction), and ZREM of the ids found gone
//	RemoveUserSessions  WATCH, ZRANGE, then MULTI/EXEC with DEL and ZREM; under a
//	                    flood of logins, or when Redis, out of memory, refuses the
//	                    transaction, ZRANGE, then passes of DEL, ZREM and ZRANGE,
//	                    pipelined, instead
//	Merge               WATCH and GET, then MULTI/EXEC with SET XX (UNWATCH when merge leaves the record as it is)
//
// Merge, MoveSession, RemoveUserSessions and AddUserSession with a limit
// are optimistic transactions: when another writer changes the watched key
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
// and GT; [Store.Ping] fails on an older one, naming what it refused), for
// example:
//
//	ACL SETUSER sessionkit on >password ~session:* ~user:* resetchannels -@all
//	    +get +getex +set +del +scan +mget +ping +exists +multi +exec +discard
//	    +watch +unwatch +zadd +zrange +zrem +zremrangebyscore +pexpireat +select
//
// [Store.SCSRecords], for a migration from scs (docs/migrating-from-scs.md),
// also needs "+getdel" (Redis 6.2), the key pattern of scs's prefix, such
// as "~scs:session:*", and that of the markers of migrated scs keys,
// "~scs_migrated:*" (prefixed with the KeyPrefix); drop them once the
// migration is over.
//
// KeyStats, for capacity planning (docs/capacity.md), also needs "+zcard",
// "+memory|usage" and "+info"; run it as an admin user, or add them.
// ([Store.Ping] warns of a maxmemory-policy that may evict keys only as
// Redis's default user, which the documented line is not.)
//
// The rate limiter (CountRequests, behind middleware.RateLimit and
// middleware.LoginLimit; docs/ratelimit.md) also needs
// "~rate_limit:* +incr +pexpire +pttl", the key pattern prefixed with the
// KeyPrefix ("~myapp:rate_limit:*"). Without them its counts fail with
// NOPERM (ErrRefused); [Store.PingCounter] checks them, counting nothing.
//
// [Config.NearCache] adds a connection that sends PTTL, CLIENT ID, CLIENT
// TRACKING and SUBSCRIBE __redis__:invalidate, then PING; reads through it
// send GET and PTTL: add "+client|id +client|tracking +subscribe +pttl"
// and the channel "&__redis__:invalidate" (see docs/near-cache.md).
// Without one of them the connection does not connect, the Store logs a
// warning naming the command, and the near-cache stays off. With [New], the
// connection and the Source are also each sent INFO server, once per
// connection of the near-cache, to check they reach the same server: add
// "+info".
//
// Each mode and option adds a few commands: under Sentinel, ROLE (once per
// new connection, to the master); with WaitReplicas, WAIT; on a Cluster,
// CLUSTER SLOTS (to learn which node serves which slot). Add them to the
// user as "+role", "+wait" and "+cluster|slots". The sentinels themselves
// are asked SENTINEL get-master-addr-by-name, SUBSCRIBE +switch-master and
// +promoted-slave, and PING, as SentinelUsername if set, which needs, on
// every sentinel, a user such as this line of an ACL file:
//
//	user snt on >password resetchannels &+switch-master &+promoted-slave -@all +ping +subscribe +sentinel|get-master-addr-by-name
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
// Open builds its own pool with [NewPool], or, for Sentinel and Cluster,
// the connections described below. To share a pool, build it yourself and
// call [New].
//
// # Sentinel and Cluster
//
// With [Config.SentinelAddrs] (REDIS_SENTINELS), Open asks the sentinels
// where the master is, every second and at once when they announce a
// failover (+promoted-slave, +switch-master; the announcing sentinel first)
// or a call fails in a way that says the master moved (READONLY, a broken
// connection). Each new connection checks with
// ROLE that it reached the master (a dial that finds a replica there makes
// the next lookup ask the next sentinel first, so one sentinel that names
// a replica costs calls for a moment only). A master other than the one
// followed (or the first) is followed when the sentinel that named it
// announced the failover, or when no other master is named by as many of
// the sentinels, all asked at once: a sentinel that is behind, and names an
// old master that came back empty, is outvoted; with as many naming each,
// the Store follows none and Describe says so. A connection to a former master is
// closed instead of lent again, since a demoted master can keep accepting
// writes on open connections for seconds, and loses them when it rejoins.
// Reads stay one command. During a failover calls fail with ErrUnavailable
// (503) until the sentinels have promoted a replica: about down-after-milliseconds
// plus a second or two. See docs/scaling.md for the windows measured.
// When no sentinel names a master while the master serves, calls go on to
// it, Ping included, and the Store logs a warning (to Config.Logger, at
// most every 10 seconds) and reports PoolStats.SentinelsDown: a
// failover is not followed until the sentinels answer again.
//
// What no client can retire is the time between a replica's promotion and
// the sentinels' announcing it (up to a second with SENTINEL DEBUG
// info-period 1000, ten with the default timers): the old master still
// answers as a master, accepts writes and acknowledges them, and they are
// lost when it rejoins as a replica. The sentinel that runs the failover
// announces the promotion (+promoted-slave) as it starts naming the new
// master to get-master-addr-by-name, and the Store follows within
// milliseconds when it is the sentinel the Store subscribes to; another
// sentinel announces +switch-master once it hears of the new master, as a
// rule 50 to 100 ms later, and writes in between still go to the old
// master. (The failover's own +switch-master waits until every other
// replica follows the new master: with two replicas, a second or more.)
// A manual SENTINEL FAILOVER so loses some acknowledged logouts, and
// logins with them, without a single failed request. Set WaitReplicas to the
// number of replicas to make each logout wait for them all: an
// acknowledged logout then survives the switch whatever the number of
// replicas (logins are not protected; losing one costs a new login).
// min-replicas-to-write 1 (and a small min-replicas-max-lag) on the servers
// makes the old master refuse every write instead, but only with a single
// replica, whose promotion leaves the old master with none; with two, the
// old master keeps the other, and goes on acknowledging writes that are
// lost.
//
// With [Config.ClusterNodes] (REDIS_CLUSTER_NODES), Open uses a Redis
// Cluster through github.com/mna/redisc, which learns the slot map with
// CLUSTER SLOTS and follows MOVED. Each call's connection is bound to the
// node that serves its key, and every call keeps to one hash slot: the
// session package (with session.Config.TagKey, required there) gives each
// user a short keyed hash tag, carried in the signed token, and names keys
//
//	<KeyPrefix>session:{tag}<id>      a session's record
//	<KeyPrefix>user:{tag}<userID>:sessions   the user's index
//
// so that a user's sessions and index share a slot and change in one
// MULTI/EXEC transaction (logins under a limit, renewals, log out
// everywhere), and a read is still one command computed from the cookie
// alone. Anonymous sessions are tagged by their own id. On a Cluster the
// pipelines that are plain on one server are sent as MULTI/EXEC, so that a
// call refused part way by a moving slot (MOVED, ASK, TRYAGAIN,
// CLUSTERDOWN, EXECABORT) ran not at all and is tried again whole, after a
// short random wait, within its Timeout. [Store.Iterate] walks every
// master.
//
// With [Config.WaitReplicas] (REDIS_WAIT_REPLICAS) set to the number of
// replicas, logout and revocation (Remove, RemoveUserSession,
// RemoveUserSessions, and AddUserSession when it replaces the user's
// signed-in session: a re-login) wait for every replica (WAIT) and fail with
// ErrUnavailable when fewer confirm in time: a logout or revocation that
// returned without error then survives the master's failure. So does a
// Load that finds no record, which fails then with an error whose Absent
// method reports true, and [Store.VouchUser], which package session calls
// before it answers with a listing of a user's sessions: a logout sent
// again after one that failed is not answered as done by a master that a
// failover has just replaced. A WaitReplicas below the number of replicas is not
// enough: the old master keeps the replicas that were not promoted until
// it is demoted, and what only they confirmed is lost when they resync
// from the new one. Without it (the default), a logout acknowledged in the
// moments before a failover can be lost with the writes the replica had
// not yet received, and the session comes back; set min-replicas-to-write
// on the servers as well to bound how far a replica may lag. Logins and
// renewals do not wait: they have already handed out a new token when WAIT
// would answer, and one lost in a failover costs the user a new login (or
// brings back the token a renewal replaced, which the same user held), as
// does a session revoked by the session limit at such a login.
//
// # Failures
//
// Each call is bounded by [Config.Timeout] (1s by default) and the caller's
// context, including the wait for a free pooled connection, so an
// unreachable, stalled or saturated Redis makes calls fail fast instead of
// hanging (a change made in two steps runs its second to its end once the
// first is made, within Config.Timeout: see there). Errors read "redisstore: <class> (<operation>): <cause>", such as
// "redisstore: redis unavailable (load): dial tcp ...", and wrap the class
// (ErrUnavailable, ErrRefused, ErrContention) and the cause from redigo,
// the network or the context, so errors.Is(err, context.DeadlineExceeded)
// works too. A call whose caller cancelled its context reads
// "redisstore: <operation>: <cause>" and has no class (see ErrUnavailable).
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
// github.com/alexedwards/scs/v2 directly; see [Store.FindCtx]. The sessions
// such an application keeps do not carry over to a session.Manager (its
// FromSCS reads scs's own redisstore's records): moving to the Manager
// signs those users out once (docs/migrating-from-scs.md).
package redisstore
