package session

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

type point struct {
	X, Y int
}

func TestCodecRoundTrip(t *testing.T) {
	created := time.Date(2026, 11, 25, 10, 0, 0, 123000000, time.UTC) // a record keeps whole milliseconds
	deadline := created.Add(24 * time.Hour)
	when := time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("X", 3600))
	jv, _ := normalize(point{1, 2})
	values := map[string]any{
		metaKey: meta{UserID: "alice", CreatedAt: created, LastSeen: created, IP: "127.0.0.1", UserAgent: "test"},
		"s":     "text",
		"b":     true,
		"i":     42,
		"i64":   int64(1) << 62,
		"f":     2.5,
		"bytes": []byte{0, 1, 2},
		"time":  when,
		"point": jv,
	}
	b, err := codec{}.Encode(deadline, values)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.ContainsAny(b, "\n ") {
		t.Errorf("record %s is not compact JSON", b)
	}
	gotDeadline, got, err := codec{}.Decode(b)
	if err != nil {
		t.Fatalf("Decode(%s): %v", b, err)
	}
	if !gotDeadline.Equal(deadline) {
		t.Errorf("deadline = %v, want %v", gotDeadline, deadline)
	}
	for k, want := range values {
		if k == "time" {
			if g, ok := got[k].(time.Time); !ok || !g.Equal(when) {
				t.Errorf("value %q = %#v, want %v", k, got[k], when)
			}
			continue
		}
		if k == metaKey {
			g := got[k].(meta)
			w := want.(meta)
			if g.UserID != w.UserID || !g.CreatedAt.Equal(w.CreatedAt) || !g.LastSeen.Equal(w.LastSeen) || g.IP != w.IP || g.Device != "test" {
				t.Errorf("meta = %+v, want %+v", g, w)
			}
			continue
		}
		if !reflect.DeepEqual(got[k], want) {
			t.Errorf("value %q = %#v (%T), want %#v (%T)", k, got[k], got[k], want, want)
		}
	}
	if p, ok := as[point](got["point"]); !ok || p != (point{1, 2}) {
		t.Errorf("as[point] = %v, %v; want {1 2}, true", p, ok)
	}
}

