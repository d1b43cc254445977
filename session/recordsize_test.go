package session

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/internal/syncbuf"
)

// TestPutTooLarge checks that Put refuses, with ErrInvalidValue, a value
// that would take the record over Config.MaxRecordBytes (the default, 64
// KiB), naming the sizes and the field but not the value, and that
// nothing is written: a logged-in session's record stays as it was, and an
// anonymous request gets no session and no cookie.
func TestPutTooLarge(t *testing.T) {
	m, r, _ := newTestManager(t, Config{})
	if m.cfg.MaxRecordBytes != DefaultMaxRecordBytes {
		t.Fatalf("MaxRecordBytes = %d, want DefaultMaxRecordBytes %d", m.cfg.MaxRecordBytes, DefaultMaxRecordBytes)
	}
	cookie, id := login(t, m, "alice")
	serve(t, m, cookie, func(ctx context.Context) {
		if err := Put(ctx, "keep", "kept"); err != nil {
			t.Fatal(err)
		}
	})
	huge := strings.Repeat("secret", DefaultMaxRecordBytes/6+1) // the bytes alone are over the limit
	tests := []struct {
		name string
		v    any
	}{
		{"string", huge},
		{"bytes", []byte(huge[:DefaultMaxRecordBytes*3/4+1])}, // over the limit once in base64
		{"JSON", map[string]string{"a": huge}},
		{"string escaped past the limit", strings.Repeat("<", DefaultMaxRecordBytes/6+1)}, // \u003c each
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := r.Do(t, "GET", "session:"+id).([]byte)
			h, err := exchange(t, m, cookie, func(ctx context.Context) {
				err := Put(ctx, "big", tc.v)
				if !errors.Is(err, ErrInvalidValue) {
					t.Fatalf("Put(%s) = %v, want ErrInvalidValue", tc.name, err)
				}
				if msg := err.Error(); !strings.Contains(msg, "Config.MaxRecordBytes (65536)") || strings.Contains(msg, "secret") || strings.Contains(msg, "<<") {
					t.Errorf("Put's error = %.200q, want the sizes and Config.MaxRecordBytes, not the value", msg)
				}
				if _, ok := Get[any](ctx, "big"); ok {
					t.Error("Get(big) after a refused Put found it")
				}
			})
			if err != nil {
				t.Errorf("Commit after a refused Put = %v, want nil", err)
			}
			if c, ok := sessionCookie(m, h); ok {
				t.Errorf("a refused Put set cookie %v", c)
			}
			if after, _ := r.Do(t, "GET", "session:"+id).([]byte); len(before) == 0 || !bytes.Equal(after, before) {
				t.Errorf("record after a refused Put =\n%.300s\nwant unchanged\n%s", after, before)
			}
		})
	}

	t.Run("anonymous", func(t *testing.T) {
		keys := r.Do(t, "DBSIZE")
		h, err := exchange(t, m, "", func(ctx context.Context) {
			if err := Put(ctx, "big", huge); !errors.Is(err, ErrInvalidValue) {
				t.Errorf("Put = %v, want ErrInvalidValue", err)
			}
		})
		if err != nil {
			t.Errorf("Commit = %v, want nil", err)
		}
		if c, ok := sessionCookie(m, h); ok {
			t.Errorf("a refused Put started a session: cookie %v", c)
		}
		if after := r.Do(t, "DBSIZE"); after != keys {
			t.Errorf("keys in Redis after a refused Put = %v, want %v", after, keys)
		}
	})

	t.Run("no limit", func(t *testing.T) {
		m, r, _ := newTestManager(t, Config{MaxRecordBytes: -1})
		cookie, id := login(t, m, "alice")
		serve(t, m, cookie, func(ctx context.Context) {
			if err := Put(ctx, "big", huge); err != nil {
				t.Errorf("Put with MaxRecordBytes -1 = %v, want nil", err)
			}
		})
		if rec, _ := r.Do(t, "GET", "session:"+id).([]byte); len(rec) <= DefaultMaxRecordBytes {
			t.Errorf("record with MaxRecordBytes -1 is %d bytes, want the whole value", len(rec))
		}
	})
}

