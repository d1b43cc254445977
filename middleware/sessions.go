package middleware

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/sessionkit/sessionkit/internal/nocache"
	"github.com/sessionkit/sessionkit/session"
)

// Sessions returns middleware that loads the session of each request with m
// and commits it before the response header is written. It does not refuse
// cross-site requests: wrap it in http.NewCrossOriginProtection, or
// another site's page could log its visitors out, or in as someone else
// (README, "Usage"). Changed values are
// saved, a new token is set in the cookie, a destroyed session's cookie is
// expired. A request whose session was not changed costs the one store
// command that read it, and no Set-Cookie. Every response names Cookie and
// Authorization in Vary, the headers a session comes from, once each, as
// each header the handler names there (or Vary stays "*"), and one that
// sets or expires the session cookie is
// Cache-Control: private as well (no-store, stricter, for a logout and a
// login after one: see session.Destroy), so that no shared cache serves one user's
// answer for another's request: not even one of a new session, whose
// request had no cookie to vary by. A destroyed session's cookie is
// expired only when the request carried it (see session.Destroy).
//
// The commit happens before the first Write, WriteHeader or Flush, whichever
// comes first, so a streaming handler (server-sent events, progress pages)
// that flushes with http.NewResponseController(w).Flush() or
// w.(http.Flusher) still sends its cookie. A Hijack (a WebSocket upgrade)
// commits too; when that commit set a cookie (a login, a renewal or a
// logout in the same request), which a hijacked connection could never
// carry, the Hijack fails instead, and the handler answers normally. From
// then on the session cannot change: session.Put, Create, Renew and the
// like return session.ErrResponseStarted.
//
// Sessions must wrap http.TimeoutHandler, not the other way round: inside
// it, a handler that times out after a login or a renewal has its
// response, and with it the new cookie, thrown away by TimeoutHandler,
// while the old token is already dead in the store, which logs the user
// out. Outside it, the timeout's 503 goes through Sessions and carries the
// cookie. Inside it, the first write of a body that TimeoutHandler refuses
// (http.ErrHandlerTimeout) logs the mistake, once for each Sessions
// (slog.Default, level Error). Any deadline on the request's context
// when it reaches Sessions, as TimeoutHandler's or chi's Timeout middleware
// sets, is logged too, once for each Sessions, at its first request (level
// Warn).
//
// The commit saves what the handler put whatever the status of the answer:
// an error the handler writes itself, and TimeoutHandler's 503 once its
// handler ran out of time, save the values put before it (a later Put
// returns session.ErrResponseStarted). A handler whose values must not
// outlive a failure removes them before it answers.
//
// A handler that panics before its response started saves none of the
// values it put (after, they were saved with the commit), but its response
// (the 500 of a recovering middleware around Sessions) still carries the
// cookie of a login, a renewal or a logout it made before: those took
// effect in the store at once. That holds when the recovering middleware
// wraps Sessions (the outermost, where the same Manager's Sessions runs
// twice): one between Sessions and the handler turns the panic into an
// ordinary answer, which saves what the handler put.
//
// When the store is unavailable, the request goes on as anonymous (see
// session.LoadError) and nothing is written back. When changes cannot be
// saved, the client gets 503 with Retry-After instead of the handler's
// response, which the middleware discards, with the headers the handler set
// that describe or act on it: Location, Refresh, Set-Cookie, Link, ETag,
// Last-Modified, Trailer, Content-Disposition, -Encoding, -Language,
// -Location and -Range, nginx's X-Accel-Redirect and X-Accel-Expires,
// X-Sendfile, the CDN caching headers (Surrogate-Control, Edge-Control,
// CDN-Cache-Control and Cloudflare's, Vercel's and Netlify's
// CDN-Cache-Control) and htmx's HX-* response
// headers: a handler never reports success for a write that was lost.
// Those headers keep the values they had when the request reached
// Sessions: what a middleware around it set (a compressing middleware's
// Content-Encoding, which its writer applies to the 503 too, or its own
// cookie) stays. The handler's other headers go out with the 503: its own
// (an X-Result: saved), other frameworks' (Unpoly's X-Up-*, Inertia's
// X-Inertia-Location), which a client must look at the status before it
// acts on, and Clear-Site-Data, which browsers act on whatever the status. The 503 still carries the session cookie of a login, a renewal or a
// logout the handler made before (see session.Manager.Commit): those took
// effect in the store at once, and without the new cookie the browser would
// be left with a token that leads nowhere. The body says "session store
// unavailable", or "session busy with concurrent changes" when other
// requests kept changing the session, or a slow store made them wait, or a
// login on the same browser took the anonymous session the change was for
// (session.ErrContention). A change that would take the session's record over
// session.Config.MaxRecordBytes, which values that concurrent requests put
// can do together (Put refuses what a request puts alone), is not saved
// either: the client gets 500 {"error":"session too large"}, without
// Retry-After, in place of the handler's response, as for the 503.
func Sessions(m *session.Manager) func(http.Handler) http.Handler {
	if m == nil {
		panic("middleware: Sessions: nil Manager")
	}
	return func(next http.Handler) http.Handler {
		var insideTimeout sync.Once // logs a TimeoutHandler around Sessions once
		var underDeadline sync.Once // logs a deadline set around Sessions once
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			parent, _ := r.Context().Value(committing{}).(*sessionWriter)
			if within(w, m) || parent.runs(m) {
				// m's Sessions runs around this one already (a router's
				// global middleware and a route group's): the request
				// has its session, which that one commits. The context
				// tells so behind a writer that within cannot see through
				// (one without Unwrap, as http.TimeoutHandler's, or a
				// recorder a handler renders a page into), where a commit
				// here would send the cookie into that writer, not to the
				// client. Vary goes on all the same, for a request whose
				// context outlived the Sessions that set it (reused after
				// its response): nothing else would add it.
				varyOnSession(w.Header())
				next.ServeHTTP(w, r)
				return
			}
			if _, ok := r.Context().Deadline(); ok {
				// Not above: where m's Sessions runs around this one, that
				// one commits, outside the deadline.
				underDeadline.Do(logUnderDeadline)
			}
			// Before the handler, so that a response written around it (a
			// recovered panic's 500) has it too; the commit puts back
			// what a handler's Header().Set("Vary", ...) dropped.
			h := w.Header()
			varyOnSession(h)
			sw := &sessionWriter{ResponseWriter: w, m: m, insideTimeout: &insideTimeout}
			if parent != nil && !parent.committed.Load() {
				// Not the writer of a request whose context outlived it.
				sw.nest.Store(&nesting{parent: parent})
			}
			r = r.WithContext(context.WithValue(m.Load(r), committing{}, sw))
			sw.r = r
			if len(h) > 1 { // more than Vary: the rare case
				sw.noteOuterHeaders(h)
			}
			defer sw.abandon()
			next.ServeHTTP(sw, r)
			sw.commit()
		})
	}
}

