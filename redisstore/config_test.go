package redisstore

import (
	"strings"
	"testing"
	"time"
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
	if got != want {
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
		{"Addr without port", Config{Addr: "localhost"}, "redisstore: Config.Addr: want host:port"},
		{"Addr without host", Config{Addr: ":6379"}, "redisstore: Config.Addr: want host:port"},
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
