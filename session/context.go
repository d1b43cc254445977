package session

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"
)

// stateKey is the context key of a request's state.
type stateKey struct{}

// state is what a Manager knows about one request's session, beside the
// values that scs keeps. Its lock serialises the helpers of one request.
type state struct {
	m *Manager

	mu          sync.Mutex
	ip          string         // client address, recorded when a session is created
	userAgent   string         // client user agent, likewise
	presented   string         // verified token the request carried, found or not
	stored      string         // token whose record exists in the store, as far as this request knows
	inserted    bool           // this request created stored's record: nobody else has its token yet
	deadline    time.Time      // absolute deadline of the current token
	loadErr     error          // ErrStoreUnavailable when the session could not be read
	dirty       bool           // the record must be written: values changed, or last seen is stale
	changes     map[string]any // values put (normalized) or removed (removal) since the last write
	issued      string         // new token the response must set in the cookie
	clearCookie bool           // the response must expire the cookie
	destroyed   bool           // Destroy ended the session in this request

	// For the store adapter (scsStore), which scs calls while this lock is
	// held by the caller.
	userID   string // user of the current session, "" for anonymous
	limit    int    // session limit to apply when the next new token is inserted
	renewing bool   // scs is renewing the token: defer the old record's deletion
	replaced string // id of the record the next insert must delete
}

func stateFrom(ctx context.Context) *state {
	st, _ := ctx.Value(stateKey{}).(*state)
	return st
}

// Info describes a session.
type Info struct {
	// ID identifies the session: the SHA-256 of its token, base64url. It is
	// not a credential and may be shown to its user, but logs should carry a
	// prefix of it at most.
	ID        string
	UserID    string
	CreatedAt time.Time
	// ExpiresAt is the absolute deadline. The idle timeout may end the
	// session earlier.
	ExpiresAt time.Time
	// LastSeen is when the session was last written; see
	// Config.LastSeenInterval for how stale it may be.
	LastSeen  time.Time
	IP        string
	UserAgent string
	// Current is true for the session of the request that asked.
	Current bool
}

// Create logs a user in: it issues a new token for userID and deletes the
// record of the token the request came with, whoever it belonged to, so a
// token planted before login is worthless after it (session fixation). Values
// of an anonymous session carry over; those of a logged-in one do not. The
// new record is in the store when Create returns; the response sets the
// cookie, and Token returns the value for an Authorization header.
func Create(ctx context.Context, userID string) (Info, error) {
	st := stateFrom(ctx)
	if st == nil {
		return Info{}, ErrNoSession
	}
	if userID == "" {
		return Info{}, errors.New("session: Create: empty user id")
	}
	m := st.m
	st.mu.Lock()
	defer st.mu.Unlock()

	if md, _ := m.engine.Get(ctx, metaKey).(meta); md.UserID != "" {
		_ = m.engine.Clear(ctx) // never fails
	}
	// The old record is deleted in the round trip that inserts the new
	// one: scs's RenewToken hands it to the adapter, which defers it, and a
	// token that could not be loaded because the store was down is named
	// here.
	st.replaced = ""
	if st.loadErr != nil && st.presented != "" {
		st.replaced = idOf(st.presented)
	}
	st.userID, st.limit = userID, m.cfg.MaxSessionsPerUser
	defer func() { st.limit = 0 }()
	if err := m.renewToken(ctx, st); err != nil {
		return Info{}, err
	}
	st.loadErr = nil
	now := m.now()
	m.engine.Put(ctx, metaKey, meta{UserID: userID, CreatedAt: now, IP: st.ip, UserAgent: st.userAgent})
	if err := m.save(ctx, st); err != nil {
		return Info{}, err
	}
	info := m.info(ctx, st)
	m.emit(EventCreated, userID, info.ID, now)
	return info, nil
}

// renewToken has scs replace the session's token, with the deletion of the
// old record deferred to the insert of the new one. The caller holds st.mu.
func (m *Manager) renewToken(ctx context.Context, st *state) error {
	st.renewing = true
	err := m.engine.RenewToken(ctx)
	st.renewing = false
	st.stored, st.inserted = "", false
	return err
}

// Renew issues a new token for the session and deletes the old token's
// record, keeping the user, the values and the absolute deadline. Call it
// when the session's privileges change (a role granted, a password
// re-entered), so that a token seen before the change is worthless after it.
// The new record is in the store when Renew returns; the response sets the
// cookie, and Token returns the new value for an Authorization header. It
// returns ErrNoSession when the session has no record to renew.
func Renew(ctx context.Context) error {
	st := stateFrom(ctx)
	if st == nil {
		return ErrNoSession
	}
	m := st.m
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.loadErr != nil {
		return st.loadErr
	}
	if st.stored == "" {
		return ErrNoSession
	}
	deadline := m.engine.Deadline(ctx)
	if err := m.renewToken(ctx, st); err != nil {
		return err
	}
	m.engine.SetDeadline(ctx, deadline) // RenewToken restarts the lifetime; a renewal must not
	if err := m.save(ctx, st); err != nil {
		return err
	}
	m.emit(EventRenewed, st.userID, idOf(st.stored), m.now())
	return nil
}

