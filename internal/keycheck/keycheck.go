// Package keycheck refuses secret keys that are too short or plainly not
// random bytes: a buffer never filled (make([]byte, 32) and no rand.Read),
// or a placeholder such as 32 times the same letter, or a word typed more
// than once. Anyone who guesses such a key can forge whatever it signs.
// The session Manager checks its signing keys and its TagKey with it, the
// rate limiter its Secret.
package keycheck

import "fmt"

// minDistinct is the fewest distinct byte values accepted in a key. Random
// bytes have far more: 32 of them have about 30 distinct values, and fewer
// than 8 with a chance below 2^-120, while a key that repeats a short
// placeholder ("changeme" four times has 7) has fewer.
const minDistinct = 8

// minRun is the length of a run of bytes that a key may hold only once.
// The runs of n random bytes make about n²/2 pairs, each alike with a
// chance of 2^-64: for keys of up to 1,024 bytes, below 2^-45 in all. A
// key that holds a run of 8 twice is a placeholder repeated
// ("secretsecretsecret...", "password password ..."), whatever its
// distinct values.
const minRun = 8

// minTextRun is minRun for the base64 text of a key (CheckText): the runs
// of random base64 characters are alike with a chance of 2^-60 a pair,
// of hex digits (which base64 decodes too) 2^-40.
const minTextRun = 10

// Check returns nil if key has at least min bytes, at least minDistinct
// distinct byte values and no run of minRun bytes twice, and else an
// error that says which, without the key's value.
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
	if repeats(string(key), minRun) {
		return fmt.Errorf("a run of %d bytes appears twice in %d bytes: not random bytes, a placeholder repeated (make a key with crypto/rand, e.g. openssl rand -base64 32)", minRun, len(key))
	}
	return nil
}

// CheckText returns an error, without the key's value, if text, a key in
// base64, repeats a run of minTextRun characters: a placeholder typed in
// place of a key ("supersecretsupersecret..."), which decodes to bytes
// that Check cannot tell from random ones.
func CheckText(text string) error {
	if repeats(text, minTextRun) {
		return fmt.Errorf("a run of %d characters appears twice: a placeholder, not the base64 of random bytes (make a key with openssl rand -base64 32)", minTextRun)
	}
	return nil
}

// repeats reports whether s holds some run of n bytes twice (the two may
// overlap).
func repeats(s string, n int) bool {
	seen := make(map[string]bool, len(s))
	for i := 0; i+n <= len(s); i++ {
		if seen[s[i:i+n]] {
			return true
		}
		seen[s[i:i+n]] = true
	}
	return false
}
