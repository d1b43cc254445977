// Package loglimit lets a repeated log line through at most once per
// interval, so that a failure every request sees (a Redis outage) logs a
// line per interval, not one per request. The session Manager and the rate
// limiter share it.
package loglimit

import (
	"sync"
	"sync/atomic"
	"time"
)

// Limiter lets one line out per Interval and counts the ones it holds back.
// The zero value lets every line through; set Interval before first use.
type Limiter struct {
	Interval time.Duration

	mu         sync.Mutex
	next       time.Time // when the next line may go out
	suppressed int       // lines held back since the last one
	// held is suppressed > 0, for End to check without the lock on the
	// path of every request that succeeds.
	held atomic.Bool
}

// Do calls log with the number of lines held back since the last one, if a
// line may go out at now; otherwise it counts one more.
func (l *Limiter) Do(now time.Time, log func(suppressed int)) {
	l.mu.Lock()
	if now.Before(l.next) {
		l.suppressed++
		l.held.Store(true)
		l.mu.Unlock()
		return
	}
	n := l.suppressed
	l.next, l.suppressed = now.Add(l.Interval), 0
	l.held.Store(false)
	l.mu.Unlock()
	log(n)
}

// End reports that what the lines were about is over (Redis answers
// again). If lines were held back since the last one went out, it calls
// log with their number, so that a failure shorter than Interval reports
// its count when it ends rather than with the next failure, maybe hours
// later; and the next line goes out at once. Otherwise it does nothing, at
// the cost of an atomic load.
func (l *Limiter) End(log func(suppressed int)) {
	if !l.held.Load() {
		return
	}
	l.mu.Lock()
	n := l.suppressed
	l.next, l.suppressed = time.Time{}, 0
	l.held.Store(false)
	l.mu.Unlock()
	if n > 0 {
		log(n)
	}
}
