package redisstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/mna/redisc"
)

// clusterSource is the Source of a Store on a Redis Cluster, built on
// github.com/mna/redisc: one pool per node, made like the pool of one
// server (the same dial, timeouts and liveness check), and the map of hash
// slots to nodes, which redisc learns with CLUSTER SLOTS and corrects on a
// MOVED reply it sees; the source refreshes it after other failures (see
// noteFailure), and replaces the redisc Cluster when none of the nodes it
// knows can give a whole map (see reseed).
//
// Its connections are bound to a node before use (see bind), and a Store
// on it keeps all the keys of one call in one slot (see the package
// documentation), so that no command meets CROSSSLOT.
type clusterSource struct {
	// c is the redisc Cluster, which reseed replaces.
	c   atomic.Pointer[cluster]
	cfg Config // to make the pools of nodes

	// reseeding is set while reseed runs.
	reseeding atomic.Bool

	mu     sync.Mutex
	nodes  map[string]*redis.Pool // the pools of Iterate's connections to single nodes, by address
	closed bool

	// lastRefresh is when a refresh of the slot map was last started, in
	// unix nanoseconds, to start at most one per refreshInterval.
	lastRefresh atomic.Int64
	// mapOnce starts the first call's request for the slot map, and
	// mapped is closed when that request has ended (see bind).
	mapOnce sync.Once
	mapped  chan struct{}
	// lastDialErr is the error of the latest dial of a node, nil once a
	// dial succeeds (see dialCause).
	lastDialErr atomic.Pointer[error]
	// gates holds a *nodeGate by node address (see turn).
	gates sync.Map
	// anyNode gives turns, MaxActive at once, to the calls that redisc
	// binds to a node of its own choosing: those without a key (see bind)
	// and those on a slot the map names no master for (see turn). Its
	// waits are not counted in PoolStats, which counts waits for a node.
	anyNode *nodeGate
	// done is closed by Close, and wakes the calls waiting for a turn.
	done chan struct{}
}

// nodeGate lets at most MaxActive calls at once bind to one node (or, as
// clusterSource.anyNode, to nodes of redisc's choosing), and counts the
// calls that waited for their turn (see turn).
type nodeGate struct {
	turns    chan struct{}
	waits    atomic.Int64
	waitTime atomic.Int64 // nanoseconds
}

// errClosed reports a call on a Store that was closed.
var errClosed = errors.New("store closed")

// refreshInterval is the least time between two refreshes of the slot map
// that failures start.
const refreshInterval = 100 * time.Millisecond

func newClusterSource(cfg Config) *clusterSource {
	cs := &clusterSource{
		cfg:     cfg,
		nodes:   make(map[string]*redis.Pool),
		mapped:  make(chan struct{}),
		done:    make(chan struct{}),
		anyNode: newGate(cfg.MaxActive),
	}
	cs.c.Store(cs.newCluster(cfg.ClusterNodes))
	return cs
}

// newCluster returns a redisc Cluster that first asks the nodes at
// startup for the slot map.
func (cs *clusterSource) newCluster(startup []string) *cluster {
	c := &cluster{}
	c.Cluster = &redisc.Cluster{
		StartupNodes: startup,
		CreatePool: func(addr string, _ ...redis.DialOption) (*redis.Pool, error) {
			p := cs.newPool(addr)
			// No cap of the pool's own: the calls on keys bind to the
			// node MaxActive at a time (see turn), and the connections
			// taken outside those turns are each held for a timeout at
			// most: those of the calls without a key, MaxActive at a time
			// (see bind), and of the refreshes of the slot map, redisc's
			// and the source's (one started per refreshInterval at most,
			// see noteFailure; Config.MaxActive counts them). A cap of the
			// pool's own would make calls that have their turn find the
			// pool full while refreshes and Pings wait on a stalled node,
			// and redisc would then send them to a random node, to be
			// answered MOVED; and it cannot wait for a free connection
			// as the pool of one server does: redisc would wait with a
			// context of its own, which knows nothing of the caller's.
			p.MaxActive = 0
			dial := p.DialContext
			p.DialContext = func(ctx context.Context) (redis.Conn, error) {
				c.pools.Store(addr, p)
				return dial(ctx)
			}
			return p, nil
		},
		// Bounds the dial of a new connection, which redisc makes with
		// this wait's context.
		PoolWaitTime: cs.cfg.Timeout,
		LayoutRefresh: func(_, layout [redisc.HashSlots][]string) {
			c.slots.Store(newSlotMap(&layout))
		},
	}
	return c
}

