package redisstore

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/sessionkit/sessionkit/internal/redistest"
)

// dbsize returns the number of keys on srv.
func dbsize(t *testing.T, srv *redistest.Server) int {
	t.Helper()
	n, err := redis.Int(srv.Do(t, "DBSIZE"), nil)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestSentinelOutvoted checks that a sentinel that names a master the
// other sentinels do not, a server that answers ROLE as a master, is
// outvoted: one of another setup (a REDIS_SENTINELS list mixing two
// deployments), or one behind the others, as after it was down during a
// failover while the old master came back, empty and a master still. The
// first answer alone would send every call there, its writes to be lost
// and its reads to find nothing. With as many sentinels naming each, the
// Store follows neither, and says why.
func TestSentinelOutvoted(t *testing.T) {
	t.Parallel()
	sn := startSentinel(t)
	master := sn.Master(t)
	other := redistest.Start(t, "--requirepass", sntMasterPassword) // a master of another setup

	t.Run("first in the list", func(t *testing.T) {
		f := startFakeSentinel(t, other.Addr())
		cfg := sentinelConfig(sn)
		cfg.SentinelAddrs = append([]string{f.addr()}, cfg.SentinelAddrs...)
		s := openSentinel(t, cfg)
		for i := range 20 {
			if _, err := s.Insert(context.Background(), fmt.Sprintf("first%d", i), []byte("record"), time.Minute); err != nil {
				t.Fatalf("Insert: %v", err)
			}
		}
		if addr := sentinelMaster(s); addr != master.Addr() {
			t.Errorf("the Store's master is %s, want %s", addr, master.Addr())
		}
		if n := dbsize(t, other); n != 0 {
			t.Errorf("%d keys written to the master the outvoted sentinel named", n)
		}
	})

	t.Run("turns wrong while the Store works", func(t *testing.T) {
		f := startFakeSentinel(t, master.Addr())
		cfg := sentinelConfig(sn)
		cfg.SentinelAddrs = append([]string{f.addr()}, cfg.SentinelAddrs...)
		s := openSentinel(t, cfg)
		if err := s.Ping(context.Background()); err != nil {
			t.Fatal(err)
		}
		// The fake sentinel answered first at Open, so it is asked first.
		f.name(other.Addr())
		lookupAsking(t, s, f)
		for i := range 20 {
			if _, err := s.Insert(context.Background(), fmt.Sprintf("turned%d", i), []byte("record"), time.Minute); err != nil {
				t.Fatalf("Insert: %v", err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if addr := sentinelMaster(s); addr != master.Addr() {
			t.Errorf("the Store's master is %s, want %s", addr, master.Addr())
		}
		if n := dbsize(t, other); n != 0 {
			t.Errorf("%d keys written to the master the outvoted sentinel named", n)
		}
	})

	t.Run("as many each", func(t *testing.T) {
		wrong, right := startFakeSentinel(t, other.Addr()), startFakeSentinel(t, master.Addr())
		cfg := sentinelConfig(sn)
		cfg.SentinelAddrs = []string{wrong.addr(), right.addr()}
		cfg.Timeout = 500 * time.Millisecond
		s := openSentinel(t, cfg)
		err := s.Ping(context.Background())
		if err == nil {
			t.Fatal("Ping succeeded with the sentinels naming two masters")
		}
		noSecrets(t, "Ping", err)
		if strings.Contains(err.Error(), errNoMaster.Error()) {
			t.Errorf("error %q says that no sentinel named a master, where two did", err)
		}
		for _, want := range []string{"disagree", wrong.addr(), other.Addr(), right.addr(), master.Addr()} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not name %s", err, want)
			}
		}
		d := Describe(err, cfg)
		t.Logf("error: %v\nDescribe: %s", err, d)
		if !strings.Contains(d, "disagree") || !strings.Contains(d, "REDIS_SENTINELS") {
			t.Errorf("Describe = %q, want it to say that the sentinels disagree, and name REDIS_SENTINELS", d)
		}
		if ps := s.PoolStats(); !ps.SentinelsDown {
			t.Error("PoolStats.SentinelsDown is false while the sentinels disagree")
		}
		if n := dbsize(t, other); n != 0 {
			t.Errorf("%d keys written to the master one sentinel named", n)
		}
		// Once the wrong one names the master too, the Store finds it.
		wrong.name(master.Addr())
		deadline := time.Now().Add(3 * time.Second)
		for s.Ping(context.Background()) != nil {
			if time.Now().After(deadline) {
				t.Fatal("no Ping succeeded within 3s of the sentinels agreeing")
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

// TestSentinelStaleSentinel plays a stale sentinel's case on real
// servers: a sentinel is down while the master is killed and a replica
// promoted; the old master restarts, empty (no persistence) and a master
// until the sentinels demote it, and the sentinel restarts, naming it. A
// Store opened then, with that sentinel first in its list, must neither
// lose a session it reads (not found would sign its user out) nor a login
// it acknowledges.
func TestSentinelStaleSentinel(t *testing.T) {
	t.Parallel()
	sn := startSentinel(t)
	ctx := context.Background()
	a := openSentinel(t, sentinelConfig(sn))
	var before []string
	for i := range 50 {
		id := fmt.Sprintf("before%d", i)
		if _, err := a.Insert(ctx, id, []byte("record"), time.Hour); err != nil {
			t.Fatal(err)
		}
		before = append(before, id)
	}
	if took := sn.WaitReplica(t, sn.Replica(t)); took > 0 {
		t.Logf("replica caught up in %v", took)
	}
	s0 := sn.Sentinels()[0]
	s0.Stop(t)
	killed, took := sn.KillMaster(t)
	t.Logf("failover took %v", took)
	killed.Restart(t)
	s0.Restart(t)
	restarted := time.Now()

	b := openSentinel(t, sentinelConfig(sn)) // the stale sentinel first
	var acked []string
	notFound := 0
	for i := 0; time.Since(restarted) < 4*time.Second; i++ {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		id := fmt.Sprintf("after%d", i)
		if _, err := b.Insert(cctx, id, []byte("record"), time.Hour); err == nil {
			acked = append(acked, id)
		}
		if _, found, err := b.Load(cctx, before[i%len(before)], 0); err == nil && !found {
			notFound++
		}
		cancel()
		time.Sleep(5 * time.Millisecond)
	}
	sn.WaitReplica(t, killed)
	c := openSentinel(t, sentinelConfig(sn))
	lost := 0
	for _, id := range acked {
		if _, found, err := c.Load(ctx, id, 0); err == nil && !found {
			lost++
		}
	}
	t.Logf("%d logins acknowledged, %d lost; %d reads of live sessions found nothing", len(acked), lost, notFound)
	if len(acked) == 0 {
		t.Fatal("no login was acknowledged in 4s")
	}
	if lost > 0 || notFound > 0 {
		t.Errorf("%d acknowledged logins lost and %d live sessions not found: the Store served from the restarted old master", lost, notFound)
	}
}

// TestSentinelStalledDescribed checks that Describe tells sentinels that
// do not answer (stalled, or behind a firewall that drops the traffic)
// from sentinels that answer but name no master of that name.
func TestSentinelStalledDescribed(t *testing.T) {
	t.Parallel()
	sn := startSentinel(t)
	for _, snt := range sn.Sentinels() {
		snt.Pause(t)
	}
	cfg := sentinelConfig(sn)
	s := openSentinel(t, cfg)
	var d string
	for range 3 {
		err := s.Ping(context.Background())
		if err == nil {
			t.Fatal("Ping succeeded with every sentinel stalled")
		}
		if d = Describe(err, cfg); strings.Contains(d, "answered in time") {
			break
		}
	}
	for _, snt := range sn.Sentinels() {
		snt.Resume(t) // before openSentinel's check that the lookup ended
	}
	if !strings.Contains(d, "answered in time") || strings.Contains(d, "named a master called") {
		t.Errorf("Describe with every sentinel stalled = %q, want it to say that none answered in time", d)
	}
}

// TestSentinelSwitchEndsRetries checks that an optimistic transaction
// that lost to another writer does not try again on its connection once
// the sentinels name another master, but runs again on a connection to
// the new one: under heavy contention, such retries could reach the old
// master milliseconds after the switch, and the logins they acknowledged
// would be lost. Here the first attempt plays the loser, and the
// switch happens during it.
func TestSentinelSwitchEndsRetries(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	first := redistest.Start(t, "--requirepass", sntMasterPassword)
	second := redistest.Start(t, "--requirepass", sntMasterPassword)
	f := startFakeSentinel(t, first.Addr())
	s := openSentinel(t, Config{
		SentinelAddrs:  []string{f.addr()},
		SentinelMaster: sntMasterName,
		Password:       sntMasterPassword,
		Timeout:        3 * time.Second,
	})
	attempts := 0
	err := s.do(ctx, "test", "attempts", func(ctx context.Context, conn redis.Conn) error {
		return s.optimistic(ctx, func() (bool, error) {
			attempts++
			if _, err := cmd(ctx, conn, "INCR", "attempts"); err != nil {
				return false, err
			}
			if attempts > 1 {
				return false, nil
			}
			f.name(second.Addr())
			sentinelOf(s).announced(f.addr())
			for deadline := time.Now().Add(2 * time.Second); sentinelMaster(s) != second.Addr(); {
				if time.Now().After(deadline) {
					t.Fatal("the Store did not follow the new master")
				}
				time.Sleep(5 * time.Millisecond)
			}
			return true, nil // lost to another writer: try again
		})
	})
	if err != nil {
		t.Fatalf("the call = %v, want it to succeed on the new master", err)
	}
	for _, c := range []struct {
		srv  *redistest.Server
		want int
	}{{first, 1}, {second, 1}} {
		if n, _ := redis.Int(c.srv.Do(t, "GET", "attempts"), nil); n != c.want {
			t.Errorf("attempts on %s: %d, want %d (the first on the former master, the retry on the new one)", c.srv.Addr(), n, c.want)
		}
	}
}

// silentSentinel returns the address of a server that accepts connections
// and never answers, as a stalled sentinel.
func silentSentinel(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// TestSentinelStalledVoter checks that a stalled sentinel, while the two
// others split on the master, holds a lookup up for confirmWait at most,
// not for its ReadTimeout: an announced failover waits that long, not
// seconds, and Close leaves no query behind (openSentinel's check).
func TestSentinelStalledVoter(t *testing.T) {
	t.Parallel()
	m1 := redistest.Start(t, "--requirepass", sntMasterPassword)
	m2 := redistest.Start(t, "--requirepass", sntMasterPassword)
	a, b := startFakeSentinel(t, m1.Addr()), startFakeSentinel(t, m1.Addr())
	s := openSentinel(t, Config{
		SentinelAddrs:  []string{a.addr(), b.addr(), silentSentinel(t)},
		SentinelMaster: sntMasterName,
		Password:       sntMasterPassword,
		Timeout:        time.Second,
		ReadTimeout:    3 * time.Second,
	})
	if err := s.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	// a, asked first, names the new master, as the failover's leader
	// does; b learns of it 100 ms later and announces it.
	a.name(m2.Addr())
	sentinelOf(s).ask()
	time.Sleep(100 * time.Millisecond)
	agreed := time.Now()
	b.name(m2.Addr())
	sentinelOf(s).announced(b.addr())
	for sentinelMaster(s) != m2.Addr() {
		if time.Since(agreed) > 3*time.Second {
			t.Fatal("the Store did not follow the master both answering sentinels name")
		}
		time.Sleep(time.Millisecond)
	}
	took := time.Since(agreed)
	t.Logf("followed %v after the answering sentinels agreed", took.Round(time.Millisecond))
	if took > confirmWait+300*time.Millisecond {
		t.Errorf("the Store followed %v after the answering sentinels agreed, want within confirmWait (%v): the stalled sentinel held the lookup up", took.Round(time.Millisecond), confirmWait)
	}
	// A lookup that waits on the stalled sentinel as the Store closes.
	a.name(m1.Addr())
	sentinelOf(s).ask()
	time.Sleep(50 * time.Millisecond)
}

// TestSentinelAnnouncesFilter checks which messages on the announcement
// channels count as a failover of the master followed: a sentinel that
// monitors other masters announces theirs on the same channels, and an
// announcement is followed without a vote.
func TestSentinelAnnouncesFilter(t *testing.T) {
	for _, tc := range []struct {
		channel, data string
		want          bool
	}{
		{"+switch-master", "sessions 127.0.0.1 6379 127.0.0.1 6380", true},
		{"+switch-master", "cache 127.0.0.1 6379 127.0.0.1 6380", false},
		{"+switch-master", "sessions2 127.0.0.1 6379 127.0.0.1 6380", false},
		{"+switch-master", "", false},
		{"+promoted-slave", "slave 127.0.0.1:6380 127.0.0.1 6380 @ sessions 127.0.0.1 6379", true},
		{"+promoted-slave", "slave 127.0.0.1:6380 127.0.0.1 6380 @ cache 127.0.0.1 6379", false},
		{"+promoted-slave", "slave sessions 127.0.0.1 6380 @", false},
		{"+promoted-slave", "sessions", false},
		{"+sdown", "sessions 127.0.0.1 6379", false},
	} {
		if got := announces(redis.Message{Channel: tc.channel, Data: []byte(tc.data)}, "sessions"); got != tc.want {
			t.Errorf("announces(%s %q) = %v, want %v", tc.channel, tc.data, got, tc.want)
		}
	}
}
