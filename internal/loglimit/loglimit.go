// Package loglimit lets a repeated log line through at most once per
// interval, so that a failure every request sees (a Redis outage) logs a
// line per interval, not one per request. The session Manager and the rate
// limiter share it.
package loglimit

import (
	"sync"
	"time"
)

// Limiter lets one line out per Interval and counts the ones it holds back.
// The zero value lets every line through; set Interval before first use.
type Limiter struct {
	Interval time.Duration

	mu         sync.Mutex
	next       time.Time // when the next line may go out
	suppressed int       // lines held back since the last one
}

// Do calls log with the number of lines held back since the last one, if a
// line may go out at now; otherwise it counts one more.
func (l *Limiter) Do(now time.Time, log func(suppressed int)) {
	l.mu.Lock()
	if now.Before(l.next) {
		l.suppressed++
		l.mu.Unlock()
		return
	}
	n := l.suppressed
	l.next, l.suppressed = now.Add(l.Interval), 0
	l.mu.Unlock()
	log(n)
}