// newPool returns a pool of connections to the node at addr, made like
// the pool of one server.
func (cs *clusterSource) newPool(addr string) *redis.Pool {
	node := cs.cfg
	node.Addr = addr
	p := newPool(node)
	dial := p.DialContext
	p.DialContext = func(ctx context.Context) (redis.Conn, error) {
		c, err := dial(ctx)
		if err != nil {
			cs.lastDialErr.Store(&err)
		} else {
			cs.lastDialErr.Store(nil)
		}
		return c, err
	}
	return p
}

// GetContext returns a connection not yet bound to a node; do binds it.
func (cs *clusterSource) GetContext(ctx context.Context) (redis.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cs.mu.Lock()
	closed := cs.closed
	cs.mu.Unlock()
	if closed {
		return nil, errClosed
	}
	return cs.c.Load().Get(), nil
}

// bind binds conn to the node that serves the slot of key, or to any node
// for key "". The first call asks for the slot map (CLUSTER SLOTS), and it
// and the calls that come meanwhile wait for the answer before they bind,
// so that calls go to the right nodes from the start rather than to a
// random one and back through MOVED, and no refresh runs in the background
// of the first calls. If that fails, MOVED replies and the refreshes of
// noteFailure fill the map in. The request runs on its own, and a call
// waits for it only until ctx ends: redisc's Refresh takes no context and
// asks the nodes of ClusterNodes one after another, each within the dial
// and read timeouts, so that seeds that accept connections but never
// answer (a stalled or firewalled host) would otherwise hold the first
// call for seconds past its Timeout.
//
// A call for a key binds in its turn at the slot's node (see turn), and
// one without a key (Ping's, or Iterate's and KeyStats' list of masters)
// in its turn among those calls, MaxActive at a time, as on one server:
// redisc binds it to a random node, which may be one that stalls, and
// Ping holds it while it asks each master, so that any number of parallel
// Pings would otherwise open as many connections to a stalled node (see
// the CreatePool of newCluster). The call ends the turn, once conn is
// closed, with the gate's release (a nil gate, of a call without a turn,
// releases nothing). bind ends the turn itself when it fails.
func (cs *clusterSource) bind(ctx context.Context, conn redis.Conn, key string) (*nodeGate, error) {
	cs.mapOnce.Do(func() {
		go func() {
			defer close(cs.mapped)
			cs.c.Load().Refresh() //nolint:errcheck // see above
		}()
	})
	select {
	case <-cs.mapped:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-cs.done:
		return nil, errClosed
	}
	if key == "" {
		if err := cs.take(ctx, cs.anyNode); err != nil {
			var nt noTurn
			if errors.As(err, &nt) {
				// Not the text of an exhausted pool's wait: no node's
				// pool was.
				err = noTurn{fmt.Errorf("waiting for a turn among the Store's Pings, Iterates and KeyStats (MaxActive at once): %w", nt.err)}
			}
			return nil, err
		}
		if err := cs.dialCause(redisc.BindConn(conn)); err != nil {
			cs.anyNode.release()
			return nil, err
		}
		return cs.anyNode, nil
	}
	gate, err := cs.turn(ctx, key)
	if err != nil {
		return nil, err
	}
	if err = cs.predial(ctx, key); err == nil {
		err = cs.dialCause(redisc.BindConn(conn, key))
	}
	if err != nil {
		gate.release()
		return nil, err
	}
	return gate, nil
}

