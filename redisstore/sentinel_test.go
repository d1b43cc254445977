package redisstore

// Tests of Open under Redis Sentinel, on real servers started by
// internal/redistest: three Sentinels, a master and a replica. They are in
// package redisstore to see when the Store's Sentinel source has noticed a
// switch (its generation), which is the moment from which no write may
// reach the former master.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/internal/syncbuf"
)

// Distinct credentials of the data nodes and of the Sentinels, so that a
// mix-up of the two shows, and distinctive enough to find in an error.
const (
	sntMasterPassword   = "master-pw-5d0c27"
	sntSentinelPassword = "sentinel-pw-a91e4b"
	sntMasterName       = "sessions"
)

// startSentinel starts a master, a replica and three Sentinels with
// passwords of their own.
func startSentinel(t *testing.T) *redistest.Sentinel {
	t.Helper()
	start := time.Now()
	sn := redistest.StartSentinel(t, redistest.SentinelOptions{
		MasterName:       sntMasterName,
		Password:         sntMasterPassword,
		SentinelPassword: sntSentinelPassword,
	})
	t.Logf("Sentinel setup started in %v", time.Since(start).Round(time.Millisecond))
	return sn
}

// sentinelConfig is the Config of a Store on sn.
func sentinelConfig(sn *redistest.Sentinel) Config {
	return Config{
		SentinelAddrs:    sn.SentinelAddrs(),
		SentinelMaster:   sn.MasterName(),
		SentinelPassword: sntSentinelPassword,
		Password:         sntMasterPassword,
		Timeout:          time.Second,
	}
}

