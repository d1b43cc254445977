package loglimit

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	l := Limiter{Interval: 10 * time.Second}
	start := time.Unix(1000, 0)
	var logged []int
	log := func(n int) { logged = append(logged, n) }
	for i := range 5 {
		l.Do(start.Add(time.Duration(i)*time.Second), log) // one line, four held back
	}
	l.Do(start.Add(10*time.Second), log) // the interval is over: out, with the count
	l.Do(start.Add(11*time.Second), log) // held back again
	if len(logged) != 2 || logged[0] != 0 || logged[1] != 4 {
		t.Fatalf("lines logged with held-back counts %v, want [0 4]", logged)
	}
}

// TestLimiterEnd: End reports the lines held back once the interval since
// the last line has passed, as that interval's line, and nothing before,
// so that failures and successes that alternate still log one line per
// interval.
func TestLimiterEnd(t *testing.T) {
	l := Limiter{Interval: 10 * time.Second}
	start := time.Unix(1000, 0)
	at := func(s int) time.Time { return start.Add(time.Duration(s) * time.Second) }
	var lines []string
	log := func(n int) { lines = append(lines, fmt.Sprint("failed ", n)) }
	end := func(n int) { lines = append(lines, fmt.Sprint("ended ", n)) }
	l.End(at(0), end) // nothing held back
	l.Do(at(0), log)  // out
	l.End(at(1), end) // nothing held back
	for s := 2; s < 10; s++ {
		l.Do(at(s), log)  // held back
		l.End(at(s), end) // within the interval: nothing
	}
	l.End(at(12), end) // the interval is over: the 8 held back
	l.End(at(13), end) // reported already
	l.Do(at(14), log)  // within the new interval: held back
	l.Do(at(22), log)  // out, with the one held back
	if want := []string{"failed 0", "ended 8", "failed 1"}; !slices.Equal(lines, want) {
		t.Errorf("lines %q, want %q", lines, want)
	}
}
