package main

import (
	"cmp"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sessionkit/sessionkit/middleware"
	"github.com/sessionkit/sessionkit/session"
)

// The HTML side of the example: the login page, the dashboard, the devices
// page and their forms. Each form posts, then redirects (303) to a page,
// so that a reload never sends it twice; but a form that ends this
// browser's session answers with the login page itself, which says so
// (see notice.go): sent again, it finds no session and ends nothing, or,
// after another sign-in on the browser, a session it was not shown for,
// and answers 409, changing nothing (sameSession).

// pageRetry is the Retry-After, in seconds, of the pages shown while the
// session store is unavailable: an outage page reloads itself after it,
// and the login button waits that long before it can be pressed again.
const pageRetry = 5

// pageAuth returns the guard of the pages that need a user. A browser
// without a session is sent to the login page, with the page it asked for
// to come back to; during a store outage it gets the outage page, not a
// login form that could not work. Every other request goes to
// middleware.RequireAuth, which lets a user through and answers API
// clients with JSON (401, or 503 with Retry-After).
func (s *server) pageAuth() (func(http.Handler) http.Handler, error) {
	requireAuth, err := middleware.RequireAuth(middleware.AuthConfig{LoginURL: "/login", ReturnParam: "next"})
	if err != nil {
		return nil, err
	}
	return func(next http.Handler) http.Handler {
		protected := requireAuth(next)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, ok := session.UserID(r.Context())
			switch {
			case ok || !wantsHTML(r):
				protected.ServeHTTP(w, r)
			case session.LoadError(r.Context()) != nil:
				s.unavailablePage(w, r, keptSignedIn)
			case r.Method != http.MethodGet && r.Method != http.MethodHead:
				// A form of a page whose session has ended since (it timed
				// out, another tab signed out, or another device signed it
				// out): a bare login page would read as the sign-out it
				// asked for having happened, while the devices it was to
				// sign out stay signed in.
				why := "it timed out, or you signed out in another tab"
				if s.endedElsewhere(r) {
					// As the login page would say, which this page
					// tells in its place.
					why = "it was signed out from another device"
					s.clearMarker(w)
				}
				s.fail(w, r, http.StatusUnauthorized, "unauthenticated", page{
					Title: "Session ended", Heading: "Your session has ended",
					Message: "This form was sent after your session had ended: " + why + ". " +
						"Nothing was changed, and no other device was signed out. Sign in, then try again from your devices.",
					Back: "/login?next=%2Fsessions", BackText: "Sign in",
				})
			default:
				// A page: RequireAuth sends the browser to /login?next=
				// <the page> (its ReturnParam).
				protected.ServeHTTP(w, r)
			}
		})
	}, nil
}

// home shows the dashboard to a logged-in user, the login form to anyone
// else, and the outage page when the session could not be read.
func (s *server) home(w http.ResponseWriter, r *http.Request) {
	if session.LoadError(r.Context()) != nil {
		s.unavailablePage(w, r, keptSignedIn)
		return
	}
	info, ok := session.FromContext(r.Context())
	if !ok {
		s.loginForm(w, r)
		return
	}
	now := time.Now()
	s.setMarker(w, info, now)
	s.render(w, http.StatusOK, "dashboard", page{
		Title: "Dashboard", User: info.UserID, Session: info.FirstID,
		Device: devices([]session.Info{info}, now, s.idle)[0],
	})
}

// loginPage shows the login form, or sends a logged-in user on to the page
// named by ?next= (or the dashboard). When the session could not be read
// it shows the outage page, but for one whose end the store could not
// confirm (session.ErrEndUnconfirmed: a replica missing under
// REDIS_WAIT_REPLICAS), where a login goes on.
func (s *server) loginPage(w http.ResponseWriter, r *http.Request) {
	if _, ok := session.UserID(r.Context()); ok {
		http.Redirect(w, r, cmp.Or(safeNext(r.URL.Query().Get("next")), "/"), http.StatusSeeOther)
		return
	}
	if err := session.LoadError(r.Context()); err != nil && !errors.Is(err, session.ErrEndUnconfirmed) {
		s.unavailablePage(w, r, keptSignedIn)
		return
	}
	s.loginForm(w, r)
}

