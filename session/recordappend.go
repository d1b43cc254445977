package session

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"
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

// appendValue appends the JSON of an app value in a record of the given
// version: any type as a one-member object naming its type, but a string
// in version 2 as a JSON string; byte for byte what json.Marshal writes of
// map[string]any{tag: v} (TestValueSize holds them equal), without its
// reflection and map for the types of a fixed form.
func appendValue(b []byte, v any, version int) ([]byte, error) {
	switch v := v.(type) {
	case string:
		if version != recordV1 {
			return appendJSONString(b, v), nil
		}
		return append(appendJSONString(append(b, `{"string":`...), v), '}'), nil
	case bool:
		return append(strconv.AppendBool(append(b, `{"bool":`...), v), '}'), nil
	case int:
		return append(strconv.AppendInt(append(b, `{"int":`...), int64(v), 10), '}'), nil
	case int64:
		// A string: other languages' JSON numbers lose precision past 2^53.
		return append(strconv.AppendInt(append(b, `{"int64":"`...), v, 10), `"}`...), nil
	case []byte:
		b = base64.StdEncoding.AppendEncode(append(b, `{"bytes":"`...), v) // encoding/json's alphabet
		return append(b, `"}`...), nil
	case time.Time:
		// RFC 3339 holds nothing encoding/json escapes.
		return append(v.AppendFormat(append(b, `{"time":"`...), time.RFC3339Nano), `"}`...), nil
	case float64:
		j, err := json.Marshal(map[string]any{tagFloat: v}) // encoding/json's own float format
		return append(b, j...), err
	case jsonValue:
		j, err := json.Marshal(map[string]any{tagJSON: json.RawMessage(v)}) // compacted and escaped as encoding/json does
		return append(b, j...), err
	}
	return nil, fmt.Errorf("unsupported type %T", v)
}