// TestRecordSchema pins the documented JSON schema of a record: version 2,
// with the last-seen time left out while it equals the creation time and
// the user agent only with KeepUserAgent; or, with PreviousFormat,
// version 1 as the previous release writes it.
func TestRecordSchema(t *testing.T) {
	created := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	ua := "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
	for _, tc := range []struct {
		name  string
		codec codec
		seen  time.Time
		want  string
	}{
		{"at login", codec{}, created, `{"v":2,"user_id":"alice","c":1795600800000,"e":1795604400000,"ip":"10.0.0.1","d":"Chrome 131 on Windows","val":{"n":{"int":3},"s":"x"}}`},
		{"seen later", codec{}, created.Add(time.Minute), `{"v":2,"user_id":"alice","c":1795600800000,"e":1795604400000,"s":1795600860000,"ip":"10.0.0.1","d":"Chrome 131 on Windows","val":{"n":{"int":3},"s":"x"}}`},
		{"user agent kept", codec{keepUserAgent: true}, created, `{"v":2,"user_id":"alice","c":1795600800000,"e":1795604400000,"ip":"10.0.0.1","d":"Chrome 131 on Windows","ua":"` + ua + `","val":{"n":{"int":3},"s":"x"}}`},
		{"previous format", codec{previous: true}, created.Add(time.Minute), `{"v":1,"user_id":"alice","created_at":"2026-11-25T10:00:00Z","expires_at":"2026-11-25T11:00:00Z","last_seen":"2026-11-25T10:01:00Z","ip":"10.0.0.1","user_agent":"` + ua + `","values":{"n":{"int":3},"s":{"string":"x"}}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.codec.Encode(created.Add(time.Hour), map[string]any{
				metaKey: meta{UserID: "alice", CreatedAt: created, LastSeen: tc.seen, IP: "10.0.0.1", UserAgent: ua},
				"n":     3,
				"s":     "x",
			})
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.want {
				t.Errorf("record =\n%s\nwant\n%s", b, tc.want)
			}
		})
	}
}

// TestRecordV1 checks that a record of version 1, which earlier versions
// wrote, reads as it did, and is written back as version 2 with the device
// parsed from its user agent.
func TestRecordV1(t *testing.T) {
	const v1 = `{"v":1,"user_id":"alice","created_at":"2026-11-25T10:00:00.5Z","expires_at":"2026-11-25T11:00:00Z",` +
		`"last_seen":"2026-11-25T10:30:00Z","ip":"10.0.0.1","user_agent":"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",` +
		`"values":{"n":{"int":3},"s":{"string":"x"}}}`
	deadline, values, err := codec{}.Decode([]byte(v1))
	if err != nil {
		t.Fatal(err)
	}
	created := time.Date(2026, 11, 25, 10, 0, 0, 5e8, time.UTC)
	md := values[metaKey].(meta)
	if !deadline.Equal(created.Add(time.Hour-5e8)) || !md.CreatedAt.Equal(created) || !md.LastSeen.Equal(created.Add(30*time.Minute-5e8)) ||
		md.UserID != "alice" || md.IP != "10.0.0.1" || !strings.HasSuffix(md.UserAgent, "Firefox/128.0") || values["n"] != 3 || values["s"] != "x" {
		t.Fatalf("Decode(v1) = %v, %+v, want the record's fields", deadline, values)
	}
	if got, want := (codec{}).device(md), "Firefox 128 on Linux"; got != want {
		t.Errorf("device of the v1 record = %q, want %q", got, want)
	}
	b, err := codec{}.Encode(deadline, values)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"v":2,"user_id":"alice","c":1795600800500,"e":1795604400000,"s":1795602600000,"ip":"10.0.0.1","d":"Firefox 128 on Linux","val":{"n":{"int":3},"s":"x"}}`
	if string(b) != want {
		t.Errorf("v1 record written back =\n%s\nwant\n%s", b, want)
	}
}

// TestRecordV1EscapedTimes reads version 1 times that another writer
// escaped, as JSON allows (.NET's encoder writes a '+' as \u002B): they are
// the same times. encoding/json's time.Time reads the escapes as they
// are, which would make such a record unreadable, and end its session.
func TestRecordV1EscapedTimes(t *testing.T) {
	const plain = `{"v":1,"user_id":"alice","created_at":"2026-11-25T10:00:00Z","expires_at":"2026-11-26T10:00:00+01:00","last_seen":"2026-11-25T10:30:00Z"}`
	wantDeadline, wantMeta, _, err := decodeRecord([]byte(plain))
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range []string{
		`{"v":1,"user_id":"alice","created_at":"2026-11-25T10:00:00\u005a","expires_at":"2026-11-26T10:00:00\u002B01:00","last_seen":"2026-11-25T10:30:00Z"}`,
		`{"v":1,"user_id":"alice","created_at":"2026\u002d11-25T10:00:00Z","expires_at":"2026-11-26T10:00:00+01:00","last_seen":"2026-11-25T10:30:00\u005A"}`,
	} {
		deadline, md, _, err := decodeRecord([]byte(in))
		if err != nil || !deadline.Equal(wantDeadline) || md != wantMeta {
			t.Errorf("decodeRecord(%s) = %v, %+v, %v; want %v, %+v, as without the escapes", in, deadline, md, err, wantDeadline, wantMeta)
		}
	}
	// Escaped or not, a time has the form RFC 3339 gives it, as value
	// times do: not the one-digit hour or the ',' that Go's parser alone
	// takes.
	for _, in := range []string{
		`{"v":1,"created_at":"2026-11-25 10:00:00Z","expires_at":"2026-11-26T10:00:00Z"}`,
		`{"v":1,"created_at":"2026-11-25T1:00:00Z","expires_at":"2026-11-26T10:00:00Z"}`,
		`{"v":1,"created_at":"2026-11-25T10:00:00,5Z","expires_at":"2026-11-26T10:00:00Z"}`,
		`{"v":1,"created_at":"2026-11-25T10:00:00Z","expires_at":"2026-11-26T10:00:00\u002C5Z"}`,
		`{"v":1,"created_at":"2026-11-25T10:00:00\u0020","expires_at":"2026-11-26T10:00:00Z"}`,
		`{"v":1,"created_at":1795600800,"expires_at":"2026-11-26T10:00:00Z"}`,
	} {
		if _, _, _, err := decodeRecord([]byte(in)); !errors.Is(err, errBadRecord) {
			t.Errorf("decodeRecord(%s) = %v, want errBadRecord", in, err)
		}
	}
}

// TestRecordLongUserAgent reads records that another writer made with a
// user agent longer than a request's is kept (maxUserAgent), or a device
// name longer than a namer's (maxDevice): the session keeps them cut, as
// the README says, in both versions.
func TestRecordLongUserAgent(t *testing.T) {
	long := strings.Repeat("a", maxUserAgent-1) + "é and more"
	device := strings.Repeat("d", maxDevice-1) + "é and more"
	for _, in := range []string{
		`{"v":1,"created_at":"2026-11-25T10:00:00Z","expires_at":"2026-11-26T10:00:00Z","user_agent":"` + long + `","d":"` + device + `"}`,
		`{"v":2,"c":1795600800000,"e":1795687200000,"ua":"` + long + `","d":"` + device + `"}`,
	} {
		_, md, _, err := decodeRecord([]byte(in))
		if want := long[:maxUserAgent-1]; err != nil || md.UserAgent != want {
			t.Errorf("decodeRecord(v%s...) user agent = %d bytes (%v), want the first %d, cut before the 2-byte é", in[5:6], len(md.UserAgent), err, len(want))
		}
		if want := device[:maxDevice-1]; err != nil || md.Device != want {
			t.Errorf("decodeRecord(v%s...) device = %d bytes (%v), want the first %d, cut before the 2-byte é", in[5:6], len(md.Device), err, len(want))
		}
	}
}

func TestCodecRejects(t *testing.T) {
	const head = `{"v":1,"created_at":"2026-11-25T10:00:00Z","expires_at":"2026-11-25T11:00:00Z"`
	const head2 = `{"v":2,"c":1795600800000,"e":1795604400000`
	tests := []struct{ name, in string }{
		{"not json", `not json`},
		{"empty", ``},
		{"gob", "\x0f\xff\x81\x03\x01"},
		{"unknown version", `{"v":3,"c":1795600800000,"e":1795604400000}`},
		{"no version", `{"c":1795600800000,"e":1795604400000}`},
		{"v1 fields in v2", `{"v":2,"created_at":"2026-11-25T10:00:00Z","expires_at":"2026-11-25T11:00:00Z"}`},
		{"v2 fields in v1", `{"v":1,"c":1795600800000,"e":1795604400000}`},
		{"no deadline", `{"v":1,"created_at":"2026-11-25T10:00:00Z"}`},
		{"v1 before 1970", `{"v":1,"created_at":"0000-01-01T00:00:00Z","expires_at":"2026-11-25T11:00:00Z"}`},
		{"v1 seen before 1970", head + `,"last_seen":"1969-12-31T23:59:59Z"}`},
		{"v2 no deadline", `{"v":2,"c":1795600800000}`},
		{"v2 no creation", `{"v":2,"e":1795604400000}`},
		{"v2 negative time", `{"v":2,"c":-1,"e":1795604400000}`},
		{"v2 past year 9999", head2 + `,"s":253402300800000}`},
		{"v2 s 0", head2 + `,"s":0}`},
		// The fields of both versions are reserved, with their types,
		// in a record of either.
		{"v2 with a numeric last_seen", head2 + `,"last_seen":1795600800000}`},
		{"v2 with values not an object", head2 + `,"values":[]}`},
		{"v1 with a string c", head + `,"c":"x"}`},
		{"v1 with a numeric ua", head + `,"ua":1}`},
		{"v2 s 0 spaced", head2 + `, "s" : 0 }`}, // encoding/json, not scanRecord
		{"v2 s negative", head2 + `,"s":-1}`},
		{"unknown tag", head + `,"values":{"a":{"complex":1}}}`},
		{"two tags", head + `,"values":{"a":{"int":1,"string":"x"}}}`},
		{"wrong type", head + `,"values":{"a":{"int":"x"}}}`},
		{"reserved key", head + `,"values":{"__sessionkit":{"int":1}}}`},
		{"bad time", head + `,"values":{"a":{"time":"yesterday"}}}`},
		{"bad int64", head + `,"values":{"a":{"int64":"1e3"}}}`},
		{"int64 with +", head2 + `,"val":{"a":{"int64":"+5"}}}`},
		{"int64 spaced", head2 + `,"val":{"a":{"int64":" 5"}}}`},
		{"int64 empty", head2 + `,"val":{"a":{"int64":""}}}`},
		{"int64 lone -", head2 + `,"val":{"a":{"int64":"-"}}}`},
		{"int64 past int64", head2 + `,"val":{"a":{"int64":"9223372036854775808"}}}`},
		{"int past int64", head2 + `,"val":{"a":{"int":9223372036854775808}}}`},
		{"float past float64", head2 + `,"val":{"a":{"float64":1e400}}}`},
		{"bytes with a line break", head2 + `,"val":{"a":{"bytes":"AAEC\n+v8="}}}`},
		{"bytes with CR LF", head2 + `,"val":{"a":{"bytes":"AAEC\r\n+v8="}}}`},
		{"bytes unpadded", head2 + `,"val":{"a":{"bytes":"AAECAw"}}}`},
		{"bytes base64url", head2 + `,"val":{"a":{"bytes":"-_8="}}}`},
		{"bytes with stray bits", head2 + `,"val":{"a":{"bytes":"AB=="}}}`},
		{"time with a comma", head2 + `,"val":{"a":{"time":"2026-01-02T15:04:05,5Z"}}}`},
		{"time with 10 digits of fraction", head2 + `,"val":{"a":{"time":"2026-01-02T15:04:05.1234567891Z"}}}`},
		{"time with an empty fraction", head2 + `,"val":{"a":{"time":"2026-01-02T15:04:05.Z"}}}`},
		{"time with a one-digit hour", head2 + `,"val":{"a":{"time":"2026-01-02T1:04:05Z"}}}`},
		{"time in lower case", head2 + `,"val":{"a":{"time":"2026-01-02t15:04:05z"}}}`},
		{"time with a space", head2 + `,"val":{"a":{"time":"2026-01-02 15:04:05Z"}}}`},
		{"time without a zone", head2 + `,"val":{"a":{"time":"2026-01-02T15:04:05"}}}`},
		{"time with an offset in hours", head2 + `,"val":{"a":{"time":"2026-01-02T15:04:05+05"}}}`},
		{"time with hour 24", head2 + `,"val":{"a":{"time":"2026-01-02T24:00:00Z"}}}`},
		{"v1 time with a comma", head + `,"values":{"a":{"time":"2026-01-02T15:04:05,5Z"}}}`},
		{"v1 bare string", head + `,"values":{"a":"x"}}`},
		{"v2 reserved key", head2 + `,"val":{"__sessionkit":"x"}}`},
		{"v2 unknown tag", head2 + `,"val":{"a":{"complex":1}}}`},
		{"v2 bare number", head2 + `,"val":{"a":1}}`},
		{"v2 null", head2 + `,"val":{"a":null}}`},
		{"v1 null", head + `,"values":{"a":null}}`},
	}
	// null is no value of a tag's type: encoding/json would read it as
	// the type's zero value, and other parsers as null. (Bytes take it,
	// see TestNullBytes.)
	for _, tag := range []string{tagString, tagBool, tagInt, tagInt64, tagFloat, tagTime} {
		tests = append(tests,
			struct{ name, in string }{"v1 null " + tag, head + `,"values":{"a":{"` + tag + `":null}}}`},
			struct{ name, in string }{"v2 null " + tag, head2 + `,"val":{"a":{"` + tag + `":null}}}`},
			struct{ name, in string }{"v2 spaced null " + tag, head2 + `,"val":{"a":{ "` + tag + `" : null }}}`},
		)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := (codec{}).Decode([]byte(tc.in)); !errors.Is(err, errBadRecord) {
				t.Errorf("Decode(%q) error = %v, want errBadRecord", tc.in, err)
			}
		})
	}
}

