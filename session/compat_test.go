package session

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"
)

// chromeWindows is a desktop browser's user agent.
const chromeWindows = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"

// serveAs is serve for a request with the user agent ua.
func serveAs(t *testing.T, m *Manager, cookie, ua string, fn func(ctx context.Context)) string {
	t.Helper()
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("User-Agent", ua)
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: m.cfg.CookieName, Value: cookie})
	}
	ctx := m.Load(req)
	fn(ctx)
	h := http.Header{}
	if err := m.Commit(ctx, h); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	for _, c := range (&http.Response{Header: h}).Cookies() {
		return c.Value
	}
	return ""
}

// infoOf returns the session of a request carrying cookie, failing the
// test when there is none.
func infoOf(t *testing.T, m *Manager, cookie string) Info {
	t.Helper()
	var info Info
	var ok bool
	serve(t, m, cookie, func(ctx context.Context) { info, ok = FromContext(ctx) })
	if !ok {
		t.Fatalf("no session for the cookie")
	}
	return info
}

// tokenOf returns the token inside a signed cookie value.
func tokenOf(t *testing.T, m *Manager, cookie string) string {
	t.Helper()
	token, _, err := m.signer.verify(cookie)
	if err != nil {
		t.Fatalf("verify(cookie): %v", err)
	}
	return token
}

// TestDeviceName checks Config.DeviceName: called once per session, when
// it is created (a login, an anonymous session's first write), its result
// cut to maxDevice bytes of valid UTF-8 and stored as the record's "d",
// which Info.Device then gives; a version 1 record is named from its user
// agent.
func TestDeviceName(t *testing.T) {
	var calls atomic.Int64
	m, r, clk := newTestManager(t, Config{DeviceName: func(ua string) string {
		calls.Add(1)
		return "named " + ua
	}})
	cookie := serveAs(t, m, "", "curl/8.5.0", func(ctx context.Context) {
		info, err := Create(ctx, "alice")
		if err != nil || info.Device != "named curl/8.5.0" || info.UserAgent != "" {
			t.Fatalf("Create = %+v, %v; want device %q and no user agent", info, err, "named curl/8.5.0")
		}
	})
	clk.t = clk.t.Add(2 * DefaultLastSeenInterval) // the next request refreshes the record
	serveAs(t, m, cookie, "other/1.0", func(ctx context.Context) {
		if err := Put(ctx, "n", 1); err != nil {
			t.Fatal(err)
		}
	})
	if info := infoOf(t, m, cookie); info.Device != "named curl/8.5.0" || info.UserAgent != "" {
		t.Errorf("Info = %+v, want device %q and no user agent", info, "named curl/8.5.0")
	}
	list, err := m.List(context.Background(), "alice")
	if err != nil || len(list) != 1 || list[0].Device != "named curl/8.5.0" || list[0].UserAgent != "" {
		t.Errorf("List = %+v, %v; want the one session, named, without a user agent", list, err)
	}
	id := infoOf(t, m, cookie).ID
	b, _ := r.Do(t, "GET", "session:"+id).([]byte)
	if !strings.Contains(string(b), `"d":"named curl/8.5.0"`) || strings.Contains(string(b), `"ua"`) || strings.Contains(string(b), "other/1.0") {
		t.Errorf("record = %s, want the device named at login and no user agent", b)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("DeviceName called %d times for one session, want 1", n)
	}

	calls.Store(0)
	serveAs(t, m, "", "anon/2.0", func(ctx context.Context) {
		if err := Put(ctx, "cart", "x"); err != nil {
			t.Fatal(err)
		}
		if info, _ := FromContext(ctx); info.Device != "" {
			t.Errorf("anonymous Info = %+v, want none", info)
		}
	})
	if n := calls.Load(); n != 1 {
		t.Errorf("DeviceName called %d times for an anonymous session's first write, want 1", n)
	}

	// A version 1 record has no name: the namer names its user agent.
	token := strings.Repeat("E", tokenLen)
	sum := sha256.Sum256([]byte(token))
	v1id := base64.RawURLEncoding.EncodeToString(sum[:])
	deadline := clk.t.Add(time.Hour).Truncate(time.Millisecond)
	at := clk.t.Format(time.RFC3339Nano)
	r.Do(t, "SET", "session:"+v1id, fmt.Sprintf(`{"v":1,"user_id":"bob","created_at":%q,"expires_at":%q,"last_seen":%q,"user_agent":"curl/7.0"}`,
		at, deadline.Format(time.RFC3339Nano), at), "PX", 3_600_000)
	v1cookie := signPayload(t, m, fmt.Sprintf("%s:%d", token, deadline.UnixMilli()))
	if info := infoOf(t, m, v1cookie); info.Device != "named curl/7.0" || info.UserAgent != "curl/7.0" {
		t.Errorf("Info of a version 1 record = %+v, want device %q and user agent %q", info, "named curl/7.0", "curl/7.0")
	}
}

