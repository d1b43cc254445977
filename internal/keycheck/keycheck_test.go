package keycheck

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
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
		{"hex digits as text", []byte("3f9a0c7e51d24b86e0a7c39f2d5b184c"), ""},
		{"hex digits in order, twice", []byte("0123456789abcdef0123456789abcdef"), "a run of 8 bytes appears twice in 32 bytes"},
		{"a word repeated", []byte("secretsecretsecretsecretsecret123456"), "a run of 8 bytes appears twice"},
		{"a phrase twice", []byte("password password 2026 password password"), "a run of 8 bytes appears twice"},
		{"short", random[:31], "want at least 32 bytes, got 31"},
		{"never filled", make([]byte, 32), "only 1 distinct byte values in 32 bytes"},
		{"one letter", bytes.Repeat([]byte("k"), 64), "only 1 distinct"},
		{"a short placeholder repeated", bytes.Repeat([]byte("changeme"), 4), "only 7 distinct"},
		{"seven values", []byte("abcdefgabcdefgabcdefgabcdefgabcd"), "only 7 distinct"},
		{"eight values", []byte("abcdefghbadcfehgacegbdfhaebfcgdh"), ""},
		{"eight values repeated", []byte("abcdefghabcdefghabcdefghabcdefgh"), "a run of 8 bytes appears twice"},
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

func TestCheckText(t *testing.T) {
	random := make([]byte, 64)
	rand.Read(random) // never fails
	for _, tc := range []struct {
		name string
		text string
		want bool // an error
	}{
		{"base64 of random bytes", base64.StdEncoding.EncodeToString(random[:32]), false},
		{"base64 of 64 random bytes", base64.StdEncoding.EncodeToString(random), false},
		{"hex of random bytes", hex.EncodeToString(random[:32]), false},
		{"a word repeated", "supersecretsupersecretsupersecretsupersecret", true},
		{"a word twice, digits between", "passwordpassword1234567890passwordpassword12", true},
	} {
		err := CheckText(tc.text)
		if (err != nil) != tc.want {
			t.Errorf("%s: CheckText = %v, want an error: %v", tc.name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), tc.text[:10]) {
			t.Errorf("%s: the error %q repeats the key", tc.name, err)
		}
	}
}
