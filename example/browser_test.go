package main

// TestBrowser drives the example in a real browser, Debian's chromium
// package, headless, through github.com/chromedp/chromedp: two browsers of
// one user (a laptop and a phone with a 390x844 viewport), a revoke from
// one that the other is told about, the confirmation of "Sign out of all
// other sessions", the phone layout (with an app's long one-word device
// name too), a login over the limit, and the
// pages of a Redis outage. It saves screenshots of the pages it visits
// into SESSIONKIT_SCREENSHOTS (`make screenshots` points it at docs/img),
// or else into the test's artifact directory (go test -artifacts keeps
// them).

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	cdpdevice "github.com/chromedp/chromedp/device"

	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/redisstore"
	"github.com/sessionkit/sessionkit/session"
)

const (
	// requireBrowserEnv set to "1" turns a missing chromium into a failure
	// rather than a skip; make test sets it.
	requireBrowserEnv = "SESSIONKIT_REQUIRE_BROWSER"
	// screenshotsEnv names the directory the screenshots go to.
	screenshotsEnv = "SESSIONKIT_SCREENSHOTS"
	// browserTimeout bounds the whole browser test, start-up included, and
	// stepTimeout each of its steps.
	browserTimeout = 2 * time.Minute
	stepTimeout    = 20 * time.Second
)

// chromium returns the path of the chromium binary, or skips the test
// (fails it with SESSIONKIT_REQUIRE_BROWSER=1) when there is none.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	hint := "install it with: apt-get install chromium (Debian, Ubuntu: chromium-browser)"
	if os.Getenv(requireBrowserEnv) == "1" {
		t.Fatalf("chromium not found in PATH and %s=1: %s", requireBrowserEnv, hint)
	}
	t.Skipf("chromium not found in PATH: skipping the browser test; %s, or set %s=1 to fail instead", hint, requireBrowserEnv)
	return ""
}

// screen is a browser's device: its user agent and viewport.
type screen struct{ info cdpdevice.Info }

func (s screen) Device() cdpdevice.Info { return s.info }

var (
	// laptop is Firefox on Windows, as far as the user agent goes: the
	// devices page names a session by it.
	laptop = screen{cdpdevice.Info{Name: "laptop", UserAgent: firefoxWindows, Width: 1280, Height: 860, Scale: 1}}
	// phone is an iPhone 13's 390x844 viewport and Safari user agent, at
	// twice (not three times) the pixels, for smaller screenshots.
	phone = func() screen {
		info := cdpdevice.IPhone13.Device()
		info.Scale = 2
		return screen{info}
	}()
)

// tab is one browser context (its own cookies) of the browser test.
type tab struct {
	t    *testing.T
	ctx  context.Context
	name string
	url  string // the example's base URL
	dir  string // where screenshots go
}

// step returns a context for one step of b, bounded by stepTimeout.
func (b *tab) step() (context.Context, context.CancelFunc) {
	return context.WithTimeout(b.ctx, stepTimeout)
}

func (b *tab) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := b.step()
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("%s: %s: %v", b.name, what, err)
	}
}

// load runs steps that navigate (a click, a submit, a navigation) and
// returns the status of the page that loads.
func (b *tab) load(what string, steps ...chromedp.Action[chromedp.Void]) int64 {
	b.t.Helper()
	ctx, cancel := b.step()
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, steps...)
	if err != nil {
		b.t.Fatalf("%s: %s: %v", b.name, what, err)
	}
	return resp.Status
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](b *tab, js string) T {
	b.t.Helper()
	ctx, cancel := b.step()
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		b.t.Fatalf("%s: evaluate %s: %v", b.name, js, err)
	}
	return v
}

// focusedID returns the id of the element that has the focus, once one
// has: Chromium applies autofocus at a rendering update after the page
// loads, which may come after the navigation returns, so it asks again
// for up to 2s while the body has the focus.
func focusedID(b *tab) string {
	b.t.Helper()
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if id := eval[string](b, `document.activeElement.id`); id != "" || time.Now().After(deadline) {
			return id
		}
	}
}

func (b *tab) text(sel string) string {
	b.t.Helper()
	ctx, cancel := b.step()
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("%s: text of %s: %v", b.name, sel, err)
	}
	return strings.TrimSpace(s)
}

