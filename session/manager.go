package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alexedwards/scs/v2"

	"github.com/sessionkit/sessionkit/internal/loglimit"
	"github.com/sessionkit/sessionkit/internal/nocache"
	"github.com/sessionkit/sessionkit/internal/redact"
)

// Manager loads and saves the sessions of HTTP requests. It keeps the
// per-request data engine of scs (values in the request context, token
// generation and renewal) and adds what a login session needs on top: signed
// tokens, ids hashed from tokens, idle and absolute timeouts enforced by the
// store, writes that cannot resurrect a session, and a failure policy that
// never logs a user out because Redis is down.
//
// A Manager is safe for concurrent use. Wire it with middleware.Sessions and
// use the package's context helpers (Create, UserID, Get, Put, Destroy, ...)
// in handlers.
type Manager struct {
	cfg Config
	// store is where the Manager reads and writes every record, itself and
	// with explicit arguments.
	store Store
	// engine is scs, kept for its per-request value map (Put, Get, Pop,
	// Remove, Keys, Clear and the deadline) and its token generation
	// (RenewToken). Each request's values live in a context of their own,
	// state.data, made from context.Background(), so that the zero context
	// key of an engine built as a literal never collides with a nested
	// Manager's, and so that scs never touches the request's context. Its
	// store is engineStore: scs never reaches the session store.
	engine *scs.SessionManager
	// codec writes records as cfg asks (device names, the user agent,
	// the previous release's format) and reads any.
	codec  codec
	signer *signer
	log    *slog.Logger
	outage *loglimit.Limiter // warnings that the store is unavailable
	// unseen limits the warnings that a last-seen time was not refreshed,
	// apart from outage: one must not hold back the other.
	unseen *loglimit.Limiter
	// unsaved limits the warnings that a request's changes could not be
	// saved (see commitFailed).
	unsaved *loglimit.Limiter
	// scsMissing and scsUnregistered limit the warnings that an scs
	// cookie found no record, and the errors that its record holds a type
	// not registered with gob (see importSCS).
	// scsNoUser limits the warnings that an scs session migrated as
	// anonymous while none had a user yet (see migrate), and scsLong those
	// that one outlives FromSCS.Lifetime (see importSCS).
	scsMissing, scsUnregistered, scsNoUser, scsLong *loglimit.Limiter
	// foreignTag limits the warnings that a session's hash tag was made
	// with another TagKey (see load).
	foreignTag *loglimit.Limiter
	// tagMACs holds *tagMAC states for userTagOf.
	tagMACs sync.Pool
	// scsFound is set once FromSCS.Records has found a record: its setting
	// (prefix, Redis, database) is then known to be right (see importSCS).
	scsFound atomic.Bool
	// scsUserSeen is set once an scs session held a value under
	// FromSCS.UserKey: the setting is then known to be right (see migrate).
	scsUserSeen atomic.Bool
	// seenPause is when, in unix nanoseconds of now, last-seen refreshes
	// resume after one failed (see lastSeenPause).
	seenPause atomic.Int64
	now       func() time.Time
	// decoded keeps records decoded when the store keeps them in memory
	// (see decoded.go); nil otherwise.
	decoded *decodedCache
	// cookieAttrs ends every session cookie: see setCookie.
	cookieAttrs string
	// sharedStore logs once that m runs nested inside another Manager
	// on the same Store (checkNested).
	sharedStore sync.Once
	// sharedCookie logs once that m runs nested inside another Manager
	// with the same cookie name (checkNested).
	sharedCookie sync.Once
	// insecureOverHTTPS logs once that a Manager with InsecureCookie
	// serves a request that came over HTTPS (see checkInsecure).
	insecureOverHTTPS sync.Once
	// warnedSecureOverHTTP says that m has logged that it set its Secure
	// cookie in answer to a request that browsers drop it from (see
	// secureOverHTTP): it logs that once, and then stops looking.
	warnedSecureOverHTTP atomic.Bool
}

// outageLogInterval is how often a Manager logs that the store is
// unavailable while it stays so; the lines in between are counted in the
// next one.
const outageLogInterval = 10 * time.Second

// lastSeenPause is how long a Manager refreshes no last-seen time after
// such a refresh failed: a Redis that refuses writes but serves reads (out
// of memory, a replica) would otherwise cost every read of a session due
// for one two more round trips, on a Redis already in trouble.
const lastSeenPause = 5 * time.Second