// TestTaggedValuesRead checks the forms of tagged values that the README
// promises to read, beyond those Encode writes: what another language's
// encoder writes (Python's isoformat, JavaScript's toISOString) reads as
// the value meant.
func TestTaggedValuesRead(t *testing.T) {
	const head = `{"v":2,"c":1795600800000,"e":1795604400000,"val":{"a":`
	at := time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want any
	}{
		{`{"int64":"-9223372036854775808"}`, int64(math.MinInt64)},
		{`{"int64":"0"}`, int64(0)},
		{`{"int64":"-0"}`, int64(0)},
		{`{"int":-9223372036854775808}`, math.MinInt64},
		{`{"bytes":""}`, []byte{}},
		{`{"bytes":"AAEC+v8="}`, []byte{0, 1, 2, 250, 255}},
		{`{"time":"2026-01-02T15:04:05Z"}`, at},
		{`{"time":"2026-01-02T15:04:05.123Z"}`, at.Add(123 * time.Millisecond)},
		{`{"time":"2026-01-02T15:04:05.123456+00:00"}`, at.Add(123456 * time.Microsecond)},
		{`{"time":"2026-01-02T20:34:05.123456789+05:30"}`, at.Add(123456789)},
		{`{"time":"2026-01-02T10:04:05-05:00"}`, at},
	} {
		_, _, values, err := decodeRecord([]byte(head + tc.in + "}}"))
		got := values["a"]
		if tm, ok := got.(time.Time); ok && tm.Equal(tc.want.(time.Time)) {
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("decode of %s = %#v, %v; want %#v", tc.in, got, err, tc.want)
		}
	}
}

