package session

import (
	"encoding/json"
	"maps"
	"slices"
	"strconv"
)

// appendRecord appends rec, a record of recordVersion, to b as
// json.Marshal writes it (FuzzAppendRecord holds the two equal), without
// its reflection: encoding a record is a login's largest share of CPU
// after the Redis call and the cookie.
func appendRecord(b []byte, rec *record) []byte {
	b = strconv.AppendInt(append(b, `{"v":`...), int64(rec.V), 10)
	b = appendStringField(b, `,"user_id":`, rec.UserID)
	b = appendIntField(b, `,"c":`, rec.C)
	b = appendIntField(b, `,"e":`, rec.E)
	b = appendIntField(b, `,"s":`, rec.S)
	b = appendStringField(b, `,"ip":`, rec.IP)
	b = appendStringField(b, `,"d":`, rec.D)
	b = appendStringField(b, `,"ua":`, rec.UA)
	b = appendStringField(b, `,"o":`, rec.O)
	if len(rec.Val) > 0 {
		b = append(b, `,"val":{`...)
		for i, k := range slices.Sorted(maps.Keys(rec.Val)) {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(appendJSONString(b, k), ':')
			if v := rec.Val[k]; len(v) > 0 {
				b = append(b, v...) // compact, from json.Marshal (encodeValue)
			} else {
				b = append(b, "null"...)
			}
		}
		b = append(b, '}')
	}
	return append(b, '}')
}

// appendIntField appends name and v, unless v is 0 (omitempty).
func appendIntField(b []byte, name string, v int64) []byte {
	if v == 0 {
		return b
	}
	return strconv.AppendInt(append(b, name...), v, 10)
}

// appendStringField appends name and s, unless s is empty (omitempty).
func appendStringField(b []byte, name, s string) []byte {
	if s == "" {
		return b
	}
	return appendJSONString(append(b, name...), s)
}

// appendJSONString appends s as encoding/json writes a string. A string
// of printable ASCII without '"', '\\' or the characters encoding/json
// escapes for HTML ('<', '>', '&') is written as it is; any other goes
// through json.Marshal, so that escapes stay exactly encoding/json's.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	return append(append(append(b, '"'), s...), '"')
}