// New returns a Manager that keeps sessions in store, or an error naming the
// first invalid field of cfg. Managers on one store (or on stores of one
// Redis and key prefix) share their sessions, as instances of one app do:
// with the same keys a token of either opens the other's session, and
// either way each one's List, RevokeAll and session limit act on the
// other's sessions too.
func New(store Store, cfg Config) (*Manager, error) {
	// A nil *redisstore.Store is a non-nil interface that would panic at
	// the first request.
	if v := reflect.ValueOf(store); store == nil || v.Kind() == reflect.Pointer && v.IsNil() {
		return nil, errors.New("session: New: nil Store")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	// Records that can tell whether their keys overlap this Store's say
	// so, as redisstore's do when they come from another Store than the
	// Manager's (see SCSRecords). Optional, as Err is.
	if imp := cfg.FromSCS; imp != nil {
		if r, ok := imp.Records.(interface{ CheckStore(store any) error }); ok {
			if err := r.CheckStore(store); err != nil {
				return nil, fmt.Errorf("session: Config.FromSCS.Records: %w", err)
			}
		}
	}
	sg := newSigner(cfg.Keys, cfg.RetiredKeys, cfg.Lifetime)
	c, ok := store.(interface{ Cluster() bool })
	cluster := ok && c.Cluster()
	if cluster && cfg.TagKey == nil {
		return nil, errors.New("session: Config.TagKey: required with a store on a Redis Cluster, to keep each user's keys in one hash slot")
	}
	m := &Manager{
		cfg:             cfg,
		store:           store,
		signer:          sg,
		log:             cfg.Logger,
		outage:          &loglimit.Limiter{Interval: outageLogInterval},
		unseen:          &loglimit.Limiter{Interval: outageLogInterval},
		unsaved:         &loglimit.Limiter{Interval: outageLogInterval},
		scsMissing:      &loglimit.Limiter{Interval: outageLogInterval},
		scsUnregistered: &loglimit.Limiter{Interval: outageLogInterval},
		scsNoUser:       &loglimit.Limiter{Interval: outageLogInterval},
		scsLong:         &loglimit.Limiter{Interval: outageLogInterval},
		foreignTag:      &loglimit.Limiter{Interval: outageLogInterval},
		now:             time.Now,
		codec:           codec{name: cfg.DeviceName, keepUserAgent: cfg.KeepUserAgent, previous: cfg.PreviousFormat},

		cookieAttrs: cookieAttributes(cfg),
	}
	m.decoded = newDecodedCache(store)
	// Built as a literal, not with scs.New, which starts a cleanup goroutine
	// for an in-memory store that would be replaced at once (and that cannot
	// be stopped without a data race in scs v2.9.0).
	m.engine = &scs.SessionManager{
		Lifetime: cfg.Lifetime,
		Store:    engineStore{},
		Codec:    m.codec,
	}
	if cfg.TagKey != nil {
		m.store = taggedStore{Store: store, m: m, legacy: !cluster}
	}
	if imp := cfg.FromSCS; imp != nil {
		if imp.UserKey == "" {
			m.log.Warn("session: FromSCS.UserKey is empty: every scs session migrates as anonymous, its user signed out; set it to the scs key that holds the user id, such as \"userID\"")
		}
		if _, ok := imp.Records.(scsUsers); !ok {
			m.log.Warn("session: FromSCS.Records cannot mark users (it has no RetireUser and UserRetired): RevokeAll and RevokeOthers do not end the scs sessions not migrated yet")
		}
		if _, ok := imp.Records.(markSwapper); !ok {
			m.log.Warn("session: FromSCS.Records cannot name migrated sessions in their marks (it has no SwapMark): a logout beside the request migrating its browser's scs session may be undone by that request's answer")
		}
	}
	return m, nil
}

// String describes m by the configuration it runs with, defaults filled
// in, as Config.String prints it (keys redacted):
// session.Manager{Keys:[1 key] Lifetime:24h0m0s ...}. A nil m prints as
// <nil>.
func (m *Manager) String() string {
	if m == nil {
		return "<nil>"
	}
	return "session.Manager" + m.cfg.String()
}

// Format implements fmt.Formatter: every verb prints String, so that no
// verb (%#v or %d included) prints the keys m keeps.
func (m *Manager) Format(f fmt.State, verb rune) { redact.Format(f, verb, m) }

// LogValue implements slog.LogValuer: the configuration m runs with, as
// Config.LogValue gives it, or "<nil>" for a nil m.
func (m *Manager) LogValue() slog.Value {
	if m == nil {
		return slog.StringValue("<nil>")
	}
	return m.cfg.LogValue()
}

// engineStore is the scs store of Manager.engine. scs calls it only from
// RenewToken and Destroy, to delete the old token's record; the Manager
// deletes or moves that record itself, in the same store call that ends or
// renews the session, so Delete does nothing. Find and Commit are never
// called: scs loads no token and commits nothing.
type engineStore struct{}

var errEngineStore = errors.New("session: scs engine asked to read or write a record")

// Find implements scs.Store; see engineStore.
func (engineStore) Find(string) ([]byte, bool, error) { return nil, false, errEngineStore }

// Commit implements scs.Store; see engineStore.
func (engineStore) Commit(string, []byte, time.Time) error { return errEngineStore }

// Delete implements scs.Store; see engineStore.
func (engineStore) Delete(string) error { return nil }

// Load reads the session of r, if any, and returns a context that carries
// it. It never fails: a missing, forged or expired token, and an unreadable
// record, give an anonymous session; a store that cannot be asked gives an
// anonymous session that LoadError reports as ErrStoreUnavailable and that
// is never written back. Tokens that fail verification cost no store
// command. Load never asks for the cookie to be changed: a token that leads
// nowhere may have been replaced in the browser by a parallel login or
// renewal since this request left.
//
// Managers may be nested, each with its own cookie and its own Store (with
// its own KeyPrefix; Managers on one Store share their sessions, see New,
// and Load logs a nested one on the Store of one around it as an error,
// once): the context helpers
// then act on the innermost session, and each Manager's methods on its own.
// A Manager whose Load runs on a request that already carries another
// Manager's session sends no Clear-Site-Data at logout, which would delete
// the outer Manager's cookie as well. Nested Managers with the same cookie
// name read and replace each other's cookie: Load logs that as an error,
// once per Manager. A request whose innermost session is m's already (the
// same Manager's middleware twice on a route: a global one and a
// router's) keeps it: Load returns r's context, and the session is read,
// and committed, once (by the outer middleware.Sessions, which the inner
// one passes the request on to, whatever writers lie between).
func (m *Manager) Load(r *http.Request) context.Context {
	outer := stateFrom(r.Context())
	if outer != nil && outer.m == m {
		return r.Context()
	}
	st := &state{m: m, outer: outer, remoteAddr: r.RemoteAddr, rawUserAgent: r.UserAgent()}
	if st.outer != nil {
		m.checkNested(st.outer)
	}
	if m.cfg.InsecureCookie {
		m.checkInsecure(r)
	} else if !m.warnedSecureOverHTTP.Load() {
		st.secureOverHTTP = dropsSecure(r)
	}
	ctx := context.WithValue(r.Context(), stateKey{}, st)

	signed, bearer := m.signedFromRequest(r)
	cookie := signed
	if bearer {
		// A logout of this token must not expire or replace a cookie
		// that holds another session: see state.keepCookie.
		v, ok := m.sessionCookie(r.Header)
		st.keepCookie = ok && v != signed
		cookie = v
	}
	st.sentCookie = cookie != ""
	if !st.sentCookie {
		st.withheld = m.withheld(r)
	} else {
		st.plainHTTP = m.plainHTTP(r) // only a request with the cookie can expire it
	}
	if m.cfg.FromSCS != nil {
		if m.importSCS(ctx, st, r, signed, bearer) {
			return ctx
		}
		// Not beside a Bearer token: its logout leaves the cookies alone.
		// A cookie of scs's with a Path or Domain of its own may be in the
		// browser though this request did not carry it (a login at /login
		// of a cookie at /app/): expiring it costs nothing where it is not.
		st.scsToken, st.scsCookie = m.scsToken(r)
		st.scsCookie = (st.scsCookie || !m.cfg.FromSCS.everywhere()) && !bearer
		if bearer {
			st.scsToken = ""
		}
	}
	if signed == "" {
		return ctx
	}
	// Anyone can send bad or dead tokens at will: they are logged at Debug
	// only.
	// Until a session is found, the token leads nowhere: see state.canWrite.
	st.stale = true
	token, deadline, reason, aged := m.signer.check(signed)
	switch {
	case aged:
		// Signed, but past the MAC's age limit, which lies beyond its
		// deadline: an expiry. It is never accepted.
		m.emit(EventExpired, "", idOf(token), m.now())
		return ctx
	case reason != "":
		m.log.Debug("session: token refused", "reason", reason)
		if m.cfg.Metrics != nil {
			m.cfg.Metrics.TokenRejected(reason)
		}
		return ctx
	}
	if st.keepCookie && m.sameToken(cookie, token) {
		// Token signs the same token anew at each call, so a browser
		// app's Bearer and its cookie differ as strings while they hold
		// one session, whose cookie a logout or renewal must change.
		st.keepCookie = false
	}
	id := idOf(token)
	now := m.now()
	if !deadline.After(now) {
		m.emit(EventExpired, "", id, now)
		return ctx
	}
	st.presented = token
	ttl := time.Duration(0)
	if m.cfg.IdleTimeout > 0 {
		ttl = min(m.cfg.IdleTimeout, deadline.Sub(now))
	}
	b, found, err := m.store.Load(ctx, id, ttl)
	if err != nil && notRecord(err) {
		// No outage: another program's key where the record would be,
		// which would otherwise answer 503 for as long as it lives.
		m.dropUnreadable(ctx, id, fmt.Errorf("%w: the key holds another type than a record", errBadRecord))
		return ctx
	}
	if err != nil {
		// A record the store did not find but cannot vouch for is gone
		// for a login (see create), not for the rest: the request is
		// served as in an outage, never as signed out.
		st.loadFailed, st.stale, st.absent = true, false, absentUnvouched(err)
		if errors.Is(ctx.Err(), context.Canceled) {
			// The client went away before the record came: no outage to
			// report, and nobody to serve. (A deadline of the request's
			// is no such excuse: a stalled Redis must still show.)
			return ctx
		}
		m.servedAnonymous(now, err)
		return ctx
	}
	m.outage.End(now, func(suppressed int) {
		m.log.Info("session: store available again", "suppressed", suppressed)
	})
	if !found {
		m.log.Debug("session: token without a record: ended or timed out", "session", fingerprint(id))
		return ctx
	}
	recDeadline, md, values, err := m.decoded.decode(id, b)
	if err != nil {
		m.dropUnreadable(ctx, id, err)
		return ctx
	}
	// The deadline signed into the token bounds the session whatever the
	// record says: Token and Renew sign st.deadline, so a record rewritten
	// in Redis with a later one would otherwise extend the session.
	if deadline.Before(recDeadline) {
		recDeadline = deadline
	}
	recDeadline = m.capped(recDeadline, md)
	if !recDeadline.After(now) {
		return ctx
	}
	if tag, _ := splitTag(token); tag != "" && md.UserID != "" && !m.hasUserTag(tag, md.UserID) {
		// An instance with another TagKey (or none) made or renewed it:
		// it is indexed under another key, and this instance's List,
		// Revoke, RevokeAll and session limit cannot see it. It is
		// served, as TagKey documents, but an operator must hear of it:
		// "log out everywhere" on one instance misses the sessions of
		// the other, and nothing else would say so.
		m.foreignTag.Do(now, func(suppressed int) {
			m.log.Warn("session: a session's hash tag was made with another TagKey than this instance's (or this instance has none): List, Revoke, RevokeAll and MaxSessionsPerUser here miss such sessions; expected while a TagKey is rolled out or removed (README, Upgrading), else set the same TagKey on every instance",
				"session", fingerprint(id), "suppressed", suppressed)
		})
	}
	// The values reach scs's map (see state.engineData) only if a helper
	// asks for them.
	st.loaded, st.loadedMeta, st.loadedValues = true, md, values
	st.stored, st.userID, st.deadline, st.stale = token, md.UserID, recDeadline, false
	// Refresh a stale last-seen time with the response's write.
	st.dirty = m.seenDue(md, now)
	return ctx
}

// seenDue reports whether a session with md, read at now, is due a
// last-seen refresh: a logged-in one whose last-seen time is
// Config.LastSeenInterval old.
func (m *Manager) seenDue(md meta, now time.Time) bool {
	return md.UserID != "" && m.cfg.LastSeenInterval > 0 && now.Sub(md.LastSeen) >= m.cfg.LastSeenInterval &&
		now.UnixNano() >= m.seenPause.Load()
}

// insideAnother reports whether a state around st is another Manager's:
// st's Manager then runs inside that Manager's middleware (the same
// Manager's middleware applied twice is not nesting).
func (st *state) insideAnother() bool {
	for o := st.outer; o != nil; o = o.outer {
		if o.m != st.m {
			return true
		}
	}
	return false
}

// checkNested logs, once each, that m runs inside another Manager (outer,
// or one around it) whose cookie has m's name, or that uses m's Store.
// With one cookie both read it: with the same keys the inner Manager takes
// the outer's login for its own, with other keys its login replaces the
// outer's cookie, logging the browser out of the outer one. With one Store
// their sessions and users' indexes are one, as those of two instances of
// one app are: with the same keys a token of either opens the other's
// session under any cookie name (the name is not signed), and with other
// keys each one's session limit, List and RevokeAll still act on the
// other's sessions. (Stores of one Redis and KeyPrefix share them too,
// which m cannot see.)
func (m *Manager) checkNested(outer *state) {
	for o := outer; o != nil; o = o.outer {
		if o.m == m {
			continue
		}
		if o.m.cfg.CookieName == m.cfg.CookieName {
			m.sharedCookie.Do(func() {
				m.log.Error("session: a nested Manager uses the cookie name of a Manager it runs inside, so each reads and replaces the other's cookie; give each Manager its own Config.CookieName", "cookie", m.cfg.CookieName)
			})
		}
		if sameStore(baseStore(o.m.store), baseStore(m.store)) {
			m.sharedStore.Do(func() {
				m.log.Error("session: a nested Manager uses the Store of a Manager it runs inside, so their sessions are one; give each Manager its own Store, with its own redisstore.Config.KeyPrefix", "cookie", m.cfg.CookieName)
			})
		}
	}
}

// checkInsecure logs, once per Manager, that r came over HTTPS (see
// overHTTPS) to a Manager with InsecureCookie: a setting for plain
// http://localhost that reached a site served over HTTPS, whose cookie now
// goes without Secure, and so also over plain HTTP, where anyone on the
// path reads it. The proxy headers are the client's to forge, but they can
// only bring this one line forward.
func (m *Manager) checkInsecure(r *http.Request) {
	if !overHTTPS(r) {
		return
	}
	m.insecureOverHTTPS.Do(func() {
		m.log.Warn("session: Config.InsecureCookie is set, but a request came over HTTPS: the session cookie goes without Secure, so browsers also send it over plain HTTP, where anyone on the network reads it; leave InsecureCookie unset (with session.FromEnv, set SESSION_COOKIE_SECURE=true) outside development on plain http://localhost", "cookie", m.cfg.CookieName)
	})
}

// dropsSecure reports whether r came over plain HTTP (see overHTTPS)
// to a host other than localhost or a loopback address: browsers keep a
// Secure cookie only from a secure context, so a login or a renewal
// answered there leaves that browser signed out (a login that does not
// stick), and nothing else says why. The Manager logs it once (Commit),
// and Load, which reads r before the handler may change it, stops
// asking then.
func dropsSecure(r *http.Request) bool {
	return !overHTTPS(r) && !loopbackHost(r.Host)
}

// overHTTPS reports whether r came over HTTPS: TLS to the app, or, as a
// proxy in front of it says, X-Forwarded-Proto (its first value: "https,
// http" after two proxies), Forwarded's proto (RFC 7239) or
// X-Forwarded-Ssl: on.
func overHTTPS(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	h := r.Header
	first := func(v string) string {
		v, _, _ = strings.Cut(v, ",")
		return strings.TrimSpace(v)
	}
	if strings.EqualFold(first(h.Get("X-Forwarded-Proto")), "https") || strings.EqualFold(h.Get("X-Forwarded-Ssl"), "on") {
		return true
	}
	for pair := range strings.SplitSeq(first(h.Get("Forwarded")), ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(pair), "=")
		if strings.EqualFold(k, "proto") && strings.EqualFold(strings.Trim(v, `"`), "https") {
			return true
		}
	}
	return false
}