// TestPutsPassLimit checks that of many values put, in one request or in
// one request each, Put refuses the one whose addition would take the
// record over Config.MaxRecordBytes, and accepts every one before it: the
// record as stored is never over the limit, and is within one value of it
// and the room Put keeps for a later write's fields.
func TestPutsPassLimit(t *testing.T) {
	const limit = 8 << 10
	value := strings.Repeat("v", 1000)
	// The room Put keeps for what a later write of the request may add to
	// a record that lacks it (see writtenSize): the last-seen time and the
	// first id a renewal adds.
	reserve := len(`,"s":1795600800000`) + len(`,"o":""`) + 22
	t.Run("one request", func(t *testing.T) {
		m, r, _ := newTestManager(t, Config{MaxRecordBytes: limit})
		cookie, id := login(t, m, "alice")
		loaded, _ := r.Do(t, "GET", "session:"+id).([]byte)
		accepted := 0
		serve(t, m, cookie, func(ctx context.Context) {
			for i := 0; ; i++ {
				err := Put(ctx, fmt.Sprintf("k%02d", i), value)
				switch {
				case errors.Is(err, ErrInvalidValue):
					return
				case err != nil:
					t.Fatalf("Put #%d = %v", i, err)
				case i > limit/len(value):
					t.Fatalf("Put accepted %d values of %d bytes under a %d-byte limit", i+1, len(value), limit)
				}
				accepted++
			}
		})
		rec, _ := r.Do(t, "GET", "session:"+id).([]byte)
		entry := len(`,"k00":"`) + len(value) + len(`"`)
		if len(rec) > limit || len(rec)+entry+reserve <= limit {
			t.Errorf("record after %d values put over a %d-byte record is %d bytes, want at most %d and less than one more value (%d bytes) and the reserve (%d) below it", accepted, len(loaded), len(rec), limit, entry, reserve)
		}
	})
	t.Run("one request each", func(t *testing.T) {
		m, r, _ := newTestManager(t, Config{MaxRecordBytes: limit})
		cookie, id := login(t, m, "alice")
		for i := 0; ; i++ {
			before, _ := r.Do(t, "GET", "session:"+id).([]byte)
			var err error
			serve(t, m, cookie, func(ctx context.Context) { err = Put(ctx, fmt.Sprintf("k%02d", i), value) })
			after, _ := r.Do(t, "GET", "session:"+id).([]byte)
			grown := len(before) + len(`,"k00":"`) + len(value) + len(`"`)
			switch {
			case i > limit/len(value):
				t.Fatalf("Put accepted %d values of %d bytes under a %d-byte limit", i, len(value), limit)
			case errors.Is(err, ErrInvalidValue):
				if grown+reserve <= limit || !bytes.Equal(after, before) {
					t.Errorf("Put #%d refused over a %d-byte record (%d bytes with it, %d with the reserve) and the record became %d bytes; want it accepted under the limit %d, or refused and the record unchanged", i, len(before), grown, grown+reserve, len(after), limit)
				}
				return
			case err != nil:
				t.Fatalf("Put #%d = %v", i, err)
			case len(after) > limit:
				t.Fatalf("Put #%d accepted: the record is %d bytes, over the limit %d", i, len(after), limit)
			}
		}
	})
	t.Run("replace and remove", func(t *testing.T) {
		m, _, _ := newTestManager(t, Config{MaxRecordBytes: limit})
		cookie, _ := login(t, m, "alice")
		big := strings.Repeat("b", limit*3/4)
		serve(t, m, cookie, func(ctx context.Context) {
			if err := Put(ctx, "a", big); err != nil {
				t.Fatalf("Put(a) = %v", err)
			}
		})
		serve(t, m, cookie, func(ctx context.Context) {
			// Replacing a value counts it once, not twice.
			if err := Put(ctx, "a", big); err != nil {
				t.Errorf("Put(a) again, the same size = %v, want nil", err)
			}
			if err := Put(ctx, "b", big); !errors.Is(err, ErrInvalidValue) {
				t.Errorf("Put(b) beside a = %v, want ErrInvalidValue", err)
			}
			// What a request removes makes room.
			if _, ok := Pop[string](ctx, "a"); !ok {
				t.Error("Pop(a) found nothing")
			}
			if err := Put(ctx, "b", big); err != nil {
				t.Errorf("Put(b) after Pop(a) = %v, want nil", err)
			}
			if err := Remove(ctx, "b"); err != nil {
				t.Fatal(err)
			}
			if err := Put(ctx, "c", big); err != nil {
				t.Errorf("Put(c) after Remove(b) = %v, want nil", err)
			}
		})
	})
}

// TestMergePassesLimit checks the commit's own check: two requests of one
// session, each putting a value that fits the record it loaded, together
// pass Config.MaxRecordBytes. The second commit writes nothing and fails
// with ErrInvalidValue, not ErrStoreUnavailable, and the stored record is
// the first request's; the same for a renewal after such a Put.
func TestMergePassesLimit(t *testing.T) {
	const limit = 8 << 10
	value := strings.Repeat("v", limit*2/3)
	for _, renew := range []bool{false, true} {
		t.Run(fmt.Sprintf("renew=%v", renew), func(t *testing.T) {
			m, r, _ := newTestManager(t, Config{MaxRecordBytes: limit})
			cookie, id := login(t, m, "alice")
			first, second := load(m, cookie), load(m, cookie)
			if err := Put(first, "a", value); err != nil {
				t.Fatalf("first Put = %v", err)
			}
			if err := Put(second, "b", value); err != nil {
				t.Fatalf("second Put = %v", err)
			}
			if err := m.Commit(first, http.Header{}); err != nil {
				t.Fatalf("first Commit = %v", err)
			}
			stored, _ := r.Do(t, "GET", "session:"+id).([]byte)
			if renew {
				if err := Renew(second); !errors.Is(err, ErrInvalidValue) || errors.Is(err, ErrStoreUnavailable) {
					t.Errorf("Renew after a Put that passes the limit with another request's = %v, want ErrInvalidValue", err)
				}
			}
			h := http.Header{}
			err := m.Commit(second, h)
			if !errors.Is(err, ErrInvalidValue) || errors.Is(err, ErrStoreUnavailable) || errors.Is(err, ErrContention) {
				t.Errorf("second Commit = %v, want ErrInvalidValue alone", err)
			}
			if c, ok := sessionCookie(m, h); ok {
				t.Errorf("the failed commit set cookie %v", c)
			}
			if after, _ := r.Do(t, "GET", "session:"+id).([]byte); !bytes.Equal(after, stored) {
				t.Errorf("record after the refused commit is %d bytes, want the first request's %d, unchanged", len(after), len(stored))
			}
			serve(t, m, cookie, func(ctx context.Context) {
				if u, _ := UserID(ctx); u != "alice" {
					t.Errorf("UserID = %q, want alice", u)
				}
				if _, ok := Get[string](ctx, "b"); ok {
					t.Error("the refused value b was saved")
				}
				if v, _ := Get[string](ctx, "a"); v != value {
					t.Error("the first request's value a is lost")
				}
			})
		})
	}
}

