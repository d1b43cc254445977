package redisstore

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/sessionkit/sessionkit/internal/redact/redacttest"
	"github.com/sessionkit/sessionkit/internal/redistest"
)

// TestConfigPrintsNoPasswords prints a Config and a Store as an
// application might log them at start-up, with every fmt verb, both slog
// handlers and encoding/json (zap's and logrus's JSON), as they are and
// inside a struct or a slice, and checks that neither password nor the TLS private key
// shows, nor a session id the Store's near-cache holds, while the other
// settings and that the secrets are set do. Run with -race, it also
// checks that printing a Store in use reads nothing that its connections
// change.
func TestConfigPrintsNoPasswords(t *testing.T) {
	const password, sentinelPassword = "S3cretRedisPW", "S3cretSentinelPW"
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := key.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	const id = "SessionIdInTheNearCache0" // printed as part of the near-cache, it would name a Redis key
	secrets := [][]byte{[]byte(password), []byte(sentinelPassword), raw, der, []byte(new(big.Int).SetBytes(raw).String()), []byte(id)}
	tlsConfig := &tls.Config{ServerName: "redis.internal", Certificates: []tls.Certificate{{PrivateKey: key}}}

	srv := redistest.Start(t, "--requirepass", password)
	store, err := Open(Config{Addr: srv.Addr(), Password: password, KeyPrefix: "app:", NearCache: NearCache{MaxEntries: 10}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	ctx := context.Background()
	if _, err := store.Insert(ctx, id, []byte("record"), time.Minute); err != nil {
		t.Fatal(err)
	}
	// Load until the near-cache holds the record (once its connection is
	// subscribed), as a Store serving traffic does.
	for deadline := time.Now().Add(5 * time.Second); store.NearCacheStats().Entries == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the near-cache never held the record")
		}
		if _, _, err := store.Load(ctx, id, time.Minute); err != nil {
			t.Fatal(err)
		}
	}

	for _, tc := range []struct {
		name string
		v    any
		want []string
	}{
		{"Config", Config{Addr: "redis.internal:6380", Username: "app", Password: password, TLS: tlsConfig, KeyPrefix: "app:"},
			[]string{"redis.internal:6380", "app:", "[redacted]"}},
		{"Config with Sentinel", Config{SentinelAddrs: []string{"sentinel-1:26379"}, SentinelMaster: "main", Password: password, SentinelUsername: "watcher", SentinelPassword: sentinelPassword},
			[]string{"sentinel-1:26379", "watcher", "[redacted]"}},
		{"Config without secrets", Config{Addr: "redis.internal:6380"}, []string{"redis.internal:6380"}},
		{"Store", store, []string{"app:", "NearCache:true"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			redacttest.Check(t, tc.v, secrets, tc.want...)
		})
	}
}

// TestNilStorePrints checks that a nil *Store prints and logs as <nil>,
// not as the panic a method reading its fields would make (which slog
// writes, stack and all, as "LogValue panicked").
func TestNilStorePrints(t *testing.T) {
	redacttest.CheckNil(t, (*Store)(nil))
}

// TestEmbeddedConfigPrints checks what README ("Upgrading") and String
// say of a Config in an application's own struct: as a named field, fmt,
// slog and encoding/json print both it (passwords redacted) and the
// struct's other fields; embedded, its promoted methods print the Config
// alone.
func TestEmbeddedConfigPrints(t *testing.T) {
	const password = "S3cretRedisPW"
	// Not digits alone, which the timestamp of a log line may hold.
	const portValue = "port-8080"
	cfg := Config{Addr: "redis.internal:6380", Password: password}
	type named struct {
		Redis Config
		Port  string
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
			if !strings.Contains(out, "redis.internal:6380") || !strings.Contains(out, "[redacted]") || strings.Contains(out, password) {
				t.Errorf("%s %s = %s, want the Config, its password redacted", tc.name, form, out)
			}
			if got := strings.Contains(out, portValue); got != tc.wantPort {
				t.Errorf("%s %s = %s, want Port shown %t", tc.name, form, out, tc.wantPort)
			}
		}
	}
}