// committing is the key of the context value that holds the writer of the
// innermost Sessions of a request, which the Sessions inside it find: that
// of the same Manager, to leave the commit to it (see runs), or of another,
// to tell it the cookies its commit set (see nesting).
type committing struct{}

// runs reports whether w, or a writer of a Sessions around it, is m's; false
// for a nil w.
func (w *sessionWriter) runs(m *session.Manager) bool {
	for ; w != nil; w = w.parent() {
		if w.m == m {
			return true
		}
	}
	return false
}

// sessionWriter commits the session before the first WriteHeader, Write or
// Flush reaches the client.
//
// Its handler's goroutine alone uses it, but for committed and nest: the
// Sessions of another Manager inside it read and change those, and may run
// in other goroutines (a TimeoutHandler's, or a batch endpoint serving
// sub-requests in parallel on the request's context).
type sessionWriter struct {
	http.ResponseWriter
	m         *session.Manager
	r         *http.Request
	committed atomic.Bool
	// cookieAhead is set when Hijack refused to hand over the connection
	// because the commit set a cookie: the handler's answer, whose
	// headers it may still change, carries that cookie (see commit).
	cookieAhead bool
	err         error // why the commit failed; a 503 replaced the response
	// insideTimeout logs, once for the Sessions that made the writer, a
	// write that http.TimeoutHandler refused: see wrote.
	insideTimeout *sync.Once
	// outer holds the discardedHeaders' values as the request reached
	// Sessions, set by middleware around it, in the same order; nil when
	// it had none of them.
	outer *[len(discardedHeaders)][]string
	// nest links the writers of nested Sessions of different Managers (a
	// site's around its /admin/); nil for a writer with none around it or
	// inside it, the common case, so that every request's writer stays
	// small. Set as the writer is made when it has a parent, else by the
	// first commit of a Sessions inside it.
	nest atomic.Pointer[nesting]
}

