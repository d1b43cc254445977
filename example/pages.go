package main

import (
	"html/template"
	"net/http"

	"github.com/sessionkit/sessionkit/session"
)

// page is what the HTML template shows.
type page struct {
	LoggedIn bool
	Info     session.Info
	Error    string
}

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sessionkit example</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 32rem; margin: 3rem auto; padding: 0 1rem; color: #222; }
h1 { font-size: 1.4rem; }
form { display: grid; gap: .6rem; margin-top: 1rem; }
input, button { font: inherit; padding: .45rem .6rem; }
button { cursor: pointer; }
.error { color: #a00; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .3rem 1rem; }
dt { color: #666; }
</style>
</head>
<body>
<h1>sessionkit example</h1>
{{with .Error}}<p class="error" role="alert">{{.}}</p>{{end}}
{{if .LoggedIn}}
<p>Signed in as <strong>{{.Info.UserID}}</strong>.</p>
<dl>
<dt>Session</dt><dd><code>{{printf "%.8s" .Info.ID}}…</code></dd>
<dt>Since</dt><dd>{{.Info.CreatedAt.Format "2006-01-02 15:04:05 MST"}}</dd>
<dt>Ends by</dt><dd>{{.Info.ExpiresAt.Format "2006-01-02 15:04:05 MST"}}</dd>
</dl>
<form method="post" action="/logout"><button type="submit">Log out</button></form>
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
