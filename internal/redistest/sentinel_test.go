package redistest_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/sessionkit/sessionkit/internal/redistest"
)

// TestSentinel runs one setup with every password option through two
// Sentinel failovers, a killed master and its return.
func TestSentinel(t *testing.T) {
	t.Parallel()
	start := time.Now()
	sn := redistest.StartSentinel(t, redistest.SentinelOptions{
		MasterName:         "sessions",
		Password:           "data-pw",
		Username:           "app",
		SentinelPassword:   "sentinel-pw",
		MinReplicasToWrite: 1,
	})
	t.Logf("start: %v", time.Since(start))

	if got := sn.MasterName(); got != "sessions" {
		t.Fatalf("MasterName = %q, want %q", got, "sessions")
	}
	first, second := sn.Master(t), sn.Replica(t)
	wantRole(t, first, "master")
	wantRole(t, second, "slave")

	// The ACL user works on the data nodes, the password on the Sentinels.
	c := dialAuth(t, first.Addr(), "app", "data-pw")
	if _, err := c.Do("SET", "k", "v"); err != nil {
		t.Fatalf("SET as the ACL user: %v", err)
	}
	for _, addr := range sn.SentinelAddrs() {
		c := dialAuth(t, addr, "", "sentinel-pw")
		got, err := redis.Strings(c.Do("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "sessions"))
		if err != nil || len(got) != 2 || got[1] != strconv.Itoa(first.Port) {
			t.Fatalf("Sentinel %s: master = %v, %v, want port %d", addr, got, err, first.Port)
		}
	}

	took := sn.Failover(t)
	t.Logf("SENTINEL FAILOVER: %v", took)
	if sn.Master(t) != second || sn.Replica(t) != first {
		t.Fatal("the roles did not swap")
	}
	wantRole(t, second, "master")
	wantRole(t, first, "slave")
	if got, _ := redis.String(second.Do(t, "GET", "k"), nil); got != "v" {
		t.Fatalf("GET k on the new master = %q, want %q", got, "v")
	}

	took = sn.Failover(t)
	t.Logf("SENTINEL FAILOVER back: %v", took)
	wantRole(t, first, "master")
	wantRole(t, second, "slave")

	killed, took := sn.KillMaster(t)
	t.Logf("kill -9 of the master until the Sentinels promoted the replica: %v", took)
	if killed != first || sn.Master(t) != second {
		t.Fatalf("KillMaster killed port %d, master is now %d; want %d killed, %d master",
			killed.Port, sn.Master(t).Port, first.Port, second.Port)
	}
	wantRole(t, second, "master")
	// With MinReplicasToWrite 1 the promoted master has no replica to write to.
	c = dialAuth(t, second.Addr(), "app", "data-pw")
	if _, err := c.Do("SET", "k", "v2"); err == nil || !strings.HasPrefix(err.Error(), "NOREPLICAS") {
		t.Fatalf("SET on a master without its replica: err = %v, want NOREPLICAS", err)
	}

	killed.Restart(t)
	t.Logf("the killed master restarted as %s", role(t, killed))
	took = sn.WaitReplica(t, killed)
	t.Logf("restarted master rejoined as replica after: %v", took)
	wantRole(t, killed, "slave")
	if sn.Replica(t) != killed {
		t.Fatal("Replica is not the restarted master")
	}
	second.Do(t, "SET", "k", "v3") // the replica is back, writes work
}

// TestSentinelDefaults starts a setup without options, stops one Sentinel
// and checks that the two others still fail over a killed master.
func TestSentinelDefaults(t *testing.T) {
	t.Parallel()
	sn := redistest.StartSentinel(t, redistest.SentinelOptions{})
	if got := sn.MasterName(); got != "mymaster" {
		t.Fatalf("MasterName = %q, want %q", got, "mymaster")
	}
	if n := len(sn.Sentinels()); n != 3 {
		t.Fatalf("%d Sentinels, want 3", n)
	}
	master := sn.Master(t)
	wantRole(t, master, "master")
	wantRole(t, sn.Replica(t), "slave")

	sn.Sentinels()[0].Stop(t)
	killed, took := sn.KillMaster(t)
	t.Logf("kill -9 of the master with 2 of 3 Sentinels: %v", took)
	if killed != master {
		t.Fatalf("KillMaster killed port %d, want the master %d", killed.Port, master.Port)
	}
	wantRole(t, sn.Master(t), "master")
}

// role returns the first element of the server's ROLE reply: "master",
// "slave" or "sentinel".
func role(t *testing.T, s *redistest.Server) string {
	t.Helper()
	reply, err := redis.Values(s.Do(t, "ROLE"), nil)
	if err != nil || len(reply) == 0 {
		t.Fatalf("ROLE on port %d: %v, %v", s.Port, reply, err)
	}
	r, _ := redis.String(reply[0], nil)
	return r
}

// wantRole fails the test unless the server's ROLE is want.
func wantRole(t *testing.T, s *redistest.Server, want string) {
	t.Helper()
	if got := role(t, s); got != want {
		t.Fatalf("ROLE on port %d = %s, want %s", s.Port, got, want)
	}
}

// dialAuth connects to addr, logging in as user (the default user if
// empty) with password; the connection is closed when the test ends.
func dialAuth(t *testing.T, addr, user, password string) redis.Conn {
	t.Helper()
	c, err := redis.Dial("tcp", addr,
		redis.DialUsername(user),
		redis.DialPassword(password),
		redis.DialConnectTimeout(time.Second),
		redis.DialReadTimeout(5*time.Second),
		redis.DialWriteTimeout(5*time.Second),
	)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
