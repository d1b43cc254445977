package sessionkitprom

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionkit/sessionkit/redisstore"
)

// WatchNearCache registers a collector of the near-cache series of store
// (a *redisstore.Store with Config.NearCache on) with the Metrics'
// registerer. At each scrape it takes one store.NearCacheStats snapshot,
// which sends no command to Redis, and reports:
//
//	sessionkit_nearcache_hits_total             counter
//	sessionkit_nearcache_misses_total           counter
//	sessionkit_nearcache_invalidations_total    counter
//	sessionkit_nearcache_flushes_total          counter
//	sessionkit_nearcache_lease_expiries_total   counter
//	sessionkit_nearcache_evictions_total        counter
//	sessionkit_nearcache_entries                gauge
//	sessionkit_nearcache_connected              gauge (1 or 0)
//
// A Metrics watches one near-cache: a second call returns an error
// matching prometheus.AlreadyRegisteredError.
func (m *Metrics) WatchNearCache(store interface {
	NearCacheStats() redisstore.NearCacheStats
}) error {
	if store == nil {
		return errors.New("sessionkitprom: WatchNearCache: nil store")
	}
	if err := m.reg.Register(newNearCacheCollector(store, m.constLabels)); err != nil {
		return fmt.Errorf("sessionkitprom: WatchNearCache: %w", err)
	}
	return nil
}

// nearCacheCollector reads a Store's NearCacheStats at scrape time.
type nearCacheCollector struct {
	store interface {
		NearCacheStats() redisstore.NearCacheStats
	}
	hits, misses, invalidations, flushes *prometheus.Desc
	leaseExpiries, evictions             *prometheus.Desc
	entries, connected                   *prometheus.Desc
}

func newNearCacheCollector(store interface {
	NearCacheStats() redisstore.NearCacheStats
}, constLabels prometheus.Labels) *nearCacheCollector {
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "nearcache", name), help, nil, constLabels)
	}
	return &nearCacheCollector{
		store:         store,
		hits:          desc("hits_total", "Session loads served from the near-cache, without a Redis command."),
		misses:        desc("misses_total", "Session loads that went to Redis although the near-cache is on: absent or expired entry, idle window due for extension, or near-cache suspended."),
		invalidations: desc("invalidations_total", "Near-cache entries dropped because their key changed: Redis reported the change, or this Store made it."),
		flushes:       desc("flushes_total", "Times the whole near-cache was emptied: once per loss of its subscribed invalidation connection (lost or replaced), and per FLUSHDB/FLUSHALL reported."),
		leaseExpiries: desc("lease_expiries_total", "Times the invalidation connection's lease ran out before a PING was answered, while it waited or before it was sent (at most once a PING), suspending the near-cache: a slow or far network, or a starved process."),
		evictions:     desc("evictions_total", "Near-cache entries dropped to stay within NearCache.MaxEntries."),
		entries:       desc("entries", "Session records held in the near-cache."),
		connected:     desc("connected", "1 while the near-cache's invalidation connection is up and subscribed, else 0."),
	}
}

// Describe implements prometheus.Collector.
func (c *nearCacheCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.hits, c.misses, c.invalidations, c.flushes, c.leaseExpiries, c.evictions, c.entries, c.connected} {
		ch <- d
	}
}

// Collect implements prometheus.Collector, from one snapshot.
func (c *nearCacheCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.store.NearCacheStats()
	counter := func(d *prometheus.Desc, v int64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	counter(c.hits, st.Hits)
	counter(c.misses, st.Misses)
	counter(c.invalidations, st.Invalidations)
	counter(c.flushes, st.Flushes)
	counter(c.leaseExpiries, st.LeaseExpiries)
	counter(c.evictions, st.Evictions)
	ch <- prometheus.MustNewConstMetric(c.entries, prometheus.GaugeValue, float64(st.Entries))
	connected := 0.0
	if st.Connected {
		connected = 1
	}
	ch <- prometheus.MustNewConstMetric(c.connected, prometheus.GaugeValue, connected)
}
