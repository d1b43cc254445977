package session

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"
	"unicode/utf8"
)

// stateKey is the context key of a request's state.
type stateKey struct{}

// state is what a Manager knows about one request's session. Its lock
// serialises the helpers of one request. Every request allocates one: its
// bools sit where they fill the padding of the fields around them, which
// keeps it at 352 bytes, an allocation size class.
type state struct {
	m *Manager
	// outer is the state of an enclosing Manager's session when Managers
	// are nested (a site and its /admin/), or nil. The context helpers use
	// the innermost state; a Manager's methods find their own.
	outer *state

	mu sync.Mutex
	// data is scs's handle to the session's values and absolute deadline,
	// a context that holds only them; see Manager.engine. It is made by
	// the first helper that needs it (see engineData): a request that only
	// asks who is logged in never does.
	data context.Context

	// remoteAddr and rawUserAgent are the request's RemoteAddr and
	// User-Agent header, kept as they came: client turns them into what
	// a new session records, so that a request that creates none (most
	// of them) does not pay for parsing them.
	remoteAddr   string
	rawUserAgent string

	presented string // verified token the request carried, found or not
	stored    string // token whose record exists in the store, as far as this request knows
	inserted  bool   // this request created stored's record: nobody else has its token yet
	// relogin says that the login that inserted stored's record replaced
	// a user's session, whose token leads there (see Manager.renewedAway).
	relogin   bool
	withheld  bool // no cookie came, and a browser may hold one its SameSite kept from this request: see Manager.withheld, canWrite
	plainHTTP bool // InsecureCookie, and a host browsers reach over plain HTTP: no Clear-Site-Data (see Manager.plainHTTP)
	// secureOverHTTP says that the request came over plain HTTP to a host
	// other than a loopback one, where browsers drop the Secure cookie
	// a login or a renewal sets: see dropsSecure.
	secureOverHTTP bool
	// scsTaken says that scsToken's record was gone, maybe taken by a
	// parallel request migrating it: a login or logout marks its key, and
	// ends the session it became (see endTakenSCS).
	scsTaken bool
	// renewed says that a Renew of this request moved its session: the
	// values as loaded are gone from the request (clearValues), so no
	// removal after it is taken for one of a value never seen (see Remove).
	renewed bool
	// loaded says that Load found a record whose meta and values
	// (loadedMeta, loadedValues) data does not hold yet: engineData puts
	// them there. loadedValues stays after that, the values as loaded,
	// without this request's changes, for a login whose anonymous record
	// is gone by the time it writes (see Manager.create). It may be
	// shared with other requests (see decodedCache) and is never modified.
	loaded       bool
	loadedMeta   meta
	loadedValues map[string]any
	userID       string    // user of the stored session, "" for anonymous
	deadline     time.Time // absolute deadline of the stored session
	dirty        bool      // the record must be written: values changed, or last seen is stale
	loadFailed   bool      // the session could not be read: LoadError reports ErrStoreUnavailable
	absent       bool      // of loadFailed: the store found no record, but could not vouch for that (see create)
	// scsCookie says that the request carried scs's cookie (Config.FromSCS)
	// with a bare scs token, maybe one it did not migrate: whose record was
	// not found yet, or holds a type not registered with gob, or that came
	// beside a session of the Manager's own; or that it may hold one this
	// request did not carry, under a Path or Domain of its own. A login or
	// logout expires it, so that its scs session, once found, does not come
	// back after a logout, maybe as another user.
	scsCookie bool
	size      int32          // the size of the record the commit would write, 0 until the first Put: see fits
	changes   map[string]any // values put (normalized) or removed (removal) since the last write
	issued    string         // new token the response must set in the cookie
	// scsToken is the token of the scs cookie the request carried, while
	// its record may still be in the store: not migrated, as beside a
	// session of the Manager's own, or left for a type not registered with
	// gob. A login or logout ends that scs session too (see endSCS). With
	// scsTaken, it is the token of a record found gone.
	scsToken  string
	loggedOut bool // this request ended its session: the response expires the cookie it sent
	clearSite bool // ... and, as it logged out of a session, clears site data
	ended     bool // this request ended a session, whatever it did next: the response is not stored
	stale     bool // the request came with a token that leads to no session: see canWrite
	dropSCS   bool // the response expires scs's cookie: see Config.FromSCS
	committed bool // Commit ran: the response has started and nothing may change
	// keepCookie says that the request's token came from its
	// Authorization header and it carries a cookie that holds another
	// session (not only another signature of the same token: see
	// Manager.sameToken): the response neither expires nor replaces that
	// cookie, after a logout, a renewal or a login alike, since a request
	// with both ignores the cookie, whose session (if any) goes on.
	keepCookie bool
	// sentCookie says that the request carried a cookie of the Manager's
	// name. Only then does a logout expire it and clear site data: a
	// request without it (a Bearer token alone, or a cross-site post that
	// SameSite kept the cookie from) may come from a browser that holds
	// one, which a forged post must not delete, nor an API call's
	// Clear-Site-Data with it every cookie of the domain.
	sentCookie bool
	// renewedAway is the session the request had, once its Renew found it
	// gone from its token: moved to another by a parallel request's
	// Renew, or ended. Destroy and RevokeOthers end or keep it, and Create
	// replaces it, as they would have before the failed Renew (see held).
	// gone clears it. Nil otherwise: a pointer, so that the state every
	// request allocates stays small.
	renewedAway *movedSession
}

