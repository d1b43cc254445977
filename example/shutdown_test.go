package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/internal/syncbuf"
	"github.com/sessionkit/sessionkit/middleware"
	"github.com/sessionkit/sessionkit/redisstore"
	"github.com/sessionkit/sessionkit/session"
)

// TestSignalShutdown builds the example, runs it on a real redis-server and
// sends it SIGTERM, or SIGINT, while a login is in flight: the handler is
// reading the request body (it asked for it with 100 Continue) when the
// signal arrives. New connections are then refused, the login still
// completes with 200 and its session is in Redis, and the process exits
// with status 0 after closing the store.
func TestSignalShutdown(t *testing.T) {
	bin := buildExample(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			r := redistest.Start(t)
			p := startBinary(t, bin, "REDIS_URL=redis://"+r.Addr(), "SESSION_KEYS="+testKeys(), "ADDR=127.0.0.1:0")
			addr := p.listening(t)

			// A login that is in its handler, waiting for its body.
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(30 * time.Second))
			body := `{"username":"alice","password":"wonderland"}`
			fmt.Fprintf(conn, "POST /api/login HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", addr, len(body))
			br := bufio.NewReader(conn)
			if status, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(status, "HTTP/1.1 100 ") {
				t.Fatalf("want 100 Continue once the handler reads the body, got %q, %v", status, err)
			}
			if blank, err := br.ReadString('\n'); err != nil || blank != "\r\n" {
				t.Fatalf("after 100 Continue: %q, %v", blank, err)
			}

			if err := p.cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 10*time.Second, "the listener to close after "+sig.String(), func() bool {
				c, err := net.DialTimeout("tcp", addr, time.Second)
				if err != nil {
					return true
				}
				c.Close()
				return false
			})

			// The login goes on: its body, then the answer.
			io.WriteString(conn, body)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("the in-flight login got no answer: %v", err)
			}
			defer resp.Body.Close()
			var login struct {
				Token     string `json:"token"`
				SessionID string `json:"session_id"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&login); resp.StatusCode != http.StatusOK || err != nil || login.SessionID == "" {
				t.Fatalf("in-flight login = %d (%v), want 200 with a session", resp.StatusCode, err)
			}
			if resp.Header.Get("Set-Cookie") == "" {
				t.Error("the in-flight login set no cookie")
			}

			if code := p.wait(t); code != 0 {
				t.Errorf("exit status after %v = %d, want 0\n%s", sig, code, p.log.String())
			}
			rec, err := redis.Bytes(r.Do(t, "GET", "session:"+login.SessionID), nil)
			if err != nil || !strings.Contains(string(rec), `"user_id":"alice"`) {
				t.Errorf("session record of the in-flight login after shutdown = %q, %v; want alice's", rec, err)
			}
			out := p.log.String()
			for _, want := range []string{"example: shutting down", "example: stopped"} {
				if !strings.Contains(out, want) {
					t.Errorf("log lacks %q:\n%s", want, out)
				}
			}
		})
	}
}

// TestSignalShutdownIdle sends SIGTERM to an example with an idle
// keep-alive connection open: it exits 0 at once, without waiting for the
// grace period. Its log holds one configuration line and neither the
// Redis password nor the signing key.
func TestSignalShutdownIdle(t *testing.T) {
	bin := buildExample(t)
	const password = "pw-for-the-binary-5591"
	r := redistest.Start(t, "--requirepass", password)
	keys := testKeys()
	p := startBinary(t, bin, "REDIS_URL=redis://:"+password+"@"+r.Addr(), "SESSION_KEYS="+keys, "ADDR=127.0.0.1:0")
	addr := p.listening(t)
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + addr + "/livez")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	start := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Errorf("exit status = %d, want 0\n%s", code, p.log.String())
	}
	if d := time.Since(start); d >= shutdownGrace {
		t.Errorf("an idle server took %v to stop, want well under the %v grace period", d, shutdownGrace)
	}
	client.CloseIdleConnections()
	out := p.log.String()
	if n := strings.Count(out, `msg="example: configuration" `); n != 1 || !strings.Contains(out, "password_set=true") {
		t.Errorf("log has %d configuration lines, want 1 with password_set=true:\n%s", n, out)
	}
	if strings.Contains(out, password) || strings.Contains(out, keys) {
		t.Errorf("log shows the Redis password or the signing key:\n%s", out)
	}
}

// TestShutdownDelay runs the example with SHUTDOWN_DELAY and sends it
// SIGTERM: for the delay /readyz answers 503 naming the shutdown, while
// new connections are still accepted and served, a login included; then
// the listener closes and the process exits 0. A SHUTDOWN_DELAY that is no
// duration stops the start with an error naming it.
func TestShutdownDelay(t *testing.T) {
	bin := buildExample(t)
	r := redistest.Start(t)
	const delay = 3 * time.Second
	p := startBinary(t, bin, "REDIS_URL=redis://"+r.Addr(), "SESSION_KEYS="+testKeys(), "ADDR=127.0.0.1:0", "SHUTDOWN_DELAY="+delay.String())
	addr := p.listening(t)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}} // a new connection each
	get := func(path string) (int, string) {
		resp, err := c.Get("http://" + addr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz before the signal = %d %s, want 200", code, body)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	signalled := time.Now()
	waitFor(t, 5*time.Second, "/readyz to fail after SIGTERM", func() bool {
		code, _ := get("/readyz")
		return code == http.StatusServiceUnavailable
	})
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, `"check":"shutdown"`) {
		t.Errorf("/readyz during the delay = %d %s, want 503 naming the shutdown", code, body)
	}
	// With keep-alive, as a browser or a load balancer would.
	ka := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	defer ka.CloseIdleConnections()
	resp, err := ka.Post("http://"+addr+"/api/login", "application/json", strings.NewReader(`{"username":"alice","password":"wonderland"}`))
	if err != nil {
		t.Fatalf("a login on a new connection during the delay: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("a login during the delay = %d, want 200", resp.StatusCode)
	}
	if !resp.Close {
		t.Error("a response during the delay keeps the connection open, want Connection: close")
	}
	if d := time.Since(signalled); d >= delay {
		t.Fatalf("the checks took %v, longer than the %v delay: the machine is too slow for this test", d, delay)
	}
	waitFor(t, 10*time.Second, "the listener to close after the delay", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	if d := time.Since(signalled); d < delay {
		t.Errorf("the listener closed %v after SIGTERM, before the %v delay", d, delay)
	}
	if code := p.wait(t); code != 0 {
		t.Errorf("exit status = %d, want 0\n%s", code, p.log.String())
	}
	if out := p.log.String(); !strings.Contains(out, "shutdown_delay=3s") || !strings.Contains(out, "serving for SHUTDOWN_DELAY") {
		t.Errorf("log lacks the delay in the configuration line or at the signal:\n%s", out)
	}

	for _, v := range []string{"5", "-1s", "30m"} {
		bad := startBinary(t, bin, "REDIS_URL=redis://"+r.Addr(), "SESSION_KEYS="+testKeys(), "ADDR=127.0.0.1:0", "SHUTDOWN_DELAY="+v)
		if code := bad.wait(t); code != 1 || !strings.Contains(bad.log.String(), `SHUTDOWN_DELAY=\"`+v+`\"`) {
			t.Errorf("SHUTDOWN_DELAY=%s: exit %d, want 1 with an error naming it:\n%s", v, code, bad.log.String())
		}
	}
}