// turn waits, within ctx, until fewer than MaxActive calls are bound to
// the master of key's slot (as the slot map names it), and returns that
// node's gate, whose release ends this call's turn; when the map is not
// known or names no master for the slot, redisc binds the call to a node
// of its own choosing, and the call takes its turn among the calls
// without a key (see bind), so that the node pools, which have no cap of
// their own, open no more than MaxActive for such calls. A call so waits
// for its node's pool as a call on one server waits for its pool, within
// its own context; without it, redisc would send the calls a burst finds
// the pool full for to other nodes, which answer MOVED, and a call that
// ran out of time trying again would fail though every node is healthy,
// and some of them would wait on a node that has stalled while their own
// answers.
func (cs *clusterSource) turn(ctx context.Context, key string) (*nodeGate, error) {
	gate := cs.anyNode
	if m := cs.c.Load().slots.Load(); m != nil {
		if addr := m.master(redisc.Slot(key)); addr != "" {
			g, ok := cs.gates.Load(addr)
			if !ok {
				g, _ = cs.gates.LoadOrStore(addr, newGate(cs.cfg.MaxActive))
			}
			gate = g.(*nodeGate)
		}
	}
	if err := cs.take(ctx, gate); err != nil {
		return nil, err
	}
	return gate, nil
}

// newGate returns a gate of n turns.
func newGate(n int) *nodeGate {
	return &nodeGate{turns: make(chan struct{}, n)}
}

// take waits, within ctx and until the source is closed, for a turn at g.
func (cs *clusterSource) take(ctx context.Context, g *nodeGate) error {
	select {
	case g.turns <- struct{}{}:
		return nil
	default:
	}
	start := time.Now()
	select {
	case g.turns <- struct{}{}:
		g.waits.Add(1)
		g.waitTime.Add(int64(time.Since(start)))
		return nil
	case <-ctx.Done():
		return noTurn{ctx.Err()}
	case <-cs.done:
		return errClosed
	}
}

// release ends a turn that turn gave at g; on a nil g it does nothing.
func (g *nodeGate) release() {
	if g != nil {
		<-g.turns
	}
}

// noTurn is turn's error for a call whose time ran out waiting: its node
// is busy, not gone, and the slot map stays as it is (see noteFailure).
type noTurn struct{ err error }

func (e noTurn) Error() string { return e.err.Error() }
func (e noTurn) Unwrap() error { return e.err }

// turnsTaken reports whether MaxActive calls are bound to the node at addr
// (see turn): further calls for its slots wait.
func (cs *clusterSource) turnsTaken(addr string) bool {
	g, ok := cs.gates.Load(addr)
	return ok && len(g.(*nodeGate).turns) == cap(g.(*nodeGate).turns)
}

// waitStats returns how many calls waited for their turn at a node (see
// turn), and for how long in all.
func (cs *clusterSource) waitStats() (waits int64, waitTime time.Duration) {
	cs.gates.Range(func(_, g any) bool {
		waits += g.(*nodeGate).waits.Load()
		waitTime += time.Duration(g.(*nodeGate).waitTime.Load())
		return true
	})
	return waits, waitTime
}

// predial makes sure, within ctx, that the master of key's slot (as the
// slot map names it) answers a dial, when no connection to it lies idle in
// redisc's pool: it dials one there, where BindConn then finds it, or,
// before that pool's first dial, dials on its own and closes the
// connection. Without it a call could run several times past its Timeout:
// redisc gives each dial a wait of its own (PoolWaitTime), not what is
// left of the call's, and when the slot's node fails it tries every other
// node in turn, so nodes that do not answer a dial (a host down, a
// partition, a wrong cluster-announce-ip) cost one DialTimeout each. A
// dial that fails fails the call here: redisc would bind the call to a
// random node instead, whose MOVED to the master the call would then
// report after trying again until its time ran out, as if a slot were
// moving, dialling the master again at each try. On the network (timed
// out, refused) the failure starts a refresh of the slot map (see
// noteFailure); a refusal (a password that node does not take, its TLS
// certificate) fails the call at once, as on one server, instead of
// reporting MOVED after a whole Timeout of dials to that node.
func (cs *clusterSource) predial(ctx context.Context, key string) error {
	c := cs.c.Load()
	m := c.slots.Load()
	if m == nil {
		return nil
	}
	addr := m.master(redisc.Slot(key))
	if addr == "" {
		return nil
	}
	var err error
	if p, ok := c.pools.Load(addr); ok {
		pool := p.(*redis.Pool)
		if pool.IdleCount() > 0 {
			return nil
		}
		var conn redis.Conn
		if conn, err = pool.GetContext(ctx); err == nil {
			conn.Close()
		} else if err.Error() == errPoolClosed {
			// redisc closed the pool (a refresh does when a node
			// changes role: a promoted replica's too) and makes another
			// at its next dial there, which records it: no word on the
			// node, whose every call would fail here until then (as in
			// a CLUSTER FAILOVER).
			c.pools.CompareAndDelete(addr, pool)
			return nil
		}
	} else {
		node := cs.cfg
		node.Addr = addr
		var conn *checkedConn
		if conn, err = dial(ctx, node); err == nil {
			conn.Close()
		}
	}
	return err
}