// stateFrom returns the innermost session state of ctx, or nil.
func stateFrom(ctx context.Context) *state {
	st, _ := ctx.Value(stateKey{}).(*state)
	return st
}

// stateIn returns m's own session state in ctx, or nil.
func (m *Manager) stateIn(ctx context.Context) *state {
	for st := stateFrom(ctx); st != nil; st = st.outer {
		if st.m == m {
			return st
		}
	}
	return nil
}

// engineData returns st.data, made on first use with the record Load
// found, if any. The caller holds st.mu.
func (st *state) engineData() context.Context {
	if st.data != nil {
		return st.data
	}
	m := st.m
	st.data, _ = m.engine.Load(context.Background(), "") // an empty token never fails
	if st.loaded {
		for k, v := range st.loadedValues {
			if m.decoded != nil {
				v = fresh(v) // a decoded record's values are shared between requests
			}
			m.engine.Put(st.data, k, v)
		}
		m.engine.Put(st.data, metaKey, st.loadedMeta)
		m.engine.SetDeadline(st.data, st.deadline)
		st.loaded, st.loadedMeta = false, meta{}
	}
	return st.data
}

// ownMeta returns what sessionkit keeps about the session (user, creation
// time, client), or the zero meta when there is none, without making
// st.data. The caller holds st.mu.
func (st *state) ownMeta() meta {
	switch {
	case st.loaded:
		return st.loadedMeta
	case st.data == nil:
		return meta{}
	}
	md, _ := st.m.engine.Get(st.data, metaKey).(meta)
	return md
}

// clearValues drops the session's values and meta from the request. The
// caller holds st.mu.
func (st *state) clearValues() {
	st.loaded, st.loadedMeta, st.loadedValues = false, meta{}, nil
	st.size = 0
	if st.data != nil {
		_ = st.m.engine.Clear(st.data) // never fails
	}
}

// canChange reports why the session may not change now, or nil. The caller
// holds st.mu.
func (st *state) canChange() error {
	if st.committed {
		return ErrResponseStarted
	}
	if st.loadFailed {
		return ErrStoreUnavailable
	}
	return nil
}

// errNoMiddleware is the error of a call on a context that holds no
// session at all: a handler that no middleware.Sessions (or Manager.Load)
// runs before, the mistake the message names.
var errNoMiddleware = fmt.Errorf("%w: no session middleware ran for this request: wrap the handler with middleware.Sessions", ErrNoSession)

// errOtherMiddleware is the error of a Manager's method on a context that
// holds only other Managers' sessions: another Manager's middleware ran,
// this one's did not.
var errOtherMiddleware = fmt.Errorf("%w: this Manager's middleware.Sessions did not run for this request, only another Manager's", ErrNoSession)

// errStale is the error of a write in a request whose token leads to no
// session; see canWrite.
var errStale = fmt.Errorf("%w: the request's token has ended or was replaced; Create logs in, Destroy drops the token", ErrNoSession)

// canWrite reports why the session's values may not change now, or nil.
// Beside canChange's reasons, a request that came with a token leading to no
// session (forged, expired, ended, or replaced by a parallel login or
// renewal) cannot start a new session by writing values: saving them would
// need a new cookie, which could overwrite a newer one that the browser got
// from a parallel request. Create (a login) and Destroy (which drops the
// token) lift it. The caller holds st.mu.
func (st *state) canWrite() error {
	if err := st.canChange(); err != nil {
		return err
	}
	if st.stale {
		return errStale
	}
	if st.withheld && st.stored == "" {
		// A new session's cookie, which browsers take from the answer to
		// a top-level navigation whatever its SameSite, would replace a
		// signed-in one that SameSite kept from this request: a link on
		// another site to a page that stores a value for visitors would
		// sign them out.
		return ErrCrossSite
	}
	return nil
}

// gone records that the session ended elsewhere (logged out, revoked,
// renewed by another request, or timed out): the request goes on as
// anonymous, and the response leaves the cookie alone, since the browser
// may hold a newer one by now. The caller holds st.mu.
func (st *state) gone() {
	st.stored, st.inserted, st.relogin, st.userID, st.issued = "", false, false, "", ""
	st.renewedAway = nil
	st.dirty, st.changes, st.stale = false, nil, true
	st.clearValues()
}

// movedSession is a session a request had, with what ending, replacing or
// writing it needs: its token, user, meta (for its lineage), deadline, its
// values as loaded and the changes the request made to them.
type movedSession struct {
	token, userID string
	md            meta
	deadline      time.Time
	values        map[string]any
	changes       map[string]any
}

