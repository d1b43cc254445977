package redisstore

import (
	"crypto/tls"
	"maps"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"
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
		{name: "bad host", env: map[string]string{"REDIS_HOST": "[x"}, wantErr: `redisstore: REDIS_HOST: want a host name or IP address (no scheme, user, password or port)`},
		{name: "host with a port", env: map[string]string{"REDIS_HOST": "cache:6380"}, wantErr: `redisstore: REDIS_HOST: want a host name or IP address (no scheme, user, password or port)`},
		{name: "host as a URL", env: map[string]string{"REDIS_HOST": "redis://:hunter2@cache:6379"}, wantErr: `redisstore: REDIS_HOST: want a host name or IP address (no scheme, user, password or port)`},
		{name: "host with a space", env: map[string]string{"REDIS_HOST": "a b"}, wantErr: `redisstore: REDIS_HOST: want a host name or IP address (no scheme, user, password or port)`},
		{name: "host name", env: map[string]string{"REDIS_HOST": "redis_1.cache-eu.internal"}, want: envConfig{Addr: "redis_1.cache-eu.internal:6379"}},
		{
			name: "credentials beside a REDIS_URL without them",
			env:  map[string]string{"REDIS_URL": "redis://cache:7000/3", "REDIS_USERNAME": "app", "REDIS_PASSWORD": "s3cret"},
			want: envConfig{Addr: "cache:7000", Username: "app", Password: "s3cret", DB: 3},
		},
		{
			name: "REDIS_URL's credentials win",
			env:  map[string]string{"REDIS_URL": "redis://:pw@cache:7000", "REDIS_USERNAME": "app", "REDIS_PASSWORD": "s3cret"},
			want: envConfig{Addr: "cache:7000", Password: "pw"},
		},
		{
			name: "REDIS_DB beside a REDIS_URL without a database",
			env:  map[string]string{"REDIS_URL": "redis://cache:7000", "REDIS_DB": "2"},
			want: envConfig{Addr: "cache:7000", DB: 2},
		},
		{
			name: "REDIS_DB beside a REDIS_URL with an empty path",
			env:  map[string]string{"REDIS_URL": "redis://cache:7000/", "REDIS_DB": "2"},
			want: envConfig{Addr: "cache:7000", DB: 2},
		},
		{
			name: "REDIS_DB that agrees with REDIS_URL",
			env:  map[string]string{"REDIS_URL": "redis://cache:7000/3", "REDIS_DB": "3"},
			want: envConfig{Addr: "cache:7000", DB: 3},
		},
		{
			name:    "REDIS_DB against REDIS_URL's database",
			env:     map[string]string{"REDIS_URL": "redis://:hunter2@cache:7000/3", "REDIS_DB": "2"},
			wantErr: "redisstore: REDIS_DB is 2 but REDIS_URL names database 3: name it in one of them",
		},
		{
			name:    "REDIS_DB against REDIS_URL's database 0",
			env:     map[string]string{"REDIS_URL": "redis://cache:7000/0", "REDIS_DB": "1"},
			wantErr: "redisstore: REDIS_DB is 1 but REDIS_URL names database 0: name it in one of them",
		},
		{
			name:    "bad REDIS_DB beside REDIS_URL",
			env:     map[string]string{"REDIS_URL": "redis://cache:7000/3", "REDIS_DB": "three"},
			wantErr: `redisstore: REDIS_DB: want an integer 0 or more, got "three"`,
		},
		{
			name:    "Kubernetes' REDIS_PORT",
			env:     map[string]string{"REDIS_HOST": "redis", "REDIS_PORT": "tcp://10.96.0.12:6379"},
			wantErr: `redisstore: REDIS_PORT: want a port number 1-65535, got "tcp://10.96.0.12:6379", as Kubernetes sets it for a Service named redis: set REDIS_URL (which REDIS_PORT does not override) or the pod's enableServiceLinks: false`,
		},
		{
			name: "Kubernetes' REDIS_PORT beside REDIS_URL",
			env:  map[string]string{"REDIS_URL": "redis://redis:6379", "REDIS_PORT": "tcp://10.96.0.12:6379"},
			want: envConfig{Addr: "redis:6379"},
		},
		{
			name:    "bad REDIS_TLS beside REDIS_URL",
			env:     map[string]string{"REDIS_URL": "redis://cache:7000", "REDIS_TLS": "yes"},
			wantErr: `redisstore: REDIS_TLS: want true or false, got "yes"`,
		},
		{
			name:    "REDIS_TLS against a redis:// REDIS_URL",
			env:     map[string]string{"REDIS_URL": "redis://:hunter2@cache:7000", "REDIS_TLS": "true"},
			wantErr: "redisstore: REDIS_TLS is true but REDIS_URL is redis://: use rediss:// for TLS",
		},
		{name: "bad port", env: map[string]string{"REDIS_PORT": "abc"}, wantErr: `redisstore: REDIS_PORT: want a port number 1-65535, got "abc"`},
		{name: "port 0", env: map[string]string{"REDIS_PORT": "0"}, wantErr: `redisstore: REDIS_PORT: want a port number 1-65535, got "0"`},
		{name: "port too big", env: map[string]string{"REDIS_PORT": "65536"}, wantErr: `redisstore: REDIS_PORT: want a port number 1-65535, got "65536"`},
		{
			name:    "port as a URL with a password",
			env:     map[string]string{"REDIS_PORT": "redis://app:hunter2@127.0.0.1:6380"},
			wantErr: `redisstore: REDIS_PORT: want a port number 1-65535, got a value with "@" (not repeated: it may be a URL with a password)`,
		},
		{
			name:    "database as a URL with a password",
			env:     map[string]string{"REDIS_DB": "redis://:hunter2@cache/2"},
			wantErr: `redisstore: REDIS_DB: want an integer 0 or more, got a value with "@" (not repeated: it may be a URL with a password)`,
		},
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
		{raw: "127.0.0.1:6379", wantErr: "want scheme redis:// or rediss://"},
		{raw: "[::1]:6379", wantErr: "want scheme redis:// or rediss://"},
		{raw: "", wantErr: "want scheme redis:// or rediss://"},
		{raw: "redis:host", wantErr: "want // after the scheme"},
		{raw: "redis://", wantErr: "missing host"},
		{raw: "redis://:pw@:6379", wantErr: "missing host"},
		{raw: "redis://]", wantErr: "malformed host"},
		{raw: "redis://127.0.0.1:46379:1", wantErr: "malformed host"},
		{raw: "redis://host:0", wantErr: "want a port number 1-65535"},
		{raw: "redis://host:70000", wantErr: "want a port number 1-65535"},
		{raw: "redis://host/x", wantErr: "want a database number as the path"},
		{raw: "redis://host/-1", wantErr: "want a database number as the path"},
		{raw: "redis://host/1/2", wantErr: "want a database number as the path"},
		{raw: "redis://host/99999999999999999999", wantErr: "database number out of range"},
		{raw: "redis://host?db=1", wantErr: "query parameters are not supported"},
		{raw: "redis://host#frag", wantErr: "fragments are not supported"},
		{raw: "redis://u:p%zz@host", wantErr: "malformed URL (percent-encode any of : / ? # [ ] @ % in the user name and password)"},
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
	"malformed URL (percent-encode any of : / ? # [ ] @ % in the user name and password)": true,
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

// deploymentEnv is the part of a Config that FromEnv sets for a Sentinel
// or Cluster deployment, and WaitReplicas.
type deploymentEnv struct {
	Addr                                               string
	SentinelAddrs, ClusterNodes                        []string
	SentinelMaster, SentinelUsername, SentinelPassword string
	Username, Password                                 string
	DB, WaitReplicas                                   int
	TLS                                                bool
	TLSServerName                                      string // "" for each node's own host
}

func summarizeDeployment(c Config) deploymentEnv {
	e := deploymentEnv{
		Addr: c.Addr, SentinelAddrs: c.SentinelAddrs, ClusterNodes: c.ClusterNodes,
		SentinelMaster: c.SentinelMaster, SentinelUsername: c.SentinelUsername, SentinelPassword: c.SentinelPassword,
		Username: c.Username, Password: c.Password, DB: c.DB, WaitReplicas: c.WaitReplicas,
	}
	if c.TLS != nil {
		e.TLS, e.TLSServerName = true, c.TLS.ServerName
	}
	return e
}

// TestFromEnvDeployment checks the variables of Sentinel and Cluster
// setups and REDIS_WAIT_REPLICAS: addresses trimmed, the sentinels'
// credentials apart from the data nodes', and errors that name the
// variables and never carry a password or REDIS_URL.
func TestFromEnvDeployment(t *testing.T) {
	const pw, spw, urlpw = "hunter2-master", "hunter2-sentinel", "hunter2-url"
	rawURL := "redis://app:" + urlpw + "@cache:6379/0"
	tests := []struct {
		name    string
		env     map[string]string
		want    deploymentEnv
		wantErr string
	}{
		{
			name: "Sentinel",
			env: map[string]string{
				"REDIS_SENTINELS": " s1:26379 , s2:26379,[::1]:26380 ", "REDIS_SENTINEL_MASTER": "mymaster",
				"REDIS_SENTINEL_USERNAME": "sentinel-user", "REDIS_SENTINEL_PASSWORD": spw,
				"REDIS_USERNAME": "app", "REDIS_PASSWORD": pw, "REDIS_DB": "2", "REDIS_TLS": "true", "REDIS_WAIT_REPLICAS": "1",
			},
			want: deploymentEnv{
				SentinelAddrs: []string{"s1:26379", "s2:26379", "[::1]:26380"}, SentinelMaster: "mymaster",
				SentinelUsername: "sentinel-user", SentinelPassword: spw,
				Username: "app", Password: pw, DB: 2, WaitReplicas: 1, TLS: true,
			},
		},
		{
			name: "Sentinel without credentials",
			env:  map[string]string{"REDIS_SENTINELS": "s1:26379", "REDIS_SENTINEL_MASTER": "m"},
			want: deploymentEnv{SentinelAddrs: []string{"s1:26379"}, SentinelMaster: "m"},
		},
		{
			name: "Cluster",
			env: map[string]string{
				"REDIS_CLUSTER_NODES": "n1:7000,  n2:7001 ", "REDIS_USERNAME": "app", "REDIS_PASSWORD": pw,
				"REDIS_DB": "0", "REDIS_TLS": "1", "REDIS_WAIT_REPLICAS": "2",
			},
			want: deploymentEnv{ClusterNodes: []string{"n1:7000", "n2:7001"}, Username: "app", Password: pw, WaitReplicas: 2, TLS: true},
		},
		{
			name: "one server, WaitReplicas",
			env:  map[string]string{"REDIS_HOST": "h", "REDIS_PASSWORD": pw, "REDIS_WAIT_REPLICAS": "3"},
			want: deploymentEnv{Addr: "h:6379", Password: pw, WaitReplicas: 3},
		},
		{
			name: "REDIS_URL, WaitReplicas",
			env:  map[string]string{"REDIS_URL": rawURL, "REDIS_WAIT_REPLICAS": "1"},
			want: deploymentEnv{Addr: "cache:6379", Username: "app", Password: urlpw, WaitReplicas: 1},
		},
		{
			name: "WaitReplicas 0",
			env:  map[string]string{"REDIS_WAIT_REPLICAS": "0"},
			want: deploymentEnv{Addr: "127.0.0.1:6379"},
		},

		{
			name:    "Sentinel and Cluster",
			env:     map[string]string{"REDIS_SENTINELS": "s1:26379", "REDIS_SENTINEL_MASTER": "m", "REDIS_CLUSTER_NODES": "n1:7000", "REDIS_PASSWORD": pw},
			wantErr: "redisstore: REDIS_SENTINELS and REDIS_CLUSTER_NODES name two different deployments; set one",
		},
		{
			name:    "REDIS_URL and Sentinel",
			env:     map[string]string{"REDIS_URL": rawURL, "REDIS_SENTINELS": "s1:26379", "REDIS_SENTINEL_MASTER": "m"},
			wantErr: "redisstore: REDIS_URL and REDIS_SENTINELS name two different deployments; set one",
		},
		{
			name:    "REDIS_URL and Cluster",
			env:     map[string]string{"REDIS_URL": rawURL, "REDIS_CLUSTER_NODES": "n1:7000"},
			wantErr: "redisstore: REDIS_URL and REDIS_CLUSTER_NODES name two different deployments; set one",
		},
		{
			name:    "REDIS_HOST and Cluster",
			env:     map[string]string{"REDIS_HOST": "h", "REDIS_CLUSTER_NODES": "n1:7000", "REDIS_PASSWORD": pw},
			wantErr: "redisstore: REDIS_HOST and REDIS_CLUSTER_NODES name two different deployments; set one",
		},
		{
			name:    "REDIS_PORT and Sentinel",
			env:     map[string]string{"REDIS_PORT": "6380", "REDIS_SENTINELS": "s1:26379", "REDIS_SENTINEL_MASTER": "m", "REDIS_SENTINEL_PASSWORD": spw},
			wantErr: "redisstore: REDIS_PORT and REDIS_SENTINELS name two different deployments; set one",
		},
		{
			name:    "REDIS_SENTINEL_MASTER without REDIS_SENTINELS",
			env:     map[string]string{"REDIS_SENTINEL_MASTER": "m", "REDIS_PASSWORD": pw},
			wantErr: "redisstore: REDIS_SENTINEL_MASTER is set without REDIS_SENTINELS",
		},
		{
			name:    "REDIS_SENTINEL_USERNAME without REDIS_SENTINELS",
			env:     map[string]string{"REDIS_SENTINEL_USERNAME": "su", "REDIS_CLUSTER_NODES": "n1:7000"},
			wantErr: "redisstore: REDIS_SENTINEL_USERNAME is set without REDIS_SENTINELS",
		},
		{
			name:    "REDIS_SENTINEL_PASSWORD without REDIS_SENTINELS",
			env:     map[string]string{"REDIS_SENTINEL_PASSWORD": spw, "REDIS_URL": rawURL},
			wantErr: "redisstore: REDIS_SENTINEL_PASSWORD is set without REDIS_SENTINELS",
		},
		{
			name:    "REDIS_SENTINELS without REDIS_SENTINEL_MASTER",
			env:     map[string]string{"REDIS_SENTINELS": "s1:26379", "REDIS_SENTINEL_PASSWORD": spw, "REDIS_PASSWORD": pw},
			wantErr: "redisstore: REDIS_SENTINEL_MASTER: required with REDIS_SENTINELS",
		},
		{
			name:    "REDIS_SENTINELS empty entry",
			env:     map[string]string{"REDIS_SENTINELS": "s1:26379,,s2:26379", "REDIS_SENTINEL_MASTER": "m", "REDIS_SENTINEL_PASSWORD": spw},
			wantErr: `redisstore: REDIS_SENTINELS: entry 2: want host:port with a port 1-65535`,
		},
		{
			// A password written into the list must not come back in
			// errors or logs: the entry is refused, without repeating it.
			name:    "REDIS_CLUSTER_NODES entry with a password",
			env:     map[string]string{"REDIS_CLUSTER_NODES": "n1:7000,Wr0ng-Passw0rd@n2:7001"},
			wantErr: `redisstore: REDIS_CLUSTER_NODES: entry 2: want host:port with a port 1-65535`,
		},
		{
			name:    "REDIS_SENTINELS entry with a path",
			env:     map[string]string{"REDIS_SENTINELS": "redis://s1:26379/0", "REDIS_SENTINEL_MASTER": "m"},
			wantErr: `redisstore: REDIS_SENTINELS: entry 1: want host:port with a port 1-65535`,
		},
		{
			name:    "REDIS_SENTINELS entry without port",
			env:     map[string]string{"REDIS_SENTINELS": "s1", "REDIS_SENTINEL_MASTER": "m"},
			wantErr: `redisstore: REDIS_SENTINELS: entry 1: want host:port with a port 1-65535`,
		},
		{
			name:    "REDIS_SENTINELS entry with port 0",
			env:     map[string]string{"REDIS_SENTINELS": "s1:26379,s2:0", "REDIS_SENTINEL_MASTER": "m"},
			wantErr: `redisstore: REDIS_SENTINELS: entry 2: want host:port with a port 1-65535`,
		},
		{
			name:    "REDIS_CLUSTER_NODES entry with port 0",
			env:     map[string]string{"REDIS_CLUSTER_NODES": "n1:0"},
			wantErr: `redisstore: REDIS_CLUSTER_NODES: entry 1: want host:port with a port 1-65535`,
		},
		{
			name:    "REDIS_CLUSTER_NODES entry without host",
			env:     map[string]string{"REDIS_CLUSTER_NODES": "n1:7000, :7001", "REDIS_PASSWORD": pw},
			wantErr: `redisstore: REDIS_CLUSTER_NODES: entry 2: want host:port with a port 1-65535`,
		},
		{
			name:    "REDIS_DB on a Cluster",
			env:     map[string]string{"REDIS_CLUSTER_NODES": "n1:7000", "REDIS_DB": "1", "REDIS_PASSWORD": pw},
			wantErr: "redisstore: REDIS_DB: a Redis Cluster (REDIS_CLUSTER_NODES) has database 0 only",
		},
		{
			name:    "bad REDIS_DB on a Cluster",
			env:     map[string]string{"REDIS_CLUSTER_NODES": "n1:7000", "REDIS_DB": "x"},
			wantErr: `redisstore: REDIS_DB: want an integer 0 or more, got "x"`,
		},
		{
			name:    "bad REDIS_TLS on Sentinel",
			env:     map[string]string{"REDIS_SENTINELS": "s1:26379", "REDIS_SENTINEL_MASTER": "m", "REDIS_TLS": "yes", "REDIS_SENTINEL_PASSWORD": spw},
			wantErr: `redisstore: REDIS_TLS: want true or false, got "yes"`,
		},
		{
			name:    "negative REDIS_WAIT_REPLICAS",
			env:     map[string]string{"REDIS_WAIT_REPLICAS": "-1", "REDIS_PASSWORD": pw},
			wantErr: `redisstore: REDIS_WAIT_REPLICAS: want an integer 0 or more, got "-1"`,
		},
		{
			name:    "bad REDIS_WAIT_REPLICAS",
			env:     map[string]string{"REDIS_WAIT_REPLICAS": "one", "REDIS_URL": rawURL},
			wantErr: `redisstore: REDIS_WAIT_REPLICAS: want an integer 0 or more, got "one"`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lookup := func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }
			cfg, err := fromEnv(lookup)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("fromEnv() error = %v, want %q", err, tc.wantErr)
				}
				for _, secret := range []string{pw, spw, urlpw, rawURL} {
					if strings.Contains(err.Error(), secret) {
						t.Errorf("fromEnv() error %q contains a secret", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("fromEnv() error = %v", err)
			}
			if got := summarizeDeployment(cfg); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("fromEnv() = %+v, want %+v", got, tc.want)
			}
			if _, err := cfg.normalize(); err != nil {
				t.Errorf("fromEnv() gave a Config that does not validate: %v", err)
			}
		})
	}
}

