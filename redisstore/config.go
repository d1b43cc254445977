package redisstore

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Defaults used for the zero value of the corresponding [Config] field.
const (
	// DefaultAddr is the default Config.Addr.
	DefaultAddr = "127.0.0.1:6379"
	// DefaultDialTimeout is the default Config.DialTimeout.
	DefaultDialTimeout = time.Second
	// DefaultReadTimeout is the default Config.ReadTimeout.
	DefaultReadTimeout = time.Second
	// DefaultWriteTimeout is the default Config.WriteTimeout.
	DefaultWriteTimeout = time.Second
	// DefaultMaxActive is the default Config.MaxActive.
	DefaultMaxActive = 64
	// DefaultIdleTimeout is the default Config.IdleTimeout.
	DefaultIdleTimeout = 5 * time.Minute
	// DefaultTimeout is the default Config.Timeout.
	DefaultTimeout = time.Second
)

// Config configures the connection pool built by [NewPool] and [Open] and the
// [Store] built by [New]. The zero value of every field means its default,
// so Config{} connects to 127.0.0.1:6379 over plain TCP. Negative durations
// and counts are an error. A Config prints, logs and marshals to JSON with
// its passwords and TLS redacted (see [Config.String] and
// [Config.MarshalJSON]), so JSON does not carry it whole.
type Config struct {
	// Addr is the server's address as host:port. Default "127.0.0.1:6379".
	Addr string

	// Username is the Redis 6 ACL user to authenticate as. Default "",
	// which means the "default" user. Without a Password, new connections
	// send AUTH Username "" (an ACL user with "nopass" accepts any
	// password), so that they run as that user, never as "default"; a
	// user that has a password refuses it with WRONGPASS.
	Username string

	// Password authenticates new connections with AUTH. Default "", which
	// sends no AUTH command unless Username is set.
	Password string

	// DB is the database number selected on new connections. Default 0,
	// which sends no SELECT command.
	DB int

	// TLS, when non-nil, makes every connection use TLS with this
	// configuration; certificates are verified as the configuration says
	// (against the system roots unless RootCAs is set). An empty ServerName
	// is taken from the host in Addr. Default nil: plain TCP.
	TLS *tls.Config

	// DialTimeout bounds connecting, including the TLS handshake. Default
	// 1s when zero.
	DialTimeout time.Duration

	// ReadTimeout bounds waiting for each reply on a connection used
	// without a deadline: those of the pool NewPool returns, as the caller
	// uses them, and the near-cache's connection, which PINGs at least
	// every ReadTimeout/2, so that its wait for a message never times out
	// on a healthy Redis (see NearCache.Staleness); and the replies to
	// AUTH and SELECT on a connection being dialled (at most the time its
	// call has left). The Store's other commands wait for a reply as long
	// as their call's Timeout has left, longer or shorter than
	// ReadTimeout. Default 1s when zero. (A zero read timeout
	// in redigo means none: a stalled server would hang every call on it,
	// which is why zero here means the default instead.)
	ReadTimeout time.Duration

	// WriteTimeout bounds sending each command. Default 1s when zero.
	WriteTimeout time.Duration

	// MaxActive is the most connections the pool opens at once. When all
	// are busy, a call waits for one to be returned, for at most Timeout or
	// until its context ends. Default 64 when zero (redigo's zero, unlimited,
	// is not available). On a Cluster it is per node, and the most calls
	// bound to one node at once. A node's pool also opens connections for
	// up to MaxActive Pings at once (or Iterate's and KeyStats' list of
	// masters; each on a random node), and, while a node stalls, for the
	// refreshes of the slot map that failing calls start, one every 100 ms
	// at most, each holding one of its connections for ReadTimeout: about
	// 10 more a second of ReadTimeout (10 with the default). Ping's checks
	// of each master, Iterate and KeyStats draw on a second pool a node, of
	// MaxActive too.
	MaxActive int

	// MaxIdle is the most idle connections the pool keeps for reuse.
	// Default MaxActive when zero (redigo's zero, no reuse at all, is not
	// available): a smaller pool of idle connections than of busy ones
	// closes and redials connections under steady load, a dial for many a
	// request; IdleTimeout closes the ones a quieter time leaves unused.
	// Above MaxActive it is MaxActive in effect: no more connections are
	// open, idle or not.
	MaxIdle int

	// IdleTimeout closes idle connections that have not been used for this
	// long, when the pool is next used (redigo closes them as it lends one:
	// a pool no call uses keeps them open, and counted in PoolStats, until
	// then). Keep it below the server's timeout setting. Default 5m when
	// zero.
	IdleTimeout time.Duration

	// KeyPrefix is prepended to every key the Store uses, for example
	// "myapp:" to share a database between applications. Default "": keys
	// are exactly "session:<id>". Two applications on one Redis database
	// need prefixes of their own: with the same one, each one's List,
	// RevokeAll and session limit act on the other's sessions of the same
	// user id, even when their signing keys differ (which keep their
	// tokens apart). Changing it renames every key: every session is
	// gone (its users signed out), and every rate-limit count starts
	// afresh.
	KeyPrefix string

	// Timeout bounds each Store call, including the wait for a pooled
	// connection and any dial; the caller's context can only shorten it,
	// until a change made in two steps has made its first (AddUserSession
	// taking the session it replaces, MoveSession across Cluster slots
	// taking the record): the rest then runs to its end, each step within
	// Timeout, whatever becomes of the caller's context. Default 1s when
	// zero.
	Timeout time.Duration

	// SentinelAddrs, when set, makes [Open] find the master through Redis
	// Sentinel instead of dialling Addr, which must then be empty: the
	// host:port of one or more sentinels. Username, Password, DB and TLS
	// apply to the master; TLS also to the sentinels. See the package
	// documentation, "Sentinel and Cluster". Each entry is one sentinel's
	// vote on which server is the master, so list each sentinel once,
	// under one name (an entry twice, also with the host name in another
	// case or the IP address or port in another form, is refused; a name
	// that reaches several sentinels, such as a Kubernetes Service in
	// front of them, is one vote, cast by whichever answers). Default
	// none.
	SentinelAddrs []string

	// SentinelMaster is the name under which the sentinels monitor the
	// master. Required with SentinelAddrs.
	SentinelMaster string

	// SentinelUsername and SentinelPassword authenticate to the sentinels,
	// which have credentials of their own (their requirepass or ACL users);
	// Username and Password are the master's. Default none. As with
	// Username, a SentinelUsername without a SentinelPassword is sent with
	// an empty password (AUTH SentinelUsername "").
	SentinelUsername string

	// SentinelPassword: see SentinelUsername.
	SentinelPassword string

	// ClusterNodes, when set, makes [Open] use a Redis Cluster: the
	// host:port of one or more of its nodes, from which it learns the rest.
	// When no master it knows can be reached, or the map it gets leaves
	// slots without a master, the Store asks these again, one at a time,
	// then the nodes, replicas included, of the last slot map it learned,
	// and takes the first map that gives every slot a master: list
	// several, or a name that resolves to the current nodes (an instance
	// whose every known node has gone cannot find the cluster otherwise).
	// Addr must then be empty and DB 0 (a cluster has database 0 only), and
	// KeyPrefix must not contain "{" or "}", which would change the keys'
	// hash slots. The session package must then tag keys (session.Config.TagKey)
	// so that each user's keys share a slot. Default none.
	ClusterNodes []string

	// WaitReplicas, when above zero, makes the calls that end sessions
	// (Remove, RemoveUserSession and RemoveUserSessions: logout and
	// revocation; and AddUserSession replacing the user's signed-in
	// session: a re-login) wait, with the WAIT command, until that many replicas
	// have their writes, within the call's Timeout, and fail with
	// ErrUnavailable when fewer confirm. The sessions are ended on the
	// master either way; the error says that a failover now could bring
	// them back. A Load that finds no session waits too, and so do
	// VouchUser (which vouches for a listing of a user's sessions) and a
	// RemoveUserSessions that finds none to end, each failing the same
	// way when fewer replicas than that are in step: so a logout
	// or "log out everywhere" sent again, or a check that a session has
	// ended, is answered "ended" only by a master with all its replicas,
	// never by one that a failover has just replaced (whose promoted
	// replica left it) and to which this Store still talks, while the new
	// master holds the session. The deletion itself stays unconfirmed until the replicas
	// catch up (WAIT covers the writes of its own connection only), which
	// min-replicas-to-write on the servers bounds. Default 0: no waiting, so a
	// logout acknowledged just before the master fails can be lost with
	// the writes the replica had not received. Logins and renewals do not
	// wait (see the package documentation, "Sentinel and Cluster").
	//
	// Set it to the number of replicas of the master (of each master, on a
	// Cluster): only then does a logout that returned without error
	// survive every failover. WAIT counts any replicas, and in a failover
	// the old master, which takes writes until it is demoted, keeps the
	// replicas that were not promoted: a deletion only they confirmed is
	// lost when they resync from the new master, and a logout so
	// acknowledged comes back. The price: while any replica is
	// down or resyncing (the old master for some seconds after a
	// failover; a killed master until it rejoins, or until the Sentinels
	// forget it with SENTINEL RESET and this setting is lowered), every
	// logout fails with ErrUnavailable, its session ended on the master
	// all the same, and so does every Load of a session that has ended
	// or expired (a request with such a token has a load error, which
	// RequireAuth answers with 503, not as signed out; a login on that
	// browser still goes on, after the wait). A WAIT holds its pooled connection while it waits (up
	// to three quarters of the Timeout while a replica is stalled), so, on
	// one server and under Sentinel, at most a quarter of MaxActive calls
	// (at least one) wait at once; a call that finds no place free within
	// half its Timeout ends its sessions without waiting and fails the same
	// way, and reads, logins and Ping keep the rest of the pool. On a
	// Cluster no such bound applies: each master has a pool of its own, so
	// a stalled replica can exhaust only its master's, failing the calls on
	// that master's slots. VouchUser waits as those calls do. The reads of
	// ended sessions that wait, which any client can send as often as it
	// likes with an ended token, have places of their own: an eighth of
	// MaxActive (at least one; on a Cluster, for all the masters
	// together), within a quarter of the Timeout, or they fail without
	// waiting; a flood of them can so fail other clients' reads of ended
	// sessions, never logouts, listings, logins or reads of live sessions.
	WaitReplicas int

	// Observer, when set, is told of every Store call (for metrics; the
	// module github.com/sessionkit/sessionkit/prometheus implements it).
	// Nil (the default) costs nothing.
	Observer Observer

	// NearCache, when its MaxEntries is above zero, keeps hot session
	// records in memory, so that reading them costs no round trip, with
	// changes made anywhere seen within NearCache.Staleness (see
	// [NearCache] and docs/near-cache.md). It needs Redis 6 or later with
	// CLIENT TRACKING. Its dedicated connection dials as the Store's pool
	// does; with [New] and a Source that is neither a *redis.Pool nor a
	// [Dialer], it dials Addr with this Config's credentials, TLS and
	// timeouts instead: Addr is then required (New refuses an empty one
	// rather than default it), and so is TLS with a Password. With New,
	// the connection serves only once INFO server's run_id shows it
	// reached the Source's server (see New). Default: off.
	NearCache NearCache

	// Logger receives the Store's warnings, each at most once every 10s
	// while its cause lasts, with the number of lines held back: that the
	// near-cache's connection cannot connect (every Load then reads
	// Redis), and under Sentinel that no sentinel names the master (calls
	// go on to the one named last), with an Info line when they answer
	// again; and, at most once an hour, that [Store.Ping] found a server
	// whose maxmemory-policy may evict keys. Passwords, ids and keys are
	// never logged. Nil means slog.Default().
	Logger *slog.Logger

	// dials counts the dials of the pools Open builds, for Store.PoolStats;
	// nil for a pool built by NewPool.
	dials *dialCounter
}

