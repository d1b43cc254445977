package session

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/alexedwards/scs/v2"

	"github.com/sessionkit/sessionkit/internal/nocache"
)

// DefaultSCSCookieName is the name of the cookie scs sets unless told
// otherwise (scs.SessionManager.Cookie.Name).
const DefaultSCSCookieName = "session"

// scsRememberMe is the key under which scs keeps the choice of
// scs.SessionManager.RememberMe: whether the cookie outlives the browser.
const scsRememberMe = "__rememberMe"

// SCSImport takes over the sessions of an application that used
// github.com/alexedwards/scs/v2 directly, typically with
// github.com/alexedwards/scs/redisstore, so that moving to this package
// logs nobody out. Set it as Config.FromSCS during the migration; see
// docs/migrating-from-scs.md.
//
// A request that carries scs's cookie (the bare scs token) and no token of
// this package's own (no cookie or Bearer token, not even an anonymous or
// ended session's) has its scs record taken out of the store and deleted
// in one step (SCSRecords.Take), converted, and stored as a session of
// this package under a new token: logged in as the user named by the
// value under UserKey, with scs's other values, and with scs's deadline (cut
// to Lifetime from now, if it lies further). The response sets the new
// cookie and expires scs's. Of concurrent requests with the same scs
// cookie, exactly one gets the record, so one session comes out of it; the
// others go on as anonymous requests whose token leads nowhere (see Put),
// set no cookie of this package's and expire scs's, unless the two are one
// cookie. So does a request whose scs cookie finds no record (ended, or
// migrated before); but until Records has found any record, which proves
// its setting, such a cookie is left, and logged at Warn at most every
// 10s, so that a Records under another prefix, Redis or database than scs
// wrote to logs nobody out for good. A migrated scs key is retired until
// scs's deadline (SCSRecords.Retire): a copy of the record that an scs
// instance still running writes back is deleted and refused, not migrated
// again. A login or logout of the Manager in a request that carries an scs
// cookie it did not migrate (beside a session of its own) expires that
// cookie too, and ends its scs session: the record is taken and its key
// retired, so that no copy of the cookie migrates after. RevokeAll and
// RevokeOthers end the user's scs sessions not migrated yet (see
// SCSRecords and Lifetime).
//
// Should the store fail after the record was taken, before the key was
// retired and the new session written, the session is lost and its user
// logs in again: the two are never both alive. A store that cannot be asked at all leaves the scs
// record and cookie as they are and serves the request as during any
// outage (LoadError reports ErrStoreUnavailable).
//
// Values of type string, bool, int, int64, float64, []byte and time.Time
// keep their Go type; other values (other numbers, maps, slices, structs
// registered with gob.Register, which the application must still register
// for the records to decode) are stored as JSON and come back through Get
// by encoding/json's rules. Values that Put would refuse (a NaN, a key
// starting with "__"), and values that would not come back from JSON as
// they were (a type that only gob can carry, through a GobEncoder, with no
// exported fields; a field tagged json:"-"), are dropped and logged by key
// and type, except scs's own "__rememberMe", dropped silently: the new
// cookie lasts until the session's deadline, also where scs's was a
// browser-session cookie (scs.SessionCookie.Persist false, or
// RememberMe(ctx, false)). A record that does not decode is deleted and
// logged, and its user logs in again; but with records that can Peek (see
// SCSRecords), as redisstore's, one that holds a type not registered with
// gob stays, with its cookie, until the type is registered.
type SCSImport struct {
	// Records reads and deletes scs records; (*redisstore.Store).SCSRecords
	// returns one for the prefix scs used. Take it from the Store the
	// Manager uses, or from one on the Redis scs used: New refuses records
	// whose Err method, if they have one, returns an error, as
	// redisstore's do for a prefix that overlaps that Store's own keys,
	// under which a cookie holding a session's id would take that session
	// as an scs record, and records whose CheckStore (see SCSRecords)
	// finds that overlap with the Manager's Store. Required.
	Records SCSRecords

	// CookieName is the name of scs's cookie. Zero means
	// DefaultSCSCookieName ("session"). It may equal Config.CookieName: a
	// bare scs token is then told from a signed token by its shape.
	CookieName string

	// CookieDomain and CookiePath are the Domain and Path that scs's
	// cookie was set with, which expiring it must repeat. Zero means none
	// (a host-only cookie) and "/", scs's defaults. New refuses a path that
	// does not start with "/", and either when net/http would drop it from
	// the Set-Cookie header.
	CookieDomain string
	CookiePath   string

	// CookiePartitioned says that scs's cookie was set Partitioned (scs's
	// Cookie.Partitioned, for an app embedded in other sites): browsers
	// keep such a cookie apart, and expire it only through a Set-Cookie
	// that is Partitioned (and Secure) too, which expiring it then is.
	// Without it, the browser keeps sending the scs cookie after every
	// login and logout. The Manager's own cookie is not partitioned: in a
	// browser that blocks third-party cookies, an app embedded in other
	// sites keeps no session of the Manager's, and its migrated users
	// sign in again. Default false.
	CookiePartitioned bool

	// UserKey is the scs value that holds the id of the logged-in user,
	// such as "userID": a string, or an integer of any Go type, named
	// types included (type UserID int64), which becomes its decimal form;
	// a value of another type is logged and dropped. A session with it
	// becomes a logged-in session of that user (in the user's index,
	// counted against MaxSessionsPerUser); the value itself is not carried
	// over, since UserID now answers for it. Zero, or a session without
	// the value, gives an anonymous session with the values: New warns of
	// zero, and until an scs session had the value, the migration of one
	// without it is logged at Warn, naming its keys that look like a user
	// key, since a misspelt UserKey signs every scs user out.
	UserKey string

	// HashTokenInStore says that scs ran with the option of that name, so
	// that its records are keyed by the SHA-256 of the token rather than
	// the token. False (scs's default) keys them by the token.
	HashTokenInStore bool

	// Lifetime is scs's SessionManager.Lifetime: the longest an scs
	// session lives. The scs sessions not migrated yet are in no user's
	// index, so RevokeAll and RevokeOthers cannot find them: they mark
	// their user instead, for Lifetime (see SCSRecords), and no scs session
	// of a marked user migrates after. Zero means Config.Lifetime or 24
	// hours (scs's default), whichever is longer. Too short a Lifetime lets
	// an scs session that outlives the mark migrate; too long a one keeps
	// the scs sessions of a revoked user from migrating for longer, which
	// costs only a login.
	Lifetime time.Duration
}