// TestFromEnvAddressListHidesCredentials checks that a URL with a password,
// put by mistake where a host:port list belongs (as hosting platforms hand
// out Redis URLs), is refused without the password in the error.
func TestFromEnvAddressListHidesCredentials(t *testing.T) {
	const secret = "hunter2-node"
	for _, tc := range []struct{ test, name, value string }{
		{"URL among cluster nodes", "REDIS_CLUSTER_NODES", "n1:7000,redis://app:" + secret + "@n2:7001"},
		{"URL as sentinel", "REDIS_SENTINELS", "rediss://:" + secret + "@s1:26379"},
		{"user and password before a sentinel", "REDIS_SENTINELS", "app:" + secret + "@s1:26379"},
	} {
		t.Run(tc.test, func(t *testing.T) {
			env := map[string]string{tc.name: tc.value, "REDIS_SENTINEL_MASTER": "m"}
			if tc.name == "REDIS_CLUSTER_NODES" {
				delete(env, "REDIS_SENTINEL_MASTER")
			}
			_, err := fromEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
			if err == nil || !strings.HasPrefix(err.Error(), "redisstore: "+tc.name+": ") {
				t.Fatalf("fromEnv() error = %v, want one naming %s", err, tc.name)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("fromEnv() error %q contains the password", err)
			}
		})
	}
}

