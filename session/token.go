package session

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"hash"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

// macName is the name securecookie binds into every MAC. It is fixed rather
// than the cookie name, so that renaming the cookie (or switching between
// Secure and insecure) does not invalidate tokens, and so that a Bearer token
// is byte for byte the cookie value.
const macName = "sessionkit"

// maxSignedLen bounds the signed value accepted from a request, checked
// before any decoding. A signed token is 160 bytes (172 with a TagKey's
// tag).
const maxSignedLen = 4096

// tokenLen is the length of an scs token: 32 random bytes, base64url without
// padding. Tokens of this length were issued by earlier versions, and their
// sessions have the full SHA-256 of the token as their id (see idOf).
const tokenLen = 43

// shortTokenLen is the length of the tokens this version issues: an scs
// token less its last character, which carries only 4 of its 256 random
// bits, so 252 random bits. The length tells idOf to give the session a
// 128-bit id, which halves the id's bytes in Redis (the record's key and
// the user's index) while tokens issued before keep their ids.
const shortTokenLen = tokenLen - 1

// shortIDBytes is how many bytes of the token's SHA-256 make the id of a
// session whose token is shortTokenLen long: 128 bits, 22 base64url
// characters. Ids are not credentials (a token is, and only with a valid
// signature), so the length guards against collisions alone: with n
// sessions alive at once, two share an id with probability about
// n²/2^129, below 10^-20 for a billion sessions. Finding a token for a
// known id (a second preimage of a truncated SHA-256) takes about 2^128
// hashes, and the token so found would still need the signing key.
const shortIDBytes = 16

var errBadToken = errors.New("session: malformed or badly signed token")

// signer signs and verifies the value carried by the cookie and the
// Authorization header: an scs token (behind its hash tag, "{tag}<token>",
// with a TagKey; see tags.go) and the session's absolute deadline,
// "<token>:<deadline in unix milliseconds>", under HMAC-SHA256. It also
// verifies the form signed by earlier versions, "<token>.<deadline in unix
// seconds>", so that an upgrade logs nobody out.
//
// Carrying the deadline lets a request past it be refused without asking
// Redis, and lets the idle extension of a read be capped at the deadline in
// the same command that reads the record.
//
// The format is gorilla/securecookie's (see open), signed and verified
// here with keyed HMAC states that are reused, where securecookie builds
// new ones for every value: FuzzCheck holds check equal to securecookie's
// DecodeMulti, and FuzzSign holds what sign writes readable by it.
type signer struct {
	// keys verify, and the first signs; retired keys only tell why a value
	// did not verify (see check).
	keys, retired []*macKey
	// maxAge is the MAC's age limit in seconds, as securecookie's MaxAge.
	maxAge int64
	// scratch holds check's buffers, reused.
	scratch *freeList[*scratch]
}

// freeList keeps up to its capacity of values for reuse. Unlike a
// sync.Pool, it neither drops values at garbage collections nor, under
// the race detector, at random, so a read allocates the same every time,
// which tests that count allocations rely on.
type freeList[T any] struct {
	free chan T
	new  func() T
}

// freeListSize is how many values a freeList keeps: more than the requests
// that verify a token at the same moment on any machine this serves.
const freeListSize = 256

func newFreeList[T any](newValue func() T) *freeList[T] {
	return &freeList[T]{free: make(chan T, freeListSize), new: newValue}
}

// get returns a kept value, or a new one.
func (l *freeList[T]) get() T {
	select {
	case v := <-l.free:
		return v
	default:
		return l.new()
	}
}

// put keeps v for reuse, unless the list is full.
func (l *freeList[T]) put(v T) {
	select {
	case l.free <- v:
	default:
	}
}

// scratch is the memory check decodes a value into. It is reused through
// signer.scratch, so that verifying a token allocates only the token
// string it returns.
type scratch struct {
	src, signed, payload []byte
	sum                  [sha256.Size]byte
}

// grow returns (*p)[:n], first replacing *p with a larger slice if its
// capacity is short of n.
func grow(p *[]byte, n int) []byte {
	if cap(*p) < n {
		*p = make([]byte, n)
	}
	return (*p)[:n]
}

// newSigner returns a signer that signs with keys[0] and verifies with any
// of keys. Config.withDefaults has checked that there is at least one key,
// and each key's length.
func newSigner(keys, retired [][]byte, lifetime time.Duration) *signer {
	// The deadline inside the value is what ends a session; the MAC's own
	// timestamp check is a second fence one minute behind it.
	return &signer{
		keys:    macKeys(keys),
		retired: macKeys(retired),
		maxAge:  int64(lifetime/time.Second) + 60,
		scratch: newFreeList(func() *scratch { return new(scratch) }),
	}
}