// TestOtherVersionFieldsIgnored checks that a field of the other version,
// of its type, is ignored: the record reads by the fields of its own.
func TestOtherVersionFieldsIgnored(t *testing.T) {
	created := time.UnixMilli(1795600800000).UTC()
	for _, in := range []string{
		`{"v":2,"c":1795600800000,"e":1795604400000,"last_seen":"2026-11-25T11:00:00Z","values":{"a":{"int":1}},"user_agent":"x"}`,
		`{"v":1,"created_at":"2026-11-25T10:00:00Z","expires_at":"2026-11-25T11:00:00Z","s":1795604400000,"val":{"a":{"int":1}},"ua":"x"}`,
	} {
		_, md, values, err := decodeRecord([]byte(in))
		if err != nil || !md.LastSeen.Equal(created) || md.UserAgent != "" || values != nil {
			t.Errorf("decodeRecord(%s) = %+v, %v, %v; want last seen at creation, no user agent, no values", in, md, values, err)
		}
	}
}

// TestRecordNullFields checks that a top-level field that is null reads
// as absent, as the README says: "s":null is c, as Python's
// rec.get("s") or c reads it, and a null user_id is anonymous.
func TestRecordNullFields(t *testing.T) {
	for _, in := range []string{
		`{"v":2,"user_id":null,"c":1795600800000,"e":1795604400000,"s":null,"ip":null,"d":null,"ua":null,"o":null,"val":null}`,
		`{"v":2,"c":1795600800000,"e":1795604400000}`,
	} {
		deadline, md, values, err := decodeRecord([]byte(in))
		created := time.UnixMilli(1795600800000).UTC()
		if err != nil || !deadline.Equal(created.Add(time.Hour)) || md != (meta{CreatedAt: created, LastSeen: created}) || values != nil {
			t.Errorf("decodeRecord(%s) = %v, %+v, %v, %v; want the deadline, created and last seen at c, nothing else", in, deadline, md, values, err)
		}
	}
}

