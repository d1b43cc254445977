package session

import (
	"bytes"
	"encoding"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// recordVersion is the value of the "v" field of the records this package
// writes. It also reads records of version recordV1, and writes them back
// as recordVersion when it next writes them; a record of any other version
// is treated as unreadable.
const (
	recordVersion = 2
	recordV1      = 1
)

// metaKey is the key under which a session's own fields (user, creation
// time, client) travel in scs's value map. scs's Codec interface only carries
// a deadline and a value map, so the codec lifts this entry out into the
// record's top-level fields and puts it back on decode. App keys may not start
// with "__", so they cannot collide with it.
const metaKey = "__sessionkit"

// meta is what sessionkit itself keeps about a session.
type meta struct {
	UserID    string
	CreatedAt time.Time
	LastSeen  time.Time
	IP        string
	// UserAgent is the client's user agent (see clientUserAgent), where
	// the record keeps it: a record of version 1 always does, one of
	// version 2 with Config.KeepUserAgent (or Config.PreviousFormat,
	// which writes version 1).
	UserAgent string
	// Device names the client for a user's list of devices: named once,
	// when the session is created (see codec.nameDevice). A record of
	// version 1 has none: codec.device names its UserAgent instead.
	Device string
	// Origin is the id the session was created under, once a Renew has
	// moved it to another; "" while it has that first id. It is what
	// tells one session from another across renewals (see lineage).
	Origin string
}

// lineage returns what identifies the session id, with md, across its
// renewals: the id it was created under. Two sessions of one user may
// share their user, creation time and deadline (two logins in the same
// millisecond); they never share this.
func lineage(id string, md meta) string {
	if md.Origin != "" {
		return md.Origin
	}
	return id
}

// maxUserAgent bounds the user agent taken from a request, and so the one
// a record keeps.
const maxUserAgent = 256

// clientUserAgent returns the user agent ua of a request as a session
// keeps it: at most maxUserAgent bytes, cut on a rune boundary, with each
// run of bytes that are not UTF-8 replaced by U+FFFD. A record holds
// valid UTF-8 only (a JSON encoder writes U+FFFD for such bytes), so that
// what the session has in memory, Info.UserAgent at login and the name
// DeviceName gives it, is what a later read of its record has.
func clientUserAgent(ua string) string {
	ua = strings.ToValidUTF8(cutUTF8(ua, maxUserAgent), "\uFFFD")
	return cutUTF8(ua, maxUserAgent) // a U+FFFD may be longer than what it replaced
}

// cutUTF8 returns s cut to at most n bytes, without the first bytes of a
// rune whose last ones the cut leaves out.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for i := len(s) - 1; i >= 0 && i > len(s)-utf8.UTFMax; i-- {
		if utf8.RuneStart(s[i]) {
			if !utf8.FullRuneInString(s[i:]) {
				return s[:i]
			}
			break
		}
	}
	return s
}

// errBadRecord reports a record that cannot be decoded. The manager treats
// such a record as no session and deletes it.
var errBadRecord = errors.New("session: unreadable session record")

// record is the JSON document stored in Redis, documented in the README:
// the fields of version 2, which this package writes, followed by those
// of version 1, which it reads. Decoding both into one struct reads either
// version in one pass.
type record struct {
	V      int                        `json:"v"`
	UserID string                     `json:"user_id,omitempty"`
	C      int64                      `json:"c,omitempty"` // created, unix milliseconds
	E      int64                      `json:"e,omitempty"` // absolute deadline, unix milliseconds
	S      int64                      `json:"s,omitempty"` // last seen, unix milliseconds; absent: c (see hasS)
	IP     string                     `json:"ip,omitempty"`
	D      string                     `json:"d,omitempty"`  // device; in version 1 only as previousRecord writes it
	UA     string                     `json:"ua,omitempty"` // user agent, with Config.KeepUserAgent
	O      string                     `json:"o,omitempty"`  // origin: the first id, once renewed; in version 1 too
	Val    map[string]json.RawMessage `json:"val,omitempty"`

	// Version 1 only: times in RFC 3339, the user agent itself, and every
	// value tagged.
	CreatedAt *v1Time                    `json:"created_at,omitempty"`
	ExpiresAt *v1Time                    `json:"expires_at,omitempty"`
	LastSeen  *v1Time                    `json:"last_seen,omitempty"`
	UserAgent string                     `json:"user_agent,omitempty"`
	Values    map[string]json.RawMessage `json:"values,omitempty"`

	// hasS is whether a record read holds "s" (not null), which must then
	// be a valid time, as c and e: "s":0 is no absent s. Encode writes S
	// when it is not 0, whatever hasS.
	hasS bool
}

// v1Time is a time of a version 1 record. time.Time's UnmarshalJSON parses
// the bytes between the quotes as they are, escapes included, so a time
// that another writer escaped ("2026-11-28T10:21:04\u002B01:00": .NET's
// encoder escapes every '+') would make the record unreadable, and end the
// session; v1Time unescapes the string first. It then takes only the form
// that value times have (rfc3339), which the previous release wrote: Go's
// parser alone also takes a one-digit hour or a ',' before the fraction,
// which other languages' parsers refuse or read otherwise.
type v1Time struct{ time.Time }

// UnmarshalJSON implements json.Unmarshaler.
func (t *v1Time) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("v1 time: %w", err)
	}
	if !rfc3339(s) {
		return errors.New("v1 time is not of the form 2006-01-02T15:04:05.999999999Z07:00")
	}
	return t.Time.UnmarshalText([]byte(s))
}