// loginForm shows the login form to a browser without a session, with a
// notice when its session was ended from another device (which it tells
// once).
func (s *server) loginForm(w http.ResponseWriter, r *http.Request) {
	p := page{Title: "Sign in", Next: safeNext(r.URL.Query().Get("next"))}
	if s.endedElsewhere(r) {
		p.Notice = noticeEndedElsewhere
		s.clearMarker(w)
	}
	s.render(w, http.StatusOK, "login", p)
}

// signedOut answers a form that ended this browser's own session: the
// login form, with notice. It is the form's answer rather than a redirect
// to the login page: that answer clears the site's cookies, and with them
// any cookie that would carry the notice (see notice.go).
func (s *server) signedOut(w http.ResponseWriter, notice string) {
	s.clearMarker(w)
	s.render(w, http.StatusOK, "login", page{Title: "Sign in", Notice: notice})
}

// formMaxBody is the most a form of the example's may send: its forms
// send a few dozen bytes, a sign-in at most a user name, a password and a
// path. The login limiter reads as much (loginMaxBody).
const formMaxBody = 4096

// badForm answers a form that could not be read, changing nothing: 413
// "request body too large" when its body was over formMaxBody, else 400
// "bad form"; for a browser, a page saying message with a way back.
func (s *server) badForm(w http.ResponseWriter, r *http.Request, err error, message, back, backText string) {
	code, msg, heading := http.StatusBadRequest, "bad form", "That form could not be read"
	if tooLarge(err) {
		code, msg, heading = http.StatusRequestEntityTooLarge, "request body too large", "That form was too large"
	}
	s.fail(w, r, code, msg, page{Heading: heading, Message: message, Back: back, BackText: backText})
}

// parseForm parses the form r posts, urlencoded or multipart, and the
// query, into r.Form and r.PostForm, and reports what made it unreadable:
// a pair that is not URL-encoded, a broken multipart body, a body over
// the limit of r.Body's MaxBytesReader (the handlers' is formMaxBody; the
// limiter hands loginLimitUnavailable a copy of at most loginMaxBody
// bytes). ParseForm goes
// first because ParseMultipartForm drops its error for a body that is not
// multipart, and a second ParseForm reports none. The rest of the body is
// read too, so that one over the limit is always that: a multipart reader
// stops at the closing boundary (any epilogue after it goes unread) or at
// a line longer than its buffer.
func parseForm(r *http.Request) error {
	err := r.ParseForm()
	if err == nil {
		err = r.ParseMultipartForm(formMaxBody)
		if r.MultipartForm != nil {
			r.MultipartForm.RemoveAll() // the example's forms carry no files: drop any spilled to disk
		}
		if errors.Is(err, http.ErrNotMultipart) {
			err = nil
		}
	}
	if _, rest := io.Copy(io.Discard, r.Body); tooLarge(rest) {
		return rest
	}
	return err
}

// tooLarge reports whether err is a MaxBytesReader's: the body went over
// its limit.
func tooLarge(err error) bool {
	var e *http.MaxBytesError
	return errors.As(err, &e)
}

// loginForm reads a sign-in form, urlencoded or multipart. It reads the
// user name as the login limiter counted it, with r.FormValue (see
// middleware.ByFormField), so that the name whose password is checked is
// the name the attempt was counted against; the password and next from the
// body alone, never from the address, which logs and histories keep.
func loginForm(r *http.Request) (username, password, next string, err error) {
	if err := parseForm(r); err != nil {
		return "", "", "", err
	}
	return r.FormValue("username"), r.PostFormValue("password"), safeNext(r.PostFormValue("next")), nil
}

// formLogin logs in with the login form and goes to the page the user
// asked for, or the dashboard. A wrong password shows the form again with
// the user name kept; a store outage shows it with "we can't sign you in
// right now" and a Retry-After.
func (s *server) formLogin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, formMaxBody)
	username, password, next, err := loginForm(r)
	if err != nil {
		s.badForm(w, r, err, "Please go back and sign in again.", "/login", "Back to sign in")
		return
	}
	ok, err := s.checkPassword(r, username, password)
	if err != nil { // no hashing slot came free in time, or the client went away
		w.Header().Set("Retry-After", strconv.Itoa(pageRetry))
		s.fail(w, r, http.StatusServiceUnavailable, "try again", page{
			Heading: "Please try again", Message: "Signing in took too long.", Back: "/login", BackText: "Back to sign in",
		})
		return
	}
	if !ok {
		msg := "Wrong user name or password."
		if user, signedIn := session.UserID(r.Context()); signedIn {
			// As when Back leads to the answer of a wrong password sent
			// before a login that succeeded, and the browser sends that
			// form again: the user must not read it as signed out.
			msg += " You are still signed in as " + user + "."
		}
		s.render(w, http.StatusUnauthorized, "login", page{
			Title: "Sign in", Error: msg, Invalid: true, Username: username, Next: next,
		})
		return
	}
	info, err := session.Create(r.Context(), username)
	if err != nil {
		if wantsHTML(r) && (errors.Is(err, session.ErrStoreUnavailable) || errors.Is(err, session.ErrContention)) {
			s.logFailure(r, err)
			s.loginUnavailable(w, username, next)
			return
		}
		s.storeError(w, r, err)
		return
	}
	s.setMarker(w, info, time.Now())
	http.Redirect(w, r, cmp.Or(next, "/"), http.StatusSeeOther)
}

