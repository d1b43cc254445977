package scscompat_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/session"
)

// copyCookie returns a new browser that holds the scs cookie of from: a
// copy of it, as an attacker who read it would hold.
func copyCookie(t *testing.T, from *http.Client, u string) *http.Client {
	t.Helper()
	token := jarCookie(from, u, "session")
	if token == "" {
		t.Fatal("no scs cookie to copy")
	}
	c := newJar(t)
	pu, _ := url.Parse(u)
	c.Jar.SetCookies(pu, []*http.Cookie{{Name: "session", Value: token, Path: "/"}})
	return c
}

// TestSCSEndsWithTheBrowsersLoginOrLogout has a browser hold a session of
// sessionkit's and, beside it, an scs session of real scs: a logout or a
// login of sessionkit in that browser expires the scs cookie and ends its
// scs session, so that a copy of that cookie migrates into nothing.
func TestSCSEndsWithTheBrowsersLoginOrLogout(t *testing.T) {
	srv := redistest.Start(t)
	app := newSCSApp(t, srv, time.Hour)
	_, ts := newImportManager(t, srv, session.Config{CookieName: "sk"}, loginLogout(t))
	for _, action := range []string{"/logout", "/login"} {
		t.Run(action, func(t *testing.T) {
			browser := newJar(t)
			get(t, browser, ts.URL+"/login")     // sessionkit's user 7 first
			get(t, browser, app.ts.URL+"/login") // then scs's 42, beside it
			copied := copyCookie(t, browser, app.ts.URL)
			if len(scsKeys(t, srv)) != 1 {
				t.Fatalf("scs records: %q, want the browser's", scsKeys(t, srv))
			}
			get(t, browser, ts.URL+action)
			if jarCookie(browser, ts.URL, "session") != "" {
				t.Errorf("the scs cookie outlived %s", action)
			}
			if keys := scsKeys(t, srv); len(keys) != 0 {
				t.Errorf("scs records after %s: %d, want none", action, len(keys))
			}
			if body, _ := get(t, copied, ts.URL+"/"); body != "" {
				t.Errorf("a copy of the scs cookie after %s: user %q, want anonymous", action, body)
			}
		})
	}
}

// TestSCSRevokeOthersEndsUnmigrated logs user 42 in on two devices with
// real scs. One migrates and, after a password change, ends the others:
// the other device, and a copy of its cookie, then migrate into nothing.
func TestSCSRevokeOthersEndsUnmigrated(t *testing.T) {
	srv := redistest.Start(t)
	app := newSCSApp(t, srv, time.Hour)
	var m *session.Manager
	m, ts := newImportManager(t, srv, session.Config{CookieName: "sk"}, func(w io.Writer, r *http.Request) {
		ctx := r.Context()
		if r.URL.Path == "/password" {
			if _, err := m.RevokeOthers(ctx); err != nil {
				t.Errorf("RevokeOthers = %v", err)
			}
		}
		id, _ := session.UserID(ctx)
		fmt.Fprint(w, id)
	})
	laptop, phone := newJar(t), newJar(t)
	get(t, laptop, app.ts.URL+"/login")
	get(t, phone, app.ts.URL+"/login")
	copied := copyCookie(t, phone, app.ts.URL)
	if body, _ := get(t, laptop, ts.URL+"/password"); body != "42" {
		t.Fatalf("laptop: user %q, want 42", body)
	}
	if body, _ := get(t, copied, ts.URL+"/"); body != "" {
		t.Errorf("a copy of the phone's scs cookie after RevokeOthers: user %q, want anonymous", body)
	}
	if body, _ := get(t, phone, ts.URL+"/"); body != "" {
		t.Errorf("the phone after RevokeOthers: user %q, want anonymous", body)
	}
	if body, _ := get(t, laptop, ts.URL+"/"); body != "42" {
		t.Errorf("the laptop after RevokeOthers: user %q, want 42", body)
	}
	if list, err := m.List(context.Background(), "42"); err != nil || len(list) != 1 {
		t.Errorf("List(42) = %d sessions, %v; want the laptop's", len(list), err)
	}
	if n, _ := redis.Int(srv.Do(t, "EXISTS", "scs_migrated:user:42"), nil); n != 1 {
		t.Error("no mark of user 42")
	}
}
