// Package sessionkitprom exports the metrics of sessionkit's session
// Manager and Redis store to Prometheus.
//
// It lives in a module of its own, github.com/sessionkit/sessionkit/prometheus,
// so that the core module does not depend on the Prometheus client. The
// package is named sessionkitprom, not prometheus, so that it never collides
// with github.com/prometheus/client_golang/prometheus in the same file;
// import it with its name spelled out, which tools expect when a package's
// name differs from its directory:
//
//	import sessionkitprom "github.com/sessionkit/sessionkit/prometheus"
//
// # Wiring
//
// New registers the collectors and returns a *Metrics, which is both a
// session.Metrics and a redisstore.Observer. WatchPool adds the gauges and
// counters of a Store's connection pool, read from Store.PoolStats at
// scrape time (no goroutine, no command sent to Redis):
//
//	m, err := sessionkitprom.New(prometheus.DefaultRegisterer, sessionkitprom.Options{})
//	...
//	store, err := redisstore.Open(redisstore.Config{Addr: addr, Observer: m})
//	...
//	if err := m.WatchPool(store); err != nil { ... }
//	mgr, err := session.New(store, session.Config{Keys: keys, Metrics: m})
//
// # Series
//
// Every name starts with sessionkit_; durations are in seconds. Each series
// of a known label value exists from New on, at zero, so that rate() and
// increase() see the first event and alerts can tell "none" from "absent".
//
// From the Store (via ObserveCall):
//
//	sessionkit_store_operation_duration_seconds{op}  histogram of every call, failed or not
//	sessionkit_store_errors_total{op,class}           failed calls
//
// op is one of the ops that redisstore.Observer documents (load, insert,
// update, merge, remove, ping, iterate, add_user_session, move_session,
// remove_user_session, user_sessions, vouch, remove_user_sessions, key_stats,
// rate_limit, take_scs, find, commit, delete); an op the Store names that is not in that list gets its series
// when first seen. class is unavailable (redisstore.ErrUnavailable: answer
// 503, Redis should recover), refused (redisstore.ErrRefused: fix the
// configuration), contention (redisstore.ErrContention: writers racing
// on one key, on a healthy or a slow Redis) or other (anything else, such as a merge
// function's own error).
//
// From the Store's pool (via WatchPool), one snapshot per scrape:
//
//	sessionkit_redis_pool_connections{state="in_use"|"idle"}  gauge; the sum is the open connections
//	sessionkit_redis_pool_max_connections                     gauge; per node on a Cluster
//	sessionkit_redis_pool_exhausted                           gauge; 1 while every connection is in use and the pool may open no more (Cluster: any node's MaxActive calls)
//	sessionkit_redis_pool_waits_total                         calls that waited for a connection and got one
//	sessionkit_redis_pool_wait_seconds_total                  time those waits took
//	sessionkit_redis_dials_total                              connections dialled
//	sessionkit_redis_dial_errors_total                        dials that failed
//	sessionkit_redis_sentinels_down                           gauge; 1 while no sentinel names the master
//	sessionkit_redis_sentinel_lookup_failures_total           lookups no sentinel answered with the master
//	sessionkit_redis_sentinels_failing                        gauge; sentinels that did not answer at the last check of them all (every 30 s)
//
// The dial counters stay at zero for a Store built by redisstore.New, whose
// pool is the caller's; the sentinel series outside Sentinel.
//
// From the Manager (via the session.Metrics methods):
//
//	sessionkit_sessions_total{event}                   created, renewed, destroyed, revoked, expired, migrated
//	sessionkit_tokens_rejected_total{reason}           oversized, malformed, bad_signature, retired_key
//	sessionkit_requests_anonymous_on_outage_total      requests with a token served anonymous: store unavailable or refusing
//	sessionkit_commit_failures_total                   requests whose changes were lost (answered 503, or 500: too large)
//
// # Cost
//
// The methods called per request (ObserveCall on every store call,
// SessionEvent, TokenRejected, ServedAnonymous, CommitFailed) do not
// allocate: every label child is looked up once, in New, and kept in tables
// indexed by op, class, event and reason.
package sessionkitprom
