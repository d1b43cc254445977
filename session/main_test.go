package session

import (
	"crypto/rand"
	"encoding/base64"
	"os"
	"testing"

	"github.com/sessionkit/sessionkit/internal/redistest"
)

// TestMain runs Example as the program it shows would run: with a Redis at
// REDIS_URL (a redis-server of its own) and a random key in SESSION_KEYS.
// The tests read neither variable.
func TestMain(m *testing.M) {
	key := make([]byte, MinKeyLength)
	rand.Read(key)
	os.Setenv("SESSION_KEYS", base64.StdEncoding.EncodeToString(key))
	os.Exit(redistest.RunWithServer(m, "Example"))
}
