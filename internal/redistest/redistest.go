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
// [Proxy] that drops, stalls or slows its connections. [StartSentinel]
// starts a master, a replica and three Sentinels; [StartCluster] starts a
// Redis Cluster. Both offer failovers, crashes and (for the cluster) slot
// migrations that wait until every node agrees on the outcome.
//
// If redis-server (or, for [StartCluster], redis-cli) is not in PATH, [Start]
// skips the test with a loud message, or fails it when the environment
// variable SESSIONKIT_REQUIRE_REDIS is "1" (CI sets it, so a missing binary
// can never turn the suite silently green).
package redistest

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
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
	// settleTimeout bounds the wait for a Sentinel setup or a cluster to
	// start, fail over or move a slot and for all its nodes to agree.
	settleTimeout = 30 * time.Second
	// pollInterval is how often the helper asks servers whether they have
	// settled.
	pollInterval = 50 * time.Millisecond
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
	args []string // arguments given to Start: a config file, then options

	proc *exec.Cmd     // the running process, nil after Stop
	done chan struct{} // closed when proc has exited and been reaped
	// held keeps the port (and a Cluster node's bus port) of a server
	// that Stop killed from other processes until Restart: see Stop.
	held []io.Closer

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
// As with redis-server itself, a first argument that is not an option names
// a configuration file, read before the options; a server that rewrites it
// (CONFIG REWRITE, or a Sentinel saving its state) reads the new version on
// [Server.Restart]. The port is below 32768, outside the kernel's range for
// outgoing connections; with "--cluster-enabled", "yes" the cluster bus
// port, port+10000, was free too.
//
// If redis-server is not in PATH, Start skips the test, or fails it when
// SESSIONKIT_REQUIRE_REDIS=1.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	s := &Server{bin: lookPath(t, "redis-server"), dir: t.TempDir(), args: args}
	t.Cleanup(func() {
		s.kill(t)
		s.release()
	})

	bus := lastArg(args, "--cluster-enabled") == "yes"
	for attempt := 1; ; attempt++ {
		var err error
		s.Port, err = freePort(bus)
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

// lookPath returns the path of a Redis binary, or skips the test (fails it
// with SESSIONKIT_REQUIRE_REDIS=1) if the binary is not in PATH.
func lookPath(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("redistest: %s not found in PATH and %s=1: install Redis (7.0 or later) to run the real-Redis tests", name, RequireEnv)
		}
		t.Skipf("redistest: %s not found: skipping real-Redis test; install Redis or set %s=1 to fail instead", name, RequireEnv)
	}
	return path
}

// Addr returns the server's address, "127.0.0.1:<port>".
func (s *Server) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port))
}

// Stop kills the server with SIGKILL, as a crash would, and waits for the
// process to exit. Stopping a stopped server does nothing. Until
// [Server.Restart] (or the end of the test), the port stays the stopped
// server's: connections to it are refused, but no other process can bind
// it. Otherwise a redis-server of a test running in parallel, in another
// package, could start on it, and the clients that still dial the stopped
// server's address (an app whose Sentinels have not yet promoted the
// replica) would reach that server instead: another test's data, or its
// password.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if !s.kill(t) {
		return
	}
	ports := []int{s.Port}
	if lastArg(s.args, "--cluster-enabled") == "yes" {
		ports = append(ports, s.Port+busOffset)
	}
	for _, port := range ports {
		// Best effort: a port another process took in the instant
		// after the kill stays taken, as before.
		if h, err := holdPort(port); err == nil && h != nil {
			s.held = append(s.held, h)
		}
	}
}

// kill kills the process, if it runs, and waits for it to exit; it reports
// whether it did.
func (s *Server) kill(t testing.TB) bool {
	t.Helper()
	s.closeStats()
	if s.proc == nil {
		return false
	}
	if err := s.proc.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("redistest: kill redis-server: %v", err)
	}
	<-s.done
	s.proc, s.done = nil, nil
	return true
}

// release frees the ports Stop held.
func (s *Server) release() {
	for _, h := range s.held {
		h.Close()
	}
	s.held = nil
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
	s.kill(t)
	s.release()
	if err := s.start(); err != nil {
		t.Fatalf("redistest: restart redis-server on port %d: %v", s.Port, err)
	}
}

