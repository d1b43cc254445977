package redistest

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
)

// SentinelOptions configures [StartSentinel]. The zero value gives a setup
// without passwords whose Sentinels consider the master down after one
// second without an answer.
type SentinelOptions struct {
	// MasterName is the name the Sentinels know the master by; "mymaster"
	// if empty.
	MasterName string
	// Password, if set, is required by the master and the replica
	// (requirepass); the replica authenticates to the master with it
	// (masterauth) and the Sentinels to both (sentinel auth-pass).
	Password string
	// Username, if set, names an ACL user with every permission and the
	// password Password (which must be set) on the master and the replica;
	// the replica (masteruser) and the Sentinels (sentinel auth-user) then
	// log in as that user. The default user keeps Password too, for the
	// helper's own connections.
	Username string
	// SentinelPassword, if set, is required by the Sentinels themselves
	// (requirepass), which also use it to talk to each other (sentinel
	// sentinel-pass).
	SentinelPassword string
	// MinReplicasToWrite, if positive, makes the master refuse writes with
	// -NOREPLICAS unless that many replicas acknowledged the replication
	// stream within MinReplicasMaxLag (min-replicas-to-write). With one
	// replica, 1 is the only useful value; then a master whose replica is
	// down, such as the one promoted by [Sentinel.KillMaster], refuses
	// writes until the replica is back.
	MinReplicasToWrite int
	// MinReplicasMaxLag is min-replicas-max-lag, rounded up to whole
	// seconds; 10 seconds, the Redis default, if zero.
	MinReplicasMaxLag time.Duration
	// DownAfter is how long the master must fail to answer before the
	// Sentinels consider it down (down-after-milliseconds); one second if
	// zero.
	DownAfter time.Duration
	// Replicas is how many replicas the master has; one if zero.
	Replicas int
}

// Sentinel is a master, its replicas (one unless SentinelOptions.Replicas
// says otherwise) and three Sentinels monitoring them,
// started by [StartSentinel] and owned by one test. Its methods must be
// called from the test's goroutine.
//
// To keep tests short the Sentinels run with shorter timers than Redis's
// defaults (SENTINEL DEBUG: INFO to each server every second instead of
// every 10, hello messages every 500ms instead of every 2s), so they notice
// role changes within a second and demote a master that comes back after a
// failover about 2 seconds after it answers, instead of 8 or more. A
// Sentinel restarted with [Server.Restart] keeps its configuration file but
// runs with the default timers.
type Sentinel struct {
	name      string
	data      []*Server // the master and the replicas, in any role
	sentinels []*Server
}

// Quorum and timers of the Sentinels StartSentinel starts.
const (
	// sentinelCount is how many Sentinels monitor the master.
	sentinelCount = 3
	// quorum is how many Sentinels must agree that the master is down.
	quorum = 2
	// failoverTimeout is the Sentinels' failover-timeout: a failover that
	// fails is retried by another Sentinel after twice this long.
	failoverTimeout = 3 * time.Second
)