// unmarshalRecord reads b into a record with encoding/json, and tells an
// "s" that is present (hasS) from one that is absent or null, which both
// leave S at 0.
func unmarshalRecord(b []byte) (record, error) {
	var slow struct {
		record
		S *int64 `json:"s"` // shallower than record.S, so it takes "s"
	}
	err := json.Unmarshal(b, &slow)
	if slow.S != nil {
		slow.record.S, slow.hasS = *slow.S, true
	}
	return slow.record, err
}

// previousRecord is a record of version 1 field for field as the previous
// release writes it (all three times always present, in UTC), so that
// with Config.PreviousFormat an instance of that release reads what this
// one writes. D is this release's own addition, written only for a
// session without a user agent to name it from (one that an instance
// without PreviousFormat created, without KeepUserAgent): the previous
// release's decoder, json.Unmarshal into a struct without it, ignores it,
// and this release reads it. So is O, a renewed session's first id (see
// meta.Origin), which the previous release drops when it writes the
// record back.
type previousRecord struct {
	V         int                        `json:"v"`
	UserID    string                     `json:"user_id,omitempty"`
	CreatedAt time.Time                  `json:"created_at"`
	ExpiresAt time.Time                  `json:"expires_at"`
	LastSeen  time.Time                  `json:"last_seen"`
	IP        string                     `json:"ip,omitempty"`
	UserAgent string                     `json:"user_agent,omitempty"`
	D         string                     `json:"d,omitempty"`
	O         string                     `json:"o,omitempty"`
	Values    map[string]json.RawMessage `json:"values,omitempty"`
}

// jsonValue is an app value of a type without a tag of its own, held as its
// JSON encoding; Get decodes it into the type the caller asks for.
type jsonValue []byte

// codec is the scs.Codec that turns a session into a record and back, as
// a Manager's Config asks. The zero codec writes records of recordVersion
// without the user agent and names devices with describeDevice.
type codec struct {
	// name names a client from its user agent (Config.DeviceName); nil
	// means describeDevice.
	name func(userAgent string) string
	// keepUserAgent writes the user agent into records of recordVersion
	// (Config.KeepUserAgent).
	keepUserAgent bool
	// previous writes records of recordV1, as the previous release does
	// (Config.PreviousFormat).
	previous bool
}

// nameDevice returns the name of the client whose user agent is ua: the
// namer's, cut to maxDevice bytes of valid UTF-8 whatever the namer
// returned.
func (c codec) nameDevice(ua string) string {
	name := describeDevice
	if c.name != nil {
		name = c.name
	}
	d := name(ua)
	if len(d) > maxDevice {
		d = d[:maxDevice]
	}
	return strings.ToValidUTF8(d, "")
}

// device returns the name of md's client: the one made when the session
// was created or, for a record of version 1, which has none, its user
// agent's.
func (c codec) device(md meta) string {
	if md.Device != "" {
		return md.Device
	}
	return c.nameDevice(md.UserAgent)
}

// keptUserAgent returns the user agent that the records c writes keep of
// ua: all of it (as clientUserAgent made it in Load), or none.
func (c codec) keptUserAgent(ua string) string {
	if c.keepUserAgent || c.previous {
		return ua
	}
	return ""
}

// newMeta returns what a session created at at by a request from ip with
// user agent ua keeps about itself, its client named once.
func (c codec) newMeta(userID string, at time.Time, ip, ua string) meta {
	return c.namedMeta(userID, at, ip, ua, c.nameDevice(ua))
}

// namedMeta is newMeta with the client's name given.
func (c codec) namedMeta(userID string, at time.Time, ip, ua, device string) meta {
	return meta{UserID: userID, CreatedAt: at, LastSeen: at, IP: ip, UserAgent: c.keptUserAgent(ua), Device: device}
}

// Encode implements scs.Codec. It writes a record of recordVersion, or
// of recordV1 when c.previous is set.
func (c codec) Encode(deadline time.Time, values map[string]any) ([]byte, error) {
	if c.previous {
		return encodePrevious(deadline, values)
	}
	rec := record{V: recordVersion, E: deadline.UnixMilli()}
	if md, ok := values[metaKey].(meta); ok {
		rec.UserID = md.UserID
		rec.C = md.CreatedAt.UnixMilli()
		if seen := md.LastSeen.UnixMilli(); !md.LastSeen.IsZero() && seen != rec.C {
			rec.S = seen
		}
		rec.IP = md.IP
		rec.D = c.device(md)
		if c.keepUserAgent {
			rec.UA = md.UserAgent
		}
		rec.O = md.Origin
	}
	var err error
	rec.Val, err = encodeValues(values, recordVersion)
	if err != nil {
		return nil, err
	}
	return appendRecord(make([]byte, 0, 256), &rec), nil
}