// TestSecondSignal starts the example with SIGINT ignored, as a script's
// background job is, and a long SHUTDOWN_DELAY: SIGTERM twice at once, as
// timeout(1) sends it (to the process, then to its group), is one signal,
// and the shutdown goes on; then a SIGINT ends it at once, with status
// 130, where the default action it inherited would ignore it. The second
// SIGTERM ended it at once.
func TestSecondSignal(t *testing.T) {
	bin := buildExample(t)
	r := redistest.Start(t)
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatalf("no sh to start the example with SIGINT ignored: %v", err)
	}
	p := startCommand(t, exec.Command(sh, "-c", `trap "" INT; exec "$0"`, bin),
		"REDIS_URL=redis://"+r.Addr(), "SESSION_KEYS="+testKeys(), "ADDR=127.0.0.1:0", "SHUTDOWN_DELAY=1m")
	p.listening(t)
	for range 2 {
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "the delay to begin", func() bool { return strings.Contains(p.log.String(), "serving for SHUTDOWN_DELAY") })
	select {
	case <-p.done:
		t.Fatalf("the example exited after SIGTERM sent twice at once, want the shutdown to go on:\n%s", p.log.String())
	case <-time.After(1500 * time.Millisecond): // past repeatWindow
	}
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("the example did not exit 10s after the second signal:\n%s", p.log.String())
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 130 || !strings.Contains(p.log.String(), "second signal") {
		t.Errorf("exit status after the second signal = %d, want 130 and a line saying why:\n%s", code, p.log.String())
	}
}

