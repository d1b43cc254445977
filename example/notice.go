package main

import (
	"cmp"
	"encoding/base64"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sessionkit/sessionkit/middleware"
	"github.com/sessionkit/sessionkit/redisstore"
	"github.com/sessionkit/sessionkit/session"
)

// How the example tells a browser what happened to it.
//
// Only the browser that did what a notice reports is told it: a notice
// never comes from the URL, where anyone could put it in a link ("Your
// other sessions were signed out.", sent by someone holding a stolen
// session, would reassure its victim falsely). A form that ends this
// browser's own session (log out, log out everywhere, a revoke of its own
// session) answers with the login page itself, the notice on it: its
// answer clears the site's cookies (the session package's
// Clear-Site-Data), a cookie set for the next page with them. A form that keeps the session (a revoke, sign out of all other
// sessions) redirects to the devices page with the notice's code in a
// cookie of its own (setNotice), which that page shows once and clears
// (takeNotice). The notice is not kept in the session, as a flash message
// would be: a form that ends sessions has done what it says once the
// store answered, and a session value put after that could fail to save
// (Redis out of memory still deletes, but refuses writes), which would
// turn the form's answer into a 503 for an action that happened.
//
// A browser whose session ended elsewhere (revoked from another device,
// or log out everywhere) cannot be told by the request that ended it. It
// learns on its next request, from a marker cookie of its own: the example
// sets it at login and on every page it shows a signed-in user, with a
// lifetime a few seconds shorter than what is left of the session's idle
// timeout and absolute deadline, and clears it when this browser logs out,
// through a form or the API. A request that carries the marker but no
// session was therefore not ended by a timeout (the marker would have
// expired first) nor by this browser's own logout: another device ended
// it, or the session was lost (Redis lost its data, or the session's
// signing key is no longer configured), which the example cannot tell
// apart from a revocation. The marker says only "this browser was signed
// in": it names no user and no session, so a stranger who sends one learns
// nothing and only gets the notice.

// Notices of the login page.
const (
	noticeEndedElsewhere = "You were signed out from another device."
	noticeSignedOut      = "You signed out."
	noticeEverywhere     = "You signed out everywhere: every session of your account has ended."
)

// Notices of the devices page. A revoke names the device it signed out
// ("Signed out Safari on iPhone.", the layout's NoticeDevice); noticeRevoked
// is for a notice cookie whose name cannot be read.
const (
	noticeRevoked  = "The device was signed out."
	noticeOthers   = "Your other sessions were signed out."
	noticeNoOthers = "No other session was signed in."
)

// deviceNotices are the notices a form may leave for the devices page, by
// a fixed code in the notice cookie (setNotice): the text never comes from
// the request.
var deviceNotices = map[string]string{
	"revoked":   noticeRevoked,
	"others":    noticeOthers,
	"no-others": noticeNoOthers,
}

// ownCookie is a cookie of the example's own beside the session's
// (the marker, a notice): base is its name, given the __Host- prefix when
// the session cookie is Secure, as session's default name has it. It is
// HttpOnly, on Path=/, for life (none: expired, with an Expires in the
// past beside Max-Age=0, as the session cookie is expired: some clients,
// curl's cookie jar, keep a cookie that Max-Age=0 alone should end; not
// the Unix epoch itself, which curl reads as a session cookie's).
func (s *server) ownCookie(base, value string, life time.Duration, sameSite http.SameSite) *http.Cookie {
	c := &http.Cookie{
		Name: "__Host-" + base, Value: value, Path: "/", MaxAge: int(life / time.Second),
		HttpOnly: true, Secure: !s.insecureCookie, SameSite: sameSite,
	}
	if s.insecureCookie {
		c.Name = base
	}
	if life <= 0 {
		c.MaxAge, c.Expires = -1, time.Unix(1, 0)
	}
	return c
}

// noticeBase is the name of the notice cookie, before ownCookie's prefix.
const noticeBase = "notice"

// noticeLife is how long a notice waits for the page it was left for: the
// redirect that follows the form's answer takes well under it.
const noticeLife = time.Minute

// setNotice leaves the notice of code (a key of deviceNotices) for the
// page that the form's answer redirects to, in a cookie that is HttpOnly
// and SameSite=Strict: a page opened from another site's link never gets
// it. Its value is the code and the first id of the session of r, which a
// renewal keeps, "others:<first id>": without the __Host- prefix
// (InsecureCookie) a sibling subdomain can set a cookie of that name,
// but, not knowing the id, not one that the page shows. device, when not
// "", is the name of the device a revoke signed out, which follows in
// base64url ("revoked:<first id>:<name>"): the session it named is gone
// by the time the page shows the notice, and the notice is not kept in
// the session (see above).
func (s *server) setNotice(w http.ResponseWriter, r *http.Request, code, device string) {
	info, _ := session.FromContext(r.Context())
	value := code + ":" + info.FirstID
	if device != "" {
		value += ":" + base64.RawURLEncoding.EncodeToString([]byte(device))
	}
	http.SetCookie(w, s.ownCookie(noticeBase, value, noticeLife, http.SameSiteStrictMode))
}