// TestDeviceNameBounded checks that whatever DeviceName returns, the
// record keeps at most maxDevice bytes of valid UTF-8.
func TestDeviceNameBounded(t *testing.T) {
	long := "\xff" + strings.Repeat("é", 40) // invalid, and 81 bytes
	m, r, _ := newTestManager(t, Config{DeviceName: func(string) string { return long }})
	cookie, id := login(t, m, "alice")
	info := infoOf(t, m, cookie)
	if len(info.Device) > maxDevice || !utf8.ValidString(info.Device) || !strings.HasPrefix(info.Device, "éé") {
		t.Errorf("Info.Device = %q (%d bytes), want at most %d bytes of valid UTF-8 of what DeviceName returned", info.Device, len(info.Device), maxDevice)
	}
	b, _ := r.Do(t, "GET", "session:"+id).([]byte)
	var rec record
	if err := json.Unmarshal(b, &rec); err != nil || rec.D != info.Device {
		t.Errorf("record d = %q, %v; want %q", rec.D, err, info.Device)
	}
}

// TestKeepUserAgent checks that with KeepUserAgent the record keeps the
// user agent (cut at maxUserAgent bytes on a rune boundary, U+FFFD in
// place of bytes that are not UTF-8) as "ua", which Info.UserAgent gives
// in every request, the login's included, and in List; without it, the
// record has no "ua" and Info.UserAgent is empty.
func TestKeepUserAgent(t *testing.T) {
	long := chromeWindows + " " + strings.Repeat("x", 300)
	for _, tc := range []struct {
		name   string
		keep   bool
		ua     string
		wantUA string
	}{
		{"kept", true, chromeWindows, chromeWindows},
		{"kept and cut", true, long, long[:maxUserAgent]},
		{"cut on a rune boundary", true, chromeWindows + "  " + strings.Repeat("é", 100), chromeWindows + "  " + strings.Repeat("é", 71)},
		{"not UTF-8", true, chromeWindows + " caf\xe9", chromeWindows + " caf\uFFFD"},
		{"not UTF-8 and cut", true, chromeWindows + " " + strings.Repeat("\xe9", 300), chromeWindows + " \uFFFD"},
		{"longer once replaced", true, chromeWindows + " " + strings.Repeat("x\xff", 100), chromeWindows + " " + strings.Repeat("x\uFFFD", 36)},
		{"not kept", false, chromeWindows, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, r, _ := newTestManager(t, Config{KeepUserAgent: tc.keep})
			var id string
			cookie := serveAs(t, m, "", tc.ua, func(ctx context.Context) {
				info, err := Create(ctx, "alice")
				if err != nil || info.UserAgent != tc.wantUA {
					t.Fatalf("Create = %+v, %v; want user agent %q", info, err, tc.wantUA)
				}
				id = info.ID
			})
			if info := infoOf(t, m, cookie); info.UserAgent != tc.wantUA || info.Device != "Chrome 131 on Windows" {
				t.Errorf("Info = %+v, want user agent %q, device Chrome 131 on Windows", info, tc.wantUA)
			}
			list, err := m.List(context.Background(), "alice")
			if err != nil || len(list) != 1 || list[0].UserAgent != tc.wantUA {
				t.Errorf("List = %+v, %v; want one session with user agent %q", list, err, tc.wantUA)
			}
			b, _ := r.Do(t, "GET", "session:"+id).([]byte)
			var rec record
			if err := json.Unmarshal(b, &rec); err != nil || rec.UA != tc.wantUA || strings.Contains(string(b), "user_agent") {
				t.Errorf("record = %s, %v; want ua %q", b, err, tc.wantUA)
			}
			if _, ok := scanRecord(b); !ok {
				t.Errorf("scanRecord(%s) = false, want the fast path", b)
			}
		})
	}
}