// encodePrevious writes a record of recordV1 as the previous release's
// Encode does. Its user agent stands for the device name, which is
// written only where there is no user agent (see previousRecord).
func encodePrevious(deadline time.Time, values map[string]any) ([]byte, error) {
	rec := previousRecord{V: recordV1, ExpiresAt: deadline.UTC().Truncate(time.Millisecond)}
	if md, ok := values[metaKey].(meta); ok {
		rec.UserID = md.UserID
		rec.CreatedAt = md.CreatedAt.UTC().Truncate(time.Millisecond)
		rec.LastSeen = md.LastSeen.UTC().Truncate(time.Millisecond)
		rec.IP = md.IP
		rec.UserAgent = md.UserAgent
		if md.UserAgent == "" {
			rec.D = md.Device
		}
		rec.O = md.Origin
	}
	var err error
	rec.Values, err = encodeValues(values, recordV1)
	if err != nil {
		return nil, err
	}
	return json.Marshal(rec)
}

// encodeValues returns the app values among values as a record of the
// given version holds them, or nil when there are none. An error matches
// ErrInvalidValue: a value the request holds that the record cannot take,
// which no retry mends, never an outage of the store that a commit, a
// merge or a login writing the record would report.
func encodeValues(values map[string]any, version int) (map[string]json.RawMessage, error) {
	var out map[string]json.RawMessage
	for k, v := range values {
		if k == metaKey {
			continue
		}
		b, err := encodeValue(v, version)
		if err != nil {
			return nil, fmt.Errorf("%w: value %q: %w", ErrInvalidValue, k, err)
		}
		if out == nil {
			out = make(map[string]json.RawMessage, len(values))
		}
		out[k] = b
	}
	return out, nil
}

// Decode implements scs.Codec. It reads records of recordVersion and
// recordV1, whatever c writes. Any error wraps errBadRecord.
func (codec) Decode(b []byte) (time.Time, map[string]any, error) {
	deadline, md, values, err := decodeRecord(b)
	if err != nil {
		return time.Time{}, nil, err
	}
	if values == nil {
		values = make(map[string]any, 1)
	}
	values[metaKey] = md
	return deadline, values, nil
}

// decodeRecord is Decode with the session's own fields apart from the app
// values, which are nil when there are none: what a read needs, without
// building a map for a session without values.
func decodeRecord(b []byte) (deadline time.Time, md meta, values map[string]any, err error) {
	rec, ok := scanRecord(b)
	if !ok {
		// scanRecord reads only valid UTF-8 without escapes. Where
		// encoding/json reads bytes that are not UTF-8, or an escape of
		// half a surrogate pair, as U+FFFD, other parsers refuse them or
		// keep them: a user id would be another user's.
		if !utf8.Valid(b) || loneSurrogate(b) {
			return time.Time{}, meta{}, nil, fmt.Errorf("%w: not valid UTF-8", errBadRecord)
		}
		if err := exactFields(b); err != nil {
			return time.Time{}, meta{}, nil, fmt.Errorf("%w: %w", errBadRecord, err)
		}
		// A variable of its own (in unmarshalRecord), which escapes to
		// the heap through json.Unmarshal only on this path.
		slow, err := unmarshalRecord(b)
		if err != nil {
			return time.Time{}, meta{}, nil, fmt.Errorf("%w: %s", errBadRecord, decodeFault(err))
		}
		rec = slow
	}
	if rec.UserID != "" && validUserID(rec.UserID) != nil {
		// Create never writes one; read as a login, it would fail every
		// call that takes a user id (List, RevokeAll) on every request.
		return time.Time{}, meta{}, nil, fmt.Errorf("%w: invalid user_id", errBadRecord)
	}
	raw := rec.Val
	switch rec.V {
	case recordVersion:
		// An absent (or null) s is c; a present one is a time like c
		// and e.
		if !validMillis(rec.C) || !validMillis(rec.E) || (rec.hasS && !validMillis(rec.S)) {
			return time.Time{}, meta{}, nil, fmt.Errorf("%w: missing or invalid c, e or s", errBadRecord)
		}
		deadline = time.UnixMilli(rec.E).UTC()
		md = meta{UserID: rec.UserID, CreatedAt: time.UnixMilli(rec.C).UTC(), IP: rec.IP, UserAgent: rec.UA, Device: rec.D, Origin: rec.O}
		md.LastSeen = md.CreatedAt
		if rec.hasS {
			md.LastSeen = time.UnixMilli(rec.S).UTC()
		}
	case recordV1:
		if rec.ExpiresAt == nil || rec.CreatedAt == nil || rec.ExpiresAt.IsZero() || rec.CreatedAt.IsZero() {
			return time.Time{}, meta{}, nil, fmt.Errorf("%w: missing created_at or expires_at", errBadRecord)
		}
		// Times that version 2 cannot hold (before 1970) would make the
		// record unreadable once written back.
		if !validMillis(rec.CreatedAt.UnixMilli()) || !validMillis(rec.ExpiresAt.UnixMilli()) ||
			(rec.LastSeen != nil && !rec.LastSeen.IsZero() && !validMillis(rec.LastSeen.UnixMilli())) {
			return time.Time{}, meta{}, nil, fmt.Errorf("%w: created_at, expires_at or last_seen out of range", errBadRecord)
		}
		// In whole milliseconds, as version 2 holds them: earlier
		// releases wrote nanoseconds.
		deadline = rec.ExpiresAt.Truncate(time.Millisecond)
		md = meta{UserID: rec.UserID, CreatedAt: rec.CreatedAt.Truncate(time.Millisecond), IP: rec.IP, UserAgent: rec.UserAgent, Device: rec.D, Origin: rec.O}
		// An absent (or null) last_seen is created_at, as s is c.
		md.LastSeen = md.CreatedAt
		if rec.LastSeen != nil && !rec.LastSeen.IsZero() {
			md.LastSeen = rec.LastSeen.Truncate(time.Millisecond)
		}
		raw = rec.Values
	default:
		return time.Time{}, meta{}, nil, fmt.Errorf("%w: version %d", errBadRecord, rec.V)
	}
	// As a request's (clientUserAgent) and as a namer's: a record that
	// another writer made may hold longer ones, which this package would
	// otherwise keep. A record is valid UTF-8 (checked above, or by the
	// scanner), and the cuts keep it so.
	md.UserAgent = cutUTF8(md.UserAgent, maxUserAgent)
	md.Device = cutUTF8(md.Device, maxDevice) // as Config.DeviceName's answer
	if len(raw) > 0 {
		values = make(map[string]any, len(raw)+1)
	}
	for k, r := range raw {
		if !validKey(k) {
			return time.Time{}, meta{}, nil, fmt.Errorf("%w: reserved value key", errBadRecord)
		}
		v, err := decodeValue(r, rec.V)
		if err != nil {
			return time.Time{}, meta{}, nil, fmt.Errorf("%w: value: %s", errBadRecord, decodeFault(err))
		}
		values[k] = v
	}
	return deadline, md, values, nil
}