// openSentinel opens a Store with cfg and closes it at cleanup, checking
// then that Close ended every goroutine the Store started. The goroutines
// are told apart from those of other tests by a profiler label that they
// inherit from Open's caller.
func openSentinel(t *testing.T, cfg Config) *Store {
	t.Helper()
	label := fmt.Sprintf("%s-%d", t.Name(), time.Now().UnixNano())
	var s *Store
	var err error
	pprof.Do(context.Background(), pprof.Labels("sentinel-test", label), func(context.Context) {
		s, err = Open(cfg)
	})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if _, ok := s.src.(*sentinelSource); !ok {
		t.Fatalf("Open with SentinelAddrs: Source is %T, want *sentinelSource", s.src)
	}
	if n, _ := labelledGoroutines(label); n == 0 {
		t.Errorf("found no goroutine of the Store's Sentinel source (label %s): the leak check below cannot work", label)
	}
	t.Cleanup(func() {
		start := time.Now()
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("Close took %v", d)
		}
		// A goroutine that the Store's goroutines started, such as the
		// one that watches a dial's deadline, may take a moment to end.
		deadline := time.Now().Add(time.Second)
		for {
			n, stacks := labelledGoroutines(label)
			if n == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%d goroutines of the Store still run a second after Close:\n%s", n, stacks)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	return s
}

// labelled returns how many goroutines carry the profiler label
// sentinel-test=label, and their stacks.
func labelledGoroutines(label string) (n int, stacks string) {
	var buf bytes.Buffer
	pprof.Lookup("goroutine").WriteTo(&buf, 1)
	want := fmt.Sprintf("%q:%q", "sentinel-test", label)
	_, profile, _ := strings.Cut(buf.String(), "\n") // "goroutine profile: total <n>"
	// Each group of goroutines with one stack starts with "<count> @ <pcs>",
	// then its labels and frames, then a blank line.
	for group := range strings.SplitSeq(profile, "\n\n") {
		head, _, _ := strings.Cut(group, "\n")
		c, _, ok := strings.Cut(head, " @ ")
		if !ok || !strings.Contains(group, "# labels: ") || !strings.Contains(group, want) {
			continue
		}
		count, _ := strconv.Atoi(c)
		n += count
		stacks += group + "\n\n"
	}
	return n, stacks
}

// source returns the Store's Sentinel source.
func sentinelOf(s *Store) *sentinelSource {
	return s.src.(*sentinelSource)
}

// masterOf returns the address of the master the Store's Sentinel source
// knows.
func sentinelMaster(s *Store) string {
	src := sentinelOf(s)
	src.mu.Lock()
	defer src.mu.Unlock()
	return src.master
}

// exists reports which of keys exist on srv, asked on a connection of
// the test's own, in pipelined batches.
func keysOn(t *testing.T, srv *redistest.Server, keys []string) map[string]bool {
	t.Helper()
	c, err := redis.Dial("tcp", srv.Addr(), redis.DialPassword(sntMasterPassword),
		redis.DialConnectTimeout(2*time.Second), redis.DialReadTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	found := make(map[string]bool, len(keys))
	for batch := range slices.Chunk(keys, 1000) {
		for _, k := range batch {
			c.Send("EXISTS", k)
		}
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
		for _, k := range batch {
			n, err := redis.Int(c.Receive())
			if err != nil {
				t.Fatalf("EXISTS on %s: %v", srv.Addr(), err)
			}
			found[k] = n == 1
		}
	}
	return found
}

// noSecrets fails the test if err's text contains a password.
func noSecrets(t *testing.T, what string, err error) {
	t.Helper()
	for _, pw := range []string{sntMasterPassword, sntSentinelPassword, "wrong-pw-3f2a"} {
		if strings.Contains(err.Error(), pw) {
			t.Errorf("%s: error %q contains a password", what, err)
		}
	}
}

// TestSentinel checks a Store on a healthy Sentinel setup: it finds the
// master, writes there, sends one command a read and ROLE once a
// connection, tells wrong credentials (of the Sentinels or of the master)
// apart from unavailability without showing them, and waits for the
// replica with WaitReplicas.
func TestSentinel(t *testing.T) {
	t.Parallel()
	sn := startSentinel(t)
	master, replica := sn.Master(t), sn.Replica(t)
	ctx := context.Background()

	t.Run("round trip on the master", func(t *testing.T) {
		s := openSentinel(t, sentinelConfig(sn))
		if err := s.Ping(ctx); err != nil {
			t.Fatalf("Ping: %v", err)
		}
		ok, err := s.Insert(ctx, "rt", []byte("record"), time.Minute)
		if err != nil || !ok {
			t.Fatalf("Insert = %v, %v, want true, nil", ok, err)
		}
		got, found, err := s.Load(ctx, "rt", time.Minute)
		if err != nil || !found || string(got) != "record" {
			t.Fatalf("Load = %q, %v, %v, want record", got, found, err)
		}
		if got, _ := redis.String(master.Do(t, "GET", "session:rt"), nil); got != "record" {
			t.Errorf("the master has %q under session:rt, want record", got)
		}
		if addr := sentinelMaster(s); addr != master.Addr() {
			t.Errorf("the Store's master is %s, want %s", addr, master.Addr())
		}
	})

	t.Run("one command a read, ROLE once a connection", func(t *testing.T) {
		s := openSentinel(t, sentinelConfig(sn))
		if _, err := s.Insert(ctx, "rd", []byte("record"), time.Minute); err != nil {
			t.Fatal(err)
		}
		const workers, reads = 8, 50
		read := func() {
			if _, found, err := s.Load(ctx, "rd", time.Minute); err != nil || !found {
				t.Errorf("Load = %v, %v", found, err)
			}
		}
		// Sequential reads on a warm pool: one GETEX each, nothing else.
		master.ResetStats(t)
		for range reads {
			read()
		}
		calls := master.Calls(t)
		if calls["getex"] != reads || calls["role"] != 0 || calls["auth"] != 0 {
			t.Errorf("%d reads on a warm pool: Calls %v, want getex %d and no ROLE or AUTH", reads, calls, reads)
		}
		// Concurrent reads dial: ROLE once for each new connection (each
		// sends AUTH once), however many reads it serves.
		master.ResetStats(t)
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for range reads {
					read()
				}
			})
		}
		wg.Wait()
		calls = master.Calls(t)
		if calls["getex"] != workers*reads {
			t.Errorf("%d reads: %d GETEX, want %d", workers*reads, calls["getex"], workers*reads)
		}
		if calls["role"] != calls["auth"] || calls["role"] > workers {
			t.Errorf("%d concurrent readers: ROLE %d times, AUTH %d times; want ROLE once per new connection (AUTH), at most %d",
				workers, calls["role"], calls["auth"], workers)
		}
		for name := range calls {
			switch name {
			case "getex", "role", "auth", "ping", "publish", "replconf": // the Sentinels PING and PUBLISH hellos, the replica acknowledges
			default:
				t.Errorf("reads sent %s to the master (%d times)", name, calls[name])
			}
		}
		t.Logf("%d reads from %d goroutines: Calls on the master %v", workers*reads, workers, calls)
	})

	t.Run("wrong credentials", func(t *testing.T) {
		tests := []struct {
			name string
			mod  func(*Config)
		}{
			{"wrong Sentinel password", func(c *Config) { c.SentinelPassword = "wrong-pw-3f2a" }},
			{"no Sentinel password", func(c *Config) { c.SentinelPassword = "" }},
			{"master password for the Sentinels", func(c *Config) { c.SentinelPassword = sntMasterPassword }},
			{"wrong master password", func(c *Config) { c.Password = "wrong-pw-3f2a" }},
			{"no master password", func(c *Config) { c.Password = "" }},
			{"Sentinel password for the master", func(c *Config) { c.Password = sntSentinelPassword }},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				cfg := sentinelConfig(sn)
				cfg.Timeout = 500 * time.Millisecond
				tc.mod(&cfg)
				s := openSentinel(t, cfg)
				start := time.Now()
				err := s.Ping(ctx)
				if err == nil {
					t.Fatal("Ping with wrong credentials succeeded")
				}
				t.Logf("Ping after %v: %v", time.Since(start).Round(time.Millisecond), err)
				if !errors.Is(err, ErrRefused) {
					t.Errorf("Ping with wrong credentials = %v, want ErrRefused (it will not get better by itself)", err)
				}
				if !strings.HasPrefix(err.Error(), "redisstore: ") {
					t.Errorf("error %q lacks the package prefix", err)
				}
				noSecrets(t, "Ping", err)
				_, _, err = s.Load(ctx, "x", time.Minute)
				if !errors.Is(err, ErrRefused) {
					t.Errorf("Load with wrong credentials = %v, want ErrRefused", err)
				}
				noSecrets(t, "Load", err)
			})
		}
	})

	t.Run("unknown master name", func(t *testing.T) {
		cfg := sentinelConfig(sn)
		cfg.SentinelMaster = "no-such-master"
		cfg.Timeout = 500 * time.Millisecond
		s := openSentinel(t, cfg)
		err := s.Ping(ctx)
		if err == nil {
			t.Fatal("Ping with a master name the Sentinels do not know succeeded")
		}
		noSecrets(t, "Ping", err)
		// A misconfiguration, like a wrong password, but the Sentinels
		// answer it as they answer before they learn of a master: the
		// test only shows what a caller gets.
		t.Logf("Ping with an unknown master name (ErrRefused %v, ErrUnavailable %v): %v",
			errors.Is(err, ErrRefused), errors.Is(err, ErrUnavailable), err)
	})

	t.Run("WaitReplicas", func(t *testing.T) {
		cfg := sentinelConfig(sn)
		cfg.WaitReplicas = 1
		s := openSentinel(t, cfg)
		for i := range 20 {
			id := fmt.Sprintf("w%d", i)
			a := UserSession{UserID: "u-wait", ID: id, Record: []byte("rec"), TTL: time.Hour,
				Deadline: time.Now().Add(time.Hour).Truncate(time.Millisecond)}
			if _, err := s.AddUserSession(ctx, a); err != nil {
				t.Fatalf("AddUserSession: %v", err)
			}
			master.ResetStats(t)
			removed, err := s.RemoveUserSession(ctx, "u-wait", id)
			if err != nil || !removed {
				t.Fatalf("RemoveUserSession with WaitReplicas 1 and the replica up = %v, %v, want true, nil", removed, err)
			}
			if n := master.Calls(t)["wait"]; n != 1 {
				t.Errorf("RemoveUserSession sent WAIT %d times, want once", n)
			}
			// WAIT returned: the replica has the deletion now.
			if keysOn(t, replica, []string{"session:" + id})["session:"+id] {
				t.Errorf("after RemoveUserSession confirmed by WAIT the replica still has session %s", id)
			}
		}
	})

	// Last: it leaves the setup with a Sentinel fewer.
	t.Run("first Sentinel down", func(t *testing.T) {
		sn.Sentinels()[0].Stop(t)
		s := openSentinel(t, sentinelConfig(sn))
		if err := s.Ping(ctx); err != nil {
			t.Fatalf("Ping with the first of three Sentinels down: %v", err)
		}
		if _, err := s.Insert(ctx, "down", []byte("record"), time.Minute); err != nil {
			t.Fatalf("Insert with the first of three Sentinels down: %v", err)
		}
		if !keysOn(t, master, []string{"session:down"})["session:down"] {
			t.Error("the write is not on the master")
		}
	})
}

// sntOp is one call of the load in the failover tests: an Insert of a key of
// its own, then a Load of it with a ttl (GETEX), the Store's read.
type sntOp struct {
	id         string
	start, end time.Time
	acked      time.Time // when Insert returned
	gen        uint64    // the Source's generation when the op started
	inserted   bool      // Insert succeeded
	vanished   bool      // then Load did not find it: the write was lost
	err        error     // the first error
}

// sntLoad is goroutines running ops on a Store until finish, which
// returns every op.
type sntLoad struct {
	s    *Store
	stop chan struct{}
	wg   sync.WaitGroup
	seq  atomic.Int64

	mu  sync.Mutex
	ops []sntOp
}

func startSntLoad(s *Store, workers int) *sntLoad {
	l := &sntLoad{s: s, stop: make(chan struct{})}
	for range workers {
		l.wg.Go(func() {
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				l.one()
			}
		})
	}
	return l
}

