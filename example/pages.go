package main

import (
	"embed"
	"html/template"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
)

// files holds the page templates and the assets: one stylesheet and a few
// lines of script, served under /assets/.
//
//go:embed templates assets
var files embed.FS

// templates are the pages, each templates/layout.html with its own "main".
var templates = parsePages("login", "dashboard", "devices", "message", "confirm")

func parsePages(names ...string) map[string]*template.Template {
	layout := template.Must(template.ParseFS(files, "templates/layout.html"))
	pages := make(map[string]*template.Template, len(names))
	for _, name := range names {
		pages[name] = template.Must(template.Must(layout.Clone()).ParseFS(files, "templates/"+name+".html"))
	}
	return pages
}

// page is what a template shows. The layout uses the first group of
// fields; each page the group named after it.
type page struct {
	Title  string // the page's own title, before " · sessionkit example"
	User   string // the signed-in user, shown in the header; "" for none
	Notice string // what just happened ("You signed out.")
	// NoticeDevice, in place of Notice, names the device a revoke signed
	// out: "Signed out Safari on iPhone.", the name isolated for
	// bidirectional text as the devices page shows it.
	NoticeDevice string
	Refresh      int  // seconds after which the page reloads itself; 0: never
	Narrow       bool // a single small card (login, messages): render sets it
	// Session is the first id (session.Info.FirstID) of the session the
	// page was shown for, which its forms that change the session send
	// back (sessionField); "" for none.
	Session string

	// login
	Error       string // why the last attempt failed: the fields are described by it (aria-describedby)
	Invalid     bool   // the user name or password was wrong: the fields are marked so (aria-invalid)
	Username    string // kept after a failed attempt
	Next        string // where to go after login (safeNext)
	Unavailable bool   // the store is down: "we can't sign you in right now"
	RetryAfter  int    // seconds the button waits: after an outage, or over a login limit
	// RetryName is the user name whose login limit RetryAfter waits
	// for, "" when the wait holds for every name: the button waits only
	// while the form names it, as another name has its own limit.
	RetryName string

	// dashboard and devices
	Device  device   // the current session
	Devices []device // devices: the current one first, then by last activity
	Others  int      // devices: how many other sessions there are

	// message: an error or an outage, with a way back
	Heading  string
	Message  string
	Back     string // a path on this site
	BackText string

	// confirm: the password asked for again (see confirmed), with Message
	// saying what for, and Error, Invalid and RetryAfter as for login
	Action string // the path the form posts to: the route that asked
	// Recent: the session signed in recently, and the password is asked
	// for because one was sent (and was wrong), not for want of a recent
	// sign-in.
	Recent bool
}

// assets serves the stylesheet and the script. They change only with the
// binary; an hour of caching keeps page loads to one request. Any other
// path under /assets/, the directory itself included, is the site's 404.
func (s *server) assets() http.Handler {
	sub, _ := fs.Sub(files, "assets") // never fails: the directory is embedded
	fsrv := http.StripPrefix("/assets/", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/assets/")
		if f, err := fs.Stat(sub, name); name == "" || err != nil || f.IsDir() {
			s.notFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=3600")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		fsrv.ServeHTTP(w, r)
	})
}

// contentSecurity lets pages load only the example's own stylesheet and
// script, post forms only to this site, and be framed by no one. (Pages
// also send X-Frame-Options: DENY, the same for browsers that predate
// frame-ancestors, and Referrer-Policy: same-origin, so that no other site
// learns their addresses. Strict-Transport-Security is the TLS front end's to
// send: the example serves plain HTTP.)
const contentSecurity = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// render writes the page name with data p and status code.
func (s *server) render(w http.ResponseWriter, code int, name string, p page) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", contentSecurity)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	if wait := max(p.Refresh, p.RetryAfter); wait > 0 {
		h.Set("Retry-After", strconv.Itoa(wait))
	}
	w.WriteHeader(code)
	p.Narrow = name == "login" || name == "message" || name == "confirm"
	if err := templates[name].Execute(w, p); err != nil {
		s.log.Error("example: rendering page", "page", name, "error", err)
	}
}

// wantsHTML reports whether r should be answered with a page rather than
// JSON: a request outside /api/ from a client that accepts text/html, as
// browsers do. API clients, and every request under /api/, get JSON.
func wantsHTML(r *http.Request) bool {
	return !strings.HasPrefix(r.URL.Path, "/api/") && strings.Contains(r.Header.Get("Accept"), "text/html")
}

// fail answers an error: a small page with a way back for a browser
// (wantsHTML), {"error": msg} for anyone else.
func (s *server) fail(w http.ResponseWriter, r *http.Request, code int, msg string, p page) {
	if !wantsHTML(r) {
		writeError(w, code, msg)
		return
	}
	if p.Back == "" {
		p.Back, p.BackText = "/", "Go to the home page"
	}
	if p.Title == "" {
		p.Title = p.Heading
	}
	s.render(w, code, "message", p)
}
