// Package paired times two operations against each other on a machine
// whose speed drifts: a VM runs slower for stretches of a second or so,
// which moves a benchmark run of half a second by 20% and more, so two runs
// timed one after the other can each land in a fast or a slow stretch.
// Time sends the two in alternating blocks of a few milliseconds instead,
// so that both see the same stretches. internal/bench's login and the
// prometheus package's metrics cost use it.
package paired

import "time"

// Block is how many operations Time sends through one side before it
// turns to the other: about 5 ms of logins or reads on the machines of
// docs/benchmarks.md.
const Block = 64

// Time runs ops[k](i) for i from 0 to n-1 for each k, in alternating
// blocks of Block operations, and returns how long each side's operations
// took in all. The sides take turns going first, block by block, so that
// none always follows another; the clock is read once a block, not once an
// operation. What the garbage collector does lands on whichever side runs
// when it does.
func Time(n int, ops ...func(i int)) []time.Duration {
	spent := make([]time.Duration, len(ops))
	for done, first := 0, 0; done < n; done, first = done+Block, (first+1)%len(ops) {
		m := min(Block, n-done)
		for k := range ops {
			side := (first + k) % len(ops)
			op := ops[side]
			start := time.Now()
			for i := done; i < done+m; i++ {
				op(i)
			}
			spent[side] += time.Since(start)
		}
	}
	return spent
}