// Destroy logs the user out: the session's record is deleted from the store
// before Destroy returns, and the response expires the cookie and, unless the
// request starts a new session afterwards, carries Clear-Site-Data: "cookies"
// and Cache-Control: no-store, so the browser drops its cookies for the site
// and keeps no copy of pages that showed the user's data. Destroying an
// anonymous session only expires the cookie.
func Destroy(ctx context.Context) error {
	st := stateFrom(ctx)
	if st == nil {
		return ErrNoSession
	}
	m := st.m
	st.mu.Lock()
	defer st.mu.Unlock()

	// When the store was down at load time, scs has no token to delete;
	// delete the presented one, so logout during a hiccup still ends it.
	if st.loadErr != nil && st.presented != "" {
		if err := m.store.Remove(ctx, idOf(st.presented)); err != nil {
			return unavailable(err)
		}
	}
	id := idOf(m.engine.Token(ctx))
	if err := m.engine.Destroy(ctx); err != nil {
		return err
	}
	if st.stored != "" {
		m.emit(EventDestroyed, st.userID, id, m.now())
	}
	st.ended()
	return nil
}

// ended records that the request's session is gone: nothing to save, and
// the response expires the cookie and clears site data. The caller holds
// st.mu.
func (st *state) ended() {
	st.stored, st.inserted, st.issued, st.dirty, st.changes, st.loadErr, st.userID = "", false, "", false, nil, nil, ""
	st.clearCookie, st.destroyed = true, true
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
	info = st.m.info(ctx, st)
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
	md, _ := st.m.engine.Get(ctx, metaKey).(meta)
	return md.UserID, md.UserID != ""
}

// Token returns the signed token of the session, the value of its cookie,
// for API clients to send as "Authorization: Bearer <token>". ok is false
// while the session has no record in the store. Treat the token as a
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
	signed, err := st.m.signer.sign(st.stored, st.deadline)
	return signed, err == nil
}

// LoadError reports why the session of ctx could not be read: nil, or an
// error matching ErrStoreUnavailable. A request with a load error is served
// as anonymous; RequireAuth answers it with 503, not 401.
func LoadError(ctx context.Context) error {
	st := stateFrom(ctx)
	if st == nil {
		return ErrNoSession
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.loadErr
}

// Put sets the value of key in the session; the response saves it. Values
// of type string, bool, int, int64, float64, []byte and time.Time come back
// as the same type; any other value is stored as JSON and decoded into the
// type Get asks for. Keys must not be empty or start with "__".
func Put(ctx context.Context, key string, value any) error {
	st, err := writable(ctx, key)
	if err != nil {
		return err
	}
	v, err := normalize(value)
	if err != nil {
		return err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.m.engine.Put(ctx, key, v)
	st.change(key, v)
	return nil
}

// Get returns the value of key as a T. ok is false when there is no such
// value or it does not fit T.
func Get[T any](ctx context.Context, key string) (value T, ok bool) {
	st := stateFrom(ctx)
	if st == nil || !validKey(key) {
		return value, false
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return as[T](st.m.engine.Get(ctx, key))
}

// Pop returns the value of key as a T, like Get, and removes it from the
// session.
func Pop[T any](ctx context.Context, key string) (value T, ok bool) {
	st := stateFrom(ctx)
	if st == nil || !validKey(key) {
		return value, false
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.loadErr != nil || !st.m.engine.Exists(ctx, key) {
		return value, false
	}
	st.change(key, removal{})
	return as[T](st.m.engine.Pop(ctx, key))
}

// Remove deletes key from the session; the response saves the change.
func Remove(ctx context.Context, key string) error {
	st, err := writable(ctx, key)
	if err != nil {
		return err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.m.engine.Exists(ctx, key) {
		st.m.engine.Remove(ctx, key)
		st.change(key, removal{})
	}
	return nil
}

// removal marks a value removed in state.changes.
type removal struct{}

// change records that key was set to v (or removed) in this request. The
// caller holds st.mu.
func (st *state) change(key string, v any) {
	if st.changes == nil {
		st.changes = make(map[string]any)
	}
	st.changes[key] = v
	st.dirty = true
}

// writable returns the state of ctx if key may be changed in it.
func writable(ctx context.Context, key string) (*state, error) {
	st := stateFrom(ctx)
	switch {
	case st == nil:
		return nil, ErrNoSession
	case !validKey(key):
		return nil, ErrReservedKey
	}
	if err := LoadError(ctx); err != nil {
		return nil, err
	}
	return st, nil
}

// as converts a value held in a session to a T.
func as[T any](v any) (T, bool) {
	var t T
	if raw, ok := v.(jsonValue); ok {
		err := json.Unmarshal(raw, &t)
		return t, err == nil
	}
	t, ok := v.(T)
	return t, ok
}

// info describes the session of ctx. The caller holds st.mu.
func (m *Manager) info(ctx context.Context, st *state) Info {
	if st.stored == "" {
		return Info{}
	}
	md, _ := m.engine.Get(ctx, metaKey).(meta)
	return Info{
		ID:        idOf(st.stored),
		UserID:    md.UserID,
		CreatedAt: md.CreatedAt,
		ExpiresAt: m.engine.Deadline(ctx),
		LastSeen:  md.LastSeen,
		IP:        md.IP,
		UserAgent: md.UserAgent,
		Current:   true,
	}
}
