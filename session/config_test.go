package session

import (
	"encoding/base64"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sessionkit/sessionkit/redisstore"
)

func TestConfigDefaults(t *testing.T) {
	cfg, err := Config{Keys: [][]byte{testKey(1)}}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Lifetime != 24*time.Hour || cfg.IdleTimeout != 30*time.Minute ||
		cfg.CookieName != "__Host-session" || cfg.InsecureCookie || cfg.SameSite != http.SameSiteLaxMode || cfg.Logger == nil {
		t.Errorf("defaults = %+v", cfg)
	}
	cfg, _ = Config{Keys: [][]byte{testKey(1)}, InsecureCookie: true}.withDefaults()
	if cfg.CookieName != "session" {
		t.Errorf("CookieName with InsecureCookie = %q, want session", cfg.CookieName)
	}
}

func TestConfigErrors(t *testing.T) {
	k := [][]byte{testKey(1)}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no keys", Config{}, "Config.Keys"},
		{"short key", Config{Keys: [][]byte{testKey(1), make([]byte, 31)}}, "Config.Keys[1]"},
		// A buffer never filled, and a placeholder: anyone who guesses
		// either forges any session.
		{"key of zeros", Config{Keys: [][]byte{testKey(1), make([]byte, 32)}}, "Config.Keys[1]: only 1 distinct byte values"},
		{"placeholder key", Config{Keys: [][]byte{[]byte("changemechangemechangemechangeme")}}, "Config.Keys[0]: only 7 distinct byte values"},
		{"retired key of zeros", Config{Keys: k, RetiredKeys: [][]byte{make([]byte, 32)}}, "Config.RetiredKeys[0]: only 1 distinct"},
		{"negative lifetime", Config{Keys: k, Lifetime: -1}, "Config.Lifetime"},
		{"lifetime under a millisecond", Config{Keys: k, Lifetime: time.Microsecond}, "Config.Lifetime"},
		{"lifetime past a century", Config{Keys: k, Lifetime: math.MaxInt64}, "Config.Lifetime"},
		{"record limit past Redis's largest string", Config{Keys: k, MaxRecordBytes: 512<<20 + 1}, "Config.MaxRecordBytes"},
		{"bad cookie name", Config{Keys: k, CookieName: "a b"}, "Config.CookieName"},
		{"host prefix insecure", Config{Keys: k, CookieName: "__Host-x", InsecureCookie: true}, "Config.CookieName"},
		// Browsers match the prefixes in any case (RFC 6265bis).
		{"host prefix lower case insecure", Config{Keys: k, CookieName: "__host-x", InsecureCookie: true}, "Config.CookieName"},
		{"secure prefix upper case insecure", Config{Keys: k, CookieName: "__SECURE-x", InsecureCookie: true}, "Config.CookieName"},
		{"samesite none insecure", Config{Keys: k, SameSite: http.SameSiteNoneMode, InsecureCookie: true}, "Config.SameSite"},
		{"samesite default mode", Config{Keys: k, SameSite: http.SameSiteDefaultMode}, "Lax, Strict or None"},
		// 30 meant as minutes: every session would end before its next request.
		{"idle timeout under a millisecond", Config{Keys: k, IdleTimeout: 30}, "Config.IdleTimeout"},
		{"retired key still in Keys", Config{Keys: [][]byte{testKey(1), testKey(2)}, RetiredKeys: [][]byte{testKey(2)}}, "Config.RetiredKeys[0] is in Keys"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(nopStore{}, tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New() error = %v, want one naming %s", err, tc.want)
			}
		})
	}
	var unopened *redisstore.Store // a nil Store in a non-nil interface
	if _, err := New(unopened, Config{Keys: k}); err == nil || !strings.Contains(err.Error(), "nil Store") {
		t.Errorf("New(nil *redisstore.Store) error = %v, want nil Store now rather than a panic at the first request", err)
	}
}