// StartSentinel starts, on free loopback ports, a master, its replicas
// (SentinelOptions.Replicas, one by default) and three Sentinels
// monitoring them with a quorum of 2, each in a private directory and
// killed when the test ends. It returns once the setup is healthy: every
// replica is connected to the master, and every Sentinel names that
// master, sees the replicas as up and knows the two other Sentinels.
//
// The master and the replicas read a configuration file that the Sentinels
// rewrite (CONFIG REWRITE) when they change a server's role, so a server
// restarted with [Server.Restart] comes back in the role it last had been
// given: a master killed by [Sentinel.KillMaster] restarts as a master,
// empty, and is demoted by the Sentinels, as in production. They replicate
// through a snapshot on disk rather than with Redis 7's default diskless
// sync, after which the master holds writes back for up to a second while
// the replica already reports its link up.
func StartSentinel(t testing.TB, opts SentinelOptions) *Sentinel {
	t.Helper()
	if opts.MasterName == "" {
		opts.MasterName = "mymaster"
	}
	if opts.DownAfter == 0 {
		opts.DownAfter = time.Second
	}
	if opts.MinReplicasMaxLag == 0 {
		opts.MinReplicasMaxLag = 10 * time.Second
	}
	if opts.Username != "" && opts.Password == "" {
		t.Fatal("redistest: SentinelOptions.Username needs a Password")
	}
	confDir := t.TempDir()

	// The configuration files of the data nodes hold what must not be on
	// the command line: replicaof, which the Sentinels change and rewrite
	// into the file, and the ACL user, which CONFIG REWRITE copies into the
	// file (a second definition on the command line fails a restart).
	var conf []string
	args := slices.Clone(syncArgs)
	if opts.Password != "" {
		args = append(args, "--requirepass", opts.Password, "--masterauth", opts.Password)
	}
	if opts.Username != "" {
		conf = append(conf,
			"user "+quote(opts.Username)+" on "+quote(">"+opts.Password)+" ~* &* +@all",
			"masteruser "+quote(opts.Username),
		)
	}
	if opts.MinReplicasToWrite > 0 {
		lag := (opts.MinReplicasMaxLag + time.Second - 1) / time.Second
		args = append(args,
			"--min-replicas-to-write", strconv.Itoa(opts.MinReplicasToWrite),
			"--min-replicas-max-lag", strconv.Itoa(int(lag)),
		)
	}
	master := Start(t, append([]string{writeConf(t, confDir, "master.conf", conf)}, args...)...)
	data := []*Server{master}
	conf = append(conf, "replicaof 127.0.0.1 "+strconv.Itoa(master.Port))
	for i := range max(opts.Replicas, 1) {
		path := writeConf(t, confDir, fmt.Sprintf("replica%d.conf", i), conf)
		data = append(data, Start(t, append([]string{path}, args...)...))
	}

	name := quote(opts.MasterName)
	conf = []string{
		"sentinel resolve-hostnames no",
		fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d %d", name, master.Port, quorum),
		fmt.Sprintf("sentinel down-after-milliseconds %s %d", name, opts.DownAfter.Milliseconds()),
		fmt.Sprintf("sentinel failover-timeout %s %d", name, failoverTimeout.Milliseconds()),
	}
	if opts.Password != "" {
		conf = append(conf, "sentinel auth-pass "+name+" "+quote(opts.Password))
	}
	if opts.Username != "" {
		conf = append(conf, "sentinel auth-user "+name+" "+quote(opts.Username))
	}
	args = []string{"--sentinel"}
	if opts.SentinelPassword != "" {
		conf = append(conf, "sentinel sentinel-pass "+quote(opts.SentinelPassword))
		args = append(args, "--requirepass", opts.SentinelPassword)
	}
	sn := &Sentinel{name: opts.MasterName, data: data}
	for i := range sentinelCount {
		path := writeConf(t, confDir, fmt.Sprintf("sentinel%d.conf", i), conf)
		s := Start(t, append([]string{path}, args...)...)
		s.Do(t, "SENTINEL", "DEBUG", "INFO-PERIOD", 1000, "PUBLISH-PERIOD", 500)
		sn.sentinels = append(sn.sentinels, s)
	}
	sn.wait(t, "start Sentinel setup", master)
	return sn
}

// writeConf writes a configuration file with the given lines into dir and
// returns its path.
func writeConf(t testing.TB, dir, name string, lines []string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatalf("redistest: %v", err)
	}
	return path
}

