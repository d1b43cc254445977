package middleware

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/sessionkit/sessionkit/session"
)

// Key says what a Rule counts requests by. Build one with ByIP, ByUser,
// ByFormField, ByJSONField, ByName or ByFunc.
type Key struct {
	// fn returns the request's key value, "" for none, or an error that
	// makes the limiter refuse the request with 400 (errAmbiguousField).
	// body is the request body when the Key reads it (body is true), else
	// nil.
	fn   func(r *http.Request, body []byte) (string, error)
	body bool
	// named: the value is a name that any sender may send (a user name),
	// not one that tells who sends the request; see limiter.count and
	// stateHeader.
	named bool
	user  bool // reads the session, which Sessions must have loaded
	// invalid, when not "", says why the Key cannot count anything (a
	// blank field name): the limiter's Config refuses it, rather than
	// run a rule that never counts.
	invalid string
}

// noFieldName is the Key of ByFormField and ByJSONField given a name that
// is blank or has spaces around it (a trailing newline read from a file or
// an environment variable): no form or JSON body the handler reads has
// such a field, so the rule would never count.
var noFieldName = Key{invalid: "the field name is blank or has spaces around it: name the field the handler reads the user name from"}

// badFieldName reports whether name cannot be the field of a user name:
// see noFieldName.
func badFieldName(name string) bool {
	return name == "" || strings.TrimSpace(name) != name
}

// ByIP counts requests by the client's address, from r.RemoteAddr: an IPv4
// address, or the /64 network of an IPv6 address (one host usually holds a
// whole /64, and could otherwise change address for every request). The
// IPv6 forms that carry an IPv4 address go by their /64 as well: a
// NAT64 prefix (64:ff9b::/96) puts every IPv4 client behind that gateway
// under one value, and a 6to4 address (2002::/16) gives its IPv4 host
// 65,536 values; where clients arrive that way, count with ByFunc. Behind
// a reverse proxy RemoteAddr is the proxy's, shared by every client: let a
// middleware that trusts the proxy rewrite RemoteAddr first, or count with
// ByFunc by what the client cannot choose (in X-Forwarded-For, the entry
// your outermost proxy appended, counted from the right; never the first,
// which the client writes). A RemoteAddr that holds no IP address (empty, a Unix socket's
// peer, or text such a middleware copied from a header unchecked) counts
// under one value shared by all such requests: none goes uncounted, and no
// sender can make up a counter of its own for each request.
func ByIP() Key {
	return Key{fn: func(r *http.Request, _ []byte) (string, error) { return clientNet(r.RemoteAddr), nil }}
}

