package session

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/securecookie"

	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/redisstore"
)

// testKey returns a key of MinKeyLength bytes that differs with b: b,
// b+1, b+2 and so on, distinct values as a random key has (New refuses a
// key of one repeated byte).
func testKey(b byte) []byte {
	k := make([]byte, MinKeyLength)
	for i := range k {
		k[i] = b + byte(i)
	}
	return k
}

func TestSignerRoundTrip(t *testing.T) {
	s := newSigner([][]byte{testKey(1)}, nil, time.Hour)
	token := strings.Repeat("a", tokenLen)
	deadline := time.Now().Add(time.Hour).Truncate(time.Second)
	signed := s.sign(token, deadline)
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
	old := newSigner([][]byte{testKey(1)}, nil, time.Hour)
	both := newSigner([][]byte{testKey(2), testKey(1)}, nil, time.Hour)
	onlyNew := newSigner([][]byte{testKey(2)}, nil, time.Hour)

	signedOld := old.sign(token, deadline)
	if _, _, err := both.verify(signedOld); err != nil {
		t.Errorf("new,old keys reject a token signed with old: %v", err)
	}
	if _, _, err := onlyNew.verify(signedOld); err == nil {
		t.Error("new key alone accepts a token signed with the retired key")
	}
	signedBoth := both.sign(token, deadline)
	if _, _, err := onlyNew.verify(signedBoth); err != nil {
		t.Errorf("a token signed by new,old does not verify with new: %v", err)
	}
	if _, _, err := old.verify(signedBoth); err == nil {
		t.Error("new,old signs with old; want the first key to sign")
	}
}