// held returns the session the request has, or, once its Renew lost to a
// parallel one, the session it had (see renewedAway): what Destroy,
// Create and RevokeOthers end, replace or keep. Its token is "" for none.
// The caller holds st.mu.
func (st *state) held() movedSession {
	if st.stored == "" && st.renewedAway != nil {
		return *st.renewedAway
	}
	return movedSession{
		token: st.stored, userID: st.userID, md: st.ownMeta(), deadline: st.deadline,
		values: st.loadedValues, changes: st.changes,
	}
}

// loseToRenewal records that the request's Renew found its session gone
// from its token (see renewedAway): the request has no session left, but
// remembers the one it had, with the changes it made to it before, which
// the commit saves where a parallel Renew moved it (see Manager.commit).
// The caller holds st.mu.
func (st *state) loseToRenewal() {
	moved := st.held()
	st.gone()
	st.renewedAway = &moved
}

// end records that this request ended its session: like gone, but the
// response expires the cookie and, if there was a session to log out of
// (not just a token that led nowhere), clears site data. The request may
// then start an anonymous session by writing (a flash message after a
// logout), unless its token came in an Authorization header beside a
// cookie of another session (keepCookie): that session's cookie would be
// overwritten, so writes stay refused as for a stale token. The caller
// holds st.mu.
func (st *state) end() {
	st.clearSite = st.clearSite || st.stored != "" || st.renewedAway != nil || st.loadFailed
	st.dropSCS = st.dropSCS || st.scsCookie
	st.gone()
	st.loadFailed, st.loggedOut, st.ended, st.stale = false, true, true, st.keepCookie
}

// Info describes a session.
type Info struct {
	// ID identifies the session: 128 bits of the SHA-256 of its token,
	// base64url, 22 characters (all of it, 43 characters, for a session an
	// earlier version created), after the user's hash tag with a TagKey.
	// It is not a credential and may be shown to its user, but logs
	// should carry a prefix of it at most.
	ID string
	// FirstID is the id the session was created under: ID until its
	// first Renew, which gives it a new ID, and the same through every
	// renewal after. It is the session's handle for a list of devices:
	// Revoke takes it as well as ID, so that a row shown before the
	// session renewed still revokes it. Like ID, it is not a credential.
	FirstID string
	// UserID is the logged-in user; empty for an anonymous session.
	UserID string
	// CreatedAt is when the session was created (by Create, for a
	// logged-in one; for one migrated from scs, Config.FromSCS, when it
	// was migrated, not when its user signed in to scs); renewals keep
	// it. Rounded up to the millisecond, by the clock of the instance
	// that created it.
	CreatedAt time.Time
	// ExpiresAt is the absolute deadline. The idle timeout may end the
	// session earlier.
	ExpiresAt time.Time
	// LastSeen is when the session was last written; see
	// Config.LastSeenInterval for how stale it may be.
	LastSeen time.Time
	// IP is the client's IP address, from the RemoteAddr of the request
	// that created the session (with or without a port); empty when that
	// held no IP address.
	IP string
	// UserAgent is the user agent of the client that created the
	// session (at most 256 bytes, U+FFFD in place of bytes that are not
	// UTF-8), where its record keeps it: a record of version 1 always
	// does, one of version 2 with Config.KeepUserAgent. Otherwise it is
	// empty; Device names the client.
	UserAgent string
	// Device names that client for a list of devices, as
	// Config.DeviceName named it when the session was created (by
	// default "Chrome 131 on Windows", "Safari 17 on iOS", "curl 8"); for
	// a session of a version 1 record, which keeps no name, it is that
	// namer's name of UserAgent.
	Device string
	// Current is true for the session of the request that asked.
	Current bool
}

