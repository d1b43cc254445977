package redisstore

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
)

// FromEnv returns a Config for the server described by the environment, with
// every other field zero (so [NewPool] and [New] apply their defaults).
//
// REDIS_URL, when set and not empty, takes precedence; see [ParseURL] for its
// form. Otherwise FromEnv reads:
//
//	REDIS_HOST      host name or IP address; default 127.0.0.1
//	REDIS_PORT      TCP port, 1-65535; default 6379
//	REDIS_USERNAME  ACL user; default none (used only with a password)
//	REDIS_PASSWORD  password; default none
//	REDIS_DB        database number, 0 or more; default 0
//	REDIS_TLS       a boolean as accepted by strconv.ParseBool; when true,
//	                connect with TLS, verifying the server's certificate
//	                against the system roots for REDIS_HOST; default false
//
// An empty variable counts as unset. A bad value is an error that names the
// variable and what was expected; the values of REDIS_URL and REDIS_PASSWORD
// never appear in it.
func FromEnv() (Config, error) {
	return fromEnv(os.LookupEnv)
}

// fromEnv is FromEnv reading variables through lookup, for tests.
func fromEnv(lookup func(string) (string, bool)) (Config, error) {
	get := func(name string) string {
		v, _ := lookup(name)
		return v
	}
	if raw := get("REDIS_URL"); raw != "" {
		cfg, err := parseURL(raw)
		if err != nil {
			return Config{}, fmt.Errorf("redisstore: REDIS_URL: %w", err)
		}
		return cfg, nil
	}

	host := get("REDIS_HOST")
	if host == "" {
		host = "127.0.0.1"
	}
	port := 6379
	if v := get("REDIS_PORT"); v != "" {
		p, err := parsePort(v)
		if err != nil {
			return Config{}, fmt.Errorf("redisstore: REDIS_PORT: want a port number 1-65535, got %q", v)
		}
		port = p
	}
	addr, ok := joinHostPort(host, port)
	if !ok {
		return Config{}, fmt.Errorf("redisstore: REDIS_HOST: want a host name or IP address, got %q", host)
	}
	cfg := Config{
		Addr:     addr,
		Username: get("REDIS_USERNAME"),
		Password: get("REDIS_PASSWORD"),
	}
	if v := get("REDIS_DB"); v != "" {
		db, err := strconv.Atoi(v)
		if err != nil || db < 0 {
			return Config{}, fmt.Errorf("redisstore: REDIS_DB: want an integer 0 or more, got %q", v)
		}
		cfg.DB = db
	}
	if v := get("REDIS_TLS"); v != "" {
		on, err := strconv.ParseBool(v)
		if err != nil {
			return Config{}, fmt.Errorf("redisstore: REDIS_TLS: want true or false, got %q", v)
		}
		if on {
			cfg.TLS = newTLSConfig(host)
		}
	}
	return cfg, nil
}

// ParseURL returns a Config for the server a Redis URL describes, with every
// other field zero. The URL has the form
//
//	redis://[[user]:password@]host[:port][/db]
//	rediss://[[user]:password@]host[:port][/db]
//
// where rediss selects TLS, verifying the server's certificate against the
// system roots for host. The port defaults to 6379 and db to 0. As in
// redis-cli and redigo, userinfo without a colon ("redis://secret@host") is
// a password for the default user. Query parameters and fragments are
// rejected rather than ignored.
//
// Errors say what is wrong but never repeat the URL, which may contain a
// password.
func ParseURL(raw string) (Config, error) {
	cfg, err := parseURL(raw)
	if err != nil {
		return Config{}, fmt.Errorf("redisstore: redis URL: %w", err)
	}
	return cfg, nil
}

// parseURL is ParseURL with errors that lack the package prefix. No error
// may contain any part of raw: callers print them, and raw may hold a
// password. That is why url.Parse's error, which quotes its input, is
// replaced rather than wrapped.
func parseURL(raw string) (Config, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Config{}, errors.New("malformed URL")
	}
	var useTLS bool
	switch u.Scheme {
	case "redis":
	case "rediss":
		useTLS = true
	default:
		return Config{}, errors.New("want scheme redis:// or rediss://")
	}
	if u.Opaque != "" {
		return Config{}, errors.New("want // after the scheme")
	}
	if u.RawQuery != "" || u.ForceQuery {
		return Config{}, errors.New("query parameters are not supported")
	}
	if u.Fragment != "" {
		return Config{}, errors.New("fragments are not supported")
	}
	host := u.Hostname()
	if host == "" {
		return Config{}, errors.New("missing host")
	}
	port := 6379
	if p := u.Port(); p != "" {
		if port, err = parsePort(p); err != nil {
			return Config{}, errors.New("want a port number 1-65535")
		}
	}
	addr, ok := joinHostPort(host, port)
	if !ok {
		return Config{}, errors.New("malformed host")
	}
	cfg := Config{Addr: addr}
	if u.User != nil {
		if pass, ok := u.User.Password(); ok {
			cfg.Username, cfg.Password = u.User.Username(), pass
		} else {
			cfg.Password = u.User.Username()
		}
	}
	switch path := strings.TrimPrefix(u.Path, "/"); {
	case path == "":
	case strings.TrimLeft(path, "0123456789") != "":
		return Config{}, errors.New("want a database number as the path")
	default:
		if cfg.DB, err = strconv.Atoi(path); err != nil {
			return Config{}, errors.New("database number out of range")
		}
	}
	if useTLS {
		cfg.TLS = newTLSConfig(host)
	}
	return cfg, nil
}

// joinHostPort returns host:port, and false if the result would not split
// back into the same host and port (a host such as "]" or "[x").
func joinHostPort(host string, port int) (string, bool) {
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	h, _, err := net.SplitHostPort(addr)
	return addr, err == nil && h == host
}

// parsePort parses a decimal TCP port number in 1-65535.
func parsePort(s string) (int, error) {
	p, err := strconv.ParseUint(s, 10, 16)
	if err != nil || p == 0 {
		return 0, errors.New("bad port")
	}
	return int(p), nil
}

// newTLSConfig returns a TLS configuration that verifies the server's
// certificate for host against the system roots.
func newTLSConfig(host string) *tls.Config {
	return &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
}