// TestDeviceNameNotUTF8 checks that a session's client is named from the
// user agent its record keeps, with U+FFFD in place of bytes that are not
// UTF-8: under PreviousFormat a version 1 record keeps the user agent and
// no name, and is named from it at each read, so that naming the raw user
// agent at login gave Info.Device another name than every later read.
func TestDeviceNameNotUTF8(t *testing.T) {
	for _, cfg := range []Config{{PreviousFormat: true}, {KeepUserAgent: true}, {}} {
		m, _, _ := newTestManager(t, cfg)
		var atLogin Info
		cookie := serveAs(t, m, "", "caf\xe9/1.0", func(ctx context.Context) {
			var err error
			if atLogin, err = Create(ctx, "alice"); err != nil {
				t.Fatal(err)
			}
		})
		later := infoOf(t, m, cookie)
		if atLogin.Device != later.Device || atLogin.UserAgent != later.UserAgent || later.Device != "caf\uFFFD 1" {
			t.Errorf("PreviousFormat %v, KeepUserAgent %v: Info at login: device %q, user agent %q; read back: %q, %q; want the device %q",
				cfg.PreviousFormat, cfg.KeepUserAgent, atLogin.Device, atLogin.UserAgent, later.Device, later.UserAgent, "caf\uFFFD 1")
		}
	}
}