// SCSRecords is where scs kept its session records. redisstore implements
// it.
type SCSRecords interface {
	// Take returns the record stored under key (scs's token, or its hash)
	// and deletes it, atomically, so that of concurrent calls with the same
	// key at most one finds it. A missing record is not an error. A record
	// under a key that Retire marked, and whose mark has not expired, is
	// deleted and not returned.
	Take(ctx context.Context, key string) (record []byte, found bool, err error)

	// Retire marks key as migrated until the time given, so that Take
	// refuses a record written under it again until then (by an scs
	// instance that loaded the session before it was taken).
	//
	// Records may also have a method Peek, of Take's signature, that
	// returns the record under key without deleting it, as redisstore's
	// do. The Manager then reads each record first, and takes it only if
	// it decodes, or fails for another reason than a type that only
	// gob.Register makes known (see SCSImport): a type the app forgot to
	// register leaves every record that holds one, to migrate once it is
	// registered, where Take alone would delete them. It costs a round trip
	// more a migration, and none a cookie whose record is gone.
	Retire(ctx context.Context, key string, until time.Time) error

	// Records may also have the methods
	//
	//	RetireUser(ctx context.Context, userID string, until time.Time) error
	//	UserRetired(ctx context.Context, userID string) (bool, error)
	//
	// as redisstore's do: RetireUser marks userID until the time given, and
	// UserRetired reports whether the mark is there. RevokeAll and
	// RevokeOthers then mark their user, before they end the sessions in
	// the user's index, and the Manager migrates no scs session of a
	// marked user: it asks before it stores the session and again after
	// (ending it when marked), so that a migration that runs beside a
	// revocation never leaves its session alive. Without them, New warns
	// that a revocation does not reach scs sessions not migrated yet.
	//
	// Records may also have the method
	//
	//	CheckStore(store any) error
	//
	// as redisstore's do: New calls it with the Manager's Store and refuses
	// the Config with its error, when the records' keys overlap the keys
	// that Store writes (see redisstore's Store.SCSRecords), also when the
	// records come from another Store.
	//
	// Records may also have the method
	//
	//	SwapMark(ctx context.Context, key, value string) (string, error)
	//
	// as redisstore's do: it puts value in the mark Retire set under key,
	// keeping its expiry, and returns what it held, or "" without a mark
	// (which it leaves so). A logout or login beside the request migrating
	// the same scs session then ends the session it became (see
	// endTakenSCS). Without it, New warns that such a logout may be
	// undone by the migrating request's answer.
}

