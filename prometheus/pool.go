package sessionkitprom

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionkit/sessionkit/redisstore"
)

// WatchPool registers a collector of the connection pool series of store
// (a *redisstore.Store) with the Metrics' registerer. At each scrape it
// takes one store.PoolStats snapshot, which sends no command to Redis,
// and reports:
//
//	sessionkit_redis_pool_connections{state="in_use"|"idle"}  gauge
//	sessionkit_redis_pool_max_connections                     gauge
//	sessionkit_redis_pool_exhausted                           gauge
//	sessionkit_redis_pool_waits_total                         counter
//	sessionkit_redis_pool_wait_seconds_total                  counter
//	sessionkit_redis_dials_total                              counter
//	sessionkit_redis_dial_errors_total                        counter
//	sessionkit_redis_sentinels_down                           gauge
//	sessionkit_redis_sentinel_lookup_failures_total           counter
//	sessionkit_redis_sentinels_failing                        gauge
//
// The last three are 0 outside Sentinel.
//
// A Metrics watches one pool: a second call returns an error matching
// prometheus.AlreadyRegisteredError. Watch another Store with a Metrics
// of its own, told apart by Options.ConstLabels.
func (m *Metrics) WatchPool(store interface{ PoolStats() redisstore.PoolStats }) error {
	if store == nil {
		return errors.New("sessionkitprom: WatchPool: nil store")
	}
	if err := m.reg.Register(newPoolCollector(store, m.constLabels)); err != nil {
		return fmt.Errorf("sessionkitprom: WatchPool: %w", err)
	}
	return nil
}

// poolCollector reads a Store's PoolStats at scrape time.
type poolCollector struct {
	store interface{ PoolStats() redisstore.PoolStats }

	connections, maxConnections *prometheus.Desc
	exhausted                   *prometheus.Desc
	waits, waitSeconds          *prometheus.Desc
	dials, dialErrors           *prometheus.Desc
	sentinelsDown, lookupFails  *prometheus.Desc
	sentinelsFailing            *prometheus.Desc
}

func newPoolCollector(store interface{ PoolStats() redisstore.PoolStats }, constLabels prometheus.Labels) *poolCollector {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "redis", name), help, labels, constLabels)
	}
	return &poolCollector{
		store:            store,
		connections:      desc("pool_connections", "Open connections of the session store's Redis pool, by state: in_use or idle; their sum is the open connections.", "state"),
		maxConnections:   desc("pool_max_connections", "Most connections the session store's Redis pool opens at once (per node on a Redis Cluster)."),
		exhausted:        desc("pool_exhausted", "1 when every connection of the session store's Redis pool is in use and it may open no more (on a Redis Cluster: when any node has MaxActive calls bound to it), as PoolStats.Exhausted reports; 0 otherwise."),
		waits:            desc("pool_waits_total", "Calls that had to wait for a connection of the session store's Redis pool and got one; waits that timed out are not counted."),
		waitSeconds:      desc("pool_wait_seconds_total", "Time calls spent waiting for a connection of the session store's Redis pool, in the waits that got one."),
		dials:            desc("dials_total", "Connections the session store dialled to Redis, its pool's and its near-cache's, failed dials included (zero for a pool the caller built)."),
		dialErrors:       desc("dial_errors_total", "Dials of the session store's Redis pool that failed: refused, timed out, TLS or authentication failures, and under Sentinel a server named as the master that was none."),
		sentinelsDown:    desc("sentinels_down", "1 when, under Redis Sentinel, no sentinel named the master the last time the session store asked (every second): calls go on to the master named last, but a failover would not be followed; 0 otherwise, and outside Sentinel."),
		lookupFails:      desc("sentinel_lookup_failures_total", "Times, under Redis Sentinel, the session store asked the sentinels where the master is and none named it."),
		sentinelsFailing: desc("sentinels_failing", "Under Redis Sentinel with two or more sentinels, how many did not say where the master is at the session store's last check of them all (every 30 seconds): down, stalled, refusing its credentials or monitoring no master of that name; calls go on while another answers, but fewer are left to vote on a failover. 0 outside Sentinel."),
	}
}

// Describe implements prometheus.Collector.
func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.connections
	ch <- c.maxConnections
	ch <- c.exhausted
	ch <- c.waits
	ch <- c.waitSeconds
	ch <- c.dials
	ch <- c.dialErrors
	ch <- c.sentinelsDown
	ch <- c.lookupFails
	ch <- c.sentinelsFailing
}

// Collect implements prometheus.Collector, from one snapshot.
func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	ps := c.store.PoolStats()
	ch <- prometheus.MustNewConstMetric(c.connections, prometheus.GaugeValue, float64(max(ps.Active-ps.Idle, 0)), "in_use")
	ch <- prometheus.MustNewConstMetric(c.connections, prometheus.GaugeValue, float64(ps.Idle), "idle")
	ch <- prometheus.MustNewConstMetric(c.maxConnections, prometheus.GaugeValue, float64(ps.MaxActive))
	exhausted := 0.0
	if ps.Exhausted() {
		exhausted = 1
	}
	ch <- prometheus.MustNewConstMetric(c.exhausted, prometheus.GaugeValue, exhausted)
	ch <- prometheus.MustNewConstMetric(c.waits, prometheus.CounterValue, float64(ps.Waits))
	ch <- prometheus.MustNewConstMetric(c.waitSeconds, prometheus.CounterValue, ps.WaitTime.Seconds())
	ch <- prometheus.MustNewConstMetric(c.dials, prometheus.CounterValue, float64(ps.Dials))
	ch <- prometheus.MustNewConstMetric(c.dialErrors, prometheus.CounterValue, float64(ps.DialErrors))
	down := 0.0
	if ps.SentinelsDown {
		down = 1
	}
	ch <- prometheus.MustNewConstMetric(c.sentinelsDown, prometheus.GaugeValue, down)
	ch <- prometheus.MustNewConstMetric(c.lookupFails, prometheus.CounterValue, float64(ps.SentinelLookupFailures))
	ch <- prometheus.MustNewConstMetric(c.sentinelsFailing, prometheus.GaugeValue, float64(ps.SentinelsFailing))
}