func (l *sntLoad) one() {
	ctx := context.Background()
	o := sntOp{id: fmt.Sprintf("load-%d", l.seq.Add(1)), start: time.Now(), gen: sentinelOf(l.s).generation()}
	ok, err := l.s.Insert(ctx, o.id, []byte("r"), time.Minute)
	o.acked = time.Now()
	o.inserted = err == nil && ok
	if err == nil && !ok {
		err = errors.New("Insert of a new id wrote nothing")
	}
	if err == nil {
		var found bool
		_, found, err = l.s.Load(ctx, o.id, time.Minute)
		o.vanished = err == nil && !found
	}
	o.err, o.end = err, time.Now()
	l.mu.Lock()
	l.ops = append(l.ops, o)
	l.mu.Unlock()
	if err != nil {
		time.Sleep(5 * time.Millisecond) // as a client backs off
	}
}

// finish stops the load and returns its ops.
func (l *sntLoad) finish() []sntOp {
	close(l.stop)
	l.wg.Wait()
	return l.ops
}

// cmdCount is what INFO commandstats says of one command.
type cmdCount struct{ calls, rejected int64 }

// sntSample is what a watcher saw at one moment: the Store's generation and
// the GETEX counts of the old master.
type sntSample struct {
	at    time.Time
	gen   uint64
	getex cmdCount
	ok    bool // the old master answered
}

// sntWatcher samples, every few milliseconds, the Store's generation and how
// many GETEX the old master ran (calls) or refused (rejected_calls, as a
// replica): GETEX with a ttl is propagated to replicas as PEXPIREAT, so
// after the old master is demoted only clients can make its count grow.
type sntWatcher struct {
	stop    chan struct{}
	done    chan struct{}
	samples []sntSample
}

func watchOld(s *Store, old *redistest.Server) *sntWatcher {
	w := &sntWatcher{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		var c redis.Conn
		defer func() {
			if c != nil {
				c.Close()
			}
		}()
		for {
			smp := sntSample{at: time.Now(), gen: sentinelOf(s).generation()}
			if c == nil {
				c, _ = redis.Dial("tcp", old.Addr(), redis.DialPassword(sntMasterPassword),
					redis.DialConnectTimeout(time.Second), redis.DialReadTimeout(time.Second))
			}
			if c != nil {
				var err error
				smp.getex, err = getexCount(c)
				if err != nil { // killed by the demotion's CLIENT KILL, or down
					c.Close()
					c = nil
				} else {
					smp.ok = true
				}
			}
			w.samples = append(w.samples, smp)
			select {
			case <-w.stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	return w
}

func (w *sntWatcher) finish() []sntSample {
	close(w.stop)
	<-w.done
	return w.samples
}

// getexCount returns the GETEX counts of INFO commandstats on c.
func getexCount(c redis.Conn) (cmdCount, error) {
	info, err := redis.String(c.Do("INFO", "commandstats"))
	if err != nil {
		return cmdCount{}, err
	}
	var n cmdCount
	for line := range strings.Lines(info) {
		fields, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_getex:")
		if !ok {
			continue
		}
		for f := range strings.SplitSeq(fields, ",") {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "calls":
				n.calls, _ = strconv.ParseInt(v, 10, 64)
			case "rejected_calls":
				n.rejected, _ = strconv.ParseInt(v, 10, 64)
			}
		}
	}
	return n, nil
}

// switchGrace is how long after the Store notices the switch a call that
// had borrowed its connection before may still reach the old master.
const switchGrace = 250 * time.Millisecond

// switchReport is what checkSwitch measured of a failover under load.
type switchReport struct {
	seen, firstOK time.Duration // from the fault until the Store noticed the switch, and wrote to the new master
	ops, failed   int
	lost, acked   int           // writes acknowledged from a second before the fault until the switch was seen, and how many of them are lost
	lostFrom      time.Duration // when the first and last lost write was acknowledged, from the fault
	lostTo        time.Duration
}

// checkSwitch checks a failover under load from its ops and samples: the
// Store noticed the switch and wrote to the new master within limit of the
// fault, and after noticing sent nothing more to the old master; every
// write acknowledged after that is on the new master; and every error was
// ErrUnavailable. It returns what it measured, including the writes
// acknowledged before the switch was noticed that the failover lost.
func checkSwitch(t *testing.T, what string, faultAt time.Time, limit time.Duration, ops []sntOp, samples []sntSample, newMaster *redistest.Server) switchReport {
	t.Helper()
	gen0 := samples[0].gen
	var seenAt time.Time
	for _, smp := range samples {
		if smp.gen != gen0 {
			seenAt = smp.at
			break
		}
	}
	if seenAt.IsZero() {
		t.Fatalf("%s: the Store never noticed the new master", what)
	}
	r := switchReport{seen: seenAt.Sub(faultAt), ops: len(ops)}
	var firstOK time.Time
	var refused int
	var afterKeys []string
	var before []sntOp
	for _, o := range ops {
		if o.err != nil {
			r.failed++
			if !errors.Is(o.err, ErrUnavailable) {
				refused++
				if refused <= 3 {
					t.Errorf("%s: op at fault%+v failed with %v, want ErrUnavailable", what, o.start.Sub(faultAt).Round(time.Millisecond), o.err)
				}
			}
		}
		switch {
		case o.gen == gen0 && o.inserted && o.start.After(faultAt.Add(-time.Second)):
			before = append(before, o)
		case o.gen != gen0 && o.inserted:
			afterKeys = append(afterKeys, "session:"+o.id)
			if o.vanished {
				t.Errorf("%s: %s, written after the Store noticed the new master, was not there to read", what, o.id)
			}
			if o.err == nil && (firstOK.IsZero() || o.end.Before(firstOK)) {
				firstOK = o.end
			}
		}
	}
	if refused > 0 {
		t.Errorf("%s: %d ops failed with other errors than ErrUnavailable", what, refused)
	}
	if firstOK.IsZero() {
		t.Fatalf("%s: no op succeeded on the new master", what)
	}
	r.firstOK = firstOK.Sub(faultAt)
	if r.firstOK > limit {
		t.Errorf("%s: first write on the new master %v after the fault, want within %v", what, r.firstOK.Round(time.Millisecond), limit)
	}

	// Every write acknowledged after the switch was seen is on the new
	// master; writes acknowledged before, in the second before the fault
	// and during it, may have been lost with the old master: count them.
	missing := 0
	for k, ok := range keysOn(t, newMaster, afterKeys) {
		if !ok {
			missing++
			if missing <= 3 {
				t.Errorf("%s: %s, written after the Store noticed the new master, is not on it", what, k)
			}
		}
	}
	if missing > 0 {
		t.Errorf("%s: %d of %d writes acknowledged after the switch are missing on the new master", what, missing, len(afterKeys))
	}
	keys := make([]string, len(before))
	for i, o := range before {
		keys[i] = "session:" + o.id
	}
	found := keysOn(t, newMaster, keys)
	r.acked = len(before)
	for _, o := range before {
		if found["session:"+o.id] {
			continue
		}
		at := o.acked.Sub(faultAt)
		if r.lost == 0 || at < r.lostFrom {
			r.lostFrom = at
		}
		if r.lost == 0 || at > r.lostTo {
			r.lostTo = at
		}
		r.lost++
	}
	t.Logf("%s: the Store noticed the new master %v after the fault and wrote there first %v after it; %d ops, %d failed; "+
		"%d of %d writes acknowledged from a second before the fault until the switch was noticed are lost (acknowledged from %v to %v after the fault)",
		what, r.seen.Round(time.Millisecond), r.firstOK.Round(time.Millisecond), r.ops, r.failed,
		r.lost, r.acked, r.lostFrom.Round(time.Millisecond), r.lostTo.Round(time.Millisecond))

	// The old master ran no GETEX (and refused none) once the Store had
	// noticed the switch, give or take a call in flight.
	var ref *sntSample
	last := samples[len(samples)-1]
	for i := range samples {
		if samples[i].ok && samples[i].at.After(seenAt.Add(switchGrace)) {
			ref = &samples[i]
			break
		}
	}
	if ref == nil || !last.ok {
		t.Errorf("%s: the old master did not answer the watcher after the switch", what)
		return r
	}
	if last.getex != ref.getex {
		t.Errorf("%s: the old master ran GETEX %d more times and refused it %d more times from %v after the Store noticed the switch to the end (%v later), want none",
			what, last.getex.calls-ref.getex.calls, last.getex.rejected-ref.getex.rejected,
			switchGrace, last.at.Sub(ref.at).Round(time.Millisecond))
	}
	return r
}

// lossSpan bounds the time over which the lost writes were acknowledged,
// with min-replicas-to-write 1: the instant of the promotion, stretched by
// the scheduling of many goroutines under -race.
const lossSpan = 200 * time.Millisecond

// TestSentinelFailover checks a Store under load from many goroutines
// through SENTINEL FAILOVER: it follows the promoted replica within
// seconds, retires its connections to the old master (which keeps
// accepting writes until the Sentinels demote it), and fails calls only
// with ErrUnavailable meanwhile. Run with -race, it also checks the
// Sentinel source's concurrency.
//
// Writes acknowledged by the old master between the replica's promotion
// and the moment the Store hears of it are lost: the Sentinels announce
// the new master only once they have seen it promoted (their INFO, every
// second during a failover). With min-replicas-to-write 1 the old master
// refuses writes as soon as its replica leaves, and only the writes in
// flight at that instant are lost; without it the test only reports how
// many were.
func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		minReplicas int
	}{
		{"min-replicas-to-write 0", 0},
		{"min-replicas-to-write 1", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sn := redistest.StartSentinel(t, redistest.SentinelOptions{
				MasterName:         sntMasterName,
				Password:           sntMasterPassword,
				SentinelPassword:   sntSentinelPassword,
				MinReplicasToWrite: tc.minReplicas,
				MinReplicasMaxLag:  time.Second,
			})
			old, next := sn.Master(t), sn.Replica(t)
			var logs syncbuf.Buffer
			cfg := sentinelConfig(sn)
			cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
			s := openSentinel(t, cfg)
			if err := s.Ping(context.Background()); err != nil {
				t.Fatal(err)
			}
			w := watchOld(s, old)
			l := startSntLoad(s, 16)
			time.Sleep(300 * time.Millisecond)
			faultAt := time.Now()
			took := sn.Failover(t)
			t.Logf("SENTINEL FAILOVER until the old master replicated the new one: %v", took.Round(time.Millisecond))
			time.Sleep(500 * time.Millisecond)
			ops := l.finish()
			samples := w.finish()
			if sn.Master(t) != next {
				t.Fatal("the replica was not promoted")
			}
			r := checkSwitch(t, "SENTINEL FAILOVER", faultAt, 6*time.Second, ops, samples, next)
			// With min-replicas-to-write 1 the old master refuses writes
			// once it sees its replica go, which is at once: only the
			// writes in flight at the promotion may be lost.
			if span := r.lostTo - r.lostFrom; tc.minReplicas > 0 && span > lossSpan {
				t.Errorf("with min-replicas-to-write 1, the old master acknowledged writes that were lost for %v, want at most %v",
					span.Round(time.Millisecond), lossSpan)
			}
			if addr := sentinelMaster(s); addr != next.Addr() {
				t.Errorf("the Store's master is %s, want %s", addr, next.Addr())
			}
			// The switch is logged, once.
			line := fmt.Sprintf("the sentinels name another master; calls go there from now on\" master_name=%s master=%s previous=%s", sntMasterName, next.Addr(), old.Addr())
			if n := strings.Count(logs.String(), line); n != 1 {
				t.Errorf("the switch to %s logged %d times, want once; log:\n%s", next.Addr(), n, logs.String())
			}
		})
	}
}

