package session

import (
	"reflect"
	"testing"
	"time"
)

// TestScanRecordReadsEncode checks that scanRecord reads the records Encode
// writes for the common values (strings, ints, int64s, bools, bytes,
// times), so that reads take the fast path, and that it leaves to
// encoding/json what it does not read: a JSON value, a float, a version 1
// record, whitespace.
func TestScanRecordReadsEncode(t *testing.T) {
	created := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	md := meta{UserID: "alice", CreatedAt: created, LastSeen: created.Add(time.Minute), IP: "10.0.0.1", Device: "Chrome 131 on Windows"}
	for _, tc := range []struct {
		name   string
		values map[string]any
		fast   bool
	}{
		{"no values", nil, true},
		{"strings", map[string]any{"theme": "dark", "lang": "en"}, true},
		{"tagged", map[string]any{"n": 3, "n64": int64(1) << 60, "ok": true, "no": false, "b": []byte("x"), "t": created}, true},
		{"float", map[string]any{"f": 2.5}, false},
		{"json value", map[string]any{"p": jsonValue(`{"k":[1,2]}`)}, false},
		{"escaped string", map[string]any{"q": `say "hi"`}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			values := map[string]any{metaKey: md}
			for k, v := range tc.values {
				values[k] = v
			}
			b, err := codec{}.Encode(created.Add(time.Hour), values)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := scanRecord(b); ok != tc.fast {
				t.Errorf("scanRecord(%s) ok = %v, want %v", b, ok, tc.fast)
			}
			deadline, got, err := codec{}.Decode(b)
			if err != nil || !deadline.Equal(created.Add(time.Hour)) || !reflect.DeepEqual(got[metaKey], md) {
				t.Fatalf("Decode(%s) = %v, %+v, %v", b, deadline, got, err)
			}
			for k, v := range tc.values {
				if w, ok := v.(time.Time); ok {
					if g, _ := got[k].(time.Time); !g.Equal(w) {
						t.Errorf("value %q = %v, want %v", k, got[k], v)
					}
				} else if !reflect.DeepEqual(got[k], v) {
					t.Errorf("value %q = %#v, want %#v", k, got[k], v)
				}
			}
		})
	}
	t.Run("user agent kept", func(t *testing.T) {
		md := md
		md.UserAgent = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
		c := codec{keepUserAgent: true}
		b, err := c.Encode(created.Add(time.Hour), map[string]any{metaKey: md, "theme": "dark"})
		if err != nil {
			t.Fatal(err)
		}
		if rec, ok := scanRecord(b); !ok || rec.UA != md.UserAgent {
			t.Errorf("scanRecord(%s) = %+v, %v; want the user agent, true", b, rec, ok)
		}
		if _, got, err := c.Decode(b); err != nil || !reflect.DeepEqual(got[metaKey], md) {
			t.Errorf("Decode(%s) meta = %+v, %v; want %+v", b, got[metaKey], err, md)
		}
	})
	for _, in := range []string{
		`{"v":2,"c":1795600800000,"e":1795604400000,"ua":"a","ua":"b"}`,
		`{"v":2,"c":1795600800000,"e":1795604400000,"UA":"a"}`,
		`{"v":1,"created_at":"2026-11-25T10:00:00Z","expires_at":"2026-11-25T11:00:00Z"}`,
		`{"v":2, "c":1795600800000,"e":1795604400000}`,
		`{"v":2,"c":1795600800000,"e":1795604400000,"c":1}`,
		`{"V":2,"c":1795600800000,"e":1795604400000}`,
		`{"v":2,"c":01795600800000,"e":1795604400000}`,
		`{"v":2,"c":1795600800000,"e":1795604400000}x`,
		`{"v":2,"user_id":"a\u00e9","c":1795600800000,"e":1795604400000}`,
		"{\"v\":2,\"user_id\":\"\xff\",\"c\":1795600800000,\"e\":1795604400000}",
	} {
		if _, ok := scanRecord([]byte(in)); ok {
			t.Errorf("scanRecord(%s) ok = true, want it left to encoding/json", in)
		}
	}
}

// FuzzScanRecord holds scanRecord equal to unmarshalRecord (json.Unmarshal):
// whatever it reads, unmarshalRecord reads too, to the same record.
func FuzzScanRecord(f *testing.F) {
	created := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	b, _ := codec{keepUserAgent: true}.Encode(created.Add(time.Hour), map[string]any{
		metaKey: meta{UserID: "alice", CreatedAt: created, IP: "10.0.0.1", UserAgent: "curl/8.5.0"},
		"theme": "dark", "n": 3, "ok": true, "t": created,
	})
	f.Add(b)
	f.Add([]byte(`{"v":2,"c":1,"e":2,"val":{}}`))
	f.Add([]byte(`{"v":2,"c":1,"e":2,"s":0}`))
	f.Add([]byte(`{"v":2,"c":1,"e":2,"d":"x","ua":"y","Ua":"z"}`))
	f.Add([]byte("{\"v\":2,\"c\":1,\"e\":2,\"val\":{\"a\":{\"int\":0},\"b\":{\"bool\":false},\"c\":\"\xff\"}}"))
	f.Fuzz(func(t *testing.T, in []byte) {
		got, ok := scanRecord(in)
		if !ok {
			return
		}
		want, err := unmarshalRecord(in)
		if err != nil {
			t.Fatalf("scanRecord(%q) read %+v; unmarshalRecord: %v", in, got, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("scanRecord(%q) = %+v; unmarshalRecord: %+v", in, got, want)
		}
	})
}
