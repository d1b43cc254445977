package redisstore

import (
	"slices"
	"sync"
	"sync/atomic"

	"github.com/mna/redisc"
)

// cluster is a redisc Cluster and the latest slot map it learned.
type cluster struct {
	*redisc.Cluster
	// slots is the slot map of the Cluster's latest CLUSTER SLOTS, nil
	// before the first. redisc also corrects its own map on a MOVED
	// without telling, so this one can be behind it, never ahead.
	slots atomic.Pointer[slotMap]
	// pools holds, by address, the pool through which redisc dials that
	// node (see clusterSource.predial), recorded as it dials: redisc
	// closes, unused, a pool it made twice at once for one node.
	pools sync.Map
}

// slotMap is a slot map as ranges of slots served by the same nodes.
type slotMap struct {
	ranges []slotRange // in slot order
	full   bool        // every slot has a master
}

// slotRange is a range of slots, first to last, and the nodes that serve
// them: the master, then its replicas.
type slotRange struct {
	first, last int
	nodes       []string
}

// newSlotMap returns the slot map of layout, redisc's nodes of each slot.
func newSlotMap(layout *[redisc.HashSlots][]string) *slotMap {
	m := &slotMap{full: true}
	for slot, nodes := range layout {
		if len(nodes) == 0 {
			m.full = false
			continue
		}
		if n := len(m.ranges); n > 0 && m.ranges[n-1].last == slot-1 && slices.Equal(m.ranges[n-1].nodes, nodes) {
			m.ranges[n-1].last = slot
			continue
		}
		m.ranges = append(m.ranges, slotRange{first: slot, last: slot, nodes: nodes})
	}
	return m
}

// master returns the address of the master of slot, "" for none.
func (m *slotMap) master(slot int) string {
	i, found := slices.BinarySearchFunc(m.ranges, slot, func(r slotRange, slot int) int {
		switch {
		case r.last < slot:
			return -1
		case r.first > slot:
			return 1
		}
		return 0
	})
	if !found {
		return ""
	}
	return m.ranges[i].nodes[0]
}

// nodes returns the addresses of every node the map lists, masters and
// replicas, each once.
func (m *slotMap) nodes() []string {
	var addrs []string
	for _, r := range m.ranges {
		for _, addr := range r.nodes {
			if !slices.Contains(addrs, addr) {
				addrs = append(addrs, addr)
			}
		}
	}
	return addrs
}
