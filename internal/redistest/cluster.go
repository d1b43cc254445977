package redistest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
)

// ClusterOptions configures [StartCluster]. The zero value gives three
// masters with one replica each, no password and a node timeout of one
// second.
type ClusterOptions struct {
	// Masters is the number of masters, at least 3 (redis-cli refuses
	// fewer); 3 if zero.
	Masters int
	// ReplicasPerMaster is the number of replicas of each master: 1 if
	// zero, none if negative.
	ReplicasPerMaster int
	// Password, if set, is required by every node (requirepass); replicas
	// (masterauth), redis-cli and slot migrations (MIGRATE ... AUTH)
	// authenticate with it, and so do the helper's own connections.
	Password string
	// NodeTimeout is cluster-node-timeout: how long a node may fail to
	// answer before the others flag it as failing and its replica takes
	// over; one second if zero.
	NodeTimeout time.Duration
	// Args are extra redis-server arguments for every node, such as
	// "--cluster-require-full-coverage", "no".
	Args []string
}

// Cluster is a Redis Cluster started by [StartCluster] and owned by one
// test. Its methods must be called from the test's goroutine.
//
// The nodes keep Redis's default cluster-require-full-coverage yes: from
// the moment a killed master is flagged as failed until its replica is
// promoted, every node answers -CLUSTERDOWN, for every slot. Pass
// "--cluster-require-full-coverage", "no" in ClusterOptions.Args to keep
// the other masters serving their slots meanwhile.
type Cluster struct {
	nodes    []*Server
	ids      map[*Server]string // node IDs, which survive restarts
	password string

	// elected is when each node last won an election started by the
	// helper, to wait electionReset after it; see [Cluster.KillMaster].
	elected       map[*Server]time.Time
	electionReset time.Duration
}

const (
	// slotCount is the number of hash slots of a Redis Cluster.
	slotCount = 16384
	// createTimeout bounds redis-cli --cluster create.
	createTimeout = time.Minute
	// migrateTimeout is the timeout of each MIGRATE, in milliseconds.
	migrateTimeout = 5000
	// migrateBatch is how many keys each MIGRATE of Migration.Finish moves.
	migrateBatch = 100
)

// StartCluster starts a Redis Cluster on free loopback ports, each node in
// a private directory (its nodes.conf survives [Server.Restart]) and killed
// when the test ends, creates it with redis-cli --cluster create, which
// spreads the slots evenly over the masters, and returns once it is
// healthy: every node answers cluster_state:ok, all 16384 slots are served,
// every node agrees on the roles and the slot map, and every replica's
// replication link is up.
//
// If redis-server or redis-cli is not in PATH, StartCluster skips the test,
// or fails it when SESSIONKIT_REQUIRE_REDIS=1.
func StartCluster(t testing.TB, opts ClusterOptions) *Cluster {
	t.Helper()
	cli := lookPath(t, "redis-cli")
	if opts.Masters == 0 {
		opts.Masters = 3
	}
	switch {
	case opts.ReplicasPerMaster == 0:
		opts.ReplicasPerMaster = 1
	case opts.ReplicasPerMaster < 0:
		opts.ReplicasPerMaster = 0
	}
	if opts.NodeTimeout == 0 {
		opts.NodeTimeout = time.Second
	}
	args := append([]string{
		"--cluster-enabled", "yes",
		"--cluster-config-file", "nodes.conf", // in the node's directory
		"--cluster-node-timeout", strconv.FormatInt(opts.NodeTimeout.Milliseconds(), 10),
	}, syncArgs...)
	create := []string{"--cluster", "create"}
	if opts.Password != "" {
		args = append(args, "--requirepass", opts.Password, "--masterauth", opts.Password)
		create = append([]string{"-a", opts.Password, "--no-auth-warning"}, create...)
	}
	args = append(args, opts.Args...)

	c := &Cluster{
		ids:      make(map[*Server]string),
		elected:  make(map[*Server]time.Time),
		password: opts.Password,
		// A replica's election times out after twice the node timeout, at
		// least 2s, and it may retry after twice that.
		electionReset: 4 * max(opts.NodeTimeout, time.Second),
	}
	for range opts.Masters * (1 + opts.ReplicasPerMaster) {
		s := Start(t, args...)
		c.nodes = append(c.nodes, s)
		create = append(create, s.Addr())
	}
	create = append(create, "--cluster-replicas", strconv.Itoa(opts.ReplicasPerMaster), "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), createTimeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, cli, create...).CombinedOutput(); err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, s := range c.nodes {
		id, err := redis.String(s.Do(t, "CLUSTER", "MYID"), nil)
		if err != nil {
			t.Fatalf("redistest: CLUSTER MYID: %v", err)
		}
		c.ids[s] = id
	}
	c.wait(t, "start cluster", func(clusterView) error { return nil })
	return c
}

