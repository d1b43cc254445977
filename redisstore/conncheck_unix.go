//go:build unix

package redisstore

import (
	"errors"
	"io"
	"net"
	"syscall"
)

// errUnexpectedRead reports data waiting on an idle connection.
var errUnexpectedRead = errors.New("redisstore: unexpected data on idle connection")

// connCheck reports whether an idle connection is still usable, the way
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
func connCheck(conn net.Conn) error {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var checkErr error
	err = rc.Read(func(fd uintptr) bool {
		var buf [1]byte
		n, err := syscall.Read(int(fd), buf[:])
		switch {
		case n == 0 && err == nil:
			checkErr = io.EOF
		case n > 0:
			checkErr = errUnexpectedRead
		case err == syscall.EAGAIN || err == syscall.EWOULDBLOCK:
			checkErr = nil
		default:
			checkErr = err
		}
		return true // done: never wait for the socket to become readable
	})
	if err != nil {
		return err
	}
	return checkErr
}
