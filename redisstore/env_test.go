package redisstore

import (
	"crypto/tls"
	"net/url"
	"strings"
	"testing"
)

// envConfig is the part of a Config that FromEnv and ParseURL set.
type envConfig struct {
	Addr, Username, Password string
	DB                       int
	TLSServerName            string // "" when TLS is nil
}

func summarize(c Config) envConfig {
	e := envConfig{Addr: c.Addr, Username: c.Username, Password: c.Password, DB: c.DB}
	if c.TLS != nil {
		e.TLSServerName = c.TLS.ServerName
	}
	return e
}

func TestFromEnv(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    envConfig
		wantErr string
	}{
		{name: "empty", env: nil, want: envConfig{Addr: "127.0.0.1:6379"}},
		{
			name: "all variables",
			env: map[string]string{
				"REDIS_HOST": "redis.internal", "REDIS_PORT": "6380", "REDIS_USERNAME": "app",
				"REDIS_PASSWORD": "s3cret", "REDIS_DB": "2", "REDIS_TLS": "true",
			},
			want: envConfig{Addr: "redis.internal:6380", Username: "app", Password: "s3cret", DB: 2, TLSServerName: "redis.internal"},
		},
		{name: "IPv6 host", env: map[string]string{"REDIS_HOST": "::1"}, want: envConfig{Addr: "[::1]:6379"}},
		{name: "TLS false", env: map[string]string{"REDIS_TLS": "0"}, want: envConfig{Addr: "127.0.0.1:6379"}},
		{name: "empty values are unset", env: map[string]string{"REDIS_PORT": "", "REDIS_DB": "", "REDIS_TLS": ""}, want: envConfig{Addr: "127.0.0.1:6379"}},
		{
			name: "REDIS_URL wins",
			env:  map[string]string{"REDIS_URL": "rediss://:pw@cache:7000/3", "REDIS_HOST": "ignored", "REDIS_PORT": "abc"},
			want: envConfig{Addr: "cache:7000", Password: "pw", DB: 3, TLSServerName: "cache"},
		},
		{name: "bad host", env: map[string]string{"REDIS_HOST": "[x"}, wantErr: `redisstore: REDIS_HOST: want a host name or IP address, got "[x"`},
		{name: "bad port", env: map[string]string{"REDIS_PORT": "abc"}, wantErr: `redisstore: REDIS_PORT: want a port number 1-65535, got "abc"`},
		{name: "port 0", env: map[string]string{"REDIS_PORT": "0"}, wantErr: `redisstore: REDIS_PORT: want a port number 1-65535, got "0"`},
		{name: "port too big", env: map[string]string{"REDIS_PORT": "65536"}, wantErr: `redisstore: REDIS_PORT: want a port number 1-65535, got "65536"`},
		{name: "negative db", env: map[string]string{"REDIS_DB": "-1"}, wantErr: `redisstore: REDIS_DB: want an integer 0 or more, got "-1"`},
		{name: "bad db", env: map[string]string{"REDIS_DB": "one"}, wantErr: `redisstore: REDIS_DB: want an integer 0 or more, got "one"`},
		{name: "bad TLS", env: map[string]string{"REDIS_TLS": "yes"}, wantErr: `redisstore: REDIS_TLS: want true or false, got "yes"`},
		{name: "bad URL", env: map[string]string{"REDIS_URL": "http://u:hunter2@h"}, wantErr: "redisstore: REDIS_URL: want scheme redis:// or rediss://"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lookup := func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }
			cfg, err := fromEnv(lookup)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("fromEnv() error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("fromEnv() error = %v", err)
			}
			if got := summarize(cfg); got != tc.want {
				t.Fatalf("fromEnv() = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParseURL(t *testing.T) {
	tests := []struct {
		raw     string
		want    envConfig
		wantErr string // after "redisstore: redis URL: "
	}{
		{raw: "redis://localhost", want: envConfig{Addr: "localhost:6379"}},
		{raw: "redis://localhost:6380/", want: envConfig{Addr: "localhost:6380"}},
		{raw: "redis://user:pass@host:1/15", want: envConfig{Addr: "host:1", Username: "user", Password: "pass", DB: 15}},
		{raw: "redis://:pass@host", want: envConfig{Addr: "host:6379", Password: "pass"}},
		{raw: "redis://pass@host", want: envConfig{Addr: "host:6379", Password: "pass"}},
		{raw: "redis://u:p%40ss@host", want: envConfig{Addr: "host:6379", Username: "u", Password: "p@ss"}},
		{raw: "REDIS://host/0", want: envConfig{Addr: "host:6379"}},
		{raw: "redis://[::1]:7000", want: envConfig{Addr: "[::1]:7000"}},
		{raw: "rediss://cache.example.com", want: envConfig{Addr: "cache.example.com:6379", TLSServerName: "cache.example.com"}},
		{raw: "http://host", wantErr: "want scheme redis:// or rediss://"},
		{raw: "host:6379", wantErr: "want scheme redis:// or rediss://"},
		{raw: "", wantErr: "want scheme redis:// or rediss://"},
		{raw: "redis:host", wantErr: "want // after the scheme"},
		{raw: "redis://", wantErr: "missing host"},
		{raw: "redis://:pw@:6379", wantErr: "missing host"},
		{raw: "redis://]", wantErr: "malformed host"},
		{raw: "redis://host:0", wantErr: "want a port number 1-65535"},
		{raw: "redis://host:70000", wantErr: "want a port number 1-65535"},
		{raw: "redis://host/x", wantErr: "want a database number as the path"},
		{raw: "redis://host/-1", wantErr: "want a database number as the path"},
		{raw: "redis://host/1/2", wantErr: "want a database number as the path"},
		{raw: "redis://host/99999999999999999999", wantErr: "database number out of range"},
		{raw: "redis://host?db=1", wantErr: "query parameters are not supported"},
		{raw: "redis://host#frag", wantErr: "fragments are not supported"},
		{raw: "redis://u:p%zz@host", wantErr: "malformed URL"},
	}
	for _, tc := range tests {
		t.Run(tc.raw, func(t *testing.T) {
			cfg, err := ParseURL(tc.raw)
			if tc.wantErr != "" {
				if want := "redisstore: redis URL: " + tc.wantErr; err == nil || err.Error() != want {
					t.Fatalf("ParseURL(%q) error = %v, want %q", tc.raw, err, want)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseURL(%q) error = %v", tc.raw, err)
			}
			if got := summarize(cfg); got != tc.want {
				t.Fatalf("ParseURL(%q) = %+v, want %+v", tc.raw, got, tc.want)
			}
			if cfg.TLS != nil && (cfg.TLS.InsecureSkipVerify || cfg.TLS.MinVersion < tls.VersionTLS12) {
				t.Errorf("ParseURL(%q).TLS = %+v, want verification and TLS 1.2 or later", tc.raw, cfg.TLS)
			}
			if _, err := cfg.normalize(); err != nil {
				t.Errorf("ParseURL(%q) gave a Config that does not validate: %v", tc.raw, err)
			}
		})
	}
}

// FuzzParseURL checks that ParseURL never panics and that its errors never
// contain the password of the URL they reject.
func FuzzParseURL(f *testing.F) {
	for _, s := range []string{
		"redis://localhost:6379/0",
		"rediss://user:hunter2@cache:6380/1",
		"redis://:hunter2@h",
		"redis://hunter2@h/x",
		"redis://u:hunter2@h:99999",
		"redis://u:hunter2%zz@h",
		"http://u:hunter2@h",
		"redis://u:hunter2@h?db=1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		cfg, err := ParseURL(raw)
		if err == nil {
			if _, err := cfg.normalize(); err != nil {
				t.Fatalf("ParseURL(%q) gave a Config that does not validate: %v", raw, err)
			}
			return
		}
		msg, ok := strings.CutPrefix(err.Error(), "redisstore: redis URL: ")
		if !ok || !urlErrors[msg] {
			t.Fatalf("ParseURL(%q) error = %q, want one of the fixed messages", raw, err)
		}
		for _, secret := range secrets(raw) {
			if strings.Contains(msg, secret) && !strings.Contains(allURLErrors, secret) {
				t.Fatalf("ParseURL(%q) error %q contains the secret %q", raw, err, secret)
			}
		}
	})
}

// urlErrors are all the messages parseURL returns: none of them depends on
// the input, so none can leak any of it.
var urlErrors = map[string]bool{
	"malformed URL":                      true,
	"malformed host":                     true,
	"want scheme redis:// or rediss://":  true,
	"want // after the scheme":           true,
	"query parameters are not supported": true,
	"fragments are not supported":        true,
	"missing host":                       true,
	"want a port number 1-65535":         true,
	"want a database number as the path": true,
	"database number out of range":       true,
}

// allURLErrors joins urlErrors, to tell a leaked secret from one that
// happens to be a substring of a fixed message ("want", "port").
var allURLErrors = func() string {
	var b strings.Builder
	for m := range urlErrors {
		b.WriteString(m + "\n")
	}
	return b.String()
}()

// secrets returns the parts of raw that may be a password, decoded and
// encoded: everything between "://" and the last "@" of the authority,
// and that part after its first colon. Strings shorter than 4 bytes are
// left out: they occur in every error message by chance.
func secrets(raw string) []string {
	_, rest, ok := strings.Cut(raw, "://")
	if !ok {
		rest = raw
	}
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	i := strings.LastIndex(rest, "@")
	if i < 0 {
		return nil
	}
	userinfo := rest[:i]
	var out []string
	add := func(s string) {
		if len(s) >= 4 {
			out = append(out, s)
		}
		if d, err := url.PathUnescape(s); err == nil && len(d) >= 4 {
			out = append(out, d)
		}
	}
	add(userinfo)
	if _, pass, ok := strings.Cut(userinfo, ":"); ok {
		add(pass)
	}
	return out
}