// baseStore returns the Store a Manager was given: s without the
// taggedStore that New wraps it in with a TagKey.
func baseStore(s Store) Store {
	if t, ok := s.(taggedStore); ok {
		return t.Store
	}
	return s
}

// sameStore reports whether a and b are the same Store, a pointer to it.
// It compares pointers only: comparing interface values whose dynamic
// type cannot be compared (a struct holding a map) panics.
func sameStore(a, b Store) bool {
	ta := reflect.TypeOf(a)
	return ta != nil && ta.Kind() == reflect.Pointer && ta == reflect.TypeOf(b) && a == b
}

// recordMeta returns what the record of session id says of its session
// (user, creation time, origin), read again, and whether the record
// exists; the zero meta when it is gone or unreadable. It is for a request
// that knows only a token: one whose load failed, whose logout or
// re-login then ends that session as any other, out of its user's index,
// after a renewal that moved it, and told to OnEvent, rather than deleting
// the record alone; or one whose token a renewal replaced (see
// endRenewedAway). When the store still cannot be asked it returns the
// error, which the caller returns at once: a stalled Redis then holds a
// logout for two store timeouts (the load and this read), not three.
//
// live says whether Load would find the session now: within the record's
// deadline and, should Lifetime have shrunk since its login, the current
// one (see capped). A session that is not may still be ended.
func (m *Manager) recordMeta(ctx context.Context, id string) (md meta, found, live bool, err error) {
	b, found, err := m.store.Load(ctx, id, 0)
	if err != nil {
		return meta{}, false, false, storeError(err)
	}
	if !found {
		return meta{}, false, false, nil
	}
	deadline, md, _, err := decodeRecord(b)
	return md, true, err == nil && m.capped(deadline, md).After(m.now()), nil
}

// dropUnreadable deletes the record of session id, which cannot be decoded
// (why), and logs it: such a record is no session, never a 500 on every
// request of its user.
func (m *Manager) dropUnreadable(ctx context.Context, id string, why error) {
	m.log.Warn("session: unreadable record deleted", "session", fingerprint(id), "error", why)
	if err := m.store.Remove(ctx, id); err != nil {
		m.log.Warn("session: cannot delete unreadable record", "session", fingerprint(id), "error", err)
	}
}

// Commit writes the changes a request made to its session and sets the
// cookie headers on h that tell the browser about them. Call it once, before
// the response header is written; middleware.Sessions does. From then on the
// session cannot change: Put, Create, Renew and the like return
// ErrResponseStarted. An unchanged session costs no store command and no
// Set-Cookie. It returns an error matching ErrStoreUnavailable (or
// ErrContention) when the changes could not be saved, or ErrInvalidValue
// when they would take the record over Config.MaxRecordBytes (or hold a
// value the record cannot take); h then still
// gets the cookie headers of what the request already did in the store (a
// login, a renewal or a logout: Create, Renew and Destroy act at once), as
// with Abandon, so that a failed save never leaves the browser with a token
// that leads nowhere.
//
// Only a login, a renewal or a new anonymous session sets the cookie, and
// only a logout in this request (Destroy, or a revocation of the request's
// own session) expires it. A request whose token came in an Authorization
// header beside a cookie that holds another session leaves that cookie
// alone whatever it does: a logout, a renewal or a login neither expires
// nor replaces it (the API client gets its new token from Token). A
// session ended elsewhere while the request ran keeps the cookie
// untouched: the browser may hold a newer one.
//
// ctx must be the context m's Load returned, or one made from it: with
// another, which holds no session of m (none at all, or only another
// Manager's), Commit saves nothing and returns an error matching
// ErrNoSession that says so.
func (m *Manager) Commit(ctx context.Context, h http.Header) error {
	return m.commit(ctx, h, true)
}

// Abandon ends the request's part in its session without saving the values
// it put: for a request whose handler failed part way, as
// middleware.Sessions calls it when a handler panics. What the request
// already did in the store, a login, a renewal or a logout (Create, Renew
// and Destroy act at once), still reaches the browser: h gets the cookie
// headers Commit would set, so that a failure after a login or a renewal
// does not leave the browser with a token that leads nowhere. From then on
// the session cannot change, as after Commit; a later Commit or Abandon
// does nothing.
func (m *Manager) Abandon(ctx context.Context, h http.Header) {
	m.commit(ctx, h, false)
}

