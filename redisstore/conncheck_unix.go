//go:build unix

package redisstore

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"time"
)

// errUnexpectedRead reports data waiting on an idle connection.
var errUnexpectedRead = errors.New("redisstore: unexpected data on idle connection")

// liveness checks whether an idle connection is still usable, the way
// go-sql-driver/mysql checks its pooled connections: one non-blocking
// 1-byte read on the socket. EAGAIN means nothing to read, the connection is
// fine. A read of 0 bytes is end of file: the server closed the connection
// (Redis restarted, or dropped an idle client). A read of more is data
// nobody asked for. Either way the pool closes the connection and dials a
// new one, so a restart costs no failed request and no extra round trip, as
// a PING on every borrow would.
//
// The read goes to the kernel directly through syscall.RawConn, below any
// buffering and below TLS: under TLS a closed peer still reads as end of
// file, and on a healthy idle connection TLS has nothing queued because
// every reply, and any post-handshake message before it, has been read.
//
// Everything a check needs is made once per connection, so that a check,
// which runs on every borrow, allocates nothing. A connection is borrowed
// by one goroutine at a time, which is all the fields need.
type liveness struct {
	conn  net.Conn // the socket's connection, for its read deadline
	rc    syscall.RawConn
	probe func(fd uintptr) bool // l.read, bound once
	buf   [1]byte
	err   error
}

// newLiveness returns the check for conn, or nil when conn has no socket to
// check.
func newLiveness(conn net.Conn) *liveness {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	l := &liveness{conn: conn, rc: rc}
	l.probe = l.read
	return l
}

// check reports why the connection is not usable, or nil.
func (l *liveness) check() error {
	if l == nil {
		return nil
	}
	l.err = nil
	err := l.rc.Read(l.probe)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// The read deadline of the connection's last reply has passed
		// (redigo sets one before each read, from the call's Timeout or
		// ReadTimeout, and leaves it), and RawConn.Read refuses to run
		// the probe past it: every connection idle longer than that
		// would be taken for broken and dialled anew. No read is under
		// way, and redigo sets a deadline before the next one: clear it,
		// and check.
		if err = l.conn.SetReadDeadline(time.Time{}); err == nil {
			err = l.rc.Read(l.probe)
		}
	}
	if err != nil {
		return err
	}
	return l.err
}

// read is the non-blocking read, run by RawConn.Read with the socket.
func (l *liveness) read(fd uintptr) bool {
	n, err := syscall.Read(int(fd), l.buf[:])
	switch {
	case n == 0 && err == nil:
		l.err = io.EOF
	case n > 0:
		l.err = errUnexpectedRead
	case err == syscall.EAGAIN || err == syscall.EWOULDBLOCK:
		l.err = nil
	default:
		l.err = err
	}
	return true // done: never wait for the socket to become readable
}
