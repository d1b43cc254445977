package redisstore

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/gomodule/redigo/redis"
)

// Describe returns what err, an error of a Store opened with cfg, means in
// words an operator knows, naming the setting to check, for example
//
//	connection refused to 127.0.0.1:6390 (REDIS_URL or REDIS_HOST and REDIS_PORT)
//	authentication failed for user app (REDIS_URL, or REDIS_USERNAME / REDIS_PASSWORD)
//	Redis is out of memory (maxmemory)
//	Redis is loading its dataset
//
// or "" when it has nothing to add to the error itself. It never repeats
// a password. docs/troubleshooting.md has each case, with its fix.
func Describe(err error, cfg Config) string {
	if err == nil {
		return ""
	}
	where := map[mode]string{
		modeSingle:   "REDIS_URL or REDIS_HOST and REDIS_PORT",
		modeSentinel: "REDIS_SENTINELS",
		modeCluster:  "REDIS_CLUSTER_NODES",
	}[cfg.mode()]
	user := cfg.Username
	if user == "" {
		user = "default"
	}
	creds, password := "REDIS_USERNAME / REDIS_PASSWORD", "REDIS_PASSWORD"
	if cfg.mode() == modeSingle {
		// One server may take its credentials from REDIS_URL instead.
		creds, password = "REDIS_URL, or REDIS_USERNAME / REDIS_PASSWORD", "REDIS_URL or REDIS_PASSWORD"
	}
	var reply redis.Error
	var op *net.OpError
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var verify *tls.CertificateVerificationError
	var perm *permissionError
	var notMaster *notMasterError
	var disagree *disagreeError
	var version *versionError
	var dns *net.DNSError
	code := replyCode(err)
	errors.As(err, &reply)
	noPassword := code == "ERR" && strings.Contains(string(reply), "without any password configured")
	// An error that carries errNoMaster comes from the sentinels (see
	// sentinelSource.current): no master has been asked anything yet, so a
	// refusal in it is theirs, under their own credentials and ACL.
	sentinels := errors.Is(err, errNoMaster)
	sentinelUser := cmp.Or(cfg.SentinelUsername, "default")
	dialled := where
	if cfg.mode() == modeSentinel && !sentinels {
		// A dial that the sentinels' answer led to: the master's.
		dialled = "the master the sentinels named"
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED) && errors.As(err, &op) && op.Addr != nil && cfg.mode() == modeCluster:
		// The address may be none of the seeds, but one the nodes
		// announce, which may be wrong for this host.
		return fmt.Sprintf("connection refused to %s (REDIS_CLUSTER_NODES, or the address a node announces): is Redis running there? If it is, the nodes announce an address or port this host cannot reach (cluster-announce-ip or cluster-announce-port, behind NAT or in containers: CLUSTER NODES shows what they announce)", op.Addr)
	case errors.Is(err, syscall.ECONNREFUSED) && errors.As(err, &op) && op.Addr != nil:
		return fmt.Sprintf("connection refused to %s (%s): is Redis running there?", op.Addr, dialled)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Sprintf("connection refused (%s): is Redis running there?", dialled)
	case (errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.EHOSTUNREACH)) && errors.As(err, &op) && op.Addr != nil:
		return fmt.Sprintf("no route to %s (%s): the address is wrong, or a firewall or the network between keeps this host from it", op.Addr, dialled)
	case errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.EHOSTUNREACH):
		return fmt.Sprintf("no route to Redis (%s): the address is wrong, or a firewall or the network between keeps this host from it", dialled)
	case !sentinels && errors.As(err, &op) && op.Op == "dial" && op.Addr != nil && op.Timeout() && cfg.mode() == modeCluster:
		return fmt.Sprintf("no answer to a connection to %s within the dial timeout or the call's (Config.DialTimeout, Config.Timeout): the node is down, or a firewall drops the traffic to it; if every node fails so, the nodes announce an address this host cannot reach (cluster-announce-ip or cluster-announce-port, behind NAT or in containers: CLUSTER NODES shows what they announce)", op.Addr)
	case !sentinels && errors.As(err, &op) && op.Op == "dial" && op.Addr != nil && op.Timeout():
		return fmt.Sprintf("no answer to a connection to %s (%s) within the dial timeout or the call's (Config.DialTimeout, Config.Timeout): the host is down, or a firewall drops the traffic to it", op.Addr, dialled)
	case notRESP(err):
		return fmt.Sprintf("the server does not answer in Redis's protocol (%s): the address is another service's (an HTTP server, a database, a proxy's)", where)
	case sentinels && (code == "WRONGPASS" || code == "NOAUTH"):
		return fmt.Sprintf("the sentinels refused authentication for user %s (REDIS_SENTINEL_USERNAME / REDIS_SENTINEL_PASSWORD)", sentinelUser)
	case sentinels && noPassword:
		return "a password is set for the sentinels (REDIS_SENTINEL_PASSWORD), but they have none: unset it, or give them one (requirepass, or an ACL user, on every sentinel)"
	case sentinels && code == "NOPERM":
		return fmt.Sprintf("the ACL of user %s on the sentinels denies a command sessionkit needs (REDIS_SENTINEL_USERNAME, and the sentinels' ACL line in the redisstore documentation)", sentinelUser)
	case sentinels && cfg.TLS != nil && handshakeTimedOut(err):
		return "the sentinels did not complete a TLS handshake (REDIS_TLS or Config.TLS, which apply to the sentinels as well as the master): do they serve TLS (tls-port) at the addresses in REDIS_SENTINELS?"
	case !sentinels && cfg.TLS != nil && handshakeTimedOut(err):
		return fmt.Sprintf("the server did not complete a TLS handshake (rediss:// or REDIS_TLS, Config.TLS): %s names a port that does not speak TLS (a plain Redis port, not its tls-port), or no Redis", where)
	case code == "NOAUTH" && cfg.Password == "":
		// Nothing was sent: no password is wrong.
		return fmt.Sprintf("the server requires a password, and none is set (%s)", creds)
	case code == "WRONGPASS" || code == "NOAUTH":
		return fmt.Sprintf("authentication failed for user %s (%s)", user, creds)
	case noPassword:
		return fmt.Sprintf("a password is set (%s), but the server has none: unset it, or give the server one (requirepass, or an ACL user)", password)
	case code == "NOPERM" && errors.As(err, &perm) && perm.keyDenial():
		return fmt.Sprintf("the ACL of user %s does not allow the keys %s, which sessionkit's %s uses (REDIS_USERNAME, and the ACL line in the redisstore documentation): add %s", user, perm.keys, perm.cmd, perm.keys)
	case code == "NOPERM" && strings.Contains(string(reply), "'select'"):
		// Not one of Ping's probes: redigo sends SELECT as it dials,
		// for a database other than 0.
		return fmt.Sprintf("the ACL of user %s denies SELECT, which sessionkit sends on each new connection for database %d (REDIS_DB, or the path of REDIS_URL): add +select", user, cfg.DB)
	case code == "NOPERM" && errors.As(err, &perm) && perm.cmd == "WAIT" && len(perm.more) == 0:
		return fmt.Sprintf("the ACL of user %s denies WAIT, which sessionkit sends with REDIS_WAIT_REPLICAS (Config.WaitReplicas) so that logouts wait for the replicas: add +wait", user)
	case code == "NOPERM" && errors.As(err, &perm):
		cmds := perm.commands()
		return fmt.Sprintf("the ACL of user %s denies %s, which sessionkit sends (REDIS_USERNAME, and the ACL line in the redisstore documentation): add +%s",
			user, strings.Join(cmds, ", "), strings.ToLower(strings.Join(cmds, " +")))
	case code == "NOPERM" && deniedCommand(reply) != "":
		// Not one of Ping's probes: a command of a feature beyond the
		// sessions (KeyStats, the rate limiter, the scs migration).
		c := deniedCommand(reply)
		return fmt.Sprintf("the ACL of user %s denies %s, which sessionkit sends (REDIS_USERNAME; the redisstore documentation lists the ACL line of the sessions and what KeyStats, the rate limiter, the near-cache, WaitReplicas and the scs migration add): add +%s", user, strings.ToUpper(c), c)
	case code == "NOPERM":
		return fmt.Sprintf("the ACL of user %s denies a command sessionkit needs (the ACL line in the redisstore documentation)", user)
	case code == "ERR" && (errors.As(err, &version) || wrongArity(reply) != ""):
		form, since := wrongArity(reply)+" with the arguments sessionkit sends", "7.0"
		if version != nil {
			form, since = version.form, version.since
		}
		return fmt.Sprintf("the server refuses %s: it is a Redis older than %s (%s); sessionkit needs Redis 7.0 or later (INFO server shows the version)",
			form, since, dialled)
	case code == "ERR" && unknownCommand(reply) != "" && cfg.mode() == modeSingle:
		return fmt.Sprintf("the server does not know %s, which sessionkit sends: %s names a Redis Sentinel (which answers its own commands only: name the sentinels with REDIS_SENTINELS), a Redis older than 7.0, or one whose provider renamed or disabled the command",
			unknownCommand(reply), where)
	case code == "ERR" && sentinels && unknownCommand(reply) == "SENTINEL":
		return fmt.Sprintf("a server of %s does not know SENTINEL: it is a Redis server, not a sentinel (name the sentinels, on port 26379 by default), or its provider renamed or disabled the command", where)
	case code == "ERR" && unknownCommand(reply) != "":
		return fmt.Sprintf("the server does not know %s, which sessionkit sends: %s leads to a Redis older than 7.0, or one whose provider renamed or disabled the command",
			unknownCommand(reply), dialled)
	case tooManyClients(reply) && sentinels:
		return "a sentinel (REDIS_SENTINELS) has as many connections as its maxclients allows (INFO clients) and closes each new one: raise its maxclients, or find what else holds its connections"
	case tooManyClients(reply):
		return "Redis has as many connections as its maxclients allows (10000 by default; INFO clients) and closes each new one: raise maxclients, or lower Config.MaxActive, the most connections each instance opens"
	case code == "ERR" && strings.Contains(string(reply), "DB index is out of range"):
		return fmt.Sprintf("Redis has no database %d (REDIS_DB, or the path of REDIS_URL): its databases setting (16 by default) is lower", cfg.DB)
	case code == "DENIED":
		return fmt.Sprintf("Redis runs in protected mode and refuses clients from other hosts while it has no password (%s): give it one (requirepass, or an ACL user) and set REDIS_PASSWORD, or set bind and protected-mode in its configuration", where)
	case code == "OOM":
		return "Redis is out of memory (maxmemory): writes fail until memory is freed or maxmemory is raised"
	case code == "LOADING":
		return "Redis is loading its dataset: calls fail until it has finished"
	case code == "READONLY":
		return fmt.Sprintf("Redis answered as a read-only replica: %s names a replica, or a failover just demoted the master (REDIS_SENTINELS follows it)", where)
	case code == "NOREPLICAS":
		return "the master refuses writes: fewer replicas than its min-replicas-to-write are connected and in sync, as after a failover until the old master has resynced as a replica (INFO replication)"
	case code == "MASTERDOWN":
		return "the replica has lost its master"
	case clusterReplies[code] && cfg.mode() != modeCluster:
		return fmt.Sprintf("a Redis Cluster node answered (%s names one): configure the Cluster with REDIS_CLUSTER_NODES (Config.ClusterNodes) instead", where)
	case code == "CLUSTERDOWN":
		return "the Redis Cluster is down: a master has failed and no replica has taken over yet"
	case code == "ERR" && cfg.mode() == modeCluster && strings.Contains(string(reply), "cluster support disabled"):
		return "REDIS_CLUSTER_NODES (Config.ClusterNodes) names a server that is no Cluster node: name one server with REDIS_URL, or the Cluster's nodes"
	case errors.Is(err, errNoPlace):
		return "too many requests with ended or expired sessions were waiting at once for the replicas to confirm that (REDIS_WAIT_REPLICAS, Config.WaitReplicas): a burst of such requests, or a replica that is slow or down holding them; each answers 503 until a place frees up"
	case errors.Is(err, errUnconfirmed):
		return "fewer replicas than REDIS_WAIT_REPLICAS (Config.WaitReplicas) confirmed the write within the Timeout: a replica is down, lagging or resyncing, or the master has fewer replicas than that (INFO replication, connected_slaves); a logout or revocation so reported ended the sessions on the master all the same, but a failover now may bring them back"
	case errors.As(err, &notMaster):
		return fmt.Sprintf("sentinel %s names %s as the master of %q, but that server is a %s: a failover is under way, or that sentinel is behind or monitors another setup under that name (check SENTINEL GET-MASTER-ADDR-BY-NAME on each sentinel of REDIS_SENTINELS); the next lookup asks the next sentinel",
			notMaster.sentinel, notMaster.server, cfg.SentinelMaster, replicaRole(notMaster.role))
	case errors.As(err, &disagree):
		return fmt.Sprintf("the sentinels of REDIS_SENTINELS disagree on the master of %q, as many of them naming each, and the Store follows none: a sentinel that was down during a failover names the old master until it catches up, in seconds; if it goes on, the list mixes the sentinels of two setups (check SENTINEL GET-MASTER-ADDR-BY-NAME on each)", cfg.SentinelMaster)
	case sentinels && (sentinelTimeout(err) || errors.Is(err, errSentinelsSilent)):
		return "no sentinel of REDIS_SENTINELS answered in time (Config.DialTimeout, Config.ReadTimeout): they are stalled or overloaded, or a firewall drops the traffic to them"
	case errors.Is(err, errNoMaster):
		return fmt.Sprintf("no sentinel named a master called %q (REDIS_SENTINELS, REDIS_SENTINEL_MASTER, REDIS_SENTINEL_PASSWORD)", cfg.SentinelMaster)
	case errors.As(err, &unknownCA):
		return "the server's TLS certificate is signed by an authority this process does not trust (Config.TLS.RootCAs)"
	case errors.As(err, &hostname):
		return fmt.Sprintf("the server's TLS certificate is not for the host name dialled (%s, Config.TLS.ServerName)", where)
	case errors.As(err, &verify):
		return "the server's TLS certificate does not verify (REDIS_TLS, Config.TLS)"
	case tlsRefused(err):
		return fmt.Sprintf("the server refused the TLS handshake (%s): a server with tls-auth-clients yes (its default) requires a client certificate it trusts (Config.TLS.Certificates), or it offers no TLS version or cipher that Config.TLS allows", where)
	case errors.As(err, &dns):
		return fmt.Sprintf("the host name %s does not resolve (%s): check its spelling, and the DNS of this host", dns.Name, where)
	case errors.Is(err, syscall.ECONNRESET) && cfg.TLS != nil && len(cfg.TLS.Certificates) == 0 && cfg.TLS.GetClientCertificate == nil:
		return fmt.Sprintf("the connection was reset (%s): Redis restarted or closed it, or a proxy or network path in between did; the next calls dial again. If every new connection ends so, the server may require a client certificate (tls-auth-clients yes, its default) and Config.TLS sends none: under TLS 1.3 its refusal comes after the handshake, and a reset can overtake it", where)
	case (errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, io.EOF)) && cfg.TLS == nil:
		return fmt.Sprintf("the connection was closed while in use (%s): Redis restarted or closed it (CLIENT KILL, its timeout setting), or a proxy, load balancer or network path in between did; the next calls dial again. If every new connection ends so, the address is Redis's TLS port (tls-port: use rediss:// or REDIS_TLS), or a Redis in protected mode that refuses this host (it answers DENIED and closes), or one at its maxclients (it answers ERR max number of clients reached and closes: INFO clients)", where)
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, io.EOF):
		return fmt.Sprintf("the connection was closed while in use (%s): Redis restarted or closed it (CLIENT KILL, its timeout setting), or a proxy, load balancer or network path in between did; the next calls dial again. If every new connection ends so, Redis may be at its maxclients (INFO clients), whose error the close overtakes", where)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("Redis did not answer within %v (Config.Timeout): it is overloaded, a command is slow (SLOWLOG), the network is, or every pooled connection is busy (Config.MaxActive)", cfg.timeout())
	}
	return ""
}