// TestLoginOverLimit logs in from an anonymous session whose values,
// beside the login's own fields (a user id of MaxUserIDLength bytes),
// would take the new record over Config.MaxRecordBytes: the login
// succeeds, carries over none of them, and says so in a warning, and its
// session takes values again: a record written over the limit would have
// every Put after it refused. Values that fit are carried over;
// a limit that even a record without values passes fails the login with
// ErrInvalidValue, writing nothing.
func TestLoginOverLimit(t *testing.T) {
	const limit = 2000
	m, r, _ := newTestManager(t, Config{MaxRecordBytes: limit})
	var logs bytes.Buffer
	m.log = slog.New(slog.NewTextHandler(&logs, nil))
	record := func(cookie string) []byte {
		rec, _ := r.Do(t, "GET", "session:"+idOf(tokenOf(t, m, cookie))).([]byte)
		return rec
	}
	full := serve(t, m, "", func(ctx context.Context) {
		for i := 0; Put(ctx, fmt.Sprintf("k%02d", i), strings.Repeat("y", 50)) == nil; i++ {
		}
	})
	if n := len(record(full)); n < limit-100-renewRoom {
		t.Fatalf("the anonymous record is %d bytes, want within %d of the limit %d", n, 100+renewRoom, limit)
	}
	user := strings.Repeat("u", MaxUserIDLength)
	var loggedIn string
	h, err := exchange(t, m, full, func(ctx context.Context) {
		if _, err := Create(ctx, user); err != nil {
			t.Fatalf("Create from a full anonymous session = %v, want nil", err)
		}
		if _, ok := Get[string](ctx, "k00"); ok {
			t.Error("Get(k00) after the login: found, want no value carried over")
		}
		loggedIn, _ = Token(ctx)
	})
	if err != nil {
		t.Fatalf("Commit = %v", err)
	}
	if _, ok := sessionCookie(m, h); !ok {
		t.Fatal("the login set no cookie")
	}
	if rec := record(loggedIn); len(rec) > limit || bytes.Contains(rec, []byte(`"k00"`)) {
		t.Errorf("record after the login = %d bytes %.80s..., want at most %d, without the anonymous values", len(rec), rec, limit)
	}
	if got := logs.String(); !strings.Contains(got, "level=WARN") || !strings.Contains(got, "Config.MaxRecordBytes") || !strings.Contains(got, fmt.Sprintf("limit=%d", limit)) {
		t.Errorf("log = %q, want a warning naming Config.MaxRecordBytes and the limit", got)
	}
	serve(t, m, loggedIn, func(ctx context.Context) {
		if err := Put(ctx, "theme", "dark"); err != nil {
			t.Errorf("Put after the login = %v, want nil", err)
		}
	})

	logs.Reset()
	small := serve(t, m, "", func(ctx context.Context) { Put(ctx, "cart", "book") })
	next := serve(t, m, small, func(ctx context.Context) {
		if _, err := Create(ctx, user); err != nil {
			t.Fatal(err)
		}
	})
	serve(t, m, next, func(ctx context.Context) {
		if v, _ := Get[string](ctx, "cart"); v != "book" {
			t.Errorf("Get(cart) after a login from a small anonymous session = %q, want book", v)
		}
	})
	if strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("log after a login that carried its values over = %q, want no warning", logs.String())
	}

	tiny, r2, _ := newTestManager(t, Config{MaxRecordBytes: 50})
	exchange(t, tiny, "", func(ctx context.Context) {
		if _, err := Create(ctx, "alice"); !errors.Is(err, ErrInvalidValue) {
			t.Errorf("Create under a limit below a record without values = %v, want ErrInvalidValue", err)
		}
	})
	if n := r2.Do(t, "DBSIZE"); n != int64(0) {
		t.Errorf("keys after a refused login = %v, want 0", n)
	}
}

