// Package redacttest checks, in tests, that a value prints none of its
// secrets, whichever way an application prints or logs it.
package redacttest

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"testing"
)

// verbs are the fmt verbs outputs prints with.
var verbs = []string{"%v", "%+v", "%s", "%#v", "%q", "%d", "%x"}

// output is one way of printing a value.
type output struct {
	text string
	// viaJSON is set when encoding/json printed the value itself (not
	// what its LogValue returned): through json.Marshal, or through
	// slog's JSON handler for a value inside a struct or a slice.
	viaJSON bool
}

// outputs returns what v prints as, by name: with each fmt verb, logged by
// slog's text and JSON handlers as a value and inside a group, and
// marshaled with encoding/json; each of those for v, for a pointer to v
// (when v is not a pointer already), for v as a field of a struct
// (struct{Cfg T; Port int}, as an application's settings may hold it) and
// for v in a slice. The outputs named "... %x" are hexadecimal.
func outputs(v any) map[string]output {
	t := reflect.TypeOf(v)
	rv := reflect.ValueOf(v)
	vals := map[string]reflect.Value{"value": rv}
	if t.Kind() != reflect.Pointer {
		p := reflect.New(t)
		p.Elem().Set(rv)
		vals["pointer"] = p
	}
	st := reflect.New(reflect.StructOf([]reflect.StructField{
		{Name: "Cfg", Type: t},
		{Name: "Port", Type: reflect.TypeFor[int]()},
	})).Elem()
	st.Field(0).Set(rv)
	st.Field(1).SetInt(8080)
	vals["in a struct"] = st
	sl := reflect.MakeSlice(reflect.SliceOf(t), 1, 1)
	sl.Index(0).Set(rv)
	vals["in a slice"] = sl

	out := map[string]output{}
	for form, xv := range vals {
		x := xv.Interface()
		// slog calls LogValue only on the value it is given; inside a
		// struct or a slice, its JSON handler marshals with encoding/json.
		nested := form == "in a struct" || form == "in a slice"
		for _, verb := range verbs {
			out[form+" "+verb] = output{text: fmt.Sprintf(verb, x)}
		}
		for name, h := range map[string]func(*bytes.Buffer) slog.Handler{
			"text": func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
			"JSON": func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
		} {
			viaJSON := nested && name == "JSON"
			var b bytes.Buffer
			slog.New(h(&b)).Info("config", "cfg", x)
			out[form+" slog "+name] = output{b.String(), viaJSON}
			b.Reset()
			slog.New(h(&b)).Info("config", slog.Group("app", "cfg", x))
			out[form+" slog "+name+" group"] = output{b.String(), viaJSON}
		}
		j, err := json.Marshal(x)
		if err != nil {
			// An error holds the type that failed, never a value.
			j = []byte(err.Error())
		}
		out[form+" json.Marshal"] = output{string(j), true}
	}
	return out
}

// Printed returns v as an application most often prints its settings, by
// name: with %+v, logged by slog's text and JSON handlers, and marshaled
// with encoding/json. Unlike outputs, it does not wrap v: a struct of the
// caller's prints as that struct.
func Printed(t *testing.T, v any) map[string]string {
	t.Helper()
	var text, js bytes.Buffer
	slog.New(slog.NewTextHandler(&text, nil)).Info("start", "app", v)
	slog.New(slog.NewJSONHandler(&js, nil)).Info("start", "app", v)
	j, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{"%+v": fmt.Sprintf("%+v", v), "slog text": text.String(), "slog JSON": js.String(), "json.Marshal": string(j)}
}

// CheckNil fails t for each output of outputs(v), v a nil pointer, that
// is not <nil> (or null, from encoding/json) or that holds "panicked", as
// slog writes when LogValue panics.
func CheckNil(t *testing.T, v any) {
	t.Helper()
	if rv := reflect.ValueOf(v); rv.Kind() != reflect.Pointer || !rv.IsNil() {
		t.Fatalf("CheckNil(%T): not a nil pointer", v)
	}
	for name, out := range outputs(v) {
		if strings.Contains(out.text, "panicked") || !strings.Contains(out.text, "<nil>") && !strings.Contains(out.text, "null") {
			t.Errorf("%s = %s, want <nil> in it", name, out.text)
		}
	}
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

// Check fails t for each output of outputs(v) that holds any of secrets
// (as Forms gives them), or lacks one of want, but for the hexadecimal
// outputs and, when v has no MarshalJSON, those that encoding/json
// printed (it prints a type without exported fields as {}).
func Check(t *testing.T, v any, secrets [][]byte, want ...string) {
	t.Helper()
	_, marshaler := v.(json.Marshaler)
	for name, out := range outputs(v) {
		for _, s := range secrets {
			for _, f := range Forms(s) {
				if strings.Contains(out.text, f) {
					t.Errorf("%s prints a secret (%q): %s", name, f, out.text)
				}
			}
		}
		if strings.HasSuffix(name, "%x") || out.viaJSON && !marshaler {
			continue
		}
		for _, w := range want {
			if !strings.Contains(out.text, w) {
				t.Errorf("%s = %s, want %q in it", name, out.text, w)
			}
		}
	}
}
