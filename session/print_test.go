package session

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
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

// TestEmbeddedConfigPrints checks what README ("Upgrading") and String
// say of a Config in an application's own struct: as a named field, fmt,
// slog and encoding/json print both it (keys redacted) and the struct's
// other fields; embedded, its promoted methods print the Config alone.
func TestEmbeddedConfigPrints(t *testing.T) {
	// Not digits alone, which the timestamp of a log line may hold.
	const portValue = "port-8080"
	key := testKey(0xa0)
	cfg := Config{Keys: [][]byte{key}, CookieName: "app-cookie"}
	type named struct {
		Session Config
		Port    string
	}
	type embedded struct {
		Config
		Port string
	}
	for _, tc := range []struct {
		name     string
		v        any
		wantPort bool
	}{
		{"named field", named{cfg, portValue}, true},
		{"embedded", embedded{cfg, portValue}, false},
	} {
		for form, out := range redacttest.Printed(t, tc.v) {
			if !strings.Contains(out, "[1 key]") || !strings.Contains(out, "app-cookie") || slices.ContainsFunc(redacttest.Forms(key), func(f string) bool { return strings.Contains(out, f) }) {
				t.Errorf("%s %s = %s, want the Config, its key redacted", tc.name, form, out)
			}
			if got := strings.Contains(out, portValue); got != tc.wantPort {
				t.Errorf("%s %s = %s, want Port shown %t", tc.name, form, out, tc.wantPort)
			}
		}
	}
}

// TestUnexportedFieldPrintsKeys checks the exception String and
// docs/security.md (16.2.5) state: fmt cannot call the methods of a Config
// it reaches through an unexported field, and prints its keys, while an
// exported field prints redacted. Should Go ever call them, this test
// fails and the docs can drop the exception.
func TestUnexportedFieldPrintsKeys(t *testing.T) {
	key := testKey(0xa0)
	cfg := Config{Keys: [][]byte{key}}
	type exported struct{ Session Config }
	type unexported struct{ session Config }
	leaks := func(out string) bool {
		return slices.ContainsFunc(redacttest.Forms(key), func(f string) bool { return strings.Contains(out, f) })
	}
	if out := fmt.Sprintf("%+v", exported{cfg}); leaks(out) || !strings.Contains(out, "[1 key]") {
		t.Errorf("Sprintf(%%+v, exported field) = %s, want the key redacted", out)
	}
	if out := fmt.Sprintf("%+v", unexported{cfg}); !leaks(out) {
		t.Errorf("Sprintf(%%+v, unexported field) = %s, want the key printed, as docs/security.md warns", out)
	}
}
