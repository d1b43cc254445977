package redistest_test

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/sessionkit/sessionkit/internal/redistest"
)

// clusterPassword is the password of the cluster of TestCluster.
const clusterPassword = "cluster-pw"

// TestCluster runs one password-protected cluster through manual failovers
// both ways, a killed master and its return, and slot migrations.
func TestCluster(t *testing.T) {
	t.Parallel()
	start := time.Now()
	c := redistest.StartCluster(t, redistest.ClusterOptions{Password: clusterPassword})
	t.Logf("start: %v", time.Since(start))

	if n, addrs := len(c.Nodes()), c.Addrs(); n != 6 || len(addrs) != 6 {
		t.Fatalf("%d nodes and %d addresses, want 6", n, len(addrs))
	}
	masters := c.Masters(t)
	if len(masters) != 3 {
		t.Fatalf("%d masters, want 3", len(masters))
	}
	for _, m := range masters {
		wantRole(t, m, "master")
		wantReplicaOf(t, c.ReplicaOf(t, m), m)
	}

	key := "user:1"
	m := c.MasterOf(t, redistest.Slot(key))
	m.Do(t, "SET", key, "v1")
	wantError(t, cconn(t, otherMaster(t, c, m)), "MOVED "+strconv.Itoa(redistest.Slot(key))+" "+m.Addr(), "GET", key)

	t.Run("Failover", func(t *testing.T) {
		replica := c.ReplicaOf(t, m)
		t.Logf("CLUSTER FAILOVER: %v", c.Failover(t, m))
		if got := c.MasterOf(t, redistest.Slot(key)); got != replica {
			t.Fatalf("after Failover the slot is on port %d, want the replica %d", got.Port, replica.Port)
		}
		wantReplicaOf(t, m, replica)
		wantGet(t, replica, key, "v1")

		t.Logf("CLUSTER FAILOVER back: %v", c.Failover(t, replica))
		wantReplicaOf(t, replica, m)
		if got := c.MasterOf(t, redistest.Slot(key)); got != m {
			t.Fatalf("after failing back the slot is on port %d, want %d", got.Port, m.Port)
		}
	})

	t.Run("KillMaster", func(t *testing.T) {
		replica := c.ReplicaOf(t, m)
		m.Do(t, "SET", key, "v2")
		if n, _ := redis.Int(m.Do(t, "WAIT", 1, 5000), nil); n != 1 {
			t.Fatalf("WAIT = %d replicas, want 1", n)
		}
		promoted, took := c.KillMaster(t, m)
		t.Logf("kill -9 of a master until its replica took over: %v", took)
		if promoted != replica || c.MasterOf(t, redistest.Slot(key)) != promoted {
			t.Fatalf("promoted port %d, want the replica %d", promoted.Port, replica.Port)
		}
		wantRole(t, promoted, "master")
		wantGet(t, promoted, key, "v2")

		m.Restart(t)
		t.Logf("the killed master restarted as %s", role(t, m))
		t.Logf("restarted master rejoined as replica after: %v", c.WaitReplica(t, m))
		wantReplicaOf(t, m, promoted)
	})

	t.Run("MoveSlot", func(t *testing.T) {
		slot := redistest.Slot("{move}")
		from := c.MasterOf(t, slot)
		to := otherMaster(t, c, from)
		var args []any
		for i := range 100 {
			args = append(args, fmt.Sprint("{move}", i), fmt.Sprint("v", i))
		}
		from.Do(t, "MSET", args...)

		t.Logf("MoveSlot of 100 keys: %v", c.MoveSlot(t, slot, to))
		if got := c.MasterOf(t, slot); got != to {
			t.Fatalf("slot %d is on port %d, want %d", slot, got.Port, to.Port)
		}
		if n, _ := redis.Int(to.Do(t, "CLUSTER", "COUNTKEYSINSLOT", slot), nil); n != 100 {
			t.Fatalf("the target has %d keys in the slot, want 100", n)
		}
		if n, _ := redis.Int(from.Do(t, "CLUSTER", "COUNTKEYSINSLOT", slot), nil); n != 0 {
			t.Fatalf("the source has %d keys in the slot, want 0", n)
		}
		wantGet(t, to, "{move}42", "v42")
		wantError(t, cconn(t, from), fmt.Sprintf("MOVED %d %s", slot, to.Addr()), "GET", "{move}42")
		wantGet(t, c.ReplicaOf(t, to), "{move}42", "v42")
	})

	t.Run("Migration", func(t *testing.T) {
		slot := redistest.Slot("{window}")
		from := c.MasterOf(t, slot)
		to := otherMaster(t, c, from)
		from.Do(t, "MSET", "{window}a", "1", "{window}b", "2")

		m := c.BeginMoveSlot(t, slot, to)
		src, dst := cconn(t, from), cconn(t, to)
		ask := fmt.Sprintf("ASK %d %s", slot, to.Addr())
		moved := fmt.Sprintf("MOVED %d %s", slot, from.Addr())
		if got, err := redis.String(src.Do("GET", "{window}a")); err != nil || got != "1" {
			t.Fatalf("GET of a key not yet moved = %q, %v, want %q", got, err, "1")
		}
		wantError(t, src, ask, "GET", "{window}new") // a key that is nowhere

		m.MoveKeys(t, "{window}a")
		wantError(t, src, ask, "GET", "{window}a")
		wantError(t, src, "TRYAGAIN", "MGET", "{window}a", "{window}b")
		wantError(t, dst, moved, "GET", "{window}a") // without ASKING
		if _, err := dst.Do("ASKING"); err != nil {
			t.Fatal(err)
		}
		if got, err := redis.String(dst.Do("GET", "{window}a")); err != nil || got != "1" {
			t.Fatalf("ASKING, GET on the target = %q, %v, want %q", got, err, "1")
		}

		m.Finish(t)
		wantGet(t, to, "{window}a", "1")
		wantGet(t, to, "{window}b", "2")
		wantError(t, src, fmt.Sprintf("MOVED %d %s", slot, to.Addr()), "GET", "{window}b")
	})
}