// TestSentinelKillMaster is TestSentinelFailover for a master killed with
// SIGKILL, then restarted: it comes back as an empty master until the
// Sentinels demote it, and must get no call meanwhile.
func TestSentinelKillMaster(t *testing.T) {
	t.Parallel()
	sn := startSentinel(t)
	s := openSentinel(t, sentinelConfig(sn))
	if err := s.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	l := startSntLoad(s, 16)
	time.Sleep(300 * time.Millisecond)
	// The watcher dials the old master: start it on the load's connections.
	old, next := sn.Master(t), sn.Replica(t)
	w := watchOld(s, old)
	faultAt := time.Now()
	killed, took := sn.KillMaster(t)
	if killed != old {
		t.Fatalf("KillMaster killed port %d, want the master, %d", killed.Port, old.Port)
	}
	t.Logf("kill -9 of the master until the Sentinels promoted the replica: %v", took.Round(time.Millisecond))
	// The first write on the new master must come within 6s of the kill,
	// or 3s of the promotion (the Store asks the Sentinels at least every
	// second) when the Sentinels took longer: an election they do not win
	// at once goes again after the failover timeout, about 9s in all.
	limit := max(6*time.Second, took+3*time.Second)
	time.Sleep(300 * time.Millisecond)

	// The killed master restarts as an empty master; the Sentinels demote
	// it about two seconds later. The Store must not write there.
	killed.Restart(t)
	restartedAt := time.Now()
	took = sn.WaitReplica(t, killed)
	t.Logf("restarted master rejoined as a replica after %v", took.Round(time.Millisecond))
	time.Sleep(300 * time.Millisecond)
	ops := l.finish()
	samples := w.finish()
	if r := checkSwitch(t, "kill -9", faultAt, limit, ops, samples, next); r.lost > 0 {
		t.Logf("kill -9 lost %d acknowledged writes: replication is asynchronous", r.lost)
	}

	// The restarted server's statistics start at its restart: any GETEX
	// it ran or refused came from a client.
	var first, last *sntSample
	for i := range samples {
		if samples[i].ok && samples[i].at.After(restartedAt) {
			if first == nil {
				first = &samples[i]
			}
			last = &samples[i]
		}
	}
	switch {
	case last == nil:
		t.Error("the watcher never reached the restarted master")
	case last.getex != (cmdCount{}):
		t.Errorf("the restarted old master ran GETEX %d times and refused it %d times, want never",
			last.getex.calls, last.getex.rejected)
	}
	if n, err := redis.Int(killed.Do(t, "EXISTS", "session:load-1"), nil); err != nil || n != 1 {
		t.Errorf("the rejoined replica lacks the first key written (%d, %v): did it sync?", n, err)
	}
}