// Addrs returns the addresses of all nodes, "127.0.0.1:<port>", running or
// not, to seed a cluster client with.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, s := range c.nodes {
		addrs[i] = s.Addr()
	}
	return addrs
}

// Nodes returns all nodes, masters and replicas, in the order they were
// started; the roles change with failovers.
func (c *Cluster) Nodes() []*Server {
	return slices.Clone(c.nodes)
}

// Masters returns the nodes that serve slots, ordered by their lowest
// slot, as the first running node sees them (CLUSTER NODES).
func (c *Cluster) Masters(t testing.TB) []*Server {
	t.Helper()
	v := c.view(t)
	var ids []string
	for id, n := range v {
		if len(n.slots) > 0 {
			ids = append(ids, id)
		}
	}
	slices.SortFunc(ids, func(a, b string) int { return cmp.Compare(v[a].slots[0][0], v[b].slots[0][0]) })
	masters := make([]*Server, len(ids))
	for i, id := range ids {
		masters[i] = c.server(t, id)
	}
	return masters
}

// MasterOf returns the master serving slot, as the first running node sees
// it. [Slot] gives the slot of a key.
func (c *Cluster) MasterOf(t testing.TB, slot int) *Server {
	t.Helper()
	id := c.view(t).owner(slot)
	if id == "" {
		t.Fatalf("redistest: no node serves slot %d", slot)
	}
	return c.server(t, id)
}

// ReplicaOf returns a running replica of master, as the first running node
// sees it.
func (c *Cluster) ReplicaOf(t testing.TB, master *Server) *Server {
	t.Helper()
	v, id := c.view(t), c.ids[master]
	for _, s := range c.nodes {
		if n := v[c.ids[s]]; n != nil && n.master == id && s.running() {
			return s
		}
	}
	t.Fatalf("redistest: the master on port %d has no running replica", master.Port)
	return nil
}

// Failover makes a replica of master take over in a manual failover
// (CLUSTER FAILOVER, which first lets it catch up with the master) and
// waits until it is the master, the old master is its replica, and the
// cluster is healthy again, as [StartCluster] describes. It returns how
// long that took, from the command on. If the replica won an election
// shortly before, Failover first waits, as [Cluster.KillMaster] explains.
func (c *Cluster) Failover(t testing.TB, master *Server) time.Duration {
	t.Helper()
	replica := c.ReplicaOf(t, master)
	c.waitElectionReset(replica)
	start := time.Now()
	replica.Do(t, "CLUSTER", "FAILOVER")
	c.wait(t, "CLUSTER FAILOVER", func(v clusterView) error {
		if err := c.isMaster(v, replica); err != nil {
			return err
		}
		if v[c.ids[master]].master != c.ids[replica] {
			return fmt.Errorf("%s is not yet a replica of %s", master.Addr(), replica.Addr())
		}
		return nil
	})
	c.elected[replica] = time.Now()
	return time.Since(start)
}

// KillMaster kills master with SIGKILL ([Server.Stop]) and waits until the
// cluster has promoted a replica of it and is healthy again, without it.
// It returns the promoted replica and the time from the kill to then. A
// test may bring the killed node back with [Server.Restart] and
// [Cluster.WaitReplica].
//
// If that replica won an election for [Cluster.Failover] or KillMaster in
// the last 4 node timeouts (at least 4s), KillMaster, like Failover, first
// waits for that time to pass: Redis 7.0 keeps the votes of a replica's
// last election that long, and a replica whose master fails in the first
// half of it claims the slots again with those votes and their outdated
// epoch; the other nodes ignore the claim, and the cluster stays down.
func (c *Cluster) KillMaster(t testing.TB, master *Server) (promoted *Server, took time.Duration) {
	t.Helper()
	promoted = c.ReplicaOf(t, master)
	c.waitElectionReset(promoted)
	start := time.Now()
	master.Stop(t)
	c.wait(t, "failover after killing a master", func(v clusterView) error {
		return c.isMaster(v, promoted)
	})
	c.elected[promoted] = time.Now()
	return promoted, time.Since(start)
}

