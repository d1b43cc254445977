package redisstore

import (
	"context"
	"net"
	"time"

	"github.com/gomodule/redigo/redis"
)

// NewPool returns a redigo connection pool configured from cfg: connections
// dial with cfg's address, credentials, database, TLS and timeouts; at most
// MaxActive are open at once and a borrower waits (bounded by its context)
// when all are busy; at most MaxIdle are kept idle, for at most IdleTimeout.
//
// Borrowing an idle connection first checks, without sending anything to
// Redis, that the server has not closed it (after a Redis restart, for
// example), so a stale connection is replaced instead of failing a request.
// See the package documentation.
//
// The caller owns the pool and must Close it. Always borrow with GetContext
// and a deadline: with Wait set, Get can block for as long as the pool is
// exhausted.
func NewPool(cfg Config) (*redis.Pool, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	return newPool(cfg), nil
}

// newPool builds the pool from a normalized Config.
func newPool(cfg Config) *redis.Pool {
	return &redis.Pool{
		DialContext: func(ctx context.Context) (redis.Conn, error) {
			c, err := dial(ctx, cfg)
			if err != nil {
				return nil, err // not a nil *checkedConn in an interface
			}
			return c, nil
		},
		TestOnBorrow: testOnBorrow,
		MaxActive:    cfg.MaxActive,
		MaxIdle:      cfg.MaxIdle,
		IdleTimeout:  cfg.IdleTimeout,
		Wait:         true,
	}
}

// dial opens one connection. It dials TCP itself, through DialContextFunc,
// to keep hold of the socket for the [liveness] check; under TLS that is the TCP
// connection below the TLS layer, which is what the check needs: it asks the
// kernel whether the peer closed the socket.
func dial(ctx context.Context, cfg Config) (c *checkedConn, err error) {
	if cfg.dials != nil {
		defer cfg.dials.count(&err)
	}
	var raw net.Conn
	d := net.Dialer{Timeout: cfg.DialTimeout}
	opts := []redis.DialOption{
		redis.DialContextFunc(func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			raw = c
			return c, err
		}),
		redis.DialReadTimeout(cfg.ReadTimeout),
		redis.DialWriteTimeout(cfg.WriteTimeout),
	}
	// redigo sends AUTH only with a password, and would drop a username
	// without one: dial then authenticates itself, before SELECT.
	nopass := cfg.Username != "" && cfg.Password == ""
	if !nopass {
		opts = append(opts,
			redis.DialDatabase(cfg.DB),
			redis.DialUsername(cfg.Username),
			redis.DialPassword(cfg.Password),
		)
	}
	if cfg.TLS != nil {
		opts = append(opts,
			redis.DialUseTLS(true),
			redis.DialTLSConfig(cfg.TLS),
			redis.DialTLSHandshakeTimeout(cfg.DialTimeout),
		)
	}
	conn, err := redis.DialContext(ctx, "tcp", cfg.Addr, opts...)
	if err != nil {
		return nil, err
	}
	if nopass {
		// As redigo bounds the AUTH and SELECT it sends itself: each reply
		// within ReadTimeout, and within what ctx has left.
		within := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, cfg.ReadTimeout) }
		actx, cancel := within()
		err := authUser(actx, conn, cfg.Username)
		cancel()
		if err == nil && cfg.DB != 0 {
			actx, cancel := within()
			_, err = cmd(actx, conn, "SELECT", cfg.DB)
			cancel()
		}
		if err != nil {
			conn.Close()
			return nil, err
		}
	}
	return &checkedConn{Conn: conn, live: newLiveness(raw)}, nil
}

// authUser authenticates conn as username with an empty password (AUTH
// username ""), which a user with "nopass" accepts, as any password, and
// any other refuses with WRONGPASS: for a username configured without a
// password, so that the connection runs as that user, not as "default".
func authUser(ctx context.Context, conn redis.Conn, username string) error {
	_, err := cmd(ctx, conn, "AUTH", username, "")
	return err
}

// testOnBorrow is the pool's TestOnBorrow: it rejects an idle connection
// the server has closed, or that has unread data waiting (a reply nobody
// read means the connection is out of step), or that its Source retired.
// It costs one non-blocking system call and no Redis command.
func testOnBorrow(c redis.Conn, _ time.Time) error {
	cc, ok := c.(*checkedConn)
	if !ok {
		return nil
	}
	if cc.retired != nil && cc.retired() {
		return errRetired
	}
	return cc.live.check()
}

// checkedConn is a redis.Conn that keeps the liveness check of its socket
// for testOnBorrow. It forwards the optional context and timeout
// interfaces, which the pool's connections look for on the connection they
// wrap.
type checkedConn struct {
	redis.Conn
	live *liveness
	// retired, when set, reports that the connection must not be lent
	// again: under Sentinel, that it goes to a former master.
	retired func() bool
}

var (
	_ redis.ConnWithContext = (*checkedConn)(nil)
	_ redis.ConnWithTimeout = (*checkedConn)(nil)
)

// DoContext implements redis.ConnWithContext for users of the pool that call it.
func (c *checkedConn) DoContext(ctx context.Context, cmd string, args ...any) (any, error) {
	return redis.DoContext(c.Conn, ctx, cmd, args...)
}

// ReceiveContext implements redis.ConnWithContext for users of the pool that call it.
func (c *checkedConn) ReceiveContext(ctx context.Context) (any, error) {
	return redis.ReceiveContext(c.Conn, ctx)
}

// DoWithTimeout implements redis.ConnWithTimeout for users of the pool that call it.
func (c *checkedConn) DoWithTimeout(timeout time.Duration, cmd string, args ...any) (any, error) {
	return redis.DoWithTimeout(c.Conn, timeout, cmd, args...)
}

// ReceiveWithTimeout implements redis.ConnWithTimeout for users of the pool that call it.
func (c *checkedConn) ReceiveWithTimeout(timeout time.Duration) (any, error) {
	return redis.ReceiveWithTimeout(c.Conn, timeout)
}