// recordFields are the top-level field names of a record, of both
// versions (see record).
var recordFields = [...]string{
	"v", "user_id", "c", "e", "s", "ip", "d", "ua", "o", "val",
	"created_at", "expires_at", "last_seen", "user_agent", "values",
}

// exactFields refuses a record that encoding/json would read differently
// from other languages' parsers, which the README tells to parse records:
// a record field named twice (encoding/json merges two "val" objects,
// JSON.parse keeps the last) or a name that matches a record field only
// case-insensitively ("USER_ID", or "u\u017fer_id" with the long s, which
// encoding/json takes for "user_id" and other parsers ignore). Other
// unknown fields are left for a later version. It checks the top level
// only, where the struct's fields are: the values object is a map, whose
// keys encoding/json matches exactly, keeping the last of a repeated one.
//
// It walks the top level of b without decoding it, so that it costs the
// slow path of decodeRecord no allocation (but for a name with escapes),
// and leaves JSON that is not a well-formed object to json.Unmarshal,
// which says what is wrong with it.
func exactFields(b []byte) error {
	var seen [len(recordFields)]bool
	i := skipSpace(b, 0)
	if i == len(b) || b[i] != '{' {
		return nil
	}
	for i++; ; i++ {
		i = skipSpace(b, i)
		if i == len(b) || b[i] != '"' {
			return nil // the end of an empty object, or malformed
		}
		end, ok := stringEnd(b, i)
		if !ok {
			return nil
		}
		name := b[i+1 : end-1]
		if bytes.IndexByte(name, '\\') >= 0 {
			var unquoted string
			if json.Unmarshal(b[i:end], &unquoted) != nil {
				return nil
			}
			name = []byte(unquoted)
		}
		if err := checkField(name, &seen); err != nil {
			return err
		}
		if i = skipSpace(b, end); i == len(b) || b[i] != ':' {
			return nil
		}
		if i, ok = valueEnd(b, i+1); !ok {
			return nil
		}
		if i = skipSpace(b, i); i == len(b) || b[i] != ',' {
			return nil // the end of the object, or malformed
		}
	}
}

// checkField refuses name, a top-level field of a record, if it is a
// record field that seen marks as already read, or one only under case
// folding, as encoding/json matches struct fields; it marks it in seen.
func checkField(name []byte, seen *[len(recordFields)]bool) error {
	for i, f := range recordFields {
		if string(name) == f {
			if seen[i] {
				return fmt.Errorf("field %q appears twice", f)
			}
			seen[i] = true
			return nil
		}
	}
	for _, f := range recordFields {
		if strings.EqualFold(string(name), f) {
			return fmt.Errorf("field %q differs from the record field %q only in case", name, f)
		}
	}
	return nil
}

// skipSpace returns the index of the first byte of b from i on that is not
// JSON white space.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index just past the JSON string that starts with
// the quote at b[i].
func stringEnd(b []byte, i int) (int, bool) {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++ // the escaped byte
		case '"':
			return j + 1, true
		}
	}
	return 0, false
}

// valueEnd returns the index just past the JSON value that starts at or
// after b[i]: a string, an object or an array as a whole, any other value
// up to the comma or brace that ends it.
func valueEnd(b []byte, i int) (int, bool) {
	depth := 0
	for i = skipSpace(b, i); i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			end, ok := stringEnd(b, i)
			if !ok || depth == 0 {
				return end, ok
			}
			i = end - 1
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			if depth == 0 {
				return i, true // the end of the record: a number or literal ended
			}
			if depth--; depth == 0 {
				return i + 1, true
			}
		case c == ',' && depth == 0:
			return i, true
		}
	}
	return 0, false
}