// TestRecordV1LastSeenDefault checks that a version 1 record without a
// last_seen (absent, null, or the zero time the previous release writes
// for none) was last seen when created, as a version 2 record without s,
// not at the zero time; written back, it is such a record.
func TestRecordV1LastSeenDefault(t *testing.T) {
	const head = `{"v":1,"user_id":"alice","created_at":"2026-11-25T10:00:00Z","expires_at":"2026-11-26T10:00:00Z"`
	created := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	for _, in := range []string{
		head + `}`,
		head + `,"last_seen":null}`,
		head + `,"last_seen":"0001-01-01T00:00:00Z"}`,
	} {
		deadline, md, _, err := decodeRecord([]byte(in))
		if err != nil || !md.LastSeen.Equal(created) {
			t.Errorf("decodeRecord(%s) last seen = %v, %v; want %v", in, md.LastSeen, err, created)
			continue
		}
		b, err := codec{}.Encode(deadline, map[string]any{metaKey: md})
		if want := `{"v":2,"user_id":"alice","c":1795600800000,"e":1795687200000}`; err != nil || string(b) != want {
			t.Errorf("written back as %s, %v; want %s", b, err, want)
		}
	}
}

// TestNullBytes reads {"bytes":null}, which the previous release wrote
// for a nil []byte (as json.Marshal writes one), as an empty []byte, in
// records of both versions, so that its sessions survive the upgrade; and
// {"json":null}, which Put writes for a nil map, slice or pointer, as
// such a JSON value.
func TestNullBytes(t *testing.T) {
	for _, in := range []string{
		`{"v":1,"created_at":"2026-11-25T10:00:00Z","expires_at":"2026-11-25T11:00:00Z","values":{"b":{"bytes":null},"j":{"json":null}}}`,
		`{"v":2,"c":1795600800000,"e":1795604400000,"val":{"b":{"bytes":null},"j":{"json":null}}}`,
	} {
		_, values, err := codec{}.Decode([]byte(in))
		if err != nil {
			t.Fatalf("Decode(%s): %v", in, err)
		}
		if b, ok := values["b"].([]byte); !ok || len(b) != 0 {
			t.Errorf("Decode(%s) bytes = %#v, want an empty []byte", in, values["b"])
		}
		if m, ok := as[map[string]int](values["j"]); !ok || m != nil {
			t.Errorf("Decode(%s) json as a map = %#v, %v; want nil, true", in, m, ok)
		}
	}
}

