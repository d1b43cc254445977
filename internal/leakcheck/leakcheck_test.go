package leakcheck

import (
	"strings"
	"testing"
	"time"
)

// parked blocks until release is closed; its name marks it in a stack.
func parked(release chan struct{}) { <-release }

func TestFindsLeak(t *testing.T) {
	if leaks := find(nil); leaks != "" {
		t.Fatalf("leaks before the test started one:\n%s", leaks)
	}
	release := make(chan struct{})
	defer close(release)
	go parked(release)
	// Until the new goroutine has run, its top function is a wrapper.
	var leaks []string
	for range 1000 {
		if leaks = leaked(nil); len(leaks) == 1 && strings.Contains(leaks[0], "leakcheck.parked") {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if len(leaks) != 1 || !strings.Contains(leaks[0], "leakcheck.parked") {
		t.Fatalf("want the parked goroutine, got %d stacks:\n%s", len(leaks), strings.Join(leaks, "\n\n"))
	}
	if leaks := find([]string{"github.com/sessionkit/sessionkit/internal/leakcheck.parked"}); leaks != "" {
		t.Fatalf("ignored top function still reported:\n%s", leaks)
	}
	release <- struct{}{}
	if leaks := find(nil); leaks != "" {
		t.Fatalf("leak reported after the goroutine ended:\n%s", leaks)
	}
}

func TestSubtestParentsAreExpected(t *testing.T) {
	t.Run("child", func(t *testing.T) {
		t.Run("grandchild", func(t *testing.T) {
			// find retries: the previous test's goroutine may still be
			// ending, and a parent may not have blocked yet.
			if leaks := find(nil); leaks != "" {
				t.Fatalf("parents counted as leaks:\n%s", leaks)
			}
		})
	})
}

func TestMain(m *testing.M) { VerifyTestMain(m) }