// macKey computes HMAC-SHA256 under one key. Its keyed states are reused:
// hmac.New hashes the key into two new SHA-256 states, which securecookie
// does on every Decode, while Reset returns a used state to its keyed
// start without allocating.
type macKey struct{ states *freeList[hash.Hash] }

func macKeys(keys [][]byte) []*macKey {
	ks := make([]*macKey, len(keys))
	for i, key := range keys {
		ks[i] = &macKey{states: newFreeList(func() hash.Hash { return hmac.New(sha256.New, key) })}
	}
	return ks
}

// macPrefix is what securecookie puts before the signed part of a value
// in its MAC: the name, then "|".
var macPrefix = []byte(macName + "|")

// appendMAC appends to dst the MAC of msg under k, as securecookie
// computes it: HMAC-SHA256 of macPrefix followed by msg.
func (k *macKey) appendMAC(dst, msg []byte) []byte {
	h := k.states.get()
	defer k.states.put(h)
	h.Reset()
	h.Write(macPrefix)
	h.Write(msg)
	return h.Sum(dst)
}

// matches reports, in constant time, whether mac is the MAC of msg under
// k. It computes the MAC into sum.
func (k *macKey) matches(msg, mac []byte, sum *[sha256.Size]byte) bool {
	return hmac.Equal(k.appendMAC(sum[:0], msg), mac)
}

// opened is what open found.
type opened int

const (
	openOK        opened = iota
	openMalformed        // not base64, or not date|value|mac
	openBadMAC           // no key's MAC
	openAged             // a key's MAC, but older than the age limit
)

// open verifies signed, a value in securecookie's format with the
// NopEncoder serializer and no encryption, and returns its payload:
//
//	signed  = base64url(date "|" value "|" mac)   (with padding)
//	value   = base64url(payload)                  (with padding)
//	mac     = HMAC-SHA256(key, macName "|" date "|" value)
//	date    = unix seconds when it was signed, in decimal
//
// as securecookie.DecodeMulti does with one codec per key and MaxAge
// maxAge: any key's MAC will do, a value whose MAC holds but whose date is
// more than maxAge seconds before now is openAged, and the payload is
// returned only for openOK and openAged. It decodes into sc, whose memory
// the payload is. The caller has checked the length.
func open(signed string, keys []*macKey, maxAge, now int64, sc *scratch) ([]byte, opened) {
	sc.src = append(sc.src[:0], signed...)
	b := grow(&sc.signed, base64.URLEncoding.DecodedLen(len(sc.src)))
	n, err := base64.URLEncoding.Decode(b, sc.src)
	if err != nil {
		return nil, openMalformed
	}
	b = b[:n]
	// The MAC is raw bytes and may hold "|": the first two split the rest.
	i := bytes.IndexByte(b, '|')
	if i < 0 {
		return nil, openMalformed
	}
	j := bytes.IndexByte(b[i+1:], '|')
	if j < 0 {
		return nil, openMalformed
	}
	j += i + 1
	signedPart, mac := b[:j], b[j+1:]
	matched := false
	for _, k := range keys {
		if k.matches(signedPart, mac, &sc.sum) {
			matched = true
			break
		}
	}
	if !matched {
		return nil, openBadMAC
	}
	date, ok := parseDecimal(b[:i])
	if !ok {
		return nil, openMalformed
	}
	payload := grow(&sc.payload, base64.URLEncoding.DecodedLen(j-i-1))
	n, err = base64.URLEncoding.Decode(payload, b[i+1:j])
	if err != nil {
		return nil, openMalformed
	}
	if maxAge != 0 && date < now-maxAge {
		return payload[:n], openAged
	}
	return payload[:n], openOK
}