// TestShutdownCommitsInFlight runs serve on the example's pieces plus a
// slow route that changes the session: the context ends (as on a signal)
// while the request waits; the listener closes, the request then finishes,
// its session change is committed to Redis, and serve returns nil.
func TestShutdownCommitsInFlight(t *testing.T) {
	r := redistest.Start(t)
	a := newTestApp(t, r)
	entered, release := make(chan struct{}), make(chan struct{})
	slow := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		close(entered)
		<-release
		if err := session.Put(req.Context(), "theme", "dark"); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK) // commits the change first
	})
	mux := http.NewServeMux()
	mux.Handle("POST /test/slow", middleware.Sessions(a.sessions)(slow))
	mux.Handle("/", a.handler)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() {
		served <- serve(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)), l, mux, shutdown{grace: shutdownGrace})
	}()

	e := &e2e{t: t, redis: r, url: "http://" + l.Addr().String()}
	token, id := e.apiLogin("alice", "wonderland")
	answer := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("POST", e.url+"/test/slow", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
		if err != nil {
			answer <- 0
			return
		}
		resp.Body.Close()
		answer <- resp.StatusCode
	}()
	<-entered
	cancel()
	waitFor(t, 10*time.Second, "the listener to close", func() bool {
		c, err := net.DialTimeout("tcp", l.Addr().String(), time.Second)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	select {
	case err := <-served:
		t.Fatalf("serve returned %v with a request in flight", err)
	default:
	}
	close(release)
	if code := <-answer; code != http.StatusOK {
		t.Errorf("in-flight request = %d, want 200", code)
	}
	if err := <-served; err != nil {
		t.Errorf("serve = %v, want nil", err)
	}
	rec, ok := e.record(id)
	if values, _ := rec["val"].(map[string]any); !ok || values["theme"] != "dark" {
		t.Errorf("session record after shutdown = %v, want the in-flight request's theme", rec)
	}
}

// TestShutdownGraceExceeded runs serve with a handler that does not finish:
// once the grace period is over, serve cuts it off (its context ends, the
// client's connection closes) and returns an error naming the grace period.
func TestShutdownGraceExceeded(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	entered, cutOff := make(chan struct{}), make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done()
		close(cutOff)
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const grace = 200 * time.Millisecond
	served := make(chan error, 1)
	go func() {
		served <- serve(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)), l, h, shutdown{grace: grace})
	}()
	answer := make(chan error, 1)
	go func() {
		resp, err := (&http.Client{Timeout: 30 * time.Second}).Get("http://" + l.Addr().String())
		if err == nil {
			resp.Body.Close()
			err = fmt.Errorf("got %s", resp.Status)
		}
		answer <- err
	}()
	<-entered
	start := time.Now()
	cancel()
	select {
	case err = <-served:
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return 10s after the grace period")
	}
	if err == nil || !strings.Contains(err.Error(), "grace period") || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("serve = %v, want an error naming the grace period", err)
	}
	if d := time.Since(start); d < grace {
		t.Errorf("serve returned after %v, before the %v grace period", d, grace)
	}
	select {
	case <-cutOff:
	case <-time.After(10 * time.Second):
		t.Error("the running handler's context did not end")
	}
	if err := <-answer; err == nil || strings.HasPrefix(err.Error(), "got ") {
		t.Errorf("client of the cut-off request: %v, want a broken connection", err)
	}
}

// newTestApp builds the example's pieces on r with a random signing key.
func newTestApp(t *testing.T, r *redistest.Server) *app {
	t.Helper()
	a, err := newApp(slog.New(slog.NewTextHandler(io.Discard, nil)),
		redisstore.Config{Addr: r.Addr()},
		session.Config{Keys: [][]byte{randomKey()}, InsecureCookie: true}, loginConfig{key: randomKey()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.close)
	return a
}

// buildExample builds the example command into a temporary directory.
func buildExample(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the example binary; skipped with -short")
	}
	gotool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command in PATH to build the example: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "example")
	out, err := exec.Command(gotool, "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// process is the example binary running for a test.
type process struct {
	cmd  *exec.Cmd
	log  syncbuf.Buffer // its standard error: the log
	done chan struct{}
}

// startBinary runs bin with only the given environment variables, killing
// it when the test ends if it is still running.
func startBinary(t *testing.T, bin string, env ...string) *process {
	t.Helper()
	return startCommand(t, exec.Command(bin), env...)
}

// startCommand is startBinary for a command of the test's making (the
// binary run through a shell, say).
func startCommand(t *testing.T, cmd *exec.Cmd, env ...string) *process {
	t.Helper()
	p := &process{cmd: cmd, done: make(chan struct{})}
	p.cmd.Env = env
	p.cmd.Stderr = &p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// This goroutine owns Wait: it reaps the process and ends when it exits.
	go func() {
		p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

var listeningRE = regexp.MustCompile(`msg="example: listening" url=http://(\S+)`)

// listening waits for the process to log that it listens and returns the
// address.
func (p *process) listening(t *testing.T) string {
	t.Helper()
	var addr string
	waitFor(t, 20*time.Second, "the example to listen", func() bool {
		if m := listeningRE.FindStringSubmatch(p.log.String()); m != nil {
			addr = m[1]
			return true
		}
		select {
		case <-p.done:
			t.Fatalf("the example exited at start:\n%s", p.log.String())
		default:
		}
		return false
	})
	return addr
}

// wait waits for the process to exit and returns its exit status.
func (p *process) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(shutdownGrace + 10*time.Second):
		t.Fatalf("the example did not exit:\n%s", p.log.String())
	}
	return p.cmd.ProcessState.ExitCode()
}
