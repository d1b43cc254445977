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