// clientNet returns the address of remoteAddr (host:port) that ByIP counts
// by: the IPv4 address, the IPv6 /64 network, or noAddress.
func clientNet(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr // no port: take it whole
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return noAddress
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// noAddress is what ByIP counts a request by whose RemoteAddr holds no IP
// address. No address or network as clientNet writes it takes this form.
const noAddress = "no address"

// ByUser counts requests by the logged-in user (session.UserID); requests
// without one are not counted by the rule. The limiter must run behind
// Sessions: without it no request has a user, so a limiter with a ByUser
// rule answers every request 500 {"error":"session middleware missing"}
// instead of limiting nothing, and logs the mistake once (cfg.Logger,
// level Error).
func ByUser() Key {
	return Key{user: true, fn: func(r *http.Request, _ []byte) (string, error) {
		u, _ := session.UserID(r.Context())
		return u, nil
	}}
}

// ByFormField counts requests by the form field name, exactly as
// r.FormValue reads it: net/http itself reads a copy of the request, so
// the query string, an application/x-www-form-urlencoded body (of a POST,
// PUT or PATCH) and a multipart/form-data body count in the order and
// precedence FormValue gives them. The value is trimmed of spaces and
// case-folded, so that names strings.EqualFold takes as equal ("Alice "
// and "alice", "ſam" and "sam") count together. Requests without the
// field (or with it empty) are not counted by the rule. The handler reads
// the body as sent, and must read the field with r.FormValue too:
// r.PostFormValue and r.PostForm skip the query string, which FormValue
// reads first for a multipart body, so a decoy name there would be
// counted instead. RateLimit and LoginLimit refuse a rule whose name is
// blank or has spaces around it, which no request would be counted by.
func ByFormField(name string) Key {
	if badFieldName(name) {
		return noFieldName
	}
	return Key{body: true, named: true, fn: func(r *http.Request, body []byte) (string, error) {
		// A key that read the field some other way than the handler does
		// would let a body that the two read differently (a multipart
		// one, say) log in without being counted.
		c := r.WithContext(r.Context())
		c.Body = io.NopCloser(bytes.NewReader(body))
		switch {
		case r.Form == nil:
			c.Form, c.PostForm, c.MultipartForm = nil, nil, nil
		case r.MultipartForm == nil && isMultipart(r):
			// A middleware before the limiter ran ParseForm, which
			// leaves a multipart body unread: the handler's
			// ParseMultipartForm (or FormMultipart) adds its fields
			// after those parsed. Read them as that would, on copies.
			c.Form, c.PostForm = cloneValues(r.Form), cloneValues(r.PostForm)
			c.ParseMultipartForm(defaultMaxMemory)
		default:
			// The form is parsed whole: FormValue reads only r.Form.
			return normalizeName(r.Form.Get(name)), nil
		}
		v := c.FormValue(name)
		if c.MultipartForm != nil {
			c.MultipartForm.RemoveAll() // files of the copy, if any were spilled to disk
		}
		return normalizeName(v), nil
	}}
}

// defaultMaxMemory is net/http's, for FormValue's ParseMultipartForm: the
// part of a multipart body kept in memory, the rest spilled to disk.
const defaultMaxMemory = 32 << 20

// isMultipart reports whether r's body is multipart/form-data.
func isMultipart(r *http.Request) bool {
	t, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && t == "multipart/form-data"
}

// cloneValues returns a copy of v whose value slices are copies too: the
// ParseMultipartForm of a copy of a request appends to them.
func cloneValues(v url.Values) url.Values {
	if v == nil {
		return nil
	}
	c := make(url.Values, len(v))
	for k, vs := range v {
		c[k] = slices.Clone(vs)
	}
	return c
}

// ByJSONField counts requests by the string field name of a JSON object
// body, read as encoding/json reads it into a struct field of type string:
// the name matched case-insensitively, the last match winning (when the
// matches agree: see below), a null or a value that is no string leaving
// the value before it in place. The value is trimmed of spaces and
// case-folded, as for ByFormField. Requests whose body is not such an object, or lacks the
// field, are not counted by the rule (the handler refuses them in turn).
// The handler must read the field that way too: one that decodes into a
// map, or with another JSON library, may read another of several matches
// ({"username":"alice","Username":"decoy"}: a map's "username" is alice,
// a struct's decoy). So the limiter refuses a body whose matches differ
// (after that folding) with 400 {"error":"ambiguous request body"}, and
// counts nothing for it: counted under either name, it would get the
// other one guesses that its own counter no longer allows. A name that is
// blank or has spaces around it is refused, as ByFormField's is.
func ByJSONField(name string) Key {
	if badFieldName(name) {
		return noFieldName
	}
	return Key{body: true, named: true, fn: func(_ *http.Request, body []byte) (string, error) {
		v, split := jsonField(body, name)
		if split {
			return "", errAmbiguousField
		}
		return normalizeName(v), nil
	}}
}

// errAmbiguousField is ByJSONField's error for a body whose matching
// fields differ.
var errAmbiguousField = errors.New("ambiguous request body")

// jsonField returns the last string value of a top-level field of the JSON
// object in body whose name equals name case-insensitively, or "", and
// whether another such field held a string that differs from it after
// normalizeName. A null, or a value of another type, is skipped:
// encoding/json leaves a string field as it was for either, so
// {"username":"alice","username":null} logs alice in and must count
// against alice, and so does {"username":"alice","username":1} for a
// handler that does not refuse the body for json.Unmarshal's error.
func jsonField(body []byte, name string) (v string, split bool) {
	dec := json.NewDecoder(bytes.NewReader(body))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return "", false
	}
	matched := false
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return "", false
		}
		field, _ := t.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return "", false
		}
		if strings.EqualFold(field, name) && string(raw) != "null" {
			var s string
			if json.Unmarshal(raw, &s) != nil {
				// Not a string: encoding/json skips it too, leaving the
				// field as it was, and returns an error only after the
				// whole body, with the field set: a handler that ignores
				// that error logs the string before it in.
				continue
			}
			split = split || matched && normalizeName(s) != normalizeName(v)
			v, matched = s, true
		}
	}
	return v, split
}