// waitElectionReset sleeps until the votes of the last election s won, if
// any, have expired; see [Cluster.KillMaster].
func (c *Cluster) waitElectionReset(s *Server) {
	if at, ok := c.elected[s]; ok {
		time.Sleep(time.Until(at.Add(c.electionReset)))
	}
}

// WaitReplica waits until s, typically a killed master brought back with
// [Server.Restart], is a replica with its replication link up and the
// cluster is healthy, and returns how long that took. A killed master
// restarts as a master of its old slots and learns from the other nodes
// that it lost them.
func (c *Cluster) WaitReplica(t testing.TB, s *Server) time.Duration {
	t.Helper()
	if !s.running() {
		t.Fatalf("redistest: the node on port %d is stopped", s.Port)
	}
	start := time.Now()
	c.wait(t, "replica rejoining", func(v clusterView) error {
		if v[c.ids[s]].master == "-" { // known: check covers running nodes
			return fmt.Errorf("%s is still a master", s.Addr())
		}
		return nil
	})
	return time.Since(start)
}

// MoveSlot moves slot and its keys to the master to with the resharding
// protocol of redis-cli: [Cluster.BeginMoveSlot], then [Migration.Finish].
// It returns how long that took until every node agreed.
func (c *Cluster) MoveSlot(t testing.TB, slot int, to *Server) time.Duration {
	t.Helper()
	start := time.Now()
	c.BeginMoveSlot(t, slot, to).Finish(t)
	return time.Since(start)
}

// Migration is a slot being moved between two masters, begun by
// [Cluster.BeginMoveSlot]. Until [Migration.Finish] the source is
// MIGRATING the slot and the target IMPORTING it: the source answers
// commands on keys it no longer has (moved, or never there) with -ASK
// pointing to the target, and multi-key commands on keys of which only some
// are left with -TRYAGAIN; the target answers -MOVED back to the source
// unless the command follows ASKING on the same connection.
type Migration struct {
	c        *Cluster
	slot     int
	from, to *Server
}

// BeginMoveSlot starts moving slot from its master to the master to
// (CLUSTER SETSLOT IMPORTING on the target, then MIGRATING on the source)
// without moving any key yet, so that a test can observe the migration and
// move keys with [Migration.MoveKeys] at its own pace.
func (c *Cluster) BeginMoveSlot(t testing.TB, slot int, to *Server) *Migration {
	t.Helper()
	from := c.MasterOf(t, slot)
	if from == to {
		t.Fatalf("redistest: slot %d is on port %d already", slot, to.Port)
	}
	if c.view(t)[c.ids[to]].master != "-" {
		t.Fatalf("redistest: the node on port %d is not a master", to.Port)
	}
	to.Do(t, "CLUSTER", "SETSLOT", slot, "IMPORTING", c.ids[from])
	from.Do(t, "CLUSTER", "SETSLOT", slot, "MIGRATING", c.ids[to])
	return &Migration{c: c, slot: slot, from: from, to: to}
}

// MoveKeys moves the given keys of the slot from the source to the target
// with one MIGRATE; keys that are not on the source are left out.
func (m *Migration) MoveKeys(t testing.TB, keys ...string) {
	t.Helper()
	args := []any{"127.0.0.1", m.to.Port, "", 0, migrateTimeout}
	if m.c.password != "" {
		args = append(args, "AUTH", m.c.password)
	}
	args = append(args, "KEYS")
	for _, k := range keys {
		args = append(args, k)
	}
	m.from.Do(t, "MIGRATE", args...)
}