// portable returns an error when the JSON b holds a number that is no
// finite float64 (1e400, or an integer past ±1.8e308), which other
// languages' readers of the record take otherwise than encoding/json does:
// JavaScript reads Infinity, Python refuses an integer of over 4,300
// digits. encoding/json writes none of a Go number of its own, but a
// json.Number, a *big.Int, a json.RawMessage or a MarshalJSON method may.
// Only a number of over 15 characters or with an exponent can be one: the
// others are not parsed. The error names the number's length, not the
// number, which is the app's data.
func portable(b []byte) error {
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			end, ok := stringEnd(b, i)
			if !ok {
				return nil // not JSON; json.Marshal writes none
			}
			i = end - 1
		case c == '-' || '0' <= c && c <= '9':
			// Outside strings, only a number holds these characters.
			j := i + 1
			for j < len(b) && strings.IndexByte("+-.eE0123456789", b[j]) >= 0 {
				j++
			}
			if num := b[i:j]; len(num) > 15 || bytes.ContainsAny(num, "eE") {
				if f, err := strconv.ParseFloat(string(num), 64); err != nil || math.IsInf(f, 0) {
					return fmt.Errorf("holds a number of %d characters that is no finite float64: readers in other languages take it otherwise", len(num))
				}
			}
			i = j - 1
		}
	}
	return nil
}

// loneSurrogate reports whether the JSON b holds an escape of a UTF-16
// surrogate (\ud800 to \udfff) that is not half of a pair: a high one
// not followed by an escaped low one, or a low one not preceded by a high
// one. Such an escape stands for no character. A backslash is taken for
// the start of an escape, as it is in a string of well-formed JSON.
func loneSurrogate(b []byte) bool {
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '\\')
		if j < 0 {
			return false
		}
		i += j
		r, ok := escapedRune(b, i)
		if !ok {
			i = min(i+2, len(b)) // another escape, such as \\ or \n
			continue
		}
		i += 6
		if r < 0xd800 || r > 0xdfff {
			continue
		}
		if r >= 0xdc00 {
			return true // low, with no high before it
		}
		if low, ok := escapedRune(b, i); !ok || low < 0xdc00 || low > 0xdfff {
			return true
		}
		i += 6
	}
}

