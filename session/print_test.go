package session

import (
	"io"
	"log/slog"
	"testing"

	"github.com/sessionkit/sessionkit/internal/redact/redacttest"
)

// TestConfigPrintsNoKeys prints a Config and a Manager as an application
// might log them at start-up, with every fmt verb and both slog handlers,
// and checks that no signing key, retired key or TagKey shows, while the
// other settings and the number of keys do.
func TestConfigPrintsNoKeys(t *testing.T) {
	signing, next, retired, tag := testKey(0xa0), testKey(0x40), testKey(0xc0), testKey(0x60)
	secrets := [][]byte{signing, next, retired, tag}
	cfg := Config{
		Keys:        [][]byte{signing, next},
		RetiredKeys: [][]byte{retired},
		TagKey:      tag,
		CookieName:  "app-cookie",
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	m, err := New(nopStore{}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		v    any
		want []string
	}{
		{"Config", cfg, []string{"[2 keys]", "[1 key]", "[redacted]", "app-cookie"}},
		{"Config without TagKey", Config{Keys: [][]byte{signing}, CookieName: "app-cookie"}, []string{"[1 key]", "app-cookie"}},
		{"Manager", m, []string{"[2 keys]", "[1 key]", "[redacted]", "app-cookie"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			redacttest.Check(t, tc.v, secrets, tc.want...)
		})
	}
}

// TestNilManagerPrints checks that a nil *Manager prints and logs as
// <nil>, not as the panic a method reading its fields would make (which
// slog writes, stack and all, as "LogValue panicked").
func TestNilManagerPrints(t *testing.T) {
	redacttest.CheckNil(t, (*Manager)(nil))
}
