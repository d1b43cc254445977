package failover_test

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/redisstore"
)

// clusterLoad is the traffic of the Cluster tests: few users, so that the
// limit of 3 revokes often.
var clusterLoad = load{
	workers: 8,
	users:   12,
	limit:   3,
	stable:  40,
	warmup:  700 * time.Millisecond,
	after:   1500 * time.Millisecond,
}

// clusterTraffic returns the traffic of clusterLoad on two new app
// instances on c.
func clusterTraffic(t *testing.T, c *redistest.Cluster) *traffic {
	t.Helper()
	return startTraffic(t, clusterLoad, redisstore.Config{ClusterNodes: c.Addrs(), Timeout: time.Second}, testTagKey)
}

// clusterErrorReplies returns how many CROSSSLOT and NOPERM error replies
// the nodes gave since they started (INFO errorstats).
func clusterErrorReplies(t *testing.T, nodes []*redistest.Server) (n int) {
	t.Helper()
	for _, s := range nodes {
		info, err := redis.String(s.Do(t, "INFO", "errorstats"), nil)
		if err != nil {
			t.Fatal(err)
		}
		for line := range strings.Lines(info) {
			line = strings.TrimSpace(line)
			for _, code := range []string{"CROSSSLOT", "NOPERM"} {
				if rest, ok := strings.CutPrefix(line, "errorstat_"+code+":count="); ok {
					k, _ := strconv.Atoi(rest)
					n += k
				}
			}
		}
	}
	return n
}

// clusterLiveSlots returns the distinct slots of the sessions the traffic
// holds, busiest first.
func clusterLiveSlots(tr *traffic) []int {
	tr.mu.Lock()
	count := map[int]int{}
	for id := range tr.live {
		count[redistest.Slot("session:"+id)]++
	}
	tr.mu.Unlock()
	var slots []int
	for s := range count {
		slots = append(slots, s)
	}
	slices.SortFunc(slots, func(a, b int) int { return count[b] - count[a] })
	return slots
}

// TestClusterFaults runs three faults in sequence on one Redis Cluster of
// three masters with a replica each, each under the traffic of two fresh
// app instances (see traffic.run): a CLUSTER FAILOVER and the resharding
// of slots that hold live sessions, which must lose nothing, logouts
// included, then the kill -9 of a master (last, as it leaves a master
// without a replica), which may bring back logouts (logged only) but no
// other write. Then no node may have answered CROSSSLOT or NOPERM.
func TestClusterFaults(t *testing.T) {
	start := time.Now()
	c := redistest.StartCluster(t, redistest.ClusterOptions{})
	t.Logf("cluster started in %v", time.Since(start).Round(time.Millisecond))
	running := c.Nodes()

	t.Run("Failover", func(t *testing.T) {
		tr := clusterTraffic(t, c)
		fig := tr.run("CLUSTER FAILOVER", noLoss, func() time.Duration {
			// The master of the busiest slot of live sessions.
			return c.Failover(t, c.MasterOf(t, clusterLiveSlots(tr)[0]))
		})
		fig.wantNoResurrection(t)
	})

	t.Run("Reshard", func(t *testing.T) {
		tr := clusterTraffic(t, c)
		const slots = 4
		moved := 0
		fig := tr.run(fmt.Sprintf("resharding up to %d slots of live sessions", slots), noLoss, func() time.Duration {
			start := time.Now()
			masters := c.Masters(t)
			for _, slot := range clusterLiveSlots(tr) {
				if moved == slots {
					break
				}
				from := c.MasterOf(t, slot)
				to := masters[(slices.Index(masters, from)+1)%len(masters)]
				keys, _ := redis.Int(from.Do(t, "CLUSTER", "COUNTKEYSINSLOT", slot), nil)
				t.Logf("slot %d: %d keys moved in %v", slot, keys, c.MoveSlot(t, slot, to).Round(time.Millisecond))
				moved++
			}
			return time.Since(start)
		})
		if moved < 2 {
			t.Errorf("moved %d slots holding live sessions, want several", moved)
		}
		fig.wantNoResurrection(t)
	})

	t.Run("KillMaster", func(t *testing.T) {
		tr := clusterTraffic(t, c)
		var killed *redistest.Server
		// Without Config.WaitReplicas, writes the replica had not received
		// are lost with the master: logouts may come back; logged only.
		tr.run("Cluster kill -9 of a master", noLoss, func() time.Duration {
			// The master of the busiest slot of live sessions.
			killed = c.MasterOf(t, clusterLiveSlots(tr)[0])
			_, took := c.KillMaster(t, killed)
			return took
		})
		running = slices.DeleteFunc(running, func(s *redistest.Server) bool { return s == killed })
	})

	if n := clusterErrorReplies(t, running); n > 0 {
		t.Errorf("the nodes answered CROSSSLOT or NOPERM %d times, want never", n)
	}
}
