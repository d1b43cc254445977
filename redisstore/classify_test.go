package redisstore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/gomodule/redigo/redis"
)

// TestClassify checks the mapping of every reply code; TestErrorClasses
// provokes most of them on real servers.
func TestClassify(t *testing.T) {
	tests := []struct {
		err     error
		want    error
		cluster bool // on a Redis Cluster
	}{
		{redis.Error("LOADING Redis is loading the dataset in memory"), ErrUnavailable, false},
		{&net.OpError{Op: "remote error", Err: errors.New("tls: certificate required")}, ErrRefused, false},
		{&net.OpError{Op: "remote error", Err: errors.New("tls: internal error")}, ErrUnavailable, false},
		{&net.OpError{Op: "read", Err: errors.New("connection reset by peer")}, ErrUnavailable, false},
		{redis.Error("READONLY You can't write against a read only replica."), ErrUnavailable, false},
		{redis.Error("OOM command not allowed when used memory > 'maxmemory'."), ErrUnavailable, false},
		{redis.Error("MASTERDOWN Link with MASTER is down"), ErrUnavailable, false},
		{redis.Error("BUSY Redis is busy running a script."), ErrUnavailable, false},
		{redis.Error("TRYAGAIN Multiple keys request during rehashing of slot"), ErrUnavailable, true},
		{redis.Error("CLUSTERDOWN The cluster is down"), ErrUnavailable, true},
		{redis.Error("MOVED 3999 127.0.0.1:6381"), ErrUnavailable, true},
		{redis.Error("ASK 3999 127.0.0.1:6381"), ErrUnavailable, true},
		{redis.Error("EXECABORT Transaction discarded because of previous errors."), ErrUnavailable, true},
		// A Cluster node behind a single-server or Sentinel configuration:
		// no retry mends that.
		{redis.Error("TRYAGAIN Multiple keys request during rehashing of slot"), ErrRefused, false},
		{redis.Error("CLUSTERDOWN The cluster is down"), ErrRefused, false},
		{redis.Error("MOVED 3999 127.0.0.1:6381"), ErrRefused, false},
		{redis.Error("ASK 3999 127.0.0.1:6381"), ErrRefused, false},
		// A transaction with a command refused as it was queued (OOM).
		{redis.Error("EXECABORT Transaction discarded because of previous errors."), ErrUnavailable, false},
		{redis.Error("NOREPLICAS Not enough good replicas to write."), ErrUnavailable, false},
		{redis.Error("ERR max number of clients reached"), ErrUnavailable, false},
		{redis.Error("ERR max number of clients + cluster connections reached"), ErrUnavailable, true},
		{io.EOF, ErrUnavailable, false},
		{redis.Error("NOAUTH Authentication required."), ErrRefused, false},
		{redis.Error("WRONGPASS invalid username-password pair"), ErrRefused, false},
		{redis.Error("NOPERM this user has no permissions"), ErrRefused, false},
		{redis.Error("WRONGTYPE Operation against a key holding the wrong kind of value"), ErrRefused, false},
		{redis.Error("ERR unknown command 'GETEX'"), ErrRefused, false},
	}
	if got := classify("op", ErrContention, false); !errors.Is(got, ErrContention) || errors.Is(got, ErrUnavailable) {
		t.Errorf("classify(ErrContention) = %v, want ErrContention and not ErrUnavailable", got)
	}
	// Only a caller cancels: a client gone says nothing about Redis.
	canceled := fmt.Errorf("%w: read tcp: use of closed connection", context.Canceled)
	if got := classify("op", canceled, false); !errors.Is(got, context.Canceled) ||
		errors.Is(got, ErrUnavailable) || errors.Is(got, ErrRefused) || errors.Is(got, ErrContention) {
		t.Errorf("classify(%q) = %v, want context.Canceled and no class", canceled, got)
	}
	for _, tc := range tests {
		if got := classify("op", tc.err, tc.cluster); !errors.Is(got, tc.want) || !errors.Is(got, tc.err) {
			t.Errorf("classify(%q) on a Cluster %v = %v, want %v wrapping the cause", tc.err, tc.cluster, got, tc.want)
		}
	}
}

