package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// shutdownGrace is how long the requests in flight at a SIGTERM or SIGINT
// may take to finish.
const shutdownGrace = 5 * time.Second

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(log); err != nil {
		log.Error("example: exiting", "error", err)
		os.Exit(1)
	}
	log.Info("example: stopped")
}

// run sets the example up from the environment and serves it until SIGTERM
// or SIGINT, then shuts it down and closes the store.
func run(log *slog.Logger) error {
	ctx, stop := signalled(log)
	defer stop()

	a, err := setup(log)
	if err != nil {
		return err
	}
	defer a.close() // after serve: no request is using the store any more

	l, err := listen(a.addr)
	if err != nil {
		return err
	}
	// Only now, with the port bound, is the server reachable.
	log.Info("example: listening", "url", "http://"+l.Addr().String())
	return serve(ctx, log, l, a.handler, shutdown{grace: shutdownGrace, delay: a.delay, stopping: a.stopping})
}

// shutdown is how serve shuts down: first, for delay, it goes on serving
// after calling stopping (which makes /readyz fail), so that a load
// balancer that polls readiness, or an orchestrator that takes the
// instance out of its endpoints as it signals it, stops sending requests
// before the listener closes; then the requests in flight get grace to
// finish.
type shutdown struct {
	grace, delay time.Duration
	stopping     func()
}

// repeatWindow is how long after the first signal the same signal again
// counts as that one: timeout(1), and other supervisors that signal a
// process and then its process group, deliver it twice at once, which
// would otherwise cut the graceful shutdown short.
const repeatWindow = time.Second

// signalled returns a context that the first SIGTERM or SIGINT cancels,
// with the signal as its cause. The second (the same signal again within
// repeatWindow is the first once more) ends the process at once,
// with status 128 plus the signal's number, as the signal's default
// action would: the process may have started with SIGINT ignored (a
// background job of a script), which the default action would then be.
// stop ends that, and the signals' default actions come back.
func signalled(log *slog.Logger) (_ context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	// This goroutine waits for the signals until stop.
	go func() {
		var sig os.Signal
		select {
		case sig = <-sigs:
			cancel(errors.New(sig.String() + " signal received"))
		case <-done:
			return
		}
		first, at := sig, time.Now()
		for sig == first && time.Since(at) < repeatWindow {
			select {
			case sig = <-sigs:
			case <-done:
				return
			}
		}
		log.Warn("example: second signal: exiting at once", "signal", sig.String())
		code := 1
		if s, ok := sig.(syscall.Signal); ok {
			code = 128 + int(s)
		}
		os.Exit(code)
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
		cancel(nil)
	}
}

// listen binds addr, the value of ADDR (or its default). Its error names
// ADDR, the variable to change when the port is taken or the address
// malformed.
func listen(addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("example: cannot listen on ADDR=%s (set ADDR to a free host:port): %w", addr, err)
	}
	return l, nil
}

// serve serves h on l until ctx is done, then shuts the server down: after
// down.delay (see shutdown) the listener closes, idle connections close,
// and the requests in flight get up to down.grace to finish. It returns
// nil when they all did, and an error when some were still running after
// grace and had to be cut off, or when serving failed. The request
// contexts do not derive from ctx, so a signal does not cancel the
// requests it lets finish; they are cancelled only when grace runs out.
// Connections that the kernel had accepted but the server had not yet
// taken when the listener closes are reset, as net/http's Shutdown does:
// the delay is for the clients that would still open them.
func serve(ctx context.Context, log *slog.Logger, l net.Listener, h http.Handler, down shutdown) error {
	grace := down.grace
	base, cutOff := context.WithCancel(context.Background())
	defer cutOff()
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       60 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return base },
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	// This goroutine owns srv.Serve; it ends when Shutdown or Close below
	// closes the listener, and serve waits for it before returning.
	go func() { errc <- srv.Serve(l) }()

	select {
	case err := <-errc:
		return fmt.Errorf("example: serve: %w", err)
	case <-ctx.Done():
	}
	if down.delay > 0 {
		down.stopping()
		// Responses now say Connection: close, and idle connections
		// close, so that clients held by keep-alive open new ones,
		// which a load balancer sends elsewhere.
		srv.SetKeepAlivesEnabled(false)
		log.Info("example: shutting down: /readyz fails; serving for SHUTDOWN_DELAY before closing the listener",
			"cause", context.Cause(ctx).Error(), "delay", down.delay.String())
		// A second signal ends the process at once (see signalled).
		time.Sleep(down.delay)
	}
	log.Info("example: shutting down: no new connections; waiting for the requests in flight",
		"cause", context.Cause(ctx).Error(), "grace", grace.String())
	shutdown, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := srv.Shutdown(shutdown)
	if err != nil {
		// Connections first: a handler that its context's end makes
		// return would otherwise have its response written (a 200 with
		// what it wrote) before Close cut the connection.
		srv.Close()
		cutOff()
		err = fmt.Errorf("example: requests still running after the %v grace period were cut off: %w", grace, err)
	}
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, fmt.Errorf("example: serve: %w", serr))
	}
	return err
}
