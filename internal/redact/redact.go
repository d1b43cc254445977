// Package redact prints configuration structs as fmt's %+v and %#v would,
// with the fields that hold secrets (signing keys, passwords, TLS
// configurations with their private keys) replaced by a word that says
// only whether they are set, so that an application may log its
// configuration at start-up. The session, redisstore and middleware
// packages use it for the String, GoString, Format, LogValue and
// MarshalJSON methods of their configurations.
package redact

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"slices"
	"strings"
)

// Redacted is printed in place of a secret that is set.
const Redacted = "[redacted]"

// field is one exported field of a struct, as String and LogValue print
// it.
type field struct {
	name, text string
}

// fields returns the exported fields of the struct v, each printed with
// %+v, or with %#v when goSyntax is set, but for the fields named in
// secret: those that are set print as Redacted, or, for a list of keys (a
// slice of slices, as [][]byte), as their number ("[2 keys]"). A secret
// that is not set (zero, or empty) prints as any other field, as it holds
// nothing. Unexported fields are left out.
func fields(v any, goSyntax bool, secret []string) []field {
	rv := reflect.ValueOf(v)
	t := rv.Type()
	for _, name := range secret {
		// A field renamed without its caller would otherwise print in
		// full: fail loudly, in the caller's tests.
		if _, ok := t.FieldByName(name); !ok {
			panic("redact: " + t.String() + " has no field " + name)
		}
	}
	verb := "%+v"
	if goSyntax {
		verb = "%#v"
	}
	var fs []field
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		fv := rv.Field(i)
		var text string
		switch {
		case !slices.Contains(secret, f.Name) || empty(fv):
			text = inner(verb, fv)
		case fv.Kind() == reflect.Slice && fv.Type().Elem().Kind() == reflect.Slice:
			text = keys(fv.Len())
		default:
			text = Redacted
		}
		fs = append(fs, field{f.Name, text})
	}
	return fs
}

// inner prints v with verb as fmt prints a field inside a struct. fmt
// expands a pointer to a struct (a *slog.Logger, a Metrics implementation)
// only at the top level, as &{...}, and prints it as an address inside a
// struct; printing v as the only element of a slice of its type keeps it
// inside, and the slice's own brackets are then cut off ("[" and "]", or
// "[]T{" and "}" with %#v).
func inner(verb string, v reflect.Value) string {
	s := reflect.MakeSlice(reflect.SliceOf(v.Type()), 1, 1)
	s.Index(0).Set(v)
	text := fmt.Sprintf(verb, s.Interface())
	open := "["
	if verb == "%#v" {
		open = s.Type().String() + "{"
	}
	return text[len(open) : len(text)-1]
}

// empty reports whether v holds nothing: its zero value, or an empty
// string, slice or map.
func empty(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.String, reflect.Slice, reflect.Map:
		return v.Len() == 0
	}
	return v.IsZero()
}

// keys says how many keys a list holds.
func keys(n int) string {
	if n == 1 {
		return "[1 key]"
	}
	return fmt.Sprintf("[%d keys]", n)
}

// String returns the struct v as %+v prints it ({Name:value ...}), with the
// fields named in secret redacted and unexported fields left out.
func String(v any, secret ...string) string {
	return "{" + joined(fields(v, false, secret), " ") + "}"
}

// GoString returns the struct v as %#v prints it (pkg.T{Name:value, ...}),
// with the fields named in secret redacted and unexported fields left
// out. A redacted field is not Go syntax.
func GoString(v any, secret ...string) string {
	return reflect.TypeOf(v).String() + "{" + joined(fields(v, true, secret), ", ") + "}"
}

// joined returns fs as name:text, separated by sep.
func joined(fs []field, sep string) string {
	parts := make([]string, len(fs))
	for i, f := range fs {
		parts[i] = f.name + ":" + f.text
	}
	return strings.Join(parts, sep)
}

// LogValue returns the struct v as a group of one string attribute per
// exported field, each holding what String prints for it, with the
// fields named in secret redacted.
func LogValue(v any, secret ...string) slog.Value {
	fs := fields(v, false, secret)
	attrs := make([]slog.Attr, len(fs))
	for i, f := range fs {
		attrs[i] = slog.String(f.name, f.text)
	}
	return slog.GroupValue(attrs...)
}

// MarshalJSON returns the struct v as a JSON object of one string per
// exported field, each holding what String prints for it, with the fields
// named in secret redacted: what slog's JSON handler writes for LogValue,
// and what encoding/json (which that handler, and other loggers, use for
// a value inside a struct or a slice) writes in place of the fields
// themselves. The secrets being redacted, the object does not unmarshal
// back into v.
func MarshalJSON(v any, secret ...string) ([]byte, error) {
	b := []byte{'{'}
	for i, f := range fields(v, false, secret) {
		if i > 0 {
			b = append(b, ',')
		}
		// Marshaling a string cannot fail.
		name, _ := json.Marshal(f.name)
		text, _ := json.Marshal(f.text)
		b = append(append(append(b, name...), ':'), text...)
	}
	return append(b, '}'), nil
}

// Format implements fmt.Formatter for a type whose String redacts its
// secrets: %#v prints its GoString, if it has one, and every other verb
// prints its String as that verb prints a string (%q quotes it, %x gives
// its hex, %d gives %!d(string=...)). Without it, a verb that does not
// call String, such as %d, would print the fields themselves. A nil
// pointer prints as <nil> with every verb, as fmt prints one.
func Format(f fmt.State, verb rune, v fmt.Stringer) {
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Pointer && rv.IsNil() {
		io.WriteString(f, "<nil>")
		return
	}
	if g, ok := v.(fmt.GoStringer); ok && verb == 'v' && f.Flag('#') {
		io.WriteString(f, g.GoString())
		return
	}
	fmt.Fprintf(f, fmt.FormatString(f, verb), v.String())
}
