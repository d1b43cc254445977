package redistest

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// RunWithServer runs m's tests and examples with a redis-server of their
// own whose URL is in REDIS_URL, for the package's examples: they have no
// testing.T to call [Start] with, and read the environment as the
// programs they show do (redisstore.FromEnv). It returns m.Run's exit code
// once the server is gone; call it from TestMain.
//
// Without redis-server in PATH it runs them without one, skipping the
// examples named in examples (with a message; they are not counted), or
// returns 1 at once when SESSIONKIT_REQUIRE_REDIS=1.
func RunWithServer(m *testing.M, examples ...string) int {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv(RequireEnv) == "1" {
			fmt.Fprintf(os.Stderr, "redistest: redis-server not found in PATH and %s=1: install Redis (7.0 or later) to run the real-Redis tests\n", RequireEnv)
			return 1
		}
		fmt.Fprintf(os.Stderr, "redistest: redis-server not found: skipping %s; install Redis or set %s=1 to fail instead\n", strings.Join(examples, ", "), RequireEnv)
		flag.Parse() // so that a -test.skip on the command line is not lost
		skip := "^(" + strings.Join(examples, "|") + ")$"
		if prev := flag.Lookup("test.skip").Value.String(); prev != "" {
			skip = prev + "|" + skip
		}
		if err := flag.Set("test.skip", skip); err != nil {
			fmt.Fprintf(os.Stderr, "redistest: %v\n", err)
			return 1
		}
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "redistest-examples-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "redistest: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	s := &Server{bin: bin, dir: dir}
	for attempt := 1; ; attempt++ {
		if s.Port, err = freePort(false); err == nil {
			err = s.start()
		}
		if err == nil {
			break
		}
		if !errors.Is(err, errExited) || attempt == startAttempts {
			fmt.Fprintf(os.Stderr, "redistest: start redis-server for the examples: %v\n", err)
			return 1
		}
	}
	defer func() {
		_ = s.proc.Process.Kill()
		<-s.done
	}()
	os.Setenv("REDIS_URL", "redis://"+s.Addr())
	defer os.Unsetenv("REDIS_URL")
	return m.Run()
}
