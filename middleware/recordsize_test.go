package middleware_test

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/sessionkit/sessionkit/session"
)

// TestSessionTooLarge has two concurrent requests of one session each put
// a value that fits the record it loaded (under the default
// session.Config.MaxRecordBytes, 64 KiB), but not beside the other's. The
// one that commits second gets 500 {"error":"session too large"}, not a
// 503 "store unavailable" with Retry-After and not the handler's own
// answer; the record stays as the first left it, and the session works.
func TestSessionTooLarge(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	c := h.client()
	id, _ := h.login(c, "alice")
	value := strings.Repeat("v", session.DefaultMaxRecordBytes*2/3)
	loaded, release := make(chan struct{}), make(chan struct{})
	h.hooked = func(w http.ResponseWriter, r *http.Request) {
		key := r.URL.Query().Get("key")
		if err := session.Put(r.Context(), key, value); err != nil {
			t.Errorf("Put(%s) = %v", key, err)
		}
		if key == "late" {
			close(loaded)
			<-release
		}
		w.Header().Set("Location", "/done")
		if _, err := w.Write([]byte("saved")); key == "late" && !errors.Is(err, session.ErrInvalidValue) {
			t.Errorf("Write after a commit over the limit = %v, want ErrInvalidValue", err)
		}
	}
	late := make(chan response, 1)
	go func() { late <- h.do(c, "POST", "/hook?key=late", nil) }()
	<-loaded
	if resp := h.do(c, "POST", "/hook?key=early", nil); resp.code != http.StatusOK {
		t.Fatalf("the first commit answered %d %q, want 200", resp.code, resp.body)
	}
	stored, _ := h.redis.Do(t, "GET", "session:"+id).([]byte)
	close(release)
	resp := <-late
	if resp.code != http.StatusInternalServerError || resp.body != `{"error":"session too large"}` {
		t.Errorf("the commit over the limit answered %d %q, want 500 {\"error\":\"session too large\"}", resp.code, resp.body)
	}
	for _, k := range []string{"Retry-After", "Location", "Set-Cookie"} {
		if v := resp.header.Get(k); v != "" {
			t.Errorf("the 500 carries %s: %q", k, v)
		}
	}
	if after, _ := h.redis.Do(t, "GET", "session:"+id).([]byte); !bytes.Equal(after, stored) {
		t.Errorf("record after the refused commit is %d bytes, want the first request's %d, unchanged", len(after), len(stored))
	}
	if resp := h.do(c, "GET", "/me", nil); resp.code != http.StatusOK || resp.body != "alice" {
		t.Errorf("GET /me after the refused commit = %d %q, want 200 alice", resp.code, resp.body)
	}
}