// errPoolClosed is the text of redigo's error for a Get from a closed pool,
// which it does not export.
const errPoolClosed = "redigo: get on closed pool"

// dialCause returns err, a failure to bind a connection, with the error of
// the latest dial behind it when err is redisc's report that no node it
// tried gave a connection and that dial's failure is among the reasons the
// report lists. redisc keeps only the text of those errors; behind err,
// errors.As finds the reply or TLS error again, so that a wrong password
// (WRONGPASS) is a refusal, as on one server, and not an outage. A report
// of exhausted pools, or one made after a dial has succeeded since, is
// left as it is: an outage, tried again.
func (cs *clusterSource) dialCause(err error) error {
	if err == nil || !strings.HasPrefix(err.Error(), "redisc: failed to get a connection") {
		return err
	}
	last := cs.lastDialErr.Load()
	if last == nil || !strings.Contains(err.Error(), (*last).Error()) {
		return err
	}
	return dialFailed{err: err, cause: *last}
}

// dialFailed is dialCause's error: err's text, unwrapping to err and cause.
type dialFailed struct{ err, cause error }

func (e dialFailed) Error() string   { return e.err.Error() }
func (e dialFailed) Unwrap() []error { return []error{e.err, e.cause} }

// noteFailure refreshes the slot map in the background (see refresh)
// after a failure that may mean a node is gone (a network error, or no
// connection to the node at all) or that a slot is served elsewhere now
// (MOVED). redisc corrects its map by itself only on a MOVED that is the
// error of its own Do or Receive; the MOVED a pipeline's reply holds (read
// with Do(""), as an optimistic transaction reads its WATCH and reads)
// never reaches it, and without this refresh a call would be sent to the
// old node again until its time ran out. At most one refresh starts per
// refreshInterval. redisc asks the masters it knows one after another, in
// the order of a Go map, which favours the first of ClusterNodes (three
// times in four with three masters), so a refresh that asks a
// stalled node first waits ReadTimeout for it, holding one of its
// connections: while calls fail, up to about ReadTimeout/refreshInterval
// of them. Those started meanwhile that ask another node first follow a
// failover off the stalled master (one refresh at a time would follow it
// most of a ReadTimeout late).
//
// A MOVED to the node the map already names for the slot comes from a
// node the call was bounced to, when redisc got no connection to the
// slot's own node: the map is right, and refreshing it would not help.
func (cs *clusterSource) noteFailure(err error) {
	var nerr net.Error
	var nc errNoConn
	if errors.Is(err, errClosed) || errors.As(err, new(noTurn)) ||
		!cs.movedElsewhere(err) && !errors.As(err, &nerr) && !errors.As(err, &nc) {
		return
	}
	now := time.Now().UnixNano()
	last := cs.lastRefresh.Load()
	if now-last < int64(refreshInterval) || !cs.lastRefresh.CompareAndSwap(last, now) {
		return
	}
	go cs.refresh()
}

// movedElsewhere reports whether err is a MOVED to another node than the
// one the slot map names for its slot.
func (cs *clusterSource) movedElsewhere(err error) bool {
	var reply redis.Error
	if !errors.As(err, &reply) {
		return false
	}
	re := redisc.ParseRedir(reply)
	if re == nil || re.Type != "MOVED" {
		return false
	}
	m := cs.c.Load().slots.Load()
	return m == nil || m.master(re.NewSlot) != re.Addr
}

// refresh asks the nodes for the slot map, and reseeds when none of them
// is reachable or the map leaves slots without a master (as a node
// restarted empty, or taken out of the cluster, answers; redisc takes such
// a map, and then asks only Config.ClusterNodes again, in their order). A
// failed refresh leaves the old map, and the next failure tries again.
func (cs *clusterSource) refresh() {
	c := cs.c.Load()
	if c.Refresh() == nil {
		if m := c.slots.Load(); m != nil && m.full {
			return
		}
	}
	if cs.c.Load() != c || !cs.reseeding.CompareAndSwap(false, true) {
		return
	}
	defer cs.reseeding.Store(false)
	cs.reseed(c)
}

