// Package redistest starts real redis-server processes for tests.
//
// Each [Server] listens on a free loopback port chosen at start, runs in a
// private working directory and is killed when the test ends. Tests never
// share a server and never touch a Redis the developer already runs. By
// default the server writes nothing to disk (no RDB snapshots, no AOF);
// [AppendOnly] turns the append-only file on for tests that crash and
// restart a server and expect the data back.
//
// For reliability tests a server can be killed ([Server.Stop]), restarted
// ([Server.Restart]), frozen ([Server.Pause], [Server.Resume]) or put behind a
// [Proxy] that drops, stalls or slows its connections.
//
// If redis-server is not in PATH, [Start] skips the test with a loud message,
// or fails it when the environment variable SESSIONKIT_REQUIRE_REDIS is "1"
// (CI sets it, so a missing binary can never turn the suite silently green).
package redistest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
)

// RequireEnv is the environment variable that turns a missing redis-server
// from a skipped test into a failed one when it is set to "1".
const RequireEnv = "SESSIONKIT_REQUIRE_REDIS"

const (
	// startTimeout bounds the wait for a new server to answer at all.
	startTimeout = 5 * time.Second
	// loadTimeout bounds the wait for a server that answers but is still
	// loading its RDB or AOF file into memory.
	loadTimeout = 30 * time.Second
	// startAttempts is how many free ports Start tries before giving up; a
	// port found free can be taken by another process before redis binds it.
	startAttempts = 5
	// ioTimeout bounds every connection the helper itself opens.
	ioTimeout = 2 * time.Second
)

// Server is a redis-server process started by [Start] and owned by one test.
// Its methods must be called from the test's goroutine or, for Do, Calls and
// TotalCalls, from goroutines that end before the test does; Stop, Restart,
// Pause and Resume must not run concurrently with anything else on the same
// Server.
type Server struct {
	// Port is the loopback TCP port the server listens on. It stays the same
	// across Restart.
	Port int

	bin  string   // path of the redis-server binary
	dir  string   // working directory and log directory of the server
	args []string // extra arguments given to Start

	proc *exec.Cmd     // the running process, nil after Stop
	done chan struct{} // closed when proc has exited and been reaped

	statsMu sync.Mutex // guards stats
	stats   redis.Conn // connection for ResetStats and Calls, nil until used
}

// Start starts a redis-server on a free loopback port with persistence
// disabled and a private working directory, waits until it is ready (it
// answers and is not loading data) and registers a cleanup that kills it.
// Extra args are appended to the command line and override the defaults, for
// example "--requirepass", "secret"; the helper's own connections
// ([Server.Do], [Server.Calls], ...) then authenticate with that password.
// To keep data across [Server.Restart], pass [AppendOnly]:
//
//	s := redistest.Start(t, redistest.AppendOnly("everysec")...)
//
// If redis-server is not in PATH, Start skips the test, or fails it when
// SESSIONKIT_REQUIRE_REDIS=1.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("redistest: redis-server not found in PATH and %s=1: install redis-server (7.0 or later) to run the real-Redis tests", RequireEnv)
		}
		t.Skipf("redistest: redis-server not found: skipping real-Redis test; install redis-server or set %s=1 to fail instead", RequireEnv)
	}
	s := &Server{bin: bin, dir: t.TempDir(), args: args}
	t.Cleanup(func() { s.Stop(t) })

	for attempt := 1; ; attempt++ {
		s.Port, err = freePort()
		if err != nil {
			t.Fatalf("redistest: pick a free port: %v", err)
		}
		err = s.start()
		if err == nil {
			return s
		}
		// Only an early exit (most likely the port was taken in the
		// meantime) is worth another port.
		if !errors.Is(err, errExited) || attempt == startAttempts {
			t.Fatalf("redistest: start redis-server (attempt %d): %v", attempt, err)
		}
	}
}

// Addr returns the server's address, "127.0.0.1:<port>".
func (s *Server) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port))
}

// Stop kills the server with SIGKILL, as a crash would, and waits for the
// process to exit. Stopping a stopped server does nothing.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	s.closeStats()
	if s.proc == nil {
		return
	}
	if err := s.proc.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("redistest: kill redis-server: %v", err)
	}
	<-s.done
	s.proc, s.done = nil, nil
}