// TestLoginOverLimitEndsNothing logs in under a Config.MaxRecordBytes that
// a record without values passes, on an instance beside one without that
// limit: from a browser signed in as the same or another user, and with
// the token a Renew moved that session away from. Each login fails with
// ErrInvalidValue and changes nothing, as Create promises: the session
// goes on, and no key in Redis changes: the other user's session, and
// the one renewed away, are not ended before the size check.
func TestLoginOverLimitEndsNothing(t *testing.T) {
	m, r, clk := newTestManager(t, Config{})
	tiny, err := New(openTestStore(t, r), Config{Keys: m.cfg.Keys, InsecureCookie: true, Logger: m.log, MaxRecordBytes: 50})
	if err != nil {
		t.Fatal(err)
	}
	tiny.now = clk.now
	old, _ := login(t, m, "alice")
	renewed := serve(t, m, old, func(ctx context.Context) {
		if err := Renew(ctx); err != nil {
			t.Fatal(err)
		}
	})
	dump := func() map[string]string {
		keys, _ := redis.Strings(r.Do(t, "KEYS", "*"), nil)
		values := make(map[string]string, len(keys))
		for _, k := range keys {
			v, _ := redis.String(r.Do(t, "DUMP", k), nil)
			values[k] = v
		}
		return values
	}
	before := dump()
	for _, tc := range []struct{ name, cookie, user string }{
		{"signed in, the same user", renewed, "alice"},
		{"signed in, another user", renewed, "bob"},
		{"renewed away, the same user", old, "alice"},
		{"renewed away, another user", old, "bob"},
	} {
		exchange(t, tiny, tc.cookie, func(ctx context.Context) {
			if _, err := Create(ctx, tc.user); !errors.Is(err, ErrInvalidValue) {
				t.Errorf("%s: Create under a limit below a record without values = %v, want ErrInvalidValue", tc.name, err)
			}
		})
		if after := dump(); !maps.Equal(after, before) {
			t.Errorf("%s: the refused login changed Redis (%d keys before, %d after), want nothing changed", tc.name, len(before), len(after))
		}
		serve(t, m, renewed, func(ctx context.Context) {
			if u, _ := UserID(ctx); u != "alice" {
				t.Errorf("%s: the renewed session after the refused login: user %q, want alice", tc.name, u)
			}
		})
	}
}

// TestOversizedRecordLoads checks that a record over Config.MaxRecordBytes,
// written under a higher limit, still loads with its values, and that the
// writes that put nothing still work: a last-seen refresh, a renewal, a
// removal, after which values fit again; a value put is refused.
func TestOversizedRecordLoads(t *testing.T) {
	const limit = 8 << 10
	unlimited, r, clk := newTestManager(t, Config{MaxRecordBytes: -1})
	cookie, id := login(t, unlimited, "alice")
	big := strings.Repeat("b", 2*limit)
	serve(t, unlimited, cookie, func(ctx context.Context) {
		if err := Put(ctx, "big", big); err != nil {
			t.Fatal(err)
		}
	})
	m, err := New(unlimited.store, Config{Keys: unlimited.cfg.Keys, InsecureCookie: true, MaxRecordBytes: limit, Logger: unlimited.log})
	if err != nil {
		t.Fatal(err)
	}
	m.now = clk.now
	clk.t = clk.t.Add(2 * DefaultLastSeenInterval) // the next request refreshes the last-seen time
	serve(t, m, cookie, func(ctx context.Context) {
		if u, _ := UserID(ctx); u != "alice" {
			t.Errorf("UserID of a record over the limit = %q, want alice", u)
		}
		if v, _ := Get[string](ctx, "big"); v != big {
			t.Errorf("Get(big) = %d bytes, want %d", len(v), len(big))
		}
		if err := Put(ctx, "small", 1); !errors.Is(err, ErrInvalidValue) {
			t.Errorf("Put on a record over the limit = %v, want ErrInvalidValue", err)
		}
	})
	rec, _ := r.Do(t, "GET", "session:"+id).([]byte)
	if !bytes.Contains(rec, []byte(`"s":`)) {
		t.Errorf("last-seen time of a record over the limit not refreshed: %.100s", rec)
	}
	cookie = serve(t, m, cookie, func(ctx context.Context) {
		if err := Renew(ctx); err != nil {
			t.Errorf("Renew of a record over the limit = %v, want nil", err)
		}
	})
	serve(t, m, cookie, func(ctx context.Context) {
		if err := Remove(ctx, "big"); err != nil {
			t.Errorf("Remove = %v", err)
		}
		if err := Put(ctx, "small", 1); err != nil {
			t.Errorf("Put after the large value's removal = %v, want nil", err)
		}
	})
	serve(t, m, cookie, func(ctx context.Context) {
		if v, _ := Get[int](ctx, "small"); v != 1 {
			t.Errorf("Get(small) = %d, want 1", v)
		}
	})
}

