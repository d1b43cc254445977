package redisstore_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/redisstore"
)

// guidePath is the troubleshooting guide whose error texts
// TestTroubleshooting checks.
const guidePath = "../docs/troubleshooting.md"

// guideSection is what the troubleshooting guide shows for one failure:
// its error texts, one a line, with <...> marking the parts that vary, and
// their class.
type guideSection struct {
	texts []string
	class string // "ErrUnavailable" or "ErrRefused"
}

// readGuide returns the sections of the troubleshooting guide that show an
// error, by heading: the lines of the first ```text block under a "## "
// heading, and the class named on its "**Class:**" line.
func readGuide(t *testing.T) map[string]guideSection {
	t.Helper()
	f, err := os.Open(guidePath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sections := make(map[string]guideSection)
	classRE := regexp.MustCompile("^\\*\\*Class:\\*\\* `redisstore\\.(Err[A-Za-z]+)`")
	var heading string
	var inBlock, blockDone bool
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case inBlock && line == "```":
			inBlock, blockDone = false, true
		case inBlock:
			s := sections[heading]
			s.texts = append(s.texts, line)
			sections[heading] = s
		case strings.HasPrefix(line, "## "):
			heading, blockDone = strings.TrimPrefix(line, "## "), false
		case heading != "" && !blockDone && line == "```text":
			inBlock = true
		case heading != "":
			if m := classRE.FindStringSubmatch(line); m != nil {
				s := sections[heading]
				s.class = m[1]
				sections[heading] = s
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return sections
}

// pattern turns a documented error text into a regexp matching the whole
// error: each <...> stands for any text.
func pattern(text string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for rest := text; ; {
		i := strings.Index(rest, "<")
		j := strings.Index(rest[max(i, 0):], ">")
		if i < 0 || j < 0 {
			b.WriteString(regexp.QuoteMeta(rest))
			break
		}
		b.WriteString(regexp.QuoteMeta(rest[:i]))
		b.WriteString(".+?")
		rest = rest[i+j+1:]
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

func TestTroubleshootingPattern(t *testing.T) {
	tests := []struct {
		text, err string
		want      bool
	}{
		{"a <addr>: b", "a 127.0.0.1:1: b", true},
		{"a <addr>: b", "a 127.0.0.1:1: bc", false},
		{"a (b) <x> c.", "a (b) y c.", true},
		{"a (b) <x> c.", "xa (b) y c.", false},
		{"plain", "plain", true},
	}
	for _, tc := range tests {
		if got := pattern(tc.text).MatchString(tc.err); got != tc.want {
			t.Errorf("pattern(%q).MatchString(%q) = %v, want %v", tc.text, tc.err, got, tc.want)
		}
	}
}

// TestTroubleshooting provokes each failure of docs/troubleshooting.md on a
// real redis-server and checks that the error the Store returns is the text
// the guide shows, of the class it names, and that PoolStats shows what the
// guide says it shows; and that the guide shows no error no case provokes.
func TestTroubleshooting(t *testing.T) {
	guide := readGuide(t)
	ctx := context.Background()
	cases := []struct {
		heading string
		provoke func(t *testing.T) (redisstore.PoolStats, error)
		stats   func(redisstore.PoolStats) bool // what the guide says PoolStats shows; nil: nothing
	}{
		{
			heading: "Connection refused",
			provoke: func(t *testing.T) (redisstore.PoolStats, error) {
				srv := redistest.Start(t)
				s := open(t, srv, redisstore.Config{})
				srv.Stop(t)
				_, _, err := s.Load(ctx, "id", 0)
				return s.PoolStats(), err
			},
			stats: func(ps redisstore.PoolStats) bool { return ps.DialErrors > 0 },
		},
		{
			heading: "Not Redis at the address: unexpected response line",
			provoke: func(t *testing.T) (redisstore.PoolStats, error) {
				web := httptest.NewServer(http.NotFoundHandler())
				t.Cleanup(web.Close)
				s, err := redisstore.Open(redisstore.Config{Addr: web.Listener.Addr().String()})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				_, _, err = s.Load(ctx, "id", 0)
				return s.PoolStats(), err
			},
		},
		{
			heading: "Wrong password: WRONGPASS",
			provoke: func(t *testing.T) (redisstore.PoolStats, error) {
				srv := redistest.Start(t, "--requirepass", "right")
				s := open(t, srv, redisstore.Config{Password: "wrong"})
				_, _, err := s.Load(ctx, "id", 0)
				return s.PoolStats(), err
			},
			stats: func(ps redisstore.PoolStats) bool { return ps.DialErrors > 0 },
		},
		{
			heading: "No password: NOAUTH",
			provoke: func(t *testing.T) (redisstore.PoolStats, error) {
				srv := redistest.Start(t, "--requirepass", "right")
				s := open(t, srv, redisstore.Config{})
				_, _, err := s.Load(ctx, "id", 0)
				return s.PoolStats(), err
			},
		},
		{
			heading: "A password the server does not have: AUTH called without any password configured",
			provoke: func(t *testing.T) (redisstore.PoolStats, error) {
				srv := redistest.Start(t)
				s := open(t, srv, redisstore.Config{Password: "secret"})
				_, _, err := s.Load(ctx, "id", 0)
				return s.PoolStats(), err
			},
			stats: func(ps redisstore.PoolStats) bool { return ps.DialErrors > 0 },
		},
		{
			heading: "No such database: DB index is out of range",
			provoke: func(t *testing.T) (redisstore.PoolStats, error) {
				srv := redistest.Start(t)
				s := open(t, srv, redisstore.Config{DB: 16})
				_, _, err := s.Load(ctx, "id", 0)
				return s.PoolStats(), err
			},
		},
		{
			heading: "Too many connections: max number of clients reached",
			provoke: func(t *testing.T) (redisstore.PoolStats, error) {
				srv := redistest.Start(t, "--maxclients", "1")
				// The one connection Redis allows, held while the Store
				// dials its first.
				held, err := net.Dial("tcp", srv.Addr())
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { held.Close() })
				if _, err := held.Write([]byte("PING\r\n")); err != nil {
					t.Fatal(err)
				}
				if _, err := bufio.NewReader(held).ReadString('\n'); err != nil {
					t.Fatal(err)
				}
				s := open(t, srv, redisstore.Config{})
				_, _, err = s.Load(ctx, "id", 0)
				return s.PoolStats(), err
			},
		},
		{
			heading: "Out of memory: OOM",
			provoke: func(t *testing.T) (redisstore.PoolStats, error) {
				srv := redistest.Start(t, "--maxmemory", "1mb", "--maxmemory-policy", "noeviction")
				s := open(t, srv, redisstore.Config{})
				record := make([]byte, 64<<10)
				for i := range 100 {
					if _, err := s.Insert(ctx, strconv.Itoa(i), record, time.Minute); err != nil {
						return s.PoolStats(), err
					}
				}
				t.Fatal("100 inserts of 64 KiB fit in maxmemory 1mb")
				return redisstore.PoolStats{}, nil
			},
		},
		{
			heading: "Redis is loading its dataset: LOADING",
			provoke: provokeLoading,
		},
		{
			heading: "Writes refused after a failover: READONLY",
			provoke: func(t *testing.T) (redisstore.PoolStats, error) {
				master := redistest.Start(t)
				replica := redistest.Start(t, "--replicaof", "127.0.0.1", strconv.Itoa(master.Port))
				s := open(t, replica, redisstore.Config{})
				_, err := s.Insert(ctx, "id", []byte("rec"), time.Minute)
				return s.PoolStats(), err
			},
		},
		{
			heading: "Writes refused for want of replicas: NOREPLICAS",
			provoke: func(t *testing.T) (redisstore.PoolStats, error) {
				srv := redistest.Start(t, "--min-replicas-to-write", "1")
				s := open(t, srv, redisstore.Config{})
				_, err := s.Insert(ctx, "id", []byte("rec"), time.Minute)
				return s.PoolStats(), err
			},
		},
		{
			heading: "Writes the replicas did not confirm: WaitReplicas",
			provoke: func(t *testing.T) (redisstore.PoolStats, error) {
				// A master without the replica the Store waits for. The
				// default Timeout: under one of a few hundred milliseconds
				// WAIT's answer, which Redis sends at its next cron tick,
				// may come after the read deadline (see confirm).
				s := open(t, redistest.Start(t), redisstore.Config{WaitReplicas: 1})
				return s.PoolStats(), s.Remove(ctx, "id")
			},
		},
		{
			heading: "Writes the replicas did not confirm: WaitReplicas",
			provoke: func(t *testing.T) (redisstore.PoolStats, error) {
				// MaxActive 8: one place for reads of ended sessions to
				// wait in. One of three such reads takes it, waiting on
				// WAIT for most of the Timeout; the others find it taken
				// for a quarter of the Timeout.
				s := open(t, redistest.Start(t), redisstore.Config{WaitReplicas: 1, MaxActive: 8, Timeout: 400 * time.Millisecond})
				errs := make(chan error, 3)
				for range cap(errs) {
					go func() {
						_, _, err := s.Load(ctx, "ended", 0)
						errs <- err
					}()
				}
				var noPlace error
				for range cap(errs) {
					if err := <-errs; err != nil && strings.Contains(err.Error(), "too many reads") {
						noPlace = err
					}
				}
				if noPlace == nil {
					t.Fatal("no read of an ended session found every place to wait taken")
				}
				return s.PoolStats(), noPlace
			},
		},
		{
			heading: "A command the ACL denies: NOPERM",
			provoke: func(t *testing.T) (redisstore.PoolStats, error) {
				srv := redistest.Start(t)
				// The user of redisstore's documentation, less +set.
				srv.Do(t, "ACL", "SETUSER", "sessionkit", "on", ">pw", "~session:*", "~user:*", "resetchannels", "-@all",
					"+get", "+getex", "+del", "+scan", "+mget", "+ping", "+exists", "+multi", "+exec", "+discard",
					"+watch", "+unwatch", "+zadd", "+zrange", "+zrem", "+zremrangebyscore", "+pexpireat", "+select")
				s := open(t, srv, redisstore.Config{Username: "sessionkit", Password: "pw"})
				_, err := s.Insert(ctx, "id", []byte("rec"), time.Minute)
				return s.PoolStats(), err
			},
		},
		{
			heading: "No answer to a connection: dial timeout",
			provoke: func(t *testing.T) (redisstore.PoolStats, error) {
				s, err := redisstore.Open(redisstore.Config{Addr: redistest.Unanswered(t), Timeout: 300 * time.Millisecond})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				_, _, err = s.Load(ctx, "id", 0)
				return s.PoolStats(), err
			},
			stats: func(ps redisstore.PoolStats) bool { return ps.DialErrors > 0 },
		},
		{
			heading: "Host name does not resolve",
			provoke: func(t *testing.T) (redisstore.PoolStats, error) {
				// A pool of the test's own (see openUnresolved), whose
				// dials PoolStats does not count.
				s := openUnresolved(t)
				_, _, err := s.Load(ctx, "id", 0)
				return s.PoolStats(), err
			},
		},
		{
			heading: "The connection closes: EOF, connection reset",
			provoke: func(t *testing.T) (redisstore.PoolStats, error) {
				p := redistest.Start(t).Proxy(t)
				s, err := redisstore.Open(redisstore.Config{Addr: p.Addr()})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				if err := s.Ping(ctx); err != nil {
					t.Fatal(err)
				}
				p.Drop() // a load balancer that resets its connections
				_, _, err = s.Load(ctx, "id", 0)
				return s.PoolStats(), err
			},
		},
		{
			heading: "TLS to a port that does not speak it: TLS handshake timeout",
			provoke: func(t *testing.T) (redisstore.PoolStats, error) {
				srv := redistest.Start(t)
				// The defaults (DialTimeout and Timeout 1s): the guide's
				// first line.
				s := open(t, srv, redisstore.Config{TLS: &tls.Config{MinVersion: tls.VersionTLS12}})
				_, _, err := s.Load(ctx, "id", 0)
				return s.PoolStats(), err
			},
			stats: func(ps redisstore.PoolStats) bool { return ps.DialErrors > 0 },
		},
		{
			heading: "TLS to a port that does not speak it: TLS handshake timeout",
			provoke: func(t *testing.T) (redisstore.PoolStats, error) {
				srv := redistest.Start(t)
				// A DialTimeout shorter than Timeout: the second line.
				s := open(t, srv, redisstore.Config{TLS: &tls.Config{MinVersion: tls.VersionTLS12}, DialTimeout: 100 * time.Millisecond})
				_, _, err := s.Load(ctx, "id", 0)
				return s.PoolStats(), err
			},
			stats: func(ps redisstore.PoolStats) bool { return ps.DialErrors > 0 },
		},
		{
			heading: "A Cluster node configured as one server: MOVED",
			provoke: func(t *testing.T) (redisstore.PoolStats, error) {
				c := redistest.StartCluster(t, redistest.ClusterOptions{ReplicasPerMaster: -1})
				s := open(t, c.Nodes()[0], redisstore.Config{})
				// Of three masters, this one serves a third of the slots:
				// one of a few ids lies in another's.
				for i := range 50 {
					if _, err := s.Insert(ctx, strconv.Itoa(i), []byte("rec"), time.Minute); err != nil {
						return s.PoolStats(), err
					}
				}
				t.Fatal("50 inserts on one node of a three-master Cluster all succeeded")
				return redisstore.PoolStats{}, nil
			},
		},
		{
			heading: "A Sentinel, or an old Redis, configured as the server: unknown command, wrong number of arguments",
			provoke: func(t *testing.T) (redisstore.PoolStats, error) {
				sn := redistest.StartSentinel(t, redistest.SentinelOptions{})
				s := open(t, sn.Sentinels()[0], redisstore.Config{})
				_, _, err := s.Load(ctx, "id", time.Minute)
				return s.PoolStats(), err
			},
		},
		{
			heading: "Another program's key under the prefix: WRONGTYPE",
			provoke: func(t *testing.T) (redisstore.PoolStats, error) {
				srv := redistest.Start(t)
				srv.Do(t, "HSET", "session:id", "field", "value")
				s := open(t, srv, redisstore.Config{})
				_, _, err := s.Load(ctx, "id", time.Minute)
				return s.PoolStats(), err
			},
		},
		{
			heading: "TLS: certificate signed by unknown authority",
			provoke: func(t *testing.T) (redisstore.PoolStats, error) {
				s := openTLS(t, func(*tls.Config, *x509.CertPool) {})
				_, _, err := s.Load(ctx, "id", 0)
				return s.PoolStats(), err
			},
			stats: func(ps redisstore.PoolStats) bool { return ps.DialErrors > 0 },
		},
		{
			heading: "TLS: certificate for another host name",
			provoke: func(t *testing.T) (redisstore.PoolStats, error) {
				s := openTLS(t, func(c *tls.Config, ca *x509.CertPool) {
					c.RootCAs, c.ServerName = ca, "redis.example.com"
				})
				_, _, err := s.Load(ctx, "id", 0)
				return s.PoolStats(), err
			},
			stats: func(ps redisstore.PoolStats) bool { return ps.DialErrors > 0 },
		},
		{
			heading: "Pool exhausted",
			provoke: func(t *testing.T) (redisstore.PoolStats, error) {
				srv := redistest.Start(t)
				s := open(t, srv, redisstore.Config{MaxActive: 1, Timeout: 2 * time.Second})
				if _, err := s.Insert(ctx, "held", []byte("rec"), time.Minute); err != nil {
					t.Fatal(err)
				}
				// A Merge whose function waits holds the pool's only
				// connection until release is closed.
				holding, release, merged := make(chan struct{}), make(chan struct{}), make(chan error, 1)
				go func() {
					_, err := s.Merge(ctx, "held", time.Minute, func(b []byte) ([]byte, error) {
						close(holding)
						<-release
						return b, nil
					})
					merged <- err
				}()
				<-holding
				short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
				defer cancel()
				_, _, err := s.Load(short, "other", 0)
				ps := s.PoolStats()
				close(release)
				if err := <-merged; err != nil {
					t.Errorf("Merge holding the connection: %v", err)
				}
				return ps, err
			},
			// A wait that timed out is not counted in Waits, as the guide says.
			stats: func(ps redisstore.PoolStats) bool { return ps.Exhausted() && ps.Waits == 0 },
		},
		{
			heading: "Slow commands: timeouts",
			provoke: func(t *testing.T) (redisstore.PoolStats, error) {
				srv := redistest.Start(t)
				p := srv.Proxy(t)
				s, err := redisstore.Open(redisstore.Config{Addr: p.Addr(), Timeout: 100 * time.Millisecond})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				p.Slow(200 * time.Millisecond)
				_, _, err = s.Load(ctx, "id", 0)
				return s.PoolStats(), err
			},
		},
	}

	tested := make(map[string]bool)
	for _, tc := range cases {
		tested[tc.heading] = true
		t.Run(tc.heading, func(t *testing.T) {
			t.Parallel()
			sec, ok := guide[tc.heading]
			if !ok || len(sec.texts) == 0 || sec.class == "" {
				t.Fatalf("%s has no section %q with a ```text block and a **Class:** line", guidePath, tc.heading)
			}
			ps, err := tc.provoke(t)
			if err == nil {
				t.Fatal("no error provoked")
			}
			t.Logf("error: %v", err)
			if !slices.ContainsFunc(sec.texts, func(text string) bool { return pattern(text).MatchString(err.Error()) }) {
				t.Errorf("error = %q, which matches none of the guide's %q", err, sec.texts)
			}
			unavailable, refused := errors.Is(err, redisstore.ErrUnavailable), errors.Is(err, redisstore.ErrRefused)
			class := "ErrRefused"
			if unavailable {
				class = "ErrUnavailable"
			}
			if unavailable == refused {
				t.Errorf("error matches ErrUnavailable: %v, ErrRefused: %v; want exactly one", unavailable, refused)
			} else if class != sec.class {
				t.Errorf("error is %s, the guide says %s", class, sec.class)
			}
			if tc.stats != nil && !tc.stats(ps) {
				t.Errorf("PoolStats = %+v, not what the guide says it shows", ps)
			}
		})
	}
	t.Run("no untested sections", func(t *testing.T) {
		for heading := range guide {
			if !tested[heading] {
				t.Errorf("%s shows an error under %q that no case provokes", guidePath, heading)
			}
		}
	})
}

// provokeLoading restarts a server that loads its snapshot slowly
// (key-load-delay, in microseconds per key) while a Store reads, and
// returns the first error that mentions LOADING.
func provokeLoading(t *testing.T) (redisstore.PoolStats, error) {
	srv := redistest.Start(t, "--key-load-delay", "300", "--loading-process-events-interval-bytes", "1024")
	args := make([]any, 0, 2000)
	for i := range 1000 {
		args = append(args, fmt.Sprint("k", i), "v")
	}
	srv.Do(t, "MSET", args...)
	srv.Do(t, "SAVE")
	s := open(t, srv, redisstore.Config{Timeout: 200 * time.Millisecond})
	loading := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(loading)
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
			select {
			case <-done:
				return
			default:
			}
			_, _, err := s.Load(context.Background(), "x", 0)
			if err != nil && strings.Contains(err.Error(), "LOADING") {
				loading <- err
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	srv.Restart(t) // returns once loading is over
	close(done)
	err, ok := <-loading
	if !ok {
		t.Fatal("no read saw the server LOADING during the restart")
	}
	return s.PoolStats(), err
}

// openTLS starts a redis-server that serves TLS with a certificate for
// localhost from a test CA, and opens a Store on it whose TLS
// configuration, trusting the system roots, edit changes; ca trusts the
// test CA.
// openUnresolved returns a Store whose pool dials redis.internal:6379,
// a host name that does not resolve: its resolver asks a DNS server of the
// test's own on a loopback port, which answers every question with
// NXDOMAIN, so that no query leaves the machine.
func openUnresolved(t *testing.T) *redisstore.Store {
	t.Helper()
	dns, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dns.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			n, from, err := dns.ReadFrom(buf)
			if err != nil {
				return
			}
			if reply := nxdomain(buf[:n]); reply != nil {
				dns.WriteTo(reply, from)
			}
		}
	}()
	resolver := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", dns.LocalAddr().String())
	}}
	pool := &redis.Pool{DialContext: func(ctx context.Context) (redis.Conn, error) {
		return redis.DialContext(ctx, "tcp", "redis.internal:6379", redis.DialContextFunc(func(ctx context.Context, network, addr string) (net.Conn, error) {
			d := net.Dialer{Resolver: resolver}
			return d.DialContext(ctx, network, addr)
		}))
	}}
	s, err := redisstore.New(pool, redisstore.Config{Addr: "redis.internal:6379"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// nxdomain returns the answer to the DNS query q that the name does not
// exist (RCODE 3), with q's id and question, or nil for a packet that is
// no query of one question.
func nxdomain(q []byte) []byte {
	if len(q) < 12 || q[2]&0x80 != 0 || q[4] != 0 || q[5] != 1 {
		return nil
	}
	end := 12
	for end < len(q) && q[end] != 0 { // the name's labels
		end += int(q[end]) + 1
	}
	end += 5 // the root label, QTYPE and QCLASS
	if end > len(q) {
		return nil
	}
	reply := append([]byte(nil), q[:end]...)
	reply[2] = 0x80 | q[2]&0x01 // a response; RD as asked
	reply[3] = 0x80 | 3         // RA; NXDOMAIN
	clear(reply[6:12])          // no answer, authority or additional records
	return reply
}

func openTLS(t *testing.T, edit func(c *tls.Config, ca *x509.CertPool)) *redisstore.Store {
	t.Helper()
	dir := t.TempDir()
	ca := writeCerts(t, dir)
	addr := startTLS(t, dir, "no")
	cfg := &tls.Config{ServerName: "localhost", MinVersion: tls.VersionTLS12}
	edit(cfg, ca)
	// A Timeout well above the default: the handshake's error comes at
	// once, but the handshake itself, under -race on a busy machine (the
	// cases run in parallel, one starting a Cluster), can take over a
	// second.
	s, err := redisstore.Open(redisstore.Config{Addr: addr, TLS: cfg, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
