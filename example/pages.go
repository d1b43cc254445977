package main

import (
	"html/template"
	"net/http"

	"github.com/sessionkit/sessionkit/session"
)

// page is what the HTML template shows.
type page struct {
	LoggedIn     bool
	Info         session.Info
	Error        string
	ShowSessions bool           // the sessions page rather than the dashboard
	Sessions     []session.Info // the user's sessions, on the sessions page
}

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sessionkit example</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 42rem; margin: 3rem auto; padding: 0 1rem; color: #222; }
h1 { font-size: 1.4rem; }
form { display: grid; gap: .6rem; margin-top: 1rem; }
input, button { font: inherit; padding: .45rem .6rem; }
button { cursor: pointer; }
.error { color: #a00; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .3rem 1rem; }
dt { color: #666; }
table { border-collapse: collapse; width: 100%; margin: 1rem 0; font-size: .9rem; }
td, th { text-align: left; padding: .35rem .4rem; border-bottom: 1px solid #ddd; vertical-align: top; }
td form, nav form { margin: 0; }
td.when { white-space: nowrap; }
nav { display: flex; gap: 1rem; align-items: center; margin-top: 1rem; }
</style>
</head>
<body>
<h1>sessionkit example</h1>
{{with .Error}}<p class="error" role="alert">{{.}}</p>{{end}}
{{if .ShowSessions}}
<p>Signed in as <strong>{{.Info.UserID}}</strong>. <a href="/">Back</a></p>
<h2>Your devices</h2>
<table>
<tr><th>Device</th><th>Signed in</th><th>Last seen</th><th></th></tr>
{{range .Sessions}}
<tr>
<td>{{.UserAgent}}<br><small>{{.IP}} · <code>{{printf "%.8s" .ID}}</code></small></td>
<td class="when">{{.CreatedAt.Format "2006-01-02 15:04"}}</td>
<td class="when">{{.LastSeen.Format "2006-01-02 15:04"}}</td>
<td>{{if .Current}}<em>this device</em>{{else}}<form method="post" action="/sessions/{{.ID}}/revoke"><button type="submit">Revoke</button></form>{{end}}</td>
</tr>
{{end}}
</table>
<form method="post" action="/logout-all"><button type="submit">Log out everywhere</button></form>
{{else if .LoggedIn}}
<p>Signed in as <strong>{{.Info.UserID}}</strong>.</p>
<dl>
<dt>Session</dt><dd><code>{{printf "%.8s" .Info.ID}}…</code></dd>
<dt>Since</dt><dd>{{.Info.CreatedAt.Format "2006-01-02 15:04:05 MST"}}</dd>
<dt>Ends by</dt><dd>{{.Info.ExpiresAt.Format "2006-01-02 15:04:05 MST"}}</dd>
</dl>
<nav>
<a href="/sessions">Your devices</a>
<form method="post" action="/logout"><button type="submit">Log out</button></form>
</nav>
{{else}}
<form method="post" action="/login">
<label>User name <input name="username" autocomplete="username" required></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">Log in</button>
</form>
<p>Demo users: alice / wonderland, bob / builder.</p>
{{end}}
</body>
</html>
`))

// render writes p as an HTML page with status code.
func (s *server) render(w http.ResponseWriter, code int, p page) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	if err := pageTmpl.Execute(w, p); err != nil {
		s.log.Error("example: rendering page", "error", err)
	}
}