// notRESP reports whether err is redigo's report of a reply that is not
// RESP, Redis's protocol. redigo's error type for it is unexported; its
// text says so for every such reply ("bad response line terminator",
// "unexpected response line", ...).
func notRESP(err error) bool {
	return strings.Contains(err.Error(), "(possible server error or unsupported concurrent read by application)")
}

// deniedCommand returns the command a NOPERM reply names, in lower case
// ("info", "client|tracking"), or "".
func deniedCommand(reply redis.Error) string {
	return strings.ToLower(quotedAfter(reply, "permissions to run the '"))
}

// unknownCommand returns the command an "unknown command" reply names, in
// upper case ("GETEX"), or "".
func unknownCommand(reply redis.Error) string {
	return strings.ToUpper(quotedAfter(reply, "unknown command '"))
}

// wrongArity returns the command that reply, Redis's "wrong number of
// arguments", names, in capitals, or "". sessionkit sends every command
// with arguments that Redis 7.0 takes, so Describe puts that reply down to
// an older Redis, which answers it to the options 7.0 added, such as
// PEXPIREAT's NX and GT.
func wrongArity(reply redis.Error) string {
	return strings.ToUpper(quotedAfter(reply, "wrong number of arguments for '"))
}

// quotedAfter returns what reply quotes right after prefix, which ends
// with the opening quote, up to the closing one; "" when it has neither.
func quotedAfter(reply redis.Error, prefix string) string {
	_, rest, ok := strings.Cut(string(reply), prefix)
	if !ok {
		return ""
	}
	q, _, ok := strings.Cut(rest, "'")
	if !ok {
		return ""
	}
	return q
}

// sentinelTimeout reports whether err, a call's that found no master,
// holds a sentinel's network timeout (kept by sentinelSource.current), not
// only the call's own deadline.
func sentinelTimeout(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Timeout()
}

// replicaRole names a role of ROLE's reply in words: "slave" is a replica.
func replicaRole(role string) string {
	if role == "slave" {
		return "replica"
	}
	return role
}

// handshakeTimedOut reports whether err holds redigo's error for a TLS
// handshake that got no answer within the dial timeout. That is what a
// port serving plain TCP gives: the server takes the client's hello for the
// start of a command and waits for the rest. redigo's error has an
// unexported type, so it is known by its text.
func handshakeTimedOut(err error) bool {
	switch e := err.(type) {
	case interface{ Unwrap() []error }:
		return slices.ContainsFunc(e.Unwrap(), handshakeTimedOut)
	case interface{ Unwrap() error }:
		return handshakeTimedOut(e.Unwrap())
	case net.Error:
		return e.Timeout() && e.Error() == "TLS handshake timeout"
	}
	return false
}

// timeout returns the Store call timeout cfg means.
func (c Config) timeout() time.Duration {
	if c.Timeout == 0 {
		return DefaultTimeout
	}
	return c.Timeout
}
