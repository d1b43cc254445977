package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/middleware"
	"github.com/sessionkit/sessionkit/redisstore"
	"github.com/sessionkit/sessionkit/session"
)

// TestBrowserCrossSiteLinkKeepsLogin signs in, in chromium, to an app
// whose session cookie is SameSite=Strict, then follows a link from
// another site to a page of the app that stores a value for visitors.
// Chromium sends that navigation without the cookie (Strict), and would
// take the cookie of a new anonymous session from its answer, replacing
// the login: the session package starts none on such a request
// (Sec-Fetch-Site: cross-site), so the user is still signed in after it.
// Both sites are HTTPS (chromium sends Sec-Fetch-* to secure origins
// only), under names that chromium resolves to 127.0.0.1 alone.
func TestBrowserCrossSiteLinkKeepsLogin(t *testing.T) {
	bin := chromium(t)
	r := redistest.Start(t)
	store, err := redisstore.Open(redisstore.Config{Addr: r.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	m, err := session.New(store, session.Config{
		Keys:     [][]byte{[]byte("cross-site test key of 32 bytes!")},
		SameSite: http.SameSiteStrictMode,
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var hooked []string // what the linked page saw
	app := http.NewServeMux()
	app.HandleFunc("GET /login", func(w http.ResponseWriter, r *http.Request) {
		if _, err := session.Create(r.Context(), "alice"); err != nil {
			t.Errorf("Create: %v", err)
		}
		io.WriteString(w, "signed in")
	})
	app.HandleFunc("GET /landing", func(w http.ResponseWriter, r *http.Request) {
		err := session.Put(r.Context(), "came_from", "elsewhere")
		mu.Lock()
		hooked = append(hooked, fmt.Sprintf("Sec-Fetch-Site %q, cookie sent %v, Put %v", r.Header.Get("Sec-Fetch-Site"), r.Header.Get("Cookie") != "", err))
		mu.Unlock()
		io.WriteString(w, "welcome")
	})
	app.HandleFunc("GET /me", func(w http.ResponseWriter, r *http.Request) {
		u, _ := session.UserID(r.Context())
		io.WriteString(w, "user="+u)
	})
	appSrv := httptest.NewTLSServer(middleware.Sessions(m)(app))
	t.Cleanup(appSrv.Close)
	appURL := fmt.Sprintf("https://app.test:%d", appSrv.Listener.Addr().(*net.TCPAddr).Port)
	other := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `<!doctype html><title>elsewhere</title><a id="go" href="%s/landing">the app</a>`, appURL)
	}))
	t.Cleanup(other.Close)
	otherURL := fmt.Sprintf("https://other.test:%d/", other.Listener.Addr().(*net.TCPAddr).Port)

	ctx, cancel := context.WithTimeout(t.Context(), browserTimeout)
	defer cancel()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.Flag("host-resolver-rules", "MAP app.test 127.0.0.1, MAP other.test 127.0.0.1, MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
		chromedp.Flag("ignore-certificate-errors", true), // httptest's certificate names neither
		chromedp.Flag("no-proxy-server", true),
		chromedp.Flag("disable-gpu", true),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox)
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()
	me := func() string {
		t.Helper()
		if err := chromedp.Do(browser, chromedp.Navigate(appURL+"/me")); err != nil {
			t.Fatal(err)
		}
		body, err := chromedp.Run(browser, chromedp.Evaluate[string]("document.body.innerText"))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(body)
	}
	if err := chromedp.Do(browser, chromedp.Navigate(appURL+"/login")); err != nil {
		t.Fatal(err)
	}
	if got := me(); got != "user=alice" {
		t.Fatalf("after signing in: %q, want user=alice", got)
	}
	if err := chromedp.Do(browser,
		chromedp.Navigate(otherURL),
		chromedp.Click(chromedp.ID("go")),
		chromedp.WaitVisible(chromedp.CSS("body")),
	); err != nil {
		t.Fatal(err)
	}
	// The click's navigation is under way, not done, when Click returns:
	// wait for the landing page, whose answer (and any cookie in it)
	// chromium has taken by then.
	for deadline := time.Now().Add(stepTimeout); ; time.Sleep(50 * time.Millisecond) {
		body, err := chromedp.Run(browser, chromedp.Evaluate[string]("document.body ? document.body.innerText : ''"))
		if err == nil && strings.TrimSpace(body) == "welcome" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the link from the other site never showed the app's page (last: %q, %v)", body, err)
		}
	}
	mu.Lock()
	t.Logf("the linked page saw: %s", strings.Join(hooked, "; "))
	mu.Unlock()
	if got := me(); got != "user=alice" {
		t.Errorf("after following a link from another site: %q, want user=alice (a new session's cookie replaced the login)", got)
	}
}