// escapedRune returns the code unit of the escape \uXXXX at b[i].
func escapedRune(b []byte, i int) (rune, bool) {
	if len(b) < i+6 || b[i] != '\\' || b[i+1] != 'u' {
		return 0, false
	}
	var r rune
	for _, c := range b[i+2 : i+6] {
		switch {
		case '0' <= c && c <= '9':
			r = r<<4 | rune(c-'0')
		case 'a' <= c && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case 'A' <= c && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// validMillis reports whether ms is a time the record may hold: after
// 1970 and no later than maxDeadline.
func validMillis(ms int64) bool {
	return ms > 0 && ms <= maxDeadline
}

// validKey reports whether k may name an app value: not empty, not
// starting with "__", and valid UTF-8, which JSON keeps as it is.
func validKey(k string) bool {
	return k != "" && !strings.HasPrefix(k, "__") && utf8.ValidString(k)
}

// keyError returns the error for a key that validKey refuses:
// errKeyNotUTF8 for one that is not valid UTF-8, ErrReservedKey for any
// other.
func keyError(k string) error {
	if !utf8.ValidString(k) {
		return errKeyNotUTF8
	}
	return ErrReservedKey
}

// Each app value is stored as a one-member object naming its type, such as
// {"int":3} or {"time":"2026-01-02T15:04:05Z"}, so that what a handler puts is
// what it gets back, with the same Go type. The tags are part of the record
// schema documented in the README.
const (
	tagString = "string"
	tagBool   = "bool"
	tagInt    = "int"
	tagInt64  = "int64"
	tagFloat  = "float64"
	tagBytes  = "bytes"
	tagTime   = "time"
	tagJSON   = "json"
)

// maxRecordDepth is the deepest nesting of arrays and objects in a record
// this package writes: within the default limits of the parsers other
// languages read records with (64 levels for .NET's System.Text.Json,
// which the others pass: 100 for Ruby's JSON, 128 for Rust's serde_json,
// about 1,000 for Python's json). Records nested deeper, which earlier
// versions wrote, are still read, up to the 10,000 levels of
// encoding/json.
const maxRecordDepth = 64

// valueLevels is the nesting a record puts around an app value: the record
// object, its values object and the value's type tag, as in
// {"v":2,"val":{"k":{"json":[]}}} (in version 1 too, under "values").
const valueLevels = 3

// maxValueDepth is the deepest nesting of arrays and objects that Put
// takes in a value, so that its record nests at most maxRecordDepth.
const maxValueDepth = maxRecordDepth - valueLevels

// normalize returns the form in which a value is held in the session: the
// value itself for the tagged types, or its JSON encoding for any other type.
// It refuses, with ErrInvalidValue, a value of a tagged type that the record
// could not give back unchanged (a NaN or infinite float, a string that is
// not valid UTF-8, a time outside years 0 to 9999) and a value that
// encoding/json refuses, or in whose encoding it replaced invalid UTF-8 with
// U+FFFD, or that holds an escape of half a surrogate pair (which a
// MarshalJSON method or a json.RawMessage may write, and which would make
// the record unreadable), or whose arrays and objects nest more than
// maxValueDepth levels deep, which would make the record too deep for
// other languages' parsers (see maxRecordDepth). Every value a record
// holds passed here, as Put's or an scs import's, or was read from a
// record, at a depth it keeps when written back: a value nested deeper,
// which an earlier version wrote, stays as it is. A time whose zone offset RFC 3339
// cannot write (one with seconds, as in 19th-century local mean time, or
// of 24 hours or more) is kept as the same instant in UTC, and a nil
// []byte as an empty one. Values of other types follow encoding/json's
// rules, which this does not second-guess: unexported fields are dropped.
// But a time.Time inside them with a zone offset of seconds is refused:
// encoding/json writes the offset without them, and the instant would
// come back moved by up to 59 seconds.
func normalize(v any) (any, error) {
	switch v := v.(type) {
	case string:
		if !utf8.ValidString(v) {
			return nil, fmt.Errorf("%w: string is not valid UTF-8", ErrInvalidValue)
		}
		return v, nil
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("%w: %v has no JSON form", ErrInvalidValue, v)
		}
		return v, nil
	case []byte:
		if v == nil {
			// A record holds bytes as a base64 string, "" for nil and
			// empty alike, which reads back as an empty slice: empty
			// from the start, the value is the same in this request as
			// in the next. (A null for nil would be no string to other
			// readers of the record.)
			return []byte{}, nil
		}
		// A copy, as a value of any other type is (encoded at once):
		// the caller's later writes must not reach the session.
		return bytes.Clone(v), nil
	case bool, int, int64, jsonValue:
		return v, nil
	case time.Time:
		t := v.Round(0) // drop the monotonic reading, which JSON cannot carry
		if _, offset := t.Zone(); offset%60 != 0 || offset <= -24*3600 || offset >= 24*3600 {
			t = t.UTC()
		}
		if y := t.Year(); y < 0 || y > 9999 {
			return nil, fmt.Errorf("%w: year %d is outside 0-9999", ErrInvalidValue, y)
		}
		return t, nil
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("%w: %T: %w", ErrInvalidValue, v, err)
		}
		if !utf8.Valid(b) || replacedInvalidUTF8(b) || loneSurrogate(b) {
			return nil, fmt.Errorf("%w: %T holds a string that is not valid UTF-8", ErrInvalidValue, v)
		}
		if nestedDeeper(b, maxValueDepth) {
			return nil, fmt.Errorf("%w: %T nests arrays and objects more than %d levels deep", ErrInvalidValue, v, maxValueDepth)
		}
		if err := portable(b); err != nil {
			return nil, fmt.Errorf("%w: %T %w", ErrInvalidValue, v, err)
		}
		// A struct JSON keeps nothing of is written {}: only then look
		// for one.
		switch flawIn(reflect.ValueOf(v), maxValueDepth, false, bytes.Contains(b, []byte("{}"))) {
		case lostStruct:
			return nil, fmt.Errorf("%w: %T holds a struct with data in fields JSON does not keep (all unexported, or tagged json:\"-\"), such as an error: it would come back empty", ErrInvalidValue, v)
		case offsetSeconds:
			return nil, fmt.Errorf("%w: %T holds a time.Time whose zone offset has seconds (local mean time), which JSON drops, moving the instant: put it in UTC", ErrInvalidValue, v)
		}
		return jsonValue(b), nil
	}
}

// timeType is the type of time.Time.
var timeType = reflect.TypeFor[time.Time]()

// A flaw is what Put refuses in a value that encoding/json encodes: see
// flawIn.
type flaw int

const (
	noFlaw flaw = iota
	// lostStruct: a struct whose data JSON keeps none of, which would come
	// back as its zero value (see keepsNothing).
	lostStruct
	// offsetSeconds: a time.Time whose zone offset is not a whole number of
	// minutes, which encoding/json writes without the seconds, moving the
	// instant.
	offsetSeconds
)

// flawIn returns the first flaw of v, or of a value inside it that
// encoding/json encodes, within depth levels of pointers, interfaces,
// struct fields, slice or array elements and map keys and values;
// lostStructs says whether to look for lost structs, which only a value
// written with a {} can hold. It walks what encoding/json walks: no field
// tagged `json:"-"`, unexported or not; and it does not look inside a
// value that encodes itself (see encodesItself), whose encoding is its
// own, but for a time whose method it has (see embeddedTime). A struct is lost
// when it is not zero and keeps nothing (an error made by errors.New or
// fmt.Errorf is one; the zero value of such a type comes back unchanged,
// and is not), unless it is an embedded field, whose fields JSON takes
// into the struct around it (embedded), unnamed by its tag. A time
// embedded under an unexported name (type stamp = time.Time; struct{
// stamp }), which reflect will not hand out, is not checked.
func flawIn(v reflect.Value, depth int, embedded, lostStructs bool) flaw {
	if depth < 0 || !v.IsValid() {
		return noFlaw
	}
	t := v.Type()
	switch {
	case t == timeType:
		if v.CanInterface() {
			if _, offset := v.Interface().(time.Time).Zone(); offset%60 != 0 {
				return offsetSeconds
			}
		}
		return noFlaw
	case v.Kind() == reflect.Pointer:
		// Not encodesItself(t): the value behind a pointer is
		// addressable, and its check takes the pointer's methods in.
		if v.IsNil() {
			return noFlaw
		}
		return flawIn(v.Elem(), depth, embedded, lostStructs)
	case v.Kind() == reflect.Interface:
		if v.IsNil() {
			return noFlaw
		}
		return flawIn(v.Elem(), depth, false, lostStructs)
	case encodesItself(t, v.CanAddr()):
		if v.Kind() == reflect.Struct {
			return embeddedTime(v, depth)
		}
		return noFlaw
	}
	switch v.Kind() {
	case reflect.Struct:
		var seen []reflect.Type
		if lostStructs && !embedded && keepsNothing(t, &seen) && !v.IsZero() {
			return lostStruct
		}
		for i := range t.NumField() {
			f := t.Field(i)
			if !jsonField(f) {
				continue
			}
			if fl := flawIn(v.Field(i), depth-1, promotes(f), lostStructs); fl != noFlaw {
				return fl
			}
		}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return noFlaw // bytes
		}
		for i := range v.Len() {
			if fl := flawIn(v.Index(i), depth-1, false, lostStructs); fl != noFlaw {
				return fl
			}
		}
	case reflect.Map:
		for it := v.MapRange(); it.Next(); {
			// A key is text: a time's, through MarshalText, drops the
			// seconds of its offset too.
			if fl := flawIn(it.Key(), depth-1, false, false); fl != noFlaw {
				return fl
			}
			if fl := flawIn(it.Value(), depth-1, false, lostStructs); fl != noFlaw {
				return fl
			}
		}
	}
	return noFlaw
}

