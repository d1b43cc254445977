package redisstore

import (
	"strings"
	"time"

	"github.com/gomodule/redigo/redis"
)

// nearWriteCommands are the commands of a Store that change or delete the
// keys they name.
var nearWriteCommands = map[string]bool{
	"SET": true, "DEL": true, "UNLINK": true, "GETDEL": true, "GETEX": true,
	"PEXPIRE": true, "PEXPIREAT": true, "EXPIRE": true, "EXPIREAT": true, "PERSIST": true,
}

// writeNoter is a pooled connection of a Store with the near-cache. It
// notes the session ids whose keys its commands change, and when the call
// gives it back (Close, after every reply has been read: the writes are
// acknowledged), forgets them in the near-cache and spoils the fills in
// flight for them. Redis reports the same changes on the invalidation
// connection, but only after a delay; this makes a Store see its own
// writes at once.
type writeNoter struct {
	redis.Conn
	c   *nearCache
	ids []string
}

var _ redis.ConnWithTimeout = (*writeNoter)(nil)

// noteWrites wraps conn (see writeNoter).
func (c *nearCache) noteWrites(conn redis.Conn) redis.Conn {
	return &writeNoter{Conn: conn, c: c}
}

func (w *writeNoter) note(cmd string, args []any) {
	if !nearWriteCommands[strings.ToUpper(cmd)] {
		return
	}
	for _, a := range args {
		if k, ok := a.(string); ok {
			if id, ok := strings.CutPrefix(k, w.c.prefix); ok {
				w.ids = append(w.ids, id)
			}
		}
	}
}

// Do implements redis.Conn.
func (w *writeNoter) Do(cmd string, args ...any) (any, error) {
	w.note(cmd, args)
	return w.Conn.Do(cmd, args...)
}

// Send implements redis.Conn.
func (w *writeNoter) Send(cmd string, args ...any) error {
	w.note(cmd, args)
	return w.Conn.Send(cmd, args...)
}

// DoWithTimeout implements redis.ConnWithTimeout.
func (w *writeNoter) DoWithTimeout(timeout time.Duration, cmd string, args ...any) (any, error) {
	w.note(cmd, args)
	return redis.DoWithTimeout(w.Conn, timeout, cmd, args...)
}

// ReceiveWithTimeout implements redis.ConnWithTimeout.
func (w *writeNoter) ReceiveWithTimeout(timeout time.Duration) (any, error) {
	return redis.ReceiveWithTimeout(w.Conn, timeout)
}

// Close forgets the noted ids, then gives the connection back.
func (w *writeNoter) Close() error {
	if len(w.ids) > 0 {
		w.c.mu.Lock()
		for _, id := range w.ids {
			w.c.forgetLocked(id)
		}
		w.c.mu.Unlock()
	}
	return w.Conn.Close()
}
