package main

import (
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/sessionkit/sessionkit/internal/leakcheck"
	"github.com/sessionkit/sessionkit/internal/syncbuf"
)

// TestMain fails the package if a test leaves a goroutine behind: a pool,
// a server, a browser or a redis-server never closed. The one goroutine
// allowed is the cleanup of the in-memory store scs.New installs (the load
// test's scs twin starts it, and scs gives no way to stop it).
//
// The tests log in some fifty times, and under the race detector one
// check of a 600,000-iteration PBKDF2 hash takes about 1.6 s of CPU: the
// tests' demo accounts use hashes of the same passwords with testIterations
// instead. TestShippedHashes checks the program's own.
func TestMain(m *testing.M) {
	shippedUsers, shippedUnknownUser = maps.Clone(users), unknownUser
	for name, encoded := range users {
		users[name] = rehash(encoded, demoPasswords[name])
	}
	unknownUser = rehash(unknownUser, "")
	leakcheck.VerifyTestMain(m, "github.com/alexedwards/scs/v2/memstore.(*MemStore).startCleanup")
}

// testIterations is the PBKDF2 iteration count of the tests' hashes.
const testIterations = 1000

// demoPasswords are the passwords of the demo accounts (README, "Try it").
var demoPasswords = map[string]string{"alice": "wonderland", "bob": "builder"}

// shippedUsers and shippedUnknownUser are the program's hashes, which
// TestMain replaces for the other tests.
var shippedUsers map[string]string
var shippedUnknownUser string

// rehash returns password hashed as encoded, "pbkdf2-sha256$<iterations>$<salt>$<hash>",
// with testIterations and the same salt and length.
func rehash(encoded, password string) string {
	parts := strings.Split(encoded, "$")
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[2])
	hash, err2 := base64.RawStdEncoding.DecodeString(parts[3])
	key, err3 := pbkdf2.Key(sha256.New, password, salt, testIterations, len(hash))
	if err := errors.Join(err1, err2, err3); err != nil {
		panic(err)
	}
	return strings.Join([]string{parts[0], strconv.Itoa(testIterations), parts[2], base64.RawStdEncoding.EncodeToString(key)}, "$")
}

// TestShippedHashes checks the program's own hashes: OWASP's 600,000
// iterations for every account and for the unknown user's stand-in, the
// demo passwords accepted, others refused.
func TestShippedHashes(t *testing.T) {
	for _, encoded := range append(slices.Collect(maps.Values(shippedUsers)), shippedUnknownUser) {
		if parts := strings.Split(encoded, "$"); len(parts) != 4 || parts[1] != "600000" {
			t.Errorf("shipped hash %.30q...: want pbkdf2-sha256 with 600000 iterations", encoded)
		}
	}
	if len(shippedUsers) != len(demoPasswords) {
		t.Errorf("shipped accounts %v, want those of demoPasswords", slices.Sorted(maps.Keys(shippedUsers)))
	}
	for name, password := range demoPasswords {
		if !checkPassword(shippedUsers[name], password) {
			t.Errorf("the shipped hash of %s refuses %q", name, password)
		}
		if checkPassword(shippedUsers[name], password+"x") {
			t.Errorf("the shipped hash of %s accepts a wrong password", name)
		}
	}
}

// TestBindErrorNamesADDR runs the example, on its embedded Redis, with ADDR
// naming a port another listener holds: it must exit with an error that
// names ADDR and the address, and must not have logged "listening".
func TestBindErrorNamesADDR(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()
	for _, name := range []string{"REDIS_URL", "REDIS_HOST", "REDIS_SENTINELS", "REDIS_CLUSTER_NODES"} {
		t.Setenv(name, "")
	}
	t.Setenv("SESSION_KEYS", testKeys())
	t.Setenv("ADDR", addr)

	var log syncbuf.Buffer
	err = run(slog.New(slog.NewTextHandler(&log, nil)))
	if err == nil {
		t.Fatalf("run with ADDR=%s, a port in use: no error", addr)
	}
	for _, want := range []string{"ADDR=" + addr, "address already in use"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("run error %q does not contain %q", err, want)
		}
	}
	if strings.Contains(log.String(), "listening") {
		t.Errorf("the example logged that it listens although the bind failed:\n%s", log.String())
	}
}

// TestListenErrorNamesADDR checks listen's error for a malformed address.
func TestListenErrorNamesADDR(t *testing.T) {
	_, err := listen("not-an-address")
	if err == nil || !strings.Contains(err.Error(), "ADDR=not-an-address") {
		t.Fatalf("listen(%q) = %v, want an error naming ADDR=not-an-address", "not-an-address", err)
	}
}
