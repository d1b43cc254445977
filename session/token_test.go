package session

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/securecookie"
)

func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, MinKeyLength) }

func TestSignerRoundTrip(t *testing.T) {
	s, err := newSigner([][]byte{testKey(1)}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	token := strings.Repeat("a", tokenLen)
	deadline := time.Now().Add(time.Hour).Truncate(time.Second)
	signed, err := s.sign(token, deadline)
	if err != nil {
		t.Fatal(err)
	}
	if len(signed) > 200 {
		t.Errorf("len(signed) = %d, want a short value", len(signed))
	}
	gotToken, gotDeadline, err := s.verify(signed)
	if err != nil || gotToken != token || !gotDeadline.Equal(deadline) {
		t.Errorf("verify(sign(token)) = %q, %v, %v; want %q, %v, nil", gotToken, gotDeadline, err, token, deadline)
	}
}

func TestSignerRotation(t *testing.T) {
	token := strings.Repeat("b", tokenLen)
	deadline := time.Now().Add(time.Hour)
	old, _ := newSigner([][]byte{testKey(1)}, nil, time.Hour)
	both, _ := newSigner([][]byte{testKey(2), testKey(1)}, nil, time.Hour)
	onlyNew, _ := newSigner([][]byte{testKey(2)}, nil, time.Hour)

	signedOld, _ := old.sign(token, deadline)
	if _, _, err := both.verify(signedOld); err != nil {
		t.Errorf("new,old keys reject a token signed with old: %v", err)
	}
	if _, _, err := onlyNew.verify(signedOld); err == nil {
		t.Error("new key alone accepts a token signed with the retired key")
	}
	signedBoth, _ := both.sign(token, deadline)
	if _, _, err := onlyNew.verify(signedBoth); err != nil {
		t.Errorf("a token signed by new,old does not verify with new: %v", err)
	}
	if _, _, err := old.verify(signedBoth); err == nil {
		t.Error("new,old signs with old; want the first key to sign")
	}
}

func TestSignerRejects(t *testing.T) {
	s, _ := newSigner([][]byte{testKey(1)}, nil, time.Hour)
	good, _ := s.sign(strings.Repeat("c", tokenLen), time.Now().Add(time.Hour))
	flipped := []byte(good)
	flipped[len(flipped)/2] ^= 1
	tests := []struct{ name, in string }{
		{"empty", ""},
		{"oversized", strings.Repeat("A", maxSignedLen+1)},
		{"not base64", "%%%%not-base64%%%%"},
		{"altered", string(flipped)},
		{"truncated", good[:len(good)-3]},
		{"glob", "session:*"},
		{"raw token", strings.Repeat("c", tokenLen)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tok, _, err := s.verify(tc.in); err == nil {
				t.Errorf("verify(%.20q) = %q, nil; want an error", tc.in, tok)
			}
		})
	}
}

// TestSignerPayload checks that a validly signed value with a payload that is
// not "<token>.<deadline>" is still rejected.
func TestSignerPayload(t *testing.T) {
	s, _ := newSigner([][]byte{testKey(1)}, nil, time.Hour)
	for _, payload := range []string{
		"", "x", strings.Repeat("a", tokenLen), strings.Repeat("a", tokenLen) + ".",
		strings.Repeat("a", tokenLen) + ".-5", strings.Repeat("*", tokenLen) + ".100",
		strings.Repeat("a", tokenLen-1) + ".100", strings.Repeat("a", tokenLen) + ".1.2",
	} {
		v, err := securecookie.EncodeMulti(macName, []byte(payload), s.codecs...)
		if err != nil {
			t.Fatal(err)
		}
		if tok, _, err := s.verify(v); err == nil {
			t.Errorf("verify(signed %q) = %q, nil; want an error", payload, tok)
		}
	}
}

func TestValidToken(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{strings.Repeat("A", tokenLen), true},
		{strings.Repeat("-", tokenLen), true},
		{strings.Repeat("A", tokenLen-1), false},
		{strings.Repeat("A", tokenLen-1) + "=", false},
		{strings.Repeat("A", tokenLen-1) + "*", false},
		{strings.Repeat("A", tokenLen-1) + ":", false},
	}
	for _, tc := range tests {
		if got := validToken(tc.in); got != tc.want {
			t.Errorf("validToken(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func FuzzVerify(f *testing.F) {
	s, _ := newSigner([][]byte{testKey(1)}, nil, time.Hour)
	good, _ := s.sign(strings.Repeat("d", tokenLen), time.Now().Add(time.Hour))
	f.Add(good)
	f.Add("")
	f.Add("MTcw|abc|def")
	f.Fuzz(func(t *testing.T, in string) {
		token, deadline, err := s.verify(in)
		if err != nil {
			return
		}
		if !validToken(token) || deadline.Unix() <= 0 {
			t.Errorf("verify(%q) accepted token %q, deadline %v", in, token, deadline)
		}
	})
}
