// Command example is the sessionkit demo server: a login form, a dashboard,
// a devices page and a JSON API over sessions kept in Redis, with
// Prometheus metrics on /metrics.
//
//	make run
//
// Environment: ADDR (default 127.0.0.1:8080); REDIS_URL, or REDIS_HOST and
// the other REDIS_* variables of redisstore.FromEnv (when none that names a
// server or how to reach it is set, see redisServerVars: an embedded
// in-memory Redis, to which only the near-cache's REDIS_NEAR_CACHE_*
// variables apply); SESSION_KEYS (unset: random keys for this process, so
// sessions do not survive a restart); SESSION_RETIRED_KEYS (keys taken out
// of SESSION_KEYS, whose tokens then count as such, not as forgeries);
// SESSION_LIFETIME (default 24h);
// SESSION_IDLE_TIMEOUT (default 30m); SESSION_COOKIE_SECURE (default false,
// since the example serves plain HTTP on localhost); SESSION_MAX_PER_USER;
// SESSION_TAG_KEY (required on a Redis Cluster when SESSION_KEYS is set;
// with SESSION_KEYS unset, random for this process); RATE_LIMIT_KEY, the key of the login limits (the base64
// of at least 32 random bytes, the same on every instance; unset: a random
// key for this process); LOGIN_LIMIT_PER_USER and LOGIN_LIMIT_PER_IP
// (default 5 and 100 attempts per 15 minutes); REAUTH_AFTER (default 10m:
// how long after a login, or a confirmation of the password, ending the
// user's other sessions needs no password; see confirm.go). Demo users:
// alice / wonderland and bob / builder.
//
// # Start-up
//
// Before it connects to Redis the server logs one line, "example:
// configuration", with the effective settings: the listen address, the
// deployment (mode single, sentinel or cluster, with the address, the
// sentinels and master name, or the cluster nodes), TLS, the Redis user
// the connections authenticate as ("" for the default user; a user
// without a password is named too, and authenticates with an empty one),
// database, pool size,
// timeouts, key prefix, WaitReplicas and near-cache, and the session
// lifetime, idle timeout, cookie name and Secure flag, session limit,
// whether records are written in the previous format
// (SESSION_PREVIOUS_FORMAT), whether a tag key and a rate limit key are
// set, the login limits, and REAUTH_AFTER.
// Defaults are shown as the values they stand for. Passwords, signing
// keys, the tag key and the rate limit key never appear, only whether they
// are set and how many signing and retired keys there are.
//
// # Login limits
//
// POST /login and POST /api/login run behind middleware.LoginLimit
// (ratelimit.go), counted in Redis so that every instance shares the
// counts: 5 attempts per user name, the form and the API together, and 100
// per address, per 15 minutes (LOGIN_LIMIT_PER_USER, LOGIN_LIMIT_PER_IP). Every attempt counts, whether the user
// exists and the password is right or not, so the answers say nothing
// about which user names exist (and a wrong user name costs the same
// password check as a wrong password, see users.go). Over a limit, a
// browser gets the login page with 429, saying when to try again, and API
// clients 429 JSON, both with Retry-After and the RateLimit headers. When
// Redis cannot count an attempt the limits fail closed: 503 with
// Retry-After, the login page's outage version for a browser. Password
// checks run one per CPU at a time, those of one address (IPv4, or IPv6
// /64) on at most half of them (on one CPU, the one), its others waiting
// their turn; a login
// that finds none free within 2 seconds (a flood of attempts from many
// addresses, each within its limit) gets 503 with Retry-After too, and
// makes no session.
//
// # Confirming the password
//
// Ending sessions of the user's other than the caller's own (a device's
// Revoke, sign out of all other sessions, log out everywhere, and their API
// routes) needs a login, or a confirmation of the password, within
// REAUTH_AFTER; past it the form answers a page asking for the password,
// and the API 403 {"error":"password required"} until the body carries
// {"password":"..."}. Each session may try 5 passwords per 15 minutes
// (LOGIN_LIMIT_PER_USER), each counted against its address's logins too
// (confirm.go, ratelimit.go).
//
// # Pages
//
// The login page (/ and /login), the dashboard (/) and the devices page
// (/sessions) are html/template pages (templates/) with one stylesheet and
// a few lines of script (assets/, served under /assets/), all embedded in
// the binary. The devices page names each session by its user agent
// ("Safari on iPhone") and offers Revoke per device, "Sign out of all other
// sessions" and "Log out everywhere". A browser (Accept: text/html) gets its
// errors as pages: a Redis outage, 404, 405, a revoke of an ended session;
// API clients, and every route under /api/, get JSON. After an action, the
// next page says what happened; a browser whose session another device
// ended is told so on its next page (see notice.go). The README's "Example
// server" section lists every route and its answers.
//
// # Probes
//
// Three routes are for load balancers and orchestrators. They sit in front
// of the session middleware and the cross-origin protection: they load no
// session, set no cookie, and a Cookie or Authorization header on them is
// ignored.
//
//   - GET /livez answers 200 {"status":"ok"} while the process serves
//     HTTP. It never touches Redis, so a Redis outage does not get every
//     instance restarted; use it as the liveness probe.
//   - GET /readyz answers 200 {"status":"ok"} when Store.Ping succeeds
//     within 500 ms (Redis answers and accepts writes: a read-only replica
//     is not ready), and 503 {"status":"unavailable","check":"redis"} when
//     it does not, or {"status":"unavailable","check":"pool"} when every pooled
//     connection was busy and none came free within those 500 ms. Use it as
//     the readiness probe: an instance that cannot reach Redis, or whose
//     pool is exhausted, gets no new traffic. A change of readiness is
//     logged once, not on every probe. Probes that come while a check
//     runs share its outcome: Redis gets one Ping at a time from /readyz
//     and one from /healthz, however many probes come.
//   - GET /healthz answers 200 {"status":"ok"}, or 503
//     {"status":"unavailable"} when Store.Ping fails within a second (Redis
//     does not answer, or is a read-only replica).
//
// # Metrics
//
// GET /metrics serves Prometheus metrics in the text exposition format
// (promhttp) from a registry of the server's own: sessionkit's series
// from github.com/sessionkit/sessionkit/prometheus (store call durations
// and errors by op, the Redis pool and its dials, session events, refused
// tokens, requests served anonymous during an outage, commit failures; see
// prometheus/README.md), fed by its Metrics as the store's Observer and
// the Manager's Metrics; the Go runtime's and the process's series (go_*,
// process_*); and promhttp's count of its own scrapes. Like the probes it
// sits in front of the session middleware and the cross-origin
// protection: it loads no session, sets no cookie, and sends Redis
// nothing (the pool series are read from the pool's counters at scrape
// time), so it answers during a Redis outage too. It has no
// authentication: a deployment lets only its Prometheus reach it.
//
// The example is a module of its own (example/go.mod), so that the core
// module never requires the Prometheus client; make run and make test run
// it from this directory.
//
// # Shutdown
//
// On SIGTERM or SIGINT the server closes its listener at once (new
// connections are refused), closes idle keep-alive connections, and lets
// the requests in flight finish, session commits included, for up to 5
// seconds. Then it closes the Redis pool and exits with status 0. Requests
// still running after the 5 seconds are cut off (their contexts are
// cancelled and their connections closed) and the server exits with
// status 1. A second signal during the grace period ends the process at
// once; the same signal again within a second of the first counts as the
// first (timeout(1) and other supervisors send it to the process and then
// to its process group).
package main
