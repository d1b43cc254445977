//go:build !unix

package redistest

import "io"

// holdPort holds nothing where sockets are not Unix's: a stopped server's
// port may then be taken by another process until the server restarts.
func holdPort(int) (io.Closer, error) { return nil, nil }