// embeddedTime returns the flaw of a time.Time that the struct v, which
// encodes itself, embeds (directly, or through an embedded struct that
// encodes itself too), whose MarshalJSON or MarshalText v has: that method
// writes the time alone. (Should v declare its own, a time it embeds with
// an offset of seconds is refused all the same.)
func embeddedTime(v reflect.Value, depth int) flaw {
	for i := range v.NumField() {
		if !v.Type().Field(i).Anonymous {
			continue
		}
		f := reflect.Indirect(v.Field(i))
		if f.Kind() == reflect.Struct && encodesItself(f.Type(), true) {
			if fl := flawIn(f, depth-1, false, false); fl != noFlaw {
				return fl
			}
		}
	}
	return noFlaw
}

// jsonField reports whether encoding/json encodes the struct field f: not
// tagged `json:"-"`, and exported, or embedded of a struct type (or a
// pointer to one), whose exported fields it takes in.
func jsonField(f reflect.StructField) bool {
	if f.Tag.Get("json") == "-" {
		return false
	}
	if f.Anonymous {
		return f.IsExported() || structKind(f.Type)
	}
	return f.IsExported()
}

// structKind reports whether t is a struct type or a pointer to one.
func structKind(t reflect.Type) bool {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.Kind() == reflect.Struct
}

// promotes reports whether encoding/json takes the fields of the struct
// field f into the struct around it: f is embedded, of a struct type or a
// pointer to one, and its tag gives it no name (with one, it is a field
// like any other).
func promotes(f reflect.StructField) bool {
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	return f.Anonymous && name == "" && structKind(f.Type)
}

// keepsNothing reports whether encoding/json, unless a value of the struct
// type t encodes itself (which the caller checks: an embedded type's
// methods are t's too), writes it as {}: it encodes none of t's fields
// (see jsonField) but those of embedded structs that keep nothing either.
// seen holds the types looked into already: met again (t may embed a
// pointer to itself, or two fields the same type), a type adds nothing to
// the answer, which is whether every type reached through embedded
// structs keeps nothing; so each is looked into once. t joins seen only
// when it embeds one, so that the common struct, which has a field JSON
// keeps or embeds none, costs no allocation.
func keepsNothing(t reflect.Type, seen *[]reflect.Type) bool {
	for i := range t.NumField() {
		f := t.Field(i)
		if !jsonField(f) {
			continue
		}
		if !promotes(f) {
			return false
		}
		if !slices.Contains(*seen, t) {
			*seen = append(*seen, t)
		}
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if !slices.Contains(*seen, ft) && !keepsNothing(ft, seen) {
			return false
		}
	}
	return true
}

var (
	jsonMarshalerType = reflect.TypeFor[json.Marshaler]()
	textMarshalerType = reflect.TypeFor[encoding.TextMarshaler]()
)

// encodesItself reports whether encoding/json writes a value of type t
// with its own MarshalJSON or MarshalText method, as it does through the
// value's pointer when the value is addressable.
func encodesItself(t reflect.Type, addressable bool) bool {
	if t.Implements(jsonMarshalerType) || t.Implements(textMarshalerType) {
		return true
	}
	if addressable {
		p := reflect.PointerTo(t)
		return p.Implements(jsonMarshalerType) || p.Implements(textMarshalerType)
	}
	return false
}

// nestedDeeper reports whether the JSON b nests arrays and objects more
// than limit levels deep, counting brackets and braces outside strings in
// one pass over b.
func nestedDeeper(b []byte, limit int) bool {
	depth := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			end, ok := stringEnd(b, i)
			if !ok {
				return false // not JSON; json.Marshal writes none
			}
			i = end - 1
		case '[', '{':
			if depth++; depth > limit {
				return true
			}
		case ']', '}':
			depth--
		}
	}
	return false
}

// replacedInvalidUTF8 reports whether encoding/json, writing b, replaced
// invalid UTF-8 in a string with the escape \ufffd. It writes a valid U+FFFD
// as itself, never escaped, so an escape \ufffd in its output stands for
// replaced bytes, unless a value's own MarshalJSON (or a json.RawMessage)
// wrote it: such a value is refused too, since the two cannot be told
// apart. The escape is the backslash before "ufffd" when the run of
// backslashes ending there is odd; in an even run the backslashes escape
// each other and "ufffd" is plain text.
func replacedInvalidUTF8(b []byte) bool {
	const esc = `\ufffd`
	for i := bytes.Index(b, []byte(esc)); i >= 0; {
		run := 1
		for j := i - 1; j >= 0 && b[j] == '\\'; j-- {
			run++
		}
		if run%2 == 1 {
			return true
		}
		next := bytes.Index(b[i+len(esc):], []byte(esc))
		if next < 0 {
			return false
		}
		i += len(esc) + next
	}
	return false
}