// fakeSentinel is a server that speaks enough of the Sentinel protocol for
// a Store (PING, AUTH, SUBSCRIBE, SENTINEL get-master-addr-by-name) and
// names whatever master the test tells it to: a sentinel that is wrong.
type fakeSentinel struct {
	ln     net.Listener
	target atomic.Pointer[string]
	asked  atomic.Int64 // get-master-addr-by-name queries answered

	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

// startFakeSentinel starts a fakeSentinel naming target, stopped at cleanup.
func startFakeSentinel(t *testing.T, target string) *fakeSentinel {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeSentinel{ln: ln}
	f.name(target)
	f.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.conns = append(f.conns, c)
			f.mu.Unlock()
			f.wg.Go(func() { f.serve(c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		f.mu.Lock()
		for _, c := range f.conns {
			c.Close()
		}
		f.mu.Unlock()
		f.wg.Wait()
	})
	return f
}

// addr returns the fake sentinel's address.
func (f *fakeSentinel) addr() string { return f.ln.Addr().String() }

// name makes the fake sentinel name target as the master from now on.
func (f *fakeSentinel) name(target string) { f.target.Store(&target) }

// serve answers the commands read from c until it closes.
func (f *fakeSentinel) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	bulk := func(s string) string { return fmt.Sprintf("$%d\r\n%s\r\n", len(s), s) }
	for {
		line, err := r.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "*") {
			return
		}
		n, _ := strconv.Atoi(strings.TrimSpace(line[1:]))
		var args []string
		for range n {
			if _, err := r.ReadString('\n'); err != nil { // $<len>
				return
			}
			a, err := r.ReadString('\n')
			if err != nil {
				return
			}
			args = append(args, strings.TrimSuffix(a, "\r\n"))
		}
		var reply string
		switch strings.ToUpper(args[0]) {
		case "PING":
			reply = "+PONG\r\n"
		case "AUTH":
			reply = "+OK\r\n"
		case "SENTINEL":
			f.asked.Add(1)
			host, port, _ := net.SplitHostPort(*f.target.Load())
			reply = "*2\r\n" + bulk(host) + bulk(port)
			if *f.target.Load() == "" {
				reply = "*-1\r\n" // as a sentinel that monitors no master of the name
			}
		case "SUBSCRIBE":
			reply = "*3\r\n" + bulk("subscribe") + bulk(args[1]) + ":1\r\n"
		default:
			reply = "-ERR unknown command\r\n"
		}
		if _, err := io.WriteString(c, reply); err != nil {
			return
		}
	}
}