// login fills the login form on the current page and submits it; it
// returns the status of the page that follows.
func (b *tab) login(user, password string) int64 {
	b.t.Helper()
	return b.load("log in",
		chromedp.SetValue(chromedp.ID("username"), user),
		chromedp.SetValue(chromedp.ID("password"), password),
		chromedp.Click(chromedp.CSS(`form[action="/login"] button[type=submit]`)),
	)
}

// typeName types name into the login form's empty user name field, as a
// user does (an input event per key), and reports whether the sign-in
// button is disabled then.
func (b *tab) typeName(name string) bool {
	b.t.Helper()
	eval[string](b, `document.getElementById("username").value = ""`)
	b.do("type the user name "+name, chromedp.SendKeys(chromedp.ID("username"), name))
	return eval[bool](b, `document.querySelector("form[action='/login'] button[type=submit]").disabled`)
}

// screenshot saves the whole page as name.png.
func (b *tab) screenshot(name string) {
	b.t.Helper()
	ctx, cancel := b.step()
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("%s: screenshot: %v", b.name, err)
	}
	if err := os.WriteFile(filepath.Join(b.dir, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// checkPage checks what every page must have: a title of its own, headings
// in order from one h1, nothing wider than the viewport (no horizontal
// scrolling, every control in view), and the script, which reloads a page
// restored from the back/forward cache (TestBrowserBackForwardCache).
func (b *tab) checkPage(title string) {
	b.t.Helper()
	if !eval[bool](b, `document.querySelector('script[src="/assets/app.js"]') !== null`) {
		b.t.Errorf("%s: %s: the page does not load /assets/app.js", b.name, title)
	}
	if got := eval[string](b, `document.title`); got != title+" · sessionkit example" {
		b.t.Errorf("%s: title %q, want %q", b.name, got, title+" · sessionkit example")
	}
	headings := eval[[]int](b, `[...document.querySelectorAll("h1,h2,h3,h4,h5,h6")].map(h => +h.tagName[1])`)
	for i, level := range headings {
		if (i == 0 && level != 1) || (i > 0 && (level == 1 || level > headings[i-1]+1)) {
			b.t.Errorf("%s: %s: heading levels %v, want one h1 first and no level skipped", b.name, title, headings)
			break
		}
	}
	wide := eval[[]string](b, `(() => {
		const w = document.documentElement.clientWidth, out = [];
		if (document.documentElement.scrollWidth > w) out.push("page scrolls sideways: " + document.documentElement.scrollWidth + " > " + w);
		for (const e of document.querySelectorAll("body *")) {
			const r = e.getBoundingClientRect();
			if (r.width > 0 && (r.left < -0.5 || r.right > w + 0.5)) out.push(e.tagName + "." + e.className + " spans " + r.left + ".." + r.right);
		}
		return out;
	})()`)
	if len(wide) > 0 {
		b.t.Errorf("%s: %s: wider than the viewport:\n%s", b.name, title, strings.Join(wide, "\n"))
	}
}

// startBrowser starts chromium for the example e, ended with t, and
// returns the function that opens a tab in a browser context of its own
// (its own cookies) as device s, saving screenshots into dir.
func startBrowser(t *testing.T, e *e2e, dir string) (open func(name string, s screen) *tab) {
	t.Helper()
	bin := chromium(t)
	ctx, cancel := context.WithTimeout(t.Context(), browserTimeout)
	t.Cleanup(cancel)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		// Only the example, on 127.0.0.1: every other host name fails.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
		chromedp.Flag("no-proxy-server", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("lang", "en-US"),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // chromium refuses to run as root with its sandbox
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancelAlloc)
	browser, cancelBrowser := chromedp.NewContext(alloc)
	t.Cleanup(cancelBrowser)
	if err := chromedp.Do(browser); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	return func(name string, s screen) *tab {
		ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
		t.Cleanup(cancel)
		// The tab's target lives as long as the context that creates it:
		// create it here, not within a step's timeout.
		if err := chromedp.Do(ctx); err != nil {
			t.Fatalf("%s: open a browser context: %v", name, err)
		}
		b := &tab{t: t, ctx: ctx, name: name, url: e.url, dir: dir}
		b.do("emulate the device", chromedp.Emulate(s))
		return b
	}
}

func TestBrowser(t *testing.T) {
	chromium(t) // skip before starting Redis
	e := startExample(t)
	dir := os.Getenv(screenshotsEnv)
	if dir == "" {
		dir = t.ArtifactDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	open := startBrowser(t, e, dir)
	pc, lp := open("phone", phone), open("laptop", laptop)

	// The laptop asks for its devices: the login page, user name focused.
	if code := lp.load("open /sessions", chromedp.Navigate(e.url+"/sessions")); code != 200 {
		t.Fatalf("laptop: GET /sessions signed out = %d, want the login page", code)
	}
	lp.checkPage("Sign in")
	if loc := eval[string](lp, `location.pathname + location.search`); loc != "/login?next=%2Fsessions" {
		t.Errorf("laptop: signed out, /sessions led to %s, want /login?next=%%2Fsessions", loc)
	}
	if id := focusedID(lp); id != "username" {
		t.Errorf("laptop: focus on %q on load, want the user name field", id)
	}
	lp.screenshot("login")
	// A wrong password: the form again, the user name kept and focused.
	if code := lp.login("alice", "not-her-password"); code != 401 {
		t.Errorf("laptop: wrong password = %d, want 401", code)
	}
	if id, name := focusedID(lp), eval[string](lp, `document.getElementById("username").value`); id != "username" || name != "alice" {
		t.Errorf("laptop: after a wrong password focus on %q with user name %q, want the user name field, alice", id, name)
	}
	if got := lp.text(`[role=alert]`); got != "Wrong user name or password." {
		t.Errorf("laptop: alert %q after a wrong password", got)
	}
	// The right one: back to the page it asked for.
	if code := lp.login("alice", "wonderland"); code != 200 {
		t.Fatalf("laptop: login = %d", code)
	}
	if loc := eval[string](lp, `location.pathname`); loc != "/sessions" {
		t.Errorf("laptop: after login at %s, want /sessions, the page it asked for", loc)
	}

	// The phone logs in from the home page, with a double click on the
	// button, and opens its devices. The script sends the form once: sent
	// twice, it would make two sessions (the devices below would list two
	// iPhones) and the second would abort the first's page load, which
	// fails this step.
	pc.load("open /", chromedp.Navigate(e.url+"/"))
	pc.checkPage("Sign in")
	if code := pc.load("log in with a double click",
		chromedp.SetValue(chromedp.ID("username"), "alice"),
		chromedp.SetValue(chromedp.ID("password"), "wonderland"),
		chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			_, err := chromedp.Evaluate[bool](`(() => {
				const b = document.querySelector('form[action="/login"] button[type=submit]');
				b.click();
				setTimeout(() => b.click(), 20);
				return true;
			})()`)(ctx, t)
			return err
		}),
	); code != 200 {
		t.Fatalf("phone: login = %d", code)
	}
	pc.checkPage("Dashboard")
	pc.screenshot("dashboard-phone")
	pc.load("follow Your devices", chromedp.Click(chromedp.CSS(`a[href="/sessions"]`)))
	pc.checkPage("Your devices")
	names := eval[[]string](pc, `[...document.querySelectorAll(".device h3")].map(h => h.textContent.trim())`)
	if strings.Join(names, "|") != "Safari on iPhone This device|Firefox on Windows" {
		t.Errorf("phone: devices %q, want this iPhone first with its badge, then Firefox on Windows", names)
	}
	if labels := eval[[]string](pc, `[...document.querySelectorAll(".revoke button")].map(b => b.getAttribute("aria-label"))`); strings.Join(labels, "|") != "Revoke Firefox on Windows" {
		t.Errorf("phone: revoke buttons named %q, want one, Revoke Firefox on Windows", labels)
	}
	// The script showed the exact times in the browser's zone, not the
	// server's UTC.
	if titles := eval[[]string](pc, `[...document.querySelectorAll("time")].map(t => t.title)`); len(titles) == 0 || strings.HasSuffix(titles[0], "UTC") {
		t.Errorf("phone: <time> titles %q, want the browser's local format", titles)
	}
	pc.screenshot("devices-phone")
	lp.load("reload /sessions", chromedp.Reload())
	lp.checkPage("Your devices")
	lp.screenshot("devices")

	// The phone revokes the laptop, and says so.
	if code := pc.load("revoke the laptop", chromedp.Click(chromedp.CSS(`button[aria-label="Revoke Firefox on Windows"]`))); code != 200 {
		t.Fatalf("phone: revoke = %d", code)
	}
	if got, want := pc.text(".notice"), "Signed out Firefox on Windows."; got != want {
		t.Errorf("phone: after the revoke the notice says %q, want %q", got, want)
	}
	// The laptop's next click tells it.
	lp.load("follow Back to your dashboard", chromedp.Click(chromedp.CSS(`main a[href="/"]`)))
	lp.checkPage("Sign in")
	if got := lp.text(".notice"); got != noticeEndedElsewhere {
		t.Errorf("laptop: revoked, its next click shows %q, want %q", got, noticeEndedElsewhere)
	}
	lp.screenshot("signed-out-elsewhere")

	// Signed in again, the laptop is signed out once more by the phone's
	// main action, after a confirmation.
	if code := lp.login("alice", "wonderland"); code != 200 {
		t.Fatalf("laptop: login again = %d", code)
	}
	dialogs := pc.acceptDialogs()
	pc.load("reload /sessions", chromedp.Reload())
	pc.load("sign out of all other sessions", chromedp.Click(chromedp.CSS(`form[action="/logout-others"] button`)))
	select {
	case msg := <-dialogs:
		if !strings.HasPrefix(msg, "Sign out of 1 other session?") {
			t.Errorf("phone: confirmation %q", msg)
		}
	default:
		t.Error("phone: sign out of all other sessions asked for no confirmation")
	}
	if got := pc.text(".notice"); got != noticeOthers {
		t.Errorf("phone: after signing out the others the notice says %q, want %q", got, noticeOthers)
	}

	// An app whose user agent's product is one long word signs in on a
	// phone-sized screen: its device name (cut to 64 bytes) wraps on its
	// dashboard and in the phone's list, rather than make the pages scroll
	// sideways.
	app := open("app", screen{cdpdevice.Info{Name: "app", UserAgent: appUA, Width: 390, Height: 844, Scale: 1, Mobile: true, Touch: true}})
	app.load("open /login", chromedp.Navigate(e.url+"/login"))
	if code := app.login("alice", "wonderland"); code != 200 {
		t.Fatalf("app: login = %d", code)
	}
	app.checkPage("Dashboard")
	pc.load("reload /sessions", chromedp.Reload())
	pc.checkPage("Your devices")
	pc.load("revoke the app", chromedp.Click(chromedp.CSS(`.revoke button`)))
	pc.checkPage("Your devices")
	if got, want := pc.text(".notice"), "Signed out "+appDevice+"."; got != want {
		t.Errorf("phone: after revoking the app the notice says %q, want %q", got, want)
	}

	// Someone guesses carol's password through the API (bodies without a
	// password: counted, refused before any password check); the laptop's
	// next try for carol, the 6th, gets the login page saying when to
	// try again, carol kept, the button waiting out Retry-After.
	api := &http.Client{Timeout: 10 * time.Second}
	for i := range loginUserLimit {
		if r := e.send(api, "POST", "/api/login", `{"username":"carol"}`); r.code != http.StatusBadRequest {
			t.Fatalf("API login %d for carol without a password = %d, want 400", i+1, r.code)
		}
	}
	lp.load("open /login", chromedp.Navigate(e.url+"/login"))
	if code := lp.login("carol", "guess"); code != http.StatusTooManyRequests {
		t.Errorf("laptop: 6th login for carol = %d, want 429", code)
	}
	lp.checkPage("Sign in")
	if got := lp.text(".alert"); got != "Too many sign-in attempts. Try again in 15 minutes." {
		t.Errorf("laptop: the 429 login page says %q", got)
	}
	if user := eval[string](lp, `document.getElementById("username").value`); user != "carol" {
		t.Errorf("laptop: the 429 login page's user name is %q, want carol", user)
	}
	button := eval[[]any](lp, `(b => [b.disabled, b.textContent])(document.querySelector("button[type=submit]"))`)
	if len(button) != 2 || button[0] != true || !regexp.MustCompile(`^Sign in \(1[45]:[0-5][0-9]\)$`).MatchString(fmt.Sprint(button[1])) {
		t.Errorf("laptop: the 429 login page's button is %v, want disabled, counting down from 15:00", button)
	}
	lp.screenshot("login-limited")
	// Another user name has its own limit: the button can be pressed for
	// it, and waits again for carol, however spelt.
	for _, tc := range []struct {
		name     string
		disabled bool
	}{{"bob", false}, {" Carol", true}} {
		if got := lp.typeName(tc.name); got != tc.disabled {
			t.Errorf("laptop: the 429 login page for carol, user name %q typed: button disabled %v, want %v", tc.name, got, tc.disabled)
		}
	}

	// Redis goes down. The phone, still signed in, gets a notice and no
	// login form; the laptop, on the login form it opened before, cannot
	// sign in and is told so.
	lp.load("open /", chromedp.Navigate(e.url+"/"))
	e.redis.Stop(t)
	if code := pc.load("open /sessions", chromedp.Navigate(e.url+"/sessions")); code != 503 {
		t.Errorf("phone: GET /sessions during the outage = %d, want 503", code)
	}
	pc.checkPage("Temporarily unavailable")
	if h1, forms := pc.text("h1"), eval[int](pc, `document.querySelectorAll("input").length`); h1 != "We can't reach your session right now" || forms != 0 {
		t.Errorf("phone: during the outage the page says %q with %d inputs, want a notice and no login form", h1, forms)
	}
	pc.screenshot("outage-phone")
	if code := lp.login("alice", "wonderland"); code != 503 {
		t.Errorf("laptop: login during the outage = %d, want 503", code)
	}
	lp.checkPage("Can't sign in right now")
	if disabled := eval[bool](lp, `document.querySelector("button[type=submit]").disabled`); !disabled {
		t.Error("laptop: the sign-in button does not wait for Retry-After during the outage")
	}
	if disabled := lp.typeName("bob"); !disabled {
		t.Error("laptop: during the outage the sign-in button stops waiting for another user name")
	}
	if got := lp.text("h1"); got != "We can't sign you in right now" {
		t.Errorf("laptop: login during the outage says %q", got)
	}
	lp.screenshot("login-outage")

	// A page that does not exist, and a form address opened as a page.
	if code := lp.load("open /nowhere", chromedp.Navigate(e.url+"/nowhere")); code != 404 {
		t.Errorf("laptop: GET /nowhere = %d, want 404", code)
	}
	lp.checkPage("Page not found")
	if code := pc.load("open /logout", chromedp.Navigate(e.url+"/logout")); code != 405 {
		t.Errorf("phone: GET /logout = %d, want 405", code)
	}
	pc.checkPage("Not a page")
	t.Logf("screenshots in %s", dir)
}

// acceptDialogs accepts every dialog that b's pages open (a form's
// confirmation), and returns their messages.
func (b *tab) acceptDialogs() <-chan string {
	dialogs := make(chan string, 8)
	go func() {
		for ev, err := range chromedp.Events(b.ctx, cdppage.JavascriptDialogOpening) {
			if err != nil {
				return
			}
			dialogs <- ev.Message
			// Should accepting fail, the form is not sent and the click
			// that sent it times out, failing the test.
			_, _ = chromedp.Call(b.ctx, cdppage.HandleJavaScriptDialog, cdppage.HandleJavaScriptDialogParams{Accept: true})
		}
	}()
	return dialogs
}

// back goes back in b's history, as the Back button does, without waiting
// for a page to load: a page restored from the back/forward cache fires no
// load event.
func (b *tab) back() {
	b.t.Helper()
	b.do("go back", chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		h, err := cdp.Call(ctx, t, cdppage.GetNavigationHistory, cdp.Empty{})
		if err != nil {
			return err
		}
		if h.CurrentIndex < 1 {
			return fmt.Errorf("no page to go back to")
		}
		_, err = cdp.Call(ctx, t, cdppage.NavigateToHistoryEntry, cdppage.NavigateToHistoryEntryParams{EntryID: h.Entries[h.CurrentIndex-1].ID})
		return err
	}))
}