// TestPreviousFormat checks the rolling-upgrade switch: an instance with
// PreviousFormat writes (at login, anonymous start, a change, a renewal)
// 43-character tokens and records of version 1 that the previous
// release's decoder reads (previousDecode, a copy of it); an instance
// without it reads them, and its records of version 2 and 42-character
// tokens are read by the instance with it, which writes them back as
// version 1.
func TestPreviousFormat(t *testing.T) {
	prev, r, clk := newTestManager(t, Config{PreviousFormat: true})
	cur, err := New(prev.store, prev.cfg)
	if err != nil {
		t.Fatal(err)
	}
	cur.cfg.PreviousFormat = false
	cur.codec.previous = false
	cur.now = clk.now

	// checkPrevious checks that cookie's token and record are what the
	// previous release reads, and returns the record's app values.
	checkPrevious := func(t *testing.T, what, cookie string) map[string]any {
		t.Helper()
		token := tokenOf(t, prev, cookie)
		if !previousValidToken(token) {
			t.Fatalf("%s: token of %d characters, want %d", what, len(token), tokenLen)
		}
		sum := sha256.Sum256([]byte(token))
		b, _ := r.Do(t, "GET", "session:"+base64.RawURLEncoding.EncodeToString(sum[:])).([]byte)
		deadline, md, values, err := previousDecode(b)
		if err != nil {
			t.Fatalf("%s: the previous release cannot read record %s: %v", what, b, err)
		}
		if _, d, err := prev.signer.verify(cookie); err != nil || !d.Equal(deadline) {
			t.Errorf("%s: record deadline %v, token's %v", what, deadline, d)
		}
		if md.UserAgent != "" && md.UserAgent != chromeWindows {
			t.Errorf("%s: record user agent %q", what, md.UserAgent)
		}
		return values
	}

	// An anonymous session, then a login from it.
	cookie := serveAs(t, prev, "", chromeWindows, func(ctx context.Context) {
		if err := Put(ctx, "theme", "dark"); err != nil {
			t.Fatal(err)
		}
	})
	if v := checkPrevious(t, "anonymous", cookie); v["theme"] != "dark" {
		t.Errorf("anonymous values = %v, want theme dark", v)
	}
	cookie = serveAs(t, prev, cookie, chromeWindows, func(ctx context.Context) {
		if _, err := Create(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		if err := Put(ctx, "n", 3); err != nil {
			t.Fatal(err)
		}
	})
	if v := checkPrevious(t, "login", cookie); v["theme"] != "dark" || v["n"] != 3 {
		t.Errorf("values after login = %v, want theme dark, n 3", v)
	}

	// The instance without the switch reads it, and writes version 2.
	serve(t, cur, cookie, func(ctx context.Context) {
		info, ok := FromContext(ctx)
		if theme, _ := Get[string](ctx, "theme"); !ok || info.UserID != "alice" || theme != "dark" || info.UserAgent != chromeWindows || info.Device != "Chrome 131 on Windows" {
			t.Fatalf("the current format's instance reads %+v, theme %q", info, theme)
		}
		if err := Put(ctx, "theme", "light"); err != nil {
			t.Fatal(err)
		}
	})
	id := idOf(tokenOf(t, prev, cookie))
	if b, _ := r.Do(t, "GET", "session:"+id).([]byte); !strings.HasPrefix(string(b), `{"v":2,`) {
		t.Fatalf("record written without the switch = %s, want version 2", b)
	}

	// The instance with the switch reads version 2, writes version 1.
	clk.t = clk.t.Add(time.Second)
	serve(t, prev, cookie, func(ctx context.Context) {
		if theme, _ := Get[string](ctx, "theme"); theme != "light" {
			t.Errorf("the switch's instance reads theme %q, want light", theme)
		}
		if err := Put(ctx, "n", 4); err != nil {
			t.Fatal(err)
		}
	})
	if v := checkPrevious(t, "change", cookie); v["theme"] != "light" || v["n"] != 4 {
		t.Errorf("values after a change = %v, want theme light, n 4", v)
	}

	// A renewal with the switch: a 43-character token, version 1.
	renewed := serve(t, prev, cookie, func(ctx context.Context) {
		if err := Renew(ctx); err != nil {
			t.Fatal(err)
		}
	})
	if v := checkPrevious(t, "renewal", renewed); v["n"] != 4 {
		t.Errorf("values after renewal = %v, want n 4", v)
	}

	// A session the current format made (42 characters, version 2, no
	// user agent) reaches the switch's instance: read, and written back
	// as version 1 that keeps its device name.
	newCookie := serveAs(t, cur, "", chromeWindows, func(ctx context.Context) {
		if _, err := Create(ctx, "bob"); err != nil {
			t.Fatal(err)
		}
	})
	if n := len(tokenOf(t, cur, newCookie)); n != shortTokenLen {
		t.Fatalf("token without the switch: %d characters, want %d", n, shortTokenLen)
	}
	serve(t, prev, newCookie, func(ctx context.Context) {
		if user, _ := UserID(ctx); user != "bob" {
			t.Fatalf("the switch's instance reads user %q, want bob", user)
		}
		if err := Put(ctx, "k", "v"); err != nil {
			t.Fatal(err)
		}
	})
	b, _ := r.Do(t, "GET", "session:"+idOf(tokenOf(t, cur, newCookie))).([]byte)
	if _, _, values, err := previousDecode(b); err != nil || values["k"] != "v" {
		t.Errorf("record %s: previous release reads %v, %v; want k v", b, values, err)
	}
	for _, m := range []*Manager{prev, cur} {
		if info := infoOf(t, m, newCookie); info.Device != "Chrome 131 on Windows" || info.UserID != "bob" {
			t.Errorf("after a write in the previous format, Info = %+v; want bob's, Chrome 131 on Windows", info)
		}
	}
}

// previousValidToken is the previous release's validToken, without hash
// tags: 43 characters of base64url.
func previousValidToken(t string) bool {
	return len(t) == tokenLen && base64URL(t)
}

// previousMeta and previousDecode copy the previous release's record
// decoder (its codec.Decode and decodeValue), checks and all, so that
// TestPreviousFormat pins what that release can read.
type previousMeta struct {
	UserID    string
	CreatedAt time.Time
	LastSeen  time.Time
	IP        string
	UserAgent string
}

func previousDecode(b []byte) (time.Time, previousMeta, map[string]any, error) {
	var rec struct {
		V         int                        `json:"v"`
		UserID    string                     `json:"user_id,omitempty"`
		CreatedAt time.Time                  `json:"created_at"`
		ExpiresAt time.Time                  `json:"expires_at"`
		LastSeen  time.Time                  `json:"last_seen"`
		IP        string                     `json:"ip,omitempty"`
		UserAgent string                     `json:"user_agent,omitempty"`
		Values    map[string]json.RawMessage `json:"values,omitempty"`
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return time.Time{}, previousMeta{}, nil, err
	}
	if rec.V != 1 {
		return time.Time{}, previousMeta{}, nil, fmt.Errorf("version %d", rec.V)
	}
	if rec.ExpiresAt.IsZero() || rec.CreatedAt.IsZero() {
		return time.Time{}, previousMeta{}, nil, errors.New("missing created_at or expires_at")
	}
	values := make(map[string]any, len(rec.Values))
	for k, raw := range rec.Values {
		if !validKey(k) {
			return time.Time{}, previousMeta{}, nil, errors.New("reserved value key")
		}
		v, err := previousDecodeValue(raw)
		if err != nil {
			return time.Time{}, previousMeta{}, nil, err
		}
		values[k] = v
	}
	md := previousMeta{UserID: rec.UserID, CreatedAt: rec.CreatedAt, LastSeen: rec.LastSeen, IP: rec.IP, UserAgent: rec.UserAgent}
	return rec.ExpiresAt, md, values, nil
}

func previousDecodeValue(raw json.RawMessage) (any, error) {
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
	switch tag {
	case "string":
		var s string
		err := json.Unmarshal(b, &s)
		return s, err
	case "bool":
		var t bool
		err := json.Unmarshal(b, &t)
		return t, err
	case "int":
		var i int
		err := json.Unmarshal(b, &i)
		return i, err
	case "int64":
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return nil, err
		}
		return strconv.ParseInt(s, 10, 64)
	case "float64":
		var f float64
		err := json.Unmarshal(b, &f)
		return f, err
	case "bytes":
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return nil, err
		}
		return base64.StdEncoding.DecodeString(s)
	case "time":
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return nil, err
		}
		return time.Parse(time.RFC3339Nano, s)
	case "json":
		if !json.Valid(b) {
			return nil, errors.New("invalid json value")
		}
		return json.RawMessage(bytes.Clone(b)), nil
	}
	return nil, fmt.Errorf("unknown type tag %q", tag)
}