// lookupAsking has s look up the master now, and waits until the lookup
// has asked f.
func lookupAsking(t *testing.T, s *Store, f *fakeSentinel) {
	t.Helper()
	asked := f.asked.Load()
	sentinelOf(s).ask()
	for deadline := time.Now().Add(2 * time.Second); f.asked.Load() == asked; {
		if time.Now().After(deadline) {
			t.Fatal("the Store did not ask the fake sentinel again")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// insertUntilOK inserts records until one is stored, for at most d, each
// Insert within timeout, and returns how many failed, the last error and
// whether one succeeded.
func insertUntilOK(s *Store, d, timeout time.Duration) (failed int, last error, ok bool) {
	for end := time.Now().Add(d); time.Now().Before(end); {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		_, err := s.Insert(ctx, fmt.Sprintf("w%d", time.Now().UnixNano()), []byte("record"), time.Minute)
		cancel()
		if err == nil {
			return failed, last, true
		}
		failed, last = failed+1, err
		time.Sleep(10 * time.Millisecond)
	}
	return failed, last, false
}

// wrongSentinelLimit is how long calls may fail when the sentinel asked
// first names a replica as the master: a dial, then sentinelMinAsk until
// the next lookup, which asks the next sentinel.
const wrongSentinelLimit = 500 * time.Millisecond

// TestSentinelWrongSentinel checks that a sentinel that names a replica as
// the master, first in Config.SentinelAddrs, does not keep the Store from
// the master the other sentinels name: after a dial finds no master where
// a sentinel said, the next lookup asks the next sentinel. Without that,
// the first sentinel to answer is asked first for ever, and no write
// succeeds.
func TestSentinelWrongSentinel(t *testing.T) {
	t.Parallel()
	sn := startSentinel(t)
	master, replica := sn.Master(t), sn.Replica(t)

	t.Run("from the start", func(t *testing.T) {
		f := startFakeSentinel(t, replica.Addr())
		cfg := sentinelConfig(sn)
		cfg.SentinelAddrs = append([]string{f.addr()}, cfg.SentinelAddrs...)
		cfg.Timeout = 300 * time.Millisecond
		s := openSentinel(t, cfg)
		start := time.Now()
		failed, last, ok := insertUntilOK(s, 3*time.Second, cfg.Timeout)
		took := time.Since(start)
		t.Logf("writes failed before one succeeded: %d in %v; the fake sentinel was asked %d times; last error: %v",
			failed, took.Round(time.Millisecond), f.asked.Load(), last)
		if !ok {
			t.Fatalf("no write succeeded in 3 s with the first sentinel naming the replica (%d failed): last error %v", failed, last)
		}
		if took > wrongSentinelLimit {
			t.Errorf("writes failed for %v before one succeeded, want at most %v", took.Round(time.Millisecond), wrongSentinelLimit)
		}
		if addr := sentinelMaster(s); addr != master.Addr() {
			t.Errorf("the Store's master is %s, want %s", addr, master.Addr())
		}
	})

	t.Run("error", func(t *testing.T) {
		// A Store that knows only the wrong sentinel fails every call,
		// with an error that names it and the server it named.
		f := startFakeSentinel(t, replica.Addr())
		cfg := sentinelConfig(sn)
		cfg.SentinelAddrs = []string{f.addr()}
		cfg.Timeout = 300 * time.Millisecond
		s := openSentinel(t, cfg)
		_, err := s.Insert(context.Background(), "x", []byte("record"), time.Minute)
		if err == nil {
			t.Fatal("Insert succeeded on a replica")
		}
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("Insert = %v, want ErrUnavailable", err)
		}
		for _, want := range []string{f.addr(), replica.Addr()} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not name %s", err, want)
			}
		}
		noSecrets(t, "Insert", err)
		d := Describe(err, cfg)
		t.Logf("error: %v\nDescribe: %s", err, d)
		for _, want := range []string{f.addr(), replica.Addr(), "replica", "REDIS_SENTINELS"} {
			if !strings.Contains(d, want) {
				t.Errorf("Describe = %q, want it to name %s", d, want)
			}
		}
	})

	t.Run("dial errors", func(t *testing.T) {
		// Every dial reaches a server that is no master: PoolStats counts
		// each as failed, as it documents.
		f := startFakeSentinel(t, replica.Addr())
		cfg := sentinelConfig(sn)
		cfg.SentinelAddrs = []string{f.addr()}
		cfg.Timeout = 300 * time.Millisecond
		s := openSentinel(t, cfg)
		for i := range 5 {
			if _, err := s.Insert(context.Background(), fmt.Sprintf("x%d", i), []byte("record"), time.Minute); err == nil {
				t.Fatal("Insert succeeded on a replica")
			}
		}
		ps := s.PoolStats()
		if ps.Dials == 0 || ps.DialErrors != ps.Dials {
			t.Errorf("PoolStats after dials that each found a replica: Dials %d, DialErrors %d, want as many errors as dials, at least one",
				ps.Dials, ps.DialErrors)
		}
		// A dial that reaches the master counts as a success.
		cfg.SentinelAddrs = sn.SentinelAddrs()
		s = openSentinel(t, cfg)
		if err := s.Ping(context.Background()); err != nil {
			t.Fatal(err)
		}
		if ps := s.PoolStats(); ps.Dials == 0 || ps.DialErrors != 0 {
			t.Errorf("PoolStats after dialling the master: Dials %d, DialErrors %d, want at least one dial and no error", ps.Dials, ps.DialErrors)
		}
	})

	t.Run("turns wrong while the Store works", func(t *testing.T) {
		f := startFakeSentinel(t, master.Addr())
		cfg := sentinelConfig(sn)
		cfg.SentinelAddrs = append([]string{f.addr()}, cfg.SentinelAddrs...)
		cfg.Timeout = 300 * time.Millisecond
		s := openSentinel(t, cfg)
		if _, _, ok := insertUntilOK(s, 2*time.Second, cfg.Timeout); !ok {
			t.Fatal("no write succeeded with every sentinel right")
		}
		// The fake sentinel, first in the list and the one that answered,
		// now names the replica; the Store hears it at its next lookup.
		f.name(replica.Addr())
		lookupAsking(t, s, f)
		start := time.Now()
		failed, last, ok := insertUntilOK(s, 3*time.Second, cfg.Timeout)
		took := time.Since(start)
		t.Logf("writes failed after the first sentinel turned wrong: %d in %v; last error: %v", failed, took.Round(time.Millisecond), last)
		if !ok {
			t.Fatalf("no write succeeded in 3 s once the first sentinel named the replica (%d failed): last error %v", failed, last)
		}
		if took > wrongSentinelLimit {
			t.Errorf("writes failed for %v once the first sentinel named the replica, want at most %v", took.Round(time.Millisecond), wrongSentinelLimit)
		}
		// Later writes all succeed: the wrong sentinel is asked last now.
		for i := range 20 {
			if _, err := s.Insert(context.Background(), fmt.Sprintf("after%d", i), []byte("record"), time.Minute); err != nil {
				t.Fatalf("Insert after the Store moved past the wrong sentinel: %v", err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if addr := sentinelMaster(s); addr != master.Addr() {
			t.Errorf("the Store's master is %s, want %s", addr, master.Addr())
		}
	})
}

// TestSentinelAllDown checks what a Store tells the operator when every
// sentinel goes down while the master serves: calls still succeed (Ping
// too, so readiness holds), and within the poll interval PoolStats reports
// SentinelsDown and the Store logs a warning; once the sentinels are back,
// SentinelsDown clears and the Store logs that they answer again.
func TestSentinelAllDown(t *testing.T) {
	t.Parallel()
	sn := startSentinel(t)
	ctx := context.Background()
	var logs syncbuf.Buffer
	cfg := sentinelConfig(sn)
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	s := openSentinel(t, cfg)
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if ps := s.PoolStats(); ps.SentinelsDown || ps.SentinelLookupFailures != 0 {
		t.Errorf("PoolStats with every sentinel up: SentinelsDown %v, SentinelLookupFailures %d, want false, 0", ps.SentinelsDown, ps.SentinelLookupFailures)
	}

	for _, snt := range sn.Sentinels() {
		snt.Stop(t)
	}
	// waitFor waits up to two polls for cond.
	waitFor := func(what string, cond func(PoolStats) bool) {
		t.Helper()
		deadline := time.Now().Add(2*sentinelPoll + 500*time.Millisecond)
		for !cond(s.PoolStats()) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: PoolStats %+v; log:\n%s", what, s.PoolStats(), logs.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("every sentinel down", func(ps PoolStats) bool { return ps.SentinelsDown && ps.SentinelLookupFailures > 0 })
	const downLine = "no sentinel named the master"
	for deadline := time.Now().Add(time.Second); !strings.Contains(logs.String(), downLine); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no log line %q with every sentinel down; log:\n%s", downLine, logs.String())
		}
	}
	// The master is fine: calls, readiness included, succeed.
	if err := s.Ping(ctx); err != nil {
		t.Errorf("Ping with every sentinel down and the master up: %v", err)
	}
	if _, err := s.Insert(ctx, "down", []byte("record"), time.Minute); err != nil {
		t.Errorf("Insert with every sentinel down and the master up: %v", err)
	}

	for _, snt := range sn.Sentinels() {
		snt.Restart(t)
	}
	waitFor("sentinels back", func(ps PoolStats) bool { return !ps.SentinelsDown })
	const upLine = "the sentinels name the master again"
	for deadline := time.Now().Add(time.Second); !strings.Contains(logs.String(), upLine); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no log line %q once the sentinels were back; log:\n%s", upLine, logs.String())
		}
	}
	out := logs.String()
	t.Logf("log:\n%s", out)
	if n := strings.Count(out, downLine); n != 1 {
		t.Errorf("%d warnings in a few seconds of sentinels down, want 1 (at most one per %v)", n, sentinelLogInterval)
	}
	noPasswordLogged(t, out)
}

// closedAddr returns a loopback address that nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// noPasswordLogged fails t if out, a Store's log, holds a password of the
// test setups.
func noPasswordLogged(t *testing.T, out string) {
	t.Helper()
	for _, pw := range []string{sntMasterPassword, sntSentinelPassword} {
		if strings.Contains(out, pw) {
			t.Errorf("the log contains a password")
		}
	}
}

// TestSentinelOneUpBetweenDown checks that a Store whose sentinels are
// down but for one, listed between two that are down, finds the master at
// its first lookup, and logs each sentinel that did not answer, without
// passwords. FZambia's MasterAddr, asked for the whole list, moves the
// first down sentinel to the bottom of the list it is walking, asks the
// last one twice and the one up never: the first lookup would fail, log
// that no sentinel names the master, and fail every call for a poll.
func TestSentinelOneUpBetweenDown(t *testing.T) {
	t.Parallel()
	sn := startSentinel(t)
	downA, downB := closedAddr(t), closedAddr(t)
	var logs syncbuf.Buffer
	cfg := sentinelConfig(sn)
	cfg.SentinelAddrs = []string{downA, sn.SentinelAddrs()[0], downB}
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	s := openSentinel(t, cfg)
	if err := s.Ping(context.Background()); err != nil {
		t.Fatalf("Ping with one sentinel of three up: %v\nlog:\n%s", err, logs.String())
	}
	out := logs.String()
	t.Logf("log:\n%s", out)
	if n := s.PoolStats().SentinelLookupFailures; n != 0 || strings.Contains(out, "no sentinel named the master") {
		t.Errorf("%d lookups failed with one sentinel of three up, want 0", n)
	}
	if !strings.Contains(out, "a sentinel did not say where the master is") || !strings.Contains(out, downA) {
		t.Errorf("no warning naming %s, the down sentinel asked first", downA)
	}
	noPasswordLogged(t, out)
}