// TestRecordNotUTF8 checks that a record holding bytes that are not
// UTF-8, or an escape of half a surrogate pair, anywhere, is unreadable:
// encoding/json reads either as U+FFFD, which would log the holder in as
// another user id than the record's bytes name, where other parsers
// refuse the record or keep the bytes. scanRecord leaves them all to the
// slow path, so both paths refuse them. A whole pair, and an escaped
// backslash before "ud800", are read.
func TestRecordNotUTF8(t *testing.T) {
	const head = `{"v":2,"c":1795600800000,"e":1795687200000`
	const head1 = `{"v":1,"created_at":"2026-11-25T10:00:00Z","expires_at":"2026-11-26T10:00:00Z"`
	for _, in := range []string{
		head + ",\"user_id\":\"al\xffice\"}",
		head + ",\"user_id\":\"caf\xc3\"}", // a rune cut short
		head + `,"user_id":"al\ud800ice"}`,
		head + `,"user_id":"al\udc00ice"}`,
		head + `,"user_id":"al\ud800\u0041ice"}`,
		head + `,"user_id":"al\ud800"}`,
		head + `,"user_id":"al\\\ud800"}`,
		head + `,"user_id":"al\udc00\ud800ice"}`, // the pair reversed
		head + ",\"ip\":\"10.0.0.1\xff\"}",
		head + ",\"ua\":\"Mozilla/5.0 caf\xe9\"}",
		head + `,"d":"\uDBFF"}`,
		head + ",\"val\":{\"theme\":\"d\xe4rk\"}}",
		head + ",\"val\":{\"k\xff\":\"x\"}}",
		head + `,"val":{"theme":"\ud83d"}}`,
		head + `,"val":{"n":{"string":"\udfff"}}}`,
		head + `,"val":{"j":{"json":["\ud800"]}}}`,
		head + `,"future":"\ud800"}`,
		head + ",\"future\":\"\xff\"}",
		head1 + ",\"user_agent\":\"caf\xe9\"}",
		head1 + `,"user_id":"\ud800","values":{"a":{"string":"x"}}}`,
	} {
		if _, ok := scanRecord([]byte(in)); ok {
			t.Errorf("scanRecord(%q) ok = true, want it left to the slow path", in)
		}
		if _, md, values, err := decodeRecord([]byte(in)); !errors.Is(err, errBadRecord) {
			t.Errorf("decodeRecord(%q) = user %q, values %v, %v; want errBadRecord", in, md.UserID, values, err)
		}
	}
	for in, want := range map[string]string{
		head + `,"user_id":"alice","val":{"theme":"\ud83d\ude00"}}`:     "\U0001F600",
		head + `,"user_id":"alice","val":{"theme":"\uD83D\uDE00"}}`:     "\U0001F600",
		head + `,"user_id":"alice","val":{"theme":"\\ud800"}}`:          `\ud800`,
		head + `,"user_id":"alice","val":{"theme":"\\\ud83d\ude00"}}`:   `\` + "\U0001F600",
		head + `,"user_id":"alice","val":{"theme":"caf\u00e9 \ufffd"}}`: "café \uFFFD",
		head + `,"user_id":"alice","val":{"theme":"\\"}}`:               `\`,
	} {
		_, md, values, err := decodeRecord([]byte(in))
		if err != nil || md.UserID != "alice" || values["theme"] != want {
			t.Errorf("decodeRecord(%s) = user %q, theme %q, %v; want alice, %q", in, md.UserID, values["theme"], err, want)
		}
	}
}

// TestUserIDNotUTF8EndsSession checks, on a real Redis, what
// TestRecordNotUTF8 means for a request: a record whose user_id is not
// UTF-8, as raw bytes or as half a surrogate pair, is deleted and the
// request has no session, rather than being logged in as the user id
// with U+FFFD in its place.
func TestUserIDNotUTF8EndsSession(t *testing.T) {
	for name, userID := range map[string]string{"raw 0xff": "al\xffice", "escape": `al\ud800ice`} {
		t.Run(name, func(t *testing.T) {
			m, r, clk := newTestManager(t, Config{})
			cookie, id := login(t, m, "alice")
			now := clk.t.UnixMilli()
			r.Do(t, "SET", "session:"+id, fmt.Sprintf(`{"v":2,"user_id":"%s","c":%d,"e":%d}`, userID, now, now+3_600_000), "KEEPTTL")
			serve(t, m, cookie, func(ctx context.Context) {
				if u, ok := UserID(ctx); ok {
					t.Errorf("UserID = %q, true; want no session", u)
				}
			})
			if n, _ := r.Do(t, "EXISTS", "session:"+id).(int64); n != 0 {
				t.Error("record kept, want it deleted")
			}
		})
	}
}

func TestNormalize(t *testing.T) {
	if _, err := normalize(make(chan int)); err == nil {
		t.Error("normalize(chan) = nil error, want an error")
	}
	v, err := normalize(map[string]int{"a": 1})
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := as[map[string]int](v); !ok || m["a"] != 1 {
		t.Errorf("as[map[string]int](normalize(map)) = %v, %v", m, ok)
	}
	if _, ok := as[int](v); ok {
		t.Error("as[int] of a JSON object: ok = true, want false")
	}
	if _, ok := as[string](42); ok {
		t.Error("as[string](42): ok = true, want false")
	}
}

func FuzzDecode(f *testing.F) {
	b, _ := codec{}.Encode(time.Now(), map[string]any{
		metaKey: meta{UserID: "u", CreatedAt: time.Now()},
		"a":     1, "b": "x", "c": jsonValue(`{"k":[1,2]}`), "d": []byte("z"),
	})
	f.Add(b)
	f.Add([]byte(`{"v":1}`))
	f.Add([]byte(`{"v":1,"created_at":"2026-11-25T10:00:00Z","expires_at":"2026-11-25T11:00:00Z","values":{"a":{"string":"x"}}}`))
	f.Add([]byte(`{"v":1,"created_at":"2026-11-25T10:00:00\u005a","expires_at":"2026-11-25T11:00:00\u002B01:00"}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		deadline, values, err := codec{}.Decode(in)
		if err != nil {
			if !errors.Is(err, errBadRecord) {
				t.Errorf("Decode error %v does not wrap errBadRecord", err)
			}
			return
		}
		// Whatever decodes must encode again, in either format, and
		// decode.
		for _, c := range []codec{{}, {keepUserAgent: true}, {previous: true}} {
			out, err := c.Encode(deadline, values)
			if err != nil {
				t.Fatalf("Encode(Decode(%q)) with %+v: %v", in, c, err)
			}
			if _, _, err := c.Decode(out); err != nil {
				t.Fatalf("Decode(Encode(Decode(%q))) with %+v = %v", in, c, err)
			}
			if strings.Contains(string(out), "__sessionkit") {
				t.Errorf("encoded record %s leaks the meta key", out)
			}
		}
	})
}