// start launches the process on s.Port and waits until it is ready. On
// failure the process is gone when start returns.
func (s *Server) start() error {
	logPath := filepath.Join(s.dir, "redis.log")
	var args []string
	opts := s.args
	if len(opts) > 0 && !strings.HasPrefix(opts[0], "-") {
		args, opts = []string{opts[0]}, opts[1:] // a config file comes first
	}
	args = append(args,
		"--port", strconv.Itoa(s.Port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--logfile", logPath,
	)
	cmd := exec.Command(s.bin, append(args, opts...)...)
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

// waitUntil calls check every pollInterval until it returns nil, and fails
// the test with check's last error if that takes longer than timeout.
func waitUntil(t testing.TB, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: %s: not done within %v: %v", what, timeout, err)
		}
		time.Sleep(pollInterval)
	}
}

// infoField returns the value of the line "name:value" in a reply of INFO
// or CLUSTER INFO, or "" if there is no such line.
func infoField(info, name string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}

// syncArgs are the [Start] arguments of the servers of [StartSentinel] and
// [StartCluster] that replicate: the master writes the snapshot for a full
// sync to disk, so that it streams further writes as soon as the replica
// has the snapshot (after a diskless sync it waits up to a second for the
// replica's next REPLCONF ACK, while the replica already reports its link
// up, and a replica promoted meanwhile lacks those writes), and deletes
// the file afterwards, so that a restarted server still starts empty.
var syncArgs = []string{"--repl-diskless-sync", "no", "--rdb-del-sync-files", "yes"}

// replicates reports whether replica replicates master with the link up
// and has processed master's replication stream at least up to the offset
// master had reached just before.
func replicates(replica, master *Server) error {
	info, err := redis.String(master.do("INFO", "replication"))
	if err != nil {
		return fmt.Errorf("%s: INFO: %w", master.Addr(), err)
	}
	want, err := strconv.ParseInt(infoField(info, "master_repl_offset"), 10, 64)
	if err != nil {
		return fmt.Errorf("%s: replication offset: %w", master.Addr(), err)
	}
	if info, err = redis.String(replica.do("INFO", "replication")); err != nil {
		return fmt.Errorf("%s: INFO: %w", replica.Addr(), err)
	}
	role, port, link := infoField(info, "role"), infoField(info, "master_port"), infoField(info, "master_link_status")
	if role != "slave" || port != strconv.Itoa(master.Port) || link != "up" {
		return fmt.Errorf("%s: role %s of port %s with link %s, want a replica of %d with link up",
			replica.Addr(), role, port, link, master.Port)
	}
	got, err := strconv.ParseInt(infoField(info, "slave_repl_offset"), 10, 64)
	if err != nil {
		return fmt.Errorf("%s: replication offset: %w", replica.Addr(), err)
	}
	if got < want {
		return fmt.Errorf("%s: at replication offset %d of %d", replica.Addr(), got, want)
	}
	return nil
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
		redis.DialPassword(lastArg(s.args, "--requirepass")),
	)
}

// do runs one command on a new connection, like [Server.Do], but returns
// errors instead of failing the test, for the helper's polling of servers
// that may be down or changing roles.
func (s *Server) do(cmd string, args ...any) (any, error) {
	c, err := s.dial()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.Do(cmd, args...)
}

// running reports whether the server process is up: started and not
// stopped since.
func (s *Server) running() bool {
	return s.proc != nil
}

// lastArg returns the value following the last occurrence of the option
// name in args, or "".
func lastArg(args []string, name string) string {
	var value string
	for i := 0; i+1 < len(args); i++ {
		if args[i] == name {
			value = args[i+1]
		}
	}
	return value
}

// busOffset is how far above its client port a Redis Cluster node listens
// for the cluster bus.
const busOffset = 10000

// Servers listen on ports drawn from [portMin, portMin+portSpan), and a
// Cluster node's bus on the same plus busOffset: all below 32768, where
// Linux's ephemeral range begins (32768-60999 by default), so that no
// outgoing connection of the tests takes a server's port as its source
// port, not even while a fault test has the server stopped for a restart.
const (
	portMin  = 12000
	portSpan = 10000
)

// freePort returns a loopback port that is free now, drawn at random from
// the range above; with bus set, one whose cluster bus port,
// port+busOffset, is free too. The ports are released before redis-server
// binds them, so a caller must be ready to retry.
func freePort(bus bool) (int, error) {
	for range 100 {
		port := portMin + rand.IntN(portSpan)
		if portFree(port) && (!bus || portFree(port+busOffset)) {
			return port, nil
		}
	}
	return 0, fmt.Errorf("no free port in [%d, %d) after 100 draws", portMin, portMin+portSpan)
}

// portFree reports whether the loopback port can be listened on now.
func portFree(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
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