// TestSentinelAudit checks that the Store tells of a sentinel that its
// lookups never ask, since one before it answers: one that is down, at
// the first audit; one that names another master, at the second audit in
// a row that it does, the Store having followed the same master at both
// (a moment of disagreement, during a failover, is no alarm). Without the
// audit, both would go unnoticed.
func TestSentinelAudit(t *testing.T) {
	t.Parallel()
	sn := startSentinel(t)
	// openWith opens a Store on sn's sentinels and one more, listed last,
	// and waits until it has a master.
	openWith := func(t *testing.T, last string) (*Store, *syncbuf.Buffer) {
		t.Helper()
		logs := new(syncbuf.Buffer)
		cfg := sentinelConfig(sn)
		cfg.SentinelAddrs = append(slices.Clone(sn.SentinelAddrs()), last)
		cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
		s := openSentinel(t, cfg)
		if err := s.Ping(context.Background()); err != nil {
			t.Fatal(err)
		}
		return s, logs
	}
	t.Run("down", func(t *testing.T) {
		t.Parallel()
		down := closedAddr(t)
		s, logs := openWith(t, down)
		const line = "a sentinel did not say where the master is"
		for deadline := time.Now().Add(2 * time.Second); !strings.Contains(logs.String(), line+", and another did"); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no warning of the sentinel down, last in the list, 2 s after the master was known; log:\n%s", logs.String())
			}
		}
		out := logs.String()
		t.Logf("log:\n%s", out)
		if !strings.Contains(out, "sentinel="+down) {
			t.Errorf("the warning does not name the sentinel down, %s", down)
		}
		if n := strings.Count(out, line); n != 1 {
			t.Errorf("%d warnings of the sentinel down, want 1", n)
		}
		if ps := s.PoolStats(); ps.SentinelsFailing != 1 || ps.SentinelsDown {
			t.Errorf("PoolStats: SentinelsFailing %d, SentinelsDown %v; want 1, false", ps.SentinelsFailing, ps.SentinelsDown)
		}
	})
	t.Run("monitors no master", func(t *testing.T) {
		t.Parallel()
		f := startFakeSentinel(t, "")
		_, logs := openWith(t, f.addr())
		for deadline := time.Now().Add(2 * time.Second); !strings.Contains(logs.String(), "sentinel="+f.addr()); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no warning of the sentinel that monitors no master of the name; log:\n%s", logs.String())
			}
		}
		if out := logs.String(); !strings.Contains(out, "monitor no master of that name (Config.SentinelMaster)") {
			t.Errorf("the warning does not say that the sentinel monitors no master of the name:\n%s", out)
		}
	})
	t.Run("names another master", func(t *testing.T) {
		t.Parallel()
		other := redistest.Start(t) // a master of another setup
		f := startFakeSentinel(t, sn.Master(t).Addr())
		s, logs := openWith(t, f.addr())
		// Halfway to the second audit, the fake turns to the other
		// master: the second audit sees it once (as during a failover),
		// the third a second time.
		const line = "a sentinel named another master"
		time.Sleep(sentinelAudit / 2)
		f.name(other.Addr())
		time.Sleep(sentinelAudit)
		if strings.Contains(logs.String(), line) {
			t.Fatalf("warned of a sentinel that named another master at one audit; log:\n%s", logs.String())
		}
		for deadline := time.Now().Add(sentinelAudit/2 + 3*time.Second); !strings.Contains(logs.String(), line); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no warning of the sentinel naming another master at the third audit, the second in a row; log:\n%s", logs.String())
			}
		}
		out := logs.String()
		t.Logf("log:\n%s", out)
		for _, want := range []string{"sentinel=" + f.addr(), "names=" + other.Addr(), "master=" + sentinelMaster(s), "agree=3"} {
			if !strings.Contains(out, want) {
				t.Errorf("the warning lacks %s", want)
			}
		}
		if got := sentinelMaster(s); got == other.Addr() {
			t.Errorf("the Store follows the other setup's master")
		}
		if n := s.PoolStats().SentinelsFailing; n != 0 {
			t.Errorf("PoolStats.SentinelsFailing = %d with every sentinel answering, want 0", n)
		}
	})
}

// TestSentinelCloseStalled closes a Store while every sentinel is stalled
// (SIGSTOP), with a lookup of the master under way: Close returns
// promptly, as its doc says, and the lookup ends in the background once
// the sentinels answer or time out, rather than wait for the lookup, a
// sentinel's timeout after another.
func TestSentinelCloseStalled(t *testing.T) {
	t.Parallel()
	sn := startSentinel(t)
	s := openSentinel(t, sentinelConfig(sn))
	if err := s.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, snt := range sn.Sentinels() {
		snt.Pause(t)
	}
	time.Sleep(sentinelPoll + 500*time.Millisecond) // a poll's lookup is stalled
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	took := time.Since(start)
	for _, snt := range sn.Sentinels() {
		snt.Resume(t) // before openSentinel's check that the lookup ended
	}
	if took > 500*time.Millisecond {
		t.Errorf("Close with every sentinel stalled took %v, want it prompt", took.Round(time.Millisecond))
	}
}

// TestSentinelNoMasterYet checks the warning of a Store whose sentinels
// have never named its master (here: they monitor none by that name): it
// knows no master to go on to, and says so, instead of the line of a Store
// that lost its sentinels after they named one.
func TestSentinelNoMasterYet(t *testing.T) {
	t.Parallel()
	sn := startSentinel(t)
	var logs syncbuf.Buffer
	cfg := sentinelConfig(sn)
	cfg.SentinelMaster = "no-such-master"
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	s := openSentinel(t, cfg)
	if err := s.Ping(context.Background()); err == nil {
		t.Fatal("Ping with no master named: nil, want an error")
	}
	const line = "no sentinel named the master; none has since the Store opened, so every call fails until one does"
	for deadline := time.Now().Add(2*sentinelPoll + time.Second); !strings.Contains(logs.String(), line); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no log line %q; log:\n%s", line, logs.String())
		}
	}
	if out := logs.String(); strings.Contains(out, "the master named last") {
		t.Errorf("a Store that never had a master logs that it goes on to the one named last:\n%s", out)
	}
}

// TestSentinelFirstMaster opens a Store while every sentinel is down, and
// brings them back: the line that says so tells that this is the first
// master the Store has, not that the sentinels name it "again".
func TestSentinelFirstMaster(t *testing.T) {
	t.Parallel()
	sn := startSentinel(t)
	for _, snt := range sn.Sentinels() {
		snt.Stop(t)
	}
	var logs syncbuf.Buffer
	cfg := sentinelConfig(sn)
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	s := openSentinel(t, cfg)
	for deadline := time.Now().Add(2*sentinelPoll + time.Second); !strings.Contains(logs.String(), "none has since the Store opened"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no warning with every sentinel down; log:\n%s", logs.String())
		}
	}
	for _, snt := range sn.Sentinels() {
		snt.Restart(t)
	}
	const line = "the sentinels name a master, the first since the Store opened"
	for deadline := time.Now().Add(2*sentinelPoll + 2*time.Second); !strings.Contains(logs.String(), line); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no log line %q once the sentinels were back; log:\n%s", line, logs.String())
		}
	}
	if out := logs.String(); strings.Contains(out, "name the master again") {
		t.Errorf("a Store that never had a master logs that the sentinels name it again:\n%s", out)
	}
	if err := s.Ping(context.Background()); err != nil {
		t.Errorf("Ping once the sentinels named the master: %v", err)
	}
}

