package session

import (
	"fmt"
	"testing"

	"github.com/mna/redisc"
)

// TestSlotBalance simulates the hash tags of 1,000,000 user ids and
// reports how evenly they spread over Redis Cluster's 16,384 slots, and
// over three masters holding a third of the slots each, the figures of
// docs/scaling.md. The busiest slot gets about 1.55 times the mean, which
// is the chance spread of 61 users a slot (the tags themselves spread
// within 4.3%, see tagLen); the masters get the same within 0.5%.
func TestSlotBalance(t *testing.T) {
	const users, slots = 1_000_000, 16384
	m := &Manager{cfg: Config{TagKey: testKey(9)}}
	var perSlot [slots]int
	for i := range users {
		perSlot[redisc.Slot(withTag(m.userTag(fmt.Sprintf("user-%d", i)), ""))]++
	}
	var perNode [3]int
	hi := 0
	for s, n := range perSlot {
		hi = max(hi, n)
		perNode[s*3/slots] += n
	}
	mean := float64(users) / slots
	nodeHi := max(perNode[0], perNode[1], perNode[2])
	t.Logf("%d users: keys a slot max %d, mean %.1f, max/mean %.3f; a master (of 3) max %d, mean %.0f, max/mean %.4f",
		users, hi, mean, float64(hi)/mean, nodeHi, float64(users)/3, float64(nodeHi)/(float64(users)/3))
	if r := float64(hi) / mean; r > 1.8 {
		t.Errorf("busiest slot has %.2f times the mean, want at most 1.8", r)
	}
	if r := float64(nodeHi) / (float64(users) / 3); r > 1.01 {
		t.Errorf("busiest master has %.4f times the mean, want at most 1.01", r)
	}
}