func TestFromEnv(t *testing.T) {
	key1 := base64.StdEncoding.EncodeToString(testKey(0xfb))    // has '+' and '/'
	key2 := base64.RawURLEncoding.EncodeToString(testKey(0xfe)) // has '-' or '_'
	tests := []struct {
		name    string
		env     map[string]string
		check   func(Config) bool
		wantErr string
	}{
		{"empty", nil, func(c Config) bool {
			return c.Keys == nil && c.Lifetime == 0 && !c.InsecureCookie && !c.KeepUserAgent && !c.PreviousFormat
		}, ""},
		{"empty variables count as unset", map[string]string{
			"SESSION_KEYS": "", "SESSION_LIFETIME": "", "SESSION_IDLE_TIMEOUT": "", "SESSION_COOKIE_SECURE": "",
			"SESSION_TAG_KEY": "", "SESSION_MAX_PER_USER": "", "SESSION_KEEP_USER_AGENT": "", "SESSION_PREVIOUS_FORMAT": "",
			"SESSION_RETIRED_KEYS": "",
		}, func(c Config) bool {
			return c.Keys == nil && c.RetiredKeys == nil && c.Lifetime == 0 && c.IdleTimeout == 0 && !c.InsecureCookie && c.TagKey == nil &&
				c.MaxSessionsPerUser == 0 && !c.KeepUserAgent && !c.PreviousFormat
		}, ""},
		{"keys", map[string]string{"SESSION_KEYS": key1 + ", " + key2}, func(c Config) bool {
			return len(c.Keys) == 2 && string(c.Keys[0]) == string(testKey(0xfb)) && string(c.Keys[1]) == string(testKey(0xfe))
		}, ""},
		{"retired keys", map[string]string{"SESSION_KEYS": key1, "SESSION_RETIRED_KEYS": key2}, func(c Config) bool {
			return len(c.Keys) == 1 && len(c.RetiredKeys) == 1 && string(c.RetiredKeys[0]) == string(testKey(0xfe))
		}, ""},
		{"retired key still signing", map[string]string{"SESSION_KEYS": key1 + "," + key2, "SESSION_RETIRED_KEYS": key2}, nil, "SESSION_RETIRED_KEYS: key 1 is in SESSION_KEYS too"},
		{"short retired key", map[string]string{"SESSION_KEYS": key1, "SESSION_RETIRED_KEYS": key2 + "," + base64.StdEncoding.EncodeToString(make([]byte, 31))}, nil, "SESSION_RETIRED_KEYS: key 2"},
		{"durations", map[string]string{"SESSION_LIFETIME": "2h", "SESSION_IDLE_TIMEOUT": "5m"}, func(c Config) bool {
			return c.Lifetime == 2*time.Hour && c.IdleTimeout == 5*time.Minute
		}, ""},
		{"idle off", map[string]string{"SESSION_IDLE_TIMEOUT": "0"}, func(c Config) bool { return c.IdleTimeout < 0 }, ""},
		{"insecure", map[string]string{"SESSION_COOKIE_SECURE": "false"}, func(c Config) bool { return c.InsecureCookie }, ""},
		{"secure", map[string]string{"SESSION_COOKIE_SECURE": "true"}, func(c Config) bool { return !c.InsecureCookie }, ""},
		{"short key", map[string]string{"SESSION_KEYS": base64.StdEncoding.EncodeToString(make([]byte, 31))}, nil, "SESSION_KEYS"},
		{"key of zeros", map[string]string{"SESSION_KEYS": key1 + "," + base64.StdEncoding.EncodeToString(make([]byte, 32))}, nil, "SESSION_KEYS: key 2: only 1 distinct"},
		// Two keys on two lines (a YAML block) would otherwise decode as
		// one key of 64 bytes: base64 decoders skip line breaks.
		{"keys on two lines", map[string]string{"SESSION_KEYS": strings.TrimRight(key1, "=") + "\n" + base64.RawStdEncoding.EncodeToString(testKey(0xfe))}, nil, "SESSION_KEYS: key 1: contains a line break"},
		{"not base64", map[string]string{"SESSION_KEYS": "not base64!"}, nil, "SESSION_KEYS"},
		// Placeholders that decode to bytes with many distinct values,
		// which a count of distinct values alone would accept.
		{"placeholder as text", map[string]string{"SESSION_KEYS": "supersecretsupersecretsupersecretsupersecret"}, nil, "SESSION_KEYS: key 1: a run of 10 characters appears twice"},
		{"words twice as text", map[string]string{"SESSION_KEYS": key1 + ",passwordpassword1234567890passwordpassword12"}, nil, "SESSION_KEYS: key 2: a run of 10 characters appears twice"},
		{"a word repeated, in base64", map[string]string{"SESSION_KEYS": base64.StdEncoding.EncodeToString([]byte("secretsecretsecretsecretsecret123456"))}, nil, "SESSION_KEYS: key 1: a run of 8 bytes appears twice"},
		{"in quotes", map[string]string{"SESSION_KEYS": `"` + key1 + `"`}, nil, "SESSION_KEYS: key 1: in quotes"},
		{"in single quotes", map[string]string{"SESSION_KEYS": key2 + ",'" + key1 + "'"}, nil, "SESSION_KEYS: key 2: in quotes"},
		{"empty key", map[string]string{"SESSION_KEYS": key1 + ","}, nil, "SESSION_KEYS: key 2: empty (a comma too many?)"},
		{"blank", map[string]string{"SESSION_KEYS": " \n"}, nil, "SESSION_KEYS: no key"},
		{"bad lifetime", map[string]string{"SESSION_LIFETIME": "1 day"}, nil, "SESSION_LIFETIME"},
		{"zero lifetime", map[string]string{"SESSION_LIFETIME": "0s"}, nil, "SESSION_LIFETIME"},
		// Past the bounds New enforces: the error names the variable, not Config.Lifetime.
		{"lifetime under a millisecond", map[string]string{"SESSION_LIFETIME": "500us"}, nil, "SESSION_LIFETIME"},
		{"lifetime over a century", map[string]string{"SESSION_LIFETIME": "1000000h"}, nil, "SESSION_LIFETIME"},
		{"bad idle", map[string]string{"SESSION_IDLE_TIMEOUT": "-1m"}, nil, "SESSION_IDLE_TIMEOUT"},
		{"idle under a millisecond", map[string]string{"SESSION_IDLE_TIMEOUT": "30ns"}, nil, "SESSION_IDLE_TIMEOUT"},
		{"bad secure", map[string]string{"SESSION_COOKIE_SECURE": "yes please"}, nil, "SESSION_COOKIE_SECURE"},
		{"keep user agent", map[string]string{"SESSION_KEEP_USER_AGENT": "true"}, func(c Config) bool { return c.KeepUserAgent && !c.PreviousFormat }, ""},
		{"previous format", map[string]string{"SESSION_PREVIOUS_FORMAT": "true", "SESSION_KEEP_USER_AGENT": "false"}, func(c Config) bool { return c.PreviousFormat && !c.KeepUserAgent }, ""},
		{"bad keep user agent", map[string]string{"SESSION_KEEP_USER_AGENT": "sometimes"}, nil, "SESSION_KEEP_USER_AGENT"},
		{"bad previous format", map[string]string{"SESSION_PREVIOUS_FORMAT": "v1"}, nil, "SESSION_PREVIOUS_FORMAT"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := fromEnv(func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("fromEnv() error = %v, want one naming %s", err, tc.wantErr)
				}
				if v := tc.env["SESSION_KEYS"]; v != "" && strings.Contains(err.Error(), v) {
					t.Errorf("error %q repeats the key", err)
				}
				return
			}
			if err != nil || !tc.check(cfg) {
				t.Errorf("fromEnv() = %+v, %v", cfg, err)
			}
		})
	}
}