// Create logs a user in: it issues a new token for userID and deletes the
// record of the token the request came with, whoever it belonged to, so a
// token planted before login is worthless after it (session fixation). Values
// of an anonymous session carry over, as its record holds them when the
// login deletes it, so that a value another request saved there meanwhile
// is not lost (when a parallel login took it first, as that login took
// it, for up to 10 seconds with redisstore; none when the session was
// logged out meanwhile, whose values a logout ends for good); those of a
// logged-in one do not. Anonymous values that
// would take the new record over Config.MaxRecordBytes are not carried
// over, and a warning is logged: a login does not fail because of a full
// cart. Nor do values this request put before Create, which Put measured
// against the anonymous session: when with them the new record (which
// holds the user id besides) would be over the limit, they are dropped,
// with a warning, after the anonymous session's own. The new record is in the store when Create returns, without the
// values this request put or removed, before Create or after it: the
// response saves those, so that a handler that panics saves none of them
// (see Manager.Abandon). In a request whose session is logged in as Create
// runs (it came so, or an earlier Create of the request logged it in),
// which the login ends, what it put before Create is dropped with that
// session's values: nothing of the user signed in before carries over to
// the one signing in. The response sets the cookie, and Token returns
// the value for an Authorization header. A request whose token came in an
// Authorization header beside a cookie of another session leaves that
// cookie alone: its client gets the new token from Token only.
//
// A logged-in session the request came with ends, as a logout would
// (EventDestroyed), wherever a parallel Renew moved it meanwhile. The same
// user's is replaced in the step that inserts the new session: a re-login
// that Redis refuses (out of memory, which refuses new records but runs
// deletions) changes nothing, and the user stays signed in; one that
// timed out, whose commands a stalled Redis may still run, or whose end of
// the old session fewer replicas than redisstore's WaitReplicas
// confirmed, leaves the request without a session. Another user's (a
// shared browser), or one made before Config.TagKey was set, ends first:
// if the login then fails, the browser is signed out. So does the same
// user's when a parallel Renew moved it, under Config.MaxSessionsPerUser
// (which must not count it).
// An anonymous one is read
// and deleted at once in a step of its own, just before the new session is
// inserted, so that the values another request saved there meanwhile carry
// over; if the insert then fails (Redis failing or too slow in between,
// ErrStoreUnavailable), the anonymous session stays ended and its values
// are lost with it, never left alive beside a login.
//
// A request whose token led nowhere because a Renew had moved its session
// before the request loaded it (the renewing request's answer, which
// brings the new token, had not reached the browser yet) ends the session
// where it went first, as Destroy does, so that answer, coming after the
// login's, cannot put it back in the browser in place of the new session;
// nothing of it carries over, since the request does not hold its token.
// It costs one read more, for any login whose token led nowhere (an
// expired session's, say).
//
// With Config.MaxSessionsPerUser, the user's oldest other sessions are
// revoked in the same step; the session the request came with is replaced,
// never counted. userID must be valid UTF-8 of 1 to MaxUserIDLength bytes,
// and not begin as a key with a hash tag does ("{", four bytes, "}", then
// more; see Config.TagKey) (ErrInvalidUserID). It is compared byte for byte, here and by the
// Manager's List, Revoke and RevokeAll and the session limit: pass the
// account's stable id (a primary key), never the name as the user typed
// it, which "Alice@Example.com" and "alice@example.com" would make two
// users whose sessions "log out everywhere" and the limit keep apart. When even a record without values would be over
// Config.MaxRecordBytes, Create returns an error matching ErrInvalidValue
// and changes nothing. After the response has started Create returns
// ErrResponseStarted and changes nothing. Once the transaction that
// inserts the new session is sent, ctx's deadline no longer cuts short
// the wait for its reply, as for Renew.
func Create(ctx context.Context, userID string) (Info, error) {
	st := stateFrom(ctx)
	if st == nil {
		return Info{}, errNoMiddleware
	}
	if err := validUserID(userID); err != nil {
		return Info{}, err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.committed {
		return Info{}, ErrResponseStarted
	}
	return st.m.create(ctx, st, userID)
}

// validUserID returns ErrInvalidUserID, with the reason, for an id that
// cannot name a user: one that JSON would alter, or none at all; or one
// with a hash tag's shape ("{abcd}bob"), whose index key without a TagKey
// is the index key of another user ("bob", when abcd is that user's tag)
// with one, on an instance that has it.
func validUserID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty", ErrInvalidUserID)
	case len(id) > MaxUserIDLength:
		return fmt.Errorf("%w: longer than %d bytes", ErrInvalidUserID, MaxUserIDLength)
	case !utf8.ValidString(id):
		return fmt.Errorf("%w: not valid UTF-8", ErrInvalidUserID)
	}
	if tag, _ := splitTag(id); tag != "" {
		return fmt.Errorf("%w: begins as a key with a hash tag does, \"{\", four bytes, \"}\"", ErrInvalidUserID)
	}
	return nil
}

