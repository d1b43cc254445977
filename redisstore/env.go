package redisstore

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// FromEnv returns a Config for the deployment described by the environment,
// with every other field zero (so [NewPool] and [New] apply their defaults).
//
// One server is named by REDIS_URL, which takes precedence when set (see
// [ParseURL] for its form), or else by REDIS_HOST and REDIS_PORT. A Sentinel
// setup is named by REDIS_SENTINELS and REDIS_SENTINEL_MASTER, a Cluster by
// REDIS_CLUSTER_NODES; naming two kinds at once is an error that names the
// variables. FromEnv reads:
//
//	REDIS_URL                 one server, as redis[s]://[[user]:password@]host[:port][/db]
//	REDIS_HOST                host name or IP address; default 127.0.0.1
//	REDIS_PORT                TCP port, 1-65535; default 6379
//	REDIS_SENTINELS           comma-separated host:port of sentinels
//	REDIS_SENTINEL_MASTER     the name the sentinels monitor the master under
//	REDIS_SENTINEL_USERNAME   ACL user for the sentinels; default none
//	REDIS_SENTINEL_PASSWORD   password for the sentinels; default none
//	REDIS_CLUSTER_NODES       comma-separated host:port of some nodes of a Cluster
//	REDIS_USERNAME            ACL user for the data nodes; default none (without a password: AUTH with an empty one)
//	REDIS_PASSWORD            password for the data nodes; default none
//	REDIS_DB                  database number, 0 or more; default 0 (a Cluster has only 0)
//	REDIS_TLS                 a boolean as accepted by strconv.ParseBool; when true,
//	                          connect with TLS, verifying every server's certificate
//	                          against the system roots for its host (under Sentinel,
//	                          the sentinels' too); default false
//	REDIS_WAIT_REPLICAS       replicas a logout, revocation or re-login waits for (Config.WaitReplicas): set
//	                          it to the number of replicas; default 0
//
// and the near-cache's settings ([NearCache], Config.NearCache):
//
//	REDIS_NEAR_CACHE_MAX_ENTRIES   records kept in memory (MaxEntries), 0 or more;
//	                               default 0: no near-cache
//	REDIS_NEAR_CACHE_STALENESS     Staleness, a Go duration of at least 4ms; default 20ms
//	REDIS_NEAR_CACHE_STRICT        Strict, a boolean as accepted by strconv.ParseBool; default false
//	REDIS_NEAR_CACHE_EXTEND_EVERY  ExtendEvery, a positive Go duration; default 1m
//
// The other three take effect only with REDIS_NEAR_CACHE_MAX_ENTRIES above
// 0, which a Cluster (REDIS_CLUSTER_NODES) refuses, as [Open] does.
//
// With REDIS_URL only REDIS_WAIT_REPLICAS and the near-cache's variables
// are also read, REDIS_USERNAME and REDIS_PASSWORD too when the URL holds
// neither a user nor a password, and REDIS_DB, which selects the database
// when the URL names none and is an error when it names another; and
// REDIS_TLS=true with a redis:// URL is an error (the URL would connect
// without TLS). An empty variable counts as unset. A bad value is an error
// that names the variable and what was expected; the values of REDIS_URL,
// of the passwords, and any value with an "@" in it (a URL with a password
// set in the wrong variable) never appear in it.
func FromEnv() (Config, error) {
	return fromEnv(os.LookupEnv)
}

// fromEnv is FromEnv reading variables through lookup, for tests.
func fromEnv(lookup func(string) (string, bool)) (Config, error) {
	get := func(name string) string {
		v, _ := lookup(name)
		return v
	}
	cfg, err := deploymentFromEnv(get)
	if err != nil {
		return Config{}, err
	}
	if v := get("REDIS_WAIT_REPLICAS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return Config{}, fmt.Errorf("redisstore: REDIS_WAIT_REPLICAS: want an integer 0 or more, got %s", shown(v))
		}
		cfg.WaitReplicas = n
	}
	near, err := nearCacheFromEnv(get, len(cfg.ClusterNodes) > 0)
	if err != nil {
		return Config{}, err
	}
	cfg.NearCache = near
	return cfg, nil
}