// settledTitle returns the title of b's page once it has loaded and kept
// its address for a second, or after stepTimeout: a page that reloads
// itself (and so replaces the document, failing an evaluation meanwhile)
// settles on the page it reloads to.
func (b *tab) settledTitle() string {
	b.t.Helper()
	ctx, cancel := b.step()
	defer cancel()
	var last, title string
	since := time.Now()
	for ; ctx.Err() == nil; time.Sleep(50 * time.Millisecond) {
		v, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`document.readyState === "complete" ? [location.href, document.title] : []`))
		if err != nil || len(v) != 2 {
			last, since = "", time.Now()
			continue
		}
		if v[0] != last {
			last, since = v[0], time.Now()
		}
		title = v[1]
		if time.Since(since) >= time.Second {
			break
		}
	}
	return strings.TrimSuffix(title, " · sessionkit example")
}

// TestBrowserBackForwardCache checks that Back never shows a signed-in
// page from the browser's back/forward cache after its session ended while
// the browser was away from it, on another device ("Log out everywhere")
// or by its idle timeout: the page's script loads it again, and the
// browser gets the login page.
//
// Cache-Control: no-store does not keep a page out of Chromium's cache:
// Chromium keeps it out only when an HttpOnly cookie changed after the
// page loaded, and an end of the session on the server changes none. With
// the example's defaults each signed-in page's own answer overwrites the
// marker cookie, which this chromium happens to count as such a change;
// a browser whose marker expired before its session, or another browser,
// caches the page all the same. The test sets an idle timeout under
// markerMargin plus a second, for which the example sets no marker: no
// cookie changes, and the page goes into the cache. The test checks that
// the login page came from the script's reload, so that it cannot pass
// because the cache was not used.
func TestBrowserBackForwardCache(t *testing.T) {
	chromium(t) // skip before starting Redis
	const idle = markerMargin + 500*time.Millisecond
	e := startTestApp(t, redistest.Start(t), redisstore.Config{}, session.Config{IdleTimeout: idle})
	away := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, "<!doctype html><title>Elsewhere</title><p>Another site.")
	}))
	t.Cleanup(away.Close)
	open := startBrowser(t, e, t.ArtifactDir())
	for _, tc := range []struct {
		name, path, title string
		end               func() // ends the browser's session while it is away
	}{
		{"devices, log out everywhere", "/sessions", "Your devices", func() {
			token, _ := e.apiLogin("alice", "wonderland")
			if r := e.send(&http.Client{Timeout: 10 * time.Second}, "POST", "/api/logout-all", "", "Authorization", "Bearer "+token); r.code != http.StatusNoContent {
				t.Fatalf("another device's POST /api/logout-all = %d %s", r.code, r.body)
			}
		}},
		{"dashboard, idle timeout", "/", "Dashboard", func() { time.Sleep(idle + time.Second) }},
	} {
		b := open(tc.name, laptop)
		b.load("open /login", chromedp.Navigate(e.url+"/login?next="+url.QueryEscape(tc.path)))
		if code := b.login("alice", "wonderland"); code != http.StatusOK {
			t.Fatalf("%s: login = %d", b.name, code)
		}
		b.checkPage(tc.title)
		b.load("go to another site", chromedp.Navigate(away.URL))
		tc.end()
		b.back()
		// The script reloads only a page restored from the cache: a
		// login page that a reload did not bring means that Back
		// loaded the page anew, and the test checked nothing.
		switch got, nav := b.settledTitle(), eval[string](b, `performance.getEntriesByType("navigation")[0].type`); {
		case got != "Sign in":
			t.Errorf("%s: Back after the session ended shows %q, want the login page", b.name, got)
		case nav != "reload":
			t.Errorf("%s: Back led to the login page by a navigation of type %q, not the reload of a page restored from the back/forward cache: the test checked nothing", b.name, nav)
		}
	}
}

