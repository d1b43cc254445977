package middleware

import (
	"testing"
	"time"

	"github.com/sessionkit/sessionkit/internal/redact/redacttest"
)

// nopCounter is a RateCounter for tests that never count.
type nopCounter struct{ RateCounter }

// TestRateLimitConfigPrintsNoSecret prints a RateLimitConfig, and the
// middleware built from it, as an application might log them, with every
// fmt verb and both slog handlers, and checks that the Secret never shows,
// while the rules and that a Secret is set do.
func TestRateLimitConfigPrintsNoSecret(t *testing.T) {
	secret := make([]byte, 32)
	for i := range secret {
		secret[i] = byte(0xa0 + i)
	}
	cfg := RateLimitConfig{
		Rules:  []Rule{{Name: "login-form", Limit: 5, Window: time.Minute, Key: ByIP()}},
		Secret: secret,
	}
	mw, err := LoginLimit(nopCounter{}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		v    any
		want []string
	}{
		{"RateLimitConfig", cfg, []string{"login-form", "[redacted]"}},
		{"RateLimitConfig without Secret", RateLimitConfig{Rules: cfg.Rules}, []string{"login-form"}},
		{"middleware", mw, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			redacttest.Check(t, tc.v, [][]byte{secret}, tc.want...)
		})
	}
}