func TestSignerRejects(t *testing.T) {
	s := newSigner([][]byte{testKey(1)}, nil, time.Hour)
	good := s.sign(strings.Repeat("c", tokenLen), time.Now().Add(time.Hour))
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
	s := newSigner([][]byte{testKey(1)}, nil, time.Hour)
	for _, payload := range []string{
		"", "x", strings.Repeat("a", tokenLen), strings.Repeat("a", tokenLen) + ".",
		strings.Repeat("a", tokenLen) + ".-5", strings.Repeat("*", tokenLen) + ".100",
		strings.Repeat("a", shortTokenLen-1) + ".100", strings.Repeat("a", tokenLen+1) + ".100", strings.Repeat("a", tokenLen) + ".1.2",
	} {
		v, err := securecookie.EncodeMulti(macName, []byte(payload), codecs([][]byte{testKey(1)}, 0)...)
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
		{strings.Repeat("A", shortTokenLen), true},
		{strings.Repeat("A", shortTokenLen-1), false},
		{strings.Repeat("A", tokenLen+1), false},
		{strings.Repeat("A", tokenLen-1) + "=", false},
		{strings.Repeat("A", tokenLen-1) + "*", false},
		{strings.Repeat("A", tokenLen-1) + ":", false},
		{strings.Repeat("A", shortTokenLen-1) + "*", false},
	}
	for _, tc := range tests {
		if got := validToken(tc.in); got != tc.want {
			t.Errorf("validToken(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func FuzzVerify(f *testing.F) {
	s := newSigner([][]byte{testKey(1)}, nil, time.Hour)
	good := s.sign(strings.Repeat("d", tokenLen), time.Now().Add(time.Hour))
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

// FuzzCheck holds the signer's own verification (open) equal to
// securecookie's DecodeMulti over the same keys, with and without the MAC's
// age limit: for any value, both accept it with the same payload, or both
// refuse it. The seeds include values signed with each key, with a
// retired key, with a MAC that holds "|", and aged ones.
func FuzzCheck(f *testing.F) {
	keys := [][]byte{testKey(1), testKey(2)}
	s := newSigner(keys, nil, time.Hour)
	ageless := codecs(keys, 0)
	for _, k := range [][]byte{testKey(1), testKey(2), testKey(3)} {
		for _, age := range []time.Duration{0, 2 * time.Hour} {
			f.Add(signAt(k, time.Now().Add(-age), strings.Repeat("t", tokenLen)+":1795600800000"))
		}
	}
	f.Add("")
	f.Add("MTcw|abc|def")
	f.Add("MTcwfGFiY3xkZWY=")
	f.Fuzz(func(t *testing.T, in string) {
		if len(in) > maxSignedLen {
			return
		}
		for _, tc := range []struct {
			name   string
			maxAge int64
			codecs []securecookie.Codec
		}{
			{"age limit", s.maxAge, codecs(keys, int(s.maxAge))},
			{"no age limit", 0, ageless},
		} {
			var want []byte
			wantErr := securecookie.DecodeMulti(macName, in, &want, tc.codecs...)
			got, o := open(in, s.keys, tc.maxAge, time.Now().Unix(), new(scratch))
			if (o == openOK) != (wantErr == nil) || (o == openOK && !bytes.Equal(got, want)) {
				t.Errorf("%s: open(%q) = %q, %v; securecookie: %q, %v", tc.name, in, got, o, want, wantErr)
			}
		}
	})
}

// codecs returns a securecookie codec for each key, configured as
// earlier versions signed and verified with them: the NopEncoder
// serializer, no encryption, values up to maxSignedLen, the MAC's age
// limit maxAge seconds (0: none).
func codecs(keys [][]byte, maxAge int) []securecookie.Codec {
	cs := make([]securecookie.Codec, len(keys))
	for i, k := range keys {
		sc := securecookie.New(k, nil)
		sc.SetSerializer(securecookie.NopEncoder{})
		sc.MaxLength(maxSignedLen)
		sc.MaxAge(maxAge)
		cs[i] = sc
	}
	return cs
}

// FuzzSign holds what sign writes readable by securecookie's
// DecodeMulti, as earlier versions verified tokens, with the same
// payload, and by the signer's own check: for any token (with or without
// a tag), deadline and key.
func FuzzSign(f *testing.F) {
	f.Add(strings.Repeat("t", shortTokenLen), int64(1795600800000), byte(1))
	f.Add("{"+strings.Repeat("g", tagLen)+"}"+strings.Repeat("t", tokenLen), int64(1), byte(200))
	f.Fuzz(func(t *testing.T, token string, ms int64, key byte) {
		if ms <= 0 || ms > maxDeadline || len(token) > 300 {
			return
		}
		keys := [][]byte{testKey(key)}
		s := newSigner(keys, nil, time.Hour)
		deadline := time.UnixMilli(ms)
		signed := s.sign(token, deadline)
		var got []byte
		if err := securecookie.DecodeMulti(macName, signed, &got, codecs(keys, int(s.maxAge))...); err != nil {
			t.Fatalf("securecookie cannot read sign(%q, %d): %v", token, ms, err)
		}
		if want := token + ":" + strconv.FormatInt(ms, 10); string(got) != want {
			t.Fatalf("securecookie reads sign(%q, %d) as %q, want %q", token, ms, got, want)
		}
		if !validToken(token) {
			return
		}
		gotToken, gotDeadline, reason, aged := s.check(signed)
		if reason != "" || aged || gotToken != token || !gotDeadline.Equal(deadline) {
			t.Fatalf("check(sign(%q, %d)) = %q, %v, %q, %v", token, ms, gotToken, gotDeadline, reason, aged)
		}
	})
}

// TestCheckReasons checks what check tells of each kind of value, and
// that a value signed by a current key costs no retired key's check.
func TestCheckReasons(t *testing.T) {
	retired := testKey(9)
	s := newSigner([][]byte{testKey(1)}, [][]byte{retired}, time.Hour)
	token := strings.Repeat("r", tokenLen)
	deadline := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	good := s.sign(token, deadline)
	signWith := func(key []byte, age time.Duration) string {
		return signAt(key, time.Now().Add(-age), token+":"+strconv.FormatInt(deadline.UnixMilli(), 10))
	}
	tests := []struct {
		name   string
		in     string
		reason RejectReason
		aged   bool
	}{
		{"good", good, "", false},
		{"aged", signWith(testKey(1), 2*time.Hour), "", true},
		{"retired key", signWith(retired, 0), RejectRetiredKey, false},
		{"unknown key", signWith(testKey(7), 0), RejectBadSignature, false},
		{"not base64", "!!!", RejectMalformed, false},
		{"one bar", base64.URLEncoding.EncodeToString([]byte("123|abc")), RejectMalformed, false},
		{"oversized", strings.Repeat("A", maxSignedLen+1), RejectOversized, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, gotDeadline, reason, aged := s.check(tc.in)
			if reason != tc.reason || aged != tc.aged {
				t.Fatalf("check = %q, %v; want %q, %v", reason, aged, tc.reason, tc.aged)
			}
			if reason == "" && (got != token || !gotDeadline.Equal(deadline)) {
				t.Errorf("check = token %q, deadline %v; want %q, %v", got, gotDeadline, token, deadline)
			}
		})
	}
}

// signAt returns payload signed with key as securecookie signs it (with the
// NopEncoder serializer, no encryption) at time at:
// base64url(date|base64url(payload)|HMAC-SHA256(key, name|date|value)).
func signAt(key []byte, at time.Time, payload string) string {
	signed := strconv.FormatInt(at.Unix(), 10) + "|" + base64.URLEncoding.EncodeToString([]byte(payload))
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(macName + "|" + signed))
	return base64.URLEncoding.EncodeToString(append([]byte(signed+"|"), mac.Sum(nil)...))
}

// FuzzCookieValue holds cookieValue equal to (*http.Request).Cookie for
// any Cookie header lines.
func FuzzCookieValue(f *testing.F) {
	f.Add("session=abc", "", "session")
	f.Add(`a=1; session="q"; session=2`, "session=3", "session")
	f.Add(" session = x ;session=y", "", "session")
	f.Add("session=a b; session=ok", "", "session")
	f.Add(strings.Repeat("x=1;", maxCookies)+"session=1", "", "session")
	f.Add("__Host-session=v", "session=w", "__Host-session")
	f.Fuzz(func(t *testing.T, line1, line2, name string) {
		if (&http.Cookie{Name: name}).Valid() != nil {
			return // a Manager's cookie has a valid name (Config checks it)
		}
		h := http.Header{"Cookie": {line1}}
		if line2 != "" {
			h["Cookie"] = append(h["Cookie"], line2)
		}
		got, ok, more := cookieValue(h, name)
		c, err := (&http.Request{Header: h}).Cookie(name)
		if (err == nil) != ok || (ok && c.Value != got) {
			t.Errorf("cookieValue(%q, %q) = %q, %v; (*http.Request).Cookie: %v, %v", h["Cookie"], name, got, ok, c, err)
		}
		var values, want []string
		eachCookieValue(h, name, func(v string) bool { values = append(values, v); return true })
		for _, c := range (&http.Request{Header: h}).CookiesNamed(name) {
			want = append(want, c.Value)
		}
		if !slices.Equal(values, want) || more != (len(want) > 1) {
			t.Errorf("eachCookieValue(%q, %q) = %q, cookieValue says more %v; (*http.Request).CookiesNamed: %q", h["Cookie"], name, values, more, want)
		}
	})
}

// TestSignedFromRequest checks which token a request carries: a Bearer
// token wins over the cookie, whatever the scheme's case; an empty Bearer
// token (HTTP/2 keeps "Bearer " as sent, unlike HTTP/1.1, which trims it)
// or another scheme leaves the cookie in use.
func TestSignedFromRequest(t *testing.T) {
	m, _, _ := newTestManager(t, Config{})
	for _, tc := range []struct {
		authorization string
		want          string
	}{
		{"", "from-cookie"},
		{"Bearer from-header", "from-header"},
		{"bearer  from-header ", "from-header"},
		{"Bearer ", "from-cookie"},
		{"Bearer \u00a0", "from-cookie"},
		{"Bearer", "from-cookie"},
		{"Basic dXNlcjpwYXNz", "from-cookie"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.AddCookie(&http.Cookie{Name: m.cfg.CookieName, Value: "from-cookie"})
		if tc.authorization != "" {
			r.Header["Authorization"] = []string{tc.authorization} // as sent, untrimmed
		}
		got, bearer := m.signedFromRequest(r)
		if got != tc.want || bearer != (tc.want != "from-cookie") {
			t.Errorf("Authorization %q: token %q (from the header: %v), want %q", tc.authorization, got, bearer, tc.want)
		}
	}
}

// TestKeysCopied wipes the caller's key buffers after New, as a careful
// caller does: the Manager goes on signing and checking with the keys it
// was given, so its own tokens stay valid and a token signed with the
// zeros left in the buffers is refused.
func TestKeysCopied(t *testing.T) {
	r := redistest.Start(t)
	store, err := redisstore.Open(redisstore.Config{Addr: r.Addr(), Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	manager := func(key, tag []byte) *Manager {
		// A retired key of its own: New refuses one that is in Keys too.
		retired := bytes.Clone(key)
		retired[0] ^= 0xff
		m, err := New(store, Config{Keys: [][]byte{key}, RetiredKeys: [][]byte{retired}, TagKey: tag, InsecureCookie: true,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	key, tag := testKey(7), testKey(9)
	m := manager(key, tag)
	clear(key)
	clear(tag)
	alice, _ := login(t, m, "alice")
	if u := userOf(t, m, alice); u != "alice" {
		t.Errorf("the Manager's own token after the caller wiped its keys: UserID = %q, want alice", u)
	}
	// New refuses a key of zeros, so the forger signs alice's own token
	// with one directly.
	token, deadline, err := m.signer.verify(alice)
	if err != nil {
		t.Fatal(err)
	}
	forged := newSigner([][]byte{make([]byte, 32)}, nil, time.Hour).sign(token, deadline)
	if u := userOf(t, m, forged); u != "" {
		t.Errorf("alice's token signed with the zeros left in the wiped buffers: UserID = %q, want anonymous", u)
	}
}

// verify returns the token and deadline of a validly signed value, or
// errBadToken, as the Manager reads check's answer.
func (s *signer) verify(signed string) (token string, deadline time.Time, err error) {
	if signed == "" {
		return "", time.Time{}, errBadToken
	}
	token, deadline, reason, aged := s.check(signed)
	if reason != "" || aged {
		return "", time.Time{}, errBadToken
	}
	return token, deadline, nil
}

// TestHasToken: a request has a token when one of the Manager's keys
// signed it and its deadline has not passed, whether or not it leads to a
// session (a logout route asks, without RequireAuth, so that a token a
// renewal replaced still reaches Destroy); a forged, expired or absent one
// is none, and so is a context without the middleware.
func TestHasToken(t *testing.T) {
	m, _, clk := newTestManager(t, Config{Lifetime: time.Hour})
	live, _ := login(t, m, "alice")
	ended, _ := login(t, m, "bob")
	serve(t, m, ended, func(ctx context.Context) {
		if err := Destroy(ctx); err != nil {
			t.Fatal(err)
		}
	})
	// A character in the middle changed (all its bits are data, unlike
	// the last one's): the MAC no longer matches.
	i, other := len(live)/2, "A"
	if live[i] == 'A' {
		other = "B"
	}
	forged := live[:i] + other + live[i+1:]
	for _, tc := range []struct {
		name   string
		cookie string
		want   bool
	}{
		{"live", live, true},
		{"ended", ended, true},
		{"forged", forged, false},
		{"none", "", false},
	} {
		serve(t, m, tc.cookie, func(ctx context.Context) {
			if got := HasToken(ctx); got != tc.want {
				t.Errorf("%s: HasToken = %v, want %v", tc.name, got, tc.want)
			}
		})
	}
	clk.t = clk.t.Add(2 * time.Hour)
	serve(t, m, live, func(ctx context.Context) {
		if HasToken(ctx) {
			t.Error("expired: HasToken = true, want false")
		}
	})
	if HasToken(context.Background()) {
		t.Error("without the middleware: HasToken = true, want false")
	}
}