// TestBrowserNotices checks that a page says what a form did only to the
// browser that sent the form, once: a link that names a notice
// (?notice=others on the devices page, ?notice=everywhere on the login
// page, or in the next of a login) shows none; signing out the other
// sessions shows its notice on the devices page it redirects to, with the
// notice cookie that SameSite=Strict lets through that redirect, and not
// after a reload; log out everywhere answers with the login page that says
// so, although its answer clears the site's cookies.
func TestBrowserNotices(t *testing.T) {
	chromium(t) // skip before starting Redis
	e := startExample(t)
	open := startBrowser(t, e, t.ArtifactDir())
	b := open("laptop", laptop)
	notice := func() string {
		return eval[string](b, `(n => n ? n.textContent : "")(document.querySelector(".notice"))`)
	}
	for _, path := range []string{"/login?notice=everywhere", "/?notice=signed-out"} {
		b.load("open "+path, chromedp.Navigate(e.url+path))
		if got := notice(); got != "" {
			t.Errorf("a link to %s shows the notice %q", path, got)
		}
	}
	b.load("open a login link", chromedp.Navigate(e.url+"/login?next="+url.QueryEscape("/sessions?notice=others")))
	if code := b.login("alice", "wonderland"); code != http.StatusOK {
		t.Fatalf("login = %d", code)
	}
	if loc, got := eval[string](b, `location.pathname`), notice(); loc != "/sessions" || got != "" {
		t.Errorf("a login from a link with next=/sessions?notice=others led to %s with the notice %q, want /sessions and none", loc, got)
	}
	b.load("open /sessions?notice=others", chromedp.Navigate(e.url+"/sessions?notice=others"))
	if got := notice(); got != "" {
		t.Errorf("a link to /sessions?notice=others shows the notice %q", got)
	}

	e.apiLogin("alice", "wonderland") // another device, to sign out
	b.load("reload /sessions", chromedp.Reload())
	dialogs := b.acceptDialogs()
	send := func(form string) {
		t.Helper()
		b.load("send "+form, chromedp.Click(chromedp.CSS(`form[action="`+form+`"] button`)))
		select {
		case <-dialogs:
		default:
			t.Errorf("%s asked for no confirmation", form)
		}
	}
	send("/logout-others")
	if got := notice(); got != noticeOthers {
		t.Errorf("after signing out the others the notice says %q, want %q", got, noticeOthers)
	}
	b.load("reload /sessions", chromedp.Reload())
	if got := notice(); got != "" {
		t.Errorf("reloaded, the devices page says %q again", got)
	}

	send("/logout-all")
	b.checkPage("Sign in")
	if got := notice(); got != noticeEverywhere {
		t.Errorf("log out everywhere answers with the notice %q, want %q", got, noticeEverywhere)
	}
	b.load("open /login", chromedp.Navigate(e.url+"/login"))
	if got := notice(); got != "" {
		t.Errorf("the login page after log out everywhere says %q again", got)
	}
}

