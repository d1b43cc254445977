package session

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// The size of a session's record is bounded by Config.MaxRecordBytes at
// two places. Put estimates it, so that the handler hears of a value too
// large while it can still answer: state.size is the size of the record
// the commit would write, with room for what a later write of the request
// may add (see writtenSize), found by encoding it once, at the request's
// first Put, and then moved by the entries the request puts and removes,
// each sized without encoding the whole record again. Where a record is
// encoded for the store (Create, a renewal, the commit), its real size
// decides, since other requests' values merged in may have pushed it
// over.

// overLimit returns an error matching ErrInvalidValue when a record of n
// bytes is over Config.MaxRecordBytes, or nil.
func (m *Manager) overLimit(n int) error {
	if limit := m.cfg.MaxRecordBytes; limit >= 0 && n > limit {
		return fmt.Errorf("%w: the session record would be %d bytes, over Config.MaxRecordBytes (%d)", ErrInvalidValue, n, limit)
	}
	return nil
}

// encode returns the record of a session with deadline and values, as m's
// codec writes it, unless the request put a value (changes, see
// state.changes, holds one) and the record is over Config.MaxRecordBytes:
// then an error matching ErrInvalidValue. A request that only refreshes,
// renews or removes writes a record loaded over the limit all the same.
func (m *Manager) encode(deadline time.Time, values, changes map[string]any) ([]byte, error) {
	b, err := m.codec.Encode(deadline, values)
	if err != nil {
		return nil, err
	}
	for _, v := range changes {
		if _, removed := v.(removal); !removed {
			if err := m.overLimit(len(b)); err != nil {
				return nil, err
			}
			break
		}
	}
	return b, nil
}

// fits reports, with an error matching ErrInvalidValue, whether putting
// v, normalized, under key would take the record over
// Config.MaxRecordBytes by st.size's estimate, and otherwise returns the
// record's estimated size with it. The caller holds st.mu.
func (st *state) fits(key string, v any) (int, error) {
	m := st.m
	if m.cfg.MaxRecordBytes < 0 {
		return 0, nil // no limit: nothing to estimate
	}
	if st.size == 0 {
		n, err := m.writtenSize(st)
		if err != nil {
			return 0, err
		}
		st.size = int32(n)
	}
	size := int(st.size) + m.entrySize(key, v)
	if old := m.engine.Get(st.engineData(), key); old != nil {
		size -= m.entrySize(key, old)
	}
	if limit := m.cfg.MaxRecordBytes; limit >= 0 && size > limit {
		return 0, fmt.Errorf("%w: with this key and value, %d and %d bytes as the record encodes them, the session record would be about %d bytes, over Config.MaxRecordBytes (%d)",
			ErrInvalidValue, jsonStringSize(key), m.valueSize(v), size, limit)
	}
	return size, nil
}

// writtenSize returns the size of the record that the commit, or a Renew
// before it, may write for st's session as the request holds it now, with
// an empty object of values where it holds none. This is not the size of
// the record the request loaded: it may be of another version than the
// one m writes, and a write adds fields that a record may lack. Each is
// counted at its longest, so that a value Put accepts is never what a
// later write of the request refuses:
//   - the last-seen time, which a record of version 2 leaves out while it
//     equals the creation time (see codec.Encode) and which a write gives
//     the time it runs, on this instance's clock, maybe in the creation's
//     millisecond, maybe later, and which version 1 writes with as many
//     digits of milliseconds as it has;
//   - the id the session was created under (meta.Origin), which its first
//     Renew adds.
//
// The caller holds st.mu.
func (m *Manager) writtenSize(st *state) (int, error) {
	if st.stored == "" {
		// Nothing stored yet (a new anonymous session, or one after
		// Destroy): the commit inserts a record of this request's own,
		// which Renew cannot move before, but a later request's may.
		return m.newRecordSize(st), nil
	}
	values := m.values(st)
	md, _ := values[metaKey].(meta)
	values[metaKey] = m.withRoom(md, m.now(), idOf(st.stored))
	// The token's deadline, which a token of an earlier release holds in
	// whole seconds, where the record written keeps its own.
	b, err := m.codec.Encode(m.longestTime(st.deadline), values)
	if err != nil {
		return 0, err
	}
	n := len(b)
	if len(values) == 1 { // the session's own fields alone
		n += m.emptyValuesSize()
	}
	return n, nil
}

// withRoom returns md as writtenSize counts it: with the longest last-seen
// time that a write at now or later may give it and, where it has none, a
// first id like id, which its first Renew adds (see writtenSize).
func (m *Manager) withRoom(md meta, now time.Time, id string) meta {
	seen := lastSeen(md, now)
	if !seen.After(md.CreatedAt) {
		seen = md.CreatedAt.Add(time.Millisecond)
	}
	md.LastSeen = m.longestTime(seen)
	if md.Origin == "" {
		md.Origin = id
	}
	return md
}