// quote quotes s as one argument of a Redis configuration file line.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := range len(s) {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < ' ' || c > '~':
			fmt.Fprintf(&b, `\x%02x`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// MasterName returns the name the Sentinels know the master by.
func (sn *Sentinel) MasterName() string {
	return sn.name
}

// SentinelAddrs returns the addresses of the three Sentinels,
// "127.0.0.1:<port>", running or not.
func (sn *Sentinel) SentinelAddrs() []string {
	addrs := make([]string, len(sn.sentinels))
	for i, s := range sn.sentinels {
		addrs[i] = s.Addr()
	}
	return addrs
}

// Sentinels returns the three Sentinel servers, for tests that stop, pause
// or restart one; their helper connections ([Server.Do]) authenticate with
// SentinelOptions.SentinelPassword.
func (sn *Sentinel) Sentinels() []*Server {
	return slices.Clone(sn.sentinels)
}

// Master returns the server the Sentinels currently name as the master, as
// the first running Sentinel answers SENTINEL GET-MASTER-ADDR-BY-NAME.
func (sn *Sentinel) Master(t testing.TB) *Server {
	t.Helper()
	s := sn.sentinel(t)
	addr, err := redis.Strings(s.do("SENTINEL", "GET-MASTER-ADDR-BY-NAME", sn.name))
	if err != nil {
		t.Fatalf("redistest: Sentinel %s: GET-MASTER-ADDR-BY-NAME: %v", s.Addr(), err)
	}
	for _, d := range sn.data {
		if len(addr) == 2 && addr[1] == strconv.Itoa(d.Port) {
			return d
		}
	}
	t.Fatalf("redistest: Sentinel %s names master %v, which it did not start", s.Addr(), addr)
	return nil
}

// Replica returns the first server, in the order StartSentinel started
// them, that is not [Sentinel.Master]: with one replica, the replica, or,
// after [Sentinel.KillMaster], the killed master until it rejoins.
func (sn *Sentinel) Replica(t testing.TB) *Server {
	t.Helper()
	return sn.others(sn.Master(t))[0]
}

// Failover makes a Sentinel fail over (SENTINEL FAILOVER) and waits until
// a replica is the master, every running Sentinel agrees, and the other
// data nodes, the old master included, are its replicas with the
// replication link up. It returns how long that took, most of it the
// Sentinels waiting before they demote the old master, which accepts
// writes meanwhile.
func (sn *Sentinel) Failover(t testing.TB) time.Duration {
	t.Helper()
	old := sn.Master(t)
	start := time.Now()
	sn.sentinel(t).Do(t, "SENTINEL", "FAILOVER", sn.name)
	sn.wait(t, "SENTINEL FAILOVER", sn.promoted(t, "SENTINEL FAILOVER", old))
	return time.Since(start)
}

// KillMaster kills the master with SIGKILL ([Server.Stop]) and waits until
// every running Sentinel has promoted a replica and it answers as the
// master. It returns the killed server, which a test may bring back with
// [Server.Restart] and [Sentinel.WaitReplica], and the time from the kill
// to the end of the failover.
func (sn *Sentinel) KillMaster(t testing.TB) (killed *Server, took time.Duration) {
	t.Helper()
	killed = sn.Master(t)
	start := time.Now()
	killed.Stop(t)
	what := "failover after killing the master"
	sn.wait(t, what, sn.promoted(t, what, killed))
	return killed, time.Since(start)
}

// promoted waits until the first running Sentinel names a master other
// than old, and returns it. With one replica that is the replica; with
// more, the Sentinels choose.
func (sn *Sentinel) promoted(t testing.TB, what string, old *Server) *Server {
	t.Helper()
	if len(sn.data) == 2 {
		return sn.others(old)[0]
	}
	var next *Server
	waitUntil(t, settleTimeout, what, func() error {
		next = sn.Master(t)
		if next == old {
			return fmt.Errorf("the Sentinels still name %s", old.Addr())
		}
		return nil
	})
	return next
}

// WaitReplica waits until s, typically a killed master brought back with
// [Server.Restart], is a replica of the current master with the
// replication link up and every running Sentinel sees it so, and returns
// how long that took. A master restarts as a master (with no data) and
// accepts writes until the Sentinels demote it.
func (sn *Sentinel) WaitReplica(t testing.TB, s *Server) time.Duration {
	t.Helper()
	master := sn.Master(t)
	switch {
	case s == master:
		t.Fatalf("redistest: the server on port %d is the master", s.Port)
	case !s.running():
		t.Fatalf("redistest: the server on port %d is stopped", s.Port)
	}
	start := time.Now()
	sn.wait(t, "replica rejoining", master)
	return time.Since(start)
}

// sentinel returns the first running Sentinel.
func (sn *Sentinel) sentinel(t testing.TB) *Server {
	t.Helper()
	for _, s := range sn.sentinels {
		if s.running() {
			return s
		}
	}
	t.Fatal("redistest: no Sentinel is running")
	return nil
}

// others returns the data nodes that are not s, in start order.
func (sn *Sentinel) others(s *Server) []*Server {
	var out []*Server
	for _, d := range sn.data {
		if d != s {
			out = append(out, d)
		}
	}
	return out
}

// wait waits until the setup is healthy with master as the master.
func (sn *Sentinel) wait(t testing.TB, what string, master *Server) {
	t.Helper()
	waitUntil(t, settleTimeout, what, func() error { return sn.check(master) })
}

// check reports whether the setup is healthy with master as the master: it
// answers as the master, every other data node that runs replicates it
// with the link up and has caught up, and every running Sentinel agrees.
func (sn *Sentinel) check(master *Server) error {
	info, err := redis.String(master.do("INFO", "replication"))
	if err != nil {
		return fmt.Errorf("%s: INFO: %w", master.Addr(), err)
	}
	if role := infoField(info, "role"); role != "master" {
		return fmt.Errorf("%s: role %s, want master", master.Addr(), role)
	}
	for _, r := range sn.others(master) {
		if !r.running() {
			continue
		}
		if err := replicates(r, master); err != nil {
			return err
		}
	}
	for _, s := range sn.sentinels {
		if !s.running() {
			continue
		}
		if err := sn.checkSentinel(s, master); err != nil {
			return fmt.Errorf("Sentinel %s: %w", s.Addr(), err)
		}
	}
	return nil
}

// checkSentinel reports whether Sentinel s names master as the master, sees
// it up with no failover in progress, knows the other Sentinels and sees
// every running replica up and connected to master.
func (sn *Sentinel) checkSentinel(s, master *Server) error {
	addr, err := redis.Strings(s.do("SENTINEL", "GET-MASTER-ADDR-BY-NAME", sn.name))
	if err != nil {
		return err
	}
	if len(addr) != 2 || addr[1] != strconv.Itoa(master.Port) {
		return fmt.Errorf("master %v, want port %d", addr, master.Port)
	}
	m, err := redis.StringMap(s.do("SENTINEL", "MASTER", sn.name))
	if err != nil {
		return err
	}
	if m["flags"] != "master" || m["num-other-sentinels"] != strconv.Itoa(sentinelCount-1) {
		return fmt.Errorf("master flags %s with %s other Sentinels", m["flags"], m["num-other-sentinels"])
	}
	replicas, err := redis.Values(s.do("SENTINEL", "REPLICAS", sn.name))
	if err != nil {
		return err
	}
	byPort := make(map[string]map[string]string, len(replicas))
	for _, v := range replicas {
		fields, err := redis.StringMap(v, nil)
		if err != nil {
			return err
		}
		byPort[fields["port"]] = fields
	}
	for _, r := range sn.others(master) {
		if !r.running() {
			continue
		}
		fields, ok := byPort[strconv.Itoa(r.Port)]
		switch {
		case !ok:
			return fmt.Errorf("replica %s unknown", r.Addr())
		case fields["flags"] != "slave" || fields["master-link-status"] != "ok" || fields["master-port"] != strconv.Itoa(master.Port):
			return fmt.Errorf("replica %s: flags %s, link %s to port %s",
				r.Addr(), fields["flags"], fields["master-link-status"], fields["master-port"])
		}
	}
	return nil
}