// TestPreviousFormatValues checks that the previous release reads every
// type of value a record in the previous format holds, as the same value.
func TestPreviousFormatValues(t *testing.T) {
	created := time.Date(2026, 11, 25, 10, 0, 0, 123e6, time.UTC)
	when := time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("X", 3600))
	jv, _ := normalize(point{1, 2})
	values := map[string]any{
		metaKey: meta{UserID: "alice", CreatedAt: created, LastSeen: created.Add(time.Minute), IP: "10.0.0.1", UserAgent: chromeWindows},
		"s":     `say "hi"`, "b": true, "i": 42, "i64": int64(1) << 62, "f": 2.5, "bytes": []byte{0, 1, 2}, "time": when, "point": jv,
	}
	b, err := codec{previous: true}.Encode(created.Add(time.Hour), values)
	if err != nil {
		t.Fatal(err)
	}
	deadline, md, got, err := previousDecode(b)
	if err != nil {
		t.Fatalf("previousDecode(%s): %v", b, err)
	}
	want := previousMeta{UserID: "alice", CreatedAt: created, LastSeen: created.Add(time.Minute), IP: "10.0.0.1", UserAgent: chromeWindows}
	if !deadline.Equal(created.Add(time.Hour)) || md != want {
		t.Errorf("previousDecode(%s) = %v, %+v; want %v, %+v", b, deadline, md, created.Add(time.Hour), want)
	}
	for k, v := range values {
		switch k {
		case metaKey:
		case "time":
			if g, ok := got[k].(time.Time); !ok || !g.Equal(when) {
				t.Errorf("value %q = %#v, want %v", k, got[k], when)
			}
		case "point":
			if string(got[k].(json.RawMessage)) != string(jv.(jsonValue)) {
				t.Errorf("value %q = %s, want %s", k, got[k], jv)
			}
		default:
			if fmt.Sprint(got[k]) != fmt.Sprint(v) || fmt.Sprintf("%T", got[k]) != fmt.Sprintf("%T", v) {
				t.Errorf("value %q = %#v, want %#v", k, got[k], v)
			}
		}
	}
}
