package session

import (
	"context"
	"io"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/redisstore"
)

func TestDecodedCache(t *testing.T) {
	deadline := time.Now().Add(time.Hour).Truncate(time.Second).UTC()
	encode := func(v string) []byte {
		b, err := codec{}.Encode(deadline, map[string]any{
			metaKey: meta{UserID: "alice", CreatedAt: deadline, LastSeen: deadline},
			"k":     v,
		})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	c := &decodedCache{max: 2, entries: make(map[string]*decodedRecord)}
	b1 := encode("one")
	_, _, first, err := c.decode("a", b1)
	if err != nil {
		t.Fatal(err)
	}
	_, _, again, _ := c.decode("a", append([]byte(nil), b1...))
	if reflect.ValueOf(first).Pointer() != reflect.ValueOf(again).Pointer() {
		t.Error("identical bytes decoded again, want the kept decoding")
	}
	_, _, changed, _ := c.decode("a", encode("two"))
	if changed["k"] != "two" {
		t.Errorf("after a change: k = %v, want two", changed["k"])
	}
	for _, id := range []string{"b", "c", "d"} {
		c.decode(id, b1)
	}
	if len(c.entries) > 2 {
		t.Errorf("%d entries, want at most 2", len(c.entries))
	}
	var none *decodedCache // a store without a near-cache
	if _, _, v, err := none.decode("a", b1); err != nil || v["k"] != "one" {
		t.Errorf("nil cache: %v, %v", v, err)
	}
	if _, _, _, err := c.decode("e", []byte("{")); err == nil {
		t.Error("bad record decoded without an error")
	}
}

// TestDecodedCacheNearCache runs a Manager on a Store with the near-cache:
// records are decoded once, a handler that modifies a []byte value it got
// does not change what the next request gets, and a change made by another
// instance is seen.
func TestDecodedCacheNearCache(t *testing.T) {
	r := redistest.Start(t)
	open := func(near redisstore.NearCache) *Manager {
		store, err := redisstore.Open(redisstore.Config{Addr: r.Addr(), NearCache: near})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close() })
		m, err := New(store, Config{Keys: [][]byte{testKey(7)}, InsecureCookie: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	m := open(redisstore.NearCache{MaxEntries: 100})
	other := open(redisstore.NearCache{})
	if m.decoded == nil || other.decoded != nil {
		t.Fatalf("decoded cache with near-cache %v, without %v; want one only with", m.decoded != nil, other.decoded != nil)
	}
	cookie, _ := login(t, m, "alice")
	serve(t, m, cookie, func(ctx context.Context) {
		if err := Put(ctx, "b", []byte("abc")); err != nil {
			t.Fatal(err)
		}
	})
	for i := range 20 {
		serve(t, m, cookie, func(ctx context.Context) {
			b, ok := Get[[]byte](ctx, "b")
			if !ok || string(b) != "abc" {
				t.Fatalf("request %d: b = %q, %v, want abc", i, b, ok)
			}
			b[0] = 'X' // the handler's own copy
		})
	}
	serve(t, other, cookie, func(ctx context.Context) {
		if err := Put(ctx, "b", []byte("new")); err != nil {
			t.Fatal(err)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		var got string
		serve(t, m, cookie, func(ctx context.Context) {
			b, _ := Get[[]byte](ctx, "b")
			got = string(b)
		})
		if got == "new" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("b = %q 10s after another instance changed it, want new", got)
		}
		time.Sleep(time.Millisecond)
	}
}