// commit is Commit, or Abandon when save is false.
func (m *Manager) commit(ctx context.Context, h http.Header, save bool) error {
	st := m.stateIn(ctx)
	switch {
	case st == nil && stateFrom(ctx) == nil:
		return errNoMiddleware // not a context Load returned: its changes are not there
	case st == nil:
		return errOtherMiddleware
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.committed {
		return nil
	}
	st.committed = true
	if st.loadFailed {
		// The session could not be read, so it must not be overwritten, and
		// the cookie is left alone: the user is still logged in once the
		// store is back. A login that failed after it ended a session
		// (see create) keeps no copy of that session's pages, as below.
		if st.ended {
			h.Set("Cache-Control", "no-store")
		}
		return nil
	}
	if !save {
		st.dirty, st.changes = false, nil
	}
	var saveErr error
	saved := false // the commit wrote the record, which so still existed
	if st.dirty {
		err := m.save(ctx, st)
		saved = err == nil
		switch {
		case errors.Is(err, errGone) && st.held().userID == "" && len(st.changes) > 0 && !unseenOnly(st.changes):
			st.gone()
			saveErr = anonymousGone()
			m.commitFailed(ctx, saveErr)
		case errors.Is(err, errGone):
			m.log.Debug("session: ended during the request; changes dropped", "session", fingerprint(idOf(st.stored)))
			st.gone()
		case err != nil && len(st.changes) == 0:
			// Only the last-seen time was due (see Load): the request
			// changed nothing, so it is served, and a later request
			// tries again, once lastSeenPause has passed. A Redis that
			// refuses writes (OOM, READONLY) but still serves reads
			// keeps serving them.
			m.seenPause.Store(m.now().Add(lastSeenPause).UnixNano())
			m.unseen.Do(m.now(), func(suppressed int) {
				m.log.Warn("session: last-seen time not refreshed", "error", err, "suppressed", suppressed)
			})
		case err != nil:
			// The values may be lost, but a login, a renewal or a logout of
			// this request has already happened in the store: its cookie
			// still goes out, as with Abandon.
			m.commitFailed(ctx, err)
			saveErr = err
		default:
			m.unsaved.End(m.now(), func(suppressed int) {
				m.log.Info("session: changes saved again", "suppressed", suppressed)
			})
		}
	} else if lost := st.renewedAway; save && st.stored == "" && lost != nil && len(lost.changes) > 0 {
		// The request's Renew lost to a parallel one: what it put before
		// is saved where that one moved the session, as it would have been
		// without the Renew, and dropped with a session that ended.
		switch err := m.mergeInto(ctx, *lost, m.now()); {
		case errors.Is(err, errGone) && lost.userID == "" && !unseenOnly(lost.changes):
			saveErr = anonymousGone()
			m.commitFailed(ctx, saveErr)
		case errors.Is(err, errGone):
			m.log.Debug("session: ended during the request; changes dropped", "session", fingerprint(idOf(lost.token)))
		case err != nil:
			m.commitFailed(ctx, err)
			saveErr = err
		}
	}
	// A cookie that holds another session than the request's is neither
	// replaced nor expired: see state.keepCookie.
	issue := st.issued != "" && !st.keepCookie
	if issue && (!st.inserted || st.relogin) && !saved && m.renewedAway(ctx, st) {
		issue = false
	}
	expire := st.loggedOut && !st.keepCookie && st.sentCookie
	switch {
	case issue:
		m.setCookie(h, m.signer.sign(st.issued, st.deadline), st.deadline)
		if st.secureOverHTTP && m.warnedSecureOverHTTP.CompareAndSwap(false, true) {
			m.log.Warn("session: the session cookie is Secure, but was set in answer to a request over plain HTTP to a host other than localhost: browsers drop it, so a browser's login does not stick; serve the site over HTTPS (behind a proxy that ends TLS, have it send X-Forwarded-Proto: https), or, for development only, set Config.InsecureCookie", "cookie", m.cfg.CookieName)
		}
	case expire:
		m.setCookie(h, "", time.Time{})
		// Clear-Site-Data reaches every cookie of the registrable domain:
		// a nested Manager's logout would also log its browser out of the
		// Manager around it.
		if st.clearSite && !m.cfg.KeepSiteData && !st.insideAnother() && !st.plainHTTP {
			h.Set("Clear-Site-Data", `"cookies"`)
		}
	}
	if st.dropSCS && !(m.cfg.FromSCS.sharesCookie(m.cfg.CookieName) && (issue || expire)) {
		// Unless the cookie just set is the same cookie to the browser.
		m.expireSCSCookie(h)
	}
	if st.ended {
		// Even when a new session (a login, a flash message after logout)
		// replaces the expired cookie, no copy of the logged-out pages is
		// kept.
		h.Set("Cache-Control", "no-store")
	}
	return saveErr
}

// anonymousGone is Commit's error for changes to an anonymous session that
// ended while the request ran. An anonymous session ends that way above
// all when a login on the same browser takes it, values and all, into the
// signed-in session: the change is no change to an ended session then,
// but one lost on the way there. The client is told to send it again (the
// browser, by then, with the login's cookie), rather than told it was
// saved; and so it is when the session ended otherwise (its idle timeout,
// a logout in another tab), when the change is lost with it.
func anonymousGone() error {
	return fmt.Errorf("%w: the anonymous session ended while the request changed it, as when a login on the same browser takes it and its values: send the change again", ErrContention)
}

// commitFailed reports that the changes of a request could not be saved
// (err): Metrics.CommitFailed and a warning at most once per outage
// interval, since the client gets a 503 (or 500) in place of the handler's
// answer and the handler never sees err. Neither for a client that went
// away, which cancels the request's context.
func (m *Manager) commitFailed(ctx context.Context, err error) {
	if errors.Is(ctx.Err(), context.Canceled) {
		return
	}
	if m.cfg.Metrics != nil {
		m.cfg.Metrics.CommitFailed()
	}
	m.unsaved.Do(m.now(), func(suppressed int) {
		m.log.Warn("session: changes not saved", "error", err, "suppressed", suppressed)
	})
}

// renewedAway reports whether the session that this request's Renew moved
// to st.issued (a renewal leaves st.inserted false; a login or a new
// anonymous session sets it), or its login made there in place of a
// user's session (st.relogin), has gone from there since: ended, or
// renewed again, by a parallel request, such as a re-login or a logout
// with the old token that followed the renewal or the login and ended it.
// Its token then leads nowhere, and the response, which may come after
// that request's, must not put it in place of the browser's newer cookie
// (or, after a logout, sign the browser in again): the commit leaves the
// cookie alone (st.gone), as it does for a session that ended while the
// request ran. The check costs a read, only at the commit of a request
// that renewed, or logged in over a user's session, and wrote nothing
// after (a write proves the record is there); when it fails, the cookie
// goes out as before: the renewal happened, and a token that leads
// nowhere logs nobody in. The caller holds st.mu.
func (m *Manager) renewedAway(ctx context.Context, st *state) bool {
	_, found, err := m.store.Load(ctx, idOf(st.issued), 0)
	if err != nil || found {
		return false
	}
	m.log.Debug("session: renewed session ended during the request; cookie left", "session", fingerprint(idOf(st.issued)))
	st.gone()
	return true
}

// create logs userID in; see Create. The caller holds st.mu.
func (m *Manager) create(ctx context.Context, st *state, userID string) (Info, error) {
	// The record the request came with is deleted in the step that inserts
	// the new one; when the store was down at load time, the request knows
	// only the token it presented.
	var replaces string
	// followed is the session of this user that the login ended where a
	// parallel renewal or login had moved the one it came with: the
	// pointer from it leads on to this login's (see leavePointer).
	var followed string
	if st.presented != "" {
		// The login may end sessions before it makes its record (the one
		// the request came with, where a Renew moved it): a record too
		// large without values fails first, and ends nothing.
		if err := m.bareLoginFits(userID, st); err != nil {
			return Info{}, err
		}
	}
	// When the store found no record of the token it came with, only
	// could not vouch for that (st.absent), log in as on a token that leads
	// nowhere, which is all a login needs to know of it. The request's
	// state says so once the login has succeeded: a login that fails
	// leaves the request as unsure of its session as it was.
	loadFailed := st.loadFailed && !st.absent
	// After a Renew of this request lost to a parallel one, the session
	// it had is replaced as if that Renew had not run (see state.held).
	h := st.held()
	owner, ownerMeta, loadedValues := h.userID, h.md, h.values
	switch {
	case h.token != "":
		replaces = idOf(h.token)
	case loadFailed && st.presented != "":
		// A session Load would not have found (past a shrunk Lifetime)
		// is a token that leads nowhere, as after a load that succeeded:
		// nothing of it carries over, and the login does not end it.
		read, _, live, err := m.recordMeta(ctx, idOf(st.presented))
		if err != nil {
			return Info{}, err
		}
		if live {
			replaces, owner, ownerMeta = idOf(st.presented), read.UserID, read
		}
	}
	if replaces == "" {
		// The token may lead nowhere because a Renew moved its session, or
		// a login replaced it, before this request loaded it (or, after a
		// failed load, before it read the record above): that session
		// ends, as a logout would, before the login (nothing of it carries
		// over: the request does not hold its token).
		endedUser, gone, err := m.endRenewedAway(ctx, st, false)
		if err != nil {
			return Info{}, err
		}
		if gone != "" && endedUser != "" {
			st.gone() // nothing the request put carries over to the one signing in
			st.ended = true
			h.changes = nil
		}
		if tag, _ := splitTag(gone); gone != "" && endedUser == userID && tag == m.userTag(userID) {
			// A re-login whose session had moved before it loaded it:
			// the pointer from where it went leads on to this login's
			// (see leavePointer), once it is made.
			followed = gone
		}
	}
	// The login ends the signed-in session the request came with, as a
	// logout would, and wherever a parallel Renew may have moved it, so
	// that it neither survives nor counts against the session limit. This
	// user's, in the index the new session goes to, is replaced in the
	// step that inserts the new one, as an anonymous session is: a login
	// that fails there (Redis out of memory refuses the insert) leaves the
	// user signed in as before. Another user's (a shared browser), or one
	// from before the TagKey, ends first: should the login then fail, the
	// browser is signed out.
	var signedIn string
	if owner != "" && replaces != "" {
		signedIn = replaces
		if tag, _ := splitTag(replaces); owner != userID || tag != m.userTag(userID) {
			if _, err := m.endSignedIn(ctx, st, owner, signedIn, ownerMeta, ""); err != nil {
				return Info{}, err
			}
			replaces = ""
		}
	}
	// The new session begins after the round trips above, if any (the
	// record read after a failed load, the session ended).
	now := m.now()
	at := wholeMilli(now)
	ip, userAgent := st.client()
	md := m.codec.newMeta(userID, at, ip, userAgent)
	deadline := m.deadline(now)
	// The new record holds no value of this request's: the response saves
	// those (see rewrite), so that a handler that panics after the login
	// saves none. It carries over the values of the anonymous session it
	// replaces, read as the store deletes that record, so that a value
	// another request saved there meanwhile is not lost; none when the
	// store finds no record (a logout ended the session meanwhile, whose
	// values must not come back: a store that can tell a logout from a
	// parallel login or renewal writes Record for those, see
	// NewSession.Merge). Without a record to replace it is one write.
	// Record holds the values as loaded, for a UserStore that does not
	// call Merge.
	var loaded map[string]any
	if owner == "" && replaces != "" {
		loaded = loadedValues
	}
	// What the request put before the login (before a Renew that lost to a
	// parallel one, too) goes into the new session, which the response
	// saves (see rewrite), unless the login ends another signed-in session
	// (below).
	var pending map[string]any
	if signedIn == "" {
		pending = h.changes
	}
	login, err := m.loginRecord(deadline, md, loaded, pending)
	if err != nil {
		return Info{}, err
	}
	var merge func(replaced []byte) ([]byte, error)
	// merged holds what merge made last. The closure writes there rather
	// than to login, which it would otherwise move to the heap for every
	// login, also for the common one that replaces no anonymous session.
	var merged *loginRecordOf
	if owner == "" && replaces != "" {
		merged = new(loginRecordOf)
		merge = func(replaced []byte) ([]byte, error) {
			var values map[string]any
			if replaced != nil {
				_, values, _ = m.codec.Decode(replaced) // an unreadable record carries nothing over
			}
			var err error
			*merged, err = m.loginRecord(deadline, md, values, pending)
			return merged.record, err
		}
	}
	token, err := m.newToken(st, m.userTag(userID))
	if err != nil {
		return Info{}, err
	}
	ttl, _ := m.ttl(deadline, now)
	add := NewSession{
		UserID:   userID,
		ID:       idOf(token),
		Record:   login.record,
		TTL:      ttl,
		Deadline: deadline,
		Limit:    m.cfg.MaxSessionsPerUser,
		Replaces: replaces,
		Merge:    merge,
	}
	ended, err := m.store.AddUserSession(finishing{ctx}, add)
	if err != nil && replacedGone(err) { // err != nil: replacedGone's target escapes, an allocation
		// Under the limit, and a parallel Renew may have moved this
		// user's session to an id that would count: end it where it went
		// first, then add the new session alone, with what is left of
		// its time to live.
		if followed, err = m.endSignedIn(ctx, st, owner, signedIn, ownerMeta, ""); err != nil {
			return Info{}, err
		}
		add.Replaces = ""
		if add.TTL, _ = m.ttl(deadline, m.now()); add.TTL <= 0 {
			return Info{}, fmt.Errorf("%w: the login's round trips outlasted its lifetime", ErrStoreUnavailable)
		}
		ended, err = m.store.AddUserSession(finishing{ctx}, add)
	}
	// add.Replaces is "" after the fallback above: ended lists only the
	// sessions the limit revoked then.
	for _, id := range ended {
		switch {
		case id != add.Replaces:
			m.emit(EventRevoked, userID, id, now) // by the session limit
		case owner != "": // an anonymous session has no events
			m.emit(EventDestroyed, owner, id, now)
		}
	}
	if err != nil {
		// Replaced, but the replicas did not confirm it; or the call timed
		// out or lost its connection after Redis may have run it (a reply
		// lost as a master fails, a stalled Redis that runs it later).
		if outcomeUnknown(err) || add.Replaces != "" && slices.Contains(ended, add.Replaces) {
			if owner != "" && add.Replaces != "" {
				// Either way the request keeps no signed-in session. It
				// keeps an anonymous one (below, not here): the login may
				// not have run (a retried Create replaces it then, values
				// and all), and if it did, the commit finds the record
				// gone and answers that the change must be sent again
				// (anonymousGone).
				st.gone()
				st.ended = true
			}
			// The new session, whose token is never handed out, goes
			// again if Redis lets it, so that it neither lingers in the
			// user's list nor takes a place under MaxSessionsPerUser,
			// where the user's next login would revoke a real session
			// for it. The sessions the limit revoked for it, if it ran,
			// stay ended, and unreported: their ids are in the reply
			// that was lost.
			m.store.RemoveUserSession(ending(ctx), userID, add.ID) //nolint:errcheck // best effort: it is unused, and expires
		}
		return Info{}, storeError(err)
	}
	if owner != "" && add.Replaces != "" && !slices.Contains(ended, add.Replaces) {
		// Moved by a parallel Renew, or replaced by a parallel re-login,
		// or ended meanwhile: follow it. Should that fail, the new
		// session goes again, unused: its token was never handed out.
		if followed, err = m.endSignedIn(ctx, st, owner, signedIn, ownerMeta, add.ID); err != nil {
			m.store.RemoveUserSession(ending(ctx), userID, add.ID) //nolint:errcheck // best effort: it is unused, and expires
			return Info{}, err
		}
	}
	if followed != "" && followed != signedIn {
		// The login's transaction left a pointer from the session it
		// replaced only where there was none, not where that session had
		// moved (or, replacing none, it left none): the pointers from
		// there, and from the session the request came with, now lead to
		// this login's session, so that a logout sent after it with any
		// token of the chain ends it, and a client that logs in again and
		// again with one old token does not lengthen the chain past what
		// a logout follows (maxFollow). (ending: the login stands now,
		// whatever its client or a deadline does.)
		m.leavePointer(ending(ctx), followed, add.ID, add.TTL)
		came := signedIn
		if came == "" && st.presented != "" {
			came = idOf(st.presented)
		}
		if came != "" && came != followed {
			m.leavePointer(ending(ctx), came, add.ID, add.TTL)
		}
	}
	if owner == "" && add.Replaces != "" && !slices.Contains(ended, add.Replaces) {
		// The anonymous session was gone when the login took it: moved by
		// a parallel Renew, most likely. It ends where it went, as a
		// signed-in one does above, or the renewing request's answer,
		// which may come after this one's, would set its token over the
		// login's cookie and sign the browser out (see renewedAway). It
		// ends only a record it finds there (a store that ended the moved
		// session as it took the replaced one, as redisstore does, leaves
		// none), and not as a logout: a login sent twice, the second with
		// the renewed token, carries the values over. Best effort: the
		// login stands either way, and the store may keep no trace of the
		// move.
		if _, _, err := m.endMovedAway(ending(ctx), add.Replaces, add.ID, false); err != nil {
			m.log.Debug("session: cannot end the anonymous session a parallel renewal moved", "error", err)
		}
	}
	// What the request put before the login is dropped with the values of
	// a signed-in session it ended (pending is nil then): nothing of the
	// user signed in before carries over to the one signing in.
	st.changes = pending
	if signedIn != "" {
		st.ended = true // no copy of the signed-out user's pages is kept
	}
	if merged != nil && merged.record != nil {
		login = *merged
	}
	if login.over > 0 {
		m.log.Warn("session: the login carried over none of the anonymous session's values: with them its record would be over Config.MaxRecordBytes",
			"session", fingerprint(idOf(token)), "bytes", login.over, "limit", m.cfg.MaxRecordBytes)
	}
	if login.dropPending {
		m.log.Warn("session: the login dropped the values the request put before it: with them its record would be over Config.MaxRecordBytes",
			"session", fingerprint(idOf(token)), "limit", m.cfg.MaxRecordBytes)
		st.changes = nil
	}
	st.clearValues()
	data := st.engineData()
	for k, v := range login.carried {
		m.engine.Put(data, k, v)
	}
	for k, v := range st.changes {
		if _, removed := v.(removal); removed {
			m.engine.Remove(data, k)
		} else {
			m.engine.Put(data, k, v)
		}
	}
	m.engine.SetDeadline(data, deadline)
	st.stored, st.inserted, st.userID, st.deadline, st.issued = token, true, userID, deadline, token
	st.relogin = owner != "" && add.Replaces != "" || followed != ""
	st.loadFailed, st.loggedOut, st.stale, st.absent = false, false, false, false
	st.renewedAway = nil // replaced: its changes are pending's
	// The scs session whose cookie came beside the one replaced ends, as
	// at a logout; failing that, the login stands, and the scs cookie
	// stays for the logout to end it (see Destroy).
	if err := m.endSCS(ending(ctx), st); err != nil {
		st.scsCookie = false
		m.log.Warn("session: the scs session of the browser that logged in was not ended; its cookie is left for a logout to end it", "error", err)
	}
	st.dropSCS = st.dropSCS || st.scsCookie // see state.scsCookie
	st.dirty = len(st.changes) > 0
	info := m.info(st)
	m.emit(EventCreated, userID, info.ID, now)
	return info, nil
}

// outcomeUnknown reports whether err, a store call's, leaves unknown
// whether the call ran: it timed out, or its connection broke, after its
// commands may have reached Redis, which runs them when it gets to them.
// An error reply (out of memory, a denied command) says that they did not,
// and so does an error with a method Unsent() bool that reports true (see
// UserStore): the call got no connection.
func outcomeUnknown(err error) bool {
	var u interface{ Unsent() bool }
	if errors.As(err, &u) && u.Unsent() {
		return false
	}
	var nerr net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.As(err, &nerr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// endSignedIn ends the signed-in session id of owner, with meta md, that
// the request came with, as a logout would, wherever a parallel Renew moved
// it (see create); or, when a parallel re-login on the same browser
// replaced it, the session that login made, through the pointer it left
// (see Destroy), but never own, the id of this login's session, whose
// transaction left that pointer where none was. It returns the id of the
// session it ended, "" for none. The caller holds st.mu.
func (m *Manager) endSignedIn(ctx context.Context, st *state, owner, id string, md meta, own string) (string, error) {
	ended, err := m.endSession(ctx, owner, id, lineage(id, md), false)
	if ended != "" {
		m.emit(EventDestroyed, owner, ended, m.now())
	}
	if err == nil && ended == "" {
		_, ended, err = m.endMovedAway(ctx, id, own, false)
	}
	if err != nil {
		return "", err
	}
	st.gone() // should the login fail, the request has no session left
	st.ended = true
	return ended, nil
}

// bareLoginFits returns an error matching ErrInvalidValue when the record
// of userID's login, without values, would be over Config.MaxRecordBytes,
// as loginRecord would; made now, it is as long as the one the login
// makes after its round trips (its times take 13 digits either way).
func (m *Manager) bareLoginFits(userID string, st *state) error {
	if m.cfg.MaxRecordBytes < 0 {
		return nil
	}
	now := m.now()
	ip, userAgent := st.client()
	record, err := m.codec.Encode(m.deadline(now), map[string]any{metaKey: m.codec.newMeta(userID, wholeMilli(now), ip, userAgent)})
	if err != nil {
		return err
	}
	return m.overLimit(len(record))
}

// loginRecordOf is what loginRecord returns, kept by a login's merge.
type loginRecordOf struct {
	record  []byte
	carried map[string]any
	// over is the size the record would have had with the values it
	// does not carry over; 0 when it carries them.
	over int
	// dropPending says that the values the request put before the login
	// do not go into the new session either.
	dropPending bool
}

// loginRecord returns the record of a new session with deadline and md
// that carries over values (those of the anonymous session it replaces;
// nil for none), and the values it holds, md among them. pending are the
// changes the request made before the login, which the response writes
// into the new session (see rewrite), sized with the room that Put keeps
// for the later writes of the request (see writtenSize). When values and pending together
// would take the record over Config.MaxRecordBytes it carries over none of
// values, and when pending alone would, none of them either: a login must
// not fail, nor leave a session that refuses every Put or a response that
// cannot be saved, because of what an anonymous visitor kept (a large
// cart). It returns an error matching ErrInvalidValue only when the record
// is over the limit without values.
func (m *Manager) loginRecord(deadline time.Time, md meta, values, pending map[string]any) (loginRecordOf, error) {
	var r loginRecordOf
	r.carried = make(map[string]any, len(values)+1)
	for k, v := range values {
		r.carried[k] = fresh(v) // loaded values may be shared with other requests (see decodedCache)
	}
	r.carried[metaKey] = md
	var err error
	if r.record, err = m.codec.Encode(deadline, r.carried); err != nil {
		return loginRecordOf{}, err
	}
	size, err := m.withPending(deadline, r.record, r.carried, pending)
	if err != nil {
		return loginRecordOf{}, err
	}
	if m.overLimit(size) != nil && len(r.carried) > 1 {
		r.over, r.carried = size, map[string]any{metaKey: md}
		if r.record, err = m.codec.Encode(deadline, r.carried); err != nil {
			return loginRecordOf{}, err
		}
		if size, err = m.withPending(deadline, r.record, r.carried, pending); err != nil {
			return loginRecordOf{}, err
		}
	}
	if m.overLimit(size) != nil && m.overLimit(len(r.record)) == nil {
		r.dropPending = true
	}
	if err := m.overLimit(len(r.record)); err != nil {
		return loginRecordOf{}, err
	}
	return r, nil
}

// withPending returns the size of the record of deadline and carried,
// record, once the changes pending are made to it, as the response writes
// it (see rewrite), with the room that Put keeps (see withRoom) for the
// new session's first id; len(record) when pending changes nothing, or
// without a limit to check.
func (m *Manager) withPending(deadline time.Time, record []byte, carried, pending map[string]any) (int, error) {
	if len(pending) == 0 || m.cfg.MaxRecordBytes < 0 {
		return len(record), nil
	}
	values := maps.Clone(carried)
	md, _ := values[metaKey].(meta)
	// The token is made after the record: an id as long as its.
	values[metaKey] = m.withRoom(md, md.CreatedAt, strings.Repeat("x", m.userIDLen()))
	for k, v := range pending {
		if _, removed := v.(removal); removed {
			delete(values, k)
		} else {
			values[k] = v
		}
	}
	b, err := m.codec.Encode(deadline, values)
	return len(b), err
}

// renew moves the session to a new token; see Renew. The caller holds
// st.mu.
func (m *Manager) renew(ctx context.Context, st *state) error {
	now := m.now()
	from := idOf(st.stored)
	ttl, ok := m.ttl(st.deadline, now)
	if !ok {
		st.gone()
		return ErrNoSession
	}
	// A user's session gets the user's tag; an anonymous one keeps its own,
	// so that the old and the new record share a slot.
	tag, _ := splitTag(st.stored)
	if st.userID != "" {
		tag = m.userTag(st.userID)
	}
	token, err := m.newToken(st, tag)
	if err != nil {
		return err
	}
	var merged map[string]any
	moved, err := m.store.MoveSession(finishing{ctx}, Move{
		UserID:   st.userID,
		From:     from,
		To:       idOf(token),
		TTL:      ttl,
		Deadline: st.deadline,
		// The move writes the record as stored, other requests' changes
		// included, but none of this request's: the response saves those
		// (see Renew). They must fit beside the others all the same, and
		// the request sees them.
		Merge: func(current []byte) ([]byte, error) {
			b, values, err := m.mergeChanges(current, nil, now, from)
			merged = values
			if err == nil && len(st.changes) > 0 {
				_, merged, err = m.mergeChanges(current, st.changes, now, from)
			}
			return b, err
		},
	})
	switch {
	case errors.Is(err, errBadRecord):
		m.dropUnreadable(ctx, from, err)
		st.gone()
		return ErrNoSession
	case errors.Is(err, ErrInvalidValue):
		return err // over Config.MaxRecordBytes: nothing moved
	case err != nil:
		return storeError(err)
	case !moved:
		// Ended, or renewed by a parallel request: a Destroy, Create or
		// RevokeOthers later in this request follows it all the same.
		m.log.Debug("session: renewal of a session that had ended", "session", fingerprint(from))
		st.loseToRenewal()
		return ErrNoSession
	}
	// The values are now those of the moved record, other requests'
	// changes included, with this request's.
	st.clearValues()
	data := st.engineData()
	for k, v := range merged {
		m.engine.Put(data, k, v)
	}
	m.engine.SetDeadline(data, st.deadline)
	// This request's changes, before the renewal and after it, merge into
	// the moved record at the commit, like any change to a record that
	// other requests may have written.
	st.stored, st.inserted, st.issued, st.renewed = token, false, token, true
	st.dirty = len(st.changes) > 0
	m.emit(EventRenewed, st.userID, idOf(token), now)
	return nil
}

// newToken returns a new token, made by scs, with the hash tag tag in
// front ("" for none; see tags.go): cut to shortTokenLen (see idOf), or
// of scs's full tokenLen with Config.PreviousFormat, which the previous
// release reads. scs makes tokens only in RenewToken, which also asks its
// store to delete the old token: with engineStore, that does nothing, so
// this is token generation alone. It changes the token scs keeps in
// st.data, which the Manager never reads.
func (m *Manager) newToken(st *state, tag string) (string, error) {
	if err := m.engine.RenewToken(st.engineData()); err != nil {
		return "", err
	}
	token := m.engine.Token(st.engineData())
	if !m.cfg.PreviousFormat {
		token = token[:shortTokenLen]
	}
	return withTag(tag, token), nil
}

// signedToken reports whether signed is a token that a key of m's signed,
// within its deadline (the session may have ended all the same).
func (m *Manager) signedToken(signed string) bool {
	_, deadline, reason, aged := m.signer.check(signed)
	return reason == "" && !aged && deadline.After(m.now())
}

// deadline returns the absolute deadline of a session created at now, in
// whole milliseconds, as the token carries it.
func (m *Manager) deadline(now time.Time) time.Time {
	return time.UnixMilli(now.Add(m.cfg.Lifetime + time.Millisecond - 1).UnixMilli())
}

// capped returns deadline, or the end of this Manager's Lifetime after the
// creation time in md if that comes first. A session keeps the deadline it
// was created with, but never outlives the Lifetime of the instance that
// reads it (see Config.Lifetime): after Lifetime shrinks, a session made
// under the longer one ends as the MAC's age fence (see newSigner) ends it
// when its cookie was signed at the login, renewed or not. With the same
// Lifetime, deadline is the earlier, to the millisecond.
func (m *Manager) capped(deadline time.Time, md meta) time.Time {
	if end := m.deadline(md.CreatedAt); end.Before(deadline) {
		return end
	}
	return deadline
}

// wholeMilli returns t rounded up to a whole millisecond, the precision of
// the times in a record, so that a session's creation time reads the same
// from Create's Info as from the record, and its deadline (see deadline)
// is exactly a lifetime after it.
func wholeMilli(t time.Time) time.Time {
	return time.UnixMilli(t.Add(time.Millisecond - 1).UnixMilli())
}

// values returns a copy of the session's values. The caller holds st.mu.
func (m *Manager) values(st *state) map[string]any {
	data := st.engineData()
	keys := m.engine.Keys(data)
	values := make(map[string]any, len(keys)+1)
	for _, k := range keys {
		values[k] = m.engine.Get(data, k)
	}
	return values
}

// save writes the session's record: a new anonymous session, the whole
// session over a record this request created, or the request's changes
// merged into the stored record. The caller holds st.mu.
func (m *Manager) save(ctx context.Context, st *state) error {
	now := m.now()
	switch {
	case st.stored == "":
		return m.insert(ctx, st, now)
	case st.inserted:
		return m.rewrite(ctx, st, now)
	default:
		return m.merge(ctx, st, now)
	}
}

// insert stores the values of an anonymous session that has no record yet
// under a new token. The caller holds st.mu.
func (m *Manager) insert(ctx context.Context, st *state, now time.Time) error {
	values := m.values(st)
	at := wholeMilli(now)
	ip, userAgent := st.client()
	md := m.codec.newMeta("", at, ip, userAgent)
	values[metaKey] = md
	deadline := m.deadline(now)
	record, err := m.encode(deadline, values, st.changes)
	if err != nil {
		return err
	}
	ttl, _ := m.ttl(deadline, now)
	token, err := m.insertAnonymous(ctx, st, record, ttl)
	if err != nil {
		return err
	}
	m.engine.Put(st.engineData(), metaKey, md)
	m.engine.SetDeadline(st.engineData(), deadline)
	st.stored, st.inserted, st.relogin, st.deadline, st.issued = token, true, false, deadline, token
	st.dirty, st.changes = false, nil
	return nil
}

// rewrite writes the whole session over the record this request created
// (Create, then Put): no other request has its token yet, so there is
// nothing to merge with, and SET XX still leaves a record revoked meanwhile
// revoked. The last-seen time stays the one the record was created with:
// it is this request's, and leaving it equal to the creation time keeps it
// out of the record (see the README's record schema). The caller holds
// st.mu.
func (m *Manager) rewrite(ctx context.Context, st *state, now time.Time) error {
	ttl, ok := m.ttl(st.deadline, now)
	if !ok {
		return errGone
	}
	record, err := m.encode(st.deadline, m.values(st), st.changes)
	if err != nil {
		return err
	}
	written, err := m.store.Update(ctx, idOf(st.stored), record, ttl)
	switch {
	case err != nil:
		return storeError(err)
	case !written:
		return errGone
	}
	st.dirty, st.changes = false, nil
	return nil
}

// merge applies the request's changes (and a fresh last-seen time) to the
// stored record as it is now, not as it was when the request loaded it, so
// that concurrent requests changing different values do not undo each
// other. When two requests change the same value, the one that saves last
// wins. A user's session that a parallel Renew moved to a new id is
// followed there, as endSession follows it, so that the changes reach the
// session under its new token, and so is an anonymous one, through the
// pointer its move left (see Store); it returns errGone only when the
// session has ended. The caller holds st.mu.
func (m *Manager) merge(ctx context.Context, st *state, now time.Time) error {
	if err := m.mergeInto(ctx, st.held(), now); err != nil {
		return err
	}
	st.dirty, st.changes = false, nil
	return nil
}

// mergeInto is merge for the session s, with s.changes: the request's
// session, or the one it had before its Renew lost to a parallel one.
func (m *Manager) mergeInto(ctx context.Context, s movedSession, now time.Time) error {
	id := idOf(s.token)
	line := lineage(id, s.md)
	for range maxFollow {
		// Each pass from its own start: the pass before took round trips.
		ttl, ok := m.ttl(s.deadline, m.now())
		if !ok {
			return errGone
		}
		written, err := m.store.Merge(ctx, id, ttl, func(current []byte) ([]byte, error) {
			b, _, err := m.mergeChanges(current, s.changes, now, "")
			return b, err
		})
		switch {
		case errors.Is(err, errBadRecord):
			m.dropUnreadable(ctx, id, err)
			return errGone
		case errors.Is(err, ErrInvalidValue):
			return err // over Config.MaxRecordBytes: not written
		case err != nil:
			return storeError(err)
		case written:
			return nil
		}
		var next string
		if s.userID == "" {
			next, err = m.movedTo(ctx, id)
		} else {
			next, err = m.successor(ctx, s.userID, id, line)
		}
		switch {
		case err != nil:
			return err
		case next == "" || next == id:
			// Ended: Merge found no record under id, whatever else says
			// it lives there.
			return errGone
		}
		id = next
	}
	return fmt.Errorf("%w: the session kept moving to new tokens", ErrContention)
}

// mergeChanges returns the record current with changes applied and its
// last-seen time set to now, and the merged values. For a Renew, movedFrom
// is the id the record moves from, and the new record keeps the session's
// first id (see meta.Origin); "" for a write in place. A write in place
// whose changes are all removals of values current does not hold (see
// Remove), with no last-seen refresh due, returns current itself, which
// needs no write (see Store.Merge).
func (m *Manager) mergeChanges(current []byte, changes map[string]any, now time.Time, movedFrom string) ([]byte, map[string]any, error) {
	deadline, values, err := m.codec.Decode(current)
	if err != nil {
		return nil, nil, err
	}
	changed := false
	for k, v := range changes {
		if _, removed := v.(removal); !removed {
			values[k], changed = v, true
		} else if _, held := values[k]; held {
			delete(values, k)
			changed = true
		}
	}
	md, _ := values[metaKey].(meta)
	if !changed && len(changes) > 0 && movedFrom == "" && !m.seenDue(md, now) {
		return current, values, nil
	}
	md.LastSeen = lastSeen(md, now)
	if movedFrom != "" {
		md.Origin = lineage(movedFrom, md)
	}
	values[metaKey] = md
	b, err := m.encode(deadline, values, changes)
	return b, values, err
}

// lastSeen returns the last-seen time that a write at now gives a session
// with md: in whole milliseconds, as the creation time, and never earlier
// than the time it replaces: a write in the millisecond of the login, or
// from an instance whose clock is a little behind, must not make the
// session look seen before it was created, or last seen earlier.
func lastSeen(md meta, now time.Time) time.Time {
	seen := wholeMilli(now)
	for _, t := range []time.Time{md.LastSeen, md.CreatedAt} {
		if t.After(seen) {
			seen = t
		}
	}
	return seen
}

// setCookie adds the session cookie to h: value until deadline, or, with a
// zero deadline, an expired cookie that makes the browser drop it.
//
// It writes the header as (*http.Cookie).String does (TestSetCookie holds
// them equal), without its checks and copies, which a login would pay
// for nothing: New checked the name and the attributes, and value is
// signed base64url or empty, which needs no quoting.
func (m *Manager) setCookie(h http.Header, value string, deadline time.Time) {
	expires, maxAge := time.Unix(1, 0), 0 // expired: the browser drops it
	if !deadline.IsZero() {
		// Up to whole seconds, the attributes' unit: the browser keeps
		// the cookie until the deadline, never up to a second less, and
		// the token dies at the deadline all the same.
		expires = deadline.Add(time.Second - 1).Truncate(time.Second)
		maxAge = max(int((deadline.Sub(m.now())+time.Second-1)/time.Second), 1)
	}
	b := make([]byte, 0, len(m.cfg.CookieName)+len(value)+len(m.cookieAttrs)+64)
	b = append(append(append(b, m.cfg.CookieName...), '='), value...)
	b = append(b, "; Path=/; Expires="...)
	b = expires.UTC().AppendFormat(b, http.TimeFormat)
	b = strconv.AppendInt(append(b, "; Max-Age="...), int64(maxAge), 10)
	b = append(b, m.cookieAttrs...)
	// The keys are canonical: no need for Header.Add to make them so.
	h["Set-Cookie"] = append(h["Set-Cookie"], string(b))
	nocache.KeepOut(h)
}

// cookieAttributes returns the attributes that follow Max-Age in the
// session cookie cfg asks for, as net/http writes them: "; HttpOnly",
// then Secure and SameSite as configured.
func cookieAttributes(cfg Config) string {
	c := &http.Cookie{Name: cfg.CookieName, HttpOnly: true, Secure: !cfg.InsecureCookie, SameSite: cfg.SameSite}
	return strings.TrimPrefix(c.String(), cfg.CookieName+"=")
}

// withheld reports whether r is a request that a browser sends without a
// cookie of m's SameSite even when it holds one: a cross-site request, as
// Sec-Fetch-Site says (browsers have sent it since 2020 to 2023; requests
// without it are not taken as withheld), and under Lax only one that is
// not a top-level GET or HEAD navigation, which Lax lets through.
func (m *Manager) withheld(r *http.Request) bool {
	if r.Header.Get("Sec-Fetch-Site") != "cross-site" {
		return false
	}
	switch m.cfg.SameSite {
	case http.SameSiteStrictMode:
		return true
	case http.SameSiteLaxMode:
		topLevel := r.Header.Get("Sec-Fetch-Mode") == "navigate" && r.Header.Get("Sec-Fetch-Dest") == "document"
		return !topLevel || r.Method != http.MethodGet && r.Method != http.MethodHead
	}
	return false // None: sent cross-site too
}

// plainHTTP reports whether r reached a Manager with InsecureCookie (the
// site is served over plain HTTP) under a host name other than a loopback
// one. Browsers take Clear-Site-Data only from a secure context, which
// plain HTTP is on localhost and loopback addresses alone; elsewhere
// Chromium ignores the header and drops the response's Set-Cookie lines
// with it, the logout's expiry of the cookie included. Such a logout sends
// no Clear-Site-Data, and its expiry takes effect. (A request that came
// over TLS to the app itself is no plain HTTP, whatever the cookie says.)
func (m *Manager) plainHTTP(r *http.Request) bool {
	return m.cfg.InsecureCookie && r.TLS == nil && !loopbackHost(r.Host)
}

// loopbackHost reports whether host (a Host header: a name or an address,
// maybe with a port) is localhost, a name under .localhost or a loopback
// address: where browsers take plain HTTP for a secure context.
func loopbackHost(host string) bool {
	// Only a host with a colon can have a port: SplitHostPort's error for
	// one without is an allocation, which every request of a Manager with
	// a Secure cookie would pay until it logs its warning.
	if strings.Contains(host, ":") {
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	if host == "" || host[0] > '9' && !strings.Contains(host, ":") {
		// A name, no address: spare ParseAddr's error, an allocation.
		return false
	}
	ip, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"))
	return err == nil && ip.IsLoopback()
}

// client returns the client's address and user agent as a session
// created for st's request records them.
func (st *state) client() (ip, userAgent string) {
	return clientIP(st.remoteAddr), clientUserAgent(st.rawUserAgent)
}

// clientIP returns the IP address of remoteAddr: "host:port" as net/http
// sets it, or an address without a port, as a middleware that trusts a
// proxy's header writes it (one configured to take the entry the proxy
// appended, not the first of X-Forwarded-For, which the client writes). It
// returns "" when remoteAddr holds no IP address, so that a session keeps
// an address or nothing, never text a header made up (which could be
// long, or not UTF-8 and then not what the record keeps).
func clientIP(remoteAddr string) string {
	host := remoteAddr
	if h, _, err := net.SplitHostPort(remoteAddr); err == nil {
		host = h
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return ""
	}
	return host
}

// servedAnonymous reports that a request is served as anonymous because the
// store failed with err: a warning at most once per outage interval, and
// Metrics.ServedAnonymous.
func (m *Manager) servedAnonymous(now time.Time, err error) {
	m.outage.Do(now, func(suppressed int) {
		m.log.Warn("session: store unavailable, serving requests as anonymous", "error", err, "suppressed", suppressed)
	})
	if m.cfg.Metrics != nil {
		m.cfg.Metrics.ServedAnonymous()
	}
}

// insertAnonymous stores record as a new anonymous session of st for ttl,
// under a new token, which it returns.
func (m *Manager) insertAnonymous(ctx context.Context, st *state, record []byte, ttl time.Duration) (string, error) {
	token, err := m.newToken(st, "")
	if err != nil {
		return "", err
	}
	token = withTag(m.anonTag(token), token)
	written, err := m.store.Insert(ctx, idOf(token), record, ttl)
	switch {
	case err != nil:
		return "", storeError(err)
	case !written:
		return "", errIDTaken
	}
	return token, nil
}

// errIDTaken reports a new session id that a session had already: 252
// random bits (a 128-bit id) never collide, so the random source is broken.
var errIDTaken = errors.New("session: new session id already taken")
