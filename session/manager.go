package session

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/alexedwards/scs/v2"
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
	cfg    Config
	store  Store
	engine *scs.SessionManager
	signer *signer
	log    *slog.Logger
	now    func() time.Time
}

// New returns a Manager that keeps sessions in store, or an error naming the
// first invalid field of cfg.
func New(store Store, cfg Config) (*Manager, error) {
	if store == nil {
		return nil, errors.New("session: New: nil Store")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	sg, err := newSigner(cfg.Keys, cfg.Lifetime)
	if err != nil {
		return nil, err
	}
	m := &Manager{cfg: cfg, store: store, signer: sg, log: cfg.Logger, now: time.Now}

	// Built as a literal, not with scs.New, which starts a cleanup goroutine
	// for an in-memory store that would be replaced at once (and that cannot
	// be stopped without a data race in scs v2.9.0). The literal's context
	// key is scs's zero key: one Manager per request chain.
	engine := &scs.SessionManager{
		Lifetime: cfg.Lifetime,
		Store:    scsStore{m: m},
		Codec:    codec{},
		// scs's own idle handling rewrites the whole record on every request
		// (a second round trip). The Manager instead extends the idle
		// deadline in the read itself (scsStore.FindCtx), so scs sees none.
		IdleTimeout: 0,
	}
	m.engine = engine
	return m, nil
}

// Load reads the session of r, if any, and returns a context that carries
// it. It never fails: a missing, forged or expired token, and an unreadable
// record, give an anonymous session; a store that cannot be asked gives an
// anonymous session that LoadError reports as ErrStoreUnavailable and that
// is never written back. Tokens that fail verification cost no store command.
func (m *Manager) Load(r *http.Request) context.Context {
	st := &state{m: m, userAgent: r.UserAgent()}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		st.ip = host
	}
	if len(st.userAgent) > maxUserAgent {
		st.userAgent = st.userAgent[:maxUserAgent]
	}
	ctx := context.WithValue(r.Context(), stateKey{}, st)

	signed, fromCookie := m.signedFromRequest(r)
	if signed == "" {
		return m.anonymous(ctx)
	}
	// A cookie that does not lead to a session is cleared, so the browser
	// stops sending it. Errors of the store never clear it.
	token, deadline, err := m.signer.verify(signed)
	if err != nil {
		st.clearCookie = fromCookie
		return m.anonymous(ctx)
	}
	now := m.now()
	if !deadline.After(now) {
		m.emit(EventExpired, "", idOf(token), now)
		st.clearCookie = fromCookie
		return m.anonymous(ctx)
	}
	st.presented, st.deadline = token, deadline

	loaded, err := m.engine.Load(ctx, token)
	switch {
	case errors.Is(err, errBadRecord):
		m.dropUnreadable(ctx, idOf(token), err)
		st.clearCookie = fromCookie
		return m.anonymous(ctx)
	case err != nil:
		m.log.Warn("session: store unavailable, serving the request as anonymous", "error", err)
		st.loadErr = ErrStoreUnavailable
		return m.anonymous(ctx)
	case m.engine.Token(loaded) != token || !m.engine.Deadline(loaded).After(now):
		// Not found (scs handed out a fresh session) or past its deadline:
		// it timed out, or was ended by a request this one raced with.
		md, _ := m.engine.Get(loaded, metaKey).(meta)
		m.emit(EventExpired, md.UserID, idOf(token), now)
		st.clearCookie = fromCookie
		return m.anonymous(ctx)
	}
	md, _ := m.engine.Get(loaded, metaKey).(meta)
	st.stored, st.userID = token, md.UserID
	st.deadline = m.engine.Deadline(loaded)
	// Refresh a stale last-seen time with the response's write.
	st.dirty = md.UserID != "" && m.cfg.LastSeenInterval > 0 && now.Sub(md.LastSeen) >= m.cfg.LastSeenInterval
	return loaded
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

// anonymous returns ctx with a new, empty scs session. Loading the empty
// token costs no store command.
func (m *Manager) anonymous(ctx context.Context) context.Context {
	ctx, _ = m.engine.Load(ctx, "")
	return ctx
}

// Commit writes the changes a request made to its session and sets the
// cookie headers on h that tell the browser about them. Call it once, before
// the response header is written; middleware.Sessions does. An unchanged
// session costs no store command and no Set-Cookie. It returns an error
// matching ErrStoreUnavailable when the changes could not be saved.
func (m *Manager) Commit(ctx context.Context, h http.Header) error {
	st := stateFrom(ctx)
	if st == nil {
		return nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.loadErr != nil {
		// The session could not be read, so it must not be overwritten, and
		// the cookie is left alone: the user is still logged in once the
		// store is back.
		return nil
	}
	if st.dirty {
		if err := m.save(ctx, st); errors.Is(err, errGone) {
			m.log.Info("session: ended during the request; changes dropped", "session", fingerprint(idOf(m.engine.Token(ctx))))
			st.issued, st.clearCookie = "", true
		} else if err != nil {
			return err
		}
	}
	switch {
	case st.issued != "":
		signed, err := m.signer.sign(st.issued, st.deadline)
		if err != nil {
			return err
		}
		m.setCookie(h, signed, st.deadline)
	case st.clearCookie:
		m.setCookie(h, "", time.Time{})
		if st.destroyed {
			h.Set("Clear-Site-Data", `"cookies"`)
			h.Set("Cache-Control", "no-store")
		}
	}
	return nil
}

// save writes the session's record: the request's changes merged into the
// stored record, or a new record under a new token. The caller holds st.mu.
func (m *Manager) save(ctx context.Context, st *state) error {
	now := m.now()
	if st.stored != "" && m.engine.Token(ctx) == st.stored {
		if st.inserted {
			return m.rewrite(ctx, st, now)
		}
		return m.merge(ctx, st, now)
	}
	md, _ := m.engine.Get(ctx, metaKey).(meta)
	if md.CreatedAt.IsZero() {
		md.CreatedAt, md.IP, md.UserAgent = now, st.ip, st.userAgent
	}
	md.LastSeen = now
	m.engine.Put(ctx, metaKey, md)
	token, deadline, err := m.engine.Commit(ctx)
	if err != nil {
		return err
	}
	if token != st.presented {
		st.issued = token
	}
	st.deadline, st.dirty, st.changes = deadline, false, nil
	return nil
}

// rewrite writes the whole session over the record this request created
// (Create, then Put): no other request has its token yet, so there is
// nothing to merge with, and SET XX still leaves a record revoked meanwhile
// revoked. The caller holds st.mu.
func (m *Manager) rewrite(ctx context.Context, st *state, now time.Time) error {
	ttl, ok := m.ttl(st.deadline, now)
	if !ok {
		return errGone
	}
	md, _ := m.engine.Get(ctx, metaKey).(meta)
	md.LastSeen = now
	m.engine.Put(ctx, metaKey, md)
	values := make(map[string]any)
	for _, k := range m.engine.Keys(ctx) {
		values[k] = m.engine.Get(ctx, k)
	}
	b, err := m.engine.Codec.Encode(m.engine.Deadline(ctx), values)
	if err != nil {
		return err
	}
	written, err := m.store.Update(ctx, idOf(st.stored), b, ttl)
	switch {
	case err != nil:
		return unavailable(err)
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
// wins. The caller holds st.mu.
func (m *Manager) merge(ctx context.Context, st *state, now time.Time) error {
	ttl, ok := m.ttl(st.deadline, now)
	if !ok {
		return errGone
	}
	id := idOf(st.stored)
	written, err := m.store.Merge(ctx, id, ttl, func(current []byte) ([]byte, error) {
		deadline, values, err := codec{}.Decode(current)
		if err != nil {
			return nil, err
		}
		for k, v := range st.changes {
			if _, removed := v.(removal); removed {
				delete(values, k)
			} else {
				values[k] = v
			}
		}
		md, _ := values[metaKey].(meta)
		md.LastSeen = now
		values[metaKey] = md
		return codec{}.Encode(deadline, values)
	})
	switch {
	case errors.Is(err, errBadRecord):
		m.dropUnreadable(ctx, id, err)
		return errGone
	case err != nil:
		return unavailable(err)
	case !written:
		return errGone
	}
	st.dirty, st.changes = false, nil
	return nil
}

// setCookie adds the session cookie to h: value until deadline, or, with a
// zero deadline, an expired cookie that makes the browser drop it.
func (m *Manager) setCookie(h http.Header, value string, deadline time.Time) {
	c := &http.Cookie{
		Name:     m.cfg.CookieName,
		Value:    value,
		Path:     "/",
		HttpOnly: true,
		Secure:   !m.cfg.InsecureCookie,
		SameSite: m.cfg.SameSite,
	}
	if deadline.IsZero() {
		c.Expires, c.MaxAge = time.Unix(1, 0), -1
	} else {
		c.Expires = deadline
		c.MaxAge = max(int(deadline.Sub(m.now())/time.Second), 1)
	}
	h.Add("Set-Cookie", c.String())
	h.Add("Cache-Control", `no-cache="Set-Cookie"`)
}
