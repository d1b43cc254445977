package redact

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

type nested struct {
	N int
	S string
}

type metrics interface{ Count() }

type counter struct{ n int }

func (c *counter) Count() { c.n++ }

type config struct {
	Addr     string
	Password string
	Keys     [][]byte
	Token    []byte
	Timeout  time.Duration
	Nested   nested
	Ptr      *nested
	Logger   *slog.Logger
	Metrics  metrics
	OnEvent  func()
	List     []string
}

var secret = []string{"Password", "Keys", "Token"}

// TestStringMatchesFmt checks that String and GoString print a struct
// whose secrets are unset exactly as %+v and %#v do, pointer fields
// included (an address, not &{...}).
func TestStringMatchesFmt(t *testing.T) {
	for _, c := range []config{
		{},
		{Addr: "a:1", Timeout: time.Second, Nested: nested{1, "x y"}, Ptr: &nested{2, "z"}, Logger: slog.Default(), Metrics: &counter{}, OnEvent: func() {}, List: []string{"p", "q"}},
	} {
		if got, want := String(c, secret...), fmt.Sprintf("%+v", c); got != want {
			t.Errorf("String(c) = %s, want %s", got, want)
		}
		if got, want := GoString(c, secret...), fmt.Sprintf("%#v", c); got != want {
			t.Errorf("GoString(c) = %s, want %s", got, want)
		}
	}
}

// TestSecretsRedacted checks what set secrets print as.
func TestSecretsRedacted(t *testing.T) {
	c := config{Addr: "a:1", Password: "pw-secret", Keys: [][]byte{[]byte("k1-secret"), []byte("k2-secret")}, Token: []byte("t-secret")}
	for _, tc := range []struct{ name, got, want string }{
		{"String", String(c, secret...), "{Addr:a:1 Password:[redacted] Keys:[2 keys] Token:[redacted] Timeout:0s "},
		{"GoString", GoString(c, secret...), `redact.config{Addr:"a:1", Password:[redacted], Keys:[2 keys], Token:[redacted], Timeout:0, `},
		{"one key", String(config{Keys: [][]byte{[]byte("k1-secret")}}, secret...), "{Addr: Password: Keys:[1 key] Token:[] "},
		{"LogValue", LogValue(c, secret...).String(), "[Addr=a:1 Password=[redacted] Keys=[2 keys] Token=[redacted] Timeout=0s "},
	} {
		if !strings.HasPrefix(tc.got, tc.want) || strings.Contains(tc.got, "secret") {
			t.Errorf("%s = %s, want it to begin %s", tc.name, tc.got, tc.want)
		}
	}
}

// TestMarshalJSON checks that MarshalJSON writes, as valid JSON, the
// object slog's JSON handler writes for LogValue, secrets redacted.
func TestMarshalJSON(t *testing.T) {
	c := config{Addr: "a:1 <&>", Password: "pw-secret", Keys: [][]byte{[]byte("k1-secret")}, Token: []byte("t-secret"), Timeout: time.Second}
	got, err := MarshalJSON(c, secret...)
	if err != nil {
		t.Fatalf("MarshalJSON(c) = %v", err)
	}
	var b bytes.Buffer
	slog.New(slog.NewJSONHandler(&b, nil)).Info("config", "cfg", LogValue(c, secret...))
	var logged struct{ Cfg json.RawMessage }
	if err := json.Unmarshal(b.Bytes(), &logged); err != nil {
		t.Fatal(err)
	}
	var want, have any
	if err := json.Unmarshal(logged.Cfg, &want); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(got, &have); err != nil {
		t.Fatalf("MarshalJSON(c) = %s, not JSON: %v", got, err)
	}
	if fmt.Sprint(have) != fmt.Sprint(want) || strings.Contains(string(got), "secret") {
		t.Errorf("MarshalJSON(c) = %s, want %s", got, logged.Cfg)
	}
	if !strings.HasPrefix(string(got), `{"Addr":"a:1 \u003c\u0026\u003e","Password":"[redacted]","Keys":"[1 key]","Token":"[redacted]","Timeout":"1s",`) {
		t.Errorf("MarshalJSON(c) = %s", got)
	}
}

// stringer is a type whose Format is redact's.
type stringer struct{}

func (stringer) String() string               { return "str" }
func (stringer) GoString() string             { return "gostr" }
func (s stringer) Format(f fmt.State, r rune) { Format(f, r, s) }

func TestFormat(t *testing.T) {
	for verb, want := range map[string]string{
		"%v": "str", "%+v": "str", "%s": "str", "%#v": "gostr", "%q": `"str"`, "%x": "737472", "%d": "%!d(string=str)", "%5s": "  str",
	} {
		if got := fmt.Sprintf(verb, stringer{}); got != want {
			t.Errorf("Sprintf(%q, stringer{}) = %q, want %q", verb, got, want)
		}
	}
}

// TestFormatNil checks that a nil pointer prints as fmt prints one, with
// every verb: <nil>, not its String ("<nil>") formatted as a string.
func TestFormatNil(t *testing.T) {
	var p *pointerStringer
	for _, verb := range []string{"%v", "%+v", "%s", "%#v", "%q", "%x", "%d"} {
		if got := fmt.Sprintf(verb, p); got != "<nil>" {
			t.Errorf("Sprintf(%q, nil) = %q, want <nil>", verb, got)
		}
	}
}

// pointerStringer is a pointer type whose Format is redact's and whose
// String says <nil> for a nil pointer.
type pointerStringer struct{ s string }

func (p *pointerStringer) String() string {
	if p == nil {
		return "<nil>"
	}
	return p.s
}
func (p *pointerStringer) Format(f fmt.State, r rune) { Format(f, r, p) }

// TestUnknownField checks that a secret named after no field panics
// rather than print the renamed field in full.
func TestUnknownField(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("String(c, \"Passwd\") did not panic")
		}
	}()
	String(config{}, "Passwd")
}