// userIDLen returns the length of the id of a user's session that m
// creates: 22 characters (43 for the whole SHA-256 of the longer tokens
// that Config.PreviousFormat keeps), after the user's hash tag with a
// TagKey, whose length is fixed (see userTag).
func (m *Manager) userIDLen() int {
	n := base64.RawURLEncoding.EncodedLen(shortIDBytes)
	if m.cfg.PreviousFormat {
		n = base64.RawURLEncoding.EncodedLen(sha256.Size)
	}
	if m.cfg.TagKey != nil {
		n += len("{}") + tagLen
	}
	return n
}

// longestTime returns t, or, in the records of version 1 that
// Config.PreviousFormat writes, a time of the same second whose text is as
// long as any of that second's: with three digits of milliseconds, which
// that version leaves out as they are zeros (".5Z", ".123Z", "Z").
func (m *Manager) longestTime(t time.Time) time.Time {
	if !m.cfg.PreviousFormat {
		return t // unix milliseconds: 13 digits for every time it holds
	}
	return t.Truncate(time.Second).Add(999 * time.Millisecond)
}

// emptyValuesSize returns how many bytes the object of values adds to a
// record of m's version that has none, less the comma that entrySize
// counts for each entry and that the object's first does not need.
func (m *Manager) emptyValuesSize() int {
	if m.cfg.PreviousFormat {
		return len(`,"values":{}`) - 1
	}
	return len(`,"val":{}`) - 1
}

// newRecordSize returns the size of the record that inserting an
// anonymous session for st's request writes before any value: its own
// fields, and the empty object that will hold the values. The caller
// holds st.mu.
func (m *Manager) newRecordSize(st *state) int {
	now := m.now()
	ip, userAgent := st.client()
	var device string
	if m.codec.name == nil {
		device = m.codec.nameDevice(userAgent)
	} else {
		// An app's Config.DeviceName runs once a session, when the
		// record is written: its name is counted at its longest, each
		// byte one that the record escapes (\u003c for <).
		device = strings.Repeat("<", maxDevice)
	}
	// The commit's times, not now's: see longestTime.
	at := m.longestTime(wholeMilli(now))
	// With the room a later request's Renew takes (the last-seen time and
	// the first id), as for a stored record: else a record as large as
	// MaxRecordBytes allows grows past it there, and no Put fits after.
	md := m.withRoom(m.codec.namedMeta("", at, ip, userAgent, device), now, strings.Repeat("x", m.userIDLen()))
	values := map[string]any{metaKey: md}
	b, err := m.codec.Encode(m.longestTime(m.deadline(now)), values)
	if err != nil {
		return 0 // Encode of a meta alone does not fail
	}
	return len(b) + m.emptyValuesSize()
}

// entrySize returns how many bytes the app value v, normalized, under key
// takes in a record m writes: the key, a colon, the value and a comma.
func (m *Manager) entrySize(key string, v any) int {
	return jsonStringSize(key) + 1 + m.valueSize(v) + 1
}

// valueSize returns len(encodeValue(v, version)) for the version of the
// records m writes, without encoding a string, a []byte or a JSON value,
// whose encodings may be large.
func (m *Manager) valueSize(v any) int {
	version := recordVersion
	if m.cfg.PreviousFormat {
		version = recordV1
	}
	switch v := v.(type) {
	case string:
		if version == recordV1 {
			return len(`{"string":}`) + jsonStringSize(v)
		}
		return jsonStringSize(v)
	case []byte:
		return len(`{"bytes":""}`) + base64.StdEncoding.EncodedLen(len(v))
	case jsonValue:
		if compactJSON(v) {
			return len(`{"json":}`) + len(v)
		}
		// Another writer's, with spaces or characters that encoding/json
		// escapes: the record holds it as appendValue writes it.
		b, _ := appendValue(nil, v, version)
		return len(b)
	}
	var buf [64]byte // room for every value of a fixed form
	b, _ := appendValue(buf[:0], v, version)
	return len(b)
}

// compactJSON reports whether the valid JSON b is as encoding/json
// writes it: no space between its tokens, and none of the characters it
// escapes in strings (<, >, &, U+2028, U+2029), so that a record holds b
// as it is. What Put normalizes is; a value from a record another program
// wrote may not be.
func compactJSON(b []byte) bool {
	inString, escaped := false, false
	for i, c := range b {
		switch {
		case escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case c == '"':
			inString = !inString
		case c == '<' || c == '>' || c == '&':
			return false
		case c == 0xE2 && i+2 < len(b) && b[i+1] == 0x80 && (b[i+2] == 0xA8 || b[i+2] == 0xA9): // U+2028, U+2029
			return false
		case !inString && (c == ' ' || c == '\t' || c == '\n' || c == '\r'):
			return false
		}
	}
	return true
}

// jsonStringSize returns len(appendJSONString(nil, s)) for a valid UTF-8
// s: the length of s as encoding/json writes it, escapes included.
func jsonStringSize(s string) int {
	n := 2 // the quotes
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t':
				n += 2
			case c < 0x20 || c == '<' || c == '>' || c == '&':
				n += len(`\u0000`)
			default:
				n++
			}
			i++
			continue
		}
		r, w := utf8.DecodeRuneInString(s[i:])
		if r == '\u2028' || r == '\u2029' || r == utf8.RuneError && w == 1 {
			n += len(`\u2028`)
		} else {
			n += w
		}
		i += w
	}
	return n
}
