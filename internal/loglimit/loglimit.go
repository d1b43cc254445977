// Package loglimit lets a repeated log line through at most once per
// interval, so that a failure every request sees (a Redis outage) logs a
// line per interval, not one per request. The core packages and the
// example share it.
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
	ended      time.Time // when End's last line went out, until a Do's goes out
	suppressed int       // lines held back since the last one
	// pending says that a line went out or was held back since End's
	// last: End has an end to report. An atomic, for End to check without
	// the lock on the path of every request that succeeds.
	pending atomic.Bool
}

// Do calls log with the number of lines held back since the last one, if a
// line may go out at now; otherwise it counts one more.
func (l *Limiter) Do(now time.Time, log func(suppressed int)) {
	l.mu.Lock()
	l.pending.Store(true)
	// The first line after End's goes out at once, unless it is about a
	// moment before End's line (a failure that took its time).
	afterEnd := !l.ended.IsZero() && !now.Before(l.ended)
	if now.Before(l.next) && !afterEnd {
		l.suppressed++
		l.mu.Unlock()
		return
	}
	l.ended = time.Time{}
	l.emit(now, log)
}

// emit starts a new interval at now and calls log with the number of lines
// held back, after unlocking l.mu, which the caller holds.
func (l *Limiter) emit(now time.Time, log func(suppressed int)) {
	n := l.suppressed
	l.next, l.suppressed = now.Add(l.Interval), 0
	l.mu.Unlock()
	log(n)
}

// End reports at now that what the lines were about is over, for the moment
// (a read that Redis answered). If a line went out or was held back since
// End's last line, and the interval has passed since the last line went
// out, it calls log with the number held back (0 for none): so every
// failure's line is followed by an end's, and the count of a failure
// shorter than Interval comes with the first success an Interval after the
// failure's line, not with the next failure, maybe hours later. The next
// failure after that line (at a now not before it) goes out at once, so
// that each outage of a Redis that comes and goes has a line of its own at
// the failures' level; End's next line waits the interval all the same.
// Failures and successes that alternate (a Redis Cluster with one master
// down) log two lines per Interval, a failure's and an end's, each kind at
// most one. Otherwise it does nothing; with no failure since its last line,
// at the cost of an atomic load.
func (l *Limiter) End(now time.Time, log func(suppressed int)) {
	if !l.pending.Load() {
		return
	}
	l.mu.Lock()
	if !l.pending.Load() || now.Before(l.next) {
		l.mu.Unlock()
		return
	}
	l.pending.Store(false)
	l.ended = now
	l.emit(now, log)
}