// parseDecimal returns the value of b, one to 18 decimal digits with an
// optional sign, which is what securecookie writes (strconv.ParseInt
// would need b as a string, a copy).
func parseDecimal(b []byte) (int64, bool) {
	neg := len(b) > 0 && (b[0] == '-' || b[0] == '+')
	if neg {
		neg = b[0] == '-'
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var v int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	if neg {
		v = -v
	}
	return v, true
}

// check verifies signed and returns the token and deadline inside, with
// reason "". Otherwise it says why signed is no valid token: for a value
// validly signed but past the MAC's age limit, which lies beyond the
// token's deadline, aged is true and the token is returned, so that the
// caller can report the expiry; such a token is never to be accepted. A
// value no current key signed costs one more MAC check per retired key.
func (s *signer) check(signed string) (token string, deadline time.Time, reason RejectReason, aged bool) {
	if len(signed) > maxSignedLen {
		return "", time.Time{}, RejectOversized, false
	}
	sc := s.scratch.get()
	defer s.scratch.put(sc)
	payload, o := open(signed, s.keys, s.maxAge, time.Now().Unix(), sc)
	switch o {
	case openMalformed:
		return "", time.Time{}, RejectMalformed, false
	case openBadMAC:
		if len(s.retired) > 0 {
			if _, o := open(signed, s.retired, 0, 0, sc); o == openOK {
				return "", time.Time{}, RejectRetiredKey, false
			}
		}
		return "", time.Time{}, RejectBadSignature, false
	}
	token, deadline, err := parsePayload(payload)
	if err != nil {
		return "", time.Time{}, RejectMalformed, false
	}
	return token, deadline, "", o == openAged
}

// sign returns the value to put in the cookie for token and deadline,
// "<token>:<deadline in unix milliseconds>" signed now under the first
// key, in the format open reads.
func (s *signer) sign(token string, deadline time.Time) string {
	var buf [256]byte // a token with its tag and deadline, then its base64
	payload := strconv.AppendInt(append(append(buf[:0], token...), ':'), deadline.UnixMilli(), 10)
	return s.seal(payload, time.Now().Unix(), payload[len(payload):])
}

// seal returns payload signed under the first key at unix time date:
// base64url(date "|" base64url(payload) "|" mac), as securecookie's Encode
// writes it with the NopEncoder serializer and no encryption. It builds
// the value in b's memory, if large enough, before the one string it
// returns.
func (s *signer) seal(payload []byte, date int64, b []byte) string {
	b = strconv.AppendInt(b, date, 10)
	b = append(b, '|')
	b = base64.URLEncoding.AppendEncode(b, payload)
	msg := b
	b = s.keys[0].appendMAC(append(b, '|'), msg)
	return base64.URLEncoding.EncodeToString(b)
}

// parsePayload returns the token and deadline of a verified payload.
func parsePayload(payload []byte) (token string, deadline time.Time, err error) {
	msPerUnit := int64(1)
	p := string(payload)
	token, n, ok := strings.Cut(p, ":")
	if !ok {
		msPerUnit = 1000 // seconds, signed by an earlier version
		token, n, ok = strings.Cut(p, ".")
	}
	if !ok || !validToken(token) {
		return "", time.Time{}, errBadToken
	}
	v, err := strconv.ParseInt(n, 10, 64)
	if err != nil || v <= 0 || v > maxDeadline/msPerUnit {
		return "", time.Time{}, errBadToken
	}
	return token, time.UnixMilli(v * msPerUnit), nil
}

// maxDeadline bounds a signed deadline, in unix milliseconds: the end of
// year 9999, past which the record's RFC 3339 times cannot be written.
const maxDeadline = 253402300799999

// validToken reports whether t has the shape of a token, issued by this
// version (shortTokenLen) or an earlier one (tokenLen), with or without a
// hash tag in front (see tags.go).
func validToken(t string) bool {
	tag, t := splitTag(t)
	return (len(t) == shortTokenLen || len(t) == tokenLen) && base64URL(t) && base64URL(tag)
}

// validID reports whether id has the shape of a session id (see idOf):
// the base64url of shortIDBytes (22 characters) or of a whole SHA-256 (43),
// with or without a hash tag in front.
func validID(id string) bool {
	tag, id := splitTag(id)
	n := len(id)
	return (n == base64.RawURLEncoding.EncodedLen(shortIDBytes) || n == base64.RawURLEncoding.EncodedLen(sha256.Size)) &&
		base64URL(id) && base64URL(tag)
}

// base64URL reports whether s holds only characters of the base64url
// alphabet.
func base64URL(s string) bool {
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// idOf returns the session id for a token: the SHA-256 of the token,
// base64url without padding, behind the token's hash tag if it has one;
// for a token this version issued (shortTokenLen), its first shortIDBytes
// bytes (22 characters), for one an earlier version issued all of it (43
// characters, as scs's HashTokenInStore computes it). The id names the
// record in Redis; the token itself is never stored.
func idOf(token string) string {
	tag, token := splitTag(token)
	var b [tokenLen]byte // the token, copied without allocating
	sum := sha256.Sum256(append(b[:0], token...))
	n := len(sum)
	if len(token) == shortTokenLen {
		n = shortIDBytes
	}
	var buf [43]byte // base64url of all 32 bytes
	id := buf[:base64.RawURLEncoding.EncodedLen(n)]
	base64.RawURLEncoding.Encode(id, sum[:n])
	return withTag(tag, string(id))
}

// fingerprint is the part of a session id that logs carry: enough to follow
// one session through the log, too little to find its Redis key.
func fingerprint(id string) string {
	_, id = splitTag(id)
	if len(id) < 8 {
		return id
	}
	return id[:8]
}

// signedFromRequest returns the signed token of r, or "", and whether it
// came from the Authorization header. An "Authorization: Bearer" header
// with a token wins over the cookie: an API client that sends one means
// it. An empty one ("Bearer ", which HTTP/2 keeps as sent) leaves the
// cookie in use.
func (m *Manager) signedFromRequest(r *http.Request) (signed string, bearer bool) {
	if scheme, v, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
		if v = strings.TrimSpace(v); v != "" {
			return v, true
		}
	}
	v, _ := m.sessionCookie(r.Header)
	return v, false
}

// maxSameName is how many cookies of the Manager's name sessionCookie looks
// at, each at the cost of an HMAC.
const maxSameName = 8

// sessionCookie returns the value of the request's cookie of the Manager's
// name, as (*http.Request).Cookie finds it, but for a request that carries
// several (a sibling subdomain's cookie of the same name, set with a
// Domain, or one set for a longer Path, which browsers send first): then
// it returns the first of them, among the first maxSameName, whose
// signature a current key verifies, or else the first. So a cookie that
// the app did not sign, tossed in front of its own, does not hide the
// session from reads, nor make a logout expire the browser's cookie while
// the session goes on in Redis. (One that a current key signed, a session
// of the tosser's own, live or ended, still comes first: the __Host-
// prefix, the default, is what keeps a sibling's cookie out.)
func (m *Manager) sessionCookie(h http.Header) (string, bool) {
	v, ok, more := cookieValue(h, m.cfg.CookieName)
	if !more {
		return v, ok
	}
	signed, n := "", 0
	eachCookieValue(h, m.cfg.CookieName, func(c string) bool {
		if _, _, reason, aged := m.signer.check(c); reason == "" && !aged {
			signed = c
			return false
		}
		n++
		return n < maxSameName
	})
	if signed != "" {
		return signed, true
	}
	return v, ok
}

// sameToken reports whether the signed value cookie, valid under a current
// key, holds token: the same session, whatever date its signature bears.
// It costs one HMAC, paid only by a request whose Bearer and cookie differ.
func (m *Manager) sameToken(cookie, token string) bool {
	t, _, reason, _ := m.signer.check(cookie)
	return reason == "" && subtle.ConstantTimeCompare([]byte(t), []byte(token)) == 1
}

// maxCookies is net/http's default limit on the cookies of a request: past
// it, (*http.Request).Cookie finds none.
const maxCookies = 3000

// cookieValue returns the value of the first valid cookie named name in h,
// as (*http.Request).Cookie finds it, and whether another valid one of
// that name follows.
func cookieValue(h http.Header, name string) (value string, ok, more bool) {
	eachCookieValue(h, name, func(v string) bool {
		if ok {
			more = true
			return false
		}
		value, ok = v, true
		return true
	})
	return value, ok, more
}

// eachCookieValue calls f with the value of each valid cookie named name in
// h, in order, until f returns false: the values of the cookies that
// (*http.Request).CookiesNamed finds (with net/http's default limit on the
// number of cookies; the GODEBUG setting httpcookiemaxnum does not apply),
// but without building the list of every cookie of the request, which
// costs two allocations on every request, or thousands for one that
// carries thousands. FuzzCookieValue holds the two equal.
func eachCookieValue(h http.Header, name string, f func(v string) bool) {
	lines := h["Cookie"]
	n := 0
	for _, line := range lines {
		n += strings.Count(line, ";") + 1
	}
	if n > maxCookies {
		return
	}
	for _, line := range lines {
		line = textproto.TrimString(line)
		for len(line) > 0 {
			var part string
			part, line, _ = strings.Cut(line, ";")
			k, v, _ := strings.Cut(textproto.TrimString(part), "=")
			if textproto.TrimString(k) != name {
				continue
			}
			if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			if validCookieValue(v) && !f(v) {
				return
			}
		}
	}
}

// validCookieValue reports whether net/http accepts v as a cookie value
// (quotes removed): printable ASCII but '"', ';' and '\\'.
func validCookieValue(v string) bool {
	// A table lookup a byte, rather than five comparisons: every request
	// with a cookie runs this.
	for i := 0; i < len(v); i++ {
		if !cookieOctet[v[i]] {
			return false
		}
	}
	return true
}

// cookieOctet holds, for each byte, whether validCookieValue accepts it.
var cookieOctet = func() (t [256]bool) {
	for b := 0x20; b < 0x7f; b++ {
		t[b] = b != '"' && b != ';' && b != '\\'
	}
	return t
}()
