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
// the last line has passed, and nothing before; the next failure after its
// line goes out at once (a Redis that comes and goes: each outage has its
// line), unless it is about a moment before that line, so that failures
// and successes that alternate log a failure's and an end's line per
// interval, each kind at most one.
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
	l.End(at(12), end)         // the interval is over: the 8 held back
	l.Do(at(11), log)          // a failure from before the end's line (it took its time): held back
	l.End(at(13), end)         // within the interval of the end's line: nothing
	l.Do(at(14), log)          // the first failure after an end's line: out, with that one
	l.Do(at(15), log)          // within its interval: held back
	l.End(at(16), end)         // within it: nothing
	l.Do(at(24), log)          // out, with the one held back
	for s := 25; s < 45; s++ { // alternating, past two intervals: two lines each
		l.End(at(s), end)
		l.Do(at(s), log)
	}
	want := []string{"failed 0", "ended 8", "failed 1", "failed 1", "ended 9", "failed 0", "ended 9", "failed 0"}
	if !slices.Equal(lines, want) {
		t.Errorf("lines %q, want %q", lines, want)
	}
}

// TestLimiterEndAfterOneLine: an outage of one failure, whose line went
// out with nothing held back, still gets its end's line once the interval
// has passed, with a count of 0, not only with lines held back; a success
// with no failure since gets none.
func TestLimiterEndAfterOneLine(t *testing.T) {
	l := Limiter{Interval: 10 * time.Second}
	start := time.Unix(1000, 0)
	at := func(s int) time.Time { return start.Add(time.Duration(s) * time.Second) }
	var lines []string
	log := func(n int) { lines = append(lines, fmt.Sprint("failed ", n)) }
	end := func(n int) { lines = append(lines, fmt.Sprint("ended ", n)) }
	l.Do(at(0), log)  // out
	l.End(at(5), end) // within the interval: nothing
	l.End(at(11), end)
	l.End(at(30), end) // no failure since: nothing
	l.Do(at(31), log)  // out at once, after an end's line
	l.End(at(41), end)
	want := []string{"failed 0", "ended 0", "failed 0", "ended 0"}
	if !slices.Equal(lines, want) {
		t.Errorf("lines %q, want %q", lines, want)
	}
}
