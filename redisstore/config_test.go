package redisstore

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
)

func TestConfigDefaults(t *testing.T) {
	got, err := Config{}.normalize()
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Addr:         "127.0.0.1:6379",
		DialTimeout:  time.Second,
		ReadTimeout:  time.Second,
		WriteTimeout: time.Second,
		MaxActive:    64,
		MaxIdle:      64,
		IdleTimeout:  5 * time.Minute,
		Timeout:      time.Second,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Config{}.normalize() = %+v, want %+v", got, want)
	}
	for _, tc := range []struct{ active, idle, wantIdle int }{{8, 0, 8}, {8, 2, 2}, {0, 4, 4}} {
		got, err := Config{MaxActive: tc.active, MaxIdle: tc.idle}.normalize()
		if err != nil || got.MaxIdle != tc.wantIdle {
			t.Errorf("Config{MaxActive: %d, MaxIdle: %d}: MaxIdle = %d, %v; want %d", tc.active, tc.idle, got.MaxIdle, err, tc.wantIdle)
		}
	}
}

func TestConfigInvalid(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"DialTimeout", Config{DialTimeout: -1}, "redisstore: Config.DialTimeout: must not be negative"},
		{"ReadTimeout", Config{ReadTimeout: -1}, "redisstore: Config.ReadTimeout: must not be negative"},
		{"WriteTimeout", Config{WriteTimeout: -1}, "redisstore: Config.WriteTimeout: must not be negative"},
		{"IdleTimeout", Config{IdleTimeout: -1}, "redisstore: Config.IdleTimeout: must not be negative"},
		{"Timeout", Config{Timeout: -1}, "redisstore: Config.Timeout: must not be negative"},
		{"DB", Config{DB: -1}, "redisstore: Config.DB: must not be negative"},
		{"MaxActive", Config{MaxActive: -1}, "redisstore: Config.MaxActive: must not be negative"},
		{"MaxIdle", Config{MaxIdle: -1}, "redisstore: Config.MaxIdle: must not be negative"},
		{"Addr without port", Config{Addr: "localhost"}, "redisstore: Config.Addr: want host:port with a port 1-65535"},
		{"Addr a URL", Config{Addr: "redis://:secret@localhost:6379/0"}, "redisstore: Config.Addr: want host:port with a port 1-65535, not a URL: ParseURL (or FromEnv's REDIS_URL) turns a redis:// or rediss:// URL into a Config"},
		{"Addr without host", Config{Addr: ":6379"}, "redisstore: Config.Addr: want host:port with a port 1-65535"},
		{"Addr with port 0", Config{Addr: "localhost:0"}, "redisstore: Config.Addr: want host:port with a port 1-65535"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.cfg.normalize()
			if err == nil || err.Error() != tc.want {
				t.Fatalf("normalize() error = %v, want %q", err, tc.want)
			}
			if _, err := NewPool(tc.cfg); err == nil || !strings.HasPrefix(err.Error(), "redisstore: Config.") {
				t.Errorf("NewPool() error = %v, want the same", err)
			}
			if _, err := Open(tc.cfg); err == nil {
				t.Errorf("Open() succeeded, want an error")
			}
		})
	}
}

