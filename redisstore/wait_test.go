package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/internal/syncbuf"
	"github.com/sessionkit/sessionkit/redisstore"
)

// waitTimeout is the Timeout of the Stores in these tests; WAIT gets
// three quarters of what is left of it.
const waitTimeout = 500 * time.Millisecond

// startReplicated starts a master and a replica of it, and returns once
// the replica confirms the master's writes. The master starts the
// replica's first sync at once rather than after the default 5s wait for
// more replicas.
func startReplicated(t *testing.T) (master, replica *redistest.Server) {
	t.Helper()
	master = redistest.Start(t, "--repl-diskless-sync-delay", "0")
	replica = redistest.Start(t, "--replicaof", "127.0.0.1", strconv.Itoa(master.Port))
	caughtUp(t, master)
	return master, replica
}

// pollUntil calls done every 10ms until it reports true, and fails the
// test if that takes more than 10 seconds.
func pollUntil(t *testing.T, what string, done func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !done() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10s for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// connectedReplicas returns how many replicas the master counts.
func connectedReplicas(t *testing.T, master *redistest.Server) int {
	t.Helper()
	return int(infoInt(t, master, "replication", "connected_slaves"))
}

// caughtUp returns once the master's replica has confirmed every write
// made so far: a write and a WAIT for one replica on one connection, tried
// until the WAIT counts the replica. (A replica that has just synced, or
// just woken up, counts only from its next acknowledgement.)
func caughtUp(t *testing.T, master *redistest.Server) {
	t.Helper()
	c, err := redis.Dial("tcp", master.Addr(), redis.DialReadTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pollUntil(t, "the replica to confirm a write", func() bool {
		if _, err := c.Do("SET", "marker", time.Now().UnixNano()); err != nil {
			t.Fatal(err)
		}
		n, err := redis.Int(c.Do("WAIT", 1, 100))
		return err == nil && n == 1
	})
	if _, err := c.Do("DEL", "marker"); err != nil {
		t.Fatal(err)
	}
}

// hasKey reports whether key exists on srv.
func hasKey(t *testing.T, srv *redistest.Server, key string) bool {
	t.Helper()
	n, err := redis.Int(srv.Do(t, "EXISTS", key), nil)
	if err != nil {
		t.Fatal(err)
	}
	return n == 1
}

// endingCall is a Store call that ends sessions, with the state it needs
// and the keys it deletes and keeps.
type endingCall struct {
	name  string
	setup func(t *testing.T, s *redisstore.Store, srv *redistest.Server, id string)
	call  func(ctx context.Context, s *redisstore.Store, id string) error
	gone  func(id string) []string // keys the call deletes
	kept  func(id string) []string // keys that exist after it
}

// userSession returns a session id of the user "u-<id>" with an hour to
// live.
func userSession(id, sid string) redisstore.UserSession {
	return redisstore.UserSession{
		UserID: "u-" + id, ID: sid, Record: []byte("rec-" + sid), TTL: time.Hour,
		Deadline: time.Now().Add(time.Hour).Truncate(time.Millisecond),
	}
}

// endingCalls returns the calls that wait for replicas with WaitReplicas
// set (logout and revocation), each on keys of its own id.
func endingCalls() []endingCall {
	index := func(id string) string { return indexKey("u-" + id) }
	return []endingCall{
		{
			name: "Remove",
			setup: func(t *testing.T, _ *redisstore.Store, srv *redistest.Server, id string) {
				srv.Do(t, "SET", "session:"+id, "rec", "PX", 60000)
			},
			call: func(ctx context.Context, s *redisstore.Store, id string) error { return s.Remove(ctx, id) },
			gone: func(id string) []string { return []string{"session:" + id} },
			kept: func(string) []string { return nil },
		},
		{
			name: "RemoveUserSession",
			setup: func(t *testing.T, s *redisstore.Store, _ *redistest.Server, id string) {
				addAll(t, s, userSession(id, id))
			},
			call: func(ctx context.Context, s *redisstore.Store, id string) error {
				removed, err := s.RemoveUserSession(ctx, "u-"+id, id)
				if err == nil && !removed {
					return errors.New("removed = false, want true")
				}
				return err
			},
			gone: func(id string) []string { return []string{"session:" + id, index(id)} },
			kept: func(string) []string { return nil },
		},
		{
			name: "RemoveUserSessions",
			setup: func(t *testing.T, s *redisstore.Store, _ *redistest.Server, id string) {
				addAll(t, s, userSession(id, id+"-1"), userSession(id, id+"-2"))
			},
			call: func(ctx context.Context, s *redisstore.Store, id string) error {
				removed, err := s.RemoveUserSessions(ctx, "u-"+id, "")
				if err == nil && len(removed) != 2 {
					return fmt.Errorf("removed %d sessions, want 2", len(removed))
				}
				return err
			},
			gone: func(id string) []string { return []string{"session:" + id + "-1", "session:" + id + "-2", index(id)} },
			kept: func(string) []string { return nil },
		},
	}
}

// TestWaitReplicas checks that, with WaitReplicas, every call that ends
// sessions returns only once the replica has its writes, and fails with
// ErrUnavailable within the Timeout when the replica does not confirm them
// (paused, as a replica that lags; then stopped), having ended the sessions
// on the master all the same.
func TestWaitReplicas(t *testing.T) {
	master, replica := startReplicated(t)
	// The phases whose replica confirms get a Store with a Timeout ample
	// for a machine whose CPUs other test packages keep busy (a replica's
	// ACK then can take longer than waitTimeout); the phases that time out
	// keep waitTimeout, whose length they check, with a ReadTimeout far
	// beyond it, so that nothing but the Timeout and WAIT's own timeout
	// bounds a WAIT.
	patient := open(t, master, redisstore.Config{WaitReplicas: 1, Timeout: 5 * time.Second})
	strict := open(t, master, redisstore.Config{WaitReplicas: 1, Timeout: waitTimeout, ReadTimeout: 10 * time.Second})
	ctx := context.Background()

	run := func(phase string, confirmed bool) {
		t.Helper()
		s := strict
		if confirmed {
			s = patient
		}
		for _, c := range endingCalls() {
			t.Run(phase+"/"+c.name, func(t *testing.T) {
				id := strings.ReplaceAll(phase+"-"+c.name, " ", "-")
				c.setup(t, s, master, id)
				master.ResetStats(t)
				start := time.Now()
				err := c.call(ctx, s, id)
				elapsed := time.Since(start)
				if n := master.Calls(t)["wait"]; n != 1 {
					t.Errorf("%s sent WAIT %d times, want once", c.name, n)
				}
				servers := map[string]*redistest.Server{"master": master}
				if confirmed {
					if err != nil {
						t.Fatalf("%s = %v, want nil", c.name, err)
					}
					servers["replica"] = replica // checked right after the call, without waiting
				} else {
					if !errors.Is(err, redisstore.ErrUnavailable) {
						t.Fatalf("%s without the replica's confirmation = %v, want ErrUnavailable", c.name, err)
					}
					// At most the Timeout and 2s: WAIT gets the time the
					// Timeout leaves, so what comes beyond it is the scheduler
					// of a busy machine (which can add over 0.5s with the
					// CPUs loaded), while a WAIT the Timeout did not
					// bound would take its own timeout or the 10s
					// ReadTimeout.
					if elapsed > waitTimeout+2*time.Second || elapsed < waitTimeout/2 {
						t.Errorf("%s failed after %v, want after WAIT waited most of the %v Timeout, within it", c.name, elapsed, waitTimeout)
					}
					if strings.Contains(err.Error(), id) {
						t.Errorf("%s error %q contains a session id", c.name, err)
					}
				}
				for name, srv := range servers {
					for _, key := range c.gone(id) {
						if hasKey(t, srv, key) {
							t.Errorf("after %s: %s still has %s", c.name, name, key)
						}
					}
					for _, key := range c.kept(id) {
						if !hasKey(t, srv, key) {
							t.Errorf("after %s: %s lacks %s", c.name, name, key)
						}
					}
				}
			})
		}
	}

	run("replica up", true)

	replica.Pause(t)
	run("replica paused", false)
	replica.Resume(t)
	caughtUp(t, master)
	run("replica back", true)

	replica.Stop(t)
	pollUntil(t, "the master to notice the replica is gone", func() bool { return connectedReplicas(t, master) == 0 })
	run("replica stopped", false)
}

// TestWaitConfirmsAbsence plays a failover that the Store has not learned
// of yet: the replica is promoted (REPLICAOF NO ONE) while the Store still
// talks to the old master. A logout there fails unconfirmed, its session
// gone from the old master only. A Load of that session must not then
// answer "no session": the client, which sends a failed logout again or
// checks before telling its user anything, would tell them they are
// signed out while the new master holds the session. It fails with
// ErrUnavailable too, with the near-cache as without; so do "log out
// everywhere" sent again and VouchUser, for a listing. With the
// replica in step, a missing session is not found, without error, after
// one WAIT.
func TestWaitConfirmsAbsence(t *testing.T) {
	ctx := context.Background()
	for _, near := range []bool{false, true} {
		t.Run(fmt.Sprintf("near-cache %v", near), func(t *testing.T) {
			master, replica := startReplicated(t)
			cfg := redisstore.Config{WaitReplicas: 1, Timeout: 5 * time.Second}
			if near {
				cfg.NearCache = redisstore.NearCache{MaxEntries: 100}
			}
			patient := open(t, master, cfg)
			cfg.Timeout, cfg.ReadTimeout = waitTimeout, 10*time.Second
			strict := open(t, master, cfg)

			master.ResetStats(t)
			if _, found, err := patient.Load(ctx, "never-made", time.Minute); found || err != nil {
				t.Fatalf("Load of a missing session, the replica in step = found %v, %v; want not found, nil", found, err)
			}
			if n := master.Calls(t)["wait"]; n != 1 {
				t.Errorf("Load of a missing session sent WAIT %d times, want once", n)
			}
			if _, err := patient.Insert(ctx, "s1", []byte("rec"), time.Minute); err != nil {
				t.Fatal(err)
			}
			addAll(t, patient, userSession("absent", "a1"), userSession("absent", "a2"))
			if _, _, err := strict.Load(ctx, "s1", time.Minute); err != nil { // in the near-cache, if any
				t.Fatal(err)
			}
			caughtUp(t, master)

			replica.Do(t, "REPLICAOF", "NO", "ONE")
			pollUntil(t, "the old master to lose its replica", func() bool { return connectedReplicas(t, master) == 0 })
			if err := strict.Remove(ctx, "s1"); !errors.Is(err, redisstore.ErrUnavailable) {
				t.Fatalf("Remove on the replaced master = %v, want ErrUnavailable", err)
			}
			for _, ttl := range []time.Duration{0, time.Minute} {
				if _, found, err := strict.Load(ctx, "s1", ttl); !errors.Is(err, redisstore.ErrUnavailable) {
					t.Errorf("Load (ttl %v) on the replaced master of a session whose logout failed = found %v, %v; want ErrUnavailable", ttl, found, err)
				}
			}
			// "Log out everywhere", sent again, and the listing a
			// revocation reads first.
			for try := range 2 {
				if removed, err := strict.RemoveUserSessions(ctx, "u-absent", ""); !errors.Is(err, redisstore.ErrUnavailable) {
					t.Errorf("RemoveUserSessions (try %d) on the replaced master = %d removed, %v; want ErrUnavailable", try+1, len(removed), err)
				}
			}
			if err := strict.VouchUser(ctx, "u-absent"); !errors.Is(err, redisstore.ErrUnavailable) {
				t.Errorf("VouchUser, for a listing, on the replaced master = %v; want ErrUnavailable", err)
			}
			for _, key := range []string{"session:s1", "session:a1", "session:a2"} {
				if !hasKey(t, replica, key) {
					t.Errorf("the promoted replica lacks %s: the failover this test plays did not happen", key)
				}
			}
		})
	}
}

// dialEach is a Source that dials a new connection for every call, as a
// pool does when it has none idle.
type dialEach struct{ addr string }

func (d dialEach) GetContext(ctx context.Context) (redis.Conn, error) {
	return redis.DialContext(ctx, "tcp", d.addr)
}

// TestWaitAbsenceOnNewConnection reads a missing session while the
// replica is paused and lacks a write, through a Store whose every call
// gets a new connection: the read is not vouched for (ErrUnavailable).
// Redis counts for WAIT the writes up to the connection's latest command,
// and a WAIT that is a new connection's first command would count the
// paused replica as in step.
func TestWaitAbsenceOnNewConnection(t *testing.T) {
	master, replica := startReplicated(t)
	replica.Pause(t)
	defer replica.Resume(t)
	master.Do(t, "SET", "unconfirmed", "1")
	s, err := redisstore.New(dialEach{master.Addr()}, redisstore.Config{WaitReplicas: 1, Timeout: waitTimeout, ReadTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, found, err := s.Load(context.Background(), "never-made", 0); !errors.Is(err, redisstore.ErrUnavailable) {
		t.Errorf("Load of a missing session, the replica paused and behind = found %v, %v; want ErrUnavailable", found, err)
	}
}

// TestWaitNoPlaceDescribed fills the one place that a Store of MaxActive
// 8 has for reads that wait for replicas, with a read of a missing session
// on a server without its replica: a second such read fails without
// sending WAIT, and Describe says why, not that a replica failed it. A
// listing's VouchUser still waits, in places of its own.
func TestWaitNoPlaceDescribed(t *testing.T) {
	srv := redistest.Start(t)
	cfg := redisstore.Config{WaitReplicas: 1, MaxActive: 8, Timeout: time.Second}
	s := open(t, srv, cfg)
	ctx := context.Background()
	held := make(chan error, 1)
	go func() {
		_, _, err := s.Load(ctx, "first", 0)
		held <- err
	}()
	pollUntil(t, "the first read to wait", func() bool { return infoInt(t, srv, "clients", "blocked_clients") == 1 })
	srv.ResetStats(t)
	_, _, err := s.Load(ctx, "second", 0)
	if !errors.Is(err, redisstore.ErrUnavailable) || !strings.Contains(redisstore.Describe(err, cfg), "too many requests with ended or expired sessions were waiting") {
		t.Errorf("a read with no place to wait = %v (%q), want ErrUnavailable described as too many reads waiting", err, redisstore.Describe(err, cfg))
	}
	if n := srv.Calls(t)["wait"]; n != 0 {
		t.Errorf("a read with no place to wait sent WAIT %d times, want none", n)
	}
	// A listing's VouchUser waits in the places of the calls that end
	// sessions, which no flood of ended tokens takes.
	srv.ResetStats(t)
	if err := s.VouchUser(ctx, "u"); !errors.Is(err, redisstore.ErrUnavailable) || strings.Contains(redisstore.Describe(err, cfg), "too many") {
		t.Errorf("VouchUser while the reads' place is taken = %v (%q), want ErrUnavailable from its own WAIT", err, redisstore.Describe(err, cfg))
	}
	if n := srv.Calls(t)["wait"]; n != 1 {
		t.Errorf("VouchUser sent WAIT %d times, want once", n)
	}
	if err := <-held; !errors.Is(err, redisstore.ErrUnavailable) {
		t.Errorf("the read that held the place = %v, want ErrUnavailable (no replica)", err)
	}
}

// TestWaitLeavesPoolFree pauses the replica and sends a burst of logouts
// (Remove, RemoveUserSession, RemoveUserSessions) that each wait for it
// until their Timeout, and as many reads of ended sessions, which wait for
// it too: at most a quarter of MaxActive of the logouts, and an eighth of
// the reads, hold a connection at once, so reads of live sessions, logins
// and Ping, which wait for no replica, are served meanwhile; the logouts
// fail with ErrUnavailable, their sessions ended on the master, and so do
// the reads. The waiting logouts must not hold every pooled connection,
// which would fail every other call as well.
//
// The same with New on a pool of the caller's, whose MaxActive New reads.
func TestWaitLeavesPoolFree(t *testing.T) {
	const maxActive = 8
	t.Run("Open", func(t *testing.T) {
		master, replica := startReplicated(t)
		s := open(t, master, redisstore.Config{WaitReplicas: 1, MaxActive: maxActive, Timeout: 2 * time.Second, ReadTimeout: 10 * time.Second})
		waitLeavesPoolFree(t, master, replica, s, maxActive)
	})
	t.Run("New", func(t *testing.T) {
		master, replica := startReplicated(t)
		pool := &redis.Pool{MaxActive: maxActive, Wait: true, Dial: func() (redis.Conn, error) { return redis.Dial("tcp", master.Addr()) }}
		s, err := redisstore.New(pool, redisstore.Config{WaitReplicas: 1, Timeout: 2 * time.Second}) // MaxActive left at its default, 64
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		waitLeavesPoolFree(t, master, replica, s, maxActive)
	})
}

// waitLeavesPoolFree is TestWaitLeavesPoolFree on s, a Store with
// WaitReplicas 1 on master, whose pool holds maxActive connections.
func waitLeavesPoolFree(t *testing.T, master, replica *redistest.Server, s *redisstore.Store, maxActive int) {
	ctx := context.Background()
	calls := endingCalls()
	burst := 4 * maxActive
	for i := range burst {
		calls[i%len(calls)].setup(t, s, master, fmt.Sprintf("burst%d", i))
	}
	if _, err := s.Insert(ctx, "reader", []byte("r"), time.Hour); err != nil {
		t.Fatal(err)
	}
	caughtUp(t, master)
	replica.Pause(t)
	defer replica.Resume(t)
	master.Do(t, "SET", "unconfirmed", "1") // a write the paused replica lacks

	var wg sync.WaitGroup
	errs := make(chan error, 2*burst)
	for i := range burst {
		wg.Go(func() {
			errs <- calls[i%len(calls)].call(ctx, s, fmt.Sprintf("burst%d", i))
		})
		// A request with an ended token, whose read finds no record and
		// waits for the replica too (see confirmAbsent).
		wg.Go(func() {
			_, _, err := s.Load(ctx, fmt.Sprintf("ended%d", i), time.Minute)
			errs <- err
		})
	}
	time.Sleep(100 * time.Millisecond) // the burst is waiting on the replica
	// Each logout holds its connection for its WAIT, three quarters of the
	// 2s Timeout; the calls that wait for no replica must get one within
	// half a second (a readiness probe's budget) all the while.
	deadline := time.Now().Add(1200 * time.Millisecond)
	for n := 0; time.Now().Before(deadline); n++ {
		served, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		if _, ok, err := s.Load(served, "reader", 0); err != nil || !ok {
			t.Fatalf("read %d while logouts wait for a paused replica = %v, %v; want the record", n, ok, err)
		}
		if _, err := s.Insert(served, fmt.Sprintf("login%d", n), []byte("l"), time.Hour); err != nil {
			t.Fatalf("login %d while logouts wait for a paused replica = %v", n, err)
		}
		if err := s.Ping(served); err != nil {
			t.Fatalf("Ping while logouts wait for a paused replica = %v", err)
		}
		cancel()
		time.Sleep(10 * time.Millisecond)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, redisstore.ErrUnavailable) {
			t.Errorf("a logout, or a read finding no record, that the paused replica did not confirm = %v, want ErrUnavailable", err)
		}
	}
	for i := range burst {
		for _, key := range calls[i%len(calls)].gone(fmt.Sprintf("burst%d", i)) {
			if hasKey(t, master, key) {
				t.Errorf("after the burst the master still has %s", key)
			}
		}
	}
}

// TestWaitClusterMastersApart pauses the replica of one master of a
// Cluster and keeps 20 logouts of that master's sessions waiting for it:
// the logouts on another master, whose replica is up, succeed all the
// same. Each master has a pool of its own, and no bound shared by the
// masters lets the stalled one take the others' places.
func TestWaitClusterMastersApart(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterOptions{NodeTimeout: 5 * time.Second})
	s := openCluster(t, c, redisstore.Config{WaitReplicas: 1, Timeout: time.Second})
	ctx := context.Background()
	masters := c.Masters(t)
	a, b := masters[0], masters[1]
	var onA, onB []string
	for i := 0; len(onA) < 200 || len(onB) < 8; i++ {
		id := fmt.Sprintf("id%d", i)
		switch c.MasterOf(t, redistest.Slot("session:"+id)) {
		case a:
			if len(onA) < 200 {
				onA = append(onA, id)
			}
		case b:
			if len(onB) < 8 {
				onB = append(onB, id)
			}
		}
	}
	for _, id := range slices.Concat(onA, onB) {
		if _, err := s.Insert(ctx, id, []byte("r"), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	replicaOfA := c.ReplicaOf(t, a)
	replicaOfA.Pause(t)
	defer replicaOfA.Resume(t)

	ids := make(chan string, len(onA))
	for _, id := range onA {
		ids <- id
	}
	close(ids)
	stop := time.Now().Add(3 * time.Second)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			for id := range ids {
				if time.Now().After(stop) {
					return
				}
				s.Remove(ctx, id) // ErrUnavailable: a's replica does not confirm
			}
		})
	}
	time.Sleep(50 * time.Millisecond) // a's logouts are waiting
	for _, id := range onB {
		if err := s.Remove(ctx, id); err != nil {
			t.Errorf("logout on the master whose replica is up, while another master's replica is paused = %v, want nil", err)
		}
	}
	wg.Wait()
}

// TestWaitReplicasZero checks that without WaitReplicas nothing sends WAIT:
// the calls that end sessions succeed on a server without replicas.
func TestWaitReplicasZero(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv, redisstore.Config{Timeout: waitTimeout})
	ctx := context.Background()
	for _, c := range endingCalls() {
		t.Run(c.name, func(t *testing.T) {
			id := strings.ReplaceAll(c.name, " ", "-")
			c.setup(t, s, srv, id)
			srv.ResetStats(t)
			if err := c.call(ctx, s, id); err != nil {
				t.Fatalf("%s = %v, want nil", c.name, err)
			}
			if n := srv.Calls(t)["wait"]; n != 0 {
				t.Errorf("%s without WaitReplicas sent WAIT %d times, want never", c.name, n)
			}
			for _, key := range c.gone(id) {
				if hasKey(t, srv, key) {
					t.Errorf("after %s: %s still exists", c.name, key)
				}
			}
			for _, key := range c.kept(id) {
				if !hasKey(t, srv, key) {
					t.Errorf("after %s: %s is missing", c.name, key)
				}
			}
		})
	}
}