// Renew issues a new token for the session and deletes the old token's
// record, keeping the user, the values and the absolute deadline. Call it
// when the session's privileges change (a role granted, a password
// re-entered), so that a token seen before the change is worthless after it:
// no request that arrives with it afterwards finds the session (on a Store
// with a near-cache that is not Strict, no request on another instance
// after the near-cache's Staleness). (A request
// that loaded the session before the renewal and saves values after it
// still has them merged into the renewed session, as any parallel
// request's; see Commit.) The new record is in the store when Renew
// returns, with the values as stored, other requests' changes included,
// but not those this request put or removed, before Renew or after it: the
// response saves those, so that a handler that panics saves none of them
// (see Manager.Abandon). The response sets the
// cookie, and Token returns the new value for an Authorization header. A
// request whose token came in an Authorization header beside a cookie of
// another session leaves that cookie alone: its client gets the new token
// from Token only.
//
// The move is atomic and happens only while the old record exists: when the
// session was ended meanwhile (logged out, revoked, renewed by another
// request, or timed out), Renew writes nothing and returns ErrNoSession, and
// the request goes on as anonymous; what it put or removed before Renew is
// saved by the response where the other request's Renew moved the session,
// as without this Renew (and not when the session ended, or the handler
// panics); a Destroy or RevokeOthers later in the
// request still ends or keeps the session it had, and a Create still
// replaces it, wherever another request's Renew moved it (an anonymous
// one through the pointer the move left, where the store keeps one). A
// Renew that succeeded, in a request whose session a parallel login or
// logout then ended before the response, leaves the cookie alone rather
// than set a token that leads nowhere over the newer one (the commit reads
// the record once to know, when it writes nothing). It also returns ErrNoSession for an
// anonymous session without a record, and ErrResponseStarted once the
// response has started. When values put in this request, beside those
// other requests put meanwhile, would take the record over
// Config.MaxRecordBytes, it moves nothing and returns an error matching
// ErrInvalidValue. An error that wraps ErrStoreUnavailable leaves
// the cookie as it was, but when it was a timeout the move may still run
// in Redis afterwards, ending the old token (see "Slow commands" in
// docs/troubleshooting.md).
//
// ctx's end, by its deadline or its cancellation, stops the move only
// before it sends its transaction, with nothing changed (an error matching
// ErrStoreUnavailable); once sent, its reply is waited for within the
// store's own timeout, even past ctx's deadline (a timeout middleware's):
// Redis runs the transaction all the same, and a reply abandoned would
// leave the old token ended and the new one unsent. Create does the same.
func Renew(ctx context.Context) error {
	st := stateFrom(ctx)
	if st == nil {
		return errNoMiddleware
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := st.canChange(); err != nil {
		return err
	}
	if st.stored == "" {
		return ErrNoSession
	}
	return st.m.renew(ctx, st)
}

// Destroy logs the user out: the session's record is deleted from the store
// before Destroy returns, and the response expires the cookie and carries
// Clear-Site-Data: "cookies", so the browser drops its cookies, and
// Cache-Control: no-store, so it keeps no copy of the logout's answer.
// (Pages served earlier stay in the browser's cache as their own headers
// allow: serve those that show the user's data with Cache-Control:
// no-store, as the example does.) Browsers apply Clear-Site-Data to every
// cookie of the registrable domain, subdomains and other apps under it
// included; Config.KeepSiteData leaves it out, and a Manager nested inside
// another never sends it (see Manager.Load). A session started later in
// the same request (Create, or a value put) replaces the expiry and
// Clear-Site-Data with its own cookie; Cache-Control: no-store stays.
// Destroying an anonymous session deletes its record and expires the
// cookie, with no event. Destroy also drops a token that leads to no
// session (expiring the cookie, without Clear-Site-Data), after which the
// request may start a new one.
//
// The cookie is expired, and site data cleared, only when the request
// carried the cookie: a session that came in an Authorization: Bearer
// header alone ends with neither, since the browser whose script sent it
// may hold a cookie session that Clear-Site-Data would end too; and a
// request without a session, such as a cross-site post that SameSite kept
// the cookie from, cannot log the browser out by expiring its cookie.
//
// A parallel Renew that moved the session to a new token after this request
// loaded it is followed: the session ends under its new token; and so is a
// parallel login on the same browser that replaced a signed-in session:
// the session it made ends too. So is one that did either before this
// request loaded it, whose token then led nowhere:
// the browser sends the old token until the renewing request's answer
// brings the new one, and that answer, coming after the logout's, would
// otherwise sign the browser in again (it finds the session ended, and sets
// no cookie). A user's session is followed through the user's index; a
// token that led nowhere, and an anonymous session, through the pointer the
// store keeps from the old id to the new one (see Store). redisstore keeps
// it for the time the renewed record had to live when it moved, the idle
// timeout (less near the absolute deadline), up to 10 minutes: a Destroy
// with the old token that comes later than that after the renewal ends
// nothing (nor does one of an anonymous session that loaded it before the
// renewal); and so does one that lands within the few round trips of a
// renewal across slots of a Redis Cluster, or follows one whose pointer its
// node refused (see the README, "Data in Redis"). The old token so keeps,
// for that time, the power to end the session it was renewed into, never to
// read or change it.
//
// After the response has started, Destroy still deletes the record, so the
// session ends, but returns an error matching ErrResponseStarted: the
// response can no longer expire the cookie. A client that goes away does
// not stop it either: the deletion ignores ctx's cancellation (and its
// deadline), bounded by the store's own timeout; so do Revoke, RevokeAll
// and RevokeOthers.
//
// During a migration from scs (Config.FromSCS), Destroy also ends the scs
// session whose cookie the request carried beside this one; when it
// cannot, it returns an error matching ErrStoreUnavailable, the session
// of this package ended all the same, and the response leaves the scs
// cookie (sending no Clear-Site-Data), so that a logout tried again can
// end it.
func Destroy(ctx context.Context) error {
	st := stateFrom(ctx)
	if st == nil {
		return errNoMiddleware
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	m := st.m
	// When the store was down at load time, the request knows only the
	// token it presented; read its record now, so that logout during a
	// hiccup still ends the session (or, when the token has no record,
	// the session it moved to, below).
	h := st.held()
	token, userID, md := h.token, h.userID, h.md
	nowhere := false // the token, read again after a failed load, has no record
	if token == "" && st.loadFailed && st.presented != "" {
		// As after a load that succeeded, a session Load would not have
		// found (past a shrunk Lifetime) is a token that leads nowhere.
		read, _, live, err := m.recordMeta(ending(ctx), idOf(st.presented))
		if err != nil {
			return err
		}
		if live {
			token, userID, md = st.presented, read.UserID, read
		} else {
			nowhere = true
		}
	}
	if token != "" {
		// A Renew by a parallel request may have moved the session to a
		// new token: endSession follows it there.
		ended, err := m.endSession(ending(ctx), userID, idOf(token), lineage(idOf(token), md), true)
		if ended != "" && userID != "" {
			m.emit(EventDestroyed, userID, ended, m.now())
		}
		if err != nil {
			return err
		}
		if ended == "" && userID != "" {
			// A login on the same browser, in another tab, replaced the
			// session after this request loaded it: end the one it made
			// too, through the pointer it left.
			if _, _, err := m.endMovedAway(ending(ctx), idOf(token), "", true); err != nil {
				return err
			}
		}
	} else {
		// The token may lead nowhere because a Renew moved its session, or
		// a login on the same browser replaced it, before this request
		// loaded it (or, after a failed load, before it read the record
		// above): end it where it went, with its user's index entry and
		// event.
		_, gone, err := m.endRenewedAway(ending(ctx), st, true)
		if err != nil {
			return err
		}
		if nowhere {
			// Known now to lead nowhere: its logout clears no site data
			// unless it ended the session the token moved to. (Not before
			// that succeeds: a request whose logout failed stays one whose
			// session could not be read, which may not start another.)
			st.loadFailed = false
		}
		st.clearSite = st.clearSite || gone != ""
	}
	// The scs session whose cookie came beside this one ends with it.
	scsErr := m.endSCS(ending(ctx), st)
	if scsErr != nil {
		// Its cookie stays, so that a logout tried again can end it: to
		// expire it would leave its record, and any copy of the cookie, a
		// session that nobody can end but a revocation of its user.
		st.scsCookie = false
	}
	st.end()
	if scsErr != nil {
		st.clearSite = false // Clear-Site-Data would delete the scs cookie too
		return fmt.Errorf("%w: signed out, but the scs session this browser also held may live on, and a copy of its cookie migrate: %w", ErrStoreUnavailable, scsErr)
	}
	if st.committed {
		return fmt.Errorf("%w: the session ended, but its cookie could not be expired", ErrResponseStarted)
	}
	return nil
}

// FromContext returns the logged-in session of ctx. ok is false for an
// anonymous session and outside the Sessions middleware.
func FromContext(ctx context.Context) (info Info, ok bool) {
	st := stateFrom(ctx)
	if st == nil {
		return Info{}, false
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	info = st.m.info(st)
	return info, info.UserID != ""
}

// UserID returns the id of the logged-in user. ok is false for an anonymous
// session and outside the Sessions middleware.
func UserID(ctx context.Context) (string, bool) {
	st := stateFrom(ctx)
	if st == nil {
		return "", false
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.stored == "" {
		return "", false
	}
	return st.userID, st.userID != ""
}

// Token returns the signed token of the session, the value of its cookie,
// for API clients to send as "Authorization: Bearer <token>". ok is false
// while the session has no record in the store, as far as this request
// knows: a parallel request's Renew may have replaced the token since this
// one loaded it, and then it leads nowhere. So an API client takes a new
// token from the answer of the request that logged in or renewed, not from
// every answer. Treat the token as a
// password: never log it or put it in a URL.
func Token(ctx context.Context) (string, bool) {
	st := stateFrom(ctx)
	if st == nil {
		return "", false
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.stored == "" {
		return "", false
	}
	return st.m.signer.sign(st.stored, st.deadline), true
}

// HasToken reports whether the request of ctx came with a token of the
// Manager's, in its cookie or an Authorization: Bearer header, that one of
// its keys signed and whose deadline has not passed, whether or not it
// leads to a session: one that ended, or that a renewal or a re-login of
// the same client replaced, has a token too; and so has, with
// Config.FromSCS, one that came with scs's cookie (whose session a
// parallel request may be migrating: a logout then ends the session it
// becomes). A logout route served without RequireAuth asks it to refuse a
// request that carries none (see Destroy, which ends the session that
// replaced such a token).
func HasToken(ctx context.Context) bool {
	st := stateFrom(ctx)
	if st == nil {
		return false
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.presented != "" || st.scsCookie
}

// LoadError reports why the session of ctx could not be read: nil, or an
// error matching ErrStoreUnavailable, and also ErrEndUnconfirmed when the
// store found no session but could not vouch that it has ended. A request
// with a load error is served as anonymous; RequireAuth answers it with
// 503, not 401. Without the Sessions middleware it returns ErrNoSession,
// saying so.
func LoadError(ctx context.Context) error {
	st := stateFrom(ctx)
	if st == nil {
		return errNoMiddleware
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	switch {
	case !st.loadFailed:
		return nil
	case st.absent:
		return errEndUnconfirmed
	}
	return ErrStoreUnavailable
}

// errEndUnconfirmed is LoadError's error for a session the store found no
// record of but could not vouch for (state.absent).
var errEndUnconfirmed = fmt.Errorf("%w: %w", ErrStoreUnavailable, ErrEndUnconfirmed)

// Put sets the value of key in the session; the response saves it. Values
// of type string, bool, int, int64, float64, []byte and time.Time come back
// as the same type (a time as the same instant, a nil []byte as an empty
// one, in this request too); any other value is stored
// as JSON and decoded into the type Get asks for, by encoding/json's rules
// (unexported fields are dropped; a number inside a map[string]any or an
// []any comes back as a float64, exact up to 2^53: ask Get for a type
// with int64 fields to keep larger ones). A []byte is copied: later writes to the caller's
// slice do not reach the session. Keys must be valid UTF-8, not empty, and not start with
// "__" (ErrReservedKey; the error for a key that is not valid UTF-8, which
// the record could not keep, matches ErrInvalidValue too). A value the record could not give back unchanged
// is refused with ErrInvalidValue and the session is left as it was: a NaN
// or infinite float, a string that is not valid UTF-8 (inside a JSON value
// too), a time outside years 0 to 9999 (or, inside another value, with a
// zone offset of seconds, as local mean times before 1900 have, which JSON
// would write moved: put it in UTC; one embedded under an unexported name
// is not seen), a value encoding/json refuses, a
// struct (or a pointer to one) that holds data only in unexported fields
// or fields tagged `json:"-"`, which JSON keeps none of, also inside
// another value (an error made by errors.New, alone or in a map of a
// form's errors by field: put err.Error()), but not in a field tagged
// `json:"-"`, which JSON leaves out whatever it holds, or
// one whose JSON nests arrays and objects more than 61 levels deep
// (inside the record, past the 64 that other languages' JSON parsers read
// by default; a deeper value read from a record written by an earlier
// version is kept). A
// time whose zone offset RFC 3339 cannot write (with seconds, or of 24 hours
// or more) comes back as the same instant in UTC. A value that would take
// the session's record over Config.MaxRecordBytes (64 KiB by default) is
// refused with ErrInvalidValue too, the error naming the sizes: the
// record's size is that of the record the commit would write from what
// the request holds (the session as it loaded it, with the values it put
// and removed since), with room for what a later write of the request
// adds (the last-seen time; the first id, at the session's first Renew),
// and is checked again when the record is written, with the values other
// requests saved meanwhile. So a value Put accepts is saved by the
// response, and does not make a Renew in the same request fail. After the response has started Put returns
// ErrResponseStarted. In a request whose token leads to no session
// (forged, expired, ended, or replaced by a parallel login or renewal) it
// returns ErrNoSession: a new anonymous session would need a cookie that
// could overwrite a login made in parallel. Create, or Destroy (which
// drops the dead token), lifts that. It returns ErrCrossSite, which
// matches ErrNoSession, when it would start a session in a cross-site
// request that came without the cookie, where the cookie's SameSite keeps
// it from the request (Sec-Fetch-Site: cross-site; under Lax, unless a
// top-level GET or HEAD navigation): the browser may hold a signed-in
// session's cookie, which the new one would replace. Create lifts that;
// Destroy does not (see ErrCrossSite for what does).
func Put(ctx context.Context, key string, value any) error {
	st, err := keyed(ctx, key)
	if err != nil {
		return err
	}
	v, err := normalize(value)
	if err != nil {
		return err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := st.canWrite(); err != nil {
		return err
	}
	size, err := st.fits(key, v)
	if err != nil {
		return err
	}
	st.m.engine.Put(st.engineData(), key, v)
	st.change(key, v)
	st.size = int32(size)
	return nil
}

// Get returns the value of key as a T. ok is false when there is no such
// value or it does not fit T. A value of one of the types Put keeps as
// themselves fits only that type (or an interface it satisfies: Get[any]
// returns any value); any other was stored as JSON and fits
// whatever encoding/json decodes it into without an error, by its lenient
// rules: fields the JSON lacks are left zero and fields T lacks are
// ignored (matched case-insensitively), an array longer than a Go array
// is cut, and a null (a nil pointer, map or slice put) decodes into any T
// as its zero value. Ask for the type that was put. A []byte is the
// caller's own copy.
func Get[T any](ctx context.Context, key string) (value T, ok bool) {
	st := stateFrom(ctx)
	if st == nil || !validKey(key) {
		return value, false
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return as[T](st.m.engine.Get(st.engineData(), key))
}

// Pop returns the value of key as a T, like Get, and removes it from the
// session. A value that does not fit T stays, and Pop returns false. Once
// the response has started, or when the session could not be read, it can
// remove nothing and returns false.
//
// Pop is no atomic take: like every change, the removal is saved with the
// response, and parallel requests of the session that loaded it before
// then each get the value too. A flash message may show twice; a value
// that must be used at most once (an OAuth state, a one-time code, a
// nonce) needs a check of its own that spends it, such as a SET NX of a
// key naming it, or a renewal (Renew), which only one of those requests
// wins.
func Pop[T any](ctx context.Context, key string) (value T, ok bool) {
	st := stateFrom(ctx)
	if st == nil || !validKey(key) {
		return value, false
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.canWrite() != nil || !st.m.engine.Exists(st.engineData(), key) {
		return value, false
	}
	v := st.m.engine.Get(st.engineData(), key)
	if value, ok = as[T](v); !ok {
		return value, false
	}
	st.change(key, st.removalOf(key))
	st.m.engine.Remove(st.engineData(), key)
	st.shrink(key, v)
	return value, true
}

// Remove deletes key from the session; the response saves the change. A
// key the session does not hold as the request loaded it is removed all
// the same from the stored record, should another request have put it
// since (or before a near-cache's read that had not seen it yet); the
// save writes nothing when it is not there either. When an anonymous
// session ends while the request runs (a login takes it), the response
// answers ErrContention, to be sent again, for changes the session could
// have carried into the login, but not when the request's only changes
// are removals of values its session did not hold as loaded (before a
// Renew of its own, which leaves it without them). It refuses a key Put
// would refuse (ErrReservedKey), returns ErrResponseStarted after the
// response has started, LoadError's error when the session could not be
// loaded (ErrStoreUnavailable), and ErrNoSession when no middleware.Sessions
// ran for the request or, for a key the session holds, in the cases Put
// returns it.
func Remove(ctx context.Context, key string) error {
	st, err := keyed(ctx, key)
	if err != nil {
		return err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := st.canChange(); err != nil {
		return err
	}
	if !st.m.engine.Exists(st.engineData(), key) {
		if st.stored == "" || st.inserted {
			return nil // no record another request could have put it in
		}
		if _, removed := st.changes[key].(removal); removed {
			return nil // removed before in this request, as it was then
		}
		// Absent as this request loaded the session (or renewed it), but
		// another request may have put it since (or put it before a
		// near-cache's read that had not seen it yet): the removal goes to
		// the record as it is when the response saves, which writes
		// nothing if the value is not there either (mergeChanges).
		if err := st.canWrite(); err != nil {
			return err
		}
		st.change(key, removal{unseen: !st.renewed})
		return nil
	}
	if err := st.canWrite(); err != nil {
		return err
	}
	r := st.removalOf(key)
	st.shrink(key, st.m.engine.Get(st.engineData(), key))
	st.m.engine.Remove(st.engineData(), key)
	st.change(key, r)
	return nil
}

// removalOf returns the removal of key, a value the request holds: one
// of a value never seen (unseen) when this request put it there, its
// session holding none as loaded, with no Renew of its own since the load
// (which leaves it without the values as loaded). The caller holds st.mu.
func (st *state) removalOf(key string) removal {
	_, put := st.changes[key]
	_, loaded := st.loadedValues[key]
	return removal{unseen: put && !loaded && !st.renewed}
}

// removal marks a value removed in state.changes; unseen, one the request
// did not hold when it removed it (see Remove).
type removal struct{ unseen bool }

// unseenOnly reports whether changes are all removals of values their
// request did not hold. Such a change needs no saving in a session that
// has ended: it may be taken to have come before whatever put the values
// there, as nothing the request saw says otherwise.
func unseenOnly(changes map[string]any) bool {
	for _, v := range changes {
		if r, ok := v.(removal); !ok || !r.unseen {
			return false
		}
	}
	return true
}

// shrink takes the entry of key and v, removed, out of the record's size,
// once a Put has estimated it (see fits). The caller holds st.mu.
func (st *state) shrink(key string, v any) {
	if st.size != 0 {
		st.size -= int32(st.m.entrySize(key, v))
	}
}

// change records that key was set to v (or removed) in this request. The
// caller holds st.mu.
func (st *state) change(key string, v any) {
	if st.changes == nil {
		st.changes = make(map[string]any)
	}
	st.changes[key] = v
	st.dirty = true
}

// keyed returns the state of ctx if key may name an app value.
func keyed(ctx context.Context, key string) (*state, error) {
	st := stateFrom(ctx)
	switch {
	case st == nil:
		return nil, errNoMiddleware
	case !validKey(key):
		return nil, keyError(key)
	}
	return st, nil
}

// as converts a value held in a session to a T.
func as[T any](v any) (T, bool) {
	var t T
	switch v := v.(type) {
	case jsonValue:
		err := json.Unmarshal(v, &t)
		return t, err == nil
	case []byte:
		// A copy: the caller's writes must not reach the session.
		v = bytes.Clone(v)
		t, ok := any(v).(T)
		return t, ok
	}
	t, ok := v.(T)
	return t, ok
}

// info describes the session of st. The caller holds st.mu.
func (m *Manager) info(st *state) Info {
	if st.stored == "" {
		return Info{}
	}
	md := st.ownMeta()
	id := idOf(st.stored)
	return Info{
		ID:        id,
		FirstID:   lineage(id, md),
		UserID:    st.userID,
		CreatedAt: md.CreatedAt,
		ExpiresAt: st.deadline,
		LastSeen:  md.LastSeen,
		IP:        md.IP,
		UserAgent: md.UserAgent,
		Device:    m.codec.device(md),
		Current:   true,
	}
}