// FuzzValue checks Put's rule on values of the tagged types: normalize
// either refuses a value with ErrInvalidValue, or the record gives it back
// equal (a float bit for bit, a time as the same instant).
func FuzzValue(f *testing.F) {
	f.Add("a\xff", 2.5, int64(0), int64(0), 0)
	f.Add(`\ufffd`, math.NaN(), int64(253402300800), int64(1), -17762)
	f.Add("\u2028", math.Copysign(0, -1), int64(-62135596801), int64(999999999), 25*3600)
	f.Fuzz(func(t *testing.T, s string, fl float64, sec, nsec int64, offset int) {
		at := time.Unix(sec, nsec).In(time.FixedZone("", offset))
		for _, in := range []any{s, fl, at, []string{s}} {
			v, err := normalize(in)
			if err != nil {
				if !errors.Is(err, ErrInvalidValue) {
					t.Fatalf("normalize(%#v) = %v, want nil or ErrInvalidValue", in, err)
				}
				continue
			}
			b, err := codec{}.Encode(time.Now(), map[string]any{"k": v, metaKey: meta{CreatedAt: time.Now()}})
			if err != nil {
				t.Fatalf("Encode of accepted %#v: %v", in, err)
			}
			_, values, err := codec{}.Decode(b)
			if err != nil {
				t.Fatalf("Decode of accepted %#v: %v", in, err)
			}
			got := values["k"]
			switch in := in.(type) {
			case string:
				if got != in {
					t.Fatalf("round trip of %q = %#v", in, got)
				}
			case float64:
				if g, ok := got.(float64); !ok || math.Float64bits(g) != math.Float64bits(in) {
					t.Fatalf("round trip of %v = %#v", in, got)
				}
			case time.Time:
				if g, ok := got.(time.Time); !ok || !g.Equal(in) {
					t.Fatalf("round trip of %v = %#v", in, got)
				}
			case []string:
				if g, ok := as[[]string](got); !ok || len(g) != 1 || g[0] != in[0] {
					t.Fatalf("round trip of %q = %#v", in, got)
				}
			}
		}
	})
}

// TestV1TimesInMilliseconds reads a version 1 record with times in
// nanoseconds, as earlier releases wrote them: its times come out in whole
// milliseconds, as the README promises of Info and version 2 holds them,
// and an instance with PreviousFormat writes them so.
func TestV1TimesInMilliseconds(t *testing.T) {
	b := []byte(`{"v":1,"user_id":"alice","created_at":"2026-11-25T10:00:00.123456789Z","expires_at":"2026-11-26T10:00:00.987654321Z","last_seen":"2026-11-25T11:00:00.5555555Z"}`)
	deadline, md, _, err := decodeRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	for name, got := range map[string]time.Time{"deadline": deadline, "created": md.CreatedAt, "last seen": md.LastSeen} {
		if got.Nanosecond()%int(time.Millisecond) != 0 {
			t.Errorf("%s = %v, want whole milliseconds", name, got)
		}
	}
	out, err := codec{previous: true}.Encode(deadline, map[string]any{metaKey: meta{UserID: "alice", CreatedAt: md.CreatedAt, LastSeen: time.Date(2026, 11, 25, 12, 0, 0, 123456789, time.UTC)}})
	if err != nil {
		t.Fatal(err)
	}
	if want := `"last_seen":"2026-11-25T12:00:00.123Z"`; !bytes.Contains(out, []byte(want)) {
		t.Errorf("PreviousFormat record %s, want %s", out, want)
	}
}