// nesting is what a sessionWriter knows of the Sessions around and inside
// it. The commit of the one around (parent) comes after this one's, and
// takes the cookies this one set for the handler's; this one tells it
// which they are (its kept), so that its 503 keeps them: a login, a
// renewal or a logout of the inner Manager took effect in its store all
// the same.
type nesting struct {
	parent *sessionWriter // never changes
	mu     sync.Mutex     // guards kept: the Sessions inside may commit in parallel
	kept   []string       // the cookies of the Sessions inside
}

// parent returns the writer of the Sessions around w's, or nil.
func (w *sessionWriter) parent() *sessionWriter {
	if n := w.nest.Load(); n != nil {
		return n.parent
	}
	return nil
}

// kept returns a copy of the cookies that the commits of Sessions inside
// w's set.
func (w *sessionWriter) kept() []string {
	n := w.nest.Load()
	if n == nil {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.kept)
}

// keep adds cookies to those that the commits of Sessions inside w's set.
func (w *sessionWriter) keep(cookies []string) {
	n := w.nest.Load()
	if n == nil {
		w.nest.CompareAndSwap(nil, new(nesting))
		n = w.nest.Load() // this one's, or a parallel commit's
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.kept = append(n.kept, cookies...)
}

// noteOuterHeaders keeps in w.outer the values of discardedHeaders in h,
// which a middleware around Sessions set and a failed commit must leave.
// Only the slices are kept, not copies: Header's Set and Del replace or
// drop a slice, and Add appends past its length, so what the handler
// does through them leaves the values they hold as they were.
// It looks up the few headers h holds among discardedHeaders, rather
// than each of those in h: the response's header as Sessions is entered
// holds far fewer, none at all without middleware around Sessions.
func (w *sessionWriter) noteOuterHeaders(h http.Header) {
	for k, v := range h {
		if i, ok := discardedIndex[k]; ok {
			if w.outer == nil {
				w.outer = new([len(discardedHeaders)][]string)
			}
			w.outer[i] = v
		}
	}
}

// commit commits the session once, and answers 503 if that fails. It reports
// whether the handler's response may go on.
func (w *sessionWriter) commit() bool {
	if !w.committed.Load() {
		w.committed.Store(true)
		h := w.Header()
		varyOnSession(h)
		handlerCookies := len(h["Set-Cookie"])
		err := w.m.Commit(w.r.Context(), h)
		kept := w.kept()
		if p := w.parent(); p != nil {
			p.keep(append(kept, h["Set-Cookie"][handlerCookies:]...))
		}
		if err != nil {
			dropResponseHeaders(h, w.outer, handlerCookies, kept)
			w.err = err
			var werr error
			switch {
			case errors.Is(err, session.ErrContention):
				werr = retryLater(w.ResponseWriter, "session busy with concurrent changes")
			case errors.Is(err, session.ErrInvalidValue):
				// Over session.Config.MaxRecordBytes, or a value the
				// record cannot take: no retry mends it.
				werr = writeJSONError(w.ResponseWriter, http.StatusInternalServerError, "session too large")
			default:
				werr = unavailable(w.ResponseWriter)
			}
			// A TimeoutHandler around Sessions whose timeout fired
			// cancels the request's context, which fails a commit with
			// changes to save: the timeout's answer shows here.
			w.wrote(werr)
		}
	} else {
		w.answerAhead()
	}
	return w.err == nil
}

// answerAhead runs as the handler's answer starts after a Hijack that the
// commit's cookie refused (see cookieAhead): the handler may have set
// headers by which a cache keeps its answer since, or a Vary without the
// session's headers, so it keeps that answer out of shared caches and
// varying on the session again, as the commit did.
func (w *sessionWriter) answerAhead() {
	if w.cookieAhead {
		w.cookieAhead = false
		nocache.KeepOut(w.Header())
		varyOnSession(w.Header())
	}
}

// abandon runs as the handler returns or panics. After a panic, unless the
// response had started, it sets the cookie headers of what the request
// already did in the store (a login, a renewal, a logout) on the header map
// that a recovering middleware around this one answers with, but saves no
// value the handler put (see session.Manager.Abandon): without it, a panic
// after a login or a renewal left the browser with a token that led
// nowhere.
func (w *sessionWriter) abandon() {
	if !w.committed.Load() {
		w.committed.Store(true)
		varyOnSession(w.Header())
		w.m.Abandon(w.r.Context(), w.Header())
	} else {
		w.answerAhead() // the 500 of a middleware that recovers the panic
	}
}

// varyOnSession adds Cookie and Authorization to h's Vary, those of them
// it does not name yet: the session comes from the cookie or, for an API
// client, the Authorization header, so a cache must not hand one user's
// answer to a request that differs in either. Sessions adds them before
// the handler and runs this at the commit, so that a handler that set Vary
// itself (Header().Set) does not drop them.
func varyOnSession(h http.Header) {
	vary := h["Vary"]
	switch {
	case len(vary) == 0:
		h["Vary"] = []string{"Cookie", "Authorization"} // the keys are canonical
		return
	case len(vary) == 2 && vary[0] == "Cookie" && vary[1] == "Authorization":
		return // as Sessions set it before the handler
	case !tidyVary(vary):
		// The handler added to what Sessions set (Header().Add): a
		// header named again, or "*" beside others. Name each once, in
		// the order first named, or "*" alone.
		var names []string
		for f := range varyNames(vary) {
			if f == "*" {
				h["Vary"] = []string{"*"}
				return
			}
			if !varies(names, f) {
				names = append(names, f)
			}
		}
		vary = names
	}
	for _, name := range []string{"Cookie", "Authorization"} {
		if !varies(vary, name) {
			vary = append(vary, name)
		}
	}
	h["Vary"] = vary
}

// tidyVary reports whether the Vary header values in vary name each
// header once, whatever its case, and "*" only alone: then varyOnSession
// only adds to them.
func tidyVary(vary []string) bool {
	i := 0
	for f := range varyNames(vary) {
		j := 0
		for g := range varyNames(vary) {
			if j == i {
				break
			}
			if f == "*" || g == "*" || strings.EqualFold(f, g) {
				return false
			}
			j++
		}
		i++
	}
	return true
}

// varyNames yields the names in the Vary header values vary.
func varyNames(vary []string) iter.Seq[string] {
	return func(yield func(string) bool) {
		for _, v := range vary {
			for f := range strings.SplitSeq(v, ",") {
				if f = strings.TrimSpace(f); f != "" && !yield(f) {
					return
				}
			}
		}
	}
}

// varies reports whether the Vary header values vary name name, or "*".
func varies(vary []string, name string) bool {
	for f := range varyNames(vary) {
		if f == "*" || strings.EqualFold(f, name) {
			return true
		}
	}
	return false
}

// discardedHeaders are the headers a handler may have set that describe or
// act on its own response: when the middleware answers 503 instead, they
// would misdescribe the 503 (a gzip Content-Encoding on a plain JSON body)
// or do what the discarded response was to do (a cookie, a redirect, a
// file that a proxy in front serves in its place: nginx's X-Accel-Redirect,
// Apache's and lighttpd's X-Sendfile; caching it for the time a proxy's or
// CDN's own header says, which overrides Cache-Control there; htmx's
// response headers, which htmx acts on before it looks at the status: an
// HX-Redirect to a "saved" page would follow a 503 that says the change
// was lost). The keys are canonical (textproto.CanonicalMIMEHeaderKey:
// "Etag", not "ETag"; "Hx-Redirect", not "HX-Redirect"), as Header.Set
// stores them.
var discardedHeaders = [...]string{
	"Content-Disposition", "Content-Encoding", "Content-Language", "Content-Location",
	"Content-Range", "Etag", "Last-Modified", "Link", "Location", "Refresh", "Set-Cookie", "Trailer",
	"X-Accel-Redirect", "X-Sendfile", "X-Accel-Expires", "Surrogate-Control", "Edge-Control",
	"Cdn-Cache-Control", "Cloudflare-Cdn-Cache-Control", "Vercel-Cdn-Cache-Control", "Netlify-Cdn-Cache-Control",
	"Hx-Location", "Hx-Push-Url", "Hx-Redirect", "Hx-Refresh", "Hx-Replace-Url", "Hx-Reselect", "Hx-Reswap", "Hx-Retarget",
	"Hx-Trigger", "Hx-Trigger-After-Settle", "Hx-Trigger-After-Swap",
}

// discardedIndex gives the position of each of discardedHeaders.
var discardedIndex = func() map[string]int {
	m := make(map[string]int, len(discardedHeaders))
	for i, k := range discardedHeaders {
		m[k] = i
	}
	return m
}()

// dropResponseHeaders undoes what the handler did to discardedHeaders in h:
// each gets back its value in outer (nil for none), what middleware around
// Sessions set, or is deleted when it had none. Set-Cookie also keeps its values after
// the first handlerCookies, those the session's commit added: the cookie
// of a login, a renewal or a logout, which happened in the store whatever
// became of the response; and, of the first, those in kept, which the
// commits of nested Sessions of other Managers set (see nesting). A
// response with such a cookie gets none of the headers by which a CDN
// caches it whatever Cache-Control says back: the commit deleted them (see
// session.Manager.Commit).
func dropResponseHeaders(h http.Header, outer *[len(discardedHeaders)][]string, handlerCookies int, kept []string) {
	var sessionCookies []string
	for _, c := range h["Set-Cookie"][:handlerCookies] {
		if slices.Contains(kept, c) {
			sessionCookies = append(sessionCookies, c)
		}
	}
	sessionCookies = append(sessionCookies, h["Set-Cookie"][handlerCookies:]...)
	for k := range h {
		// Set under a key that is not canonical (h["CDN-Cache-Control"]),
		// which net/http writes as it is.
		if c := http.CanonicalHeaderKey(k); c != k && slices.Contains(discardedHeaders[:], c) {
			delete(h, k)
		}
	}
	for i, k := range discardedHeaders {
		if outer != nil && outer[i] != nil && !(len(sessionCookies) > 0 && nocache.CDNHeader(k)) {
			h[k] = outer[i]
		} else {
			delete(h, k)
		}
	}
	if len(sessionCookies) > 0 {
		// A new slice: the handler's Add and the commit may have
		// appended to the array of outer's cookies, which stays theirs.
		h["Set-Cookie"] = append(slices.Clone(h["Set-Cookie"]), sessionCookies...)
	}
}

// WriteHeader implements http.ResponseWriter.
func (w *sessionWriter) WriteHeader(code int) {
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		w.ResponseWriter.WriteHeader(code) // informational: the real header comes later
		return
	}
	if w.commit() {
		w.ResponseWriter.WriteHeader(code)
	}
}