// TestWaitOnlyWhenEnding checks that, with WaitReplicas, the calls that end
// no session never send WAIT: on a server without replicas, where any WAIT
// fails, they succeed, and the server counts no WAIT. Remove, which waits,
// fails there, as the control, and so do the reads that say sessions are
// not there (a Load that finds none, VouchUser for a listing) and the
// calls that end sessions but find none to end. (How long the calls took tells nothing
// more: a wait is a WAIT, and it fails here; on a busy machine the time
// mostly measures the scheduler.) The Timeout is ample, so that a call
// slowed down by other tests' load does not fail for that.
func TestWaitOnlyWhenEnding(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv, redisstore.Config{WaitReplicas: 1, Timeout: 2 * time.Second})
	ctx := context.Background()
	deadline := func() time.Time { return time.Now().Add(time.Hour).Truncate(time.Millisecond) }
	add := func(id string, limit int) redisstore.UserSession {
		a := userSession("quiet", id)
		a.Limit = limit
		return a
	}
	tests := []struct {
		name string
		call func() error
	}{
		{"Insert", func() error {
			ok, err := s.Insert(ctx, "r1", []byte("v"), time.Minute)
			if err == nil && !ok {
				return errors.New("not written")
			}
			return err
		}},
		{"Load", func() error { _, _, err := s.Load(ctx, "r1", 0); return err }},
		{"Load extending", func() error { _, _, err := s.Load(ctx, "r1", time.Minute); return err }},
		{"Update", func() error {
			ok, err := s.Update(ctx, "r1", []byte("v2"), time.Minute)
			if err == nil && !ok {
				return errors.New("not written")
			}
			return err
		}},
		{"Merge", func() error {
			ok, err := s.Merge(ctx, "r1", time.Minute, func(b []byte) ([]byte, error) { return append(b, '!'), nil })
			if err == nil && !ok {
				return errors.New("not written")
			}
			return err
		}},
		{"AddUserSession", func() error { _, err := s.AddUserSession(ctx, add("q1", 0)); return err }},
		{"AddUserSession under the limit", func() error {
			revoked, err := s.AddUserSession(ctx, add("q2", 5))
			if err == nil && len(revoked) != 0 {
				return fmt.Errorf("revoked %q", revoked)
			}
			return err
		}},
		{"MoveSession of a missing session", func() error {
			moved, err := s.MoveSession(ctx, redisstore.Move{
				UserID: "u-quiet", From: "missing", To: "missing-2", TTL: time.Minute, Deadline: deadline(),
				Merge: func(b []byte) ([]byte, error) { return b, nil },
			})
			if err == nil && moved {
				return errors.New("moved a missing session")
			}
			return err
		}},
		{"UserSessions", func() error {
			ids, _, err := s.UserSessions(ctx, "u-quiet")
			if err == nil && len(ids) != 2 {
				return fmt.Errorf("%d sessions, want 2", len(ids))
			}
			return err
		}},
		{"Iterate", func() error { return s.Iterate(ctx, func(string, []byte) error { return nil }) }},
		// Logins and renewals do not wait, even when they end a session
		// (an anonymous one, or one a renewal replaces): they have handed
		// out a new token by the time WAIT would answer. A login that ends
		// the user's own signed-in session waits: see below.
		{"MoveSession", func() error {
			moved, err := s.MoveSession(ctx, redisstore.Move{
				UserID: "u-quiet", From: "q1", To: "q1-to", TTL: time.Minute, Deadline: deadline(),
				Merge: func(b []byte) ([]byte, error) { return b, nil },
			})
			if err == nil && !moved {
				return errors.New("not moved")
			}
			return err
		}},
		{"AddUserSession replacing an anonymous session", func() error {
			if _, err := s.Insert(ctx, "anon-q", []byte("cart"), time.Minute); err != nil {
				return err
			}
			a := add("q3", 0)
			a.Replaces = "anon-q"
			ended, err := s.AddUserSession(ctx, a)
			if err == nil && !slices.Equal(ended, []string{"anon-q"}) {
				return fmt.Errorf("ended %q, want the anonymous session", ended)
			}
			return err
		}},
		{"AddUserSession over the limit", func() error {
			revoked, err := s.AddUserSession(ctx, add("q4", 1))
			if err == nil && len(revoked) == 0 {
				return errors.New("revoked none")
			}
			return err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv.ResetStats(t)
			err := tc.call()
			calls := srv.Calls(t)
			if err != nil {
				t.Fatalf("%s = %v, want nil", tc.name, err)
			}
			if n := calls["wait"]; n != 0 {
				t.Errorf("%s sent WAIT %d times, want never", tc.name, n)
			}
		})
	}

	// Ping checks that the ACL allows WAIT with WAIT 0 0, which waits for
	// no replica, and counts the replicas in step with a short WAIT for
	// them (see TestPingFewReplicas): it succeeds without one.
	srv.ResetStats(t)
	if err := s.Ping(ctx); err != nil {
		t.Errorf("Ping without replicas, WaitReplicas 1 = %v, want nil", err)
	}
	if n := srv.Calls(t)["wait"]; n != 2 {
		t.Errorf("Ping sent WAIT %d times, want twice (WAIT 0 0, its permission check, and the count of replicas)", n)
	}

	// The reads that say sessions are not there, and the calls that end
	// sessions but find none to end, wait as removals do (see
	// TestWaitConfirmsAbsence): without a replica, they fail.
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"Load of a missing session", func() error { _, _, err := s.Load(ctx, "never-made", time.Minute); return err }},
		{"VouchUser", func() error { return s.VouchUser(ctx, "u-quiet") }},
		{"RemoveUserSessions of a user without any", func() error { _, err := s.RemoveUserSessions(ctx, "u-nobody", ""); return err }},
		{"RemoveUserSessions keeping the only one", func() error {
			if _, err := s.AddUserSession(ctx, userSession("solo", "s1")); err != nil {
				return err
			}
			_, err := s.RemoveUserSessions(ctx, "u-solo", "s1")
			return err
		}},
	} {
		srv.ResetStats(t)
		if err := tc.call(); !errors.Is(err, redisstore.ErrUnavailable) {
			t.Errorf("%s without replicas, WaitReplicas 1 = %v, want ErrUnavailable", tc.name, err)
		}
		if n := srv.Calls(t)["wait"]; n != 1 {
			t.Errorf("%s sent WAIT %d times, want once", tc.name, n)
		}
	}

	// The control: Remove waits, and no replica confirms.
	srv.ResetStats(t)
	if err := s.Remove(ctx, "r1"); !errors.Is(err, redisstore.ErrUnavailable) {
		t.Errorf("Remove without replicas, WaitReplicas 1 = %v, want ErrUnavailable", err)
	}
	if n := srv.Calls(t)["wait"]; n != 1 {
		t.Errorf("Remove sent WAIT %d times, want once", n)
	}
	if hasKey(t, srv, "session:r1") {
		t.Error("Remove that failed on WAIT left the record on the master")
	}

	// A login that replaces the user's signed-in session (a re-login on
	// the same browser) ends it as a logout does, and waits too, with a
	// limit or without.
	for _, limit := range []int{0, 5} {
		if _, err := s.AddUserSession(ctx, add(fmt.Sprintf("base-%d", limit), 0)); err != nil {
			t.Fatal(err)
		}
		srv.ResetStats(t)
		a := add(fmt.Sprintf("re-%d", limit), limit)
		a.Replaces = fmt.Sprintf("base-%d", limit)
		ended, err := s.AddUserSession(ctx, a)
		if !errors.Is(err, redisstore.ErrUnavailable) || !slices.Equal(ended, []string{a.Replaces}) {
			t.Errorf("limit %d: re-login without replicas, WaitReplicas 1 = %q, %v; want the replaced session ended and ErrUnavailable", limit, ended, err)
		}
		if n := srv.Calls(t)["wait"]; n != 1 {
			t.Errorf("limit %d: re-login sent WAIT %d times, want once", limit, n)
		}
	}
}