// maxNoticeDevice bounds the device name a notice cookie may carry: a
// session's device name takes at most 64 bytes (session.Config.DeviceName).
const maxNoticeDevice = 64

// takeNotice returns the code of the notice that a form left for r's
// page, "" for none or for one left for another session, and the device
// name it carries, "" for none or for one that is not a device name; and
// clears it, so that the page tells it once.
func (s *server) takeNotice(w http.ResponseWriter, r *http.Request) (code, device string) {
	notice := s.ownCookie(noticeBase, "", 0, http.SameSiteStrictMode)
	c, err := r.Cookie(notice.Name)
	if err != nil {
		return "", ""
	}
	http.SetCookie(w, notice)
	info, _ := session.FromContext(r.Context())
	code, rest, _ := strings.Cut(c.Value, ":")
	first, encoded, _ := strings.Cut(rest, ":")
	if info.FirstID == "" || first != info.FirstID {
		return "", ""
	}
	name, err := base64.RawURLEncoding.DecodeString(encoded)
	if err != nil || len(name) > maxNoticeDevice || !utf8.Valid(name) {
		return code, ""
	}
	return code, string(name)
}

// markerName is the name of the marker cookie, with the __Host- prefix
// when the session cookie is Secure, as session's default name has it.
func (s *server) markerName() string {
	return s.ownCookie(markerBase, "", 0, http.SameSiteLaxMode).Name
}

// markerBase is the name of the marker cookie, before ownCookie's prefix.
const markerBase = "signed_in"

// markerMargin is how much sooner than the session the marker ends. The
// session's idle window started when the request loaded it, and the
// marker's Max-Age counts from when the browser receives the response: the
// margin covers the time between, so that a timeout is never told as a
// sign-out from another device.
const markerMargin = 5 * time.Second

// setMarker marks this browser as signed in to the session info, until
// markerMargin before the session's idle timeout or its absolute deadline,
// whichever comes first. With the near-cache, an idle session may end up
// to min(ExtendEvery, idle timeout / 4) before its idle timeout
// (redisstore.NearCache): the marker ends that much earlier too.
func (s *server) setMarker(w http.ResponseWriter, info session.Info, now time.Time) {
	life := info.ExpiresAt.Sub(now)
	if s.idle > 0 {
		idle := s.idle
		if nc := s.redis.NearCache; nc.MaxEntries > 0 {
			idle -= min(cmp.Or(nc.ExtendEvery, redisstore.DefaultNearCacheExtendEvery), s.idle/4)
		}
		life = min(life, idle)
	}
	life -= markerMargin
	if life < time.Second {
		return
	}
	http.SetCookie(w, s.ownCookie(markerBase, "1", life, http.SameSiteLaxMode))
}

// clearMarker expires the marker cookie.
func (s *server) clearMarker(w http.ResponseWriter) {
	http.SetCookie(w, s.ownCookie(markerBase, "", 0, http.SameSiteLaxMode))
}

// clearOwnMarker clears the marker of a browser that ends its own session
// through the API (a page's script, with the browser's cookies): r carries
// the marker, so it comes from the browser that holds it, whatever
// credential it sent. An API client without the marker gets no Set-Cookie.
func (s *server) clearOwnMarker(w http.ResponseWriter, r *http.Request) {
	if _, err := r.Cookie(s.markerName()); err == nil {
		s.clearMarker(w)
	}
}

// endedElsewhere reports whether r comes from a browser whose session was
// ended by another device: it carries the marker, and no session.
func (s *server) endedElsewhere(r *http.Request) bool {
	if _, ok := session.UserID(r.Context()); ok || session.LoadError(r.Context()) != nil {
		return false
	}
	_, err := r.Cookie(s.markerName())
	return err == nil
}

// safeNext returns next if it is a path on this site to return to after
// login (middleware.ReturnPath), and not the login page itself, which
// would send a logged-in browser back to itself; "" otherwise.
func safeNext(next string) string {
	if next = middleware.ReturnPath(next); next == "" {
		return ""
	}
	if u, err := url.Parse(next); err != nil || path.Clean(u.Path) == "/login" {
		return ""
	}
	return next
}
