package redisstore_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/redisstore"
)

// TestDescribe provokes failures on real redis-servers and checks that
// Describe says what each means in an operator's words, naming the setting
// to check, and never repeats a password.
func TestDescribe(t *testing.T) {
	ctx := context.Background()
	const secret = "describe-secret-8c1"
	tests := []struct {
		name    string
		provoke func(t *testing.T) (redisstore.Config, error)
		want    string
	}{
		{"connection refused", func(t *testing.T) (redisstore.Config, error) {
			cfg := redisstore.Config{Addr: fmt.Sprintf("127.0.0.1:%d", closedPort(t)), Password: secret}
			s, err := redisstore.Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return cfg, s.Ping(ctx)
		}, "connection refused to 127.0.0.1:<port> (REDIS_URL or REDIS_HOST and REDIS_PORT): is Redis running there?"},
		{"wrong password", func(t *testing.T) (redisstore.Config, error) {
			srv := redistest.Start(t, "--requirepass", "right-"+secret)
			cfg := redisstore.Config{Addr: srv.Addr(), Username: "app", Password: secret}
			s, err := redisstore.Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return cfg, s.Ping(ctx)
		}, "authentication failed for user app (REDIS_URL, or REDIS_USERNAME / REDIS_PASSWORD)"},
		{"no password", func(t *testing.T) (redisstore.Config, error) {
			srv := redistest.Start(t, "--requirepass", "right-"+secret)
			cfg := redisstore.Config{Addr: srv.Addr()}
			return cfg, openConfig(t, cfg).Ping(ctx)
		}, "the server requires a password, and none is set (REDIS_URL, or REDIS_USERNAME / REDIS_PASSWORD)"},
		{"user without a password", func(t *testing.T) (redisstore.Config, error) {
			// A username alone is sent, with an empty password: wrong.
			srv := redistest.Start(t, "--requirepass", "right-"+secret)
			cfg := redisstore.Config{Addr: srv.Addr(), Username: "app"}
			return cfg, openConfig(t, cfg).Ping(ctx)
		}, "authentication failed for user app (REDIS_URL, or REDIS_USERNAME / REDIS_PASSWORD)"},
		{"database out of range", func(t *testing.T) (redisstore.Config, error) {
			srv := redistest.Start(t)
			cfg := redisstore.Config{Addr: srv.Addr(), DB: 16}
			s, err := redisstore.Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return cfg, s.Ping(ctx)
		}, "Redis has no database 16 (REDIS_DB, or the path of REDIS_URL): its databases setting (16 by default) is lower"},
		{"wrong sentinel password", func(t *testing.T) (redisstore.Config, error) {
			sn := redistest.StartSentinel(t, redistest.SentinelOptions{Password: "data-" + secret, SentinelPassword: "right-" + secret})
			cfg := redisstore.Config{
				SentinelAddrs: sn.SentinelAddrs(), SentinelMaster: sn.MasterName(), SentinelUsername: "watcher",
				SentinelPassword: secret, Username: "app", Password: "data-" + secret, Timeout: 300 * time.Millisecond,
			}
			s, err := redisstore.Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return cfg, s.Ping(ctx)
		}, "the sentinels refused authentication for user watcher (REDIS_SENTINEL_USERNAME / REDIS_SENTINEL_PASSWORD)"},
		{"sentinel password the sentinels do not have", func(t *testing.T) (redisstore.Config, error) {
			sn := redistest.StartSentinel(t, redistest.SentinelOptions{Password: "data-" + secret})
			cfg := redisstore.Config{
				SentinelAddrs: sn.SentinelAddrs(), SentinelMaster: sn.MasterName(), SentinelPassword: secret,
				Password: "data-" + secret, Timeout: 500 * time.Millisecond,
			}
			s, err := redisstore.Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return cfg, s.Ping(ctx)
		}, "a password is set for the sentinels (REDIS_SENTINEL_PASSWORD), but they have none: unset it, or give them one (requirepass, or an ACL user, on every sentinel)"},
		{"sentinel ACL without get-master-addr-by-name", func(t *testing.T) (redisstore.Config, error) {
			sn := redistest.StartSentinel(t, redistest.SentinelOptions{Password: "data-" + secret, SentinelPassword: "right-" + secret})
			for _, s := range sn.Sentinels() {
				// The ACL line of the package documentation, less the
				// SENTINEL subcommand.
				s.Do(t, "ACL", "SETUSER", "watcher", "on", ">"+secret, "resetchannels", "&+switch-master", "&+promoted-slave", "-@all", "+ping", "+subscribe")
			}
			cfg := redisstore.Config{
				SentinelAddrs: sn.SentinelAddrs(), SentinelMaster: sn.MasterName(), SentinelUsername: "watcher",
				SentinelPassword: secret, Username: "app", Password: "data-" + secret, Timeout: 500 * time.Millisecond,
			}
			s, err := redisstore.Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return cfg, s.Ping(ctx)
		}, "the ACL of user watcher on the sentinels denies a command sessionkit needs (REDIS_SENTINEL_USERNAME, and the sentinels' ACL line in the redisstore documentation)"},
		{"a Redis server listed as a sentinel", func(t *testing.T) (redisstore.Config, error) {
			srv := redistest.Start(t)
			cfg := redisstore.Config{SentinelAddrs: []string{srv.Addr()}, SentinelMaster: "mymaster", Timeout: 500 * time.Millisecond}
			return cfg, openConfig(t, cfg).Ping(ctx)
		}, "a server of REDIS_SENTINELS does not know SENTINEL: it is a Redis server, not a sentinel (name the sentinels, on port 26379 by default), or its provider renamed or disabled the command"},
		{"sentinels frozen when the Store opens", func(t *testing.T) (redisstore.Config, error) {
			// They accept connections (the kernel does) and answer
			// nothing: the first lookup is still waiting on the first
			// sentinel (ReadTimeout, 1s) when the call's time is up.
			sn := redistest.StartSentinel(t, redistest.SentinelOptions{})
			for _, s := range sn.Sentinels() {
				s.Pause(t)
				t.Cleanup(func() { s.Resume(t) })
			}
			cfg := redisstore.Config{SentinelAddrs: sn.SentinelAddrs(), SentinelMaster: sn.MasterName(), Timeout: 300 * time.Millisecond}
			return cfg, openConfig(t, cfg).Ping(ctx)
		}, "no sentinel of REDIS_SENTINELS answered in time (Config.DialTimeout, Config.ReadTimeout): they are stalled or overloaded, or a firewall drops the traffic to them"},
		{"TLS to sentinels that serve plain TCP", func(t *testing.T) (redisstore.Config, error) {
			// REDIS_TLS applies to the sentinels too. A plain port reads
			// the client's TLS hello as the start of a command and never
			// answers it, so the handshake times out (DialTimeout), well
			// within the call's Timeout.
			sn := redistest.StartSentinel(t, redistest.SentinelOptions{})
			cfg := redisstore.Config{
				SentinelAddrs: sn.SentinelAddrs(), SentinelMaster: sn.MasterName(),
				TLS: &tls.Config{MinVersion: tls.VersionTLS12}, DialTimeout: 100 * time.Millisecond, Timeout: time.Second,
			}
			s, err := redisstore.Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return cfg, s.Ping(ctx)
		}, "the sentinels did not complete a TLS handshake (REDIS_TLS or Config.TLS, which apply to the sentinels as well as the master): do they serve TLS (tls-port) at the addresses in REDIS_SENTINELS?"},
		{"the master the sentinels named is down", func(t *testing.T) (redisstore.Config, error) {
			// The sentinels answer, and name a master that refuses
			// connections: its address is none of REDIS_SENTINELS. A long
			// DownAfter keeps them naming it for the whole test.
			sn := redistest.StartSentinel(t, redistest.SentinelOptions{DownAfter: time.Minute})
			cfg := redisstore.Config{SentinelAddrs: sn.SentinelAddrs(), SentinelMaster: sn.MasterName(), Timeout: 500 * time.Millisecond}
			s, err := redisstore.Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			master := sn.Master(t)
			master.Stop(t)
			for range 10 { // a connection the pool held may fail first, as closed
				if err = s.Ping(ctx); errors.Is(err, syscall.ECONNREFUSED) {
					break
				}
			}
			cfg.Addr = master.Addr() // for <port>
			return cfg, err
		}, "connection refused to 127.0.0.1:<port> (the master the sentinels named): is Redis running there?"},
		{"TLS to a server that serves plain TCP", func(t *testing.T) (redisstore.Config, error) {
			// rediss:// to a plain port: the handshake times out
			// (DialTimeout) within the call's Timeout.
			srv := redistest.Start(t)
			cfg := redisstore.Config{Addr: srv.Addr(), TLS: &tls.Config{MinVersion: tls.VersionTLS12}, DialTimeout: 100 * time.Millisecond}
			s, err := redisstore.Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return cfg, s.Ping(ctx)
		}, "the server did not complete a TLS handshake (rediss:// or REDIS_TLS, Config.TLS): REDIS_URL or REDIS_HOST and REDIS_PORT names a port that does not speak TLS (a plain Redis port, not its tls-port), or no Redis"},
		{"TLS to a server that serves plain TCP, defaults", func(t *testing.T) (redisstore.Config, error) {
			// The default DialTimeout and Timeout are both 1s: the call's
			// deadline may end the handshake first.
			srv := redistest.Start(t)
			cfg := redisstore.Config{Addr: srv.Addr(), TLS: &tls.Config{MinVersion: tls.VersionTLS12}}
			s, err := redisstore.Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return cfg, s.Ping(ctx)
		}, "the server did not complete a TLS handshake (rediss:// or REDIS_TLS, Config.TLS): REDIS_URL or REDIS_HOST and REDIS_PORT names a port that does not speak TLS (a plain Redis port, not its tls-port), or no Redis"},
		{"password the server does not have", func(t *testing.T) (redisstore.Config, error) {
			srv := redistest.Start(t)
			cfg := redisstore.Config{Addr: srv.Addr(), Password: secret}
			s, err := redisstore.Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return cfg, s.Ping(ctx)
		}, "a password is set (REDIS_URL or REDIS_PASSWORD), but the server has none: unset it, or give the server one (requirepass, or an ACL user)"},
		{"ACL without select", func(t *testing.T) (redisstore.Config, error) {
			srv := redistest.Start(t)
			srv.Do(t, "ACL", "SETUSER", "app", "on", ">"+secret, "~*", "+@all", "-select")
			cfg := redisstore.Config{Addr: srv.Addr(), Username: "app", Password: secret, DB: 1}
			s, err := redisstore.Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return cfg, s.Ping(ctx)
		}, "the ACL of user app denies SELECT, which sessionkit sends on each new connection for database 1 (REDIS_DB, or the path of REDIS_URL): add +select"},
		{"out of memory", func(t *testing.T) (redisstore.Config, error) {
			srv := redistest.Start(t, "--maxmemory", "1mb", "--maxmemory-policy", "noeviction")
			s := open(t, srv, redisstore.Config{})
			big := make([]byte, 64<<10)
			for i := range 100 {
				if _, err := s.Insert(ctx, fmt.Sprint("big-", i), big, time.Minute); err != nil {
					return redisstore.Config{Addr: srv.Addr()}, err
				}
			}
			t.Fatal("no OOM after 6.4 MB under maxmemory 1mb")
			return redisstore.Config{}, nil
		}, "Redis is out of memory (maxmemory): writes fail until memory is freed or maxmemory is raised"},
		{"too many clients", func(t *testing.T) (redisstore.Config, error) {
			srv := redistest.Start(t, "--maxclients", "1")
			held, err := redis.Dial("tcp", srv.Addr()) // the one connection Redis allows
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { held.Close() })
			if _, err := held.Do("PING"); err != nil {
				t.Fatal(err)
			}
			s := open(t, srv, redisstore.Config{})
			_, _, err = s.Load(ctx, "x", 0)
			return redisstore.Config{Addr: srv.Addr()}, err
		}, "Redis has as many connections as its maxclients allows (10000 by default; INFO clients) and closes each new one: raise maxclients, or lower Config.MaxActive, the most connections each instance opens"},
		{"read-only replica", func(t *testing.T) (redisstore.Config, error) {
			master := redistest.Start(t)
			replica := redistest.Start(t, "--replicaof", "127.0.0.1", fmt.Sprint(master.Port))
			s := open(t, replica, redisstore.Config{})
			_, err := s.Insert(ctx, "x", []byte("v"), time.Minute)
			return redisstore.Config{Addr: replica.Addr()}, err
		}, "Redis answered as a read-only replica: REDIS_URL or REDIS_HOST and REDIS_PORT names a replica, or a failover just demoted the master (REDIS_SENTINELS follows it)"},
		{"connection reset", func(t *testing.T) (redisstore.Config, error) {
			cfg := redisstore.Config{}
			s, p := proxied(t, &cfg)
			p.Drop() // a load balancer that resets its connections
			_, _, err := s.Load(ctx, "x", 0)
			return cfg, err
		}, "the connection was closed while in use (REDIS_URL or REDIS_HOST and REDIS_PORT): Redis restarted or closed it (CLIENT KILL, its timeout setting), or a proxy, load balancer or network path in between did; the next calls dial again. If every new connection ends so, the address is Redis's TLS port (tls-port: use rediss:// or REDIS_TLS), or a Redis in protected mode that refuses this host (it answers DENIED and closes), or one at its maxclients (it answers ERR max number of clients reached and closes: INFO clients)"},
		{"host name that does not resolve", func(t *testing.T) (redisstore.Config, error) {
			s := openUnresolved(t)
			return redisstore.Config{Addr: "redis.internal:6379"}, s.Ping(ctx)
		}, "the host name redis.internal does not resolve (REDIS_URL or REDIS_HOST and REDIS_PORT): check its spelling, and the DNS of this host"},
		{"KeyStats without its permissions", func(t *testing.T) (redisstore.Config, error) {
			// The documented line alone: KeyStats needs +info and more.
			srv := redistest.Start(t)
			documentedUser(t, srv, "app", secret)
			cfg := redisstore.Config{Addr: srv.Addr(), Username: "app", Password: secret}
			s, err := redisstore.Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			if err := s.Ping(ctx); err != nil {
				t.Fatalf("Ping with the documented line: %v", err)
			}
			_, err = s.KeyStats(ctx, redisstore.KeyStatsOptions{})
			return cfg, err
		}, "the ACL of user app denies INFO, which sessionkit sends (REDIS_USERNAME; the redisstore documentation lists the ACL line of the sessions and what KeyStats, the rate limiter, the near-cache, WaitReplicas and the scs migration add): add +info"},
		{"ACL without several commands", func(t *testing.T) (redisstore.Config, error) {
			// The documented line less three commands, one of them among
			// Ping's first checks: all three named at once, not one per
			// restart.
			srv := redistest.Start(t)
			documentedUser(t, srv, "app", secret, "-getex", "-zadd", "-pexpireat")
			cfg := redisstore.Config{Addr: srv.Addr(), Username: "app", Password: secret}
			s, err := redisstore.Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return cfg, s.Ping(ctx)
		}, "the ACL of user app denies GETEX, ZADD, PEXPIREAT, which sessionkit sends (REDIS_USERNAME, and the ACL line in the redisstore documentation): add +getex +zadd +pexpireat"},
		{"rate limiter without its key pattern", func(t *testing.T) (redisstore.Config, error) {
			// The documented line with the limiter's commands but not
			// its keys.
			srv := redistest.Start(t)
			documentedUser(t, srv, "app", secret, "+incr", "+pexpire", "+pttl")
			cfg := redisstore.Config{Addr: srv.Addr(), Username: "app", Password: secret, KeyPrefix: "myapp:"}
			s, err := redisstore.Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			_, _, err = s.CountRequests(ctx, []string{"k"}, []time.Duration{time.Minute})
			return cfg, err
		}, "the ACL of user app does not allow the keys ~myapp:rate_limit:*, which sessionkit's INCR uses (REDIS_USERNAME, and the ACL line in the redisstore documentation): add ~myapp:rate_limit:*"},
		{"scs migration without its key patterns", func(t *testing.T) (redisstore.Config, error) {
			srv := redistest.Start(t)
			documentedUser(t, srv, "app", secret, "+getdel")
			cfg := redisstore.Config{Addr: srv.Addr(), Username: "app", Password: secret}
			s, err := redisstore.Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			_, _, err = s.SCSRecords("").Take(ctx, strings.Repeat("t", 43))
			return cfg, err
		}, "the ACL of user app does not allow the keys ~scs:session:* ~scs_migrated:*, which sessionkit's GETDEL uses (REDIS_USERNAME, and the ACL line in the redisstore documentation): add ~scs:session:* ~scs_migrated:*"},
		{"too few replicas", func(t *testing.T) (redisstore.Config, error) {
			srv := redistest.Start(t, "--min-replicas-to-write", "1")
			s := open(t, srv, redisstore.Config{})
			_, err := s.Insert(ctx, "x", []byte("v"), time.Minute)
			return redisstore.Config{Addr: srv.Addr()}, err
		}, "the master refuses writes: fewer replicas than its min-replicas-to-write are connected and in sync, as after a failover until the old master has resynced as a replica (INFO replication)"},
		{"one server as a Cluster", func(t *testing.T) (redisstore.Config, error) {
			srv := redistest.Start(t)
			cfg := redisstore.Config{ClusterNodes: []string{srv.Addr()}}
			s, err := redisstore.Open(cfg)
			if err == nil {
				t.Cleanup(func() { s.Close() })
				err = s.Ping(ctx)
			}
			return cfg, err
		}, "REDIS_CLUSTER_NODES (Config.ClusterNodes) names a server that is no Cluster node: name one server with REDIS_URL, or the Cluster's nodes"},
		{"cluster node as one server", func(t *testing.T) (redisstore.Config, error) {
			// A Cluster node with no slot yet answers CLUSTERDOWN for every
			// key; one of a running Cluster, MOVED for most (see
			// TestTroubleshooting): Describe says the same of both.
			srv := redistest.Start(t, "--cluster-enabled", "yes")
			s := open(t, srv, redisstore.Config{})
			_, err := s.Insert(ctx, "x", []byte("v"), time.Minute)
			if !errors.Is(err, redisstore.ErrRefused) {
				t.Errorf("Insert on a Cluster node as one server = %v, want ErrRefused", err)
			}
			return redisstore.Config{Addr: srv.Addr()}, err
		}, "a Redis Cluster node answered (REDIS_URL or REDIS_HOST and REDIS_PORT names one): configure the Cluster with REDIS_CLUSTER_NODES (Config.ClusterNodes) instead"},
		{"a sentinel as one server", func(t *testing.T) (redisstore.Config, error) {
			// A sentinel answers PING, and "unknown command" to the
			// sessions' commands.
			sn := redistest.StartSentinel(t, redistest.SentinelOptions{})
			cfg := redisstore.Config{Addr: sn.SentinelAddrs()[0]}
			return cfg, loadError(t, cfg)
		}, "the server does not know GETEX, which sessionkit sends: REDIS_URL or REDIS_HOST and REDIS_PORT names a Redis Sentinel (which answers its own commands only: name the sentinels with REDIS_SENTINELS), a Redis older than 7.0, or one whose provider renamed or disabled the command"},
		{"unknown command on a Cluster", func(t *testing.T) (redisstore.Config, error) {
			c := redistest.StartCluster(t, redistest.ClusterOptions{ReplicasPerMaster: -1, Args: []string{"--rename-command", "GETEX", ""}})
			cfg := redisstore.Config{ClusterNodes: c.Addrs(), Timeout: 2 * time.Second}
			err := loadError(t, cfg)
			// Ping sends GETEX to every master: the app stops at start-up
			// with the same words.
			if ping := openConfig(t, cfg).Ping(ctx); !errors.Is(ping, redisstore.ErrRefused) || redisstore.Describe(ping, cfg) != redisstore.Describe(err, cfg) {
				t.Errorf("Ping = %v (Describe: %q), want ErrRefused described as Load's error", ping, redisstore.Describe(ping, cfg))
			}
			return cfg, err
		}, "the server does not know GETEX, which sessionkit sends: REDIS_CLUSTER_NODES leads to a Redis older than 7.0, or one whose provider renamed or disabled the command"},
		{"cluster nodes announce a closed port", func(t *testing.T) (redisstore.Config, error) {
			// As nodes behind NAT or in containers announce an address
			// this host cannot reach: the description names the
			// announced address as a cause, not only REDIS_CLUSTER_NODES.
			c := redistest.StartCluster(t, redistest.ClusterOptions{ReplicasPerMaster: -1})
			closed := closedPort(t)
			for _, n := range c.Nodes() {
				n.Do(t, "CONFIG", "SET", "cluster-announce-port", closed)
			}
			cfg := redisstore.Config{ClusterNodes: c.Addrs(), Timeout: 2 * time.Second}
			deadline := time.Now().Add(10 * time.Second)
			for {
				err := openConfig(t, cfg).Ping(ctx)
				if errors.Is(err, syscall.ECONNREFUSED) || time.Now().After(deadline) {
					return cfg, err
				}
				time.Sleep(100 * time.Millisecond) // until the nodes have told each other
			}
		}, "connection refused to 127.0.0.1:<port> (REDIS_CLUSTER_NODES, or the address a node announces): is Redis running there? If it is, the nodes announce an address or port this host cannot reach (cluster-announce-ip or cluster-announce-port, behind NAT or in containers: CLUSTER NODES shows what they announce)"},
		{"slow", func(t *testing.T) (redisstore.Config, error) {
			cfg := redisstore.Config{Timeout: 100 * time.Millisecond}
			s, p := proxied(t, &cfg)
			p.Slow(200 * time.Millisecond)
			return cfg, s.Ping(ctx)
		}, "Redis did not answer within 100ms (Config.Timeout): it is overloaded, a command is slow (SLOWLOG), the network is, or every pooled connection is busy (Config.MaxActive)"},
	}
	tests = append(tests, []struct {
		name    string
		provoke func(t *testing.T) (redisstore.Config, error)
		want    string
	}{
		{"not Redis", func(t *testing.T) (redisstore.Config, error) {
			web := httptest.NewServer(http.NotFoundHandler())
			t.Cleanup(web.Close)
			cfg := redisstore.Config{Addr: web.Listener.Addr().String(), Password: secret}
			s, err := redisstore.Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return cfg, s.Ping(ctx)
		}, "the server does not answer in Redis's protocol (REDIS_URL or REDIS_HOST and REDIS_PORT): the address is another service's (an HTTP server, a database, a proxy's)"},
		{"no route", func(t *testing.T) (redisstore.Config, error) {
			// What a dial to an address that no route reaches returns
			// (tests dial only loopback).
			addr := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 6379}
			return redisstore.Config{}, fmt.Errorf("redisstore: redis unavailable (ping): %w",
				&net.OpError{Op: "dial", Net: "tcp", Addr: addr, Err: os.NewSyscallError("connect", syscall.ENETUNREACH)})
		}, "no route to 192.0.2.1:6379 (REDIS_URL or REDIS_HOST and REDIS_PORT): the address is wrong, or a firewall or the network between keeps this host from it"},
	}...)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := tc.provoke(t)
			if err == nil {
				t.Fatal("no error")
			}
			got := redisstore.Describe(err, cfg)
			want := tc.want
			if i := strings.Index(want, "<port>"); i >= 0 {
				port := strings.TrimPrefix(cfg.Addr, "127.0.0.1:")
				if cfg.Addr == "" {
					// A Cluster's node: the port the error names.
					_, port, _ = strings.Cut(err.Error(), "127.0.0.1:")
					port, _, _ = strings.Cut(port, ":")
				}
				want = want[:i] + port + want[i+len("<port>"):]
			}
			if got != want {
				t.Errorf("Describe(%q) =\n%q, want\n%q", err, got, want)
			}
			if strings.Contains(got, secret) {
				t.Errorf("Describe repeats the password: %q", got)
			}
		})
	}
	if got := redisstore.Describe(nil, redisstore.Config{}); got != "" {
		t.Errorf("Describe(nil) = %q, want empty", got)
	}
}

