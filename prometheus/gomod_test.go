package sessionkitprom

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCoreModuleWithoutPrometheus checks that the core module, one
// directory up, does not require the Prometheus client, directly or
// indirectly: only this module does.
func TestCoreModuleWithoutPrometheus(t *testing.T) {
	path := filepath.Join("..", "go.mod")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read the core module's go.mod: %v", err)
	}
	if !strings.Contains(string(b), "module github.com/sessionkit/sessionkit\n") {
		t.Fatalf("%s is not the core module's go.mod", path)
	}
	for i, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "github.com/prometheus/") {
			t.Errorf("%s:%d: %q: the core module must not require Prometheus; only github.com/sessionkit/sessionkit/prometheus does", path, i+1, strings.TrimSpace(line))
		}
	}
}
