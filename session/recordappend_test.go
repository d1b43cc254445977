package session

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzAppendRecord holds appendRecord equal to json.Marshal for any
// record of version 2, values included, as encodeValue makes them.
func FuzzAppendRecord(f *testing.F) {
	f.Add("alice", int64(1795600800000), int64(1795687200000), int64(0), "10.0.0.1", "Chrome 131 on Windows", "", "", "theme", "dark", "n", int64(3))
	f.Add("bob", int64(1795600800000), int64(1795687200000), int64(1795604400000), "::1", "curl 8", "", "kYq0fM2mE1n6T7d9R3sQ5w", "", "", "", int64(0))
	f.Add("", int64(0), int64(1), int64(-5), "", "", "Mozilla/5.0 <&> \"x\"", "<o>", "", "\u2028\xff\n", "k\\", int64(-1))
	f.Fuzz(func(t *testing.T, user string, c, e, s int64, ip, d, ua, o, k1, v1, k2 string, v2 int64) {
		rec := record{V: recordVersion, UserID: user, C: c, E: e, S: s, IP: ip, D: d, UA: ua, O: o}
		if k1 != "" {
			rec.Val = map[string]json.RawMessage{}
			for k, v := range map[string]any{k1: v1, k2: v2} {
				raw, err := encodeValue(v, recordVersion)
				if err != nil {
					t.Fatal(err)
				}
				rec.Val[k] = raw
			}
		}
		want, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendRecord(nil, &rec); !bytes.Equal(got, want) {
			t.Fatalf("appendRecord = %s\njson.Marshal = %s", got, want)
		}
		if got, want := appendJSONString(nil, v1), must(json.Marshal(v1)); !bytes.Equal(got, want) {
			t.Fatalf("appendJSONString(%q) = %s, want %s", v1, got, want)
		}
	})
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
