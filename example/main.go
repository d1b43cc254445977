// Command example is the sessionkit demo server: a login form, a dashboard
// and a JSON API over sessions kept in Redis.
//
//	make run
//
// Environment: ADDR (default 127.0.0.1:8080); REDIS_URL, or REDIS_HOST and
// the other REDIS_* variables of redisstore.FromEnv (unset: an embedded
// in-memory Redis); SESSION_KEYS (unset: random keys for this process, so
// sessions do not survive a restart); SESSION_LIFETIME (default 24h);
// SESSION_IDLE_TIMEOUT (default 30m); SESSION_COOKIE_SECURE (default false,
// since the example serves plain HTTP on localhost). Demo users: alice /
// wonderland and bob / builder.
package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := serve(log); err != nil {
		log.Error("example: exiting", "error", err)
		os.Exit(1)
	}
}

func serve(log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	a, err := setup(log)
	if err != nil {
		return err
	}
	defer a.close()

	addr := os.Getenv("ADDR")
	if addr == "" {
		addr = "127.0.0.1:8080"
	}
	srv := &http.Server{
		Addr:              addr,
		Handler:           a.handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Info("example: listening", "url", "http://"+addr)

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
