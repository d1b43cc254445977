package keycheck

import (
	"bytes"
	"crypto/rand"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	random := make([]byte, 32)
	rand.Read(random) // never fails
	for _, tc := range []struct {
		name string
		key  []byte
		want string // a part of the error; "" for nil
	}{
		{"random", random, ""},
		{"text with many letters", []byte("correct horse battery staple, 2026"), ""},
		{"hex digits as text", []byte("0123456789abcdef0123456789abcdef"), ""},
		{"short", random[:31], "want at least 32 bytes, got 31"},
		{"never filled", make([]byte, 32), "only 1 distinct byte values in 32 bytes"},
		{"one letter", bytes.Repeat([]byte("k"), 64), "only 1 distinct"},
		{"a short placeholder repeated", bytes.Repeat([]byte("changeme"), 4), "only 7 distinct"},
		{"seven values", []byte("abcdefgabcdefgabcdefgabcdefgabcd"), "only 7 distinct"},
		{"eight values", []byte("abcdefghabcdefghabcdefghabcdefgh"), ""},
	} {
		err := Check(tc.key, 32)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: Check = %v, want nil", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: Check = %v, want an error with %q", tc.name, err, tc.want)
		case err != nil && len(tc.key) > 0 && strings.Contains(err.Error(), string(tc.key)):
			t.Errorf("%s: the error %q repeats the key", tc.name, err)
		}
	}
}
