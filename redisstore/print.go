package redisstore

import (
	"fmt"
	"log/slog"

	"github.com/sessionkit/sessionkit/internal/redact"
)

// secretFields are the fields of Config that its String, GoString,
// Format, LogValue and MarshalJSON never print.
var secretFields = []string{"Password", "SentinelPassword", "TLS"}

// String returns c as %+v would print it, but with Password,
// SentinelPassword and TLS (whose certificates carry private keys) as
// "[redacted]" when set, and without unexported fields, so that a
// configuration may be logged: {Addr:redis:6379 Username:app
// Password:[redacted] DB:0 TLS:<nil> ...}.
//
// A struct that embeds a Config gets String, GoString, Format, LogValue
// and MarshalJSON too (Go promotes them), and so prints, logs and
// marshals as the Config alone: in type App struct { redisstore.Config;
// Port int }, Port never shows. Make the Config a named field (Redis
// redisstore.Config) to print both.
//
// fmt cannot call a method of a value that it reaches through an
// unexported field, and prints such a value's fields themselves: a Config
// in an unexported field of a struct (appConfig{cfg: c} printed with
// %+v, or logged by slog's text handler) shows its passwords in full. Keep
// a Config in an exported field, or print or log it directly.
func (c Config) String() string { return redact.String(c, secretFields...) }

// GoString returns c as %#v would print it, its secrets redacted as
// String does.
func (c Config) GoString() string { return redact.GoString(c, secretFields...) }

// Format implements fmt.Formatter: %#v prints GoString, every other verb
// String, so that no verb prints a password. A struct that embeds a
// Config prints as the Config alone, and a Config in an unexported field
// with its passwords (see String).
func (c Config) Format(f fmt.State, verb rune) { redact.Format(f, verb, c) }

// LogValue implements slog.LogValuer: a group of one attribute per field,
// each as String prints it, secrets redacted. A struct that embeds a
// Config logs as the Config alone (see String).
//
// Through a nil *Config, slog writes "LogValue panicked" and a
// stack in place of the value (nothing of any Config): Go calls a
// method of Config through a nil pointer by panicking, before LogValue
// runs, and slog recovers. fmt prints such a pointer as <nil>, and
// encoding/json as null.
func (c Config) LogValue() slog.Value { return redact.LogValue(c, secretFields...) }

// MarshalJSON implements json.Marshaler with the view LogValue gives: an
// object of one string per field, each as String prints it, secrets
// redacted ({"Addr":"redis:6379","Password":"[redacted]",...}). slog's
// JSON handler (for a Config inside a struct or a slice, where it does not
// call LogValue) and other loggers marshal with encoding/json, which would
// otherwise write the passwords. A Config is therefore not meant to go
// through JSON and back: what it marshals to has no secret, and its
// durations and lists are strings. A struct that embeds a Config marshals
// as the Config alone (see String).
func (c Config) MarshalJSON() ([]byte, error) { return redact.MarshalJSON(c, secretFields...) }

// String describes s by the settings it was opened with, which it keeps
// unchanged (no password, no key, no session): redisstore.Store{KeyPrefix:app:
// Timeout:1s WaitReplicas:0 MaxActive:64 Cluster:false NearCache:true}.
// A nil s prints as <nil>.
func (s *Store) String() string {
	if s == nil {
		return "<nil>"
	}
	return fmt.Sprintf("redisstore.Store{KeyPrefix:%s Timeout:%v WaitReplicas:%d MaxActive:%d Cluster:%t NearCache:%t}",
		s.keyPrefix, s.timeout, s.replicas, s.maxActive, s.cluster != nil, s.near != nil)
}

// Format implements fmt.Formatter: every verb prints String. Without it,
// fmt would read the fields that the Store's connections and near-cache
// change as it runs (a data race), and a verb such as %s would print the
// near-cache's session ids.
func (s *Store) Format(f fmt.State, verb rune) { redact.Format(f, verb, s) }

// LogValue implements slog.LogValuer: String, as one value ("<nil>" for
// a nil s).
func (s *Store) LogValue() slog.Value { return slog.StringValue(s.String()) }