// loginUnavailable answers a browser's login that Redis could not serve:
// 503, the login form saying "we can't sign you in right now" with the
// user name kept, and a button that waits pageRetry seconds.
func (s *server) loginUnavailable(w http.ResponseWriter, username, next string) {
	s.render(w, http.StatusServiceUnavailable, "login", page{
		Title: "Can't sign in right now", Unavailable: true, RetryAfter: pageRetry, Username: username, Next: next,
		Error: "Our session store is not answering. Please try again in a few seconds.",
	})
}

// sessionField is the form field by which the forms that change the
// session (log out, sign out of all other sessions, log out everywhere,
// each device's Revoke) name the session their page was shown for:
// page.Session.
const sessionField = "session"

// fromPage reports whether the form r posts, parsed, carries sessionField,
// as every form of the example's pages does.
func fromPage(r *http.Request) bool {
	_, ok := r.PostForm[sessionField]
	return ok
}

// sameSession reports whether the form r posts was shown for the session r
// carries, comparing the id the session was created under
// (session.Info.FirstID), which its renewals keep: a session renewed since
// the page was shown, by this instance or another, is the same session.
// Otherwise it answers 409, changing nothing: a page left open in one tab
// while another tab of the browser logged out and in again, as another
// user perhaps, must not act on the new session. The id is no credential,
// so a plain comparison does. A form that cannot be read gets 400, or 413
// over formMaxBody, changing nothing.
//
// A request without a session passes: there is no session for it to act
// on. So does one whose session could not be read (Redis failing), once
// its form is read: there is no first id to compare, and the one form
// that gets this far without a session, the logout, is to end the
// browser's session whatever page it came from (RequireAuth answers the
// others 503).
func (s *server) sameSession(w http.ResponseWriter, r *http.Request, back, backText string) bool {
	info, ok := session.FromContext(r.Context())
	unread := session.LoadError(r.Context()) != nil
	if !ok && !unread {
		return true
	}
	r.Body = http.MaxBytesReader(w, r.Body, formMaxBody)
	if err := parseForm(r); err != nil {
		s.badForm(w, r, err, "Please reload the page and try again.", back, backText)
		return false
	}
	// A form without the field comes from no page of the example's (curl,
	// another client of the routes): there is no page to be stale, and it
	// acts on the browser's session as it is. (Cross-origin posts never
	// get here: http.CrossOriginProtection refuses them, see routes.)
	if !ok || !fromPage(r) || r.PostForm.Get(sessionField) == info.FirstID {
		return true
	}
	s.fail(w, r, http.StatusConflict, "session changed", page{
		Title: "Session changed", Heading: "Your session has changed",
		Message: "This page was shown for a session that has ended since: you signed out or signed in again, " +
			"perhaps in another tab or by another person on this computer. Nothing was changed. Open the page again and try from there.",
		Back: back, BackText: backText,
	})
	return false
}

