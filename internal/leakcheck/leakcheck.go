// Package leakcheck fails tests that leave goroutines behind: a pool never
// closed, a redis-server never reaped, a request that never ended.
//
// It does what go.uber.org/goleak does for this project, in the few lines
// we need, so that the module users import requires only what its library
// packages import. After the tests, it lists every goroutine's stack and
// ignores its own, the testing package's and the runtime's signal handling;
// anything else is a leak once it has had about two seconds to end.
package leakcheck

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// settle is how long goroutines get to end, after the tests, before those
// left count as leaks: pools and servers close in cleanups, but a
// connection's reader may take a moment to see its close.
const settle = 2 * time.Second

// VerifyTestMain runs the tests, then fails the test binary if goroutines
// other than those whose top function is one of ignore (a full name such
// as "github.com/alexedwards/scs/v2/memstore.(*MemStore).startCleanup") are
// still running. Call it from TestMain instead of m.Run.
func VerifyTestMain(m *testing.M, ignore ...string) {
	Main(m.Run, ignore...)
}

// Main is [VerifyTestMain] for a TestMain that runs the tests through
// another function, such as redistest.RunWithServer: run runs them and
// returns the exit code.
func Main(run func() int, ignore ...string) {
	code := run()
	if code == 0 {
		if leaks := find(ignore); leaks != "" {
			fmt.Fprintf(os.Stderr, "leakcheck: goroutines left after the tests:\n\n%s\n", leaks)
			code = 1
		}
	}
	os.Exit(code)
}

// VerifyNone fails t if goroutines other than t's own, its parents' and
// those whose top function is one of ignore are running. Call it from a
// t.Cleanup registered first, so that it runs after every other cleanup.
func VerifyNone(t testing.TB, ignore ...string) {
	t.Helper()
	if leaks := find(ignore); leaks != "" {
		t.Errorf("leakcheck: goroutines left:\n\n%s", leaks)
	}
}

// find returns the stacks of the goroutines that are leaks, retrying with
// a growing pause until none is left or settle has passed.
func find(ignore []string) string {
	deadline := time.Now().Add(settle)
	pause := time.Millisecond
	for {
		leaks := leaked(ignore)
		if len(leaks) == 0 || time.Now().After(deadline) {
			return strings.Join(leaks, "\n\n")
		}
		time.Sleep(pause)
		pause = min(2*pause, 100*time.Millisecond)
	}
}

// leaked returns the stacks of the running goroutines, except the caller's
// and those that are expected.
func leaked(ignore []string) []string {
	buf := make([]byte, 1<<16)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	// The first stack is the caller's own goroutine; stacks are separated
	// by a blank line, each starting "goroutine N [state]:".
	stacks := strings.Split(string(bytes.TrimSpace(buf)), "\n\n")[1:]
	var leaks []string
	for _, s := range stacks {
		if !expected(s, ignore) {
			leaks = append(leaks, s)
		}
	}
	return leaks
}

// expected reports whether the goroutine of stack s is one that the
// testing package or the runtime runs, or whose top function is ignored.
func expected(s string, ignore []string) bool {
	header, body, _ := strings.Cut(s, "\n")
	top, _, _ := strings.Cut(body, "\n")
	if i := strings.LastIndexByte(top, '('); i > 0 {
		top = top[:i]
	}
	switch top {
	case "testing.RunTests", "testing.(*T).Run", "testing.(*T).Parallel", "testing.runFuzzing", "testing.(*F).Fuzz":
		// A parent test waiting for its subtests, or the test runner.
		return strings.Contains(header, "[chan receive")
	case "os/signal.signal_recv", "os/signal.loop":
		// Importing os/signal starts this.
		return true
	}
	for _, name := range ignore {
		if top == name {
			return true
		}
	}
	// signal.Notify starts a runtime goroutine; cgo may leave one in a
	// system call.
	return strings.Contains(body, "runtime.ensureSigM") ||
		(strings.Contains(header, "[syscall") && strings.Contains(body, "runtime.goexit"))
}