// TestValueSize checks that the sizes Put estimates with are those of the
// encoding: valueSize(v) is len(encodeValue(v)) for every tagged type and
// JSON, in either record version.
func TestValueSize(t *testing.T) {
	values := []any{
		"", "plain", `quote " back \ slash`, "<tag>&amp;", "\b\f\n\r\t\x00\x1f\x7f", "é☃😀", "\u2028\u2029",
		true, 0, -123456789, int64(-1 << 63), 3.25, 1e300, []byte{}, []byte("bytes"), time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("", 3600)),
	}
	for _, v := range []any{map[string]any{"a": "<b>", "n": 1}, []string{"x"}, struct{ S string }{"é"}} {
		nv, err := normalize(v)
		if err != nil {
			t.Fatal(err)
		}
		values = append(values, nv)
	}
	// JSON as other programs write it, read from their records as it is.
	for _, j := range []string{`{"a": [1, 2], "b": "x y"}`, "[\n\t1,\r2\n]", `{"h":"<a href=\"x\">&</a>"}`, "\"\u2028\u2029\"", `"\u003c\\"`, `{"a":"x"}`} {
		values = append(values, jsonValue(j))
	}
	for _, previous := range []bool{false, true} {
		m := &Manager{cfg: Config{PreviousFormat: previous}}
		version := recordVersion
		if previous {
			version = recordV1
		}
		for _, v := range values {
			b, err := encodeValue(v, version)
			if err != nil {
				t.Fatal(err)
			}
			if got := m.valueSize(v); got != len(b) {
				t.Errorf("valueSize(%#v) in version %d = %d, want %d (%s)", v, version, got, len(b), b)
			}
			if want := marshalValue(t, v, version); string(b) != string(want) {
				t.Errorf("encodeValue(%#v) in version %d = %s, want %s as json.Marshal writes it", v, version, b, want)
			}
		}
	}
}

