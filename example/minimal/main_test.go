package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sessionkit/sessionkit/internal/redistest"
)

// TestMinimal builds the program, runs it on a real redis-server, and
// walks the README's flow: a login without a user name refused, log in,
// read the account, a cross-site logout refused, log out.
func TestMinimal(t *testing.T) {
	srv := redistest.Start(t)
	bin := buildMinimal(t)
	addr := freeAddr(t)
	cmd := exec.Command(bin)
	cmd.Env = minimalEnv(addr, "REDIS_URL=redis://"+srv.Addr()+"/")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Timeout: 5 * time.Second}
	base := "http://" + addr
	do := func(method, path string, form url.Values) (int, string) {
		t.Helper()
		var resp *http.Response
		var err error
		for range 50 { // until the server listens
			if method == "POST" {
				resp, err = client.PostForm(base+path, form)
			} else {
				resp, err = client.Get(base + path)
			}
			if err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	if code, body := do("POST", "/login", url.Values{"user": {""}}); code != http.StatusBadRequest {
		t.Errorf("POST /login without a user = %d %q, want 400", code, body)
	}
	if code, body := do("POST", "/login", url.Values{"user": {"alice"}}); code != 200 {
		t.Fatalf("POST /login = %d %q", code, body)
	}
	if code, body := do("GET", "/account", nil); code != 200 || body != "alice prefers dark" {
		t.Errorf("GET /account = %d %q, want 200 alice prefers dark", code, body)
	}
	// A cross-site post, as a browser marks it, is refused and changes
	// nothing.
	req, _ := http.NewRequest("POST", base+"/logout", nil)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || len(resp.Header.Values("Set-Cookie")) > 0 {
		t.Errorf("cross-site POST /logout = %d, Set-Cookie %q; want 403 and none", resp.StatusCode, resp.Header.Values("Set-Cookie"))
	}
	if code, body := do("GET", "/account", nil); code != 200 || body != "alice prefers dark" {
		t.Errorf("GET /account after a cross-site logout = %d %q, want 200 alice prefers dark", code, body)
	}
	if code, body := do("POST", "/logout", nil); code != 200 {
		t.Errorf("POST /logout = %d %q", code, body)
	}
	if code, _ := do("GET", "/account", nil); code != http.StatusUnauthorized {
		t.Errorf("GET /account after logout = %d, want 401", code)
	}
	if n := srv.TotalCalls(t); n == 0 {
		t.Error("the program sent Redis no command")
	}
}

// TestMinimalRedisDown runs the program with no Redis at REDIS_URL, or at
// REDIS_HOST and REDIS_PORT: it stops at start-up, saying what is wrong
// and where to look, instead of listening and answering every login 503
// with nothing in its log.
func TestMinimalRedisDown(t *testing.T) {
	bin := buildMinimal(t)
	closed := freeAddr(t) // nothing listens there
	host, port, _ := net.SplitHostPort(closed)
	for name, vars := range map[string][]string{
		"REDIS_URL":  {"REDIS_URL=redis://" + closed + "/"},
		"REDIS_PORT": {"REDIS_HOST=" + host, "REDIS_PORT=" + port},
	} {
		t.Run(name, func(t *testing.T) {
			// A program that listens instead of stopping is killed after a while.
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin)
			cmd.Env = minimalEnv("127.0.0.1:0", vars...)
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), "connection refused to "+closed) || strings.Contains(string(out), "listening") {
				t.Errorf("with Redis down: %v, output %q; want a non-zero exit naming the refused address, before listening", err, out)
			}
		})
	}
}

// buildMinimal builds the program and returns the binary's path.
func buildMinimal(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "minimal")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// minimalEnv returns the program's environment: ADDR, the REDIS_ variables
// given ("REDIS_URL=..."), and the test's own environment without any
// SESSION_, REDIS_ or ADDR variable of the developer's.
func minimalEnv(addr string, redisVars ...string) []string {
	env := append([]string{"ADDR=" + addr}, redisVars...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SESSION_") && !strings.HasPrefix(kv, "REDIS_") && !strings.HasPrefix(kv, "ADDR=") {
			env = append(env, kv)
		}
	}
	return env
}