// TestWaitReplicasFromEnv checks that REDIS_WAIT_REPLICAS reaches the
// Store that Open builds from FromEnv.
func TestWaitReplicasFromEnv(t *testing.T) {
	srv := redistest.Start(t)
	for _, name := range []string{"REDIS_HOST", "REDIS_PORT", "REDIS_SENTINELS", "REDIS_SENTINEL_MASTER",
		"REDIS_SENTINEL_USERNAME", "REDIS_SENTINEL_PASSWORD", "REDIS_CLUSTER_NODES", "REDIS_USERNAME",
		"REDIS_PASSWORD", "REDIS_DB", "REDIS_TLS"} {
		t.Setenv(name, "")
	}
	t.Setenv("REDIS_URL", "redis://"+srv.Addr())
	for _, tc := range []struct {
		value string
		waits int64
	}{{"", 0}, {"0", 0}, {"1", 1}} {
		t.Run("REDIS_WAIT_REPLICAS="+tc.value, func(t *testing.T) {
			t.Setenv("REDIS_WAIT_REPLICAS", tc.value)
			cfg, err := redisstore.FromEnv()
			if err != nil {
				t.Fatal(err)
			}
			cfg.Timeout = waitTimeout
			s, err := redisstore.Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			srv.Do(t, "SET", "session:e", "rec")
			srv.ResetStats(t)
			err = s.Remove(context.Background(), "e")
			if n := srv.Calls(t)["wait"]; n != tc.waits {
				t.Errorf("Remove sent WAIT %d times, want %d", n, tc.waits)
			}
			if wantErr := tc.waits > 0; wantErr != errors.Is(err, redisstore.ErrUnavailable) {
				t.Errorf("Remove on a server without replicas = %v, want ErrUnavailable: %v", err, wantErr)
			}
		})
	}
}