// Write implements http.ResponseWriter.
func (w *sessionWriter) Write(b []byte) (int, error) {
	if !w.commit() {
		return 0, w.err
	}
	n, err := w.ResponseWriter.Write(b)
	w.wrote(err)
	return n, err
}

// WriteString implements io.StringWriter, as net/http's own writer does,
// so that io.WriteString reaches the wrapped writer without copying s
// into a byte slice.
func (w *sessionWriter) WriteString(s string) (int, error) {
	if !w.commit() {
		return 0, w.err
	}
	n, err := io.WriteString(w.ResponseWriter, s)
	w.wrote(err)
	return n, err
}

// wrote checks the error of a write to the wrapped writer: only the writer
// of an http.TimeoutHandler around Sessions answers
// http.ErrHandlerTimeout, once its timeout has sent the 503 without the
// headers Sessions set, a login's or a renewal's cookie among them.
func (w *sessionWriter) wrote(err error) {
	if errors.Is(err, http.ErrHandlerTimeout) {
		w.insideTimeout.Do(func() {
			slog.Error("middleware: Sessions runs inside http.TimeoutHandler, whose timeout answers without the session's cookie (a login or a renewal in that request logs the user out): wrap TimeoutHandler with Sessions instead")
		})
	}
}

// logUnderDeadline logs that a request reached Sessions with a deadline on
// its context, which net/http never sets: a middleware around Sessions
// did (http.TimeoutHandler, chi's Timeout). Logged before any request runs
// out of time, so that the mistake shows in testing, not only once a slow
// request has lost its changes, or its login's cookie, in production.
func logUnderDeadline() {
	slog.Warn("middleware: Sessions runs under a deadline on the request's context, set by a middleware around it (http.TimeoutHandler, chi's Timeout): a handler that runs past it has its session changes refused with 503, and under http.TimeoutHandler a login's or a renewal's cookie thrown away, which logs the user out; put Sessions outside any middleware that sets a deadline")
}