// TestFromEnvNearCache checks the REDIS_NEAR_CACHE_* variables: read with
// every kind of deployment, refused with a Cluster when they turn the
// near-cache on, each bad value an error naming its variable and never a
// password, and every Config returned one that Open accepts.
func TestFromEnvNearCache(t *testing.T) {
	const pw, urlpw = "hunter2-master", "hunter2-url"
	rawURL := "redis://app:" + urlpw + "@cache:6379/0"
	all := map[string]string{
		"REDIS_NEAR_CACHE_MAX_ENTRIES": "100000", "REDIS_NEAR_CACHE_STALENESS": "50ms",
		"REDIS_NEAR_CACHE_STRICT": "true", "REDIS_NEAR_CACHE_EXTEND_EVERY": "30s",
	}
	with := func(base map[string]string, more ...string) map[string]string {
		env := maps.Clone(base)
		for i := 0; i+1 < len(more); i += 2 {
			env[more[i]] = more[i+1]
		}
		return env
	}
	allOn := NearCache{MaxEntries: 100_000, Staleness: 50 * time.Millisecond, Strict: true, ExtendEvery: 30 * time.Second}
	tests := []struct {
		name    string
		env     map[string]string
		want    NearCache
		wantErr string
	}{
		{name: "unset", env: nil, want: NearCache{}},
		{name: "empty values are unset", env: map[string]string{
			"REDIS_NEAR_CACHE_MAX_ENTRIES": "", "REDIS_NEAR_CACHE_STALENESS": "", "REDIS_NEAR_CACHE_STRICT": "", "REDIS_NEAR_CACHE_EXTEND_EVERY": "",
		}, want: NearCache{}},
		{name: "entries only", env: map[string]string{"REDIS_NEAR_CACHE_MAX_ENTRIES": "1"}, want: NearCache{MaxEntries: 1}},
		{name: "one server", env: with(all, "REDIS_HOST", "h", "REDIS_PASSWORD", pw), want: allOn},
		{name: "REDIS_URL", env: with(all, "REDIS_URL", rawURL), want: allOn},
		{name: "Sentinel", env: with(all, "REDIS_SENTINELS", "s1:26379", "REDIS_SENTINEL_MASTER", "m"), want: allOn},
		{name: "smallest staleness", env: map[string]string{"REDIS_NEAR_CACHE_MAX_ENTRIES": "10", "REDIS_NEAR_CACHE_STALENESS": "4ms"}, want: NearCache{MaxEntries: 10, Staleness: 4 * time.Millisecond}},
		{name: "strict false", env: map[string]string{"REDIS_NEAR_CACHE_MAX_ENTRIES": "10", "REDIS_NEAR_CACHE_STRICT": "0"}, want: NearCache{MaxEntries: 10}},
		{
			name: "off on a Cluster",
			env:  with(all, "REDIS_NEAR_CACHE_MAX_ENTRIES", "0", "REDIS_CLUSTER_NODES", "n1:7000"),
			want: NearCache{Staleness: 50 * time.Millisecond, Strict: true, ExtendEvery: 30 * time.Second},
		},

		{
			name:    "on with a Cluster",
			env:     with(all, "REDIS_CLUSTER_NODES", "n1:7000", "REDIS_PASSWORD", pw),
			wantErr: "redisstore: REDIS_NEAR_CACHE_MAX_ENTRIES: the near-cache is not available on a Redis Cluster (REDIS_CLUSTER_NODES) yet; set 0 or unset it",
		},
		{
			name:    "negative entries",
			env:     map[string]string{"REDIS_NEAR_CACHE_MAX_ENTRIES": "-1", "REDIS_URL": rawURL},
			wantErr: `redisstore: REDIS_NEAR_CACHE_MAX_ENTRIES: want an integer 0 or more, 0 for no near-cache, got "-1"`,
		},
		{
			name:    "entries not an integer",
			env:     map[string]string{"REDIS_NEAR_CACHE_MAX_ENTRIES": "1e5", "REDIS_PASSWORD": pw},
			wantErr: `redisstore: REDIS_NEAR_CACHE_MAX_ENTRIES: want an integer 0 or more, 0 for no near-cache, got "1e5"`,
		},
		{
			name:    "staleness below 4ms",
			env:     with(all, "REDIS_NEAR_CACHE_STALENESS", "3ms"),
			wantErr: `redisstore: REDIS_NEAR_CACHE_STALENESS: want a duration of at least 4ms such as 20ms, got "3ms"`,
		},
		{
			name:    "staleness without a unit",
			env:     with(all, "REDIS_NEAR_CACHE_STALENESS", "20", "REDIS_URL", rawURL),
			wantErr: `redisstore: REDIS_NEAR_CACHE_STALENESS: want a duration of at least 4ms such as 20ms, got "20"`,
		},
		{
			name:    "staleness 0",
			env:     with(all, "REDIS_NEAR_CACHE_STALENESS", "0"),
			wantErr: `redisstore: REDIS_NEAR_CACHE_STALENESS: want a duration of at least 4ms such as 20ms, got "0"`,
		},
		{
			name:    "bad strict",
			env:     with(all, "REDIS_NEAR_CACHE_STRICT", "yes", "REDIS_PASSWORD", pw),
			wantErr: `redisstore: REDIS_NEAR_CACHE_STRICT: want true or false, got "yes"`,
		},
		{
			name:    "extend every 0",
			env:     with(all, "REDIS_NEAR_CACHE_EXTEND_EVERY", "0s"),
			wantErr: `redisstore: REDIS_NEAR_CACHE_EXTEND_EVERY: want a positive duration such as 1m, got "0s"`,
		},
		{
			name:    "negative extend every",
			env:     with(all, "REDIS_NEAR_CACHE_EXTEND_EVERY", "-1m"),
			wantErr: `redisstore: REDIS_NEAR_CACHE_EXTEND_EVERY: want a positive duration such as 1m, got "-1m"`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := fromEnv(func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok })
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("fromEnv() error = %v, want %q", err, tc.wantErr)
				}
				for _, secret := range []string{pw, urlpw, rawURL} {
					if strings.Contains(err.Error(), secret) {
						t.Errorf("fromEnv() error %q contains a secret", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("fromEnv() error = %v", err)
			}
			if cfg.NearCache != tc.want {
				t.Fatalf("fromEnv().NearCache = %+v, want %+v", cfg.NearCache, tc.want)
			}
			if _, err := cfg.normalize(); err != nil {
				t.Errorf("fromEnv() gave a Config that does not validate: %v", err)
			}
		})
	}
}