// scsUsers is the part of SCSRecords that marks the users whose scs
// sessions must not migrate (see SCSRecords).
type scsUsers interface {
	RetireUser(ctx context.Context, userID string, until time.Time) error
	UserRetired(ctx context.Context, userID string) (bool, error)
}

// withDefaults returns a copy of imp with its zero fields set, or an error
// naming the first invalid field. lifetime is Config.Lifetime, defaults
// filled in.
func (imp SCSImport) withDefaults(lifetime time.Duration) (*SCSImport, error) {
	if imp.Records == nil {
		return nil, errors.New("session: Config.FromSCS.Records: required")
	}
	switch {
	case imp.Lifetime < 0 || imp.Lifetime > maxLifetime:
		return nil, fmt.Errorf("session: Config.FromSCS.Lifetime: want scs's SessionManager.Lifetime, up to 100 years, or zero for Config.Lifetime or 24h, whichever is longer; got %v", imp.Lifetime)
	case imp.Lifetime == 0:
		imp.Lifetime = max(lifetime, DefaultLifetime)
	}
	// Records that know they cannot be used say so with Err, as
	// redisstore's do for a prefix that overlaps the store's own keys:
	// refuse them here rather than at the first request. Err is optional,
	// so that SCSRecords stays implementable without it.
	if r, ok := imp.Records.(interface{ Err() error }); ok {
		if err := r.Err(); err != nil {
			return nil, fmt.Errorf("session: Config.FromSCS.Records: %w", err)
		}
	}
	if imp.CookieName == "" {
		imp.CookieName = DefaultSCSCookieName
	}
	if !validCookieName(imp.CookieName) {
		return nil, fmt.Errorf("session: Config.FromSCS.CookieName: %q is not a valid cookie name", imp.CookieName)
	}
	if imp.CookiePath == "" {
		imp.CookiePath = "/"
	}
	// Expiring scs's cookie repeats its Path and Domain: values that
	// net/http would drop from the header would leave it in the browser.
	c := http.Cookie{Name: imp.CookieName, Path: imp.CookiePath}
	if err := c.Valid(); err != nil || !strings.HasPrefix(imp.CookiePath, "/") {
		return nil, fmt.Errorf("session: Config.FromSCS.CookiePath: %q is not a cookie path (one starting with /)", imp.CookiePath)
	}
	c.Domain = imp.CookieDomain
	if err := c.Valid(); err != nil {
		return nil, fmt.Errorf("session: Config.FromSCS.CookieDomain: %q is not a cookie domain", imp.CookieDomain)
	}
	return &imp, nil
}

// everywhere reports whether scs's cookie reaches every request to this
// host: Path=/ and host-only.
func (imp *SCSImport) everywhere() bool {
	return imp.CookiePath == "/" && imp.CookieDomain == ""
}

// scsToken returns the scs token of r's scs cookie, if it has one: a bare
// token, not a signed one under the same name.
func (m *Manager) scsToken(r *http.Request) (string, bool) {
	c, err := r.Cookie(m.cfg.FromSCS.CookieName)
	if err != nil || len(c.Value) != tokenLen || !base64URL(c.Value) {
		return "", false
	}
	return c.Value, true
}

// sharesCookie reports whether scs's cookie and the Manager's, named name,
// are the same cookie to a browser: same name, Path=/ and host-only.
func (imp *SCSImport) sharesCookie(name string) bool {
	return imp.CookieName == name && imp.CookiePath == "/" && imp.CookieDomain == ""
}