// openConfig opens a Store with cfg, closed at cleanup.
func openConfig(t *testing.T, cfg redisstore.Config) *redisstore.Store {
	t.Helper()
	s, err := redisstore.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// loadError opens a Store with cfg, closed at cleanup, and returns the
// error of a Load on it, which reads a session as every request does.
func loadError(t *testing.T, cfg redisstore.Config) error {
	t.Helper()
	_, _, err := openConfig(t, cfg).Load(context.Background(), "id", time.Minute)
	return err
}

// proxied opens a Store with cfg on a redis-server of its own behind a
// proxy, sets cfg.Addr to the proxy's, and checks that the Store answers.
func proxied(t *testing.T, cfg *redisstore.Config) (*redisstore.Store, *redistest.Proxy) {
	t.Helper()
	p := redistest.Start(t).Proxy(t)
	cfg.Addr = p.Addr()
	s, err := redisstore.Open(*cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s, p
}

// documentedUser makes srv's ACL user name with password the user of the
// package documentation's ACL line (aclCommands), with the rules extra
// added.
func documentedUser(t *testing.T, srv *redistest.Server, name, password string, extra ...string) {
	t.Helper()
	args := append([]any{"SETUSER", name, ">" + password}, anys(append(aclCommands(t), extra...))...)
	srv.Do(t, "ACL", args...)
}

// TestDescribeTLSReset checks what Describe says of a connection reset
// under TLS without a client certificate: under TLS 1.3 a server that
// requires one refuses it after the handshake, and the reset can overtake
// its alert, so the certificate is named; with a certificate
// configured, or without TLS, it is not.
func TestDescribeTLSReset(t *testing.T) {
	reset := fmt.Errorf("redisstore: redis unavailable (load): %w", &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", syscall.ECONNRESET)})
	withCert := &tls.Config{GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &tls.Certificate{}, nil }}
	for _, tc := range []struct {
		tls  *tls.Config
		want bool
	}{
		{&tls.Config{}, true},
		{withCert, false},
		{nil, false},
	} {
		d := redisstore.Describe(reset, redisstore.Config{Addr: "127.0.0.1:6380", TLS: tc.tls})
		if got := strings.Contains(d, "client certificate"); got != tc.want {
			t.Errorf("Describe of a reset with TLS %v = %q; names a client certificate: %v, want %v", tc.tls != nil, d, got, tc.want)
		}
	}
}