// encodeValue returns the JSON of an app value in a record of the given
// version (see appendValue).
func encodeValue(v any, version int) (json.RawMessage, error) {
	return appendValue(nil, v, version)
}

// decodeValue returns the app value raw holds in a record of the given
// version. Version 1 tags strings too; version 2 writes them as JSON
// strings.
func decodeValue(raw json.RawMessage, version int) (any, error) {
	if version != recordV1 && len(raw) > 0 && raw[0] == '"' {
		sc := scanner{b: raw}
		if s, ok := sc.str(); ok && sc.i == len(raw) {
			return s, nil // no escapes: what json.Unmarshal would give
		}
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	}
	var tagged map[string]json.RawMessage
	if err := json.Unmarshal(raw, &tagged); err != nil {
		return nil, err
	}
	if len(tagged) != 1 {
		return nil, errors.New("want one type tag")
	}
	var tag string
	var b json.RawMessage
	for tag, b = range tagged {
	}
	if string(b) == "null" && tag != tagJSON && tag != tagBytes {
		// No value of the tag's type, which encoding/json would read
		// as its zero value where other parsers see no string, number
		// or boolean. Only any JSON holds a null, and bytes, read as
		// empty: the previous release wrote a nil []byte so, as
		// json.Marshal does.
		return nil, errors.New("null under a type tag")
	}
	switch tag {
	case tagString:
		var s string
		err := json.Unmarshal(b, &s)
		return s, err
	case tagBool:
		var t bool
		err := json.Unmarshal(b, &t)
		return t, err
	case tagInt:
		var i int
		err := json.Unmarshal(b, &i)
		return i, err
	case tagInt64:
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return nil, err
		}
		if !decimal(s) {
			return nil, errors.New("int64 is not -?[0-9]+")
		}
		return strconv.ParseInt(s, 10, 64)
	case tagFloat:
		var f float64
		err := json.Unmarshal(b, &f)
		return f, err
	case tagBytes:
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return nil, err
		}
		// DecodeString skips line breaks, which strict decoders refuse.
		if strings.ContainsAny(s, "\r\n") {
			return nil, errors.New("line break in bytes")
		}
		return base64.StdEncoding.Strict().DecodeString(s)
	case tagTime:
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return nil, err
		}
		if !rfc3339(s) {
			return nil, errors.New("time is not of the form 2006-01-02T15:04:05.999999999Z07:00")
		}
		return time.Parse(time.RFC3339Nano, s)
	case tagJSON:
		if !json.Valid(b) {
			return nil, errors.New("invalid json value")
		}
		return jsonValue(bytes.Clone(b)), nil
	}
	return nil, errors.New("unknown type tag")
}

// decodeFault says why part of a record did not decode without quoting
// the record: the errors of encoding/json, strconv and time name the
// number, string or time they could not read, which may be the app's data,
// and the Manager logs the reason of every record it drops.
func decodeFault(err error) string {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	var numErr *strconv.NumError
	var timeErr *time.ParseError
	switch {
	case errors.As(err, &typeErr):
		return "a JSON value where " + typeErr.Type.String() + " belongs"
	case errors.As(err, &syntaxErr):
		return fmt.Sprintf("invalid JSON at byte %d", syntaxErr.Offset)
	case errors.As(err, &numErr):
		return "an integer out of range or malformed"
	case errors.As(err, &timeErr):
		return "an invalid time"
	}
	return err.Error()
}

// decimal reports whether s is an integer in decimal, -?[0-9]+, as
// strconv.AppendInt writes it; strconv.ParseInt also takes a leading '+'.
func decimal(s string) bool {
	s = strings.TrimPrefix(s, "-")
	return s != "" && strings.Trim(s, "0123456789") == ""
}

// rfc3339 reports whether s has the form of a time as time.RFC3339Nano
// writes it: 2006-01-02T15:04:05, a fraction of 1 to 9 digits after a '.'
// if any, then Z or an offset such as +07:00 (time.Parse then checks the
// ranges). Alone, time.Parse also takes a ',' before the fraction, more
// than 9 digits of it, or a one-digit hour, which parsers in other
// languages refuse or read otherwise.
func rfc3339(s string) bool {
	const date = "0000-00-00T00:00:00"
	if len(s) < len(date) || !shaped(s[:len(date)], date) {
		return false
	}
	s = s[len(date):]
	if strings.HasPrefix(s, ".") {
		n := 1
		for n < len(s) && '0' <= s[n] && s[n] <= '9' {
			n++
		}
		if n == 1 || n > 10 {
			return false
		}
		s = s[n:]
	}
	return s == "Z" || shaped(s, "+00:00")
}

// shaped reports whether s has the shape of form, in which '0' stands for
// any decimal digit and '+' for a sign, '+' or '-'.
func shaped(s, form string) bool {
	if len(s) != len(form) {
		return false
	}
	for i := 0; i < len(form); i++ {
		switch c := s[i]; form[i] {
		case '0':
			if c < '0' || c > '9' {
				return false
			}
		case '+':
			if c != '+' && c != '-' {
				return false
			}
		default:
			if c != form[i] {
				return false
			}
		}
	}
	return true
}