// mode names which kind of deployment a Config describes.
type mode int

const (
	modeSingle   mode = iota // one server at Addr
	modeSentinel             // a master found through SentinelAddrs
	modeCluster              // a Redis Cluster reached through ClusterNodes
)

func (c Config) mode() mode {
	switch {
	case len(c.ClusterNodes) > 0:
		return modeCluster
	case len(c.SentinelAddrs) > 0:
		return modeSentinel
	}
	return modeSingle
}

// normalize validates c and returns it with every zero field set to its
// default. The error names the first bad field.
func (c Config) normalize() (Config, error) {
	durations := []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"DialTimeout", &c.DialTimeout, DefaultDialTimeout},
		{"ReadTimeout", &c.ReadTimeout, DefaultReadTimeout},
		{"WriteTimeout", &c.WriteTimeout, DefaultWriteTimeout},
		{"IdleTimeout", &c.IdleTimeout, DefaultIdleTimeout},
		{"Timeout", &c.Timeout, DefaultTimeout},
	}
	for _, d := range durations {
		if *d.v < 0 {
			return Config{}, fieldError(d.name, errNegative)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	counts := []struct {
		name string
		v    *int
		def  int
	}{
		{"DB", &c.DB, 0},
		{"MaxActive", &c.MaxActive, DefaultMaxActive},
		{"MaxIdle", &c.MaxIdle, 0}, // 0: MaxActive, set below
		{"WaitReplicas", &c.WaitReplicas, 0},
	}
	for _, n := range counts {
		if *n.v < 0 {
			return Config{}, fieldError(n.name, errNegative)
		}
		if *n.v == 0 {
			*n.v = n.def
		}
	}
	if c.MaxIdle == 0 {
		c.MaxIdle = c.MaxActive
	}
	if err := c.checkDeployment(); err != nil {
		return Config{}, err
	}
	near, err := c.NearCache.normalize(c.mode())
	if err != nil {
		return Config{}, err
	}
	c.NearCache = near
	if c.mode() == modeSingle && c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.Addr != "" && !validAddr(c.Addr) {
		return Config{}, fieldError("Addr", addrError(c.Addr))
	}
	return c, nil
}

// checkDeployment checks that c describes one server, one Sentinel setup or
// one Cluster, not a mix.
func (c Config) checkDeployment() error {
	if len(c.SentinelAddrs) > 0 && len(c.ClusterNodes) > 0 {
		return errors.New("redisstore: Config: SentinelAddrs and ClusterNodes are two different deployments; set one")
	}
	if c.mode() != modeSentinel {
		for _, f := range []struct{ name, v string }{
			{"SentinelMaster", c.SentinelMaster},
			{"SentinelUsername", c.SentinelUsername},
			{"SentinelPassword", c.SentinelPassword},
		} {
			if f.v != "" {
				return fieldError(f.name, errors.New("set without SentinelAddrs"))
			}
		}
	}
	var nodes []string
	switch c.mode() {
	case modeSingle:
		return nil
	case modeSentinel:
		if c.SentinelMaster == "" {
			return fieldError("SentinelMaster", errors.New("required with SentinelAddrs"))
		}
		// A name read from a file or an env file often keeps its newline;
		// the sentinels would answer that no such master is monitored.
		if strings.TrimSpace(c.SentinelMaster) != c.SentinelMaster {
			return fieldError("SentinelMaster", fmt.Errorf("%q has white space around it", c.SentinelMaster))
		}
		nodes = c.SentinelAddrs
	case modeCluster:
		if c.DB != 0 {
			return fieldError("DB", errors.New("a Redis Cluster has database 0 only"))
		}
		if strings.ContainsAny(c.KeyPrefix, "{}") {
			return fieldError("KeyPrefix", errors.New(`must not contain "{" or "}" on a Redis Cluster: they would change every key's hash slot`))
		}
		nodes = c.ClusterNodes
	}
	field := map[mode]string{modeSentinel: "SentinelAddrs", modeCluster: "ClusterNodes"}[c.mode()]
	if c.Addr != "" {
		return fieldError("Addr", fmt.Errorf("must be empty with %s", field))
	}
	for i, a := range nodes {
		if !validAddr(a) {
			return fieldError(fmt.Sprintf("%s[%d]", field, i), addrError(a))
		}
		if c.mode() != modeSentinel {
			continue
		}
		// Each entry is a vote on the master (see sentinelSource).
		if j := slices.IndexFunc(nodes[:i], func(b string) bool { return sameAddr(a, b) }); j >= 0 {
			return fieldError(fmt.Sprintf("%s[%d]", field, i), fmt.Errorf("the same sentinel as %s[%d]: list each sentinel once, or it votes twice on the master", field, j))
		}
	}
	return nil
}

// sameAddr reports whether the valid addresses a and b name one server as
// written: the same host name but for case (and a final dot, which makes
// it fully qualified), or the same IP address in another form ("::1" and
// "0:0::1"), and the same port ("26379" and "026379"). Two names that
// resolve to one address are not found out.
func sameAddr(a, b string) bool {
	ha, pa, _ := net.SplitHostPort(a)
	hb, pb, _ := net.SplitHostPort(b)
	na, _ := parsePort(pa)
	nb, _ := parsePort(pb)
	if na != nb {
		return false
	}
	ia, errA := netip.ParseAddr(ha)
	ib, errB := netip.ParseAddr(hb)
	if errA == nil && errB == nil {
		return ia.Unmap() == ib.Unmap()
	}
	return strings.EqualFold(strings.TrimSuffix(ha, "."), strings.TrimSuffix(hb, "."))
}

// validAddr reports whether addr has the form host:port, with a host name
// or IP address (see validHost: not "password@host", whose password would
// then be repeated in dial errors) and a port number 1-65535 (as REDIS_PORT
// takes: port 0 is no server's, and dialling it fails only later).
func validAddr(addr string) bool {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || !validHost(host) {
		return false
	}
	_, err = parsePort(port)
	return err == nil
}

// addrError says what is wrong with addr, which validAddr refused, without
// repeating it (a URL may hold a password): a URL, which Config does not
// take, is pointed to ParseURL.
func addrError(addr string) error {
	if strings.Contains(addr, "://") {
		return errors.New("want host:port with a port 1-65535, not a URL: ParseURL (or FromEnv's REDIS_URL) turns a redis:// or rediss:// URL into a Config")
	}
	return errors.New("want host:port with a port 1-65535")
}

var errNegative = errors.New("must not be negative")

func fieldError(field string, err error) error {
	return fmt.Errorf("redisstore: Config.%s: %w", field, err)
}