// TestWaitTooManyDescribed checks what a Store with more WaitReplicas than
// the master has replicas (here: none of 2) reports for a logout: how many
// replicas confirmed of how many it waited for, and a Describe that names
// the setting and the likely causes.
func TestWaitTooManyDescribed(t *testing.T) {
	srv := redistest.Start(t)
	// A Timeout that leaves WAIT's late answer room: Redis answers a WAIT
	// that timed out at its next cron tick, up to 100 ms late, which with
	// a Timeout of 200 ms could fall after the read deadline under load.
	cfg := redisstore.Config{Addr: srv.Addr(), WaitReplicas: 2, Timeout: time.Second}
	s := open(t, srv, cfg)
	ctx := context.Background()
	if _, err := s.Insert(ctx, "id", []byte("record"), time.Minute); err != nil {
		t.Fatal(err)
	}
	err := s.Remove(ctx, "id")
	if !errors.Is(err, redisstore.ErrUnavailable) || !strings.Contains(err.Error(), "0 of 2") {
		t.Fatalf("Remove with no replica of 2 = %v, want ErrUnavailable saying 0 of 2 confirmed", err)
	}
	d := redisstore.Describe(err, cfg)
	for _, want := range []string{"REDIS_WAIT_REPLICAS", "fewer replicas than that", "connected_slaves"} {
		if !strings.Contains(d, want) {
			t.Errorf("Describe = %q, want it to name %q", d, want)
		}
	}
}

