package sessionkitprom

import (
	"context"
	"errors"
	"maps"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionkit/sessionkit/redisstore"
)

// class is the class label of sessionkit_store_errors_total.
type class int

const (
	classUnavailable class = iota
	classRefused
	classContention
	classOther
	numClasses
)

// classNames are the label values of the classes, by class.
var classNames = [numClasses]string{"unavailable", "refused", "contention", "other"}

// classOf returns the class of a Store call's error.
func classOf(err error) class {
	switch {
	case errors.Is(err, redisstore.ErrUnavailable):
		return classUnavailable
	case errors.Is(err, redisstore.ErrRefused):
		return classRefused
	case errors.Is(err, redisstore.ErrContention):
		return classContention
	}
	return classOther
}

// opMetrics are the label children of one op.
type opMetrics struct {
	duration prometheus.Observer
	errors   [numClasses]prometheus.Counter
}

// newOp looks up (and so creates, at zero) the children of op.
func (m *Metrics) newOp(op string) *opMetrics {
	o := &opMetrics{duration: m.duration.WithLabelValues(op)}
	for c, name := range classNames {
		o.errors[c] = m.storeErrors.WithLabelValues(op, name)
	}
	return o
}

// ObserveCall implements redisstore.Observer: it observes took in
// sessionkit_store_operation_duration_seconds{op} and, when err is not nil,
// counts sessionkit_store_errors_total{op, class} with the class of err;
// not a call its caller cancelled (context.Canceled: a client that went
// away), which says nothing about Redis and would let any client move the
// error series at will.
func (m *Metrics) ObserveCall(op string, took time.Duration, err error) {
	o := (*m.ops.Load())[op]
	if o == nil {
		o = m.addOp(op)
	}
	o.duration.Observe(took.Seconds())
	if err != nil && !errors.Is(err, context.Canceled) {
		o.errors[classOf(err)].Inc()
	}
}

// addOp returns the children of op, which is not one of the documented
// ops, adding them to m.ops on first sight. Op names are constants of
// package redisstore, so the table stays small and addOp runs once per
// op.
func (m *Metrics) addOp(op string) *opMetrics {
	m.opsMu.Lock()
	defer m.opsMu.Unlock()
	current := *m.ops.Load()
	if o := current[op]; o != nil {
		return o
	}
	next := maps.Clone(current)
	o := m.newOp(op)
	next[op] = o
	m.ops.Store(&next)
	return o
}
