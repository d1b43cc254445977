// Package redacttest checks, in tests, that a value prints none of its
// secrets, whichever way an application prints or logs it.
package redacttest

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"testing"
)

// verbs are the fmt verbs Outputs prints with.
var verbs = []string{"%v", "%+v", "%s", "%#v", "%q", "%d", "%x"}

// Outputs returns what v prints as, by name: with each fmt verb, and
// logged by slog's text and JSON handlers as a value, inside a group, and
// (when v is not a pointer already) as a pointer to it. The outputs named
// "... %x" are hexadecimal.
func Outputs(v any) map[string]string {
	vals := map[string]any{"value": v}
	if reflect.TypeOf(v).Kind() != reflect.Pointer {
		p := reflect.New(reflect.TypeOf(v))
		p.Elem().Set(reflect.ValueOf(v))
		vals["pointer"] = p.Interface()
	}
	out := map[string]string{}
	for form, x := range vals {
		for _, verb := range verbs {
			out[form+" "+verb] = fmt.Sprintf(verb, x)
		}
		for name, h := range map[string]func(*bytes.Buffer) slog.Handler{
			"text": func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
			"JSON": func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
		} {
			var b bytes.Buffer
			slog.New(h(&b)).Info("config", "cfg", x)
			out[form+" slog "+name] = b.String()
			b.Reset()
			slog.New(h(&b)).Info("config", slog.Group("app", "cfg", x))
			out[form+" slog "+name+" group"] = b.String()
		}
	}
	return out
}

// Forms returns the ways fmt, slog and encoding/json print the secret
// bytes s: as they are, in decimal ([]byte with %v), in Go syntax (%#v),
// in base64 (JSON) and in hexadecimal (%x).
func Forms(s []byte) []string {
	dec := fmt.Sprint(s)           // [160 161 ...]
	gosyn := fmt.Sprintf("%#v", s) // []byte{0xa0, 0xa1, ...}
	return []string{
		string(s),
		dec[1 : len(dec)-1],
		gosyn[strings.IndexByte(gosyn, '{')+1 : len(gosyn)-1],
		base64.StdEncoding.EncodeToString(s),
		base64.RawURLEncoding.EncodeToString(s),
		hex.EncodeToString(s),
	}
}

// Check fails t for each output of Outputs(v) that holds any of secrets
// (as Forms gives them), or, but for the hexadecimal ones, lacks one of
// want.
func Check(t *testing.T, v any, secrets [][]byte, want ...string) {
	t.Helper()
	for name, out := range Outputs(v) {
		for _, s := range secrets {
			for _, f := range Forms(s) {
				if strings.Contains(out, f) {
					t.Errorf("%s prints a secret (%q): %s", name, f, out)
				}
			}
		}
		if strings.HasSuffix(name, "%x") {
			continue
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("%s = %s, want %q in it", name, out, w)
			}
		}
	}
}