// TestPingFewReplicas: with WaitReplicas, Ping warns, once an hour, when
// the master has fewer replicas in step than that (every logout would
// fail, and Ping still passes), and says nothing when it has them, also
// right after a write on the connection Ping gets, which the replicas
// have not acknowledged yet in their once-a-second report.
func TestPingFewReplicas(t *testing.T) {
	ctx := context.Background()
	const warning = "redisstore: fewer replicas than WaitReplicas acknowledged the master's writes"
	for _, tc := range []struct {
		name     string
		replicas int // started beside the master
		want     bool
	}{
		{"no replica", 0, true},
		{"replica in step", 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			master := redistest.Start(t)
			if tc.replicas > 0 {
				master, _ = startReplicated(t)
			}
			logs := new(syncbuf.Buffer)
			s := open(t, master, redisstore.Config{WaitReplicas: 1, MaxActive: 1, Logger: slog.New(slog.NewTextHandler(logs, nil))})
			for i := range 3 {
				// A write on the pool's one connection first.
				if _, err := s.Insert(ctx, strconv.Itoa(i), []byte("rec"), time.Minute); err != nil {
					t.Fatal(err)
				}
				if err := s.Ping(ctx); err != nil {
					t.Fatalf("Ping = %v, want nil: too few replicas is a warning", err)
				}
			}
			if got := strings.Count(logs.String(), warning); got != map[bool]int{true: 1, false: 0}[tc.want] {
				t.Errorf("%d warnings in %q, want one if and only if the master lacks replicas (%v)", got, logs.String(), tc.want)
			}
			if tc.want && !strings.Contains(logs.String(), "replicas=0 wait_replicas=1 waited_ms=100") {
				t.Errorf("warning %q does not name the replicas in step and WaitReplicas", logs.String())
			}
		})
	}
}