// FuzzJSONStringSize checks jsonStringSize against appendJSONString.
func FuzzJSONStringSize(f *testing.F) {
	for _, s := range []string{"", "a", `"\`, "<>&", "\x00\x7f", "é\u2028\u2029😀", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := jsonStringSize(s), len(appendJSONString(nil, s)); got != want {
			t.Errorf("jsonStringSize(%q) = %d, want %d", s, got, want)
		}
	})
}

// marshalValue is encodeValue by json.Marshal of a one-member map, the
// form records have had since version 1, which encodeValue writes without
// reflection.
func marshalValue(t *testing.T, v any, version int) []byte {
	t.Helper()
	var tag string
	val := v
	switch v := v.(type) {
	case string:
		if version != recordV1 {
			b, _ := json.Marshal(v)
			return b
		}
		tag = tagString
	case bool:
		tag = tagBool
	case int:
		tag = tagInt
	case int64:
		tag, val = tagInt64, strconv.FormatInt(v, 10)
	case float64:
		tag = tagFloat
	case []byte:
		tag = tagBytes
	case time.Time:
		tag, val = tagTime, v.Format(time.RFC3339Nano)
	case jsonValue:
		tag, val = tagJSON, json.RawMessage(v)
	default:
		t.Fatalf("no tag for %T", v)
	}
	b, err := json.Marshal(map[string]any{tag: val})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPutEstimatesNewRecord checks Put's estimate where no record is
// stored yet, an anonymous request's first value or a flash message after
// a logout: the record the commit inserts also holds the session's own
// fields (times, IP, device name; version 1 writes a time with as many
// digits of milliseconds as it has, and the commit's time comes after the
// Put's). Every value Put accepts must commit
// within Config.MaxRecordBytes, and the largest it accepts must come
// within a few bytes of it.
func TestPutEstimatesNewRecord(t *testing.T) {
	const limit = 1024
	const ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
	for _, tc := range []struct {
		name     string
		previous bool
		logout   bool
		namer    func(string) string
		slack    int // the most the largest accepted record may fall short of the limit
	}{
		// 16, and the room a later request's Renew takes, the last-seen
		// time and the first id (renewRoom): a record that fills the limit
		// without it outgrew it there (TestRenewOfFullAnonymousSession).
		{"anonymous", false, false, nil, 16 + renewRoom},
		{"after logout", false, true, nil, 16 + renewRoom},
		{"anonymous, previous format", true, false, nil, 16 + renewRoom},
		// Config.DeviceName runs once, at the commit: the estimate counts
		// its name at the longest, maxDevice bytes that the record
		// escapes (\u003c for <), which a name of the client's choosing
		// may be.
		{"anonymous, Config.DeviceName", false, false, func(string) string { return "Desktop" }, 16 + renewRoom + len(`\u003c`)*maxDevice},
		{"anonymous, Config.DeviceName escaped", false, false, func(ua string) string { return "R&D <" + ua + ">" }, 16 + renewRoom + len(`\u003c`)*maxDevice},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, r, clk := newTestManager(t, Config{MaxRecordBytes: limit, PreviousFormat: tc.previous, DeviceName: tc.namer})
			// Version 1 writes a whole second without its milliseconds:
			// the Put sees one, the commit, later, writes another.
			start := time.Now().Truncate(time.Second)
			largest := 0
			for n := limit - 400 - tc.slack; n <= limit; n++ {
				clk.t = start
				cookie := ""
				if tc.logout {
					cookie, _ = login(t, m, "alice")
				}
				req := httptest.NewRequest("GET", "/", nil)
				req.RemoteAddr = "203.0.113.70:50000"
				req.Header.Set("User-Agent", ua)
				if cookie != "" {
					req.AddCookie(&http.Cookie{Name: m.cfg.CookieName, Value: cookie})
				}
				ctx := m.Load(req)
				if tc.logout {
					if err := Destroy(ctx); err != nil {
						t.Fatalf("Destroy = %v", err)
					}
				}
				err := Put(ctx, "flash", strings.Repeat("a", n))
				if err != nil && !errors.Is(err, ErrInvalidValue) {
					t.Fatalf("Put of %d bytes = %v", n, err)
				}
				clk.t = clk.t.Add(123 * time.Millisecond) // the handler's work
				h := http.Header{}
				if cerr := m.Commit(ctx, h); cerr != nil {
					t.Fatalf("Put of %d bytes = %v, then Commit = %v; want no error after an accepted Put", n, err, cerr)
				}
				if err != nil {
					break
				}
				largest = n
				rec := storedRecord(t, r, m, h)
				if len(rec) == 0 || len(rec) > limit {
					t.Fatalf("Put of %d bytes accepted, record of %d bytes stored, want 1 to %d", n, len(rec), limit)
				}
				if n == limit-400 && tc.namer == nil && !bytes.Contains(rec, []byte("Windows")) {
					t.Fatalf("record %s names no device: the test's request is not a browser's", rec)
				}
			}
			probe := httptest.NewRequest("GET", "/", nil)
			probe.RemoteAddr = "203.0.113.70:50000"
			probe.Header.Set("User-Agent", ua)
			ctx := m.Load(probe)
			if err := Put(ctx, "flash", strings.Repeat("a", largest)); err != nil {
				t.Fatal(err)
			}
			h := http.Header{}
			if err := m.Commit(ctx, h); err != nil {
				t.Fatal(err)
			}
			rec := storedRecord(t, r, m, h)
			if slack := limit - len(rec); slack > tc.slack {
				t.Errorf("largest value Put accepts is %d bytes, a record of %d: %d bytes under the %d limit, want at most %d", largest, len(rec), slack, limit, tc.slack)
			}
		})
	}
}

// TestPutEstimatesWrittenRecord checks Put's estimate where a record is
// stored: the commit, or a Renew before it, writes it with fields the
// stored one may lack (the object of values, for the first value; the
// last-seen time, which a record of version 2 leaves out while it equals
// the creation time, and which a handler that takes its time writes in a
// later millisecond than the Put's; the milliseconds of a version 1 time;
// the id the session was created under, which its first renewal adds) or
// in another version than it was written in. Every value Put accepts must
// commit within Config.MaxRecordBytes, with a Renew after it too, and the
// largest it accepts, renewed, must come within a few bytes of it.
func TestPutEstimatesWrittenRecord(t *testing.T) {
	const limit = 1024
	const (
		later = 100 * time.Millisecond // when the Put's request comes after the login, on the whole second
		work  = 23 * time.Millisecond  // how long its handler takes after the Put
	)
	for _, tc := range []struct {
		name     string
		previous bool                            // the Manager that puts writes version 1
		written  bool                            // the session was logged in by a Manager that writes version 2
		ahead    time.Duration                   // how far the clock of the instance that logged in runs ahead
		at       time.Duration                   // when the Put's request comes, if not later
		prior    func(ctx context.Context) error // a request of its own after the login
		before   func(ctx context.Context) error // in the request, before the Put
		inLogin  bool                            // Create and Put in the same request
		legacy   bool                            // the cookie is signed as an earlier release signed it, with a deadline in whole seconds
	}{
		{name: "logged in"},
		{name: "logged in, previous format, a token of an earlier release", previous: true, legacy: true},
		{name: "logged in, put in the login's millisecond", at: -1},
		{name: "logged in on an instance whose clock runs ahead", ahead: 110 * time.Millisecond},
		{name: "logged in, previous format", previous: true},
		{name: "logged in by version 2, put with previous format", previous: true, written: true},
		{name: "login and Put in one request", inLogin: true},
		{name: "logged in, previous format, login and Put in one request", previous: true, inLogin: true},
		{name: "renewed and Put in one request", before: Renew},
		{name: "two values in one request", before: func(ctx context.Context) error { return Put(ctx, "keep", "x") }},
		{name: "with a value and a last-seen time", prior: func(ctx context.Context) error { return Put(ctx, "keep", "x") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, r, clk := newTestManager(t, Config{MaxRecordBytes: limit, PreviousFormat: tc.previous})
			logins := m
			if tc.written || tc.ahead != 0 {
				var err error
				logins, err = New(m.store, Config{Keys: m.cfg.Keys, InsecureCookie: true, MaxRecordBytes: limit, Logger: m.log})
				if err != nil {
					t.Fatal(err)
				}
				logins.now = func() time.Time { return clk.t.Add(tc.ahead) }
			}
			at := later
			switch tc.at {
			case -1:
				at = 0
			case 0:
			default:
				at = tc.at
			}
			start := time.Now().Truncate(time.Second) // version 1 writes a whole second without its milliseconds
			// put runs a request that puts n bytes (and renews the
			// session after, with renew), and returns the record stored.
			put := func(n int, renew bool) (stored []byte, err error) {
				clk.t = start
				cookie, id := "", ""
				if !tc.inLogin {
					if tc.legacy {
						clk.t = start.Add(7 * time.Millisecond) // a deadline with milliseconds, which the token leaves out
					}
					cookie, id = login(t, logins, "alice")
					if tc.legacy {
						token, deadline, err := m.signer.verify(cookie)
						if err != nil {
							t.Fatal(err)
						}
						cookie = signPayload(t, m, token+"."+strconv.FormatInt(deadline.Unix(), 10))
					}
					if tc.prior != nil {
						clk.t = start.Add(later / 2)
						serve(t, m, cookie, func(ctx context.Context) {
							if err := tc.prior(ctx); err != nil {
								t.Fatalf("in the request before: %v", err)
							}
						})
					}
					clk.t = start.Add(at)
				}
				h, cerr := exchange(t, m, cookie, func(ctx context.Context) {
					if tc.inLogin {
						if _, err := Create(ctx, "alice"); err != nil {
							t.Fatalf("Create = %v", err)
						}
					}
					if tc.before != nil {
						if err := tc.before(ctx); err != nil {
							t.Fatalf("before the Put: %v", err)
						}
					}
					err = Put(ctx, "v", strings.Repeat("a", n))
					clk.t = clk.t.Add(work)
					if err == nil && renew {
						if rerr := Renew(ctx); rerr != nil {
							t.Fatalf("Put of %d bytes accepted, then Renew = %v; want nil", n, rerr)
						}
					}
				})
				if err != nil && !errors.Is(err, ErrInvalidValue) {
					t.Fatalf("Put of %d bytes = %v", n, err)
				}
				if cerr != nil {
					t.Fatalf("Put of %d bytes = %v, then Commit = %v; want no error after an accepted Put", n, err, cerr)
				}
				if err != nil {
					return nil, err
				}
				if _, ok := sessionCookie(m, h); !ok {
					stored, _ = r.Do(t, "GET", "session:"+id).([]byte)
				} else {
					stored = storedRecord(t, r, m, h)
				}
				if len(stored) == 0 || len(stored) > limit {
					t.Fatalf("Put of %d bytes accepted, record of %d bytes stored, want 1 to %d: %.200s", n, len(stored), limit, stored)
				}
				return stored, nil
			}
			largest := 0
			for n := limit - 400; n <= limit; n++ {
				if _, err := put(n, false); err != nil {
					break
				}
				largest = n
			}
			if largest == 0 {
				t.Fatalf("Put refused every value from %d bytes", limit-400)
			}
			rec, err := put(largest, true)
			if err != nil {
				t.Fatalf("Put of %d bytes, then a renewal: %v", largest, err)
			}
			if !bytes.Contains(rec, []byte(`"o":`)) {
				t.Fatalf("the renewed record has no first id: %.200s", rec)
			}
			if slack := limit - len(rec); slack > 16 {
				t.Errorf("largest value Put accepts is %d bytes, a renewed record of %d: %d bytes under the %d limit, want at most 16", largest, len(rec), slack, limit)
			}
		})
	}
}

// TestPutBeforeLogin checks values put before Create in the login's
// request: Put sizes them against the anonymous session, whose record the
// login's replaces, with the user id besides. Create never fails for them,
// nor does a Renew after it, and the response is always saved: values that would take the new
// record over Config.MaxRecordBytes are dropped, with a warning, as those
// of the anonymous session it replaces are; the others are kept.
func TestPutBeforeLogin(t *testing.T) {
	const limit = 1024
	for _, tc := range []struct {
		name   string
		tagKey []byte // ids with the user's hash tag, longer
	}{{"untagged", nil}, {"TagKey", testKey(9)}} {
		tagKey := tc.tagKey
		t.Run(tc.name, func(t *testing.T) {
			var logs syncbuf.Buffer
			m, r, clk := newTestManager(t, Config{MaxRecordBytes: limit, TagKey: tagKey})
			m.log = slog.New(slog.NewTextHandler(&logs, nil))
			user := strings.Repeat("u", 200) // a user id of 200 bytes: the new record's largest field
			kept, dropped := 0, 0
			for n := limit - 500; n <= limit; n++ {
				logs.Reset()
				var putErr error
				h, err := exchange(t, m, "", func(ctx context.Context) {
					putErr = Put(ctx, "cart", strings.Repeat("c", n))
					if _, err := Create(ctx, user); err != nil {
						t.Fatalf("Create after a Put of %d bytes (%v) = %v, want nil", n, putErr, err)
					}
					// A Renew (which adds the first id, and the last-seen
					// time of a later millisecond) in the same request.
					clk.t = clk.t.Add(23 * time.Millisecond)
					if err := Renew(ctx); err != nil {
						t.Fatalf("Put of %d bytes (%v), Create, then Renew = %v; want nil", n, putErr, err)
					}
				})
				if err != nil {
					t.Fatalf("Put of %d bytes = %v, then Create and Commit = %v; want the response saved", n, putErr, err)
				}
				if putErr != nil {
					break
				}
				rec := storedRecord(t, r, m, h)
				switch {
				case len(rec) > limit:
					t.Fatalf("record of %d bytes stored, over the %d limit", len(rec), limit)
				case bytes.Contains(rec, []byte(`"cart":`)):
					kept++
				case strings.Contains(logs.String(), "the login dropped the values the request put before it"):
					dropped++
				default:
					t.Fatalf("Put of %d bytes accepted, the login's record lacks it, and no warning says so: %.200s\n%s", n, rec, logs.String())
				}
			}
			if kept == 0 || dropped == 0 {
				t.Errorf("%d values kept and %d dropped, want some of each: the sizes tried do not reach the limit", kept, dropped)
			}
		})
	}
}

// TestPutEstimatesForeignJSON checks Put's estimate on a record that
// another program wrote, whose JSON values are not as encoding/json
// writes them (spaces between tokens, a raw <): the record written back
// holds them compacted and escaped, and a value removed or replaced is
// taken out of the estimate at that size, not at the size it was read.
func TestPutEstimatesForeignJSON(t *testing.T) {
	const limit = 1024
	for _, tc := range []struct{ name, value string }{
		{"spaces", `{"a": [` + strings.Repeat("1, ", 100) + `1], "c": "x y"}`}, // more spaces than writtenSize's reserve
		{"a raw <", `{"a":"<<<<<<<<<<<<<<<<<<<<"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, r, clk := newTestManager(t, Config{MaxRecordBytes: limit})
			largest := 0
			var rec []byte
			for n := limit - 400; n <= limit; n++ {
				cookie, id := login(t, m, "alice")
				r.Do(t, "SET", "session:"+id, fmt.Sprintf(`{"v":2,"user_id":"alice","c":%d,"e":%d,"val":{"j":{"json":%s}}}`,
					clk.t.UnixMilli(), clk.t.Add(time.Hour).UnixMilli(), tc.value), "PX", 60000)
				var err error
				_, cerr := exchange(t, m, cookie, func(ctx context.Context) {
					if err := Put(ctx, "small", "x"); err != nil { // the estimate, with j as read
						t.Fatal(err)
					}
					if err := Remove(ctx, "j"); err != nil {
						t.Fatal(err)
					}
					err = Put(ctx, "v", strings.Repeat("a", n))
				})
				if cerr != nil {
					t.Fatalf("Put of %d bytes = %v, then Commit = %v; want no error after an accepted Put", n, err, cerr)
				}
				if err != nil {
					break
				}
				largest, rec = n, r.Do(t, "GET", "session:"+id).([]byte)
			}
			if largest == 0 {
				t.Fatal("Put refused every value")
			}
			// The renewal's reserve (see writtenSize) and a little more.
			if slack := limit - len(rec); slack > 16+len(`,"o":""`)+22+len(`,"s":`)+13 {
				t.Errorf("largest value Put accepts is %d bytes, a record of %d: %d bytes under the %d limit", largest, len(rec), slack, limit)
			}
		})
	}
}