// ReadFrom implements io.ReaderFrom, as net/http's own writer does, so that
// io.Copy into the response (http.ServeContent, http.FileServer) still
// reaches the server's sendfile: it commits the session first.
func (w *sessionWriter) ReadFrom(src io.Reader) (int64, error) {
	if !w.commit() {
		return 0, w.err
	}
	// io.Copy goes through src's WriteTo or the wrapped writer's
	// ReadFrom (an *os.File's WriteTo hands on to the latter), never
	// through this method again.
	n, err := io.Copy(w.ResponseWriter, src)
	w.wrote(err)
	return n, err
}

// Flush implements http.Flusher: it commits the session, then flushes the
// response (the 503 if the commit failed).
func (w *sessionWriter) Flush() {
	w.FlushError()
}

// FlushError is Flush for http.ResponseController, which prefers it: it
// also reports why the commit failed, or why the underlying writer could
// not flush. When no writer it wraps can flush (a middleware's writer
// that neither flushes nor unwraps), it returns an error matching
// http.ErrNotSupported without committing, as Hijack does: nothing is
// sent, so the handler may still change the session, and the headers it
// sets still meet the commit's.
func (w *sessionWriter) FlushError() error {
	if !canFlush(w.ResponseWriter) {
		return fmt.Errorf("middleware: flush: %w", http.ErrNotSupported)
	}
	ok := w.commit()
	if err := http.NewResponseController(w.ResponseWriter).Flush(); err != nil {
		return err
	}
	if !ok {
		return w.err
	}
	return nil
}