func TestMilliseconds(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want int64
	}{
		{time.Nanosecond, 1},
		{time.Millisecond, 1},
		{time.Millisecond + 1, 2},
		{1500 * time.Microsecond, 2},
		{time.Hour, 3_600_000},
		{1<<63 - 1, (1<<63-1)/1_000_000 + 1},
	}
	for _, tc := range tests {
		if got := milliseconds(tc.in); got != tc.want {
			t.Errorf("milliseconds(%v) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestEscapeGlob(t *testing.T) {
	tests := []struct{ in, want string }{
		{"session:", "session:"},
		{"app[1]:session:", `app\[1\]:session:`},
		{`a*b?c\d^`, `a\*b\?c\\d\^`},
	}
	for _, tc := range tests {
		if got := escapeGlob(tc.in); got != tc.want {
			t.Errorf("escapeGlob(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestConfigDeployment checks the validation of the Sentinel and Cluster
// fields: one kind of deployment at a time, Addr empty with either, database
// 0 and a KeyPrefix without braces on a Cluster, Sentinel fields only with
// SentinelAddrs, and host:port entries. No error carries a password.
func TestConfigDeployment(t *testing.T) {
	const pw, spw = "hunter2-master", "hunter2-sentinel"
	sentinels := []string{"s1:26379", "s2:26379"}
	nodes := []string{"n1:7000", "n2:7001"}
	tests := []struct {
		name string
		cfg  Config
		want string // the whole error; "" for valid
	}{
		{"Sentinel", Config{SentinelAddrs: sentinels, SentinelMaster: "mymaster", SentinelUsername: "su", SentinelPassword: spw, Password: pw, DB: 3}, ""},
		{"Cluster", Config{ClusterNodes: nodes, Password: pw}, ""},
		{"Cluster, IPv6 node", Config{ClusterNodes: []string{"[::1]:7000"}}, ""},
		{"one server, KeyPrefix with braces", Config{KeyPrefix: "{app}:"}, ""},
		{"Sentinel, KeyPrefix with braces", Config{SentinelAddrs: sentinels, SentinelMaster: "m", KeyPrefix: "{app}:"}, ""},
		{"WaitReplicas", Config{WaitReplicas: 2}, ""},

		{"Sentinel and Cluster", Config{SentinelAddrs: sentinels, SentinelMaster: "m", ClusterNodes: nodes, Password: pw},
			"redisstore: Config: SentinelAddrs and ClusterNodes are two different deployments; set one"},
		{"Addr with SentinelAddrs", Config{Addr: "h:6379", SentinelAddrs: sentinels, SentinelMaster: "m", Password: pw},
			"redisstore: Config.Addr: must be empty with SentinelAddrs"},
		{"Addr with ClusterNodes", Config{Addr: "h:6379", ClusterNodes: nodes, Password: pw},
			"redisstore: Config.Addr: must be empty with ClusterNodes"},
		{"DB on a Cluster", Config{ClusterNodes: nodes, DB: 1, Password: pw},
			"redisstore: Config.DB: a Redis Cluster has database 0 only"},
		{"KeyPrefix with { on a Cluster", Config{ClusterNodes: nodes, KeyPrefix: "app{", Password: pw},
			`redisstore: Config.KeyPrefix: must not contain "{" or "}" on a Redis Cluster: they would change every key's hash slot`},
		{"KeyPrefix with } on a Cluster", Config{ClusterNodes: nodes, KeyPrefix: "}app:"},
			`redisstore: Config.KeyPrefix: must not contain "{" or "}" on a Redis Cluster: they would change every key's hash slot`},
		{"SentinelMaster without SentinelAddrs", Config{SentinelMaster: "m", Password: pw},
			"redisstore: Config.SentinelMaster: set without SentinelAddrs"},
		{"SentinelUsername without SentinelAddrs", Config{SentinelUsername: "su"},
			"redisstore: Config.SentinelUsername: set without SentinelAddrs"},
		{"SentinelPassword without SentinelAddrs", Config{SentinelPassword: spw},
			"redisstore: Config.SentinelPassword: set without SentinelAddrs"},
		{"SentinelPassword on a Cluster", Config{ClusterNodes: nodes, SentinelPassword: spw},
			"redisstore: Config.SentinelPassword: set without SentinelAddrs"},
		{"SentinelAddrs without SentinelMaster", Config{SentinelAddrs: sentinels, SentinelPassword: spw, Password: pw},
			"redisstore: Config.SentinelMaster: required with SentinelAddrs"},
		{"SentinelMaster with a newline", Config{SentinelAddrs: sentinels, SentinelMaster: "mymaster\n", Password: pw},
			`redisstore: Config.SentinelMaster: "mymaster\n" has white space around it`},
		{"SentinelAddrs entry without port", Config{SentinelAddrs: []string{"s1:26379", "s2"}, SentinelMaster: "m", SentinelPassword: spw},
			"redisstore: Config.SentinelAddrs[1]: want host:port with a port 1-65535"},
		// Twice listed, one sentinel would outvote the others.
		{"SentinelAddrs entry twice", Config{SentinelAddrs: []string{"s1:26379", "s2:26379", "s1:26379"}, SentinelMaster: "m", SentinelPassword: spw},
			"redisstore: Config.SentinelAddrs[2]: the same sentinel as SentinelAddrs[0]: list each sentinel once, or it votes twice on the master"},
		{"SentinelAddrs entry twice, in other forms", Config{SentinelAddrs: []string{"Sentinel-A:26379", "[::1]:26379", "sentinel-a:026379"}, SentinelMaster: "m", SentinelPassword: spw},
			"redisstore: Config.SentinelAddrs[2]: the same sentinel as SentinelAddrs[0]: list each sentinel once, or it votes twice on the master"},
		{"SentinelAddrs fully qualified twice", Config{SentinelAddrs: []string{"sentinel.local:26379", "sentinel.local.:26379"}, SentinelMaster: "m", SentinelPassword: spw},
			"redisstore: Config.SentinelAddrs[1]: the same sentinel as SentinelAddrs[0]: list each sentinel once, or it votes twice on the master"},
		{"SentinelAddrs IPv6 twice", Config{SentinelAddrs: []string{"[::1]:26379", "[0:0::1]:26379"}, SentinelMaster: "m", SentinelPassword: spw},
			"redisstore: Config.SentinelAddrs[1]: the same sentinel as SentinelAddrs[0]: list each sentinel once, or it votes twice on the master"},
		{"SentinelAddrs on other ports", Config{SentinelAddrs: []string{"s1:26379", "s1:26380", "[::1]:26379", "127.0.0.1:26379"}, SentinelMaster: "m", SentinelPassword: spw}, ""},
		{"ClusterNodes entry twice", Config{ClusterNodes: []string{"n1:7000", "n1:7000"}}, ""},
		{"SentinelAddrs empty entry", Config{SentinelAddrs: []string{""}, SentinelMaster: "m"},
			"redisstore: Config.SentinelAddrs[0]: want host:port with a port 1-65535"},
		{"ClusterNodes entry without host", Config{ClusterNodes: []string{":7000"}, Password: pw},
			"redisstore: Config.ClusterNodes[0]: want host:port with a port 1-65535"},
		{"ClusterNodes entry with a password", Config{ClusterNodes: []string{"n1:7000", "u:" + pw + "@n2:7001"}},
			"redisstore: Config.ClusterNodes[1]: want host:port with a port 1-65535"},
		{"SentinelAddrs entry with port 0", Config{SentinelAddrs: []string{"s1:26379", "s2:0"}, SentinelMaster: "m"},
			"redisstore: Config.SentinelAddrs[1]: want host:port with a port 1-65535"},
		{"ClusterNodes entry with port 0", Config{ClusterNodes: []string{"n1:0"}},
			"redisstore: Config.ClusterNodes[0]: want host:port with a port 1-65535"},
		{"negative WaitReplicas", Config{WaitReplicas: -1, Password: pw},
			"redisstore: Config.WaitReplicas: must not be negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.cfg.normalize()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("normalize() error = %v, want nil", err)
				}
				if tc.cfg.mode() != modeSingle && got.Addr != "" {
					t.Errorf("normalize().Addr = %q, want it left empty (no default) with Sentinel or Cluster", got.Addr)
				}
				return
			}
			if err == nil || err.Error() != tc.want {
				t.Fatalf("normalize() error = %v, want %q", err, tc.want)
			}
			for _, secret := range []string{pw, spw} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("normalize() error %q contains a password", err)
				}
			}
			if _, err := Open(tc.cfg); err == nil || err.Error() != tc.want {
				t.Errorf("Open() error = %v, want %q", err, tc.want)
			}
			if _, err := NewPool(tc.cfg); err == nil || err.Error() != tc.want {
				t.Errorf("NewPool() error = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestNewRefusesDeployments checks that New, which takes a Source of
// connections to one server, refuses a Config naming Sentinel or Cluster
// nodes, which only Open can connect to.
func TestNewRefusesDeployments(t *testing.T) {
	pool := &redis.Pool{Dial: func() (redis.Conn, error) { return nil, errors.New("not dialled in this test") }}
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"Sentinel", Config{SentinelAddrs: []string{"s1:26379"}, SentinelMaster: "mymaster", Password: "hunter2"}},
		{"Cluster", Config{ClusterNodes: []string{"n1:7000"}, Password: "hunter2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(pool, tc.cfg)
			if err == nil || s != nil || !strings.Contains(err.Error(), "use Open") {
				t.Fatalf("New(pool, %s Config) = %v, %v; want an error saying to use Open", tc.name, s, err)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("New error %q contains the password", err)
			}
		})
	}
	if s, err := New(pool, Config{Addr: "h:6379", WaitReplicas: 1}); err != nil || s == nil {
		t.Errorf("New(pool, one server with WaitReplicas) = %v, %v; want a Store", s, err)
	}
}
