package session

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/securecookie"
)

// macName is the name securecookie binds into every MAC. It is fixed rather
// than the cookie name, so that renaming the cookie (or switching between
// Secure and insecure) does not invalidate tokens, and so that a Bearer token
// is byte for byte the cookie value.
const macName = "sessionkit"

// maxSignedLen bounds the signed value accepted from a request, checked
// before any decoding. A signed token is about 150 bytes.
const maxSignedLen = 4096

// tokenLen is the length of an scs token: 32 random bytes, base64url without
// padding.
const tokenLen = 43

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
type signer struct {
	codecs []securecookie.Codec
	// For telling why a value did not verify (see reject), never for
	// accepting one: the same keys without the MAC's age limit, and the
	// retired keys.
	ageless, retired []securecookie.Codec
}

func newSigner(keys, retired [][]byte, lifetime time.Duration) (*signer, error) {
	// The deadline inside the value is what ends a session; the MAC's own
	// timestamp check is a second fence one minute behind it.
	s := &signer{
		codecs:  codecs(keys, int(lifetime/time.Second)+60),
		ageless: codecs(keys, 0),
		retired: codecs(retired, 0),
	}
	// securecookie.New does not reject unusable keys (securecookie#89):
	// sign once so that a bad key fails New, not the first login.
	if _, err := s.sign(strings.Repeat("A", tokenLen), time.Now().Add(lifetime)); err != nil {
		return nil, err
	}
	return s, nil
}

// codecs returns a securecookie codec for each key, with the MAC's age
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

// reject says why signed, which verify refused, is no valid token. For a
// token validly signed but past the MAC's age limit, which lies beyond the
// token's deadline, it returns reason "" and the token, so that the caller
// can report the expiry; such a token is never to be accepted. It costs up
// to two more MAC checks per key, on refused values only.
func (s *signer) reject(signed string) (reason RejectReason, token string, deadline time.Time) {
	if len(signed) > maxSignedLen {
		return RejectOversized, "", time.Time{}
	}
	if b, err := base64.URLEncoding.DecodeString(signed); err != nil || bytes.Count(b, []byte("|")) < 2 {
		return RejectMalformed, "", time.Time{}
	}
	var payload []byte
	if securecookie.DecodeMulti(macName, signed, &payload, s.ageless...) == nil {
		if token, deadline, err := parsePayload(payload); err == nil {
			return "", token, deadline
		}
		return RejectMalformed, "", time.Time{}
	}
	if len(s.retired) > 0 && securecookie.DecodeMulti(macName, signed, &payload, s.retired...) == nil {
		return RejectRetiredKey, "", time.Time{}
	}
	return RejectBadSignature, "", time.Time{}
}

// sign returns the value to put in the cookie for token and deadline.
func (s *signer) sign(token string, deadline time.Time) (string, error) {
	payload := token + ":" + strconv.FormatInt(deadline.UnixMilli(), 10)
	v, err := securecookie.EncodeMulti(macName, []byte(payload), s.codecs...)
	if err != nil {
		return "", errors.New("session: cannot sign token")
	}
	return v, nil
}

// verify checks the MAC of a signed value with every key and returns the
// token and deadline inside. Anything else is errBadToken: the caller treats
// it as no session, without a Redis command.
func (s *signer) verify(signed string) (token string, deadline time.Time, err error) {
	if signed == "" || len(signed) > maxSignedLen {
		return "", time.Time{}, errBadToken
	}
	var payload []byte
	if securecookie.DecodeMulti(macName, signed, &payload, s.codecs...) != nil {
		return "", time.Time{}, errBadToken
	}
	return parsePayload(payload)
}

// parsePayload returns the token and deadline of a verified payload.
func parsePayload(payload []byte) (token string, deadline time.Time, err error) {
	msPerUnit := int64(1)
	token, n, ok := strings.Cut(string(payload), ":")
	if !ok {
		msPerUnit = 1000 // seconds, signed by an earlier version
		token, n, ok = strings.Cut(string(payload), ".")
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

// validToken reports whether t has the shape of an scs token, with or
// without a hash tag in front (see tags.go).
func validToken(t string) bool {
	tag, t := splitTag(t)
	return len(t) == tokenLen && base64URL(t) && base64URL(tag)
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

// idOf returns the session id for a token: SHA-256 of the token, base64url
// without padding, as scs's HashTokenInStore computes it, behind the
// token's hash tag if it has one. The id names the record in Redis; the
// token itself is never stored.
func idOf(token string) string {
	tag, token := splitTag(token)
	sum := sha256.Sum256([]byte(token))
	return withTag(tag, base64.RawURLEncoding.EncodeToString(sum[:]))
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

// signedFromRequest returns the signed token of r, or "". An
// "Authorization: Bearer" header wins over the cookie: an API client that
// sends one means it.
func (m *Manager) signedFromRequest(r *http.Request) string {
	if scheme, v, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
		return strings.TrimSpace(v)
	}
	c, err := r.Cookie(m.cfg.CookieName)
	if err != nil {
		return ""
	}
	return c.Value
}