// Finish moves the keys still on the source (CLUSTER GETKEYSINSLOT, then
// MIGRATE), assigns the slot to the target (CLUSTER SETSLOT NODE on the
// target, the source and every other master, in that order) and waits
// until every node agrees and the cluster is healthy.
func (m *Migration) Finish(t testing.TB) {
	t.Helper()
	for {
		keys, err := redis.Strings(m.from.Do(t, "CLUSTER", "GETKEYSINSLOT", m.slot, migrateBatch), nil)
		if err != nil {
			t.Fatalf("redistest: CLUSTER GETKEYSINSLOT: %v", err)
		}
		if len(keys) == 0 {
			break
		}
		m.MoveKeys(t, keys...)
	}
	masters := m.c.Masters(t)
	id := m.c.ids[m.to]
	m.to.Do(t, "CLUSTER", "SETSLOT", m.slot, "NODE", id)
	m.from.Do(t, "CLUSTER", "SETSLOT", m.slot, "NODE", id)
	for _, s := range masters {
		if s != m.to && s != m.from && s.running() {
			s.Do(t, "CLUSTER", "SETSLOT", m.slot, "NODE", id)
		}
	}
	m.c.wait(t, "move slot", func(v clusterView) error {
		if owner := v.owner(m.slot); owner != id {
			return fmt.Errorf("slot %d is on %s, want %s", m.slot, owner, id)
		}
		return nil
	})
}

// clusterView is what one node says about the cluster in CLUSTER NODES,
// keyed by node ID.
type clusterView map[string]*clusterNode

// clusterNode is one line of CLUSTER NODES.
type clusterNode struct {
	flags     []string // such as myself, master, slave, fail?, fail
	master    string   // ID of the node's master, "-" for a master
	connected bool     // the link to the node is up
	slots     [][2]int // ranges of slots served, first to last
	migrating bool     // a slot is migrating from or importing into it
}

// parseNodes parses a CLUSTER NODES reply, whose lines are
//
//	<id> <ip:port@cport> <flags> <master> <ping-sent> <pong-recv> <config-epoch> <link-state> <slot> ...
//
// where a slot is "n", "first-last", or "[n->-id]" or "[n-<-id]" for a
// migration.
func parseNodes(text string) (clusterView, error) {
	v := make(clusterView)
	for line := range strings.Lines(text) {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) < 8 {
			return nil, fmt.Errorf("CLUSTER NODES line %q", line)
		}
		n := &clusterNode{flags: strings.Split(f[2], ","), master: f[3], connected: f[7] == "connected"}
		for _, r := range f[8:] {
			if strings.HasPrefix(r, "[") {
				n.migrating = true
				continue
			}
			first, last, isRange := strings.Cut(r, "-")
			if !isRange {
				last = first
			}
			lo, err1 := strconv.Atoi(first)
			hi, err2 := strconv.Atoi(last)
			if err := errors.Join(err1, err2); err != nil {
				return nil, fmt.Errorf("CLUSTER NODES line %q: %w", line, err)
			}
			n.slots = append(n.slots, [2]int{lo, hi})
		}
		v[f[0]] = n
	}
	return v, nil
}

// owner returns the ID of the node that serves slot, or "".
func (v clusterView) owner(slot int) string {
	for id, n := range v {
		for _, r := range n.slots {
			if r[0] <= slot && slot <= r[1] {
				return id
			}
		}
	}
	return ""
}

// view returns CLUSTER NODES as the first running node answers it.
func (c *Cluster) view(t testing.TB) clusterView {
	t.Helper()
	for _, s := range c.nodes {
		if !s.running() {
			continue
		}
		v, err := c.nodesOf(s)
		if err != nil {
			t.Fatalf("redistest: %v", err)
		}
		return v
	}
	t.Fatal("redistest: no cluster node is running")
	return nil
}

// nodesOf returns CLUSTER NODES as s answers it.
func (c *Cluster) nodesOf(s *Server) (clusterView, error) {
	text, err := redis.String(s.do("CLUSTER", "NODES"))
	if err != nil {
		return nil, fmt.Errorf("%s: CLUSTER NODES: %w", s.Addr(), err)
	}
	return parseNodes(text)
}

// server returns the node with the given ID.
func (c *Cluster) server(t testing.TB, id string) *Server {
	t.Helper()
	s := c.byID(id)
	if s == nil {
		t.Fatalf("redistest: unknown cluster node %s", id)
	}
	return s
}