// TestRecordReadAsOtherParsersRead checks that a record which encoding/json
// would read differently from other languages' JSON parsers (the README
// tells them to parse records) is unreadable rather than read as
// encoding/json reads it: a field name that matches a record field only
// case-insensitively would log the holder in as bob where an audit tool
// in Python or JavaScript sees alice, and a repeated "val" would merge
// values that they read as the last object only. A user id that Create
// refuses is unreadable too: read as a login, it failed List and RevokeAll
// on every request. Unknown fields are still ignored.
func TestRecordReadAsOtherParsersRead(t *testing.T) {
	const base = `"v":2,"user_id":"alice","c":1795600800000,"e":1795687200000`
	for _, in := range []string{
		`{` + base + `,"USER_ID":"bob"}`,
		`{` + base + `,"uſer_id":"bob"}`,
		`{` + base + `,"user_id":"bob"}`,
		`{` + base + `,"val":{"admin":{"bool":true}},"val":{"theme":"dark"}}`,
		`{` + base + `,"\u0055SER_ID":"bob"}`, // escaped, still a fold of user_id
		`{` + base + ` , "val" : {"a":"}"} , "ip":"x", "user_id" : "bob" }`,
		`{"v":2,"user_id":"` + strings.Repeat("b", MaxUserIDLength+1) + `","c":1795600800000,"e":1795687200000}`,
		"{\"v\":2,\"user_id\":\"b\xffb\",\"c\":1795600800000,\"e\":1795687200000}",
	} {
		if _, md, values, err := decodeRecord([]byte(in)); !errors.Is(err, errBadRecord) {
			t.Errorf("decodeRecord(%.120q) = user %q, values %v, %v; want errBadRecord", in, md.UserID, values, err)
		}
	}
	for _, in := range []string{
		`{` + base + `,"future":1,"future":2}`,
		`{` + base + `, "val":{"theme":"a","theme":"dark"}}`, // slow path (a space); the last wins, as everywhere
		`{"v":2,"c":1795600800000,"e":1795687200000}`,        // anonymous
		// Braces, quotes and record field names inside values are not
		// top-level fields.
		`{` + base + `,"val":{"USER_ID":"x","theme":"dark","j":{"json":{"user_id":[1,{"v":"}\""}]}}},"ip":"1.2.3.4"}`,
	} {
		_, md, values, err := decodeRecord([]byte(in))
		if err != nil {
			t.Errorf("decodeRecord(%q) = %v, want it read", in, err)
		}
		if strings.Contains(in, "user_id") && md.UserID != "alice" {
			t.Errorf("decodeRecord(%q) user = %q, want alice", in, md.UserID)
		}
		if v, ok := values["theme"]; strings.Contains(in, "theme") && (!ok || v != "dark") {
			t.Errorf("decodeRecord(%q) theme = %v, want dark", in, v)
		}
	}
}

// TestRecordKeyFromCookie derives the Redis key of a login's record from
// its cookie as the README's "Writing a record from another language"
// tells another language to, without this package's code: the cookie is
// base64url of date|value|mac, the MAC HMAC-SHA256 of "sessionkit|" date
// "|" value, value base64url of "<token>:<deadline in ms>", and the id
// the first 16 bytes of the SHA-256 of the token (behind its hash tag, if
// any), base64url without padding.
func TestRecordKeyFromCookie(t *testing.T) {
	for _, cfg := range []Config{{}, {TagKey: testTagKey}} {
		m, r, _ := newTestManager(t, cfg)
		var info Info
		cookie := serve(t, m, "", func(ctx context.Context) {
			var err error
			if info, err = Create(ctx, "alice"); err != nil {
				t.Fatal(err)
			}
		})
		raw, err := base64.URLEncoding.DecodeString(cookie)
		if err != nil {
			t.Fatal(err)
		}
		date, rest, _ := bytes.Cut(raw, []byte("|"))
		value, gotMAC, _ := bytes.Cut(rest, []byte("|"))
		mac := hmac.New(sha256.New, testKey(7))
		fmt.Fprintf(mac, "sessionkit|%s|%s", date, value)
		if !hmac.Equal(gotMAC, mac.Sum(nil)) {
			t.Fatalf("MAC of %q does not verify", raw)
		}
		payload, err := base64.URLEncoding.DecodeString(string(value))
		if err != nil {
			t.Fatal(err)
		}
		token, deadline, _ := strings.Cut(string(payload), ":")
		tag := ""
		if strings.HasPrefix(token, "{") {
			end := strings.IndexByte(token, '}')
			tag, token = token[:end+1], token[end+1:]
		}
		sum := sha256.Sum256([]byte(token))
		key := "session:" + tag + base64.RawURLEncoding.EncodeToString(sum[:16])
		if len(token) != 42 || key != "session:"+info.ID || deadline != fmt.Sprint(info.ExpiresAt.UnixMilli()) {
			t.Errorf("with %+v: token %q, key %q, deadline %s; want 42 characters, session:%s, %d", cfg, token, key, deadline, info.ID, info.ExpiresAt.UnixMilli())
		}
		if n, _ := r.Do(t, "EXISTS", key).(int64); n != 1 {
			t.Errorf("with %+v: no record under %q", cfg, key)
		}
	}
}