// TestNotRun checks which failures a call on a Cluster tries again within
// its time: no connection, unless for a certificate that does not verify,
// or a TLS alert of the server, which no retry mends (retried, such a
// call would dial again and again and be refused only at its Timeout), but
// including a node over its maxclients, which sends its refusal at the
// dial's AUTH; and the replies of a slot on its way.
func TestNotRun(t *testing.T) {
	cert := &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{errNoConn{&net.OpError{Op: "dial", Err: errors.New("connection refused")}}, true},
		{errNoConn{cert}, false},
		{errNoConn{fmt.Errorf("dial: %w", cert)}, false},
		{errNoConn{errClosed}, false},
		{redis.Error("MOVED 3999 127.0.0.1:6381"), true},
		{errNoConn{redis.Error("WRONGPASS invalid username-password pair")}, false},
		{errNoConn{&net.OpError{Op: "remote error", Err: errors.New("tls: certificate required")}}, false},
		{errNoConn{redis.Error("ERR max number of clients + cluster connections reached")}, true},
		{redis.Error("ERR max number of clients reached"), false}, // a command's reply: it may have run
		{io.EOF, false},
	} {
		if got := notRun(tc.err); got != tc.want {
			t.Errorf("notRun(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TestRefusedForm checks what Ping returns, and Describe says, when a
// server refuses one of its probes as older Redis versions do: Redis 6.2
// answers "wrong number of arguments" to PEXPIREAT and PEXPIRE with NX or
// GT (replies copied from a 6.2.16 server; the tests' servers are 7.0 or
// later, which take those forms), and a Redis before 6.2 does not know
// GETEX (TestPingMissingCommand provokes unknown commands on real servers).
func TestRefusedForm(t *testing.T) {
	single := Config{}
	tests := []struct {
		p        probe
		reply    redis.Error
		err      string // the error Ping returns
		describe string
	}{
		{
			probe{"PEXPIREAT", []any{"user:", 1, "NX"}, "user:", "7.0"},
			"ERR wrong number of arguments for 'pexpireat' command",
			"redisstore: redis refused the request (ping): PEXPIREAT with NX needs Redis 7.0 or later: ERR wrong number of arguments for 'pexpireat' command",
			"the server refuses PEXPIREAT with NX: it is a Redis older than 7.0 (REDIS_URL or REDIS_HOST and REDIS_PORT); sessionkit needs Redis 7.0 or later (INFO server shows the version)",
		},
		{
			probe{"PEXPIRE", []any{"rate_limit:", 1000, "LT"}, "rate_limit:", "7.0"},
			"ERR wrong number of arguments for 'pexpire' command",
			"redisstore: redis refused the request (ping): PEXPIRE with LT needs Redis 7.0 or later: ERR wrong number of arguments for 'pexpire' command",
			"the server refuses PEXPIRE with LT: it is a Redis older than 7.0 (REDIS_URL or REDIS_HOST and REDIS_PORT); sessionkit needs Redis 7.0 or later (INFO server shows the version)",
		},
		{
			probe{"GETEX", []any{"session:"}, "session:", ""},
			"ERR unknown command 'GETEX', with args beginning with: 'session:' ",
			"redisstore: redis refused the request (ping): ERR unknown command 'GETEX' (arguments not shown)",
			"the server does not know GETEX, which sessionkit sends: REDIS_URL or REDIS_HOST and REDIS_PORT names a Redis Sentinel (which answers its own commands only: name the sentinels with REDIS_SENTINELS), a Redis older than 7.0, or one whose provider renamed or disabled the command",
		},
	}
	for _, tc := range tests {
		err := classify("ping", refusedForm(tc.p, tc.reply), false)
		if !errors.Is(err, ErrRefused) || err.Error() != tc.err {
			t.Errorf("Ping's error for %s refused with %q = %q, want ErrRefused, %q", tc.p.cmd, tc.reply, err, tc.err)
		}
		if got := Describe(err, single); got != tc.describe {
			t.Errorf("Describe(%q) = %q, want %q", err, got, tc.describe)
		}
	}
	// A login sent to Redis 6.2 without a Ping before it.
	login := classify("add_user_session", redis.Error("ERR wrong number of arguments for 'pexpireat' command"), false)
	want := "the server refuses PEXPIREAT with the arguments sessionkit sends: it is a Redis older than 7.0 (REDIS_URL or REDIS_HOST and REDIS_PORT); sessionkit needs Redis 7.0 or later (INFO server shows the version)"
	if got := Describe(login, single); got != want {
		t.Errorf("Describe(%q) = %q, want %q", login, got, want)
	}
}

// TestKeyDenial checks that a NOPERM reply is read as a refusal of keys or
// of the command in the wording of Redis 7.0 and of 7.2 and later, which
// names the user: a user named "monkey" does not make a refused command
// read as refused keys, and Describe names the commands to add.
func TestKeyDenial(t *testing.T) {
	for _, tc := range []struct {
		reply string
		keys  bool
	}{
		{"NOPERM this user has no permissions to run the 'zadd' command", false},
		{"NOPERM this user has no permissions to access one of the keys used as arguments", true},
		{"NOPERM User monkey has no permissions to run the 'zadd' command", false},
		{"NOPERM User keyring has no permissions to run the 'zadd' command", false},
		{"NOPERM No permissions to access a key", true},
	} {
		if got := (&permissionError{cmd: "ZADD", reply: redis.Error(tc.reply)}).keyDenial(); got != tc.keys {
			t.Errorf("keyDenial(%q) = %v, want %v", tc.reply, got, tc.keys)
		}
	}
	for _, reply := range []string{
		"NOPERM this user has no permissions to access one of the keys used as arguments",
		"NOPERM No permissions to access a key",
	} {
		// The rate limiter's and the scs migration's refusals of keys.
		want := "the ACL of user app does not allow the keys ~rl:*, which sessionkit's INCR uses (REDIS_USERNAME, and the ACL line in the redisstore documentation): add ~rl:*"
		if got := Describe(keyDenied(redis.Error(reply), "INCR", "~rl:*"), Config{Username: "app"}); got != want {
			t.Errorf("Describe(keyDenied(%q)) = %q, want %q", reply, got, want)
		}
	}
	pe := &permissionError{cmd: "GETEX", keys: "~session:*", reply: redis.Error("NOPERM User monkey has no permissions to run the 'getex' command")}
	pe.add(&permissionError{cmd: "ZADD", keys: "~user:*", reply: redis.Error("NOPERM User monkey has no permissions to run the 'zadd' command")})
	want := "the ACL of user monkey denies GETEX, ZADD, which sessionkit sends (REDIS_USERNAME, and the ACL line in the redisstore documentation): add +getex +zadd"
	if got := Describe(fmt.Errorf("%w: %w", ErrRefused, pe), Config{Username: "monkey"}); got != want {
		t.Errorf("Describe = %q, want %q", got, want)
	}
}

// TestDescribeTooManyClients: a refusal over maxclients is the master's,
// whose connections MaxActive bounds, or, behind errNoMaster, a sentinel's,
// which MaxActive does not bound (a sentinel whose maxclients is taken
// cannot be set up by redistest).
func TestDescribeTooManyClients(t *testing.T) {
	reply := redis.Error("ERR max number of clients reached")
	cfg := Config{SentinelAddrs: []string{"127.0.0.1:26379"}, SentinelMaster: "mymaster"}
	if d := Describe(fmt.Errorf("%w: %w", errNoMaster, reply), cfg); !strings.Contains(d, "a sentinel") || strings.Contains(d, "MaxActive") {
		t.Errorf("Describe of a sentinel at maxclients = %q, want it to name the sentinel, not MaxActive", d)
	}
	if d := Describe(fmt.Errorf("redisstore: load: %w", reply), cfg); !strings.Contains(d, "MaxActive") {
		t.Errorf("Describe of a master at maxclients = %q, want it to name MaxActive", d)
	}
}