// nearCacheFromEnv reads the REDIS_NEAR_CACHE_* variables; cluster reports
// whether the deployment is a Redis Cluster, where the near-cache is not
// available.
func nearCacheFromEnv(get func(string) string, cluster bool) (NearCache, error) {
	var n NearCache
	if v := get("REDIS_NEAR_CACHE_MAX_ENTRIES"); v != "" {
		entries, err := strconv.Atoi(v)
		if err != nil || entries < 0 {
			return NearCache{}, fmt.Errorf("redisstore: REDIS_NEAR_CACHE_MAX_ENTRIES: want an integer 0 or more, 0 for no near-cache, got %s", shown(v))
		}
		if entries > 0 && cluster {
			return NearCache{}, errors.New("redisstore: REDIS_NEAR_CACHE_MAX_ENTRIES: the near-cache is not available on a Redis Cluster (REDIS_CLUSTER_NODES) yet; set 0 or unset it")
		}
		n.MaxEntries = entries
	}
	if v := get("REDIS_NEAR_CACHE_STALENESS"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < minNearCacheStaleness {
			return NearCache{}, fmt.Errorf("redisstore: REDIS_NEAR_CACHE_STALENESS: want a duration of at least %v such as 20ms, got %s", minNearCacheStaleness, shown(v))
		}
		n.Staleness = d
	}
	if v := get("REDIS_NEAR_CACHE_STRICT"); v != "" {
		strict, err := strconv.ParseBool(v)
		if err != nil {
			return NearCache{}, fmt.Errorf("redisstore: REDIS_NEAR_CACHE_STRICT: want true or false, got %s", shown(v))
		}
		n.Strict = strict
	}
	if v := get("REDIS_NEAR_CACHE_EXTEND_EVERY"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return NearCache{}, fmt.Errorf("redisstore: REDIS_NEAR_CACHE_EXTEND_EVERY: want a positive duration such as 1m, got %s", shown(v))
		}
		n.ExtendEvery = d
	}
	return n, nil
}

// deploymentFromEnv reads the variables that name the servers and how to
// reach them.
func deploymentFromEnv(get func(string) string) (Config, error) {
	sentinels, nodes := get("REDIS_SENTINELS"), get("REDIS_CLUSTER_NODES")
	if sentinels == "" {
		for _, name := range []string{"REDIS_SENTINEL_MASTER", "REDIS_SENTINEL_USERNAME", "REDIS_SENTINEL_PASSWORD"} {
			if get(name) != "" {
				return Config{}, fmt.Errorf("redisstore: %s is set without REDIS_SENTINELS", name)
			}
		}
	}
	var cfg Config
	var host string // for TLS: the one server's host, or "" to take each node's
	switch {
	case sentinels != "" && nodes != "":
		return Config{}, errors.New("redisstore: REDIS_SENTINELS and REDIS_CLUSTER_NODES name two different deployments; set one")
	case sentinels != "" || nodes != "":
		kind := "REDIS_SENTINELS"
		if nodes != "" {
			kind = "REDIS_CLUSTER_NODES"
		}
		for _, name := range []string{"REDIS_URL", "REDIS_HOST", "REDIS_PORT"} {
			if get(name) != "" {
				return Config{}, fmt.Errorf("redisstore: %s and %s name two different deployments; set one", name, kind)
			}
		}
		addrs, err := addrList(kind, sentinels+nodes)
		if err != nil {
			return Config{}, err
		}
		if nodes != "" {
			cfg.ClusterNodes = addrs
		} else {
			cfg.SentinelAddrs = addrs
			cfg.SentinelMaster = get("REDIS_SENTINEL_MASTER")
			if cfg.SentinelMaster == "" {
				return Config{}, errors.New("redisstore: REDIS_SENTINEL_MASTER: required with REDIS_SENTINELS")
			}
			cfg.SentinelUsername, cfg.SentinelPassword = get("REDIS_SENTINEL_USERNAME"), get("REDIS_SENTINEL_PASSWORD")
		}
	case get("REDIS_URL") != "":
		raw := get("REDIS_URL")
		cfg, err := parseURL(raw)
		if err != nil {
			return Config{}, fmt.Errorf("redisstore: REDIS_URL: %w", err)
		}
		if cfg.Username == "" && cfg.Password == "" {
			// A URL from configuration, the credentials from a secret: as
			// Describe's advice for a server that wants a password says.
			cfg.Username, cfg.Password = get("REDIS_USERNAME"), get("REDIS_PASSWORD")
		}
		// REDIS_DB completes a URL that names no database; one that
		// contradicts the URL's fails rather than lose to it unseen, which
		// would put the sessions in a database the operator did not choose.
		if v := get("REDIS_DB"); v != "" {
			db, err := parseDB(v)
			if err != nil {
				return Config{}, err
			}
			switch {
			case !urlNamesDB(raw):
				cfg.DB = db
			case db != cfg.DB:
				return Config{}, fmt.Errorf("redisstore: REDIS_DB is %d but REDIS_URL names database %d: name it in one of them", db, cfg.DB)
			}
		}
		// The URL says whether to use TLS; one that says no must not
		// silently win over a REDIS_TLS that asks for it.
		if v := get("REDIS_TLS"); v != "" {
			on, err := strconv.ParseBool(v)
			if err != nil {
				return Config{}, fmt.Errorf("redisstore: REDIS_TLS: want true or false, got %s", shown(v))
			}
			if on && cfg.TLS == nil {
				return Config{}, errors.New("redisstore: REDIS_TLS is true but REDIS_URL is redis://: use rediss:// for TLS")
			}
		}
		return cfg, nil
	default:
		host = get("REDIS_HOST")
		if host == "" {
			host = "127.0.0.1"
		}
		port := 6379
		if v := get("REDIS_PORT"); v != "" {
			p, err := parsePort(v)
			if err != nil {
				if strings.HasPrefix(v, "tcp://") {
					// Kubernetes sets REDIS_PORT=tcp://<ip>:<port> in
					// every pod of a namespace with a Service named redis
					// (its "service links"), unasked.
					return Config{}, fmt.Errorf("redisstore: REDIS_PORT: want a port number 1-65535, got %s, as Kubernetes sets it for a Service named redis: set REDIS_URL (which REDIS_PORT does not override) or the pod's enableServiceLinks: false", shown(v))
				}
				return Config{}, fmt.Errorf("redisstore: REDIS_PORT: want a port number 1-65535, got %s", shown(v))
			}
			port = p
		}
		addr, ok := joinHostPort(host, port)
		if !ok || !validHost(host) {
			// The value is not repeated: it may be a URL with a password.
			return Config{}, errors.New("redisstore: REDIS_HOST: want a host name or IP address (no scheme, user, password or port)")
		}
		cfg.Addr = addr
	}
	cfg.Username, cfg.Password = get("REDIS_USERNAME"), get("REDIS_PASSWORD")
	if v := get("REDIS_DB"); v != "" {
		db, err := parseDB(v)
		if err != nil {
			return Config{}, err
		}
		if db != 0 && nodes != "" {
			return Config{}, errors.New("redisstore: REDIS_DB: a Redis Cluster (REDIS_CLUSTER_NODES) has database 0 only")
		}
		cfg.DB = db
	}
	if v := get("REDIS_TLS"); v != "" {
		on, err := strconv.ParseBool(v)
		if err != nil {
			return Config{}, fmt.Errorf("redisstore: REDIS_TLS: want true or false, got %s", shown(v))
		}
		if on {
			cfg.TLS = newTLSConfig(host)
		}
	}
	return cfg, nil
}

