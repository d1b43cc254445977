package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/redisstore"
	"github.com/sessionkit/sessionkit/session"
)

// configLines returns the "example: configuration" records of a JSON log.
func configLines(t *testing.T, log string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for line := range strings.Lines(log) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec["msg"] == "example: configuration" {
			lines = append(lines, rec)
		}
	}
	return lines
}

// checkFields reports each field of want that rec lacks or holds another
// value in.
func checkFields(t *testing.T, rec map[string]any, want map[string]any) {
	t.Helper()
	for k, v := range want {
		if got, ok := rec[k]; !ok || fmt.Sprint(got) != fmt.Sprint(v) {
			t.Errorf("configuration %s = %v (present %v), want %v", k, got, ok, v)
		}
	}
}

// TestStartupLogsConfig starts the example with a Redis password in
// REDIS_URL, another in REDIS_PASSWORD, the near-cache on, two signing
// keys, a tag key, a rate limit key, a login limit and the previous record
// format: start-up logs exactly one configuration line with the effective
// settings, and no log line holds a password, a key or the URL.
func TestStartupLogsConfig(t *testing.T) {
	const urlPassword, envPassword = "url-pw-6143-secret", "env-pw-2718-secret"
	r := redistest.Start(t, "--requirepass", urlPassword)
	key1, key2 := testKeys(), base64.RawURLEncoding.EncodeToString(randomKey())
	tagKey, rateKey, retiredKey := testKeys(), testKeys(), testKeys()
	redisURL := "redis://default:" + urlPassword + "@" + r.Addr() + "/0"
	t.Setenv("REDIS_URL", redisURL)
	t.Setenv("REDIS_PASSWORD", envPassword)
	t.Setenv("REDIS_WAIT_REPLICAS", "0")
	t.Setenv("REDIS_NEAR_CACHE_MAX_ENTRIES", "2000")
	t.Setenv("REDIS_NEAR_CACHE_STALENESS", "30ms")
	t.Setenv("SESSION_KEYS", key1+","+key2)
	t.Setenv("SESSION_TAG_KEY", tagKey)
	t.Setenv("SESSION_RETIRED_KEYS", retiredKey)
	t.Setenv("RATE_LIMIT_KEY", rateKey)
	t.Setenv("LOGIN_LIMIT_PER_USER", "7")
	t.Setenv("REAUTH_AFTER", "0")
	t.Setenv("SESSION_MAX_PER_USER", "3")
	t.Setenv("SESSION_IDLE_TIMEOUT", "0")
	t.Setenv("SESSION_LIFETIME", "12h")
	t.Setenv("SESSION_PREVIOUS_FORMAT", "true")
	t.Setenv("ADDR", "127.0.0.1:0")

	var buf bytes.Buffer
	a, err := setup(slog.New(slog.NewJSONHandler(&buf, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.close)
	if err := a.store.Ping(context.Background()); err != nil {
		t.Fatalf("the example does not reach Redis with the URL's password: %v", err)
	}

	out := buf.String()
	lines := configLines(t, out)
	if len(lines) != 1 {
		t.Fatalf("start-up logged %d configuration lines, want 1:\n%s", len(lines), out)
	}
	checkFields(t, lines[0], map[string]any{
		"level": "INFO", "listen": "127.0.0.1:0",
		"mode": "single", "addr": r.Addr(), "embedded": false, "tls": false,
		"username": "default", "password_set": true, "db": 0,
		"pool_max_active": redisstore.DefaultMaxActive, "pool_max_idle": redisstore.DefaultMaxActive,
		"pool_idle_timeout": "5m0s", "dial_timeout": "1s", "read_timeout": "1s", "write_timeout": "1s", "store_timeout": "1s",
		"key_prefix": "", "wait_replicas": 0,
		"near_cache_max_entries": 2000, "near_cache_staleness": "30ms", "near_cache_strict": false, "near_cache_extend_every": "1m0s",
		"session_lifetime": "12h0m0s", "session_idle_timeout": "off",
		"cookie_name": "session", "cookie_secure": false,
		"max_sessions_per_user": 3, "previous_format": true, "tag_key_set": true, "signing_keys": 2, "retired_keys": 1,
		"rate_limit_key_set": true, "login_limit_per_user": 7, "login_limit_per_ip": 100, "reauth_after": "0s",
	})
	for name, secret := range map[string]string{
		"the password in REDIS_URL": urlPassword, "REDIS_PASSWORD": envPassword, "REDIS_URL": redisURL,
		"the first signing key": key1, "the second signing key": key2, "SESSION_TAG_KEY": tagKey,
		"RATE_LIMIT_KEY": rateKey, "SESSION_RETIRED_KEYS": retiredKey,
	} {
		if strings.Contains(out, secret) {
			t.Errorf("the start-up log shows %s:\n%s", name, out)
		}
	}
}

// TestStartupLogsUserInForce starts the example with REDIS_USERNAME but no
// password: with a "nopass" user, its connections authenticate as that
// user, never as default, and the configuration line names it; with a
// user that has a password, start-up stops with the advice to check the
// credentials, naming the user.
func TestStartupLogsUserInForce(t *testing.T) {
	r := redistest.Start(t)
	r.Do(t, "ACL", "SETUSER", "app", "on", "nopass", "~*", "+@all")
	t.Setenv("REDIS_URL", "") // with REDIS_URL, REDIS_USERNAME is not read
	t.Setenv("REDIS_HOST", "127.0.0.1")
	t.Setenv("REDIS_PORT", strconv.Itoa(r.Port))
	t.Setenv("REDIS_USERNAME", "app")
	t.Setenv("SESSION_KEYS", testKeys())
	var buf bytes.Buffer
	a, err := setup(slog.New(slog.NewJSONHandler(&buf, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.close)
	if err := a.store.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	clients, err := redis.String(r.Do(t, "CLIENT", "LIST"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(clients) {
		if strings.Contains(line, " cmd=discard ") && !strings.Contains(line, " user=app ") { // Ping's last command
			t.Errorf("a connection of the example runs as another user than app: %s", line)
		}
	}
	lines := configLines(t, buf.String())
	if len(lines) != 1 {
		t.Fatalf("start-up logged %d configuration lines, want 1:\n%s", len(lines), buf.String())
	}
	checkFields(t, lines[0], map[string]any{"username": "app", "password_set": false})

	r.Do(t, "ACL", "SETUSER", "app", "resetpass", ">app-pw-5120")
	_, err = setup(slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if err == nil || !strings.Contains(err.Error(), "authentication failed for user app (REDIS_URL, or REDIS_USERNAME / REDIS_PASSWORD)") {
		t.Fatalf("setup as a user with a password, none set = %v, want the credentials named", err)
	}
}

// TestConfigAttrs checks the configuration line of each deployment, with
// defaults shown as their values and the secrets of each left out.
func TestConfigAttrs(t *testing.T) {
	key := randomKey()
	secrets := []string{"redis-pw", "sentinel-pw", string(key), base64.StdEncoding.EncodeToString(key)}
	for _, tc := range []struct {
		name     string
		embedded bool
		login    loginConfig
		rcfg     redisstore.Config
		scfg     session.Config
		want     map[string]any
		absent   []string
	}{
		{
			name: "defaults", embedded: true,
			scfg: session.Config{Keys: [][]byte{key}},
			want: map[string]any{
				"mode": "single", "addr": redisstore.DefaultAddr, "embedded": true, "tls": false,
				"username": "", "password_set": false, "pool_max_active": 64, "pool_max_idle": 64,
				"session_lifetime": "24h0m0s", "session_idle_timeout": "30m0s",
				"cookie_name": session.DefaultCookieName, "cookie_secure": true,
				"max_sessions_per_user": 0, "previous_format": false, "tag_key_set": false, "signing_keys": 1,
				"rate_limit_key_set": false, "login_limit_per_user": 5, "login_limit_per_ip": 100, "reauth_after": "10m0s",
				"near_cache_max_entries": 0,
			},
			absent: []string{"sentinels", "nodes", "near_cache_staleness", "near_cache_strict", "near_cache_extend_every"},
		},
		{
			name: "sentinel", login: loginConfig{keySet: true, perUser: 3, perIP: 1000},
			rcfg: redisstore.Config{
				SentinelAddrs: []string{"10.0.0.1:26379", "10.0.0.2:26379"}, SentinelMaster: "mymaster",
				SentinelUsername: "watcher", SentinelPassword: "sentinel-pw",
				Username: "app", Password: "redis-pw", DB: 2, TLS: &tls.Config{},
				MaxActive: 8, MaxIdle: 4, Timeout: 2 * time.Second, DialTimeout: 300 * time.Millisecond,
				KeyPrefix: "myapp:", WaitReplicas: 1,
				NearCache: redisstore.NearCache{MaxEntries: 5000, Strict: true},
			},
			scfg: session.Config{Keys: [][]byte{key, key}, InsecureCookie: true, IdleTimeout: time.Hour, MaxSessionsPerUser: 5},
			want: map[string]any{
				"mode": "sentinel", "sentinels": "10.0.0.1:26379,10.0.0.2:26379", "sentinel_master": "mymaster",
				"sentinel_username": "watcher", "sentinel_password_set": true,
				"tls": true, "username": "app", "password_set": true, "db": 2,
				"pool_max_active": 8, "pool_max_idle": 4, "store_timeout": "2s", "dial_timeout": "300ms",
				"key_prefix": "myapp:", "wait_replicas": 1,
				"near_cache_max_entries": 5000, "near_cache_staleness": "20ms", "near_cache_strict": true, "near_cache_extend_every": "1m0s",
				"session_idle_timeout": "1h0m0s", "cookie_name": "session", "cookie_secure": false,
				"max_sessions_per_user": 5, "signing_keys": 2,
				"rate_limit_key_set": true, "login_limit_per_user": 3, "login_limit_per_ip": 1000,
			},
			absent: []string{"addr", "nodes", "embedded"},
		},
		{
			name: "cluster",
			rcfg: redisstore.Config{ClusterNodes: []string{"10.0.1.1:7000", "10.0.1.2:7000"}, Password: "redis-pw", MaxActive: 16},
			scfg: session.Config{Keys: [][]byte{key}, TagKey: key, CookieName: "sid", PreviousFormat: true},
			want: map[string]any{
				"mode": "cluster", "nodes": "10.0.1.1:7000,10.0.1.2:7000", "password_set": true,
				"pool_max_active": 16, "pool_max_idle": 16, "db": 0,
				"cookie_name": "sid", "tag_key_set": true, "previous_format": true,
			},
			absent: []string{"addr", "sentinels", "embedded", "near_cache_staleness"},
		},
		{
			// Without a password a username is still sent (AUTH with an
			// empty password): the connections are that user's, and the
			// line says so.
			name: "usernames without passwords",
			rcfg: redisstore.Config{
				SentinelAddrs: []string{"10.0.0.1:26379"}, SentinelMaster: "mymaster",
				SentinelUsername: "watcher", Username: "app",
			},
			scfg: session.Config{Keys: [][]byte{key}},
			want: map[string]any{
				"mode": "sentinel", "sentinel_username": "watcher", "sentinel_password_set": false,
				"username": "app", "password_set": false,
			},
		},
		{
			name: "near-cache",
			rcfg: redisstore.Config{
				Addr:      "10.0.2.1:6379",
				NearCache: redisstore.NearCache{MaxEntries: 100_000, Staleness: 50 * time.Millisecond, ExtendEvery: 10 * time.Second},
			},
			scfg: session.Config{Keys: [][]byte{key}},
			want: map[string]any{
				"mode": "single", "addr": "10.0.2.1:6379", "embedded": false,
				"near_cache_max_entries": 100000, "near_cache_staleness": "50ms", "near_cache_strict": false, "near_cache_extend_every": "10s",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			slog.New(slog.NewJSONHandler(&buf, nil)).LogAttrs(context.Background(), slog.LevelInfo, "example: configuration",
				configAttrs("127.0.0.1:8080", tc.embedded, tc.rcfg, tc.scfg, tc.login)...)
			lines := configLines(t, buf.String())
			if len(lines) != 1 {
				t.Fatalf("got %d configuration lines", len(lines))
			}
			checkFields(t, lines[0], tc.want)
			for _, k := range tc.absent {
				if _, ok := lines[0][k]; ok {
					t.Errorf("configuration of a %s deployment has %s", tc.name, k)
				}
			}
			for _, s := range secrets {
				if strings.Contains(buf.String(), s) {
					t.Errorf("configuration line shows the secret %q: %s", s, buf.String())
				}
			}
		})
	}
}

// TestRedisFromEnv checks which variables make the example use a Redis
// server rather than the embedded one: any that says which server or how
// to reach it (REDIS_PORT alone means 127.0.0.1 on that port), not the
// near-cache's or REDIS_WAIT_REPLICAS.
func TestRedisFromEnv(t *testing.T) {
	server := []string{"REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_USERNAME", "REDIS_PASSWORD", "REDIS_DB", "REDIS_TLS", "REDIS_SENTINELS", "REDIS_CLUSTER_NODES"}
	for _, name := range server {
		t.Run(name, func(t *testing.T) {
			t.Setenv(name, "x")
			if !redisFromEnv() {
				t.Errorf("with %s set: embedded Redis, want the server it names", name)
			}
		})
	}
	t.Run("none", func(t *testing.T) {
		for _, name := range server {
			t.Setenv(name, "")
		}
		t.Setenv("REDIS_NEAR_CACHE_MAX_ENTRIES", "100")
		t.Setenv("REDIS_WAIT_REPLICAS", "1")
		if redisFromEnv() {
			t.Error("with only REDIS_NEAR_CACHE_MAX_ENTRIES and REDIS_WAIT_REPLICAS set: a Redis server, want the embedded one")
		}
	})
}

// TestLoopback checks which ADDR values the example takes for loopback
// ones, where a cookie without Secure goes unwarned.
func TestLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8080": true,
		"127.1.2.3:80":   true,
		"[::1]:8080":     true,
		"localhost:8080": true,
		"0.0.0.0:8080":   false,
		":8080":          false,
		"[::]:8080":      false,
		"10.0.0.5:8080":  false,
		"app.local:8080": false,
		"garbage":        false,
	} {
		if got := loopback(addr); got != want {
			t.Errorf("loopback(%q) = %v, want %v", addr, got, want)
		}
	}
}