// TestBrowserConfirmPassword signs out the other sessions from a session
// whose login is no longer recent (REAUTH_AFTER=0: never), in Chromium on
// a phone's screen: the form answers the page asking for the password,
// which fits the screen, has the password field focused, says so after a
// wrong one and keeps the other device signed in, and with the right one
// signs it out and shows the devices page's notice.
func TestBrowserConfirmPassword(t *testing.T) {
	chromium(t) // skip before starting Redis
	t.Setenv("REAUTH_AFTER", "0")
	e := startExample(t)
	open := startBrowser(t, e, t.ArtifactDir())
	b := open("phone", phone)
	b.load("open /login", chromedp.Navigate(e.url+"/login?next=%2Fsessions"))
	if code := b.login("alice", "wonderland"); code != http.StatusOK {
		t.Fatalf("login = %d", code)
	}
	other, otherID := e.apiLogin("alice", "wonderland")
	b.load("reload /sessions", chromedp.Reload())
	dialogs := b.acceptDialogs()
	b.load("sign out the others", chromedp.Click(chromedp.CSS(`form[action="/logout-others"] button`)))
	<-dialogs
	b.checkPage("Confirm it's you")
	if id := focusedID(b); id != "password" {
		t.Errorf("the page asking for the password has %q focused, want the password field", id)
	}
	confirm := func(password string) int64 {
		return b.load("confirm with "+password,
			chromedp.SetValue(chromedp.ID("password"), password),
			chromedp.Click(chromedp.CSS(`form[action="/logout-others"] button[type=submit]`)))
	}
	if code := confirm("guess"); code != http.StatusForbidden || b.text(".alert") != "Wrong password." {
		t.Errorf("a wrong password = %d saying %q, want 403 and \"Wrong password.\"", code, b.text(".alert"))
	}
	api := &http.Client{Timeout: 10 * time.Second}
	if r := e.send(api, "GET", "/api/me", "", "Authorization", "Bearer "+other); r.code != http.StatusOK {
		t.Fatalf("the other device after a wrong password: GET /api/me = %d, want 200", r.code)
	}
	if code := confirm("wonderland"); code != http.StatusOK {
		t.Errorf("the right password = %d, want the devices page", code)
	}
	b.checkPage("Your devices")
	if got := b.text(".notice"); got != noticeOthers {
		t.Errorf("after the confirmation the devices page says %q, want %q", got, noticeOthers)
	}
	if _, ok := e.record(otherID); ok {
		t.Error("the other device's session is still in Redis")
	}
}