// Restart stops the server if it is running (with SIGKILL, as [Server.Stop]
// does) and starts a new one with the same arguments, port and working
// directory, so that it reloads whatever the old one persisted there: the
// append-only file with [AppendOnly], or an RDB file written by SAVE. With
// the defaults nothing was persisted and the new server starts empty.
// Restart returns once loading is over (INFO persistence reports loading:0),
// so every command works, not only PING. Connections to the old process
// see it close, as they would after a real Redis restart.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop(t)
	if err := s.start(); err != nil {
		t.Fatalf("redistest: restart redis-server on port %d: %v", s.Port, err)
	}
}

// start launches the process on s.Port and waits until it is ready. On
// failure the process is gone when start returns.
func (s *Server) start() error {
	logPath := filepath.Join(s.dir, "redis.log")
	args := append([]string{
		"--port", strconv.Itoa(s.Port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--logfile", logPath,
	}, s.args...)
	cmd := exec.Command(s.bin, args...)
	// Errors before the log file is open go to stdout. A file rather than a
	// buffer keeps exec from starting a copying goroutine that Wait would
	// have to wait for.
	outPath := filepath.Join(s.dir, "redis.out")
	out, err := os.Create(outPath)
	if err != nil {
		return err
	}
	defer out.Close() // the child has its own descriptor
	cmd.Stdout = out
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	// This goroutine owns cmd.Wait: it reaps the process and ends as soon as
	// the process exits, whether it crashed, was killed by Stop or failed to
	// bind.
	go func() {
		_ = cmd.Wait() // the exit status of a killed server says nothing useful
		close(done)
	}()
	s.proc, s.done = cmd, done

	deadline, loading := time.Now().Add(startTimeout), false
	for {
		select {
		case <-done:
			s.proc, s.done = nil, nil
			return fmt.Errorf("%w%s%s", errExited, tail(outPath), tail(logPath))
		default:
		}
		err := s.ready()
		if err == nil {
			return nil
		}
		if errors.Is(err, errLoading) && !loading {
			// The server is up and making progress: give it longer.
			deadline, loading = time.Now().Add(loadTimeout), true
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			s.proc, s.done = nil, nil
			return fmt.Errorf("not ready in time: %w%s", err, tail(logPath))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var (
	// errExited reports that redis-server exited before it was ready.
	errExited = errors.New("redis-server exited at start")
	// errLoading reports that redis-server answers but is still loading.
	errLoading = errors.New("redis-server is loading its data")
)

// ready asks the server, on a new connection, whether it has finished
// loading its data (INFO persistence, which Redis answers while loading,
// unlike PING and data commands). An error reply, such as NOAUTH when the
// password is not the one the helper knows, counts as ready: the server is up
// and the test will see the same error.
func (s *Server) ready() error {
	c, err := s.dial()
	if err == nil {
		defer c.Close()
		var info string
		info, err = redis.String(c.Do("INFO", "persistence"))
		if err == nil && strings.Contains(info, "\nloading:1") {
			return errLoading
		}
	}
	var reply redis.Error
	if errors.As(err, &reply) {
		return nil
	}
	return err
}

// AppendOnly returns the [Start] arguments that turn on the append-only file
// with the given appendfsync policy: "always" (each write is in the file
// before its reply), "everysec" (what production setups use: Redis may reply
// before a write reaches the file, so a crash can lose the last second or
// two) or "no". With it, [Server.Restart] after a SIGKILL brings the data
// back. Extra arguments can follow it:
//
//	redistest.Start(t, append(redistest.AppendOnly("always"), "--requirepass", "pw")...)
func AppendOnly(fsync string) []string {
	return []string{"--appendonly", "yes", "--appendfsync", fsync}
}

// dial opens a connection for the helper's own use, authenticated with the
// --requirepass given to Start, if any.
func (s *Server) dial() (redis.Conn, error) {
	return redis.Dial("tcp", s.Addr(),
		redis.DialConnectTimeout(ioTimeout),
		redis.DialReadTimeout(ioTimeout),
		redis.DialWriteTimeout(ioTimeout),
		redis.DialPassword(requirePass(s.args)),
	)
}

// requirePass returns the value of the last --requirepass in args, or "".
func requirePass(args []string) string {
	var pass string
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "--requirepass" {
			pass = args[i+1]
		}
	}
	return pass
}

// freePort asks the kernel for a free loopback port. The port is released
// before redis-server binds it, so a caller must be ready to retry.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tail returns the last lines of a server output file, for error messages.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return "\n" + filepath.Base(path) + ":\n" + strings.Join(lines, "\n")
}