func FuzzFromEnv(f *testing.F) {
	f.Add("a2V5", "24h", "30m", "true")
	f.Fuzz(func(t *testing.T, keys, lifetime, idle, secure string) {
		env := map[string]string{"SESSION_KEYS": keys, "SESSION_LIFETIME": lifetime, "SESSION_IDLE_TIMEOUT": idle, "SESSION_COOKIE_SECURE": secure}
		cfg, err := fromEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
		if err != nil {
			if strings.Contains(err.Error(), "SESSION_KEYS") && len(keys) >= 8 && strings.Contains(err.Error(), keys) {
				t.Errorf("error %q repeats SESSION_KEYS", err)
			}
			return
		}
		for _, k := range cfg.Keys {
			if len(k) < MinKeyLength {
				t.Errorf("accepted a %d-byte key", len(k))
			}
		}
		if cfg.Lifetime <= 0 {
			t.Errorf("accepted lifetime %v", cfg.Lifetime)
		}
	})
}

// nopStore is a Store for tests that never reach it: any call panics.
type nopStore struct{ Store }

// TestSetCookie holds the session cookie setCookie writes equal to the
// one net/http writes for the same cookie, for every name and attribute a
// Config can ask for, both for a session and for a logout.
func TestSetCookie(t *testing.T) {
	now := time.Date(2026, 11, 26, 5, 0, 0, 0, time.UTC)
	for _, base := range []Config{
		{},
		{InsecureCookie: true},
		{CookieName: "__Secure-sid", SameSite: http.SameSiteStrictMode},
		{SameSite: http.SameSiteNoneMode},
		{InsecureCookie: true, CookieName: "sid", SameSite: http.SameSiteLaxMode},
	} {
		base.Keys = [][]byte{testKey(1)}
		cfg, err := base.withDefaults()
		if err != nil {
			t.Fatal(err)
		}
		m := &Manager{cfg: cfg, now: func() time.Time { return now }, cookieAttrs: cookieAttributes(cfg)}
		for _, tc := range []struct {
			value    string
			deadline time.Time
			want     http.Cookie
		}{
			// Rounded up: the browser keeps the cookie until the deadline.
			{"dGVzdA==", now.Add(90*time.Minute + 500*time.Millisecond), http.Cookie{Value: "dGVzdA==", Expires: now.Add(90*time.Minute + time.Second), MaxAge: 5401}},
			{"dGVzdA==", now.Add(90 * time.Minute), http.Cookie{Value: "dGVzdA==", Expires: now.Add(90 * time.Minute), MaxAge: 5400}},
			{"dGVzdA==", now.Add(90*time.Minute + time.Millisecond), http.Cookie{Value: "dGVzdA==", Expires: now.Add(90*time.Minute + time.Second), MaxAge: 5401}},
			{"x", now.Add(time.Millisecond), http.Cookie{Value: "x", Expires: now.Add(time.Second), MaxAge: 1}},
			{"", time.Time{}, http.Cookie{Expires: time.Unix(1, 0), MaxAge: -1}},
		} {
			want := tc.want
			want.Name, want.Path, want.HttpOnly, want.Secure, want.SameSite = cfg.CookieName, "/", true, !cfg.InsecureCookie, cfg.SameSite
			h := http.Header{}
			m.setCookie(h, tc.value, tc.deadline)
			if got := h.Values("Set-Cookie"); len(got) != 1 || got[0] != want.String() {
				t.Errorf("%+v: Set-Cookie %q, want %q", base, got, want.String())
			}
			if got := h.Values("Cache-Control"); len(got) != 1 || got[0] != `private, no-cache="Set-Cookie"` {
				t.Errorf("%+v: Cache-Control %q", base, got)
			}
		}
	}
}