// scsKey returns the key of scs's record for token: the token, or its
// hash when scs ran with HashTokenInStore.
func (imp *SCSImport) scsKey(token string) string {
	if !imp.HashTokenInStore {
		return token
	}
	sum := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// retireSCSUser marks userID so that none of its scs sessions migrates
// from now on (see SCSRecords), before a revocation ends the sessions in
// the user's index. It does nothing without FromSCS, or with Records that
// cannot mark users, of which New warned.
func (m *Manager) retireSCSUser(ctx context.Context, userID string) error {
	imp := m.cfg.FromSCS
	if imp == nil {
		return nil
	}
	u, ok := imp.Records.(scsUsers)
	if !ok {
		return nil
	}
	if err := u.RetireUser(ctx, userID, m.now().Add(imp.Lifetime)); err != nil {
		return fmt.Errorf("the user's scs sessions not migrated yet may still migrate: %w", err)
	}
	return nil
}

// scsUserRetired reports whether a revocation marked userID (see
// retireSCSUser).
func (m *Manager) scsUserRetired(ctx context.Context, userID string) (bool, error) {
	u, ok := m.cfg.FromSCS.Records.(scsUsers)
	if !ok {
		return false, nil
	}
	return u.UserRetired(ctx, userID)
}

// endSCS ends the scs session whose cookie the request carried and did not
// migrate (see state.scsToken), at a login or logout in that browser,
// which also expires the cookie: its record is taken, and its key retired
// until scs's deadline, as a migration does, so that no copy of the cookie
// migrates after, nor a copy of the record that an scs instance still
// running writes back. A record that holds a type not registered with gob
// goes too, its key retired for FromSCS.Lifetime. The caller holds st.mu.
func (m *Manager) endSCS(ctx context.Context, st *state) error {
	if st.scsTaken {
		return m.endTakenSCS(ctx, st)
	}
	if st.scsToken == "" {
		return nil
	}
	imp := m.cfg.FromSCS
	key := imp.scsKey(st.scsToken)
	b, found, err := imp.Records.Take(ctx, key)
	if err != nil {
		return err
	}
	st.scsToken = ""
	if !found {
		return nil
	}
	now := m.now()
	until := now.Add(imp.Lifetime)
	if deadline, _, err := (scs.GobCodec{}).Decode(b); err == nil {
		until = deadline
	}
	if !until.After(now) {
		return nil
	}
	return imp.Records.Retire(ctx, key, until)
}

// scsEnded is what a login or logout puts in the marker of an scs record
// it found taken (see endTakenSCS): no session's mark, which holds an id
// (see markMigrated), nor the "1" of SCSRecords.Retire.
const scsEnded = "ended"

// scsRaceWindow is how long after a migration named its session in the
// marker a login or logout that found the record taken ends that session
// (see endTakenSCS): long enough for the requests a browser sends side by
// side as it comes back (the migrating one may run a slow handler), short
// enough that a copy of the dead scs cookie, found later (in a log, a
// backup), cannot sign its user out of the session it became.
const scsRaceWindow = time.Minute

// markSwapper is the optional method of SCSRecords with which a migration
// and a login or logout of the same browser, side by side, learn of each
// other (see endTakenSCS): redisstore's records have it.
type markSwapper interface {
	SwapMark(ctx context.Context, key, value string) (string, error)
}

// endTakenSCS runs at a login or logout in a request whose scs record was
// gone (see state.scsTaken): taken, maybe, by a parallel request of the
// same browser that is migrating it, whose answer would set the cookie of
// the session it makes after this one's answer, and sign the browser in
// again. It puts scsEnded in the key's marker: where a migration named its
// session there first, within scsRaceWindow, it ends that session (and
// should that fail, puts the name back, so that the logout tried again
// ends it); where it comes second, the migration finds the mark and ends
// its session itself (see markMigrated). A record taken but not yet
// marked (the round trips between SCSRecords.Take and Retire) goes
// unseen. The caller holds st.mu.
func (m *Manager) endTakenSCS(ctx context.Context, st *state) error {
	key := m.cfg.FromSCS.scsKey(st.scsToken)
	st.scsToken, st.scsTaken = "", false
	sw, ok := m.cfg.FromSCS.Records.(markSwapper)
	if !ok {
		return nil
	}
	prev, err := sw.SwapMark(ctx, key, scsEnded)
	if err != nil {
		return err
	}
	// The mark's time is the migrating instance's: one whose clock is
	// ahead gets no more than the window either way.
	id, at, ok := parseMark(prev)
	if since := m.now().Sub(at); !ok || since > scsRaceWindow || since < -scsRaceWindow {
		return nil
	}
	if err := m.endMigrated(ctx, id); err != nil {
		sw.SwapMark(ctx, key, prev) //nolint:errcheck // best effort: Redis is failing already
		return err
	}
	return nil
}

// markMigrated names st's session, which an scs record became, in the
// marker of its key (see endTakenSCS), with the time. When a login or
// logout of the same browser marked it first, that request ended nothing:
// the session ends here, and the response sets no cookie; and so when the
// marker cannot be asked, which may hide such a mark. The caller holds
// st.mu.
func (m *Manager) markMigrated(ctx context.Context, st *state, key string) {
	sw, ok := m.cfg.FromSCS.Records.(markSwapper)
	if !ok || st.issued == "" {
		return
	}
	id := idOf(st.issued)
	prev, err := sw.SwapMark(ctx, key, id+"@"+strconv.FormatInt(m.now().UnixMilli(), 10))
	if err == nil && prev != scsEnded {
		return
	}
	if err != nil {
		m.log.Warn("session: scs session lost in migration: its mark failed, which may hide a logout of its browser; its user logs in again", "error", err)
	}
	if err := m.endMigrated(ctx, id); err != nil {
		m.log.Warn("session: a session migrated from scs was not ended after a logout of its browser, or a failed mark; its cookie is not sent, and it expires", "session", fingerprint(id), "error", err)
	}
	st.gone()
}

// parseMark reads the marker of a migrated scs record that markMigrated
// wrote: the session's id and the time. ok is false for any other (the
// "1" of SCSRecords.Retire, scsEnded, none).
func parseMark(mark string) (id string, at time.Time, ok bool) {
	id, ms, found := strings.Cut(mark, "@")
	n, err := strconv.ParseInt(ms, 10, 64)
	if !found || id == "" || err != nil {
		return "", time.Time{}, false
	}
	return id, time.UnixMilli(n), true
}

// endMigrated ends the session id, made by a migration, as a logout
// would, or the session a Renew moved it to.
func (m *Manager) endMigrated(ctx context.Context, id string) error {
	md, found, _, err := m.recordMeta(ctx, id)
	if err != nil {
		return err
	}
	if !found {
		_, _, err := m.endMovedAway(ctx, id, "", true)
		return err
	}
	_, err = m.endFound(ctx, id, md, true)
	return err
}

// importSCS takes over the scs session of r, if r carries scs's cookie and
// no session of m's own (signed is the value signedFromRequest found,
// bearer whether it came as a Bearer token). It reports whether it did
// anything: then Load is done with the request.
func (m *Manager) importSCS(ctx context.Context, st *state, r *http.Request, signed string, bearer bool) bool {
	imp := m.cfg.FromSCS
	token, ok := m.scsToken(r)
	if !ok || (signed != "" && signed != token && (bearer || m.signedToken(signed))) {
		// A session of m's own wins, found or not; scs's cookie, if any,
		// goes with its next login or logout (see state.scsCookie). A
		// cookie of m's that no key signed, or past its deadline (a
		// leftover of another deployment on the domain, a key since
		// removed), is none: it would keep the scs session from
		// migrating, and its user signed out, for as long as the browser
		// kept it.
		return false
	}
	// The session's cookie came: a logout in this request clears site data,
	// and it or a login expires scs's cookie (see state.scsCookie).
	st.sentCookie, st.scsCookie = true, true
	// Until the record is taken, a login or logout in this request takes
	// it (see endSCS).
	st.scsToken = token
	key := imp.scsKey(token)
	now := m.now()
	// Taking the record deletes it: from then on the migration must finish
	// whether or not the client stays, or the session is lost. The store's
	// timeout bounds each call.
	ctx = ending(ctx)
	b, found, err := m.takeSCS(ctx, key)
	if errors.Is(err, errSCSUnregistered) {
		st.stale = true // as for any token that leads nowhere
		return true
	}
	if err != nil {
		st.loadFailed = true
		m.servedAnonymous(now, err)
		return true
	}
	st.scsToken = ""
	// Until a session is made, the request's token leads nowhere: it may
	// not start an anonymous session, whose cookie could overwrite the one
	// a parallel request migrating the same scs session sets.
	st.stale = true
	if !found {
		st.scsToken, st.scsTaken = token, true
		// Ended, timed out, taken by a parallel request, or migrated
		// before; or Records reads another prefix, Redis or database than
		// scs wrote to. Once Records has found a record, the setting is
		// right: the cookie goes (a parallel request's new cookie stays
		// when both cookies are one). Until then it stays, so that a
		// mistake in the setting logs nobody out for good, at the cost of
		// no anonymous session for its browser meanwhile.
		if m.scsFound.Load() {
			m.log.Debug("session: scs cookie without a record")
			st.dropSCS = !imp.sharesCookie(m.cfg.CookieName)
			return true
		}
		m.scsMissing.Do(now, func(suppressed int) {
			m.log.Warn("session: scs cookie without an scs record, and none found yet: its cookie is left, and its browser served as anonymous; if this goes on, Config.FromSCS.Records reads another key prefix, Redis or database than scs wrote to",
				"suppressed", suppressed)
		})
		return true
	}
	m.scsFound.Store(true)
	st.dropSCS = true
	deadline, values, err := scs.GobCodec{}.Decode(b)
	if err != nil {
		m.log.Warn("session: unreadable scs record deleted", "error", err)
		return true
	}
	if !deadline.After(now) {
		m.log.Debug("session: expired scs record deleted")
		return true
	}
	if deadline.After(now.Add(imp.Lifetime)) {
		// scs's Lifetime is longer than FromSCS.Lifetime says: the mark of
		// a revoked user (see SCSRecords) may end before such a session.
		m.scsLong.Do(now, func(suppressed int) {
			m.log.Warn("session: an scs session's deadline lies further ahead than FromSCS.Lifetime: set FromSCS.Lifetime to scs's SessionManager.Lifetime, or the scs sessions of a user revoked during the migration may migrate once the revocation's mark expires",
				"lifetime", imp.Lifetime, "deadline_in", deadline.Sub(now).Round(time.Second), "suppressed", suppressed)
		})
	}
	// An scs instance still running in a rolling deploy that loaded this
	// session before it was taken writes it back when its request ends.
	// Taken again, that copy would become a second session, which a logout
	// or RevokeAll of this one leaves alive: the mark makes Take refuse it
	// until scs's deadline, past which scs writes no copy. Without the
	// mark, no session is made.
	if err := imp.Records.Retire(ctx, key, deadline); err != nil {
		m.log.Warn("session: scs session lost in migration; its user logs in again", "error", err)
		return true
	}
	if err := m.migrate(ctx, st, deadline, values, now); err != nil {
		m.log.Warn("session: scs session lost in migration; its user logs in again", "error", err)
		return true
	}
	m.markMigrated(ctx, st, key)
	return true
}

// errSCSUnregistered is takeSCS's report of a record left in place.
var errSCSUnregistered = errors.New("session: scs record holds a type not registered with gob")

// takeSCS takes the scs record under key (see SCSRecords.Take), after a
// look at it with Peek when the records have one: a record that gob cannot
// decode for want of a registered type is left in place, logged at Error
// (at most every 10s), and reported with errSCSUnregistered.
func (m *Manager) takeSCS(ctx context.Context, key string) ([]byte, bool, error) {
	imp := m.cfg.FromSCS
	peeker, ok := imp.Records.(interface {
		Peek(ctx context.Context, key string) ([]byte, bool, error)
	})
	if !ok {
		return imp.Records.Take(ctx, key)
	}
	b, found, err := peeker.Peek(ctx, key)
	if err != nil || !found {
		return nil, false, err
	}
	m.scsFound.Store(true) // the setting of Records is right
	if _, _, err := (scs.GobCodec{}).Decode(b); err != nil && gobUnregistered(err) {
		m.scsUnregistered.Do(m.now(), func(suppressed int) {
			m.log.Error("session: scs record holds a type this app has not registered with gob.Register, as the scs app did; left in Redis, its user served as anonymous until it is registered", "error", err, "suppressed", suppressed)
		})
		return nil, false, errSCSUnregistered
	}
	return imp.Records.Take(ctx, key)
}

// gobUnregistered reports whether err, gob's failure to decode, is for
// want of a type registered with gob.Register: gob has no error value for
// it, only this text, the same since Go 1.
func gobUnregistered(err error) bool {
	return strings.Contains(err.Error(), "not registered for interface")
}

// userKeysOf returns the keys of values that look like the user key they
// lack, userKey: the same but for case, or holding "user" in any case;
// sorted, at most 5, each cut at 64 bytes. Only those: an app may make the
// names of other keys from data (oauth_state_<random>), which a log must
// not hold.
func userKeysOf(values map[string]any, userKey string) []string {
	var keys []string
	for _, k := range slices.Sorted(maps.Keys(values)) {
		if strings.EqualFold(k, userKey) || strings.Contains(strings.ToLower(k), "user") {
			keys = append(keys, strings.ToValidUTF8(k[:min(len(k), 64)], "\uFFFD"))
		}
	}
	return keys[:min(len(keys), 5)]
}

// migrate stores the scs session (deadline, values) as a new session of
// m, and makes it the session of the request. The caller is Load, before
// st is shared.
func (m *Manager) migrate(ctx context.Context, st *state, deadline time.Time, values map[string]any, now time.Time) error {
	imp := m.cfg.FromSCS
	var userID string
	if v, ok := values[imp.UserKey]; ok && imp.UserKey != "" {
		m.scsUserSeen.Store(true)
		delete(values, imp.UserKey)
		id, ok := scsUserID(v)
		if err := validUserID(id); !ok || err != nil {
			// The values still come across, as an anonymous session. The
			// reason names no part of the id.
			reason := "not a string or an integer"
			if ok {
				reason = err.Error()
			}
			m.log.Warn("session: scs user id not usable; session migrated as anonymous", "key", imp.UserKey, "type", fmt.Sprintf("%T", v), "reason", reason)
		} else {
			userID = id
		}
	}
	if _, ok := values[imp.UserKey]; !ok && imp.UserKey != "" && len(values) > 0 && !m.scsUserSeen.Load() {
		// A misspelt UserKey would sign every scs user out for good, the
		// scs record gone: say so, with the session's keys that look like
		// one (names, not values), until a session had the key.
		m.scsNoUser.Do(now, func(suppressed int) {
			m.log.Warn("session: scs session migrated as anonymous: it has no value under FromSCS.UserKey, and no scs session had one yet: check UserKey",
				"user_key", imp.UserKey, "keys", len(values), "user_keys", userKeysOf(values, imp.UserKey), "suppressed", suppressed)
		})
	}
	kept := make(map[string]any, len(values)+1)
	for k, v := range values {
		if k == scsRememberMe {
			// scs's own flag of RememberMe: the cookie of the migrated
			// session lasts until its deadline either way.
			continue
		}
		if !validKey(k) {
			m.log.Warn("session: scs value with an invalid key (reserved, or not UTF-8) dropped in migration", "key", k)
			continue
		}
		nv, err := normalize(v)
		if err == nil {
			err = survives(v, nv)
		}
		if err != nil {
			m.log.Warn("session: scs value dropped in migration", "key", k, "error", err)
			continue
		}
		kept[k] = nv
	}
	if userID == "" && len(kept) == 0 {
		return nil // nothing to carry over
	}
	// The token carries the deadline in milliseconds, and its MAC expires
	// one Lifetime after signing.
	deadline = time.UnixMilli(deadline.UnixMilli())
	if limit := m.deadline(now); deadline.After(limit) {
		deadline = limit
	}
	ttl, ok := m.ttl(deadline, m.now()) // from now: the scs read took round trips
	if !ok {
		return nil
	}
	ip, userAgent := st.client()
	md := m.codec.newMeta(userID, now, ip, userAgent)
	kept[metaKey] = md
	record, err := m.codec.Encode(deadline, kept)
	if err != nil {
		return err
	}
	var revoked []string
	var token string
	if userID != "" {
		// A RevokeAll or RevokeOthers of the user during the migration
		// ends the scs sessions not migrated yet: it marks the user, then
		// ends those in the index. Asked before the session is stored, so
		// that it does not take a place under the session limit, and after,
		// since a revocation that marked the user meanwhile may have read
		// the index before the session was in it: one of the two sees the
		// mark, or the revocation ends the session.
		if retired, err := m.scsUserRetired(ctx, userID); err != nil || retired {
			return m.scsRetired(err, userID)
		}
		if token, err = m.newToken(st, m.userTag(userID)); err != nil {
			return err
		}
		revoked, err = m.store.AddUserSession(ctx, NewSession{
			UserID:   userID,
			ID:       idOf(token),
			Record:   record,
			TTL:      ttl,
			Deadline: deadline,
			Limit:    m.cfg.MaxSessionsPerUser,
		})
		if err != nil {
			return storeError(err)
		}
		if retired, err := m.scsUserRetired(ctx, userID); err != nil || retired {
			// The session was never the request's, and its token is
			// known to nobody; one left by a failed removal expires.
			for _, id := range revoked {
				m.emit(EventRevoked, userID, id, now)
			}
			if _, rerr := m.store.RemoveUserSession(ctx, userID, idOf(token)); rerr != nil {
				m.log.Warn("session: a session migrated from scs beside a revocation of its user was not removed; no one holds its token, and it expires", "session", fingerprint(idOf(token)), "error", rerr)
			}
			return m.scsRetired(err, userID)
		}
	} else {
		if token, err = m.insertAnonymous(ctx, st, record, ttl); err != nil {
			return err
		}
	}
	data := st.engineData()
	for k, v := range kept {
		m.engine.Put(data, k, v)
	}
	m.engine.SetDeadline(data, deadline)
	st.stored, st.inserted, st.relogin, st.userID, st.deadline, st.issued = token, true, false, userID, deadline, token
	st.stale = false
	for _, id := range revoked {
		m.emit(EventRevoked, userID, id, now)
	}
	if userID != "" {
		m.emit(EventMigrated, userID, idOf(token), now)
	}
	return nil
}

// scsRetired is what migrate returns for a session of userID that it
// does not migrate because a revocation marked the user, or it could not
// ask (err).
func (m *Manager) scsRetired(err error, userID string) error {
	if err != nil {
		return storeError(err)
	}
	m.log.Info("session: scs session not migrated: its user's sessions were revoked during the migration", "user", userID)
	return nil
}

// survives checks that the scs value v comes back from its form in the
// record, nv (see normalize), for Get of v's type: gob carries state that
// JSON drops, such as that of a type with only a GobEncoder and unexported
// fields, which would otherwise come back as a zero value with ok true.
func survives(v, nv any) error {
	raw, ok := nv.(jsonValue)
	if !ok {
		return nil // a tagged type, kept as itself
	}
	back := reflect.New(reflect.TypeOf(v))
	if err := json.Unmarshal(raw, back.Interface()); err != nil || !sameAfterJSON(reflect.ValueOf(v), back.Elem()) {
		return fmt.Errorf("%w: %T does not come back from JSON unchanged", ErrInvalidValue, v)
	}
	return nil
}

// sameAfterJSON reports whether b, decoded from the JSON of a into a's
// type, holds what a holds, by the rules Get follows: a value in an
// interface, which encoding/json fills with its own types (float64,
// map[string]any), and a value of a type that marshals itself, count as
// the same when they encode to the same JSON; an unexported field, which
// JSON never sets, only when a's is zero; anything else must be equal.
func sameAfterJSON(a, b reflect.Value) bool {
	t := a.Type()
	if t.Kind() == reflect.Interface || t.Implements(jsonMarshaler) || t.Implements(textMarshaler) {
		if !a.CanInterface() || !b.CanInterface() {
			return a.IsZero()
		}
		ja, err1 := json.Marshal(a.Interface())
		jb, err2 := json.Marshal(b.Interface())
		return err1 == nil && err2 == nil && bytes.Equal(ja, jb)
	}
	switch t.Kind() {
	case reflect.Pointer:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil()
		}
		return sameAfterJSON(a.Elem(), b.Elem())
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() && !f.Anonymous {
				if !a.Field(i).IsZero() {
					return false
				}
				continue
			}
			if !sameAfterJSON(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	case reflect.Slice, reflect.Array:
		if a.Len() != b.Len() {
			return false
		}
		for i := range a.Len() {
			if !sameAfterJSON(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	case reflect.Map:
		if a.Len() != b.Len() {
			return false
		}
		for it := a.MapRange(); it.Next(); {
			bv := b.MapIndex(it.Key())
			if !bv.IsValid() || !sameAfterJSON(it.Value(), bv) {
				return false
			}
		}
		return true
	case reflect.Bool:
		return a.Bool() == b.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return a.Int() == b.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return a.Uint() == b.Uint()
	case reflect.Float32, reflect.Float64:
		return a.Float() == b.Float()
	case reflect.String:
		return a.String() == b.String()
	}
	return false // complex numbers, channels, functions: JSON has no form for them
}

var (
	jsonMarshaler = reflect.TypeFor[json.Marshaler]()
	textMarshaler = reflect.TypeFor[encoding.TextMarshaler]()
)

// scsUserID returns the user id held in an scs value: a string, or the
// decimal form of an integer, also of a named type (type UserID int64),
// which an app registers with gob for scs.
func scsUserID(v any) (string, bool) {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.String:
		return rv.String(), true
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(rv.Int(), 10), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return strconv.FormatUint(rv.Uint(), 10), true
	}
	return "", false
}

// expireSCSCookie adds to h a Set-Cookie that makes the browser drop scs's
// cookie.
func (m *Manager) expireSCSCookie(h http.Header) {
	imp := m.cfg.FromSCS
	c := &http.Cookie{
		Name:     imp.CookieName,
		Path:     imp.CookiePath,
		Domain:   imp.CookieDomain,
		Expires:  time.Unix(1, 0),
		MaxAge:   -1,
		HttpOnly: true,
		Secure:   !m.cfg.InsecureCookie || imp.CookiePartitioned,
		SameSite: m.cfg.SameSite,
		// Partitioned requires Secure, which a partitioned cookie had.
		Partitioned: imp.CookiePartitioned,
	}
	h.Add("Set-Cookie", c.String())
	nocache.KeepOut(h)
}
