package sessionkitprom_test

import (
	"fmt"
	"log"

	"github.com/prometheus/client_golang/prometheus"

	sessionkitprom "github.com/sessionkit/sessionkit/prometheus"
	"github.com/sessionkit/sessionkit/redisstore"
	"github.com/sessionkit/sessionkit/session"
)

// Example wires the metrics into a Store and a Manager and lists the
// series a scrape finds. Serve the registry with promhttp.HandlerFor (or
// register with prometheus.DefaultRegisterer and use promhttp.Handler).
func Example() {
	reg := prometheus.NewRegistry()
	m, err := sessionkitprom.New(reg, sessionkitprom.Options{})
	if err != nil {
		log.Fatal(err)
	}
	// Open dials nothing yet; neither does a scrape of the pool series.
	store, err := redisstore.Open(redisstore.Config{Addr: "redis.internal:6379", Observer: m})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	if err := m.WatchPool(store); err != nil {
		log.Fatal(err)
	}
	_, err = session.New(store, session.Config{
		Keys:    [][]byte{[]byte("an example key: a real one is 32 random bytes")},
		Metrics: m,
	})
	if err != nil {
		log.Fatal(err)
	}

	families, err := reg.Gather()
	if err != nil {
		log.Fatal(err)
	}
	for _, f := range families {
		fmt.Println(f.GetName(), f.GetType())
	}
	// Output:
	// sessionkit_commit_failures_total COUNTER
	// sessionkit_redis_dial_errors_total COUNTER
	// sessionkit_redis_dials_total COUNTER
	// sessionkit_redis_pool_connections GAUGE
	// sessionkit_redis_pool_exhausted GAUGE
	// sessionkit_redis_pool_max_connections GAUGE
	// sessionkit_redis_pool_wait_seconds_total COUNTER
	// sessionkit_redis_pool_waits_total COUNTER
	// sessionkit_redis_sentinel_lookup_failures_total COUNTER
	// sessionkit_redis_sentinels_down GAUGE
	// sessionkit_redis_sentinels_failing GAUGE
	// sessionkit_requests_anonymous_on_outage_total COUNTER
	// sessionkit_sessions_total COUNTER
	// sessionkit_store_errors_total COUNTER
	// sessionkit_store_operation_duration_seconds HISTOGRAM
	// sessionkit_tokens_rejected_total COUNTER
}

// ExampleMetrics_ObserveCall shows what a store call that found Redis
// down counts.
func ExampleMetrics_ObserveCall() {
	reg := prometheus.NewRegistry()
	m, err := sessionkitprom.New(reg, sessionkitprom.Options{})
	if err != nil {
		log.Fatal(err)
	}
	// What a Store with Observer: m reports when a read cannot connect.
	m.ObserveCall("load", 0, fmt.Errorf("redisstore: load: %w: connection refused", redisstore.ErrUnavailable))

	families, err := reg.Gather()
	if err != nil {
		log.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "sessionkit_store_errors_total" {
			continue
		}
		for _, mt := range f.GetMetric() {
			if v := mt.GetCounter().GetValue(); v > 0 {
				fmt.Print(f.GetName())
				for _, l := range mt.GetLabel() {
					fmt.Printf(" %s=%s", l.GetName(), l.GetValue())
				}
				fmt.Println(":", v)
			}
		}
	}
	// Output:
	// sessionkit_store_errors_total class=unavailable op=load: 1
}