// shown returns v, a variable's value, quoted for an error that repeats
// it, or a note in its place when v holds an "@": a Redis URL with a user
// or password, set in the wrong variable, must not reach the logs.
func shown(v string) string {
	if strings.Contains(v, "@") {
		return `a value with "@" (not repeated: it may be a URL with a password)`
	}
	return strconv.Quote(v)
}

// parseDB parses REDIS_DB's value v, a database number.
func parseDB(v string) (int, error) {
	db, err := strconv.Atoi(v)
	if err != nil || db < 0 {
		return 0, fmt.Errorf("redisstore: REDIS_DB: want an integer 0 or more, got %s", shown(v))
	}
	return db, nil
}

// urlNamesDB reports whether raw, a URL that parseURL accepts, has a
// database number as its path ("redis://host/0"), not none ("redis://host"
// or "redis://host/").
func urlNamesDB(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && strings.TrimPrefix(u.Path, "/") != ""
}

// addrList parses the comma-separated host:port list in the variable name.
func addrList(name, list string) ([]string, error) {
	var addrs []string
	for i, a := range strings.Split(list, ",") {
		a = strings.TrimSpace(a)
		if !validAddr(a) {
			// The entry is not repeated: it may be a URL with a password.
			return nil, fmt.Errorf("redisstore: %s: entry %d: want host:port with a port 1-65535", name, i+1)
		}
		addrs = append(addrs, a)
	}
	return addrs, nil
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
	errScheme := errors.New("want scheme redis:// or rediss://")
	u, err := url.Parse(raw)
	if err != nil {
		if !strings.Contains(raw, "://") {
			// A bare address, "127.0.0.1:6379", which url.Parse refuses
			// (where "localhost:6379" parses with scheme "localhost").
			return Config{}, errScheme
		}
		return Config{}, errors.New("malformed URL (percent-encode any of : / ? # [ ] @ % in the user name and password)")
	}
	var useTLS bool
	switch u.Scheme {
	case "redis":
	case "rediss":
		useTLS = true
	default:
		return Config{}, errScheme
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
	// validHost refuses a host with a colon that is no IPv6 address: in
	// "redis://h:6379:1" url.Parse takes "h:6379" for the host.
	addr, ok := joinHostPort(host, port)
	if !ok || !validHost(host) {
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

// validHost reports whether host is an IP address or a host name (letters,
// digits, dots, hyphens and underscores): not a host:port, which would
// otherwise fail only when the first connection is dialled.
func validHost(host string) bool {
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	return !strings.ContainsFunc(host, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_')
	})
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
// certificate for host against the system roots; with host "", for the host
// of each address dialled.
func newTLSConfig(host string) *tls.Config {
	return &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
}