// ByName counts requests by a user name that the request carries outside
// its body, as f(r) reads it: HTTP Basic authentication's user name, a
// path segment (POST /users/{name}/sessions), a header. As for
// ByFormField and ByJSONField, whose values any sender may send too, the
// name is trimmed and case-folded, the rule counts a request only once
// the limiter's rules keyed by its sender (ByIP, ByUser, ByFunc) admitted
// it, and its state is left out of the RateLimit header but for a 429 it
// caused (r=0, t the Retry-After). Requests for
// which f returns "" are not counted by the rule. f must not read r.Body.
func ByName(f func(r *http.Request) string) Key {
	if f == nil {
		return Key{}
	}
	return Key{named: true, fn: func(r *http.Request, _ []byte) (string, error) { return normalizeName(f(r)), nil }}
}

// ByFunc counts requests by f(r); requests for which f returns "" are not
// counted by the rule. Its value is taken to tell who sends the request
// (an address a trusted proxy wrote, an API key's id): it is counted with
// ByIP's and ByUser's, and shown in the RateLimit header. Count a name
// that anyone may send with ByName instead. f must not read r.Body: use
// ByFormField or ByJSONField for values in the body.
func ByFunc(f func(r *http.Request) string) Key {
	if f == nil {
		return Key{}
	}
	return Key{fn: func(r *http.Request, _ []byte) (string, error) { return f(r), nil }}
}

// normalizeName folds the variants of one user name that a login would
// usually treat alike into one key value: spaces trimmed, and letters
// case-folded as strings.EqualFold compares them, which lower-casing alone
// does not do ("ſ", the long s, lower-cases to itself, while EqualFold
// takes it for "s"; "ς" for "σ"), and as upper-casing makes them equal
// ("ı", the dotless i, upper-cases to "I", which EqualFold keeps apart
// from it): a name with n such letters would otherwise get 2ⁿ times its
// attempts where the app looks names up in either case.
func normalizeName(v string) string {
	v = strings.TrimSpace(v)
	for i := 0; i < len(v); i++ {
		if v[i] >= utf8.RuneSelf {
			return strings.Map(foldRune, v)
		}
	}
	return strings.ToLower(v) // ASCII: the same, faster
}

// foldRune returns the lower case of the least of the runes that Unicode's
// simple case folding makes equal to the upper case of r (its
// unicode.SimpleFold orbit), so that every rune of an orbit gives the same
// one, and so does every rune whose upper case is another's. Of all runes
// only "ı" folds otherwise than in the release before, which did not
// upper-case (it folds to "i"), so that the counters of other names keep
// their keys across the upgrade; folding the upper case of the least rune
// would move several runes, μ and ι among them, to new keys.
func foldRune(r rune) rune {
	r = unicode.ToUpper(r)
	least := r
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		least = min(least, f)
	}
	return unicode.ToLower(least)
}

// hashPool hands out HMAC-SHA256 states keyed with a limiter's secret,
// reused across requests: a new one costs several allocations.
type hashPool struct{ p *sync.Pool }

func newHashPool(secret []byte) hashPool {
	return hashPool{&sync.Pool{New: func() any { return hmac.New(sha256.New, secret) }}}
}

// key returns the counter key of the rule named name for the key value v:
// "<hash>:<name>", where hash is the first 128 bits of HMAC-SHA256(secret,
// len(name) name len(v) v), lengths as uvarints, in base64url. The lengths
// keep every (name, v) pair apart, the fixed-length hash cannot contain
// ":", and name is validated, so no value can address another rule's or
// another value's key; without the secret, no one can tell which v a key
// counts.
func (p hashPool) key(name, v string) string {
	m := p.p.Get().(hash.Hash)
	defer p.p.Put(m)
	m.Reset()
	var buf [binary.MaxVarintLen64]byte
	m.Write(binary.AppendUvarint(buf[:0], uint64(len(name))))
	m.Write([]byte(name))
	m.Write(binary.AppendUvarint(buf[:0], uint64(len(v))))
	m.Write([]byte(v))
	var sum [sha256.Size]byte
	enc := base64.RawURLEncoding
	var k strings.Builder
	k.Grow(enc.EncodedLen(16) + 1 + len(name))
	var hashed [24]byte // enc.EncodedLen(16) == 22
	enc.Encode(hashed[:], m.Sum(sum[:0])[:16])
	k.Write(hashed[:enc.EncodedLen(16)])
	k.WriteByte(':')
	k.WriteString(name)
	return k.String()
}
