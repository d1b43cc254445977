package main

import (
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/sessionkit/sessionkit/internal/leakcheck"
)

// TestMain fails the package if a test leaves a goroutine behind: a pool,
// a server, a browser or a redis-server never closed. The one goroutine
// allowed is the cleanup of the in-memory store scs.New installs (the load
// test's scs twin starts it, and scs gives no way to stop it).
func TestMain(m *testing.M) {
	leakcheck.VerifyTestMain(m, "github.com/alexedwards/scs/v2/memstore.(*MemStore).startCleanup")
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

	var log syncBuffer
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
