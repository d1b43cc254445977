package loglimit

import (
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

// TestLimiterEnd: End reports the lines held back since the last one, once,
// and lets the next line out at once; with none held back it logs nothing.
func TestLimiterEnd(t *testing.T) {
	l := Limiter{Interval: 10 * time.Second}
	start := time.Unix(1000, 0)
	var logged, ended []int
	log := func(n int) { logged = append(logged, n) }
	end := func(n int) { ended = append(ended, n) }
	l.End(end) // nothing held back
	for i := range 3 {
		l.Do(start.Add(time.Duration(i)*time.Second), log) // one line, two held back
	}
	l.End(end)
	l.End(end)                          // already reported
	l.Do(start.Add(4*time.Second), log) // a new failure: out at once
	l.Do(start.Add(5*time.Second), log) // held back
	l.End(end)
	if len(logged) != 2 || logged[0] != 0 || logged[1] != 0 {
		t.Errorf("lines logged with held-back counts %v, want [0 0]", logged)
	}
	if len(ended) != 2 || ended[0] != 2 || ended[1] != 1 {
		t.Errorf("End reported %v, want [2 1]", ended)
	}
}