// storedRecord returns the record stored for the session of the cookie
// in h.
func storedRecord(t *testing.T, r *redistest.Server, m *Manager, h http.Header) []byte {
	t.Helper()
	c, ok := sessionCookie(m, h)
	if !ok {
		t.Fatal("no session cookie")
	}
	token, _, err := m.signer.verify(c.Value)
	if err != nil {
		t.Fatalf("the cookie set does not verify: %v", err)
	}
	rec, _ := r.Do(t, "GET", "session:"+idOf(token)).([]byte)
	return rec
}

// renewRoom is the most a session's first Renew adds to its record: the
// last-seen time and the first id, `,"s":<13 digits>` and `,"o":"<id>"`
// (version 1: a last_seen of RFC 3339 in milliseconds, and o).
const renewRoom = 50

// TestRenewOfFullAnonymousSession fills an anonymous session's new record
// as far as Put allows, then renews it in a later request, which adds the
// last-seen time and the first id: the renewed record stays within
// Config.MaxRecordBytes: past the limit, every Put of a new value would
// be refused.
func TestRenewOfFullAnonymousSession(t *testing.T) {
	const limit = 1024
	m, r, clk := newTestManager(t, Config{MaxRecordBytes: limit})
	cookie := serve(t, m, "", func(ctx context.Context) {
		n := 0
		for Put(ctx, "big", strings.Repeat("y", n+1)) == nil {
			n++
		}
	})
	clk.t = clk.t.Add(time.Second) // a later request: its last-seen time differs
	var renewErr error
	h, err := exchange(t, m, cookie, func(ctx context.Context) { renewErr = Renew(ctx) })
	if err != nil || renewErr != nil {
		t.Fatalf("Renew = %v, Commit = %v; want no errors", renewErr, err)
	}
	if rec := storedRecord(t, r, m, h); len(rec) > limit {
		t.Errorf("the renewed record is %d bytes, over the %d limit", len(rec), limit)
	}
}