// byID returns the node with the given ID, or nil.
func (c *Cluster) byID(id string) *Server {
	for s, sid := range c.ids {
		if sid == id {
			return s
		}
	}
	return nil
}

// isMaster reports whether s is a master serving slots in v.
func (c *Cluster) isMaster(v clusterView, s *Server) error {
	if n := v[c.ids[s]]; n == nil || n.master != "-" || len(n.slots) == 0 {
		return fmt.Errorf("%s is not yet a master serving slots", s.Addr())
	}
	return nil
}

// wait waits until the cluster is healthy and cond holds for the view the
// nodes agree on.
func (c *Cluster) wait(t testing.TB, what string, cond func(clusterView) error) {
	t.Helper()
	waitUntil(t, settleTimeout, what, func() error {
		v, err := c.check()
		if err != nil {
			return err
		}
		return cond(v)
	})
}

// check reports whether the cluster is healthy: every running node answers
// cluster_state:ok with all slots served, no slot is migrating, and every
// running node gives the same roles and slot map for the running nodes,
// sees them all up and connected, and, if a replica, has its replication
// link up and has caught up with its master. It returns the view the
// nodes agree on.
func (c *Cluster) check() (clusterView, error) {
	var agreed clusterView
	var agreedSummary, agreedBy string
	for _, s := range c.nodes {
		if !s.running() {
			continue
		}
		info, err := redis.String(s.do("CLUSTER", "INFO"))
		if err != nil {
			return nil, fmt.Errorf("%s: CLUSTER INFO: %w", s.Addr(), err)
		}
		state, ok := infoField(info, "cluster_state"), infoField(info, "cluster_slots_ok")
		if state != "ok" || ok != strconv.Itoa(slotCount) {
			return nil, fmt.Errorf("%s: cluster_state %s with %s slots ok", s.Addr(), state, ok)
		}
		v, err := c.nodesOf(s)
		if err != nil {
			return nil, err
		}
		summary, err := c.summary(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.Addr(), err)
		}
		switch {
		case agreed == nil:
			agreed, agreedSummary, agreedBy = v, summary, s.Addr()
		case summary != agreedSummary:
			return nil, fmt.Errorf("%s and %s disagree:\n%s\nversus\n%s", agreedBy, s.Addr(), agreedSummary, summary)
		}
		me := v[c.ids[s]]
		if me.migrating {
			return nil, fmt.Errorf("%s: a slot is migrating", s.Addr())
		}
		if me.master == "-" {
			continue
		}
		master := c.byID(me.master)
		if master == nil {
			return nil, fmt.Errorf("%s: replicates unknown node %s", s.Addr(), me.master)
		}
		if err := replicates(s, master); err != nil {
			return nil, err
		}
	}
	if agreed == nil {
		return nil, errors.New("no cluster node is running")
	}
	return agreed, nil
}

// summary describes the roles and slots of the running nodes in v, one line
// each, to compare the views of different nodes. It fails if v misses a
// running node, flags one as failing or not yet known, has no link to
// one, or if the running masters do not serve all slots.
func (c *Cluster) summary(v clusterView) (string, error) {
	var b strings.Builder
	served := 0
	for _, s := range c.nodes {
		if !s.running() {
			continue
		}
		id := c.ids[s]
		n := v[id]
		if n == nil {
			return "", fmt.Errorf("does not know %s", s.Addr())
		}
		for _, f := range n.flags {
			if f == "fail" || f == "fail?" || f == "handshake" || f == "noaddr" {
				return "", fmt.Errorf("flags %s as %s", s.Addr(), f)
			}
		}
		if !n.connected {
			return "", fmt.Errorf("has no link to %s", s.Addr())
		}
		fmt.Fprintf(&b, "%s %s master %s slots", s.Addr(), id, n.master)
		for _, r := range n.slots {
			fmt.Fprintf(&b, " %d-%d", r[0], r[1])
			served += r[1] - r[0] + 1
		}
		b.WriteByte('\n')
	}
	if served != slotCount {
		return "", fmt.Errorf("the running masters serve %d slots", served)
	}
	return b.String(), nil
}