// FuzzFromEnvNearCache checks that whatever the REDIS_NEAR_CACHE_*
// variables hold, on one server or a Cluster, FromEnv either returns a
// Config that Open accepts or an error that names one of them, never a
// password.
func FuzzFromEnvNearCache(f *testing.F) {
	for _, s := range []struct {
		entries, staleness, strict, extend string
		cluster                            bool
	}{
		{"100000", "20ms", "false", "1m", false},
		{"1", "4ms", "true", "1ns", false},
		{"0", "3ms", "1", "0", true},
		{"10", "", "", "", true},
		{"-1", "-20ms", "yes", "1m", false},
		{"99999999999999999999", "1h", "T", "", false},
	} {
		f.Add(s.entries, s.staleness, s.strict, s.extend, s.cluster)
	}
	const pw = "hunter2-master"
	f.Fuzz(func(t *testing.T, entries, staleness, strict, extend string, cluster bool) {
		env := map[string]string{
			"REDIS_NEAR_CACHE_MAX_ENTRIES": entries, "REDIS_NEAR_CACHE_STALENESS": staleness,
			"REDIS_NEAR_CACHE_STRICT": strict, "REDIS_NEAR_CACHE_EXTEND_EVERY": extend,
			"REDIS_PASSWORD": pw,
		}
		if cluster {
			env["REDIS_CLUSTER_NODES"] = "n1:7000"
		}
		cfg, err := fromEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
		if err != nil {
			if !strings.HasPrefix(err.Error(), "redisstore: REDIS_NEAR_CACHE_") {
				t.Fatalf("fromEnv() error = %q, want one naming a REDIS_NEAR_CACHE_ variable", err)
			}
			if strings.Contains(err.Error(), pw) {
				t.Fatalf("fromEnv() error %q contains the password", err)
			}
			return
		}
		if _, err := cfg.normalize(); err != nil {
			t.Fatalf("fromEnv() gave a Config that does not validate: %v", err)
		}
		if cfg.NearCache.MaxEntries > 0 && cluster {
			t.Fatalf("fromEnv() turned the near-cache on (%+v) on a Cluster", cfg.NearCache)
		}
	})
}