// reseed replaces c, a Cluster none of whose masters could be reached or
// whose map leaves slots without a master (see refresh), with a new one
// that learns the slot map from the first node, of
// Config.ClusterNodes and then of c's latest slot map (replicas included),
// that answers with a map that gives every slot a master (a node
// restarted empty, or taken out of the cluster, answers with an empty or
// partial one). redisc asks only the masters it knows once it has a map:
// an instance that made no call while every master it knew went away (the
// failover of each in turn, or a restart of the nodes on new addresses)
// would otherwise fail every call until restarted.
func (cs *clusterSource) reseed(c *cluster) {
	seeds := slices.Clone(cs.cfg.ClusterNodes)
	if m := c.slots.Load(); m != nil {
		for _, addr := range m.nodes() {
			if !slices.Contains(seeds, addr) {
				seeds = append(seeds, addr)
			}
		}
	}
	// One seed per new Cluster: redisc asks its seeds in an order of its
	// own, and takes the first map it gets, whole or not.
	for _, seed := range seeds {
		select {
		case <-cs.done:
			return // closed: each seed could cost DialTimeout and ReadTimeout more
		default:
		}
		next := cs.newCluster([]string{seed})
		if next.Refresh() == nil {
			if m := next.slots.Load(); m != nil && m.full {
				cs.replace(c, next)
				return
			}
		}
		next.Close()
	}
}

// replace puts next in the place of c and closes c, unless the source was
// closed or c replaced meanwhile: then it closes next.
func (cs *clusterSource) replace(c, next *cluster) {
	cs.mu.Lock()
	swapped := !cs.closed && cs.c.CompareAndSwap(c, next)
	cs.mu.Unlock()
	if !swapped {
		next.Close()
		return
	}
	c.Close() // calls bound to its nodes finish; the others bind anew
}

// clusterMasters returns the addresses of the masters that serve slots,
// as the node of conn lists them (CLUSTER SLOTS), each once.
func clusterMasters(ctx context.Context, conn redis.Conn) ([]string, error) {
	ranges, err := redis.Values(cmd(ctx, conn, "CLUSTER", "SLOTS"))
	if err != nil {
		return nil, err
	}
	var addrs []string
	for _, r := range ranges {
		// [first slot, last slot, [host, port, id, ...] of the master, replicas...]
		fields, err := redis.Values(r, nil)
		if err != nil || len(fields) < 3 {
			return nil, errors.New("CLUSTER SLOTS: unexpected reply")
		}
		node, err := redis.Values(fields[2], nil)
		if err != nil || len(node) < 2 {
			return nil, errors.New("CLUSTER SLOTS: unexpected reply")
		}
		host, err := redis.String(node[0], nil)
		if err != nil {
			return nil, errors.New("CLUSTER SLOTS: unexpected reply")
		}
		port, err := redis.Int(node[1], nil)
		if err != nil {
			return nil, errors.New("CLUSTER SLOTS: unexpected reply")
		}
		if addr := net.JoinHostPort(host, strconv.Itoa(port)); !slices.Contains(addrs, addr) {
			addrs = append(addrs, addr)
		}
	}
	return addrs, nil
}

// node returns a connection to the node at addr, from a pool of the
// source's own: redisc keeps its pools to itself (and closes some of those
// CreatePool makes, when two calls make one for the same node at once).
func (cs *clusterSource) node(ctx context.Context, addr string) (redis.Conn, error) {
	cs.mu.Lock()
	if cs.closed {
		cs.mu.Unlock()
		return nil, errClosed
	}
	p := cs.nodes[addr]
	if p == nil {
		p = cs.newPool(addr)
		cs.nodes[addr] = p
	}
	cs.mu.Unlock()
	return p.GetContext(ctx)
}

// Close closes every node's pool.
func (cs *clusterSource) Close() error {
	cs.mu.Lock()
	if !cs.closed {
		close(cs.done)
	}
	cs.closed = true
	for _, p := range cs.nodes {
		p.Close()
	}
	c := cs.c.Load()
	cs.mu.Unlock()
	return c.Close()
}
