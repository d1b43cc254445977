//go:build unix

package redistest

import (
	"io"
	"syscall"
)

// holdPort binds a TCP socket to 127.0.0.1:port without listening on it,
// and without SO_REUSEADDR: until it is closed, no other process can bind
// the port (a redis-server's bind, SO_REUSEADDR or not, fails with
// EADDRINUSE), and a connection to it is refused, as to a crashed server's.
func holdPort(port int) (io.Closer, error) {
	// As the net package does where sockets cannot be made close-on-exec
	// at once: no redis-server started meanwhile may inherit the socket,
	// and with it the port.
	syscall.ForkLock.RLock()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err == nil {
		syscall.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, err
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	return heldPort(fd), nil
}

// heldPort is a socket of holdPort's.
type heldPort int

func (h heldPort) Close() error { return syscall.Close(int(h)) }