// formLogout ends the session and answers with the login page, which says
// so; a post without the session field (not from one of the example's
// pages: curl, a client of the routes) gets 303 to the home page.
// A browser whose session had already ended elsewhere is told that
// instead. A form shown for another session changes nothing
// (sameSession). When the store fails, the marker goes all the same
// (endError).
func (s *server) formLogout(w http.ResponseWriter, r *http.Request) {
	if !s.sameSession(w, r, "/", "Go to the home page") {
		return
	}
	_, signedIn := session.UserID(r.Context())
	signedIn = signedIn || session.LoadError(r.Context()) != nil
	if err := session.Destroy(r.Context()); err != nil {
		s.clearMarker(w)
		s.endError(w, r, err)
		return
	}
	if !signedIn {
		// The marker stays: a browser whose session another device ended
		// is told so on the login page.
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return
	}
	if !fromPage(r) {
		// Not from a page of the example's: the plain answer of a logout
		// form, to the home page, which shows the login form.
		s.clearMarker(w)
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	s.signedOut(w, noticeSignedOut)
}

// sessionsPage lists the caller's devices: this one first, the others by
// last activity, each with a revoke button; with the notice a form left
// for it (takeNotice).
func (s *server) sessionsPage(w http.ResponseWriter, r *http.Request) {
	info, _ := session.FromContext(r.Context())
	list, err := s.sessions.List(r.Context(), info.UserID)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	now := time.Now()
	p := page{Title: "Your devices", User: info.UserID, Session: info.FirstID, Devices: devices(list, now, s.idle)}
	for _, d := range p.Devices {
		if !d.Current {
			p.Others++
		}
	}
	code, device := s.takeNotice(w, r)
	if code == "revoked" && device != "" {
		p.NoticeDevice = device
	} else {
		p.Notice = deviceNotices[code]
	}
	s.setMarker(w, info, now)
	s.render(w, http.StatusOK, "devices", p)
}

// formRevoke ends one of the caller's sessions and goes back to the
// devices page, which names the device it signed out; the caller's
// own session gets the login page, which says that it signed out. The form names
// the session by its first id (see device.ID), so a page shown before the
// session renewed still revokes it, and carries the page's session, as the
// other forms do: a page left open while this browser signed in again, as
// another user perhaps, gets 409, not a 404 saying that a device which is
// still signed in has ended. Signing out another device needs a recent
// sign-in, or the password (confirmed).
func (s *server) formRevoke(w http.ResponseWriter, r *http.Request) {
	if !s.sameSession(w, r, "/sessions", "Reload your devices") {
		return
	}
	user, _ := session.UserID(r.Context())
	id := r.PathValue("id")
	list, err := s.sessions.List(r.Context(), user)
	if err != nil {
		s.storeFailed(w, r, err, deviceKept)
		return
	}
	var target *session.Info
	for i := range list {
		if list[i].FirstID == id || list[i].ID == id {
			target = &list[i]
		}
	}
	if target != nil && !target.Current && !s.confirmed(w, r, r.PostForm.Get(passwordField), r.URL.Path, "sign out that device") {
		return
	}
	if target != nil {
		err = s.sessions.Revoke(r.Context(), user, id)
	}
	switch {
	case target == nil || errors.Is(err, session.ErrNotFound):
		s.fail(w, r, http.StatusNotFound, "no such session", page{
			Heading: "That session has already ended",
			Message: "The device was signed out already, perhaps from another tab or device, or has signed in again since this page was shown.",
			Back:    "/sessions", BackText: "Back to your devices",
		})
	case err != nil:
		if target.Current {
			s.clearMarker(w)
		}
		s.endError(w, r, err)
	case target.Current: // not offered by the page, but a user may end their own session
		s.signedOut(w, noticeSignedOut)
	default:
		s.setNotice(w, r, "revoked", cmp.Or(target.Device, unknownDevice))
		http.Redirect(w, r, "/sessions", http.StatusSeeOther)
	}
}

// formLogoutOthers ends every session of the caller but this one and goes
// back to the devices page, which says whether any ended. A form shown for
// another session changes nothing (sameSession); it needs a recent
// sign-in, or the password (confirmed).
func (s *server) formLogoutOthers(w http.ResponseWriter, r *http.Request) {
	if !s.sameSession(w, r, "/sessions", "Reload your devices") ||
		!s.confirmed(w, r, r.PostForm.Get(passwordField), r.URL.Path, "sign out of your other sessions") {
		return
	}
	n, err := s.sessions.RevokeOthers(r.Context())
	switch {
	case errors.Is(err, session.ErrNoSession): // this session ended meanwhile
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return
	case err != nil:
		s.endError(w, r, err)
		return
	}
	if n == 0 {
		s.setNotice(w, r, "no-others", "")
	} else {
		s.setNotice(w, r, "others", "")
	}
	http.Redirect(w, r, "/sessions", http.StatusSeeOther)
}

// formLogoutAll ends every session of the caller and answers with the
// login page, which says so. A form shown for another session changes nothing
// (sameSession); it needs a recent sign-in, or the password (confirmed).
// When the store fails, the marker goes all the same (endError).
func (s *server) formLogoutAll(w http.ResponseWriter, r *http.Request) {
	if !s.sameSession(w, r, "/sessions", "Reload your devices") ||
		!s.confirmed(w, r, r.PostForm.Get(passwordField), r.URL.Path, "log out everywhere") {
		return
	}
	user, _ := session.UserID(r.Context())
	if _, err := s.sessions.RevokeAll(r.Context(), user); err != nil {
		s.clearMarker(w)
		s.endError(w, r, err)
		return
	}
	s.signedOut(w, noticeEverywhere)
}

// outage says what a request that found the session store unavailable had
// done to the user's sessions, for the words of its outage page.
type outage int

const (
	// keptSignedIn: it ended nothing, so the user is still signed in.
	keptSignedIn outage = iota
	// mayHaveEnded: it tried to end sessions, which the store may still
	// carry out (see endError).
	mayHaveEnded
	// deviceKept: it failed before it tried to sign out another device,
	// which it has not signed out.
	deviceKept
)

// unavailablePage answers 503 with Retry-After while the session store is
// unavailable: for a page, a notice that reloads itself after pageRetry
// seconds; for a form, a notice with a way back. It says what o says of
// the user's sessions: that they have not been signed out, that the
// sign-out may not have completed, or that the device they meant to sign
// out has not been.
func (s *server) unavailablePage(w http.ResponseWriter, r *http.Request, o outage) {
	w.Header().Set("Retry-After", strconv.Itoa(pageRetry)) // for a form's answer and JSON too
	p := page{
		Title:   "Temporarily unavailable",
		Heading: "We can't reach your session right now",
		// "by this outage": the marker says that this browser was signed
		// in lately, not that no other device has signed it out since.
		Message: "Our session store is not answering. You have not been signed out by this outage; please try again in a few seconds.",
	}
	if _, err := r.Cookie(s.markerName()); err != nil && o == keptSignedIn {
		// No marker: no page showed this browser signed in lately, or it
		// has just tried to sign out (see endError), which may have
		// happened after all.
		p.Message = "Our session store is not answering, so we can't tell whether you are signed in. Please try again in a few seconds."
	}
	switch o {
	case mayHaveEnded:
		p.Heading = "Signing out may not have completed"
		p.Message = "Our session store is not answering, so we can't tell whether the sign-out went through. Please try again in a few seconds."
	case deviceKept:
		p.Heading = "That device has not been signed out"
		p.Message = "Our session store is not answering, so we could not sign out that device. Please try again in a few seconds."
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		p.Refresh = pageRetry
		p.Back, p.BackText = cmp.Or(safeNext(r.URL.RequestURI()), "/"), "Try again now"
	}
	s.fail(w, r, http.StatusServiceUnavailable, "session store unavailable", p)
}

// noRoute answers what no route of mux serves: 405 with Allow when the
// path has routes for other methods, 404 otherwise; a page for a browser,
// JSON for an API client.
func (s *server) noRoute(mux *http.ServeMux) http.Handler {
	methods := []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var allow []string
		for _, m := range methods {
			if _, pattern := mux.Handler(&http.Request{Method: m, URL: r.URL, Host: r.Host}); pattern != "" && pattern != "/" {
				allow = append(allow, m)
				if m == http.MethodGet {
					allow = append(allow, http.MethodHead)
				}
			}
		}
		if len(allow) == 0 {
			s.notFound(w, r)
			return
		}
		w.Header().Set("Allow", strings.Join(allow, ", "))
		s.fail(w, r, http.StatusMethodNotAllowed, "method not allowed", page{
			Title:   "Not a page",
			Heading: "This address is not a page",
			Message: "It only takes a form sent from the site, so it cannot be opened, bookmarked or reloaded.",
		})
	})
}

// notFound answers 404: a page for a browser, JSON for an API client.
func (s *server) notFound(w http.ResponseWriter, r *http.Request) {
	s.fail(w, r, http.StatusNotFound, "not found", page{
		Heading: "Page not found", Message: "There is no page at this address.",
	})
}

// crossOrigin answers a form or API call sent from another site, which
// net/http's cross-origin protection refused: 403, and nothing changed.
func (s *server) crossOrigin(w http.ResponseWriter, r *http.Request) {
	s.fail(w, r, http.StatusForbidden, "cross-origin request refused", page{
		Title: "Refused", Heading: "This request came from another site",
		Message: "A form on another site tried to act on your account here. It was refused, and nothing was changed.",
	})
}