// TestSentinelMasterRemoved has every sentinel stop monitoring the master
// (SENTINEL REMOVE) while a Store runs: calls go on to the master named
// last, and the warning says that the sentinels monitor no master of that
// name, not only "redigo: nil returned".
func TestSentinelMasterRemoved(t *testing.T) {
	t.Parallel()
	sn := startSentinel(t)
	var logs syncbuf.Buffer
	cfg := sentinelConfig(sn)
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	s := openSentinel(t, cfg)
	if err := s.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, snt := range sn.Sentinels() {
		snt.Do(t, "SENTINEL", "REMOVE", sntMasterName)
	}
	const line = "the sentinels monitor no master of that name (REDIS_SENTINEL_MASTER) any more"
	for deadline := time.Now().Add(2*sentinelPoll + time.Second); !strings.Contains(logs.String(), line); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no log line %q; log:\n%s", line, logs.String())
		}
	}
	if err := s.Ping(context.Background()); err != nil {
		t.Errorf("Ping with the master still up: %v", err)
	}
}

// TestSentinelSubscriptionStalled stalls the sentinel that the Store
// subscribed to, as a frozen machine or a partition would, without closing
// the connection: the Store gives that subscription up within
// subscriptionSilence and subscribes to the next sentinel, instead of
// waiting on the silent one until TCP gives up.
func TestSentinelSubscriptionStalled(t *testing.T) {
	t.Parallel()
	sn := startSentinel(t)
	sentinels := sn.Sentinels()
	proxy := redistest.NewProxy(t, sentinels[0].Addr())
	cfg := sentinelConfig(sn)
	cfg.SentinelAddrs = []string{proxy.Addr(), sentinels[1].Addr(), sentinels[2].Addr()}
	s := openSentinel(t, cfg)
	if err := s.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	// subscribed reports whether a client of the sentinel srv is
	// subscribed to both announcements (CLIENT LIST's sub=2): the Store's,
	// the only subscriber.
	subscribed := func(srv *redistest.Server) bool {
		list, err := redis.String(srv.Do(t, "CLIENT", "LIST"), nil)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Contains(list, " sub=2 ")
	}
	waitSubscribed := func(srv *redistest.Server, within time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		for !subscribed(srv) {
			if time.Since(start) > within {
				t.Fatalf("no subscription on sentinel %s within %v", srv.Addr(), within)
			}
			time.Sleep(20 * time.Millisecond)
		}
		return time.Since(start)
	}
	waitSubscribed(sentinels[0], 2*time.Second)

	proxy.Stall()
	took := waitSubscribed(sentinels[1], subscriptionSilence+sentinelPoll+2*time.Second)
	t.Logf("subscribed to the next sentinel %v after the first stalled", took.Round(time.Millisecond))
	proxy.Heal()
}

// TestSentinelPromotion checks that the Store follows a failover as soon
// as the sentinel it subscribes to promotes the replica (+promoted-slave),
// not when that sentinel announces +switch-master: with two replicas the
// announcement waits until the other replica follows the new master, a
// second or more, and the old master, which keeps that replica, goes on
// acknowledging writes meanwhile that are lost once it is demoted. The
// writes it acknowledges before the sentinel sees the promotion (up to the
// sentinel's INFO period) no client can keep.
func TestSentinelPromotion(t *testing.T) {
	t.Parallel()
	sn := redistest.StartSentinel(t, redistest.SentinelOptions{
		MasterName:         sntMasterName,
		Password:           sntMasterPassword,
		SentinelPassword:   sntSentinelPassword,
		MinReplicasToWrite: 1,
		MinReplicasMaxLag:  time.Second,
		Replicas:           2,
	})
	first := sn.Sentinels()[0] // the Store's subscription, and sn.Failover's sentinel
	s := openSentinel(t, sentinelConfig(sn))
	if err := s.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Both channels subscribed (CLIENT LIST's sub=2).
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		list, _ := redis.String(first.Do(t, "CLIENT", "LIST"), nil)
		if strings.Contains(list, " sub=2 ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the Store did not subscribe to both announcements on the first sentinel:\n%s", list)
		}
	}

	// The test's own subscription to the same sentinel times the
	// announcements.
	c, err := redis.Dial("tcp", first.Addr(), redis.DialPassword(sntSentinelPassword), redis.DialReadTimeout(20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	psc := redis.PubSubConn{Conn: c}
	if err := psc.Subscribe("+promoted-slave", "+switch-master"); err != nil {
		t.Fatal(err)
	}
	announced := make(chan map[string]time.Time, 1)
	go func() {
		at := map[string]time.Time{}
		defer func() { announced <- at }()
		for len(at) < 2 {
			switch m := psc.Receive().(type) {
			case redis.Message:
				if _, ok := at[m.Channel]; !ok {
					at[m.Channel] = time.Now()
				}
			case error:
				return
			}
		}
	}()

	old := sn.Master(t)
	w := watchOld(s, old)
	l := startSntLoad(s, 16)
	time.Sleep(300 * time.Millisecond)
	faultAt := time.Now()
	sn.Failover(t)
	time.Sleep(500 * time.Millisecond)
	ops := l.finish()
	samples := w.finish()
	next := sn.Master(t)
	if next == old {
		t.Fatal("no replica was promoted")
	}
	var at map[string]time.Time
	select {
	case at = <-announced:
	case <-time.After(10 * time.Second):
		t.Fatal("the sentinel announced neither +promoted-slave nor +switch-master within 10 s")
	}
	promoted, switchMaster := at["+promoted-slave"], at["+switch-master"]
	if promoted.IsZero() || switchMaster.IsZero() {
		t.Fatalf("announcements seen: %v, want +promoted-slave and +switch-master", at)
	}
	r := checkSwitch(t, "SENTINEL FAILOVER, two replicas", faultAt, 6*time.Second, ops, samples, next)
	announcedAt := promoted.Sub(faultAt)
	lag := r.seen - announcedAt
	t.Logf("+promoted-slave %v after the fault, +switch-master %v after it; the Store followed %v after +promoted-slave",
		announcedAt.Round(time.Millisecond), switchMaster.Sub(faultAt).Round(time.Millisecond), lag.Round(time.Millisecond))
	// Well within the Store's poll of the sentinels (once a second), which
	// alone would follow half a second late on average.
	const within = 300 * time.Millisecond
	if lag > within {
		t.Errorf("the Store followed the failover %v after the sentinel announced the promotion, want within %v", lag.Round(time.Millisecond), within)
	}
	if r.lost > 0 && r.lostTo > announcedAt+within {
		t.Errorf("writes acknowledged up to %v after the sentinel announced the promotion were lost, want none after %v",
			(r.lostTo - announcedAt).Round(time.Millisecond), within)
	}
}
