// Package keycheck refuses secret keys that are too short or plainly not
// random bytes: a buffer never filled (make([]byte, 32) and no rand.Read),
// or a placeholder such as 32 times the same letter. Anyone who guesses
// such a key can forge whatever it signs. The session Manager checks its
// signing keys and its TagKey with it, the rate limiter its Secret.
package keycheck

import "fmt"

// minDistinct is the fewest distinct byte values accepted in a key. Random
// bytes have far more: 32 of them have about 30 distinct values, and fewer
// than 8 with a chance below 2^-120, while a key that repeats a short
// placeholder ("changeme" four times has 7) has fewer.
const minDistinct = 8

// Check returns nil if key has at least min bytes and at least minDistinct
// distinct byte values, and else an error that says which, without the
// key's value.
func Check(key []byte, min int) error {
	if len(key) < min {
		return fmt.Errorf("want at least %d bytes, got %d", min, len(key))
	}
	var seen [256]bool
	n := 0
	for _, b := range key {
		if !seen[b] {
			seen[b] = true
			n++
		}
	}
	if n < minDistinct {
		return fmt.Errorf("only %d distinct byte values in %d bytes: not random bytes (make a key with crypto/rand, e.g. openssl rand -base64 32)", n, len(key))
	}
	return nil
}
