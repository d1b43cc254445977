package session

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// scanRecord reads a record of the exact shape Encode writes (compact JSON,
// the fields of version 2 only, numbers of plain digits, strings without
// escapes, values that are such strings or tagged objects of them and of
// plain numbers and booleans) without encoding/json's reflection, which is
// most of a read's CPU time outside the Redis call. For anything else it
// reports false, and the caller decodes with encoding/json: what it
// accepts, it reads exactly as unmarshalRecord does (FuzzScanRecord holds
// the two equal), so it changes no record's meaning, only the cost.
func scanRecord(b []byte) (rec record, ok bool) {
	s := scanner{b: b}
	if !s.byte('{') {
		return record{}, false
	}
	seen := 0 // bit i: field i read, so that a repeated field goes to encoding/json
	for first := true; ; first = false {
		if s.byte('}') {
			return rec, s.i == len(s.b)
		}
		if !first && !s.byte(',') {
			return record{}, false
		}
		key, ok := s.str()
		if !ok || !s.byte(':') {
			return record{}, false
		}
		bit := 0
		switch key {
		case "v":
			bit, ok = 1, s.intInto(&rec.V)
		case "user_id":
			bit = 2
			rec.UserID, ok = s.str()
		case "c":
			bit, ok = 3, s.int64Into(&rec.C)
		case "e":
			bit, ok = 4, s.int64Into(&rec.E)
		case "s":
			bit, ok = 5, s.int64Into(&rec.S)
			rec.hasS = true
		case "ip":
			bit = 6
			rec.IP, ok = s.str()
		case "d":
			bit = 7
			rec.D, ok = s.str()
		case "ua":
			bit = 8
			rec.UA, ok = s.str()
		case "o":
			bit = 9
			rec.O, ok = s.str()
		case "val":
			bit = 10
			rec.Val, ok = s.values()
		default:
			return record{}, false
		}
		if !ok || seen&(1<<bit) != 0 {
			return record{}, false
		}
		seen |= 1 << bit
	}
}

// scanner reads b from i on.
type scanner struct {
	b []byte
	i int
	// text is b as a string, made by the first str: the strings str
	// returns are slices of it, so that a record costs one copy rather
	// than one per field and key.
	text string
}

// byte consumes c if it comes next.
func (s *scanner) byte(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// str reads a JSON string without escapes or control characters, of valid
// UTF-8, which encoding/json reads as the bytes between the quotes.
func (s *scanner) str() (string, bool) {
	start := s.i
	if _, ok := s.rawStr(); !ok {
		return "", false
	}
	if s.text == "" {
		s.text = string(s.b)
	}
	return s.text[start+1 : s.i-1], true
}

// rawStr is str, returning the string with its quotes, as written.
func (s *scanner) rawStr() ([]byte, bool) {
	if !s.byte('"') {
		return nil, false
	}
	start := s.i - 1
	end := bytes.IndexByte(s.b[s.i:], '"')
	if end < 0 {
		return nil, false
	}
	body := s.b[s.i : s.i+end]
	for _, c := range body {
		if c < 0x20 || c == '\\' {
			return nil, false
		}
	}
	if !utf8.Valid(body) {
		return nil, false
	}
	s.i += end + 1
	return s.b[start:s.i], true
}

// digits reads 1 to 15 decimal digits without a leading zero (or a lone
// 0): an integer that both int and int64 hold, and that a float64 holds
// exactly.
func (s *scanner) digits() (int64, bool) {
	start := s.i
	var v int64
	for s.i < len(s.b) && '0' <= s.b[s.i] && s.b[s.i] <= '9' {
		v = v*10 + int64(s.b[s.i]-'0')
		s.i++
	}
	n := s.i - start
	if n == 0 || n > 15 || (n > 1 && s.b[start] == '0') {
		return 0, false
	}
	// A fraction or an exponent is a number encoding/json would refuse
	// for an integer field.
	if s.i < len(s.b) && (s.b[s.i] == '.' || s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		return 0, false
	}
	return v, true
}

func (s *scanner) int64Into(p *int64) bool {
	v, ok := s.digits()
	*p = v
	return ok
}

func (s *scanner) intInto(p *int) bool {
	v, ok := s.digits()
	*p = int(v)
	return ok
}

// values reads the "val" object: each member a plain string, or a
// one-member object whose value is a plain string, plain digits, true or
// false (the tagged values Encode writes for most types). Each value is
// returned as written, as encoding/json's json.RawMessage would hold it.
func (s *scanner) values() (map[string]json.RawMessage, bool) {
	if !s.byte('{') {
		return nil, false
	}
	vals := make(map[string]json.RawMessage, 2)
	for first := true; ; first = false {
		if s.byte('}') {
			return vals, true
		}
		if !first && !s.byte(',') {
			return nil, false
		}
		k, ok := s.str()
		if !ok || !s.byte(':') {
			return nil, false
		}
		if _, dup := vals[k]; dup {
			return nil, false
		}
		start := s.i
		if s.i < len(s.b) && s.b[s.i] == '"' {
			_, ok = s.rawStr()
		} else {
			ok = s.tagged()
		}
		if !ok {
			return nil, false
		}
		vals[k] = s.b[start:s.i]
	}
}

// tagged reads {"<tag>":<plain string, digits, true or false>}.
func (s *scanner) tagged() bool {
	if !s.byte('{') {
		return false
	}
	if _, ok := s.rawStr(); !ok || !s.byte(':') {
		return false
	}
	switch {
	case s.i < len(s.b) && s.b[s.i] == '"':
		if _, ok := s.rawStr(); !ok {
			return false
		}
	case bytes.HasPrefix(s.b[s.i:], []byte("true")):
		s.i += 4
	case bytes.HasPrefix(s.b[s.i:], []byte("false")):
		s.i += 5
	default:
		if _, ok := s.digits(); !ok {
			return false
		}
	}
	return s.byte('}')
}
