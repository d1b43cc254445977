package paired

import (
	"slices"
	"testing"
)

// TestTime checks that every operation of each side runs once, in order
// within its side, and that the sides take turns going first.
func TestTime(t *testing.T) {
	const n = 2*Block + 5
	var seen [2][]int
	var order []int // the side of each block's first operation, per block
	ops := make([]func(int), 2)
	for side := range ops {
		ops[side] = func(i int) {
			if i%Block == 0 && len(seen[0])+len(seen[1]) == 2*i {
				order = append(order, side)
			}
			seen[side] = append(seen[side], i)
		}
	}
	spent := Time(n, ops...)
	for side := range seen {
		want := make([]int, n)
		for i := range want {
			want[i] = i
		}
		if !slices.Equal(seen[side], want) {
			t.Errorf("side %d ran %v, want 0 to %d in order", side, seen[side], n-1)
		}
		if spent[side] <= 0 {
			t.Errorf("side %d took %v, want a positive time", side, spent[side])
		}
	}
	if !slices.Equal(order, []int{0, 1, 0}) {
		t.Errorf("sides going first, block by block: %v, want [0 1 0]", order)
	}
}
