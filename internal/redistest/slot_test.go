package redistest_test

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/sessionkit/sessionkit/internal/redistest"
)

// TestSlot compares Slot with CLUSTER KEYSLOT of a real cluster-enabled
// node for hand-picked keys with and without hash tags, and many random
// ones made of brace-heavy bytes.
func TestSlot(t *testing.T) {
	// Values from the Redis documentation and the CRC16 check value.
	known := map[string]int{"123456789": 0x31c3, "somekey": 11058, "foo{hash_tag}": 2515}
	for key, want := range known {
		if got := redistest.Slot(key); got != want {
			t.Errorf("Slot(%q) = %d, want %d", key, got, want)
		}
	}

	keys := []string{
		"", "a", "foo", "{", "}", "{}", "}{", "{}}", "{{}}", "{a}", "{a}b", "b{a}",
		"{}{a}", "{a}{b}", "{{a}}", "a{{b}}c", "{a{b}c}", "x{}y{z}", "{ }", "a}b{c}",
		"{user1000}.following", "{user1000}.followers", "\x00{\xff}", "日本{語}",
	}
	r := rand.New(rand.NewPCG(1, 2))
	const alphabet = "{}ab\x00\xff"
	for range 5000 {
		var b strings.Builder
		for range r.IntN(12) {
			b.WriteByte(alphabet[r.IntN(len(alphabet))])
		}
		keys = append(keys, b.String())
	}

	s := redistest.Start(t, "--cluster-enabled", "yes")
	c := dial(t, s.Addr(), 5*time.Second)
	for _, k := range keys {
		if err := c.Send("CLUSTER", "KEYSLOT", k); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		want, err := redis.Int(c.Receive())
		if err != nil {
			t.Fatalf("CLUSTER KEYSLOT %q: %v", k, err)
		}
		if got := redistest.Slot(k); got != want {
			t.Errorf("Slot(%q) = %d, CLUSTER KEYSLOT says %d", k, got, want)
		}
	}
}
