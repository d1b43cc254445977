package session

import (
	"bytes"
	"sync"
	"time"
)

// recordCacher is a RecordStore that keeps records in memory and answers
// most Loads from there (redisstore's near-cache): NearCacheSize returns
// the most records it keeps, 0 when it keeps none. The Manager then keeps
// as many records decoded, so that a request served from memory does not
// decode the same JSON again.
type recordCacher interface {
	NearCacheSize() int
}

// decodedCache keeps decoded records by session id, each with the exact
// bytes it was decoded from. Decoding is a pure function of those bytes,
// so an entry is used only when the store returns identical bytes, and
// never needs invalidating: what the store returns decides what a request
// sees. At most max entries; a full cache drops an arbitrary one (map
// iteration order) to make room.
type decodedCache struct {
	max     int
	mu      sync.Mutex
	entries map[string]*decodedRecord
}

// decodedRecord is one record as decodeRecord returned it. Its values map
// is shared by every request that uses it and must not be modified; values
// that a handler could modify ([]byte, jsonValue) are copied on the way out
// (see fresh).
type decodedRecord struct {
	record   []byte
	deadline time.Time
	md       meta
	values   map[string]any
}

// newDecodedCache returns a cache sized for store, or nil if store keeps
// no records in memory.
func newDecodedCache(store RecordStore) *decodedCache {
	c, ok := store.(recordCacher)
	if !ok || c.NearCacheSize() <= 0 {
		return nil
	}
	return &decodedCache{max: c.NearCacheSize(), entries: make(map[string]*decodedRecord)}
}

// decode returns decodeRecord(b), from the entry of id when it was
// decoded from the same bytes. A nil cache only decodes.
func (c *decodedCache) decode(id string, b []byte) (time.Time, meta, map[string]any, error) {
	if c == nil {
		return decodeRecord(b)
	}
	c.mu.Lock()
	e := c.entries[id]
	c.mu.Unlock()
	if e != nil && bytes.Equal(e.record, b) {
		return e.deadline, e.md, e.values, nil
	}
	deadline, md, values, err := decodeRecord(b)
	if err != nil {
		return deadline, md, values, err
	}
	e = &decodedRecord{record: b, deadline: deadline, md: md, values: values}
	c.mu.Lock()
	if _, ok := c.entries[id]; !ok && len(c.entries) >= c.max {
		for k := range c.entries {
			delete(c.entries, k)
			break
		}
	}
	c.entries[id] = e
	c.mu.Unlock()
	return deadline, md, values, nil
}

// fresh returns v as a request may hold it: a copy of the byte slices a
// decoded record shares between requests.
func fresh(v any) any {
	switch v := v.(type) {
	case []byte:
		return bytes.Clone(v)
	case jsonValue:
		return jsonValue(bytes.Clone(v))
	}
	return v
}