// otherMaster returns a master of c other than m.
func otherMaster(t *testing.T, c *redistest.Cluster, m *redistest.Server) *redistest.Server {
	t.Helper()
	masters := c.Masters(t)
	i := slices.IndexFunc(masters, func(s *redistest.Server) bool { return s != m })
	if i < 0 {
		t.Fatal("no other master")
	}
	return masters[i]
}

// cconn connects to a node of the cluster of TestCluster.
func cconn(t *testing.T, s *redistest.Server) redis.Conn {
	t.Helper()
	return dialAuth(t, s.Addr(), "", clusterPassword)
}

// wantError fails the test unless the command fails on c with an error
// reply starting with prefix.
func wantError(t *testing.T, c redis.Conn, prefix, cmd string, args ...any) {
	t.Helper()
	reply, err := c.Do(cmd, args...)
	if err == nil || !strings.HasPrefix(err.Error(), prefix) {
		t.Fatalf("%s %v = %v, %v, want an error %q", cmd, args, reply, err, prefix)
	}
}

// wantGet fails the test unless key holds want on s; GET on a replica
// needs READONLY first.
func wantGet(t *testing.T, s *redistest.Server, key, want string) {
	t.Helper()
	c := cconn(t, s)
	if _, err := c.Do("READONLY"); err != nil {
		t.Fatal(err)
	}
	if got, err := redis.String(c.Do("GET", key)); err != nil || got != want {
		t.Fatalf("GET %s on port %d = %q, %v, want %q", key, s.Port, got, err, want)
	}
}

// wantReplicaOf fails the test unless ROLE on s says it replicates master
// with the link up.
func wantReplicaOf(t *testing.T, s, master *redistest.Server) {
	t.Helper()
	reply, err := redis.Values(s.Do(t, "ROLE"), nil)
	if err != nil || len(reply) < 4 {
		t.Fatalf("ROLE on port %d: %v, %v", s.Port, reply, err)
	}
	var r, host, state string
	var port int
	if _, err := redis.Scan(reply, &r, &host, &port, &state); err != nil {
		t.Fatal(err)
	}
	if r != "slave" || port != master.Port || state != "connected" {
		t.Fatalf("ROLE on port %d = %v, want a connected replica of %d", s.Port, reply, master.Port)
	}
}