// errHijackCookie is Hijack's error when committing the session set a
// cookie, which a hijacked connection would never carry.
var errHijackCookie = errors.New("middleware: the session change of this request needs a cookie, which a hijacked connection cannot carry: make it in an earlier request")

// Hijack implements http.Hijacker (and so http.ResponseController's
// Hijack), for a WebSocket upgrade: it commits the session first, so that
// the changes made before are saved and later ones return
// session.ErrResponseStarted, then hands over the connection. When the
// commit set a cookie (a login, a renewal or a logout in this request),
// it hijacks nothing and returns an error instead, so that the handler
// answers normally and the cookie goes out with that answer: again if
// asked again, and that answer, whatever headers the handler sets for it,
// is kept out of shared caches as the commit keeps its own. When the
// connection cannot be hijacked (HTTP/2, also through a writer of a
// middleware that has a Hijack method whatever the connection) it returns
// an error matching http.ErrNotSupported without committing.
func (w *sessionWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.r.ProtoMajor >= 2 || !canHijack(w.ResponseWriter) {
		// An HTTP/2 connection, say: fail as http.ResponseController
		// would, before the commit, so that the handler's answer
		// without the upgrade can still change the session.
		return nil, nil, fmt.Errorf("middleware: hijack: %w", http.ErrNotSupported)
	}
	if w.cookieAhead {
		return nil, nil, errHijackCookie // asked again: the cookie still waits for an answer
	}
	cookies := len(w.Header().Values("Set-Cookie"))
	if !w.commit() {
		return nil, nil, w.err
	}
	if len(w.Header().Values("Set-Cookie")) != cookies {
		w.cookieAhead = true
		return nil, nil, errHijackCookie
	}
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

// within reports whether rw is, or wraps (as http.ResponseController finds
// writers through Unwrap), the writer of m's Sessions.
func within(rw http.ResponseWriter, m *session.Manager) bool {
	for {
		switch t := rw.(type) {
		case *sessionWriter:
			if t.m == m {
				return true
			}
			rw = t.ResponseWriter
		case interface{ Unwrap() http.ResponseWriter }:
			rw = t.Unwrap()
		default:
			return false
		}
	}
}

// canHijack reports whether rw, or a writer it wraps (as
// http.ResponseController finds them through Unwrap), is an http.Hijacker.
func canHijack(rw http.ResponseWriter) bool {
	return reaches[http.Hijacker](rw)
}

// canFlush reports whether rw, or a writer it wraps, flushes as
// http.ResponseController's Flush looks for it.
func canFlush(rw http.ResponseWriter) bool {
	return reaches[interface{ FlushError() error }](rw) || reaches[http.Flusher](rw)
}

// reaches reports whether rw, or a writer it wraps (as
// http.ResponseController finds them through Unwrap), implements T. The
// writer of another Sessions around this one counts for what it wraps: it
// has every method, and refuses what its own writer cannot do.
func reaches[T any](rw http.ResponseWriter) bool {
	for {
		if sw, ok := rw.(*sessionWriter); ok {
			rw = sw.ResponseWriter
			continue
		}
		if _, ok := rw.(T); ok {
			return true
		}
		u, ok := rw.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return false
		}
		rw = u.Unwrap()
	}
}

// Unwrap returns the wrapped writer, for http.ResponseController.
func (w *sessionWriter) Unwrap() http.ResponseWriter {
	return w.ResponseWriter
}