// TestPingFewReplicasCluster: on a Cluster, each Ping waits for the
// replicas of one master, in turn, not of all of them one after another,
// which would take the readiness probe past its 500 ms on a Cluster of
// several masters without replicas: over as many Pings as masters, each
// master gets that WAIT once, beside the WAIT 0 0 of the permission check
// that every Ping sends it.
func TestPingFewReplicasCluster(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterOptions{ReplicasPerMaster: -1})
	logs := new(syncbuf.Buffer)
	s := openCluster(t, c, redisstore.Config{WaitReplicas: 1, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	ctx := context.Background()
	if err := s.Ping(ctx); err != nil { // the slot map, and each master's pool
		t.Fatal(err)
	}
	masters := c.Nodes()
	for _, n := range masters {
		n.ResetStats(t)
	}
	for range masters {
		if err := s.Ping(ctx); err != nil {
			t.Fatalf("Ping = %v, want nil", err)
		}
	}
	for i, n := range masters {
		if got, want := n.Calls(t)["wait"], int64(len(masters)+1); got != want {
			t.Errorf("master %d got WAIT %d times over %d Pings, want %d: each Ping's permission check, and one wait for its replicas", i, got, len(masters), want)
		}
	}
	if !strings.Contains(logs.String(), "fewer replicas than WaitReplicas acknowledged") {
		t.Errorf("log %q lacks the warning of masters without replicas", logs.String())
	}
}
